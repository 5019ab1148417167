//! The few plain HTTP/1.1 requests a SignalR client needs (negotiate) and the dashboard's probes
//! reuse (`GET /switchboard/stats`), on hyper's client connection: one request per TCP
//! connection, sent with `Connection: close`.
//!
//! Deliberately small: no keep-alive, no redirects; every exchange has a deadline and a
//! response size cap so a misbehaving server cannot hang or exhaust the caller. A plain request
//! answered in TLS (or not at all) is named as such. `https://` URLs
//! go over TLS (`client::transport`): the system's roots, or the caller's [`NodeTls`] through
//! [`RequestOptions`].
//! Used by `client` and, from outside, by the dashboard and tests. Depends on hyper, tokio and
//! `client::transport`.

use std::time::Duration;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
    let stream = transport::connect(&target, options.tls, url).await?;
    let is_tls = stream.is_tls();
    let first = FirstBytes::new(stream);
    let seen = first.seen.clone();

    let mut request = hyper::Request::builder()
        .method(method)
        .uri(target.path_and_query.as_str())
        .header(hyper::header::HOST, target.authority.as_str())
        .header(hyper::header::USER_AGENT, "switchboard-client")
        .header(hyper::header::ACCEPT, "*/*")
        .header(hyper::header::CONNECTION, "close");
    if !body.is_empty() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in options.headers {
        request = request.header(*name, *value);
    }
    // An invalid method, header name or value (a line break would smuggle a second header or
    // request) is refused here, before anything is sent.
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| http_error(url, format!("invalid request: {e}")))?;

    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(first))
        .await
        .map_err(|e| http_error(url, e.to_string()))?;
    let call = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_SIZE)
            .collect()
            .await
            .map_err(BodyError::Read)?
            .to_bytes()
            .to_vec();
        Ok::<_, BodyError>(HttpResponse {
            status,
            headers,
            body,
        })
    };
    let mut connection = std::pin::pin!(connection);
    let mut call = std::pin::pin!(call);
    let result = tokio::select! {
        result = &mut call => result,
        ended = &mut connection => match ended {
            // The response may still be buffered: the call finishes it (or says why not).
            Ok(()) => call.await,
            Err(e) => Err(BodyError::Hyper(e)),
        },
    };
    result.map_err(|e| describe_failure(url, is_tls, &seen, e))
}

/// Why an exchange failed: hyper's error, or the body's (too large, cut).
#[derive(Debug)]
enum BodyError {
    Hyper(hyper::Error),
    Read(Box<dyn std::error::Error + Send + Sync>),
}

impl From<hyper::Error> for BodyError {
    fn from(e: hyper::Error) -> Self {
        BodyError::Hyper(e)
    }
}

/// The failure in words: a TLS error as TLS, a plain exchange that got TLS bytes (or nothing)
/// named as such, a body past [`MAX_RESPONSE_SIZE`] as too large.
fn describe_failure(url: &str, is_tls: bool, seen: &Seen, e: BodyError) -> ClientError {
    let source = match &e {
        BodyError::Hyper(e) => std::error::Error::source(e),
        BodyError::Read(e) => e.source(),
    };
    if let Some(io) = source.and_then(|s| s.downcast_ref::<std::io::Error>()) {
        return if is_tls {
            ClientError::Tls {
                url: url.to_string(),
                reason: crate::tls::explain_io(io),
            }
        } else {
            ClientError::Io {
                what: format!("exchanging with {url}"),
                source: std::io::Error::new(io.kind(), io.to_string()),
            }
        };
    }
    if !is_tls && let Some(hint) = plain_mismatch(&seen.get()) {
        return http_error(url, hint.to_string());
    }
    match e {
        BodyError::Read(e) if e.is::<http_body_util::LengthLimitError>() => {
            http_error(url, format!("response larger than {MAX_RESPONSE_SIZE} bytes"))
        }
        BodyError::Read(e) => http_error(url, e.to_string()),
        BodyError::Hyper(e) => http_error(url, e.to_string()),
    }
}

/// The first bytes the server sent (at most two): enough to tell a TLS record from HTTP.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<u8>>>);

impl Seen {
    fn get(&self) -> Vec<u8> {
        // A Vec replaced in one push: a poisoned lock still holds a consistent value.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A stream that remembers the first bytes read from it ([`Seen`]).
struct FirstBytes {
    inner: transport::NodeStream,
    seen: Seen,
    done: bool,
}

impl FirstBytes {
    fn new(inner: transport::NodeStream) -> Self {
        FirstBytes {
            inner,
            seen: Seen::default(),
            done: false,
        }
    }
}

impl AsyncRead for FirstBytes {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.done && matches!(polled, Poll::Ready(Ok(()))) {
            let new = &buf.filled()[before..];
            let mut seen = this.seen.0.lock().unwrap_or_else(|e| e.into_inner());
            let room = 2usize.saturating_sub(seen.len());
            seen.extend_from_slice(&new[..room.min(new.len())]);
            this.done = seen.len() >= 2 || new.is_empty();
        }
        polled
    }
}

impl AsyncWrite for FirstBytes {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
