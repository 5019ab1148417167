//! What the health rules look at: [`HealthInputs`], filled by the dashboard's model
//! (`adapter`) or by `switchboard check` (one round of Redis queries and node stats), and the
//! `CLIENT LIST` parser both use. Pure data and parsing.

use super::*;

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
    /// Stopped on purpose (from the Demo panel) at `since_ms`: not a fault.
    Stopped { since_ms: u64 },
    /// It answers, but its hub requires a token the dashboard did not send: withheld because the
    /// node is not trusted (`trusted: false`), or none configured (`trusted: true`).
    NeedsToken { trusted: bool },
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
pub(super) fn parse_bytes(text: &str) -> Option<u64> {
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
    /// Down periods of the tap, the nodes and their backplane links (the dashboard's link
    /// history; `check` has none).
    pub outages: Vec<OutageSpan>,
    /// How long a past outage stays a finding after it ended (`DEFAULT_OUTAGE_MEMORY`).
    pub outage_memory_ms: u64,
}
