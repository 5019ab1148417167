//! A test-owned `redis-server` on a free loopback port, and small Redis helpers: one-shot commands
//! (`redis_cmd`, `PUBSUB` introspection) and a PSUBSCRIBE tap that collects (channel, payload)
//! pairs for assertions.
//!
//! The server runs in the foreground of a child process (`--daemonize no`) with persistence off and
//! its files in a private temp dir; the test kills it (SIGKILL) or restarts it on the same port to
//! simulate faults, and `Drop` always kills it. A missing `redis-server` FAILS the test with
//! instructions: CI installs it, so a silent skip would hide a broken setup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::STEP;

/// How long a fresh `redis-server` gets to answer PING (it takes ~10 ms; CI machines can be slow).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages a tap holds before its reader waits (backpressure on the Redis socket, never loss).
const TAP_QUEUE: usize = 4096;

/// Whether `redis-server` is on PATH.
pub fn redis_available() -> bool {
    find_on_path("redis-server").is_some()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A `redis-server` child process owned by the test.
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers PING.
    /// Panics (failing the test) if `redis-server` is not installed or does not come up.
    pub async fn start() -> RedisServer {
        Self::start_inner(None).await
    }

    /// Like [`start`](Self::start), with `--requirepass password`.
    pub async fn start_with_password(password: &str) -> RedisServer {
        Self::start_inner(Some(password.to_string())).await
    }

    async fn start_inner(password: Option<String>) -> RedisServer {
        assert!(
            redis_available(),
            "redis-server not found on PATH: install it (apt-get install -y redis-server) or run ./scripts/test.sh"
        );
        let dir = private_dir();
        // The port is free when probed but could be taken before redis binds it: retry with another.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut server = RedisServer {
                port,
                password: password.clone(),
                dir: dir.clone(),
                child: None,
            };
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(e) => {
                    last_error = e;
                    server.kill();
                    // Keep the dir for the next attempt: forget it so Drop does not delete it.
                    server.dir = PathBuf::new();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("redis-server did not start: {last_error}");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:P` (without the password, even if one is required).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://:PASSWORD@127.0.0.1:P` (same as `url()` when no password is set).
    pub fn url_with_password(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => self.url(),
        }
    }

    /// Where the server's log goes (read it when a test fails).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Whether the process is running (it was started and not killed or crashed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILLs the server and reaps it: connections drop at once, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (killing it first if still running) and waits
    /// until it answers. The data is gone (no persistence), as after a real restart.
    pub async fn restart(&mut self) {
        self.kill();
        // A just-killed listener's port is free at once (redis uses SO_REUSEADDR); retry briefly
        // in case the kernel is slow to release it.
        let mut last_error = String::new();
        for _ in 0..5 {
            match self.spawn_and_wait().await {
                Ok(()) => return,
                Err(e) => {
                    last_error = e;
                    self.kill();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        panic!("redis-server did not restart on port {}: {last_error}", self.port);
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("creating {}: {e}", self.log_path().display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cloning the log handle: {e}"))?;
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(pw) = &self.password {
            command.args(["--requirepass", pw]);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("spawning redis-server: {e}"))?;
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "redis-server exited with {status} on port {}; log:\n{}",
                    self.port,
                    log_tail(&self.log_path())
                ));
            }
            if ping(self.port, self.password.as_deref()).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    log_tail(&self.log_path())
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A free loopback port: bind port 0, read the port, release it.
fn free_port() -> u16 {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// A fresh private directory under the system temp dir.
fn private_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "switchboard-redis-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One raw RESP exchange: `[AUTH pw] PING`, true if the server answered `+PONG`.
async fn ping(port: u16, password: Option<&str>) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut request = Vec::new();
        if let Some(pw) = password {
            request.extend_from_slice(&resp_command(&["AUTH", pw]));
        }
        request.extend_from_slice(&resp_command(&["PING"]));
        stream.write_all(&request).await.ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 256];
        while !reply.windows(5).any(|w| w == b"+PONG") {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 || reply.len() > 4096 {
                return None;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(()))
    )
}

/// A command in RESP (array of bulk strings).
pub fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Opens a connection to `url` and runs one command. Redis errors (e.g. `NOAUTH`) come back as
/// `Err`; a connection that cannot be made or a reply that does not come within `STEP` panics.
pub async fn redis_cmd(url: &str, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let (name, rest) = args.split_first().expect("redis_cmd needs a command name");
    let mut command = redis::cmd(name);
    for arg in rest {
        command.arg(*arg);
    }
    let run = async {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        command.query_async::<redis::Value>(&mut connection).await
    };
    tokio::time::timeout(STEP, run)
        .await
        .unwrap_or_else(|_| panic!("redis command {args:?} at {url}: no reply within {STEP:?}"))
}

/// `PUBSUB NUMSUB channel`: how many clients subscribe to exactly this channel.
pub async fn numsub(url: &str, channel: &str) -> i64 {
    let reply = redis_cmd(url, &["PUBSUB", "NUMSUB", channel])
        .await
        .unwrap_or_else(|e| panic!("PUBSUB NUMSUB {channel}: {e}"));
    match reply {
        redis::Value::Array(items) if items.len() == 2 => match &items[1] {
            redis::Value::Int(n) => *n,
            other => panic!("PUBSUB NUMSUB {channel}: unexpected count {other:?}"),
        },
        other => panic!("PUBSUB NUMSUB {channel}: unexpected reply {other:?}"),
    }
}

/// `PUBSUB CHANNELS pattern`, sorted.
pub async fn channels(url: &str, pattern: &str) -> Vec<String> {
    let reply = redis_cmd(url, &["PUBSUB", "CHANNELS", pattern])
        .await
        .unwrap_or_else(|e| panic!("PUBSUB CHANNELS {pattern}: {e}"));
    let mut names: Vec<String> = match reply {
        redis::Value::Array(items) | redis::Value::Set(items) => items.iter().map(value_text).collect(),
        other => panic!("PUBSUB CHANNELS {pattern}: unexpected reply {other:?}"),
    };
    names.sort();
    names
}

/// `PUBLISH channel payload`; returns how many subscribers received it.
pub async fn publish(url: &str, channel: &str, payload: &[u8]) -> i64 {
    let run = async {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut connection)
            .await
    };
    tokio::time::timeout(STEP, run)
        .await
        .unwrap_or_else(|_| panic!("PUBLISH {channel}: no reply within {STEP:?}"))
        .unwrap_or_else(|e| panic!("PUBLISH {channel}: {e}"))
}

/// A bulk or simple string reply as text (lossy); other values in debug form.
pub fn value_text(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Okay => "OK".to_string(),
        other => format!("{other:?}"),
    }
}

