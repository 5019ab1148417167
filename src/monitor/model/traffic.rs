//! The captured stream: the ring of [`TrafficEntry`], its totals, the filter, the kinds hidden
//! from the view ("Hide heartbeat rows"), pause, offline browsing, and the filtered newest-first
//! view the traffic table reads every frame.
//!
//! Cost per frame is O(1) per visible row: an index of the seqs that match the filter is kept
//! up to date as entries arrive (each tested once) and are evicted (dropped from the front); it is
//! rebuilt only when the filter (or the hidden kinds) changes. Pure, std only, no clocks.
//!
//! Offline mode: [`Traffic::load`] puts a capture file's entries in a second store and the view
//! (len, visible, get, iter, hubs, pause, clear) switches to it. Live entries keep arriving in the
//! live store and keep being counted in [`Traffic::totals`], but never mix into the capture's
//! view; [`Traffic::close_offline`] drops the capture and shows the live store again.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

pub use super::entry::hms_utc;
use super::entry::{EntryKind, TrafficEntry};
use super::ring::Ring;

/// What the traffic table shows. Empty text / channel and `None` match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Case-insensitive substring of the summary, method, args, scope, channel or error.
    pub text: String,
    pub kind: Option<EntryKind>,
    /// Exact hub name.
    pub hub: Option<String>,
    /// Channel substring, or with `*` a glob over the whole channel name (case-sensitive, as
    /// Redis channel names are).
    pub channel: String,
}

impl Filter {
    /// Whether nothing is filtered out.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.kind.is_none() && self.hub.is_none() && self.channel.is_empty()
    }

    /// Whether `entry` passes the filter.
    pub fn matches(&self, entry: &TrafficEntry) -> bool {
        if self.kind.is_some_and(|k| k != entry.kind) {
            return false;
        }
        if let Some(hub) = &self.hub
            && entry.hub.as_deref() != Some(hub.as_str())
        {
            return false;
        }
        if !self.channel.is_empty() {
            let ok = if self.channel.contains('*') {
                glob(&self.channel, &entry.channel)
            } else {
                entry.channel.contains(&self.channel)
            };
            if !ok {
                return false;
            }
        }
        if self.text.is_empty() {
            return true;
        }
        let needle = self.text.to_lowercase();
        [
            Some(entry.summary.as_str()),
            entry.method.as_deref(),
            entry.args.as_deref(),
            entry.scope.as_deref(),
            Some(entry.channel.as_str()),
            entry.error.as_deref(),
        ]
        .into_iter()
        .flatten()
        .any(|hay| contains_ci(hay, &needle))
    }
}

/// Case-insensitive `hay.contains(needle)` for a lowercase needle; no allocation for ASCII needles.
fn contains_ci(hay: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
    } else {
        hay.to_lowercase().contains(needle)
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Counts since the dashboard started, over live traffic only (offline browsing and `clear` do
/// not reset them). Gap markers are not messages and are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub messages: u64,
    pub bytes: u64,
    /// Entries pushed out of the ring by its limits.
    pub evicted: u64,
    pub evicted_bytes: u64,
    /// Entries removed by [`Traffic::clear`].
    pub cleared: u64,
}

/// One set of entries with its filter index (the live stream, or a loaded capture). Entries are
/// held in `Arc`s so an export can take a snapshot of 100,000 of them in a frame for the cost of
/// the reference counts, and serialize it on another thread.
#[derive(Debug)]
struct Store {
    ring: Ring<Arc<TrafficEntry>>,
    /// Seqs of the entries that match the filter, ascending.
    index: VecDeque<u64>,
    next_seq: u64,
    hubs: BTreeSet<String>,
    /// While paused: the view shows only seqs up to this one.
    pin: Option<u64>,
}

impl Store {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            ring: Ring::with_budget(max_entries, Some(max_bytes), |e: &Arc<TrafficEntry>| {
                e.payload.len()
            }),
            index: VecDeque::new(),
            next_seq: 1,
            hubs: BTreeSet::new(),
            pin: None,
        }
    }

    /// Stores `entry` (its seq already set) and returns what the ring evicted (entries, bytes).
    fn insert(&mut self, entry: TrafficEntry, filter: &View) -> (u64, u64) {
        if let Some(hub) = &entry.hub
            && !self.hubs.contains(hub)
        {
            self.hubs.insert(hub.clone());
        }
        self.next_seq = self.next_seq.max(entry.seq + 1);
        if filter.shows(&entry) {
            self.index.push_back(entry.seq);
        }
        let (before, before_bytes) = (self.ring.evicted(), self.ring.evicted_weight());
        self.ring.push(Arc::new(entry));
        if let Some(oldest) = self.ring.front().map(|e| e.seq) {
            while self.index.front().is_some_and(|&s| s < oldest) {
                self.index.pop_front();
            }
        }
        (
            self.ring.evicted() - before,
            self.ring.evicted_weight() - before_bytes,
        )
    }

    fn rebuild(&mut self, filter: &View) {
        self.index = self
            .ring
            .iter()
            .filter(|e| filter.shows(e))
            .map(|e| e.seq)
            .collect();
    }

    fn visible_len(&self) -> usize {
        match self.pin {
            Some(pin) => self.index.partition_point(|&s| s <= pin),
            None => self.index.len(),
        }
    }

    fn get(&self, seq: u64) -> Option<&TrafficEntry> {
        let deque = self.ring.as_deque();
        deque
            .binary_search_by_key(&seq, |e| e.seq)
            .ok()
            .and_then(|i| deque.get(i))
            .map(|e| &**e)
    }
}

