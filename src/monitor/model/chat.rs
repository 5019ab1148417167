//! The chat story in the traffic: which entries are chat messages (what the audience of a demo
//! means by "messages", as opposed to heartbeats, group bookkeeping and the dashboard's probes),
//! their words without the dashboard's trace marker, the node they were sent through when it can
//! be known, and the chat rate. Used by the presenter's counters and latest messages and by the
//! topology's message paths. Pure: the time is passed in.

use super::entry::{EntryKind, TrafficEntry};
use super::traces::Traces;

/// How far back the chat helpers look in the ring at most (entries), so a frame's cost stays
/// bounded whatever the traffic rate.
pub const LOOK_BACK: usize = 5_000;

/// Whether `entry` is a chat message: an invocation delivered to clients (everyone, a group, a
/// user or a connection), not a heartbeat, group bookkeeping, an acknowledgement or a gap.
pub fn is_chat(entry: &TrafficEntry) -> bool {
    entry.method.is_some()
        && entry.error.is_none()
        && matches!(
            entry.kind,
            EntryKind::All | EntryKind::Group | EntryKind::User | EntryKind::Connection | EntryKind::Sr2
        )
}

/// Whether `entry` is a test message sent from a dashboard (it carries a trace marker).
pub fn is_test(entry: &TrafficEntry) -> bool {
    entry.trace.is_some()
}

/// A chat message as the audience reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Who wrote it, as the message names them ("ann@node-a"), when it does.
    pub user: Option<String>,
    /// The words, without any trace marker.
    pub text: String,
    /// To whom: "everyone", "group room-1", "user bob", "one connection".
    pub audience: String,
    /// A test message sent from a dashboard.
    pub test: bool,
}

/// The chat line of a chat entry: the user and the words of a `[user, text]` or
/// `[group, user, text]` message, else the entry's summary; trace markers removed.
pub fn line(entry: &TrafficEntry) -> ChatLine {
    let (user, text) = entry
        .args
        .as_deref()
        .and_then(user_and_text)
        .map(|(u, t)| (Some(u), t))
        .unwrap_or_else(|| (None, entry.summary.clone()));
    ChatLine {
        user,
        text: without_marker(&text),
        audience: audience(entry),
        test: is_test(entry),
    }
}

/// Who a message goes to, in words.
pub fn audience(entry: &TrafficEntry) -> String {
    match (entry.kind, entry.scope.as_deref()) {
        (EntryKind::All, _) if entry.excluded.is_empty() => "everyone".to_string(),
        (EntryKind::All, _) => "everyone else".to_string(),
        (EntryKind::Group, Some(g)) => format!("group {g}"),
        (EntryKind::User, Some(u)) => format!("user {u}"),
        (EntryKind::Connection, _) => "one connection".to_string(),
        _ => "clients".to_string(),
    }
}

/// The words with every `[sb-trace …]` marker and the space before it removed.
pub fn without_marker(text: &str) -> String {
    const OPEN: &str = "[sb-trace ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let Some(end) = rest[start..].find(']') else {
            break;
        };
        out.push_str(rest[..start].trim_end());
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out.trim().to_string()
}

/// `(user, text)` from JSON arguments `["user", "text"]` or `["group", "user", "text"]`.
fn user_and_text(args: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(args).ok()?;
    match value.as_array()?.as_slice() {
        [user, text] | [_, user, text] => Some((user.as_str()?.to_string(), text.as_str()?.to_string())),
        _ => None,
    }
}

/// The name of the node a chat message was sent through, when it can be known: a test message's
/// node from its trace (as the hub URL), or the node a demo user's name ends with (`ann@node-a`:
/// the demo's simulated users are named after their node) when `node_names` has it. `None` for
/// any other message: Redis does not say which server published.
pub fn sender_node(entry: &TrafficEntry, traces: &Traces, node_names: &[(&str, &str)]) -> Option<String> {
    if let Some(trace) = entry.trace.and_then(|id| traces.get(id)) {
        return Some(trace.node.clone());
    }
    let user = line(entry).user?;
    let (_, node) = user.rsplit_once('@')?;
    node_names
        .iter()
        .find(|(name, _)| *name == node)
        .map(|(_, url)| url.to_string())
}

