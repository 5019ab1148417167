//! Per-client limits on a real node: a client that completes its handshake and then sends
//! nothing is closed after the client timeout (counted from the handshake); user ids and group
//! names over their byte limits are refused with a HubException naming the limit (and a user id
//! over the limit at connect with a 400).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{STEP, expect_close, within};
use switchboard::client::{ClientOptions, HubClient, str_args};
use switchboard::hub::{BackplaneChoice, NodeConfig};
use switchboard::protocol::CompletionResult;

#[tokio::test]
async fn a_client_that_sends_nothing_after_its_handshake_is_closed_after_the_client_timeout() {
    let mut config = NodeConfig::new("idle");
    config.client_timeout = Duration::from_secs(1);
    let node = common::start_node_with(config, BackplaneChoice::Alone).await;
    // Our client pings every keep_alive: make it longer than the test so it sends nothing.
    let options = ClientOptions {
        keep_alive: Duration::from_secs(3600),
        server_timeout: Duration::from_secs(3600),
        ..ClientOptions::default()
    };
    let mut idle = within("connect", HubClient::connect(&node.hub_url(), options))
        .await
        .unwrap();
    let (error, _) = expect_close(&mut idle, STEP).await;
    let error = error.unwrap_or_default();
    assert!(!error.is_empty(), "a Close with an error");
    node.shutdown().await;
}

fn error_of(result: CompletionResult) -> String {
    match result {
        CompletionResult::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn user_ids_and_group_names_over_their_limits_are_refused_naming_the_limit() {
    let node = common::start_node("limits", BackplaneChoice::Alone, &common::unique_prefix()).await;
    let client = common::connect(&node, switchboard::protocol::Protocol::Json, None).await;
    let group = "g".repeat(1024);
    assert_eq!(
        client.invoke("JoinGroup", str_args(&[&group])).await.unwrap(),
        CompletionResult::Void,
        "1024 bytes is within the limit"
    );
    let long_group = "g".repeat(1025);
    for method in ["JoinGroup", "LeaveGroup"] {
        let error = error_of(client.invoke(method, str_args(&[&long_group])).await.unwrap());
        assert!(
            error.contains("HubException") && error.contains("--max-group-name-bytes"),
            "{method}: {error}"
        );
    }
    let error = error_of(
        client
            .invoke("SendToGroup", str_args(&[&long_group, "u", "m"]))
            .await
            .unwrap(),
    );
    assert!(error.contains("at most 1024"), "{error}");
    let long_user = "u".repeat(257);
    let error = error_of(
        client
            .invoke("SendToUser", str_args(&[&long_user, "u", "m"]))
            .await
            .unwrap(),
    );
    assert!(
        error.contains("HubException") && error.contains("--max-user-id-bytes"),
        "{error}"
    );
    assert_eq!(
        client
            .invoke("SendToUser", str_args(&[&"u".repeat(256), "u", "m"]))
            .await
            .unwrap(),
        CompletionResult::Void
    );
    // A ?user= over the limit is refused at connect.
    let options = ClientOptions {
        user: Some(long_user),
        ..ClientOptions::default()
    };
    let refused = within("connect", HubClient::connect(&node.hub_url(), options)).await;
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("400") || error.contains("max-user-id-bytes"),
        "{error}"
    );
    node.shutdown().await;
}
