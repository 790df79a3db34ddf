//! Per-client token buckets (429 when empty). The clock is an argument so
//! the limiter is testable without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::balance::stable_hash;
use crate::route::canonical_ip;

const SHARDS: usize = 16;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Sharded so that concurrent clients rarely contend on one mutex; the
/// critical section is a hash lookup and a few float operations.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_per_shard: usize,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl RateLimiter {
    pub fn new(requests_per_second: f64, burst: u32, max_clients: usize) -> Self {
        RateLimiter {
            rate: requests_per_second,
            burst: f64::from(burst),
            max_per_shard: max_clients.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// IPv6 clients are limited per /64: one host usually owns a whole /64
    /// and could otherwise rotate addresses to escape the limit.
    pub fn client_key(ip: IpAddr) -> IpAddr {
        match canonical_ip(ip) {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        }
    }

    /// Takes one token for `ip`; `false` means the request must get 429.
    pub fn check(&self, ip: IpAddr, now: Instant) -> bool {
        let key = Self::client_key(ip);
        let shard = match key {
            IpAddr::V4(a) => stable_hash(&a.octets(), 0),
            IpAddr::V6(a) => stable_hash(&a.octets(), 0),
        } as usize
            % SHARDS;
        // A poisoned shard only means another request panicked mid-update;
        // the bucket data is still plain numbers, so keep using it.
        let mut map = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&key) && map.len() >= self.max_per_shard {
            // Drop clients whose bucket has refilled: they lose nothing.
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst);
            if map.len() >= self.max_per_shard {
                // Still full of active clients: admit untracked rather than
                // evicting someone mid-limit (fail open, bounded memory).
                return true;
            }
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(2.0, 3, 100);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(rl.check(ip, t0) && rl.check(ip, t0) && rl.check(ip, t0));
        assert!(!rl.check(ip, t0));
        assert!(rl.check(other, t0), "buckets are per client");
        assert!(rl.check(ip, t0 + Duration::from_millis(500)));
        assert!(!rl.check(ip, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn ipv6_limited_per_64() {
        let rl = RateLimiter::new(1.0, 1, 100);
        let t0 = Instant::now();
        assert!(rl.check("2001:db8:1:2::1".parse().unwrap(), t0));
        assert!(!rl.check("2001:db8:1:2::ffff".parse().unwrap(), t0));
        assert!(rl.check("2001:db8:1:3::1".parse().unwrap(), t0));
    }

    #[test]
    fn table_is_bounded() {
        let rl = RateLimiter::new(1.0, 1, SHARDS);
        let t0 = Instant::now();
        for i in 0..=255u8 {
            rl.check(IpAddr::from([198, 18, 0, i]), t0);
        }
        let total: usize = rl.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS, "{total}");
    }
}
