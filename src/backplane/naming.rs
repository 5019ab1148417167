//! The ONLY place that maps (prefix, hub, scope) to Redis channel names (SIGNALR-WIRE.md B.2), and
//! back: the hub uses it to publish and subscribe, the dashboard's tap to classify what it sees.
//!
//! Wire name = prefix immediately followed by the logical name, no separator. Names carried inside
//! payloads (the client-result return channel) are logical, without the prefix.

/// Channel names for one hub type under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    prefix: String,
    hub: String,
}

/// What a wire channel is for, as far as its name tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    All,
    Connection(String),
    Group(String),
    User(String),
    InternalGroups,
    Ack(String),
    Return(String),
}

impl ChannelKind {
    /// A short lowercase label ("all", "group", ...), used in statistics and the dashboard's filter.
    pub fn label(&self) -> &'static str {
        match self {
            ChannelKind::All => "all",
            ChannelKind::Connection(_) => "connection",
            ChannelKind::Group(_) => "group",
            ChannelKind::User(_) => "user",
            ChannelKind::InternalGroups => "groups",
            ChannelKind::Ack(_) => "ack",
            ChannelKind::Return(_) => "return",
        }
    }
}

/// The channel on which Switchboard nodes announce themselves, under `prefix`. Not an ASP.NET Core
/// channel: real servers neither publish nor subscribe it.
pub fn nodes_channel(prefix: &str) -> String {
    format!("{prefix}{NODES_SUFFIX}")
}

/// The nodes channel's name after the prefix.
const NODES_SUFFIX: &str = "switchboard:nodes";

/// Whether `wire` is [`nodes_channel`]`(prefix)`, without building the name (the tap asks this
/// for every message).
pub fn is_nodes_channel(prefix: &str, wire: &str) -> bool {
    wire.strip_prefix(prefix) == Some(NODES_SUFFIX)
}

/// Splits a wire channel name into (hub, kind) given the prefix, trying the known suffixes.
/// Returns `None` for channels that are not ASP.NET Core backplane channels under this prefix.
pub fn classify(prefix: &str, wire: &str) -> Option<(String, ChannelKind)> {
    let logical = wire.strip_prefix(prefix)?;
    // A .NET type name never contains ':', so the hub name ends at the first one.
    let (hub, rest) = logical.split_once(':')?;
    if hub.is_empty() {
        return None;
    }
    Some((hub.to_string(), classify_rest(rest)?))
}

/// The kind of a channel from what follows its hub name and `:`.
fn classify_rest(rest: &str) -> Option<ChannelKind> {
    let kind = if rest == "all" {
        ChannelKind::All
    } else if rest == "internal:groups" {
        ChannelKind::InternalGroups
    } else if let Some(server) = rest.strip_prefix("internal:ack:") {
        ChannelKind::Ack(server.to_string())
    } else if let Some(server) = rest.strip_prefix("internal:return:") {
        ChannelKind::Return(server.to_string())
    } else if let Some(id) = rest.strip_prefix("connection:") {
        ChannelKind::Connection(id.to_string())
    } else if let Some(group) = rest.strip_prefix("group:") {
        ChannelKind::Group(group.to_string())
    } else if let Some(user) = rest.strip_prefix("user:") {
        ChannelKind::User(user.to_string())
    } else {
        return None;
    };
    Some(kind)
}

