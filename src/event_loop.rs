//! The only place that touches sockets and the clock: one `mio::Poll`, edge-triggered, one
//! thread. Each turn reads what is there (round robin, a chunk per connection at a time, so
//! one flooding client cannot starve the others) into each connection's transport, which hands
//! MQTT bytes to the broker core; then it writes every connection that got output once
//! (vectored writes, through its transport), and sleeps until the next event or the core's
//! next deadline. It moves bytes between sockets and transports and nothing else.

use std::fs::File;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::broker::{CloseReason, Core};
use crate::config::{Config, Protocol};
use crate::transport::tls::TlsLayer;
use crate::transport::{Received, Transport};
use crate::ws::HandshakeConfig;
use signal_hook_mio::v1_0::Signals;

/// Tokens at the top of the range are listeners and the waker; connections use slab keys.
const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 1024;
/// Below the listeners, above any slab key.
const SIGNALS: Token = Token(LISTENER_BASE - 1);

/// Bytes read per connection per turn before others get their turn (fairness under floods).
const READ_BUDGET: usize = 1024 * 1024;
/// The shared read buffer every socket is read into first; also the round-robin step. 256 KB,
/// not 64: a 64 KB message then arrives whole in most reads instead of always spanning two,
/// which cost 64 KB fan-in about 20% (measured A/B with `make bench`).
const READ_CHUNK: usize = 256 * 1024;
// TLS reads ciphertext into half of the chunk, behind a kept handshake flight.
const _: () = assert!(READ_CHUNK / 2 > crate::transport::tls::INCOMING_LIMIT);
/// A lingering socket's peer may send this much more before it is simply closed.
const LINGER_DISCARD_MAX: usize = 256 * 1024;
/// Out of file descriptors: try accepting again after this long.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

struct Listener {
    socket: TcpListener,
    /// WebSocket listeners: the HTTP upgrade's settings.
    ws: Option<Arc<HandshakeConfig>>,
    protocol: Protocol,
    addr: SocketAddr,
    /// Out of descriptors since then: waiting connections are refused until one accept works.
    starved_since: Option<Instant>,
    /// Connections refused for lack of descriptors in the current episode.
    refused: u64,
    /// The listener speaks TLS (`mqtts`, `wss`).
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Stops a running broker from another thread.
#[derive(Clone)]
pub struct BrokerHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl BrokerHandle {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            warn!("could not wake the broker loop: {e}");
        }
    }
}

/// A bound broker, ready to `run`. It is `Send` (the single-threaded state, which shares
/// messages through `Rc`, is created inside `run`), so tests can bind it, read its ports and then
/// move it to a thread.
pub struct Broker {
    poll: Poll,
    listeners: Vec<Listener>,
    config: Config,
    /// Password and ACL files, read at bind time; handed to the core when it starts.
    security: Option<crate::auth::security::LoadedSecurity>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    /// SIGTERM, SIGINT and SIGHUP as poll events, once `handle_signals` asked for them.
    signals: Option<Signals>,
}

/// A connection's socket, its transport, and what the loop tracks about it.
struct Socket {
    stream: TcpStream,
    transport: Transport,
    /// The core closed the connection and its transport said its last (`drop_closed`): once
    /// the output is out, FIN.
    closed: bool,
    /// Our side was shut down (FIN sent) while lingering.
    shut: bool,
    /// Bytes read and discarded while lingering.
    discarded: usize,
}

