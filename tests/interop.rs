//! Interoperability tests: real, independent MQTT clients against an in-process midge broker.
//!
//! Each test starts its own broker on ephemeral loopback ports and drives external clients as
//! subprocesses: `mosquitto_pub`/`mosquitto_sub` (Debian mosquitto-clients), Eclipse paho-mqtt 2.x
//! (Python, tests/interop/paho_tool.py), MQTT.js 5 in Node (tests/interop/mqttjs_tool.js) and
//! MQTT.js's browser bundle in headless Chromium (tests/interop/browser.html).
//!
//! The tools are installed by `tests/interop/install-deps.sh` (run by `make test`). A missing
//! tool makes the test fail, never pass silently. Every subprocess and every wait is bounded.

mod browser_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for one client run (the scripts time out by themselves after ~20 s).
const STEP: Duration = Duration::from_secs(30);
/// How long to keep listening for unexpected extra messages (duplicates, stale retained, ...).
const LINGER: Duration = Duration::from_millis(400);

// ------------------------------------------------------------------------------------------------
// Broker

struct TestBroker {
    tcp: SocketAddr,
    ws: SocketAddr,
    handle: Option<midge::BrokerHandle>,
    done: Option<mpsc::Receiver<Result<(), String>>>,
    join: Option<thread::JoinHandle<()>>,
}

impl TestBroker {
    fn start() -> TestBroker {
        let mut broker = midge::Broker::new(midge::Config::loopback_ephemeral()).unwrap();
        let addrs = broker.local_addrs();
        let tcp = addrs.iter().find(|(p, _)| *p == midge::Protocol::Mqtt).unwrap().1;
        let ws = addrs.iter().find(|(p, _)| *p == midge::Protocol::WebSockets).unwrap().1;
        let handle = broker.handle();
        let (tx, rx) = mpsc::channel();
        let join = thread::spawn(move || {
            let r = broker.run().map_err(|e| e.to_string());
            let _ = tx.send(r);
        });
        TestBroker { tcp, ws, handle: Some(handle), done: Some(rx), join: Some(join) }
    }

    fn tcp_url(&self) -> String {
        format!("tcp://{}", self.tcp)
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/mqtt", self.ws)
    }

