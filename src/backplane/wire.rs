//! The ASP.NET Core Redis backplane payload codec (SIGNALR-WIRE.md B.6): invocations, group
//! commands, acks and client-result completions, byte-compatible with
//! `Microsoft.AspNetCore.SignalR.StackExchangeRedis`.
//!
//! Called by the hub node on every publish and every received message (the hot path), and by the
//! dashboard's decoder through [`decode_for_channel`]. Pure: no I/O, and no dependency on
//! `protocol` (the serializations are opaque framed bytes here).
//!
//! Writers emit the smallest MessagePack width for every value, as MessagePack-CSharp does
//! (B.6.1). Readers accept every valid width, accept `str` where `bin` is expected, ignore extra
//! trailing array elements (they are skipped, so they must still be well-formed MessagePack) and
//! ignore bytes after the top-level array. Every read is bounds-checked and every declared count is
//! checked against the bytes left before anything is allocated, so no input makes them panic.

use rmp::encode::{ByteBuf, ValueWriteError};
use std::ops::Range;

use bytes::Bytes;

use crate::backplane::naming::ChannelKind;

/// How deeply [`Reader::skip_value`] may nest. The formats here nest two levels at most; 32 leaves
/// room for unknown trailing elements while keeping the recursion shallow.
const MAX_SKIP_DEPTH: usize = 32;

/// Why a backplane payload could not be decoded. Offsets are byte offsets into the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("payload truncated at offset {offset} reading {field}: needs {needed} byte(s), {available} left")]
    Truncated {
        offset: usize,
        field: &'static str,
        needed: usize,
        available: usize,
    },
    #[error(
        "unexpected MessagePack type 0x{marker:02x} at offset {offset} for {field} (expected {expected})"
    )]
    UnexpectedType {
        offset: usize,
        marker: u8,
        field: &'static str,
        expected: &'static str,
    },
    #[error("{field} at offset {offset} declares {declared} element(s) but only {remaining} byte(s) remain")]
    LengthExceedsPayload {
        offset: usize,
        field: &'static str,
        declared: usize,
        remaining: usize,
    },
    #[error("{field} at offset {offset} has {found} element(s); at least {min} are required")]
    TooFewElements {
        offset: usize,
        field: &'static str,
        found: usize,
        min: usize,
    },
    #[error("integer {value} at offset {offset} for {field} does not fit in {target}")]
    IntOutOfRange {
        offset: usize,
        field: &'static str,
        value: i128,
        target: &'static str,
    },
    #[error("bad group action {value} at offset {offset} (expected 1 = add or 2 = remove)")]
    BadAction { offset: usize, value: i128 },
    #[error("{field} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize, field: &'static str },
    #[error("MessagePack value at offset {offset} nests deeper than {limit} levels")]
    TooDeep { offset: usize, limit: usize },
}

/// An invocation as published on `:all`, `:connection:`, `:group:` and `:user:` channels (B.6.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvocationPayload {
    /// Connection ids that must not receive the message (ordinal comparison).
    pub excluded: Vec<String>,
    /// Protocol name → that protocol's complete framed message, in wire order. Each `Bytes` is a
    /// slice of the decoded payload (no copy).
    pub serializations: Vec<(String, Bytes)>,
    /// Client-result invocation id (4-element form only).
    pub invocation_id: Option<String>,
    /// Logical return channel, without the channel prefix (4-element form only).
    pub return_channel: Option<String>,
}

impl InvocationPayload {
    /// The framed message for `protocol` (ordinal match), if the sender serialized it.
    pub fn serialization(&self, protocol: &str) -> Option<&Bytes> {
        self.serializations
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, bytes)| bytes)
    }
}

/// What a group command asks the owning server to do (B.6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAction {
    Add = 1,
    Remove = 2,
}

impl GroupAction {
    /// The byte written on the wire.
    pub fn as_byte(self) -> u8 {
        self as u8
    }

    /// The action for a wire value; `None` for anything but 1 and 2.
    pub fn from_wire(value: i128) -> Option<Self> {
        match value {
            1 => Some(GroupAction::Add),
            2 => Some(GroupAction::Remove),
            _ => None,
        }
    }
}

/// A group add/remove for a connection on another server, published on `H:internal:groups` (B.6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCommand {
    /// Per-server command id; the ack carries it back. May be negative after wrapping (B.3).
    pub id: i32,
    /// The requesting server, to which the ack goes.
    pub server_name: String,
    pub action: GroupAction,
    pub group: String,
    pub connection_id: String,
}

/// A client-result answer published on `H:internal:return:{server}` (B.6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionPayload {
    /// The protocol of the answering connection ("json", "messagepack", ...).
    pub protocol: String,
    /// That protocol's framed Completion message, a slice of the decoded payload (no copy).
    pub message: Bytes,
}

/// Any backplane payload, decoded according to the channel it arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodedPayload {
    Invocation(InvocationPayload),
    GroupCommand(GroupCommand),
    Ack(i32),
    Completion(CompletionPayload),
}

