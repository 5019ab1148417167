//! One task per watched hub node, as an operator would watch it from outside: the node's monitor
//! WebSocket (`/switchboard/monitor`, a stats snapshot every 500 ms), its round-trip time (an HTTP
//! request every couple of seconds), and a probe client connected to the hub that receives the
//! dashboard's test messages and reports the trace markers it finds in them. Test sends (`send`) go
//! through the sending node's probe client.
//!
//! The node's one [`LinkState`] combines the monitor link and the probe client: Connected when both
//! are, Reconnecting with the more telling error when either is not. A URL that is not a
//! Switchboard node gives a readable error state, never a panic.
//!
//! Both links reconnect through the backplane's `reconnect` loop; their failures are classified
//! here from the client's typed errors ([`failure_of`]), never from their words, so a node's 401
//! body cannot choose the retry pace.
//!
//! Run by `runtime`; uses `client`, `protocol` and `backplane::reconnect`. Never `hub` (only what
//! a node serves).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::directory;
use super::model::traces as marker;
use super::now_ms;
use super::sink::EventSink;
use super::{LinkState, NodeEvent, NodeStats, NodeTarget};
use crate::backplane::reconnect::{self, Failure, Link, LinkFailure, Report};
use crate::client::{
    self, ClientError, ClientEvent, ClientOptions, HubClient, HubSender, NodeTls, NodeWebSocket, http,
};
use crate::config;
use crate::monitor_token::MonitorToken;
use crate::protocol::Value;

/// The user id of every probe client, so a `SendToUser` to it reaches all probes.
pub const PROBE_USER: &str = "switchboard-probe";

/// Deadline of one RTT or diagnosis request: a node slower than this is as good as down.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a cancelled probe client may take to close its connection properly (the client waits
/// up to 2 s to queue its close and 4 s for the answer) before it is dropped.
const PROBE_CLOSE_GRACE: Duration = Duration::from_secs(6);

/// A part of the node's link: the monitor WebSocket, or the probe client.
#[derive(Debug, Clone, PartialEq, Default)]
enum Part {
    #[default]
    Connecting,
    Connected,
    Down {
        attempt: u32,
        retry_at_ms: u64,
        error: String,
    },
}

#[derive(Default)]
pub(super) struct ProbeInner {
    sender: Option<HubSender>,
    connection_id: Option<String>,
    /// Groups this probe joined for test sends, joined again after a reconnect.
    pub(super) groups: BTreeSet<String>,
    monitor: Option<Part>,
    probe: Part,
    emitted: Option<LinkState>,
}

/// What the runtime (and sends) can see of a node's probe.
#[derive(Default)]
pub(crate) struct ProbeShared {
    inner: Mutex<ProbeInner>,
}

impl ProbeShared {
    pub(super) fn lock(&self) -> MutexGuard<'_, ProbeInner> {
        // Plain fields replaced whole: a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn sender(&self) -> Option<HubSender> {
        self.lock().sender.clone()
    }

    pub(super) fn connection_id(&self) -> Option<String> {
        let inner = self.lock();
        inner.sender.as_ref().and(inner.connection_id.clone())
    }

    /// Updates one part and emits the combined state if it changed.
    fn set(&self, monitor: bool, part: Part, hub_url: &str, sink: &EventSink) {
        let mut inner = self.lock();
        if monitor {
            inner.monitor = Some(part);
        } else {
            inner.probe = part;
        }
        let parts = [inner.monitor.as_ref(), Some(&inner.probe)];
        let down = parts.iter().flatten().find(|p| matches!(p, Part::Down { .. }));
        let state = match down {
            Some(Part::Down {
                attempt,
                retry_at_ms,
                error,
            }) => LinkState::Reconnecting {
                attempt: *attempt,
                retry_at_ms: *retry_at_ms,
                error: error.clone(),
            },
            _ if parts.iter().flatten().all(|p| **p == Part::Connected) => LinkState::Connected,
            _ => LinkState::Connecting,
        };
        if inner.emitted.as_ref() != Some(&state) {
            inner.emitted = Some(state.clone());
            drop(inner);
            sink.node(hub_url, NodeEvent::State(state));
        }
    }
}

/// The secrets a probe sends: both empty for a node that is not trusted (see `runtime`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    /// To the node's monitor endpoints.
    pub monitor: Option<MonitorToken>,
    /// The probe client's bearer on negotiate and the WebSocket upgrade (minted per attempt).
    pub node: crate::node_token::NodeCredentials,
}

