//! The command line and the composition root: parses arguments, picks the backplane, starts
//! nodes, and waits for SIGINT/SIGTERM to shut them down in order.
//!
//! One exit-code convention for every subcommand (`hub`, `dashboard`, `demo`, `tap`, `check`,
//! `load` and `agent`), written here once and shown by `--help` ([`EXIT_CODES`]). It is the one
//! monitoring plugins use (OK, WARNING, CRITICAL, UNKNOWN), so `check` drops into Nagios, Icinga
//! or a Kubernetes probe as it is:
//! - 0: ok (a node or window stopped as asked; a check healthy, or with warnings only unless
//!   `--fail-on warning`; a load run that measured everything it was asked to);
//! - 1: warnings, when asked to fail on them (`check --fail-on warning`);
//! - 2: critical: a critical finding, a failed measurement (`load`: a client that could not
//!   connect, a path with no sample; `tap`: stopped before `--count`, Redis never reached), a
//!   failure at run time (a port already in use);
//! - 3: bad usage or input: a bad flag (clap's usage errors included), a bad URL, an unreadable
//!   file, a certificate or key that does not load. Nothing was tried.
//!
//! A usage error is carried as a [`UsageError`] so that `main` can tell it from a failure
//! ([`exit_code_of`]); subcommands that exit by themselves (`tap`, `check`) use the same numbers.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::hub::{BackplaneChoice, Node, NodeConfig};
use crate::monitor_token::MonitorToken;
use crate::redis_conn::{ClusterMode, RedisOptions, RedisSpec};

/// The environment variable read for `--monitor-token` (safer than the command line, which other
/// users of the machine can see in `ps`).
pub const MONITOR_TOKEN_ENV: &str = "SWITCHBOARD_MONITOR_TOKEN";

/// `--monitor-token` as given, checked when used (`MonitorToken::new`) rather than by clap: clap's
/// error for an invalid value repeats the value, and this one is a secret. `Debug` prints `***`.
#[derive(Clone, Default)]
pub struct TokenArg(String);

impl std::fmt::Debug for TokenArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenArg(***)")
    }
}

impl std::str::FromStr for TokenArg {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(TokenArg(text.to_string()))
    }
}

/// The checked token of `--monitor-token` (an empty one counts as none).
fn monitor_token(arg: Option<&TokenArg>) -> anyhow::Result<Option<MonitorToken>> {
    match arg.filter(|t| !t.0.is_empty()) {
        None => Ok(None),
        Some(t) => MonitorToken::new(&t.0)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--monitor-token (or {MONITOR_TOKEN_ENV}): {e}")),
    }
}

/// The environment variable read for `--node-token`.
pub const NODE_TOKEN_ENV: &str = "SWITCHBOARD_NODE_TOKEN";

/// The token the tools that connect to nodes present (dashboard probes, `check`, `load`): one
/// static token, or HS256 tokens minted per identity from a secret file. Never saved, never
/// logged.
#[derive(Debug, Clone, Default, Args)]
pub struct NodeTokenArgs {
    /// Bearer token sent to nodes (hubs started with --auth jwt) on negotiate and the WebSocket
    /// upgrade. Never saved; prefer the SWITCHBOARD_NODE_TOKEN variable (the command line shows
    /// in `ps`).
    #[arg(long, env = NODE_TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub node_token: Option<TokenArg>,
    /// Mint a short-lived HS256 token per client identity (`sub` = its user id) from the secret
    /// in FILE (the hubs' --jwt-secret-file; one trailing line break is ignored).
    #[arg(long, value_name = "FILE", conflicts_with = "node_token")]
    pub node_jwt_secret_file: Option<std::path::PathBuf>,
    /// The `iss` of minted tokens (the hubs' --jwt-issuer).
    #[arg(long, value_name = "ISSUER", requires = "node_jwt_secret_file")]
    pub node_jwt_issuer: Option<String>,
    /// The `aud` of minted tokens (the hubs' --jwt-audience).
    #[arg(long, value_name = "AUDIENCE", requires = "node_jwt_secret_file")]
    pub node_jwt_audience: Option<String>,
}

impl NodeTokenArgs {
    /// The credentials these flags ask for; errors name the flag, never the token.
    pub fn credentials(&self) -> anyhow::Result<crate::node_token::NodeCredentials> {
        use crate::node_token::NodeCredentials;
        if let Some(path) = &self.node_jwt_secret_file {
            return NodeCredentials::mint_from_secret_file(path)
                .map(|c| {
                    c.with_issuer(self.node_jwt_issuer.clone().filter(|i| !i.is_empty()))
                        .with_audience(self.node_jwt_audience.clone().filter(|a| !a.is_empty()))
                })
                .map_err(|e| anyhow::anyhow!("--node-jwt-secret-file: {e}"));
        }
        match self.node_token.as_ref().filter(|t| !t.0.is_empty()) {
            None => Ok(NodeCredentials::None),
            Some(t) => NodeCredentials::from_token(&t.0)
                .map_err(|e| anyhow::anyhow!("--node-token (or {NODE_TOKEN_ENV}): {e}")),
        }
    }
}

/// Exit code: ok.
pub const EXIT_OK: u8 = 0;
/// Exit code: a finding, a failed measurement or check, a failure at run time.
pub const EXIT_WARNING: u8 = 1;
/// Exit code: a critical finding, a failed measurement, a failure at run time.
pub const EXIT_FINDINGS: u8 = 2;
/// Exit code: bad usage or input (clap's usage errors are mapped to it too).
pub const EXIT_USAGE: u8 = 3;

/// The convention, as `--help` shows it.
pub const EXIT_CODES: &str = "Exit codes (every subcommand: hub, dashboard, demo, tap, check, load, agent):
  0  ok: stopped as asked; check healthy (or warnings only); load measured all it was asked to
  1  warning: check found warnings and was run with --fail-on warning
  2  critical: a critical finding (check, agent), a failed measurement (load: a client did not
     connect, a path has no sample; tap: --count not reached), a failure at run time (port in use)
  3  bad usage or input: a bad flag, a bad URL, an unreadable file, a certificate that does not load

