//! The binary as a newcomer runs it: `switchboard hub ...` starts, prints where it listens, serves
//! clients, and on SIGTERM sends every client a Close with allowReconnect before exiting 0. A bad
//! Redis URL is a readable error and a non-zero exit, never a panic.

mod common;

use std::io::{BufRead, BufReader};
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
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = within("startup line", line).await.unwrap().unwrap();
    assert!(line.contains("'cli-node'"), "{line}");
    let hub_url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/chat"))
        .unwrap_or_else(|| panic!("no hub URL in {line:?}"))
        .to_string();

    let mut client = within("connect", HubClient::connect(&hub_url, ClientOptions::default()))
        .await
        .unwrap();
    assert_eq!(
        client.invoke("Echo", str_args(&["cli"])).await.unwrap(),
        CompletionResult::Value(Value::from("cli"))
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
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
