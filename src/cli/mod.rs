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
//!
//! Files: one per subcommand (`hub`, `load`, `tap`, `check`, `agent`, and `gui` for the
//! dashboard and the demo, the only file behind the `gui` feature); here the shared flags (Redis,
//! tokens), the exit-code convention and the dispatch.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::monitor_token::MonitorToken;
use crate::redis_conn::{ClusterMode, RedisOptions, RedisSpec};

mod agent;
mod check;
#[cfg(feature = "gui")]
mod gui;
mod hub;
mod load;
mod tap;
#[cfg(test)]
mod tests;

pub use agent::AgentArgs;
pub use check::CheckArgs;
#[cfg(feature = "gui")]
pub use gui::{DashboardArgs, DemoArgs};
pub use hub::{AuthMode, HubArgs};
pub use load::LoadArgs;
pub use tap::TapArgs;

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
  switchboard demo --nodes 3   # nodes, a backplane, simulated users and the window
  switchboard dashboard --redis redis://127.0.0.1:6379   # the window, watching that backplane
  switchboard hub --listen 127.0.0.1:5001 --redis redis://127.0.0.1:6379 --name node-a
  switchboard tap --redis redis://127.0.0.1:6379 --count 20   # the backplane, decoded, in a terminal
  switchboard check --redis redis://127.0.0.1:6379 || page-someone   # 2 when a node it saw is gone
  switchboard check --redis redis://127.0.0.1:6379 --fail-on warning
  switchboard load --node http://127.0.0.1:5001/chat --node http://127.0.0.1:5002/chat --json
  switchboard agent --redis redis://127.0.0.1:6379   # Prometheus metrics on http://127.0.0.1:9465/metrics";

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

/// A report on stdout: pretty JSON with `--json`, else its text (`check`, `load`).
fn print_report<T: serde::Serialize>(
    json: bool,
    report: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).context("writing the report as JSON")?
        );
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// Runs the parsed command line to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Hub(args)) => {
            // The node's first thread: the backplane, the accept loop, the monitor endpoints
            // and its share of the connections. The others are the node's (`--threads`).
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(hub::run_hub(args))
        }
        Some(Command::Load(args)) => load::run_load(args),
        Some(Command::Check(args)) => check::run_check(args),
        Some(Command::Tap(args)) => std::process::exit(tap::run_tap(args)),
        Some(Command::Agent(args)) => std::process::exit(agent::run_agent(args)),
        #[cfg(feature = "gui")]
        Some(Command::Dashboard(args)) => gui::run_dashboard(args),
        #[cfg(feature = "gui")]
        Some(Command::Demo(args)) => gui::run_demo(args),
        #[cfg(feature = "gui")]
        None => gui::run_dashboard(DashboardArgs::default_from_env()),
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
