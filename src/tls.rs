//! TLS settings under MQTT and WebSocket (mosquitto's `certfile`/`keyfile`/`cafile`... on a
//! listener): the rustls `ServerConfig` a listener's connections share, and the client
//! certificate's CN for `use_identity_as_username`. The per-connection layer, sans-IO like the
//! rest of the stack, is `transport::tls`; every layer above it (HTTP upgrade, WebSocket
//! frames, MQTT) is the same code on `mqtts` and `wss`.
//!
//! rustls with the `ring` provider: no C toolchain beyond what `ring` builds with, and no
//! OpenSSL on the gateway. TLS 1.2 and 1.3 (rustls has nothing older: `tls_version tlsv1.1`
//! is accepted as "1.2 and up" with a warning).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::{TlsSettings, TlsVersion};

/// Why a listener's TLS settings cannot be used (the broker does not start).
#[derive(Debug)]
pub enum TlsSetupError {
    /// `certfile` without `keyfile`, or the other way round.
    MissingKeyOrCert,
    Read {
        path: String,
        error: String,
    },
    /// The file holds no certificate (or no private key) in PEM.
    Empty {
        path: String,
        what: &'static str,
    },
    /// `require_certificate true` without `cafile`/`capath`.
    NoClientCa,
    /// `crlfile` without `cafile`/`capath`: there are no client certificates to check.
    CrlWithoutCa,
    Rustls(rustls::Error),
    Verifier(String),
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSetupError::MissingKeyOrCert => write!(f, "certfile and keyfile must both be set"),
            TlsSetupError::Read { path, error } => write!(f, "cannot read {path}: {error}"),
            TlsSetupError::Empty { path, what } => write!(f, "{path} holds no {what} in PEM format"),
            TlsSetupError::NoClientCa => {
                write!(f, "require_certificate needs cafile or capath to verify client certificates")
            }
            TlsSetupError::CrlWithoutCa => {
                write!(f, "crlfile needs cafile or capath (it applies to client certificates)")
            }
            TlsSetupError::Rustls(e) => write!(f, "TLS setup: {e}"),
            TlsSetupError::Verifier(e) => write!(f, "client certificate verification setup: {e}"),
        }
    }
}

impl std::error::Error for TlsSetupError {}

/// Build a listener's TLS configuration from mosquitto's options: the certificate chain and key
/// (PEM; RSA, ECDSA or Ed25519; PKCS#1, SEC1 or PKCS#8), client certificates verified against
/// `cafile` and every PEM file in `capath` when either is set (required with
/// `require_certificate true`, else optional) and against `crlfile`'s revocation lists, and
/// the minimum `tls_version`.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let (Some(certfile), Some(keyfile)) = (&settings.certfile, &settings.keyfile) else {
        return Err(TlsSetupError::MissingKeyOrCert);
    };
    let certs = load_certs(certfile)?;
    let key = load_key(keyfile)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(TlsSetupError::Rustls)?;
    let roots = client_roots(settings)?;
    let builder = match roots {
        None if settings.require_certificate => return Err(TlsSetupError::NoClientCa),
        None if settings.crlfile.is_some() => return Err(TlsSetupError::CrlWithoutCa),
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if let Some(crlfile) = &settings.crlfile {
                // As OpenSSL's X509_V_FLAG_CRL_CHECK, which mosquitto sets: the client's own
                // certificate is checked, and one whose issuer has no CRL here is refused.
                verifier = verifier.with_crls(load_crls(crlfile)?).only_check_end_entity_revocation();
            }
            let verifier = if settings.require_certificate { verifier } else { verifier.allow_unauthenticated() };
            let verifier = verifier.build().map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(TlsSetupError::Rustls)?;
    // Session resumption by ticket would need a ticketer; the default in-memory cache is
    // bounded (256 entries) and enough for reconnecting clients.
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

fn read_error(path: &Path, e: impl fmt::Display) -> TlsSetupError {
    TlsSetupError::Read { path: path.display().to_string(), error: e.to_string() }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsSetupError::Empty { path: path.display().to_string(), what: "certificate" });
    }
    Ok(certs)
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsSetupError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| read_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(path, e))?;
    if crls.is_empty() {
        return Err(TlsSetupError::Empty { path: path.display().to_string(), what: "certificate revocation list" });
    }
    Ok(crls)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsSetupError::Empty { path: path.display().to_string(), what: "private key" }
        }
        e => read_error(path, e),
    })
}

