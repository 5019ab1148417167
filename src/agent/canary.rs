//! The agent's continuous canary, as pure bookkeeping: which canary (trace) was sent through which
//! node, which nodes have received it, and per (from, to) pair the sent and lost counts, the
//! delivery-time histogram and the last success. No clock (every call takes `now_ms`), no I/O:
//! the agent's loop (`agent::run`) feeds it the monitor runtime's `Sent`, `SendFailed` and
//! `ProbeReceived` events and asks it when to send the next round.
//!
//! Bounded: at most `max_pairs` pairs (more are counted in [`Canaries::dropped_pairs`]) and at
//! most `max_pending` canaries waiting (past it the oldest is decided at once). A canary whose
//! receipts do not all arrive within the timeout counts as lost for each pair still missing; a
//! send the node refused (its probe is down) counts as sent and lost for every pair from it, so
//! the canary of a dead node fails rather than going quiet.
//!
//! Pairs are keyed by hub URL (stable across a node's renames); the exposition maps them to the
//! names the model shows. Uses std only.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The delivery histogram's upper bounds, in seconds (the contract's buckets; `+Inf` implied).
pub const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// One (from, to) pair's figures.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PairStats {
    pub sent: u64,
    pub lost: u64,
    /// Deliveries per bucket of [`BUCKETS`] (not cumulative; one more slot for `+Inf`).
    pub buckets: [u64; BUCKETS.len() + 1],
    /// Deliveries (the histogram's `_count`).
    pub count: u64,
    /// Sum of delivery times in seconds (the histogram's `_sum`).
    pub sum_secs: f64,
    /// When the last canary of this pair was received (unix ms).
    pub last_success_ms: Option<u64>,
    /// The pair's latest decided canary: when it was sent, and its delivery time (`None`: lost).
    pub last_result: Option<(u64, Option<u64>)>,
}

impl PairStats {
    fn delivered(&mut self, sent_at_ms: u64, at_ms: u64) {
        let took_ms = at_ms.saturating_sub(sent_at_ms);
        let secs = took_ms as f64 / 1000.0;
        let slot = BUCKETS.iter().position(|le| secs <= *le).unwrap_or(BUCKETS.len());
        self.buckets[slot] += 1;
        self.count += 1;
        self.sum_secs += secs;
        self.last_success_ms = Some(self.last_success_ms.map_or(at_ms, |t| t.max(at_ms)));
        self.last_result = Some((sent_at_ms, Some(took_ms)));
    }

    fn lost(&mut self, sent_at_ms: u64) {
        self.lost += 1;
        self.last_result = Some((sent_at_ms, None));
    }
}

/// One canary waiting for receipts.
#[derive(Debug, Clone)]
struct Pending {
    from: String,
    sent_at_ms: u64,
    /// The nodes that have not received it yet.
    waiting: BTreeSet<String>,
}

/// The canary's state (see the module docs).
#[derive(Debug)]
pub struct Canaries {
    interval_ms: u64,
    timeout_ms: u64,
    max_pairs: usize,
    max_pending: usize,
    pending: HashMap<u64, Pending>,
    pairs: BTreeMap<(String, String), PairStats>,
    next_round_ms: u64,
    dropped_pairs: u64,
}

/// A decided canary for the health rules: `from` and `to` hub URLs, and its delivery time
/// (`None`: lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub from: String,
    pub to: String,
    pub received_after_ms: Option<u64>,
}

impl Canaries {
    pub fn new(interval_ms: u64, timeout_ms: u64, max_pairs: usize, max_pending: usize) -> Self {
        Canaries {
            interval_ms: interval_ms.max(1),
            timeout_ms,
            max_pairs,
            max_pending: max_pending.max(1),
            pending: HashMap::new(),
            pairs: BTreeMap::new(),
            next_round_ms: 0,
            dropped_pairs: 0,
        }
    }

    /// Whether a round is due at `now_ms`; when it is, the next one is scheduled an interval
    /// later (not from the missed slot: a stalled loop sends one round, not a burst).
    pub fn round_due(&mut self, now_ms: u64) -> bool {
        if now_ms < self.next_round_ms {
            return false;
        }
        self.next_round_ms = now_ms + self.interval_ms;
        true
    }

