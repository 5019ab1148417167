//! `switchboard check`: its flags, checked into `check::CheckOptions`, `--forget`, and the run
//! that prints the report and exits by the convention.

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::*;

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
pub(super) const MAX_CHECK_TIMEOUT_SECS: f64 = 600.0;

/// Exits 3 (as for clap's usage errors) when the command line cannot run, so that a probe never
/// reads a typo as a finding; 2 for a critical finding.
pub(super) fn run_check(args: CheckArgs) -> anyhow::Result<()> {
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
    print_report(json, &report, || report.text())?;
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
pub(super) fn run_forget(options: &crate::check::CheckOptions, names: &[String]) -> anyhow::Result<()> {
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

pub(super) fn check_options(args: CheckArgs) -> anyhow::Result<crate::check::CheckOptions> {
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
