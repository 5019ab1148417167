//! Control traffic is never shed with chat traffic: while a chat flood on `:all` overflows both
//! nodes' inboxes (a positive marker: `backplane_dropped` > 0 on both), every remote `AddToGroup`
//! in both directions is still acknowledged, and nothing lands in `control_dropped`.
//!
//! Real parts: a test-owned `redis-server`, two hub nodes on it, real WebSocket clients, and a raw
//! RESP connection that pipelines the flood.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{connect, start_node_with, unique_prefix, wait_connected, within_for};
use switchboard::backplane::naming::Channels;
use switchboard::backplane::wire;
use switchboard::client::{HubClient, str_args};
use switchboard::hub::{BackplaneChoice, NodeConfig, NodeHandle};
use switchboard::protocol::{CompletionResult, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Chat messages published in the flood: far more than the inboxes hold.
const FLOOD: usize = 10_000;
/// The nodes' chat inbox in this test: small, so the flood overflows it quickly even in a debug
/// build (the control queue keeps its default size).
const INBOX: usize = 64;
/// Remote group operations made while the flood is in flight, from each side.
const OPS: usize = 20;

fn counter(node: &NodeHandle, section: &str, name: &str) -> u64 {
    node.stats()[section][name].as_u64().unwrap_or(0)
}

async fn node(name: &str, redis: &RedisServer, prefix: &str) -> NodeHandle {
    let mut config = NodeConfig::new(name);
    config.channel_prefix = prefix.to_string();
    config.backplane_inbox = INBOX;
    let node = start_node_with(config, BackplaneChoice::RedisUrl(redis.url())).await;
    wait_connected(&node).await;
    node
}

/// Pipelines `count` (a multiple of 1,000) PUBLISHes of a valid `:all` invocation on one raw
/// connection and reads every reply.
async fn flood(port: u16, channel: &str, count: usize) {
    let frame = br#"{"type":1,"target":"ReceiveMessage","arguments":["flood","x"]}"#;
    let mut framed = frame.to_vec();
    framed.push(0x1e);
    let payload = wire::encode_invocation(&[], &[("json", &framed)], None);
    // The payload is MessagePack: its bytes go as they are in a RESP bulk string.
    let mut one_exact = format!(
        "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n",
        channel.len(),
        payload.len()
    )
    .into_bytes();
    one_exact.extend_from_slice(&payload);
    one_exact.extend_from_slice(b"\r\n");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut read, mut write) = stream.split();
    let writer = async {
        let batch: Vec<u8> = one_exact.repeat(1000);
        for _ in 0..count / 1000 {
            write.write_all(&batch).await.unwrap();
        }
    };
    let reader = async {
        // Each reply is an integer line ":N\r\n".
        let mut lines = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while lines < count / 1000 * 1000 {
            let n = read.read(&mut buf).await.unwrap();
            assert!(n > 0, "Redis closed the flood connection");
            lines += buf[..n].iter().filter(|b| **b == b'\n').count();
        }
    };
    within_for(
        "the flood",
        Duration::from_secs(120),
        futures_util::future::join(writer, reader),
    )
    .await;
}

async fn add_to_group(client: &mut HubClient, connection_id: &str, group: &str) {
    let result = within_for(
        "a remote AddToGroup",
        Duration::from_secs(60),
        client.invoke("AddToGroup", str_args(&[connection_id, group])),
    )
    .await
    .expect("the invocation completed");
    assert_eq!(
        result,
        CompletionResult::Void,
        "a remote AddToGroup during the flood must be acked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_group_commands_are_acked_while_a_chat_flood_overflows_the_inbox() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = node("node-a", &redis, &prefix).await;
    let b = node("node-b", &redis, &prefix).await;

    // Requesters on each node, one per remote operation, so every operation is in flight at once;
    // they are the flood's recipients too, which slows each node's receiver.
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for _ in 0..OPS {
        on_a.push(connect(&a, Protocol::Json, None).await);
        on_b.push(connect(&b, Protocol::Json, None).await);
    }
    let a_id = on_a[0].connection_id().expect("an id").to_string();
    let b_id = on_b[0].connection_id().expect("an id").to_string();
    let channels = Channels::new(prefix.clone(), switchboard::config::DEFAULT_HUB_NAME.to_string());
    let all = channels.all();
    // The flood runs on a thread and runtime of its own, as another process would.
    let flooding = std::thread::spawn({
        let port = redis.port();
        move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(flood(port, &all, FLOOD))
        }
    });
    // Wait until both nodes shed chat traffic: the positive marker that the inboxes overflowed.
    within_for("both inboxes overflowing", Duration::from_secs(60), async {
        while counter(&a, "messages", "backplane_dropped") == 0
            || counter(&b, "messages", "backplane_dropped") == 0
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let started = std::time::Instant::now();
    let mut ops = Vec::new();
    for (i, (mut from_a, mut from_b)) in on_a.into_iter().zip(on_b).enumerate() {
        let (a_id, b_id) = (a_id.clone(), b_id.clone());
        // A → B: the command lands in B's flooded inbox, its ack in A's; and B → A.
        ops.push(tokio::spawn(async move {
            add_to_group(&mut from_a, &b_id, &format!("from-a-{i}")).await;
        }));
        ops.push(tokio::spawn(async move {
            add_to_group(&mut from_b, &a_id, &format!("from-b-{i}")).await;
        }));
    }
    for op in ops {
        within_for("a remote AddToGroup", Duration::from_secs(60), op)
            .await
            .expect("the operation's task");
    }
    let acked_after = started.elapsed();
    let still_flooding = !flooding.is_finished();
    within_for(
        "the flood's end",
        Duration::from_secs(150),
        tokio::task::spawn_blocking(move || flooding.join()),
    )
    .await
    .expect("the flood thread")
    .expect("the flood finished");
    assert!(
        counter(&a, "messages", "backplane_dropped") > 0 && counter(&b, "messages", "backplane_dropped") > 0,
        "the flood overflowed both inboxes"
    );
    assert_eq!(counter(&a, "messages", "control_dropped"), 0);
    assert_eq!(counter(&b, "messages", "control_dropped"), 0);
    println!(
        "flood of {FLOOD}: node-a shed {}, node-b shed {}; {OPS} remote AddToGroup acked each way, all within {acked_after:?} (flood still running then: {still_flooding})",
        counter(&a, "messages", "backplane_dropped"),
        counter(&b, "messages", "backplane_dropped"),
    );
}
