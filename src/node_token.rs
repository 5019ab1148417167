//! The bearer token the tools that connect to nodes present (`Authorization: Bearer …` on
//! negotiate and on the WebSocket upgrade): the dashboard's probes, `check`, `load` and the
//! demo's simulated users, for hubs started with `--auth jwt`.
//!
//! [`NodeCredentials`] is where a token comes from: none, one static token (`--node-token` or
//! `SWITCHBOARD_NODE_TOKEN`), or minted per identity from an HS256 secret (`--node-jwt-secret-file`,
//! or [`NodeCredentials::mint_from_secret`] with bytes held in memory, as the demo does): a
//! short-lived JWT whose `sub` is the probe's or client's user id, so each keeps its own user on
//! the hub. [`NodeCredentials::bearer_for`] mints a fresh one at every call (the callers ask once
//! per connection attempt), so a token never outlives [`DEFAULT_NODE_JWT_LIFETIME`].
//!
//! Secrets: [`NodeToken`] and the HS256 key have a `Debug` that prints `***`, no `Display` and no
//! serde, so they cannot reach a log line, an error, a settings file or a workspace by accident.
//! No cryptography here: `jsonwebtoken` signs.
//!
//! Neutral ground like `monitor_token`: `client` sends it, `monitor`, `check`, `load`, `demo` and
//! `cli` build or pass it. Uses `config` only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

pub use crate::config::DEFAULT_NODE_JWT_LIFETIME;

/// Longest static token accepted: a JWT with a few claims is well under 2 KiB; 8 KiB still fits a
/// header line of any server.
pub const MAX_NODE_TOKEN_LEN: usize = 8 * 1024;

/// Longest secret file read: an HS256 secret is 32 to 64 bytes; anything past 64 KiB is not one.
pub const MAX_SECRET_FILE_LEN: u64 = 64 * 1024;

/// An HS256 secret as read from a file or a variable: without its trailing `\n` / `\r\n` (as
/// editors and `echo` leave them). One rule for the hub's `--jwt-secret-file` and the tools'
/// `--node-jwt-secret-file`, so a file that works for one works for the other.
pub fn secret_bytes(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &bytes[..end]
}

/// Why credentials could not be built. Never carries the token or the secret.
#[derive(Debug, thiserror::Error)]
pub enum NodeTokenError {
    #[error("the node token is empty")]
    Empty,
    #[error("the node token is longer than {MAX_NODE_TOKEN_LEN} characters")]
    TooLong,
    #[error("the node token may only contain visible ASCII characters (no spaces)")]
    BadCharacters,
    #[error("reading the JWT secret file {path}: {source}")]
    SecretFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the JWT secret file {path} is empty")]
    EmptySecret { path: String },
    #[error("the JWT secret file {path} is larger than {MAX_SECRET_FILE_LEN} bytes")]
    SecretTooLarge { path: String },
    #[error("the JWT secret is empty")]
    EmptySecretBytes,
    #[error("the HS256 key could not be built: {0}")]
    Key(String),
}

/// One bearer token (see the module docs): masked `Debug`, no `Display`, no serde.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeToken(String);

impl std::fmt::Debug for NodeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeToken(***)")
    }
}

impl NodeToken {
    /// Checks a token given on the command line or in the environment: 1 to
    /// [`MAX_NODE_TOKEN_LEN`] visible ASCII characters. The error never repeats the token.
    pub fn new(token: &str) -> Result<NodeToken, NodeTokenError> {
        if token.is_empty() {
            return Err(NodeTokenError::Empty);
        }
        if token.len() > MAX_NODE_TOKEN_LEN {
            return Err(NodeTokenError::TooLong);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(NodeTokenError::BadCharacters);
        }
        Ok(NodeToken(token.to_string()))
    }

