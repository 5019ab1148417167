//! Plain HTTP for tests, over the client's own minimal HTTP/1.1 exchange
//! (`switchboard::client::http`): every call has the harness deadline and panics with the request
//! in the message if the exchange itself fails (an HTTP error status is a normal response).

use switchboard::client::http;
pub use switchboard::client::http::HttpResponse;

use super::STEP;

/// `method url` with `body`; panics on transport errors, returns any status.
pub async fn request(method: &str, url: &str, body: &[u8]) -> HttpResponse {
    http::request_with_timeout(method, url, body, STEP)
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
