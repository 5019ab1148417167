//! The Redis view's poller and the sharded tap against real servers: a 3-primary/3-replica
//! cluster from the harness (tests/common/cluster.rs) and a single redis-server with an ACL user.
//! The runtime's events are folded into the real model, as the dashboard does, and the tests look
//! at what the Redis view and the traffic stream would show.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::cluster::{RedisCluster, try_cmd};
use common::redis::{RedisServer, redis_cmd, resp_command, value_text};
use common::{unique_prefix, within_for};
use switchboard::monitor::model::redis_view::{LimitKnowledge, NodeRole, Severity};
use switchboard::monitor::model::traffic::FAILOVER_CHANNEL;
use switchboard::monitor::model::{Limits, Model};
use switchboard::monitor::runtime::MonitorEvents;
use switchboard::monitor::{MonitorCommand, MonitorHandle, TapSource, now_ms};
use switchboard::redis_conn::{RedisOptions, RedisSpec};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// How long one expected state may take: poll rounds are 5 s apart, a failover takes a few
/// seconds, the sharded tap discovers every 5 s.
const WAIT: Duration = Duration::from_secs(40);

/// The runtime's events folded into a model, as the dashboard's UI thread does.
struct Watch {
    events: MonitorEvents,
    model: Model,
}

impl Watch {
    async fn until<T>(&mut self, what: &str, mut f: impl FnMut(&Model) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(v) = f(&self.model) {
                return v;
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(batch)) => {
                    for event in batch {
                        self.model.apply(event, now_ms());
                    }
                }
                Ok(None) => panic!("the runtime stopped while waiting for {what}"),
                Err(_) => panic!(
                    "no {what} within {WAIT:?}; Redis view: {:#?}",
                    self.model.redis.latest()
                ),
            }
        }
    }
}

fn start_watch(url: &str, prefix: &str) -> (MonitorHandle, Watch) {
    let spec = RedisSpec::parse(url, &RedisOptions::default()).unwrap();
    let (handle, events) = MonitorHandle::start();
    assert!(handle.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: Box::new(spec),
        prefix: prefix.to_string(),
    }))));
    let watch = Watch {
        events,
        model: Model::new(Limits::default()),
    };
    (handle, watch)
}

/// `CLIENT LIST TYPE pubsub` on `port`: the `omem` of the client named `name`, if connected.
async fn omem_of(port: u16, name: &str) -> Option<u64> {
    let list = value_text(&try_cmd(port, &["CLIENT", "LIST", "TYPE", "pubsub"]).await?);
    list.lines()
        .find(|l| l.contains(&format!(" name={name} ")))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("omem=")))
        .and_then(|v| v.parse().ok())
}

/// A raw subscriber that never reads: a small receive buffer, so Redis's output buffer for it
/// grows with every message published to `channel`.
async fn stalled_subscriber(port: u16, name: &str, channel: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    stream
        .write_all(&resp_command(&["CLIENT", "SETNAME", name]))
        .await
        .unwrap();
    stream
        .write_all(&resp_command(&["SUBSCRIBE", channel]))
        .await
        .unwrap();
    stream
}

