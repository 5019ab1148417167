//! Health: findings about the backplane and its nodes, each with a severity, the evidence (the
//! numbers, the channels) and what to do, computed by one pure function, [`evaluate`], from a plain
//! [`HealthInputs`] that the dashboard (tap, census, heartbeats, node stats) and `switchboard check`
//! (one round of `PUBSUB`, `CLIENT LIST`, node stats and a canary message) both fill.
//!
//! Pure: std and serde only, no clock (`now_ms` is an input), no I/O. [`RefreshGate`] keeps the
//! caller from recomputing (and re-querying Redis) more often than every [`MIN_REFRESH`].
//!
//! The rules, one function each, in the order of [`evaluate`]:
//! - `redis-unreachable`: the observer could not talk to Redis;
//! - `servers`: servers per hub from ack/return channels, heartbeats and `NUMSUB` of `:all` and
//!   `:internal:groups`;
//! - `deaf-server`: ack channels subscribed by more servers than `{hub}:all` counts subscribers;
//! - `output-buffer`: a pub/sub client near `client-output-buffer-limit pubsub`;
//! - `foreign-channel`: backplane-shaped channels under another prefix or an unknown hub name;
//! - `pattern-group`: group names with `*`, `?` or `[` (ASP.NET Core subscribes them as patterns);
//! - `node-unreachable`, `backplane-down`: a node that does not answer, or whose Redis link is down;
//! - `tap-gap`: windows in which the observer itself saw nothing;
//! - `silent-node`: a node whose clients received nothing while the backplane carried its hub;
//! - `canary`: a test message sent through one node and not received on another;
//! - `sr2-gap`, `sr2-regression`, `sr2-total`: SignalR 2 message ids (SIGNALR-WIRE.md C.2).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::backplane::naming::{self, ChannelKind};

/// Health is recomputed at most this often (and so are the Redis queries behind it), so that
/// watching never loads a production Redis.
pub const MIN_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// A heartbeat older than this no longer counts a server as alive (nodes beat every 2 s).
pub const HEARTBEAT_FRESH_MS: u64 = 10_000;

/// A pub/sub client's output buffer at this share of the hard limit is a warning...
pub const BUFFER_WARN_RATIO: f64 = 0.5;
/// ...and at this share critical: Redis closes it at the limit, and its server misses everything.
pub const BUFFER_CRITICAL_RATIO: f64 = 0.8;

/// How bad a finding is. The order is the severity (`Critical` is the largest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One finding: what, how bad, the evidence, and what to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule's id (`deaf-server`, `backplane-down`, ...): stable, for scripts.
    pub rule: &'static str,
    pub severity: Severity,
    /// The hub concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    /// The node or server concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// One line saying what is wrong (or, for info, what is so).
    pub summary: String,
    /// The numbers and channels behind it.
    pub evidence: Vec<String>,
    /// What to do about it (empty for info).
    pub action: String,
}

impl Finding {
    /// A finding with no hub, subject, evidence or action yet (builders below).
    pub fn new(rule: &'static str, severity: Severity, summary: String) -> Self {
        Finding {
            rule,
            severity,
            hub: None,
            subject: None,
            summary,
            evidence: Vec::new(),
            action: String::new(),
        }
    }
    pub fn hub(mut self, hub: &str) -> Self {
        self.hub = Some(hub.to_string());
        self
    }
    pub fn subject(mut self, subject: &str) -> Self {
        self.subject = Some(subject.to_string());
        self
    }
    pub fn evidence(mut self, line: String) -> Self {
        self.evidence.push(line);
        self
    }
    pub fn action(mut self, text: &str) -> Self {
        self.action = text.to_string();
        self
    }

    /// One line: `WARNING deaf-server [hub] summary (evidence; evidence) → action`.
    pub fn line(&self) -> String {
        let mut out = format!("{:<8} {}", self.severity.label().to_uppercase(), self.rule);
        if let Some(hub) = &self.hub {
            out.push_str(&format!(" [{hub}]"));
        }
        out.push_str(": ");
        out.push_str(&self.summary);
        if !self.evidence.is_empty() {
            out.push_str(&format!(" ({})", self.evidence.join("; ")));
        }
        if !self.action.is_empty() {
            out.push_str(&format!(" → {}", self.action));
        }
        out
    }
}

/// The overall verdict: the worst severity found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Healthy,
    Degraded,
    Broken,
}

impl Verdict {
    pub fn of(findings: &[Finding]) -> Verdict {
        match findings.iter().map(|f| f.severity).max() {
            Some(Severity::Critical) => Verdict::Broken,
            Some(Severity::Warning) => Verdict::Degraded,
            _ => Verdict::Healthy,
        }
    }
    /// `switchboard check`'s exit code: 0 healthy, 1 degraded, 2 broken.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Degraded => 1,
            Verdict::Broken => 2,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Degraded => "degraded",
            Verdict::Broken => "broken",
        }
    }
}

/// What Redis says about one hub under the watched prefix.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HubObservation {
    pub hub: String,
    /// Server names with a subscribed `{prefix}{hub}:internal:ack:{server}` channel.
    pub ack_servers: Vec<String>,
    /// Server names with a subscribed `:internal:return:{server}` channel (.NET 7+ and Switchboard).
    pub return_servers: Vec<String>,
    /// `PUBSUB NUMSUB {prefix}{hub}:all`, when asked.
    pub numsub_all: Option<u64>,
    /// `PUBSUB NUMSUB {prefix}{hub}:internal:groups`, when asked.
    pub numsub_groups: Option<u64>,
    /// Backplane messages of this hub seen in the observation window (the tap), when counted.
    pub traffic: Option<u64>,
}

/// A heartbeat on `{prefix}switchboard:nodes`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heartbeat {
    pub server_name: String,
    pub node_name: String,
    pub hub: String,
    pub ts_ms: u64,
}

/// What a watched node showed.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeReach {
    /// It answered with its stats.
    Stats(NodeSnapshot),
    /// It accepted hub clients but has no monitor endpoint (an ASP.NET Core server).
    NoMonitor,
    /// It could not be reached, in words (refused, timed out, 401 ...).
    Unreachable(String),
}

/// The parts of a node's stats the rules use (from `status_doc::NodeStats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSnapshot {
    pub server_name: String,
    pub hub: String,
    /// `backplane.kind`: memory or redis.
    pub backplane_kind: String,
    /// `backplane.status.state`: connected, connecting, reconnecting, stopped, memory.
    pub backplane_state: String,
    pub backplane_error: Option<String>,
    pub connections: u64,
    /// Messages queued for the node's clients during the window (a delta), when known.
    pub client_out_delta: Option<u64>,
    /// Messages received from the backplane during the window (a delta), when known.
    pub backplane_in_delta: Option<u64>,
}

/// One watched node (given on the command line or known to the dashboard).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeObservation {
    /// Its name or URL, as the operator knows it.
    pub name: String,
    pub reach: NodeReach,
}

/// One row of `CLIENT LIST TYPE pubsub`, the fields the buffer rule needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PubSubClient {
    pub id: u64,
    pub name: String,
    pub addr: String,
    /// Output buffer memory in bytes (`omem`), what Redis compares with the limit.
    pub omem: u64,
    /// Subscribed channels (`sub`) and patterns (`psub`).
    pub sub: u64,
    pub psub: u64,
}

/// `client-output-buffer-limit` for the pubsub class, in bytes (0 = no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_seconds: u64,
}

impl BufferLimit {
    /// Parses `CONFIG GET client-output-buffer-limit`'s value
    /// (`normal 0 0 0 replica 268435456 67108864 60 pubsub 33554432 8388608 60`).
    pub fn parse_pubsub(config: &str) -> Option<BufferLimit> {
        let words: Vec<&str> = config.split_whitespace().collect();
        let at = words.iter().position(|w| w.eq_ignore_ascii_case("pubsub"))?;
        let number = |i: usize| words.get(at + i).and_then(|w| parse_bytes(w));
        Some(BufferLimit {
            hard: number(1)?,
            soft: number(2)?,
            soft_seconds: words.get(at + 3)?.parse().ok()?,
        })
    }
}

/// `8388608`, `32mb`, `1gb`, `64k` → bytes (Redis's memory units).
fn parse_bytes(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let units: [(&str, u64); 6] = [
        ("gb", 1 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("g", 1_000_000_000),
        ("m", 1_000_000),
        ("k", 1_000),
    ];
    for (suffix, factor) in units {
        if let Some(number) = lower.strip_suffix(suffix) {
            return number.parse::<u64>().ok().map(|n| n.saturating_mul(factor));
        }
    }
    lower.parse().ok()
}

/// `CLIENT LIST` rows and the limit they are held against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientListInput {
    pub clients: Vec<PubSubClient>,
    /// `None` when `CONFIG GET` was refused: the rule says so instead of guessing.
    pub limit: Option<BufferLimit>,
}

