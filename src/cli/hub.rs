//! `switchboard hub`: the node's flags, checked into a `NodeConfig` (a bad one is a usage error),
//! and the run that starts the node and waits for SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config;
use crate::hub::{BackplaneChoice, Node, NodeConfig};

use super::*;

#[derive(Debug, Args)]
pub struct HubArgs {
    /// Address to listen on. Loopback by default; use 0.0.0.0:PORT to accept remote clients.
    #[arg(long, default_value = "127.0.0.1:5001")]
    pub listen: SocketAddr,

    /// The Redis backplane (without --redis the node runs alone on the in-memory backplane).
    #[command(flatten)]
    pub redis: RedisArgs,

    /// Sharded pub/sub (Redis 7+, best on a Redis Cluster): connection, group and user
    /// channels use SSUBSCRIBE/SPUBLISH on the shard that owns their slot, so backplane traffic
    /// grows with shards instead of reaching every node. Does NOT interoperate with ASP.NET Core
    /// SignalR servers on the same backplane (they only speak classic pub/sub:
    /// dotnet/aspnetcore#54344): use it only when every node is a Switchboard node.
    #[arg(long, requires = "redis")]
    pub sharded_pubsub: bool,

    /// A human name for this node, shown by the chat page and the dashboard.
    #[arg(long, default_value = "node")]
    pub name: String,

    /// The .NET hub type full name used in channel names (must match the ASP.NET Core servers
    /// sharing the backplane: typeof(THub).FullName).
    #[arg(long, default_value = config::DEFAULT_HUB_NAME)]
    pub hub_name: String,

    /// Prefix of every Redis channel (ASP.NET Core's ChannelPrefix).
    #[arg(long, default_value = "")]
    pub channel_prefix: String,

    /// Path the hub is mapped at.
    #[arg(long, default_value = config::DEFAULT_PATH)]
    pub path: String,

    /// Maximum open TCP connections (HTTP and WebSocket); past it new connections are closed at
    /// once and counted.
    #[arg(long, default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Maximum size of one hub message in bytes.
    #[arg(long, default_value_t = config::DEFAULT_MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,

    /// Groups one connection may be in; a join past it fails with a HubException naming the
    /// limit (each first member of a group costs the node a SUBSCRIBE).
    #[arg(long, default_value_t = config::DEFAULT_MAX_GROUPS_PER_CONNECTION)]
    pub max_groups_per_connection: usize,

    /// Open connections one IP address may hold; 0 turns the cap off. Default: off when the node
    /// listens on loopback, 1000 otherwise.
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// Invocations per second one connection may make on average (token bucket); past it an
    /// invocation fails with a HubException and the connection stays open. 0 turns it off.
    #[arg(long, default_value_t = config::DEFAULT_MAX_INVOCATIONS_PER_SECOND, value_name = "N")]
    pub max_invocations_per_second: u32,

    /// Invocations one connection may make at once after a quiet spell (the bucket's size).
    #[arg(long, default_value_t = config::DEFAULT_INVOCATION_BURST, value_name = "N")]
    pub invocation_burst: u32,

    /// Longest user id accepted (SendToUser, a token's user, ?user=), in bytes; longer ones are
    /// refused with a HubException (or a 400 at connect) naming this limit.
    #[arg(long, default_value_t = config::DEFAULT_MAX_USER_ID_BYTES, value_name = "BYTES")]
    pub max_user_id_bytes: usize,

    /// Longest group name accepted, in bytes; longer ones are refused with a HubException.
    #[arg(long, default_value_t = config::DEFAULT_MAX_GROUP_NAME_BYTES, value_name = "BYTES")]
    pub max_group_name_bytes: usize,

    /// Write every delivery with its own `send`, instead of submitting a fan-out's writes
    /// together through io_uring (used where the kernel allows it; Docker's default seccomp
    /// profile does not, and then `send` is used anyway).
    #[arg(long)]
    pub no_io_uring: bool,

    /// Threads that serve client connections (default: one per CPU core). Each runs a
    /// single-threaded runtime; accepted connections are dealt to them in turn and stay on
    /// theirs. The first thread also runs the backplane and the monitor endpoints.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Frames queued per client before it is disconnected as too slow.
    #[arg(long, default_value_t = config::DEFAULT_OUTBOUND_QUEUE)]
    pub outbound_queue: usize,

    /// Server keep-alive ping interval in seconds.
    #[arg(long, default_value_t = config::DEFAULT_KEEP_ALIVE.as_secs())]
    pub keep_alive_secs: u64,

    /// Seconds of client silence before it is dropped, counted from its handshake (clients ping
    /// every 15 s).
    #[arg(long, default_value_t = config::DEFAULT_CLIENT_TIMEOUT.as_secs())]
    pub client_timeout_secs: u64,

    /// The base URL announced to dashboards (default: http://{listen address}, or https:// with
    /// --tls-cert).
    #[arg(long)]
    pub public_url: Option<String>,

    /// A browser origin (scheme://host:port) allowed to negotiate from another origin, e.g. a
    /// front-end dev server. Repeat for several; `*` allows any. Default: same origin only.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,

