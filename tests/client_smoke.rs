//! The Rust client against one real node (no backplane partner): every protocol, with and without
//! negotiate, blocking and non-blocking invocations, the user query parameter, server pings and a
//! clean close.

mod common;

use std::time::Duration;

use common::{
    STEP, connect_with, expect_message, expect_nothing_before_own, start_node, start_node_with, within,
};
use switchboard::client::{ClientOptions, HubClient, str_args};
use switchboard::hub::{BackplaneChoice, NodeConfig};
use switchboard::protocol::{CompletionResult, Protocol, Value};

fn options(protocol: Protocol, negotiate: bool, user: Option<&str>) -> ClientOptions {
    ClientOptions {
        protocol,
        negotiate,
        user: user.map(str::to_string),
        ..ClientOptions::default()
    }
}

/// A value with most shapes both protocols carry (JSON numbers stay integers when integral).
fn sample_value() -> Value {
    Value::Map(vec![
        (Value::from("text"), Value::from("héllo ✓")),
        (Value::from("n"), Value::from(-42)),
        (
            Value::from("list"),
            Value::Array(vec![Value::from(true), Value::Nil, Value::from(1.5)]),
        ),
    ])
}

#[tokio::test]
async fn echo_and_connection_id_with_every_protocol_with_and_without_negotiate() {
    let node = start_node("smoke", BackplaneChoice::Alone, &common::unique_prefix()).await;
    for protocol in Protocol::ALL {
        for negotiate in [true, false] {
            let case = format!("{protocol:?}, negotiate {negotiate}");
            let client = connect_with(&node, options(protocol, negotiate, None)).await;
            assert_eq!(client.protocol(), protocol);

            for value in [Value::from("x"), Value::from(7), sample_value()] {
                let result = within(&case, client.invoke("Echo", vec![value.clone()]))
                    .await
                    .unwrap_or_else(|e| panic!("{case}: Echo failed: {e}"));
                assert_eq!(result, CompletionResult::Value(value), "{case}");
            }

            let id = match within(&case, client.invoke("GetConnectionId", vec![])).await {
                Ok(CompletionResult::Value(Value::String(s))) => s.into_str().expect("UTF-8 id"),
                other => panic!("{case}: GetConnectionId returned {other:?}"),
            };
            assert_eq!(
                id.len(),
                22,
                "{case}: connection ids are 22 base64url characters: {id}"
            );
            match client.connection_id() {
                Some(negotiated) => {
                    assert!(negotiate, "{case}: an id without negotiate");
                    assert_eq!(negotiated, id, "{case}: the negotiated id is the hub's id");
                }
                None => assert!(!negotiate, "{case}: negotiate gave no connection id"),
            }

            match within(&case, client.invoke("NoSuchMethod", vec![])).await {
                Ok(CompletionResult::Error(text)) => assert_eq!(text, "Unknown hub method 'NoSuchMethod'"),
                other => panic!("{case}: expected an error completion, got {other:?}"),
            }
            within(&case, client.close()).await;
        }
    }
    within("shutdown", node.shutdown()).await;
}

#[tokio::test]
async fn send_to_user_reaches_the_user_from_the_query_string() {
    let node = start_node("smoke-users", BackplaneChoice::Alone, &common::unique_prefix()).await;
    let mut alice = connect_with(&node, options(Protocol::Json, true, Some("alice ä"))).await;
    let mut bob = connect_with(&node, options(Protocol::MessagePack, false, Some("bob"))).await;

    // Non-blocking: no completion, the message still arrives.
    within(
        "send",
        bob.send("SendToUser", str_args(&["alice ä", "bob", "hi alice"])),
    )
    .await
    .expect("send");
    assert_eq!(
        expect_message(&mut alice, "ReceiveMessage", STEP).await,
        str_args(&["bob", "hi alice"])
    );
    // Bob's messages are handled in order: anything his send caused comes before his marker.
    expect_nothing_before_own(&mut bob, "after the send").await;

    let result = within(
        "invoke",
        alice.invoke("SendToUser", str_args(&["bob", "alice", "hi bob"])),
    )
    .await
    .expect("invoke");
    assert_eq!(result, CompletionResult::Void);
    assert_eq!(
        expect_message(&mut bob, "ReceiveMessage", STEP).await,
        str_args(&["alice", "hi bob"])
    );
    assert_eq!(alice.dropped() + bob.dropped(), 0);
    within("close", alice.close()).await;
    within("close", bob.close()).await;
    within("shutdown", node.shutdown()).await;
}

#[tokio::test]
async fn server_pings_are_counted_and_shutdown_sends_close() {
    let mut config = NodeConfig::new("smoke-pings");
    // The node checks its keep-alive once a second, so the first ping comes within ~1 s.
    config.keep_alive = Duration::from_millis(100);
    let node = start_node_with(config, BackplaneChoice::Alone).await;
    let mut client = within(
        "connect",
        HubClient::connect(
            &node.hub_url(),
            ClientOptions::with_protocol(Protocol::MessagePack),
        ),
    )
    .await
    .expect("connect");

    within("server pings", async {
        while client.pings_received() < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    within("shutdown", node.shutdown()).await;
    let (error, allow_reconnect) = common::expect_close(&mut client, STEP).await;
    assert_eq!((error, allow_reconnect), (None, true));
    let reason = common::expect_disconnect(&mut client, STEP).await;
    assert!(!reason.is_empty());
    assert!(!client.is_connected());
}
