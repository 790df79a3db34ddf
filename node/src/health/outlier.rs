//! Passive health in the node: the L7 tier's failure reports feed one
//! outlier detector per pool (`edge_topology::outlier`); ejected backends
//! leave that pool's L7 view until their ejection time is over.
//!
//! ```text
//!  L7 proxy ──PassiveEvent──► run_outliers ──ejected set (watch)──► controller ──► proxy.set_many
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::detector::{Outcome, OutlierConfig, OutlierDetector, OutlierEvent};
use edge_l7::PassiveEvent;
use edge_topology::Deployment;
use tokio::sync::{mpsc, watch};

/// (pool, backend) pairs currently ejected.
pub type Ejected = BTreeSet<(String, String)>;

/// One detector per pool of `dep`; a pool whose backends are unchanged keeps
/// its detector (and its ejections) across a reload.
fn build_detectors(
    dep: &Deployment,
    mut old: BTreeMap<String, OutlierDetector>,
) -> BTreeMap<String, OutlierDetector> {
    let cfg = OutlierConfig::default();
    dep.pools
        .values()
        .map(|p| {
            let names: BTreeSet<String> = p.backends.iter().map(|b| b.name.clone()).collect();
            let d = match old.remove(&p.name) {
                Some(d) if d.backends() == names => d,
                _ => OutlierDetector::new(cfg, names),
            };
            (p.name.clone(), d)
        })
        .collect()
}

pub async fn run_outliers(
    mut config: watch::Receiver<Arc<Deployment>>,
    mut events: mpsc::Receiver<PassiveEvent>,
    ejected: watch::Sender<Ejected>,
) {
    let mut detectors = build_detectors(&config.borrow_and_update(), BTreeMap::new());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
                // A reload: pools added or removed, backends changed.
                detectors = build_detectors(&config.borrow_and_update(), std::mem::take(&mut detectors));
                let known: BTreeSet<(String, String)> = detectors
                    .iter()
                    .flat_map(|(p, d)| d.backends().into_iter().map(move |b| (p.clone(), b)))
                    .collect();
                ejected.send_if_modified(|s| {
                    let before = s.len();
                    s.retain(|k| known.contains(k));
                    s.len() != before
                });
            }
            e = events.recv() => {
                let Some(e) = e else { return };
                let Some(d) = detectors.get_mut(&e.pool) else { continue };
                let now = Instant::now();
                // The proxy reports failures only, with the successes seen
                // since the previous report: any success breaks a streak.
                if e.preceding_successes > 0 {
                    d.record(now, &e.backend, Outcome::Success);
                }
                match d.record(now, &e.backend, Outcome::Failure) {
                    Some(OutlierEvent::Ejected { backend, until }) => {
                        tracing::warn!(pool = %e.pool, %backend, kind = ?e.kind,
                            for_s = until.saturating_duration_since(now).as_secs(), "backend ejected (passive health)");
                        ejected.send_modify(|s| { s.insert((e.pool.clone(), backend)); });
                    }
                    Some(OutlierEvent::CapReached { backend }) => {
                        tracing::warn!(pool = %e.pool, %backend, "would eject, but the pool's ejection cap is reached");
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                for (pool, d) in &mut detectors {
                    for ev in d.tick(now) {
                        if let OutlierEvent::Returned { backend } = ev {
                            tracing::info!(%pool, %backend, "backend back from ejection");
                            ejected.send_modify(|s| { s.remove(&(pool.clone(), backend)); });
                        }
                    }
                }
            }
        }
    }
}
