//! The one way to start a private `redis-server` (the demo's, the benchmarks', the tests'): a
//! child process on a free loopback port with persistence off and its files in a private temp
//! dir, killed on stop and on drop, restartable on the SAME port so nodes and the dashboard's tap
//! reconnect by themselves. [`RedisBuilder`] adds what the tests need: a password, TLS, a cluster
//! node, a sentinel, extra arguments, a readiness check of their own.
//!
//! It must not outlive the process that started it, even one killed with SIGKILL: on Linux the
//! child asks the kernel for SIGKILL when its parent thread dies (`PR_SET_PDEATHSIG`, set between
//! fork and exec). Spawn it from a long-lived thread (a runtime worker, never a `spawn_blocking`
//! thread, which exits when idle). A SIGKILLed process cannot remove its folder, so every folder
//! lives under one known parent, `{temp}/switchboard-demo-redis/`, named `{owner pid}-{n}`, and
//! every start sweeps the folders whose owner is gone.
//!
//! Used by the demo runner, the benchmarks, and the integration tests' harness (`tests/common/`:
//! `redis`, `certs`, `cluster`, `sentinel` are thin users that panic instead of returning errors).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long a fresh redis-server gets to answer PING (it takes ~10 ms; a loaded laptop more).
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one readiness probe may take before the next is tried (a TLS handshake included).
const READY_PROBE: Duration = Duration::from_millis(1000);

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

/// What a fresh server must answer before [`RedisBuilder::start`] returns it.
#[derive(Clone)]
pub enum Readiness {
    /// `PING` on the plain port (with the password, if one is set): a data node.
    Ping,
    /// `SENTINEL MASTERS` on the plain port: a sentinel that has read its configuration.
    SentinelMasters,
    /// The caller's own check on the port (the tests' PING over TLS with their certificates):
    /// `Ok` once the server answers, `Err(why not)` until then.
    Custom(ReadyCheck),
}

/// A readiness check on a port: see [`Readiness::Custom`].
pub type ReadyCheck =
    Arc<dyn Fn(u16) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The files of a TLS-only server (`--port 0 --tls-port P`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that client certificates must be signed by.
    pub ca: PathBuf,
    /// `--tls-auth-clients yes` (mutual TLS) or `no`.
    pub auth_clients: bool,
}

/// The one way to start a private `redis-server` or `redis-sentinel` here (the demo's, the
/// benchmarks', and the tests' plain, password, TLS, cluster-node and sentinel servers): a free
/// loopback port (with its cluster-bus port free too for a cluster node), a private folder, the
/// [`private_args`], a readiness check, `PR_SET_PDEATHSIG`, and on failure the log's tail.
#[derive(Clone)]
pub struct RedisBuilder {
    kind: &'static str,
    password: Option<String>,
    tls: Option<TlsFiles>,
    cluster: bool,
    /// The monitor lines of a sentinel's configuration file (`None`: a data node).
    sentinel: Option<String>,
    args: Vec<std::ffi::OsString>,
    readiness: Readiness,
}

impl Default for RedisBuilder {
    fn default() -> Self {
        RedisBuilder {
            kind: "redis",
            password: None,
            tls: None,
            cluster: false,
            sentinel: None,
            args: Vec::new(),
            readiness: Readiness::Ping,
        }
    }
}

impl RedisBuilder {
    /// `--requirepass password` (the readiness PING authenticates with it).
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// Serves TLS only on the port, with these files. Set a [`Readiness::Custom`] check too: the
    /// plain PING cannot reach a TLS-only server.
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// A cluster node: `--cluster-enabled yes --cluster-config-file nodes.conf`, on a port whose
    /// bus port (`port + 10000`) is free too. Timeouts and the like go in [`arg`](Self::arg)s.
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self.kind = "cluster";
        self
    }

    /// A `redis-sentinel` whose configuration file is `port`, `bind 127.0.0.1`, `daemonize no`,
    /// `dir` and then `monitor_lines` (the `sentinel monitor ...` lines). Written once: a sentinel
    /// rewrites its own file, and a restart keeps what it learned. Ready when `SENTINEL MASTERS`
    /// answers.
    pub fn sentinel(mut self, monitor_lines: &str) -> Self {
        self.sentinel = Some(monitor_lines.to_string());
        self.kind = "sentinel";
        self.readiness = Readiness::SentinelMasters;
        self
    }

    /// Extra command-line arguments for a data node (`--replicaof`, timeouts, ...).
    pub fn arg(mut self, arg: impl Into<std::ffi::OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Several extra arguments: see [`arg`](Self::arg).
    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<std::ffi::OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// What must answer before `start` returns (default: [`Readiness::Ping`]).
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Starts the server on a free port in a fresh private folder and waits until it is ready.
    /// The probed port can be taken before the server binds it: then another is tried (3 in all).
    pub async fn start(self) -> Result<RedisProcess, String> {
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
            port: self.pick_port()?,
            dir,
            child: OwnedChild::default(),
            spec: Box::new(self),
        };
        let mut last = String::new();
        for _ in 0..3 {
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(e) => {
                    last = e;
                    server.kill();
                    // A sentinel's file names its port: write it again for the new one.
                    let _ = std::fs::remove_file(server.sentinel_config_path());
                    server.port = server.spec.pick_port()?;
                }
            }
        }
        Err(last)
    }

    fn pick_port(&self) -> Result<u16, String> {
        if self.cluster {
            free_port_with_bus()
        } else {
            free_port()
        }
    }
}

