//! Where the node's Redis link goes: [`Finder`] asks the spec on every (re)connect and remembers
//! a cluster's nodes as extra seeds; [`watch_primary`] notices, on a sentinel set, that the
//! primary in use was failed over. Used by the classic and the sharded halves of `redis`.

use std::time::Duration;

use super::publisher::Publisher;
use super::resp::Resp;
use futures_util::StreamExt;

use super::COMMAND_TIMEOUT;
use crate::redis_conn::{Addr, ConnectError, Reached, RedisConnector, Topology};

/// How often a node on a sentinel set asks its server for its ROLE: the backstop for a missed
/// `+switch-master` (one tiny command per second costs Redis nothing; a demoted primary is
/// noticed within about a second).
const ROLE_CHECK: Duration = Duration::from_secs(1);

/// How long to wait before watching a sentinel again after its connection failed.
const SENTINEL_WATCH_RETRY: Duration = Duration::from_secs(1);

/// Finds the server behind the spec on every (re)connect, remembering a cluster's nodes.
#[derive(Clone)]
pub(super) struct Finder {
    pub(super) connector: RedisConnector,
    pub(super) client_name: String,
    /// Every node of the cluster as last described (`CLUSTER SHARDS`): extra seeds for when the
    /// spec's own seeds are gone (the node we used died and its replica took over).
    pub(super) known: Vec<Addr>,
}

impl Finder {
    /// Asks the spec's seeds (or sentinels); when none answers and a cluster was seen before,
    /// asks the cluster's other known nodes.
    pub(super) async fn reach(&mut self) -> Result<Reached, ConnectError> {
        let error = match self.connector.reach().await {
            Ok(reached) => {
                self.remember(&reached);
                return Ok(reached);
            }
            Err(e) => e,
        };
        if self.known.is_empty() {
            return Err(error);
        }
        let mut spec = self.connector.spec().clone();
        spec.topology = Topology::Servers(self.known.clone());
        let fallback = RedisConnector::new(spec)?.with_name(&self.client_name);
        match fallback.reach().await {
            Ok(reached) => {
                tracing::info!(server = %reached.entry(), "the given seeds are gone; reached the cluster through a node it named before");
                self.remember(&reached);
                Ok(reached)
            }
            Err(_) => Err(error),
        }
    }

    fn remember(&mut self, reached: &Reached) {
        if let Reached::Cluster { shards, .. } = reached {
            let mut known: Vec<Addr> = Vec::new();
            // Primaries first: they are the likeliest to be up after a failover.
            for primary_pass in [true, false] {
                for node in shards.iter().flat_map(|s| s.nodes.iter()) {
                    let is_primary = node.role == crate::redis_conn::Role::Primary;
                    if is_primary == primary_pass && node.health != "failed" && !known.contains(&node.addr) {
                        known.push(node.addr.clone());
                    }
                }
            }
            self.known = known;
        }
    }
}

/// On a sentinel set, returns (with the reason) once the server we use is no longer the primary:
/// the sentinel that named it announces `+switch-master`, or the server's own ROLE says it is a
/// replica. Checked with real processes (tests/redis_sentinel_hub.rs): after a failover the old
/// primary keeps saying `master` for several seconds until the sentinels reconfigure it, and
/// meanwhile a node left on it would publish to nobody else, so the announcement is what moves
/// the node; the ROLE check is the backstop for a missed announcement. Never returns for other
/// topologies (a dead server ends the pub/sub stream; any cluster node relays classic pub/sub).
pub(super) async fn watch_primary(
    connector: RedisConnector,
    reached: Reached,
    publisher: Publisher,
) -> String {
    let Reached::Sentinel { primary, master, via } = reached else {
        return std::future::pending().await;
    };
    let announced = async {
        loop {
            match connector.sentinel_pubsub(&via).await {
                Ok(mut pubsub) => {
                    if pubsub.subscribe("+switch-master").await.is_ok() {
                        let mut messages = pubsub.into_on_message();
                        while let Some(message) = messages.next().await {
                            let text = String::from_utf8_lossy(message.get_payload_bytes()).to_string();
                            if let Some(moved) = switched_away(&text, &master, &primary) {
                                return format!("sentinel {via}: +switch-master {master} to {moved}");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(sentinel = %via, error = %e, "cannot watch the sentinel; trying again")
                }
            }
            tokio::time::sleep(SENTINEL_WATCH_RETRY).await;
        }
    };
    let demoted = async {
        let mut tick = tokio::time::interval(ROLE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let role = publisher.query(&[b"ROLE"]);
            // Errors and timeouts are the link's business (the stream or a publish notices).
            if let Ok(Ok(Resp::Array(Some(items)))) = tokio::time::timeout(COMMAND_TIMEOUT, role).await
                && let Some(role) = items.first().and_then(Resp::bytes)
                && role != b"master"
            {
                return format!(
                    "{primary} is now a {} (a failover happened)",
                    String::from_utf8_lossy(role)
                );
            }
        }
    };
    tokio::select! {
        reason = announced => reason,
        reason = demoted => reason,
    }
}

/// Reads a `+switch-master` payload (`<master> <old ip> <old port> <new ip> <new port>`): the new
/// address when it is about `master` and moves it away from `current`.
fn switched_away(payload: &str, master: &str, current: &Addr) -> Option<Addr> {
    let parts: Vec<&str> = payload.split_whitespace().collect();
    let [name, _, _, host, port] = parts.as_slice() else {
        return None;
    };
    let new = Addr::new(*host, port.parse().ok()?);
    (*name == master && &new != current).then_some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_master_announcement_moves_the_node_only_for_its_master_and_a_new_address() {
        let current = Addr::new("127.0.0.1", 6379);
        assert_eq!(
            switched_away("mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster", &current),
            Some(Addr::new("127.0.0.1", 6380))
        );
        assert_eq!(
            switched_away("other 127.0.0.1 6379 127.0.0.1 6380", "mymaster", &current),
            None
        );
        assert_eq!(
            switched_away("mymaster 127.0.0.1 6380 127.0.0.1 6379", "mymaster", &current),
            None
        );
        assert_eq!(switched_away("garbage", "mymaster", &current), None);
    }
}
