//! The ASP.NET SignalR 2 Redis scale-out payload codec (SIGNALR-WIRE.md part C), so the dashboard
//! can show SR2 traffic next to ASP.NET Core traffic, and a simulator can produce it.
//!
//! One Redis channel (the event key) carries every bus message of an SR2 application. Each PUBLISH
//! payload is a message id followed by a `RedisMessage` written with .NET `BinaryWriter` rules
//! (little-endian integers, 7-bit-length-prefixed UTF-8 strings, one-byte booleans). Two layouts
//! exist: 2.1.0 and later put the id in ASCII followed by a space ([`Sr2Format::V21`]); 2.0.x wrote
//! it as an Int64LE ([`Sr2Format::V20`]). [`decode`] detects the layout as C.5 describes;
//! [`decode_as`] takes it from configuration.
//!
//! Pure: no I/O, no dependency on other modules. Every read is bounds-checked and every declared
//! length or count is checked against the bytes left before anything is allocated, so no input
//! makes the decoder panic. Readers follow .NET: any non-zero byte is `true`, and bytes after the
//! declared `RedisMessage` length (or after the last field inside it) are ignored.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Deserialize;

/// The smallest encoding of one message: four empty strings, an Int32 value length, two bools.
const MIN_MESSAGE_LEN: usize = 10;

/// `DateTime` ticks (100 ns since 0001-01-01) at the Unix epoch.
pub const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;

/// The key of ack messages (C.4).
pub const ACK_KEY: &str = "__SIGNALR__SERVER__";

/// How the message id precedes the `RedisMessage` (C.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sr2Format {
    /// 2.1.0 and later: ASCII decimal id, a space, then the `RedisMessage`.
    V21,
    /// 2.0.x: Int64LE id, then the `RedisMessage`.
    V20,
}

/// One Redis PUBLISH payload: a `RedisMessage` and its id (C.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sr2Payload {
    /// Cluster-wide, gap-free id assigned by Redis `INCR`.
    pub id: u64,
    pub format: Sr2Format,
    pub messages: Vec<Sr2Message>,
    /// `ServerCreationTime.Ticks` of the sending server (100 ns since 0001-01-01, sender's clock).
    pub server_creation_ticks: i64,
}

impl Sr2Payload {
    /// The sender's creation time, if the ticks lie after the Unix epoch.
    pub fn server_creation_time(&self) -> Option<SystemTime> {
        let since_epoch = self.server_creation_ticks.checked_sub(UNIX_EPOCH_TICKS)?;
        let since_epoch = u64::try_from(since_epoch).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(since_epoch.checked_mul(100)?))
    }
}

/// One bus message (C.3, C.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sr2Message {
    /// The sender's connection id (a random GUID for hub-context sends).
    pub source: String,
    /// The signal the message is routed by; see [`Sr2Message::kind`].
    pub key: String,
    /// UTF-8 JSON for hub, connection and command messages; empty for acks.
    pub value: Bytes,
    /// The command's id for commands, the acknowledged command's id for acks, else empty.
    pub command_id: String,
    pub wait_for_ack: bool,
    pub is_ack: bool,
    /// Excluded signals joined with `|`, or empty.
    pub filter: String,
}

/// What a message is for, from its ack flag, command id and key prefix (C.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sr2Kind {
    /// An ack of the command `command_id`.
    Ack { command_id: String },
    /// A command (group add/remove, abort, ...) for a connection (key `c-{id}`).
    Command {
        command_id: String,
        connection: Option<String>,
    },
    /// `h-{hub}`: `Clients.All` of a hub.
    HubBroadcast { hub: String },
    /// `hc-{hub}.{connection}`: `Clients.Client`.
    HubConnection { hub: String, connection: String },
    /// `hu-{hub}.{user}`: `Clients.User`.
    HubUser { hub: String, user: String },
    /// `hg-{hub}.{group}`: `Clients.Group`.
    HubGroup { hub: String, group: String },
    /// `c-{id}`: a connection-level send.
    Connection { id: String },
    /// `pc-{name}`: a PersistentConnection broadcast (`name` is its type's full name).
    PersistentConnection { name: String },
    /// `pcg-{name}`: a PersistentConnection group, left unsplit since both the type name and the
    /// group name may contain dots.
    PersistentConnectionGroup { name: String },
    /// Any other key.
    Other,
}