/// A running (or stopped) private redis-server or sentinel, started by a [`RedisBuilder`].
pub struct RedisProcess {
    port: u16,
    dir: PathBuf,
    child: OwnedChild,
    /// How it was started (restarts start it the same way, on the same port); boxed so a handle
    /// stays small where it sits in an enum.
    spec: Box<RedisBuilder>,
}

/// A free loopback port: bound to `127.0.0.1:0` and released, so the server can bind it (another
/// process may take it first: starters retry). The one `free_port` of the crate and its tests.
pub fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// A free loopback port whose cluster-bus port (`port + 10000`) is free too.
pub fn free_port_with_bus() -> Result<u16, String> {
    for _ in 0..200 {
        let port = free_port()?;
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port pair (port, port + 10000) after 200 tries".to_string())
}

impl RedisProcess {
    /// A builder for a server with options (password, TLS, cluster node, sentinel, arguments).
    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    /// Starts a plain server on a free port and waits until it answers PING.
    pub async fn start() -> Result<RedisProcess, String> {
        Self::builder().start().await
    }

    /// Like [`start`](Self::start), with `--requirepass password` when one is given.
    pub async fn start_with_password(password: Option<&str>) -> Result<RedisProcess, String> {
        match password {
            Some(pw) => Self::builder().password(pw).start().await,
            None => Self::start().await,
        }
    }

    /// `redis://127.0.0.1:PORT` (without the password, even if one is required).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT` (the same as [`url`](Self::url) without a password).
    pub fn url_with_password(&self) -> String {
        match &self.spec.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => self.url(),
        }
    }

    /// The port it listens on (kept across restarts; the TLS port of a TLS server).
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

    /// Starts it again on the same port, the same way (killing it first if it still runs).
    pub async fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let mut last = String::new();
        // The port may linger in the kernel for a moment after the kill: try again.
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

    fn sentinel_config_path(&self) -> PathBuf {
        self.dir.join("sentinel.conf")
    }

    fn command(&self) -> Result<Command, String> {
        let spec = &self.spec;
        if let Some(monitor_lines) = &spec.sentinel {
            let config = self.sentinel_config_path();
            if !config.exists() {
                let text = format!(
                    "port {}\nbind 127.0.0.1\ndaemonize no\ndir {}\n{monitor_lines}\n",
                    self.port,
                    self.dir.display()
                );
                std::fs::write(&config, text).map_err(|e| format!("writing {}: {e}", config.display()))?;
            }
            let mut command = Command::new("redis-sentinel");
            command.arg(config);
            return Ok(command);
        }
        let mut command = Command::new("redis-server");
        match &spec.tls {
            None => {
                command.arg("--port").arg(self.port.to_string());
            }
            Some(tls) => {
                command
                    .args(["--port", "0", "--tls-port"])
                    .arg(self.port.to_string())
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca)
                    .arg("--tls-auth-clients")
                    .arg(if tls.auth_clients { "yes" } else { "no" });
            }
        }
        command.args(private_args(&self.dir));
        if spec.cluster {
            command.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
        }
        if let Some(pw) = &spec.password {
            command.args(["--requirepass", pw]);
        }
        command.args(&spec.args);
        Ok(command)
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
        let mut command = self.command()?;
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| format!("spawning the {} server: {e}", self.spec.kind))?;
        self.child.set(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_running() {
                return Err(format!(
                    "the {} server exited at once on port {}; log:\n{}",
                    self.spec.kind,
                    self.port,
                    log_tail(&self.log_path())
                ));
            }
            let last = match tokio::time::timeout(READY_PROBE, self.ready()).await {
                Ok(Ok(())) => {
                    tracing::info!(port = self.port, kind = self.spec.kind, "private redis up");
                    return Ok(());
                }
                Ok(Err(e)) => e,
                Err(_) => format!("no answer within {READY_PROBE:?}"),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "the {} server on port {} was not ready within {READY_TIMEOUT:?} ({last}); log:\n{}",
                    self.spec.kind,
                    self.port,
                    log_tail(&self.log_path())
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One readiness probe (see [`Readiness`]).
    async fn ready(&self) -> Result<(), String> {
        let command = match &self.spec.readiness {
            Readiness::Custom(check) => return check(self.port).await,
            Readiness::Ping => redis::cmd("PING"),
            Readiness::SentinelMasters => {
                let mut c = redis::cmd("SENTINEL");
                c.arg("MASTERS");
                c
            }
        };
        let client = redis::Client::open(self.url_with_password()).map_err(|e| e.to_string())?;
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        command
            .query_async::<redis::Value>(&mut c)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// The child process of one [`RedisProcess`]: at most one at a time.
#[derive(Debug, Default)]
struct OwnedChild(Option<Child>);

impl OwnedChild {
    /// Owns `child` (a previous one must have been killed).
    fn set(&mut self, child: Child) {
        self.0 = Some(child);
    }

    fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// Whether the child is alive.
    fn is_running(&mut self) -> bool {
        self.0.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs the child and reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The arguments every private `redis-server` here gets: loopback only, nothing persisted, in the
/// foreground, working in `dir`.
fn private_args(dir: &std::path::Path) -> Vec<std::ffi::OsString> {
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
/// so a SIGKILLed demo (or test binary) leaves no redis-server behind.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
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
fn die_with_parent(_command: &mut Command) {}

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
