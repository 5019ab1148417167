//! The detail pane's rendering of one traffic entry: the whole payload as a JSON document,
//! decoded again from the entry's kind, channel and payload ([`detail`]), and a classic hex dump
//! ([`hex_dump`]). Split from `decode`, which turns tapped messages into entries off the UI
//! thread; this runs on the UI thread, on demand, for the one selected entry.
//!
//! Pure: no I/O, no clocks; never panics on bad bytes. Uses `decode`'s helpers and the backplane
//! codecs.

use bytes::Bytes;
use serde_json::{Value as Json, json};

use super::decode::{channel_kind, hex, text_or_hex, unframe_and_decode};
use super::model::{EntryKind, TrafficEntry};
use crate::backplane::naming::ChannelKind;
use crate::backplane::sr2::{self, Sr2Format, Sr2Payload};
use crate::backplane::wire::{self, DecodedPayload, GroupAction};
use crate::protocol::{Protocol, RECORD_SEPARATOR, json as pjson};

/// The whole payload of `entry` as a JSON document for the detail pane, decoded again from the
/// entry's kind, channel and payload: every serialization of an invocation, excluded ids, the
/// client-result id and return channel, group command fields, the SignalR 2 message list. Gaps,
/// text and undecodable payloads give a document that says what they are.
pub fn detail(entry: &TrafficEntry) -> Json {
    let mut doc = json!({
        "channel": entry.channel,
        "kind": entry.kind.label(),
        "at_ms": entry.at_ms,
        "size": entry.size,
    });
    let body = match entry.kind {
        EntryKind::Gap => {
            let (from, to) = entry.gap.unwrap_or((0, 0));
            json!({ "gap": { "from_ms": from, "to_ms": to, "seconds": to.saturating_sub(from) as f64 / 1000.0 } })
        }
        EntryKind::Heartbeat => match serde_json::from_slice::<Json>(&entry.payload) {
            Ok(v) => json!({ "heartbeat": v }),
            Err(e) => json!({ "error": e.to_string(), "text": text_or_hex(&entry.payload) }),
        },
        EntryKind::Sr2 => match sr2::decode(&entry.payload) {
            Ok(p) => sr2_detail(&p),
            Err(e) => json!({ "error": e.to_string() }),
        },
        EntryKind::Other => match std::str::from_utf8(&entry.payload) {
            Ok(text) => json!({ "text": text }),
            Err(_) => json!({ "hex": hex(&entry.payload) }),
        },
        kind => match channel_kind(kind) {
            Some(ck) => core_detail(&ck, &entry.payload),
            None => json!({}),
        },
    };
    if let (Json::Object(doc), Json::Object(body)) = (&mut doc, body) {
        doc.extend(body);
    }
    doc
}

fn message_json(protocol: Protocol, bytes: &[u8]) -> Json {
    match unframe_and_decode(protocol, bytes) {
        // The JSON protocol's own writer gives the exact document a JSON client would receive.
        Ok(message) => {
            let mut text = pjson::encode(&message);
            if text.last() == Some(&RECORD_SEPARATOR) {
                text.pop();
            }
            serde_json::from_slice(&text).unwrap_or_else(|e| json!({ "error": e.to_string() }))
        }
        Err(e) => json!({ "error": e, "hex": hex(bytes) }),
    }
}

fn core_detail(kind: &ChannelKind, payload: &[u8]) -> Json {
    let decoded = match wire::decode_for_channel(kind, &Bytes::copy_from_slice(payload)) {
        Ok(decoded) => decoded,
        Err(e) => return json!({ "error": e.to_string() }),
    };
    match decoded {
        DecodedPayload::Invocation(inv) => {
            let serializations: Vec<Json> = inv
                .serializations
                .iter()
                .map(|(name, bytes)| {
                    let message = match Protocol::from_name(name) {
                        Some(p) => message_json(p, bytes),
                        None => json!({ "unknown_protocol": true, "hex": hex(bytes) }),
                    };
                    json!({ "protocol": name, "size": bytes.len(), "message": message })
                })
                .collect();
            json!({
                "excluded": inv.excluded,
                "invocation_id": inv.invocation_id,
                "return_channel": inv.return_channel,
                "serializations": serializations,
            })
        }
        DecodedPayload::GroupCommand(c) => json!({
            "group_command": {
                "id": c.id,
                "server_name": c.server_name,
                "action": if c.action == GroupAction::Add { "add" } else { "remove" },
                "group": c.group,
                "connection_id": c.connection_id,
            }
        }),
        DecodedPayload::Ack(id) => json!({ "ack": id }),
        DecodedPayload::Completion(c) => {
            let message = match Protocol::from_name(&c.protocol) {
                Some(p) => message_json(p, &c.message),
                None => json!({ "unknown_protocol": true, "hex": hex(&c.message) }),
            };
            json!({ "completion": { "protocol": c.protocol, "message": message } })
        }
    }
}

fn sr2_detail(p: &Sr2Payload) -> Json {
    let messages: Vec<Json> = p
        .messages
        .iter()
        .map(|m| {
            let value = match serde_json::from_slice::<Json>(&m.value) {
                Ok(v) => v,
                Err(_) => Json::String(String::from_utf8_lossy(&m.value).into_owned()),
            };
            json!({
                "Source": m.source,
                "Key": m.key,
                "Value": value,
                "CommandId": m.command_id,
                "WaitForAck": m.wait_for_ack,
                "IsAck": m.is_ack,
                "Filter": m.filter,
                "kind": format!("{:?}", m.kind()),
            })
        })
        .collect();
    json!({
        "id": p.id,
        "format": match p.format { Sr2Format::V21 => "2.1", Sr2Format::V20 => "2.0" },
        "server_creation_ticks": p.server_creation_ticks,
        "messages": messages,
    })
}

/// A classic hex dump of at most `max` bytes: offset, 16 hex bytes, ASCII (`.` for the rest),
/// and a last line saying how many bytes were left out.
pub fn hex_dump(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut out = String::new();
    for (i, chunk) in shown.chunks(16).enumerate() {
        let mut hex_col = String::with_capacity(48);
        for (j, b) in chunk.iter().enumerate() {
            if j == 8 {
                hex_col.push(' ');
            }
            hex_col.push_str(&format!("{b:02x} "));
        }
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{:08x}  {hex_col:<49} |{ascii}|\n", i * 16));
    }
    if bytes.len() > shown.len() {
        out.push_str(&format!("… {} more bytes\n", bytes.len() - shown.len()));
    }
    out
}
