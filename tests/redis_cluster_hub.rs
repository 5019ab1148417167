//! The hub node on a real Redis Cluster (3 primaries, 3 replicas) started by the harness
//! (tests/common/cluster.rs): the harness itself, what PUBLISH counts on a cluster, and the
//! delivery matrix between nodes connected to different primaries, across a primary's failover.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::cluster::{RedisCluster, delivery_matrix, try_cmd};
use common::redis::{Tap, publish};
use common::{STEP, connect, expect_message, start_node_with, unique_prefix, wait_connected};
use switchboard::client::str_args;
use switchboard::hub::{BackplaneChoice, NodeConfig, NodeHandle};
use switchboard::protocol::{CompletionResult, Protocol};
use tokio::time::Instant;

/// The harness forms a cluster, and a killed primary is replaced by its replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_forms_a_cluster_and_fails_over() {
    let mut cluster = RedisCluster::formed(3, 1).await;
    let primaries = cluster.primary_ports().await;
    assert_eq!(primaries.len(), 3, "three primaries: {primaries:?}");
    assert_eq!(cluster.ports().len(), 6);
    let dead = cluster.kill_primary(1).await;
    assert_eq!(dead, primaries[1]);
    let promoted = cluster.wait_failover(dead).await;
    assert_ne!(promoted, dead);
    assert!(cluster.ports().contains(&promoted));
    assert!(try_cmd(promoted, &["PING"]).await.is_some());
}

/// On a cluster, a classic PUBLISH reaches subscribers on every shard, but its reply counts only
/// the subscribers of the node that received the PUBLISH. This is why the node must not decide
/// "nobody else is listening" from the reply on a cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_every_shard_but_counts_only_its_own_node() {
    let mut cluster = RedisCluster::formed(3, 0).await;
    let primaries = cluster.primary_ports().await;
    let prefix = unique_prefix();
    let channel = format!("{prefix}probe");
    let mut tap = Tap::start(&cluster.url_of(primaries[1]), &format!("{prefix}*")).await;
    let counted = publish(&cluster.url_of(primaries[0]), &channel, b"hello").await;
    assert_eq!(
        counted, 0,
        "PUBLISH on another node counts only that node's subscribers"
    );
    let got = tap
        .wait_for(|c, p| c == channel && p == b"hello", common::STEP)
        .await;
    assert!(
        got.is_some(),
        "the subscriber on another shard received the message"
    );
    let counted_here = publish(&cluster.url_of(primaries[1]), &channel, b"again").await;
    assert_eq!(
        counted_here, 1,
        "on the subscriber's own node the count includes it"
    );
}

async fn cluster_node(name: &str, url: String, prefix: &str) -> NodeHandle {
    let mut config = NodeConfig::new(name);
    config.channel_prefix = prefix.to_string();
    config.group_ack_timeout = Duration::from_secs(5);
    start_node_with(config, BackplaneChoice::RedisUrl(url)).await
}

/// Two nodes, each given a different primary as its only seed, exchange every kind of message
/// and ack a remote AddToGroup (which failed before: the node read PUBLISH's local count as
/// "nobody else is on the backplane").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_different_primaries_exchange_every_target() {
    let mut cluster = RedisCluster::formed(3, 0).await;
    let primaries = cluster.primary_ports().await;
    let prefix = unique_prefix();
    let a = cluster_node("node-a", cluster.url_of(primaries[0]), &prefix).await;
    let b = cluster_node("node-b", cluster.url_of(primaries[1]), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    delivery_matrix(&a, &b).await;
    assert_eq!(a.stats()["group_ack_timeouts"], 0);
    assert_eq!(
        a.stats()["forward_unreached"],
        0,
        "a local PUBLISH count of 0 is not a loss on a cluster"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Kill the primary node A is connected to: its replica is promoted, A reconnects through the
/// cluster's other nodes (its only seed is dead), re-subscribes, and cross-node delivery resumes
/// in both directions. Prints the failover time (kill → first cross-node delivery).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_a_primary_failover() {
    let mut cluster = RedisCluster::formed(3, 1).await;
    let primaries = cluster.primary_ports().await;
    let prefix = unique_prefix();
    let a = cluster_node("node-a", cluster.url_of(primaries[0]), &prefix).await;
    let b = cluster_node("node-b", cluster.url_of(primaries[1]), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let mut a1 = connect(&a, Protocol::Json, None).await;
    let mut b1 = connect(&b, Protocol::Json, None).await;
    assert_eq!(
        a1.invoke("JoinGroup", str_args(&["room"])).await.expect("join"),
        CompletionResult::Void
    );
    assert_eq!(
        b1.invoke("JoinGroup", str_args(&["room"])).await.expect("join"),
        CompletionResult::Void
    );
    b1.invoke("SendToGroup", str_args(&["room", "x", "before"]))
        .await
        .expect("send");
    expect_message(&mut a1, "ReceiveMessage", STEP).await;
    expect_message(&mut b1, "ReceiveMessage", STEP).await;

    let killed_at = Instant::now();
    let dead = cluster.kill_primary(0).await;
    assert_eq!(dead, primaries[0]);
    // B → A: A must reconnect and re-subscribe the group.
    let b_to_a = common::first_delivery(&b1, &mut a1, killed_at, "b→a", Duration::from_secs(30)).await;
    let promoted = cluster.wait_failover(dead).await;
    let promoted_after = killed_at.elapsed();
    // Then A → B (b→a stragglers are skipped by label, no draining).
    let since = Instant::now();
    let a_to_b = common::first_delivery(&a1, &mut b1, since, "a→b", Duration::from_secs(30)).await;
    eprintln!(
        "FAILOVER cluster: kill → first cross-node delivery b→a {} ms; replica {promoted} promoted (cluster_state ok) after {} ms; a→b afterwards {} ms",
        b_to_a.as_millis(),
        promoted_after.as_millis(),
        a_to_b.as_millis()
    );
    let status = a.backplane_status().borrow().clone();
    assert!(status.state.is_up(), "A is connected again: {status:?}");
    assert!(status.connects >= 2, "A reconnected: {status:?}");
    a.shutdown().await;
    b.shutdown().await;
}
