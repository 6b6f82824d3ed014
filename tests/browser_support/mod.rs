//! Headless Chromium for the interop tests: a tiny HTTP server on 127.0.0.1 that serves a page
//! from tests/interop/ and MQTT.js's browser bundle and takes the page's verdict (`POST
//! /result`), and a Chromium process group killed on drop. Used by tests/interop.rs (plain
//! WebSocket) and tests/security.rs (wss with credentials and ACLs).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("interop")
}

/// The Chromium binary ($CHROMIUM, else Debian's).
pub fn chromium_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("chromium not found at /usr/bin/chromium: run `make test` (tests/interop/install-deps.sh installs it)")
}

/// Serves the pages of tests/interop/ and mqtt.min.js on 127.0.0.1:0; the body of
/// `POST /result` goes to `tx`.
pub fn serve_pages(tx: mpsc::Sender<String>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = interop_dir();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let dir = dir.clone();
            let tx = tx.clone();
            thread::spawn(move || {
                let _ = handle_http(&mut s, &dir, &tx);
            });
        }
    });
    addr
}

fn handle_http(s: &mut TcpStream, dir: &Path, tx: &mpsc::Sender<String>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let content_length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end..].to_vec();
    while body.len() < content_length {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let path_only = path.split('?').next().unwrap_or("");
    let page = |name: &str| std::fs::read(dir.join(name));
    let (status, ctype, content) = match (method.as_str(), path_only) {
        ("GET", "/browser.html") => ("200 OK", "text/html; charset=utf-8", page("browser.html")?),
        ("GET", "/secure.html") => ("200 OK", "text/html; charset=utf-8", page("secure.html")?),
        ("GET", "/browser_v5.html") => ("200 OK", "text/html; charset=utf-8", page("browser_v5.html")?),
        ("GET", "/mqtt.min.js") => {
            ("200 OK", "text/javascript; charset=utf-8", page("node_modules/mqtt/dist/mqtt.min.js")?)
        }
        ("POST", "/result") => {
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            ("200 OK", "text/plain", b"ok".to_vec())
        }
        _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        content.len()
    )?;
    s.write_all(&content)?;
    s.flush()
}

/// Chromium and all its helper processes (own process group), killed on drop.
pub struct Browser {
    child: Child,
    log: PathBuf,
    _profile: TempProfile,
}

struct TempProfile(PathBuf);

impl Drop for TempProfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Headless Chromium on `url`; `extra` flags (e.g. `--ignore-certificate-errors-spki-list`).
    pub fn open(url: &str, extra: &[String]) -> Browser {
        let chromium = chromium_path();
        let profile = std::env::temp_dir().join(format!(
            "midge-chromium-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let log_path = profile.join("chromium.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--mute-audio",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.join("profile").display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        Browser { child, log: log_path, _profile: TempProfile(profile) }
    }

    /// The page's verdict, or a panic with Chromium's log after `timeout`.
    pub fn result(self, rx: &mpsc::Receiver<String>, timeout: Duration) -> String {
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(_) => {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                drop(self);
                panic!("the page did not report a result within {timeout:?}\n--- chromium log ---\n{log}");
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
