//! The tools that connect to nodes present a bearer token: the real `switchboard check` and
//! `switchboard load` binaries with `--node-token` or `--node-jwt-secret-file`, against a plain
//! TCP listener the test owns that reads every request and refuses it as a hub with `--auth jwt`
//! does (401, `WWW-Authenticate: Bearer`, one line). The header is read off the wire; minted tokens
//! are decoded with jsonwebtoken (valid HS256 for the secret, `sub` per identity); the token never
//! appears in the tools' output, even at trace level, and check's report says the node refused it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use common::listener::{REFUSED, Recorder, header, request_line};
use common::redis::RedisServer;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// `switchboard SUBCOMMAND ARGS…` at trace level (what it logs is checked for secrets).
async fn run(subcommand: &str, args: Vec<String>) -> Output {
    let args = std::iter::once(subcommand.to_string()).chain(args).collect();
    common::bin::run(args, &[("RUST_LOG", Some("trace"))], Duration::from_secs(60)).await
}

fn output_text(out: &Output) -> String {
    common::bin::text(out)
}

const SECRET_TOKEN: &str = "SECRETVALUE";
const JWT_SECRET: &[u8] = b"test-only-hs256-secret-0123456789abcdef";

fn bearer(head: &str) -> Option<String> {
    header(head, "authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
}

#[derive(Debug, serde::Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iss: Option<String>,
    aud: Option<String>,
}

fn decode(token: &str, issuer: &str, audience: &str) -> Claims {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(JWT_SECRET).unwrap(), &validation)
        .unwrap_or_else(|e| panic!("not a valid HS256 token for the secret: {e}"))
        .claims
}

fn secret_file() -> tempfile_path::Path {
    tempfile_path::Path::new(JWT_SECRET)
}

