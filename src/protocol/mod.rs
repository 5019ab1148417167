//! The ASP.NET Core SignalR client protocol (SIGNALR-WIRE.md part A), pure and without I/O:
//! negotiate documents, the handshake, incremental framing (RS for JSON, VarInt for MessagePack),
//! and the JSON and MessagePack hub protocols.
//!
//! Used by `hub` (the server side), `client` (a small Rust client for tests, the demo and the
//! dashboard's probes) and `monitor`. Uses no other module of this crate.

pub mod framing;
pub mod handshake;
pub mod json;
mod json_fast;
pub mod message;
pub mod msgpack;
pub mod negotiate;

pub use framing::{FrameError, FrameKind, Framer};
pub use message::{CompletionResult, Headers, HubMessage, Value};

/// The highest hub protocol version this implementation speaks (both built-in protocols report 2).
pub const MAX_PROTOCOL_VERSION: i32 = 2;

/// The record separator that ends every JSON message and the handshake.
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// A hub protocol a connection can choose in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Json,
    MessagePack,
}

impl Protocol {
    /// Every protocol this node supports, in the order serializations are written to the backplane.
    pub const ALL: [Protocol; 2] = [Protocol::Json, Protocol::MessagePack];

    /// The name used in the handshake and as the key of the backplane's serialization map.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::MessagePack => "messagepack",
        }
    }

    /// Looks a protocol up by its handshake name (exact, as ASP.NET Core does).
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name {
            "json" => Some(Protocol::Json),
            "messagepack" => Some(Protocol::MessagePack),
            _ => None,
        }
    }

    /// MessagePack is sent in Binary WebSocket frames, JSON in Text frames.
    pub fn is_binary(self) -> bool {
        matches!(self, Protocol::MessagePack)
    }

    /// How this protocol's messages are delimited in the byte stream.
    pub fn frame_kind(self) -> FrameKind {
        match self {
            Protocol::Json => FrameKind::Text,
            Protocol::MessagePack => FrameKind::Binary,
        }
    }

    /// Serializes one message, framed exactly as it goes on the wire (JSON + RS, or VarInt + body).
    pub fn encode(self, message: &HubMessage) -> Vec<u8> {
        match self {
            Protocol::Json => json::encode(message),
            Protocol::MessagePack => msgpack::encode(message),
        }
    }

    /// Parses one unframed message body (what `Framer::next_frame` returned).
    /// `Ok(None)` is a message of an unknown type, which SignalR ignores.
    pub fn decode(self, body: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
        match self {
            Protocol::Json => json::decode(body),
            Protocol::MessagePack => msgpack::decode(body),
        }
    }
}

/// Appends `n` in decimal, as `to_string` writes it but without the formatting machinery or an
/// allocation: the JSON writer's integers and the RESP writer's lengths, once per message.
pub fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A hub message that could not be parsed. The text is what ASP.NET Core's parsers say; it ends the
/// connection (a Close with "Connection closed with an error.").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    pub fn new(text: impl Into<String>) -> Self {
        ProtocolError(text.into())
    }
}