impl Channels {
    pub fn new(prefix: impl Into<String>, hub: impl Into<String>) -> Self {
        Channels {
            prefix: prefix.into(),
            hub: hub.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// `{X}{H}{parts...}`, concatenated (the hot path builds one per published message: no
    /// formatting machinery).
    fn wire(&self, parts: &[&str]) -> String {
        let len = self.prefix.len() + self.hub.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut name = String::with_capacity(len);
        name.push_str(&self.prefix);
        name.push_str(&self.hub);
        for part in parts {
            name.push_str(part);
        }
        name
    }

    /// `{X}{H}:all`
    pub fn all(&self) -> String {
        self.wire(&[":all"])
    }

    /// `{X}{H}:connection:{id}`
    pub fn connection(&self, connection_id: &str) -> String {
        self.wire(&[":connection:", connection_id])
    }

    /// `{X}{H}:group:{name}`
    pub fn group(&self, group: &str) -> String {
        self.wire(&[":group:", group])
    }

    /// `{X}{H}:user:{id}`
    pub fn user(&self, user_id: &str) -> String {
        self.wire(&[":user:", user_id])
    }

    /// `{X}{H}:internal:groups`
    pub fn internal_groups(&self) -> String {
        self.wire(&[":internal:groups"])
    }

    /// `{X}{H}:internal:ack:{server}`
    pub fn ack(&self, server_name: &str) -> String {
        self.wire(&[":internal:ack:", server_name])
    }

    /// `{X}{H}:internal:return:{server}` as subscribed (with the prefix).
    pub fn return_channel(&self, server_name: &str) -> String {
        self.wire(&[":internal:return:", server_name])
    }

    /// `{H}:internal:return:{server}` as written inside payloads (no prefix).
    pub fn logical_return_channel(&self, server_name: &str) -> String {
        format!("{}:internal:return:{server_name}", self.hub)
    }

    /// Turns a logical name found in a payload into the wire name to publish on.
    pub fn wire_from_logical(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    /// `{X}switchboard:nodes`
    pub fn nodes(&self) -> String {
        nodes_channel(&self.prefix)
    }

    /// Classifies a wire channel of this hub; `None` for other hubs and foreign channels.
    pub fn classify(&self, wire: &str) -> Option<ChannelKind> {
        // As `classify`, without copying the hub name out: this hub's is known. (`classify`
        // finds no hub name that is empty or holds a ':', so no channel is this hub's then.)
        if self.hub.is_empty() || self.hub.contains(':') {
            return None;
        }
        let rest = wire
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(self.hub.as_str())?
            .strip_prefix(':')?;
        classify_rest(rest)
    }

    /// The `PUBSUB CHANNELS` patterns of the dashboard's census, for every hub under `prefix`:
    /// connections, users, groups and servers (ack channels), with the prefix's glob characters
    /// escaped.
    pub fn census_patterns(prefix: &str) -> [String; 4] {
        let p = escape_glob(prefix);
        [
            format!("{p}*:connection:*"),
            format!("{p}*:user:*"),
            format!("{p}*:group:*"),
            format!("{p}*:internal:ack:*"),
        ]
    }

    /// The PSUBSCRIBE pattern matching every channel of every hub under this prefix, with glob
    /// characters in the prefix escaped (part D caveat).
    pub fn tap_pattern(prefix: &str) -> String {
        format!("{}*", escape_glob(prefix))
    }
}

/// Escapes Redis glob metacharacters (`*`, `?`, `[`, `]`, `\`) so the text matches literally.
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_concatenate_prefix_without_separator() {
        let c = Channels::new("MyApp", "Chat.Hub");
        assert_eq!(c.all(), "MyAppChat.Hub:all");
        assert_eq!(c.connection("abc"), "MyAppChat.Hub:connection:abc");
        assert_eq!(c.group("Room 1"), "MyAppChat.Hub:group:Room 1");
        assert_eq!(c.user("bob"), "MyAppChat.Hub:user:bob");
        assert_eq!(c.internal_groups(), "MyAppChat.Hub:internal:groups");
        assert_eq!(c.ack("srv_1"), "MyAppChat.Hub:internal:ack:srv_1");
        assert_eq!(c.return_channel("srv_1"), "MyAppChat.Hub:internal:return:srv_1");
        assert_eq!(
            c.logical_return_channel("srv_1"),
            "Chat.Hub:internal:return:srv_1"
        );
        assert_eq!(c.nodes(), "MyAppswitchboard:nodes");
    }

    #[test]
    fn classify_round_trips_every_kind() {
        let c = Channels::new("p:", "A.B+C");
        let cases = [
            (c.all(), ChannelKind::All),
            (c.connection("x"), ChannelKind::Connection("x".into())),
            (c.group("g:1"), ChannelKind::Group("g:1".into())),
            (
                c.group("a:connection:b"),
                ChannelKind::Group("a:connection:b".into()),
            ),
            (c.user("u"), ChannelKind::User("u".into())),
            (c.internal_groups(), ChannelKind::InternalGroups),
            (c.ack("s_1"), ChannelKind::Ack("s_1".into())),
            (c.return_channel("s_1"), ChannelKind::Return("s_1".into())),
        ];
        for (wire, kind) in cases {
            assert_eq!(c.classify(&wire), Some(kind.clone()), "{wire}");
            assert_eq!(classify("p:", &wire), Some(("A.B+C".to_string(), kind)));
        }
        assert_eq!(c.classify("p:Other:all"), None);
        assert_eq!(c.classify("q:A.B+C:all"), None);
        assert_eq!(classify("p:", "p:switchboard:nodes"), None);
        assert_eq!(classify("", "random"), None);
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(Channels::tap_pattern("app["), "app\\[*");
    }
}
