//! MQTT over WebSocket (RFC 6455, MQTT 3.1.1 chapter 6): the HTTP upgrade, the frame layer and
//! MQTT on top, with tungstenite as a well-behaved client and hand-built bytes for the rest.

mod common;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

// ---------------------------------------------------------------------------------------------
// tungstenite as a client
// ---------------------------------------------------------------------------------------------

type Tws = WebSocket<TcpStream>;

/// Upgrade with tungstenite offering `protocols`; returns the socket and the negotiated protocol.
fn tung_connect(addr: SocketAddr, protocols: &str) -> (Tws, Option<String>) {
    let mut req = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_str(protocols).unwrap());
    let config =
        WebSocketConfig { max_message_size: Some(8 << 20), max_frame_size: Some(8 << 20), ..Default::default() };
    let stream = tcp_connect(addr);
    let (ws, resp) = match tungstenite::client::client_with_config(req, stream, Some(config)) {
        Ok(ok) => ok,
        Err(e) => panic!("tungstenite handshake failed: {e}"),
    };
    let proto = resp.headers().get("Sec-WebSocket-Protocol").map(|v| v.to_str().unwrap().to_string());
    (ws, proto)
}

impl Wire for Tws {
    fn send_bytes(&mut self, data: &[u8]) -> io::Result<()> {
        self.send(Message::Binary(data.to_vec())).map_err(io::Error::other)
    }

    fn read_more(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self.read() {
            Ok(Message::Binary(b)) => {
                buf.extend_from_slice(&b);
                if b.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::WouldBlock, "empty message"));
                }
                Ok(b.len())
            }
            Ok(Message::Close(_)) => Ok(0),
            Ok(other) => panic!("unexpected message on an MQTT stream: {other:?}"),
            Err(tungstenite::Error::Io(e)) => Err(e),
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => Ok(0),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    fn set_timeout(&mut self, t: Duration) {
        self.get_mut().set_read_timeout(Some(t)).unwrap();
    }
}

fn tung_client(addr: SocketAddr, id: &str) -> Client<Tws> {
    let (ws, proto) = tung_connect(addr, "mqtt");
    assert_eq!(proto.as_deref(), Some("mqtt"));
    let mut c = Client::new(ws);
    c.connect_ok(id);
    c
}

// ---------------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------------

#[test]
fn ws_handshake_echoes_mqtt_subprotocol() {
    let b = TestBroker::start();
    let (ws, proto) = tung_connect(b.ws, "mqtt");
    assert_eq!(proto.as_deref(), Some("mqtt"));
    let mut c = Client::new(ws);
    c.send(&connect("tung"));
    c.expect_bytes(&[0x20, 2, 0, 0]);
    c.ping();
}

