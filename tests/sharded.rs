//! `--sharded-pubsub` on a real Redis Cluster (3 primaries) started by the harness: the delivery
//! matrix between nodes on different primaries, proof that connection/group/user channels are
//! sharded channels on their slot's owner (and `:all` stays classic), and a live group's slot
//! migrated mid-test (`CLUSTER SETSLOT ... NODE`): the group keeps receiving and any loss is
//! visible on the node's status.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::cluster::{RedisCluster, delivery_matrix};
use common::redis::{redis_cmd, value_text};
use common::{STEP, connect, expect_message, start_node_with, unique_prefix, wait_connected, within_for};
use switchboard::client::{ClientEvent, str_args};
use switchboard::hub::{BackplaneChoice, NodeConfig, NodeHandle};
use switchboard::protocol::{CompletionResult, Protocol, Value};
use switchboard::redis_conn::{RedisOptions, RedisSpec};
use tokio::time::Instant;

async fn sharded_node(name: &str, url: String, prefix: &str) -> NodeHandle {
    let mut config = NodeConfig::new(name);
    config.channel_prefix = prefix.to_string();
    config.group_ack_timeout = Duration::from_secs(5);
    let spec = RedisSpec::parse(&url, &RedisOptions::default()).unwrap();
    start_node_with(config, BackplaneChoice::ShardedRedis(spec)).await
}

async fn int_reply(url: &str, args: &[&str]) -> i64 {
    match redis_cmd(url, args).await.unwrap() {
        redis::Value::Int(n) => n,
        redis::Value::Array(items) if items.len() == 2 => match &items[1] {
            redis::Value::Int(n) => *n,
            other => panic!("{args:?}: {other:?}"),
        },
        other => panic!("{args:?}: {other:?}"),
    }
}

