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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{mpsc, oneshot};

use crate::monitor_token::{Access, MonitorToken, Wording};

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

/// The agent's words for the monitor-token rule's refusals.
const WORDING: Wording = Wording {
    no_token_sent: "this agent requires a bearer token: send `Authorization: Bearer TOKEN` with the agent's --monitor-token",
    wrong_token: "the bearer token does not match this agent's --monitor-token",
    loopback_only: "this agent answers loopback clients only: start it with --monitor-token TOKEN (or SWITCHBOARD_MONITOR_TOKEN) and send `Authorization: Bearer TOKEN`",
    loopback_host_only: "this agent answers without a token only when the Host header names loopback (localhost, 127.0.0.1, [::1]): start it with --monitor-token TOKEN to be reached under another name",
    realm: "switchboard-agent",
    refused: "agent request refused",
};

/// The rule (`monitor_token::decide`) in the agent's words.
pub fn decide(
    token: Option<&MonitorToken>,
    authorization: Option<&[u8]>,
    local: bool,
    host: Option<&[u8]>,
) -> Access {
    crate::monitor_token::decide(token, authorization, local, host, &WORDING)
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
    match crate::monitor_token::refusal(shared.token.as_ref(), &request, &WORDING) {
        None => next.run(request).await,
        Some(refused) => refused,
    }
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
            Access::Forbidden(WORDING.loopback_only)
        );
        assert_eq!(
            decide(None, None, true, Some(b"evil.example:9465")),
            Access::Forbidden(WORDING.loopback_host_only)
        );
        assert_eq!(
            decide(None, None, true, None),
            Access::Forbidden(WORDING.loopback_host_only)
        );
        assert_eq!(
            decide(Some(&token), None, true, LOCAL_HOST),
            Access::Unauthorized(WORDING.no_token_sent),
            "a token is required from loopback too"
        );
        assert_eq!(
            decide(Some(&token), Some(b"Bearer nope"), false, None),
            Access::Unauthorized(WORDING.wrong_token)
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
        for reason in [
            WORDING.no_token_sent,
            WORDING.wrong_token,
            WORDING.loopback_only,
            WORDING.loopback_host_only,
        ] {
            assert!(!reason.contains("s3cret"));
        }
    }
}
