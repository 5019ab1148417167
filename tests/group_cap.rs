//! The cap on groups per connection (each join can cost a Redis SUBSCRIBE): a real node on a real
//! Redis, a real client. Joins up to the cap succeed and subscribe; the next join fails with a
//! HubException text that names the limit and subscribes nothing; a leave makes room again; and a
//! disconnect releases every channel the connection held.

mod common;

use common::redis::{RedisServer, channels};
use common::{connect, unique_prefix, within};
use switchboard::client::str_args;
use switchboard::config::DEFAULT_MAX_GROUPS_PER_CONNECTION;
use switchboard::hub::BackplaneChoice;
use switchboard::protocol::{CompletionResult, Protocol};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_past_the_cap_is_refused_with_a_hub_exception_and_subscribes_nothing() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let node = common::start_node("capped", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let mut status = node.backplane_status();
    within("backplane connected", status.wait_for(|s| s.state.is_up()))
        .await
        .expect("status");
    let client = connect(&node, Protocol::Json, Some("capper")).await;
    let max = DEFAULT_MAX_GROUPS_PER_CONNECTION;
    for i in 0..max {
        let joined = within(
            "JoinGroup",
            client.invoke("JoinGroup", str_args(&[&format!("room{i}")])),
        )
        .await
        .expect("invoke");
        assert_eq!(joined, CompletionResult::Void, "join {i} of {max}");
    }
    let group_pattern = format!("{prefix}*:group:*");
    assert_eq!(
        channels(&redis.url(), &group_pattern).await.len(),
        max,
        "each join subscribed"
    );

    let refused = within(
        "JoinGroup past the cap",
        client.invoke("JoinGroup", str_args(&["one-too-many"])),
    )
    .await
    .expect("invoke");
    let expected = format!(
        "An unexpected error occurred invoking 'JoinGroup' on the server. HubException: A connection may be in at most {max} groups; leave one before joining another."
    );
    assert_eq!(refused, CompletionResult::Error(expected));
    assert_eq!(
        channels(&redis.url(), &group_pattern).await.len(),
        max,
        "the refused join subscribed nothing"
    );

    let left = within("LeaveGroup", client.invoke("LeaveGroup", str_args(&["room0"])))
        .await
        .expect("invoke");
    assert_eq!(left, CompletionResult::Void);
    let joined = within(
        "JoinGroup after a leave",
        client.invoke("JoinGroup", str_args(&["one-too-many"])),
    )
    .await
    .expect("invoke");
    assert_eq!(joined, CompletionResult::Void, "a leave makes room");
    assert_eq!(
        node.stats()["limits"]["max_groups_per_connection"].as_u64(),
        Some(max as u64)
    );

    client.close().await;
    let all_pattern = format!("{prefix}*:*");
    within("every connection, user and group channel released", async {
        loop {
            let left: Vec<String> = channels(&redis.url(), &all_pattern)
                .await
                .into_iter()
                .filter(|c| c.contains(":group:") || c.contains(":connection:") || c.contains(":user:"))
                .collect();
            if left.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_is_set_per_node() {
    let mut config = switchboard::hub::NodeConfig::new("small-cap");
    config.max_groups_per_connection = 3;
    let node = common::start_node_with(config, BackplaneChoice::Alone).await;
    let client = connect(&node, Protocol::Json, Some("capper")).await;
    for i in 0..3 {
        let joined = within(
            "JoinGroup",
            client.invoke("JoinGroup", str_args(&[&format!("g{i}")])),
        )
        .await
        .expect("invoke");
        assert_eq!(joined, CompletionResult::Void, "join {i}");
    }
    let refused = within("JoinGroup past 3", client.invoke("JoinGroup", str_args(&["g3"])))
        .await
        .expect("invoke");
    match refused {
        CompletionResult::Error(text) => assert!(text.contains("at most 3 groups"), "{text}"),
        other => panic!("the fourth join was not refused: {other:?}"),
    }
}

/// A remote AddToGroup (node A asks for a connection that node B holds) past B's cap: B refuses
/// it, counts it and sends no ack, because an ack carries no error and would tell A the join
/// succeeded. A's caller sees a failure when A's ack timeout expires (as ASP.NET Core's sender
/// does). The same command for a connection under the cap is acked at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_add_past_the_cap_is_not_acknowledged_and_is_counted() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let mut config = switchboard::hub::NodeConfig::new("asker");
    config.channel_prefix = prefix.clone();
    config.group_ack_timeout = std::time::Duration::from_secs(1);
    let a = common::start_node_with(config, BackplaneChoice::RedisUrl(redis.url())).await;
    let mut config = switchboard::hub::NodeConfig::new("owner");
    config.channel_prefix = prefix.clone();
    config.max_groups_per_connection = 1;
    let b = common::start_node_with(config, BackplaneChoice::RedisUrl(redis.url())).await;
    common::wait_connected(&a).await;
    common::wait_connected(&b).await;

    let asker = connect(&a, Protocol::Json, Some("asker")).await;
    let mut full = connect(&b, Protocol::Json, Some("full")).await;
    let mut roomy = connect(&b, Protocol::Json, Some("roomy")).await;
    let joined = within("JoinGroup", full.invoke("JoinGroup", str_args(&["mine"])))
        .await
        .expect("invoke");
    assert_eq!(joined, CompletionResult::Void, "the one join B allows");
    let full_id = common::connection_id(&full).await;
    let roomy_id = common::connection_id(&roomy).await;

    let added = within(
        "AddToGroup under the cap",
        asker.invoke("AddToGroup", str_args(&[&roomy_id, "remote"])),
    )
    .await
    .expect("invoke");
    assert_eq!(added, CompletionResult::Void, "B acked the add it made");

    let refused = within(
        "AddToGroup past the cap",
        asker.invoke("AddToGroup", str_args(&[&full_id, "remote"])),
    )
    .await
    .expect("invoke");
    match refused {
        CompletionResult::Error(text) => {
            assert!(
                text.starts_with("An unexpected error occurred invoking 'AddToGroup'"),
                "{text}"
            )
        }
        other => panic!("a refused remote add was reported as {other:?}"),
    }
    assert_eq!(b.stats()["remote_group_refusals"], 1, "B counted the refusal");
    assert_eq!(a.stats()["group_ack_timeouts"], 1, "A saw no ack");
    assert_eq!(a.stats()["remote_group_refusals"], 0);
    // The group holds the connection B acked, not the one it refused.
    within(
        "SendToGroup",
        asker.invoke("SendToGroup", str_args(&["remote", "asker", "who is here?"])),
    )
    .await
    .expect("invoke");
    let got = common::expect_message(&mut roomy, "ReceiveMessage", common::STEP).await;
    assert_eq!(got.len(), 2, "{got:?}");
    // roomy, on the same node, got it (the witness): full's own marker follows anything queued
    // for it.
    common::expect_nothing_before_own(&mut full, "after the group send").await;
    a.shutdown().await;
    b.shutdown().await;
}
