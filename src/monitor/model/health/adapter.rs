//! [`inputs_from_model`]: the dashboard's [`HealthInputs`], from what its model holds (the
//! census, the node table, the traffic ring over a window, the Redis view, the latest health
//! round), and the freshness limits of those parts.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::backplane::naming::{self};

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
pub fn inputs_from_model(
    model: &crate::monitor::model::Model,
    prefix: &str,
    window_ms: u64,
    now_ms: u64,
) -> HealthInputs {
    let since = now_ms.saturating_sub(window_ms);
    let mut inputs = HealthInputs {
        now_ms,
        prefix: prefix.to_string(),
        ..HealthInputs::default()
    };
    // The tap's own link: while it is down, nothing the Redis rules say is current.
    if let crate::monitor::model::LinkState::Reconnecting { error, .. }
    | crate::monitor::model::LinkState::Failed { error } = &model.tap.state
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
    let recent: Vec<&crate::monitor::model::TrafficEntry> = model
        .traffic
        .iter()
        .rev()
        .take_while(|e| e.at_ms >= since || e.gap.is_some_and(|(_, to)| to >= since))
        .take(MAX_SCAN_ENTRIES)
        .collect();
    for e in recent.into_iter().rev() {
        if e.kind == crate::monitor::model::EntryKind::Gap {
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
        if e.kind == crate::monitor::model::EntryKind::Sr2 {
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
            (crate::monitor::model::LinkState::Connected, Some(stats)) => {
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
            (crate::monitor::model::LinkState::Connected, None) => NodeReach::NoMonitor,
            (
                crate::monitor::model::LinkState::Reconnecting { error, .. }
                | crate::monitor::model::LinkState::Failed { error },
                _,
            ) => NodeReach::Unreachable(error.clone()),
            // Not watched, or the first attempt is under way: nothing to say yet.
            (crate::monitor::model::LinkState::Idle | crate::monitor::model::LinkState::Connecting, _) => {
                continue;
            }
        };
        // Stopped on purpose, or up but closed to a probe without a token: not down.
        let reach = match crate::monitor::model::nodes::Nodes::liveness(row, now_ms) {
            crate::monitor::model::nodes::Liveness::Stopped { since_ms } => NodeReach::Stopped { since_ms },
            crate::monitor::model::nodes::Liveness::NeedsToken => {
                NodeReach::NeedsToken { trusted: row.trusted }
            }
            _ => reach,
        };
        if let Some(stats) = &row.stats {
            if !stats.hub.is_empty() {
                expected.insert(stats.hub.clone());
            }
            // A node stopped on purpose: its last heartbeat is no sign of a lost subscription.
            if let Some(ts_ms) = row.heartbeat_at_ms
                && !matches!(reach, NodeReach::Stopped { .. })
            {
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
    inputs.outages = super::outage::spans_from_history(model);
    inputs.outage_memory_ms = model.outage_memory.as_millis() as u64;
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
    census: Option<&[crate::monitor::HubCensus]>,
    round: Option<&[crate::monitor::HubSubscribers]>,
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
pub(super) fn skipped_words(what: &str, error: &str) -> String {
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
    view: &crate::monitor::model::redis_view::RedisView,
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
    snapshot: &crate::monitor::model::redis_view::RedisSnapshot,
) -> Result<ClientListInput, String> {
    use crate::monitor::model::redis_view::LimitKnowledge;
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
