//! A test-owned Redis Cluster on loopback: N primaries and R replicas per primary, each a
//! `redis-server --cluster-enabled yes` in its own temp folder, joined with
//! `redis-cli --cluster create ... --cluster-replicas R --cluster-yes`.
//!
//! Also the process handle [`ServerProcess`] that `sentinel.rs` shares: the crate's
//! `demo::redis_server::RedisProcess` (the one way to start a server: a child `redis-server` or
//! `redis-sentinel` that dies with the test process (Linux `PR_SET_PDEATHSIG`), is SIGKILLed by
//! `kill` and on `Drop`, and keeps its files (config, log, nodes.conf) in a private folder that
//! `Drop` removes), panicking instead of returning errors.
//!
//! Ports: a cluster node also listens on `port + 10000` (the cluster bus); the builder's
//! `cluster()` checks both free. A missing `redis-server` / `redis-cli` FAILS the test with instructions (CI installs them).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use super::redis::{redis_available, redis_cmd, value_text};
pub use switchboard::demo::redis_server::log_tail;
use switchboard::demo::redis_server::{RedisBuilder, RedisProcess};

/// How long `cluster create` and the first `cluster_state:ok` may take (a few seconds here).
const FORM: Duration = Duration::from_secs(30);
/// How long a failover may take (node timeout 1 s; promotion takes ~2 s here).
pub const FAILOVER: Duration = Duration::from_secs(30);

/// A `redis-server` (data or cluster node) or `redis-sentinel` owned by the test: the crate's
/// [`RedisProcess`], started by its one builder, which fails the test instead of returning errors.
pub struct ServerProcess {
    /// The port it listens on (kept across restarts).
    pub port: u16,
    inner: RedisProcess,
}

impl ServerProcess {
    /// Starts the server `builder` describes on a free port and waits until it is ready.
    pub async fn spawn(builder: RedisBuilder) -> ServerProcess {
        match builder.start().await {
            Ok(inner) => ServerProcess {
                port: inner.port(),
                inner,
            },
            Err(e) => panic!("{e}"),
        }
    }

    /// Restarts the process the same way on the same port and waits until it is ready.
    pub async fn start(&mut self) {
        if let Err(e) = self.inner.restart().await {
            panic!("restarting the server on port {}: {e}", self.port);
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.inner.log_path()
    }

    pub fn url(&self) -> String {
        self.inner.url()
    }

    pub fn is_running(&mut self) -> bool {
        self.inner.is_running()
    }

    /// SIGKILL and reap: a crash, as far as clients and peers can tell.
    pub fn kill(&mut self) {
        self.inner.kill();
    }
}

/// One command with a short deadline, `None` on any failure (for polling loops).
pub async fn try_cmd(port: u16, args: &[&str]) -> Option<redis::Value> {
    let (name, rest) = args.split_first()?;
    let mut command = redis::cmd(name);
    for arg in rest {
        command.arg(*arg);
    }
    let run = async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let mut c = client.get_multiplexed_async_connection().await?;
        command.query_async::<redis::Value>(&mut c).await
    };
    match tokio::time::timeout(Duration::from_millis(1000), run).await {
        Ok(Ok(v)) => Some(v),
        _ => None,
    }
}

/// `field:value` from an INFO-style text reply.
pub fn info_field(text: &str, field: &str) -> Option<String> {
    text.lines().find_map(|line| {
        line.trim()
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::to_string)
    })
}

fn redis_cli_available() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("redis-cli").is_file()))
}

/// A running Redis Cluster owned by the test.
pub struct RedisCluster {
    nodes: Vec<ServerProcess>,
    primaries: usize,
    /// (port, first slot) of each primary killed by `kill_primary`, for `wait_failover`.
    killed_slots: Vec<(u16, u16)>,
}

