//! Test messages followed from the sender through Redis to every probe: the trace marker the
//! probe puts in a message's text, and [`Traces`], the bounded list of recent traces with their
//! per-hop times, status and summary statistics, and the progress of recent bursts. Pure, std
//! only; time is passed in.
//!
//! A trace states only what was observed. A message to a user or a connection that is not one of
//! the dashboard's probes reaches a client whose receipt cannot be seen: its trace is
//! [`TraceStatus::NotObservable`] (what Redis saw, which node holds the client), never partial
//! or failed: unless `PUBSUB NUMSUB` of its channel was 0 when it was sent, which
//! [`nobody_subscribed`] decides for the row, the summary and Explain alike: then it failed.
//!
//! Only a send request's first message is looked up (rate-limited); the others of its burst
//! borrow that answer (same node and target, sent within [`BORROW_LOOKUP_MS`]), here, so every
//! reader sees the same lookup.

use std::collections::VecDeque;

use crate::config::DEFAULT_TRACE_TIMEOUT;
use crate::monitor::{BurstProgress, BurstState, SendTarget, TraceLookup};

/// How far back a trace without its own lookup borrows the one of an earlier trace to the same
/// node and target (the first message of its burst): a burst at the lowest rate the form allows
/// spreads a few messages over this long; older answers no longer describe the moment.
pub const BORROW_LOOKUP_MS: u64 = 30_000;

/// Bursts whose progress is kept (the newest; a finished one stays until pushed out).
const MAX_BURSTS: usize = 8;

/// How long a finished burst stays listed in the Send view after its last report: long enough to
/// read "sent 100 of 100, done", short enough that old ones do not pile up.
pub const BURST_SHOWN_MS: u64 = 10_000;

/// Tap sightings and receipts that arrive before their `Sent` event (they travel on other paths)
/// are kept this long in number, then dropped.
const MAX_EARLY: usize = 1024;

/// The text the probe appends to a test message so the tap and the probes can recognise it:
/// `[sb-trace 1a2b]`. Plain ASCII without quotes or backslashes, so it survives JSON escaping.
pub fn marker(trace: u64) -> String {
    format!("[sb-trace {trace:x}]")
}

/// The trace id of the first marker in `text`, if any.
pub fn find_marker(text: &str) -> Option<u64> {
    const OPEN: &str = "[sb-trace ";
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        if let Some(end) = after.find(']')
            && end > 0
            && end <= 16
            && let Ok(id) = u64::from_str_radix(&after[..end], 16)
        {
            return Some(id);
        }
        rest = after;
    }
    None
}

/// What a trace's row says when nobody was subscribed to its channel.
pub const NOBODY_SUBSCRIBED: &str = "nobody subscribed (NUMSUB 0)";

/// Whether a message seen on `seen_on` went to nobody: `PUBSUB NUMSUB` of that channel (the
/// lookup's) was 0 when it was sent. The one rule for the trace's row, the summary and Explain.
pub fn nobody_subscribed(lookup: Option<&TraceLookup>, seen_on: Option<&str>) -> bool {
    let (Some(lookup), Some(seen_on)) = (lookup, seen_on) else {
        return false;
    };
    lookup.subscribers == Some(0) && lookup.channel.as_deref().is_none_or(|c| c == seen_on)
}

/// Where a trace stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceStatus {
    /// Some expected node has not received it yet, and the timeout has not passed.
    Pending,
    /// Every expected node received it (or, with no expectation, some node did).
    Delivered,
    /// Timed out with these expected nodes (hub URLs) missing; empty when nothing was expected
    /// and nobody received it.
    Partial { missing: Vec<String> },
    /// The send itself failed.
    Failed(String),
    /// Sent to a client that is not a probe (a user or connection send): Redis's sighting is what
    /// can be observed; delivery to that client cannot.
    NotObservable,
}

