//! The only place that touches sockets and the clock: one `mio::Poll`, edge-triggered, one
//! thread. Each turn reads what is there, lets the broker core act on it, then flushes every
//! connection that got output once (vectored writes), and sleeps until the next event or the
//! core's next deadline.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use log::{error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::broker::{Core, ListenerKind};
use crate::config::{Config, Protocol};

/// Tokens at the top of the range are listeners and the waker; connections use slab keys.
const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 1024;

/// Bytes read per connection per turn before others get their turn (fairness under floods).
const READ_BUDGET: usize = 1024 * 1024;
/// The shared read buffer every socket is read into first.
const READ_CHUNK: usize = 64 * 1024;

struct Listener {
    socket: TcpListener,
    kind: ListenerKind,
    protocol: Protocol,
    addr: SocketAddr,
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
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

/// The loop's state while serving.
struct Serving<'a> {
    poll: &'a mut Poll,
    listeners: &'a [Listener],
    /// Sockets by connection token (the core's slab key).
    sockets: Vec<Option<TcpStream>>,
    core: Core,
    /// Connections that still had unread bytes when their read budget ran out (and whether
    /// their FIN was already reported).
    read_again: Vec<(usize, bool)>,
}

impl Broker {
    /// Bind every listener in `config`.
    pub fn new(config: Config) -> io::Result<Broker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listeners = Vec::new();
        let mut ws_count = 0;
        for (i, l) in config.listeners.iter().enumerate() {
            let mut socket = TcpListener::bind(l.addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", l.addr)))?;
            poll.registry().register(&mut socket, Token(LISTENER_BASE + i), Interest::READABLE)?;
            let kind = match l.protocol {
                Protocol::Mqtt => ListenerKind::Tcp,
                Protocol::WebSockets => {
                    ws_count += 1;
                    ListenerKind::WebSocket(ws_count - 1)
                }
            };
            let addr = socket.local_addr()?;
            match l.protocol {
                Protocol::Mqtt => info!("Opening ipv{} listen socket on {addr} (mqtt).", ip_version(&addr)),
                Protocol::WebSockets => {
                    info!("Opening websockets listen socket on {addr} (path {}).", l.ws.path)
                }
            }
            listeners.push(Listener { socket, kind, protocol: l.protocol, addr });
        }
        if !config.allow_anonymous {
            warn!("allow_anonymous is false and password files are not supported yet: every client will be refused.");
        }
        Ok(Broker { poll, listeners, config, stop: Arc::new(AtomicBool::new(false)), waker })
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
        let mut serving = Serving {
            poll: &mut self.poll,
            listeners: &self.listeners,
            sockets: Vec::new(),
            core: Core::new(&self.config),
            read_again: Vec::new(),
        };
        serving.run(&self.stop)
    }
}

impl Serving<'_> {
    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; READ_CHUNK];
        while !stop.load(Ordering::SeqCst) {
            let timeout = if self.read_again.is_empty() {
                self.core.poll_timeout().map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(std::time::Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            let again = std::mem::take(&mut self.read_again);
            for (token, hangup) in again {
                self.read_socket(token, &mut scratch, hangup, now);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE, now),
                    Token(t) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            let hangup = event.is_read_closed() || event.is_error();
                            self.read_socket(t, &mut scratch, hangup, now);
                        }
                        if event.is_writable() {
                            // The kernel took earlier output: continue writing this turn.
                            self.core.mark_dirty(t);
                        }
                    }
                }
            }
            self.core.handle_timeouts(now);
            self.flush_dirty();
            self.drop_closed();
        }
        self.core.shutdown();
        self.flush_dirty();
        self.drop_closed();
        info!("midge stopped.");
        Ok(())
    }

    fn accept(&mut self, index: usize, now: Instant) {
        let Some(listener) = self.listeners.get(index) else { return };
        loop {
            match listener.socket.accept() {
                Ok((mut socket, peer)) => {
                    // Latency first: output is already batched per turn, so Nagle only delays.
                    if let Err(e) = socket.set_nodelay(true) {
                        warn!("set_nodelay failed for {peer}: {e}");
                    }
                    let token = self.core.accept(listener.kind, peer, now);
                    if let Err(e) = self.poll.registry().register(
                        &mut socket,
                        Token(token),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!("cannot register connection from {peer}: {e}");
                        self.core.release(token);
                        continue;
                    }
                    if self.sockets.len() <= token {
                        self.sockets.resize_with(token + 1, || None);
                    }
                    if let Some(slot) = self.sockets.get_mut(token) {
                        *slot = Some(socket);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and try again on the next readiness event.
                    error!("accept failed on {}: {e}", listener.addr);
                    return;
                }
            }
        }
    }

    /// Read until the socket is drained or the budget is spent, handing each chunk to the core.
    /// `hangup`: the event also reported the peer's FIN or an error, so read on to the EOF (or
    /// error) even after a short read; no later event will announce it.
    fn read_socket(&mut self, token: usize, scratch: &mut [u8], hangup: bool, now: Instant) {
        let mut budget = READ_BUDGET;
        loop {
            let Some(Some(socket)) = self.sockets.get_mut(token) else { return };
            // A connection holding a partial packet reads straight behind it; others read into
            // the shared buffer and keep nothing when every packet in it is complete.
            let (result, room, into_held) = match self.core.held_input(token) {
                Some(held) => {
                    let spare = held.spare(READ_CHUNK);
                    let room = spare.len();
                    let result = socket.read(spare);
                    if let Ok(n) = result {
                        held.commit(n);
                    }
                    (result, room, true)
                }
                None => (socket.read(scratch), scratch.len(), false),
            };
            match result {
                Ok(0) => {
                    self.core.handle_hangup(token, None);
                    return;
                }
                Ok(n) => {
                    if into_held {
                        self.core.handle_buffered_input(token, now);
                    } else {
                        self.core.handle_input(token, scratch.get_mut(..n).unwrap_or(&mut []), now);
                    }
                    if n < room && !hangup {
                        // A short read drained the socket; epoll reports the next arrival as a
                        // new edge, so skip the read that would only say WouldBlock.
                        return;
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.read_again.push((token, hangup));
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.core.handle_hangup(token, Some(e.kind()));
                    return;
                }
            }
        }
    }

    /// Write each connection's batched output once per turn.
    fn flush_dirty(&mut self) {
        let dirty = self.core.take_dirty();
        for &token in &dirty {
            let Some(Some(socket)) = self.sockets.get_mut(token) else { continue };
            let Some(out) = self.core.output(token) else { continue };
            match out.write_to(socket) {
                // Done, or the kernel buffer is full and a WRITABLE edge will bring us back.
                Ok(_) => {}
                Err(e) => self.core.handle_hangup(token, Some(e.kind())),
            }
        }
        self.core.return_dirty(dirty);
    }

    /// Drop the sockets of connections the core closed, after a last attempt to send what they
    /// were owed (a CONNACK refusal, an HTTP error, a WebSocket close frame).
    fn drop_closed(&mut self) {
        loop {
            let closed = self.core.take_closed();
            if closed.is_empty() {
                return;
            }
            for token in closed {
                let Some(mut socket) = self.sockets.get_mut(token).and_then(Option::take) else {
                    self.core.release(token);
                    continue;
                };
                if let Some(out) = self.core.output(token) {
                    let _ = out.write_to(&mut socket);
                }
                let _ = socket.shutdown(std::net::Shutdown::Write);
                let _ = self.poll.registry().deregister(&mut socket);
                self.core.release(token);
            }
            // Closing may have produced output for others (wills).
            self.flush_dirty();
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
