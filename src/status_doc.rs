//! The documents a hub node publishes about itself, declared once: the stats snapshot
//! (`GET /switchboard/stats`, pushed every 500 ms on `/switchboard/monitor`), a page of its
//! connections (`GET /switchboard/connections`) and the heartbeat announcement on
//! `{prefix}switchboard:nodes`.
//!
//! `hub::status` fills these types and serializes them; `monitor` deserializes the very same types,
//! so renaming a field renames it on both sides. Every field still defaults when missing, so a
//! dashboard reads an older or newer node (a node of another version simply shows 0 there).
//!
//! Neutral ground: uses only serde. `hub` and `monitor` both use it; it uses neither.

use serde::{Deserialize, Serialize};

/// The `type` of a heartbeat announcement.
pub const ANNOUNCEMENT_TYPE: &str = "switchboard.node";

/// A node's stats snapshot.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStats {
    pub node_name: String,
    /// The backplane server name, `{hostname}_{32 hex}`.
    pub server_name: String,
    /// The .NET hub type name used in channel names.
    pub hub: String,
    pub channel_prefix: String,
    pub hub_path: String,
    /// The node's base URL (`http://host:port`).
    pub url: String,
    pub version: String,
    pub started_at_ms: u64,
    pub uptime_s: f64,
    /// The node's clock when it took the snapshot (unix ms).
    pub now_ms: u64,
    pub connections: ConnectionStats,
    /// Groups with at least one local member.
    pub groups: u64,
    /// Users with at least one local connection.
    pub users: u64,
    pub messages: MessageStats,
    pub backplane: BackplaneStats,
    /// Messages other nodes missed: the publish failed (backplane down or an error).
    pub forward_failures: u64,
    /// Messages for one remote connection that Redis accepted but no node had subscribed.
    pub forward_unreached: u64,
    /// Clients disconnected because their outbound queue was full.
    pub slow_client_disconnects: u64,
    /// Connections closed for a protocol error.
    pub protocol_errors: u64,
    /// Backplane payloads that could not be decoded (dropped).
    pub backplane_decode_errors: u64,
    /// Remote group operations no server acknowledged in time.
    pub group_ack_timeouts: u64,
    /// Remote AddToGroup commands this node refused (the connection was in too many groups).
    pub remote_group_refusals: u64,
    pub limits: Limits,
    /// Only in an answer to `?user=` or `?connection=`: whether this node holds that client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holds: Option<Holds>,
}

/// Whether a node holds a user or a connection (`/switchboard/stats?user=U` / `?connection=C`):
/// the dashboard's traces name the node that holds the client a test message went to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Holds {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Connections of that user on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_here: Option<bool>,
}

/// Connection counters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionStats {
    /// Live connections (handshake done).
    pub total: u64,
    pub json: u64,
    pub messagepack: u64,
    /// WebSocket upgrades accepted since start.
    pub accepted: u64,
    /// Upgrades refused because of the connection cap.
    pub rejected: u64,
    /// TCP connections closed at once because the node was at its connection cap.
    pub refused: u64,
    /// TCP connections closed at once because their IP address was at the per-IP cap.
    #[serde(default)]
    pub refused_per_ip: u64,
}

/// Message counters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageStats {
    /// Hub messages received from clients.
    pub client_in: u64,
    /// Hub messages queued for clients.
    pub client_out: u64,
    /// System calls that wrote to plain-TCP client sockets (a `send`, a vectored `sendmsg`, or one
    /// io_uring submission for many sockets), control frames included: under load,
    /// `client_writes / client_out` is system calls per delivery.
    pub client_writes: u64,
    /// Messages received from the backplane and handled.
    pub backplane_in: u64,
    /// Messages published to the backplane.
    pub backplane_out: u64,
    /// Messages received from the backplane but shed because the node's bounded inbox was full
    /// (the node could not keep up): local clients missed these.
    pub backplane_dropped: u64,
    /// Times a sharded subscription was lost while the link stayed up (its slot moved) and was
    /// taken again on the new owner: messages published in between were not received. Always 0
    /// without `--sharded-pubsub`.
    #[serde(default)]
    pub backplane_gaps: u64,
    /// Control messages (group commands, acks, client results) dropped because the node's control
    /// inbox was full: only a flood from other nodes fills it (`config::DEFAULT_CONTROL_INBOX`).
    #[serde(default)]
    pub control_dropped: u64,
    /// Invocations refused with a HubException because their connection was past its rate limit
    /// (`--max-invocations-per-second`); the connections stayed open.
    #[serde(default)]
    pub invocations_limited: u64,
}

