//! Desired L4 state and its pure diff.
//!
//! The controller derives an [`L4State`] from config and health, and every
//! dataplane reconciles towards it. Everything is in `BTreeMap`s so that the
//! diff, logs and goldens come out in one order on every machine.
//!
//! Serialised form (JSON shown; addresses are documentation examples):
//! ```json
//! {"services": [{"vip": "203.0.113.10", "port": 443, "protocol": "tcp",
//!   "scheduler": "maglev",
//!   "backends": [{"addr": "198.51.100.7:8443", "weight": 1, "state": "active"}]}]}
//! ```
//! Services and backends are lists on the wire (JSON map keys must be
//! strings) and are checked for duplicates when read back.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hash::Protocol;
use crate::sched::{SchedulerKind, WeightedBackend};

/// A service: what a client connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl ServiceKey {
    pub fn new(vip: IpAddr, port: u16, protocol: Protocol) -> Self {
        ServiceKey { vip, port, protocol }
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.vip, self.port)
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.socket_addr(), self.protocol)
    }
}

/// Whether a backend takes new flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    /// Takes new flows in proportion to its weight.
    #[default]
    Active,
    /// Takes no new flows; existing flows continue until they end or the
    /// dataplane's drain timeout cuts them.
    Draining,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BackendSpec {
    /// Relative share of new flows. 0 takes none, like `Draining`.
    pub weight: u32,
    pub state: BackendState,
}

impl BackendSpec {
    pub fn active(weight: u32) -> Self {
        BackendSpec {
            weight,
            state: BackendState::Active,
        }
    }

    pub fn draining(weight: u32) -> Self {
        BackendSpec {
            weight,
            state: BackendState::Draining,
        }
    }

    /// True if new flows may be sent here.
    pub fn takes_new_flows(&self) -> bool {
        self.state == BackendState::Active && self.weight > 0
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSpec {
    pub scheduler: SchedulerKind,
    pub backends: BTreeMap<SocketAddr, BackendSpec>,
}

impl ServiceSpec {
    pub fn new(scheduler: SchedulerKind) -> Self {
        ServiceSpec {
            scheduler,
            backends: BTreeMap::new(),
        }
    }

    pub fn with_backend(mut self, addr: SocketAddr, spec: BackendSpec) -> Self {
        self.backends.insert(addr, spec);
        self
    }

    /// The scheduler input: backends that take new flows, in address order,
    /// keyed by `"ip:port"` (the Maglev key every node derives alike).
    /// Returns the addresses alongside, index for index.
    pub fn schedulable(&self) -> (Vec<SocketAddr>, Vec<WeightedBackend>) {
        self.backends
            .iter()
            .filter(|(_, spec)| spec.takes_new_flows())
            .map(|(addr, spec)| (*addr, WeightedBackend::new(addr.to_string(), spec.weight)))
            .unzip()
    }
}

/// The whole desired L4 state of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RawState", try_from = "RawState")]
pub struct L4State {
    pub services: BTreeMap<ServiceKey, ServiceSpec>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    #[error("service {0} listed twice")]
    DuplicateService(ServiceKey),
    #[error("service {service}: backend {backend} listed twice")]
    DuplicateBackend {
        service: ServiceKey,
        backend: SocketAddr,
    },
    #[error("service {0}: port 0 is not a service port")]
    ServicePortZero(ServiceKey),
    #[error("service {service}: backend {backend} must have a non-zero port and a specified address")]
    BadBackend {
        service: ServiceKey,
        backend: SocketAddr,
    },
}

impl L4State {
    pub fn with_service(mut self, key: ServiceKey, spec: ServiceSpec) -> Self {
        self.services.insert(key, spec);
        self
    }

    /// Checks what the types cannot: every service port and backend address
    /// is usable.
    pub fn validate(&self) -> Result<(), StateError> {
        for (key, spec) in &self.services {
            if key.port == 0 {
                return Err(StateError::ServicePortZero(*key));
            }
            for addr in spec.backends.keys() {
                if addr.port() == 0 || addr.ip().is_unspecified() {
                    return Err(StateError::BadBackend {
                        service: *key,
                        backend: *addr,
                    });
                }
            }
        }
        Ok(())
    }

    /// Applies one change, so that `diff(a, b)` replayed on `a` yields `b`.
    pub fn apply_change(&mut self, change: &Change) {
        match change {
            Change::AddService { service, spec } => {
                self.services.insert(*service, spec.clone());
            }
            Change::RemoveService { service } => {
                self.services.remove(service);
            }
            Change::SetScheduler { service, to, .. } => {
                if let Some(s) = self.services.get_mut(service) {
                    s.scheduler = *to;
                }
            }
            Change::AddBackend {
                service,
                backend,
                spec,
            }
            | Change::UpdateBackend {
                service,
                backend,
                to: spec,
                ..
            } => {
                if let Some(s) = self.services.get_mut(service) {
                    s.backends.insert(*backend, *spec);
                }
            }
            Change::RemoveBackend { service, backend } => {
                if let Some(s) = self.services.get_mut(service) {
                    s.backends.remove(backend);
                }
            }
        }
    }
}

/// One step from an old state to a new one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// A new service, with all its backends.
    AddService { service: ServiceKey, spec: ServiceSpec },
    /// A service gone, with all its backends.
    RemoveService { service: ServiceKey },
    SetScheduler {
        service: ServiceKey,
        from: SchedulerKind,
        to: SchedulerKind,
    },
    AddBackend {
        service: ServiceKey,
        backend: SocketAddr,
        spec: BackendSpec,
    },
    /// Weight or state changed (e.g. `Active` → `Draining`).
    UpdateBackend {
        service: ServiceKey,
        backend: SocketAddr,
        from: BackendSpec,
        to: BackendSpec,
    },
    RemoveBackend {
        service: ServiceKey,
        backend: SocketAddr,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddService { service, spec } => {
                write!(
                    f,
                    "+service {service} {} ({} backends)",
                    spec.scheduler,
                    spec.backends.len()
                )
            }
            Change::RemoveService { service } => write!(f, "-service {service}"),
            Change::SetScheduler { service, from, to } => {
                write!(f, "~service {service} scheduler {from} -> {to}")
            }
            Change::AddBackend {
                service,
                backend,
                spec,
            } => {
                write!(
                    f,
                    "+backend {service} {backend} w={} {:?}",
                    spec.weight, spec.state
                )
            }
            Change::UpdateBackend {
                service,
                backend,
                from,
                to,
            } => write!(
                f,
                "~backend {service} {backend} w={} {:?} -> w={} {:?}",
                from.weight, from.state, to.weight, to.state
            ),
            Change::RemoveBackend { service, backend } => write!(f, "-backend {service} {backend}"),
        }
    }
}