/// Watches one node until `cancel`; `https://` nodes are verified against `tls` (`None`: the
/// system's roots).
pub(crate) async fn run(
    target: NodeTarget,
    tls: Option<NodeTls>,
    credentials: Credentials,
    shared: Arc<ProbeShared>,
    sink: EventSink,
    cancel: CancellationToken,
) {
    tracing::info!(hub_url = %target.hub_url, monitor_url = ?target.monitor_url, "watching a node");
    if target.monitor_url.is_some() {
        shared.lock().monitor = Some(Part::Connecting);
    }
    shared.set(false, Part::Connecting, &target.hub_url, &sink);
    let tls = tls.as_ref();
    let token = credentials.monitor;
    let monitor = async {
        if let Some(stats_url) = &target.monitor_url {
            monitor_loop(
                &target.hub_url,
                stats_url,
                tls,
                token.as_ref(),
                &shared,
                &sink,
                &cancel,
            )
            .await;
        }
    };
    tokio::join!(
        monitor,
        rtt_loop(&target, tls, token.as_ref(), &sink, &cancel),
        probe_loop(&target.hub_url, tls, &credentials.node, &shared, &sink, &cancel)
    );
    tracing::info!(hub_url = %target.hub_url, "stopped watching a node");
}

/// The `/switchboard/monitor` WebSocket URL for a stats URL (`…/switchboard/stats`).
fn monitor_ws_url(stats_url: &str) -> String {
    let base = stats_url
        .strip_suffix("/stats")
        .unwrap_or(stats_url.trim_end_matches('/'));
    format!("{base}/monitor")
}

/// A request's options: the probe's deadline and the node CA.
fn request_options(tls: Option<&NodeTls>) -> http::RequestOptions<'_> {
    http::RequestOptions {
        timeout: Some(HTTP_TIMEOUT),
        tls,
        ..http::RequestOptions::default()
    }
}

/// A client error as a link failure: its kind from the variant (and the I/O error's kind), its
/// message the error's words. A node's 401 is `Auth` whatever its body says.
fn failure_of(e: &ClientError) -> Failure {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let kind = match e {
        ClientError::Io { source, .. } => LinkFailure::of_io(source.kind()),
        ClientError::Tls { .. } => LinkFailure::Tls,
        ClientError::TokenRefused { .. } | ClientError::TokenRequired { .. } => LinkFailure::Auth,
        ClientError::Negotiate {
            status: 401 | 403, ..
        }
        | ClientError::UpgradeRejected {
            status: 401 | 403, ..
        } => LinkFailure::Auth,
        ClientError::Timeout(_) => LinkFailure::Timeout,
        ClientError::Closed(_) => LinkFailure::Lost,
        ClientError::WebSocket { source, .. } => match source.as_ref() {
            WsError::Io(io) => LinkFailure::of_io(io.kind()),
            WsError::ConnectionClosed | WsError::AlreadyClosed => LinkFailure::Lost,
            _ => LinkFailure::Protocol,
        },
        ClientError::Url { .. } => LinkFailure::Other,
        ClientError::Http { .. }
        | ClientError::Negotiate { .. }
        | ClientError::NegotiateRefused(_)
        | ClientError::NegotiateResponse { .. }
        | ClientError::UpgradeRejected { .. }
        | ClientError::Handshake(_) => LinkFailure::Protocol,
    };
    Failure::new(kind, e.to_string())
}

/// Why a stats URL does not serve a monitor: what a plain GET of it says.
async fn diagnose(
    stats_url: &str,
    tls: Option<&NodeTls>,
    token: Option<&MonitorToken>,
    ws_error: &ClientError,
) -> Failure {
    let not_monitor = |text: String| Failure::new(LinkFailure::Protocol, text);
    match directory::get(stats_url, token, tls, HTTP_TIMEOUT).await {
        Err(e) => failure_of(&e),
        Ok(r) if r.status == 401 || r.status == 403 => Failure::new(
            LinkFailure::Auth,
            not_allowed(stats_url, r.status, &r.text(), token.is_some()),
        ),
        Ok(r) if r.status != 200 => not_monitor(format!(
            "{stats_url} is not a Switchboard monitor endpoint: HTTP {}",
            r.status
        )),
        Ok(r) => match r.json::<serde_json::Value>() {
            Ok(doc) if doc.get("node_name").is_some() => failure_of(ws_error).context("monitor WebSocket"),
            _ => not_monitor(format!(
                "{stats_url} is not a Switchboard monitor endpoint: the response is not a stats document"
            )),
        },
    }
}

