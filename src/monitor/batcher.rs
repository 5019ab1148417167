//! [`Batcher`]: decoded tap entries waiting for the next flush to the event sink, and where
//! heartbeats go (the runtime's discovery, the census). The classic tap (`tap`) and the sharded
//! tap (`shard_tap`) each own one; the sharded tap's is the classic one's [`Batcher::twin`].
//!
//! Used by `tap` and `shard_tap`; uses `decode`, `census` (its limits) and the sink. Never `hub`.

use tokio::sync::mpsc;

use super::now_ms;
use super::sink::EventSink;
use super::{Announcement, LinkState, MonitorEvent, TrafficEntry, census, decode};
use crate::backplane::naming;
use crate::config;

/// Decoded entries waiting for the next flush, plus what to do with heartbeats. The sharded tap
/// (`shard_tap`) has its own, made with [`Batcher::twin`].
pub(crate) struct Batcher {
    prefix: String,
    entries: Vec<TrafficEntry>,
    sink: EventSink,
    announce_tx: mpsc::Sender<Announcement>,
    /// Heartbeats for the census (its nodes' own counts); `None` for the memory bus.
    census_tx: Option<mpsc::Sender<Announcement>>,
    /// SignalR 2 event keys for the census's health round (`GET eventKey`), each sent once.
    sr2_tx: Option<mpsc::Sender<String>>,
    sr2_sent: Vec<String>,
}

impl Batcher {
    pub(crate) fn new(prefix: &str, sink: EventSink, announce_tx: mpsc::Sender<Announcement>) -> Self {
        Batcher {
            prefix: prefix.to_string(),
            entries: Vec::new(),
            sink,
            announce_tx,
            census_tx: None,
            sr2_tx: None,
            sr2_sent: Vec::new(),
        }
    }

    /// An empty batcher for the same prefix, sink and heartbeat queue.
    pub(crate) fn twin(&self) -> Self {
        Batcher::new(&self.prefix, self.sink.clone(), self.announce_tx.clone())
    }

    /// Heartbeats also go to the census (its nodes' own counts); the Redis tap only.
    pub(crate) fn feed_census(&mut self, tx: mpsc::Sender<Announcement>) {
        self.census_tx = Some(tx);
    }

    /// SignalR 2 event keys seen go to the census's health round, each once; the Redis tap only.
    pub(crate) fn feed_sr2_keys(&mut self, tx: mpsc::Sender<String>) {
        self.sr2_tx = Some(tx);
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn message(&mut self, channel: &str, payload: &[u8]) {
        let at_ms = now_ms();
        if naming::is_nodes_channel(&self.prefix, channel)
            && let Ok(announcement) = serde_json::from_slice::<Announcement>(payload)
        {
            // Full: the supervisor (or the census) is busy; the next heartbeat (2 s) brings it
            // again.
            let _ = self.announce_tx.try_send(announcement.clone());
            if let Some(tx) = &self.census_tx {
                let _ = tx.try_send(announcement.clone());
            }
            // The supervisor tells the UI (`MonitorEvent::Announced`) about the heartbeats it
            // follows: forged ones with bad URLs, or beyond the cap, are only counted.
        }
        let entry = decode::decode(&self.prefix, channel, payload, at_ms);
        if entry.kind == super::model::EntryKind::Sr2
            && let Some(tx) = &self.sr2_tx
            && self.sr2_sent.len() < census::MAX_SR2_KEYS
            && !self.sr2_sent.iter().any(|k| k == channel)
            && tx.try_send(channel.to_string()).is_ok()
        {
            self.sr2_sent.push(channel.to_string());
        }
        self.entries.push(entry);
        if self.entries.len() >= config::DEFAULT_MONITOR_BATCH {
            self.flush();
        }
    }

    /// `n` messages dropped undecoded (the tap is behind): counted with the UI's drops.
    pub(crate) fn shed(&mut self, n: usize) {
        self.sink.shed(n);
    }

    pub(crate) fn flush(&mut self) {
        if !self.entries.is_empty() {
            self.sink
                .push(MonitorEvent::Traffic(std::mem::take(&mut self.entries)));
        }
    }

    pub(crate) fn state(&mut self, state: LinkState) {
        self.flush();
        self.sink.push(MonitorEvent::Tap {
            state,
            at_ms: now_ms(),
        });
    }
}
