//! The demo's private `redis-server`: a child process on a free loopback port with persistence
//! off and its files in a private temp dir, killed on stop and on drop, restartable on the SAME
//! port so nodes and the dashboard's tap reconnect by themselves.
//!
//! Used by the demo runner, the benchmarks, and the integration tests' harness (which adds a
//! password option's tests and panics instead of returning errors).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long a fresh redis-server gets to answer PING (it takes ~10 ms; a loaded laptop more).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `redis-server` is on PATH.
pub fn on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file()))
}

/// A running (or stopped) private redis-server.
pub struct RedisProcess {
    port: u16,
    /// `--requirepass`, if any.
    password: Option<String>,
    dir: PathBuf,
    child: Option<Child>,
}

fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

impl RedisProcess {
    /// Starts a server on a free port and waits until it answers PING.
    pub async fn start() -> Result<RedisProcess, String> {
        Self::start_with_password(None).await
    }

    /// Like [`start`](Self::start), with `--requirepass password` when one is given.
    pub async fn start_with_password(password: Option<&str>) -> Result<RedisProcess, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchboard-demo-redis-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut server = RedisProcess {
            port: free_port()?,
            password: password.map(str::to_string),
            dir,
            child: None,
        };
        let mut last = String::new();
        // The probed port can be taken before redis binds it: try another.
        for _ in 0..3 {
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(e) => {
                    last = e;
                    server.kill();
                    server.port = free_port()?;
                }
            }
        }
        Err(last)
    }

    /// `redis://127.0.0.1:PORT` (without the password, even if one is required).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT` (the same as [`url`](Self::url) without a password).
    pub fn url_with_password(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => self.url(),
        }
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server's output goes (read it when something fails).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Whether the child is alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs the server (a crash, as far as clients can tell) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let mut last = String::new();
        for _ in 0..5 {
            match self.spawn_and_wait().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last = e;
                    self.kill();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Err(last)
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
        let client = redis::Client::open(self.url_with_password()).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_running() {
                return Err(format!(
                    "redis-server exited at once on port {}; log:\n{}",
                    self.port,
                    log_tail(&self.log_path())
                ));
            }
            let ping = async {
                let mut c = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut c).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), ping).await {
                tracing::info!(port = self.port, "demo redis-server up");
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {} did not answer within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    log_tail(&self.log_path())
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
