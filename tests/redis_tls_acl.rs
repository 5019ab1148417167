//! The backplanes operators run, on real processes: a TLS-only `redis-server` with certificates
//! made at test time (server-verified and mutual TLS), and ACL users with and without pub/sub
//! permission. Two hub nodes exchange messages over each, the dashboard's tap and census work over
//! each, and every misconfiguration is refused with a readable reason that never shows a password.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::certs::{ClientAuth, TestCerts, TlsRedis};
use common::redis::{RedisServer, redis_cmd};
use common::{STEP, connect, expect_message, start_node, unique_prefix, wait_connected, within};
use switchboard::client::str_args;
use switchboard::hub::{BackplaneChoice, NodeHandle};
use switchboard::monitor::{LinkState, MonitorCommand, MonitorEvent, MonitorHandle, TapSource};
use switchboard::protocol::Protocol;
use switchboard::redis_conn::{RedisOptions, RedisSpec};
use switchboard::tls::ClientTls;

const WAIT: Duration = Duration::from_secs(20);

fn spec(url: &str, tls: ClientTls) -> RedisSpec {
    RedisSpec::parse(
        url,
        &RedisOptions {
            tls,
            ..RedisOptions::default()
        },
    )
    .unwrap()
}

/// Two nodes on `spec`: a broadcast from a client of A reaches a client of B.
async fn two_nodes_exchange(spec: &RedisSpec, prefix: &str) -> (NodeHandle, NodeHandle) {
    let a = start_node("node-a", BackplaneChoice::Redis(spec.clone()), prefix).await;
    let b = start_node("node-b", BackplaneChoice::Redis(spec.clone()), prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let alice = connect(&a, Protocol::Json, Some("alice")).await;
    let mut bob = connect(&b, Protocol::MessagePack, Some("bob")).await;
    within(
        "SendMessage",
        alice.invoke("SendMessage", str_args(&["alice", "over the backplane"])),
    )
    .await
    .unwrap();
    assert_eq!(
        expect_message(&mut bob, "ReceiveMessage", STEP).await,
        str_args(&["alice", "over the backplane"])
    );
    (a, b)
}

/// The last error a node's backplane reported, once it has one.
async fn backplane_error(node: &NodeHandle) -> String {
    let mut status = node.backplane_status();
    let status = within_long("a backplane error", status.wait_for(|s| s.last_error.is_some())).await;
    status.unwrap().last_error.clone().unwrap()
}

async fn within_long<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    common::within_for(what, WAIT, fut).await
}

