//! [`EventSink`]: where every monitor task (tap, probes, sends) puts its events, and
//! [`MonitorEvents`], the UI's end. A bounded pending buffer is drained by one flusher task into a
//! bounded channel; traffic may be dropped (and counted) when the UI falls behind, state changes
//! never. The counters (dropped events, dropped entries, refused commands) reach the status bar.
//!
//! Used by `tap`, `probe` and `runtime`; uses only `config` and the event types, so the tasks
//! that push into it and the runtime that owns it do not import each other.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::MonitorEvent;
use crate::config;

/// Events held for the flusher before new ones are dropped (and counted). Traffic is bounded
/// separately, by entries (`DEFAULT_MONITOR_MAX_IN_FLIGHT`); this bounds the small events (states,
/// stats, traces) for a UI that stopped draining altogether.
const MAX_PENDING_EVENTS: usize = 4096;

/// The receiving end of the monitor's events, for the UI thread (or a test).
pub struct MonitorEvents {
    rx: mpsc::Receiver<Batch>,
    shared: Arc<SinkShared>,
}

/// Events handed over together, with when they were handed over (unix ms): within one flush
/// interval (50 ms) of when they happened, whenever the UI gets round to folding them.
pub type Batch = (u64, Vec<MonitorEvent>);

impl MonitorEvents {
    /// The next batch if one is queued; never waits (for the UI thread).
    pub fn try_recv(&mut self) -> Option<Vec<MonitorEvent>> {
        self.try_recv_stamped().map(|(_, batch)| batch)
    }

    /// The next batch with the time it was handed over, if one is queued; never waits.
    pub fn try_recv_stamped(&mut self) -> Option<Batch> {
        let (at_ms, batch) = self.rx.try_recv().ok()?;
        self.shared.taken(&batch);
        Some((at_ms, batch))
    }

    /// Whether no batch is queued (a batch may still be pending in the sink).
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The next batch, waiting for it; `None` once the runtime has stopped.
    pub async fn recv(&mut self) -> Option<Vec<MonitorEvent>> {
        let (_, batch) = self.rx.recv().await?;
        self.shared.taken(&batch);
        Some(batch)
    }
}

/// Traffic entries in `events`.
fn entries_in(events: &[MonitorEvent]) -> usize {
    events
        .iter()
        .map(|e| match e {
            MonitorEvent::Traffic(entries) => entries.len(),
            _ => 0,
        })
        .sum()
}

/// Called with every batch as it is handed to the UI's channel, on the flusher's task: the
/// dashboard's link uses it to wake the window only for batches that change what it shows (the
/// window never polls; see `monitor::model::wake`). Must not block.
pub type Waker = Box<dyn Fn(&[MonitorEvent]) + Send + Sync>;

#[derive(Default)]
struct Counters {
    dropped_events: AtomicU64,
    dropped_entries: AtomicU64,
    dropped_commands: AtomicU64,
}

struct SinkShared {
    pending: Mutex<Vec<MonitorEvent>>,
    wake: Notify,
    counters: Counters,
    /// Traffic entries decoded but not yet taken by the UI (pending here or queued on the
    /// channel): what bounds the monitor's memory when the UI falls behind.
    in_flight: AtomicUsize,
    /// Told of every batch handed over (set once, by the dashboard's link).
    waker: OnceLock<Waker>,
}

impl SinkShared {
    /// The UI took `batch`: its entries are no longer in flight.
    fn taken(&self, batch: &[MonitorEvent]) {
        self.in_flight.fetch_sub(entries_in(batch), Ordering::Relaxed);
    }
}

/// Where every monitor task puts its events: a bounded pending buffer drained by one flusher.
#[derive(Clone)]
pub struct EventSink {
    shared: Arc<SinkShared>,
}

impl EventSink {
    /// An empty sink; see [`flush_loop`] for the task that drains it.
    pub(crate) fn new() -> EventSink {
        EventSink {
            shared: Arc::new(SinkShared {
                pending: Mutex::new(Vec::new()),
                wake: Notify::new(),
                counters: Counters::default(),
                in_flight: AtomicUsize::new(0),
                waker: OnceLock::new(),
            }),
        }
    }