/// A file holding the secret (with a trailing newline, as `echo` writes it), removed on drop.
mod tempfile_path {
    pub struct Path(pub std::path::PathBuf);
    impl Path {
        pub fn new(secret: &[u8]) -> Path {
            let path = std::env::temp_dir().join(format!(
                "switchboard-jwt-secret-{}-{}",
                std::process::id(),
                super::common::unique_prefix().trim_end_matches(':')
            ));
            let mut bytes = secret.to_vec();
            bytes.push(b'\n');
            std::fs::write(&path, bytes).unwrap();
            Path(path)
        }
        pub fn arg(&self) -> String {
            self.0.display().to_string()
        }
    }
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_sends_a_static_token_never_logs_it_and_says_the_node_refused_it() {
    let redis = RedisServer::start().await;
    let mut node = Recorder::start(REFUSED).await;
    let out = run(
        "check",
        vec![
            "--redis".into(),
            redis.url(),
            "--node".into(),
            format!("{}/chat,none", node.base()),
            "--node-token".into(),
            SECRET_TOKEN.into(),
            "--timeout".into(),
            "3".into(),
        ],
    )
    .await;
    let text = output_text(&out);
    let at = node
        .wait_for(0, Duration::from_secs(10), "check's negotiate", |h| {
            request_line(h).starts_with("POST /chat/negotiate")
        })
        .await;
    assert_eq!(
        bearer(&node.seen[at]).as_deref(),
        Some(SECRET_TOKEN),
        "{}",
        node.seen[at]
    );
    assert!(
        text.contains("the node refused the token: the token is not valid"),
        "{text}"
    );
    assert!(
        !text.contains(SECRET_TOKEN),
        "the token leaked into the output:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_mints_a_token_for_its_user_from_a_secret_file() {
    let redis = RedisServer::start().await;
    let mut node = Recorder::start(REFUSED).await;
    let secret = secret_file();
    let out = run(
        "check",
        vec![
            "--redis".into(),
            redis.url(),
            "--node".into(),
            format!("{}/chat,none", node.base()),
            "--node-jwt-secret-file".into(),
            secret.arg(),
            "--node-jwt-issuer".into(),
            "iss-test".into(),
            "--node-jwt-audience".into(),
            "aud-test".into(),
            "--timeout".into(),
            "3".into(),
        ],
    )
    .await;
    let at = node
        .wait_for(0, Duration::from_secs(10), "check's negotiate", |h| {
            request_line(h).starts_with("POST /chat/negotiate")
        })
        .await;
    let token = bearer(&node.seen[at]).expect("a bearer token");
    let claims = decode(&token, "iss-test", "aud-test");
    assert_eq!(claims.sub, "switchboard-check");
    assert_eq!(claims.iss.as_deref(), Some("iss-test"));
    assert_eq!(claims.aud.as_deref(), Some("aud-test"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(claims.exp > now, "not expired");
    let text = output_text(&out);
    assert!(
        !text.contains(&token),
        "the minted token leaked into the output:\n{text}"
    );
    assert!(
        !text.contains(std::str::from_utf8(JWT_SECRET).unwrap()),
        "the secret leaked into the output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_sends_a_token_per_client_with_its_own_sub() {
    let mut node = Recorder::start(REFUSED).await;
    let secret = secret_file();
    let out = run(
        "load",
        vec![
            "--node".into(),
            format!("{}/chat", node.base()),
            "--clients".into(),
            "3".into(),
            "--senders".into(),
            "1".into(),
            "--duration".into(),
            "1".into(),
            "--quiet".into(),
            "--node-jwt-secret-file".into(),
            secret.arg(),
            "--node-jwt-issuer".into(),
            "i".into(),
            "--node-jwt-audience".into(),
            "a".into(),
        ],
    )
    .await;
    let text = output_text(&out);
    assert!(!out.status.success(), "no client could connect: {text}");
    assert!(text.contains("the node refused the token"), "{text}");
    let mut subs = BTreeSet::new();
    for _ in 0..3 {
        let at = node
            .wait_for(0, Duration::from_secs(10), "a negotiate from a new client", |h| {
                request_line(h).starts_with("POST /chat/negotiate")
                    && bearer(h).is_some_and(|t| !subs.contains(&decode(&t, "i", "a").sub))
            })
            .await;
        subs.insert(decode(&bearer(&node.seen[at]).unwrap(), "i", "a").sub);
    }
    let expected: BTreeSet<String> = (0..3).map(|i| format!("switchboard-load-{i}")).collect();
    assert_eq!(subs, expected);

    // A static token goes as it is.
    let mut node = Recorder::start(REFUSED).await;
    let out = run(
        "load",
        vec![
            "--node".into(),
            format!("{}/chat", node.base()),
            "--clients".into(),
            "1".into(),
            "--senders".into(),
            "1".into(),
            "--duration".into(),
            "1".into(),
            "--quiet".into(),
            "--node-token".into(),
            SECRET_TOKEN.into(),
        ],
    )
    .await;
    let at = node
        .wait_for(0, Duration::from_secs(10), "load's negotiate", |h| {
            request_line(h).starts_with("POST /chat/negotiate")
        })
        .await;
    assert_eq!(bearer(&node.seen[at]).as_deref(), Some(SECRET_TOKEN));
    let text = output_text(&out);
    assert!(
        !text.contains(SECRET_TOKEN),
        "the token leaked into the output:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_or_both_sources_are_refused_without_repeating_the_token() {
    let out = run(
        "load",
        vec![
            "--node".into(),
            "http://127.0.0.1:1/chat".into(),
            "--node-token".into(),
            "has SECRETVALUE space".into(),
        ],
    )
    .await;
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("--node-token"), "{text}");
    assert!(!text.contains(SECRET_TOKEN), "{text}");
    let secret = secret_file();
    let out = run(
        "load",
        vec![
            "--node".into(),
            "http://127.0.0.1:1/chat".into(),
            "--node-token".into(),
            SECRET_TOKEN.into(),
            "--node-jwt-secret-file".into(),
            secret.arg(),
        ],
    )
    .await;
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("cannot be used with"), "{text}");
    assert!(!text.contains(SECRET_TOKEN), "{text}");
}

/// A heartbeat announcing a listener as a node (hub `{base}/chat`, monitor endpoints at `{base}`).
fn forged_heartbeat(base: &str) -> Vec<u8> {
    serde_json::to_vec(&switchboard::status_doc::Announcement {
        kind: "switchboard.node".to_string(),
        server_name: "forged_1".to_string(),
        node_name: "forged".to_string(),
        url: base.to_string(),
        hub_url: format!("{base}/chat"),
        monitor_url: format!("{}/switchboard/monitor", base.replace("http://", "ws://")),
        hub: "ChatHub".to_string(),
        connections: 0,
        version: "x".to_string(),
        ts_ms: 1,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_sends_tokens_to_trusted_discovered_nodes_only() {
    let redis = RedisServer::start().await;
    let prefix = common::unique_prefix();
    let mut untrusted = Recorder::start(REFUSED).await;
    let mut trusted = Recorder::start(REFUSED).await;
    // Heartbeats for both, repeated while check listens for them (as live nodes do every 2 s).
    let publisher = {
        let url = redis.url();
        let channel = format!("{prefix}switchboard:nodes");
        let beats = [
            forged_heartbeat(&untrusted.base()),
            forged_heartbeat(&trusted.base()),
        ];
        tokio::spawn(async move {
            loop {
                for beat in &beats {
                    common::redis::publish(&url, &channel, beat).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let out = run(
        "check",
        vec![
            "--redis".into(),
            redis.url(),
            "--channel-prefix".into(),
            prefix.clone(),
            "--monitor-token".into(),
            "M0NITORVALUE".into(),
            "--node-token".into(),
            SECRET_TOKEN.into(),
            "--trust-nodes".into(),
            format!("http://127.0.0.1:{}/*", trusted.port),
            "--timeout".into(),
            "5".into(),
        ],
    )
    .await;
    publisher.abort();
    let text = output_text(&out);
    // Positive markers: both discovered nodes were checked.
    let negotiate = |h: &str| request_line(h).starts_with("POST /chat/negotiate");
    let stats = |h: &str| request_line(h).starts_with("GET /switchboard/stats");
    untrusted
        .wait_for(
            0,
            Duration::from_secs(10),
            "a negotiate at the untrusted node",
            negotiate,
        )
        .await;
    untrusted
        .wait_for(
            0,
            Duration::from_secs(10),
            "a stats GET at the untrusted node",
            stats,
        )
        .await;
    untrusted.drain();
    for head in &untrusted.seen {
        assert!(
            header(head, "authorization").is_none()
                && !head.contains(SECRET_TOKEN)
                && !head.contains("M0NITORVALUE"),
            "a token went to a node known only from its heartbeat:\n{head}"
        );
    }
    let at = trusted
        .wait_for(
            0,
            Duration::from_secs(10),
            "a negotiate at the trusted node",
            negotiate,
        )
        .await;
    assert_eq!(bearer(&trusted.seen[at]).as_deref(), Some(SECRET_TOKEN));
    let at = trusted
        .wait_for(
            0,
            Duration::from_secs(10),
            "a stats GET at the trusted node",
            stats,
        )
        .await;
    assert_eq!(bearer(&trusted.seen[at]).as_deref(), Some("M0NITORVALUE"));
    assert!(text.contains("not trusted"), "the report says so:\n{text}");
    assert!(
        !text.contains(SECRET_TOKEN) && !text.contains("M0NITORVALUE"),
        "{text}"
    );
}
