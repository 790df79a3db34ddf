//! Response rate limiting (in the style of BIND's RRL): a token bucket per
//! client prefix for UDP responses. When a prefix is over its rate, responses
//! are dropped, except every `slip`-th one, which is sent empty with TC=1 so
//! that a real client behind a spoofed flood can still get its answer over
//! TCP while the flood's victim receives little.
//!
//! Sans-IO: the caller passes `now`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use ipnet::IpNet;

/// RRL settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RrlConfig {
    /// `0` disables rate limiting.
    pub responses_per_second: u32,
    /// Bucket depth: how many responses a quiet prefix may get at once.
    pub burst: u32,
    /// Every `slip`-th limited response is sent truncated; `0` never slips.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Bound on tracked prefixes; full (idle) buckets are evicted first.
    pub max_entries: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        Self {
            responses_per_second: 50,
            burst: 100,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            max_entries: 100_000,
        }
    }
}

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Send,
    /// Send an empty TC=1 response instead.
    Slip,
    Drop,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Instant,
    limited: u64,
}

/// The limiter; shared by all UDP sockets of a server.
#[derive(Debug)]
pub struct Rrl {
    cfg: RrlConfig,
    buckets: Mutex<HashMap<IpNet, Bucket>>,
}

impl Rrl {
    pub fn new(cfg: RrlConfig) -> Self {
        Self {
            cfg,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &RrlConfig {
        &self.cfg
    }

    fn key(&self, ip: IpAddr) -> IpNet {
        let len = if ip.is_ipv4() {
            self.cfg.ipv4_prefix.min(32)
        } else {
            self.cfg.ipv6_prefix.min(128)
        };
        IpNet::new(ip, len).map_or_else(|_| IpNet::from(ip), |n| n.trunc())
    }

    /// Accounts one response to `client` at `now`.
    /// [`Self::check`] at the current time, read only when limiting is on.
    pub fn check_now(&self, client: IpAddr) -> Action {
        if self.cfg.responses_per_second == 0 {
            return Action::Send;
        }
        self.check(client, Instant::now())
    }

    pub fn check(&self, client: IpAddr, now: Instant) -> Action {
        if self.cfg.responses_per_second == 0 {
            return Action::Send;
        }
        let key = self.key(client);
        let rate = f64::from(self.cfg.responses_per_second);
        let burst = f64::from(self.cfg.burst.max(1));
        // A poisoned lock only means another task panicked mid-update; the
        // counters are still usable, so keep limiting rather than fail open.
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.cfg.max_entries && !map.contains_key(&key) {
            map.retain(|_, b| b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst);
            if map.len() >= self.cfg.max_entries {
                // Still full of active prefixes: limit the newcomer rather
                // than grow without bound under a spoofed-source flood.
                return Action::Drop;
            }
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
            limited: 0,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Action::Send;
        }
        b.limited += 1;
        if self.cfg.slip > 0 && b.limited.is_multiple_of(u64::from(self.cfg.slip)) {
            Action::Slip
        } else {
            Action::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rrl(rate: u32, burst: u32, slip: u32) -> Rrl {
        Rrl::new(RrlConfig {
            responses_per_second: rate,
            burst,
            slip,
            ..RrlConfig::default()
        })
    }

    #[test]
    fn burst_then_limit_with_slip_then_refill() {
        let r = rrl(10, 5, 2);
        let t0 = Instant::now();
        let ip: IpAddr = "198.18.1.2".parse().unwrap();
        let got: Vec<Action> = (0..9).map(|_| r.check(ip, t0)).collect();
        assert_eq!(&got[..5], &[Action::Send; 5]);
        assert_eq!(
            &got[5..],
            &[Action::Drop, Action::Slip, Action::Drop, Action::Slip]
        );
        // Same /24 shares the bucket; another /24 does not.
        assert_eq!(r.check("198.18.1.99".parse().unwrap(), t0), Action::Drop);
        assert_eq!(r.check("198.18.2.2".parse().unwrap(), t0), Action::Send);
        // 100 ms at 10/s refills one token.
        assert_eq!(r.check(ip, t0 + Duration::from_millis(100)), Action::Send);
        assert_ne!(r.check(ip, t0 + Duration::from_millis(100)), Action::Send);
    }

    #[test]
    fn disabled_and_no_slip() {
        let r = rrl(0, 1, 2);
        let t0 = Instant::now();
        let ip: IpAddr = "2001:db8:1::2".parse().unwrap();
        assert!((0..100).all(|_| r.check(ip, t0) == Action::Send));
        let r = rrl(1, 1, 0);
        assert_eq!(r.check(ip, t0), Action::Send);
        assert!((0..10).all(|_| r.check(ip, t0) == Action::Drop));
    }

    #[test]
    fn table_is_bounded() {
        let r = Rrl::new(RrlConfig {
            responses_per_second: 1,
            burst: 1,
            max_entries: 4,
            ..RrlConfig::default()
        });
        let t0 = Instant::now();
        for i in 0..4u8 {
            assert_eq!(r.check(IpAddr::from([198, 18, i, 1]), t0), Action::Send);
        }
        // Table full of prefixes that just spent their token: newcomer limited.
        assert_eq!(r.check(IpAddr::from([198, 18, 9, 1]), t0), Action::Drop);
        // Once they are idle long enough they are evicted.
        assert_eq!(
            r.check(IpAddr::from([198, 18, 9, 1]), t0 + Duration::from_secs(5)),
            Action::Send
        );
    }
}
