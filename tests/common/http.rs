//! Plain HTTP for tests: the oracle the node's HTTP behaviour is judged by. A minimal HTTP/1.1
//! exchange written here, independent of the product's client (`switchboard::client::http`, on
//! hyper), so a bug in that client cannot hide a bug in the node: one request per TCP connection
//! with `Connection: close`, the response read to EOF and parsed (status line, headers in received
//! order and as spelled, a body by `Content-Length`, chunks or EOF). Plain `http://` only.
//!
//! Every call has the harness deadline and panics with the request in the message if the exchange
//! itself fails (an HTTP error status is a normal response).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::STEP;

/// Largest response read (headers included).
const MAX_RESPONSE: u64 = 8 * 1024 * 1024;

/// One HTTP response as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Headers in received order, names as sent.
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

/// `method url` with `headers` and `body`, within `timeout`: the exchange's error in words, or
/// the response whatever its status.
pub async fn exchange(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let run = async {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: the test oracle speaks plain http:// only"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        stream
            .write_all(&bytes)
            .await
            .map_err(|e| format!("sending to {url}: {e}"))?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("reading from {url}: {e}"))?;
        parse_response(&raw, method.eq_ignore_ascii_case("HEAD"))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(format!("no response to {method} {url} within {timeout:?}")),
    }
}

/// `method url` with `body`; panics on transport errors, returns any status.
pub async fn request(method: &str, url: &str, body: &[u8]) -> HttpResponse {
    request_with_headers(method, url, &[], body).await
}

/// [`request`] with extra headers.
pub async fn request_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    exchange(method, url, headers, body, STEP)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// `GET url`.
pub async fn get(url: &str) -> HttpResponse {
    request("GET", url, b"").await
}

/// `POST url` with `body`.
pub async fn post(url: &str, body: &[u8]) -> HttpResponse {
    request("POST", url, body).await
}

/// `POST {hub_url}/negotiate[?negotiateVersion=V]` (no version parameter when `version` is None).
pub async fn negotiate(hub_url: &str, version: Option<&str>) -> HttpResponse {
    let url = match version {
        Some(v) => format!(
            "{hub_url}/negotiate?negotiateVersion={}",
            switchboard::client::encode_component(v)
        ),
        None => format!("{hub_url}/negotiate"),
    };
    post(&url, b"").await
}

/// The negotiate response body as JSON (asserting HTTP 200).
pub async fn negotiate_json(hub_url: &str, version: Option<&str>) -> serde_json::Value {
    let response = negotiate(hub_url, version).await;
    assert_eq!(
        response.status,
        200,
        "negotiate at {hub_url}: {}",
        response.text()
    );
    response.json().unwrap_or_else(|e| {
        panic!(
            "negotiate at {hub_url}: body is not JSON ({e}): {}",
            response.text()
        )
    })
}

/// `GET {base_url}/switchboard/stats` as JSON (asserting HTTP 200).
pub async fn stats(base_url: &str) -> serde_json::Value {
    let url = format!("{base_url}/switchboard/stats");
    let response = get(&url).await;
    assert_eq!(response.status, 200, "GET {url}: {}", response.text());
    response
        .json()
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON ({e}): {}", response.text()))
}

/// Parses a complete response (everything up to EOF). Interim 1xx responses are skipped.
pub fn parse_response(mut raw: &[u8], head_request: bool) -> Result<HttpResponse, String> {
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
