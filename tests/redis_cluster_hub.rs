//! The hub node on a real Redis Cluster (3 primaries, 3 replicas) started by the harness
//! (tests/common/cluster.rs): the harness itself, what PUBLISH counts on a cluster, and the
//! delivery matrix between nodes connected to different primaries, across a primary's failover.

mod common;

use common::cluster::{RedisCluster, try_cmd};
use common::redis::{Tap, publish};
use common::{unique_prefix, within_for};

/// The harness forms a cluster, and a killed primary is replaced by its replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_forms_a_cluster_and_fails_over() {
    let mut cluster = within_for(
        "forming a 3+3 cluster",
        std::time::Duration::from_secs(60),
        RedisCluster::start(3, 1),
    )
    .await;
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
    let mut cluster = within_for(
        "forming a 3+0 cluster",
        std::time::Duration::from_secs(60),
        RedisCluster::start(3, 0),
    )
    .await;
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
