//! `switchboard demo` without the window: the demo's nodes, simulated clients, node and backplane
//! commands, on the memory bus (watched by the dashboard runtime's memory tap) and on a private
//! redis-server. And with it, under a private Xvfb: SIGINT, SIGTERM and SIGKILL of the real binary
//! leave no redis-server behind, and its folder is removed (or swept by the next start).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::within_for;
use switchboard::client::http;
use switchboard::demo::{DemoBackplane, DemoCommand, DemoHandle, DemoOptions, DemoStatus, SimSettings};
use switchboard::monitor::{LinkState, MonitorCommand, MonitorEvent, MonitorHandle};

/// How long a demo state change may take (a Redis reconnect backs off up to 5 s).
const WAIT: Duration = Duration::from_secs(20);

async fn until(demo: &DemoHandle, what: &str, f: impl Fn(&DemoStatus) -> bool) -> DemoStatus {
    within_for(what, WAIT, async {
        loop {
            let status = demo.status();
            if f(&status) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

async fn stats(url: &str) -> serde_json::Value {
    let response = http::request("GET", url, b"")
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status, 200, "GET {url}");
    response.json().unwrap()
}

/// Polls a node's stats until `f` holds.
async fn stats_until(url: &str, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
    within_for(what, WAIT, async {
        loop {
            if f(&stats(url).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

fn sim(clients: u32) -> SimSettings {
    SimSettings {
        clients_per_node: clients,
        messages_per_sec: 40.0,
        group_share: 0.5,
    }
}

async fn tap_state(
    events: &mut switchboard::monitor::runtime::MonitorEvents,
    what: &str,
    f: impl Fn(&LinkState) -> bool,
) {
    within_for(what, WAIT, async {
        loop {
            let batch = events.recv().await.expect("the monitor runtime ended");
            if batch
                .iter()
                .any(|e| matches!(e, MonitorEvent::Tap { state, .. } if f(state)))
            {
                return;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_demo_runs_nodes_clients_and_outages() {
    let options = DemoOptions {
        backplane: DemoBackplane::Memory,
        sim: sim(3),
        ..DemoOptions::default()
    };
    let demo = within_for("starting the demo", WAIT, DemoHandle::start(options))
        .await
        .unwrap();
    let status = demo.status();
    assert_eq!(status.backplane_kind, "memory");
    assert_eq!(
        status.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["node-a", "node-b"]
    );
    assert_eq!(demo.node_targets().len(), 2);

    until(&demo, "6 simulated clients", |s| s.sim_clients == 6).await;
    for node in &status.nodes {
        stats_until(&node.stats_url, "3 connections on each node", |s| {
            s["connections"]["total"] == 3
        })
        .await;
    }
    until(&demo, "simulated chat flowing", |s| {
        s.sim_sent > 5 && s.sim_received > 5
    })
    .await;

    // The demo runs its nodes with auth on: its simulated users (connected above) present
    // tokens, a client without one is refused with the node's reason, and the chat-page links
    // carry a token that the node accepts.
    let node = &status.nodes[0];
    let anonymous =
        switchboard::client::HubClient::connect(&node.hub_url, switchboard::client::ClientOptions::default())
            .await;
    let refused = anonymous.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused.contains("401") || refused.contains("token"), "{refused}");
    let token = node
        .page_url
        .split_once("#access_token=")
        .map(|(_, t)| t.to_string())
        .unwrap_or_else(|| panic!("no token in {}", node.page_url));
    let with_page_token = switchboard::client::ClientOptions {
        token: Some(switchboard::node_token::NodeToken::new(&token).unwrap()),
        ..switchboard::client::ClientOptions::default()
    };
    let visitor = within_for(
        "the page's token accepted",
        WAIT,
        switchboard::client::HubClient::connect(&node.hub_url, with_page_token),
    )
    .await
    .unwrap();
    let id = visitor
        .invoke("GetConnectionId", vec![])
        .await
        .expect("the page's connection works");
    assert!(
        matches!(id, switchboard::protocol::CompletionResult::Value(_)),
        "{id:?}"
    );
    visitor.close().await;

    // The dashboard's memory tap sees the outage and the recovery.
    let (monitor, mut events) = MonitorHandle::start();
    monitor.command(MonitorCommand::SetTap(Some(demo.tap_source())));
    tap_state(&mut events, "memory tap connected", |s| {
        *s == LinkState::Connected
    })
    .await;
    assert!(demo.command(DemoCommand::StopBackplane));
    until(&demo, "backplane stopped", |s| !s.backplane_running).await;
    tap_state(&mut events, "memory tap reconnecting", |s| {
        matches!(s, LinkState::Reconnecting { .. })
    })
    .await;
    assert!(demo.command(DemoCommand::StartBackplane));
    until(&demo, "backplane running", |s| s.backplane_running).await;
    tap_state(&mut events, "memory tap connected again", |s| {
        *s == LinkState::Connected
    })
    .await;
    monitor.shutdown();
    within_for("monitor stopped", WAIT, monitor.stopped()).await;

    assert!(demo.command(DemoCommand::AddNode));
    let status = until(&demo, "a third node with clients", |s| {
        s.nodes.len() == 3 && s.sim_clients == 9
    })
    .await;
    assert_eq!(status.nodes[2].name, "node-c");
    assert!(status.nodes[2].running);

    assert!(demo.command(DemoCommand::StopNode("node-a".into())));
    let status = until(&demo, "node-a stopped", |s| {
        !s.nodes[0].running && s.sim_clients == 6
    })
    .await;
    assert_eq!(status.nodes.len(), 3);
    assert_eq!(demo.node_targets().len(), 2);

    assert!(demo.command(DemoCommand::SetSimulation(sim(1))));
    until(&demo, "one client per running node", |s| {
        s.sim_clients == 2 && s.sim.clients_per_node == 1
    })
    .await;

    within_for("demo shutdown", Duration::from_secs(15), demo.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_demo_survives_a_backplane_restart() {
    assert!(
        common::redis::redis_available(),
        "redis-server must be on PATH for this test"
    );
    let options = DemoOptions {
        backplane: DemoBackplane::Redis,
        sim: sim(2),
        ..DemoOptions::default()
    };
    let demo = within_for("starting the demo", WAIT, DemoHandle::start(options))
        .await
        .unwrap();
    let status = demo.status();
    assert_eq!(status.backplane_kind, "redis");
    let redis_url = status.redis_url.clone().expect("a redis URL");
    until(&demo, "4 simulated clients", |s| s.sim_clients == 4).await;
    for node in &status.nodes {
        stats_until(&node.stats_url, "backplane connected", |s| {
            s["backplane"]["status"]["state"] == "connected"
        })
        .await;
    }

    assert!(demo.command(DemoCommand::StopBackplane));
    until(&demo, "backplane stopped", |s| !s.backplane_running).await;
    for node in &status.nodes {
        stats_until(&node.stats_url, "backplane reconnecting", |s| {
            s["backplane"]["status"]["state"] == "reconnecting"
        })
        .await;
    }
    assert!(demo.command(DemoCommand::StartBackplane));
    until(&demo, "backplane running", |s| s.backplane_running).await;
    for node in &status.nodes {
        stats_until(&node.stats_url, "backplane connected again", |s| {
            s["backplane"]["status"]["state"] == "connected" && s["backplane"]["status"]["connects"] == 2
        })
        .await;
    }
    let received = demo.status().sim_received;
    until(&demo, "chat flowing after the restart", |s| {
        s.sim_received > received + 5
    })
    .await;

    within_for("demo shutdown", Duration::from_secs(15), demo.shutdown()).await;
    let port = redis_url.rsplit(':').next().unwrap().to_string();
    assert!(
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
        "redis-server still listening after shutdown"
    );
}

/// The pid of `parent`'s child process named `name`, from /proc.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if comm == name && ppid == Some(parent) {
            return Some(pid);
        }
    }
    None
}

/// Whether `pid` is running (a zombie waiting for a reaper counts as gone).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `switchboard demo` on a private redis-server under Xvfb, sends it `signal`, and checks its
/// redis-server dies and its folder goes (removed by the demo, or swept when it could not).
fn signal_the_demo(signal: &str) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let x = common::xvfb::Xvfb::start();
    let tmp = std::env::temp_dir().join(format!("switchboard-signal-test-{}-{signal}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "demo",
            "--backplane",
            "redis",
            "--clients",
            "2",
            "--exit-after",
            "120",
        ])
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .env("TMPDIR", &tmp)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let demo_pid = demo.id();
    let stdout = demo.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo never announced its redis-server"
        );
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && line.contains("private redis-server")
        {
            break;
        }
    }
    let redis = child_named(demo_pid, "redis-server").expect("the demo's redis-server is its child");
    let parent = tmp.join("switchboard-demo-redis");
    let folder = parent.join(format!("{demo_pid}-0"));
    assert!(folder.is_dir(), "{} exists while the demo runs", folder.display());
    // Let the window open, so SIGINT/SIGTERM take the window's close path.
    std::thread::sleep(Duration::from_secs(3));
    assert!(demo.try_wait().unwrap().is_none(), "the demo still runs");

    let sent = Command::new("kill")
        .args([format!("-{signal}"), demo_pid.to_string()])
        .status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -{signal}");
    let mut status = None;
    wait_until(
        &format!("the demo exits on SIG{signal}"),
        Duration::from_secs(30),
        || {
            status = demo.try_wait().unwrap();
            status.is_some()
        },
    );
    wait_until(
        &format!("redis-server {redis} is gone after SIG{signal}"),
        Duration::from_secs(5),
        || !running(redis),
    );
    if signal == "KILL" {
        // The killed demo could not remove its folder: the next start sweeps it.
        assert!(folder.is_dir(), "left behind by SIGKILL");
        assert_eq!(switchboard::demo::redis_server::sweep_stale_folders(&parent), 1);
    } else {
        let status = status.unwrap();
        assert!(status.success(), "SIG{signal} closes the demo cleanly: {status}");
    }
    assert!(!folder.exists(), "{} is removed", folder.display());
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn sigint_sigterm_and_sigkill_leave_no_redis_server_behind() {
    if !switchboard::demo::redis_server::on_path() {
        eprintln!("skipped: no redis-server on PATH");
        return;
    }
    for signal in ["TERM", "INT", "KILL"] {
        signal_the_demo(signal);
    }
}
