//! `switchboard hub --auth jwt` against real nodes over real HTTP and WebSockets: every refusal
//! is a `401` with `WWW-Authenticate: Bearer` and its one-line reason, on negotiate and on the
//! WebSocket upgrade; a valid token works from the `Authorization` header and from
//! `access_token`; the token names the user (`?user=` is ignored); another connection's
//! AddToGroup needs the admin role; a token that expires mid-connection gets a Close naming the
//! expiry; a listener beyond loopback ignores `?user=` unless `--trust-user-param`; the real
//! binary never logs `access_token` (even at trace level) and refuses a bad key setup with exit 3.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{STEP, expect_close, expect_message, s, within};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use switchboard::client::http::{RequestOptions, request_with};
use switchboard::client::{ClientEvent, ClientOptions, HubClient, connect_raw_ws_with, str_args};
use switchboard::hub::auth::{JwtSecret, JwtSettings, KeySource, Verifier};
use switchboard::hub::{BackplaneChoice, NodeConfig, NodeHandle};
use switchboard::protocol::CompletionResult;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// A secret for these tests only.
const SECRET: &[u8] = b"switchboard-auth-test-secret-do-not-use";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn token_for(user: &str) -> String {
    token(json!({"sub": user, "exp": now() + 600, "aud": "sb", "iss": "test-issuer"}))
}

fn admin_token(user: &str) -> String {
    token(
        json!({"sub": user, "exp": now() + 600, "aud": "sb", "iss": "test-issuer", "roles": ["x", "switchboard-admin"]}),
    )
}

async fn secret_node(edit: impl FnOnce(&mut JwtSettings)) -> NodeHandle {
    let mut settings = JwtSettings::new(KeySource::Secret(JwtSecret::new(SECRET).unwrap()));
    settings.audience = Some("sb".into());
    settings.issuer = Some("test-issuer".into());
    edit(&mut settings);
    let mut config = NodeConfig::new("auth-node");
    config.channel_prefix = common::unique_prefix();
    config.auth = Some(Arc::new(Verifier::new(settings).unwrap()));
    common::start_node_with(config, BackplaneChoice::Alone).await
}

async fn negotiate(node: &NodeHandle, headers: &[(&str, &str)]) -> switchboard::client::http::HttpResponse {
    let url = format!("{}/negotiate?negotiateVersion=1", node.hub_url());
    let options = RequestOptions {
        headers,
        timeout: Some(STEP),
        tls: None,
    };
    request_with("POST", &url, b"", options).await.unwrap()
}

/// A WebSocket upgrade request (GET with the upgrade headers) whose answer is read as plain HTTP:
/// what a refused upgrade looks like on the wire.
async fn upgrade(
    node: &NodeHandle,
    query: &str,
    headers: &[(&str, &str)],
) -> switchboard::client::http::HttpResponse {
    let url = format!("{}{query}", node.hub_url());
    let mut all = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    all.extend_from_slice(headers);
    let options = RequestOptions {
        headers: &all,
        timeout: Some(STEP),
        tls: None,
    };
    request_with("GET", &url, b"", options).await.unwrap()
}

fn assert_refused(response: &switchboard::client::http::HttpResponse, reason: &str, what: &str) {
    assert_eq!(response.status, 401, "{what}: {}", response.text());
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "{what}: WWW-Authenticate {challenge:?}"
    );
    let body = response.text();
    assert!(body.contains(reason), "{what}: expected {reason:?} in {body:?}");
    assert_eq!(body.trim_end().lines().count(), 1, "{what}: one line: {body:?}");
}

