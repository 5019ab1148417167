//! Test certificates made at test time with the `openssl` CLI, and a TLS `redis-server`.
//!
//! [`TestCerts::make`] writes into a private temp folder (removed on drop):
//! - `ca.pem`/`ca.key`: the test CA;
//! - `server.pem`/`server.key`: signed by it, for `IP:127.0.0.1` and `DNS:localhost`;
//! - `client.pem`/`client.key`: signed by it, for mutual TLS (`extendedKeyUsage = clientAuth`);
//! - `other-ca.pem`/`other-ca.key`: a second, unrelated CA, for "wrong CA" tests;
//! - `expired.pem` (with `server.key`): signed by the test CA, valid only from 2020-01-01 to
//!   2020-01-02, made with `openssl ca -startdate/-enddate` (OpenSSL 3.0's `x509` cannot set a
//!   start date, and `x509 -days -1` makes an end before the start, which rustls rejects as
//!   malformed rather than expired);
//! - `wrong-name.pem` (with `server.key`): signed by the test CA for `DNS:elsewhere.invalid`
//!   only, for "certificate issued for another name" tests.
//!
//! Keys are P-256, unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`). A missing `openssl` fails the
//! test with instructions: CI installs it, so a silent skip would hide a broken setup.
//!
//! [`TlsRedis::start`] runs `redis-server --port 0 --tls-port P` with these files through the
//! crate's one server builder (`demo::redis_server::RedisBuilder`), like the plain
//! [`RedisServer`](super::redis::RedisServer), and waits until it answers PING over TLS (through
//! the crate's own `tls::Connector`, so the helper also proves the certificates work).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use switchboard::demo::redis_server::{Readiness, ReadyCheck, RedisProcess, TlsFiles};
use switchboard::tls::{ClientTls, Connector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every test run's certificate and TLS-Redis folders live under this parent.
fn parent_dir() -> PathBuf {
    std::env::temp_dir().join("switchboard-test-tls")
}

/// A fresh private folder `{temp}/switchboard-test-tls/{pid}-{n}`.
fn fresh_dir(kind: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent_dir().join(format!(
        "{kind}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Runs `openssl ARGS` in `dir`; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running openssl {args:?}: {e} (install it: apt-get install -y openssl)"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The paths of a set of test certificates (see the module docs). The folder is removed on drop.
pub struct TestCerts {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca: PathBuf,
    pub other_ca_key: PathBuf,
    /// Expired (2020-01-01 to 2020-01-02) server certificate for `server_key`, by the test CA.
    pub expired_cert: PathBuf,
    /// Server certificate for `server_key`, by the test CA, naming only `elsewhere.invalid`.
    pub wrong_name_cert: PathBuf,
}

/// A new P-256 key and a self-signed CA certificate `{name}.pem`/`{name}.key`.
fn make_ca(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "3650",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A new P-256 key `{name}.key` and its request `{name}.csr`.
fn make_key_and_csr(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
}

/// Signs `{csr}.csr` with the test CA into `out` with serial number `serial`, with the
/// extensions in `ext` (one per line).
fn sign(dir: &Path, csr: &str, out: &str, serial: u32, ext: &str) {
    let ext_file = format!("{out}.ext");
    std::fs::write(dir.join(&ext_file), ext).expect("writing an extensions file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{csr}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial.to_string(),
            "-days",
            "365",
            "-sha256",
            "-extfile",
            &ext_file,
            "-out",
            out,
        ],
    );
}

const SERVER_EXT: &str = "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
basicConstraints=critical,CA:FALSE\n\
keyUsage=critical,digitalSignature\n\
extendedKeyUsage=serverAuth\n";

/// A certificate whose validity ended long ago, by the test CA, through `openssl ca` (the only
/// OpenSSL 3.0 command that takes an explicit start date).
fn sign_expired(dir: &Path) {
    let db = dir.join("expired-db");
    std::fs::create_dir_all(&db).expect("creating the openssl ca database folder");
    std::fs::write(db.join("index.txt"), "").expect("writing index.txt");
    std::fs::write(db.join("serial"), "0100\n").expect("writing serial");
    let config = "[ ca ]\ndefault_ca = past\n\
[ past ]\ndatabase = expired-db/index.txt\nnew_certs_dir = expired-db\nserial = expired-db/serial\n\
default_md = sha256\npolicy = any\ncopy_extensions = none\nunique_subject = no\n\
[ any ]\ncommonName = supplied\n\
[ server ]\n"
        .to_string()
        + SERVER_EXT;
    std::fs::write(dir.join("expired-ca.cnf"), config).expect("writing the openssl ca config");
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-notext",
            "-config",
            "expired-ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-in",
            "server.csr",
            "-out",
            "expired.pem",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
            "-extensions",
            "server",
        ],
    );
}

impl TestCerts {
    /// Makes every file (a few hundred ms of openssl). Panics, naming the command, on failure.
    pub fn make() -> TestCerts {
        let dir = fresh_dir("certs");
        make_ca(&dir, "ca", "Switchboard Test CA");
        make_ca(&dir, "other-ca", "Unrelated Test CA");
        make_key_and_csr(&dir, "server", "localhost");
        sign(&dir, "server", "server.pem", 1001, SERVER_EXT);
        sign(
            &dir,
            "server",
            "wrong-name.pem",
            1002,
            "subjectAltName=DNS:elsewhere.invalid\nbasicConstraints=critical,CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        );
        make_key_and_csr(&dir, "client", "switchboard-test-client");
        sign(
            &dir,
            "client",
            "client.pem",
            1003,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        );
        sign_expired(&dir);
        TestCerts {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.pem"),
            other_ca_key: dir.join("other-ca.key"),
            expired_cert: dir.join("expired.pem"),
            wrong_name_cert: dir.join("wrong-name.pem"),
            dir,
        }
    }

    /// Trust the test CA (system roots too), no client certificate.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls {
            ca: Some(self.ca.clone()),
            ..ClientTls::default()
        }
    }

    /// Trust the test CA and present the client certificate (mutual TLS).
    pub fn client_tls_mutual(&self) -> ClientTls {
        ClientTls {
            ca: Some(self.ca.clone()),
            cert: Some(self.client_cert.clone()),
            key: Some(self.client_key.clone()),
            ..ClientTls::default()
        }
    }

    /// Trust only the unrelated CA (plus system roots): the server must be rejected.
    pub fn client_tls_wrong_ca(&self) -> ClientTls {
        ClientTls {
            ca: Some(self.other_ca.clone()),
            ..ClientTls::default()
        }
    }
}

impl Drop for TestCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a TLS `redis-server` asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `--tls-auth-clients no`
    No,
    /// `--tls-auth-clients yes`: mutual TLS, the client certificate must be signed by the CA.
    Yes,
}

