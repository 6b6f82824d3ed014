//! Server side of the WebSocket opening handshake (RFC 6455 4.2), sans-IO: the connection passes
//! everything received so far; the answer is either "read more", an accept or a refusal.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::fmt;

/// What a WebSocket listener accepts.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// Request path that upgrades, e.g. "/mqtt".
    pub path: String,
    /// Refuse (400) a request that offers no MQTT subprotocol. Default true.
    pub require_subprotocol: bool,
    /// Browser origins allowed; empty = any (a request without Origin is always allowed).
    pub allowed_origins: Vec<String>,
    /// Largest request head accepted, in bytes (default 8192); more -> 431.
    pub max_request_bytes: usize,
    /// Peer addresses (as text, e.g. "127.0.0.1") whose X-Forwarded-For / X-Real-IP is believed.
    pub trusted_proxies: Vec<String>,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig {
            path: "/mqtt".to_string(),
            require_subprotocol: true,
            allowed_origins: Vec::new(),
            max_request_bytes: 8192,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Why an upgrade request was refused; each maps to one HTTP status (see [`HandshakeError::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Head incomplete yet already over `max_request_bytes` (or complete but larger): 431.
    HeadTooLarge,
    /// More header lines than the parser's fixed array holds: 431.
    TooManyHeaders,
    /// Not parseable as an HTTP/1.x request head: 400.
    Malformed,
    /// Method other than GET: 405 with `Allow: GET`.
    MethodNotAllowed,
    /// HTTP/1.0 (the upgrade needs HTTP/1.1): 400.
    HttpVersion,
    /// No `Host` header: 400.
    MissingHost,
    /// `Upgrade: websocket` without `Connection: upgrade`: 400.
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key`: 400.
    MissingKey,
    /// `Sec-WebSocket-Key` repeated or not base64 of exactly 16 bytes: 400.
    InvalidKey,
    /// `Sec-WebSocket-Version` missing or not 13: 426 with `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
    /// Path (query ignored) is not the configured one, or a plain GET of an unknown path: 404.
    NotFound,
    /// `Origin` not in `allowed_origins`: 403.
    OriginNotAllowed,
    /// No `mqtt` / `mqttv3.1` subprotocol offered while `require_subprotocol`: 400.
    SubprotocolRequired,
    /// Plain (non-upgrade) GET of the WebSocket path: 426 with `Upgrade: websocket`.
    UpgradeRequired,
    /// Plain GET of `/`: 200 with a short text page naming the WebSocket endpoint. Not a fault,
    /// but the connection still closes after the answer.
    InfoPage,
    /// The broker cannot take a client now (its `memory_limit` is reached): 503.
    ServiceUnavailable,
}

impl HandshakeError {
    /// HTTP status code of the answer sent for this refusal.
    pub fn status(&self) -> u16 {
        use HandshakeError::*;
        match self {
            HeadTooLarge | TooManyHeaders => 431,
            Malformed
            | HttpVersion
            | MissingHost
            | MissingConnectionUpgrade
            | MissingKey
            | InvalidKey
            | SubprotocolRequired => 400,
            MethodNotAllowed => 405,
            UnsupportedVersion | UpgradeRequired => 426,
            NotFound => 404,
            OriginNotAllowed => 403,
            InfoPage => 200,
            ServiceUnavailable => 503,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HandshakeError::*;
        let s = match self {
            HeadTooLarge => "request head too large",
            TooManyHeaders => "too many request headers",
            Malformed => "malformed HTTP request",
            MethodNotAllowed => "method not allowed (only GET upgrades)",
            HttpVersion => "HTTP/1.1 required",
            MissingHost => "missing Host header",
            MissingConnectionUpgrade => "Upgrade: websocket without Connection: upgrade",
            MissingKey => "missing Sec-WebSocket-Key",
            InvalidKey => "invalid Sec-WebSocket-Key",
            UnsupportedVersion => "unsupported Sec-WebSocket-Version (13 required)",
            NotFound => "unknown path",
            OriginNotAllowed => "origin not allowed",
            SubprotocolRequired => "mqtt subprotocol not offered",
            UpgradeRequired => "plain HTTP request to the WebSocket endpoint",
            InfoPage => "plain HTTP request for the info page",
            ServiceUnavailable => "broker at its memory limit",
        };
        f.write_str(s)
    }
}

impl std::error::Error for HandshakeError {}

/// Result of feeding the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// Request head not complete yet: read more (the caller enforces the handshake timeout).
    Partial,
    /// Upgrade accepted: send `response`, then speak WebSocket frames. `consumed` bytes of the
    /// input were the request; any bytes after them are already WebSocket frames.
    Accept {
        response: Vec<u8>,
        consumed: usize,
        /// Negotiated subprotocol: "mqtt" or "mqttv3.1"; "" (empty) when the client offered none
        /// and `require_subprotocol` is off (then no Sec-WebSocket-Protocol header is sent).
        subprotocol: &'static str,
        /// Client address from X-Forwarded-For / X-Real-IP when the peer is a trusted proxy.
        forwarded_for: Option<String>,
    },
    /// Refused: send `response` (an HTTP answer with a short text body), then close.
    Reject { response: Vec<u8>, error: HandshakeError },
}

/// RFC 6455 1.3 GUID (note "...C85B11"; the sample-key test guards against typos).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Fixed header array: enough for any browser or proxy chain; more is refused (431).
const MAX_HEADERS: usize = 32;

/// Parse the request head in `buf` (everything received so far). `peer_ip` is the socket's peer
/// address, used for the trusted-proxy check.
pub fn handle_request(buf: &[u8], config: &HandshakeConfig, peer_ip: &str) -> HandshakeOutcome {
    use HandshakeError::*;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // Only the first max_request_bytes bytes are parsed: the outcome must not depend on how the
    // head was cut into reads (a whole buffer could otherwise show a syntax error past the limit
    // that a reader fed in pieces never reaches, having refused with 431 first). It also bounds
    // re-parsing from the start on every read.
    let window = buf.get(..config.max_request_bytes).unwrap_or(buf);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > config.max_request_bytes => return reject(HeadTooLarge),
        Ok(httparse::Status::Partial) => return HandshakeOutcome::Partial,
        Err(httparse::Error::TooManyHeaders) => return reject(TooManyHeaders),
        Err(_) => return reject(Malformed),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return reject(Malformed);
    };
    if method != "GET" {
        return reject(MethodNotAllowed);
    }
    if version != 1 {
        return reject(HttpVersion);
    }
    let h = Headers(req.headers);
    if h.any_not_utf8() {
        return reject(Malformed);
    }
    let Some(host) = h.first("host") else {
        return reject(MissingHost);
    };
    let path = target.split('?').next().unwrap_or("");

    // A client that does not ask for websocket at all (curl, a browser tab, a health check) gets
    // a human-readable answer instead of a bare error.
    if !h.has_token("upgrade", "websocket") {
        if path == config.path {
            return reject(UpgradeRequired);
        }
        if path == "/" {
            return info_page(host, &config.path);
        }
        return reject(NotFound);
    }
    if !h.has_token("connection", "upgrade") {
        return reject(MissingConnectionUpgrade);
    }
    if path != config.path {
        return reject(NotFound);
    }
    let mut keys = h.all("sec-websocket-key");
    let Some(key) = keys.next() else {
        return reject(MissingKey);
    };
    if keys.next().is_some() || !key_is_valid(key) {
        return reject(InvalidKey);
    }
    let mut versions = h.all("sec-websocket-version");
    if versions.next() != Some("13") || versions.next().is_some() {
        return reject(UnsupportedVersion);
    }
    if !config.allowed_origins.is_empty() {
        if let Some(origin) = h.first("origin") {
            let ok = config.allowed_origins.iter().any(|o| o.trim().eq_ignore_ascii_case(origin));
            if !ok {
                return reject(OriginNotAllowed);
            }
        }
    }
    let subprotocol = pick_subprotocol(&h);
    if subprotocol.is_empty() && config.require_subprotocol {
        return reject(SubprotocolRequired);
    }
    let trusted = |ip: &str| config.trusted_proxies.iter().any(|p| p.trim() == ip);
    let forwarded_for = if trusted(peer_ip) { forwarded_client(&h, trusted) } else { None };

    let accept = accept_key(key);
    let mut response = Vec::with_capacity(160);
    response.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    response.extend_from_slice(accept.as_bytes());
    response.extend_from_slice(b"\r\n");
    if !subprotocol.is_empty() {
        response.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        response.extend_from_slice(subprotocol.as_bytes());
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(b"\r\n");
    HandshakeOutcome::Accept { response, consumed, subprotocol, forwarded_for }
}

/// Sec-WebSocket-Accept for a client key: base64(sha1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Headers the handshake reads. None of them may legitimately carry bytes that are not UTF-8.
const READ_HEADERS: [&str; 9] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "origin",
    "x-forwarded-for",
    "x-real-ip",
];

/// Header lookups over httparse's parsed array; values are trimmed text. Non-UTF-8 values are
/// skipped by the lookups, so `handle_request` refuses them first (`any_not_utf8`): skipped, a
/// garbage second Sec-WebSocket-Key or a garbage Origin would pass unseen.
struct Headers<'h, 'b>(&'h [httparse::Header<'b>]);

