//! Tests for the opening handshake; names cite the rule each one proves.
//! Test-only: included under #[cfg(test)] by the parent module.

use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn req_with(lines: &[&str]) -> Vec<u8> {
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// A valid upgrade with `extra` headers appended and `drop` headers (by name prefix) removed.
fn upgrade(extra: &[&str], drop: &[&str]) -> Vec<u8> {
    let base = [
        "GET /mqtt HTTP/1.1",
        "Host: broker.example:8080",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: mqtt",
    ];
    let mut lines: Vec<&str> = base.iter().copied().filter(|l| !drop.iter().any(|d| l.starts_with(d))).collect();
    lines.extend_from_slice(extra);
    req_with(&lines)
}

fn run(buf: &[u8]) -> HandshakeOutcome {
    handle_request(buf, &HandshakeConfig::default(), "10.0.0.1")
}

/// Checks a refusal is a well-formed HTTP answer and returns (error, response text).
fn rejected(out: HandshakeOutcome) -> (HandshakeError, String) {
    let HandshakeOutcome::Reject { response, error } = out else {
        panic!("expected Reject, got {out:?}");
    };
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = resp.parse(&response) else {
        panic!("bad response {:?}", String::from_utf8_lossy(&response));
    };
    assert_eq!(resp.version, Some(1));
    assert_eq!(resp.code, Some(error.status()));
    let get = |n: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(n))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    assert_eq!(get("content-type").as_deref(), Some("text/plain"));
    assert_eq!(get("connection").as_deref(), Some("close"));
    let body_len = response.len() - head;
    assert!(body_len > 0);
    assert_eq!(get("content-length"), Some(body_len.to_string()));
    (error, String::from_utf8_lossy(&response).into_owned())
}

fn rejected_with(buf: &[u8], error: HandshakeError) -> String {
    let (e, text) = rejected(run(buf));
    assert_eq!(e, error, "{text}");
    text
}

