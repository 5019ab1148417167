//! Why a test message did not arrive: [`explain`] turns a trace and what the monitor saw around it
//! into causes, each a verdict, evidence lines (numbers, channel names, times) and what to do.
//! Shown by the Send view's Explain expander.
//!
//! What it weighs, all gathered by the model as events fold in:
//! - the tap's sightings of the trace ([`Sightings`]: on which channel, when);
//! - `PUBSUB NUMSUB` of the target's channel, asked once per send request (the trace's
//!   [`TraceLookup`]), and which watched nodes hold the group, user or connection;
//! - link transitions ([`LinkHistory`]): each node's backplane link (from its stats), each probe's
//!   link and the tap's, so "was it down in that window" has an answer with times;
//! - each node's configured channel prefix and hub name against the channel the tap saw;
//! - a `SendToConnection` to a connection on the sending node, which is delivered locally and
//!   never published (so no sighting is expected, not a fault).
//!
//! Pure, std only; time is passed in. Used by `Model::explain` and the Send view.

pub use super::history::{DELIBERATE_SLACK_MS, Link, LinkHistory, Outage, Sightings, Transition};
use super::traces::{Trace, TraceStatus};
use crate::backplane::naming::Channels;
use crate::monitor::{SendTarget, TraceLookup};

/// Slack before the send and after the timeout when asking whether a link was down "in that
/// window": stats arrive every 500 ms, so a state change is known up to that late.
const WINDOW_SLACK_MS: u64 = 1_000;

/// What the explanation knows about one watched node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeFacts {
    pub hub_url: String,
    pub name: String,
    /// Its configured channel prefix and hub name (from its stats), when it has told them.
    pub prefix: Option<String>,
    pub hub: Option<String>,
    /// Its probe's connection id, when connected.
    pub probe_connection_id: Option<String>,
    /// Counters from its latest stats that can explain a loss on the node itself.
    pub forward_failures: u64,
    pub backplane_dropped: u64,
    pub backplane_gaps: u64,
    pub slow_client_disconnects: u64,
}

/// Everything [`explain`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct ExplainInput<'a> {
    pub trace: &'a Trace,
    pub now_ms: u64,
    /// The tap's sightings of this trace: (channel, unix ms).
    pub sightings: &'a [(String, u64)],
    pub nodes: &'a [NodeFacts],
    pub history: &'a LinkHistory,
    /// The prefix the tap listens under (`{prefix}*`), when a tap is set.
    pub tap_prefix: Option<&'a str>,
}

/// How to read a cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing is wrong: this is how it works (or it arrived).
    Expected,
    /// A fault was found.
    Fault,
    /// Not enough was observed to say.
    Unknown,
}

/// One cause: a verdict line, its evidence and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub verdict: Verdict,
    pub headline: String,
    pub evidence: Vec<String>,
    pub action: String,
}

/// Whether a trace has something to explain: it is settled (not pending) and something is
/// missing (a node, every receiver, the Redis sighting) or the send failed.
pub fn worth_explaining(trace: &Trace, now_ms: u64) -> bool {
    match trace.status(now_ms) {
        TraceStatus::Pending => false,
        TraceStatus::Delivered => trace.redis_at_ms.is_none(),
        TraceStatus::Partial { .. } | TraceStatus::Failed(_) | TraceStatus::NotObservable => true,
    }
}

fn hms(at_ms: u64) -> String {
    super::traffic::hms_utc(at_ms)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn target_words(target: &SendTarget) -> String {
    match target {
        SendTarget::All => "every connection".to_string(),
        SendTarget::Others => "every other connection".to_string(),
        SendTarget::Group(g) => format!("group {g:?}"),
        SendTarget::User(u) => format!("user {u:?}"),
        SendTarget::Connection(c) => format!("connection {c:?}"),
    }
}

/// The channel a node with this naming publishes a message to `target` on.
pub fn target_channel(prefix: &str, hub: &str, target: &SendTarget) -> String {
    let c = Channels::new(prefix, hub);
    match target {
        SendTarget::All | SendTarget::Others => c.all(),
        SendTarget::Group(g) => c.group(g),
        SendTarget::User(u) => c.user(u),
        SendTarget::Connection(id) => c.connection(id),
    }
}

fn outage_words(o: &Outage) -> String {
    let until = match o.to_ms {
        Some(to) => format!("until {}", hms(to)),
        None => "and not back at the last word".to_string(),
    };
    let why = if o.detail.is_empty() {
        String::new()
    } else {
        format!(" ({})", o.detail)
    };
    format!("down from {} {until}{why}", hms(o.from_ms))
}

/// The causes of what a trace is missing, most telling first. Never empty for a settled trace.
pub fn explain(input: ExplainInput<'_>) -> Vec<Cause> {
    let ctx = Ctx::new(&input);
    if let Some(error) = &ctx.t.failed {
        return vec![send_refused(&ctx, error)];
    }
    if ctx.local_connection() && input.sightings.is_empty() {
        return local_delivery(&ctx);
    }
    let mut causes = match input.sightings.first() {
        None => not_on_redis(
            &input,
            ctx.sender,
            &ctx.sender_name,
            ctx.window,
            &ctx.expected_channel(),
        ),
        Some((channel, at)) => on_redis(&ctx, channel, *at),
    };
    if causes.is_empty() {
        causes.push(delivered());
    }
    causes
}

/// What every cause of one trace's explanation looks at.
struct Ctx<'a> {
    input: &'a ExplainInput<'a>,
    t: &'a Trace,
    sender: Option<&'a NodeFacts>,
    sender_name: String,
    /// From a little before the send to the trace's timeout (or now, if sooner).
    window: (u64, u64),
    lookup: Option<&'a TraceLookup>,
    subscribers: Option<u64>,
}

