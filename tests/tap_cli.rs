//! `switchboard tap` as an operator runs it: the real binary against a test-owned `redis-server`
//! carrying the traffic of two real hub nodes (a client on node A broadcasting and sending to a
//! group a client on node B joined). `--json --count 10` prints exactly ten capture entries and
//! exits 0; the filters show only what they select; the capture it writes is read back by the
//! dashboard's reader; SIGINT prints the summary; killing and restarting Redis mid-run prints a
//! gap; a bad URL or CA file is one line and exit code 3.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::redis::RedisServer;
use common::{STEP, connect, start_node, unique_prefix, wait_connected, within};
use switchboard::client::str_args;
use switchboard::hub::{BackplaneChoice, NodeHandle};
use switchboard::monitor::model::{EntryKind, TrafficEntry};
use switchboard::protocol::Protocol;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A running `switchboard tap`: its stdout lines as they come, its stderr once it ends.
struct TapProcess {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl TapProcess {
    /// Starts `switchboard tap ARGS` in `dir` (where a default capture would go).
    fn spawn(dir: &Path, args: &[&str]) -> TapProcess {
        let mut child = Command::new(BIN)
            .arg("tap")
            .args(args)
            .current_dir(dir)
            .env_remove("REDIS_URL")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        TapProcess {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// The next stdout line, within `STEP`; `None` at the end of stdout.
    async fn line(&mut self) -> Option<String> {
        within("a line from switchboard tap", self.lines.recv()).await
    }

    /// Sends SIGINT, as Ctrl-C does.
    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit (within `limit`): the status, every stdout line not read yet, stderr.
    async fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<String>, String) {
        let deadline = tokio::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "switchboard tap did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut rest = Vec::new();
        while let Some(line) = within("stdout to end", self.lines.recv()).await {
            rest.push(line);
        }
        let handle = self.stderr.take().unwrap();
        let stderr = within(
            "stderr to end",
            tokio::task::spawn_blocking(move || handle.join()),
        )
        .await
        .unwrap()
        .unwrap();
        (status, rest, stderr)
    }
}

impl Drop for TapProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two nodes on one Redis and a client on A broadcasting and sending to group "room" (joined by
/// a client on B) every 20 ms, until dropped.
struct Traffic {
    stop: Arc<AtomicBool>,
    _nodes: (NodeHandle, NodeHandle),
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn traffic(redis: &RedisServer, prefix: &str) -> Traffic {
    let a = start_node("tap-a", BackplaneChoice::RedisUrl(redis.url()), prefix).await;
    let b = start_node("tap-b", BackplaneChoice::RedisUrl(redis.url()), prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let sender = connect(&a, Protocol::Json, None).await;
    let mut member = connect(&b, Protocol::Json, None).await;
    within("JoinGroup", member.invoke("JoinGroup", str_args(&["room"])))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let running = stop.clone();
    tokio::spawn(async move {
        let mut i = 0u64;
        while !running.load(Ordering::Relaxed) {
            // Errors while Redis is down are expected; the loop goes on until the test ends.
            let _ = sender
                .send("SendMessage", str_args(&["ann", &format!("hello {i}")]))
                .await;
            let _ = sender
                .send(
                    "SendToGroup",
                    str_args(&["room", "ann", &format!("to the room {i}")]),
                )
                .await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(sender);
    });
    // The member's deliveries are read and dropped so its node never sees a slow client.
    tokio::spawn(async move { while member.recv().await.is_some() {} });
    Traffic { stop, _nodes: (a, b) }
}

/// A fresh directory for capture files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-tap-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads a capture with the dashboard's own reader (File > Open capture, `--capture`).
fn read_capture(path: &Path) -> Vec<TrafficEntry> {
    #[cfg(feature = "gui")]
    {
        switchboard::ui::read_capture(path).unwrap().0
    }
    #[cfg(not(feature = "gui"))]
    {
        let file = std::fs::File::open(path).unwrap();
        switchboard::monitor::model::capture::read_jsonl(BufReader::new(file))
            .unwrap()
            .entries
    }
}

fn parse(line: &str) -> TrafficEntry {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a capture entry ({e}): {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_count_prints_exactly_n_capture_entries_and_the_dashboard_reads_the_capture() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let _traffic = traffic(&redis, &prefix).await;
    let dir = temp_dir("count");
    let capture = dir.join("count.jsonl");
    let tap = TapProcess::spawn(
        &dir,
        &[
            "--redis",
            &redis.url(),
            "--channel-prefix",
            &prefix,
            "--json",
            "--count",
            "10",
            "--capture",
            capture.to_str().unwrap(),
        ],
    );
    let (status, lines, stderr) = tap.finish(STEP).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(lines.len(), 10, "exactly --count lines: {lines:#?}");
    let entries: Vec<TrafficEntry> = lines.iter().map(|l| parse(l)).collect();
    assert!(
        entries
            .iter()
            .all(|e| e.channel.starts_with(&prefix) && e.kind != EntryKind::Gap),
        "{entries:#?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.method.as_deref() == Some("ReceiveMessage")),
        "decoded invocations: {entries:#?}"
    );
    assert!(stderr.contains("--count 10 reached"), "{stderr}");
    assert!(stderr.contains("10 shown"), "{stderr}");

    // The capture holds the same ten entries (after a header line) and the dashboard opens it.
    let back = read_capture(&capture);
    assert_eq!(back, entries);
    let header = std::fs::read_to_string(&capture).unwrap();
    assert!(header.starts_with("{\"switchboard_capture\":1,"), "{header}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_by_kind_channel_and_text_and_the_table_is_one_line_each() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let _traffic = traffic(&redis, &prefix).await;
    let dir = temp_dir("filters");
    let url = redis.url();
    let common = ["--redis", &url, "--channel-prefix", &prefix, "--no-capture"];

    let tap = TapProcess::spawn(
        &dir,
        &[&common[..], &["--json", "--count", "6", "--kind", "group"]].concat(),
    );
    let (status, lines, stderr) = tap.finish(STEP).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(lines.len(), 6);
    for entry in lines.iter().map(|l| parse(l)) {
        assert_eq!(entry.kind, EntryKind::Group, "{entry:?}");
        assert_eq!(entry.scope.as_deref(), Some("room"));
    }
    assert!(
        stderr.contains("messages seen, 6 shown"),
        "other kinds are seen, not shown: {stderr}"
    );

    // The table: a header, then one line per message; a channel glob and a text filter.
    let glob = format!("{prefix}*:all");
    let tap = TapProcess::spawn(
        &dir,
        &[
            &common[..],
            &["--count", "3", "--channel", &glob, "--filter", "HELLO"],
        ]
        .concat(),
    );
    let (status, lines, stderr) = tap.finish(STEP).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].starts_with("TIME (UTC)"), "{}", lines[0]);
    for line in &lines[1..] {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[1], "all", "{line}");
        assert!(
            line.contains("ReceiveMessage") && line.contains("hello"),
            "{line}"
        );
        assert!(
            line.chars().count() <= 100,
            "100 columns when stdout is not a terminal: {line}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_cleanly_with_a_summary_and_the_default_capture() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let _traffic = traffic(&redis, &prefix).await;
    let dir = temp_dir("sigint");
    let mut tap = TapProcess::spawn(&dir, &["--redis", &redis.url(), "--channel-prefix", &prefix]);
    let header = tap.line().await.unwrap();
    assert!(header.starts_with("TIME (UTC)"), "{header}");
    for _ in 0..5 {
        tap.line().await.unwrap();
    }
    tap.interrupt();
    let (status, _, stderr) = tap.finish(STEP).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped: interrupted"), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.contains("summary:"))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    for word in ["messages seen", "shown", "dropped", "gaps", " s"] {
        assert!(summary.contains(word), "{word} in {summary}");
    }
    // Without --capture, the capture goes to the working directory, named by the time.
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("switchboard-tap-") && name.ends_with(".jsonl") && name.len() == 37,
        "{name}"
    );
    assert!(read_capture(&files[0]).len() >= 5);
    assert!(stderr.contains(&name), "the summary names the capture: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_run_prints_a_gap_line_and_captures_it() {
    let mut redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let _traffic = traffic(&redis, &prefix).await;
    let dir = temp_dir("gap");
    let capture = dir.join("gap.jsonl");
    let mut tap = TapProcess::spawn(
        &dir,
        &[
            "--redis",
            &redis.url(),
            "--channel-prefix",
            &prefix,
            "--json",
            "--capture",
            capture.to_str().unwrap(),
        ],
    );
    parse(&tap.line().await.unwrap());
    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart().await;
    // Lines until the gap: messages from before the kill may still be in flight.
    let gap = loop {
        let entry = parse(&tap.line().await.expect("stdout open until the gap"));
        if entry.kind == EntryKind::Gap {
            break entry;
        }
    };
    let (from, to) = gap.gap.expect("a gap says when");
    assert!(to >= from + 900, "Redis was down for a second: {gap:?}");
    // Traffic resumes after the gap (the nodes reconnect too).
    let after = parse(&tap.line().await.expect("traffic after the gap"));
    assert_ne!(after.kind, EntryKind::Gap);
    tap.interrupt();
    let (status, _, stderr) = tap.finish(STEP).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("Redis link down"),
        "the state is said on stderr: {stderr}"
    );
    assert!(stderr.contains("reconnected after"), "{stderr}");
    assert!(stderr.contains("1 gap ("), "{stderr}");
    let back = read_capture(&capture);
    assert_eq!(back.iter().filter(|e| e.kind == EntryKind::Gap).count(), 1);
    assert_eq!(back.iter().find(|e| e.kind == EntryKind::Gap), Some(&gap));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_input_is_one_line_and_exit_code_2_and_an_unreachable_redis_is_retried_until_duration() {
    let dir = temp_dir("bad");
    for args in [
        &["--redis", "redis://user:secret@[bad"][..],
        &[
            "--redis",
            "rediss://127.0.0.1:6380",
            "--redis-ca",
            "/nonexistent/ca.pem",
        ][..],
        &["--redis", "redis://127.0.0.1:6379", "--kind", "nope"][..],
        &[
            "--redis",
            "redis://127.0.0.1:6379",
            "--capture",
            "/nonexistent/dir/c.jsonl",
        ][..],
        &[][..],
    ] {
        let tap = TapProcess::spawn(&dir, args);
        let (status, lines, stderr) = tap.finish(STEP).await;
        assert_eq!(status.code(), Some(3), "{args:?}: {stderr}");
        assert!(lines.is_empty(), "{args:?}: {lines:?}");
        assert!(!stderr.contains("secret"), "never the password: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        if !args.contains(&"--kind") {
            assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        }
    }

    // Nothing listens on this port: the tap keeps retrying, says so, and stops at --duration.
    let port = common::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let tap = TapProcess::spawn(
        &dir,
        &["--redis", &url, "--duration", "1.5", "--json", "--no-capture"],
    );
    let (status, lines, stderr) = tap.finish(STEP).await;
    assert_eq!(status.code(), Some(2), "Redis never reached: {stderr}");
    assert!(lines.is_empty(), "{lines:?}");
    assert!(stderr.contains("Redis link down"), "{stderr}");
    assert!(stderr.contains("Redis was never reached"), "{stderr}");
    assert!(
        stderr.lines().filter(|l| l.contains("Redis link down")).count() <= 3,
        "the same error is not repeated every retry: {stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "--no-capture writes nothing"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
