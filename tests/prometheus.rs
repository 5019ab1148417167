//! The monitoring kit in `deploy/`, checked against real parts:
//! - `promtool check rules` and `promtool test rules` on `deploy/prometheus/alerts.yml` (the unit
//!   tests in `alerts.test.yml` show each alert firing on its fault and quiet otherwise);
//! - every query of the Grafana dashboard and every alert names only metrics the agent exports
//!   (read from a live agent's `/metrics`);
//! - a real Prometheus (Debian's `prometheus` package) scrapes a real `switchboard agent` watching
//!   two real `switchboard hub` processes on a real redis-server, with the shipped alert rules:
//!   SIGKILL one node and `SwitchboardNodeDown` fires for that node within 60 s; start it again on
//!   the same port and the alert resolves.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{unique_prefix, within_for};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn need(tool: &str) {
    assert!(
        installed(tool),
        "{tool} not found on PATH: install Debian's prometheus package (apt-get install -y prometheus) or run ./scripts/test.sh"
    );
}

/// A loopback port nothing listens on now (bound, then closed).
/// A child process killed (and reaped) when dropped, with its output in a file for the failure
/// message.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        Proc { child, log }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn hub(dir: &Path, name: &str, port: u16, redis: &str, prefix: &str) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["hub", "--listen", &format!("127.0.0.1:{port}"), "--name", name])
        .args(["--redis", redis, "--channel-prefix", prefix])
        .env_remove("REDIS_URL")
        .env_remove("SWITCHBOARD_MONITOR_TOKEN");
    Proc::spawn(cmd, dir.join(format!("{name}-{}.log", now_ms())))
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

async fn get(url: &str) -> Option<(u16, String)> {
    let r = switchboard::client::http::request_with_timeout("GET", url, b"", Duration::from_secs(5))
        .await
        .ok()?;
    Some((r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

/// Polls `probe` every 500 ms until it returns `Some`, for at most `limit`; panics with `what`
/// and `context()` (logs) when the limit passes.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut probe: F, context: impl Fn() -> String) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if started.elapsed() > limit {
            panic!("not within {limit:?}: {what}\n{}", context());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Metric names in a PromQL expression or Grafana query: every `switchboard_*` identifier, with a
/// histogram's `_bucket`/`_sum`/`_count` suffix taken off.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("switchboard_") {
        let start = i + at;
        let preceded = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if !preceded {
            let name = &expr[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_string());
        }
        i = end;
    }
    names
}

/// The metric families a `/metrics` text declares (`# TYPE name kind`) or has samples of.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let name = if let Some(rest) = line.strip_prefix("# TYPE ") {
            rest.split_whitespace().next()
        } else if line.starts_with('#') {
            None
        } else {
            line.split(['{', ' ']).next()
        };
        if let Some(name) = name.filter(|n| n.starts_with("switchboard_")) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_string());
        }
    }
    names
}

fn grafana_queries() -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/switchboard.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(expr)) = map.get("expr") {
                    out.push(expr.clone());
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&doc, &mut out);
    out
}

fn alert_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    // `expr:` values, single-line or folded (`>-` followed by indented lines).
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let mut expr = rest.trim().trim_start_matches(">-").to_string();
        while let Some(next) = lines.peek() {
            let next_indent = next.len() - next.trim_start().len();
            if next.trim().is_empty() || next_indent <= indent {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        out.push(expr);
    }
    out
}

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    need("promtool");
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy("prometheus/alerts.yml"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "promtool check rules:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");

    let test = Command::new("promtool")
        .args(["test", "rules"])
        .arg(deploy("prometheus/alerts.test.yml"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(test.status.success(), "promtool test rules:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn the_query_extractors_see_what_they_should() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(switchboard_canary_delivery_seconds_bucket[5m]))) / on() x_switchboard_no"
        ),
        BTreeSet::from(["switchboard_canary_delivery_seconds".to_string()])
    );
    let text = "# TYPE switchboard_findings gauge\nswitchboard_findings{severity=\"info\"} 0\nswitchboard_canary_delivery_seconds_count{from=\"a\",to=\"b\"} 3\n";
    assert_eq!(
        exported(text),
        BTreeSet::from([
            "switchboard_findings".to_string(),
            "switchboard_canary_delivery_seconds".to_string()
        ])
    );
    let exprs = alert_exprs();
    assert!(exprs.len() >= 10, "{exprs:?}");
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("histogram_quantile(0.99, sum by")),
        "{exprs:?}"
    );
    assert!(grafana_queries().len() >= 10);
}

