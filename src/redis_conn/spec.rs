//! The one Redis connection spec: what a `--redis` URL and the `--redis-*` flags say, parsed once
//! with the `url` crate, and the one place that hides passwords in URLs.
//!
//! Pure: no sockets, no `redis` crate (the UI may hold and show a `RedisSpec`). Forms:
//! - `redis://[user:password@]host[:port][/db]`, `rediss://...` for TLS (port 6379 by default);
//! - several seeds `redis://h1:p1,h2:p2` (a cluster: any reachable seed will do);
//! - `redis+sentinel://[user:password@]s1:26379,s2:26379/mymaster[/db]` (and `rediss+sentinel`):
//!   the user and password are the data nodes'; the sentinels' own are `sentinel_username` /
//!   `sentinel_password` (flags, never in the URL);
//! - `#insecure` at the end (as redis-rs and others accept) is `--redis-tls-insecure`.

use std::fmt;

use crate::tls::ClientTls;

/// Default ports when a URL names none.
pub const DEFAULT_REDIS_PORT: u16 = 6379;
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// A host and port as given (a name, an IPv4 or an IPv6 address without brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub host: String,
    pub port: u16,
}

impl Addr {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Addr {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How the servers are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server, or several seeds of one cluster.
    Servers(Vec<Addr>),
    /// Ask these sentinels where the primary of `master` is.
    Sentinel { sentinels: Vec<Addr>, master: String },
}

/// Whether the servers form a Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterMode {
    /// Asked at connect (`INFO cluster`): a cluster is used as one, a single server as itself.
    #[default]
    Detect,
    /// `--cluster`: a seed that is not in cluster mode is an error.
    Required,
}

/// Options that come from flags (or the dashboard's Redis panel) rather than from the URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisOptions {
    /// `--redis-ca`, `--redis-cert`, `--redis-key`, `--redis-sni`, `--redis-tls-insecure`.
    pub tls: ClientTls,
    /// `--redis-sentinel-user` / `--redis-sentinel-password`: for sentinels that need their own.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    /// `--cluster`.
    pub cluster: ClusterMode,
}

/// A parsed, validated Redis connection spec. `Debug` and `Display` never show a password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSpec {
    pub topology: Topology,
    /// `rediss://`: TLS to every server (and sentinel).
    pub tls: Option<ClientTls>,
    pub username: Option<String>,
    password: Option<String>,
    pub db: i64,
    pub sentinel_username: Option<String>,
    sentinel_password: Option<String>,
    pub cluster: ClusterMode,
}

/// Why a Redis URL or option was refused. Messages show the URL redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Redis URL \"{url}\": {reason}")]
pub struct SpecError {
    pub url: String,
    pub reason: String,
}