#[test]
fn rfc6455_4_2_2_sample_key() {
    assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn rfc6455_4_2_2_valid_upgrade_accepted() {
    let buf = upgrade(&[], &[]);
    let out = run(&buf);
    let expected = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                    Sec-WebSocket-Protocol: mqtt\r\n\r\n";
    assert_eq!(
        out,
        HandshakeOutcome::Accept {
            response: expected.as_bytes().to_vec(),
            consumed: buf.len(),
            subprotocol: "mqtt",
            forwarded_for: None,
        }
    );
}

#[test]
fn rfc6455_4_2_1_request_fed_one_byte_at_a_time() {
    let mut buf = upgrade(&[], &[]);
    let head = buf.len();
    buf.extend_from_slice(&[0x82, 0x80, 1, 2, 3, 4]);
    for k in 0..head {
        assert_eq!(run(&buf[..k]), HandshakeOutcome::Partial, "at {k}");
    }
    for k in head..=buf.len() {
        let HandshakeOutcome::Accept { consumed, .. } = run(&buf[..k]) else {
            panic!("not accepted at {k}");
        };
        // Bytes after the head are frames, left for the frame decoder.
        assert_eq!(consumed, head);
    }
}

#[test]
fn head_over_max_request_bytes_is_431() {
    let cfg = HandshakeConfig { max_request_bytes: 64, ..HandshakeConfig::default() };
    let partial = b"GET /mqtt HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_eq!(handle_request(&partial[..60], &cfg, ""), HandshakeOutcome::Partial);
    let (e, _) = rejected(handle_request(partial, &cfg, ""));
    assert_eq!(e, HandshakeError::HeadTooLarge);
    assert_eq!(e.status(), 431);
    // A complete head larger than the limit too.
    let (e, _) = rejected(handle_request(&upgrade(&[], &[]), &cfg, ""));
    assert_eq!(e, HandshakeError::HeadTooLarge);
}

/// Found by fuzzing (http_upgrade): a malformed line past the limit made the whole head a 400
/// while the same bytes read in pieces were refused with 431 once the limit was passed.
#[test]
fn head_over_max_request_bytes_is_431_however_it_is_read() {
    let config = HandshakeConfig { max_request_bytes: 64, ..HandshakeConfig::default() };
    let mut head = b"GET /mqtt HTTP/1.1\r\nHost: ".to_vec();
    head.extend_from_slice(&[b'h'; 60]);
    head.extend_from_slice(b"\r\n\x01bad\r\n\r\n");
    for cut in 1..head.len() {
        let mut outcome = handle_request(&head[..cut], &config, "10.0.0.1");
        if outcome == HandshakeOutcome::Partial {
            outcome = handle_request(&head, &config, "10.0.0.1");
        }
        assert_eq!(rejected(outcome).0, HandshakeError::HeadTooLarge, "first read of {cut} bytes");
    }
}

/// Found by fuzzing (http_upgrade): a second Sec-WebSocket-Key that was not UTF-8 was skipped
/// as absent, so a request with two keys was accepted; a garbage Origin passed the allow list.
#[test]
fn header_values_read_must_be_utf8_else_400() {
    let mut twice = upgrade(&[], &[]);
    twice.truncate(twice.len() - 2);
    twice.extend_from_slice(b"Sec-WebSocket-Key: dGhl\xd3\xd3\r\n\r\n");
    assert_eq!(rejected(run(&twice)).0, HandshakeError::Malformed);

    let config = HandshakeConfig { allowed_origins: vec!["http://ok.example".into()], ..HandshakeConfig::default() };
    let mut origin = upgrade(&[], &[]);
    origin.truncate(origin.len() - 2);
    origin.extend_from_slice(b"Origin: http://\xff\r\n\r\n");
    assert_eq!(rejected(handle_request(&origin, &config, "10.0.0.1")).0, HandshakeError::Malformed);

    // Headers the handshake does not read may carry any bytes.
    let mut other = upgrade(&[], &[]);
    other.truncate(other.len() - 2);
    other.extend_from_slice(b"X-Opaque: \xff\xfe\r\n\r\n");
    assert!(matches!(run(&other), HandshakeOutcome::Accept { .. }));
}

#[test]
fn too_many_headers_is_431() {
    let lines: Vec<String> = (0..40).map(|i| format!("X-H{i}: v")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    rejected_with(&upgrade(&lines, &[]), HandshakeError::TooManyHeaders);
}

#[test]
fn garbage_is_400() {
    // MQTT CONNECT sent to the WebSocket port, a TLS ClientHello, and broken HTTP.
    for g in [
        &b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET /mqtt HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /mqtt HTTP/9.9\r\n\r\n",
    ] {
        let (e, _) = rejected(run(g));
        assert_eq!(e, HandshakeError::Malformed);
        assert_eq!(e.status(), 400);
    }
}

#[test]
fn rfc6455_4_2_1_method_not_get_is_405() {
    let mut buf = upgrade(&[], &[]);
    buf.splice(0..3, b"POST".iter().copied());
    let text = rejected_with(&buf, HandshakeError::MethodNotAllowed);
    assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    assert!(text.contains("\r\nAllow: GET\r\n"));
}

#[test]
fn rfc6455_4_2_1_http_1_0_is_400() {
    let buf = String::from_utf8_lossy(&upgrade(&[], &[])).replace("HTTP/1.1", "HTTP/1.0");
    rejected_with(buf.as_bytes(), HandshakeError::HttpVersion);
}

#[test]
fn rfc6455_4_2_1_missing_host_is_400() {
    rejected_with(&upgrade(&[], &["Host"]), HandshakeError::MissingHost);
}

#[test]
fn rfc6455_4_2_1_upgrade_without_connection_upgrade_is_400() {
    rejected_with(&upgrade(&["Connection: keep-alive"], &["Connection"]), HandshakeError::MissingConnectionUpgrade);
}

#[test]
fn rfc6455_4_2_1_upgrade_and_connection_tokens_are_case_insensitive_lists() {
    let buf = upgrade(&["Upgrade: h2c, WebSocket", "Connection: keep-alive,  UPGRADE"], &["Upgrade", "Connection"]);
    assert!(matches!(run(&buf), HandshakeOutcome::Accept { .. }));
    // Firefox sends "Connection: keep-alive, Upgrade".
    let buf = upgrade(&["Connection: keep-alive, Upgrade"], &["Connection"]);
    assert!(matches!(run(&buf), HandshakeOutcome::Accept { .. }));
}

#[test]
fn plain_get_of_websocket_path_is_426_with_explanation() {
    let buf = req_with(&["GET /mqtt HTTP/1.1", "Host: b"]);
    let text = rejected_with(&buf, HandshakeError::UpgradeRequired);
    assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    assert!(text.contains("\r\nUpgrade: websocket\r\n"));
    assert!(text.contains("MQTT-over-WebSocket endpoint"));
}

#[test]
fn plain_get_of_root_is_200_info_page() {
    let buf = req_with(&["GET / HTTP/1.1", "Host: broker.example:8080"]);
    let text = rejected_with(&buf, HandshakeError::InfoPage);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.ends_with("\r\n\r\nmidge MQTT broker\nMQTT over WebSocket: ws://broker.example:8080/mqtt\n"));
}

#[test]
fn plain_get_of_other_path_is_404() {
    let buf = req_with(&["GET /favicon.ico HTTP/1.1", "Host: b"]);
    rejected_with(&buf, HandshakeError::NotFound);
}

#[test]
fn rfc6455_4_2_1_missing_key_is_400() {
    rejected_with(&upgrade(&[], &["Sec-WebSocket-Key"]), HandshakeError::MissingKey);
}

#[test]
fn rfc6455_4_2_1_key_not_16_bytes_is_400() {
    for key in [
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j",     // 15 bytes
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSE=", // 17 bytes
        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA", // 18 bytes, no padding
        "Sec-WebSocket-Key: not base64 at all!!!!!!",  // invalid
        "Sec-WebSocket-Key: ",                         // empty
    ] {
        rejected_with(&upgrade(&[key], &["Sec-WebSocket-Key"]), HandshakeError::InvalidKey);
    }
    // Two keys are ambiguous.
    rejected_with(&upgrade(&["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="], &[]), HandshakeError::InvalidKey);
}

#[test]
fn rfc6455_4_2_2_version_not_13_is_426_naming_13() {
    for v in [&["Sec-WebSocket-Version: 8"][..], &[]] {
        let text = rejected_with(&upgrade(v, &["Sec-WebSocket-Version"]), HandshakeError::UnsupportedVersion);
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    }
}

#[test]
fn rfc6455_4_2_1_wrong_path_is_404_and_query_is_ignored() {
    let buf = String::from_utf8_lossy(&upgrade(&[], &[])).replace("/mqtt", "/ws");
    rejected_with(buf.as_bytes(), HandshakeError::NotFound);
    let buf = String::from_utf8_lossy(&upgrade(&[], &[])).replace("/mqtt", "/mqtt?token=x");
    assert!(matches!(run(buf.as_bytes()), HandshakeOutcome::Accept { .. }));
}

#[test]
fn rfc6455_4_2_2_origin_not_allowed_is_403() {
    let cfg = HandshakeConfig { allowed_origins: vec!["https://app.example".into()], ..HandshakeConfig::default() };
    let out = handle_request(&upgrade(&["Origin: https://evil.example"], &[]), &cfg, "");
    let (e, _) = rejected(out);
    assert_eq!(e, HandshakeError::OriginNotAllowed);
    assert_eq!(e.status(), 403);
    let ok = |extra: &[&str]| matches!(handle_request(&upgrade(extra, &[]), &cfg, ""), HandshakeOutcome::Accept { .. });
    assert!(ok(&["Origin: HTTPS://App.Example"]));
    // Non-browser clients send no Origin.
    assert!(ok(&[]));
    // An empty list allows any origin.
    assert!(matches!(run(&upgrade(&["Origin: https://evil.example"], &[])), HandshakeOutcome::Accept { .. }));
}

fn subprotocol_of(protocols: &[&str]) -> &'static str {
    match run(&upgrade(protocols, &["Sec-WebSocket-Protocol"])) {
        HandshakeOutcome::Accept { subprotocol, response, .. } => {
            let text = String::from_utf8_lossy(&response).into_owned();
            assert!(text.ends_with(&format!("Sec-WebSocket-Protocol: {subprotocol}\r\n\r\n")));
            subprotocol
        }
        other => panic!("not accepted: {other:?}"),
    }
}

