//! Broadcast fan-out: the node's CPU per delivery and throughput, measured with real nodes and real
//! WebSocket clients on loopback.
//!
//! `cargo bench --bench fanout` runs three scenarios:
//! - `cpu`: the load of issue 8 (200 clients on two nodes, 40,000 deliveries/s for 10 s), with the
//!   nodes as `switchboard hub` child processes on a private `redis-server` and the clients in one
//!   `switchboard load` process, so the nodes' own CPU is measured alone. Per run it prints user and
//!   kernel µs per delivery (fields 14 and 15 of /proc/PID/stat of both nodes over the middle of
//!   the sending phase, divided by the frames they queued to clients, `client_out`), then the
//!   median. Knobs: `FANOUT_CPU_RUNS` (3), `FANOUT_CPU_CLIENTS` (200), `FANOUT_CPU_RATE` (40000),
//!   `FANOUT_CPU_DURATION` (10 s), `FANOUT_CPU_PROTOCOL` (json), `FANOUT_NODE_BIN` (another
//!   `switchboard` binary to run as the nodes, for before/after), `FANOUT_NODE_ARGS` (extra
//!   `switchboard hub` flags, e.g. `--no-io-uring`);
//! - `memory`: one node, N clients, one sender broadcasting M `SendMessage` calls;
//! - `redis`: two nodes sharing a private `redis-server` (skipped when it is not on PATH), clients
//!   split across them, the sender on node A.
//!
//! - `latency`: the two Redis nodes again, one sender on node A broadcasting paced
//!   `SendMessage` calls (one every 5 ms, `FANOUT_LATENCY_MESSAGES`, 400) while one client listens on
//!   A (same node) and one on B (cross node), besides the sender itself; prints p50/p99 of
//!   send → receipt per path. Without TCP_NODELAY on the hub's accepted sockets (Nagle's
//!   algorithm against the client's delayed ACK) the sender's own copy took p50 ~4.5 ms and every
//!   path p99 ~20 ms here; with it, p50 ~0.3 ms and p99 ~3 ms on every path (2026-11-26).
//!
//! `FANOUT_LATENCY_ONLY=1` runs only the latency scenario (the same as `FANOUT_SCENARIOS=latency`).
//!
//! A delivery is one `ReceiveMessage` read by one client. Counts are bounded (N×M deliveries) and
//! the run stops by itself. Override with `FANOUT_CLIENTS` (500), `FANOUT_MESSAGES` (1000) and
//! `FANOUT_SENDERS` (1: one client sends every broadcast; more split them, as in a real room).
//! `FANOUT_SCENARIOS` picks scenarios (comma-separated; default `cpu,memory,redis,latency`).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard::client::{ClientEvent, ClientOptions, HubClient, http, str_args};
use switchboard::demo::redis_server::RedisProcess;
use switchboard::hub::{BackplaneChoice, Node, NodeConfig, NodeHandle};
use switchboard::load::LoadReport;
use switchboard::protocol::Protocol;

#[path = "support/node_process.rs"]
mod node_process;
use node_process::{median, percentile, start_node};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(name: &str, nodes: &[NodeHandle], clients: usize, messages: usize, senders_count: usize) {
    let delivered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let node = &nodes[i % nodes.len()];
        let protocol = if i % 2 == 0 {
            Protocol::Json
        } else {
            Protocol::MessagePack
        };
        let mut options = ClientOptions::with_protocol(protocol);
        options.negotiate = false;
        options.inbox_capacity = messages + 16;
        let mut client = HubClient::connect(&node.hub_url(), options)
            .await
            .expect("client connects");
        let delivered = delivered.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            while got < messages {
                match tokio::time::timeout(Duration::from_secs(30), client.recv()).await {
                    Ok(Some(ClientEvent::Invocation { .. })) => {
                        got += 1;
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(_)) | Ok(None) | Err(_) => break,
                }
            }
            got
        }));
    }
    let sender = HubClient::connect(&nodes[0].hub_url(), ClientOptions::default())
        .await
        .unwrap();
    let text = "x".repeat(64);
    let start = Instant::now();
    for _ in 0..messages {
        sender
            .send("SendToOthers", str_args(&["bench", &text]))
            .await
            .unwrap();
    }
    let sent = start.elapsed();
    let mut complete = 0;
    for task in tasks {
        if task.await.unwrap_or(0) == messages {
            complete += 1;
        }
    }
    let elapsed = start.elapsed();
    let total = delivered.load(Ordering::Relaxed);
    println!(
        "{name:>6}: {senders_count} sender(s), {clients} clients × {messages} broadcasts = {total} deliveries in {:.2} s (sender done after {:.2} s) → {:.0} deliveries/s, {:.0} broadcasts/s ({complete}/{clients} clients got every message)",
        elapsed.as_secs_f64(),
        sent.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64(),
    );
}

