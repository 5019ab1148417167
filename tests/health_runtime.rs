//! Health through the dashboard's real runtime: a test-owned redis-server, raw Redis clients that
//! misbehave (a server that listens only on its ack channel, a subscriber that never reads, a
//! publisher under another prefix, SignalR 2 ids with a gap and a regression), a real node where
//! heartbeats are needed, and the runtime's events folded into the dashboard's `Model` exactly as
//! the UI does; the findings are read from `Model::refresh_health`. The pure rules have their own
//! unit tests (`monitor::model::health`); this checks that the runtime's Redis figures reach them.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::dashboard::Dashboard;
use common::redis::{RedisServer, redis_cmd, resp_command, value_text};
use common::{start_node, unique_prefix, within};
use switchboard::hub::BackplaneChoice;
use switchboard::monitor::model::health::{Severity, Verdict};
use switchboard::monitor::{MonitorCommand, NodeTarget, now_ms};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long a finding may take to appear: a census walk and a health round (2 s each), a node's
/// heartbeat (2 s), the Redis view's poll (5 s).
const WAIT: Duration = Duration::from_secs(30);

/// A raw Redis connection that sends commands and never reads a reply (so its replies and
/// messages pile up in Redis's output buffer for it).
async fn raw_client(port: u16, commands: &[&[&str]], receive_buffer: Option<u32>) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = within("raw client connect", socket.connect(addr)).await.unwrap();
    for command in commands {
        within("raw client write", stream.write_all(&resp_command(command)))
            .await
            .unwrap();
    }
    stream
}

