//! The Health view in the real dashboard app, driven by its labels with egui_kittest against a
//! real redis-server: a server that listens only on its ack channel (deaf) and a node URL nobody
//! answers on. The Health tab's label counts the findings, the view lists them with their
//! evidence and what to do, the Nodes view shows a badge on the dead node's row, and clicking
//! the badge opens the Health view on that node's findings.
#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::kittest::{click, frames_until, has_label, type_into};

use std::time::Duration;

use common::redis::{RedisServer, resp_command};
use common::unique_prefix;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use switchboard::link::Link;
use switchboard::monitor::NodeTarget;
use switchboard::redis_conn::RedisSpec;
use switchboard::ui::{DashboardApp, Settings, Startup, Tab};

/// A census walk and a health round (2 s each), the probe's first failed attempt.
const DEADLINE: Duration = Duration::from_secs(30);

/// A loopback port nothing listens on.
#[test]
fn the_health_tab_lists_findings_and_a_node_badge_opens_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let prefix = unique_prefix();
    let hub = switchboard::config::DEFAULT_HUB_NAME;
    let redis = rt.block_on(RedisServer::start());
    // A deaf server: subscribed to its ack channel only (a raw connection kept open).
    let _deaf = rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", redis.port()))
            .await
            .unwrap();
        let ack = format!("{prefix}{hub}:internal:ack:deafhost_1");
        stream
            .write_all(&resp_command(&["SUBSCRIBE", &ack]))
            .await
            .unwrap();
        stream
    });
    let dead = format!("http://127.0.0.1:{}/chat", common::free_port());
    let (link, _) = Link::start(None).expect("the link starts");
    let settings = Settings {
        channel_prefix: prefix.clone(),
        auto_connect: true,
        nodes: vec![NodeTarget {
            hub_url: dead.clone(),
            monitor_url: None,
        }],
        ..Settings::default()
    };
    let app = DashboardApp::new(
        link,
        Startup {
            settings,
            redis: Some(RedisSpec::parse(&redis.url(), &Default::default()).unwrap()),
            demo: None,
            tab: None,
            persist: false,
            exit_after: None,
            capture: None,
        },
    );
    let mut h = Harness::builder()
        .with_size(egui::vec2(1500.0, 900.0))
        .build_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);

    // The tab's label counts the critical and warning findings.
    frames_until(&mut h, DEADLINE, "the Health tab counting 3 findings", |h| {
        has_label(h, "Health (3)")
    });
    h.get_by_label("Health (3)").click();
    h.step();
    assert_eq!(h.state().tab, Tab::Health);
    frames_until(&mut h, DEADLINE, "the findings with their evidence", |h| {
        has_label(h, "BROKEN")
            && has_label(h, "1 critical · 2 warning")
            && has_label(h, "deaf-server")
            && has_label(h, &format!("- NUMSUB {prefix}{hub}:all = 0, ack channels = 1"))
            && has_label(h, "- without heartbeat: deafhost_1")
            && has_label(h, "what to do: restart the deaf server")
            && has_label(h, "node-unreachable")
            && has_label(h, "CRITICAL (1)")
            && has_label(h, "WARNING (2)")
    });
    assert!(has_label(&h, "evaluated "), "the time of the evaluation");

    // The Nodes view: the dead node's row carries a critical badge; clicking it opens Health on
    // that node's findings only.
    h.get_by_label("Nodes").click();
    h.step();
    frames_until(&mut h, DEADLINE, "the badge on the dead node", |h| {
        has_label(h, "[critical]")
    });
    h.get_by_label("[critical]").click();
    h.step();
    h.step();
    assert_eq!(h.state().tab, Tab::Health);
    let focus = h.state().health_ui.focus.clone();
    assert!(focus.is_some(), "opened on the node");
    assert!(has_label(&h, &format!("Findings about {}", focus.unwrap())));
    assert!(has_label(&h, "node-unreachable"));
    assert!(
        !has_label(&h, "deaf-server"),
        "the other findings are not shown while focused"
    );
    h.get_by_label("Show all").click();
    h.step();
    h.step();
    assert!(has_label(&h, "deaf-server"));
}

/// The app on a node URL nobody answers on, without Redis: one critical finding.
fn app_with_a_dead_node() -> DashboardApp {
    let dead = format!("http://127.0.0.1:{}/chat", common::free_port());
    let (link, _) = Link::start(None).expect("the link starts");
    let settings = Settings {
        nodes: vec![NodeTarget {
            hub_url: dead,
            monitor_url: None,
        }],
        ..Settings::default()
    };
    DashboardApp::new(
        link,
        Startup {
            tab: Some(Tab::Health),
            ..Startup::new(settings)
        },
    )
}

