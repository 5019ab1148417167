//! `switchboard agent`, the real binary against two real nodes on a real redis-server: the canary
//! reaches every pair; a node killed turns into a critical finding, `switchboard_node_up 0` and
//! lost canaries, and clears when it is back on the same port; Redis stopped turns into
//! `switchboard_redis_up 0` and `redis-unreachable`, and back; the scraped text passes
//! `promtool check metrics`. Beyond loopback the monitor token rule applies, a port in use is
//! exit 3, and SIGTERM is a clean stop (exit 0). Every wait polls with a deadline.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{start_node_with, unique_prefix, wait_connected, within_for};
use switchboard::client::http;
use switchboard::hub::{BackplaneChoice, NodeConfig};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// How long any one condition may take to show in the agent's output (a few canary rounds, a
/// reconnect backoff, a health refresh).
const SETTLE: Duration = Duration::from_secs(30);

/// A running agent process; killed when dropped (the tests that check the exit stop it first).
struct Agent {
    /// `None` once stopped.
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    base: String,
    stderr: std::path::PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Agent {
    /// Starts `switchboard agent ARGS` and reads the address from its first stdout line.
    async fn start(args: Vec<String>) -> Agent {
        let stderr = std::env::temp_dir().join(format!(
            "switchboard-agent-test-{}-{}.log",
            std::process::id(),
            unique_prefix()
        ));
        let mut child = Command::new(BIN)
            .arg("agent")
            .args(&args)
            .env_remove("REDIS_URL")
            .env_remove("SWITCHBOARD_MONITOR_TOKEN")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = within_for(
            "the agent's listening line",
            SETTLE,
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).map(|_| line)
            }),
        )
        .await
        .unwrap()
        .unwrap();
        let addr = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| {
                panic!(
                    "no address in {line:?}; stderr: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
            .to_string();
        let port = addr.rsplit(':').next().unwrap();
        Agent {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> http::HttpResponse {
        let url = format!("{}{path}", self.base);
        let options = http::RequestOptions {
            headers,
            timeout: Some(common::STEP),
            tls: None,
        };
        http::request_with("GET", &url, b"", options)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    async fn metrics(&self) -> String {
        let r = self.get("/metrics", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }

    /// Polls `/metrics` until `ok` holds, within [`SETTLE`]; returns the text that satisfied it.
    async fn until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SETTLE;
        loop {
            let text = self.metrics().await;
            if ok(&text) {
                return text;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {SETTLE:?}: {what}\n--- metrics:\n{text}\n--- log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, then the exit code within a deadline.
    async fn stop(mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        within_for(
            "the agent exiting after SIGTERM",
            SETTLE,
            tokio::task::spawn_blocking(move || child.wait()),
        )
        .await
        .unwrap()
        .unwrap()
        .code()
    }
}

/// The value of the series written exactly as `series` (name and labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

fn pair(name: &str, from: &str, to: &str) -> String {
    format!("{name}{{from=\"{from}\",to=\"{to}\"}}")
}

/// Whether a critical finding names `subject` under `rule`.
fn finding(text: &str, rule: &str, subject: &str) -> bool {
    value(
        text,
        &format!("switchboard_finding{{rule=\"{rule}\",severity=\"critical\",subject=\"{subject}\"}}"),
    ) == Some(1.0)
}

/// `promtool check metrics` on `text`, when promtool is installed (scripts/test.sh installs it).
fn promtool(text: &str) {
    use std::io::Write;
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool is not installed: the exposition was not linted");
        return;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n--- text:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn node_config(name: &str, prefix: &str, listen: std::net::SocketAddr) -> NodeConfig {
    let mut config = NodeConfig::new(name);
    config.channel_prefix = prefix.to_string();
    config.listen = listen;
    config
}

#[tokio::test]
async fn canary_node_death_and_redis_outage_turn_red_and_green_again() {
    let mut redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = start_node_with(
        node_config("agent-a", &prefix, any),
        BackplaneChoice::RedisUrl(redis.url()),
    )
    .await;
    let b = start_node_with(
        node_config("agent-b", &prefix, any),
        BackplaneChoice::RedisUrl(redis.url()),
    )
    .await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let b_addr = b.local_addr();
    let agent = Agent::start(vec![
        "--redis".into(),
        redis.url(),
        "--channel-prefix".into(),
        prefix.clone(),
        "--node".into(),
        a.hub_url(),
        "--node".into(),
        b.hub_url(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--canary-interval".into(),
        "1s".into(),
        "--canary-timeout".into(),
        "2s".into(),
    ])
    .await;

    // 1. Every pair's canary arrives; /findings is JSON; /healthz is ok.
    let pairs = [
        ("agent-a", "agent-a"),
        ("agent-a", "agent-b"),
        ("agent-b", "agent-a"),
        ("agent-b", "agent-b"),
    ];
    let text = agent
        .until("a delivered canary for every pair", |t| {
            pairs.iter().all(|(f, to)| {
                value(t, &pair("switchboard_canary_delivery_seconds_count", f, to)).is_some_and(|n| n > 0.0)
            })
        })
        .await;
    for (f, to) in pairs {
        assert!(
            value(
                &text,
                &pair("switchboard_canary_last_success_timestamp_seconds", f, to)
            )
            .is_some()
        );
    }
    let text = agent
        .until("both nodes up, Redis up, the census and the tap", |t| {
            value(t, "switchboard_node_up{node=\"agent-a\"}") == Some(1.0)
                && value(t, "switchboard_node_up{node=\"agent-b\"}") == Some(1.0)
                && value(t, "switchboard_node_backplane_up{node=\"agent-b\"}") == Some(1.0)
                && value(t, "switchboard_redis_up") == Some(1.0)
                && value(t, "switchboard_tap_up") == Some(1.0)
                && t.contains("switchboard_census_servers{hub=\"Switchboard.ChatHub\"} 2")
                && t.contains("switchboard_tap_messages_total{hub=\"Switchboard.ChatHub\",kind=\"group\"}")
        })
        .await;
    assert!(text.contains("switchboard_agent_info{version=\""), "{text}");
    promtool(&text);
    let findings = agent.get("/findings", &[]).await;
    assert_eq!(findings.status, 200, "{}", findings.text());
    let doc: serde_json::Value = findings.json().expect("findings JSON");
    assert!(doc["findings"].is_array(), "{doc}");
    assert!(doc["verdict"].is_string() || doc["verdict"].is_null(), "{doc}");
    let health = agent.get("/healthz", &[]).await;
    assert_eq!((health.status, health.text().trim()), (200, "ok"));

    // 2. Node b dies: a critical finding names it, node_up 0, canaries to it are lost.
    let lost_before = value(
        &agent.metrics().await,
        &pair("switchboard_canary_lost_total", "agent-a", "agent-b"),
    )
    .unwrap_or(0.0);
    b.shutdown().await;
    drop(b);
    let text = agent
        .until(
            "node b down, named by a critical finding, canaries to it lost",
            |t| {
                value(t, "switchboard_node_up{node=\"agent-b\"}") == Some(0.0)
                    && finding(t, "node-unreachable", "agent-b")
                    && value(t, &pair("switchboard_canary_lost_total", "agent-a", "agent-b"))
                        .is_some_and(|n| n > lost_before)
            },
        )
        .await;
    assert!(value(&text, "switchboard_findings{severity=\"critical\"}").is_some_and(|n| n >= 1.0));
    promtool(&text);
    let doc: serde_json::Value = agent.get("/findings", &[]).await.json().unwrap();
    assert_eq!(doc["verdict"], "broken", "{doc}");

    // ... and comes back on the same port: the finding clears, node_up is 1 again, and its
    // canaries arrive again.
    let b = start_node_with(
        node_config("agent-b", &prefix, b_addr),
        BackplaneChoice::RedisUrl(redis.url()),
    )
    .await;
    wait_connected(&b).await;
    let count_before = value(
        &agent.metrics().await,
        &pair("switchboard_canary_delivery_seconds_count", "agent-a", "agent-b"),
    )
    .unwrap_or(0.0);
    agent
        .until(
            "node b back: up, no critical finding about it, canaries delivered",
            |t| {
                value(t, "switchboard_node_up{node=\"agent-b\"}") == Some(1.0)
                    && !finding(t, "node-unreachable", "agent-b")
                    && !finding(t, "canary", "agent-b")
                    && value(
                        t,
                        &pair("switchboard_canary_delivery_seconds_count", "agent-a", "agent-b"),
                    )
                    .is_some_and(|n| n > count_before)
            },
        )
        .await;

    // 3. Redis stops: redis_up and tap_up 0, redis-unreachable; back on the same port: 1 again.
    redis.kill();
    agent
        .until("Redis down and named by a finding", |t| {
            value(t, "switchboard_redis_up") == Some(0.0)
                && value(t, "switchboard_tap_up") == Some(0.0)
                && finding(t, "redis-unreachable", "")
        })
        .await;
    redis.restart().await;
    let text = agent
        .until("Redis back and the finding cleared", |t| {
            value(t, "switchboard_redis_up") == Some(1.0)
                && value(t, "switchboard_tap_up") == Some(1.0)
                && !finding(t, "redis-unreachable", "")
                && value(t, "switchboard_tap_gaps_total").is_some_and(|n| n >= 1.0)
        })
        .await;
    promtool(&text);

    // One log line per state change, not per attempt.
    let log = agent.log();
    assert!(log.contains("agent: node down"), "{log}");
    assert!(log.contains("agent: node up"), "{log}");
    assert!(log.contains("agent: the tap lost Redis"), "{log}");
    assert!(log.contains("agent: finding appears"), "{log}");
    assert!(log.contains("agent: finding clears"), "{log}");
    assert!(
        !log.contains("tap link problem"),
        "the monitor's per-attempt lines are quiet: {log}"
    );

    // SIGTERM: a clean stop.
    assert_eq!(agent.stop().await, Some(0));
    drop((a, b));
}

#[tokio::test]
async fn beyond_loopback_the_token_rule_applies_and_bad_usage_is_exit_2() {
    let redis = RedisServer::start().await;
    let run = |args: Vec<String>| async move {
        let out = within_for(
            "switchboard agent refusing to start",
            SETTLE,
            tokio::task::spawn_blocking(move || {
                Command::new(BIN)
                    .arg("agent")
                    .args(&args)
                    .env_remove("REDIS_URL")
                    .env_remove("SWITCHBOARD_MONITOR_TOKEN")
                    .output()
            }),
        )
        .await
        .unwrap()
        .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Beyond loopback without a token: refused, in words.
    let (code, stderr) = run(vec![
        "--redis".into(),
        redis.url(),
        "--listen".into(),
        "0.0.0.0:0".into(),
    ])
    .await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("--monitor-token"), "{stderr}");

    // A password never shows in a refusal.
    let (code, stderr) = run(vec![
        "--redis".into(),
        format!("redis://:hunter2@127.0.0.1:{}", redis.port()),
        "--listen".into(),
        "not-an-address".into(),
    ])
    .await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("--listen") && !stderr.contains("hunter2"),
        "{stderr}"
    );

    // With the token: the bearer is required, from loopback too.
    let agent = Agent::start(vec![
        "--redis".into(),
        redis.url(),
        "--listen".into(),
        "0.0.0.0:0".into(),
        "--monitor-token".into(),
        "agent-t0ken".into(),
    ])
    .await;
    for path in ["/metrics", "/findings", "/healthz"] {
        let r = agent.get(path, &[]).await;
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert!(!r.text().contains("agent-t0ken"));
        let r = agent.get(path, &[("Authorization", "Bearer wrong")]).await;
        assert_eq!(r.status, 401, "{path}");
    }
    let r = agent
        .get("/metrics", &[("Authorization", "Bearer agent-t0ken")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    promtool(&r.text());

    // The same address again: in use, exit 3.
    let port = agent.base.rsplit(':').next().unwrap().to_string();
    let (code, stderr) = run(vec![
        "--redis".into(),
        redis.url(),
        "--listen".into(),
        format!("0.0.0.0:{port}"),
        "--monitor-token".into(),
        "agent-t0ken".into(),
    ])
    .await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert_eq!(agent.stop().await, Some(0));
}