    /// Serve HTTPS and WSS with this certificate chain (PEM; needs --tls-key). Clients then use
    /// https://HOST:PORT/chat; dashboards that do not trust its issuer need --node-ca.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The certificate's private key (PEM, unencrypted PKCS#8, PKCS#1 or SEC1; needs --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Bearer token the monitor endpoints (/switchboard/*, /metrics) require: dashboards and
    /// Prometheus send `Authorization: Bearer TOKEN`. Without it they answer loopback clients
    /// only, so set it when the node listens beyond loopback and is watched from elsewhere.
    /// Prefer the SWITCHBOARD_MONITOR_TOKEN variable (the command line shows in `ps`).
    #[arg(long, env = MONITOR_TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub monitor_token: Option<TokenArg>,

    /// Require every client to authenticate: `jwt` (a bearer token on negotiate and on the
    /// WebSocket request, or `access_token=` on the latter), verified with exactly one of
    /// --jwt-secret-file / SWITCHBOARD_JWT_SECRET (HS256), --jwt-public-key (RS256/ES256) or
    /// --jwt-jwks. The user id comes from the token; ?user= is ignored.
    #[arg(long, value_enum, value_name = "MODE")]
    pub auth: Option<AuthMode>,

    /// HS256: a file holding the shared secret (a trailing line break is ignored). Or set
    /// SWITCHBOARD_JWT_SECRET.
    #[arg(long, value_name = "FILE")]
    pub jwt_secret_file: Option<std::path::PathBuf>,

    /// RS256 or ES256 (P-256), following the key type: the issuer's PEM public key.
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key: Option<std::path::PathBuf>,

    /// A JWKS document (RSA, EC P-256 or oct keys, each with a kid); the token's kid picks the
    /// key. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub jwt_jwks: Option<std::path::PathBuf>,

    /// The `iss` every token must carry.
    #[arg(long, value_name = "ISSUER")]
    pub jwt_issuer: Option<String>,

    /// A value the token's `aud` must carry.
    #[arg(long, value_name = "AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew allowed on exp and nbf, in seconds (tests shorten it).
    #[arg(long, hide = true, default_value_t = config::DEFAULT_JWT_LEEWAY.as_secs())]
    pub jwt_leeway_secs: u64,

    /// The token claim that holds the user id.
    #[arg(long, value_name = "CLAIM", default_value = config::DEFAULT_USER_CLAIM)]
    pub user_claim: String,

    /// The role (a `role`/`roles` claim) that may AddToGroup/RemoveFromGroup connections other
    /// than the caller's own.
    #[arg(long, value_name = "ROLE", default_value = config::DEFAULT_ADMIN_ROLE)]
    pub admin_role: String,

    /// Keep connections open after their token expires (by default they get a Close naming the
    /// expiry, as ASP.NET Core's CloseOnAuthenticationExpiration does).
    #[arg(long)]
    pub no_close_on_token_expiry: bool,

    /// Without --auth, take ?user= as the user id even though the node listens beyond loopback
    /// (anyone may then claim any user id). Loopback listeners always do.
    #[arg(long)]
    pub trust_user_param: bool,
}

/// `--auth` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// JWT bearer tokens.
    Jwt,
}