Examples:
  switchboard check --redis redis://127.0.0.1:6379 || page-someone   # 2 when a node it saw is gone
  switchboard check --redis redis://127.0.0.1:6379 --fail-on warning
  switchboard load --node http://127.0.0.1:5000/chat --node http://127.0.0.1:5001/chat --json";

/// A command line that cannot run (bad flag value, URL, file, certificate): `main` exits
/// [`EXIT_USAGE`] with its message. Holds the message only (never a secret: the errors it wraps
/// name flags, not values).
#[derive(Debug)]
pub struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Marks an error as bad usage or input (exit 3).
pub fn usage(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(UsageError(format!("{error:#}")))
}

/// Marks the error of `result`, if any, as bad usage or input.
fn usage_of<T>(result: anyhow::Result<T>) -> anyhow::Result<T> {
    result.map_err(usage)
}

/// The process's exit code for an error `run` returned: 3 for bad usage or input, else 2.
pub fn exit_code_of(error: &anyhow::Error) -> u8 {
    if error.is::<UsageError>() {
        EXIT_USAGE
    } else {
        EXIT_FINDINGS
    }
}

/// Switchboard: SignalR-compatible chat hubs scaled out through Redis, and the tools to watch them.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
// Parsed once at start: the size of the hub's flags does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Open the dashboard (the default): live backplane traffic, nodes, test messages.
    #[cfg(feature = "gui")]
    Dashboard(DashboardArgs),
    /// Run a chat hub node (ASP.NET Core SignalR protocol, Redis backplane).
    Hub(HubArgs),
    /// Two hub nodes, a backplane, simulated chat clients and the dashboard, in one process.
    #[cfg(feature = "gui")]
    Demo(DemoArgs),
    /// Load-test hub nodes: N clients, broadcasts at a target rate, latency/loss/order report.
    Load(LoadArgs),
    /// A canary for cron, CI and probes: a test message through every node, then the health
    /// rules; remembers the nodes it saw. Exit 0 healthy (or warnings only), 2 a critical
    /// finding (a node it saw before is gone), 3 bad usage.
    Check(CheckArgs),
    /// The live backplane decoder in a terminal: a table, or JSON Lines with --json; writes a
    /// capture the dashboard opens.
    Tap(TapArgs),
    /// The monitor without a window, for weeks: a canary through every node, the health rules,
    /// the tap and the census, served as Prometheus metrics (/metrics) and JSON (/findings).
    Agent(AgentArgs),
}

/// What the dashboard connects to at start (added to what it remembers from the last run).
#[cfg(feature = "gui")]
#[derive(Debug, Args, Default)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub redis: RedisArgs,

    /// The backplane's channel prefix (ASP.NET Core's ChannelPrefix).
    #[arg(long)]
    pub channel_prefix: Option<String>,

    /// A hub node to watch: its hub URL (http://host:port/chat, or https://; see --node-ca),
    /// optionally followed by a comma and its stats URL (http://host:port/switchboard/stats;
    /// derived for Switchboard nodes when left out; write `none` for a node without one, such as
    /// an ASP.NET Core server). Repeatable.
    #[arg(long = "node", value_name = "HUB_URL[,STATS_URL]")]
    pub nodes: Vec<String>,

    /// Start with the settings of this workspace file (Redis URL, prefix, node list).
    #[arg(long, value_name = "FILE")]
    pub workspace: Option<std::path::PathBuf>,

    /// Start in presenter mode (large type, topology view).
    #[arg(long)]
    pub presenter: bool,

    /// Forget the settings remembered from earlier runs.
    #[arg(long)]
    pub fresh: bool,

    /// Which tab to show first: traffic, rates, nodes, send, topology, redis, directory, health.
    #[arg(long, value_parser = ["traffic", "rates", "nodes", "send", "topology", "redis", "directory", "health"])]
    pub tab: Option<String>,

    /// Quit after this many seconds (for smoke tests and screenshots; not in --help).
    #[arg(long, value_name = "SECS", hide = true)]
    pub exit_after: Option<f64>,

    /// Open a JSON Lines capture (File > Export) and browse it offline.
    #[arg(long, value_name = "FILE")]
    pub capture: Option<std::path::PathBuf>,

    /// A CA certificate (PEM) to trust for https:// nodes, besides the system's roots: for nodes
    /// started with `switchboard hub --tls-cert` by a private CA.
    #[arg(long, value_name = "FILE")]
    pub node_ca: Option<std::path::PathBuf>,
    /// Bearer token sent to the watched nodes' monitor endpoints (the nodes' --monitor-token):
    /// to nodes named with --node, the Add node field or a workspace, or matching --trust-nodes,
    /// never to a node known only from its heartbeat. Used for this run only, never saved;
    /// prefer the SWITCHBOARD_MONITOR_TOKEN variable.
    #[arg(long, env = MONITOR_TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub monitor_token: Option<TokenArg>,

    #[command(flatten)]
    pub node_token: NodeTokenArgs,

    /// Trust discovered nodes whose hub URL matches GLOB (`*` any run of characters, `?` one,
    /// whole URL, case-insensitive; e.g. 'http://10.0.0.*:5000/chat'): they get the monitor and
    /// node tokens. Repeatable; remembered with the settings and saved in workspaces.
    #[arg(long = "trust-nodes", value_name = "GLOB")]
    pub trust_nodes: Vec<String>,
}

