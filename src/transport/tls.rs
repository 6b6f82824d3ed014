//! The TLS layer of a connection's transport stack, sans-IO: rustls' *unbuffered* server
//! connection, with the ciphertext buffers owned here so that an idle TLS connection holds
//! only rustls' key state. rustls' buffered `ServerConnection` keeps a 4 KB receive buffer for
//! good after the first read; here ciphertext is read into the event loop's shared scratch
//! buffer and processed where it lies, and only a record's unfinished front is kept (no
//! memory at all between records), and sent ciphertext is freed as soon as the socket took it.
//!
//! The layer never touches a socket: the transport passes it something to read from and to
//! write to. Decrypted bytes are handed up through a callback as they complete (`TlsEvent`),
//! so the layers above see plaintext exactly as a plain socket's bytes.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeTlsData, EncryptError, UnbufferedStatus, WriteTraffic};
use rustls::ServerConfig;

use crate::buffer::InBuf;
use crate::tls::subject_common_name;

/// Encrypted bytes a connection may queue for its socket. Beyond it the broker's own output
/// queue keeps the (plaintext) bytes, where the watermarks and `memory_limit` see them.
const OUTGOING_LIMIT: usize = 64 * 1024;

/// A handshake flight may span records (a client certificate chain); rustls caps one handshake
/// message at 64 KB, and one record is at most 16 KB + 2 KB of expansion + its header. The
/// loop's read buffer must be more than twice this (half of it takes ciphertext).
pub const INCOMING_LIMIT: usize = 64 * 1024 + 18 * 1024 + 5;

/// Ciphertext that input alone may make us queue (handshake flights, alerts, key updates) on
/// top of a full `OUTGOING_LIMIT` of records: a peer that makes more and never reads it is
/// failed rather than buffered for.
const ANSWER_LIMIT: usize = 64 * 1024;

/// Plaintext per record (RFC 8446 5.1), and an upper bound of what encryption adds to one
/// (header 5, TLS 1.2 explicit nonce 8 or TLS 1.3 content type 1, tag 16).
const MAX_FRAGMENT: usize = 16 * 1024;
const RECORD_OVERHEAD: usize = 32;

/// Small plaintext writes are gathered into one record of up to this size before encrypting,
/// so a batch of small packets costs one record, not one per packet.
const GATHER: usize = MAX_FRAGMENT;

/// A TLS failure on one connection: the alert rustls made is sent, then the socket closed.
#[derive(Debug)]
pub struct TlsError(rustls::Error);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            // The usual cause: a plain MQTT or HTTP client on a TLS port.
            rustls::Error::InvalidMessage(m) => write!(f, "not a TLS client ({m:?})"),
            e => write!(f, "{e}"),
        }
    }
}

/// What the layer hands up while it processes input, in stream order.
pub enum TlsEvent<'a> {
    /// The handshake is done: the verified client certificate's subject CN, if any (for
    /// `use_identity_as_username`). Comes once, before any plaintext.
    Handshaken(Option<String>),
    /// Decrypted bytes (several records gathered when they came in one read).
    Plaintext(&'a mut [u8]),
}

/// What one `TlsLayer::read_from` did.
#[derive(Debug)]
pub enum TlsRead {
    /// `n` ciphertext bytes were read (and every complete record in them processed);
    /// `filled`: the read filled the space it had, so the socket may hold more.
    Read { n: usize, filled: bool },
    /// The peer ended the stream: TLS close_notify, or the socket's end of file.
    Eof,
    /// The peer broke TLS; the alert is queued (`wants_write`), the connection must end.
    Failed(TlsError),
}

/// One connection's TLS state. Boxed by its owner: a plain connection pays nothing for it.
pub struct TlsLayer {
    conn: UnbufferedServerConnection,
    /// Ciphertext of an unfinished record (or handshake flight), kept between reads. Empty, and
    /// holding no memory, whenever the input ended on a record boundary.
    incoming: InBuf,
    /// Ciphertext for the socket (handshake flights, records, alerts); `outgoing[sent..]` is
    /// still to go. Freed once it all went.
    outgoing: Vec<u8>,
    sent: usize,
    /// The `Handshaken` event was given.
    handshaken: bool,
    /// close_notify received, or TLS failed: input is over.
    input_done: bool,
    /// TLS failed: rustls is not called again (after an error it keeps offsets into input
    /// that is gone; only the alert it queued is taken, in `fail`).
    failed: bool,
    /// close_notify queued: no more application data may follow it.
    close_queued: bool,
}

