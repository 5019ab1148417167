//! HTTP routes of a node (A.1): negotiate, the WebSocket transport with the connection cap, the
//! browser chat page and the monitor endpoints. Each accepted WebSocket becomes a `connection`
//! task tracked for shutdown; failures of one request or connection affect only that one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::stats::Stats;
use super::{NodeShared, PendingToken, connection, page, status};
use crate::protocol::negotiate;

/// Largest WebSocket message accepted: several hub messages may share one, but one message
/// never needs more than a few times the hub message limit.
fn max_ws_message(max_message_size: usize) -> usize {
    (max_message_size * 4).max(64 * 1024)
}

pub fn router(node: Arc<NodeShared>) -> Router {
    let path = node.config.path.clone();
    Router::new()
        .route(&format!("{path}/negotiate"), post(negotiate_handler))
        .route(&path, get(hub_get).post(hub_post).delete(hub_delete))
        .route("/", get(page::index))
        .route("/assets/chat.js", get(page::script))
        .route("/assets/style.css", get(page::style))
        .route("/switchboard/stats", get(status::stats_handler))
        .route("/switchboard/monitor", get(status::monitor_handler))
        .layer(axum::middleware::from_fn_with_state(node.clone(), cors))
        .with_state(node)
}

/// CORS for browser clients served from another origin (the official JavaScript client sends
/// credentials, so the origin is echoed, never `*`). Preflights of allowed origins are answered
/// here; everything else passes through untouched. WebSocket upgrades are not subject to CORS.
async fn cors(State(node): State<Arc<NodeShared>>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| {
            node.config
                .cors_origins
                .iter()
                .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(o))
        })
        .and_then(|o| HeaderValue::from_str(o).ok());
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    let mut response = if request.method() == Method::OPTIONS {
        let requested = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned();
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let h = preflight.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        if let Some(requested) = requested {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        preflight
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// Query keys are matched case-insensitively, as ASP.NET Core does.
fn query<'a>(q: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn json(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn negotiate_handler(
    State(node): State<Arc<NodeShared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let version = match negotiate::select_version(query(&q, "negotiateVersion")) {
        Ok(version) => version,
        Err(error) => return json(negotiate::error_response(&error)),
    };
    let connection_id = negotiate::new_id();
    let token = if version >= 1 {
        negotiate::new_id()
    } else {
        connection_id.clone()
    };
    {
        let mut tokens = node.lock_tokens();
        // Tokens expire after the negotiate TTL; this bound keeps a flood of negotiates from
        // growing the map in between.
        if tokens.len() >= node.config.max_connections.saturating_mul(2).max(64) {
            Stats::inc(&node.stats.rejected_connections);
            return text(StatusCode::SERVICE_UNAVAILABLE, "Too many pending connections.");
        }
        tokens.insert(
            token.clone(),
            PendingToken {
                connection_id: connection_id.clone(),
                created: Instant::now(),
                active: false,
            },
        );
    }
    json(negotiate::response(version, &connection_id, &token))
}

async fn hub_get(
    State(node): State<Arc<NodeShared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let token = query(&q, "id").map(str::to_string);
    let Ok(ws) = ws else {
        let sse = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        let transport = if sse { "ServerSentEvents" } else { "LongPolling" };
        return text(
            StatusCode::NOT_FOUND,
            format!("{transport} transport not supported by this end point type"),
        );
    };
    if node.shutdown.is_cancelled() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "The node is shutting down.");
    }
    // Reserve a slot first, so concurrent upgrades cannot overshoot the cap.
    let live = node.live.fetch_add(1, Ordering::SeqCst);
    if live >= node.config.max_connections {
        node.live.fetch_sub(1, Ordering::SeqCst);
        Stats::inc(&node.stats.rejected_connections);
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "The node is at its limit of {} connections.",
                node.config.max_connections
            ),
        );
    }
    let slot = LiveSlot(node.clone());
    let connection_id = match &token {
        None => negotiate::new_id(),
        Some(token) => {
            let mut tokens = node.lock_tokens();
            match tokens.get_mut(token) {
                None => return text(StatusCode::NOT_FOUND, "No Connection with that ID"),
                Some(entry) if entry.active => {
                    return text(
                        StatusCode::CONFLICT,
                        "Connection ID is already in use by another transport.",
                    );
                }
                Some(entry) => {
                    entry.active = true;
                    entry.connection_id.clone()
                }
            }
        }
    };
    let user = query(&q, "user").filter(|u| !u.is_empty()).map(str::to_string);
    Stats::inc(&node.stats.connections_accepted);
    let max = max_ws_message(node.config.max_message_size);
    let tracker = node.tracker.clone();
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                let node = slot.0.clone();
                connection::serve(socket, node.clone(), connection_id.into(), user).await;
                if let Some(token) = token {
                    node.lock_tokens().remove(&token);
                }
                drop(slot);
            })
        })
}

/// Releases a connection slot when the upgrade fails or the connection ends.
struct LiveSlot(Arc<NodeShared>);

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn hub_post(State(node): State<Arc<NodeShared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    match query(&q, "id") {
        Some(token) if node.lock_tokens().contains_key(token) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST requests are not allowed for WebSocket connections.",
        ),
        _ => text(StatusCode::NOT_FOUND, "No Connection with that ID"),
    }
}

async fn hub_delete(
    State(node): State<Arc<NodeShared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match query(&q, "id") {
        Some(token) if node.lock_tokens().contains_key(token) => text(
            StatusCode::BAD_REQUEST,
            "Cannot terminate this connection using the DELETE endpoint.",
        ),
        _ => text(StatusCode::NOT_FOUND, "No Connection with that ID"),
    }
}
