//! Message and byte rates per channel kind and per hub: per-second buckets over the last
//! [`DEFAULT_RATE_WINDOW`], from each entry's `at_ms` (the tap's clock), plus totals since start.
//! Memory is bounded: one fixed array of buckets per series, at most [`MAX_HUB_SERIES`] hubs.
//!
//! Also the arithmetic the charts and the node table share: [`CounterRates`] (a windowed rate
//! from sampled counters), [`smooth`] (a trailing mean over N seconds), [`clip_bursts`] (a y
//! limit that one burst cannot flatten the rest with) and the log-scale mapping [`log_y`].
//! Pure, std only; time is passed in.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

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

    /// When the newest counted message arrived, to the second (unix ms); `None` before any.
    pub fn newest_ms(&self) -> Option<u64> {
        self.first_sec.map(|_| self.newest_sec * 1000)
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

/// Rates from `N` monotonically increasing counters sampled now and then (a node's stats every
/// 500 ms): the rate is the counters' growth between the oldest and the newest sample inside the
/// window, divided by the time between them. One 500 ms delta of a 16 msg/s stream reads 0, 16
/// or 32; ten of them together read 16.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterRates<const N: usize> {
    window_ms: u64,
    samples: VecDeque<(u64, [u64; N])>,
}

impl<const N: usize> CounterRates<N> {
    /// Rates over `window` (at least one sample interval is needed to say anything).
    pub fn new(window: Duration) -> Self {
        Self {
            window_ms: window.as_millis().max(1) as u64,
            samples: VecDeque::new(),
        }
    }

    /// Adds a sample taken at `at_ms`. A sample not newer than the last is ignored (the same
    /// snapshot twice); a counter that went down means the source restarted, so the older
    /// samples are dropped and the rates start again from this one.
    pub fn push(&mut self, at_ms: u64, counters: [u64; N]) {
        if let Some((last_at, last)) = self.samples.back() {
            if at_ms <= *last_at {
                return;
            }
            if counters.iter().zip(last).any(|(c, l)| c < l) {
                self.samples.clear();
            }
        }
        self.samples.push_back((at_ms, counters));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| t + self.window_ms < at_ms)
        {
            self.samples.pop_front();
        }
    }

    /// Per-second rates over the samples in the window; `None` until two samples span some time.
    pub fn rates(&self) -> Option<[f64; N]> {
        let (first_at, first) = self.samples.front()?;
        let (last_at, last) = self.samples.back()?;
        if last_at <= first_at {
            return None;
        }
        let secs = (last_at - first_at) as f64 / 1000.0;
        let mut out = [0.0; N];
        for (o, (l, f)) in out.iter_mut().zip(last.iter().zip(first)) {
            *o = l.saturating_sub(*f) as f64 / secs;
        }
        Some(out)
    }

    /// The time the rates span (newest sample minus oldest).
    pub fn span(&self) -> Duration {
        match (self.samples.front(), self.samples.back()) {
            (Some((a, _)), Some((b, _))) => Duration::from_millis(b - a),
            _ => Duration::ZERO,
        }
    }
}

/// Chart smoothing the Rates panel offers: a trailing mean over this many seconds.
pub const SMOOTHING_CHOICES: [u64; 3] = [1, 5, 30];

/// A trailing mean of per-second points over `secs` points (1 = unchanged): each output point is
/// the mean of itself and the `secs - 1` before it (fewer at the start). At a steady 2 msg/s the
/// per-second counts read 1, 3, 2, 0, 4…; over 5 s they read 2.
pub fn smooth(points: &[[f64; 2]], secs: u64) -> Vec<[f64; 2]> {
    let n = secs.max(1) as usize;
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            sum += p[1];
            if i >= n {
                sum -= points[i - n][1];
            }
            let count = (i + 1).min(n) as f64;
            [p[0], sum / count]
        })
        .collect()
}

/// Where a linear chart's y axis stops so one burst does not flatten the rest: `None` (no clip)
/// unless the largest value is more than 4× the 90th percentile of the non-zero values (and
/// there are at least 10 of them); then 2× that percentile. Points above are drawn at the limit
/// and marked as clipped.
pub fn clip_limit<'a>(series: impl IntoIterator<Item = &'a [[f64; 2]]>) -> Option<f64> {
    let mut values: Vec<f64> = series
        .into_iter()
        .flat_map(|s| s.iter().map(|p| p[1]))
        .filter(|v| *v > 0.0)
        .collect();
    if values.len() < 10 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let p90 = values[(values.len() - 1) * 9 / 10];
    let max = values[values.len() - 1];
    (max > 4.0 * p90).then_some(2.0 * p90)
}

