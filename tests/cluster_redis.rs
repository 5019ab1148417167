//! Two real hub nodes sharing a real `redis-server` (started by the harness on a free port, with a
//! unique channel prefix): delivery across nodes for every target, remote group operations with
//! acks, the exact wire format on Redis, and a Redis kill/restart in the middle.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::redis::{RedisServer, Tap, channels};
use common::{
    STEP, connect, expect_message, expect_nothing_before, expect_nothing_before_own, unique_prefix,
    wait_connected, within,
};
use switchboard::backplane::wire;
use switchboard::client::str_args;
use switchboard::hub::{BackplaneChoice, Node, NodeConfig, NodeHandle};
use switchboard::protocol::{CompletionResult, HubMessage, Protocol, Value};

async fn node(name: &str, redis: &RedisServer, prefix: &str) -> NodeHandle {
    let mut config = NodeConfig::new(name);
    config.channel_prefix = prefix.to_string();
    config.group_ack_timeout = Duration::from_secs(2);
    Node::start(config, BackplaneChoice::RedisUrl(redis.url()))
        .await
        .expect("node starts")
}

fn receive(user: &str, text: &str) -> Vec<Value> {
    str_args(&[user, text])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_reaches_the_other_node() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = node("node-a", &redis, &prefix).await;
    let b = node("node-b", &redis, &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;

    let mut a1 = connect(&a, Protocol::Json, Some("alice")).await;
    let mut a2 = connect(&a, Protocol::MessagePack, None).await;
    let mut b1 = connect(&b, Protocol::MessagePack, Some("bob")).await;
    let mut b2 = connect(&b, Protocol::Json, Some("bob")).await;

    // All: everyone, on both nodes, in both protocols.
    a1.invoke("SendMessage", str_args(&["alice", "hello all"]))
        .await
        .unwrap();
    for c in [&mut a1, &mut a2, &mut b1, &mut b2] {
        assert_eq!(
            expect_message(c, "ReceiveMessage", STEP).await,
            receive("alice", "hello all")
        );
    }

    // Others: not the caller.
    a1.invoke("SendToOthers", str_args(&["alice", "not me"]))
        .await
        .unwrap();
    for c in [&mut a2, &mut b1, &mut b2] {
        assert_eq!(
            expect_message(c, "ReceiveMessage", STEP).await,
            receive("alice", "not me")
        );
    }
    // a2 on the same node got it: node A has handled the broadcast, so a1's own marker follows
    // anything it could have queued for a1.
    expect_nothing_before_own(&mut a1, "after others").await;

    // Group: joined on B, sent from A.
    assert_eq!(
        b1.invoke("JoinGroup", str_args(&["room"])).await.unwrap(),
        CompletionResult::Void
    );
    a1.invoke("SendToGroup", str_args(&["room", "alice", "to the room"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut b1, "ReceiveMessage", STEP).await,
        receive("alice", "to the room")
    );
    // b1 on the same node got it (the witness): b2's own marker follows anything queued for it.
    expect_nothing_before_own(&mut b2, "after the group").await;
    expect_nothing_before_own(&mut a1, "after the group, on A").await;

    // User: both of bob's connections on B, from A.
    a2.invoke("SendToUser", str_args(&["bob", "alice", "hi bob"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut b1, "ReceiveMessage", STEP).await,
        receive("alice", "hi bob")
    );
    assert_eq!(
        expect_message(&mut b2, "ReceiveMessage", STEP).await,
        receive("alice", "hi bob")
    );
    expect_nothing_before_own(&mut a1, "after the user").await;

    // Connection: one connection on B, from A.
    let b2_id = common::connection_id(&b2).await;
    a1.invoke("SendToConnection", str_args(&[&b2_id, "alice", "just you"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut b2, "ReceiveMessage", STEP).await,
        receive("alice", "just you")
    );
    // b2 on the same node got it (the witness).
    expect_nothing_before_own(&mut b1, "after the connection").await;

    // Leaving the group stops delivery.
    b1.invoke("LeaveGroup", str_args(&["room"])).await.unwrap();
    a1.invoke("SendToGroup", str_args(&["room", "alice", "anyone?"]))
        .await
        .unwrap();
    // Nobody is left in the group to witness: the marker goes the same way instead, from node A
    // through the one Redis to node B, after the group send.
    expect_nothing_before(&mut b1, &a1, "after leaving").await;

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_group_operations_are_acked_across_nodes() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = node("node-a", &redis, &prefix).await;
    let b = node("node-b", &redis, &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let mut tap = Tap::start(&redis.url(), &format!("{prefix}*")).await;

    let a1 = connect(&a, Protocol::Json, None).await;
    let mut b1 = connect(&b, Protocol::Json, None).await;
    let b1_id = common::connection_id(&b1).await;

    let added = within(
        "AddToGroup",
        a1.invoke("AddToGroup", str_args(&[&b1_id, "remote"])),
    )
    .await
    .unwrap();
    assert_eq!(added, CompletionResult::Void, "the owner acked the add");

    // The command went out on :internal:groups in the ASP.NET Core layout, and B acked to A.
    let groups_channel = format!("{prefix}Switchboard.ChatHub:internal:groups");
    let (_, payload) = tap
        .wait_for(|ch, _| ch == groups_channel, STEP)
        .await
        .expect("group command on Redis");
    let command = wire::decode_group_command(&payload).unwrap();
    assert_eq!(command.server_name, a.server_name());
    assert_eq!(command.connection_id, b1_id);
    assert_eq!(command.group, "remote");
    assert_eq!(command.action, wire::GroupAction::Add);
    assert_eq!(command.id, 1, "ids start at 1 per server");
    let ack_channel = format!("{prefix}Switchboard.ChatHub:internal:ack:{}", a.server_name());
    let (_, ack) = tap
        .wait_for(|ch, _| ch == ack_channel, STEP)
        .await
        .expect("ack on Redis");
    assert_eq!(wire::decode_ack(&ack).unwrap(), 1);

    a1.invoke("SendToGroup", str_args(&["remote", "a", "added remotely"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut b1, "ReceiveMessage", STEP).await,
        receive("a", "added remotely")
    );

    let removed = a1
        .invoke("RemoveFromGroup", str_args(&[&b1_id, "remote"]))
        .await
        .unwrap();
    assert_eq!(removed, CompletionResult::Void);
    a1.invoke("SendToGroup", str_args(&["remote", "a", "gone"]))
        .await
        .unwrap();
    expect_nothing_before(&mut b1, &a1, "after the remote remove").await;

    // A connection that exists nowhere: no ack, so the call fails after the ack timeout (2 s here).
    let missing = a1
        .invoke("AddToGroup", str_args(&["no-such-connection", "g"]))
        .await
        .unwrap();
    assert_eq!(
        missing,
        CompletionResult::Error("An unexpected error occurred invoking 'AddToGroup' on the server.".into())
    );
    assert_eq!(a.stats()["group_ack_timeouts"], 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_use_the_aspnetcore_wire_format_with_both_protocols() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = node("node-a", &redis, &prefix).await;
    wait_connected(&a).await;
    let mut tap = Tap::start(&redis.url(), &format!("{prefix}*")).await;
    let a1 = connect(&a, Protocol::Json, None).await;
    let a1_id = common::connection_id(&a1).await;
    a1.invoke("SendToOthers", str_args(&["u", "wire"])).await.unwrap();

    let all = format!("{prefix}Switchboard.ChatHub:all");
    let (_, payload) = tap.wait_for(|ch, _| ch == all, STEP).await.expect(":all publish");
    let inv = wire::decode_invocation(&payload).unwrap();
    assert_eq!(inv.excluded, vec![a1_id]);
    let expected = HubMessage::invocation("ReceiveMessage", str_args(&["u", "wire"]));
    assert_eq!(
        inv.serialization("json").map(|b| b.to_vec()),
        Some(Protocol::Json.encode(&expected))
    );
    assert_eq!(
        inv.serialization("messagepack").map(|b| b.to_vec()),
        Some(Protocol::MessagePack.encode(&expected))
    );
    assert_eq!(inv.invocation_id, None);

    // Cluster-wide connection count as a passive observer sees it (part D).
    let _a2 = connect(&a, Protocol::MessagePack, Some("carol")).await;
    let connections = channels(&redis.url(), &format!("{prefix}Switchboard.ChatHub:connection:*")).await;
    assert_eq!(
        connections.len(),
        2,
        "one channel per connection: {connections:?}"
    );
    let users = channels(&redis.url(), &format!("{prefix}Switchboard.ChatHub:user:*")).await;
    assert_eq!(users, vec![format!("{prefix}Switchboard.ChatHub:user:carol")]);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_local_delivery_and_resumes_cross_node_delivery() {
    let mut redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = node("node-a", &redis, &prefix).await;
    let b = node("node-b", &redis, &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let mut a1 = connect(&a, Protocol::Json, None).await;
    let mut a2 = connect(&a, Protocol::MessagePack, None).await;
    let mut b1 = connect(&b, Protocol::Json, None).await;
    b1.invoke("JoinGroup", str_args(&["g"])).await.unwrap();
    a2.invoke("JoinGroup", str_args(&["g"])).await.unwrap();

    a1.invoke("SendMessage", str_args(&["a", "before"]))
        .await
        .unwrap();
    for c in [&mut a1, &mut a2, &mut b1] {
        expect_message(c, "ReceiveMessage", STEP).await;
    }

    redis.kill();
    let mut status = a.backplane_status();
    within("node A notices", status.wait_for(|s| !s.state.is_up()))
        .await
        .unwrap();

    // Local delivery goes on; the other node cannot be reached, and that is counted.
    a1.invoke("SendMessage", str_args(&["a", "during"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut a1, "ReceiveMessage", STEP).await,
        receive("a", "during")
    );
    assert_eq!(
        expect_message(&mut a2, "ReceiveMessage", STEP).await,
        receive("a", "during")
    );
    a1.invoke("SendToGroup", str_args(&["g", "a", "group during"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut a2, "ReceiveMessage", STEP).await,
        receive("a", "group during")
    );
    // Nothing of this reaches b1, then or later: the first thing it receives after the restart
    // is "after" (asserted below).
    let failures = a.stats()["forward_failures"].as_u64().unwrap();
    assert!(failures >= 2, "forward failures counted: {failures}");
    let stats = a.stats();
    assert_eq!(stats["backplane"]["status"]["state"], "reconnecting", "{stats}");
    assert!(stats["backplane"]["status"]["last_error"].is_string());

    redis.restart().await;
    wait_connected(&a).await;
    wait_connected(&b).await;

    // Subscriptions came back: all, group, and the connections' own channels.
    a1.invoke("SendMessage", str_args(&["a", "after"])).await.unwrap();
    for c in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(
            expect_message(c, "ReceiveMessage", STEP).await,
            receive("a", "after")
        );
    }
    a1.invoke("SendToGroup", str_args(&["g", "a", "group after"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut b1, "ReceiveMessage", STEP).await,
        receive("a", "group after")
    );
    assert_eq!(
        expect_message(&mut a2, "ReceiveMessage", STEP).await,
        receive("a", "group after")
    );
    let b1_id = common::connection_id(&b1).await;
    a1.invoke("SendToConnection", str_args(&[&b1_id, "a", "direct after"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut b1, "ReceiveMessage", STEP).await,
        receive("a", "direct after")
    );
    // Nothing was replayed to B (at most once): the next message is the one above, not "during".
    expect_nothing_before(&mut b1, &a1, "nothing replayed").await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_redis_works_and_a_wrong_password_is_reported() {
    let redis = RedisServer::start_with_password("s3cret pw").await;
    let prefix = unique_prefix();
    let mut config = NodeConfig::new("node-a");
    config.channel_prefix = prefix.clone();
    let a = Node::start(
        config.clone(),
        BackplaneChoice::RedisUrl(redis.url_with_password()),
    )
    .await
    .unwrap();
    config.node_name = "node-b".into();
    let b = Node::start(
        config.clone(),
        BackplaneChoice::RedisUrl(redis.url_with_password()),
    )
    .await
    .unwrap();
    wait_connected(&a).await;
    wait_connected(&b).await;
    let a1 = connect(&a, Protocol::Json, None).await;
    let mut b1 = connect(&b, Protocol::Json, None).await;
    a1.invoke("SendMessage", str_args(&["a", "secret"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut b1, "ReceiveMessage", STEP).await,
        receive("a", "secret")
    );

    config.node_name = "node-c".into();
    let wrong = redis.url().replace("redis://", "redis://:hunter2x@");
    let c = Node::start(config, BackplaneChoice::RedisUrl(wrong))
        .await
        .unwrap();
    let mut status = c.backplane_status();
    let seen = within("auth error", status.wait_for(|s| s.last_error.is_some()))
        .await
        .unwrap()
        .clone();
    let error = seen.last_error.unwrap();
    assert!(
        error.contains("authentication failed") || error.contains("WRONGPASS"),
        "{error}"
    );
    assert!(!error.contains("hunter2x"), "the password is not echoed: {error}");
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn an_invalid_redis_url_is_a_readable_error() {
    let err = Node::start(
        NodeConfig::new("x"),
        BackplaneChoice::RedisUrl("http://nope".into()),
    )
    .await
    .err()
    .expect("rejected");
    let text = err.to_string();
    assert!(text.starts_with("invalid Redis URL"), "{text}");
}
