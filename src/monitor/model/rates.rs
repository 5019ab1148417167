//! Message and byte rates per channel kind and per hub: per-second buckets over the last
//! [`DEFAULT_RATE_WINDOW`], from each entry's `at_ms` (the tap's clock), plus totals since start.
//! Memory is bounded: one fixed array of buckets per series, at most [`MAX_HUB_SERIES`] hubs.
//! Pure, std only; time is passed in.

use std::collections::BTreeMap;

use super::entry::{EntryKind, TrafficEntry};
use crate::config::DEFAULT_RATE_WINDOW;

/// Hubs given their own rate series; further hubs still count in the totals. A cluster has a
/// handful of hubs; the cap only guards against a flood of bogus channel names.
pub const MAX_HUB_SERIES: usize = 256;

/// Which series to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RateKey {
    /// Everything (gaps excluded).
    All,
    Kind(EntryKind),
    Hub(String),
}

/// One per-second bucket: (second since the epoch, messages, bytes).
type Bucket = (u64, u64, u64);

#[derive(Debug, Clone)]
struct Series {
    buckets: Vec<Bucket>,
}

impl Series {
    fn new(slots: usize) -> Self {
        Self {
            buckets: vec![(u64::MAX, 0, 0); slots],
        }
    }

    fn add(&mut self, sec: u64, bytes: u64) {
        let len = self.buckets.len() as u64;
        let Some(slot) = self.buckets.get_mut((sec % len) as usize) else {
            return;
        };
        if slot.0 != sec {
            *slot = (sec, 0, 0);
        }
        slot.1 += 1;
        slot.2 += bytes;
    }

    fn at(&self, sec: u64) -> (u64, u64) {
        let len = self.buckets.len() as u64;
        match self.buckets.get((sec % len) as usize) {
            Some(&(s, m, b)) if s == sec => (m, b),
            _ => (0, 0),
        }
    }
}

/// Rates and totals. See the module doc.
#[derive(Debug, Clone)]
pub struct Rates {
    slots: usize,
    all: Series,
    by_kind: BTreeMap<EntryKind, Series>,
    by_hub: BTreeMap<String, Series>,
    totals_kind: BTreeMap<EntryKind, (u64, u64)>,
    totals_hub: BTreeMap<String, (u64, u64)>,
    /// The newest second recorded; entries older than the window before it are not bucketed.
    newest_sec: u64,
    /// Entries too old for the window (counted in the totals only).
    late: u64,
    /// The first second anything was recorded: averages over a span longer than what was seen
    /// so far divide by what was seen (a 1-minute rate 10 s after the start is not a sixth).
    first_sec: Option<u64>,
}

impl Default for Rates {
    fn default() -> Self {
        Self::new()
    }
}

impl Rates {
    /// Empty rates over [`DEFAULT_RATE_WINDOW`].
    pub fn new() -> Self {
        Self::with_window_secs(DEFAULT_RATE_WINDOW.as_secs() as usize)
    }

    /// Empty rates over a window of `secs` seconds (at least 1).
    pub fn with_window_secs(secs: usize) -> Self {
        let slots = secs.max(1);
        Self {
            slots,
            all: Series::new(slots),
            by_kind: BTreeMap::new(),
            by_hub: BTreeMap::new(),
            totals_kind: BTreeMap::new(),
            totals_hub: BTreeMap::new(),
            newest_sec: 0,
            late: 0,
            first_sec: None,
        }
    }

