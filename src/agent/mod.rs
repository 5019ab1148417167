//! `switchboard agent`: the monitor without a window. It runs the dashboard's monitor runtime
//! (tap, Redis view, census, one probe per node that reconnects forever), folds its events into
//! the dashboard's model, sends a canary through every node to every node each
//! `--canary-interval`, evaluates the dashboard's health rules every couple of seconds, and
//! serves it all on `--listen`: `/metrics` (Prometheus), `/findings` (JSON), `/healthz`.
//!
//! - `canary`: the canary's pure bookkeeping (pairs, histogram, losses, bounds);
//! - `state`: the loop's state: the model, the canary, the tap counters, the evaluation, and the
//!   figures and documents the routes serve;
//! - `exposition`: the Prometheus text (the metric names are a contract with `deploy/`);
//! - `server`: the routes and the monitor token rule.
//!
//! One task owns the state (no lock): it takes the runtime's event batches, ticks every
//! [`TICK`], and answers the routes' questions over a bounded channel. SIGINT/SIGTERM stop it:
//! the routes stop taking requests, the runtime's tasks end (bounded), and `run` returns `Ok`.
//!
//! Headless: uses `monitor`, `config`, `monitor_token`, `node_token`, `redis_conn` and `signals`;
//! never `hub`, `ui` or `link`, so it builds without the `gui` feature.

pub mod canary;
pub mod exposition;
pub mod server;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::monitor::{
    MonitorCommand, MonitorHandle, MonitorOptions, NodeTarget, SendBody, SendRequest, SendTarget, TapSource,
    now_ms,
};
use crate::monitor_token::MonitorToken;
use crate::redis_conn::RedisSpec;

/// How often the loop wakes when no event arrives: canary timeouts are decided within this, and
/// `/healthz` sees the loop alive.
pub const TICK: Duration = Duration::from_millis(250);

/// Questions from the routes waiting for the loop: a few concurrent scrapes; past it a route
/// answers 503 at once instead of queueing.
const QUERY_QUEUE: usize = 16;

/// How long shutdown waits for the HTTP server and the runtime's tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The shortest and longest canary interval and timeout accepted.
pub const MIN_CANARY: Duration = Duration::from_millis(100);
pub const MAX_CANARY_INTERVAL: Duration = Duration::from_secs(3600);
pub const MAX_CANARY_TIMEOUT: Duration = Duration::from_secs(60);

/// The user name the canaries carry.
const CANARY_USER: &str = "switchboard-agent";

/// What `switchboard agent` was asked (checked by `cli`).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub redis: RedisSpec,
    pub prefix: String,
    /// Nodes named with `--node` (trusted: they get the tokens); more are discovered from
    /// heartbeats.
    pub nodes: Vec<NodeTarget>,
    pub listen: SocketAddr,
    pub canary_interval: Duration,
    pub canary_timeout: Duration,
    /// Guards the agent's routes and is sent to trusted nodes' monitor endpoints.
    pub monitor_token: Option<MonitorToken>,
    /// Node TLS, node credentials and `--trust-nodes`.
    pub monitor: MonitorOptions,
}

/// Why the agent stopped other than as asked.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Bad usage or input (exit 3, the crate's convention in `cli`): the listen address, a
    /// missing token beyond loopback.
    #[error("{0}")]
    Usage(String),
    /// Anything else (exit 2: a failure at run time).
    #[error("{0}")]
    Failed(String),
}

impl AgentError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Usage(_) => 3,
            AgentError::Failed(_) => 2,
        }
    }
}