#[tokio::test]
async fn every_refusal_is_a_401_with_its_reason_on_negotiate_and_on_the_upgrade() {
    let node = secret_node(|s| s.leeway = Duration::ZERO).await;
    let t = now();
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "bob", "exp": t + 600, "aud": "sb", "iss": "test-issuer"}),
        &EncodingKey::from_secret(b"not-the-secret").unwrap(),
    )
    .unwrap();
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(
            json!({"sub": "bob", "exp": t + 600, "aud": "sb", "iss": "test-issuer"})
                .to_string()
                .as_bytes()
        )
    );
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "missing token"),
        (
            "expired",
            Some(token(
                json!({"sub": "bob", "exp": t - 60, "aud": "sb", "iss": "test-issuer"}),
            )),
            "expired",
        ),
        (
            "not yet valid",
            Some(token(
                json!({"sub": "bob", "exp": t + 600, "nbf": t + 300, "aud": "sb", "iss": "test-issuer"}),
            )),
            "not yet valid",
        ),
        ("bad signature", Some(forged), "bad signature"),
        (
            "wrong audience",
            Some(token(
                json!({"sub": "bob", "exp": t + 600, "aud": "other", "iss": "test-issuer"}),
            )),
            "wrong audience",
        ),
        (
            "wrong issuer",
            Some(token(
                json!({"sub": "bob", "exp": t + 600, "aud": "sb", "iss": "evil"}),
            )),
            "wrong issuer",
        ),
        ("malformed", Some("abc.def".into()), "malformed"),
        ("alg none", Some(unsigned), "alg none"),
    ];
    for (what, token, reason) in cases {
        let header = token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", h.as_str())).collect();
        assert_refused(
            &negotiate(&node, &headers).await,
            reason,
            &format!("negotiate, {what}"),
        );
        assert_refused(
            &upgrade(&node, "", &headers).await,
            reason,
            &format!("upgrade (header), {what}"),
        );
        let query = token
            .as_ref()
            .map(|t| format!("?access_token={}", switchboard::client::encode_component(t)))
            .unwrap_or_default();
        assert_refused(
            &upgrade(&node, &query, &[]).await,
            reason,
            &format!("upgrade (query), {what}"),
        );
    }
    // The JWKS kid cases, on a node whose keys are an oct JWKS.
    let dir = std::env::temp_dir().join(format!("sb-auth-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(
        &jwks,
        json!({"keys": [{"kty": "oct", "kid": "k1", "k": b64(SECRET)}]}).to_string(),
    )
    .unwrap();
    let mut config = NodeConfig::new("jwks-node");
    config.auth = Some(Arc::new(
        Verifier::new(JwtSettings::new(KeySource::JwksFile(jwks))).unwrap(),
    ));
    let jwks_node = common::start_node_with(config, BackplaneChoice::Alone).await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k9".into());
    let claims = json!({"sub": "bob", "exp": t + 600});
    let key = EncodingKey::from_secret(SECRET).unwrap();
    let unknown = format!("Bearer {}", encode(&header, &claims, &key).unwrap());
    assert_refused(
        &negotiate(&jwks_node, &[("Authorization", &unknown)]).await,
        "unknown kid",
        "jwks, unknown kid",
    );
    header.kid = Some("k1".into());
    let known = format!("Bearer {}", encode(&header, &claims, &key).unwrap());
    assert_eq!(
        negotiate(&jwks_node, &[("Authorization", &known)]).await.status,
        200
    );
    let _ = std::fs::remove_dir_all(dir);
    jwks_node.shutdown().await;
    node.shutdown().await;
}

