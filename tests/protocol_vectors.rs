//! The client-protocol codecs against every byte-exact vector of tests/data/vectors.json in the
//! categories json-handshake, negotiate, json-hub, msgpack-hub and binary-framing.
//!
//! Each vector is framed through the `Framer` where it is a framed stream (whole and byte by
//! byte), decoded, compared with an explicitly written expected structure, and re-encoded with
//! a byte-equality assertion. Every category is iterated and every id must have a case in a
//! `match` that panics on unknown ids, so a vector added later fails loudly until it is handled.

#[allow(dead_code)]
#[path = "common/vectors.rs"]
mod vectors;

use bytes::Bytes;
use switchboard::protocol::framing::{read_varint, write_varint};
use switchboard::protocol::{
    CompletionResult, FrameError, FrameKind, Framer, HubMessage, Protocol, Value, handshake, json, msgpack,
    negotiate,
};
use vectors::{Vector, hex_encode};

/// ASP.NET Core's default `MaximumReceiveMessageSize`.
const MAX: usize = 32 * 1024;

/// The frames of `stream`, pushed in one piece.
fn frames_whole(kind: FrameKind, stream: &[u8]) -> Vec<Bytes> {
    let mut framer = Framer::new(kind, MAX);
    framer.push(stream);
    let mut out = Vec::new();
    while let Some(frame) = framer.next_frame().expect("framing") {
        out.push(frame);
    }
    assert_eq!(framer.buffered(), 0, "nothing left over");
    out
}

/// The frames of `stream`, pushed one byte at a time.
fn frames_bytewise(kind: FrameKind, stream: &[u8]) -> Vec<Bytes> {
    let mut framer = Framer::new(kind, MAX);
    let mut out = Vec::new();
    for &b in stream {
        framer.push(&[b]);
        while let Some(frame) = framer.next_frame().expect("framing") {
            out.push(frame);
        }
    }
    assert_eq!(framer.buffered(), 0, "nothing left over");
    out
}

/// The single message body of a framed vector, checked to frame the same either way.
fn single_body(kind: FrameKind, v: &Vector, stream: &[u8]) -> Vec<u8> {
    let whole = frames_whole(kind, stream);
    let bytewise = frames_bytewise(kind, stream);
    assert_eq!(whole, bytewise, "{}: framing depends on how bytes arrive", v.id);
    assert_eq!(whole.len(), 1, "{}: exactly one message", v.id);
    whole[0].to_vec()
}

fn s(text: &str) -> Value {
    Value::from(text)
}

fn invocation(id: Option<&str>, target: &str, args: Vec<Value>, streams: Option<&[&str]>) -> HubMessage {
    HubMessage::Invocation {
        headers: vec![],
        invocation_id: id.map(str::to_owned),
        target: target.into(),
        arguments: args,
        stream_ids: streams.map(|ids| ids.iter().map(|id| id.to_string()).collect()),
    }
}

fn completion(id: &str, result: CompletionResult) -> HubMessage {
    HubMessage::completion(id, result)
}

