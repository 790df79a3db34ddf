//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, §3.4).
//!
//! Every node builds the same lookup table from the same backend set, so a
//! flow that anycast moves from one node to another keeps its backend, and
//! no per-flow state has to be shared between nodes.
//!
//! Population (the paper's Pseudocode 1, with weights):
//! - each backend `i` has a permutation of the `M` slots,
//!   `perm_i[j] = (offset_i + j * skip_i) mod M`, where
//!   `offset_i = h1(key_i) mod M` and `skip_i = h2(key_i) mod (M - 1) + 1`;
//!   `M` prime makes every `skip` coprime to `M`, so each `perm_i` visits
//!   every slot exactly once;
//! - backends take turns; on its turn a backend claims the next slot of its
//!   permutation that is still empty; this repeats until all `M` slots are
//!   full.
//!
//! `h1`/`h2` are SipHash-1-3 over the backend's *key* (e.g. `"ip:port"`),
//! never its index, so a backend's permutation does not change when other
//! backends come and go; that is what keeps disruption near `1/N`.
//!
//! Weights: the paper gives every backend one turn per round. Here the turn
//! order is weighted fair queueing: the next turn goes to the backend with
//! the smallest `(turns_taken + 1) / weight`, ties broken by key order. Each
//! turn fills exactly one slot, so after `M` turns backend `i` holds within
//! one slot of `M * w_i / W`. With equal weights this is exactly the paper's
//! round-robin over backends sorted by key.
//!
//! Balance bound: since counts differ from the ideal `M * w_i / W` by less
//! than one slot, the relative error is below `W / (M * w_i)`; for `N` equal
//! backends that is `< N / M`. The paper asks for `M > 100 * N` to be within
//! 1% for any `N`. At `M = 65537` that holds up to `N = 655`; for `N = 1000`
//! it is luck of the remainder (`65537 = 65 * 1000 + 537`, so shares are 65 or
//! 66 slots against an ideal 65.537, worst error 0.82%). Use `M = 655373` or
//! larger for `N` near 1000 and above.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use thiserror::Error;

use crate::hash::{MAGLEV_OFFSET_KEY, MAGLEV_SKIP_KEY, siphash13};
use crate::sched::WeightedBackend;

/// Table size the paper uses for small deployments, and our default.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// Largest accepted table: 2^24 + 43, the first prime above 16 Mi slots
/// (64 MiB of `u32` entries). Bigger tables only cost memory and rebuild
/// time; nothing needs them below ~160k backends.
pub const MAX_TABLE_SIZE: u32 = 16_777_259;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaglevError {
    #[error("maglev table size {0} is not prime")]
    NotPrime(u32),
    #[error("maglev table size {size} is out of range (3..={max})", max = MAX_TABLE_SIZE)]
    SizeOutOfRange { size: u32 },
    #[error("{backends} weighted backends do not fit in a table of {size} slots")]
    TooManyBackends { backends: usize, size: u32 },
    #[error("duplicate backend key {0:?}: two backends would share one permutation")]
    DuplicateKey(String),
}

/// A validated Maglev table size: prime, in `3..=MAX_TABLE_SIZE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableSize(u32);

