//! The dashboard's runtime against real parts: a test-owned redis-server, real nodes on it with a
//! unique prefix, real clients. The tap decodes cross-node traffic, the probes follow client
//! counts and traced test messages, the tap survives a Redis restart, bad targets give readable
//! errors, and heartbeats alone are enough to find the nodes. Explain, folded from the same
//! events: a group nobody is in reads "0 subscribers", a local SendToConnection "never touches
//! Redis".
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{connect, s, start_node, unique_prefix, within};
use switchboard::hub::{BackplaneChoice, NodeHandle};
use switchboard::monitor::model::{EntryKind, Limits, Model};
use switchboard::monitor::runtime::MonitorEvents;
use switchboard::monitor::{
    LinkState, MonitorCommand, MonitorEvent, MonitorHandle, NodeEvent, NodeTarget, SendBody, SendRequest,
    SendTarget, TapSource,
};
use switchboard::protocol::Protocol;

/// How long one expected event may take (heartbeats every 2 s, reconnect backoff up to 5 s).
const WAIT: Duration = Duration::from_secs(20);

/// Every event the runtime emitted so far, and a way to wait for one.
struct Seen {
    rx: MonitorEvents,
    events: Vec<MonitorEvent>,
}

impl Seen {
    /// The index and value of the first event at or after `from` for which `f` says Some.
    async fn find<T>(
        &mut self,
        from: usize,
        what: &str,
        mut f: impl FnMut(&MonitorEvent) -> Option<T>,
    ) -> (usize, T) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut index = from;
        loop {
            while index < self.events.len() {
                if let Some(v) = f(&self.events[index]) {
                    return (index, v);
                }
                index += 1;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(batch)) => self.events.extend(batch),
                Ok(None) => panic!("the runtime stopped while waiting for {what}"),
                Err(_) => panic!("no {what} within {WAIT:?}; last events: {:#?}", self.tail()),
            }
        }
    }

    fn tail(&self) -> &[MonitorEvent] {
        &self.events[self.events.len().saturating_sub(15)..]
    }

    async fn tap_state(&mut self, from: usize, what: &str, f: impl Fn(&LinkState) -> bool) -> usize {
        self.find(from, what, |e| match e {
            MonitorEvent::Tap { state, .. } if f(state) => Some(()),
            _ => None,
        })
        .await
        .0
    }

    async fn node_event<T>(
        &mut self,
        from: usize,
        hub: &str,
        what: &str,
        f: impl Fn(&NodeEvent) -> Option<T>,
    ) -> (usize, T) {
        self.find(from, what, |e| match e {
            MonitorEvent::Node { hub_url, event } if hub_url == hub => f(event),
            _ => None,
        })
        .await
    }

    /// Waits for every node in `hubs` to report its probe received trace `trace`.
    async fn probes_received(&mut self, from: usize, hubs: &[String], trace: u64, what: &str) {
        for hub in hubs {
            self.node_event(from, hub, what, |e| match e {
                NodeEvent::ProbeReceived { trace: t, .. } if *t == trace => Some(()),
                _ => None,
            })
            .await;
        }
    }
}

fn start() -> (MonitorHandle, Seen) {
    let (handle, rx) = MonitorHandle::start();
    (
        handle,
        Seen {
            rx,
            events: Vec::new(),
        },
    )
}

fn target(node: &switchboard::hub::NodeHandle) -> NodeTarget {
    NodeTarget {
        hub_url: node.hub_url(),
        monitor_url: Some(format!("{}/switchboard/stats", node.base_url())),
    }
}

/// A Redis, two nodes on it (node-a, node-b) under a fresh prefix, and a monitor tapping Redis and
/// watching both, once its tap is connected.
async fn two_nodes_watched() -> (RedisServer, String, NodeHandle, NodeHandle, MonitorHandle, Seen) {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("node-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("node-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let (monitor, mut seen) = start();
    assert!(monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: redis_spec(&redis.url()),
        prefix: prefix.clone()
    }))));
    assert!(monitor.command(MonitorCommand::AddNode(target(&a))));
    assert!(monitor.command(MonitorCommand::AddNode(target(&b))));
    seen.tap_state(0, "tap connected", |s| *s == LinkState::Connected)
        .await;
    (redis, prefix, a, b, monitor, seen)
}