impl TlsLayer {
    pub fn new(config: &Arc<ServerConfig>) -> Result<TlsLayer, TlsError> {
        let conn = UnbufferedServerConnection::new(Arc::clone(config)).map_err(TlsError)?;
        Ok(TlsLayer {
            conn,
            incoming: InBuf::default(),
            outgoing: Vec::new(),
            sent: 0,
            handshaken: false,
            input_done: false,
            failed: false,
            close_queued: false,
        })
    }

    /// Read ciphertext from `src` once and process every record it completes, handing events to
    /// `on`. `scratch` is the loop's shared buffer: its first half takes the ciphertext (behind
    /// the kept front of a record), its second half gathers plaintext. Errors are the
    /// reader's (`WouldBlock` included; nothing is lost then). O(bytes read); the kept front
    /// of a record (at most one record, ~18 KB) is the only ciphertext copied.
    pub fn read_from(
        &mut self,
        src: &mut dyn Read,
        scratch: &mut [u8],
        on: &mut dyn FnMut(TlsEvent<'_>),
    ) -> io::Result<TlsRead> {
        if self.input_done {
            return Ok(TlsRead::Eof);
        }
        let (cipher, plain) = scratch.split_at_mut(scratch.len() / 2);
        let kept = self.incoming.len();
        let capacity = cipher.len();
        let Some(front) = cipher.get_mut(..kept).filter(|_| kept < capacity) else {
            // Unreachable with INCOMING_LIMIT below half the loop's buffer; fail safe anyway.
            return Ok(self.fail_here("TLS input buffer too small"));
        };
        front.copy_from_slice(self.incoming.filled_mut());
        let space = cipher.get_mut(kept..).unwrap_or(&mut []);
        let room = space.len();
        let n = src.read(space)?;
        if n == 0 {
            self.input_done = true;
            return Ok(TlsRead::Eof);
        }
        self.incoming = InBuf::default();
        let filled = kept + n;
        let mut plain_len = 0;
        let mut start = 0;
        let mut error = None;
        let outcome = loop {
            let Some(records) = cipher.get_mut(start..filled) else { break None };
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(records);
            let mut blocked = false;
            match state {
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        let Ok(record) = record else { continue };
                        let len = record.payload.len();
                        debug_assert!(len <= plain.len(), "a TLS record larger than the plaintext area");
                        if plain_len + len > plain.len() {
                            on(TlsEvent::Plaintext(plain.get_mut(..plain_len).unwrap_or(&mut [])));
                            plain_len = 0;
                        }
                        if let Some(dst) = plain.get_mut(plain_len..plain_len + len) {
                            dst.copy_from_slice(record.payload);
                            plain_len += len;
                        }
                    }
                }
                Ok(ConnectionState::EncodeTlsData(encode)) => encode_into(encode, &mut self.outgoing, &mut self.sent),
                // Sent with the turn's output; our buffer keeps the bytes until then.
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                Ok(ConnectionState::ReadEarlyData(mut early)) => {
                    // Not offered (max_early_data_size is 0), so never accepted: dropped.
                    while early.next_record().is_some() {}
                }
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    self.input_done = true;
                    blocked = true;
                }
                // Every complete record is processed: wait for more input.
                Ok(_) => blocked = true,
                Err(e) => {
                    error = Some(e);
                    blocked = true;
                }
            }
            start += discard;
            if error.is_some() {
                break Some(());
            }
            if !self.handshaken && !self.conn.is_handshaking() {
                self.handshaken = true;
                on(TlsEvent::Handshaken(self.peer_common_name()));
            }
            if blocked {
                break Some(());
            }
        };
        if plain_len > 0 {
            on(TlsEvent::Plaintext(plain.get_mut(..plain_len).unwrap_or(&mut [])));
        }
        if let Some(e) = error {
            return Ok(self.fail(cipher.get_mut(start..filled).unwrap_or(&mut []), e));
        }
        if self.outgoing.len().saturating_sub(self.sent) > OUTGOING_LIMIT + ANSWER_LIMIT {
            return Ok(self.fail_here("peer does not read the TLS answers it asks for"));
        }
        // After close_notify rustls reads no more input, so nothing is kept.
        if self.input_done || outcome.is_none() {
            return Ok(TlsRead::Eof);
        }
        let rest = cipher.get(start..filled).unwrap_or(&[]);
        if rest.len() > INCOMING_LIMIT {
            return Ok(self.fail_here("TLS handshake flight too large"));
        }
        self.incoming.extend_from_slice(rest);
        Ok(TlsRead::Read { n, filled: n == room })
    }

    /// rustls failed: take the alert it queued, and end input. `rest` is the input rustls was
    /// last given, minus what it said to discard: it must see the same bytes again, because
    /// its handshake reassembly keeps offsets into them. O(1) steps.
    fn fail(&mut self, rest: &mut [u8], error: rustls::Error) -> TlsRead {
        self.input_done = true;
        self.failed = true;
        self.incoming = InBuf::default();
        // The alert waits in rustls' queue, which it empties (as EncodeTlsData) before it looks
        // at input again: call it only while the queue holds something, so the bad input is
        // never processed twice.
        for _ in 0..8 {
            if !self.conn.wants_write() {
                break;
            }
            match self.conn.process_tls_records(rest).state {
                Ok(ConnectionState::EncodeTlsData(encode)) => encode_into(encode, &mut self.outgoing, &mut self.sent),
                _ => break,
            }
        }
        TlsRead::Failed(TlsError(error))
    }

    /// A limit of ours was broken (rustls has nothing queued): end input without an alert.
    fn fail_here(&mut self, why: &str) -> TlsRead {
        self.input_done = true;
        self.failed = true;
        self.incoming = InBuf::default();
        TlsRead::Failed(TlsError(rustls::Error::General(why.into())))
    }

    /// Whether ciphertext (handshake messages, records, alerts) waits to be written.
    pub fn wants_write(&self) -> bool {
        self.sent < self.outgoing.len()
    }

    /// Write queued ciphertext to `sink` until it is drained or would block. Returns whether
    /// it drained; a drained buffer gives its memory back. O(bytes written).
    pub fn write_tls(&mut self, sink: &mut dyn Write) -> io::Result<bool> {
        while let Some(pending) = self.outgoing.get(self.sent..).filter(|p| !p.is_empty()) {
            match sink.write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Ok(true)
    }

    /// Where plaintext output goes to be encrypted: writes are accepted while less than
    /// `OUTGOING_LIMIT` of ciphertext waits, and then report `WouldBlock`, like a full socket
    /// (also while the handshake is not done). Encrypting costs O(bytes).
    pub fn plaintext_sink(&mut self) -> PlaintextSink<'_> {
        PlaintextSink { layer: self }
    }

    /// Queue close_notify (sent with the next `write_tls`), so the peer sees a clean end. Not
    /// possible before the handshake is done (the socket just closes then).
    pub fn send_close_notify(&mut self) {
        if self.close_queued {
            return;
        }
        self.close_queued = true;
        let _ = self.with_write_traffic(|traffic, outgoing| {
            reserve_and(outgoing, RECORD_OVERHEAD, |out| traffic.queue_close_notify(out))
        });
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Ciphertext held: (input kept between reads, output not yet written), for the bounds
    /// checks of tests and fuzzing. O(1).
    pub fn debug_pending(&self) -> (usize, usize) {
        (self.incoming.len(), self.outgoing.len().saturating_sub(self.sent))
    }

    /// The common name (CN) of the verified client certificate's subject, for
    /// `use_identity_as_username`, as mosquitto takes it. O(certificate size).
    pub fn peer_common_name(&self) -> Option<String> {
        let cert = self.conn.peer_certificates()?.first()?;
        subject_common_name(cert.as_ref())
    }

    /// Run `f` with rustls' application-data writer and the outgoing buffer, once rustls is
    /// ready for application data. `None` while handshaking or after the connection closed.
    /// Handshake records rustls still had queued are encoded first. O(1) apart from `f`.
    fn with_write_traffic<T>(
        &mut self,
        f: impl FnOnce(&mut WriteTraffic<'_, rustls::server::ServerConnectionData>, &mut Vec<u8>) -> T,
    ) -> Option<T> {
        if self.failed {
            return None;
        }
        self.compact_outgoing();
        let mut f = Some(f);
        // `incoming` holds no complete record (input is processed to the end), so rustls only
        // reports its own state here and discards nothing; passing it (not an empty slice)
        // keeps the handshake reassembly's view of the input consistent.
        for _ in 0..8 {
            let status = self.conn.process_tls_records(self.incoming.filled_mut());
            let discard = status.discard;
            let result = match status.state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    Some(f.take().map(|f| f(&mut traffic, &mut self.outgoing)))
                }
                Ok(ConnectionState::EncodeTlsData(encode)) => {
                    encode_into(encode, &mut self.outgoing, &mut self.sent);
                    None
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    None
                }
                _ => Some(None),
            };
            self.incoming.consume(discard);
            if let Some(result) = result {
                return result;
            }
        }
        None
    }

    /// Drop the ciphertext the socket already took, so the buffer holds only what is pending
    /// (at most `OUTGOING_LIMIT` plus one write's records). O(pending bytes), only after a
    /// partial write.
    fn compact_outgoing(&mut self) {
        if self.sent > 0 {
            self.outgoing.drain(..self.sent.min(self.outgoing.len()));
            self.sent = 0;
        }
    }

    /// Encrypt the front of `bufs` (as much as the limit allows) into `outgoing`. A large first
    /// slice is encrypted where it lies; runs of small ones (packet headers, small payloads) are
    /// gathered into one record, staged in `outgoing` itself behind the room for their
    /// ciphertext, so a batch of small packets costs one record and no other buffer. O(bytes).
    fn encrypt(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let pending = self.outgoing.len().saturating_sub(self.sent);
        let room = OUTGOING_LIMIT.saturating_sub(pending);
        if room == 0 || self.close_queued {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut slices = bufs.iter().map(|b| &b[..]).filter(|b| !b.is_empty());
        let Some(first) = slices.next() else { return Ok(0) };
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let single = first.len() >= GATHER / 4 || first.len() == total;
        let take = if single { first.len().min(room) } else { total.min(room).min(GATHER) };
        let estimate = take + (take / MAX_FRAGMENT + 1) * RECORD_OVERHEAD;
        let result = self.with_write_traffic(|traffic, outgoing| {
            if single {
                let plain = first.get(..take).unwrap_or(&[]);
                return reserve_and(outgoing, estimate, |out| traffic.encrypt(plain, out));
            }
            let len = outgoing.len();
            outgoing.resize(len + estimate + take, 0);
            let (head, staged) = outgoing.split_at_mut(len + estimate);
            let mut at = 0;
            for slice in std::iter::once(first).chain(slices) {
                let n = slice.len().min(take - at);
                if let (Some(dst), Some(src)) = (staged.get_mut(at..at + n), slice.get(..n)) {
                    dst.copy_from_slice(src);
                }
                at += n;
                if at == take {
                    break;
                }
            }
            let encrypted = traffic.encrypt(staged, head.get_mut(len..).unwrap_or(&mut []));
            match encrypted {
                Ok(n) => {
                    outgoing.truncate(len + n);
                    Ok(())
                }
                // `estimate` bounds one record's expansion; should rustls want more, do it the
                // slow way.
                Err(EncryptError::InsufficientSize(_)) => {
                    let plain = outgoing.split_off(len + estimate);
                    outgoing.truncate(len);
                    reserve_and(outgoing, estimate, |out| traffic.encrypt(&plain, out))
                }
                Err(e) => {
                    outgoing.truncate(len);
                    Err(e)
                }
            }
        });
        match result {
            Some(Ok(())) => Ok(take),
            Some(Err(e)) => Err(io::Error::other(e.to_string())),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Append what `write` puts into a buffer of `estimate` bytes to `outgoing`; if rustls says it
/// needs more, grow to what it asked for and retry once. O(bytes written).
fn reserve_and(
    outgoing: &mut Vec<u8>,
    estimate: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), EncryptError> {
    let len = outgoing.len();
    let mut size = estimate;
    for _ in 0..2 {
        outgoing.resize(len + size, 0);
        let result = write(outgoing.get_mut(len..).unwrap_or(&mut []));
        match result {
            Ok(n) => {
                outgoing.truncate(len + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(needed)) => {
                outgoing.truncate(len);
                size = needed.required_size;
            }
            Err(e) => {
                outgoing.truncate(len);
                return Err(e);
            }
        }
    }
    Err(EncryptError::EncryptExhausted)
}

/// Copy a handshake record (or alert) rustls made into `outgoing`, behind what is queued.
fn encode_into(
    mut encode: EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    outgoing: &mut Vec<u8>,
    sent: &mut usize,
) {
    if *sent > 0 && *sent >= outgoing.len() {
        outgoing.clear();
        *sent = 0;
    }
    let len = outgoing.len();
    let mut size = 2048;
    for _ in 0..2 {
        outgoing.resize(len + size, 0);
        match encode.encode(outgoing.get_mut(len..).unwrap_or(&mut [])) {
            Ok(n) => {
                outgoing.truncate(len + n);
                return;
            }
            Err(rustls::unbuffered::EncodeError::InsufficientSize(needed)) => size = needed.required_size,
            Err(_) => break,
        }
    }
    outgoing.truncate(len);
}

impl fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsLayer")
            .field("handshaking", &self.conn.is_handshaking())
            .field("incoming", &self.incoming.len())
            .field("outgoing", &(self.outgoing.len() - self.sent.min(self.outgoing.len())))
            .finish()
    }
}

/// See `TlsLayer::plaintext_sink`.
pub struct PlaintextSink<'a> {
    layer: &'a mut TlsLayer,
}

impl Write for PlaintextSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.layer.encrypt(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.layer.encrypt(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
