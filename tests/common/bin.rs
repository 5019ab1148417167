//! Running the real `switchboard` binary from a test as a user would: off the async runtime, under
//! a deadline well above the run's own bounds, with the environment a test must not inherit
//! (`REDIS_URL`, the token variables) removed and a private state folder for `check`'s known
//! nodes (this test binary's, never the user's).

use std::process::{Command, Output};
use std::time::Duration;

use super::within_for;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// This test binary's state folder (`XDG_STATE_HOME`): each test uses its own channel prefix, so
/// its own known-nodes file in it.
pub fn state_home() -> std::path::PathBuf {
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    std::env::temp_dir().join(format!("switchboard-state-{name}-{}", std::process::id()))
}

/// `switchboard ARGS…` with `env` set (a `None` value removes the variable), within `limit`.
pub async fn run(args: Vec<String>, env: &[(&str, Option<&str>)], limit: Duration) -> Output {
    let env: Vec<(String, Option<String>)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect();
    let what = format!("switchboard {}", args.first().map(String::as_str).unwrap_or(""));
    let run = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(BIN);
        command
            .args(&args)
            .env_remove("REDIS_URL")
            .env_remove("SWITCHBOARD_MONITOR_TOKEN")
            .env_remove("SWITCHBOARD_NODE_TOKEN")
            .env("XDG_STATE_HOME", state_home());
        for (key, value) in &env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command.output()
    });
    within_for(&what, limit, run)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{BIN}: {e}"))
}

/// The first stdout line of a started `switchboard hub` (where it listens), read off the runtime
/// within the harness's deadline.
pub async fn startup_line(stdout: std::process::ChildStdout) -> String {
    use std::io::{BufRead, BufReader};
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    super::within("startup line", line)
        .await
        .expect("the reader thread ends")
        .expect("the hub's stdout reads")
}

/// The hub URL in that line.
pub fn hub_url_in(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/chat"))
        .unwrap_or_else(|| panic!("no hub URL in {line:?}"))
        .to_string()
}

/// The exit code and both outputs, for a failure message.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
