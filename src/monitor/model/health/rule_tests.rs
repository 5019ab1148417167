//! Tests of the outage, stopped, needs-token and acknowledgement rules of `health` (kept apart
//! from `health.rs`, which has grown too many jobs), on plain inputs and through the model.

use super::*;
use crate::monitor::model::{Limits, Model};
use crate::monitor::{LinkState, MonitorEvent, NodeEvent, NodeStats, NodeTarget};

/// 2023-11-14 22:13:20 UTC.
const NOW: u64 = 1_700_000_000_000;
const MIN: u64 = 60_000;

fn node(name: &str) -> NodeObservation {
    NodeObservation {
        name: name.into(),
        reach: NodeReach::Stats(NodeSnapshot {
            server_name: format!("{name}_1"),
            hub: "ChatHub".into(),
            backplane_kind: "redis".into(),
            backplane_state: "connected".into(),
            connections: 1,
            ..NodeSnapshot::default()
        }),
    }
}

fn span(link: OutageLink, from_ms: u64, to_ms: Option<u64>) -> OutageSpan {
    OutageSpan {
        link,
        from_ms,
        to_ms,
        detail: "connection refused".into(),
    }
}

fn inputs(now_ms: u64, outages: Vec<OutageSpan>) -> HealthInputs {
    HealthInputs {
        now_ms,
        prefix: "p:".into(),
        nodes: vec![node("node-a"), node("node-b")],
        outages,
        outage_memory_ms: 15 * MIN,
        ..HealthInputs::default()
    }
}

/// Redis down for 29 s seen by the tap and both nodes, a little apart.
fn redis_restart(at: u64) -> Vec<OutageSpan> {
    vec![
        span(OutageLink::Tap, at, Some(at + 29_000)),
        span(
            OutageLink::Backplane("node-a".into()),
            at + 300,
            Some(at + 28_500),
        ),
        span(
            OutageLink::Backplane("node-b".into()),
            at + 450,
            Some(at + 29_400),
        ),
    ]
}

fn outages(f: &[Finding]) -> Vec<&Finding> {
    f.iter().filter(|f| f.rule == "outage").collect()
}

#[test]
fn an_outage_everyone_saw_names_redis_with_its_times_and_is_info_once_over() {
    let start = NOW - 2 * MIN;
    let f = evaluate(&inputs(NOW, redis_restart(start)));
    let o = outages(&f);
    assert_eq!(o.len(), 1, "{f:?}");
    assert_eq!(o[0].severity, Severity::Info);
    assert_eq!(o[0].subject.as_deref(), Some("Redis"));
    assert_eq!(
        o[0].summary,
        "Redis was unreachable 22:11:20–22:11:49 UTC (29 s): both nodes and the tap lost it"
    );
    assert!(
        o[0].evidence
            .contains(&"node-b's backplane link down 22:11:20–22:11:49: connection refused".to_string()),
        "{:?}",
        o[0].evidence
    );
    assert_eq!(Verdict::of(&f), Verdict::Healthy);
}

#[test]
fn the_culprit_is_this_machines_link_when_only_the_tap_lost_redis_or_the_node_alone() {
    let start = NOW - MIN;
    let f = evaluate(&inputs(
        NOW,
        vec![span(OutageLink::Tap, start, Some(start + 5_000))],
    ));
    let o = outages(&f);
    assert_eq!(o.len(), 1);
    assert!(
        o[0].summary
            .starts_with("this machine's link to Redis was down 22:12:20–22:12:25 UTC (5 s)"),
        "{}",
        o[0].summary
    );
    let f = evaluate(&inputs(
        NOW,
        vec![span(
            OutageLink::Backplane("node-b".into()),
            start,
            Some(start + 3 * MIN + 5_000),
        )],
    ));
    let o = outages(&f);
    assert_eq!(o[0].subject.as_deref(), Some("node-b"));
    assert_eq!(
        o[0].summary,
        "node-b lost the link to Redis 22:12:20–22:15:25 UTC (3 min 5 s), the tap kept it"
    );
    let f = evaluate(&inputs(
        NOW,
        vec![span(
            OutageLink::Node("node-a".into()),
            start,
            Some(start + 2_000),
        )],
    ));
    assert_eq!(
        outages(&f)[0].summary,
        "node-a did not answer 22:12:20–22:12:22 UTC (2 s)"
    );
}

