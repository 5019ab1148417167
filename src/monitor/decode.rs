//! Decodes one tapped backplane message into a [`TrafficEntry`], with the backplane codecs:
//! ASP.NET Core channels by name (`backplane::naming::classify`) and payload
//! (`backplane::wire::decode_for_channel`), SignalR 2 messages (`backplane::sr2`), Switchboard
//! heartbeats, and anything else as text or hex. The detail pane's rendering (`detail`,
//! `hex_dump`) lives in `monitor::detail` and is re-exported here.
//!
//! Called by the tap off the UI thread (`decode`).
//! Pure: no I/O, no clocks; never panics on bad bytes (every codec used is bounds-checked).

use bytes::Bytes;
use serde_json::Value as Json;

use super::model::traces::find_marker;
use super::model::{EntryKind, TrafficEntry};
use crate::backplane::naming::{self, ChannelKind};
use crate::backplane::sr2::{self, Sr2CommandType, Sr2Kind, Sr2Message, Sr2Payload};
use crate::backplane::wire::{self, DecodedPayload, GroupAction, InvocationPayload};
use crate::protocol::framing::read_varint;
use crate::protocol::{CompletionResult, HubMessage, Protocol, RECORD_SEPARATOR, json as pjson};

/// Characters of arguments or text shown in a summary line; the detail pane has the rest.
const SUMMARY_CHARS: usize = 120;

/// Bytes of a binary payload shown as hex in a summary.
const SUMMARY_HEX_BYTES: usize = 32;

/// Decodes a message the tap received at `at_ms` on wire channel `channel`, where the backplane's
/// channel prefix is `prefix`.
pub fn decode(prefix: &str, channel: &str, payload: &[u8], at_ms: u64) -> TrafficEntry {
    let mut entry = TrafficEntry::new(at_ms, channel, EntryKind::Other, payload.to_vec());
    if naming::is_nodes_channel(prefix, channel) {
        decode_heartbeat(&mut entry, payload);
    } else if let Some((hub, kind)) = naming::classify(prefix, channel) {
        entry.hub = Some(hub);
        decode_core(&mut entry, &kind, payload);
    } else if let Ok(decoded) = sr2::decode(payload) {
        decode_sr2(&mut entry, &decoded);
    } else {
        entry.summary = text_or_hex(payload);
        entry.trace = std::str::from_utf8(payload).ok().and_then(find_marker);
    }
    if entry.trace.is_none() {
        entry.trace = entry.args.as_deref().and_then(find_marker);
    }
    entry
}

fn fail(entry: &mut TrafficEntry, error: String) {
    entry.summary = format!("undecodable: {error}");
    entry.error = Some(error);
}

fn decode_heartbeat(entry: &mut TrafficEntry, payload: &[u8]) {
    entry.kind = EntryKind::Heartbeat;
    match serde_json::from_slice::<super::Announcement>(payload) {
        Ok(a) => {
            entry.hub = (!a.hub.is_empty()).then(|| a.hub.clone());
            entry.scope = Some(a.node_name.clone());
            let plural = if a.connections == 1 { "" } else { "s" };
            entry.summary = format!(
                "{} ({}) {} client{plural}",
                a.node_name, a.server_name, a.connections
            );
        }
        Err(e) => fail(entry, format!("heartbeat is not a node announcement: {e}")),
    }
}

fn entry_kind(kind: &ChannelKind) -> EntryKind {
    match kind {
        ChannelKind::All => EntryKind::All,
        ChannelKind::Connection(_) => EntryKind::Connection,
        ChannelKind::Group(_) => EntryKind::Group,
        ChannelKind::User(_) => EntryKind::User,
        ChannelKind::InternalGroups => EntryKind::Groups,
        ChannelKind::Ack(_) => EntryKind::Ack,
        ChannelKind::Return(_) => EntryKind::Return,
    }
}

/// The channel kind for an entry kind, for re-decoding (the decoder only needs the variant).
pub(super) fn channel_kind(kind: EntryKind) -> Option<ChannelKind> {
    Some(match kind {
        EntryKind::All => ChannelKind::All,
        EntryKind::Connection => ChannelKind::Connection(String::new()),
        EntryKind::Group => ChannelKind::Group(String::new()),
        EntryKind::User => ChannelKind::User(String::new()),
        EntryKind::Groups => ChannelKind::InternalGroups,
        EntryKind::Ack => ChannelKind::Ack(String::new()),
        EntryKind::Return => ChannelKind::Return(String::new()),
        _ => return None,
    })
}