/// What the view shows: the filter, and the kinds hidden from the table ("Hide heartbeat rows"),
/// kept apart from [`Filter`] because the tap's command line builds a `Filter` too and has no use
/// for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct View {
    filter: Filter,
    hidden: Vec<EntryKind>,
}

impl View {
    fn shows(&self, entry: &TrafficEntry) -> bool {
        !self.hidden.contains(&entry.kind) && self.filter.matches(entry)
    }

    fn rebuild_all(&self, live: &mut Store, offline: &mut Option<(String, Store)>) {
        live.rebuild(self);
        if let Some((_, store)) = offline {
            store.rebuild(self);
        }
    }
}

/// The captured stream. See the module doc for live vs offline.
#[derive(Debug)]
pub struct Traffic {
    live: Store,
    offline: Option<(String, Store)>,
    filter: View,
    totals: Totals,
    max_entries: usize,
    max_bytes: usize,
}

impl Traffic {
    /// A stream keeping at most `max_entries` entries and `max_bytes` payload bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            live: Store::new(max_entries, max_bytes),
            offline: None,
            filter: View::default(),
            totals: Totals::default(),
            max_entries,
            max_bytes,
        }
    }

    fn active(&self) -> &Store {
        self.offline.as_ref().map_or(&self.live, |(_, s)| s)
    }

    fn active_mut(&mut self) -> &mut Store {
        match &mut self.offline {
            Some((_, store)) => store,
            None => &mut self.live,
        }
    }

    /// Stores a live entry, assigning its seq (returned), and counts it.
    pub fn push(&mut self, mut entry: TrafficEntry) -> u64 {
        let seq = self.live.next_seq;
        entry.seq = seq;
        if entry.kind != EntryKind::Gap {
            self.totals.messages += 1;
            self.totals.bytes += entry.size as u64;
        }
        let (evicted, bytes) = self.live.insert(entry, &self.filter);
        self.totals.evicted += evicted;
        self.totals.evicted_bytes += bytes;
        seq
    }

    /// Stores a gap marker: the tap saw nothing from `from_ms` to `to_ms`; `now_ms` is when the
    /// marker is inserted (its `at_ms`). Returns its seq.
    pub fn push_gap(&mut self, from_ms: u64, to_ms: u64, now_ms: u64) -> u64 {
        self.push(TrafficEntry::gap_marker(from_ms, to_ms, now_ms))
    }

    /// Stores a failover marker (shown like a gap): `summary` says who became primary of what;
    /// the failover happened between `from_ms` (the last poll with the old primary) and `to_ms`
    /// (the first with the new one). Its channel is [`FAILOVER_CHANNEL`]. Returns its seq.
    pub fn push_failover(&mut self, from_ms: u64, to_ms: u64, summary: String, now_ms: u64) -> u64 {
        let mut entry = TrafficEntry::new(now_ms, FAILOVER_CHANNEL, EntryKind::Gap, Vec::new());
        entry.summary = summary;
        entry.gap = Some((from_ms, to_ms));
        self.push(entry)
    }

    /// Empties what is shown: the live ring (or, offline, the capture's view). Totals keep
    /// counting (the removed entries are added to `cleared`), seqs keep increasing, the filter
    /// and pause stay as they were.
    pub fn clear(&mut self) {
        let removed = self.active().ring.len() as u64;
        if self.offline.is_none() {
            self.totals.cleared += removed;
        }
        let store = self.active_mut();
        store.ring.clear();
        store.index.clear();
    }

    /// Pauses (pins the view at the newest entry shown now) or resumes. While paused, entries are
    /// still stored and counted; the view shows only those up to the pin (minus evicted ones).
    pub fn set_paused(&mut self, paused: bool) {
        let store = self.active_mut();
        store.pin = if paused {
            Some(store.next_seq.saturating_sub(1))
        } else {
            None
        };
    }

    /// Whether the view is paused.
    pub fn paused(&self) -> bool {
        self.active().pin.is_some()
    }

    /// Replaces the filter and rebuilds the index (the one O(n) operation).
    pub fn set_filter(&mut self, filter: Filter) {
        if filter == self.filter.filter {
            return;
        }
        self.filter.filter = filter;
        self.filter.rebuild_all(&mut self.live, &mut self.offline);
    }

    /// The current filter.
    pub fn filter(&self) -> &Filter {
        &self.filter.filter
    }

    /// Hides the rows of these kinds from the view whatever the filter says (or, empty, none);
    /// rebuilds the index when it changes.
    pub fn set_hidden_kinds(&mut self, kinds: Vec<EntryKind>) {
        if kinds == self.filter.hidden {
            return;
        }
        self.filter.hidden = kinds;
        self.filter.rebuild_all(&mut self.live, &mut self.offline);
    }

    /// The kinds hidden from the view.
    pub fn hidden_kinds(&self) -> &[EntryKind] {
        &self.filter.hidden
    }

    /// How many rows the view has.
    pub fn visible_len(&self) -> usize {
        self.active().visible_len()
    }

    /// Rows the pause holds back: matching entries that arrived after the view was pinned.
    pub fn held_back(&self) -> usize {
        let store = self.active();
        store.index.len() - store.visible_len()
    }

    /// Row `i` of the view, 0 = the newest matching entry.
    pub fn visible(&self, i: usize) -> Option<&TrafficEntry> {
        let store = self.active();
        let len = store.visible_len();
        let seq = *store.index.get(len.checked_sub(i + 1)?)?;
        store.get(seq)
    }

    /// The entry with this seq, if still held.
    pub fn get(&self, seq: u64) -> Option<&TrafficEntry> {
        self.active().get(seq)
    }

    /// Every held entry, oldest first, unfiltered.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &TrafficEntry> {
        self.active().ring.iter().map(|e| &**e)
    }

    /// Every held entry, oldest first, unfiltered, shared: what an export serializes on another
    /// thread (costs one reference count per entry on the UI thread, no copy).
    pub fn snapshot(&self) -> Vec<Arc<TrafficEntry>> {
        self.active().ring.iter().cloned().collect()
    }

    /// Distinct hubs seen (for the filter's combo box), sorted.
    pub fn hubs(&self) -> impl Iterator<Item = &str> {
        self.active().hubs.iter().map(String::as_str)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.active().ring.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.active().ring.weight()
    }

    /// Live counts since start.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Live messages seen since start (`totals().messages`).
    pub fn total_seen(&self) -> u64 {
        self.totals.messages
    }

    /// Live entries evicted by the ring limits since start (`totals().evicted`).
    pub fn evicted(&self) -> u64 {
        self.totals.evicted
    }

    /// The `n`th newest entry held, ignoring the filter and pause (0 = newest).
    pub fn latest(&self, n: usize) -> Option<&TrafficEntry> {
        let ring = &self.active().ring;
        ring.get(ring.len().checked_sub(n + 1)?).map(|e| &**e)
    }

    /// Switches to offline browsing of `entries` (a capture read from file `name`), oldest first.
    /// Their seqs are kept when strictly increasing, else renumbered from 1. Replaces any capture
    /// already open. The ring limits apply (the oldest beyond them are dropped).
    pub fn load(&mut self, entries: Vec<TrafficEntry>, name: impl Into<String>) {
        let mut store = Store::new(self.max_entries, self.max_bytes);
        let increasing =
            entries.windows(2).all(|w| w[0].seq < w[1].seq) && entries.first().is_none_or(|e| e.seq > 0);
        for (i, mut entry) in entries.into_iter().enumerate() {
            if !increasing {
                entry.seq = i as u64 + 1;
            }
            store.insert(entry, &self.filter);
        }
        self.offline = Some((name.into(), store));
    }

    /// Leaves offline browsing: the live stream is shown again.
    pub fn close_offline(&mut self) {
        self.offline = None;
    }

    /// The capture being browsed, if offline.
    pub fn offline(&self) -> Option<&str> {
        self.offline.as_ref().map(|(name, _)| name.as_str())
    }
}

