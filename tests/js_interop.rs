//! Compatibility with the official `@microsoft/signalr` JavaScript client, JSON and MessagePack,
//! with and without negotiate, and mixed: two nodes share a real `redis-server`, and `tests/js/interop.mjs`
//! drives clients on both (see that file for the list of checks). The same checks run once more
//! against two nodes serving HTTPS/WSS with a test CA (Node trusts it through
//! `NODE_EXTRA_CA_CERTS`), `tests/js/chat_page.mjs` runs the built-in chat page's own client
//! against them (https negotiate, then wss), and `tests/js/tls_untrusted.mjs` checks that without
//! the CA the official client refuses the node.
//!
//! Needs `node` and `npm` on PATH; installs `tests/js/node_modules` with `npm ci` when missing.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::TestCerts;
use common::redis::RedisServer;
use common::{start_node, start_node_with, unique_prefix};
use switchboard::hub::{BackplaneChoice, NodeConfig, ServerTls};

/// Checks interop.mjs runs per (protocol, mode) pair; keep in step with its `CHECKS` list.
const CHECKS_PER_MODE: usize = 16;
/// json and messagepack, each with negotiate and with skipNegotiation, plus json on A with
/// messagepack on B; keep in step with its `MODES` list.
const MODES: usize = 5;
/// The script gives up by itself after 60 s; this only catches a script that does not.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);
/// `npm ci` of a handful of small packages; generous for a slow registry.
const NPM_CI_TIMEOUT: Duration = Duration::from_secs(300);

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js")
}

/// Output of a finished child process.
struct Finished {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// Runs `command` to completion, killing it after `limit`. Reads both pipes on their own threads
/// so a chatty child never blocks on a full pipe.
fn run_with_timeout(mut command: Command, what: &str, limit: Duration) -> Finished {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let mut stdout_pipe = child.stdout.take().expect("piped stdout");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stdout_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = stdout_reader.join().unwrap_or_default();
                let stderr = stderr_reader.join().unwrap_or_default();
                panic!(
                    "{what}: still running after {limit:?}, killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("{what}: waiting for it failed: {e}"),
        }
    };
    Finished {
        success: status.success(),
        status: status.to_string(),
        stdout: stdout_reader.join().unwrap_or_default(),
        stderr: stderr_reader.join().unwrap_or_default(),
    }
}

