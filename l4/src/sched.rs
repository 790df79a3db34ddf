//! L4 schedulers behind one interface: pick a backend for a new flow.
//!
//! All of them are pure: no clock, no sockets, no randomness. Connection
//! counts for the least-connection schedulers are owned by the dataplane and
//! passed in on every pick, so the scheduler never has to be told when a
//! connection ends.
//!
//! Common rules:
//! - a scheduler is built from the *eligible* backend list for one service;
//!   `pick` returns an index into that list;
//! - a backend with weight 0 is never picked (quiesced, as in IPVS), for
//!   every scheduler including plain round robin;
//! - `None` means no backend can take the flow.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hash::{FlowKey, flow_hash, source_hash};
use crate::maglev::{MaglevError, MaglevTable, TableSize};

/// A backend as schedulers see it: a stable key and a weight.
///
/// The key (e.g. `"203.0.113.10:443"` or a name) seeds Maglev permutations,
/// so it must be the same on every node for the same backend.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WeightedBackend {
    pub key: String,
    pub weight: u32,
}

impl WeightedBackend {
    pub fn new(key: impl Into<String>, weight: u32) -> Self {
        WeightedBackend {
            key: key.into(),
            weight,
        }
    }
}

/// Which scheduler a service uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// Maglev over the 5-tuple: the same flow maps to the same backend on
    /// every node. The default, because anycast can move flows between nodes.
    #[default]
    Maglev,
    RoundRobin,
    /// Smooth weighted round robin (nginx).
    WeightedRoundRobin,
    LeastConnections,
    WeightedLeastConnections,
    /// Consistent (Maglev) hash of the client IP alone: client affinity
    /// across ports and nodes.
    SourceHash,
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchedulerKind::Maglev => "maglev",
            SchedulerKind::RoundRobin => "round_robin",
            SchedulerKind::WeightedRoundRobin => "weighted_round_robin",
            SchedulerKind::LeastConnections => "least_connections",
            SchedulerKind::WeightedLeastConnections => "weighted_least_connections",
            SchedulerKind::SourceHash => "source_hash",
        })
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchedulerError {
    #[error(transparent)]
    Maglev(#[from] MaglevError),
}

/// Picks a backend for a new flow.
pub trait Scheduler: Send + Sync + fmt::Debug {
    fn kind(&self) -> SchedulerKind;

    /// `active[i]` is the number of open flows on backend `i`. Only the
    /// least-connection schedulers read it; a short slice counts missing
    /// entries as 0.
    fn pick(&mut self, flow: &FlowKey, active: &[u64]) -> Option<usize>;
}

/// Builds the scheduler `kind` over `backends`.
/// `table_size` is used by the Maglev-based kinds only.
pub fn build(
    kind: SchedulerKind,
    backends: &[WeightedBackend],
    table_size: TableSize,
) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
    Ok(match kind {
        SchedulerKind::Maglev => Box::new(Maglev::new(backends, table_size)?),
        SchedulerKind::SourceHash => Box::new(SourceHash::new(backends, table_size)?),
        SchedulerKind::RoundRobin => Box::new(RoundRobin::new(&weights)),
        SchedulerKind::WeightedRoundRobin => Box::new(SmoothWeightedRoundRobin::new(&weights)),
        SchedulerKind::LeastConnections => Box::new(LeastConnections::new(&weights)),
        SchedulerKind::WeightedLeastConnections => Box::new(WeightedLeastConnections::new(&weights)),
    })
}

/// Maglev over [`flow_hash`] of the full 5-tuple.
#[derive(Debug, Clone)]
pub struct Maglev {
    table: MaglevTable,
}

impl Maglev {
    pub fn new(backends: &[WeightedBackend], size: TableSize) -> Result<Self, MaglevError> {
        Ok(Maglev {
            table: MaglevTable::build(backends, size)?,
        })
    }

    pub fn table(&self) -> &MaglevTable {
        &self.table
    }
}

impl Scheduler for Maglev {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Maglev
    }

    fn pick(&mut self, flow: &FlowKey, _active: &[u64]) -> Option<usize> {
        self.table.lookup(flow_hash(flow))
    }
}

/// Maglev over [`source_hash`] of the client IP: unlike IPVS `sh` (hash mod
/// a bucket count) it keeps most clients on their backend when the set
/// changes, and agrees across nodes.
#[derive(Debug, Clone)]
pub struct SourceHash {
    table: MaglevTable,
}

impl SourceHash {
    pub fn new(backends: &[WeightedBackend], size: TableSize) -> Result<Self, MaglevError> {
        Ok(SourceHash {
            table: MaglevTable::build(backends, size)?,
        })
    }
}

