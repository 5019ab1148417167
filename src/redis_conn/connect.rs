//! Opening Redis connections from a `RedisSpec`: TCP (TCP_NODELAY, a connect timeout), TLS when
//! the spec says `rediss://`, then AUTH / SELECT / CLIENT SETNAME, and the redis-rs connection on
//! top (a pub/sub connection or a multiplexed command connection). Also finds the servers behind
//! a spec: a single server, the primary a set of sentinels names, or the shards of a cluster.
//!
//! The one place that turns Redis errors into operator words (`describe`): a wrong password, a
//! missing ACL permission (named), a refused port, a TLS failure. Never shows a password.

use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, RedisConnectionInfo, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::spec::{Addr, ClusterMode, RedisSpec, Topology};
use crate::config;
use crate::tls::{self, BoxedIo, TlsError};

/// Why a connection (or a discovery) failed. Display is one line for an operator.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens there (Redis restarting): retrying soon costs nobody anything.
    #[error("{addr}: connection refused (is Redis running there?)")]
    Refused { addr: String },
    #[error("{addr}: {what} timed out after {after:?}")]
    Timeout {
        addr: String,
        what: &'static str,
        after: Duration,
    },
    #[error("{addr}: {reason}")]
    Io { addr: String, reason: String },
    #[error("{0}")]
    Tls(String),
    /// A reply from Redis, in words (`describe`).
    #[error("{addr}: {reason}")]
    Redis { addr: String, reason: String },
    /// The handshake's credentials were refused or are missing: an error reply to AUTH, or a
    /// `NOAUTH`, `WRONGPASS` or `NOPERM` reply (its error code) to another command. In words.
    #[error("{addr}: {reason}")]
    Auth { addr: String, reason: String },
    #[error("{0}")]
    Sentinel(String),
    #[error("{0}")]
    Cluster(String),
    #[error("{0}")]
    Config(String),
}

impl ConnectError {
    /// True when the server was simply not there (refused, or a lost link): the caller may retry
    /// at its short cap.
    pub fn is_refused(&self) -> bool {
        matches!(self, ConnectError::Refused { .. })
    }
}

impl From<TlsError> for ConnectError {
    fn from(e: TlsError) -> Self {
        ConnectError::Tls(e.to_string())
    }
}

/// A server's place in what the spec reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

/// One node of a cluster shard, from `CLUSTER SHARDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    pub addr: Addr,
    pub role: Role,
    /// `online`, `failed` or `loading`.
    pub health: String,
}

/// One shard: its slot ranges and its nodes (primary first when it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub slots: Vec<(u16, u16)>,
    pub nodes: Vec<ClusterNode>,
}

impl Shard {
    pub fn primary(&self) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| n.role == Role::Primary)
    }
}

/// What a spec reaches right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reached {
    /// One server (not a cluster).
    Single(Addr),
    /// The primary that the sentinel at `via` names for `master`.
    Sentinel {
        primary: Addr,
        master: String,
        via: Addr,
    },
    /// A cluster, as `seed` described it.
    Cluster { seed: Addr, shards: Vec<Shard> },
}

impl Reached {
    /// Where a classic pub/sub or command connection goes: the server, the primary, or the seed
    /// that answered (in a cluster any node relays classic PUBLISH to all).
    pub fn entry(&self) -> &Addr {
        match self {
            Reached::Single(a) => a,
            Reached::Sentinel { primary, .. } => primary,
            Reached::Cluster { seed, .. } => seed,
        }
    }

    /// Every primary's address (one for a single server or a sentinel set).
    pub fn primaries(&self) -> Vec<Addr> {
        match self {
            Reached::Single(a) | Reached::Sentinel { primary: a, .. } => vec![a.clone()],
            Reached::Cluster { shards, .. } => shards
                .iter()
                .filter_map(|s| s.primary().map(|n| n.addr.clone()))
                .collect(),
        }
    }