#[test]
fn separate_outages_are_separate_findings_and_one_under_way_is_left_to_the_critical_rules() {
    let mut spans = redis_restart(NOW - 10 * MIN);
    spans.push(span(OutageLink::Tap, NOW - MIN, Some(NOW - MIN + 1_000)));
    assert_eq!(outages(&evaluate(&inputs(NOW, spans.clone()))).len(), 2);
    // Still down: no `outage` finding (redis-unreachable and backplane-down say it).
    spans.push(span(OutageLink::Tap, NOW - 5_000, None));
    spans.push(span(OutageLink::Backplane("node-a".into()), NOW - 4_000, None));
    assert_eq!(outages(&evaluate(&inputs(NOW, spans))).len(), 2);
}

#[test]
fn a_past_outage_is_gone_after_the_memory_and_a_covered_tap_gap_is_not_told_twice() {
    let start = NOW - 20 * MIN;
    // The incident ends with its last span (node-b's).
    let end = start + 29_400;
    let mut i = inputs(end + 15 * MIN, redis_restart(start));
    i.tap_gaps = vec![TapGap {
        from_ms: start,
        to_ms: end,
    }];
    let f = evaluate(&i);
    assert_eq!(outages(&f).len(), 1, "just within the memory");
    assert!(f.iter().all(|f| f.rule != "tap-gap"), "{f:?}");
    i.now_ms = end + 15 * MIN + 1;
    let f = evaluate(&i);
    assert!(f.is_empty(), "aged out: {f:?}");
    assert_eq!(Verdict::of(&f), Verdict::Healthy);
    // A gap no outage covers is still a warning (the capture's own gap markers, `check`).
    i.outages.clear();
    assert!(evaluate(&i).iter().any(|f| f.rule == "tap-gap"));
}

#[test]
fn stopped_and_token_closed_nodes_are_info_not_faults() {
    let mut i = inputs(NOW, Vec::new());
    i.nodes.push(NodeObservation {
        name: "node-c".into(),
        reach: NodeReach::Stopped { since_ms: NOW - MIN },
    });
    i.nodes.push(NodeObservation {
        name: "node-d".into(),
        reach: NodeReach::NeedsToken { trusted: false },
    });
    let f = evaluate(&i);
    let rules: Vec<(&str, Severity)> = f.iter().map(|f| (f.rule, f.severity)).collect();
    assert_eq!(
        rules,
        vec![("stopped", Severity::Info), ("needs-token", Severity::Info)]
    );
    assert_eq!(f[0].summary, "node node-c was stopped on purpose at 22:12:20 UTC");
    assert_eq!(Verdict::of(&f), Verdict::Healthy);
    i.nodes[3].reach = NodeReach::NeedsToken { trusted: true };
    assert_eq!(Verdict::of(&evaluate(&i)), Verdict::Degraded);
}

fn critical(subject: &str, evidence: &str) -> Finding {
    Finding::new(
        "node-unreachable",
        Severity::Critical,
        format!("node {subject} does not answer"),
    )
    .subject(subject)
    .evidence(evidence.to_string())
}

