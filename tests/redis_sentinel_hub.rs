//! The hub node on a real Sentinel set (a primary, a replica, three sentinels) started by the
//! harness (tests/common/sentinel.rs): the harness itself, and nodes following a failover.

mod common;

use std::time::Duration;

use common::sentinel::{SentinelSet, role};
use common::within_for;

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