/// Why a node's monitor endpoint turned the dashboard away (401/403), with the node's one-line
/// reason (an `Auth` failure: backs off as any authentication error, whatever the body says).
fn not_allowed(stats_url: &str, status: u16, body: &str, token_given: bool) -> String {
    let hint = if token_given {
        ""
    } else {
        " (start the dashboard with --monitor-token)"
    };
    let reason: String = body
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(300)
        .collect();
    format!("{stats_url} does not let this dashboard look (HTTP {status}): {reason}{hint}")
}

/// Shows a state of the monitor link (`monitor`) or of the probe client as that part's state
/// (a failure with a debug line).
fn report_part(shared: &ProbeShared, monitor: bool, state: Report<'_>, hub_url: &str, sink: &EventSink) {
    let part = match state {
        Report::Connecting => Part::Connecting,
        Report::Connected => Part::Connected,
        Report::Reconnecting {
            attempt,
            retry_in,
            error,
        } => {
            let what = if monitor {
                "monitor link problem"
            } else {
                "probe client problem"
            };
            tracing::debug!(%hub_url, %error, "{what}");
            Part::Down {
                attempt,
                retry_at_ms: now_ms() + retry_in.as_millis() as u64,
                error: error.message.clone(),
            }
        }
    };
    shared.set(monitor, part, hub_url, sink);
}

/// The node's monitor WebSocket as the reconnect loop drives it: up once a first stats document
/// arrived.
struct MonitorLink<'a> {
    hub_url: &'a str,
    stats_url: &'a str,
    ws_url: String,
    tls: Option<&'a NodeTls>,
    token: Option<&'a MonitorToken>,
    authorization: Option<String>,
    shared: &'a ProbeShared,
    sink: &'a EventSink,
}

impl MonitorLink<'_> {
    /// The next stats document; anything else ends the link.
    async fn next_stats(&self, ws: &mut NodeWebSocket) -> Result<NodeStats, Failure> {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str::<NodeStats>(&text).map_err(|e| {
                        Failure::new(
                            LinkFailure::Protocol,
                            format!("{} is not a Switchboard monitor endpoint: {e}", self.ws_url),
                        )
                    });
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(Failure::new(
                        LinkFailure::Lost,
                        "the monitor connection was closed",
                    ));
                }
                // Whatever the error, the connection is gone.
                Some(Err(e)) => {
                    return Err(Failure::new(
                        LinkFailure::Lost,
                        format!("the monitor connection failed: {e}"),
                    ));
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

impl Link for MonitorLink<'_> {
    type Conn = (NodeWebSocket, NodeStats);

    async fn connect(&mut self) -> Result<Self::Conn, Failure> {
        let headers: Vec<(&str, &str)> = self
            .authorization
            .iter()
            .map(|value| ("Authorization", value.as_str()))
            .collect();
        let mut ws = match client::connect_raw_ws_with(&self.ws_url, self.tls, &headers).await {
            Ok(ws) => ws,
            Err(e) => return Err(diagnose(self.stats_url, self.tls, self.token, &e).await),
        };
        let stats = self.next_stats(&mut ws).await?;
        Ok((ws, stats))
    }

    async fn serve(&mut self, (mut ws, first): Self::Conn) -> Result<(), Failure> {
        self.sink.node(self.hub_url, NodeEvent::Stats(first));
        loop {
            let stats = self.next_stats(&mut ws).await?;
            self.sink.node(self.hub_url, NodeEvent::Stats(stats));
        }
    }

    /// Whole seconds between attempts, so the countdown shown counts (see the config).
    fn retry_cap(&self, kind: LinkFailure) -> Duration {
        kind.retry_cap().max(config::DEFAULT_WATCH_RECONNECT_MAX)
    }

    fn report(&mut self, state: Report<'_>) {
        report_part(self.shared, true, state, self.hub_url, self.sink);
    }
}

