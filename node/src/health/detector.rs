//! Passive health checking (outlier detection), pure: the L4 and L7 tiers
//! report each connection or request outcome per backend; a backend with
//! too many consecutive failures is ejected for a time that grows with each
//! repeat ejection, and the fraction of ejected backends never exceeds the
//! configured cap.
//!
//! The cap is a hard ceiling, rounded down: with 3 backends and a 10% cap no
//! backend is ever ejected. Envoy rounds so that one host is always
//! ejectable, which can take out a third of a small pool; operators who want
//! that can set the percentage accordingly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlierConfig {
    /// Consecutive failures (connect errors, resets, 5xx) that eject.
    pub consecutive_failures: u32,
    /// First ejection time; the n-th ejection lasts n × this.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// At most this percentage of a pool's backends is ejected at once.
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// One outcome the data path saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Connect failure, reset, or a 5xx answer.
    Failure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutlierEvent {
    Ejected {
        backend: String,
        until: Instant,
    },
    /// Would have been ejected, but the cap was reached.
    CapReached {
        backend: String,
    },
    Returned {
        backend: String,
    },
}

#[derive(Debug, Clone, Default)]
struct BackendState {
    consecutive: u32,
    times_ejected: u32,
    ejected_until: Option<Instant>,
    last_ejection: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct OutlierDetector {
    cfg: OutlierConfig,
    backends: BTreeMap<String, BackendState>,
}

impl OutlierDetector {
    /// The backends this detector watches.
    pub fn backends(&self) -> BTreeSet<String> {
        self.backends.keys().cloned().collect()
    }

    pub fn new(cfg: OutlierConfig, backends: impl IntoIterator<Item = String>) -> Self {
        OutlierDetector {
            cfg,
            backends: backends
                .into_iter()
                .map(|b| (b, BackendState::default()))
                .collect(),
        }
    }

    /// How many backends may be ejected at once.
    pub fn max_ejected(&self) -> usize {
        self.backends.len() * self.cfg.max_ejection_percent.min(100) as usize / 100
    }

    pub fn ejected(&self) -> BTreeSet<String> {
        self.backends
            .iter()
            .filter(|(_, s)| s.ejected_until.is_some())
            .map(|(b, _)| b.clone())
            .collect()
    }

    /// Records one outcome; returns what it caused.
    pub fn record(&mut self, now: Instant, backend: &str, outcome: Outcome) -> Option<OutlierEvent> {
        let cap = self.max_ejected();
        let ejected_now = self
            .backends
            .values()
            .filter(|s| s.ejected_until.is_some())
            .count();
        let cfg = self.cfg;
        let st = self.backends.get_mut(backend)?;
        match outcome {
            Outcome::Success => {
                st.consecutive = 0;
                None
            }
            Outcome::Failure => {
                if st.ejected_until.is_some() {
                    // Traffic that was in flight when it was ejected.
                    return None;
                }
                st.consecutive += 1;
                if st.consecutive < cfg.consecutive_failures {
                    return None;
                }
                if ejected_now >= cap {
                    return Some(OutlierEvent::CapReached {
                        backend: backend.to_string(),
                    });
                }
                // A backend that behaved for a whole max_ejection since its
                // last ejection starts over at the base time.
                if st
                    .last_ejection
                    .is_some_and(|t| now.saturating_duration_since(t) > cfg.max_ejection * 2)
                {
                    st.times_ejected = 0;
                }
                st.times_ejected += 1;
                let time = (cfg.base_ejection * st.times_ejected).min(cfg.max_ejection);
                let until = now + time;
                st.ejected_until = Some(until);
                st.last_ejection = Some(now);
                st.consecutive = 0;
                Some(OutlierEvent::Ejected {
                    backend: backend.to_string(),
                    until,
                })
            }
        }
    }

    /// Returns backends whose ejection time is over.
    pub fn tick(&mut self, now: Instant) -> Vec<OutlierEvent> {
        let mut out = Vec::new();
        for (b, st) in &mut self.backends {
            if st.ejected_until.is_some_and(|u| u <= now) {
                st.ejected_until = None;
                out.push(OutlierEvent::Returned { backend: b.clone() });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(n: usize, pct: u32) -> OutlierDetector {
        OutlierDetector::new(
            OutlierConfig {
                consecutive_failures: 3,
                base_ejection: Duration::from_secs(10),
                max_ejection: Duration::from_secs(25),
                max_ejection_percent: pct,
            },
            (0..n).map(|i| format!("b{i}")),
        )
    }

    fn fail(d: &mut OutlierDetector, now: Instant, b: &str, n: u32) -> Option<OutlierEvent> {
        (0..n).filter_map(|_| d.record(now, b, Outcome::Failure)).last()
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_resets_the_count() {
        let mut d = det(4, 50);
        let t = Instant::now();
        assert_eq!(fail(&mut d, t, "b0", 2), None);
        d.record(t, "b0", Outcome::Success);
        assert_eq!(fail(&mut d, t, "b0", 2), None, "count restarted");
        assert!(matches!(
            fail(&mut d, t, "b0", 1),
            Some(OutlierEvent::Ejected { .. })
        ));
        assert_eq!(d.ejected().len(), 1);
    }

    #[test]
    fn ejection_time_grows_with_repeats_up_to_the_maximum() {
        let mut d = det(4, 50);
        let t0 = Instant::now();
        let mut t = t0;
        let mut lengths = Vec::new();
        for _ in 0..3 {
            match fail(&mut d, t, "b1", 3) {
                Some(OutlierEvent::Ejected { until, .. }) => lengths.push(until - t),
                other => panic!("{other:?}"),
            }
            assert!(d.tick(t + Duration::from_secs(1)).is_empty(), "still ejected");
            t += Duration::from_secs(30);
            assert_eq!(d.tick(t), vec![OutlierEvent::Returned { backend: "b1".into() }]);
        }
        assert_eq!(
            lengths,
            [
                Duration::from_secs(10),
                Duration::from_secs(20),
                Duration::from_secs(25)
            ]
        );
    }

    #[test]
    fn the_ejection_cap_is_never_exceeded() {
        // 10 backends, 30%: at most 3 ejected, whatever fails.
        let mut d = det(10, 30);
        let t = Instant::now();
        let mut ejected = 0;
        let mut capped = 0;
        for i in 0..10 {
            match fail(&mut d, t, &format!("b{i}"), 3) {
                Some(OutlierEvent::Ejected { .. }) => ejected += 1,
                Some(OutlierEvent::CapReached { .. }) => capped += 1,
                other => panic!("{other:?}"),
            }
            assert!(d.ejected().len() <= 3);
        }
        assert_eq!((ejected, capped), (3, 7));
        // A small pool with a small cap: nothing is ever ejected (round down).
        let mut small = det(3, 10);
        assert_eq!(small.max_ejected(), 0);
        assert!(matches!(
            fail(&mut small, t, "b0", 3),
            Some(OutlierEvent::CapReached { .. })
        ));
        assert!(small.ejected().is_empty());
    }

    #[test]
    fn unknown_backends_are_ignored() {
        let mut d = det(2, 50);
        assert_eq!(d.record(Instant::now(), "nope", Outcome::Failure), None);
    }
}
