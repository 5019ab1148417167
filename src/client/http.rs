//! A minimal HTTP/1.1 client for the few plain requests a SignalR client needs (negotiate) and the
//! dashboard's probes reuse (`GET /switchboard/stats`): one request per TCP connection, written with
//! `Connection: close`, the response read to EOF and parsed (status line, headers, body with
//! `Content-Length` or `Transfer-Encoding: chunked`).
//!
//! Deliberately small: no keep-alive, no redirects; every exchange has a deadline and a
//! response size cap so a misbehaving server cannot hang or exhaust the caller. `https://` URLs
//! go over TLS (`client::transport`): the system's roots, or the caller's [`NodeTls`] through
//! [`RequestOptions`].
//! Used by `client` and, from outside, by the dashboard and tests. Depends only on tokio and
//! `client::transport`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::transport::{self, NodeTls};
use super::{ClientError, url};

/// Deadline for one whole exchange (connect, write, read to EOF) made with [`request`]: long enough
/// for a loaded node on a slow CI machine, short enough that a probe of a hung node reports it.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response accepted, headers included. Negotiate answers are ~300 bytes and stats
/// snapshots a few KiB; 8 MiB leaves room for growth while bounding memory per probe.
pub const MAX_RESPONSE_SIZE: usize = 8 * 1024 * 1024;

/// One HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (200, 404, …).
    pub status: u16,
    /// Headers in received order; names as sent (compare case-insensitively, see [`Self::header`]).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that name, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Everything about a request besides its method, URL and body. `Default`: no extra headers,
/// [`DEFAULT_HTTP_TIMEOUT`], the system's roots for `https://`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions<'a> {
    /// Extra request headers (for example `Origin`, or `Authorization`).
    pub headers: &'a [(&'a str, &'a str)],
    /// Deadline of the whole exchange (connect, TLS handshake, write, read to EOF); `None` is
    /// [`DEFAULT_HTTP_TIMEOUT`].
    pub timeout: Option<Duration>,
    /// What an `https://` URL is verified against; `None` is the system's roots.
    pub tls: Option<&'a NodeTls>,
}

/// Sends `method url` with `body` (an empty body is sent as `Content-Length: 0`) and returns the
/// response, within [`DEFAULT_HTTP_TIMEOUT`].
pub async fn request(method: &str, url: &str, body: &[u8]) -> Result<HttpResponse, ClientError> {
    request_with(method, url, body, RequestOptions::default()).await
}

/// [`request`] with an explicit deadline for the whole exchange.
pub async fn request_with_timeout(
    method: &str,
    url: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, ClientError> {
    let options = RequestOptions {
        timeout: Some(timeout),
        ..RequestOptions::default()
    };
    request_with(method, url, body, options).await
}

/// [`request`] with extra request headers (for example `Origin`, or `Authorization`).
pub async fn request_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, ClientError> {
    let options = RequestOptions {
        headers,
        ..RequestOptions::default()
    };
    request_with(method, url, body, options).await
}

/// [`request`] with every option (headers, deadline, TLS trust).
pub async fn request_with(
    method: &str,
    url: &str,
    body: &[u8],
    options: RequestOptions<'_>,
) -> Result<HttpResponse, ClientError> {
    let timeout = options.timeout.unwrap_or(DEFAULT_HTTP_TIMEOUT);
    match tokio::time::timeout(timeout, exchange(method, url, &options, body)).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout(format!(
            "after {timeout:?} waiting for the response to {method} {url}"
        ))),
    }
}

