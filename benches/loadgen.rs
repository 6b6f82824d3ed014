//! midge load generator: a standalone MQTT 3.1.1 client swarm (TCP or WebSocket) on a
//! single-threaded mio loop. It carries its own minimal MQTT encoder/decoder and WebSocket
//! framing so the benchmark does not share code with the broker under test.
//!
//! Usage (one scenario per run, prints exactly one JSON line on stdout):
//!   loadgen --scenario fanin|fanout|latency|conns --transport tcp|ws --addr 127.0.0.1:1883
//!           [--qos 0|1] [--payload BYTES] [--duration SECS] [--warmup SECS]
//!           [--publishers N] [--subscribers N] [--rate MSGS_PER_SEC] [--conns N]
//!           [--inflight N] [--window N] [--broker-pid PID] [--path /mqtt]
//!           [--connect-batch N] [--drain SECS] [--timeout SECS]
//!
//! Flow control: throughput scenarios are closed loop. Publishers stop when the number of
//! messages sent but not yet received by the subscribers reaches a window (bounded memory in
//! every broker, no overload drops); messages still missing after the drain are losses.
//! QoS 1 publishers additionally keep at most --inflight unacknowledged PUBLISHes each.
//!
//! CPU: the loadgen's own CPU time and the broker's (from /proc/PID/task/*/schedstat) over
//! the measurement window are reported as percent of one core.

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- args

#[derive(Clone, Debug)]
struct Args {
    scenario: String,
    ws: bool,
    addr: SocketAddr,
    qos: u8,
    payload: usize,
    duration: f64,
    warmup: f64,
    publishers: usize,
    subscribers: usize,
    rate: u64,
    conns: usize,
    inflight: usize,
    window: usize,
    broker_pid: Option<u32>,
    path: String,
    connect_batch: usize,
    drain: f64,
    timeout: f64,
}

fn usage(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    eprintln!(
        "usage: loadgen --scenario fanin|fanout|latency|conns --transport tcp|ws --addr HOST:PORT \
         [--qos 0|1] [--payload N] [--duration S] [--warmup S] [--publishers N] [--subscribers N] \
         [--rate N] [--conns N] [--inflight N] [--window N] [--broker-pid PID] [--path /mqtt] \
         [--connect-batch N] [--drain S] [--timeout S]"
    );
    std::process::exit(64);
}

fn parse_args() -> Args {
    let mut a = Args {
        scenario: String::new(),
        ws: false,
        addr: "127.0.0.1:1883".parse().unwrap(),
        qos: 0,
        payload: 16,
        duration: 3.0,
        warmup: 0.5,
        publishers: 4,
        subscribers: 1000,
        rate: 10_000,
        conns: 10_000,
        inflight: 100,
        window: 0,
        broker_pid: None,
        path: "/mqtt".into(),
        connect_batch: 96,
        drain: 2.0,
        timeout: 0.0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let k = argv[i].as_str();
        // `cargo bench` passes --bench; ignore it so the target also runs under cargo.
        if k == "--bench" {
            i += 1;
            continue;
        }
        if k == "-h" || k == "--help" {
            usage("help");
        }
        let v = argv.get(i + 1).cloned().unwrap_or_else(|| usage(&format!("{k} needs a value")));
        let num = |s: &str| -> f64 { s.parse::<f64>().unwrap_or_else(|_| usage(&format!("bad number for {k}: {s}"))) };
        match k {
            "--scenario" => a.scenario = v,
            "--transport" => {
                a.ws = match v.as_str() {
                    "tcp" => false,
                    "ws" => true,
                    _ => usage("transport must be tcp or ws"),
                }
            }
            "--addr" => a.addr = v.parse().unwrap_or_else(|_| usage("bad --addr")),
            "--qos" => a.qos = num(&v) as u8,
            "--payload" => a.payload = num(&v) as usize,
            "--duration" => a.duration = num(&v),
            "--warmup" => a.warmup = num(&v),
            "--publishers" => a.publishers = num(&v) as usize,
            "--subscribers" => a.subscribers = num(&v) as usize,
            "--rate" => a.rate = num(&v) as u64,
            "--conns" => a.conns = num(&v) as usize,
            "--inflight" => a.inflight = num(&v) as usize,
            "--window" => a.window = num(&v) as usize,
            "--broker-pid" => a.broker_pid = Some(num(&v) as u32),
            "--path" => a.path = v,
            "--connect-batch" => a.connect_batch = num(&v) as usize,
            "--drain" => a.drain = num(&v),
            "--timeout" => a.timeout = num(&v),
            _ => usage(&format!("unknown option {k}")),
        }
        i += 2;
    }
    if a.scenario.is_empty() {
        usage("--scenario is required");
    }
    if a.qos > 1 {
        usage("--qos must be 0 or 1");
    }
    a.publishers = a.publishers.max(1);
    a.subscribers = a.subscribers.max(1);
    a.inflight = a.inflight.clamp(1, 65_000);
    a.connect_batch = a.connect_batch.max(1);
    if a.timeout <= 0.0 {
        a.timeout = a.warmup + a.duration + a.drain + 60.0;
    }
    a
}

// ---------------------------------------------------------------- clocks and /proc