    /// Counts one entry at its `at_ms`. Gap markers are ignored; entries older than the window
    /// (relative to the newest seen) count in the totals only.
    pub fn record(&mut self, entry: &TrafficEntry) {
        if entry.kind == EntryKind::Gap {
            return;
        }
        let bytes = entry.size as u64;
        let sec = entry.at_ms / 1000;
        self.first_sec = Some(self.first_sec.map_or(sec, |f| f.min(sec)));
        let t = self.totals_kind.entry(entry.kind).or_default();
        *t = (t.0 + 1, t.1 + bytes);
        if let Some(hub) = &entry.hub
            && (self.totals_hub.contains_key(hub) || self.totals_hub.len() < MAX_HUB_SERIES)
        {
            let t = self.totals_hub.entry(hub.clone()).or_default();
            *t = (t.0 + 1, t.1 + bytes);
        }
        let sec = entry.at_ms / 1000;
        if sec + (self.slots as u64) <= self.newest_sec {
            self.late += 1;
            return;
        }
        self.newest_sec = self.newest_sec.max(sec);
        let slots = self.slots;
        self.all.add(sec, bytes);
        self.by_kind
            .entry(entry.kind)
            .or_insert_with(|| Series::new(slots))
            .add(sec, bytes);
        if let Some(hub) = &entry.hub {
            if let Some(series) = self.by_hub.get_mut(hub) {
                series.add(sec, bytes);
            } else if self.by_hub.len() < MAX_HUB_SERIES {
                let mut series = Series::new(slots);
                series.add(sec, bytes);
                self.by_hub.insert(hub.clone(), series);
            }
        }
    }

    fn series_of(&self, key: &RateKey) -> Option<&Series> {
        match key {
            RateKey::All => Some(&self.all),
            RateKey::Kind(kind) => self.by_kind.get(kind),
            RateKey::Hub(hub) => self.by_hub.get(hub),
        }
    }

    fn points(&self, key: &RateKey, now_ms: u64, bytes: bool) -> Vec<[f64; 2]> {
        let Some(series) = self.series_of(key) else {
            return Vec::new();
        };
        // Complete seconds only: the current one is still filling and would always dip.
        let now_sec = now_ms / 1000;
        (1..=self.slots as u64)
            .rev()
            .filter_map(|ago| {
                let sec = now_sec.checked_sub(ago)?;
                let (m, b) = series.at(sec);
                Some([-(ago as f64), if bytes { b } else { m } as f64])
            })
            .collect()
    }

    /// Messages per second for each complete second of the window, oldest first, as plot points
    /// `[x, y]` with x = seconds before `now_ms` (negative). Empty for an unknown key.
    pub fn series(&self, key: &RateKey, now_ms: u64) -> Vec<[f64; 2]> {
        self.points(key, now_ms, false)
    }

    /// As [`Rates::series`], in bytes per second.
    pub fn bytes_series(&self, key: &RateKey, now_ms: u64) -> Vec<[f64; 2]> {
        self.points(key, now_ms, true)
    }

    fn average(&self, now_ms: u64, over_secs: u64, bytes: bool) -> f64 {
        let now_sec = now_ms / 1000;
        let seen = self
            .first_sec
            .map_or(1, |first| now_sec.saturating_sub(first).max(1));
        let over = over_secs.clamp(1, self.slots as u64).min(seen);
        let sum: u64 = (1..=over)
            .filter_map(|ago| now_sec.checked_sub(ago))
            .map(|sec| {
                let (m, b) = self.all.at(sec);
                if bytes { b } else { m }
            })
            .sum();
        sum as f64 / over as f64
    }

    /// Average messages per second over the `over_secs` complete seconds before `now_ms`.
    pub fn messages_per_sec(&self, now_ms: u64, over_secs: u64) -> f64 {
        self.average(now_ms, over_secs, false)
    }

    /// Average bytes per second over the `over_secs` complete seconds before `now_ms`.
    pub fn bytes_per_sec(&self, now_ms: u64, over_secs: u64) -> f64 {
        self.average(now_ms, over_secs, true)
    }

    /// Kinds that have a series, in [`EntryKind`] order.
    pub fn kinds(&self) -> Vec<EntryKind> {
        self.by_kind.keys().copied().collect()
    }

    /// Hubs that have a series, sorted.
    pub fn hubs(&self) -> Vec<String> {
        self.by_hub.keys().cloned().collect()
    }

    /// (kind, messages, bytes) since start.
    pub fn totals_by_kind(&self) -> Vec<(EntryKind, u64, u64)> {
        self.totals_kind.iter().map(|(k, (m, b))| (*k, *m, *b)).collect()
    }

