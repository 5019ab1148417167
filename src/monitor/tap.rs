//! The tap: a PSUBSCRIBE on the backplane's Redis (or a tap on the demo's in-memory bus), every
//! message decoded with `decode::decode` and handed on in batches; node discovery from the
//! heartbeat channel. Starts the `census` beside a Redis tap (and feeds it the heartbeats); the
//! in-memory bus's census is counted here.
//!
//! Transport failure is a state: the tap reports Connecting → Connected → Reconnecting{..} with a
//! capped backoff (the backplane's `reconnect` loop, paced by the failure's kind), and Failed only
//! for a URL that can never work. Errors never echo a password.
//!
//! Run by `runtime`; uses `backplane` (naming, `reconnect`, `MemoryBus`), `decode` and `census`.
//! Never `hub`.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::batcher::Batcher;
use super::now_ms;
use super::sink::EventSink;
use super::{Announcement, LinkState, MonitorEvent, TapSource, census};
use crate::backplane::BackplaneMessage;
use crate::backplane::memory::MemoryBus;
use crate::backplane::naming::Channels;
use crate::backplane::reconnect::{self, Failure, Link, LinkFailure, Report};
use crate::config;
use crate::redis_conn::{RedisConnector, RedisSpec};
pub use census::census_of;

/// Messages queued from the memory bus to the tap; the bus drops (and counts) beyond it rather
/// than stalling publishers.
const MEMORY_TAP_QUEUE: usize = 16_384;

/// A read chunk at least this long means messages were already waiting. tokio's cooperative
/// budget hands a task at most 128 queued messages per poll, so a backlog shows as chunks of ~128,
/// while a tap that keeps up reads a few at a time.
const BACKLOG_CHUNK: usize = 64;

/// Consecutive backlogged chunks after which the tap counts decoding as behind: 800 × 64+ = at
/// least 51,200 messages waiting (half a second at 100k msg/s), so a short stall of the machine
/// never sheds anything.
const SHED_AFTER_FULL_CHUNKS: u32 = 800;

/// Decides, chunk by chunk, whether the tap decodes or sheds: while read chunks keep coming back
/// long ([`BACKLOG_CHUNK`]), messages are arriving faster than they are decoded; past
/// [`SHED_AFTER_FULL_CHUNKS`] the tap drops whole chunks undecoded (counted as dropped, shown by
/// the UI) until a chunk comes back short, i.e. the backlog is gone. This bounds the memory
/// redis-rs's unbounded queue would otherwise take.
#[derive(Debug, Default)]
struct Shedder {
    full_streak: u32,
    shedding: bool,
}

impl Shedder {
    /// Whether to decode a chunk of `len` messages.
    fn keep(&mut self, len: usize) -> bool {
        if len < BACKLOG_CHUNK {
            self.full_streak = 0;
            self.shedding = false;
            return true;
        }
        self.full_streak += 1;
        if self.full_streak > SHED_AFTER_FULL_CHUNKS {
            if !self.shedding {
                tracing::warn!(
                    "the tap cannot decode as fast as messages arrive: dropping undecoded messages"
                );
            }
            self.shedding = true;
        }
        !self.shedding
    }
}

/// Runs the tap until `cancel`; the runtime spawns it.
pub(crate) async fn run(
    source: TapSource,
    sink: EventSink,
    announce_tx: mpsc::Sender<Announcement>,
    cancel: CancellationToken,
) {
    match source {
        TapSource::Redis { spec, prefix } => run_redis(*spec, prefix, sink, announce_tx, cancel).await,
        TapSource::Memory { bus, prefix } => run_memory(bus, prefix, sink, announce_tx, cancel).await,
    }
}

/// The connector for a Redis tap source (reads its TLS files), or why it cannot work, in plain
/// words. Checked before a working tap is replaced.
pub fn connector_for(spec: &RedisSpec) -> Result<RedisConnector, String> {
    RedisConnector::new(spec.clone())
        .map(|c| c.with_name("switchboard-dashboard"))
        .map_err(|e| e.to_string())
}

/// Besides `{prefix}*`, the tap listens to broadcasts under any prefix when its own is not empty:
/// a server with another `ChannelPrefix` (or none) publishes there, and the health rules report it
/// (`foreign-channel`). Broadcasts only: a misconfigured server's `:all` traffic is enough to see
/// it, and another application's per-connection traffic is not read.
pub const FOREIGN_PATTERN: &str = "*:all";

/// Whether a message is the second copy of one the tap already gets: Redis delivers a message once
/// per matching pattern, so a broadcast under the tap's own prefix arrives through `{prefix}*` and
/// again through [`FOREIGN_PATTERN`]; the latter copy is dropped.
fn second_copy(prefix: &str, channel: &str, pattern: Option<&str>) -> bool {
    !prefix.is_empty() && pattern == Some(FOREIGN_PATTERN) && channel.starts_with(prefix)
}

