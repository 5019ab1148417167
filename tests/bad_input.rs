//! Bad input from the network, each with the exact SignalR answer of part A, and proof that it
//! affects only the connection that sent it. Driven through raw WebSockets so every byte the
//! client receives is checked.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{STEP, connect, expect_message, within};
use futures_util::{SinkExt, StreamExt};
use switchboard::client::{connect_raw_ws, str_args};
use switchboard::hub::{BackplaneChoice, Node, NodeConfig, NodeHandle};
use switchboard::protocol::{CompletionResult, HubMessage, Protocol, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws = switchboard::client::NodeWebSocket;

const CLOSE_WITH_ERROR: &str =
    "{\"type\":7,\"error\":\"Connection closed with an error.\",\"allowReconnect\":true}\u{1e}";

async fn start(config: NodeConfig) -> NodeHandle {
    Node::start(config, BackplaneChoice::Alone)
        .await
        .expect("node starts")
}

async fn raw(node: &NodeHandle) -> Ws {
    within(
        "raw connect",
        connect_raw_ws(&format!("ws://{}/chat", node.local_addr())),
    )
    .await
    .expect("websocket")
}

async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

async fn send_binary(ws: &mut Ws, data: &[u8]) {
    ws.send(Message::Binary(data.to_vec().into()))
        .await
        .expect("send");
}

/// The next data frame (text or binary) as bytes; panics on close or timeout.
async fn next_data(ws: &mut Ws) -> Vec<u8> {
    loop {
        match within("next frame", ws.next()).await {
            Some(Ok(Message::Text(t))) => return t.as_bytes().to_vec(),
            Some(Ok(Message::Binary(b))) => return b.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a data frame, got {other:?}"),
        }
    }
}

/// Asserts the server closes the WebSocket (after any data frames, which are returned).
async fn expect_ws_close(ws: &mut Ws) {
    loop {
        match within("close", ws.next()).await {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("expected the socket to close, got {other:?}"),
        }
    }
}

async fn json_connection(node: &NodeHandle) -> Ws {
    let mut ws = raw(node).await;
    send_text(&mut ws, "{\"protocol\":\"json\",\"version\":1}\u{1e}").await;
    assert_eq!(next_data(&mut ws).await, b"{}\x1e");
    ws
}

async fn handshake_error(node: &NodeHandle, request: &str) -> String {
    let mut ws = raw(node).await;
    send_text(&mut ws, request).await;
    let reply = String::from_utf8(next_data(&mut ws).await).unwrap();
    expect_ws_close(&mut ws).await;
    reply
}

/// Proves the node still serves other clients.
async fn still_serving(node: &NodeHandle) {
    let client = connect(node, Protocol::Json, None).await;
    assert_eq!(
        within("echo", client.invoke("Echo", str_args(&["alive"])))
            .await
            .unwrap(),
        CompletionResult::Value(Value::from("alive"))
    );
}

#[tokio::test]
async fn handshake_errors_have_the_aspnetcore_texts() {
    let node = start(NodeConfig::new("n")).await;
    assert_eq!(
        handshake_error(&node, "not json\u{1e}").await,
        "{\"error\":\"An unexpected error occurred during connection handshake.\"}\u{1e}"
    );
    assert_eq!(
        handshake_error(&node, "{\"version\":1}\u{1e}").await,
        "{\"error\":\"An unexpected error occurred during connection handshake.\"}\u{1e}"
    );
    assert_eq!(
        handshake_error(&node, "{\"protocol\":\"xml\",\"version\":1}\u{1e}").await,
        "{\"error\":\"The protocol 'xml' is not supported.\"}\u{1e}"
    );
    assert_eq!(
        handshake_error(&node, "{\"protocol\":\"json\",\"version\":3}\u{1e}").await,
        "{\"error\":\"The server does not support version 3 of the 'json' protocol.\"}\u{1e}"
    );
    // A handshake that never ends within the size limit.
    let mut ws = raw(&node).await;
    send_text(&mut ws, &"x".repeat(40 * 1024)).await;
    assert_eq!(
        String::from_utf8(next_data(&mut ws).await).unwrap(),
        "{\"error\":\"Handshake was canceled.\"}\u{1e}"
    );
    assert_eq!(node.stats()["protocol_errors"], 5);
    still_serving(&node).await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_handshake_that_never_comes_is_canceled() {
    let mut config = NodeConfig::new("n");
    config.handshake_timeout = Duration::from_millis(300);
    let node = start(config).await;
    let mut ws = raw(&node).await;
    assert_eq!(
        String::from_utf8(next_data(&mut ws).await).unwrap(),
        "{\"error\":\"Handshake was canceled.\"}\u{1e}"
    );
    expect_ws_close(&mut ws).await;
    node.shutdown().await;
}

#[tokio::test]
async fn messagepack_handshake_reply_is_binary_and_bytes_after_it_are_messages() {
    let node = start(NodeConfig::new("n")).await;
    let mut ws = raw(&node).await;
    // Handshake and a first (blocking) invocation in one WebSocket message.
    let mut data = b"{\"protocol\":\"messagepack\",\"version\":1}\x1e".to_vec();
    data.extend(Protocol::MessagePack.encode(&HubMessage::Invocation {
        headers: vec![],
        invocation_id: Some("1".into()),
        target: "echo".into(),
        arguments: vec![Value::from(42)],
        stream_ids: None,
    }));
    send_binary(&mut ws, &data).await;
    match within("reply", ws.next()).await {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], b"{}\x1e"),
        other => panic!("expected a binary handshake reply, got {other:?}"),
    }
    let completion = next_data(&mut ws).await;
    assert_eq!(
        completion,
        Protocol::MessagePack.encode(&HubMessage::completion(
            "1",
            CompletionResult::Value(Value::from(42))
        ))
    );
    node.shutdown().await;
}