    /// (hub, messages, bytes) since start, for at most [`MAX_HUB_SERIES`] hubs.
    pub fn totals_by_hub(&self) -> Vec<(String, u64, u64)> {
        self.totals_hub
            .iter()
            .map(|(h, (m, b))| (h.clone(), *m, *b))
            .collect()
    }

    /// Entries that arrived too late for the window (in the totals, not in the series).
    pub fn late(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_average_divides_by_the_time_seen_so_far() {
        let mut r = Rates::new();
        for s in 100..110u64 {
            for _ in 0..50 {
                r.record(&entry(EntryKind::All, None, s * 1000, 10));
            }
        }
        // 10 complete seconds of 50/s: the 1-minute average is 50/s, not 500/60.
        assert!((r.messages_per_sec(110_000, 60) - 50.0).abs() < 1e-9);
        assert!((r.messages_per_sec(110_000, 5) - 50.0).abs() < 1e-9);
    }

    fn entry(kind: EntryKind, hub: Option<&str>, at_ms: u64, size: usize) -> TrafficEntry {
        let mut e = TrafficEntry::new(at_ms, "", kind, Vec::new());
        e.size = size;
        e.hub = hub.map(str::to_string);
        e
    }

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn buckets_per_second_by_kind_and_hub() {
        let mut r = Rates::new();
        for i in 0..10 {
            r.record(&entry(EntryKind::All, Some("H"), T0 + i * 100, 10));
        }
        r.record(&entry(EntryKind::Group, Some("G"), T0 + 1500, 5));
        r.record(&entry(EntryKind::Gap, None, T0 + 1500, 0));
        let now = T0 + 2000;
        let s = r.series(&RateKey::Kind(EntryKind::All), now);
        assert_eq!(s.len(), 300);
        assert_eq!(s[299], [-1.0, 0.0]);
        assert_eq!(s[298], [-2.0, 10.0]);
        assert_eq!(r.series(&RateKey::All, now)[299], [-1.0, 1.0]);
        assert_eq!(r.bytes_series(&RateKey::Hub("H".into()), now)[298], [-2.0, 100.0]);
        assert_eq!(r.messages_per_sec(now, 2), 5.5);
        assert_eq!(r.bytes_per_sec(now, 1), 5.0);
        assert_eq!(r.kinds(), vec![EntryKind::All, EntryKind::Group]);
        assert_eq!(r.hubs(), vec!["G".to_string(), "H".to_string()]);
        assert_eq!(
            r.totals_by_kind(),
            vec![(EntryKind::All, 10, 100), (EntryKind::Group, 1, 5)]
        );
        assert_eq!(r.totals_by_hub()[1], ("H".to_string(), 10, 100));
        assert!(r.series(&RateKey::Hub("nope".into()), now).is_empty());
    }

    #[test]
    fn old_buckets_expire_and_late_entries_only_count_in_totals() {
        let mut r = Rates::with_window_secs(10);
        r.record(&entry(EntryKind::All, None, T0, 1));
        let later = T0 + 20_000;
        r.record(&entry(EntryKind::All, None, later, 1));
        // The bucket of T0 is outside the window at `later`, even though its slot is reused.
        assert_eq!(
            r.series(&RateKey::All, later + 1000)
                .iter()
                .map(|p| p[1])
                .sum::<f64>(),
            1.0
        );
        r.record(&entry(EntryKind::All, None, T0, 1));
        assert_eq!(r.late(), 1);
        assert_eq!(r.totals_by_kind(), vec![(EntryKind::All, 3, 3)]);
        assert_eq!(r.messages_per_sec(later + 1000, 10), 0.1);
        // Slightly out of order (inside the window) still lands in its bucket.
        r.record(&entry(EntryKind::All, None, later - 3000, 1));
        assert_eq!(r.series(&RateKey::All, later + 1000)[6], [-4.0, 1.0]);
    }
}