/// One test message followed through the cluster. Times are unix ms on the dashboard's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub id: u64,
    /// Hub URL of the node the message was sent through.
    pub node: String,
    pub target: SendTarget,
    pub sent_at_ms: u64,
    /// When the tap first saw a message carrying this trace.
    pub redis_at_ms: Option<u64>,
    /// On which channel the tap first saw it.
    pub redis_channel: Option<String>,
    /// (hub URL, when its probe received it), in arrival order; includes unexpected nodes.
    pub receipts: Vec<(String, u64)>,
    /// Hub URLs whose probe should receive it.
    pub expected: Vec<String>,
    pub failed: Option<String>,
    /// Set when every expected node received it or the timeout passed: the status is final.
    pub complete: bool,
    /// Where a message to a non-probe client went, when the runtime looked it up (or borrowed
    /// from the first message of its send: see the module doc).
    pub lookup: Option<TraceLookup>,
    /// The trace whose lookup this one borrowed.
    pub lookup_from: Option<u64>,
}

impl Trace {
    /// Expected nodes that have not received it.
    pub fn missing(&self) -> Vec<String> {
        self.expected
            .iter()
            .filter(|url| !self.receipts.iter().any(|(r, _)| r == *url))
            .cloned()
            .collect()
    }

    /// Receipts from nodes that were not expected.
    pub fn extra(&self) -> Vec<&(String, u64)> {
        self.receipts
            .iter()
            .filter(|(r, _)| !self.expected.contains(r))
            .collect()
    }

    /// Whether a probe should receive it: false for a user or connection send whose receiver is
    /// not one of the dashboard's probes (no probe expected).
    pub fn observable(&self) -> bool {
        !(matches!(self.target, SendTarget::User(_) | SendTarget::Connection(_)) && self.expected.is_empty())
    }

    /// Whether it went to nobody (see [`nobody_subscribed`]).
    pub fn nobody_subscribed(&self) -> bool {
        nobody_subscribed(self.lookup.as_ref(), self.redis_channel.as_deref())
    }

    /// The status at `now_ms` (a pending trace past the timeout already reads as partial).
    pub fn status(&self, now_ms: u64) -> TraceStatus {
        if let Some(error) = &self.failed {
            return TraceStatus::Failed(error.clone());
        }
        if self.nobody_subscribed() {
            return TraceStatus::Failed(NOBODY_SUBSCRIBED.to_string());
        }
        let missing = self.missing();
        let timed_out = self.complete || now_ms >= self.deadline();
        if !self.observable() {
            // Redis's sighting (or the deadline) is as far as it can be followed.
            return if self.redis_at_ms.is_some() || timed_out {
                TraceStatus::NotObservable
            } else {
                TraceStatus::Pending
            };
        }
        if self.expected.is_empty() {
            return match (self.receipts.is_empty(), timed_out) {
                (false, _) => TraceStatus::Delivered,
                (true, true) => TraceStatus::Partial { missing },
                (true, false) => TraceStatus::Pending,
            };
        }
        match (missing.is_empty(), timed_out) {
            (true, _) => TraceStatus::Delivered,
            (false, true) => TraceStatus::Partial { missing },
            (false, false) => TraceStatus::Pending,
        }
    }

    fn deadline(&self) -> u64 {
        self.sent_at_ms + DEFAULT_TRACE_TIMEOUT.as_millis() as u64
    }

    /// Milliseconds from the send to the tap's sighting.
    pub fn sent_to_redis_ms(&self) -> Option<u64> {
        Some(self.redis_at_ms?.saturating_sub(self.sent_at_ms))
    }

    /// Per receipt: (hub URL, ms from the tap's sighting, or from the send when the tap did not
    /// see it, e.g. a local delivery that never crossed Redis).
    pub fn hops_ms(&self) -> Vec<(&str, u64)> {
        let from = self.redis_at_ms.unwrap_or(self.sent_at_ms);
        self.receipts
            .iter()
            .map(|(url, at)| (url.as_str(), at.saturating_sub(from)))
            .collect()
    }

