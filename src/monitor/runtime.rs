//! [`MonitorHandle`]: the front of the monitor's tasks. A supervisor task owns the tap task and one
//! probe task per watched node (by hub URL), applies [`MonitorCommand`]s, starts watching nodes the
//! tap discovers from their heartbeats, and runs test sends. Every producer pushes into one
//! [`EventSink`], whose flusher hands batches to the UI on a bounded channel and counts what it had
//! to drop.
//!
//! Called by `link` (the dashboard) and tests. Uses `tap`, `probe` and `client`; never `hub` or `ui`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::probe::{self, ProbeShared};
use super::tap;
use super::{Announcement, LinkState, MonitorCommand, MonitorEvent, NodeTarget};
use crate::config;

/// Events held for the flusher before new ones are dropped (and counted). Traffic is bounded
/// separately, by entries (`DEFAULT_MONITOR_MAX_IN_FLIGHT`); this bounds the small events (states,
/// stats, traces) for a UI that stopped draining altogether.
const MAX_PENDING_EVENTS: usize = 4096;

/// How long shutdown waits for the tap and probe tasks before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Announcements queued from the tap to the supervisor; one per node every 2 s.
const ANNOUNCE_QUEUE: usize = 256;

pub(crate) use super::now_ms;

/// The receiving end of the monitor's events, for the UI thread (or a test).
pub struct MonitorEvents {
    rx: mpsc::Receiver<Vec<MonitorEvent>>,
    shared: Arc<SinkShared>,
}

impl MonitorEvents {
    /// The next batch if one is queued; never waits (for the UI thread).
    pub fn try_recv(&mut self) -> Option<Vec<MonitorEvent>> {
        let batch = self.rx.try_recv().ok()?;
        self.shared.taken(&batch);
        Some(batch)
    }