impl Scheduler for SourceHash {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::SourceHash
    }

    fn pick(&mut self, flow: &FlowKey, _active: &[u64]) -> Option<usize> {
        self.table.lookup(source_hash(flow.src.ip()))
    }
}

/// Plain round robin over backends with non-zero weight.
#[derive(Debug, Clone)]
pub struct RoundRobin {
    eligible: Vec<usize>,
    next: usize,
}

impl RoundRobin {
    pub fn new(weights: &[u32]) -> Self {
        let eligible = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
        RoundRobin { eligible, next: 0 }
    }
}

impl Scheduler for RoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::RoundRobin
    }

    fn pick(&mut self, _flow: &FlowKey, _active: &[u64]) -> Option<usize> {
        let &i = self.eligible.get(self.next % self.eligible.len().max(1))?;
        self.next = (self.next + 1) % self.eligible.len();
        Some(i)
    }
}

/// Smooth weighted round robin, as in nginx `ngx_http_upstream_get_peer`:
/// each pick adds every weight to its backend's `current`, picks the largest
/// `current` and subtracts the total weight from it. Weights 5:1:1 give
/// `a a b a c a a` rather than `a a a a a b c`, so no backend sees a burst.
#[derive(Debug, Clone)]
pub struct SmoothWeightedRoundRobin {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl SmoothWeightedRoundRobin {
    pub fn new(weights: &[u32]) -> Self {
        let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w)).collect();
        let total = weights.iter().sum();
        SmoothWeightedRoundRobin {
            current: vec![0; weights.len()],
            weights,
            total,
        }
    }
}

impl Scheduler for SmoothWeightedRoundRobin {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::WeightedRoundRobin
    }

    fn pick(&mut self, _flow: &FlowKey, _active: &[u64]) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, &w) in self.weights.iter().enumerate() {
            if w == 0 {
                continue;
            }
            self.current[i] += w;
            // Strictly greater: ties go to the lower index, as in nginx.
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= self.total;
        Some(b)
    }
}

/// Picks among the eligible backends minimising `cost`, starting the scan
/// just after the previous pick so ties rotate instead of piling onto the
/// first backend (many new connections arrive between count updates).
fn rotate_min_by(
    weights: &[u32],
    start: &mut usize,
    mut better: impl FnMut(usize, usize) -> bool,
) -> Option<usize> {
    let n = weights.len();
    let mut best: Option<usize> = None;
    for k in 0..n {
        let i = (*start + k) % n;
        if weights[i] == 0 {
            continue;
        }
        if best.is_none_or(|b| better(i, b)) {
            best = Some(i);
        }
    }
    let b = best?;
    *start = (b + 1) % n;
    Some(b)
}

fn active_of(active: &[u64], i: usize) -> u64 {
    active.get(i).copied().unwrap_or(0)
}

/// Fewest open flows wins; ties rotate.
#[derive(Debug, Clone)]
pub struct LeastConnections {
    weights: Vec<u32>,
    start: usize,
}

impl LeastConnections {
    pub fn new(weights: &[u32]) -> Self {
        LeastConnections {
            weights: weights.to_vec(),
            start: 0,
        }
    }
}

impl Scheduler for LeastConnections {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::LeastConnections
    }

    fn pick(&mut self, _flow: &FlowKey, active: &[u64]) -> Option<usize> {
        rotate_min_by(&self.weights, &mut self.start, |i, b| {
            active_of(active, i) < active_of(active, b)
        })
    }
}

/// Lowest `(active + 1) / weight` wins; ties rotate. Counting the flow about
/// to be placed (`+ 1`) makes an idle pool fill the heaviest backend first
/// instead of treating every idle backend as equal.
#[derive(Debug, Clone)]
pub struct WeightedLeastConnections {
    weights: Vec<u32>,
    start: usize,
}

impl WeightedLeastConnections {
    pub fn new(weights: &[u32]) -> Self {
        WeightedLeastConnections {
            weights: weights.to_vec(),
            start: 0,
        }
    }
}

