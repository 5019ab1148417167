//! The MessagePack hub protocol (SIGNALR-WIRE.md A.7): [`encode`] writes the array layouts of
//! .NET's `MessagePackHubProtocol` with the smallest integer and string encodings, framed with
//! the VarInt length prefix; [`decode`] parses one unframed body with the .NET reader's rules
//! (any integer width, 5-element invocations, 2-element Close, extra trailing elements ignored,
//! unknown types ignored) and its error texts.
//!
//! Untrusted input is read by `rmpv` with a nesting limit; `rmpv` never preallocates more than
//! 64 KiB for a declared length, so a header claiming 2^32 elements fails at the end of the body
//! instead of allocating. Called through `Protocol` by the hub and the client. Pure: no I/O, no
//! other crate module.

use super::framing::varint;
use super::{CompletionResult, Headers, HubMessage, ProtocolError, Value};

/// rmpv's depth budget for one message. rmpv spends 2 units per nested array/map level (and
/// a few on each leaf), so this allows ~120 levels of nesting: far more than any hub payload,
/// and a small, fixed recursion depth on the connection task's stack.
pub const MAX_DEPTH: usize = 256;

const ERROR_RESULT: i32 = 1;
const VOID_RESULT: i32 = 2;
const NON_VOID_RESULT: i32 = 3;

/// Serializes one message and frames it: VarInt(length) followed by the MessagePack body.
pub fn encode(message: &HubMessage) -> Vec<u8> {
    let mut out = Vec::new();
    let start = encode_prefixed_into(message, &mut out);
    out.drain(..start);
    out
}

/// `encode`, appended to `out` without a second buffer: room for the longest VarInt prefix, then
/// the body, then the prefix written just before the body. Returns where the prefixed message
/// starts in `out` (the room before it is left as zeros).
pub fn encode_prefixed_into(message: &HubMessage, out: &mut Vec<u8>) -> usize {
    /// The longest VarInt a `usize` length takes.
    const ROOM: usize = 10;
    let body = out.len() + ROOM;
    out.resize(body, 0);
    encode_body_into(message, out);
    let (prefix, n) = varint(out.len() - body);
    out[body - n..body].copy_from_slice(&prefix[..n]);
    body - n
}

/// Serializes one message without the length prefix (the layouts of A.7).
pub fn encode_body(message: &HubMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    encode_body_into(message, &mut out);
    out
}

/// `encode_body`, appended to `out`.
pub fn encode_body_into(message: &HubMessage, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail: the error type only exists for `io::Write` in general.
    let _ = write_body(message, out);
}

/// A write error from rmp/rmpv; never produced when the target is a `Vec`.
struct WriteFailed;

impl From<rmp::encode::ValueWriteError<std::io::Error>> for WriteFailed {
    fn from(_: rmp::encode::ValueWriteError<std::io::Error>) -> Self {
        WriteFailed
    }
}

impl From<std::io::Error> for WriteFailed {
    fn from(_: std::io::Error) -> Self {
        WriteFailed
    }
}

