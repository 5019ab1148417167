//! The agent's HTTP routes: `GET /metrics` (Prometheus text), `GET /findings` (JSON) and
//! `GET /healthz` ("ok" while the agent's loop runs), all behind the monitor token rule of a
//! node's monitor endpoints (`hub::access`, decided here the same way):
//!
//! - with `--monitor-token TOKEN`, every request must carry `Authorization: Bearer TOKEN` (401
//!   otherwise, with a one-line reason);
//! - without one, only loopback clients (peer on loopback, no proxy header) whose `Host` names
//!   loopback are answered (403 otherwise). `agent::run` refuses to listen beyond loopback
//!   without a token, so this is the second line, not the only one.
//!
//! The routes hold no model: `/metrics` and `/findings` ask the agent's loop over a bounded
//! channel and wait a few seconds at most (503 when the loop does not answer). Uses axum, tokio
//! and `monitor_token`; called by `agent::run` only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{mpsc, oneshot};

use crate::monitor_token::{MonitorToken, PROXY_HEADERS, is_loopback, is_loopback_host};

/// How long a route waits for the agent's loop: it answers within milliseconds unless it is
/// stuck, and a scrape should fail well within Prometheus' default 10 s timeout.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// `/healthz` fails when the loop has not ticked for this long (it ticks every 250 ms).
pub const LOOP_STALE: Duration = Duration::from_secs(10);

/// Questions the routes ask the agent's loop.
#[derive(Debug)]
pub enum Query {
    /// The Prometheus text of this moment.
    Metrics(oneshot::Sender<String>),
    /// The findings as JSON.
    Findings(oneshot::Sender<String>),
}

/// What the routes share.
#[derive(Debug)]
pub struct Shared {
    pub token: Option<MonitorToken>,
    pub query_tx: mpsc::Sender<Query>,
    /// When the loop last ticked (unix ms).
    pub alive_ms: Arc<AtomicU64>,
}

/// The answer of the access rule (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    Unauthorized(&'static str),
    Forbidden(&'static str),
}

const NO_TOKEN_SENT: &str =
    "this agent requires a bearer token: send `Authorization: Bearer TOKEN` with the agent's --monitor-token";
const WRONG_TOKEN: &str = "the bearer token does not match this agent's --monitor-token";
const LOOPBACK_ONLY: &str = "this agent answers loopback clients only: start it with --monitor-token TOKEN (or SWITCHBOARD_MONITOR_TOKEN) and send `Authorization: Bearer TOKEN`";
const LOOPBACK_HOST_ONLY: &str = "this agent answers without a token only when the Host header names loopback (localhost, 127.0.0.1, [::1]): start it with --monitor-token TOKEN to be reached under another name";

/// The rule, pure: `local` is whether the client is a loopback client without a proxy header.
pub fn decide(
    token: Option<&MonitorToken>,
    authorization: Option<&[u8]>,
    local: bool,
    host: Option<&[u8]>,
) -> Access {
    match (token, authorization) {
        (Some(token), Some(header)) if token.matches_header(header) => Access::Allowed,
        (Some(_), Some(_)) => Access::Unauthorized(WRONG_TOKEN),
        (Some(_), None) => Access::Unauthorized(NO_TOKEN_SENT),
        (None, _) if !local => Access::Forbidden(LOOPBACK_ONLY),
        (None, _) if host.is_some_and(is_loopback_host) => Access::Allowed,
        (None, _) => Access::Forbidden(LOOPBACK_HOST_ONLY),
    }
}

/// The route table.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/findings", get(findings))
        .route("/healthz", get(healthz))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let local = peer.is_some_and(|p| is_loopback(p.ip()))
        && !PROXY_HEADERS.iter().any(|h| request.headers().contains_key(*h));
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let host = request
        .headers()
        .get(header::HOST)
        .map(HeaderValue::as_bytes)
        .or_else(|| request.uri().authority().map(|a| a.as_str().as_bytes()));
    let (status, reason) = match decide(shared.token.as_ref(), authorization, local, host) {
        Access::Allowed => return next.run(request).await,
        Access::Unauthorized(reason) => (StatusCode::UNAUTHORIZED, reason),
        Access::Forbidden(reason) => (StatusCode::FORBIDDEN, reason),
    };
    tracing::debug!(peer = ?peer, path = %request.uri().path(), %status, "agent request refused");
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"switchboard-agent\""),
        );
    }
    response
}

/// Asks the loop; `None` when it is gone or does not answer in time.
async fn ask(shared: &Shared, query: impl FnOnce(oneshot::Sender<String>) -> Query) -> Option<String> {
    let (tx, rx) = oneshot::channel();
    shared.query_tx.try_send(query(tx)).ok()?;
    tokio::time::timeout(ANSWER_TIMEOUT, rx).await.ok()?.ok()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "the agent's loop did not answer\n",
    )
        .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match ask(&shared, Query::Metrics).await {
        Some(text) => ([(header::CONTENT_TYPE, super::exposition::CONTENT_TYPE)], text).into_response(),
        None => unavailable(),
    }
}

async fn findings(State(shared): State<Arc<Shared>>) -> Response {
    match ask(&shared, Query::Findings).await {
        Some(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        None => unavailable(),
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let age = crate::monitor::now_ms().saturating_sub(shared.alive_ms.load(Ordering::Relaxed));
    if age <= LOOP_STALE.as_millis() as u64 {
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("the agent's loop has not run for {} s\n", age / 1000),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL_HOST: Option<&[u8]> = Some(b"127.0.0.1:9465");

    #[test]
    fn the_node_rule_applies() {
        let token = MonitorToken::new("s3cret").expect("token");
        assert_eq!(decide(None, None, true, LOCAL_HOST), Access::Allowed);
        assert_eq!(
            decide(None, None, false, LOCAL_HOST),
            Access::Forbidden(LOOPBACK_ONLY)
        );
        assert_eq!(
            decide(None, None, true, Some(b"evil.example:9465")),
            Access::Forbidden(LOOPBACK_HOST_ONLY)
        );
        assert_eq!(
            decide(None, None, true, None),
            Access::Forbidden(LOOPBACK_HOST_ONLY)
        );
        assert_eq!(
            decide(Some(&token), None, true, LOCAL_HOST),
            Access::Unauthorized(NO_TOKEN_SENT),
            "a token is required from loopback too"
        );
        assert_eq!(
            decide(Some(&token), Some(b"Bearer nope"), false, None),
            Access::Unauthorized(WRONG_TOKEN)
        );
        assert_eq!(
            decide(
                Some(&token),
                Some(b"Bearer s3cret"),
                false,
                Some(b"agent.example")
            ),
            Access::Allowed
        );
        for reason in [NO_TOKEN_SENT, WRONG_TOKEN, LOOPBACK_ONLY, LOOPBACK_HOST_ONLY] {
            assert!(!reason.contains("s3cret"));
        }
    }
}
