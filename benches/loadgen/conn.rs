use crate::mqtt::enc_connect;
use crate::ws::{ws_expected_accept, ws_frame, WS_KEY};
use crate::Args;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- stream (plain or TLS)

/// The byte stream under MQTT (or the WebSocket handshake and frames): the socket itself, or
/// rustls between the socket and the parsers. Everything above reads and writes plaintext
/// through it, so mqtts and wss run the same connection code as tcp and ws.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

struct TlsStream {
    sock: TcpStream,
    tls: ClientConnection,
    /// Ciphertext read from the socket into the caller's scratch buffer that rustls has not
    /// taken yet (offsets into it): rustls takes about a record per call, so one large socket
    /// read is handed over in steps. Always empty again when a read event has been handled
    /// (the caller reads until WouldBlock), so the scratch can be shared by all connections.
    unfed: Range<usize>,
    /// The last socket read was short: the receive queue is empty, so once `unfed` is used
    /// up, reading is done until the next readable edge (no extra read just to see EAGAIN).
    drained: bool,
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &mut t.sock,
        }
    }

    #[inline]
    fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Read plaintext into `buf`; Ok(0) is the end of the stream. TLS reads ciphertext through
    /// `scratch` (shared, large, so that a socket read is not limited to a TLS record).
    #[inline]
    fn read(&mut self, buf: &mut [u8], scratch: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf, scratch),
        }
    }

    /// Write plaintext; WouldBlock when neither the socket nor rustls' bounded buffer takes any.
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    /// Write the TLS records rustls still holds (the socket was full before) as far as the
    /// socket takes them. Nothing to do on a plain stream.
    #[inline]
    fn flush_tls(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(t) => t.write_tls().map(|_| ()),
        }
    }

    /// Negotiated protocol version and cipher suite, once the handshake is done.
    fn tls_params(&self) -> Option<(String, String)> {
        let Stream::Tls(t) = self else { return None };
        let version = t.tls.protocol_version()?;
        let suite = t.tls.negotiated_cipher_suite()?;
        Some((format!("{version:?}"), format!("{:?}", suite.suite())))
    }
}