fn write_body(message: &HubMessage, out: &mut Vec<u8>) -> Result<(), WriteFailed> {
    use rmp::encode::{write_array_len, write_bool, write_nil, write_sint, write_str, write_uint};

    match message {
        HubMessage::Invocation {
            headers,
            invocation_id,
            target,
            arguments,
            stream_ids,
        } => {
            write_array_len(out, 6)?;
            write_uint(out, 1)?;
            write_headers(out, headers)?;
            match invocation_id.as_deref() {
                Some(id) if !id.is_empty() => write_str(out, id)?,
                _ => write_nil(out)?,
            }
            write_str(out, target)?;
            write_values(out, arguments)?;
            write_stream_ids(out, stream_ids.as_deref())?;
        }
        HubMessage::StreamInvocation {
            headers,
            invocation_id,
            target,
            arguments,
            stream_ids,
        } => {
            write_array_len(out, 6)?;
            write_uint(out, 4)?;
            write_headers(out, headers)?;
            write_str(out, invocation_id)?;
            write_str(out, target)?;
            write_values(out, arguments)?;
            write_stream_ids(out, stream_ids.as_deref())?;
        }
        HubMessage::StreamItem {
            headers,
            invocation_id,
            item,
        } => {
            write_array_len(out, 4)?;
            write_uint(out, 2)?;
            write_headers(out, headers)?;
            write_str(out, invocation_id)?;
            rmpv::encode::write_value(out, item)?;
        }
        HubMessage::Completion {
            headers,
            invocation_id,
            result,
        } => {
            let (len, kind) = match result {
                CompletionResult::Error(_) => (5, ERROR_RESULT),
                CompletionResult::Value(_) => (5, NON_VOID_RESULT),
                CompletionResult::Void => (4, VOID_RESULT),
            };
            write_array_len(out, len)?;
            write_uint(out, 3)?;
            write_headers(out, headers)?;
            write_str(out, invocation_id)?;
            write_sint(out, i64::from(kind))?;
            match result {
                CompletionResult::Error(error) => write_str(out, error)?,
                CompletionResult::Value(value) => rmpv::encode::write_value(out, value)?,
                CompletionResult::Void => {}
            }
        }
        HubMessage::CancelInvocation {
            headers,
            invocation_id,
        } => {
            write_array_len(out, 3)?;
            write_uint(out, 5)?;
            write_headers(out, headers)?;
            write_str(out, invocation_id)?;
        }
        HubMessage::Ping => {
            write_array_len(out, 1)?;
            write_uint(out, 6)?;
        }
        HubMessage::Close {
            error,
            allow_reconnect,
        } => {
            write_array_len(out, 3)?;
            write_uint(out, 7)?;
            match error.as_deref() {
                Some(error) if !error.is_empty() => write_str(out, error)?,
                _ => write_nil(out)?,
            }
            write_bool(out, *allow_reconnect)?;
        }
        HubMessage::Ack { sequence_id } => {
            write_array_len(out, 2)?;
            write_uint(out, 8)?;
            write_sint(out, *sequence_id)?;
        }
        HubMessage::Sequence { sequence_id } => {
            write_array_len(out, 2)?;
            write_uint(out, 9)?;
            write_sint(out, *sequence_id)?;
        }
    }
    Ok(())
}

fn write_headers(out: &mut Vec<u8>, headers: &Headers) -> Result<(), WriteFailed> {
    rmp::encode::write_map_len(out, len_u32(headers.len()))?;
    for (key, value) in headers {
        rmp::encode::write_str(out, key)?;
        rmp::encode::write_str(out, value)?;
    }
    Ok(())
}

fn write_values(out: &mut Vec<u8>, values: &[Value]) -> Result<(), WriteFailed> {
    rmp::encode::write_array_len(out, len_u32(values.len()))?;
    for value in values {
        rmpv::encode::write_value(out, value)?;
    }
    Ok(())
}

/// Always an array; empty when there are no stream ids (the .NET writer does the same).
fn write_stream_ids(out: &mut Vec<u8>, ids: Option<&[String]>) -> Result<(), WriteFailed> {
    let ids = ids.unwrap_or_default();
    rmp::encode::write_array_len(out, len_u32(ids.len()))?;
    for id in ids {
        rmp::encode::write_str(out, id)?;
    }
    Ok(())
}

