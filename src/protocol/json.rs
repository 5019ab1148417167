//! The JSON hub protocol (SIGNALR-WIRE.md A.5): [`encode`] writes a message byte-for-byte as
//! ASP.NET Core's `JsonHubProtocol` does (property order, no whitespace, raw non-ASCII, trailing
//! 0x1E); [`decode`] parses one unframed message with the .NET parser's rules and error texts.
//!
//! Argument values are `rmpv::Value`s. JSON is parsed straight into them in document order (a
//! small serde visitor, so object key order survives a round trip) and written back by a small
//! recursive writer; `serde_json` does the string escaping and number formatting.
//! [`value_to_json`] / [`json_to_value`] convert to and from `serde_json::Value` for code that
//! wants to look at arguments (note: `serde_json::Value` objects sort their keys).
//!
//! Called through `Protocol` by the hub and the client. Pure: no I/O, no other crate module.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{CompletionResult, Headers, HubMessage, ProtocolError, RECORD_SEPARATOR, Value};

/// Serializes one message exactly as the .NET server writes it, followed by 0x1E.
///
/// Writer rules (A.5): `type`, then `headers` only if non-empty, then the per-type fields. An
/// empty invocation id is omitted like a missing one; a Completion writes `error` only when it
/// is non-empty (so `Error("")` goes out as a void completion, as .NET does); a Close writes
/// `error` whenever it is `Some` (even "") and `allowReconnect` only when true.
pub fn encode(message: &HubMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_into(message, &mut out);
    out
}

/// `encode`, appended to `out`.
pub fn encode_into(message: &HubMessage, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":");
    push_int(out, i64::from(message.type_id()));
    match message {
        HubMessage::Invocation {
            headers,
            invocation_id,
            target,
            arguments,
            stream_ids,
        } => {
            write_headers(out, headers);
            if let Some(id) = invocation_id {
                write_invocation_id(out, id);
            }
            write_call(out, target, arguments, stream_ids.as_deref());
        }
        HubMessage::StreamInvocation {
            headers,
            invocation_id,
            target,
            arguments,
            stream_ids,
        } => {
            write_headers(out, headers);
            write_invocation_id(out, invocation_id);
            write_call(out, target, arguments, stream_ids.as_deref());
        }
        HubMessage::StreamItem {
            headers,
            invocation_id,
            item,
        } => {
            write_headers(out, headers);
            write_invocation_id(out, invocation_id);
            write_key(out, "item");
            write_value(out, item);
        }
        HubMessage::Completion {
            headers,
            invocation_id,
            result,
        } => {
            write_headers(out, headers);
            write_invocation_id(out, invocation_id);
            match result {
                CompletionResult::Error(error) if !error.is_empty() => {
                    write_key(out, "error");
                    write_str(out, error);
                }
                CompletionResult::Value(value) => {
                    write_key(out, "result");
                    write_value(out, value);
                }
                CompletionResult::Error(_) | CompletionResult::Void => {}
            }
        }
        HubMessage::CancelInvocation {
            headers,
            invocation_id,
        } => {
            write_headers(out, headers);
            write_invocation_id(out, invocation_id);
        }
        HubMessage::Ping => {}
        HubMessage::Close {
            error,
            allow_reconnect,
        } => {
            if let Some(error) = error {
                write_key(out, "error");
                write_str(out, error);
            }
            if *allow_reconnect {
                write_key(out, "allowReconnect");
                out.extend_from_slice(b"true");
            }
        }
        HubMessage::Ack { sequence_id } | HubMessage::Sequence { sequence_id } => {
            write_key(out, "sequenceId");
            push_int(out, *sequence_id);
        }
    }
    out.push(b'}');
    out.push(RECORD_SEPARATOR);
}

/// Writes `n` in decimal (as `to_string` would, without its allocation).
fn push_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    super::write_decimal(out, n.unsigned_abs());
}