fn close(error: Option<&str>, allow_reconnect: bool) -> HubMessage {
    HubMessage::Close {
        error: error.map(str::to_owned),
        allow_reconnect,
    }
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The header set both upstream test suites use (order as written in the vectors).
fn upstream_headers() -> Vec<(String, String)> {
    headers(&[
        ("Foo", "Bar"),
        ("KeyWith\nNew\r\nLines", "Still Works"),
        ("ValueWithNewLines", "Also\nWorks\r\nFine"),
    ])
}

fn expected_json_hub(id: &str) -> HubMessage {
    use CompletionResult::{Error, Void};
    match id {
        "json.invocation.with_id" => invocation(Some("123"), "Target", vec![Value::from(1), s("Foo")], None),
        "json.invocation.non_blocking" => invocation(None, "Target", vec![Value::Boolean(true)], None),
        "json.invocation.null_arg" => invocation(None, "Target", vec![Value::Nil], None),
        "json.invocation.stream_ids" => {
            invocation(None, "Target", vec![Value::from(42)], Some(&["__test_id__"]))
        }
        "json.invocation.non_ascii" => invocation(None, "Method", vec![s("מחרוזת כלשהי")], None),
        "json.stream_item.int" => HubMessage::StreamItem {
            headers: vec![],
            invocation_id: "123".into(),
            item: Value::from(1),
        },
        "json.stream_item.null" => HubMessage::StreamItem {
            headers: vec![],
            invocation_id: "123".into(),
            item: Value::Nil,
        },
        "json.completion.result_int" => completion("123", CompletionResult::Value(Value::from(1))),
        "json.completion.result_null" => completion("123", CompletionResult::Value(Value::Nil)),
        "json.completion.void" => completion("123", Void),
        "json.completion.error" => completion("123", Error("Whoops!".into())),
        "json.stream_invocation" => HubMessage::StreamInvocation {
            headers: vec![],
            invocation_id: "123".into(),
            target: "Target".into(),
            arguments: vec![Value::from(1), s("Foo")],
            stream_ids: None,
        },
        "json.cancel_invocation" => HubMessage::CancelInvocation {
            headers: vec![],
            invocation_id: "123".into(),
        },
        "json.cancel_invocation.headers" => HubMessage::CancelInvocation {
            headers: upstream_headers(),
            invocation_id: "123".into(),
        },
        "json.ping" => HubMessage::Ping,
        "json.close" => close(None, false),
        "json.close.error" => close(Some("Error!"), false),
        "json.close.error_empty" => close(Some(""), false),
        "json.close.allow_reconnect" => close(None, true),
        "json.close.error_allow_reconnect" => close(Some("Error!"), true),
        "json.ack" => HubMessage::Ack { sequence_id: 42 },
        "json.sequence" => HubMessage::Sequence { sequence_id: 146 },
        "json.completion.unknown_method" => completion("1", Error("Unknown hub method 'Foo'".into())),
        "json.completion.binding_failure" => completion(
            "42",
            Error("Failed to invoke 'foo' due to an error on the server.".into()),
        ),
        "json.completion.binding_failure.detailed" => completion(
            "42",
            Error(
                "Failed to invoke 'foo' due to an error on the server. InvalidDataException: \
                 Invocation provides 0 argument(s) but target expects 2."
                    .into(),
            ),
        ),
        "json.completion.method_threw" => completion(
            "7",
            Error("An unexpected error occurred invoking 'Send' on the server.".into()),
        ),
        "json.close.server_error" => close(Some("Connection closed with an error."), true),
        "json.close.onconnected_threw" => close(Some("Connection closed with an error."), false),
        other => panic!("json-hub vector {other} has no expected structure: add one"),
    }
}

fn expected_msgpack_hub(id: &str) -> HubMessage {
    use CompletionResult::{Error, Void};
    match id {
        "mp.invocation.with_id_no_args" => invocation(Some("xyz"), "method", vec![], None),
        "mp.invocation.non_blocking" => invocation(None, "method", vec![], None),
        "mp.invocation.int_string_args" => {
            invocation(None, "method", vec![Value::from(42), s("string")], None)
        }
        "mp.invocation.stream_id" => invocation(None, "Target", vec![], Some(&["__test_id__"])),
        "mp.stream_item.int" => HubMessage::StreamItem {
            headers: vec![],
            invocation_id: "xyz".into(),
            item: Value::from(42),
        },
        "mp.completion.error" => completion("xyz", Error("Error not found!".into())),
        "mp.completion.error_headers" => HubMessage::Completion {
            headers: upstream_headers(),
            invocation_id: "xyz".into(),
            result: Error("Error not found!".into()),
        },
        "mp.completion.void" => completion("xyz", Void),
        "mp.completion.result_int" => completion("xyz", CompletionResult::Value(Value::from(42))),
        // rmpv keeps the float32 width, so this one re-encodes byte-exactly too.
        "mp.completion.result_float" => completion("xyz", CompletionResult::Value(Value::F32(42.0))),
        "mp.stream_invocation" => HubMessage::StreamInvocation {
            headers: vec![],
            invocation_id: "xyz".into(),
            target: "method".into(),
            arguments: vec![Value::from(42)],
            stream_ids: None,
        },
        "mp.cancel_invocation" => HubMessage::CancelInvocation {
            headers: vec![],
            invocation_id: "xyz".into(),
        },
        "mp.ping" => HubMessage::Ping,
        "mp.close" => close(None, false),
        "mp.close.error" => close(Some("Error!"), false),
        "mp.close.allow_reconnect" => close(None, true),
        "mp.close.error_allow_reconnect" => close(Some("Error!"), true),
        "mp.ack" => HubMessage::Ack { sequence_id: 42 },
        "mp.sequence" => HubMessage::Sequence { sequence_id: 146 },
        "mp.framed.invocation_target_no_args" => invocation(None, "target", vec![], None),
        "mp.doc.invocation" => invocation(Some("xyz"), "method", vec![Value::from(42)], None),
        "mp.doc.headers" => HubMessage::Invocation {
            headers: headers(&[("x", "y"), ("z", "z")]),
            invocation_id: Some("xyz".into()),
            target: "method".into(),
            arguments: vec![Value::from(42)],
            stream_ids: None,
        },
        other => panic!("msgpack-hub vector {other} has no expected structure: add one"),
    }
}

/// What a message becomes after a MessagePack round trip: the only lossy spot is Close, where
/// MessagePack writes an empty error as nil (A.7).
fn through_msgpack(message: &HubMessage) -> HubMessage {
    match message {
        HubMessage::Close {
            error: Some(error),
            allow_reconnect,
        } if error.is_empty() => HubMessage::Close {
            error: None,
            allow_reconnect: *allow_reconnect,
        },
        other => other.clone(),
    }
}

#[test]
fn json_handshake_vectors() {
    let mut checked = 0;
    for v in vectors::category("json-handshake") {
        let bytes = v.bytes();
        let body = single_body(FrameKind::Text, &v, &bytes);
        match v.id.as_str() {
            "handshake.request.json_v1" | "handshake.request.json_v2" | "handshake.request.dummy_v1" => {
                let request = handshake::parse_request(&body).expect("valid request");
                let expected = match v.id.as_str() {
                    "handshake.request.json_v1" => ("json", 1),
                    "handshake.request.json_v2" => ("json", 2),
                    _ => ("dummy", 1),
                };
                assert_eq!((request.protocol.as_str(), request.version), expected, "{}", v.id);
                assert_eq!(
                    handshake::request(&request.protocol, request.version),
                    bytes,
                    "{}",
                    v.id
                );
            }
            "handshake.response.ok" => {
                assert_eq!(handshake::parse_response(&body), Ok(None));
                assert_eq!(handshake::RESPONSE_OK, &bytes[..]);
            }
            "handshake.response.error" => {
                assert_eq!(handshake::parse_response(&body), Ok(Some("dummy".into())));
                assert_eq!(handshake::error_response("dummy"), bytes);
            }
            "handshake.response.error.unsupported_protocol" => {
                let text = handshake::unsupported_protocol("messagepack");
                assert_eq!(handshake::parse_response(&body), Ok(Some(text.clone())));
                assert_eq!(handshake::error_response(&text), bytes);
            }
            other => panic!("json-handshake vector {other} is not handled: add a case"),
        }
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn negotiate_vectors() {
    let mut checked = 0;
    for v in vectors::category("negotiate") {
        let bytes = v.bytes();
        let text = std::str::from_utf8(&bytes).expect("negotiate documents are UTF-8");
        match v.id.as_str() {
            "negotiate.response.v1" => {
                let parsed = negotiate::parse_response(&bytes).expect("client parses it");
                let id = parsed.connection_id.clone().expect("connectionId");
                let token = parsed.connection_token.clone().expect("connectionToken");
                assert_eq!(parsed.negotiate_version, 1);
                assert_eq!(parsed.transport_id(), Some(token.as_str()));
                assert_eq!((id.len(), token.len()), (22, 22));
                let names: Vec<&str> = parsed
                    .available_transports
                    .iter()
                    .map(|t| t.transport.as_str())
                    .collect();
                assert_eq!(names, ["WebSockets", "ServerSentEvents", "LongPolling"]);

                // The writer is byte-exact when given the vector's (ASP.NET Core's full) list...
                let all = [
                    negotiate::WEBSOCKETS,
                    negotiate::SERVER_SENT_EVENTS,
                    negotiate::LONG_POLLING,
                ];
                assert_eq!(negotiate::response_with_transports(1, &id, &token, &all), text);
                // ...and this node advertises WebSockets only (A.1: advertise only what is
                // implemented), so its document is the vector without the other two entries.
                let others = r#",{"transport":"ServerSentEvents","transferFormats":["Text"]},{"transport":"LongPolling","transferFormats":["Text","Binary"]}"#;
                assert!(text.contains(others));
                assert_eq!(negotiate::response(1, &id, &token), text.replace(others, ""));
            }
            "negotiate.response.error" => {
                let message =
                    "The client requested version '0', but the server does not support this version.";
                assert_eq!(
                    negotiate::parse_response(&bytes),
                    Err(negotiate::NegotiateError::Server(message.into()))
                );
                // The situation of the vector: no negotiateVersion, a server minimum above 0.
                assert_eq!(
                    negotiate::select_version_with_minimum(None, 1),
                    Err(message.to_string())
                );
                assert_eq!(negotiate::error_response(message), text);
            }
            other => panic!("negotiate vector {other} is not handled: add a case"),
        }
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn json_hub_vectors() {
    let all = vectors::category("json-hub");
    let mut stream = Vec::new();
    for v in &all {
        let bytes = v.bytes();
        stream.extend_from_slice(&bytes);
        let body = single_body(FrameKind::Text, v, &bytes);
        assert_eq!(
            &body[..],
            &bytes[..bytes.len() - 1],
            "{}: body is the text without RS",
            v.id
        );

        let decoded = Protocol::Json
            .decode(&body)
            .unwrap_or_else(|e| panic!("{}: {e}", v.id))
            .unwrap_or_else(|| panic!("{}: known type", v.id));
        assert_eq!(decoded, expected_json_hub(&v.id), "{}", v.id);
        // Every JSON vector is deterministic (headers keep their order), so all are byte-exact.
        assert_eq!(
            String::from_utf8_lossy(&Protocol::Json.encode(&decoded)),
            String::from_utf8_lossy(&bytes),
            "{}",
            v.id
        );

        // The same message survives the other protocol.
        let framed = Protocol::MessagePack.encode(&decoded);
        let body = single_body(FrameKind::Binary, v, &framed);
        assert_eq!(
            Protocol::MessagePack.decode(&body),
            Ok(Some(through_msgpack(&decoded))),
            "{}",
            v.id
        );
    }
    // All of them back to back in one push, and byte by byte.
    let expected: Vec<HubMessage> = all.iter().map(|v| expected_json_hub(&v.id)).collect();
    for frames in [
        frames_whole(FrameKind::Text, &stream),
        frames_bytewise(FrameKind::Text, &stream),
    ] {
        let decoded: Vec<HubMessage> = frames
            .iter()
            .map(|f| json::decode(f).expect("valid").expect("known"))
            .collect();
        assert_eq!(decoded, expected);
    }
    assert_eq!(all.len(), 28);
}

#[test]
fn msgpack_hub_vectors() {
    let all = vectors::category("msgpack-hub");
    let mut stream = Vec::new();
    for v in &all {
        // Most entries are unframed bodies with `framed_hex`; the "framed" one is framed in `hex`.
        let (body, framed) = match v.framed_bytes() {
            Some(framed) => {
                let body = v.bytes();
                assert_eq!(single_body(FrameKind::Binary, v, &framed), body, "{}", v.id);
                (body, framed)
            }
            None if v.id.starts_with("mp.framed.") => {
                let framed = v.bytes();
                (single_body(FrameKind::Binary, v, &framed), framed)
            }
            None => {
                // Unframed doc examples: frame them ourselves.
                let body = v.bytes();
                let mut framed = Vec::new();
                write_varint(body.len(), &mut framed);
                framed.extend_from_slice(&body);
                assert_eq!(single_body(FrameKind::Binary, v, &framed), body, "{}", v.id);
                (body, framed)
            }
        };
        stream.extend_from_slice(&framed);

        let decoded = Protocol::MessagePack
            .decode(&body)
            .unwrap_or_else(|e| panic!("{}: {e}", v.id))
            .unwrap_or_else(|| panic!("{}: known type", v.id));
        assert_eq!(decoded, expected_msgpack_hub(&v.id), "{}", v.id);
        // Every MessagePack vector is byte-exact: the upstream writer's layouts, smallest widths,
        // float32 kept as float32 and header order kept.
        assert_eq!(
            hex_encode(&msgpack::encode_body(&decoded)),
            hex_encode(&body),
            "{}",
            v.id
        );
        assert_eq!(
            hex_encode(&Protocol::MessagePack.encode(&decoded)),
            hex_encode(&framed),
            "{}",
            v.id
        );

        // The JSON protocol can carry it too (not byte-compared: no JSON vector for these; the
        // float32 result reads back as a float64).
        let text = Protocol::Json.encode(&decoded);
        let body = single_body(FrameKind::Text, v, &text);
        assert!(json::decode(&body).expect("valid JSON").is_some(), "{}", v.id);
    }
    let expected: Vec<HubMessage> = all.iter().map(|v| expected_msgpack_hub(&v.id)).collect();
    for frames in [
        frames_whole(FrameKind::Binary, &stream),
        frames_bytewise(FrameKind::Binary, &stream),
    ] {
        let decoded: Vec<HubMessage> = frames
            .iter()
            .map(|f| msgpack::decode(f).expect("valid").expect("known"))
            .collect();
        assert_eq!(decoded, expected);
    }
    assert_eq!(all.len(), 22);
}

#[test]
fn binary_framing_vectors() {
    let mut checked = 0;
    for v in vectors::category("binary-framing") {
        let bytes = v.bytes();
        match v.id.as_str() {
            "frame.varint.two_messages" => {
                let frames = frames_bytewise(FrameKind::Binary, &bytes);
                assert_eq!(frames, frames_whole(FrameKind::Binary, &bytes));
                assert_eq!(frames, [Bytes::new(), Bytes::from_static(b"Hello,\r\nWorld!")]);
                let mut again = Vec::new();
                for frame in &frames {
                    write_varint(frame.len(), &mut again);
                    again.extend_from_slice(frame);
                }
                assert_eq!(again, bytes);
            }
            "frame.varint.4" => {
                let frames = frames_bytewise(FrameKind::Binary, &bytes);
                assert_eq!(frames, [Bytes::from_static(&[0xab, 0xcd, 0xef, 0x12])]);
                let mut again = Vec::new();
                write_varint(4, &mut again);
                again.extend_from_slice(&frames[0]);
                assert_eq!(again, bytes);
            }
            // Prefix-only vectors: the length they declare, written back, and a frame of that
            // length split out of a stream.
            "frame.varint.128" | "frame.varint.5248" => {
                let length = if v.id.ends_with("128") { 128 } else { 5248 };
                assert_eq!(read_varint(&bytes), Ok(Some((length, bytes.len()))));
                let mut prefix = Vec::new();
                write_varint(length, &mut prefix);
                assert_eq!(prefix, bytes);
                let payload: Vec<u8> = (0..length).map(|i| (i % 128) as u8).collect();
                let mut stream = bytes.clone();
                stream.extend_from_slice(&payload);
                assert_eq!(
                    frames_bytewise(FrameKind::Binary, &stream),
                    [Bytes::from(payload)]
                );
            }
            "frame.varint.max" => {
                assert_eq!(read_varint(&bytes), Ok(Some((0x7FFF_FFFF, 5))));
                let mut prefix = Vec::new();
                write_varint(0x7FFF_FFFF, &mut prefix);
                assert_eq!(prefix, bytes);
                // Over the hub's limit: refused at once, without waiting for 2 GB.
                let mut framer = Framer::new(FrameKind::Binary, MAX);
                framer.push(&bytes);
                assert_eq!(framer.next_frame(), Err(FrameError::TooLarge { max: MAX }));
                // Without a limit it is a valid prefix that waits for its body.
                let mut framer = Framer::new(FrameKind::Binary, usize::MAX);
                framer.push(&bytes);
                assert_eq!(framer.next_frame(), Ok(None));
                // One more is not a valid length at all.
                assert_eq!(
                    read_varint(&[0x80, 0x80, 0x80, 0x80, 0x08]),
                    Err(FrameError::InvalidLength)
                );
            }
            other => panic!("binary-framing vector {other} is not handled: add a case"),
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}

/// The handshake and the first hub messages can arrive in one read; `set_kind` hands the rest of
/// the stream to the negotiated protocol's framing.
#[test]
fn handshake_then_messagepack_in_one_push() {
    let mut stream = handshake::request("messagepack", 1);
    stream.extend(vectors::get("mp.ping").framed_bytes().expect("framed"));
    stream.extend(vectors::get("mp.ack").framed_bytes().expect("framed"));

    let mut framer = Framer::new(FrameKind::Text, MAX);
    framer.push(&stream);
    let request = framer.next_frame().expect("ok").expect("handshake");
    let request = handshake::parse_request(&request).expect("valid");
    let protocol = Protocol::from_name(&request.protocol).expect("supported");
    framer.set_kind(protocol.frame_kind());
    let mut messages = Vec::new();
    while let Some(frame) = framer.next_frame().expect("ok") {
        messages.push(protocol.decode(&frame).expect("valid").expect("known"));
    }
    assert_eq!(messages, [HubMessage::Ping, HubMessage::Ack { sequence_id: 42 }]);
}