    /// Arguments for mosquitto_pub / mosquitto_sub to reach the TCP listener.
    fn mosq_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.tcp.ip().to_string(),
            "-p".into(),
            self.tcp.port().to_string(),
            "-V".into(),
            "mqttv311".into(),
        ]
    }

    /// Stops the broker and checks that `run()` returned Ok within a bounded time.
    fn stop(mut self) {
        self.handle.take().unwrap().stop();
        let done = self.done.take().unwrap();
        match done.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("broker run() returned an error: {e}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("broker did not stop within 10 s of handle.stop()")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("broker thread panicked"),
        }
        self.join.take().unwrap().join().unwrap();
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // Only reached without stop() when a test panicked: stop, but never block for long.
        if let Some(h) = self.handle.take() {
            h.stop();
            if let Some(rx) = self.done.take() {
                let _ = rx.recv_timeout(Duration::from_secs(5));
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// External tools

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

fn missing(what: &str, detail: &str) -> ! {
    panic!(
        "interop test prerequisite missing: {what} ({detail}).\n\
         Run `make test` (it runs `bash tests/interop/install-deps.sh`, which installs \
         mosquitto-clients, chromium, paho-mqtt and the npm packages)."
    )
}

fn require_command(prog: &str, args: &[&str]) {
    match Command::new(prog).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => {}
        Err(e) => missing(prog, &e.to_string()),
    }
}

fn require_mosquitto_clients() {
    // `--help` exits non-zero; we only care that the programs exist.
    require_command("mosquitto_pub", &["--help"]);
    require_command("mosquitto_sub", &["--help"]);
}

fn require_paho() {
    let out = Command::new("python3")
        .args(["-c", "import paho.mqtt.client as m; assert hasattr(m, 'CallbackAPIVersion')"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => missing("Python paho-mqtt 2.x", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => missing("python3", &e.to_string()),
    }
}

fn require_mqttjs() {
    require_command("node", &["--version"]);
    let pkg = interop_dir().join("node_modules/mqtt/dist/mqtt.min.js");
    if !pkg.exists() {
        missing("npm package mqtt (MQTT.js)", &format!("{} not found", pkg.display()));
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A string unique within this test run (for client ids, tokens and temp dirs).
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ------------------------------------------------------------------------------------------------
// Subprocesses with bounded waits

struct Output {
    buf: Mutex<Vec<u8>>,
    cv: Condvar,
}

/// A running client. Its stdout is collected as it arrives; it is killed when dropped.
struct Proc {
    name: String,
    child: Child,
    out: Arc<Output>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

fn spawn(name: &str, cmd: &mut Command) -> Proc {
    spawn_with_stdin(name, cmd, None)
}

fn spawn_with_stdin(name: &str, cmd: &mut Command, stdin: Option<Vec<u8>>) -> Proc {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => missing(name, &format!("cannot run {cmd:?}: {e}")),
    };
    if let Some(data) = stdin {
        let mut si = child.stdin.take().unwrap();
        thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    let out = Arc::new(Output { buf: Mutex::new(Vec::new()), cv: Condvar::new() });
    let err = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let o = out.clone();
    let r1 = thread::spawn(move || {
        let mut chunk = [0u8; 65536];
        loop {
            match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    o.buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                    o.cv.notify_all();
                }
            }
        }
    });
    let e = err.clone();
    let r2 = thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match stderr.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => e.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    });
    Proc { name: name.to_string(), child, out, err, readers: vec![r1, r2], status: None }
}

impl Proc {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.buf.lock().unwrap()).into_owned()
    }

    /// Complete lines printed so far.
    fn lines(&self) -> Vec<String> {
        let s = self.stdout();
        match s.rfind('\n') {
            Some(i) => s[..i].lines().map(str::to_string).collect(),
            None => Vec::new(),
        }
    }

    fn diagnostics(&self) -> String {
        let out = self.stdout();
        let tail = if out.len() > 4000 { format!("...{}", &out[out.len() - 4000..]) } else { out };
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            tail,
            self.name,
            String::from_utf8_lossy(&self.err.lock().unwrap())
        )
    }

    /// Waits until `pred` holds for the complete lines printed so far; false on timeout.
    fn wait_until(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.out.buf.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&guard).into_owned();
            let complete: Vec<String> = match text.rfind('\n') {
                Some(i) => text[..i].lines().map(str::to_string).collect(),
                None => Vec::new(),
            };
            if pred(&complete) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            guard = self.out.cv.wait_timeout(guard, wait).unwrap().0;
        }
    }

    /// Waits for a line equal to `line`; panics with the client's output on timeout.
    fn expect_line(&self, line: &str, timeout: Duration) {
        if !self.wait_until(timeout, |ls| ls.iter().any(|l| l == line)) {
            panic!("{}: no line {line:?} within {timeout:?}\n{}", self.name, self.diagnostics());
        }
    }

    /// Waits for the process to exit; kills it and panics if it takes longer than `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.status = Some(s);
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not finish within {timeout:?} (killed)\n{}", self.name, self.diagnostics());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a successful exit and returns stdout.
    fn expect_success(&mut self, timeout: Duration) -> String {
        let status = self.wait_exit(timeout);
        if !status.success() {
            panic!("{} failed with {status}\n{}", self.name, self.diagnostics());
        }
        self.stdout()
    }

    /// SIGKILL: the client's socket is closed by the kernel without an MQTT DISCONNECT.
    fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = Some(self.child.wait().unwrap());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Client helpers

fn mosquitto_pub(b: &TestBroker, args: &[&str]) -> Command {
    let mut c = Command::new("mosquitto_pub");
    c.args(b.mosq_args()).args(args);
    c
}

/// Runs mosquitto_pub to completion (bounded) and checks it succeeded.
fn run_mosquitto_pub(b: &TestBroker, args: &[&str]) {
    spawn("mosquitto_pub", &mut mosquitto_pub(b, args)).expect_success(STEP);
}

/// Format of mosquitto_sub's output lines: "topic qos retain payload".
const SUB_FORMAT: &str = "%t %q %r %p";

/// A mosquitto_sub on the TCP listener whose subscriptions are known to be active:
/// it also subscribes to a private probe topic, and we publish probes until one shows up.
struct MosqSub {
    proc: Proc,
    probe: String,
}

