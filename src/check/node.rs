//! One node to check: its hub URL, its stats URL (derived from the hub URL's origin for a
//! Switchboard node, `none` for an ASP.NET Core server), and whether it gets the tokens.

/// One node to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckNode {
    pub hub_url: String,
    /// `None` for a node without a monitor endpoint (ASP.NET Core).
    pub stats_url: Option<String>,
    /// Named with `--node` or matching `--trust-nodes`: only then does it get the monitor token
    /// and the node token. A node known only from a heartbeat is checked without either.
    pub trusted: bool,
}

impl CheckNode {
    /// `HUB_URL[,STATS_URL|none]`, the dashboard's `--node` syntax; the stats URL of a Switchboard
    /// node is derived from the hub URL's origin.
    pub fn parse(text: &str) -> Result<CheckNode, String> {
        let (hub, stats) = match text.split_once(',') {
            Some((hub, stats)) => (hub.trim(), Some(stats.trim())),
            None => (text.trim(), None),
        };
        crate::client::check_hub_url(hub).map_err(|e| e.to_string())?;
        let origin = origin_of(hub).ok_or_else(|| format!("'{hub}' is not an http:// or https:// URL"))?;
        let stats_url = match stats {
            Some(s) if s.is_empty() || s.eq_ignore_ascii_case("none") => None,
            Some(s) => Some(s.to_string()),
            None => Some(format!("{origin}/switchboard/stats")),
        };
        Ok(CheckNode {
            hub_url: hub.trim_end_matches('/').to_string(),
            stats_url,
            trusted: true,
        })
    }
}

/// `scheme://host:port` of an http(s) URL.
pub(super) fn origin_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let host_len = rest.find('/').unwrap_or(rest.len());
    (host_len > 0).then(|| &url[..url.len() - rest.len() + host_len])
}