/// `--canary-interval`/`--canary-timeout` values: `10s`, `500ms`, `2m`, or plain seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (like 10s, 500ms, 2m)"))?;
    let secs = value * scale;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("'{text}' is not a duration above 0 and at most a day"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Checks the options that need no I/O: the canary's interval and timeout, and a token when
/// listening beyond loopback.
pub fn check(options: &AgentOptions) -> Result<(), AgentError> {
    let i = options.canary_interval;
    if !(MIN_CANARY..=MAX_CANARY_INTERVAL).contains(&i) {
        return Err(AgentError::Usage(format!(
            "--canary-interval must be between {} ms and {} s",
            MIN_CANARY.as_millis(),
            MAX_CANARY_INTERVAL.as_secs()
        )));
    }
    let t = options.canary_timeout;
    if !(MIN_CANARY..=MAX_CANARY_TIMEOUT).contains(&t) {
        return Err(AgentError::Usage(format!(
            "--canary-timeout must be between {} ms and {} s",
            MIN_CANARY.as_millis(),
            MAX_CANARY_TIMEOUT.as_secs()
        )));
    }
    if options.monitor_token.is_none() && !crate::monitor_token::is_loopback(options.listen.ip()) {
        return Err(AgentError::Usage(format!(
            "--listen {} reaches beyond this host, and the agent's /metrics and /findings name nodes, users and findings: give --monitor-token TOKEN (or SWITCHBOARD_MONITOR_TOKEN) and have Prometheus send it as a bearer token, or listen on 127.0.0.1",
            options.listen
        )));
    }
    Ok(())
}

/// Runs the agent until SIGINT/SIGTERM (see the module docs). Prints one line with the bound
/// address on stdout once it listens (`switchboard agent listening on http://ADDR ...`).
pub async fn run(options: AgentOptions) -> Result<(), AgentError> {
    check(&options)?;
    let listener = tokio::net::TcpListener::bind(options.listen).await.map_err(|e| {
        let words = match e.kind() {
            std::io::ErrorKind::AddrInUse => "the address is in use (another agent?)".to_string(),
            std::io::ErrorKind::AddrNotAvailable => "no interface of this host has that address".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "not allowed to listen there (a port below 1024?)".to_string()
            }
            _ => return AgentError::Failed(format!("--listen {}: {e}", options.listen)),
        };
        AgentError::Usage(format!("--listen {}: {words}", options.listen))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| AgentError::Failed(format!("reading the listen address: {e}")))?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "switchboard agent listening on http://{local} (/metrics, /findings, /healthz); redis {}; canary every {:?}",
            options.redis.redacted(),
            options.canary_interval
        );
        let _ = out.flush();
    }

    let (handle, mut events) = MonitorHandle::start_with(options.monitor.clone());
    if options.monitor_token.is_some() {
        handle.command(MonitorCommand::SetMonitorToken(options.monitor_token.clone()));
    }
    handle.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: Box::new(options.redis.clone()),
        prefix: options.prefix.clone(),
    })));
    for node in &options.nodes {
        handle.command(MonitorCommand::AddNode(node.clone()));
    }

    let alive_ms = Arc::new(AtomicU64::new(now_ms()));
    let (query_tx, mut query_rx) = mpsc::channel(QUERY_QUEUE);
    let shared = Arc::new(server::Shared {
        token: options.monitor_token.clone(),
        query_tx,
        alive_ms: alive_ms.clone(),
    });
    let stop_server = CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop_server.clone();
        let app = server::router(shared).into_make_service_with_connect_info::<SocketAddr>();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    });

    let mut state = state::AgentState::new(&options.prefix, options.canary_interval, options.canary_timeout);
    for node in &options.nodes {
        state.watch(node.clone());
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let signal = crate::signals::wait_for_signal();
    tokio::pin!(signal);
    let outcome = loop {
        tokio::select! {
            r = &mut signal => break r.map_err(|e| AgentError::Failed(format!("waiting for SIGINT/SIGTERM: {e}"))),
            batch = events.recv() => match batch {
                Some(batch) => {
                    let now = now_ms();
                    for event in batch {
                        state.apply(event, now);
                    }
                }
                None => break Err(AgentError::Failed("the monitor runtime stopped".to_string())),
            },
            _ = tick.tick() => {
                let now = now_ms();
                alive_ms.store(now, Ordering::Relaxed);
                state.tick(now);
                for node in state.canary_round(now) {
                    handle.command(MonitorCommand::Send(canary_request(node)));
                }
                state.evaluate_if_due(now);
            }
            Some(query) = query_rx.recv() => match query {
                server::Query::Metrics(tx) => {
                    let _ = tx.send(exposition::render(&state.snapshot()));
                }
                server::Query::Findings(tx) => {
                    let _ = tx.send(state.findings_json(now_ms()));
                }
            },
        }
    };
    tracing::info!("agent: stopping");
    stop_server.cancel();
    handle.shutdown();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, handle.stopped()).await;
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "agent: the HTTP server ended with an error"),
        Err(_) => tracing::warn!("agent: the HTTP server did not stop in time"),
        _ => {}
    }
    outcome
}

/// One canary: a chat message to the canary group through `node`, which every probe joins (so
/// chat users never see it) and which crosses the backplane as a group message.
fn canary_request(node: String) -> SendRequest {
    SendRequest {
        node,
        target: SendTarget::Group(config::DEFAULT_CANARY_GROUP.to_string()),
        body: SendBody::Chat {
            user: CANARY_USER.to_string(),
            text: "canary".to_string(),
        },
        count: 1,
        rate_per_sec: 1.0,
        probes_join: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1.5 "), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "-1s", "0", "abc", "NaNs", "1e9"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn options(listen: &str, token: Option<&str>) -> AgentOptions {
        AgentOptions {
            redis: RedisSpec::parse("redis://127.0.0.1:6379", &Default::default()).expect("spec"),
            prefix: String::new(),
            nodes: Vec::new(),
            listen: listen.parse().expect("addr"),
            canary_interval: config::DEFAULT_CANARY_INTERVAL,
            canary_timeout: config::DEFAULT_CANARY_TIMEOUT,
            monitor_token: token.map(|t| MonitorToken::new(t).expect("token")),
            monitor: MonitorOptions::default(),
        }
    }

    #[test]
    fn beyond_loopback_needs_a_token() {
        assert!(check(&options("127.0.0.1:0", None)).is_ok());
        assert!(check(&options("[::1]:0", None)).is_ok());
        let refused = check(&options("0.0.0.0:9465", None)).expect_err("refused");
        assert_eq!(refused.exit_code(), 3);
        assert!(refused.to_string().contains("--monitor-token"), "{refused}");
        assert!(check(&options("0.0.0.0:9465", Some("t0ken"))).is_ok());
        let mut o = options("127.0.0.1:0", None);
        o.canary_interval = Duration::from_millis(1);
        assert_eq!(check(&o).map_err(|e| e.exit_code()), Err(3));
    }
}