/// The demo's knobs; everything else is set from the UI while it runs.
#[cfg(feature = "gui")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Hub nodes to start (1 to 8).
    #[arg(long, default_value_t = 2, value_parser = parse_demo_nodes)]
    pub nodes: usize,

    /// Backplane: auto (a private redis-server when one is on PATH, else in memory), redis, memory.
    #[arg(long, default_value = "auto", value_parser = ["auto", "redis", "memory"])]
    pub backplane: String,

    /// Run the demo's nodes on your own Redis (a cluster, a sentinel set, TLS, ACL) instead of a
    /// private redis-server: --redis URL and the same --redis-* flags as `hub` and `dashboard`.
    /// The demo's channels then start with "switchboard-demo:"; it never stops that Redis.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// Simulated chat clients per node.
    #[arg(long, default_value_t = 5)]
    pub clients: u32,

    /// Chat messages per second from all simulated clients together.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,

    /// Start in presenter mode (large type, topology view).
    #[arg(long)]
    pub presenter: bool,

    /// Quit after this many seconds (for smoke tests and screenshots; not in --help).
    #[arg(long, value_name = "SECS", hide = true)]
    pub exit_after: Option<f64>,

    /// Which tab to show first: traffic, rates, nodes, send, topology, redis, directory, health.
    #[arg(long, value_parser = ["traffic", "rates", "nodes", "send", "topology", "redis", "directory", "health"])]
    pub tab: Option<String>,
}

/// Most demo nodes: each is a real node with its simulated clients, on a 2-core laptop.
#[cfg(feature = "gui")]
const MAX_DEMO_NODES: usize = 8;

#[cfg(feature = "gui")]
fn parse_demo_nodes(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_DEMO_NODES).contains(&n) => Ok(n),
        _ => Err(format!("the demo runs 1 to {MAX_DEMO_NODES} nodes")),
    }
}

/// Refuses to go on without a display, in one sentence (before any window or demo starts).
#[cfg(feature = "gui")]
fn require_display() -> anyhow::Result<()> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if cfg!(all(unix, not(target_os = "macos"))) && !set("DISPLAY") && !set("WAYLAND_DISPLAY") {
        anyhow::bail!(
            "there is no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set); run `switchboard hub` for a node without a window"
        );
    }
    Ok(())
}

/// How to reach Redis: the same flags on `hub`, `dashboard`, `demo` and the headless commands.
#[derive(Debug, Args, Default, Clone)]
pub struct RedisArgs {
    /// Redis URL: redis://host:6379/0, rediss://host:6380 (TLS), redis://user:password@host (ACL),
    /// redis://:password@host, several cluster seeds redis://h1:7000,h2:7001, or sentinels
    /// redis+sentinel://s1:26379,s2:26379/mymaster[/db] (rediss+sentinel:// for TLS). A password in
    /// it is used for this run and never saved; prefer passing it in REDIS_URL.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    pub redis: Option<String>,

    /// A CA certificate file (PEM) to trust for rediss://, besides the system's roots.
    #[arg(long, value_name = "FILE")]
    pub redis_ca: Option<std::path::PathBuf>,

    /// A client certificate (PEM) for mutual TLS; needs --redis-key.
    #[arg(long, value_name = "FILE", requires = "redis_key")]
    pub redis_cert: Option<std::path::PathBuf>,

    /// The client certificate's private key (PEM, unencrypted).
    #[arg(long, value_name = "FILE", requires = "redis_cert")]
    pub redis_key: Option<std::path::PathBuf>,

    /// The TLS server name to send and verify, when it is not the host in the URL.
    #[arg(long, value_name = "NAME")]
    pub redis_sni: Option<String>,

    /// Do not verify the Redis server's certificate (test setups only; shown as insecure).
    #[arg(long)]
    pub redis_tls_insecure: bool,

    /// The sentinels' own ACL user, when they need one (redis+sentinel:// only).
    #[arg(long, value_name = "USER")]
    pub redis_sentinel_user: Option<String>,

    /// The sentinels' own password, when they need one (redis+sentinel:// only).
    #[arg(
        long,
        env = "REDIS_SENTINEL_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub redis_sentinel_password: Option<String>,

    /// Require a Redis Cluster (detected by itself otherwise): a seed that is not in cluster mode
    /// is an error.
    #[arg(long)]
    pub cluster: bool,
}

impl RedisArgs {
    /// The options the flags give, for `RedisSpec::parse`.
    pub fn options(&self) -> RedisOptions {
        RedisOptions {
            tls: crate::tls::ClientTls {
                ca: self.redis_ca.clone(),
                cert: self.redis_cert.clone(),
                key: self.redis_key.clone(),
                sni: self.redis_sni.clone(),
                insecure: self.redis_tls_insecure,
            },
            sentinel_username: self.redis_sentinel_user.clone(),
            sentinel_password: self.redis_sentinel_password.clone().filter(|p| !p.is_empty()),
            cluster: if self.cluster {
                ClusterMode::Required
            } else {
                ClusterMode::Detect
            },
        }
    }

    /// The spec, when --redis is given; a malformed URL or an unreadable TLS file is refused
    /// here, at start-up, in plain words and without the password.
    pub fn spec(&self) -> anyhow::Result<Option<RedisSpec>> {
        let Some(url) = self.redis.as_deref().filter(|u| !u.trim().is_empty()) else {
            let options = self.options();
            if options != RedisOptions::default() {
                anyhow::bail!("--redis-* options were given without --redis URL");
            }
            return Ok(None);
        };
        let spec = RedisSpec::parse(url, &self.options()).map_err(|e| anyhow::anyhow!("--redis: {e}"))?;
        // Reads the certificate files now: a bad path fails at start, not at the first connect.
        if let Some(tls) = &spec.tls {
            tls.config().map_err(|e| anyhow::anyhow!("--redis: {e}"))?;
        }
        Ok(Some(spec))
    }
}

