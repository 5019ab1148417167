//! JWT bearer authentication of hub clients (`switchboard hub --auth jwt`): the key
//! configuration, loading the key material, and the pure check [`Verifier::verify`]`(token, now)`
//! that turns a token into an [`Identity`] (user id, roles, expiry) or an [`AuthError`] whose
//! `Display` is the one-line reason a refused client is told.
//!
//! Rules:
//! - the algorithm comes from the configured key, never from the token: an HMAC secret verifies
//!   HS256 only, an RSA public key RS256 only, an EC (P-256) public key ES256 only, and a JWKS
//!   key the algorithm of its key type. `alg: none`, and an HS256 token "signed" with an RSA
//!   public key's PEM bytes (the key-confusion attack), are refused;
//! - `exp` is required; `exp` and `nbf` are checked against the `now` passed in, with
//!   `leeway` (default [`config::DEFAULT_JWT_LEEWAY`]) either way for clock skew;
//! - `--jwt-issuer` / `--jwt-audience`, when set, must match (and the claims must be present);
//! - the user id is `sub`, or the claim `--user-claim` names (a string, or a number as text);
//! - roles come from `role`, `roles` or the ASP.NET claim type [`ASPNET_ROLE_CLAIM`], each a
//!   string or an array of strings.
//!
//! Secrets (the HMAC secret) live in [`JwtSecret`], whose `Debug` prints `***`, with no
//! `Display` and no serde; no error here ever repeats a token or a secret.
//!
//! Used by `listener` (who may negotiate and connect), `connection` (the expiry timer),
//! `dispatch` (the admin role) and `cli` (building the verifier from flags). Uses `jsonwebtoken`
//! for every cryptographic operation; no I/O besides reading the key files it is given.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config;

/// The claim type ASP.NET Core's `ClaimTypes.Role` maps a role to.
pub const ASPNET_ROLE_CLAIM: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role";

/// Longest token looked at (a header line is bounded by the HTTP server anyway): beyond this the
/// token is refused as malformed before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// An HMAC secret (HS256). `Debug` prints `***`; no `Display`, no serde.
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(***)")
    }
}

impl JwtSecret {
    /// A secret as given (the environment variable, or a file's content without its trailing
    /// line break). Empty is an error that does not repeat anything.
    pub fn new(secret: &[u8]) -> Result<JwtSecret, AuthSetupError> {
        let trimmed = crate::node_token::secret_bytes(secret);
        if trimmed.is_empty() {
            return Err(AuthSetupError::EmptySecret);
        }
        Ok(JwtSecret(trimmed.to_vec()))
    }
}

/// Where the verification key comes from: exactly one of these.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `--jwt-secret-file FILE` or `SWITCHBOARD_JWT_SECRET`: HS256.
    Secret(JwtSecret),
    /// `--jwt-public-key FILE`: a PEM public key; RSA → RS256, EC P-256 → ES256.
    PublicKeyFile(PathBuf),
    /// `--jwt-jwks FILE`: a JWKS document; the token's `kid` picks the key. Re-read by `reload`.
    JwksFile(PathBuf),
}

/// Everything `--auth jwt` is configured with.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub key: KeySource,
    /// `--jwt-issuer`: the `iss` every token must carry.
    pub issuer: Option<String>,
    /// `--jwt-audience`: a value the token's `aud` must carry.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (and how long a connection outlives `exp`).
    pub leeway: Duration,
    /// `--user-claim`: the claim holding the user id (default `sub`).
    pub user_claim: String,
    /// `--admin-role`: the role that may add or remove other connections to/from groups.
    pub admin_role: String,
    /// Close a connection (SignalR Close with an error) when its token expires.
    pub close_on_expiry: bool,
}

impl JwtSettings {
    /// Settings with the documented defaults for everything but the key.
    pub fn new(key: KeySource) -> JwtSettings {
        JwtSettings {
            key,
            issuer: None,
            audience: None,
            leeway: config::DEFAULT_JWT_LEEWAY,
            user_claim: config::DEFAULT_USER_CLAIM.to_string(),
            admin_role: config::DEFAULT_ADMIN_ROLE.to_string(),
            close_on_expiry: true,
        }
    }
}

/// Why `--auth jwt` cannot start (or a JWKS reload failed). Never repeats a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("the JWT secret is empty")]
    EmptySecret,
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is empty")]
    EmptyFile { path: PathBuf },
    #[error("{path}: not a PEM RSA or EC public key ({reason})")]
    PublicKey { path: PathBuf, reason: String },
    #[error("{path}: not a JWKS document: {reason}")]
    Jwks { path: PathBuf, reason: String },
}

