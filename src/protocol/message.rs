//! The typed SignalR hub messages (part A.5 / A.7 of SIGNALR-WIRE.md), shared by the JSON and
//! MessagePack codecs. Pure data: no I/O, no knowledge of hubs or backplanes.
//!
//! Argument and result values are `rmpv::Value`: it is a superset of what JSON can carry (it keeps
//! MessagePack's binary, float32 and extension types), so a MessagePack client's values survive a
//! round trip through the hub untouched, and JSON values map onto it without loss (see `json.rs`).

/// A protocol-neutral argument / result value.
pub type Value = rmpv::Value;

/// Message headers in the order they were read (order matters for byte-exact JSON writing).
pub type Headers = Vec<(String, String)>;

/// The result of a `Completion` message.
#[derive(Debug, Clone, PartialEq)]
pub enum CompletionResult {
    /// The invocation returned nothing (JSON: neither `result` nor `error`; MessagePack: kind 2).
    Void,
    /// The invocation returned a value (possibly `Nil`).
    Value(Value),
    /// The invocation failed with this error text.
    Error(String),
}

/// One SignalR hub message. Field order follows the server writer order of part A.5.
#[derive(Debug, Clone, PartialEq)]
pub enum HubMessage {
    /// Type 1. `invocation_id == None` means non-blocking (no Completion expected).
    Invocation {
        headers: Headers,
        invocation_id: Option<String>,
        target: String,
        arguments: Vec<Value>,
        stream_ids: Option<Vec<String>>,
    },
    /// Type 2.
    StreamItem {
        headers: Headers,
        invocation_id: String,
        item: Value,
    },
    /// Type 3.
    Completion {
        headers: Headers,
        invocation_id: String,
        result: CompletionResult,
    },
    /// Type 4.
    StreamInvocation {
        headers: Headers,
        invocation_id: String,
        target: String,
        arguments: Vec<Value>,
        stream_ids: Option<Vec<String>>,
    },
    /// Type 5.
    CancelInvocation { headers: Headers, invocation_id: String },
    /// Type 6.
    Ping,
    /// Type 7. `error: Some("")` is kept distinct from `None` for JSON (MessagePack writes both as nil).
    Close {
        error: Option<String>,
        allow_reconnect: bool,
    },
    /// Type 8 (stateful reconnect).
    Ack { sequence_id: i64 },
    /// Type 9 (stateful reconnect).
    Sequence { sequence_id: i64 },
}

impl HubMessage {
    /// A non-blocking invocation without headers or stream ids: what a hub sends to clients.
    pub fn invocation(target: impl Into<String>, arguments: Vec<Value>) -> Self {
        HubMessage::Invocation {
            headers: Vec::new(),
            invocation_id: None,
            target: target.into(),
            arguments,
            stream_ids: None,
        }
    }

    /// A Completion with no headers.
    pub fn completion(invocation_id: impl Into<String>, result: CompletionResult) -> Self {
        HubMessage::Completion {
            headers: Vec::new(),
            invocation_id: invocation_id.into(),
            result,
        }
    }

    /// The SignalR message type number (1–9).
    pub fn type_id(&self) -> u8 {
        match self {
            HubMessage::Invocation { .. } => 1,
            HubMessage::StreamItem { .. } => 2,
            HubMessage::Completion { .. } => 3,
            HubMessage::StreamInvocation { .. } => 4,
            HubMessage::CancelInvocation { .. } => 5,
            HubMessage::Ping => 6,
            HubMessage::Close { .. } => 7,
            HubMessage::Ack { .. } => 8,
            HubMessage::Sequence { .. } => 9,
        }
    }
}
