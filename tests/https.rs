//! HTTPS nodes (issue 7 point 5) and the shared TLS test harness (`tests/common/certs.rs`).
//!
//! Real processes on loopback: certificates made by the `openssl` CLI at test time, a TLS-only
//! `redis-server`, hub nodes serving TLS with the test CA's certificate, the crate's own client
//! (negotiate + WebSocket) over https/wss, the dashboard's runtime probing a TLS node, the
//! `switchboard hub --tls-cert` binary, and `load` over https. Bad input: a wrong CA, an expired
//! certificate, a plain client on the TLS port and the reverse, a socket that never handshakes.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::certs::{ClientAuth, TestCerts, TlsRedis};
use common::events::Seen;
use common::{STEP, expect_message, s, start_node_with, within, within_for};
use switchboard::client::{ClientOptions, HubClient, NodeTls, http};
use switchboard::hub::{BackplaneChoice, NodeConfig, NodeHandle, ServerTls};
use switchboard::monitor::{
    LinkState, MonitorCommand, MonitorEvent, MonitorHandle, MonitorOptions, NodeEvent, NodeTarget, SendBody,
    SendRequest, SendTarget,
};
use switchboard::protocol::{CompletionResult, Protocol, Value};
use switchboard::tls::{ClientTls, Connector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node serving TLS with `cert` (and the test server key) on the given backplane.
async fn tls_node(
    certs: &TestCerts,
    cert: &std::path::Path,
    name: &str,
    backplane: BackplaneChoice,
) -> NodeHandle {
    let mut config = NodeConfig::new(name);
    config.tls = Some(ServerTls {
        cert: cert.to_path_buf(),
        key: certs.server_key.clone(),
    });
    start_node_with(config, backplane).await
}

fn node_tls(tls: &ClientTls) -> NodeTls {
    NodeTls::new(tls).unwrap()
}

async fn connect_tls(
    url: &str,
    tls: &NodeTls,
    protocol: Protocol,
    negotiate: bool,
) -> Result<HubClient, String> {
    let options = ClientOptions {
        protocol,
        negotiate,
        tls: Some(tls.clone()),
        user: Some("tls-user".into()),
        ..ClientOptions::default()
    };
    within(&format!("connecting to {url}"), HubClient::connect(url, options))
        .await
        .map_err(|e| e.to_string())
}

/// Waits until the node has counted at least `n` failed TLS handshakes (the client may see its
/// socket closed an instant before the node's task counts it); returns the count.
async fn handshake_failures_reach(node: &NodeHandle, n: u64) -> u64 {
    let wait = async {
        while node.tls_handshake_failures() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        node.tls_handshake_failures()
    };
    within(&format!("{n} failed TLS handshakes counted"), wait).await
}

fn target(node: &NodeHandle) -> NodeTarget {
    NodeTarget {
        hub_url: node.hub_url(),
        monitor_url: Some(format!("{}/switchboard/stats", node.base_url())),
    }
}

/// One TLS handshake with `tls` to 127.0.0.1:`port`; the error text when it fails.
async fn handshake(tls: &ClientTls, host: &str, port: u16) -> Result<switchboard::tls::BoxedIo, String> {
    let connector = Connector::new(tls).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    within("TLS handshake", connector.connect(host, tcp))
        .await
        .map_err(|e| e.to_string())
}

async fn ping(io: &mut switchboard::tls::BoxedIo) -> String {
    within("PING over TLS", io.write_all(b"PING\r\n"))
        .await
        .expect("write");
    let mut reply = [0u8; 7];
    within("PONG over TLS", io.read_exact(&mut reply))
        .await
        .expect("read");
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test]
async fn harness_tls_redis_verifies_with_the_test_ca_and_names_what_is_wrong() {
    let certs = TestCerts::make();
    let redis = TlsRedis::start(&certs, ClientAuth::No).await;
    assert!(redis.url().starts_with("rediss://127.0.0.1:"));

    // By IP and by name: the certificate carries both.
    for host in ["127.0.0.1", "localhost"] {
        let mut io = handshake(&certs.client_tls(), host, redis.port())
            .await
            .unwrap_or_else(|e| panic!("handshake as {host}: {e}"));
        assert_eq!(ping(&mut io).await, "+PONG\r\n");
    }

    // The unrelated CA: the verify error in words.
    let e = handshake(&certs.client_tls_wrong_ca(), "127.0.0.1", redis.port())
        .await
        .err()
        .expect("the wrong CA must fail");
    assert!(e.contains("not trusted: unknown issuer"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");

    // A name the certificate does not carry.
    let e = handshake(&certs.client_tls(), "example.com", redis.port())
        .await
        .err()
        .expect("a foreign name must fail");
    assert!(e.contains("issued for another name"), "{e}");
}

#[tokio::test]
async fn harness_mutual_tls_redis_needs_the_client_certificate() {
    let certs = TestCerts::make();
    let redis = TlsRedis::start(&certs, ClientAuth::Yes).await;
    let mut io = handshake(&certs.client_tls_mutual(), "127.0.0.1", redis.port())
        .await
        .expect("mutual TLS with the client certificate");
    assert_eq!(ping(&mut io).await, "+PONG\r\n");

    // Without it, the handshake (TLS 1.3: the first read) fails with a readable line.
    let outcome = match handshake(&certs.client_tls(), "127.0.0.1", redis.port()).await {
        Err(e) => e,
        Ok(mut io) => {
            let _ = io.write_all(b"PING\r\n").await;
            let mut buf = [0u8; 7];
            match within("read without a client certificate", io.read(&mut buf)).await {
                Ok(0) => "closed".to_string(),
                Ok(n) => panic!("redis answered without a client certificate: {:?}", &buf[..n]),
                Err(e) => switchboard::tls::explain_io(&e),
            }
        }
    };
    assert!(!outcome.is_empty());
}

#[tokio::test]
async fn harness_expired_and_wrong_name_certificates_are_reported_as_such() {
    let certs = TestCerts::make();
    let expired = TlsRedis::start_with_cert(&certs, &certs.expired_cert, ClientAuth::No).await;
    let e = handshake(&certs.client_tls(), "127.0.0.1", expired.port())
        .await
        .err()
        .expect("an expired certificate must fail");
    assert!(e.contains("expired"), "{e}");
    drop(expired);

    let wrong = TlsRedis::start_with_cert(&certs, &certs.wrong_name_cert, ClientAuth::No).await;
    let e = handshake(&certs.client_tls(), "127.0.0.1", wrong.port())
        .await
        .err()
        .expect("a certificate for another name must fail");
    assert!(e.contains("issued for another name"), "{e}");
}

#[tokio::test]
async fn harness_a_plain_client_gets_no_answer_from_the_tls_port() {
    let certs = TestCerts::make();
    let redis = TlsRedis::start(&certs, ClientAuth::No).await;
    // A plain RESP client on the TLS port: redis drops it (no PONG).
    let mut tcp = within("plain connect", TcpStream::connect(("127.0.0.1", redis.port())))
        .await
        .expect("connect");
    tcp.write_all(b"PING\r\n").await.expect("write");
    let mut buf = [0u8; 64];
    let n = within_for_read(&mut tcp, &mut buf).await;
    assert!(!String::from_utf8_lossy(&buf[..n]).contains("PONG"));
}

async fn within_for_read(tcp: &mut TcpStream, buf: &mut [u8]) -> usize {
    match tokio::time::timeout(Duration::from_secs(5), tcp.read(buf)).await {
        Ok(Ok(n)) => n,
        Ok(Err(_)) => 0,
        Err(_) => 0,
    }
}

// ---- HTTPS nodes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_talks_to_a_tls_node_over_https_and_wss_in_json_and_messagepack() {
    let certs = TestCerts::make();
    let node = tls_node(&certs, &certs.server_cert, "tls-a", BackplaneChoice::Alone).await;
    assert!(node.is_tls());
    assert!(
        node.hub_url().starts_with("https://127.0.0.1:"),
        "{}",
        node.hub_url()
    );
    let tls = node_tls(&certs.client_tls());

    // Negotiate over https, then wss, both protocols; a broadcast reaches the other client.
    let mut json = connect_tls(&node.hub_url(), &tls, Protocol::Json, true)
        .await
        .unwrap();
    assert!(json.connection_id().is_some());
    let mut msgpack = connect_tls(&node.hub_url(), &tls, Protocol::MessagePack, true)
        .await
        .unwrap();
    let echo = within("Echo over wss", json.invoke("Echo", vec![s("over tls")]))
        .await
        .unwrap();
    assert_eq!(echo, CompletionResult::Value(Value::from("over tls")));
    within(
        "SendMessage over wss",
        msgpack.invoke("SendMessage", vec![s("mp"), s("hello from messagepack")]),
    )
    .await
    .unwrap();
    for client in [&mut json, &mut msgpack] {
        let args = expect_message(client, "ReceiveMessage", STEP).await;
        assert_eq!(args, vec![s("mp"), s("hello from messagepack")]);
    }

    // A wss:// URL without negotiate (skipNegotiation), by name (the certificate says localhost).
    let by_name = format!("wss://localhost:{}/chat", node.local_addr().port());
    let direct = connect_tls(&by_name, &tls, Protocol::Json, false).await.unwrap();
    let echo = within("Echo over direct wss", direct.invoke("Echo", vec![s("direct")]))
        .await
        .unwrap();
    assert_eq!(echo, CompletionResult::Value(Value::from("direct")));

    // The stats endpoint over https says https.
    let options = http::RequestOptions {
        tls: Some(&tls),
        ..http::RequestOptions::default()
    };
    let stats = within(
        "GET stats over https",
        http::request_with(
            "GET",
            &format!("{}/switchboard/stats", node.base_url()),
            b"",
            options,
        ),
    )
    .await
    .unwrap();
    assert_eq!(stats.status, 200);
    let doc: serde_json::Value = stats.json().unwrap();
    assert!(doc["url"].as_str().unwrap().starts_with("https://"), "{doc}");
    assert_eq!(doc["connections"]["total"], 3);
    // The chat page is served over https too.
    let page = within(
        "GET / over https",
        http::request_with("GET", &format!("{}/", node.base_url()), b"", options),
    )
    .await
    .unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("<html") || page.text().contains("<!doctype"),
        "{}",
        page.text()
    );
    assert_eq!(node.tls_handshake_failures(), 0);

    json.close().await;
    msgpack.close().await;
    direct.close().await;
    within("shutdown", node.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trust_and_wrong_ports_give_one_readable_line() {
    let certs = TestCerts::make();
    let node = tls_node(&certs, &certs.server_cert, "tls-b", BackplaneChoice::Alone).await;
    let port = node.local_addr().port();

    // The unrelated CA: the verify error in words, on negotiate and on a direct wss.
    let wrong = node_tls(&certs.client_tls_wrong_ca());
    for (url, negotiate) in [
        (node.hub_url(), true),
        (format!("wss://127.0.0.1:{port}/chat"), false),
    ] {
        let e = connect_tls(&url, &wrong, Protocol::Json, negotiate)
            .await
            .unwrap_err();
        assert!(e.contains("not trusted: unknown issuer"), "{url}: {e}");
        assert!(e.contains("--node-ca"), "says how to fix it: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    // No CA at all (the system's roots only): the same.
    let e = within(
        "https without the CA",
        http::request("GET", &format!("{}/", node.base_url()), b""),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown issuer"), "{e}");

    // A plain http:// client on the TLS port: the node answers 400 "use https://".
    let plain_hub = format!("http://127.0.0.1:{port}/chat");
    let e = within(
        "plain negotiate on the TLS port",
        HubClient::connect(&plain_hub, ClientOptions::default()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("HTTP 400") && e.contains("use https://"), "{e}");
    let options = ClientOptions {
        negotiate: false,
        ..ClientOptions::default()
    };
    let e = within(
        "plain ws on the TLS port",
        HubClient::connect(&plain_hub, options),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("400") && e.contains("use https://"), "{e}");
    // Counted: two wrong-CA handshakes, one without the CA, two plain requests.
    handshake_failures_reach(&node, 5).await;

    // The reverse: https:// against a plain node.
    let plain = start_node_with(NodeConfig::new("plain"), BackplaneChoice::Alone).await;
    let tls = node_tls(&certs.client_tls());
    let https_on_plain = format!("https://{}/chat", plain.local_addr());
    let e = connect_tls(&https_on_plain, &tls, Protocol::Json, true)
        .await
        .unwrap_err();
    assert!(
        e.contains("did not answer in TLS") && e.contains("http://"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");

    // The node kept serving through all of it.
    let ok = connect_tls(&node.hub_url(), &tls, Protocol::Json, true)
        .await
        .unwrap();
    ok.close().await;
    within("shutdown", node.shutdown()).await;
    within("shutdown", plain.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_wrong_name_node_certificates_are_named() {
    let certs = TestCerts::make();
    let tls = node_tls(&certs.client_tls());
    let expired = tls_node(&certs, &certs.expired_cert, "expired", BackplaneChoice::Alone).await;
    let e = connect_tls(&expired.hub_url(), &tls, Protocol::Json, true)
        .await
        .unwrap_err();
    assert!(e.contains("server certificate rejected: expired"), "{e}");
    let wrong = tls_node(
        &certs,
        &certs.wrong_name_cert,
        "wrong-name",
        BackplaneChoice::Alone,
    )
    .await;
    let e = connect_tls(&wrong.hub_url(), &tls, Protocol::Json, true)
        .await
        .unwrap_err();
    assert!(e.contains("issued for another name"), "{e}");
    within("shutdown", expired.shutdown()).await;
    within("shutdown", wrong.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_handshakes_is_closed_and_frees_its_slot() {
    let certs = TestCerts::make();
    let mut config = NodeConfig::new("tls-slow");
    config.tls = Some(ServerTls {
        cert: certs.server_cert.clone(),
        key: certs.server_key.clone(),
    });
    config.header_read_timeout = Duration::from_millis(600);
    config.max_connections = 1;
    let node = start_node_with(config, BackplaneChoice::Alone).await;

    // Holds the only slot, silent: closed after the header read timeout, counted.
    let mut silent = within("connect", TcpStream::connect(node.local_addr()))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = within_for(
        "the node to close the silent socket",
        Duration::from_secs(5),
        silent.read(&mut buf),
    )
    .await
    .unwrap_or(0);
    assert_eq!(n, 0, "nothing is sent to a socket that never handshakes");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(handshake_failures_reach(&node, 1).await, 1);

    // Half a ClientHello (a TLS record header, then nothing): also closed.
    let mut half = within("connect", TcpStream::connect(node.local_addr()))
        .await
        .unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap();
    let _ = within_for(
        "the node to close the half handshake",
        Duration::from_secs(5),
        half.read(&mut buf),
    )
    .await;
    assert_eq!(handshake_failures_reach(&node, 2).await, 2);

    // The slot is free again: a real client gets in (skipNegotiation: one TCP connection).
    let tls = node_tls(&certs.client_tls());
    let client = connect_tls(&node.hub_url(), &tls, Protocol::Json, false)
        .await
        .unwrap();
    let echo = within("Echo", client.invoke("Echo", vec![s("after")]))
        .await
        .unwrap();
    assert_eq!(echo, CompletionResult::Value(Value::from("after")));
    client.close().await;
    within("shutdown", node.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_runtime_probes_tls_nodes_with_the_node_ca() {
    let certs = TestCerts::make();
    let bus = switchboard::backplane::memory::MemoryBus::new();
    let a = tls_node(
        &certs,
        &certs.server_cert,
        "tls-a",
        BackplaneChoice::Memory(bus.clone()),
    )
    .await;
    let b = tls_node(
        &certs,
        &certs.server_cert,
        "tls-b",
        BackplaneChoice::Memory(bus.clone()),
    )
    .await;
    let tls = node_tls(&certs.client_tls());
    let options = MonitorOptions {
        node_tls: Some(tls.clone()),
        ..MonitorOptions::default()
    };
    let (monitor, rx) = MonitorHandle::start_with(options);
    let mut seen = Seen::new(rx, Duration::from_secs(20));
    assert!(monitor.command(MonitorCommand::AddNode(target(&a))));
    assert!(monitor.command(MonitorCommand::AddNode(target(&b))));

    // A client on node A shows in A's stats, pushed on the wss monitor link.
    let client = connect_tls(&a.hub_url(), &tls, Protocol::Json, true)
        .await
        .unwrap();
    let stats = seen
        .node(
            &a.hub_url(),
            "node A's stats with the client and the probe",
            |e| match e {
                NodeEvent::Stats(s) if s.connections.total == 2 => Some(s.clone()),
                _ => None,
            },
        )
        .await;
    assert_eq!(stats.node_name, "tls-a");
    assert!(stats.url.starts_with("https://"), "{}", stats.url);
    seen.node(&b.hub_url(), "an RTT of node B over https", |e| {
        matches!(e, NodeEvent::Rtt(_)).then_some(())
    })
    .await;
    for node in [&a, &b] {
        seen.node(&node.hub_url(), "the node link connected", |e| {
            (*e == NodeEvent::State(LinkState::Connected)).then_some(())
        })
        .await;
    }

    // A traced test send through A (over wss) reaches both probes.
    assert!(monitor.command(MonitorCommand::Send(SendRequest {
        node: a.hub_url(),
        target: SendTarget::All,
        body: SendBody::Chat {
            user: "dashboard".into(),
            text: "over tls".into()
        },
        count: 1,
        rate_per_sec: 1.0,
        probes_join: true,
    })));
    let trace = seen
        .find("Sent", |e| match e {
            MonitorEvent::Sent { trace, .. } => Some(*trace),
            MonitorEvent::SendFailed { error, .. } => panic!("send failed: {error}"),
            _ => None,
        })
        .await;
    for node in [&a, &b] {
        seen.node(&node.hub_url(), "the probe receiving the trace", |e| match e {
            NodeEvent::ProbeReceived { trace: t, .. } if *t == trace => Some(()),
            _ => None,
        })
        .await;
    }
    monitor.shutdown();
    within("monitor shutdown", monitor.stopped()).await;

    // Without the CA, the node's state says why, in words.
    let (monitor, rx) = MonitorHandle::start();
    let mut seen = Seen::new(rx, Duration::from_secs(20));
    assert!(monitor.command(MonitorCommand::AddNode(target(&a))));
    let error = seen
        .node(&a.hub_url(), "a reconnecting state", |e| match e {
            NodeEvent::State(LinkState::Reconnecting { error, .. }) => Some(error.clone()),
            _ => None,
        })
        .await;
    assert!(error.contains("not trusted: unknown issuer"), "{error}");
    monitor.shutdown();
    within("monitor shutdown", monitor.stopped()).await;

    client.close().await;
    within("shutdown", a.shutdown()).await;
    within("shutdown", b.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_runs_over_https_with_the_node_ca() {
    let certs = TestCerts::make();
    let node = tls_node(&certs, &certs.server_cert, "tls-load", BackplaneChoice::Alone).await;
    let mut options = switchboard::load::LoadOptions::new(vec![node.hub_url()]);
    options.clients = 20;
    options.senders = 2;
    options.rate = 200.0;
    options.duration = Duration::from_millis(500);
    options.drain = Duration::from_secs(1);
    options.node_tls = Some(node_tls(&certs.client_tls()));
    let report = within_for(
        "a short load over https",
        Duration::from_secs(30),
        switchboard::load::run(options),
    )
    .await
    .unwrap();
    let doc = serde_json::to_value(&report).unwrap();
    assert_eq!(doc["connected"], 20, "{doc:#}");
    assert!(doc["delivered"].as_u64().unwrap() > 0, "{doc:#}");

    // Without the CA no client connects, and the report's error says why.
    let mut options = switchboard::load::LoadOptions::new(vec![node.hub_url()]);
    options.clients = 2;
    options.duration = Duration::from_millis(200);
    let e = within_for(
        "a load without the CA",
        Duration::from_secs(30),
        switchboard::load::run(options),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown issuer"), "{e}");
    within("shutdown", node.shutdown()).await;
}

/// `switchboard hub --tls-cert --tls-key` prints https URLs and serves them; a bad key file is
/// named in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_binary_serves_https() {
    let certs = TestCerts::make();
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "hub",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--name",
            "tls-cli",
        ])
        .arg("--tls-cert")
        .arg(&certs.server_cert)
        .arg("--tls-key")
        .arg(&certs.server_key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = within(
        "the hub's startup line",
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        line.contains(&format!("hub https://127.0.0.1:{port}/chat")),
        "{line}"
    );
    let tls = node_tls(&certs.client_tls());
    let client = connect_tls(
        &format!("https://localhost:{port}/chat"),
        &tls,
        Protocol::Json,
        true,
    )
    .await
    .unwrap();
    let echo = within("Echo", client.invoke("Echo", vec![s("cli")]))
        .await
        .unwrap();
    assert_eq!(echo, CompletionResult::Value(Value::from("cli")));
    client.close().await;
    let _ = child.kill();
    let _ = child.wait();

    // The certificate's key swapped for the CA's: refused at start, naming the file.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["hub", "--listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(&certs.server_cert)
        .arg("--tls-key")
        .arg(&certs.other_ca_key)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--tls-key") && stderr.contains("does not fit"),
        "{stderr}"
    );
    // --tls-cert without --tls-key is a usage error.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["hub", "--listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(&certs.server_cert)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key"));
}

/// The harness's TLS redis-server with the crate's own Redis connector (rediss://, mutual TLS),
/// so the engineers building on `TlsRedis` start from a pair that is known to work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_tls_redis_works_with_the_crate_redis_connector() {
    use switchboard::redis_conn::{RedisConnector, RedisOptions, RedisSpec};

    let certs = TestCerts::make();
    let redis = TlsRedis::start(&certs, ClientAuth::Yes).await;
    let options = RedisOptions {
        tls: certs.client_tls_mutual(),
        ..RedisOptions::default()
    };
    let spec = RedisSpec::parse(&redis.url(), &options).unwrap();
    let connector = RedisConnector::new(spec).unwrap().with_name("https-harness");
    let reached = within("reach over rediss", connector.reach()).await.unwrap();
    let mut connection = within(
        "a multiplexed connection over rediss",
        connector.multiplexed(reached.entry()),
    )
    .await
    .unwrap();
    let pong: String = within(
        "PING over rediss",
        redis::cmd("PING").query_async(&mut connection),
    )
    .await
    .unwrap();
    assert_eq!(pong, "PONG");

    // Without the client certificate, mutual TLS refuses the connection. (With TLS 1.3 the
    // refusal arrives after the handshake; redis_conn words it "broken pipe" today, one line.)
    let options = RedisOptions {
        tls: certs.client_tls(),
        ..RedisOptions::default()
    };
    let spec = RedisSpec::parse(&redis.url(), &options).unwrap();
    let connector = RedisConnector::new(spec).unwrap();
    let e = within("reach without the client certificate", connector.reach())
        .await
        .unwrap_err()
        .to_string();
    assert!(!e.is_empty() && !e.contains('\n'), "{e}");
}