/// The whole Redis view on a real 3+3 cluster: six nodes with roles and slots; a stalled
/// subscriber reported near its output-buffer limit before Redis cuts it; a sharded SPUBLISH seen
/// by the tap; a killed primary shown as a failover marker in the traffic stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_view_on_a_real_cluster() {
    let mut cluster = RedisCluster::formed(3, 1).await;
    let primaries = cluster.primary_ports().await;
    let prefix = unique_prefix();
    let seeds = format!("redis://127.0.0.1:{},127.0.0.1:{}", primaries[0], primaries[1]);
    let (handle, mut watch) = start_watch(&seeds, &prefix);

    // Six nodes: three primaries covering all 16384 slots, three replicas with their primary's.
    let nodes = watch
        .until("a round with six answering nodes", |m| {
            let s = m.redis.latest()?;
            (s.nodes.len() == 6 && s.nodes.iter().all(|n| n.error.is_none())).then(|| s.nodes.clone())
        })
        .await;
    let primary_nodes: Vec<_> = nodes.iter().filter(|n| n.role == NodeRole::Primary).collect();
    assert_eq!(primary_nodes.len(), 3, "{nodes:#?}");
    let slots: u32 = primary_nodes
        .iter()
        .flat_map(|n| &n.slots)
        .map(|(lo, hi)| (*hi - *lo) as u32 + 1)
        .sum();
    assert_eq!(slots, 16384);
    for replica in nodes.iter().filter(|n| n.role != NodeRole::Primary) {
        let NodeRole::Replica { of: Some(of) } = &replica.role else {
            panic!("not a replica with a primary: {replica:#?}");
        };
        let primary = primary_nodes.iter().find(|p| &p.addr == of).unwrap();
        assert_eq!(replica.slots, primary.slots);
    }
    let snapshot = watch.model.redis.latest().unwrap().clone();
    assert!(
        snapshot
            .connection
            .reached
            .starts_with("cluster of 3 shards, 6 nodes"),
        "{}",
        snapshot.connection.reached
    );
    assert!(
        snapshot.connection.spec.contains("plaintext"),
        "{}",
        snapshot.connection.spec
    );
    // The dashboard's own tap is listed, by its name, on the seed it subscribed through, with its
    // two patterns: `{prefix}*` and `*:all` (broadcasts under foreign prefixes, for Health).
    watch
        .until("the dashboard's tap among the pub/sub clients", |m| {
            m.redis
                .latest()?
                .nodes
                .iter()
                .flat_map(|n| &n.clients)
                .any(|c| c.name == "switchboard-dashboard" && c.patterns == 2)
                .then_some(())
        })
        .await;

    // A stalled subscriber on primary 0, with a 4 MB hard limit: filled to 80-100 % of it.
    let port = primaries[0];
    let url = cluster.url_of(port);
    redis_cmd(
        &url,
        &["CONFIG", "SET", "client-output-buffer-limit", "pubsub 4mb 0 0"],
    )
    .await
    .unwrap();
    let channel = format!("{prefix}stalled");
    let _stalled = stalled_subscriber(port, "stalled-consumer", &channel).await;
    let payload = vec![b'x'; 64 * 1024];
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut publisher = within_for(
        "a publisher connection",
        WAIT,
        client.get_multiplexed_async_connection(),
    )
    .await
    .unwrap();
    let target = 4 * 1024 * 1024 * 80 / 100;
    let mut filled = 0;
    for _ in 0..400 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(&payload)
            .query_async(&mut publisher)
            .await
            .unwrap();
        filled = omem_of(port, "stalled-consumer").await.unwrap_or(0);
        if filled >= target {
            break;
        }
    }
    assert!(filled >= target, "the output buffer reached only {filled} bytes");
    let words = watch
        .until("a warning for the stalled subscriber", |m| {
            m.redis
                .warnings()
                .into_iter()
                .find(|(_, c, _)| c.name == "stalled-consumer")
                .map(|(_, _, w)| w)
        })
        .await;
    assert_eq!(words.severity, Severity::Critical);
    assert!(
        words.words.starts_with(
            "Redis will disconnect this subscriber when its output buffer passes 4 MB: it is at"
        ),
        "{}",
        words.words
    );
    assert!(
        omem_of(port, "stalled-consumer").await.is_some(),
        "warned before Redis cut it: it is still connected"
    );
    // And Redis does cut it past the limit.
    for _ in 0..100 {
        let _: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(&payload)
            .query_async(&mut publisher)
            .await;
        if omem_of(port, "stalled-consumer").await.is_none() {
            break;
        }
    }
    assert_eq!(
        omem_of(port, "stalled-consumer").await,
        None,
        "Redis disconnects it past 4 MB"
    );

    // Sharded pub/sub: a channel under the tap's prefix with a subscriber on its owner.
    let shard_channel = format!("{prefix}Hub:group:g1");
    let slot = match try_cmd(port, &["CLUSTER", "KEYSLOT", &shard_channel]).await {
        Some(redis::Value::Int(slot)) => slot as u16,
        other => panic!("CLUSTER KEYSLOT: {other:?}"),
    };
    let owner = cluster.owner_of(slot).await;
    let mut shard_subscriber = TcpStream::connect(("127.0.0.1", owner)).await.unwrap();
    shard_subscriber
        .write_all(&resp_command(&["SSUBSCRIBE", &shard_channel]))
        .await
        .unwrap();
    let subscribed_at = now_ms();
    watch
        .until("the sharded tap subscribed to the channel", |m| {
            let st = m.redis.shard_tap.as_ref()?;
            (st.discovered_at_ms > subscribed_at && st.subscribed >= 1 && st.primaries == 3).then_some(())
        })
        .await;
    let published = redis_cmd(
        &cluster.url_of(owner),
        &["SPUBLISH", &shard_channel, "sharded hello"],
    )
    .await
    .unwrap();
    assert_eq!(published, redis::Value::Int(2), "the raw subscriber and the tap");
    let entry = watch
        .until("the sharded message in the traffic stream", |m| {
            m.traffic.iter().find(|e| e.channel == shard_channel).cloned()
        })
        .await;
    assert_eq!(entry.payload, b"sharded hello");

    // Kill primary 1: its replica is promoted, and the traffic stream shows who and when.
    let killed_at = Instant::now();
    let dead = cluster.kill_primary(1).await;
    let promoted = cluster.wait_failover(dead).await;
    let promoted_after = killed_at.elapsed();
    let marker = watch
        .until("a failover marker", |m| {
            m.traffic.iter().find(|e| e.channel == FAILOVER_CHANNEL).cloned()
        })
        .await;
    let marked_after = killed_at.elapsed();
    assert!(
        marker.summary.starts_with(&format!(
            "failover: 127.0.0.1:{promoted} became primary of slots "
        )) && marker.summary.contains(&format!("(was 127.0.0.1:{dead})")),
        "{}",
        marker.summary
    );
    eprintln!(
        "failover: replica promoted {promoted_after:?} after the kill (harness), marker in the traffic stream after {marked_after:?}"
    );
    assert_eq!(watch.model.redis.failovers().len(), 1);
    handle.shutdown();
}

