//! Memory per idle connection and connect rate at production scale, with real processes only:
//! a private `redis-server`, one `switchboard hub` node on it, and `switchboard load` processes
//! holding the clients (one process may open at most 20,000 files here, so the clients live in
//! several processes, never in the node's).
//!
//! `cargo bench --bench conns` prints, per run: the node's VmRSS (from /proc/PID/status) before any
//! client and with every client connected, RSS per connection, and the connect rate (all clients
//! over the time from the first load process starting to the node counting them all). Then the
//! median over the runs.
//!
//! Bounded: each load process holds its clients for `CONNS_HOLD_S` after connecting and exits; the
//! bench gives up waiting after `CONNS_TIMEOUT_S`. Knobs: `CONNS_TOTAL` (19000), `CONNS_PROCESSES`
//! (4), `CONNS_RUNS` (1), `CONNS_PROTOCOL` (json), `CONNS_HOLD_S` (20), `CONNS_TIMEOUT_S` (120),
//! and `CONNS_NODE_BIN` (another `switchboard` binary to run as the node, for before/after).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchboard::client::http;
use switchboard::demo::redis_server::RedisProcess;
use switchboard::load::LoadReport;

#[path = "support/node_process.rs"]
mod node_process;
use node_process::{env_or, median, start_node};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the node's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// The node's count of live connections of both protocols.
async fn live_connections(base: &str) -> Option<u64> {
    let response = http::request("GET", &format!("{base}/switchboard/stats"), b"")
        .await
        .ok()?;
    let stats: serde_json::Value = response.json().ok()?;
    let c = &stats["connections"];
    Some(c["json"].as_u64()? + c["messagepack"].as_u64()?)
}

struct Run {
    rss_before_kib: u64,
    rss_after_kib: u64,
    per_connection_kib: f64,
    connects_per_s: f64,
    connected: u64,
}

async fn one_run(
    redis_url: &str,
    total: usize,
    processes: usize,
    protocol: &str,
    hold: u64,
    timeout: Duration,
) -> Run {
    // Another build's node (say, an older commit) may be measured against this build's clients.
    let bin = std::env::var("CONNS_NODE_BIN").unwrap_or_else(|_| BIN.to_string());
    let max_connections = (total + 500).to_string();
    let (mut node, hub) = start_node(
        &bin,
        "conns-bench",
        redis_url,
        &["--max-connections", &max_connections],
    );
    let base = hub.trim_end_matches("/chat").to_string();
    // Let the node finish starting (backplane subscribe) before the baseline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while live_connections(&base).await.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kib = rss_kib(node.id());

    let started = Instant::now();
    let share = total.div_ceil(processes);
    let mut loads = Vec::new();
    for p in 0..processes {
        let clients = share.min(total - (p * share).min(total));
        if clients == 0 {
            break;
        }
        loads.push(
            Command::new(BIN)
                .args(["load", "--node", &hub, "--clients", &clients.to_string()])
                .args([
                    "--rate",
                    "0",
                    "--duration",
                    &hold.to_string(),
                    "--skip-negotiation",
                ])
                .args(["--protocol", protocol, "--json", "--quiet"])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("a load process starts"),
        );
    }
    let mut connected = 0;
    let mut all_in = None;
    while started.elapsed() < timeout {
        connected = live_connections(&base).await.unwrap_or(connected);
        if connected >= total as u64 {
            all_in = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the last handshakes settle (their tasks, first reads) before reading RSS.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after_kib = rss_kib(node.id());
    let connect_time = all_in.unwrap_or_else(|| started.elapsed());

    let mut reports = Vec::new();
    for load in loads {
        let out = load.wait_with_output().expect("the load process ends");
        match serde_json::from_slice::<LoadReport>(&out.stdout) {
            Ok(report) => reports.push(report),
            Err(e) => println!("  a load process gave no report ({e}); exit {:?}", out.status),
        }
    }
    for r in &reports {
        if r.connect_failures > 0 || r.disconnected_early > 0 {
            println!(
                "  load process: {} connected, {} failed ({:?}), {} disconnected early",
                r.connected, r.connect_failures, r.first_connect_error, r.disconnected_early
            );
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status();
    let _ = node.wait();
    if all_in.is_none() {
        println!("  only {connected}/{total} connections reached the node within {timeout:?}");
    }
    Run {
        rss_before_kib,
        rss_after_kib,
        per_connection_kib: (rss_after_kib.saturating_sub(rss_before_kib)) as f64 / connected.max(1) as f64,
        connects_per_s: connected as f64 / connect_time.as_secs_f64(),
        connected,
    }
}

fn main() {
    let total: usize = env_or("CONNS_TOTAL", 19_000);
    let processes: usize = env_or("CONNS_PROCESSES", 4).max(1);
    let runs: usize = env_or("CONNS_RUNS", 1).max(1);
    let protocol: String = env_or("CONNS_PROTOCOL", "json".to_string());
    let hold: u64 = env_or("CONNS_HOLD_S", 20);
    let timeout = Duration::from_secs(env_or("CONNS_TIMEOUT_S", 120));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let redis = match RedisProcess::start().await {
            Ok(redis) => redis,
            Err(e) => {
                println!("conns: skipped ({e})");
                return;
            }
        };
        let mut per_conn = Vec::new();
        let mut rates = Vec::new();
        for run in 1..=runs {
            let r = one_run(&redis.url(), total, processes, &protocol, hold, timeout).await;
            println!(
                "conns run {run}/{runs}: {} {protocol} connections from {processes} load processes; node VmRSS {:.1} MiB -> {:.1} MiB = {:.2} KiB per connection; connect rate {:.0}/s",
                r.connected,
                r.rss_before_kib as f64 / 1024.0,
                r.rss_after_kib as f64 / 1024.0,
                r.per_connection_kib,
                r.connects_per_s,
            );
            per_conn.push(r.per_connection_kib);
            rates.push(r.connects_per_s);
        }
        println!(
            "conns: median of {runs} run(s): {:.2} KiB RSS per idle connection, {:.0} connects/s",
            median(per_conn),
            median(rates)
        );
    });
}
