//! A Redis SIGKILL under load and a restart on the same port 3 s later, three times over: cross-node
//! delivery resumes, and every message sent across nodes is accounted for exactly.
//!
//! Real parts: a test-owned `redis-server`, two hub nodes on it, real WebSocket clients. Node A has
//! one sender that sends `SendToConnection(receiver on B)` every 5 ms with a sequence number, and
//! 19 idle clients; node B has the receiver, 9 idle clients and 10 clients broadcasting
//! `SendMessage` at 20 msg/s each (200 msg/s of fan-out to all 40 clients).
//!
//! The accounting rule checked (exact, over the whole run): every message the sender sent is
//! either received by the receiver, or counted by node A in `forward_failures` (the PUBLISH
//! failed: Redis was down or the link broke under it) or in `forward_unreached` (Redis accepted it
//! but node B had not resubscribed the receiver's channel yet), but for at most one message per
//! kill that Redis itself accepted and died with (pub/sub is at-most-once; nobody can count that
//! one). Nothing is received twice or out of order, and node B drops nothing from its inbox.
//!
//! The resume time (from the moment the restarted Redis accepts connections to the receiver's first
//! message after it) is printed for each restart with the median; timings are never asserted.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{STEP, connect, start_node_with, unique_prefix, wait_connected, within, within_for};
use switchboard::client::{ClientEvent, ClientOptions, HubClient, str_args};
use switchboard::hub::{BackplaneChoice, NodeHandle};
use switchboard::protocol::{CompletionResult, Protocol, Value};
use tokio::sync::Mutex;

/// How long Redis stays down each time (the scenario of issue 8).
const DOWN: Duration = Duration::from_secs(3);

/// Kill/restart cycles, for a median.
const CYCLES: usize = 3;

fn counter(node: &NodeHandle, name: &str) -> u64 {
    node.stats()[name].as_u64().unwrap_or(0)
}

/// Reads and discards everything a client receives, until it disconnects.
fn drain(mut client: HubClient) {
    tokio::spawn(async move { while client.recv().await.is_some() {} });
}

