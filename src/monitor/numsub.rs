//! `PUBSUB NUMSUB` of a few channels on the tap's Redis, asked on a short-lived connection, and
//! the [`Limiter`] that lets such questions through at most once a second across the trace
//! lookups and the directory, so a burst of sends never turns into a stream of Redis commands.
//!
//! Used by `lookup` and `directory`; uses the tap's connector options. Never `hub`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Deadline of the NUMSUB command.
const NUMSUB_TIMEOUT: Duration = Duration::from_secs(2);

/// Least time between two lookups: one a second is plenty for a person reading traces.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Lets one lookup through per [`MIN_INTERVAL`].
#[derive(Clone, Default)]
pub(crate) struct Limiter {
    last: Arc<Mutex<Option<Instant>>>,
}

impl Limiter {
    /// How long to wait before the next use, which is booked now: callers that must not be
    /// refused (a directory search) wait their turn instead.
    pub(crate) fn book(&self, now: Instant) -> Duration {
        // One Option replaced whole: a poisoned lock is still consistent.
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let at = match *last {
            Some(prev) => (prev + MIN_INTERVAL).max(now),
            None => now,
        };
        *last = Some(at);
        at.saturating_duration_since(now)
    }

    /// Whether a lookup may run now (and, if so, counts it).
    pub(crate) fn allow(&self, now: Instant) -> bool {
        // One Option replaced whole: a poisoned lock is still consistent.
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(at) if now.saturating_duration_since(at) < MIN_INTERVAL => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// `PUBSUB NUMSUB c1 c2 …` on the tap's Redis, on a short-lived connection: the counts in the
/// order asked (one command, one round trip).
pub(crate) async fn numsub(
    spec: &crate::redis_conn::RedisSpec,
    channels: &[String],
) -> Result<Vec<u64>, String> {
    let connector = super::tap::connector_for(spec)?;
    let ask = async {
        let reached = connector.reach().await.map_err(|e| e.to_string())?;
        let mut c = connector
            .multiplexed(reached.entry())
            .await
            .map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("NUMSUB");
        for channel in channels {
            cmd.arg(channel);
        }
        let pairs: Vec<(String, u64)> = cmd
            .query_async(&mut c)
            .await
            .map_err(|e| crate::redis_conn::describe(&e))?;
        let counts = channels
            .iter()
            .map(|ch| pairs.iter().find(|(c, _)| c == ch).map_or(0, |(_, n)| *n))
            .collect();
        Ok::<Vec<u64>, String>(counts)
    };
    tokio::time::timeout(NUMSUB_TIMEOUT, ask)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_lets_one_lookup_through_a_second() {
        let l = Limiter::default();
        let t0 = Instant::now();
        assert!(l.allow(t0));
        assert!(!l.allow(t0 + Duration::from_millis(999)));
        assert!(l.allow(t0 + Duration::from_millis(1000)));
        let b = Limiter::default();
        assert_eq!(b.book(t0), Duration::ZERO);
        assert_eq!(
            b.book(t0 + Duration::from_millis(200)),
            Duration::from_millis(800)
        );
        assert_eq!(
            b.book(t0 + Duration::from_millis(300)),
            Duration::from_millis(1700)
        );
    }
}
