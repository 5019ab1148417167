//! The Redis view's poller: every few seconds it finds the servers behind the tap's spec (the
//! cluster's shards, the sentinel primary and its replicas, or a single server and its replicas)
//! and asks each, on its own command connection: `ROLE` (outside a cluster), `CLIENT LIST TYPE
//! pubsub` and `CONFIG GET client-output-buffer-limit`. One round becomes one
//! [`MonitorEvent::Redis`]; the model turns a changed primary into a failover marker.
//!
//! Watching must not load a production Redis: `CLIENT LIST` is O(clients) on the server, so it
//! asks for pub/sub clients only, times every call, and spaces the rounds so that their Redis
//! time stays under [`MAX_SHARE_PERCENT`] of the wall clock; each reply is cut to the
//! [`MAX_CLIENTS_PER_NODE`] fullest output buffers before it leaves this task.
//!
//! Started and stopped with the tap by `runtime`. Uses `redis_conn` and the pure
//! `model::redis`; never `hub` or `ui`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::model::redis_view::{
    ConnectionSummary, LimitKnowledge, NodeRole, NodeSnapshot, PrimaryOf, RedisSnapshot, parse_client_list,
    parse_output_limit,
};
use super::now_ms;
use super::sink::EventSink;
use super::{MonitorEvent, tap};
use crate::config;
use crate::redis_conn::{Addr, ConnectError, Reached, RedisConnector, RedisSpec, Role, describe};

/// The shortest time between two rounds: a failover shows within this (plus the time Redis
/// takes to promote a replica), and five seconds is slow enough to be free on a small Redis.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The longest time between two rounds, however slow the last one was.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(120);

/// The poller's commands may take at most this share of Redis's time (a round that took 20 ms of
/// Redis time waits at least 2 s before the next): `CLIENT LIST` on 10,000 pub/sub clients takes
/// tens of milliseconds, during which Redis serves nobody else.
pub const MAX_SHARE_PERCENT: u32 = 1;

/// Pub/sub clients kept per node, the fullest output buffers first: the view needs the ones
/// near their limit, and a list of 10,000 rows helps nobody.
pub const MAX_CLIENTS_PER_NODE: usize = 200;

/// How long one command may take before the node counts as not answering this round.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// One server to ask this round.
struct Target {
    addr: Addr,
    role: NodeRole,
    slots: Vec<(u16, u16)>,
    health: String,
}