/// MessagePack lengths are 32-bit; nothing this node sends comes close.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Parses one MessagePack message body (without its VarInt prefix). `Ok(None)` for an unknown
/// message type. Bytes after the top-level array are an error. (One leniency inherited from
/// rmpv: the never-used marker `c1` reads as nil where .NET would fail.)
pub fn decode(body: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
    let mut reader = body;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH)
        .map_err(|e| ProtocolError::new(format!("Error reading MessagePack message: {e}.")))?;
    if !reader.is_empty() {
        return Err(ProtocolError::new(format!(
            "Unexpected {} byte(s) after the MessagePack message.",
            reader.len()
        )));
    }
    let Value::Array(items) = value else {
        return Err(ProtocolError::new(
            "Reading array length for 'message' failed: the message is not a MessagePack array.",
        ));
    };
    let item_count = items.len();
    let mut items = items.into_iter();

    let message = match read_i32(items.next(), "messageType")? {
        1 => {
            let headers = read_headers(items.next())?;
            let invocation_id = read_string(items.next(), "invocationId")?.filter(|id| !id.is_empty());
            let target = required(
                read_string(items.next(), "target")?,
                "target for Invocation message",
            )?;
            let arguments = read_array(items.next(), "arguments")?;
            // Older clients send 5 elements: no stream ids.
            let stream_ids = if item_count > 5 {
                read_stream_ids(items.next())?
            } else {
                None
            };
            HubMessage::Invocation {
                headers,
                invocation_id,
                target,
                arguments,
                stream_ids,
            }
        }
        2 => {
            let headers = read_headers(items.next())?;
            let invocation_id = required(
                read_string(items.next(), "invocationId")?,
                "invocation ID for StreamItem message",
            )?;
            let item = items
                .next()
                .ok_or_else(|| ProtocolError::new("Reading 'item' failed: the message has no item."))?;
            HubMessage::StreamItem {
                headers,
                invocation_id,
                item,
            }
        }
        3 => {
            let headers = read_headers(items.next())?;
            let invocation_id = required(
                read_string(items.next(), "invocationId")?,
                "invocation ID for Completion message",
            )?;
            let result = match read_i32(items.next(), "resultKind")? {
                // A nil error string leaves .NET with a completion that has neither error nor
                // result: a void one.
                ERROR_RESULT => match read_string(items.next(), "error")? {
                    Some(error) => CompletionResult::Error(error),
                    None => CompletionResult::Void,
                },
                VOID_RESULT => CompletionResult::Void,
                NON_VOID_RESULT => CompletionResult::Value(items.next().ok_or_else(|| {
                    ProtocolError::new("Reading 'result' failed: the message has no result.")
                })?),
                _ => return Err(ProtocolError::new("Invalid invocation result kind.")),
            };
            HubMessage::Completion {
                headers,
                invocation_id,
                result,
            }
        }
        4 => {
            let headers = read_headers(items.next())?;
            let invocation_id = required(
                read_string(items.next(), "invocationId")?,
                "invocation ID for StreamInvocation message",
            )?;
            let target = required(
                read_string(items.next(), "target")?,
                "target for StreamInvocation message",
            )?;
            let arguments = read_array(items.next(), "arguments")?;
            let stream_ids = if item_count > 5 {
                read_stream_ids(items.next())?
            } else {
                None
            };
            HubMessage::StreamInvocation {
                headers,
                invocation_id,
                target,
                arguments,
                stream_ids,
            }
        }
        5 => {
            let headers = read_headers(items.next())?;
            let invocation_id = required(
                read_string(items.next(), "invocationId")?,
                "invocation ID for CancelInvocation message",
            )?;
            HubMessage::CancelInvocation {
                headers,
                invocation_id,
            }
        }
        6 => HubMessage::Ping,
        7 => {
            // An empty string is still an error (kept as Some("")).
            let error = read_string(items.next(), "error")?;
            let allow_reconnect = if item_count > 2 {
                read_bool(items.next(), "allowReconnect")?
            } else {
                false
            };
            HubMessage::Close {
                error,
                allow_reconnect,
            }
        }
        8 => HubMessage::Ack {
            sequence_id: read_i64(items.next(), "sequenceId")?,
        },
        9 => HubMessage::Sequence {
            sequence_id: read_i64(items.next(), "sequenceId")?,
        },
        // Future protocol versions may add message types; they are ignored.
        _ => return Ok(None),
    };
    Ok(Some(message))
}

