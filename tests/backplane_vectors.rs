//! Checks the backplane payload codecs (`backplane::wire` for ASP.NET Core, `backplane::sr2` for
//! SignalR 2) against every vector of the `aspnetcore-redis` and `signalr2-redis` categories:
//! decode, assert every field, re-encode byte for byte, and classify the channel when the vector
//! names one. An unknown vector id fails the test so new vectors are never skipped silently.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

// The shared loader has helpers this test does not need.
#[allow(dead_code)]
#[path = "common/vectors.rs"]
mod vectors;

use bytes::Bytes;
use switchboard::backplane::naming::{self, ChannelKind};
use switchboard::backplane::sr2::{self, Sr2CommandType, Sr2Format, Sr2Kind, Sr2Message};
use switchboard::backplane::wire::{
    self, CompletionPayload, DecodedPayload, GroupAction, GroupCommand, InvocationPayload,
};

const HUB: &str = "MyApp.Hubs.ChatHub";
const SERVER: &str = "MyServerName_02db60e5fab243b890a847fa5c4dcb29";
const CONNECTION: &str = "c3hUeXZxWm1Qb3FJbEFhQQ";
const JSON_TARGET: &[u8] = b"{\"type\":1,\"target\":\"target\",\"arguments\":[]}\x1e";
const MSGPACK_TARGET: &[u8] = b"\x0d\x96\x01\x80\xc0\xa6target\x90\x90";
const SR2_SOURCE: &str = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
const SR2_CONNECTION: &str = "0b5f2c4e-1111-2222-3333-444455556666";
const SR2_COMMAND_ID: &str = "9a1c8a0e-2d7b-4c59-8f3e-5b6a7c8d9e0f";

fn p1p2() -> Vec<(String, Bytes)> {
    vec![
        ("p1".to_string(), Bytes::from_static(&[0x2a])),
        ("p2".to_string(), Bytes::from_static(&[0x2a])),
    ]
}

/// Borrowed views of an invocation, as `encode_invocation` takes them.
fn reencode_invocation(inv: &InvocationPayload) -> Bytes {
    let excluded: Vec<&str> = inv.excluded.iter().map(String::as_str).collect();
    let ser: Vec<(&str, &[u8])> = inv
        .serializations
        .iter()
        .map(|(name, bytes)| (name.as_str(), &bytes[..]))
        .collect();
    let client_result = match (&inv.invocation_id, &inv.return_channel) {
        (Some(id), Some(channel)) => Some((id.as_str(), channel.as_str())),
        (None, None) => None,
        other => panic!("half a client result: {other:?}"),
    };
    wire::encode_invocation(&excluded, &ser, client_result)
}

/// Fills a vector's channel template for `prefix`, classifies it, and checks the kind and that
/// `decode_for_channel` picks the decoder giving `expected`.
fn check_channel(v: &vectors::Vector, bytes: &Bytes, expected_kind: ChannelKind, expected: &DecodedPayload) {
    let Some(template) = v.channel.as_deref() else {
        return;
    };
    // ":all (or :group:/:user:/:connection:)" names alternatives; the first one is the channel.
    let template = template.split(" (").next().unwrap_or(template);
    for prefix in ["", "MyApp", "p:"] {
        let wire_name = template
            .replace("{prefix}", prefix)
            .replace("{HubFullName}", HUB)
            .replace("{serverName}", SERVER)
            .replace("{connectionId}", CONNECTION);
        assert!(
            !wire_name.contains('{'),
            "{}: unfilled template {wire_name}",
            v.id
        );
        let (hub, kind) = naming::classify(prefix, &wire_name)
            .unwrap_or_else(|| panic!("{}: {wire_name} not classified", v.id));
        assert_eq!(hub, HUB, "{}", v.id);
        assert_eq!(kind, expected_kind, "{}", v.id);
        let decoded = wire::decode_for_channel(&kind, bytes).unwrap_or_else(|e| panic!("{}: {e}", v.id));
        assert_eq!(&decoded, expected, "{}", v.id);
    }
}