/// The changes that turn `old` into `new`, in a fixed order: services by key;
/// within a service present in both, its scheduler change first, then its
/// backends by address. Empty when the states are equal.
pub fn diff(old: &L4State, new: &L4State) -> Vec<Change> {
    let mut changes = Vec::new();
    let keys: BTreeSet<&ServiceKey> = old.services.keys().chain(new.services.keys()).collect();
    for key in keys {
        match (old.services.get(key), new.services.get(key)) {
            (Some(o), Some(n)) => diff_service(*key, o, n, &mut changes),
            (Some(_), None) => changes.push(Change::RemoveService { service: *key }),
            (None, Some(n)) => changes.push(Change::AddService {
                service: *key,
                spec: n.clone(),
            }),
            (None, None) => {}
        }
    }
    changes
}

fn diff_service(service: ServiceKey, old: &ServiceSpec, new: &ServiceSpec, out: &mut Vec<Change>) {
    if old.scheduler != new.scheduler {
        out.push(Change::SetScheduler {
            service,
            from: old.scheduler,
            to: new.scheduler,
        });
    }
    let addrs: BTreeSet<&SocketAddr> = old.backends.keys().chain(new.backends.keys()).collect();
    for addr in addrs {
        let backend = *addr;
        match (old.backends.get(addr), new.backends.get(addr)) {
            (Some(o), Some(n)) if o != n => out.push(Change::UpdateBackend {
                service,
                backend,
                from: *o,
                to: *n,
            }),
            (Some(_), None) => out.push(Change::RemoveBackend { service, backend }),
            (None, Some(n)) => out.push(Change::AddBackend {
                service,
                backend,
                spec: *n,
            }),
            _ => {}
        }
    }
}

/// The serde form: lists instead of maps.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    #[serde(default)]
    services: Vec<RawService>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    vip: IpAddr,
    port: u16,
    protocol: Protocol,
    #[serde(default)]
    scheduler: SchedulerKind,
    #[serde(default)]
    backends: Vec<RawBackend>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    addr: SocketAddr,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    state: BackendState,
}

fn default_weight() -> u32 {
    1
}

