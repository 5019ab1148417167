//! Tests of the rules, the adapter and the gate.

use super::inputs::parse_bytes;
use super::*;

const NOW: u64 = 1_700_000_000_000;
const HUB: &str = "ChatHub";

fn hub(servers: &[&str], all: u64, groups: u64) -> HubObservation {
    HubObservation {
        hub: HUB.into(),
        ack_servers: servers.iter().map(|s| s.to_string()).collect(),
        return_servers: servers.iter().map(|s| s.to_string()).collect(),
        numsub_all: Some(all),
        numsub_groups: Some(groups),
        traffic: None,
    }
}

fn beat(server: &str, age_ms: u64) -> Heartbeat {
    Heartbeat {
        server_name: server.into(),
        node_name: server.into(),
        hub: HUB.into(),
        ts_ms: NOW - age_ms,
    }
}

fn inputs() -> HealthInputs {
    HealthInputs {
        now_ms: NOW,
        prefix: "p:".into(),
        ..HealthInputs::default()
    }
}

fn rules(findings: &[Finding]) -> Vec<(&'static str, Severity)> {
    findings.iter().map(|f| (f.rule, f.severity)).collect()
}

fn stats(state: &str) -> NodeSnapshot {
    NodeSnapshot {
        server_name: "a_1".into(),
        hub: HUB.into(),
        backplane_kind: "redis".into(),
        backplane_state: state.into(),
        connections: 3,
        ..NodeSnapshot::default()
    }
}

#[test]
fn a_healthy_pair_is_healthy_and_counts_its_servers() {
    let mut i = inputs();
    i.hubs = vec![hub(&["a_1", "b_2"], 2, 2)];
    i.heartbeats = vec![beat("a_1", 1000), beat("b_2", 1500)];
    let f = evaluate(&i);
    assert_eq!(rules(&f), vec![("servers", Severity::Info)]);
    assert!(
        f[0].evidence[0].contains("ack channels 2, return channels 2, heartbeats 2, NUMSUB :all 2"),
        "{:?}",
        f[0]
    );
    assert_eq!(Verdict::of(&f), Verdict::Healthy);
    assert_eq!(Verdict::of(&f).exit_code(), 0);
}

#[test]
fn a_heartbeat_without_an_ack_channel_is_a_warning_and_stale_beats_do_not_count() {
    let mut i = inputs();
    i.hubs = vec![hub(&["a_1"], 1, 1)];
    i.heartbeats = vec![
        beat("a_1", 0),
        beat("b_2", 500),
        beat("c_3", HEARTBEAT_FRESH_MS + 1),
    ];
    let f = evaluate(&i);
    let warned: Vec<_> = f.iter().filter(|f| f.severity == Severity::Warning).collect();
    assert_eq!(warned.len(), 1);
    assert_eq!(warned[0].subject.as_deref(), Some("b_2"));
    assert!(warned[0].evidence[0].contains("p:ChatHub:internal:ack:b_2"));
}

#[test]
fn fewer_group_listeners_than_servers_is_a_warning() {
    let mut i = inputs();
    i.hubs = vec![hub(&["a_1", "b_2"], 2, 1)];
    let f = evaluate(&i);
    assert_eq!(rules(&f)[0], ("servers", Severity::Warning));
    assert!(
        f[0].summary
            .starts_with("1 server(s) do not listen on :internal:groups")
    );
}

#[test]
fn a_deaf_server_is_named_when_it_is_the_only_one_without_a_heartbeat() {
    let mut i = inputs();
    i.hubs = vec![hub(&["a_1", "b_2", "fake_9"], 2, 3)];
    i.heartbeats = vec![beat("a_1", 100), beat("b_2", 100)];
    let f = evaluate(&i);
    let deaf: Vec<_> = f.iter().filter(|f| f.rule == "deaf-server").collect();
    assert_eq!(deaf.len(), 1);
    assert_eq!(deaf[0].severity, Severity::Warning);
    assert_eq!(deaf[0].subject.as_deref(), Some("fake_9"));
    assert!(deaf[0].summary.starts_with("1 server(s)"));
    assert!(deaf[0].evidence[0].contains("NUMSUB p:ChatHub:all = 2, ack channels = 3"));
    assert_eq!(Verdict::of(&f).exit_code(), 1);
}