impl<'h, 'b> Headers<'h, 'b> {
    fn any_not_utf8(&self) -> bool {
        self.0.iter().any(|h| {
            READ_HEADERS.iter().any(|n| h.name.eq_ignore_ascii_case(n)) && std::str::from_utf8(h.value).is_err()
        })
    }

    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b str> + 's {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .map(|v| v.trim_matches(|c| c == ' ' || c == '\t'))
    }

    fn first(&self, name: &str) -> Option<&'b str> {
        self.all(name).next()
    }

    /// Comma-list elements of every occurrence of `name` (a header may repeat; RFC 7230 3.2.2).
    fn tokens<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b str> + 's {
        self.all(name).flat_map(|v| v.split(',')).map(|t| t.trim_matches(|c| c == ' ' || c == '\t'))
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name).any(|t| t.eq_ignore_ascii_case(token))
    }
}

fn key_is_valid(key: &str) -> bool {
    // 16 bytes encode to exactly 24 base64 chars; checking first keeps decode's output bounded.
    let mut out = [0u8; 18];
    key.len() == 24 && matches!(STANDARD.decode_slice(key, &mut out), Ok(16))
}

/// "mqtt" if offered anywhere, else "mqttv3.1" (older Paho JS), else "". Subprotocol names are
/// compared case-sensitively: browsers require the echo to match an offered value exactly.
fn pick_subprotocol(h: &Headers) -> &'static str {
    let mut found = "";
    for t in h.tokens("sec-websocket-protocol") {
        if t == "mqtt" {
            return "mqtt";
        }
        if t == "mqttv3.1" {
            found = "mqttv3.1";
        }
    }
    found
}

