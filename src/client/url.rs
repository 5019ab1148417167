//! URL handling for the client: splitting `http://host:port/path?query` into what a TCP connect and
//! an HTTP request line need, deriving the negotiate and WebSocket URLs of a hub, and
//! percent-encoding query values. `https`/`wss` mark the target as TLS (see `client::transport`).
//!
//! Used by `client::http` and the connection set-up in `client`; depends on nothing else.

use tokio_tungstenite::tungstenite::http::Uri;

use super::ClientError;

/// The parts of an `http(s)://` or `ws(s)://` URL a TCP (or TLS) exchange needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Host as it goes to `TcpStream::connect` (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `https://` or `wss://`: speak TLS over the TCP connection.
    pub tls: bool,
    /// `host[:port]` as it goes in the `Host` header.
    pub authority: String,
    /// Path and query (`/` when the URL had no path), as it goes in the request line.
    pub path_and_query: String,
}

/// Parses an absolute `http://`, `https://`, `ws://` or `wss://` URL.
pub(crate) fn parse(url: &str) -> Result<Target, ClientError> {
    let bad = |reason: &str| ClientError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    let tls = match uri.scheme_str() {
        Some("http") | Some("ws") => false,
        Some("https") | Some("wss") => true,
        Some(other) => {
            return Err(bad(&format!(
                "unsupported scheme {other:?} (use http://, https://, ws:// or wss://)"
            )));
        }
        None => return Err(bad("not an absolute URL (no scheme)")),
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    let host = authority.host();
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path_and_query = match uri.path_and_query().map(|pq| pq.as_str()) {
        Some(s) if s.starts_with('/') => s.to_string(),
        Some(s) if !s.is_empty() => format!("/{s}"),
        _ => "/".to_string(),
    };
    Ok(Target {
        host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        port,
        tls,
        authority: authority
            .as_str()
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_string(),
        path_and_query,
    })
}

/// Splits a hub URL at its `?`: (`http://host/chat`, `a=b` or "").
fn split_query(url: &str) -> (&str, &str) {
    match url.split_once('?') {
        Some((base, query)) => (base.trim_end_matches('/'), query),
        None => (url.trim_end_matches('/'), ""),
    }
}

/// Appends `key=value` pairs (values percent-encoded) to an existing query string.
fn join_query(existing: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = existing.to_string();
    for (key, value) in pairs {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&encode_component(key));
        query.push('=');
        query.push_str(&encode_component(value));
    }
    query
}

/// `{hub}/negotiate?{hub query&}{pairs}`, as the official clients build it.
pub(crate) fn negotiate_url(hub_url: &str, pairs: &[(&str, &str)]) -> String {
    let (base, query) = split_query(hub_url);
    let query = join_query(query, pairs);
    if query.is_empty() {
        format!("{base}/negotiate")
    } else {
        format!("{base}/negotiate?{query}")
    }
}

/// The hub URL with `http` turned into `ws` (`https` into `wss`) and `pairs` appended to its query.
pub(crate) fn websocket_url(hub_url: &str, pairs: &[(&str, &str)]) -> Result<String, ClientError> {
    let (base, query) = split_query(hub_url);
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_string()
    } else {
        return Err(ClientError::Url {
            url: hub_url.to_string(),
            reason: "expected an http://, https://, ws:// or wss:// URL".to_string(),
        });
    };
    let query = join_query(query, pairs);
    Ok(if query.is_empty() {
        base
    } else {
        format!("{base}?{query}")
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters (what `encodeURIComponent`
/// leaves alone, minus `!'()*`), so a user name or token survives any query parser.
pub fn encode_component(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, COMPONENT).to_string()
}

/// What [`encode_component`] escapes: everything but RFC 3986's unreserved characters.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_path() {
        let t = parse("http://127.0.0.1:5000/chat/negotiate?negotiateVersion=1").unwrap();
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 5000);
        assert_eq!(t.authority, "127.0.0.1:5000");
        assert_eq!(t.path_and_query, "/chat/negotiate?negotiateVersion=1");
    }

    #[test]
    fn defaults_port_and_path() {
        let t = parse("ws://localhost").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path_and_query.as_str()),
            ("localhost", 80, "/")
        );
        let t = parse("http://[::1]:8080/x").unwrap();
        assert_eq!((t.host.as_str(), t.authority.as_str()), ("::1", "[::1]:8080"));
    }

    #[test]
    fn tls_schemes_default_to_443_and_are_marked() {
        let t = parse("https://example.com/chat").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("example.com", 443, true));
        let t = parse("wss://127.0.0.1:5443/chat?id=1").unwrap();
        assert_eq!(
            (t.port, t.tls, t.path_and_query.as_str()),
            (5443, true, "/chat?id=1")
        );
        assert!(!parse("http://h/").unwrap().tls);
        assert!(!parse("ws://h/").unwrap().tls);
    }

    #[test]
    fn refuses_relative_urls_and_other_schemes() {
        assert!(matches!(parse("/chat"), Err(ClientError::Url { .. })));
        assert!(matches!(
            parse("ftp://example.com/"),
            Err(ClientError::Url { .. })
        ));
    }

    #[test]
    fn builds_negotiate_and_websocket_urls() {
        assert_eq!(
            negotiate_url("http://h:1/chat", &[("negotiateVersion", "1"), ("user", "a b&c")]),
            "http://h:1/chat/negotiate?negotiateVersion=1&user=a%20b%26c"
        );
        assert_eq!(
            negotiate_url("http://h:1/chat?x=1", &[("negotiateVersion", "1")]),
            "http://h:1/chat/negotiate?x=1&negotiateVersion=1"
        );
        assert_eq!(websocket_url("http://h:1/chat", &[]).unwrap(), "ws://h:1/chat");
        assert_eq!(
            websocket_url("http://h:1/chat/", &[("id", "a+b/c")]).unwrap(),
            "ws://h:1/chat?id=a%2Bb%2Fc"
        );
        assert_eq!(
            websocket_url("https://h:5443/chat", &[("id", "x")]).unwrap(),
            "wss://h:5443/chat?id=x"
        );
        assert_eq!(websocket_url("wss://h/chat", &[]).unwrap(), "wss://h/chat");
        assert!(websocket_url("ftp://h/chat", &[]).is_err());
    }

    #[test]
    fn encodes_utf8_and_reserved_characters() {
        assert_eq!(encode_component("Zoë ~-._"), "Zo%C3%AB%20~-._");
        assert_eq!(encode_component("=?/#"), "%3D%3F%2F%23");
    }
}