impl TableSize {
    pub fn new(size: u32) -> Result<Self, MaglevError> {
        if !(3..=MAX_TABLE_SIZE).contains(&size) {
            return Err(MaglevError::SizeOutOfRange { size });
        }
        if !is_prime(size) {
            return Err(MaglevError::NotPrime(size));
        }
        Ok(TableSize(size))
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for TableSize {
    fn default() -> Self {
        TableSize(DEFAULT_TABLE_SIZE)
    }
}

/// Trial division; at most ~2k divisions for sizes up to [`MAX_TABLE_SIZE`],
/// run once per configuration.
fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let n = u64::from(n);
    let mut d = 3u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// Marks a slot not yet claimed during population. Never visible after
/// `build` returns a non-empty table.
const EMPTY: u32 = u32::MAX;

/// A populated Maglev lookup table.
///
/// Entries hold indices into the backend slice given to [`MaglevTable::build`],
/// so callers can keep their own per-backend data alongside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    size: TableSize,
    /// `entries[slot]` = backend index; empty when no backend has weight.
    entries: Vec<u32>,
    /// Backend keys by index, for the fingerprint and for diagnostics.
    keys: Vec<String>,
}

/// One backend's next turn in the weighted turn order. `Ord` puts the turn
/// with the smallest virtual time `(turns + 1) / weight` first, then the
/// smallest key rank, so the order depends on the backend *set*, not on the
/// order the caller listed it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Turn {
    turns_next: u64,
    weight: u64,
    rank: usize,
    index: usize,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // a/wa vs b/wb  <=>  a*wb vs b*wa (u128: no overflow for u32 weights
        // and u64 turn counts).
        let lhs = u128::from(self.turns_next) * u128::from(other.weight);
        let rhs = u128::from(other.turns_next) * u128::from(self.weight);
        lhs.cmp(&rhs).then(self.rank.cmp(&other.rank))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl MaglevTable {
    /// Builds the table. Backends with weight 0 get no slots (they are kept
    /// in the index space so indices still match the caller's slice). If no
    /// backend has weight the table is empty and every lookup misses.
    pub fn build(backends: &[WeightedBackend], size: TableSize) -> Result<Self, MaglevError> {
        let m = size.get();
        let keys: Vec<String> = backends.iter().map(|b| b.key.clone()).collect();

        // Rank by key so equal-weight ties break the same way on every node.
        let mut by_key: Vec<usize> = (0..backends.len()).collect();
        by_key.sort_by(|&a, &b| backends[a].key.cmp(&backends[b].key));
        for pair in by_key.windows(2) {
            if backends[pair[0]].key == backends[pair[1]].key {
                return Err(MaglevError::DuplicateKey(backends[pair[0]].key.clone()));
            }
        }
        let mut rank = vec![0usize; backends.len()];
        for (r, &i) in by_key.iter().enumerate() {
            rank[i] = r;
        }

        let weighted = backends.iter().filter(|b| b.weight > 0).count();
        if weighted == 0 {
            return Ok(MaglevTable {
                size,
                entries: Vec::new(),
                keys,
            });
        }
        if weighted > m as usize {
            return Err(MaglevError::TooManyBackends {
                backends: weighted,
                size: m,
            });
        }

        let m64 = u64::from(m);
        // `pos[i]` is the next slot of backend i's permutation to try;
        // `skip[i]` the stride.
        let mut pos = vec![0u64; backends.len()];
        let mut skip = vec![0u64; backends.len()];
        let mut heap = BinaryHeap::with_capacity(weighted);
        for (i, b) in backends.iter().enumerate() {
            if b.weight == 0 {
                continue;
            }
            pos[i] = siphash13(MAGLEV_OFFSET_KEY, b.key.as_bytes()) % m64;
            skip[i] = siphash13(MAGLEV_SKIP_KEY, b.key.as_bytes()) % (m64 - 1) + 1;
            heap.push(Reverse(Turn {
                turns_next: 1,
                weight: u64::from(b.weight),
                rank: rank[i],
                index: i,
            }));
        }

        let mut entries = vec![EMPTY; m as usize];
        let mut filled = 0u32;
        while filled < m {
            let Some(Reverse(mut turn)) = heap.pop() else {
                // Unreachable: the heap always holds every weighted backend.
                debug_assert!(false, "maglev turn heap drained");
                break;
            };
            let i = turn.index;
            // Terminates: perm_i visits every slot and at least one is empty.
            loop {
                let slot = pos[i] as usize;
                pos[i] = (pos[i] + skip[i]) % m64;
                if entries[slot] == EMPTY {
                    entries[slot] = i as u32;
                    break;
                }
            }
            filled += 1;
            turn.turns_next += 1;
            heap.push(Reverse(turn));
        }
        debug_assert!(entries.iter().all(|&e| e != EMPTY));
        Ok(MaglevTable { size, entries, keys })
    }

    pub fn size(&self) -> TableSize {
        self.size
    }

    /// True when no backend has weight: every lookup returns `None`.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Backend index for a flow hash (see [`crate::hash::flow_hash`]).
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let slot = (hash % u64::from(self.size.get())) as usize;
        self.entries.get(slot).map(|&i| i as usize)
    }

