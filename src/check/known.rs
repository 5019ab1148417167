//! The known-nodes state file as `check` uses it: load it (a corrupt file is a warning and a fresh
//! start), remember the nodes this run reached, the `node-gone` finding, and `--forget`.

use crate::known_nodes::{self, KnownNode, Seen};
use crate::monitor::model::health::{self, Finding};

use super::*;

pub(super) fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Loads the state file; a corrupt or unreadable one is a warning and a fresh start.
pub(super) fn load_known(path: &std::path::Path, findings: &mut Vec<Finding>) -> known_nodes::KnownNodes {
    match known_nodes::load(path) {
        Ok(k) => k,
        Err(e) => {
            findings.push(
                Finding::new(
                    "known-nodes",
                    health::Severity::Warning,
                    "the known-nodes file could not be read: starting afresh (nodes gone before this run are not reported)"
                        .to_string(),
                )
                .evidence(e.to_string())
                .action("nothing, if it was damaged; this run wrote a new one"),
            );
            known_nodes::KnownNodes::default()
        }
    }
}

/// Records this run's nodes, reports the known ones missing now as `node-gone` (but those given
/// or discovered this run: an unreachable one has its `node-unreachable`), and saves. Returns
/// how many it knows.
pub(super) fn remember(
    path: &std::path::Path,
    known: &mut known_nodes::KnownNodes,
    asked: &[CheckNode],
    seen: &[Seen],
    now_ms: u64,
    findings: &mut Vec<Finding>,
) -> usize {
    let gone = known.observe(seen, now_ms);
    for node in gone
        .iter()
        .filter(|g| !asked.iter().any(|c| same_url(&c.hub_url, &g.hub_url)))
    {
        findings.push(gone_finding(node, now_ms));
    }
    if let Err(e) = known_nodes::save(path, known) {
        findings.push(
            Finding::new(
                "known-nodes",
                health::Severity::Warning,
                "the known-nodes file could not be written: the next run will not miss a node that stops now"
                    .to_string(),
            )
            .evidence(e.to_string())
            .action("make its folder writable, pass --state FILE, or --no-state"),
        );
    }
    known.nodes().len()
}

pub(super) fn gone_finding(node: &KnownNode, now_ms: u64) -> Finding {
    let ago = now_ms.saturating_sub(node.last_seen_ms) / 1000;
    let mut f = Finding::new(
        "node-gone",
        health::Severity::Critical,
        format!(
            "node {} was seen by an earlier check and is missing now: it neither answered nor sent a heartbeat",
            node.name
        ),
    )
    .subject(&node.hub_url)
    .evidence(format!("{} last seen {ago} s ago", node.hub_url));
    f.action = format!(
        "bring it back, or if it was removed on purpose: switchboard check --forget {} (with the same --redis and --channel-prefix)",
        node.hub_url
    );
    f
}

/// `--forget`: forgets the nodes named (by name or hub URL) in the state file; returns what each
/// name matched (empty: nothing known by it).
pub fn forget(
    path: &std::path::Path,
    names: &[String],
) -> Result<Vec<(String, Vec<KnownNode>)>, known_nodes::StateError> {
    let mut known = known_nodes::load(path)?;
    let out: Vec<(String, Vec<KnownNode>)> = names
        .iter()
        .map(|name| (name.clone(), known.forget(name)))
        .collect();
    if out.iter().any(|(_, forgotten)| !forgotten.is_empty()) {
        known_nodes::save(path, &known)?;
    }
    Ok(out)
}
