//! A per-thread cache of GSLB decisions for the UDP fast path.
//!
//! The filter chain ([`crate::steer`]) is a pure function of the record, the
//! query type, the view and three facts about the client: the address it is
//! located by (the ECS subnet's address, else the source), how many bits of
//! it the server saw, and whether the query carried ECS (the scope depends on
//! it). The cache keys on exactly those, plus the [`Authority`] instance
//! (a reload builds a new one), and drops everything when the view changes,
//! so a hit returns what the chain would have computed: it only saves the
//! GeoIP lookup, the distance arithmetic, the sorting and the rendezvous
//! hashing of queries from resolvers and subnets seen a moment ago.
//!
//! Direct-mapped (a colliding entry replaces the older one), a fixed
//! [`SLOTS`] entries per serving thread, no lock: each receive loop owns its
//! thread's cache.
//!
//! [`Authority`]: crate::server::Authority

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::RecordType;

use crate::steer::ClientInfo;
use crate::view::DnsView;

/// Entries per thread (a power of two).
const SLOTS: usize = 1024;

/// Chosen candidates a cached decision holds at most (records answering
/// with more are decided every time).
pub(crate) const MAX_CHOSEN: usize = 8;

/// A fresh identity for each [`crate::server::Authority`].
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Everything a decision depends on besides the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    authority: u64,
    record: usize,
    qtype: RecordType,
    at: IpAddr,
    bits: u8,
    ecs: bool,
}

impl Key {
    pub(crate) fn new(authority: u64, record: usize, qtype: RecordType, client: &ClientInfo) -> Self {
        let (bits, ecs) = match client.ecs {
            Some(n) => (n.prefix_len(), true),
            None => (if client.src.is_ipv4() { 32 } else { 128 }, false),
        };
        Self {
            authority,
            record,
            qtype,
            at: client.locate_by(),
            bits,
            ecs,
        }
    }

    fn slot(&self) -> usize {
        let a = match self.at {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a) ^ (1 << 127),
        };
        let x = (a as u64)
            ^ ((a >> 64) as u64).rotate_left(7)
            ^ self.authority.rotate_left(17)
            ^ (self.record as u64).rotate_left(29)
            ^ (u64::from(u16::from(self.qtype)) << 40)
            ^ (u64::from(self.bits) << 48)
            ^ (u64::from(self.ecs) << 56);
        mix(x) as usize & (SLOTS - 1)
    }
}

/// A decision as the fast path uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cached {
    chosen: [u16; MAX_CHOSEN],
    len: u8,
    pub(crate) scope: u8,
    pub(crate) fail_open: bool,
}

impl Cached {
    /// `None` when more than [`MAX_CHOSEN`] candidates are chosen or an
    /// index does not fit.
    pub(crate) fn new(chosen: impl Iterator<Item = usize>, scope: u8, fail_open: bool) -> Option<Self> {
        let mut c = Self {
            chosen: [0; MAX_CHOSEN],
            len: 0,
            scope,
            fail_open,
        };
        for idx in chosen {
            let slot = c.chosen.get_mut(usize::from(c.len))?;
            *slot = u16::try_from(idx).ok()?;
            c.len += 1;
        }
        Some(c)
    }

    /// Chosen candidate indices, best first.
    pub(crate) fn chosen(&self) -> impl Iterator<Item = usize> + '_ {
        self.chosen[..usize::from(self.len)]
            .iter()
            .map(|&i| usize::from(i))
    }
}

struct Cache {
    /// The view the entries were decided under; held so its address cannot
    /// be reused by a newer view while entries refer to it.
    view: Option<Arc<DnsView>>,
    /// Bumped when the view changes: entries of older generations are stale.
    generation: u64,
    slots: Vec<Option<(u64, Key, Cached)>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = const {
        RefCell::new(Cache { view: None, generation: 0, slots: Vec::new() })
    };
}

/// The cached decision for `key` under `view`, else `decide()`'s (cached
/// when it is `Some`).
pub(crate) fn get_or_decide(
    key: Key,
    view: &Arc<DnsView>,
    decide: impl FnOnce() -> Option<Cached>,
) -> Option<Cached> {
    let hit = CACHE.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        if !c.view.as_ref().is_some_and(|v| Arc::ptr_eq(v, view)) {
            c.view = Some(view.clone());
            c.generation += 1;
        }
        if c.slots.is_empty() {
            c.slots = vec![None; SLOTS];
        }
        let generation = c.generation;
        match c.slots.get(key.slot()) {
            Some(Some((g, k, v))) if *g == generation && *k == key => Some(*v),
            _ => None,
        }
    });
    if hit.is_some() {
        return hit;
    }
    let decided = decide()?;
    CACHE.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            let generation = c.generation;
            if let Some(slot) = c.slots.get_mut(key.slot()) {
                *slot = Some((generation, key, decided));
            }
        }
    });
    Some(decided)
}

/// splitmix64's finalizer: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(src: &str, ecs: Option<&str>) -> ClientInfo {
        ClientInfo {
            src: src.parse().unwrap(),
            ecs: ecs.map(|e| e.parse().unwrap()),
        }
    }

    fn decided(i: usize) -> Option<Cached> {
        Cached::new([i].into_iter(), 24, false)
    }

    #[test]
    fn same_inputs_hit_and_a_new_view_or_authority_misses() {
        let view = Arc::new(DnsView::default());
        let c = client("198.18.0.1", Some("198.18.1.0/24"));
        let key = Key::new(next_id(), 0, RecordType::A, &c);
        assert_eq!(get_or_decide(key, &view, || decided(1)), decided(1));
        // A hit never runs `decide`.
        assert_eq!(get_or_decide(key, &view, || panic!("decided again")), decided(1));

        // Another view (even with equal contents) decides again.
        let view2 = Arc::new(DnsView::default());
        assert_eq!(get_or_decide(key, &view2, || decided(2)), decided(2));
        // Another authority, another query type, other client facts: misses.
        for other in [
            Key::new(key.authority + 1_000_000, 0, RecordType::A, &c),
            Key::new(key.authority, 0, RecordType::AAAA, &c),
            Key::new(key.authority, 1, RecordType::A, &c),
            Key::new(
                key.authority,
                0,
                RecordType::A,
                &client("198.18.0.1", Some("198.18.2.0/24")),
            ),
            Key::new(
                key.authority,
                0,
                RecordType::A,
                &client("198.18.0.1", Some("198.18.1.0/23")),
            ),
            // Located by the same address, but without ECS (scope 0).
            Key::new(key.authority, 0, RecordType::A, &client("198.18.1.0", None)),
        ] {
            assert_ne!(other, key);
            assert_eq!(get_or_decide(other, &view2, || decided(3)), decided(3));
        }
        assert_eq!(get_or_decide(key, &view2, || panic!("decided again")), decided(2));
    }

    #[test]
    fn too_many_chosen_is_not_cacheable() {
        assert!(Cached::new(0..MAX_CHOSEN, 0, false).is_some());
        assert!(Cached::new(0..=MAX_CHOSEN, 0, false).is_none());
        let c = Cached::new([3, 1].into_iter(), 0, true).unwrap();
        assert_eq!(c.chosen().collect::<Vec<_>>(), vec![3, 1]);
    }

    #[test]
    fn none_from_decide_is_not_cached() {
        let view = Arc::new(DnsView::default());
        let key = Key::new(next_id(), 0, RecordType::A, &client("198.18.0.9", None));
        assert_eq!(get_or_decide(key, &view, || None), None);
        assert_eq!(get_or_decide(key, &view, || decided(4)), decided(4));
    }
}