/// The client TLS for https:// nodes with `--node-ca FILE` (read and checked now, so a bad file
/// fails the start in words); `None` without it (the system's roots).
fn node_tls(node_ca: Option<&std::path::Path>) -> anyhow::Result<Option<crate::client::NodeTls>> {
    let Some(ca) = node_ca else {
        return Ok(None);
    };
    let options = crate::tls::ClientTls {
        ca: Some(ca.to_path_buf()),
        ..crate::tls::ClientTls::default()
    };
    crate::client::NodeTls::new(&options)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--node-ca: {e}"))
}

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

    fn node_config(&self) -> anyhow::Result<NodeConfig> {
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

/// Runs the parsed command line to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Hub(args)) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(run_hub(args))
        }
        Some(Command::Load(args)) => run_load(args),
        Some(Command::Check(args)) => run_check(args),
        Some(Command::Tap(args)) => std::process::exit(run_tap(args)),
        Some(Command::Agent(args)) => std::process::exit(run_agent(args)),
        #[cfg(feature = "gui")]
        Some(Command::Dashboard(args)) => run_dashboard(args),
        #[cfg(feature = "gui")]
        Some(Command::Demo(args)) => run_demo(args),
        #[cfg(feature = "gui")]
        None => run_dashboard(DashboardArgs::default_from_env()),
        #[cfg(not(feature = "gui"))]
        None => {
            use clap::CommandFactory;
            Cli::command().print_help().context("printing help")?;
            println!(
                "\n\nThis build has no dashboard (built without the `gui` feature): run `switchboard hub`."
            );
            Ok(())
        }
    }
}

#[cfg(feature = "gui")]
impl DashboardArgs {
    /// The defaults of a bare `switchboard`, where clap parsed no dashboard flags: REDIS_URL still
    /// counts, as it does for `switchboard dashboard`.
    fn default_from_env() -> Self {
        let monitor_token = std::env::var(MONITOR_TOKEN_ENV).ok().map(TokenArg);
        Self {
            redis: RedisArgs {
                redis: std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()),
                redis_sentinel_password: std::env::var("REDIS_SENTINEL_PASSWORD")
                    .ok()
                    .filter(|u| !u.is_empty()),
                ..RedisArgs::default()
            },
            monitor_token,
            ..Self::default()
        }
    }
}

async fn run_hub(args: HubArgs) -> anyhow::Result<()> {
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

// ---- `switchboard load` (the load generator; see `crate::load`) ----

/// `switchboard load`: clients spread over the nodes, senders at a target rate, a report at the end.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// A hub URL (http://host:port/chat, or https://). Repeat for several nodes; clients are
    /// spread round-robin.
    #[arg(long = "node", value_name = "URL", required = true)]
    pub nodes: Vec<String>,

    /// Clients to connect (one process holds at most as many as it may open files).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,

    /// Clients that broadcast (the first ones, spread over the nodes); capped at --clients.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,

    /// Target deliveries per second over all clients (a broadcast is one delivery per client);
    /// 0 keeps the clients idle.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,

    /// Seconds of sending (idle clients stay connected this long).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Hub protocol of the clients.
    #[arg(long, default_value = "json", value_parser = ["json", "messagepack"])]
    pub protocol: String,

    /// Open the WebSocket directly, without negotiate (skipNegotiation).
    #[arg(long)]
    pub skip_negotiation: bool,

    /// Hub method the senders invoke with (user, message).
    #[arg(long, default_value = "SendMessage")]
    pub send_method: String,

    /// Client method the hub broadcasts with (user, message).
    #[arg(long, default_value = "ReceiveMessage")]
    pub receive_method: String,

    /// Length of each message text in bytes (a timing stamp plus padding).
    #[arg(long, default_value_t = 64)]
    pub message_size: usize,

    /// Handshakes in flight at once.
    #[arg(long, default_value_t = crate::load::DEFAULT_CONNECT_CONCURRENCY)]
    pub connect_concurrency: usize,

    /// Seconds to wait for late deliveries after sending stops.
    #[arg(long, default_value_t = crate::load::DEFAULT_DRAIN.as_secs_f64())]
    pub drain: f64,

    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,

    /// A CA certificate (PEM) to trust for https:// nodes, besides the system's roots.
    #[arg(long, value_name = "FILE")]
    pub node_ca: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub node_token: NodeTokenArgs,
}

/// Exits 3 for options that cannot run, 2 when the run could not measure what it was asked to
/// (the report is printed first, with `–`/`null` for the missing figures).
fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let json = args.json;
    let options = usage_of(load_options(args))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = match runtime.block_on(crate::load::run(options)) {
        Ok(report) => report,
        Err(e) if e.is_usage() => return Err(usage(e)),
        Err(e) => return Err(e.into()),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("writing the report as JSON")?
        );
    } else {
        print!("{}", report.text());
    }
    // Client tasks cut at the stop timeout must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if !report.shortfalls.is_empty() {
        anyhow::bail!(
            "load could not measure what it was asked to: {}",
            report.shortfalls.join("; ")
        );
    }
    Ok(())
}

fn load_options(args: LoadArgs) -> anyhow::Result<crate::load::LoadOptions> {
    let seconds = |value: f64, name: &str| {
        if value.is_finite() && value >= 0.0 && value <= crate::load::MAX_DURATION.as_secs_f64() {
            Ok(Duration::from_secs_f64(value))
        } else {
            Err(anyhow::anyhow!(
                "--{name} must be a number of seconds between 0 and {}",
                crate::load::MAX_DURATION.as_secs()
            ))
        }
    };
    let mut options = crate::load::LoadOptions::new(args.nodes);
    options.clients = args.clients;
    options.senders = args.senders;
    options.rate = args.rate;
    options.duration = seconds(args.duration, "duration")?;
    options.drain = seconds(args.drain, "drain")?;
    options.protocol = match args.protocol.as_str() {
        "messagepack" => crate::protocol::Protocol::MessagePack,
        _ => crate::protocol::Protocol::Json,
    };
    options.negotiate = !args.skip_negotiation;
    options.send_method = args.send_method;
    options.receive_method = args.receive_method;
    options.message_size = args.message_size;
    options.connect_concurrency = args.connect_concurrency;
    options.progress = !args.quiet;
    options.node_tls = node_tls(args.node_ca.as_deref())?;
    options.node_credentials = args.node_token.credentials()?;
    Ok(options)
}

// ---- end of `switchboard load` ----