#[test]
fn no_deaf_finding_when_all_counts_every_server_or_numsub_is_unknown() {
    let mut i = inputs();
    i.hubs = vec![hub(&["a_1", "b_2"], 3, 2)];
    assert!(evaluate(&i).iter().all(|f| f.rule != "deaf-server"));
    i.hubs[0].numsub_all = None;
    assert!(evaluate(&i).iter().all(|f| f.rule != "deaf-server"));
}

#[test]
fn output_buffers_warn_at_half_and_are_critical_at_four_fifths_of_the_limit() {
    let limit = BufferLimit::parse_pubsub("normal 0 0 0 replica 256mb 64mb 60 pubsub 32mb 8mb 60");
    assert_eq!(
        limit,
        Some(BufferLimit {
            hard: 32 << 20,
            soft: 8 << 20,
            soft_seconds: 60
        })
    );
    let rows = parse_client_list(
        "id=5 addr=127.0.0.1:1 name=ok sub=4 psub=0 omem=0\n\
         id=6 addr=127.0.0.1:2 name=slow sub=1 psub=0 omem=4194304\n\
         id=7 addr=127.0.0.1:3 name= sub=1 psub=0 omem=7340032\n",
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].omem, 4 << 20);
    let mut i = inputs();
    i.client_list = Some(Ok(ClientListInput { clients: rows, limit }));
    let f = evaluate(&i);
    // The soft limit (8 MiB) is the nearer bound: 7 MiB = 87.5 % critical, 4 MiB = 50 % warning.
    assert_eq!(
        rules(&f),
        vec![
            ("output-buffer", Severity::Critical),
            ("output-buffer", Severity::Warning)
        ]
    );
    assert!(
        f[0].summary.contains("client 7 (127.0.0.1:3)"),
        "{}",
        f[0].summary
    );
    assert!(f[1].summary.contains("slow"));
    assert!(
        f[1].evidence[0].contains("omem 4.0 MiB of 8.0 MiB"),
        "{:?}",
        f[1].evidence
    );
}

#[test]
fn output_buffers_without_limit_or_permission_say_so() {
    let mut i = inputs();
    i.client_list = Some(Err("CLIENT LIST refused: NOPERM".into()));
    let f = evaluate(&i);
    assert_eq!(rules(&f), vec![("output-buffer", Severity::Info)]);
    assert!(f[0].evidence[0].contains("NOPERM"));
    i.client_list = Some(Ok(ClientListInput {
        clients: vec![],
        limit: None,
    }));
    assert!(evaluate(&i)[0].summary.contains("limit is unknown"));
    i.client_list = Some(Ok(ClientListInput {
        clients: parse_client_list("id=1 omem=999999999"),
        limit: Some(BufferLimit::default()),
    }));
    assert!(
        evaluate(&i).is_empty(),
        "no limit configured: nothing to hold against"
    );
    assert_eq!(parse_bytes("1gb"), Some(1 << 30));
    assert_eq!(parse_bytes("64k"), Some(64_000));
    assert_eq!(parse_bytes("x"), None);
}

#[test]
fn channels_under_another_prefix_or_an_unknown_hub_are_reported_once_each() {
    let mut i = inputs();
    i.expected_hubs = vec![HUB.into()];
    i.channels = vec![
        "p:ChatHub:all".into(),
        "p:switchboard:nodes".into(),
        "q:ChatHub:all".into(),
        "q:ChatHub:internal:ack:x_1".into(),
        "p:OtherHub:group:g".into(),
        "session:1234".into(),
    ];
    let f = evaluate(&i);
    assert_eq!(
        rules(&f),
        vec![
            ("foreign-channel", Severity::Warning),
            ("foreign-channel", Severity::Warning)
        ]
    );
    assert!(f[0].summary.contains("\"q:ChatHub\""), "{}", f[0].summary);
    assert!(f[0].evidence[0].starts_with("1 channel(s)") || f[0].evidence[0].starts_with("2 channel(s)"));
    assert_eq!(f[1].hub.as_deref(), Some("OtherHub"));
}