impl<'a> Ctx<'a> {
    fn new(input: &'a ExplainInput<'a>) -> Self {
        let t = input.trace;
        let timeout = crate::config::DEFAULT_TRACE_TIMEOUT.as_millis() as u64;
        let lookup = t.lookup.as_ref();
        let mut ctx = Ctx {
            input,
            t,
            sender: input.nodes.iter().find(|n| n.hub_url == t.node),
            sender_name: String::new(),
            window: (
                t.sent_at_ms.saturating_sub(WINDOW_SLACK_MS),
                (t.sent_at_ms + timeout + WINDOW_SLACK_MS).min(input.now_ms.max(t.sent_at_ms)),
            ),
            lookup,
            subscribers: lookup.and_then(|l| l.subscribers),
        };
        ctx.sender_name = ctx.name(&t.node);
        ctx
    }

    /// A node's name, else its hub URL.
    fn name(&self, url: &str) -> String {
        self.input
            .nodes
            .iter()
            .find(|n| n.hub_url == url)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| url.to_string())
    }

    /// The channel the sender publishes on, from its own naming (else the lookup's).
    fn expected_channel(&self) -> Option<String> {
        self.sender
            .and_then(|s| {
                Some(target_channel(
                    s.prefix.as_deref()?,
                    s.hub.as_deref()?,
                    &self.t.target,
                ))
            })
            .or_else(|| self.lookup.and_then(|l| l.channel.clone()))
    }

    /// A connection on the sending node: delivered in-process, never published.
    fn local_connection(&self) -> bool {
        match &self.t.target {
            SendTarget::Connection(id) => {
                self.sender.and_then(|s| s.probe_connection_id.as_deref()) == Some(id.as_str())
                    || self
                        .lookup
                        .is_some_and(|l| l.holders.len() == 1 && l.holders[0] == self.t.node)
            }
            _ => false,
        }
    }

    /// `evidence` plus where the lookup found the target held.
    fn with_holders(&self, evidence: &[String]) -> Vec<String> {
        let mut ev = evidence.to_vec();
        if let Some(l) = self.lookup {
            ev.extend(holders_line(l, &self.t.target, &|u| self.name(u)));
        }
        ev
    }
}

/// The sending node refused the send itself.
fn send_refused(ctx: &Ctx<'_>, error: &str) -> Cause {
    Cause {
        verdict: Verdict::Fault,
        headline: format!("{} did not take the send", ctx.sender_name),
        evidence: vec![format!("the hub answered: {error}")],
        action: "Check that the node is up and that its hub has this method (a foreign hub: \
                 pick \"any method\" and its own method name)."
            .to_string(),
    }
}

/// SendToConnection to a connection on the sending node: never on Redis, as expected; a fault
/// only if the node's own probe did not get it.
fn local_delivery(ctx: &Ctx<'_>) -> Vec<Cause> {
    let t = ctx.t;
    let SendTarget::Connection(id) = &t.target else {
        return Vec::new();
    };
    let sender_name = &ctx.sender_name;
    let mut evidence = vec![
        format!("connection {id} is on {sender_name}, the node it was sent through"),
        format!("the tap saw no publish of trace {:x}", t.id),
    ];
    if let Some((url, at)) = t.receipts.first() {
        evidence.push(format!(
            "{} received it {} ms after the send",
            ctx.name(url),
            at.saturating_sub(t.sent_at_ms)
        ));
    }
    let mut causes = vec![Cause {
        verdict: Verdict::Expected,
        headline: "Not on the backplane, as expected: SendToConnection to a connection on the \
                   sending node is delivered locally and never touches Redis"
            .to_string(),
        evidence,
        action: "Nothing to do. To test the Redis path, send through another node.".to_string(),
    }];
    if t.receipts.is_empty() && t.observable() {
        causes.push(Cause {
            verdict: Verdict::Fault,
            headline: format!("{sender_name} did not deliver it to its own connection"),
            evidence: vec![format!("no receipt from the probe on {sender_name}")],
            action: format!("Look at {sender_name}'s log: the connection may be closing or slow."),
        });
    }
    causes
}

