//! Browser clients on another origin (a front-end dev server, say) can negotiate when the node
//! allows that origin, with the credentialed CORS answers the official JavaScript client needs;
//! other origins get no CORS headers, and a node allows none by default. The monitor endpoints
//! (`/switchboard/*`, `/metrics`) never get CORS answers (see `tests/monitor_host.rs`).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use switchboard::client::http::{HttpResponse, request_with_headers};
use switchboard::hub::{BackplaneChoice, Node, NodeConfig};

const DEV: &str = "http://localhost:3000";

async fn call(method: &str, url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    common::within(url, request_with_headers(method, url, headers, b""))
        .await
        .expect("response")
}

#[tokio::test]
async fn allowed_origins_get_credentialed_cors_answers() {
    let mut config = NodeConfig::new("n");
    config.cors_origins = vec![DEV.to_string()];
    let node = Node::start(config, BackplaneChoice::Alone).await.unwrap();
    let negotiate = format!("{}/negotiate?negotiateVersion=1", node.hub_url());

    let preflight = call(
        "OPTIONS",
        &negotiate,
        &[
            ("Origin", DEV),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "x-requested-with,x-signalr-user-agent",
            ),
        ],
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(DEV));
    assert_eq!(preflight.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("x-requested-with,x-signalr-user-agent")
    );
    assert!(
        preflight
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );

    let post = call("POST", &negotiate, &[("Origin", DEV)]).await;
    assert_eq!(post.status, 200);
    assert_eq!(post.header("access-control-allow-origin"), Some(DEV));
    assert!(post.text().contains("connectionToken"));

    // The monitor endpoints are never readable cross-origin, whatever the node allows.
    let stats = call(
        "GET",
        &format!("{}/switchboard/stats", node.base_url()),
        &[("Origin", DEV)],
    )
    .await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.header("access-control-allow-origin"), None);

    let evil = call("POST", &negotiate, &[("Origin", "http://evil.example")]).await;
    assert_eq!(
        evil.status, 200,
        "CORS is the browser's check; the server just does not allow it"
    );
    assert_eq!(evil.header("access-control-allow-origin"), None);
    let evil_preflight = call("OPTIONS", &negotiate, &[("Origin", "http://evil.example")]).await;
    assert_eq!(evil_preflight.status, 405);
    node.shutdown().await;
}

#[tokio::test]
async fn no_origin_is_allowed_by_default() {
    let node = Node::start(NodeConfig::new("n"), BackplaneChoice::Alone)
        .await
        .unwrap();
    let negotiate = format!("{}/negotiate?negotiateVersion=1", node.hub_url());
    let post = call("POST", &negotiate, &[("Origin", DEV)]).await;
    assert_eq!(post.status, 200);
    assert_eq!(post.header("access-control-allow-origin"), None);
    node.shutdown().await;
}