/// Parses `CLIENT LIST` text (one client per line, `key=value` fields) into rows.
pub fn parse_client_list(text: &str) -> Vec<PubSubClient> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut row = PubSubClient::default();
            for field in line.split_whitespace() {
                let Some((key, value)) = field.split_once('=') else {
                    continue;
                };
                let n = || value.parse::<u64>().unwrap_or(0);
                match key {
                    "id" => row.id = n(),
                    "name" => row.name = value.to_string(),
                    "addr" => row.addr = value.to_string(),
                    "omem" => row.omem = n(),
                    "sub" => row.sub = n(),
                    "psub" => row.psub = n(),
                    _ => {}
                }
            }
            row
        })
        .collect()
}

/// A window in which the observer's tap was down (it saw nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapGap {
    pub from_ms: u64,
    pub to_ms: u64,
}

/// A test message sent through `from` and expected on a client of `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub from: String,
    pub to: String,
    /// Milliseconds until it arrived, or `None` when it did not within the timeout.
    pub received_after_ms: Option<u64>,
}

/// SignalR 2 message ids, folded in arrival order by [`Sr2Ids::observe`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sr2Ids {
    pub last: Option<u64>,
    /// Messages seen.
    pub seen: u64,
    /// (id before, id after): the tap missed exactly `after - before - 1` messages.
    pub gaps: Vec<(u64, u64)>,
    /// (id before, id after) with `after <= before`: the counter key was reset.
    pub regressions: Vec<(u64, u64)>,
}

/// Most gaps and regressions kept (the counts stay exact in `missed`).
const SR2_KEPT: usize = 64;

impl Sr2Ids {
    /// Folds one id.
    pub fn observe(&mut self, id: u64) {
        self.seen += 1;
        if let Some(last) = self.last {
            if id <= last {
                if self.regressions.len() < SR2_KEPT {
                    self.regressions.push((last, id));
                }
            } else if id > last + 1 && self.gaps.len() < SR2_KEPT {
                self.gaps.push((last, id));
            }
        }
        self.last = Some(id);
    }

    /// Messages the tap missed in all kept gaps.
    pub fn missed(&self) -> u64 {
        self.gaps.iter().map(|(a, b)| b - a - 1).sum()
    }
}

/// The SignalR 2 side of the inputs (one event key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sr2Observation {
    pub event_key: String,
    pub ids: Sr2Ids,
    /// `GET eventKey`: the id of the newest message, i.e. messages published since the counter
    /// began.
    pub counter: Option<u64>,
}

/// Everything the rules look at. Every part is optional in effect (empty or `None`): a rule whose
/// input is missing says nothing, or says it was skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthInputs {
    pub now_ms: u64,
    /// Redis could not be reached or refused the observer's commands, in words.
    pub redis_error: Option<String>,
    /// The watched channel prefix.
    pub prefix: String,
    /// Hub names the operator expects (given, or what the nodes announce); empty = any.
    pub expected_hubs: Vec<String>,
    /// Per hub under the prefix.
    pub hubs: Vec<HubObservation>,
    pub heartbeats: Vec<Heartbeat>,
    pub nodes: Vec<NodeObservation>,
    /// `CLIENT LIST TYPE pubsub`, or why it was skipped.
    pub client_list: Option<Result<ClientListInput, String>>,
    /// Channel names seen anywhere (`PUBSUB CHANNELS`, the tap), any prefix.
    pub channels: Vec<String>,
    pub tap_gaps: Vec<TapGap>,
    pub deliveries: Vec<Delivery>,
    pub sr2: Option<Sr2Observation>,
}

