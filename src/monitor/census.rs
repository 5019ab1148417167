//! The census: how many connections, users, groups and servers each hub has, as Redis itself
//! reveals them (SIGNALR-WIRE.md D.1), at a cost Redis does not feel.
//!
//! `PUBSUB CHANNELS` walks the server's whole channel table in one blocking command: with 300,000
//! subscribed channels one walk takes Redis ~100 ms or more. So:
//! - one walk per round (the widest pattern under the prefix, `{prefix}*`, classified here)
//!   instead of one per kind;
//! - each walk is timed with Redis's own clock (the `INFO commandstats` usec delta of
//!   `pubsub|channels`; the wall time when INFO is not allowed) and the rounds are spaced so the
//!   walks take at most [`config::DEFAULT_CENSUS_SHARE`] of Redis's time ([`Spacing`]);
//! - between walks, cheap O(1) figures: `INFO stats` (`pubsub_channels`) and `PUBSUB NUMSUB` of
//!   the servers' ack channels. When they say nothing changed, the next walk waits up to the
//!   ceiling;
//! - when every server seen has a fresh heartbeat (Switchboard nodes announce their own
//!   connection counts every 2 s), an expensive walk also waits up to the ceiling, and the status
//!   says so;
//! - on a Redis Cluster every node is asked, primaries and replicas (a client may SUBSCRIBE on a
//!   replica, and a node's PUBSUB answers only for its own clients), and the channel names are
//!   merged before counting: a user or group channel held on two nodes is one user or group.
//!
//! - every round also counts, for the health rules, the subscribers of every hub's `:all` and
//!   `:internal:groups` (`PUBSUB NUMSUB`, O(1) per channel) and reads the counter of every SignalR 2
//!   event key the tap saw (`GET`), into one [`HealthRound`]: so at most one round of these every
//!   [`config::DEFAULT_CENSUS_INTERVAL`] (2 s), whatever the walks cost.
//!
//! Each round reports a [`CensusStatus`] (age, cost, share, why the next walk waits) beside the
//! [`MonitorEvent::Census`] of each walk. Run by `tap`; uses `redis_conn` and `backplane::naming`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use super::census_status::{CensusStatus, Spacing, WaitReason};
use super::sink::EventSink;
use super::{Announcement, HealthRound, HubCensus, HubSubscribers, MonitorEvent, now_ms};
use crate::backplane::naming::{self, ChannelKind, Channels};
use crate::config;
use crate::redis_conn::{Addr, Reached, RedisConnector, describe};

/// How long one census command may take before the round counts as failed (the connection's
/// own response timeout, 3 s, usually ends it first).
const CENSUS_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the census asks again which nodes a cluster has (a failover or a resharding moves
/// them); sooner after any error.
const TOPOLOGY_REFRESH: Duration = Duration::from_secs(30);

/// A heartbeat younger than this counts as fresh: three of the nodes' 2 s announcements.
const HEARTBEAT_FRESH: Duration = Duration::from_secs(6);

/// Heartbeats queued from the tap's reader to the census (one per node every 2 s); beyond it they
/// are dropped: the next one brings the same news.
pub(crate) const HEARTBEAT_QUEUE: usize = 1024;

/// SignalR 2 event keys queued from the tap's reader to the census (the tap sends each key once);
/// beyond it a key is dropped: a backplane has one, a Redis rarely more than a few.
pub(crate) const SR2_KEY_QUEUE: usize = 16;

/// Most hubs whose `:all` and `:internal:groups` subscribers a health round counts, and most
/// SignalR 2 event keys whose counter it reads: each costs Redis O(1), and a backplane with more
/// hubs than this is not one a dashboard watches.
pub const MAX_HEALTH_HUBS: usize = 64;
pub const MAX_SR2_KEYS: usize = 8;

/// Groups channel names per hub (`classify`), counting connections, users, groups and servers.
pub fn census_of<'a>(prefix: &str, channels: impl IntoIterator<Item = &'a str>) -> Vec<HubCensus> {
    let mut hubs: BTreeMap<String, HubCensus> = BTreeMap::new();
    for channel in channels {
        let Some((hub, kind)) = naming::classify(prefix, channel) else {
            continue;
        };
        let entry = hubs.entry(hub.clone()).or_insert_with(|| HubCensus {
            hub,
            ..HubCensus::default()
        });
        match kind {
            ChannelKind::Connection(_) => entry.connections += 1,
            ChannelKind::User(_) => entry.users += 1,
            ChannelKind::Group(_) => entry.groups += 1,
            ChannelKind::Ack(server) => entry.servers.push(server),
            ChannelKind::Return(server) => entry.return_servers.push(server),
            _ => {}
        }
    }
    let mut out: Vec<HubCensus> = hubs.into_values().collect();
    for hub in &mut out {
        hub.servers.sort();
        hub.servers.dedup();
        hub.return_servers.sort();
        hub.return_servers.dedup();
    }
    out
}

