//! Test sends: a request (once, or a paced and cancellable burst) through the sending node's probe
//! client, each message carrying its trace marker, with the nodes whose probes should receive it
//! and the lookup (NUMSUB, holders) that follows each request. Run by `runtime`; uses `probe`'s
//! shared state and `lookup`. Never `hub`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::lookup::{self, LookupContext};
use super::model::traces as marker;
use super::now_ms;
use super::probe::*;
use super::sink::EventSink;
use super::{BurstProgress, BurstState, MonitorEvent, SendBody, SendRequest, SendTarget, TraceLookup};
use crate::config;
use crate::protocol::{CompletionResult, Value};

/// How often a running burst reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How long the end of a burst waits for its last invocations' answers before reporting.
const BURST_DRAIN: Duration = Duration::from_secs(5);

/// Test invocations in flight at once during a burst: enough to keep 10k/s flowing over loopback
/// without an unbounded pile of waiting tasks.
const SENDS_IN_FLIGHT: usize = 64;

/// `text` with the trace marker appended.
pub(super) fn with_marker(text: &str, trace: u64) -> String {
    let marker = marker::marker(trace);
    if text.is_empty() {
        marker
    } else {
        format!("{text} {marker}")
    }
}

/// Replaces `{trace}` in every string of a JSON value.
pub(super) fn substitute(value: &mut serde_json::Value, marker: &str) {
    match value {
        serde_json::Value::String(s) if s.contains("{trace}") => *s = s.replace("{trace}", marker),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, marker)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| substitute(v, marker)),
        _ => {}
    }
}

/// The hub method and arguments of one test message.
pub(super) fn invocation(
    target: &SendTarget,
    body: &SendBody,
    custom: Option<&serde_json::Value>,
    trace: u64,
) -> (String, Vec<Value>) {
    match body {
        SendBody::Chat { user, text } => {
            let text = with_marker(text, trace);
            let s = |v: &str| Value::from(v);
            match target {
                SendTarget::All => ("SendMessage".into(), vec![s(user), s(&text)]),
                SendTarget::Others => ("SendToOthers".into(), vec![s(user), s(&text)]),
                SendTarget::Group(g) => ("SendToGroup".into(), vec![s(g), s(user), s(&text)]),
                SendTarget::User(u) => ("SendToUser".into(), vec![s(u), s(user), s(&text)]),
                SendTarget::Connection(c) => ("SendToConnection".into(), vec![s(c), s(user), s(&text)]),
            }
        }
        SendBody::Custom { method, .. } => {
            let mut args = custom.cloned().unwrap_or(serde_json::Value::Array(Vec::new()));
            substitute(&mut args, &marker::marker(trace));
            let values = match args {
                serde_json::Value::Array(items) => {
                    items.iter().map(crate::protocol::json::json_to_value).collect()
                }
                other => vec![crate::protocol::json::json_to_value(&other)],
            };
            (method.clone(), values)
        }
    }
}

/// The hub URLs whose probe should receive a message to `target` sent through `node`.
pub(super) fn expected(
    target: &SendTarget,
    node: &str,
    probes: &[(String, Arc<ProbeShared>)],
) -> Vec<String> {
    let connected = probes
        .iter()
        .filter_map(|(url, p)| p.connection_id().map(|id| (url, id)));
    let mut out: Vec<String> = match target {
        SendTarget::All => connected.map(|(url, _)| url.clone()).collect(),
        // The probes that joined it (for this send, or an earlier one).
        SendTarget::Group(g) => probes
            .iter()
            .filter(|(_, p)| p.connection_id().is_some() && p.lock().groups.contains(g))
            .map(|(url, _)| url.clone())
            .collect(),
        SendTarget::Others => connected
            .filter(|(url, _)| *url != node)
            .map(|(url, _)| url.clone())
            .collect(),
        SendTarget::User(u) if u == PROBE_USER => connected.map(|(url, _)| url.clone()).collect(),
        SendTarget::User(_) => Vec::new(),
        SendTarget::Connection(c) => connected
            .filter(|(_, id)| id == c)
            .map(|(url, _)| url.clone())
            .collect(),
    };
    out.sort();
    out
}

