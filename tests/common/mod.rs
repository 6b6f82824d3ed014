//! Shared helpers for the raw-socket integration tests: an in-process broker, tiny MQTT packet
//! builders, a packet reader with bounded reads, and a hand-rolled WebSocket client (masked
//! frames out, frame parser in). Only std and `midge` itself.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Every read in these tests is bounded by this.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Broker
// ---------------------------------------------------------------------------------------------

/// A broker running on its own thread; stopped when dropped.
pub struct TestBroker {
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    handle: midge::BrokerHandle,
    join: Option<JoinHandle<()>>,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        TestBroker::start_with(|_| {})
    }

    /// Start a broker on loopback ephemeral ports after `tweak` adjusts the config.
    pub fn start_with(tweak: impl FnOnce(&mut midge::Config)) -> TestBroker {
        let mut config = midge::Config::loopback_ephemeral();
        tweak(&mut config);
        let mut broker = midge::Broker::new(config).expect("broker binds");
        let addrs = broker.local_addrs();
        let tcp = addrs.iter().find(|(p, _)| *p == midge::Protocol::Mqtt).expect("tcp listener").1;
        let ws = addrs.iter().find(|(p, _)| *p == midge::Protocol::WebSockets).expect("ws listener").1;
        let handle = broker.handle();
        let join = std::thread::spawn(move || broker.run().expect("broker runs"));
        TestBroker { tcp, ws, handle, join: Some(join) }
    }

    /// A raw TCP socket to the MQTT listener, with bounded reads and writes.
    pub fn tcp_stream(&self) -> TcpStream {
        tcp_connect(self.tcp)
    }

    /// A raw TCP client (nothing sent yet).
    pub fn raw(&self) -> Client<TcpStream> {
        Client::new(self.tcp_stream())
    }

    /// A TCP client that has CONNECTed (clean session) with `id` and got 20 02 00 00.
    pub fn client(&self, id: &str) -> Client<TcpStream> {
        let mut c = self.raw();
        c.connect_ok(id);
        c
    }

    /// A TCP client subscribed to `filter` at `qos`.
    pub fn subscriber(&self, id: &str, filter: &str, qos: u8) -> Client<TcpStream> {
        let mut c = self.client(id);
        c.subscribe_ok(1, filter, qos);
        c
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(join) = self.join.take() {
            // Do not turn a failed test into a double panic.
            if !std::thread::panicking() {
                join.join().expect("broker thread");
            }
        }
    }
}

pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, READ_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

// ---------------------------------------------------------------------------------------------
// MQTT packet builders
// ---------------------------------------------------------------------------------------------

pub fn remaining_length(mut len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            return out;
        }
    }
}

/// First byte, remaining length, body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(remaining_length(body.len()));
    out.extend_from_slice(body);
    out
}