impl RedisSpec {
    /// Parses a URL and applies the flag options. TLS options given with a plain `redis://` URL
    /// are an error (they would silently do nothing).
    pub fn parse(url: &str, options: &RedisOptions) -> Result<Self, SpecError> {
        let bad = |reason: String| SpecError {
            url: redact(url),
            reason,
        };
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            bad("not a URL: write it like redis://host:6379/0 (or rediss://, redis+sentinel://)".into())
        })?;
        let (tls, sentinel) = match scheme.to_ascii_lowercase().as_str() {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis+sentinel" => (false, true),
            "rediss+sentinel" => (true, true),
            "http" | "https" | "ws" | "wss" => {
                return Err(bad(format!(
                    "{scheme}:// is a node's address; Redis URLs start with redis:// or rediss://"
                )));
            }
            other => {
                return Err(bad(format!(
                    "unknown scheme {other:?}: use redis://, rediss:// (TLS), redis+sentinel:// or rediss+sentinel://"
                )));
            }
        };
        // The authority may hold several hosts (seeds, sentinels), which `url` does not parse:
        // split them off, parse the URL with the first, and each further host on its own.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        // An '@' after the first '/', '?' or '#' means the user or password holds one of them
        // unencoded: refuse before anything parses the rest, since every later reason would quote
        // a piece of it (a "database", a "fragment", an "option" that is really the password).
        if rest[end..].contains('@') {
            return Err(bad(
                "the user or password holds a '/', '?' or '#': percent-encode it (%2F, %3F, %23)".into(),
            ));
        }
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let host_list: Vec<&str> = hosts.split(',').map(str::trim).collect();
        if host_list.iter().any(|h| h.is_empty()) {
            return Err(bad(
                "no host (expected host:port, or host1:port1,host2:port2)".into()
            ));
        }
        let default_port = if sentinel {
            DEFAULT_SENTINEL_PORT
        } else {
            DEFAULT_REDIS_PORT
        };
        let userinfo_part = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let first = format!("redis://{userinfo_part}{}{tail}", host_list[0]);
        let parsed = url::Url::parse(&first).map_err(|e| bad(url_error(e)))?;
        let mut addrs = vec![addr_of(&parsed, default_port).map_err(&bad)?];
        for host in &host_list[1..] {
            let one = url::Url::parse(&format!("redis://{host}"))
                .map_err(|e| bad(format!("host {host:?}: {e}")))?;
            addrs.push(addr_of(&one, default_port).map_err(&bad)?);
        }
        let decode = |s: &str| {
            percent_decode(s)
                .map_err(|_| bad("the user or password is not valid percent-encoded UTF-8".into()))
        };
        let username = Some(decode(parsed.username())?).filter(|u| !u.is_empty());
        let password = parsed.password().map(decode).transpose()?;
        let segments: Vec<&str> = parsed
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        let parse_db = |s: &str| {
            s.parse::<i64>()
                .ok()
                .filter(|d| *d >= 0)
                .ok_or_else(|| bad(format!("database {s:?} is not a number")))
        };
        let (topology, db) = if sentinel {
            let master = segments.first().map(|m| decode(m)).transpose()?.ok_or_else(|| {
                bad("a sentinel URL names the master: redis+sentinel://host:26379/mymaster".into())
            })?;
            let db = match segments.get(1) {
                Some(d) => parse_db(d)?,
                None => 0,
            };
            if segments.len() > 2 {
                return Err(bad("expected /master[/db] after the sentinels".into()));
            }
            (
                Topology::Sentinel {
                    sentinels: addrs,
                    master,
                },
                db,
            )
        } else {
            let db = match segments.as_slice() {
                [] => 0,
                [d] => parse_db(d)?,
                _ => return Err(bad("expected at most /db after the host".into())),
            };
            (Topology::Servers(addrs), db)
        };
        if let Some((key, _)) = parsed.query_pairs().next() {
            return Err(bad(format!(
                "unknown option {key:?} in the URL (TLS and sentinel options are flags: --redis-ca, ...)"
            )));
        }
        let mut tls_options = options.tls.clone();
        match parsed.fragment() {
            None | Some("") => {}
            Some("insecure") => tls_options.insecure = true,
            Some(other) => return Err(bad(format!("unknown fragment #{other} (only #insecure)"))),
        }
        if !tls && tls_options != ClientTls::default() {
            return Err(bad(
                "TLS options were given, but the URL is redis:// (use rediss:// for TLS)".into(),
            ));
        }
        if options.sentinel_password.is_some() && !sentinel {
            return Err(bad(
                "a sentinel password was given, but the URL is not redis+sentinel://".into(),
            ));
        }
        Ok(RedisSpec {
            topology,
            tls: tls.then_some(tls_options),
            username,
            password,
            db,
            sentinel_username: options.sentinel_username.clone(),
            sentinel_password: options.sentinel_password.clone(),
            cluster: options.cluster,
        })
    }

    /// A single plaintext server, for the demo's private redis-server and tests.
    pub fn single(addr: Addr) -> Self {
        RedisSpec {
            topology: Topology::Servers(vec![addr]),
            tls: None,
            username: None,
            password: None,
            db: 0,
            sentinel_username: None,
            sentinel_password: None,
            cluster: ClusterMode::Detect,
        }
    }

    /// The flag options this spec was made with (for a form that shows them again).
    pub fn options(&self) -> RedisOptions {
        RedisOptions {
            tls: self.tls.clone().unwrap_or_default(),
            sentinel_username: self.sentinel_username.clone(),
            sentinel_password: self.sentinel_password.clone(),
            cluster: self.cluster,
        }
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    pub fn sentinel_password(&self) -> Option<&str> {
        self.sentinel_password.as_deref()
    }

    /// Sets the password (a password typed into the dashboard, kept out of the saved URL).
    pub fn set_password(&mut self, password: Option<String>) {
        self.password = password.filter(|p| !p.is_empty());
    }

    pub fn is_sentinel(&self) -> bool {
        matches!(self.topology, Topology::Sentinel { .. })
    }

    /// The URL without its password, in the canonical form (what settings files keep).
    pub fn url_without_password(&self) -> String {
        self.render(None)
    }

    /// The URL with the password shown as `***` (what logs and messages show).
    pub fn redacted(&self) -> String {
        self.render(self.password.as_ref().map(|_| "***"))
    }

    fn render(&self, password: Option<&str>) -> String {
        let (scheme, hosts, path) = match &self.topology {
            Topology::Servers(addrs) => (
                if self.tls.is_some() { "rediss" } else { "redis" },
                addrs,
                if self.db == 0 {
                    String::new()
                } else {
                    format!("/{}", self.db)
                },
            ),
            Topology::Sentinel { sentinels, master } => (
                if self.tls.is_some() {
                    "rediss+sentinel"
                } else {
                    "redis+sentinel"
                },
                sentinels,
                if self.db == 0 {
                    format!("/{}", percent_encode(master))
                } else {
                    format!("/{}/{}", percent_encode(master), self.db)
                },
            ),
        };
        let userinfo = match (&self.username, password) {
            (Some(user), Some(pw)) => format!("{}:{pw}@", percent_encode(user)),
            (None, Some(pw)) => format!(":{pw}@"),
            (Some(user), None) => format!("{}@", percent_encode(user)),
            (None, None) => String::new(),
        };
        let hosts: Vec<String> = hosts.iter().map(Addr::to_string).collect();
        format!("{scheme}://{userinfo}{}{path}", hosts.join(","))
    }

    /// One line for the Redis panel: "TLS, verified · user alice · sentinel mymaster (3 sentinels)".
    pub fn describe(&self) -> String {
        let mut parts = vec![match &self.tls {
            Some(tls) => tls.describe(),
            None => "plaintext".to_string(),
        }];
        match (&self.username, self.password.is_some()) {
            (Some(user), _) => parts.push(format!("user {user}")),
            (None, true) => parts.push("password".to_string()),
            (None, false) => {}
        }
        match &self.topology {
            Topology::Sentinel { sentinels, master } => parts.push(format!(
                "sentinel master {master} ({} sentinels)",
                sentinels.len()
            )),
            Topology::Servers(addrs) if addrs.len() > 1 => parts.push(format!("{} seeds", addrs.len())),
            Topology::Servers(_) => {}
        }
        if self.cluster == ClusterMode::Required {
            parts.push("cluster required".to_string());
        }
        parts.join(" · ")
    }
}