#[tokio::test]
async fn invalid_json_closes_only_that_connection_with_the_signalr_error() {
    let node = start(NodeConfig::new("n")).await;
    let mut other = connect(&node, Protocol::Json, None).await;
    let mut ws = json_connection(&node).await;
    send_text(&mut ws, "{\"type\":1,\"target\":\u{1e}").await;
    assert_eq!(
        String::from_utf8(next_data(&mut ws).await).unwrap(),
        CLOSE_WITH_ERROR
    );
    expect_ws_close(&mut ws).await;
    // The other connection is untouched.
    other
        .invoke("SendMessage", str_args(&["o", "still here"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut other, "ReceiveMessage", STEP).await,
        str_args(&["o", "still here"])
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_only_that_connection_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
    let node = start(NodeConfig::new("n")).await;
    let mut ws = json_connection(&node).await;
    let bytes = b"{\"type\":1,\"target\":\"SendMessage\",\"arguments\":[\"a\",\"\xff\"]}\x1e";
    ws.send(Message::Frame(Frame::message(
        bytes.to_vec(),
        OpCode::Data(Data::Text),
        true,
    )))
    .await
    .expect("send");
    // RFC 6455 8.1: the endpoint fails the connection with 1007 (invalid frame payload data).
    loop {
        match within("close", ws.next()).await {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Invalid));
                break;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close with 1007, got {other:?}"),
        }
    }
    still_serving(&node).await;
    assert_eq!(node.stats()["protocol_errors"], 1);
    node.shutdown().await;
}

#[tokio::test]
async fn a_missing_required_property_is_a_protocol_error() {
    let node = start(NodeConfig::new("n")).await;
    let mut ws = json_connection(&node).await;
    send_text(
        &mut ws,
        "{\"type\":1,\"invocationId\":\"1\",\"arguments\":[]}\u{1e}",
    )
    .await;
    assert_eq!(
        String::from_utf8(next_data(&mut ws).await).unwrap(),
        CLOSE_WITH_ERROR
    );
    expect_ws_close(&mut ws).await;
    node.shutdown().await;
}

