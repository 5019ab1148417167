//! One client flooding a node does not hurt the others: the delivery latency of a room's normal
//! traffic with and without a flooder on the same node, measured from the outside.
//!
//! `cargo bench --bench flood`: a private `redis-server`, one `switchboard hub` child process with
//! its default limits (100 invocations/s per connection, bursts of 200), and in this process
//! `FLOOD_CLIENTS` (50) listeners plus one sender broadcasting `SendMessage` every 20 ms for
//! `FLOOD_SECONDS` (10). Each phase prints p50/p99/max of send → receipt over every delivery:
//! - `quiet`: the room alone;
//! - `flood`: the same, while one more connection sends `FLOOD_RATE` (10,000) blocking
//!   invocations a second, pipelined (each refused one still costs the node a Completion), and
//!   reads its completions; its refused and answered counts are printed. `FLOOD_METHOD`:
//!   `SendMessage` (default: each one a broadcast to the whole room) or `Echo`.
//!
//! With `FLOOD_LIMIT=0` the node runs with `--max-invocations-per-second 0` (no limit), to show
//! what the limit saves. Bounded in count and time; stops by itself.
#![allow(clippy::unwrap_used)] // bench code: a failed unwrap is a failed run

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard::client::{ClientEvent, ClientOptions, HubClient, str_args};
use switchboard::demo::redis_server::RedisProcess;
use switchboard::protocol::CompletionResult;

#[path = "support/node_process.rs"]
mod node_process;
use node_process::{env_or, percentile, start_node};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

async fn connect(url: &str, inbox: usize) -> HubClient {
    let options = ClientOptions {
        inbox_capacity: inbox,
        ..ClientOptions::default()
    };
    HubClient::connect(url, options).await.expect("client connects")
}

/// One phase: the room's broadcasts for `seconds`, with or without a flooder. Returns the sorted
/// latencies in ms of every delivery to the listeners.
async fn phase(url: &str, listeners: usize, seconds: u64, flood: Option<(u64, &'static str)>) -> Vec<f64> {
    let messages = (seconds * 50) as usize;
    let started = Instant::now();
    let sent = Arc::new(std::sync::Mutex::new(vec![None::<Duration>; messages]));
    let mut readers = Vec::new();
    for _ in 0..listeners {
        let mut client = connect(url, messages + 64).await;
        let sent = sent.clone();
        readers.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(messages);
            while out.len() < messages {
                match tokio::time::timeout(Duration::from_secs(10), client.recv()).await {
                    Ok(Some(ClientEvent::Invocation { arguments, .. })) => {
                        let at = started.elapsed();
                        // Only the room's own broadcasts are timed (a flood of broadcasts
                        // reaches the listeners too).
                        if arguments.first().and_then(|v| v.as_str()) != Some("room") {
                            continue;
                        }
                        let seq = arguments
                            .get(1)
                            .and_then(|v| v.as_str())
                            .and_then(|s| s.parse::<usize>().ok());
                        if let Some(sent_at) =
                            seq.and_then(|i| sent.lock().unwrap().get(i).copied().flatten())
                        {
                            out.push(at.saturating_sub(sent_at).as_secs_f64() * 1000.0);
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            out
        }));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flooder = flood.map(|(rate, method)| {
        let (stop, answered, refused, url) =
            (stop.clone(), answered.clone(), refused.clone(), url.to_string());
        tokio::spawn(async move {
            let client = connect(&url, 1 << 16).await;
            let sender = client.sender();
            // Batches every 10 ms, each invocation awaited in its own task (pipelined).
            let per_tick = (rate / 100).max(1);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut inflight = tokio::task::JoinSet::new();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                for i in 0..per_tick {
                    let (sender, answered, refused) = (sender.clone(), answered.clone(), refused.clone());
                    inflight.spawn(async move {
                        let args = match method {
                            "Echo" => str_args(&[&i.to_string()]),
                            _ => str_args(&["flood", &i.to_string()]),
                        };
                        match sender.invoke(method, args).await {
                            Ok(CompletionResult::Error(_)) => refused.fetch_add(1, Ordering::Relaxed),
                            Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                            Err(_) => 0,
                        };
                    });
                }
                while inflight.try_join_next().is_some() {}
            }
            inflight.abort_all();
            drop(client);
        })
    });
    let sender = connect(url, 1 << 12).await;
    let tx = sender.sender();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..messages {
        tick.tick().await;
        sent.lock().unwrap()[i] = Some(started.elapsed());
        let _ = tx.send("SendMessage", str_args(&["room", &i.to_string()])).await;
    }
    // The flood ends with the room's sending: the readers then only drain what is in flight.
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.await.unwrap());
    }
    if let Some(flooder) = flooder {
        let _ = flooder.await;
        let (a, r) = (answered.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
        println!(
            "  flooder: {} invocations answered, {} refused by the rate limit ({:.0}/s attempted)",
            a,
            r,
            (a + r) as f64 / seconds as f64
        );
    }
    drop(sender);
    all.sort_by(f64::total_cmp);
    let expected = messages * listeners;
    println!(
        "  {} of {expected} deliveries; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN)
    );
    all
}

fn main() {
    let listeners: usize = env_or("FLOOD_CLIENTS", 50);
    let seconds: u64 = env_or("FLOOD_SECONDS", 10);
    let rate: u64 = env_or("FLOOD_RATE", 10_000);
    let limit: Option<u32> = std::env::var("FLOOD_LIMIT").ok().and_then(|v| v.parse().ok());
    // What the flooder invokes: `SendMessage` (a broadcast to the whole room: the costly flood)
    // or `Echo` (answered to the flooder alone).
    let method: &'static str = match std::env::var("FLOOD_METHOD").as_deref() {
        Ok("Echo") => "Echo",
        _ => "SendMessage",
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let redis = match RedisProcess::start().await {
            Ok(redis) => redis,
            Err(e) => {
                println!("flood: skipped ({e})");
                return;
            }
        };
        let limit_arg = limit.map(|l| l.to_string());
        let mut extra = Vec::new();
        if let Some(l) = &limit_arg {
            extra.extend(["--max-invocations-per-second", l.as_str()]);
        }
        let (mut node, url) = start_node(BIN, "flood", &redis.url(), &extra);
        println!(
            "flood: {listeners} listeners, one broadcast every 20 ms for {seconds} s; node limit {}",
            limit_arg.as_deref().unwrap_or("default (100/s, burst 200)")
        );
        println!(" quiet:");
        phase(&url, listeners, seconds, None).await;
        println!(" flood ({rate} {method} invocations/s from one more connection):");
        phase(&url, listeners, seconds, Some((rate, method))).await;
        let _ = node.kill();
        let _ = node.wait();
    });
}