    /// Canary `trace` was handed to node `from` at `at_ms`; `to` is every watched node.
    pub fn on_sent(&mut self, trace: u64, from: &str, to: &[String], at_ms: u64) {
        if self.pending.len() >= self.max_pending
            && let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(t, p)| (p.sent_at_ms, **t))
                .map(|(t, _)| *t)
        {
            self.decide(oldest);
        }
        let mut waiting = BTreeSet::new();
        for node in to {
            if let Some(pair) = self.pair(from, node) {
                pair.sent += 1;
                waiting.insert(node.clone());
            }
        }
        if !waiting.is_empty() {
            self.pending.insert(
                trace,
                Pending {
                    from: from.to_string(),
                    sent_at_ms: at_ms,
                    waiting,
                },
            );
        }
    }

    /// Sending canary `trace` through `from` failed. A canary already handed to the node is left
    /// to its timeout (its receipts may still come); one the node never got is lost for every
    /// pair from `from` at once (counted; its result is not one the `canary` rule judges, which
    /// would blame the receivers for the sender's death).
    pub fn on_send_failed(&mut self, trace: u64, from: &str, to: &[String]) {
        if self.pending.contains_key(&trace) {
            return;
        }
        for node in to {
            if let Some(pair) = self.pair(from, node) {
                // Counted, but not a result for the health rules: a message that never entered
                // the backplane says nothing about `node` (the sender's own finding does).
                pair.sent += 1;
                pair.lost += 1;
            }
        }
    }

    /// Node `to`'s probe received canary `trace` at `at_ms`. A receipt after the timeout counts as
    /// lost, as it would had the timeout been checked first; an unknown trace is ignored.
    pub fn on_received(&mut self, trace: u64, to: &str, at_ms: u64) {
        let Some(p) = self.pending.get_mut(&trace) else {
            return;
        };
        if !p.waiting.remove(to) {
            return;
        }
        let (from, sent_at_ms) = (p.from.clone(), p.sent_at_ms);
        let on_time = at_ms.saturating_sub(sent_at_ms) <= self.timeout_ms;
        if p.waiting.is_empty() {
            self.pending.remove(&trace);
        }
        if let Some(pair) = self.pairs.get_mut(&(from, to.to_string())) {
            if on_time {
                pair.delivered(sent_at_ms, at_ms);
            } else {
                pair.lost(sent_at_ms);
            }
        }
    }

    /// Decides every canary whose timeout has passed at `now_ms`: each pair still missing lost.
    pub fn expire(&mut self, now_ms: u64) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.sent_at_ms) > self.timeout_ms)
            .map(|(t, _)| *t)
            .collect();
        for trace in due {
            self.decide(trace);
        }
    }

    fn decide(&mut self, trace: u64) {
        let Some(p) = self.pending.remove(&trace) else {
            return;
        };
        for to in p.waiting {
            if let Some(pair) = self.pairs.get_mut(&(p.from.clone(), to)) {
                pair.lost(p.sent_at_ms);
            }
        }
    }

    /// The pair's figures, created when there is room.
    fn pair(&mut self, from: &str, to: &str) -> Option<&mut PairStats> {
        let key = (from.to_string(), to.to_string());
        if !self.pairs.contains_key(&key) && self.pairs.len() >= self.max_pairs {
            self.dropped_pairs += 1;
            return None;
        }
        Some(self.pairs.entry(key).or_default())
    }

    /// Every pair's figures, by (from, to) hub URL.
    pub fn pairs(&self) -> &BTreeMap<(String, String), PairStats> {
        &self.pairs
    }

    /// Canaries waiting for receipts.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Pair figures not kept because the cap was reached.
    pub fn dropped_pairs(&self) -> u64 {
        self.dropped_pairs
    }

    /// The latest decided canary of each pair whose canary was sent within `window_ms` before
    /// `now_ms`: what the health rules' `canary` rule judges (so a pair that recovered clears,
    /// and a pair no longer sent to is forgotten).
    pub fn recent(&self, now_ms: u64, window_ms: u64) -> Vec<Decided> {
        self.pairs
            .iter()
            .filter_map(|((from, to), p)| {
                let (sent_at, took) = p.last_result?;
                (now_ms.saturating_sub(sent_at) <= window_ms).then(|| Decided {
                    from: from.clone(),
                    to: to.clone(),
                    received_after_ms: took,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn canaries() -> Canaries {
        Canaries::new(1_000, 5_000, 100, 10)
    }

    fn pair<'a>(c: &'a Canaries, from: &str, to: &str) -> &'a PairStats {
        c.pairs().get(&(from.to_string(), to.to_string())).expect("pair")
    }

    #[test]
    fn a_received_canary_lands_in_its_bucket_and_a_missing_one_is_lost_after_the_timeout() {
        let mut c = canaries();
        c.on_sent(1, "a", &nodes(&["a", "b"]), 10_000);
        c.on_received(1, "a", 10_003);
        c.on_received(1, "a", 10_004); // a duplicate receipt counts once
        assert_eq!(c.pending(), 1);
        c.expire(15_000);
        assert_eq!(c.pending(), 1, "the timeout is not over yet");
        c.expire(15_001);
        assert_eq!(c.pending(), 0);
        let aa = pair(&c, "a", "a");
        assert_eq!((aa.sent, aa.lost, aa.count), (1, 0, 1));
        assert_eq!(aa.buckets[0], 1, "3 ms is in the 5 ms bucket");
        assert!((aa.sum_secs - 0.003).abs() < 1e-9);
        assert_eq!(aa.last_success_ms, Some(10_003));
        let ab = pair(&c, "a", "b");
        assert_eq!((ab.sent, ab.lost, ab.count, ab.last_success_ms), (1, 1, 0, None));
        assert_eq!(ab.last_result, Some((10_000, None)));
    }

    #[test]
    fn bucket_edges_are_inclusive_and_slow_receipts_past_the_timeout_are_lost() {
        let mut c = canaries();
        c.on_sent(1, "a", &nodes(&["a"]), 0);
        c.on_received(1, "a", 10);
        c.on_sent(2, "a", &nodes(&["a"]), 100);
        c.on_received(2, "a", 100 + 5_000);
        c.on_sent(3, "a", &nodes(&["a"]), 200);
        c.on_received(3, "a", 200 + 5_001);
        let aa = pair(&c, "a", "a");
        assert_eq!(aa.buckets[1], 1, "10 ms is le=0.01");
        assert_eq!(aa.buckets[9], 1, "5 s is le=5");
        assert_eq!(aa.buckets[10], 0, "nothing is counted past the timeout");
        assert_eq!((aa.sent, aa.count, aa.lost), (3, 2, 1));
    }

    #[test]
    fn a_refused_send_is_lost_for_every_pair_from_the_node_at_once() {
        let mut c = canaries();
        c.on_send_failed(7, "dead", &nodes(&["dead", "b"]));
        assert_eq!(c.pending(), 0);
        for to in ["dead", "b"] {
            let p = pair(&c, "dead", to);
            assert_eq!((p.sent, p.lost, p.last_result), (1, 1, None));
        }
        assert!(c.recent(50, 10_000).is_empty(), "not judged by the canary rule");
        // A failure after the send was handed over waits for the timeout instead.
        c.on_sent(8, "b", &nodes(&["b"]), 100);
        c.on_send_failed(8, "b", &nodes(&["b"]));
        c.on_received(8, "b", 102);
        assert_eq!(pair(&c, "b", "b").lost, 0);
    }

    #[test]
    fn pairs_and_pending_canaries_are_bounded() {
        let mut c = Canaries::new(1_000, 5_000, 3, 2);
        c.on_sent(1, "a", &nodes(&["a", "b", "c", "d"]), 0);
        assert_eq!(c.pairs().len(), 3);
        assert_eq!(c.dropped_pairs(), 1);
        c.on_sent(2, "a", &nodes(&["a"]), 10);
        c.on_sent(3, "a", &nodes(&["a"]), 20);
        assert_eq!(c.pending(), 2, "the oldest was decided to make room");
        let ab = pair(&c, "a", "b");
        assert_eq!(ab.lost, 1, "canary 1 was lost for the pairs that missed it");
        // Receipts of a decided canary are ignored.
        c.on_received(1, "a", 30);
        assert_eq!(pair(&c, "a", "a").count, 0);
    }

    #[test]
    fn rounds_are_spaced_by_the_interval_without_catching_up() {
        let mut c = canaries();
        assert!(c.round_due(5_000));
        assert!(!c.round_due(5_999));
        assert!(c.round_due(6_000));
        assert!(c.round_due(60_000), "a stalled loop sends one round");
        assert!(!c.round_due(60_500));
    }

    #[test]
    fn recent_gives_each_pairs_latest_result_within_the_window() {
        let mut c = canaries();
        c.on_sent(1, "a", &nodes(&["a", "b"]), 1_000);
        c.on_received(1, "b", 1_020);
        c.expire(7_000);
        let mut recent = c.recent(7_000, 10_000);
        recent.sort_by(|x, y| x.to.cmp(&y.to));
        assert_eq!(
            recent,
            vec![
                Decided {
                    from: "a".into(),
                    to: "a".into(),
                    received_after_ms: None
                },
                Decided {
                    from: "a".into(),
                    to: "b".into(),
                    received_after_ms: Some(20)
                },
            ]
        );
        // The pair recovers: its latest result is a delivery.
        c.on_sent(2, "a", &nodes(&["a"]), 8_000);
        c.on_received(2, "a", 8_001);
        assert!(
            c.recent(8_100, 10_000)
                .iter()
                .all(|d| d.received_after_ms.is_some())
        );
        assert!(c.recent(100_000, 10_000).is_empty(), "old results are forgotten");
    }
}