async fn subscribe(connector: &RedisConnector, pattern: &str) -> Result<redis::aio::PubSub, Failure> {
    let connect = async {
        let reached = connector.reach().await?;
        let mut pubsub = connector.pubsub(reached.entry()).await?;
        pubsub
            .psubscribe(pattern)
            .await
            .map_err(|e| Failure::redis(&e).context(format_args!("PSUBSCRIBE {pattern}")))?;
        if pattern != "*" {
            pubsub
                .psubscribe(FOREIGN_PATTERN)
                .await
                .map_err(|e| Failure::redis(&e).context(format_args!("PSUBSCRIBE {FOREIGN_PATTERN}")))?;
        }
        Ok::<_, Failure>(pubsub)
    };
    match tokio::time::timeout(config::DEFAULT_REDIS_CONNECT_TIMEOUT * 2, connect).await {
        Ok(result) => result,
        Err(_) => Err(Failure::new(
            LinkFailure::Timeout,
            format!(
                "timed out after {:?} connecting to Redis",
                config::DEFAULT_REDIS_CONNECT_TIMEOUT * 2
            ),
        )),
    }
}

/// The Redis tap as the reconnect loop drives it: PSUBSCRIBE, then decode until the link is lost.
struct TapLink {
    connector: RedisConnector,
    pattern: String,
    prefix: String,
    batcher: Batcher,
}

impl Link for TapLink {
    type Conn = redis::aio::PubSub;

    async fn connect(&mut self) -> Result<redis::aio::PubSub, Failure> {
        subscribe(&self.connector, &self.pattern).await
    }

    async fn serve(&mut self, pubsub: redis::aio::PubSub) -> Result<(), Failure> {
        let (prefix, batcher) = (&self.prefix, &mut self.batcher);
        // redis-rs queues pub/sub messages without bound behind this stream, so the
        // tap reads them in chunks and sheds load itself when decoding falls behind.
        let mut messages = pubsub
            .into_on_message()
            .ready_chunks(config::DEFAULT_MONITOR_BATCH);
        let mut shedder = Shedder::default();
        let mut tick = tokio::time::interval(config::DEFAULT_MONITOR_FLUSH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = tick.tick() => batcher.flush(),
                chunk = messages.next() => match chunk {
                    Some(chunk) => {
                        if shedder.keep(chunk.len()) {
                            for m in &chunk {
                                let channel = m.get_channel_name();
                                // Only a broadcast under the prefix can be a second copy:
                                // the pattern is read (an allocation) for those alone.
                                if channel.ends_with(":all")
                                    && second_copy(
                                        prefix,
                                        channel,
                                        m.get_pattern::<Option<String>>().ok().flatten().as_deref(),
                                    )
                                {
                                    continue;
                                }
                                batcher.message(channel, m.get_payload_bytes());
                            }
                        } else {
                            batcher.shed(chunk.len());
                        }
                    }
                    None => return Err(Failure::new(LinkFailure::Lost, "connection to Redis lost")),
                },
            }
        }
    }

    /// Whole seconds between attempts, so the countdown shown counts (see the config).
    fn retry_cap(&self, kind: LinkFailure) -> std::time::Duration {
        kind.retry_cap().max(config::DEFAULT_WATCH_RECONNECT_MAX)
    }

    fn report(&mut self, state: Report<'_>) {
        match state {
            Report::Connecting => self.batcher.state(LinkState::Connecting),
            Report::Connected => {
                tracing::info!(pattern = %self.pattern, "tap subscribed");
                self.batcher.state(LinkState::Connected);
            }
            Report::Reconnecting {
                attempt,
                retry_in,
                error,
            } => {
                tracing::warn!(%error, attempt, "tap link problem");
                self.batcher.state(LinkState::Reconnecting {
                    attempt,
                    retry_at_ms: now_ms() + retry_in.as_millis() as u64,
                    error: error.message.clone(),
                });
            }
        }
    }
}

async fn run_redis(
    spec: RedisSpec,
    prefix: String,
    sink: EventSink,
    announce_tx: mpsc::Sender<Announcement>,
    cancel: CancellationToken,
) {
    let mut batcher = Batcher::new(&prefix, sink.clone(), announce_tx);
    let connector = match connector_for(&spec) {
        Ok(connector) => connector,
        Err(error) => {
            tracing::warn!(%error, "the tap cannot use this Redis connection");
            batcher.state(LinkState::Failed { error });
            return;
        }
    };
    tokio::spawn(super::shard_tap::run(
        connector.clone(),
        batcher.twin(),
        sink.clone(),
        cancel.clone(),
    ));
    let (census_tx, census_rx) = mpsc::channel(census::HEARTBEAT_QUEUE);
    batcher.feed_census(census_tx);
    let (sr2_tx, sr2_rx) = mpsc::channel(census::SR2_KEY_QUEUE);
    batcher.feed_sr2_keys(sr2_tx);
    let census = tokio::spawn(census::run_redis(
        connector.clone(),
        prefix.clone(),
        sink,
        census_rx,
        sr2_rx,
        cancel.clone(),
    ));
    let mut link = TapLink {
        connector,
        pattern: Channels::tap_pattern(&prefix),
        prefix,
        batcher,
    };
    reconnect::run(&mut link, &cancel).await;
    link.batcher.state(LinkState::Idle);
    census.abort();
    let _ = census.await;
}