#[test]
fn an_acknowledged_finding_is_listed_apart_with_its_note_and_leaves_the_verdict() {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1500.0, 900.0))
        .build_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app_with_a_dead_node());
    frames_until(&mut h, DEADLINE, "the dead node's finding", |h| {
        has_label(h, "BROKEN") && has_label(h, "node-unreachable")
    });
    click(&mut h, "Acknowledge…");
    type_into(&mut h, "Note:", "known: decommissioned, Ann");
    click(&mut h, "OK");
    frames_until(&mut h, DEADLINE, "the finding acknowledged", |h| {
        has_label(h, "ACKNOWLEDGED (1): not in the verdict")
            && has_label(h, ": known: decommissioned, Ann")
            && has_label(h, "HEALTHY")
            && has_label(h, "0 critical · 0 warning")
    });
    assert!(has_label(&h, "acknowledged "), "with its time");
    assert!(
        !has_label(&h, "CRITICAL (1)"),
        "no longer among the critical ones"
    );
    // Withdrawn: it counts again.
    click(&mut h, "Withdraw");
    frames_until(&mut h, DEADLINE, "the finding counted again", |h| {
        has_label(h, "BROKEN") && has_label(h, "CRITICAL (1)")
    });
}

#[test]
fn the_rates_view_shades_and_counts_the_windows_the_tap_was_down() {
    use switchboard::monitor::{LinkState, MonitorEvent, now_ms};
    let mut h = Harness::builder()
        .with_size(egui::vec2(1500.0, 900.0))
        .build_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app_with_a_dead_node());
    let now = now_ms();
    // The tap's link as the runtime reports it: up, down for 5 s, up again.
    for (state, at_ms) in [
        (LinkState::Connected, now - 30_000),
        (
            LinkState::Reconnecting {
                attempt: 1,
                retry_at_ms: now - 19_000,
                error: "connection refused".into(),
            },
            now - 20_000,
        ),
        (LinkState::Connected, now - 15_000),
    ] {
        h.state_mut()
            .model
            .apply(MonitorEvent::Tap { state, at_ms }, at_ms);
    }
    h.state_mut().tab = Tab::Rates;
    frames_until(&mut h, DEADLINE, "the shading counted", |h| {
        has_label(
            h,
            "Shaded: 1 window(s) in which the tap, a node or its backplane link was down",
        )
    });
    let spans = h.state().model.down_spans(None, now - 60_000, now);
    assert_eq!(spans.len(), 1);
    assert_eq!((spans[0].from_ms, spans[0].to_ms), (now - 20_000, now - 15_000));
}

/// A real node that requires tokens, found only by its heartbeat (not trusted, so the dashboard
/// withholds its token): its hub's 401 is not a lost link. It reads "up; needs a token (not
/// trusted)" in the left panel, with a Trust button there, counts as up, and Health says so as
/// info, never node-unreachable.
#[test]
fn an_untrusted_node_that_requires_a_token_is_up_and_can_be_trusted_from_the_left_panel() {
    use std::sync::Arc;
    use switchboard::hub::BackplaneChoice;
    use switchboard::hub::NodeConfig;
    use switchboard::hub::auth::{JwtSecret, JwtSettings, KeySource, Verifier};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let prefix = unique_prefix();
    let redis = rt.block_on(RedisServer::start());
    let mut config = NodeConfig::new("locked-node");
    config.channel_prefix = prefix.clone();
    let secret = JwtSecret::new(b"a test secret of at least 32 bytes!!").unwrap();
    config.auth = Some(Arc::new(
        Verifier::new(JwtSettings::new(KeySource::Secret(secret))).unwrap(),
    ));
    let _node = rt.block_on(common::start_node_with(
        config,
        BackplaneChoice::RedisUrl(redis.url()),
    ));
    let (link, _) = Link::start(None).expect("the link starts");
    let settings = Settings {
        channel_prefix: prefix.clone(),
        auto_connect: true,
        ..Settings::default()
    };
    let app = DashboardApp::new(
        link,
        Startup {
            settings,
            redis: Some(RedisSpec::parse(&redis.url(), &Default::default()).unwrap()),
            demo: None,
            tab: Some(Tab::Nodes),
            persist: false,
            exit_after: None,
            capture: None,
        },
    );
    let mut h = Harness::builder()
        .with_size(egui::vec2(1500.0, 900.0))
        .build_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);
    frames_until(&mut h, DEADLINE, "the locked node up, needing a token", |h| {
        has_label(h, "locked-node") && has_label(h, "up; needs a token (not trusted)")
    });
    assert!(has_label(&h, "1 / 1"), "counted as up");
    assert!(
        h.query_by_label("Trust node").is_some(),
        "a Trust button in the left panel"
    );
    // Health: info about it, no node-unreachable.
    h.state_mut().model.health.gate = Default::default();
    h.step();
    let e = h.state().model.health.latest.clone().unwrap();
    let about: Vec<&str> = e
        .findings
        .iter()
        .filter(|f| f.subject.as_deref() == Some("locked-node"))
        .map(|f| f.rule)
        .collect();
    assert_eq!(about, vec!["needs-token"], "{:#?}", e.findings);
    assert!(e.findings.iter().all(|f| f.rule != "node-unreachable"));
    // Trusted from the left panel: no longer "not trusted" (the dashboard has no token to send
    // it, so it still needs one).
    click(&mut h, "Trust node");
    frames_until(&mut h, DEADLINE, "the node trusted", |h| {
        !has_label(h, "not trusted") && has_label(h, "up; needs a token (the dashboard has none)")
    });
}
