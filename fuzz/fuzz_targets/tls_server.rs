//! The TLS layer (`midge::transport::tls`) against a real rustls client whose bytes the fuzzer
//! corrupts: a handshake, then application data, each flight possibly mutated (bytes XORed at
//! fuzzer-chosen offsets, truncated, or junk appended) and fed in fuzzer-chosen read sizes.
//! Certificates: `fuzz/run.sh` makes them with tests/tls/make-pki.sh and points
//! `MIDGE_FUZZ_PKI` at them.
//!
//! Checks: no panic (rustls' own debug assertions included: the targets build with
//! `--debug-assertions`); the ciphertext the layer keeps stays within its bounds whatever the
//! input; nothing is handed up after a failure or the end of input; unmutated runs deliver the
//! client's data exactly.
#![no_main]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use midge::config::TlsSettings;
use midge::transport::tls::{TlsEvent, TlsLayer, TlsRead};
use midge_fuzz::Input;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

const SCRATCH: usize = 256 * 1024;

fn configs() -> &'static (Arc<ServerConfig>, Arc<ClientConfig>) {
    static CONFIGS: OnceLock<(Arc<ServerConfig>, Arc<ClientConfig>)> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let dir = PathBuf::from(std::env::var("MIDGE_FUZZ_PKI").expect("MIDGE_FUZZ_PKI (fuzz/run.sh sets it)"));
        let settings = TlsSettings {
            certfile: Some(dir.join("server.crt")),
            keyfile: Some(dir.join("server.key")),
            ..TlsSettings::default()
        };
        let server = midge::tls::server_config(&settings).expect("server config");
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(dir.join("ca.crt")).expect("ca.crt") {
            roots.add(cert.expect("ca cert")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (server, Arc::new(client))
    })
}

/// What the server side did with one flight.
#[derive(Default)]
struct Seen {
    plaintext: Vec<u8>,
    over: bool,
}

/// Feed `bytes` to `server` in reads whose sizes come from `input`.
fn feed(server: &mut TlsLayer, bytes: &[u8], input: &mut Input<'_>, seen: &mut Seen, scratch: &mut [u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let take = (usize::from(input.u16()) % 4096 + 1).min(rest.len());
        let (mut piece, tail) = rest.split_at(take);
        rest = tail;
        while !piece.is_empty() {
            let over = seen.over;
            let result = server.read_from(&mut piece, scratch, &mut |event| {
                assert!(!over, "event after the end of input");
                if let TlsEvent::Plaintext(data) = event {
                    seen.plaintext.extend_from_slice(data);
                }
            });
            match result.expect("reads from a slice do not fail") {
                TlsRead::Read { .. } => {}
                TlsRead::Eof | TlsRead::Failed(_) => {
                    seen.over = true;
                    return;
                }
            }
        }
    }
}

/// Corrupt `flight` as `input` says: nothing, XOR some bytes, truncate, or append junk.
fn mutate(flight: &mut Vec<u8>, input: &mut Input<'_>) -> bool {
    match input.u8() % 4 {
        0 => false,
        1 => {
            for _ in 0..(input.u8() % 8 + 1) {
                if flight.is_empty() {
                    break;
                }
                let at = usize::from(input.u16()) % flight.len();
                flight[at] ^= input.u8() | 1;
            }
            true
        }
        2 => {
            let cut = usize::from(input.u16()) % (flight.len() + 1);
            flight.truncate(cut);
            true
        }
        _ => {
            let n = usize::from(input.u8());
            flight.extend_from_slice(input.bytes(n));
            true
        }
    }
}

fn client_flight(client: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while client.wants_write() {
        if client.write_tls(&mut out).is_err() {
            break;
        }
    }
    out
}

/// Hand the server's answers to the client; false once the client gave up.
fn to_client(server: &mut TlsLayer, client: &mut ClientConnection) -> bool {
    let mut back = Vec::new();
    let _ = server.write_tls(&mut back);
    let mut src = &back[..];
    while !src.is_empty() {
        if client.read_tls(&mut src).is_err() || client.process_new_packets().is_err() {
            return false;
        }
    }
    let mut sink = [0u8; 4096];
    while matches!(client.reader().read(&mut sink), Ok(n) if n > 0) {}
    true
}

fuzz_target!(|data: &[u8]| {
    let (server_config, client_config) = configs();
    let mut input = Input::new(data);
    let mut server = TlsLayer::new(server_config).expect("layer");
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(Arc::clone(client_config), name).expect("client");
    let mut scratch = vec![0u8; SCRATCH];
    let mut seen = Seen::default();
    let mut corrupted = false;
    let mut sent = Vec::new();
    // Up to 6 flights: handshake messages, then application data the fuzzer sizes.
    for step in 0..6 {
        if step >= 2 && !client.is_handshaking() {
            let n = usize::from(input.u16()) % 40_000;
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            if client.writer().write_all(&data).is_ok() {
                sent.extend_from_slice(&data);
            }
        }
        let mut flight = client_flight(&mut client);
        if flight.is_empty() && step >= 2 {
            break;
        }
        corrupted |= mutate(&mut flight, &mut input);
        feed(&mut server, &flight, &mut input, &mut seen, &mut scratch);
        let pending = server.debug_pending();
        assert!(pending.0 <= midge::transport::tls::INCOMING_LIMIT, "kept {} bytes of input", pending.0);
        assert!(pending.1 <= 2 * 64 * 1024 + 4096, "queued {} bytes of output", pending.1);
        if seen.over || !to_client(&mut server, &mut client) {
            break;
        }
    }
    if !corrupted && !seen.over {
        assert!(sent.starts_with(&seen.plaintext), "plaintext differs from what the client sent");
    }
    let _ = server.plaintext_sink().write(b"after");
    server.send_close_notify();
    let _ = server.write_tls(&mut Vec::new());
});
