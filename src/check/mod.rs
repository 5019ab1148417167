//! `switchboard check`: a canary for cron, CI and Kubernetes probes. Through each node (given, or
//! discovered from the heartbeats on `{prefix}switchboard:nodes`) a SignalR client sends a test
//! message, which a client of every other node must receive within the timeout; then one round of
//! Redis queries and the nodes' stats (where they serve them) fill a [`HealthInputs`], and the
//! health rules judge. The Redis round is the dashboard's own code run once (`monitor::census::
//! gather`: the walk of `{prefix}*`, the census, `PUBSUB NUMSUB` of each hub's `:all` and
//! `:internal:groups`; `monitor::redis_view::one_round`: `CLIENT LIST TYPE pubsub` and the buffer
//! limit; `health::hubs_from_redis` and `health::client_list_from_snapshot` to read them), so
//! `check` and the dashboard cannot count apart (`tests/health_pipeline.rs` holds them to it).
//!
//! It remembers what it saw: the nodes its clients reached go into a small state file per Redis
//! and prefix ([`crate::known_nodes`]); the next run tries them again at their hub URLs, and one
//! that neither answers nor sends a heartbeat is a critical `node-gone` finding until it is
//! back or forgotten
//! (`--forget`), so the default form, `check --redis URL`, fails when a node dies instead of
//! going quiet. `--expect-nodes N` makes fewer than N nodes critical.
//!
//! Exit code (the crate's convention, `cli`): 0 healthy, or only warnings and info; 1 warnings
//! under `--fail-on warning`; 2 any critical finding; 3 bad usage (`cli` exits before a check
//! runs).
//!
//! Files: `node` (what a node to check is), `known` (the state file's use), `probe` (heartbeats,
//! stats, the canary's clients), `round` (the Redis round and the SignalR 2 counters); here the
//! options, the report and the run that ties them.
//!
//! Bounded: every step runs under one deadline (`--timeout`); a node or a Redis that does not
//! answer is a finding, never a crash. Headless (no `gui` feature needed).
//!
//! Uses `client` (hub clients, HTTP), `redis_conn`, `backplane::naming`, `status_doc`,
//! `known_nodes` and `monitor::model::health`; never `hub` internals: it sees nodes as an operator would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backplane::naming::{self};
use crate::client::NodeTls;
use crate::known_nodes::Seen;
use crate::monitor::HubCensus;
use crate::monitor::model::health::{
    self, Finding, HealthInputs, Heartbeat, NodeObservation, NodeReach, Verdict,
};
use crate::monitor::model::trust::{TrustRules, acceptable_announcement};
use crate::monitor_token::MonitorToken;
use crate::node_token::NodeCredentials;
use crate::redis_conn::{RedisConnector, RedisSpec};
use crate::status_doc::Announcement;

mod known;
mod node;
mod probe;
mod round;

pub use known::forget;
use known::{load_known, remember, same_url};
pub use node::CheckNode;
use probe::{StatsResult, canary, connect, listen_heartbeats, node_stats, remaining, snapshot};
use round::{query_redis, sr2_counters, sr2_findings};

/// The default deadline of the whole check.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to listen for heartbeats when no node is given: a little more than one heartbeat
/// interval, so every live node has announced itself once.
const DISCOVERY: Duration = Duration::from_millis(2_500);

/// The share of the deadline the canary may use; the rest is kept for Redis and the stats.
const CANARY_SHARE: f64 = 0.6;

/// Most nodes one check talks to (discovered ones beyond are ignored, and said so).
const MAX_NODES: usize = 32;

/// Most channels taken from one `PUBSUB CHANNELS` answer (the group pattern can be large).
const MAX_CHANNELS: usize = 100_000;

/// The exit code of a check with a critical finding (or a warning under `--fail-on warning`).
pub const EXIT_FINDINGS: u8 = 2;