// ---- `switchboard tap` (the headless decoder; see `crate::tapcli`) ----

/// `switchboard tap`: the live decoder in a terminal, with the dashboard's connection options and
/// filter language.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 stopped as asked (--count reached, --duration over, Ctrl-C); \
2 --duration ran out before --count, Redis was never reached, or stdout or the capture could not \
be written; 3 bad input (URL, TLS file, flag, capture path)."
)]
pub struct TapArgs {
    /// The Redis backplane to watch (required: --redis URL or REDIS_URL).
    #[command(flatten)]
    pub redis: RedisArgs,

    /// The backplane's channel prefix (ASP.NET Core's ChannelPrefix).
    #[arg(long, default_value = "")]
    pub channel_prefix: String,

    /// Print JSON Lines on stdout (one decoded message per line, the capture file schema) instead
    /// of the table. Connection states and the summary go to stderr.
    #[arg(long)]
    pub json: bool,

    /// Stop after this many messages shown (gap lines do not count).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Stop after this many seconds (also while Redis cannot be reached).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Show only messages containing TEXT (case-insensitive: summary, method, arguments,
    /// target, channel, error), as the Traffic view's filter box.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,

    /// Show only one kind: all, group, user, connection, groups, ack, return, signalr2,
    /// heartbeat, other.
    #[arg(long, value_name = "KIND", value_parser = parse_entry_kind)]
    pub kind: Option<crate::monitor::model::EntryKind>,

    /// Show only this hub (exact name, e.g. Switchboard.ChatHub).
    #[arg(long, value_name = "HUB")]
    pub hub: Option<String>,

    /// Show only channels containing this text, or with `*` matching this glob (whole name).
    #[arg(long, value_name = "GLOB")]
    pub channel: Option<String>,

    /// Write what is shown (and the gaps) to this JSON Lines capture, which the dashboard opens
    /// (`switchboard dashboard --capture FILE`, File > Open capture). Default:
    /// switchboard-tap-YYYYMMDD-HHMMSS.jsonl (UTC) in the current directory.
    #[arg(long, value_name = "FILE", conflicts_with = "no_capture")]
    pub capture: Option<std::path::PathBuf>,

    /// Write no capture file.
    #[arg(long)]
    pub no_capture: bool,
}

fn parse_entry_kind(text: &str) -> Result<crate::monitor::model::EntryKind, String> {
    crate::monitor::model::EntryKind::from_label(text).ok_or_else(|| {
        let names: Vec<&str> = crate::monitor::model::EntryKind::ALL
            .iter()
            .map(|k| k.label())
            .collect();
        format!("one of {}", names.join(", "))
    })
}

/// Checks the arguments (a bad one is one line on stderr and exit code 3), then runs the tap;
/// returns the process's exit code (see `crate::tapcli`).
fn run_tap(args: TapArgs) -> i32 {
    match tap_options(args) {
        Ok(options) => crate::tapcli::run(options),
        Err(e) => {
            eprintln!("switchboard tap: {e:#}");
            crate::tapcli::EXIT_BAD_INPUT
        }
    }
}

fn tap_options(args: TapArgs) -> anyhow::Result<crate::tapcli::TapOptions> {
    let Some(spec) = args.redis.spec()? else {
        anyhow::bail!("--redis URL (or REDIS_URL) is required: the Redis backplane to watch");
    };
    // Reads the TLS files and checks the URL's shape the way the tap will.
    crate::monitor::tap::connector_for(&spec).map_err(|e| anyhow::anyhow!("--redis: {e}"))?;
    let duration = match args.duration {
        None => None,
        Some(secs) if secs.is_finite() && secs > 0.0 && secs <= crate::tapcli::MAX_DURATION.as_secs_f64() => {
            Some(Duration::from_secs_f64(secs))
        }
        Some(_) => anyhow::bail!(
            "--duration must be a number of seconds above 0 and at most {}",
            crate::tapcli::MAX_DURATION.as_secs()
        ),
    };
    if args.count == Some(0) {
        anyhow::bail!("--count must be at least 1");
    }
    let capture = if args.no_capture {
        None
    } else {
        Some(
            args.capture
                .unwrap_or_else(|| crate::tapcli::default_capture_path(crate::monitor::now_ms())),
        )
    };
    Ok(crate::tapcli::TapOptions {
        spec,
        prefix: args.channel_prefix,
        filter: crate::monitor::model::traffic::Filter {
            text: args.filter.unwrap_or_default(),
            kind: args.kind,
            hub: args.hub.filter(|h| !h.is_empty()),
            channel: args.channel.unwrap_or_default(),
        },
        json: args.json,
        count: args.count,
        duration,
        capture,
        width: crate::tapcli::output_width(),
    })
}

// ---- end of `switchboard tap` ----

// ---- `switchboard check` (the canary; see `crate::check`) ----

/// `switchboard check`: a test message through every node, then the health rules.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 healthy, or warnings and info only; 1 warnings (with --fail-on \
warning); 2 a critical finding; 3 bad usage or input (nothing was checked).\n\n\
Known nodes: every run records the nodes its clients reached (name, hub URL, first and last seen) \
in a state file per Redis and prefix ($XDG_STATE_HOME/switchboard/, else \
~/.local/state/switchboard/, named from a hash of the redacted Redis address and the prefix). A \
node seen before is tried again at its hub URL; one that neither answers nor sends a heartbeat is \
critical (node-gone) until it is back or forgotten: \
`switchboard check --redis URL --forget NODE` forgets it (by name or hub URL), prints what it \
forgot and exits without checking (3 when nothing is known by that name)."
)]
pub struct CheckArgs {
    /// The backplane's Redis (required: --redis URL or REDIS_URL), with the same --redis-* flags.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// The backplane's channel prefix (ASP.NET Core's ChannelPrefix).
    #[arg(long, default_value = "")]
    pub channel_prefix: String,