/// A float as System.Text.Json and JavaScript write it: integral values without a fraction
/// (`1`, not `1.0`), others in their shortest form for their own width, non-finite values (which
/// JSON cannot carry) as `null`.
fn write_float<F: serde::Serialize + Into<f64> + Copy>(out: &mut Vec<u8>, f: F) {
    // 2^53: beyond it not every integer is a float, and the shortest form has an exponent.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let wide: f64 = f.into();
    if !wide.is_finite() {
        out.extend_from_slice(b"null");
    } else if wide.fract() == 0.0 && wide.abs() < EXACT {
        push_int(out, wide as i64);
    } else {
        serialize_into(out, &f);
    }
}

/// Writes `value` as JSON: Nil → `null`; integers and floats as serde_json prints them
/// (non-finite → `null`); strings raw UTF-8 (invalid UTF-8 lossily); Binary → a standard base64
/// string (as .NET writes `byte[]`); arrays; maps as objects (non-string keys stringified, see
/// [`map_key`]); Ext → `null`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Nil | Value::Ext(..) => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::Integer(n) => {
            if let Some(u) = n.as_u64() {
                super::write_decimal(out, u);
            } else if let Some(i) = n.as_i64() {
                push_int(out, i);
            }
        }
        Value::F32(f) => write_float(out, *f),
        Value::F64(f) => write_float(out, *f),
        Value::String(s) => match s.as_str() {
            Some(s) => write_str(out, s),
            None => write_str(out, &String::from_utf8_lossy(s.as_bytes())),
        },
        Value::Binary(bytes) => write_str(out, &base64::engine::general_purpose::STANDARD.encode(bytes)),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Map(entries) => {
            out.push(b'{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, &map_key(key));
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// The JSON property name for a map key: strings as they are (invalid UTF-8 lossily), binary as
/// base64, anything else as its JSON text (`1`, `true`, `null`, `[1,2]`).
pub fn map_key(key: &Value) -> Cow<'_, str> {
    match key {
        Value::String(s) => match s.as_str() {
            Some(s) => Cow::Borrowed(s),
            None => String::from_utf8_lossy(s.as_bytes()),
        },
        Value::Binary(bytes) => Cow::Owned(base64::engine::general_purpose::STANDARD.encode(bytes)),
        other => {
            let mut text = Vec::new();
            write_value(&mut text, other);
            Cow::Owned(String::from_utf8_lossy(&text).into_owned())
        }
    }
}

/// Converts a value to a `serde_json::Value` with the rules of [`write_value`]. Object keys end
/// up sorted (serde_json is built without `preserve_order`); use [`write_value`] for exact bytes.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Nil | Value::Ext(..) => serde_json::Value::Null,
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Integer(n) => {
            if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else {
                serde_json::Value::Null
            }
        }
        // Through the shortest decimal text of the f32, so 0.1f32 shows as 0.1, not 0.100000001…
        Value::F32(f) => f
            .to_string()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::F64(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        Value::String(s) => match s.as_str() {
            Some(s) => serde_json::Value::String(s.to_owned()),
            None => serde_json::Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        },
        Value::Binary(bytes) => {
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Value::Array(items) => serde_json::Value::Array(items.iter().map(value_to_json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| (map_key(k).into_owned(), value_to_json(v)))
                .collect(),
        ),
    }
}

/// Converts a `serde_json::Value` to a value: null → Nil, integers → Integer (i64 or u64), other
/// numbers → F64, objects → Map with String keys in the map's iteration order.
pub fn json_to_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(json_to_value).collect()),
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_to_value(v)))
                .collect(),
        ),
    }
}

