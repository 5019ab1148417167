//! The Redis round of `check`: the dashboard's census and Redis-view code run once, the
//! foreign-prefix channels, and the SignalR 2 event keys' counters and subscribers.

use std::collections::{BTreeMap, BTreeSet};

use crate::backplane::naming::{self, ChannelKind};
use crate::monitor::model::health::{self, ClientListInput, Finding, HealthInputs, HubObservation};
use crate::monitor::{HubCensus, census, redis_view};
use crate::redis_conn::{Addr, RedisConnector, RedisSpec, describe};

use super::*;

pub(super) struct RedisRound {
    pub(super) channels: Vec<String>,
    pub(super) hubs: Vec<HubObservation>,
    pub(super) census: Vec<HubCensus>,
    pub(super) client_list: Result<ClientListInput, String>,
}

/// The Redis side of the inputs, through the dashboard's own code so the two cannot count apart:
/// one census round ([`census::gather`]: the walk of `{prefix}*`, the census per hub, `NUMSUB`
/// of `:all` and `:internal:groups`), the hubs built by [`health::hubs_from_redis`], one Redis
/// view round ([`redis_view::one_round`]: `CLIENT LIST TYPE pubsub`, the buffer limit) read by
/// [`health::client_list_from_snapshot`]. Beyond the dashboard, `check` also lists the
/// backplane-shaped channels of every prefix (`*:all`, `*:internal:*`) for the foreign-channel
/// rule (the dashboard sees those through its tap).
pub(super) async fn query_redis(
    connector: &RedisConnector,
    spec: &RedisSpec,
    primaries: &[Addr],
    prefix: &str,
    expected: &BTreeSet<String>,
    traffic: &BTreeMap<String, u64>,
) -> Result<RedisRound, String> {
    let expected: Vec<String> = expected.iter().cloned().collect();
    let gathered = census::gather(connector, prefix, &expected).await?;
    let mut hubs = health::hubs_from_redis(Some(&gathered.census), Some(&gathered.round.hubs));
    for hub in &expected {
        hubs.entry(hub.clone()).or_insert_with(|| HubObservation {
            hub: hub.clone(),
            ..HubObservation::default()
        });
    }
    for (name, hub) in hubs.iter_mut() {
        hub.traffic = traffic.get(name).copied();
    }
    // The walk's channels the rules read (not one per connection or user: there may be 300,000).
    let mut channels: BTreeSet<String> = gathered
        .channels
        .into_iter()
        .filter(|c| {
            !matches!(
                naming::classify(prefix, c),
                Some((_, ChannelKind::Connection(_) | ChannelKind::User(_)))
            )
        })
        .collect();
    for addr in primaries {
        let mut c = connector.multiplexed(addr).await.map_err(|e| e.to_string())?;
        for pattern in ["*:all", "*:internal:*"] {
            let found: Vec<String> = redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .arg(pattern)
                .query_async(&mut c)
                .await
                .map_err(|e| format!("PUBSUB CHANNELS: {}", describe(&e)))?;
            channels.extend(found.into_iter().take(MAX_CHANNELS));
        }
    }
    let view = redis_view::one_round(connector.clone(), spec.clone()).await;
    Ok(RedisRound {
        channels: channels.into_iter().collect(),
        hubs: hubs.into_values().collect(),
        census: gathered.census,
        client_list: health::client_list_from_snapshot(&view),
    })
}

/// `GET key` and `PUBSUB NUMSUB key` for every SignalR 2 event key, on the primary (SignalR 2
/// supports no cluster: on one, the first primary is asked and the counter may live elsewhere).
pub(super) async fn sr2_counters(
    connector: &RedisConnector,
    reached: &crate::redis_conn::Reached,
    keys: &[String],
) -> Result<Vec<(String, Option<u64>, u64)>, String> {
    let primaries = reached.primaries();
    let Some(addr) = primaries.first() else {
        return Err("no primary to ask".to_string());
    };
    let mut c = connector.multiplexed(addr).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for key in keys {
        let value: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut c)
            .await
            .map_err(|e| format!("GET {key}: {}", describe(&e)))?;
        let counter = match value {
            None => None,
            Some(text) => Some(
                text.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("GET {key}: not a SignalR 2 counter ({} bytes)", text.len()))?,
            ),
        };
        let reply: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(key)
            .query_async(&mut c)
            .await
            .map_err(|e| format!("PUBSUB NUMSUB {key}: {}", describe(&e)))?;
        out.push((key.clone(), counter, reply.first().map_or(0, |r| r.1)));
    }
    Ok(out)
}

/// The findings for one SignalR 2 event key: the rule's `sr2-total` with the subscriber count as
/// its evidence, or why there is no counter.
pub(super) fn sr2_findings(key: &str, counter: Option<u64>, subscribers: u64, now_ms: u64) -> Vec<Finding> {
    let servers = format!("PUBSUB NUMSUB {key} = {subscribers}: SignalR 2 servers (app domains) subscribed");
    let Some(counter) = counter else {
        // Asked for by name, so a missing counter is worth a look either way: servers without a
        // counter lost it; no servers and no counter is most often a mistyped key or database,
        // which a canary must not pass as healthy.
        return vec![
            Finding::new(
                "sr2-total",
                health::Severity::Warning,
                format!("GET {key}: no such key: no SignalR 2 message was published under this event key in this database, or the counter was lost"),
            )
            .evidence(servers)
            .action("check the event key and the database number; a counter lost while servers run makes them skip ids (SignalR#3091)"),
        ];
    };
    let inputs = HealthInputs {
        now_ms,
        sr2: Some(health::Sr2Observation {
            event_key: key.to_string(),
            counter: Some(counter),
            ..health::Sr2Observation::default()
        }),
        ..HealthInputs::default()
    };
    health::evaluate(&inputs)
        .into_iter()
        .map(|mut f| {
            // `check` does not tap the channel: the subscribers say more than "0 seen".
            f.evidence = vec![servers.clone()];
            f
        })
        .collect()
}
