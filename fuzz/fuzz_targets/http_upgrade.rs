//! WebSocket opening handshake on arbitrary request heads, fed the way a connection receives
//! them: after every read, `handle_request` sees everything received so far.
//!
//! Input: a selector byte (the listener's settings), a split plan (see `Splits`), then the bytes.
//! Checks:
//! - no panic;
//! - the outcome after incremental reads is the outcome for the whole input at once;
//! - an accept consumed exactly the request head (no more than `max_request_bytes`) and answers
//!   with a well-formed 101 whose Sec-WebSocket-Accept matches the request's key and whose
//!   subprotocol was offered;
//! - a refusal is a well-formed HTTP answer with the status of its error and an exact
//!   Content-Length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use midge::ws::handshake::{accept_key, handle_request};
use midge::ws::{HandshakeConfig, HandshakeOutcome};
use midge_fuzz::{Input, Splits};

const PEER: &str = "127.0.0.1";
const MAX_REQUEST_BYTES: [usize; 4] = [8192, 64, 200, 1024];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let sel = input.u8();
    let config = HandshakeConfig {
        path: if sel & 1 == 0 { "/mqtt" } else { "/" }.to_string(),
        require_subprotocol: sel & 2 == 0,
        allowed_origins: if sel & 4 == 0 {
            Vec::new()
        } else {
            vec!["http://ok.example".to_string(), " HTTP://Other.example ".to_string()]
        },
        max_request_bytes: MAX_REQUEST_BYTES[usize::from(sel >> 4 & 3)],
        trusted_proxies: if sel & 8 == 0 { Vec::new() } else { vec![PEER.to_string()] },
    };
    let splits = Splits::read(&mut input);
    let stream = input.rest();

    let whole = handle_request(stream, &config, PEER);
    let mut received = Vec::new();
    let mut incremental = HandshakeOutcome::Partial;
    for chunk in splits.chunks(stream) {
        received.extend_from_slice(chunk);
        incremental = handle_request(&received, &config, PEER);
        if incremental != HandshakeOutcome::Partial {
            break;
        }
    }
    assert_eq!(incremental, whole, "outcome depends on how the request was read ({} bytes)", received.len());

    match &whole {
        HandshakeOutcome::Partial => {
            assert!(stream.len() <= config.max_request_bytes, "Partial after {} bytes", stream.len());
        }
        HandshakeOutcome::Accept { response, consumed, subprotocol, forwarded_for } => {
            check_accept(stream, &config, response, *consumed, subprotocol);
            assert!(forwarded_for.is_none() || !config.trusted_proxies.is_empty(), "untrusted forwarded-for");
        }
        HandshakeOutcome::Reject { response, error } => {
            let (status, headers, head_len) = parse_response(response);
            assert_eq!(status, error.status(), "{error:?} answered with {status}");
            assert_eq!(header(&headers, "connection"), Some("close".to_string()));
            let length = header(&headers, "content-length").expect("Content-Length");
            assert_eq!(length, (response.len() - head_len).to_string(), "Content-Length differs from the body");
        }
    }
});

fn check_accept(stream: &[u8], config: &HandshakeConfig, response: &[u8], consumed: usize, subprotocol: &str) {
    assert!(consumed <= config.max_request_bytes, "accepted a {consumed}-byte head");
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    assert_eq!(req.parse(stream), Ok(httparse::Status::Complete(consumed)), "consumed is not the request head");
    assert_eq!(req.method, Some("GET"));
    let values = |name: &str| -> Vec<String> {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim_matches([' ', '\t']).to_string())
            .collect()
    };
    let keys = values("sec-websocket-key");
    assert_eq!(keys.len(), 1, "accepted with {} keys", keys.len());
    let offered: Vec<String> = values("sec-websocket-protocol")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim_matches([' ', '\t']).to_string())
        .collect();

    let (status, got, head_len) = parse_response(response);
    assert_eq!(status, 101);
    assert_eq!(head_len, response.len(), "101 has a body");
    assert_eq!(header(&got, "upgrade"), Some("websocket".to_string()));
    assert_eq!(header(&got, "connection"), Some("Upgrade".to_string()));
    assert_eq!(header(&got, "sec-websocket-accept"), Some(accept_key(&keys[0])));
    match subprotocol {
        "" => {
            assert!(!config.require_subprotocol, "no subprotocol though one is required");
            assert_eq!(header(&got, "sec-websocket-protocol"), None);
        }
        p => {
            assert!(offered.iter().any(|o| o == p), "subprotocol {p:?} not offered: {offered:?}");
            assert_eq!(header(&got, "sec-websocket-protocol"), Some(p.to_string()));
        }
    }
}

/// Status, headers (lower-cased name, value) and head length of a complete HTTP response.
fn parse_response(response: &[u8]) -> (u16, Vec<(String, String)>, usize) {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(response) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("malformed response {other:?}: {:?}", String::from_utf8_lossy(response)),
    };
    assert_eq!(resp.version, Some(1));
    let headers = resp
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8(h.value.to_vec()).expect("ASCII header value")))
        .collect();
    (resp.code.expect("status code"), headers, head_len)
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    let mut found = headers.iter().filter(|(n, _)| n == name);
    let first = found.next().map(|(_, v)| v.clone());
    assert!(found.next().is_none(), "header {name} repeated");
    first
}