async fn monitor_loop(
    hub_url: &str,
    stats_url: &str,
    tls: Option<&NodeTls>,
    token: Option<&MonitorToken>,
    shared: &ProbeShared,
    sink: &EventSink,
    cancel: &CancellationToken,
) {
    let mut link = MonitorLink {
        hub_url,
        stats_url,
        ws_url: monitor_ws_url(stats_url),
        tls,
        token,
        authorization: token.map(MonitorToken::header_value),
        shared,
        sink,
    };
    reconnect::run(&mut link, cancel).await;
}

async fn rtt_loop(
    target: &NodeTarget,
    tls: Option<&NodeTls>,
    token: Option<&MonitorToken>,
    sink: &EventSink,
    cancel: &CancellationToken,
) {
    let (method, url) = match &target.monitor_url {
        Some(stats) => ("GET", stats.clone()),
        None => ("POST", format!("{}/negotiate?negotiateVersion=1", target.hub_url)),
    };
    let mut tick = tokio::time::interval(config::DEFAULT_RTT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let started = Instant::now();
        let request = async {
            match method {
                "GET" => directory::get(&url, token, tls, HTTP_TIMEOUT).await,
                _ => http::request_with(method, &url, b"", request_options(tls)).await,
            }
        };
        let response = tokio::select! {
            _ = cancel.cancelled() => return,
            r = request => r,
        };
        if matches!(response, Ok(ref r) if r.status == 200) {
            sink.node(&target.hub_url, NodeEvent::Rtt(started.elapsed()));
        }
    }
}

/// The trace marker in a value's strings (nested arrays and maps included).
fn find_trace(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.as_str().and_then(marker::find_marker),
        Value::Array(items) => items.iter().find_map(find_trace),
        Value::Map(pairs) => pairs.iter().find_map(|(_, v)| find_trace(v)),
        _ => None,
    }
}

/// The probe client as the reconnect loop drives it: up once connected and back in its groups.
struct ProbeLink<'a> {
    hub_url: &'a str,
    options: ClientOptions,
    node_credentials: &'a crate::node_token::NodeCredentials,
    shared: &'a ProbeShared,
    sink: &'a EventSink,
    cancel: &'a CancellationToken,
    /// Whether the last attempt was a 401 to a probe that sent no token (told to the UI once).
    needs_token: bool,
}

impl Link for ProbeLink<'_> {
    type Conn = HubClient;

    async fn connect(&mut self) -> Result<HubClient, Failure> {
        // A fresh token per attempt: a minted one never outlives its short lifetime.
        let options = ClientOptions {
            token: self.node_credentials.bearer_for(PROBE_USER),
            ..self.options.clone()
        };
        let connected = HubClient::connect(self.hub_url, options).await;
        let refused = matches!(connected, Err(ClientError::TokenRequired { .. }));
        if refused != self.needs_token {
            self.needs_token = refused;
            self.sink.node(self.hub_url, NodeEvent::NeedsToken(refused));
        }
        let client = connected.map_err(|e| failure_of(&e))?;
        let connection_id = client.connection_id().unwrap_or_default().to_string();
        let groups: Vec<String> = {
            let mut inner = self.shared.lock();
            inner.sender = Some(client.sender());
            inner.connection_id = Some(connection_id.clone());
            inner.groups.iter().cloned().collect()
        };
        for group in groups {
            let _ = client
                .invoke("JoinGroup", vec![Value::from(group.as_str())])
                .await;
        }
        self.sink
            .node(self.hub_url, NodeEvent::ProbeConnected { connection_id });
        Ok(client)
    }

    async fn serve(&mut self, mut client: HubClient) -> Result<(), Failure> {
        let reason = loop {
            let event = tokio::select! {
                _ = self.cancel.cancelled() => None,
                e = client.recv() => Some(e),
            };
            match event {
                None => {
                    // Stopped: the node hears a proper close (see `stop_grace`).
                    self.shared.lock().sender = None;
                    client.close().await;
                    return Ok(());
                }
                Some(Some(ClientEvent::Invocation { arguments, .. })) => {
                    if let Some(trace) = arguments.iter().find_map(find_trace) {
                        self.sink.node(
                            self.hub_url,
                            NodeEvent::ProbeReceived {
                                trace,
                                at_ms: now_ms(),
                            },
                        );
                    }
                }
                Some(Some(ClientEvent::Close { .. })) => {}
                Some(Some(ClientEvent::Disconnected { reason })) => break reason,
                Some(None) => break "the probe connection ended".to_string(),
            }
        };
        self.shared.lock().sender = None;
        Err(Failure::new(
            LinkFailure::Lost,
            format!("the probe connection was lost: {reason}"),
        ))
    }

    /// Whole seconds between attempts, so the countdown shown counts (see the config).
    fn retry_cap(&self, kind: LinkFailure) -> Duration {
        kind.retry_cap().max(config::DEFAULT_WATCH_RECONNECT_MAX)
    }

    fn report(&mut self, state: Report<'_>) {
        report_part(self.shared, false, state, self.hub_url, self.sink);
    }

    fn stop_grace(&self) -> Duration {
        PROBE_CLOSE_GRACE
    }
}