#[test]
fn an_ack_sets_a_finding_apart_until_its_evidence_changes() {
    let mut acks = Acks::default();
    let f = critical("node-b", "connection refused");
    acks.acknowledge(&f, "  maintenance, back at 10:00\nsecond line ignored", NOW);
    let mut e = Evaluation::of(&HealthInputs::default(), None);
    e.findings = vec![f.clone(), critical("node-c", "timed out")];
    e.apply_acks(&acks);
    assert_eq!(e.verdict, Verdict::Broken, "node-c is still critical");
    assert_eq!(e.findings.len(), 1);
    assert_eq!(e.acknowledged.len(), 1);
    assert_eq!(e.acknowledged[0].1.note, "maintenance, back at 10:00");
    assert_eq!(e.acknowledged[0].1.at_ms, NOW);
    e.findings.retain(|f| f.subject.as_deref() != Some("node-c"));
    e.apply_acks(&acks);
    assert_eq!(
        e.verdict,
        Verdict::Healthy,
        "acknowledged findings do not set the verdict"
    );
    assert_eq!(e.counts(), (0, 0));
    // New evidence: the ack no longer holds.
    let mut e2 = Evaluation::of(&HealthInputs::default(), None);
    e2.findings = vec![critical("node-b", "timed out")];
    e2.apply_acks(&acks);
    assert_eq!((e2.verdict, e2.acknowledged.len()), (Verdict::Broken, 0));
    // Withdrawn: counts again.
    assert!(acks.withdraw(&f));
    e.apply_acks(&acks);
    assert_eq!((e.verdict, e.acknowledged.len()), (Verdict::Broken, 0));
    // Bounded.
    for n in 0..crate::config::DEFAULT_MAX_ACKS + 10 {
        acks.acknowledge(&critical(&format!("n{n}"), "x"), "", NOW);
    }
    assert_eq!(acks.len(), crate::config::DEFAULT_MAX_ACKS);
}

const A: &str = "http://127.0.0.1:5001/chat";
const B: &str = "http://127.0.0.1:5002/chat";

fn stats(name: &str, state: &str) -> NodeStats {
    let mut s = NodeStats {
        node_name: name.into(),
        server_name: format!("{name}_1"),
        hub: "ChatHub".into(),
        channel_prefix: "p:".into(),
        ..NodeStats::default()
    };
    s.backplane.kind = "redis".into();
    s.backplane.status.state = state.into();
    s
}

/// Two monitored nodes, connected with fresh stats at `at`.
fn two_nodes(m: &mut Model, at: u64) {
    for (url, name) in [(A, "node-a"), (B, "node-b")] {
        m.nodes.upsert(NodeTarget {
            hub_url: url.into(),
            monitor_url: Some(format!("{url}/stats")),
        });
        for event in [
            NodeEvent::State(LinkState::Connected),
            NodeEvent::Stats(stats(name, "connected")),
        ] {
            m.apply(
                MonitorEvent::Node {
                    hub_url: url.into(),
                    event,
                },
                at,
            );
        }
    }
}

fn node_stats(m: &mut Model, state: &str, at: u64) {
    for (url, name) in [(A, "node-a"), (B, "node-b")] {
        m.apply(
            MonitorEvent::Node {
                hub_url: url.into(),
                event: NodeEvent::Stats(stats(name, state)),
            },
            at,
        );
    }
}

fn tap(m: &mut Model, state: LinkState, at: u64) {
    m.apply(MonitorEvent::Tap { state, at_ms: at }, at);
}

fn evaluation(m: &mut Model, now: u64) -> Evaluation {
    m.health.gate = RefreshGate::default();
    assert!(m.refresh_health("p:", now));
    m.health.latest.clone().unwrap_or_else(|| panic!("evaluated"))
}

#[test]
fn the_model_turns_a_redis_restart_into_one_outage_that_ages_out() {
    let mut m = Model::new(Limits::default());
    m.outage_memory = std::time::Duration::from_secs(60);
    let t0 = NOW - 10_000;
    tap(&mut m, LinkState::Connecting, t0 - 1000);
    tap(&mut m, LinkState::Connected, t0 - 900);
    two_nodes(&mut m, t0);
    let down = LinkState::Reconnecting {
        attempt: 1,
        retry_at_ms: t0 + 2000,
        error: "127.0.0.1:6379: connection refused".into(),
    };
    tap(&mut m, down, t0 + 1000);
    node_stats(&mut m, "reconnecting", t0 + 1200);
    let during = evaluation(&mut m, t0 + 3000);
    assert_eq!(during.verdict, Verdict::Broken);
    assert!(during.findings.iter().all(|f| f.rule != "outage"), "under way");
    tap(&mut m, LinkState::Connected, t0 + 6000);
    node_stats(&mut m, "connected", t0 + 6200);
    let after = evaluation(&mut m, t0 + 8000);
    let o: Vec<&Finding> = after.findings.iter().filter(|f| f.rule == "outage").collect();
    assert_eq!(o.len(), 1, "{:?}", after.findings);
    assert_eq!(o[0].subject.as_deref(), Some("Redis"));
    assert!(
        o[0].summary
            .starts_with("Redis was unreachable 22:13:11–22:13:16 UTC (5 s): both nodes and the tap lost it"),
        "{}",
        o[0].summary
    );
    assert!(
        after.findings.iter().all(|f| f.rule != "tap-gap"),
        "{:?}",
        after.findings
    );
    assert_eq!(after.verdict, Verdict::Healthy);
    let later = evaluation(&mut m, t0 + 6200 + 60_001);
    assert!(later.findings.iter().all(|f| f.rule != "outage"));
}