/// An ACL user that may not run CONFIG: the limit is "unknown", and the view names the missing
/// permission; the pub/sub clients are still listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_config_permission_the_limit_is_unknown_and_says_why() {
    let server = RedisServer::start().await;
    redis_cmd(
        &server.url(),
        &[
            "ACL",
            "SETUSER",
            "viewer",
            "on",
            ">viewerpw",
            "~*",
            "&*",
            "+@pubsub",
            "+@connection",
            "+info",
            "+role",
            "+client|list",
            "+client|setname",
        ],
    )
    .await
    .unwrap();
    let prefix = unique_prefix();
    let url = format!("redis://viewer:viewerpw@127.0.0.1:{}", server.port());
    let (handle, mut watch) = start_watch(&url, &prefix);
    let node = watch
        .until("a round with the dashboard's tap listed", |m| {
            let n = m.redis.latest()?.nodes.first()?.clone();
            n.clients
                .iter()
                .any(|c| c.name == "switchboard-dashboard")
                .then_some(n)
        })
        .await;
    assert_eq!(node.role, NodeRole::Primary);
    match &node.limit {
        LimitKnowledge::Unknown(why) => {
            assert!(why.contains("CONFIG GET") && why.contains("+config|get"), "{why}")
        }
        other => panic!("expected an unknown limit, got {other:?}"),
    }
    let connection = &watch.model.redis.latest().unwrap().connection;
    assert!(connection.spec.contains("user viewer"), "{}", connection.spec);
    assert!(!connection.url.contains("viewerpw"), "{}", connection.url);
    handle.shutdown();
}

/// A sentinel set (a primary, a replica, 3 sentinels): the view lists the primary and its replica,
/// and a killed primary becomes a failover marker naming the new primary of the sentinel master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_a_marker_in_the_traffic_stream() {
    let mut set = within_for(
        "starting a sentinel set",
        Duration::from_secs(60),
        common::sentinel::SentinelSet::start(),
    )
    .await;
    let prefix = unique_prefix();
    let (handle, mut watch) = start_watch(&set.url(), &prefix);
    let old = set.primary_port().await;
    let nodes = watch
        .until("a round with the primary and its replica", |m| {
            let s = m.redis.latest()?;
            (s.nodes.len() == 2 && s.nodes.iter().all(|n| n.error.is_none())).then(|| s.nodes.clone())
        })
        .await;
    assert_eq!(nodes[0].addr, format!("127.0.0.1:{old}"));
    assert_eq!(nodes[0].role, NodeRole::Primary);
    assert_eq!(
        nodes[1].role,
        NodeRole::Replica {
            of: Some(format!("127.0.0.1:{old}"))
        }
    );
    let reached = watch.model.redis.latest().unwrap().connection.reached.clone();
    assert!(
        reached.contains("mymaster") && reached.contains(&old.to_string()),
        "{reached}"
    );

    let killed_at = Instant::now();
    set.kill_primary().await;
    let new = set.wait_failover(old).await;
    let promoted_after = killed_at.elapsed();
    let marker = watch
        .until("a failover marker", |m| {
            m.traffic.iter().find(|e| e.channel == FAILOVER_CHANNEL).cloned()
        })
        .await;
    assert!(
        marker.summary.starts_with(&format!(
            "failover: 127.0.0.1:{new} became primary of sentinel master mymaster (was 127.0.0.1:{old})"
        )),
        "{}",
        marker.summary
    );
    eprintln!(
        "sentinel failover: new primary named by every sentinel {promoted_after:?} after the kill, marker after {:?}",
        killed_at.elapsed()
    );
    handle.shutdown();
}
