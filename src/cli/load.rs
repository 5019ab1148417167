//! `switchboard load`: its flags, checked into `load::LoadOptions`, and the run that prints the
//! report and fails when something asked for was not measured.

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::*;

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
pub(super) fn run_load(args: LoadArgs) -> anyhow::Result<()> {
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
    print_report(json, &report, || report.text())?;
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

pub(super) fn load_options(args: LoadArgs) -> anyhow::Result<crate::load::LoadOptions> {
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