/// The hubs a health round counts the subscribers of (the walk's, then `extra`: hubs the
/// heartbeats or the caller name, at most [`MAX_HEALTH_HUBS`]), and the walk's (hub, server)
/// pairs of those hubs whose ack channels it re-counts. One choice for the dashboard's rounds
/// and `check`'s.
pub fn health_hubs<'a>(
    walk_hubs: &[String],
    walk_servers: &[(String, String)],
    extra: impl IntoIterator<Item = &'a String>,
) -> (Vec<String>, Vec<(String, String)>) {
    let mut hubs: Vec<String> = walk_hubs.to_vec();
    for hub in extra {
        if !hubs.contains(hub) {
            hubs.push(hub.clone());
        }
    }
    hubs.truncate(MAX_HEALTH_HUBS);
    let servers = walk_servers
        .iter()
        .filter(|(h, _)| hubs.contains(h))
        .cloned()
        .collect();
    (hubs, servers)
}

/// What one census round at once finds (see [`gather`]).
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    /// Every channel name under the prefix, merged over the servers, sorted.
    pub channels: Vec<String>,
    /// The walk's census per hub (connections, users, groups, ack and return servers).
    pub census: Vec<HubCensus>,
    /// The health round's `NUMSUB` figures of the same hubs (and of `extra_hubs`).
    pub round: HealthRound,
}

/// One census round at once, with the same code the dashboard's census runs over several ticks
/// (`run_redis`): the servers a census asks (replicas too), one walk of `{prefix}*`, the census
/// per hub ([`census_of`]), and the health round's `PUBSUB NUMSUB` ([`health_hubs`],
/// `hub_subscribers`). `switchboard check` calls it, so that it and the dashboard count alike.
pub async fn gather(
    connector: &RedisConnector,
    prefix: &str,
    extra_hubs: &[String],
) -> Result<Gathered, String> {
    let (mut links, _) = connect(connector, Vec::new()).await?;
    let (names, _) = walk(&mut links, prefix).await?;
    let census = census_of(prefix, names.iter().map(String::as_str));
    let walk_hubs: Vec<String> = census.iter().map(|h| h.hub.clone()).collect();
    let walk_servers: Vec<(String, String)> = census
        .iter()
        .flat_map(|h| h.servers.iter().map(|s| (h.hub.clone(), s.clone())))
        .collect();
    let (hubs, servers) = health_hubs(&walk_hubs, &walk_servers, extra_hubs);
    let subscribers = hub_subscribers(&mut links, prefix, &hubs, &servers).await?;
    let mut channels: Vec<String> = names.into_iter().collect();
    channels.sort();
    Ok(Gathered {
        channels,
        census,
        round: HealthRound {
            at_ms: now_ms(),
            hubs: subscribers,
            sr2_counters: Vec::new(),
            problem: None,
        },
    })
}

/// The cumulative usec Redis spent in `PUBSUB CHANNELS`, from `INFO commandstats` (Redis 7
/// counts `pubsub|channels`; older servers only `pubsub` as a whole).
pub fn pubsub_channels_usec(info: &str) -> Option<u64> {
    let usec = |name: &str| {
        info.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(name)?.strip_prefix(':')?;
            rest.split(',')
                .find_map(|kv| kv.strip_prefix("usec="))
                .and_then(|v| v.parse::<u64>().ok())
        })
    };
    if info.contains("cmdstat_") {
        return Some(
            usec("cmdstat_pubsub|channels")
                .or_else(|| usec("cmdstat_pubsub"))
                .unwrap_or(0),
        );
    }
    None
}

