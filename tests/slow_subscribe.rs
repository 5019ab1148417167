//! A slow Redis never loops the link: behind a proxy that holds every SUBSCRIBE confirmation for
//! 3 s (longer than the node's 2 s limit), a new connection's SUBSCRIBE times out, and the node
//! retries that channel alone while the link stays up and cross-node delivery to channels already
//! subscribed never stops: every message of a steady stream arrives, in order, and the node's
//! backplane never leaves `connected` (its connect count does not move). Once the proxy stops
//! holding confirmations, the retry subscribes the new connection and it receives cross-node
//! messages too.
//!
//! Real parts: a test-owned `redis-server`, a RESP-aware TCP proxy in front of it (this file), two
//! hub nodes through the proxy, real WebSocket clients.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::redis::RedisServer;
use common::{STEP, connect, start_node, unique_prefix, wait_connected, within, within_for};
use switchboard::client::{ClientEvent, HubClient, str_args};
use switchboard::hub::{BackplaneChoice, NodeHandle};
use switchboard::protocol::{Protocol, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

/// How long the proxy holds a SUBSCRIBE confirmation while `slow` is on: past the node's limit.
const HOLD: Duration = Duration::from_secs(3);

/// The length of the complete RESP frame at the start of `buf`, or `None` while it is incomplete.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let line_end = |from: usize| {
        buf[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
    };
    let header_end = line_end(0)?;
    let number = || -> Option<i64> { std::str::from_utf8(&buf[1..header_end]).ok()?.parse().ok() };
    match *buf.first()? {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' => Some(header_end + 2),
        b'$' | b'=' | b'!' => {
            let len = number()?;
            if len < 0 {
                return Some(header_end + 2);
            }
            let end = header_end + 2 + len as usize + 2;
            (buf.len() >= end).then_some(end)
        }
        b'*' | b'>' | b'~' | b'%' => {
            let mut count = number()?.max(0) as usize;
            if buf[0] == b'%' {
                count *= 2;
            }
            let mut at = header_end + 2;
            for _ in 0..count {
                at += frame_len(&buf[at..])?;
            }
            Some(at)
        }
        other => panic!("unexpected RESP type byte {other:?}"),
    }
}

/// Whether a frame is a (p/s)subscribe confirmation: an array whose first element is that word.
fn is_subscribe_confirmation(frame: &[u8]) -> bool {
    let Some(header_end) = frame.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    matches!(frame.first(), Some(b'*' | b'>'))
        && frame[header_end + 2..]
            .to_ascii_lowercase()
            .starts_with(b"$9\r\nsubscribe\r\n")
}

/// A TCP proxy in front of Redis that, while `slow` is on, holds every SUBSCRIBE confirmation for
/// [`HOLD`] and lets every other reply and message through at once.
struct Proxy {
    port: u16,
    slow: Arc<AtomicBool>,
    held: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let slow = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicU64::new(0));
        let (slow_, held_) = (slow.clone(), held.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, slow_.clone(), held_.clone()));
            }
        });
        Proxy { port, slow, held }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

async fn relay(client: TcpStream, server: TcpStream, slow: Arc<AtomicBool>, held: Arc<AtomicU64>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    // One writer to the client; held frames reach it later through the same queue.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if client_write.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match server_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut passing = Vec::new();
        while let Some(len) = frame_len(&buf) {
            let frame: Vec<u8> = buf.drain(..len).collect();
            if slow.load(Ordering::Relaxed) && is_subscribe_confirmation(&frame) {
                held.fetch_add(1, Ordering::Relaxed);
                let out_tx = out_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(HOLD).await;
                    let _ = out_tx.send(frame);
                });
            } else {
                passing.extend_from_slice(&frame);
            }
        }
        if !passing.is_empty() && out_tx.send(passing).is_err() {
            break;
        }
    }
}

/// Sequence numbers a client received from `tag` messages, in arrival order.
fn collect(mut client: HubClient, tag: &'static str) -> Arc<Mutex<Vec<u64>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        while let Some(event) = client.recv().await {
            if let ClientEvent::Invocation { arguments, .. } = event
                && let Some(Value::String(t)) = arguments.first()
                && t.as_str() == Some(tag)
                && let Some(seq) = arguments
                    .get(1)
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse().ok())
            {
                seen.lock().await.push(seq);
            }
        }
    });
    out
}