#[test]
fn ws_handshake_raw_response_exact() {
    let b = TestBroker::start();
    let (mut ws, head) = WsRaw::connect_with(b.ws, "/mqtt", Some("mqtt"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(header(&head, "connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")), "{head}");
    assert_eq!(header(&head, "sec-websocket-accept"), Some(WS_ACCEPT));
    assert_eq!(header(&head, "sec-websocket-protocol"), Some("mqtt"));
    // Nothing follows the head until the client speaks.
    assert!(ws.inbuf.is_empty());
    ws.send_raw(&binary(&connect("raw"))).unwrap();
    assert_eq!(
        ws.read_frame(),
        Frame { fin: true, rsv: 0, opcode: OP_BINARY, masked: false, payload: vec![0x20, 2, 0, 0] }
    );
}

#[test]
fn ws_handshake_mqttv31_only_echoes_mqttv31() {
    let b = TestBroker::start();
    let (ws, proto) = tung_connect(b.ws, "mqttv3.1");
    assert_eq!(proto.as_deref(), Some("mqttv3.1"));
    let mut c = Client::new(ws);
    c.send(&ConnectBuilder::new("paho-js").v31().build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
}

#[test]
fn ws_handshake_foo_then_mqtt_echoes_mqtt() {
    let b = TestBroker::start();
    let (ws, head) = WsRaw::connect_with(b.ws, "/mqtt", Some("foo, mqtt"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(header(&head, "sec-websocket-protocol"), Some("mqtt"), "{head}");
    let mut c = Client::new(ws);
    c.connect_ok("foo-mqtt");
}

#[test]
fn ws_handshake_mqttv31_and_mqtt_prefers_mqtt() {
    let b = TestBroker::start();
    let (_, head) = WsRaw::connect_with(b.ws, "/mqtt", Some("mqttv3.1, mqtt"));
    assert_eq!(header(&head, "sec-websocket-protocol"), Some("mqtt"), "{head}");
}

/// Send `request` raw to the WebSocket listener; return the response and check the connection
/// is then closed.
fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tcp_connect(addr);
    s.write_all(request).unwrap();
    let all = read_to_close(&mut s, READ_TIMEOUT);
    String::from_utf8_lossy(&all).into_owned()
}

fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

fn check_content_length(response: &str) {
    let head = response.split_once("\r\n\r\n").expect("complete head").0;
    let len: usize = header(head, "content-length").expect("Content-Length").parse().unwrap();
    assert_eq!(body_of(response).len(), len, "Content-Length mismatch: {response:?}");
}

#[test]
fn ws_handshake_without_subprotocol_400() {
    let b = TestBroker::start();
    let resp = http_exchange(b.ws, upgrade_request(b.ws, "/mqtt", None, "13").as_bytes());
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
    assert!(body_of(&resp).contains("mqtt"), "body should mention mqtt: {resp}");
    check_content_length(&resp);
}

#[test]
fn ws_handshake_unknown_subprotocol_only_400() {
    let b = TestBroker::start();
    let resp = http_exchange(b.ws, upgrade_request(b.ws, "/mqtt", Some("foo, MQTT"), "13").as_bytes());
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
    assert!(body_of(&resp).contains("mqtt"), "{resp}");
}

#[test]
fn ws_handshake_wrong_path_404() {
    let b = TestBroker::start();
    let resp = http_exchange(b.ws, upgrade_request(b.ws, "/other", Some("mqtt"), "13").as_bytes());
    assert!(resp.starts_with("HTTP/1.1 404 "), "{resp}");
    check_content_length(&resp);
}

#[test]
fn ws_handshake_path_with_query_accepted() {
    let b = TestBroker::start();
    let (_, head) = WsRaw::connect_with(b.ws, "/mqtt?token=abc", Some("mqtt"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}

#[test]
fn ws_handshake_version_12_426() {
    let b = TestBroker::start();
    let resp = http_exchange(b.ws, upgrade_request(b.ws, "/mqtt", Some("mqtt"), "12").as_bytes());
    assert!(resp.starts_with("HTTP/1.1 426 "), "{resp}");
    let head = resp.split_once("\r\n\r\n").unwrap().0;
    assert_eq!(header(head, "sec-websocket-version"), Some("13"), "{resp}");
}

#[test]
fn ws_handshake_post_405() {
    let b = TestBroker::start();
    let req = upgrade_request(b.ws, "/mqtt", Some("mqtt"), "13").replacen("GET", "POST", 1);
    let resp = http_exchange(b.ws, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 405 "), "{resp}");
}

#[test]
fn ws_handshake_bad_key_400() {
    let b = TestBroker::start();
    let req = upgrade_request(b.ws, "/mqtt", Some("mqtt"), "13").replace(WS_KEY, "short");
    let resp = http_exchange(b.ws, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
}

#[test]
fn ws_handshake_head_too_large_431() {
    let b = TestBroker::start();
    let mut req = upgrade_request(b.ws, "/mqtt", Some("mqtt"), "13");
    req.truncate(req.len() - 2);
    req.push_str(&format!("X-Padding: {}\r\n\r\n", "p".repeat(10_000)));
    let mut s = tcp_connect(b.ws);
    // The broker may answer and close before all of it is written.
    let _ = s.write_all(req.as_bytes());
    let resp = String::from_utf8_lossy(&read_to_close(&mut s, READ_TIMEOUT)).into_owned();
    assert!(resp.starts_with("HTTP/1.1 431 "), "{resp}");
}

#[test]
fn ws_plain_get_without_upgrade_gets_http_answer() {
    let b = TestBroker::start();
    let host = b.ws;
    let on_path = http_exchange(b.ws, format!("GET /mqtt HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    assert!(on_path.starts_with("HTTP/1.1 426 "), "{on_path}");
    check_content_length(&on_path);
    let root = http_exchange(b.ws, format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    assert!(root.starts_with("HTTP/1.1 200 "), "{root}");
    assert!(body_of(&root).contains("/mqtt"), "{root}");
    let other = http_exchange(b.ws, format!("GET /favicon.ico HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
}

#[test]
fn ws_garbage_instead_of_http_400_or_close_and_broker_serves_others() {
    let b = TestBroker::start();
    let mut watcher = ws_client(b.ws, "watcher");
    watcher.subscribe_ok(1, "g/#", 0);
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00",
        b"\x00\x00\x00\x00\r\n\r\n",
        b"HELLO WORLD THIS IS NOT HTTP\r\n\r\n",
        b"GET /mqtt HTTP/1.1\r\nHost x\r\n\r\n",
    ] {
        let mut s = tcp_connect(b.ws);
        s.write_all(garbage).unwrap();
        let resp = read_to_close(&mut s, READ_TIMEOUT);
        assert!(
            resp.is_empty() || resp.starts_with(b"HTTP/1.1 400 "),
            "garbage {garbage:02x?} got {:?}",
            String::from_utf8_lossy(&resp)
        );
    }
    let mut p = ws_client(b.ws, "pub");
    p.send(&publish0("g/after", b"fine"));
    assert_eq!(watcher.recv_publish().topic, "g/after");
}

#[test]
fn ws_handshake_request_in_one_byte_pieces() {
    let b = TestBroker::start();
    let mut s = tcp_connect(b.ws);
    let req = upgrade_request(b.ws, "/mqtt", Some("mqtt"), "13");
    for (i, byte) in req.as_bytes().iter().enumerate() {
        s.write_all(&[*byte]).unwrap();
        if i % 8 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (head, rest) = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(header(&head, "sec-websocket-accept"), Some(WS_ACCEPT));
    let mut c = Client::new(WsRaw { stream: s, inbuf: rest, split: 0 });
    c.connect_ok("slow-handshake");
}

#[test]
fn ws_handshake_and_connect_in_one_write() {
    let b = TestBroker::start();
    let mut s = tcp_connect(b.ws);
    let mut bytes = upgrade_request(b.ws, "/mqtt", Some("mqtt"), "13").into_bytes();
    bytes.extend(binary(&connect("eager")));
    s.write_all(&bytes).unwrap();
    let (head, rest) = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let mut ws = WsRaw { stream: s, inbuf: rest, split: 0 };
    assert_eq!(ws.read_frame().payload, [0x20, 2, 0, 0]);
}

#[test]
fn ws_handshake_timeout_closes() {
    let b = TestBroker::start_with(|c| c.connect_timeout = Duration::from_millis(300));
    let mut s = tcp_connect(b.ws);
    s.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n").unwrap();
    let start = Instant::now();
    let resp = read_to_close(&mut s, Duration::from_secs(2));
    assert!(start.elapsed() >= Duration::from_millis(200));
    // Whatever it says (perhaps nothing), it must not be an upgrade.
    assert!(!resp.starts_with(b"HTTP/1.1 101"));
}

#[test]
fn ws_connect_timeout_after_handshake_closes() {
    let b = TestBroker::start_with(|c| c.connect_timeout = Duration::from_millis(300));
    let mut ws = WsRaw::connect(b.ws);
    let start = Instant::now();
    // No CONNECT: the broker ends it (a close frame may come first).
    loop {
        match ws.try_read_frame(Duration::from_secs(2).saturating_sub(start.elapsed())) {
            Ok(None) => break,
            Ok(Some(f)) => assert_eq!(f.opcode, OP_CLOSE, "{f:?}"),
            Err(()) => panic!("not closed within 2 s"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Frames carrying MQTT
// ---------------------------------------------------------------------------------------------

#[test]
fn ws_connect_fragmented_over_continuation_frames() {
    let b = TestBroker::start();
    let mut ws = WsRaw::connect(b.ws);
    let c = connect("fragmented");
    let mut bytes = frame(false, OP_BINARY, &c[..3]);
    bytes.extend(frame(false, OP_CONT, &c[3..9]));
    bytes.extend(frame(false, OP_CONT, &[]));
    bytes.extend(frame(true, OP_CONT, &c[9..]));
    ws.send_raw(&bytes).unwrap();
    assert_eq!(
        ws.read_frame(),
        Frame { fin: true, rsv: 0, opcode: OP_BINARY, masked: false, payload: vec![0x20, 2, 0, 0] }
    );
}

#[test]
fn ws_connect_split_into_one_byte_frames() {
    let b = TestBroker::start();
    let mut ws = WsRaw::connect(b.ws);
    for (i, byte) in connect("one-byte-messages").iter().enumerate() {
        ws.send_raw(&binary(&[*byte])).unwrap();
        if i % 4 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(ws.read_frame().payload, [0x20, 2, 0, 0]);
    // One-byte fragments of one message, each written separately, header bytes too.
    let mut c = Client::new(ws);
    let sub = subscribe(5, &[("frag/#", 1)]);
    for (i, byte) in sub.iter().enumerate() {
        let f = frame(i + 1 == sub.len(), if i == 0 { OP_BINARY } else { OP_CONT }, &[*byte]);
        for piece in f {
            c.wire.send_raw(&[piece]).unwrap();
        }
    }
    c.expect_bytes(&[0x90, 3, 0, 5, 1]);
}

#[test]
fn ws_two_packets_in_one_frame() {
    let b = TestBroker::start();
    let mut c = Client::new(WsRaw::connect(b.ws));
    let mut both = connect("two-in-one");
    both.extend(subscribe(2, &[("two/#", 0)]));
    c.send(&both);
    c.expect_bytes(&[0x20, 2, 0, 0]);
    c.expect_bytes(&[0x90, 3, 0, 2, 0]);
    // And a packet spanning two whole messages.
    let p = publish0("two/x", b"spanning");
    c.wire.send_raw(&binary(&p[..4])).unwrap();
    c.wire.send_raw(&binary(&p[4..])).unwrap();
    assert_eq!(c.recv().bytes, p);
}

#[test]
fn ws_fragmented_mqtt_stream_in_both_modes() {
    let b = TestBroker::start();
    let mut sub = Client::new(WsRaw::connect(b.ws));
    sub.wire.split = 3;
    sub.connect_ok("split-sub");
    sub.subscribe_ok(1, "split/#", 2);
    let mut p = Client::new(WsRaw::connect(b.ws));
    p.wire.split = 1;
    p.connect_ok("split-pub");
    p.send(&publish("split/x", &pattern(500, 1), 2, false, false, 3));
    p.expect_bytes(&pubrec(3));
    p.send(&pubrel(3));
    p.expect_bytes(&pubcomp(3));
    let m = sub.recv_publish();
    assert_eq!(m.payload, pattern(500, 1));
}

#[test]
fn ws_ping_answered_with_pong_same_payload() {
    let b = TestBroker::start();
    let mut ws = WsRaw::connect(b.ws);
    // Before CONNECT, too.
    ws.send_raw(&frame(true, OP_PING, b"early")).unwrap();
    assert_eq!(
        ws.read_frame(),
        Frame { fin: true, rsv: 0, opcode: OP_PONG, masked: false, payload: b"early".to_vec() }
    );
    ws.send_raw(&binary(&connect("pinger"))).unwrap();
    assert_eq!(ws.read_frame().payload, [0x20, 2, 0, 0]);
    let payload: Vec<u8> = (0..125u8).collect();
    ws.send_raw(&frame(true, OP_PING, &payload)).unwrap();
    assert_eq!(ws.read_frame(), Frame { fin: true, rsv: 0, opcode: OP_PONG, masked: false, payload });
    ws.send_raw(&frame(true, OP_PING, b"")).unwrap();
    assert_eq!(ws.read_frame(), Frame { fin: true, rsv: 0, opcode: OP_PONG, masked: false, payload: vec![] });
    // An unsolicited pong is ignored.
    ws.send_raw(&frame(true, OP_PONG, b"whatever")).unwrap();
    ws.send_raw(&binary(&pingreq())).unwrap();
    assert_eq!(ws.read_frame().payload, [0xD0, 0]);
}

#[test]
fn ws_ping_between_fragments_of_a_message() {
    let b = TestBroker::start();
    let mut ws = WsRaw::connect(b.ws);
    ws.send_raw(&binary(&connect("interleaved"))).unwrap();
    assert_eq!(ws.read_frame().payload, [0x20, 2, 0, 0]);
    let sub = subscribe(7, &[("il/#", 0)]);
    let mut bytes = frame(false, OP_BINARY, &sub[..4]);
    bytes.extend(frame(true, OP_PING, b"mid-message"));
    bytes.extend(frame(true, OP_CONT, &sub[4..]));
    ws.send_raw(&bytes).unwrap();
    let mut frames = [ws.read_frame(), ws.read_frame()];
    frames.sort_by_key(|f| f.opcode);
    assert_eq!(
        frames[0],
        Frame { fin: true, rsv: 0, opcode: OP_BINARY, masked: false, payload: vec![0x90, 3, 0, 7, 0] }
    );
    assert_eq!(
        frames[1],
        Frame { fin: true, rsv: 0, opcode: OP_PONG, masked: false, payload: b"mid-message".to_vec() }
    );
}

#[test]
fn ws_ping_split_across_writes() {
    let b = TestBroker::start();
    let mut ws = WsRaw::connect(b.ws);
    let ping = frame(true, OP_PING, b"in pieces");
    for piece in ping.chunks(3) {
        ws.send_raw(piece).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(ws.read_frame().payload, b"in pieces");
}

#[test]
fn ws_close_frame_echoed_with_same_code_then_tcp_closed() {
    let b = TestBroker::start();
    for code in [1000u16, 1001, 4321] {
        let mut ws = WsRaw::connect(b.ws);
        ws.send_raw(&binary(&connect(&format!("closer-{code}")))).unwrap();
        assert_eq!(ws.read_frame().payload, [0x20, 2, 0, 0]);
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        ws.send_raw(&frame(true, OP_CLOSE, &body)).unwrap();
        ws.expect_close(code);
    }
}

#[test]
fn ws_close_frame_without_code_echoed_empty() {
    let b = TestBroker::start();
    let mut ws = WsRaw::connect(b.ws);
    ws.send_raw(&frame(true, OP_CLOSE, b"")).unwrap();
    let f = ws.read_frame();
    assert_eq!((f.opcode, f.masked, f.payload.len()), (OP_CLOSE, false, 0), "{f:?}");
    ws.expect_eof();
}

#[test]
fn ws_close_frame_publishes_will() {
    // A WebSocket close without MQTT DISCONNECT is an abnormal end for MQTT (3.1.2.5).
    let b = TestBroker::start();
    let mut sub = b.subscriber("watcher", "wsw/#", 0);
    let mut c = Client::new(WsRaw::connect(b.ws));
    c.send(&ConnectBuilder::new("ws-dying").will("wsw/dying", b"ws gone", 0, false).build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
    c.wire.send_raw(&frame(true, OP_CLOSE, &1000u16.to_be_bytes())).unwrap();
    c.wire.expect_close(1000);
    let m = sub.recv_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("wsw/dying", &b"ws gone"[..]));
}

#[test]
fn ws_tcp_drop_publishes_will_disconnect_does_not() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("watcher", "wsw/#", 0);
    let mut c = Client::new(WsRaw::connect(b.ws));
    c.send(&ConnectBuilder::new("ws-dropped").will("wsw/dropped", b"dropped", 0, false).build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
    drop(c);
    assert_eq!(sub.recv_publish().topic, "wsw/dropped");

    let mut c = Client::new(WsRaw::connect(b.ws));
    c.send(&ConnectBuilder::new("ws-polite").will("wsw/polite", b"no", 0, false).build());
    c.expect_bytes(&[0x20, 2, 0, 0]);
    c.send(&disconnect());
    let mut rest = Vec::new();
    while let Ok(Some(f)) = c.wire.try_read_frame(READ_TIMEOUT) {
        rest.push(f);
    }
    assert!(rest.iter().all(|f| f.opcode == OP_CLOSE), "{rest:?}");
    let mut p = b.client("sentinel");
    p.send(&publish0("wsw/sentinel", b"s"));
    assert_eq!(sub.recv_publish().topic, "wsw/sentinel", "will published after DISCONNECT over WS");
}

/// Connect over raw WS (optionally CONNECT first), send `bad`, and expect close `code` then EOF.
fn ws_refused_with(code: u16, connected: bool, bad: &[u8]) {
    ws_refused_with_config(|_| {}, code, connected, bad);
}

fn ws_refused_with_config(tweak: impl FnOnce(&mut midge::Config), code: u16, connected: bool, bad: &[u8]) {
    let b = TestBroker::start_with(tweak);
    let mut watcher = ws_client(b.ws, "watcher");
    watcher.subscribe_ok(1, "ok/#", 0);
    let mut ws = WsRaw::connect(b.ws);
    if connected {
        ws.send_raw(&binary(&connect("offender"))).unwrap();
        assert_eq!(ws.read_frame().payload, [0x20, 2, 0, 0]);
    }
    let _ = ws.send_raw(bad);
    ws.expect_close(code);
    let mut p = b.client("after");
    p.send(&publish0("ok/after", b"fine"));
    assert_eq!(watcher.recv_publish().topic, "ok/after");
}

#[test]
fn ws_unmasked_frame_closes_1002() {
    ws_refused_with(1002, true, &frame_raw(0x82, &pingreq(), None));
}

#[test]
fn ws_unmasked_frame_before_connect_closes_1002() {
    ws_refused_with(1002, false, &frame_raw(0x82, &connect("x"), None));
}

#[test]
fn ws_text_frame_closes_1003() {
    ws_refused_with(1003, true, &frame(true, OP_TEXT, b"hello"));
}

#[test]
fn ws_rsv_bit_closes_1002() {
    for rsv in [0x40u8, 0x20, 0x10] {
        ws_refused_with(1002, true, &frame_raw(0x80 | rsv | OP_BINARY, &pingreq(), Some([1, 2, 3, 4])));
    }
}

#[test]
fn ws_unknown_opcode_closes_1002() {
    ws_refused_with(1002, true, &frame(true, 0x3, b"x"));
    ws_refused_with(1002, true, &frame(true, 0xB, b"x"));
}

#[test]
fn ws_continuation_without_message_closes_1002() {
    ws_refused_with(1002, true, &frame(true, OP_CONT, &pingreq()));
}

#[test]
fn ws_new_message_inside_fragmented_one_closes_1002() {
    let mut bytes = frame(false, OP_BINARY, &[0xC0]);
    bytes.extend(frame(true, OP_BINARY, &[0x00]));
    ws_refused_with(1002, true, &bytes);
}

#[test]
fn ws_fragmented_or_oversized_control_frame_closes_1002() {
    ws_refused_with(1002, true, &frame(false, OP_PING, b"frag"));
    ws_refused_with(1002, true, &frame(true, OP_PING, &[0u8; 126]));
}

#[test]
fn ws_invalid_close_code_closes_1002() {
    ws_refused_with(1002, true, &frame(true, OP_CLOSE, &1005u16.to_be_bytes()));
}

#[test]
fn ws_frame_larger_than_max_packet_size_closes_1009() {
    // Only the header of a 2000-byte frame: refused before the payload is sent.
    let mut header = vec![0x82, 0x80 | 126];
    header.extend_from_slice(&2000u16.to_be_bytes());
    header.extend_from_slice(&[9, 8, 7, 6]);
    ws_refused_with_config(|c| c.max_packet_size = 1024, 1009, true, &header);
}

#[test]
fn ws_fragmented_message_larger_than_max_packet_size_closes_1009() {
    // A valid 1020-byte PUBLISH split over fragments: the message, not the packet, is too big.
    let p = publish0("big/x", &[7u8; 1020 - 3 - 7]);
    assert_eq!(p.len(), 1020);
    let mut rest = p[1000..].to_vec();
    rest.extend(p[..980].iter());
    let mut bytes = frame(false, OP_BINARY, &p[..1000]);
    bytes.extend(frame(false, OP_CONT, &rest));
    ws_refused_with_config(|c| c.max_packet_size = 1024, 1009, true, &bytes);
}

#[test]
fn ws_mqtt_packet_over_max_size_closes() {
    // A small frame announcing a large MQTT packet: refused from its fixed header with a close
    // frame saying "message too big" (RFC 6455 7.4.1), as for a frame over the limit.
    let b = TestBroker::start_with(|c| c.max_packet_size = 1024);
    let mut ws = WsRaw::connect(b.ws);
    ws.send_raw(&binary(&connect("big-mqtt"))).unwrap();
    assert_eq!(ws.read_frame().payload, [0x20, 2, 0, 0]);
    let mut header = vec![0x30];
    header.extend(remaining_length(2000));
    ws.send_raw(&binary(&header)).unwrap();
    ws.expect_close(1009);
}

#[test]
fn ws_mqtt_protocol_violation_sends_close_frame() {
    ws_refused_with(1002, true, &binary(&[0xF0, 0x00]));
}

#[test]
fn ws_mqtt_first_packet_not_connect_sends_close_frame() {
    ws_refused_with(1002, false, &binary(&pingreq()));
}

#[test]
fn ws_mqtt_second_connect_sends_close_frame() {
    ws_refused_with(1002, true, &binary(&connect("again")));
}

#[test]
fn ws_mqtt_protocol_level_5_is_accepted_with_a_v5_connack() {
    let b = TestBroker::start();
    let mut ws = WsRaw::connect(b.ws);
    ws.send_raw(&binary(&ConnectBuilder::new("five").protocol(b"MQTT", 5).build())).unwrap();
    let f = ws.read_frame();
    assert_eq!((f.opcode, f.masked), (OP_BINARY, false));
    // CONNACK, flags 0, reason 0x00 Success, then properties.
    assert_eq!((f.payload[0], f.payload[2], f.payload[3]), (0x20, 0, 0), "{f:?}");
    ws.send_raw(&binary(&[0xE0, 0])).unwrap();
    let f = ws.read_frame();
    assert_eq!(f.opcode, OP_CLOSE, "{f:?}");
}

// ---------------------------------------------------------------------------------------------
// Across transports
// ---------------------------------------------------------------------------------------------

/// Publish at `qos` from `p` and check `s` (subscribed at 2) gets it, both sides' flows exact.
fn exchange<P: Wire, S: Wire>(p: &mut Client<P>, s: &mut Client<S>, qos: u8, id: u16) {
    let payload = format!("qos {qos} via id {id}").into_bytes();
    p.send(&publish("x/t", &payload, qos, false, false, id));
    match qos {
        0 => {}
        1 => p.expect_bytes(&puback(id)),
        _ => {
            p.expect_bytes(&pubrec(id));
            p.send(&pubrel(id));
            p.expect_bytes(&pubcomp(id));
        }
    }
    let got = s.recv();
    let m = got.as_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..], m.qos, m.retain, m.dup), ("x/t", &payload[..], qos, false, false));
    assert_eq!(got.bytes, publish("x/t", &payload, qos, false, false, m.packet_id.unwrap_or(0)));
    match qos {
        0 => {}
        1 => s.send(&puback(m.packet_id.unwrap())),
        _ => {
            let sid = m.packet_id.unwrap();
            s.send(&pubrec(sid));
            s.expect_bytes(&pubrel(sid));
            s.send(&pubcomp(sid));
        }
    }
    s.ping();
}

#[test]
fn ws_cross_transport_tcp_publisher_ws_subscriber() {
    let b = TestBroker::start();
    let mut s = ws_client(b.ws, "ws-sub");
    s.subscribe_ok(1, "x/#", 2);
    let mut p = b.client("tcp-pub");
    for qos in 0..=2 {
        exchange(&mut p, &mut s, qos, 10 + qos as u16);
    }
}

#[test]
fn ws_cross_transport_ws_publisher_tcp_subscriber() {
    let b = TestBroker::start();
    let mut s = b.subscriber("tcp-sub", "x/#", 2);
    let mut p = ws_client(b.ws, "ws-pub");
    for qos in 0..=2 {
        exchange(&mut p, &mut s, qos, 20 + qos as u16);
    }
}

#[test]
fn ws_cross_transport_tungstenite_both_ways() {
    let b = TestBroker::start();
    let mut ws_sub = tung_client(b.ws, "tung-sub");
    ws_sub.subscribe_ok(1, "x/#", 2);
    let mut ws_pub = tung_client(b.ws, "tung-pub");
    let mut tcp_sub = b.subscriber("tcp-sub", "x/#", 2);
    let mut tcp_pub = b.client("tcp-pub");
    for qos in 0..=2 {
        // Each publish reaches both subscribers; check one, then drain the other.
        exchange(&mut tcp_pub, &mut ws_sub, qos, 30 + qos as u16);
        drain_one(&mut tcp_sub, qos);
        exchange(&mut ws_pub, &mut tcp_sub, qos, 40 + qos as u16);
        drain_one(&mut ws_sub, qos);
    }
}

/// Receive one PUBLISH at `qos` and complete its acknowledgement flow.
fn drain_one<W: Wire>(c: &mut Client<W>, qos: u8) {
    let m = c.recv_publish();
    assert_eq!(m.qos, qos);
    match qos {
        1 => c.send(&puback(m.packet_id.unwrap())),
        2 => {
            let id = m.packet_id.unwrap();
            c.send(&pubrec(id));
            c.expect_bytes(&pubrel(id));
            c.send(&pubcomp(id));
        }
        _ => {}
    }
}

#[test]
fn ws_retained_message_to_ws_subscriber() {
    let b = TestBroker::start();
    let mut p = b.client("p");
    p.send(&publish("ret/ws", b"kept", 1, true, false, 1));
    p.expect_bytes(&puback(1));
    let mut s = Client::new(WsRaw::connect(b.ws));
    s.connect_ok("ws-late");
    s.send(&subscribe(1, &[("ret/#", 0)]));
    s.expect_bytes(&[0x90, 3, 0, 1, 0]);
    let m = s.recv_publish();
    assert_eq!((m.topic.as_str(), &m.payload[..], m.retain), ("ret/ws", &b"kept"[..], true));
}

#[test]
fn ws_one_megabyte_publish_arrives_intact() {
    let b = TestBroker::start();
    let payload = pattern(1 << 20, 42);
    let mut ws_sub = Client::new(WsRaw::connect(b.ws));
    ws_sub.connect_ok("ws-big-sub");
    ws_sub.subscribe_ok(1, "big/#", 1);
    let mut tcp_sub = b.subscriber("tcp-big-sub", "big/#", 0);
    let addr = b.ws;
    let sent = payload.clone();
    let publisher = std::thread::spawn(move || {
        let mut p = tung_client(addr, "ws-big-pub");
        p.publish1("big/ws", &sent, 1);
        // And once more through the raw client, fragmented into 64 KiB frames.
        let mut raw = Client::new(WsRaw::connect(addr));
        raw.wire.split = 64 * 1024;
        raw.connect_ok("ws-big-raw");
        raw.publish1("big/ws", &sent, 2);
    });
    for _ in 0..2 {
        let m = ws_sub.recv_publish();
        assert_eq!((m.topic.as_str(), m.payload.len()), ("big/ws", payload.len()));
        assert!(m.payload == payload, "1 MB payload corrupted over WS");
        ws_sub.send(&puback(m.packet_id.unwrap()));
        let t = tcp_sub.recv_publish();
        assert!(t.payload == payload, "1 MB payload corrupted WS -> TCP");
    }
    publisher.join().unwrap();
}

#[test]
fn ws_many_small_messages_in_order() {
    let b = TestBroker::start();
    let mut s = ws_client(b.ws, "ws-order-sub");
    s.subscribe_ok(1, "o/t", 1);
    let mut p = ws_client(b.ws, "ws-order-pub");
    let mut batch = Vec::new();
    for i in 0..300u16 {
        batch.extend(publish("o/t", &i.to_be_bytes(), 1, false, false, i + 1));
    }
    p.send(&batch);
    for i in 0..300u16 {
        p.expect_bytes(&puback(i + 1));
    }
    for i in 0..300u16 {
        let m = s.recv_publish();
        assert_eq!(m.payload, i.to_be_bytes());
        s.send(&puback(m.packet_id.unwrap()));
    }
}

#[test]
fn ws_slow_consumer_partial_writes_intact() {
    let b = TestBroker::start();
    let mut sub = ws_client(b.ws, "ws-slow");
    sub.subscribe_ok(1, "slow/#", 0);
    let mut p = b.client("fast");
    slow_consumer_gets_everything_intact(&mut sub, &mut p);
}

#[test]

fn ws_eof_arriving_with_data_closes_and_publishes_will() {
    let b = TestBroker::start();
    let mut sub = b.subscriber("watcher", "hc/#", 0);
    for i in 0..5 {
        let mut ws = WsRaw::connect(b.ws);
        let mut mqtt =
            ConnectBuilder::new(&format!("ws-half-{i}")).will(&format!("hc/will-{i}"), b"x", 0, false).build();
        mqtt.extend(publish0("hc/data", b"x"));
        ws.send_raw(&binary(&mqtt)).unwrap();
        ws.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(sub.recv_publish().topic, "hc/data");
        let start = Instant::now();
        loop {
            match ws.try_read_frame(Duration::from_secs(2).saturating_sub(start.elapsed())) {
                Ok(None) => break,
                Ok(Some(_)) => {}
                Err(()) => panic!("iteration {i}: connection not closed within 2 s after the client's FIN"),
            }
        }
        assert_eq!(sub.recv_publish().topic, format!("hc/will-{i}"));
    }
}

#[test]
fn ws_close_reason_not_utf8_closes_1007() {
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"\xFF\xFE");
    ws_refused_with(1007, true, &frame(true, OP_CLOSE, &body));
}

#[test]
fn ws_close_with_one_byte_body_closes_1002() {
    ws_refused_with(1002, true, &frame(true, OP_CLOSE, &[0x03]));
}

#[test]
fn ws_handshake_browser_style_headers_accepted() {
    // Firefox sends "Connection: keep-alive, Upgrade"; header names and the upgrade token are
    // case-insensitive.
    let b = TestBroker::start();
    let req = format!(
        "GET /mqtt HTTP/1.1\r\nhost: {}\r\nUser-Agent: test\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n\
         sec-websocket-key: {WS_KEY}\r\nsec-websocket-version: 13\r\nOrigin: http://example.com\r\n\
         Sec-WebSocket-Protocol: mqttv3.1\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
        b.ws
    );
    let mut s = tcp_connect(b.ws);
    s.write_all(req.as_bytes()).unwrap();
    let (head, rest) = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(header(&head, "sec-websocket-accept"), Some(WS_ACCEPT));
    assert_eq!(header(&head, "sec-websocket-protocol"), Some("mqtt"), "{head}");
    let mut c = Client::new(WsRaw { stream: s, inbuf: rest, split: 0 });
    c.connect_ok("browser");
}

#[test]
fn ws_handshake_http_1_0_refused() {
    let b = TestBroker::start();
    let req = upgrade_request(b.ws, "/mqtt", Some("mqtt"), "13").replacen("HTTP/1.1", "HTTP/1.0", 1);
    let resp = http_exchange(b.ws, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
}

#[test]
fn ws_handshake_missing_connection_upgrade_400() {
    let b = TestBroker::start();
    let req = upgrade_request(b.ws, "/mqtt", Some("mqtt"), "13").replace("Connection: Upgrade\r\n", "");
    let resp = http_exchange(b.ws, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
}