/// The channel of a failover marker (not a Redis channel: no channel name contains a space).
pub const FAILOVER_CHANNEL: &str = "(redis failover)";

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: EntryKind, hub: &str, summary: &str, size: usize) -> TrafficEntry {
        let mut e = TrafficEntry::new(1, format!("app:{hub}:{}", kind.label()), kind, vec![0; size]);
        e.hub = Some(hub.to_string());
        e.summary = summary.to_string();
        e
    }

    fn visible_summaries(t: &Traffic) -> Vec<String> {
        (0..t.visible_len())
            .filter_map(|i| t.visible(i))
            .map(|e| e.summary.clone())
            .collect()
    }

    #[test]
    fn push_assigns_seq_and_view_is_newest_first() {
        let mut t = Traffic::new(10, 1000);
        assert_eq!(t.push(entry(EntryKind::All, "H", "a", 3)), 1);
        assert_eq!(t.push(entry(EntryKind::All, "H", "b", 4)), 2);
        assert_eq!(visible_summaries(&t), vec!["b", "a"]);
        assert_eq!(t.get(1).map(|e| e.summary.as_str()), Some("a"));
        assert_eq!(
            (t.len(), t.bytes(), t.totals().messages, t.totals().bytes),
            (2, 7, 2, 7)
        );
        assert!(t.visible(2).is_none());
    }

    #[test]
    fn filter_is_incremental_and_rebuilt_on_change() {
        let mut t = Traffic::new(100, 10_000);
        t.push(entry(EntryKind::All, "A", "Hello World", 1));
        t.push(entry(EntryKind::Group, "B", "other", 1));
        t.set_filter(Filter {
            text: "WORLD".into(),
            ..Filter::default()
        });
        assert_eq!(visible_summaries(&t), vec!["Hello World"]);
        t.push(entry(EntryKind::Group, "B", "world again", 1));
        t.push(entry(EntryKind::Group, "B", "nope", 1));
        assert_eq!(visible_summaries(&t), vec!["world again", "Hello World"]);
        t.set_filter(Filter {
            kind: Some(EntryKind::Group),
            hub: Some("B".into()),
            ..Filter::default()
        });
        assert_eq!(visible_summaries(&t), vec!["nope", "world again", "other"]);
        t.set_filter(Filter {
            channel: "app:*:gr*p".into(),
            ..Filter::default()
        });
        assert_eq!(t.visible_len(), 3);
        t.set_filter(Filter {
            channel: "A:all".into(),
            ..Filter::default()
        });
        assert_eq!(visible_summaries(&t), vec!["Hello World"]);
        assert_eq!(t.hubs().collect::<Vec<_>>(), vec!["A", "B"]);
    }

    #[test]
    fn hidden_kinds_leave_the_view_until_shown_again() {
        let mut t = Traffic::new(100, 10_000);
        t.push(entry(EntryKind::All, "A", "hello", 1));
        t.push(entry(EntryKind::Heartbeat, "A", "beat", 1));
        t.set_hidden_kinds(vec![EntryKind::Heartbeat]);
        assert_eq!(visible_summaries(&t), vec!["hello"]);
        // New rows of a hidden kind stay out; the filter still applies on top.
        t.push(entry(EntryKind::Heartbeat, "A", "beat again", 1));
        t.push(entry(EntryKind::All, "A", "world", 1));
        assert_eq!(visible_summaries(&t), vec!["world", "hello"]);
        t.set_filter(Filter {
            text: "world".into(),
            ..Filter::default()
        });
        assert_eq!(visible_summaries(&t), vec!["world"]);
        t.set_filter(Filter::default());
        t.set_hidden_kinds(Vec::new());
        assert_eq!(t.visible_len(), 4);
        assert!(t.hidden_kinds().is_empty());
        // Paused, new rows are held back and counted.
        t.set_paused(true);
        assert_eq!(t.held_back(), 0);
        t.push(entry(EntryKind::All, "A", "later", 1));
        t.push(entry(EntryKind::Heartbeat, "A", "beat later", 1));
        assert_eq!((t.visible_len(), t.held_back()), (4, 2));
        t.set_hidden_kinds(vec![EntryKind::Heartbeat]);
        assert_eq!(t.held_back(), 1);
        t.set_paused(false);
        assert_eq!(t.held_back(), 0);
    }

    #[test]
    fn eviction_drops_from_the_index_and_is_counted() {
        let mut t = Traffic::new(3, 1000);
        for i in 0..5 {
            t.push(entry(EntryKind::All, "H", &format!("m{i}"), 10));
        }
        assert_eq!(visible_summaries(&t), vec!["m4", "m3", "m2"]);
        assert_eq!(
            (t.totals().evicted, t.totals().evicted_bytes, t.totals().messages),
            (2, 20, 5)
        );
        assert!(t.get(1).is_none());
        let mut t = Traffic::new(100, 25);
        for i in 0..4 {
            t.push(entry(EntryKind::All, "H", &format!("m{i}"), 10));
        }
        assert_eq!((t.len(), t.bytes()), (2, 20));
    }

    #[test]
    fn pause_pins_the_view_and_keeps_counting() {
        let mut t = Traffic::new(4, 1000);
        t.push(entry(EntryKind::All, "H", "a", 1));
        t.push(entry(EntryKind::All, "H", "b", 1));
        t.set_paused(true);
        t.push(entry(EntryKind::All, "H", "c", 1));
        assert!(t.paused());
        assert_eq!(visible_summaries(&t), vec!["b", "a"]);
        assert_eq!(t.totals().messages, 3);
        t.push(entry(EntryKind::All, "H", "d", 1));
        t.push(entry(EntryKind::All, "H", "e", 1));
        assert_eq!(visible_summaries(&t), vec!["b"], "a was evicted");
        t.set_paused(false);
        assert_eq!(visible_summaries(&t), vec!["e", "d", "c", "b"]);
    }

    #[test]
    fn clear_keeps_totals_and_seq() {
        let mut t = Traffic::new(10, 1000);
        t.push(entry(EntryKind::All, "H", "a", 1));
        t.clear();
        assert_eq!(
            (t.len(), t.visible_len(), t.totals().messages, t.totals().cleared),
            (0, 0, 1, 1)
        );
        assert_eq!(t.push(entry(EntryKind::All, "H", "b", 1)), 2);
    }

    #[test]
    fn gap_entry() {
        let mut t = Traffic::new(10, 1000);
        let from = (12 * 3600 + 60 + 3) * 1000;
        let seq = t.push_gap(from, from + 6000, from + 6500);
        let e = t.get(seq).expect("gap");
        assert_eq!(e.summary, "no data 12:01:03 to 12:01:09");
        assert_eq!(
            (e.kind, e.gap, e.at_ms),
            (EntryKind::Gap, Some((from, from + 6000)), from + 6500)
        );
        assert_eq!(t.totals().messages, 0);
        assert_eq!(hms_utc(86_400_000 + 5000), "00:00:05");
    }

    #[test]
    fn failover_marker_is_a_gap_row_with_its_own_words() {
        let mut t = Traffic::new(10, 1000);
        let seq = t.push_failover(1000, 6000, "failover: b became primary".into(), 6001);
        let e = t.get(seq).expect("marker");
        assert_eq!(
            (e.kind, e.gap, e.channel.as_str(), e.summary.as_str()),
            (
                EntryKind::Gap,
                Some((1000, 6000)),
                FAILOVER_CHANNEL,
                "failover: b became primary"
            )
        );
        assert_eq!(t.totals().messages, 0, "a marker is not a message");
    }

    #[test]
    fn offline_view_is_separate_from_live() {
        let mut t = Traffic::new(10, 1000);
        t.push(entry(EntryKind::All, "Live", "live1", 1));
        let mut loaded = vec![
            entry(EntryKind::All, "Cap", "cap1", 1),
            entry(EntryKind::All, "Cap", "cap2", 1),
        ];
        loaded[0].seq = 40;
        loaded[1].seq = 41;
        t.load(loaded, "x.jsonl");
        assert_eq!(t.offline(), Some("x.jsonl"));
        t.push(entry(EntryKind::All, "Live", "live2", 1));
        assert_eq!(visible_summaries(&t), vec!["cap2", "cap1"]);
        assert_eq!(t.get(41).map(|e| e.summary.as_str()), Some("cap2"));
        assert_eq!(t.hubs().collect::<Vec<_>>(), vec!["Cap"]);
        assert_eq!(t.totals().messages, 2);
        t.close_offline();
        assert_eq!(visible_summaries(&t), vec!["live2", "live1"]);
        // Non-increasing seqs are renumbered.
        let two = vec![
            entry(EntryKind::All, "C", "a", 1),
            entry(EntryKind::All, "C", "b", 1),
        ];
        t.load(two, "y");
        assert_eq!(t.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn glob_and_case_insensitive_text() {
        assert!(glob("a*c", "abc") && glob("a*", "a") && glob("*", "") && glob("ab", "ab"));
        assert!(!glob("a*c", "abd") && !glob("ab", "abc") && !glob("a*bc*bc", "abc"));
        assert!(contains_ci("ÉCOLE hello", "hello") && contains_ci("ÉCOLE", "école"));
    }
}
