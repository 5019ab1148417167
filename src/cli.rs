//! The command line and the composition root: parses arguments, picks the backplane, starts
//! nodes, and waits for SIGINT/SIGTERM to shut them down in order.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::hub::{BackplaneChoice, Node, NodeConfig};

/// Switchboard: SignalR-compatible chat hubs scaled out through Redis, and the tools to watch them.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a chat hub node (ASP.NET Core SignalR protocol, Redis backplane).
    Hub(HubArgs),
}

#[derive(Debug, Args)]
pub struct HubArgs {
    /// Address to listen on. Loopback by default; use 0.0.0.0:PORT to accept remote clients.
    #[arg(long, default_value = "127.0.0.1:5001")]
    pub listen: SocketAddr,

    /// Redis URL of the backplane, e.g. redis://127.0.0.1:6379 or redis://:password@host:6379/0.
    /// Without it the node runs alone on the in-memory backplane.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis: Option<String>,

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

    /// Maximum concurrent client connections; extra WebSocket upgrades get 503.
    #[arg(long, default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Maximum size of one hub message in bytes.
    #[arg(long, default_value_t = config::DEFAULT_MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,

    /// Frames queued per client before it is disconnected as too slow.
    #[arg(long, default_value_t = config::DEFAULT_OUTBOUND_QUEUE)]
    pub outbound_queue: usize,

    /// Server keep-alive ping interval in seconds.
    #[arg(long, default_value_t = config::DEFAULT_KEEP_ALIVE.as_secs())]
    pub keep_alive_secs: u64,

    /// Seconds of client silence (after its first ping) before it is dropped.
    #[arg(long, default_value_t = config::DEFAULT_CLIENT_TIMEOUT.as_secs())]
    pub client_timeout_secs: u64,

    /// The base URL announced to dashboards (default: http://{listen address}).
    #[arg(long)]
    pub public_url: Option<String>,

    /// A browser origin (scheme://host:port) allowed to negotiate from another origin, e.g. a
    /// front-end dev server. Repeat for several; `*` allows any. Default: same origin only.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
}

impl HubArgs {
    fn node_config(&self) -> NodeConfig {
        let mut config = NodeConfig::new(self.name.clone());
        config.listen = self.listen;
        config.hub_name = self.hub_name.clone();
        config.channel_prefix = self.channel_prefix.clone();
        config.path = self.path.clone();
        config.max_connections = self.max_connections;
        config.max_message_size = self.max_message_size;
        config.outbound_queue = self.outbound_queue;
        config.keep_alive = Duration::from_secs(self.keep_alive_secs.max(1));
        config.client_timeout = Duration::from_secs(self.client_timeout_secs.max(1));
        config.public_url = self.public_url.clone();
        config.cors_origins = self.cors_origins.clone();
        config
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
        None => {
            use clap::CommandFactory;
            Cli::command().print_help().context("printing help")?;
            println!("\n\nThe dashboard is not built yet: start a node with `switchboard hub`.");
            Ok(())
        }
    }
}

async fn run_hub(args: HubArgs) -> anyhow::Result<()> {
    let backplane = match &args.redis {
        Some(url) => BackplaneChoice::Redis(url.clone()),
        None => BackplaneChoice::Alone,
    };
    let node = Node::start(args.node_config(), backplane)
        .await
        .context("starting the hub node")?;
    println!(
        "switchboard hub '{}' ({}) listening: hub {} · chat page {}/ · stats {}/switchboard/stats",
        node.node_name(),
        node.server_name(),
        node.hub_url(),
        node.base_url(),
        node.base_url()
    );
    wait_for_signal().await?;
    node.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    tracing::info!("signal received");
    Ok(())
}