/// Exit code of warnings under `--fail-on warning`.
pub const EXIT_WARNING: u8 = 1;

/// The user name the test messages carry.
const CHECK_USER: &str = "switchboard-check";
/// What `switchboard check` was asked.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub redis: RedisSpec,
    pub prefix: String,
    /// Empty: discover from heartbeats.
    pub nodes: Vec<CheckNode>,
    pub timeout: Duration,
    /// The hub type name expected (others are reported); `None` takes what the nodes announce.
    pub hub_name: Option<String>,
    pub send_method: String,
    pub receive_method: String,
    /// Sent to trusted nodes only (see [`CheckNode::trusted`]).
    pub token: Option<MonitorToken>,
    /// The bearer for the canary's hub clients, trusted nodes only.
    pub node_credentials: NodeCredentials,
    /// `--trust-nodes` globs: discovered nodes whose hub URL matches are trusted.
    pub trust_nodes: TrustRules,
    pub node_tls: Option<NodeTls>,
    /// ASP.NET SignalR 2 event keys whose counter (`GET`) and subscribers (`PUBSUB NUMSUB`) are
    /// reported (SIGNALR-WIRE.md C.1: the key names both the channel and the counter).
    pub event_keys: Vec<String>,
    /// The known-nodes state file (see [`crate::known_nodes`]); `None` with `--no-state`.
    pub state: Option<PathBuf>,
    /// Fewer nodes seen than this is critical (`--expect-nodes`).
    pub expect_nodes: Option<usize>,
    /// The least severity that makes the exit code 1 (`--fail-on`).
    pub fail_on: health::Severity,
}

impl CheckOptions {
    /// Options with the defaults of the command line for everything but the Redis and nodes
    /// (no state file: the command line picks the default one).
    pub fn new(redis: RedisSpec, prefix: &str, nodes: Vec<CheckNode>) -> CheckOptions {
        CheckOptions {
            redis,
            prefix: prefix.to_string(),
            nodes,
            timeout: DEFAULT_TIMEOUT,
            hub_name: None,
            send_method: "SendMessage".to_string(),
            receive_method: "ReceiveMessage".to_string(),
            token: None,
            node_credentials: NodeCredentials::default(),
            trust_nodes: TrustRules::default(),
            node_tls: None,
            event_keys: Vec::new(),
            state: None,
            expect_nodes: None,
            fail_on: health::Severity::Critical,
        }
    }
}

/// The exit code of a set of findings: 2 for a critical one; 1 for a warning when `fail_on` is
/// a warning (critical by default; info never fails); else 0.
pub fn exit_code(findings: &[Finding], fail_on: health::Severity) -> u8 {
    let fail_on = fail_on.max(health::Severity::Warning);
    let worst = findings.iter().map(|f| f.severity).max();
    match worst {
        Some(health::Severity::Critical) => EXIT_FINDINGS,
        Some(s) if s >= fail_on => EXIT_WARNING,
        _ => 0,
    }
}

/// The outcome, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub status: Verdict,
    pub exit_code: u8,
    pub redis: String,
    pub nodes: Vec<String>,
    pub elapsed_ms: u64,
    /// The known-nodes state file used (`None`: `--no-state`).
    pub state_file: Option<String>,
    /// Nodes the state file remembers after this run.
    pub known_nodes: Option<usize>,
    /// The Redis counts the rules judged (`None`: Redis was not queried).
    pub redis_figures: Option<RedisFigures>,
    pub findings: Vec<Finding>,
}

/// One hub's counts as Redis shows them: what the `servers` finding's evidence says, and the
/// census.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubFigures {
    pub hub: String,
    /// Servers with a subscribed ack channel.
    pub servers: usize,
    /// Servers with a subscribed return channel.
    pub return_channels: usize,
    pub numsub_all: Option<u64>,
    pub numsub_groups: Option<u64>,
    pub connections: u64,
    pub users: u64,
    pub groups: u64,
}