/// `omem` of the pub/sub client named `name`, or `None` when Redis no longer lists it.
async fn omem_of(url: &str, name: &str) -> Option<u64> {
    let list = value_text(
        &redis_cmd(url, &["CLIENT", "LIST", "TYPE", "pubsub"])
            .await
            .unwrap(),
    );
    list.lines()
        .find(|l| l.contains(&format!(" name={name} ")))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("omem=")))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_subscribed_only_for_acks_is_found_deaf_by_the_dashboard() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    // A real node: it subscribes :all, :internal:groups and its ack channel, and heartbeats.
    let node = start_node("node-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let hub = switchboard::config::DEFAULT_HUB_NAME;
    // A server that lost its :all subscription: only its ack channel is left.
    let ack = format!("{prefix}{hub}:internal:ack:deaf_1");
    let _deaf = raw_client(redis.port(), &[&["SUBSCRIBE", &ack]], None).await;
    let mut dash = Dashboard::start(&redis.url(), &prefix, WAIT);
    let target = NodeTarget {
        hub_url: node.hub_url(),
        monitor_url: Some(format!("{}/switchboard/stats", node.base_url())),
    };
    // As the UI does with a node added by hand: a row first, then the runtime watches it.
    dash.model.nodes.upsert(target.clone());
    assert!(dash.handle.command(MonitorCommand::AddNode(target)));
    let deaf = dash
        .finding("a deaf-server finding", |f| f.rule == "deaf-server")
        .await;
    assert_eq!(deaf.severity, Severity::Warning, "{deaf:?}");
    assert_eq!(deaf.hub.as_deref(), Some(hub));
    assert!(
        deaf.evidence
            .contains(&format!("NUMSUB {prefix}{hub}:all = 1, ack channels = 2")),
        "{deaf:?}"
    );
    // Named once the real node's heartbeat and stats are in: it is the one without a heartbeat.
    let named = dash
        .finding("the deaf server named", |f| {
            f.rule == "deaf-server" && f.subject.as_deref() == Some("deaf_1")
        })
        .await;
    assert!(named.summary.contains("miss every broadcast"), "{named:?}");
    // The servers line shows the NUMSUB figures the runtime asked.
    let servers = dash
        .finding("the servers line", |f| {
            f.rule == "servers" && f.severity == Severity::Info
        })
        .await;
    assert!(
        servers.evidence[0].contains("NUMSUB :all 1, NUMSUB :internal:groups 1"),
        "{servers:?}"
    );
    // The real node has no finding against it: the badge would show nothing.
    let evaluation = dash.model.health.latest.clone().unwrap();
    assert_eq!(evaluation.worst_for(&[node.server_name()]), None);
    assert_eq!(evaluation.worst_for(&["deaf_1"]), Some(Severity::Warning));
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_a_warning_before_redis_cuts_it() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    redis_cmd(
        &url,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 256kb 128kb 60",
        ],
    )
    .await
    .unwrap();
    let prefix = unique_prefix();
    // A channel outside the prefix, so the dashboard's own tap does not read the load.
    let channel = "slow-test-channel";
    let _slow = raw_client(
        redis.port(),
        &[&["CLIENT", "SETNAME", "slow-subscriber"], &["SUBSCRIBE", channel]],
        Some(4096),
    )
    .await;
    within("the subscriber is listed", async {
        while omem_of(&url, "slow-subscriber").await.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Publish until its output buffer holds 64-100 KiB: past half of the 128 KiB soft limit, short
    // of the 4/5 that would be critical (the socket buffers fill first, then Redis queues).
    let payload = "x".repeat(8 * 1024);
    let mut published = 0;
    let omem = within("filling the output buffer", async {
        loop {
            redis_cmd(&url, &["PUBLISH", channel, &payload]).await.unwrap();
            published += 1;
            let omem = omem_of(&url, "slow-subscriber").await.expect("still connected");
            if omem >= 66 * 1024 {
                return omem;
            }
            assert!(
                published < 5000,
                "omem stays at {omem} after {published} publishes"
            );
        }
    })
    .await;
    assert!(omem < 100 * 1024, "overshot: omem {omem}");
    let mut dash = Dashboard::start(&url, &prefix, WAIT);
    let warning = dash
        .finding("an output-buffer warning", |f| {
            f.rule == "output-buffer" && f.severity >= Severity::Warning
        })
        .await;
    assert_eq!(warning.severity, Severity::Warning, "{warning:?}");
    assert!(
        warning
            .subject
            .as_deref()
            .is_some_and(|s| s.contains("slow-subscriber")),
        "{warning:?}"
    );
    assert!(
        warning.evidence[0].contains("client-output-buffer-limit pubsub 262144 131072 60"),
        "{warning:?}"
    );
    // Seen before Redis cut it: the subscriber is still connected.
    assert!(omem_of(&url, "slow-subscriber").await.is_some());
    // The output buffer is held against no other client: only one finding of the kind.
    let evaluation = dash.model.health.latest.clone().unwrap();
    let buffers = evaluation
        .findings
        .iter()
        .filter(|f| f.rule == "output-buffer")
        .count();
    assert_eq!(buffers, 1, "{:#?}", evaluation.findings);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_under_another_prefix_is_a_foreign_channel_finding() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let prefix = unique_prefix();
    let mut dash = Dashboard::start(&url, &prefix, WAIT);
    let foreign = format!("other-{prefix}ChatHub:all");
    // Published until the tap (connected a moment after the start) has seen one.
    let publisher = {
        let url = url.clone();
        let foreign = foreign.clone();
        tokio::spawn(async move {
            for _ in 0..100 {
                redis_cmd(&url, &["PUBLISH", &foreign, "hello"]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let finding = dash
        .finding("a foreign-channel finding", |f| f.rule == "foreign-channel")
        .await;
    publisher.abort();
    assert_eq!(finding.severity, Severity::Warning, "{finding:?}");
    assert!(
        finding.summary.contains(&format!("\"other-{prefix}ChatHub\"")),
        "{finding:?}"
    );
    assert!(finding.evidence[0].contains(&foreign), "{finding:?}");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_client_list_permission_the_check_is_skipped_and_named() {
    let redis = RedisServer::start().await;
    redis_cmd(
        &redis.url(),
        &[
            "ACL",
            "SETUSER",
            "watcher",
            "on",
            ">secret",
            "~*",
            "&*",
            "+@all",
            "-client|list",
        ],
    )
    .await
    .unwrap();
    let url = format!("redis://watcher:secret@127.0.0.1:{}", redis.port());
    let prefix = unique_prefix();
    let mut dash = Dashboard::start(&url, &prefix, WAIT);
    let skipped = dash
        .wait_for("CLIENT LIST skipped", |e| {
            e.skipped.iter().find(|s| s.contains("CLIENT LIST (ACL")).cloned()
        })
        .await;
    assert_eq!(skipped, "skipped: CLIENT LIST (ACL: grant +client|list)");
    let finding = dash
        .finding("the output-buffer rule saying so", |f| f.rule == "output-buffer")
        .await;
    assert_eq!(finding.severity, Severity::Info, "{finding:?}");
    assert_eq!(finding.evidence, vec![skipped]);
    dash.stop().await;
}

/// A SignalR 2 payload with message id `id` (the vector's, renumbered).
fn sr2_payload(id: u64) -> Vec<u8> {
    let vector = common::vectors::get("sr2.redis.hub_broadcast").bytes();
    let body = &vector[vector.iter().position(|&b| b == b' ').unwrap()..];
    let mut out = id.to_string().into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalr2_ids_give_the_missed_count_a_regression_and_the_counter_total() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let key = "SignalRChat";
    // An empty prefix: the tap subscribes every channel, the event key among them.
    let mut dash = Dashboard::start(&url, "", WAIT);
    let started = now_ms();
    within("the tap connected", async {
        while dash.model.tap.state != switchboard::monitor::LinkState::Connected {
            if let Some(events) = dash.rx.recv().await {
                for event in events {
                    dash.model.apply(event, now_ms());
                }
            }
        }
    })
    .await;
    assert!(now_ms() - started < 10_000);
    redis_cmd(&url, &["SET", key, "44"]).await.unwrap();
    for id in [40u64, 41, 44] {
        common::redis::publish(&url, key, &sr2_payload(id)).await;
    }
    let gap = dash.finding("an sr2 gap", |f| f.rule == "sr2-gap").await;
    assert!(gap.summary.contains("missed 2 SignalR 2 message(s)"), "{gap:?}");
    assert_eq!(gap.evidence, vec!["41→44: 2 missed".to_string()]);
    let total = dash
        .finding("the counter's total", |f| f.rule == "sr2-total")
        .await;
    assert!(
        total
            .summary
            .starts_with("44 message(s) published on \"SignalRChat\""),
        "{total:?}"
    );
    // The counter is reset (a Redis restart without persistence) and ids start again.
    redis_cmd(&url, &["SET", key, "1"]).await.unwrap();
    common::redis::publish(&url, key, &sr2_payload(1)).await;
    let regression = dash
        .finding("an id regression", |f| {
            f.rule == "sr2-regression" && f.summary.contains("from 44 to 1")
        })
        .await;
    assert_eq!(regression.severity, Severity::Critical);
    dash.stop().await;
}

/// Redis is killed for `window`, then restarted on the same port, under two real nodes and the
/// dashboard's tap: one `outage` finding names Redis with its start and end, as info once it is
/// over, and the verdict is healthy again; with the outage memory shortened to nothing (the
/// model's ageing is unit-tested with time passed in) the finding is gone.
async fn a_redis_outage_becomes_a_timed_info_finding(window: Duration) {
    let mut redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let nodes = [
        start_node("node-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await,
        start_node("node-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await,
    ];
    let mut dash = Dashboard::start(&redis.url(), &prefix, WAIT);
    for node in &nodes {
        let target = NodeTarget {
            hub_url: node.hub_url(),
            monitor_url: Some(format!("{}/switchboard/stats", node.base_url())),
        };
        dash.model.nodes.upsert(target.clone());
        assert!(dash.handle.command(MonitorCommand::AddNode(target)));
    }
    dash.wait_model("both nodes live and the tap connected", |m| {
        m.nodes.live_count(now_ms()) == 2
            && m.tap.state == switchboard::monitor::LinkState::Connected
            && m.nodes.rows().iter().all(|r| {
                r.stats
                    .as_ref()
                    .is_some_and(|s| s.backplane.status.state == "connected")
            })
    })
    .await;
    redis.kill();
    // The positive marker that the outage is seen by all three before the window runs.
    dash.wait_for("Redis unreachable and both backplanes down", |e| {
        let down = e.findings.iter().filter(|f| f.rule == "backplane-down").count();
        (e.findings.iter().any(|f| f.rule == "redis-unreachable") && down == 2).then_some(())
    })
    .await;
    dash.fold_for(window).await;
    redis.restart().await;
    let outage = dash
        .wait_for("an outage finding, over, and a healthy verdict", |e| {
            let f = e.findings.iter().find(|f| f.rule == "outage")?;
            (e.verdict == Verdict::Healthy).then(|| f.clone())
        })
        .await;
    assert_eq!(outage.severity, Severity::Info, "{outage:?}");
    assert_eq!(outage.subject.as_deref(), Some("Redis"), "{outage:?}");
    let s = &outage.summary;
    assert!(s.starts_with("Redis was unreachable "), "{s}");
    eprintln!("the outage finding: {}", outage.line());
    assert!(s.ends_with("): both nodes and the tap lost it"), "{s}");
    // HH:MM:SS–HH:MM:SS and a length no shorter than the window.
    let times = &s["Redis was unreachable ".len()..];
    assert_eq!(times.as_bytes()[2], b':', "{s}");
    assert!(times[8..].starts_with('–'), "{s}");
    let secs: u64 = s
        .split_once(" UTC (")
        .and_then(|(_, rest)| rest.split_once(" s)"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("a length in seconds: {s}"));
    assert!(secs + 1 >= window.as_secs(), "{s}");
    assert!(
        outage.evidence.iter().any(|e| e.starts_with("the tap down ")),
        "{outage:?}"
    );
    // Aged out: gone, still healthy.
    dash.model.outage_memory = Duration::ZERO;
    dash.wait_for("the outage aged out", |e| {
        (e.findings.iter().all(|f| f.rule != "outage") && e.verdict == Verdict::Healthy).then_some(())
    })
    .await;
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_second_redis_outage_is_named_with_its_times_and_then_over() {
    a_redis_outage_becomes_a_timed_info_finding(Duration::from_secs(5)).await;
}