impl fmt::Debug for RedisSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSpec")
            .field("url", &self.redacted())
            .field("tls", &self.tls)
            .field("sentinel_username", &self.sentinel_username)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "***"),
            )
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl fmt::Display for RedisSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The `url` crate's parse errors in words.
fn url_error(e: url::ParseError) -> String {
    match e {
        url::ParseError::InvalidPort => "bad port: use a number from 1 to 65535".to_string(),
        url::ParseError::EmptyHost => "no host".to_string(),
        url::ParseError::InvalidIpv6Address => {
            "bad IPv6 address (write it in brackets: [::1]:6379)".to_string()
        }
        other => other.to_string(),
    }
}

fn addr_of(parsed: &url::Url, default_port: u16) -> Result<Addr, String> {
    let host = match parsed.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        _ => return Err("no host".to_string()),
    };
    Ok(Addr::new(host, parsed.port().unwrap_or(default_port)))
}

/// `%XX` escapes decoded (a malformed escape is kept as it is); the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
}

/// Everything but RFC 3986's unreserved characters escaped, for a user or master name put back
/// into a URL.
fn percent_encode(s: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Where the password sits in a URL-like string: the byte range after `user:` and before the
/// last `@` of the authority. Works on strings that are not valid URLs too (a half-typed URL
/// in a text field still must not show its password).
fn password_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    // The last '@' anywhere, not only before the first '/', '?' or '#': a password may hold those
    // unencoded (`redis://:p/w@h`), and hiding too much of a URL that has an '@' in its path is
    // the safe mistake.
    let at = start + url[start..].rfind('@')?;
    let colon = start + url[start..at].find(':')?;
    Some((colon + 1, at))
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match password_span(url) {
        Some((from, to)) => format!("{}***{}", &url[..from], &url[to..]),
        None => url.to_string(),
    }
}

