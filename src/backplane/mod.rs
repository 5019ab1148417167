//! The backplane: how hub nodes reach connections that live on other nodes.
//!
//! Delivery semantics (the same as ASP.NET Core's Redis backplane, which this is wire-compatible with):
//! * **At most once.** A message published while the backplane is down is not queued or replayed;
//!   the failure is returned to the caller (who counts it) and nothing else is affected.
//! * **Publishers receive their own messages** when they are subscribed to the channel: a node
//!   delivers `:all`, `:group:` and `:user:` traffic to its local clients *from its subscription*,
//!   never directly, so that nothing is delivered twice (B.9.6). When a publish fails the caller
//!   delivers locally itself, so local clients never lose messages to a backplane outage.
//! * **Per-channel order** is the order of publishes from one node (Redis and the memory bus both
//!   keep it); nothing is promised across channels or across nodes.
//! * **Subscriptions are a desired set.** `subscribe` records the channel and returns once the
//!   server confirmed it (or at once while disconnected); after a reconnect every channel in the set
//!   is subscribed again before the state goes back to `Connected`.
//!
//! Incoming messages are handed to the `mpsc::Sender<BackplaneMessage>` given at construction.
//!
//! `naming` is the only place that builds channel names; `wire` is the payload codec, shared with the
//! dashboard's decoder. This module never sees `hub`, `monitor` or `ui`.

mod cursor;
pub mod memory;
pub mod naming;
pub mod redis;
pub mod sr2;
pub mod wire;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::watch;

/// One message received from the backplane: its wire channel name (prefix included) and payload.
#[derive(Debug, Clone)]
pub struct BackplaneMessage {
    pub channel: String,
    pub payload: Bytes,
}

/// The health of a backplane link, as shown by the monitor endpoint and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BackplaneState {
    /// The in-process bus: always up.
    Memory,
    /// First connection attempt under way.
    Connecting,
    /// Connected and every desired channel subscribed.
    Connected,
    /// The link was lost (or never made); the next attempt is in `retry_in`.
    Reconnecting {
        attempt: u32,
        #[serde(serialize_with = "ser_duration_ms", rename = "retry_in_ms")]
        retry_in: Duration,
    },
    /// Shut down on purpose.
    Stopped,
}

fn ser_duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl BackplaneState {
    /// True when a publish now can be expected to reach subscribers.
    pub fn is_up(&self) -> bool {
        matches!(self, BackplaneState::Memory | BackplaneState::Connected)
    }
}

/// The state plus what the operator needs to judge it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackplaneStatus {
    #[serde(flatten)]
    pub state: BackplaneState,
    /// The last error seen on the link (kept after recovery, with its time, so a blip is visible).
    pub last_error: Option<String>,
    #[serde(skip)]
    pub last_error_at: Option<SystemTime>,
    /// How many times the link was (re)established.
    pub connects: u64,
}

impl BackplaneStatus {
    pub fn new(state: BackplaneState) -> Self {
        BackplaneStatus {
            state,
            last_error: None,
            last_error_at: None,
            connects: 0,
        }
    }
}

/// Why a backplane operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackplaneError {
    #[error("the backplane is not connected ({0})")]
    Down(String),
    #[error("redis error: {0}")]
    Redis(String),
    #[error("the backplane has stopped")]
    Stopped,
}

/// A pub/sub transport between hub nodes. See the module docs for the delivery guarantees.
pub trait Backplane: Send + Sync + 'static {
    /// Publishes `payload` on the wire channel `channel` and returns how many subscribers got it.
    /// Fails fast (without waiting for a reconnect) when the link is down.
    fn publish(&self, channel: &str, payload: Bytes) -> BoxFuture<'_, Result<usize, BackplaneError>>;

    /// Adds `channel` to the desired set and waits for the server to confirm it when connected.
    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// Removes `channel` from the desired set.
    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// The live status of the link.
    fn status(&self) -> watch::Receiver<BackplaneStatus>;

    /// "memory" or "redis", for the monitor endpoint.
    fn kind(&self) -> &'static str;
}

/// The reconnect delay after `attempt` consecutive failures: doubling from `base`, capped at `max`.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        assert_eq!(backoff(0, base, max), Duration::from_millis(100));
        assert_eq!(backoff(1, base, max), Duration::from_millis(200));
        assert_eq!(backoff(5, base, max), Duration::from_millis(3200));
        assert_eq!(backoff(6, base, max), max);
        assert_eq!(backoff(u32::MAX, base, max), max);
    }
}
