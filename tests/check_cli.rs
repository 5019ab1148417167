//! `switchboard check`, the real binary against a real redis-server and real hub nodes: exit 0 on a
//! healthy pair, 0 with a deaf server (a warning: a raw Redis client subscribed only to an ack
//! channel, posing as a server that does not listen on `:all`) and 1 under `--fail-on warning`,
//! 2 with a node down (a closed port: critical), 3 for bad usage; the known-nodes state: a node
//! seen and then killed makes the default form (`check --redis URL`) exit 2 until it is back or
//! forgotten. Each run is bounded by its own `--timeout` and by the test's deadline; the state
//! files go to a folder of this test binary (`XDG_STATE_HOME`), never the user's.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::Output;
use std::time::Duration;

use common::redis::RedisServer;
use common::{start_node, start_node_with, unique_prefix, wait_connected, within};
use switchboard::hub::{BackplaneChoice, NodeConfig};

/// `switchboard check ARGS…`, within a deadline well above its own `--timeout`.
async fn check(args: Vec<String>) -> Output {
    let args = std::iter::once("check".to_string()).chain(args).collect();
    common::bin::run(args, &[], Duration::from_secs(30)).await
}

#[tokio::test]
async fn healthy_pair_exits_0_deaf_server_warns_node_down_exits_2() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("check-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("check-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let base = vec![
        "--redis".to_string(),
        redis.url(),
        "--channel-prefix".to_string(),
        prefix.clone(),
        "--node".to_string(),
        a.hub_url(),
        "--node".to_string(),
        b.hub_url(),
        "--timeout".to_string(),
        "6".to_string(),
    ];

    // Healthy: both test messages crossed, two servers counted four ways.
    let out = check(base.clone()).await;
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("2 test deliveries between nodes arrived"),
        "{report}"
    );
    assert!(
        report.contains("ack channels 2, return channels 2") && report.contains("NUMSUB :all 2"),
        "{report}"
    );
    assert!(report.contains("check: healthy"), "{report}");

    // JSON: the same verdict, machine-readable.
    let mut json_args = base.clone();
    json_args.push("--json".into());
    let out = check(json_args).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::bin::text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "healthy");
    assert_eq!(doc["exit_code"], 0);
    assert!(
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "canary")
    );

    // Deaf: a raw client subscribed to an ack channel only, posing as a third server.
    let hub = switchboard::config::DEFAULT_HUB_NAME;
    let fake = format!("{prefix}{hub}:internal:ack:fakehost_00000000000000000000000000000000");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut deaf = within("deaf subscriber", client.get_async_pubsub())
        .await
        .unwrap();
    within("subscribe the ack channel", deaf.subscribe(&fake))
        .await
        .unwrap();
    let out = check(base.clone()).await;
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(0), "a warning only: {report}");
    assert!(report.contains("deaf-server"), "{report}");
    assert!(
        report.contains(&format!("NUMSUB {prefix}{hub}:all = 2, ack channels = 3")),
        "{report}"
    );
    assert!(report.contains("without heartbeat: fakehost_"), "{report}");
    assert!(report.contains("check: degraded"), "{report}");
    let mut strict = base.clone();
    strict.extend(["--fail-on".to_string(), "warning".to_string()]);
    let out = check(strict).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "--fail-on warning: {}",
        common::bin::text(&out)
    );
    drop(deaf);

    // Down: a third node URL on a closed port.
    let mut down_args = base.clone();
    down_args.push("--node".into());
    down_args.push(format!("http://127.0.0.1:{}/chat", common::free_port()));
    let out = check(down_args).await;
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(report.contains("node-unreachable"), "{report}");
    assert!(report.contains("check: broken"), "{report}");

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn discovered_nodes_and_an_unreachable_redis() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("disc-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("disc-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    // No --node: the two heartbeating nodes are found and checked.
    let out = check(vec![
        "--redis".into(),
        redis.url(),
        "--channel-prefix".into(),
        prefix.clone(),
        "--timeout".into(),
        "8".into(),
    ])
    .await;
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("2 node(s)"), "{report}");
    assert!(
        report.contains("2 test deliveries between nodes arrived"),
        "{report}"
    );
    a.shutdown().await;
    b.shutdown().await;

    // Redis on a closed port: a critical finding and exit 2 (the run is bounded by its own
    // --timeout and by the helper's deadline), not a crash.
    let out = check(vec![
        "--redis".into(),
        format!("redis://:hunter2secret@127.0.0.1:{}", common::free_port()),
        "--timeout".into(),
        "3".into(),
    ])
    .await;
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(report.contains("redis-unreachable"), "{report}");
    assert!(
        !report.contains("hunter2secret"),
        "the password never shows: {report}"
    );

    // A command line that cannot run exits 3, never 2 (which a probe would read as a finding).
    let out = check(vec!["--timeout".into(), "3".into()]).await;
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert!(report.contains("needs --redis URL"), "{report}");
}