impl Scheduler for WeightedLeastConnections {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::WeightedLeastConnections
    }

    fn pick(&mut self, _flow: &FlowKey, active: &[u64]) -> Option<usize> {
        let weights = &self.weights;
        rotate_min_by(weights, &mut self.start, |i, b| {
            // (a_i+1)/w_i < (a_b+1)/w_b, cross-multiplied in u128.
            let lhs = u128::from(active_of(active, i)) + 1;
            let rhs = u128::from(active_of(active, b)) + 1;
            lhs * u128::from(weights[b]) < rhs * u128::from(weights[i])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Protocol;
    use std::net::SocketAddr;

    fn flow(src: &str) -> FlowKey {
        FlowKey {
            src: src.parse().unwrap(),
            dst: "127.0.0.1:443".parse().unwrap(),
            protocol: Protocol::Tcp,
        }
    }

    fn any() -> FlowKey {
        flow("127.0.0.1:50000")
    }

    fn picks(s: &mut dyn Scheduler, n: usize) -> Vec<usize> {
        (0..n).map(|_| s.pick(&any(), &[]).unwrap()).collect()
    }

    fn wb(weights: &[u32]) -> Vec<WeightedBackend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| WeightedBackend::new(format!("127.0.0.1:{}", 9000 + i), w))
            .collect()
    }

    #[test]
    fn build_returns_requested_kind() {
        for kind in [
            SchedulerKind::Maglev,
            SchedulerKind::RoundRobin,
            SchedulerKind::WeightedRoundRobin,
            SchedulerKind::LeastConnections,
            SchedulerKind::WeightedLeastConnections,
            SchedulerKind::SourceHash,
        ] {
            let s = build(kind, &wb(&[1, 1]), TableSize::default()).unwrap();
            assert_eq!(s.kind(), kind);
        }
    }

    #[test]
    fn every_kind_returns_none_without_eligible_backends() {
        for kind in [
            SchedulerKind::Maglev,
            SchedulerKind::RoundRobin,
            SchedulerKind::WeightedRoundRobin,
            SchedulerKind::LeastConnections,
            SchedulerKind::WeightedLeastConnections,
            SchedulerKind::SourceHash,
        ] {
            for backends in [wb(&[]), wb(&[0, 0])] {
                let mut s = build(kind, &backends, TableSize::default()).unwrap();
                assert_eq!(s.pick(&any(), &[]), None, "{kind}");
            }
        }
    }

    #[test]
    fn maglev_scheduler_follows_the_table() {
        let b = wb(&[1, 1, 1, 1]);
        let mut s = Maglev::new(&b, TableSize::default()).unwrap();
        let mut seen = [0usize; 4];
        for port in 1000..1400u16 {
            let f = flow(&format!("127.0.0.1:{port}"));
            let picked = s.pick(&f, &[]).unwrap();
            assert_eq!(Some(picked), s.table().lookup(flow_hash(&f)));
            // Same flow, same answer, whatever the load says.
            assert_eq!(s.pick(&f, &[1000, 0, 0, 0]), Some(picked));
            seen[picked] += 1;
        }
        assert!(seen.iter().all(|&c| c > 0), "{seen:?}");
    }

    /// Flow-level sanity check of the flow hash: 100k synthetic flows
    /// (varying client address and port) over 10 equal backends land within
    /// 5% of the ideal share each. The inputs are fixed, so this is not a
    /// statistical test; it catches a degenerate flow hash (e.g. one that
    /// ignores ports), which table-level balance cannot.
    #[test]
    fn maglev_spreads_synthetic_flows() {
        let mut s = Maglev::new(&wb(&[1; 10]), TableSize::default()).unwrap();
        let mut counts = [0u32; 10];
        for host in 0..100u8 {
            for port in 0..1000u16 {
                let src = SocketAddr::from(([127, 0, 1, host], 20_000 + port));
                counts[s.pick(&FlowKey { src, ..any() }, &[]).unwrap()] += 1;
            }
        }
        for c in counts {
            assert!((9_500..=10_500).contains(&c), "{counts:?}");
        }
        // One client host alone, ports only: still spread.
        let mut per_port = [0u32; 10];
        for port in 0..10_000u16 {
            let src = SocketAddr::from(([127, 0, 0, 1], 30_000 + port));
            per_port[s.pick(&FlowKey { src, ..any() }, &[]).unwrap()] += 1;
        }
        for c in per_port {
            assert!((900..=1_100).contains(&c), "{per_port:?}");
        }
    }

    #[test]
    fn round_robin_cycles_and_skips_zero_weight() {
        let mut s = RoundRobin::new(&[1, 0, 5, 1]);
        assert_eq!(picks(&mut s, 7), vec![0, 2, 3, 0, 2, 3, 0]);
    }

    #[test]
    fn smooth_wrr_matches_nginx_sequence() {
        // The example from nginx's commit message for smooth WRR.
        let mut s = SmoothWeightedRoundRobin::new(&[5, 1, 1]);
        assert_eq!(picks(&mut s, 7), vec![0, 0, 1, 0, 2, 0, 0]);
        // And it repeats with period = total weight.
        assert_eq!(picks(&mut s, 7), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn smooth_wrr_honours_weights_exactly_per_period() {
        let mut s = SmoothWeightedRoundRobin::new(&[1, 2, 3, 0]);
        let mut counts = [0usize; 4];
        for i in picks(&mut s, 600) {
            counts[i] += 1;
        }
        assert_eq!(counts, [100, 200, 300, 0]);
    }

    #[test]
    fn least_connections_picks_the_least_loaded() {
        let mut s = LeastConnections::new(&[1, 1, 1]);
        assert_eq!(s.pick(&any(), &[5, 2, 7]), Some(1));
        assert_eq!(s.pick(&any(), &[0, 9, 1]), Some(0));
        // Weight 0 is skipped even when idle.
        let mut s = LeastConnections::new(&[0, 1]);
        assert_eq!(s.pick(&any(), &[0, 50]), Some(1));
    }

    #[test]
    fn least_connections_rotates_ties() {
        let mut s = LeastConnections::new(&[1, 1, 1]);
        let got: Vec<_> = (0..6).map(|_| s.pick(&any(), &[3, 3, 3]).unwrap()).collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1, 2]);
        // Missing counts are 0, so backend 2 is the least loaded.
        assert_eq!(s.pick(&any(), &[3, 3]), Some(2));
    }

    #[test]
    fn least_connections_spreads_when_counts_are_fed_back() {
        let mut s = LeastConnections::new(&[1, 1, 1, 1]);
        let mut active = vec![0u64; 4];
        for _ in 0..40 {
            let i = s.pick(&any(), &active).unwrap();
            active[i] += 1;
        }
        assert_eq!(active, vec![10, 10, 10, 10]);
    }

    #[test]
    fn weighted_least_connections_uses_ratio() {
        let mut s = WeightedLeastConnections::new(&[1, 3]);
        // (4+1)/1 = 5 vs (9+1)/3 = 3.33: the heavy one, despite more flows.
        assert_eq!(s.pick(&any(), &[4, 9]), Some(1));
        // (1+1)/1 = 2 vs (9+1)/3 = 3.33: the light one.
        assert_eq!(s.pick(&any(), &[1, 9]), Some(0));
    }

    #[test]
    fn weighted_least_connections_converges_to_weights() {
        let mut s = WeightedLeastConnections::new(&[1, 2, 3, 0]);
        let mut active = vec![0u64; 4];
        for _ in 0..600 {
            let i = s.pick(&any(), &active).unwrap();
            active[i] += 1;
        }
        assert_eq!(active, vec![100, 200, 300, 0]);
        // Idle pool: the heaviest backend goes first.
        let mut s = WeightedLeastConnections::new(&[1, 2, 3]);
        assert_eq!(s.pick(&any(), &[0, 0, 0]), Some(2));
    }

    #[test]
    fn source_hash_keeps_a_client_on_one_backend() {
        let b = wb(&[1, 1, 1, 1, 1]);
        let mut s = SourceHash::new(&b, TableSize::default()).unwrap();
        let first = s.pick(&flow("127.0.0.1:1000"), &[]).unwrap();
        for port in 1001..1100u16 {
            assert_eq!(s.pick(&flow(&format!("127.0.0.1:{port}")), &[]), Some(first));
        }
        // Different clients spread over the backends.
        let mut seen = [false; 5];
        for last in 1..=200u8 {
            let src = SocketAddr::from(([127, 0, 0, last], 1000));
            let f = FlowKey { src, ..any() };
            seen[s.pick(&f, &[]).unwrap()] = true;
        }
        assert!(seen.iter().all(|&x| x), "{seen:?}");
    }

    #[test]
    fn source_hash_is_consistent_on_removal() {
        // Clients not on the removed backend keep theirs (Maglev), which a
        // hash-mod-N scheme would not give.
        let b = wb(&[1, 1, 1, 1, 1]);
        let mut before = SourceHash::new(&b, TableSize::default()).unwrap();
        let mut after = SourceHash::new(&b[..4], TableSize::default()).unwrap();
        let mut kept = 0;
        let mut eligible = 0;
        for last in 1..=250u8 {
            let f = FlowKey {
                src: SocketAddr::from(([127, 0, 0, last], 1)),
                ..any()
            };
            let was = before.pick(&f, &[]).unwrap();
            if was != 4 {
                eligible += 1;
                if after.pick(&f, &[]) == Some(was) {
                    kept += 1;
                }
            }
        }
        assert!(kept * 100 >= eligible * 95, "kept {kept}/{eligible}");
    }
}
