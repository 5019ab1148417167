//! Past outages for the health rules: the down periods of the tap, the nodes and their backplane
//! links ([`OutageSpan`], from the model's link history), merged into incidents when they
//! overlap, and the `outage` rule that tells each incident that is over with its start, end,
//! length and culprit (info, until `HealthInputs::outage_memory_ms` after it ended).
//!
//! Pure, std only; time is an input. Called by `health::evaluate` and `health::inputs_from_model`.

use std::collections::BTreeSet;

use super::{Finding, HealthInputs, NodeReach, Severity};

/// Whose link an outage span is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum OutageLink {
    /// The observer's (the dashboard's) tap on Redis.
    Tap,
    /// The observer's link to a node (its probe and monitor): the node did not answer.
    Node(String),
    /// A node's own backplane link to Redis, as its stats reported it.
    Backplane(String),
}

/// One down period of one link: from, until (`None`: still down), and why, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutageSpan {
    pub link: OutageLink,
    pub from_ms: u64,
    pub to_ms: Option<u64>,
    pub detail: String,
}

/// Spans that start within this long of an incident's end belong to it: nodes report their
/// backplane state every 500 ms and reconnect on their own backoff, so one Redis restart is seen
/// a little apart by each.
pub const OUTAGE_MERGE_SLACK_MS: u64 = 2_000;