/// Runs a send request (one message or a paced burst) in its own task: reports each message
/// (`Sent`, `SendFailed`), the request's progress (`Burst`: sent of N, and how many went when
/// stopped), and where its first message went (`TraceLookup`: the channel's NUMSUB, which node
/// holds the target), the evidence of its trace and of Explain.
pub(crate) fn spawn_send(
    request: SendRequest,
    probes: Vec<(String, Arc<ProbeShared>)>,
    sink: EventSink,
    next_trace: Arc<AtomicU64>,
    node_cancel: Option<CancellationToken>,
    bursts: CancellationToken,
    lookups: LookupContext,
) {
    tokio::spawn(async move {
        let node = request.node.clone();
        let fail = |error: String| {
            let trace = next_trace.fetch_add(1, Ordering::Relaxed);
            sink.push(MonitorEvent::SendFailed {
                trace,
                node: node.clone(),
                error,
                at_ms: now_ms(),
            });
        };
        let (Some(node_cancel), Some(own)) = (node_cancel, probes.iter().find(|(url, _)| *url == node))
        else {
            return fail(format!("{node} is not watched: add it to the node list first"));
        };
        let own = own.1.clone();
        let custom = match &request.body {
            SendBody::Custom { args_json, .. } => {
                match serde_json::from_str::<serde_json::Value>(args_json) {
                    Ok(v @ serde_json::Value::Array(_)) => Some(v),
                    Ok(_) => return fail("the arguments must be a JSON array".to_string()),
                    Err(e) => return fail(format!("the arguments are not valid JSON: {e}")),
                }
            }
            SendBody::Chat { .. } => None,
        };
        if let SendTarget::Group(group) = &request.target
            && request.probes_join
        {
            for (_, probe) in &probes {
                probe.lock().groups.insert(group.clone());
                if let Some(sender) = probe.sender() {
                    let _ = sender
                        .invoke("JoinGroup", vec![Value::from(group.as_str())])
                        .await;
                }
            }
        }
        // The stated limits (the Send form shows them).
        let total = request.count.clamp(1, config::MAX_BURST_COUNT);
        let rate = if request.rate_per_sec.is_finite() && request.rate_per_sec > 0.0 {
            request.rate_per_sec.min(config::MAX_BURST_RATE)
        } else {
            1.0
        };
        let mut progress = BurstProgress {
            id: next_trace.fetch_add(1, Ordering::Relaxed),
            node: node.clone(),
            sent: 0,
            failed: 0,
            total,
            state: BurstState::Running,
        };
        sink.push(MonitorEvent::Burst(progress.clone()));
        let failed = Arc::new(AtomicU64::new(0));
        let mut reported = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let in_flight = Arc::new(Semaphore::new(SENDS_IN_FLIGHT));
        let mut stopped = false;
        for i in 0..total {
            let permit = tokio::select! {
                _ = bursts.cancelled() => { stopped = true; break }
                _ = node_cancel.cancelled() => { stopped = true; break }
                _ = tick.tick() => match in_flight.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => { stopped = true; break }
                },
            };
            let trace = next_trace.fetch_add(1, Ordering::Relaxed);
            progress.sent = i + 1;
            let Some(sender) = own.sender() else {
                failed.fetch_add(1, Ordering::Relaxed);
                sink.push(MonitorEvent::SendFailed {
                    trace,
                    node: node.clone(),
                    error: format!("the probe of {node} is not connected"),
                    at_ms: now_ms(),
                });
                continue;
            };
            let (method, args) = invocation(&request.target, &request.body, custom.as_ref(), trace);
            let expected = expected(&request.target, &node, &probes);
            sink.push(MonitorEvent::Sent {
                trace,
                node: node.clone(),
                target: request.target.clone(),
                at_ms: now_ms(),
                expected,
            });
            // Every request's first message is looked up (NUMSUB of its channel, who holds the
            // target): the evidence an explanation needs, asked once, rate-limited.
            if i == 0 {
                spawn_lookup(trace, &node, &request.target, &lookups, &sink);
            }
            let (task_sink, task_node, task_failed) = (sink.clone(), node.clone(), failed.clone());
            tokio::spawn(async move {
                let error = match sender.invoke(&method, args).await {
                    Ok(CompletionResult::Error(e)) => Some(e),
                    Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                };
                drop(permit);
                if let Some(error) = error {
                    task_failed.fetch_add(1, Ordering::Relaxed);
                    task_sink.push(MonitorEvent::SendFailed {
                        trace,
                        node: task_node,
                        error,
                        at_ms: now_ms(),
                    });
                }
            });
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                progress.failed = failed.load(Ordering::Relaxed) as u32;
                sink.push(MonitorEvent::Burst(progress.clone()));
            }
        }
        // The last answers, so the final count of refusals is complete (bounded).
        let _ = tokio::time::timeout(BURST_DRAIN, in_flight.acquire_many(SENDS_IN_FLIGHT as u32)).await;
        progress.failed = failed.load(Ordering::Relaxed) as u32;
        progress.state = if stopped {
            BurstState::Stopped
        } else {
            BurstState::Done
        };
        sink.push(MonitorEvent::Burst(progress));
    });
}

/// Looks up where trace `trace` went, in its own task; at most
/// once a second (a skipped lookup says so).
pub(super) fn spawn_lookup(
    trace: u64,
    node: &str,
    target: &SendTarget,
    ctx: &LookupContext,
    sink: &EventSink,
) {
    if !ctx.limiter.allow(Instant::now()) {
        sink.push(MonitorEvent::TraceLookup {
            trace,
            lookup: TraceLookup {
                note: Some("not looked up: at most one lookup a second".to_string()),
                ..TraceLookup::default()
            },
        });
        return;
    }
    let (ctx, node, target, sink) = (ctx.clone(), node.to_string(), target.clone(), sink.clone());
    tokio::spawn(async move {
        let lookup = lookup::lookup(&ctx, &node, &target).await;
        sink.push(MonitorEvent::TraceLookup { trace, lookup });
    });
}
