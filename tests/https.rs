//! HTTPS nodes (issue 7 point 5) and the shared TLS test harness (`tests/common/certs.rs`).
//!
//! Real processes on loopback: certificates made by the `openssl` CLI at test time, a TLS-only
//! `redis-server`, hub nodes serving TLS with the test CA's certificate, and the crate's own
//! client (negotiate + WebSocket) over https/wss.

mod common;

use std::time::Duration;

use common::certs::{ClientAuth, TestCerts, TlsRedis};
use common::within;
use switchboard::tls::{ClientTls, Connector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