/// The tap on `spec`: waits for it to be connected, for a census that counts `connections` on
/// the hub, and for a decoded message; returns the monitor.
async fn tap_works(
    spec: &RedisSpec,
    prefix: &str,
    connections: u64,
    publish: impl std::future::Future<Output = ()>,
) {
    let (monitor, mut rx) = MonitorHandle::start();
    assert!(monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: Box::new(spec.clone()),
        prefix: prefix.to_string(),
    }))));
    let mut events = Vec::new();
    let mut connected = false;
    let mut counted = false;
    let mut traffic = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut publish = Box::pin(publish);
    let mut published = false;
    while !(connected && counted && traffic) {
        let batch = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(batch)) => batch,
            _ => panic!(
                "tap over {}: connected {connected}, census {counted}, traffic {traffic}; last events {:#?}",
                spec.redacted(),
                &events[events.len().saturating_sub(10)..]
            ),
        };
        for event in &batch {
            match event {
                MonitorEvent::Tap {
                    state: LinkState::Connected,
                    ..
                } => connected = true,
                MonitorEvent::Census { hubs, .. } if hubs.iter().any(|h| h.connections >= connections) => {
                    counted = true
                }
                MonitorEvent::Traffic(entries) if entries.iter().any(|e| e.channel.starts_with(prefix)) => {
                    traffic = true
                }
                _ => {}
            }
        }
        events.extend(batch);
        if connected && !published {
            (&mut publish).await;
            published = true;
        }
    }
    monitor.shutdown();
    within("the monitor stops", monitor.stopped()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_tap_and_census_work_over_tls_with_the_ca() {
    let certs = TestCerts::make();
    let redis = TlsRedis::start(&certs, ClientAuth::No).await;
    let prefix = unique_prefix();
    let spec = spec(&redis.url(), certs.client_tls());
    assert!(
        spec.describe().starts_with("TLS, verified"),
        "{}",
        spec.describe()
    );
    let (a, b) = two_nodes_exchange(&spec, &prefix).await;
    let carol = connect(&a, Protocol::Json, Some("carol")).await;
    let mut dave = connect(&b, Protocol::Json, Some("dave")).await;
    tap_works(&spec, &prefix, 4, async {
        within(
            "SendMessage",
            carol.invoke("SendMessage", str_args(&["carol", "seen by the tap"])),
        )
        .await
        .unwrap();
        expect_message(&mut dave, "ReceiveMessage", STEP).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let certs = TestCerts::make();
    let redis = TlsRedis::start(&certs, ClientAuth::Yes).await;
    let prefix = unique_prefix();
    two_nodes_exchange(&spec(&redis.url(), certs.client_tls_mutual()), &prefix).await;

    // Without the client certificate the server ends the connection: a readable error, no panic.
    let bare = start_node(
        "no-cert",
        BackplaneChoice::Redis(spec(&redis.url(), certs.client_tls())),
        &prefix,
    )
    .await;
    let error = backplane_error(&bare).await;
    assert!(error.contains("client certificate"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_a_plaintext_mix_up_is_named() {
    let certs = TestCerts::make();
    let tls_redis = TlsRedis::start(&certs, ClientAuth::No).await;
    let prefix = unique_prefix();

    let wrong_ca = start_node(
        "wrong-ca",
        BackplaneChoice::Redis(spec(&tls_redis.url(), certs.client_tls_wrong_ca())),
        &prefix,
    )
    .await;
    let error = backplane_error(&wrong_ca).await;
    assert!(error.contains("not trusted: unknown issuer"), "{error}");

    // A plain redis:// client against the TLS port.
    let plain_url = format!("redis://:pw-not-shown@127.0.0.1:{}", tls_redis.port());
    let plain = start_node("plain-on-tls", BackplaneChoice::RedisUrl(plain_url), &prefix).await;
    let error = backplane_error(&plain).await;
    assert!(
        error.contains("rediss://") || error.contains("timed out"),
        "a plain client on a TLS port: {error}"
    );
    assert!(!error.contains("pw-not-shown"), "{error}");

    // A TLS client against a plain port.
    let plain_redis = RedisServer::start().await;
    let tls_on_plain = start_node(
        "tls-on-plain",
        BackplaneChoice::Redis(spec(
            &format!("rediss://127.0.0.1:{}", plain_redis.port()),
            certs.client_tls(),
        )),
        &prefix,
    )
    .await;
    let error = backplane_error(&tls_on_plain).await;
    // Redis reads the ClientHello as the start of an inline command and waits: the connect
    // times out, and says why it probably did.
    assert!(error.contains("plaintext port"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_acl_user_runs_the_nodes_and_the_tap_and_a_user_without_pubsub_is_told_why() {
    let redis = RedisServer::start().await;
    let admin = redis.url();
    for args in [
        // What the README asks operators to grant.
        &[
            "ACL",
            "SETUSER",
            "watcher",
            "on",
            ">watcher-pw",
            "~*",
            "&*",
            "+@pubsub",
            "+@connection",
            "+info",
            "+client|list",
            "+cluster|shards",
        ][..],
        &[
            "ACL",
            "SETUSER",
            "nopubsub",
            "on",
            ">np-pw",
            "~*",
            "&*",
            "+@connection",
            "+info",
        ][..],
    ] {
        within("ACL SETUSER", redis_cmd(&admin, args)).await.unwrap();
    }
    let prefix = unique_prefix();
    let port = redis.port();
    let watcher = RedisSpec::parse(
        &format!("redis://watcher:watcher-pw@127.0.0.1:{port}"),
        &RedisOptions::default(),
    )
    .unwrap();
    assert_eq!(
        watcher.redacted(),
        format!("redis://watcher:***@127.0.0.1:{port}")
    );
    let (a, b) = two_nodes_exchange(&watcher, &prefix).await;
    let carol = connect(&a, Protocol::Json, Some("carol")).await;
    let mut dave = connect(&b, Protocol::Json, Some("dave")).await;
    tap_works(&watcher, &prefix, 4, async {
        within(
            "SendMessage",
            carol.invoke("SendMessage", str_args(&["carol", "via ACL"])),
        )
        .await
        .unwrap();
        expect_message(&mut dave, "ReceiveMessage", STEP).await;
    })
    .await;

    let denied = start_node(
        "denied",
        BackplaneChoice::RedisUrl(format!("redis://nopubsub:np-pw@127.0.0.1:{port}")),
        &prefix,
    )
    .await;
    let error = backplane_error(&denied).await;
    assert!(
        error.contains("lacks permission for SUBSCRIBE (grant +@pubsub)"),
        "{error}"
    );
    assert!(!error.contains("np-pw"), "{error}");

    let wrong = start_node(
        "wrong-password",
        BackplaneChoice::RedisUrl(format!("redis://watcher:nope-pw@127.0.0.1:{port}")),
        &prefix,
    )
    .await;
    let error = backplane_error(&wrong).await;
    assert!(error.contains("wrong user or password"), "{error}");
    assert!(!error.contains("nope-pw"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_that_is_not_a_cluster_is_named_when_a_cluster_is_required() {
    let redis = RedisServer::start().await;
    let spec = RedisSpec::parse(
        &redis.url(),
        &RedisOptions {
            cluster: switchboard::redis_conn::ClusterMode::Required,
            ..RedisOptions::default()
        },
    )
    .unwrap();
    let node = start_node(
        "not-a-cluster",
        BackplaneChoice::Redis(spec.clone()),
        &unique_prefix(),
    )
    .await;
    let error = backplane_error(&node).await;
    assert!(error.contains("is not in cluster mode"), "{error}");
    // Detected, not required: the same server is used as itself.
    let detect = RedisSpec::parse(&redis.url(), &RedisOptions::default()).unwrap();
    let reached = within(
        "reach",
        switchboard::redis_conn::RedisConnector::new(detect)
            .unwrap()
            .reach(),
    )
    .await
    .unwrap();
    assert_eq!(
        reached.describe(),
        format!("single server 127.0.0.1:{}", redis.port())
    );
}
