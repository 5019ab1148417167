//! `GET /metrics` against real parts: two nodes on a test-owned redis-server, real WebSocket
//! clients. The exposition parses with a real Prometheus text-format parser (the
//! `prometheus-parse` crate, and `promtool check metrics` when Prometheus' own tool is installed),
//! follows the naming conventions, and its numbers move with real traffic and a real Redis outage.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::redis::RedisServer;
use common::{STEP, connect, expect_message, s, start_node, unique_prefix, wait_connected, within};
use prometheus_parse::{Scrape, Value};
use switchboard::hub::{BackplaneChoice, NodeHandle};
use switchboard::protocol::Protocol;

/// One scrape: the raw text and the parsed samples (name{labels} → value).
struct Metrics {
    text: String,
    values: HashMap<String, f64>,
    scrape: Scrape,
}

impl Metrics {
    fn get(&self, key: &str) -> f64 {
        *self
            .values
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in:\n{}", self.text))
    }
}

async fn scrape(node: &NodeHandle) -> Metrics {
    let url = format!("{}/metrics", node.base_url());
    let response = common::http::get(&url).await;
    assert_eq!(response.status, 200, "GET {url}: {}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = response.text();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let mut values = HashMap::new();
    for sample in &scrape.samples {
        let value = match sample.value {
            Value::Counter(v) | Value::Gauge(v) => v,
            ref other => panic!("{} is neither a counter nor a gauge: {other:?}", sample.metric),
        };
        let mut labels: Vec<String> = sample.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let key = if labels.is_empty() {
            sample.metric.clone()
        } else {
            format!("{}{{{}}}", sample.metric, labels.join(","))
        };
        values.insert(key, value);
    }
    Metrics { text, values, scrape }
}

/// The conventions, checked on one exposition: every sample line was parsed (the parser skips
/// what it cannot read), every family has HELP and TYPE, counters and only counters end in
/// `_total`, everything has the `switchboard_` prefix.
fn check_conventions(m: &Metrics) {
    let sample_lines = m
        .text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(
        m.scrape.samples.len(),
        sample_lines,
        "every sample line parses:\n{}",
        m.text
    );
    let mut types = HashMap::new();
    for line in m.text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} twice"
            );
        }
    }
    for sample in &m.scrape.samples {
        let name = &sample.metric;
        assert!(name.starts_with("switchboard_"), "{name}");
        assert!(m.scrape.docs.contains_key(name), "no HELP for {name}");
        let kind = types.get(name).unwrap_or_else(|| panic!("no TYPE for {name}"));
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}: counters and only counters end in _total"
        );
        match (kind.as_str(), &sample.value) {
            ("counter", Value::Counter(_)) | ("gauge", Value::Gauge(_)) => {}
            (kind, value) => panic!("{name}: TYPE {kind} but parsed as {value:?}"),
        }
    }
}

