//! One load client: connects, then reads every delivery (latency, loss, duplicates, order) and,
//! if it is a sender, broadcasts at its share of the target rate until the run stops.
//!
//! Deliberately lean, because a run holds thousands of these: one task per client that owns its
//! WebSocket (no socket task, no inbox, no command queue), a small read buffer, and one sequence
//! tracker per sender, created on the first delivery. Counters and latencies go straight into
//! the run's shared atomics.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use super::sequence::{Arrival, SequenceTracker};
use super::{Phase, Run};
use crate::client::{self, Established};
use crate::protocol::{HubMessage, Value};

/// How long a client's goodbye (Close frame) may take at the end of a run.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Deadline of one write: a node that stops reading must not hold a sender forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Microseconds since the Unix epoch: the send time carried in the message. Every client of a run
/// shares this clock (one process; or one machine when several `load` processes run).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The message text of one broadcast: `lt:{run}:{sender}:{seq}:{node}:{sent µs}:` and padding.
pub fn encode_text(run_id: u64, sender: usize, seq: u64, node: usize, sent_us: u64, size: usize) -> String {
    let mut text = format!("lt:{run_id:016x}:{sender}:{seq}:{node}:{sent_us}:");
    while text.len() < size {
        text.push('x');
    }
    text
}

/// One broadcast as a receiver decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub run_id: u64,
    pub sender: usize,
    pub seq: u64,
    pub node: usize,
    pub sent_us: u64,
}

/// The inverse of [`encode_text`]; `None` for any other text.
pub fn decode_text(text: &str) -> Option<Stamp> {
    let mut parts = text.strip_prefix("lt:")?.splitn(6, ':');
    let run_id = u64::from_str_radix(parts.next()?, 16).ok()?;
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let node = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(Stamp {
        run_id,
        sender,
        seq,
        node,
        sent_us,
    })
}

/// Who this client is in the run.
pub struct Role {
    /// Index of the client (and of the sender, for the first `senders` clients).
    pub index: usize,
    /// Index of its node in the run's node list.
    pub node: usize,
}

/// Connects, then serves the client until the run stops. Connect failures and early ends are
/// counted in `run`; nothing here panics on what a server sends.
pub async fn client(
    run: Arc<Run>,
    role: Role,
    mut phase: watch::Receiver<Phase>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let url = &run.options.nodes[role.node];
    let options = match run
        .options
        .node_credentials
        .bearer_for(&format!("switchboard-load-{}", role.index))
    {
        None => std::borrow::Cow::Borrowed(&run.client_options),
        token => std::borrow::Cow::Owned(client::ClientOptions {
            token,
            ..run.client_options.clone()
        }),
    };
    let connected = client::connect_stream(url, &options).await;
    drop(permit);
    let Established {
        mut ws, mut framer, ..
    } = match connected {
        Ok(established) => established,
        Err(e) => {
            run.connect_failed(e.to_string());
            return;
        }
    };
    run.connected.fetch_add(1, Ordering::Relaxed);
    run.connect_done.fetch_add(1, Ordering::Relaxed);
    *run.last_connect.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());

    let protocol = run.options.protocol;
    let binary = protocol.is_binary();
    let is_sender = role.index < run.senders;
    let mut trackers: Vec<SequenceTracker> = Vec::new();
    let mut ticker: Option<Interval> = None;
    let mut seq = 0u64;
    let mut keep_alive = tokio::time::interval_at(
        Instant::now() + client::DEFAULT_KEEP_ALIVE,
        client::DEFAULT_KEEP_ALIVE,
    );
    keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ping = protocol.encode(&HubMessage::Ping);

    let ended_early = loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break false;
                }
                let now = *phase.borrow_and_update();
                match now {
                    Phase::Connecting => {}
                    Phase::Sending { start } => {
                        if is_sender && let Some(period) = run.sender_period() {
                            let offset = period.mul_f64(role.index as f64 / run.senders as f64);
                            let mut interval = tokio::time::interval_at(start + offset, period);
                            interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
                            ticker = Some(interval);
                        }
                    }
                    Phase::Draining => ticker = None,
                    Phase::Stop => break false,
                }
            }
            _ = tick(&mut ticker) => {
                let text = encode_text(run.run_id, role.index, seq, role.node, now_micros(), run.options.message_size);
                let args = vec![Value::from(format!("load-{}", role.index)), Value::from(text)];
                let frame = protocol.encode(&HubMessage::invocation(run.options.send_method.clone(), args));
                match write(&mut ws, frame, binary).await {
                    Ok(()) => {
                        run.sent[role.index].fetch_add(1, Ordering::Relaxed);
                        seq += 1;
                    }
                    Err(()) => break true,
                }
            }
            _ = keep_alive.tick() => {
                if write(&mut ws, ping.clone(), binary).await.is_err() {
                    break true;
                }
            }
            inbound = ws.next() => {
                match inbound {
                    Some(Ok(Message::Text(text))) => framer.push(text.as_bytes()),
                    Some(Ok(Message::Binary(data))) => framer.push(&data),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break true,
                    Some(Ok(_)) => continue,
                }
                if !drain_frames(&run, &role, &mut framer, &mut trackers) {
                    break true;
                }
            }
        }
    };
    if ended_early {
        run.disconnected_early.fetch_add(1, Ordering::Relaxed);
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
}

