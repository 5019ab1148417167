//! The dashboard's data path under a backplane flood: a private `redis-server`, the real monitor
//! runtime with a Redis tap, and a "UI thread" that drains and folds events into the real traffic
//! model exactly as the window does (per-frame budget of 25,000 entries, 20 frames/s), while a
//! publisher floods ASP.NET Core backplane payloads at a fixed rate.
//!
//! `cargo bench --bench tap_flood` runs one pass per rate and prints a table: what was published,
//! what the tap decoded, what the model folded, what was dropped (and where), the fold time per
//! frame, the ring's size against its limits and the process RSS. Bounded: every pass publishes
//! for `FLOOD_SECS` (10, at most 60) and waits at most 20 s for the tail; loopback only.
//!
//! Environment:
//! - `FLOOD_RATES` (e.g. `50000,100000`): one pass per rate, messages per second. Without it,
//!   `FLOOD_RATE` (50000) and twice that.
//! - `FLOOD_SECS` (10, capped at 60): how long each pass publishes.
//! - `FLOOD_ONLY=1`: start redis-server and the publisher only (at `FLOOD_RATE`), printing the
//!   URL and prefix first, to point a real window at it:
//!   `switchboard dashboard --redis URL --channel-prefix PREFIX`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard::backplane::naming::Channels;
use switchboard::backplane::wire;
use switchboard::demo::redis_server::RedisProcess;
use switchboard::monitor::model::{Limits, Model};
use switchboard::monitor::runtime::MonitorEvents;
use switchboard::monitor::{LinkState, MonitorCommand, MonitorEvent, MonitorHandle, TapSource};
use switchboard::monitor::{decode, now_ms};
use switchboard::protocol::{HubMessage, Protocol, Value};

/// Traffic entries folded per frame at most: the dashboard's `FRAME_BUDGET` (src/ui/app.rs).
const FRAME_BUDGET: usize = 25_000;
/// One frame at the dashboard's live repaint rate (20 frames/s).
const FRAME: Duration = Duration::from_millis(50);
/// The publisher's pacing tick.
const TICK: Duration = Duration::from_millis(10);
/// Pipelined publisher connections, as several hub nodes would have.
const PUBLISHERS: usize = 4;
/// Group channels the flood spreads over (`room-0` …), besides `{hub}:all`.
const ROOMS: usize = 8;
/// Distinct payloads cycled through (different users and text lengths).
const VARIANTS: usize = 64;
const HUB: &str = "chat";
const MAX_SECS: u64 = 60;
/// How long a pass waits after publishing for the tap to catch up.
const TAIL_LIMIT: Duration = Duration::from_secs(20);
/// A tail that makes no progress for this long is over.
const TAIL_STALL: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// (VmRSS, VmHWM) of this process in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// (channel, payload) pairs: `ReceiveMessage(user, text)` in JSON and MessagePack, wrapped the
/// way an ASP.NET Core hub publishes them, on `{prefix}chat:all` and `{prefix}chat:group:room-N`.
fn payloads(prefix: &str) -> Vec<(String, Bytes)> {
    let channels = Channels::new(prefix, HUB);
    (0..VARIANTS)
        .map(|i| {
            let text = format!("message {i} from the flood: {}", "lorem ipsum ".repeat(i % 8));
            let message = HubMessage::invocation(
                "ReceiveMessage",
                vec![Value::from(format!("user-{}", i % 13)), Value::from(text)],
            );
            let json = Protocol::Json.encode(&message);
            let msgpack = Protocol::MessagePack.encode(&message);
            let serializations: [(&str, &[u8]); 2] = [("json", &json), ("messagepack", &msgpack)];
            let excluded: &[&str] = if i % 5 == 0 {
                &["Hd3kQ1xVn0mQkZ8cB8sYfA"]
            } else {
                &[]
            };
            let payload = wire::encode_invocation(excluded, &serializations, None);
            let channel = if i % 3 == 0 {
                channels.all()
            } else {
                channels.group(&format!("room-{}", i % ROOMS))
            };
            (channel, payload)
        })
        .collect()
}

#[derive(Default)]
struct PublishCounters {
    published: AtomicU64,
    errors: AtomicU64,
}