/// Two-byte length prefix + bytes.
pub fn field(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

#[derive(Clone, Debug)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// CONNECT with every knob.
#[derive(Clone, Debug)]
pub struct ConnectBuilder {
    pub protocol_name: Vec<u8>,
    pub level: u8,
    pub client_id: Vec<u8>,
    pub clean: bool,
    pub keep_alive: u16,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

impl ConnectBuilder {
    pub fn new(client_id: &str) -> Self {
        ConnectBuilder {
            protocol_name: b"MQTT".to_vec(),
            level: 4,
            client_id: client_id.as_bytes().to_vec(),
            clean: true,
            keep_alive: 0,
            will: None,
            username: None,
            password: None,
        }
    }

    pub fn v31(mut self) -> Self {
        self.protocol_name = b"MQIsdp".to_vec();
        self.level = 3;
        self
    }

    pub fn protocol(mut self, name: &[u8], level: u8) -> Self {
        self.protocol_name = name.to_vec();
        self.level = level;
        self
    }

    pub fn clean(mut self, clean: bool) -> Self {
        self.clean = clean;
        self
    }

    pub fn keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }

    pub fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Self {
        self.will = Some(Will { topic: topic.into(), payload: payload.to_vec(), qos, retain });
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut flags = 0u8;
        if self.clean {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        let mut body = field(&self.protocol_name);
        body.push(self.level);
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        // MQTT 5.0 (name "MQTT", level 5): empty property blocks after the keep alive and
        // before the will topic.
        let v5 = self.level == 5 && self.protocol_name == b"MQTT";
        if v5 {
            body.push(0);
        }
        body.extend(field(&self.client_id));
        if let Some(w) = &self.will {
            if v5 {
                body.push(0);
            }
            body.extend(field(w.topic.as_bytes()));
            body.extend(field(&w.payload));
        }
        if let Some(u) = &self.username {
            body.extend(field(u.as_bytes()));
        }
        if let Some(p) = &self.password {
            body.extend(field(p));
        }
        packet(0x10, &body)
    }
}

/// CONNECT, MQTT 3.1.1, clean session, no keep alive.
pub fn connect(client_id: &str) -> Vec<u8> {
    ConnectBuilder::new(client_id).build()
}

/// PUBLISH; `packet_id` is written only for QoS > 0.
pub fn publish(topic: &str, payload: &[u8], qos: u8, retain: bool, dup: bool, packet_id: u16) -> Vec<u8> {
    publish_raw_topic(topic.as_bytes(), payload, qos, retain, dup, packet_id)
}

pub fn publish_raw_topic(topic: &[u8], payload: &[u8], qos: u8, retain: bool, dup: bool, packet_id: u16) -> Vec<u8> {
    let mut first = 0x30 | (qos << 1);
    if dup {
        first |= 0x08;
    }
    if retain {
        first |= 0x01;
    }
    let mut body = field(topic);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(first, &body)
}

pub fn publish0(topic: &str, payload: &[u8]) -> Vec<u8> {
    publish(topic, payload, 0, false, false, 0)
}

pub fn subscribe(packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for (f, q) in filters {
        body.extend(field(f.as_bytes()));
        body.push(*q);
    }
    packet(0x82, &body)
}

pub fn unsubscribe(packet_id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for f in filters {
        body.extend(field(f.as_bytes()));
    }
    packet(0xA2, &body)
}

fn id_packet(first: u8, id: u16) -> Vec<u8> {
    let [hi, lo] = id.to_be_bytes();
    vec![first, 2, hi, lo]
}

pub fn puback(id: u16) -> Vec<u8> {
    id_packet(0x40, id)
}
pub fn pubrec(id: u16) -> Vec<u8> {
    id_packet(0x50, id)
}
pub fn pubrel(id: u16) -> Vec<u8> {
    id_packet(0x62, id)
}
pub fn pubcomp(id: u16) -> Vec<u8> {
    id_packet(0x70, id)
}
pub fn pingreq() -> Vec<u8> {
    vec![0xC0, 0]
}
pub fn disconnect() -> Vec<u8> {
    vec![0xE0, 0]
}

// ---------------------------------------------------------------------------------------------
// Parsed packets
// ---------------------------------------------------------------------------------------------

/// One packet as received: its full bytes, first byte and body.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    pub bytes: Vec<u8>,
    pub header_len: usize,
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.bytes.len() <= 64 {
            write!(f, "Packet({:02x?})", self.bytes)
        } else {
            write!(f, "Packet({:02x?}... {} bytes)", &self.bytes[..32], self.bytes.len())
        }
    }
}

/// A decoded PUBLISH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pub {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: Option<u16>,
}

impl Packet {
    pub fn first(&self) -> u8 {
        self.bytes[0]
    }
    pub fn kind(&self) -> u8 {
        self.bytes[0] >> 4
    }
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.header_len..]
    }

    pub fn as_publish(&self) -> Pub {
        assert_eq!(self.kind(), 3, "expected PUBLISH, got {self:?}");
        let flags = self.first() & 0x0F;
        let qos = (flags >> 1) & 3;
        let body = self.body();
        let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
        let topic = String::from_utf8(body[2..2 + tlen].to_vec()).expect("utf8 topic");
        let mut rest = &body[2 + tlen..];
        let packet_id = if qos > 0 {
            let id = u16::from_be_bytes([rest[0], rest[1]]);
            rest = &rest[2..];
            Some(id)
        } else {
            None
        };
        Pub { topic, payload: rest.to_vec(), qos, retain: flags & 1 != 0, dup: flags & 8 != 0, packet_id }
    }
}

/// Try to split one complete packet off the front of `buf`.
pub fn parse_packet(buf: &[u8]) -> Option<(Packet, usize)> {
    if buf.is_empty() {
        return None;
    }
    let mut len = 0usize;
    let mut mult = 1usize;
    for i in 1..=4 {
        let b = *buf.get(i)?;
        len += (b & 0x7F) as usize * mult;
        mult *= 128;
        if b & 0x80 == 0 {
            let total = i + 1 + len;
            if buf.len() < total {
                return None;
            }
            return Some((Packet { bytes: buf[..total].to_vec(), header_len: i + 1 }, total));
        }
    }
    panic!("server sent a malformed remaining length: {:02x?}", &buf[..5]);
}

