//! Incremental framing of the SignalR byte stream (SIGNALR-WIRE.md A.3, A.5, A.7).
//!
//! WebSocket messages are not hub-message boundaries: the receiver pushes every payload it gets
//! into a [`Framer`] and pulls complete message bodies out of it. Text framing (the handshake and
//! the JSON protocol) ends each message with 0x1E; binary framing (MessagePack) prefixes each body
//! with its length as a VarInt. "Not complete yet" is `Ok(None)`, never an error; the only errors
//! are a message over the size limit and a malformed length prefix, both of which end the
//! connection.
//!
//! Called by the hub's connection task and by the client. Pure: no I/O, no other crate module.

use bytes::{Buf, Bytes, BytesMut};

use super::RECORD_SEPARATOR;

/// The largest length a VarInt prefix may declare (the .NET parser refuses anything above).
pub const MAX_VARINT_LENGTH: u64 = 0x7FFF_FFFF;

/// At most this many bytes make up a VarInt length prefix (5 × 7 bits ≥ 31 bits).
pub const MAX_VARINT_BYTES: usize = 5;

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
    #[error(
        "The maximum message size of {max}B was exceeded. The message size can be configured in AddHubOptions."
    )]
    TooLarge { max: usize },
    /// A VarInt prefix longer than 5 bytes or declaring more than 2^31-1 bytes (the .NET text).
    #[error("Messages over 2GB in size are not supported.")]
    InvalidLength,
}

/// An incremental splitter of a byte stream into message bodies.
///
/// Bodies are returned without their framing (no RS, no length prefix) and without copying: each
/// is split off the internal buffer and frozen.
#[derive(Debug)]
pub struct Framer {
    kind: FrameKind,
    max_message_size: usize,
    buf: BytesMut,
    /// Text framing: how many leading bytes of `buf` are known to hold no RS, so a message that
    /// arrives in many small pieces is scanned once, not once per piece.
    scanned: usize,
}

impl Framer {
    /// A framer for `kind` that refuses message bodies longer than `max_message_size` bytes.
    pub fn new(kind: FrameKind, max_message_size: usize) -> Self {
        Framer {
            kind,
            max_message_size,
            buf: BytesMut::new(),
            scanned: 0,
        }
    }

    /// The framing currently applied.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// Switches the framing, keeping the buffered bytes: after the (always Text) handshake, the
    /// bytes that followed it belong to the negotiated protocol.
    pub fn set_kind(&mut self, kind: FrameKind) {
        self.kind = kind;
        self.scanned = 0;
    }

    /// Appends received bytes (any amount: part of a message, or several messages).
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// How many bytes are buffered and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message body, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the framer is unusable (it keeps returning the error): the caller closes
    /// the connection.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        match self.kind {
            FrameKind::Text => self.next_text(),
            FrameKind::Binary => self.next_binary(),
        }
    }

    fn next_text(&mut self) -> Result<Option<Bytes>, FrameError> {
        let start = self.scanned.min(self.buf.len());
        match self.buf[start..].iter().position(|&b| b == RECORD_SEPARATOR) {
            Some(offset) => {
                let end = start + offset;
                // Like ASP.NET Core, the limit covers the framed message (the RS included).
                if end >= self.max_message_size {
                    return Err(FrameError::TooLarge {
                        max: self.max_message_size,
                    });
                }
                let body = self.buf.split_to(end).freeze();
                self.buf.advance(1);
                self.scanned = 0;
                Ok(Some(body))
            }
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_message_size {
                    return Err(FrameError::TooLarge {
                        max: self.max_message_size,
                    });
                }
                Ok(None)
            }
        }
    }

    fn next_binary(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some((length, prefix)) = read_varint(&self.buf)? else {
            return Ok(None);
        };
        // The limit covers the framed message (the length prefix included), as in ASP.NET Core;
        // it is enforced as soon as the prefix is read, without waiting for the body.
        if length.saturating_add(prefix) > self.max_message_size {
            return Err(FrameError::TooLarge {
                max: self.max_message_size,
            });
        }
        if self.buf.len() - prefix < length {
            return Ok(None);
        }
        self.buf.advance(prefix);
        Ok(Some(self.buf.split_to(length).freeze()))
    }
}

