//! TLS for every socket the crate opens or accepts: Redis (`rediss://`), the node client
//! (`https://`, `wss://`) and the hub's own listener (`--tls-cert`, `--tls-key`).
//!
//! One place builds rustls configurations (ring backend, no OpenSSL), loads PEM files with errors
//! that name the file and what was wrong with it, and turns handshake failures into one line an
//! operator can act on ("certificate not trusted: unknown issuer"). Used by `redis_conn`, `client`
//! and `hub::listener`; uses nothing else of the crate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// What a TLS client trusts and presents. `Default` is "verify against the system's roots".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// A PEM file of extra CA certificates, trusted besides the system's roots.
    pub ca: Option<PathBuf>,
    /// A client certificate chain (PEM) for mutual TLS; needs `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM, unencrypted).
    pub key: Option<PathBuf>,
    /// The name to send as SNI and to verify the server certificate against, when it is not the
    /// host connected to (a load balancer's address, a tunnel).
    pub sni: Option<String>,
    /// Skip certificate verification entirely (a test server, a self-signed box). Shown as
    /// "insecure" wherever the connection is described.
    pub insecure: bool,
}

/// Why a TLS configuration could not be built or a handshake failed. Each names the file or the
/// peer; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("TLS handshake with {peer}: {reason}")]
    Handshake { peer: String, reason: String },
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// A boxed byte stream: plain TCP or TLS over TCP, for code that does not care which.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type BoxedIo = Box<dyn Io>;

fn file_error(what: &'static str, path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate in a PEM file; an empty or unreadable file is an error naming it.
pub fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(what, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(file_error(
            what,
            path,
            "no PEM certificate (BEGIN CERTIFICATE) in it",
        ));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(what, path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let reason = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no unencrypted PEM private key in it (an encrypted key must be decrypted first)".to_string()
            }
            other => format!("not a PEM private key ({other:?})"),
        };
        file_error(what, path, reason)
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trusted roots. Unreadable stores are skipped: a custom CA may still be enough.
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "a system certificate store could not be read");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system TLS roots loaded");
    roots
}

impl ClientTls {
    /// Builds the rustls client configuration: system roots plus `ca`, the client certificate when
    /// both `cert` and `key` are given, and no verification at all when `insecure`.
    pub fn config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(insecure::AcceptAnything(provider())))
        } else {
            let mut roots = system_roots();
            if let Some(ca) = &self.ca {
                for cert in load_certs("CA file", ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| file_error("CA file", ca, format!("unusable CA certificate: {e}")))?;
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = load_certs("client certificate", cert)?;
                let key_der = load_key("client key", key)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    file_error("client key", key, format!("does not fit the certificate: {e}"))
                })?
            }
            (Some(_), None) => return Err(TlsError::Config("a client certificate needs its key too".into())),
            (None, Some(_)) => return Err(TlsError::Config("a client key needs its certificate too".into())),
            (None, None) => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    /// One line for status panels: "TLS, verified" / "TLS, verification OFF (insecure)" / with
    /// the CA file and client certificate named.
    pub fn describe(&self) -> String {
        let mut out = if self.insecure {
            "TLS, verification OFF (insecure)".to_string()
        } else {
            "TLS, verified".to_string()
        };
        if let Some(ca) = &self.ca {
            out.push_str(&format!(", CA {}", ca.display()));
        }
        if self.cert.is_some() {
            out.push_str(", client certificate");
        }
        if let Some(sni) = &self.sni {
            out.push_str(&format!(", SNI {sni}"));
        }
        out
    }
}

/// A ready TLS connector: the configuration is built once (files read once) and shared.
#[derive(Clone)]
pub struct Connector {
    config: Arc<rustls::ClientConfig>,
    sni: Option<String>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("sni", &self.sni)
            .finish_non_exhaustive()
    }
}

impl Connector {
    pub fn new(options: &ClientTls) -> Result<Self, TlsError> {
        Ok(Connector {
            config: options.config()?,
            sni: options.sni.clone(),
        })
    }

    /// The same connector speaking the given ALPN protocols (e.g. `http/1.1`).
    pub fn with_alpn(&self, protocols: &[&[u8]]) -> Self {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Connector {
            config: Arc::new(config),
            sni: self.sni.clone(),
        }
    }

    /// Runs the TLS handshake over `tcp`, verifying the server as `host` (or the configured SNI).
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> Result<BoxedIo, TlsError> {
        let name = self.sni.as_deref().unwrap_or(host);
        let server_name =
            ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']').to_string())
                .map_err(|_| TlsError::ServerName(name.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let peer = tcp
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| host.to_string());
        match connector.connect(server_name, tcp).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(e) => Err(TlsError::Handshake {
                peer,
                reason: explain_io(&e),
            }),
        }
    }
}

/// A handshake failure in words: rustls's certificate errors are clear already; a peer that is
/// not speaking TLS at all (a plain Redis port) shows up as a corrupt message or a reset.
pub fn explain_io(e: &std::io::Error) -> String {
    let inner = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            format!("server certificate rejected: {}", cert_reason(cert))
        }
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => {
            "the server did not answer in TLS (is this a plaintext port? use redis:// or http://)".to_string()
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            format!(
                "the server refused the handshake ({alert:?}; a client certificate may be required or not trusted)"
            )
        }
        Some(other) => other.to_string(),
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                format!(
                    "the server closed the connection during the handshake ({e}; a plaintext port, or a client certificate required?)"
                )
            }
            _ => e.to_string(),
        },
    }
}

fn cert_reason(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer => {
            "not trusted: unknown issuer (pass the CA with --redis-ca / --node-ca)".to_string()
        }
        C::Expired | C::ExpiredContext { .. } => "expired".to_string(),
        C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet".to_string(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "issued for another name (use --redis-sni NAME, or connect by the name in the certificate)"
                .to_string()
        }
        C::BadSignature => "bad signature".to_string(),
        C::Revoked => "revoked".to_string(),
        other => format!("{other:?}"),
    }
}

/// The server side: the hub's `--tls-cert` / `--tls-key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = load_certs("--tls-cert", cert)?;
    let key_der = load_key("--tls-key", key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| file_error("--tls-key", key, format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

mod insecure {
    //! `--redis-tls-insecure` / `insecure`: accept any certificate, still check the handshake
    //! signatures (so the session is at least with whoever holds the key it showed).
    use std::sync::Arc;

    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    pub(super) struct AcceptAnything(pub(super) Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnything {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let missing = ClientTls {
            ca: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..ClientTls::default()
        };
        let e = missing.config().unwrap_err().to_string();
        assert!(e.contains("CA file /nonexistent/ca.pem"), "{e}");

        let dir = std::env::temp_dir().join(format!("sb-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "hello").unwrap();
        let e = ClientTls {
            ca: Some(empty.clone()),
            ..ClientTls::default()
        }
        .config()
        .unwrap_err()
        .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = load_key("client key", &empty).unwrap_err().to_string();
        assert!(e.contains("no unencrypted PEM private key"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn half_a_client_certificate_is_refused() {
        let e = ClientTls {
            cert: Some(PathBuf::from("/x")),
            ..ClientTls::default()
        }
        .config()
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs its key"), "{e}");
    }

    #[test]
    fn insecure_is_said_out_loud() {
        let d = ClientTls {
            insecure: true,
            ..ClientTls::default()
        };
        assert!(d.config().is_ok());
        assert!(d.describe().contains("insecure"));
        assert_eq!(ClientTls::default().describe(), "TLS, verified");
    }
}
