//! `switchboard load`: a load generator an operator points at their own cluster (and that our
//! benchmarks use). N clients spread over the given hub nodes, a few of them broadcasting with the
//! chat hub's `SendMessage(user, message)` at a target rate in deliveries per second; every client
//! receives `ReceiveMessage(user, message)` and accounts for each delivery.
//!
//! Each broadcast carries its run id, sender, sequence number, sender's node and send time in the
//! message text, so receivers measure cross-node and same-node latency (one clock: one process),
//! loss, duplicates and per-sender order without any side channel.
//!
//! A run is bounded: connect (each client within its connect timeout), send for `duration`, drain
//! for at most `drain`, close. One process holds at most as many clients as it may open files
//! (20,000 on our machines): run several `load` processes for more, each reports its own share.
//!
//! Uses `client` and `protocol` only; never `hub` (it measures nodes from the outside).

mod histogram;
mod report;
mod sequence;
mod worker;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{self, ClientOptions};
use crate::protocol::Protocol;

pub use histogram::Histogram;
pub use report::{Latency, LoadReport, millis};

/// Most clients one run may ask for: far above what one process can hold (its open-file limit),
/// so only a typo is refused.
pub const MAX_CLIENTS: usize = 100_000;

/// Longest sending phase: a load test, not a soak test; a typo cannot start a day of traffic.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Largest broadcast text: the hub's default 32 KiB message limit, minus room for the framing.
pub const MAX_MESSAGE_SIZE: usize = 30 * 1024;

/// Handshakes in flight at once. Enough to keep two nodes busy; more only grows the node's accept
/// backlog (and a SYN queue overflow costs a 1 s retransmit, which would distort the connect rate).
pub const DEFAULT_CONNECT_CONCURRENCY: usize = 256;

/// How long after the sending phase deliveries may still arrive before the missing ones count as
/// lost: far above a healthy cross-node latency, short enough to keep runs snappy.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(3);

/// How long the client tasks get to say goodbye at the end before they are cut.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the progress line is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// What a run does.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Hub URLs (`http://host:port/chat`); client i connects to node i mod len.
    pub nodes: Vec<String>,
    pub clients: usize,
    /// Clients that broadcast (the first ones, so they spread over the nodes).
    pub senders: usize,
    /// Target deliveries per second over all clients; 0 = idle clients (connections only).
    pub rate: f64,
    /// Length of the sending phase (the clients stay connected this long even when idle).
    pub duration: Duration,
    pub protocol: Protocol,
    /// `false` = skipNegotiation (the WebSocket directly).
    pub negotiate: bool,
    /// Hub method the senders invoke with (user, message).
    pub send_method: String,
    /// Client method the hub broadcasts (user, message).
    pub receive_method: String,
    /// Length of the message text (the stamp plus padding).
    pub message_size: usize,
    /// Connects in flight at once.
    pub connect_concurrency: usize,
    /// Longest wait for late deliveries after the sending phase.
    pub drain: Duration,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// What `https://` nodes are verified against (`--node-ca`); `None`: the system's roots.
    pub node_tls: Option<crate::client::NodeTls>,
    /// The bearer token each client presents (`--node-token`, `--node-jwt-secret-file`): minted
    /// per client, with `sub` = `switchboard-load-N`, at its connection attempt.
    pub node_credentials: crate::node_token::NodeCredentials,
}

impl LoadOptions {
    /// The chat shape with the defaults of the command line.
    pub fn new(nodes: Vec<String>) -> Self {
        LoadOptions {
            nodes,
            clients: 100,
            senders: 10,
            rate: 10_000.0,
            duration: Duration::from_secs(10),
            protocol: Protocol::Json,
            negotiate: true,
            send_method: "SendMessage".to_string(),
            receive_method: "ReceiveMessage".to_string(),
            message_size: 64,
            connect_concurrency: DEFAULT_CONNECT_CONCURRENCY,
            drain: DEFAULT_DRAIN,
            progress: false,
            node_tls: None,
            node_credentials: crate::node_token::NodeCredentials::None,
        }
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("give at least one hub node (--node http://host:port/chat)")]
    NoNodes,
    #[error("--node {url}: {reason}")]
    BadNode { url: String, reason: String },
    #[error("{0}")]
    BadOption(String),
    #[error("no client could connect ({failures} tried); first error: {first_error}")]
    NoneConnected { failures: usize, first_error: String },
}

