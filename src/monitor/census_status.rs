//! How the census is paced and what it says about itself: [`Spacing`] (the next walk's delay from
//! the last walk's cost, so the walks take at most [`config::DEFAULT_CENSUS_SHARE`] of Redis's
//! time), [`WaitReason`] (why the next walk waits), and [`CensusStatus`] (age, cost, share, next
//! walk), which the dashboard shows. Pure: times are passed in. Used by `census`.

use std::time::Duration;

use crate::config;

/// Why the next walk waits as long as it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitReason {
    /// The walk is cheap: the next one comes at the floor interval.
    #[default]
    Floor,
    /// The walk is expensive: the next waits so the walks stay under their share of Redis's time.
    Budget,
    /// The cheap figures say nothing changed since the last walk.
    Unchanged,
    /// Every server seen announces its own connection count: no need to walk often.
    NodesReport,
}

impl WaitReason {
    /// A few words for the UI.
    pub fn words(self) -> &'static str {
        match self {
            WaitReason::Floor => "every couple of seconds",
            WaitReason::Budget => "spaced to keep Redis's cost under its share",
            WaitReason::Unchanged => "channel count unchanged, waiting",
            WaitReason::NodesReport => "every server reports its own count, walking rarely",
        }
    }
}

/// The spacing policy of the walks: never more often than `floor`; never more of Redis's time
/// than `share` (a walk that cost `c` is followed by a pause of at least `c / share` from its
/// start); and when nothing is to be learnt (no change, or the nodes report their own counts)
/// an expensive walk waits up to `ceiling`. The budget wins over the ceiling: a walk that costs
/// more than `ceiling × share` is spaced by its cost alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spacing {
    pub share: f64,
    pub floor: Duration,
    pub ceiling: Duration,
}

impl Default for Spacing {
    fn default() -> Self {
        Spacing {
            share: config::DEFAULT_CENSUS_SHARE,
            floor: config::DEFAULT_CENSUS_INTERVAL,
            ceiling: config::DEFAULT_CENSUS_CEILING,
        }
    }
}

impl Spacing {
    /// The time from the start of the last walk (which cost Redis `cost`) to the next one, and
    /// why. `changed`: the cheap figures moved since that walk. `nodes_report`: every server seen
    /// has a fresh heartbeat with its own connection count.
    pub fn wait(&self, cost: Duration, changed: bool, nodes_report: bool) -> (Duration, WaitReason) {
        let share = self.share.clamp(1e-6, 1.0);
        let budget = cost.div_f64(share).max(self.floor);
        let long = budget.max(self.ceiling);
        if !changed {
            return (long, WaitReason::Unchanged);
        }
        if budget > self.floor {
            if nodes_report {
                return (long, WaitReason::NodesReport);
            }
            return (budget, WaitReason::Budget);
        }
        (self.floor, WaitReason::Floor)
    }
}

/// How the latest census was taken, what it cost Redis and when the next walk is due. Reported
/// after every round (every couple of seconds), walk or not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CensusStatus {
    /// When the latest walk ended (unix ms); 0 before the first.
    pub scanned_at_ms: u64,
    /// Redis's own time for that walk, over every node asked (INFO commandstats); `None` when
    /// INFO is not allowed (then `scan_wall` is the cost used).
    pub scan_server: Option<Duration>,
    /// Wall time of that walk, round trips and reply transfer included.
    pub scan_wall: Duration,
    /// Channel names under the prefix that walk returned (merged over the nodes).
    pub scanned_channels: u64,
    /// `pubsub_channels` over every node at the latest cheap check (all prefixes).
    pub channels_now: Option<u64>,
    /// When the latest round ran (unix ms).
    pub checked_at_ms: u64,
    /// When the next walk is due (unix ms), if nothing changes the reason.
    pub next_scan_at_ms: u64,
    pub reason: WaitReason,
    /// The walks' share of Redis's time since the census started (cost / elapsed).
    pub share: f64,
    /// The share the spacing keeps under.
    pub budget_share: f64,
    /// Walks so far.
    pub scans: u64,
    /// The servers asked ("127.0.0.1:7000 primary", ...).
    pub nodes: Vec<String>,
    /// Connections the servers' heartbeats report together, when every server seen has a fresh
    /// one (newer than the walk).
    pub nodes_report: Option<u64>,
    /// What went wrong in the latest round, in plain words; empty when it went well.
    pub problem: Option<String>,
}

impl CensusStatus {
    /// Whether the census shown is older than it should be: the round stopped (no round for
    /// three floor intervals), a round failed, or the walk is overdue by more than a floor
    /// interval.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        let floor = config::DEFAULT_CENSUS_INTERVAL.as_millis() as u64;
        self.scanned_at_ms == 0
            || self.problem.is_some()
            || now_ms > self.checked_at_ms + 3 * floor
            || now_ms > self.next_scan_at_ms + 2 * floor
    }
}

/// "12 s", "3 min": an age or a wait, coarse.
fn span(ms: u64) -> String {
    match ms / 1000 {
        s if s < 120 => format!("{s} s"),
        s => format!("{} min", s / 60),
    }
}

impl CensusStatus {
    /// One line for the UI: the walk's age, its cost to Redis, the share so far, when the next
    /// walk is due and why; what went wrong, if anything.
    pub fn summary(&self, now_ms: u64) -> String {
        if self.scanned_at_ms == 0 {
            return match &self.problem {
                Some(p) => format!("no census yet: {p}"),
                None => "no census yet".to_string(),
            };
        }
        let age = span(now_ms.saturating_sub(self.scanned_at_ms));
        let cost = match self.scan_server {
            Some(d) => format!("{:.1} ms of Redis time", d.as_secs_f64() * 1000.0),
            None => format!(
                "{:.0} ms wall (INFO not allowed)",
                self.scan_wall.as_secs_f64() * 1000.0
            ),
        };
        let nodes = match self.nodes.len() {
            1 => String::new(),
            n => format!(" over {n} servers"),
        };
        let mut line = format!(
            "walked {age} ago{nodes}: {cost}, {:.2} % of Redis's time so far (budget {:.1} %)",
            self.share * 100.0,
            self.budget_share * 100.0
        );
        let next = self.next_scan_at_ms.saturating_sub(now_ms);
        line.push_str(&format!("; next walk in {}: {}", span(next), self.reason.words()));
        if let Some(n) = self.nodes_report {
            line.push_str(&format!("; the servers' heartbeats report {n} connections now"));
        }
        if let Some(p) = &self.problem {
            line.push_str(&format!("; STALE: {p}"));
        } else if self.is_stale(now_ms) {
            line.push_str("; STALE: no census round lately");
        }
        line
    }
}