/// Resolves at the next tick, or never without a ticker.
async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn write(ws: &mut crate::client::NodeWebSocket, frame: Vec<u8>, binary: bool) -> Result<(), ()> {
    let message = if binary {
        Message::Binary(frame.into())
    } else {
        Message::text(String::from_utf8(frame).map_err(|_| ())?)
    };
    match tokio::time::timeout(WRITE_TIMEOUT, ws.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Handles every complete hub message in the framer. `false` ends the client (bad data, Close).
fn drain_frames(
    run: &Run,
    role: &Role,
    framer: &mut crate::protocol::Framer,
    trackers: &mut Vec<SequenceTracker>,
) -> bool {
    loop {
        let body = match framer.next_frame() {
            Ok(Some(body)) => body,
            Ok(None) => return true,
            Err(_) => return false,
        };
        match run.options.protocol.decode(&body) {
            Ok(Some(HubMessage::Invocation {
                target, arguments, ..
            })) => {
                if target == run.options.receive_method {
                    let text = arguments.get(1).and_then(Value::as_str);
                    receive(run, role, text, trackers);
                }
            }
            Ok(Some(HubMessage::Close { .. })) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// Accounts for one delivery of the receive method.
fn receive(run: &Run, role: &Role, text: Option<&str>, trackers: &mut Vec<SequenceTracker>) {
    let received_us = now_micros();
    let stamp = match text.and_then(decode_text) {
        Some(stamp) if stamp.run_id == run.run_id && stamp.sender < run.senders => stamp,
        _ => {
            run.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    if trackers.is_empty() {
        trackers.resize_with(run.senders, SequenceTracker::default);
    }
    match trackers[stamp.sender].arrive(stamp.seq) {
        Arrival::InOrder => {}
        Arrival::Reordered => {
            run.order_violations.fetch_add(1, Ordering::Relaxed);
        }
        Arrival::Duplicate => {
            run.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Arrival::Implausible => {
            run.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    run.delivered.fetch_add(1, Ordering::Relaxed);
    let latency = received_us.saturating_sub(stamp.sent_us);
    if stamp.node == role.node {
        run.same_node.record(latency);
    } else {
        run.cross_node.record(latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_text_round_trips_and_is_padded() {
        let text = encode_text(0xabc, 7, 42, 1, 1_700_000_000_000_000, 80);
        assert_eq!(text.len(), 80);
        assert_eq!(
            decode_text(&text),
            Some(Stamp {
                run_id: 0xabc,
                sender: 7,
                seq: 42,
                node: 1,
                sent_us: 1_700_000_000_000_000
            })
        );
        let short = encode_text(1, 0, 0, 0, 5, 0);
        assert_eq!(decode_text(&short).map(|s| s.sent_us), Some(5));
    }

    #[test]
    fn other_texts_are_not_stamps() {
        for text in ["hello", "lt:", "lt:zz:1:2:3:4:", "lt:1:2:3:4:5", "lt:1:-2:3:4:5:"] {
            assert_eq!(decode_text(text), None, "{text}");
        }
    }
}