async fn forming(primaries: usize) -> RedisCluster {
    RedisCluster::formed(primaries, 0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_nodes_exchange_every_target() {
    let mut cluster = forming(3).await;
    let primaries = cluster.primary_ports().await;
    let prefix = unique_prefix();
    let a = sharded_node("node-a", cluster.url_of(primaries[0]), &prefix).await;
    let b = sharded_node("node-b", cluster.url_of(primaries[1]), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    delivery_matrix(&a, &b).await;

    // The channels are where the module docs say: a user channel is a sharded channel on its
    // slot's owner only, and `:all` is a classic channel.
    let _alice = connect(&a, Protocol::Json, Some("alice")).await;
    let user = format!("{prefix}Switchboard.ChatHub:user:alice");
    let slot = int_reply(&cluster.url_of(primaries[0]), &["CLUSTER", "KEYSLOT", &user]).await;
    let owner = cluster.owner_of(slot as u16).await;
    for port in &primaries {
        let url = cluster.url_of(*port);
        let sharded = int_reply(&url, &["PUBSUB", "SHARDNUMSUB", &user]).await;
        assert_eq!(
            sharded,
            i64::from(*port == owner),
            "SHARDNUMSUB {user} on {port} (owner {owner})"
        );
        assert_eq!(
            int_reply(&url, &["PUBSUB", "NUMSUB", &user]).await,
            0,
            "no classic subscription"
        );
    }
    let all = format!("{prefix}Switchboard.ChatHub:all");
    let classic: i64 = {
        let mut sum = 0;
        for port in &primaries {
            sum += int_reply(&cluster.url_of(*port), &["PUBSUB", "NUMSUB", &all]).await;
        }
        sum
    };
    assert_eq!(classic, 2, ":all stays classic: one subscription per node");
    a.shutdown().await;
    b.shutdown().await;
}

/// Moves the slot of a live group's channel to another primary while messages flow: the node
/// that holds the member follows the server's SUNSUBSCRIBE to the new owner, the group keeps
/// receiving, and whatever was lost is visible (the node's status names the gap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_group_follows_its_slot_to_another_shard() {
    let mut cluster = forming(3).await;
    let primaries = cluster.primary_ports().await;
    let prefix = unique_prefix();
    let a = sharded_node("node-a", cluster.url_of(primaries[0]), &prefix).await;
    let b = sharded_node("node-b", cluster.url_of(primaries[1]), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let a1 = connect(&a, Protocol::Json, None).await;
    let mut b1 = connect(&b, Protocol::Json, None).await;
    assert_eq!(
        b1.invoke("JoinGroup", str_args(&["live"])).await.unwrap(),
        CompletionResult::Void
    );

    let group = format!("{prefix}Switchboard.ChatHub:group:live");
    let seed = cluster.url_of(primaries[0]);
    let slot = int_reply(&seed, &["CLUSTER", "KEYSLOT", &group]).await as u16;
    let source = cluster.owner_of(slot).await;
    let target = *primaries.iter().find(|p| **p != source).unwrap();
    assert_eq!(
        int_reply(&cluster.url_of(source), &["PUBSUB", "SHARDNUMSUB", &group]).await,
        1
    );
    let target_id = value_text(
        &redis_cmd(&cluster.url_of(target), &["CLUSTER", "MYID"])
            .await
            .unwrap(),
    );

    const SENT: u32 = 60;
    let started = Instant::now();
    let mut migrated_at = None;
    for seq in 1..=SENT {
        if seq == 20 {
            // An empty slot moves with SETSLOT NODE alone: the new owner first, then the old one
            // (which drops its subscribers of that slot), then the third primary.
            let slot_text = slot.to_string();
            let mut order = vec![target, source];
            order.extend(primaries.iter().filter(|p| **p != source && **p != target));
            for port in order {
                let reply = redis_cmd(
                    &cluster.url_of(port),
                    &["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id],
                )
                .await;
                assert!(reply.is_ok(), "SETSLOT on {port}: {reply:?}");
            }
            migrated_at = Some(started.elapsed());
        }
        let _ = within_for(
            "SendToGroup",
            STEP,
            a1.invoke("SendToGroup", str_args(&["live", "a", &seq.to_string()])),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The group is subscribed on the new owner now, and no longer on the old one.
    let deadline = Instant::now() + STEP;
    while int_reply(&cluster.url_of(target), &["PUBSUB", "SHARDNUMSUB", &group]).await != 1 {
        assert!(
            Instant::now() < deadline,
            "the group was not subscribed on the new owner"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        int_reply(&cluster.url_of(source), &["PUBSUB", "SHARDNUMSUB", &group]).await,
        0
    );
    // And it keeps receiving. "after" is also the marker that ends the count: the numbered
    // messages were all sent (and the old shard's subscription dropped) before it, so whatever
    // of them arrives at all arrives first; no quiet period is waited for.
    a1.invoke("SendToGroup", str_args(&["live", "a", "after"]))
        .await
        .unwrap();
    let mut received = Vec::new();
    loop {
        match b1.recv_timeout(STEP).await {
            Some(ClientEvent::Invocation { arguments, .. }) if arguments == str_args(&["a", "after"]) => {
                break;
            }
            Some(ClientEvent::Invocation { arguments, .. }) => match arguments.get(1) {
                Some(Value::String(text)) => {
                    received.push(text.clone().into_str().unwrap().parse::<u32>().unwrap())
                }
                _ => panic!("unexpected arguments {arguments:?}"),
            },
            Some(other) => panic!("expected the numbered messages, then \"after\"; got {other:?}"),
            None => panic!("\"after\" did not arrive within {STEP:?}"),
        }
    }
    let lost: Vec<u32> = (1..=SENT).filter(|s| !received.contains(s)).collect();
    let b_status = b.backplane_status().borrow().clone();
    let a_stats = a.stats();
    eprintln!(
        "SHARDED migration of slot {slot} {source} → {target} at {:?}: {} of {SENT} received, lost {lost:?}; A forward_failures {}; B last_error {:?}",
        migrated_at.unwrap(),
        received.len(),
        a_stats["forward_failures"],
        b_status.last_error
    );
    assert!(received.iter().all(|s| *s <= SENT), "nothing invented");
    let b_gaps = b.stats()["messages"]["backplane_gaps"].as_u64().unwrap_or(0);
    let visible = a_stats["forward_failures"].as_u64().unwrap_or(0) > 0
        || (b_gaps > 0
            && b_status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("slot moved")));
    assert!(lost.is_empty() || visible, "messages {lost:?} were lost silently");
    assert!(b_status.state.is_up(), "{b_status:?}");
    a.shutdown().await;
    b.shutdown().await;
}

/// Kill the primary that owns a live group's slot: its replica is promoted, the sharded links
/// reconnect to the new shard map and subscribe again, and the group receives again. Prints the
/// time from the kill to the first delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_group_survives_the_failover_of_its_shard() {
    let mut cluster = RedisCluster::formed(3, 1).await;
    let primaries = cluster.primary_ports().await;
    let prefix = unique_prefix();
    let a = sharded_node("node-a", cluster.url_of(primaries[0]), &prefix).await;
    let b = sharded_node("node-b", cluster.url_of(primaries[1]), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let a1 = connect(&a, Protocol::Json, None).await;
    let mut b1 = connect(&b, Protocol::Json, None).await;
    assert_eq!(
        b1.invoke("JoinGroup", str_args(&["room"])).await.unwrap(),
        CompletionResult::Void
    );
    a1.invoke("SendToGroup", str_args(&["room", "a", "before"]))
        .await
        .unwrap();
    expect_message(&mut b1, "ReceiveMessage", STEP).await;

    let group = format!("{prefix}Switchboard.ChatHub:group:room");
    let slot = int_reply(&cluster.url_of(primaries[0]), &["CLUSTER", "KEYSLOT", &group]).await as u16;
    let owner = cluster.owner_of(slot).await;
    let index = primaries.iter().position(|p| *p == owner).unwrap();
    let killed_at = Instant::now();
    let dead = cluster.kill_primary(index).await;
    let deadline = killed_at + Duration::from_secs(40);
    let mut n = 0;
    let took = loop {
        n += 1;
        let _ = within_for(
            "SendToGroup",
            STEP,
            a1.invoke("SendToGroup", str_args(&["room", "a", &format!("try {n}")])),
        )
        .await;
        if let Some(ClientEvent::Invocation { .. }) = b1.recv_timeout(Duration::from_millis(50)).await {
            break killed_at.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the group got nothing within 40 s of killing its shard"
        );
    };
    let promoted = cluster.wait_failover(dead).await;
    eprintln!(
        "FAILOVER sharded: kill of slot {slot}'s primary {dead} → first group delivery {} ms (new owner {promoted}); A forward_failures {}",
        took.as_millis(),
        a.stats()["forward_failures"]
    );
    assert!(b.backplane_status().borrow().state.is_up());
    a.shutdown().await;
    b.shutdown().await;
}

/// Sharded pub/sub on a single Redis 7 server (no cluster): one shard owns every slot, and the
/// delivery matrix holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_nodes_work_on_a_single_redis_7() {
    let redis = common::redis::RedisServer::start().await;
    let prefix = unique_prefix();
    let a = sharded_node("node-a", redis.url(), &prefix).await;
    let b = sharded_node("node-b", redis.url(), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    delivery_matrix(&a, &b).await;
    a.shutdown().await;
    b.shutdown().await;
}