#[tokio::test]
async fn a_real_prometheus_fires_and_resolves_the_node_alert() {
    need("prometheus");
    let dir = tempdir();
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let (port_a, port_b) = (common::free_port(), common::free_port());
    let _a = hub(&dir, "prom-a", port_a, &redis.url(), &prefix);
    let mut b = hub(&dir, "prom-b", port_b, &redis.url(), &prefix);

    let agent_port = common::free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["agent", "--listen", &format!("127.0.0.1:{agent_port}")])
        .args(["--redis", &redis.url(), "--channel-prefix", &prefix])
        .args(["--node", &format!("http://127.0.0.1:{port_a}/chat")])
        .args(["--node", &format!("http://127.0.0.1:{port_b}/chat")])
        .args(["--canary-interval", "1s"])
        .env_remove("REDIS_URL")
        .env_remove("SWITCHBOARD_MONITOR_TOKEN")
        .env("XDG_STATE_HOME", &dir);
    let agent = Proc::spawn(cmd, dir.join("agent.log"));
    let metrics_url = format!("http://127.0.0.1:{agent_port}/metrics");

    // The agent is up and its canary has crossed between the nodes both ways.
    let metrics = until(
        "the agent's canary crossing a→b and b→a",
        Duration::from_secs(60),
        || async {
            let (status, text) = get(&metrics_url).await?;
            let crossed = |from: &str, to: &str| {
                text.lines().any(|l| {
                    l.starts_with("switchboard_canary_delivery_seconds_count{")
                        && l.contains(&format!("from=\"{from}\""))
                        && l.contains(&format!("to=\"{to}\""))
                        && !l.ends_with(" 0")
                })
            };
            (status == 200 && crossed("prom-a", "prom-b") && crossed("prom-b", "prom-a")).then_some(text)
        },
        || agent.log(),
    )
    .await;

    // Every name the alerts and the Grafana dashboard query is one the agent exports.
    let have = exported(&metrics);
    for expr in alert_exprs().iter().chain(grafana_queries().iter()) {
        for name in metric_names(expr) {
            assert!(
                have.contains(&name),
                "'{name}' (in `{expr}`) is not exported by the agent; it exports {have:?}"
            );
        }
    }

    // A real Prometheus with the shipped rules, scraping every second.
    let prom_port = common::free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: switchboard-agent\n    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n",
            deploy("prometheus/alerts.yml").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let prom = Proc::spawn(cmd, dir.join("prometheus.log"));
    let alerts_url = format!("http://127.0.0.1:{prom_port}/api/v1/alerts");
    let query_url = format!("http://127.0.0.1:{prom_port}/api/v1/query?query=switchboard_node_up");
    let logs = || format!("agent:\n{}\nprometheus:\n{}", agent.log(), prom.log());

    // Positive marker first: Prometheus has scraped both nodes as up.
    until(
        "Prometheus scraping switchboard_node_up for both nodes",
        Duration::from_secs(60),
        || async {
            let (_, body) = get(&query_url).await?;
            let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
            let ups = doc["data"]["result"]
                .as_array()?
                .iter()
                .filter(|r| r["value"][1] == "1")
                .count();
            (ups == 2).then_some(())
        },
        logs,
    )
    .await;

    let firing_for = |body: &str, node: &str| -> bool {
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(body) else {
            return false;
        };
        doc["data"]["alerts"].as_array().is_some_and(|alerts| {
            alerts.iter().any(|a| {
                a["labels"]["alertname"] == "SwitchboardNodeDown"
                    && a["labels"]["node"].as_str().is_some_and(|n| n.contains(node))
                    && a["state"] == "firing"
            })
        })
    };
    let (_, body) = within_for("GET alerts", Duration::from_secs(10), get(&alerts_url))
        .await
        .unwrap();
    assert!(
        !firing_for(&body, "prom-"),
        "a node alert fires before any fault:\n{body}"
    );

    // Kill node b: the alert fires in Prometheus within 60 s, for b and not for a.
    b.kill();
    let killed = Instant::now();
    let body = until(
        "SwitchboardNodeDown firing for prom-b",
        Duration::from_secs(60),
        || async {
            let (_, body) = get(&alerts_url).await?;
            firing_for(&body, "prom-b").then_some(body)
        },
        logs,
    )
    .await;
    assert!(!firing_for(&body, "prom-a"), "{body}");
    eprintln!("SwitchboardNodeDown fired {:?} after the kill", killed.elapsed());

    // Start b again on the same port: the alert resolves.
    let _b = hub(&dir, "prom-b", port_b, &redis.url(), &prefix);
    let back = Instant::now();
    until(
        "SwitchboardNodeDown resolved once prom-b is back",
        Duration::from_secs(60),
        || async {
            let (status, body) = get(&alerts_url).await?;
            (status == 200 && !firing_for(&body, "prom-b") && !body.contains("\"SwitchboardNodeDown\""))
                .then_some(())
        },
        logs,
    )
    .await;
    eprintln!(
        "SwitchboardNodeDown resolved {:?} after the restart",
        back.elapsed()
    );
}

/// A fresh directory under the target's tmp dir (kept on failure for the logs).
fn tempdir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("prometheus-{}", now_ms()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
