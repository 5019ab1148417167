//! What `switchboard agent` costs, measured from the outside: a private `redis-server`, two
//! `switchboard hub` processes on it, and the agent binary watching them (default canary, every
//! 10 s). Two phases of `AGENT_BENCH_SECS` each (default 60; the 10-minute RSS run is
//! `AGENT_BENCH_SECS=600`):
//!
//! - quiet: nothing but the agent's own canaries, probes, census and Redis view;
//! - flood: 10,000 backplane messages/s (`AGENT_BENCH_RATE`) published straight to Redis as
//!   ASP.NET Core `{hub}:all` invocations of the nodes' hub, which the agent's tap decodes and
//!   the agent's two probe clients receive (every broadcast reaches every client).
//!
//! For each: the agent's CPU (% of one core, /proc/PID/stat utime+stime), its RSS at the start,
//! middle and end (/proc/PID/status VmRSS), and redis-server's CPU. Goals (issue 17): ≤ 2 %
//! quiet, ≤ 10 % at 10,000/s, Redis ≤ 1 % from the agent, RSS flat.
//!
//! `cargo bench --bench agent`. Loopback only; bounded in time and rate.

#[path = "support/node_process.rs"]
mod node_process;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard::backplane::naming::Channels;
use switchboard::backplane::wire;
use switchboard::demo::redis_server::RedisProcess;
use switchboard::protocol::{HubMessage, Protocol, Value};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const HUB: &str = "Switchboard.ChatHub";
const MAX_SECS: u64 = 3600;
const MAX_RATE: u64 = 100_000;
/// The publisher's pacing tick.
const TICK: Duration = Duration::from_millis(10);

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are the 12th and 13th after the name.
    let get = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// CPU % of one core of `pid` between two readings.
struct CpuMeter {
    pid: u32,
    ticks: u64,
    at: Instant,
}

impl CpuMeter {
    fn start(pid: u32) -> Self {
        CpuMeter {
            pid,
            ticks: cpu_ticks(pid),
            at: Instant::now(),
        }
    }
    fn percent(&self) -> f64 {
        let ticks = cpu_ticks(self.pid).saturating_sub(self.ticks) as f64;
        100.0 * ticks / clock_ticks_per_sec() / self.at.elapsed().as_secs_f64()
    }
}

/// `:all` invocations of the hub, in the ASP.NET Core wire format (JSON and MessagePack).
fn payloads(prefix: &str) -> Vec<(String, Vec<u8>)> {
    let channels = Channels::new(prefix, HUB);
    (0..32)
        .map(|i| {
            let message = HubMessage::invocation(
                "ReceiveMessage",
                vec![
                    Value::from(format!("user-{}", i % 7)),
                    Value::from(format!("bench message {i} {}", "lorem ipsum ".repeat(i % 6))),
                ],
            );
            let json = Protocol::Json.encode(&message);
            let msgpack = Protocol::MessagePack.encode(&message);
            let serializations: [(&str, &[u8]); 2] = [("json", &json), ("messagepack", &msgpack)];
            let excluded: &[&str] = &[];
            let payload = wire::encode_invocation(excluded, &serializations, None);
            (channels.all(), payload.to_vec())
        })
        .collect()
}

/// Publishes `rate` messages/s for `secs`, pipelined per [`TICK`]; returns what was published.
async fn publish(url: &str, rate: u64, secs: u64) -> u64 {
    let payloads = payloads("");
    let client = redis::Client::open(url).expect("redis URL");
    let mut connection =
        tokio::time::timeout(Duration::from_secs(10), client.get_multiplexed_async_connection())
            .await
            .expect("the publisher connects in time")
            .expect("the publisher connects");
    let start = Instant::now();
    let total = Duration::from_secs(secs);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    loop {
        tick.tick().await;
        let elapsed = start.elapsed().min(total);
        let due = ((rate as f64 * elapsed.as_secs_f64()) as u64).saturating_sub(sent);
        if due > 0 {
            let mut pipe = redis::pipe();
            for i in 0..due {
                let (channel, payload) = &payloads[((sent + i) % payloads.len() as u64) as usize];
                pipe.cmd("PUBLISH").arg(channel).arg(&payload[..]).ignore();
            }
            let _ = pipe.query_async::<()>(&mut connection).await;
            sent += due;
        }
        if elapsed >= total {
            return sent;
        }
    }
}