async fn exchange(
    method: &str,
    url: &str,
    options: &RequestOptions<'_>,
    body: &[u8],
) -> Result<HttpResponse, ClientError> {
    let target = url::parse(url)?;
    let io = |what: &str| {
        let what = format!("{what} {url}");
        move |source| ClientError::Io { what, source }
    };
    let mut stream = transport::connect(&target, options.tls, url).await?;

    let mut request = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: switchboard-client\r\nAccept: */*\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        target.path_and_query,
        target.authority,
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in options.headers {
        // A header name or value with a line break would smuggle a second header or request.
        if [name, value].iter().any(|t| t.contains(['\r', '\n'])) {
            return Err(http_error(url, format!("invalid header {name:?}")));
        }
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream
        .write_all(&bytes)
        .await
        .map_err(io("sending the request to"))?;

    let mut raw = Vec::new();
    let read = (&mut stream)
        .take(MAX_RESPONSE_SIZE as u64 + 1)
        .read_to_end(&mut raw)
        .await;
    match read {
        Ok(_) => {}
        // Many TLS servers (ours included) close without a close_notify after a response sent
        // with `Connection: close`; everything before the cut is the response.
        Err(e) if stream.is_tls() && e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) if stream.is_tls() => {
            return Err(ClientError::Tls {
                url: url.to_string(),
                reason: crate::tls::explain_io(&e),
            });
        }
        Err(e) => return Err(io("reading the response from")(e)),
    }
    if raw.len() > MAX_RESPONSE_SIZE {
        return Err(http_error(
            url,
            format!("response larger than {MAX_RESPONSE_SIZE} bytes"),
        ));
    }
    if !target.tls
        && let Some(hint) = plain_mismatch(&raw)
    {
        return Err(http_error(url, hint.to_string()));
    }
    parse_response(&raw, method.eq_ignore_ascii_case("HEAD")).map_err(|reason| http_error(url, reason))
}

/// Why a plain `http://` exchange got no HTTP answer, when the bytes say so: nothing at all (a
/// TLS server drops a request it cannot read as a handshake) or a TLS record (an alert).
fn plain_mismatch(raw: &[u8]) -> Option<&'static str> {
    match raw.first() {
        None => Some("the server closed the connection without an HTTP response (a TLS port? try https://)"),
        // TLS record types: 0x15 alert, 0x16 handshake, then the protocol version 3.x.
        Some(0x15 | 0x16) if raw.get(1) == Some(&3) => {
            Some("the server answered in TLS: this is an https:// node, use https:// (or wss://)")
        }
        _ => None,
    }
}

fn http_error(url: &str, reason: String) -> ClientError {
    ClientError::Http {
        url: url.to_string(),
        reason,
    }
}

/// Parses a complete response (everything up to EOF). Interim 1xx responses are skipped.
fn parse_response(mut raw: &[u8], head_request: bool) -> Result<HttpResponse, String> {
    loop {
        let end = find(raw, b"\r\n\r\n").ok_or("the connection closed before the end of the headers")?;
        let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8".to_string())?;
        let rest = &raw[end + 4..];
        let mut lines = head.split("\r\n");
        let status = parse_status_line(lines.next().unwrap_or_default())?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("malformed header line {line:?}"))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        if (100..200).contains(&status) && status != 101 {
            raw = rest;
            continue;
        }
        let mut response = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 {
            return Ok(response);
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        response.body = if chunked {
            dechunk(rest)?
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| format!("invalid Content-Length {length:?}"))?;
            if rest.len() < length {
                return Err(format!(
                    "body truncated: Content-Length {length} but only {} bytes before EOF",
                    rest.len()
                ));
            }
            rest[..length].to_vec()
        } else {
            rest.to_vec()
        };
        return Ok(response);
    }
}

fn parse_status_line(line: &str) -> Result<u16, String> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x status line: {line:?}"));
    }
    parts
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..1000).contains(code))
        .ok_or_else(|| format!("invalid status line {line:?}"))
}

/// Decodes a chunked body: `size[;ext]\r\n data \r\n` … `0\r\n` trailers `\r\n`.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("chunked body truncated in a chunk size line")?;
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| "chunk size is not ASCII")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("invalid chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers, if any, are ignored; a missing final CRLF is tolerated.
            return Ok(body);
        }
        if size.checked_add(2).is_none_or(|needed| data.len() < needed) {
            return Err("chunked body truncated inside a chunk".to_string());
        }
        body.extend_from_slice(&data[..size]);
        if &data[size..size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".to_string());
        }
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_response() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n{}extra";
        let r = parse_response(raw, false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.body, b"{}");
        assert_eq!(r.text(), "{}");
    }

    #[test]
    fn parses_chunked_response_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    4;x=y\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        let r = parse_response(raw, false).unwrap();
        assert_eq!(r.text(), "Wikipedia in\r\n\r\nchunks.");
    }

    #[test]
    fn reads_to_eof_without_length_and_skips_interim_responses() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\n\r\nno";
        let r = parse_response(raw, false).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (405, &b"no"[..]));
        assert_eq!(r.header("allow"), Some("POST"));
    }

    #[test]
    fn rejects_malformed_responses() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n", false).is_err());
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n", false).is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n", false).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", false).is_err());
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
                false
            )
            .is_err()
        );
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                false
            )
            .is_err()
        );
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab";
        assert!(parse_response(huge, false).is_err());
    }

    #[test]
    fn a_tls_answer_to_plain_http_is_named() {
        assert!(plain_mismatch(b"").unwrap().contains("https://"));
        assert!(
            plain_mismatch(&[0x15, 3, 3, 0, 2, 2, 70])
                .unwrap()
                .contains("https:// node")
        );
        assert_eq!(plain_mismatch(b"HTTP/1.1 200 OK\r\n\r\n"), None);
    }

    #[test]
    fn head_and_no_content_have_no_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        assert!(parse_response(raw, true).unwrap().body.is_empty());
        let raw = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert!(parse_response(raw, false).unwrap().body.is_empty());
    }
}
