//! Which nodes get the dashboard's secrets (the monitor token and the node token): the rule, pure.
//!
//! A node is trusted when the operator named it (`--node`, the Add node field, a workspace) or
//! when its hub URL matches one of the `--trust-nodes` globs. A node known only from a heartbeat
//! on `{prefix}switchboard:nodes` (anyone who can publish on the Redis can forge one) is
//! "discovered, not trusted": probed without any token until the operator trusts it.
//!
//! Globs are simple: `*` matches any run of characters (`/` and `:` included), `?` exactly one,
//! everything else itself, ASCII case-insensitively, against the whole hub URL:
//! `http://10.0.0.*:5000/chat`, `https://*.internal.example/*`.
//!
//! A heartbeat is ignored outright (and counted) when one of its URLs is not `http(s)://` or
//! `ws(s)://`, or carries a user or password (`http://u:p@h`): [`acceptable_announcement`].
//!
//! Used by the monitor runtime, `check` and the UI (the settings and the Nodes panel). Std only.

/// The `--trust-nodes` globs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustRules {
    globs: Vec<String>,
}

impl TrustRules {
    /// Rules from globs; empty ones are dropped.
    pub fn new<I, S>(globs: I) -> TrustRules
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TrustRules {
            globs: globs
                .into_iter()
                .map(Into::into)
                .map(|g: String| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect(),
        }
    }

    /// The globs, as given.
    pub fn globs(&self) -> &[String] {
        &self.globs
    }

    /// Whether a hub URL matches any glob.
    pub fn trusts(&self, hub_url: &str) -> bool {
        self.globs.iter().any(|g| glob_match(g, hub_url))
    }

    /// Whether a discovered node gets the tokens: its hub URL matches a glob AND its monitor URL
    /// (where the monitor token goes), if any, is on the same origin as the hub URL, so a forged
    /// heartbeat cannot pair a trusted hub URL with a monitor URL elsewhere.
    pub fn trusts_node(&self, hub_url: &str, monitor_url: Option<&str>) -> bool {
        self.trusts(hub_url) && monitor_url.is_none_or(|m| same_origin(hub_url, m))
    }
}

