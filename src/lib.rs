//! midge: a small, fast, single-threaded MQTT broker whose first-class transport is MQTT over
//! WebSocket. One `mio` poll loop serves TCP and WebSocket clients with one router and one set of
//! sessions.
//!
//! Layers, each in one place: `mqtt` (packets, codec, topics), `ws` (HTTP upgrade, frames),
//! `connection` (per-socket state machine and buffers), `router` (topic trie, retained messages),
//! `session` (in-flight, QoS 2 state, offline queue), `broker` (MQTT semantics, sans-IO),
//! `event_loop` (sockets, timers, the clock), `config` (command line and mosquitto.conf),
//! `memory` (heap accounting for `memory_limit`), `tls` (TLS under MQTT and WebSocket, rustls),
//! `auth` (mosquitto's password and ACL files).

pub mod auth;
pub mod broker;
pub mod buffer;
pub mod config;
pub mod connection;
pub mod event_loop;
pub mod memory;
pub mod mqtt;
pub mod router;
pub mod session;
pub mod tls;
pub mod transport;
pub mod ws;

/// Every allocation is counted, for `memory_limit` (see `memory`).
#[global_allocator]
static ALLOCATOR: memory::CountingAlloc = memory::CountingAlloc;

pub use config::{Config, ListenerConfig, MemoryLimit, Protocol};
pub use event_loop::{Broker, BrokerHandle};