/// `GET /metrics` of the agent.
async fn metrics(base: &str) -> String {
    switchboard::client::http::request_with_timeout(
        "GET",
        &format!("{base}/metrics"),
        b"",
        Duration::from_secs(10),
    )
    .await
    .map(|r| r.text())
    .unwrap_or_default()
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

fn sum_of(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

struct Phase {
    name: &'static str,
    agent_cpu: f64,
    redis_cpu: f64,
    rss_kib: [u64; 3],
    published: u64,
    tapped: f64,
    canary_lost: f64,
}

// One call per phase, its figures named at the call: a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn run_phase(
    runtime: &tokio::runtime::Runtime,
    name: &'static str,
    agent: u32,
    redis: u32,
    redis_url: &str,
    base: &str,
    rate: u64,
    secs: u64,
) -> Phase {
    let before = runtime.block_on(metrics(base));
    let agent_meter = CpuMeter::start(agent);
    let redis_meter = CpuMeter::start(redis);
    let mut rss = [rss_kib(agent), 0, 0];
    let publisher = (rate > 0).then(|| {
        let url = redis_url.to_string();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("publisher runtime")
                .block_on(publish(&url, rate, secs))
        })
    });
    std::thread::sleep(Duration::from_secs(secs) / 2);
    rss[1] = rss_kib(agent);
    std::thread::sleep(Duration::from_secs(secs) - Duration::from_secs(secs) / 2);
    let agent_cpu = agent_meter.percent();
    let redis_cpu = redis_meter.percent();
    rss[2] = rss_kib(agent);
    let published = publisher.map_or(0, |p| p.join().unwrap_or(0));
    let after = runtime.block_on(metrics(base));
    Phase {
        name,
        agent_cpu,
        redis_cpu,
        rss_kib: rss,
        published,
        tapped: sum_of(&after, "switchboard_tap_messages_total")
            - sum_of(&before, "switchboard_tap_messages_total"),
        canary_lost: sum_of(&after, "switchboard_canary_lost_total")
            - sum_of(&before, "switchboard_canary_lost_total"),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs = node_process::env_or("AGENT_BENCH_SECS", 60u64).clamp(1, MAX_SECS);
    let rate = node_process::env_or("AGENT_BENCH_RATE", 10_000u64).min(MAX_RATE);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let redis = match runtime.block_on(RedisProcess::start()) {
        Ok(redis) => redis,
        Err(e) => {
            println!("agent bench: skipped (redis-server did not start: {e})");
            return;
        }
    };
    let redis_pid = redis.pid().expect("redis pid");
    let url = redis.url();
    let (mut a, hub_a) = node_process::start_node(BIN, "bench-a", &url, &[]);
    let (mut b, hub_b) = node_process::start_node(BIN, "bench-b", &url, &[]);
    let mut agent: Child = Command::new(BIN)
        .args([
            "agent",
            "--redis",
            &url,
            "--node",
            &hub_a,
            "--node",
            &hub_b,
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the agent starts");
    let mut line = String::new();
    BufReader::new(agent.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the agent's first line");
    let port = line
        .split("listening on http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|addr| addr.rsplit(':').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let base = format!("http://127.0.0.1:{port}");
    // Warm up: both nodes up and one canary round delivered (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = runtime.block_on(metrics(&base));
        let up = |n: &str| value(&text, &format!("switchboard_node_up{{node=\"{n}\"}}")) == Some(1.0);
        if up("bench-a") && up("bench-b") && sum_of(&text, "switchboard_canary_delivery_seconds_count") >= 4.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not settle within 60 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let pid = agent.id();
    println!("agent bench: {secs} s per phase, flood {rate} msg/s ({BIN})");
    let phases = [
        run_phase(&runtime, "quiet", pid, redis_pid, &url, &base, 0, secs),
        run_phase(&runtime, "flood", pid, redis_pid, &url, &base, rate, secs),
    ];
    println!(
        "{:<6} {:>10} {:>10} {:>9} {:>9} {:>9} {:>11} {:>10} {:>11}",
        "phase",
        "agent CPU",
        "redis CPU",
        "RSS start",
        "RSS mid",
        "RSS end",
        "published",
        "tapped",
        "canary lost"
    );
    for p in &phases {
        println!(
            "{:<6} {:>9.2}% {:>9.2}% {:>7.1}Mi {:>7.1}Mi {:>7.1}Mi {:>11} {:>10} {:>11}",
            p.name,
            p.agent_cpu,
            p.redis_cpu,
            p.rss_kib[0] as f64 / 1024.0,
            p.rss_kib[1] as f64 / 1024.0,
            p.rss_kib[2] as f64 / 1024.0,
            p.published,
            p.tapped,
            p.canary_lost
        );
    }
    println!(
        "goals: agent ≤ 2 % quiet, ≤ 10 % at 10,000/s; Redis ≤ 1 % from the agent (quiet phase); RSS flat"
    );
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = agent.wait();
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
    drop(redis);
}
