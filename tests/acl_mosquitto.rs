//! Differential test of `midge::auth::acl` against real mosquitto 2.0 (Debian's
//! /usr/sbin/mosquitto): one ACL file and password file, one mosquitto on a free loopback port,
//! and a table of (user, client id, topic, access) whose outcome in mosquitto must be what our
//! `Acl` predicts.
//!
//! - Write: the case's client publishes; an observer allowed to read everything listens.
//! - Read: the case's client subscribes (its SUBACK must grant the subscription, as
//!   `Access::Subscribe` predicts); a writer allowed to write everything publishes.
//!
//! All clients of all cases run at once, so the whole test takes about two seconds. A missing
//! mosquitto or client makes the test fail, never pass (`make test` installs them). Every
//! subprocess is bounded and killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use midge::auth::acl::{Access, Acl};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const PASSWORD: &str = "pw";

/// Every user the table logs in as (all with password `pw`). `bob` has no section.
const USERS: &[&str] = &["observer", "writer", "client", "server", "alice", "a+b", "sp ace", "bob"];

const ACL_FILE: &str = "\
# Clients without a username.
topic read anon/ro/#
# `topic read` alone: mosquitto takes `read` as the topic, with readwrite access.
topic read
topic readwrite anon/rw/#
topic deny anon/rw/secret

user observer
topic read #
topic read $app/#
topic read $dev/#

user writer
topic write #
topic write $app/#
topic write $dev2/#

# The issue's example: the leading / is an empty first level.
user client
topic write /p/client/upload
topic read /p/client/download

user server
topic read /p/client/upload
topic write /p/client/download

user alice
topic readwrite a/#
topic deny a/secret/#
topic readwrite $app/alice/#
topic readwrite +/x

user a+b
topic readwrite plus/own

user sp ace
topic readwrite spaced topic/#

pattern readwrite dev/%c/#
pattern deny dev/%c/locked
pattern read users/%u/inbox
pattern write in/x%cy
pattern readwrite free/#
pattern readwrite %c/own
";

struct Case {
    username: Option<&'static str>,
    client_id: &'static str,
    /// For Read: the filter the client subscribes to (the topic is then published to it).
    filter: &'static str,
    topic: &'static str,
    access: Access,
}

const fn write(username: Option<&'static str>, client_id: &'static str, topic: &'static str) -> Case {
    Case { username, client_id, filter: topic, topic, access: Access::Write }
}

const fn read(
    username: Option<&'static str>,
    client_id: &'static str,
    filter: &'static str,
    topic: &'static str,
) -> Case {
    Case { username, client_id, filter, topic, access: Access::Read }
}

const ANON: Option<&str> = None;