/// Parses JSON text into a value, keeping object keys in document order (and duplicates).
/// serde_json's recursion limit (128) bounds the nesting.
pub fn parse_value(text: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = ValueSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Parses one JSON hub message body (without its RS). `Ok(None)` for an unknown `type`.
///
/// Rules of .NET's `JsonHubProtocol`: properties in any order, checked as they are met (so a
/// malformed property is an error even in a message of unknown type), unknown ones skipped,
/// names case-sensitive, the last of duplicate properties wins, a `null` string property counts
/// as absent; `headers` must map strings to strings; an empty `invocationId` on an Invocation
/// means non-blocking.
///
/// The object is read in one pass: each property the message can use is checked as it is met
/// (so in a body that is both malformed JSON and has a bad property before the malformation, the
/// property's error is the one reported), and any other property is skipped without building
/// its value.
pub fn decode(body: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
    // A chat message or a ping, read without serde (`json_fast`); anything else in full.
    if let Some(message) = super::json_fast::decode(body) {
        return Ok(Some(message));
    }
    decode_full(body)
}

/// `decode` through serde, for every message shape (and with the error text of a bad one).
pub(super) fn decode_full(body: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
    let mut failure = None;
    let mut fields = Fields::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = de
        .deserialize_any(MessageVisitor {
            fields: &mut fields,
            failure: &mut failure,
        })
        .and_then(|top| de.end().map(|()| top));
    match top {
        Err(e) => Err(failure.unwrap_or_else(|| ProtocolError::new(format!("Error reading JSON. {e}")))),
        Ok(Top::Other(other)) => Err(ProtocolError::new(format!(
            "Unexpected JSON Token Type '{}'. Expected a JSON Object.",
            token_name(&other)
        ))),
        Ok(Top::Object) => fields.into_message(),
    }
}

/// A property `Fields::set` reads; any other is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Property {
    Type,
    InvocationId,
    Target,
    Error,
    AllowReconnect,
    Result,
    Item,
    Arguments,
    StreamIds,
    Headers,
    SequenceId,
}

impl Property {
    /// The property of this name (names are case-sensitive, as in .NET's reader).
    fn named(name: &str) -> Option<Property> {
        Some(match name {
            "type" => Property::Type,
            "invocationId" => Property::InvocationId,
            "target" => Property::Target,
            "error" => Property::Error,
            "allowReconnect" => Property::AllowReconnect,
            "result" => Property::Result,
            "item" => Property::Item,
            "arguments" => Property::Arguments,
            "streamIds" => Property::StreamIds,
            "headers" => Property::Headers,
            "sequenceId" => Property::SequenceId,
            _ => return None,
        })
    }
}

/// A property name read without allocating: the `Property`, or `None` for any other.
struct PropertySeed;

impl<'de> DeserializeSeed<'de> for PropertySeed {
    type Value = Option<Property>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for PropertySeed {
    type Value = Option<Property>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a property name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Property::named(v))
    }
}

/// What a hub message body held: an object (its properties are in the visitor's `fields`), or
/// another value (an error).
enum Top {
    Object,
    Other(Value),
}

/// Reads a message body: an object property by property into `fields`; a `Fields::set` error
/// is kept in `failure` (the parse then stops with a placeholder error).
struct MessageVisitor<'a> {
    fields: &'a mut Fields,
    failure: &'a mut Option<ProtocolError>,
}

