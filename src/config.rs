//! Every default of the node, each with the reason for its value. Used by `cli`, `hub` and tests.

use std::time::Duration;

/// The hub's .NET type full name used in channel names; a real ASP.NET Core server sharing the
/// backplane must use the same string (`typeof(THub).FullName`).
pub const DEFAULT_HUB_NAME: &str = "Switchboard.ChatHub";

/// Where the hub is mapped, as `app.MapHub<ChatHub>("/chat")` does in the ASP.NET Core samples.
pub const DEFAULT_PATH: &str = "/chat";

/// ASP.NET Core's `MaximumReceiveMessageSize` default: 32 KiB per hub message.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 32 * 1024;

/// ASP.NET Core's `KeepAliveInterval`: the official clients time out after 30 s of silence.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// ASP.NET Core's `ClientTimeoutInterval`: twice the clients' own keep-alive (15 s).
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// ASP.NET Core's `HandshakeTimeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a negotiated connection token stays valid without a transport (ASP.NET Core's
/// disconnect timeout, believed to be 15 s).
pub const DEFAULT_NEGOTIATE_TTL: Duration = Duration::from_secs(15);

/// Frames queued for one client before it counts as not reading and is disconnected. 1024 frames
/// ride out a burst of a few hundred ms at high fan-out without holding much memory (the frames
/// are shared, not copied, so the cost is a pointer each).
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;

/// Upper bound on open TCP connections to a node (every accepted socket counts: WebSockets, HTTP
/// requests, idle sockets); past it a new connection is closed at once and counted.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The hub listener's accept queue (the kernel caps it at `net.core.somaxconn`, 4096 on current
/// Linux). In a reconnect storm thousands of clients connect within a second; with the standard
/// library's 128 the queue overflowed, the kernel dropped SYNs, and each dropped client waited
/// its 1 s SYN retransmit (`benches/storm.rs`: ~2,000 overflows per 19,000-client storm).
pub const LISTEN_BACKLOG: u32 = 4096;

/// A connection that has not sent complete request headers within this time is closed (Kestrel
/// allows 30 s; 10 s is generous for a real client on a slow link and short for a Slowloris
/// holding file descriptors).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages from the backplane waiting to be fanned out locally: about 80 ms at 100k msg/s, enough
/// to ride out a scheduling hiccup. Nothing pushes back on Redis (redis-rs reads pub/sub into an
/// unbounded queue of its own), so past this the node drops and counts (`backplane_dropped`)
/// rather than letting memory grow: see the `backplane` module docs.
pub const DEFAULT_BACKPLANE_INBOX: usize = 8192;

/// Control messages from the backplane (group commands, acks and client results for this node)
/// waiting to be handled, in a queue of their own that chat traffic cannot fill, drained first.
/// Each is a few hundred bytes handled in microseconds (a group command's subscription and ack
/// run in a spawned task), so 16,384 (a few MiB at worst) fills only if other nodes flood this
/// one; past it the loss is counted (`control_dropped`) and a call waiting for an ack fails at
/// once instead of waiting out [`DEFAULT_GROUP_ACK_TIMEOUT`] for an ack that was thrown away.
pub const DEFAULT_CONTROL_INBOX: usize = 16_384;

/// Longest user id in bytes. A user id becomes a Redis channel name (`{prefix}{hub}:user:{id}`)
/// in the shared Redis, so it is bounded; 256 bytes holds any e-mail address, GUID or `sub` claim.
pub const DEFAULT_MAX_USER_ID_BYTES: usize = 256;

/// Longest group name in bytes: each becomes a Redis channel name; 1 KiB leaves room for
/// structured names ("tenant/room/thread") while one client cannot fill Redis with 32 KiB names.
pub const DEFAULT_MAX_GROUP_NAME_BYTES: usize = 1024;

/// Invocations per second one connection may make on average (token bucket): a person typing or
/// a bot posting is far below 100/s; past it an invocation fails with a HubException (the
/// connection stays), so one client cannot flood a node and its backplane.
pub const DEFAULT_MAX_INVOCATIONS_PER_SECOND: u32 = 100;

/// Invocations one connection may make at once after a quiet spell (the bucket's size): room for
/// a client that joins a few dozen groups right after connecting.
pub const DEFAULT_INVOCATION_BURST: u32 = 200;

/// Open connections from one IP address on a node that listens beyond loopback (off on a loopback
/// listener, where every client is this machine): a client cannot take the whole node-wide cap,
/// while 1,000 still fits a large office behind one NAT address. `--max-connections-per-ip`.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;