/// `pubsub_channels` from `INFO stats` (Redis has no `pubsub` section).
pub fn pubsub_channels(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("pubsub_channels:"))
        .and_then(|v| v.trim().parse().ok())
}

/// One server the census asks.
struct Link {
    addr: Addr,
    label: String,
    conn: MultiplexedConnection,
    /// Redis's cumulative `PUBSUB CHANNELS` usec when last read; `None` when INFO is refused.
    usec: Option<u64>,
}

/// What the latest walk found, for the cheap checks and the spacing.
struct Walk {
    started: Instant,
    cost: Duration,
    /// `pubsub_channels` summed right after the walk.
    channels_after: Option<u64>,
    /// (hub, server) of every ack channel seen.
    servers: Vec<(String, String)>,
    /// Every hub with a channel under the prefix.
    hubs: Vec<String>,
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(CENSUS_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {}", describe(&e))),
        Err(_) => Err(format!("{what} timed out after {CENSUS_TIMEOUT:?}")),
    }
}

async fn info(conn: &mut MultiplexedConnection, section: &str) -> Result<String, String> {
    timed(
        "INFO",
        redis::cmd("INFO").arg(section).query_async::<String>(conn),
    )
    .await
}

/// The servers a census asks: the one server, the sentinel's primary, or every node of every
/// shard of a cluster (replicas too: a client may SUBSCRIBE there).
fn servers_of(reached: &Reached) -> Vec<(Addr, String)> {
    match reached {
        Reached::Single(a) => vec![(a.clone(), a.to_string())],
        Reached::Sentinel { primary, .. } => vec![(primary.clone(), format!("{primary} primary"))],
        Reached::Cluster { shards, .. } => shards
            .iter()
            .flat_map(|s| s.nodes.iter())
            .filter(|n| n.health != "failed" && n.addr.port != 0)
            .map(|n| {
                let role = match n.role {
                    crate::redis_conn::Role::Primary => "primary",
                    crate::redis_conn::Role::Replica => "replica",
                };
                (n.addr.clone(), format!("{} {role}", n.addr))
            })
            .collect(),
    }
}

/// The links to every server the spec reaches now, keeping the open ones that are still wanted.
async fn connect(connector: &RedisConnector, mut old: Vec<Link>) -> Result<(Vec<Link>, bool), String> {
    let reached = connector.reach().await.map_err(|e| e.to_string())?;
    let cluster = matches!(reached, Reached::Cluster { .. });
    let mut links = Vec::new();
    for (addr, label) in servers_of(&reached) {
        if let Some(i) = old.iter().position(|l| l.addr == addr) {
            let mut link = old.swap_remove(i);
            link.label = label;
            links.push(link);
            continue;
        }
        let mut conn = connector.multiplexed(&addr).await.map_err(|e| e.to_string())?;
        // A user without +info still gets a census, timed by the wall clock.
        let usec = match info(&mut conn, "commandstats").await {
            Ok(text) => pubsub_channels_usec(&text),
            Err(_) => None,
        };
        links.push(Link {
            addr,
            label,
            conn,
            usec,
        });
    }
    Ok((links, cluster))
}

/// `pubsub_channels` summed over the links: O(1) on each server.
async fn channel_count(links: &mut [Link]) -> Result<Option<u64>, String> {
    let mut total = Some(0u64);
    for link in links.iter_mut() {
        let text = info(&mut link.conn, "stats")
            .await
            .map_err(|e| format!("{}: {e}", link.addr))?;
        total = match (total, pubsub_channels(&text)) {
            (Some(t), Some(n)) => Some(t + n),
            _ => None,
        };
    }
    Ok(total)
}