/// Runs every rule; findings come worst first, then in rule order.
pub fn evaluate(inputs: &HealthInputs) -> Vec<Finding> {
    let mut out = Vec::new();
    redis_reach(inputs, &mut out);
    servers_per_hub(inputs, &mut out);
    deaf_servers(inputs, &mut out);
    output_buffers(inputs, &mut out);
    foreign_channels(inputs, &mut out);
    pattern_groups(inputs, &mut out);
    node_links(inputs, &mut out);
    tap_gaps(inputs, &mut out);
    silent_nodes(inputs, &mut out);
    canary(inputs, &mut out);
    sr2(inputs, &mut out);
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

/// The observer could not talk to Redis: nothing below it is known.
fn redis_reach(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    if let Some(why) = &inputs.redis_error {
        out.push(
            Finding::new(
                "redis-unreachable",
                Severity::Critical,
                "the backplane's Redis cannot be reached or refused the checks".to_string(),
            )
            .evidence(why.clone())
            .action("look at the Redis URL, its credentials and TLS options, and the network; the servers cannot use it either if it is down"),
        );
    }
}

fn fresh_heartbeats<'a>(inputs: &'a HealthInputs, hub: &'a str) -> BTreeSet<&'a str> {
    inputs
        .heartbeats
        .iter()
        .filter(|h| h.hub == hub && inputs.now_ms.saturating_sub(h.ts_ms) <= HEARTBEAT_FRESH_MS)
        .map(|h| h.server_name.as_str())
        .collect()
}

fn opt(n: Option<u64>) -> String {
    n.map_or_else(|| "?".to_string(), |n| n.to_string())
}

/// Servers per hub, counted four ways; a heartbeat without an ack channel, or `:internal:groups`
/// with fewer subscribers than servers, is a warning.
fn servers_per_hub(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    for hub in &inputs.hubs {
        let beats = fresh_heartbeats(inputs, &hub.hub);
        out.push(
            Finding::new(
                "servers",
                Severity::Info,
                format!("{} server(s) on this hub", hub.ack_servers.len()),
            )
            .hub(&hub.hub)
            .evidence(format!(
                "ack channels {}, return channels {}, heartbeats {}, NUMSUB :all {}, NUMSUB :internal:groups {}",
                hub.ack_servers.len(),
                hub.return_servers.len(),
                beats.len(),
                opt(hub.numsub_all),
                opt(hub.numsub_groups)
            )),
        );
        let acks: BTreeSet<&str> = hub.ack_servers.iter().map(String::as_str).collect();
        for server in beats.difference(&acks) {
            out.push(
                Finding::new(
                    "servers",
                    Severity::Warning,
                    format!("node {server} sends heartbeats but its ack channel is not subscribed"),
                )
                .hub(&hub.hub)
                .subject(server)
                .evidence(format!(
                    "no {}{}:internal:ack:{server}",
                    inputs.prefix, hub.hub
                ))
                .action("its backplane link is down or on another Redis/prefix: look at its backplane state and --channel-prefix"),
            );
        }
        if let Some(groups) = hub.numsub_groups
            && groups < acks.len() as u64
        {
            out.push(
                Finding::new(
                    "servers",
                    Severity::Warning,
                    format!(
                        "{} server(s) do not listen on :internal:groups: group adds for their connections from other servers time out",
                        acks.len() as u64 - groups
                    ),
                )
                .hub(&hub.hub)
                .evidence(format!(
                    "NUMSUB {}{}:internal:groups = {groups}, ack channels = {}",
                    inputs.prefix,
                    hub.hub,
                    acks.len()
                ))
                .action("restart the server(s) whose subscriptions were lost"),
            );
        }
    }
}

/// More ack channels than `{hub}:all` subscribers: a server that is subscribed for its acks but
/// not for broadcasts receives no `Clients.All` messages ("deaf").
fn deaf_servers(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    for hub in &inputs.hubs {
        let Some(all) = hub.numsub_all else { continue };
        let servers = hub.ack_servers.len() as u64;
        if all >= servers {
            continue;
        }
        let beats = fresh_heartbeats(inputs, &hub.hub);
        // Servers that beat and answered are the likely healthy ones; the rest are suspects.
        let suspects: Vec<&str> = hub
            .ack_servers
            .iter()
            .map(String::as_str)
            .filter(|s| !beats.contains(s))
            .collect();
        let mut finding = Finding::new(
            "deaf-server",
            Severity::Warning,
            format!(
                "{} server(s) subscribed for acks are not among the {all} subscriber(s) of :all: they miss every broadcast",
                servers - all
            ),
        )
        .hub(&hub.hub)
        .evidence(format!(
            "NUMSUB {}{}:all = {all}, ack channels = {servers}",
            inputs.prefix, hub.hub
        ))
        .action("restart the deaf server (its :all subscription was lost); check its logs for Redis reconnects");
        if !suspects.is_empty() {
            finding = finding.evidence(format!("without heartbeat: {}", suspects.join(", ")));
            if suspects.len() == 1 {
                finding = finding.subject(suspects[0]);
            }
        }
        out.push(finding);
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// A pub/sub client whose output buffer nears the hard limit: Redis is about to cut it.
fn output_buffers(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    let Some(list) = &inputs.client_list else { return };
    let list = match list {
        Ok(list) => list,
        Err(why) => {
            out.push(
                Finding::new(
                    "output-buffer",
                    Severity::Info,
                    "output buffers not checked".to_string(),
                )
                .evidence(why.clone()),
            );
            return;
        }
    };
    let Some(limit) = list.limit else {
        out.push(
            Finding::new(
                "output-buffer",
                Severity::Info,
                "the pubsub output-buffer limit is unknown (CONFIG GET refused): buffers not held against it"
                    .to_string(),
            )
            .evidence(format!("{} pub/sub clients listed", list.clients.len())),
        );
        return;
    };
    let bound = match (limit.hard, limit.soft) {
        (0, 0) => return,
        (0, soft) => soft,
        (hard, 0) => hard,
        (hard, soft) => hard.min(soft),
    };
    for client in &list.clients {
        let ratio = client.omem as f64 / bound as f64;
        let severity = if ratio >= BUFFER_CRITICAL_RATIO {
            Severity::Critical
        } else if ratio >= BUFFER_WARN_RATIO {
            Severity::Warning
        } else {
            continue;
        };
        let who = if client.name.is_empty() {
            format!("client {} ({})", client.id, client.addr)
        } else {
            format!("client {} {} ({})", client.id, client.name, client.addr)
        };
        out.push(
            Finding::new(
                "output-buffer",
                severity,
                format!("{who} has {:.0} % of its output-buffer limit queued: Redis will disconnect it", ratio * 100.0),
            )
            .subject(&who)
            .evidence(format!(
                "omem {} of {} (client-output-buffer-limit pubsub {} {} {}), {} channel(s), {} pattern(s)",
                mib(client.omem),
                mib(bound),
                limit.hard,
                limit.soft,
                limit.soft_seconds,
                client.sub,
                client.psub
            ))
            .action("this subscriber reads too slowly: look at its CPU and network, or raise client-output-buffer-limit pubsub"),
        );
    }
}

/// Whether a channel name has the shape of an ASP.NET Core backplane channel; returns the part
/// before the scope (`{prefix}{hub}`).
fn backplane_shape(channel: &str) -> Option<&str> {
    if let Some(head) = channel.strip_suffix(":all") {
        return Some(head);
    }
    if let Some(head) = channel.strip_suffix(":internal:groups") {
        return Some(head);
    }
    for marker in [
        ":internal:ack:",
        ":internal:return:",
        ":connection:",
        ":group:",
        ":user:",
    ] {
        if let Some(at) = channel.find(marker) {
            return Some(&channel[..at]);
        }
    }
    None
}

/// Backplane traffic under a prefix or hub name no watched node uses: a misconfigured
/// `ChannelPrefix` or hub type, whose servers never see ours.
fn foreign_channels(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    let mut foreign_prefix: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut unknown_hub: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for channel in &inputs.channels {
        if naming::is_nodes_channel(&inputs.prefix, channel) {
            continue;
        }
        match naming::classify(&inputs.prefix, channel) {
            Some((hub, _)) => {
                if !inputs.expected_hubs.is_empty() && !inputs.expected_hubs.contains(&hub) {
                    unknown_hub.entry(hub).or_default().push(channel);
                }
            }
            None => {
                if let Some(head) = backplane_shape(channel) {
                    foreign_prefix.entry(head).or_default().push(channel);
                }
            }
        }
    }
    for (head, channels) in foreign_prefix {
        out.push(
            Finding::new(
                "foreign-channel",
                Severity::Warning,
                format!(
                    "backplane channels for {head:?}, which is not under the prefix {:?}: servers there never see ours",
                    inputs.prefix
                ),
            )
            .evidence(format!("{} channel(s), e.g. {}", channels.len(), channels[0]))
            .action("compare the ChannelPrefix of every server (and --channel-prefix here)"),
        );
    }
    for (hub, channels) in unknown_hub {
        out.push(
            Finding::new(
                "foreign-channel",
                Severity::Warning,
                format!("channels of hub {hub:?}, which no watched node serves"),
            )
            .hub(&hub)
            .evidence(format!(
                "{} channel(s), e.g. {}; expected {}",
                channels.len(),
                channels[0],
                inputs.expected_hubs.join(", ")
            ))
            .action("the hub type name (typeof(THub).FullName, --hub-name) must match on every server"),
        );
    }
}

/// Group names with `*`, `?` or `[`: ASP.NET Core's SUBSCRIBE is turned into a pattern
/// subscription by some clients, and the name matches other groups (AspNetCore.Docs#29435).
fn pattern_groups(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    let mut seen = BTreeSet::new();
    for channel in &inputs.channels {
        if let Some((hub, ChannelKind::Group(group))) = naming::classify(&inputs.prefix, channel)
            && group.contains(['*', '?', '['])
            && seen.insert((hub.clone(), group.clone()))
        {
            out.push(
                Finding::new(
                    "pattern-group",
                    Severity::Warning,
                    format!("group name {group:?} contains a glob character: it is subscribed as a pattern and receives other groups' messages"),
                )
                .hub(&hub)
                .subject(&group)
                .evidence(format!("channel {channel}"))
                .action("avoid *, ? and [ in group names (escape or replace them in the application)"),
            );
        }
    }
}

/// A node that does not answer, or whose backplane link is not connected.
fn node_links(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    for node in &inputs.nodes {
        match &node.reach {
            NodeReach::Unreachable(why) => out.push(
                Finding::new(
                    "node-unreachable",
                    Severity::Critical,
                    format!("node {} does not answer", node.name),
                )
                .subject(&node.name)
                .evidence(why.clone())
                .action("is the node running and its URL right? its clients cannot connect either"),
            ),
            NodeReach::NoMonitor => {}
            NodeReach::Stats(stats) => {
                let state = stats.backplane_state.as_str();
                if matches!(state, "connected" | "memory") || stats.backplane_kind == "memory" {
                    continue;
                }
                let severity = if state == "connecting" {
                    Severity::Warning
                } else {
                    Severity::Critical
                };
                let mut finding = Finding::new(
                    "backplane-down",
                    severity,
                    format!(
                        "node {}'s backplane link is {state}: its clients miss messages from other servers, and theirs are not forwarded",
                        node.name
                    ),
                )
                .hub(&stats.hub)
                .subject(&node.name)
                .evidence(format!("server {}", stats.server_name))
                .action("look at the node's Redis URL, credentials and network; it reconnects by itself");
                if let Some(error) = &stats.backplane_error {
                    finding = finding.evidence(format!("last error: {error}"));
                }
                out.push(finding);
            }
        }
    }
}

/// Windows where the observer was blind.
fn tap_gaps(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    if inputs.tap_gaps.is_empty() {
        return;
    }
    let total_ms: u64 = inputs
        .tap_gaps
        .iter()
        .map(|g| g.to_ms.saturating_sub(g.from_ms))
        .sum();
    let longest = inputs
        .tap_gaps
        .iter()
        .map(|g| g.to_ms.saturating_sub(g.from_ms))
        .max()
        .unwrap_or(0);
    out.push(
        Finding::new(
            "tap-gap",
            Severity::Warning,
            format!(
                "the tap was down {} time(s), {:.1} s in all: traffic in those windows was not seen",
                inputs.tap_gaps.len(),
                total_ms as f64 / 1000.0
            ),
        )
        .evidence(format!("longest {:.1} s", longest as f64 / 1000.0))
        .action("findings about missing messages in those windows are uncertain; look at this machine's link to Redis"),
    );
}

/// A node with clients that received nothing while the backplane carried traffic for its hub.
fn silent_nodes(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    for node in &inputs.nodes {
        let NodeReach::Stats(stats) = &node.reach else {
            continue;
        };
        let Some(traffic) = inputs
            .hubs
            .iter()
            .find(|h| h.hub == stats.hub)
            .and_then(|h| h.traffic)
        else {
            continue;
        };
        if traffic == 0 || stats.connections == 0 || stats.client_out_delta != Some(0) {
            continue;
        }
        out.push(
            Finding::new(
                "silent-node",
                Severity::Warning,
                format!(
                    "node {}'s {} client(s) received nothing while the backplane carried {traffic} message(s) for its hub",
                    node.name, stats.connections
                ),
            )
            .hub(&stats.hub)
            .subject(&node.name)
            .evidence(format!(
                "client messages out +0, backplane in +{}",
                opt(stats.backplane_in_delta)
            ))
            .action("the node may be deaf (see deaf-server) or its clients may all be in groups nobody sends to"),
        );
    }
}

/// Test messages that did not arrive.
fn canary(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    if inputs.deliveries.is_empty() {
        return;
    }
    let failed: Vec<&Delivery> = inputs
        .deliveries
        .iter()
        .filter(|d| d.received_after_ms.is_none())
        .collect();
    for d in &failed {
        out.push(
            Finding::new(
                "canary",
                Severity::Critical,
                format!(
                    "a test message sent through {} did not reach a client of {}",
                    d.from, d.to
                ),
            )
            .subject(&d.to)
            .action("look at the other findings for these two nodes (backplane link, deaf server, prefix)"),
        );
    }
    let slowest = inputs.deliveries.iter().filter_map(|d| d.received_after_ms).max();
    if failed.is_empty() {
        out.push(
            Finding::new(
                "canary",
                Severity::Info,
                format!(
                    "{} test deliveries between nodes arrived",
                    inputs.deliveries.len()
                ),
            )
            .evidence(format!("slowest {} ms", opt(slowest))),
        );
    }
}

/// SignalR 2: gaps with the exact missed count, regressions, and the counter's total.
fn sr2(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    let Some(sr2) = &inputs.sr2 else { return };
    let key = &sr2.event_key;
    if !sr2.ids.gaps.is_empty() {
        let spans: Vec<String> = sr2
            .ids
            .gaps
            .iter()
            .take(5)
            .map(|(a, b)| format!("{a}→{b}: {} missed", b - a - 1))
            .collect();
        out.push(
            Finding::new(
                "sr2-gap",
                Severity::Warning,
                format!(
                    "the tap missed {} SignalR 2 message(s) on {key:?} in {} gap(s)",
                    sr2.ids.missed(),
                    sr2.ids.gaps.len()
                ),
            )
            .evidence(spans.join(", "))
            .action(
                "ids are gap-free on the wire: the observer lost them (see tap-gap), the servers did not",
            ),
        );
    }
    for (before, after) in &sr2.ids.regressions {
        out.push(
            Finding::new(
                "sr2-regression",
                Severity::Critical,
                format!("SignalR 2 message id went back from {before} to {after} on {key:?}: the counter key was reset"),
            )
            .evidence("a Redis restart without persistence, or the key deleted or expired".to_string())
            .action("SignalR 2 servers skip ids they think they have seen (SignalR#3091): restart them, and persist the key"),
        );
    }
    if let Some(counter) = sr2.counter {
        let mut finding = Finding::new(
            "sr2-total",
            Severity::Info,
            format!("{counter} message(s) published on {key:?} since its counter began (GET {key})"),
        )
        .evidence(format!("{} seen by the tap", sr2.ids.seen));
        if let Some(last) = sr2.ids.last
            && counter < last
        {
            finding = Finding::new(
                "sr2-regression",
                Severity::Critical,
                format!("GET {key} = {counter} is below the last id seen, {last}: the counter key was reset"),
            )
            .action("SignalR 2 servers skip ids they think they have seen (SignalR#3091): restart them, and persist the key");
        }
        out.push(finding);
    }
}

/// Most ring entries one evaluation reads (the newest): reading an entry costs a couple of cache
/// misses, ~0.2 µs, so a full 100,000-entry minute took ~23 ms of the UI thread every 2 s
/// (benches/health_refresh); 20,000 keeps it near 5 ms. Above ~330 msg/s the window is then
/// shorter than [`MODEL_WINDOW_MS`].
pub const MAX_SCAN_ENTRIES: usize = 20_000;

/// Most distinct channel names taken from the traffic ring for the channel rules.
const MAX_MODEL_CHANNELS: usize = 10_000;

/// The id of a SignalR 2.1+ payload: ASCII digits up to the first space (SIGNALR-WIRE.md C.2);
/// `None` for the 2.0.x layout or anything else.
fn sr2_ascii_id(payload: &[u8]) -> Option<u64> {
    let end = payload.iter().position(|&b| b == b' ')?;
    std::str::from_utf8(&payload[..end]).ok()?.parse().ok()
}

/// The dashboard's inputs, from what its model holds: the census and the health round
/// ([`hubs_from_redis`], which `switchboard check` calls on its own round too), the Redis view
/// ([`client_list_from_snapshot`], likewise), the node table (stats, links, announcements), and
/// the traffic ring over the last `window_ms` (channels seen, per-hub traffic, tap gaps, SignalR
/// 2 ids).
pub fn inputs_from_model(model: &super::Model, prefix: &str, window_ms: u64, now_ms: u64) -> HealthInputs {
    let since = now_ms.saturating_sub(window_ms);
    let mut inputs = HealthInputs {
        now_ms,
        prefix: prefix.to_string(),
        ..HealthInputs::default()
    };
    // The tap's own link: while it is down, nothing the Redis rules say is current.
    if let super::LinkState::Reconnecting { error, .. } | super::LinkState::Failed { error } =
        &model.tap.state
    {
        inputs.redis_error = Some(format!("the dashboard's tap: {error}"));
    }
    // The health round's NUMSUB figures, when the round is current.
    let round = model
        .health_round
        .as_ref()
        .filter(|r| r.problem.is_none() && now_ms.saturating_sub(r.at_ms) <= ROUND_FRESH_MS);
    let mut hubs = hubs_from_redis(
        model.census.as_ref().map(|(_, c)| c.as_slice()),
        round.map(|r| r.hubs.as_slice()),
    );
    // Borrowed while the ring is read: one allocation per distinct channel, not per entry.
    // Hashed, not ordered, during the pass (sorted once at the end): this loop is the cost of an
    // evaluation (benches/health_refresh).
    let mut channels: std::collections::HashSet<&str> = std::collections::HashSet::new();
    // Per-hub traffic counted under borrowed names too, folded into `hubs` after the pass. The
    // silent-node rule holds it against the nodes' client messages out, which the node rates
    // know over their own window only (DEFAULT_NODE_RATE_WINDOW, counters sampled every 500 ms):
    // so traffic is counted over that window, less a margin at each end for the sampling, and
    // never a message the nodes' counters cannot have seen yet (or have already forgotten).
    let rate_window_ms = crate::config::DEFAULT_NODE_RATE_WINDOW.as_millis() as u64;
    let traffic_from = now_ms.saturating_sub(rate_window_ms.saturating_sub(TRAFFIC_MARGIN_MS));
    let traffic_to = now_ms.saturating_sub(TRAFFIC_MARGIN_MS);
    let mut traffic: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut sr2: Option<Sr2Observation> = None;
    // Newest first, stopping at the window's start (entries arrive in time order), so the cost is
    // the window's traffic, not the whole ring's; then oldest first, as the SignalR 2 ids need.
    let recent: Vec<&super::TrafficEntry> = model
        .traffic
        .iter()
        .rev()
        .take_while(|e| e.at_ms >= since || e.gap.is_some_and(|(_, to)| to >= since))
        .take(MAX_SCAN_ENTRIES)
        .collect();
    for e in recent.into_iter().rev() {
        if e.kind == super::EntryKind::Gap {
            if let Some((from_ms, to_ms)) = e.gap
                && to_ms >= since
            {
                inputs.tap_gaps.push(TapGap { from_ms, to_ms });
            }
            continue;
        }
        if e.at_ms < since {
            continue;
        }
        if channels.len() < MAX_MODEL_CHANNELS {
            channels.insert(e.channel.as_str());
        }
        if e.kind == super::EntryKind::Sr2 {
            if let Some(id) = sr2_ascii_id(&e.payload) {
                let obs = sr2.get_or_insert_with(|| Sr2Observation {
                    event_key: e.channel.clone(),
                    ..Sr2Observation::default()
                });
                if obs.event_key == e.channel {
                    obs.ids.observe(id);
                }
            }
        } else if let Some(hub) = &e.hub
            && (traffic_from..=traffic_to).contains(&e.at_ms)
            && e.channel.starts_with(prefix)
            && !naming::is_nodes_channel(prefix, &e.channel)
        {
            *traffic.entry(hub.as_str()).or_default() += 1;
        }
    }
    let mut expected = BTreeSet::new();
    for row in model.nodes.rows() {
        let reach = match (&row.state, &row.stats) {
            (super::LinkState::Connected, Some(stats)) => {
                // The rates' own window: what the counters moved by, as `check` measures it.
                let window_s = rate_window_ms as f64 / 1000.0;
                NodeReach::Stats(NodeSnapshot {
                    server_name: stats.server_name.clone(),
                    hub: stats.hub.clone(),
                    backplane_kind: stats.backplane.kind.clone(),
                    backplane_state: stats.backplane.status.state.clone(),
                    backplane_error: stats.backplane.status.last_error.clone(),
                    connections: stats.connections.total,
                    client_out_delta: Some((row.rates.client_out * window_s).round() as u64),
                    backplane_in_delta: Some((row.rates.backplane_in * window_s).round() as u64),
                })
            }
            (super::LinkState::Connected, None) => NodeReach::NoMonitor,
            (super::LinkState::Reconnecting { error, .. } | super::LinkState::Failed { error }, _) => {
                NodeReach::Unreachable(error.clone())
            }
            // Not watched, or the first attempt is under way: nothing to say yet.
            (super::LinkState::Idle | super::LinkState::Connecting, _) => continue,
        };
        if let Some(stats) = &row.stats {
            if !stats.hub.is_empty() {
                expected.insert(stats.hub.clone());
            }
            if let Some(ts_ms) = row.heartbeat_at_ms {
                inputs.heartbeats.push(Heartbeat {
                    server_name: stats.server_name.clone(),
                    node_name: row.name.clone(),
                    hub: stats.hub.clone(),
                    ts_ms,
                });
            }
        }
        inputs.nodes.push(NodeObservation {
            name: row.name.clone(),
            reach,
        });
    }
    for (hub, n) in traffic {
        *hubs.entry(hub.to_string()).or_default().traffic.get_or_insert(0) += n;
    }
    for (name, hub) in hubs.iter_mut() {
        hub.hub = name.clone();
        if hub.traffic.is_none() {
            hub.traffic = Some(0);
        }
    }
    if let Some(round) = round
        && let Some(obs) = sr2.as_mut()
        && let Some((_, Ok(counter))) = round.sr2_counters.iter().find(|(k, _)| *k == obs.event_key)
    {
        obs.counter = *counter;
    }
    inputs.client_list = client_list_from_view(&model.redis, now_ms);
    inputs.hubs = hubs.into_values().collect();
    inputs.expected_hubs = expected.into_iter().collect();
    let mut channels: Vec<String> = channels.into_iter().map(str::to_string).collect();
    channels.sort();
    inputs.channels = channels;
    inputs.sr2 = sr2;
    inputs
}

/// The Redis side of the hubs, one way for the dashboard and `switchboard check`: the census walk
/// (ack and return servers per hub) and the health round's `NUMSUB` of `:all` and
/// `:internal:groups` (`None`: no current round). The round's ack servers were counted in the
/// same round as `:all`, so they replace the walk's (a server gone since the walk is not taken
/// for a deaf one). Traffic is left to the caller.
pub fn hubs_from_redis(
    census: Option<&[super::super::HubCensus]>,
    round: Option<&[super::super::HubSubscribers]>,
) -> BTreeMap<String, HubObservation> {
    let mut hubs: BTreeMap<String, HubObservation> = BTreeMap::new();
    for h in census.unwrap_or_default() {
        let entry = hubs.entry(h.hub.clone()).or_default();
        entry.hub = h.hub.clone();
        entry.ack_servers = h.servers.clone();
        entry.return_servers = h.return_servers.clone();
    }
    for h in round.unwrap_or_default() {
        let entry = hubs.entry(h.hub.clone()).or_default();
        entry.hub = h.hub.clone();
        entry.numsub_all = Some(h.all);
        entry.numsub_groups = Some(h.groups);
        entry.ack_servers = h.ack_servers.clone();
    }
    hubs
}

/// The margin, at each end of the node rates' window, within which a message seen on the tap is
/// not held against the nodes' counters (sampled every 500 ms, on the node's clock).
const TRAFFIC_MARGIN_MS: u64 = 1_000;

/// A health round older than this is not used (three census rounds missed): its NUMSUB figures
/// would be held against a newer census.
pub const ROUND_FRESH_MS: u64 = 6_000;

/// How far back the dashboard's evaluation reads the traffic ring.
pub const MODEL_WINDOW_MS: u64 = 60_000;

/// An evaluation older than this looks stale (three refreshes missed: the window drew no frame,
/// or the model stopped moving).
pub const EVALUATION_STALE_MS: u64 = 3 * 2_000;

/// A Redis view round older than this is not used for the output-buffer rule: the poller spaces
/// its rounds 5 s and more apart (by their cost), so three rounds missed.
pub const VIEW_FRESH_MS: u64 = 3 * 120_000;

/// "skipped: CLIENT LIST (ACL: grant +client|list)" from the poller's words for a refusal.
fn skipped_words(what: &str, error: &str) -> String {
    if error.contains("lacks permission")
        && let Some(grant) = error.rsplit_once('(').and_then(|(_, g)| g.strip_suffix(')'))
    {
        return format!("skipped: {what} (ACL: {grant})");
    }
    format!("skipped: {what} ({error})")
}

/// The output-buffer rule's input from the Redis view's latest round (the poller already asks
/// `CLIENT LIST TYPE pubsub` and the limit on every server: not asked twice). `None` before any
/// round (the in-memory bus has none).
fn client_list_from_view(
    view: &super::redis_view::RedisView,
    now_ms: u64,
) -> Option<Result<ClientListInput, String>> {
    let snapshot = view.latest()?;
    let age = now_ms.saturating_sub(snapshot.at_ms);
    if age > VIEW_FRESH_MS {
        return Some(Err(format!(
            "skipped: CLIENT LIST (the Redis view's last round is {} s old)",
            age / 1000
        )));
    }
    Some(client_list_from_snapshot(snapshot))
}

/// The output-buffer rule's input from one Redis view round (the dashboard's latest, or the one
/// `switchboard check` asks): every server's pub/sub clients and the first known limit, or why
/// it is skipped.
pub fn client_list_from_snapshot(
    snapshot: &super::redis_view::RedisSnapshot,
) -> Result<ClientListInput, String> {
    use super::redis_view::LimitKnowledge;
    if let Some(error) = &snapshot.error {
        return Err(skipped_words("CLIENT LIST", error));
    }
    let mut input = ClientListInput::default();
    let mut limit_refused = None;
    for node in &snapshot.nodes {
        if let Some(error) = &node.error {
            return Err(skipped_words("CLIENT LIST", error));
        }
        input.clients.extend(node.clients.iter().map(|c| PubSubClient {
            id: c.id,
            name: c.name.clone(),
            addr: c.addr.clone(),
            omem: c.omem,
            sub: c.channels,
            psub: c.patterns,
        }));
        match &node.limit {
            LimitKnowledge::Known(l) if input.limit.is_none() => {
                input.limit = Some(BufferLimit {
                    hard: l.hard,
                    soft: l.soft,
                    soft_seconds: l.soft_secs,
                });
            }
            LimitKnowledge::Unknown(why) => limit_refused = Some(why.clone()),
            _ => {}
        }
    }
    if input.limit.is_none()
        && let Some(why) = limit_refused
    {
        return Err(skipped_words("CONFIG GET client-output-buffer-limit", &why));
    }
    Ok(input)
}

/// One evaluation as the dashboard shows it: the findings (worst first), the verdict, when, what
/// it could not check and why, and how old its Redis figures were.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub at_ms: u64,
    pub findings: Vec<Finding>,
    pub verdict: Verdict,
    /// Checks that could not run, in words ("skipped: CLIENT LIST (ACL: grant +client|list)").
    pub skipped: Vec<String>,
    /// When the NUMSUB/GET figures used were taken (`None`: none were).
    pub redis_at_ms: Option<u64>,
    /// Why the latest health round failed, when it did (Redis down, a refused command).
    pub redis_problem: Option<String>,
}

impl Evaluation {
    /// Evaluates `inputs`; `round` is the health round they were built with (for what it skipped).
    pub fn of(inputs: &HealthInputs, round: Option<&super::super::HealthRound>) -> Evaluation {
        let findings = evaluate(inputs);
        let mut skipped = Vec::new();
        let numsub_known = inputs.hubs.iter().any(|h| h.numsub_all.is_some());
        match round {
            None => skipped.push(
                "skipped: NUMSUB of :all and :internal:groups (no census round yet): deaf servers are not looked for"
                    .to_string(),
            ),
            Some(r) => {
                if let Some(problem) = &r.problem {
                    skipped.push(skipped_words("NUMSUB of :all and :internal:groups", problem));
                } else if !numsub_known && !inputs.hubs.is_empty() {
                    skipped.push(format!(
                        "skipped: NUMSUB of :all and :internal:groups (the last round is {} s old)",
                        inputs.now_ms.saturating_sub(r.at_ms) / 1000
                    ));
                }
                for (key, value) in &r.sr2_counters {
                    if let Err(e) = value {
                        skipped.push(skipped_words(&format!("GET {key}"), e));
                    }
                }
            }
        }
        match &inputs.client_list {
            None => skipped.push(
                "skipped: CLIENT LIST (no Redis view round yet, or an in-memory bus): output buffers not checked"
                    .to_string(),
            ),
            Some(Err(why)) => skipped.push(why.clone()),
            Some(Ok(_)) => {}
        }
        if inputs.redis_error.is_some() {
            skipped.push("skipped: every Redis check (Redis not reached)".to_string());
        }
        Evaluation {
            at_ms: inputs.now_ms,
            verdict: Verdict::of(&findings),
            findings,
            skipped,
            redis_at_ms: round.filter(|r| r.problem.is_none()).map(|r| r.at_ms),
            redis_problem: round.and_then(|r| r.problem.clone()),
        }
    }

    /// Why the evaluation shown is not current, in words; empty when it is.
    pub fn stale_reasons(&self, now_ms: u64) -> Vec<String> {
        let mut out = Vec::new();
        let age = now_ms.saturating_sub(self.at_ms);
        if age > EVALUATION_STALE_MS {
            out.push(format!("evaluated {} s ago", age / 1000));
        }
        match (self.redis_at_ms, &self.redis_problem) {
            (_, Some(problem)) => out.push(format!("the last Redis round failed: {problem}")),
            (Some(at), None) if self.at_ms.saturating_sub(at) > ROUND_FRESH_MS => out.push(format!(
                "its Redis figures were {} s old",
                self.at_ms.saturating_sub(at) / 1000
            )),
            (None, None) => out.push("no Redis figures (NUMSUB) yet".to_string()),
            _ => {}
        }
        out
    }

    /// Findings about a node known by any of `names` (its name, hub URL, server name), worst first.
    pub fn concerning<'a>(&'a self, names: &[&str]) -> Vec<&'a Finding> {
        self.findings
            .iter()
            .filter(|f| f.subject.as_deref().is_some_and(|s| names.contains(&s)))
            .collect()
    }

    /// The worst severity among findings about a node, when any is worse than info.
    pub fn worst_for(&self, names: &[&str]) -> Option<Severity> {
        self.concerning(names)
            .iter()
            .map(|f| f.severity)
            .filter(|s| *s > Severity::Info)
            .max()
    }

    /// Findings that concern no watched node (Redis itself, a deaf server nobody watches, a
    /// foreign prefix), worse than info: the topology marks the Redis box with them.
    pub fn backplane_findings<'a>(&'a self, node_names: &[&str]) -> Vec<&'a Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity > Severity::Info)
            .filter(|f| f.subject.as_deref().is_none_or(|s| !node_names.contains(&s)))
            .collect()
    }

    /// (critical, warning) counts.
    pub fn counts(&self) -> (usize, usize) {
        let n = |s: Severity| self.findings.iter().filter(|f| f.severity == s).count();
        (n(Severity::Critical), n(Severity::Warning))
    }
}

