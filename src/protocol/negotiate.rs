//! The negotiate exchange (SIGNALR-WIRE.md A.2): `POST {hub}/negotiate?negotiateVersion=1`.
//!
//! Server side: [`select_version`] with ASP.NET Core's rules and texts, [`response`] writing the
//! document byte-for-byte in the .NET property order, [`error_response`], and [`new_id`] for
//! connection ids and tokens. Client side: [`NegotiateResponse`] and [`parse_response`].
//! Pure apart from the random ids: no I/O, no other crate module.

use base64::Engine as _;

/// The newest negotiate protocol version (the one with a separate `connectionToken`).
pub const SERVER_VERSION: u32 = 1;

/// ASP.NET Core's default `MinimumProtocolVersion`: old (version 0) clients are accepted.
pub const MINIMUM_VERSION: u32 = 0;

/// One entry of `availableTransports` as a server writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportOffer {
    pub transport: &'static str,
    pub transfer_formats: &'static [&'static str],
}

/// WebSockets, both transfer formats.
pub const WEBSOCKETS: TransportOffer = TransportOffer {
    transport: "WebSockets",
    transfer_formats: &["Text", "Binary"],
};

/// Server-Sent Events (text only). Not implemented by this node; listed for completeness.
pub const SERVER_SENT_EVENTS: TransportOffer = TransportOffer {
    transport: "ServerSentEvents",
    transfer_formats: &["Text"],
};

/// Long polling. Not implemented by this node; listed for completeness.
pub const LONG_POLLING: TransportOffer = TransportOffer {
    transport: "LongPolling",
    transfer_formats: &["Text", "Binary"],
};

/// What this node advertises: only the transport it implements (A.1).
pub const OFFERED_TRANSPORTS: &[TransportOffer] = &[WEBSOCKETS];

/// The negotiate version to answer with, from the raw `negotiateVersion` query value, with the
/// default minimum version 0. `Err` carries the text for [`error_response`].
pub fn select_version(param: Option<&str>) -> Result<u32, String> {
    select_version_with_minimum(param, MINIMUM_VERSION)
}

/// [`select_version`] with a configurable minimum version (ASP.NET Core's
/// `MinimumProtocolVersion`): absent → 0; not an integer (as .NET's `int.TryParse`: optional
/// sign, surrounding whitespace) → error; below the minimum → error; above 1 → 1.
pub fn select_version_with_minimum(param: Option<&str>, minimum: u32) -> Result<u32, String> {
    let requested: i64 = match param {
        None => 0,
        Some(raw) => match raw.trim().parse::<i32>() {
            Ok(v) => i64::from(v),
            Err(_) => return Err("The client requested a non-integer protocol version.".into()),
        },
    };
    if requested < i64::from(minimum) {
        return Err(format!(
            "The client requested version '{requested}', but the server does not support this version."
        ));
    }
    Ok(u32::try_from(requested.min(i64::from(SERVER_VERSION))).unwrap_or(SERVER_VERSION))
}

/// The success document with this node's transports ([`OFFERED_TRANSPORTS`]).
pub fn response(version: u32, connection_id: &str, connection_token: &str) -> String {
    response_with_transports(version, connection_id, connection_token, OFFERED_TRANSPORTS)
}

/// The success document in the .NET property order: `negotiateVersion`, `connectionId`,
/// `connectionToken` (version ≥ 1 only), `availableTransports`. No whitespace, no RS.
pub fn response_with_transports(
    version: u32,
    connection_id: &str,
    connection_token: &str,
    transports: &[TransportOffer],
) -> String {
    let mut out = String::with_capacity(160);
    out.push_str("{\"negotiateVersion\":");
    out.push_str(&version.to_string());
    out.push_str(",\"connectionId\":");
    out.push_str(&json_string(connection_id));
    if version >= 1 {
        out.push_str(",\"connectionToken\":");
        out.push_str(&json_string(connection_token));
    }
    out.push_str(",\"availableTransports\":[");
    for (i, offer) in transports.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"transport\":");
        out.push_str(&json_string(offer.transport));
        out.push_str(",\"transferFormats\":[");
        for (j, format) in offer.transfer_formats.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(&json_string(format));
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

/// An error document (sent with HTTP 200): `{"error":"..."}`.
pub fn error_response(text: &str) -> String {
    format!("{{\"error\":{}}}", json_string(text))
}

/// A new connection id or token: 16 random bytes, base64url without padding (22 characters).
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One entry of `availableTransports` as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableTransport {
    pub transport: String,
    #[serde(default)]
    pub transfer_formats: Vec<String>,
}