#[test]
fn aspnetcore_redis_vectors() {
    let mut seen = 0;
    for v in vectors::category("aspnetcore-redis") {
        let bytes = Bytes::from(v.bytes());
        let (kind, decoded) = match v.id.as_str() {
            "redis.ack.zero" | "redis.ack.fixnum" | "redis.ack.uint8" | "redis.ack.uint16"
            | "redis.ack.uint32" => {
                let expected = match v.id.as_str() {
                    "redis.ack.zero" => 0,
                    "redis.ack.fixnum" => 42,
                    "redis.ack.uint8" => 180,
                    "redis.ack.uint16" => 384,
                    _ => 70000,
                };
                let id = wire::decode_ack(&bytes).unwrap();
                assert_eq!(id, expected, "{}", v.id);
                assert_eq!(wire::encode_ack(id), bytes, "{}", v.id);
                (ChannelKind::Ack(SERVER.into()), DecodedPayload::Ack(id))
            }
            "redis.group.add" | "redis.group.remove" | "redis.group.real.add" => {
                let cmd = wire::decode_group_command(&bytes).unwrap();
                let expected = if v.id == "redis.group.real.add" {
                    GroupCommand {
                        id: 1,
                        server_name: SERVER.into(),
                        action: GroupAction::Add,
                        group: "room1".into(),
                        connection_id: CONNECTION.into(),
                    }
                } else {
                    GroupCommand {
                        id: 42,
                        server_name: "S".into(),
                        action: if v.id == "redis.group.add" {
                            GroupAction::Add
                        } else {
                            GroupAction::Remove
                        },
                        group: "G".into(),
                        connection_id: "C".into(),
                    }
                };
                assert_eq!(cmd, expected, "{}", v.id);
                assert_eq!(wire::encode_group_command(&cmd), bytes, "{}", v.id);
                (ChannelKind::InternalGroups, DecodedPayload::GroupCommand(cmd))
            }
            "redis.invocation.no_excluded"
            | "redis.invocation.one_excluded"
            | "redis.invocation.many_excluded" => {
                let inv = wire::decode_invocation(&bytes).unwrap();
                let excluded: &[&str] = match v.id.as_str() {
                    "redis.invocation.no_excluded" => &[],
                    "redis.invocation.one_excluded" => &["a"],
                    _ => &["a", "b", "c", "d", "e", "f"],
                };
                assert_eq!(inv.excluded, excluded, "{}", v.id);
                assert_eq!(inv.serializations, p1p2(), "{}", v.id);
                assert_eq!(inv.invocation_id, None, "{}", v.id);
                assert_eq!(inv.return_channel, None, "{}", v.id);
                assert_eq!(reencode_invocation(&inv), bytes, "{}", v.id);
                (ChannelKind::All, DecodedPayload::Invocation(inv))
            }
            "redis.invocation.real.all" => {
                let inv = wire::decode_invocation(&bytes).unwrap();
                assert!(inv.excluded.is_empty());
                let names: Vec<&str> = inv.serializations.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names, ["json", "messagepack"]);
                assert_eq!(inv.serialization("json").map(|b| &b[..]), Some(JSON_TARGET));
                assert_eq!(
                    inv.serialization("messagepack").map(|b| &b[..]),
                    Some(MSGPACK_TARGET)
                );
                assert_eq!((&inv.invocation_id, &inv.return_channel), (&None, &None));
                assert_eq!(reencode_invocation(&inv), bytes);
                let direct = wire::encode_invocation(
                    &[],
                    &[("json", JSON_TARGET), ("messagepack", MSGPACK_TARGET)],
                    None,
                );
                assert_eq!(direct, bytes);
                (ChannelKind::All, DecodedPayload::Invocation(inv))
            }
            "redis.invocation.real.all_except" => {
                let inv = wire::decode_invocation(&bytes).unwrap();
                assert_eq!(inv.excluded, [CONNECTION]);
                assert_eq!(inv.serializations.len(), 1);
                assert_eq!(inv.serialization("json").map(|b| &b[..]), Some(JSON_TARGET));
                assert_eq!((&inv.invocation_id, &inv.return_channel), (&None, &None));
                assert_eq!(reencode_invocation(&inv), bytes);
                (ChannelKind::All, DecodedPayload::Invocation(inv))
            }
            "redis.invocation.real.client_result" => {
                let inv = wire::decode_invocation(&bytes).unwrap();
                assert!(inv.excluded.is_empty());
                assert_eq!(inv.serializations.len(), 1);
                let json = inv.serialization("json").unwrap();
                assert_eq!(
                    &json[..],
                    &b"{\"type\":1,\"invocationId\":\"abc\",\"target\":\"Echo\",\"arguments\":[\"hi\"]}\x1e"
                        [..]
                );
                assert_eq!(inv.invocation_id.as_deref(), Some("abc"));
                let channel = format!("{HUB}:internal:return:{SERVER}");
                assert_eq!(inv.return_channel.as_deref(), Some(channel.as_str()));
                // The return channel is logical (no prefix): it classifies with the empty prefix.
                assert_eq!(
                    naming::classify("", &channel),
                    Some((HUB.to_string(), ChannelKind::Return(SERVER.into())))
                );
                assert_eq!(reencode_invocation(&inv), bytes);
                (
                    ChannelKind::Connection(CONNECTION.into()),
                    DecodedPayload::Invocation(inv),
                )
            }
            "redis.completion.json" | "redis.completion.msgpack" => {
                let done = wire::decode_completion(&bytes).unwrap();
                let (protocol, message): (&str, &[u8]) = if v.id == "redis.completion.json" {
                    ("json", b"{\"type\":3,\"invocationId\":\"1\",\"result\":1}")
                } else {
                    ("messagepack", b"\x95\x03\x80\xa3xyz\x03\x2a")
                };
                assert_eq!(done.protocol, protocol, "{}", v.id);
                assert_eq!(&done.message[..], message, "{}", v.id);
                assert_eq!(
                    wire::encode_completion(&done.protocol, &done.message),
                    bytes,
                    "{}",
                    v.id
                );
                let expected = CompletionPayload {
                    protocol: protocol.into(),
                    message: Bytes::copy_from_slice(message),
                };
                assert_eq!(done, expected);
                (
                    ChannelKind::Return(SERVER.into()),
                    DecodedPayload::Completion(done),
                )
            }
            other => panic!("unknown aspnetcore-redis vector {other}: add its checks here"),
        };
        check_channel(&v, &bytes, kind, &decoded);
        seen += 1;
    }
    assert_eq!(seen, 16);
}

