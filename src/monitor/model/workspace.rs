//! The saved workspace: Redis URL (never a password), channel prefix, node list, as a JSON file
//! that old and new versions can read (`serde(default)`). Pure: text in, text out.

use serde::{Deserialize, Serialize};

use crate::monitor::NodeTarget;
use crate::redis_conn::{ClusterMode, RedisOptions, without_password};
use crate::tls::ClientTls;

/// What a workspace file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Workspace {
    /// Without its password ([`without_password`] is applied when saving and loading).
    pub redis_url: String,
    /// TLS files, the sentinels' user, cluster mode.
    pub redis_options: RedisConnSettings,
    pub channel_prefix: String,
    pub nodes: Vec<NodeTarget>,
    /// `--trust-nodes` globs: discovered nodes whose hub URL matches get the tokens
    /// (`model::trust`). Globs only: the tokens themselves are never saved.
    pub trust_nodes: Vec<String>,
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
            redis_url: without_password(&self.redis_url),
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
        ws.redis_url = without_password(&ws.redis_url);
        Ok(ws)
    }
}

/// How to reach Redis beyond its URL: TLS files, the sentinels' user, cluster mode. Saved with
/// the settings and workspaces (file paths and names only: never a password or a key's content).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConnSettings {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub sni: String,
    pub insecure: bool,
    pub sentinel_user: String,
    pub cluster: bool,
}

impl RedisConnSettings {
    /// The spec options, with the sentinels' password typed for this run (never saved).
    pub fn options(&self, sentinel_password: &str) -> RedisOptions {
        let path = |p: &String| {
            Some(p.trim())
                .filter(|p| !p.is_empty())
                .map(std::path::PathBuf::from)
        };
        let text = |t: &String| Some(t.trim().to_string()).filter(|t| !t.is_empty());
        RedisOptions {
            tls: ClientTls {
                ca: path(&self.ca),
                cert: path(&self.cert),
                key: path(&self.key),
                sni: text(&self.sni),
                insecure: self.insecure,
            },
            sentinel_username: text(&self.sentinel_user),
            sentinel_password: Some(sentinel_password.to_string()).filter(|p| !p.is_empty()),
            cluster: if self.cluster {
                ClusterMode::Required
            } else {
                ClusterMode::Detect
            },
        }
    }

    /// The savable part of options given on the command line.
    pub fn from_options(options: &RedisOptions) -> Self {
        let path =
            |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        RedisConnSettings {
            ca: path(&options.tls.ca),
            cert: path(&options.tls.cert),
            key: path(&options.tls.key),
            sni: options.tls.sni.clone().unwrap_or_default(),
            insecure: options.tls.insecure,
            sentinel_user: options.sentinel_username.clone().unwrap_or_default(),
            cluster: options.cluster == ClusterMode::Required,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_without_secrets() {
        let saved = RedisConnSettings {
            ca: "/etc/ca.pem".into(),
            insecure: true,
            sentinel_user: "watcher".into(),
            cluster: true,
            ..RedisConnSettings::default()
        };
        let options = saved.options("sentinel-secret");
        assert_eq!(options.sentinel_password.as_deref(), Some("sentinel-secret"));
        assert_eq!(
            options.tls.ca.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(RedisConnSettings::from_options(&options), saved);
        let ws = Workspace {
            redis_options: saved,
            ..Workspace::default()
        };
        assert!(!ws.to_json().contains("sentinel-secret"));
    }

    #[test]
    fn json_round_trip_defaults_and_errors() {
        let ws = Workspace {
            redis_url: "redis://:pw@h:6379".into(),
            channel_prefix: "app:".into(),
            redis_options: RedisConnSettings::default(),
            nodes: vec![NodeTarget {
                hub_url: "http://a/chat".into(),
                monitor_url: Some("m".into()),
            }],
            trust_nodes: vec!["http://10.0.0.*:5000/chat".into()],
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