#[tokio::test]
async fn an_event_key_reports_the_signalr2_counter_and_its_servers() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    common::redis::redis_cmd(&url, &["SET", "SignalRChat", "1234"])
        .await
        .unwrap();
    // One SignalR 2 server (app domain) subscribed to the event key's channel.
    let client = redis::Client::open(url.clone()).unwrap();
    let mut server = within("sr2 subscriber", client.get_async_pubsub()).await.unwrap();
    within("subscribe the event key", server.subscribe("SignalRChat"))
        .await
        .unwrap();
    let out = check(vec![
        "--redis".into(),
        url.clone(),
        "--event-key".into(),
        "SignalRChat".into(),
        "--event-key".into(),
        "NoSuchKey".into(),
        "--timeout".into(),
        "4".into(),
    ])
    .await;
    let report = common::bin::text(&out);
    // The key asked for that does not exist is a warning (exit 0; 1 under --fail-on warning).
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains(
            "sr2-total: 1234 message(s) published on \"SignalRChat\" since its counter began (GET SignalRChat) (PUBSUB NUMSUB SignalRChat = 1: SignalR 2 servers (app domains) subscribed)"
        ),
        "{report}"
    );
    assert!(
        report.contains("WARNING  sr2-total: GET NoSuchKey: no such key")
            && report.contains("PUBSUB NUMSUB NoSuchKey = 0"),
        "{report}"
    );
    assert!(report.contains("check: degraded"), "{report}");
    // JSON carries the same finding for scripts.
    let out = check(vec![
        "--redis".into(),
        url,
        "--event-key".into(),
        "SignalRChat".into(),
        "--timeout".into(),
        "4".into(),
        "--json".into(),
    ])
    .await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "sr2-total")
        .cloned()
        .unwrap();
    assert_eq!(total["severity"], "info");
    assert!(total["summary"].as_str().unwrap().starts_with("1234 message(s)"));
}