fn read_i32(value: Option<Value>, field: &str) -> Result<i32, ProtocolError> {
    value
        .as_ref()
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| ProtocolError::new(format!("Reading '{field}' as Int32 failed.")))
}

fn read_i64(value: Option<Value>, field: &str) -> Result<i64, ProtocolError> {
    value
        .as_ref()
        .and_then(Value::as_i64)
        .ok_or_else(|| ProtocolError::new(format!("Reading '{field}' as Int64 failed.")))
}

fn read_bool(value: Option<Value>, field: &str) -> Result<bool, ProtocolError> {
    match value {
        Some(Value::Boolean(b)) => Ok(b),
        _ => Err(ProtocolError::new(format!(
            "Reading '{field}' as Boolean failed."
        ))),
    }
}

/// A string or nil (`None`); anything else, a missing element or invalid UTF-8 is an error.
fn read_string(value: Option<Value>, field: &str) -> Result<Option<String>, ProtocolError> {
    match value {
        Some(Value::Nil) => Ok(None),
        Some(Value::String(s)) => match s.into_str() {
            Some(s) => Ok(Some(s)),
            None => Err(ProtocolError::new(format!(
                "Reading '{field}' as String failed: invalid UTF-8."
            ))),
        },
        _ => Err(ProtocolError::new(format!("Reading '{field}' as String failed."))),
    }
}

/// .NET's `ThrowIfNullOrEmpty`.
fn required(value: Option<String>, what: &str) -> Result<String, ProtocolError> {
    match value {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ProtocolError::new(format!("Null or empty {what}."))),
    }
}

fn read_array(value: Option<Value>, field: &str) -> Result<Vec<Value>, ProtocolError> {
    match value {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(ProtocolError::new(format!(
            "Reading array length for '{field}' failed."
        ))),
    }
}

/// Stream ids: an array of non-empty strings; an empty array means none (as in .NET).
fn read_stream_ids(value: Option<Value>) -> Result<Option<Vec<String>>, ProtocolError> {
    let items = read_array(value, "streamIds")?;
    if items.is_empty() {
        return Ok(None);
    }
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let id = read_string(Some(item), "streamIds")?;
        ids.push(required(id, "value in streamIds received")?);
    }
    Ok(Some(ids))
}