    /// Sets the function told of every batch handed to the UI (once; later calls are ignored).
    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.shared.waker.set(waker);
    }

    /// The UI's end of the channel `flush_loop` fills.
    pub(crate) fn events(&self, rx: mpsc::Receiver<Batch>) -> MonitorEvents {
        MonitorEvents {
            rx,
            shared: self.shared.clone(),
        }
    }

    /// Counts a command that was refused (its queue was full, or the runtime had stopped).
    pub(crate) fn refused_command(&self) {
        self.shared
            .counters
            .dropped_commands
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Event batches dropped because the UI did not drain them in time, counted in events.
    pub(crate) fn dropped_events(&self) -> u64 {
        self.shared.counters.dropped_events.load(Ordering::Relaxed)
    }

    /// Traffic entries inside the dropped events (and those the tap shed undecoded).
    pub(crate) fn dropped_entries(&self) -> u64 {
        self.shared.counters.dropped_entries.load(Ordering::Relaxed)
    }

    /// Commands refused (see [`refused_command`](Self::refused_command)).
    pub(crate) fn dropped_commands(&self) -> u64 {
        self.shared.counters.dropped_commands.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<MonitorEvent>> {
        // Push and take only: a poisoned buffer is still a valid Vec.
        self.shared.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_dropped(&self, events: &[MonitorEvent]) {
        let counters = &self.shared.counters;
        counters
            .dropped_events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        counters
            .dropped_entries
            .fetch_add(entries_in(events) as u64, Ordering::Relaxed);
    }

    /// Queues one event for the next batch. Traffic is dropped (and counted) when too many entries
    /// are in flight already; other events only when the UI has stopped draining altogether.
    pub(crate) fn push(&self, event: MonitorEvent) {
        if let MonitorEvent::Traffic(entries) = &event {
            let n = entries.len();
            let before = self.shared.in_flight.fetch_add(n, Ordering::Relaxed);
            if before + n > config::DEFAULT_MONITOR_MAX_IN_FLIGHT {
                self.shared.in_flight.fetch_sub(n, Ordering::Relaxed);
                self.count_dropped(std::slice::from_ref(&event));
                return;
            }
        }
        let mut pending = self.lock();
        if pending.len() >= MAX_PENDING_EVENTS {
            drop(pending);
            self.shared.taken(std::slice::from_ref(&event));
            self.count_dropped(std::slice::from_ref(&event));
            return;
        }
        pending.push(event);
        let len = pending.len();
        drop(pending);
        if len >= config::DEFAULT_MONITOR_BATCH {
            self.shared.wake.notify_one();
        }
    }

    /// Counts `n` traffic messages the tap dropped before decoding them (it was behind).
    pub(crate) fn shed(&self, n: usize) {
        self.shared
            .counters
            .dropped_entries
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A node event.
    pub(crate) fn node(&self, hub_url: &str, event: super::NodeEvent) {
        self.push(MonitorEvent::Node {
            hub_url: hub_url.to_string(),
            event,
        });
    }

    /// Hands the pending events to the UI channel as one batch.
    fn flush(&self, tx: &mpsc::Sender<Batch>) {
        let batch = std::mem::take(&mut *self.lock());
        if batch.is_empty() {
            return;
        }
        if let Some(waker) = self.shared.waker.get() {
            waker(&batch);
        }
        if let Err(e) = tx.try_send((super::now_ms(), batch)) {
            let (_, batch) = match e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
            };
            // The UI is behind: drop the traffic (counted, shown), keep the small events (link
            // states, stats, traces) for the next flush so a state change is never lost.
            let (traffic, keep): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|e| matches!(e, MonitorEvent::Traffic(_)));
            self.shared.taken(&traffic);
            self.count_dropped(&traffic);
            let mut pending = self.lock();
            let newer = std::mem::replace(&mut *pending, keep);
            pending.extend(newer);
            if pending.len() > MAX_PENDING_EVENTS {
                let excess = pending.len() - MAX_PENDING_EVENTS;
                let dropped: Vec<_> = pending.drain(..excess).collect();
                drop(pending);
                self.shared.taken(&dropped);
                self.count_dropped(&dropped);
            }
        }
    }
}

/// Hands the pending events to `tx` every flush interval (sooner when a batch fills), until
/// `cancel`; then once more.
pub(crate) async fn flush_loop(sink: EventSink, tx: mpsc::Sender<Batch>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(config::DEFAULT_MONITOR_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
            _ = sink.shared.wake.notified() => {}
        }
        sink.flush(&tx);
    }
    sink.flush(&tx);
}