fn sr2_hub_broadcast_message() -> Sr2Message {
    Sr2Message {
        source: SR2_SOURCE.into(),
        key: "h-ChatHub".into(),
        value: Bytes::from_static(br#"{"H":"ChatHub","M":"broadcastMessage","A":["alice","hi"]}"#),
        command_id: String::new(),
        wait_for_ack: false,
        is_ack: false,
        filter: String::new(),
    }
}

#[test]
fn signalr2_redis_vectors() {
    let mut seen = 0;
    for v in vectors::category("signalr2-redis") {
        let bytes = v.bytes();
        let payload = sr2::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", v.id));
        assert_eq!(payload.messages.len(), 1, "{}", v.id);
        assert_eq!(payload.server_creation_ticks, 638_396_640_000_000_000, "{}", v.id);
        if let Some(ticks) = &v.ticks {
            assert_eq!(ticks.as_i64(), Some(payload.server_creation_ticks), "{}", v.id);
        }
        let m = &payload.messages[0];
        match v.id.as_str() {
            "sr2.redis.hub_broadcast" | "sr2.redis.v2_0_format" => {
                let format = if v.id == "sr2.redis.hub_broadcast" {
                    Sr2Format::V21
                } else {
                    Sr2Format::V20
                };
                assert_eq!((payload.id, payload.format), (42, format), "{}", v.id);
                assert_eq!(*m, sr2_hub_broadcast_message(), "{}", v.id);
                assert_eq!(
                    m.kind(),
                    Sr2Kind::HubBroadcast {
                        hub: "ChatHub".into()
                    }
                );
                let inv = m.hub_invocation().unwrap();
                assert_eq!(
                    (inv.hub.as_str(), inv.method.as_str()),
                    ("ChatHub", "broadcastMessage")
                );
                assert_eq!(inv.args, [serde_json::json!("alice"), serde_json::json!("hi")]);
                assert_eq!(inv.state, None);
            }
            "sr2.redis.group_add_command" => {
                assert_eq!((payload.id, payload.format), (43, Sr2Format::V21));
                assert_eq!(m.source, SR2_SOURCE);
                assert_eq!(m.key, format!("c-{SR2_CONNECTION}"));
                assert_eq!(m.command_id, SR2_COMMAND_ID);
                assert!(m.wait_for_ack);
                assert!(!m.is_ack);
                assert_eq!(m.filter, "");
                assert_eq!(
                    m.kind(),
                    Sr2Kind::Command {
                        command_id: SR2_COMMAND_ID.into(),
                        connection: Some(SR2_CONNECTION.into())
                    }
                );
                let cmd = m.command().unwrap();
                assert_eq!(cmd.id, SR2_COMMAND_ID);
                assert_eq!(cmd.command_type, Sr2CommandType::AddToGroup);
                assert_eq!(cmd.value.as_deref(), Some("hg-ChatHub.room1"));
                assert!(cmd.wait_for_ack);
                assert_eq!(cmd.hub_group(), Some(("ChatHub", "room1")));
            }
            "sr2.redis.ack" => {
                assert_eq!((payload.id, payload.format), (44, Sr2Format::V21));
                assert_eq!(m.source, SR2_CONNECTION);
                assert_eq!(m.key, sr2::ACK_KEY);
                assert!(m.value.is_empty());
                assert_eq!(m.command_id, SR2_COMMAND_ID);
                assert!(!m.wait_for_ack);
                assert!(m.is_ack);
                assert_eq!(m.filter, "");
                assert_eq!(
                    m.kind(),
                    Sr2Kind::Ack {
                        command_id: SR2_COMMAND_ID.into()
                    }
                );
            }
            other => panic!("unknown signalr2-redis vector {other}: add its checks here"),
        }
        assert_eq!(sr2::encode(&payload), bytes, "{}", v.id);
        assert_eq!(
            sr2::decode_as(&bytes, payload.format).unwrap(),
            payload,
            "{}",
            v.id
        );
        // SR2 uses one channel, the event key: not an ASP.NET Core backplane channel.
        if let Some(channel) = &v.channel {
            assert!(channel.starts_with("<eventKey>"), "{}: {channel}", v.id);
            assert_eq!(naming::classify("", "AppName"), None);
        }
        seen += 1;
    }
    assert_eq!(seen, 4);
}