impl TlsStream {
    fn read(&mut self, buf: &mut [u8], scratch: &mut [u8]) -> io::Result<usize> {
        loop {
            // Decrypted bytes first: rustls refuses more ciphertext while they pile up.
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.unfed.is_empty() {
                if self.drained {
                    self.drained = false;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = self.sock.read(scratch)?;
                if n == 0 {
                    return Ok(0);
                }
                self.drained = n < scratch.len();
                self.unfed = 0..n;
            }
            let mut src = &scratch[self.unfed.clone()];
            let taken = self.tls.read_tls(&mut src)?;
            if taken == 0 {
                return Ok(0); // after close_notify rustls takes nothing more
            }
            self.unfed.start += taken;
            if let Err(e) = self.tls.process_new_packets() {
                let _ = self.write_tls(); // the alert rustls queued
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Handshake flights (and alerts, key updates) go out as soon as rustls has them.
            self.write_tls()?;
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // Encrypts at once after the handshake (buffers the plaintext until then), up to
            // rustls' buffer limit (64 KB by default).
            let n = self.tls.writer().write(buf)?;
            let flushed = self.write_tls()?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // rustls' buffer is full: of ciphertext the socket did not take (a writable edge
            // follows), or of plaintext waiting for the handshake (a readable edge follows).
            if !flushed || self.tls.is_handshaking() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }

    /// Write queued ciphertext until none is left (Ok(true)) or the socket is full (Ok(false)).
    fn write_tls(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Client TLS settings: trust the CA certificates in `cafile`, ring provider, TLS 1.2 and 1.3
/// (rustls' safe defaults, its default cipher suite order). Session resumption is off, so
/// every connection costs a full handshake, as the same number of distinct devices would.
fn tls_client_config(cafile: &Path) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(cafile).map_err(|e| format!("{}: {e}", cafile.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", cafile.display()))?;
        roots.add(cert).map_err(|e| format!("{}: {e}", cafile.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate", cafile.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

// ---------------------------------------------------------------- connection

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum St {
    TcpConnecting,
    WsHandshake,
    MqttConnect,
    Subscribing,
    Ready,
    Dead,
}

pub(crate) struct Conn {
    stream: Stream,
    ws: bool,
    pub(crate) st: St,
    pub(crate) client_id: String,
    pub(crate) sub: Option<(String, u8)>,
    host: String,
    path: String,
    pub(crate) out: Vec<u8>,
    opos: usize,
    // Receive side: streaming, nothing is buffered per connection except partial headers.
    /// HTTP upgrade response bytes until its end (WsHandshake only).
    hs: Vec<u8>,
    /// WebSocket frame header bytes gathered so far (a header may straddle reads).
    pub(crate) ws_hdr: [u8; 14],
    pub(crate) ws_hlen: usize,
    /// Payload bytes left in the current WebSocket frame; 0 = a frame header comes next.
    pub(crate) ws_left: u64,
    pub(crate) ws_op: u8,
    pub(crate) ws_mask: Option<[u8; 4]>,
    /// Mask phase: payload bytes of the current frame already unmasked, mod 4.
    pub(crate) ws_moff: usize,
    /// Payload of the current control frame (ping/close; at most 125 bytes).
    pub(crate) ws_ctl: Vec<u8>,
    /// MQTT bytes of an incomplete packet head (fixed header + PUBLISH variable header) or of a
    /// whole small non-PUBLISH packet, when a read or WebSocket frame boundary splits it.
    pub(crate) carry: Vec<u8>,
    /// PUBLISH payload bytes still to skip (the payload is counted, never copied).
    pub(crate) skip: usize,
    /// Payload length, and packet id to acknowledge (QoS 1), of the PUBLISH being skipped.
    pub(crate) cur_pay: usize,
    pub(crate) cur_ack: Option<[u8; 2]>,
    /// First payload bytes of the current PUBLISH (the send timestamp) when latency is recorded.
    pub(crate) lat_want: usize,
    pub(crate) lat_have: usize,
    pub(crate) lat_buf: [u8; 8],
    /// now_ns() cached for one read (0 = not taken yet).
    pub(crate) now: u64,
    /// The last PUBLISH had a large payload (at least DISCARD_MIN bytes).
    pub(crate) big: bool,
    /// Open-loop publishing (flood scenario): whole packets written straight from a shared
    /// ring whenever the socket accepts bytes; nothing is queued in user space.
    flood: Option<Flood>,
    /// Bytes of flood packets the kernel accepted, and the size of one packet.
    pub(crate) flood_written: u64,
    pub(crate) flood_unit: usize,
    // stats
    pub(crate) pubs: u64,
    pub(crate) pub_bytes: u64,
    pub(crate) acks: u64,
    pub(crate) inflight: usize,
    next_pid: u16,
    pub(crate) record_lat: bool,
    pub(crate) lat: Vec<(u64, u64)>, // (send ts, latency) in ns
    counted: u64,
    pub(crate) dbg_read: u64,
    pub(crate) dbg_ws: u64,
    pub(crate) dbg_frames: u64,
    pub(crate) err: Option<String>,
}

struct Flood {
    ring: Arc<Vec<u8>>,
    /// Offset of the next byte to write; the ring is a whole number of packets, so
    /// `off % unit == flood_written % unit`.
    off: usize,
    stop: bool,
}

/// One read buffer shared by all connections of a `Net` (data is parsed in place).
const RBUF_SIZE: usize = 256 * 1024;

impl Conn {
    fn new(
        addr: SocketAddr,
        ws: bool,
        tls: Option<&Arc<ClientConfig>>,
        client_id: String,
        sub: Option<(String, u8)>,
        path: &str,
    ) -> Result<Conn, String> {
        let sock = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        let stream = match tls {
            None => Stream::Plain(sock),
            Some(config) => {
                // The ClientHello is queued now and goes out once the TCP connect completes.
                let name = ServerName::IpAddress(addr.ip().into());
                let tls = ClientConnection::new(Arc::clone(config), name).map_err(|e| format!("TLS: {e}"))?;
                Stream::Tls(Box::new(TlsStream { sock, tls, unfed: 0..0, drained: false }))
            }
        };
        Ok(Conn {
            stream,
            ws,
            st: St::TcpConnecting,
            client_id,
            sub,
            host: addr.to_string(),
            path: path.to_string(),
            out: Vec::new(),
            opos: 0,
            hs: Vec::new(),
            ws_hdr: [0; 14],
            ws_hlen: 0,
            ws_left: 0,
            ws_op: 0,
            ws_mask: None,
            ws_moff: 0,
            ws_ctl: Vec::new(),
            carry: Vec::new(),
            skip: 0,
            cur_pay: 0,
            cur_ack: None,
            lat_want: 0,
            lat_have: 0,
            lat_buf: [0; 8],
            now: 0,
            big: false,
            flood: None,
            flood_written: 0,
            flood_unit: 1,
            pubs: 0,
            pub_bytes: 0,
            acks: 0,
            inflight: 0,
            next_pid: 1,
            record_lat: false,
            lat: Vec::new(),
            counted: 0,
            dbg_read: 0,
            dbg_ws: 0,
            dbg_frames: 0,
            err: None,
        })
    }

    pub(crate) fn fail(&mut self, e: String) {
        if self.st != St::Dead {
            self.err = Some(format!("{}: {e}", self.client_id));
            self.st = St::Dead;
        }
    }

    #[inline]
    pub(crate) fn pending(&self) -> usize {
        self.out.len() - self.opos
    }

    pub(crate) fn send_mqtt(&mut self, pkt: &[u8]) {
        if self.ws {
            ws_frame(&mut self.out, pkt);
        } else {
            self.out.extend_from_slice(pkt);
        }
    }

    pub(crate) fn alloc_pid(&mut self) -> u16 {
        let p = self.next_pid;
        self.next_pid = if p == u16::MAX { 1 } else { p + 1 };
        p
    }

    pub(crate) fn flush(&mut self) {
        if self.st == St::Dead || self.st == St::TcpConnecting {
            return;
        }
        if let Err(e) = self.stream.flush_tls() {
            self.fail(format!("write: {e}"));
            return;
        }
        while self.opos < self.out.len() {
            match self.stream.write(&self.out[self.opos..]) {
                Ok(0) => {
                    self.fail("write returned 0".into());
                    return;
                }
                Ok(n) => self.opos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(format!("write: {e}"));
                    return;
                }
            }
        }
        if self.opos == self.out.len() {
            self.out.clear();
            self.opos = 0;
            self.flood_write();
        } else if self.opos > (1 << 20) {
            self.out.drain(..self.opos);
            self.opos = 0;
        }
    }

    /// Start publishing open loop: `ring` holds whole packets of `unit` bytes back to back
    /// (already framed for the transport) and is written again and again, as fast as the
    /// socket takes it. Memory stays bounded: only what the kernel accepted is "refilled".
    pub(crate) fn flood_start(&mut self, ring: Arc<Vec<u8>>, unit: usize) {
        debug_assert!(unit > 0 && ring.len() % unit == 0);
        self.flood_unit = unit;
        self.flood = Some(Flood { ring, off: 0, stop: false });
        self.flush();
    }

    /// Stop publishing at the next packet boundary (the packet the kernel took part of is
    /// completed, so the broker never sees a truncated one).
    pub(crate) fn flood_stop(&mut self) {
        if let Some(f) = self.flood.as_mut() {
            f.stop = true;
        }
        self.flush();
    }

    /// True while flood bytes remain to be written (running, or completing its last packet).
    pub(crate) fn flooding(&self) -> bool {
        self.flood.is_some()
    }

    /// Whole flood packets the kernel accepted.
    pub(crate) fn flood_packets(&self) -> u64 {
        self.flood_written / self.flood_unit as u64
    }

    fn flood_write(&mut self) {
        if self.st != St::Ready {
            return;
        }
        let unit = self.flood_unit;
        loop {
            let Some(f) = self.flood.as_mut() else { return };
            let end = if f.stop {
                let rem = (unit - (self.flood_written % unit as u64) as usize) % unit;
                if rem == 0 {
                    self.flood = None;
                    return;
                }
                f.off + rem
            } else {
                f.ring.len()
            };
            match self.stream.write(&f.ring[f.off..end]) {
                Ok(0) => {
                    self.fail("write returned 0".into());
                    return;
                }
                Ok(n) => {
                    f.off += n;
                    if f.off == f.ring.len() {
                        f.off = 0;
                    }
                    self.flood_written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(format!("write: {e}"));
                    return;
                }
            }
        }
    }

    /// Called on any event while the TCP connect is in progress.
    fn check_connected(&mut self) {
        match self.stream.tcp().take_error() {
            Ok(Some(e)) | Err(e) => {
                self.fail(format!("connect: {e}"));
                return;
            }
            Ok(None) => {}
        }
        match self.stream.tcp().peer_addr() {
            Ok(_) => {
                let _ = self.stream.tcp().set_nodelay(true);
                if self.ws {
                    let req = format!(
                        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
                        self.path, self.host, WS_KEY
                    );
                    self.out.extend_from_slice(req.as_bytes());
                    self.st = St::WsHandshake;
                } else {
                    self.send_connect();
                }
                self.flush();
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => self.fail(format!("connect: {e}")),
        }
    }

    fn send_connect(&mut self) {
        let pkt = enc_connect(&self.client_id, 600);
        self.send_mqtt(&pkt);
        self.st = St::MqttConnect;
    }

    /// Handle an event. Returns the number of PUBLISH packets received.
    fn on_event(&mut self, readable: bool, writable: bool, rbuf: &mut [u8], scratch: &mut [u8]) -> u64 {
        if self.st == St::Dead {
            return 0;
        }
        if self.st == St::TcpConnecting {
            self.check_connected();
            if self.st == St::TcpConnecting || self.st == St::Dead {
                return 0;
            }
        }
        let mut n = 0;
        if readable {
            n = self.on_readable(rbuf, scratch);
        }
        if writable || self.pending() > 0 {
            self.flush();
        }
        n
    }

    /// Read until the socket is drained, parsing every chunk in place in `rbuf` (shared by all
    /// connections): the cost per read is independent of message and WebSocket frame sizes.
    /// `scratch` (also shared) takes the ciphertext of a TLS stream.
    fn on_readable(&mut self, rbuf: &mut [u8], scratch: &mut [u8]) -> u64 {
        let mut got = 0;
        loop {
            // In the middle of a large PUBLISH payload: let the kernel drop it without copying.
            let k = self.discardable();
            if k > 0 {
                match discard(self.stream.tcp(), k) {
                    Ok(0) => {
                        self.fail("connection closed by broker".into());
                        return got;
                    }
                    Ok(n) => {
                        self.dbg_read += n as u64;
                        self.now = 0;
                        self.skipped(n);
                        got += used_to_count(self);
                        if n < k {
                            return got; // drained
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.fail(format!("read: {e}"));
                        return got;
                    }
                }
            }
            // While large PUBLISHes arrive, read only a little at a packet head, so that the
            // payload behind it is dropped by `discard` instead of being copied (never under
            // TLS: every byte has to be decrypted anyway).
            let want = if self.big && discard_enabled() && !self.stream.is_tls() { HEAD_READ } else { rbuf.len() };
            match self.stream.read(&mut rbuf[..want], scratch) {
                Ok(0) => {
                    self.fail("connection closed by broker".into());
                    return got;
                }
                Ok(n) => {
                    self.dbg_read += n as u64;
                    self.now = 0;
                    self.input(&mut rbuf[..n]);
                    got += used_to_count(self);
                    if self.st == St::Dead {
                        return got;
                    }
                    if n < want && !self.stream.is_tls() {
                        // Short read: the receive queue is drained; new data raises a new edge.
                        // (TLS hands out plaintext a record or so at a time; it says
                        // WouldBlock when the socket is drained.)
                        return got;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(format!("read: {e}"));
                    return got;
                }
            }
        }
    }

    /// How many of the next socket bytes are PUBLISH payload that nobody looks at (worth
    /// discarding in the kernel: at least DISCARD_MIN), else 0.
    #[inline]
    fn discardable(&self) -> usize {
        if self.skip < DISCARD_MIN || self.lat_have < self.lat_want || !discard_enabled() || self.stream.is_tls() {
            return 0;
        }
        if self.ws {
            if self.ws_op > 2 || self.ws_left < DISCARD_MIN as u64 {
                return 0;
            }
            return self.skip.min(self.ws_left.min(usize::MAX as u64) as usize);
        }
        self.skip
    }

    /// `n` payload bytes of the current PUBLISH (and WebSocket frame) were discarded unread.
    fn skipped(&mut self, n: usize) {
        if self.ws {
            self.dbg_ws += n as u64;
            self.ws_left -= n as u64;
            self.ws_moff = (self.ws_moff + n) & 3;
        }
        self.skip -= n;
        if self.skip == 0 {
            self.end_publish();
        }
        if self.ws && self.ws_left == 0 {
            self.end_frame();
        }
    }

    /// Consume one chunk of bytes read from the socket.
    fn input(&mut self, data: &mut [u8]) {
        if self.st == St::WsHandshake {
            self.hs.extend_from_slice(data);
            let Some(end) = self.hs.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.hs.len() > 16384 {
                    self.fail("oversized handshake response".into());
                }
                return;
            };
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let ok = match resp.parse(&self.hs[..end + 4]) {
                Ok(httparse::Status::Complete(_)) => {
                    let code = resp.code.unwrap_or(0);
                    let accept = resp
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_string());
                    if code != 101 {
                        Err(format!("websocket handshake: HTTP {code}"))
                    } else if accept.as_deref() != Some(ws_expected_accept().as_str()) {
                        Err("websocket handshake: bad Sec-WebSocket-Accept".to_string())
                    } else {
                        Ok(())
                    }
                }
                _ => Err("websocket handshake: unparsable response".to_string()),
            };
            if let Err(e) = ok {
                self.fail(e);
                return;
            }
            let mut rest = self.hs.split_off(end + 4);
            self.hs = Vec::new();
            self.send_connect();
            self.feed_ws(&mut rest);
            return;
        }
        if self.ws {
            self.feed_ws(data);
        } else {
            self.feed_mqtt(data);
        }
    }
}

/// Payload runs at least this long are dropped in the kernel (recv with MSG_TRUNC).
pub(crate) const DISCARD_MIN: usize = 4096;

/// Read size at a packet head while large PUBLISHes arrive.
const HEAD_READ: usize = 512;

/// Discarding large payloads in the kernel can be turned off with LOADGEN_COPY=1 (then
/// every byte is read into user space, like an ordinary client).
fn discard_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("LOADGEN_COPY").is_none())
}

/// Drop up to `n` bytes from the socket's receive queue without copying them (Linux TCP:
/// recv(2) with MSG_TRUNC discards the data). Returns the number of bytes dropped.
fn discard(sock: &TcpStream, n: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn recv(fd: i32, buf: *mut std::ffi::c_void, len: usize, flags: i32) -> isize;
    }
    const MSG_TRUNC: i32 = 0x20;
    const MSG_DONTWAIT: i32 = 0x40;
    // SAFETY: with MSG_TRUNC a TCP socket copies nothing into the (null) buffer.
    let r = unsafe { recv(sock.as_raw_fd(), std::ptr::null_mut(), n, MSG_TRUNC | MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn used_to_count(c: &mut Conn) -> u64 {
    let n = c.pubs - c.counted;
    c.counted = c.pubs;
    n
}

// ---------------------------------------------------------------- event loop

pub(crate) struct Net {
    poll: Poll,
    pub(crate) events: Events,
    pub(crate) conns: Vec<Conn>,
    addr: SocketAddr,
    ws: bool,
    tls: Option<Arc<ClientConfig>>,
    path: String,
    pub(crate) received: u64, // PUBLISH packets received over all conns
    rbuf: Vec<u8>,
    /// Ciphertext read buffer shared by all TLS connections (empty without TLS).
    tls_rbuf: Vec<u8>,
}

impl Net {
    pub(crate) fn new(a: &Args) -> Net {
        let tls = a.tls.as_deref().map(|ca| tls_client_config(ca).unwrap_or_else(|e| crate::fail_out(a, &e)));
        Net {
            poll: Poll::new().expect("poll"),
            events: Events::with_capacity(4096),
            conns: Vec::new(),
            addr: a.addr,
            ws: a.ws,
            tls_rbuf: if tls.is_some() { vec![0; RBUF_SIZE] } else { Vec::new() },
            tls,
            path: a.path.clone(),
            received: 0,
            rbuf: vec![0; RBUF_SIZE],
        }
    }

    /// (TLS version, cipher suite) the first connection negotiated, when TLS is on.
    pub(crate) fn tls_params(&self) -> Option<(String, String)> {
        self.conns.iter().find_map(|c| c.stream.tls_params())
    }

    fn add(&mut self, client_id: String, sub: Option<(String, u8)>) -> Result<usize, String> {
        let mut c = Conn::new(self.addr, self.ws, self.tls.as_ref(), client_id, sub, &self.path)?;
        let idx = self.conns.len();
        self.poll
            .registry()
            .register(c.stream.tcp_mut(), Token(idx), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        self.conns.push(c);
        Ok(idx)
    }

    /// One poll round; dispatches events. Returns Err on the first dead connection.
    pub(crate) fn turn(&mut self, timeout: Duration) -> Result<(), String> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("poll: {e}")),
        }
        for ev in self.events.iter() {
            let i = ev.token().0;
            let c = &mut self.conns[i];
            self.received += c.on_event(
                ev.is_readable() || ev.is_read_closed(),
                ev.is_writable(),
                &mut self.rbuf,
                &mut self.tls_rbuf,
            );
            if c.st == St::Dead {
                return Err(c.err.clone().unwrap_or_else(|| "connection died".into()));
            }
        }
        Ok(())
    }

    /// Open connections for `ids` (client id, optional subscription) with at most `batch`
    /// handshakes in flight; returns when all are Ready.
    pub(crate) fn establish(
        &mut self,
        specs: Vec<(String, Option<(String, u8)>)>,
        batch: usize,
        deadline: Instant,
    ) -> Result<Vec<usize>, String> {
        let first = self.conns.len();
        let total = specs.len();
        let mut it = specs.into_iter();
        let mut opened = 0;
        let mut ready_scan = first; // all conns before this index are Ready
        loop {
            while ready_scan < self.conns.len() && self.conns[ready_scan].st == St::Ready {
                ready_scan += 1;
            }
            let in_progress = self.conns.len() - ready_scan;
            if opened == total && in_progress == 0 {
                break;
            }
            // Count not-ready in the window [ready_scan, len): approximate pending by scanning.
            let pending = self.conns[ready_scan..].iter().filter(|c| c.st != St::Ready).count();
            let mut room = batch.saturating_sub(pending);
            let _ = in_progress;
            while room > 0 && opened < total {
                let (id, sub) = it.next().unwrap();
                self.add(id, sub)?;
                opened += 1;
                room -= 1;
            }
            if Instant::now() > deadline {
                let ready = self.conns[first..].iter().filter(|c| c.st == St::Ready).count();
                return Err(format!("timeout establishing connections: {ready}/{total} ready"));
            }
            self.turn(Duration::from_millis(5))?;
        }
        Ok((first..first + total).collect())
    }
}