fn connects(node: &NodeHandle) -> u64 {
    node.backplane_status().borrow().connects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscribe_is_retried_alone_while_delivery_on_subscribed_channels_goes_on() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(redis.port()).await;
    let prefix = unique_prefix();
    let a = start_node("node-a", BackplaneChoice::RedisUrl(proxy.url()), &prefix).await;
    let b = start_node("node-b", BackplaneChoice::RedisUrl(proxy.url()), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;

    // The receiver on B, subscribed before Redis turns slow.
    let receiver = connect(&b, Protocol::Json, None).await;
    let receiver_id = receiver.connection_id().unwrap().to_string();
    let received = collect(receiver, "seq");
    // Whether B's backplane ever leaves `connected` from here on.
    let left_connected = Arc::new(AtomicBool::new(false));
    {
        let mut status = b.backplane_status();
        let left = left_connected.clone();
        tokio::spawn(async move {
            while status.changed().await.is_ok() {
                if !status.borrow().state.is_up() {
                    left.store(true, Ordering::Relaxed);
                }
            }
        });
    }
    let connects_before = connects(&b);

    // A steady cross-node stream: A's sender → the receiver on B, every 20 ms.
    let sender_client = connect(&a, Protocol::Json, None).await;
    let sender = sender_client.sender();
    let _keep = collect(sender_client, "none");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sending = {
        let (stop, sent, receiver_id) = (stop.clone(), sent.clone(), receiver_id.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let args = str_args(&[&receiver_id, "seq", &seq.to_string()]);
                if sender.send("SendToConnection", args).await.is_err() {
                    break;
                }
                seq += 1;
                sent.store(seq, Ordering::Relaxed);
            }
        })
    };
    within("the first message across", async {
        while received.lock().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // Redis turns slow: a new connection on B needs a SUBSCRIBE, whose confirmation is held.
    proxy.slow.store(true, Ordering::Relaxed);
    let latecomer = connect(&b, Protocol::Json, None).await;
    let latecomer_id = latecomer.connection_id().unwrap().to_string();
    let late_received = collect(latecomer, "late");
    // Positive markers: the SUBSCRIBE timed out (the node says so), and after that a retry was
    // sent and held too, all while the stream to the receiver went on.
    within_for("a SUBSCRIBE timing out", Duration::from_secs(30), async {
        while !b
            .backplane_status()
            .borrow()
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("SUBSCRIBE"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let held_at_timeout = proxy.held.load(Ordering::Relaxed);
    within_for(
        "a retried SUBSCRIBE held as well",
        Duration::from_secs(30),
        async {
            while proxy.held.load(Ordering::Relaxed) <= held_at_timeout {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    let sent_while_slow = sent.load(Ordering::Relaxed);

    // Redis recovers: the retry subscribes the latecomer, which then hears from A.
    proxy.slow.store(false, Ordering::Relaxed);
    let late_sender = connect(&a, Protocol::Json, None).await;
    within_for(
        "the latecomer's channel subscribed by a retry",
        Duration::from_secs(60),
        async {
            let mut seq = 0u64;
            while late_received.lock().await.is_empty() {
                late_sender
                    .send(
                        "SendToConnection",
                        str_args(&[&latecomer_id, "late", &seq.to_string()]),
                    )
                    .await
                    .unwrap();
                seq += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    within("the sender stops", sending).await.unwrap();
    let total = sent.load(Ordering::Relaxed);
    within_for("the last message across", STEP, async {
        while received.lock().await.last().is_none_or(|last| last + 1 < total) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let seqs = received.lock().await.clone();
    assert_eq!(
        seqs,
        (0..total).collect::<Vec<_>>(),
        "every message of the stream arrived, in order, while Redis was slow"
    );
    assert!(sent_while_slow > 0 && total > sent_while_slow);
    assert!(
        !left_connected.load(Ordering::Relaxed),
        "node B's backplane never left `connected`"
    );
    assert_eq!(connects(&b), connects_before, "node B's link was never torn down");
    println!(
        "{total} messages across, none lost; {} SUBSCRIBE confirmations held; B's link stayed up",
        proxy.held.load(Ordering::Relaxed)
    );
}

#[test]
fn the_proxy_reads_resp_frames_whole() {
    assert_eq!(frame_len(b"+OK\r\n"), Some(5));
    assert_eq!(frame_len(b"$3\r\nabc\r\n:1\r\n"), Some(9));
    assert_eq!(frame_len(b"$3\r\nab"), None);
    let confirmation = b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n";
    assert_eq!(frame_len(confirmation), Some(confirmation.len()));
    assert!(is_subscribe_confirmation(confirmation));
    let message = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$9\r\nsubscribe\r\n";
    assert!(
        !is_subscribe_confirmation(message),
        "a message whose payload says subscribe"
    );
}
