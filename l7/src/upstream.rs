//! The upstream snapshot: per pool, the current members and their selector.
//!
//! The proxy holds an `ArcSwap<Upstreams>`; a request loads it once and
//! selects from that snapshot without taking any lock. The controller pushes
//! backend sets with [`crate::Proxy::set_backends`], which builds a new
//! snapshot off the request path and swaps it in atomically.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use ring::hmac;

use crate::balance::{BackendStats, Member, PickCtx, Rng, Selector};
use crate::config::{Backend, Balance};

/// All pools' current views.
#[derive(Debug, Default)]
pub struct Upstreams {
    pub(crate) pools: HashMap<String, Arc<PoolView>>,
}

impl Upstreams {
    pub fn pool(&self, name: &str) -> Option<&Arc<PoolView>> {
        self.pools.get(name)
    }
}

/// One pool's members at one point in time.
#[derive(Debug)]
pub struct PoolView {
    pub name: String,
    pub members: Vec<Member>,
    pub selector: Selector,
    /// Opaque persistence-cookie value of each member (same order).
    cookie_ids: Vec<String>,
    by_cookie: HashMap<String, usize>,
}

/// The static parts of a pool a view is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViewSpec<'a> {
    pub name: &'a str,
    pub algorithm: &'a Balance,
    pub sticky_key: Option<&'a hmac::Key>,
    pub slow_start: Duration,
}

/// Key identifying "the same backend" across pushes: counters and slow-start
/// state follow it from one view to the next.
pub(crate) type MemberKey = (String, SocketAddr);

impl PoolView {
    /// Builds the next view. `prev` (the view being replaced) supplies the
    /// counters and tells which backends just (re)joined: those start a
    /// slow-start ramp at `now`. The very first view ramps nothing, so a
    /// node starting up takes full traffic at once.
    pub(crate) fn build(
        spec: &ViewSpec<'_>,
        backends: Vec<Backend>,
        prev: Option<&PoolView>,
        stats: &mut HashMap<MemberKey, Arc<BackendStats>>,
        now: Instant,
    ) -> PoolView {
        let ViewSpec {
            name,
            algorithm,
            sticky_key,
            slow_start,
        } = *spec;
        let prev_by_key: HashMap<MemberKey, &Member> = prev
            .map(|p| {
                p.members
                    .iter()
                    .map(|m| ((m.backend.name.clone(), m.backend.address), m))
                    .collect()
            })
            .unwrap_or_default();
        let mut members = Vec::with_capacity(backends.len());
        for b in backends {
            let key = (b.name.clone(), b.address);
            let st = stats.entry(key.clone()).or_default().clone();
            let ramp_from = if slow_start.is_zero() || !b.healthy || prev.is_none() {
                None
            } else {
                match prev_by_key.get(&key) {
                    // Healthy before and now: keep ramping where it was.
                    Some(p) if p.backend.healthy => p
                        .ramp_from
                        .filter(|from| now.saturating_duration_since(*from) < slow_start),
                    // Recovered or newly added.
                    _ => Some(now),
                }
            };
            members.push(Member {
                name: b.name.as_str().into(),
                backend: b,
                stats: st,
                ramp_from,
            });
        }
        // Forget counters of backends that left, so the map stays bounded.
        let live: std::collections::HashSet<MemberKey> = members
            .iter()
            .map(|m| (m.backend.name.clone(), m.backend.address))
            .collect();
        stats.retain(|k, _| live.contains(k));

        let cookie_ids: Vec<String> = members
            .iter()
            .map(|m| match sticky_key {
                Some(k) => cookie_id(k, name, &m.backend),
                None => String::new(),
            })
            .collect();
        let by_cookie = cookie_ids
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_empty())
            .map(|(i, c)| (c.clone(), i))
            .collect();
        PoolView {
            name: name.to_string(),
            selector: Selector::new(algorithm.clone(), &members),
            members,
            cookie_ids,
            by_cookie,
        }
    }

    /// The member a persistence cookie pins to, if it is still eligible.
    pub fn pinned(&self, cookie: &str) -> Option<usize> {
        self.by_cookie
            .get(cookie)
            .copied()
            .filter(|i| self.selector.candidates().contains(i))
    }

    pub fn cookie_id(&self, member: usize) -> &str {
        self.cookie_ids.get(member).map(String::as_str).unwrap_or("")
    }

    pub fn pick(&self, ctx: &PickCtx<'_>, rng: &mut Rng) -> Option<usize> {
        self.selector.pick(&self.members, ctx, rng)
    }
}

