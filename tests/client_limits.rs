//! One client cannot hold or flood a node: a client silent after its handshake is closed after the
//! client timeout (the default 30 s, from the handshake); the per-IP cap refuses the connection
//! past it and counts it; an invocation past the rate limit fails with a HubException while the
//! connection stays open; user ids and group names over their limits are refused naming the limit.
//!
//! Real parts: hub nodes on `127.0.0.1:0` with their default limits (unless the test is about
//! another value), real WebSocket clients and raw TCP sockets.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{connect, connect_with, expect_disconnect, start_node, start_node_with, within, within_for};
use switchboard::client::{ClientOptions, str_args};
use switchboard::hub::{BackplaneChoice, NodeConfig, NodeHandle};
use switchboard::protocol::{CompletionResult, Protocol};
use tokio::io::AsyncReadExt;

fn stat(node: &NodeHandle, section: &str, name: &str) -> u64 {
    node.stats()[section][name].as_u64().unwrap_or(0)
}

fn hub_exception(result: &CompletionResult) -> Option<&str> {
    match result {
        CompletionResult::Error(e) => e.split_once("HubException: ").map(|(_, m)| m),
        _ => None,
    }
}

#[tokio::test]
async fn a_client_silent_after_its_handshake_is_closed_after_the_default_client_timeout() {
    let node = start_node("idle", BackplaneChoice::Alone, "").await;
    // A client that never pings (its keep-alive far beyond the test), and one that does.
    let silent = ClientOptions {
        keep_alive: Duration::from_secs(3600),
        ..ClientOptions::with_protocol(Protocol::Json)
    };
    let mut silent = connect_with(&node, silent).await;
    let talking = connect(&node, Protocol::Json, None).await;
    let started = Instant::now();
    let reason = expect_disconnect(&mut silent, Duration::from_secs(35)).await;
    let after = started.elapsed();
    assert!(reason.contains("Connection closed with an error."), "{reason}");
    assert!(
        after >= Duration::from_secs(25),
        "closed after {after:?}: too early for a 30 s timeout"
    );
    // The client that pings is still served.
    let echo = within("echo", talking.invoke("Echo", str_args(&["still here"])))
        .await
        .unwrap();
    assert!(matches!(echo, CompletionResult::Value(_)), "{echo:?}");
    println!("silent client closed {after:?} after its handshake");
}

#[tokio::test]
async fn the_per_ip_cap_refuses_and_counts_past_it_and_frees_on_close() {
    let mut config = NodeConfig::new("per-ip");
    config.max_connections_per_ip = Some(3);
    let node = start_node_with(config, BackplaneChoice::Alone).await;
    let addr = node.local_addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Positive marker: the three are really open and served (a request on the last is answered).
    let answer = get_on(held.pop().unwrap(), "/switchboard/stats").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    // The fourth from the same address is closed at once, before anything is read.
    let mut fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = within("the refused socket closes", fourth.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "closed at once: {read:?}");
    within_for("the refusal counted", Duration::from_secs(10), async {
        while stat(&node, "connections", "refused_per_ip") < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Closing one makes room for the next: a request on a new socket is answered.
    drop(held.pop());
    let answer = within_for("room after a close", Duration::from_secs(10), async {
        loop {
            let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
            let answer = get_on(socket, "/metrics").await;
            if answer.starts_with("HTTP/1.1 200") {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        answer.contains("switchboard_connections_refused_per_ip_total 1"),
        "{answer}"
    );
}

/// A GET on `socket` (loopback: no token needed); the whole answer, or "" if the socket closed.
async fn get_on(mut socket: tokio::net::TcpStream, path: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if socket.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut body = Vec::new();
    let _ = within("an answer", socket.read_to_end(&mut body)).await;
    String::from_utf8_lossy(&body).into_owned()
}

/// GET /metrics on a new socket.
async fn reqwest_metrics(node: &NodeHandle) -> String {
    get_on(
        tokio::net::TcpStream::connect(node.local_addr()).await.unwrap(),
        "/metrics",
    )
    .await
}
#[tokio::test]
async fn invocations_past_the_default_rate_fail_with_a_hub_exception_and_the_connection_stays() {
    let node = start_node("rate", BackplaneChoice::Alone, "").await;
    let client = connect(&node, Protocol::Json, None).await;
    let sender = client.sender();
    // 400 invocations at once: far past 100/s, twice the burst of 200.
    let results = within(
        "400 invocations",
        futures_util::future::join_all((0..400).map(|i| {
            let sender = sender.clone();
            async move { sender.invoke("Echo", str_args(&[&i.to_string()])).await.unwrap() }
        })),
    )
    .await;
    let ok = results
        .iter()
        .filter(|r| matches!(r, CompletionResult::Value(_)))
        .count();
    let limited: Vec<&str> = results.iter().filter_map(hub_exception).collect();
    assert_eq!(
        ok + limited.len(),
        400,
        "every invocation was answered: {results:?}"
    );
    assert!(ok >= 200, "the burst of 200 is honoured ({ok} went through)");
    assert!(!limited.is_empty(), "a flood past the rate is refused");
    assert!(
        limited[0].contains("at most 100 invocations per second"),
        "{}",
        limited[0]
    );
    assert_eq!(
        stat(&node, "messages", "invocations_limited"),
        limited.len() as u64
    );
    // The connection stayed open: after a second the bucket has refilled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = within("a later invocation", client.invoke("Echo", str_args(&["later"])))
        .await
        .unwrap();
    assert!(matches!(later, CompletionResult::Value(_)), "{later:?}");
    let metrics = reqwest_metrics(&node).await;
    assert!(
        metrics.contains(&format!(
            "switchboard_invocations_rate_limited_total {}",
            limited.len()
        )),
        "{metrics}"
    );
    println!("{ok} of 400 went through, {} refused", limited.len());
}

#[tokio::test]
async fn names_over_the_default_limits_are_refused_naming_the_limit() {
    let node = start_node("names", BackplaneChoice::Alone, "").await;
    let client = connect(&node, Protocol::Json, None).await;
    let long_group = "g".repeat(1025);
    for (method, args) in [
        ("JoinGroup", str_args(&[&long_group])),
        ("SendToGroup", str_args(&[&long_group, "me", "hi"])),
    ] {
        let result = within(method, client.invoke(method, args)).await.unwrap();
        let message = hub_exception(&result).unwrap_or_else(|| panic!("{method}: {result:?}"));
        assert!(
            message.contains("at most 1024 bytes") && message.contains("--max-group-name-bytes"),
            "{method}: {message}"
        );
    }
    let result = within(
        "SendToUser",
        client.invoke("SendToUser", str_args(&[&"u".repeat(257), "me", "hi"])),
    )
    .await
    .unwrap();
    let message = hub_exception(&result).unwrap_or_else(|| panic!("{result:?}"));
    assert!(
        message.contains("A user id may be at most 256 bytes"),
        "{message}"
    );
    // At the limit is fine.
    let result = within(
        "JoinGroup",
        client.invoke("JoinGroup", str_args(&[&"g".repeat(1024)])),
    )
    .await
    .unwrap();
    assert_eq!(result, CompletionResult::Void);
    // A ?user= over the limit is refused at connect, with a 400 naming the flag.
    let options = ClientOptions {
        user: Some("u".repeat(257)),
        ..ClientOptions::with_protocol(Protocol::Json)
    };
    let refused = within(
        "connect",
        switchboard::client::HubClient::connect(&node.hub_url(), options),
    )
    .await;
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("max-user-id-bytes"), "{error}");
}