fn cases() -> Vec<Case> {
    vec![
        // Access words, deny first, anonymous section.
        write(ANON, "an1", "anon/rw/x"),
        write(ANON, "an2", "anon/ro/x"),
        write(ANON, "an3", "anon/rw/secret"),
        write(ANON, "an7", "read"),
        read(ANON, "an4", "anon/ro/x", "anon/ro/x"),
        read(ANON, "an5", "anon/rw/secret", "anon/rw/secret"),
        // The example.
        write(Some("client"), "cl1", "/p/client/upload"),
        write(Some("client"), "cl2", "/p/client/download"),
        read(Some("client"), "cl3", "/p/client/download", "/p/client/download"),
        read(Some("client"), "cl4", "/p/client/upload", "/p/client/upload"),
        write(Some("server"), "sv1", "/p/client/download"),
        write(Some("server"), "sv2", "/p/client/upload"),
        read(Some("server"), "sv3", "/p/client/upload", "/p/client/upload"),
        write(Some("client"), "cl5", "p/client/upload"),
        // Wildcards, the parent level, deny inside a grant, `$` topics.
        write(Some("alice"), "al1", "a/b"),
        write(Some("alice"), "al2", "a"),
        write(Some("alice"), "al3", "a/secret/x"),
        write(Some("alice"), "al4", "$app/alice/x"),
        write(Some("alice"), "al5", "$app/x"),
        write(Some("alice"), "al6", "q/x"),
        read(Some("alice"), "al7", "$app/alice/y", "$app/alice/y"),
        // Named users get neither the anonymous section nor, without a section, any own rule.
        write(Some("bob"), "bo1", "anon/rw/x"),
        write(Some("bob"), "bo2", "free/z"),
        write(Some("sp ace"), "spc", "spaced topic/a"),
        // Patterns: %c, %u, deny first, inside a level, `/` in the id, `$` after substitution.
        write(ANON, "d1", "dev/d1/t"),
        write(ANON, "d2", "dev/d1/t"),
        write(ANON, "d3", "dev/d3/locked"),
        write(ANON, "s/l", "dev/s/l/t"),
        write(ANON, "mid", "in/xmidy"),
        write(ANON, "$dev", "$dev/own"),
        read(ANON, "$dev2", "$dev2/own", "$dev2/own"),
        read(Some("bob"), "bo3", "users/bob/inbox", "users/bob/inbox"),
        read(ANON, "an6", "users//inbox", "users//inbox"),
        // `+`/`#` in the id or username: no pattern applies, own rules still do.
        write(ANON, "x+y", "free/a"),
        write(ANON, "x+z", "anon/rw/z"),
        write(Some("a+b"), "ab1", "free/a"),
        write(Some("a+b"), "ab2", "plus/own"),
        write(ANON, "xy", "free/b"),
        // SUBSCRIBE is never refused; Read decides per message.
        read(ANON, "sb1", "#", "anon/ro/sub"),
        read(ANON, "sb2", "#", "a/sub"),
        read(Some("alice"), "sb3", "a/secret/#", "a/secret/sub"),
    ]
}

