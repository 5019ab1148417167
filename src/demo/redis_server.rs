//! The demo's private `redis-server`: a child process on a free loopback port with persistence
//! off and its files in a private temp dir, killed on stop and on drop, restartable on the SAME
//! port so nodes and the dashboard's tap reconnect by themselves.
//!
//! It must not outlive the process that started it, even one killed with SIGKILL: on Linux the
//! child asks the kernel for SIGKILL when its parent thread dies (`PR_SET_PDEATHSIG`, set between
//! fork and exec). Spawn it from a long-lived thread (a runtime worker, never a `spawn_blocking`
//! thread, which exits when idle). A SIGKILLed process cannot remove its folder, so every folder
//! lives under one known parent, `{temp}/switchboard-demo-redis/`, named `{owner pid}-{n}`, and
//! every start sweeps the folders whose owner is gone.
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

/// The known parent of every private server's folder (see the module docs).
pub fn folders_parent() -> PathBuf {
    std::env::temp_dir().join("switchboard-demo-redis")
}

/// Whether process `pid` is alive (a process we may not signal counts as alive).
fn pid_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: kill with signal 0 only checks for the process; it sends nothing.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Removes the folders under `parent` whose owner process is gone; returns how many.
pub fn sweep_stale_folders(parent: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner
            && pid != std::process::id()
            && !pid_alive(pid)
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            tracing::info!(folder = %entry.path().display(), "removed a stale demo redis folder");
            removed += 1;
        }
    }
    removed
}

/// A running (or stopped) private redis-server.
pub struct RedisProcess {
    port: u16,
    /// `--requirepass`, if any.
    password: Option<String>,
    dir: PathBuf,
    child: OwnedChild,
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
        let parent = folders_parent();
        sweep_stale_folders(&parent);
        let dir = parent.join(format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut server = RedisProcess {
            port: free_port()?,
            password: password.map(str::to_string),
            dir,
            child: OwnedChild::default(),
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

    /// The server's folder (removed on drop; swept by a later start if this process is killed).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The child's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Whether the child is alive.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// SIGKILLs the server (a crash, as far as clients can tell) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill();
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
            .args(private_args(&self.dir))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(pw) = &self.password {
            command.args(["--requirepass", pw]);
        }
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| format!("spawning redis-server: {e}"))?;
        self.child.set(child);
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

/// A child process owned by one server handle (the demo's, the tests'): at most one at a time.
#[derive(Debug, Default)]
pub struct OwnedChild(Option<Child>);

impl OwnedChild {
    /// Owns `child` (a previous one must have been killed).
    pub fn set(&mut self, child: Child) {
        self.0 = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// Whether the child is alive.
    pub fn is_running(&mut self) -> bool {
        self.0.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The arguments every private `redis-server` here gets (the demo's, and the tests' plain, TLS,
/// cluster and sentinel servers): loopback only, nothing persisted, in the foreground, working in
/// `dir`.
pub fn private_args(dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    args.push(dir.into());
    args
}

/// Has the child killed by the kernel when the spawning thread dies (Linux `PR_SET_PDEATHSIG`),
/// so a SIGKILLed demo leaves no redis-server behind. Also used by the tests' TLS redis-server.
#[cfg(target_os = "linux")]
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: runs in the child between fork and exec and calls only async-signal-safe functions
    // (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody will signal us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_command: &mut Command) {}

/// The last lines of a log file, for error messages (also the tests' servers').
pub fn log_tail(path: &std::path::Path) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_removes_only_folders_whose_owner_is_gone() {
        let parent = std::env::temp_dir().join(format!("switchboard-sweep-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        // A pid far above Linux's pid_max (4,194,304) is never alive.
        let dead = parent.join("999999999-0");
        let mine = parent.join(format!("{}-0", std::process::id()));
        let other = parent.join("not-a-pid");
        for d in [&dead, &mine, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        assert_eq!(sweep_stale_folders(&parent), 1);
        assert!(!dead.exists());
        assert!(mine.exists() && other.exists());
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