/// A hub invocation carried in a message's Value: `{"H":hub,"M":method,"A":[args],"S":{state}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Sr2HubInvocation {
    #[serde(rename = "H")]
    pub hub: String,
    #[serde(rename = "M")]
    pub method: String,
    #[serde(rename = "A", default)]
    pub args: Vec<serde_json::Value>,
    /// Caller state, present only when the caller had some.
    #[serde(rename = "S", default)]
    pub state: Option<serde_json::Value>,
}

/// What a command asks for (SR2 `CommandType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sr2CommandType {
    Initializing,
    AddToGroup,
    RemoveFromGroup,
    Abort,
    /// A number this decoder does not know.
    Unknown(i64),
}

/// A command carried in a message's Value:
/// `{"WaitForAck":true,"Id":"<guid>","CommandType":1,"Value":"hg-{Hub}.{group}"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sr2Command {
    pub id: String,
    pub command_type: Sr2CommandType,
    /// For group commands, the qualified group signal (`hg-{Hub}.{group}`).
    pub value: Option<String>,
    pub wait_for_ack: bool,
}

impl Sr2Command {
    /// (hub, group) for a hub group command's `hg-{Hub}.{group}` value.
    pub fn hub_group(&self) -> Option<(&str, &str)> {
        self.value.as_deref()?.strip_prefix("hg-")?.split_once('.')
    }
}

