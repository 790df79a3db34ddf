//! The resolvers that recently queried the server, sampled cheaply on the
//! query path, for the node's latency prober (which measures its RTT to each
//! of their prefixes and publishes it on the health bus).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Every `SAMPLE`-th query's source is recorded: a busy resolver is seen
/// anyway, and the query path pays one atomic add for the others.
const SAMPLE: u32 = 16;
/// Distinct addresses kept, most recent first.
const KEEP: usize = 256;

#[derive(Debug, Default)]
pub struct RecentResolvers {
    count: AtomicU32,
    recent: Mutex<VecDeque<IpAddr>>,
}

impl RecentResolvers {
    /// Called for every query with its source address.
    pub fn note(&self, ip: IpAddr) {
        if !self.count.fetch_add(1, Ordering::Relaxed).is_multiple_of(SAMPLE) {
            return;
        }
        if let Ok(mut r) = self.recent.lock() {
            if r.front() == Some(&ip) {
                return;
            }
            r.retain(|x| *x != ip);
            r.push_front(ip);
            r.truncate(KEEP);
        }
    }

    /// Most recently seen first.
    pub fn snapshot(&self) -> Vec<IpAddr> {
        self.recent
            .lock()
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_distinct_sampled_sources_most_recent_first() {
        let r = RecentResolvers::default();
        let a: IpAddr = "198.18.1.2".parse().unwrap();
        let b: IpAddr = "198.18.2.2".parse().unwrap();
        // The first query is sampled, then every 16th.
        r.note(a);
        for _ in 0..15 {
            r.note(b);
        }
        assert_eq!(r.snapshot(), vec![a]);
        r.note(b);
        assert_eq!(r.snapshot(), vec![b, a]);
        for _ in 0..16 {
            r.note(a);
        }
        assert_eq!(r.snapshot(), vec![a, b], "moved to the front, not repeated");
        for i in 0..2000u32 {
            r.note(IpAddr::from(std::net::Ipv4Addr::from(0xC612_0000 + i)));
        }
        assert!(r.snapshot().len() <= KEEP);
    }
}