#[test]
fn group_names_with_glob_characters_are_warnings() {
    let mut i = inputs();
    i.channels = vec![
        "p:ChatHub:group:room-1".into(),
        "p:ChatHub:group:room*".into(),
        "p:ChatHub:group:a?b".into(),
        "p:ChatHub:group:[x]".into(),
        "p:ChatHub:group:room*".into(),
    ];
    let f = evaluate(&i);
    let subjects: Vec<_> = f.iter().filter_map(|f| f.subject.as_deref()).collect();
    assert_eq!(subjects, vec!["room*", "a?b", "[x]"]);
    assert!(
        f.iter()
            .all(|f| f.rule == "pattern-group" && f.severity == Severity::Warning)
    );
}

#[test]
fn an_unreachable_node_or_a_reconnecting_link_is_critical_connecting_a_warning() {
    let mut i = inputs();
    let mut down = stats("reconnecting");
    down.backplane_error = Some("connection refused".into());
    i.nodes = vec![
        NodeObservation {
            name: "a".into(),
            reach: NodeReach::Stats(stats("connected")),
        },
        NodeObservation {
            name: "b".into(),
            reach: NodeReach::Unreachable("connection refused".into()),
        },
        NodeObservation {
            name: "c".into(),
            reach: NodeReach::Stats(down),
        },
        NodeObservation {
            name: "d".into(),
            reach: NodeReach::Stats(stats("connecting")),
        },
        NodeObservation {
            name: "e".into(),
            reach: NodeReach::NoMonitor,
        },
    ];
    let f = evaluate(&i);
    assert_eq!(
        rules(&f),
        vec![
            ("node-unreachable", Severity::Critical),
            ("backplane-down", Severity::Critical),
            ("backplane-down", Severity::Warning)
        ]
    );
    assert_eq!(f[1].subject.as_deref(), Some("c"));
    assert!(
        f[1].evidence
            .iter()
            .any(|e| e == "last error: connection refused")
    );
    assert_eq!(Verdict::of(&f).exit_code(), 2);
}

#[test]
fn tap_gaps_are_summed() {
    let mut i = inputs();
    i.tap_gaps = vec![
        TapGap {
            from_ms: 0,
            to_ms: 1500,
        },
        TapGap {
            from_ms: 10_000,
            to_ms: 14_000,
        },
    ];
    let f = evaluate(&i);
    assert_eq!(rules(&f), vec![("tap-gap", Severity::Warning)]);
    assert!(f[0].summary.contains("2 time(s), 5.5 s"), "{}", f[0].summary);
    assert_eq!(f[0].evidence, vec!["longest 4.0 s".to_string()]);
}

#[test]
fn a_node_whose_clients_get_nothing_while_its_hub_has_traffic_is_silent() {
    let mut i = inputs();
    let mut h = hub(&["a_1"], 1, 1);
    h.traffic = Some(40);
    i.hubs = vec![h];
    let mut quiet = stats("connected");
    quiet.client_out_delta = Some(0);
    quiet.backplane_in_delta = Some(0);
    let mut busy = stats("connected");
    busy.client_out_delta = Some(120);
    let mut empty = stats("connected");
    empty.client_out_delta = Some(0);
    empty.connections = 0;
    i.nodes = vec![
        NodeObservation {
            name: "quiet".into(),
            reach: NodeReach::Stats(quiet),
        },
        NodeObservation {
            name: "busy".into(),
            reach: NodeReach::Stats(busy),
        },
        NodeObservation {
            name: "empty".into(),
            reach: NodeReach::Stats(empty),
        },
    ];
    let silent: Vec<_> = evaluate(&i)
        .into_iter()
        .filter(|f| f.rule == "silent-node")
        .collect();
    assert_eq!(silent.len(), 1);
    assert_eq!(silent[0].subject.as_deref(), Some("quiet"));
    assert!(
        silent[0]
            .summary
            .contains("3 client(s) received nothing while the backplane carried 40")
    );
    // No traffic for the hub: nothing to expect.
    i.hubs[0].traffic = Some(0);
    assert!(evaluate(&i).iter().all(|f| f.rule != "silent-node"));
}

