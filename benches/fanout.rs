//! Broadcast fan-out throughput, measured with real nodes and real WebSocket clients on loopback.
//!
//! `cargo bench --bench fanout` runs two scenarios and prints one line each:
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
//! `FANOUT_LATENCY_ONLY=1` runs only the latency scenario (for before/after comparisons).
//!
//! A delivery is one `ReceiveMessage` read by one client. Counts are bounded (N×M deliveries) and
//! the run stops by itself. Override with `FANOUT_CLIENTS` (500), `FANOUT_MESSAGES` (1000) and
//! `FANOUT_SENDERS` (1: one client sends every broadcast; more split them, as in a real room).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard::client::{ClientEvent, ClientOptions, HubClient, str_args};
use switchboard::demo::redis_server::RedisProcess;
use switchboard::hub::{BackplaneChoice, Node, NodeConfig, NodeHandle};
use switchboard::protocol::Protocol;

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

/// Nearest-rank percentile of sorted milliseconds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
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

fn main() {
    let clients = env_usize("FANOUT_CLIENTS", 500);
    let messages = env_usize("FANOUT_MESSAGES", 1000);
    let senders = env_usize("FANOUT_SENDERS", 1).max(1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let latency_only = std::env::var("FANOUT_LATENCY_ONLY").is_ok_and(|v| v == "1");
        if !latency_only {
            let node = Node::start(NodeConfig::new("bench"), BackplaneChoice::Alone)
                .await
                .unwrap();
            run("memory", std::slice::from_ref(&node), clients, messages, senders).await;
            node.shutdown().await;
        }

        let redis = match RedisProcess::start().await {
            Ok(redis) => redis,
            Err(e) => {
                println!(" redis: skipped ({e})");
                return;
            }
        };
        let url = redis.url();
        let a = Node::start(NodeConfig::new("a"), BackplaneChoice::Redis(url.clone()))
            .await
            .unwrap();
        let b = Node::start(NodeConfig::new("b"), BackplaneChoice::Redis(url))
            .await
            .unwrap();
        for n in [&a, &b] {
            let mut status = n.backplane_status();
            let _ = status.wait_for(|s| s.state.is_up()).await;
        }
        if !latency_only {
            run("redis", &[a.clone(), b.clone()], clients, messages, senders).await;
        }
        latency(&a, &b, env_usize("FANOUT_LATENCY_MESSAGES", 400)).await;
        a.shutdown().await;
        b.shutdown().await;
    });
}