/// Headers: a map of non-empty strings to non-empty strings, no duplicate keys.
fn read_headers(value: Option<Value>) -> Result<Headers, ProtocolError> {
    let Some(Value::Map(entries)) = value else {
        return Err(ProtocolError::new("Reading map length for 'headers' failed."));
    };
    let mut headers: Headers = Vec::with_capacity(entries.len());
    for (i, (key, value)) in entries.into_iter().enumerate() {
        let key = required(
            read_string(Some(key), &format!("headers[{i}].Key"))?,
            "key in header",
        )?;
        let value = required(
            read_string(Some(value), &format!("headers[{i}].Value"))?,
            "value in header",
        )?;
        if headers.iter().any(|(k, _)| *k == key) {
            return Err(ProtocolError::new(format!(
                "An item with the same key has already been added. Key: {key}"
            )));
        }
        headers.push((key, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn error_of(body: &[u8]) -> String {
        decode(body).expect_err("must fail").0
    }

    #[test]
    fn smallest_integer_and_string_widths() {
        let seq = |n: i64| encode_body(&HubMessage::Sequence { sequence_id: n });
        assert_eq!(seq(42), hex("92092a"));
        assert_eq!(seq(146), hex("9209cc92"));
        assert_eq!(seq(384), hex("9209cd0180"));
        assert_eq!(seq(70000), hex("9209ce00011170"));
        assert_eq!(seq(1 << 40), hex("9209cf0000010000000000"));
        assert_eq!(seq(-1), hex("9209ff"));
        assert_eq!(seq(-33), hex("9209d0df"));
        let long = "x".repeat(40);
        let body = encode_body(&HubMessage::CancelInvocation {
            headers: vec![],
            invocation_id: long.clone(),
        });
        assert_eq!(&body[..5], &hex("930580d928")[..]);
        assert_eq!(
            decode(&body),
            Ok(Some(HubMessage::CancelInvocation {
                headers: vec![],
                invocation_id: long
            }))
        );
    }

    #[test]
    fn any_integer_width_is_accepted() {
        // [8, 42] with 42 as uint64, and the type as int16.
        assert_eq!(
            decode(&hex("92d10008cf000000000000002a")),
            Ok(Some(HubMessage::Ack { sequence_id: 42 }))
        );
        // fixstr read as str8
        assert_eq!(
            decode(&hex("930580d903787a79")),
            Ok(Some(HubMessage::CancelInvocation {
                headers: vec![],
                invocation_id: "xzy".into()
            }))
        );
    }

    #[test]
    fn five_element_invocation_and_extra_elements() {
        let m = decode(&hex("950180a378797aa66d6574686f64912a"))
            .expect("ok")
            .expect("known");
        assert_eq!(
            m,
            HubMessage::Invocation {
                headers: vec![],
                invocation_id: Some("xyz".into()),
                target: "method".into(),
                arguments: vec![Value::from(42)],
                stream_ids: None
            }
        );
        // Two extra elements after the stream ids.
        let m = decode(&hex("980180c0a66d6574686f649091a16101c3"))
            .expect("ok")
            .expect("known");
        assert!(
            matches!(m, HubMessage::Invocation { invocation_id: None, ref stream_ids, .. } if stream_ids == &Some(vec!["a".to_string()]))
        );
        // Close with 2 elements.
        assert_eq!(
            decode(&hex("9207a0")),
            Ok(Some(HubMessage::Close {
                error: Some(String::new()),
                allow_reconnect: false
            }))
        );
        // Empty invocation id = non-blocking.
        let m = decode(&hex("960180a0a66d6574686f649090"))
            .expect("ok")
            .expect("known");
        assert!(matches!(
            m,
            HubMessage::Invocation {
                invocation_id: None,
                ..
            }
        ));
    }

    #[test]
    fn unknown_type_is_ignored() {
        assert_eq!(decode(&hex("9263c0")), Ok(None));
        assert_eq!(decode(&hex("91ff")), Ok(None));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(error_of(b"").starts_with("Error reading MessagePack message"));
        assert!(error_of(&hex("92")).starts_with("Error reading MessagePack message"));
        assert!(error_of(&hex("a56162")).starts_with("Error reading MessagePack message"));
        // rmpv reads the never-used marker c1 as nil (.NET would refuse it); at the top level
        // it is still not an array.
        assert!(error_of(&hex("c1")).starts_with("Reading array length for 'message' failed"));
        assert!(error_of(&hex("9106c0")).starts_with("Unexpected 1 byte(s)"));
        assert!(error_of(&hex("06")).starts_with("Reading array length for 'message' failed"));
        assert_eq!(error_of(&hex("90")), "Reading 'messageType' as Int32 failed.");
        assert_eq!(error_of(&hex("91a131")), "Reading 'messageType' as Int32 failed.");
        assert_eq!(
            error_of(&hex("91ce80000000")),
            "Reading 'messageType' as Int32 failed."
        );
        assert_eq!(
            error_of(&hex("9301c0c0")),
            "Reading map length for 'headers' failed."
        );
        assert_eq!(
            error_of(&hex("950180c0c090")),
            "Null or empty target for Invocation message."
        );
        assert!(error_of(&hex("950180c0a17491")).starts_with("Error reading MessagePack message"));
        assert_eq!(
            error_of(&hex("950180c0a1742a")),
            "Reading array length for 'arguments' failed."
        );
        assert_eq!(
            error_of(&hex("940280c02a")),
            "Null or empty invocation ID for StreamItem message."
        );
        assert_eq!(
            error_of(&hex("930280a131")),
            "Reading 'item' failed: the message has no item."
        );
        assert_eq!(
            error_of(&hex("950380a13109c0")),
            "Invalid invocation result kind."
        );
        assert_eq!(
            error_of(&hex("930380a131")),
            "Reading 'resultKind' as Int32 failed."
        );
        assert_eq!(
            error_of(&hex("940380a13103")),
            "Reading 'result' failed: the message has no result."
        );
        assert_eq!(
            error_of(&hex("930580a0")),
            "Null or empty invocation ID for CancelInvocation message."
        );
        assert_eq!(
            error_of(&hex("9307c0c0")),
            "Reading 'allowReconnect' as Boolean failed."
        );
        assert_eq!(error_of(&hex("9107")), "Reading 'error' as String failed.");
        assert_eq!(
            error_of(&hex("9208cf8000000000000000")),
            "Reading 'sequenceId' as Int64 failed."
        );
        assert_eq!(error_of(&hex("930581a0a178a131")), "Null or empty key in header.");
        assert_eq!(
            error_of(&hex("930581a178a0a131")),
            "Null or empty value in header."
        );
        assert_eq!(
            error_of(&hex("930581a1780aa131")),
            "Reading 'headers[0].Value' as String failed."
        );
        assert_eq!(
            error_of(&hex("930582a178a179a178a17aa131")),
            "An item with the same key has already been added. Key: x"
        );
        assert_eq!(
            error_of(&hex("960180c0a174909101")),
            "Reading 'streamIds' as String failed."
        );
        assert_eq!(
            error_of(&hex("960180c0a1749091a0")),
            "Null or empty value in streamIds received."
        );
        assert!(error_of(&hex("930580a2ff61")).contains("invalid UTF-8"));
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // Arrays, maps, strings and binaries declaring 2^32-1 entries/bytes with nothing behind.
        for body in [
            "ddffffffff",
            "dfffffffff",
            "dbffffffff",
            "c6ffffffff",
            "9301dfffffffff",
            "9106ddffffffff",
        ] {
            assert!(decode(&hex(body)).is_err(), "{body}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut body = hex("960180c0a174");
        body.extend(std::iter::repeat_n(0x91u8, 100_000));
        body.push(0xc0);
        body.push(0x90);
        assert!(decode(&body).is_err());

        // Moderate nesting is fine.
        let mut body = hex("960180c0a17491");
        body.extend(std::iter::repeat_n(0x91u8, 100));
        body.push(0xc0);
        body.push(0x90);
        assert!(decode(&body).expect("ok").is_some());
    }

    #[test]
    fn completion_kinds() {
        let c = |r| encode_body(&HubMessage::completion("xyz", r));
        assert_eq!(
            c(CompletionResult::Error(String::new())),
            hex("950380a378797a01a0")
        );
        assert_eq!(c(CompletionResult::Void), hex("940380a378797a02"));
        assert_eq!(c(CompletionResult::Value(Value::Nil)), hex("950380a378797a03c0"));
        // A nil error string reads as a void completion (what .NET ends up with).
        assert_eq!(
            decode(&hex("950380a378797a01c0")),
            Ok(Some(HubMessage::completion("xyz", CompletionResult::Void)))
        );
    }

    #[test]
    fn close_writes_empty_error_as_nil() {
        assert_eq!(
            encode_body(&HubMessage::Close {
                error: Some(String::new()),
                allow_reconnect: true
            }),
            hex("9307c0c3")
        );
    }

    #[test]
    fn encode_is_framed() {
        assert_eq!(encode(&HubMessage::Ping), hex("029106"));
        let big = HubMessage::invocation("t", vec![Value::Binary(vec![0; 200])]);
        let framed = encode(&big);
        // Body: 96 01 80 c0 a1 74 91 c4 c8 <200 bytes> 90 = 210 bytes = VarInt d2 01.
        assert_eq!(&framed[..2], &[0xd2, 0x01]);
        assert_eq!(framed.len(), 2 + 210);
    }
}
