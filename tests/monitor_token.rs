//! Who may look at a node's monitor endpoints (`/switchboard/*`, `/metrics`), against real parts:
//!
//! - a real `switchboard hub` process with a monitor token (from SWITCHBOARD_MONITOR_TOKEN):
//!   401 with a one-line reason without it or with a wrong one, 200 with it, for `/metrics`,
//!   `/switchboard/stats`, `/switchboard/connections` and the monitor WebSocket; the chat endpoints
//!   are untouched; the token never appears in its output, even at debug level;
//! - a node on all interfaces without a token: a loopback client is answered; a client through a
//!   proxy header, and a client whose address is not loopback, get 403 naming --monitor-token.
//!   The second needs a non-loopback address of this machine: the test connects to the machine's
//!   own address (the kernel carries that over its loopback device, nothing leaves the host), so
//!   the node sees a non-loopback peer. On a machine with no such address that part says so;
//! - the dashboard's runtime: with the token its monitor link gets stats; without it the node's
//!   state says why (the node's reason and the dashboard flag).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{STEP, within};
use switchboard::client::{ClientError, ClientOptions, HubClient, connect_raw_ws, connect_raw_ws_with, http};
use switchboard::hub::{BackplaneChoice, NodeConfig};
use switchboard::monitor::{LinkState, MonitorCommand, MonitorEvent, MonitorHandle, NodeEvent, NodeTarget};
use switchboard::monitor_token::MonitorToken;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const TOKEN: &str = "s3cret-t0ken_for-tests";

async fn get_with(url: &str, headers: &[(&str, &str)]) -> http::HttpResponse {
    within(
        &format!("GET {url}"),
        http::request_with_headers("GET", url, headers, b""),
    )
    .await
    .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The one-line reason of a refusal.
fn one_line(response: &http::HttpResponse) -> String {
    let text = response.text();
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
    text.trim_end().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_process_with_a_token_answers_401_without_it_and_200_with_it() {
    let mut child = Command::new(BIN)
        .args(["hub", "--listen", "127.0.0.1:0", "--name", "guarded"])
        .env_remove("REDIS_URL")
        .env("SWITCHBOARD_MONITOR_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let line = within(
        "startup line",
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            stdout.read_line(&mut line).map(|_| (line, stdout))
        }),
    )
    .await
    .unwrap()
    .unwrap();
    let (line, mut stdout) = line;
    let hub_url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/chat"))
        .unwrap_or_else(|| panic!("no hub URL in {line:?}"))
        .to_string();
    let base = hub_url.trim_end_matches("/chat").to_string();

    let good = format!("Bearer {TOKEN}");
    for path in [
        "/metrics",
        "/switchboard/stats",
        "/switchboard/connections?limit=5",
    ] {
        let url = format!("{base}{path}");
        let none = get_with(&url, &[]).await;
        assert_eq!(none.status, 401, "{path} without a token");
        assert!(
            one_line(&none).contains("--monitor-token"),
            "{path}: {}",
            none.text()
        );
        assert_eq!(
            none.header("www-authenticate"),
            Some("Bearer realm=\"switchboard-monitor\"")
        );
        let wrong = get_with(&url, &[("Authorization", "Bearer not-the-token")]).await;
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        assert!(one_line(&wrong).contains("does not match"), "{}", wrong.text());
        let basic = get_with(&url, &[("Authorization", &format!("Basic {TOKEN}"))]).await;
        assert_eq!(basic.status, 401, "{path}: only the Bearer scheme counts");
        let ok = get_with(&url, &[("Authorization", &good)]).await;
        assert_eq!(ok.status, 200, "{path} with the token: {}", ok.text());
    }
    let stats = get_with(&format!("{base}/switchboard/stats"), &[("Authorization", &good)]).await;
    assert_eq!(stats.json::<serde_json::Value>().unwrap()["node_name"], "guarded");

    // The monitor WebSocket: refused without, pushes a snapshot with.
    match connect_raw_ws(&format!("{base}/switchboard/monitor")).await {
        Err(ClientError::UpgradeRejected { status: 401, .. }) => {}
        other => panic!(
            "expected a 401 upgrade refusal, got {:?}",
            other.map(|_| "a socket")
        ),
    }
    let mut ws = within(
        "monitor WebSocket with the token",
        connect_raw_ws_with(
            &format!("{base}/switchboard/monitor"),
            None,
            &[("Authorization", &good)],
        ),
    )
    .await
    .unwrap();
    use futures_util::StreamExt;
    let first = within("first snapshot", ws.next()).await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("\"node_name\":\"guarded\""));
    drop(ws);

    // The chat side does not need the token.
    let page = get_with(&format!("{base}/"), &[]).await;
    assert_eq!(page.status, 200);
    let client = within(
        "chat client",
        HubClient::connect(&hub_url, ClientOptions::default()),
    )
    .await
    .unwrap();
    client.close().await;

    // Stop it and read everything it wrote: the token is nowhere, even at debug level.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = child.stderr.take().unwrap();
    let output = within(
        "the hub exits and its output ends",
        tokio::task::spawn_blocking(move || {
            let mut out = line;
            stdout.read_to_string(&mut out).unwrap();
            stderr.read_to_string(&mut out).unwrap();
            let exit = child.wait().unwrap();
            (out, exit)
        }),
    )
    .await
    .unwrap();
    let (output, exit) = output;
    assert!(exit.success(), "{exit:?}");
    assert!(
        output.contains("monitor request refused"),
        "debug logs on: {output}"
    );
    assert!(
        !output.contains(TOKEN),
        "the token leaked into the output:\n{output}"
    );
}