/// Why a token was refused; `Display` is the one line the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing token: send `Authorization: Bearer TOKEN` (or access_token=TOKEN on the WebSocket request)"
    )]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("unsigned tokens (alg none) are not accepted")]
    Unsigned,
    #[error("algorithm not accepted: this node verifies {expected:?} tokens, this one is {got}")]
    Algorithm { expected: Algorithm, got: String },
    #[error("the token has no kid, and this node picks its key by kid (JWKS)")]
    NoKid,
    #[error("unknown kid: no key with that id in this node's JWKS")]
    UnknownKid,
    #[error("bad signature: the token was not signed with this node's key")]
    BadSignature,
    #[error("expired: the token's exp is in the past (beyond the clock-skew leeway)")]
    Expired,
    #[error("not yet valid (nbf is in the future)")]
    NotYetValid,
    #[error("the token has no exp claim (an expiry is required)")]
    NoExpiry,
    #[error("wrong audience: the token's aud does not name this node's --jwt-audience")]
    WrongAudience,
    #[error("wrong issuer: the token's iss is not this node's --jwt-issuer")]
    WrongIssuer,
    #[error("the token has no {0} claim (it names the user)")]
    NoUser(String),
    #[error("the token's {0} claim is malformed")]
    BadClaim(&'static str),
}

/// Who a valid token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub roles: Vec<String>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires: u64,
}

impl Identity {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// One verification key with the only algorithm it accepts.
struct Key {
    key: DecodingKey,
    alg: Algorithm,
    /// `iss`/`aud` checks; `exp`/`nbf` are checked here with the caller's `now`.
    validation: Validation,
}

enum Keys {
    One(Box<Key>),
    /// By `kid`.
    Set(HashMap<String, Key>),
}

/// Verifies tokens for one node. Cheap to share (`Arc`); `reload` swaps a JWKS in place.
pub struct Verifier {
    settings: JwtSettings,
    keys: RwLock<Arc<Keys>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Loads the key material (reads the key file, parses the PEM or the JWKS).
    pub fn new(settings: JwtSettings) -> Result<Verifier, AuthSetupError> {
        let keys = load(&settings)?;
        Ok(Verifier {
            settings,
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// Re-reads a JWKS file (on SIGHUP); returns how many keys it holds. Other key sources are
    /// left as they are (Ok(None)). On an error the keys in use stay.
    pub fn reload(&self) -> Result<Option<usize>, AuthSetupError> {
        if !matches!(self.settings.key, KeySource::JwksFile(_)) {
            return Ok(None);
        }
        let keys = load(&self.settings)?;
        let n = match &keys {
            Keys::Set(set) => set.len(),
            Keys::One(_) => 1,
        };
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(Some(n))
    }

    /// The pure check of the module docs. `now` is seconds since the Unix epoch.
    pub fn verify(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("too long"));
        }
        let header = header_of(token)?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let key = match &*keys {
            Keys::One(key) => key,
            Keys::Set(set) => {
                let kid = header.kid.as_deref().ok_or(AuthError::NoKid)?;
                set.get(kid).ok_or(AuthError::UnknownKid)?
            }
        };
        if header.alg != format!("{:?}", key.alg) {
            return Err(AuthError::Algorithm {
                expected: key.alg,
                got: header
                    .alg
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .take(16)
                    .collect(),
            });
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &key.validation)
            .map_err(|e| refusal(e.kind()))?;
        self.identity(&data.claims, now)
    }

    fn identity(&self, claims: &serde_json::Map<String, Value>, now: u64) -> Result<Identity, AuthError> {
        let leeway = self.settings.leeway.as_secs();
        let expires = match claims.get("exp") {
            None | Some(Value::Null) => return Err(AuthError::NoExpiry),
            Some(v) => seconds(v).ok_or(AuthError::BadClaim("exp"))?,
        };
        if now > expires.saturating_add(leeway) {
            return Err(AuthError::Expired);
        }
        match claims.get("nbf") {
            None | Some(Value::Null) => {}
            Some(v) => {
                let nbf = seconds(v).ok_or(AuthError::BadClaim("nbf"))?;
                if nbf > now.saturating_add(leeway) {
                    return Err(AuthError::NotYetValid);
                }
            }
        }
        let name = &self.settings.user_claim;
        let user = match claims.get(name) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(AuthError::NoUser(name.chars().take(64).collect())),
        };
        let mut roles = Vec::new();
        for claim in ["role", "roles", ASPNET_ROLE_CLAIM] {
            match claims.get(claim) {
                Some(Value::String(s)) => roles.push(s.clone()),
                Some(Value::Array(items)) => {
                    roles.extend(items.iter().filter_map(|r| r.as_str().map(str::to_string)))
                }
                _ => {}
            }
        }
        Ok(Identity { user, roles, expires })
    }
}

/// A NumericDate: integer or fractional seconds (RFC 7519 allows both); negative is malformed.
fn seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

/// The parts of the JOSE header looked at before the key is chosen.
struct JoseHeader {
    alg: String,
    kid: Option<String>,
}

/// Decodes the header ourselves, so `alg: none` and unknown algorithms get their own reasons
/// (`jsonwebtoken` has no `none`, and would call it a JSON error).
fn header_of(token: &str) -> Result<JoseHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three dot-separated parts"));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed("the header is not base64url"))?;
    let json: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("the header is not a JSON object"))?;
    let alg = match json.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(AuthError::Malformed("the header has no alg")),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(AuthError::Unsigned);
    }
    let kid = json.get("kid").and_then(Value::as_str).map(str::to_string);
    Ok(JoseHeader { alg, kid })
}