    /// A node to check: its hub URL (http://host:port/chat, or https://), optionally followed by a
    /// comma and its stats URL, or `none` for a node without one (ASP.NET Core). Repeatable;
    /// without it the nodes announcing themselves on the heartbeat channel are checked.
    #[arg(long = "node", value_name = "HUB_URL[,STATS_URL]")]
    pub nodes: Vec<String>,

    /// Seconds the whole check may take (test messages, Redis queries, node stats).
    #[arg(long, default_value_t = crate::check::DEFAULT_TIMEOUT.as_secs_f64(), value_name = "SECS")]
    pub timeout: f64,

    /// Print the report as one JSON document instead of one line per finding.
    #[arg(long)]
    pub json: bool,

    /// Bearer token for the nodes' monitor endpoints (their --monitor-token). Sent only to nodes
    /// named with --node or matching --trust-nodes.
    #[arg(long, env = MONITOR_TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub monitor_token: Option<TokenArg>,

    #[command(flatten)]
    pub node_token: NodeTokenArgs,

    /// Trust discovered nodes whose hub URL matches GLOB (`*` any run, `?` one character, whole
    /// URL, case-insensitive): they get the tokens. Repeatable. Other discovered nodes are
    /// checked without tokens.
    #[arg(long = "trust-nodes", value_name = "GLOB")]
    pub trust_nodes: Vec<String>,

    /// A CA certificate (PEM) to trust for https:// nodes, besides the system's roots.
    #[arg(long, value_name = "FILE")]
    pub node_ca: Option<std::path::PathBuf>,

    /// The hub type name expected on the backplane (channels of other hubs are reported);
    /// default: the hubs the nodes announce.
    #[arg(long, value_name = "NAME")]
    pub hub_name: Option<String>,

    /// Hub method the test message is sent with (user, message).
    #[arg(long, default_value = "SendMessage", value_name = "METHOD")]
    pub send_method: String,

    /// Client method the hub broadcasts with (user, message).
    #[arg(long, default_value = "ReceiveMessage", value_name = "METHOD")]
    pub receive_method: String,

    /// An ASP.NET SignalR 2 event key (UseRedis(..., eventKey)): reports its message counter
    /// (GET KEY: messages published since the counter began) and its subscribed servers.
    /// Repeatable.
    #[arg(long = "event-key", value_name = "KEY")]
    pub event_keys: Vec<String>,

    /// The known-nodes state file (default: one per Redis and prefix in the user's state
    /// directory, $XDG_STATE_HOME/switchboard/ or ~/.local/state/switchboard/).
    #[arg(long, value_name = "FILE", conflicts_with = "no_state")]
    pub state: Option<std::path::PathBuf>,

    /// Remember nothing: no state file is read or written (no node-gone findings).
    #[arg(long)]
    pub no_state: bool,

    /// Forget a known node (its name or hub URL) and exit without checking. Repeatable.
    #[arg(long, value_name = "NODE", conflicts_with = "no_state")]
    pub forget: Vec<String>,

    /// Fewer than N nodes seen is critical (nodes the check's clients reached, and known nodes
    /// heard on the heartbeat channel).
    #[arg(long, value_name = "N")]
    pub expect_nodes: Option<usize>,

    /// The least severity that fails the check: critical (the default, exit 2) or warning (exit 1).
    #[arg(long, value_name = "SEVERITY", default_value = "critical", value_parser = ["critical", "warning"])]
    pub fail_on: String,
}

/// Most seconds `--timeout` may ask for: a probe that waits longer is no probe.
const MAX_CHECK_TIMEOUT_SECS: f64 = 600.0;

/// Exits 3 (as for clap's usage errors) when the command line cannot run, so that a probe never
/// reads a typo as a finding; 2 for a critical finding.
fn run_check(args: CheckArgs) -> anyhow::Result<()> {
    let json = args.json;
    let forget = args.forget.clone();
    let options = usage_of(check_options(args))?;
    if !forget.is_empty() {
        return run_forget(&options, &forget);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(crate::check::run(options));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("writing the report as JSON")?
        );
    } else {
        print!("{}", report.text());
    }
    // Connection drivers cut at the deadline must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if report.exit_code != EXIT_OK {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(i32::from(report.exit_code));
    }
    Ok(())
}

/// `check --forget NODE...`: forgets, says what, and exits: 0, or 3 when a NODE matched nothing
/// (a typo must not pass silently).
fn run_forget(options: &crate::check::CheckOptions, names: &[String]) -> anyhow::Result<()> {
    let Some(path) = &options.state else {
        return Err(usage("--forget needs a state file: drop --no-state"));
    };
    let results = crate::check::forget(path, names).map_err(usage)?;
    let mut unknown = Vec::new();
    for (name, forgotten) in &results {
        if forgotten.is_empty() {
            unknown.push(name.as_str());
        }
        for node in forgotten {
            println!("forgot {} ({}) in {}", node.name, node.hub_url, path.display());
        }
    }
    if !unknown.is_empty() {
        return Err(usage(format!(
            "no known node is named {} in {}",
            unknown.join(", "),
            path.display()
        )));
    }
    Ok(())
}