#[test]
fn a_node_stopped_on_purpose_is_stopped_not_down_and_leaves_no_outage() {
    let mut m = Model::new(Limits::default());
    let t0 = NOW - 10_000;
    two_nodes(&mut m, t0);
    m.node_stopped(B, t0 + 1000);
    m.apply(
        MonitorEvent::Node {
            hub_url: B.into(),
            event: NodeEvent::State(LinkState::Reconnecting {
                attempt: 1,
                retry_at_ms: t0 + 3000,
                error: "connection refused".into(),
            }),
        },
        t0 + 1100,
    );
    let now = t0 + 1200;
    let row = m.nodes.get(B).unwrap_or_else(|| panic!("row"));
    assert_eq!(
        crate::monitor::model::nodes::Nodes::liveness(row, now),
        crate::monitor::model::nodes::Liveness::Stopped { since_ms: t0 + 1000 }
    );
    assert_eq!((m.nodes.up_count(now), m.nodes.expected_count(now)), (1, 1));
    node_stats(&mut m, "connected", now);
    let e = evaluation(&mut m, now);
    let rules: Vec<&str> = e.findings.iter().map(|f| f.rule).collect();
    assert!(rules.contains(&"stopped"), "{rules:?}");
    assert!(!rules.contains(&"node-unreachable"), "{rules:?}");
    assert_ne!(e.verdict, Verdict::Broken);
    // Started again: up, and the stop is not an outage.
    m.apply(
        MonitorEvent::Node {
            hub_url: B.into(),
            event: NodeEvent::State(LinkState::Connected),
        },
        t0 + 9000,
    );
    node_stats(&mut m, "connected", t0 + 9400);
    let e = evaluation(&mut m, t0 + 9500);
    assert!(
        e.findings
            .iter()
            .all(|f| f.rule != "outage" && f.rule != "stopped"),
        "{:?}",
        e.findings
    );
    assert_eq!(m.nodes.up_count(t0 + 9500), 2);
}

#[test]
fn an_untrusted_node_that_answers_401_is_up_and_needs_a_token() {
    let mut m = Model::new(Limits::default());
    let t0 = NOW - 10_000;
    two_nodes(&mut m, t0);
    for event in [
        NodeEvent::Trusted(false),
        NodeEvent::NeedsToken(true),
        NodeEvent::State(LinkState::Reconnecting {
            attempt: 1,
            retry_at_ms: t0 + 3000,
            error: "the node requires a token".into(),
        }),
    ] {
        m.apply(
            MonitorEvent::Node {
                hub_url: B.into(),
                event,
            },
            t0 + 100,
        );
    }
    let now = t0 + 200;
    let row = m.nodes.get(B).unwrap_or_else(|| panic!("row"));
    assert_eq!(
        crate::monitor::model::nodes::Nodes::liveness(row, now),
        crate::monitor::model::nodes::Liveness::NeedsToken
    );
    assert_eq!((m.nodes.up_count(now), m.nodes.expected_count(now)), (2, 2));
    let e = evaluation(&mut m, now);
    let about_b: Vec<(&str, Severity)> = e
        .findings
        .iter()
        .filter(|f| f.subject.as_deref() == Some("node-b"))
        .map(|f| (f.rule, f.severity))
        .collect();
    assert_eq!(about_b, vec![("needs-token", Severity::Info)]);
    assert_ne!(e.verdict, Verdict::Broken);
    // The probe gets in (trusted now): a plain live node again.
    m.apply(
        MonitorEvent::Node {
            hub_url: B.into(),
            event: NodeEvent::ProbeConnected {
                connection_id: "p".into(),
            },
        },
        now,
    );
    assert!(!m.nodes.get(B).is_some_and(|r| r.needs_token));
}

