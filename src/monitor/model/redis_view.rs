//! The Redis view's model: what the poller (`monitor::redis_view`) saw on every primary and
//! replica (address, role, slot ranges, pub/sub clients and their output buffers, the
//! `client-output-buffer-limit pubsub` setting), the warnings for subscribers Redis is about to
//! cut, and failovers (a new primary for a shard, or for a sentinel set), which the model turns
//! into markers in the traffic stream.
//!
//! Pure (std only, time passed in): the parsers of `CLIENT LIST` and `CONFIG GET` replies live
//! here so that they are unit-tested with synthetic text. Folded on the UI thread by `Model`.

use std::collections::BTreeMap;

/// Warn about a subscriber once its output buffer holds this share of the hard limit (in
/// percent): Redis cuts it at 100 %, and a subscriber that falls behind grows its buffer by
/// megabytes per second, so 75 % leaves a poll or two of notice.
pub const NEAR_HARD_PERCENT: u64 = 75;

/// Failovers remembered for the view's list (the traffic stream keeps its markers too).
pub const FAILOVERS_KEPT: usize = 50;

/// A server's role, as it says itself (`ROLE`) or as the cluster says (`CLUSTER SHARDS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRole {
    Primary,
    /// A replica, with its primary's address when known.
    Replica {
        of: Option<String>,
    },
    /// Not known (the node did not answer).
    Unknown,
}

impl NodeRole {
    pub fn label(&self) -> &'static str {
        match self {
            NodeRole::Primary => "primary",
            NodeRole::Replica { .. } => "replica",
            NodeRole::Unknown => "role unknown",
        }
    }
}

/// One pub/sub client from `CLIENT LIST TYPE pubsub`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PubsubClient {
    pub id: u64,
    /// The peer's address (`addr=`).
    pub addr: String,
    /// `CLIENT SETNAME` (Switchboard names its connections `switchboard-hub:<node>` and
    /// `switchboard-dashboard`); empty when unnamed.
    pub name: String,
    /// Channels (`sub`), patterns (`psub`) and shard channels (`ssub`) subscribed.
    pub channels: u64,
    pub patterns: u64,
    pub shard_channels: u64,
    /// Output buffer memory (`omem`): what Redis compares with the output-buffer limit.
    pub omem: u64,
    /// Total memory of the client (`tot-mem`: buffers of both directions).
    pub tot_mem: u64,
    /// Seconds since the connection was made (`age`) and since its last command (`idle`).
    pub age_secs: u64,
    pub idle_secs: u64,
}

/// `client-output-buffer-limit` for the pubsub class: `hard` bytes cut a client at once; above
/// `soft` bytes for `soft_secs` seconds cuts it too. 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_secs: u64,
}

/// What is known of a node's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKnowledge {
    Known(OutputLimit),
    /// Could not be read: why, in plain words (a missing ACL permission is named).
    Unknown(String),
}

/// One primary or replica as the poller saw it in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSnapshot {
    pub addr: String,
    pub role: NodeRole,
    /// Slot ranges served (a cluster shard's; empty outside a cluster).
    pub slots: Vec<(u16, u16)>,
    /// The cluster's word for the node (`online`, `failed`, `loading`), or empty.
    pub health: String,
    /// Pub/sub clients, the fullest output buffers first, at most the poller's bound.
    pub clients: Vec<PubsubClient>,
    /// Pub/sub clients in total (more than `clients.len()` when the list was cut).
    pub clients_total: usize,
    pub limit: LimitKnowledge,
    /// How long `CLIENT LIST TYPE pubsub` took on this node (microseconds).
    pub list_micros: u64,
    /// Why the node could not be asked (then `clients` is empty), in plain words.
    pub error: Option<String>,
}

/// What the dashboard is connected to: the spec's words (TLS verified or insecure, the user) and
/// what it reaches now (a single server, the sentinel primary, the cluster's shards).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionSummary {
    /// `RedisSpec::describe()`: "TLS, verified · user alice · cluster seeds ...".
    pub spec: String,
    /// `Reached::describe()`, or why nothing was reached.
    pub reached: String,
    /// The URL without its password.
    pub url: String,
}

