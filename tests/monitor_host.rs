//! A node's monitor endpoints without a monitor token answer only requests whose `Host` names
//! loopback (a DNS-rebinding page sends its own domain as `Host`), and they never carry CORS
//! answers, even with `--cors-origin '*'`, while the hub's negotiate still does. Against a real
//! node on 127.0.0.1, with raw HTTP/1.1 requests so the test chooses the `Host` header.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::within;
use switchboard::client::http::{HttpResponse, request_with_headers};
use switchboard::hub::{BackplaneChoice, Node, NodeConfig};

/// `GET path` on 127.0.0.1:port with this `Host`; (status, headers lowercased, body).
async fn get_with_host(port: u16, path: &str, host: &str) -> (u16, String, String) {
    within(&format!("GET {path} with Host {host}"), async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    })
    .await
}

async fn call(method: &str, url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    within(url, request_with_headers(method, url, headers, b""))
        .await
        .expect("response")
}

fn port_of(node: &switchboard::hub::NodeHandle) -> u16 {
    node.base_url().rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn without_a_token_only_a_loopback_host_is_answered() {
    let node = Node::start(NodeConfig::new("n"), BackplaneChoice::Alone)
        .await
        .unwrap();
    let port = port_of(&node);
    for path in ["/switchboard/stats", "/switchboard/connections", "/metrics"] {
        // Positive markers first: loopback names are answered.
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("LOCALHOST:{port}"),
            "127.0.0.1".to_string(),
        ] {
            let (status, _, body) = get_with_host(port, path, &host).await;
            assert_eq!(status, 200, "{path} with Host {host}: {body}");
        }
        for host in [
            "evil.example",
            "evil.example:80",
            "localhost.evil.example",
            "10.0.0.1",
        ] {
            let (status, _, body) = get_with_host(port, path, host).await;
            assert_eq!(status, 403, "{path} with Host {host}: {body}");
            assert_eq!(body.trim_end().lines().count(), 1, "one line: {body:?}");
            assert!(body.contains("Host"), "{body}");
            assert!(body.contains("--monitor-token"), "{body}");
        }
    }
    // The hub itself is not a monitor endpoint: any Host may negotiate.
    let (status, _, _) = get_with_host(port, "/", "evil.example").await;
    assert_eq!(status, 200, "the chat page is not guarded");
    node.shutdown().await;
}

#[tokio::test]
async fn with_a_token_the_host_does_not_matter() {
    let mut config = NodeConfig::new("n");
    config.monitor_token = Some(switchboard::monitor_token::MonitorToken::new("h0st-t0ken").unwrap());
    let node = Node::start(config, BackplaneChoice::Alone).await.unwrap();
    let port = port_of(&node);
    let answer = within("stats with the token and a foreign Host", async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = "GET /switchboard/stats HTTP/1.1\r\nHost: dashboard.example\r\nAuthorization: Bearer h0st-t0ken\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        String::from_utf8_lossy(&raw).into_owned()
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    node.shutdown().await;
}

#[tokio::test]
async fn cors_never_applies_to_monitor_endpoints() {
    let mut config = NodeConfig::new("n");
    config.cors_origins = vec!["*".to_string()];
    let node = Node::start(config, BackplaneChoice::Alone).await.unwrap();
    let evil = [("Origin", "http://evil.example")];

    // Positive marker: the hub's negotiate does answer the origin.
    let negotiate = format!("{}/negotiate?negotiateVersion=1", node.hub_url());
    let post = call("POST", &negotiate, &evil).await;
    assert_eq!(post.status, 200);
    assert_eq!(
        post.header("access-control-allow-origin"),
        Some("http://evil.example")
    );
    let preflight = call(
        "OPTIONS",
        &negotiate,
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://evil.example")
    );

    for path in ["/switchboard/stats", "/switchboard/connections", "/metrics"] {
        let url = format!("{}{path}", node.base_url());
        let get = call("GET", &url, &evil).await;
        assert_eq!(get.status, 200, "{path}: loopback Host, no token: answered");
        assert_eq!(get.header("access-control-allow-origin"), None, "{path}");
        assert_eq!(get.header("access-control-allow-credentials"), None, "{path}");
        let preflight = call(
            "OPTIONS",
            &url,
            &[
                ("Origin", "http://evil.example"),
                ("Access-Control-Request-Method", "GET"),
            ],
        )
        .await;
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            None,
            "{path} preflight"
        );
        assert_ne!(preflight.status, 204, "{path}: no preflight answer");
    }
    node.shutdown().await;
}
