//! The dashboard's runtime keeps its secrets (the monitor token and the node token) for the nodes
//! the operator named or trusts, against real parts: a test-owned redis-server on which the test
//! PUBLISHes forged heartbeats, the monitor runtime the dashboard runs (started through its library
//! API), and plain TCP listeners the test owns that record every request the probes make.
//!
//! - a node known only from a forged heartbeat is probed (requests arrive: the positive marker)
//!   without `Authorization` and without the token bytes; after the Trust command the next
//!   requests carry both tokens; a node named with AddNode gets them from the start; a node
//!   matching the trust rules gets them too;
//! - 70 forged heartbeats: 64 untrusted nodes kept, 6 counted; heartbeats with `javascript:`,
//!   `file:` or `http://u:p@…` URLs are ignored and counted, never announced.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::events::Seen;
use common::listener::{NOT_FOUND, Recorder, header, request_line};
use common::redis::{RedisServer, publish};
use common::unique_prefix;
use switchboard::monitor::model::trust::TrustRules;
use switchboard::monitor::{
    Announcement, DiscoveryCounts, LinkState, MonitorCommand, MonitorEvent, MonitorHandle, MonitorOptions,
    NodeEvent, NodeTarget, TapSource,
};
use switchboard::monitor_token::MonitorToken;
use switchboard::node_token::NodeCredentials;

const WAIT: Duration = Duration::from_secs(30);
const MONITOR_TOKEN: &str = "m0nitor-SECRET-token";
const NODE_TOKEN: &str = "n0de-SECRET-token";

/// The discovery counts the runtime reported last.
fn latest_counts(seen: &Seen) -> DiscoveryCounts {
    seen.events
        .iter()
        .rev()
        .find_map(|e| match e {
            MonitorEvent::Discovery(c) => Some(*c),
            _ => None,
        })
        .unwrap_or_default()
}

fn redis_spec(url: &str) -> Box<switchboard::redis_conn::RedisSpec> {
    Box::new(switchboard::redis_conn::RedisSpec::parse(url, &Default::default()).unwrap())
}

/// A monitor with both tokens, tapping `redis` under `prefix`, once its tap is connected.
async fn monitor(redis: &RedisServer, prefix: &str, rules: TrustRules) -> (MonitorHandle, Seen) {
    let options = MonitorOptions {
        node_credentials: NodeCredentials::from_token(NODE_TOKEN).unwrap(),
        trust_rules: rules,
        ..MonitorOptions::default()
    };
    let (handle, rx) = MonitorHandle::start_with(options);
    let mut seen = Seen::new(rx, WAIT);
    assert!(handle.command(MonitorCommand::SetMonitorToken(Some(
        MonitorToken::new(MONITOR_TOKEN).unwrap()
    ))));
    assert!(handle.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: redis_spec(&redis.url()),
        prefix: prefix.to_string(),
    }))));
    seen.find("the tap connected", |e| match e {
        MonitorEvent::Tap {
            state: LinkState::Connected,
            ..
        } => Some(()),
        _ => None,
    })
    .await;
    (handle, seen)
}

fn heartbeat(hub_url: &str, url: &str, monitor_url: &str) -> Vec<u8> {
    serde_json::to_vec(&Announcement {
        kind: "switchboard.node".to_string(),
        server_name: "forged_1".to_string(),
        node_name: "forged".to_string(),
        url: url.to_string(),
        hub_url: hub_url.to_string(),
        monitor_url: monitor_url.to_string(),
        hub: "ChatHub".to_string(),
        connections: 0,
        version: "x".to_string(),
        ts_ms: 1,
    })
    .unwrap()
}

/// A forged heartbeat for a listener: hub `{base}{path}`, monitor endpoints at `{base}`.
fn forged(base: &str, path: &str) -> Vec<u8> {
    heartbeat(
        &format!("{base}{path}"),
        base,
        &format!("{}/switchboard/monitor", base.replace("http://", "ws://")),
    )
}

/// Publishes `payload` until `until` finds what it waits for (a heartbeat published before the
/// tap's subscription took effect would be lost; nodes repeat theirs every 2 s too).
async fn publish_until<T>(
    redis: &RedisServer,
    channel: &str,
    payloads: &[Vec<u8>],
    seen: &mut Seen,
    what: &str,
    mut until: impl FnMut(&[MonitorEvent]) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for p in payloads {
            publish(&redis.url(), channel, p).await;
        }
        let round = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            if let Some(v) = until(&seen.events) {
                return v;
            }
            match tokio::time::timeout_at(round, seen.rx.recv()).await {
                Ok(Some(batch)) => seen.events.extend(batch),
                Ok(None) => panic!("the runtime stopped while waiting for {what}"),
                Err(_) => break,
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within {WAIT:?}"
        );
    }
}