/// Which primary serves a part of the data: the key of failover detection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PrimaryOf {
    /// A cluster shard, by its slot ranges.
    Slots(Vec<(u16, u16)>),
    /// A sentinel set's master (by name).
    Sentinel(String),
    /// A single server (or its replication group): the server that says it is primary.
    Single,
}

impl PrimaryOf {
    pub fn describe(&self) -> String {
        match self {
            PrimaryOf::Slots(slots) => format!("slots {}", slot_ranges(slots)),
            PrimaryOf::Sentinel(master) => format!("sentinel master {master}"),
            PrimaryOf::Single => "the replication group".to_string(),
        }
    }
}

/// One poll round.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedisSnapshot {
    /// When the round ended (unix ms).
    pub at_ms: u64,
    pub connection: ConnectionSummary,
    pub nodes: Vec<NodeSnapshot>,
    /// Who is primary of what, as this round saw it (the input of failover detection).
    pub primaries: Vec<(PrimaryOf, String)>,
    /// The round's cost (the sum of the nodes' CLIENT LIST times as measured by the poller, round
    /// trip included: an upper bound of Redis's time), microseconds.
    pub cost_micros: u64,
    /// When the next round is due (unix ms): rounds are spaced so their cost stays small.
    pub next_at_ms: u64,
    /// Why the round could not reach Redis at all.
    pub error: Option<String>,
}

/// The sharded tap's discovery, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardTapStatus {
    /// When the last `PUBSUB SHARDCHANNELS` round ended (unix ms): channels created since may
    /// not be tapped yet.
    pub discovered_at_ms: u64,
    /// Shard channels subscribed, over all primaries.
    pub subscribed: usize,
    /// Primaries asked in the last round.
    pub primaries: usize,
    /// What went wrong in the last round, in plain words.
    pub error: Option<String>,
}

/// A new primary for some part of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// When the poller saw it (unix ms; the failover happened since the round before).
    pub at_ms: u64,
    /// When the previous round (with the old primary) ended: the failover happened in between.
    pub since_ms: u64,
    pub of: PrimaryOf,
    pub old_primary: String,
    pub new_primary: String,
}

impl Failover {
    /// One line for the traffic stream.
    pub fn summary(&self) -> String {
        format!(
            "failover: {} became primary of {} (was {}), between {} and {}",
            self.new_primary,
            self.of.describe(),
            self.old_primary,
            super::traffic::hms_utc(self.since_ms),
            super::traffic::hms_utc(self.at_ms),
        )
    }
}

/// How urgent a subscriber's buffer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warn,
    Critical,
}

/// A subscriber Redis is about to cut, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferWarning {
    pub severity: Severity,
    pub words: String,
}

/// The Redis view's state.
#[derive(Debug, Default)]
pub struct RedisView {
    latest: Option<RedisSnapshot>,
    /// The last primary seen for each part, and when.
    primaries: BTreeMap<PrimaryOf, (String, u64)>,
    failovers: Vec<Failover>,
    pub shard_tap: Option<ShardTapStatus>,
}

impl RedisView {
    /// Folds one round in; returns the failovers it reveals (a part whose primary changed since
    /// the last round that named one). A round that could not see a part says nothing about it.
    pub fn apply(&mut self, snapshot: RedisSnapshot) -> Vec<Failover> {
        let mut found = Vec::new();
        for (of, primary) in &snapshot.primaries {
            match self.primaries.get(of) {
                Some((old, since)) if old != primary => {
                    found.push(Failover {
                        at_ms: snapshot.at_ms,
                        since_ms: *since,
                        of: of.clone(),
                        old_primary: old.clone(),
                        new_primary: primary.clone(),
                    });
                }
                _ => {}
            }
            self.primaries
                .insert(of.clone(), (primary.clone(), snapshot.at_ms));
        }
        self.failovers.extend(found.iter().cloned());
        if self.failovers.len() > FAILOVERS_KEPT {
            let excess = self.failovers.len() - FAILOVERS_KEPT;
            self.failovers.drain(..excess);
        }
        self.latest = Some(snapshot);
        found
    }

    /// Forgets everything (the tap was pointed elsewhere or stopped).
    pub fn clear(&mut self) {
        *self = RedisView::default();
    }

