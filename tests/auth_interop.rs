//! `--auth jwt` with the official `@microsoft/signalr` client (`accessTokenFactory`): two nodes on
//! one real `redis-server`, both requiring HS256 tokens; `tests/js/auth_interop.mjs` connects
//! alice to node A and bob to node B (JSON and MessagePack, with and without negotiate) and checks
//! that `SendToUser("bob")` from A reaches the user the token names on B, that `?user=` is
//! ignored, and that no token or an expired one is refused.
//!
//! Needs `node` (and `npm` when `tests/js/node_modules` is missing).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::redis::RedisServer;
use common::unique_prefix;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use switchboard::hub::auth::{JwtSecret, JwtSettings, KeySource, Verifier};
use switchboard::hub::{BackplaneChoice, NodeConfig};

/// A secret for this test only.
const SECRET: &[u8] = b"switchboard-auth-interop-secret-test-only";
/// ok lines auth_interop.mjs prints: 3 checks × 4 modes, plus 4 refusals.
const CHECKS: usize = 16;
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);
const NPM_CI_TIMEOUT: Duration = Duration::from_secs(300);

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js")
}

/// (success, stdout, stderr) of `command`, killed after `limit`.
fn run(mut command: Command, what: &str, limit: Duration) -> (bool, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {limit:?}, killed\n{}",
                out.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), out.join().unwrap(), err.join().unwrap())
}

fn ensure_node_modules() {
    let dir = js_dir();
    if dir.join("node_modules/@microsoft/signalr/package.json").is_file()
        && dir
            .join("node_modules/@microsoft/signalr-protocol-msgpack/package.json")
            .is_file()
    {
        return;
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir);
    let (ok, out, err) = run(npm, "npm ci in tests/js", NPM_CI_TIMEOUT);
    assert!(ok, "npm ci in tests/js failed\n{out}\n{err}");
}

/// Two nodes named `names` with `--auth jwt` (HS256 on [`SECRET`]) on one private Redis, both
/// connected; the Redis lives as long as the first value.
async fn two_auth_nodes(names: [&str; 2]) -> (RedisServer, Vec<switchboard::hub::NodeHandle>) {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let verifier = Arc::new(
        Verifier::new(JwtSettings::new(KeySource::Secret(
            JwtSecret::new(SECRET).unwrap(),
        )))
        .unwrap(),
    );
    let mut nodes = Vec::new();
    for name in names {
        let mut config = NodeConfig::new(name);
        config.channel_prefix = prefix.clone();
        config.auth = Some(verifier.clone());
        let node = common::start_node_with(config, BackplaneChoice::RedisUrl(redis.url())).await;
        common::wait_connected(&node).await;
        nodes.push(node);
    }
    (redis, nodes)
}

fn token(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_js_client_with_access_token_factory_across_two_redis_nodes() {
    tokio::task::spawn_blocking(ensure_node_modules).await.unwrap();
    let (_redis, nodes) = two_auth_nodes(["auth-a", "auth-b"]).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let alice = token(json!({"sub": "alice", "exp": now + 600}));
    let bob = token(json!({"sub": "bob", "exp": now + 600}));
    let expired = token(json!({"sub": "bob", "exp": now - 3600}));

    let mut node = Command::new("node");
    node.arg(js_dir().join("auth_interop.mjs"))
        .args([nodes[0].hub_url(), nodes[1].hub_url(), alice, bob, expired])
        .current_dir(js_dir());
    let (ok, stdout, stderr) =
        tokio::task::spawn_blocking(move || run(node, "node tests/js/auth_interop.mjs", SCRIPT_TIMEOUT))
            .await
            .unwrap();
    println!("--- auth_interop.mjs ---\n{stdout}\n--- stderr ---\n{stderr}");
    for node in &nodes {
        node.shutdown().await;
    }
    let oks = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(
        ok && !stdout.contains("\nFAIL "),
        "auth_interop.mjs failed:\n{stdout}"
    );
    assert_eq!(oks, CHECKS, "expected {CHECKS} ok lines:\n{stdout}");
    assert!(stdout.contains(&format!("{CHECKS} passed, 0 failed")), "{stdout}");
}

/// The built-in chat page's own client (`assets/chat.js`) against a node with `--auth jwt`:
/// `tests/js/chat_page_auth.mjs` (see there for the checks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_asks_for_a_token_and_connects_with_it() {
    tokio::task::spawn_blocking(ensure_node_modules).await.unwrap();
    let mut config = NodeConfig::new("auth-page");
    config.channel_prefix = unique_prefix();
    config.auth = Some(Arc::new(
        Verifier::new(JwtSettings::new(KeySource::Secret(
            JwtSecret::new(SECRET).unwrap(),
        )))
        .unwrap(),
    ));
    let node = common::start_node_with(config, BackplaneChoice::Alone).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let page_user = token(json!({"sub": "page-user", "exp": now + 600}));
    let mut script = Command::new("node");
    script
        .arg(js_dir().join("chat_page_auth.mjs"))
        .args([node.base_url(), page_user])
        .current_dir(js_dir());
    let (ok, stdout, stderr) =
        tokio::task::spawn_blocking(move || run(script, "node tests/js/chat_page_auth.mjs", SCRIPT_TIMEOUT))
            .await
            .unwrap();
    println!("--- chat_page_auth.mjs ---\n{stdout}\n--- stderr ---\n{stderr}");
    node.shutdown().await;
    assert!(ok, "chat_page_auth.mjs failed:\n{stdout}");
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
}

/// The Python `signalrcore` client (its `access_token_factory`), installed by `scripts/test.sh`
/// into `tests/py/.venv`: the same two-node check as the JS client (`tests/py/auth_interop.py`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_signalrcore_with_access_token_factory_across_two_redis_nodes() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/.venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/test.sh (it makes the venv and installs signalrcore)",
        python.display()
    );
    let (_redis, nodes) = two_auth_nodes(["py-a", "py-b"]).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let alice = token(json!({"sub": "alice", "exp": now + 600}));
    let bob = token(json!({"sub": "bob", "exp": now + 600}));
    let mut script = Command::new(python);
    script
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/auth_interop.py"))
        .args([nodes[0].hub_url(), nodes[1].hub_url(), alice, bob]);
    let (ok, stdout, stderr) =
        tokio::task::spawn_blocking(move || run(script, "tests/py/auth_interop.py", SCRIPT_TIMEOUT))
            .await
            .unwrap();
    println!("--- auth_interop.py ---\n{stdout}\n--- stderr ---\n{stderr}");
    for node in &nodes {
        node.shutdown().await;
    }
    assert!(ok, "auth_interop.py failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
}