/// Reads a VarInt length prefix from the start of `buf`: `Ok(Some((length, prefix_bytes)))`,
/// `Ok(None)` if the prefix is not complete yet, or `InvalidLength` for a prefix of more than 5
/// bytes or a length above 2^31-1 (the rules of .NET's `BinaryMessageParser`; non-minimal
/// encodings are accepted as it does).
pub fn read_varint(buf: &[u8]) -> Result<Option<(usize, usize)>, FrameError> {
    let mut length: u64 = 0;
    for (i, &byte) in buf.iter().take(MAX_VARINT_BYTES).enumerate() {
        length |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if length > MAX_VARINT_LENGTH {
                return Err(FrameError::InvalidLength);
            }
            let length = usize::try_from(length).map_err(|_| FrameError::InvalidLength)?;
            return Ok(Some((length, i + 1)));
        }
    }
    if buf.len() >= MAX_VARINT_BYTES {
        // Five bytes, all with the continuation bit set.
        Err(FrameError::InvalidLength)
    } else {
        Ok(None)
    }
}

/// Appends `len` as a VarInt (unsigned LEB128: 7 bits per byte, least significant group first,
/// high bit = more bytes follow). Lengths up to 2^31-1 take at most 5 bytes.
pub fn write_varint(len: usize, out: &mut Vec<u8>) {
    let (bytes, n) = varint(len);
    out.extend_from_slice(&bytes[..n]);
}