/// Runs the poller until `cancel`.
pub(crate) async fn run(spec: RedisSpec, sink: EventSink, cancel: CancellationToken) {
    let Ok(connector) = tap::connector_for(&spec) else {
        // The tap reports why the spec cannot work.
        return;
    };
    let mut poller = Poller {
        connector,
        spec,
        connections: HashMap::new(),
    };
    loop {
        let snapshot = tokio::select! {
            _ = cancel.cancelled() => return,
            s = poller.round() => s,
        };
        let wait = spacing(Duration::from_micros(snapshot.cost_micros));
        let mut snapshot = snapshot;
        snapshot.next_at_ms = snapshot.at_ms + wait.as_millis() as u64;
        sink.push(MonitorEvent::Redis(Box::new(snapshot)));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One round of the poller, alone (`switchboard check`: the same `CLIENT LIST` and output-buffer
/// limit the dashboard's health reads, asked the same way), on `connector`'s connections.
pub async fn one_round(connector: RedisConnector, spec: RedisSpec) -> RedisSnapshot {
    let mut poller = Poller {
        connector,
        spec,
        connections: HashMap::new(),
    };
    poller.round().await
}

/// The wait after a round whose commands took `cost` of Redis's time, so that the poller's share
/// stays under [`MAX_SHARE_PERCENT`].
pub fn spacing(cost: Duration) -> Duration {
    (cost * (100 / MAX_SHARE_PERCENT)).clamp(POLL_INTERVAL, MAX_POLL_INTERVAL)
}

struct Poller {
    connector: RedisConnector,
    spec: RedisSpec,
    /// One command connection per server, kept between rounds (dropped when it fails).
    connections: HashMap<Addr, MultiplexedConnection>,
}

impl Poller {
    async fn round(&mut self) -> RedisSnapshot {
        let mut snapshot = RedisSnapshot {
            connection: ConnectionSummary {
                spec: self.spec.describe(),
                reached: String::new(),
                url: self.spec.redacted(),
            },
            ..RedisSnapshot::default()
        };
        let reach =
            tokio::time::timeout(config::DEFAULT_REDIS_CONNECT_TIMEOUT * 2, self.connector.reach()).await;
        let reached = match reach {
            Ok(Ok(reached)) => reached,
            Ok(Err(e)) => {
                snapshot.connection.reached = "not reached".into();
                snapshot.error = Some(e.to_string());
                snapshot.at_ms = now_ms();
                return snapshot;
            }
            Err(_) => {
                snapshot.connection.reached = "not reached".into();
                snapshot.error = Some("timed out finding the Redis servers".into());
                snapshot.at_ms = now_ms();
                return snapshot;
            }
        };
        snapshot.connection.reached = describe_reached(&reached);
        let mut targets = Vec::new();
        match &reached {
            Reached::Cluster { shards, .. } => {
                for shard in shards {
                    let online_primary = shard
                        .nodes
                        .iter()
                        .find(|n| n.role == Role::Primary && n.health == "online");
                    if let Some(p) = online_primary
                        && !shard.slots.is_empty()
                    {
                        snapshot
                            .primaries
                            .push((PrimaryOf::Slots(shard.slots.clone()), p.addr.to_string()));
                    }
                    for node in &shard.nodes {
                        targets.push(Target {
                            addr: node.addr.clone(),
                            role: match node.role {
                                Role::Primary => NodeRole::Primary,
                                Role::Replica => NodeRole::Replica {
                                    of: online_primary.map(|p| p.addr.to_string()),
                                },
                            },
                            slots: shard.slots.clone(),
                            health: node.health.clone(),
                        });
                    }
                }
            }
            Reached::Sentinel { primary, master, .. } => {
                snapshot
                    .primaries
                    .push((PrimaryOf::Sentinel(master.clone()), primary.to_string()));
                targets.extend(self.replication_group(primary).await);
            }
            Reached::Single(addr) => {
                let group = self.replication_group(addr).await;
                if let Some(p) = group.iter().find(|t| t.role == NodeRole::Primary) {
                    snapshot.primaries.push((PrimaryOf::Single, p.addr.to_string()));
                }
                targets.extend(group);
            }
        }
        for target in targets {
            let node = self.ask(target).await;
            snapshot.cost_micros += node.list_micros;
            snapshot.nodes.push(node);
        }
        snapshot.at_ms = now_ms();
        snapshot
    }

    /// The server at `addr` and, when it is a primary, its replicas (from its `ROLE`).
    async fn replication_group(&mut self, addr: &Addr) -> Vec<Target> {
        let role = match self.command::<Value>(addr, &mut redis::cmd("ROLE")).await {
            Ok(v) => parse_role(&v),
            Err(_) => None,
        };
        let mut out = Vec::new();
        match role {
            Some(RoleReply::Primary { replicas }) => {
                out.push(Target {
                    addr: addr.clone(),
                    role: NodeRole::Primary,
                    slots: Vec::new(),
                    health: String::new(),
                });
                for r in replicas {
                    out.push(Target {
                        addr: r,
                        role: NodeRole::Replica {
                            of: Some(addr.to_string()),
                        },
                        slots: Vec::new(),
                        health: String::new(),
                    });
                }
            }
            Some(RoleReply::Replica { of }) => out.push(Target {
                addr: addr.clone(),
                role: NodeRole::Replica {
                    of: Some(of.to_string()),
                },
                slots: Vec::new(),
                health: String::new(),
            }),
            None => out.push(Target {
                addr: addr.clone(),
                role: NodeRole::Unknown,
                slots: Vec::new(),
                health: String::new(),
            }),
        }
        out
    }

    /// Asks one server for its pub/sub clients and its output-buffer limit.
    async fn ask(&mut self, target: Target) -> NodeSnapshot {
        let mut node = NodeSnapshot {
            addr: target.addr.to_string(),
            role: target.role,
            slots: target.slots,
            health: target.health,
            clients: Vec::new(),
            clients_total: 0,
            limit: LimitKnowledge::Unknown("not asked".into()),
            list_micros: 0,
            error: None,
        };
        let started = Instant::now();
        let list = self
            .command::<String>(
                &target.addr,
                redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub"),
            )
            .await;
        node.list_micros = started.elapsed().as_micros() as u64;
        match list {
            Ok(text) => {
                let mut clients = parse_client_list(&text);
                node.clients_total = clients.len();
                clients.sort_by_key(|c| std::cmp::Reverse(c.omem));
                clients.truncate(MAX_CLIENTS_PER_NODE);
                node.clients = clients;
            }
            Err(e) => {
                node.error = Some(e.to_string());
                if !self.connections.contains_key(&target.addr) {
                    // The link failed (not a refusal by Redis): no point asking more this round.
                    node.limit = LimitKnowledge::Unknown("the node did not answer".into());
                    return node;
                }
            }
        }
        let limit = self
            .command::<Vec<String>>(
                &target.addr,
                redis::cmd("CONFIG").arg("GET").arg("client-output-buffer-limit"),
            )
            .await;
        node.limit = match limit {
            Ok(pair) => match pair.get(1).and_then(|v| parse_output_limit(v)) {
                Some(l) => LimitKnowledge::Known(l),
                None => LimitKnowledge::Unknown("no pubsub class in client-output-buffer-limit".into()),
            },
            Err(e) => LimitKnowledge::Unknown(e.to_string()),
        };
        node
    }

    /// Runs one command on the server's kept connection (opened when missing), with a timeout;
    /// a connection that failed is dropped and opened again next time.
    async fn command<T: redis::FromRedisValue>(
        &mut self,
        addr: &Addr,
        command: &mut redis::Cmd,
    ) -> Result<T, ConnectError> {
        if !self.connections.contains_key(addr) {
            let c = self.connector.multiplexed(addr).await?;
            self.connections.insert(addr.clone(), c);
        }
        let Some(connection) = self.connections.get_mut(addr) else {
            return Err(ConnectError::Config("no connection".into()));
        };
        let result = match tokio::time::timeout(COMMAND_TIMEOUT, command.query_async::<T>(connection)).await {
            // A lost link is not Redis refusing the command: the connection is dropped below.
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() => {
                Err(ConnectError::Io {
                    addr: addr.to_string(),
                    reason: describe(&e),
                })
            }
            Ok(r) => r.map_err(|e| ConnectError::Redis {
                addr: addr.to_string(),
                reason: describe(&e),
            }),
            Err(_) => Err(ConnectError::Timeout {
                addr: addr.to_string(),
                what: "command",
                after: COMMAND_TIMEOUT,
            }),
        };
        if let Err(e) = &result
            && !matches!(e, ConnectError::Redis { .. })
        {
            self.connections.remove(addr);
        }
        result
    }
}

/// What the spec reaches, in one line. For a cluster, only shards that serve slots count (a
/// failed primary whose slots moved to its replica is listed by `CLUSTER SHARDS` as a shard of
/// its own, without slots).
fn describe_reached(reached: &Reached) -> String {
    match reached {
        Reached::Cluster { seed, shards } => {
            let serving = shards.iter().filter(|s| !s.slots.is_empty()).count();
            let nodes: usize = shards.iter().map(|s| s.nodes.len()).sum();
            let failed = shards
                .iter()
                .flat_map(|s| &s.nodes)
                .filter(|n| n.health != "online")
                .count();
            let mut line = format!("cluster of {serving} shards, {nodes} nodes (as {seed} sees it)");
            if failed > 0 {
                line.push_str(&format!(", {failed} not online"));
            }
            line
        }
        other => other.describe(),
    }
}

/// A `ROLE` reply.
#[derive(Debug, PartialEq, Eq)]
enum RoleReply {
    Primary { replicas: Vec<Addr> },
    Replica { of: Addr },
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Reads `ROLE`: `["master", offset, [[ip, port, offset], ...]]` or
/// `["slave", ip, port, state, offset]`.
fn parse_role(v: &Value) -> Option<RoleReply> {
    let Value::Array(items) = v else { return None };
    match text(items.first()?)?.as_str() {
        "master" => {
            let mut replicas = Vec::new();
            if let Some(Value::Array(list)) = items.get(2) {
                for r in list {
                    if let Value::Array(f) = r
                        && let (Some(ip), Some(port)) = (
                            f.first().and_then(text),
                            f.get(1).and_then(text).and_then(|p| p.parse().ok()),
                        )
                    {
                        replicas.push(Addr::new(ip, port));
                    }
                }
            }
            Some(RoleReply::Primary { replicas })
        }
        "slave" | "replica" => {
            let ip = text(items.get(1)?)?;
            let port = text(items.get(2)?)?.parse().ok()?;
            Some(RoleReply::Replica {
                of: Addr::new(ip, port),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn role_replies_are_read() {
        let primary = Value::Array(vec![
            bulk("master"),
            Value::Int(100),
            Value::Array(vec![Value::Array(vec![
                bulk("127.0.0.1"),
                bulk("7004"),
                bulk("100"),
            ])]),
        ]);
        assert_eq!(
            parse_role(&primary),
            Some(RoleReply::Primary {
                replicas: vec![Addr::new("127.0.0.1", 7004)]
            })
        );
        let replica = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            Value::Int(7000),
            bulk("connected"),
            Value::Int(100),
        ]);
        assert_eq!(
            parse_role(&replica),
            Some(RoleReply::Replica {
                of: Addr::new("127.0.0.1", 7000)
            })
        );
        assert_eq!(parse_role(&Value::Nil), None);
        assert_eq!(parse_role(&Value::Array(vec![bulk("sentinel")])), None);
    }

    #[test]
    fn rounds_are_spaced_by_their_cost() {
        assert_eq!(spacing(Duration::from_millis(1)), POLL_INTERVAL);
        assert_eq!(spacing(Duration::from_millis(80)), Duration::from_secs(8));
        assert_eq!(spacing(Duration::from_secs(10)), MAX_POLL_INTERVAL);
    }
}
