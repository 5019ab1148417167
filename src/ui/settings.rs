//! What the dashboard remembers between runs (eframe persistence), kept apart from runtime state.
//! Every field has a default (`#[serde(default)]`), so a save from an older version still loads.
//! Never a password: URLs are stored with theirs stripped, and the password field is not here.
//! Never a Redis URL that did not work: the form's URL is saved only once a connection with it
//! succeeded ([`Settings::to_save`]); a refused one stays in the form for this run only, so it
//! cannot break the next start.

use serde::{Deserialize, Serialize};

use crate::monitor::model::workspace::{RedisConnSettings, Workspace};
use crate::monitor::{LinkState, NodeTarget};
use crate::redis_conn::without_password;

/// The eframe storage key.
pub const STORAGE_KEY: &str = "switchboard.settings";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The Redis URL without its password.
    pub redis_url: String,
    /// TLS files, the sentinels' user, cluster mode (no secrets).
    pub redis_options: RedisConnSettings,
    pub channel_prefix: String,
    /// Connect the tap at start.
    pub auto_connect: bool,
    /// Nodes the user added or trusted (announced ones are found again by heartbeat). These get
    /// the monitor and node tokens.
    pub nodes: Vec<NodeTarget>,
    /// `--trust-nodes` globs: discovered nodes whose hub URL matches get the tokens too.
    pub trust_nodes: Vec<String>,
    pub presenter: bool,
    /// Default sender name for chat test messages.
    pub send_user: String,
    /// Which Redis URL worked, this run (never saved as such: see [`Settings::to_save`]).
    #[serde(skip)]
    pub redis_memory: RedisUrlMemory,
}

/// The Redis URL a connection was last started with and the last one that worked: only the
/// latter is saved as the URL to connect to at the next start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisUrlMemory {
    /// The URL of the connection under way, and whether the tap has left its old state since
    /// (a Connected seen before that is the previous connection's).
    trying: Option<(String, bool)>,
    /// The last URL a connection succeeded with (or the one loaded, which had worked).
    worked: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            redis_options: RedisConnSettings::default(),
            channel_prefix: String::new(),
            auto_connect: true,
            nodes: Vec::new(),
            trust_nodes: Vec::new(),
            presenter: false,
            send_user: "dashboard".to_string(),
            redis_memory: RedisUrlMemory::default(),
        }
    }
}

impl Settings {
    /// Sets the Redis URL, keeping only the password-free form.
    pub fn set_redis_url(&mut self, url: &str) {
        self.redis_url = without_password(url.trim());
    }

    /// Settings as loaded from the last run: their Redis URL was saved because it worked, so it
    /// stays the one saved until another works.
    pub fn loaded(mut self) -> Self {
        if !self.redis_url.is_empty() {
            self.redis_memory.worked = Some(self.redis_url.clone());
        }
        self
    }

    /// A connection is being started with the form's URL.
    pub fn connecting(&mut self) {
        self.redis_memory.trying = Some((self.redis_url.clone(), false));
    }

    /// The tap's state, every frame: once the connection started by [`Settings::connecting`]
    /// is up, its URL is the one to save.
    pub fn observe_tap(&mut self, state: &LinkState) {
        let memory = &mut self.redis_memory;
        if let Some((url, left_old_state)) = &mut memory.trying {
            if *state != LinkState::Connected {
                *left_old_state = true;
            } else if *left_old_state {
                memory.worked = Some(std::mem::take(url));
                memory.trying = None;
            }
        }
    }

    /// What is saved: these settings with, as the Redis URL, the last one a connection
    /// succeeded with (empty when none did): a refused URL never reaches the next start.
    pub fn to_save(&self) -> Settings {
        Settings {
            redis_url: self.redis_memory.worked.clone().unwrap_or_default(),
            ..self.clone()
        }
    }

    /// Adds a node unless one with the same hub URL is listed. True if added.
    pub fn add_node(&mut self, target: NodeTarget) -> bool {
        if self.nodes.iter().any(|n| n.hub_url == target.hub_url) {
            return false;
        }
        self.nodes.push(target);
        true
    }

    /// The workspace file's content for these settings.
    pub fn workspace(&self) -> Workspace {
        Workspace {
            redis_url: without_password(&self.redis_url),
            redis_options: self.redis_options.clone(),
            channel_prefix: self.channel_prefix.clone(),
            nodes: self.nodes.clone(),
            trust_nodes: self.trust_nodes.clone(),
        }
    }

    /// Takes the Redis URL, prefix and node list from a workspace.
    pub fn apply_workspace(&mut self, workspace: Workspace) {
        self.set_redis_url(&workspace.redis_url);
        self.redis_options = workspace.redis_options;
        self.channel_prefix = workspace.channel_prefix;
        self.nodes = workspace.nodes;
        self.trust_nodes = workspace.trust_nodes;
    }

