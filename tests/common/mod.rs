//! The integration-test harness, shared by every `tests/*.rs` binary (`mod common;`).
//!
//! - `certs`: test certificates made with the `openssl` CLI (CA, server, client, another CA, an
//!   expired one) and a TLS-only `redis-server` (`--tls-port`, optional mutual TLS).
//! - `cluster`: a test-owned Redis Cluster (N primaries, R replicas), kill/restart a node, wait for failover;
//!   the shared `ServerProcess` child helper.
//! - `sentinel`: a primary, a replica and three sentinels; kill the primary, wait for failover.
//! - `redis`: a test-owned `redis-server` (start, kill, restart), one-shot commands, a PSUBSCRIBE tap.
//! - `kittest`: driving the real dashboard app with egui_kittest (frames until, labels, clicks).
//! - `listener`: a plain TCP listener that records the head of every request and answers with a
//!   fixed response (what tools send to a node, read off the wire).
//! - `http`: plain HTTP requests (negotiate, stats, wrong methods) with deadlines.
//! - `vectors`: the byte-exact protocol test vectors.
//! - `xvfb`: a private X server for tests that open the real window.
//! - here: deadlines (`STEP`, `within`), unique channel prefixes, starting nodes, connecting clients,
//!   and assertions on what a client receives.
//!
//! Every await in a test goes through a deadline so a hang fails fast with a label, never a stuck CI.
#![allow(dead_code)]

pub mod certs;
pub mod cluster;
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

/// How long `expect_silence` callers typically wait: long enough for a wrongly routed message to
/// cross a backplane, short enough to keep suites fast.
pub const SILENCE: Duration = Duration::from_millis(300);

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

/// Asserts that nothing arrives within `d` (no invocation, and no Close or disconnect either).
pub async fn expect_silence(client: &mut HubClient, d: Duration) {
    if let Some(event) = client.recv_timeout(d).await {
        panic!("expected silence for {d:?}, got {event:?}");
    }
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