/// The client's address as a trusted proxy reports it. Each proxy appends the address it got
/// the request from to X-Forwarded-For, and a client can put anything in front, so the list is
/// read from the right: the first hop that is not itself a trusted proxy is the client (all
/// trusted: the left-most). A hop that is not an IP address is not believed. Without
/// X-Forwarded-For, X-Real-IP (set by the proxy itself). O(header length).
fn forwarded_client(h: &Headers, trusted: impl Fn(&str) -> bool) -> Option<String> {
    let hops: Vec<&str> = h.tokens("x-forwarded-for").filter(|v| !v.is_empty()).collect();
    let client = match hops.iter().rposition(|hop| !trusted(hop)) {
        Some(i) => hops.get(i).copied(),
        None => hops.first().copied(),
    };
    let client = client.or_else(|| h.first("x-real-ip").filter(|v| !v.is_empty()))?;
    client.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
}

fn reject(error: HandshakeError) -> HandshakeOutcome {
    use HandshakeError::*;
    let (reason, extra, body): (&str, &str, &str) = match error {
        HeadTooLarge => ("Request Header Fields Too Large", "", "request head too large\n"),
        TooManyHeaders => ("Request Header Fields Too Large", "", "too many request headers\n"),
        Malformed => ("Bad Request", "", "malformed HTTP request\n"),
        MethodNotAllowed => ("Method Not Allowed", "Allow: GET\r\n", "only GET is allowed\n"),
        HttpVersion => ("Bad Request", "", "HTTP/1.1 is required\n"),
        MissingHost => ("Bad Request", "", "missing Host header\n"),
        MissingConnectionUpgrade => ("Bad Request", "", "WebSocket upgrade requires Connection: Upgrade\n"),
        MissingKey => ("Bad Request", "", "missing Sec-WebSocket-Key\n"),
        InvalidKey => ("Bad Request", "", "invalid Sec-WebSocket-Key\n"),
        UnsupportedVersion => {
            ("Upgrade Required", "Sec-WebSocket-Version: 13\r\n", "only WebSocket version 13 is supported\n")
        }
        NotFound => ("Not Found", "", "not found\n"),
        OriginNotAllowed => ("Forbidden", "", "origin not allowed\n"),
        SubprotocolRequired => {
            ("Bad Request", "", "the mqtt WebSocket subprotocol is required (Sec-WebSocket-Protocol: mqtt)\n")
        }
        UpgradeRequired => (
            "Upgrade Required",
            "Upgrade: websocket\r\n",
            "this is an MQTT-over-WebSocket endpoint: connect with a WebSocket client \
             using the mqtt subprotocol\n",
        ),
        InfoPage => ("OK", "", "midge MQTT broker\n"),
        ServiceUnavailable => ("Service Unavailable", "Retry-After: 10\r\n", "the broker is at its memory limit\n"),
    };
    HandshakeOutcome::Reject { response: http_response(error.status(), reason, extra, body), error }
}

/// The answer to an upgrade the broker cannot take now (503): the request was valid, the
/// broker is full.
pub fn service_unavailable() -> HandshakeOutcome {
    reject(HandshakeError::ServiceUnavailable)
}

fn info_page(host: &str, path: &str) -> HandshakeOutcome {
    // Host is client-supplied: keep it printable and short before echoing it.
    let host: String = host.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    let body = format!("midge MQTT broker\nMQTT over WebSocket: ws://{host}{path}\n");
    HandshakeOutcome::Reject { response: http_response(200, "OK", "", &body), error: HandshakeError::InfoPage }
}

fn http_response(status: u16, reason: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\n{extra_headers}Content-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
