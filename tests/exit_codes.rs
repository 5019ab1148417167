//! The exit-code convention of every subcommand, through the real binary: 0 ok, 1 findings (a
//! critical finding, a failed measurement, a failure at run time), 2 bad usage or input (a bad
//! flag, URL, file or certificate). `check` and `load` against a real redis-server, a real node,
//! and a node that is dead (its port closed) exit 2; each subcommand with a bad Redis URL, a bad
//! node URL, an unknown flag or a missing certificate exits 3. `agent` follows the convention too
//! (its own tests cover it).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::Output;
use std::time::Duration;

use common::bin::text;
use common::redis::RedisServer;
use common::{start_node, unique_prefix, wait_connected};
use switchboard::hub::BackplaneChoice;

/// The binary, with a display that does not exist: nothing may get as far as opening a window.
async fn run(args: Vec<String>) -> Output {
    let env = [("WAYLAND_DISPLAY", None), ("DISPLAY", Some(":9999"))];
    common::bin::run(args, &env, Duration::from_secs(60)).await
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn bad_usage_or_input_exits_3_in_every_subcommand() {
    let bad_redis = "redis://:hunter2x@h:notaport";
    let mut cases = vec![
        args(&["hub", "--listen", "127.0.0.1:0", "--redis", bad_redis]),
        args(&["hub", "--no-such-flag"]),
        args(&[
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ]),
        args(&["tap", "--redis", bad_redis, "--no-capture"]),
        args(&["tap", "--no-capture"]),
        args(&["check", "--redis", bad_redis]),
        args(&[
            "check",
            "--redis",
            "redis://127.0.0.1:1",
            "--node",
            "ftp://x/chat",
        ]),
        args(&["check", "--redis", "redis://127.0.0.1:1", "--fail-on", "info"]),
        args(&["load", "--node", "not a url", "--duration", "1"]),
        args(&["load", "--node", "http://127.0.0.1:1/chat", "--clients", "0"]),
        args(&[
            "load",
            "--node",
            "http://127.0.0.1:1/chat",
            "--node-ca",
            "/nonexistent/ca.pem",
        ]),
    ];
    if cfg!(feature = "gui") {
        cases.push(args(&["dashboard", "--redis", bad_redis]));
        cases.push(args(&["dashboard", "--node", "not a url"]));
        cases.push(args(&["demo", "--redis", bad_redis]));
        cases.push(args(&["demo", "--nodes", "0"]));
    }
    for case in cases {
        let out = run(case.clone()).await;
        let report = text(&out);
        assert_eq!(out.status.code(), Some(3), "{case:?}: {report}");
        assert!(!report.contains("panicked"), "{case:?}: {report}");
        assert!(!report.contains("hunter2x"), "{case:?}: {report}");
        assert!(!report.contains("window"), "{case:?}: {report}");
    }
}

#[tokio::test]
async fn the_convention_is_in_the_top_level_help() {
    let out = run(args(&["--help"])).await;
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(help.contains("Exit codes"), "{help}");
    for line in [
        "  0  ok",
        "  1  warning",
        "  2  critical",
        "  3  bad usage or input",
    ] {
        assert!(help.contains(line), "{line:?} in {help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_load_with_a_dead_node_exit_2_and_with_live_ones_0() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("exit-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("exit-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let check = |nodes: Vec<String>| {
        let mut list = args(&[
            "check",
            "--redis",
            &redis.url(),
            "--channel-prefix",
            &prefix,
            "--timeout",
            "6",
            "--no-state",
        ]);
        for n in nodes {
            list.push("--node".into());
            list.push(n);
        }
        list
    };
    let load = |nodes: Vec<String>| {
        let mut list = args(&[
            "load",
            "--clients",
            "4",
            "--senders",
            "2",
            "--rate",
            "200",
            "--duration",
            "1",
            "--drain",
            "1",
            "--quiet",
        ]);
        for n in nodes {
            list.push("--node".into());
            list.push(n);
        }
        list
    };
    let live = vec![a.hub_url(), b.hub_url()];
    let out = run(check(live.clone())).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(load(live)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let dead = format!("http://127.0.0.1:{}/chat", common::free_port());
    let out = run(check(vec![a.hub_url(), dead.clone()])).await;
    let report = text(&out);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(report.contains("node-unreachable"), "{report}");
    let out = run(load(vec![a.hub_url(), dead.clone()])).await;
    let report = text(&out);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(report.contains("could not measure"), "{report}");
    // Every client on the dead node: nothing measured at all, still 2 (not bad usage).
    let out = run(load(vec![dead])).await;
    let report = text(&out);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(report.contains("no client could connect"), "{report}");
    a.shutdown().await;
    b.shutdown().await;
}