    /// Raw slots, each a backend index.
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// Slots per backend, indexed like the input slice.
    pub fn counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.keys.len()];
        for &e in &self.entries {
            counts[e as usize] += 1;
        }
        counts
    }

    /// Key of the backend that owns `slot`.
    pub fn key_at(&self, slot: usize) -> Option<&str> {
        let &i = self.entries.get(slot)?;
        self.keys.get(i as usize).map(String::as_str)
    }

    /// A fingerprint of the table's content in terms of backend *keys*
    /// (SipHash-1-3 over `size` then each slot's key, NUL-separated), so two
    /// nodes can compare tables without caring how each ordered its input.
    pub fn fingerprint(&self) -> u64 {
        let mut buf = Vec::with_capacity(self.entries.len() * 16);
        buf.extend_from_slice(&self.size.get().to_le_bytes());
        for &e in &self.entries {
            buf.extend_from_slice(self.keys[e as usize].as_bytes());
            buf.push(0);
        }
        siphash13((0, 0), &buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: usize) -> Vec<WeightedBackend> {
        (0..n)
            .map(|i| WeightedBackend::new(format!("127.0.0.1:{}", 10_000 + i), 1))
            .collect()
    }

    fn table(b: &[WeightedBackend]) -> MaglevTable {
        MaglevTable::build(b, TableSize::default()).unwrap()
    }

    #[test]
    fn table_size_must_be_prime_and_in_range() {
        assert_eq!(TableSize::new(65_537).unwrap().get(), 65_537);
        assert_eq!(TableSize::new(251).unwrap().get(), 251);
        assert_eq!(TableSize::new(MAX_TABLE_SIZE).unwrap().get(), MAX_TABLE_SIZE);
        assert_eq!(TableSize::new(65_536), Err(MaglevError::NotPrime(65_536)));
        assert_eq!(TableSize::new(65_535), Err(MaglevError::NotPrime(65_535)));
        // 65_537 * 3 is odd and composite; catches a "just check odd" bug.
        assert_eq!(TableSize::new(196_611), Err(MaglevError::NotPrime(196_611)));
        assert!(matches!(
            TableSize::new(2),
            Err(MaglevError::SizeOutOfRange { .. })
        ));
        assert!(matches!(
            TableSize::new(MAX_TABLE_SIZE + 2),
            Err(MaglevError::SizeOutOfRange { .. })
        ));
        assert!(is_prime(MAX_TABLE_SIZE));
    }

    #[test]
    fn every_slot_is_filled_with_a_weighted_backend() {
        let mut b = backends(7);
        b[3].weight = 0;
        let t = table(&b);
        assert_eq!(t.entries().len(), 65_537);
        assert!(t.entries().iter().all(|&e| (e as usize) < 7 && e != 3));
        assert_eq!(t.counts()[3], 0);
    }

    #[test]
    fn no_weight_means_no_lookup() {
        let mut b = backends(2);
        b[0].weight = 0;
        b[1].weight = 0;
        let t = table(&b);
        assert!(t.is_empty());
        assert_eq!(t.lookup(12345), None);
        assert!(table(&[]).is_empty());
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let b = vec![WeightedBackend::new("a", 1), WeightedBackend::new("a", 2)];
        assert_eq!(
            MaglevTable::build(&b, TableSize::default()),
            Err(MaglevError::DuplicateKey("a".into()))
        );
    }

    #[test]
    fn too_many_backends_are_rejected() {
        let small = TableSize::new(5).unwrap();
        assert!(matches!(
            MaglevTable::build(&backends(6), small),
            Err(MaglevError::TooManyBackends { backends: 6, size: 5 })
        ));
        // Exactly M backends: each gets one slot.
        let t = MaglevTable::build(&backends(5), small).unwrap();
        assert_eq!(t.counts(), vec![1; 5]);
    }

    /// Two independent builds agree, and so does a build from the same set
    /// listed in another order (compared by key, since indices differ).
    #[test]
    fn deterministic_and_order_independent() {
        let b = backends(10);
        assert_eq!(table(&b), table(&b.clone()));

        let mut reversed = b.clone();
        reversed.reverse();
        let (t1, t2) = (table(&b), table(&reversed));
        for slot in 0..65_537 {
            assert_eq!(t1.key_at(slot), t2.key_at(slot), "slot {slot}");
        }
        assert_eq!(t1.fingerprint(), t2.fingerprint());
    }

    /// Pins the table across machines, compilers and refactors. If this
    /// fails, every node running the old code would disagree with every node
    /// running the new code about where flows go: only change the constant
    /// deliberately, and roll it out as a fleet-wide remap.
    #[test]
    fn golden_fingerprint() {
        let b = backends(10);
        let t = table(&b);
        assert_eq!(t.fingerprint(), GOLDEN_10);
        // A few slots spelled out, so a failure shows *what* moved.
        let first: Vec<&str> = (0..8).map(|s| t.key_at(s).unwrap()).collect();
        assert_eq!(first, GOLDEN_10_FIRST_SLOTS);

        let weighted = vec![
            WeightedBackend::new("127.0.0.1:8001", 1),
            WeightedBackend::new("127.0.0.1:8002", 2),
            WeightedBackend::new("127.0.0.1:8003", 3),
        ];
        assert_eq!(table(&weighted).fingerprint(), GOLDEN_WEIGHTED);
    }
    const GOLDEN_10: u64 = 4530861635446258674;
    const GOLDEN_10_FIRST_SLOTS: [&str; 8] = [
        "127.0.0.1:10000",
        "127.0.0.1:10000",
        "127.0.0.1:10000",
        "127.0.0.1:10000",
        "127.0.0.1:10005",
        "127.0.0.1:10005",
        "127.0.0.1:10008",
        "127.0.0.1:10008",
    ];
    const GOLDEN_WEIGHTED: u64 = 18392761204583069644;

    fn max_relative_error(counts: &[u64], ideal: &[f64]) -> f64 {
        counts
            .iter()
            .zip(ideal)
            .map(|(&c, &i)| (c as f64 - i).abs() / i)
            .fold(0.0, f64::max)
    }

    /// Issue requirement: each backend's share of the table within 1% of
    /// the ideal `1/N`, for N in {3, 10, 100, 1000} at M = 65537.
    ///
    /// The algorithm gives each backend `floor(M/N)` or `ceil(M/N)` slots,
    /// so the error is below `N/M`: < 0.16% at N = 100. At N = 1000 the
    /// guaranteed bound (1.5%) exceeds 1% (the paper wants M > 100 N); the
    /// measured figure is 0.82% because 65537 mod 1000 = 537 sits near the
    /// middle. We assert the measured ≤ 1% *and* the algorithm's own
    /// invariant (every count is floor or ceil), which is what actually holds
    /// for any N.
    #[test]
    fn balance_within_one_percent() {
        let m = 65_537u64;
        for n in [3usize, 10, 100, 1000] {
            let t = table(&backends(n));
            let counts = t.counts();
            let (lo, hi) = (m / n as u64, m.div_ceil(n as u64));
            assert!(counts.iter().all(|&c| c == lo || c == hi), "n={n}: {counts:?}");
            let ideal = vec![m as f64 / n as f64; n];
            let err = max_relative_error(&counts, &ideal);
            println!(
                "maglev balance: N={n} M={m} max |share-ideal|/ideal = {:.4}%",
                err * 100.0
            );
            assert!(err <= 0.01, "n={n}: {err}");
        }
    }

    /// For N = 1000 the 1% figure depends on M; with M > 100 N it is
    /// guaranteed. Pin that the recommended larger size delivers it.
    #[test]
    fn balance_for_1000_backends_with_larger_table() {
        let size = TableSize::new(655_373).unwrap();
        let t = MaglevTable::build(&backends(1000), size).unwrap();
        let ideal = vec![655_373.0 / 1000.0; 1000];
        let err = max_relative_error(&t.counts(), &ideal);
        println!("maglev balance: N=1000 M=655373 max error = {:.4}%", err * 100.0);
        assert!(err <= 0.001, "{err}");
    }

    #[test]
    fn weights_are_honoured() {
        let b = vec![
            WeightedBackend::new("127.0.0.1:8001", 1),
            WeightedBackend::new("127.0.0.1:8002", 2),
            WeightedBackend::new("127.0.0.1:8003", 3),
        ];
        let counts = table(&b).counts();
        let m = 65_537.0;
        let ideal = [m / 6.0, m * 2.0 / 6.0, m * 3.0 / 6.0];
        let err = max_relative_error(&counts, &ideal);
        println!(
            "maglev weights 1:2:3: counts {counts:?}, max error {:.4}%",
            err * 100.0
        );
        assert!(err <= 0.01, "{counts:?}");
        // Weighted fair turns keep each count within one slot of ideal.
        for (c, i) in counts.iter().zip(ideal) {
            assert!((*c as f64 - i).abs() < 1.0 + 1e-9, "{c} vs {i}");
        }
    }

    #[test]
    fn skewed_weights_are_honoured() {
        // 1 heavy + 9 light: heavy must take 100/109 of the table.
        let mut b = backends(10);
        b[4].weight = 100;
        let counts = table(&b).counts();
        let m = 65_537.0;
        let ideal: Vec<f64> = b.iter().map(|x| m * x.weight as f64 / 109.0).collect();
        let err = max_relative_error(&counts, &ideal);
        assert!(err <= 0.01, "{counts:?}");
    }

    /// Issue requirement: removing one of N backends moves close to 1/N of
    /// the slots. The removed backend's own slots must all move (that is the
    /// 1/N); Maglev also reshuffles some slots between survivors, because
    /// after a removal the turn order shifts and late turns walk further
    /// along their permutations. The paper trades strict minimal disruption
    /// for balance (§3.4), and the extra grows as M/N shrinks.
    ///
    /// Measured at M = 65537, removing each of 10 spread-out backends
    /// (ratio = slots moved / ideal M/N): N=3 1.001, N=10 1.02-1.09,
    /// N=100 1.52-1.56, N=1000 6.2-7.1 (about 0.68% of the table instead of
    /// 0.1%). The bounds below are those figures plus a margin. N = 1000 is
    /// *not* close to 1/N at this table size (still ~4.2x at M = 655373);
    /// in absolute terms under 1% of flows move.
    #[test]
    fn disruption_on_removal() {
        let m = 65_537usize;
        for (n, max_ratio) in [(3usize, 1.05), (10, 1.15), (100, 1.7), (1000, 7.5)] {
            let before_b = backends(n);
            let before = table(&before_b);
            let mut ratios = Vec::new();
            for removed in (0..n).step_by(n.div_ceil(10)) {
                let mut after_b = before_b.clone();
                after_b.remove(removed);
                let after = table(&after_b);
                let removed_key = before_b[removed].key.as_str();
                let mut moved = 0usize;
                for slot in 0..m {
                    let (was, now) = (before.key_at(slot), after.key_at(slot));
                    assert_ne!(now, Some(removed_key));
                    if was != now {
                        moved += 1;
                    }
                }
                // Every slot of the removed backend moved, and some more.
                assert!(moved as u64 >= before.counts()[removed]);
                ratios.push(moved as f64 * n as f64 / m as f64);
            }
            let worst = ratios.iter().copied().fold(0.0, f64::max);
            let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
            println!(
                "maglev disruption: N={n} M={m} remove 1: moved {:.3}% of slots on average \
                 (ideal {:.3}%), moved/ideal mean {mean:.3} worst {worst:.3}",
                mean * 100.0 / n as f64,
                100.0 / n as f64
            );
            assert!(worst <= max_ratio, "n={n}: ratios {ratios:?}");
        }
    }

    /// Independent oracle: a direct transcription of the paper's
    /// Pseudocode 1 (equal weights, backends in key order, `next[i]` walking
    /// `permutation[i]`). With equal weights our weighted turn order must
    /// reduce to exactly this.
    #[test]
    fn equal_weights_match_the_papers_pseudocode() {
        fn paper(keys: &[String], m: u64) -> Vec<usize> {
            let n = keys.len();
            let permutation: Vec<Vec<u64>> = keys
                .iter()
                .map(|k| {
                    let offset = siphash13(MAGLEV_OFFSET_KEY, k.as_bytes()) % m;
                    let skip = siphash13(MAGLEV_SKIP_KEY, k.as_bytes()) % (m - 1) + 1;
                    (0..m).map(|j| (offset + j * skip) % m).collect()
                })
                .collect();
            let mut next = vec![0usize; n];
            let mut entry = vec![usize::MAX; m as usize];
            let mut filled = 0;
            loop {
                for i in 0..n {
                    let mut c = permutation[i][next[i]];
                    while entry[c as usize] != usize::MAX {
                        next[i] += 1;
                        c = permutation[i][next[i]];
                    }
                    entry[c as usize] = i;
                    next[i] += 1;
                    filled += 1;
                    if filled == m {
                        return entry;
                    }
                }
            }
        }
        for (n, m) in [(3usize, 251u32), (10, 65_537), (37, 4_099)] {
            // Listed out of key order on purpose.
            let mut b = backends(n);
            b.reverse();
            let mut keys: Vec<String> = b.iter().map(|x| x.key.clone()).collect();
            keys.sort();
            let expected = paper(&keys, u64::from(m));
            let t = MaglevTable::build(&b, TableSize::new(m).unwrap()).unwrap();
            for (slot, &i) in expected.iter().enumerate() {
                assert_eq!(t.key_at(slot), Some(keys[i].as_str()), "n={n} m={m} slot={slot}");
            }
        }
    }

    /// Only relative weights matter: 1:2:3 and 10:20:30 place every slot
    /// alike, so operators can rescale weights without remapping flows.
    #[test]
    fn weights_are_scale_invariant() {
        let w = |k: u32| {
            vec![
                WeightedBackend::new("127.0.0.1:8001", k),
                WeightedBackend::new("127.0.0.1:8002", 2 * k),
                WeightedBackend::new("127.0.0.1:8003", 3 * k),
            ]
        };
        assert_eq!(table(&w(1)).entries(), table(&w(10)).entries());
        assert_eq!(table(&w(1)).fingerprint(), table(&w(10)).fingerprint());
    }

    /// Adding a backend back restores the original table exactly: the
    /// table is a function of the set alone (no history).
    #[test]
    fn table_depends_only_on_the_set() {
        let b = backends(10);
        let mut without = b.clone();
        without.remove(3);
        let t_without = table(&without);
        assert_ne!(t_without.fingerprint(), table(&b).fingerprint());
        let mut restored = without.clone();
        restored.push(b[3].clone());
        assert_eq!(table(&restored).fingerprint(), table(&b).fingerprint());
    }
}
