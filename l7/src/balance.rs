//! Backend selection: the algorithms, pure over a slice of members plus
//! per-backend counters. No locks: per-pool state is atomics and tables
//! precomputed when the backend set changes (smooth-WRR sequence, Maglev
//! table), so a selection never waits on a backend-set update.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Backend, Balance};

/// Live counters of one backend. They survive backend-set updates (the
/// upstream registry hands the same `Arc` to the next view) so that least
/// connections and EWMA do not reset whenever the controller pushes.
#[derive(Debug, Default)]
pub struct BackendStats {
    active: AtomicU64,
    /// Peak-EWMA response time in nanoseconds, as `f64` bits.
    ewma_bits: AtomicU64,
    /// When `ewma_bits` was last updated (nanoseconds since [`epoch`]).
    stamp: AtomicU64,
    /// Non-5xx responses since the last passive-health failure.
    successes: AtomicU64,
}

/// Decay time constant of the response-time EWMA (linkerd uses 10 s).
const EWMA_TAU: Duration = Duration::from_secs(10);
/// Cost assumed for a backend we have not measured yet: not zero, or a new
/// backend would attract every request until its first response.
const DEFAULT_RTT_NS: f64 = 5_000_000.0;

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

impl BackendStats {
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }
    pub fn begin(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }
    pub fn end(&self) {
        // Saturating: a stats object reused across views must never wrap.
        let _ = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    /// Records one response time. Peaks are taken at once, recoveries decay
    /// in with `EWMA_TAU` (Finagle's peak EWMA). Concurrent updates may lose
    /// one sample; this is a load hint, not an accounting value.
    pub fn observe_rtt(&self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_nanos() as f64;
        let now_ns = now.saturating_duration_since(epoch()).as_nanos() as u64;
        let prev = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        let last = self.stamp.swap(now_ns, Ordering::Relaxed);
        let next = if prev == 0.0 || rtt > prev {
            rtt
        } else {
            let elapsed = now_ns.saturating_sub(last) as f64;
            let w = (-elapsed / EWMA_TAU.as_nanos() as f64).exp();
            prev * w + rtt * (1.0 - w)
        };
        self.ewma_bits.store(next.to_bits(), Ordering::Relaxed);
    }

    pub fn success(&self) {
        self.successes.fetch_add(1, Ordering::Relaxed);
    }

    /// Successes since the previous call (reset to zero).
    pub fn take_successes(&self) -> u64 {
        self.successes.swap(0, Ordering::Relaxed)
    }

    pub fn ewma_ns(&self) -> f64 {
        let v = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        if v > 0.0 { v } else { DEFAULT_RTT_NS }
    }
}

/// One backend as seen by a selection.
#[derive(Debug)]
pub struct Member {
    pub backend: Backend,
    /// `backend.name`, shared (not copied) into every request's outcome.
    pub name: std::sync::Arc<str>,
    pub stats: std::sync::Arc<BackendStats>,
    /// Start of the slow-start ramp, if the backend (re)joined recently.
    pub ramp_from: Option<Instant>,
}

impl Member {
    /// Fraction of its weight the backend gets now: ramps linearly from 10 %
    /// to 100 % over `slow_start` (HAProxy starts low but not at zero so a
    /// recovering backend still sees some traffic).
    pub fn ramp(&self, now: Instant, slow_start: Duration) -> f64 {
        match self.ramp_from {
            Some(from) if !slow_start.is_zero() => {
                let f = now.saturating_duration_since(from).as_secs_f64() / slow_start.as_secs_f64();
                f.clamp(0.1, 1.0)
            }
            _ => 1.0,
        }
    }

    fn weight(&self) -> f64 {
        f64::from(self.backend.weight.max(1))
    }
}

/// A small fast PRNG (SplitMix64). Selection needs speed and spread, not
/// cryptographic quality; a seeded instance keeps unit tests reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

thread_local! {
    static THREAD_RNG: Cell<u64> = Cell::new({
        // RandomState is seeded from the OS per process and varies per
        // instance: a cheap, dependency-free per-thread seed.
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(0);
        h.finish()
    });
}

