//! The TLS layer against rustls' own client, in memory: handshakes, records split across
//! reads, what an idle connection keeps, alerts for non-TLS input, close_notify both ways.
//! Certificates come from tests/tls/make-pki.sh (openssl), made once per test run.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::*;
use crate::config::TlsSettings;

const SCRATCH: usize = 256 * 1024;

fn pki() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("midge-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tls/make-pki.sh");
        let out = std::process::Command::new("bash").arg(script).arg(&dir).output().unwrap();
        assert!(out.status.success(), "make-pki.sh: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

fn server(client_ca: bool) -> TlsLayer {
    let dir = pki();
    let settings = TlsSettings {
        certfile: Some(dir.join("server.crt")),
        keyfile: Some(dir.join("server.key")),
        cafile: client_ca.then(|| dir.join("ca.crt")),
        ..TlsSettings::default()
    };
    TlsLayer::new(&crate::tls::server_config(&settings).unwrap()).unwrap()
}

fn client(with_cert: bool) -> ClientConnection {
    let dir = pki();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_cert {
        let certs: Vec<_> =
            CertificateDer::pem_file_iter(dir.join("client.crt")).unwrap().map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("client.key")).unwrap();
        builder.with_client_auth_cert(certs, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// What the server handed up.
#[derive(Default)]
struct Seen {
    plaintext: Vec<u8>,
    identity: Option<Option<String>>,
    /// Plaintext arrived before the Handshaken event.
    early: bool,
    failed: bool,
    eof: bool,
}

/// Feed `bytes` to the server in reads of at most `chunk` bytes.
fn feed(server: &mut TlsLayer, bytes: &[u8], chunk: usize, seen: &mut Seen) {
    let mut scratch = vec![0u8; SCRATCH];
    for piece in bytes.chunks(chunk.max(1)) {
        let mut src = piece;
        while !src.is_empty() {
            let result = server
                .read_from(&mut src, &mut scratch, &mut |event| match event {
                    TlsEvent::Handshaken(id) => seen.identity = Some(id),
                    TlsEvent::Plaintext(data) => {
                        seen.early |= seen.identity.is_none();
                        seen.plaintext.extend_from_slice(data);
                    }
                })
                .unwrap();
            match result {
                TlsRead::Read { .. } => {}
                TlsRead::Eof => {
                    seen.eof = true;
                    return;
                }
                TlsRead::Failed(_) => {
                    seen.failed = true;
                    return;
                }
            }
        }
    }
}

/// Client -> server ciphertext in reads of `chunk`, and server -> client, until both are quiet.
fn pump(client: &mut ClientConnection, server: &mut TlsLayer, chunk: usize, seen: &mut Seen) -> Vec<u8> {
    let mut received = Vec::new();
    for _ in 0..64 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        feed(server, &wire, chunk, seen);
        let mut back = Vec::new();
        assert!(server.write_tls(&mut back).unwrap());
        if wire.is_empty() && back.is_empty() {
            break;
        }
        let mut src = &back[..];
        let mut buf = vec![0u8; 64 * 1024];
        while !src.is_empty() {
            client.read_tls(&mut src).unwrap();
            client.process_new_packets().unwrap();
            while let Ok(n) = client.reader().read(&mut buf) {
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buf[..n]);
            }
        }
    }
    received
}

/// The client sends `bytes`, in pieces its own buffer limit takes.
fn upload(client: &mut ClientConnection, server: &mut TlsLayer, bytes: &[u8], seen: &mut Seen) {
    for piece in bytes.chunks(16 * 1024) {
        client.writer().write_all(piece).unwrap();
        pump(client, server, usize::MAX, seen);
    }
}

fn server_send(server: &mut TlsLayer, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = server.plaintext_sink().write(rest).unwrap();
        rest = &rest[n..];
        if server.wants_write() && !rest.is_empty() {
            break;
        }
    }
    assert!(rest.is_empty(), "sink refused before the limit");
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn handshake_and_data_both_ways_then_idle_holds_no_buffers() {
    let (mut c, mut s, mut seen) = (client(false), server(false), Seen::default());
    pump(&mut c, &mut s, usize::MAX, &mut seen);
    assert!(!s.is_handshaking() && !c.is_handshaking());
    assert_eq!(seen.identity, Some(None));

    let sent = pattern(100_000);
    upload(&mut c, &mut s, &sent, &mut seen);
    assert_eq!(seen.plaintext, sent);
    assert!(!seen.early);

    let download = pattern(40_000);
    server_send(&mut s, &download);
    let got = pump(&mut c, &mut s, usize::MAX, &mut seen);
    assert_eq!(got, download);

    // Idle: no ciphertext kept either way.
    assert_eq!(s.incoming.capacity(), 0);
    assert_eq!(s.outgoing.capacity(), 0);
}

#[test]
fn records_split_across_reads_keep_only_the_unfinished_front() {
    let (mut c, mut s, mut seen) = (client(false), server(false), Seen::default());
    pump(&mut c, &mut s, 7, &mut seen);
    let upload = pattern(50_000);
    c.writer().write_all(&upload).unwrap();
    let mut wire = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut wire).unwrap();
    }
    let mut scratch = vec![0u8; SCRATCH];
    let mut src = &wire[..];
    let mut got = Vec::new();
    while !src.is_empty() {
        let take = src.len().min(1000);
        let mut piece = &src[..take];
        s.read_from(&mut piece, &mut scratch, &mut |e| {
            if let TlsEvent::Plaintext(d) = e {
                got.extend_from_slice(d)
            }
        })
        .unwrap();
        src = &src[take..];
        // At most one record's front (16 KB + expansion) is ever kept.
        assert!(s.incoming.len() <= MAX_FRAGMENT + 256 + 5, "kept {}", s.incoming.len());
    }
    assert_eq!(got, upload);
    assert_eq!(s.incoming.capacity(), 0, "input ended on a record boundary");
}

