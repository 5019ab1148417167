//! Two nodes in one process on the in-memory backplane behave exactly as over Redis: the same
//! routing, the same remote group operations, the same payload bytes (seen through a bus tap).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{STEP, connect, expect_message, expect_nothing_before_own, within};
use switchboard::backplane::memory::MemoryBus;
use switchboard::backplane::wire;
use switchboard::client::str_args;
use switchboard::hub::{BackplaneChoice, Node, NodeConfig};
use switchboard::protocol::{CompletionResult, HubMessage, Protocol};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_the_memory_bus_route_like_redis() {
    let bus = MemoryBus::new();
    let (tap_tx, mut tap_rx) = mpsc::channel(1024);
    bus.tap(tap_tx);
    let a = Node::start(NodeConfig::new("node-a"), BackplaneChoice::Memory(bus.clone()))
        .await
        .unwrap();
    let b = Node::start(NodeConfig::new("node-b"), BackplaneChoice::Memory(bus.clone()))
        .await
        .unwrap();
    let mut a1 = connect(&a, Protocol::Json, Some("ann")).await;
    let mut b1 = connect(&b, Protocol::MessagePack, Some("ben")).await;
    let mut b2 = connect(&b, Protocol::Json, None).await;

    a1.invoke("SendMessage", str_args(&["ann", "hi"])).await.unwrap();
    for c in [&mut a1, &mut b1, &mut b2] {
        assert_eq!(
            expect_message(c, "ReceiveMessage", STEP).await,
            str_args(&["ann", "hi"])
        );
    }
    // The tap saw the :all publish, in the ASP.NET Core layout.
    // (Heartbeats on `switchboard:nodes` share the bus; skip to the :all publish.)
    let published = within("tap", async {
        loop {
            let m = tap_rx.recv().await.expect("tap open");
            if m.channel == "Switchboard.ChatHub:all" {
                return m;
            }
            assert_eq!(m.channel, "switchboard:nodes", "unexpected publish");
        }
    })
    .await;
    let inv = wire::decode_invocation(&published.payload).unwrap();
    let expected = HubMessage::invocation("ReceiveMessage", str_args(&["ann", "hi"]));
    assert_eq!(
        inv.serialization("json").unwrap().to_vec(),
        Protocol::Json.encode(&expected)
    );

    a1.invoke("SendToUser", str_args(&["ben", "ann", "to ben"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut b1, "ReceiveMessage", STEP).await,
        str_args(&["ann", "to ben"])
    );
    // b1 on the same node got it (the witness): b2's own marker follows anything queued for it.
    expect_nothing_before_own(&mut b2, "after the user").await;

    let b2_id = common::connection_id(&b2).await;
    assert_eq!(
        a1.invoke("AddToGroup", str_args(&[&b2_id, "team"]))
            .await
            .unwrap(),
        CompletionResult::Void
    );
    a1.invoke("SendToGroup", str_args(&["team", "ann", "team msg"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut b2, "ReceiveMessage", STEP).await,
        str_args(&["ann", "team msg"])
    );
    expect_nothing_before_own(&mut b1, "after the group").await;

    // A send to a local connection is written directly: nothing crosses the backplane (B.5).
    let a1_id = common::connection_id(&a1).await;
    while tap_rx.try_recv().is_ok() {}
    let published_before = a.stats()["messages"]["backplane_out"].clone();
    a1.invoke("SendToConnection", str_args(&[&a1_id, "ann", "to myself"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut a1, "ReceiveMessage", STEP).await,
        str_args(&["ann", "to myself"])
    );
    assert_eq!(a.stats()["messages"]["backplane_out"], published_before);
    while let Ok(m) = tap_rx.try_recv() {
        assert_eq!(
            m.channel, "switchboard:nodes",
            "a local send was published: {}",
            m.channel
        );
    }

    // A stopped bus: local delivery goes on, the failure is counted.
    bus.set_down(true);
    a1.invoke("SendMessage", str_args(&["ann", "alone"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut a1, "ReceiveMessage", STEP).await,
        str_args(&["ann", "alone"])
    );
    // Nothing of this reaches b1, then or later: the first thing it receives once the bus is
    // back is "back" (asserted below).
    assert_eq!(a.stats()["forward_failures"], 1);
    bus.set_down(false);
    a1.invoke("SendMessage", str_args(&["ann", "back"]))
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut b1, "ReceiveMessage", STEP).await,
        str_args(&["ann", "back"])
    );

    // Stats reflect the cluster.
    let stats = b.stats();
    assert_eq!(stats["connections"]["total"], 2);
    assert_eq!(stats["connections"]["json"], 1);
    assert_eq!(stats["connections"]["messagepack"], 1);
    assert_eq!(stats["groups"], 1);
    assert_eq!(stats["users"], 1);
    assert_eq!(stats["backplane"]["kind"], "memory");
    // While up, the bus holds A's and B's base channels and B's connection/user/group channels;
    // a stopped node leaves the bus entirely (connections and base channels alike).
    let before = bus.channels();
    assert!(before.iter().any(|c| c.contains(a.server_name())), "{before:?}");
    a.shutdown().await;
    let after = bus.channels();
    assert!(!after.iter().any(|c| c.contains(a.server_name())), "{after:?}");
    assert!(
        before.contains(&format!("Switchboard.ChatHub:connection:{a1_id}")),
        "{before:?}"
    );
    assert!(
        !after.contains(&format!("Switchboard.ChatHub:connection:{a1_id}")),
        "{after:?}"
    );
    assert!(
        !after.contains(&"Switchboard.ChatHub:user:ann".to_string()),
        "{after:?}"
    );
    assert!(
        after.contains(&"Switchboard.ChatHub:all".to_string()),
        "B is still subscribed"
    );
    b.shutdown().await;
    drop((a1, b1, b2));
    assert_eq!(bus.channels(), Vec::<String>::new());
}