/// The tap saw the publish on `channel` at `at`: nobody subscribed, not observable, a node that
/// missed it, or no probe to receive it.
fn on_redis(ctx: &Ctx<'_>, channel: &str, at: u64) -> Vec<Cause> {
    let t = ctx.t;
    let mut evidence = vec![format!(
        "the tap saw the publish on {channel} {} ms after the send",
        at.saturating_sub(t.sent_at_ms)
    )];
    for (other, _) in ctx.input.sightings.iter().skip(1) {
        evidence.push(format!("and on {other}"));
    }
    let numsub_here = ctx
        .lookup
        .and_then(|l| l.channel.as_deref())
        .is_none_or(|c| c == channel);
    if let (Some(n), true) = (ctx.subscribers, numsub_here) {
        evidence.push(format!(
            "PUBSUB NUMSUB {channel} = {n} when it was sent ({})",
            plural(n, "server subscribed", "servers subscribed")
        ));
    }
    let mut causes = Vec::new();
    // The same rule as the trace's row and the summary (`traces::nobody_subscribed`).
    let nobody = super::traces::nobody_subscribed(ctx.lookup, Some(channel));
    if nobody {
        causes.push(nobody_subscribed(ctx, channel, &evidence));
    } else if !t.observable() {
        causes.push(not_observable(ctx, &evidence));
    }
    let missing = t.missing();
    for url in &missing {
        causes.push(missing_node(
            ctx.input,
            url,
            channel,
            ctx.window,
            &evidence,
            &|u| ctx.name(u),
        ));
    }
    if missing.is_empty() && t.receipts.is_empty() && t.observable() && !nobody {
        causes.push(no_probe_received(ctx, &evidence));
    }
    causes
}

/// `PUBSUB NUMSUB` was 0: nobody had the group, user or connection when it was sent.
fn nobody_subscribed(ctx: &Ctx<'_>, channel: &str, evidence: &[String]) -> Cause {
    let target = &ctx.t.target;
    Cause {
        verdict: Verdict::Fault,
        headline: format!(
            "Nobody was subscribed to {channel}: no server had {} when it was sent",
            match target {
                SendTarget::Group(_) => format!("a member of {}", target_words(target)),
                SendTarget::User(_) => format!("a connection of {}", target_words(target)),
                SendTarget::Connection(_) => target_words(target),
                _ => "a subscription".to_string(),
            }
        ),
        evidence: ctx.with_holders(evidence),
        action: match target {
            SendTarget::Group(g) => format!(
                "Add the clients to {g:?} (JoinGroup / Groups.AddToGroupAsync) before sending; \
                 check the group name's spelling and case."
            ),
            SendTarget::User(u) => format!(
                "No client is connected as user {u:?}: check the user id the server assigns \
                 (IUserIdProvider) and that the client is connected."
            ),
            SendTarget::Connection(_) => {
                "The connection id is stale or misspelled: pick a live one in the Directory.".to_string()
            }
            _ => "No server listens on this hub: check the hub name and the prefix.".to_string(),
        },
    }
}

/// Sent to a client that is not a probe: Redis carried it, and that is as far as it can be seen.
fn not_observable(ctx: &Ctx<'_>, evidence: &[String]) -> Cause {
    Cause {
        verdict: Verdict::Expected,
        headline: "Redis carried it; delivery to a client that is not a probe cannot be observed".to_string(),
        evidence: ctx.with_holders(evidence),
        action: "Ask the receiving client, or send to the probes' user to follow a message to \
                 every node."
            .to_string(),
    }
}

/// Observable, carried by Redis, and yet no probe expected it or got it.
fn no_probe_received(ctx: &Ctx<'_>, evidence: &[String]) -> Cause {
    let servers = ctx.subscribers.map_or("its subscribers".to_string(), |n| {
        plural(n, "subscribed server", "subscribed servers")
    });
    let (headline, action) = match &ctx.t.target {
        SendTarget::Group(g) => (
            format!(
                "Redis carried it to {servers}; no probe is in group {g:?}, so delivery to its members cannot be observed"
            ),
            "Turn on \"probes join the group\" to follow a message to every node.".to_string(),
        ),
        _ => (
            format!("Redis carried it to {servers}, but no probe was connected to receive it"),
            "Wait for the probes to connect (Nodes view), then send again.".to_string(),
        ),
    };
    Cause {
        verdict: Verdict::Expected,
        headline,
        evidence: ctx.with_holders(evidence),
        action,
    }
}