/// `len` as a VarInt: its bytes (the first `n` of the array; a `usize` takes at most 10).
pub fn varint(len: usize) -> ([u8; 10], usize) {
    let mut bytes = [0u8; 10];
    let mut rest = len;
    let mut n = 0;
    loop {
        // Truncation is the point: the low 7 bits of `rest`.
        let low = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            bytes[n] = low;
            return (bytes, n + 1);
        }
        bytes[n] = low | 0x80;
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(len, &mut out);
        out
    }

    fn drain(framer: &mut Framer) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while let Some(frame) = framer.next_frame().expect("no framing error") {
            frames.push(frame.to_vec());
        }
        frames
    }

    #[test]
    fn varint_encodings() {
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(4), [0x04]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(5248), [0x80, 0x29]);
        assert_eq!(varint(0x7FFF_FFFF), [0xff, 0xff, 0xff, 0xff, 0x07]);
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 2_097_152, 0x7FFF_FFFF] {
            let bytes = varint(len);
            assert_eq!(read_varint(&bytes), Ok(Some((len, bytes.len()))), "{len}");
        }
    }

    #[test]
    fn varint_incomplete_and_invalid() {
        assert_eq!(read_varint(&[]), Ok(None));
        assert_eq!(read_varint(&[0x80]), Ok(None));
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff]), Ok(None));
        // Five continuation bytes: a sixth would be needed.
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80]),
            Err(FrameError::InvalidLength)
        );
        // 2^31 does not fit.
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x08]),
            Err(FrameError::InvalidLength)
        );
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(FrameError::InvalidLength)
        );
        // Non-minimal encodings are accepted, like .NET does.
        assert_eq!(read_varint(&[0x80, 0x00]), Ok(Some((0, 2))));
    }

    #[test]
    fn text_byte_by_byte() {
        let stream = b"{\"type\":6}\x1e{\"type\":7}\x1e";
        let mut framer = Framer::new(FrameKind::Text, 1024);
        let mut frames = Vec::new();
        for &b in stream.iter() {
            framer.push(&[b]);
            frames.extend(drain(&mut framer));
        }
        assert_eq!(frames, [b"{\"type\":6}".to_vec(), b"{\"type\":7}".to_vec()]);
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn text_several_in_one_push_and_empty_message() {
        let mut framer = Framer::new(FrameKind::Text, 1024);
        framer.push(b"a\x1e\x1ebc\x1ede");
        assert_eq!(drain(&mut framer), [b"a".to_vec(), b"".to_vec(), b"bc".to_vec()]);
        assert_eq!(framer.buffered(), 2);
        framer.push(b"\x1e");
        assert_eq!(drain(&mut framer), [b"de".to_vec()]);
    }

    #[test]
    fn text_too_large_without_separator() {
        let mut framer = Framer::new(FrameKind::Text, 4);
        framer.push(b"abcd");
        assert_eq!(
            framer.next_frame(),
            Ok(None),
            "exactly max bytes may still end well"
        );
        framer.push(b"e");
        assert_eq!(framer.next_frame(), Err(FrameError::TooLarge { max: 4 }));
    }

    #[test]
    fn text_limit_covers_the_separator() {
        // As ASP.NET Core: the framed message (body + RS) must fit in the limit.
        let mut framer = Framer::new(FrameKind::Text, 4);
        framer.push(b"abc\x1e");
        assert_eq!(
            framer.next_frame().map(|f| f.map(|b| b.to_vec())),
            Ok(Some(b"abc".to_vec()))
        );
        framer.push(b"abcd\x1e");
        assert_eq!(framer.next_frame(), Err(FrameError::TooLarge { max: 4 }));
    }

    #[test]
    fn too_large_text_message_in_one_push() {
        let mut framer = Framer::new(FrameKind::Text, 3);
        framer.push(b"ab\x1eabcdef\x1e");
        assert_eq!(
            framer.next_frame().map(|f| f.map(|b| b.to_vec())),
            Ok(Some(b"ab".to_vec()))
        );
        assert_eq!(framer.next_frame(), Err(FrameError::TooLarge { max: 3 }));
    }

    #[test]
    fn binary_byte_by_byte() {
        let mut stream = Vec::new();
        for body in [&b""[..], b"Hello", &[7u8; 300][..]] {
            write_varint(body.len(), &mut stream);
            stream.extend_from_slice(body);
        }
        let mut framer = Framer::new(FrameKind::Binary, 1024);
        let mut frames = Vec::new();
        for &b in &stream {
            framer.push(&[b]);
            frames.extend(drain(&mut framer));
        }
        assert_eq!(frames, [b"".to_vec(), b"Hello".to_vec(), vec![7u8; 300]]);
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn binary_several_in_one_push() {
        let mut framer = Framer::new(FrameKind::Binary, 1024);
        framer.push(&[0x00, 0x02, 0x91, 0x06, 0x03, 0x92, 0x08]);
        assert_eq!(drain(&mut framer), [b"".to_vec(), vec![0x91, 0x06]]);
        assert_eq!(framer.buffered(), 3);
        framer.push(&[0x2a]);
        assert_eq!(drain(&mut framer), [vec![0x92, 0x08, 0x2a]]);
    }

    #[test]
    fn binary_declared_length_over_max_fails_before_the_body() {
        let mut framer = Framer::new(FrameKind::Binary, 100);
        framer.push(&[0x65]); // 101
        assert_eq!(framer.next_frame(), Err(FrameError::TooLarge { max: 100 }));

        let mut framer = Framer::new(FrameKind::Binary, 32 * 1024);
        framer.push(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        assert_eq!(framer.next_frame(), Err(FrameError::TooLarge { max: 32 * 1024 }));

        let mut framer = Framer::new(FrameKind::Binary, 100);
        framer.push(&[0x64]); // a 100-byte body + 1 prefix byte: over the limit, as in ASP.NET Core
        assert_eq!(framer.next_frame(), Err(FrameError::TooLarge { max: 100 }));

        let mut framer = Framer::new(FrameKind::Binary, 100);
        framer.push(&[0x63]); // 99 + 1 = exactly 100: wait for the body
        assert_eq!(framer.next_frame(), Ok(None));
    }

    #[test]
    fn binary_invalid_prefix() {
        let mut framer = Framer::new(FrameKind::Binary, usize::MAX);
        framer.push(&[0x80, 0x80, 0x80, 0x80]);
        assert_eq!(framer.next_frame(), Ok(None));
        framer.push(&[0x80, 0x01]);
        assert_eq!(framer.next_frame(), Err(FrameError::InvalidLength));
    }

    #[test]
    fn set_kind_keeps_the_rest_of_the_stream() {
        let mut framer = Framer::new(FrameKind::Text, 1024);
        framer.push(b"{\"protocol\":\"messagepack\",\"version\":1}\x1e\x02\x91");
        assert_eq!(
            framer.next_frame().map(|f| f.map(|b| b.to_vec())),
            Ok(Some(b"{\"protocol\":\"messagepack\",\"version\":1}".to_vec()))
        );
        assert_eq!(framer.next_frame(), Ok(None));
        framer.set_kind(FrameKind::Binary);
        assert_eq!(framer.kind(), FrameKind::Binary);
        framer.push(&[0x06]);
        assert_eq!(drain(&mut framer), [vec![0x91, 0x06]]);
    }

    #[test]
    fn frames_share_the_buffer() {
        // Two messages read in one chunk come out as views of the same allocation, one after
        // the other (the first, its separator, the second): no copy per frame.
        let mut framer = Framer::new(FrameKind::Text, 1024);
        framer.push(b"abc\x1edefg\x1e");
        let first = framer.next_frame().expect("ok").expect("frame");
        let second = framer.next_frame().expect("ok").expect("frame");
        assert_eq!((&first[..], &second[..]), (&b"abc"[..], &b"defg"[..]));
        assert_eq!(second.as_ptr(), first.as_ptr().wrapping_add(4));
        // Binary (varint-prefixed) framing alike: the body is a view of the pushed bytes.
        let mut framer = Framer::new(FrameKind::Binary, 1024);
        framer.push(b"\x02hi\x03abc");
        let first = framer.next_frame().expect("ok").expect("frame");
        let second = framer.next_frame().expect("ok").expect("frame");
        assert_eq!((&first[..], &second[..]), (&b"hi"[..], &b"abc"[..]));
        assert_eq!(second.as_ptr(), first.as_ptr().wrapping_add(3));
    }
}