/// A random `u64` from the per-thread generator.
pub fn random_u64() -> u64 {
    THREAD_RNG.with(|c| {
        let mut r = Rng(c.get());
        let v = r.next_u64();
        c.set(r.0);
        v
    })
}

/// A per-thread generator snapshot (advanced past what it hands out).
pub fn thread_rng() -> Rng {
    Rng(random_u64())
}

/// Stable 64-bit hash (FNV-1a then a mixer): the same key maps to the same
/// backend on every node and across restarts, which Maglev relies on.
pub fn stable_hash(data: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// Per-view selection state, built when the backend set changes.
#[derive(Debug)]
pub struct Selector {
    algorithm: Balance,
    /// Members eligible now: healthy primaries, or healthy backups when no
    /// primary is healthy. Indexes into the view's member list.
    candidates: Vec<usize>,
    /// Smooth weighted round robin order, as positions in `candidates`.
    swrr: Vec<usize>,
    /// Maglev lookup table, as positions in `candidates`.
    maglev: Vec<usize>,
    cursor: AtomicUsize,
}

/// Per-request inputs of a selection.
#[derive(Debug, Clone, Copy)]
pub struct PickCtx<'a> {
    /// Hash of the consistent-hash key, when the algorithm uses one.
    pub hash: Option<u64>,
    /// Members already tried by this request (retries go elsewhere).
    pub exclude: &'a [usize],
    pub now: Instant,
    pub slow_start: Duration,
}

impl Selector {
    pub fn new(algorithm: Balance, members: &[Member]) -> Self {
        let primaries: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].backend.healthy && !members[i].backend.backup)
            .collect();
        let candidates = if primaries.is_empty() {
            (0..members.len())
                .filter(|&i| members[i].backend.healthy && members[i].backend.backup)
                .collect()
        } else {
            primaries
        };
        let weights: Vec<u32> = candidates
            .iter()
            .map(|&i| members[i].backend.weight.max(1))
            .collect();
        let swrr = match algorithm {
            Balance::WeightedRoundRobin => smooth_wrr_sequence(&weights),
            _ => Vec::new(),
        };
        let maglev = match algorithm {
            Balance::ConsistentHash { .. } | Balance::SourceIpHash => {
                let keys: Vec<(String, u32)> = candidates
                    .iter()
                    .map(|&i| {
                        let b = &members[i].backend;
                        (format!("{}/{}", b.name, b.address), b.weight.max(1))
                    })
                    .collect();
                maglev_table(&keys)
            }
            _ => Vec::new(),
        };
        Selector {
            algorithm,
            candidates,
            swrr,
            maglev,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Member indexes eligible for selection.
    pub fn candidates(&self) -> &[usize] {
        &self.candidates
    }

    /// Picks a member index, or `None` when every candidate is excluded.
    pub fn pick(&self, members: &[Member], ctx: &PickCtx<'_>, rng: &mut Rng) -> Option<usize> {
        let allowed: Vec<usize> = self
            .candidates
            .iter()
            .copied()
            .filter(|i| !ctx.exclude.contains(i))
            .collect();
        match allowed.len() {
            0 => return None,
            1 => return Some(allowed[0]),
            _ => {}
        }
        let ramp = |i: usize| members[i].ramp(ctx.now, ctx.slow_start);
        match &self.algorithm {
            Balance::RoundRobin => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                let n = self.candidates.len();
                let order = (0..n).map(|k| self.candidates[(start + k) % n]);
                first_admitted(order, ctx.exclude, ramp, rng)
            }
            Balance::WeightedRoundRobin => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                let n = self.swrr.len();
                let order = (0..n).map(|k| self.candidates[self.swrr[(start + k) % n]]);
                first_admitted(order, ctx.exclude, ramp, rng)
            }
            Balance::LeastConnections => {
                // Start the scan at a rotating offset so ties spread out.
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                let n = allowed.len();
                (0..n)
                    .map(|k| allowed[(start + k) % n])
                    .map(|i| {
                        let load = (members[i].stats.active() + 1) as f64 / (members[i].weight() * ramp(i));
                        (i, load)
                    })
                    .fold(None, |best: Option<(usize, f64)>, (i, l)| match best {
                        Some((_, bl)) if bl <= l => best,
                        _ => Some((i, l)),
                    })
                    .map(|(i, _)| i)
            }
            Balance::PowerOfTwoChoices => {
                let (a, b) = two_distinct(&allowed, rng);
                let load = |i: usize| members[i].stats.active() as f64 / (members[i].weight() * ramp(i));
                Some(if load(b) < load(a) { b } else { a })
            }
            Balance::PeakEwma => {
                let (a, b) = two_distinct(&allowed, rng);
                let cost = |i: usize| {
                    let s = &members[i].stats;
                    s.ewma_ns() * (s.active() + 1) as f64 / (members[i].weight() * ramp(i))
                };
                Some(if cost(b) < cost(a) { b } else { a })
            }
            Balance::Random => {
                let weights: Vec<f64> = allowed.iter().map(|&i| members[i].weight() * ramp(i)).collect();
                let total: f64 = weights.iter().sum();
                let mut x = rng.unit() * total;
                for (k, w) in weights.iter().enumerate() {
                    if x < *w {
                        return Some(allowed[k]);
                    }
                    x -= w;
                }
                allowed.last().copied()
            }
            // Slow start is not applied to hashing: moving keys off a
            // recovering backend would defeat the point of hashing them.
            Balance::ConsistentHash { .. } | Balance::SourceIpHash => {
                let h = ctx.hash.unwrap_or_else(|| rng.next_u64());
                let m = self.maglev.len();
                if m == 0 {
                    return None;
                }
                // An excluded entry falls through to the next table slot, a
                // deterministic second choice for the same key.
                let slot = (h % m as u64) as usize;
                (0..m)
                    .map(|k| self.candidates[self.maglev[(slot + k) % m]])
                    .find(|i| !ctx.exclude.contains(i))
            }
        }
    }
}