#[test]
fn mqtt_6_0_0_4_mqtt_subprotocol_selected() {
    assert_eq!(subprotocol_of(&["Sec-WebSocket-Protocol: mqtt"]), "mqtt");
    assert_eq!(subprotocol_of(&["Sec-WebSocket-Protocol: mqttv3.1 , mqtt"]), "mqtt");
    assert_eq!(subprotocol_of(&["Sec-WebSocket-Protocol: chat,mqttv3.1", "Sec-WebSocket-Protocol:  mqtt"]), "mqtt");
}

#[test]
fn older_paho_mqttv3_1_subprotocol_selected() {
    assert_eq!(subprotocol_of(&["Sec-WebSocket-Protocol: chat, mqttv3.1"]), "mqttv3.1");
}

#[test]
fn mqtt_6_0_0_3_missing_subprotocol_is_400_when_required() {
    for extra in [&[][..], &["Sec-WebSocket-Protocol: chat, MQTT"]] {
        let text = rejected_with(&upgrade(extra, &["Sec-WebSocket-Protocol"]), HandshakeError::SubprotocolRequired);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("mqtt WebSocket subprotocol is required (Sec-WebSocket-Protocol: mqtt)"));
    }
}

#[test]
fn missing_subprotocol_accepted_without_header_when_not_required() {
    let cfg = HandshakeConfig { require_subprotocol: false, ..HandshakeConfig::default() };
    let out = handle_request(&upgrade(&[], &["Sec-WebSocket-Protocol"]), &cfg, "");
    let HandshakeOutcome::Accept { response, subprotocol, .. } = out else {
        panic!("not accepted");
    };
    assert_eq!(subprotocol, "");
    assert!(!String::from_utf8_lossy(&response).contains("Sec-WebSocket-Protocol"));
}

