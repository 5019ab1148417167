//! `switchboard tap`: its flags, checked into `tapcli::TapOptions` (a bad one is one line and exit
//! 3), and the run.

use std::time::Duration;

use clap::Args;

use super::*;

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

pub(super) fn parse_entry_kind(text: &str) -> Result<crate::monitor::model::EntryKind, String> {
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
pub(super) fn run_tap(args: TapArgs) -> i32 {
    match tap_options(args) {
        Ok(options) => crate::tapcli::run(options),
        Err(e) => {
            eprintln!("switchboard tap: {e:#}");
            crate::tapcli::EXIT_BAD_INPUT
        }
    }
}

pub(super) fn tap_options(args: TapArgs) -> anyhow::Result<crate::tapcli::TapOptions> {
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
