//! The sharded pub/sub tap. `SSUBSCRIBE` has no pattern form, so every few seconds this task asks
//! each primary `PUBSUB SHARDCHANNELS <tap pattern>` and `SSUBSCRIBE`s the channels it has not
//! subscribed yet, on that primary (the one that owns their slot). Messages (`smessage` pushes)
//! go through a [`Batcher`] like classic traffic. The age of the last discovery round is reported
//! ([`MonitorEvent::ShardTap`]): a channel created since may not be tapped yet.
//!
//! A slot that moves makes Redis send `sunsubscribe` for its channels: they are forgotten and
//! found again on their new owner at the next round. A lost connection forgets its channels.
//!
//! redis-rs 1.8's `PubSub` has no `ssubscribe`, so each primary gets a RESP3 command connection
//! whose pushes go to one bounded queue (full: dropped and counted with the UI's drops). The
//! connection is made here (`resp3_connection`) because `redis_conn` has no RESP3 variant yet;
//! it belongs in `RedisConnector` (reported to the lead).
//!
//! Spawned by `tap` next to the classic tap; ends with the tap's cancel token.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::batcher::Batcher;
use super::model::redis_view::ShardTapStatus;
use super::now_ms;
use super::{MonitorEvent, sink::EventSink};
use crate::backplane::naming::Channels;
use crate::config;
use crate::redis_conn::{Addr, Reached, RedisConnector, Role, describe};

/// Time between two discovery rounds: a new shard channel is tapped within this. `PUBSUB
/// SHARDCHANNELS` scans the primary's shard-channel table, so it is not asked more often.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);

/// Shard channels subscribed at most (over all primaries): one per group or user channel of a
/// sharded backplane; past this the rest is not tapped and the status says so.
pub const MAX_SHARD_CHANNELS: usize = 10_000;

/// Messages queued from the connections' push senders to this task; beyond it they are dropped
/// (the push sender must not block the connection) and counted as dropped entries.
const PUSH_QUEUE: usize = 16_384;

/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// One primary's subscriber connection and what it subscribed.
struct Subscriber {
    connection: MultiplexedConnection,
    channels: BTreeSet<String>,
}

/// Runs until `cancel`.
pub(crate) async fn run(
    connector: RedisConnector,
    mut batcher: Batcher,
    sink: EventSink,
    cancel: CancellationToken,
) {
    let pattern = Channels::tap_pattern(batcher.prefix());
    let (push_tx, mut push_rx) = mpsc::channel::<PushInfo>(PUSH_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let mut counted_drops = 0;
    let mut subscribers: HashMap<Addr, Subscriber> = HashMap::new();
    let mut discovery = tokio::time::interval(DISCOVERY_INTERVAL);
    discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut flush = tokio::time::interval(config::DEFAULT_MONITOR_FLUSH);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = flush.tick() => {
                batcher.flush();
                let now_dropped = dropped.load(Ordering::Relaxed);
                if now_dropped > counted_drops {
                    batcher.shed((now_dropped - counted_drops) as usize);
                    counted_drops = now_dropped;
                }
            }
            push = push_rx.recv() => match push {
                Some(push) => on_push(push, &mut batcher, &mut subscribers),
                None => break,
            },
            _ = discovery.tick() => {
                let round = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = discover(&connector, &pattern, &mut subscribers, &push_tx, &dropped) => r,
                };
                sink.push(MonitorEvent::ShardTap(round));
            }
        }
    }
    batcher.flush();
}

/// A message, or Redis telling that a channel was unsubscribed (its slot moved) or that a
/// connection is gone.
fn on_push(push: PushInfo, batcher: &mut Batcher, subscribers: &mut HashMap<Addr, Subscriber>) {
    match push.kind {
        PushKind::SMessage => {
            if let [channel, payload, ..] = push.data.as_slice()
                && let (Some(channel), Value::BulkString(payload)) = (text(channel), payload)
            {
                batcher.message(&channel, payload);
            }
        }
        PushKind::SUnsubscribe => {
            if let Some(channel) = push.data.first().and_then(text) {
                for s in subscribers.values_mut() {
                    s.channels.remove(&channel);
                }
            }
        }
        // A connection ended: the next round finds out which (its commands fail) and starts over.
        _ => {}
    }
}