/// Groups one connection may be in. Each first local member of a group costs a Redis SUBSCRIBE
/// and a channel on the node's pub/sub connection, so one client must not be able to make the node
/// subscribe without limit; 100 is far more rooms than a chat user sits in (ASP.NET Core has no
/// cap). A join past it fails with a HubException that names the limit.
pub const DEFAULT_MAX_GROUPS_PER_CONNECTION: usize = 100;

/// ASP.NET Core's ack timeout for remote group operations (checked every 5 s there; we use a timer).
pub const DEFAULT_GROUP_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// First Redis reconnect delay; doubled per failure. Short: a lost link is usually a restart, and
/// the first attempts of a refused connection cost nothing.
pub const DEFAULT_RECONNECT_BASE: Duration = Duration::from_millis(50);

/// Reconnect delay cap while the connection is refused (nothing listens on the port, e.g. Redis is
/// restarting) or was just lost (`LinkFailure::Refused` and `Lost` in `backplane::reconnect`):
/// such an attempt costs one SYN and one RST on each side and nothing else, so trying four times a
/// second keeps a node within ~0.25 s of Redis coming back (the goal is ≤ 1 s).
pub const DEFAULT_RECONNECT_MAX_REFUSED: Duration = Duration::from_millis(250);

/// Reconnect delay cap of the dashboard's own links (the tap, the node probes; also `tap` and
/// `agent`), whatever the failure (a longer kind's cap still wins): a watcher back up to 3 s after
/// Redis or a node loses nothing the next round does not show, and a person reading
/// "reconnecting in N s" needs whole seconds between attempts (at the nodes' 250 ms pace the
/// attempt number climbed four a second under a "1 s" countdown).
pub const DEFAULT_WATCH_RECONNECT_MAX: Duration = Duration::from_secs(3);

/// Reconnect delay cap for failures that cost Redis or the network something (wrong password,
/// timeouts, protocol errors: every other `LinkFailure`): a cluster of nodes must not hammer a
/// Redis that refuses them. Chosen by the failure's kind, never by its words.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Channels per SUBSCRIBE when a node subscribes many at once (a reconnect resubscribes every
/// channel of every connection, user and group): each batch has the whole command limit (2 s) to
/// be confirmed, so a busy Redis confirming ~100k channels/s gets every batch through, and one
/// slow batch is retried alone instead of failing everything.
pub const DEFAULT_SUBSCRIBE_BATCH: usize = 1_000;

/// First delay before a SUBSCRIBE that timed out is sent again (for those channels only; the link
/// and the channels already subscribed keep working). Doubles per failed round.
pub const DEFAULT_SUBSCRIBE_RETRY_BASE: Duration = Duration::from_millis(250);

/// Longest delay between SUBSCRIBE retries: a Redis that stays slow is asked again every 10 s,
/// a load it can bear, while a channel confirmed late still gets its retry within seconds.
pub const DEFAULT_SUBSCRIBE_RETRY_MAX: Duration = Duration::from_secs(10);

/// Connect timeout for one Redis attempt, so an unroutable host does not stall the loop.
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the monitor WebSocket pushes a snapshot to the dashboard.
pub const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_millis(500);

/// How often a node announces itself on `{prefix}switchboard:nodes`.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// How long shutdown waits for clients to receive their Close before the process exits.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Traffic entries the dashboard keeps (newest win): two seconds at the 50k msg/s the UI is built
/// to keep up with. Measured (`cargo bench --bench tap_flood`): a full ring of typical chat
/// messages holds ~25 MiB of payload, and the whole process peaked at ~130-140 MiB RSS.
pub const DEFAULT_RING_ENTRIES: usize = 100_000;

/// Payload bytes the dashboard keeps in its ring, so a stream of large messages cannot grow memory
/// past this (64 MiB) before the entry limit applies.
pub const DEFAULT_RING_BYTES: usize = 64 * 1024 * 1024;

/// The census's floor: how often it checks the cheap figures (`INFO stats` pubsub_channels, `PUBSUB NUMSUB`)
/// and, when a `PUBSUB CHANNELS` walk is cheap, walks: as often as nodes announce themselves.
pub const DEFAULT_CENSUS_INTERVAL: Duration = Duration::from_secs(2);