/// Servers among `servers` whose ack channel no server holds any more (`PUBSUB NUMSUB`, O(1)
/// per channel, summed over the links).
async fn servers_gone(
    links: &mut [Link],
    prefix: &str,
    servers: &[(String, String)],
) -> Result<usize, String> {
    if servers.is_empty() {
        return Ok(0);
    }
    let channels: Vec<String> = servers
        .iter()
        .map(|(hub, server)| Channels::new(prefix, hub.as_str()).ack(server))
        .collect();
    let mut held: HashMap<String, i64> = HashMap::new();
    for link in links.iter_mut() {
        let mut command = redis::cmd("PUBSUB");
        command.arg("NUMSUB").arg(&channels);
        let reply: Vec<(String, i64)> = timed("PUBSUB NUMSUB", command.query_async(&mut link.conn))
            .await
            .map_err(|e| format!("{}: {e}", link.addr))?;
        for (channel, n) in reply {
            *held.entry(channel).or_default() += n;
        }
    }
    Ok(channels
        .iter()
        .filter(|c| held.get(*c).copied().unwrap_or(0) == 0)
        .count())
}

/// `PUBSUB NUMSUB` of every hub's `:all` and `:internal:groups` (one command per server, O(1) per
/// channel on Redis), summed over the links.
async fn hub_subscribers(
    links: &mut [Link],
    prefix: &str,
    hubs: &[String],
    servers: &[(String, String)],
) -> Result<Vec<HubSubscribers>, String> {
    if hubs.is_empty() {
        return Ok(Vec::new());
    }
    let mut channels = Vec::with_capacity(hubs.len() * 2 + servers.len());
    for hub in hubs {
        let names = Channels::new(prefix, hub.as_str());
        channels.push(names.all());
        channels.push(names.internal_groups());
    }
    let acks: Vec<String> = servers
        .iter()
        .map(|(hub, server)| Channels::new(prefix, hub.as_str()).ack(server))
        .collect();
    channels.extend(acks.iter().cloned());
    let mut held: HashMap<String, u64> = HashMap::new();
    for link in links.iter_mut() {
        let mut command = redis::cmd("PUBSUB");
        command.arg("NUMSUB").arg(&channels);
        let reply: Vec<(String, u64)> = timed("PUBSUB NUMSUB", command.query_async(&mut link.conn))
            .await
            .map_err(|e| format!("{}: {e}", link.addr))?;
        for (channel, n) in reply {
            *held.entry(channel).or_default() += n;
        }
    }
    let count = |channel: &String| held.get(channel).copied().unwrap_or(0);
    Ok(hubs
        .iter()
        .zip(channels.chunks(2))
        .map(|(hub, pair)| HubSubscribers {
            hub: hub.clone(),
            all: count(&pair[0]),
            groups: count(&pair[1]),
            ack_servers: servers
                .iter()
                .zip(&acks)
                .filter(|((h, _), ack)| h == hub && count(ack) > 0)
                .map(|((_, server), _)| server.clone())
                .collect(),
        })
        .collect())
}

/// `GET eventKey` of every SignalR 2 key seen: the id of the newest message (SIGNALR-WIRE.md C.2).
/// Asked of the first server (a single server or the sentinel's primary: SignalR 2 has no
/// cluster support); on a cluster the key lives on one shard, which the census does not route to.
async fn sr2_counters(
    links: &mut [Link],
    keys: &[String],
    cluster: bool,
) -> Vec<(String, Result<Option<u64>, String>)> {
    let mut out = Vec::new();
    for key in keys {
        let value = match links.first_mut() {
            _ if cluster => Err("not read on a Redis Cluster (SignalR 2 does not support one)".to_string()),
            None => Err("no Redis server reached".to_string()),
            Some(link) => timed(
                "GET",
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<String>>(&mut link.conn),
            )
            .await
            .and_then(|v| match v {
                None => Ok(None),
                Some(text) => text
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| format!("GET {key}: not a counter ({} bytes)", text.len())),
            }),
        };
        out.push((key.clone(), value));
    }
    out
}

