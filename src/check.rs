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
//! Exit code (the crate's convention, `cli`): 0 healthy or only warnings and info, 1 any
//! critical finding (or any warning with `--fail-on warning`), 2 bad usage (`cli` exits before a
//! check runs).
//!
//! Bounded: every step runs under one deadline (`--timeout`); a node or a Redis that does not
//! answer is a finding, never a crash. Headless (no `gui` feature needed).
//!
//! Uses `client` (hub clients, HTTP), `redis_conn`, `backplane::naming`, `status_doc`,
//! `known_nodes` and `monitor::model::health`; never `hub` internals: it sees nodes as an operator would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::backplane::naming::{self, ChannelKind};
use crate::client::{ClientEvent, ClientOptions, HubClient, NodeTls};
use crate::known_nodes::{self, KnownNode, Seen};
use crate::monitor::model::health::{
    self, ClientListInput, Delivery, Finding, HealthInputs, Heartbeat, HubObservation, NodeObservation,
    NodeReach, NodeSnapshot, Verdict,
};
use crate::monitor::model::trust::{TrustRules, acceptable_announcement};
use crate::monitor::{HubCensus, census, directory, redis_view};
use crate::monitor_token::MonitorToken;
use crate::node_token::NodeCredentials;
use crate::protocol::Value;
use crate::redis_conn::{Addr, RedisConnector, RedisSpec, describe};
use crate::status_doc::{Announcement, NodeStats};

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

/// One node to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckNode {
    pub hub_url: String,
    /// `None` for a node without a monitor endpoint (ASP.NET Core).
    pub stats_url: Option<String>,
    /// Named with `--node` or matching `--trust-nodes`: only then does it get the monitor token
    /// and the node token. A node known only from a heartbeat is checked without either.
    pub trusted: bool,
}

impl CheckNode {
    /// `HUB_URL[,STATS_URL|none]`, the dashboard's `--node` syntax; the stats URL of a Switchboard
    /// node is derived from the hub URL's origin.
    pub fn parse(text: &str) -> Result<CheckNode, String> {
        let (hub, stats) = match text.split_once(',') {
            Some((hub, stats)) => (hub.trim(), Some(stats.trim())),
            None => (text.trim(), None),
        };
        crate::client::check_hub_url(hub).map_err(|e| e.to_string())?;
        let origin = origin_of(hub).ok_or_else(|| format!("'{hub}' is not an http:// or https:// URL"))?;
        let stats_url = match stats {
            Some(s) if s.is_empty() || s.eq_ignore_ascii_case("none") => None,
            Some(s) => Some(s.to_string()),
            None => Some(format!("{origin}/switchboard/stats")),
        };
        Ok(CheckNode {
            hub_url: hub.trim_end_matches('/').to_string(),
            stats_url,
            trusted: true,
        })
    }
}

/// `scheme://host:port` of an http(s) URL.
fn origin_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let host_len = rest.find('/').unwrap_or(rest.len());
    (host_len > 0).then(|| &url[..url.len() - rest.len() + host_len])
}

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

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Loads the state file; a corrupt or unreadable one is a warning and a fresh start.
fn load_known(path: &std::path::Path, findings: &mut Vec<Finding>) -> known_nodes::KnownNodes {
    match known_nodes::load(path) {
        Ok(k) => k,
        Err(e) => {
            findings.push(
                Finding::new(
                    "known-nodes",
                    health::Severity::Warning,
                    "the known-nodes file could not be read: starting afresh (nodes gone before this run are not reported)"
                        .to_string(),
                )
                .evidence(e.to_string())
                .action("nothing, if it was damaged; this run wrote a new one"),
            );
            known_nodes::KnownNodes::default()
        }
    }
}

/// Records this run's nodes, reports the known ones missing now as `node-gone` (but those given
/// or discovered this run: an unreachable one has its `node-unreachable`), and saves. Returns
/// how many it knows.
fn remember(
    path: &std::path::Path,
    known: &mut known_nodes::KnownNodes,
    asked: &[CheckNode],
    seen: &[Seen],
    now_ms: u64,
    findings: &mut Vec<Finding>,
) -> usize {
    let gone = known.observe(seen, now_ms);
    for node in gone
        .iter()
        .filter(|g| !asked.iter().any(|c| same_url(&c.hub_url, &g.hub_url)))
    {
        findings.push(gone_finding(node, now_ms));
    }
    if let Err(e) = known_nodes::save(path, known) {
        findings.push(
            Finding::new(
                "known-nodes",
                health::Severity::Warning,
                "the known-nodes file could not be written: the next run will not miss a node that stops now"
                    .to_string(),
            )
            .evidence(e.to_string())
            .action("make its folder writable, pass --state FILE, or --no-state"),
        );
    }
    known.nodes().len()
}