#[cfg(test)]
mod sink_tests {
    use super::*;
    use crate::monitor::LinkState;
    use crate::monitor::decode;

    fn sink() -> (EventSink, Arc<SinkShared>) {
        let sink = EventSink::new();
        let shared = sink.shared.clone();
        (sink, shared)
    }

    #[test]
    fn the_waker_sees_each_batch_handed_over_and_the_batch_is_stamped() {
        let (sink, shared) = sink();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        sink.set_waker(Box::new(move |events| {
            counter.fetch_add(events.len(), Ordering::Relaxed);
        }));
        let (tx, rx) = mpsc::channel(4);
        let mut events = MonitorEvents { rx, shared };
        assert!(events.is_empty());
        sink.push(traffic(3));
        sink.push(MonitorEvent::Tap {
            state: LinkState::Connected,
            at_ms: 1,
        });
        let before = crate::monitor::now_ms();
        sink.flush(&tx);
        assert_eq!(seen.load(Ordering::Relaxed), 2);
        assert!(!events.is_empty());
        let (at_ms, batch) = events.try_recv_stamped().unwrap();
        assert!(at_ms >= before && at_ms <= crate::monitor::now_ms());
        assert_eq!(batch.len(), 2);
        sink.flush(&tx);
        assert_eq!(
            seen.load(Ordering::Relaxed),
            2,
            "an empty flush hands nothing over"
        );
    }

    fn traffic(n: usize) -> MonitorEvent {
        MonitorEvent::Traffic((0..n).map(|i| decode::decode("", "ch", b"x", i as u64)).collect())
    }

    #[test]
    fn a_full_ui_channel_drops_traffic_but_keeps_state_changes() {
        let (sink, shared) = sink();
        let (tx, rx) = mpsc::channel(1);
        let mut events = MonitorEvents {
            rx,
            shared: shared.clone(),
        };
        sink.push(traffic(10));
        sink.flush(&tx); // the channel is now full
        sink.push(traffic(5));
        sink.push(MonitorEvent::Tap {
            state: LinkState::Connected,
            at_ms: 1,
        });
        sink.flush(&tx);
        assert_eq!(shared.counters.dropped_entries.load(Ordering::Relaxed), 5);
        assert_eq!(shared.in_flight.load(Ordering::Relaxed), 10);

        let first = events.try_recv().unwrap();
        assert_eq!(entries_in(&first), 10);
        assert_eq!(shared.in_flight.load(Ordering::Relaxed), 0);
        sink.flush(&tx);
        let second = events.try_recv().unwrap();
        assert!(matches!(
            second.as_slice(),
            [MonitorEvent::Tap {
                state: LinkState::Connected,
                ..
            }]
        ));
    }

    #[test]
    fn traffic_past_the_in_flight_cap_is_dropped_and_counted() {
        let (sink, shared) = sink();
        sink.push(traffic(config::DEFAULT_MONITOR_MAX_IN_FLIGHT - 1));
        sink.push(traffic(2));
        assert_eq!(shared.counters.dropped_entries.load(Ordering::Relaxed), 2);
        assert_eq!(shared.counters.dropped_events.load(Ordering::Relaxed), 1);
        sink.push(traffic(1));
        assert_eq!(
            shared.in_flight.load(Ordering::Relaxed),
            config::DEFAULT_MONITOR_MAX_IN_FLIGHT
        );
        // Small events still get through.
        sink.push(MonitorEvent::Tap {
            state: LinkState::Idle,
            at_ms: 0,
        });
        assert_eq!(shared.pending.lock().unwrap().len(), 3);
    }
}