impl MosqSub {
    fn start(b: &TestBroker, topics: &[&str], qos: u8) -> MosqSub {
        require_mosquitto_clients();
        let probe = unique("probe");
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(b.mosq_args()).args(["-q", &qos.to_string(), "-F", SUB_FORMAT, "-t", &probe]);
        for t in topics {
            cmd.args(["-t", t]);
        }
        let proc = spawn("mosquitto_sub", &mut cmd);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            run_mosquitto_pub(b, &["-t", &probe, "-m", "probe"]);
            let p = probe.clone();
            if proc.wait_until(Duration::from_millis(250), move |ls| ls.iter().any(|l| l.starts_with(&format!("{p} "))))
            {
                break;
            }
            if Instant::now() >= deadline {
                panic!("mosquitto_sub never became ready (probe not received)\n{}", proc.diagnostics());
            }
        }
        MosqSub { proc, probe }
    }

    /// Received lines without the probes.
    fn messages(&self) -> Vec<String> {
        let prefix = format!("{} ", self.probe);
        self.proc.lines().into_iter().filter(|l| !l.starts_with(&prefix)).collect()
    }

    /// Waits until at least `n` (non-probe) messages arrived, then LINGER more, and returns all.
    fn expect_messages(&self, n: usize, timeout: Duration) -> Vec<String> {
        let prefix = format!("{} ", self.probe);
        let ok = self.proc.wait_until(timeout, |ls| ls.iter().filter(|l| !l.starts_with(&prefix)).count() >= n);
        if !ok {
            panic!(
                "mosquitto_sub received {} of {n} messages within {timeout:?}: {:?}\n{}",
                self.messages().len(),
                self.messages(),
                self.proc.diagnostics()
            );
        }
        thread::sleep(LINGER);
        self.messages()
    }

    /// Publishes to the probe topic and waits for it: everything the broker routed to this
    /// subscriber before that point has then been received.
    fn sync(&self, b: &TestBroker) {
        let token = unique("sync");
        run_mosquitto_pub(b, &["-q", "1", "-t", &self.probe, "-m", &token]);
        self.proc.expect_line(&format!("{} 1 0 {token}", self.probe), STEP);
    }
}

fn paho(args: &[&str]) -> Command {
    require_paho();
    let mut c = Command::new("python3");
    c.arg(interop_dir().join("paho_tool.py")).args(args);
    c
}

fn run_paho(args: &[&str]) -> String {
    spawn("paho_tool.py", &mut paho(args)).expect_success(STEP)
}

fn mqttjs(args: &[&str]) -> Command {
    require_mqttjs();
    let mut c = Command::new("node");
    c.arg(interop_dir().join("mqttjs_tool.js")).args(args);
    c
}