/// A negotiate response as a client reads it. Unknown properties are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NegotiateResponse {
    pub connection_id: Option<String>,
    pub connection_token: Option<String>,
    #[serde(default)]
    pub negotiate_version: u32,
    #[serde(default)]
    pub available_transports: Vec<AvailableTransport>,
    /// Redirect: negotiate again at this URL (with `access_token`).
    pub url: Option<String>,
    pub access_token: Option<String>,
    pub error: Option<String>,
    #[serde(default)]
    pub use_stateful_reconnect: bool,
    /// Present only in answers of the legacy ASP.NET SignalR server, which clients must refuse.
    #[serde(rename = "ProtocolVersion")]
    pub legacy_protocol_version: Option<serde_json::Value>,
}

impl NegotiateResponse {
    /// The id to put in the transport URL: the token for version ≥ 1, the id for version 0.
    pub fn transport_id(&self) -> Option<&str> {
        if self.negotiate_version >= 1 {
            self.connection_token.as_deref()
        } else {
            self.connection_id.as_deref()
        }
    }
}

/// Why a negotiate response is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    #[error("invalid negotiate response: {0}")]
    Invalid(String),
    /// The server answered with `{"error": ...}`.
    #[error("negotiate failed: {0}")]
    Server(String),
    /// The .NET client's text for a legacy ASP.NET SignalR server.
    #[error(
        "Detected a connection attempt to an ASP.NET SignalR Server. This client only supports connecting to an ASP.NET Core SignalR Server. See https://aka.ms/signalr-core-differences for details."
    )]
    LegacyServer,
}

/// Parses a negotiate body; a server error or a legacy server is an `Err`.
pub fn parse_response(body: &[u8]) -> Result<NegotiateResponse, NegotiateError> {
    let response: NegotiateResponse =
        serde_json::from_slice(body).map_err(|e| NegotiateError::Invalid(e.to_string()))?;
    if let Some(error) = &response.error {
        return Err(NegotiateError::Server(error.clone()));
    }
    if response.legacy_protocol_version.is_some() {
        return Err(NegotiateError::LegacyServer);
    }
    Ok(response)
}

/// A JSON string literal (quotes included), escaped by serde_json.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_selection() {
        assert_eq!(select_version(None), Ok(0));
        assert_eq!(select_version(Some("0")), Ok(0));
        assert_eq!(select_version(Some("1")), Ok(1));
        assert_eq!(select_version(Some("2")), Ok(1));
        assert_eq!(select_version(Some("+1")), Ok(1));
        assert_eq!(select_version(Some(" 1 ")), Ok(1));
        assert_eq!(select_version(Some("2147483647")), Ok(1));
        let non_integer = Err("The client requested a non-integer protocol version.".to_string());
        assert_eq!(select_version(Some("")), non_integer);
        assert_eq!(select_version(Some("1.0")), non_integer);
        assert_eq!(select_version(Some("one")), non_integer);
        assert_eq!(select_version(Some("2147483648")), non_integer);
        assert_eq!(
            select_version(Some("-1")),
            Err("The client requested version '-1', but the server does not support this version.".into())
        );
        assert_eq!(
            select_version_with_minimum(None, 1),
            Err("The client requested version '0', but the server does not support this version.".into())
        );
        assert_eq!(select_version_with_minimum(Some("5"), 1), Ok(1));
    }

    #[test]
    fn documents() {
        assert_eq!(
            response(0, "abc", "ignored"),
            r#"{"negotiateVersion":0,"connectionId":"abc","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}"#
        );
        assert_eq!(
            response(1, "abc", "tok"),
            r#"{"negotiateVersion":1,"connectionId":"abc","connectionToken":"tok","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}"#
        );
        assert_eq!(error_response("a \"b\""), r#"{"error":"a \"b\""}"#);
    }

    #[test]
    fn ids() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&a)
            .expect("base64url");
        assert_eq!(decoded.len(), 16);
    }

    #[test]
    fn client_parsing() {
        let doc = response(1, "id", "token");
        let parsed = parse_response(doc.as_bytes()).expect("parses");
        assert_eq!(parsed.connection_id.as_deref(), Some("id"));
        assert_eq!(parsed.transport_id(), Some("token"));
        assert_eq!(
            parsed.available_transports,
            [AvailableTransport {
                transport: "WebSockets".into(),
                transfer_formats: vec!["Text".into(), "Binary".into()]
            }]
        );
        let v0 =
            parse_response(br#"{"connectionId":"id","availableTransports":[],"extra":1}"#).expect("parses");
        assert_eq!(v0.negotiate_version, 0);
        assert_eq!(v0.transport_id(), Some("id"));
        assert_eq!(
            parse_response(br#"{"error":"nope"}"#),
            Err(NegotiateError::Server("nope".into()))
        );
        assert_eq!(
            parse_response(br#"{"ProtocolVersion":"1.5","ConnectionId":"x"}"#),
            Err(NegotiateError::LegacyServer)
        );
        let redirect = parse_response(br#"{"url":"http://x/hub","accessToken":"t"}"#).expect("parses");
        assert_eq!(redirect.url.as_deref(), Some("http://x/hub"));
        assert_eq!(redirect.access_token.as_deref(), Some("t"));
        assert!(parse_response(b"nope").is_err());
    }
}