/// The share of Redis's time the census's `PUBSUB CHANNELS` walks are spaced for: 0.8 %, so the
/// dashboard's commands stay under 1 % with headroom for a walk that costs more than the one
/// before it and for the cheap checks between walks. A walk blocks Redis for its whole length
/// (~300 ms at 300,000 channels here), so the walks are spaced by their measured cost: a
/// dashboard must not be what slows a production backplane down.
pub const DEFAULT_CENSUS_SHARE: f64 = 0.008;

/// The longest the census waits between walks when the cheap figures say nothing changed, or
/// when every server announces its own connection count (unless the share needs longer): a
/// foreign server (ASP.NET Core, no heartbeat) or a user/group change shows within 30 s.
pub const DEFAULT_CENSUS_CEILING: Duration = Duration::from_secs(30);

/// How often a probe measures a node's round-trip time: a trend line, not a load test.
pub const DEFAULT_RTT_INTERVAL: Duration = Duration::from_secs(2);

/// Event batches queued from the monitor runtime to the UI. At one batch per 50 ms this is ~13 s
/// of backlog, so only a stalled UI loses events (counted and shown).
pub const DEFAULT_MONITOR_EVENT_QUEUE: usize = 256;

/// Commands queued from the UI to the monitor runtime; the UI sends a handful per click.
pub const DEFAULT_MONITOR_COMMAND_QUEUE: usize = 64;

/// How often the monitor flushes its batches to the UI: faster than a frame matters to nobody.
pub const DEFAULT_MONITOR_FLUSH: Duration = Duration::from_millis(50);

/// Traffic entries per batch before an early flush: 2000 entries keep one batch under ~1 MiB at
/// 50k msg/s while bounding the per-frame work of the UI.
pub const DEFAULT_MONITOR_BATCH: usize = 2000;

/// Largest test-message burst, so a typo cannot start hours of sending.
pub const MAX_BURST_COUNT: u32 = 100_000;

/// Fastest test-message burst (messages per second): well above what a chat hub sees, well below
/// what would make the dashboard itself the load test.
pub const MAX_BURST_RATE: f64 = 10_000.0;

/// Most simulated clients per demo node: enough for a lively demo on a laptop.
pub const DEMO_MAX_CLIENTS_PER_NODE: u32 = 200;

/// Fastest simulated chat (messages per second, all clients together).
pub const DEMO_MAX_MESSAGES_PER_SEC: f64 = 2000.0;

/// How long the token in a demo node's chat-page link (`#access_token=`) is valid: a long talk
/// or a day of demos; the secret is new each run, so the link dies with the demo anyway.
pub const DEMO_PAGE_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// How far back the dashboard's rate charts and node client-count history reach: long enough to
/// see a burst and its aftermath, short enough that per-second buckets stay small (300 per series).
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(300);

/// How long a dashboard test message may take to reach every expected probe before it counts as
/// partially delivered. Delivery through Redis takes milliseconds; 5 s rides out a GC pause or a
/// reconnect without leaving a trace pending for long.
pub const DEFAULT_TRACE_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows per page when the Directory lists everything (a search with nothing typed): a screenful
/// at 1024×768 is about 25 rows, so two scrolls read a page; a listing holds at most a few
/// hundred rows per node, so the pages stay few.
pub const DEFAULT_DIRECTORY_PAGE_SIZE: usize = 50;

/// How long a past outage (Redis, the tap's link, a node or its backplane link down, then back)
/// stays a Health finding (info, with its start, end and length) after it ended: long enough for
/// an operator who looks a few minutes later to learn what happened, short enough that an old
/// blip does not crowd the view. Injectable in the model (`Model::outage_memory`) for tests.
pub const DEFAULT_OUTAGE_MEMORY: Duration = Duration::from_secs(15 * 60);

/// Health acknowledgements kept (each an operator's note on one finding); the oldest goes first.
/// A few hundred is more than an operator will ever type, and bounds the memory.
pub const DEFAULT_MAX_ACKS: usize = 256;

/// A connected node whose stats are older than this is shown as stale and left out of the totals:
/// three of the 500 ms monitor snapshots missed in a row, so a node that hangs is flagged within
/// 2 s of its last word, while one late snapshot on a busy machine is not.
pub const DEFAULT_STATS_STALE: Duration = Duration::from_millis(1500);

/// The window of a node's message rates (from its counters, sampled every 500 ms): ten samples,
/// so steady traffic reads as one steady number instead of the jumps of one 500 ms delta.
pub const DEFAULT_NODE_RATE_WINDOW: Duration = Duration::from_secs(5);

