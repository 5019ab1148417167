//! One health pipeline: `switchboard check --json` and the dashboard (its real runtime's events
//! folded into a `Model`, then `inputs_from_model` and `Evaluation`, as the UI does) look at the
//! same real redis-server and the same two real nodes, and must count alike: servers per hub,
//! return channels, `NUMSUB` of `:all` and `:internal:groups`, connections, users and groups,
//! the nodes' pub/sub clients; and find alike: the same set of (rule, severity), but for the
//! rules only one side can have (`canary`: check's test messages; `tap-gap`: the dashboard's tap).
//!
//! Order, by positive markers only: the dashboard first sees both nodes connected and its two
//! probe clients in the census; then check runs (its own clients come and go); then the
//! dashboard's figures are read from a census walk, a health round and a Redis view round all
//! taken after check exited.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use common::dashboard::Dashboard;
use common::redis::RedisServer;
use common::{start_node, unique_prefix, wait_connected};
use switchboard::check::{RedisFigures, figures};
use switchboard::hub::BackplaneChoice;
use switchboard::monitor::model::Model;
use switchboard::monitor::model::health::{self, Evaluation};
use switchboard::monitor::{LinkState, now_ms};

/// `switchboard check ARGS…`, within a deadline well above its own `--timeout`.
async fn check(args: Vec<String>) -> Output {
    let args = std::iter::once("check".to_string()).chain(args).collect();
    common::bin::run(args, &[], Duration::from_secs(30)).await
}

/// How long the dashboard may take to show a state: a census walk and a health round (2 s
/// each), a Redis view round (5 s), a node's links.
const WAIT: Duration = Duration::from_secs(40);

/// Rules only one side can produce.
const ONE_SIDED: [&str; 2] = ["canary", "tap-gap"];

fn census_connections(model: &Model) -> u64 {
    model
        .census
        .as_ref()
        .map_or(0, |(_, hubs)| hubs.iter().map(|h| h.connections).sum())
}

/// The pub/sub clients of the nodes (each names its Redis connections `switchboard-hub:NAME`);
/// the observers' own (the dashboard's tap, check's heartbeat listener) come and go with them.
fn node_clients(f: &RedisFigures) -> Option<Vec<String>> {
    f.pubsub_clients.as_ref().map(|names| {
        names
            .iter()
            .filter(|n| n.starts_with("switchboard-hub:"))
            .cloned()
            .collect()
    })
}

fn rules(findings: impl IntoIterator<Item = (String, String)>) -> BTreeSet<(String, String)> {
    findings
        .into_iter()
        .filter(|(rule, _)| !ONE_SIDED.contains(&rule.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_the_dashboard_count_and_find_alike() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("pipe-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("pipe-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let mut dash = Dashboard::start(&redis.url(), &prefix, WAIT);
    dash.watch(a.hub_url(), a.base_url());
    dash.watch(b.hub_url(), b.base_url());
    dash.wait_model("both nodes connected, their probes in the census", |m| {
        m.nodes
            .rows()
            .iter()
            .filter(|r| r.state == LinkState::Connected && r.stats.is_some())
            .count()
            == 2
            && census_connections(m) >= 2
    })
    .await;

    let out = check(vec![
        "--redis".into(),
        redis.url(),
        "--channel-prefix".into(),
        prefix.clone(),
        "--node".into(),
        a.hub_url(),
        "--node".into(),
        b.hub_url(),
        "--timeout".into(),
        "8".into(),
        "--no-state".into(),
        "--json".into(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let from_check: RedisFigures = serde_json::from_value(doc["redis_figures"].clone()).unwrap();
    let check_rules = rules(doc["findings"].as_array().unwrap().iter().map(|f| {
        (
            f["rule"].as_str().unwrap().to_string(),
            f["severity"].as_str().unwrap().to_string(),
        )
    }));
    let ended = now_ms();

    // The dashboard's figures from rounds taken after check ended.
    dash.wait_model(
        "a census, a health round and a Redis view round after check",
        |m| {
            m.census.as_ref().is_some_and(|(at, _)| *at > ended)
                && m.health_round
                    .as_ref()
                    .is_some_and(|r| r.at_ms > ended && r.problem.is_none())
                && m.redis.latest().is_some_and(|s| s.at_ms > ended)
        },
    )
    .await;
    let now = now_ms();
    let inputs = health::inputs_from_model(&dash.model, &prefix, health::MODEL_WINDOW_MS, now);
    let evaluation = Evaluation::of(&inputs, dash.model.health_round.as_ref());
    let census = dash.model.census.as_ref().map(|(_, c)| c.clone()).unwrap();
    let from_dashboard = figures(&census, &inputs);

    // Every count alike, per hub.
    assert_eq!(
        from_check.hubs, from_dashboard.hubs,
        "check (left) and the dashboard (right) count apart"
    );
    let hub = &from_check.hubs[0];
    assert_eq!(from_check.hubs.len(), 1, "{from_check:?}");
    assert_eq!(
        (
            hub.servers,
            hub.return_channels,
            hub.numsub_all,
            hub.numsub_groups
        ),
        (2, 2, Some(2), Some(2)),
        "{hub:?}"
    );
    assert_eq!(hub.connections, 2, "the dashboard's two probe clients: {hub:?}");
    let nodes = node_clients(&from_check);
    assert_eq!(nodes, node_clients(&from_dashboard), "pub/sub clients");
    assert!(
        nodes.as_ref().is_some_and(|n| n.len() >= 2),
        "each node holds a pub/sub connection: {nodes:?}"
    );

    // The same findings, but for the one-sided rules.
    let dashboard_rules = rules(
        evaluation
            .findings
            .iter()
            .map(|f| (f.rule.to_string(), f.severity.label().to_string())),
    );
    assert_eq!(
        check_rules, dashboard_rules,
        "check (left) and the dashboard (right) find apart; dashboard findings: {:#?}",
        evaluation.findings
    );
    assert!(check_rules.contains(&("servers".to_string(), "info".to_string())));

    dash.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}
