//! The binary as a newcomer runs it: `switchboard hub ...` starts, prints where it listens, serves
//! clients, and on SIGTERM sends every client a Close with allowReconnect before exiting 0. A bad
//! Redis URL is a readable error and a non-zero exit, never a panic.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::{Command, Stdio};

use common::within;
use switchboard::client::{ClientEvent, ClientOptions, HubClient, str_args};
use switchboard::protocol::{CompletionResult, Value};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

#[tokio::test]
async fn hub_serves_then_shuts_down_gracefully_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["hub", "--listen", "127.0.0.1:0", "--name", "cli-node"])
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    // The first stdout line says where the hub listens.
    let line = common::bin::startup_line(child.stdout.take().unwrap()).await;
    assert!(line.contains("'cli-node'"), "{line}");
    let hub_url = common::bin::hub_url_in(&line);

    let mut client = within("connect", HubClient::connect(&hub_url, ClientOptions::default()))
        .await
        .unwrap();
    assert_eq!(
        client.invoke("Echo", str_args(&["cli"])).await.unwrap(),
        CompletionResult::Value(Value::from("cli"))
    );

    terminate(child, std::slice::from_mut(&mut client)).await;
}

/// `--threads 3`: the node runs two connection threads beside its own (named in /proc), six
/// clients dealt to the three all get a message sent on any of them, and SIGTERM still closes
/// every client with allowReconnect and ends the process with 0 (the threads stop with it).
#[tokio::test]
async fn a_hub_on_three_threads_delivers_across_them_and_shuts_down() {
    let mut child = Command::new(BIN)
        .args([
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "threads",
            "--threads",
            "3",
        ])
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let hub_url = common::bin::hub_url_in(&common::bin::startup_line(child.stdout.take().unwrap()).await);
    // A thread names itself once it runs, which may be just after the node says it listens.
    let pid = child.id();
    let connection_threads = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_string())
            .filter(|name| name.starts_with("switchboard-con"))
            .collect()
    };
    let mut names = connection_threads();
    for _ in 0..100 {
        if names.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        names = connection_threads();
    }
    assert_eq!(
        names.len(),
        2,
        "two connection threads beside the node's own: {names:?}"
    );

    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(
            within("connect", HubClient::connect(&hub_url, ClientOptions::default()))
                .await
                .unwrap(),
        );
    }
    // Each client in turn sends once: every message reaches all six, whichever thread serves them.
    for (i, sender) in clients.iter().enumerate() {
        within(
            "send",
            sender.invoke("SendMessage", str_args(&["user", &format!("m{i}")])),
        )
        .await
        .unwrap();
    }
    for client in &mut clients {
        let mut got = Vec::new();
        while got.len() < 6 {
            match within("receive", client.recv()).await {
                Some(ClientEvent::Invocation { target, arguments }) if target == "ReceiveMessage" => {
                    got.push(arguments[1].as_str().unwrap().to_string());
                }
                other => panic!("expected ReceiveMessage, got {other:?}"),
            }
        }
        got.sort();
        assert_eq!(got, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    }

    terminate(child, &mut clients).await;
}

/// SIGTERM to a hub: every client gets a Close with no error and allowReconnect, and the process
/// exits 0.
async fn terminate(mut child: std::process::Child, clients: &mut [HubClient]) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for client in clients {
        match within("close", client.recv()).await {
            Some(ClientEvent::Close {
                error,
                allow_reconnect,
            }) => {
                assert_eq!(error, None);
                assert!(allow_reconnect, "shutdown lets clients reconnect elsewhere");
            }
            other => panic!("expected a Close, got {other:?}"),
        }
    }
    let exit = within("exit", tokio::task::spawn_blocking(move || child.wait()))
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

#[test]
fn a_bad_redis_url_is_a_readable_error() {
    let out = Command::new(BIN)
        .args(["hub", "--listen", "127.0.0.1:0", "--redis", "not a url"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid Redis URL \"not a url\""), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_password_in_a_bad_url_is_not_printed() {
    let out = Command::new(BIN)
        .args([
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--redis",
            "redis://:hunter2x@host:notaport",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid Redis URL"), "{stderr}");
    assert!(!stderr.contains("hunter2x"), "{stderr}");
}

#[test]
fn a_port_in_use_is_a_readable_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["hub", "--listen", &addr])
        .env_remove("REDIS_URL")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("binding the hub listener on {addr}")),
        "{stderr}"
    );
}