async fn probe_loop(
    hub_url: &str,
    tls: Option<&NodeTls>,
    node_credentials: &crate::node_token::NodeCredentials,
    shared: &ProbeShared,
    sink: &EventSink,
    cancel: &CancellationToken,
) {
    let mut link = ProbeLink {
        hub_url,
        options: ClientOptions {
            user: Some(PROBE_USER.to_string()),
            tls: tls.cloned(),
            ..ClientOptions::default()
        },
        node_credentials,
        shared,
        sink,
        cancel,
        needs_token: false,
    };
    reconnect::run(&mut link, cancel).await;
    // A connect cancelled halfway may have left its sender behind.
    shared.lock().sender = None;
}

#[cfg(test)]
mod tests {
    use super::super::send::invocation;
    use super::*;
    use crate::monitor::{SendBody, SendTarget};

    #[test]
    fn a_monitor_endpoint_that_wants_a_token_is_retried_slowly_and_says_why() {
        let text = not_allowed("http://h:1/switchboard/stats", 401, "needs a token\nmore", false);
        assert_eq!(
            text,
            "http://h:1/switchboard/stats does not let this dashboard look (HTTP 401): needs a token (start the dashboard with --monitor-token)"
        );
        assert!(!not_allowed("u", 403, "x", true).contains("--monitor-token"));
    }

    #[test]
    fn a_401_is_an_auth_failure_whatever_its_body_says() {
        let body = "connection refused; connection lost; connection reset";
        for error in [
            ClientError::TokenRefused {
                url: "http://h:1/hub".into(),
                reason: body.into(),
            },
            ClientError::TokenRequired {
                url: "http://h:1/hub".into(),
                reason: body.into(),
            },
            ClientError::UpgradeRejected {
                url: "ws://h:1/hub".into(),
                status: 401,
                body: body.into(),
            },
        ] {
            let failure = failure_of(&error);
            assert_eq!(failure.kind, LinkFailure::Auth, "{error:?}");
            assert_eq!(failure.kind.retry_cap(), config::DEFAULT_RECONNECT_MAX);
            assert!(
                failure.message.contains("connection refused"),
                "the words are kept"
            );
        }
        let refused = ClientError::Io {
            what: "connecting to h:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(failure_of(&refused).kind, LinkFailure::Refused);
        let closed = ClientError::Closed("the server went away".into());
        assert_eq!(failure_of(&closed).kind, LinkFailure::Lost);
        let negotiate = ClientError::NegotiateRefused("connection refused".into());
        assert_eq!(failure_of(&negotiate).kind, LinkFailure::Protocol);
    }

    #[test]
    fn monitor_url_follows_the_stats_url() {
        assert_eq!(
            monitor_ws_url("http://h:1/switchboard/stats"),
            "http://h:1/switchboard/monitor"
        );
    }

    #[test]
    fn chat_sends_use_the_hub_parameter_order() {
        let body = SendBody::Chat {
            user: "me".into(),
            text: "hi".into(),
        };
        let (method, args) = invocation(&SendTarget::Group("g".into()), &body, None, 7);
        assert_eq!(method, "SendToGroup");
        assert_eq!(args[0], Value::from("g"));
        assert_eq!(args[1], Value::from("me"));
        assert_eq!(find_trace(&args[2]), Some(7));
    }

    #[test]
    fn custom_args_get_the_marker() {
        let body = SendBody::Custom {
            method: "M".into(),
            args_json: String::new(),
        };
        let json = serde_json::json!(["x {trace}", 1]);
        let (method, args) = invocation(&SendTarget::All, &body, Some(&json), 9);
        assert_eq!(method, "M");
        assert_eq!(find_trace(&args[0]), Some(9));
        assert_eq!(args.len(), 2);
    }
}