/// The dashboard's health: the refresh gate and the latest evaluation.
#[derive(Debug, Clone, Default)]
pub struct HealthState {
    pub gate: RefreshGate,
    pub latest: Option<Evaluation>,
}

/// Lets a refresh through at most once per interval (time passed in, unix ms).
#[derive(Debug, Clone)]
pub struct RefreshGate {
    interval_ms: u64,
    last_ms: Option<u64>,
}

impl Default for RefreshGate {
    fn default() -> Self {
        Self::new(MIN_REFRESH)
    }
}

impl RefreshGate {
    pub fn new(interval: std::time::Duration) -> Self {
        RefreshGate {
            interval_ms: interval.as_millis() as u64,
            last_ms: None,
        }
    }

    /// Whether to refresh now; if so, the interval restarts from `now_ms`. A clock that went back
    /// lets the refresh through rather than freezing it.
    pub fn ready(&mut self, now_ms: u64) -> bool {
        let due = match self.last_ms {
            None => true,
            Some(last) => now_ms < last || now_ms - last >= self.interval_ms,
        };
        if due {
            self.last_ms = Some(now_ms);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;
    const HUB: &str = "ChatHub";

    fn hub(servers: &[&str], all: u64, groups: u64) -> HubObservation {
        HubObservation {
            hub: HUB.into(),
            ack_servers: servers.iter().map(|s| s.to_string()).collect(),
            return_servers: servers.iter().map(|s| s.to_string()).collect(),
            numsub_all: Some(all),
            numsub_groups: Some(groups),
            traffic: None,
        }
    }

    fn beat(server: &str, age_ms: u64) -> Heartbeat {
        Heartbeat {
            server_name: server.into(),
            node_name: server.into(),
            hub: HUB.into(),
            ts_ms: NOW - age_ms,
        }
    }

    fn inputs() -> HealthInputs {
        HealthInputs {
            now_ms: NOW,
            prefix: "p:".into(),
            ..HealthInputs::default()
        }
    }

    fn rules(findings: &[Finding]) -> Vec<(&'static str, Severity)> {
        findings.iter().map(|f| (f.rule, f.severity)).collect()
    }

    fn stats(state: &str) -> NodeSnapshot {
        NodeSnapshot {
            server_name: "a_1".into(),
            hub: HUB.into(),
            backplane_kind: "redis".into(),
            backplane_state: state.into(),
            connections: 3,
            ..NodeSnapshot::default()
        }
    }

    #[test]
    fn a_healthy_pair_is_healthy_and_counts_its_servers() {
        let mut i = inputs();
        i.hubs = vec![hub(&["a_1", "b_2"], 2, 2)];
        i.heartbeats = vec![beat("a_1", 1000), beat("b_2", 1500)];
        let f = evaluate(&i);
        assert_eq!(rules(&f), vec![("servers", Severity::Info)]);
        assert!(
            f[0].evidence[0].contains("ack channels 2, return channels 2, heartbeats 2, NUMSUB :all 2"),
            "{:?}",
            f[0]
        );
        assert_eq!(Verdict::of(&f), Verdict::Healthy);
        assert_eq!(Verdict::of(&f).exit_code(), 0);
    }

    #[test]
    fn a_heartbeat_without_an_ack_channel_is_a_warning_and_stale_beats_do_not_count() {
        let mut i = inputs();
        i.hubs = vec![hub(&["a_1"], 1, 1)];
        i.heartbeats = vec![
            beat("a_1", 0),
            beat("b_2", 500),
            beat("c_3", HEARTBEAT_FRESH_MS + 1),
        ];
        let f = evaluate(&i);
        let warned: Vec<_> = f.iter().filter(|f| f.severity == Severity::Warning).collect();
        assert_eq!(warned.len(), 1);
        assert_eq!(warned[0].subject.as_deref(), Some("b_2"));
        assert!(warned[0].evidence[0].contains("p:ChatHub:internal:ack:b_2"));
    }

    #[test]
    fn fewer_group_listeners_than_servers_is_a_warning() {
        let mut i = inputs();
        i.hubs = vec![hub(&["a_1", "b_2"], 2, 1)];
        let f = evaluate(&i);
        assert_eq!(rules(&f)[0], ("servers", Severity::Warning));
        assert!(
            f[0].summary
                .starts_with("1 server(s) do not listen on :internal:groups")
        );
    }

    #[test]
    fn a_deaf_server_is_named_when_it_is_the_only_one_without_a_heartbeat() {
        let mut i = inputs();
        i.hubs = vec![hub(&["a_1", "b_2", "fake_9"], 2, 3)];
        i.heartbeats = vec![beat("a_1", 100), beat("b_2", 100)];
        let f = evaluate(&i);
        let deaf: Vec<_> = f.iter().filter(|f| f.rule == "deaf-server").collect();
        assert_eq!(deaf.len(), 1);
        assert_eq!(deaf[0].severity, Severity::Warning);
        assert_eq!(deaf[0].subject.as_deref(), Some("fake_9"));
        assert!(deaf[0].summary.starts_with("1 server(s)"));
        assert!(deaf[0].evidence[0].contains("NUMSUB p:ChatHub:all = 2, ack channels = 3"));
        assert_eq!(Verdict::of(&f).exit_code(), 1);
    }

    #[test]
    fn no_deaf_finding_when_all_counts_every_server_or_numsub_is_unknown() {
        let mut i = inputs();
        i.hubs = vec![hub(&["a_1", "b_2"], 3, 2)];
        assert!(evaluate(&i).iter().all(|f| f.rule != "deaf-server"));
        i.hubs[0].numsub_all = None;
        assert!(evaluate(&i).iter().all(|f| f.rule != "deaf-server"));
    }

    #[test]
    fn output_buffers_warn_at_half_and_are_critical_at_four_fifths_of_the_limit() {
        let limit = BufferLimit::parse_pubsub("normal 0 0 0 replica 256mb 64mb 60 pubsub 32mb 8mb 60");
        assert_eq!(
            limit,
            Some(BufferLimit {
                hard: 32 << 20,
                soft: 8 << 20,
                soft_seconds: 60
            })
        );
        let rows = parse_client_list(
            "id=5 addr=127.0.0.1:1 name=ok sub=4 psub=0 omem=0\n\
             id=6 addr=127.0.0.1:2 name=slow sub=1 psub=0 omem=4194304\n\
             id=7 addr=127.0.0.1:3 name= sub=1 psub=0 omem=7340032\n",
        );
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].omem, 4 << 20);
        let mut i = inputs();
        i.client_list = Some(Ok(ClientListInput { clients: rows, limit }));
        let f = evaluate(&i);
        // The soft limit (8 MiB) is the nearer bound: 7 MiB = 87.5 % critical, 4 MiB = 50 % warning.
        assert_eq!(
            rules(&f),
            vec![
                ("output-buffer", Severity::Critical),
                ("output-buffer", Severity::Warning)
            ]
        );
        assert!(
            f[0].summary.contains("client 7 (127.0.0.1:3)"),
            "{}",
            f[0].summary
        );
        assert!(f[1].summary.contains("slow"));
        assert!(
            f[1].evidence[0].contains("omem 4.0 MiB of 8.0 MiB"),
            "{:?}",
            f[1].evidence
        );
    }