/// Decodes `payload` with the decoder that the channel kind calls for (B.2): invocations on
/// all/connection/group/user channels, group commands, acks and completions on the internal ones.
pub fn decode_for_channel(kind: &ChannelKind, payload: &Bytes) -> Result<DecodedPayload, WireError> {
    Ok(match kind {
        ChannelKind::All | ChannelKind::Connection(_) | ChannelKind::Group(_) | ChannelKind::User(_) => {
            DecodedPayload::Invocation(decode_invocation(payload)?)
        }
        ChannelKind::InternalGroups => DecodedPayload::GroupCommand(decode_group_command(payload)?),
        ChannelKind::Ack(_) => DecodedPayload::Ack(decode_ack(payload)?),
        ChannelKind::Return(_) => DecodedPayload::Completion(decode_completion(payload)?),
    })
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Encodes an invocation: `[excluded, {protocol: bin}]`, or with `client_result =
/// Some((invocation_id, logical_return_channel))` the 4-element form (B.6.2).
///
/// # Panics
/// If a string or serialization is 4 GiB or longer, which MessagePack cannot represent (the hub's
/// maximum message size keeps them far smaller).
pub fn encode_invocation(
    excluded: &[&str],
    serializations: &[(&str, &[u8])],
    client_result: Option<(&str, &str)>,
) -> Bytes {
    let mut size = 1 + array_header_len(excluded.len()) + map_header_len(serializations.len());
    size += excluded.iter().map(|id| str_len(id)).sum::<usize>();
    size += serializations
        .iter()
        .map(|(name, bytes)| str_len(name) + bin_len(bytes))
        .sum::<usize>();
    if let Some((id, channel)) = client_result {
        size += str_len(id) + str_len(channel);
    }

    let mut out = Vec::with_capacity(size);
    put_array_header(&mut out, if client_result.is_some() { 4 } else { 2 });
    put_array_header(&mut out, excluded.len());
    for id in excluded {
        put_str(&mut out, id);
    }
    put_map_header(&mut out, serializations.len());
    for (name, bytes) in serializations {
        put_str(&mut out, name);
        put_bin(&mut out, bytes);
    }
    if let Some((id, channel)) = client_result {
        put_str(&mut out, id);
        put_str(&mut out, channel);
    }
    debug_assert_eq!(out.len(), size);
    Bytes::from(out)
}

/// Encodes a group command: `[id, serverName, action, groupName, connectionId]` (B.6.3).
///
/// # Panics
/// If a string is 4 GiB or longer.
pub fn encode_group_command(command: &GroupCommand) -> Bytes {
    let size = 1
        + int_len(command.id.into())
        + str_len(&command.server_name)
        + 1
        + str_len(&command.group)
        + str_len(&command.connection_id);
    let mut out = Vec::with_capacity(size);
    put_array_header(&mut out, 5);
    put_int(&mut out, command.id.into());
    put_str(&mut out, &command.server_name);
    put_int(&mut out, command.action.as_byte().into());
    put_str(&mut out, &command.group);
    put_str(&mut out, &command.connection_id);
    Bytes::from(out)
}

/// Encodes an ack: `[id]` (B.6.4).
pub fn encode_ack(id: i32) -> Bytes {
    let mut out = Vec::with_capacity(1 + int_len(id.into()));
    put_array_header(&mut out, 1);
    put_int(&mut out, id.into());
    Bytes::from(out)
}

/// Encodes a client-result completion: `[protocol, bin(framed completion)]` (B.6.5).
///
/// # Panics
/// If the protocol name or message is 4 GiB or longer.
pub fn encode_completion(protocol: &str, framed_message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(1 + str_len(protocol) + bin_len(framed_message));
    put_array_header(&mut out, 2);
    put_str(&mut out, protocol);
    put_bin(&mut out, framed_message);
    Bytes::from(out)
}

fn len_u32(len: usize) -> u32 {
    match u32::try_from(len) {
        Ok(len) => len,
        Err(_) => panic!("a MessagePack length of {len} exceeds the format's 4 GiB limit"),
    }
}

fn array_header_len(count: usize) -> usize {
    match count {
        0..=15 => 1,
        16..=0xffff => 3,
        _ => 5,
    }
}

fn map_header_len(count: usize) -> usize {
    array_header_len(count)
}

fn str_len(s: &str) -> usize {
    let header = match s.len() {
        0..=31 => 1,
        32..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    };
    header + s.len()
}

fn bin_len(bytes: &[u8]) -> usize {
    let header = match bytes.len() {
        0..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    };
    header + bytes.len()
}

fn int_len(value: i64) -> usize {
    match value {
        -32..=127 => 1,
        128..=0xff | -128..=-33 => 2,
        0x100..=0xffff | -32768..=-129 => 3,
        0x1_0000..=0xffff_ffff | -2_147_483_648..=-32769 => 5,
        _ => 9,
    }
}

// The writers are rmp's (`rmp::encode`), which pick the smallest width as the decoder and the
// upstream vectors expect; the `*_len` functions above size the buffer exactly beforehand.

/// Runs an `rmp::encode` writer on `out` through rmp's `ByteBuf` (a `Vec<u8>` moved in and out,
/// no copy), whose error type is `Infallible`: growing a `Vec` cannot fail.
fn put<T>(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut ByteBuf) -> Result<T, ValueWriteError<std::convert::Infallible>>,
) {
    let mut buf = ByteBuf::from_vec(std::mem::take(out));
    match write(&mut buf) {
        Ok(_) => {}
        Err(ValueWriteError::InvalidMarkerWrite(never) | ValueWriteError::InvalidDataWrite(never)) => {
            match never {}
        }
    }
    *out = buf.into_vec();
}