#[test]
fn a_bad_token_is_refused_at_start_without_repeating_it() {
    let out = Command::new(BIN)
        .args([
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--monitor-token",
            "two words-SECRETPART",
        ])
        .env_remove("SWITCHBOARD_MONITOR_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("visible ASCII"), "{stderr}");
    assert!(!stderr.contains("SECRETPART"), "{stderr}");
}

/// A non-loopback address of this machine, if it has one (no packet is sent: connecting a UDP
/// socket only picks the route).
fn own_non_loopback_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_loopback_clients_are_answered() {
    let mut config = NodeConfig::new("open-node");
    config.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    config.channel_prefix = common::unique_prefix();
    let node = common::start_node_with(config, BackplaneChoice::Alone).await;
    let port = node.local_addr().port();
    let local = format!("http://127.0.0.1:{port}");
    for path in ["/metrics", "/switchboard/stats", "/switchboard/connections"] {
        assert_eq!(
            get_with(&format!("{local}{path}"), &[]).await.status,
            200,
            "{path}"
        );
        let proxied = get_with(&format!("{local}{path}"), &[("X-Forwarded-For", "203.0.113.5")]).await;
        assert_eq!(proxied.status, 403, "{path} through a proxy");
        assert!(
            one_line(&proxied).contains("--monitor-token"),
            "{}",
            proxied.text()
        );
        let forwarded = get_with(&format!("{local}{path}"), &[("Forwarded", "for=203.0.113.5")]).await;
        assert_eq!(forwarded.status, 403, "{path} with Forwarded");
    }
    match own_non_loopback_ip() {
        Some(ip) => {
            let remote = format!("http://{}/metrics", SocketAddr::new(ip, port));
            let refused = get_with(&remote, &[]).await;
            assert_eq!(refused.status, 403, "GET {remote}");
            assert!(
                one_line(&refused).contains("loopback clients only"),
                "{}",
                refused.text()
            );
            // A token sent to a node that has none opens nothing.
            let with = get_with(&remote, &[("Authorization", "Bearer anything")]).await;
            assert_eq!(with.status, 403);
            // The chat side is for everyone.
            assert_eq!(
                get_with(&format!("http://{}/", SocketAddr::new(ip, port)), &[])
                    .await
                    .status,
                200
            );
        }
        None => eprintln!("no non-loopback address on this machine: the remote-peer part did not run"),
    }
    node.shutdown().await;

    // With a token, a remote client that sends it is answered.
    let mut config = NodeConfig::new("guarded-node");
    config.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    config.monitor_token = Some(MonitorToken::new(TOKEN).unwrap());
    let node = common::start_node_with(config, BackplaneChoice::Alone).await;
    let port = node.local_addr().port();
    if let Some(ip) = own_non_loopback_ip() {
        let remote = format!("http://{}/switchboard/stats", SocketAddr::new(ip, port));
        assert_eq!(get_with(&remote, &[]).await.status, 401);
        let ok = get_with(&remote, &[("Authorization", &format!("Bearer {TOKEN}"))]).await;
        assert_eq!(ok.status, 200);
    }
    let local = format!("http://127.0.0.1:{port}/metrics");
    assert_eq!(
        get_with(&local, &[]).await.status,
        401,
        "with a token, loopback must send it too"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_runtime_sends_its_token_and_says_why_without_it() {
    let mut config = NodeConfig::new("watched");
    config.channel_prefix = common::unique_prefix();
    config.monitor_token = Some(MonitorToken::new(TOKEN).unwrap());
    let node = common::start_node_with(config, BackplaneChoice::Alone).await;
    let target = NodeTarget {
        hub_url: node.hub_url(),
        monitor_url: Some(format!("{}/switchboard/stats", node.base_url())),
    };

    // Without a token: the node's state names the refusal and the dashboard flag.
    let (monitor, mut events) = MonitorHandle::start();
    assert!(monitor.command(MonitorCommand::AddNode(target.clone())));
    let error = wait_for(&mut events, "a refused monitor link", |e| match e {
        NodeEvent::State(LinkState::Reconnecting { error, .. }) if error.contains("HTTP 401") => {
            Some(error.clone())
        }
        _ => None,
    })
    .await;
    assert!(error.contains("--monitor-token"), "{error}");
    assert!(!error.contains(TOKEN));

    // The token arrives: the probes restart with it and stats flow.
    assert!(monitor.command(MonitorCommand::SetMonitorToken(Some(
        MonitorToken::new(TOKEN).unwrap()
    ))));
    wait_for(&mut events, "stats with the token", |e| match e {
        NodeEvent::Stats(stats) if stats.node_name == "watched" => Some(()),
        _ => None,
    })
    .await;
    wait_for(&mut events, "an RTT sample (a GET with the token)", |e| match e {
        NodeEvent::Rtt(_) => Some(()),
        _ => None,
    })
    .await;
    monitor.shutdown();
    within("monitor shutdown", monitor.stopped()).await;
    node.shutdown().await;
}

async fn wait_for<T>(
    events: &mut switchboard::monitor::runtime::MonitorEvents,
    what: &str,
    f: impl Fn(&NodeEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + STEP + Duration::from_secs(10);
    loop {
        let batch = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(batch)) => batch,
            Ok(None) => panic!("the runtime stopped while waiting for {what}"),
            Err(_) => panic!("no {what} in time"),
        };
        for event in batch {
            if let MonitorEvent::Node { event, .. } = event
                && let Some(v) = f(&event)
            {
                return v;
            }
        }
    }
}
