//! Incremental framing. TODO(helper): implement.

use bytes::Bytes;

/// How messages are delimited in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// JSON text terminated by 0x1E (also used for the handshake of every protocol).
    Text,
    /// VarInt length prefix + body (MessagePack).
    Binary,
}

/// A framing error; ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Text of ASP.NET Core: "The maximum message size of 32768B was exceeded. The message size can be configured in AddHubOptions."
    #[error("The maximum message size of {max}B was exceeded. The message size can be configured in AddHubOptions.")]
    TooLarge { max: usize },
    #[error("Messages over 2GB in size are not supported.")]
    InvalidLength,
}

/// An incremental splitter of a byte stream into message bodies.
pub struct Framer {}

impl Framer {
    pub fn new(kind: FrameKind, max_message_size: usize) -> Self {
        let _ = (kind, max_message_size);
        todo!()
    }
    pub fn set_kind(&mut self, kind: FrameKind) {
        let _ = kind;
        todo!()
    }
    pub fn push(&mut self, data: &[u8]) {
        let _ = data;
        todo!()
    }
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        todo!()
    }
}