    /// The `Authorization` header value that carries it: `Bearer TOKEN`.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// The bare token, for the one place that must write it on the wire (the client's header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Mints HS256 tokens (see the module docs).
#[derive(Clone)]
pub struct Minter {
    key: EncodingKey,
    issuer: Option<String>,
    audience: Option<String>,
    lifetime: Duration,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("key", &"***")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

impl Minter {
    /// A token for `user`, valid from now for the minter's lifetime.
    fn mint(&self, user: &str) -> Option<NodeToken> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            sub: user,
            iat: now,
            exp: now.saturating_add(self.lifetime.as_secs().max(1)),
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        match jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key) {
            Ok(token) => Some(NodeToken(token)),
            Err(e) => {
                // Signing an HS256 token with a valid key does not fail; if it does, the request
                // goes without a token and the node says so. The error names no secret.
                tracing::warn!(error = %e, "minting a node token failed");
                None
            }
        }
    }
}

/// Where the tokens sent to nodes come from (see the module docs).
#[derive(Debug, Clone, Default)]
pub enum NodeCredentials {
    /// No token: requests carry no `Authorization`.
    #[default]
    None,
    /// The same token for every identity.
    Static(NodeToken),
    /// A fresh HS256 token per identity and connection attempt.
    Mint(Minter),
}

impl NodeCredentials {
    /// A static token (`--node-token`).
    pub fn from_token(token: &str) -> Result<NodeCredentials, NodeTokenError> {
        NodeToken::new(token).map(NodeCredentials::Static)
    }

    /// Minting from a secret held in memory (the demo's random secret), without its trailing
    /// line breaks ([`secret_bytes`]): the hub's `JwtSecret::new` drops them too, so one secret
    /// gives one key on both ends whatever its last byte is.
    pub fn mint_from_secret(secret: &[u8]) -> Result<NodeCredentials, NodeTokenError> {
        let secret = secret_bytes(secret);
        if secret.is_empty() {
            return Err(NodeTokenError::EmptySecretBytes);
        }
        let key = EncodingKey::from_secret(secret).map_err(|e| NodeTokenError::Key(e.to_string()))?;
        Ok(NodeCredentials::Mint(Minter {
            key,
            issuer: None,
            audience: None,
            lifetime: DEFAULT_NODE_JWT_LIFETIME,
        }))
    }