/// The backplane link.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BackplaneStats {
    /// "memory" or "redis".
    pub kind: String,
    pub status: BackplaneStatusStats,
    /// When `status.last_error` happened (unix ms).
    pub last_error_at_ms: Option<u64>,
}

/// The backplane link's state, flattened (`backplane::BackplaneStatus` serializes to this shape).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BackplaneStatusStats {
    /// memory, connecting, connected, reconnecting or stopped.
    pub state: String,
    pub last_error: Option<String>,
    /// How many times the link was (re)established.
    pub connects: u64,
    /// While reconnecting: the delay before the next attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// While reconnecting: consecutive failed attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// The node's configured limits.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_connections: u64,
    pub max_message_size: u64,
    pub outbound_queue: u64,
    pub max_groups_per_connection: u64,
}

/// Entries per page of `GET /switchboard/connections` when `limit` is not given.
pub const CONNECTIONS_DEFAULT_LIMIT: usize = 100;

/// Most entries one page may ask for: a page is built under the registry's read lock, so its size
/// bounds how long a connect, a disconnect or a group change (the writers) can wait behind it.
/// Deliveries take the read lock too and do not wait.
pub const CONNECTIONS_MAX_LIMIT: usize = 1000;

/// Group names listed per connection (a connection may be in up to 100 groups); the rest are
/// counted in `groups_total`.
pub const CONNECTIONS_MAX_LISTED_GROUPS: usize = 32;

/// One page of a node's local connections (`GET /switchboard/connections?user=&group=&id=&limit=&after=`),
/// in connection id order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionsPage {
    pub node_name: String,
    /// The backplane server name, `{hostname}_{32 hex}`.
    pub server_name: String,
    /// The node's base URL (`http://host:port`).
    pub url: String,
    pub connections: Vec<ConnectionEntry>,
    /// Pass as `after=` to get the next page; `None` when this was the last one. A page may hold
    /// fewer than `limit` entries and still have a `next`: each page examines a bounded number of
    /// connections, so a rare match on a busy node takes several pages to reach.
    pub next: Option<String>,
    /// Connections examined to build this page.
    pub scanned: u64,
    /// The page size used.
    pub limit: u64,
}

/// One local connection in a [`ConnectionsPage`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionEntry {
    /// The SignalR connection id.
    pub id: String,
    /// The user id it connected with, if any.
    pub user: Option<String>,
    /// "json" or "messagepack".
    pub protocol: String,
    /// Its groups as spelled on the wire, sorted; at most [`CONNECTIONS_MAX_LISTED_GROUPS`].
    pub groups: Vec<String>,
    /// How many groups it is in (`groups` may be cut short).
    pub groups_total: u64,
    /// When it registered (handshake done), unix ms.
    pub connected_at_ms: u64,
}

/// A node's heartbeat on `{prefix}switchboard:nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Announcement {
    /// Always [`ANNOUNCEMENT_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    pub server_name: String,
    pub node_name: String,
    pub url: String,
    pub hub_url: String,
    pub monitor_url: String,
    pub hub: String,
    pub connections: u64,
    pub version: String,
    pub ts_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnecting_status_keeps_its_retry_fields_and_a_connected_one_omits_them() {
        let reconnecting = BackplaneStatusStats {
            state: "reconnecting".into(),
            retry_in_ms: Some(250),
            attempt: Some(3),
            ..Default::default()
        };
        let text = serde_json::to_string(&reconnecting).unwrap_or_default();
        assert!(text.contains("\"retry_in_ms\":250"), "{text}");
        let back: BackplaneStatusStats = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, reconnecting);
        let connected = BackplaneStatusStats {
            state: "connected".into(),
            ..Default::default()
        };
        let text = serde_json::to_string(&connected).unwrap_or_default();
        assert!(!text.contains("retry_in_ms"), "{text}");
    }

    #[test]
    fn the_announcement_type_is_on_the_wire_as_type() {
        let a = Announcement {
            kind: ANNOUNCEMENT_TYPE.into(),
            ..Default::default()
        };
        let text = serde_json::to_string(&a).unwrap_or_default();
        assert!(text.contains("\"type\":\"switchboard.node\""), "{text}");
    }
}
