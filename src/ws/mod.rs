//! MQTT over WebSocket (MQTT 3.1.1/5.0 chapter 6, RFC 6455): the HTTP upgrade and the frame layer,
//! both sans-IO. The connection feeds them bytes; they return bytes to send and MQTT stream bytes.

pub mod frame;
pub mod handshake;
pub mod utf8;

pub use frame::{FrameDecoder, MessageKind, WsControl, WsError, WsEvent};
pub use handshake::{HandshakeConfig, HandshakeError, HandshakeOutcome};