fn forwarded(peer: &str, extra: &[&str]) -> Option<String> {
    let cfg = HandshakeConfig { trusted_proxies: vec!["127.0.0.1".into()], ..HandshakeConfig::default() };
    match handle_request(&upgrade(extra, &[]), &cfg, peer) {
        HandshakeOutcome::Accept { forwarded_for, .. } => forwarded_for,
        other => panic!("not accepted: {other:?}"),
    }
}

#[test]
fn forwarded_for_only_from_trusted_proxy() {
    let xff = "X-Forwarded-For:  203.0.113.7";
    assert_eq!(forwarded("127.0.0.1", &[xff]).as_deref(), Some("203.0.113.7"));
    assert_eq!(forwarded("127.0.0.1", &["X-Real-IP: 198.51.100.1"]).as_deref(), Some("198.51.100.1"));
    assert_eq!(forwarded("127.0.0.1", &[xff, "X-Real-IP: 198.51.100.1"]).as_deref(), Some("203.0.113.7"));
    assert_eq!(forwarded("127.0.0.1", &[]), None);
    assert_eq!(forwarded("192.0.2.9", &[xff]), None);
}

/// A client can write anything in front of the hops the proxies append: the right-most hop
/// that is not a trusted proxy is the client, and something that is not an address is ignored.
#[test]
fn forwarded_for_takes_the_right_most_untrusted_hop() {
    let cfg =
        HandshakeConfig { trusted_proxies: vec!["127.0.0.1".into(), "10.0.0.2".into()], ..HandshakeConfig::default() };
    let via = |extra: &[&str]| match handle_request(&upgrade(extra, &[]), &cfg, "127.0.0.1") {
        HandshakeOutcome::Accept { forwarded_for, .. } => forwarded_for,
        other => panic!("not accepted: {other:?}"),
    };
    // The client claimed 1.1.1.1; the outer proxy saw 203.0.113.7; the inner one 10.0.0.2.
    assert_eq!(via(&["X-Forwarded-For: 1.1.1.1, 203.0.113.7, 10.0.0.2"]).as_deref(), Some("203.0.113.7"));
    // Repeated headers are one list, in order.
    assert_eq!(via(&["X-Forwarded-For: 1.1.1.1", "X-Forwarded-For: 203.0.113.8"]).as_deref(), Some("203.0.113.8"));
    // Every hop a trusted proxy: the left-most.
    assert_eq!(via(&["X-Forwarded-For: 10.0.0.2, 127.0.0.1"]).as_deref(), Some("10.0.0.2"));
    assert_eq!(via(&["X-Forwarded-For: 2001:db8::1"]).as_deref(), Some("2001:db8::1"));
    // Not an address: not believed (the proxy's own address is used).
    assert_eq!(via(&["X-Forwarded-For: 1.1.1.1, evil"]), None);
    assert_eq!(via(&["X-Real-IP: <script>"]), None);
}

#[test]
fn every_error_has_a_status_and_message() {
    use HandshakeError::*;
    for e in [
        HeadTooLarge,
        TooManyHeaders,
        Malformed,
        MethodNotAllowed,
        HttpVersion,
        MissingHost,
        MissingConnectionUpgrade,
        MissingKey,
        InvalidKey,
        UnsupportedVersion,
        NotFound,
        OriginNotAllowed,
        SubprotocolRequired,
        UpgradeRequired,
        InfoPage,
    ] {
        assert!(matches!(e.status(), 200 | 400 | 403 | 404 | 405 | 426 | 431));
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rng = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let valid = upgrade(&["Origin: o", "X-Forwarded-For: 1.2.3.4"], &[]);
    let cfg = HandshakeConfig {
        allowed_origins: vec!["o".into()],
        trusted_proxies: vec!["p".into()],
        max_request_bytes: 300,
        ..HandshakeConfig::default()
    };
    for round in 0..20_000 {
        let buf: Vec<u8> = if round % 2 == 0 {
            let len = (rng() % 400) as usize;
            (0..len).map(|_| rng() as u8).collect()
        } else {
            // Mutate a few bytes of a valid request to reach the header checks.
            let mut b = valid.clone();
            for _ in 0..1 + rng() % 4 {
                let i = (rng() as usize) % b.len();
                b[i] = rng() as u8;
            }
            b.truncate((rng() as usize) % (b.len() + 1));
            b
        };
        let _ = handle_request(&buf, &cfg, "p");
    }
}