    #[test]
    fn output_buffers_without_limit_or_permission_say_so() {
        let mut i = inputs();
        i.client_list = Some(Err("CLIENT LIST refused: NOPERM".into()));
        let f = evaluate(&i);
        assert_eq!(rules(&f), vec![("output-buffer", Severity::Info)]);
        assert!(f[0].evidence[0].contains("NOPERM"));
        i.client_list = Some(Ok(ClientListInput {
            clients: vec![],
            limit: None,
        }));
        assert!(evaluate(&i)[0].summary.contains("limit is unknown"));
        i.client_list = Some(Ok(ClientListInput {
            clients: parse_client_list("id=1 omem=999999999"),
            limit: Some(BufferLimit::default()),
        }));
        assert!(
            evaluate(&i).is_empty(),
            "no limit configured: nothing to hold against"
        );
        assert_eq!(parse_bytes("1gb"), Some(1 << 30));
        assert_eq!(parse_bytes("64k"), Some(64_000));
        assert_eq!(parse_bytes("x"), None);
    }

    #[test]
    fn channels_under_another_prefix_or_an_unknown_hub_are_reported_once_each() {
        let mut i = inputs();
        i.expected_hubs = vec![HUB.into()];
        i.channels = vec![
            "p:ChatHub:all".into(),
            "p:switchboard:nodes".into(),
            "q:ChatHub:all".into(),
            "q:ChatHub:internal:ack:x_1".into(),
            "p:OtherHub:group:g".into(),
            "session:1234".into(),
        ];
        let f = evaluate(&i);
        assert_eq!(
            rules(&f),
            vec![
                ("foreign-channel", Severity::Warning),
                ("foreign-channel", Severity::Warning)
            ]
        );
        assert!(f[0].summary.contains("\"q:ChatHub\""), "{}", f[0].summary);
        assert!(f[0].evidence[0].starts_with("1 channel(s)") || f[0].evidence[0].starts_with("2 channel(s)"));
        assert_eq!(f[1].hub.as_deref(), Some("OtherHub"));
    }