/// `promtool check metrics` (Prometheus' own linter) on the exposition, when it is installed
/// (Debian: `apt-get install prometheus`). Returns false when it is not there.
fn promtool_check(text: &str) -> bool {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool is not installed: only the prometheus-parse checks ran");
        return false;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed: {said}\n{text}"
    );
    assert!(said.trim().is_empty(), "promtool has remarks: {said}");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_follow_the_conventions_and_move_with_traffic() {
    let mut redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("metrics-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("metrics-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;

    let before = scrape(&a).await;
    check_conventions(&before);
    promtool_check(&before.text);
    assert_eq!(before.get("switchboard_connections{protocol=json}"), 0.0);
    assert_eq!(before.get("switchboard_backplane_up"), 1.0);
    assert_eq!(before.get("switchboard_backplane_state{state=connected}"), 1.0);
    assert_eq!(before.get("switchboard_backplane_state{state=reconnecting}"), 0.0);
    assert!(before.get("switchboard_backplane_connects_total") >= 1.0);
    assert_eq!(
        before.get("switchboard_max_connections"),
        switchboard::config::DEFAULT_MAX_CONNECTIONS as f64
    );
    assert!(before.get("switchboard_start_time_seconds") > 1.7e9);
    assert!(
        before.text.contains(&format!("server=\"{}\"", a.server_name())),
        "{}",
        before.text
    );

    // Real traffic: a JSON client on A and a MessagePack client on B; A broadcasts 3 times.
    let ann = connect(&a, Protocol::Json, Some("ann")).await;
    let mut bob = connect(&b, Protocol::MessagePack, Some("bob")).await;
    within("JoinGroup", ann.invoke("JoinGroup", vec![s("room")]))
        .await
        .unwrap();
    for i in 0..3 {
        within(
            "SendMessage",
            ann.invoke("SendMessage", vec![s("ann"), s(&format!("hello {i}"))]),
        )
        .await
        .unwrap();
        expect_message(&mut bob, "ReceiveMessage", STEP).await;
    }
    let after_a = scrape(&a).await;
    let after_b = scrape(&b).await;
    check_conventions(&after_a);
    assert_eq!(after_a.get("switchboard_connections{protocol=json}"), 1.0);
    assert_eq!(after_a.get("switchboard_connections{protocol=messagepack}"), 0.0);
    assert_eq!(after_b.get("switchboard_connections{protocol=messagepack}"), 1.0);
    assert_eq!(after_a.get("switchboard_users"), 1.0);
    assert_eq!(after_a.get("switchboard_groups"), 1.0);
    let moved = |key: &str, by: f64| {
        let (then, now) = (before.get(key), after_a.get(key));
        assert!(now >= then + by, "{key}: {then} → {now}, expected +{by} or more");
    };
    moved("switchboard_connections_accepted_total", 1.0);
    // JoinGroup + 3 SendMessage (handshake and pings may add more).
    moved("switchboard_client_messages_received_total", 4.0);
    // Completions to ann, and the broadcasts to ann herself.
    moved("switchboard_client_messages_sent_total", 7.0);
    // Those were written by system calls (batched or not; the handshake answer and pings too).
    moved("switchboard_client_write_syscalls_total", 1.0);
    moved("switchboard_backplane_messages_published_total", 3.0);
    assert!(after_b.get("switchboard_backplane_messages_received_total") >= 3.0);
    assert!(after_b.get("switchboard_client_messages_sent_total") >= 3.0);
    assert_eq!(after_a.get("switchboard_forward_failures_total"), 0.0);

    // Redis goes away: the link state and the failed forwards show it.
    redis.kill();
    let deadline = tokio::time::Instant::now() + STEP;
    let down = loop {
        let m = scrape(&a).await;
        if m.get("switchboard_backplane_up") == 0.0 {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backplane_up never went to 0"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    check_conventions(&down);
    assert_eq!(down.get("switchboard_backplane_state{state=connected}"), 0.0);
    let states: f64 = ["memory", "connecting", "connected", "reconnecting", "stopped"]
        .iter()
        .map(|s| down.get(&format!("switchboard_backplane_state{{state={s}}}")))
        .sum();
    assert_eq!(states, 1.0, "exactly one state is 1:\n{}", down.text);
    within(
        "SendMessage while Redis is down",
        ann.invoke("SendMessage", vec![s("ann"), s("into the void")]),
    )
    .await
    .unwrap();
    let failed = scrape(&a).await;
    assert!(
        failed.get("switchboard_forward_failures_total") >= 1.0,
        "{}",
        failed.text
    );
    promtool_check(&failed.text);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_name_with_quotes_is_escaped_in_labels() {
    let mut config = switchboard::hub::NodeConfig::new("node \"q\" \\ x");
    config.channel_prefix = unique_prefix();
    let node = common::start_node_with(config, BackplaneChoice::Alone).await;
    let m = scrape(&node).await;
    check_conventions(&m);
    assert!(
        m.text.contains(r#"node="node \"q\" \\ x""#),
        "escaped label:\n{}",
        m.text
    );
    assert_eq!(m.get("switchboard_backplane_state{state=memory}"), 1.0);
    promtool_check(&m.text);
    node.shutdown().await;
}