fn decode_core(entry: &mut TrafficEntry, kind: &ChannelKind, payload: &[u8]) {
    entry.kind = entry_kind(kind);
    entry.scope = match kind {
        ChannelKind::Connection(s) | ChannelKind::Group(s) | ChannelKind::User(s) => Some(s.clone()),
        ChannelKind::Ack(s) | ChannelKind::Return(s) => Some(s.clone()),
        ChannelKind::All | ChannelKind::InternalGroups => None,
    };
    let decoded = match wire::decode_for_channel(kind, &Bytes::copy_from_slice(payload)) {
        Ok(decoded) => decoded,
        Err(e) => return fail(entry, e.to_string()),
    };
    match decoded {
        DecodedPayload::Invocation(inv) => {
            entry.excluded = inv.excluded.clone();
            let Some((protocol, bytes)) = preferred_serialization(&inv) else {
                let names: Vec<&str> = inv.serializations.iter().map(|(n, _)| n.as_str()).collect();
                return fail(
                    entry,
                    format!("no json or messagepack serialization (has: {})", names.join(", ")),
                );
            };
            match unframe_and_decode(protocol, bytes) {
                Ok(message) => {
                    describe_message(entry, &message);
                    if let Some(id) = &inv.invocation_id {
                        entry.summary.push_str(&format!(" [client result {id}]"));
                    }
                }
                Err(e) => fail(entry, format!("{} serialization: {e}", protocol.name())),
            }
        }
        DecodedPayload::GroupCommand(c) => {
            let verb = match c.action {
                GroupAction::Add => "add",
                GroupAction::Remove => "remove",
            };
            let dir = if c.action == GroupAction::Add {
                "to"
            } else {
                "from"
            };
            entry.scope = Some(c.group.clone());
            entry.summary = format!(
                "{verb} {} {dir} {} (from {}, id {})",
                c.connection_id, c.group, c.server_name, c.id
            );
        }
        DecodedPayload::Ack(id) => entry.summary = format!("ack {id}"),
        DecodedPayload::Completion(c) => {
            let Some(protocol) = Protocol::from_name(&c.protocol) else {
                return fail(entry, format!("completion in unknown protocol {:?}", c.protocol));
            };
            match unframe_and_decode(protocol, &c.message) {
                Ok(message) => describe_message(entry, &message),
                Err(e) => fail(entry, format!("{} completion: {e}", protocol.name())),
            }
        }
    }
}

fn preferred_serialization(inv: &InvocationPayload) -> Option<(Protocol, &Bytes)> {
    Protocol::ALL
        .iter()
        .find_map(|p| inv.serialization(p.name()).map(|bytes| (*p, bytes)))
}

