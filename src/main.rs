//! The `switchboard` binary: parse the command line, set up logging, hand over to `cli::run`.

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The default log level (RUST_LOG overrides it): `tap` says its link states in its own lines on
/// stderr, so the tap task's per-attempt warnings would only repeat them.
fn log_level(cli: &switchboard::cli::Cli) -> &'static str {
    match cli.command {
        Some(switchboard::cli::Command::Tap(_)) => "error",
        // The agent logs its own state changes once each; the monitor's per-attempt lines would
        // repeat them every few seconds for as long as a node or Redis is down.
        Some(switchboard::cli::Command::Agent(_)) => "info,switchboard::monitor=error",
        _ => "info",
    }
}

fn main() -> std::process::ExitCode {
    // Help and version exit 0; any other parse error is bad usage (the convention in `cli`).
    let cli = match switchboard::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() {
                switchboard::cli::EXIT_USAGE
            } else {
                0
            });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(log_level(&cli))),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match switchboard::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            // 3 for bad usage or input, 2 for a failure (the convention in `cli`).
            std::process::ExitCode::from(switchboard::cli::exit_code_of(&e))
        }
    }
}
