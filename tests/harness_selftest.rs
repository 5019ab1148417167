//! Tests of the test harness itself (tests/common), needing no hub node: the test-owned Redis
//! server (start, PING, kill, restart, password), the PSUBSCRIBE tap, PUBSUB introspection, the
//! plain HTTP helper against a canned local server, and the deadline helpers.

mod common;

use std::time::Duration;

use common::redis::{RedisServer, Tap, channels, numsub, publish, redis_cmd};
use common::{STEP, unique_prefix, within, within_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn redis_server_starts_and_answers_ping() {
    let server = RedisServer::start().await;
    assert!(server.url().starts_with("redis://127.0.0.1:"));
    let reply = redis_cmd(&server.url(), &["PING"]).await.expect("PING");
    assert_eq!(reply, redis::Value::SimpleString("PONG".to_string()));
}

#[tokio::test]
async fn tap_sees_publishes_on_matching_channels_only() {
    let server = RedisServer::start().await;
    let prefix = unique_prefix();
    let mut tap = Tap::start(&server.url(), &format!("{prefix}*")).await;

    assert_eq!(publish(&server.url(), "elsewhere:x", b"not for the tap").await, 0);
    assert_eq!(publish(&server.url(), &format!("{prefix}a"), b"first").await, 1);
    assert_eq!(
        publish(&server.url(), &format!("{prefix}b"), b"\x00\xffbinary").await,
        1
    );

    // Found out of order: the earlier message stays available to a later call.
    let (channel, payload) = tap
        .wait_for(|channel, _| channel.ends_with('b'), STEP)
        .await
        .expect("the tap sees the second publish");
    assert_eq!(channel, format!("{prefix}b"));
    assert_eq!(&payload[..], b"\x00\xffbinary");
    let (channel, payload) = tap
        .wait_for(|_, payload| payload == b"first", STEP)
        .await
        .expect("the tap sees the first publish");
    assert_eq!(
        (channel.as_str(), &payload[..]),
        (format!("{prefix}a").as_str(), &b"first"[..])
    );

    // Each message is returned once; nothing from other channels: the next one is a marker
    // published after them.
    publish(&server.url(), &format!("{prefix}marker"), b"marker").await;
    let (channel, _) = tap
        .wait_for(|_, _| true, STEP)
        .await
        .expect("the tap sees the marker");
    assert_eq!(channel, format!("{prefix}marker"));
    assert_eq!(tap.seen().len(), 3);
}

#[tokio::test]
async fn tap_counts_what_came_before_a_marker() {
    let server = RedisServer::start().await;
    let prefix = unique_prefix();
    let mut tap = Tap::start(&server.url(), &format!("{prefix}*")).await;
    for payload in [&b"one"[..], b"other", b"two", b"marker", b"three"] {
        publish(&server.url(), &format!("{prefix}x"), payload).await;
    }
    let counted = tap
        .count_before_marker(|_, p| p == b"marker", |_, p| p != b"other", STEP)
        .await;
    assert_eq!(counted, 2, "one and two; three came after the marker");
}

#[tokio::test]
async fn a_marker_proves_nothing_came_before_it() {
    let node = common::start_node(
        "selftest-marker",
        switchboard::hub::BackplaneChoice::Alone,
        &unique_prefix(),
    )
    .await;
    let mut quiet = common::connect(&node, switchboard::protocol::Protocol::Json, None).await;
    common::expect_nothing_before_own(&mut quiet, "first").await;
    let other = common::connect(&node, switchboard::protocol::Protocol::Json, None).await;
    common::expect_nothing_before(&mut quiet, &other, "second").await;

    // Something that did arrive first fails the check, naming what came.
    quiet
        .invoke("SendMessage", switchboard::client::str_args(&["me", "to all"]))
        .await
        .expect("SendMessage");
    let check = tokio::spawn(async move {
        common::expect_nothing_before_own(&mut quiet, "third").await;
    });
    let panic = check.await.expect_err("the check fails").into_panic();
    let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("expected nothing before the marker"), "{text}");
    assert!(text.contains("to all"), "{text}");
    node.shutdown().await;
}

#[test]
fn free_port_is_bindable() {
    let port = common::free_port();
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the free port binds");
}

#[test]
fn resp_command_is_the_crates_encoder() {
    assert_eq!(
        common::redis::resp_command(&["SET", "k", "é"]),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n".to_vec()
    );
}

#[tokio::test]
async fn pubsub_introspection_counts_subscribers() {
    let server = RedisServer::start().await;
    let prefix = unique_prefix();
    let channel = format!("{prefix}room");
    assert_eq!(numsub(&server.url(), &channel).await, 0);

    let client = redis::Client::open(server.url()).expect("redis url");
    let mut pubsub = within("opening a pubsub connection", client.get_async_pubsub())
        .await
        .expect("pubsub connection");
    within("subscribing", pubsub.subscribe(&channel))
        .await
        .expect("SUBSCRIBE");

    assert_eq!(numsub(&server.url(), &channel).await, 1);
    assert_eq!(
        channels(&server.url(), &format!("{prefix}*")).await,
        vec![channel.clone()]
    );
    drop(pubsub);
}