fn put_array_header(out: &mut Vec<u8>, count: usize) {
    put(out, |b| rmp::encode::write_array_len(b, len_u32(count)));
}

fn put_map_header(out: &mut Vec<u8>, count: usize) {
    put(out, |b| rmp::encode::write_map_len(b, len_u32(count)));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // rmp casts the length to u32: check it first (see the encoders' # Panics).
    len_u32(s.len());
    put(out, |b| rmp::encode::write_str(b, s));
}

fn put_bin(out: &mut Vec<u8>, bytes: &[u8]) {
    len_u32(bytes.len());
    put(out, |b| rmp::encode::write_bin(b, bytes));
}

fn put_int(out: &mut Vec<u8>, value: i64) {
    put(out, |b| rmp::encode::write_sint(b, value));
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes an invocation (B.6.2). The serializations are zero-copy slices of `payload`.
pub fn decode_invocation(payload: &Bytes) -> Result<InvocationPayload, WireError> {
    let mut serializations = Vec::with_capacity(2);
    let head = decode_invocation_with(payload, |name, range| {
        serializations.push((name.to_owned(), payload.slice(range)));
    })?;
    Ok(InvocationPayload {
        excluded: head.excluded.into_iter().map(str::to_owned).collect(),
        serializations,
        invocation_id: head.invocation_id.map(str::to_owned),
        return_channel: head.return_channel.map(str::to_owned),
    })
}

/// An invocation's fields other than its serializations, borrowed from the payload.
#[derive(Debug, Default)]
pub struct InvocationHead<'a> {
    /// Connection ids that must not receive the message (empty: no allocation).
    pub excluded: Vec<&'a str>,
    /// Client-result invocation id (4-element form only).
    pub invocation_id: Option<&'a str>,
    /// Logical return channel, without the channel prefix (4-element form only).
    pub return_channel: Option<&'a str>,
}

/// Decodes an invocation (B.6.2) without copying: each serialization is handed to `each` as its
/// protocol name and its byte range in `payload`, in wire order; the rest is returned borrowed.
/// The hub's receive path, which needs no owned copy of anything.
pub fn decode_invocation_with<'a>(
    payload: &'a [u8],
    mut each: impl FnMut(&'a str, Range<usize>),
) -> Result<InvocationHead<'a>, WireError> {
    let mut r = Reader::new(payload);
    let (start, len) = (r.pos, r.read_array_len("invocation array")?);
    r.require(start, len, 2, "invocation array")?;

    let mut head = InvocationHead::default();
    if !r.try_nil() {
        let count = r.read_array_len("excluded ids")?;
        // Bounded by the payload: each id takes at least one byte.
        head.excluded.reserve(count.min(payload.len()));
        for _ in 0..count {
            head.excluded.push(r.read_str("excluded id")?);
        }
    }

    let count = r.read_map_len("serialization map")?;
    for _ in 0..count {
        let name = r.read_str("protocol name")?;
        let range = r.read_bin("serialization")?;
        each(name, range);
    }

    if len > 3 {
        head.invocation_id = r.read_nullable_str("invocation id")?;
        head.return_channel = r.read_nullable_str("return channel")?;
        r.skip_values(len - 4)?;
    } else {
        r.skip_values(len - 2)?;
    }
    Ok(head)
}

/// Decodes a group command (B.6.3). The action must be 1 (add) or 2 (remove).
pub fn decode_group_command(payload: &[u8]) -> Result<GroupCommand, WireError> {
    let mut r = Reader::new(payload);
    let (start, len) = (r.pos, r.read_array_len("group command array")?);
    r.require(start, len, 5, "group command array")?;
    let id = r.read_i32("group command id")?;
    let server_name = r.read_str("server name")?.to_owned();
    let action_at = r.pos;
    let action_value = r.read_int("group action")?;
    let action = GroupAction::from_wire(action_value).ok_or(WireError::BadAction {
        offset: action_at,
        value: action_value,
    })?;
    let group = r.read_str("group name")?.to_owned();
    let connection_id = r.read_str("connection id")?.to_owned();
    r.skip_values(len - 5)?;
    Ok(GroupCommand {
        id,
        server_name,
        action,
        group,
        connection_id,
    })
}

/// Decodes an ack and returns the acknowledged group-command id (B.6.4).
pub fn decode_ack(payload: &[u8]) -> Result<i32, WireError> {
    let mut r = Reader::new(payload);
    let (start, len) = (r.pos, r.read_array_len("ack array")?);
    r.require(start, len, 1, "ack array")?;
    let id = r.read_i32("ack id")?;
    r.skip_values(len - 1)?;
    Ok(id)
}

