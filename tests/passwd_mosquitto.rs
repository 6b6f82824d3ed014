//! Password files interoperate with Debian's mosquitto 2.0 both ways: files made by
//! `mosquitto_passwd` load and verify in midge, and files made by `midge passwd` let the right
//! clients into a real `mosquitto` broker and keep the wrong ones out (CONNACK 5).
//!
//! Needs Debian's `mosquitto` and `mosquitto-clients` packages (tests/interop/install-deps.sh
//! installs them); without them these tests fail rather than pass unchecked. Every wait is
//! bounded, and the broker is killed when its guard drops.

use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use midge::auth::passwd::PasswordFile;

const MOSQUITTO_PASSWD: &str = "/usr/bin/mosquitto_passwd";
const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_PUB: &str = "/usr/bin/mosquitto_pub";
const MIDGE: &str = env!("CARGO_BIN_EXE_midge");

/// Longest any one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

fn require(program: &str) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: install Debian's mosquitto and mosquitto-clients packages \
         (`apt-get install mosquitto mosquitto-clients`, or run tests/interop/install-deps.sh)"
    );
}

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("midge-passwd-interop-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `command` to completion with `stdin` fed in, killing it after [`COMMAND_TIMEOUT`].
fn run_bounded(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin).unwrap();
        // Dropped here: end of input.
    }
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `command` and panics with its output unless it exits 0.
fn run_ok(command: &mut Command, stdin: &[u8]) {
    let output = run_bounded(command, stdin);
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A real mosquitto broker on 127.0.0.1, killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Mosquitto {
    /// Starts mosquitto with anonymous clients refused and `password_file`, and waits (bounded)
    /// until it accepts connections.
    fn start(dir: &TempDir, password_file: &Path) -> Mosquitto {
        require(MOSQUITTO);
        // A free port: bound by the kernel, then released for mosquitto.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
        let config = dir.path("mosquitto.conf");
        // `user root` keeps a root test run as root (mosquitto would switch to the `mosquitto`
        // user and could not read the scratch directory); it changes nothing for other users.
        fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nuser root\npersistence false\n",
                password_file.display()
            ),
        )
        .unwrap();
        let log = dir.path("mosquitto.log");
        let log_file = fs::File::create(&log).unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut broker = Mosquitto { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = broker.child.try_wait().unwrap() {
                panic!("mosquitto exited at start ({status}): {}", broker.log_text());
            }
            if TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_millis(200)).is_ok() {
                return broker;
            }
            assert!(Instant::now() < deadline, "mosquitto not listening on {port} after 10 s: {}", broker.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Publishes one message as `username`/`password`; true if the broker let the client in.
    fn publish_as(&self, username: &str, password: &str) -> bool {
        require(MOSQUITTO_PUB);
        let port = self.port.to_string();
        let output = run_bounded(
            Command::new(MOSQUITTO_PUB).args(["-h", "127.0.0.1", "-p", port.as_str(), "-V", "mqttv311"]).args([
                "-u",
                username,
                "-P",
                password,
                "-t",
                "midge/passwd",
                "-m",
                "hi",
            ]),
            b"",
        );
        output.status.success()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn file_from_mosquitto_passwd_loads_unchanged_in_midge() {
    require(MOSQUITTO_PASSWD);
    let dir = TempDir::new("from-mosquitto");
    let file = dir.path("passwd");
    run_ok(Command::new(MOSQUITTO_PASSWD).arg("-c").arg("-b").arg(&file).args(["alice", "wonder land"]), b"");
    run_ok(Command::new(MOSQUITTO_PASSWD).arg("-b").arg(&file).args(["bob", "builder"]), b"");
    // mosquitto 1.x's format, which 2.0 still writes on request.
    run_ok(Command::new(MOSQUITTO_PASSWD).args(["-H", "sha512", "-b"]).arg(&file).args(["carol", "c4r0l"]), b"");
    let before = fs::read(&file).unwrap();

    let loaded = PasswordFile::load(&file).unwrap();
    assert_eq!(fs::read(&file).unwrap(), before, "loading changes nothing");
    assert!(loaded.skipped().is_empty(), "{:?}", loaded.skipped());
    assert_eq!(loaded.len(), 3);
    assert!(loaded.verify("alice", b"wonder land"));
    assert!(loaded.verify("bob", b"builder"));
    assert!(loaded.verify("carol", b"c4r0l"));
    assert!(!loaded.verify("alice", b"builder"));
    assert!(!loaded.verify("bob", b"Builder"));
    assert!(!loaded.verify("carol", b""));
    assert!(!loaded.verify("dave", b"builder"));
}

#[test]
fn file_from_midge_passwd_is_accepted_by_mosquitto() {
    let dir = TempDir::new("from-midge");
    let file = dir.path("passwd");
    run_ok(Command::new(MIDGE).args(["passwd", "-c", "-b"]).arg(&file).args(["alice", "secret"]), b"");
    run_ok(Command::new(MIDGE).args(["passwd", "-b"]).arg(&file).args(["bob", "hunter2"]), b"");
    // Without -b and with stdin not a terminal: the password (twice, as mosquitto_passwd reads it).
    run_ok(Command::new(MIDGE).arg("passwd").arg(&file).arg("carol"), b"from stdin\nfrom stdin\n");
    // And an update in place: bob's old password stops working.
    run_ok(Command::new(MIDGE).args(["passwd", "-b"]).arg(&file).args(["bob", "hunter3"]), b"");
    assert_eq!(PasswordFile::load(&file).unwrap().len(), 3);

    let broker = Mosquitto::start(&dir, &file);
    assert!(broker.publish_as("alice", "secret"), "alice refused: {}", broker.log_text());
    assert!(broker.publish_as("bob", "hunter3"), "bob refused: {}", broker.log_text());
    assert!(broker.publish_as("carol", "from stdin"), "carol refused: {}", broker.log_text());
    assert!(!broker.publish_as("alice", "Secret"), "wrong password accepted");
    assert!(!broker.publish_as("bob", "hunter2"), "bob's old password accepted");
    assert!(!broker.publish_as("mallory", "secret"), "unknown user accepted");
}

#[test]
fn mosquitto_passwd_can_update_a_file_midge_wrote() {
    require(MOSQUITTO_PASSWD);
    let dir = TempDir::new("both");
    let file = dir.path("passwd");
    run_ok(Command::new(MIDGE).args(["passwd", "-c", "-b"]).arg(&file).args(["alice", "one"]), b"");
    run_ok(Command::new(MOSQUITTO_PASSWD).arg("-b").arg(&file).args(["bob", "two"]), b"");
    run_ok(Command::new(MIDGE).args(["passwd", "-D"]).arg(&file).arg("alice"), b"");
    let loaded = PasswordFile::load(&file).unwrap();
    assert_eq!(loaded.len(), 1);
    assert!(loaded.verify("bob", b"two"));
    assert!(!loaded.contains("alice"));
}