/// The Redis counts behind one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisFigures {
    pub hubs: Vec<HubFigures>,
    /// The names of the pub/sub clients (`CLIENT LIST TYPE pubsub`, sorted); `None`: not listed.
    pub pubsub_clients: Option<Vec<String>>,
}

/// The figures of a census and the inputs built with it: one function for `check`'s report and
/// for the dashboard's side (`inputs_from_model` with the model's census), so the two compare.
pub fn figures(census: &[HubCensus], inputs: &HealthInputs) -> RedisFigures {
    let hubs = inputs
        .hubs
        .iter()
        .map(|h| {
            let c = census.iter().find(|c| c.hub == h.hub);
            HubFigures {
                hub: h.hub.clone(),
                servers: h.ack_servers.len(),
                return_channels: h.return_servers.len(),
                numsub_all: h.numsub_all,
                numsub_groups: h.numsub_groups,
                connections: c.map_or(0, |c| c.connections),
                users: c.map_or(0, |c| c.users),
                groups: c.map_or(0, |c| c.groups),
            }
        })
        .collect();
    let pubsub_clients = match &inputs.client_list {
        Some(Ok(list)) => {
            let mut names: Vec<String> = list.clients.iter().map(|c| c.name.clone()).collect();
            names.sort();
            Some(names)
        }
        _ => None,
    };
    RedisFigures { hubs, pubsub_clients }
}