fn tool_available(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure the client packages are installed, running `npm ci` (from the lockfile) if not.
fn ensure_node_modules() {
    assert!(
        tool_available("node"),
        "`node` not found on PATH: the interop test runs the official SignalR JavaScript client \
         (install Node.js >= 18, e.g. apt-get install -y nodejs npm)"
    );
    let dir = js_dir();
    let installed = ["@microsoft/signalr", "@microsoft/signalr-protocol-msgpack", "ws"]
        .iter()
        .all(|package| {
            dir.join("node_modules")
                .join(package)
                .join("package.json")
                .is_file()
        });
    if installed {
        return;
    }
    assert!(
        tool_available("npm"),
        "tests/js/node_modules is missing and `npm` was not found on PATH to install it \
         (install npm, e.g. apt-get install -y npm, or run `npm ci` in tests/js)"
    );
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir);
    let finished = run_with_timeout(npm, "npm ci in tests/js", NPM_CI_TIMEOUT);
    assert!(
        finished.success,
        "npm ci in tests/js failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        finished.status, finished.stdout, finished.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_js_client_interoperates_across_two_redis_nodes() {
    tokio::task::spawn_blocking(ensure_node_modules)
        .await
        .expect("installing the JS client packages");

    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let node_a = start_node("node-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let node_b = start_node("node-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let (url_a, url_b) = (node_a.hub_url(), node_b.hub_url());

    let script = js_dir().join("interop.mjs");
    let mut node = Command::new("node");
    node.arg(&script).arg(&url_a).arg(&url_b).current_dir(js_dir());
    let finished = tokio::task::spawn_blocking(move || {
        run_with_timeout(node, "node tests/js/interop.mjs", SCRIPT_TIMEOUT)
    })
    .await
    .expect("running interop.mjs");

    println!("--- interop.mjs stdout ---\n{}", finished.stdout);
    if !finished.stderr.trim().is_empty() {
        println!("--- interop.mjs stderr ---\n{}", finished.stderr);
    }

    node_a.shutdown().await;
    node_b.shutdown().await;

    assert_every_check_passed(&finished);
}

/// interop.mjs exited 0, printed no FAIL line, ran every check and printed its summary.
fn assert_every_check_passed(finished: &Finished) {
    let oks = finished.stdout.lines().filter(|l| l.starts_with("ok ")).count();
    let fails: Vec<&str> = finished
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL "))
        .collect();
    assert!(
        finished.success && fails.is_empty(),
        "interop.mjs failed ({}):\n{}",
        finished.status,
        fails.join("\n")
    );
    assert_eq!(
        oks,
        CHECKS_PER_MODE * MODES,
        "interop.mjs passed {oks} checks, expected {}: did it skip some?",
        CHECKS_PER_MODE * MODES
    );
    assert!(
        finished
            .stdout
            .lines()
            .any(|l| l == format!("{oks} passed, 0 failed")),
        "interop.mjs did not print its summary line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_js_client_interoperates_over_https_and_wss() {
    tokio::task::spawn_blocking(ensure_node_modules)
        .await
        .expect("installing the JS client packages");

    let certs = TestCerts::make();
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let mut nodes = Vec::new();
    for name in ["tls-a", "tls-b"] {
        let mut config = NodeConfig::new(name);
        config.channel_prefix = prefix.clone();
        config.tls = Some(ServerTls {
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
        });
        nodes.push(start_node_with(config, BackplaneChoice::RedisUrl(redis.url())).await);
    }
    let url_a = nodes[0].hub_url();
    // Node B by name: the certificate carries both 127.0.0.1 and localhost.
    let url_b = format!("https://localhost:{}/chat", nodes[1].local_addr().port());
    assert!(url_a.starts_with("https://"), "{url_a}");

    // Every check of the plain run, over https (negotiate) and wss, trusting the test CA.
    let mut node = Command::new("node");
    node.arg(js_dir().join("interop.mjs"))
        .arg(&url_a)
        .arg(&url_b)
        .env("NODE_EXTRA_CA_CERTS", &certs.ca)
        .current_dir(js_dir());
    let finished = tokio::task::spawn_blocking(move || {
        run_with_timeout(node, "node tests/js/interop.mjs over TLS", SCRIPT_TIMEOUT)
    })
    .await
    .expect("running interop.mjs over TLS");
    println!("--- interop.mjs (TLS) stdout ---\n{}", finished.stdout);
    if !finished.stderr.trim().is_empty() {
        println!("--- interop.mjs (TLS) stderr ---\n{}", finished.stderr);
    }

    // The built-in chat page's own client, as a browser runs it: https negotiate, then wss.
    let mut page = Command::new("node");
    page.arg(js_dir().join("chat_page.mjs"))
        .arg(nodes[0].base_url())
        .env("NODE_EXTRA_CA_CERTS", &certs.ca)
        .current_dir(js_dir());
    let page = tokio::task::spawn_blocking(move || {
        run_with_timeout(page, "node tests/js/chat_page.mjs over TLS", SCRIPT_TIMEOUT)
    })
    .await
    .expect("running chat_page.mjs");
    println!("--- chat_page.mjs stdout ---\n{}", page.stdout);

    // Without the CA, the official client refuses the node's certificate.
    let mut untrusted = Command::new("node");
    untrusted
        .arg(js_dir().join("tls_untrusted.mjs"))
        .arg(&url_a)
        .env_remove("NODE_EXTRA_CA_CERTS")
        .current_dir(js_dir());
    let refused = tokio::task::spawn_blocking(move || {
        run_with_timeout(untrusted, "node tests/js/tls_untrusted.mjs", SCRIPT_TIMEOUT)
    })
    .await
    .expect("running tls_untrusted.mjs");
    println!("--- tls_untrusted.mjs stdout ---\n{}", refused.stdout);

    for node in &nodes {
        node.shutdown().await;
    }
    assert_every_check_passed(&finished);
    assert!(
        page.success && page.stdout.contains("3 passed, 0 failed"),
        "chat_page.mjs ({}):\n{}\n{}",
        page.status,
        page.stdout,
        page.stderr
    );
    assert!(
        refused.success && refused.stdout.starts_with("ok refused:"),
        "tls_untrusted.mjs ({}):\n{}\n{}",
        refused.status,
        refused.stdout,
        refused.stderr
    );
    assert!(
        refused.stdout.contains("UNABLE_TO_VERIFY_LEAF_SIGNATURE")
            || refused.stdout.contains("SELF_SIGNED_CERT_IN_CHAIN")
            || refused.stdout.contains("UNABLE_TO_GET_ISSUER_CERT"),
        "the refusal is not a certificate error: {}",
        refused.stdout
    );
}