/// How often the presenter's latest-messages list may change: twice a second stays readable at
/// 50 msg/s, where a list redrawn every frame is a blur.
pub const PRESENTER_LIST_REFRESH: Duration = Duration::from_millis(500);

/// Decoded traffic entries the monitor holds for a UI that fell behind (about 2 s at 50k msg/s,
/// some 50 MiB); past it new traffic is dropped and counted, so memory stays bounded.
pub const DEFAULT_MONITOR_MAX_IN_FLIGHT: usize = 100_000;

/// How long a token minted by the tools that connect to nodes (`--node-jwt-secret-file`) is
/// valid: a fresh one is minted per connection attempt, so five minutes covers a slow connect
/// with room to spare, while a token that leaks is useless soon after.
pub const DEFAULT_NODE_JWT_LIFETIME: Duration = Duration::from_secs(300);

/// Nodes known only from a heartbeat (discovered, not trusted) the dashboard keeps: more than a
/// real deployment announces, few enough that forged heartbeats cannot grow its memory or its
/// probe count without bound. Past it heartbeats are counted and the count is shown.
pub const DEFAULT_MAX_DISCOVERED_NODES: usize = 64;
/// Clock skew allowed on a JWT's `exp` and `nbf` (`--auth jwt`): 30 s, as the issue asks, and
/// less than ASP.NET Core's 5 minutes (`TokenValidationParameters.ClockSkew`), since a node and
/// its token issuer normally share NTP. A connection is also closed this long after `exp`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);

/// The JWT claim that names the user (`--user-claim`): `sub`, the subject, as ASP.NET Core's
/// default `IUserIdProvider` reads `ClaimTypes.NameIdentifier` (which `sub` maps to).
pub const DEFAULT_USER_CLAIM: &str = "sub";

/// The role (from a `role`/`roles` claim) that may add or remove *other* connections to/from
/// groups (`--admin-role`): a name no identity provider hands out by accident.
pub const DEFAULT_ADMIN_ROLE: &str = "switchboard-admin";

/// The environment variable read for the HS256 secret (the alternative to `--jwt-secret-file`).
pub const JWT_SECRET_ENV: &str = "SWITCHBOARD_JWT_SECRET";

/// Most nodes the known-nodes file of one backplane remembers (`check`, `agent`): far above any
/// cluster one Redis carries, and a file that stays a few tens of KiB; beyond it the node unseen
/// the longest is forgotten first.
pub const DEFAULT_KNOWN_NODES_MAX: usize = 256;

/// Where `switchboard agent` serves `/metrics`, `/findings` and `/healthz`: loopback (the monitor
/// token rule applies beyond it), on a port in the exporters' range next to node_exporter's 9100
/// that no exporter listed on the Prometheus wiki's default-port page claims.
pub const DEFAULT_AGENT_LISTEN: &str = "127.0.0.1:9465";

/// How often the agent sends a canary through each node to every node: often enough that an
/// alert over a few minutes has a dozen samples per pair, rarely enough that the canaries are
/// noise on any backplane (one message per node per interval, to the probes only).
pub const DEFAULT_CANARY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A canary not received by a node within this long counts as lost for that pair: delivery takes
/// milliseconds, and 5 s (the dashboard's trace timeout, the histogram's last bucket) rides out a
/// GC pause or a reconnect without a pair staying undecided for long.
pub const DEFAULT_CANARY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The group the agent's canaries are sent to, which only its probe clients join: chat users
/// never see them, and the message still crosses the backplane (a group channel on Redis).
pub const DEFAULT_CANARY_GROUP: &str = "switchboard-canary";

/// (from, to) pairs the agent keeps canary figures for: every pair of 64 nodes (the discovered
/// node cap); past it new pairs are counted as dropped, so forged heartbeats cannot grow it.
pub const DEFAULT_AGENT_MAX_CANARY_PAIRS: usize = 64 * 64;

/// Canaries waiting for their receipts: with 64 nodes and the default interval and timeout at
/// most 64 are ever pending; past it the oldest is decided at once (its missing pairs lost).
pub const DEFAULT_AGENT_MAX_PENDING_CANARIES: usize = 1024;

/// Series kept per labelled tap and Redis family (hubs × kinds, pub/sub clients): a real
/// backplane has a handful of hubs and a client per server; past it the rest are summed into one
/// `(other)` label, so a flood of odd channel names cannot grow the exposition.
pub const DEFAULT_AGENT_MAX_SERIES: usize = 1024;
