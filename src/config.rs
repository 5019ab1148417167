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

/// Upper bound on concurrent client connections; extra WebSocket upgrades get 503.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Messages from the backplane waiting to be fanned out locally. Large enough to absorb bursts;
/// Redis itself buffers beyond it (the reader applies backpressure to the socket).
pub const DEFAULT_BACKPLANE_INBOX: usize = 8192;

/// ASP.NET Core's ack timeout for remote group operations (checked every 5 s there; we use a timer).
pub const DEFAULT_GROUP_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// First Redis reconnect delay; doubled per failure.
pub const DEFAULT_RECONNECT_BASE: Duration = Duration::from_millis(200);

/// Reconnect delay cap: short enough that a node comes back within seconds of Redis.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Connect timeout for one Redis attempt, so an unroutable host does not stall the loop.
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the monitor WebSocket pushes a snapshot to the dashboard.
pub const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_millis(500);

/// How often a node announces itself on `{prefix}switchboard:nodes`.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// How long shutdown waits for clients to receive their Close before the process exits.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Traffic entries the dashboard keeps (newest win). 100k rows of a few hundred bytes each stay
/// well under 100 MiB, and cover two seconds at the 50k msg/s the UI is built to keep up with.
pub const DEFAULT_RING_ENTRIES: usize = 100_000;

/// Payload bytes the dashboard keeps in its ring, so a stream of large messages cannot grow memory
/// past this (64 MiB) before the entry limit applies.
pub const DEFAULT_RING_BYTES: usize = 64 * 1024 * 1024;