    pub fn latest(&self) -> Option<&RedisSnapshot> {
        self.latest.as_ref()
    }

    /// Failovers seen, oldest first.
    pub fn failovers(&self) -> &[Failover] {
        &self.failovers
    }

    /// Every warning of the latest round: (node address, client, warning), most urgent first.
    pub fn warnings(&self) -> Vec<(&str, &PubsubClient, BufferWarning)> {
        let mut out = Vec::new();
        if let Some(s) = &self.latest {
            for node in &s.nodes {
                if let LimitKnowledge::Known(limit) = &node.limit {
                    for c in &node.clients {
                        if let Some(w) = buffer_warning(c, limit) {
                            out.push((node.addr.as_str(), c, w));
                        }
                    }
                }
            }
        }
        out.sort_by_key(|(_, c, w)| (std::cmp::Reverse(w.severity), std::cmp::Reverse(c.omem)));
        out
    }
}

/// Whether Redis is about to cut this subscriber, in plain words: near (or past) the hard limit,
/// or above the soft limit (which cuts it after `soft_secs` seconds there).
pub fn buffer_warning(client: &PubsubClient, limit: &OutputLimit) -> Option<BufferWarning> {
    let at = client.omem;
    if limit.hard > 0 && at.saturating_mul(100) >= limit.hard.saturating_mul(NEAR_HARD_PERCENT) {
        return Some(BufferWarning {
            severity: Severity::Critical,
            words: format!(
                "Redis will disconnect this subscriber when its output buffer passes {}: it is at {}",
                bytes(limit.hard),
                bytes(at)
            ),
        });
    }
    if limit.soft > 0 && at > limit.soft {
        return Some(BufferWarning {
            severity: Severity::Warn,
            words: format!(
                "Redis will disconnect this subscriber if its output buffer stays above {} for {} s: it is at {}",
                bytes(limit.soft),
                limit.soft_secs,
                bytes(at)
            ),
        });
    }
    None
}

/// Bytes in the units Redis's configuration uses (1 MB = 1024 × 1024 bytes, as `32mb` means).
pub fn bytes(n: u64) -> String {
    const KB: u64 = 1024;
    const MB: u64 = 1024 * KB;
    const GB: u64 = 1024 * MB;
    if n >= GB {
        format!("{:.1} GB", n as f64 / GB as f64)
    } else if n >= MB {
        let mb = n as f64 / MB as f64;
        if n.is_multiple_of(MB) {
            format!("{} MB", n / MB)
        } else if mb >= 10.0 {
            format!("{mb:.0} MB")
        } else {
            format!("{mb:.1} MB")
        }
    } else if n >= KB {
        format!("{} kB", n / KB)
    } else {
        format!("{n} B")
    }
}