#[tokio::test]
async fn invalid_messagepack_closes_with_a_messagepack_close() {
    let node = start(NodeConfig::new("n")).await;
    let mut ws = raw(&node).await;
    send_text(&mut ws, "{\"protocol\":\"messagepack\",\"version\":1}\u{1e}").await;
    assert_eq!(next_data(&mut ws).await, b"{}\x1e");
    // Length 3, body: an array header promising 5 elements, then garbage.
    send_binary(&mut ws, &[0x03, 0x95, 0xc1, 0xc1]).await;
    let close = next_data(&mut ws).await;
    let expected = Protocol::MessagePack.encode(&HubMessage::Close {
        error: Some("Connection closed with an error.".into()),
        allow_reconnect: true,
    });
    assert_eq!(close, expected);
    expect_ws_close(&mut ws).await;
    still_serving(&node).await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_the_connection() {
    let node = start(NodeConfig::new("n")).await;
    let mut ws = json_connection(&node).await;
    let big = format!(
        "{{\"type\":1,\"target\":\"Echo\",\"arguments\":[\"{}\"]}}\u{1e}",
        "x".repeat(33 * 1024)
    );
    send_text(&mut ws, &big).await;
    assert_eq!(
        String::from_utf8(next_data(&mut ws).await).unwrap(),
        CLOSE_WITH_ERROR
    );
    expect_ws_close(&mut ws).await;
    // Just under the limit is fine.
    let client = connect(&node, Protocol::Json, None).await;
    let ok = "y".repeat(32 * 1024 - 100);
    assert_eq!(
        client.invoke("Echo", str_args(&[&ok])).await.unwrap(),
        CompletionResult::Value(Value::from(ok.as_str()))
    );
    node.shutdown().await;
}

#[tokio::test]
async fn invocation_errors_have_the_exact_completion_texts() {
    let node = start(NodeConfig::new("n")).await;
    let mut client = connect(&node, Protocol::Json, None).await;
    let cases: [(&str, Vec<Value>, &str); 5] = [
        ("Foo", vec![], "Unknown hub method 'Foo'"),
        (
            "Echo",
            vec![],
            "Failed to invoke 'Echo' due to an error on the server.",
        ),
        (
            "echo",
            str_args(&["a", "b"]),
            "Failed to invoke 'echo' due to an error on the server.",
        ),
        (
            "SendMessage",
            vec![Value::from(1), Value::from(2)],
            "Failed to invoke 'SendMessage' due to an error on the server.",
        ),
        (
            "JoinGroup",
            vec![Value::Nil],
            "An unexpected error occurred invoking 'JoinGroup' on the server.",
        ),
    ];
    for (target, args, text) in cases {
        assert_eq!(
            within(target, client.invoke(target, args)).await.unwrap(),
            CompletionResult::Error(text.to_string()),
            "{target}"
        );
    }
    // Non-blocking invocations get nothing back, not even errors, and the connection stays up.
    client.send("Foo", vec![]).await.unwrap();
    // A connection's messages are handled in order: anything "Foo" caused comes before the marker.
    common::expect_nothing_before_own(&mut client, "after Foo").await;
    assert_eq!(
        client
            .invoke("ECHO", str_args(&["case-insensitive"]))
            .await
            .unwrap(),
        CompletionResult::Value(Value::from("case-insensitive"))
    );
    node.shutdown().await;
}

#[tokio::test]
async fn adding_an_unknown_connection_to_a_group_fails_fast_on_a_lone_node() {
    let node = start(NodeConfig::new("n")).await;
    let client = connect(&node, Protocol::Json, None).await;
    // No other server could own it, so there is no 30 s wait for an ack that cannot come.
    let result = common::within_for(
        "AddToGroup",
        Duration::from_secs(2),
        client.invoke("AddToGroup", str_args(&["nobody", "g"])),
    )
    .await
    .unwrap();
    assert_eq!(
        result,
        CompletionResult::Error("An unexpected error occurred invoking 'AddToGroup' on the server.".into())
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_stream_invocation_of_a_plain_method_gets_the_streaming_error() {
    let node = start(NodeConfig::new("n")).await;
    let mut ws = json_connection(&node).await;
    send_text(
        &mut ws,
        "{\"type\":4,\"invocationId\":\"9\",\"target\":\"Echo\",\"arguments\":[1]}\u{1e}",
    )
    .await;
    assert_eq!(
        String::from_utf8(next_data(&mut ws).await).unwrap(),
        "{\"type\":3,\"invocationId\":\"9\",\"error\":\"The client attempted to invoke the non-streaming 'Echo' method with a streaming invocation.\"}\u{1e}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn the_connection_cap_closes_the_connection_past_it() {
    let mut config = NodeConfig::new("n");
    config.max_connections = 2;
    let node = start(config).await;
    let _a = connect(&node, Protocol::Json, None).await;
    let _b = connect(&node, Protocol::Json, None).await;
    // The cap counts TCP connections: the third socket is closed before any HTTP (see
    // tests/http_limits.rs).
    let third = connect_raw_ws(&format!("ws://{}/chat", node.local_addr())).await;
    third.expect_err("third connection refused");
    assert_eq!(node.stats()["connections"]["refused"], 1);
    node.shutdown().await;
}

#[tokio::test]
async fn negotiate_answers_follow_the_transport_protocol() {
    let node = start(NodeConfig::new("n")).await;
    let base = node.hub_url();
    let r = common::http::post(&format!("{base}/negotiate?negotiateVersion=abc"), b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "{\"error\":\"The client requested a non-integer protocol version.\"}"
    );
    let r = common::http::post(&format!("{base}/negotiate?negotiateVersion=7"), b"").await;
    let doc: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(doc["negotiateVersion"], 1);
    let token = doc["connectionToken"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 22);
    assert_eq!(doc["connectionId"].as_str().unwrap().len(), 22);
    assert_ne!(doc["connectionId"], doc["connectionToken"]);
    let r = common::http::post(&format!("{base}/negotiate"), b"").await;
    let doc: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(doc["negotiateVersion"], 0);
    assert!(doc.get("connectionToken").is_none());

    let r = common::http::get(&format!("{base}/negotiate")).await;
    assert_eq!(r.status, 405);
    let r = common::http::get(&base).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.text(),
        "LongPolling transport not supported by this end point type"
    );

    let unknown = connect_raw_ws(&format!("ws://{}/chat?id=nope", node.local_addr())).await;
    assert!(unknown.err().unwrap().to_string().contains("404"));
    let ws_url = format!("ws://{}/chat?id={token}", node.local_addr());
    let _first = connect_raw_ws(&ws_url).await.expect("token accepted once");
    let second = connect_raw_ws(&ws_url).await;
    assert!(second.err().unwrap().to_string().contains("409"));
    node.shutdown().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_and_counted() {
    let mut config = NodeConfig::new("n");
    config.outbound_queue = 256;
    // This test is about a slow reader, not a fast sender: the sender's flood is not rate-limited.
    config.limits.invocations_per_second = 0;
    let node = start(config).await;
    // A client that completes the handshake and then never reads again.
    let _stuck = json_connection(&node).await;
    let sender = connect(&node, Protocol::Json, None).await;
    let payload = "z".repeat(16 * 1024);
    // Bounded: at most 4000 × 16 KiB (64 MiB) through loopback, stopping as soon as it is counted.
    for i in 0..4000 {
        sender
            .send("SendToOthers", str_args(&["s", &payload]))
            .await
            .unwrap();
        if i % 50 == 0 && node.stats()["slow_client_disconnects"] == 1 {
            break;
        }
    }
    let deadline = tokio::time::Instant::now() + STEP;
    while node.stats()["slow_client_disconnects"] != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow client never detected: {}",
            node.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The sender was not affected, and the stuck connection is really gone (not just counted).
    assert_eq!(
        sender.invoke("Echo", str_args(&["ok"])).await.unwrap(),
        CompletionResult::Value(Value::from("ok"))
    );
    while node.stats()["connections"]["total"] != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck client never dropped: {}",
            node.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.shutdown().await;
}

#[tokio::test]
async fn keep_alive_pings_and_the_client_timeout() {
    let mut config = NodeConfig::new("n");
    config.keep_alive = Duration::from_secs(1);
    // Past the first server ping (due after 1 s of idleness, checked every second).
    config.client_timeout = Duration::from_secs(3);
    let node = start(config).await;
    let mut ws = json_connection(&node).await;
    // Silence from the server side is filled with pings (checked every second).
    assert_eq!(next_data(&mut ws).await, b"{\"type\":6}\x1e");
    // A ping resets the timeout; then silence ends the connection.
    send_text(&mut ws, "{\"type\":6}\u{1e}").await;
    loop {
        let frame = next_data(&mut ws).await;
        if frame == b"{\"type\":6}\x1e" {
            continue;
        }
        assert_eq!(String::from_utf8(frame).unwrap(), CLOSE_WITH_ERROR);
        break;
    }
    expect_ws_close(&mut ws).await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_client_close_message_ends_the_connection_gracefully() {
    let node = start(NodeConfig::new("n")).await;
    let mut ws = json_connection(&node).await;
    send_text(&mut ws, "{\"type\":7}\u{1e}").await;
    assert_eq!(next_data(&mut ws).await, b"{\"type\":7}\x1e");
    expect_ws_close(&mut ws).await;
    node.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_every_client_a_close_with_allow_reconnect() {
    let node = start(NodeConfig::new("n")).await;
    let mut json = connect(&node, Protocol::Json, None).await;
    let mut msgpack = connect(&node, Protocol::MessagePack, None).await;
    within("shutdown", node.shutdown()).await;
    for c in [&mut json, &mut msgpack] {
        match within("close event", c.recv()).await {
            Some(switchboard::client::ClientEvent::Close {
                error,
                allow_reconnect,
            }) => {
                assert_eq!(error, None);
                assert!(allow_reconnect);
            }
            other => panic!("expected a Close, got {other:?}"),
        }
    }
}
