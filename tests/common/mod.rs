//! The integration-test harness, shared by every `tests/*.rs` binary (`mod common;`).
//!
//! - `bin`: the real binary run as a user would (a deadline, a clean environment, a private state folder).
//! - `certs`: test certificates made with the `openssl` CLI (CA, server, client, another CA, an
//!   expired one) and a TLS-only `redis-server` (`--tls-port`, optional mutual TLS).
//! - `dashboard`: the dashboard's data side without a window (a real monitor folded into a model).
//! - `cluster`: a test-owned Redis Cluster (N primaries, R replicas), kill/restart a node, wait for failover;
//!   the shared `ServerProcess` handle.
//!
//! Every server (plain, password, TLS, cluster node, sentinel) is started by ONE builder, the
//! crate's `demo::redis_server::RedisBuilder` (free port, private folder, readiness check,
//! PDEATHSIG, log tail on failure); the modules here are thin users that panic on failure.
//! - `sentinel`: a primary, a replica and three sentinels; kill the primary, wait for failover.
//! - `redis`: a test-owned `redis-server` (start, kill, restart), one-shot commands, a PSUBSCRIBE tap.
//! - `kittest`: driving the real dashboard app with egui_kittest (frames until, labels, clicks).
//! - `listener`: a plain TCP listener that records the head of every request and answers with a
//!   fixed response (what tools send to a node, read off the wire).
//! - `http`: plain HTTP requests (negotiate, stats, wrong methods) with deadlines.
//! - `vectors`: the byte-exact protocol test vectors.
//! - `xvfb`: a private X server for tests that open the real window.
//! - here: deadlines (`STEP`, `within`), unique channel prefixes, the one `free_port`, starting
//!   nodes, connecting clients, and assertions on what a client receives; "nothing arrived" is
//!   checked with a positive marker (`expect_nothing_before`), never a timed silence.
//!
//! Every await in a test goes through a deadline so a hang fails fast with a label, never a stuck CI.
#![allow(dead_code)]

pub mod bin;
pub mod certs;
pub mod cluster;
pub mod dashboard;
pub mod events;
pub mod http;
#[cfg(feature = "gui")]
pub mod kittest;
pub mod listener;
pub mod redis;
pub mod sentinel;
pub mod vectors;
pub mod xvfb;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard::client::{ClientEvent, ClientOptions, HubClient};
use switchboard::hub::{BackplaneChoice, Node, NodeConfig, NodeHandle};
use switchboard::protocol::{Protocol, Value};

/// The deadline for any single await in a test: generous for a loaded CI machine, short enough
/// that a hang is reported within seconds.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `fut` within [`STEP`]; panics with `what` on timeout.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    within_for(what, STEP, fut).await
}

/// Awaits `fut` within `limit`; panics with `what` on timeout.
pub async fn within_for<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// A channel prefix no other test of any running binary uses: `t{pid}_{counter}_`.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}_{}_",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Starts a node named `name` on `127.0.0.1:0` with the given backplane and channel prefix.
pub async fn start_node(name: &str, backplane: BackplaneChoice, prefix: &str) -> NodeHandle {
    let mut config = NodeConfig::new(name);
    config.channel_prefix = prefix.to_string();
    start_node_with(config, backplane).await
}

/// Starts a node with a full config (for tests that change timeouts, caps, paths).
pub async fn start_node_with(config: NodeConfig, backplane: BackplaneChoice) -> NodeHandle {
    let name = config.node_name.clone();
    within(&format!("starting node {name}"), Node::start(config, backplane))
        .await
        .unwrap_or_else(|e| panic!("starting node {name}: {e}"))
}

/// Waits until `node`'s backplane reports up (connected, every channel subscribed).
pub async fn wait_connected(node: &NodeHandle) {
    let mut status = node.backplane_status();
    within("backplane connected", status.wait_for(|s| s.state.is_up()))
        .await
        .expect("status");
}

/// Connects a client to `node` with negotiate and the default options.
pub async fn connect(node: &NodeHandle, protocol: Protocol, user: Option<&str>) -> HubClient {
    let options = ClientOptions {
        protocol,
        user: user.map(str::to_string),
        ..ClientOptions::default()
    };
    connect_with(node, options).await
}