#[test]
fn a_lost_canary_is_critical_and_a_full_set_is_info_with_the_slowest() {
    let mut i = inputs();
    i.deliveries = vec![
        Delivery {
            from: "a".into(),
            to: "b".into(),
            received_after_ms: Some(12),
        },
        Delivery {
            from: "b".into(),
            to: "a".into(),
            received_after_ms: Some(30),
        },
    ];
    let f = evaluate(&i);
    assert_eq!(rules(&f), vec![("canary", Severity::Info)]);
    assert_eq!(f[0].evidence, vec!["slowest 30 ms".to_string()]);
    i.deliveries[1].received_after_ms = None;
    let f = evaluate(&i);
    assert_eq!(rules(&f), vec![("canary", Severity::Critical)]);
    assert_eq!(
        f[0].summary,
        "a test message sent through b did not reach a client of a"
    );
}

#[test]
fn sr2_ids_give_the_exact_missed_count_and_regressions() {
    let mut ids = Sr2Ids::default();
    for id in [10, 11, 12, 15, 16, 20, 3, 4] {
        ids.observe(id);
    }
    assert_eq!(ids.gaps, vec![(12, 15), (16, 20)]);
    assert_eq!(ids.missed(), 2 + 3);
    assert_eq!(ids.regressions, vec![(20, 3)]);
    assert_eq!(ids.seen, 8);
    let mut i = inputs();
    i.sr2 = Some(Sr2Observation {
        event_key: "App".into(),
        ids,
        counter: Some(4),
    });
    let f = evaluate(&i);
    assert_eq!(
        rules(&f),
        vec![
            ("sr2-regression", Severity::Critical),
            ("sr2-gap", Severity::Warning),
            ("sr2-total", Severity::Info)
        ]
    );
    assert!(f[0].summary.contains("from 20 to 3"));
    assert!(f[1].summary.contains("missed 5 SignalR 2 message(s)"));
    assert_eq!(
        f[1].evidence,
        vec!["12→15: 2 missed, 16→20: 3 missed".to_string()]
    );
    assert!(f[2].summary.starts_with("4 message(s) published on \"App\""));
}

#[test]
fn a_counter_below_the_last_id_seen_is_a_regression() {
    let mut ids = Sr2Ids::default();
    ids.observe(500);
    let mut i = inputs();
    i.sr2 = Some(Sr2Observation {
        event_key: "App".into(),
        ids,
        counter: Some(7),
    });
    let f = evaluate(&i);
    assert_eq!(rules(&f), vec![("sr2-regression", Severity::Critical)]);
    assert!(
        f[0].summary
            .contains("GET App = 7 is below the last id seen, 500")
    );
}

#[test]
fn hub_traffic_is_counted_over_the_node_rates_window_only() {
    // The silent-node rule holds hub traffic against the nodes' client messages out, which
    // the rates know over DEFAULT_NODE_RATE_WINDOW (5 s): a message 10 s ago, or one the
    // nodes' counters cannot have sampled yet, is not counted.
    use crate::monitor::model::{EntryKind, Limits, Model, TrafficEntry};
    let mut model = Model::new(Limits::default());
    let entries = [NOW - 10_000, NOW - 2_000, NOW - 200].map(|at| {
        let mut e = TrafficEntry::new(at, "p:ChatHub:all", EntryKind::All, vec![]);
        e.hub = Some(HUB.into());
        e
    });
    model.apply(crate::monitor::MonitorEvent::Traffic(entries.to_vec()), NOW);
    let i = inputs_from_model(&model, "p:", 60_000, NOW);
    assert_eq!(i.hubs[0].traffic, Some(1));
    assert_eq!(
        i.channels,
        vec!["p:ChatHub:all".to_string()],
        "channels: the whole window"
    );
}

