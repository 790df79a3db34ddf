//! New-flow rate limit per source for the userspace dataplane: the part of
//! SYN-flood and connection-flood protection that belongs to a proxy that
//! terminates TCP. (Half-open floods never reach it: the kernel answers
//! them with SYN cookies before `accept`; see the crate docs.)
//!
//! One token bucket per source prefix (/32 for IPv4, /64 for IPv6, so a
//! host cannot escape by rotating addresses in its /64). The clock is an
//! argument, so the limiter is tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Limit of new flows (TCP connections, UDP flows) per source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLimit {
    /// Sustained new flows per second per source.
    pub per_second: u32,
    /// Flows a source may open at once before the rate applies.
    pub burst: u32,
    /// Sources tracked at most; beyond that, new sources are admitted
    /// untracked (fail open, bounded memory) once idle ones are dropped.
    pub max_sources: usize,
}

impl Default for SourceLimit {
    fn default() -> Self {
        SourceLimit {
            per_second: 100,
            burst: 200,
            max_sources: 65_536,
        }
    }
}

/// (tokens left, time of the last refill).
type Bucket = (f64, Instant);

#[derive(Debug)]
pub(crate) struct SourceLimiter {
    limit: SourceLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// The key a source is counted under.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(a) => {
            let bits = u128::from(a) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl SourceLimiter {
    pub(crate) fn new(limit: SourceLimit) -> Self {
        SourceLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `src` may open one more flow now.
    pub(crate) fn admit(&self, src: IpAddr, now: Instant) -> bool {
        let key = source_key(src);
        let SourceLimit {
            per_second,
            burst,
            max_sources,
        } = self.limit;
        let (per_second, burst) = (f64::from(per_second), f64::from(burst));
        // The map holds plain numbers: a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is used as it is.
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= max_sources && !map.contains_key(&key) {
            let refilled =
                |b: &Bucket| b.0 + now.saturating_duration_since(b.1).as_secs_f64() * per_second >= burst;
            map.retain(|_, b| !refilled(b));
            if map.len() >= max_sources {
                return true;
            }
        }
        let b = map.entry(key).or_insert((burst, now));
        b.0 = (b.0 + now.saturating_duration_since(b.1).as_secs_f64() * per_second).min(burst);
        b.1 = now;
        if b.0 < 1.0 {
            return false;
        }
        b.0 -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(per_second: u32, burst: u32, max_sources: usize) -> SourceLimiter {
        SourceLimiter::new(SourceLimit {
            per_second,
            burst,
            max_sources,
        })
    }

    #[test]
    fn a_source_gets_its_burst_then_the_rate_and_others_are_unaffected() {
        let l = limiter(10, 5, 100);
        let t0 = Instant::now();
        let a: IpAddr = "198.18.1.2".parse().unwrap();
        let b: IpAddr = "198.18.1.3".parse().unwrap();
        assert_eq!((0..8).filter(|_| l.admit(a, t0)).count(), 5, "the burst");
        assert!(l.admit(b, t0), "another source has its own bucket");
        // 10/s: after 0.35 s three more tokens.
        let t1 = t0 + Duration::from_millis(350);
        assert_eq!((0..8).filter(|_| l.admit(a, t1)).count(), 3);
    }

    #[test]
    fn ipv6_sources_share_their_64_and_mapped_ipv4_is_ipv4() {
        let l = limiter(1, 2, 100);
        let t = Instant::now();
        assert!(l.admit("2001:db8:1:2::1".parse().unwrap(), t));
        assert!(l.admit("2001:db8:1:2::ffff".parse().unwrap(), t));
        assert!(!l.admit("2001:db8:1:2:abcd::9".parse().unwrap(), t), "same /64");
        assert!(l.admit("2001:db8:1:3::1".parse().unwrap(), t));
        assert!(l.admit("::ffff:198.18.1.2".parse().unwrap(), t));
        assert!(l.admit("198.18.1.2".parse().unwrap(), t));
        assert!(
            !l.admit("198.18.1.2".parse().unwrap(), t),
            "counted as one source"
        );
    }

    #[test]
    fn memory_is_bounded_and_full_tables_fail_open() {
        let l = limiter(1, 1, 4);
        let t = Instant::now();
        for i in 1..=4u8 {
            assert!(l.admit(IpAddr::from([198, 18, 0, i]), t));
        }
        // Four limited sources fill the table: a fifth is admitted untracked.
        assert!(l.admit(IpAddr::from([198, 18, 0, 5]), t));
        assert!(l.admit(IpAddr::from([198, 18, 0, 5]), t));
        // Once the others have refilled they are dropped and 5 is tracked.
        let later = t + Duration::from_secs(2);
        assert!(l.admit(IpAddr::from([198, 18, 0, 5]), later));
        assert!(!l.admit(IpAddr::from([198, 18, 0, 5]), later));
        assert!(l.buckets.lock().unwrap().len() <= 4);
    }
}
