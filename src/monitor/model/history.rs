//! The links' histories the explanations and the outage rule weigh: every up/down transition of
//! the tap, each probe and each node's backplane link ([`LinkHistory`], bounded per link), and the
//! tap's sightings of test messages ([`Sightings`]: on which channel, when). Pure, std only;
//! time is passed in. Folded by the model; read by `explain` and `health::outage`.

use std::collections::{HashMap, VecDeque};

/// Transitions kept per link: a link flapping every few seconds still covers the last minutes.
pub(super) const MAX_TRANSITIONS: usize = 64;

/// A stop on purpose marks a down recorded at most this long before it as deliberate: the stop
/// is issued on the UI thread, the link's own down may be folded a frame earlier or later.
pub const DELIBERATE_SLACK_MS: u64 = 2_000;

/// Sightings kept: several per trace (one per channel) for the last few hundred traces.
pub(super) const MAX_SIGHTINGS: usize = 2048;

/// When a link went up or down, and in what words (a state name, an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub at_ms: u64,
    pub up: bool,
    pub detail: String,
    /// A down on purpose (a node stopped from the Demo panel, the tap stopped): not an outage.
    pub deliberate: bool,
}

/// A down period of a link: from, until (`None`: still down at the last word), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub from_ms: u64,
    pub to_ms: Option<u64>,
    pub detail: String,
}

/// Which link a history is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Link {
    /// A node's backplane (Redis) link, as its stats report it; keyed by hub URL.
    Backplane(String),
    /// The dashboard's probe client on a node; keyed by hub URL.
    Probe(String),
    /// The dashboard's tap.
    Tap,
}

/// Up/down transitions of the links the model watches, a bounded number per link.
#[derive(Debug, Clone, Default)]
pub struct LinkHistory {
    pub(super) links: HashMap<Link, VecDeque<Transition>>,
}

impl LinkHistory {
    /// Records the link's state at `at_ms`; only changes are kept (the first word is kept too).
    pub fn record(&mut self, link: Link, at_ms: u64, up: bool, detail: &str) {
        self.push(link, at_ms, up, detail, false);
    }

    /// Records that the link was taken down on purpose at `at_ms` (a node stopped from the Demo
    /// panel, the tap stopped): the down period that follows is not an outage. A real down
    /// recorded just before (the stop's own effect, up to [`DELIBERATE_SLACK_MS`] earlier) becomes
    /// deliberate too.
    pub fn record_stop(&mut self, link: Link, at_ms: u64, detail: &str) {
        if let Some(last) = self.links.get_mut(&link).and_then(|l| l.back_mut())
            && !last.up
            && last.at_ms + DELIBERATE_SLACK_MS >= at_ms
        {
            last.deliberate = true;
            return;
        }
        self.push(link, at_ms, false, detail, true);
    }

    fn push(&mut self, link: Link, at_ms: u64, up: bool, detail: &str, deliberate: bool) {
        let list = self.links.entry(link).or_default();
        if list.back().is_some_and(|t| t.up == up) {
            return;
        }
        list.push_back(Transition {
            at_ms,
            up,
            detail: detail.to_string(),
            deliberate,
        });
        while list.len() > MAX_TRANSITIONS {
            list.pop_front();
        }
    }

    /// Every link the history knows.
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.keys()
    }

    /// The outages of `link`, oldest first: each down period that followed an up (a link still
    /// connecting for the first time is not an outage) and was not deliberate. The last one is
    /// open (`to_ms: None`) while the link is still down.
    pub fn outages(&self, link: &Link) -> Vec<Outage> {
        let Some(list) = self.links.get(link) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut was_up = false;
        let mut open: Option<&Transition> = None;
        for t in list {
            if t.up {
                if let Some(down) = open.take() {
                    out.push(Outage {
                        from_ms: down.at_ms,
                        to_ms: Some(t.at_ms),
                        detail: down.detail.clone(),
                    });
                }
                was_up = true;
            } else if was_up && !t.deliberate {
                open = Some(t);
            }
        }
        if let Some(down) = open {
            out.push(Outage {
                from_ms: down.at_ms,
                to_ms: None,
                detail: down.detail.clone(),
            });
        }
        out
    }

    /// Forgets a link (a node removed from the table).
    pub fn forget(&mut self, link: &Link) {
        self.links.remove(link);
    }

    /// The outage of `link` that overlaps `[from_ms, to_ms]` the most (the later one on a tie), if
    /// any: a blip at the window's edge (a node still connecting when it started) gives way to
    /// the outage that covers the send. A link never heard of has none.
    pub fn down_during(&self, link: &Link, from_ms: u64, to_ms: u64) -> Option<Outage> {
        let list = self.links.get(link)?;
        let mut outages: Vec<Outage> = Vec::new();
        let mut open: Option<&Transition> = None;
        for t in list {
            match (t.up, open) {
                (false, None) => open = Some(t),
                (true, Some(down)) => {
                    outages.push(Outage {
                        from_ms: down.at_ms,
                        to_ms: Some(t.at_ms),
                        detail: down.detail.clone(),
                    });
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(down) = open {
            outages.push(Outage {
                from_ms: down.at_ms,
                to_ms: None,
                detail: down.detail.clone(),
            });
        }
        let overlap = |o: &Outage| {
            let end = o.to_ms.unwrap_or(u64::MAX).min(to_ms);
            let start = o.from_ms.max(from_ms);
            (o.from_ms <= to_ms && o.to_ms.is_none_or(|t| t >= from_ms)).then(|| end.saturating_sub(start))
        };
        let mut best: Option<(u64, Outage)> = None;
        for o in outages {
            if let Some(n) = overlap(&o)
                && best.as_ref().is_none_or(|(m, _)| n >= *m)
            {
                best = Some((n, o));
            }
        }
        best.map(|(_, o)| o)
    }
}

/// Where the tap saw traces: (trace, channel, unix ms), bounded.
#[derive(Debug, Clone, Default)]
pub struct Sightings {
    pub(super) seen: VecDeque<(u64, String, u64)>,
}

impl Sightings {
    /// The tap saw trace `trace` on `channel` at `at_ms` (one sighting per trace and channel).
    pub fn record(&mut self, trace: u64, channel: &str, at_ms: u64) {
        if self
            .seen
            .iter()
            .rev()
            .take(64)
            .any(|(t, c, _)| *t == trace && c == channel)
        {
            return;
        }
        self.seen.push_back((trace, channel.to_string(), at_ms));
        while self.seen.len() > MAX_SIGHTINGS {
            self.seen.pop_front();
        }
    }

    /// (channel, unix ms) of every sighting of `trace`, first first.
    pub fn of(&self, trace: u64) -> Vec<(String, u64)> {
        self.seen
            .iter()
            .filter(|(t, _, _)| *t == trace)
            .map(|(_, c, at)| (c.clone(), *at))
            .collect()
    }
}
