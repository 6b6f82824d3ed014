//! Security with real, independent clients: TLS (`mqtts`, `wss`) against `mosquitto_pub`/
//! `mosquitto_sub --cafile`, paho-mqtt `tls_set` and MQTT.js in Node, with certificates made
//! at test time by `tests/tls/make-pki.sh` (openssl). Every client run is bounded by coreutils
//! `timeout`; a missing tool fails the test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use midge::config::TlsSettings;
use midge::{Config, ListenerConfig, Protocol};

mod browser_support;

// ------------------------------------------------------------------------------------------------
// Fixtures

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fresh certificates (see tests/tls/make-pki.sh for what each file is).
fn make_pki() -> TempDir {
    let dir = TempDir::new("midge-pki");
    let out = Command::new("bash")
        .arg(repo().join("tests/tls/make-pki.sh"))
        .arg(&dir.0)
        .output()
        .unwrap_or_else(|e| panic!("cannot run make-pki.sh: {e}"));
    assert!(
        out.status.success(),
        "make-pki.sh failed (is openssl installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn tls(pki: &TempDir, cert: &str, key: &str) -> TlsSettings {
    TlsSettings { certfile: Some(pki.file(cert)), keyfile: Some(pki.file(key)), ..TlsSettings::default() }
}

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A broker on its own thread with exactly `listeners`; stopped when dropped.
struct Broker {
    addrs: Vec<(Protocol, SocketAddr)>,
    handle: midge::BrokerHandle,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Broker {
    fn start(listeners: Vec<ListenerConfig>, tweak: impl FnOnce(&mut Config)) -> Broker {
        let mut config = Config { listeners, ..Config::default() };
        tweak(&mut config);
        let mut broker = midge::Broker::new(config).expect("broker binds");
        let addrs = broker.local_addrs();
        let handle = broker.handle();
        let join = std::thread::spawn(move || broker.run().expect("broker runs"));
        Broker { addrs, handle, join: Some(join) }
    }

    fn port(&self, i: usize) -> String {
        self.addrs[i].1.port().to_string()
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i].1
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(join) = self.join.take() {
            if !std::thread::panicking() {
                join.join().expect("broker thread");
            }
        }
    }
}

/// Run `prog args` to completion, bounded by `timeout 30`.
fn run(prog: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("30")
        .arg(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e} (run `make test`, which installs the clients)"))
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn interop(file: &str) -> String {
    repo().join("tests/interop").join(file).display().to_string()
}

/// Run one of the interop tools (`node mqttjs_tool.js ...`, `python3 paho_tool.py ...`).
fn tool(interpreter: &str, script: &str, args: &[&str]) -> Output {
    let script = interop(script);
    let all: Vec<&str> = std::iter::once(script.as_str()).chain(args.iter().copied()).collect();
    run(interpreter, &all)
}

fn require_mqttjs() {
    let p = repo().join("tests/interop/node_modules/mqtt");
    assert!(p.exists(), "MQTT.js missing at {} (run `make test`)", p.display());
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ------------------------------------------------------------------------------------------------
// TLS

/// mosquitto_pub publishes a retained message over mqtts and mosquitto_sub reads it back, both
/// verifying the server's ECDSA certificate (SEC1 key) against the test CA by IP address.
#[test]
fn mqtts_mosquitto_clients_verify_the_server_and_exchange_messages() {
    let pki = make_pki();
    let mut l = ListenerConfig::mqtt(lo());
    l.tls = tls(&pki, "server.crt", "server.key");
    let b = Broker::start(vec![l], |_| {});
    let port = b.port(0);
    let ca = pki.file("ca.crt");
    let common = ["-h", "127.0.0.1", "-p", &port, "--cafile", path(&ca), "-V", "mqttv311"];
    let out = run("mosquitto_pub", &[&common[..], &["-t", "tls/t", "-m", "over tls", "-r", "-q", "1"]].concat());
    assert!(out.status.success(), "mosquitto_pub over mqtts: {}", text(&out));
    let out = run("mosquitto_sub", &[&common[..], &["-t", "tls/#", "-C", "1", "-W", "10", "-v"]].concat());
    assert!(out.status.success(), "mosquitto_sub over mqtts: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "tls/t over tls");
    // A client that does not trust the CA refuses the broker (and the broker goes on).
    let out = run(
        "mosquitto_pub",
        &["-h", "127.0.0.1", "-p", &port, "--cafile", path(&pki.file("rogue-ca.crt")), "-t", "x", "-m", "y"],
    );
    assert!(!out.status.success(), "a client with the wrong CA connected: {}", text(&out));
    let out = run("mosquitto_sub", &[&common[..], &["-t", "tls/#", "-C", "1", "-W", "10"]].concat());
    assert!(out.status.success(), "broker stopped serving after a failed handshake: {}", text(&out));
}

/// An RSA key (PKCS#1) with an intermediate CA in the certificate file: paho-mqtt trusts only
/// the root, so the chain must be sent. Its self-test runs QoS 0/1/2 and retained messages.
#[test]
fn mqtts_rsa_chain_paho_selftest() {
    let pki = make_pki();
    let mut l = ListenerConfig::mqtt(lo());
    l.tls = tls(&pki, "server-rsa-chain.crt", "server-rsa.key");
    let b = Broker::start(vec![l], |_| {});
    let url = format!("mqtts://127.0.0.1:{}", b.port(0));
    let ca = pki.file("ca.crt");
    let out = run("python3", &[&interop("paho_tool.py"), "selftest", "--url", &url, "--cafile", path(&ca)]);
    assert!(out.status.success(), "paho selftest over mqtts: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("PASS qos 0 1 2") && stdout.contains("PASS retained"), "{}", text(&out));
}

/// MQTT.js in Node over wss:// (TLS, then the HTTP upgrade, then WebSocket frames), trusting
/// the test CA; and a TCP mosquitto client on a plain listener of the same broker sees it.
#[test]
fn wss_mqttjs_selftest_and_plain_tcp_share_the_broker() {
    require_mqttjs();
    let pki = make_pki();
    let mut wss = ListenerConfig::websockets(lo());
    wss.tls = tls(&pki, "server.crt", "server.key");
    let b = Broker::start(vec![wss, ListenerConfig::mqtt(lo())], |_| {});
    let url = format!("wss://127.0.0.1:{}/mqtt", b.port(0));
    let ca = pki.file("ca.crt");
    let out = run("node", &[&interop("mqttjs_tool.js"), "selftest", "--url", &url, "--ca", path(&ca)]);
    assert!(out.status.success(), "MQTT.js selftest over wss: {}", text(&out));
    let out = run(
        "node",
        &[
            &interop("mqttjs_tool.js"),
            "pub",
            "--url",
            &url,
            "--ca",
            path(&ca),
            "-t",
            "mix/wss",
            "-m",
            "from wss",
            "-q",
            "1",
            "-r",
        ],
    );
    assert!(out.status.success(), "MQTT.js pub over wss: {}", text(&out));
    let port = b.port(1);
    let out = run("mosquitto_sub", &["-h", "127.0.0.1", "-p", &port, "-t", "mix/#", "-C", "1", "-W", "10", "-v"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "mix/wss from wss");
}

/// A plain MQTT client on a TLS port is closed cleanly (no hang, no crash), and TLS clients
/// are still served; the same for a plain HTTP upgrade on a wss port.
#[test]
fn plain_clients_on_tls_ports_are_closed_and_others_served() {
    let pki = make_pki();
    let mut mqtts = ListenerConfig::mqtt(lo());
    mqtts.tls = tls(&pki, "server.crt", "server.key");
    let mut wss = ListenerConfig::websockets(lo());
    wss.tls = tls(&pki, "server.crt", "server.key");
    let b = Broker::start(vec![mqtts, wss], |_| {});
    let connect: &[u8] = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd";
    let upgrade = "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_string();
    for (i, hello) in [(0, connect), (1, upgrade.as_bytes())] {
        let start = Instant::now();
        let mut s = TcpStream::connect(b.addr(i)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(hello).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("listener {i}: not closed within 5 s ({e}); got {got:?}"),
            }
        }
        assert!(start.elapsed() < Duration::from_secs(3), "listener {i}: took {:?}", start.elapsed());
        // At most a TLS alert record (content type 21), never MQTT or HTTP in the clear.
        assert!(got.is_empty() || got[0] == 21, "listener {i}: answered {got:?}");
    }
    let ca = pki.file("ca.crt");
    let out = run(
        "mosquitto_pub",
        &["-h", "127.0.0.1", "-p", &b.port(0), "--cafile", path(&ca), "-t", "still", "-m", "served"],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// A TLS listener that requires client certificates signed by the test CA (and, with `crl`,
/// not revoked by its CRL).
fn client_cert_broker(pki: &TempDir, crl: bool) -> Broker {
    let mut l = ListenerConfig::mqtt(lo());
    l.tls = TlsSettings {
        cafile: Some(pki.file("ca.crt")),
        crlfile: crl.then(|| pki.file("ca.crl")),
        require_certificate: true,
        ..tls(pki, "server.crt", "server.key")
    };
    Broker::start(vec![l], |_| {})
}

/// `mosquitto_pub` over mqtts to `b`, with the client certificate and key `cert` if any.
fn pub_with_cert(b: &Broker, pki: &TempDir, cert: Option<(&str, &str)>) -> Output {
    let port = b.port(0);
    let ca = pki.file("ca.crt");
    let mut args: Vec<String> =
        ["-h", "127.0.0.1", "-p", &port, "--cafile", path(&ca), "-t", "c", "-m", "x"].map(String::from).to_vec();
    if let Some((cert, key)) = cert {
        for (flag, file) in [("--cert", cert), ("--key", key)] {
            args.push(flag.into());
            args.push(path(&pki.file(file)).into());
        }
    }
    run("mosquitto_pub", &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `require_certificate true`: a client certificate signed by `cafile` is needed; none, or one
/// from another CA, fails the handshake.
#[test]
fn require_certificate_accepts_only_clients_signed_by_cafile() {
    let pki = make_pki();
    let b = client_cert_broker(&pki, false);
    let out = pub_with_cert(&b, &pki, Some(("client.crt", "client.key")));
    assert!(out.status.success(), "client certificate refused: {}", text(&out));
    let out = pub_with_cert(&b, &pki, None);
    assert!(!out.status.success(), "connected without a client certificate: {}", text(&out));
    let out = pub_with_cert(&b, &pki, Some(("rogue.crt", "rogue.key")));
    assert!(!out.status.success(), "connected with an untrusted client certificate: {}", text(&out));
    // paho with the good certificate, for a second client stack.
    let url = format!("mqtts://127.0.0.1:{}", b.port(0));
    let (ca, cert, key) = (pki.file("ca.crt"), pki.file("client.crt"), pki.file("client.key"));
    let paho = interop("paho_tool.py");
    let args = [&paho, "connect", "--url", &url, "--cafile", path(&ca), "--cert", path(&cert), "--key", path(&key)];
    let out = run("python3", &args);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "CONNACK 0", "{}", text(&out));
}

/// `crlfile` as mosquitto has it: a client certificate the CA revoked is refused; the others
/// signed by the CA still connect.
#[test]
fn crlfile_refuses_revoked_client_certificates() {
    let pki = make_pki();
    let b = client_cert_broker(&pki, true);
    let out = pub_with_cert(&b, &pki, Some(("client.crt", "client.key")));
    assert!(out.status.success(), "a certificate the CRL does not list was refused: {}", text(&out));
    let out = pub_with_cert(&b, &pki, Some(("revoked.crt", "revoked.key")));
    assert!(!out.status.success(), "connected with a revoked certificate: {}", text(&out));
}

/// Broken TLS settings stop the broker at start with a message naming the problem.
#[test]
fn bad_tls_files_are_a_clear_startup_error() {
    let pki = make_pki();
    let mut l = ListenerConfig::mqtt(lo());
    l.tls = tls(&pki, "server.crt", "missing.key");
    let err = midge::Broker::new(Config { listeners: vec![l], ..Config::default() }).err().expect("must fail");
    assert!(err.to_string().contains("missing.key"), "{err}");
    let mut l = ListenerConfig::mqtt(lo());
    // A key that does not match the certificate.
    l.tls = tls(&pki, "server.crt", "client.key");
    assert!(midge::Broker::new(Config { listeners: vec![l], ..Config::default() }).is_err());
    let mut l = ListenerConfig::mqtt(lo());
    l.tls = TlsSettings { require_certificate: true, ..tls(&pki, "server.crt", "server.key") };
    let err = midge::Broker::new(Config { listeners: vec![l], ..Config::default() }).err().expect("must fail");
    assert!(err.to_string().contains("cafile"), "{err}");
    // A crlfile that holds no CRL (a certificate), and one without a CA to apply it to.
    let mut l = ListenerConfig::mqtt(lo());
    l.tls = TlsSettings {
        cafile: Some(pki.file("ca.crt")),
        crlfile: Some(pki.file("ca.crt")),
        ..tls(&pki, "server.crt", "server.key")
    };
    let err = midge::Broker::new(Config { listeners: vec![l], ..Config::default() }).err().expect("must fail");
    assert!(err.to_string().contains("revocation list"), "{err}");
    let mut l = ListenerConfig::mqtt(lo());
    l.tls = TlsSettings { crlfile: Some(pki.file("ca.crl")), ..tls(&pki, "server.crt", "server.key") };
    let err = midge::Broker::new(Config { listeners: vec![l], ..Config::default() }).err().expect("must fail");
    assert!(err.to_string().contains("crlfile needs cafile"), "{err}");
}

// ------------------------------------------------------------------------------------------------
// Password file and ACL

/// Users made with Debian's `mosquitto_passwd` (the file users bring from mosquitto).
fn mosquitto_password_file(dir: &TempDir, users: &[(&str, &str)]) -> PathBuf {
    let file = dir.file("passwd");
    for (i, (user, password)) in users.iter().enumerate() {
        let mut args = vec!["-b"];
        if i == 0 {
            args.insert(0, "-c");
        }
        let f = path(&file).to_string();
        let out = run("mosquitto_passwd", &[&args[..], &[f.as_str(), user, password]].concat());
        assert!(out.status.success(), "mosquitto_passwd (Debian package mosquitto): {}", text(&out));
    }
    file
}

/// The issue's set-up: `client` writes its upload topic and reads its download topic, `server`
/// the reverse; `admin` reads everything, `$SYS` included; `%u/%c` patterns for devices.
const ACL: &str = "\
# anonymous clients: nothing
user client
topic write /p/client/upload
topic read /p/client/download
user server
topic read /p/client/upload
topic write /p/client/download
topic write $SYS/broker/fake
user admin
topic read #
topic read $SYS/#
user alice
topic readwrite cert/#
pattern readwrite dev/%u/%c/#
";

/// A broker with a TCP and a WebSocket listener, the password file and the ACL above, and
/// anonymous clients refused (as a configuration file has it by default).
fn secured_broker(dir: &TempDir) -> Broker {
    let passwords = mosquitto_password_file(
        dir,
        &[("client", "client-pw"), ("server", "server-pw"), ("admin", "admin-pw"), ("alice", "alice-pw")],
    );
    let acl = dir.file("acl");
    std::fs::write(&acl, ACL).unwrap();
    Broker::start(vec![ListenerConfig::mqtt(lo()), ListenerConfig::websockets(lo())], |c| {
        c.allow_anonymous = false;
        c.password_file = Some(passwords);
        c.acl_file = Some(acl);
    })
}

fn mosq(b: &Broker, user: &str, password: &str) -> Vec<String> {
    ["-h", "127.0.0.1", "-p", &b.port(0), "-u", user, "-P", password, "-V", "mqttv311"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// `mosquitto_pub` as `user`; panics unless it succeeded.
fn publish(b: &Broker, user: &str, password: &str, extra: &[&str]) {
    let args = mosq(b, user, password);
    let args: Vec<&str> = args.iter().map(String::as_str).chain(extra.iter().copied()).collect();
    let out = run("mosquitto_pub", &args);
    assert!(out.status.success(), "mosquitto_pub as {user} {extra:?}: {}", text(&out));
}

/// Everything `user` receives on `filter` within a second of subscribing (retained messages
/// arrive at once), as sorted "topic payload" lines.
fn received(b: &Broker, user: &str, password: &str, filter: &str) -> Vec<String> {
    let args = mosq(b, user, password);
    let args: Vec<&str> = args.iter().map(String::as_str).chain(["-t", filter, "-v", "-W", "1"]).collect();
    let out = run("mosquitto_sub", &args);
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The issue's example end to end: the browser-side `client` over WebSocket (MQTT.js) and the
/// `server` over TCP (mosquitto clients) each write and read only their own topics, and a
/// wildcard subscription never shows a topic its user may not read.
#[test]
fn per_user_acl_websocket_client_and_tcp_server() {
    require_mqttjs();
    let dir = TempDir::new("midge-acl");
    let b = secured_broker(&dir);
    let ws = format!("ws://127.0.0.1:{}/mqtt", b.port(1));
    let js = |args: &[&str]| tool("node", "mqttjs_tool.js", args);
    // The client (WebSocket) writes its upload topic, and tries the one it may only read.
    for (topic, msg) in [("/p/client/upload", "up"), ("/p/client/download", "forged")] {
        let out =
            js(&["pub", "--url", &ws, "-u", "client", "-P", "client-pw", "-t", topic, "-m", msg, "-q", "1", "-r"]);
        assert!(out.status.success(), "MQTT.js pub as client: {}", text(&out));
    }
    // The server (TCP) writes the download topic, and tries the upload one.
    publish(&b, "server", "server-pw", &["-t", "/p/client/download", "-m", "down", "-q", "1", "-r"]);
    publish(&b, "server", "server-pw", &["-t", "/p/client/upload", "-m", "forged", "-q", "1", "-r"]);
    assert_eq!(received(&b, "admin", "admin-pw", "#"), ["/p/client/download down", "/p/client/upload up"]);
    assert_eq!(received(&b, "server", "server-pw", "#"), ["/p/client/upload up"]);
    // The client reads its download topic over WebSocket, through a wildcard, and nothing else.
    let out = js(&["sub", "--url", &ws, "-u", "client", "-P", "client-pw", "-t", "#", "-C", "1", "--linger", "0.5"]);
    assert!(out.status.success(), "MQTT.js sub as client: {}", text(&out));
    let lines: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| *l != "READY").map(str::to_string).collect();
    assert_eq!(lines, ["/p/client/download 0 1 down"]);

    // Live (not retained) deliveries are filtered too: the server, subscribed to `#`, sees the
    // client's upload but not a forged download written by nobody allowed.
    let args = mosq(&b, "server", "server-pw");
    let mut sub = Command::new("timeout")
        .arg("20")
        .arg("mosquitto_sub")
        .args(&args)
        .args(["-t", "#", "-v", "-R", "-C", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    publish(&b, "server", "server-pw", &["-t", "/p/client/download", "-m", "live-down", "-q", "1"]);
    publish(&b, "admin", "admin-pw", &["-t", "/p/client/upload", "-m", "not-admins-to-write"]);
    for i in 0..2 {
        let out = js(&[
            "pub",
            "--url",
            &ws,
            "-u",
            "client",
            "-P",
            "client-pw",
            "-t",
            "/p/client/upload",
            "-m",
            &format!("live{i}"),
            "-q",
            "1",
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let status = sub.wait().unwrap();
    let mut got = String::new();
    sub.stdout.take().unwrap().read_to_string(&mut got).unwrap();
    assert!(status.success(), "server's subscriber: {status:?} {got}");
    assert_eq!(got.lines().collect::<Vec<_>>(), ["/p/client/upload live0", "/p/client/upload live1"]);
}

/// `pattern readwrite dev/%u/%c/#`: each device writes under its own user name and client id.
#[test]
fn acl_patterns_substitute_username_and_client_id() {
    let dir = TempDir::new("midge-acl");
    let b = secured_broker(&dir);
    for topic in ["dev/alice/c1/t", "dev/alice/c2/t", "dev/bob/c1/t"] {
        publish(&b, "alice", "alice-pw", &["-i", "c1", "-t", topic, "-m", "x", "-r"]);
    }
    assert_eq!(received(&b, "admin", "admin-pw", "dev/#"), ["dev/alice/c1/t x"]);
}

/// No client publishes into `$SYS`, even with an ACL rule that says it may.
#[test]
fn clients_cannot_publish_to_sys() {
    let dir = TempDir::new("midge-acl");
    let b = secured_broker(&dir);
    publish(&b, "server", "server-pw", &["-t", "$SYS/broker/fake", "-m", "x", "-r"]);
    publish(&b, "admin", "admin-pw", &["-t", "$SYS/broker/fake2", "-m", "x", "-r"]);
    assert!(received(&b, "admin", "admin-pw", "$SYS/#").is_empty());
}

/// Wrong credentials over TCP and WebSocket: CONNACK 4 (bad user name or password), anonymous
/// CONNACK 5, from three client stacks; on the wire nothing follows the CONNACK.
#[test]
fn wrong_passwords_get_connack_4_and_anonymous_5_over_tcp_and_ws() {
    require_mqttjs();
    let dir = TempDir::new("midge-acl");
    let b = secured_broker(&dir);
    let tcp = format!("mqtt://127.0.0.1:{}", b.port(0));
    let ws = format!("ws://127.0.0.1:{}/mqtt", b.port(1));
    for url in [&tcp, &ws] {
        for (creds, want) in [
            (&["-u", "client", "-P", "wrong"][..], 4),
            (&["-u", "nobody", "-P", "x"][..], 4),
            (&[][..], 5),
            (&["-u", "client", "-P", "client-pw"][..], 0),
        ] {
            let tcp_url = url.replace("mqtt://", "tcp://");
            let args: Vec<&str> = ["connect", "--url", &tcp_url].into_iter().chain(creds.iter().copied()).collect();
            let out = tool("python3", "paho_tool.py", &args);
            let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(got, format!("CONNACK {want}"), "paho {url} {creds:?}: {}", text(&out));
            let args: Vec<&str> = ["connect", "--url", url.as_str()].into_iter().chain(creds.iter().copied()).collect();
            let out = tool("node", "mqttjs_tool.js", &args);
            let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(got, format!("CONNACK {want}"), "MQTT.js {url} {creds:?}: {}", text(&out));
        }
    }
    let out = run(
        "mosquitto_pub",
        &["-h", "127.0.0.1", "-p", &b.port(0), "-u", "client", "-P", "wrong", "-t", "x", "-m", "y"],
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("bad user name or password"),
        "{}",
        text(&out)
    );
    // On the wire: the CONNACK, then the connection closes.
    let mut s = TcpStream::connect(b.addr(0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // CONNECT, client id "x", user "client", password "wrong".
    let body: &[u8] = b"\x00\x04MQTT\x04\xc2\x00\x3c\x00\x01x\x00\x06client\x00\x05wrong";
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(body);
    s.write_all(&packet).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(got, [0x20, 0x02, 0x00, 0x04]);
}

/// `use_identity_as_username`: the client certificate's CN (alice) is the user name, so the
/// ACL's `user alice` section applies to a client that sent no credentials at all.
#[test]
fn use_identity_as_username_applies_the_certificates_acl_section() {
    let dir = TempDir::new("midge-acl");
    let pki = make_pki();
    let passwords = mosquitto_password_file(&dir, &[("admin", "admin-pw")]);
    let acl = dir.file("acl");
    std::fs::write(&acl, ACL).unwrap();
    let mut mqtts = ListenerConfig::mqtt(lo());
    mqtts.tls = TlsSettings {
        cafile: Some(pki.file("ca.crt")),
        require_certificate: true,
        use_identity_as_username: true,
        ..tls(&pki, "server.crt", "server.key")
    };
    let b = Broker::start(vec![ListenerConfig::mqtt(lo()), mqtts], |c| {
        c.allow_anonymous = false;
        c.password_file = Some(passwords);
        c.acl_file = Some(acl);
    });
    let (ca, cert, key) = (pki.file("ca.crt"), pki.file("client.crt"), pki.file("client.key"));
    for topic in ["cert/ok", "other/no"] {
        let out = run(
            "mosquitto_pub",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &b.port(1),
                "--cafile",
                path(&ca),
                "--cert",
                path(&cert),
                "--key",
                path(&key),
                "-t",
                topic,
                "-m",
                "x",
                "-r",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    assert_eq!(received(&b, "admin", "admin-pw", "#"), ["cert/ok x"]);
}

/// The issue's browser case in a real browser: headless Chromium (trusting the test server
/// certificate by its key, the way a test CA would be trusted) runs MQTT.js over wss:// as user
/// `client`; the server over plain TCP. Each sees exactly what the ACL lets it.
#[test]
fn headless_chromium_over_wss_with_password_and_acl() {
    require_mqttjs();
    let dir = TempDir::new("midge-acl");
    let pki = make_pki();
    let passwords = mosquitto_password_file(&dir, &[("client", "client-pw"), ("server", "server-pw")]);
    let acl = dir.file("acl");
    std::fs::write(&acl, ACL).unwrap();
    let mut wss = ListenerConfig::websockets(lo());
    wss.tls = tls(&pki, "server.crt", "server.key");
    let b = Broker::start(vec![ListenerConfig::mqtt(lo()), wss], |c| {
        c.allow_anonymous = false;
        c.password_file = Some(passwords);
        c.acl_file = Some(acl);
    });
    let token = unique("tok");
    publish(&b, "server", "server-pw", &["-t", "/p/client/download", "-m", &format!("down-{token}"), "-q", "1", "-r"]);
    let args = mosq(&b, "server", "server-pw");
    let mut sub = Command::new("timeout")
        .arg("30")
        .arg("mosquitto_sub")
        .args(&args)
        .args(["-t", "#", "-v", "-R", "-C", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (tx, rx) = std::sync::mpsc::channel();
    let http = browser_support::serve_pages(tx);
    let url = format!("wss://127.0.0.1:{}/mqtt", b.port(1));
    let page = format!("http://{http}/secure.html?url={url}&user=client&pass=client-pw&token={token}");
    let spki = std::fs::read_to_string(pki.file("server.spki")).unwrap();
    let flags = [format!("--ignore-certificate-errors-spki-list={}", spki.trim())];
    let result = browser_support::Browser::open(&page, &flags).result(&rx, Duration::from_secs(40));
    assert!(result.starts_with(&format!("PASS secure {token}")), "browser page reported:\n{result}");
    let status = sub.wait().unwrap();
    let mut got = String::new();
    sub.stdout.take().unwrap().read_to_string(&mut got).unwrap();
    assert!(status.success(), "server's subscriber: {status:?} {got}");
    assert_eq!(got.trim(), format!("/p/client/upload up-{token}"));
}