/// One walk over every link: the merged channel names, and Redis's time for it (`None` when a
/// server would not say).
async fn walk(links: &mut [Link], prefix: &str) -> Result<(HashSet<String>, Option<Duration>), String> {
    let pattern = Channels::tap_pattern(prefix);
    let mut names: HashSet<String> = HashSet::new();
    let mut server_usec = Some(0u64);
    for link in links.iter_mut() {
        let mut command = redis::cmd("PUBSUB");
        command.arg("CHANNELS").arg(&pattern);
        let found: Vec<String> = timed("PUBSUB CHANNELS", command.query_async(&mut link.conn))
            .await
            .map_err(|e| format!("{}: {e}", link.addr))?;
        names.extend(found);
        let after = match info(&mut link.conn, "commandstats").await {
            Ok(text) => pubsub_channels_usec(&text),
            Err(_) => None,
        };
        server_usec = match (server_usec, link.usec, after) {
            (Some(total), Some(before), Some(after)) => Some(total + after.saturating_sub(before)),
            _ => None,
        };
        link.usec = after;
    }
    Ok((names, server_usec.map(Duration::from_micros)))
}

/// Heartbeats seen lately: server name → (connections, when), and their hubs.
#[derive(Default)]
struct Heartbeats {
    seen: HashMap<String, (u64, Instant)>,
    hubs: HashMap<String, String>,
}

impl Heartbeats {
    fn note(&mut self, a: &Announcement, at: Instant) {
        if !a.server_name.is_empty() {
            self.seen.insert(a.server_name.clone(), (a.connections, at));
            if !a.hub.is_empty() {
                self.hubs.insert(a.server_name.clone(), a.hub.clone());
            }
        }
    }

    /// Hubs of the servers with a fresh heartbeat.
    fn hubs(&self) -> impl Iterator<Item = &String> {
        self.seen.keys().filter_map(|s| self.hubs.get(s))
    }

    fn prune(&mut self, now: Instant) {
        self.seen
            .retain(|_, (_, at)| now.duration_since(*at) < HEARTBEAT_FRESH);
        let seen = &self.seen;
        self.hubs.retain(|server, _| seen.contains_key(server));
    }

    /// When every server of the last walk has a fresh heartbeat: their connections together.
    fn cover(&self, servers: &[(String, String)]) -> Option<u64> {
        if servers.is_empty() {
            return None;
        }
        let mut total = 0;
        for (_, server) in servers {
            total += self.seen.get(server)?.0;
        }
        Some(total)
    }

    /// Whether a server heartbeats that the last walk did not see.
    fn newcomer(&self, servers: &[(String, String)]) -> bool {
        self.seen
            .keys()
            .any(|s| !servers.iter().any(|(_, known)| known == s))
    }
}

