//! Broadcast fan-out throughput, measured with real nodes and real WebSocket clients on loopback.
//!
//! `cargo bench --bench fanout` runs two scenarios and prints one line each:
//! - `memory`: one node, N clients, one sender broadcasting M `SendMessage` calls;
//! - `redis`: two nodes sharing a private `redis-server` (skipped when it is not on PATH), clients
//!   split across them, the sender on node A.
//!
//! A delivery is one `ReceiveMessage` read by one client. Counts are bounded (N×M deliveries) and
//! the run stops by itself. Override with `FANOUT_CLIENTS` (500), `FANOUT_MESSAGES` (1000) and
//! `FANOUT_SENDERS` (1: one client sends every broadcast; more split them, as in a real room).

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

fn main() {
    let clients = env_usize("FANOUT_CLIENTS", 500);
    let messages = env_usize("FANOUT_MESSAGES", 1000);
    let senders = env_usize("FANOUT_SENDERS", 1).max(1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let node = Node::start(NodeConfig::new("bench"), BackplaneChoice::Alone)
            .await
            .unwrap();
        run("memory", std::slice::from_ref(&node), clients, messages, senders).await;
        node.shutdown().await;

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
        run("redis", &[a.clone(), b.clone()], clients, messages, senders).await;
        a.shutdown().await;
        b.shutdown().await;
    });
}