/// Why an SR2 payload or Value could not be decoded. Offsets are byte offsets into the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Sr2Error {
    #[error("payload truncated at offset {offset} reading {field}: needs {needed} byte(s), {available} left")]
    Truncated {
        offset: usize,
        field: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("payload of {length} bytes fits neither the 2.1 layout ({v21}) nor the 2.0.x layout ({v20})")]
    UnrecognizedLayout { length: usize, v21: String, v20: String },
    #[error("bad 2.1 message id: {reason}")]
    BadId { reason: &'static str },
    #[error("negative {field} {value} at offset {offset}")]
    Negative {
        offset: usize,
        field: &'static str,
        value: i32,
    },
    #[error("message count {count} at offset {offset} cannot fit in the {remaining} byte(s) left")]
    CountExceedsPayload {
        offset: usize,
        count: usize,
        remaining: usize,
    },
    #[error("bad 7-bit encoded length of {field} at offset {offset} (over 5 bytes or above 2^31-1)")]
    BadStringLength { offset: usize, field: &'static str },
    #[error("{field} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize, field: &'static str },
    #[error("the Value of the message with key {key:?} is not {what}: {reason}")]
    BadValue {
        key: String,
        what: &'static str,
        reason: String,
    },
}

impl Sr2Message {
    /// Classifies the message (C.4): acks first, then commands, then by key prefix.
    pub fn kind(&self) -> Sr2Kind {
        if self.is_ack {
            return Sr2Kind::Ack {
                command_id: self.command_id.clone(),
            };
        }
        if !self.command_id.is_empty() {
            return Sr2Kind::Command {
                command_id: self.command_id.clone(),
                connection: self.key.strip_prefix("c-").map(str::to_owned),
            };
        }
        let key = self.key.as_str();
        // Hub names are class names (no dots); user and group names may contain dots.
        let qualified = |rest: &str| rest.split_once('.').map(|(a, b)| (a.to_owned(), b.to_owned()));
        let kind = if let Some(rest) = key.strip_prefix("hc-") {
            qualified(rest).map(|(hub, connection)| Sr2Kind::HubConnection { hub, connection })
        } else if let Some(rest) = key.strip_prefix("hu-") {
            qualified(rest).map(|(hub, user)| Sr2Kind::HubUser { hub, user })
        } else if let Some(rest) = key.strip_prefix("hg-") {
            qualified(rest).map(|(hub, group)| Sr2Kind::HubGroup { hub, group })
        } else if let Some(hub) = key.strip_prefix("h-") {
            Some(Sr2Kind::HubBroadcast { hub: hub.to_owned() })
        } else if let Some(id) = key.strip_prefix("c-") {
            Some(Sr2Kind::Connection { id: id.to_owned() })
        } else if let Some(name) = key.strip_prefix("pcg-") {
            Some(Sr2Kind::PersistentConnectionGroup {
                name: name.to_owned(),
            })
        } else {
            key.strip_prefix("pc-").map(|name| Sr2Kind::PersistentConnection {
                name: name.to_owned(),
            })
        };
        kind.unwrap_or(Sr2Kind::Other)
    }

    /// The excluded signals of the filter (`c-{id}`, group signals, ...).
    pub fn excluded_signals(&self) -> impl Iterator<Item = &str> {
        self.filter.split('|').filter(|s| !s.is_empty())
    }

    /// The Value parsed as JSON.
    pub fn value_json(&self) -> Result<serde_json::Value, Sr2Error> {
        serde_json::from_slice(&self.value).map_err(|e| self.bad_value("JSON", e))
    }

    /// The Value parsed as a hub invocation (for `h-`, `hc-`, `hu-` and `hg-` keys).
    pub fn hub_invocation(&self) -> Result<Sr2HubInvocation, Sr2Error> {
        serde_json::from_slice(&self.value).map_err(|e| self.bad_value("a hub invocation", e))
    }

    /// The Value parsed as a command (for messages with a command id that are not acks).
    /// `CommandType` may be a number (JSON.NET's default) or an enum name.
    pub fn command(&self) -> Result<Sr2Command, Sr2Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Raw {
            #[serde(default)]
            wait_for_ack: bool,
            id: String,
            command_type: serde_json::Value,
            #[serde(default)]
            value: Option<String>,
        }
        const WHAT: &str = "a command";
        let raw: Raw = serde_json::from_slice(&self.value).map_err(|e| self.bad_value(WHAT, e))?;
        let command_type = match &raw.command_type {
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(0) => Sr2CommandType::Initializing,
                Some(1) => Sr2CommandType::AddToGroup,
                Some(2) => Sr2CommandType::RemoveFromGroup,
                Some(3) => Sr2CommandType::Abort,
                Some(other) => Sr2CommandType::Unknown(other),
                None => {
                    return Err(self.bad_value(WHAT, format!("CommandType {n} is not an integer")));
                }
            },
            serde_json::Value::String(s) => match s.as_str() {
                "Initializing" => Sr2CommandType::Initializing,
                "AddToGroup" => Sr2CommandType::AddToGroup,
                "RemoveFromGroup" => Sr2CommandType::RemoveFromGroup,
                "Abort" => Sr2CommandType::Abort,
                _ => return Err(self.bad_value(WHAT, format!("unknown CommandType {s:?}"))),
            },
            other => {
                return Err(self.bad_value(WHAT, format!("CommandType {other} is not a number")));
            }
        };
        Ok(Sr2Command {
            id: raw.id,
            command_type,
            value: raw.value,
            wait_for_ack: raw.wait_for_ack,
        })
    }

    fn bad_value(&self, what: &'static str, reason: impl ToString) -> Sr2Error {
        Sr2Error::BadValue {
            key: self.key.clone(),
            what,
            reason: reason.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes a payload, detecting its layout (C.5): the 2.1 layout when an ASCII id and a space are
/// followed by an Int32LE equal to the number of bytes after it, else the 2.0.x layout when the
/// Int32LE after an Int64LE id passes the same check.
pub fn decode(payload: &[u8]) -> Result<Sr2Payload, Sr2Error> {
    let v21 = match v21_header(payload) {
        Ok((id, at)) => match check_length(payload, at) {
            Ok(()) => return decode_body(payload, Sr2Format::V21, id, at),
            Err(reason) => reason,
        },
        Err(reason) => reason.to_owned(),
    };
    let v20 = match v20_header(payload) {
        Some((id, at)) => match check_length(payload, at) {
            Ok(()) => return decode_body(payload, Sr2Format::V20, id, at),
            Err(reason) => reason,
        },
        None => "shorter than an Int64 id and an Int32 length".to_owned(),
    };
    Err(Sr2Error::UnrecognizedLayout {
        length: payload.len(),
        v21,
        v20,
    })
}

/// Decodes a payload in a known layout. Like .NET, accepts a declared length shorter than the rest
/// of the payload and ignores what follows it.
pub fn decode_as(payload: &[u8], format: Sr2Format) -> Result<Sr2Payload, Sr2Error> {
    let (id, at) = match format {
        Sr2Format::V21 => v21_header(payload).map_err(|reason| Sr2Error::BadId { reason })?,
        Sr2Format::V20 => v20_header(payload).ok_or(Sr2Error::Truncated {
            offset: 0,
            field: "message id",
            needed: 8,
            available: payload.len(),
        })?,
    };
    decode_body(payload, format, id, at)
}

/// The 2.1 id and the offset just after its space.
fn v21_header(payload: &[u8]) -> Result<(u64, usize), &'static str> {
    // u64::MAX has 20 digits, so the space is among the first 21 bytes.
    let space = payload
        .iter()
        .take(21)
        .position(|&b| b == b' ')
        .ok_or("no space after at most 20 leading bytes")?;
    if space == 0 {
        return Err("empty id before the space");
    }
    let mut id: u64 = 0;
    for &b in &payload[..space] {
        if !b.is_ascii_digit() {
            return Err("a non-digit before the space");
        }
        id = id
            .checked_mul(10)
            .and_then(|id| id.checked_add(u64::from(b - b'0')))
            .ok_or("the id does not fit in 64 bits")?;
    }
    Ok((id, space + 1))
}

/// The 2.0.x id and the offset after it.
fn v20_header(payload: &[u8]) -> Option<(u64, usize)> {
    let id: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some((u64::from_le_bytes(id), 8))
}

/// Checks that the Int32LE at `at` equals the number of bytes after it.
fn check_length(payload: &[u8], at: usize) -> Result<(), String> {
    let Some(len) = payload.get(at..at + 4) else {
        return Err(format!("no Int32 length at offset {at}"));
    };
    let len = i32::from_le_bytes([len[0], len[1], len[2], len[3]]);
    let after = payload.len() - at - 4;
    if usize::try_from(len) == Ok(after) {
        Ok(())
    } else {
        Err(format!(
            "length field {len} at offset {at} but {after} bytes follow"
        ))
    }
}

fn decode_body(payload: &[u8], format: Sr2Format, id: u64, at: usize) -> Result<Sr2Payload, Sr2Error> {
    let mut r = Reader {
        buf: payload,
        pos: at,
    };
    let len = r.length("RedisMessage length")?;
    let body = r.take(len, "ScaleoutMessage")?;
    // Read the ScaleoutMessage from exactly its declared bytes, keeping offsets absolute.
    let mut r = Reader {
        buf: &payload[..r.pos],
        pos: r.pos - body.len(),
    };
    let count_at = r.pos;
    let count = r.length("message count")?;
    let remaining = r.remaining();
    if count.saturating_mul(MIN_MESSAGE_LEN) > remaining {
        return Err(Sr2Error::CountExceedsPayload {
            offset: count_at,
            count,
            remaining,
        });
    }
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        messages.push(Sr2Message {
            source: r.string("Source")?,
            key: r.string("Key")?,
            value: {
                let len = r.length("Value length")?;
                Bytes::copy_from_slice(r.take(len, "Value")?)
            },
            command_id: r.string("CommandId")?,
            wait_for_ack: r.bool("WaitForAck")?,
            is_ack: r.bool("IsAck")?,
            filter: r.string("Filter")?,
        });
    }
    let server_creation_ticks = i64::from_le_bytes(r.array("ServerCreationTime ticks")?);
    Ok(Sr2Payload {
        id,
        format,
        messages,
        server_creation_ticks,
    })
}