static BASE: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Total on-CPU nanoseconds of all threads of a process (sum of /proc/PID/task/*/schedstat).
fn cpu_ns(pid: &str) -> u64 {
    let mut total = 0u64;
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    for e in rd.flatten() {
        let p = e.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(p) {
            total += s.split_whitespace().next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

fn rss_kb(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            return rest.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
        }
    }
    0
}

struct CpuMeter {
    t0: Instant,
    self0: u64,
    broker: Option<(String, u64)>,
}

impl CpuMeter {
    fn start(broker_pid: Option<u32>) -> Self {
        let broker = broker_pid.map(|p| {
            let s = p.to_string();
            let c = cpu_ns(&s);
            (s, c)
        });
        CpuMeter { t0: Instant::now(), self0: cpu_ns("self"), broker }
    }
    /// (loadgen %, broker %) of one core since start.
    fn stop(&self) -> (f64, Option<f64>) {
        let wall = self.t0.elapsed().as_nanos().max(1) as f64;
        let me = (cpu_ns("self").saturating_sub(self.self0)) as f64 * 100.0 / wall;
        let br = self.broker.as_ref().map(|(p, c0)| (cpu_ns(p).saturating_sub(*c0)) as f64 * 100.0 / wall);
        (me, br)
    }
}

// ---------------------------------------------------------------- MQTT 3.1.1 encoding

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn enc_connect(client_id: &str, keepalive: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + client_id.len());
    put_str(&mut body, "MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(0x02); // clean session
    body.extend_from_slice(&keepalive.to_be_bytes());
    put_str(&mut body, client_id);
    let mut out = vec![0x10];
    put_varint(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn enc_subscribe(pid: u16, topic: &str, qos: u8) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&pid.to_be_bytes());
    put_str(&mut body, topic);
    body.push(qos);
    let mut out = vec![0x82];
    put_varint(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Returns (packet, offset of packet id if qos>0, offset of payload).
fn enc_publish(topic: &str, qos: u8, pid: u16, payload: &[u8]) -> (Vec<u8>, usize, usize) {
    let rl = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload.len();
    let mut out = Vec::with_capacity(rl + 5);
    out.push(0x30 | (qos << 1));
    put_varint(&mut out, rl);
    put_str(&mut out, topic);
    let pid_off = out.len();
    if qos > 0 {
        out.extend_from_slice(&pid.to_be_bytes());
    }
    let pay_off = out.len();
    out.extend_from_slice(payload);
    (out, pid_off, pay_off)
}

// ---------------------------------------------------------------- WebSocket framing (client side)

const WS_MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x8e];
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn xor_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m32 = u32::from_ne_bytes(mask) as u64;
    let m64 = m32 | (m32 << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap()) ^ m64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    let rem = chunks.into_remainder();
    for (i, b) in rem.iter_mut().enumerate() {
        *b ^= mask[i % 4]; // the full chunks consumed a multiple of 4 bytes
    }
}

/// Appends one masked binary frame carrying `payload`; returns offset of the payload in `out`.
fn ws_frame(out: &mut Vec<u8>, payload: &[u8]) -> usize {
    out.push(0x82);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&WS_MASK);
    let start = out.len();
    out.extend_from_slice(payload);
    xor_mask(&mut out[start..], WS_MASK);
    start
}

fn ws_control(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let start = out.len();
    ws_frame(out, payload);
    out[start] = 0x80 | opcode;
}

fn ws_expected_accept() -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(WS_KEY.as_bytes());
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A pre-encoded packet, already framed for the transport, with patchable fields.
#[derive(Clone)]
struct Template {
    bytes: Vec<u8>,
    mqtt_start: usize,
    ws: bool,
}

impl Template {
    fn new(pkt: &[u8], ws: bool) -> Self {
        if ws {
            let mut bytes = Vec::with_capacity(pkt.len() + 14);
            let start = ws_frame(&mut bytes, pkt);
            Template { bytes, mqtt_start: start, ws }
        } else {
            Template { bytes: pkt.to_vec(), mqtt_start: 0, ws }
        }
    }
    /// Overwrite bytes at `off` (offset inside the MQTT packet), masking as needed.
    #[inline]
    fn patch(&mut self, off: usize, val: &[u8]) {
        for (i, v) in val.iter().enumerate() {
            let m = if self.ws { WS_MASK[(off + i) % 4] } else { 0 };
            self.bytes[self.mqtt_start + off + i] = v ^ m;
        }
    }
}

// ---------------------------------------------------------------- connection

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    TcpConnecting,
    WsHandshake,
    MqttConnect,
    Subscribing,
    Ready,
    Dead,
}

struct Conn {
    sock: TcpStream,
    ws: bool,
    st: St,
    client_id: String,
    sub: Option<(String, u8)>,
    host: String,
    path: String,
    out: Vec<u8>,
    opos: usize,
    // Receive side: streaming, nothing is buffered per connection except partial headers.
    /// HTTP upgrade response bytes until its end (WsHandshake only).
    hs: Vec<u8>,
    /// WebSocket frame header bytes gathered so far (a header may straddle reads).
    ws_hdr: [u8; 14],
    ws_hlen: usize,
    /// Payload bytes left in the current WebSocket frame; 0 = a frame header comes next.
    ws_left: u64,
    ws_op: u8,
    ws_mask: Option<[u8; 4]>,
    /// Mask phase: payload bytes of the current frame already unmasked, mod 4.
    ws_moff: usize,
    /// Payload of the current control frame (ping/close; at most 125 bytes).
    ws_ctl: Vec<u8>,
    /// MQTT bytes of an incomplete packet head (fixed header + PUBLISH variable header) or of a
    /// whole small non-PUBLISH packet, when a read or WebSocket frame boundary splits it.
    carry: Vec<u8>,
    /// PUBLISH payload bytes still to skip (the payload is counted, never copied).
    skip: usize,
    /// Payload length, and packet id to acknowledge (QoS 1), of the PUBLISH being skipped.
    cur_pay: usize,
    cur_ack: Option<[u8; 2]>,
    /// First payload bytes of the current PUBLISH (the send timestamp) when latency is recorded.
    lat_want: usize,
    lat_have: usize,
    lat_buf: [u8; 8],
    /// now_ns() cached for one read (0 = not taken yet).
    now: u64,
    /// The last PUBLISH had a large payload (at least DISCARD_MIN bytes).
    big: bool,
    // stats
    pubs: u64,
    pub_bytes: u64,
    acks: u64,
    inflight: usize,
    next_pid: u16,
    record_lat: bool,
    lat: Vec<(u64, u64)>, // (send ts, latency) in ns
    counted: u64,
    dbg_read: u64,
    dbg_ws: u64,
    dbg_frames: u64,
    err: Option<String>,
}

/// One read buffer shared by all connections of a `Net` (data is parsed in place).
const RBUF_SIZE: usize = 256 * 1024;

impl Conn {
    fn new(addr: SocketAddr, ws: bool, client_id: String, sub: Option<(String, u8)>, path: &str) -> io::Result<Conn> {
        let sock = TcpStream::connect(addr)?;
        Ok(Conn {
            sock,
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

    fn fail(&mut self, e: String) {
        if self.st != St::Dead {
            self.err = Some(format!("{}: {e}", self.client_id));
            self.st = St::Dead;
        }
    }

    #[inline]
    fn pending(&self) -> usize {
        self.out.len() - self.opos
    }

    fn send_mqtt(&mut self, pkt: &[u8]) {
        if self.ws {
            ws_frame(&mut self.out, pkt);
        } else {
            self.out.extend_from_slice(pkt);
        }
    }

    fn alloc_pid(&mut self) -> u16 {
        let p = self.next_pid;
        self.next_pid = if p == u16::MAX { 1 } else { p + 1 };
        p
    }

    fn flush(&mut self) {
        if self.st == St::Dead || self.st == St::TcpConnecting {
            return;
        }
        while self.opos < self.out.len() {
            match self.sock.write(&self.out[self.opos..]) {
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
        } else if self.opos > (1 << 20) {
            self.out.drain(..self.opos);
            self.opos = 0;
        }
    }

    /// Called on any event while the TCP connect is in progress.
    fn check_connected(&mut self) {
        match self.sock.take_error() {
            Ok(Some(e)) | Err(e) => {
                self.fail(format!("connect: {e}"));
                return;
            }
            Ok(None) => {}
        }
        match self.sock.peer_addr() {
            Ok(_) => {
                let _ = self.sock.set_nodelay(true);
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
    fn on_event(&mut self, readable: bool, writable: bool, rbuf: &mut [u8]) -> u64 {
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
            n = self.on_readable(rbuf);
        }
        if writable || self.pending() > 0 {
            self.flush();
        }
        n
    }

    /// Read until the socket is drained, parsing every chunk in place in `rbuf` (shared by all
    /// connections): the cost per read is independent of message and WebSocket frame sizes.
    fn on_readable(&mut self, rbuf: &mut [u8]) -> u64 {
        let mut got = 0;
        loop {
            // In the middle of a large PUBLISH payload: let the kernel drop it without copying.
            let k = self.discardable();
            if k > 0 {
                match discard(&self.sock, k) {
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
            // payload behind it is dropped by `discard` instead of being copied.
            let want = if self.big && discard_enabled() { HEAD_READ } else { rbuf.len() };
            match self.sock.read(&mut rbuf[..want]) {
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
                    if n < want {
                        // Short read: the receive queue is drained; new data raises a new edge.
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
        if self.skip < DISCARD_MIN || self.lat_have < self.lat_want || !discard_enabled() {
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

    /// Streaming WebSocket deframing: a frame header is parsed as soon as it is complete, then
    /// the frame's payload is passed on chunk by chunk as it arrives (unmasked in place if the
    /// server masked it), never waiting for the whole frame.
    fn feed_ws(&mut self, buf: &mut [u8]) {
        let n = buf.len();
        let mut p = 0;
        while p < n && self.st != St::Dead {
            if self.ws_left > 0 {
                let k = (n - p).min(self.ws_left.min(usize::MAX as u64) as usize);
                let chunk = &mut buf[p..p + k];
                if let Some(m) = self.ws_mask {
                    let o = self.ws_moff;
                    xor_mask(chunk, [m[o & 3], m[(o + 1) & 3], m[(o + 2) & 3], m[(o + 3) & 3]]);
                    self.ws_moff = (o + k) & 3;
                }
                if self.ws_op <= 2 {
                    self.dbg_ws += k as u64;
                    self.feed_mqtt(chunk);
                } else if self.ws_ctl.len() < 4096 {
                    self.ws_ctl.extend_from_slice(chunk);
                }
                self.ws_left -= k as u64;
                p += k;
                if self.ws_left == 0 {
                    self.end_frame();
                }
                continue;
            }
            // Frame header: 2 bytes, + 2 or 8 extended length, + 4 mask; it may straddle reads.
            if self.ws_hlen < 2 {
                let k = (2 - self.ws_hlen).min(n - p);
                self.ws_hdr[self.ws_hlen..self.ws_hlen + k].copy_from_slice(&buf[p..p + k]);
                self.ws_hlen += k;
                p += k;
                if self.ws_hlen < 2 {
                    continue;
                }
            }
            let b1 = self.ws_hdr[1];
            let need =
                2 + match b1 & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                } + if b1 & 0x80 != 0 { 4 } else { 0 };
            let k = (need - self.ws_hlen).min(n - p);
            self.ws_hdr[self.ws_hlen..self.ws_hlen + k].copy_from_slice(&buf[p..p + k]);
            self.ws_hlen += k;
            p += k;
            if self.ws_hlen < need {
                continue;
            }
            let h = &self.ws_hdr;
            let (len, mut o) = match h[1] & 0x7f {
                126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
                127 => (u64::from_be_bytes(h[2..10].try_into().unwrap()), 10),
                l => (l as u64, 2),
            };
            self.ws_mask = None;
            if h[1] & 0x80 != 0 {
                self.ws_mask = Some([h[o], h[o + 1], h[o + 2], h[o + 3]]);
                o += 4;
            }
            debug_assert_eq!(o, need);
            self.ws_op = h[0] & 0x0f;
            self.ws_moff = 0;
            self.ws_hlen = 0;
            self.ws_left = len;
            self.dbg_frames += 1;
            if len == 0 {
                self.end_frame();
            }
        }
    }

    /// The current WebSocket frame is complete: act on control frames.
    fn end_frame(&mut self) {
        match self.ws_op {
            8 => self.fail("websocket close frame from broker".into()),
            9 => {
                let p = std::mem::take(&mut self.ws_ctl);
                ws_control(&mut self.out, 0xA, &p);
            }
            _ => {}
        }
        self.ws_ctl.clear();
    }

    /// Streaming MQTT parsing: packet heads are parsed in place (or from `carry` when a read
    /// or frame boundary splits one), PUBLISH payloads are skipped by counting.
    fn feed_mqtt(&mut self, data: &[u8]) {
        let n = data.len();
        let mut p = 0;
        while p < n && self.st != St::Dead {
            if self.skip > 0 {
                let k = self.skip.min(n - p);
                if self.lat_have < self.lat_want {
                    let t = k.min(self.lat_want - self.lat_have);
                    self.lat_buf[self.lat_have..self.lat_have + t].copy_from_slice(&data[p..p + t]);
                    self.lat_have += t;
                }
                self.skip -= k;
                p += k;
                if self.skip == 0 {
                    self.end_publish();
                }
                continue;
            }
            if self.carry.is_empty() {
                match self.parse_head(&data[p..]) {
                    Some(Ok(used)) => p += used,
                    Some(Err(_)) => {
                        // Incomplete head: everything left is part of it (a head never
                        // reaches into the bytes that follow it).
                        self.carry.extend_from_slice(&data[p..]);
                        p = n;
                    }
                    None => return,
                }
            } else {
                // Top the carry up to exactly the size the parser asks for, then parse it.
                let mut carry = std::mem::take(&mut self.carry);
                loop {
                    match self.parse_head(&carry) {
                        Some(Ok(used)) => {
                            debug_assert_eq!(used, carry.len());
                            carry.clear();
                            break;
                        }
                        Some(Err(need)) => {
                            if p == n {
                                break;
                            }
                            let t = (need - carry.len()).min(n - p);
                            carry.extend_from_slice(&data[p..p + t]);
                            p += t;
                        }
                        None => break,
                    }
                }
                self.carry = carry;
            }
        }
    }

    /// Parse one packet head at the start of `d`. Returns Some(Ok(bytes consumed)): a whole
    /// non-PUBLISH packet, or a PUBLISH's fixed + variable header (its payload is then skipped
    /// by `feed_mqtt`; a PUBLISH wholly inside `d` is consumed at once); Some(Err(n)): `d` is
    /// incomplete and at least `n` bytes are needed, where `n` never exceeds the head's size;
    /// None: protocol error (the connection failed).
    fn parse_head(&mut self, d: &[u8]) -> Option<Result<usize, usize>> {
        if d.len() < 2 {
            return Some(Err(2));
        }
        let mut rl = 0usize;
        let mut mult = 1usize;
        let mut i = 1;
        loop {
            if i > 4 {
                self.fail("malformed remaining length".into());
                return None;
            }
            if i >= d.len() {
                return Some(Err(i + 1));
            }
            let b = d[i];
            rl += (b & 0x7f) as usize * mult;
            mult *= 128;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let h = d[0];
        if h >> 4 == 3 {
            let qos = (h >> 1) & 3;
            if rl < 2 {
                self.fail("short PUBLISH".into());
                return None;
            }
            if d.len() < i + 2 {
                return Some(Err(i + 2));
            }
            let tl = u16::from_be_bytes([d[i], d[i + 1]]) as usize;
            let mut vh = 2 + tl;
            if qos > 0 {
                if rl < vh + 2 {
                    self.fail("short PUBLISH".into());
                    return None;
                }
                vh += 2;
            } else {
                vh = vh.min(rl);
            }
            if d.len() < i + vh {
                return Some(Err(i + vh));
            }
            if qos > 0 {
                self.cur_ack = Some([d[i + vh - 2], d[i + vh - 1]]);
            }
            let pay = rl - vh;
            self.cur_pay = pay;
            self.lat_want = if self.record_lat && pay >= 8 { 8 } else { 0 };
            self.lat_have = 0;
            if d.len() >= i + rl {
                // The whole PUBLISH is here: no need to go through the skip state.
                if self.lat_want > 0 {
                    self.lat_buf.copy_from_slice(&d[i + vh..i + vh + 8]);
                    self.lat_have = 8;
                }
                self.end_publish();
                return Some(Ok(i + rl));
            }
            self.skip = pay;
            return Some(Ok(i + vh));
        }
        if d.len() < i + rl {
            return Some(Err(i + rl));
        }
        let body = &d[i..i + rl];
        match h >> 4 {
            4 => {
                self.acks += 1;
                self.inflight = self.inflight.saturating_sub(1);
            }
            2 => {
                if body.len() < 2 || body[1] != 0 {
                    self.fail(format!("CONNACK refused: {:?}", body));
                    return None;
                }
                if let Some((t, q)) = self.sub.clone() {
                    let pid = self.alloc_pid();
                    let pkt = enc_subscribe(pid, &t, q);
                    self.send_mqtt(&pkt);
                    self.st = St::Subscribing;
                } else {
                    self.st = St::Ready;
                }
            }
            9 => {
                if body.len() < 3 || body[2] == 0x80 {
                    self.fail("SUBACK failure".into());
                    return None;
                }
                self.st = St::Ready;
            }
            13 => {}
            t => {
                self.fail(format!("unexpected packet type {t}"));
                return None;
            }
        }
        Some(Ok(i + rl))
    }

    /// A PUBLISH has been received completely: acknowledge (QoS 1) and count it.
    fn end_publish(&mut self) {
        if let Some(pid) = self.cur_ack.take() {
            let ack = [0x40, 2, pid[0], pid[1]];
            self.send_mqtt(&ack);
        }
        self.pubs += 1;
        self.pub_bytes += self.cur_pay as u64;
        self.big = self.cur_pay >= DISCARD_MIN;
        if self.lat_want > 0 && self.lat_have >= 8 {
            if self.now == 0 {
                self.now = now_ns();
            }
            let ts = u64::from_le_bytes(self.lat_buf);
            self.lat.push((ts, self.now.saturating_sub(ts)));
        }
        self.lat_want = 0;
        self.lat_have = 0;
    }
}

/// Payload runs at least this long are dropped in the kernel (recv with MSG_TRUNC).
const DISCARD_MIN: usize = 4096;

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

struct Net {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    addr: SocketAddr,
    ws: bool,
    path: String,
    received: u64, // PUBLISH packets received over all conns
    rbuf: Vec<u8>,
}

impl Net {
    fn new(a: &Args) -> Net {
        Net {
            poll: Poll::new().expect("poll"),
            events: Events::with_capacity(4096),
            conns: Vec::new(),
            addr: a.addr,
            ws: a.ws,
            path: a.path.clone(),
            received: 0,
            rbuf: vec![0; RBUF_SIZE],
        }
    }

    fn add(&mut self, client_id: String, sub: Option<(String, u8)>) -> Result<usize, String> {
        let mut c = Conn::new(self.addr, self.ws, client_id, sub, &self.path).map_err(|e| format!("connect: {e}"))?;
        let idx = self.conns.len();
        self.poll
            .registry()
            .register(&mut c.sock, Token(idx), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        self.conns.push(c);
        Ok(idx)
    }

    /// One poll round; dispatches events. Returns Err on the first dead connection.
    fn turn(&mut self, timeout: Duration) -> Result<(), String> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("poll: {e}")),
        }
        for ev in self.events.iter() {
            let i = ev.token().0;
            let c = &mut self.conns[i];
            self.received += c.on_event(ev.is_readable() || ev.is_read_closed(), ev.is_writable(), &mut self.rbuf);
            if c.st == St::Dead {
                return Err(c.err.clone().unwrap_or_else(|| "connection died".into()));
            }
        }
        Ok(())
    }

    /// Open connections for `ids` (client id, optional subscription) with at most `batch`
    /// handshakes in flight; returns when all are Ready.
    fn establish(
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

// ---------------------------------------------------------------- output helpers

fn json_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

struct Out {
    fields: Vec<(String, String)>,
}

impl Out {
    fn new(a: &Args) -> Out {
        let mut o = Out { fields: Vec::new() };
        o.s("scenario", &a.scenario);
        o.s("transport", if a.ws { "ws" } else { "tcp" });
        o.s("addr", &a.addr.to_string());
        o
    }
    fn s(&mut self, k: &str, v: &str) {
        self.fields.push((k.into(), format!("\"{}\"", json_escape(v))));
    }
    fn n(&mut self, k: &str, v: f64) {
        let s = if v.is_finite() {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{}", v as i64)
            } else {
                format!("{:.3}", v)
            }
        } else {
            "null".into()
        };
        self.fields.push((k.into(), s));
    }
    fn opt(&mut self, k: &str, v: Option<f64>) {
        match v {
            Some(x) => self.n(k, x),
            None => self.fields.push((k.into(), "null".into())),
        }
    }
    fn print(&self) {
        let body: Vec<String> = self.fields.iter().map(|(k, v)| format!("\"{}\":{}", k, v)).collect();
        println!("{{{}}}", body.join(","));
    }
}

fn fail_out(a: &Args, e: &str) -> ! {
    let mut o = Out::new(a);
    o.s("error", e);
    o.print();
    std::process::exit(2);
}

// ---------------------------------------------------------------- scenarios

fn run_tag() -> String {
    format!("lg{}", std::process::id())
}

fn default_window(a: &Args, fanout: usize) -> usize {
    if a.window > 0 {
        return a.window;
    }
    // Outstanding deliveries bounded by ~16 MB of payload, and by message count.
    let per = a.payload + 32;
    let by_bytes = (16 << 20) / per;
    let cap = if fanout > 1 { 20 * fanout } else { 4000 };
    by_bytes.clamp(fanout.max(16), cap.max(fanout))
}

/// fan-in (N publishers to distinct topics, one wildcard subscriber) and fan-out
/// (one publisher, N subscribers on one topic).
fn scenario_throughput(a: &Args, fanout_mode: bool) {
    let mut net = Net::new(a);
    let tag = run_tag();
    let qos = a.qos;
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let (nsub, npub) = if fanout_mode { (a.subscribers, 1) } else { (1, a.publishers) };
    let t_setup = Instant::now();
    let sub_specs: Vec<_> = (0..nsub)
        .map(|i| {
            let topic = if fanout_mode { format!("bench/{tag}/fanout") } else { format!("bench/{tag}/in/#") };
            (format!("{tag}s{i}"), Some((topic, qos)))
        })
        .collect();
    let _subs = net.establish(sub_specs, a.connect_batch, deadline).unwrap_or_else(|e| fail_out(a, &e));
    let pub_specs: Vec<_> = (0..npub).map(|i| (format!("{tag}p{i}"), None)).collect();
    let pubs = net.establish(pub_specs, a.connect_batch, deadline).unwrap_or_else(|e| fail_out(a, &e));
    let setup_s = t_setup.elapsed().as_secs_f64();

    // Pre-encoded packet per publisher.
    let payload = vec![0xA5u8; a.payload];
    let mut tmpl: Vec<(Template, usize)> = (0..npub)
        .map(|i| {
            let topic = if fanout_mode { format!("bench/{tag}/fanout") } else { format!("bench/{tag}/in/p{i}") };
            let (pkt, pid_off, _) = enc_publish(&topic, qos, 1, &payload);
            (Template::new(&pkt, a.ws), pid_off)
        })
        .collect();
    let pkt_len = tmpl[0].0.bytes.len();
    let window = default_window(a, nsub) as u64; // outstanding deliveries
    let fan = nsub as u64;
    // Per refill, at most this many bytes are appended to one publisher's buffer.
    let max_pending = (256 * 1024).max(pkt_len * 4);
    let chunk = ((64 * 1024) / pkt_len).clamp(1, 64);

    let t0 = Instant::now();
    let t_meas = t0 + Duration::from_secs_f64(a.warmup);
    let t_end = t_meas + Duration::from_secs_f64(a.duration);
    let mut sent: u64 = 0; // PUBLISH packets written by publishers
    let mut meter: Option<CpuMeter> = None;
    let mut recv_at_meas = 0u64;
    let mut sent_at_meas = 0u64;
    let mut result: Option<(f64, u64, (f64, Option<f64>))> = None;
    let mut last_recv = 0u64;
    let mut last_progress = Instant::now();
    let mut stall_lost: u64 = 0;
    let mut stalls = 0u64;
    loop {
        let now = Instant::now();
        if now > deadline {
            fail_out(a, "overall timeout");
        }
        if meter.is_none() && now >= t_meas {
            meter = Some(CpuMeter::start(a.broker_pid));
            recv_at_meas = net.received;
            sent_at_meas = sent;
        }
        if result.is_none() && now >= t_end {
            let m = meter.take().unwrap_or_else(|| CpuMeter::start(a.broker_pid));
            let el = (now - t_meas).as_secs_f64();
            result = Some((el, net.received - recv_at_meas, m.stop()));
            let _ = sent_at_meas;
        }
        let publishing = result.is_none();
        if publishing {
            // Closed-loop refill, round robin over publishers in small chunks.
            let outstanding = (sent * fan).saturating_sub(net.received + stall_lost);
            let mut room = window.saturating_sub(outstanding) / fan;
            // Hysteresis: refill only once a good part of the window is free, so that writes
            // are batched instead of one syscall per freed slot (keeps the loadgen cheap
            // against brokers that deliver one message per TCP segment).
            if room < (window / fan / 8).max(1) {
                room = 0;
            }
            let mut progress = true;
            while room > 0 && progress {
                progress = false;
                for (k, &pi) in pubs.iter().enumerate() {
                    if room == 0 {
                        break;
                    }
                    let c = &mut net.conns[pi];
                    if c.pending() >= max_pending {
                        continue;
                    }
                    let mut n = (chunk as u64).min(room);
                    if qos > 0 {
                        let free = a.inflight.saturating_sub(c.inflight);
                        if free < (a.inflight / 4).max(1) {
                            continue;
                        }
                        n = n.min(free as u64);
                    }
                    if n == 0 {
                        continue;
                    }
                    let (t, pid_off) = &mut tmpl[k];
                    for _ in 0..n {
                        if qos > 0 {
                            let pid = c.alloc_pid();
                            t.patch(*pid_off, &pid.to_be_bytes());
                            c.inflight += 1;
                        }
                        c.out.extend_from_slice(&t.bytes);
                    }
                    sent += n;
                    room -= n;
                    progress = true;
                    c.flush();
                    if c.st == St::Dead {
                        fail_out(a, &c.err.clone().unwrap_or_default());
                    }
                }
            }
            // Stall detection: a broker that drops messages (or stops reading) would freeze the
            // closed loop, so when nothing arrives for 250 ms the gap is written off as lost.
            let outstanding = (sent * fan).saturating_sub(net.received + stall_lost);
            if net.received != last_recv {
                last_recv = net.received;
                last_progress = now;
            } else if outstanding > 0 && now - last_progress > Duration::from_millis(250) {
                stall_lost += outstanding;
                stalls += 1;
                last_progress = now;
            }
        } else {
            // Draining: stop when everything arrived (and QoS 1 publishers are fully acked).
            let acked = pubs.iter().all(|&p| net.conns[p].inflight == 0);
            let done = net.received >= sent * fan && (qos == 0 || acked);
            if done || now > t_end + Duration::from_secs_f64(a.drain) {
                break;
            }
        }
        if let Err(e) = net.turn(Duration::from_millis(if publishing { 1 } else { 5 })) {
            fail_out(a, &e);
        }
    }
    let (el, recv_meas, (lg_cpu, br_cpu)) = result.unwrap();
    if std::env::var("LOADGEN_DEBUG").is_ok() {
        for c in &net.conns {
            eprintln!(
                "{} st={:?} read={} ws={} frames={} pubs={} pubbytes={} ws_left={} carry={} skip={} out={}",
                c.client_id,
                c.st,
                c.dbg_read,
                c.dbg_ws,
                c.dbg_frames,
                c.pubs,
                c.pub_bytes,
                c.ws_left,
                c.carry.len(),
                c.skip,
                c.pending()
            );
        }
    }
    let expected = sent * fan;
    let lost = expected.saturating_sub(net.received);
    let mut o = Out::new(a);
    o.n("qos", qos as f64);
    o.n("payload", a.payload as f64);
    o.n("publishers", npub as f64);
    o.n("subscribers", nsub as f64);
    o.n("window", window as f64);
    o.n("setup_s", setup_s);
    o.n("elapsed_s", el);
    o.n("msgs_per_sec", recv_meas as f64 / el);
    o.n("mbytes_per_sec", recv_meas as f64 * a.payload as f64 / el / 1e6);
    o.n("sent", sent as f64);
    o.n("expected", expected as f64);
    o.n("received", net.received as f64);
    o.n("lost", lost as f64);
    o.n("stalls", stalls as f64);
    o.n("loadgen_cpu_pct", lg_cpu);
    o.opt("broker_cpu_pct", br_cpu);
    o.print();
}

/// Latency at a fixed rate: a paced publisher thread, a subscriber on the main loop;
/// each payload carries its send timestamp.
fn scenario_latency(a: &Args) {
    let mut net = Net::new(a);
    let tag = run_tag();
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let topic = format!("bench/{tag}/lat");
    let sub = net
        .establish(vec![(format!("{tag}s0"), Some((topic.clone(), a.qos)))], 1, deadline)
        .unwrap_or_else(|e| fail_out(a, &e))[0];
    net.conns[sub].record_lat = true;
    net.conns[sub].lat.reserve(((a.warmup + a.duration) * a.rate as f64) as usize + 1024);

    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let err: Arc<std::sync::Mutex<Option<String>>> = Arc::new(std::sync::Mutex::new(None));
    let _ = now_ns();
    let t0 = Instant::now();
    let meas_from_ns = now_ns() + (a.warmup * 1e9) as u64;
    let total_s = a.warmup + a.duration;
    let (sent2, done2, err2, a2, fin2) = (sent.clone(), done.clone(), err.clone(), a.clone(), finished.clone());
    let payload_len = a.payload.max(8);
    let th = std::thread::spawn(move || {
        let a = a2;
        let run = || -> Result<(), String> {
            let mut pn = Net::new(&a);
            let p = pn.establish(vec![(format!("{}p0", run_tag()), None)], 1, deadline)?[0];
            let (pkt, pid_off, pay_off) = enc_publish(&topic, a.qos, 1, &vec![0x5Au8; payload_len]);
            let mut t = Template::new(&pkt, a.ws);
            let start = Instant::now();
            let end = start + Duration::from_secs_f64(total_s);
            let period = 1.0 / a.rate.max(1) as f64;
            let mut i: u64 = 0;
            loop {
                let now = Instant::now();
                if now >= end || now > deadline {
                    break;
                }
                let due = ((now - start).as_secs_f64() / period) as u64 + 1;
                if due > i {
                    let c = &mut pn.conns[p];
                    while i < due {
                        if a.qos > 0 {
                            let pid = c.alloc_pid();
                            t.patch(pid_off, &pid.to_be_bytes());
                        }
                        t.patch(pay_off, &now_ns().to_le_bytes());
                        c.out.extend_from_slice(&t.bytes);
                        i += 1;
                    }
                    c.flush();
                    if c.st == St::Dead {
                        return Err(c.err.clone().unwrap_or_default());
                    }
                    sent2.store(i, Ordering::Relaxed);
                }
                // Drain acks / anything the broker sends, without blocking.
                pn.turn(Duration::ZERO)?;
                let next = start + Duration::from_secs_f64(i as f64 * period);
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
            fin2.store(true, Ordering::Relaxed);
            // Keep the connection open until the subscriber has drained.
            let stop = Instant::now() + Duration::from_secs_f64(a.drain);
            while Instant::now() < stop && !done2.load(Ordering::Relaxed) {
                pn.turn(Duration::from_millis(5))?;
            }
            Ok(())
        };
        if let Err(e) = run() {
            *err2.lock().unwrap() = Some(e);
        }
        fin2.store(true, Ordering::Relaxed);
        done2.store(true, Ordering::Relaxed);
    });

    let mut meter: Option<CpuMeter> = None;
    let mut cpu = (0.0, None);
    let t_meas = t0 + Duration::from_secs_f64(a.warmup);
    let t_end = t_meas + Duration::from_secs_f64(a.duration);
    let mut ended = false;
    let mut drain_start: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if meter.is_none() && !ended && now >= t_meas {
            meter = Some(CpuMeter::start(a.broker_pid));
        }
        if !ended && now >= t_end {
            if let Some(m) = meter.take() {
                cpu = m.stop();
            }
            ended = true;
        }
        if let Some(e) = err.lock().unwrap().clone() {
            fail_out(a, &e);
        }
        let fin = finished.load(Ordering::Relaxed);
        let s = sent.load(Ordering::Relaxed);
        if ended && fin {
            let drain_until = *drain_start.get_or_insert(now) + Duration::from_secs_f64(a.drain);
            if net.received >= s || now > drain_until {
                break;
            }
        }
        if now > deadline {
            fail_out(a, "overall timeout");
        }
        if let Err(e) = net.turn(Duration::from_millis(2)) {
            fail_out(a, &e);
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = th.join();
    let s = sent.load(Ordering::Relaxed);
    let mut lats: Vec<u64> = net.conns[sub].lat.iter().filter(|(ts, _)| *ts >= meas_from_ns).map(|(_, l)| *l).collect();
    lats.sort_unstable();
    let pct = |q: f64| -> Option<f64> {
        if lats.is_empty() {
            return None;
        }
        let idx = ((q * lats.len() as f64).ceil() as usize).clamp(1, lats.len()) - 1;
        Some(lats[idx] as f64 / 1000.0)
    };
    let mut o = Out::new(a);
    o.n("qos", a.qos as f64);
    o.n("payload", payload_len as f64);
    o.n("rate", a.rate as f64);
    o.n("samples", lats.len() as f64);
    o.n("sent", s as f64);
    o.n("received", net.received as f64);
    o.n("lost", s.saturating_sub(net.received) as f64);
    o.opt("p50_us", pct(0.50));
    o.opt("p99_us", pct(0.99));
    o.opt("p999_us", pct(0.999));
    o.opt("max_us", lats.last().map(|x| *x as f64 / 1000.0));
    o.n("loadgen_cpu_pct", cpu.0);
    o.opt("broker_cpu_pct", cpu.1);
    o.print();
}

/// Many idle subscribed clients: connect time, broker RSS per connection, then one message
/// to each client's own topic to prove they are all alive.
fn scenario_conns(a: &Args) {
    let mut net = Net::new(a);
    net.events = Events::with_capacity(16384);
    let tag = run_tag();
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let rss0 = a.broker_pid.map(rss_kb);
    let t_conn = Instant::now();
    let specs: Vec<_> =
        (0..a.conns).map(|i| (format!("{tag}c{i}"), Some((format!("bench/{tag}/c/{i}"), a.qos)))).collect();
    let subs = net.establish(specs, a.connect_batch, deadline).unwrap_or_else(|e| fail_out(a, &e));
    let connect_s = t_conn.elapsed().as_secs_f64();
    // Let the broker settle, then sample its memory.
    let settle = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < settle {
        if let Err(e) = net.turn(Duration::from_millis(50)) {
            fail_out(a, &e);
        }
    }
    let rss1 = a.broker_pid.map(rss_kb);
    let p = net.establish(vec![(format!("{tag}pub"), None)], 1, deadline).unwrap_or_else(|e| fail_out(a, &e))[0];
    let payload = vec![0x42u8; a.payload];
    let t_pub = Instant::now();
    let meter = CpuMeter::start(a.broker_pid);
    let mut next = 0usize;
    let window = 2000u64;
    let pub_deadline = t_pub + Duration::from_secs_f64(a.drain.max(1.0) + 3.0);
    loop {
        let outstanding = (next as u64).saturating_sub(net.received);
        let mut room = window.saturating_sub(outstanding);
        let c = &mut net.conns[p];
        while room > 0 && next < subs.len() && c.pending() < 256 * 1024 {
            let (pkt, pid_off, _) = enc_publish(&format!("bench/{tag}/c/{next}"), a.qos, 0, &payload);
            let mut pkt = pkt;
            if a.qos > 0 {
                let pid = c.alloc_pid();
                pkt[pid_off..pid_off + 2].copy_from_slice(&pid.to_be_bytes());
            }
            c.send_mqtt(&pkt);
            next += 1;
            room -= 1;
        }
        c.flush();
        if net.received >= subs.len() as u64 || Instant::now() > pub_deadline {
            break;
        }
        if let Err(e) = net.turn(Duration::from_millis(5)) {
            fail_out(a, &e);
        }
    }
    let deliver_s = t_pub.elapsed().as_secs_f64();
    let (lg_cpu, br_cpu) = meter.stop();
    let alive = subs.iter().filter(|&&i| net.conns[i].pubs > 0).count();
    let mut o = Out::new(a);
    o.n("conns", a.conns as f64);
    o.n("connect_s", connect_s);
    o.n("conns_per_sec", a.conns as f64 / connect_s.max(1e-9));
    o.opt("broker_rss_kb_before", rss0.map(|x| x as f64));
    o.opt("broker_rss_kb_after", rss1.map(|x| x as f64));
    o.opt(
        "rss_per_conn_kb",
        match (rss0, rss1) {
            (Some(b), Some(c)) => Some((c as f64 - b as f64) / a.conns.max(1) as f64),
            _ => None,
        },
    );
    o.n("alive", alive as f64);
    o.n("lost", (a.conns - alive) as f64);
    o.n("deliver_s", deliver_s);
    o.n("loadgen_cpu_pct", lg_cpu);
    o.opt("broker_cpu_pct", br_cpu);
    o.print();
}

fn main() {
    let a = parse_args();
    let _ = now_ns();
    match a.scenario.as_str() {
        "fanin" => scenario_throughput(&a, false),
        "fanout" => scenario_throughput(&a, true),
        "latency" => scenario_latency(&a),
        "conns" => scenario_conns(&a),
        s => usage(&format!("unknown scenario {s}")),
    }
}