/// Decodes one framed (or, as in the upstream test vectors, unframed) hub message.
pub(super) fn unframe_and_decode(protocol: Protocol, bytes: &[u8]) -> Result<HubMessage, String> {
    let body = match protocol {
        Protocol::Json => match bytes.iter().position(|&b| b == RECORD_SEPARATOR) {
            Some(end) => &bytes[..end],
            None => bytes,
        },
        Protocol::MessagePack => match read_varint(bytes) {
            Ok(Some((len, prefix))) if prefix.checked_add(len) == Some(bytes.len()) => &bytes[prefix..],
            _ => bytes,
        },
    };
    match protocol.decode(body) {
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err("message of an unknown type".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn describe_message(entry: &mut TrafficEntry, message: &HubMessage) {
    match message {
        HubMessage::Invocation {
            target, arguments, ..
        }
        | HubMessage::StreamInvocation {
            target, arguments, ..
        } => {
            let args: Vec<Json> = arguments.iter().map(pjson::value_to_json).collect();
            entry.method = Some(target.clone());
            entry.summary = call_summary(target, &args);
            entry.args = Some(Json::Array(args).to_string());
        }
        HubMessage::Completion {
            invocation_id,
            result,
            ..
        } => {
            entry.summary = match result {
                CompletionResult::Void => format!("completion {invocation_id}: void"),
                CompletionResult::Value(v) => {
                    let v = pjson::value_to_json(v);
                    let text = truncate(&v.to_string(), SUMMARY_CHARS);
                    entry.args = Some(Json::Array(vec![v]).to_string());
                    format!("completion {invocation_id}: {text}")
                }
                CompletionResult::Error(e) => {
                    format!("completion {invocation_id}: error {}", truncate(e, SUMMARY_CHARS))
                }
            };
        }
        other => entry.summary = format!("hub message of type {}", other.type_id()),
    }
}

/// `Method(arg1, arg2)` with the arguments as compact JSON, cut at [`SUMMARY_CHARS`].
fn call_summary(method: &str, args: &[Json]) -> String {
    let joined: Vec<String> = args.iter().map(Json::to_string).collect();
    format!("{method}({})", truncate(&joined.join(", "), SUMMARY_CHARS))
}

/// At most `max` characters of `text`, with `…` when cut (always on a char boundary).
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn text_or_hex(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) => truncate(text, SUMMARY_CHARS),
        Err(_) if payload.len() > SUMMARY_HEX_BYTES => {
            format!(
                "{} … ({} bytes)",
                hex(&payload[..SUMMARY_HEX_BYTES]),
                payload.len()
            )
        }
        Err(_) => hex(payload),
    }
}

fn decode_sr2(entry: &mut TrafficEntry, payload: &Sr2Payload) {
    entry.kind = EntryKind::Sr2;
    let Some(first) = payload.messages.first() else {
        entry.summary = format!("empty scale-out message (id {})", payload.id);
        return;
    };
    entry.excluded = first.excluded_signals().map(str::to_owned).collect();
    let kind = first.kind();
    let (hub, scope) = match &kind {
        Sr2Kind::HubBroadcast { hub } => (Some(hub.clone()), None),
        Sr2Kind::HubConnection { hub, connection: s }
        | Sr2Kind::HubUser { hub, user: s }
        | Sr2Kind::HubGroup { hub, group: s } => (Some(hub.clone()), Some(s.clone())),
        Sr2Kind::Connection { id } => (None, Some(id.clone())),
        Sr2Kind::Command { connection, .. } => (None, connection.clone()),
        Sr2Kind::PersistentConnection { name } | Sr2Kind::PersistentConnectionGroup { name } => {
            (None, Some(name.clone()))
        }
        Sr2Kind::Ack { .. } | Sr2Kind::Other => (None, None),
    };
    entry.hub = hub;
    entry.scope = scope;
    entry.summary = sr2_summary(entry, first, &kind);
    if payload.messages.len() > 1 {
        entry
            .summary
            .push_str(&format!(" +{} more", payload.messages.len() - 1));
    }
    if entry.trace.is_none() {
        entry.trace = payload
            .messages
            .iter()
            .find_map(|m| std::str::from_utf8(&m.value).ok().and_then(find_marker));
    }
}

fn sr2_summary(entry: &mut TrafficEntry, m: &Sr2Message, kind: &Sr2Kind) -> String {
    let value_text = || truncate(&String::from_utf8_lossy(&m.value), SUMMARY_CHARS);
    match kind {
        Sr2Kind::HubBroadcast { .. }
        | Sr2Kind::HubConnection { .. }
        | Sr2Kind::HubUser { .. }
        | Sr2Kind::HubGroup { .. } => match m.hub_invocation() {
            Ok(inv) => {
                entry.hub = Some(inv.hub.clone());
                entry.method = Some(inv.method.clone());
                let summary = call_summary(&inv.method, &inv.args);
                entry.args = Some(Json::Array(inv.args).to_string());
                summary
            }
            Err(e) => {
                entry.error = Some(e.to_string());
                format!("undecodable: {e}")
            }
        },
        Sr2Kind::Ack { command_id } => format!("ack {command_id}"),
        Sr2Kind::Command { connection, .. } => match m.command() {
            Ok(c) => {
                let conn = connection.as_deref().unwrap_or("?");
                let group = c.hub_group().map(|(hub, group)| {
                    entry.hub = Some(hub.to_string());
                    group.to_string()
                });
                let group = group.or(c.value.clone()).unwrap_or_default();
                match c.command_type {
                    Sr2CommandType::AddToGroup => format!("add {conn} to {group} (command {})", c.id),
                    Sr2CommandType::RemoveFromGroup => {
                        format!("remove {conn} from {group} (command {})", c.id)
                    }
                    Sr2CommandType::Abort => format!("abort {conn} (command {})", c.id),
                    Sr2CommandType::Initializing => format!("initializing {conn} (command {})", c.id),
                    Sr2CommandType::Unknown(n) => format!("command type {n} for {conn} (command {})", c.id),
                }
            }
            Err(e) => {
                entry.error = Some(e.to_string());
                format!("undecodable: {e}")
            }
        },
        Sr2Kind::Connection { id } => format!("to connection {id}: {}", value_text()),
        Sr2Kind::PersistentConnection { name } => format!("persistent connection {name}: {}", value_text()),
        Sr2Kind::PersistentConnectionGroup { name } => format!("persistent group {name}: {}", value_text()),
        Sr2Kind::Other => format!("key {}: {}", m.key, value_text()),
    }
}

// ---------------------------------------------------------------------------------------------
// Detail

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::sr2::Sr2Format;
    use crate::backplane::wire::GroupCommand;
    use crate::monitor::detail::{detail, hex_dump};
    use crate::protocol::{Value, msgpack};
    use serde_json::json;

    const PREFIX: &str = "app:";
    const HUB: &str = "Switchboard.ChatHub";

    fn vector(id: &str) -> Vec<u8> {
        let file: Json =
            serde_json::from_str(include_str!("../../tests/data/vectors.json")).expect("vectors");
        let hex = file["vectors"]
            .as_array()
            .expect("array")
            .iter()
            .find(|v| v["id"] == id)
            .and_then(|v| v["hex"].as_str())
            .expect("vector present")
            .to_string();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn chan(rest: &str) -> String {
        format!("{PREFIX}{HUB}:{rest}")
    }

    fn chat(args: &[&str]) -> HubMessage {
        HubMessage::invocation("ReceiveMessage", args.iter().map(|a| Value::from(*a)).collect())
    }

    #[test]
    fn json_invocation_on_group_channel() {
        let json = Protocol::Json.encode(&chat(&["ann", "hi"]));
        let mp = Protocol::MessagePack.encode(&chat(&["ann", "hi"]));
        let payload = wire::encode_invocation(
            &["c1"],
            &[("json", json.as_slice()), ("messagepack", mp.as_slice())],
            None,
        );
        let e = decode(PREFIX, &chan("group:room"), &payload, 7);
        assert_eq!(e.kind, EntryKind::Group);
        assert_eq!(e.hub.as_deref(), Some(HUB));
        assert_eq!(e.scope.as_deref(), Some("room"));
        assert_eq!(e.method.as_deref(), Some("ReceiveMessage"));
        assert_eq!(e.args.as_deref(), Some(r#"["ann","hi"]"#));
        assert_eq!(e.excluded, vec!["c1".to_string()]);
        assert_eq!(e.summary, r#"ReceiveMessage("ann", "hi")"#);
        assert_eq!((e.at_ms, e.size, e.error.clone()), (7, payload.len(), None));
        let d = detail(&e);
        assert_eq!(d["serializations"].as_array().map(Vec::len), Some(2));
        assert_eq!(d["serializations"][1]["message"]["target"], "ReceiveMessage");
        assert_eq!(d["excluded"][0], "c1");
    }

    #[test]
    fn messagepack_only_invocation_and_trace_marker() {
        let text = format!("hello {}", crate::monitor::model::traces::marker(0xbeef));
        let mp = msgpack::encode(&chat(&["probe", &text]));
        let payload = wire::encode_invocation(&[], &[("messagepack", mp.as_slice())], None);
        let e = decode(PREFIX, &chan("all"), &payload, 1);
        assert_eq!(e.kind, EntryKind::All);
        assert_eq!(e.method.as_deref(), Some("ReceiveMessage"));
        assert_eq!(e.trace, Some(0xbeef));
    }

    #[test]
    fn long_arguments_are_cut_on_a_char_boundary() {
        let long = "é".repeat(300);
        let json = Protocol::Json.encode(&chat(&[&long]));
        let payload = wire::encode_invocation(&[], &[("json", json.as_slice())], None);
        let e = decode(PREFIX, &chan("user:bob"), &payload, 1);
        assert_eq!(e.scope.as_deref(), Some("bob"));
        assert!(e.summary.ends_with("…)"), "{}", e.summary);
        assert!(e.summary.chars().count() < 140);
        assert_eq!(e.args.as_deref().map(|a| a.chars().count()), Some(304));
    }

    #[test]
    fn real_vectors_decode() {
        let e = decode(PREFIX, &chan("all"), &vector("redis.invocation.real.all"), 1);
        assert_eq!(
            (e.kind, e.method.as_deref(), e.error.as_deref()),
            (EntryKind::All, Some("target"), None)
        );

        let e = decode(
            PREFIX,
            &chan("connection:abc"),
            &vector("redis.invocation.real.client_result"),
            1,
        );
        assert_eq!(e.kind, EntryKind::Connection);
        assert!(e.summary.contains("[client result"), "{}", e.summary);
        assert!(detail(&e)["return_channel"].is_string());

        let e = decode(PREFIX, &chan("internal:groups"), &vector("redis.group.add"), 1);
        assert_eq!(e.summary, "add C to G (from S, id 42)");
        assert_eq!(e.scope.as_deref(), Some("G"));
        assert_eq!(detail(&e)["group_command"]["action"], "add");
        let e = decode(PREFIX, &chan("internal:groups"), &vector("redis.group.remove"), 1);
        assert_eq!(e.summary, "remove C from G (from S, id 42)");

        let e = decode(PREFIX, &chan("internal:ack:srv"), &vector("redis.ack.uint32"), 1);
        assert_eq!(
            (e.kind, e.summary.as_str(), e.scope.as_deref()),
            (EntryKind::Ack, "ack 70000", Some("srv"))
        );

        let e = decode(
            PREFIX,
            &chan("internal:return:srv"),
            &vector("redis.completion.msgpack"),
            1,
        );
        assert_eq!(e.kind, EntryKind::Return);
        assert_eq!(e.summary, "completion xyz: 42");
        let e = decode(
            PREFIX,
            &chan("internal:return:srv"),
            &vector("redis.completion.json"),
            1,
        );
        assert_eq!(e.error, None, "{}", e.summary);
        assert!(e.summary.starts_with("completion "));

        let e = decode(PREFIX, &chan("all"), &vector("redis.invocation.no_excluded"), 1);
        assert!(e.error.as_deref().is_some_and(|t| t.contains("p1, p2")));
    }

    #[test]
    fn encoded_group_command_and_ack() {
        let cmd = GroupCommand {
            id: -3,
            server_name: "host_1".into(),
            action: GroupAction::Add,
            group: "room".into(),
            connection_id: "conn".into(),
        };
        let e = decode(
            PREFIX,
            &chan("internal:groups"),
            &wire::encode_group_command(&cmd),
            1,
        );
        assert_eq!(e.summary, "add conn to room (from host_1, id -3)");
        let e = decode(PREFIX, &chan("internal:ack:host_1"), &wire::encode_ack(5), 1);
        assert_eq!(e.summary, "ack 5");
        assert_eq!(detail(&e)["ack"], 5);
    }

    #[test]
    fn undecodable_core_payloads_keep_the_channel_kind() {
        let e = decode(PREFIX, &chan("all"), &[0x92, 0x90], 1);
        assert_eq!(e.kind, EntryKind::All);
        assert!(e.summary.starts_with("undecodable: "));
        assert!(e.error.is_some());
        assert!(detail(&e)["error"].is_string());
        let bad_json = wire::encode_invocation(&[], &[("json", b"{nope\x1e".as_slice())], None);
        let e = decode(PREFIX, &chan("all"), &bad_json, 1);
        assert!(
            e.error
                .as_deref()
                .is_some_and(|t| t.starts_with("json serialization"))
        );
    }

    #[test]
    fn sr2_vectors() {
        let e = decode(PREFIX, "AppName", &vector("sr2.redis.hub_broadcast"), 1);
        assert_eq!(e.kind, EntryKind::Sr2);
        assert_eq!(e.hub.as_deref(), Some("ChatHub"));
        assert!(e.method.is_some());
        assert_eq!(e.error, None);
        let d = detail(&e);
        assert_eq!(d["id"], 42);
        assert_eq!(d["messages"][0]["Key"], "h-ChatHub");

        let e = decode(PREFIX, "AppName", &vector("sr2.redis.group_add_command"), 1);
        assert!(e.summary.starts_with("add "), "{}", e.summary);
        assert!(e.scope.is_some());
        let e = decode(PREFIX, "AppName", &vector("sr2.redis.ack"), 1);
        assert!(e.summary.starts_with("ack "), "{}", e.summary);
        let e = decode(PREFIX, "AppName", &vector("sr2.redis.v2_0_format"), 1);
        assert_eq!(e.kind, EntryKind::Sr2);
        assert_eq!(detail(&e)["format"], "2.0");
    }

    #[test]
    fn sr2_encoded_multi_message_with_filter() {
        let msg = |key: &str, value: &str, filter: &str| Sr2Message {
            source: "src".into(),
            key: key.into(),
            value: Bytes::from(value.to_string()),
            filter: filter.into(),
            ..Sr2Message::default()
        };
        let payload = Sr2Payload {
            id: 9,
            format: Sr2Format::V21,
            messages: vec![
                msg(
                    "hg-ChatHub.room",
                    r#"{"H":"ChatHub","M":"send","A":["x [sb-trace 10]"]}"#,
                    "c-a|c-b",
                ),
                msg("c-z", "{}", ""),
            ],
            server_creation_ticks: sr2::UNIX_EPOCH_TICKS,
        };
        let e = decode(PREFIX, "AppName", &sr2::encode(&payload), 1);
        assert_eq!(e.scope.as_deref(), Some("room"));
        assert_eq!(e.excluded, vec!["c-a".to_string(), "c-b".to_string()]);
        assert_eq!(e.summary, r#"send("x [sb-trace 10]") +1 more"#);
        assert_eq!(e.trace, Some(16));
    }

    #[test]
    fn heartbeat() {
        let hb = json!({"type":"switchboard.node","server_name":"h_1","node_name":"node-a","hub":HUB,"connections":3});
        let e = decode(PREFIX, "app:switchboard:nodes", hb.to_string().as_bytes(), 1);
        assert_eq!(e.kind, EntryKind::Heartbeat);
        assert_eq!(e.summary, "node-a (h_1) 3 clients");
        assert_eq!(
            (e.scope.as_deref(), e.hub.as_deref()),
            (Some("node-a"), Some(HUB))
        );
        assert_eq!(detail(&e)["heartbeat"]["connections"], 3);
        let e = decode(PREFIX, "app:switchboard:nodes", b"[1", 1);
        assert_eq!(e.kind, EntryKind::Heartbeat);
        assert!(e.error.is_some());
    }

    #[test]
    fn other_channels_as_text_or_hex() {
        let e = decode(PREFIX, "elsewhere", b"plain text", 1);
        assert_eq!((e.kind, e.summary.as_str()), (EntryKind::Other, "plain text"));
        assert_eq!(detail(&e)["text"], "plain text");
        let e = decode(PREFIX, "elsewhere", &[0xff, 0x00, 0x10], 1);
        assert_eq!(e.summary, "ff 00 10");
        let e = decode(PREFIX, "elsewhere", &[0xff; 40], 1);
        assert!(e.summary.ends_with("(40 bytes)"));
        // A digit-and-space start that is not a consistent SR2 layout stays Other.
        let e = decode(PREFIX, "elsewhere", b"12 hello", 1);
        assert_eq!(e.kind, EntryKind::Other);
    }

    #[test]
    fn garbage_and_truncations_never_panic() {
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), vec![0xc1], vec![0xdd, 0xff, 0xff, 0xff, 0xff]];
        for id in [
            "redis.invocation.real.all",
            "redis.invocation.real.client_result",
            "sr2.redis.hub_broadcast",
        ] {
            let v = vector(id);
            inputs.extend((0..v.len()).map(|n| v[..n].to_vec()));
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            inputs.push(
                x.to_le_bytes()
                    .iter()
                    .cycle()
                    .take((x % 64) as usize)
                    .copied()
                    .collect(),
            );
        }
        let channels = [
            chan("all"),
            chan("internal:groups"),
            chan("internal:ack:s"),
            chan("internal:return:s"),
        ];
        for input in &inputs {
            for c in channels
                .iter()
                .map(String::as_str)
                .chain(["AppName", "app:switchboard:nodes"])
            {
                let e = decode(PREFIX, c, input, 1);
                let _ = detail(&e);
                assert_eq!(e.size, input.len());
            }
        }
    }

    #[test]
    fn hex_dump_layout() {
        let dump = hex_dump(b"0123456789abcdefXYZ", 100);
        let lines: Vec<&str> = dump.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("00000000  30 31"));
        assert!(lines[0].ends_with("|0123456789abcdef|"));
        assert!(lines[1].starts_with("00000010  58 59 5a"));
        assert!(hex_dump(&[0u8; 40], 16).ends_with("… 24 more bytes\n"));
        assert_eq!(hex_dump(&[], 16), "");
    }

    #[test]
    fn gap_detail() {
        let mut e = decode(PREFIX, "", b"", 1);
        e.kind = EntryKind::Gap;
        e.gap = Some((1000, 3500));
        assert_eq!(detail(&e)["gap"]["seconds"], 2.5);
    }
}