/// The known-nodes state in the README's first form, `check --redis URL`: two nodes seen, one
/// killed: exit 2 with `node-gone` on the next run (and the next), 0 again once a node answers at
/// its hub URL again; `--forget`, `--expect-nodes`, a corrupt state file and `--no-state`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_seen_and_then_gone_fails_the_default_check_until_back_or_forgotten() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("known-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("known-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let b_url = b.hub_url();
    let b_addr = b.local_addr();
    let base = vec![
        "--redis".to_string(),
        redis.url(),
        "--channel-prefix".to_string(),
        prefix.clone(),
        "--timeout".to_string(),
        "8".to_string(),
    ];
    let with = |extra: &[&str]| {
        let mut args = base.clone();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    // First run: both seen and remembered.
    let out = check(with(&["--json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::bin::text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["known_nodes"], 2, "{doc}");
    let state = std::path::PathBuf::from(doc["state_file"].as_str().unwrap());
    assert!(
        state.starts_with(common::bin::state_home()),
        "{}",
        state.display()
    );
    let name = state.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("known-nodes-") && !name.contains("127.0.0.1"),
        "{name}"
    );

    // b dies: the default form fails, naming it, on this run and the next (b, known, is tried
    // at its hub URL too: a late heartbeat never makes a live node look gone).
    b.shutdown().await;
    for _ in 0..2 {
        let out = check(base.clone()).await;
        let report = common::bin::text(&out);
        assert_eq!(out.status.code(), Some(2), "{report}");
        assert!(report.contains("CRITICAL node-gone"), "{report}");
        assert!(report.contains(&b_url) && report.contains("known-b"), "{report}");
        assert!(report.contains("2 node(s)"), "{report}");
    }

    // --expect-nodes: one seen, two expected.
    let out = check(with(&["--no-state", "--expect-nodes", "2"])).await;
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(
        report.contains("node-count") && !report.contains("node-gone"),
        "{report}"
    );

    // b is back at its hub URL: 0 again.
    let mut config = NodeConfig::new("known-b");
    config.channel_prefix = prefix.clone();
    config.listen = b_addr;
    let b = start_node_with(config, BackplaneChoice::RedisUrl(redis.url())).await;
    wait_connected(&b).await;
    assert_eq!(b.hub_url(), b_url);
    let out = check(base.clone()).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::bin::text(&out));
    // Only a named: b, known, is tried too and answers; not gone.
    let out = check(with(&["--node", &a.hub_url()])).await;
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("2 node(s)") && !report.contains("node-gone"),
        "{report}"
    );

    // Gone again, then forgotten (by name): 0 without it; a name nobody knows is bad input.
    b.shutdown().await;
    let out = check(base.clone()).await;
    assert_eq!(out.status.code(), Some(2), "{}", common::bin::text(&out));
    let out = check(with(&["--forget", "known-b"])).await;
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains(&format!("forgot known-b ({b_url})")), "{report}");
    let out = check(with(&["--forget", "no-such-node"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", common::bin::text(&out));
    let out = check(base.clone()).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::bin::text(&out));

    // A corrupt state file: a warning, a fresh start, never a crash; then a clean file again.
    std::fs::write(&state, "{ not json").unwrap();
    let out = check(base.clone()).await;
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("WARNING  known-nodes"), "{report}");
    let out = check(with(&["--json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::bin::text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["known_nodes"], 1, "{doc}");
    a.shutdown().await;
}

/// A heartbeat is anyone's claim: one announcing a node that does not answer makes this run
/// critical (the node is checked and unreachable) but is not remembered, so the next run, without
/// it, is healthy (no `node-gone` for a node that never answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_heartbeat_is_not_remembered() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("real-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    wait_connected(&a).await;
    let base = vec![
        "--redis".to_string(),
        redis.url(),
        "--channel-prefix".to_string(),
        prefix.clone(),
        "--timeout".to_string(),
        "6".to_string(),
        "--json".to_string(),
    ];
    let forged = format!("http://127.0.0.1:{}", common::free_port());
    let beat = serde_json::to_vec(&switchboard::status_doc::Announcement {
        kind: "switchboard.node".to_string(),
        server_name: "forged_1".to_string(),
        node_name: "forged".to_string(),
        url: forged.clone(),
        hub_url: format!("{forged}/chat"),
        monitor_url: String::new(),
        hub: switchboard::config::DEFAULT_HUB_NAME.to_string(),
        connections: 0,
        version: "x".to_string(),
        ts_ms: 1,
    })
    .unwrap();
    // Repeated while check listens, as a live node's heartbeat is.
    let publisher = {
        let url = redis.url();
        let channel = switchboard::backplane::naming::nodes_channel(&prefix);
        tokio::spawn(async move {
            loop {
                common::redis::publish(&url, &channel, &beat).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let out = check(base.clone()).await;
    publisher.abort();
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(2), "{report}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with(&forged)),
        "the forged node was checked: {report}"
    );
    assert_eq!(doc["known_nodes"], 1, "only the node that answered: {report}");
    let out = check(base).await;
    let report = common::bin::text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(!report.contains("node-gone"), "{report}");
    a.shutdown().await;
}
