//! `switchboard agent`: its flags, checked into `agent::AgentOptions`, and the run.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::config;

use super::*;

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

pub(super) fn run_agent(args: AgentArgs) -> i32 {
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

pub(super) fn agent_options(args: AgentArgs) -> anyhow::Result<crate::agent::AgentOptions> {
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