/// Connects a client to `node` with explicit options.
pub async fn connect_with(node: &NodeHandle, options: ClientOptions) -> HubClient {
    let url = node.hub_url();
    within(&format!("connecting to {url}"), HubClient::connect(&url, options))
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// The next event must be an Invocation of `target` arriving within `timeout`; returns its
/// arguments. Anything else (another target, a Close, a disconnect, nothing) panics and says what.
pub async fn expect_message(client: &mut HubClient, target: &str, timeout: Duration) -> Vec<Value> {
    match client.recv_timeout(timeout).await {
        Some(ClientEvent::Invocation {
            target: got,
            arguments,
        }) => {
            assert_eq!(
                got, target,
                "expected an invocation of {target:?}, got {got:?} with arguments {arguments:?}"
            );
            arguments
        }
        Some(other) => panic!("expected an invocation of {target:?}, got {other:?}"),
        None => panic!("expected an invocation of {target:?} within {timeout:?}, got nothing"),
    }
}

/// Asserts that nothing reached `client` before `marker`: `sender` sends `client` a
/// `ReceiveMessage("marker", marker)` to its connection id (`SendToConnection`), and the first
/// thing `client` receives must be exactly that (not another invocation, nor a Close, nor a
/// disconnect).
///
/// The marker is positive evidence that whatever came before it has been delivered, so "nothing
/// before the marker" means "nothing", with no timed wait; but only if the marker is ordered
/// after the action under test. It is when the action is `sender`'s own earlier call on the
/// same node as `client` (a connection's messages are handled in order, and a node's sends to
/// its own connections go through their one outbound queue). For an action that crosses a
/// backplane, first let a witness receive a message sent after the action on the SAME channel
/// (the node has then handled the action's message), then call this: see
/// `cluster_redis.rs`.
pub async fn expect_nothing_before(client: &mut HubClient, sender: &HubClient, marker: &str) {
    let id = connection_id(client).await;
    send_marker(sender, &id, marker).await;
    expect_marker(client, marker).await;
}

/// [`expect_nothing_before`] with `client` sending the marker to itself.
pub async fn expect_nothing_before_own(client: &mut HubClient, marker: &str) {
    let id = connection_id(client).await;
    send_marker(client, &id, marker).await;
    expect_marker(client, marker).await;
}

async fn send_marker(sender: &HubClient, id: &str, marker: &str) {
    let args = vec![s(id), s("marker"), s(marker)];
    within("sending the marker", sender.invoke("SendToConnection", args))
        .await
        .unwrap_or_else(|e| panic!("sending the marker {marker:?}: {e}"));
}

/// The first thing `client` receives must be `ReceiveMessage("marker", marker)`.
async fn expect_marker(client: &mut HubClient, marker: &str) {
    match client.recv_timeout(STEP).await {
        Some(ClientEvent::Invocation { target, arguments })
            if target == "ReceiveMessage" && arguments == [s("marker"), s(marker)] => {}
        Some(other) => panic!("expected nothing before the marker {marker:?}, got {other:?}"),
        None => panic!("the marker {marker:?} did not arrive within {STEP:?}"),
    }
}

/// Sends `SendToGroup room ["x", "{label} {n}"]` from `from` every 50 ms or so until `to`
/// receives one of THESE messages (others, e.g. a previous direction's stragglers, are skipped,
/// so nothing needs draining first); returns the time since `since`. Panics past `limit` after
/// `since`. For failover tests, which measure and print the time (never assert on it).
pub async fn first_delivery(
    from: &HubClient,
    to: &mut HubClient,
    since: tokio::time::Instant,
    label: &str,
    limit: Duration,
) -> Duration {
    let deadline = since + limit;
    let prefix = format!("{label} ");
    let mut n = 0u32;
    loop {
        n += 1;
        let text = format!("{label} {n}");
        // While the sender's node reconnects the call still completes (the publish fails and is counted).
        let args = vec![s("room"), s("x"), s(&text)];
        let _ = tokio::time::timeout(STEP, from.invoke("SendToGroup", args)).await;
        // The poll's pace, not an ordering: each round sends another message.
        let round = tokio::time::Instant::now() + Duration::from_millis(50);
        while let Ok(Some(event)) = tokio::time::timeout_at(round, to.recv()).await {
            if let ClientEvent::Invocation { target, arguments } = &event
                && target == "ReceiveMessage"
                && matches!(arguments.get(1), Some(Value::String(t)) if t.as_str().is_some_and(|t| t.starts_with(&prefix)))
            {
                return since.elapsed();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{label}: no cross-node delivery within {limit:?}"
        );
    }
}

/// `client`'s connection id (`GetConnectionId`).
pub async fn connection_id(client: &HubClient) -> String {
    match within("GetConnectionId", client.invoke("GetConnectionId", vec![]))
        .await
        .unwrap_or_else(|e| panic!("GetConnectionId: {e}"))
    {
        switchboard::protocol::CompletionResult::Value(Value::String(id)) => id
            .into_str()
            .unwrap_or_else(|| panic!("GetConnectionId returned a non-UTF-8 id")),
        other => panic!("GetConnectionId returned {other:?}"),
    }
}

/// A free loopback port (the crate's one `free_port`: bound to `127.0.0.1:0` and released), for
/// a server the test starts, or as a port where nothing listens.
pub fn free_port() -> u16 {
    switchboard::demo::redis_server::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// The next event must be a Close (within `timeout`); returns (error, allow_reconnect).
pub async fn expect_close(client: &mut HubClient, timeout: Duration) -> (Option<String>, bool) {
    match client.recv_timeout(timeout).await {
        Some(ClientEvent::Close {
            error,
            allow_reconnect,
        }) => (error, allow_reconnect),
        Some(other) => panic!("expected a Close within {timeout:?}, got {other:?}"),
        None => panic!("expected a Close within {timeout:?}, got nothing"),
    }
}

/// Skips events until the connection ends (within `timeout`); returns the disconnect reason.
pub async fn expect_disconnect(client: &mut HubClient, timeout: Duration) -> String {
    let wait = async {
        loop {
            match client.recv().await {
                Some(ClientEvent::Disconnected { reason }) => return reason,
                Some(_) => continue,
                None => return "already disconnected".to_string(),
            }
        }
    };
    within_for("waiting for the client to be disconnected", timeout, wait).await
}

/// Shorthand for a string value.
pub fn s(text: &str) -> Value {
    Value::from(text)
}
