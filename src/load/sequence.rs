//! What one receiver saw of one sender's numbered messages: distinct arrivals, duplicates, and
//! arrivals out of order. Loss is what the sender sent minus the distinct arrivals.
//!
//! Pure, std only; used by `load`'s client tasks (one tracker per receiver and sender).

use std::collections::BTreeSet;

/// A gap larger than this between the last sequence number and a new one is not believed: the
/// message is counted as foreign instead of filling the gap set (a sender of this run sends far
/// fewer messages than this in the bounded run time).
pub const MAX_GAP: u64 = 1_000_000;

/// The verdict on one arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next or a later number than any seen before (a gap may have been left).
    InOrder,
    /// A number skipped earlier that arrived late: delivered, but out of order.
    Reordered,
    /// A number already seen.
    Duplicate,
    /// A number impossibly far ahead: not counted.
    Implausible,
}

/// One receiver's view of one sender.
#[derive(Debug, Default, Clone)]
pub struct SequenceTracker {
    /// One past the highest number seen.
    next: u64,
    /// Numbers below `next` not seen yet.
    missing: BTreeSet<u64>,
    /// Distinct numbers seen.
    pub distinct: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl SequenceTracker {
    /// Records the arrival of `seq`.
    pub fn arrive(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            if seq - self.next > MAX_GAP {
                return Arrival::Implausible;
            }
            self.missing.extend(self.next..seq);
            self.next = seq + 1;
            self.distinct += 1;
            Arrival::InOrder
        } else if self.missing.remove(&seq) {
            self.distinct += 1;
            self.reordered += 1;
            Arrival::Reordered
        } else {
            self.duplicates += 1;
            Arrival::Duplicate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_arrivals_are_distinct_and_clean() {
        let mut t = SequenceTracker::default();
        for seq in 0..100 {
            assert_eq!(t.arrive(seq), Arrival::InOrder);
        }
        assert_eq!((t.distinct, t.duplicates, t.reordered), (100, 0, 0));
    }

    #[test]
    fn a_late_arrival_is_reordered_a_repeat_is_a_duplicate_and_a_gap_is_loss() {
        let mut t = SequenceTracker::default();
        assert_eq!(t.arrive(0), Arrival::InOrder);
        assert_eq!(t.arrive(3), Arrival::InOrder); // 1 and 2 skipped
        assert_eq!(t.arrive(2), Arrival::Reordered);
        assert_eq!(t.arrive(2), Arrival::Duplicate);
        assert_eq!(t.arrive(3), Arrival::Duplicate);
        assert_eq!(t.arrive(0), Arrival::Duplicate);
        assert_eq!((t.distinct, t.duplicates, t.reordered), (3, 3, 1));
        // The sender sent 0..=4: 1 and 4 never came.
        assert_eq!(5 - t.distinct, 2);
    }

    #[test]
    fn an_implausible_jump_is_refused_without_allocating_the_gap() {
        let mut t = SequenceTracker::default();
        assert_eq!(t.arrive(u64::MAX - 1), Arrival::Implausible);
        assert_eq!(t.arrive(MAX_GAP + 1), Arrival::Implausible);
        assert_eq!(t.distinct, 0);
        assert!(t.missing.is_empty());
        assert_eq!(t.arrive(0), Arrival::InOrder);
    }
}