/// The first member of `order` that is not excluded and passes the
/// slow-start admission (a ramping backend is skipped with probability
/// `1 - ramp`); if all are skipped, the first non-excluded one.
fn first_admitted(
    order: impl Iterator<Item = usize>,
    exclude: &[usize],
    ramp: impl Fn(usize) -> f64,
    rng: &mut Rng,
) -> Option<usize> {
    let mut fallback = None;
    for i in order {
        if exclude.contains(&i) {
            continue;
        }
        fallback.get_or_insert(i);
        let r = ramp(i);
        if r >= 1.0 || rng.unit() < r {
            return Some(i);
        }
    }
    fallback
}

fn two_distinct(allowed: &[usize], rng: &mut Rng) -> (usize, usize) {
    let a = rng.below(allowed.len());
    let mut b = rng.below(allowed.len() - 1);
    if b >= a {
        b += 1;
    }
    (allowed[a], allowed[b])
}

/// nginx's smooth weighted round robin, unrolled into one period. Weights
/// are divided by their GCD and scaled down when the period would exceed
/// `MAX_PERIOD`, so memory stays bounded for large weights.
pub fn smooth_wrr_sequence(weights: &[u32]) -> Vec<usize> {
    const MAX_PERIOD: u64 = 10_000;
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x.max(1) / g)).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_PERIOD {
        w = w.iter().map(|&x| (x * MAX_PERIOD / total).max(1)).collect();
    }
    let total: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut seq = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        seq.push(best);
    }
    seq
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Maglev lookup table (Eisenbud et al., NSDI '16, §3.4) over weighted
/// `keys`. Size is a prime about 100× the member count so that each
/// backend's share is within ~1 % of ideal. Weights follow the usual
/// weighted-Maglev extension: in each pass a backend earns `w / w_max` of a
/// turn and claims its next preferred slot once it holds a whole turn.
pub fn maglev_table(keys: &[(String, u32)]) -> Vec<usize> {
    const PRIMES: [usize; 9] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521];
    let n = keys.len();
    if n == 0 {
        return Vec::new();
    }
    let m = PRIMES
        .iter()
        .copied()
        .find(|&p| p >= n * 100)
        .unwrap_or(PRIMES[PRIMES.len() - 1]);
    let perms: Vec<(usize, usize)> = keys
        .iter()
        .map(|(k, _)| {
            let offset = (stable_hash(k.as_bytes(), 0x6d61_676c) % m as u64) as usize;
            let skip = (stable_hash(k.as_bytes(), 0x7365_6564) % (m as u64 - 1)) as usize + 1;
            (offset, skip)
        })
        .collect();
    let w_max = keys.iter().map(|(_, w)| *w).max().unwrap_or(1).max(1) as f64;
    let share: Vec<f64> = keys.iter().map(|(_, w)| f64::from((*w).max(1)) / w_max).collect();
    let mut credit = vec![0.0f64; n];
    let mut next = vec![0usize; n];
    let mut table = vec![usize::MAX; m];
    let mut filled = 0;
    'fill: loop {
        for i in 0..n {
            credit[i] += share[i];
            if credit[i] < 1.0 {
                continue;
            }
            credit[i] -= 1.0;
            let (offset, skip) = perms[i];
            let mut c = (offset + next[i] * skip) % m;
            while table[c] != usize::MAX {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            table[c] = i;
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashKey;
    use std::net::SocketAddr;
    use std::sync::Arc;

    fn members(spec: &[(u32, bool, bool)]) -> Vec<Member> {
        spec.iter()
            .enumerate()
            .map(|(i, &(w, backup, healthy))| Member {
                name: format!("b{i}").into(),
                backend: Backend {
                    name: format!("b{i}"),
                    address: SocketAddr::from(([127, 0, 0, 1], 8000 + i as u16)),
                    weight: w,
                    backup,
                    healthy,
                },
                stats: Arc::new(BackendStats::default()),
                ramp_from: None,
            })
            .collect()
    }

    fn ctx<'a>(exclude: &'a [usize], now: Instant) -> PickCtx<'a> {
        PickCtx {
            hash: None,
            exclude,
            now,
            slow_start: Duration::ZERO,
        }
    }

    fn counts(sel: &Selector, m: &[Member], n: usize, rng: &mut Rng) -> Vec<usize> {
        let now = Instant::now();
        let mut c = vec![0; m.len()];
        for _ in 0..n {
            c[sel.pick(m, &ctx(&[], now), rng).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_cycles_and_skips_excluded() {
        let m = members(&[(1, false, true), (5, false, true), (1, false, true)]);
        let s = Selector::new(Balance::RoundRobin, &m);
        let mut rng = Rng::seeded(1);
        let now = Instant::now();
        let seq: Vec<usize> = (0..6)
            .map(|_| s.pick(&m, &ctx(&[], now), &mut rng).unwrap())
            .collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
        for _ in 0..5 {
            assert_ne!(s.pick(&m, &ctx(&[1], now), &mut rng), Some(1));
        }
        assert_eq!(s.pick(&m, &ctx(&[0, 1, 2], now), &mut rng), None);
    }

    #[test]
    fn smooth_wrr_interleaves_by_weight() {
        // nginx's documented example: weights 5,1,1 -> a a b a c a a.
        assert_eq!(smooth_wrr_sequence(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_wrr_sequence(&[200, 100]), vec![0, 1, 0]);
        let m = members(&[(3, false, true), (1, false, true)]);
        let s = Selector::new(Balance::WeightedRoundRobin, &m);
        assert_eq!(counts(&s, &m, 400, &mut Rng::seeded(2)), vec![300, 100]);
    }

    #[test]
    fn least_connections_prefers_idle_weighted() {
        let m = members(&[(1, false, true), (1, false, true), (2, false, true)]);
        let s = Selector::new(Balance::LeastConnections, &m);
        let now = Instant::now();
        let mut rng = Rng::seeded(3);
        for _ in 0..3 {
            m[0].stats.begin();
        }
        m[1].stats.begin();
        for _ in 0..3 {
            m[2].stats.begin();
        }
        // loads (active+1)/weight: 4, 2, 2 -> b1 or b2; b2 after one more on b1.
        let p = s.pick(&m, &ctx(&[], now), &mut rng).unwrap();
        assert!(p == 1 || p == 2, "picked {p}");
        m[1].stats.begin();
        assert_eq!(s.pick(&m, &ctx(&[], now), &mut rng), Some(2));
        m[0].stats.end();
        m[0].stats.end();
        m[0].stats.end();
        assert_eq!(s.pick(&m, &ctx(&[], now), &mut rng), Some(0));
    }

    #[test]
    fn power_of_two_never_picks_the_most_loaded_of_three() {
        let m = members(&[(1, false, true), (1, false, true), (1, false, true)]);
        let s = Selector::new(Balance::PowerOfTwoChoices, &m);
        for _ in 0..10 {
            m[1].stats.begin();
        }
        m[2].stats.begin();
        let c = counts(&s, &m, 300, &mut Rng::seeded(4));
        // b1 is more loaded than both others, so it loses every comparison.
        assert_eq!(c[1], 0);
        assert!(c[0] > 0 && c[2] > 0);
    }

    #[test]
    fn peak_ewma_prefers_fast_backend_and_reacts_to_peaks() {
        let m = members(&[(1, false, true), (1, false, true)]);
        let s = Selector::new(Balance::PeakEwma, &m);
        let now = Instant::now();
        m[0].stats.observe_rtt(Duration::from_millis(50), now);
        m[1].stats.observe_rtt(Duration::from_millis(5), now);
        let mut rng = Rng::seeded(5);
        assert_eq!(s.pick(&m, &ctx(&[], now), &mut rng), Some(1));
        // One slow response is taken at once (peak), flipping the choice.
        m[1].stats.observe_rtt(Duration::from_millis(500), now);
        assert_eq!(s.pick(&m, &ctx(&[], now), &mut rng), Some(0));
        // Fast responses long after decay the peak away again.
        let later = now + Duration::from_secs(60);
        m[1].stats.observe_rtt(Duration::from_millis(5), later);
        assert!(m[1].stats.ewma_ns() < 10_000_000.0);
        assert_eq!(s.pick(&m, &ctx(&[], later), &mut rng), Some(1));
    }

    #[test]
    fn random_follows_weights() {
        let m = members(&[(1, false, true), (3, false, true)]);
        let s = Selector::new(Balance::Random, &m);
        let c = counts(&s, &m, 4000, &mut Rng::seeded(6));
        assert!(c[1] > 2700 && c[1] < 3300, "{c:?}");
    }

    #[test]
    fn consistent_hash_is_stable_and_moves_few_keys() {
        let algo = Balance::ConsistentHash { key: HashKey::Uri };
        let m4 = members(&[(1, false, true); 4]);
        let s4 = Selector::new(algo.clone(), &m4);
        let now = Instant::now();
        let mut rng = Rng::seeded(7);
        let pick = |s: &Selector, m: &[Member], h: u64, rng: &mut Rng| {
            let c = PickCtx {
                hash: Some(h),
                ..ctx(&[], now)
            };
            s.pick(m, &c, rng).unwrap()
        };
        let keys: Vec<u64> = (0..2000u64).map(|k| stable_hash(&k.to_be_bytes(), 0)).collect();
        let before: Vec<usize> = keys.iter().map(|&h| pick(&s4, &m4, h, &mut rng)).collect();
        // Same key, same backend, every time.
        assert_eq!(pick(&s4, &m4, keys[0], &mut rng), before[0]);
        // Backend 3 goes down: only its keys move.
        let mut m3 = members(&[(1, false, true); 4]);
        m3[3].backend.healthy = false;
        let s3 = Selector::new(algo, &m3);
        let mut moved_others = 0;
        for (k, &h) in keys.iter().enumerate() {
            let now_b = pick(&s3, &m3, h, &mut rng);
            assert_ne!(now_b, 3);
            if before[k] != 3 && before[k] != now_b {
                moved_others += 1;
            }
        }
        // Maglev promises minimal, not zero, disruption.
        assert!(moved_others < keys.len() / 20, "moved {moved_others}");
        // An excluded member yields a deterministic alternative.
        let c = PickCtx {
            hash: Some(keys[0]),
            exclude: &[before[0]],
            ..ctx(&[], now)
        };
        let alt = s4.pick(&m4, &c, &mut rng).unwrap();
        assert_ne!(alt, before[0]);
        assert_eq!(s4.pick(&m4, &c, &mut rng), Some(alt));
    }

    #[test]
    fn maglev_shares_follow_weights() {
        let t = maglev_table(&[("a".into(), 3), ("b".into(), 1)]);
        let a = t.iter().filter(|&&i| i == 0).count() as f64 / t.len() as f64;
        assert!((a - 0.75).abs() < 0.01, "share of a: {a}");
        let t = maglev_table(&[("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
        for i in 0..3 {
            let s = t.iter().filter(|&&x| x == i).count();
            assert!(s.abs_diff(t.len() / 3) <= 1, "{s} of {}", t.len());
        }
    }

    #[test]
    fn source_ip_hash_spreads_and_sticks() {
        let m = members(&[(1, false, true); 3]);
        let s = Selector::new(Balance::SourceIpHash, &m);
        let now = Instant::now();
        let mut rng = Rng::seeded(8);
        let mut seen = [0usize; 3];
        for last in 0..=255u8 {
            let ip = std::net::Ipv4Addr::new(198, 51, 100, last);
            let h = stable_hash(&ip.octets(), 0);
            let c = PickCtx {
                hash: Some(h),
                ..ctx(&[], now)
            };
            let a = s.pick(&m, &c, &mut rng).unwrap();
            assert_eq!(s.pick(&m, &c, &mut rng), Some(a));
            seen[a] += 1;
        }
        assert!(seen.iter().all(|&n| n > 40), "{seen:?}");
    }

    #[test]
    fn backups_only_when_all_primaries_down() {
        let m = members(&[(1, false, true), (1, true, true)]);
        let s = Selector::new(Balance::RoundRobin, &m);
        assert_eq!(s.candidates(), &[0]);
        let m = members(&[(1, false, false), (1, true, true), (1, true, false)]);
        let s = Selector::new(Balance::RoundRobin, &m);
        assert_eq!(s.candidates(), &[1]);
        let m = members(&[(1, false, false)]);
        let s = Selector::new(Balance::RoundRobin, &m);
        assert_eq!(s.pick(&m, &ctx(&[], Instant::now()), &mut Rng::seeded(9)), None);
    }

    #[test]
    fn slow_start_ramps_traffic() {
        let mut m = members(&[(1, false, true), (1, false, true)]);
        let t0 = Instant::now();
        m[1].ramp_from = Some(t0);
        let slow = Duration::from_secs(100);
        assert!((m[1].ramp(t0, slow) - 0.1).abs() < 1e-9);
        assert!((m[1].ramp(t0 + Duration::from_secs(50), slow) - 0.5).abs() < 1e-9);
        assert_eq!(m[1].ramp(t0 + Duration::from_secs(200), slow), 1.0);
        let s = Selector::new(Balance::RoundRobin, &m);
        let mut rng = Rng::seeded(10);
        let mut c = [0; 2];
        for _ in 0..2000 {
            let pc = PickCtx {
                slow_start: slow,
                ..ctx(&[], t0)
            };
            c[s.pick(&m, &pc, &mut rng).unwrap()] += 1;
        }
        // At 10 % of its weight the ramping backend gets far less than half.
        assert!(c[1] < 400 && c[1] > 20, "{c:?}");
    }
}