    #[test]
    fn group_names_with_glob_characters_are_warnings() {
        let mut i = inputs();
        i.channels = vec![
            "p:ChatHub:group:room-1".into(),
            "p:ChatHub:group:room*".into(),
            "p:ChatHub:group:a?b".into(),
            "p:ChatHub:group:[x]".into(),
            "p:ChatHub:group:room*".into(),
        ];
        let f = evaluate(&i);
        let subjects: Vec<_> = f.iter().filter_map(|f| f.subject.as_deref()).collect();
        assert_eq!(subjects, vec!["room*", "a?b", "[x]"]);
        assert!(
            f.iter()
                .all(|f| f.rule == "pattern-group" && f.severity == Severity::Warning)
        );
    }

    #[test]
    fn an_unreachable_node_or_a_reconnecting_link_is_critical_connecting_a_warning() {
        let mut i = inputs();
        let mut down = stats("reconnecting");
        down.backplane_error = Some("connection refused".into());
        i.nodes = vec![
            NodeObservation {
                name: "a".into(),
                reach: NodeReach::Stats(stats("connected")),
            },
            NodeObservation {
                name: "b".into(),
                reach: NodeReach::Unreachable("connection refused".into()),
            },
            NodeObservation {
                name: "c".into(),
                reach: NodeReach::Stats(down),
            },
            NodeObservation {
                name: "d".into(),
                reach: NodeReach::Stats(stats("connecting")),
            },
            NodeObservation {
                name: "e".into(),
                reach: NodeReach::NoMonitor,
            },
        ];
        let f = evaluate(&i);
        assert_eq!(
            rules(&f),
            vec![
                ("node-unreachable", Severity::Critical),
                ("backplane-down", Severity::Critical),
                ("backplane-down", Severity::Warning)
            ]
        );
        assert_eq!(f[1].subject.as_deref(), Some("c"));
        assert!(
            f[1].evidence
                .iter()
                .any(|e| e == "last error: connection refused")
        );
        assert_eq!(Verdict::of(&f).exit_code(), 2);
    }

