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
