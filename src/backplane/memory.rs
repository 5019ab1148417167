//! The in-process backplane: several nodes in one process (the demo, tests) exchange the same
//! channel names and payload bytes as over Redis, through a shared `MemoryBus`.
//!
//! A publish fans out to every subscriber's inbox with `try_send`: a full inbox drops the message
//! for that subscriber and counts it (`MemoryBus::dropped` for the bus, `inbox_dropped` for the
//! member), as Redis drops a slow subscriber's output. Blocking instead could deadlock two nodes
//! that publish to each other while handling. Subscriptions are reference-counted per member.
//! Taps (the dashboard's PSUBSCRIBE equivalent) see every publish.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use super::{Backplane, BackplaneError, BackplaneMessage, BackplaneState, BackplaneStatus, Inbox, Receivers};

/// The shared bus. Cloning gives another handle to the same bus.
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<BusInner>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct BusInner {
    state: Mutex<BusState>,
    dropped: AtomicU64,
    /// The part of `dropped` that taps missed (the dashboard shows it).
    tap_dropped: AtomicU64,
    /// Set while the presenter has "stopped" the bus: publishes fail as with Redis down.
    down: AtomicBool,
}

#[derive(Default)]
struct BusState {
    next_id: u64,
    /// channel → subscriber id → references (signed: a release may overtake its take; a member
    /// receives the channel while its count is positive)
    channels: HashMap<String, HashMap<u64, i64>>,
    /// subscriber id → inbox
    inboxes: HashMap<u64, Inbox>,
    taps: Vec<mpsc::Sender<BackplaneMessage>>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BusState> {
        // A panic while holding this lock cannot leave the maps inconsistent (each update is one
        // insert or remove), so a poisoned lock is safe to keep using.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the bus; messages for this member's subscriptions go to `inbox`.
    pub fn connect(&self, inbox: impl Into<Inbox>) -> MemoryBackplane {
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        let inbox: Inbox = inbox.into();
        state.inboxes.insert(id, inbox.clone());
        drop(state);
        let (status_tx, _) = watch::channel(BackplaneStatus::new(BackplaneState::Memory));
        MemoryBackplane {
            bus: self.clone(),
            id,
            status_tx,
            inbox,
        }
    }

    /// A receiver of every message published on the bus, whatever its channel.
    pub fn tap(&self, tap: mpsc::Sender<BackplaneMessage>) {
        self.lock().taps.push(tap);
    }

    /// The channels with at least one subscriber, sorted: the bus's `PUBSUB CHANNELS`.
    pub fn channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = self
            .lock()
            .channels
            .iter()
            .filter(|(_, members)| members.values().any(|n| *n > 0))
            .map(|(channel, _)| channel.clone())
            .collect();
        channels.sort();
        channels
    }

