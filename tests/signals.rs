//! Signals to a real `midge` process: SIGTERM and SIGINT stop it cleanly and promptly.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// CONNECT at protocol level `level` (4 or 5), clean, keep alive 60.
fn connect(level: u8, id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 60];
    if level == 5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// Read until EOF or `within`; what arrived.
fn read_to_close(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(buf.get(..n).unwrap()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    got
}

fn stops_cleanly_on(signal: i32) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_midge"))
        .args(["-p", &port.to_string(), "--ws-port", &free_port().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let connect_to = || loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("midge did not listen: {e}"),
        }
    };
    let mut v5 = connect_to();
    v5.write_all(&connect(5, "sig-v5")).unwrap();
    let mut v4 = connect_to();
    v4.write_all(&connect(4, "sig-v4")).unwrap();
    let mut connack = [0u8; 4];
    v4.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    let mut head = [0u8; 2];
    v5.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x20, "CONNACK");
    let mut rest = vec![0u8; usize::from(head[1])];
    v5.read_exact(&mut rest).unwrap();

    // SIGHUP (reload, as in mosquitto) must not end the broker nor its clients.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP ended midge");
    v4.write_all(&[0xC0, 0]).unwrap(); // PINGREQ
    let mut pong = [0u8; 2];
    v4.read_exact(&mut pong).unwrap();
    assert_eq!(pong, [0xD0, 0], "served after SIGHUP");

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let sent = Instant::now();
    // 5.0: DISCONNECT 0x8B Server shutting down (3.14.2.1), then the close; 3.1.1: the close.
    assert_eq!(read_to_close(&mut v5, Duration::from_secs(5)), [0xE0, 1, 0x8B]);
    assert_eq!(read_to_close(&mut v4, Duration::from_secs(5)), Vec::<u8>::new());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(sent.elapsed() < Duration::from_secs(5), "still running 5 s after the signal");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn sigterm_disconnects_clients_and_exits_0() {
    stops_cleanly_on(libc::SIGTERM);
}

#[test]
fn sigint_disconnects_clients_and_exits_0() {
    stops_cleanly_on(libc::SIGINT);
}

#[test]
fn pid_file_holds_the_pid_while_running_and_is_removed_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("midge-pidfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("midge.pid");
    let conf = dir.join("midge.conf");
    let port = free_port();
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npid_file {}\n", pid_file.display()),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_midge"))
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "midge did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Written right after the listeners are bound (the kernel may accept before that), in
    // mosquitto's format: the pid, no newline.
    while std::fs::read_to_string(&pid_file).map_or(true, |s| s.is_empty()) {
        assert!(Instant::now() < deadline, "no pid file");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), child.id().to_string());
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(!pid_file.exists(), "pid file left behind");

    // Not writable: an error at start, not a broker without its pid file.
    let conf2 = dir.join("bad.conf");
    std::fs::write(
        &conf2,
        format!("listener {} 127.0.0.1\npid_file {}/no/such/dir/midge.pid\n", free_port(), dir.display()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_midge")).arg("-c").arg(&conf2).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unable to write pid file"));
    let _ = std::fs::remove_dir_all(&dir);
}