    /// Milliseconds from the send to the last receipt: how long this message took to reach every
    /// probe that got it (`None` without a receipt).
    pub fn end_to_end_ms(&self) -> Option<u64> {
        self.receipts
            .iter()
            .map(|(_, at)| at.saturating_sub(self.sent_at_ms))
            .max()
    }
}

/// Counts and end-to-end latency percentiles over the traces held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceSummary {
    pub count: usize,
    pub pending: usize,
    pub delivered: usize,
    pub partial: usize,
    pub failed: usize,
    /// Sent to clients whose receipt cannot be observed (see [`TraceStatus::NotObservable`]).
    pub not_observable: usize,
    /// Per message (send → its last probe receipt), nearest rank.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// A tap sighting (on a channel) or a receipt (by a hub URL) waiting for its trace's `Sent`.
#[derive(Debug, Clone)]
enum Early {
    Tap { id: u64, channel: String, at_ms: u64 },
    Receipt { id: u64, hub: String, at_ms: u64 },
}

impl Early {
    fn id(&self) -> u64 {
        match self {
            Early::Tap { id, .. } | Early::Receipt { id, .. } => *id,
        }
    }
}

/// Recent traces, oldest dropped past the limit.
#[derive(Debug, Clone)]
pub struct Traces {
    max: usize,
    traces: VecDeque<Trace>,
    early: VecDeque<Early>,
    /// Time of the last `tick` (the summary's "now").
    now_ms: u64,
    /// Recent send requests' progress with the time of its last report, newest last.
    bursts: VecDeque<(BurstProgress, u64)>,
}

