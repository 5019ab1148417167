//! What the dashboard's census costs a busy Redis: a private `redis-server` where raw clients hold
//! 300,000 subscribed channels shaped like a large SignalR backplane (connection, user and group
//! channels of three servers, with their ack and internal channels), then the real monitor runtime
//! with a Redis tap (tap + census) connected for `CENSUS_SECS`, while another client PINGs Redis
//! every 10 ms.
//!
//! Prints the share of Redis's time spent on the dashboard's commands (the `INFO commandstats`
//! usec delta of every command but the PINGs and the churn's (UN)SUBSCRIBEs, over the wall
//! time), per command; Redis's own CPU
//! share from /proc; the PING latency p50/p99/max; and the census rounds the runtime reported.
//!
//! `cargo bench --bench census_cost`. Bounded: subscribing takes ~10-20 s, the measured window
//! `CENSUS_SECS` (40, at most 120); loopback only.
//!
//! Environment:
//! - `CENSUS_CHANNELS` (300000, at most 600000): channels held.
//! - `CENSUS_SECS` (40, capped at 120): how long the dashboard is connected.
//! - `CENSUS_CHURN` (1): connection channels replaced per second during the window (one client
//!   leaves, another arrives), as on a live backplane; 0 for a still channel table.
//! - `CENSUS_HEARTBEATS=1`: also publish a heartbeat for each of the three servers every 2 s, as
//!   Switchboard nodes do (their own connection counts), to see the census lean on them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use switchboard::backplane::naming::{self, Channels};
use switchboard::demo::redis_server::RedisProcess;
use switchboard::monitor::runtime::MonitorEvents;
use switchboard::monitor::{Announcement, MonitorCommand, MonitorEvent, MonitorHandle, TapSource};

const HUB: &str = "Switchboard.ChatHub";
/// Raw subscriber connections: several, as several hub nodes hold their channels.
const SUBSCRIBERS: usize = 6;
/// Channels per SUBSCRIBE command.
const BATCH: usize = 5_000;
const SERVERS: usize = 3;
const PING_EVERY: Duration = Duration::from_millis(10);
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(180);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn server_name(i: usize) -> String {
    format!("bench-node-{i}_{:032x}", 0xC0FFEE_u128 * (i as u128 + 1))
}

/// The channel names: per server its ack, return and the hub's all/internal:groups; then 80 %
/// connections (22-character ids like ASP.NET Core's), 17 % users, the rest groups.
fn channel_names(prefix: &str, total: usize) -> Vec<String> {
    let c = Channels::new(prefix, HUB);
    let mut out = vec![c.all(), c.internal_groups()];
    for s in 0..SERVERS {
        out.push(c.ack(&server_name(s)));
        out.push(c.return_channel(&server_name(s)));
    }
    let rest = total.saturating_sub(out.len());
    let users = rest * 17 / 100;
    let groups = rest / 100 * 3;
    let connections = rest - users - groups;
    for i in 0..connections {
        out.push(c.connection(&format!("{:0>22}", format!("c{i:x}Zq{}", i % 977))));
    }
    for i in 0..users {
        out.push(c.user(&format!("user-{i}@example.com")));
    }
    for i in 0..groups {
        out.push(c.group(&format!("room-{i}")));
    }
    out
}

/// Reads and discards everything a connection receives, so Redis never buffers for it.
async fn drain(mut reader: tokio::net::tcp::OwnedReadHalf) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Opens `SUBSCRIBERS` raw connections and SUBSCRIBEs `names` over them in batches; the
/// connections stay open (their readers drain) until the runtime ends.
async fn hold(port: u16, names: Vec<String>) {
    let per = names.len().div_ceil(SUBSCRIBERS);
    for part in names.chunks(per) {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (reader, mut writer) = stream.into_split();
        tokio::spawn(drain(reader));
        for batch in part.chunks(BATCH) {
            let mut args = vec!["SUBSCRIBE"];
            args.extend(batch.iter().map(String::as_str));
            writer.write_all(&resp(&args)).await.unwrap();
        }
        writer.flush().await.unwrap();
        // Keep the write half alive for the whole run.
        tokio::spawn(async move {
            let _writer = writer;
            std::future::pending::<()>().await;
        });
    }
}

async fn info(conn: &mut redis::aio::MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO").arg(section).query_async(conn).await.unwrap()
}

fn field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// `INFO commandstats` as command → (calls, usec).
fn commandstats(info: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let get = |key: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(name.to_string(), (get("calls"), get("usec")));
    }
    out
}

