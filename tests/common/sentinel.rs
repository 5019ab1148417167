//! A test-owned Sentinel set on loopback: a primary, one replica (`--replicaof`) and three
//! `redis-sentinel` processes (quorum 2, `down-after-milliseconds 1000`, `failover-timeout 3000`),
//! each with its own config copy (sentinels rewrite their file) in its own temp folder.
//!
//! `start` returns once every sentinel knows the replica and the two other sentinels and the
//! replica's link is up, so a kill of the primary is failed over (in ~2-4 s here).
//! Processes are [`ServerProcess`]es (the crate's one server builder; a sentinel writes its
//! `port`/`bind`/`dir` lines and these monitor lines into its file, and is ready when `SENTINEL
//! MASTERS` answers): SIGKILLed on `Drop` and when the test process dies.

use std::time::Duration;

use tokio::time::Instant;

use super::cluster::{FAILOVER, ServerProcess, info_field, try_cmd};
use super::redis::{redis_available, value_text};
use switchboard::demo::redis_server::RedisProcess;

/// The master name the sentinels monitor.
pub const MASTER: &str = "mymaster";
/// How long the set gets to discover itself (sentinels say hello every 2 s).
const DISCOVERY: Duration = Duration::from_secs(30);

pub struct SentinelSet {
    /// The data nodes: index 0 started as the primary, index 1 as its replica.
    pub data: Vec<ServerProcess>,
    pub sentinels: Vec<ServerProcess>,
}

impl SentinelSet {
    /// Starts the primary, the replica and three sentinels; waits until the set is ready to fail over.
    pub async fn start() -> SentinelSet {
        assert!(
            redis_available(),
            "redis-server not found on PATH: install redis-server and redis-sentinel (or run ./scripts/test.sh)"
        );
        let primary = ServerProcess::spawn(RedisProcess::builder()).await;
        let primary_port = primary.port;
        let replica = ServerProcess::spawn(RedisProcess::builder().args([
            "--replicaof".to_string(),
            "127.0.0.1".to_string(),
            primary_port.to_string(),
        ]))
        .await;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let monitor = format!(
                "sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 3000\n\
                 sentinel parallel-syncs {MASTER} 1"
            );
            sentinels.push(ServerProcess::spawn(RedisProcess::builder().sentinel(&monitor)).await);
        }
        let set = SentinelSet {
            data: vec![primary, replica],
            sentinels,
        };
        set.wait_ready().await;
        set
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + DISCOVERY;
        loop {
            let mut ready = link_up(self.data[1].port).await;
            for sentinel in &self.sentinels {
                let fields = master_fields(sentinel.port).await;
                let get = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| k == name)
                        .and_then(|(_, v)| v.parse::<i64>().ok())
                };
                ready &= get("num-other-sentinels") == Some(2) && get("num-slaves") == Some(1);
            }
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinel set was not ready within {DISCOVERY:?}; first sentinel's log:\n{}",
                super::cluster::log_tail(&self.sentinels[0].log_path())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The data nodes' ports (index 0 started as the primary).
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(|s| s.port).collect()
    }

    /// Where the sentinels say the primary is now (the first sentinel that answers).
    pub async fn primary_port(&self) -> u16 {
        for sentinel in &self.sentinels {
            if let Some(port) = sentinel_primary(sentinel.port).await {
                return port;
            }
        }
        panic!("no sentinel answered SENTINEL GET-MASTER-ADDR-BY-NAME {MASTER}");
    }

    /// SIGKILLs the current primary; returns its port.
    pub async fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().await;
        self.kill_data(port);
        port
    }

    /// SIGKILLs the data node on `port`.
    pub fn kill_data(&mut self, port: u16) {
        self.data
            .iter_mut()
            .find(|d| d.port == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"))
            .kill();
    }

    /// Starts the data node on `port` again with its first arguments (the sentinels turn a
    /// demoted primary into a replica of the new one within a few seconds).
    pub async fn restart_data(&mut self, port: u16) {
        self.data
            .iter_mut()
            .find(|d| d.port == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"))
            .start()
            .await;
    }

    /// After the primary on `old` died, waits until every sentinel names another primary and that
    /// node says `role:master`; returns its port.
    pub async fn wait_failover(&self, old: u16) -> u16 {
        let deadline = Instant::now() + FAILOVER;
        loop {
            let mut named = Vec::new();
            for sentinel in &self.sentinels {
                named.push(sentinel_primary(sentinel.port).await);
            }
            if let Some(Some(port)) = named.first()
                && *port != old
                && named.iter().all(|p| *p == Some(*port))
                && role(*port).await.as_deref() == Some("master")
            {
                return *port;
            }
            assert!(
                Instant::now() < deadline,
                "no failover away from port {old} within {FAILOVER:?} (sentinels say {named:?}); first sentinel's log:\n{}",
                super::cluster::log_tail(&self.sentinels[0].log_path())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `INFO replication` `role` of the server on `port` (`master` / `slave`).
pub async fn role(port: u16) -> Option<String> {
    let info = try_cmd(port, &["INFO", "replication"]).await?;
    info_field(&value_text(&info), "role")
}

async fn link_up(port: u16) -> bool {
    let Some(info) = try_cmd(port, &["INFO", "replication"]).await else {
        return false;
    };
    info_field(&value_text(&info), "master_link_status").as_deref() == Some("up")
}

async fn sentinel_primary(port: u16) -> Option<u16> {
    match try_cmd(port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]).await? {
        redis::Value::Array(items) if items.len() == 2 => value_text(&items[1]).parse().ok(),
        _ => None,
    }
}

async fn master_fields(port: u16) -> Vec<(String, String)> {
    let reply = try_cmd(port, &["SENTINEL", "MASTER", MASTER]).await;
    match reply {
        Some(redis::Value::Array(items)) => items
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (value_text(&c[0]), value_text(&c[1])))
            .collect(),
        Some(redis::Value::Map(pairs)) => pairs
            .iter()
            .map(|(k, v)| (value_text(k), value_text(v)))
            .collect(),
        _ => Vec::new(),
    }
}
