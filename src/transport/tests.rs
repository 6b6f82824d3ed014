//! The transport stack without sockets: a reader of bytes below, a recording `Upper` above.

use std::io;
use std::sync::Arc;

use super::*;
use crate::ws::HandshakeConfig;

/// An upper layer that takes MQTT bytes in whole `unit`s (as the core takes whole packets),
/// up to `budget` bytes before it pauses.
struct Recorder {
    mqtt: Vec<u8>,
    unit: usize,
    budget: usize,
    out: OutQueue,
    failed: Option<TransportError>,
    upgraded: bool,
    admit: bool,
}

impl Recorder {
    fn new(unit: usize) -> Self {
        Recorder {
            mqtt: Vec::new(),
            unit,
            budget: usize::MAX,
            out: OutQueue::default(),
            failed: None,
            upgraded: false,
            admit: true,
        }
    }

    /// What the transport would write: the queued output, framed.
    fn wire(&mut self, transport: &mut Transport) -> Vec<u8> {
        let mut wire = Vec::new();
        assert!(transport.write_to(&mut self.out, &mut wire).unwrap());
        wire
    }
}

impl Upper for Recorder {
    fn wants_input(&self) -> bool {
        self.budget > 0 && self.failed.is_none()
    }
    fn mqtt(&mut self, bytes: &[u8]) -> usize {
        let n = (bytes.len().min(self.budget) / self.unit) * self.unit;
        self.mqtt.extend_from_slice(&bytes[..n]);
        self.budget -= n;
        n
    }
    fn output(&mut self) -> Option<&mut OutQueue> {
        Some(&mut self.out)
    }
    fn queued(&mut self) {}
    fn admit_upgrade(&mut self) -> bool {
        self.admit
    }
    fn upgraded(&mut self, _forwarded_for: Option<String>) {
        self.upgraded = true;
    }
    fn tls_identity(&mut self, _common_name: Option<String>) {}
    fn fail(&mut self, error: TransportError) {
        self.failed = Some(error);
    }
}