/// Publishes at `rate` messages/s for `secs` over `PUBLISHERS` pipelined connections, paced per
/// `TICK` (each tick sends what is due, so a slow tick is caught up by the next).
async fn publish(
    url: String,
    prefix: String,
    rate: u64,
    secs: u64,
    counters: Arc<PublishCounters>,
) -> Duration {
    let payloads = Arc::new(payloads(&prefix));
    let client = redis::Client::open(url.as_str()).expect("redis URL");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let mut connection = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .expect("publisher connects in time")
            .expect("publisher connects");
        let payloads = payloads.clone();
        let counters = counters.clone();
        let share = rate as f64 / PUBLISHERS as f64;
        tasks.push(tokio::spawn(async move {
            let total = Duration::from_secs(secs);
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sent: u64 = 0;
            let mut next = p;
            loop {
                tick.tick().await;
                let elapsed = start.elapsed().min(total);
                let due = ((share * elapsed.as_secs_f64()) as u64).saturating_sub(sent);
                if due > 0 {
                    let mut pipe = redis::pipe();
                    for _ in 0..due {
                        let (channel, payload) = &payloads[next % payloads.len()];
                        next += PUBLISHERS;
                        pipe.cmd("PUBLISH").arg(channel).arg(&payload[..]).ignore();
                    }
                    match pipe.query_async::<()>(&mut connection).await {
                        Ok(()) => {
                            counters.published.fetch_add(due, Ordering::Relaxed);
                        }
                        Err(_) => {
                            counters.errors.fetch_add(due, Ordering::Relaxed);
                        }
                    }
                    sent += due;
                }
                if elapsed >= total {
                    break;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    start.elapsed()
}

/// Runs `publish` on its own single-threaded runtime on its own thread, so it competes with the
/// dashboard only for the CPU, as a separate hub process would.
fn spawn_publisher(
    url: String,
    prefix: String,
    rate: u64,
    secs: u64,
    counters: Arc<PublishCounters>,
) -> std::thread::JoinHandle<Duration> {
    std::thread::Builder::new()
        .name("flood-publisher".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("publisher runtime");
            runtime.block_on(publish(url, prefix, rate, secs, counters))
        })
        .expect("publisher thread")
}

/// What the UI thread shares while it runs.
#[derive(Default)]
struct UiShared {
    stop: AtomicBool,
    connected: AtomicBool,
    /// Traffic entries folded into the model so far.
    folded: AtomicU64,
}

/// What the UI thread saw, at its end.
struct UiReport {
    fold_times: Vec<Duration>,
    folded: u64,
    undecodable: u64,
    tap_states: Vec<String>,
    ring_len: usize,
    ring_bytes: usize,
    evicted: u64,
    max_rss_kib: u64,
}

/// The dashboard's frame loop without egui: drain within the budget (as `Link::drain`), fold (as
/// `DashboardApp::pump`), then sleep out the rest of a 50 ms frame.
fn ui_loop(mut events: MonitorEvents, shared: Arc<UiShared>) -> UiReport {
    let mut model = Model::new(Limits::default());
    let mut fold_times = Vec::new();
    let mut folded = 0u64;
    let mut undecodable = 0u64;
    let mut tap_states = Vec::new();
    let mut max_rss_kib = 0;
    let mut last_rss = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let frame_start = Instant::now();
        let now = now_ms();
        let mut taken = 0usize;
        while taken < FRAME_BUDGET {
            let Some(batch) = events.try_recv() else {
                break;
            };
            for event in batch {
                match &event {
                    MonitorEvent::Traffic(entries) => {
                        taken += entries.len();
                        folded += entries.len() as u64;
                        undecodable += entries.iter().filter(|e| e.error.is_some()).count() as u64;
                    }
                    MonitorEvent::Tap { state, .. } => {
                        taken += 1;
                        tap_states.push(match state {
                            LinkState::Reconnecting { error, .. } => format!("reconnecting ({error})"),
                            other => format!("{other:?}").to_lowercase(),
                        });
                        if *state == LinkState::Connected {
                            shared.connected.store(true, Ordering::Relaxed);
                        }
                    }
                    _ => taken += 1,
                }
                model.apply(event, now);
            }
        }
        model.tick(now);
        let fold = frame_start.elapsed();
        fold_times.push(fold);
        shared.folded.store(folded, Ordering::Relaxed);
        if last_rss.elapsed() >= Duration::from_millis(250) {
            max_rss_kib = max_rss_kib.max(rss_kib().0);
            last_rss = Instant::now();
        }
        std::thread::sleep(FRAME.saturating_sub(fold));
    }
    max_rss_kib = max_rss_kib.max(rss_kib().0);
    UiReport {
        fold_times,
        folded,
        undecodable,
        tap_states,
        ring_len: model.traffic.len(),
        ring_bytes: model.traffic.bytes(),
        evicted: model.traffic.evicted(),
        max_rss_kib,
    }
}

/// One pass at one rate.
struct PassReport {
    rate: u64,
    secs: u64,
    published: u64,
    publish_errors: u64,
    publish_time: Duration,
    decoded: u64,
    dropped_entries: u64,
    dropped_events: u64,
    max_lag: u64,
    tail: Duration,
    rss_start_kib: u64,
    rss_end_kib: u64,
    wall: Duration,
    ui: UiReport,
}

fn run_pass(runtime: &tokio::runtime::Runtime, url: &str, pass: usize, rate: u64, secs: u64) -> PassReport {
    let prefix = format!("flood{pass}-{}:", std::process::id());
    let rss_start_kib = rss_kib().0;
    let (monitor, events) = runtime.block_on(async { MonitorHandle::start() });
    let shared = Arc::new(UiShared::default());
    let ui = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("flood-ui".into())
            .spawn(move || ui_loop(events, shared))
            .expect("ui thread")
    };
    assert!(
        monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
            spec: redis_spec(url),
            prefix: prefix.clone(),
        }))),
        "the monitor takes the tap command"
    );
    let waited = Instant::now();
    while !shared.connected.load(Ordering::Relaxed) {
        assert!(
            waited.elapsed() < CONNECT_TIMEOUT,
            "the tap did not connect within {CONNECT_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    println!("pass {pass}: {rate} msg/s for {secs} s on {url}, prefix {prefix}");
    let counters = Arc::new(PublishCounters::default());
    let start = Instant::now();
    let publisher = spawn_publisher(url.to_string(), prefix, rate, secs, counters.clone());
    let decoded = || shared.folded.load(Ordering::Relaxed) + monitor.dropped_entries();
    let mut max_lag = 0u64;
    let mut next_line = start + Duration::from_secs(1);
    while !publisher.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        let published = counters.published.load(Ordering::Relaxed);
        max_lag = max_lag.max(published.saturating_sub(decoded()));
        if Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            println!(
                "  t={:>4.1} s  published {:>9}  folded {:>9}  dropped {:>8}  behind {:>8}  rss {}",
                start.elapsed().as_secs_f64(),
                published,
                shared.folded.load(Ordering::Relaxed),
                monitor.dropped_entries(),
                published.saturating_sub(decoded()),
                mib(rss_kib().0),
            );
        }
    }
    let publish_time = publisher.join().expect("publisher finished");
    let published = counters.published.load(Ordering::Relaxed);

    // The tail: until the tap has accounted for every message, stalls, or the limit passes.
    let tail_start = Instant::now();
    let mut last = (decoded(), Instant::now());
    while decoded() < published && tail_start.elapsed() < TAIL_LIMIT && last.1.elapsed() < TAIL_STALL {
        std::thread::sleep(Duration::from_millis(20));
        let now = decoded();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let tail = tail_start.elapsed();
    // Two more frames, so what the tap handed on is folded.
    std::thread::sleep(FRAME * 2);
    shared.stop.store(true, Ordering::Relaxed);
    let ui = ui.join().expect("ui thread");
    let wall = start.elapsed();
    let (dropped_entries, dropped_events) = (monitor.dropped_entries(), monitor.dropped_events());
    monitor.shutdown();
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), monitor.stopped()).await;
    });
    PassReport {
        rate,
        secs,
        published,
        publish_errors: counters.errors.load(Ordering::Relaxed),
        publish_time,
        decoded: ui.folded + dropped_entries,
        dropped_entries,
        dropped_events,
        max_lag,
        tail,
        rss_start_kib,
        rss_end_kib: rss_kib().0,
        wall,
        ui,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn print_table(reports: &[PassReport]) {
    let limits = Limits::default();
    let mut rows: Vec<(&str, Vec<String>)> = Vec::new();
    let mut row = |name: &'static str, f: &dyn Fn(&PassReport) -> String| {
        rows.push((name, reports.iter().map(f).collect()));
    };
    row("target rate (msg/s)", &|r| r.rate.to_string());
    row("published (msg)", &|r| {
        format!("{} in {:.2} s", r.published, r.publish_time.as_secs_f64())
    });
    row("publish rate achieved", &|r| {
        format!("{:.0}/s", r.published as f64 / r.publish_time.as_secs_f64())
    });
    row("publish errors (msg)", &|r| r.publish_errors.to_string());
    row("decoded by the tap", &|r| r.decoded.to_string());
    row("  folded into model", &|r| r.ui.folded.to_string());
    row("  dropped entries", &|r| r.dropped_entries.to_string());
    row("  dropped events", &|r| r.dropped_events.to_string());
    row("never decoded (lost)", &|r| {
        r.published.saturating_sub(r.decoded).to_string()
    });
    row("undecodable entries", &|r| r.ui.undecodable.to_string());
    row("max behind (msg)", &|r| r.max_lag.to_string());
    row("tail after publish", &|r| {
        format!("{:.2} s", r.tail.as_secs_f64())
    });
    row("folded/s (publish+tail)", &|r| {
        format!(
            "{:.0}/s",
            r.ui.folded as f64 / (r.publish_time + r.tail).as_secs_f64()
        )
    });
    row("frames", &|r| r.ui.fold_times.len().to_string());
    let sorted = |r: &PassReport| {
        let mut v = r.ui.fold_times.clone();
        v.sort();
        v
    };
    row("fold/frame p50", &|r| ms(percentile(&sorted(r), 0.50)));
    row("fold/frame p95", &|r| ms(percentile(&sorted(r), 0.95)));
    row("fold/frame max", &|r| {
        ms(sorted(r).last().copied().unwrap_or_default())
    });
    row("frames folding > 16 ms", &|r| {
        let n =
            r.ui.fold_times
                .iter()
                .filter(|d| **d > Duration::from_millis(16))
                .count();
        n.to_string()
    });
    row("frames folding > 50 ms", &|r| {
        let n = r.ui.fold_times.iter().filter(|d| **d > FRAME).count();
        n.to_string()
    });
    row("fold throughput", &|r| {
        let busy: Duration = r.ui.fold_times.iter().sum();
        format!(
            "{:.0} entries/s",
            r.ui.folded as f64 / busy.as_secs_f64().max(1e-9)
        )
    });
    row("ring len / limit", &|r| {
        format!("{} / {}", r.ui.ring_len, limits.ring_entries)
    });
    row("ring bytes / limit", &|r| {
        format!(
            "{} / {}",
            mib(r.ui.ring_bytes as u64 / 1024),
            mib(limits.ring_bytes as u64 / 1024)
        )
    });
    row("ring evicted", &|r| r.ui.evicted.to_string());
    row("tap states seen", &|r| r.ui.tap_states.join(" → "));
    row("RSS at pass start", &|r| mib(r.rss_start_kib));
    row("RSS max (sampled 4/s)", &|r| mib(r.ui.max_rss_kib));
    row("RSS at pass end", &|r| mib(r.rss_end_kib));
    row("pass wall time", &|r| {
        format!("{:.1} s ({} s publishing)", r.wall.as_secs_f64(), r.secs)
    });

    let name_width = rows.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0);
    let col_width = rows
        .iter()
        .flat_map(|(_, v)| v.iter().map(|s| s.chars().count()))
        .max()
        .unwrap_or(0)
        .max(12);
    println!();
    for (name, values) in rows {
        let cells: Vec<String> = values.iter().map(|v| format!("{v:>col_width$}")).collect();
        println!("{name:<name_width$} | {}", cells.join(" | "));
    }
}