impl Socket {
    /// Our side is done: the transport's last word (TLS close_notify), then FIN once
    /// everything is out.
    fn finish(&mut self) {
        if self.shut || !self.transport.finish(&mut self.stream) {
            // The rest goes out with the next writable edge (or not at all).
            return;
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        self.shut = true;
    }
}

/// A connection with bytes (possibly) waiting to be read this turn.
#[derive(Clone, Copy)]
struct Ready {
    token: usize,
    /// The event also reported the peer's FIN or an error: read on to the EOF (or error) even
    /// after a short read, since no later event will announce it.
    hangup: bool,
    /// Bytes read this turn.
    spent: usize,
}

/// What one read did.
enum ReadOutcome {
    /// Maybe more to read.
    More,
    /// Drained, paused, or closed: nothing more this turn.
    Done,
}

/// The loop's state while serving.
struct Serving<'a> {
    signals: Option<&'a mut Signals>,
    poll: &'a mut Poll,
    listeners: &'a mut [Listener],
    /// Sockets by connection token (the core's slab key).
    sockets: Vec<Option<Socket>>,
    core: Core,
    /// Largest WebSocket message (MQTT packet) a transport accepts.
    max_packet_size: usize,
    /// Connections still to be read next turn (their budget ran out, or they were resumed).
    read_again: Vec<Ready>,
    /// A file descriptor held in reserve: closed to accept (and at once close) a waiting
    /// connection when the process is out of descriptors, so waiting clients are refused
    /// instead of hanging, then reopened.
    reserve_fd: Option<File>,
    /// When to retry accepting on listeners that ran out of descriptors.
    accept_retry_at: Option<Instant>,
}