/// One discovery round on every primary.
async fn discover(
    connector: &RedisConnector,
    pattern: &str,
    subscribers: &mut HashMap<Addr, Subscriber>,
    push_tx: &mpsc::Sender<PushInfo>,
    dropped: &Arc<AtomicU64>,
) -> ShardTapStatus {
    let mut status = ShardTapStatus::default();
    let reached =
        match tokio::time::timeout(config::DEFAULT_REDIS_CONNECT_TIMEOUT * 2, connector.reach()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                status.error = Some(e.to_string());
                status.discovered_at_ms = now_ms();
                return status;
            }
            Err(_) => {
                status.error = Some("timed out finding the primaries".into());
                status.discovered_at_ms = now_ms();
                return status;
            }
        };
    let primaries = serving_primaries(&reached);
    // A server that is no longer a primary keeps nothing: its channels are found on their owner.
    subscribers.retain(|addr, _| primaries.contains(addr));
    let mut problems = Vec::new();
    let mut not_tapped = 0usize;
    for addr in &primaries {
        if !subscribers.contains_key(addr) {
            match resp3_connection(connector, addr, push_tx.clone(), dropped.clone()).await {
                Ok(connection) => {
                    subscribers.insert(
                        addr.clone(),
                        Subscriber {
                            connection,
                            channels: BTreeSet::new(),
                        },
                    );
                }
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            }
        }
        let total: usize = subscribers.values().map(|s| s.channels.len()).sum();
        let Some(sub) = subscribers.get_mut(addr) else {
            continue;
        };
        let found = command::<Vec<String>>(
            &mut sub.connection,
            redis::cmd("PUBSUB").arg("SHARDCHANNELS").arg(pattern),
        )
        .await;
        let found = match found {
            Ok(f) => f,
            Err(e) if e.to_ascii_lowercase().contains("unknown subcommand") => {
                // Redis before 7: nothing sharded to tap; the connection is kept (no churn).
                problems.push(format!(
                    "{addr}: no sharded pub/sub on this Redis (needs Redis 7)"
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!("{addr}: PUBSUB SHARDCHANNELS: {e}"));
                subscribers.remove(addr);
                continue;
            }
        };
        let mut room = MAX_SHARD_CHANNELS.saturating_sub(total);
        for channel in found {
            if sub.channels.contains(&channel) {
                continue;
            }
            if room == 0 {
                not_tapped += 1;
                continue;
            }
            // One channel per command: several in one SSUBSCRIBE must share a slot.
            match command::<Value>(&mut sub.connection, redis::cmd("SSUBSCRIBE").arg(&channel)).await {
                Ok(_) => {
                    sub.channels.insert(channel);
                    room -= 1;
                }
                Err(e) => {
                    // MOVED: the slot moved since SHARDCHANNELS; the next round asks its owner.
                    problems.push(format!("{addr}: SSUBSCRIBE {channel}: {e}"));
                    break;
                }
            }
        }
    }
    if not_tapped > 0 {
        problems.push(format!(
            "{not_tapped} shard channels not tapped (at most {MAX_SHARD_CHANNELS})"
        ));
    }
    status.primaries = primaries.len();
    status.subscribed = subscribers.values().map(|s| s.channels.len()).sum();
    status.error = (!problems.is_empty()).then(|| problems.join("; "));
    status.discovered_at_ms = now_ms();
    status
}

/// The primaries that own slots now. In a cluster, a failed primary whose slots went to its
/// replica stays listed by `CLUSTER SHARDS` (as a primary of no slots, or flagged `fail`): it is
/// left out, so it costs no connection attempt per round.
fn serving_primaries(reached: &Reached) -> Vec<Addr> {
    match reached {
        Reached::Cluster { shards, .. } => shards
            .iter()
            .filter(|s| !s.slots.is_empty())
            .filter_map(|s| {
                s.nodes
                    .iter()
                    .find(|n| n.role == Role::Primary && n.health == "online")
            })
            .map(|n| n.addr.clone())
            .collect(),
        other => other.primaries(),
    }
}

async fn command<T: redis::FromRedisValue>(
    connection: &mut MultiplexedConnection,
    command: &mut redis::Cmd,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command.query_async::<T>(connection)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err(format!("timed out after {COMMAND_TIMEOUT:?}")),
    }
}

/// A RESP3 command connection to `addr` whose pushes go to `push_tx` (dropped and counted in
/// `dropped` when it is full), with the spec's TLS, user, password and database, named like the
/// tap's connections.
async fn resp3_connection(
    connector: &RedisConnector,
    addr: &Addr,
    push_tx: mpsc::Sender<PushInfo>,
    dropped: Arc<AtomicU64>,
) -> Result<MultiplexedConnection, String> {
    // The connector authenticates and names the connection (`switchboard-dashboard`); pushes
    // go to a bounded queue, and what does not fit is counted.
    let sender = move |push: PushInfo| -> Result<(), ()> {
        if push_tx.try_send(push).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    };
    let connect = connector.multiplexed_resp3(addr, sender);
    let timeout = config::DEFAULT_REDIS_CONNECT_TIMEOUT;
    match tokio::time::timeout(timeout * 2, connect).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("{addr}: connecting timed out after {:?}", timeout * 2)),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_conn::{ClusterNode, Shard};

    fn node(port: u16, role: Role, health: &str) -> ClusterNode {
        ClusterNode {
            id: port.to_string(),
            addr: Addr::new("127.0.0.1", port),
            role,
            health: health.into(),
        }
    }

    #[test]
    fn a_failed_primary_without_slots_is_not_tapped() {
        let reached = Reached::Cluster {
            seed: Addr::new("127.0.0.1", 7000),
            shards: vec![
                Shard {
                    slots: vec![(0, 8191)],
                    nodes: vec![
                        node(7000, Role::Primary, "online"),
                        node(7003, Role::Replica, "online"),
                    ],
                },
                Shard {
                    slots: vec![(8192, 16383)],
                    nodes: vec![
                        node(7001, Role::Primary, "fail"),
                        node(7004, Role::Primary, "online"),
                    ],
                },
                Shard {
                    slots: vec![],
                    nodes: vec![node(7002, Role::Primary, "fail")],
                },
            ],
        };
        assert_eq!(
            serving_primaries(&reached),
            vec![Addr::new("127.0.0.1", 7000), Addr::new("127.0.0.1", 7004)]
        );
        let single = Reached::Single(Addr::new("h", 1));
        assert_eq!(serving_primaries(&single), vec![Addr::new("h", 1)]);
    }
}
