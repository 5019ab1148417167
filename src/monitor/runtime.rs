//! [`MonitorHandle`]: the front of the monitor's tasks. A supervisor task owns the tap task and one
//! probe task per watched node (by hub URL), applies [`MonitorCommand`]s, starts watching nodes the
//! tap discovers from their heartbeats, and runs test sends. Every producer pushes into one
//! [`EventSink`], whose flusher hands batches to the UI on a bounded channel and counts what it had
//! to drop.
//!
//! Secrets go to trusted nodes only (`model::trust`): the monitor token and the node token are
//! sent to nodes the operator named (`AddNode`, `TrustNode`) or whose hub URL matches the trust
//! rules (`--trust-nodes`). A node known only from a heartbeat is watched without any token, and
//! at most [`config::DEFAULT_MAX_DISCOVERED_NODES`] of those are kept; more, and heartbeats with
//! URLs that are not web URLs or that carry a user or password, are only counted
//! ([`MonitorEvent::Discovery`]). Heartbeats on the demo's in-process bus come from the demo's own
//! nodes only: those nodes are trusted.
//!
//! Called by `link` (the dashboard) and tests. Uses `tap`, `probe` and `client`; never `hub` or `ui`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::model::trust::{TrustRules, acceptable_announcement};
use super::probe::{self, ProbeShared};
pub use super::sink::MonitorEvents;
use super::sink::{self, EventSink};
use super::tap;
use super::{Announcement, DiscoveryCounts, LinkState, MonitorCommand, MonitorEvent, NodeEvent, NodeTarget};
use crate::client::NodeTls;
use crate::config;
use crate::node_token::NodeCredentials;

/// Hub URLs remembered as over the cap (so a node heartbeating every 2 s is counted once); past
/// this many each heartbeat is counted again, which keeps the memory bounded.
const OVER_CAP_REMEMBERED: usize = 4096;

/// How long shutdown waits for the tap and probe tasks before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Announcements queued from the tap to the supervisor; one per node every 2 s.
const ANNOUNCE_QUEUE: usize = 256;

use super::now_ms;

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

/// How the runtime reaches nodes. `Default`: `https://` nodes verified against the system's roots.
#[derive(Debug, Clone, Default)]
pub struct MonitorOptions {
    /// What `https://`/`wss://` nodes are verified against (the dashboard's `--node-ca`), for
    /// every probe, monitor link, RTT request, test send and trace lookup.
    pub node_tls: Option<NodeTls>,
    /// The bearer the probe clients present to trusted nodes (`--node-token`,
    /// `--node-jwt-secret-file`; the demo's minted tokens). Never saved.
    pub node_credentials: NodeCredentials,
    /// Discovered nodes whose hub URL matches get the tokens (`--trust-nodes`); replaced by
    /// [`MonitorCommand::SetTrustRules`].
    pub trust_rules: TrustRules,
}

impl MonitorHandle {
    /// Starts the runtime's tasks with the default options; call inside a tokio runtime.
    /// Nothing is watched until commands arrive.
    pub fn start() -> (MonitorHandle, MonitorEvents) {
        Self::start_with(MonitorOptions::default())
    }

    /// [`start`](Self::start) with options (the node CA).
    pub fn start_with(options: MonitorOptions) -> (MonitorHandle, MonitorEvents) {
        let (events_tx, events_rx) = mpsc::channel(config::DEFAULT_MONITOR_EVENT_QUEUE);
        let (cmd_tx, cmd_rx) = mpsc::channel(config::DEFAULT_MONITOR_COMMAND_QUEUE);
        let (stopped_tx, stopped) = watch::channel(false);
        let sink = EventSink::new();
        let cancel = CancellationToken::new();
        let supervisor = Supervisor {
            sink: sink.clone(),
            cancel: cancel.clone(),
            tap: None,
            nodes: HashMap::new(),
            removed: HashSet::new(),
            tap_source: None,
            lookups: super::numsub::Limiter::default(),
            node_tls: options.node_tls,
            bursts: cancel.child_token(),
            // A random start, so two dashboards on one backplane never share trace ids.
            next_trace: Arc::new(AtomicU64::new((rand::random::<u32>() as u64) << 16 | 1)),
            monitor_token: None,
            node_credentials: options.node_credentials,
            trust_rules: options.trust_rules,
            counts: DiscoveryCounts::default(),
            in_process_tap: false,
            over_cap: HashSet::new(),
            directory: cancel.child_token(),
            directory_limiter: super::numsub::Limiter::default(),
        };
        let flusher_cancel = CancellationToken::new();
        let flusher = tokio::spawn(sink::flush_loop(sink.clone(), events_tx, flusher_cancel.clone()));
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
        let events = handle.sink.events(events_rx);
        (handle, events)
    }