/// Reads `messages` broadcasts carrying `seq` as their text and returns per-message latency (ms)
/// from the send times in `sent`.
async fn receive_latencies(
    mut client: HubClient,
    messages: usize,
    started: Instant,
    sent: Arc<std::sync::Mutex<Vec<Option<Duration>>>>,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(messages);
    while out.len() < messages {
        match tokio::time::timeout(Duration::from_secs(10), client.recv()).await {
            Ok(Some(ClientEvent::Invocation { arguments, .. })) => {
                let at = started.elapsed();
                let seq = arguments
                    .get(1)
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse::<usize>().ok());
                let sent_at = seq.and_then(|i| sent.lock().ok().and_then(|v| v.get(i).copied().flatten()));
                if let Some(sent_at) = sent_at {
                    out.push(at.saturating_sub(sent_at).as_secs_f64() * 1000.0);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

/// Same-node against cross-node delivery latency (see the module docs).
async fn latency(a: &NodeHandle, b: &NodeHandle, messages: usize) {
    let connect = |url: String| async move {
        let options = ClientOptions {
            inbox_capacity: messages + 16,
            ..ClientOptions::default()
        };
        HubClient::connect(&url, options).await.expect("client connects")
    };
    let sender = connect(a.hub_url()).await;
    let same = connect(a.hub_url()).await;
    let cross = connect(b.hub_url()).await;
    let started = Instant::now();
    let sent = Arc::new(std::sync::Mutex::new(vec![None; messages]));
    let sender_tx = sender.sender();
    let readers =
        [sender, same, cross].map(|c| tokio::spawn(receive_latencies(c, messages, started, sent.clone())));
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in 0..messages {
        tick.tick().await;
        if let Ok(mut v) = sent.lock() {
            v[i] = Some(started.elapsed());
        }
        let _ = sender_tx
            .send("SendMessage", str_args(&["bench", &i.to_string()]))
            .await;
    }
    let mut results = Vec::new();
    for r in readers {
        results.push(r.await.unwrap_or_default());
    }
    for (name, l) in [
        "sender itself (same node)",
        "other client on A (same node)",
        "client on B (cross node)",
    ]
    .iter()
    .zip(&results)
    {
        println!(
            "latency: {name:<30} p50 {:6.2} ms  p99 {:6.2} ms  ({} of {messages})",
            percentile(l, 0.50),
            percentile(l, 0.99),
            l.len()
        );
    }
}

/// A node config without the per-connection invocation rate limit: these scenarios measure the
/// message path at rates one sender may exceed on purpose (a limited node would refuse them).
fn unlimited(name: &str) -> NodeConfig {
    let mut config = NodeConfig::new(name);
    config.limits.invocations_per_second = 0;
    config
}

fn main() {
    let clients = env_usize("FANOUT_CLIENTS", 500);
    let messages = env_usize("FANOUT_MESSAGES", 1000);
    let senders = env_usize("FANOUT_SENDERS", 1).max(1);
    let scenarios = if std::env::var("FANOUT_LATENCY_ONLY").is_ok_and(|v| v == "1") {
        "latency".to_string()
    } else {
        std::env::var("FANOUT_SCENARIOS").unwrap_or_else(|_| "cpu,memory,redis,latency".to_string())
    };
    let wanted = |name: &str| scenarios.split(',').any(|s| s.trim() == name);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        if wanted("cpu") {
            cpu_scenario().await;
        }
        if wanted("memory") {
            let node = Node::start(unlimited("bench"), BackplaneChoice::Alone)
                .await
                .unwrap();
            run("memory", std::slice::from_ref(&node), clients, messages, senders).await;
            node.shutdown().await;
        }
        if !wanted("redis") && !wanted("latency") {
            return;
        }
        let redis = match RedisProcess::start().await {
            Ok(redis) => redis,
            Err(e) => {
                println!(" redis: skipped ({e})");
                return;
            }
        };
        let url = redis.url();
        let a = Node::start(unlimited("a"), BackplaneChoice::RedisUrl(url.clone()))
            .await
            .unwrap();
        let b = Node::start(unlimited("b"), BackplaneChoice::RedisUrl(url))
            .await
            .unwrap();
        for n in [&a, &b] {
            let mut status = n.backplane_status();
            let _ = status.wait_for(|s| s.state.is_up()).await;
        }
        if wanted("redis") {
            run("redis", &[a.clone(), b.clone()], clients, messages, senders).await;
        }
        if wanted("latency") {
            latency(&a, &b, env_usize("FANOUT_LATENCY_MESSAGES", 400)).await;
        }
        a.shutdown().await;
        b.shutdown().await;
    });
}

// ---- `cpu`: the node's own user and kernel time per delivery ----

/// The CPU load of issue 8: two `switchboard hub` processes on a private Redis, one
/// `switchboard load` process as the client side, the node processes' CPU measured alone.
struct CpuLoad {
    clients: usize,
    rate: f64,
    duration: u64,
    protocol: String,
}

/// User and kernel clock ticks of a process (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so field n is fields[n - 3].
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux unless told otherwise).
fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A node's stats document (None while it does not answer).
async fn node_stats(hub: &str) -> Option<serde_json::Value> {
    let base = hub.trim_end_matches("/chat");
    let response = http::request("GET", &format!("{base}/switchboard/stats"), b"")
        .await
        .ok()?;
    response.json().ok()
}

fn connections_of(stats: &serde_json::Value) -> u64 {
    let c = &stats["connections"];
    c["json"].as_u64().unwrap_or(0) + c["messagepack"].as_u64().unwrap_or(0)
}

/// One sample of both nodes: CPU ticks and frames queued to clients.
struct Sample {
    at: Instant,
    user: u64,
    system: u64,
    client_out: u64,
    client_writes: u64,
}

async fn sample(nodes: &[(Child, String)]) -> Sample {
    let mut s = Sample {
        at: Instant::now(),
        user: 0,
        system: 0,
        client_out: 0,
        client_writes: 0,
    };
    for (child, hub) in nodes {
        let (user, system) = cpu_ticks(child.id()).expect("the node's /proc stat");
        s.user += user;
        s.system += system;
        let stats = node_stats(hub).await.expect("the node's stats");
        s.client_out += stats["messages"]["client_out"].as_u64().unwrap_or(0);
        s.client_writes += stats["messages"]["client_writes"].as_u64().unwrap_or(0);
    }
    s
}

struct CpuRun {
    user_us: f64,
    system_us: f64,
    /// Write system calls per delivery (the nodes' `client_writes` over `client_out`).
    writes: f64,
    deliveries_per_s: f64,
    lost: u64,
    /// The load process's p99 send → receipt, cross-node and same-node, in ms (its own clock:
    /// the driver's time is in it too).
    p99_ms: (Option<f64>, Option<f64>),
    /// The load process's CPU over the window, in % of one core.
    driver_core: Option<f64>,
}

async fn cpu_run(bin: &str, redis_url: &str, load: &CpuLoad) -> CpuRun {
    let extra = std::env::var("FANOUT_NODE_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    let nodes = vec![
        start_node(bin, "cpu-a", redis_url, &extra),
        start_node(bin, "cpu-b", redis_url, &extra),
    ];
    for (_, hub) in &nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while node_stats(hub).await.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut args = vec!["load".to_string()];
    for (_, hub) in &nodes {
        args.extend(["--node".to_string(), hub.clone()]);
    }
    args.extend(
        [
            "--clients",
            &load.clients.to_string(),
            "--rate",
            &load.rate.to_string(),
            "--duration",
            &load.duration.to_string(),
            "--protocol",
            &load.protocol,
            "--json",
            "--quiet",
        ]
        .map(String::from),
    );
    let client_side = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the load process starts");

    // The window is the middle of the sending phase: after every client is in (and a second
    // more, so the senders run), ending a second before the senders stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut connected = 0;
        for (_, hub) in &nodes {
            connected += node_stats(hub).await.map_or(0, |s| connections_of(&s));
        }
        if connected >= load.clients as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let driver_before = cpu_ticks(client_side.id());
    let before = sample(&nodes).await;
    tokio::time::sleep(Duration::from_secs(load.duration.saturating_sub(2).max(1))).await;
    let after = sample(&nodes).await;
    let driver_after = cpu_ticks(client_side.id());

    let out = client_side.wait_with_output().expect("the load process ends");
    let report = serde_json::from_slice::<LoadReport>(&out.stdout);
    for (mut child, _) in nodes {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    let deliveries = after.client_out.saturating_sub(before.client_out).max(1) as f64;
    let tick_us = 1e6 / clock_ticks_per_s();
    // The driver's share of one core over the same window: near 100 % it is the bottleneck, and
    // its own queueing is in the latencies it reports.
    let driver_core = match (driver_before, driver_after) {
        (Some((u0, s0)), Some((u1, s1))) => {
            let busy_us = (u1 + s1).saturating_sub(u0 + s0) as f64 * tick_us;
            Some(100.0 * busy_us / (after.at - before.at).as_micros().max(1) as f64)
        }
        _ => None,
    };
    let (lost, p99_ms) = match &report {
        Ok(r) => (r.lost, (r.cross_node.p99_ms, r.same_node.p99_ms)),
        Err(e) => {
            println!("  the load process gave no report ({e}); exit {:?}", out.status);
            (0, (None, None))
        }
    };
    CpuRun {
        user_us: (after.user - before.user) as f64 * tick_us / deliveries,
        system_us: (after.system - before.system) as f64 * tick_us / deliveries,
        writes: after.client_writes.saturating_sub(before.client_writes) as f64 / deliveries,
        deliveries_per_s: deliveries / (after.at - before.at).as_secs_f64(),
        lost,
        p99_ms,
        driver_core,
    }
}

async fn cpu_scenario() {
    let load = CpuLoad {
        clients: env_usize("FANOUT_CPU_CLIENTS", 200),
        rate: env_usize("FANOUT_CPU_RATE", 40_000) as f64,
        duration: env_usize("FANOUT_CPU_DURATION", 10).max(3) as u64,
        protocol: std::env::var("FANOUT_CPU_PROTOCOL").unwrap_or_else(|_| "json".to_string()),
    };
    let runs = env_usize("FANOUT_CPU_RUNS", 3).max(1);
    // Another build's node (say, an older commit) may be measured against this build's clients.
    let bin = std::env::var("FANOUT_NODE_BIN").unwrap_or_else(|_| BIN.to_string());
    let redis = match RedisProcess::start().await {
        Ok(redis) => redis,
        Err(e) => {
            println!("   cpu: skipped ({e})");
            return;
        }
    };
    let (mut users, mut systems) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let r = cpu_run(&bin, &redis.url(), &load).await;
        println!(
            "   cpu run {run}/{runs}: 2 hub processes on Redis, {} {} clients from one load process, {:.0} deliveries/s measured → per delivery {:.3} µs user, {:.3} µs kernel, {:.3} write system calls ({} lost); p99 cross-node {} ms, same-node {} ms (the load process used {} of a core)",
            load.clients,
            load.protocol,
            r.deliveries_per_s,
            r.user_us,
            r.system_us,
            r.writes,
            r.lost,
            r.p99_ms.0.map_or("-".to_string(), |ms| format!("{ms:.1}")),
            r.p99_ms.1.map_or("-".to_string(), |ms| format!("{ms:.1}")),
            r.driver_core.map_or("-".to_string(), |pct| format!("{pct:.0} %")),
        );
        users.push(r.user_us);
        systems.push(r.system_us);
    }
    println!(
        "   cpu: median of {runs} run(s): {:.3} µs user, {:.3} µs kernel per delivery (the nodes' own CPU: /proc/PID/stat over the middle of the sending phase, over their client_out)",
        median(users),
        median(systems)
    );
}