#[test]
fn an_unreachable_redis_is_critical() {
    let mut i = inputs();
    i.redis_error = Some("127.0.0.1:1: connection refused".into());
    let f = evaluate(&i);
    assert_eq!(rules(&f), vec![("redis-unreachable", Severity::Critical)]);
    assert_eq!(f[0].evidence, vec!["127.0.0.1:1: connection refused".to_string()]);
}

#[test]
fn the_dashboard_model_fills_the_inputs() {
    use crate::monitor::model::{EntryKind, Limits, Model, TrafficEntry};
    use crate::monitor::{HubCensus, MonitorEvent};
    let mut model = Model::new(Limits::default());
    model.apply(
        MonitorEvent::Census {
            at_ms: NOW,
            hubs: vec![HubCensus {
                hub: HUB.into(),
                servers: vec!["a_1".into(), "b_2".into()],
                ..HubCensus::default()
            }],
        },
        NOW,
    );
    let mut entries = Vec::new();
    for (i, id) in [7u64, 8, 12].iter().enumerate() {
        let mut payload = format!("{id} ").into_bytes();
        payload.extend_from_slice(&[0, 0, 0, 0]);
        entries.push(TrafficEntry::new(
            NOW - 1000 + i as u64,
            "App",
            EntryKind::Sr2,
            payload,
        ));
    }
    let mut group = TrafficEntry::new(NOW - 2_000, "p:ChatHub:group:room*", EntryKind::Group, vec![]);
    group.hub = Some(HUB.into());
    entries.push(group);
    let mut gap = TrafficEntry::new(NOW - 400, "", EntryKind::Gap, vec![]);
    gap.gap = Some((NOW - 3000, NOW - 400));
    entries.push(gap);
    model.apply(MonitorEvent::Traffic(entries), NOW);
    let i = inputs_from_model(&model, "p:", 60_000, NOW);
    assert_eq!(i.hubs.len(), 1);
    assert_eq!(i.hubs[0].ack_servers, vec!["a_1".to_string(), "b_2".to_string()]);
    assert_eq!(i.hubs[0].traffic, Some(1));
    assert_eq!(i.hubs[0].numsub_all, None);
    assert_eq!(
        i.tap_gaps,
        vec![TapGap {
            from_ms: NOW - 3000,
            to_ms: NOW - 400
        }]
    );
    let sr2 = i.sr2.clone().unwrap_or_default();
    assert_eq!((sr2.event_key.as_str(), sr2.ids.missed()), ("App", 3));
    let rules: Vec<_> = evaluate(&i).iter().map(|f| f.rule).collect();
    for rule in ["pattern-group", "tap-gap", "sr2-gap", "servers"] {
        assert!(rules.contains(&rule), "{rule} in {rules:?}");
    }
}

#[test]
fn an_evaluation_names_what_it_skipped_and_looks_stale_when_old_or_failed() {
    use crate::monitor::{HealthRound, HubSubscribers};
    let mut i = inputs();
    i.hubs = vec![hub(&["a_1"], 1, 1)];
    i.client_list = Some(Err(skipped_words(
        "CLIENT LIST",
        "127.0.0.1:6379: the ACL user lacks permission for CLIENT LIST (grant +client|list)",
    )));
    let round = HealthRound {
        at_ms: NOW - 1000,
        hubs: vec![HubSubscribers {
            hub: HUB.into(),
            all: 1,
            groups: 1,
            ack_servers: vec!["a_1".into()],
        }],
        sr2_counters: vec![(
            "App".into(),
            Err("the ACL user may not read these keys (grant key access: ~*)".into()),
        )],
        problem: None,
    };
    let e = Evaluation::of(&i, Some(&round));
    assert_eq!(
        e.skipped,
        vec![
            "skipped: GET App (the ACL user may not read these keys (grant key access: ~*))".to_string(),
            "skipped: CLIENT LIST (ACL: grant +client|list)".to_string(),
        ]
    );
    assert!(e.stale_reasons(NOW + 1000).is_empty());
    assert_eq!(e.stale_reasons(NOW + 7000), vec!["evaluated 7 s ago".to_string()]);
    let failed = HealthRound {
        at_ms: NOW,
        problem: Some("127.0.0.1:6379: connection refused".into()),
        ..HealthRound::default()
    };
    let e = Evaluation::of(&i, Some(&failed));
    assert_eq!(
        e.stale_reasons(NOW),
        vec!["the last Redis round failed: 127.0.0.1:6379: connection refused".to_string()]
    );
    assert!(e.skipped[0].starts_with("skipped: NUMSUB of :all and :internal:groups"));
    assert_eq!(
        Evaluation::of(&i, None).stale_reasons(NOW),
        vec!["no Redis figures (NUMSUB) yet".to_string()]
    );
}