    /// Minting from the secret in a file (`--node-jwt-secret-file`): the file's bytes without
    /// their trailing line breaks ([`secret_bytes`], the hub's rule for `--jwt-secret-file`).
    pub fn mint_from_secret_file(path: &std::path::Path) -> Result<NodeCredentials, NodeTokenError> {
        let shown = path.display().to_string();
        let io = |source| NodeTokenError::SecretFile {
            path: shown.clone(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_SECRET_FILE_LEN {
            return Err(NodeTokenError::SecretTooLarge { path: shown });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let bytes = secret_bytes(&bytes);
        if bytes.is_empty() {
            return Err(NodeTokenError::EmptySecret { path: shown });
        }
        NodeCredentials::mint_from_secret(bytes)
    }

    /// Minted tokens carry `iss` (match the hub's `--jwt-issuer`); no effect on other kinds.
    pub fn with_issuer(mut self, issuer: Option<String>) -> NodeCredentials {
        if let NodeCredentials::Mint(minter) = &mut self {
            minter.issuer = issuer;
        }
        self
    }

    /// Minted tokens carry `aud` (match the hub's `--jwt-audience`); no effect on other kinds.
    pub fn with_audience(mut self, audience: Option<String>) -> NodeCredentials {
        if let NodeCredentials::Mint(minter) = &mut self {
            minter.audience = audience;
        }
        self
    }

    /// Minted tokens live this long (at least a second); no effect on other kinds.
    pub fn with_lifetime(mut self, lifetime: Duration) -> NodeCredentials {
        if let NodeCredentials::Mint(minter) = &mut self {
            minter.lifetime = lifetime;
        }
        self
    }

    /// Whether no token is ever sent.
    pub fn is_none(&self) -> bool {
        matches!(self, NodeCredentials::None)
    }

    /// The token to present as `user` (`sub` of a minted token); `None` without credentials.
    /// Minted tokens are fresh at every call: ask once per connection attempt.
    pub fn bearer_for(&self, user: &str) -> Option<NodeToken> {
        match self {
            NodeCredentials::None => None,
            NodeCredentials::Static(token) => Some(token.clone()),
            NodeCredentials::Mint(minter) => minter.mint(user),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use super::*;

    use jsonwebtoken::{DecodingKey, Validation};

    #[derive(serde::Deserialize)]
    struct Seen {
        sub: String,
        exp: u64,
        iat: u64,
        iss: Option<String>,
        aud: Option<String>,
    }

    fn decode(token: &NodeToken, secret: &[u8], validation: &Validation) -> Seen {
        jsonwebtoken::decode::<Seen>(
            token.expose(),
            &DecodingKey::from_secret(secret).unwrap(),
            validation,
        )
        .unwrap()
        .claims
    }

    #[test]
    fn debug_never_shows_a_token_or_a_secret() {
        let token = NodeToken::new("s3cret-Value").unwrap();
        let credentials = NodeCredentials::Static(token.clone());
        let minted = NodeCredentials::mint_from_secret(b"key-s3cret-bytes").unwrap();
        let text = format!("{token:?} {credentials:?} {minted:?} {:?}", Some(token.clone()));
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("***"));
    }

    #[test]
    fn bad_tokens_are_refused_without_repeating_them() {
        for bad in ["", "has space", "tab\there", "new\nline", "é"] {
            let error = NodeToken::new(bad).unwrap_err().to_string();
            assert!(bad.is_empty() || !error.contains(bad), "{error}");
        }
        assert!(NodeToken::new(&"a".repeat(MAX_NODE_TOKEN_LEN + 1)).is_err());
        assert!(NodeToken::new(&"a".repeat(MAX_NODE_TOKEN_LEN)).is_ok());
        assert!(NodeCredentials::mint_from_secret(b"").is_err());
        assert!(NodeCredentials::mint_from_secret(b"\r\n").is_err());
    }

    #[test]
    fn minted_tokens_are_hs256_jwts_with_the_user_as_sub() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let credentials = NodeCredentials::mint_from_secret(secret)
            .unwrap()
            .with_issuer(Some("iss-x".into()))
            .with_audience(Some("aud-y".into()));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&["iss-x"]);
        validation.set_audience(&["aud-y"]);
        let alice = decode(&credentials.bearer_for("alice").unwrap(), secret, &validation);
        let bob = decode(&credentials.bearer_for("bob").unwrap(), secret, &validation);
        assert_eq!(alice.sub, "alice");
        assert_eq!(bob.sub, "bob");
        assert_eq!(alice.iss.as_deref(), Some("iss-x"));
        assert_eq!(alice.aud.as_deref(), Some("aud-y"));
        assert_eq!(alice.exp - alice.iat, DEFAULT_NODE_JWT_LIFETIME.as_secs());
        let other = jsonwebtoken::decode::<Seen>(
            credentials.bearer_for("alice").unwrap().expose(),
            &DecodingKey::from_secret(b"another secret").unwrap(),
            &validation,
        );
        assert!(other.is_err(), "signed with the secret, not any other");
    }

    #[test]
    fn static_and_none() {
        assert!(NodeCredentials::None.bearer_for("a").is_none());
        assert!(NodeCredentials::None.is_none());
        let s = NodeCredentials::from_token("abc").unwrap();
        assert_eq!(s.bearer_for("x").unwrap().header_value(), "Bearer abc");
        assert_eq!(s.bearer_for("y").unwrap().expose(), "abc");
    }

    #[test]
    fn a_secret_file_loses_its_trailing_line_breaks() {
        let dir = std::env::temp_dir().join(format!("sb-node-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, b"file-secret\r\n\n").unwrap();
        let credentials = NodeCredentials::mint_from_secret_file(&path).unwrap();
        let seen = decode(
            &credentials.bearer_for("u").unwrap(),
            b"file-secret",
            &Validation::new(Algorithm::HS256),
        );
        assert_eq!(seen.sub, "u");
        std::fs::write(&path, b"\n").unwrap();
        let error = NodeCredentials::mint_from_secret_file(&path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("empty"), "{error}");
        let missing = NodeCredentials::mint_from_secret_file(&dir.join("nope"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