/// The tap's decode and the UI's fold alone, on this thread, without I/O or other load: what the
/// two stages cost per message, to tell which one limits a pass.
fn calibrate() -> (f64, f64) {
    const N: usize = 200_000;
    let prefix = "calibrate:";
    let payloads = payloads(prefix);
    let now = now_ms();
    let start = Instant::now();
    let mut batches = Vec::new();
    let mut batch = Vec::with_capacity(2000);
    for i in 0..N {
        let (channel, payload) = &payloads[i % payloads.len()];
        batch.push(decode::decode(prefix, channel, payload, now));
        if batch.len() == 2000 {
            batches.push(std::mem::replace(&mut batch, Vec::with_capacity(2000)));
        }
    }
    let decode_rate = N as f64 / start.elapsed().as_secs_f64();
    let mut model = Model::new(Limits::default());
    let start = Instant::now();
    for batch in batches {
        model.apply(MonitorEvent::Traffic(batch), now);
    }
    model.tick(now);
    let fold_rate = N as f64 / start.elapsed().as_secs_f64();
    (decode_rate, fold_rate)
}

fn rates() -> Vec<u64> {
    if let Ok(list) = std::env::var("FLOOD_RATES") {
        let rates: Vec<u64> = list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .filter(|r| *r > 0)
            .collect();
        if !rates.is_empty() {
            return rates;
        }
    }
    let rate = env_u64("FLOOD_RATE", 50_000).max(1);
    vec![rate, rate * 2]
}