/// Runs the Redis census until `cancel`: a round every floor interval (cheap checks), a walk when
/// the spacing allows it. While Redis is down the rounds report the problem; the tap reports the
/// outage itself.
pub(crate) async fn run_redis(
    connector: RedisConnector,
    prefix: String,
    sink: EventSink,
    mut heartbeats_rx: mpsc::Receiver<Announcement>,
    mut sr2_rx: mpsc::Receiver<String>,
    cancel: CancellationToken,
) {
    let spacing = Spacing::default();
    let mut tick = tokio::time::interval(spacing.floor);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut links: Vec<Link> = Vec::new();
    let mut topology_at: Option<Instant> = None;
    let mut last: Option<Walk> = None;
    let mut heartbeats = Heartbeats::default();
    let mut status = CensusStatus {
        budget_share: spacing.share,
        ..CensusStatus::default()
    };
    let mut spent = Duration::ZERO;
    let mut sr2_keys: Vec<String> = Vec::new();
    let mut cluster = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        while let Ok(a) = heartbeats_rx.try_recv() {
            heartbeats.note(&a, now);
        }
        heartbeats.prune(now);
        while let Ok(key) = sr2_rx.try_recv() {
            if sr2_keys.len() < MAX_SR2_KEYS && !sr2_keys.contains(&key) {
                sr2_keys.push(key);
            }
        }
        status.checked_at_ms = now_ms();
        let round = async {
            if links.is_empty() || topology_at.is_none_or(|t| t.elapsed() >= TOPOLOGY_REFRESH) {
                let (fresh, is_cluster) = connect(&connector, std::mem::take(&mut links)).await?;
                links = fresh;
                cluster = is_cluster;
                topology_at = Some(Instant::now());
            }
            let channels_now = channel_count(&mut links).await?;
            let servers = last.as_ref().map(|w| w.servers.clone()).unwrap_or_default();
            let gone = servers_gone(&mut links, &prefix, &servers).await?;
            Ok::<_, String>((channels_now, gone))
        };
        let (channels_now, gone) = match round.await {
            Ok(r) => r,
            Err(problem) => {
                tracing::debug!(%problem, "census round failed");
                links.clear();
                topology_at = None;
                sink.push(MonitorEvent::HealthRound(HealthRound {
                    at_ms: now_ms(),
                    problem: Some(problem.clone()),
                    ..HealthRound::default()
                }));
                status.problem = Some(problem);
                sink.push(MonitorEvent::CensusStatus(status.clone()));
                continue;
            }
        };
        status.channels_now = channels_now;
        status.nodes = links.iter().map(|l| l.label.clone()).collect();
        let servers = last.as_ref().map(|w| w.servers.as_slice()).unwrap_or_default();
        let nodes_report = heartbeats.cover(servers);
        let due = match &last {
            None => None,
            Some(w) => {
                let changed = channels_now.is_none()
                    || channels_now != w.channels_after
                    || gone > 0
                    || heartbeats.newcomer(&w.servers);
                let (wait, reason) = spacing.wait(w.cost, changed, nodes_report.is_some());
                status.reason = reason;
                Some(w.started + wait)
            }
        };
        status.nodes_report = nodes_report;
        if due.is_none_or(|d| Instant::now() + Duration::from_millis(50) >= d) {
            let walk_started = Instant::now();
            match walk(&mut links, &prefix).await {
                Ok((names, server)) => {
                    let wall = walk_started.elapsed();
                    let cost = server.unwrap_or(wall);
                    spent += cost;
                    let hubs = census_of(&prefix, names.iter().map(String::as_str));
                    let servers: Vec<(String, String)> = hubs
                        .iter()
                        .flat_map(|h| h.servers.iter().map(|s| (h.hub.clone(), s.clone())))
                        .collect();
                    let hub_names: Vec<String> = hubs.iter().map(|h| h.hub.clone()).collect();
                    // The count after the walk is the baseline of the next cheap checks.
                    let channels_after = channel_count(&mut links).await.ok().flatten();
                    let at_ms = now_ms();
                    sink.push(MonitorEvent::Census { at_ms, hubs });
                    status.scanned_at_ms = at_ms;
                    status.scan_server = server;
                    status.scan_wall = wall;
                    status.scanned_channels = names.len() as u64;
                    status.scans += 1;
                    status.nodes_report = heartbeats.cover(&servers);
                    // Just walked: the next is due after the budget, unless the cheap checks of
                    // the coming rounds find nothing changed (then up to the ceiling).
                    let (wait, reason) = spacing.wait(cost, true, status.nodes_report.is_some());
                    status.reason = reason;
                    last = Some(Walk {
                        started: walk_started,
                        cost,
                        channels_after,
                        servers,
                        hubs: hub_names,
                    });
                    status.next_scan_at_ms =
                        at_ms.saturating_sub(wall.as_millis() as u64) + wait.as_millis() as u64;
                    status.problem = None;
                    tracing::debug!(
                        ?cost,
                        ?wall,
                        ?wait,
                        channels = status.scanned_channels,
                        "census walk"
                    );
                }
                Err(problem) => {
                    tracing::debug!(%problem, "census walk failed");
                    // A walk that failed (a timeout, most likely) counts as costly: back off.
                    let cost = walk_started.elapsed();
                    spent += cost;
                    if let Some(w) = last.as_mut() {
                        w.started = walk_started;
                        w.cost = w.cost.max(cost);
                    }
                    links.clear();
                    topology_at = None;
                    status.problem = Some(problem);
                }
            }
        } else if let Some(d) = due {
            status.next_scan_at_ms =
                status.checked_at_ms + d.saturating_duration_since(Instant::now()).as_millis() as u64;
            status.problem = None;
        }
        status.share = spent.as_secs_f64() / started.elapsed().as_secs_f64().max(1.0);
        sink.push(MonitorEvent::CensusStatus(status.clone()));
        if !links.is_empty() {
            let (hubs, servers) = match &last {
                Some(w) => health_hubs(&w.hubs, &w.servers, heartbeats.hubs()),
                None => health_hubs(&[], &[], heartbeats.hubs()),
            };
            let round = match hub_subscribers(&mut links, &prefix, &hubs, &servers).await {
                Ok(hubs) => HealthRound {
                    at_ms: now_ms(),
                    hubs,
                    sr2_counters: sr2_counters(&mut links, &sr2_keys, cluster).await,
                    problem: None,
                },
                Err(problem) => HealthRound {
                    at_ms: now_ms(),
                    problem: Some(problem),
                    ..HealthRound::default()
                },
            };
            sink.push(MonitorEvent::HealthRound(round));
        }
    }
}