#[test]
fn a_send_nobody_was_subscribed_to_is_failed_in_the_row_the_summary_and_explain() {
    use crate::monitor::model::explain::Verdict as Why;
    use crate::monitor::model::traces::{NOBODY_SUBSCRIBED, TraceStatus};
    use crate::monitor::{SendTarget, TraceLookup};
    let mut m = Model::new(Limits::default());
    let user = SendTarget::User("nobody-holds-me".into());
    let channel = "p:ChatHub:user:nobody-holds-me";
    // A burst of two: only the first is looked up, the second borrows its answer.
    for (trace, at) in [(1u64, 1_000u64), (2, 1_100)] {
        m.apply(
            MonitorEvent::Sent {
                trace,
                node: A.into(),
                target: user.clone(),
                at_ms: at,
                expected: Vec::new(),
            },
            at,
        );
        let text = format!("hi {}", crate::monitor::model::traces::marker(trace));
        let e = crate::monitor::decode::decode("", channel, text.as_bytes(), at + 2);
        m.apply(MonitorEvent::Traffic(vec![e]), at + 2);
    }
    m.apply(
        MonitorEvent::TraceLookup {
            trace: 1,
            lookup: TraceLookup {
                channel: Some(channel.into()),
                subscribers: Some(0),
                ..Default::default()
            },
        },
        1_200,
    );
    m.tick(10_000);
    for trace in [1, 2] {
        let t = m.traces.get(trace).unwrap_or_else(|| panic!("trace {trace}"));
        assert_eq!(
            t.status(10_000),
            TraceStatus::Failed(NOBODY_SUBSCRIBED.to_string()),
            "trace {trace}"
        );
        let causes = m.explain(trace, Some("p:"), 10_000).unwrap_or_default();
        assert_eq!(causes[0].verdict, Why::Fault, "{causes:?}");
        assert!(
            causes[0].headline.starts_with("Nobody was subscribed"),
            "{causes:?}"
        );
    }
    let s = m.traces.summary();
    assert_eq!((s.failed, s.not_observable), (2, 0));
    // With a subscriber it is what it was: not observable.
    m.apply(
        MonitorEvent::TraceLookup {
            trace: 1,
            lookup: TraceLookup {
                channel: Some(channel.into()),
                subscribers: Some(1),
                ..Default::default()
            },
        },
        1_300,
    );
    let s = m.traces.summary();
    assert_eq!((s.failed, s.not_observable), (0, 2));
}

#[test]
fn a_tap_stopped_on_purpose_is_no_outage_and_a_real_one_is_a_down_span() {
    let mut m = Model::new(Limits::default());
    let t0 = NOW - 10_000;
    tap(&mut m, LinkState::Connecting, t0);
    tap(&mut m, LinkState::Connected, t0 + 100);
    tap(&mut m, LinkState::Idle, t0 + 1000);
    tap(&mut m, LinkState::Connecting, t0 + 5000);
    tap(&mut m, LinkState::Connected, t0 + 5100);
    assert!(
        m.down_spans(None, 0, NOW).is_empty(),
        "the first connect and the stop are not outages"
    );
    let e = evaluation(&mut m, NOW);
    assert!(e.findings.iter().all(|f| f.rule != "outage"), "{:?}", e.findings);
    tap(
        &mut m,
        LinkState::Failed {
            error: "refused".into(),
        },
        t0 + 6000,
    );
    let open = m.down_spans(None, 0, NOW);
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].from_ms, open[0].to_ms),
        (t0 + 6000, NOW),
        "open: drawn up to now"
    );
    tap(&mut m, LinkState::Connected, t0 + 7000);
    let spans = m.down_spans(None, t0 + 6500, NOW);
    assert_eq!(
        (spans[0].kind, spans[0].from_ms, spans[0].to_ms),
        (crate::monitor::model::DownKind::Tap, t0 + 6500, t0 + 7000),
        "clipped to the window"
    );
}