impl CheckReport {
    /// One line per finding, then a summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&f.line());
            out.push('\n');
        }
        let count = |s: health::Severity| self.findings.iter().filter(|f| f.severity == s).count();
        out.push_str(&format!(
            "check: {} ({} critical, {} warning, {} info) · redis {} · {} node(s) · {:.1} s\n",
            self.status.label(),
            count(health::Severity::Critical),
            count(health::Severity::Warning),
            count(health::Severity::Info),
            self.redis,
            self.nodes.len(),
            self.elapsed_ms as f64 / 1000.0
        ));
        out
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs the check to its end within `options.timeout` (plus connection set-up slack of at most a
/// second).
pub async fn run(options: CheckOptions) -> CheckReport {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let mut inputs = HealthInputs {
        prefix: options.prefix.clone(),
        ..HealthInputs::default()
    };
    let redis_label = options.redis.redacted();

    // Redis first: heartbeats (and discovery) need it.
    let connector = match RedisConnector::new(options.redis.clone()) {
        Ok(c) => Some(c.with_name("switchboard-check")),
        Err(e) => {
            inputs.redis_error = Some(e.to_string());
            None
        }
    };
    let reached = match &connector {
        Some(c) => match tokio::time::timeout(remaining(deadline), c.reach()).await {
            Ok(Ok(r)) => Some(r),
            Ok(Err(e)) => {
                inputs.redis_error = Some(e.to_string());
                None
            }
            Err(_) => {
                inputs.redis_error = Some("timed out reaching Redis".to_string());
                None
            }
        },
        None => None,
    };

    // Heartbeats: listened to while the canary runs (or before it, to discover the nodes).
    let (beats_tx, mut beats_rx) = tokio::sync::mpsc::channel::<Announcement>(256);
    let listen_for = if options.nodes.is_empty() {
        DISCOVERY.min(remaining(deadline))
    } else {
        DISCOVERY.min(remaining(deadline).mul_f64(CANARY_SHARE))
    };
    let listener = match (&connector, &reached) {
        (Some(c), Some(r)) => Some(tokio::spawn(listen_heartbeats(
            c.clone(),
            r.entry().clone(),
            naming::nodes_channel(&options.prefix),
            listen_for,
            beats_tx,
        ))),
        _ => None,
    };
    let mut heartbeats: Vec<Announcement> = Vec::new();
    let mut nodes = options.nodes.clone();
    let mut discovery_note = None;
    let mut ignored_heartbeats = 0usize;
    let mut listener = listener;
    if nodes.is_empty() {
        if let Some(l) = listener.take() {
            let _ = l.await;
        }
        while let Ok(a) = beats_rx.try_recv() {
            heartbeats.push(a);
        }
        let mut seen = BTreeSet::new();
        for a in &heartbeats {
            if !acceptable_announcement(&[&a.hub_url, &a.url, &a.monitor_url]) {
                ignored_heartbeats += 1;
                continue;
            }
            if !a.hub_url.is_empty() && seen.insert(a.hub_url.clone()) {
                let stats_url = (!a.monitor_url.is_empty() || !a.url.is_empty())
                    .then(|| format!("{}/switchboard/stats", a.url.trim_end_matches('/')));
                nodes.push(CheckNode {
                    hub_url: a.hub_url.clone(),
                    stats_url: stats_url.clone(),
                    trusted: options.trust_nodes.trusts_node(&a.hub_url, stats_url.as_deref()),
                });
            }
        }
        if nodes.len() > MAX_NODES {
            discovery_note = Some(format!(
                "{} nodes announced themselves; the first {MAX_NODES} were checked",
                nodes.len()
            ));
            nodes.truncate(MAX_NODES);
        }
    }

    // The nodes earlier runs saw are checked too (by their hub URL, without tokens unless
    // `--trust-nodes` names them, without stats): a node whose heartbeat was late is then found
    // alive, not gone. Without Redis nothing is compared (every known node would look gone).
    let mut state_findings = Vec::new();
    let mut known = match &options.state {
        Some(path) if reached.is_some() => Some(load_known(path, &mut state_findings)),
        Some(_) => {
            state_findings.push(Finding::new(
                "known-nodes",
                health::Severity::Info,
                "known nodes not compared: Redis was not reached".to_string(),
            ));
            None
        }
        None => None,
    };
    let asked = nodes.len();
    for k in known.iter().flat_map(|k| k.nodes()) {
        if nodes.len() >= MAX_NODES {
            break;
        }
        if !nodes.iter().any(|n| same_url(&n.hub_url, &k.hub_url))
            && crate::client::check_hub_url(&k.hub_url).is_ok()
        {
            nodes.push(CheckNode {
                hub_url: k.hub_url.clone(),
                stats_url: None,
                trusted: options.trust_nodes.trusts_node(&k.hub_url, None),
            });
        }
    }

    // The canary, with stats before and after.
    let canary_deadline = started + options.timeout.mul_f64(CANARY_SHARE);
    let before =
        futures_util::future::join_all(nodes.iter().map(|n| node_stats(n, &options, deadline))).await;
    let clients =
        futures_util::future::join_all(nodes.iter().map(|n| connect(n, &options, canary_deadline))).await;
    let (deliveries, connect_errors, clients) = canary(&nodes, clients, &options, canary_deadline).await;
    let after = futures_util::future::join_all(nodes.iter().map(|n| node_stats(n, &options, deadline))).await;
    // Closed together, each for at most 200 ms: a hung node never holds the exit.
    let closing = clients
        .into_iter()
        .flatten()
        .map(|client| tokio::time::timeout(Duration::from_millis(200), client.close()));
    futures_util::future::join_all(closing).await;
    inputs.deliveries = deliveries;

    let mut traffic: BTreeMap<String, u64> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let reach = match (&connect_errors[i], &before[i], &after[i]) {
            // The hub itself refused or timed out: its clients cannot connect either.
            (Some(why), _, _) => NodeReach::Unreachable(why.clone()),
            (None, StatsResult::Stats(b), StatsResult::Stats(a)) => {
                *traffic.entry(a.hub.clone()).or_default() +=
                    a.messages.backplane_out.saturating_sub(b.messages.backplane_out);
                NodeReach::Stats(snapshot(a, Some(b)))
            }
            (None, _, StatsResult::Stats(a)) => NodeReach::Stats(snapshot(a, None)),
            (None, _, _) => NodeReach::NoMonitor,
        };
        inputs.nodes.push(NodeObservation {
            name: node.hub_url.clone(),
            reach,
        });
    }

    // Heartbeats heard during the canary (the listener ends by itself within one interval).
    if let Some(l) = listener.take() {
        let _ = tokio::time::timeout(remaining(deadline), l).await;
    }
    while let Ok(a) = beats_rx.try_recv() {
        heartbeats.push(a);
    }
    inputs.heartbeats = heartbeats
        .iter()
        .map(|a| Heartbeat {
            server_name: a.server_name.clone(),
            node_name: a.node_name.clone(),
            hub: a.hub.clone(),
            ts_ms: a.ts_ms,
        })
        .collect();

    // Expected hubs: the flag, else what the nodes say.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    if let Some(h) = &options.hub_name {
        expected.insert(h.clone());
    } else {
        expected.extend(heartbeats.iter().map(|a| a.hub.clone()).filter(|h| !h.is_empty()));
        for n in &inputs.nodes {
            if let NodeReach::Stats(s) = &n.reach
                && !s.hub.is_empty()
            {
                expected.insert(s.hub.clone());
            }
        }
    }
    inputs.expected_hubs = expected.iter().cloned().collect();

    // One round of Redis queries.
    let mut census_seen: Option<Vec<HubCensus>> = None;
    if let (Some(c), Some(r)) = (&connector, &reached) {
        let queried = tokio::time::timeout(
            remaining(deadline).max(Duration::from_millis(500)),
            query_redis(
                c,
                &options.redis,
                &r.primaries(),
                &options.prefix,
                &expected,
                &traffic,
            ),
        )
        .await;
        match queried {
            Ok(Ok(q)) => {
                inputs.channels = q.channels;
                inputs.hubs = q.hubs;
                inputs.client_list = Some(q.client_list);
                census_seen = Some(q.census);
            }
            Ok(Err(e)) => inputs.redis_error = Some(e),
            Err(_) => inputs.redis_error = Some("timed out querying Redis (PUBSUB)".to_string()),
        }
    }
    inputs.now_ms = now_ms();
    let mut findings = health::evaluate(&inputs);
    if !options.event_keys.is_empty()
        && let (Some(c), Some(r)) = (&connector, &reached)
    {
        let read = tokio::time::timeout(
            remaining(deadline).max(Duration::from_millis(500)),
            sr2_counters(c, r, &options.event_keys),
        )
        .await;
        match read {
            Ok(Ok(counters)) => {
                for (key, counter, subscribers) in counters {
                    findings.extend(sr2_findings(&key, counter, subscribers, inputs.now_ms));
                }
            }
            Ok(Err(e)) => findings.push(
                Finding::new(
                    "sr2-total",
                    health::Severity::Warning,
                    "the SignalR 2 counters could not be read".to_string(),
                )
                .evidence(e),
            ),
            Err(_) => findings.push(Finding::new(
                "sr2-total",
                health::Severity::Warning,
                "timed out reading the SignalR 2 counters (GET)".to_string(),
            )),
        }
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    }
    if ignored_heartbeats > 0 {
        findings.push(Finding::new(
            "nodes",
            health::Severity::Info,
            format!(
                "{ignored_heartbeats} heartbeat(s) ignored: their URLs are not http(s):// or ws(s)://, or carry a user or password"
            ),
        ));
    }
    let untrusted = nodes.iter().filter(|n| !n.trusted).count();
    let has_tokens = options.token.is_some() || !options.node_credentials.is_none();
    if untrusted > 0 && has_tokens {
        findings.push(Finding::new(
            "nodes",
            health::Severity::Info,
            format!(
                "{untrusted} discovered node(s) not trusted: checked without tokens (name them with --node or --trust-nodes GLOB)"
            ),
        ));
    }
    if let Some(note) = discovery_note {
        findings.push(Finding::new("nodes", health::Severity::Info, note));
    }
    if nodes.is_empty() && inputs.redis_error.is_none() && !options.event_keys.is_empty() {
        findings.push(Finding::new(
            "nodes",
            health::Severity::Info,
            "no node was given and none announced itself: no test message was sent (SignalR 2 servers are checked through their event key only)"
                .to_string(),
        ));
    } else if nodes.is_empty() && inputs.redis_error.is_none() {
        findings.insert(
            0,
            Finding::new(
                "nodes",
                health::Severity::Warning,
                "no node was given and none announced itself on the heartbeat channel: no test message was sent"
                    .to_string(),
            )
            .action("pass --node URL (ASP.NET Core servers do not send heartbeats), or check --channel-prefix"),
        );
    }

    // What this run saw: the nodes its clients reached, and the known nodes heard on the
    // heartbeat channel (alive enough to announce themselves). A heartbeat alone never adds a
    // node: it is anyone's claim, and a forged one must not leave a node to miss forever.
    let mut seen: Vec<Seen> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if connect_errors[i].is_some() {
            continue;
        }
        let name = heartbeats
            .iter()
            .find(|a| same_url(&a.hub_url, &node.hub_url))
            .map(|a| a.node_name.clone())
            .or_else(|| match &after[i] {
                StatsResult::Stats(s) => Some(s.node_name.clone()),
                _ => None,
            })
            .unwrap_or_default();
        seen.push(Seen {
            name,
            hub_url: node.hub_url.clone(),
        });
    }
    for a in &heartbeats {
        let is_known = known
            .as_ref()
            .is_some_and(|k| k.nodes().iter().any(|n| same_url(&n.hub_url, &a.hub_url)));
        if is_known
            && acceptable_announcement(&[&a.hub_url, &a.url, &a.monitor_url])
            && !seen.iter().any(|s| same_url(&s.hub_url, &a.hub_url))
        {
            seen.push(Seen {
                name: a.node_name.clone(),
                hub_url: a.hub_url.clone(),
            });
        }
    }
    if let Some(expected) = options.expect_nodes
        && seen.len() < expected
    {
        findings.insert(
            0,
            Finding::new(
                "node-count",
                health::Severity::Critical,
                format!(
                    "{} node(s) seen, {expected} expected (--expect-nodes)",
                    seen.len()
                ),
            )
            .evidence(format!(
                "reached or heard: {}",
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.iter()
                        .map(|s| s.hub_url.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))
            .action("start the missing nodes, or lower --expect-nodes if they were removed on purpose"),
        );
    }
    findings.extend(state_findings);
    let known = match (&options.state, known.as_mut()) {
        (Some(path), Some(known)) => Some(remember(
            path,
            known,
            &nodes[..asked],
            &seen,
            now_ms(),
            &mut findings,
        )),
        _ => None,
    };
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let status = Verdict::of(&findings);
    CheckReport {
        status,
        exit_code: exit_code(&findings, options.fail_on),
        redis: redis_label,
        nodes: nodes.iter().map(|n| n.hub_url.clone()).collect(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        state_file: options.state.as_ref().map(|p| p.display().to_string()),
        known_nodes: known,
        redis_figures: census_seen.map(|c| figures(&c, &inputs)),
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_argument_derives_its_stats_url_or_takes_none() {
        let n = CheckNode::parse("http://127.0.0.1:5001/chat").unwrap();
        assert_eq!(
            n.stats_url.as_deref(),
            Some("http://127.0.0.1:5001/switchboard/stats")
        );
        let n = CheckNode::parse("https://h:443/hubs/chat/,none").unwrap();
        assert_eq!(
            (n.hub_url.as_str(), n.stats_url),
            ("https://h:443/hubs/chat", None)
        );
        assert!(CheckNode::parse("ftp://x").is_err());
    }
}