async fn run_memory(
    bus: MemoryBus,
    prefix: String,
    sink: EventSink,
    announce_tx: mpsc::Sender<Announcement>,
    cancel: CancellationToken,
) {
    let mut batcher = Batcher::new(&prefix, sink.clone(), announce_tx);
    let (tx, mut rx) = mpsc::channel::<BackplaneMessage>(MEMORY_TAP_QUEUE);
    bus.tap(tx);
    let mut down = bus.is_down();
    let down_state = |attempt: u32| LinkState::Reconnecting {
        attempt,
        retry_at_ms: now_ms() + config::DEFAULT_MONITOR_FLUSH.as_millis() as u64,
        error: "the in-memory bus is stopped".to_string(),
    };
    if down {
        batcher.state(down_state(1));
    } else {
        batcher.state(LinkState::Connected);
    }
    let mut tick = tokio::time::interval(config::DEFAULT_MONITOR_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut census_tick = tokio::time::interval(config::DEFAULT_CENSUS_INTERVAL);
    census_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut missed = bus.tap_dropped();
    let mut walks = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                batcher.flush();
                // What the bus could not hand this tap (its queue was full) counts as dropped.
                let now_missed = bus.tap_dropped();
                if now_missed > missed {
                    batcher.shed((now_missed - missed) as usize);
                    missed = now_missed;
                }
                let now_down = bus.is_down();
                if now_down != down {
                    down = now_down;
                    if down {
                        batcher.state(down_state(1));
                    } else {
                        batcher.state(LinkState::Connected);
                    }
                }
            }
            _ = census_tick.tick() => {
                if !down {
                    let channels = bus.channels();
                    let hubs = census_of(&prefix, channels.iter().map(String::as_str));
                    let at_ms = now_ms();
                    walks += 1;
                    sink.push(MonitorEvent::Census { at_ms, hubs: hubs.clone() });
                    sink.push(MonitorEvent::CensusStatus(census::memory_status(
                        at_ms,
                        channels.len() as u64,
                        walks,
                    )));
                    // The bus counts its own subscribers: the same figures as Redis's NUMSUB.
                    let round = super::HealthRound {
                        at_ms,
                        hubs: hubs
                            .iter()
                            .take(census::MAX_HEALTH_HUBS)
                            .map(|h| {
                                let names = Channels::new(&prefix, h.hub.as_str());
                                super::HubSubscribers {
                                    hub: h.hub.clone(),
                                    all: bus.subscribers(&names.all()) as u64,
                                    groups: bus.subscribers(&names.internal_groups()) as u64,
                                    ack_servers: h
                                        .servers
                                        .iter()
                                        .filter(|s| bus.subscribers(&names.ack(s)) > 0)
                                        .cloned()
                                        .collect(),
                                }
                            })
                            .collect(),
                        ..super::HealthRound::default()
                    };
                    sink.push(MonitorEvent::HealthRound(round));
                }
            }
            message = rx.recv() => match message {
                Some(m) => batcher.message(&m.channel, &m.payload),
                None => break,
            },
        }
    }
    // Dropping `rx` unregisters the tap from the bus at its next publish.
    batcher.state(LinkState::Idle);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_under_the_prefix_is_kept_once_and_foreign_ones_are_kept() {
        let own = Channels::tap_pattern("p:");
        assert!(second_copy("p:", "p:Hub:all", Some(FOREIGN_PATTERN)));
        assert!(!second_copy("p:", "p:Hub:all", Some(&own)));
        assert!(!second_copy("p:", "q:Hub:all", Some(FOREIGN_PATTERN)));
        // An empty prefix subscribes `*` alone.
        assert!(!second_copy("", "Hub:all", Some(FOREIGN_PATTERN)));
    }

    #[test]
    fn census_patterns_escape_the_prefix() {
        assert_eq!(Channels::census_patterns("a*")[0], "a\\**:connection:*");
    }
}

#[cfg(test)]
mod shed_tests {
    use super::*;

    #[test]
    fn the_tap_sheds_only_a_lasting_backlog_and_stops_when_it_is_gone() {
        let full = BACKLOG_CHUNK;
        let mut s = Shedder::default();
        // A short burst of full chunks is decoded.
        for _ in 0..SHED_AFTER_FULL_CHUNKS {
            assert!(s.keep(full));
        }
        assert!(s.keep(10), "a short chunk resets the streak");
        for _ in 0..SHED_AFTER_FULL_CHUNKS {
            assert!(s.keep(full));
        }
        // Past the limit, full chunks are shed until one comes back short.
        assert!(!s.keep(full));
        assert!(!s.keep(full));
        assert!(s.keep(full - 1));
        assert!(s.keep(full), "decoding again after the backlog drained");
    }
}