impl<'de> Visitor<'de> for MessageVisitor<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let fields = self.fields;
        while let Some(property) = map.next_key_seed(PropertySeed)? {
            let Some(property) = property else {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            };
            let value = map.next_value_seed(ValueSeed)?;
            if let Err(e) = fields.set(property, value) {
                *self.failure = Some(e);
                return Err(serde::de::Error::custom("invalid property"));
            }
        }
        Ok(Top::Object)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Top, E> {
        ValueVisitor.visit_bool(v).map(Top::Other)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Top, E> {
        ValueVisitor.visit_i64(v).map(Top::Other)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Top, E> {
        ValueVisitor.visit_u64(v).map(Top::Other)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Top, E> {
        ValueVisitor.visit_f64(v).map(Top::Other)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Top, E> {
        ValueVisitor.visit_str(v).map(Top::Other)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Top, E> {
        ValueVisitor.visit_unit().map(Top::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top, A::Error> {
        ValueVisitor.visit_seq(seq).map(Top::Other)
    }
}

/// The properties of one message, as read so far.
#[derive(Default)]
struct Fields {
    message_type: Option<i32>,
    invocation_id: Option<String>,
    target: Option<String>,
    error: Option<String>,
    allow_reconnect: bool,
    result: Option<Value>,
    item: Option<Value>,
    arguments: Option<Vec<Value>>,
    stream_ids: Option<Vec<String>>,
    headers: Headers,
    sequence_id: Option<i64>,
}

impl Fields {
    fn set(&mut self, property: Property, value: Value) -> Result<(), ProtocolError> {
        match property {
            Property::Type => {
                let number = expect_number(&value, "type")?;
                let n = number
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| ProtocolError::new("Expected 'type' to be an Int32."))?;
                self.message_type = Some(n);
            }
            Property::InvocationId => self.invocation_id = read_string(value, "invocationId")?,
            Property::Target => self.target = read_string(value, "target")?,
            Property::Error => self.error = read_string(value, "error")?,
            Property::AllowReconnect => match value {
                Value::Boolean(b) => self.allow_reconnect = b,
                _ => {
                    return Err(ProtocolError::new(
                        "Expected 'allowReconnect' to be true or false.",
                    ));
                }
            },
            Property::Result => self.result = Some(value),
            Property::Item => self.item = Some(value),
            Property::Arguments => match value {
                Value::Array(items) => self.arguments = Some(items),
                _ => {
                    return Err(ProtocolError::new("Expected 'arguments' to be of type Array."));
                }
            },
            Property::StreamIds => {
                let Value::Array(items) = value else {
                    return Err(ProtocolError::new("Expected 'streamIds' to be of type Array."));
                };
                let mut ids = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => ids.push(utf8(s)),
                        Value::Nil => {
                            return Err(ProtocolError::new("Null value for 'streamIds' is not valid."));
                        }
                        _ => {
                            return Err(ProtocolError::new(
                                "Expected 'streamIds' to contain only strings.",
                            ));
                        }
                    }
                }
                self.stream_ids = Some(ids);
            }
            Property::Headers => {
                let Value::Map(entries) = value else {
                    return Err(ProtocolError::new("Expected 'headers' to be of type Object."));
                };
                let mut headers: Headers = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    let key = map_key(&key).into_owned();
                    let Value::String(value) = value else {
                        return Err(ProtocolError::new(format!(
                            "Expected header '{key}' to be of type String."
                        )));
                    };
                    let value = utf8(value);
                    // A .NET dictionary indexer: the last value wins, the first position stays.
                    match headers.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = value,
                        None => headers.push((key, value)),
                    }
                }
                self.headers = headers;
            }
            Property::SequenceId => {
                let number = expect_number(&value, "sequenceId")?;
                let n = number
                    .as_i64()
                    .ok_or_else(|| ProtocolError::new("Expected 'sequenceId' to be an Int64."))?;
                self.sequence_id = Some(n);
            }
        }
        Ok(())
    }

    fn into_message(self) -> Result<Option<HubMessage>, ProtocolError> {
        let Some(message_type) = self.message_type else {
            return Err(missing("type"));
        };
        let invocation_id = self.invocation_id.filter(|id| !id.is_empty());
        let message = match message_type {
            1 => {
                let target = self
                    .target
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| missing("target"))?;
                let arguments = self.arguments.ok_or_else(|| missing("arguments"))?;
                HubMessage::Invocation {
                    headers: self.headers,
                    invocation_id,
                    target,
                    arguments,
                    stream_ids: self.stream_ids,
                }
            }
            2 => {
                let invocation_id = invocation_id.ok_or_else(|| missing("invocationId"))?;
                let item = self.item.ok_or_else(|| missing("item"))?;
                HubMessage::StreamItem {
                    headers: self.headers,
                    invocation_id,
                    item,
                }
            }
            3 => {
                let invocation_id = invocation_id.ok_or_else(|| missing("invocationId"))?;
                let result = match (self.error, self.result) {
                    (Some(_), Some(_)) => {
                        return Err(ProtocolError::new(
                            "The 'error' and 'result' properties are mutually exclusive.",
                        ));
                    }
                    (Some(error), None) => CompletionResult::Error(error),
                    (None, Some(value)) => CompletionResult::Value(value),
                    (None, None) => CompletionResult::Void,
                };
                HubMessage::Completion {
                    headers: self.headers,
                    invocation_id,
                    result,
                }
            }
            4 => {
                let invocation_id = invocation_id.ok_or_else(|| missing("invocationId"))?;
                let arguments = self.arguments.ok_or_else(|| missing("arguments"))?;
                let target = self
                    .target
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| missing("target"))?;
                HubMessage::StreamInvocation {
                    headers: self.headers,
                    invocation_id,
                    target,
                    arguments,
                    stream_ids: self.stream_ids,
                }
            }
            5 => HubMessage::CancelInvocation {
                headers: self.headers,
                invocation_id: invocation_id.ok_or_else(|| missing("invocationId"))?,
            },
            6 => HubMessage::Ping,
            7 => HubMessage::Close {
                error: self.error,
                allow_reconnect: self.allow_reconnect,
            },
            8 => HubMessage::Ack {
                sequence_id: self.sequence_id.ok_or_else(|| missing("sequenceId"))?,
            },
            9 => HubMessage::Sequence {
                sequence_id: self.sequence_id.ok_or_else(|| missing("sequenceId"))?,
            },
            // Future protocol versions may add message types; they are ignored.
            _ => return Ok(None),
        };
        Ok(Some(message))
    }
}