/// Nothing to explain.
fn delivered() -> Cause {
    Cause {
        verdict: Verdict::Expected,
        headline: "Delivered everywhere it was expected".to_string(),
        evidence: Vec::new(),
        action: "Nothing to do.".to_string(),
    }
}

/// "held by a, b" / "no watched node holds …" / "c could not say".
fn holders_line(l: &TraceLookup, target: &SendTarget, name: &dyn Fn(&str) -> String) -> Vec<String> {
    let names = |urls: &[String]| urls.iter().map(|u| name(u)).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    if matches!(target, SendTarget::All | SendTarget::Others) {
        return out;
    }
    if !l.holders.is_empty() {
        out.push(format!(
            "{} is held by {}",
            target_words(target),
            names(&l.holders)
        ));
    } else if l.unknown.is_empty() {
        out.push(format!("no watched node holds {}", target_words(target)));
    } else {
        out.push(format!(
            "no watched node that could answer holds {}",
            target_words(target)
        ));
    }
    if !l.unknown.is_empty() {
        out.push(format!(
            "{} could not say (no monitor endpoint or no answer)",
            names(&l.unknown)
        ));
    }
    if let Some(note) = &l.note {
        out.push(note.clone());
    }
    out
}

/// The tap never saw the publish: why that may be. Faults found first (a prefix mismatch, the
/// sender's or a missing node's backplane down), then what limits the view (the tap was down).
fn not_on_redis(
    input: &ExplainInput<'_>,
    sender: Option<&NodeFacts>,
    sender_name: &str,
    window: (u64, u64),
    expected_channel: &Option<String>,
) -> Vec<Cause> {
    let t = input.trace;
    let name = |url: &str| {
        input
            .nodes
            .iter()
            .find(|n| n.hub_url == url)
            .map_or(url.to_string(), |n| n.name.clone())
    };
    let channel = expected_channel
        .clone()
        .unwrap_or_else(|| "its channel".to_string());
    let tap_down = input.history.down_during(&Link::Tap, window.0, window.1);
    let mut causes = Vec::new();
    if let (Some(tap_prefix), None) = (input.tap_prefix, &tap_down)
        && let Some(prefix) = sender.and_then(|s| s.prefix.as_deref())
        && !prefix.starts_with(tap_prefix)
    {
        causes.push(Cause {
            verdict: Verdict::Fault,
            headline: format!(
                "Prefix mismatch: {sender_name} publishes under {prefix:?}, but the tap listens to {tap_prefix:?}*"
            ),
            evidence: vec![
                format!("{sender_name}'s channel prefix is {prefix:?}: it published on {channel}"),
                format!("the tap subscribes to {tap_prefix}* and saw no message of trace {:x}", t.id),
            ],
            action: format!(
                "Set the dashboard's channel prefix to {prefix:?}, or fix the nodes' ChannelPrefix so \
                 they all agree."
            ),
        });
        return causes;
    }
    if let Some(o) = input
        .history
        .down_during(&Link::Backplane(t.node.clone()), window.0, window.1)
    {
        causes.push(Cause {
            verdict: Verdict::Fault,
            headline: format!(
                "{sender_name}'s backplane link was down when it was sent: the publish never reached Redis"
            ),
            evidence: vec![
                format!("{sender_name}'s backplane was {}", outage_words(&o)),
                format!("sent at {}; the tap saw nothing on {channel}", hms(t.sent_at_ms)),
            ],
            action: format!(
                "Check that {sender_name} can reach Redis (its Nodes row shows the error); messages \
                 published while the link is down are lost, not queued."
            ),
        });
    }
    for url in t.missing().iter().filter(|u| **u != t.node) {
        if let Some(o) = input
            .history
            .down_during(&Link::Backplane(url.clone()), window.0, window.1)
        {
            let who = name(url);
            causes.push(Cause {
                verdict: Verdict::Fault,
                headline: format!("{who}'s backplane link was down in that window, so it missed the message"),
                evidence: vec![format!("{who}'s backplane was {}", outage_words(&o))],
                action: format!("Check {who}'s connection to Redis (Nodes view, its log)."),
            });
        }
    }
    if let Some(o) = tap_down {
        causes.push(Cause {
            verdict: Verdict::Unknown,
            headline: "The tap was not connected to Redis then, so it cannot say whether Redis carried it"
                .to_string(),
            evidence: vec![format!("the tap was {}", outage_words(&o))],
            action: "Send again once the tap is connected.".to_string(),
        });
        return causes;
    }
    if !causes.is_empty() {
        return causes;
    }
    let Some(tap_prefix) = input.tap_prefix else {
        causes.push(Cause {
            verdict: Verdict::Unknown,
            headline: "No tap is watching Redis, so the publish cannot be seen".to_string(),
            evidence: vec![format!("expected on {channel}")],
            action: "Connect the dashboard to the backplane's Redis.".to_string(),
        });
        return causes;
    };
    let mut evidence = vec![format!(
        "no message with trace {:x} under {tap_prefix}* between {} and {}",
        t.id,
        hms(window.0),
        hms(window.1)
    )];
    if !t.receipts.is_empty() {
        let names: Vec<String> = t.receipts.iter().map(|(u, _)| name(u)).collect();
        evidence.push(format!("yet {} received it", names.join(", ")));
        causes.push(Cause {
            verdict: Verdict::Unknown,
            headline: format!("Delivered without crossing Redis: {sender_name} delivered it locally only"),
            evidence,
            action: "If other nodes should get it, check that the hub method publishes to the backplane."
                .to_string(),
        });
        return causes;
    }
    causes.push(Cause {
        verdict: Verdict::Fault,
        headline: format!("Redis never carried it: {sender_name} did not publish on {channel}"),
        evidence,
        action: "Check the hub method (a custom method may not broadcast) and the node's backplane \
                 (Nodes view)."
            .to_string(),
    });
    causes
}