impl From<L4State> for RawState {
    fn from(s: L4State) -> Self {
        RawState {
            services: s
                .services
                .into_iter()
                .map(|(k, spec)| RawService {
                    vip: k.vip,
                    port: k.port,
                    protocol: k.protocol,
                    scheduler: spec.scheduler,
                    backends: spec
                        .backends
                        .into_iter()
                        .map(|(addr, b)| RawBackend {
                            addr,
                            weight: b.weight,
                            state: b.state,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl TryFrom<RawState> for L4State {
    type Error = StateError;

    fn try_from(raw: RawState) -> Result<Self, StateError> {
        let mut services = BTreeMap::new();
        for s in raw.services {
            let key = ServiceKey::new(s.vip, s.port, s.protocol);
            let mut spec = ServiceSpec::new(s.scheduler);
            for b in s.backends {
                if spec
                    .backends
                    .insert(
                        b.addr,
                        BackendSpec {
                            weight: b.weight,
                            state: b.state,
                        },
                    )
                    .is_some()
                {
                    return Err(StateError::DuplicateBackend {
                        service: key,
                        backend: b.addr,
                    });
                }
            }
            if services.insert(key, spec).is_some() {
                return Err(StateError::DuplicateService(key));
            }
        }
        let state = L4State { services };
        state.validate()?;
        Ok(state)
    }
}

impl Serialize for ServiceSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            scheduler: SchedulerKind,
            backends: Vec<RawBackendRef<'a>>,
        }
        #[derive(Serialize)]
        struct RawBackendRef<'a> {
            addr: &'a SocketAddr,
            weight: u32,
            state: BackendState,
        }
        Wire {
            scheduler: self.scheduler,
            backends: self
                .backends
                .iter()
                .map(|(addr, b)| RawBackendRef {
                    addr,
                    weight: b.weight,
                    state: b.state,
                })
                .collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ServiceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            #[serde(default)]
            scheduler: SchedulerKind,
            #[serde(default)]
            backends: Vec<RawBackend>,
        }
        let w = Wire::deserialize(deserializer)?;
        let mut spec = ServiceSpec::new(w.scheduler);
        for b in w.backends {
            if spec
                .backends
                .insert(
                    b.addr,
                    BackendSpec {
                        weight: b.weight,
                        state: b.state,
                    },
                )
                .is_some()
            {
                return Err(serde::de::Error::custom(format!(
                    "backend {} listed twice",
                    b.addr
                )));
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(port: u16) -> ServiceKey {
        ServiceKey::new("127.0.0.1".parse().unwrap(), port, Protocol::Tcp)
    }

    fn be(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn base() -> L4State {
        L4State::default()
            .with_service(
                svc(80),
                ServiceSpec::new(SchedulerKind::Maglev)
                    .with_backend(be(8001), BackendSpec::active(1))
                    .with_backend(be(8002), BackendSpec::active(2)),
            )
            .with_service(
                svc(53),
                ServiceSpec::new(SchedulerKind::RoundRobin).with_backend(be(5301), BackendSpec::active(1)),
            )
    }

    #[test]
    fn diff_of_equal_states_is_empty() {
        assert!(diff(&base(), &base()).is_empty());
        assert!(diff(&L4State::default(), &L4State::default()).is_empty());
    }

    #[test]
    fn diff_lists_every_kind_of_change_in_order() {
        let old = base();
        let mut new = base();
        // svc 53 removed, svc 443 added, svc 80: scheduler, one backend
        // drained, one removed, one added.
        new.services.remove(&svc(53));
        new.services.insert(
            svc(443),
            ServiceSpec::new(SchedulerKind::SourceHash).with_backend(be(9443), BackendSpec::active(1)),
        );
        let s80 = new.services.get_mut(&svc(80)).unwrap();
        s80.scheduler = SchedulerKind::LeastConnections;
        s80.backends.insert(be(8001), BackendSpec::draining(1));
        s80.backends.remove(&be(8002));
        s80.backends.insert(be(8000), BackendSpec::active(5));

        let changes = diff(&old, &new);
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "-service 127.0.0.1:53/tcp",
                "~service 127.0.0.1:80/tcp scheduler maglev -> least_connections",
                "+backend 127.0.0.1:80/tcp 127.0.0.1:8000 w=5 Active",
                "~backend 127.0.0.1:80/tcp 127.0.0.1:8001 w=1 Active -> w=1 Draining",
                "-backend 127.0.0.1:80/tcp 127.0.0.1:8002",
                "+service 127.0.0.1:443/tcp source_hash (1 backends)",
            ]
        );
        let mut replayed = old.clone();
        for c in &changes {
            replayed.apply_change(c);
        }
        assert_eq!(replayed, new);
    }

    #[test]
    fn protocol_is_part_of_the_service_key() {
        let mut new = base();
        let spec = new.services.remove(&svc(53)).unwrap();
        new.services.insert(
            ServiceKey {
                protocol: Protocol::Udp,
                ..svc(53)
            },
            spec,
        );
        let changes = diff(&base(), &new);
        assert_eq!(changes.len(), 2);
        assert!(matches!(changes[0], Change::RemoveService { service } if service == svc(53)));
        assert!(
            matches!(changes[1], Change::AddService { service, .. } if service.protocol == Protocol::Udp)
        );
    }

    /// Tiny deterministic generator (xorshift64*), so the property test
    /// needs no `rand` and replays the same cases everywhere.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn state(&mut self) -> L4State {
            let kinds = [
                SchedulerKind::Maglev,
                SchedulerKind::RoundRobin,
                SchedulerKind::WeightedRoundRobin,
                SchedulerKind::LeastConnections,
                SchedulerKind::WeightedLeastConnections,
                SchedulerKind::SourceHash,
            ];
            let mut st = L4State::default();
            for _ in 0..self.below(5) {
                let proto = if self.below(2) == 0 {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                };
                let key = ServiceKey::new("127.0.0.1".parse().unwrap(), 1 + self.below(4) as u16, proto);
                let mut spec = ServiceSpec::new(kinds[self.below(6) as usize]);
                for _ in 0..self.below(5) {
                    let state = if self.below(3) == 0 {
                        BackendState::Draining
                    } else {
                        BackendState::Active
                    };
                    let weight = self.below(3) as u32;
                    spec.backends
                        .insert(be(9000 + self.below(6) as u16), BackendSpec { weight, state });
                }
                st.services.insert(key, spec);
            }
            st
        }
    }

    #[test]
    fn replaying_the_diff_reaches_the_new_state() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let (a, b) = (g.state(), g.state());
            let changes = diff(&a, &b);
            let mut replayed = a.clone();
            for c in &changes {
                replayed.apply_change(c);
            }
            assert_eq!(replayed, b, "{changes:?}");
            assert_eq!(changes.is_empty(), a == b);
            assert!(diff(&b, &b).is_empty());
        }
    }

    #[test]
    fn json_round_trip_and_golden() {
        let json = serde_json::to_string(&base()).unwrap();
        assert_eq!(
            json,
            r#"{"services":[{"vip":"127.0.0.1","port":53,"protocol":"tcp","scheduler":"round_robin","backends":[{"addr":"127.0.0.1:5301","weight":1,"state":"active"}]},{"vip":"127.0.0.1","port":80,"protocol":"tcp","scheduler":"maglev","backends":[{"addr":"127.0.0.1:8001","weight":1,"state":"active"},{"addr":"127.0.0.1:8002","weight":2,"state":"active"}]}]}"#
        );
        let back: L4State = serde_json::from_str(&json).unwrap();
        assert_eq!(back, base());
        for c in diff(&L4State::default(), &base()) {
            let j = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Change>(&j).unwrap(), c);
        }
    }

