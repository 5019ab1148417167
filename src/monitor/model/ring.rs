//! A bounded ring buffer that counts what it evicts: at most `max_len` items and, optionally, at
//! most a total weight (bytes, say) measured by a weight function. The oldest items go first.
//! Used by the traffic model; pure, std only.

use std::collections::VecDeque;

/// A FIFO of at most `max_len` items (and at most `max_weight` total weight, when set). Pushing
/// past either limit evicts from the front. The newest item is always kept, even if it alone
/// weighs more than the budget, so nothing is refused.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    items: VecDeque<T>,
    max_len: usize,
    max_weight: Option<usize>,
    weigh: fn(&T) -> usize,
    weight: usize,
    evicted: u64,
    evicted_weight: u64,
}

impl<T> Ring<T> {
    /// A ring of at most `max_len` items (at least 1), without a weight budget.
    pub fn new(max_len: usize) -> Self {
        Self::with_budget(max_len, None, |_| 0)
    }

    /// A ring of at most `max_len` items and, with `Some`, at most `max_weight` total weight as
    /// measured by `weigh` (which must give the same answer for an item every time).
    pub fn with_budget(max_len: usize, max_weight: Option<usize>, weigh: fn(&T) -> usize) -> Self {
        Self {
            items: VecDeque::new(),
            max_len: max_len.max(1),
            max_weight,
            weigh,
            weight: 0,
            evicted: 0,
            evicted_weight: 0,
        }
    }

    /// Appends `item`, evicting from the front as needed; returns how many items were evicted.
    pub fn push(&mut self, item: T) -> usize {
        self.weight += (self.weigh)(&item);
        self.items.push_back(item);
        let mut evicted = 0;
        while self.items.len() > 1
            && (self.items.len() > self.max_len || self.max_weight.is_some_and(|max| self.weight > max))
        {
            if let Some(old) = self.items.pop_front() {
                let w = (self.weigh)(&old);
                self.weight -= w;
                self.evicted += 1;
                self.evicted_weight += w as u64;
                evicted += 1;
            }
        }
        evicted
    }

    /// Removes every item (not counted as evictions).
    pub fn clear(&mut self) {
        self.items.clear();
        self.weight = 0;
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the ring holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Total weight held.
    pub fn weight(&self) -> usize {
        self.weight
    }

    /// Items evicted since creation.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Weight evicted since creation.
    pub fn evicted_weight(&self) -> u64 {
        self.evicted_weight
    }

    /// The item at position `i`, 0 = oldest.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.items.get(i)
    }

    /// The oldest item.
    pub fn front(&self) -> Option<&T> {
        self.items.front()
    }

    /// The newest item.
    pub fn back(&self) -> Option<&T> {
        self.items.back()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter()
    }

    /// The underlying deque, for binary searches.
    pub fn as_deque(&self) -> &VecDeque<T> {
        &self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_past_the_length_limit() {
        let mut r = Ring::new(3);
        for i in 0..3 {
            assert_eq!(r.push(i), 0);
        }
        assert_eq!(r.push(3), 1);
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!((r.evicted(), r.front(), r.back()), (1, Some(&1), Some(&3)));
    }

    #[test]
    fn weight_budget_evicts_and_keeps_the_newest() {
        let mut r: Ring<Vec<u8>> = Ring::with_budget(100, Some(10), |v| v.len());
        r.push(vec![0; 4]);
        r.push(vec![0; 4]);
        assert_eq!((r.len(), r.weight()), (2, 8));
        assert_eq!(r.push(vec![0; 4]), 1);
        assert_eq!((r.len(), r.weight(), r.evicted_weight()), (2, 8, 4));
        // Heavier than the whole budget: everything else goes, the item stays.
        assert_eq!(r.push(vec![0; 50]), 2);
        assert_eq!(
            (r.len(), r.weight(), r.evicted(), r.evicted_weight()),
            (1, 50, 3, 12)
        );
        r.push(vec![0; 1]);
        assert_eq!((r.len(), r.weight()), (1, 1));
    }

    #[test]
    fn clear_is_not_eviction_and_zero_len_means_one() {
        let mut r = Ring::new(0);
        r.push('a');
        r.push('b');
        assert_eq!((r.len(), r.get(0)), (1, Some(&'b')));
        r.clear();
        assert!(r.is_empty());
        assert_eq!((r.evicted(), r.weight()), (1, 0));
    }
}