/// `points` with every y above `limit` lowered to it, and the points that were (at the limit,
/// for a marker).
pub fn clip_bursts(points: &[[f64; 2]], limit: f64) -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
    let mut clipped = Vec::new();
    let kept = points
        .iter()
        .map(|p| {
            if p[1] > limit {
                clipped.push([p[0], limit]);
                [p[0], limit]
            } else {
                *p
            }
        })
        .collect();
    (kept, clipped)
}

/// The log-scale chart's y for a rate: linear from 0 to 1, then 1 + log10(v), so 0 stays at 0,
/// and 1, 10, 100… sit at the whole numbers 1, 2, 3… (where the chart's grid lines are).
pub fn log_y(v: f64) -> f64 {
    let v = v.max(0.0);
    if v <= 1.0 { v } else { 1.0 + v.log10() }
}

/// The rate at a log-scale chart's y (the inverse of [`log_y`]).
pub fn from_log_y(y: f64) -> f64 {
    if y <= 1.0 { y.max(0.0) } else { 10f64.powf(y - 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_rates_read_a_steady_stream_steadily() {
        // 16 msg/s, but in the lumps a 500 ms snapshot sees: 12, 12, 0, 8, 8, 0, 4, 0 ... per
        // half second (the out/s readings 24, 24, 0, 16, 16, 0, 8, 0 were these × 2).
        let lumps = [12u64, 12, 0, 8, 8, 0, 4, 0, 12, 24];
        let mut r = CounterRates::<1>::new(Duration::from_secs(5));
        assert_eq!(r.rates(), None);
        let mut total = 0;
        let mut readings = Vec::new();
        for i in 0..60u64 {
            total += lumps[(i % 10) as usize];
            r.push(10_000 + i * 500, [total]);
            if i >= 10 {
                readings.push(r.rates().expect("a rate")[0]);
            }
        }
        // Every reading once the window is full: 16 ± 2.5, never 0.
        for v in &readings {
            assert!((*v - 16.0).abs() <= 2.5, "{readings:?}");
        }
        assert_eq!(r.span(), Duration::from_secs(5));
        // The same snapshot twice changes nothing; a restart (counter down) starts again.
        r.push(10_000 + 59 * 500, [0]);
        assert!(r.rates().is_some());
        r.push(50_000, [3]);
        assert_eq!(r.rates(), None, "one sample after a restart says nothing yet");
        r.push(51_000, [13]);
        assert_eq!(r.rates(), Some([10.0]));
    }

    #[test]
    fn smoothing_removes_the_low_rate_sawtooth() {
        let raw: Vec<[f64; 2]> = (0..20)
            .map(|i| [i as f64, if i % 2 == 0 { 0.0 } else { 4.0 }])
            .collect();
        assert_eq!(smooth(&raw, 1), raw);
        let five = smooth(&raw, 5);
        assert_eq!(five[0], [0.0, 0.0]);
        assert_eq!(five[1], [1.0, 2.0]);
        for p in &five[5..] {
            assert!((p[1] - 2.0).abs() <= 0.4, "{five:?}");
        }
        let thirty = smooth(&raw, 30);
        assert_eq!(thirty.len(), 20);
        assert!((thirty[19][1] - 2.0).abs() < 1e-9);
    }

    #[test]
    fn one_burst_is_clipped_and_marked() {
        let mut points: Vec<[f64; 2]> = (0..60).map(|i| [i as f64, 10.0 + (i % 3) as f64]).collect();
        assert_eq!(
            clip_limit([points.as_slice()]),
            None,
            "steady traffic is not clipped"
        );
        points[30][1] = 5000.0;
        let limit = clip_limit([points.as_slice()]).expect("a burst");
        assert_eq!(limit, 24.0);
        let (kept, clipped) = clip_bursts(&points, limit);
        assert_eq!(clipped, vec![[30.0, 24.0]]);
        assert_eq!(kept[30], [30.0, 24.0]);
        assert_eq!(kept[29], points[29]);
        // Too few values to tell a burst from the traffic.
        assert_eq!(clip_limit([&points[25..32]]), None);
    }

    #[test]
    fn log_scale_round_trips() {
        assert_eq!(log_y(0.0), 0.0);
        assert_eq!(log_y(0.5), 0.5);
        assert_eq!(log_y(1.0), 1.0);
        assert!((log_y(10.0) - 2.0).abs() < 1e-12);
        assert!((log_y(1000.0) - 4.0).abs() < 1e-12);
        assert!((from_log_y(log_y(1234.5)) - 1234.5).abs() < 1e-6);
        assert!((from_log_y(3.0) - 100.0).abs() < 1e-9);
        assert_eq!(log_y(-3.0), 0.0);
    }

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
