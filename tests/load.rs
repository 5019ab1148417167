//! `switchboard load` as an operator runs it: the real binary against two real hub nodes sharing a
//! real redis-server, reporting a clean run as JSON; a run with one of the two nodes dead exits 2
//! and shows what it could not measure as `–` (text) and `null` (JSON); readable errors (exit 3)
//! for bad nodes.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::redis::RedisServer;
use common::{start_node, unique_prefix, within_for};
use switchboard::hub::{BackplaneChoice, NodeHandle};
use switchboard::load::LoadReport;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A load run is bounded by its own duration, drain and connect timeouts; this is the test's cap.
const RUN_LIMIT: Duration = Duration::from_secs(60);

async fn run_load(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let run = tokio::task::spawn_blocking(move || Command::new(BIN).arg("load").args(&args).output());
    within_for("switchboard load to finish", RUN_LIMIT, run)
        .await
        .expect("the blocking task ran")
        .expect("the binary starts")
}

async fn two_nodes(redis: &RedisServer) -> (NodeHandle, NodeHandle) {
    let prefix = unique_prefix();
    let a = start_node("a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    for node in [&a, &b] {
        let mut status = node.backplane_status();
        within_for(
            "the backplane to come up",
            Duration::from_secs(10),
            status.wait_for(|s| s.state.is_up()),
        )
        .await
        .expect("the status channel stays open");
    }
    (a, b)
}

fn report_of(out: &Output) -> LoadReport {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "load failed: {stderr}\n{stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}"))
}

fn assert_clean(report: &LoadReport, clients: usize) {
    assert_eq!(report.connected, clients, "{report:?}");
    assert_eq!(report.connect_failures, 0, "{report:?}");
    assert!(report.sent > 0, "nothing was sent: {report:?}");
    assert_eq!(
        report.expected_deliveries,
        report.sent * clients as u64,
        "{report:?}"
    );
    assert_eq!(report.delivered, report.expected_deliveries, "{report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.duplicates, 0, "{report:?}");
    assert_eq!(report.order_violations, 0, "{report:?}");
    assert_eq!(report.disconnected_early, 0, "{report:?}");
    // Half of every broadcast's receivers are on the other node.
    assert!(report.cross_node.count > 0, "no cross-node latency: {report:?}");
    assert!(report.same_node.count > 0, "no same-node latency: {report:?}");
    assert_eq!(report.cross_node.count + report.same_node.count, report.delivered);
    assert!(report.cross_node.max_ms >= report.cross_node.p50_ms, "{report:?}");
    assert!(report.connects_per_s > 0.0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_over_two_redis_nodes_reports_a_clean_json_run() {
    let redis = RedisServer::start().await;
    let (a, b) = two_nodes(&redis).await;
    let out = run_load(&[
        "--node",
        &a.hub_url(),
        "--node",
        &b.hub_url(),
        "--clients",
        "20",
        "--senders",
        "4",
        "--rate",
        "2000",
        "--duration",
        "1.5",
        "--json",
    ])
    .await;
    let report = report_of(&out);
    assert_clean(&report, 20);
    assert_eq!(report.protocol, "json");
    assert!(report.negotiate);
    assert_eq!(report.senders, 4);
    assert_eq!(report.nodes, vec![a.hub_url(), b.hub_url()]);
    // The progress line goes to stderr, never into the JSON on stdout.
    assert!(String::from_utf8_lossy(&out.stderr).contains("connected 20/20"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_messagepack_and_without_negotiate() {
    let redis = RedisServer::start().await;
    let (a, b) = two_nodes(&redis).await;
    let out = run_load(&[
        "--node",
        &a.hub_url(),
        "--node",
        &b.hub_url(),
        "--clients",
        "10",
        "--senders",
        "2",
        "--rate",
        "500",
        "--duration",
        "1",
        "--protocol",
        "messagepack",
        "--skip-negotiation",
        "--message-size",
        "200",
        "--json",
        "--quiet",
    ])
    .await;
    let report = report_of(&out);
    assert_clean(&report, 10);
    assert_eq!(report.protocol, "messagepack");
    assert!(!report.negotiate);
    assert!(
        out.stderr.is_empty(),
        "--quiet: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_bad_node_is_a_clear_error() {
    let out = run_load(&["--node", "not a url", "--duration", "1"]).await;
    assert_eq!(out.status.code(), Some(3), "bad input");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--node not a url: invalid URL"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // https:// is a node URL (tests/https.rs runs load over TLS); other schemes are not.
    let out = run_load(&["--node", "ftp://example.invalid/chat", "--duration", "1"]).await;
    assert_eq!(out.status.code(), Some(3), "bad input");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("expected an http://, https://, ws:// or wss:// URL"),
        "{stderr}"
    );

    // Nothing listens there: every client fails, and the run says why.
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/chat");
    let out = run_load(&["--node", &url, "--clients", "3", "--duration", "1", "--quiet"]).await;
    assert_eq!(out.status.code(), Some(2), "nothing measured");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no client could connect (3 tried)"), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_nodes_dead_exits_1_with_dashes_and_nulls() {
    let redis = RedisServer::start().await;
    let (a, b) = two_nodes(&redis).await;
    let dead = b.hub_url();
    b.shutdown().await;
    let args = [
        "--node",
        &a.hub_url(),
        "--node",
        &dead,
        "--clients",
        "6",
        "--senders",
        "2",
        "--rate",
        "300",
        "--duration",
        "1",
        "--drain",
        "1",
        "--quiet",
    ];
    let out = run_load(&args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    let cross = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("cross-node"))
        .unwrap_or_else(|| panic!("no cross-node line: {stdout}"));
    assert!(cross.contains('\u{2013}') && !cross.contains("0.000"), "{cross}");
    assert!(
        stdout.contains("NOT MEASURED: 3 of 6 client(s) could not connect"),
        "{stdout}"
    );
    assert!(
        stdout.contains("NOT MEASURED: no cross-node delivery"),
        "{stdout}"
    );
    assert!(
        stderr.contains("load could not measure what it was asked to"),
        "{stderr}"
    );

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = run_load(&json_args).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in ["p50_ms", "p99_ms", "p999_ms", "max_ms"] {
        assert!(doc["cross_node"][field].is_null(), "{field}: {doc}");
    }
    assert_eq!(doc["cross_node"]["count"], 0);
    assert!(
        doc["same_node"]["p50_ms"].is_f64(),
        "the live node measured: {doc}"
    );
    assert_eq!(doc["shortfalls"].as_array().unwrap().len(), 2, "{doc}");
    a.shutdown().await;
}

#[test]
fn load_measures_from_the_outside_and_never_names_hub_internals() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/load");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for word in ["crate::hub", "crate::backplane", "crate::monitor", "redis::"] {
                assert!(
                    !line.contains(word),
                    "{}:{} names {word}: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}
