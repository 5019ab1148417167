//! The node's per-connection buffers are sized for chat messages (no read buffer is kept between
//! reads, see `READ_CHUNK` in `hub/connection.rs`; frames are written from shared bytes) and grow
//! on demand: a message at the 32 KiB limit still goes through, in both protocols and across
//! nodes, and small messages keep flowing after it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{STEP, connect, expect_message, s, start_node, unique_prefix, within};
use switchboard::hub::BackplaneChoice;
use switchboard::protocol::{Protocol, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_at_the_size_limit_crosses_nodes_in_both_protocols() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    for node in [&a, &b] {
        let mut status = node.backplane_status();
        within("the backplane", status.wait_for(|s| s.state.is_up()))
            .await
            .unwrap();
    }
    let sender = connect(&a, Protocol::Json, None).await;
    let mut json_far = connect(&b, Protocol::Json, None).await;
    let mut msgpack_far = connect(&b, Protocol::MessagePack, None).await;
    let mut msgpack_near = connect(&a, Protocol::MessagePack, None).await;
    // The cross-node subscriptions are in place once a small message makes it across.
    within(
        "the first small message",
        sender.invoke("SendToOthers", vec![s("u"), s("warm-up")]),
    )
    .await
    .unwrap();
    for client in [&mut json_far, &mut msgpack_far, &mut msgpack_near] {
        expect_message(client, "ReceiveMessage", STEP).await;
    }

    // Just under the 32 KiB limit once framed as a JSON invocation.
    let big: String = (0..32 * 1024 - 200)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    for text in [big.as_str(), "small after big", big.as_str(), "small again"] {
        within("sending", sender.invoke("SendToOthers", vec![s("u"), s(text)]))
            .await
            .unwrap();
        for client in [&mut json_far, &mut msgpack_far, &mut msgpack_near] {
            let args = expect_message(client, "ReceiveMessage", Duration::from_secs(10)).await;
            assert_eq!(
                args,
                vec![Value::from("u"), Value::from(text)],
                "{} bytes",
                text.len()
            );
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}