/// A `redis-server` serving only TLS (`--port 0 --tls-port P`) with a [`TestCerts`] server
/// certificate: the crate's [`RedisProcess`] with TLS files and a PING over TLS as its readiness
/// check. Killed and its folder removed on drop.
pub struct TlsRedis {
    inner: RedisProcess,
}

impl TlsRedis {
    /// Starts a TLS-only server with `certs`' server certificate, and waits until it answers
    /// PING over TLS.
    pub async fn start(certs: &TestCerts, auth: ClientAuth) -> TlsRedis {
        Self::start_with_cert(certs, &certs.server_cert, auth).await
    }

    /// Like [`start`](Self::start) with another server certificate for `server.key` (e.g.
    /// `certs.expired_cert`); the readiness check then skips verification.
    pub async fn start_with_cert(certs: &TestCerts, cert: &Path, auth: ClientAuth) -> TlsRedis {
        assert!(
            super::redis::redis_available(),
            "redis-server not found on PATH: install it (apt-get install -y redis-server) or run ./scripts/test.sh"
        );
        let mut ping_tls = match auth {
            ClientAuth::No => certs.client_tls(),
            ClientAuth::Yes => certs.client_tls_mutual(),
        };
        ping_tls.insecure = cert != certs.server_cert;
        let connector = Arc::new(
            Connector::new(&ping_tls).unwrap_or_else(|e| panic!("the readiness check's TLS client: {e}")),
        );
        let check: ReadyCheck = Arc::new(move |port| {
            let connector = Arc::clone(&connector);
            Box::pin(async move { tls_ping(&connector, port).await })
        });
        let files = TlsFiles {
            cert: cert.to_path_buf(),
            key: certs.server_key.clone(),
            ca: certs.ca.clone(),
            auth_clients: auth == ClientAuth::Yes,
        };
        match RedisProcess::builder()
            .tls(files)
            .readiness(Readiness::Custom(check))
            .start()
            .await
        {
            Ok(inner) => TlsRedis { inner },
            Err(e) => panic!("TLS redis-server did not start: {e}"),
        }
    }

    /// The TLS port.
    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    /// `rediss://127.0.0.1:P`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port())
    }

    /// `rediss://localhost:P` (the certificate names both).
    pub fn url_localhost(&self) -> String {
        format!("rediss://localhost:{}", self.port())
    }

    /// Where the server's output goes (read it when a test fails).
    pub fn log_path(&self) -> PathBuf {
        self.inner.log_path()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.inner.is_running()
    }

    /// SIGKILLs the server and reaps it.
    pub fn kill(&mut self) {
        self.inner.kill();
    }

    /// Starts it again on the same port (killing it first if still running).
    pub async fn restart(&mut self) {
        if let Err(e) = self.inner.restart().await {
            panic!("TLS redis-server did not restart on port {}: {e}", self.port());
        }
    }
}

/// `PING` over TLS, expecting `+PONG`.
async fn tls_ping(connector: &Connector, port: u16) -> Result<(), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let mut io = connector
        .connect("127.0.0.1", tcp)
        .await
        .map_err(|e| e.to_string())?;
    io.write_all(b"PING\r\n")
        .await
        .map_err(|e| format!("writing PING: {e}"))?;
    let mut reply = [0u8; 7];
    io.read_exact(&mut reply)
        .await
        .map_err(|e| format!("reading the PING reply: {e}"))?;
    if &reply == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(format!(
            "unexpected PING reply {:?}",
            String::from_utf8_lossy(&reply)
        ))
    }
}