    /// Adds a `--trust-nodes` glob unless listed.
    pub fn add_trust_glob(&mut self, glob: &str) {
        let glob = glob.trim();
        if !glob.is_empty() && !self.trust_nodes.iter().any(|g| g == glob) {
            self.trust_nodes.push(glob.to_string());
        }
    }
}

/// Parses `HUB_URL[,STATS_URL|none]` as given to `--node` or typed in the UI. A Switchboard
/// node's stats URL is derived from the hub URL's origin when it is left out.
pub fn parse_node(text: &str) -> Result<NodeTarget, String> {
    let (hub, stats) = match text.split_once(',') {
        Some((hub, stats)) => (hub.trim(), Some(stats.trim())),
        None => (text.trim(), None),
    };
    let origin = origin_of(hub).ok_or_else(|| format!("'{hub}' is not an http:// or https:// URL"))?;
    let monitor_url = match stats {
        Some(s) if s.eq_ignore_ascii_case("none") || s.is_empty() => None,
        Some(s) => {
            origin_of(s).ok_or_else(|| format!("'{s}' is not an http:// or https:// URL"))?;
            Some(s.to_string())
        }
        None => Some(format!("{origin}/switchboard/stats")),
    };
    Ok(NodeTarget {
        hub_url: hub.trim_end_matches('/').to_string(),
        monitor_url,
    })
}

/// `scheme://host:port` of an http(s) URL.
fn origin_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let host_len = rest.find('/').unwrap_or(rest.len());
    if host_len == 0 {
        return None;
    }
    Some(&url[..url.len() - rest.len() + host_len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_without_stats_url_gets_the_switchboard_one() {
        let n = parse_node("http://127.0.0.1:5001/chat").unwrap();
        assert_eq!(n.hub_url, "http://127.0.0.1:5001/chat");
        assert_eq!(
            n.monitor_url.as_deref(),
            Some("http://127.0.0.1:5001/switchboard/stats")
        );
    }

    #[test]
    fn none_means_a_node_without_monitor_endpoint() {
        let n = parse_node("https://chat.example:443/hubs/chat, none").unwrap();
        assert_eq!(n.monitor_url, None);
        let n = parse_node("http://h:1/chat,http://h:2/stats").unwrap();
        assert_eq!(n.monitor_url.as_deref(), Some("http://h:2/stats"));
    }

    #[test]
    fn bad_node_urls_are_readable_errors() {
        assert!(parse_node("localhost:5001").unwrap_err().contains("not an http"));
        assert!(parse_node("http:///chat").is_err());
        assert!(parse_node("http://h/chat,ftp://x").is_err());
    }

    #[test]
    fn settings_never_keep_a_password() {
        let mut s = Settings::default();
        s.set_redis_url("redis://:hunter2@127.0.0.1:6379/3");
        assert!(!s.redis_url.contains("hunter2"));
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("hunter2"));
    }

    #[test]
    fn only_a_url_that_worked_is_saved() {
        let mut s = Settings {
            redis_url: "redis://good:1".to_string(),
            ..Settings::default()
        }
        .loaded();
        assert_eq!(
            s.to_save().redis_url,
            "redis://good:1",
            "the loaded URL had worked"
        );
        // A refused URL: typed, tried, never connected.
        s.set_redis_url("redis://refused:1");
        s.connecting();
        s.observe_tap(&LinkState::Connected); // the old tap, still up
        s.observe_tap(&LinkState::Connecting);
        s.observe_tap(&LinkState::Reconnecting {
            attempt: 1,
            retry_at_ms: 0,
            error: "refused".into(),
        });
        assert_eq!(s.redis_url, "redis://refused:1", "the form keeps what was typed");
        assert_eq!(s.to_save().redis_url, "redis://good:1");
        // Then one that works.
        s.set_redis_url("redis://other:2");
        s.connecting();
        s.observe_tap(&LinkState::Connecting);
        s.observe_tap(&LinkState::Connected);
        assert_eq!(s.to_save().redis_url, "redis://other:2");
        // Nothing loaded, nothing worked: nothing saved.
        let mut fresh = Settings::default();
        fresh.set_redis_url("redis://typed:3");
        assert_eq!(fresh.to_save().redis_url, "");
        let json = serde_json::to_string(&s.to_save()).unwrap();
        assert!(
            !json.contains("refused") && !json.contains("redis_memory"),
            "{json}"
        );
    }

    #[test]
    fn old_saves_load_with_defaults() {
        let s: Settings = serde_json::from_str(r#"{"redis_url":"redis://h:1"}"#).unwrap();
        assert_eq!(s.redis_url, "redis://h:1");
        assert_eq!(s.send_user, "dashboard");
        assert!(s.auto_connect);
    }
}