/// Redis carried it, but the probe on `url` did not get it.
fn missing_node(
    input: &ExplainInput<'_>,
    url: &str,
    channel: &str,
    window: (u64, u64),
    seen: &[String],
    name: &dyn Fn(&str) -> String,
) -> Cause {
    let who = name(url);
    let facts = input.nodes.iter().find(|n| n.hub_url == url);
    if let Some(f) = facts
        && let (Some(prefix), Some(hub)) = (f.prefix.as_deref(), f.hub.as_deref())
    {
        let listens = format!("{prefix}{hub}:");
        if !channel.starts_with(&listens) {
            return Cause {
                verdict: Verdict::Fault,
                headline: format!(
                    "Prefix or hub mismatch: {who} listens under {listens:?}, but the message went out on {channel}"
                ),
                evidence: vec![
                    seen[0].clone(),
                    format!("{who} is configured with prefix {prefix:?} and hub {hub:?}"),
                ],
                action: "Give every node the same ChannelPrefix and hub name.".to_string(),
            };
        }
    }
    if let Some(o) = input
        .history
        .down_during(&Link::Backplane(url.to_string()), window.0, window.1)
    {
        let mut evidence = vec![format!("{who}'s backplane was {}", outage_words(&o))];
        evidence.push(format!(
            "sent at {}; the timeout ended at {}",
            hms(input.trace.sent_at_ms),
            hms(input.trace.sent_at_ms + crate::config::DEFAULT_TRACE_TIMEOUT.as_millis() as u64)
        ));
        evidence.extend(seen.iter().cloned());
        return Cause {
            verdict: Verdict::Fault,
            headline: format!("{who}'s backplane link was down in that window, so it missed the message"),
            evidence,
            action: format!(
                "Messages published while a node is disconnected are not replayed: check {who}'s \
                 connection to Redis (Nodes view, its log)."
            ),
        };
    }
    if let Some(o) = input
        .history
        .down_during(&Link::Probe(url.to_string()), window.0, window.1)
    {
        return Cause {
            verdict: Verdict::Unknown,
            headline: format!("The dashboard's probe on {who} was disconnected, so its receipt was not seen"),
            evidence: vec![format!("the probe link was {}", outage_words(&o))],
            action: "Send again once the probe is connected.".to_string(),
        };
    }
    let mut evidence: Vec<String> = seen.to_vec();
    if let Some(f) = facts {
        evidence.push(format!(
            "{who}'s backplane was up the whole time; its counters: {} forward failures, {} backplane \
             messages dropped, {} subscription gaps, {} slow-client disconnects",
            f.forward_failures, f.backplane_dropped, f.backplane_gaps, f.slow_client_disconnects
        ));
    }
    Cause {
        verdict: Verdict::Fault,
        headline: format!("Redis carried it and {who} was connected, yet its probe did not receive it"),
        evidence,
        action: format!(
            "{who} may be deaf (subscribed to its ack channel but not to {channel}): see the Health \
             findings, and its log."
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::super::history::{MAX_SIGHTINGS, MAX_TRANSITIONS};
    use super::*;
    use crate::monitor::model::traces::Traces;

    const A: &str = "http://a/chat";
    const B: &str = "http://b/chat";

    fn facts(url: &str, name: &str, prefix: &str) -> NodeFacts {
        NodeFacts {
            hub_url: url.into(),
            name: name.into(),
            prefix: Some(prefix.into()),
            hub: Some("Chat".into()),
            probe_connection_id: Some(format!("probe-{name}")),
            ..NodeFacts::default()
        }
    }

    fn settled(target: SendTarget, expected: &[&str], receipts: &[&str]) -> Trace {
        let mut t = Traces::new(4);
        t.on_sent(
            1,
            A.into(),
            target,
            10_000,
            expected.iter().map(|s| s.to_string()).collect(),
        );
        for r in receipts {
            t.on_received(r, 1, 10_004);
        }
        t.tick(20_000);
        t.get(1).cloned().expect("trace")
    }

    fn run(trace: &Trace, sightings: &[(String, u64)], nodes: &[NodeFacts], h: &LinkHistory) -> Vec<Cause> {
        explain(ExplainInput {
            trace,
            now_ms: 20_000,
            sightings,
            nodes,
            history: h,
            tap_prefix: Some("p:"),
        })
    }

    fn nodes() -> Vec<NodeFacts> {
        vec![facts(A, "a", "p:"), facts(B, "b", "p:")]
    }

    #[test]
    fn link_history_finds_an_outage_in_a_window() {
        let mut h = LinkHistory::default();
        let l = Link::Backplane(B.into());
        h.record(l.clone(), 1_000, true, "connected");
        h.record(l.clone(), 1_500, true, "connected");
        h.record(l.clone(), 5_000, false, "reconnecting: refused");
        h.record(l.clone(), 9_000, true, "connected");
        assert_eq!(h.down_during(&l, 0, 4_000), None);
        assert_eq!(
            h.down_during(&l, 8_000, 12_000),
            Some(Outage {
                from_ms: 5_000,
                to_ms: Some(9_000),
                detail: "reconnecting: refused".into()
            })
        );
        assert_eq!(h.down_during(&l, 9_001, 12_000), None);
        h.record(l.clone(), 15_000, false, "reconnecting");
        assert_eq!(h.down_during(&l, 20_000, 21_000).map(|o| o.to_ms), Some(None));
        // A blip at the window's start gives way to the outage that covers most of it.
        assert_eq!(h.down_during(&l, 8_000, 15_500).map(|o| o.from_ms), Some(5_000));
        assert_eq!(h.down_during(&l, 8_900, 20_000).map(|o| o.from_ms), Some(15_000));
        assert_eq!(h.down_during(&Link::Tap, 0, 100_000), None);
        for i in 0..200 {
            h.record(Link::Tap, i, i % 2 == 0, "");
        }
        assert_eq!(h.links.get(&Link::Tap).map(VecDeque::len), Some(MAX_TRANSITIONS));
    }

    #[test]
    fn a_group_nobody_is_in_says_zero_subscribers_and_what_to_do() {
        let mut trace = settled(SendTarget::Group("ghosts".into()), &[], &[]);
        trace.redis_at_ms = Some(10_002);
        trace.lookup = Some(TraceLookup {
            channel: Some("p:Chat:group:ghosts".into()),
            subscribers: Some(0),
            ..TraceLookup::default()
        });
        let seen = [("p:Chat:group:ghosts".to_string(), 10_002)];
        let causes = run(&trace, &seen, &nodes(), &LinkHistory::default());
        assert_eq!(causes.len(), 1, "{causes:?}");
        let c = &causes[0];
        assert_eq!(c.verdict, Verdict::Fault);
        assert_eq!(
            c.headline,
            "Nobody was subscribed to p:Chat:group:ghosts: no server had a member of group \"ghosts\" when it was sent"
        );
        assert!(
            c.evidence
                .contains(&"the tap saw the publish on p:Chat:group:ghosts 2 ms after the send".to_string())
        );
        assert!(c.evidence.contains(
            &"PUBSUB NUMSUB p:Chat:group:ghosts = 0 when it was sent (0 servers subscribed)".to_string()
        ));
        assert!(
            c.evidence
                .contains(&"no watched node holds group \"ghosts\"".to_string())
        );
        assert!(c.action.contains("JoinGroup"));
        assert!(worth_explaining(&trace, 20_000));
    }

    #[test]
    fn a_group_without_probes_is_carried_but_not_observable() {
        let mut trace = settled(SendTarget::Group("room".into()), &[], &[]);
        trace.lookup = Some(TraceLookup {
            channel: Some("p:Chat:group:room".into()),
            subscribers: Some(2),
            holders: vec![A.into(), B.into()],
            ..TraceLookup::default()
        });
        let seen = [("p:Chat:group:room".to_string(), 10_003)];
        let causes = run(&trace, &seen, &nodes(), &LinkHistory::default());
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].verdict, Verdict::Expected);
        assert_eq!(
            causes[0].headline,
            "Redis carried it to 2 subscribed servers; no probe is in group \"room\", so delivery to its members cannot be observed"
        );
        assert!(
            causes[0]
                .evidence
                .contains(&"group \"room\" is held by a, b".to_string())
        );
    }

    #[test]
    fn a_node_whose_backplane_was_down_in_the_window_is_named_with_times() {
        let mut trace = settled(SendTarget::All, &[A, B], &[A]);
        trace.redis_at_ms = Some(10_001);
        trace.lookup = Some(TraceLookup {
            channel: Some("p:Chat:all".into()),
            subscribers: Some(1),
            ..TraceLookup::default()
        });
        let mut h = LinkHistory::default();
        h.record(Link::Backplane(B.into()), 9_000, true, "connected");
        h.record(
            Link::Backplane(B.into()),
            9_500,
            false,
            "reconnecting: connection refused",
        );
        let seen = [("p:Chat:all".to_string(), 10_001)];
        let causes = run(&trace, &seen, &nodes(), &h);
        assert_eq!(causes.len(), 1, "{causes:?}");
        let c = &causes[0];
        assert_eq!(c.verdict, Verdict::Fault);
        assert_eq!(
            c.headline,
            "b's backplane link was down in that window, so it missed the message"
        );
        assert!(
            c.evidence[0].starts_with("b's backplane was down from "),
            "{:?}",
            c.evidence
        );
        assert!(c.evidence[0].ends_with("and not back at the last word (reconnecting: connection refused)"));
        assert!(c.evidence.iter().any(|e| e.contains("NUMSUB p:Chat:all = 1")));
    }

    #[test]
    fn a_node_with_another_prefix_or_hub_is_a_mismatch() {
        let trace = settled(SendTarget::All, &[A, B], &[A]);
        let mut n = nodes();
        n[1].prefix = Some("q:".into());
        let seen = [("p:Chat:all".to_string(), 10_001)];
        let causes = run(&trace, &seen, &n, &LinkHistory::default());
        assert_eq!(
            causes[0].headline,
            "Prefix or hub mismatch: b listens under \"q:Chat:\", but the message went out on p:Chat:all"
        );
        n[1].prefix = Some("p:".into());
        n[1].hub = Some("Other".into());
        let causes = run(&trace, &seen, &n, &LinkHistory::default());
        assert!(causes[0].headline.contains("\"p:Other:\""), "{causes:?}");
    }

    #[test]
    fn a_sender_outside_the_taps_prefix_is_a_mismatch_and_a_down_sender_never_published() {
        let trace = settled(SendTarget::All, &[A, B], &[A]);
        let mut n = nodes();
        n[0].prefix = Some("other:".into());
        let causes = run(&trace, &[], &n, &LinkHistory::default());
        assert_eq!(
            causes[0].headline,
            "Prefix mismatch: a publishes under \"other:\", but the tap listens to \"p:\"*"
        );
        assert!(causes[0].evidence[0].contains("other:Chat:all"), "{causes:?}");

        let trace = settled(SendTarget::All, &[A, B], &[]);
        let mut h = LinkHistory::default();
        h.record(Link::Backplane(A.into()), 8_000, false, "reconnecting");
        h.record(Link::Backplane(A.into()), 12_000, true, "connected");
        let causes = run(&trace, &[], &nodes(), &h);
        assert_eq!(causes.len(), 1);
        assert!(
            causes[0]
                .headline
                .starts_with("a's backplane link was down when it was sent")
        );
        assert!(causes[0].evidence[1].contains("p:Chat:all"), "{causes:?}");
    }

    #[test]
    fn a_local_send_to_connection_is_expected_off_the_backplane() {
        let trace = settled(SendTarget::Connection("probe-a".into()), &[A], &[A]);
        assert!(
            worth_explaining(&trace, 20_000),
            "delivered, but Redis did not see it"
        );
        let causes = run(&trace, &[], &nodes(), &LinkHistory::default());
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].verdict, Verdict::Expected);
        assert!(causes[0].headline.contains("never touches Redis"));
        assert_eq!(
            causes[0].evidence[0],
            "connection probe-a is on a, the node it was sent through"
        );
        assert_eq!(causes[0].evidence[2], "a received it 4 ms after the send");

        // A real client held by the sender, per the lookup.
        let mut trace = settled(SendTarget::Connection("c9".into()), &[], &[]);
        trace.lookup = Some(TraceLookup {
            holders: vec![A.into()],
            ..TraceLookup::default()
        });
        let causes = run(&trace, &[], &nodes(), &LinkHistory::default());
        assert_eq!(causes[0].verdict, Verdict::Expected, "{causes:?}");
        assert_eq!(causes.len(), 1);
    }

    #[test]
    fn a_tap_outage_means_unknown_and_no_tap_says_so() {
        let trace = settled(SendTarget::All, &[A, B], &[]);
        let mut h = LinkHistory::default();
        h.record(Link::Tap, 9_800, false, "reconnecting");
        let causes = run(&trace, &[], &nodes(), &h);
        assert_eq!(causes[0].verdict, Verdict::Unknown);
        assert!(causes[0].headline.starts_with("The tap was not connected"));
        // Redis itself down: the sender's and the other node's backplanes first, then the tap.
        h.record(
            Link::Backplane(A.into()),
            9_700,
            false,
            "reconnecting: connection refused",
        );
        h.record(
            Link::Backplane(B.into()),
            9_700,
            false,
            "reconnecting: connection refused",
        );
        let causes = run(&trace, &[], &nodes(), &h);
        let heads: Vec<&str> = causes.iter().map(|c| c.headline.as_str()).collect();
        assert_eq!(heads.len(), 3, "{heads:?}");
        assert!(heads[0].starts_with("a's backplane link was down when it was sent"));
        assert!(heads[1].starts_with("b's backplane link was down in that window"));
        assert!(heads[2].starts_with("The tap was not connected"));

        let causes = explain(ExplainInput {
            trace: &trace,
            now_ms: 20_000,
            sightings: &[],
            nodes: &nodes(),
            history: &LinkHistory::default(),
            tap_prefix: None,
        });
        assert!(causes[0].headline.starts_with("No tap"), "{causes:?}");
    }

    #[test]
    fn nothing_explains_a_miss_then_the_counters_and_the_deaf_hint_are_given() {
        let trace = settled(SendTarget::All, &[A, B], &[A]);
        let mut n = nodes();
        n[1].forward_failures = 3;
        let seen = [("p:Chat:all".to_string(), 10_001)];
        let causes = run(&trace, &seen, &n, &LinkHistory::default());
        assert_eq!(causes.len(), 1);
        assert_eq!(
            causes[0].headline,
            "Redis carried it and b was connected, yet its probe did not receive it"
        );
        assert!(causes[0].evidence[1].contains("3 forward failures"), "{causes:?}");
        assert!(causes[0].action.contains("deaf"));
    }

    #[test]
    fn failed_sends_and_user_sends_to_real_clients() {
        let mut t = Traces::new(4);
        t.on_send_failed(5, A.into(), "no such method".into(), 10_000);
        let trace = t.get(5).cloned().expect("trace");
        let causes = run(&trace, &[], &nodes(), &LinkHistory::default());
        assert_eq!(causes[0].headline, "a did not take the send");
        assert_eq!(
            causes[0].evidence,
            vec!["the hub answered: no such method".to_string()]
        );

        let mut trace = settled(SendTarget::User("ann".into()), &[], &[]);
        trace.redis_at_ms = Some(10_001);
        trace.lookup = Some(TraceLookup {
            channel: Some("p:Chat:user:ann".into()),
            subscribers: Some(1),
            holders: vec![B.into()],
            ..TraceLookup::default()
        });
        let seen = [("p:Chat:user:ann".to_string(), 10_001)];
        let causes = run(&trace, &seen, &nodes(), &LinkHistory::default());
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].verdict, Verdict::Expected);
        assert!(
            causes[0]
                .evidence
                .contains(&"user \"ann\" is held by b".to_string())
        );
    }

    #[test]
    fn sightings_are_bounded_and_one_per_channel() {
        let mut s = Sightings::default();
        s.record(1, "p:Chat:all", 5);
        s.record(1, "p:Chat:all", 6);
        s.record(1, "p:Other:all", 7);
        assert_eq!(
            s.of(1),
            vec![("p:Chat:all".to_string(), 5), ("p:Other:all".to_string(), 7)]
        );
        for i in 0..(MAX_SIGHTINGS as u64 + 10) {
            s.record(100 + i, "c", i);
        }
        assert!(s.of(1).is_empty());
        assert_eq!(s.seen.len(), MAX_SIGHTINGS);
    }
}