    /// Subscribers of `channel`: the bus's `PUBSUB NUMSUB`.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.lock()
            .channels
            .get(channel)
            .map_or(0, |members| members.values().filter(|n| **n > 0).count())
    }

    /// Messages dropped because a subscriber's inbox (or a tap) was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Messages a tap missed because its queue was full (part of [`dropped`](Self::dropped)).
    pub fn tap_dropped(&self) -> u64 {
        self.inner.tap_dropped.load(Ordering::Relaxed)
    }

    /// Simulates an outage (`true`) or its end: publishes fail while down.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::Relaxed);
    }

    /// Whether the bus is stopped (see [`set_down`](Self::set_down)); the dashboard's tap polls it
    /// to show the outage as Redis would show one.
    pub fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::Relaxed)
    }

    fn add_reference(&self, channel: &str, member: u64, delta: i64) {
        let mut state = self.lock();
        let members = state.channels.entry(channel.to_string()).or_default();
        let count = members.entry(member).or_default();
        *count += delta;
        if *count == 0 {
            members.remove(&member);
        }
        if members.is_empty() {
            state.channels.remove(channel);
        }
    }

    fn publish(&self, channel: &str, payload: Bytes) -> Result<usize, BackplaneError> {
        if self.inner.down.load(Ordering::Relaxed) {
            return Err(BackplaneError::Down("the in-memory bus is stopped".into()));
        }
        let mut state = self.lock();
        let message = BackplaneMessage {
            channel: channel.to_string(),
            payload,
        };
        let mut delivered = 0;
        if let Some(ids) = state.channels.get(channel) {
            for id in ids.iter().filter(|(_, n)| **n > 0).map(|(id, _)| id) {
                if let Some(inbox) = state.inboxes.get(id) {
                    if inbox.offer(message.clone()) {
                        delivered += 1;
                    } else if !inbox.is_closed() {
                        // Redis counts a subscriber it could not serve as a receiver too.
                        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                        delivered += 1;
                    }
                }
            }
        }
        state.taps.retain(|tap| match tap.try_send(message.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                self.inner.tap_dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        Ok(delivered)
    }
}

/// One member's handle on the bus.
pub struct MemoryBackplane {
    bus: MemoryBus,
    id: u64,
    status_tx: watch::Sender<BackplaneStatus>,
    inbox: Inbox,
}

impl Drop for MemoryBackplane {
    fn drop(&mut self) {
        let mut state = self.bus.lock();
        state.inboxes.remove(&self.id);
        state.channels.retain(|_, members| {
            members.remove(&self.id);
            !members.is_empty()
        });
    }
}

impl Backplane for MemoryBackplane {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, Result<Receivers, BackplaneError>> {
        // One process sees every subscriber: the count is global.
        let result = self.bus.publish(channel, payload).map(Receivers::All);
        Box::pin(async move { result })
    }

    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BackplaneError>> {
        self.bus.add_reference(channel, self.id, 1);
        Box::pin(async { Ok(()) })
    }

    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), BackplaneError>> {
        self.bus.add_reference(channel, self.id, -1);
        Box::pin(async { Ok(()) })
    }

    fn status(&self) -> watch::Receiver<BackplaneStatus> {
        self.status_tx.subscribe()
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn inbox_dropped(&self) -> u64 {
        self.inbox.dropped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_tap_misses_messages_and_they_are_counted() {
        let bus = MemoryBus::new();
        let (tap_tx, _tap_rx) = mpsc::channel(1);
        bus.tap(tap_tx);
        let member = bus.connect(mpsc::channel(8).0);
        for _ in 0..3 {
            member.publish("c", Bytes::from_static(b"x")).await.unwrap();
        }
        assert_eq!(bus.tap_dropped(), 2);
        assert_eq!(bus.dropped(), 2);
    }

    #[tokio::test]
    async fn publish_reaches_subscribers_and_taps_only() {
        let bus = MemoryBus::new();
        let (a_tx, mut a_rx) = mpsc::channel(8);
        let (b_tx, mut b_rx) = mpsc::channel(8);
        let (tap_tx, mut tap_rx) = mpsc::channel(8);
        let a = bus.connect(a_tx);
        let b = bus.connect(b_tx);
        bus.tap(tap_tx);
        a.subscribe("H:all").await.unwrap();
        b.subscribe("H:group:g").await.unwrap();
        assert_eq!(
            b.publish("H:all", Bytes::from_static(b"x")).await.unwrap(),
            Receivers::All(1)
        );
        let got = a_rx.recv().await.unwrap();
        assert_eq!((got.channel.as_str(), &got.payload[..]), ("H:all", &b"x"[..]));
        assert!(b_rx.try_recv().is_err());
        assert_eq!(tap_rx.recv().await.unwrap().channel, "H:all");
        a.unsubscribe("H:all").await.unwrap();
        assert_eq!(
            b.publish("H:all", Bytes::from_static(b"y")).await.unwrap(),
            Receivers::All(0)
        );
    }

    #[tokio::test]
    async fn full_inbox_drops_and_counts() {
        let bus = MemoryBus::new();
        let (a_tx, _a_rx) = mpsc::channel(1);
        let a = bus.connect(a_tx);
        a.subscribe("c").await.unwrap();
        a.publish("c", Bytes::new()).await.unwrap();
        a.publish("c", Bytes::new()).await.unwrap();
        assert_eq!(bus.dropped(), 1);
        assert_eq!(a.inbox_dropped(), 1);
    }

    #[tokio::test]
    async fn subscriptions_are_counted_per_member() {
        let bus = MemoryBus::new();
        let (a_tx, _a_rx) = mpsc::channel(8);
        let a = bus.connect(a_tx);
        a.subscribe("u").await.unwrap();
        a.subscribe("u").await.unwrap();
        a.unsubscribe("u").await.unwrap();
        assert_eq!(bus.channels(), ["u"], "one reference is left");
        a.unsubscribe("u").await.unwrap();
        assert!(bus.channels().is_empty());
        a.unsubscribe("g").await.unwrap();
        assert_eq!(
            a.publish("g", Bytes::new()).await.unwrap(),
            Receivers::All(0),
            "released before taken"
        );
        a.subscribe("g").await.unwrap();
        assert!(bus.channels().is_empty(), "the late take nets out");
    }

    #[tokio::test]
    async fn a_stopped_bus_fails_publishes() {
        let bus = MemoryBus::new();
        let (a_tx, _a_rx) = mpsc::channel(1);
        let a = bus.connect(a_tx);
        bus.set_down(true);
        assert!(a.publish("c", Bytes::new()).await.is_err());
        bus.set_down(false);
        assert!(a.publish("c", Bytes::new()).await.is_ok());
    }
}
