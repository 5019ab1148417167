//! Node state is true, end to end: a test-owned redis-server, two real hub nodes with real
//! clients, the real monitor runtime, and its events folded into the real dashboard `Model` as the
//! UI thread does. A node that is shut down is marked down (or stale) and dropped from the
//! cluster total within 2 s; the dashboard's own probes are never counted as clients.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{connect, start_node, unique_prefix, within};
use switchboard::hub::{BackplaneChoice, NodeHandle};
use switchboard::monitor::model::nodes::Nodes;
use switchboard::monitor::model::{Limits, Model};
use switchboard::monitor::runtime::MonitorEvents;
use switchboard::monitor::{MonitorCommand, MonitorHandle, NodeTarget, now_ms};
use switchboard::protocol::Protocol;

/// How long the cluster may take to settle (connections, first stats).
const SETTLE: Duration = Duration::from_secs(20);

/// How long the test waits for a stopped node to leave the totals. The promise itself (stale
/// after `DEFAULT_STATS_STALE`) is the model's, tested with injected time in `model::nodes`;
/// here only that it happens, with the time it took printed, never asserted.
const MARKED_WITHIN: Duration = Duration::from_secs(10);

fn target(node: &NodeHandle) -> NodeTarget {
    NodeTarget {
        hub_url: node.hub_url(),
        monitor_url: Some(format!("{}/switchboard/stats", node.base_url())),
    }
}

/// Folds the runtime's events into `model` (with the wall clock, as the UI does) until `done`
/// holds or `budget` runs out; checks `done` at least every 50 ms, since staleness comes from
/// time passing, not from an event. Returns how long it took, or `None` past the budget.
async fn fold_until(
    rx: &mut MonitorEvents,
    model: &mut Model,
    budget: Duration,
    done: impl Fn(&Model, u64) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    loop {
        let now = now_ms();
        model.tick(now);
        if done(model, now) {
            return Some(started.elapsed());
        }
        let left = budget.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left.min(Duration::from_millis(50)), rx.recv()).await {
            Ok(Some(batch)) => {
                let now = now_ms();
                for event in batch {
                    model.apply(event, now);
                }
            }
            Ok(None) => panic!("the monitor runtime stopped"),
            Err(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_is_marked_and_leaves_the_totals() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("node-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("node-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let (monitor, mut rx) = MonitorHandle::start();
    let mut model = Model::new(Limits::default());
    for node in [&a, &b] {
        model.nodes.upsert(target(node));
        assert!(monitor.command(MonitorCommand::AddNode(target(node))));
    }
    // Two clients on a, three on b; each node also holds the dashboard's probe.
    let mut clients = Vec::new();
    for (node, user) in [(&a, "ann"), (&a, "bob"), (&b, "cho"), (&b, "dev"), (&b, "eve")] {
        clients.push(connect(node, Protocol::Json, Some(user)).await);
    }
    let settled = fold_until(&mut rx, &mut model, SETTLE, |m, now| {
        m.nodes.live_count(now) == 2 && m.nodes.cluster_total_clients(now) == 5 && m.nodes.probes(now) == 2
    })
    .await;
    assert!(
        settled.is_some(),
        "both nodes live with 5 clients + 2 probes: {:#?}",
        model.nodes.rows()
    );
    let b_row = model.nodes.get(&b.hub_url()).expect("node-b's row");
    assert_eq!(b_row.clients(), Some(3), "node-b counts 3 clients + its probe");
    assert_eq!(b_row.connections(), Some(4));
    assert_eq!(b_row.clients_text().as_deref(), Some("3 clients + 1 probe"));
    assert!(
        b_row.probe_connection_id.is_some(),
        "the probe's connection id is known"
    );

    // Node b goes away (its clients are closed by the shutdown, as when a process ends).
    within("node-b shutdown", b.shutdown()).await;
    let gone_at = now_ms();
    let took = fold_until(&mut rx, &mut model, MARKED_WITHIN, |m, now| {
        m.nodes
            .get(&b.hub_url())
            .is_some_and(|r| !Nodes::liveness(r, now).is_live())
            && m.nodes.cluster_total_clients(now) == 2
            && m.nodes.live_count(now) == 1
            && m.nodes.probes(now) == 1
    })
    .await;
    let now = now_ms();
    let row = model.nodes.get(&b.hub_url()).expect("node-b's row stays, marked");
    assert!(
        took.is_some(),
        "node-b still counted {MARKED_WITHIN:?} after it stopped: {:?}, total {}",
        Nodes::liveness(row, now),
        model.nodes.cluster_total_clients(now)
    );
    let last_seen = Nodes::liveness(row, now)
        .last_seen_ms()
        .expect("a last-seen time");
    assert!(
        last_seen <= gone_at,
        "last seen {last_seen} is before it went away at {gone_at}"
    );
    assert!(row.stats.is_some(), "its last values are kept (shown greyed)");
    eprintln!("node-b left the totals {took:?} after its shutdown returned");

    for client in clients {
        within("closing a client", client.close()).await;
    }
    monitor.shutdown();
    within("monitor shutdown", monitor.stopped()).await;
    within("node-a shutdown", a.shutdown()).await;
}