/// "0-5460, 10923-16383".
pub fn slot_ranges(slots: &[(u16, u16)]) -> String {
    slots
        .iter()
        .map(|(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `CLIENT LIST` text: one client per line, `key=value` fields separated by spaces.
/// Unknown fields are ignored; a line without `id=` is skipped.
pub fn parse_client_list(text: &str) -> Vec<PubsubClient> {
    text.lines()
        .filter_map(|line| {
            let mut c = PubsubClient::default();
            let mut has_id = false;
            for field in line.split(' ') {
                let Some((k, v)) = field.split_once('=') else {
                    continue;
                };
                let n = || v.parse::<u64>().unwrap_or(0);
                match k {
                    "id" => {
                        c.id = n();
                        has_id = true;
                    }
                    "addr" => c.addr = v.to_string(),
                    "name" => c.name = v.to_string(),
                    "sub" => c.channels = n(),
                    "psub" => c.patterns = n(),
                    "ssub" => c.shard_channels = n(),
                    "omem" => c.omem = n(),
                    "tot-mem" => c.tot_mem = n(),
                    "age" => c.age_secs = n(),
                    "idle" => c.idle_secs = n(),
                    _ => {}
                }
            }
            has_id.then_some(c)
        })
        .collect()
}

/// Reads the pubsub class from `client-output-buffer-limit`'s value
/// ("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60").
pub fn parse_output_limit(value: &str) -> Option<OutputLimit> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let at = words.iter().position(|w| w.eq_ignore_ascii_case("pubsub"))?;
    let num = |i: usize| words.get(at + i).and_then(|w| parse_size(w));
    Some(OutputLimit {
        hard: num(1)?,
        soft: num(2)?,
        soft_secs: num(3)?,
    })
}

/// A number as Redis writes sizes (`33554432`, `32mb`, `8m`, `1gb`, `512kb`).
fn parse_size(word: &str) -> Option<u64> {
    let lower = word.to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1_000_000,
        "mb" => 1024 * 1024,
        "g" => 1_000_000_000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "id=5 addr=127.0.0.1:50712 laddr=127.0.0.1:7000 fd=9 name=switchboard-hub:node-a age=120 idle=0 flags=P db=0 sub=4 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1928 events=r cmd=subscribe user=default redir=-1 resp=2\n\
id=9 addr=127.0.0.1:50800 laddr=127.0.0.1:7000 fd=12 name= age=30 idle=30 flags=P db=0 sub=1 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=4000 omem=30408704 tot-mem=30410632 events=rw cmd=subscribe user=default redir=-1 resp=2\n\
id=11 addr=127.0.0.1:50900 laddr=127.0.0.1:7000 fd=13 name=switchboard-dashboard age=3 idle=0 flags=P db=0 sub=0 psub=1 ssub=2 multi=-1 omem=0 tot-mem=20000\n";

    #[test]
    fn client_list_is_parsed_field_by_field() {
        let clients = parse_client_list(LIST);
        assert_eq!(clients.len(), 3);
        assert_eq!(clients[0].name, "switchboard-hub:node-a");
        assert_eq!(
            (clients[0].id, clients[0].channels, clients[0].age_secs),
            (5, 4, 120)
        );
        assert_eq!(clients[1].name, "");
        assert_eq!((clients[1].omem, clients[1].tot_mem), (30_408_704, 30_410_632));
        assert_eq!((clients[2].patterns, clients[2].shard_channels), (1, 2));
        assert_eq!(clients[2].addr, "127.0.0.1:50900");
        assert!(parse_client_list("garbage\n\nno id here=1").is_empty());
    }

    #[test]
    fn output_limit_reads_the_pubsub_class_in_any_unit() {
        let v = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60";
        assert_eq!(
            parse_output_limit(v),
            Some(OutputLimit {
                hard: 32 << 20,
                soft: 8 << 20,
                soft_secs: 60
            })
        );
        assert_eq!(
            parse_output_limit("pubsub 32mb 8mb 60").map(|l| l.hard),
            Some(32 << 20)
        );
        assert_eq!(
            parse_output_limit("pubsub 1gb 0 0").map(|l| l.hard),
            Some(1 << 30)
        );
        assert_eq!(parse_output_limit("normal 0 0 0"), None);
        assert_eq!(parse_output_limit("pubsub 32zz 0 0"), None);
    }

    #[test]
    fn warnings_say_in_words_when_redis_will_cut_a_subscriber() {
        let limit = OutputLimit {
            hard: 32 << 20,
            soft: 8 << 20,
            soft_secs: 60,
        };
        let mut c = PubsubClient {
            omem: 29 << 20,
            ..PubsubClient::default()
        };
        let w = buffer_warning(&c, &limit).expect("near the hard limit");
        assert_eq!(w.severity, Severity::Critical);
        assert_eq!(
            w.words,
            "Redis will disconnect this subscriber when its output buffer passes 32 MB: it is at 29 MB"
        );
        c.omem = 9 << 20;
        let w = buffer_warning(&c, &limit).expect("above the soft limit");
        assert_eq!(w.severity, Severity::Warn);
        assert!(
            w.words.contains("stays above 8 MB for 60 s: it is at 9 MB"),
            "{}",
            w.words
        );
        c.omem = 1 << 20;
        assert_eq!(buffer_warning(&c, &limit), None);
        // No limit configured: never a warning.
        let none = OutputLimit {
            hard: 0,
            soft: 0,
            soft_secs: 0,
        };
        c.omem = 1 << 40;
        assert_eq!(buffer_warning(&c, &none), None);
        // Exactly 75 % of the hard limit warns; just below does not (no soft limit).
        let hard_only = OutputLimit {
            hard: 400,
            soft: 0,
            soft_secs: 0,
        };
        c.omem = 300;
        assert!(buffer_warning(&c, &hard_only).is_some());
        c.omem = 299;
        assert!(buffer_warning(&c, &hard_only).is_none());
    }

    fn round(at_ms: u64, primaries: Vec<(PrimaryOf, &str)>) -> RedisSnapshot {
        RedisSnapshot {
            at_ms,
            primaries: primaries.into_iter().map(|(of, p)| (of, p.to_string())).collect(),
            ..RedisSnapshot::default()
        }
    }

    #[test]
    fn a_new_primary_for_the_same_slots_is_a_failover() {
        let a = PrimaryOf::Slots(vec![(0, 5460)]);
        let b = PrimaryOf::Slots(vec![(5461, 10922)]);
        let mut v = RedisView::default();
        assert!(
            v.apply(round(1000, vec![(a.clone(), "h:7000"), (b.clone(), "h:7001")]))
                .is_empty()
        );
        assert!(
            v.apply(round(6000, vec![(a.clone(), "h:7000"), (b.clone(), "h:7001")]))
                .is_empty()
        );
        // A round that cannot see shard a says nothing about it.
        assert!(v.apply(round(11_000, vec![(b.clone(), "h:7001")])).is_empty());
        let found = v.apply(round(16_000, vec![(a.clone(), "h:7004"), (b.clone(), "h:7001")]));
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(
            (
                f.old_primary.as_str(),
                f.new_primary.as_str(),
                f.since_ms,
                f.at_ms
            ),
            ("h:7000", "h:7004", 6000, 16_000)
        );
        assert_eq!(
            f.summary(),
            "failover: h:7004 became primary of slots 0-5460 (was h:7000), between 00:00:06 and 00:00:16"
        );
        assert_eq!(v.failovers().len(), 1);
        // Sentinel: the primary's address.
        let s = PrimaryOf::Sentinel("mymaster".into());
        assert!(v.apply(round(20_000, vec![(s.clone(), "h:6380")])).is_empty());
        let found = v.apply(round(25_000, vec![(s, "h:6381")]));
        assert!(found[0].summary().contains("sentinel master mymaster"));
        v.clear();
        assert!(v.latest().is_none() && v.failovers().is_empty());
    }

    #[test]
    fn warnings_are_listed_most_urgent_first_and_need_a_known_limit() {
        let limit = OutputLimit {
            hard: 100,
            soft: 10,
            soft_secs: 5,
        };
        let client = |id, omem| PubsubClient {
            id,
            omem,
            ..PubsubClient::default()
        };
        let node = |addr: &str, limit: LimitKnowledge, clients| NodeSnapshot {
            addr: addr.into(),
            role: NodeRole::Primary,
            slots: vec![],
            health: String::new(),
            clients,
            clients_total: 0,
            limit,
            list_micros: 0,
            error: None,
        };
        let mut v = RedisView::default();
        v.apply(RedisSnapshot {
            nodes: vec![
                node(
                    "a",
                    LimitKnowledge::Known(limit),
                    vec![client(1, 20), client(2, 90), client(3, 1)],
                ),
                node(
                    "b",
                    LimitKnowledge::Unknown("no +config|get".into()),
                    vec![client(4, 1000)],
                ),
            ],
            ..RedisSnapshot::default()
        });
        let w = v.warnings();
        assert_eq!(w.iter().map(|(_, c, _)| c.id).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(w[0].2.severity, Severity::Critical);
    }

    #[test]
    fn sizes_and_slots_in_words() {
        assert_eq!(bytes(32 << 20), "32 MB");
        assert_eq!(bytes(30_408_704), "29 MB");
        assert_eq!(bytes(1_500_000), "1.4 MB");
        assert_eq!(bytes(2048), "2 kB");
        assert_eq!(bytes(12), "12 B");
        assert_eq!(slot_ranges(&[(0, 5460), (7000, 7000)]), "0-5460, 7000");
    }
}