    #[test]
    fn tap_gaps_are_summed() {
        let mut i = inputs();
        i.tap_gaps = vec![
            TapGap {
                from_ms: 0,
                to_ms: 1500,
            },
            TapGap {
                from_ms: 10_000,
                to_ms: 14_000,
            },
        ];
        let f = evaluate(&i);
        assert_eq!(rules(&f), vec![("tap-gap", Severity::Warning)]);
        assert!(f[0].summary.contains("2 time(s), 5.5 s"), "{}", f[0].summary);
        assert_eq!(f[0].evidence, vec!["longest 4.0 s".to_string()]);
    }

    #[test]
    fn a_node_whose_clients_get_nothing_while_its_hub_has_traffic_is_silent() {
        let mut i = inputs();
        let mut h = hub(&["a_1"], 1, 1);
        h.traffic = Some(40);
        i.hubs = vec![h];
        let mut quiet = stats("connected");
        quiet.client_out_delta = Some(0);
        quiet.backplane_in_delta = Some(0);
        let mut busy = stats("connected");
        busy.client_out_delta = Some(120);
        let mut empty = stats("connected");
        empty.client_out_delta = Some(0);
        empty.connections = 0;
        i.nodes = vec![
            NodeObservation {
                name: "quiet".into(),
                reach: NodeReach::Stats(quiet),
            },
            NodeObservation {
                name: "busy".into(),
                reach: NodeReach::Stats(busy),
            },
            NodeObservation {
                name: "empty".into(),
                reach: NodeReach::Stats(empty),
            },
        ];
        let silent: Vec<_> = evaluate(&i)
            .into_iter()
            .filter(|f| f.rule == "silent-node")
            .collect();
        assert_eq!(silent.len(), 1);
        assert_eq!(silent[0].subject.as_deref(), Some("quiet"));
        assert!(
            silent[0]
                .summary
                .contains("3 client(s) received nothing while the backplane carried 40")
        );
        // No traffic for the hub: nothing to expect.
        i.hubs[0].traffic = Some(0);
        assert!(evaluate(&i).iter().all(|f| f.rule != "silent-node"));
    }

    #[test]
    fn a_lost_canary_is_critical_and_a_full_set_is_info_with_the_slowest() {
        let mut i = inputs();
        i.deliveries = vec![
            Delivery {
                from: "a".into(),
                to: "b".into(),
                received_after_ms: Some(12),
            },
            Delivery {
                from: "b".into(),
                to: "a".into(),
                received_after_ms: Some(30),
            },
        ];
        let f = evaluate(&i);
        assert_eq!(rules(&f), vec![("canary", Severity::Info)]);
        assert_eq!(f[0].evidence, vec!["slowest 30 ms".to_string()]);
        i.deliveries[1].received_after_ms = None;
        let f = evaluate(&i);
        assert_eq!(rules(&f), vec![("canary", Severity::Critical)]);
        assert_eq!(
            f[0].summary,
            "a test message sent through b did not reach a client of a"
        );
    }

    #[test]
    fn sr2_ids_give_the_exact_missed_count_and_regressions() {
        let mut ids = Sr2Ids::default();
        for id in [10, 11, 12, 15, 16, 20, 3, 4] {
            ids.observe(id);
        }
        assert_eq!(ids.gaps, vec![(12, 15), (16, 20)]);
        assert_eq!(ids.missed(), 2 + 3);
        assert_eq!(ids.regressions, vec![(20, 3)]);
        assert_eq!(ids.seen, 8);
        let mut i = inputs();
        i.sr2 = Some(Sr2Observation {
            event_key: "App".into(),
            ids,
            counter: Some(4),
        });
        let f = evaluate(&i);
        assert_eq!(
            rules(&f),
            vec![
                ("sr2-regression", Severity::Critical),
                ("sr2-gap", Severity::Warning),
                ("sr2-total", Severity::Info)
            ]
        );
        assert!(f[0].summary.contains("from 20 to 3"));
        assert!(f[1].summary.contains("missed 5 SignalR 2 message(s)"));
        assert_eq!(
            f[1].evidence,
            vec!["12→15: 2 missed, 16→20: 3 missed".to_string()]
        );
        assert!(f[2].summary.starts_with("4 message(s) published on \"App\""));
    }

    #[test]
    fn a_counter_below_the_last_id_seen_is_a_regression() {
        let mut ids = Sr2Ids::default();
        ids.observe(500);
        let mut i = inputs();
        i.sr2 = Some(Sr2Observation {
            event_key: "App".into(),
            ids,
            counter: Some(7),
        });
        let f = evaluate(&i);
        assert_eq!(rules(&f), vec![("sr2-regression", Severity::Critical)]);
        assert!(
            f[0].summary
                .contains("GET App = 7 is below the last id seen, 500")
        );
    }