/// One node as `CLUSTER NODES` shows it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    /// Whether the node is flagged failed (`fail`) or `noaddr`.
    pub failed: bool,
    /// The primary's id for a replica.
    pub primary_id: Option<String>,
    /// Slot ranges served (primaries only), inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// [`RedisCluster::start`] within a minute (forming a cluster takes a few seconds; a loaded CI
    /// machine may need more), panicking with a label past it.
    pub async fn formed(primaries: usize, replicas: usize) -> RedisCluster {
        super::within_for(
            &format!("forming a {primaries}+{} cluster", primaries * replicas),
            Duration::from_secs(60),
            RedisCluster::start(primaries, replicas),
        )
        .await
    }

    /// Starts `primaries` primaries with `replicas` replicas each, joins them, and waits until every
    /// node reports `cluster_state:ok` and knows every other node. Panics with the logs on failure.
    pub async fn start(primaries: usize, replicas: usize) -> RedisCluster {
        assert!(
            redis_available() && redis_cli_available(),
            "redis-server and redis-cli must be on PATH: apt-get install -y redis-server (or run ./scripts/test.sh)"
        );
        assert!(
            primaries >= 3,
            "redis-cli --cluster create needs at least 3 primaries"
        );
        let count = primaries * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            let node = RedisProcess::builder().cluster().args([
                "--cluster-node-timeout",
                "1000",
                // A replica that never finished its first sync would otherwise refuse to fail
                // over ("Disconnected from master for longer than allowed").
                "--cluster-replica-validity-factor",
                "0",
            ]);
            nodes.push(ServerProcess::spawn(node).await);
        }
        let cluster = RedisCluster {
            nodes,
            primaries,
            killed_slots: Vec::new(),
        };
        cluster.create(replicas).await;
        cluster.wait_ok(count).await;
        cluster
    }

    async fn create(&self, replicas: usize) {
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        // redis-cli runs on a blocking thread (tokio's `process` feature is not enabled); it
        // finishes in a few seconds and fails on its own when a node does not answer.
        let run = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .args(&args)
                .stdin(Stdio::null())
                .output()
        });
        let output = tokio::time::timeout(FORM, run)
            .await
            .unwrap_or_else(|_| panic!("redis-cli --cluster create took over {FORM:?}"))
            .expect("the redis-cli thread")
            .unwrap_or_else(|e| panic!("running redis-cli --cluster create: {e}"));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && text.contains("All 16384 slots covered"),
            "redis-cli --cluster create failed ({}):\n{text}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Waits until every running node says `cluster_state:ok` and sees `known` nodes.
    async fn wait_ok(&self, known: usize) {
        let deadline = Instant::now() + FORM;
        loop {
            let mut all = true;
            for node in &self.nodes {
                let info = try_cmd(node.port, &["CLUSTER", "INFO"])
                    .await
                    .map(|v| value_text(&v));
                let ok = info.as_deref().is_some_and(|t| {
                    info_field(t, "cluster_state").as_deref() == Some("ok")
                        && info_field(t, "cluster_known_nodes").and_then(|n| n.parse::<usize>().ok())
                            >= Some(known)
                });
                all &= ok;
            }
            if all {
                all &= self.replicas_linked().await;
            }
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within {FORM:?}; first node's log:\n{}",
                log_tail(&self.nodes[0].log_path())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether every replica's link to its primary is up (initial sync done).
    async fn replicas_linked(&self) -> bool {
        for node in &self.nodes {
            let Some(info) = try_cmd(node.port, &["INFO", "replication"]).await else {
                return false;
            };
            let text = value_text(&info);
            if info_field(&text, "role").as_deref() == Some("slave")
                && info_field(&text, "master_link_status").as_deref() != Some("up")
            {
                return false;
            }
        }
        true
    }

    /// Every node's port (primaries and replicas, running or not), in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The number of shards (primaries) the cluster was created with.
    pub fn shard_count(&self) -> usize {
        self.primaries
    }

    /// `redis://127.0.0.1:P` for one node.
    pub fn url_of(&self, port: u16) -> String {
        format!("redis://127.0.0.1:{port}")
    }

    /// A seed URL naming every node (`redis://127.0.0.1:P1,127.0.0.1:P2,...`).
    pub fn seeds_url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis://{}", seeds.join(","))
    }

    /// A running node's port, to ask the cluster questions.
    fn live_port(&mut self) -> u16 {
        self.nodes
            .iter_mut()
            .find_map(|n| n.is_running().then_some(n.port))
            .expect("no cluster node is running")
    }

    /// The cluster as a running node sees it (`CLUSTER NODES`).
    pub async fn view(&mut self) -> Vec<NodeView> {
        let port = self.live_port();
        let text = value_text(
            &redis_cmd(&self.url_of(port), &["CLUSTER", "NODES"])
                .await
                .unwrap_or_else(|e| panic!("CLUSTER NODES on {port}: {e}")),
        );
        parse_nodes(&text)
    }

    /// The primaries' ports, ordered by their first slot (primary 0 owns slot 0).
    pub async fn primary_ports(&mut self) -> Vec<u16> {
        let mut primaries: Vec<NodeView> = self
            .view()
            .await
            .into_iter()
            .filter(|n| n.primary && !n.failed && !n.slots.is_empty())
            .collect();
        primaries.sort_by_key(|n| n.slots[0].0);
        primaries.iter().map(|n| n.port).collect()
    }

    /// The port of the primary that owns `slot` now.
    pub async fn owner_of(&mut self, slot: u16) -> u16 {
        self.view()
            .await
            .into_iter()
            .find(|n| n.primary && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no primary owns slot {slot}"))
    }

    /// SIGKILLs the node on `port`.
    pub fn kill_port(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"));
        node.kill();
    }

    /// Starts the node on `port` again (it rejoins from its nodes.conf, as a replica if it was
    /// failed over).
    pub async fn restart_port(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"));
        node.start().await;
    }

    /// SIGKILLs primary `i` (ordered by first slot); returns its port.
    pub async fn kill_primary(&mut self, i: usize) -> u16 {
        let mut primaries: Vec<NodeView> = self
            .view()
            .await
            .into_iter()
            .filter(|n| n.primary && !n.failed && !n.slots.is_empty())
            .collect();
        primaries.sort_by_key(|n| n.slots[0].0);
        let node = primaries
            .get(i)
            .unwrap_or_else(|| panic!("no primary {i}: primaries are {primaries:?}"));
        let (port, slot) = (node.port, node.slots[0].0);
        self.killed_slots.push((port, slot));
        self.kill_port(port);
        port
    }

    /// After killing the primary on `dead` (with [`kill_primary`](Self::kill_primary)), waits
    /// until a replica took its slots and every running node says `cluster_state:ok`; returns the
    /// new owner's port.
    pub async fn wait_failover(&mut self, dead: u16) -> u16 {
        let slot = self
            .killed_slots
            .iter()
            .find(|(port, _)| *port == dead)
            .map(|(_, slot)| *slot)
            .unwrap_or_else(|| panic!("port {dead} was not killed with kill_primary"));
        let deadline = Instant::now() + FAILOVER;
        loop {
            let mut ok = true;
            for node in self.nodes.iter_mut() {
                if !node.is_running() {
                    continue;
                }
                let state = try_cmd(node.port, &["CLUSTER", "INFO"])
                    .await
                    .map(|v| value_text(&v));
                ok &= state
                    .as_deref()
                    .and_then(|t| info_field(t, "cluster_state"))
                    .as_deref()
                    == Some("ok");
            }
            if ok {
                let view = self.view().await;
                let owner = view
                    .iter()
                    .find(|n| {
                        n.primary && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
                    })
                    .map(|n| n.port);
                if let Some(port) = owner
                    && port != dead
                {
                    return port;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no failover of the primary on port {dead} within {FAILOVER:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Parses `CLUSTER NODES` text.
pub fn parse_nodes(text: &str) -> Vec<NodeView> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            // 127.0.0.1:30001@40001[,hostname]
            let port = fields[1]
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse::<u16>()
                .ok()?;
            let flags = fields[2];
            let primary = flags.split(',').any(|f| f == "master");
            let failed = flags.split(',').any(|f| f == "fail" || f == "noaddr");
            let primary_id = (fields[3] != "-").then(|| fields[3].to_string());
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => {
                        let n = s.parse().ok()?;
                        Some((n, n))
                    }
                })
                .collect();
            Some(NodeView {
                id: fields[0].to_string(),
                port,
                primary,
                failed,
                primary_id,
                slots,
            })
        })
        .collect()
}

/// The delivery matrix between two nodes on one backplane (used on a cluster and a sharded
/// cluster): all, others, group (joined on B, sent from A), user, connection, and a remote
/// AddToGroup that the owner acks (the group send that follows reaches the added connection).
pub async fn delivery_matrix(a: &switchboard::hub::NodeHandle, b: &switchboard::hub::NodeHandle) {
    use super::{STEP, connect, expect_message, expect_nothing_before_own, within};
    use switchboard::client::str_args;
    use switchboard::protocol::{CompletionResult, Protocol};

    let mut a1 = connect(a, Protocol::Json, Some("alice")).await;
    let mut b1 = connect(b, Protocol::MessagePack, Some("bob")).await;
    let mut b2 = connect(b, Protocol::Json, Some("bob")).await;
    let mut b3 = connect(b, Protocol::Json, Some("carol")).await;
    let receive = |user: &str, text: &str| str_args(&[user, text]);

    a1.invoke("SendMessage", str_args(&["alice", "hello all"]))
        .await
        .expect("SendMessage");
    for c in [&mut a1, &mut b1, &mut b2, &mut b3] {
        assert_eq!(
            expect_message(c, "ReceiveMessage", STEP).await,
            receive("alice", "hello all")
        );
    }
    a1.invoke("SendToOthers", str_args(&["alice", "not me"]))
        .await
        .expect("SendToOthers");
    for c in [&mut b1, &mut b2, &mut b3] {
        assert_eq!(
            expect_message(c, "ReceiveMessage", STEP).await,
            receive("alice", "not me")
        );
    }
    // No other client on A to witness it: the marker is an All from a1 on the same channel (one
    // shard, one order), and it is the first thing a1 receives.
    a1.invoke("SendMessage", str_args(&["marker", "after others"]))
        .await
        .expect("SendMessage");
    for c in [&mut a1, &mut b1, &mut b2, &mut b3] {
        assert_eq!(
            expect_message(c, "ReceiveMessage", STEP).await,
            receive("marker", "after others")
        );
    }

    assert_eq!(
        b1.invoke("JoinGroup", str_args(&["room"]))
            .await
            .expect("JoinGroup"),
        CompletionResult::Void
    );
    a1.invoke("SendToGroup", str_args(&["room", "alice", "to the room"]))
        .await
        .expect("SendToGroup");
    assert_eq!(
        expect_message(&mut b1, "ReceiveMessage", STEP).await,
        receive("alice", "to the room")
    );
    // b1 on the same node got it (the witness): b2's own marker follows anything queued for it.
    expect_nothing_before_own(&mut b2, "after the group").await;

    a1.invoke("SendToUser", str_args(&["bob", "alice", "hi bob"]))
        .await
        .expect("SendToUser");
    assert_eq!(
        expect_message(&mut b1, "ReceiveMessage", STEP).await,
        receive("alice", "hi bob")
    );
    assert_eq!(
        expect_message(&mut b2, "ReceiveMessage", STEP).await,
        receive("alice", "hi bob")
    );
    expect_nothing_before_own(&mut b3, "after the user").await;

    let b2_id = connection_id(&b2).await;
    a1.invoke("SendToConnection", str_args(&[&b2_id, "alice", "just you"]))
        .await
        .expect("SendToConnection");
    assert_eq!(
        expect_message(&mut b2, "ReceiveMessage", STEP).await,
        receive("alice", "just you")
    );
    expect_nothing_before_own(&mut b1, "after the connection").await;

    // A remote AddToGroup: the owner (B) acks it, and the group send that follows reaches b3.
    let b3_id = connection_id(&b3).await;
    let added = within(
        "AddToGroup",
        a1.invoke("AddToGroup", str_args(&[&b3_id, "remote"])),
    )
    .await
    .expect("AddToGroup");
    assert_eq!(added, CompletionResult::Void, "the owner acked the remote add");
    a1.invoke("SendToGroup", str_args(&["remote", "alice", "added remotely"]))
        .await
        .expect("SendToGroup");
    assert_eq!(
        expect_message(&mut b3, "ReceiveMessage", STEP).await,
        receive("alice", "added remotely")
    );

    // b2 stays in the group as the witness of the send that b1, gone, must not get.
    b2.invoke("JoinGroup", str_args(&["room"]))
        .await
        .expect("JoinGroup");
    b1.invoke("LeaveGroup", str_args(&["room"]))
        .await
        .expect("LeaveGroup");
    a1.invoke("SendToGroup", str_args(&["room", "alice", "anyone?"]))
        .await
        .expect("SendToGroup");
    assert_eq!(
        expect_message(&mut b2, "ReceiveMessage", STEP).await,
        receive("alice", "anyone?")
    );
    expect_nothing_before_own(&mut b1, "after leaving").await;
}

pub use super::connection_id;
