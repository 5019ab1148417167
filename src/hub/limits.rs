//! Limits per client, so that one client cannot hold or flood a public node: the invocation rate
//! of one connection (a token bucket), the length of the user ids and group names that become
//! Redis channel names, and the connections from one IP address.
//!
//! Pure and std-only: `connection` owns one [`TokenBucket`] per connection (24 bytes, in its
//! task), `dispatch` checks names with [`check_name`], `listener` counts per address with
//! [`PerIp`]. The node-wide caps (connections, groups per connection) live where they are enforced.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Limits of one node, from its config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientLimits {
    /// Longest user id in bytes (`SendToUser`, the connection's own user id).
    pub max_user_id_bytes: usize,
    /// Longest group name in bytes (`JoinGroup`, `AddToGroup`, `SendToGroup`, ...).
    pub max_group_name_bytes: usize,
    /// Invocations per second one connection may make on average; 0 turns the limit off.
    pub invocations_per_second: u32,
    /// Invocations one connection may make at once after a quiet spell.
    pub invocation_burst: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_user_id_bytes: crate::config::DEFAULT_MAX_USER_ID_BYTES,
            max_group_name_bytes: crate::config::DEFAULT_MAX_GROUP_NAME_BYTES,
            invocations_per_second: crate::config::DEFAULT_MAX_INVOCATIONS_PER_SECOND,
            invocation_burst: crate::config::DEFAULT_INVOCATION_BURST,
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up. Time is passed in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn full(limits: &ClientLimits, now: Instant) -> Self {
        TokenBucket {
            tokens: f64::from(limits.invocation_burst.max(1)),
            at: now,
        }
    }

    /// Takes one token if there is one. Always true when the limit is off.
    pub fn take(&mut self, limits: &ClientLimits, now: Instant) -> bool {
        if limits.invocations_per_second == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        let burst = f64::from(limits.invocation_burst.max(1));
        self.tokens = (self.tokens + elapsed * f64::from(limits.invocations_per_second)).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The HubException message for an invocation past the rate limit.
pub(crate) fn rate_limited(limits: &ClientLimits) -> String {
    format!(
        "Rate limit: at most {} invocations per second per connection (bursts of {}); this one was refused, the connection stays open.",
        limits.invocations_per_second, limits.invocation_burst
    )
}

/// Which name a limit is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Name {
    UserId,
    Group,
}

/// `Err(HubException message)` when `value` is longer than its limit.
pub(crate) fn check_name(limits: &ClientLimits, kind: Name, value: &str) -> Result<(), String> {
    let (max, what, flag) = match kind {
        Name::UserId => (limits.max_user_id_bytes, "A user id", "--max-user-id-bytes"),
        Name::Group => (
            limits.max_group_name_bytes,
            "A group name",
            "--max-group-name-bytes",
        ),
    };
    if value.len() > max {
        Err(format!(
            "{what} may be at most {max} bytes long (this one has {}; {flag}).",
            value.len()
        ))
    } else {
        Ok(())
    }
}

/// Open connections per client IP address, under a cap. Entries are removed at zero, so the map
/// holds at most one entry per open connection.
#[derive(Debug, Default)]
pub(crate) struct PerIp {
    counts: Mutex<HashMap<IpAddr, u32>>,
}

impl PerIp {
    /// Takes a place for `ip` when it has fewer than `max` connections open.
    pub fn try_take(&self, ip: IpAddr, max: usize) -> bool {
        let mut counts = self.lock();
        let count = counts.entry(ip).or_default();
        if *count as usize >= max {
            if *count == 0 {
                counts.remove(&ip);
            }
            return false;
        }
        *count += 1;
        true
    }

