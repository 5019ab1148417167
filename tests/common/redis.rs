//! A test-owned `redis-server` on a free loopback port, and small Redis helpers: one-shot commands
//! (`redis_cmd`, `PUBSUB` introspection) and a PSUBSCRIBE tap that collects (channel, payload)
//! pairs for assertions.
//!
//! The server is the crate's `demo::redis_server::RedisProcess`: a foreground child process with
//! persistence off and its files in a private temp dir; the test kills it (SIGKILL) or restarts it
//! on the same port to simulate faults, and `Drop` always kills it. A missing `redis-server` FAILS the test with
//! instructions: CI installs it, so a silent skip would hide a broken setup.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use switchboard::demo::redis_server::RedisProcess;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::STEP;

/// Messages a tap holds before its reader waits (backpressure on the Redis socket, never loss).
const TAP_QUEUE: usize = 4096;

/// Whether `redis-server` is on PATH.
pub fn redis_available() -> bool {
    switchboard::demo::redis_server::on_path()
}

/// A `redis-server` child process owned by the test: the crate's own
/// [`RedisProcess`](switchboard::demo::redis_server::RedisProcess), which fails the test instead of
/// returning errors.
pub struct RedisServer {
    inner: RedisProcess,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers PING.
    /// Panics (failing the test) if `redis-server` is not installed or does not come up.
    pub async fn start() -> RedisServer {
        Self::start_inner(None).await
    }

    /// Like [`start`](Self::start), with `--requirepass password`.
    pub async fn start_with_password(password: &str) -> RedisServer {
        Self::start_inner(Some(password)).await
    }

    async fn start_inner(password: Option<&str>) -> RedisServer {
        assert!(
            redis_available(),
            "redis-server not found on PATH: install it (apt-get install -y redis-server) or run ./scripts/test.sh"
        );
        match RedisProcess::start_with_password(password).await {
            Ok(inner) => RedisServer { inner },
            Err(e) => panic!("redis-server did not start: {e}"),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    /// `redis://127.0.0.1:P` (without the password, even if one is required).
    pub fn url(&self) -> String {
        self.inner.url()
    }

    /// `redis://:PASSWORD@127.0.0.1:P` (same as `url()` when no password is set).
    pub fn url_with_password(&self) -> String {
        self.inner.url_with_password()
    }

    /// Where the server's log goes (read it when a test fails).
    pub fn log_path(&self) -> PathBuf {
        self.inner.log_path()
    }

    /// Whether the process is running (it was started and not killed or crashed).
    pub fn is_running(&mut self) -> bool {
        self.inner.is_running()
    }

    /// SIGKILLs the server and reaps it: connections drop at once, as in a crash.
    pub fn kill(&mut self) {
        self.inner.kill();
    }

    /// Starts the server again on the same port (killing it first if still running) and waits
    /// until it answers. The data is gone (no persistence), as after a real restart.
    pub async fn restart(&mut self) {
        if let Err(e) = self.inner.restart().await {
            panic!("redis-server did not restart on port {}: {e}", self.port());
        }
    }
}

/// A command in RESP (array of bulk strings), through the crate's own encoder
/// (`backplane::redis::resp::command`), for tests that write to a raw socket.
pub fn resp_command(args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    switchboard::backplane::redis::resp::command(&args)
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

    /// How many messages matching `pred` arrived before the first one matching `is_marker`
    /// (waiting up to `timeout` for it; panics if it never comes). The marker is a positive
    /// signal: publish it after the action under test, on a path that orders it after whatever
    /// that action could have caused (the same publisher and channel), so "none before the
    /// marker" means "none at all", without a timed wait.
    pub async fn count_before_marker(
        &mut self,
        mut is_marker: impl FnMut(&str, &[u8]) -> bool,
        mut pred: impl FnMut(&str, &[u8]) -> bool,
        timeout: Duration,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        self.collect();
        let mut index = 0;
        loop {
            while index < self.seen.len() {
                let (channel, payload) = &self.seen[index];
                if is_marker(channel, payload) {
                    return self.seen[..index].iter().filter(|(c, p)| pred(c, p)).count();
                }
                index += 1;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(item)) => self.seen.push(item),
                Ok(None) => panic!("the tap's subscription ended before the marker came"),
                Err(_) => panic!("the tap saw no marker within {timeout:?}"),
            }
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
