//! The saved workspace: Redis URL (never a password), channel prefix, node list, as a JSON file
//! that old and new versions can read (`serde(default)`). Pure: text in, text out.

use serde::{Deserialize, Serialize};

use crate::monitor::NodeTarget;

/// What a workspace file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Workspace {
    /// Without its password ([`strip_password`] is applied when saving and loading).
    pub redis_url: String,
    pub channel_prefix: String,
    pub nodes: Vec<NodeTarget>,
}

/// Why a workspace file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a Switchboard workspace (line {line}, column {column}): {reason}")]
pub struct WorkspaceError {
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

impl Workspace {
    /// Pretty JSON, with the password stripped from the Redis URL.
    pub fn to_json(&self) -> String {
        let clean = Workspace {
            redis_url: strip_password(&self.redis_url),
            ..self.clone()
        };
        // Serializing plain strings and vectors cannot fail; fall back to an empty object anyway.
        serde_json::to_string_pretty(&clean).unwrap_or_else(|_| "{}".to_string())
    }

    /// Parses a workspace; missing fields default, a password in the URL is dropped.
    pub fn from_json(text: &str) -> Result<Self, WorkspaceError> {
        let mut ws: Workspace = serde_json::from_str(text).map_err(|e| WorkspaceError {
            line: e.line(),
            column: e.column(),
            reason: e.to_string(),
        })?;
        ws.redis_url = strip_password(&ws.redis_url);
        Ok(ws)
    }
}

/// Removes the password from a `redis://` or `rediss://` URL (`:pw@` or `user:pw@`), leaving the
/// user, host, port, database and query. Anything else is returned unchanged.
pub fn strip_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    if !scheme.eq_ignore_ascii_case("redis") && !scheme.eq_ignore_ascii_case("rediss") {
        return url.to_string();
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some(("", _)) => format!("{scheme}://{host}{tail}"),
        Some((user, _)) => format!("{scheme}://{user}@{host}{tail}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_passwords_only() {
        assert_eq!(
            strip_password("redis://:secret@host:6379/2"),
            "redis://host:6379/2"
        );
        assert_eq!(strip_password("redis://user:secret@h/0"), "redis://user@h/0");
        assert_eq!(
            strip_password("rediss://u:p%40ss@h:1?timeout=3"),
            "rediss://u@h:1?timeout=3"
        );
        assert_eq!(strip_password("redis://:a@b@h"), "redis://h");
        assert_eq!(strip_password("redis://host:6379/1"), "redis://host:6379/1");
        assert_eq!(strip_password("redis://user@h"), "redis://user@h");
        assert_eq!(strip_password("http://u:p@h"), "http://u:p@h");
        for garbage in ["", "not a url", "://", "redis://", "redis://@"] {
            assert_eq!(strip_password(garbage), garbage);
        }
    }

    #[test]
    fn json_round_trip_defaults_and_errors() {
        let ws = Workspace {
            redis_url: "redis://:pw@h:6379".into(),
            channel_prefix: "app:".into(),
            nodes: vec![NodeTarget {
                hub_url: "http://a/chat".into(),
                monitor_url: Some("m".into()),
            }],
        };
        let text = ws.to_json();
        assert!(!text.contains("pw"));
        let back = Workspace::from_json(&text).expect("parse");
        assert_eq!(
            back,
            Workspace {
                redis_url: "redis://h:6379".into(),
                ..ws
            }
        );
        assert_eq!(Workspace::from_json("{}").expect("empty"), Workspace::default());
        let old = Workspace::from_json(r#"{"channel_prefix":"x","future":1}"#).expect("old");
        assert_eq!(old.channel_prefix, "x");
        let err = Workspace::from_json("{\n \"nodes\": 5}").expect_err("bad");
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("not a Switchboard workspace"));
    }
}