/// The status of the in-memory bus's census (the demo): free, every floor interval.
pub(crate) fn memory_status(at_ms: u64, channels: u64, scans: u64) -> CensusStatus {
    CensusStatus {
        scanned_at_ms: at_ms,
        scan_server: Some(Duration::ZERO),
        scanned_channels: channels,
        channels_now: Some(channels),
        checked_at_ms: at_ms,
        next_scan_at_ms: at_ms + config::DEFAULT_CENSUS_INTERVAL.as_millis() as u64,
        reason: WaitReason::Floor,
        budget_share: config::DEFAULT_CENSUS_SHARE,
        scans,
        nodes: vec!["in-memory bus".to_string()],
        ..CensusStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spacing() -> Spacing {
        Spacing {
            share: 0.01,
            floor: Duration::from_secs(2),
            ceiling: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_cheap_walk_comes_at_the_floor_and_an_expensive_one_is_spaced_by_its_cost() {
        let s = spacing();
        // 1 ms of Redis time: 100 ms would do for 1 %, the floor is 2 s.
        assert_eq!(
            s.wait(Duration::from_millis(1), true, false),
            (Duration::from_secs(2), WaitReason::Floor)
        );
        // 150 ms at 1 %: 15 s between walk starts.
        assert_eq!(
            s.wait(Duration::from_millis(150), true, false),
            (Duration::from_secs(15), WaitReason::Budget)
        );
        // The budget wins over the ceiling: 600 ms → 60 s, beyond the 30 s ceiling.
        assert_eq!(
            s.wait(Duration::from_millis(600), true, false),
            (Duration::from_secs(60), WaitReason::Budget)
        );
    }

    #[test]
    fn nothing_changed_or_nodes_reporting_waits_up_to_the_ceiling() {
        let s = spacing();
        assert_eq!(
            s.wait(Duration::from_millis(1), false, false),
            (Duration::from_secs(30), WaitReason::Unchanged)
        );
        assert_eq!(
            s.wait(Duration::from_millis(150), true, true),
            (Duration::from_secs(30), WaitReason::NodesReport)
        );
        // A cheap walk is not skipped for heartbeats: users and groups come only from walks.
        assert_eq!(
            s.wait(Duration::from_millis(1), true, true),
            (Duration::from_secs(2), WaitReason::Floor)
        );
        // Still never more than the share.
        assert_eq!(
            s.wait(Duration::from_millis(900), false, true),
            (Duration::from_secs(90), WaitReason::Unchanged)
        );
    }

    #[test]
    fn any_walk_cost_keeps_under_the_share_over_time() {
        let s = spacing();
        for ms in [0u64, 1, 19, 20, 21, 150, 299, 300, 301, 2000] {
            let cost = Duration::from_millis(ms);
            for (changed, report) in [(true, false), (false, false), (true, true)] {
                let (wait, _) = s.wait(cost, changed, report);
                assert!(wait >= s.floor, "{ms} ms");
                assert!(
                    cost.as_secs_f64() <= wait.as_secs_f64() * s.share + 1e-9,
                    "{ms} ms"
                );
            }
        }
    }

    #[test]
    fn census_groups_per_hub() {
        let names = [
            "p:H:connection:a",
            "p:H:connection:b",
            "p:H:user:u",
            "p:H:group:g",
            "p:H:internal:ack:s2",
            "p:H:internal:ack:s1",
            "p:H:internal:return:s1",
            "p:K:connection:c",
            "q:H:connection:x",
        ];
        let hubs = census_of("p:", names);
        assert_eq!(hubs.len(), 2);
        assert_eq!(hubs[0].hub, "H");
        assert_eq!((hubs[0].connections, hubs[0].users, hubs[0].groups), (2, 1, 1));
        assert_eq!(hubs[0].servers, vec!["s1".to_string(), "s2".to_string()]);
        assert_eq!(hubs[0].return_servers, vec!["s1".to_string()]);
        assert_eq!(hubs[1].connections, 1);
    }

    #[test]
    fn commandstats_and_pubsub_figures_are_read() {
        let info = "# Commandstats\r\ncmdstat_ping:calls=3,usec=4,usec_per_call=1.33,rejected_calls=0,failed_calls=0\r\n\
                    cmdstat_pubsub|channels:calls=2,usec=123456,usec_per_call=61728.00,rejected_calls=0,failed_calls=0\r\n";
        assert_eq!(pubsub_channels_usec(info), Some(123_456));
        assert_eq!(
            pubsub_channels_usec("# Commandstats\r\ncmdstat_ping:calls=1,usec=1\r\n"),
            Some(0)
        );
        assert_eq!(pubsub_channels_usec("ERR"), None);
        let old = "cmdstat_pubsub:calls=2,usec=99,usec_per_call=49.5";
        assert_eq!(pubsub_channels_usec(old), Some(99));
        assert_eq!(
            pubsub_channels("# Pubsub\r\npubsub_channels:300000\r\npubsub_patterns:1\r\n"),
            Some(300_000)
        );
    }

    #[test]
    fn a_status_looks_stale_when_rounds_stop_fail_or_the_walk_is_overdue() {
        let fresh = CensusStatus {
            scanned_at_ms: 10_000,
            checked_at_ms: 20_000,
            next_scan_at_ms: 25_000,
            ..CensusStatus::default()
        };
        assert!(!fresh.is_stale(21_000));
        assert!(fresh.is_stale(27_000), "no round for 7 s");
        assert!(
            CensusStatus {
                problem: Some("refused".into()),
                ..fresh.clone()
            }
            .is_stale(21_000)
        );
        assert!(CensusStatus::default().is_stale(1));
        let overdue = CensusStatus {
            checked_at_ms: 40_000,
            ..fresh
        };
        assert!(overdue.is_stale(40_500), "the walk was due at 25 s");
    }

    #[test]
    fn the_summary_says_age_cost_share_and_staleness() {
        let status = CensusStatus {
            scanned_at_ms: 10_000,
            scan_server: Some(Duration::from_micros(95_400)),
            checked_at_ms: 20_000,
            next_scan_at_ms: 28_000,
            reason: WaitReason::Budget,
            share: 0.004,
            budget_share: 0.01,
            nodes: vec!["a".into(), "b".into(), "c".into()],
            ..CensusStatus::default()
        };
        let line = status.summary(21_000);
        assert!(
            line.contains("walked 11 s ago over 3 servers: 95.4 ms of Redis time"),
            "{line}"
        );
        assert!(
            line.contains("0.40 % of Redis's time so far (budget 1.0 %)"),
            "{line}"
        );
        assert!(line.contains("next walk in 7 s"), "{line}");
        assert!(!line.contains("STALE"), "{line}");
        assert!(status.summary(40_000).contains("STALE"));
        assert_eq!(CensusStatus::default().summary(5), "no census yet");
    }

    #[test]
    fn heartbeats_cover_only_when_every_server_seen_has_one() {
        let now = Instant::now();
        let mut h = Heartbeats::default();
        let a = |s: &str, n| Announcement {
            server_name: s.into(),
            connections: n,
            ..Announcement::default()
        };
        let servers = vec![
            ("H".to_string(), "s1".to_string()),
            ("H".to_string(), "s2".to_string()),
        ];
        h.note(&a("s1", 5), now);
        assert_eq!(h.cover(&servers), None);
        h.note(&a("s2", 7), now);
        assert_eq!(h.cover(&servers), Some(12));
        assert!(!h.newcomer(&servers));
        h.note(&a("s3", 1), now);
        assert!(h.newcomer(&servers));
        h.prune(now + HEARTBEAT_FRESH);
        assert_eq!(h.cover(&servers), None);
        assert_eq!(h.cover(&[]), None);
    }
}