async fn stop(handle: MonitorHandle) {
    handle.shutdown();
    within("monitor shutdown", handle.stopped()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_decodes_traffic_probes_follow_counts_and_traces() {
    let (_redis, _prefix, a, b, monitor, mut seen) = two_nodes_watched().await;

    // (1) Cross-node traffic, decoded.
    let ann = connect(&a, Protocol::Json, Some("ann")).await;
    let _bob = connect(&b, Protocol::Json, Some("bob")).await;
    within(
        "SendMessage",
        ann.invoke("SendMessage", vec![s("ann"), s("hello across")]),
    )
    .await
    .unwrap();
    let (_, entry) = seen
        .find(0, "a decoded broadcast", |e| match e {
            MonitorEvent::Traffic(entries) => entries
                .iter()
                .find(|x| x.args.as_deref().is_some_and(|a| a.contains("hello across")))
                .cloned(),
            _ => None,
        })
        .await;
    assert_eq!(entry.kind, EntryKind::All, "{entry:?}");
    assert_eq!(entry.method.as_deref(), Some("ReceiveMessage"));
    assert!(
        entry.args.as_deref().is_some_and(|a| a.contains("ann")),
        "{entry:?}"
    );

    // (2) Client counts: each node has one client plus the dashboard's probe.
    for node in [&a, &b] {
        seen.node_event(0, &node.hub_url(), "stats with 2 connections", |e| match e {
            NodeEvent::Stats(s) if s.connections.total == 2 => Some(()),
            _ => None,
        })
        .await;
    }
    let census_has = |n: u64| {
        move |e: &MonitorEvent| match e {
            MonitorEvent::Census { hubs, .. }
                if hubs.iter().any(|h| h.connections == n && h.servers.len() == 2) =>
            {
                Some(())
            }
            _ => None,
        }
    };
    let (mark, _) = seen
        .find(0, "a census of 4 connections on 2 servers", census_has(4))
        .await;
    let carl = connect(&b, Protocol::MessagePack, Some("carl")).await;
    let (mark, _) = seen
        .node_event(mark, &b.hub_url(), "stats with 3 connections", |e| match e {
            NodeEvent::Stats(s) if s.connections.total == 3 => Some(()),
            _ => None,
        })
        .await;
    seen.find(mark, "a census of 5 connections", census_has(5)).await;
    within("closing carl", carl.close()).await;
    seen.node_event(mark, &b.hub_url(), "stats back to 2 connections", |e| match e {
        NodeEvent::Stats(s) if s.connections.total == 2 => Some(()),
        _ => None,
    })
    .await;
    let (mark, _) = seen.find(mark, "a census back to 4", census_has(4)).await;

    // (3) A traced test message through node A reaches the tap and both probes.
    for node in [&a, &b] {
        seen.node_event(0, &node.hub_url(), "probe connected", |e| {
            matches!(e, NodeEvent::ProbeConnected { .. }).then_some(())
        })
        .await;
        seen.node_event(0, &node.hub_url(), "node link connected", |e| {
            (*e == NodeEvent::State(LinkState::Connected)).then_some(())
        })
        .await;
    }
    assert!(monitor.command(MonitorCommand::Send(SendRequest {
        node: a.hub_url(),
        target: SendTarget::All,
        body: SendBody::Chat {
            user: "dashboard".into(),
            text: "trace me".into()
        },
        count: 1,
        rate_per_sec: 1.0,
        probes_join: true,
    })));
    let (_, (trace, expected)) = seen
        .find(mark, "Sent", |e| match e {
            MonitorEvent::Sent { trace, expected, .. } => Some((*trace, expected.clone())),
            MonitorEvent::SendFailed { error, .. } => panic!("send failed: {error}"),
            _ => None,
        })
        .await;
    let mut want = vec![a.hub_url(), b.hub_url()];
    want.sort();
    assert_eq!(expected, want);
    seen.find(mark, "the traced tap entry", |e| match e {
        MonitorEvent::Traffic(entries) => entries.iter().any(|x| x.trace == Some(trace)).then_some(()),
        _ => None,
    })
    .await;
    seen.probes_received(
        mark,
        &[a.hub_url(), b.hub_url()],
        trace,
        "the probe receiving the trace",
    )
    .await;

    // A group send: the probes join first, so both receive it; a bad custom send is refused.
    assert!(monitor.command(MonitorCommand::Send(SendRequest {
        node: b.hub_url(),
        target: SendTarget::Group("probes".into()),
        body: SendBody::Chat {
            user: "dashboard".into(),
            text: "to the group".into()
        },
        count: 3,
        rate_per_sec: 50.0,
        probes_join: true,
    })));
    let (_, group_trace) = seen
        .find(mark, "a group Sent", |e| match e {
            MonitorEvent::Sent {
                trace,
                target: SendTarget::Group(_),
                ..
            } => Some(*trace),
            _ => None,
        })
        .await;
    seen.probes_received(
        mark,
        &[a.hub_url(), b.hub_url()],
        group_trace,
        "a probe receiving the group trace",
    )
    .await;
    assert!(monitor.command(MonitorCommand::Send(SendRequest {
        node: a.hub_url(),
        target: SendTarget::All,
        body: SendBody::Custom {
            method: "NoSuchMethod".into(),
            args_json: "[\"{trace}\"]".into()
        },
        count: 1,
        rate_per_sec: 1.0,
        probes_join: true,
    })));
    let (_, error) = seen
        .find(mark, "SendFailed for an unknown method", |e| match e {
            MonitorEvent::SendFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .await;
    assert!(error.contains("Unknown hub method"), "{error}");
    assert_eq!(monitor.dropped_events(), 0);
    stop(monitor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_reconnects_after_a_redis_restart() {
    let mut redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("node-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let (monitor, mut seen) = start();
    monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: redis_spec(&redis.url()),
        prefix: prefix.clone(),
    })));
    let connected = seen
        .tap_state(0, "tap connected", |s| *s == LinkState::Connected)
        .await;

    redis.kill();
    let down = seen
        .tap_state(connected, "tap reconnecting", |s| {
            matches!(s, LinkState::Reconnecting { .. })
        })
        .await;
    within("redis restart", redis.restart()).await;
    let up = seen
        .tap_state(down, "tap connected again", |s| *s == LinkState::Connected)
        .await;
    // Traffic after the restart is seen again (the node's heartbeat, once its own link is back).
    seen.find(up, "traffic after the restart", |e| match e {
        MonitorEvent::Traffic(entries) => entries
            .iter()
            .any(|x| x.kind == EntryKind::Heartbeat)
            .then_some(()),
        _ => None,
    })
    .await;

    // Folded into the dashboard's model, the outage is a gap marker between the traffic before
    // and after it, and the traffic after it is there.
    let mut model = Model::new(Limits::default());
    for event in seen.events.clone() {
        model.apply(event, switchboard::monitor::now_ms());
    }
    let gaps: Vec<_> = model
        .traffic
        .iter()
        .filter(|e| e.kind == EntryKind::Gap)
        .collect();
    assert_eq!(gaps.len(), 1, "one outage, one gap marker");
    let (from, to) = gaps[0].gap.unwrap();
    assert!(
        from < to && gaps[0].summary.starts_with("no data "),
        "{:?}",
        gaps[0]
    );
    let gap_seq = gaps[0].seq;
    assert!(
        model
            .traffic
            .iter()
            .any(|e| e.seq > gap_seq && e.kind == EntryKind::Heartbeat),
        "the tap resumed after the gap"
    );
    drop(a);
    stop(monitor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_give_readable_errors() {
    let redis = RedisServer::start_with_password("s3cret-pw").await;
    let (monitor, mut seen) = start();

    // A wrong password.
    let url = format!("redis://:wrong-pw@127.0.0.1:{}", redis.port());
    monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: redis_spec(&url),
        prefix: String::new(),
    })));
    let (mark, error) = seen
        .find(0, "an auth error", |e| match e {
            MonitorEvent::Tap {
                state: LinkState::Reconnecting { error, .. },
                ..
            } => Some(error.clone()),
            _ => None,
        })
        .await;
    assert!(error.contains("authentication failed"), "{error}");
    assert!(!error.contains("wrong-pw"), "{error}");
    // No password at all: PSUBSCRIBE itself is refused.
    monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: redis_spec(&redis.url()),
        prefix: String::new(),
    })));
    // The previous tap's last refusal may still arrive after the switch: wait for the new one.
    let (mark, error) = seen
        .find(mark + 1, "a NOAUTH error", |e| match e {
            MonitorEvent::Tap {
                state: LinkState::Reconnecting { error, .. },
                ..
            } if !error.contains("wrong user or password") => Some(error.clone()),
            _ => None,
        })
        .await;
    assert!(error.contains("authentication required"), "{error}");

    // Unreachable Redis (a port nobody listens on).
    let closed = common::free_port();
    monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: redis_spec(&format!("redis://127.0.0.1:{closed}")),
        prefix: String::new(),
    })));
    let (_, error) = seen
        .find(mark + 1, "a refused error", |e| match e {
            MonitorEvent::Tap {
                state: LinkState::Reconnecting { error, .. },
                ..
            } => Some(error.clone()),
            _ => None,
        })
        .await;
    assert!(error.to_lowercase().contains("refused"), "{error}");

    // A malformed URL does not replace the running tap: refused (counted), and the UI's check
    // says why in plain words, without echoing the password.
    let refused = monitor.dropped_commands();
    let before = seen.events.len();
    // A spec whose CA file cannot be read: the connector refuses it before the tap is touched.
    let unreadable = switchboard::redis_conn::RedisSpec::parse(
        "rediss://:pw123@x",
        &switchboard::redis_conn::RedisOptions {
            tls: switchboard::tls::ClientTls {
                ca: Some("/nonexistent/ca.pem".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: Box::new(unreadable),
        prefix: String::new(),
    })));
    within("the refusal is counted", async {
        while monitor.dropped_commands() == refused {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Positive marker: the running tap reports its next retry after the refusal was counted.
    while let Some(batch) = seen.rx.try_recv() {
        seen.events.extend(batch);
    }
    let counted_at = seen.events.len();
    seen.find(counted_at, "the running tap's next retry", |e| match e {
        MonitorEvent::Tap {
            state: LinkState::Reconnecting { .. },
            ..
        } => Some(()),
        _ => None,
    })
    .await;
    assert!(
        !seen.events[before..].iter().any(|e| matches!(
            e,
            MonitorEvent::Tap {
                state: LinkState::Idle | LinkState::Failed { .. },
                ..
            }
        )),
        "the running tap was not replaced: {:#?}",
        &seen.events[before..]
    );
    let error = switchboard::redis_conn::RedisSpec::parse("nonsense://:pw123@x", &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("unknown scheme")
            && !error.contains("pw123")
            && !error.contains("InvalidClientConfig"),
        "{error}"
    );
    let mark = seen.events.len().saturating_sub(1);

    // A node URL that is not a hub (a real node, wrong path) and a closed port.
    let node = start_node("node-x", BackplaneChoice::Alone, "").await;
    let wrong = format!("{}/nothing", node.base_url());
    monitor.command(MonitorCommand::AddNode(NodeTarget {
        hub_url: wrong.clone(),
        monitor_url: Some(format!("{wrong}/stats")),
    }));
    let (_, error) = seen
        .node_event(mark, &wrong, "a not-a-hub error", |e| match e {
            NodeEvent::State(LinkState::Reconnecting { error, .. }) => Some(error.clone()),
            _ => None,
        })
        .await;
    assert!(error.contains("HTTP 404"), "{error}");
    let refused = format!("http://127.0.0.1:{closed}/chat");
    monitor.command(MonitorCommand::AddNode(NodeTarget {
        hub_url: refused.clone(),
        monitor_url: None,
    }));
    let (_, error) = seen
        .node_event(mark, &refused, "a refused node error", |e| match e {
            NodeEvent::State(LinkState::Reconnecting { error, .. }) => Some(error.clone()),
            _ => None,
        })
        .await;
    assert!(error.to_lowercase().contains("refused"), "{error}");
    stop(monitor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_alone_find_the_nodes() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("node-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("node-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let (monitor, mut seen) = start();
    monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: redis_spec(&redis.url()),
        prefix: prefix.clone(),
    })));
    for node in [&a, &b] {
        seen.find(0, "an announcement", |e| match e {
            MonitorEvent::Announced(x) if x.hub_url == node.hub_url() => Some(()),
            _ => None,
        })
        .await;
        seen.node_event(0, &node.hub_url(), "stats of a discovered node", |e| match e {
            NodeEvent::Stats(s) if s.server_name == node.server_name() => Some(()),
            _ => None,
        })
        .await;
    }
    // A removed node stays removed although it keeps announcing itself.
    monitor.command(MonitorCommand::RemoveNode(a.hub_url()));
    let (mark, _) = seen
        .node_event(0, &a.hub_url(), "node a idle", |e| {
            (*e == NodeEvent::State(LinkState::Idle)).then_some(())
        })
        .await;
    let (first, _) = seen
        .find(mark, "another announcement of a", |e| match e {
            MonitorEvent::Announced(x) if x.hub_url == a.hub_url() => Some(()),
            _ => None,
        })
        .await;
    // A heartbeat later (2 s): had the first announcement brought the node back, its probe would
    // have reported (Connecting, at once) before this one.
    let (second, _) = seen
        .find(first + 1, "a second announcement of a", |e| match e {
            MonitorEvent::Announced(x) if x.hub_url == a.hub_url() => Some(()),
            _ => None,
        })
        .await;
    assert!(
        !seen.events[mark + 1..second]
            .iter()
            .any(|e| matches!(e, MonitorEvent::Node { hub_url, .. } if *hub_url == a.hub_url())),
        "a removed node came back"
    );
    stop(monitor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tap_decodes_signalr2_traffic_on_an_event_key_channel() {
    let redis = RedisServer::start().await;
    let (monitor, mut seen) = start();
    // An empty prefix: the tap subscribes every channel, the SignalR 2 event key among them.
    monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: redis_spec(&redis.url()),
        prefix: String::new(),
    })));
    seen.tap_state(0, "tap connected", |s| *s == LinkState::Connected)
        .await;
    let vector = common::vectors::get("sr2.redis.hub_broadcast");
    common::redis::publish(&redis.url(), "SignalRChat", &vector.bytes()).await;
    let (_, entry) = seen
        .find(0, "the SignalR 2 message, decoded", |e| match e {
            MonitorEvent::Traffic(entries) => entries.iter().find(|x| x.channel == "SignalRChat").cloned(),
            _ => None,
        })
        .await;
    assert_eq!(entry.kind, EntryKind::Sr2, "{entry:?}");
    assert_eq!(entry.error, None, "{entry:?}");
    assert!(
        entry.hub.is_some() && entry.method.is_some(),
        "hub and method decoded: {entry:?}"
    );
    stop(monitor).await;
}

