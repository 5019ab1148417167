//! The rules, one function each, run in order by [`evaluate`] on a [`HealthInputs`] (see the
//! module docs of `health` for the list). Pure: no clock, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::backplane::naming::{self, ChannelKind};

/// A heartbeat older than this no longer counts a server as alive (nodes beat every 2 s).
pub const HEARTBEAT_FRESH_MS: u64 = 10_000;

/// A pub/sub client's output buffer at this share of the hard limit is a warning...
pub const BUFFER_WARN_RATIO: f64 = 0.5;
/// ...and at this share critical: Redis closes it at the limit, and its server misses everything.
pub const BUFFER_CRITICAL_RATIO: f64 = 0.8;
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
    super::outage::rule(inputs, &mut out);
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
            NodeReach::Stopped { since_ms } => out.push(
                Finding::new(
                    "stopped",
                    Severity::Info,
                    format!(
                        "node {} was stopped on purpose at {} UTC",
                        node.name,
                        crate::monitor::model::traffic::hms_utc(*since_ms)
                    ),
                )
                .subject(&node.name),
            ),
            NodeReach::NeedsToken { trusted: false } => out.push(
                Finding::new(
                    "needs-token",
                    Severity::Info,
                    format!(
                        "node {} is up and needs a token, which it does not get: it is not trusted",
                        node.name
                    ),
                )
                .subject(&node.name)
                .evidence("its hub answered HTTP 401 to the probe, which sent no token".to_string())
                .action("Trust the node (Nodes view) if it is yours, so the probe can connect"),
            ),
            NodeReach::NeedsToken { trusted: true } => out.push(
                Finding::new(
                    "needs-token",
                    Severity::Warning,
                    format!("node {} requires a token and the dashboard has none", node.name),
                )
                .subject(&node.name)
                .evidence("its hub answered HTTP 401 to the probe, which sent no token".to_string())
                .action("start the dashboard with --node-token or --node-jwt-secret-file"),
            ),
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
/// Gaps the `outage` rule already tells (the tap's own down periods, with their times and
/// culprit) are left out.
fn tap_gaps(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    let covered = |g: &TapGap| {
        inputs.outages.iter().any(|o| {
            o.link == OutageLink::Tap
                && o.from_ms <= g.to_ms + OUTAGE_MERGE_SLACK_MS
                && o.to_ms.is_none_or(|to| to + OUTAGE_MERGE_SLACK_MS >= g.from_ms)
        })
    };
    let gaps: Vec<&TapGap> = inputs.tap_gaps.iter().filter(|g| !covered(g)).collect();
    if gaps.is_empty() {
        return;
    }
    let total_ms: u64 = gaps.iter().map(|g| g.to_ms.saturating_sub(g.from_ms)).sum();
    let longest = gaps
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
                gaps.len(),
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