/// User + system CPU ticks of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the ")": field 3 is index 0, so utime (14) and stime (15) are 11 and 12.
    let get = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// PINGs every `PING_EVERY` on a raw connection until `stop`, on its own thread, returning the
/// round trips.
fn pinger(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut times = Vec::new();
            let mut buf = [0u8; 7];
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
                stream.read_exact(&mut buf).await.unwrap();
                times.push(start.elapsed());
                tokio::time::sleep(PING_EVERY).await;
            }
            times
        })
    })
}

/// Replaces `per_sec` connection channels a second on a raw connection until `stop`: a live
/// backplane's clients come and go, so `pubsub_channels` moves.
async fn churn(port: u16, prefix: String, per_sec: u64, stop: Arc<AtomicBool>) {
    if per_sec == 0 {
        return;
    }
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    tokio::spawn(drain(reader));
    let c = Channels::new(&prefix, HUB);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..per_sec {
            let arrive = c.connection(&format!("churn{n}"));
            writer.write_all(&resp(&["SUBSCRIBE", &arrive])).await.unwrap();
            if n >= 1 && !n.is_multiple_of(3) {
                let leave = c.connection(&format!("churn{}", n - 1));
                writer.write_all(&resp(&["UNSUBSCRIBE", &leave])).await.unwrap();
            }
            n += 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Publishes one heartbeat per server every 2 s until `stop`, as Switchboard nodes do.
async fn heartbeats(port: u16, prefix: String, connections: u64, stop: Arc<AtomicBool>) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    while !stop.load(Ordering::Relaxed) {
        for s in 0..SERVERS {
            let a = Announcement {
                kind: switchboard::status_doc::ANNOUNCEMENT_TYPE.into(),
                server_name: server_name(s),
                node_name: format!("bench-node-{s}"),
                hub: HUB.into(),
                connections: connections / SERVERS as u64,
                ts_ms: switchboard::monitor::now_ms(),
                ..Default::default()
            };
            let _: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(naming::nodes_channel(&prefix))
                .arg(serde_json::to_string(&a).unwrap())
                .query_async(&mut conn)
                .await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Drains the runtime's events like a UI would, counting census rounds and keeping the last.
fn ui_loop(
    mut events: MonitorEvents,
    stop: Arc<AtomicBool>,
    first: Arc<AtomicBool>,
) -> (u64, Option<MonitorEvent>, Vec<String>) {
    let mut rounds = 0;
    let mut last = None;
    let mut other = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while let Some(batch) = events.try_recv() {
            for event in batch {
                match &event {
                    MonitorEvent::Census { .. } => {
                        first.store(true, Ordering::Relaxed);
                        rounds += 1;
                        last = Some(event);
                    }
                    MonitorEvent::Tap { state, .. } => other.push(format!("tap {state:?}")),
                    _ => {}
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (rounds, last, other)
}

fn main() {
    let total = env_u64("CENSUS_CHANNELS", 300_000).min(600_000) as usize;
    let secs = env_u64("CENSUS_SECS", 40).clamp(1, 120);
    let with_heartbeats = std::env::var("CENSUS_HEARTBEATS").is_ok_and(|v| v == "1");
    let churn_per_sec = env_u64("CENSUS_CHURN", 1).min(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redis = runtime
        .block_on(RedisProcess::start())
        .expect("redis-server starts");
    let port = redis.port();
    let url = redis.url();
    let prefix = format!("census-{}:", std::process::id());
    let names = channel_names(&prefix, total);
    let connections = names.iter().filter(|n| n.contains(":connection:")).count() as u64;
    println!(
        "census_cost: {} channels ({connections} connections) under {prefix} on {url}, dashboard connected for {secs} s{}",
        names.len(),
        if with_heartbeats {
            ", with node heartbeats"
        } else {
            ""
        }
    );

    let mut admin = runtime.block_on(async {
        redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    });
    let subscribe_start = Instant::now();
    let expected = names.len() as u64;
    runtime.block_on(hold(port, names));
    runtime.block_on(async {
        loop {
            let held = field(&info(&mut admin, "stats").await, "pubsub_channels").unwrap_or(0);
            if held >= expected {
                break;
            }
            assert!(
                subscribe_start.elapsed() < SUBSCRIBE_TIMEOUT,
                "only {held} of {expected} channels subscribed after {SUBSCRIBE_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let memory = runtime.block_on(info(&mut admin, "memory"));
    println!(
        "held {expected} channels in {:.1} s; redis used_memory {:.0} MiB",
        subscribe_start.elapsed().as_secs_f64(),
        field(&memory, "used_memory").unwrap_or(0) as f64 / 1048576.0
    );

    let stop = Arc::new(AtomicBool::new(false));
    if with_heartbeats {
        runtime.spawn(heartbeats(port, prefix.clone(), connections, stop.clone()));
        std::thread::sleep(Duration::from_millis(200));
    }
    runtime.spawn(churn(port, prefix.clone(), churn_per_sec, stop.clone()));
    let before = commandstats(&runtime.block_on(info(&mut admin, "commandstats")));
    let pid = redis.pid().expect("redis-server pid");
    let ticks_before = cpu_ticks(pid);
    let ping = pinger(port, stop.clone());
    let (monitor, events) = runtime.block_on(async { MonitorHandle::start() });
    let first = Arc::new(AtomicBool::new(false));
    let ui = {
        let (stop, first) = (stop.clone(), first.clone());
        std::thread::spawn(move || ui_loop(events, stop, first))
    };
    let start = Instant::now();
    assert!(monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: Box::new(switchboard::redis_conn::RedisSpec::parse(&url, &Default::default()).unwrap()),
        prefix: prefix.clone(),
    }))));
    // The steady state: from the first census on (the first walk is the price of connecting).
    let deadline = start + Duration::from_secs(secs);
    while !first.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let steady_start = Instant::now();
    let steady_before = commandstats(&runtime.block_on(info(&mut admin, "commandstats")));
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    monitor.shutdown();
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), monitor.stopped()).await;
    });
    let wall = start.elapsed();
    let after = commandstats(&runtime.block_on(info(&mut admin, "commandstats")));
    let steady_wall = steady_start.elapsed();
    let ticks = cpu_ticks(pid).saturating_sub(ticks_before);
    stop.store(true, Ordering::Relaxed);
    let mut pings = ping.join().unwrap();
    let (rounds, last, tap) = ui.join().unwrap();

    println!(
        "\ndashboard's commands during {:.1} s (INFO commandstats delta):",
        wall.as_secs_f64()
    );
    println!(
        "{:<28} {:>8} {:>12} {:>10}",
        "command", "calls", "usec", "usec/call"
    );
    let mut usec_total = 0u64;
    for (name, (calls, usec)) in &after {
        // The other client's PINGs and the churn's (UN)SUBSCRIBEs are not the dashboard's.
        if name == "ping" || name == "subscribe" || name == "unsubscribe" {
            continue;
        }
        let (c0, u0) = before.get(name).copied().unwrap_or((0, 0));
        let (calls, usec) = (calls - c0, usec - u0);
        if calls == 0 {
            continue;
        }
        usec_total += usec;
        println!(
            "{name:<28} {calls:>8} {usec:>12} {:>10.0}",
            usec as f64 / calls as f64
        );
    }
    let share = usec_total as f64 / (wall.as_secs_f64() * 1e6) * 100.0;
    let steady_usec: u64 = after
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "ping" | "subscribe" | "unsubscribe"))
        .map(|(name, (_, usec))| usec - steady_before.get(name).map_or(0, |b| b.1))
        .sum();
    let steady_share = steady_usec as f64 / (steady_wall.as_secs_f64() * 1e6) * 100.0;
    let clk = 100.0;
    let cpu_share = ticks as f64 / clk / wall.as_secs_f64() * 100.0;
    pings.sort();
    println!(
        "\nSHARE of Redis time on the dashboard's commands: {share:.2} % ({usec_total} usec in {:.1} s)",
        wall.as_secs_f64()
    );
    println!(
        "steady state, from the first census on: {steady_share:.3} % ({steady_usec} usec in {:.1} s)",
        steady_wall.as_secs_f64()
    );
    println!(
        "redis-server CPU over the window (all work, incl. writing replies): {cpu_share:.1} % of a core"
    );
    println!(
        "other client's PING ({} samples): p50 {} p99 {} max {}",
        pings.len(),
        ms(percentile(&pings, 0.5)),
        ms(percentile(&pings, 0.99)),
        ms(pings.last().copied().unwrap_or_default())
    );
    println!("census events seen by the UI: {rounds}; tap states: {tap:?}");
    if let Some(MonitorEvent::Census { hubs, .. }) = last {
        for h in hubs {
            println!(
                "  last census: {} connections {} users {} groups {} servers {}",
                h.hub,
                h.connections,
                h.users,
                h.groups,
                h.servers.len()
            );
        }
    }
    drop(redis);
}