fn lines_of(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// Deterministic pseudo-random bytes (every byte value occurs, including 0 and b'\n').
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// 1. mosquitto clients, QoS 0/1/2

#[test]
fn mosquitto_clients_qos0_qos1_qos2_each_delivered_exactly_once() {
    require_mosquitto_clients();
    let b = TestBroker::start();
    let sub = MosqSub::start(&b, &["a/#"], 2);
    for qos in ["0", "1", "2"] {
        run_mosquitto_pub(&b, &["-t", "a/b", "-m", "hi", "-q", qos]);
    }
    let got = sub.expect_messages(3, STEP);
    sub.sync(&b);
    assert_eq!(
        sub.messages(),
        vec!["a/b 0 0 hi", "a/b 1 0 hi", "a/b 2 0 hi"],
        "each QoS delivered exactly once, in order (first look: {got:?})"
    );
    drop(sub);
    b.stop();
}

// 2. retained messages

#[test]
fn retained_message_reaches_new_subscriber_and_empty_retained_payload_clears_it() {
    require_mosquitto_clients();
    let b = TestBroker::start();
    run_mosquitto_pub(&b, &["-t", "r/t", "-m", "kept", "-q", "1", "-r"]);

    let sub = MosqSub::start(&b, &["r/t"], 1);
    // The retained message is sent right after SUBACK, so it precedes the probe.
    assert_eq!(sub.messages(), vec!["r/t 1 1 kept"]);
    // A live (non-retained) copy for existing subscribers carries retain=0.
    run_mosquitto_pub(&b, &["-t", "r/t", "-m", "kept2", "-q", "1", "-r"]);
    let got = sub.expect_messages(2, STEP);
    assert_eq!(got, vec!["r/t 1 1 kept", "r/t 1 0 kept2"]);
    drop(sub);

    run_mosquitto_pub(&b, &["-t", "r/t", "-n", "-q", "1", "-r"]);
    let sub = MosqSub::start(&b, &["r/t"], 1);
    thread::sleep(LINGER);
    sub.sync(&b);
    assert_eq!(sub.messages(), Vec::<String>::new(), "retained message was cleared");
    drop(sub);
    b.stop();
}

// 3. last will

#[test]
fn will_is_published_when_client_dies_but_not_after_clean_disconnect() {
    require_mosquitto_clients();
    require_paho();
    let b = TestBroker::start();
    let url = b.tcp_url();
    let sub = MosqSub::start(&b, &["will/#"], 1);

    let mut dying = spawn(
        "paho will (killed)",
        &mut paho(&[
            "will",
            "--url",
            &url,
            "--id",
            "will-dies",
            "--will-topic",
            "will/abrupt",
            "--will-message",
            "gone",
            "-q",
            "1",
            "--mode",
            "hang",
        ]),
    );
    dying.expect_line("READY", STEP);
    sub.sync(&b);
    assert_eq!(sub.messages(), Vec::<String>::new(), "no will while alive");
    dying.kill();
    let got = sub.expect_messages(1, STEP);
    assert_eq!(got, vec!["will/abrupt 1 0 gone"]);

    let out = run_paho(&[
        "will",
        "--url",
        &url,
        "--id",
        "will-clean",
        "--will-topic",
        "will/clean",
        "--will-message",
        "should not appear",
        "-q",
        "1",
        "--mode",
        "clean",
    ]);
    assert!(out.contains("DISCONNECTED"), "{out}");
    thread::sleep(LINGER);
    sub.sync(&b);
    assert_eq!(sub.messages(), vec!["will/abrupt 1 0 gone"], "clean DISCONNECT must discard the will");
    drop(sub);
    b.stop();
}

// 4. persistent session

#[test]
fn persistent_session_keeps_subscription_and_queues_qos1_messages_in_order() {
    require_mosquitto_clients();
    require_paho();
    let b = TestBroker::start();
    let url = b.tcp_url();
    let first =
        run_paho(&["sub", "--url", &url, "--id", "persistent-1", "--no-clean", "-t", "s/t", "-q", "1", "-C", "0"]);
    assert_eq!(
        lines_of(&first),
        vec!["CONNACK session_present=0", "READY"],
        "first connection of a new client id has no session"
    );

    let lines: String = (0..10).map(|i| format!("m{i}\n")).collect();
    let mut publisher = spawn_with_stdin(
        "mosquitto_pub -l",
        &mut mosquitto_pub(&b, &["-t", "s/t", "-q", "1", "-l"]),
        Some(lines.into_bytes()),
    );
    publisher.expect_success(STEP);

    let second = run_paho(&["sub", "--url", &url, "--id", "persistent-1", "--no-clean", "-q", "1", "-C", "10"]);
    // CONNACK is printed from paho's network thread before any message of the session.
    let got: Vec<&str> = lines_of(&second);
    assert_eq!(got.first(), Some(&"CONNACK session_present=1"), "{second}");
    let msgs: Vec<&str> = got.iter().copied().filter(|l| l.starts_with("s/t ")).collect();
    let want: Vec<String> = (0..10).map(|i| format!("s/t 1 0 m{i}")).collect();
    assert_eq!(msgs, want, "all 10 queued messages exactly once, in order");
    b.stop();
}

// 5. session takeover

#[test]
fn second_connection_with_same_client_id_disconnects_the_first() {
    require_paho();
    let b = TestBroker::start();
    let out = run_paho(&["takeover", "--url", &b.tcp_url(), "--id", "twin"]);
    assert!(out.contains("PASS takeover"), "{out}");
    b.stop();
}

// 6. unsubscribe

#[test]
fn no_messages_after_unsubscribe() {
    require_paho();
    let b = TestBroker::start();
    let out = run_paho(&["unsubscribe", "--url", &b.tcp_url()]);
    assert!(out.contains("PASS unsubscribe"), "{out}");
    b.stop();
}

// 7. ordering

#[test]
fn thousand_qos1_messages_arrive_complete_and_in_order() {
    require_mosquitto_clients();
    let b = TestBroker::start();
    let sub = MosqSub::start(&b, &["seq/t"], 1);
    let lines: String = (0..1000).map(|i| format!("{i}\n")).collect();
    let mut publisher = spawn_with_stdin(
        "mosquitto_pub -l",
        &mut mosquitto_pub(&b, &["-t", "seq/t", "-q", "1", "-l"]),
        Some(lines.into_bytes()),
    );
    publisher.expect_success(STEP);
    let got = sub.expect_messages(1000, STEP);
    let want: Vec<String> = (0..1000).map(|i| format!("seq/t 1 0 {i}")).collect();
    assert_eq!(got.len(), 1000, "no duplicates");
    let first_bad = got.iter().zip(&want).position(|(g, w)| g != w);
    assert_eq!(first_bad, None, "out of order at index {first_bad:?}");
    drop(sub);
    b.stop();
}

// 8. large payloads

/// Publishes 1 MiB at QoS 1 (with mosquitto_pub over TCP when `pub_url` is None, else with
/// paho at `pub_url`) to a paho subscriber at `sub_url`, and compares the bytes received.
fn big_payload_roundtrip(b: &TestBroker, pub_url: Option<&str>, sub_url: &str, dir: &Path) {
    let leg = format!("{} -> {sub_url}", pub_url.unwrap_or("mosquitto_pub tcp"));
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let data = payload(1024 * 1024, 0x5eed + n as u64);
    let src = dir.join(format!("src-{n}.bin"));
    let dst = dir.join(format!("dst-{n}.bin"));
    std::fs::write(&src, &data).unwrap();
    let dst_s = dst.to_str().unwrap().to_string();
    let mut sub = spawn(
        &format!("paho sub (1 MB, {leg})"),
        &mut paho(&["sub", "--url", sub_url, "-t", "big/t", "-q", "1", "-C", "1", "--save", &dst_s]),
    );
    sub.expect_line("READY", STEP);
    let src_s = src.to_str().unwrap();
    match pub_url {
        None => run_mosquitto_pub(b, &["-t", "big/t", "-q", "1", "-f", src_s]),
        Some(url) => {
            run_paho(&["pub", "--url", url, "-t", "big/t", "-q", "1", "-f", src_s]);
        }
    }
    let out = sub.expect_success(STEP);
    assert!(out.lines().any(|l| l.starts_with("big/t 1 0 len=1048576 sha256=")), "{leg}: {out}");
    let got = std::fs::read(&dst).unwrap();
    assert_eq!(got.len(), data.len(), "payload length, {leg}");
    assert!(got == data, "payload bytes differ, {leg}");
}

#[test]
fn one_megabyte_qos1_payload_arrives_intact_over_tcp_and_websocket() {
    require_mosquitto_clients();
    require_paho();
    let b = TestBroker::start();
    let dir = TempDir::new("midge-big");
    let (tcp, ws) = (b.tcp_url(), b.ws_url());
    big_payload_roundtrip(&b, None, &tcp, &dir.0); // TCP in, TCP out
    big_payload_roundtrip(&b, Some(&ws), &tcp, &dir.0); // WebSocket in
    big_payload_roundtrip(&b, None, &ws, &dir.0); // WebSocket out
    big_payload_roundtrip(&b, Some(&ws), &ws, &dir.0); // WebSocket both ways
    b.stop();
}

// 9. many clients

#[test]
fn hundred_concurrent_paho_clients_each_get_their_own_message() {
    require_paho();
    let b = TestBroker::start();
    let out = run_paho(&["many", "--url", &b.tcp_url(), "--clients", "100", "--timeout", "25"]);
    assert!(out.contains("PASS 100 clients"), "{out}");
    b.stop();
}

// 10. paho over WebSocket

#[test]
fn paho_over_websocket_qos0_qos1_qos2_and_retained() {
    require_paho();
    let b = TestBroker::start();
    let out = run_paho(&["selftest", "--url", &b.ws_url()]);
    assert!(out.contains("PASS qos 0 1 2"), "{out}");
    assert!(out.contains("PASS retained"), "{out}");
    b.stop();
}

// 11. MQTT.js (Node) over WebSocket

#[test]
fn mqttjs_node_over_websocket_qos0_qos1_qos2_and_retained() {
    require_mqttjs();
    let b = TestBroker::start();
    let out = spawn("mqttjs_tool.js selftest", &mut mqttjs(&["selftest", "--url", &b.ws_url()])).expect_success(STEP);
    assert!(out.contains("PASS qos 0 1 2"), "{out}");
    assert!(out.contains("PASS retained"), "{out}");
    b.stop();
}

// 12. cross transport

#[test]
fn cross_transport_tcp_publisher_to_websocket_subscribers_and_back() {
    require_mosquitto_clients();
    require_paho();
    require_mqttjs();
    let b = TestBroker::start();
    let ws = b.ws_url();

    // TCP -> WS
    let mut js_sub = spawn("mqttjs sub (ws)", &mut mqttjs(&["sub", "--url", &ws, "-t", "x/#", "-q", "1", "-C", "1"]));
    let mut paho_sub = spawn("paho sub (ws)", &mut paho(&["sub", "--url", &ws, "-t", "x/#", "-q", "1", "-C", "1"]));
    js_sub.expect_line("READY", STEP);
    paho_sub.expect_line("READY", STEP);
    run_mosquitto_pub(&b, &["-t", "x/tcp", "-m", "from tcp", "-q", "1"]);
    let out = js_sub.expect_success(STEP);
    assert_eq!(lines_of(&out), vec!["READY", "x/tcp 1 0 from tcp"]);
    let out = paho_sub.expect_success(STEP);
    assert_eq!(lines_of(&out), vec!["CONNACK session_present=0", "READY", "x/tcp 1 0 from tcp"]);

    // WS -> TCP
    let sub = MosqSub::start(&b, &["y/#"], 2);
    spawn("mqttjs pub (ws)", &mut mqttjs(&["pub", "--url", &ws, "-t", "y/mqttjs", "-m", "from mqtt.js", "-q", "2"]))
        .expect_success(STEP);
    run_paho(&["pub", "--url", &ws, "-t", "y/paho", "-m", "from paho", "-q", "1"]);
    let got = sub.expect_messages(2, STEP);
    assert_eq!(got, vec!["y/mqttjs 2 0 from mqtt.js", "y/paho 1 0 from paho"]);
    drop(sub);
    b.stop();
}

// 13. real browser

#[test]
fn headless_chromium_mqttjs_v5_properties_request_response_no_local_and_subscription_ids() {
    require_mosquitto_clients();
    require_mqttjs();
    let b = TestBroker::start();
    let token = unique("tok5");
    // TCP 5.0 -> browser: retained, with a user property the page checks.
    run_mosquitto_pub(
        &b,
        &["-V", "mqttv5", "-t", "v5b/tcp", "-m", &format!("hello v5 from tcp {token}"), "-q", "1", "-r"]
            .into_iter()
            .chain(["-D", "publish", "user-property", "origin", "tcp"])
            .collect::<Vec<_>>(),
    );
    // browser 5.0 -> TCP 3.1.1: the bare messages.
    let sub = MosqSub::start(&b, &["v5b/browser"], 1);
    let (tx, rx) = mpsc::channel();
    let http = browser_support::serve_pages(tx);
    let page = format!("http://{http}/browser_v5.html?ws={}&token={token}", b.ws_url());
    let result = browser_support::Browser::open(&page, &[]).result(&rx, Duration::from_secs(40));
    assert!(result.starts_with(&format!("PASS browser v5 {token}")), "browser page reported:\n{result}");
    let got = sub.expect_messages(3, STEP);
    assert_eq!(got, vec!["v5b/browser 1 0 n1", "v5b/browser 1 0 n2", "v5b/browser 1 0 n3"]);
    drop(sub);
    b.stop();
}

#[test]
fn headless_chromium_mqttjs_chats_with_tcp_clients_over_websocket() {
    require_mosquitto_clients();
    require_mqttjs();
    let b = TestBroker::start();
    let token = unique("tok");

    // TCP -> browser: a retained message the page receives when it subscribes.
    run_mosquitto_pub(&b, &["-t", "chat/tcp", "-m", &format!("hello from tcp {token}"), "-q", "1", "-r"]);
    // browser -> TCP
    let sub = MosqSub::start(&b, &["chat/browser"], 1);

    let (tx, rx) = mpsc::channel();
    let http = browser_support::serve_pages(tx);
    let page = format!("http://{http}/browser.html?ws={}&token={token}", b.ws_url());
    let result = browser_support::Browser::open(&page, &[]).result(&rx, Duration::from_secs(40));
    assert!(result.starts_with(&format!("PASS browser chat {token}")), "browser page reported:\n{result}");
    let got = sub.expect_messages(1, STEP);
    assert_eq!(got, vec![format!("chat/browser 1 0 hello from browser {token}")]);
    drop(sub);
    b.stop();
}