/// Persistence cookie value: a keyed hash of the backend identity, so the
/// cookie reveals nothing about addresses and cannot be forged to target a
/// backend that is not in the pool.
fn cookie_id(key: &hmac::Key, pool: &str, b: &Backend) -> String {
    let msg = format!("{pool}\0{}\0{}", b.name, b.address);
    let tag = hmac::sign(key, msg.as_bytes());
    tag.as_ref()[..12].iter().map(|x| format!("{x:02x}")).collect()
}

/// Retry budget (Finagle/linkerd): every request deposits `ratio` of a
/// retry, each retry withdraws one. It caps retries at a fraction of
/// traffic so that a failing pool is not hit with a retry storm.
#[derive(Debug)]
pub struct RetryBudget {
    /// Balance in thousandths of a retry.
    balance: AtomicI64,
    deposit: i64,
    cap: i64,
}

impl RetryBudget {
    /// Starts with `min` retries available; the balance never exceeds
    /// `max(min, 10)` retries, so quiet periods do not bank a storm.
    pub fn new(ratio: f64, min: u32) -> Self {
        let min = i64::from(min) * 1000;
        RetryBudget {
            balance: AtomicI64::new(min),
            deposit: (ratio * 1000.0).round() as i64,
            cap: min.max(10_000),
        }
    }

    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + self.deposit).min(self.cap))
            });
    }

    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= 1000).then_some(b - 1000)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sticky_key: Option<&hmac::Key>, slow_start: Duration) -> ViewSpec<'_> {
        ViewSpec {
            name: "p",
            algorithm: &Balance::RoundRobin,
            sticky_key,
            slow_start,
        }
    }

    fn backends(n: u16) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend::new(format!("b{i}"), SocketAddr::from(([127, 0, 0, 1], 9000 + i))))
            .collect()
    }

    #[test]
    fn budget_limits_retries_to_ratio() {
        let b = RetryBudget::new(0.2, 0);
        assert!(!b.try_withdraw());
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.try_withdraw());
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        let b = RetryBudget::new(0.0, 3);
        assert!(b.try_withdraw() && b.try_withdraw() && b.try_withdraw());
        assert!(!b.try_withdraw());
    }

    #[test]
    fn cookies_are_opaque_stable_and_keyed() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"other");
        let mut stats = HashMap::new();
        let now = Instant::now();
        let v = PoolView::build(
            &spec(Some(&key), Duration::ZERO),
            backends(2),
            None,
            &mut stats,
            now,
        );
        let id0 = v.cookie_id(0).to_string();
        assert_eq!(id0.len(), 24);
        assert!(id0.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(!id0.contains("127.0.0.1"));
        assert_ne!(id0, v.cookie_id(1));
        assert_eq!(v.pinned(&id0), Some(0));
        let v2 = PoolView::build(
            &spec(Some(&key), Duration::ZERO),
            backends(2),
            Some(&v),
            &mut stats,
            now,
        );
        assert_eq!(v2.cookie_id(0), id0);
        let v3 = PoolView::build(
            &spec(Some(&other), Duration::ZERO),
            backends(2),
            None,
            &mut stats,
            now,
        );
        assert_ne!(v3.cookie_id(0), id0);
        // A pinned backend that went down is no longer returned.
        let mut bs = backends(2);
        bs[0].healthy = false;
        let v4 = PoolView::build(&spec(Some(&key), Duration::ZERO), bs, Some(&v2), &mut stats, now);
        assert_eq!(v4.pinned(&id0), None);
    }

    #[test]
    fn slow_start_begins_on_recovery_and_counters_survive() {
        let mut stats = HashMap::new();
        let t0 = Instant::now();
        let slow = Duration::from_secs(30);
        let v1 = PoolView::build(&spec(None, slow), backends(2), None, &mut stats, t0);
        assert!(v1.members.iter().all(|m| m.ramp_from.is_none()));
        v1.members[0].stats.begin();
        let mut down = backends(2);
        down[1].healthy = false;
        let t1 = t0 + Duration::from_secs(5);
        let v2 = PoolView::build(&spec(None, slow), down, Some(&v1), &mut stats, t1);
        assert_eq!(v2.members[0].stats.active(), 1);
        let t2 = t0 + Duration::from_secs(9);
        let v3 = PoolView::build(&spec(None, slow), backends(3), Some(&v2), &mut stats, t2);
        assert_eq!(v3.members[0].ramp_from, None);
        assert_eq!(v3.members[1].ramp_from, Some(t2));
        assert_eq!(v3.members[2].ramp_from, Some(t2));
        // The ramp ends after slow_start.
        let t3 = t2 + Duration::from_secs(31);
        let v4 = PoolView::build(&spec(None, slow), backends(3), Some(&v3), &mut stats, t3);
        assert!(v4.members.iter().all(|m| m.ramp_from.is_none()));
    }
}