/// A client with `access_token` (and `?user=`) on the negotiate and WebSocket URLs.
async fn client(node: &NodeHandle, token: &str, user: Option<&str>) -> HubClient {
    let options = ClientOptions {
        user: user.map(str::to_string),
        extra_query: vec![("access_token".into(), token.into())],
        ..ClientOptions::default()
    };
    within(
        "connect with a token",
        HubClient::connect(&node.hub_url(), options),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_valid_token_works_from_the_header_and_from_access_token_and_names_the_user() {
    let node = secret_node(|_| {}).await;
    let bearer = format!("Bearer {}", token_for("bob"));
    let response = negotiate(&node, &[("Authorization", &bearer)]).await;
    assert_eq!(response.status, 200, "{}", response.text());

    // `?user=alice` with a token for bob is bob.
    let mut bob = client(&node, &token_for("bob"), Some("alice")).await;
    let carol = client(&node, &token_for("carol"), None).await;
    assert_eq!(
        within(
            "SendToUser bob",
            carol.invoke("SendToUser", str_args(&["bob", "carol", "hi bob"]))
        )
        .await
        .unwrap(),
        CompletionResult::Void
    );
    let args = expect_message(&mut bob, "ReceiveMessage", STEP).await;
    assert_eq!(args, vec![s("carol"), s("hi bob")]);
    // Nothing for "alice": sent first, then a marker to bob's user; bob gets only the marker.
    carol
        .invoke("SendToUser", str_args(&["alice", "carol", "for alice"]))
        .await
        .unwrap();
    carol
        .invoke("SendToUser", str_args(&["bob", "carol", "marker"]))
        .await
        .unwrap();
    let args = expect_message(&mut bob, "ReceiveMessage", STEP).await;
    assert_eq!(args, vec![s("carol"), s("marker")], "?user=alice was ignored");

    // The WebSocket with the token in the Authorization header (no negotiate).
    let ws_url = node.hub_url();
    let mut ws = within(
        "raw WebSocket with a header",
        connect_raw_ws_with(&ws_url, None, &[("Authorization", &bearer)]),
    )
    .await
    .unwrap();
    within(
        "handshake",
        ws.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}")),
    )
    .await
    .unwrap();
    let answer = within("handshake answer", ws.next()).await.unwrap().unwrap();
    assert_eq!(answer.into_text().unwrap().as_str(), "{}\u{1e}");
    carol
        .invoke("SendToUser", str_args(&["bob", "carol", "to both"]))
        .await
        .unwrap();
    loop {
        let frame = within("ReceiveMessage on the raw socket", ws.next())
            .await
            .unwrap()
            .unwrap();
        let text = frame.into_text().unwrap();
        if text.contains("ReceiveMessage") {
            assert!(text.contains("to both"), "{text}");
            break;
        }
    }
    // And a WebSocket upgrade without any token is refused even with ?user=.
    assert_refused(
        &upgrade(&node, "?user=bob", &[]).await,
        "missing token",
        "no token",
    );
    drop(ws);
    bob.close().await;
    carol.close().await;
    node.shutdown().await;
}

fn completion_error(result: CompletionResult) -> String {
    match result {
        CompletionResult::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn another_connections_groups_need_the_admin_role() {
    let node = secret_node(|_| {}).await;
    let mut target = client(&node, &token_for("target"), None).await;
    let plain = client(&node, &token_for("plain"), None).await;
    let admin = client(&node, &admin_token("admin"), None).await;
    let target_id = target.connection_id().unwrap().to_string();
    let plain_id = plain.connection_id().unwrap().to_string();

    for method in ["AddToGroup", "RemoveFromGroup"] {
        let result = within(method, plain.invoke(method, str_args(&[&target_id, "room"])))
            .await
            .unwrap();
        let error = completion_error(result);
        assert!(
            error.contains("HubException") && error.contains("'switchboard-admin' role"),
            "{method}: {error}"
        );
    }
    // A connection may always add and remove itself.
    for method in ["AddToGroup", "RemoveFromGroup"] {
        assert_eq!(
            plain
                .invoke(method, str_args(&[&plain_id, "mine"]))
                .await
                .unwrap(),
            CompletionResult::Void,
            "{method} of itself"
        );
    }
    assert_eq!(
        plain.invoke("JoinGroup", str_args(&["mine"])).await.unwrap(),
        CompletionResult::Void
    );
    // The admin may.
    assert_eq!(
        within(
            "admin AddToGroup",
            admin.invoke("AddToGroup", str_args(&[&target_id, "room"]))
        )
        .await
        .unwrap(),
        CompletionResult::Void
    );
    admin
        .invoke("SendToGroup", str_args(&["room", "admin", "welcome"]))
        .await
        .unwrap();
    let args = expect_message(&mut target, "ReceiveMessage", STEP).await;
    assert_eq!(args, vec![s("admin"), s("welcome")]);
    target.close().await;
    plain.close().await;
    admin.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_token_that_expires_mid_connection_gets_a_close_naming_the_expiry() {
    let node = secret_node(|s| s.leeway = Duration::ZERO).await;
    let short = token(json!({"sub": "brief", "exp": now() + 2, "aud": "sb", "iss": "test-issuer"}));
    let mut brief = client(&node, &short, None).await;
    let (error, _) = expect_close(&mut brief, Duration::from_secs(15)).await;
    let error = error.unwrap_or_default();
    assert!(error.contains("access token expired"), "{error}");
    node.shutdown().await;

    // With close_on_expiry off, the connection stays (positive marker: an Echo after exp).
    let node = secret_node(|s| {
        s.leeway = Duration::ZERO;
        s.close_on_expiry = false;
    })
    .await;
    let short = token(json!({"sub": "brief", "exp": now() + 1, "aud": "sb", "iss": "test-issuer"}));
    let mut stays = client(&node, &short, None).await;
    let exp = now() + 1;
    while now() <= exp + 1 {
        if let Some(event) = stays.recv_timeout(Duration::from_millis(500)).await {
            panic!("expected nothing, got {event:?}");
        }
    }
    assert_eq!(
        within("Echo after exp", stays.invoke("Echo", str_args(&["still here"])))
            .await
            .unwrap(),
        CompletionResult::Value(s("still here"))
    );
    stays.close().await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_listener_beyond_loopback_ignores_user_unless_trusted() {
    for trust in [false, true] {
        let mut config = NodeConfig::new("open-node");
        config.listen = "0.0.0.0:0".parse().unwrap();
        config.trust_user_param = trust;
        let node = common::start_node_with(config, BackplaneChoice::Alone).await;
        let url = format!("http://127.0.0.1:{}/chat", node.local_addr().port());
        let options = ClientOptions {
            user: Some("alice".into()),
            ..ClientOptions::default()
        };
        let mut alice = within("connect", HubClient::connect(&url, options))
            .await
            .unwrap();
        let me = alice.connection_id().unwrap().to_string();
        alice
            .invoke("SendToUser", str_args(&["alice", "x", "as alice"]))
            .await
            .unwrap();
        alice
            .invoke("SendToConnection", str_args(&[&me, "x", "marker"]))
            .await
            .unwrap();
        let first = expect_message(&mut alice, "ReceiveMessage", STEP).await;
        if trust {
            assert_eq!(
                first,
                vec![s("x"), s("as alice")],
                "--trust-user-param: ?user= counts"
            );
        } else {
            assert_eq!(
                first,
                vec![s("x"), s("marker")],
                "beyond loopback: ?user= is ignored"
            );
        }
        alice.close().await;
        node.shutdown().await;
    }
}

/// Starts the real binary with `args` and the secret in the environment; returns the child and
/// its hub URL (from the first stdout line).
async fn start_binary(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    let mut command = Command::new(BIN);
    command
        .args(["hub", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("SWITCHBOARD_JWT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("the binary starts");
    // Read from the start: a trace log fills a pipe nobody reads, and the node would block.
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let hub_url = common::bin::hub_url_in(&common::bin::startup_line(child.stdout.take().unwrap()).await);
    (child, hub_url, log)
}

#[tokio::test]
async fn the_binary_never_logs_access_token_even_at_trace_level() {
    let secret = std::str::from_utf8(SECRET).unwrap();
    let (mut child, hub_url, log) = start_binary(
        &[
            "--auth",
            "jwt",
            "--jwt-audience",
            "sb",
            "--jwt-issuer",
            "test-issuer",
        ],
        &[("SWITCHBOARD_JWT_SECRET", secret), ("RUST_LOG", "trace")],
    )
    .await;
    let good = token_for("bob");
    let options = ClientOptions {
        extra_query: vec![("access_token".into(), good.clone())],
        ..ClientOptions::default()
    };
    let client = within("connect", HubClient::connect(&hub_url, options))
        .await
        .unwrap();
    assert_eq!(
        client.invoke("Echo", str_args(&["traced"])).await.unwrap(),
        CompletionResult::Value(s("traced"))
    );
    client.close().await;
    // A refused one too (bad signature), by query.
    let bad = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "x", "exp": now() + 60}),
        &EncodingKey::from_secret(b"wrong").unwrap(),
    )
    .unwrap();
    let refused = switchboard::client::http::request_with_timeout(
        "POST",
        &format!("{hub_url}/negotiate?access_token={bad}"),
        b"",
        STEP,
    )
    .await
    .unwrap();
    assert_eq!(refused.status, 401);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = within("exit", tokio::task::spawn_blocking(move || child.wait())).await;
    let log = within(
        "the node's log",
        tokio::task::spawn_blocking(move || log.join().unwrap()),
    )
    .await
    .unwrap();
    // Positive marker: the trace log did record this connection and the refusal.
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "not a trace log: {log}"
    );
    assert!(log.contains("request refused"), "the refusal is logged: {log}");
    for (what, needle) in [
        ("good token", good.as_str()),
        ("bad token", bad.as_str()),
        ("secret", secret),
    ] {
        assert!(!log.contains(needle), "the {what} is in the log");
        // The signature part alone must not appear either.
        let signature = needle.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "the {what}'s signature is in the log");
    }
}

#[test]
fn a_bad_key_setup_is_a_usage_error_with_exit_2_that_never_shows_the_secret() {
    let dir = std::env::temp_dir().join(format!("sb-auth-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, "cli-secret-value-42\n").unwrap();
    let empty = empty.to_str().unwrap();
    let secret_file = secret_file.to_str().unwrap();
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (vec!["--auth", "jwt"], None, "needs a key"),
        (
            vec!["--auth", "jwt", "--jwt-secret-file", secret_file],
            Some("env-secret-value-42"),
            "exactly one key source",
        ),
        (
            vec![
                "--auth",
                "jwt",
                "--jwt-secret-file",
                secret_file,
                "--jwt-jwks",
                empty,
            ],
            None,
            "exactly one key source",
        ),
        (
            vec!["--auth", "jwt", "--jwt-secret-file", "/nonexistent/sb/secret"],
            None,
            "/nonexistent/sb/secret",
        ),
        (
            vec!["--auth", "jwt", "--jwt-secret-file", empty],
            None,
            "is empty",
        ),
        (vec!["--auth", "jwt", "--jwt-public-key", empty], None, "is empty"),
        (
            vec!["--auth", "jwt", "--jwt-public-key", secret_file],
            None,
            "not a PEM",
        ),
        (
            vec!["--auth", "jwt", "--jwt-jwks", secret_file],
            None,
            "not a JWKS",
        ),
        (vec!["--jwt-secret-file", secret_file], None, "need --auth jwt"),
    ];
    for (args, env, expected) in cases {
        let mut command = Command::new(BIN);
        command
            .args(["hub", "--listen", "127.0.0.1:0"])
            .args(&args)
            .env_remove("SWITCHBOARD_JWT_SECRET")
            .env_remove("REDIS_URL");
        if let Some(env) = env {
            command.env("SWITCHBOARD_JWT_SECRET", env);
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("secret-value-42"),
            "{args:?}: the secret is shown: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn negotiate_without_auth_is_unchanged() {
    // A node without --auth answers negotiate without any token, and ?user= on loopback counts.
    let node = common::start_node("plain", BackplaneChoice::Alone, &common::unique_prefix()).await;
    assert_eq!(negotiate(&node, &[]).await.status, 200);
    let mut alice = common::connect(&node, switchboard::protocol::Protocol::Json, Some("alice")).await;
    alice
        .invoke("SendToUser", str_args(&["alice", "x", "loopback demo identity"]))
        .await
        .unwrap();
    let args = expect_message(&mut alice, "ReceiveMessage", STEP).await;
    assert_eq!(args[1], s("loopback demo identity"));
    match alice.recv_timeout(Duration::from_millis(1)).await {
        None | Some(ClientEvent::Invocation { .. }) => {}
        Some(other) => panic!("{other:?}"),
    }
    alice.close().await;
    node.shutdown().await;
}