    #[test]
    fn hub_traffic_is_counted_over_the_node_rates_window_only() {
        // The silent-node rule holds hub traffic against the nodes' client messages out, which
        // the rates know over DEFAULT_NODE_RATE_WINDOW (5 s): a message 10 s ago, or one the
        // nodes' counters cannot have sampled yet, is not counted.
        use crate::monitor::model::{EntryKind, Limits, Model, TrafficEntry};
        let mut model = Model::new(Limits::default());
        let entries = [NOW - 10_000, NOW - 2_000, NOW - 200].map(|at| {
            let mut e = TrafficEntry::new(at, "p:ChatHub:all", EntryKind::All, vec![]);
            e.hub = Some(HUB.into());
            e
        });
        model.apply(crate::monitor::MonitorEvent::Traffic(entries.to_vec()), NOW);
        let i = inputs_from_model(&model, "p:", 60_000, NOW);
        assert_eq!(i.hubs[0].traffic, Some(1));
        assert_eq!(
            i.channels,
            vec!["p:ChatHub:all".to_string()],
            "channels: the whole window"
        );
    }

    #[test]
    fn an_unreachable_redis_is_critical() {
        let mut i = inputs();
        i.redis_error = Some("127.0.0.1:1: connection refused".into());
        let f = evaluate(&i);
        assert_eq!(rules(&f), vec![("redis-unreachable", Severity::Critical)]);
        assert_eq!(f[0].evidence, vec!["127.0.0.1:1: connection refused".to_string()]);
    }

    #[test]
    fn the_dashboard_model_fills_the_inputs() {
        use crate::monitor::model::{EntryKind, Limits, Model, TrafficEntry};
        use crate::monitor::{HubCensus, MonitorEvent};
        let mut model = Model::new(Limits::default());
        model.apply(
            MonitorEvent::Census {
                at_ms: NOW,
                hubs: vec![HubCensus {
                    hub: HUB.into(),
                    servers: vec!["a_1".into(), "b_2".into()],
                    ..HubCensus::default()
                }],
            },
            NOW,
        );
        let mut entries = Vec::new();
        for (i, id) in [7u64, 8, 12].iter().enumerate() {
            let mut payload = format!("{id} ").into_bytes();
            payload.extend_from_slice(&[0, 0, 0, 0]);
            entries.push(TrafficEntry::new(
                NOW - 1000 + i as u64,
                "App",
                EntryKind::Sr2,
                payload,
            ));
        }
        let mut group = TrafficEntry::new(NOW - 2_000, "p:ChatHub:group:room*", EntryKind::Group, vec![]);
        group.hub = Some(HUB.into());
        entries.push(group);
        let mut gap = TrafficEntry::new(NOW - 400, "", EntryKind::Gap, vec![]);
        gap.gap = Some((NOW - 3000, NOW - 400));
        entries.push(gap);
        model.apply(MonitorEvent::Traffic(entries), NOW);
        let i = inputs_from_model(&model, "p:", 60_000, NOW);
        assert_eq!(i.hubs.len(), 1);
        assert_eq!(i.hubs[0].ack_servers, vec!["a_1".to_string(), "b_2".to_string()]);
        assert_eq!(i.hubs[0].traffic, Some(1));
        assert_eq!(i.hubs[0].numsub_all, None);
        assert_eq!(
            i.tap_gaps,
            vec![TapGap {
                from_ms: NOW - 3000,
                to_ms: NOW - 400
            }]
        );
        let sr2 = i.sr2.clone().unwrap_or_default();
        assert_eq!((sr2.event_key.as_str(), sr2.ids.missed()), ("App", 3));
        let rules: Vec<_> = evaluate(&i).iter().map(|f| f.rule).collect();
        for rule in ["pattern-group", "tap-gap", "sr2-gap", "servers"] {
            assert!(rules.contains(&rule), "{rule} in {rules:?}");
        }
    }

    #[test]
    fn an_evaluation_names_what_it_skipped_and_looks_stale_when_old_or_failed() {
        use crate::monitor::{HealthRound, HubSubscribers};
        let mut i = inputs();
        i.hubs = vec![hub(&["a_1"], 1, 1)];
        i.client_list = Some(Err(skipped_words(
            "CLIENT LIST",
            "127.0.0.1:6379: the ACL user lacks permission for CLIENT LIST (grant +client|list)",
        )));
        let round = HealthRound {
            at_ms: NOW - 1000,
            hubs: vec![HubSubscribers {
                hub: HUB.into(),
                all: 1,
                groups: 1,
                ack_servers: vec!["a_1".into()],
            }],
            sr2_counters: vec![(
                "App".into(),
                Err("the ACL user may not read these keys (grant key access: ~*)".into()),
            )],
            problem: None,
        };
        let e = Evaluation::of(&i, Some(&round));
        assert_eq!(
            e.skipped,
            vec![
                "skipped: GET App (the ACL user may not read these keys (grant key access: ~*))".to_string(),
                "skipped: CLIENT LIST (ACL: grant +client|list)".to_string(),
            ]
        );
        assert!(e.stale_reasons(NOW + 1000).is_empty());
        assert_eq!(e.stale_reasons(NOW + 7000), vec!["evaluated 7 s ago".to_string()]);
        let failed = HealthRound {
            at_ms: NOW,
            problem: Some("127.0.0.1:6379: connection refused".into()),
            ..HealthRound::default()
        };
        let e = Evaluation::of(&i, Some(&failed));
        assert_eq!(
            e.stale_reasons(NOW),
            vec!["the last Redis round failed: 127.0.0.1:6379: connection refused".to_string()]
        );
        assert!(e.skipped[0].starts_with("skipped: NUMSUB of :all and :internal:groups"));
        assert_eq!(
            Evaluation::of(&i, None).stale_reasons(NOW),
            vec!["no Redis figures (NUMSUB) yet".to_string()]
        );
    }

    #[test]
    fn findings_are_found_by_any_name_of_a_node_and_the_rest_belong_to_the_backplane() {
        let mut i = inputs();
        i.nodes = vec![NodeObservation {
            name: "node-b".into(),
            reach: NodeReach::Unreachable("refused".into()),
        }];
        i.hubs = vec![hub(&["a_1", "deaf_9"], 1, 2)];
        i.heartbeats = vec![beat("a_1", 0)];
        let e = Evaluation::of(&i, None);
        assert_eq!(
            e.worst_for(&["node-b", "http://b/chat"]),
            Some(Severity::Critical)
        );
        assert_eq!(e.worst_for(&["deaf_9"]), Some(Severity::Warning));
        assert_eq!(e.worst_for(&["a_1"]), None);
        let rules: Vec<&str> = e.backplane_findings(&["node-b"]).iter().map(|f| f.rule).collect();
        assert_eq!(rules, vec!["deaf-server"]);
        assert_eq!(e.counts(), (1, 1));
    }

    #[test]
    fn a_tap_that_lost_redis_makes_redis_unreachable_and_the_model_refreshes_at_most_every_2_s() {
        use crate::monitor::model::{Limits, Model};
        use crate::monitor::{LinkState, MonitorEvent};
        let mut model = Model::new(Limits::default());
        assert!(model.refresh_health("p:", NOW));
        assert!(!model.refresh_health("p:", NOW + 1999), "gated");
        model.apply(
            MonitorEvent::Tap {
                state: LinkState::Reconnecting {
                    attempt: 2,
                    retry_at_ms: NOW + 3000,
                    error: "127.0.0.1:6379: connection refused".into(),
                },
                at_ms: NOW,
            },
            NOW,
        );
        assert!(model.refresh_health("p:", NOW + 2000));
        let e = model.health.latest.clone().unwrap_or_else(|| panic!("evaluated"));
        assert_eq!(e.findings[0].rule, "redis-unreachable");
        assert_eq!(
            e.findings[0].evidence,
            vec!["the dashboard's tap: 127.0.0.1:6379: connection refused".to_string()]
        );
        assert_eq!(e.verdict, Verdict::Broken);
    }

    #[test]
    fn the_refresh_gate_lets_one_through_per_interval() {
        let mut gate = RefreshGate::default();
        assert!(gate.ready(10_000));
        assert!(!gate.ready(10_001));
        assert!(!gate.ready(11_999));
        assert!(gate.ready(12_000));
        assert!(!gate.ready(13_000));
        // A clock that went back does not freeze health.
        assert!(gate.ready(5_000));
    }

    #[test]
    fn a_finding_reads_as_one_line_and_serializes_with_lowercase_severity() {
        let f = Finding::new("deaf-server", Severity::Warning, "x".into())
            .hub(HUB)
            .evidence("a".into())
            .evidence("b".into())
            .action("do it");
        assert_eq!(f.line(), "WARNING  deaf-server [ChatHub]: x (a; b) → do it");
        let json = serde_json::to_string(&f).unwrap_or_default();
        assert!(json.contains("\"severity\":\"warning\""), "{json}");
        assert!(!json.contains("subject"), "{json}");
    }
}