fn check_options(args: CheckArgs) -> anyhow::Result<crate::check::CheckOptions> {
    let Some(redis) = args.redis.spec()? else {
        anyhow::bail!("switchboard check needs --redis URL (or REDIS_URL)");
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= MAX_CHECK_TIMEOUT_SECS) {
        anyhow::bail!("--timeout must be a number of seconds above 0 and at most {MAX_CHECK_TIMEOUT_SECS}");
    }
    let mut nodes = Vec::new();
    for text in &args.nodes {
        nodes.push(crate::check::CheckNode::parse(text).map_err(|e| anyhow::anyhow!("--node {text}: {e}"))?);
    }
    let state = if args.no_state {
        None
    } else {
        match args.state {
            Some(path) => Some(path),
            None => Some(
                crate::known_nodes::default_path(&redis.redacted(), &args.channel_prefix).ok_or_else(|| {
                    anyhow::anyhow!(
                        "no state directory (neither XDG_STATE_HOME nor HOME is set): pass --state FILE or --no-state"
                    )
                })?,
            ),
        }
    };
    let fail_on = if args.fail_on == "warning" {
        crate::monitor::model::health::Severity::Warning
    } else {
        crate::monitor::model::health::Severity::Critical
    };
    let options = crate::check::CheckOptions {
        state,
        expect_nodes: args.expect_nodes,
        fail_on,
        redis,
        prefix: args.channel_prefix,
        nodes,
        timeout: Duration::from_secs_f64(args.timeout),
        hub_name: args.hub_name.filter(|h| !h.is_empty()),
        send_method: args.send_method,
        receive_method: args.receive_method,
        token: monitor_token(args.monitor_token.as_ref())?,
        node_credentials: args.node_token.credentials()?,
        trust_nodes: crate::monitor::model::trust::TrustRules::new(args.trust_nodes),
        node_tls: node_tls(args.node_ca.as_deref())?,
        event_keys: args.event_keys.into_iter().filter(|k| !k.is_empty()).collect(),
    };
    Ok(options)
}

// ---- end of `switchboard check` ----

/// The window's title, size and persistence (window size and position are remembered too).
// ---- `switchboard agent` (the monitor without a window; see `crate::agent`) ----

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  switchboard agent --redis redis://10.0.0.5:6379 \\\n    --node http://10.0.0.11:5000/chat --node http://10.0.0.12:5000/chat \\\n    --listen 0.0.0.0:9465 --monitor-token \"$TOKEN\"\n  curl -H \"Authorization: Bearer $TOKEN\" http://10.0.0.5:9465/metrics\n\n\
Routes: GET /metrics (Prometheus text), GET /findings (the health findings as JSON), GET /healthz \
(200 \"ok\" while the agent runs). Exit codes: 0 stopped by SIGINT/SIGTERM; 3 bad usage or input \
(a flag, the Redis URL, the listen address in use, --listen beyond loopback without \
--monitor-token); 2 a failure at run time."
)]
pub struct AgentArgs {
    /// The backplane's Redis (required): the tap, the census, the Redis view.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// The backplane's channel prefix (ASP.NET Core's ChannelPrefix).
    #[arg(long, default_value = "")]
    pub channel_prefix: String,

    /// A hub node to watch: HUB_URL[,STATS_URL|none], as for the dashboard. Repeatable; nodes
    /// that announce themselves on the backplane are watched too (without the tokens unless they
    /// match --trust-nodes). A node seen once stays watched while it is down.
    #[arg(long = "node", value_name = "HUB_URL[,STATS_URL]")]
    pub nodes: Vec<String>,

    /// Where to serve /metrics, /findings and /healthz. Beyond loopback it needs --monitor-token.
    /// Port 0 picks a free port (the line printed at start names it).
    #[arg(long, default_value = config::DEFAULT_AGENT_LISTEN, value_name = "ADDR")]
    pub listen: String,

    /// How often a canary goes through each node to every node (10s, 500ms, 2m). Default 10s.
    #[arg(long, value_name = "DURATION", value_parser = crate::agent::parse_duration)]
    pub canary_interval: Option<Duration>,

    /// A canary not received by a node within this long is lost for that pair. Default 5s.
    #[arg(long, value_name = "DURATION", value_parser = crate::agent::parse_duration)]
    pub canary_timeout: Option<Duration>,

    /// Bearer token the agent requires on its routes (Prometheus' `authorization` credentials),
    /// also sent to the watched nodes' monitor endpoints (named nodes and --trust-nodes matches
    /// only). Prefer the SWITCHBOARD_MONITOR_TOKEN variable.
    #[arg(long, env = MONITOR_TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub monitor_token: Option<TokenArg>,

    #[command(flatten)]
    pub node_token: NodeTokenArgs,

    /// Trust discovered nodes whose hub URL matches GLOB: they get the monitor and node tokens.
    /// Repeatable.
    #[arg(long = "trust-nodes", value_name = "GLOB")]
    pub trust_nodes: Vec<String>,

    /// A CA certificate (PEM) to trust for https:// nodes, besides the system's roots.
    #[arg(long, value_name = "FILE")]
    pub node_ca: Option<std::path::PathBuf>,
}

fn run_agent(args: AgentArgs) -> i32 {
    let options = match agent_options(args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("switchboard agent: {e:#}");
            return i32::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("switchboard agent: starting the tokio runtime: {e}");
            return i32::from(EXIT_FINDINGS);
        }
    };
    let outcome = runtime.block_on(crate::agent::run(options));
    // Probe and tap tasks cut at the grace period must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("switchboard agent: {e}");
            e.exit_code()
        }
    }
}

fn agent_options(args: AgentArgs) -> anyhow::Result<crate::agent::AgentOptions> {
    let Some(redis) = args.redis.spec()? else {
        anyhow::bail!("--redis URL (or REDIS_URL) is required: the backplane to watch");
    };
    crate::monitor::tap::connector_for(&redis).map_err(|e| anyhow::anyhow!("--redis: {e}"))?;
    let listen: SocketAddr = args.listen.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "--listen {}: not an address with a port (like 127.0.0.1:9465 or [::1]:9465)",
            args.listen
        )
    })?;
    let mut nodes = Vec::new();
    for text in &args.nodes {
        let node = crate::check::CheckNode::parse(text).map_err(|e| anyhow::anyhow!("--node {text}: {e}"))?;
        nodes.push(crate::monitor::NodeTarget {
            hub_url: node.hub_url,
            monitor_url: node.stats_url,
        });
    }
    let options = crate::agent::AgentOptions {
        redis,
        prefix: args.channel_prefix,
        nodes,
        listen,
        canary_interval: args.canary_interval.unwrap_or(config::DEFAULT_CANARY_INTERVAL),
        canary_timeout: args.canary_timeout.unwrap_or(config::DEFAULT_CANARY_TIMEOUT),
        monitor_token: monitor_token(args.monitor_token.as_ref())?,
        monitor: crate::monitor::MonitorOptions {
            node_tls: node_tls(args.node_ca.as_deref())?,
            node_credentials: args.node_token.credentials()?,
            trust_rules: crate::monitor::model::trust::TrustRules::new(args.trust_nodes),
        },
    };
    crate::agent::check(&options).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(options)
}