/// Waits for the `TraceLookup` of `trace`.
async fn lookup_of(seen: &mut Seen, from: usize, trace: u64) -> switchboard::monitor::TraceLookup {
    seen.find(from, "the trace lookup", |e| match e {
        MonitorEvent::TraceLookup { trace: t, lookup } if *t == trace => Some(lookup.clone()),
        _ => None,
    })
    .await
    .1
}

/// Sends one chat message through `node` to `target` and returns its trace id and expected nodes.
async fn send_one(
    monitor: &MonitorHandle,
    seen: &mut Seen,
    from: usize,
    node: &str,
    target: SendTarget,
) -> (usize, u64, Vec<String>) {
    send_joining(monitor, seen, from, node, target, true).await
}

/// [`send_one`], saying whether the probes join a target group first.
async fn send_joining(
    monitor: &MonitorHandle,
    seen: &mut Seen,
    from: usize,
    node: &str,
    target: SendTarget,
    probes_join: bool,
) -> (usize, u64, Vec<String>) {
    assert!(monitor.command(MonitorCommand::Send(SendRequest {
        node: node.to_string(),
        target: target.clone(),
        body: SendBody::Chat {
            user: "dashboard".into(),
            text: "where does it go".into()
        },
        count: 1,
        rate_per_sec: 1.0,
        probes_join,
    })));
    let (at, (trace, expected)) = seen
        .find(from, "Sent", |e| match e {
            MonitorEvent::Sent {
                trace,
                target: t,
                expected,
                ..
            } if *t == target => Some((*trace, expected.clone())),
            MonitorEvent::SendFailed { error, .. } => panic!("send failed: {error}"),
            _ => None,
        })
        .await;
    (at, trace, expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_connection_sends_to_real_clients_name_the_node_and_are_never_failed() {
    use switchboard::monitor::model::traces::TraceStatus;
    use switchboard::monitor::probe::PROBE_USER;

    let (_redis, prefix, a, b, monitor, mut seen) = two_nodes_watched().await;
    for node in [&a, &b] {
        seen.node_event(0, &node.hub_url(), "probe connected", |e| {
            matches!(e, NodeEvent::ProbeConnected { .. }).then_some(())
        })
        .await;
    }
    // A simulated chat user on node B: not a probe, so its receipt cannot be seen.
    let mut ann = connect(&b, Protocol::Json, Some("ann")).await;
    let ann_id = ann.connection_id().expect("negotiated id").to_string();
    let hub = switchboard::config::DEFAULT_HUB_NAME;

    // (1) A user send through node A.
    let (mark, user_trace, expected) = send_one(
        &monitor,
        &mut seen,
        0,
        &a.hub_url(),
        SendTarget::User("ann".into()),
    )
    .await;
    assert!(expected.is_empty(), "no probe can receive it: {expected:?}");
    let lookup = lookup_of(&mut seen, mark, user_trace).await;
    assert_eq!(lookup.holders, vec![b.hub_url()], "{lookup:?}");
    assert_eq!(
        lookup.channel.as_deref(),
        Some(format!("{prefix}{hub}:user:ann").as_str())
    );
    assert_eq!(
        lookup.subscribers,
        Some(1),
        "node B subscribes to ann's channel: {lookup:?}"
    );
    seen.find(mark, "the user trace on the tap", |e| match e {
        MonitorEvent::Traffic(entries) => entries.iter().any(|x| x.trace == Some(user_trace)).then_some(()),
        _ => None,
    })
    .await;
    match within("ann receives it", ann.recv()).await {
        Some(switchboard::client::ClientEvent::Invocation { .. }) => {}
        other => panic!("ann got {other:?}"),
    }

    // (2) A connection send (after the lookup limit of one a second).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (mark, conn_trace, expected) = send_one(
        &monitor,
        &mut seen,
        mark,
        &a.hub_url(),
        SendTarget::Connection(ann_id.clone()),
    )
    .await;
    assert!(expected.is_empty(), "{expected:?}");
    let lookup = lookup_of(&mut seen, mark, conn_trace).await;
    assert_eq!(lookup.holders, vec![b.hub_url()], "{lookup:?}");
    assert_eq!(
        lookup.channel.as_deref(),
        Some(format!("{prefix}{hub}:connection:{ann_id}").as_str())
    );
    assert_eq!(lookup.subscribers, Some(1), "{lookup:?}");
    seen.find(mark, "the connection trace on the tap", |e| match e {
        MonitorEvent::Traffic(entries) => entries.iter().any(|x| x.trace == Some(conn_trace)).then_some(()),
        _ => None,
    })
    .await;

    // (3) The probes' own user: followed to every node, delivered.
    let (mark, probe_trace, expected) = send_one(
        &monitor,
        &mut seen,
        mark,
        &a.hub_url(),
        SendTarget::User(PROBE_USER.into()),
    )
    .await;
    let mut want = vec![a.hub_url(), b.hub_url()];
    want.sort();
    assert_eq!(expected, want);
    seen.probes_received(mark, &want, probe_trace, "the probe user trace")
        .await;

    // Folded as the UI folds them: never failed or partial, even past the trace timeout.
    let mut model = Model::new(Limits::default());
    for e in seen.events.clone() {
        model.apply(e, switchboard::monitor::now_ms());
    }
    let later = switchboard::monitor::now_ms() + 60_000;
    model.traces.tick(later);
    let status = |t| model.traces.get(t).map(|x| x.status(later));
    assert_eq!(status(user_trace), Some(TraceStatus::NotObservable));
    assert_eq!(status(conn_trace), Some(TraceStatus::NotObservable));
    assert_eq!(status(probe_trace), Some(TraceStatus::Delivered));
    let summary = model.traces.summary();
    assert_eq!((summary.failed, summary.partial), (0, 0), "{summary:?}");
    stop(monitor).await;
}

/// A Redis spec from a plain URL (the tests' servers need no TLS or sentinel options).
/// Folds every event seen so far into a fresh model, as the dashboard does, and explains `trace`
/// once its timeout has passed.
fn explain_from(
    seen: &Seen,
    nodes: &[&NodeHandle],
    prefix: &str,
    trace: u64,
) -> Vec<switchboard::monitor::model::explain::Cause> {
    let mut model = Model::new(Limits::default());
    for node in nodes {
        model.nodes.upsert(target(node));
    }
    // Folded at (about) when each event happened, as the dashboard folds them as they arrive, so
    // the link history has its times.
    let mut at = 0;
    for event in seen.events.iter().cloned() {
        at = match &event {
            MonitorEvent::Tap { at_ms, .. } | MonitorEvent::Sent { at_ms, .. } => *at_ms,
            MonitorEvent::Node {
                event: NodeEvent::Stats(stats),
                ..
            } => stats.now_ms,
            MonitorEvent::Node {
                event: NodeEvent::ProbeReceived { at_ms, .. },
                ..
            } => *at_ms,
            MonitorEvent::Traffic(entries) => entries.last().map_or(at, |e| e.at_ms),
            _ => at,
        }
        .max(at);
        model.apply(event, at);
    }
    let now = switchboard::monitor::now_ms();
    let later = now + switchboard::config::DEFAULT_TRACE_TIMEOUT.as_millis() as u64 + 1;
    model.tick(later);
    model
        .explain(trace, Some(prefix), later)
        .expect("the trace is known")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_zero_subscribers_for_a_group_nobody_is_in_and_a_local_connection_send_stays_off_redis()
{
    use switchboard::monitor::model::explain::Verdict;

    let (_redis, prefix, a, b, monitor, mut seen) = two_nodes_watched().await;
    let mut probe_a = String::new();
    for node in [&a, &b] {
        let (_, id) = seen
            .node_event(0, &node.hub_url(), "probe connected", |e| match e {
                NodeEvent::ProbeConnected { connection_id } => Some(connection_id.clone()),
                _ => None,
            })
            .await;
        if node.hub_url() == a.hub_url() {
            probe_a = id;
        }
    }
    // Both nodes' stats (their prefix and hub, their backplane state) before the sends.
    for node in [&a, &b] {
        seen.node_event(0, &node.hub_url(), "stats", |e| {
            matches!(e, NodeEvent::Stats(_)).then_some(())
        })
        .await;
    }
    let hub = switchboard::config::DEFAULT_HUB_NAME;

    // (1) A group nobody is in, the probes left out of it.
    let group = "nobody-is-here";
    let (mark, trace, expected) = send_joining(
        &monitor,
        &mut seen,
        0,
        &a.hub_url(),
        SendTarget::Group(group.into()),
        false,
    )
    .await;
    assert!(expected.is_empty(), "no probe is in the group: {expected:?}");
    let channel = format!("{prefix}{hub}:group:{group}");
    let lookup = lookup_of(&mut seen, mark, trace).await;
    assert_eq!(lookup.channel.as_deref(), Some(channel.as_str()), "{lookup:?}");
    assert_eq!(lookup.subscribers, Some(0), "{lookup:?}");
    assert!(lookup.holders.is_empty(), "{lookup:?}");
    seen.find(mark, "the group message on the tap", |e| match e {
        MonitorEvent::Traffic(entries) => entries
            .iter()
            .any(|x| x.trace == Some(trace) && x.channel == channel)
            .then_some(()),
        _ => None,
    })
    .await;
    let causes = explain_from(&seen, &[&a, &b], &prefix, trace);
    assert_eq!(causes.len(), 1, "{causes:#?}");
    assert_eq!(causes[0].verdict, Verdict::Fault);
    assert_eq!(
        causes[0].headline,
        format!(
            "Nobody was subscribed to {channel}: no server had a member of group \"{group}\" when it was sent"
        )
    );
    let numsub = format!("PUBSUB NUMSUB {channel} = 0 when it was sent (0 servers subscribed)");
    assert!(causes[0].evidence.contains(&numsub), "{causes:#?}");
    assert!(
        causes[0]
            .evidence
            .contains(&format!("no watched node holds group \"{group}\"")),
        "{causes:#?}"
    );

    // (2) SendToConnection to node A's own probe, through node A: delivered, never on Redis.
    tokio::time::sleep(Duration::from_millis(1100)).await; // the lookup's one-a-second limit
    let (mark, trace, expected) = send_one(
        &monitor,
        &mut seen,
        mark,
        &a.hub_url(),
        SendTarget::Connection(probe_a.clone()),
    )
    .await;
    assert_eq!(expected, vec![a.hub_url()]);
    seen.probes_received(mark, &[a.hub_url()], trace, "node A's probe gets it")
        .await;
    // Another message through Redis after it: once the tap has shown that one, it would have
    // shown the first had it been published.
    let (after, later_trace, _) = send_one(&monitor, &mut seen, mark, &b.hub_url(), SendTarget::All).await;
    seen.find(after, "a later message on the tap", |e| match e {
        MonitorEvent::Traffic(entries) => entries.iter().any(|x| x.trace == Some(later_trace)).then_some(()),
        _ => None,
    })
    .await;
    assert!(
        !seen.events.iter().any(
            |e| matches!(e, MonitorEvent::Traffic(entries) if entries.iter().any(|x| x.trace == Some(trace)))
        ),
        "a local SendToConnection is not published"
    );
    let causes = explain_from(&seen, &[&a, &b], &prefix, trace);
    assert_eq!(causes.len(), 1, "{causes:#?}");
    assert_eq!(causes[0].verdict, Verdict::Expected);
    assert!(causes[0].headline.contains("never touches Redis"), "{causes:#?}");
    assert_eq!(
        causes[0].evidence[0],
        format!("connection {probe_a} is on node-a, the node it was sent through")
    );
    stop(monitor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_backplane_outage_of_the_sending_node() {
    use switchboard::monitor::model::explain::Verdict;

    let (mut redis, prefix, a, b, monitor, mut seen) = two_nodes_watched().await;
    for node in [&a, &b] {
        seen.node_event(0, &node.hub_url(), "probe connected", |e| {
            matches!(e, NodeEvent::ProbeConnected { .. }).then_some(())
        })
        .await;
    }
    let (mark, _) = seen
        .node_event(0, &a.hub_url(), "node A's backplane connected", |e| match e {
            NodeEvent::Stats(s) if s.backplane.status.state == "connected" => Some(()),
            _ => None,
        })
        .await;
    redis.kill();
    let (mark, _) = seen
        .node_event(mark, &a.hub_url(), "node A's backplane down", |e| match e {
            NodeEvent::Stats(s) if s.backplane.status.state != "connected" => Some(()),
            _ => None,
        })
        .await;
    let (_, trace, expected) = send_one(&monitor, &mut seen, mark, &a.hub_url(), SendTarget::All).await;
    assert_eq!(expected.len(), 2, "{expected:?}");
    // Past the trace's timeout, with the node's stats of that time.
    tokio::time::sleep(switchboard::config::DEFAULT_TRACE_TIMEOUT + Duration::from_millis(500)).await;
    seen.node_event(mark, &a.hub_url(), "later stats", |e| {
        matches!(e, NodeEvent::Stats(_)).then_some(())
    })
    .await;
    let causes = explain_from(&seen, &[&a, &b], &prefix, trace);
    assert_eq!(causes[0].verdict, Verdict::Fault, "{causes:#?}");
    assert_eq!(
        causes[0].headline,
        "node-a's backplane link was down when it was sent: the publish never reached Redis"
    );
    assert!(
        causes[0].evidence[0].starts_with("node-a's backplane was down from "),
        "{causes:#?}"
    );
    // The outage of the kill (with its error), not the node's first moments of connecting.
    assert!(causes[0].evidence[0].contains("reconnecting"), "{causes:#?}");
    assert!(
        causes
            .iter()
            .any(|c| c.headline.starts_with("The tap was not connected")),
        "the tap's own outage is said too: {causes:#?}"
    );
    stop(monitor).await;
}

fn redis_spec(url: &str) -> Box<switchboard::redis_conn::RedisSpec> {
    Box::new(switchboard::redis_conn::RedisSpec::parse(url, &Default::default()).unwrap())
}