fn missing(property: &str) -> ProtocolError {
    ProtocolError::new(format!("Missing required property '{property}'."))
}

fn expect_number<'a>(value: &'a Value, property: &str) -> Result<&'a Value, ProtocolError> {
    match value {
        Value::Integer(_) | Value::F64(_) | Value::F32(_) => Ok(value),
        _ => Err(ProtocolError::new(format!(
            "Expected '{property}' to be of type Number."
        ))),
    }
}

/// A string property: `null` reads as absent, anything else but a string is an error.
fn read_string(value: Value, property: &str) -> Result<Option<String>, ProtocolError> {
    match value {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(Some(utf8(s))),
        _ => Err(ProtocolError::new(format!(
            "Expected '{property}' to be of type String."
        ))),
    }
}

/// JSON strings are always valid UTF-8 (serde_json checks); the lossy path is only a fallback.
fn utf8(s: rmpv::Utf8String) -> String {
    match String::from_utf8(s.into_bytes()) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// The System.Text.Json token name .NET puts in its "Expected a JSON Object" error.
fn token_name(value: &Value) -> &'static str {
    match value {
        Value::Nil => "Null",
        Value::Boolean(true) => "True",
        Value::Boolean(false) => "False",
        Value::Integer(_) | Value::F32(_) | Value::F64(_) => "Number",
        Value::String(_) | Value::Binary(_) => "String",
        Value::Array(_) => "Array",
        Value::Map(_) => "Object",
        Value::Ext(..) => "None",
    }
}

/// `,"name":` for one of our own property names (plain ASCII: nothing to escape).
fn write_key(out: &mut Vec<u8>, name: &str) {
    debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric()));
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// A JSON string exactly as serde_json writes it: `"` and `\` escaped, the control characters
/// as `\b \f \n \r \t` or `\u00xx` (lowercase hex), everything else (DEL, non-ASCII) as
/// it is. Unescaped runs are copied whole.
fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none of them needs escaping (most text).
        while let Some(word) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
            if super::json_fast::needs_escape(word) {
                break;
            }
            i += 8;
        }
        let Some(&b) = bytes.get(i) else {
            break;
        };
        i += 1;
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i - 1]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Serializes a string or a number with serde_json. Writing these into a `Vec` cannot fail (no
/// I/O error, no map keys), so the `Result` carries nothing.
fn serialize_into<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *out, value);
}

fn write_invocation_id(out: &mut Vec<u8>, id: &str) {
    if !id.is_empty() {
        write_key(out, "invocationId");
        write_str(out, id);
    }
}

fn write_headers(out: &mut Vec<u8>, headers: &Headers) {
    if headers.is_empty() {
        return;
    }
    write_key(out, "headers");
    out.push(b'{');
    for (i, (key, value)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_str(out, value);
    }
    out.push(b'}');
}

/// `target`, `arguments`, then `streamIds` only when present (Invocation and StreamInvocation).
fn write_call(out: &mut Vec<u8>, target: &str, arguments: &[Value], stream_ids: Option<&[String]>) {
    write_key(out, "target");
    write_str(out, target);
    write_key(out, "arguments");
    out.push(b'[');
    for (i, argument) in arguments.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(out, argument);
    }
    out.push(b']');
    if let Some(ids) = stream_ids {
        write_key(out, "streamIds");
        out.push(b'[');
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, id);
        }
        out.push(b']');
    }
}

