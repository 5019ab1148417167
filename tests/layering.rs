//! The house rules of who may use whom, checked on the source: the egui side never names tokio,
//! redis or sockets; the pure model names no I/O at all; the monitor watches nodes from the
//! outside, never through `hub` internals.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

fn sources(dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

/// Code lines only (comments and doc comments may mention anything).
fn code(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l))
}

fn assert_absent(dir: &str, forbidden: &[&str]) {
    for (file, text) in sources(dir) {
        for (n, line) in code(&text) {
            for word in forbidden {
                assert!(
                    !line.contains(word),
                    "{file}:{n} names `{word}`, which {dir} must not use: {line}"
                );
            }
        }
    }
}

#[test]
fn the_ui_never_names_tokio_redis_or_sockets() {
    assert_absent(
        "src/ui",
        &[
            "tokio",
            "redis::",
            "TcpStream",
            "UdpSocket",
            "std::net",
            "block_on",
            "blocking_send",
            "thread::sleep",
            "crate::client",
        ],
    );
}

#[test]
fn the_model_is_pure() {
    assert_absent(
        "src/monitor/model",
        &[
            "tokio",
            "redis::",
            "std::net",
            "SystemTime::now",
            "Instant::now",
            "std::fs",
        ],
    );
}

#[test]
fn the_monitor_watches_nodes_from_the_outside() {
    assert_absent("src/monitor", &["crate::hub", "egui"]);
}

#[test]
fn the_backplane_never_sees_hub_monitor_or_ui() {
    assert_absent(
        "src/backplane",
        &["crate::hub", "crate::monitor", "crate::ui", "egui"],
    );
}

#[test]
fn the_agent_is_headless_and_watches_from_the_outside() {
    assert_absent(
        "src/agent",
        &["crate::hub", "crate::ui", "crate::link", "egui", "eframe"],
    );
}