/// A bounds-checked little-endian cursor; it never panics.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Sr2Error> {
        Ok(super::cursor::take(self.buf, &mut self.pos, n, field)?)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Sr2Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// A non-negative Int32LE length or count.
    fn length(&mut self, field: &'static str) -> Result<usize, Sr2Error> {
        let offset = self.pos;
        let value = i32::from_le_bytes(self.array(field)?);
        usize::try_from(value).map_err(|_| Sr2Error::Negative { offset, field, value })
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, Sr2Error> {
        Ok(self.take(1, field)?[0] != 0)
    }

    /// A `BinaryWriter` string: 7-bit encoded byte count (at most 5 bytes, at most i32::MAX),
    /// then UTF-8.
    fn string(&mut self, field: &'static str) -> Result<String, Sr2Error> {
        let offset = self.pos;
        // The same 7-bit encoding as the SignalR binary framing's length prefix.
        let len = match crate::protocol::framing::read_varint(&self.buf[self.pos..]) {
            Ok(Some((len, prefix))) => {
                self.pos += prefix;
                len
            }
            Ok(None) => {
                return Err(Sr2Error::Truncated {
                    offset: self.buf.len(),
                    field,
                    needed: 1,
                    available: 0,
                });
            }
            Err(_) => return Err(Sr2Error::BadStringLength { offset, field }),
        };
        let at = self.pos;
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(Sr2Error::InvalidUtf8 { offset: at, field }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Encodes a payload in its format, as an SR2 server publishes it.
///
/// # Panics
/// If a string, a Value or the whole `RedisMessage` is 2 GiB or longer, which the format's Int32
/// lengths cannot represent.
pub fn encode(payload: &Sr2Payload) -> Vec<u8> {
    let body_len = 4 + payload.messages.iter().map(message_len).sum::<usize>() + 8;
    let id_text = match payload.format {
        Sr2Format::V21 => payload.id.to_string(),
        Sr2Format::V20 => String::new(),
    };
    let id_len = match payload.format {
        Sr2Format::V21 => id_text.len() + 1,
        Sr2Format::V20 => 8,
    };
    let mut out = Vec::with_capacity(id_len + 4 + body_len);
    match payload.format {
        Sr2Format::V21 => {
            out.extend_from_slice(id_text.as_bytes());
            out.push(b' ');
        }
        Sr2Format::V20 => out.extend_from_slice(&payload.id.to_le_bytes()),
    }
    put_i32(&mut out, body_len);
    put_i32(&mut out, payload.messages.len());
    for m in &payload.messages {
        put_string(&mut out, &m.source);
        put_string(&mut out, &m.key);
        put_i32(&mut out, m.value.len());
        out.extend_from_slice(&m.value);
        put_string(&mut out, &m.command_id);
        out.push(u8::from(m.wait_for_ack));
        out.push(u8::from(m.is_ack));
        put_string(&mut out, &m.filter);
    }
    out.extend_from_slice(&payload.server_creation_ticks.to_le_bytes());
    debug_assert_eq!(out.len(), id_len + 4 + body_len);
    out
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn string_len(s: &str) -> usize {
    varint_len(s.len()) + s.len()
}

fn message_len(m: &Sr2Message) -> usize {
    string_len(&m.source)
        + string_len(&m.key)
        + 4
        + m.value.len()
        + string_len(&m.command_id)
        + 2
        + string_len(&m.filter)
}

fn put_i32(out: &mut Vec<u8>, n: usize) {
    match i32::try_from(n) {
        Ok(n) => out.extend_from_slice(&n.to_le_bytes()),
        Err(_) => panic!("a length of {n} does not fit the SR2 format's Int32"),
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    if i32::try_from(s.len()).is_err() {
        panic!(
            "a string of {} bytes does not fit the SR2 format's Int32 length",
            s.len()
        );
    }
    crate::protocol::framing::write_varint(s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

impl From<super::cursor::Truncated> for Sr2Error {
    fn from(t: super::cursor::Truncated) -> Self {
        Sr2Error::Truncated {
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

    const TICKS: i64 = 638_396_640_000_000_000;

    fn message(key: &str, value: &str) -> Sr2Message {
        Sr2Message {
            source: "3f2504e0-4f89-11d3-9a0c-0305e82c3301".into(),
            key: key.into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            ..Sr2Message::default()
        }
    }

    fn sample(format: Sr2Format) -> Sr2Payload {
        Sr2Payload {
            id: 1234567890123,
            format,
            messages: vec![
                message("h-ChatHub", r#"{"H":"ChatHub","M":"send","A":["é",1]}"#),
                Sr2Message {
                    command_id: "9a1c".into(),
                    wait_for_ack: true,
                    filter: format!("c-{}|c-b", "a".repeat(200)),
                    ..message(
                        "c-x",
                        r#"{"WaitForAck":true,"Id":"9a1c","CommandType":2,"Value":"hg-H.g.1"}"#,
                    )
                },
                Sr2Message {
                    is_ack: true,
                    command_id: "9a1c".into(),
                    ..message(ACK_KEY, "")
                },
            ],
            server_creation_ticks: TICKS,
        }
    }

    #[test]
    fn both_layouts_round_trip_and_are_detected() {
        for format in [Sr2Format::V21, Sr2Format::V20] {
            let payload = sample(format);
            let bytes = encode(&payload);
            assert_eq!(decode(&bytes).unwrap(), payload);
            assert_eq!(decode_as(&bytes, format).unwrap(), payload);
        }
        assert!(encode(&sample(Sr2Format::V21)).starts_with(b"1234567890123 "));
    }

    #[test]
    fn seven_bit_lengths_span_bytes() {
        let bytes = encode(&sample(Sr2Format::V21));
        // The 206-byte filter's length is written as two bytes: ce 01.
        let filter_at = bytes.windows(4).position(|w| w == b"c-aa").unwrap();
        assert_eq!(&bytes[filter_at - 2..filter_at], &[0xce, 0x01]);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(16383), 2);
        assert_eq!(varint_len(16384), 3);
    }

    /// A one-message 2.1 payload whose Source is the given raw bytes (length prefix included).
    fn with_raw_source(source: &[u8]) -> Vec<u8> {
        let mut body = vec![1, 0, 0, 0];
        body.extend_from_slice(source);
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&TICKS.to_le_bytes());
        let mut out = b"7 ".to_vec();
        out.extend_from_slice(&(body.len() as i32).to_le_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn string_lengths_are_validated() {
        let ok = decode(&with_raw_source(&[0x81, 0x00, b'a'])).unwrap();
        assert_eq!(ok.messages[0].source, "a");
        // Five bytes whose value exceeds i32::MAX, and a sixth continuation byte.
        for raw in [
            &[0xff, 0xff, 0xff, 0xff, 0x08][..],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        ] {
            let err = decode(&with_raw_source(raw)).unwrap_err();
            assert_eq!(
                err,
                Sr2Error::BadStringLength {
                    offset: 10,
                    field: "Source"
                },
                "{raw:?}"
            );
        }
        // A valid 5-byte length far beyond the payload.
        let err = decode(&with_raw_source(&[0xff, 0xff, 0xff, 0xff, 0x07])).unwrap_err();
        assert!(
            matches!(
                err,
                Sr2Error::Truncated {
                    field: "Source",
                    needed: 0x7fff_ffff,
                    ..
                }
            ),
            "{err}"
        );
        let err = decode(&with_raw_source(&[0x01, 0xff])).unwrap_err();
        assert_eq!(
            err,
            Sr2Error::InvalidUtf8 {
                offset: 11,
                field: "Source"
            }
        );
    }

    #[test]
    fn truncation_at_every_offset_is_an_error() {
        for format in [Sr2Format::V21, Sr2Format::V20] {
            let bytes = encode(&sample(format));
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{format:?} cut at {cut}");
                assert!(
                    decode_as(&bytes[..cut], format).is_err(),
                    "{format:?} as, cut at {cut}"
                );
                // Truncating inside the declared length while keeping it consistent.
                let mut inner = bytes[..cut].to_vec();
                let at = if format == Sr2Format::V21 { 14 } else { 8 };
                if cut > at + 4 {
                    let len = (cut - at - 4) as i32;
                    inner[at..at + 4].copy_from_slice(&len.to_le_bytes());
                    assert!(decode(&inner).is_err(), "{format:?} consistent cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn huge_or_negative_counts_are_rejected_before_allocating() {
        let mut bytes = b"1 ".to_vec();
        bytes.extend_from_slice(&12i32.to_le_bytes());
        bytes.extend_from_slice(&i32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        let err = decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            Sr2Error::CountExceedsPayload {
                offset: 6,
                count: i32::MAX as usize,
                remaining: 8
            }
        );
        bytes[6..10].copy_from_slice(&(-1i32).to_le_bytes());
        let err = decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            Sr2Error::Negative {
                offset: 6,
                field: "message count",
                value: -1
            }
        );
        let err = decode_as(b"1 \xff\xff\xff\xff", Sr2Format::V21).unwrap_err();
        assert!(matches!(err, Sr2Error::Negative { offset: 2, .. }), "{err}");
    }

    #[test]
    fn layout_detection_reports_both_attempts() {
        let mut bytes = encode(&sample(Sr2Format::V21));
        bytes.push(0);
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(&err, Sr2Error::UnrecognizedLayout { v21, .. } if v21.contains("bytes follow")),
            "{err}"
        );
        // With the layout configured, trailing bytes are ignored as .NET does.
        assert_eq!(decode_as(&bytes, Sr2Format::V21).unwrap(), sample(Sr2Format::V21));
        assert!(matches!(decode(b"12x"), Err(Sr2Error::UnrecognizedLayout { .. })));
        assert!(matches!(
            decode_as(b"12x 0000", Sr2Format::V21),
            Err(Sr2Error::BadId { .. })
        ));
        assert!(matches!(
            decode_as(b"99999999999999999999 ", Sr2Format::V21),
            Err(Sr2Error::BadId {
                reason: "the id does not fit in 64 bits"
            })
        ));
    }

    #[test]
    fn kinds_follow_the_key_prefixes() {
        let cases = [
            (
                "h-ChatHub",
                Sr2Kind::HubBroadcast {
                    hub: "ChatHub".into(),
                },
            ),
            (
                "hc-ChatHub.abc",
                Sr2Kind::HubConnection {
                    hub: "ChatHub".into(),
                    connection: "abc".into(),
                },
            ),
            (
                "hu-ChatHub.a.b@x.org",
                Sr2Kind::HubUser {
                    hub: "ChatHub".into(),
                    user: "a.b@x.org".into(),
                },
            ),
            (
                "hg-ChatHub.room.1",
                Sr2Kind::HubGroup {
                    hub: "ChatHub".into(),
                    group: "room.1".into(),
                },
            ),
            ("c-abc", Sr2Kind::Connection { id: "abc".into() }),
            (
                "pc-My.Conn",
                Sr2Kind::PersistentConnection {
                    name: "My.Conn".into(),
                },
            ),
            (
                "pcg-My.Conn.g",
                Sr2Kind::PersistentConnectionGroup {
                    name: "My.Conn.g".into(),
                },
            ),
            ("hg-NoDot", Sr2Kind::Other),
            ("ack-x", Sr2Kind::Other),
        ];
        for (key, kind) in cases {
            assert_eq!(message(key, "").kind(), kind, "{key}");
        }
        let payload = sample(Sr2Format::V21);
        assert_eq!(
            payload.messages[1].kind(),
            Sr2Kind::Command {
                command_id: "9a1c".into(),
                connection: Some("x".into())
            }
        );
        assert_eq!(
            payload.messages[2].kind(),
            Sr2Kind::Ack {
                command_id: "9a1c".into()
            }
        );
        assert_eq!(payload.messages[1].excluded_signals().count(), 2);
    }

    #[test]
    fn values_parse_as_invocations_and_commands() {
        let payload = sample(Sr2Format::V21);
        let inv = payload.messages[0].hub_invocation().unwrap();
        assert_eq!((inv.hub.as_str(), inv.method.as_str()), ("ChatHub", "send"));
        assert_eq!(inv.args, [serde_json::json!("é"), serde_json::json!(1)]);
        assert_eq!(inv.state, None);
        let cmd = payload.messages[1].command().unwrap();
        assert_eq!(cmd.command_type, Sr2CommandType::RemoveFromGroup);
        assert_eq!(cmd.hub_group(), Some(("H", "g.1")));
        assert!(cmd.wait_for_ack);
        let named = message("c-x", r#"{"Id":"i","CommandType":"Abort"}"#)
            .command()
            .unwrap();
        assert_eq!(
            (named.command_type, named.value, named.wait_for_ack),
            (Sr2CommandType::Abort, None, false)
        );
        assert!(payload.messages[2].hub_invocation().is_err());
        assert!(matches!(
            message("c-x", r#"{"Id":"i","CommandType":1.5}"#).command(),
            Err(Sr2Error::BadValue {
                what: "a command",
                ..
            })
        ));
        assert_eq!(payload.messages[0].value_json().unwrap()["M"], "send");
    }

    #[test]
    fn ticks_convert_to_system_time() {
        let payload = sample(Sr2Format::V20);
        let since = payload
            .server_creation_time()
            .unwrap()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(since.as_secs(), 1_704_067_200); // 2024-01-01T00:00:00Z
        let early = Sr2Payload {
            server_creation_ticks: 0,
            ..payload
        };
        assert_eq!(early.server_creation_time(), None);
    }
}