#[test]
fn findings_are_found_by_any_name_of_a_node_and_the_rest_belong_to_the_backplane() {
    let mut i = inputs();
    i.nodes = vec![NodeObservation {
        name: "node-b".into(),
        reach: NodeReach::Unreachable("refused".into()),
    }];
    i.hubs = vec![hub(&["a_1", "deaf_9"], 1, 2)];
    i.heartbeats = vec![beat("a_1", 0)];
    let e = Evaluation::of(&i, None);
    assert_eq!(
        e.worst_for(&["node-b", "http://b/chat"]),
        Some(Severity::Critical)
    );
    assert_eq!(e.worst_for(&["deaf_9"]), Some(Severity::Warning));
    assert_eq!(e.worst_for(&["a_1"]), None);
    let rules: Vec<&str> = e.backplane_findings(&["node-b"]).iter().map(|f| f.rule).collect();
    assert_eq!(rules, vec!["deaf-server"]);
    assert_eq!(e.counts(), (1, 1));
}

#[test]
fn a_tap_that_lost_redis_makes_redis_unreachable_and_the_model_refreshes_at_most_every_2_s() {
    use crate::monitor::model::{Limits, Model};
    use crate::monitor::{LinkState, MonitorEvent};
    let mut model = Model::new(Limits::default());
    assert!(model.refresh_health("p:", NOW));
    assert!(!model.refresh_health("p:", NOW + 1999), "gated");
    model.apply(
        MonitorEvent::Tap {
            state: LinkState::Reconnecting {
                attempt: 2,
                retry_at_ms: NOW + 3000,
                error: "127.0.0.1:6379: connection refused".into(),
            },
            at_ms: NOW,
        },
        NOW,
    );
    assert!(model.refresh_health("p:", NOW + 2000));
    let e = model.health.latest.clone().unwrap_or_else(|| panic!("evaluated"));
    assert_eq!(e.findings[0].rule, "redis-unreachable");
    assert_eq!(
        e.findings[0].evidence,
        vec!["the dashboard's tap: 127.0.0.1:6379: connection refused".to_string()]
    );
    assert_eq!(e.verdict, Verdict::Broken);
}

#[test]
fn the_refresh_gate_lets_one_through_per_interval() {
    let mut gate = RefreshGate::default();
    assert!(gate.ready(10_000));
    assert!(!gate.ready(10_001));
    assert!(!gate.ready(11_999));
    assert!(gate.ready(12_000));
    assert!(!gate.ready(13_000));
    // A clock that went back does not freeze health.
    assert!(gate.ready(5_000));
}

#[test]
fn a_finding_reads_as_one_line_and_serializes_with_lowercase_severity() {
    let f = Finding::new("deaf-server", Severity::Warning, "x".into())
        .hub(HUB)
        .evidence("a".into())
        .evidence("b".into())
        .action("do it");
    assert_eq!(f.line(), "WARNING  deaf-server [ChatHub]: x (a; b) → do it");
    let json = serde_json::to_string(&f).unwrap_or_default();
    assert!(json.contains("\"severity\":\"warning\""), "{json}");
    assert!(!json.contains("subject"), "{json}");
}