/// `scheme://host:port` of a web URL, lowercased, `ws` as `http` and `wss` as `https`, the
/// default port made explicit; `None` for anything else.
pub fn origin(url: &str) -> Option<(String, String)> {
    let lower = url.to_ascii_lowercase();
    let (scheme, rest, default_port) = if let Some(r) = lower.strip_prefix("http://") {
        ("http", r, "80")
    } else if let Some(r) = lower.strip_prefix("ws://") {
        ("http", r, "80")
    } else if let Some(r) = lower.strip_prefix("https://") {
        ("https", r, "443")
    } else if let Some(r) = lower.strip_prefix("wss://") {
        ("https", r, "443")
    } else {
        return None;
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    Some((scheme.to_string(), authority))
}

/// Whether two URLs share scheme (`ws` counted as `http`), host and port.
pub fn same_origin(a: &str, b: &str) -> bool {
    matches!((origin(a), origin(b)), (Some(x), Some(y)) if x == y)
}

/// `*` and `?` glob matching, ASCII case-insensitive, of the whole text (iterative with one
/// backtrack point, so no pattern can make it exponential).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether a URL a heartbeat announces may be used: empty (not announced), or `http://`,
/// `https://`, `ws://`, `wss://` (any case) with no user or password before the host.
pub fn acceptable_url(url: &str) -> bool {
    if url.is_empty() {
        return true;
    }
    let lower = url.to_ascii_lowercase();
    let Some(rest) = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
    else {
        return false;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    !authority.is_empty()
        && !authority.contains('@')
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Whether every URL of a heartbeat is acceptable (see [`acceptable_url`]); at least one must be
/// given.
pub fn acceptable_announcement(urls: &[&str]) -> bool {
    urls.iter().any(|u| !u.is_empty()) && urls.iter().all(|u| acceptable_url(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_the_whole_url() {
        let table = [
            ("http://10.0.0.*:5000/chat", "http://10.0.0.7:5000/chat", true),
            ("http://10.0.0.*:5000/chat", "http://10.0.0.7:5000/chat/x", false),
            ("http://10.0.0.?:5000/chat", "http://10.0.0.77:5000/chat", false),
            ("http://10.0.0.??:5000/chat", "http://10.0.0.77:5000/chat", true),
            (
                "https://*.internal.example/*",
                "https://a.b.internal.example/chat",
                true,
            ),
            (
                "https://*.internal.example/*",
                "https://evil.example/x.internal.example/chat",
                true,
            ),
            (
                "https://*.internal.example/*",
                "http://a.internal.example/chat",
                false,
            ),
            ("HTTP://LOCALHOST:*", "http://localhost:5001/chat", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "x", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("**", "", true),
            ("http://127.0.0.1:5000/chat", "http://127.0.0.1:5000/chat", true),
            ("http://127.0.0.1:5000/chat", "http://127.0.0.1:5001/chat", false),
        ];
        for (pattern, text, expected) in table {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} vs {text}");
        }
        let long = "a".repeat(5000);
        assert!(!glob_match(&format!("{}b", "*a".repeat(50)), &long));
        assert!(glob_match(&"*a".repeat(50), &long));
    }

    #[test]
    fn rules_trust_what_matches_and_drop_empty_globs() {
        let rules = TrustRules::new(["", "  ", "http://127.0.0.1:*/chat"]);
        assert_eq!(rules.globs().len(), 1);
        assert!(rules.trusts("http://127.0.0.1:5001/chat"));
        assert!(!rules.trusts("http://127.0.0.2:5001/chat"));
        assert!(!TrustRules::default().trusts("http://127.0.0.1:5001/chat"));
    }

    #[test]
    fn a_trusted_hub_url_with_a_monitor_url_elsewhere_is_not_trusted() {
        let rules = TrustRules::new(["http://10.0.0.*:5000/chat"]);
        let hub = "http://10.0.0.5:5000/chat";
        assert!(rules.trusts_node(hub, None));
        assert!(rules.trusts_node(hub, Some("http://10.0.0.5:5000/switchboard/stats")));
        assert!(rules.trusts_node(hub, Some("ws://10.0.0.5:5000/switchboard/monitor")));
        assert!(!rules.trusts_node(hub, Some("http://evil.example/switchboard/stats")));
        assert!(!rules.trusts_node(hub, Some("http://10.0.0.5:5001/switchboard/stats")));
        assert!(!rules.trusts_node(hub, Some("https://10.0.0.5:5000/switchboard/stats")));
        assert!(!rules.trusts_node("http://10.0.0.5:5001/chat", None));
        assert!(same_origin("http://H:80/a", "http://h/b"));
        assert!(same_origin("https://[::1]/a", "wss://[::1]:443/b"));
        assert!(!same_origin("http://u@h/a", "http://u@h/a"));
        assert!(!same_origin("file:///a", "file:///a"));
    }

    #[test]
    fn heartbeat_urls_must_be_web_urls_without_credentials() {
        for good in [
            "",
            "http://127.0.0.1:5000/chat",
            "HTTPS://node.example/chat",
            "ws://[::1]:5000/switchboard/monitor",
            "wss://n.example:443",
        ] {
            assert!(acceptable_url(good), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "http://u:p@h:5000/chat",
            "http://user@h/chat",
            "ftp://h/chat",
            "http://",
            "http:///chat",
            "data:text/html,x",
            "http://h/chat\nX-Injected: 1",
            "http://h /chat",
        ] {
            assert!(!acceptable_url(bad), "{bad}");
        }
        assert!(
            acceptable_url("http://h/chat?next=a@b"),
            "an @ after the host is a path"
        );
        assert!(acceptable_announcement(&["http://h/chat", "", "http://h"]));
        assert!(!acceptable_announcement(&["http://h/chat", "file:///x"]));
        assert!(!acceptable_announcement(&["", ""]));
    }
}