    /// Gives back a place taken with [`try_take`](Self::try_take).
    pub fn release(&self, ip: IpAddr) {
        let mut counts = self.lock();
        if let Some(count) = counts.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        // Map operations only: a poisoned lock holds consistent data.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The per-IP cap in force: `configured` (0 = off) or, without one, off on a loopback listener
/// (every client is this machine) and [`DEFAULT_MAX_CONNECTIONS_PER_IP`] elsewhere.
///
/// [`DEFAULT_MAX_CONNECTIONS_PER_IP`]: crate::config::DEFAULT_MAX_CONNECTIONS_PER_IP
pub fn per_ip_cap(configured: Option<usize>, listen_loopback: bool) -> Option<usize> {
    match configured {
        Some(0) => None,
        Some(n) => Some(n),
        None if listen_loopback => None,
        None => Some(crate::config::DEFAULT_MAX_CONNECTIONS_PER_IP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(rate: u32, burst: u32) -> ClientLimits {
        ClientLimits {
            invocations_per_second: rate,
            invocation_burst: burst,
            ..ClientLimits::default()
        }
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let l = limits(100, 200);
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(&l, t0);
        assert_eq!((0..200).filter(|_| bucket.take(&l, t0)).count(), 200);
        assert!(!bucket.take(&l, t0), "the burst is spent");
        // 10 ms later: one more token at 100/s.
        let t1 = t0 + Duration::from_millis(10);
        assert!(bucket.take(&l, t1));
        assert!(!bucket.take(&l, t1));
        // A long quiet spell refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..1000).filter(|_| bucket.take(&l, t2)).count(), 200);
    }

    #[test]
    fn a_steady_flood_gets_the_rate_and_no_more() {
        let l = limits(100, 200);
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(&l, t0);
        // 10,000 invocations/s for 10 s: the burst plus 100 a second get through.
        let allowed = (0..100_000)
            .filter(|i| bucket.take(&l, t0 + Duration::from_micros(100 * i)))
            .count();
        assert!((1_150..=1_250).contains(&allowed), "{allowed}");
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let l = limits(0, 1);
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(&l, t0);
        assert!((0..10_000).all(|_| bucket.take(&l, t0)));
    }

    #[test]
    fn names_over_their_limit_are_refused_naming_it() {
        let l = ClientLimits::default();
        assert!(check_name(&l, Name::UserId, &"u".repeat(256)).is_ok());
        let e = check_name(&l, Name::UserId, &"u".repeat(257)).unwrap_err();
        assert!(e.contains("at most 256 bytes") && e.contains("257"), "{e}");
        assert!(check_name(&l, Name::Group, &"g".repeat(1024)).is_ok());
        let e = check_name(&l, Name::Group, &"g".repeat(1025)).unwrap_err();
        assert!(e.contains("group name") && e.contains("1024"), "{e}");
        // Bytes, not characters.
        assert!(check_name(&l, Name::UserId, &"é".repeat(129)).is_err());
    }

    #[test]
    fn per_ip_counts_up_to_the_cap_and_forgets_at_zero() {
        let per_ip = PerIp::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(per_ip.try_take(a, 2));
        assert!(per_ip.try_take(a, 2));
        assert!(!per_ip.try_take(a, 2), "a third from the same address");
        assert!(per_ip.try_take(b, 2), "another address is not affected");
        per_ip.release(a);
        assert!(per_ip.try_take(a, 2), "room again after one closed");
        per_ip.release(a);
        per_ip.release(a);
        per_ip.release(b);
        assert_eq!(per_ip.len(), 0, "no entry outlives its connections");
        assert!(!per_ip.try_take(a, 0));
        assert_eq!(per_ip.len(), 0, "a refusal leaves no entry");
    }

    #[test]
    fn the_per_ip_cap_is_off_on_loopback_unless_configured() {
        assert_eq!(per_ip_cap(None, true), None);
        assert_eq!(
            per_ip_cap(None, false),
            Some(crate::config::DEFAULT_MAX_CONNECTIONS_PER_IP)
        );
        assert_eq!(per_ip_cap(Some(5), true), Some(5));
        assert_eq!(per_ip_cap(Some(0), false), None);
    }
}