/// `jsonwebtoken`'s verdict as a reason (only the checks it still does: signature, iss, aud).
fn refusal(kind: &jsonwebtoken::errors::ErrorKind) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => AuthError::BadSignature,
        K::InvalidAudience => AuthError::WrongAudience,
        K::InvalidIssuer => AuthError::WrongIssuer,
        K::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
        K::MissingRequiredClaim(c) if c == "iss" => AuthError::WrongIssuer,
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidAlgorithm => AuthError::Malformed("algorithm does not match the key"),
        K::Base64(_) => AuthError::Malformed("not base64url"),
        K::Json(_) | K::Utf8(_) => AuthError::Malformed("the claims are not a JSON object"),
        K::InvalidEcdsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => AuthError::BadSignature,
        _ => AuthError::Malformed("cannot be verified"),
    }
}

fn validation(alg: Algorithm, settings: &JwtSettings) -> Validation {
    let mut v = Validation::new(alg);
    // exp/nbf are checked by `identity` against the caller's clock.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = 0;
    let mut required: Vec<&str> = Vec::new();
    match &settings.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    if let Some(iss) = &settings.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    v.set_required_spec_claims(&required);
    v
}

fn read(path: &Path) -> Result<Vec<u8>, AuthSetupError> {
    let bytes = std::fs::read(path).map_err(|source| AuthSetupError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if crate::node_token::secret_bytes(&bytes)
        .iter()
        .all(u8::is_ascii_whitespace)
    {
        return Err(AuthSetupError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

fn load(settings: &JwtSettings) -> Result<Keys, AuthSetupError> {
    let one = |key: DecodingKey, alg: Algorithm| {
        Keys::One(Box::new(Key {
            key,
            alg,
            validation: validation(alg, settings),
        }))
    };
    match &settings.key {
        KeySource::Secret(secret) => {
            // from_secret fails only on an empty secret, which `JwtSecret::new` refuses.
            let key = DecodingKey::from_secret(&secret.0).map_err(|_| AuthSetupError::EmptySecret)?;
            Ok(one(key, Algorithm::HS256))
        }
        KeySource::PublicKeyFile(path) => {
            let pem = read(path)?;
            let text = String::from_utf8_lossy(&pem);
            if text.contains("PRIVATE KEY") {
                return Err(AuthSetupError::PublicKey {
                    path: path.clone(),
                    reason: "this is a private key; give the node the public key only".into(),
                });
            }
            if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                return Ok(one(key, Algorithm::RS256));
            }
            match DecodingKey::from_ec_pem(&pem) {
                Ok(key) => Ok(one(key, Algorithm::ES256)),
                Err(e) => Err(AuthSetupError::PublicKey {
                    path: path.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        KeySource::JwksFile(path) => {
            let bytes = read(path)?;
            let bad = |reason: String| AuthSetupError::Jwks {
                path: path.clone(),
                reason,
            };
            let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
            let mut keys = HashMap::new();
            for jwk in &set.keys {
                let Some(kid) = jwk.common.key_id.clone() else {
                    tracing::warn!(file = %path.display(), "a JWKS key without a kid is ignored");
                    continue;
                };
                let alg = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                        Algorithm::ES256
                    }
                    AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
                    _ => {
                        tracing::warn!(file = %path.display(), %kid, "a JWKS key of an unsupported type is ignored");
                        continue;
                    }
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("key {kid:?}: {e}")))?;
                keys.insert(
                    kid,
                    Key {
                        key,
                        alg,
                        validation: validation(alg, settings),
                    },
                );
            }
            if keys.is_empty() {
                return Err(bad("no usable key (RSA, EC P-256 or oct, each with a kid)".into()));
            }
            Ok(Keys::Set(keys))
        }
    }
}

/// The bearer token of an `Authorization` header value (`Bearer`, any case), if it is one.
pub fn bearer(header: &[u8]) -> Option<&str> {
    const SCHEME: &[u8] = b"bearer ";
    if header.len() <= SCHEME.len() || !header[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    std::str::from_utf8(&header[SCHEME.len()..]).ok().map(str::trim)
}

/// `uri` with the value of every `access_token` query parameter replaced by `***`, for anything
/// that logs or echoes a request target.
pub fn redact_uri(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("access_token") => format!("{k}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const SECRET: &[u8] = b"test-only-secret-not-used-anywhere-0123456789";

    struct Keypair {
        private_pem: Vec<u8>,
        public_pem: Vec<u8>,
    }

    fn openssl(args: &[&str], dir: &Path) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl on PATH");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn keypair(kind: &str) -> Keypair {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("sb-auth-unit-{kind}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        match kind {
            "rsa" => openssl(
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    "key.pem",
                ],
                &dir,
            ),
            _ => openssl(
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    "key.pem",
                ],
                &dir,
            ),
        }
        openssl(&["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"], &dir);
        let pair = Keypair {
            private_pem: std::fs::read(dir.join("key.pem")).unwrap(),
            public_pem: std::fs::read(dir.join("pub.pem")).unwrap(),
        };
        let _ = std::fs::remove_dir_all(&dir);
        pair
    }

    fn write_temp(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("sb-auth-unit-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn hs256(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap()
    }

    fn claims(sub: &str) -> Value {
        json!({ "sub": sub, "exp": NOW + 3600 })
    }

    fn secret_verifier(edit: impl FnOnce(&mut JwtSettings)) -> Verifier {
        let mut settings = JwtSettings::new(KeySource::Secret(JwtSecret::new(SECRET).unwrap()));
        edit(&mut settings);
        Verifier::new(settings).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn hs256_table() {
        let v = secret_verifier(|_| {});
        let leeway = config::DEFAULT_JWT_LEEWAY.as_secs();
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims("bob"),
            &EncodingKey::from_secret(b"another-secret").unwrap(),
        )
        .unwrap();
        let unsigned = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(claims("bob").to_string().as_bytes())
        );
        let table: Vec<(&str, String, Result<&str, AuthError>)> = vec![
            ("valid", hs256(&claims("bob")), Ok("bob")),
            ("forged signature", forged, Err(AuthError::BadSignature)),
            (
                "expired beyond the leeway",
                hs256(&json!({"sub": "bob", "exp": NOW - leeway - 1})),
                Err(AuthError::Expired),
            ),
            (
                "expired within the leeway",
                hs256(&json!({"sub": "bob", "exp": NOW - leeway + 1})),
                Ok("bob"),
            ),
            (
                "nbf in the future",
                hs256(&json!({"sub": "bob", "exp": NOW + 3600, "nbf": NOW + leeway + 10})),
                Err(AuthError::NotYetValid),
            ),
            (
                "nbf within the leeway",
                hs256(&json!({"sub": "bob", "exp": NOW + 3600, "nbf": NOW + leeway - 1})),
                Ok("bob"),
            ),
            ("no exp", hs256(&json!({"sub": "bob"})), Err(AuthError::NoExpiry)),
            (
                "no sub",
                hs256(&json!({"exp": NOW + 60})),
                Err(AuthError::NoUser("sub".into())),
            ),
            ("alg none", unsigned, Err(AuthError::Unsigned)),
            (
                "garbage",
                "not-a-token".into(),
                Err(AuthError::Malformed("not three dot-separated parts")),
            ),
            ("empty", String::new(), Err(AuthError::Missing)),
        ];
        for (name, token, want) in table {
            let got = v.verify(&token, NOW).map(|i| i.user);
            assert_eq!(got.as_deref().map_err(Clone::clone), want, "{name}");
        }
    }

    #[test]
    fn audience_and_issuer() {
        let v = secret_verifier(|s| {
            s.audience = Some("switchboard".into());
            s.issuer = Some("https://issuer.test".into());
        });
        let ok = json!({"sub": "bob", "exp": NOW + 60, "aud": "switchboard", "iss": "https://issuer.test"});
        assert_eq!(v.verify(&hs256(&ok), NOW).unwrap().user, "bob");
        let aud_list =
            json!({"sub": "bob", "exp": NOW + 60, "aud": ["x", "switchboard"], "iss": "https://issuer.test"});
        assert!(v.verify(&hs256(&aud_list), NOW).is_ok());
        let wrong_aud = json!({"sub": "bob", "exp": NOW + 60, "aud": "other", "iss": "https://issuer.test"});
        assert_eq!(v.verify(&hs256(&wrong_aud), NOW), Err(AuthError::WrongAudience));
        let no_aud = json!({"sub": "bob", "exp": NOW + 60, "iss": "https://issuer.test"});
        assert_eq!(v.verify(&hs256(&no_aud), NOW), Err(AuthError::WrongAudience));
        let wrong_iss =
            json!({"sub": "bob", "exp": NOW + 60, "aud": "switchboard", "iss": "https://evil.test"});
        assert_eq!(v.verify(&hs256(&wrong_iss), NOW), Err(AuthError::WrongIssuer));
        let no_iss = json!({"sub": "bob", "exp": NOW + 60, "aud": "switchboard"});
        assert_eq!(v.verify(&hs256(&no_iss), NOW), Err(AuthError::WrongIssuer));
        // Without a configured audience, a token's aud does not matter.
        let open = secret_verifier(|_| {});
        assert!(open.verify(&hs256(&wrong_aud), NOW).is_ok());
    }

    #[test]
    fn custom_user_claim_and_roles() {
        let v = secret_verifier(|s| s.user_claim = "preferred_username".into());
        let token = hs256(
            &json!({"sub": "id-1", "preferred_username": "carol", "exp": NOW + 60, "role": "switchboard-admin"}),
        );
        let id = v.verify(&token, NOW).unwrap();
        assert_eq!(id.user, "carol");
        assert!(id.has_role("switchboard-admin"));
        assert_eq!(id.expires, NOW + 60);
        let token = hs256(&json!({"sub": "bob", "exp": NOW + 60}));
        assert_eq!(
            v.verify(&token, NOW),
            Err(AuthError::NoUser("preferred_username".into()))
        );
        let plain = secret_verifier(|_| {});
        let array = hs256(&json!({"sub": "bob", "exp": NOW + 60, "roles": ["a", "switchboard-admin"]}));
        assert!(plain.verify(&array, NOW).unwrap().has_role("switchboard-admin"));
        let long = hs256(&json!({"sub": "bob", "exp": NOW + 60, ASPNET_ROLE_CLAIM: ["ops"]}));
        assert_eq!(plain.verify(&long, NOW).unwrap().roles, vec!["ops".to_string()]);
        let none = hs256(&json!({"sub": "bob", "exp": NOW + 60}));
        assert!(plain.verify(&none, NOW).unwrap().roles.is_empty());
    }

    #[test]
    fn rsa_and_ec_keys_and_key_confusion() {
        let rsa = keypair("rsa");
        let path = write_temp("rsa.pub", &rsa.public_pem);
        let v = Verifier::new(JwtSettings::new(KeySource::PublicKeyFile(path.clone()))).unwrap();
        let token = encode(
            &Header::new(Algorithm::RS256),
            &claims("bob"),
            &EncodingKey::from_rsa_pem(&rsa.private_pem).unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&token, NOW).unwrap().user, "bob");
        // The classic attack: HS256 with the public key's PEM bytes as the HMAC secret.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims("mallory"),
            &EncodingKey::from_secret(&rsa.public_pem).unwrap(),
        )
        .unwrap();
        let refused = v.verify(&confused, NOW).unwrap_err();
        assert!(matches!(refused, AuthError::Algorithm { .. }), "{refused:?}");
        assert!(refused.to_string().contains("RS256"), "{refused}");
        // A forged RS256 signature (another key).
        let other = keypair("rsa");
        let forged = encode(
            &Header::new(Algorithm::RS256),
            &claims("bob"),
            &EncodingKey::from_rsa_pem(&other.private_pem).unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&forged, NOW), Err(AuthError::BadSignature));
        let _ = std::fs::remove_file(path);

        let ec = keypair("ec");
        let path = write_temp("ec.pub", &ec.public_pem);
        let v = Verifier::new(JwtSettings::new(KeySource::PublicKeyFile(path.clone()))).unwrap();
        let token = encode(
            &Header::new(Algorithm::ES256),
            &claims("erin"),
            &EncodingKey::from_ec_pem(&ec.private_pem).unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&token, NOW).unwrap().user, "erin");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn jwks_picks_the_key_by_kid_and_reloads() {
        let rsa = keypair("rsa");
        let enc = EncodingKey::from_rsa_pem(&rsa.private_pem).unwrap();
        let dec = DecodingKey::from_rsa_pem(&rsa.public_pem).unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_decoding_key(&dec, Some(Algorithm::RS256)).unwrap();
        jwk.common.key_id = Some("k1".into());
        let set = JwkSet {
            keys: vec![jwk.clone()],
        };
        let path = write_temp("jwks.json", serde_json::to_string(&set).unwrap().as_bytes());
        let v = Verifier::new(JwtSettings::new(KeySource::JwksFile(path.clone()))).unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        let token = encode(&header, &claims("bob"), &enc).unwrap();
        assert_eq!(v.verify(&token, NOW).unwrap().user, "bob");
        header.kid = Some("k2".into());
        let unknown = encode(&header, &claims("bob"), &enc).unwrap();
        assert_eq!(v.verify(&unknown, NOW), Err(AuthError::UnknownKid));
        let no_kid = encode(&Header::new(Algorithm::RS256), &claims("bob"), &enc).unwrap();
        assert_eq!(v.verify(&no_kid, NOW), Err(AuthError::NoKid));
        // The file now names the key k2: after a reload, k2 verifies and k1 is unknown.
        jwk.common.key_id = Some("k2".into());
        let set = JwkSet { keys: vec![jwk] };
        std::fs::write(&path, serde_json::to_string(&set).unwrap()).unwrap();
        assert_eq!(v.reload().unwrap(), Some(1));
        assert_eq!(v.verify(&unknown, NOW).unwrap().user, "bob");
        assert_eq!(v.verify(&token, NOW), Err(AuthError::UnknownKid));
        // A broken file keeps the keys in use.
        std::fs::write(&path, "{").unwrap();
        assert!(v.reload().is_err());
        assert_eq!(v.verify(&unknown, NOW).unwrap().user, "bob");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn setup_errors_are_clear_and_never_repeat_the_secret() {
        assert!(matches!(JwtSecret::new(b"\n"), Err(AuthSetupError::EmptySecret)));
        let secret = JwtSecret::new(b"hunter2-secret\n").unwrap();
        assert_eq!(secret.0, b"hunter2-secret");
        assert!(!format!("{secret:?}").contains("hunter2"));
        let v = Verifier::new(JwtSettings::new(KeySource::Secret(secret))).unwrap();
        assert!(!format!("{v:?}").contains("hunter2"), "{v:?}");
        let missing = PathBuf::from("/nonexistent/switchboard/key.pem");
        let e = Verifier::new(JwtSettings::new(KeySource::PublicKeyFile(missing))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/switchboard/key.pem"), "{e}");
        let empty = write_temp("empty.pem", b"\n");
        let e = Verifier::new(JwtSettings::new(KeySource::PublicKeyFile(empty.clone()))).unwrap_err();
        assert!(matches!(e, AuthSetupError::EmptyFile { .. }), "{e}");
        let garbage = write_temp("garbage.pem", b"not a key");
        let e = Verifier::new(JwtSettings::new(KeySource::PublicKeyFile(garbage.clone()))).unwrap_err();
        assert!(matches!(e, AuthSetupError::PublicKey { .. }), "{e}");
        let e = Verifier::new(JwtSettings::new(KeySource::JwksFile(garbage.clone()))).unwrap_err();
        assert!(matches!(e, AuthSetupError::Jwks { .. }), "{e}");
        let _ = std::fs::remove_file(empty);
        let _ = std::fs::remove_file(garbage);
        for reason in [AuthError::Missing, AuthError::Expired, AuthError::UnknownKid] {
            assert!(!reason.to_string().contains('\n'));
        }
    }

    #[test]
    fn bearer_and_redaction() {
        assert_eq!(bearer(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer(b"bearer  abc "), Some("abc"));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(
            redact_uri("/chat?id=1&access_token=s3cr3t&user=x"),
            "/chat?id=1&access_token=***&user=x"
        );
        assert_eq!(redact_uri("/chat?ACCESS_TOKEN=s3cr3t"), "/chat?ACCESS_TOKEN=***");
        assert_eq!(redact_uri("/chat"), "/chat");
    }
}