#[test]
fn plain_mqtt_client_on_a_tls_port_gets_an_alert_and_fails() {
    let mut s = server(false);
    let mut seen = Seen::default();
    let connect = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd";
    feed(&mut s, connect, usize::MAX, &mut seen);
    assert!(seen.failed && seen.plaintext.is_empty());
    assert!(s.wants_write(), "the alert is queued");
    let mut alert = Vec::new();
    assert!(s.write_tls(&mut alert).unwrap());
    assert_eq!(alert.first(), Some(&0x15), "an alert record: {alert:?}");
}

#[test]
fn client_certificate_cn_comes_before_any_plaintext() {
    let (mut c, mut s, mut seen) = (client(true), server(true), Seen::default());
    // The client's Finished and its first data go in the same read.
    c.writer().write_all(b"hello").unwrap();
    pump(&mut c, &mut s, usize::MAX, &mut seen);
    assert_eq!(seen.identity, Some(Some("alice".to_string())));
    assert_eq!(seen.plaintext, b"hello");
    assert!(!seen.early);
}

#[test]
fn close_notify_both_ways() {
    let (mut c, mut s, mut seen) = (client(false), server(false), Seen::default());
    pump(&mut c, &mut s, usize::MAX, &mut seen);
    c.send_close_notify();
    pump(&mut c, &mut s, usize::MAX, &mut seen);
    assert!(seen.eof);
    s.send_close_notify();
    let mut back = Vec::new();
    assert!(s.write_tls(&mut back).unwrap());
    let mut src = &back[..];
    c.read_tls(&mut src).unwrap();
    let state = c.process_new_packets().unwrap();
    assert!(state.peer_has_closed());
}

#[test]
fn sink_stops_at_the_outgoing_limit_and_gathers_small_writes() {
    let (mut c, mut s, mut seen) = (client(false), server(false), Seen::default());
    pump(&mut c, &mut s, usize::MAX, &mut seen);

    let big = pattern(OUTGOING_LIMIT * 2);
    let mut rest = &big[..];
    loop {
        match s.plaintext_sink().write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
                break;
            }
        }
    }
    assert!(s.outgoing.len() <= OUTGOING_LIMIT + 8 * RECORD_OVERHEAD, "{}", s.outgoing.len());
    let sent = big.len() - rest.len();
    let got = pump(&mut c, &mut s, usize::MAX, &mut seen);
    assert_eq!(got, &big[..sent]);

    let small: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 20]).collect();
    let slices: Vec<IoSlice<'_>> = small.iter().map(|v| IoSlice::new(v)).collect();
    let n = s.plaintext_sink().write_vectored(&slices).unwrap();
    assert_eq!(n, 2000);
    // One record: header + content type + tag, not 100 of them.
    assert!(s.outgoing.len() < 2000 + RECORD_OVERHEAD, "{}", s.outgoing.len());
    let got = pump(&mut c, &mut s, usize::MAX, &mut seen);
    assert_eq!(got, small.concat());
}

#[test]
fn no_application_data_is_encrypted_before_the_handshake() {
    let mut s = server(false);
    let err = s.plaintext_sink().write(b"too early").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    assert!(!s.wants_write());
}

/// xorshift: deterministic noise without a dependency.
fn noise(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn mutated_client_flights_never_panic_and_stay_bounded() {
    // A real client's first flight and, after the handshake, a data flight; each mutated and
    // fed in random chunk sizes to a fresh server.
    let (mut c, mut s, mut seen) = (client(false), server(false), Seen::default());
    let mut hello = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut hello).unwrap();
    }
    feed(&mut s, &hello, usize::MAX, &mut seen);
    pump(&mut c, &mut s, usize::MAX, &mut seen);
    c.writer().write_all(&pattern(20_000)).unwrap();
    let mut data = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut data).unwrap();
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..300 {
        let base = if round % 2 == 0 { &hello } else { &data };
        let mut bytes = base.clone();
        for _ in 0..(noise(&mut state) % 8 + 1) {
            let at = (noise(&mut state) as usize) % bytes.len();
            bytes[at] ^= (noise(&mut state) % 255 + 1) as u8;
        }
        bytes.truncate(bytes.len() - (noise(&mut state) as usize) % (bytes.len() / 2 + 1));
        // Data records only make sense after a handshake: replay it first for odd rounds.
        let (mut c2, mut s2, mut seen2) = (client(false), server(false), Seen::default());
        if round % 2 == 1 {
            pump(&mut c2, &mut s2, usize::MAX, &mut seen2);
        }
        let chunk = (noise(&mut state) % 300 + 1) as usize;
        feed(&mut s2, &bytes, chunk, &mut seen2);
        assert!(s2.incoming.len() <= INCOMING_LIMIT);
        assert!(s2.outgoing.len() <= OUTGOING_LIMIT + ANSWER_LIMIT);
        let mut sink = Vec::new();
        let _ = s2.write_tls(&mut sink);
    }
}