impl LoadError {
    /// Whether the options themselves are wrong (exit 2), rather than the nodes (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, LoadError::NoneConnected { .. })
    }
}

/// Where a run is; the client tasks watch it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Connecting,
    /// Senders start their tickers at `start` (staggered over one period).
    Sending {
        start: Instant,
    },
    /// No more sends; deliveries still counted.
    Draining,
    /// Close and end.
    Stop,
}

/// State shared by the run and every client task.
pub struct Run {
    options: LoadOptions,
    client_options: ClientOptions,
    /// Tells this run's broadcasts from anybody else's on the same hub.
    run_id: u64,
    senders: usize,
    /// Broadcasts sent, per sender.
    sent: Vec<AtomicU64>,
    /// Per-sender period, in nanoseconds (0: no sending); set when the sending phase starts.
    period_nanos: AtomicU64,
    connected: AtomicUsize,
    connect_done: AtomicUsize,
    connect_failures: AtomicUsize,
    first_error: Mutex<Option<String>>,
    last_connect: Mutex<Option<Instant>>,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    order_violations: AtomicU64,
    foreign: AtomicU64,
    disconnected_early: AtomicU64,
    cross_node: Histogram,
    same_node: Histogram,
}

impl Run {
    fn connect_failed(&self, error: String) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(error);
        self.connect_done.fetch_add(1, Ordering::Relaxed);
    }

    fn sender_period(&self) -> Option<Duration> {
        match self.period_nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    fn sent_total(&self) -> u64 {
        self.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    fn progress(&self, started: Instant, what: &str) {
        if !self.options.progress {
            return;
        }
        let connected = self.connected.load(Ordering::Relaxed);
        let sent = self.sent_total();
        let cross = Latency::of(&self.cross_node);
        let same = Latency::of(&self.same_node);
        eprintln!(
            "load {:>6.1} s {what:<10} connected {connected}/{} · sent {sent} · delivered {}/{} · dup {} · order {} · p99 cross {} ms same {} ms",
            started.elapsed().as_secs_f64(),
            self.options.clients,
            self.delivered.load(Ordering::Relaxed),
            sent * connected as u64,
            self.duplicates.load(Ordering::Relaxed),
            self.order_violations.load(Ordering::Relaxed),
            millis(cross.p99_ms, 2),
            millis(same.p99_ms, 2),
        );
    }
}

fn validate(options: &LoadOptions) -> Result<(), LoadError> {
    if options.nodes.is_empty() {
        return Err(LoadError::NoNodes);
    }
    for url in &options.nodes {
        client::check_hub_url(url).map_err(|e| LoadError::BadNode {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    }
    let bad = |text: String| Err(LoadError::BadOption(text));
    if options.clients == 0 || options.clients > MAX_CLIENTS {
        return bad(format!("--clients must be between 1 and {MAX_CLIENTS}"));
    }
    if !options.rate.is_finite() || options.rate < 0.0 {
        return bad("--rate must be a number of deliveries per second, 0 or more".to_string());
    }
    if options.duration.is_zero() || options.duration > MAX_DURATION {
        return bad(format!(
            "--duration must be above 0 and at most {} s",
            MAX_DURATION.as_secs()
        ));
    }
    if options.message_size > MAX_MESSAGE_SIZE {
        return bad(format!("--message-size must be at most {MAX_MESSAGE_SIZE} bytes"));
    }
    if options.send_method.is_empty() || options.receive_method.is_empty() {
        return bad("the send and receive method names must not be empty".to_string());
    }
    Ok(())
}

/// Runs the load to its end and returns what it measured. Errors only for bad options or when no
/// client at all could connect; partial failures are in the report (`shortfalls`).
pub async fn run(options: LoadOptions) -> Result<LoadReport, LoadError> {
    validate(&options)?;
    let senders = options.senders.min(options.clients);
    let client_options = ClientOptions {
        protocol: options.protocol,
        negotiate: options.negotiate,
        tls: options.node_tls.clone(),
        ..ClientOptions::default()
    };
    let run = Arc::new(Run {
        client_options,
        run_id: rand::random(),
        senders,
        sent: (0..senders).map(|_| AtomicU64::new(0)).collect(),
        period_nanos: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        connect_done: AtomicUsize::new(0),
        connect_failures: AtomicUsize::new(0),
        first_error: Mutex::new(None),
        last_connect: Mutex::new(None),
        delivered: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        order_violations: AtomicU64::new(0),
        foreign: AtomicU64::new(0),
        disconnected_early: AtomicU64::new(0),
        cross_node: Histogram::default(),
        same_node: Histogram::default(),
        options,
    });
    let options = &run.options;
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(started + PROGRESS_INTERVAL, PROGRESS_INTERVAL);

    // Connect: at most `connect_concurrency` handshakes in flight.
    let gate = Arc::new(Semaphore::new(options.connect_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for index in 0..options.clients {
        let permit = loop {
            tokio::select! {
                permit = gate.clone().acquire_owned() => break permit,
                _ = tick.tick() => run.progress(started, "connecting"),
            }
        };
        // The semaphore is never closed; if it were, no more clients could start.
        let Ok(permit) = permit else { break };
        let role = worker::Role {
            index,
            node: index % options.nodes.len(),
        };
        tasks.spawn(worker::client(run.clone(), role, phase_rx.clone(), permit));
    }
    while run.connect_done.load(Ordering::Relaxed) < options.clients {
        tokio::select! {
            _ = tick.tick() => run.progress(started, "connecting"),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    let connect_end = run
        .last_connect
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_else(Instant::now);
    let connect_seconds = connect_end.duration_since(started).as_secs_f64();
    let connected = run.connected.load(Ordering::Relaxed);
    if connected == 0 {
        let _ = phase_tx.send(Phase::Stop);
        tasks.shutdown().await;
        return Err(LoadError::NoneConnected {
            failures: run.connect_failures.load(Ordering::Relaxed),
            first_error: run
                .first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default(),
        });
    }

    // Send: each broadcast reaches every connected client, so broadcasts/s = rate / clients.
    let live_senders = senders.min(connected);
    if options.rate > 0.0 && live_senders > 0 {
        let broadcasts_per_s = options.rate / connected as f64;
        let period = Duration::from_secs_f64(senders as f64 / broadcasts_per_s).max(Duration::from_micros(1));
        run.period_nanos.store(
            period.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }
    let send_start = Instant::now();
    let _ = phase_tx.send(Phase::Sending { start: send_start });
    let send_end = send_start + options.duration;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(send_end) => break,
            _ = tick.tick() => run.progress(started, "sending"),
        }
    }
    let _ = phase_tx.send(Phase::Draining);
    let sending = send_start.elapsed();
    // Writes in flight when the phase changed still count; let them land before the drain check.
    tokio::time::sleep(Duration::from_millis(10)).await;

    // Drain: until every expected delivery is in, or the drain time is up.
    let drain_end = Instant::now() + options.drain;
    let expected = || run.sent_total() * run.connected.load(Ordering::Relaxed) as u64;
    while Instant::now() < drain_end && run.delivered.load(Ordering::Relaxed) < expected() {
        tokio::select! {
            _ = tick.tick() => run.progress(started, "draining"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let delivering = send_start.elapsed();
    let _ = phase_tx.send(Phase::Stop);
    run.progress(started, "done");
    let _ = tokio::time::timeout(STOP_TIMEOUT, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.shutdown().await;

    let sent = run.sent_total();
    let delivered = run.delivered.load(Ordering::Relaxed);
    let expected = sent * connected as u64;
    let mut report = LoadReport {
        nodes: options.nodes.clone(),
        protocol: options.protocol.name().to_ascii_lowercase(),
        negotiate: options.negotiate,
        clients: options.clients,
        connected,
        connect_failures: run.connect_failures.load(Ordering::Relaxed),
        first_connect_error: run.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        connect_seconds,
        connects_per_s: connected as f64 / connect_seconds.max(1e-6),
        senders: live_senders,
        target_deliveries_per_s: options.rate,
        duration_s: options.duration.as_secs_f64(),
        sent,
        expected_deliveries: expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicates: run.duplicates.load(Ordering::Relaxed),
        order_violations: run.order_violations.load(Ordering::Relaxed),
        foreign: run.foreign.load(Ordering::Relaxed),
        disconnected_early: run.disconnected_early.load(Ordering::Relaxed),
        achieved_sends_per_s: sent as f64 / sending.as_secs_f64(),
        achieved_deliveries_per_s: delivered as f64 / delivering.as_secs_f64(),
        cross_node: Latency::of(&run.cross_node),
        same_node: Latency::of(&run.same_node),
        shortfalls: Vec::new(),
    };
    report.shortfalls = report.find_shortfalls();
    Ok(report)
}