/// A PSUBSCRIBE tap: collects every (channel, payload) published on matching channels.
pub struct Tap {
    rx: mpsc::Receiver<(String, Bytes)>,
    seen: Vec<(String, Bytes)>,
    /// Indexes into `seen` already returned by `wait_for`.
    returned: HashSet<usize>,
    task: JoinHandle<()>,
}

impl Tap {
    /// Subscribes to `pattern` (e.g. `"{prefix}*"`); returns once the subscription is active, so
    /// anything published afterwards is seen.
    pub async fn start(url: &str, pattern: &str) -> Tap {
        let subscribe = async {
            let client = redis::Client::open(url)?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(pattern).await?;
            redis::RedisResult::Ok(pubsub)
        };
        let pubsub = tokio::time::timeout(STEP, subscribe)
            .await
            .unwrap_or_else(|_| panic!("PSUBSCRIBE {pattern} at {url}: no reply within {STEP:?}"))
            .unwrap_or_else(|e| panic!("PSUBSCRIBE {pattern} at {url}: {e}"));
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        let task = tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let item = (
                    message.get_channel_name().to_string(),
                    Bytes::copy_from_slice(message.get_payload_bytes()),
                );
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        });
        Tap {
            rx,
            seen: Vec::new(),
            returned: HashSet::new(),
            task,
        }
    }

    /// Moves everything received so far into `seen`.
    fn collect(&mut self) {
        while let Ok(item) = self.rx.try_recv() {
            self.seen.push(item);
        }
    }

    /// Everything seen so far, in arrival order.
    pub fn seen(&mut self) -> &[(String, Bytes)] {
        self.collect();
        &self.seen
    }

    /// The first message not yet returned by `wait_for` that matches `pred`, waiting up to
    /// `timeout` for it. Earlier non-matching messages stay available to later calls.
    pub async fn wait_for(
        &mut self,
        mut pred: impl FnMut(&str, &[u8]) -> bool,
        timeout: Duration,
    ) -> Option<(String, Bytes)> {
        let deadline = Instant::now() + timeout;
        self.collect();
        let mut index = 0;
        loop {
            while index < self.seen.len() {
                let (channel, payload) = &self.seen[index];
                if !self.returned.contains(&index) && pred(channel, payload) {
                    self.returned.insert(index);
                    return Some(self.seen[index].clone());
                }
                index += 1;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(item)) => self.seen.push(item),
                // The subscription ended (server gone) or the time is up.
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Waits `quiet` and returns how many messages seen so far match `pred`.
    pub async fn count_after(&mut self, quiet: Duration, mut pred: impl FnMut(&str, &[u8]) -> bool) -> usize {
        tokio::time::sleep(quiet).await;
        self.collect();
        self.seen.iter().filter(|(c, p)| pred(c, p)).count()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
