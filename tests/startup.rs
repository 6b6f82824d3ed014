//! What a user sees when midge starts: the process's own stderr, not the parser's return value.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Start `midge -c FILE` with `conf`, collect stderr until `until` appears (or 5 s), stop it.
fn stderr_of(conf: &str, until: &str) -> String {
    let dir = std::env::temp_dir().join(format!("midge-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("midge.conf");
    std::fs::write(&path, conf).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_midge"))
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(until) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    seen
}

#[test]
fn config_warnings_reach_stderr_with_file_and_line() {
    let conf = "listener 0 127.0.0.1\nallow_anonymous true\npsk_hint gateway\nno_such_option 1\nciphers HIGH\n";
    let err = stderr_of(conf, "Opening");
    assert!(err.contains("midge.conf:3: option 'psk_hint' is not supported yet"), "{err}");
    assert!(err.contains("midge.conf:4: unknown option 'no_such_option'"), "{err}");
    assert!(err.contains("midge.conf:5: ciphers takes OpenSSL cipher names"), "{err}");
}