// ------------------------------------------------------------------------------------------------
// Processes

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!("midge-acl-mosquitto-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process whose stdout and stderr lines are collected; killed on drop.
struct Collected {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Collected {
    fn spawn(command: &mut Command) -> Collected {
        let program = format!("{:?}", command.get_program());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e} (Debian: apt-get install mosquitto-clients)"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        collect(stdout, &lines);
        collect(stderr, &lines);
        Collected { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for the child to exit, at most `limit`; kills it if it does not.
    fn finish(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Collected {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl Read + Send + 'static, lines: &Arc<Mutex<Vec<String>>>) {
    let lines = Arc::clone(lines);
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
}

/// mosquitto on a free loopback port with our ACL and password files.
struct Mosquitto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Mosquitto {
    /// Starts mosquitto with `acl_file` as its ACL file and a password file of `users` (none: no
    /// password file). `Err` with its log if it refuses to start, as it does when it cannot load
    /// the ACL file.
    fn start(acl_file: &str, users: &[&str]) -> Result<Mosquitto, String> {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing: this differential test needs the real broker \
             (Debian: apt-get install mosquitto; `make test` installs it)"
        );
        let dir = TempDir::new();
        let acl = dir.0.join("acl");
        let passwd = dir.0.join("passwd");
        let conf = dir.0.join("mosquitto.conf");
        let log = dir.0.join("mosquitto.log");
        std::fs::write(&acl, acl_file).unwrap();
        for (i, user) in users.iter().enumerate() {
            let mut command = Command::new("mosquitto_passwd");
            if i == 0 {
                command.arg("-c");
            }
            let status = command
                .arg("-b")
                .arg(&passwd)
                .arg(user)
                .arg(PASSWORD)
                .status()
                .unwrap_or_else(|e| panic!("cannot run mosquitto_passwd: {e} (Debian: apt-get install mosquitto)"));
            assert!(status.success(), "mosquitto_passwd failed for {user:?}");
        }
        // mosquitto started as root drops to the `mosquitto` user, which must read the files.
        use std::os::unix::fs::PermissionsExt;
        for file in [&acl, &passwd].into_iter().filter(|f| f.exists()) {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();

        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {}\n\
             log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n",
            acl.display()
        );
        if !users.is_empty() {
            config.push_str(&format!("password_file {}\n", passwd.display()));
        }
        std::fs::write(&conf, config).unwrap();
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {MOSQUITTO}: {e}"));
        let mut broker = Mosquitto { child, port, log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if broker.child.try_wait().unwrap().is_some() {
                return Err(broker.log());
            }
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port} within 5 s:\n{}", broker.log());
            thread::sleep(Duration::from_millis(10));
        }
        // Listening is not the verdict: mosquitto may bind before it reads the ACL file and
        // exit on it just after, and another test's broker may hold a port we picked. Ours
        // must still be running a moment later.
        thread::sleep(Duration::from_millis(300));
        if broker.child.try_wait().unwrap().is_some() {
            return Err(broker.log());
        }
        Ok(broker)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A mosquitto_sub/mosquitto_pub command line. Run under `stdbuf -oL`: into a pipe, their
    /// stdout is block-buffered, and we need the SUBACK line as soon as it is printed.
    fn client(&self, program: &str, username: Option<&str>, client_id: &str) -> Command {
        let mut command = Command::new("stdbuf");
        command.args(["-oL", program, "-h", "127.0.0.1", "-p", &self.port.to_string(), "-i", client_id]);
        if let Some(username) = username {
            command.args(["-u", username, "-P", PASSWORD]);
        }
        command
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The granted QoS of the first SUBACK in `mosquitto_sub -d` output ("Subscribed (mid: 1): 0").
fn granted(lines: &[String]) -> Option<u8> {
    lines.iter().find_map(|l| l.strip_prefix("Subscribed (mid: 1): ")).and_then(|code| code.trim().parse().ok())
}

// ------------------------------------------------------------------------------------------------

#[test]
fn acl_decisions_match_mosquitto_2_0() {
    let (acl, _warnings) = Acl::parse(ACL_FILE).expect("the test's ACL file parses");
    let acl = Rc::new(acl);
    let predict = |username: Option<&str>, client_id: &str, topic: &str, access| {
        acl.client(username.map(Rc::from), Rc::from(client_id)).allows(topic, access)
    };
    let cases = cases();
    let broker =
        Mosquitto::start(ACL_FILE, USERS).unwrap_or_else(|log| panic!("mosquitto refused the ACL file:\n{log}"));

    // Subscribers: the case's client for Read, the observer for Write.
    let mut subscribers: Vec<Collected> = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let (username, client_id) = match case.access {
            Access::Read => {
                assert!(predict(Some("writer"), "w", case.topic, Access::Write), "writer cannot write {}", case.topic);
                (case.username, case.client_id.to_string())
            }
            _ => {
                assert!(
                    predict(Some("observer"), "o", case.topic, Access::Read),
                    "observer cannot read {}",
                    case.topic
                );
                (Some("observer"), format!("obs-{n}"))
            }
        };
        let mut command = broker.client("mosquitto_sub", username, &client_id);
        command.args(["-t", case.filter, "-v", "-d", "-W", "8"]);
        subscribers.push(Collected::spawn(&mut command));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for (n, subscriber) in subscribers.iter().enumerate() {
        while granted(&subscriber.lines()).is_none() {
            assert!(
                Instant::now() < deadline,
                "case {n}: no SUBACK within 5 s: {:?}\nmosquitto log:\n{}",
                subscriber.lines(),
                broker.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    // Publishers: the case's client for Write, the writer for Read.
    let mut publishers: Vec<Collected> = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let (username, client_id) = match case.access {
            Access::Write => (case.username, case.client_id.to_string()),
            _ => (Some("writer"), format!("wr-{n}")),
        };
        let mut command = broker.client("mosquitto_pub", username, &client_id);
        command.args(["-t", case.topic, "-m", &format!("case-{n}"), "-q", "1"]);
        publishers.push(Collected::spawn(&mut command));
    }
    for publisher in &mut publishers {
        publisher.finish(Duration::from_secs(5));
    }
    // Loopback delivery is immediate; give it a moment, then look.
    thread::sleep(Duration::from_millis(500));

    let mut mismatches = Vec::new();
    for (n, (case, subscriber)) in cases.iter().zip(&subscribers).enumerate() {
        let lines = subscriber.lines();
        let delivered = lines.iter().any(|l| *l == format!("{} case-{n}", case.topic));
        let expected = predict(case.username, case.client_id, case.topic, case.access);
        let who = format!("{:?}/{:?}", case.username, case.client_id);
        if delivered != expected {
            mismatches.push(format!(
                "case {n}: {who} {:?} {:?}: mosquitto {}, midge {}",
                case.access,
                case.topic,
                if delivered { "allows" } else { "refuses" },
                if expected { "allows" } else { "refuses" },
            ));
        }
        if case.access == Access::Read {
            let subscribe_allowed = granted(&lines).is_some_and(|code| code != 0x80);
            let expected = predict(case.username, case.client_id, case.filter, Access::Subscribe);
            if subscribe_allowed != expected {
                mismatches.push(format!("case {n}: {who} SUBSCRIBE {:?}: SUBACK {:?}", case.filter, granted(&lines)));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "midge and mosquitto disagree:\n{}\nmosquitto log:\n{}",
        mismatches.join("\n"),
        broker.log()
    );
}

/// ACL files mosquitto refuses to start with, and files it accepts, as our parser must.
/// (midge's two own refusals, a NUL byte and non-UTF-8 bytes, are not in the table.)
#[test]
fn acl_file_refusals_match_mosquitto_2_0() {
    let longest = format!("topic read {}\n", "a".repeat(65535));
    let too_long = format!("topic read {}\n", "a".repeat(65536));
    let deepest = format!("topic read {}b\n", "a/".repeat(200));
    let too_deep = format!("topic read {}b\n", "a/".repeat(201));
    let files: Vec<&str> = vec![
        "",
        "topic foo\n",
        "  topic foo\n",
        "\ttopic foo\n",
        "  # indented comment\n",
        "#comment\n",
        "bogus foo\n",
        "TOPIC foo\n",
        "topic\n",
        "pattern   \n",
        "topic read\n",
        "topic bogus foo\n",
        "topic Read foo\n",
        "topic a/b#\n",
        "topic read a/+b\n",
        "topic read #/a\n",
        "user\n",
        "user   \n",
        "user\ta\n",
        "user  a b  \ntopic x\n",
        "topic\tread\tfoo\n",
        "topic read \tfoo\n",
        "topic \tread foo\n",
        "pattern read foo\n",
        "pattern read a/x%cy\n",
        "topic read foo # comment\n",
        "topic foo\r\n",
        "\n\n   \n",
        "topic read a b c\n",
        &longest,
        &too_long,
        &deepest,
        &too_deep,
    ];
    let mut mismatches = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for file in files {
        let ours = Acl::parse(file).map(|_| ()).map_err(|e| e.to_string());
        let theirs = Mosquitto::start(file, &[]).map(|_| ());
        match theirs {
            Ok(()) => accepted += 1,
            Err(_) => refused += 1,
        }
        if ours.is_ok() != theirs.is_ok() {
            let shown: String = file.chars().take(60).collect();
            mismatches.push(format!("{shown:?}: midge {ours:?}, mosquitto {theirs:?}"));
        }
    }
    assert!(accepted >= 10 && refused >= 10, "the table should exercise both: {accepted} accepted, {refused} refused");
    assert!(mismatches.is_empty(), "midge and mosquitto disagree on accepting:\n{}", mismatches.join("\n"));
}
