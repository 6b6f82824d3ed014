//! midge load generator: a standalone MQTT 3.1.1 / 5.0 client swarm (TCP or WebSocket, either of them
//! optionally under TLS) on a single-threaded mio loop. It carries its own minimal MQTT
//! encoder/decoder and WebSocket framing so the benchmark does not share code with the broker
//! under test; TLS is rustls (ring provider), as a client.
//!
//! Usage (one scenario per run, prints exactly one JSON line on stdout):
//!   loadgen --scenario fanin|fanout|flood|latency|conns --transport tcp|ws|mqtts|wss
//!           --addr 127.0.0.1:1883 [--tls CAFILE]
//!           [--qos 0|1] [--payload BYTES] [--duration SECS] [--warmup SECS]
//!           [--publishers N] [--subscribers N] [--rate MSGS_PER_SEC] [--conns N]
//!           [--inflight N] [--window N] [--broker-pid PID] [--path /mqtt]
//!           [--connect-batch N] [--drain SECS] [--timeout SECS] [--mqtt 4|5]
//!
//! `--mqtt 5` makes every connection speak MQTT 5.0 (no properties sent, the broker's skipped),
//! for the 5.0 rows of `make bench`; the default is 3.1.1.
//! Flow control: throughput scenarios are closed loop. Publishers stop when the number of
//! messages sent but not yet received by the subscribers reaches a window (bounded memory in
//! every broker, no overload drops); messages still missing after the drain are losses.
//! QoS 1 publishers additionally keep at most --inflight unacknowledged PUBLISHes each.
//! The flood scenario is the exception: open loop, QoS 0, --publishers write as fast as the
//! broker's sockets accept (TCP flow control is the only brake) to one wildcard subscriber;
//! goodput is what the subscriber receives, loss is published (accepted by the kernel) minus
//! received after the drain.
//!
//! TLS: mqtts is MQTT over TLS over TCP, wss WebSocket over TLS; both need --tls CAFILE (the
//! CA that signed the broker's certificate; the server name checked is the --addr IP, which the
//! certificate must carry as an IP SAN). --tls with tcp or ws means mqtts or wss. Session
//! resumption is off: every connection is a full handshake, like as many distinct devices.
//!
//! CPU: the loadgen's own CPU time and the broker's (from /proc/PID/task/*/schedstat) over
//! the measurement window are reported as percent of one core.

use std::net::SocketAddr;
use std::path::PathBuf;

mod clock;
mod conn;
mod mqtt;
mod scenarios;
mod ws;

use clock::now_ns;
use scenarios::{scenario_conns, scenario_flood, scenario_latency, scenario_throughput};

// ---------------------------------------------------------------- args

#[derive(Clone, Debug)]
struct Args {
    scenario: String,
    ws: bool,
    /// CA certificate to trust: every connection runs TLS (mqtts, wss).
    tls: Option<PathBuf>,
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
    /// MQTT protocol version: 4 (3.1.1) or 5.
    mqtt: u8,
}

impl Args {
    fn transport(&self) -> &'static str {
        match (self.ws, self.tls.is_some()) {
            (false, false) => "tcp",
            (true, false) => "ws",
            (false, true) => "mqtts",
            (true, true) => "wss",
        }
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    eprintln!(
        "usage: loadgen --scenario fanin|fanout|flood|latency|conns --transport tcp|ws|mqtts|wss --addr HOST:PORT \
         [--tls CAFILE] [--qos 0|1] [--payload N] [--duration S] [--warmup S] [--publishers N] [--subscribers N] \
         [--rate N] [--conns N] [--inflight N] [--window N] [--broker-pid PID] [--path /mqtt] \
         [--connect-batch N] [--drain S] [--timeout S] [--mqtt 4|5]"
    );
    std::process::exit(64);
}

fn parse_args() -> Args {
    let mut a = Args {
        scenario: String::new(),
        ws: false,
        tls: None,
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
        mqtt: 4,
    };
    let mut tls_transport = false;
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
                (a.ws, tls_transport) = match v.as_str() {
                    "tcp" => (false, false),
                    "ws" => (true, false),
                    "mqtts" => (false, true),
                    "wss" => (true, true),
                    _ => usage("transport must be tcp, ws, mqtts or wss"),
                }
            }
            "--tls" => a.tls = Some(PathBuf::from(v)),
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
            "--mqtt" => {
                a.mqtt = match v.as_str() {
                    "4" | "3.1.1" => 4,
                    "5" | "5.0" => 5,
                    _ => usage("--mqtt must be 4 (3.1.1) or 5"),
                }
            }
            _ => usage(&format!("unknown option {k}")),
        }
        i += 2;
    }
    if a.scenario.is_empty() {
        usage("--scenario is required");
    }
    if tls_transport && a.tls.is_none() {
        usage("mqtts and wss need --tls CAFILE");
    }
    if a.qos > 1 {
        usage("--qos must be 0 or 1");
    }
    mqtt::set_v5(a.mqtt == 5);
    a.publishers = a.publishers.max(1);
    a.subscribers = a.subscribers.max(1);
    a.inflight = a.inflight.clamp(1, 65_000);
    a.connect_batch = a.connect_batch.max(1);
    if a.timeout <= 0.0 {
        a.timeout = a.warmup + a.duration + a.drain + 60.0;
    }
    a
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
        o.s("transport", a.transport());
        o.n("mqtt", f64::from(a.mqtt));
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
    /// What TLS the connections negotiated (nothing on tcp and ws).
    fn tls(&mut self, net: &conn::Net) {
        if let Some((version, suite)) = net.tls_params() {
            self.s("tls_version", &version);
            self.s("tls_cipher", &suite);
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

fn main() {
    let a = parse_args();
    let _ = now_ns();
    match a.scenario.as_str() {
        "fanin" => scenario_throughput(&a, false),
        "fanout" => scenario_throughput(&a, true),
        "flood" => scenario_flood(&a),
        "latency" => scenario_latency(&a),
        "conns" => scenario_conns(&a),
        s => usage(&format!("unknown scenario {s}")),
    }
}
