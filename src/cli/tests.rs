//! Unit tests of argument parsing: every subcommand parsed from an argv as a user would type it,
//! then checked into its options; a bad one refused (by clap, or as a usage error naming the flag).

use std::time::Duration;

use clap::Parser;

use super::*;

fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("switchboard").chain(argv.iter().copied()))
}

fn command(argv: &[&str]) -> Command {
    match parse(argv) {
        Ok(cli) => cli.command.expect("a subcommand"),
        Err(e) => panic!("{argv:?}: {e}"),
    }
}

#[test]
fn help_shows_the_exit_codes_and_a_bad_flag_is_usage() {
    let help = parse(&["--help"]).expect_err("help is an early exit");
    assert!(!help.use_stderr(), "help goes to stdout and exits 0");
    let text = help.to_string();
    for line in ["0  ok", "1  warning", "2  critical", "3  bad usage or input"] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    let bad = parse(&["hub", "--no-such-flag"]).expect_err("unknown flag");
    assert!(bad.use_stderr(), "a usage error (exit 3 in main)");
}

#[test]
fn hub_flags_become_a_node_config() {
    let Command::Hub(args) = command(&[
        "hub",
        "--listen",
        "127.0.0.1:5009",
        "--name",
        "node-x",
        "--channel-prefix",
        "app:",
        "--max-invocations-per-second",
        "50",
    ]) else {
        panic!("not hub")
    };
    let config = args.node_config().expect("a valid config");
    assert_eq!(config.listen.to_string(), "127.0.0.1:5009");
    assert_eq!(config.channel_prefix, "app:");
    assert!(
        args.auth_verifier().ok().flatten().is_none(),
        "no --auth: no verifier"
    );

    // --auth jwt with no key is refused in words that name the flags.
    let Command::Hub(args) = command(&["hub", "--auth", "jwt"]) else {
        panic!("not hub")
    };
    let error = match args.auth_verifier() {
        Err(e) => e,
        Ok(_) => panic!("no key source must be refused"),
    };
    assert!(error.contains("--jwt-secret-file"), "{error}");
}

#[test]
fn check_flags_become_check_options() {
    let Command::Check(args) = command(&[
        "check",
        "--redis",
        "redis://127.0.0.1:6390",
        "--node",
        "http://127.0.0.1:5001/chat",
        "--expect-nodes",
        "2",
        "--fail-on",
        "warning",
        "--no-state",
        "--timeout",
        "3",
    ]) else {
        panic!("not check")
    };
    assert_eq!(args.expect_nodes, Some(2));
    let options = check::check_options(args).expect("valid");
    assert_eq!(options.nodes.len(), 1);
    assert_eq!(options.timeout, Duration::from_secs(3));
    assert!(options.state.is_none(), "--no-state");

    assert!(
        parse(&["check", "--fail-on", "sometimes"]).is_err(),
        "clap refuses the value"
    );
    let Command::Check(args) = command(&["check", "--timeout", "3"]) else {
        panic!("not check")
    };
    let error = check::check_options(args).expect_err("no Redis");
    assert!(error.to_string().contains("--redis"), "{error}");
}

#[test]
fn load_flags_become_load_options() {
    let Command::Load(args) = command(&[
        "load",
        "--node",
        "http://127.0.0.1:5001/chat",
        "--node",
        "http://127.0.0.1:5002/chat",
        "--clients",
        "10",
        "--rate",
        "100",
        "--duration",
        "2",
    ]) else {
        panic!("not load")
    };
    let options = load::load_options(args).expect("valid");
    assert_eq!((options.nodes.len(), options.clients), (2, 10));
    assert!(parse(&["load", "--clients", "ten"]).is_err());
}

#[test]
fn tap_flags_become_tap_options() {
    let Command::Tap(args) = command(&[
        "tap",
        "--redis",
        "redis://127.0.0.1:6390",
        "--kind",
        "all",
        "--count",
        "5",
        "--no-capture",
    ]) else {
        panic!("not tap")
    };
    let options = tap::tap_options(args).expect("valid");
    assert_eq!(options.count, Some(5));
    assert!(parse(&["tap", "--kind", "nonsense"]).is_err(), "an unknown kind");
}

#[test]
fn agent_flags_become_agent_options() {
    let Command::Agent(args) = command(&[
        "agent",
        "--redis",
        "redis://127.0.0.1:6390",
        "--listen",
        "127.0.0.1:0",
        "--canary-interval",
        "1s",
    ]) else {
        panic!("not agent")
    };
    let options = agent::agent_options(args).expect("valid");
    assert_eq!(options.canary_interval, Duration::from_secs(1));
    assert_eq!(options.listen.to_string(), "127.0.0.1:0");
    assert!(parse(&["agent", "--canary-interval", "soon"]).is_err());
}

#[cfg(feature = "gui")]
#[test]
fn dashboard_and_demo_flags() {
    let Command::Dashboard(args) = command(&[
        "dashboard",
        "--redis",
        "redis://127.0.0.1:6390",
        "--node",
        "http://127.0.0.1:5001/chat",
    ]) else {
        panic!("not dashboard")
    };
    assert_eq!(args.nodes.len(), 1);
    assert!(parse(&["demo", "--nodes", "9"]).is_err(), "1 to 8 nodes");
    assert!(parse(&["demo", "--nodes", "0"]).is_err(), "1 to 8 nodes");
    assert!(matches!(command(&["demo", "--nodes", "3"]), Command::Demo(_)));
}
