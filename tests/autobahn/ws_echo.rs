//! WebSocket echo server on midge's own `ws` module (the broker's handshake and frame code), for
//! the Autobahn|Testsuite conformance run (`make autobahn`). A test tool, so plain blocking std
//! sockets and a thread per connection.
//!
//! Usage: `ws_echo PORT` (0: any free port). It prints `listening on 127.0.0.1:PORT` once bound,
//! then echoes every text and binary message back as one message, answers pings, completes the
//! close handshake and fails the connection with the RFC 6455 status code on protocol errors.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use midge::ws::frame::{binary_header, encode_close, encode_pong, text_header};
use midge::ws::handshake::{handle_request, HandshakeConfig, HandshakeOutcome};
use midge::ws::{FrameDecoder, MessageKind, WsControl, WsEvent};

/// Autobahn's largest messages are 16 MiB (case 9.x); leave room above that.
const MAX_MESSAGE: usize = 64 << 20;
/// Socket read size: large reads keep the 16 MiB cases quick.
const READ_SIZE: usize = 256 << 10;
/// How long to wait for the peer's FIN after our close frame before dropping the socket.
const LINGER: Duration = Duration::from_secs(2);

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!("usage: ws_echo PORT   (0 picks a free port)");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ws_echo: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    println!("listening on {addr}");
    // The run script reads the port from this line.
    let _ = io::stdout().flush();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            // Peers (the fuzzer above all) drop connections at will: nothing to report.
            let _ = serve(stream);
        });
    }
}

fn serve(mut sock: TcpStream) -> io::Result<()> {
    // Many small request/response round trips (case 9.7/9.8): Nagle would add delays.
    sock.set_nodelay(true)?;
    let peer = sock.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    // Autobahn connects to the URL's path ("/") and offers no subprotocol.
    let config = HandshakeConfig { path: "/".to_string(), require_subprotocol: false, ..HandshakeConfig::default() };
    let mut buf = vec![0u8; READ_SIZE];
    let mut filled = 0;
    loop {
        let n = sock.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        match handle_request(&buf[..filled], &config, &peer) {
            HandshakeOutcome::Partial => continue,
            HandshakeOutcome::Accept { response, consumed, .. } => {
                sock.write_all(&response)?;
                // Frames may have arrived right behind the request head.
                buf.copy_within(consumed..filled, 0);
                filled -= consumed;
                break;
            }
            HandshakeOutcome::Reject { response, .. } => {
                sock.write_all(&response)?;
                return Ok(());
            }
        }
    }
    echo(sock, buf, filled)
}

/// Frames until the close handshake or a protocol error; `buf[..filled]` holds bytes already read.
fn echo(mut sock: TcpStream, mut buf: Vec<u8>, mut filled: usize) -> io::Result<()> {
    let mut decoder = FrameDecoder::for_messages(MAX_MESSAGE);
    let mut message: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        let mut pos = 0;
        loop {
            let (n, event) = match decoder.decode_in_place(&mut buf[pos..filled]) {
                Ok(step) => step,
                Err(e) => return close(sock, Some(e.close_code())),
            };
            let base = pos;
            pos += n;
            match event {
                WsEvent::Data(r) => message.extend_from_slice(&buf[base + r.start..base + r.end]),
                WsEvent::MessageEnd(kind, r) => {
                    // Echo straight from the read buffer when the message is this one frame.
                    let payload = if message.is_empty() {
                        &buf[base + r.start..base + r.end]
                    } else {
                        message.extend_from_slice(&buf[base + r.start..base + r.end]);
                        &message[..]
                    };
                    send_message(&mut sock, &mut out, kind, payload)?;
                    message.clear();
                    // Don't hold on to a 16 MiB buffer for the small messages that follow.
                    message.shrink_to(READ_SIZE);
                }
                WsEvent::Control(WsControl::Ping(payload)) => {
                    out.clear();
                    encode_pong(&payload, &mut out);
                    sock.write_all(&out)?;
                }
                WsEvent::Control(WsControl::Pong) => {}
                // RFC 6455 5.5.1: answer with a close echoing the status code.
                WsEvent::Control(WsControl::Close { code }) => return close(sock, code),
                WsEvent::NeedMore => break,
            }
        }
        // At most a frame header or a control frame is left unconsumed: move it to the front.
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        let n = sock.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
    }
}

fn send_message(sock: &mut TcpStream, out: &mut Vec<u8>, kind: MessageKind, payload: &[u8]) -> io::Result<()> {
    let (header, len) = match kind {
        MessageKind::Text => text_header(payload.len()),
        MessageKind::Binary => binary_header(payload.len()),
    };
    if payload.len() <= 64 << 10 {
        // One write (one segment) for a small message.
        out.clear();
        out.extend_from_slice(&header[..len]);
        out.extend_from_slice(payload);
        sock.write_all(out)
    } else {
        sock.write_all(&header[..len])?;
        sock.write_all(payload)
    }
}

/// Send a close frame (`code`: none for an empty body), then close the TCP connection the way RFC
/// 6455 7.1.1 asks of a server: it closes first, after letting the peer's last bytes drain so the
/// close frame is not lost to a reset.
fn close(mut sock: TcpStream, code: Option<u16>) -> io::Result<()> {
    let mut frame = Vec::with_capacity(4);
    encode_close(code, &mut frame);
    sock.write_all(&frame)?;
    sock.shutdown(Shutdown::Write)?;
    sock.set_read_timeout(Some(LINGER))?;
    let mut sink = [0u8; 4096];
    while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
}
