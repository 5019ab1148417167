//! The bearer token that guards a node's monitor endpoints (`/switchboard/*` and `/metrics`): the
//! hub checks it (`--monitor-token` on `switchboard hub`), the dashboard and Prometheus send it
//! (`Authorization: Bearer TOKEN`).
//!
//! A secret: its `Debug` prints `***`, it has no `Display` and no serde, so it cannot end up in a
//! log line, a settings file or a workspace by accident. The comparison takes the same time
//! whichever byte differs (only the length can be told apart).
//!
//! Also the loopback tests of the rule "without a token, loopback clients naming loopback only"
//! (`is_loopback_host`, `is_loopback`, `PROXY_HEADERS`), shared by the node's guard
//! (`hub::access`) and the agent's (`agent::server`).
//!
//! Neutral ground like `status_doc`: `hub`, `monitor`, `agent` and `cli` use it; it uses nothing.

/// Longest token accepted: far beyond any generated secret, short enough for one header line.
pub const MAX_TOKEN_LEN: usize = 512;

/// A monitor bearer token (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct MonitorToken(String);

impl std::fmt::Debug for MonitorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MonitorToken(***)")
    }
}

impl MonitorToken {
    /// Checks a token given on the command line or in the environment: 1 to [`MAX_TOKEN_LEN`]
    /// visible ASCII characters (what fits a header value unchanged; RFC 6750's token68 and any
    /// password generator's output). The error never repeats the token.
    pub fn new(token: &str) -> Result<MonitorToken, String> {
        if token.is_empty() {
            return Err("the monitor token is empty".to_string());
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(format!(
                "the monitor token is longer than {MAX_TOKEN_LEN} characters"
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the monitor token may only contain visible ASCII characters (no spaces)".to_string(),
            );
        }
        Ok(MonitorToken(token.to_string()))
    }

    /// The `Authorization` header value that carries it: `Bearer TOKEN`.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether an `Authorization` header value carries this token (`Bearer`, any case, then the
    /// token), compared in constant time.
    pub fn matches_header(&self, header: &[u8]) -> bool {
        let Some(given) = bearer(header) else {
            return false;
        };
        constant_time_eq(given, self.0.as_bytes())
    }
}

/// Whether a `Host` value names loopback: `localhost`, an IPv4 address in 127.0.0.0/8 or `[::1]`,
/// with or without a port, in any case (a trailing dot on `localhost.` too). Without a token, a
/// monitor endpoint (a node's, the agent's) answers only requests whose `Host` passes this: a
/// page on a hostile domain rebound to 127.0.0.1 (DNS rebinding) sends its own name.
pub fn is_loopback_host(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return false;
        }
        return inside
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| is_loopback(std::net::IpAddr::V6(ip)));
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// Headers a reverse proxy adds to say who the real client is: a request carrying one is not a
/// loopback client, whatever its peer address.
pub const PROXY_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// Loopback, IPv4-mapped IPv6 included (a dual-stack `[::]` listener sees 127.0.0.1 that way).
pub fn is_loopback(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The credentials of a `Bearer` authorization header value, if it is one.
fn bearer(header: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if header.len() <= SCHEME.len() || !header[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &header[SCHEME.len()..];
    let start = rest.iter().position(|b| *b != b' ')?;
    let end = rest.iter().rposition(|b| *b != b' ').map_or(start, |e| e + 1);
    Some(&rest[start..end])
}

/// Equality whose time depends on the lengths only, never on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let token = MonitorToken::new("s3cret-Value").unwrap();
        let text = format!("{token:?} {:?}", Some(token.clone()));
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("***"));
    }

    #[test]
    fn bad_tokens_are_refused_without_repeating_them() {
        for bad in ["", "has space", "tab\there", "new\nline", "é"] {
            let error = MonitorToken::new(bad).unwrap_err();
            assert!(bad.is_empty() || !error.contains(bad), "{error}");
        }
        assert!(MonitorToken::new(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
        assert!(MonitorToken::new(&"a".repeat(MAX_TOKEN_LEN)).is_ok());
        assert!(MonitorToken::new("Zm9v-._~+/=").is_ok());
    }

    #[test]
    fn only_a_bearer_header_with_the_same_token_matches() {
        let token = MonitorToken::new("abc123").unwrap();
        assert!(token.matches_header(b"Bearer abc123"));
        assert!(token.matches_header(b"bearer abc123"));
        assert!(token.matches_header(b"BEARER   abc123  "));
        assert!(token.matches_header(token.header_value().as_bytes()));
        assert!(!token.matches_header(b"Bearer abc1234"));
        assert!(!token.matches_header(b"Bearer abc12"));
        assert!(!token.matches_header(b"Bearer abd123"));
        assert!(!token.matches_header(b"Basic abc123"));
        assert!(!token.matches_header(b"abc123"));
        assert!(!token.matches_header(b"Bearer "));
        assert!(!token.matches_header(b""));
    }

    #[test]
    fn constant_time_eq_is_plain_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"xyz", b"xyz"));
        assert!(!constant_time_eq(b"xyz", b"xy"));
        assert!(!constant_time_eq(b"xy", b"xyz"));
        assert!(!constant_time_eq(b"xyz", b"xyw"));
        assert!(!constant_time_eq(b"\0", b""));
    }
}
