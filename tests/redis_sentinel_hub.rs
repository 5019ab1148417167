//! The hub node on a real Sentinel set (a primary, a replica, three sentinels) started by the
//! harness (tests/common/sentinel.rs): the harness itself, and nodes following a failover.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::cluster::try_cmd;
use common::sentinel::{MASTER, SentinelSet, role};
use common::{STEP, connect, expect_message, start_node_with, unique_prefix, wait_connected, within_for};
use switchboard::client::{HubClient, str_args};
use switchboard::hub::{BackplaneChoice, NodeConfig, NodeHandle};
use switchboard::protocol::{CompletionResult, Protocol};
use tokio::time::Instant;

/// The harness starts a ready set; a killed primary is replaced by the replica, and the old
/// primary comes back as a replica of the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_starts_a_set_and_fails_over() {
    let mut set = within_for(
        "starting a sentinel set",
        Duration::from_secs(60),
        SentinelSet::start(),
    )
    .await;
    assert!(set.url().starts_with("redis+sentinel://127.0.0.1:"));
    let first = set.primary_port().await;
    assert_eq!(first, set.data_ports()[0]);
    let dead = set.kill_primary().await;
    let promoted = set.wait_failover(dead).await;
    assert_eq!(promoted, set.data_ports()[1]);
    set.restart_data(dead).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while role(dead).await.as_deref() != Some("slave") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old primary was not demoted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sentinel_node(name: &str, url: String, prefix: &str) -> NodeHandle {
    let mut config = NodeConfig::new(name);
    config.channel_prefix = prefix.to_string();
    config.group_ack_timeout = Duration::from_secs(5);
    start_node_with(config, BackplaneChoice::RedisUrl(url)).await
}

async fn two_nodes_in_a_room(set: &SentinelSet) -> (NodeHandle, NodeHandle, HubClient, HubClient) {
    let prefix = unique_prefix();
    let a = sentinel_node("node-a", set.url(), &prefix).await;
    let b = sentinel_node("node-b", set.url(), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let mut a1 = connect(&a, Protocol::Json, None).await;
    let mut b1 = connect(&b, Protocol::Json, None).await;
    assert_eq!(
        a1.invoke("JoinGroup", str_args(&["room"])).await.unwrap(),
        CompletionResult::Void
    );
    assert_eq!(
        b1.invoke("JoinGroup", str_args(&["room"])).await.unwrap(),
        CompletionResult::Void
    );
    b1.invoke("SendToGroup", str_args(&["room", "x", "before"]))
        .await
        .unwrap();
    expect_message(&mut a1, "ReceiveMessage", STEP).await;
    expect_message(&mut b1, "ReceiveMessage", STEP).await;
    (a, b, a1, b1)
}

/// Kill the primary: the sentinels promote the replica, both nodes ask them again, reconnect to
/// the new primary and re-subscribe; cross-node delivery resumes. Prints the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_the_new_primary_after_the_old_one_dies() {
    let mut set = within_for(
        "starting a sentinel set",
        Duration::from_secs(60),
        SentinelSet::start(),
    )
    .await;
    let (a, b, mut a1, b1) = two_nodes_in_a_room(&set).await;
    let killed_at = Instant::now();
    let dead = set.kill_primary().await;
    let took = common::first_delivery(&b1, &mut a1, killed_at, "b→a", Duration::from_secs(40)).await;
    let promoted = set.wait_failover(dead).await;
    eprintln!(
        "FAILOVER sentinel (kill): kill → first cross-node delivery {} ms (new primary {promoted})",
        took.as_millis()
    );
    for node in [&a, &b] {
        let status = node.backplane_status().borrow().clone();
        assert!(status.state.is_up() && status.connects >= 2, "{status:?}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A failover where the old primary stays up (SENTINEL FAILOVER): for several seconds it still
/// calls itself a primary, and a node left on it would publish to nobody else. The nodes move on
/// the sentinel's +switch-master announcement. Prints the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_leave_a_demoted_primary_that_is_still_up() {
    let set = within_for(
        "starting a sentinel set",
        Duration::from_secs(60),
        SentinelSet::start(),
    )
    .await;
    let (a, b, mut a1, mut b1) = two_nodes_in_a_room(&set).await;
    let old = set.primary_port().await;
    let started = Instant::now();
    let reply = try_cmd(set.sentinel_ports()[0], &["SENTINEL", "FAILOVER", MASTER]).await;
    assert!(reply.is_some(), "SENTINEL FAILOVER answered");
    let new = set.wait_failover(old).await;
    let switched = started.elapsed();
    // Both directions must work on the new primary.
    let since = Instant::now();
    let b_to_a = common::first_delivery(&b1, &mut a1, since, "b→a", Duration::from_secs(40)).await;
    let a_to_b = common::first_delivery(&a1, &mut b1, Instant::now(), "a→b", Duration::from_secs(40)).await;
    eprintln!(
        "FAILOVER sentinel (SENTINEL FAILOVER, old primary up): sentinels switched after {} ms; then first delivery b→a {} ms, a→b {} ms; old primary {old} says role {:?}",
        switched.as_millis(),
        b_to_a.as_millis(),
        a_to_b.as_millis(),
        role(old).await
    );
    // The nodes publish to the new primary: its PUBLISH count sees both nodes' subscriptions.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a_moved = a.backplane_status().borrow().connects >= 2;
        let b_moved = b.backplane_status().borrow().connects >= 2;
        if a_moved && b_moved {
            break;
        }
        assert!(Instant::now() < deadline, "both nodes reconnected to {new}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}