    /// Queues a command without waiting; `false` (and counted) when the queue is full or the
    /// runtime has stopped.
    pub fn command(&self, cmd: MonitorCommand) -> bool {
        if self.cmd_tx.try_send(cmd).is_ok() {
            return true;
        }
        self.sink.refused_command();
        false
    }

    /// Counts a command refused elsewhere (the demo's queue), so the status bar's refused count
    /// covers every path.
    pub fn count_refused(&self) {
        self.sink.refused_command();
    }

    /// Event batches dropped because the UI did not drain them in time, counted in events.
    pub fn dropped_events(&self) -> u64 {
        self.sink.dropped_events()
    }

    /// Traffic entries inside the dropped events.
    pub fn dropped_entries(&self) -> u64 {
        self.sink.dropped_entries()
    }

    /// Commands refused because the command queue was full.
    pub fn dropped_commands(&self) -> u64 {
        self.sink.dropped_commands()
    }

    /// Has `waker` told of every batch of events handed to the UI (see [`super::sink::Waker`]);
    /// set once, later calls are ignored.
    pub fn set_waker(&self, waker: super::sink::Waker) {
        self.sink.set_waker(waker);
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

struct TapTask {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    /// The Redis view's poller (Redis sources only), cancelled with the tap.
    view: Option<JoinHandle<()>>,
}

/// One watched node.
struct Watched {
    target: NodeTarget,
    /// Named by the operator (`AddNode`, `TrustNode`): trusted whatever the rules say.
    named: bool,
    /// Gets the tokens (named, or matching the trust rules).
    trusted: bool,
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
    /// The tap's source, for trace lookups (NUMSUB on the same Redis).
    tap_source: Option<super::TapSource>,
    lookups: super::numsub::Limiter,
    /// What https nodes are verified against (see [`MonitorOptions::node_tls`]).
    node_tls: Option<NodeTls>,
    /// Parent of every running burst; replaced by StopBursts.
    bursts: CancellationToken,
    next_trace: Arc<AtomicU64>,
    /// Sent to every node's monitor endpoints (see [`MonitorCommand::SetMonitorToken`]).
    monitor_token: Option<crate::monitor_token::MonitorToken>,
    /// The probe clients' bearer, for trusted nodes.
    node_credentials: NodeCredentials,
    trust_rules: TrustRules,
    counts: DiscoveryCounts,
    /// The tap is the demo's in-process bus: its heartbeats come from the demo's own nodes (no
    /// one outside the process can publish there), so the nodes they announce are trusted.
    in_process_tap: bool,
    /// Hub URLs already counted in `counts.over_cap` (bounded by [`OVER_CAP_REMEMBERED`]).
    over_cap: HashSet<String>,
    /// The directory search running, cancelled by the next one (one at a time).
    directory: CancellationToken,
    /// Spaces the directory's NUMSUB commands (one a second).
    directory_limiter: super::numsub::Limiter,
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
                // A URL that can never work does not replace a working tap.
                if let Some(super::TapSource::Redis { spec, .. }) = &source
                    && let Err(error) = tap::connector_for(spec)
                {
                    tracing::warn!(%error, "the tap keeps its current source");
                    self.sink.refused_command();
                    return;
                }
                self.stop_tap().await;
                self.tap_source = source.clone();
                self.in_process_tap = matches!(source, Some(super::TapSource::Memory { .. }));
                match source {
                    None => self.sink.push(MonitorEvent::Tap {
                        state: LinkState::Idle,
                        at_ms: now_ms(),
                    }),
                    Some(source) => {
                        let cancel = self.cancel.child_token();
                        let view = match &source {
                            super::TapSource::Redis { spec, .. } => Some(tokio::spawn(
                                super::redis_view::run((**spec).clone(), self.sink.clone(), cancel.clone()),
                            )),
                            super::TapSource::Memory { .. } => None,
                        };
                        let task = tokio::spawn(tap::run(
                            source,
                            self.sink.clone(),
                            announce_tx.clone(),
                            cancel.clone(),
                        ));
                        self.tap = Some(TapTask { cancel, task, view });
                    }
                }
            }
            MonitorCommand::AddNode(target) | MonitorCommand::TrustNode(target) => {
                self.removed.remove(&target.hub_url);
                self.watch(target, true);
            }
            MonitorCommand::SetTrustRules(rules) => {
                self.trust_rules = rules;
                let changed: Vec<NodeTarget> = self
                    .nodes
                    .values()
                    .filter(|w| !w.named && w.trusted != self.trusts(&w.target))
                    .map(|w| w.target.clone())
                    .collect();
                for target in changed {
                    if let Some(watched) = self.nodes.remove(&target.hub_url) {
                        watched.cancel.cancel();
                    }
                    self.watch(target, false);
                }
                self.count_untrusted();
            }
            MonitorCommand::RemoveNode(hub_url) => {
                self.removed.insert(hub_url.clone());
                if let Some(watched) = self.nodes.remove(&hub_url) {
                    watched.cancel.cancel();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, watched.task).await;
                    self.sink.node(&hub_url, super::NodeEvent::State(LinkState::Idle));
                }
                self.count_untrusted();
            }
            MonitorCommand::Send(request) => {
                let probes: Vec<(String, Arc<ProbeShared>)> = self
                    .nodes
                    .iter()
                    .map(|(url, w)| (url.clone(), w.shared.clone()))
                    .collect();
                let node_cancel = self.nodes.get(&request.node).map(|w| w.cancel.clone());
                let lookups = super::lookup::LookupContext {
                    tap: self.tap_source.clone(),
                    nodes: self.nodes.values().map(|w| w.target.clone()).collect(),
                    trusted: self.trusted_urls(),
                    limiter: self.lookups.clone(),
                    tls: self.node_tls.clone(),
                    monitor_token: self.monitor_token.clone(),
                };
                super::send::spawn_send(
                    request,
                    probes,
                    self.sink.clone(),
                    self.next_trace.clone(),
                    node_cancel,
                    self.bursts.clone(),
                    lookups,
                );
            }
            MonitorCommand::StopBursts => {
                self.bursts.cancel();
                self.bursts = self.cancel.child_token();
            }
            MonitorCommand::Directory(search) => {
                self.directory.cancel();
                self.directory = self.cancel.child_token();
                let task = super::directory::run_search(
                    search,
                    self.nodes.values().map(|w| w.target.clone()).collect(),
                    self.trusted_urls(),
                    self.monitor_token.clone(),
                    self.node_tls.clone(),
                    self.tap_source.clone(),
                    self.directory_limiter.clone(),
                    self.directory.clone(),
                );
                let sink = self.sink.clone();
                tokio::spawn(async move {
                    if let Some(answer) = task.await {
                        sink.push(MonitorEvent::Directory(answer));
                    }
                });
            }
            MonitorCommand::SetMonitorToken(token) => {
                if self.monitor_token == token {
                    return;
                }
                self.monitor_token = token;
                // Every probe starts again with the new token (its monitor link was refused, or
                // would be).
                let targets: Vec<(NodeTarget, bool)> =
                    self.nodes.values().map(|w| (w.target.clone(), w.named)).collect();
                for (target, named) in targets {
                    if let Some(watched) = self.nodes.remove(&target.hub_url) {
                        watched.cancel.cancel();
                    }
                    self.watch(target, named);
                }
            }
        }
    }

    /// A heartbeat: ignored (and counted) when its URLs are not acceptable; followed when the node
    /// is new and either trusted by the rules or under the cap of untrusted nodes; else counted.
    fn discovered(&mut self, a: Announcement) {
        if a.hub_url.is_empty() {
            return;
        }
        if !acceptable_announcement(&[&a.hub_url, &a.url, &a.monitor_url]) {
            self.counts.ignored_heartbeats += 1;
            self.sink.push(MonitorEvent::Discovery(self.counts));
            return;
        }
        if self.removed.contains(&a.hub_url) || self.nodes.contains_key(&a.hub_url) {
            self.sink.push(MonitorEvent::Announced(a));
            return;
        }
        let monitor_url =
            (!a.url.is_empty()).then(|| format!("{}/switchboard/stats", a.url.trim_end_matches('/')));
        let target = NodeTarget {
            hub_url: a.hub_url.clone(),
            monitor_url,
        };
        if !self.trusts(&target) && self.counts.untrusted >= config::DEFAULT_MAX_DISCOVERED_NODES {
            let first_time = if self.over_cap.len() < OVER_CAP_REMEMBERED {
                self.over_cap.insert(a.hub_url.clone())
            } else {
                !self.over_cap.contains(&a.hub_url)
            };
            if first_time {
                self.counts.over_cap += 1;
                self.sink.push(MonitorEvent::Discovery(self.counts));
            }
            return;
        }
        tracing::info!(hub_url = %a.hub_url, node = %a.node_name, "discovered a node from its heartbeat");
        self.sink.push(MonitorEvent::Announced(a));
        self.watch(target, false);
    }

    /// Whether a node that was not named is trusted: the rules say so, or it was announced on
    /// the demo's in-process bus.
    fn trusts(&self, target: &NodeTarget) -> bool {
        self.in_process_tap
            || self
                .trust_rules
                .trusts_node(&target.hub_url, target.monitor_url.as_deref())
    }

    /// Hub URLs of the trusted nodes (the lookups and directory searches send the monitor token
    /// to these only).
    fn trusted_urls(&self) -> HashSet<String> {
        self.nodes
            .values()
            .filter(|w| w.trusted)
            .map(|w| w.target.hub_url.clone())
            .collect()
    }

    /// Recounts the untrusted nodes; tells the UI when the count changed.
    fn count_untrusted(&mut self) {
        let untrusted = self.nodes.values().filter(|w| !w.trusted).count();
        if untrusted != self.counts.untrusted {
            self.counts.untrusted = untrusted;
            self.sink.push(MonitorEvent::Discovery(self.counts));
        }
    }

    /// Watches a node (named: by the operator), restarting its probe when its target or its
    /// trust changed. A named node stays named.
    fn watch(&mut self, target: NodeTarget, named: bool) {
        let named = named || self.nodes.get(&target.hub_url).is_some_and(|w| w.named);
        let trusted = named || self.trusts(&target);
        if let Some(existing) = self.nodes.get(&target.hub_url) {
            if existing.target == target && existing.trusted == trusted {
                return;
            }
            // Another monitor URL, or a change of trust: restart its probe.
            existing.cancel.cancel();
        }
        let cancel = self.cancel.child_token();
        let shared = Arc::new(ProbeShared::default());
        let credentials = if trusted {
            probe::Credentials {
                monitor: self.monitor_token.clone(),
                node: self.node_credentials.clone(),
            }
        } else {
            probe::Credentials::default()
        };
        self.sink.node(&target.hub_url, NodeEvent::Trusted(trusted));
        let task = tokio::spawn(probe::run(
            target.clone(),
            self.node_tls.clone(),
            credentials,
            shared.clone(),
            self.sink.clone(),
            cancel.clone(),
        ));
        self.nodes.insert(
            target.hub_url.clone(),
            Watched {
                target,
                named,
                trusted,
                shared,
                cancel,
                task,
            },
        );
        self.count_untrusted();
    }

    async fn stop_tap(&mut self) {
        if let Some(tap) = self.tap.take() {
            tap.cancel.cancel();
            if tokio::time::timeout(SHUTDOWN_GRACE, tap.task).await.is_err() {
                tracing::warn!("the tap did not stop within {SHUTDOWN_GRACE:?}");
            }
            if let Some(view) = tap.view
                && tokio::time::timeout(SHUTDOWN_GRACE, view).await.is_err()
            {
                tracing::warn!("the Redis view's poller did not stop within {SHUTDOWN_GRACE:?}");
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