impl Broker {
    /// Bind every listener in `config`.
    pub fn new(config: Config) -> io::Result<Broker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listeners = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let mut socket = TcpListener::bind(l.addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", l.addr)))?;
            poll.registry().register(&mut socket, Token(LISTENER_BASE + i), Interest::READABLE)?;
            let ws = match l.protocol {
                Protocol::Mqtt => None,
                Protocol::WebSockets => Some(Arc::new(l.ws.clone())),
            };
            let addr = socket.local_addr()?;
            let tls = if l.tls.enabled() {
                let config = crate::tls::server_config(&l.tls)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("listener {addr}: {e}")))?;
                Some(config)
            } else {
                None
            };
            let secure = if tls.is_some() { ", TLS" } else { "" };
            match l.protocol {
                Protocol::Mqtt => info!("Opening ipv{} listen socket on {addr} (mqtt{secure}).", ip_version(&addr)),
                Protocol::WebSockets => {
                    info!("Opening websockets listen socket on {addr} (path {}{secure}).", l.ws.path)
                }
            }
            listeners.push(Listener { socket, ws, protocol: l.protocol, addr, starved_since: None, refused: 0, tls });
        }
        if config.local_only {
            info!(
                "Starting in local only mode. Connections will only be possible from clients running on this machine. \
                 Create a configuration file which defines a listener to allow remote access, or start with -b 0.0.0.0."
            );
        }
        let security = crate::auth::security::LoadedSecurity::load(&config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        for (i, l) in config.listeners.iter().enumerate() {
            let auth = config.auth_for(i);
            let anonymous = auth.allow_anonymous.unwrap_or(config.allow_anonymous);
            if !anonymous && auth.password_file.is_none() && !l.tls.use_identity_as_username {
                warn!(
                    "Listener {}: allow_anonymous false without password_file: every client will be refused.",
                    l.addr
                );
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        Ok(Broker { poll, listeners, config, security: Some(security), stop, waker, signals: None })
    }

    /// Take SIGTERM and SIGINT as a request to stop cleanly (clients closed, 5.0 ones with
    /// DISCONNECT 0x8B, output flushed, `run` returns) and SIGHUP as a reload request, through
    /// the poll (signal-hook's self-pipe; the handler itself only writes a byte). For the
    /// process's `main`: handlers are process-wide, so a broker embedded in tests does not.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        self.poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// The bound addresses, in configuration order.
    pub fn local_addrs(&self) -> Vec<(Protocol, SocketAddr)> {
        self.listeners.iter().map(|l| (l.protocol, l.addr)).collect()
    }

    pub fn handle(&self) -> BrokerHandle {
        BrokerHandle { stop: Arc::clone(&self.stop), waker: Arc::clone(&self.waker) }
    }

    /// Serve until `BrokerHandle::stop`.
    pub fn run(&mut self) -> io::Result<()> {
        let mut core = Core::new(&self.config);
        if let Some(security) = self.security.take() {
            core.set_security(security.into_security());
        }
        match core.memory_limit() {
            Some(limit) => info!("memory_limit: {}.", crate::memory::human(limit)),
            None => info!("memory_limit: none."),
        }
        let mut serving = Serving {
            signals: self.signals.as_mut(),
            poll: &mut self.poll,
            listeners: &mut self.listeners,
            sockets: Vec::new(),
            core,
            max_packet_size: self.config.max_packet_size,
            read_again: Vec::new(),
            reserve_fd: File::open("/dev/null").ok(),
            accept_retry_at: None,
        };
        serving.run(&self.stop)
    }
}

impl Serving<'_> {
    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; READ_CHUNK];
        let mut ready: Vec<Ready> = Vec::new();
        let mut stopping = false;
        while !stopping && !stop.load(Ordering::SeqCst) {
            // Connections resumed at the end of the last turn (a subscriber drained, a slow
            // consumer let its publishers go) are read now, without waiting for an event.
            let timeout = if self.read_again.is_empty() && !self.core.has_resumed() {
                let next = self.core.poll_timeout().into_iter().chain(self.accept_retry_at).min();
                next.map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            ready.clear();
            ready.append(&mut self.read_again);
            while let Some(mut endpoint) = self.core.poll_resume(now) {
                // Decode what it held when it was paused, then read on; its FIN may have been
                // reported while it was paused, so read to WouldBlock.
                let token = endpoint.token();
                if let Some(Some(socket)) = self.sockets.get_mut(token) {
                    socket.transport.resume(&mut endpoint);
                }
                ready.push(Ready { token, hangup: true, spent: 0 });
            }
            if self.accept_retry_at.is_some_and(|at| at <= now) {
                self.accept_retry_at = None;
                for index in 0..self.listeners.len() {
                    if self.listeners.get(index).is_some_and(|l| l.starved_since.is_some()) {
                        self.accept(index, now);
                    }
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    SIGNALS => stopping |= self.take_signals(),
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE, now),
                    Token(t) if self.core.is_closing(t) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.discard_input(t, &mut scratch);
                        }
                        if event.is_writable() {
                            self.core.mark_dirty(t);
                        }
                    }
                    Token(t) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            let hangup = event.is_read_closed() || event.is_error();
                            ready.push(Ready { token: t, hangup, spent: 0 });
                        }
                        if event.is_writable() {
                            // The kernel took earlier output: continue writing this turn.
                            self.core.mark_dirty(t);
                        }
                    }
                }
            }
            self.read_round_robin(&mut ready, &mut scratch, now);
            self.core.handle_timeouts(now);
            self.flush_dirty(now);
            self.drop_closed(now);
        }
        self.core.shutdown();
        let now = Instant::now();
        self.flush_dirty(now);
        self.drop_closed(now);
        info!("midge stopped.");
        Ok(())
    }

    /// Signals that arrived: whether one asks to stop. O(signals pending).
    fn take_signals(&mut self) -> bool {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Some(signals) = self.signals.as_deref_mut() else { return false };
        let mut stop = false;
        for signal in signals.pending() {
            match signal {
                SIGTERM | SIGINT => {
                    info!("midge received {}, stopping.", if signal == SIGTERM { "SIGTERM" } else { "SIGINT" });
                    stop = true;
                }
                SIGHUP => warn!("SIGHUP: reloading password, ACL and certificate files is not implemented yet."),
                _ => {}
            }
        }
        stop
    }

    /// Read every ready connection a chunk at a time, in turns, until each is drained, paused
    /// or out of budget (then it is read again next turn).
    fn read_round_robin(&mut self, ready: &mut Vec<Ready>, scratch: &mut [u8], now: Instant) {
        while !ready.is_empty() {
            let mut i = 0;
            while let Some(r) = ready.get_mut(i) {
                let r = *r;
                let (outcome, n) = self.read_once(r.token, scratch, r.hangup, now);
                let spent = r.spent.saturating_add(n);
                match outcome {
                    ReadOutcome::Done => {
                        ready.swap_remove(i);
                    }
                    ReadOutcome::More if spent >= READ_BUDGET => {
                        self.read_again.push(Ready { spent: 0, ..r });
                        ready.swap_remove(i);
                    }
                    ReadOutcome::More => {
                        if let Some(slot) = ready.get_mut(i) {
                            slot.spent = spent;
                        }
                        i += 1;
                    }
                }
            }
        }
    }

    /// One read from `token`'s socket into its transport, which hands MQTT bytes to the core.
    /// Returns what it did and the bytes read.
    fn read_once(&mut self, token: usize, scratch: &mut [u8], hangup: bool, now: Instant) -> (ReadOutcome, usize) {
        // Paused (the core resumes it) or closed: not read.
        let Some(mut endpoint) = self.core.endpoint(token, now) else { return (ReadOutcome::Done, 0) };
        let Some(Some(socket)) = self.sockets.get_mut(token) else { return (ReadOutcome::Done, 0) };
        match socket.transport.read_from(&mut socket.stream, scratch, &mut endpoint) {
            Ok(Received::Eof) => {
                endpoint.hangup(None);
                (ReadOutcome::Done, 0)
            }
            // A short read drained the socket; epoll reports the next arrival as a new edge,
            // so skip the read that would only say WouldBlock.
            Ok(Received::Drained(n)) if !hangup => (ReadOutcome::Done, n),
            Ok(Received::Drained(n) | Received::More(n)) => (ReadOutcome::More, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => (ReadOutcome::Done, 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => (ReadOutcome::More, 0),
            Err(e) => {
                endpoint.hangup(Some(e.kind()));
                (ReadOutcome::Done, 0)
            }
        }
    }

    /// A lingering connection's peer sent more: read and drop it until EOF (then the socket is
    /// closed cleanly, without a reset for unread data) or the discard allowance is spent.
    fn discard_input(&mut self, token: usize, scratch: &mut [u8]) {
        let Some(Some(socket)) = self.sockets.get_mut(token) else { return };
        loop {
            match socket.stream.read(scratch) {
                Ok(0) => break,
                Ok(n) => {
                    socket.discarded += n;
                    if socket.discarded > LINGER_DISCARD_MAX {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // EOF, error or too much: done lingering.
        self.core.handle_hangup(token, None);
    }

    fn accept(&mut self, index: usize, now: Instant) {
        loop {
            let Some(listener) = self.listeners.get_mut(index) else { return };
            match listener.socket.accept() {
                Ok((mut socket, peer)) => {
                    if let Some(since) = listener.starved_since.take() {
                        info!(
                            "Accepting connections again on {} after {} ms ({} refused for lack of file descriptors).",
                            listener.addr,
                            now.saturating_duration_since(since).as_millis(),
                            listener.refused
                        );
                        listener.refused = 0;
                    }
                    let framing = match &listener.ws {
                        Some(ws) => Transport::websocket(Arc::clone(ws), peer.ip(), self.max_packet_size),
                        None => Transport::mqtt(),
                    };
                    let tls_config = listener.tls.clone();
                    let Some(token) = self.core.accept(index, peer, now) else {
                        // At max_connections: closed at once, as mosquitto does.
                        continue;
                    };
                    // Latency first: output is already batched per turn, so Nagle only delays.
                    if let Err(e) = socket.set_nodelay(true) {
                        warn!("set_nodelay failed for {peer}: {e}");
                    }
                    if let Err(e) = self.poll.registry().register(
                        &mut socket,
                        Token(token),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!("cannot register connection from {peer}: {e}");
                        self.core.close(token, crate::broker::CloseReason::Io(e.kind()));
                        continue;
                    }
                    let transport = match tls_config.as_ref().map(TlsLayer::new) {
                        None => framing,
                        Some(Ok(tls)) => framing.with_tls(tls),
                        Some(Err(e)) => {
                            warn!("cannot start TLS for {peer}: {e}");
                            self.core.close(token, CloseReason::Io(io::ErrorKind::Other));
                            continue;
                        }
                    };
                    if self.sockets.len() <= token {
                        self.sockets.resize_with(token + 1, || None);
                    }
                    if let Some(slot) = self.sockets.get_mut(token) {
                        *slot = Some(Socket { stream: socket, transport, closed: false, shut: false, discarded: 0 });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.out_of_descriptors(index, e, now);
                    return;
                }
            }
        }
    }

    /// `accept` failed (EMFILE, ENFILE, ENOBUFS...): an edge-triggered listener gets no new
    /// event for connections already waiting, so refuse those with the reserve descriptor,
    /// log once per episode, and retry on a timer.
    fn out_of_descriptors(&mut self, index: usize, e: io::Error, now: Instant) {
        let Some(listener) = self.listeners.get_mut(index) else { return };
        if listener.starved_since.is_none() {
            error!(
                "accept failed on {}: {e}; refusing waiting connections until descriptors are free (raise the limit with ulimit -n or max_connections).",
                listener.addr
            );
            listener.starved_since = Some(now);
        }
        loop {
            let Some(reserve) = self.reserve_fd.take() else { break };
            drop(reserve);
            let refused = match listener.socket.accept() {
                // Dropped at once: the client sees its connection closed, not a hang.
                Ok((socket, _)) => {
                    drop(socket);
                    true
                }
                Err(_) => false,
            };
            self.reserve_fd = File::open("/dev/null").ok();
            if !refused {
                break;
            }
            listener.refused += 1;
        }
        self.accept_retry_at = Some(now + ACCEPT_RETRY);
    }

    /// Write each connection's batched output once per turn, through its transport.
    fn flush_dirty(&mut self, now: Instant) {
        while let Some(transmit) = self.core.poll_transmit() {
            let token = transmit.token();
            let (Some(Some(socket)), Some(out)) = (self.sockets.get_mut(token), self.core.output(token)) else {
                self.core.transmitted(transmit, 0, now);
                continue;
            };
            let before = out.len();
            let result = socket.transport.write_to(out, &mut socket.stream);
            let written = before.saturating_sub(out.len());
            self.core.transmitted(transmit, written, now);
            match result {
                // Done, or the kernel buffer is full and a WRITABLE edge will bring us back.
                Ok(drained) => {
                    if drained && socket.closed {
                        // A lingering connection said its last: FIN, then wait for the peer's.
                        socket.finish();
                    }
                }
                Err(e) => self.core.handle_hangup(token, Some(e.kind())),
            }
        }
    }

    /// Sockets of connections the core closed: their transport's last word (a WebSocket close
    /// frame) and a last attempt to send what they were owed (a CONNACK refusal, an HTTP
    /// error), then either linger or drop.
    fn drop_closed(&mut self, now: Instant) {
        loop {
            let mut any = false;
            while let Some(closed) = self.core.poll_closed() {
                any = true;
                let token = closed.token();
                let Some(Some(socket)) = self.sockets.get_mut(token) else {
                    self.core.release(closed);
                    continue;
                };
                let drained = match self.core.output(token) {
                    Some(out) => {
                        socket.transport.close(out, closed.ws_close());
                        socket.closed = true;
                        socket.transport.write_to(out, &mut socket.stream).unwrap_or(false)
                    }
                    None => {
                        socket.closed = true;
                        true
                    }
                };
                if self.core.lingers(&closed) {
                    if drained {
                        socket.finish();
                    }
                    continue;
                }
                self.drop_socket(token);
                self.core.release(closed);
            }
            while let Some(finished) = self.core.poll_finished() {
                any = true;
                self.drop_socket(finished.token());
                self.core.release(finished);
            }
            if !any {
                return;
            }
            // Closing may have produced output for others (wills).
            self.flush_dirty(now);
        }
    }

    fn drop_socket(&mut self, token: usize) {
        if let Some(mut socket) = self.sockets.get_mut(token).and_then(Option::take) {
            socket.finish();
            if !socket.shut {
                let _ = socket.stream.shutdown(std::net::Shutdown::Write);
            }
            let _ = self.poll.registry().deregister(&mut socket.stream);
        }
    }
}

fn ip_version(addr: &SocketAddr) -> u8 {
    if addr.is_ipv4() {
        4
    } else {
        6
    }
}