/// Decodes a client-result completion (B.6.5). The message is a zero-copy slice of `payload`.
pub fn decode_completion(payload: &Bytes) -> Result<CompletionPayload, WireError> {
    let mut r = Reader::new(payload);
    let (start, len) = (r.pos, r.read_array_len("completion array")?);
    r.require(start, len, 2, "completion array")?;
    let protocol = r.read_str("completion protocol")?.to_owned();
    let range = r.read_bin("completion message")?;
    r.skip_values(len - 2)?;
    Ok(CompletionPayload {
        protocol,
        message: payload.slice(range),
    })
}

/// A bounds-checked MessagePack cursor over one payload. Every method either consumes a whole
/// value and returns it or returns an error naming the offset; it never panics.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        Ok(super::cursor::take(self.buf, &mut self.pos, n, field)?)
    }

    fn take_range(&mut self, n: usize, field: &'static str) -> Result<Range<usize>, WireError> {
        let start = self.pos;
        self.take(n, field)?;
        Ok(start..self.pos)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    fn be<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn len8(&mut self, field: &'static str) -> Result<usize, WireError> {
        Ok(self.u8(field)?.into())
    }

    fn len16(&mut self, field: &'static str) -> Result<usize, WireError> {
        Ok(u16::from_be_bytes(self.be(field)?).into())
    }

    fn len32(&mut self, field: &'static str) -> Result<usize, WireError> {
        // usize is at least 32 bits on every target this crate builds for.
        Ok(u32::from_be_bytes(self.be(field)?) as usize)
    }

    fn unexpected(&self, offset: usize, field: &'static str, expected: &'static str) -> WireError {
        WireError::UnexpectedType {
            offset,
            marker: self.buf.get(offset).copied().unwrap_or(0),
            field,
            expected,
        }
    }

    /// Fails unless an array of `len` elements read at `start` has at least `min`.
    fn require(&self, start: usize, len: usize, min: usize, field: &'static str) -> Result<(), WireError> {
        if len < min {
            return Err(WireError::TooFewElements {
                offset: start,
                field,
                found: len,
                min,
            });
        }
        Ok(())
    }

    /// Consumes a nil if one is next.
    fn try_nil(&mut self) -> bool {
        if self.buf.get(self.pos) == Some(&0xc0) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Reads a collection header; `min_bytes` is the smallest encoding of one element, so a count
    /// the remaining bytes cannot hold is rejected before anyone allocates for it.
    fn read_len(
        &mut self,
        field: &'static str,
        fix: u8,
        m16: u8,
        m32: u8,
        expected: &'static str,
        min_bytes: usize,
    ) -> Result<usize, WireError> {
        let start = self.pos;
        let marker = self.u8(field)?;
        let count = if marker & 0xf0 == fix {
            (marker & 0x0f).into()
        } else if marker == m16 {
            self.len16(field)?
        } else if marker == m32 {
            self.len32(field)?
        } else {
            return Err(self.unexpected(start, field, expected));
        };
        let remaining = self.remaining();
        if count.saturating_mul(min_bytes) > remaining {
            return Err(WireError::LengthExceedsPayload {
                offset: start,
                field,
                declared: count,
                remaining,
            });
        }
        Ok(count)
    }

    fn read_array_len(&mut self, field: &'static str) -> Result<usize, WireError> {
        self.read_len(field, 0x90, 0xdc, 0xdd, "array", 1)
    }

    fn read_map_len(&mut self, field: &'static str) -> Result<usize, WireError> {
        self.read_len(field, 0x80, 0xde, 0xdf, "map", 2)
    }

    /// The byte range of a `str` or `bin` body (B.6.1 readers accept both for binary data);
    /// `None` for nil when `allow_nil`.
    fn read_raw(
        &mut self,
        field: &'static str,
        allow_bin: bool,
        allow_nil: bool,
        expected: &'static str,
    ) -> Result<Option<Range<usize>>, WireError> {
        let start = self.pos;
        let len = match self.u8(field)? {
            m @ 0xa0..=0xbf => (m & 0x1f).into(),
            0xd9 => self.len8(field)?,
            0xda => self.len16(field)?,
            0xdb => self.len32(field)?,
            0xc4 if allow_bin => self.len8(field)?,
            0xc5 if allow_bin => self.len16(field)?,
            0xc6 if allow_bin => self.len32(field)?,
            0xc0 if allow_nil => return Ok(None),
            _ => return Err(self.unexpected(start, field, expected)),
        };
        self.take_range(len, field).map(Some)
    }

    fn utf8(&self, range: Range<usize>, field: &'static str) -> Result<&'a str, WireError> {
        let offset = range.start;
        std::str::from_utf8(&self.buf[range]).map_err(|_| WireError::InvalidUtf8 { offset, field })
    }

    fn read_str(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        match self.read_raw(field, false, false, "str")? {
            Some(range) => self.utf8(range, field),
            None => Err(self.unexpected(self.pos, field, "str")),
        }
    }

    fn read_nullable_str(&mut self, field: &'static str) -> Result<Option<&'a str>, WireError> {
        match self.read_raw(field, false, true, "str or nil")? {
            Some(range) => self.utf8(range, field).map(Some),
            None => Ok(None),
        }
    }

    /// A `bin` (or `str`) body as a range of the payload; nil reads as empty, as in .NET.
    fn read_bin(&mut self, field: &'static str) -> Result<Range<usize>, WireError> {
        let at = self.pos;
        Ok(self.read_raw(field, true, true, "bin or str")?.unwrap_or(at..at))
    }

    /// Any MessagePack integer, widened so every uint64 and int64 fits.
    fn read_int(&mut self, field: &'static str) -> Result<i128, WireError> {
        let start = self.pos;
        Ok(match self.u8(field)? {
            m @ 0x00..=0x7f => m.into(),
            m @ 0xe0..=0xff => (m as i8).into(),
            0xcc => self.u8(field)?.into(),
            0xcd => u16::from_be_bytes(self.be(field)?).into(),
            0xce => u32::from_be_bytes(self.be(field)?).into(),
            0xcf => u64::from_be_bytes(self.be(field)?).into(),
            0xd0 => i8::from_be_bytes(self.be(field)?).into(),
            0xd1 => i16::from_be_bytes(self.be(field)?).into(),
            0xd2 => i32::from_be_bytes(self.be(field)?).into(),
            0xd3 => i64::from_be_bytes(self.be(field)?).into(),
            _ => return Err(self.unexpected(start, field, "int")),
        })
    }

    fn read_i32(&mut self, field: &'static str) -> Result<i32, WireError> {
        let offset = self.pos;
        let value = self.read_int(field)?;
        i32::try_from(value).map_err(|_| WireError::IntOutOfRange {
            offset,
            field,
            value,
            target: "a 32-bit signed integer",
        })
    }

    /// Skips `count` whole values (ignored trailing array elements).
    fn skip_values(&mut self, count: usize) -> Result<(), WireError> {
        for _ in 0..count {
            self.skip_value(0)?;
        }
        Ok(())
    }

    /// Skips one value of any MessagePack type, nested at most [`MAX_SKIP_DEPTH`] levels.
    fn skip_value(&mut self, depth: usize) -> Result<(), WireError> {
        const FIELD: &str = "ignored trailing element";
        let start = self.pos;
        if depth >= MAX_SKIP_DEPTH {
            return Err(WireError::TooDeep {
                offset: start,
                limit: MAX_SKIP_DEPTH,
            });
        }
        let marker = self.u8(FIELD)?;
        let (skip, children) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(marker & 0x0f)),
            0x90..=0x9f => (0, usize::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (self.len8(FIELD)?, 0),
            0xc5 | 0xda => (self.len16(FIELD)?, 0),
            0xc6 | 0xdb => (self.len32(FIELD)?, 0),
            0xc7 => (self.len8(FIELD)?.saturating_add(1), 0),
            0xc8 => (self.len16(FIELD)?.saturating_add(1), 0),
            0xc9 => (self.len32(FIELD)?.saturating_add(1), 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc..=0xdf => {
                self.pos = start;
                let count = if marker < 0xde {
                    self.read_array_len(FIELD)?
                } else {
                    self.read_map_len(FIELD)?.saturating_mul(2)
                };
                (0, count)
            }
            _ => return Err(self.unexpected(start, FIELD, "a MessagePack value")),
        };
        self.take(skip, FIELD)?;
        for _ in 0..children {
            self.skip_value(depth + 1)?;
        }
        Ok(())
    }
}

impl From<super::cursor::Truncated> for WireError {
    fn from(t: super::cursor::Truncated) -> Self {
        WireError::Truncated {
            offset: t.offset,
            field: t.field,
            needed: t.needed,
            available: t.available,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const NO_EXCLUDED: &str = "92 90 82 a2 70 31 c4 01 2a a2 70 32 c4 01 2a";
    const GROUP_ADD: &str = "95 2a a1 53 01 a1 47 a1 43";
    const COMPLETION_MSGPACK: &str =
        "92 ab 6d 65 73 73 61 67 65 70 61 63 6b c4 09 95 03 80 a3 78 79 7a 03 2a";

    fn p1p2() -> Vec<(String, Bytes)> {
        vec![
            ("p1".to_string(), Bytes::from_static(&[0x2a])),
            ("p2".to_string(), Bytes::from_static(&[0x2a])),
        ]
    }

    fn group(id: i32) -> GroupCommand {
        GroupCommand {
            id,
            server_name: "S".into(),
            action: GroupAction::Add,
            group: "G".into(),
            connection_id: "C".into(),
        }
    }

    #[test]
    fn upstream_vectors_round_trip() {
        let bytes = Bytes::from(hex(NO_EXCLUDED));
        let inv = decode_invocation(&bytes).unwrap();
        assert_eq!(inv.excluded, Vec::<String>::new());
        assert_eq!(inv.serializations, p1p2());
        assert_eq!(inv.serialization("p2").map(|b| &b[..]), Some(&[0x2a][..]));
        assert_eq!(inv.serialization("P2"), None);
        let ser: &[(&str, &[u8])] = &[("p1", &[0x2a]), ("p2", &[0x2a])];
        assert_eq!(encode_invocation(&[], ser, None), bytes);
        assert_eq!(&encode_invocation(&["a"], ser, None)[..3], &[0x92, 0x91, 0xa1]);

        assert_eq!(decode_group_command(&hex(GROUP_ADD)).unwrap(), group(42));
        assert_eq!(encode_group_command(&group(42)), hex(GROUP_ADD));

        let bytes = Bytes::from(hex(COMPLETION_MSGPACK));
        let c = decode_completion(&bytes).unwrap();
        assert_eq!(c.protocol, "messagepack");
        assert_eq!(&c.message[..], &hex("95 03 80 a3 78 79 7a 03 2a")[..]);
        assert_eq!(encode_completion("messagepack", &c.message), bytes);
    }

    #[test]
    fn client_result_form_round_trips() {
        let ser: &[(&str, &[u8])] = &[("json", b"{}\x1e")];
        let bytes = encode_invocation(&["x", "y"], ser, Some(("abc", "H:internal:return:s")));
        assert_eq!(bytes[0], 0x94);
        let inv = decode_invocation(&bytes).unwrap();
        assert_eq!(inv.excluded, ["x", "y"]);
        assert_eq!(inv.invocation_id.as_deref(), Some("abc"));
        assert_eq!(inv.return_channel.as_deref(), Some("H:internal:return:s"));
    }

    #[test]
    fn serializations_are_slices_of_the_payload() {
        let bytes = Bytes::from(hex(NO_EXCLUDED));
        let inv = decode_invocation(&bytes).unwrap();
        let base = bytes.as_ptr() as usize;
        let ptr = inv.serializations[1].1.as_ptr() as usize;
        assert_eq!(ptr - base, 14);
        let bytes = Bytes::from(hex(COMPLETION_MSGPACK));
        let c = decode_completion(&bytes).unwrap();
        assert_eq!(c.message.as_ptr() as usize - bytes.as_ptr() as usize, 15);
    }

    #[test]
    fn integers_use_the_smallest_width_and_round_trip() {
        let cases: &[(i32, &str)] = &[
            (0, "00"),
            (127, "7f"),
            (128, "cc 80"),
            (180, "cc b4"),
            (255, "cc ff"),
            (256, "cd 01 00"),
            (384, "cd 01 80"),
            (65535, "cd ff ff"),
            (65536, "ce 00 01 00 00"),
            (70000, "ce 00 01 11 70"),
            (i32::MAX, "ce 7f ff ff ff"),
            (-1, "ff"),
            (-32, "e0"),
            (-33, "d0 df"),
            (-128, "d0 80"),
            (-129, "d1 ff 7f"),
            (-32768, "d1 80 00"),
            (-32769, "d2 ff ff 7f ff"),
            (i32::MIN, "d2 80 00 00 00"),
        ];
        for &(id, int) in cases {
            let expected = [vec![0x91], hex(int)].concat();
            assert_eq!(encode_ack(id), expected, "ack {id}");
            assert_eq!(decode_ack(&expected).unwrap(), id);
            let cmd = encode_group_command(&group(id));
            assert_eq!(decode_group_command(&cmd).unwrap(), group(id), "group {id}");
        }
    }

    #[test]
    fn integers_of_any_width_are_accepted() {
        let cases: &[(&str, i32)] = &[
            ("cc 05", 5),
            ("cd 00 05", 5),
            ("ce 00 00 00 05", 5),
            ("cf 00 00 00 00 00 00 00 05", 5),
            ("d0 05", 5),
            ("d0 fb", -5),
            ("d1 ff fb", -5),
            ("d2 ff ff ff fb", -5),
            ("d3 ff ff ff ff ff ff ff fb", -5),
            ("d3 ff ff ff ff 80 00 00 00", i32::MIN),
        ];
        for &(int, id) in cases {
            assert_eq!(decode_ack(&[vec![0x91], hex(int)].concat()).unwrap(), id, "{int}");
        }
        for int in [
            "ce 80 00 00 00",
            "cf ff ff ff ff ff ff ff ff",
            "d3 ff ff ff ff 7f ff ff ff",
        ] {
            let err = decode_ack(&[vec![0x91], hex(int)].concat()).unwrap_err();
            assert!(
                matches!(err, WireError::IntOutOfRange { offset: 1, .. }),
                "{int}: {err}"
            );
        }
        // The action may come in any width too.
        let wide_action = hex("95 2a a1 53 cd 00 02 a1 47 a1 43");
        assert_eq!(
            decode_group_command(&wide_action).unwrap().action,
            GroupAction::Remove
        );
    }

    #[test]
    fn every_collection_and_string_width_is_accepted() {
        // array16 / array32 top level, array16 excluded, map16, str8 key, bin16 and str32 values.
        let payload = hex("dc 00 02  dd 00 00 00 01 d9 01 61  de 00 02 \
             da 00 02 70 31 c5 00 01 2a  db 00 00 00 02 70 32 db 00 00 00 01 2b");
        let inv = decode_invocation(&Bytes::from(payload)).unwrap();
        assert_eq!(inv.excluded, ["a"]);
        assert_eq!(inv.serializations[0], ("p1".into(), Bytes::from_static(&[0x2a])));
        assert_eq!(inv.serializations[1], ("p2".into(), Bytes::from_static(&[0x2b])));

        // map32, bin32, fixstr used as bin, nil bin reads as empty.
        let payload = hex("92 90 df 00 00 00 03 a1 61 c6 00 00 00 01 01 a1 62 a1 02 a1 63 c0");
        let inv = decode_invocation(&Bytes::from(payload)).unwrap();
        let values: Vec<&[u8]> = inv.serializations.iter().map(|(_, b)| &b[..]).collect();
        assert_eq!(values, [&[1u8][..], &[2u8][..], &[][..]]);
        // bin8 used as a str is rejected.
        let err = decode_invocation(&Bytes::from(hex("92 91 c4 01 61 80"))).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::UnexpectedType {
                    offset: 2,
                    marker: 0xc4,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn encoder_switches_widths_at_the_boundaries() {
        for (len, header) in [(31, 1), (32, 2), (255, 2), (256, 3), (65535, 3), (65536, 5)] {
            let s = "x".repeat(len);
            let bytes = encode_completion(&s, &[]);
            assert_eq!(bytes.len(), 1 + header + len + 2, "str {len}");
            assert_eq!(decode_completion(&bytes).unwrap().protocol, s);
        }
        for (len, header) in [(0, 2), (255, 2), (256, 3), (65535, 3), (65536, 5)] {
            let body = vec![7u8; len];
            let bytes = encode_completion("", &body);
            assert_eq!(bytes.len(), 2 + header + len, "bin {len}");
            assert_eq!(decode_completion(&bytes).unwrap().message, body);
        }
        for (count, header) in [(15, 1), (16, 3), (65535, 3), (65536, 5)] {
            let ids = vec![""; count];
            let empty: &[u8] = &[];
            let ser = vec![("", empty); count];
            let bytes = encode_invocation(&ids, &ser, None);
            assert_eq!(bytes.len(), 1 + 2 * header + count + 3 * count, "count {count}");
            let inv = decode_invocation(&bytes).unwrap();
            assert_eq!((inv.excluded.len(), inv.serializations.len()), (count, count));
        }
    }

    #[test]
    fn nil_excluded_list_and_nil_ids_are_accepted() {
        let inv = decode_invocation(&Bytes::from(hex("94 c0 80 c0 c0"))).unwrap();
        assert_eq!(inv, InvocationPayload::default());
    }

    #[test]
    fn trailing_elements_are_skipped_whatever_their_type() {
        // A 3-element invocation: element [2] is ignored, not read as an invocation id.
        let inv = decode_invocation(&Bytes::from(hex("93 90 80 a1 78"))).unwrap();
        assert_eq!(inv.invocation_id, None);
        // A 5-element group command and a 2-element ack.
        let cmd = hex("96 2a a1 53 01 a1 47 a1 43 c3");
        assert_eq!(decode_group_command(&cmd).unwrap(), group(42));
        assert_eq!(decode_ack(&hex("92 2a 81 a1 6b 92 c2 c0")).unwrap(), 42);
        // Every MessagePack type, as trailing elements of an ack.
        let values = [
            "c0",
            "c2",
            "c3",
            "05",
            "e5",
            "cc 01",
            "cd 00 01",
            "ce 00 00 00 01",
            "cf 00 00 00 00 00 00 00 01",
            "d0 ff",
            "d1 ff ff",
            "d2 ff ff ff ff",
            "d3 ff ff ff ff ff ff ff ff",
            "ca 3f 80 00 00",
            "cb 3f f0 00 00 00 00 00 00",
            "a2 68 69",
            "d9 01 61",
            "da 00 01 61",
            "db 00 00 00 01 61",
            "c4 01 00",
            "c5 00 01 00",
            "c6 00 00 00 01 00",
            "d4 01 00",
            "d5 01 00 00",
            "d6 ff 00 00 00 00",
            "d7 ff 00 00 00 00 00 00 00 00",
            "d8 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
            "c7 02 01 00 00",
            "c8 00 01 01 00",
            "c9 00 00 00 01 01 00",
            "92 01 91 02",
            "dc 00 01 01",
            "dd 00 00 00 01 01",
            "82 01 02 a1 61 90",
            "de 00 01 01 02",
            "df 00 00 00 01 01 02",
        ];
        let mut payload = vec![0xdc, 0, values.len() as u8 + 1, 0x07];
        for value in values {
            payload.extend(hex(value));
        }
        assert_eq!(decode_ack(&payload).unwrap(), 7);
        // The never-used marker 0xc1 is not a value.
        let err = decode_ack(&hex("92 07 c1")).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::UnexpectedType {
                    offset: 2,
                    marker: 0xc1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn nesting_is_limited() {
        let mut payload = hex("92 07");
        payload.extend(std::iter::repeat_n(0x91, 100));
        payload.push(0x01);
        let err = decode_ack(&payload).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::TooDeep {
                    limit: MAX_SKIP_DEPTH,
                    ..
                }
            ),
            "{err}"
        );
        let mut payload = hex("92 07");
        payload.extend(std::iter::repeat_n(0x91, MAX_SKIP_DEPTH - 1));
        payload.push(0x01);
        assert_eq!(decode_ack(&payload).unwrap(), 7);
    }

    #[test]
    fn truncation_at_every_offset_is_an_error() {
        let ser: &[(&str, &[u8])] = &[("json", &[0x7b; 300]), ("messagepack", &[1, 2, 3])];
        let long = "s".repeat(300);
        let payloads = [
            hex(NO_EXCLUDED),
            hex(GROUP_ADD),
            hex(COMPLETION_MSGPACK),
            encode_invocation(&["a", "bc"], ser, Some(("id", long.as_str()))).to_vec(),
            encode_group_command(&GroupCommand {
                server_name: long.clone(),
                ..group(-70000)
            })
            .to_vec(),
            encode_ack(i32::MIN).to_vec(),
            hex("92 07 dc 00 02 cb 00 00 00 00 00 00 00 00 c7 01 01 00"),
        ];
        for payload in payloads {
            for cut in 0..payload.len() {
                let part = Bytes::copy_from_slice(&payload[..cut]);
                assert!(decode_invocation(&part).is_err(), "invocation cut at {cut}");
                assert!(decode_group_command(&part).is_err(), "group cut at {cut}");
                assert!(decode_ack(&part).is_err(), "ack cut at {cut}");
                assert!(decode_completion(&part).is_err(), "completion cut at {cut}");
            }
        }
        let err = decode_ack(&hex("91 cd 01")).unwrap_err();
        assert_eq!(
            err,
            WireError::Truncated {
                offset: 2,
                field: "ack id",
                needed: 2,
                available: 1
            }
        );
    }

    #[test]
    fn huge_declared_lengths_are_rejected_before_allocating() {
        let cases = [
            ("dd ff ff ff ff 90", "invocation array"),
            ("92 dd ff ff ff ff a1 61", "excluded ids"),
            ("92 90 df ff ff ff ff a1 61", "serialization map"),
            ("92 90 81 a1 61 c6 ff ff ff ff 00", "serialization"),
            ("92 90 81 db ff ff ff ff 00", "protocol name"),
        ];
        for (payload, field) in cases {
            let err = decode_invocation(&Bytes::from(hex(payload))).unwrap_err();
            let got = match err {
                WireError::LengthExceedsPayload { field, .. } | WireError::Truncated { field, .. } => field,
                other => panic!("{payload}: {other}"),
            };
            assert_eq!(got, field, "{payload}");
        }
        let err = decode_ack(&hex("92 07 dd ff ff ff ff")).unwrap_err();
        assert!(
            matches!(err, WireError::LengthExceedsPayload { offset: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn bad_shapes_are_reported_with_offsets() {
        let err = decode_group_command(&hex("95 2a a1 53 03 a1 47 a1 43")).unwrap_err();
        assert_eq!(err, WireError::BadAction { offset: 4, value: 3 });
        let err = decode_group_command(&hex("95 2a a1 53 00 a1 47 a1 43")).unwrap_err();
        assert_eq!(err, WireError::BadAction { offset: 4, value: 0 });
        let err = decode_group_command(&hex("94 2a a1 53 01 a1 47")).unwrap_err();
        assert!(
            matches!(err, WireError::TooFewElements { found: 4, min: 5, .. }),
            "{err}"
        );
        let err = decode_ack(&hex("91 a1 61")).unwrap_err();
        assert!(matches!(
            err,
            WireError::UnexpectedType {
                offset: 1,
                marker: 0xa1,
                field: "ack id",
                ..
            }
        ));
        let err = decode_ack(&hex("81 00 00")).unwrap_err();
        assert!(matches!(
            err,
            WireError::UnexpectedType {
                offset: 0,
                marker: 0x81,
                ..
            }
        ));
        let err = decode_invocation(&Bytes::from(hex("92 91 a1 ff 80"))).unwrap_err();
        assert_eq!(
            err,
            WireError::InvalidUtf8 {
                offset: 3,
                field: "excluded id"
            }
        );
        assert!(err.to_string().contains("offset 3"));
    }

    #[test]
    fn decode_for_channel_picks_the_decoder() {
        let inv = Bytes::from(hex(NO_EXCLUDED));
        for kind in [
            ChannelKind::All,
            ChannelKind::Connection("c".into()),
            ChannelKind::Group("g".into()),
            ChannelKind::User("u".into()),
        ] {
            assert!(matches!(
                decode_for_channel(&kind, &inv),
                Ok(DecodedPayload::Invocation(_))
            ));
        }
        let cmd = Bytes::from(hex(GROUP_ADD));
        assert_eq!(
            decode_for_channel(&ChannelKind::InternalGroups, &cmd),
            Ok(DecodedPayload::GroupCommand(group(42)))
        );
        assert_eq!(
            decode_for_channel(&ChannelKind::Ack("s".into()), &encode_ack(-3)),
            Ok(DecodedPayload::Ack(-3))
        );
        let done = Bytes::from(hex(COMPLETION_MSGPACK));
        assert!(matches!(
            decode_for_channel(&ChannelKind::Return("s".into()), &done),
            Ok(DecodedPayload::Completion(c)) if c.protocol == "messagepack"
        ));
        assert!(decode_for_channel(&ChannelKind::Ack("s".into()), &inv).is_err());
    }
}
