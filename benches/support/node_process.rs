//! What the benches that measure a `switchboard hub` process from the outside share: starting the
//! node, knobs from the environment, and the median and percentiles of measurements. Included with
//! `#[path]` by `conns`, `fanout` and `flood` (each uses a part: the rest is allowed to be unused).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts `bin hub --listen 127.0.0.1:0 --name NAME --redis URL` plus `extra` arguments, and returns
/// the process with its hub URL (from its first stdout line).
pub fn start_node(bin: &str, name: &str, redis_url: &str, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(bin)
        .args([
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--name",
            name,
            "--redis",
            redis_url,
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the node starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the node's first line");
    let hub = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/chat"))
        .unwrap_or_else(|| panic!("no hub URL in {line:?}"))
        .to_string();
    (child, hub)
}

/// The median of `values` (the upper one of an even count); NaN-safe ordering.
#[allow(dead_code)]
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// The environment variable `name` parsed, or `default` when it is unset or does not parse.
#[allow(dead_code)]
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nearest-rank percentile `p` (0..=1) of sorted milliseconds; NaN when there are none.
#[allow(dead_code)]
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
