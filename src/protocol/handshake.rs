//! The SignalR handshake (SIGNALR-WIRE.md A.4): the first text record on a fresh transport.
//!
//! Server side: [`parse_request`] with the rules of .NET's `HandshakeProtocol` and the exact
//! response bytes and error texts a .NET server sends. Client side: [`request`] and
//! [`parse_response`]. Bodies are passed without their trailing 0x1E (the framer strips it);
//! responses are returned with it. Pure: no I/O, no other crate module besides `protocol`.

use super::RECORD_SEPARATOR;

/// The success response: `{}` + RS, exactly these 3 bytes.
pub const RESPONSE_OK: &[u8] = b"{}\x1e";

/// What the client is told about any malformed request (the detailed reason is only logged).
pub const UNEXPECTED_ERROR: &str = "An unexpected error occurred during connection handshake.";

/// Sent when the handshake does not arrive in time or is too large.
pub const CANCELED: &str = "Handshake was canceled.";

/// A parsed handshake request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// The hub protocol name (`json`, `messagepack`, ...), exact case.
    pub protocol: String,
    /// The protocol version the client speaks.
    pub version: i32,
}

/// Why a handshake request or response could not be parsed. The texts follow the
/// `InvalidDataException` messages of .NET's `HandshakeProtocol`; they are for logs only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not JSON at all.
    #[error("Error reading JSON. {0}")]
    InvalidJson(String),
    /// Valid JSON that is not an object.
    #[error("Unexpected JSON Token Type '{0}'. Expected a JSON Object.")]
    NotAnObject(&'static str),
    /// A required property is absent (or null).
    #[error("Missing required property '{0}'.")]
    MissingProperty(&'static str),
    /// A property has the wrong JSON type.
    #[error("Expected '{property}' to be of type {expected}.")]
    WrongType {
        property: &'static str,
        expected: &'static str,
    },
    /// A handshake response carried `type`: the server sent a hub message instead.
    #[error("Expected a handshake response from the server.")]
    NotAHandshakeResponse,
}

/// The client's handshake request, framed: `{"protocol":"json","version":1}` + RS.
pub fn request(protocol: &str, version: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(protocol.len() + 32);
    out.extend_from_slice(b"{\"protocol\":");
    out.extend_from_slice(json_string(protocol).as_bytes());
    out.extend_from_slice(b",\"version\":");
    out.extend_from_slice(version.to_string().as_bytes());
    out.extend_from_slice(b"}");
    out.push(RECORD_SEPARATOR);
    out
}

/// Parses a handshake request body (without RS): a JSON object with `protocol` (string) and
/// `version` (int32); other properties are skipped, a duplicate property's last value wins, and
/// a `null` value counts as absent (as in .NET).
pub fn parse_request(body: &[u8]) -> Result<HandshakeRequest, HandshakeError> {
    let object = parse_object(body)?;
    let protocol = match object.get("protocol") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(HandshakeError::WrongType {
                property: "protocol",
                expected: "String",
            });
        }
    };
    let version = match object.get("version") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(n.as_i64().and_then(|v| i32::try_from(v).ok()).ok_or(
            HandshakeError::WrongType {
                property: "version",
                expected: "Int32",
            },
        )?),
        Some(_) => {
            return Err(HandshakeError::WrongType {
                property: "version",
                expected: "Number",
            });
        }
    };
    let protocol = protocol.ok_or(HandshakeError::MissingProperty("protocol"))?;
    let version = version.ok_or(HandshakeError::MissingProperty("version"))?;
    Ok(HandshakeRequest { protocol, version })
}

/// A failed handshake response, framed: `{"error":"..."}` + RS.
pub fn error_response(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 13);
    out.extend_from_slice(b"{\"error\":");
    out.extend_from_slice(json_string(message).as_bytes());
    out.extend_from_slice(b"}");
    out.push(RECORD_SEPARATOR);
    out
}

/// The error text for a protocol the hub does not support.
pub fn unsupported_protocol(name: &str) -> String {
    format!("The protocol '{name}' is not supported.")
}

/// The error text for a protocol version above what the hub supports.
pub fn unsupported_version(name: &str, version: i32) -> String {
    format!("The server does not support version {version} of the '{name}' protocol.")
}

/// Parses a handshake response body (without RS): `Ok(None)` on success, `Ok(Some(error))` when
/// the server refused the handshake. A response that carries `type` is rejected, as the .NET and
/// JS clients do (it is a hub message, not a handshake response).
pub fn parse_response(body: &[u8]) -> Result<Option<String>, HandshakeError> {
    let object = parse_object(body)?;
    if object.contains_key("type") {
        return Err(HandshakeError::NotAHandshakeResponse);
    }
    match object.get("error") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(HandshakeError::WrongType {
            property: "error",
            expected: "String",
        }),
    }
}

