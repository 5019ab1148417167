//! Slow and idle clients at the HTTP layer: a socket that never completes its request headers is
//! closed after the header read timeout, the connection cap counts every TCP connection (not only
//! WebSockets), and a real client is served all along.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{STEP, connect_with, start_node_with, within, within_for};
use switchboard::client::{ClientOptions, HubClient, str_args};
use switchboard::hub::{BackplaneChoice, NodeConfig, NodeHandle};
use switchboard::protocol::{CompletionResult, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A short timeout so the test does not sleep for the production 10 s.
const HEADER_TIMEOUT: Duration = Duration::from_millis(600);

async fn open(node: &NodeHandle) -> TcpStream {
    within("opening a TCP connection", TcpStream::connect(node.local_addr()))
        .await
        .expect("the node accepts")
}

/// Reads until the node closes the socket (EOF or reset); returns what it sent.
async fn until_closed(socket: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    within_for("the node to close the socket", limit, read).await;
    got
}

async fn echo_works(client: &HubClient, text: &str) {
    assert_eq!(
        within("Echo", client.invoke("Echo", str_args(&[text])))
            .await
            .unwrap(),
        CompletionResult::Value(Value::from(text))
    );
}

fn direct() -> ClientOptions {
    // No negotiate: one TCP connection per client, so the cap counts exactly.
    ClientOptions {
        negotiate: false,
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_while_a_real_client_is_served() {
    let mut config = NodeConfig::new("n");
    config.header_read_timeout = HEADER_TIMEOUT;
    let node = start_node_with(config, BackplaneChoice::Alone).await;

    let opened = Instant::now();
    let mut idle = Vec::new();
    let mut half_sent = Vec::new();
    for i in 0..20 {
        idle.push(open(&node).await);
        let mut socket = open(&node).await;
        let partial = if i % 2 == 0 {
            "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_string() // headers never finished
        } else {
            "GET /switchboard/st".to_string() // request line never finished
        };
        within("writing a partial request", socket.write_all(partial.as_bytes()))
            .await
            .unwrap();
        half_sent.push(socket);
    }

    // A real client connects and is served while the slow sockets are open.
    let client = connect_with(&node, ClientOptions::default()).await;
    echo_works(&client, "while they hang").await;
    let stats = common::http::stats(&node.base_url()).await;
    assert_eq!(stats["connections"]["json"], 1);

    for socket in idle.iter_mut().chain(half_sent.iter_mut()) {
        until_closed(socket, STEP).await;
    }
    // Closed by the timeout, not at once (the cap is far away).
    assert!(
        opened.elapsed() >= HEADER_TIMEOUT.mul_f64(0.9),
        "closed after {:?}, before the header timeout",
        opened.elapsed()
    );
    // An upgraded WebSocket is not subject to the header timeout: still served after it.
    tokio::time::sleep(HEADER_TIMEOUT).await;
    echo_works(&client, "after they are gone").await;
    assert!(client.is_connected());
    assert_eq!(
        common::http::stats(&node.base_url()).await["connections"]["refused"],
        0
    );
    client.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_complete_request_is_answered_even_when_sent_slowly_within_the_timeout() {
    let mut config = NodeConfig::new("n");
    config.header_read_timeout = Duration::from_secs(5);
    let node = start_node_with(config, BackplaneChoice::Alone).await;
    let mut socket = open(&node).await;
    for piece in [
        "GET /switchboard/stats HTTP/1.1\r\n",
        "Host: localhost\r\n",
        "Connection: close\r\n",
        "\r\n",
    ] {
        within("writing", socket.write_all(piece.as_bytes()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = String::from_utf8_lossy(&until_closed(&mut socket, STEP).await).into_owned();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    node.shutdown().await;
}

#[tokio::test]
async fn the_cap_counts_every_tcp_connection_and_refuses_past_it_at_once() {
    let mut config = NodeConfig::new("n");
    config.max_connections = 3;
    let node = start_node_with(config, BackplaneChoice::Alone).await;

    // Three idle sockets fill the cap: no WebSocket among them.
    // The node accepts in the kernel's order, so the fourth socket comes after these three.
    let mut idle = vec![open(&node).await, open(&node).await, open(&node).await];
    let mut extra = open(&node).await; // the kernel accepts; the node closes it at once
    assert!(
        until_closed(&mut extra, STEP).await.is_empty(),
        "nothing is answered past the cap"
    );
    // Closed by the cap (counted as a refusal), not by the header timeout.
    assert_eq!(
        node.stats()["connections"]["refused"],
        1,
        "the extra socket was refused at the cap"
    );
    let refused = HubClient::connect(&node.hub_url(), direct()).await;
    assert!(refused.is_err(), "a client past the cap is refused");

    // Free the slots: clients get in again, and WebSockets hold theirs for their lifetime.
    idle.clear();
    let mut clients = Vec::new();
    let deadline = Instant::now() + STEP;
    while clients.len() < 3 {
        match HubClient::connect(&node.hub_url(), direct()).await {
            Ok(client) => clients.push(client),
            // The node may not have seen the idle sockets close yet.
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("slots were not released: {e}"),
        }
    }
    for client in &clients {
        echo_works(client, "in").await;
    }
    assert!(
        HubClient::connect(&node.hub_url(), direct()).await.is_err(),
        "three WebSockets fill the cap"
    );
    // Each refusal is counted (the extra socket, the refused clients, and any retry above).
    let refused = node.stats()["connections"]["refused"].as_u64().unwrap();
    assert!(refused >= 3, "refused {refused}");
    assert_eq!(node.stats()["connections"]["rejected"], 0, "nobody got a 503");

    // A WebSocket that ends gives its slot back.
    let last = clients.pop().unwrap();
    last.close().await;
    let deadline = Instant::now() + STEP;
    let client = loop {
        match HubClient::connect(&node.hub_url(), direct()).await {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("the closed WebSocket's slot was not released: {e}"),
        }
    };
    echo_works(&client, "back in").await;
    node.shutdown().await;
}