// ---- end of `switchboard agent` ----

#[cfg(feature = "gui")]
fn native_options() -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Switchboard")
            .with_app_id("switchboard")
            .with_inner_size([1440.0, 900.0])
            .with_min_inner_size([800.0, 500.0]),
        ..Default::default()
    }
}

/// Opens the dashboard: remembered settings, plus what the flags add.
#[cfg(feature = "gui")]
fn run_dashboard(args: DashboardArgs) -> anyhow::Result<()> {
    use crate::ui::{DashboardApp, Settings, Startup, Tab};

    let mut nodes = Vec::new();
    for text in &args.nodes {
        nodes.push(crate::ui::parse_node(text).map_err(|e| usage(format!("--node {text}: {e}")))?);
    }
    let workspace = match &args.workspace {
        Some(path) => Some(crate::ui::read_workspace(path).map_err(usage)?),
        None => None,
    };
    let capture = match &args.capture {
        Some(path) => {
            let (entries, _) = crate::ui::read_capture(path).map_err(usage)?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some((name, entries))
        }
        None => None,
    };
    let redis = usage_of(args.redis.spec())?;
    let monitor_options = crate::monitor::MonitorOptions {
        node_tls: usage_of(node_tls(args.node_ca.as_deref()))?,
        node_credentials: usage_of(args.node_token.credentials())?,
        ..crate::monitor::MonitorOptions::default()
    };
    let token = usage_of(monitor_token(args.monitor_token.as_ref()))?;
    require_display()?;
    let (mut link, _) = crate::link::Link::start_with(None, monitor_options)?;
    if link.signalled() {
        return Ok(());
    }
    if token.is_some() {
        // Queued before any node is watched: the UI's first commands come after it.
        link.command(crate::monitor::MonitorCommand::SetMonitorToken(token));
    }
    let tab = args.tab.as_deref().and_then(Tab::from_name);
    let exit_after = args.exit_after.map(std::time::Duration::from_secs_f64);
    eframe::run_native(
        "Switchboard",
        native_options(),
        Box::new(move |cc| {
            link.attach_window(&cc.egui_ctx);
            let mut settings: Settings = match (args.fresh, cc.storage) {
                (false, Some(storage)) => {
                    eframe::get_value(storage, crate::ui::STORAGE_KEY).unwrap_or_default()
                }
                _ => Settings::default(),
            };
            if let Some(workspace) = workspace {
                settings.apply_workspace(workspace);
            }
            for node in nodes {
                settings.add_node(node);
            }
            for glob in &args.trust_nodes {
                settings.add_trust_glob(glob);
            }
            if let Some(prefix) = args.channel_prefix {
                settings.channel_prefix = prefix;
            }
            settings.presenter |= args.presenter;
            let startup = Startup {
                settings,
                redis,
                demo: None,
                tab,
                persist: true,
                exit_after,
                capture,
            };
            Ok(Box::new(DashboardApp::new(link, startup)))
        }),
    )
    .map_err(|e| anyhow::anyhow!("the dashboard window could not open: {e}"))
}

/// Starts the demo's nodes, backplane and simulated clients, then the dashboard connected to them.
#[cfg(feature = "gui")]
fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    use crate::demo::{DemoBackplane, DemoOptions, SimSettings};
    use crate::ui::{DashboardApp, Settings, Startup, Tab};

    let backplane = match args.backplane.as_str() {
        "redis" => DemoBackplane::Redis,
        "memory" => DemoBackplane::Memory,
        _ => DemoBackplane::Auto,
    };
    let external_redis = usage_of(args.redis.spec())?;
    if external_redis.is_some() && args.backplane == "memory" {
        return Err(usage(
            "--redis and --backplane memory contradict each other: choose one",
        ));
    }
    require_display()?;
    let options = DemoOptions {
        nodes: args.nodes,
        backplane,
        channel_prefix: if external_redis.is_some() {
            "switchboard-demo:".to_string()
        } else {
            String::new()
        },
        external_redis,
        sim: SimSettings {
            clients_per_node: args.clients,
            messages_per_sec: args.rate,
            ..SimSettings::default()
        },
        // The nodes require tokens (a random HS256 secret for this run): the demo shows the real
        // thing, and its simulated users, chat-page links and dashboard present tokens.
        auth_secret: Some(crate::demo::random_secret()),
    };
    let (link, wiring) = crate::link::Link::start(Some(options))?;
    if link.signalled() {
        // Dropping the link stops the demo in the window-close order.
        return Ok(());
    }
    if let Some(status) = link.demo_status() {
        for node in &status.nodes {
            println!(
                "demo node {}: chat page {} · hub {}",
                node.name, node.page_url, node.hub_url
            );
        }
        match &status.redis_url {
            Some(url) => println!("demo backplane: private redis-server at {url}"),
            None => println!("demo backplane: in memory (no redis-server on PATH)"),
        }
    }
    let settings = Settings {
        presenter: args.presenter,
        ..Settings::default()
    };
    let tab = args.tab.as_deref().and_then(Tab::from_name);
    let exit_after = args.exit_after.map(std::time::Duration::from_secs_f64);
    eframe::run_native(
        "Switchboard demo",
        native_options(),
        Box::new(move |cc| {
            link.attach_window(&cc.egui_ctx);
            let startup = Startup {
                settings,
                redis: None,
                demo: wiring,
                tab,
                persist: false,
                exit_after,
                capture: None,
            };
            Ok(Box::new(DashboardApp::new(link, startup)))
        }),
    )
    .map_err(|e| anyhow::anyhow!("the demo window could not open: {e}"))
}