/// Parses a JSON object. serde_json's map keeps the last of duplicate keys, which is the .NET
/// "last one wins" rule; key order does not matter here.
fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, HandshakeError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| HandshakeError::InvalidJson(e.to_string()))?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        serde_json::Value::Null => Err(HandshakeError::NotAnObject("Null")),
        serde_json::Value::Bool(true) => Err(HandshakeError::NotAnObject("True")),
        serde_json::Value::Bool(false) => Err(HandshakeError::NotAnObject("False")),
        serde_json::Value::Number(_) => Err(HandshakeError::NotAnObject("Number")),
        serde_json::Value::String(_) => Err(HandshakeError::NotAnObject("String")),
        serde_json::Value::Array(_) => Err(HandshakeError::NotAnObject("Array")),
    }
}

/// A JSON string literal (quotes included), escaped by serde_json; non-ASCII stays raw.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        assert_eq!(request("json", 1), b"{\"protocol\":\"json\",\"version\":1}\x1e");
        assert_eq!(
            request("messagepack", 2),
            b"{\"protocol\":\"messagepack\",\"version\":2}\x1e"
        );
    }

    #[test]
    fn parse_valid_requests() {
        let ok = |body: &str, protocol: &str, version: i32| {
            assert_eq!(
                parse_request(body.as_bytes()),
                Ok(HandshakeRequest {
                    protocol: protocol.into(),
                    version
                }),
                "{body}"
            );
        };
        ok(r#"{"protocol":"json","version":1}"#, "json", 1);
        ok(r#"{"version":2,"protocol":"messagepack"}"#, "messagepack", 2);
        ok(r#" { "protocol" : "json" , "version" : 1 } "#, "json", 1);
        ok(
            r#"{"protocol":"json","extra":{"a":[1,2]},"version":1}"#,
            "json",
            1,
        );
        ok(r#"{"protocol":"x","version":1,"protocol":"json"}"#, "json", 1);
        ok(r#"{"protocol":"\u006Aso\u006e","version":1}"#, "json", 1);
        ok(r#"{"protocol":"json","version":-5}"#, "json", -5);
    }

    #[test]
    fn request_errors() {
        let err = |body: &[u8]| parse_request(body).expect_err("must fail").to_string();
        assert_eq!(err(br#"{"version":1}"#), "Missing required property 'protocol'.");
        assert_eq!(
            err(br#"{"protocol":"json"}"#),
            "Missing required property 'version'."
        );
        assert_eq!(
            err(br#"{"protocol":null,"version":1}"#),
            "Missing required property 'protocol'."
        );
        assert_eq!(
            err(br#"{"protocol":1,"version":1}"#),
            "Expected 'protocol' to be of type String."
        );
        assert_eq!(
            err(br#"{"protocol":"json","version":"1"}"#),
            "Expected 'version' to be of type Number."
        );
        assert_eq!(
            err(br#"{"protocol":"json","version":1.5}"#),
            "Expected 'version' to be of type Int32."
        );
        assert_eq!(
            err(br#"{"protocol":"json","version":4294967296}"#),
            "Expected 'version' to be of type Int32."
        );
        assert_eq!(
            err(br#"["json",1]"#),
            "Unexpected JSON Token Type 'Array'. Expected a JSON Object."
        );
        assert!(err(br#"{"protocol":"json","#).starts_with("Error reading JSON."));
        assert!(err(b"").starts_with("Error reading JSON."));
        assert!(err(b"\xff\xfe").starts_with("Error reading JSON."));
        assert!(err(&[b'['; 10_000]).starts_with("Error reading JSON."));
    }

    #[test]
    fn responses() {
        assert_eq!(RESPONSE_OK, b"{}\x1e");
        assert_eq!(error_response("dummy"), b"{\"error\":\"dummy\"}\x1e");
        assert_eq!(
            error_response(&unsupported_protocol("messagepack")),
            "{\"error\":\"The protocol 'messagepack' is not supported.\"}\x1e".as_bytes()
        );
        assert_eq!(
            unsupported_version("json", 3),
            "The server does not support version 3 of the 'json' protocol."
        );
        assert_eq!(
            error_response("a\"b\nc"),
            b"{\"error\":\"a\\\"b\\nc\"}\x1e".to_vec()
        );
    }

    #[test]
    fn parse_responses() {
        assert_eq!(parse_response(b"{}"), Ok(None));
        assert_eq!(parse_response(br#"{"error":"dummy"}"#), Ok(Some("dummy".into())));
        assert_eq!(parse_response(br#"{"error":null,"x":1}"#), Ok(None));
        assert_eq!(
            parse_response(br#"{"type":6}"#),
            Err(HandshakeError::NotAHandshakeResponse)
        );
        assert!(parse_response(b"{").is_err());
        assert!(parse_response(b"[]").is_err());
    }
}