// ---------------------------------------------------------------------------------------------
// Transports and the MQTT client
// ---------------------------------------------------------------------------------------------

/// What the client reads from and writes to: raw TCP or WebSocket frames.
pub trait Wire {
    fn send_bytes(&mut self, data: &[u8]) -> io::Result<()>;
    /// Append MQTT stream bytes to `buf`; Ok(0) = the connection ended.
    fn read_more(&mut self, buf: &mut Vec<u8>) -> io::Result<usize>;
    fn set_timeout(&mut self, t: Duration);
}

impl Wire for TcpStream {
    fn send_bytes(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_all(data)?;
        self.flush()
    }

    fn read_more(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn set_timeout(&mut self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn is_reset(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe)
}

/// What `try_recv` saw.
#[derive(Debug)]
pub enum Recv {
    Packet(Packet),
    /// Nothing arrived within the timeout.
    Timeout,
    /// EOF or reset.
    Closed,
}

/// An MQTT client speaking raw bytes over a `Wire`.
pub struct Client<W: Wire> {
    pub wire: W,
    pub buf: Vec<u8>,
}

impl<W: Wire> Client<W> {
    pub fn new(wire: W) -> Self {
        Client { wire, buf: Vec::new() }
    }

    pub fn send(&mut self, data: &[u8]) {
        self.wire.send_bytes(data).expect("send");
    }

    /// Send, tolerating a connection the broker already closed.
    pub fn send_lenient(&mut self, data: &[u8]) {
        let _ = self.wire.send_bytes(data);
    }

    /// Next packet within `timeout`, or what happened instead.
    pub fn try_recv(&mut self, timeout: Duration) -> Recv {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((p, n)) = parse_packet(&self.buf) {
                self.buf.drain(..n);
                return Recv::Packet(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Recv::Timeout;
            }
            self.wire.set_timeout(left.max(Duration::from_millis(1)));
            match self.wire.read_more(&mut self.buf) {
                Ok(0) => return Recv::Closed,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) if is_reset(&e) => return Recv::Closed,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The next packet (within 5 s), or panic.
    pub fn recv(&mut self) -> Packet {
        match self.try_recv(READ_TIMEOUT) {
            Recv::Packet(p) => p,
            other => panic!("expected a packet, got {other:?} (buffered {:02x?})", self.buf),
        }
    }

    pub fn recv_publish(&mut self) -> Pub {
        self.recv().as_publish()
    }

    /// Assert that nothing arrives for `d` (and the connection stays open).
    pub fn expect_silence(&mut self, d: Duration) {
        match self.try_recv(d) {
            Recv::Timeout => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Wait (at most `within`) for the broker to close the connection; returns the packets it
    /// sent first.
    pub fn expect_closed_within(&mut self, within: Duration) -> Vec<Packet> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_recv(left) {
                Recv::Packet(p) => got.push(p),
                Recv::Closed => {
                    assert!(self.buf.is_empty(), "partial packet before close: {:02x?}", self.buf);
                    return got;
                }
                Recv::Timeout => panic!("connection not closed within {within:?} (received {got:?})"),
            }
        }
    }

    pub fn expect_closed(&mut self) -> Vec<Packet> {
        self.expect_closed_within(READ_TIMEOUT)
    }

    /// The broker closes the connection without sending anything.
    pub fn expect_closed_silently(&mut self) {
        let got = self.expect_closed();
        assert!(got.is_empty(), "expected a close without any packet, got {got:?}");
    }

    /// Send CONNECT for `id` and check CONNACK is exactly 20 02 00 00.
    pub fn connect_ok(&mut self, id: &str) {
        self.send(&connect(id));
        self.expect_bytes(&[0x20, 2, 0, 0]);
    }

    pub fn expect_bytes(&mut self, expected: &[u8]) {
        let p = self.recv();
        assert_eq!(p.bytes, expected, "unexpected packet");
    }

    /// SUBSCRIBE one filter and check the SUBACK grants `qos`.
    pub fn subscribe_ok(&mut self, id: u16, filter: &str, qos: u8) {
        self.send(&subscribe(id, &[(filter, qos)]));
        let [hi, lo] = id.to_be_bytes();
        self.expect_bytes(&[0x90, 3, hi, lo, qos]);
    }

    /// A PINGREQ/PINGRESP round trip: everything the broker did for earlier input is done.
    pub fn ping(&mut self) {
        self.send(&pingreq());
        self.expect_bytes(&[0xD0, 0]);
    }

    /// QoS 1 publish and its PUBACK.
    pub fn publish1(&mut self, topic: &str, payload: &[u8], id: u16) {
        self.send(&publish(topic, payload, 1, false, false, id));
        self.expect_bytes(&puback(id));
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket, by hand
// ---------------------------------------------------------------------------------------------

/// RFC 6455 sample key and its accept value.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// An upgrade request for `path`, with `protocols` in Sec-WebSocket-Protocol (omitted if None).
pub fn upgrade_request(host: SocketAddr, path: &str, protocols: Option<&str>, version: &str) -> String {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: {version}\r\n"
    );
    if let Some(p) = protocols {
        r.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    r.push_str("\r\n");
    r
}

/// Read until the end of an HTTP response head (bounded by the read timeout); returns the head
/// and any bytes after it.
pub fn read_http_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos + 4]).into_owned();
            return (head, buf[pos + 4..].to_vec());
        }
        assert!(Instant::now() < deadline, "no HTTP head within the timeout: {:?}", String::from_utf8_lossy(&buf));
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => panic!("closed before an HTTP head: {:?}", String::from_utf8_lossy(&buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => panic!("no HTTP head within the timeout: {:?}", String::from_utf8_lossy(&buf)),
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Read everything until EOF (bounded); returns the bytes. Panics on timeout.
pub fn read_to_close(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "connection not closed within {within:?}; got {:?}", String::from_utf8_lossy(&buf));
        s.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_reset(&e) => return buf,
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Header value (case-insensitive name) from a response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A client frame: `first` is the whole first byte (FIN | RSV | opcode); masked with `mask`
/// when given.
pub fn frame_raw(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let m = if mask.is_some() { 0x80 } else { 0 };
    if payload.len() <= 125 {
        out.push(m | payload.len() as u8);
    } else if payload.len() <= 0xFFFF {
        out.push(m | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame (the mask varies with the payload so tests do not rely on one key).
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let first = if fin { 0x80 } else { 0 } | opcode;
    let seed = payload.len() as u8;
    frame_raw(first, payload, Some([0x37 ^ seed, 0xFA, 0x21 ^ seed, 0x3D]))
}

/// A masked, FIN binary frame.
pub fn binary(payload: &[u8]) -> Vec<u8> {
    frame(true, OP_BINARY, payload)
}

/// A server frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// Parse one frame off the front of `buf`.
pub fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let b0 = *buf.first()?;
    let b1 = *buf.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (len, mut pos) = match b1 & 0x7F {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let mask = if masked {
        let m: [u8; 4] = buf.get(pos..pos + 4)?.try_into().ok()?;
        pos += 4;
        Some(m)
    } else {
        None
    };
    let mut payload = buf.get(pos..pos + len)?.to_vec();
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    Some((Frame { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0F, masked, payload }, pos + len))
}

/// A WebSocket connection done by hand: the handshake, masked frames out, frames in. As a `Wire`
/// it carries MQTT in binary frames and checks every server frame is an unmasked binary frame
/// (control frames other than close are not expected there).
pub struct WsRaw {
    pub stream: TcpStream,
    /// Raw bytes read and not yet parsed as frames.
    pub inbuf: Vec<u8>,
    /// Frames per MQTT write; 0 = one frame per write.
    pub split: usize,
}

impl WsRaw {
    /// Connect and complete the upgrade offering `mqtt`; the response must be 101 with the
    /// right accept key and `Sec-WebSocket-Protocol: mqtt`.
    pub fn connect(addr: SocketAddr) -> WsRaw {
        let (ws, head) = WsRaw::connect_with(addr, "/mqtt", Some("mqtt"));
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        assert_eq!(header(&head, "sec-websocket-protocol"), Some("mqtt"), "{head}");
        ws
    }

    /// Send an upgrade request and read the response head (whatever it is).
    pub fn connect_with(addr: SocketAddr, path: &str, protocols: Option<&str>) -> (WsRaw, String) {
        let mut stream = tcp_connect(addr);
        stream.write_all(upgrade_request(addr, path, protocols, "13").as_bytes()).unwrap();
        let (head, rest) = read_http_head(&mut stream);
        if head.starts_with("HTTP/1.1 101") {
            assert_eq!(header(&head, "sec-websocket-accept"), Some(WS_ACCEPT), "{head}");
            assert!(header(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")), "{head}");
        }
        (WsRaw { stream, inbuf: rest, split: 0 }, head)
    }

    pub fn send_raw(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)?;
        self.stream.flush()
    }

    /// Next server frame within `timeout`: Ok(None) on EOF/reset, Err on timeout.
    pub fn try_read_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, ()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((f, n)) = parse_frame(&self.inbuf) {
                self.inbuf.drain(..n);
                return Ok(Some(f));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(());
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    assert!(self.inbuf.is_empty(), "partial frame before EOF: {:02x?}", self.inbuf);
                    return Ok(None);
                }
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => {}
                Err(e) if is_reset(&e) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    pub fn read_frame(&mut self) -> Frame {
        match self.try_read_frame(READ_TIMEOUT) {
            Ok(Some(f)) => f,
            Ok(None) => panic!("connection closed while a frame was expected"),
            Err(()) => panic!("no frame within the timeout"),
        }
    }

    /// Expect a close frame with `code` (skipping binary frames before it), then EOF.
    pub fn expect_close(&mut self, code: u16) {
        loop {
            let f = self.read_frame();
            assert!(!f.masked, "server frames must not be masked: {f:?}");
            match f.opcode {
                OP_BINARY => continue,
                OP_CLOSE => {
                    assert!(f.payload.len() >= 2, "close frame without a code: {f:?}");
                    assert_eq!(u16::from_be_bytes([f.payload[0], f.payload[1]]), code, "close code");
                    break;
                }
                _ => panic!("unexpected frame while waiting for close {code}: {f:?}"),
            }
        }
        self.expect_eof();
    }

    /// After the close frame: the TCP connection ends (no more frames).
    pub fn expect_eof(&mut self) {
        match self.try_read_frame(READ_TIMEOUT) {
            Ok(None) => {}
            Ok(Some(f)) => panic!("frame after close: {f:?}"),
            Err(()) => panic!("TCP connection not closed after the close frame"),
        }
    }
}

impl Wire for WsRaw {
    fn send_bytes(&mut self, data: &[u8]) -> io::Result<()> {
        if self.split == 0 || data.len() <= 1 {
            return self.send_raw(&binary(data));
        }
        // Fragments of one message, `split` bytes each.
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = data.chunks(self.split).collect();
        for (i, c) in chunks.iter().enumerate() {
            let op = if i == 0 { OP_BINARY } else { OP_CONT };
            out.extend(frame(i + 1 == chunks.len(), op, c));
        }
        self.send_raw(&out)
    }

    fn read_more(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let timeout = self.stream.read_timeout().unwrap().unwrap_or(READ_TIMEOUT);
        match self.try_read_frame(timeout) {
            Ok(Some(f)) => {
                assert!(!f.masked, "server frames must not be masked: {f:?}");
                assert_eq!(f.rsv, 0, "server frame with RSV bits: {f:?}");
                match f.opcode {
                    OP_BINARY => {
                        assert!(f.fin, "server fragments binary messages: {f:?}");
                        buf.extend_from_slice(&f.payload);
                        if f.payload.is_empty() {
                            // An empty frame: report progress without signalling EOF.
                            return Err(io::Error::new(io::ErrorKind::WouldBlock, "empty frame"));
                        }
                        Ok(f.payload.len())
                    }
                    // A close frame ends the MQTT stream.
                    OP_CLOSE => Ok(0),
                    _ => panic!("unexpected server frame on an MQTT stream: {f:?}"),
                }
            }
            Ok(None) => Ok(0),
            Err(()) => Err(io::Error::new(io::ErrorKind::WouldBlock, "timeout")),
        }
    }

    fn set_timeout(&mut self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }
}

/// A raw WebSocket MQTT client that has CONNECTed with `id`.
pub fn ws_client(addr: SocketAddr, id: &str) -> Client<WsRaw> {
    let mut c = Client::new(WsRaw::connect(addr));
    c.connect_ok(id);
    c
}

/// Messages of mixed sizes (copied and shared payloads) to a subscriber that does not read at
/// first, so the broker's writes hit a full socket buffer and resume on writability.
pub fn slow_consumer_gets_everything_intact<W: Wire>(sub: &mut Client<W>, p: &mut Client<TcpStream>) {
    let sizes: Vec<usize> = (0..48).map(|i| if i % 3 == 0 { 200_000 } else { 100 + i * 37 }).collect();
    for (i, &n) in sizes.iter().enumerate() {
        p.send(&publish0("slow/t", &pattern(n, i as u32)));
    }
    p.ping();
    std::thread::sleep(Duration::from_millis(300));
    for (i, &n) in sizes.iter().enumerate() {
        let m = sub.recv_publish();
        assert_eq!(m.payload.len(), n, "message {i}");
        assert!(m.payload == pattern(n, i as u32), "message {i} corrupted");
    }
    sub.ping();
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 7) as u8
        })
        .collect()
}