/// Read `bytes` through `transport` in reads of at most `chunk` bytes, while `up` takes input.
fn feed(transport: &mut Transport, up: &mut Recorder, bytes: &[u8], chunk: usize) -> usize {
    let mut scratch = vec![0; chunk];
    let mut src = bytes;
    while !src.is_empty() && up.wants_input() {
        match transport.read_from(&mut src, &mut scratch, up) {
            Ok(Received::Eof) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    bytes.len() - src.len()
}

const UPGRADE: &[u8] = b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";

/// A masked client frame.
fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n <= 125 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn websocket() -> Transport {
    Transport::websocket(Arc::new(HandshakeConfig::default()), "127.0.0.1".parse().unwrap(), 1 << 20)
}

#[test]
fn tcp_partial_unit_is_held_read_behind_and_released() {
    let mut t = Transport::mqtt();
    let mut up = Recorder::new(4);
    let data: Vec<u8> = (0..10).collect();
    feed(&mut t, &mut up, &data, 1024);
    assert_eq!(up.mqtt, &data[..8]);
    assert_eq!(t.held_input(), 2, "the partial unit waits");
    feed(&mut t, &mut up, &[10, 11], 1024);
    assert_eq!(up.mqtt, (0..12).collect::<Vec<u8>>());
    assert_eq!(t.held_input(), 0);
    assert_eq!(t.held.capacity(), 0, "a drained transport holds no memory");
}

#[test]
fn tcp_pause_keeps_the_rest_of_the_read_and_resume_hands_it_up_in_order() {
    let mut t = Transport::mqtt();
    let mut up = Recorder::new(1);
    up.budget = 3;
    let data: Vec<u8> = (0..10).collect();
    let read = feed(&mut t, &mut up, &data, 1024);
    assert_eq!(read, 10, "one read");
    assert_eq!(up.mqtt, &[0, 1, 2]);
    assert_eq!(t.held_input(), 7);
    up.budget = usize::MAX;
    t.resume(&mut up);
    assert_eq!(up.mqtt, data);
    assert_eq!(t.held_input(), 0);
}

#[test]
fn rfc6455_4_2_upgrade_then_frames_in_the_same_read() {
    let mut t = websocket();
    let mut up = Recorder::new(1);
    let mut bytes = UPGRADE.to_vec();
    bytes.extend(client_frame(2, true, b"hello"));
    feed(&mut t, &mut up, &bytes, 4096);
    assert!(up.upgraded && !t.is_upgrading());
    assert_eq!(up.mqtt, b"hello");
    let wire = up.wire(&mut t);
    assert!(wire.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&wire));
}

#[test]
fn mqtt_6_0_0_2_packet_may_span_frames_and_reads() {
    let mut t = websocket();
    let mut up = Recorder::new(6);
    let mut bytes = UPGRADE.to_vec();
    bytes.extend(client_frame(2, false, b"abc"));
    bytes.extend(client_frame(0, false, b"defg"));
    bytes.extend(client_frame(0, true, b"hijkl"));
    // One byte per read: every split of header, mask and payload.
    feed(&mut t, &mut up, &bytes, 1);
    assert_eq!(up.mqtt, b"abcdefghijkl");
    assert_eq!(t.held_input(), 0);
}

#[test]
fn websocket_pause_and_resume_keep_byte_order() {
    let mut t = websocket();
    let mut up = Recorder::new(1);
    feed(&mut t, &mut up, UPGRADE, 4096);
    up.budget = 2;
    let mut bytes = client_frame(2, true, b"0123");
    bytes.extend(client_frame(2, true, b"4567"));
    feed(&mut t, &mut up, &bytes, 4096);
    assert_eq!(up.mqtt, b"01");
    assert!(t.held_input() > 0);
    up.budget = usize::MAX;
    t.resume(&mut up);
    assert_eq!(up.mqtt, b"01234567");
}

#[test]
fn output_runs_are_framed_and_control_frames_never_nest() {
    let mut t = websocket();
    let mut up = Recorder::new(1);
    feed(&mut t, &mut up, UPGRADE, 4096);
    let _ = up.wire(&mut t);
    // The core queues MQTT bytes; a ping arrives between two runs.
    up.out.push_slice(b"\xD0\x00");
    up.out.tail().extend_from_slice(b"\xD0\x00");
    feed(&mut t, &mut up, &client_frame(9, true, b"p"), 4096);
    up.out.push_slice(b"\x30\x03\x00\x01t");
    let wire = up.wire(&mut t);
    let mut expected = vec![0x82, 4, 0xD0, 0, 0xD0, 0];
    expected.extend_from_slice(&[0x8A, 1, b'p']);
    expected.extend_from_slice(&[0x82, 5, 0x30, 3, 0, 1, b't']);
    assert_eq!(wire, expected);
}

#[test]
fn rfc6455_7_close_frame_goes_behind_queued_output_and_input_is_released() {
    let mut t = websocket();
    let mut up = Recorder::new(4);
    feed(&mut t, &mut up, UPGRADE, 4096);
    let _ = up.wire(&mut t);
    feed(&mut t, &mut up, &client_frame(2, true, b"ab"), 4096);
    assert!(t.held_input() > 0);
    up.out.push_slice(b"\x20\x02\x00\x00");
    t.close(&mut up.out, Some(Some(1002)));
    assert_eq!(t.held_input(), 0);
    assert_eq!(up.wire(&mut t), [0x82, 4, 0x20, 2, 0, 0, 0x88, 2, 0x03, 0xEA]);
}

#[test]
fn rfc6455_5_1_unmasked_client_frame_fails_the_connection() {
    let mut t = websocket();
    let mut up = Recorder::new(1);
    feed(&mut t, &mut up, UPGRADE, 4096);
    feed(&mut t, &mut up, &[0x82, 0x01, b'x'], 4096);
    assert!(matches!(up.failed, Some(TransportError::WebSocket(_))), "{:?}", up.failed);
    assert!(up.mqtt.is_empty());
}

#[test]
fn peer_close_frame_is_reported_with_its_code() {
    let mut t = websocket();
    let mut up = Recorder::new(1);
    feed(&mut t, &mut up, UPGRADE, 4096);
    feed(&mut t, &mut up, &client_frame(8, true, &1000u16.to_be_bytes()), 4096);
    assert_eq!(up.failed, Some(TransportError::WebSocketClosed(Some(1000))));
}

#[test]
fn refused_upgrade_queues_the_http_answer_and_fails() {
    let mut t = websocket();
    let mut up = Recorder::new(1);
    feed(&mut t, &mut up, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n", 4096);
    assert!(matches!(up.failed, Some(TransportError::Handshake(_))));
    assert!(up.wire(&mut t).starts_with(b"HTTP/1.1 4"));
}

#[test]
fn upgrade_at_memory_limit_gets_503() {
    let mut t = websocket();
    let mut up = Recorder::new(1);
    up.admit = false;
    feed(&mut t, &mut up, UPGRADE, 4096);
    assert!(!up.upgraded);
    assert!(up.wire(&mut t).starts_with(b"HTTP/1.1 503"));
}

#[test]
fn upgrade_request_split_in_reads_is_held_until_complete() {
    let mut t = websocket();
    let mut up = Recorder::new(1);
    feed(&mut t, &mut up, &UPGRADE[..20], 4096);
    assert!(t.is_upgrading() && t.held_input() == 20);
    feed(&mut t, &mut up, &UPGRADE[20..], 7);
    assert!(up.upgraded && t.held_input() == 0);
}