    /// One line: "single server 127.0.0.1:6379", "sentinel mymaster → 10.0.0.5:6379",
    /// "cluster, 3 shards".
    pub fn describe(&self) -> String {
        match self {
            Reached::Single(a) => format!("single server {a}"),
            Reached::Sentinel { primary, master, .. } => {
                format!("sentinel master {master} → primary {primary}")
            }
            Reached::Cluster { shards, .. } => format!("cluster, {} shards", shards.len()),
        }
    }
}

/// Opens connections for one spec. Cheap to clone; the TLS configuration is built once.
#[derive(Clone, Debug)]
pub struct RedisConnector {
    spec: RedisSpec,
    tls: Option<tls::Connector>,
    /// `CLIENT SETNAME` for every connection, so `CLIENT LIST` says who is who.
    name: Option<String>,
    timeout: Duration,
}

/// Which credentials a connection uses.
#[derive(Clone, Copy)]
enum Creds {
    Data,
    Sentinel,
}

impl RedisConnector {
    /// Reads the TLS files now, so a bad certificate path is an error at start-up, not at the
    /// first reconnect.
    pub fn new(spec: RedisSpec) -> Result<Self, ConnectError> {
        let tls = spec.tls.as_ref().map(tls::Connector::new).transpose()?;
        Ok(RedisConnector {
            spec,
            tls,
            name: None,
            timeout: config::DEFAULT_REDIS_CONNECT_TIMEOUT,
        })
    }