/// The URL with its password removed (`redis://user@h`, `redis://h`), for settings files.
pub fn without_password(url: &str) -> String {
    match password_span(url) {
        Some((from, to)) => {
            let user_end = from - 1; // the ':' before the password
            let user_start = url.find("://").map_or(0, |s| s + 3);
            if user_end == user_start {
                format!("{}{}", &url[..user_start], &url[to + 1..])
            } else {
                format!("{}{}", &url[..user_end], &url[to..])
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> RedisSpec {
        RedisSpec::parse(url, &RedisOptions::default()).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn refuse(url: &str) -> String {
        RedisSpec::parse(url, &RedisOptions::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn plain_tls_acl_and_db() {
        let s = parse("redis://127.0.0.1:6380/2");
        assert_eq!(s.topology, Topology::Servers(vec![Addr::new("127.0.0.1", 6380)]));
        assert_eq!((s.db, s.tls.is_none(), s.password()), (2, true, None));

        let s = parse("rediss://:KEY%2F1@name.redis.cache.windows.net:6380");
        assert_eq!(s.password(), Some("KEY/1"));
        assert_eq!(s.username, None);
        assert_eq!(s.tls, Some(ClientTls::default()));
        assert_eq!(s.redacted(), "rediss://:***@name.redis.cache.windows.net:6380");
        assert_eq!(
            s.url_without_password(),
            "rediss://name.redis.cache.windows.net:6380"
        );

        let s = parse("rediss://alice:s3cret@h#insecure");
        assert_eq!(
            (s.username.as_deref(), s.password()),
            (Some("alice"), Some("s3cret"))
        );
        assert!(s.tls.as_ref().is_some_and(|t| t.insecure));
        assert_eq!(s.redacted(), "rediss://alice:***@h:6379");
        assert!(!format!("{s:?}").contains("s3cret"));
        assert!(s.describe().contains("insecure") && s.describe().contains("user alice"));

        let s = parse("redis://[::1]:7000");
        assert_eq!(s.topology, Topology::Servers(vec![Addr::new("::1", 7000)]));
        assert_eq!(s.redacted(), "redis://[::1]:7000");
    }

    #[test]
    fn seeds_and_sentinels() {
        let s = parse("redis://a:7000, b:7001,c");
        assert_eq!(
            s.topology,
            Topology::Servers(vec![
                Addr::new("a", 7000),
                Addr::new("b", 7001),
                Addr::new("c", 6379)
            ])
        );
        let s = parse("redis+sentinel://u:pw@s1:26379,s2/mymaster/3");
        assert_eq!(
            s.topology,
            Topology::Sentinel {
                sentinels: vec![Addr::new("s1", 26379), Addr::new("s2", 26379)],
                master: "mymaster".into()
            }
        );
        assert_eq!(s.db, 3);
        assert_eq!(
            s.redacted(),
            "redis+sentinel://u:***@s1:26379,s2:26379/mymaster/3"
        );
        assert!(refuse("redis+sentinel://s1:26379").contains("names the master"));
        let e = RedisSpec::parse(
            "redis://h",
            &RedisOptions {
                sentinel_password: Some("x".into()),
                ..RedisOptions::default()
            },
        )
        .unwrap_err();
        assert!(e.reason.contains("not redis+sentinel"));
    }

    #[test]
    fn bad_urls_are_refused_in_words_and_without_the_password() {
        for (url, words) in [
            ("localhost:6379", "not a URL"),
            ("http://:pw@h:1", "node's address"),
            ("mongodb://h", "unknown scheme"),
            ("redis://:pw@", "no host"),
            ("redis://h:99999", "bad port"),
            ("redis://h/x", "not a number"),
            ("redis://h/1/2", "at most /db"),
            ("redis://:pw@h?protocol=resp3", "unknown option"),
            ("redis://h#fast", "unknown fragment"),
        ] {
            let e = refuse(url);
            assert!(e.contains(words), "{url}: {e}");
            assert!(!e.contains("pw@"), "{url}: {e}");
        }
        let e = RedisSpec::parse(
            "redis://:pw@h",
            &RedisOptions {
                tls: ClientTls {
                    insecure: true,
                    ..ClientTls::default()
                },
                ..RedisOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("use rediss://") && !e.contains(":pw@"), "{e}");
    }

    #[test]
    fn one_rule_for_hiding_passwords() {
        assert_eq!(redact("redis://:secret@h:1"), "redis://:***@h:1");
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://u:se@cret@h:1"), "redis://u:***@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(redact("redis://u@h:1"), "redis://u@h:1");
        assert_eq!(redact("garbage :x@y"), "garbage :x@y");
        assert_eq!(without_password("redis://:secret@h:1/0"), "redis://h:1/0");
        assert_eq!(without_password("rediss://u:secret@h:1"), "rediss://u@h:1");
        assert_eq!(without_password("redis://h:1"), "redis://h:1");
        let mut typed = parse("rediss://u@h:6380");
        typed.set_password(Some("p/w".into()));
        assert_eq!(typed.redacted(), "rediss://u:***@h:6380");
        assert_eq!(typed.password(), Some("p/w"));
    }

    #[test]
    fn no_password_is_printed_whatever_it_holds() {
        let passwords = [
            "p/w",
            "p?w",
            "p#w",
            "p@w",
            "a:b",
            "p w",
            "%zz",
            "p,w",
            "p/w?x#y@z",
            "pa:ss/0",
        ];
        for pw in passwords {
            for url in [
                format!("redis://:{pw}@h:1/0"),
                format!("redis://user:{pw}@h:1"),
                format!("rediss://user:{pw}@h1:1,h2:2/0"),
                format!("redis+sentinel://:{pw}@s:26379/mymaster"),
            ] {
                let shown = redact(&url);
                assert!(!shown.contains(pw), "{url} redacted as {shown}");
                let shown = without_password(&url);
                assert!(!shown.contains(pw), "{url} without password is {shown}");
                match RedisSpec::parse(&url, &RedisOptions::default()) {
                    Ok(spec) => {
                        assert!(!spec.redacted().contains(pw), "{url}: {}", spec.redacted());
                        assert!(!format!("{spec:?}").contains(pw), "{url}: {spec:?}");
                    }
                    Err(e) => assert!(!e.to_string().contains(pw), "{url}: {e}"),
                }
            }
        }
        let e = RedisSpec::parse("redis://:p/w@h", &RedisOptions::default()).unwrap_err();
        assert!(e.to_string().contains("percent-encode"), "{e}");
    }
}
