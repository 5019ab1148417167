//! Where a test message went, for its trace and its explanation: the Redis channel it was
//! published on and its subscriber count (`PUBSUB NUMSUB`, or the memory bus's count), and which
//! watched nodes hold the user, connection or group (each node's `/switchboard/stats?user=…` /
//! `?connection=…`, and `/switchboard/connections?group=…&limit=1`). A message to a client that
//! is not a probe can be followed no further than this.
//!
//! Asked once per send request, and at most once a second across requests (`numsub::Limiter`), so a
//! burst never turns into a stream of Redis commands and HTTP requests.
//!
//! Run by `send::spawn_send`; uses `client::http`, `backplane::naming` and the tap's client
//! options. Never `hub` (only what a node serves).

use std::time::Duration;

use super::numsub::{Limiter, numsub};

use super::{NodeTarget, SendTarget, TapSource, TraceLookup};
use crate::client::{NodeTls, encode_component};

/// Deadline of each node's answer.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// What a lookup may use: the tap's source (for NUMSUB) and the watched nodes.
#[derive(Clone)]
pub(crate) struct LookupContext {
    pub tap: Option<TapSource>,
    pub nodes: Vec<NodeTarget>,
    /// Hub URLs of the trusted nodes: only these get the monitor token.
    pub trusted: std::collections::HashSet<String>,
    pub limiter: Limiter,
    /// What https nodes are verified against (`--node-ca`).
    pub tls: Option<NodeTls>,
    /// Sent to the nodes' monitor endpoints.
    pub monitor_token: Option<crate::monitor_token::MonitorToken>,
}

/// The query string asking a node about `target`, for user and connection targets.
pub(crate) fn holds_query(target: &SendTarget) -> Option<String> {
    match target {
        SendTarget::User(u) => Some(format!("user={}", encode_component(u))),
        SendTarget::Connection(c) => Some(format!("connection={}", encode_component(c))),
        _ => None,
    }
}

/// Whether a node's stats document (with `holds`) says it holds the target; `None` when the
/// document does not say (an older node, or not a Switchboard node).
pub(crate) fn holds(doc: &serde_json::Value) -> Option<bool> {
    let holds = doc.get("holds")?;
    if let Some(n) = holds.get("user_connections").and_then(serde_json::Value::as_u64) {
        return Some(n > 0);
    }
    holds.get("connection_here").and_then(serde_json::Value::as_bool)
}

/// The channel a node publishes a message to `target` on.
pub(crate) fn channel_of(prefix: &str, hub: &str, target: &SendTarget) -> Option<String> {
    Some(super::model::explain::target_channel(prefix, hub, target))
}

/// What one node says about a lookup's target: its stats document (asked with `holds` for a user
/// or connection target) and, for a group target, whether it has a member (its first
/// `/switchboard/connections?group=` page).
async fn ask_node(
    ctx: &LookupContext,
    node: &NodeTarget,
    target: &SendTarget,
) -> (Option<serde_json::Value>, Option<bool>) {
    let Some(stats) = &node.monitor_url else {
        return (None, None);
    };
    let token = ctx
        .monitor_token
        .as_ref()
        .filter(|_| ctx.trusted.contains(&node.hub_url));
    let url = match holds_query(target) {
        Some(query) => format!("{stats}?{query}"),
        None => stats.clone(),
    };
    let doc = match super::directory::get(&url, token, ctx.tls.as_ref(), LOOKUP_TIMEOUT).await {
        Ok(r) if r.status == 200 => r.json::<serde_json::Value>().ok(),
        _ => None,
    };
    let holds = match target {
        SendTarget::Group(g) => {
            let query = super::directory::DirectoryQuery {
                group: Some(g.clone()),
                ..Default::default()
            };
            let page = super::directory::fetch_page(stats, &query, 1, None, token, ctx.tls.as_ref());
            match tokio::time::timeout(LOOKUP_TIMEOUT, page).await {
                Ok(Ok(page)) => Some(!page.connections.is_empty()),
                _ => None,
            }
        }
        _ => doc.as_ref().and_then(holds),
    };
    (doc, holds)
}

/// Runs one lookup for a message to `target` sent through `sending_node`: the channel and its
/// NUMSUB for every target; which node holds it for a group, user or connection.
pub(crate) async fn lookup(ctx: &LookupContext, sending_node: &str, target: &SendTarget) -> TraceLookup {
    let mut out = TraceLookup::default();
    let asks = ctx.nodes.iter().map(|node| async move {
        let (doc, holds) = ask_node(ctx, node, target).await;
        (node.hub_url.clone(), doc, holds)
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut naming: Option<(String, String)> = None;
    let scoped = !matches!(target, SendTarget::All | SendTarget::Others);
    for (hub_url, doc, holds) in &answers {
        match holds {
            _ if !scoped => {}
            Some(true) => out.holders.push(hub_url.clone()),
            Some(false) => {}
            None => out.unknown.push(hub_url.clone()),
        }
        if let Some(doc) = doc {
            let field = |k: &str| doc.get(k).and_then(serde_json::Value::as_str).map(str::to_string);
            if let (Some(prefix), Some(hub)) = (field("channel_prefix"), field("hub"))
                && (naming.is_none() || hub_url == sending_node)
            {
                naming = Some((prefix, hub));
            }
        }
    }
    out.holders.sort();
    out.unknown.sort();
    let Some((prefix, hub)) = naming else {
        out.note = Some("no node told its hub name, so the channel was not asked about".to_string());
        return out;
    };
    out.channel = channel_of(&prefix, &hub, target);
    let Some(channel) = out.channel.clone() else {
        return out;
    };
    match &ctx.tap {
        Some(TapSource::Memory { bus, .. }) => out.subscribers = Some(bus.subscribers(&channel) as u64),
        Some(TapSource::Redis { spec, .. }) => match numsub(spec, std::slice::from_ref(&channel)).await {
            Ok(counts) => out.subscribers = counts.first().copied(),
            Err(e) => out.note = Some(format!("PUBSUB NUMSUB not answered: {e}")),
        },
        None => out.note = Some("no Redis connection to ask for subscribers".to_string()),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_answers_and_channels() {
        let user = serde_json::json!({"holds": {"user": "ann", "user_connections": 2}});
        let none = serde_json::json!({"holds": {"user": "ann", "user_connections": 0}});
        let conn = serde_json::json!({"holds": {"connection": "c", "connection_here": true}});
        let old = serde_json::json!({"node_name": "a"});
        assert_eq!(
            [&user, &none, &conn, &old].map(holds),
            [Some(true), Some(false), Some(true), None]
        );
        assert_eq!(
            holds_query(&SendTarget::User("a b".into())).as_deref(),
            Some("user=a%20b")
        );
        assert_eq!(holds_query(&SendTarget::All), None);
        assert_eq!(
            channel_of("p:", "H", &SendTarget::Group("g".into())).as_deref(),
            Some("p:H:group:g")
        );
        assert_eq!(
            channel_of("p:", "H", &SendTarget::Others).as_deref(),
            Some("p:H:all")
        );
        assert_eq!(
            channel_of("p:", "H", &SendTarget::User("ann".into())).as_deref(),
            Some("p:H:user:ann")
        );
        assert_eq!(
            channel_of("", "H", &SendTarget::Connection("c1".into())).as_deref(),
            Some("H:connection:c1")
        );
    }
}