fn main() {
    let secs = env_u64("FLOOD_SECS", 10).clamp(1, MAX_SECS);
    let starter = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let redis = match starter.block_on(RedisProcess::start()) {
        Ok(redis) => redis,
        Err(e) => {
            println!("tap_flood: skipped (redis-server did not start: {e})");
            return;
        }
    };
    let url = redis.url();

    if std::env::var("FLOOD_ONLY").is_ok_and(|v| v == "1") {
        let rate = env_u64("FLOOD_RATE", 50_000).max(1);
        let prefix = format!("flood-{}:", std::process::id());
        println!("redis URL: {url}");
        println!("prefix:    {prefix}");
        println!("watch it:  switchboard dashboard --redis {url} --channel-prefix {prefix}");
        println!("publishing {rate} msg/s for {secs} s in 5 s …");
        std::thread::sleep(Duration::from_secs(5));
        let counters = Arc::new(PublishCounters::default());
        let took = spawn_publisher(url, prefix, rate, secs, counters.clone())
            .join()
            .expect("publisher finished");
        let published = counters.published.load(Ordering::Relaxed);
        println!(
            "published {published} in {:.2} s ({:.0}/s), {} errors",
            took.as_secs_f64(),
            published as f64 / took.as_secs_f64(),
            counters.errors.load(Ordering::Relaxed)
        );
        drop(redis);
        return;
    }

    let (rss_process_start, _) = rss_kib();
    // The dashboard's runtime: two workers (`link::RUNTIME_WORKERS`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("switchboard-io")
        .enable_all()
        .build()
        .expect("runtime");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "tap_flood: {cores} CPU(s), {secs} s per pass, frame budget {FRAME_BUDGET} entries, {} ms frames, {PUBLISHERS} publisher connections, RSS at start {}",
        FRAME.as_millis(),
        mib(rss_process_start)
    );
    let reports: Vec<PassReport> = rates()
        .into_iter()
        .enumerate()
        .map(|(pass, rate)| run_pass(&runtime, &url, pass, rate, secs))
        .collect();
    print_table(&reports);
    let (rss_end, hwm) = rss_kib();
    println!(
        "\nprocess RSS: {} at start, {} at end, {} peak (VmHWM)",
        mib(rss_process_start),
        mib(rss_end),
        mib(hwm)
    );
    // Last, so it does not weigh on the RSS figures above.
    let (decode_rate, fold_rate) = calibrate();
    println!(
        "\nalone on one thread, no I/O: tap decode {decode_rate:.0} msg/s, model fold {fold_rate:.0} entries/s"
    );
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(redis);
}

/// A Redis spec from a plain URL (the tests' servers need no TLS or sentinel options).
fn redis_spec(url: &str) -> Box<switchboard::redis_conn::RedisSpec> {
    Box::new(
        switchboard::redis_conn::RedisSpec::parse(url, &Default::default()).expect("a plain redis:// URL"),
    )
}
