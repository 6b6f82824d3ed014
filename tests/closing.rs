//! How connections end when the broker has the last word: the answer (a refusing CONNACK, an
//! HTTP error, a WebSocket close frame) reaches a client that is still sending, because the
//! broker shuts its side, reads and discards until the client closes, and only then closes,
//! instead of resetting a socket with unread input. Real sockets, in-process broker.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

/// Read until EOF; a reset instead of EOF fails the test (it would have destroyed the answer).
fn read_to_eof(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => panic!("expected EOF after {} bytes, got {e}", all.len()),
        }
    }
}

#[test]
fn refused_connack_then_fin_and_the_broker_reads_on() {
    let b = TestBroker::start_with(|c| c.allow_anonymous = false);
    let mut s = b.tcp_stream();
    // CONNECT and, without waiting for the CONNACK, 64 kB of PUBLISH.
    let mut burst = connect("pipeliner");
    for _ in 0..64 {
        burst.extend(publish0("t", &[0u8; 1000]));
    }
    s.write_all(&burst).unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head, [0x20, 2, 0, 5], "CONNACK 5");
    // The broker shut its side (FIN) but still reads and discards: more input is not answered
    // with a reset (which, on a real network, can destroy the CONNACK still in flight).
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..4 {
        s.write_all(&[0u8; 16 * 1024]).expect("broker reset a lingering connection");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_to_eof(&mut s), b"", "FIN after the answer");
}

#[test]
fn lingering_socket_is_closed_when_the_peer_goes_on_sending() {
    // A peer that never stops: the broker stops discarding after a bounded amount or time.
    let b = TestBroker::start_with(|c| c.allow_anonymous = false);
    let mut s = b.tcp_stream();
    s.write_all(&connect("chatty")).unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head, [0x20, 2, 0, 5]);
    let t0 = Instant::now();
    let junk = [0u8; 16 * 1024];
    s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut sent = 0;
    while s.write_all(&junk).is_ok() {
        sent += junk.len();
        assert!(t0.elapsed() < Duration::from_secs(4), "lingering connection never closed");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(sent >= 64 * 1024, "closed before lingering: {sent} bytes accepted");
}

#[test]
fn http_error_survives_a_client_that_keeps_sending() {
    let b = TestBroker::start();
    let mut s_ws = tcp_connect(b.ws);
    // A refused upgrade (wrong path) followed at once by frames.
    let mut req = upgrade_request(b.ws, "/wrong", Some("mqtt"), "13").into_bytes();
    req.extend(std::iter::repeat_n(0x82u8, 100_000));
    s_ws.write_all(&req).unwrap();
    let answer = read_to_close(&mut s_ws, READ_TIMEOUT);
    assert!(answer.starts_with(b"HTTP/1.1 404"), "{:?}", String::from_utf8_lossy(&answer));
}

#[test]
fn websocket_close_frame_reaches_a_client_that_keeps_sending() {
    let b = TestBroker::start();
    let mut ws = WsRaw::connect(b.ws);
    ws.send_raw(&binary(&connect("noisy"))).unwrap();
    assert_eq!(ws.read_frame().payload, [0x20, 2, 0, 0]);
    // A protocol error (reserved packet type), then more frames before reading anything.
    let mut burst = binary(&[0xF0, 0x00]);
    for _ in 0..200 {
        burst.extend(binary(&pingreq()));
    }
    let _ = ws.send_raw(&burst);
    ws.expect_close(1002);
}