    /// Names every connection (`CLIENT SETNAME`); spaces become `-` (Redis refuses them).
    pub fn with_name(mut self, name: &str) -> Self {
        let clean: String = name
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '-' })
            .collect();
        self.name = Some(clean).filter(|n| !n.is_empty());
        self
    }

    pub fn spec(&self) -> &RedisSpec {
        &self.spec
    }

    /// TCP (with TCP_NODELAY: small PUBLISH commands must not wait for Nagle) and TLS; with
    /// `keep_socket` and without TLS, a second handle on the socket too (`raw_with_socket`).
    async fn transport(
        &self,
        addr: &Addr,
        keep_socket: bool,
    ) -> Result<(BoxedIo, Option<std::net::TcpStream>), ConnectError> {
        let shown = addr.to_string();
        let tcp =
            match tokio::time::timeout(self.timeout, TcpStream::connect((addr.host.as_str(), addr.port)))
                .await
            {
                Err(_) => {
                    return Err(ConnectError::Timeout {
                        addr: shown,
                        what: "TCP connect",
                        after: self.timeout,
                    });
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(ConnectError::Refused { addr: shown });
                }
                Ok(Err(e)) => {
                    return Err(ConnectError::Io {
                        addr: shown,
                        reason: e.to_string(),
                    });
                }
                Ok(Ok(tcp)) => tcp,
            };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => {
                // A duplicate descriptor of the same socket (non-blocking, as tokio set it).
                let socket = keep_socket
                    .then(|| std::os::fd::AsFd::as_fd(&tcp).try_clone_to_owned())
                    .transpose()
                    .map_err(|e| ConnectError::Io {
                        addr: shown,
                        reason: e.to_string(),
                    })?
                    .map(std::net::TcpStream::from);
                Ok((Box::new(tcp), socket))
            }
            Some(connector) => {
                match tokio::time::timeout(self.timeout, connector.connect(&addr.host, tcp)).await {
                    Err(_) => Err(ConnectError::Timeout {
                        addr: shown,
                        what: "TLS handshake (no TLS answer: a plaintext port? use redis://)",
                        after: self.timeout,
                    }),
                    Ok(result) => Ok((result?, None)),
                }
            }
        }
    }

    /// A connected, authenticated stream: AUTH, SELECT and CLIENT SETNAME are sent here, so
    /// their errors are ours to word.
    async fn stream(&self, addr: &Addr, creds: Creds) -> Result<BoxedIo, ConnectError> {
        Ok(self.stream_kept(addr, creds, false).await?.0)
    }

    /// `stream`, with the plain socket's second handle when `keep_socket` (see `transport`).
    async fn stream_kept(
        &self,
        addr: &Addr,
        creds: Creds,
        keep_socket: bool,
    ) -> Result<(BoxedIo, Option<std::net::TcpStream>), ConnectError> {
        let (mut io, socket) = self.transport(addr, keep_socket).await?;
        let (user, password, db) = match creds {
            Creds::Data => (self.spec.username.as_deref(), self.spec.password(), self.spec.db),
            Creds::Sentinel => (
                self.spec.sentinel_username.as_deref(),
                self.spec.sentinel_password(),
                0,
            ),
        };
        let mut commands: Vec<Vec<&[u8]>> = Vec::new();
        match (user, password) {
            (Some(u), Some(p)) => commands.push(vec![b"AUTH", u.as_bytes(), p.as_bytes()]),
            (None, Some(p)) => commands.push(vec![b"AUTH", p.as_bytes()]),
            (Some(u), None) => {
                return Err(ConnectError::Config(format!(
                    "user {u} has no password in the URL (redis://{u}:PASSWORD@host)"
                )));
            }
            (None, None) => {}
        }
        let db_text = db.to_string();
        if db != 0 {
            commands.push(vec![b"SELECT", db_text.as_bytes()]);
        }
        if let (Some(name), Creds::Data) = (&self.name, creds) {
            commands.push(vec![b"CLIENT", b"SETNAME", name.as_bytes()]);
        }
        if commands.is_empty() {
            if self.tls.is_none() {
                return Ok((io, socket));
            }
            // With TLS 1.3 a server that wants a client certificate refuses it after the
            // handshake: one PING finds out now, so the error can say so.
            commands.push(vec![b"PING"]);
        }
        let mut out = Vec::new();
        for command in &commands {
            out.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
            for arg in command {
                out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                out.extend_from_slice(arg);
                out.extend_from_slice(b"\r\n");
            }
        }
        let shown = addr.to_string();
        let exchange = async {
            io.write_all(&out).await?;
            io.flush().await?;
            let mut replies = Vec::new();
            for _ in &commands {
                replies.push(read_line(&mut io).await?);
            }
            Ok::<_, std::io::Error>(replies)
        };
        let replies = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => {
                return Err(ConnectError::Timeout {
                    addr: shown,
                    what: "authentication",
                    after: self.timeout,
                });
            }
            Ok(Err(e)) => {
                let reason = match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    Some(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)) => {
                        "the server requires a client certificate (--redis-cert, --redis-key)".to_string()
                    }
                    Some(_) => format!("TLS: {}", tls::explain_io(&e)),
                    None if self.tls.is_some() => format!(
                        "the server closed the TLS connection ({e}): does it require a client certificate it trusts (--redis-cert, --redis-key)?"
                    ),
                    None => {
                        format!("connection closed while authenticating ({e}); a TLS port needs rediss://")
                    }
                };
                return Err(ConnectError::Io { addr: shown, reason });
            }
            Ok(Ok(replies)) => replies,
        };
        for (command, reply) in commands.iter().zip(replies) {
            if let Some(error) = reply.strip_prefix('-') {
                let what = String::from_utf8_lossy(command[0]).to_string();
                let reason = format!("{what}: {}", describe_text(error));
                let code = error.split(' ').next().unwrap_or_default();
                let auth = command[0] == b"AUTH" || matches!(code, "NOAUTH" | "WRONGPASS" | "NOPERM");
                return Err(if auth {
                    ConnectError::Auth { addr: shown, reason }
                } else {
                    ConnectError::Redis { addr: shown, reason }
                });
            }
        }
        Ok((io, socket))
    }

    fn info() -> RedisConnectionInfo {
        // Authentication and the database were set on the stream already.
        RedisConnectionInfo::default().set_skip_set_lib_name()
    }

    /// A dedicated pub/sub connection to `addr`.
    pub async fn pubsub(&self, addr: &Addr) -> Result<PubSub, ConnectError> {
        let io = self.stream(addr, Creds::Data).await?;
        PubSub::new(&Self::info(), io)
            .await
            .map_err(|e| ConnectError::Redis {
                addr: addr.to_string(),
                reason: describe(&e),
            })
    }

    /// A pub/sub connection to the sentinel at `addr`, with the sentinels' credentials (to watch
    /// `+switch-master`).
    pub async fn sentinel_pubsub(&self, addr: &Addr) -> Result<PubSub, ConnectError> {
        let io = self.stream(addr, Creds::Sentinel).await?;
        PubSub::new(&Self::info(), io)
            .await
            .map_err(|e| ConnectError::Redis {
                addr: addr.to_string(),
                reason: describe(&e),
            })
    }

    /// An authenticated raw stream to `addr` (AUTH, SELECT and CLIENT SETNAME done), for
    /// protocols redis-rs does not speak on a plain connection (sharded pub/sub).
    pub async fn raw(&self, addr: &Addr) -> Result<BoxedIo, ConnectError> {
        self.stream(addr, Creds::Data).await
    }

    /// `raw`, and on a plain TCP connection a second handle on its socket (a duplicate
    /// descriptor): the publisher writes a command through it itself when nothing else is being
    /// written (`Pipeline`'s direct writes). `None` under TLS.
    pub async fn raw_with_socket(
        &self,
        addr: &Addr,
    ) -> Result<(BoxedIo, Option<std::net::TcpStream>), ConnectError> {
        self.stream_kept(addr, Creds::Data, true).await
    }

    /// A multiplexed command connection to `addr`; its driver runs on the current runtime and
    /// ends with the connection.
    pub async fn multiplexed(&self, addr: &Addr) -> Result<MultiplexedConnection, ConnectError> {
        let io = self.stream(addr, Creds::Data).await?;
        self.wrap(addr, io).await
    }

    /// A RESP3 multiplexed connection to `addr` whose server pushes (sharded messages, a
    /// SUNSUBSCRIBE after a slot moved) go to `push_sender`, which must never block.
    pub async fn multiplexed_resp3(
        &self,
        addr: &Addr,
        push_sender: impl redis::aio::AsyncPushSender,
    ) -> Result<MultiplexedConnection, ConnectError> {
        let io = self.stream(addr, Creds::Data).await?;
        let info = Self::info().set_protocol(redis::ProtocolVersion::RESP3);
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(self.timeout))
            .set_push_sender(push_sender);
        self.wrap_with(addr, io, &info, config).await
    }

    async fn wrap(&self, addr: &Addr, io: BoxedIo) -> Result<MultiplexedConnection, ConnectError> {
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(self.timeout));
        self.wrap_with(addr, io, &Self::info(), config).await
    }

    async fn wrap_with(
        &self,
        addr: &Addr,
        io: BoxedIo,
        info: &RedisConnectionInfo,
        config: AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, ConnectError> {
        let (connection, driver) = MultiplexedConnection::new_with_config(info, io, config)
            .await
            .map_err(|e| ConnectError::Redis {
                addr: addr.to_string(),
                reason: describe(&e),
            })?;
        tokio::spawn(driver);
        Ok(connection)
    }

    /// Finds what the spec reaches now: asks the sentinels for the primary, or the seeds whether
    /// they are a cluster and what its shards are. Each call asks afresh (after a failover the
    /// answer changes).
    pub async fn reach(&self) -> Result<Reached, ConnectError> {
        match &self.spec.topology {
            Topology::Sentinel { sentinels, master } => self.ask_sentinels(sentinels, master).await,
            Topology::Servers(seeds) => {
                let mut last = None;
                for seed in seeds {
                    match self.probe_seed(seed).await {
                        Ok(reached) => return Ok(reached),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| ConnectError::Config("no Redis server given".into())))
            }
        }
    }

    async fn probe_seed(&self, seed: &Addr) -> Result<Reached, ConnectError> {
        let mut connection = self.multiplexed(seed).await?;
        let info: String = query(&mut connection, seed, redis::cmd("INFO").arg("cluster")).await?;
        let enabled = info.lines().any(|l| l.trim() == "cluster_enabled:1");
        if !enabled {
            if self.spec.cluster == ClusterMode::Required {
                return Err(ConnectError::Cluster(format!(
                    "{seed} is not in cluster mode (cluster_enabled:0), but --cluster was given"
                )));
            }
            return Ok(Reached::Single(seed.clone()));
        }
        let shards = cluster_shards(&mut connection, seed).await?;
        Ok(Reached::Cluster {
            seed: seed.clone(),
            shards,
        })
    }

    async fn ask_sentinels(&self, sentinels: &[Addr], master: &str) -> Result<Reached, ConnectError> {
        let mut problems = Vec::new();
        for sentinel in sentinels {
            let answer = async {
                let io = self.stream(sentinel, Creds::Sentinel).await?;
                let mut connection = self.wrap(sentinel, io).await?;
                let reply: Value = query(
                    &mut connection,
                    sentinel,
                    redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(master),
                )
                .await?;
                match reply {
                    Value::Nil => Err(ConnectError::Sentinel(format!(
                        "sentinel {sentinel} does not know a master named {master:?} (check the name after the hosts in the URL)"
                    ))),
                    Value::Array(items) if items.len() == 2 => {
                        let host = text(&items[0]).unwrap_or_default();
                        let port = text(&items[1]).and_then(|p| p.parse::<u16>().ok());
                        match port {
                            Some(port) if !host.is_empty() => Ok(Addr::new(host, port)),
                            _ => Err(ConnectError::Sentinel(format!(
                                "sentinel {sentinel} gave an unreadable address for {master:?}"
                            ))),
                        }
                    }
                    other => Err(ConnectError::Sentinel(format!(
                        "sentinel {sentinel} answered {other:?} for {master:?}"
                    ))),
                }
            };
            match answer.await {
                Ok(primary) => {
                    // The sentinel may not have noticed a failover yet: believe the server.
                    let mut connection = self.multiplexed(&primary).await?;
                    let role: Value = query(&mut connection, &primary, &mut redis::cmd("ROLE")).await?;
                    let is_master = matches!(&role, Value::Array(items) if items.first().and_then(text).as_deref() == Some("master"));
                    if !is_master {
                        problems.push(format!(
                            "sentinel {sentinel} names {primary} for {master:?}, but it is not a primary (a failover is under way)"
                        ));
                        continue;
                    }
                    return Ok(Reached::Sentinel {
                        primary,
                        master: master.to_string(),
                        via: sentinel.clone(),
                    });
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        Err(ConnectError::Sentinel(problems.join("; ")))
    }
}

/// Runs one command on a command connection, wording its error.
pub async fn query<T: redis::FromRedisValue>(
    connection: &mut MultiplexedConnection,
    addr: &Addr,
    command: &mut redis::Cmd,
) -> Result<T, ConnectError> {
    command
        .query_async(connection)
        .await
        .map_err(|e| ConnectError::Redis {
            addr: addr.to_string(),
            reason: describe(&e),
        })
}

/// `CLUSTER SHARDS` (Redis 7), as shards with their slot ranges and nodes.
pub async fn cluster_shards(
    connection: &mut MultiplexedConnection,
    seed: &Addr,
) -> Result<Vec<Shard>, ConnectError> {
    let reply: Value = query(connection, seed, redis::cmd("CLUSTER").arg("SHARDS")).await?;
    parse_cluster_shards(&reply).map_err(|e| ConnectError::Cluster(format!("{seed}: CLUSTER SHARDS: {e}")))
}

/// Reads one reply line (`+OK`, `-ERR ...`) byte by byte: nothing after it may be consumed, the
/// stream is handed on.
async fn read_line(io: &mut BoxedIo) -> std::io::Result<String> {
    let mut line = Vec::with_capacity(32);
    loop {
        let byte = io.read_u8().await?;
        if byte == b'\n' {
            break;
        }
        if line.len() > 4096 {
            return Err(std::io::Error::other("reply line too long"));
        }
        line.push(byte);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A RESP2 flat `[key, value, ...]` array or a RESP3 map, as pairs.
fn pairs(value: &Value) -> Vec<(String, &Value)> {
    match value {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => text(k).map(|k| (k, v)),
                _ => None,
            })
            .collect(),
        Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| text(k).map(|k| (k, v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn field<'a>(pairs: &'a [(String, &'a Value)], name: &str) -> Option<&'a Value> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

/// Parses a `CLUSTER SHARDS` reply. With TLS the nodes give `tls-port` instead of `port`.
pub fn parse_cluster_shards(reply: &Value) -> Result<Vec<Shard>, String> {
    let Value::Array(entries) = reply else {
        return Err(format!("expected an array, got {reply:?}"));
    };
    let mut shards = Vec::new();
    for entry in entries {
        let kv = pairs(entry);
        let slots = match field(&kv, "slots") {
            Some(Value::Array(bounds)) => bounds
                .chunks(2)
                .filter_map(|b| match b {
                    [lo, hi] => Some((text(lo)?.parse().ok()?, text(hi)?.parse().ok()?)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut nodes = Vec::new();
        if let Some(Value::Array(list)) = field(&kv, "nodes") {
            for node in list {
                let n = pairs(node);
                let get = |k: &str| field(&n, k).and_then(text);
                let host = get("ip")
                    .filter(|h| !h.is_empty() && h != "?")
                    .or_else(|| get("endpoint"))
                    .unwrap_or_default();
                let port = get("port")
                    .or_else(|| get("tls-port"))
                    .and_then(|p| p.parse::<u16>().ok())
                    .unwrap_or(0);
                let role = match get("role").as_deref() {
                    Some("master") => Role::Primary,
                    _ => Role::Replica,
                };
                nodes.push(ClusterNode {
                    id: get("id").unwrap_or_default(),
                    addr: Addr::new(host, port),
                    role,
                    health: get("health").unwrap_or_else(|| "online".into()),
                });
            }
        }
        nodes.sort_by_key(|n| n.role != Role::Primary);
        shards.push(Shard { slots, nodes });
    }
    shards.sort_by_key(|s| s.slots.first().map_or(u16::MAX, |r| r.0));
    Ok(shards)
}

/// A Redis error in operator words: who refused, and what to grant or fix.
pub fn describe(e: &redis::RedisError) -> String {
    if e.is_connection_refusal() {
        return "connection refused (is Redis running there?)".to_string();
    }
    if e.is_timeout() {
        return format!("timed out ({e})");
    }
    describe_text(&e.to_string())
}

/// The words for a Redis error reply's text (also used for the raw replies of the handshake).
pub fn describe_text(text: &str) -> String {
    let upper = text.to_ascii_uppercase();
    if upper.contains("WRONGPASS")
        || upper.contains("INVALID PASSWORD")
        || upper.contains("INVALID USERNAME-PASSWORD")
    {
        return "authentication failed: wrong user or password (or the user is disabled)".to_string();
    }
    if upper.contains("NOAUTH") {
        return "authentication required: put the password in the URL (redis://:PASSWORD@host or redis://USER:PASSWORD@host)".to_string();
    }
    if upper.contains("NOPERM") {
        if let Some(command) = text.split("run the '").nth(1).and_then(|r| r.split('\'').next()) {
            let command = command.to_ascii_uppercase().replace('|', " ");
            let grant = grant_for(&command);
            return format!("the ACL user lacks permission for {command} ({grant})");
        }
        if upper.contains("CHANNEL") {
            return "the ACL user may not use these channels (grant channel access: &*)".to_string();
        }
        if upper.contains("KEY") {
            return "the ACL user may not read these keys (grant key access: ~*)".to_string();
        }
        return format!("the ACL user lacks a permission: {text}");
    }
    if upper.contains("ERR UNKNOWN COMMAND") && upper.contains("SSUBSCRIBE") {
        return "this Redis has no sharded pub/sub (SSUBSCRIBE needs Redis 7 or later)".to_string();
    }
    text.trim().to_string()
}

fn grant_for(command: &str) -> String {
    let first = command.split(' ').next().unwrap_or(command);
    match first {
        "SUBSCRIBE" | "PSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "PUBLISH" | "PUBSUB" | "SSUBSCRIBE"
        | "SUNSUBSCRIBE" | "SPUBLISH" => "grant +@pubsub".to_string(),
        "CLIENT" | "INFO" | "CLUSTER" | "CONFIG" | "ROLE" => {
            format!("grant +{}", command.to_ascii_lowercase().replace(' ', "|"))
        }
        _ => format!("grant +{}", first.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn acl_errors_name_the_missing_permission() {
        let d = describe_text("NOPERM User alice has no permissions to run the 'subscribe' command");
        assert_eq!(d, "the ACL user lacks permission for SUBSCRIBE (grant +@pubsub)");
        let d = describe_text("NOPERM this user has no permissions to run the 'client|list' command");
        assert_eq!(
            d,
            "the ACL user lacks permission for CLIENT LIST (grant +client|list)"
        );
        let d = describe_text(
            "NOPERM this user has no permissions to access one of the channels used as arguments",
        );
        assert!(d.contains("&*"), "{d}");
        assert!(
            describe_text("WRONGPASS invalid username-password pair or user is disabled.")
                .contains("wrong user or password")
        );
        assert!(describe_text("NOAUTH Authentication required.").contains("put the password"));
        assert!(
            describe_text("ERR unknown command 'SSUBSCRIBE', with args beginning with: ").contains("Redis 7")
        );
    }

    #[test]
    fn cluster_shards_are_read_from_resp2_arrays() {
        let node = |id: &str, port: i64, role: &str| {
            Value::Array(vec![
                bulk("id"),
                bulk(id),
                bulk("port"),
                Value::Int(port),
                bulk("ip"),
                bulk("127.0.0.1"),
                bulk("endpoint"),
                bulk("127.0.0.1"),
                bulk("role"),
                bulk(role),
                bulk("replication-offset"),
                Value::Int(5),
                bulk("health"),
                bulk("online"),
            ])
        };
        let shard = |lo: i64, hi: i64, nodes: Vec<Value>| {
            Value::Array(vec![
                bulk("slots"),
                Value::Array(vec![Value::Int(lo), Value::Int(hi)]),
                bulk("nodes"),
                Value::Array(nodes),
            ])
        };
        let reply = Value::Array(vec![
            shard(5461, 10922, vec![node("b", 7001, "master")]),
            shard(
                0,
                5460,
                vec![node("r", 7003, "replica"), node("a", 7000, "master")],
            ),
        ]);
        let shards = parse_cluster_shards(&reply).unwrap();
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0].slots, vec![(0, 5460)]);
        assert_eq!(shards[0].primary().unwrap().addr, Addr::new("127.0.0.1", 7000));
        assert_eq!(shards[0].nodes[1].role, Role::Replica);
        let reached = Reached::Cluster {
            seed: Addr::new("127.0.0.1", 7000),
            shards,
        };
        assert_eq!(reached.primaries().len(), 2);
        assert!(parse_cluster_shards(&Value::Nil).is_err());
    }
}