fn gone_finding(node: &KnownNode, now_ms: u64) -> Finding {
    let ago = now_ms.saturating_sub(node.last_seen_ms) / 1000;
    let mut f = Finding::new(
        "node-gone",
        health::Severity::Critical,
        format!(
            "node {} was seen by an earlier check and is missing now: it neither answered nor sent a heartbeat",
            node.name
        ),
    )
    .subject(&node.hub_url)
    .evidence(format!("{} last seen {ago} s ago", node.hub_url));
    f.action = format!(
        "bring it back, or if it was removed on purpose: switchboard check --forget {} (with the same --redis and --channel-prefix)",
        node.hub_url
    );
    f
}

/// `--forget`: forgets the nodes named (by name or hub URL) in the state file; returns what each
/// name matched (empty: nothing known by it).
pub fn forget(
    path: &std::path::Path,
    names: &[String],
) -> Result<Vec<(String, Vec<KnownNode>)>, known_nodes::StateError> {
    let mut known = known_nodes::load(path)?;
    let out: Vec<(String, Vec<KnownNode>)> = names
        .iter()
        .map(|name| (name.clone(), known.forget(name)))
        .collect();
    if out.iter().any(|(_, forgotten)| !forgotten.is_empty()) {
        known_nodes::save(path, &known)?;
    }
    Ok(out)
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Subscribes to the heartbeat channel for `listen_for` and hands on every announcement.
async fn listen_heartbeats(
    connector: RedisConnector,
    addr: Addr,
    channel: String,
    listen_for: Duration,
    tx: tokio::sync::mpsc::Sender<Announcement>,
) {
    let work = async {
        let Ok(mut pubsub) = connector.pubsub(&addr).await else {
            return;
        };
        if pubsub.subscribe(&channel).await.is_err() {
            return;
        }
        let mut stream = pubsub.on_message();
        while let Some(message) = stream.next().await {
            if let Ok(a) = serde_json::from_slice::<Announcement>(message.get_payload_bytes()) {
                let _ = tx.try_send(a);
            }
        }
    };
    let _ = tokio::time::timeout(listen_for, work).await;
}

enum StatsResult {
    Stats(Box<NodeStats>),
    NoMonitor,
    /// Did not answer (the hub client's error says why, or it connected: a wrong stats URL).
    Unreachable,
}

async fn node_stats(node: &CheckNode, options: &CheckOptions, deadline: Instant) -> StatsResult {
    let Some(url) = &node.stats_url else {
        return StatsResult::NoMonitor;
    };
    let limit = remaining(deadline).min(directory::PAGE_TIMEOUT);
    let token = options.token.as_ref().filter(|_| node.trusted);
    match directory::get(url, token, options.node_tls.as_ref(), limit).await {
        Ok(response) if response.status == 200 => match response.json::<NodeStats>() {
            Ok(stats) => StatsResult::Stats(Box::new(stats)),
            Err(_) => StatsResult::NoMonitor,
        },
        // 404 (no monitor endpoint: ASP.NET Core) or 401/403: the canary still tells.
        Ok(_) => StatsResult::NoMonitor,
        Err(_) => StatsResult::Unreachable,
    }
}

fn snapshot(after: &NodeStats, before: Option<&NodeStats>) -> NodeSnapshot {
    NodeSnapshot {
        server_name: after.server_name.clone(),
        hub: after.hub.clone(),
        backplane_kind: after.backplane.kind.clone(),
        backplane_state: after.backplane.status.state.clone(),
        backplane_error: after.backplane.status.last_error.clone(),
        connections: after.connections.total,
        client_out_delta: before.map(|b| after.messages.client_out.saturating_sub(b.messages.client_out)),
        backplane_in_delta: before.map(|b| {
            after
                .messages
                .backplane_in
                .saturating_sub(b.messages.backplane_in)
        }),
    }
}

async fn connect(node: &CheckNode, options: &CheckOptions, deadline: Instant) -> Result<HubClient, String> {
    let opts = ClientOptions {
        user: Some(CHECK_USER.to_string()),
        connect_timeout: remaining(deadline).max(Duration::from_millis(100)),
        tls: options.node_tls.clone(),
        token: if node.trusted {
            options.node_credentials.bearer_for(CHECK_USER)
        } else {
            None
        },
        ..ClientOptions::default()
    };
    HubClient::connect(&node.hub_url, opts)
        .await
        .map_err(|e| e.to_string())
}

/// Sends one text through each connected node and waits on every other node's client for the
/// texts it should receive. Returns the deliveries, why each node's client could not connect,
/// and the clients (to close them).
async fn canary(
    nodes: &[CheckNode],
    clients: Vec<Result<HubClient, String>>,
    options: &CheckOptions,
    deadline: Instant,
) -> (Vec<Delivery>, Vec<Option<String>>, Vec<Option<HubClient>>) {
    let stamp = now_ms();
    let texts: Vec<String> = (0..nodes.len())
        .map(|i| format!("switchboard check {}-{stamp}-{i}", std::process::id()))
        .collect();
    let mut unreachable: Vec<Option<String>> = Vec::new();
    let mut clients: Vec<Option<HubClient>> = clients
        .into_iter()
        .map(|c| match c {
            Ok(c) => {
                unreachable.push(None);
                Some(c)
            }
            Err(e) => {
                unreachable.push(Some(e));
                None
            }
        })
        .collect();
    let live: Vec<usize> = (0..nodes.len()).filter(|&i| clients[i].is_some()).collect();
    let sent_at = Instant::now();
    let mut sent = vec![false; nodes.len()];
    for &i in &live {
        if let Some(c) = &clients[i] {
            let args = vec![Value::from(CHECK_USER), Value::from(texts[i].as_str())];
            sent[i] = c.send(&options.send_method, args).await.is_ok();
        }
    }
    // Who expects what: every other live node; a lone node expects its own.
    let expect = |j: usize| -> Vec<usize> {
        if live.len() == 1 {
            live.clone()
        } else {
            live.iter().copied().filter(|&i| i != j && sent[i]).collect()
        }
    };
    let waits = clients.iter_mut().enumerate().filter_map(|(j, c)| {
        let c = c.as_mut()?;
        let wanted: Vec<(usize, String)> = expect(j).into_iter().map(|i| (i, texts[i].clone())).collect();
        let receive = options.receive_method.clone();
        Some(async move {
            let mut got: BTreeMap<usize, u64> = BTreeMap::new();
            while got.len() < wanted.len() {
                let left = remaining(deadline);
                if left.is_zero() {
                    break;
                }
                match c.recv_timeout(left).await {
                    Some(ClientEvent::Invocation { target, arguments }) if target == receive => {
                        for (i, text) in &wanted {
                            if arguments.iter().any(|a| a.as_str() == Some(text.as_str())) {
                                got.entry(*i).or_insert(sent_at.elapsed().as_millis() as u64);
                            }
                        }
                    }
                    Some(ClientEvent::Invocation { .. }) => {}
                    Some(_) | None => break,
                }
            }
            (j, wanted, got)
        })
    });
    let results = futures_util::future::join_all(waits).await;
    let mut deliveries = Vec::new();
    for (j, wanted, got) in results {
        for (i, _) in wanted {
            deliveries.push(Delivery {
                from: nodes[i].hub_url.clone(),
                to: nodes[j].hub_url.clone(),
                received_after_ms: got.get(&i).copied(),
            });
        }
    }
    (deliveries, unreachable, clients)
}

struct RedisRound {
    channels: Vec<String>,
    hubs: Vec<HubObservation>,
    census: Vec<HubCensus>,
    client_list: Result<ClientListInput, String>,
}

/// The Redis side of the inputs, through the dashboard's own code so the two cannot count apart:
/// one census round ([`census::gather`]: the walk of `{prefix}*`, the census per hub, `NUMSUB`
/// of `:all` and `:internal:groups`), the hubs built by [`health::hubs_from_redis`], one Redis
/// view round ([`redis_view::one_round`]: `CLIENT LIST TYPE pubsub`, the buffer limit) read by
/// [`health::client_list_from_snapshot`]. Beyond the dashboard, `check` also lists the
/// backplane-shaped channels of every prefix (`*:all`, `*:internal:*`) for the foreign-channel
/// rule (the dashboard sees those through its tap).
async fn query_redis(
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
async fn sr2_counters(
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
fn sr2_findings(key: &str, counter: Option<u64>, subscribers: u64, now_ms: u64) -> Vec<Finding> {
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