impl HubArgs {
    /// The `--auth jwt` verifier with its keys loaded, or `None` without `--auth`. An error is a
    /// usage error (exit 3) and never repeats the secret.
    pub fn auth_verifier(&self) -> Result<Option<std::sync::Arc<crate::hub::auth::Verifier>>, String> {
        use crate::hub::auth::{JwtSecret, JwtSettings, KeySource, Verifier};
        let env_secret = std::env::var_os(config::JWT_SECRET_ENV).filter(|v| !v.is_empty());
        if self.auth.is_none() {
            if self.jwt_secret_file.is_some() || self.jwt_public_key.is_some() || self.jwt_jwks.is_some() {
                return Err("--jwt-secret-file, --jwt-public-key and --jwt-jwks need --auth jwt".into());
            }
            return Ok(None);
        }
        let mut sources = Vec::new();
        if let Some(path) = &self.jwt_secret_file {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("--jwt-secret-file: reading {}: {e}", path.display()))?;
            let secret = JwtSecret::new(&bytes)
                .map_err(|_| format!("--jwt-secret-file: {} is empty", path.display()))?;
            sources.push(KeySource::Secret(secret));
        }
        if let Some(secret) = &env_secret {
            let secret = JwtSecret::new(secret.as_encoded_bytes())
                .map_err(|e| format!("{}: {e}", config::JWT_SECRET_ENV))?;
            sources.push(KeySource::Secret(secret));
        }
        if let Some(path) = &self.jwt_public_key {
            sources.push(KeySource::PublicKeyFile(path.clone()));
        }
        if let Some(path) = &self.jwt_jwks {
            sources.push(KeySource::JwksFile(path.clone()));
        }
        let key = match sources.len() {
            1 => sources.remove(0),
            0 => {
                return Err(format!(
                    "--auth jwt needs a key: one of --jwt-secret-file FILE, {} (HS256), \
                     --jwt-public-key FILE (RS256/ES256) or --jwt-jwks FILE",
                    config::JWT_SECRET_ENV
                ));
            }
            n => {
                return Err(format!(
                    "--auth jwt takes exactly one key source, {n} were given (--jwt-secret-file, {}, \
                     --jwt-public-key, --jwt-jwks)",
                    config::JWT_SECRET_ENV
                ));
            }
        };
        let mut settings = JwtSettings::new(key);
        settings.issuer = self.jwt_issuer.clone().filter(|s| !s.is_empty());
        settings.audience = self.jwt_audience.clone().filter(|s| !s.is_empty());
        settings.leeway = Duration::from_secs(self.jwt_leeway_secs);
        settings.user_claim = self.user_claim.clone();
        settings.admin_role = self.admin_role.clone();
        settings.close_on_expiry = !self.no_close_on_token_expiry;
        Verifier::new(settings)
            .map(|v| Some(std::sync::Arc::new(v)))
            .map_err(|e| format!("--auth jwt: {e}"))
    }

    /// `--threads`, or one per CPU core.
    pub(super) fn threads(&self) -> usize {
        match self.threads {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    pub(super) fn node_config(&self) -> anyhow::Result<NodeConfig> {
        let mut config = NodeConfig::new(self.name.clone());
        config.listen = self.listen;
        config.hub_name = self.hub_name.clone();
        config.channel_prefix = self.channel_prefix.clone();
        config.path = self.path.clone();
        config.max_connections = self.max_connections;
        config.max_message_size = self.max_message_size;
        config.max_groups_per_connection = self.max_groups_per_connection;
        config.max_connections_per_ip = self.max_connections_per_ip;
        config.limits = crate::hub::limits::ClientLimits {
            max_user_id_bytes: self.max_user_id_bytes,
            max_group_name_bytes: self.max_group_name_bytes,
            invocations_per_second: self.max_invocations_per_second,
            invocation_burst: self.invocation_burst,
        };
        config.io_uring = !self.no_io_uring;
        config.threads = self.threads();
        config.outbound_queue = self.outbound_queue;
        config.keep_alive = Duration::from_secs(self.keep_alive_secs.max(1));
        config.client_timeout = Duration::from_secs(self.client_timeout_secs.max(1));
        config.public_url = self.public_url.clone();
        config.cors_origins = self.cors_origins.clone();
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(crate::hub::ServerTls {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        config.monitor_token = monitor_token(self.monitor_token.as_ref())?;
        config.trust_user_param = self.trust_user_param;
        Ok(config)
    }
}

pub(super) async fn run_hub(args: HubArgs) -> anyhow::Result<()> {
    let backplane = match usage_of(args.redis.spec())? {
        Some(spec) => {
            tracing::info!(redis = %spec.redacted(), how = %spec.describe(), sharded = args.sharded_pubsub, "redis backplane");
            if args.sharded_pubsub {
                BackplaneChoice::ShardedRedis(spec)
            } else {
                BackplaneChoice::Redis(spec)
            }
        }
        None => BackplaneChoice::Alone,
    };
    let mut config = usage_of(args.node_config())?;
    // A bad key setup is a usage error (exit 3), with one line that names the flag.
    config.auth = match args.auth_verifier() {
        Ok(verifier) => verifier,
        Err(e) => {
            eprintln!("switchboard hub: {e}");
            std::process::exit(i32::from(EXIT_USAGE));
        }
    };
    let guarded = config.monitor_token.is_some();
    let node = match Node::start(config, backplane).await {
        Ok(node) => node,
        // Nothing to retry: the command line names what does not load.
        Err(
            e @ (crate::hub::NodeError::Tls(_)
            | crate::hub::NodeError::Path(_)
            | crate::hub::NodeError::RedisUrl { .. }),
        ) => return Err(usage(anyhow::Error::new(e).context("starting the hub node"))),
        Err(e) => return Err(anyhow::Error::new(e).context("starting the hub node")),
    };
    println!(
        "switchboard hub '{}' ({}) listening: hub {} · chat page {}/ · stats {}/switchboard/stats · metrics {}/metrics",
        node.node_name(),
        node.server_name(),
        node.hub_url(),
        node.base_url(),
        node.base_url(),
        node.base_url()
    );
    if !guarded && !args.listen.ip().to_canonical().is_loopback() {
        println!(
            "note: no --monitor-token: the monitor endpoints (/switchboard/*, /metrics) answer loopback clients only"
        );
    }
    #[cfg(unix)]
    if args.jwt_jwks.is_some() {
        let node = node.clone();
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler (re-reading --jwt-jwks)")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match node.reload_auth_keys() {
                    Ok(keys) => tracing::info!(keys = keys.unwrap_or(0), "SIGHUP: the JWKS was re-read"),
                    Err(e) => {
                        tracing::warn!(error = %e, "SIGHUP: the JWKS could not be re-read; the keys in use stay")
                    }
                }
            }
        });
    }
    crate::signals::wait_for_signal()
        .await
        .context("waiting for SIGINT/SIGTERM")?;
    node.shutdown().await;
    Ok(())
}