fn carries_secrets(head: &str) -> bool {
    header(head, "authorization").is_some() || head.contains(MONITOR_TOKEN) || head.contains(NODE_TOKEN)
}

fn is_negotiate(head: &str) -> bool {
    request_line(head).starts_with("POST /chat/negotiate")
}

fn is_monitor(head: &str) -> bool {
    request_line(head).starts_with("GET /switchboard/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_heartbeat_gets_no_token_until_the_node_is_trusted() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let channel = format!("{prefix}switchboard:nodes");
    let mut forged_node = Recorder::start(NOT_FOUND).await;
    let mut named_node = Recorder::start(NOT_FOUND).await;
    let mut ruled_node = Recorder::start(NOT_FOUND).await;
    let rules = TrustRules::new([format!("http://127.0.0.1:{}/*", ruled_node.port)]);
    let (monitor, mut seen) = monitor(&redis, &prefix, rules).await;

    // Discovered only through a forged heartbeat.
    let hub_url = format!("{}/chat", forged_node.base());
    let payload = forged(&forged_node.base(), "/chat");
    publish_until(
        &redis,
        &channel,
        &[payload],
        &mut seen,
        "the forged node announced",
        |events| {
            events
                .iter()
                .any(|e| matches!(e, MonitorEvent::Announced(a) if a.hub_url == hub_url))
                .then_some(())
        },
    )
    .await;
    let trusted = seen
        .find("the forged node's trust", |e| match e {
            MonitorEvent::Node {
                hub_url: h,
                event: NodeEvent::Trusted(t),
            } if *h == hub_url => Some(*t),
            _ => None,
        })
        .await;
    assert!(!trusted, "a node known only from a heartbeat is not trusted");
    // Positive markers: the probe did come, for the hub and for the monitor endpoints.
    forged_node
        .wait_for(0, WAIT, "a negotiate from the probe", is_negotiate)
        .await;
    forged_node
        .wait_for(0, WAIT, "a monitor request from the probe", is_monitor)
        .await;
    forged_node.drain();
    let before_trust = forged_node.seen.len();
    for head in &forged_node.seen {
        assert!(
            !carries_secrets(head),
            "a secret went to a node known only from a heartbeat:\n{head}"
        );
    }
    assert_eq!(latest_counts(&seen).untrusted, 1);

    // One click later (the Trust command), the next requests carry the tokens.
    assert!(monitor.command(MonitorCommand::TrustNode(NodeTarget {
        hub_url: hub_url.clone(),
        monitor_url: Some(format!("{}/switchboard/stats", forged_node.base())),
    })));
    forged_node
        .wait_for(before_trust, WAIT, "the node token on negotiate", |h| {
            is_negotiate(h) && header(h, "authorization") == Some(&format!("Bearer {NODE_TOKEN}"))
        })
        .await;
    forged_node
        .wait_for(
            before_trust,
            WAIT,
            "the monitor token on a monitor request",
            |h| is_monitor(h) && header(h, "authorization") == Some(&format!("Bearer {MONITOR_TOKEN}")),
        )
        .await;
    seen.find("the trusted node's trust", |e| match e {
        MonitorEvent::Node {
            hub_url: h,
            event: NodeEvent::Trusted(true),
        } if *h == hub_url => Some(()),
        _ => None,
    })
    .await;

    // A named node gets the tokens from its first request on.
    assert!(monitor.command(MonitorCommand::AddNode(NodeTarget {
        hub_url: format!("{}/chat", named_node.base()),
        monitor_url: Some(format!("{}/switchboard/stats", named_node.base())),
    })));
    let first_negotiate = named_node
        .wait_for(0, WAIT, "a negotiate at the named node", is_negotiate)
        .await;
    assert_eq!(
        header(&named_node.seen[first_negotiate], "authorization"),
        Some(format!("Bearer {NODE_TOKEN}").as_str())
    );
    let first_monitor = named_node
        .wait_for(0, WAIT, "a monitor request at the named node", is_monitor)
        .await;
    assert_eq!(
        header(&named_node.seen[first_monitor], "authorization"),
        Some(format!("Bearer {MONITOR_TOKEN}").as_str())
    );

    // A discovered node whose URL matches --trust-nodes gets them too.
    let payload = forged(&ruled_node.base(), "/chat");
    let ruled_hub = format!("{}/chat", ruled_node.base());
    publish_until(
        &redis,
        &channel,
        &[payload],
        &mut seen,
        "the ruled node announced",
        |events| {
            events
                .iter()
                .any(|e| matches!(e, MonitorEvent::Announced(a) if a.hub_url == ruled_hub))
                .then_some(())
        },
    )
    .await;
    let first = ruled_node
        .wait_for(0, WAIT, "a negotiate at the ruled node", is_negotiate)
        .await;
    assert_eq!(
        header(&ruled_node.seen[first], "authorization"),
        Some(format!("Bearer {NODE_TOKEN}").as_str())
    );
    monitor.shutdown();
    within_stop(&monitor).await;
}

async fn within_stop(monitor: &MonitorHandle) {
    common::within("the monitor stops", monitor.stopped()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_nodes_are_capped_and_bad_heartbeats_ignored() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let channel = format!("{prefix}switchboard:nodes");
    let mut sink = Recorder::start(NOT_FOUND).await;
    let (monitor, mut seen) = monitor(&redis, &prefix, TrustRules::default()).await;
    let cap = switchboard::config::DEFAULT_MAX_DISCOVERED_NODES;
    assert_eq!(cap, 64);

    let payloads: Vec<Vec<u8>> = (0..70)
        .map(|i| forged(&sink.base(), &format!("/chat{i}")))
        .collect();
    let counts = publish_until(
        &redis,
        &channel,
        &payloads,
        &mut seen,
        "64 kept and 6 counted",
        |events| {
            events.iter().rev().find_map(|e| match e {
                MonitorEvent::Discovery(c) if c.untrusted == cap && c.over_cap == 6 => Some(*c),
                _ => None,
            })
        },
    )
    .await;
    assert_eq!(counts.ignored_heartbeats, 0);
    let announced: BTreeSet<String> = seen
        .events
        .iter()
        .filter_map(|e| match e {
            MonitorEvent::Announced(a) => Some(a.hub_url.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(announced.len(), cap, "only the kept nodes reach the UI");

    let bad = [
        heartbeat("javascript:alert(1)", &sink.base(), ""),
        heartbeat(&format!("{}/chat-x", sink.base()), "file:///etc/passwd", ""),
        heartbeat(
            &format!("http://u:p@127.0.0.1:{}/chat-y", sink.port),
            &format!("http://u:p@127.0.0.1:{}", sink.port),
            "",
        ),
    ];
    let counts = publish_until(
        &redis,
        &channel,
        &bad,
        &mut seen,
        "3 heartbeats ignored",
        |events| {
            events.iter().rev().find_map(|e| match e {
                MonitorEvent::Discovery(c) if c.ignored_heartbeats >= 3 => Some(*c),
                _ => None,
            })
        },
    )
    .await;
    assert_eq!(counts.untrusted, cap);
    assert_eq!(
        counts.over_cap, 6,
        "the same nodes heartbeating again are not counted twice"
    );
    seen.drain();
    for e in &seen.events {
        if let MonitorEvent::Announced(a) = e {
            assert!(
                !a.hub_url.contains("javascript")
                    && !a.hub_url.contains("chat-x")
                    && !a.hub_url.contains("u:p@"),
                "an ignored heartbeat reached the UI: {a:?}"
            );
        }
    }
    sink.drain();
    assert!(
        !sink
            .seen
            .iter()
            .any(|h| request_line(h).contains("chat-x") || request_line(h).contains("chat-y")),
        "an ignored heartbeat was probed"
    );
    monitor.shutdown();
    within_stop(&monitor).await;
}

/// The demo's in-process bus: only the demo's own nodes can heartbeat there, so they are trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_the_in_process_bus_are_trusted() {
    let bus = switchboard::backplane::memory::MemoryBus::new();
    let prefix = unique_prefix();
    let node = common::start_node(
        "mem-a",
        switchboard::hub::BackplaneChoice::Memory(bus.clone()),
        &prefix,
    )
    .await;
    let (monitor, rx) = MonitorHandle::start_with(MonitorOptions::default());
    let mut seen = Seen::new(rx, WAIT);
    assert!(monitor.command(MonitorCommand::SetTap(Some(TapSource::Memory {
        bus,
        prefix: prefix.clone(),
    }))));
    let hub = node.hub_url();
    let trusted = seen
        .find("the demo node's trust", |e| match e {
            MonitorEvent::Node {
                hub_url,
                event: NodeEvent::Trusted(t),
            } if *hub_url == hub => Some(*t),
            _ => None,
        })
        .await;
    assert!(trusted);
    monitor.shutdown();
    within_stop(&monitor).await;
    node.shutdown().await;
}
