//! MQTT 5.0 interoperability: real 5.0 clients (paho-mqtt `MQTTv5`, tests/interop/paho_v5.py;
//! `mosquitto_pub/sub -V mqttv5`; MQTT.js `protocolVersion: 5`) against an in-process broker,
//! over TCP and WebSocket, alongside 3.1.1 clients. Each paho scenario checks itself and prints
//! `PASS name`; a missing tool fails the test (run `bash tests/interop/install-deps.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestBroker;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

/// Run a command to completion within `within` (killed after), returning (success, stdout, stderr).
fn run_bounded(cmd: &mut Command, within: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}); run `bash tests/interop/install-deps.sh`"));
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            return (false, String::from_utf8_lossy(&out.stdout).into_owned(), "killed: took too long".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run paho_v5.py's `scenario` against `url` and require its PASS line.
fn paho_v5(scenario: &str, url: &str, extra: &[&str]) {
    let mut cmd = Command::new("python3");
    cmd.arg(interop_dir().join("paho_v5.py")).arg(scenario).arg(url).args(extra);
    let (ok, out, err) = run_bounded(&mut cmd, Duration::from_secs(30));
    assert!(ok && out.contains(&format!("PASS {scenario}")), "paho_v5.py {scenario} {url}: {out}{err}");
}

fn tcp(b: &TestBroker) -> String {
    format!("tcp://{}", b.tcp)
}

fn ws(b: &TestBroker) -> String {
    format!("ws://{}/mqtt", b.ws)
}

#[test]
fn paho_v5_and_v311_clients_interoperate_both_ways_on_tcp_and_websocket() {
    let b = TestBroker::start();
    paho_v5("interop_v311", &tcp(&b), &[]);
    paho_v5("interop_v311", &ws(&b), &[]);
}

#[test]
fn paho_v5_user_properties_and_request_response_pass_through_in_order() {
    let b = TestBroker::start();
    paho_v5("user_properties", &tcp(&b), &[]);
    paho_v5("user_properties", &ws(&b), &[]);
}

#[test]
fn paho_v5_message_expiry_while_the_subscriber_is_offline() {
    let b = TestBroker::start();
    paho_v5("message_expiry", &tcp(&b), &[]);
}

#[test]
fn paho_v5_session_survives_a_reconnect_within_its_expiry_and_not_after() {
    let b = TestBroker::start();
    paho_v5("session_expiry", &tcp(&b), &[]);
}

#[test]
fn paho_v5_no_local() {
    let b = TestBroker::start();
    paho_v5("no_local", &ws(&b), &[]);
}

#[test]
fn paho_v5_retain_handling_0_1_2() {
    let b = TestBroker::start();
    paho_v5("retain_handling", &tcp(&b), &[]);
}

#[test]
fn paho_v5_retain_as_published() {
    let b = TestBroker::start();
    paho_v5("retain_as_published", &tcp(&b), &[]);
}

#[test]
fn paho_v5_receive_maximum_10_never_more_unacknowledged() {
    let b = TestBroker::start();
    paho_v5("receive_maximum", &tcp(&b), &[]);
}

#[test]
fn paho_v5_receive_maximum_1000_with_1000_in_flight() {
    // Server-side limits above the client's, so the client's Receive Maximum is the window.
    let b = TestBroker::start_with(|c| {
        c.max_inflight = 5000;
        c.max_queued = 10_000;
    });
    paho_v5("receive_maximum", &tcp(&b), &["--receive-max", "1000"]);
}

#[test]
fn paho_v5_maximum_packet_size_respected() {
    let b = TestBroker::start();
    paho_v5("maximum_packet_size", &tcp(&b), &[]);
}

#[test]
fn paho_v5_takeover_gives_the_old_client_disconnect_0x8e() {
    let b = TestBroker::start();
    paho_v5("takeover", &tcp(&b), &[]);
}

#[test]
fn paho_v5_authentication_method_gets_connack_0x8c() {
    let b = TestBroker::start();
    paho_v5("auth_method", &tcp(&b), &[]);
}

#[test]
fn paho_v5_wrong_password_gets_connack_0x86() {
    let dir = std::env::temp_dir().join(format!("midge-v5-passwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    let (ok, out, err) = run_bounded(
        Command::new("mosquitto_passwd").arg("-c").arg("-b").arg(&file).args(["alice", "pw"]),
        Duration::from_secs(10),
    );
    assert!(ok, "mosquitto_passwd: {out}{err}");
    let b = TestBroker::start_with(|c| {
        c.allow_anonymous = false;
        c.password_file = Some(file.clone());
    });
    paho_v5("bad_password", &tcp(&b), &["-u", "alice", "-P", "pw"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mosquitto_clients_v5_user_properties_reach_v5_and_v311_subscribers() {
    let b = TestBroker::start();
    let port = b.tcp.port().to_string();
    let sub = |version: &str| {
        let mut c = Command::new("mosquitto_sub");
        c.args(["-V", version, "-h", "127.0.0.1", "-p", &port, "-t", "m/#", "-C", "2", "-W", "10", "-F", "%t %p %P"]);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("mosquitto_sub")
    };
    let (s5, s3) = (sub("mqttv5"), sub("mqttv311"));
    std::thread::sleep(Duration::from_millis(500));
    let publish = |version: &str, topic: &str, extra: &[&str]| {
        let mut c = Command::new("mosquitto_pub");
        c.args(["-V", version, "-h", "127.0.0.1", "-p", &port, "-t", topic, "-m", "hi"]).args(extra);
        let (ok, out, err) = run_bounded(&mut c, Duration::from_secs(10));
        assert!(ok, "mosquitto_pub: {out}{err}");
    };
    publish(
        "mqttv5",
        "m/5",
        &["-D", "publish", "user-property", "k1", "v1", "-D", "publish", "user-property", "k2", "v2"],
    );
    publish("mqttv311", "m/3", &[]);
    let text = |c: std::process::Child| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned();
    let (o5, o3) = (text(s5), text(s3));
    let l5: Vec<&str> = o5.lines().map(str::trim_end).collect();
    let l3: Vec<&str> = o3.lines().map(str::trim_end).collect();
    assert_eq!(l5, ["m/5 hi k1:v1 k2:v2", "m/3 hi"], "5.0 subscriber");
    assert_eq!(l3, ["m/5 hi", "m/3 hi"], "3.1.1 subscriber");
}

#[test]
fn mqttjs_v5_topic_aliases_both_ways_user_properties_and_subscription_identifier_on_ws_and_tcp() {
    let b = TestBroker::start();
    if !interop_dir().join("node_modules/mqtt").exists() {
        panic!("MQTT.js missing: run `bash tests/interop/install-deps.sh`");
    }
    for url in [ws(&b), format!("mqtt://{}", b.tcp)] {
        let mut cmd = Command::new("node");
        cmd.arg(interop_dir().join("mqttjs_v5.js")).arg(&url);
        let (ok, out, err) = run_bounded(&mut cmd, Duration::from_secs(30));
        assert!(ok && out.contains("PASS mqttjs_v5"), "mqttjs_v5.js {url}: {out}{err}");
    }
}

#[test]
fn paho_shared_subscription_splits_the_load_and_fails_over_with_a_v311_group_alongside() {
    let b = TestBroker::start();
    paho_v5("shared_subscription", &tcp(&b), &[]);
    paho_v5("shared_subscription", &ws(&b), &[]);
}