#[tokio::test]
async fn kill_makes_connects_fail_and_restart_serves_the_same_port_again() {
    let mut server = RedisServer::start().await;
    let port = server.port();
    assert!(server.is_running());

    server.kill();
    assert!(!server.is_running());
    let refused = within(
        "connecting to a killed redis",
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await;
    assert!(refused.is_err(), "a killed redis-server must refuse connections");

    server.restart().await;
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    let reply = redis_cmd(&server.url(), &["PING"])
        .await
        .expect("PING after restart");
    assert_eq!(reply, redis::Value::SimpleString("PONG".to_string()));
}

#[tokio::test]
async fn password_server_rejects_unauthenticated_commands() {
    let server = RedisServer::start_with_password("s3cret-pw").await;
    assert_eq!(
        server.url_with_password(),
        format!("redis://:s3cret-pw@127.0.0.1:{}", server.port())
    );

    let error = redis_cmd(&server.url(), &["PING"])
        .await
        .expect_err("PING without AUTH must fail");
    assert_eq!(error.code(), Some("NOAUTH"), "unexpected error: {error}");

    let reply = redis_cmd(&server.url_with_password(), &["PING"])
        .await
        .expect("authenticated PING");
    assert_eq!(reply, redis::Value::SimpleString("PONG".to_string()));
}

/// Serves one canned HTTP response and returns the request it received.
async fn serve_once(response: &'static [u8]) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        // Response in two writes so the reader has to keep reading.
        let (a, b) = response.split_at(response.len() / 2);
        stream.write_all(a).await.expect("write");
        tokio::time::sleep(Duration::from_millis(20)).await;
        stream.write_all(b).await.expect("write");
        String::from_utf8_lossy(&request).into_owned()
    });
    (url, task)
}

#[tokio::test]
async fn http_helper_sends_a_closing_request_and_reads_chunked_responses() {
    let (url, server) = serve_once(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
          7\r\n{\"a\":[1\r\n4\r\n,2]}\r\n0\r\n\r\n",
    )
    .await;
    let response = common::http::post(&format!("{url}/chat/negotiate?negotiateVersion=1"), b"").await;
    let request = within("the canned server", server).await.expect("server task");

    assert!(
        request.starts_with("POST /chat/negotiate?negotiateVersion=1 HTTP/1.1\r\n"),
        "request line: {request}"
    );
    let lower = request.to_ascii_lowercase();
    assert!(lower.contains("\r\ncontent-length: 0\r\n"), "{request}");
    assert!(lower.contains("\r\nconnection: close\r\n"), "{request}");
    assert!(lower.contains("\r\nhost: 127.0.0.1:"), "{request}");

    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.json::<serde_json::Value>().expect("json"),
        serde_json::json!({"a": [1, 2]})
    );
}

#[tokio::test]
async fn http_helper_returns_error_statuses_as_responses() {
    let (url, server) = serve_once(
        b"HTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\nContent-Length: 18\r\n\r\nMethod Not Allowed",
    )
    .await;
    let response = common::http::get(&format!("{url}/chat/negotiate")).await;
    let request = within("the canned server", server).await.expect("server task");
    assert!(
        request.starts_with("GET /chat/negotiate HTTP/1.1\r\n"),
        "{request}"
    );
    assert_eq!(response.status, 405);
    assert_eq!(response.header("Allow"), Some("POST"));
    assert_eq!(response.text(), "Method Not Allowed");
}

#[tokio::test]
async fn within_returns_the_value_in_time() {
    assert_eq!(within("an immediate value", async { 7 }).await, 7);
}

#[tokio::test]
#[should_panic(expected = "timed out after 50ms: a future that never ends")]
async fn within_panics_with_its_label() {
    within_for(
        "a future that never ends",
        Duration::from_millis(50),
        std::future::pending::<()>(),
    )
    .await;
}

#[test]
fn unique_prefixes_differ() {
    let a = unique_prefix();
    let b = unique_prefix();
    assert_ne!(a, b);
    assert!(a.starts_with(&format!("t{}_", std::process::id())) && a.ends_with('_'));
}

// The oracle's response parser (tests/common/http.rs).

#[test]
fn parses_content_length_response() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n{}extra";
    let r = common::http::parse_response(raw, false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.body, b"{}");
    assert_eq!(r.text(), "{}");
}

#[test]
fn parses_chunked_response_with_extensions_and_trailers() {
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                4;x=y\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
    let r = common::http::parse_response(raw, false).unwrap();
    assert_eq!(r.text(), "Wikipedia in\r\n\r\nchunks.");
}

#[test]
fn reads_to_eof_without_length_and_skips_interim_responses() {
    let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\n\r\nno";
    let r = common::http::parse_response(raw, false).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (405, &b"no"[..]));
    assert_eq!(r.header("allow"), Some("POST"));
}

#[test]
fn rejects_malformed_responses() {
    assert!(common::http::parse_response(b"HTTP/1.1 200 OK\r\n", false).is_err());
    assert!(common::http::parse_response(b"SSH-2.0-x\r\n\r\n", false).is_err());
    assert!(common::http::parse_response(b"HTTP/1.1 abc OK\r\n\r\n", false).is_err());
    assert!(common::http::parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", false).is_err());
    assert!(
        common::http::parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
            false
        )
        .is_err()
    );
    assert!(
        common::http::parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            false
        )
        .is_err()
    );
    let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab";
    assert!(common::http::parse_response(huge, false).is_err());
}

#[test]
fn head_and_no_content_have_no_body() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert!(common::http::parse_response(raw, true).unwrap().body.is_empty());
    let raw = b"HTTP/1.1 204 No Content\r\n\r\n";
    assert!(common::http::parse_response(raw, false).unwrap().body.is_empty());
}