/// The CAs that client certificates are verified against: `cafile` plus every `*.pem`/`*.crt`
/// file in `capath` (mosquitto's capath holds hashed links to PEM files; any PEM file is taken).
fn client_roots(settings: &TlsSettings) -> Result<Option<RootCertStore>, TlsSetupError> {
    if settings.cafile.is_none() && settings.capath.is_none() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    let add_file = |path: &Path, roots: &mut RootCertStore| -> Result<(), TlsSetupError> {
        for cert in load_certs(path)? {
            roots.add(cert).map_err(|e| read_error(path, e))?;
        }
        Ok(())
    };
    if let Some(cafile) = &settings.cafile {
        add_file(cafile, &mut roots)?;
    }
    if let Some(capath) = &settings.capath {
        let entries = std::fs::read_dir(capath).map_err(|e| read_error(capath, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let is_file = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
            // Files that hold no certificate (a README, say) are skipped, as OpenSSL does.
            if is_file && load_certs(&path).is_ok() {
                add_file(&path, &mut roots)?;
            }
        }
    }
    if roots.is_empty() {
        return Err(TlsSetupError::Empty { path: "cafile/capath".into(), what: "CA certificate" });
    }
    Ok(Some(roots))
}

/// The subject CN of a DER certificate, found by walking just enough DER. Certificates reach
/// this only after rustls verified them, but the walk is bounds-checked anyway. O(cert size).
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
    // signature, issuer, validity, subject, ... } ... }
    let (_, cert, _) = der_item(der)?;
    let (_, mut tbs, _) = der_item(cert)?;
    let (tag, _, rest) = der_item(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    // serial, signature algorithm, issuer, validity: skipped.
    for _ in 0..4 {
        let (_, _, rest) = der_item(tbs)?;
        tbs = rest;
    }
    let (tag, mut rdns, _) = der_item(tbs)?;
    if tag != 0x30 {
        return None;
    }
    // Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value }; the last CN wins, as OpenSSL's
    // most specific one.
    let mut found = None;
    while !rdns.is_empty() {
        let (_, set, rest) = der_item(rdns)?;
        rdns = rest;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (_, attr, rest) = der_item(attrs)?;
            attrs = rest;
            let (tag, oid, value) = der_item(attr)?;
            // 2.5.4.3 = id-at-commonName.
            if tag == 0x06 && oid == [0x55, 0x04, 0x03] {
                let (tag, text, _) = der_item(value)?;
                // UTF8String, PrintableString, TeletexString (as Latin-1 would need more), IA5String.
                if matches!(tag, 0x0c | 0x13 | 0x14 | 0x16) {
                    found = std::str::from_utf8(text).ok().map(str::to_string);
                }
            }
        }
    }
    found
}

/// One DER TLV: (tag, contents, the bytes after it). Short and long definite lengths.
fn der_item(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first_len = *input.get(1)?;
    let (len, header) = if first_len < 0x80 {
        (usize::from(first_len), 2)
    } else {
        let count = usize::from(first_len & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let bytes = input.get(2..2 + count)?;
        (bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), 2 + count)
    };
    let contents = input.get(header..header.checked_add(len)?)?;
    let rest = input.get(header + len..)?;
    Some((tag, contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_item_rejects_truncated_and_indefinite_lengths() {
        assert_eq!(der_item(&[]), None);
        assert_eq!(der_item(&[0x30]), None);
        assert_eq!(der_item(&[0x30, 0x05, 1, 2]), None);
        assert_eq!(der_item(&[0x30, 0x80, 0, 0]), None);
        assert_eq!(der_item(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(der_item(&[0x04, 0x02, 7, 8, 9]), Some((0x04, &[7u8, 8][..], &[9u8][..])));
        assert_eq!(der_item(&[0x04, 0x81, 0x01, 7]), Some((0x04, &[7u8][..], &[][..])));
    }

    #[test]
    fn subject_common_name_of_garbage_is_none() {
        assert_eq!(subject_common_name(&[]), None);
        assert_eq!(subject_common_name(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ 0x30).collect();
            let _ = subject_common_name(&junk);
        }
    }
}
