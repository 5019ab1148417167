//! The bearer token that guards a node's monitor endpoints (`/switchboard/*` and `/metrics`): the
//! hub checks it (`--monitor-token` on `switchboard hub`), the dashboard and Prometheus send it
//! (`Authorization: Bearer TOKEN`).
//!
//! A secret: its `Debug` prints `***`, it has no `Display` and no serde, so it cannot end up in a
//! log line, a settings file or a workspace by accident. The comparison takes the same time
//! whichever byte differs (only the length can be told apart).
//!
//! Also the rule itself, one for the node's monitor endpoints (`hub::access`) and the agent's
//! routes (`agent::server`), each in its own words ([`Wording`]): with a token every request must
//! carry it; without one only loopback clients naming loopback ([`decide`], pure; [`refusal`], the
//! same on an axum request), with the loopback tests (`is_loopback_host`, `is_loopback`,
//! `PROXY_HEADERS`).
//!
//! Neutral ground like `status_doc`: `hub`, `monitor`, `agent` and `cli` use it; it uses no other
//! module of the crate.

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

/// The answer of the monitor-token rule to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// 401: a token is configured and the request does not carry it.
    Unauthorized(&'static str),
    /// 403: no token is configured and the client (or the `Host` it names) is not loopback.
    Forbidden(&'static str),
}

/// The one-line reasons a guarded service gives, in its own words (the node's monitor endpoints,
/// the agent).
#[derive(Debug, Clone, Copy)]
pub struct Wording {
    pub no_token_sent: &'static str,
    pub wrong_token: &'static str,
    pub loopback_only: &'static str,
    pub loopback_host_only: &'static str,
    /// The `realm` of the 401's `WWW-Authenticate: Bearer`.
    pub realm: &'static str,
    /// The debug log line of a refusal (with the peer, the path and the status, never the token).
    pub refused: &'static str,
}

/// The rule, pure: with a token, every request must carry it; without one, only loopback
/// clients (`local`: a loopback peer without a proxy header) naming a loopback `host`.
pub fn decide(
    token: Option<&MonitorToken>,
    authorization: Option<&[u8]>,
    local: bool,
    host: Option<&[u8]>,
    words: &Wording,
) -> Access {
    match (token, authorization) {
        (Some(token), Some(header)) if token.matches_header(header) => Access::Allowed,
        (Some(_), Some(_)) => Access::Unauthorized(words.wrong_token),
        (Some(_), None) => Access::Unauthorized(words.no_token_sent),
        (None, _) if !local => Access::Forbidden(words.loopback_only),
        (None, _) if host.is_some_and(is_loopback_host) => Access::Allowed,
        (None, _) => Access::Forbidden(words.loopback_host_only),
    }
}

/// Whether a request comes from a loopback client: a loopback peer, and no proxy header saying
/// the real client is elsewhere (a reverse proxy on the same host makes every peer loopback).
pub fn is_local_client(peer: Option<std::net::SocketAddr>, headers: &axum::http::HeaderMap) -> bool {
    peer.is_some_and(|p| is_loopback(p.ip())) && !PROXY_HEADERS.iter().any(|h| headers.contains_key(*h))
}

/// The rule applied to an HTTP request (its peer from `ConnectInfo`, its `Authorization`,
/// proxy headers and `Host`): `None` to let it through, else the 401 or 403 to answer, with a
/// one-line reason (and `WWW-Authenticate: Bearer` on a 401). Both guarded services' middleware.
pub fn refusal(
    token: Option<&MonitorToken>,
    request: &axum::extract::Request,
    words: &Wording,
) -> Option<axum::response::Response> {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let headers = request.headers();
    let local =
        peer.is_some_and(|p| is_loopback(p.ip())) && !PROXY_HEADERS.iter().any(|h| headers.contains_key(*h));
    let authorization = headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
    let host = headers
        .get(header::HOST)
        .map(HeaderValue::as_bytes)
        .or_else(|| request.uri().authority().map(|a| a.as_str().as_bytes()));
    let (status, reason) = match decide(token, authorization, local, host, words) {
        Access::Allowed => return None,
        Access::Unauthorized(reason) => (StatusCode::UNAUTHORIZED, reason),
        Access::Forbidden(reason) => (StatusCode::FORBIDDEN, reason),
    };
    tracing::debug!(peer = ?peer, path = %request.uri().path(), %status, "{}", words.refused);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer realm=\"{}\"", words.realm))
    {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    Some(response)
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