impl Traces {
    /// Keeps at most `max` traces (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            traces: VecDeque::new(),
            early: VecDeque::new(),
            now_ms: 0,
            bursts: VecDeque::new(),
        }
    }

    fn find(&mut self, id: u64) -> Option<&mut Trace> {
        self.traces.iter_mut().rev().find(|t| t.id == id)
    }

    /// A test message was handed to `node` at `at_ms`.
    pub fn on_sent(&mut self, id: u64, node: String, target: SendTarget, at_ms: u64, expected: Vec<String>) {
        let mut trace = Trace {
            id,
            node,
            target,
            sent_at_ms: at_ms,
            redis_at_ms: None,
            redis_channel: None,
            receipts: Vec::new(),
            expected,
            failed: None,
            complete: false,
            lookup: None,
            lookup_from: None,
        };
        let (mine, rest): (Vec<Early>, Vec<Early>) = self.early.drain(..).partition(|e| e.id() == id);
        self.early = rest.into();
        for early in mine {
            match early {
                Early::Receipt { hub, at_ms, .. } => add_receipt(&mut trace, hub, at_ms),
                Early::Tap { channel, at_ms, .. } => seen(&mut trace, channel, at_ms),
            }
        }
        if let Some(first) = self
            .traces
            .iter()
            .rev()
            .find(|o| o.lookup.is_some() && o.lookup_from.is_none() && borrows_from(&trace, o))
        {
            trace.lookup = first.lookup.as_ref().map(|l| borrowed(l, first.id));
            trace.lookup_from = Some(first.id);
        }
        check_complete(&mut trace);
        self.traces.push_back(trace);
        while self.traces.len() > self.max {
            self.traces.pop_front();
        }
    }

    /// Sending failed; the trace is complete with that error (created if `Sent` never came).
    pub fn on_send_failed(&mut self, id: u64, node: String, error: String, at_ms: u64) {
        if self.find(id).is_none() {
            self.on_sent(id, node, SendTarget::All, at_ms, Vec::new());
        }
        if let Some(t) = self.find(id) {
            t.failed = Some(error);
            t.complete = true;
        }
    }

    /// What the runtime found out about where trace `id` went (ignored for an unknown trace).
    /// The rest of its send (later traces to the same node and target within
    /// [`BORROW_LOOKUP_MS`], without a lookup of their own) borrow it.
    pub fn on_lookup(&mut self, id: u64, lookup: TraceLookup) {
        let Some(t) = self.find(id) else { return };
        t.lookup = Some(lookup.clone());
        t.lookup_from = None;
        let first = t.clone();
        for other in self.traces.iter_mut() {
            if other.id != id
                && (other.lookup.is_none() || other.lookup_from.is_some())
                && borrows_from(other, &first)
            {
                other.lookup = Some(borrowed(&lookup, id));
                other.lookup_from = Some(id);
            }
        }
    }

    /// A send request's progress, reported at `at_ms` (replaces the earlier report of the same
    /// request).
    pub fn on_burst(&mut self, progress: BurstProgress, at_ms: u64) {
        match self.bursts.iter_mut().find(|(b, _)| b.id == progress.id) {
            Some(b) => *b = (progress, at_ms),
            None => {
                self.bursts.push_back((progress, at_ms));
                while self.bursts.len() > MAX_BURSTS {
                    self.bursts.pop_front();
                }
            }
        }
    }

    /// Recent send requests' progress, newest first.
    pub fn bursts(&self) -> impl Iterator<Item = &BurstProgress> {
        self.bursts.iter().rev().map(|(b, _)| b)
    }

    /// The bursts worth a line in the Send view at `now_ms`, newest first: requests of more than
    /// one message that are running, or that finished less than [`BURST_SHOWN_MS`] ago (a single
    /// send has its trace row; an old finished burst is no news).
    pub fn bursts_shown(&self, now_ms: u64) -> impl Iterator<Item = &BurstProgress> {
        self.bursts
            .iter()
            .rev()
            .filter(move |(b, at)| {
                b.total > 1 && (b.state == BurstState::Running || now_ms.saturating_sub(*at) < BURST_SHOWN_MS)
            })
            .map(|(b, _)| b)
    }

    /// Whether a burst is running (what "Stop bursts" can stop).
    pub fn burst_running(&self) -> bool {
        self.bursts.iter().any(|(b, _)| b.state == BurstState::Running)
    }

    /// The tap saw a message carrying trace `id` on `channel` at `at_ms` (only the first
    /// sighting counts).
    pub fn on_tap(&mut self, id: u64, channel: &str, at_ms: u64) {
        match self.find(id) {
            Some(t) => {
                seen(t, channel.to_string(), at_ms);
                check_complete(t);
            }
            None => self.remember(Early::Tap {
                id,
                channel: channel.to_string(),
                at_ms,
            }),
        }
    }

    /// The probe on `hub_url` received trace `id` at `at_ms` (one receipt per node).
    pub fn on_received(&mut self, hub_url: &str, id: u64, at_ms: u64) {
        match self.find(id) {
            Some(t) => {
                add_receipt(t, hub_url.to_string(), at_ms);
                check_complete(t);
            }
            None => self.remember(Early::Receipt {
                id,
                hub: hub_url.to_string(),
                at_ms,
            }),
        }
    }

    fn remember(&mut self, early: Early) {
        self.early.push_back(early);
        while self.early.len() > MAX_EARLY {
            self.early.pop_front();
        }
    }

    /// Time passes: traces past [`DEFAULT_TRACE_TIMEOUT`] become complete (partial if nodes are
    /// missing).
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        for t in self.traces.iter_mut().filter(|t| !t.complete) {
            if now_ms >= t.deadline() {
                t.complete = true;
            }
        }
    }

    /// The trace with this id.
    pub fn get(&self, id: u64) -> Option<&Trace> {
        self.traces.iter().rev().find(|t| t.id == id)
    }

    /// Traces, newest first.
    pub fn recent(&self) -> impl Iterator<Item = &Trace> {
        self.traces.iter().rev()
    }

    /// Traces held.
    pub fn len(&self) -> usize {
        self.traces.len()
    }

    /// Whether no trace is held.
    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// Counts by status (as of the last `tick`) and end-to-end latency percentiles.
    pub fn summary(&self) -> TraceSummary {
        let mut s = TraceSummary {
            count: self.traces.len(),
            ..TraceSummary::default()
        };
        let mut latencies: Vec<u64> = Vec::new();
        for t in &self.traces {
            match t.status(self.now_ms) {
                TraceStatus::Pending => s.pending += 1,
                TraceStatus::Delivered => s.delivered += 1,
                TraceStatus::Partial { .. } => s.partial += 1,
                TraceStatus::Failed(_) => s.failed += 1,
                TraceStatus::NotObservable => s.not_observable += 1,
            }
            latencies.extend(t.end_to_end_ms());
        }
        latencies.sort_unstable();
        let rank = |p: f64| -> Option<f64> {
            let n = latencies.len();
            let i = ((p * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
            latencies.get(i).map(|&v| v as f64)
        };
        s.p50_ms = rank(0.50);
        s.p95_ms = rank(0.95);
        s.max_ms = latencies.last().map(|&v| v as f64);
        s
    }
}

/// The tap's sighting: the earliest counts.
fn seen(t: &mut Trace, channel: String, at_ms: u64) {
    if t.redis_at_ms.is_none_or(|r| at_ms < r) {
        t.redis_at_ms = Some(at_ms);
        t.redis_channel = Some(channel);
    }
}

/// Whether `t` may borrow the lookup of `first`: same node and target, sent at most
/// [`BORROW_LOOKUP_MS`] after it.
fn borrows_from(t: &Trace, first: &Trace) -> bool {
    first.node == t.node
        && first.target == t.target
        && first.sent_at_ms <= t.sent_at_ms
        && t.sent_at_ms - first.sent_at_ms <= BORROW_LOOKUP_MS
}

/// `lookup` as borrowed from trace `from`, saying so in its note.
fn borrowed(lookup: &TraceLookup, from: u64) -> TraceLookup {
    let mut lookup = lookup.clone();
    let words = format!("asked for trace {from:x}, the first of its send");
    lookup.note = Some(match lookup.note {
        Some(note) => format!("{note} ({words})"),
        None => format!("NUMSUB and holders {words}"),
    });
    lookup
}

fn add_receipt(t: &mut Trace, hub: String, at_ms: u64) {
    if !t.receipts.iter().any(|(r, _)| *r == hub) {
        t.receipts.push((hub, at_ms));
    }
}

fn check_complete(t: &mut Trace) {
    if !t.observable() && t.redis_at_ms.is_some() {
        t.complete = true;
    }
    if !t.expected.is_empty() && t.missing().is_empty() {
        t.complete = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "http://a/chat";
    const B: &str = "http://b/chat";

    #[test]
    fn marker_round_trip_survives_json_escaping() {
        for id in [0, 1, 0x1a2b, u64::MAX] {
            let text = format!("hello \"x\" {}", marker(id));
            assert_eq!(find_marker(&text), Some(id));
            let escaped = serde_json::to_string(&text).expect("json");
            assert_eq!(find_marker(&escaped), Some(id));
        }
        assert_eq!(find_marker("[sb-trace ] [sb-trace zz] [sb-trace 2a]"), Some(42));
        assert_eq!(find_marker("[sb-trace 11111111111111111]"), None);
        assert_eq!(find_marker("nothing"), None);
    }

    #[test]
    fn delivered_with_hops() {
        let mut t = Traces::new(10);
        t.on_sent(1, A.into(), SendTarget::All, 1000, vec![A.into(), B.into()]);
        t.on_tap(1, "c", 1003);
        t.on_tap(1, "c", 1009);
        t.on_received(A, 1, 1005);
        assert_eq!(t.get(1).map(|x| x.status(1006)), Some(TraceStatus::Pending));
        t.on_received(B, 1, 1010);
        let x = t.get(1).expect("trace");
        assert!(x.complete);
        assert_eq!(x.status(1011), TraceStatus::Delivered);
        assert_eq!(x.sent_to_redis_ms(), Some(3));
        assert_eq!(x.hops_ms(), vec![(A, 2), (B, 7)]);
        let s = t.summary();
        assert_eq!(
            (s.count, s.delivered, s.p50_ms, s.max_ms),
            (1, 1, Some(10.0), Some(10.0)),
            "per message: the send to its last receipt"
        );
    }

    #[test]
    fn timeout_makes_partial_and_keeps_extras() {
        let mut t = Traces::new(10);
        t.on_sent(
            2,
            A.into(),
            SendTarget::Group("g".into()),
            0,
            vec![A.into(), B.into()],
        );
        t.on_received("http://c/chat", 2, 20);
        t.on_received(A, 2, 30);
        t.tick(4999);
        assert_eq!(t.get(2).map(|x| x.complete), Some(false));
        t.tick(5000);
        let x = t.get(2).expect("trace");
        assert_eq!(
            x.status(5000),
            TraceStatus::Partial {
                missing: vec![B.to_string()]
            }
        );
        assert_eq!(x.extra().len(), 1);
        assert_eq!(
            x.hops_ms(),
            vec![("http://c/chat", 20), (A, 30)],
            "no tap time: from the send"
        );
        assert_eq!(t.summary().partial, 1);
    }

    #[test]
    fn failures_early_events_and_bound() {
        let mut t = Traces::new(2);
        t.on_send_failed(3, A.into(), "refused".into(), 5);
        assert_eq!(
            t.get(3).map(|x| x.status(5)),
            Some(TraceStatus::Failed("refused".into()))
        );
        // Tap and probe beat the Sent event.
        t.on_tap(4, "c", 12);
        t.on_received(B, 4, 15);
        t.on_sent(4, A.into(), SendTarget::User("u".into()), 10, vec![B.into()]);
        let x = t.get(4).expect("trace");
        assert_eq!((x.redis_at_ms, x.status(16)), (Some(12), TraceStatus::Delivered));
        t.on_sent(5, A.into(), SendTarget::All, 20, Vec::new());
        assert_eq!(t.len(), 2);
        assert!(t.get(3).is_none());
        assert_eq!(t.get(5).map(|x| x.status(21)), Some(TraceStatus::Pending));
        assert_eq!(
            t.get(5).map(|x| x.status(6000)),
            Some(TraceStatus::Partial { missing: vec![] })
        );
        assert_eq!(t.recent().map(|x| x.id).collect::<Vec<_>>(), vec![5, 4]);
    }

    #[test]
    fn a_send_to_a_client_that_is_not_a_probe_is_not_observable_never_partial() {
        let mut t = Traces::new(10);
        // The runtime expects no probe for a real user or a real connection id.
        t.on_sent(6, A.into(), SendTarget::User("ann".into()), 100, vec![]);
        t.on_sent(7, A.into(), SendTarget::Connection("c-42".into()), 100, vec![]);
        assert_eq!(t.get(6).map(|x| x.status(101)), Some(TraceStatus::Pending));
        t.on_tap(6, "c", 103);
        let x = t.get(6).expect("trace");
        assert!(x.complete, "Redis's sighting is as far as it can be followed");
        assert_eq!(x.status(104), TraceStatus::NotObservable);
        t.on_lookup(
            6,
            TraceLookup {
                channel: Some("p:H:user:ann".into()),
                subscribers: Some(2),
                holders: vec![B.into()],
                ..TraceLookup::default()
            },
        );
        let x = t.get(6).expect("trace");
        assert_eq!(
            x.lookup.as_ref().map(|l| l.holders.clone()),
            Some(vec![B.to_string()])
        );
        // Without a tap sighting, the deadline still does not make it partial.
        t.tick(100 + DEFAULT_TRACE_TIMEOUT.as_millis() as u64);
        assert_eq!(t.get(7).map(|x| x.status(6000)), Some(TraceStatus::NotObservable));
        let s = t.summary();
        assert_eq!((s.not_observable, s.partial, s.failed, s.p50_ms), (2, 0, 0, None));
    }

    #[test]
    fn a_send_to_a_probe_user_or_connection_is_followed_to_delivery() {
        let mut t = Traces::new(10);
        t.on_sent(
            8,
            A.into(),
            SendTarget::User("switchboard-probe".into()),
            0,
            vec![A.into(), B.into()],
        );
        t.on_sent(
            9,
            A.into(),
            SendTarget::Connection("probe-b".into()),
            0,
            vec![B.into()],
        );
        t.on_received(A, 8, 3);
        t.on_received(B, 8, 4);
        t.on_received(B, 9, 6);
        assert_eq!(t.get(8).map(|x| x.status(7)), Some(TraceStatus::Delivered));
        assert_eq!(t.get(9).map(|x| x.status(7)), Some(TraceStatus::Delivered));
        let s = t.summary();
        assert_eq!((s.delivered, s.p50_ms, s.p95_ms), (2, Some(4.0), Some(6.0)));
        // A connection send whose probe never gets it is partial, naming that node.
        t.on_sent(
            10,
            A.into(),
            SendTarget::Connection("probe-b".into()),
            10,
            vec![B.into()],
        );
        assert_eq!(
            t.get(10).map(|x| x.status(6000)),
            Some(TraceStatus::Partial {
                missing: vec![B.to_string()]
            })
        );
    }

    #[test]
    fn burst_progress_replaces_its_earlier_report_and_is_bounded() {
        let mut t = Traces::new(10);
        let p = |id, sent, state| BurstProgress {
            id,
            node: A.into(),
            sent,
            failed: 0,
            total: 100,
            state,
        };
        t.on_burst(p(1, 10, BurstState::Running), 1);
        t.on_burst(p(1, 37, BurstState::Stopped), 2);
        assert_eq!(
            t.bursts().map(|b| (b.sent, b.state.clone())).collect::<Vec<_>>(),
            vec![(37, BurstState::Stopped)]
        );
        for id in 2..20 {
            t.on_burst(p(id, 1, BurstState::Done), 3);
        }
        assert_eq!(t.bursts().count(), MAX_BURSTS);
        assert_eq!(t.bursts().next().map(|b| b.id), Some(19));
    }

    #[test]
    fn only_running_and_recently_finished_bursts_of_several_messages_are_shown() {
        let mut t = Traces::new(10);
        let p = |id, total, state| BurstProgress {
            id,
            node: A.into(),
            sent: 1,
            failed: 0,
            total,
            state,
        };
        // Three single sends: no line at all.
        for id in 1..=3 {
            t.on_burst(p(id, 1, BurstState::Done), 1_000);
        }
        assert_eq!(t.bursts_shown(1_000).count(), 0);
        assert!(!t.burst_running());
        t.on_burst(p(4, 50, BurstState::Running), 1_000);
        t.on_burst(p(5, 20, BurstState::Done), 1_000);
        assert!(t.burst_running());
        let ids = |t: &Traces, now| t.bursts_shown(now).map(|b| b.id).collect::<Vec<_>>();
        assert_eq!(ids(&t, 2_000), vec![5, 4]);
        // Long after: the finished one is gone, the running one stays.
        assert_eq!(ids(&t, 1_000 + BURST_SHOWN_MS), vec![4]);
        t.on_burst(p(4, 50, BurstState::Stopped), 20_000);
        assert!(!t.burst_running());
        assert_eq!(ids(&t, 20_000 + BURST_SHOWN_MS), Vec::<u64>::new());
    }
}
