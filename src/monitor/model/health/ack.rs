//! Acknowledgements of health findings: an operator's one-line note on a finding, keyed on its
//! rule, hub, subject and a hash of its evidence (so it lapses when the evidence changes), kept
//! in a bounded list. `health::Evaluation::apply_acks` sets acknowledged findings apart.
//!
//! Pure, std only; time is an input. Used by `health` and the Health view.

use super::Finding;

/// What an acknowledgement is keyed on: the rule, the hub and subject, and a hash of the
/// evidence lines, so an ack lapses as soon as the evidence changes (a new outage, other
/// numbers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AckKey {
    pub rule: &'static str,
    pub hub: Option<String>,
    pub subject: Option<String>,
    pub evidence_hash: u64,
}

impl AckKey {
    pub fn of(f: &Finding) -> AckKey {
        use std::hash::{Hash, Hasher};
        // Fixed keys (not a random state): the same evidence hashes the same all session.
        let mut h = std::hash::DefaultHasher::new();
        f.evidence.hash(&mut h);
        AckKey {
            rule: f.rule,
            hub: f.hub.clone(),
            subject: f.subject.clone(),
            evidence_hash: h.finish(),
        }
    }
}

/// An operator's acknowledgement of one finding: a short note and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub note: String,
    pub at_ms: u64,
}

/// Most characters kept of an acknowledgement's note (a one-line field).
pub const ACK_NOTE_MAX_CHARS: usize = 200;

/// The acknowledgements, bounded to [`crate::config::DEFAULT_MAX_ACKS`] (the oldest goes).
#[derive(Debug, Clone, Default)]
pub struct Acks {
    acks: std::collections::VecDeque<(AckKey, Ack)>,
}

impl Acks {
    /// Acknowledges `finding` with `note` (one line, trimmed, at most [`ACK_NOTE_MAX_CHARS`]);
    /// a second ack of the same finding replaces the first.
    pub fn acknowledge(&mut self, finding: &Finding, note: &str, now_ms: u64) {
        let key = AckKey::of(finding);
        self.acks.retain(|(k, _)| *k != key);
        let note: String = note
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .chars()
            .take(ACK_NOTE_MAX_CHARS)
            .collect();
        self.acks.push_back((key, Ack { note, at_ms: now_ms }));
        while self.acks.len() > crate::config::DEFAULT_MAX_ACKS {
            self.acks.pop_front();
        }
    }

    /// Withdraws the acknowledgement of `finding`; whether there was one.
    pub fn withdraw(&mut self, finding: &Finding) -> bool {
        let key = AckKey::of(finding);
        let before = self.acks.len();
        self.acks.retain(|(k, _)| *k != key);
        self.acks.len() != before
    }

    pub fn get(&self, key: &AckKey) -> Option<&Ack> {
        self.acks.iter().find(|(k, _)| k == key).map(|(_, a)| a)
    }

    pub fn len(&self) -> usize {
        self.acks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }
}