/// The receiver: sequence numbers in arrival order, with the arrival instant of each.
#[derive(Default)]
struct Received {
    seqs: Vec<u64>,
    at: Vec<Instant>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_delivery_resumes_after_redis_restarts_and_losses_are_counted_exactly() {
    let mut redis = RedisServer::start().await;
    let prefix = unique_prefix();
    // The measured sender sends 200 invocations/s, past the default per-connection rate limit
    // (this test is about Redis restarts, not about that limit): the limit is off here.
    let node = |name: &str| {
        let mut config = switchboard::hub::NodeConfig::new(name);
        config.channel_prefix = prefix.clone();
        config.limits.invocations_per_second = 0;
        config
    };
    let a = start_node_with(node("node-a"), BackplaneChoice::RedisUrl(redis.url())).await;
    let b = start_node_with(node("node-b"), BackplaneChoice::RedisUrl(redis.url())).await;
    wait_connected(&a).await;
    wait_connected(&b).await;

    // The receiver on B, and its connection id.
    let mut options = ClientOptions::with_protocol(Protocol::Json);
    options.inbox_capacity = 1 << 16;
    let receiver = within("receiver connects", HubClient::connect(&b.hub_url(), options))
        .await
        .expect("receiver connects");
    let receiver_id = match within("GetConnectionId", receiver.invoke("GetConnectionId", vec![]))
        .await
        .expect("invoke")
    {
        CompletionResult::Value(Value::String(s)) => s.into_str().unwrap_or_default(),
        other => panic!("GetConnectionId returned {other:?}"),
    };
    let received = Arc::new(Mutex::new(Received::default()));
    let receiving = {
        let received = received.clone();
        let mut receiver = receiver;
        tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                if let ClientEvent::Invocation { arguments, .. } = event
                    && let Some(Value::String(user)) = arguments.first()
                    && user.as_str() == Some("seq")
                    && let Some(seq) = arguments
                        .get(1)
                        .and_then(|v| v.as_str())
                        .and_then(|t| t.parse::<u64>().ok())
                {
                    let mut r = received.lock().await;
                    r.seqs.push(seq);
                    r.at.push(Instant::now());
                }
            }
        })
    };

    // Background load: idle clients on both nodes, broadcasters on B.
    for _ in 0..19 {
        drain(connect(&a, Protocol::Json, None).await);
    }
    for _ in 0..9 {
        drain(connect(&b, Protocol::MessagePack, None).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut broadcasters = Vec::new();
    for i in 0..10 {
        let client = connect(&b, Protocol::Json, None).await;
        let sender = client.sender();
        drain(client);
        let stop = stop.clone();
        broadcasters.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let _ = sender
                    .send("SendMessage", str_args(&["load", &format!("b{i}")]))
                    .await;
            }
        }));
    }

    // The measured stream: A's sender → the receiver on B, one message every 5 ms.
    let failures_before = counter(&a, "forward_failures");
    let unreached_before = counter(&a, "forward_unreached");
    let sender_client = connect(&a, Protocol::Json, None).await;
    let sender = sender_client.sender();
    drain(sender_client);
    let sent = Arc::new(AtomicU64::new(0));
    let sending = {
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let args = str_args(&[&receiver_id, "seq", &seq.to_string()]);
                if sender.send("SendToConnection", args).await.is_err() {
                    break;
                }
                seq += 1;
                sent.store(seq, Ordering::Relaxed);
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !received.lock().await.seqs.is_empty(),
        "cross-node delivery works before the first kill"
    );
    let mut resumes = Vec::new();
    for cycle in 0..CYCLES {
        redis.kill();
        tokio::time::sleep(DOWN).await;
        redis.restart().await;
        let back = Instant::now();
        let resumed = within_for("cross-node delivery resumes", STEP, async {
            loop {
                let at = received
                    .lock()
                    .await
                    .at
                    .iter()
                    .rev()
                    .take_while(|t| **t > back)
                    .last()
                    .copied();
                if let Some(at) = at {
                    return at;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let resume = resumed.duration_since(back);
        println!(
            "restart {}: first cross-node delivery {:.0} ms after Redis was back",
            cycle + 1,
            resume.as_secs_f64() * 1000.0
        );
        resumes.push(resume);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    stop.store(true, Ordering::Relaxed);
    within("the sender stops", sending).await.expect("sender task");
    for task in broadcasters {
        within("a broadcaster stops", task)
            .await
            .expect("broadcaster task");
    }
    // Let the last messages arrive: wait until the receiver has been quiet for a while.
    let sent = sent.load(Ordering::Relaxed);
    let mut last_len = usize::MAX;
    within("the receiver goes quiet", async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let len = received.lock().await.seqs.len();
            if len == last_len {
                return;
            }
            last_len = len;
        }
    })
    .await;

    let failures = counter(&a, "forward_failures") - failures_before;
    let unreached = counter(&a, "forward_unreached") - unreached_before;
    let r = received.lock().await;
    let got = r.seqs.len() as u64;
    assert!(
        r.seqs.windows(2).all(|w| w[0] < w[1]),
        "no duplicates, no reordering"
    );
    assert_eq!(
        b.stats()["messages"]["backplane_dropped"].as_u64(),
        Some(0),
        "node B kept up: its inbox dropped nothing"
    );
    resumes.sort();
    println!(
        "sent {sent}, received {got}, not forwarded: {failures} publish failures + {unreached} unreached; resume median {:.0} ms (of {:?})",
        resumes[resumes.len() / 2].as_secs_f64() * 1000.0,
        resumes.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    assert!(
        failures > 0,
        "the outages made publishes fail (and they were counted)"
    );
    // Redis's pub/sub is at-most-once: a PUBLISH it has answered ("1 subscriber") can still die
    // with it when it is SIGKILLed before it wrote the push to the subscriber's socket (both wait
    // in its pending writes). Neither node can see that loss, so each kill may cost one message
    // that nobody counts; anything more, or any duplicate, is ours.
    let uncounted = sent - (got + failures + unreached).min(sent);
    assert!(
        got + failures + unreached <= sent && uncounted <= CYCLES as u64,
        "every message is received or counted as not forwarded, but for at most one lost inside \
         Redis per kill: sent {sent}, received {got}, {failures} failures, {unreached} unreached"
    );
    if uncounted > 0 {
        println!("{uncounted} message(s) lost inside Redis at a kill (accepted by PUBLISH, never pushed)");
    }
    drop(r);
    receiving.abort();
    a.shutdown().await;
    b.shutdown().await;
}
