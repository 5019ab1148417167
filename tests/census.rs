//! The dashboard's census against real Redis processes: one `PUBSUB CHANNELS` walk per round,
//! timed by Redis's own clock; and on a real 3-primary cluster (with replicas) the census asks
//! every node and merges what they hold, so its counts equal what the raw clients hold.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::cluster::RedisCluster;
use common::redis::RedisServer;
use common::{STEP, unique_prefix, within};
use switchboard::backplane::naming::Channels;
use switchboard::monitor::runtime::MonitorEvents;
use switchboard::monitor::{CensusStatus, HubCensus, MonitorCommand, MonitorEvent, MonitorHandle, TapSource};
use switchboard::redis_conn::RedisSpec;

const HUB: &str = "Switchboard.ChatHub";

/// A raw client holding `channels` subscribed on the server at `url`.
async fn hold(url: &str, channels: &[String]) -> redis::aio::PubSub {
    let client = redis::Client::open(url).unwrap();
    let mut pubsub = within("a raw subscriber connects", client.get_async_pubsub())
        .await
        .unwrap();
    for c in channels {
        within("SUBSCRIBE", pubsub.subscribe(c)).await.unwrap();
    }
    pubsub
}

fn start_monitor(url: &str, prefix: &str) -> (MonitorHandle, MonitorEvents) {
    let (monitor, events) = MonitorHandle::start();
    let spec = RedisSpec::parse(url, &Default::default()).unwrap();
    assert!(monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: Box::new(spec),
        prefix: prefix.to_string(),
    }))));
    (monitor, events)
}

/// Waits for a census of `HUB` equal to `want` and a status with at least one walk; returns the
/// latest status.
async fn census_equal(events: &mut MonitorEvents, want: &HubCensus, limit: Duration) -> CensusStatus {
    let mut last_census: Option<Vec<HubCensus>> = None;
    let mut status: Option<CensusStatus> = None;
    let wait = async {
        loop {
            let Some(batch) = events.recv().await else {
                panic!("the monitor stopped");
            };
            for event in batch {
                match event {
                    MonitorEvent::Census { hubs, .. } => last_census = Some(hubs),
                    MonitorEvent::CensusStatus(s) => status = Some(s),
                    _ => {}
                }
            }
            let matched = last_census
                .as_ref()
                .is_some_and(|hubs| hubs.iter().any(|h| h == want));
            if let (true, Some(s)) = (matched, &status)
                && s.scans > 0
            {
                return s.clone();
            }
        }
    };
    match tokio::time::timeout(limit, wait).await {
        Ok(s) => s,
        Err(_) => {
            panic!("no census equal to {want:?} within {limit:?}; last: {last_census:?}, status {status:?}")
        }
    }
}

fn cmdstat_calls(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:")))
        .and_then(|rest| rest.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// On one server: the census counts what raw clients hold, walks once per round (one
/// `PUBSUB CHANNELS` call per walk, checked in INFO commandstats), and reports Redis's own time
/// for the walk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_walk_per_round_counts_what_is_held_and_is_timed_by_redis() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let c = Channels::new(&prefix, HUB);
    let held = vec![
        c.connection("a"),
        c.connection("b"),
        c.user("u1"),
        c.group("g1"),
        c.ack("s1"),
        c.all(),
        // Another prefix: not counted.
        Channels::new("other:", HUB).connection("x"),
    ];
    let _holder = hold(&redis.url(), &held).await;
    let (monitor, mut events) = start_monitor(&redis.url(), &prefix);
    let want = HubCensus {
        hub: HUB.into(),
        connections: 2,
        users: 1,
        groups: 1,
        servers: vec!["s1".into()],
        return_servers: vec![],
    };
    let status = census_equal(&mut events, &want, STEP).await;
    assert_eq!(status.nodes.len(), 1, "{status:?}");
    assert!(
        status.scan_server.is_some(),
        "Redis's own time is read: {status:?}"
    );
    assert!(status.problem.is_none(), "{status:?}");
    let info = match common::redis::redis_cmd(&redis.url(), &["INFO", "commandstats"])
        .await
        .unwrap()
    {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("INFO: {other:?}"),
    };
    monitor.shutdown();
    within("the monitor stops", monitor.stopped()).await;
    let calls = cmdstat_calls(&info, "pubsub|channels");
    assert!(calls >= status.scans, "{calls} calls for {} walks", status.scans);
    assert!(
        calls <= status.scans + 1,
        "one PUBSUB CHANNELS per walk: {calls} calls for {} walks",
        status.scans
    );
}

/// On a 3-primary cluster with a replica each, channels held on different primaries and on a
/// replica are all counted, and a user or group held on two nodes counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_census_of_a_cluster_sums_every_node() {
    let mut cluster = RedisCluster::formed(3, 1).await;
    let primaries = cluster.primary_ports().await;
    assert_eq!(primaries.len(), 3);
    let replica = cluster
        .view()
        .await
        .into_iter()
        .find(|n| !n.primary && !n.failed)
        .map(|n| n.port)
        .expect("a replica");
    let prefix = unique_prefix();
    let c = Channels::new(&prefix, HUB);
    let _p0 = hold(
        &cluster.url_of(primaries[0]),
        &[
            c.connection("a"),
            c.connection("b"),
            c.user("u1"),
            c.group("g1"),
            c.ack("s1"),
        ],
    )
    .await;
    let _p1 = hold(
        &cluster.url_of(primaries[1]),
        &[
            c.connection("c"),
            c.user("u1"),
            c.group("g1"),
            c.group("g2"),
            c.ack("s2"),
        ],
    )
    .await;
    let _p2 = hold(&cluster.url_of(primaries[2]), &[c.connection("d"), c.ack("s3")]).await;
    // A client may SUBSCRIBE on a replica; only that replica's PUBSUB CHANNELS lists it.
    let _r = hold(&cluster.url_of(replica), &[c.connection("e"), c.user("u2")]).await;

    // The dashboard is given one seed only: it finds the other nodes itself.
    let (monitor, mut events) = start_monitor(&cluster.url_of(primaries[1]), &prefix);
    let want = HubCensus {
        hub: HUB.into(),
        connections: 5,
        users: 2,
        groups: 2,
        servers: vec!["s1".into(), "s2".into(), "s3".into()],
        return_servers: vec![],
    };
    let status = census_equal(&mut events, &want, STEP * 2).await;
    assert_eq!(
        status.nodes.len(),
        6,
        "every primary and replica asked: {status:?}"
    );
    assert!(status.scan_server.is_some(), "{status:?}");
    monitor.shutdown();
    within("the monitor stops", monitor.stopped()).await;
}