#[cfg(feature = "gui")]
mod gui_flags {
    use super::BIN;
    use std::process::Command;

    fn run(args: &[&str], display: Option<&str>) -> (bool, String, String) {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("REDIS_URL");
        match display {
            Some(d) => cmd.env("DISPLAY", d),
            None => cmd.env_remove("DISPLAY"),
        };
        let out = cmd.output().expect("runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn demo_with_no_nodes_is_an_error() {
        let (ok, _, stderr) = run(&["demo", "--nodes", "0"], Some(":9999"));
        assert!(!ok);
        assert!(stderr.contains("the demo runs 1 to 8 nodes"), "{stderr}");
        let (ok, _, stderr) = run(&["demo", "--nodes", "9"], Some(":9999"));
        assert!(!ok && stderr.contains("1 to 8"), "{stderr}");
    }

    #[test]
    fn a_bad_redis_url_is_refused_before_any_window() {
        // A display that does not exist: the URL is refused before anything tries to open it.
        let (ok, _, stderr) = run(
            &["dashboard", "--redis", "redis://:hunter2x@h:notaport"],
            Some(":9999"),
        );
        assert!(!ok);
        assert!(
            stderr.contains("--redis: invalid Redis URL") && stderr.contains("bad port"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("hunter2x") && !stderr.contains("InvalidClientConfig"),
            "{stderr}"
        );
        assert!(!stderr.contains("window"), "{stderr}");
        let (ok, _, stderr) = run(&["dashboard", "--redis", "localhost:6379"], Some(":9999"));
        assert!(
            !ok && stderr.contains("write it like redis://host:6379/0"),
            "{stderr}"
        );
    }

    #[test]
    fn exit_after_is_hidden_from_help_but_accepted() {
        for sub in ["dashboard", "demo"] {
            let (ok, stdout, _) = run(&[sub, "--help"], None);
            assert!(ok);
            assert!(stdout.contains("--tab"), "{stdout}");
            assert!(!stdout.contains("exit-after"), "{sub} --help: {stdout}");
        }
        // Still parsed: it gets as far as the missing display.
        let (ok, _, stderr) = run(&["dashboard", "--exit-after", "1"], None);
        assert!(!ok && !stderr.contains("unexpected argument"), "{stderr}");
    }

    #[test]
    fn no_display_is_one_plain_sentence() {
        for sub in ["dashboard", "demo"] {
            let (ok, _, stderr) = run(&[sub], None);
            assert!(!ok);
            let text = stderr.trim();
            assert_eq!(
                text,
                "switchboard: there is no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set); in a terminal, watch the backplane with `switchboard tap --redis URL`, check every node with `switchboard check --redis URL`, or run a node with `switchboard hub`",
                "{sub}"
            );
        }
    }

    /// The dashboard asked for on a machine without a display names the terminal tools, with
    /// the URL it was given or without, and exits non-zero.
    #[test]
    fn no_display_names_tap_and_check() {
        for args in [&[][..], &["dashboard", "--redis", "redis://127.0.0.1:1"]] {
            let (ok, _, stderr) = run(args, None);
            assert!(!ok, "{args:?}");
            assert!(
                stderr.contains("switchboard tap --redis URL") && stderr.contains("switchboard check"),
                "{args:?}: {stderr}"
            );
        }
    }
}

/// `switchboard --help` ends with examples: one working command line per subcommand.
#[test]
fn top_level_help_has_an_example_per_subcommand() {
    let out = Command::new(BIN)
        .arg("--help")
        .env_remove("REDIS_URL")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let examples = help
        .split_once("Examples:")
        .unwrap_or_else(|| panic!("no Examples: in {help}"))
        .1;
    for line in [
        "switchboard demo --nodes 3",
        "switchboard dashboard --redis redis://127.0.0.1:6379",
        "switchboard hub --listen 127.0.0.1:5001 --redis redis://127.0.0.1:6379",
        "switchboard tap --redis redis://127.0.0.1:6379",
        "switchboard check --redis redis://127.0.0.1:6379",
        "switchboard load --node http://127.0.0.1:5001/chat",
        "switchboard agent --redis redis://127.0.0.1:6379",
    ] {
        assert!(examples.contains(line), "{line:?} in {examples}");
    }
}