    /// The next batch, waiting for it; `None` once the runtime has stopped.
    pub async fn recv(&mut self) -> Option<Vec<MonitorEvent>> {
        let batch = self.rx.recv().await?;
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
}

impl SinkShared {
    /// The UI took `batch`: its entries are no longer in flight.
    fn taken(&self, batch: &[MonitorEvent]) {
        self.in_flight.fetch_sub(entries_in(batch), Ordering::Relaxed);
    }
}

/// Where every monitor task puts its events: a bounded pending buffer drained by one flusher.
#[derive(Clone)]
pub(crate) struct EventSink {
    shared: Arc<SinkShared>,
}

impl EventSink {
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
    fn flush(&self, tx: &mpsc::Sender<Vec<MonitorEvent>>) {
        let batch = std::mem::take(&mut *self.lock());
        if batch.is_empty() {
            return;
        }
        if let Err(e) = tx.try_send(batch) {
            let batch = match e {
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

/// The cloneable front of the monitor's tasks (see the module docs).
#[derive(Clone)]
pub struct MonitorHandle {
    cmd_tx: mpsc::Sender<MonitorCommand>,
    sink: EventSink,
    cancel: CancellationToken,
    stopped: watch::Receiver<bool>,
}

impl std::fmt::Debug for MonitorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorHandle").finish_non_exhaustive()
    }
}

impl MonitorHandle {
    /// Starts the runtime's tasks; call inside a tokio runtime. Nothing is watched until commands
    /// arrive.
    pub fn start() -> (MonitorHandle, MonitorEvents) {
        let (events_tx, events_rx) = mpsc::channel(config::DEFAULT_MONITOR_EVENT_QUEUE);
        let (cmd_tx, cmd_rx) = mpsc::channel(config::DEFAULT_MONITOR_COMMAND_QUEUE);
        let (stopped_tx, stopped) = watch::channel(false);
        let sink = EventSink {
            shared: Arc::new(SinkShared {
                pending: Mutex::new(Vec::new()),
                wake: Notify::new(),
                counters: Counters::default(),
                in_flight: AtomicUsize::new(0),
            }),
        };
        let cancel = CancellationToken::new();
        let supervisor = Supervisor {
            sink: sink.clone(),
            cancel: cancel.clone(),
            tap: None,
            nodes: HashMap::new(),
            removed: HashSet::new(),
            bursts: cancel.child_token(),
            // A random start, so two dashboards on one backplane never share trace ids.
            next_trace: Arc::new(AtomicU64::new((rand::random::<u32>() as u64) << 16 | 1)),
        };
        let flusher_cancel = CancellationToken::new();
        let flusher = tokio::spawn(flush_loop(sink.clone(), events_tx, flusher_cancel.clone()));
        tokio::spawn(async move {
            supervisor.run(cmd_rx).await;
            flusher_cancel.cancel();
            let _ = flusher.await;
            let _ = stopped_tx.send(true);
        });
        let handle = MonitorHandle {
            cmd_tx,
            sink,
            cancel,
            stopped,
        };
        let shared = handle.sink.shared.clone();
        (
            handle,
            MonitorEvents {
                rx: events_rx,
                shared,
            },
        )
    }

    /// Queues a command without waiting; `false` (and counted) when the queue is full or the
    /// runtime has stopped.
    pub fn command(&self, cmd: MonitorCommand) -> bool {
        if self.cmd_tx.try_send(cmd).is_ok() {
            return true;
        }
        self.sink
            .shared
            .counters
            .dropped_commands
            .fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Event batches dropped because the UI did not drain them in time, counted in events.
    pub fn dropped_events(&self) -> u64 {
        self.sink.shared.counters.dropped_events.load(Ordering::Relaxed)
    }

    /// Traffic entries inside the dropped events.
    pub fn dropped_entries(&self) -> u64 {
        self.sink.shared.counters.dropped_entries.load(Ordering::Relaxed)
    }

    /// Commands refused because the command queue was full.
    pub fn dropped_commands(&self) -> u64 {
        self.sink.shared.counters.dropped_commands.load(Ordering::Relaxed)
    }

    /// Cancels every task (tap, probes, bursts); see [`stopped`](Self::stopped).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Resolves once every task has ended after [`shutdown`](Self::shutdown) (bounded: tasks that
    /// do not end within a few seconds are abandoned).
    pub async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
    }
}

async fn flush_loop(sink: EventSink, tx: mpsc::Sender<Vec<MonitorEvent>>, cancel: CancellationToken) {
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

struct TapTask {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// One watched node.
struct Watched {
    target: NodeTarget,
    shared: Arc<ProbeShared>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

struct Supervisor {
    sink: EventSink,
    cancel: CancellationToken,
    tap: Option<TapTask>,
    nodes: HashMap<String, Watched>,
    /// Nodes the user removed this session: discovery does not bring them back.
    removed: HashSet<String>,
    /// Parent of every running burst; replaced by StopBursts.
    bursts: CancellationToken,
    next_trace: Arc<AtomicU64>,
}

impl Supervisor {
    async fn run(mut self, mut cmd_rx: mpsc::Receiver<MonitorCommand>) {
        let (announce_tx, mut announce_rx) = mpsc::channel::<Announcement>(ANNOUNCE_QUEUE);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                cmd = cmd_rx.recv() => match cmd {
                    Some(cmd) => self.apply(cmd, &announce_tx).await,
                    None => break,
                },
                Some(announcement) = announce_rx.recv() => self.discovered(announcement),
            }
        }
        self.stop_all().await;
    }

    async fn apply(&mut self, cmd: MonitorCommand, announce_tx: &mpsc::Sender<Announcement>) {
        match cmd {
            MonitorCommand::SetTap(source) => {
                self.stop_tap().await;
                match source {
                    None => self.sink.push(MonitorEvent::Tap {
                        state: LinkState::Idle,
                        at_ms: now_ms(),
                    }),
                    Some(source) => {
                        let cancel = self.cancel.child_token();
                        let task = tokio::spawn(tap::run(
                            source,
                            self.sink.clone(),
                            announce_tx.clone(),
                            cancel.clone(),
                        ));
                        self.tap = Some(TapTask { cancel, task });
                    }
                }
            }
            MonitorCommand::AddNode(target) => {
                self.removed.remove(&target.hub_url);
                self.watch(target);
            }
            MonitorCommand::RemoveNode(hub_url) => {
                self.removed.insert(hub_url.clone());
                if let Some(watched) = self.nodes.remove(&hub_url) {
                    watched.cancel.cancel();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, watched.task).await;
                    self.sink.node(&hub_url, super::NodeEvent::State(LinkState::Idle));
                }
            }
            MonitorCommand::Send(request) => {
                let probes: Vec<(String, Arc<ProbeShared>)> = self
                    .nodes
                    .iter()
                    .map(|(url, w)| (url.clone(), w.shared.clone()))
                    .collect();
                let node_cancel = self.nodes.get(&request.node).map(|w| w.cancel.clone());
                probe::spawn_send(
                    request,
                    probes,
                    self.sink.clone(),
                    self.next_trace.clone(),
                    node_cancel,
                    self.bursts.clone(),
                );
            }
            MonitorCommand::StopBursts => {
                self.bursts.cancel();
                self.bursts = self.cancel.child_token();
            }
        }
    }

    fn discovered(&mut self, a: Announcement) {
        if a.hub_url.is_empty() || self.removed.contains(&a.hub_url) || self.nodes.contains_key(&a.hub_url) {
            return;
        }
        let monitor_url =
            (!a.url.is_empty()).then(|| format!("{}/switchboard/stats", a.url.trim_end_matches('/')));
        tracing::info!(hub_url = %a.hub_url, node = %a.node_name, "discovered a node from its heartbeat");
        self.watch(NodeTarget {
            hub_url: a.hub_url,
            monitor_url,
        });
    }

    fn watch(&mut self, target: NodeTarget) {
        if let Some(existing) = self.nodes.get(&target.hub_url) {
            if existing.target == target {
                return;
            }
            // Same hub URL with another monitor URL: restart its probe.
            existing.cancel.cancel();
        }
        let cancel = self.cancel.child_token();
        let shared = Arc::new(ProbeShared::default());
        let task = tokio::spawn(probe::run(
            target.clone(),
            shared.clone(),
            self.sink.clone(),
            cancel.clone(),
        ));
        self.nodes.insert(
            target.hub_url.clone(),
            Watched {
                target,
                shared,
                cancel,
                task,
            },
        );
    }

    async fn stop_tap(&mut self) {
        if let Some(tap) = self.tap.take() {
            tap.cancel.cancel();
            if tokio::time::timeout(SHUTDOWN_GRACE, tap.task).await.is_err() {
                tracing::warn!("the tap did not stop within {SHUTDOWN_GRACE:?}");
            }
        }
    }

    async fn stop_all(&mut self) {
        self.cancel.cancel();
        self.stop_tap().await;
        let tasks: Vec<JoinHandle<()>> = self.nodes.drain().map(|(_, w)| w.task).collect();
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!("some probes did not stop within {SHUTDOWN_GRACE:?}");
        }
    }
}

#[cfg(test)]
mod sink_tests {
    use super::*;
    use crate::monitor::decode;

    fn sink() -> (EventSink, Arc<SinkShared>) {
        let shared = Arc::new(SinkShared {
            pending: Mutex::new(Vec::new()),
            wake: Notify::new(),
            counters: Counters::default(),
            in_flight: AtomicUsize::new(0),
        });
        (
            EventSink {
                shared: shared.clone(),
            },
            shared,
        )
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