/// Chat messages per second over the last `over_secs` seconds before `now_ms` (test messages
/// included; heartbeats, bookkeeping and gaps not), looking back at most [`LOOK_BACK`] entries.
pub fn rate<'a>(newest_first: impl Iterator<Item = &'a TrafficEntry>, now_ms: u64, over_secs: u64) -> f64 {
    let since = now_ms.saturating_sub(over_secs * 1000);
    let count = newest_first
        .take(LOOK_BACK)
        .take_while(|e| e.at_ms >= since)
        .filter(|e| e.at_ms <= now_ms && is_chat(e))
        .count();
    count as f64 / over_secs.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: EntryKind, method: Option<&str>, args: Option<&str>, at_ms: u64) -> TrafficEntry {
        TrafficEntry {
            seq: 0,
            at_ms,
            channel: "app:H:all".into(),
            size: 3,
            kind,
            hub: Some("H".into()),
            scope: Some("room-1".to_string()),
            method: method.map(str::to_string),
            args: args.map(str::to_string),
            excluded: Vec::new(),
            summary: "summary".to_string(),
            error: None,
            trace: args.and_then(super::super::traces::find_marker),
            gap: None,
            payload: Vec::new(),
        }
    }

    #[test]
    fn chat_is_invocations_to_clients_only() {
        assert!(is_chat(&entry(EntryKind::All, Some("ReceiveMessage"), None, 0)));
        assert!(is_chat(&entry(EntryKind::Group, Some("ReceiveMessage"), None, 0)));
        assert!(!is_chat(&entry(EntryKind::Heartbeat, Some("x"), None, 0)));
        assert!(!is_chat(&entry(EntryKind::Groups, Some("x"), None, 0)));
        assert!(!is_chat(&entry(EntryKind::All, None, None, 0)));
    }

    #[test]
    fn lines_read_as_words_without_markers() {
        let e = entry(
            EntryKind::All,
            Some("ReceiveMessage"),
            Some(r#"["dashboard","hello audience [sb-trace 8f]"]"#),
            0,
        );
        let l = line(&e);
        assert_eq!(l.user.as_deref(), Some("dashboard"));
        assert_eq!(l.text, "hello audience");
        assert!(l.test);
        assert_eq!(l.audience, "everyone");
        let g = entry(
            EntryKind::Group,
            Some("ReceiveMessage"),
            Some(r#"["room-1","ann@node-a","lunch?"]"#),
            0,
        );
        assert_eq!(line(&g).user.as_deref(), Some("ann@node-a"));
        assert_eq!(line(&g).text, "lunch?");
        assert_eq!(line(&g).audience, "group room-1");
        assert_eq!(without_marker("a [sb-trace 1] b [sb-trace 2]"), "a b");
        assert_eq!(without_marker("no marker"), "no marker");
        assert_eq!(without_marker("broken [sb-trace 1"), "broken [sb-trace 1");
    }

    #[test]
    fn the_sender_is_known_for_demo_users_and_test_messages_only() {
        let traces = Traces::new(10);
        let names = [("node-a", "http://a/chat"), ("node-b", "http://b/chat")];
        let demo = entry(
            EntryKind::All,
            Some("ReceiveMessage"),
            Some(r#"["ann@node-b","hi"]"#),
            0,
        );
        assert_eq!(
            sender_node(&demo, &traces, &names).as_deref(),
            Some("http://b/chat")
        );
        let other = entry(
            EntryKind::All,
            Some("ReceiveMessage"),
            Some(r#"["ann@elsewhere","hi"]"#),
            0,
        );
        assert_eq!(sender_node(&other, &traces, &names), None);
        let plain = entry(EntryKind::All, Some("ReceiveMessage"), Some(r#"["ann","hi"]"#), 0);
        assert_eq!(sender_node(&plain, &traces, &names), None);
    }

    #[test]
    fn the_rate_counts_chat_only_over_the_window() {
        let mut ring = Vec::new();
        for i in 0..10 {
            ring.push(entry(
                EntryKind::All,
                Some("ReceiveMessage"),
                None,
                10_000 + i * 500,
            ));
            ring.push(entry(EntryKind::Heartbeat, Some("hb"), None, 10_000 + i * 500));
        }
        // 10 chat messages between 10.0 s and 14.5 s: over the 5 s before 15 s, 2 per second.
        assert_eq!(rate(ring.iter().rev(), 15_000, 5), 2.0);
        // Only the last 2 s: 4 messages (13.0, 13.5, 14.0, 14.5).
        assert_eq!(rate(ring.iter().rev(), 15_000, 2), 2.0);
        assert_eq!(rate(ring.iter().rev(), 60_000, 5), 0.0);
    }
}