/// "29 s", "3 min 5 s".
fn length_words(ms: u64) -> String {
    let s = (ms + 500) / 1000;
    if s < 60 {
        format!("{s} s")
    } else {
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// One incident: overlapping outage spans merged.
struct Incident<'a> {
    from_ms: u64,
    /// `None` while any of its spans is still open.
    to_ms: Option<u64>,
    spans: Vec<&'a OutageSpan>,
}

/// Merges spans that overlap (or start within [`OUTAGE_MERGE_SLACK_MS`] of the incident's end)
/// into incidents, oldest first.
fn incidents(spans: &[OutageSpan]) -> Vec<Incident<'_>> {
    let mut sorted: Vec<&OutageSpan> = spans.iter().collect();
    sorted.sort_by_key(|s| (s.from_ms, s.link.clone()));
    let mut out: Vec<Incident> = Vec::new();
    for span in sorted {
        if let Some(last) = out.last_mut()
            && last
                .to_ms
                .is_none_or(|to| span.from_ms <= to + OUTAGE_MERGE_SLACK_MS)
        {
            last.to_ms = match (last.to_ms, span.to_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            last.spans.push(span);
            continue;
        }
        out.push(Incident {
            from_ms: span.from_ms,
            to_ms: span.to_ms,
            spans: vec![span],
        });
    }
    out
}

/// "the tap", "both nodes and the tap", "the tap and all 3 nodes", "node-a and node-b".
fn who_words(tap: bool, nodes: &[&str], all_nodes: bool) -> String {
    let nodes_words = match (nodes.len(), all_nodes) {
        (0, _) => String::new(),
        (1, true) => "the only node".to_string(),
        (2, true) => "both nodes".to_string(),
        (n, true) => format!("all {n} nodes"),
        (_, false) => nodes.join(", "),
    };
    match (tap, nodes_words.is_empty()) {
        (true, true) => "the tap".to_string(),
        (true, false) => format!("{nodes_words} and the tap"),
        (false, _) => nodes_words,
    }
}

/// Past outages: one info finding per incident that ended less than
/// [`HealthInputs::outage_memory_ms`] ago, with its times, length and culprit. Incidents still
/// under way are left to the critical rules (`redis-unreachable`, `node-unreachable`,
/// `backplane-down`).
///
/// The culprit: the tap and every node's backplane link down together → Redis; only the tap →
/// this machine's link to Redis; one node's backplane link → that node's link to Redis; a node
/// that did not answer → that node.
pub(super) fn rule(inputs: &HealthInputs, out: &mut Vec<Finding>) {
    let watched: BTreeSet<&str> = inputs
        .nodes
        .iter()
        .filter(|n| !matches!(n.reach, NodeReach::Stopped { .. }))
        .map(|n| n.name.as_str())
        .collect();
    for incident in incidents(&inputs.outages) {
        let Some(to_ms) = incident.to_ms else { continue };
        if inputs.now_ms.saturating_sub(to_ms) > inputs.outage_memory_ms {
            continue;
        }
        let mut tap = false;
        let mut lost_redis: BTreeSet<&str> = BTreeSet::new();
        let mut unanswered: BTreeSet<&str> = BTreeSet::new();
        for span in &incident.spans {
            match &span.link {
                OutageLink::Tap => tap = true,
                OutageLink::Backplane(n) => {
                    lost_redis.insert(n);
                }
                OutageLink::Node(n) => {
                    unanswered.insert(n);
                }
            }
        }
        let when = format!(
            "{}–{} UTC ({})",
            crate::monitor::model::traffic::hms_utc(incident.from_ms),
            crate::monitor::model::traffic::hms_utc(to_ms),
            length_words(to_ms.saturating_sub(incident.from_ms))
        );
        let lost: Vec<&str> = lost_redis.iter().copied().collect();
        let all_nodes = !watched.is_empty() && watched.iter().all(|n| lost_redis.contains(n));
        let mut finding = if !lost.is_empty() && all_nodes && (tap || lost.len() > 1) {
            Finding::new(
                "outage",
                Severity::Info,
                format!(
                    "Redis was unreachable {when}: {} lost it",
                    who_words(tap, &lost, true)
                ),
            )
            .subject("Redis")
            .action("over; if it happens again, look at the Redis server (restarts, memory, its host and network)")
        } else if tap && lost.is_empty() && unanswered.is_empty() {
            let summary = if watched.is_empty() {
                format!(
                    "the tap lost Redis {when}: no node is watched to tell Redis from this machine's link"
                )
            } else {
                format!(
                    "this machine's link to Redis was down {when}: only the tap lost it, the nodes kept theirs"
                )
            };
            Finding::new("outage", Severity::Info, summary)
                .action("over; traffic in that window was not seen by the dashboard: look at this machine's network to Redis if it recurs")
        } else if !lost.is_empty() {
            let mut f = Finding::new(
                "outage",
                Severity::Info,
                format!(
                    "{} lost the link to Redis {when}{}",
                    who_words(tap, &lost, false),
                    if tap { "" } else { ", the tap kept it" }
                ),
            )
            .action("over; look at those nodes' Redis URL, credentials and network if it recurs");
            if lost.len() == 1 && !tap {
                f = f.subject(lost[0]);
            }
            f
        } else {
            let names: Vec<&str> = unanswered.iter().copied().collect();
            let mut f = Finding::new(
                "outage",
                Severity::Info,
                format!("{} did not answer {when}", names.join(", ")),
            )
            .action("over; look at the node's log (a restart, a pause) if it recurs");
            if names.len() == 1 {
                f = f.subject(names[0]);
            }
            f
        };
        for span in &incident.spans {
            let whose = match &span.link {
                OutageLink::Tap => "the tap".to_string(),
                OutageLink::Node(n) => format!("{n} (did not answer)"),
                OutageLink::Backplane(n) => format!("{n}'s backplane link"),
            };
            let until = span
                .to_ms
                .map_or_else(|| "…".to_string(), crate::monitor::model::traffic::hms_utc);
            let why = if span.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", span.detail)
            };
            finding = finding.evidence(format!(
                "{whose} down {}–{until}{why}",
                crate::monitor::model::traffic::hms_utc(span.from_ms)
            ));
        }
        if tap {
            finding = finding.evidence("the tap saw no traffic in that window".to_string());
        }
        out.push(finding);
    }
}

/// The outage spans of every link in the model's history, named as the findings name nodes.
pub(super) fn spans_from_history(model: &crate::monitor::model::Model) -> Vec<OutageSpan> {
    use crate::monitor::model::explain::Link;
    let mut out = Vec::new();
    for link in model.history.links() {
        let which = match link {
            Link::Tap => OutageLink::Tap,
            Link::Probe(url) => OutageLink::Node(model.nodes.name_or_url(url)),
            Link::Backplane(url) => OutageLink::Backplane(model.nodes.name_or_url(url)),
        };
        for o in model.history.outages(link) {
            out.push(OutageSpan {
                link: which.clone(),
                from_ms: o.from_ms,
                to_ms: o.to_ms,
                detail: o.detail,
            });
        }
    }
    out
}