/// Builds a `Value` from any self-describing deserializer, keeping map entries in order.
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::F64(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v.into()))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Binary(v.to_vec()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        ValueSeed.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed)?;
            entries.push((Value::String(key.into()), value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut every: String = (0u8..=0x7f).map(char::from).collect();
        every.push_str("é€😀\u{2028}\u{fffd}");
        for text in [every.as_str(), "", "plain", "\"\\", "a\u{0}b\u{1f}c\u{7f}"] {
            let mut ours = Vec::new();
            write_str(&mut ours, text);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
        // Each character that needs escaping, and some that do not, at every place in the
        // eight-byte words the writer skips: before, inside and after a word.
        for special in [
            '"', '\\', '\n', '\u{0}', '\u{1f}', ' ', '!', '#', '[', ']', '\u{7f}', 'é', '😀',
        ] {
            for at in 0..20 {
                let mut text: String = "abcdefghijklmnopqrs".chars().take(at).collect();
                text.push(special);
                text.push_str("tail-of-text");
                let mut ours = Vec::new();
                write_str(&mut ours, &text);
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    serde_json::to_string(&text).unwrap(),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn the_common_shapes_read_as_the_full_decoder_reads_them() {
        for text in crate::protocol::json_fast::tests::COMMON {
            let fast = crate::protocol::json_fast::decode(text.as_bytes());
            assert!(fast.is_some(), "not read by the fast path: {text}");
            assert_eq!(fast, decode_full(text.as_bytes()).unwrap(), "{text}");
        }
    }

    #[test]
    fn every_json_vector_reads_as_the_full_decoder_reads_it_or_is_left_to_it() {
        let file: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/vectors.json")).expect("vectors");
        let mut read = 0;
        for vector in file["vectors"].as_array().expect("array") {
            if vector["category"] != "json-hub" {
                continue;
            }
            let hex = vector["hex"].as_str().expect("hex");
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            let body = bytes.strip_suffix(&[0x1e]).expect("a JSON message ends with RS");
            if let Some(fast) = crate::protocol::json_fast::decode(body) {
                read += 1;
                assert_eq!(Some(fast), decode_full(body).unwrap(), "{}", vector["id"]);
            }
        }
        // The ping and the string-only invocation.
        assert_eq!(read, 2);
    }

    fn decode_str(text: &str) -> Result<Option<HubMessage>, ProtocolError> {
        decode(text.as_bytes())
    }

    fn error_of(text: &str) -> String {
        decode_str(text).expect_err(text).0
    }

    #[test]
    fn properties_in_any_order() {
        let m = decode_str(
            r#"{"arguments":[1,{"b":1,"a":2}],"target":"T","x":[{}],"type":1,"invocationId":"9"}"#,
        )
        .expect("valid")
        .expect("known type");
        assert_eq!(
            m,
            HubMessage::Invocation {
                headers: vec![],
                invocation_id: Some("9".into()),
                target: "T".into(),
                arguments: vec![
                    Value::from(1),
                    Value::Map(vec![
                        (Value::from("b"), Value::from(1)),
                        (Value::from("a"), Value::from(2))
                    ])
                ],
                stream_ids: None,
            }
        );
        // Key order survives the round trip.
        assert_eq!(
            encode(&m),
            b"{\"type\":1,\"invocationId\":\"9\",\"target\":\"T\",\"arguments\":[1,{\"b\":1,\"a\":2}]}\x1e"
        );
    }

    #[test]
    fn empty_invocation_id_is_non_blocking() {
        let m = decode_str(r#"{"type":1,"invocationId":"","target":"T","arguments":[]}"#)
            .expect("valid")
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
        assert_eq!(decode_str(r#"{"type":42,"foo":1}"#), Ok(None));
        assert_eq!(decode_str(r#"{"type":-1}"#), Ok(None));
    }

    #[test]
    fn parse_errors() {
        let cases = [
            (
                r#"{"target":"T","arguments":[]}"#,
                "Missing required property 'type'.",
            ),
            (
                r#"{"type":1,"arguments":[]}"#,
                "Missing required property 'target'.",
            ),
            (
                r#"{"type":1,"target":"","arguments":[]}"#,
                "Missing required property 'target'.",
            ),
            (
                r#"{"type":1,"target":"T"}"#,
                "Missing required property 'arguments'.",
            ),
            (
                r#"{"type":1,"target":"T","arguments":{}}"#,
                "Expected 'arguments' to be of type Array.",
            ),
            (
                r#"{"type":99,"arguments":1}"#,
                "Expected 'arguments' to be of type Array.",
            ),
            (
                r#"{"type":4,"target":"T","arguments":[]}"#,
                "Missing required property 'invocationId'.",
            ),
            (
                r#"{"type":2,"item":1}"#,
                "Missing required property 'invocationId'.",
            ),
            (
                r#"{"type":2,"invocationId":"1"}"#,
                "Missing required property 'item'.",
            ),
            (r#"{"type":3}"#, "Missing required property 'invocationId'."),
            (
                r#"{"type":5,"invocationId":""}"#,
                "Missing required property 'invocationId'.",
            ),
            (
                r#"{"type":3,"invocationId":"1","result":1,"error":"e"}"#,
                "The 'error' and 'result' properties are mutually exclusive.",
            ),
            (r#"{"type":8}"#, "Missing required property 'sequenceId'."),
            (
                r#"{"type":9,"sequenceId":"1"}"#,
                "Expected 'sequenceId' to be of type Number.",
            ),
            (r#"{"type":"1"}"#, "Expected 'type' to be of type Number."),
            (r#"{"type":null}"#, "Expected 'type' to be of type Number."),
            (r#"{"type":1.5}"#, "Expected 'type' to be an Int32."),
            (
                r#"{"type":3,"invocationId":1}"#,
                "Expected 'invocationId' to be of type String.",
            ),
            (
                r#"{"type":7,"allowReconnect":1}"#,
                "Expected 'allowReconnect' to be true or false.",
            ),
            (
                r#"{"type":5,"invocationId":"1","headers":{"a":1}}"#,
                "Expected header 'a' to be of type String.",
            ),
            (
                r#"{"type":5,"invocationId":"1","headers":[]}"#,
                "Expected 'headers' to be of type Object.",
            ),
            (
                r#"{"type":1,"target":"T","arguments":[],"streamIds":[1]}"#,
                "Expected 'streamIds' to contain only strings.",
            ),
            (
                "[1]",
                "Unexpected JSON Token Type 'Array'. Expected a JSON Object.",
            ),
            (
                "6",
                "Unexpected JSON Token Type 'Number'. Expected a JSON Object.",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(error_of(input), expected, "{input}");
        }
        for bad in [
            "",
            "{",
            "{\"type\":6",
            "{\"type\":6}}",
            "{'type':6}",
            "{\"type\":6,}",
            "nul",
        ] {
            assert!(error_of(bad).starts_with("Error reading JSON."), "{bad:?}");
        }
        assert!(decode(b"{\"type\":1,\"target\":\"\xff\",\"arguments\":[]}").is_err());
        let deep = format!(
            "{{\"type\":1,\"target\":\"T\",\"arguments\":{}{}}}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert!(error_of(&deep).starts_with("Error reading JSON."));
    }

    #[test]
    fn duplicates_last_wins_and_null_strings_are_absent() {
        let m = decode_str(r#"{"type":3,"invocationId":"1","invocationId":"2","error":null,"result":5}"#)
            .expect("valid")
            .expect("known");
        assert_eq!(
            m,
            HubMessage::completion("2", CompletionResult::Value(Value::from(5)))
        );
        let m = decode_str(r#"{"type":5,"invocationId":"1","headers":{"a":"1","b":"2","a":"3"}}"#)
            .expect("valid")
            .expect("known");
        assert_eq!(
            m,
            HubMessage::CancelInvocation {
                headers: vec![("a".into(), "3".into()), ("b".into(), "2".into())],
                invocation_id: "1".into()
            }
        );
    }

    #[test]
    fn completion_variants() {
        let c = |r| encode(&HubMessage::completion("1", r));
        assert_eq!(
            c(CompletionResult::Void),
            b"{\"type\":3,\"invocationId\":\"1\"}\x1e"
        );
        assert_eq!(
            c(CompletionResult::Error(String::new())),
            b"{\"type\":3,\"invocationId\":\"1\"}\x1e"
        );
        assert_eq!(
            c(CompletionResult::Error("e".into())),
            b"{\"type\":3,\"invocationId\":\"1\",\"error\":\"e\"}\x1e"
        );
        assert_eq!(
            c(CompletionResult::Value(Value::Nil)),
            b"{\"type\":3,\"invocationId\":\"1\",\"result\":null}\x1e"
        );
        // An empty error read from the wire is kept (the .NET parser keeps it too).
        assert_eq!(
            decode_str(r#"{"type":3,"invocationId":"1","error":""}"#),
            Ok(Some(HubMessage::completion(
                "1",
                CompletionResult::Error(String::new())
            )))
        );
    }

    #[test]
    fn value_writer() {
        let text = |v: Value| {
            let mut out = Vec::new();
            write_value(&mut out, &v);
            String::from_utf8(out).expect("utf8")
        };
        assert_eq!(text(Value::Nil), "null");
        assert_eq!(text(Value::from(-5)), "-5");
        assert_eq!(text(Value::from(u64::MAX)), "18446744073709551615");
        assert_eq!(text(Value::from(i64::MIN)), "-9223372036854775808");
        assert_eq!(text(Value::F64(1.0)), "1");
        assert_eq!(text(Value::F64(-3.0)), "-3");
        assert_eq!(text(Value::F64(1e300)), "1e+300");
        assert_eq!(text(Value::F64(0.5)), "0.5");
        assert_eq!(text(Value::F64(f64::NAN)), "null");
        assert_eq!(text(Value::F32(f32::INFINITY)), "null");
        assert_eq!(text(Value::F32(42.0)), "42");
        assert_eq!(text(Value::F32(0.1)), "0.1");
        assert_eq!(text(Value::Binary(vec![1, 2, 3, 250])), "\"AQID+g==\"");
        assert_eq!(text(Value::Ext(1, vec![1])), "null");
        assert_eq!(text(Value::from("é\u{1}\"")), "\"é\\u0001\\\"\"");
        assert_eq!(
            text(Value::String(rmpv::Utf8String::from(String::from("x")))),
            "\"x\""
        );
        assert_eq!(
            text(Value::Map(vec![
                (Value::from(1), Value::Boolean(true)),
                (Value::Nil, Value::Array(vec![])),
                (Value::Binary(vec![0]), Value::Map(vec![])),
            ])),
            "{\"1\":true,\"null\":[],\"AA==\":{}}"
        );
    }

    #[test]
    fn invalid_utf8_string_value_is_written_lossily() {
        let mut bytes = Vec::new();
        rmp::encode::write_str_len(&mut bytes, 2).expect("vec");
        bytes.extend_from_slice(&[0xff, b'a']);
        let value = rmpv::decode::read_value(&mut &bytes[..]).expect("decodes");
        let mut out = Vec::new();
        write_value(&mut out, &value);
        assert_eq!(String::from_utf8(out).expect("utf8"), "\"\u{fffd}a\"");
    }

    #[test]
    fn json_value_conversions() {
        let json: serde_json::Value = serde_json::json!({"a": [1, -2, 2.5, null, true, "s"], "b": {}});
        let value = json_to_value(&json);
        assert_eq!(value_to_json(&value), json);
        assert_eq!(value_to_json(&Value::F32(0.1)), serde_json::json!(0.1));
        assert_eq!(
            value_to_json(&Value::Binary(vec![255])),
            serde_json::json!("/w==")
        );
        assert_eq!(value_to_json(&Value::F64(f64::INFINITY)), serde_json::Value::Null);
    }

    #[test]
    fn close_and_ack_writing() {
        assert_eq!(
            encode(&HubMessage::Close {
                error: Some(String::new()),
                allow_reconnect: false
            }),
            b"{\"type\":7,\"error\":\"\"}\x1e"
        );
        assert_eq!(
            encode(&HubMessage::Ack { sequence_id: -1 }),
            b"{\"type\":8,\"sequenceId\":-1}\x1e"
        );
    }
}