    #[test]
    fn json_defaults_and_rejections() {
        let st: L4State = serde_json::from_str(
            r#"{"services":[{"vip":"::1","port":443,"protocol":"udp","backends":[{"addr":"[::1]:8443"}]}]}"#,
        )
        .unwrap();
        let (key, spec) = st.services.iter().next().unwrap();
        assert_eq!(key.protocol, Protocol::Udp);
        assert_eq!(spec.scheduler, SchedulerKind::Maglev);
        assert_eq!(spec.backends.values().next(), Some(&BackendSpec::active(1)));

        let bad = [
            r#"{"services":[],"extra":1}"#,
            r#"{"services":[{"vip":"::1","port":443,"protocol":"udp","wat":1}]}"#,
            r#"{"services":[{"vip":"::1","port":1,"protocol":"tcp"},{"vip":"::1","port":1,"protocol":"tcp"}]}"#,
            r#"{"services":[{"vip":"::1","port":1,"protocol":"tcp","backends":[{"addr":"[::1]:2"},{"addr":"[::1]:2"}]}]}"#,
            r#"{"services":[{"vip":"::1","port":0,"protocol":"tcp"}]}"#,
            r#"{"services":[{"vip":"::1","port":1,"protocol":"tcp","backends":[{"addr":"[::]:2"}]}]}"#,
            r#"{"services":[{"vip":"::1","port":1,"protocol":"sctp"}]}"#,
        ];
        for b in bad {
            assert!(serde_json::from_str::<L4State>(b).is_err(), "{b}");
        }
    }

    #[test]
    fn schedulable_skips_draining_and_zero_weight() {
        let spec = ServiceSpec::new(SchedulerKind::Maglev)
            .with_backend(be(1), BackendSpec::active(1))
            .with_backend(be(2), BackendSpec::draining(1))
            .with_backend(be(3), BackendSpec::active(0))
            .with_backend(be(4), BackendSpec::active(7));
        let (addrs, wb) = spec.schedulable();
        assert_eq!(addrs, vec![be(1), be(4)]);
        assert_eq!(
            wb,
            vec![
                WeightedBackend::new("127.0.0.1:1", 1),
                WeightedBackend::new("127.0.0.1:4", 7)
            ]
        );
    }
}
