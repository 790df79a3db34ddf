//! The controller as a sans-IO state machine.
//!
//! ```text
//!   Input::{Config, Snapshot, Ejected, Tick, Shutdown}
//!        │
//!        ▼
//!   Controller::step(now, input) ──► Plan { desired, actions, wake_at }
//!        ▲                                   │ the driver (node.rs) carries out
//!        └── failed(tier) ◄── apply error ───┘ the actions in order
//! ```
//!
//! The controller owns everything that used to be loose state of the
//! controller task: the running configuration, the latest health view, the
//! passive ejections, when each VIP entered its drain, and what was last
//! handed to each tier. Each step derives the whole desired state of the
//! node from those (with the pure functions of [`super::derive`]) and emits
//! only what changed, in the one order that keeps traffic safe:
//!
//! * start and growth: dataplanes first (L4, L7), then the VIP addresses
//!   on `lo` (the union of old and new, so nothing the routers still send
//!   to is refused), then the BGP announcements, then `lo` trimmed to the
//!   new set;
//! * shutdown: withdraw every route, give the UPDATEs a moment to leave,
//!   take the addresses away, then tear the dataplanes down.
//!
//! No clock is read and nothing is done here: `now` comes in, actions go
//! out. A driver that fails to apply an action calls [`Controller::failed`]
//! so that the next step emits that tier's state again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_bgp::Route;
use edge_dns::DnsView;
use edge_l4::L4State;
use edge_topology::health::HealthSnapshot;
use edge_topology::{DataplaneKind, Deployment};
use ipnet::IpNet;
use serde::Serialize;

use super::derive::{self, ActiveBackend, Announcement, Decision, Verdict};
use crate::health::outlier::Ejected;

/// How long a shutdown waits between the withdraw and removing the VIP
/// addresses, so the UPDATEs leave before the addresses go.
pub const WITHDRAW_GRACE: Duration = Duration::from_millis(300);

/// What changes the controller's world.
#[derive(Debug, Clone)]
pub enum Input {
    /// The running configuration (at start, and on every reload).
    Config(Arc<Deployment>),
    /// A new merged health view from the bus.
    Snapshot(Arc<HealthSnapshot>),
    /// The backends passive health ejected, per pool.
    Ejected(Ejected),
    /// The pools the L7 tier serves (at start, and after a reload changed
    /// them): their members are part of every plan.
    L7Pools(BTreeSet<String>),
    /// Time passed: a drain deadline, or the driver's periodic retry.
    Tick,
    /// This process took over from one that announced these routes and
    /// held these `lo` prefixes (an upgrade): keep both until this node's
    /// own checks have a result for every backend it checks (at most
    /// [`INHERIT_LIMIT`]), so neither the routers' tables nor the addresses
    /// that established connections use change while the new process
    /// starts.
    Inherited {
        routes: BTreeSet<Route>,
        local: BTreeSet<IpNet>,
    },
    /// Stop the node: withdraw, remove addresses, tear down.
    Shutdown,
    /// Stop, handing everything over to the next process (an upgrade):
    /// nothing is withdrawn, removed or torn down.
    Handover,
}

/// The longest a taken-over node announces its predecessor's routes while
/// its own checks have not concluded.
pub const INHERIT_LIMIT: Duration = Duration::from_secs(30);

/// The consumers the controller drives, one per kind of action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    L4,
    L7,
    Local,
    Bgp,
    Report,
    Dns,
}

/// The L4 desired state, split by the dataplane that serves each listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct L4Plan {
    pub userspace: L4State,
    pub nftables: L4State,
    pub xdp: L4State,
}

impl L4Plan {
    /// The share of `kind`.
    pub fn of(&self, kind: DataplaneKind) -> Option<&L4State> {
        match kind {
            DataplaneKind::Userspace => Some(&self.userspace),
            DataplaneKind::Nftables => Some(&self.nftables),
            DataplaneKind::Xdp => Some(&self.xdp),
            DataplaneKind::Ipvs => None,
        }
    }
}

/// A backend as the L7 tier uses it: in rotation or not (drained by the
/// operator, ejected by passive health).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct L7Member {
    pub name: String,
    pub addr: std::net::SocketAddr,
    pub weight: u32,
    pub backup: bool,
    pub healthy: bool,
}

/// Everything the node does, derived from one configuration and one health
/// view. `/status` shows the last one that was applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Desired {
    /// Per VIP of the node's site: announce, drain or withdraw, and why.
    pub verdicts: BTreeMap<String, Verdict>,
    /// What the routers are told per VIP right now.
    pub announcements: BTreeMap<String, Announcement>,
    /// The BGP routes (with each VIP's policy and GSHUT while draining).
    pub routes: BTreeSet<Route>,
    /// Prefixes that belong on `lo`.
    pub local: BTreeSet<IpNet>,
    /// The L4 dataplanes' state.
    pub l4: L4Plan,
    /// Members of every pool the L7 tier knows.
    pub l7: BTreeMap<String, Vec<L7Member>>,
    /// Backends in rotation per pool at this node's site (all pools).
    pub pools: BTreeMap<String, Vec<ActiveBackend>>,
    /// What GSLB steering sees.
    pub dns: DnsView,
    /// Per VIP: whether this node serves it (its report on the bus).
    pub serves: BTreeMap<String, bool>,
}

/// One thing for a driver to do; a plan's actions run in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Program the L4 dataplanes.
    ProgramL4(L4Plan),
    /// Replace the members of the L7 pools (one atomic swap).
    SetL7(BTreeMap<String, Vec<L7Member>>),
    /// Make sure these prefixes are on `lo` (never removes any).
    AddLocal(BTreeSet<IpNet>),
    /// The complete set of routes to advertise.
    Announce(BTreeSet<Route>),
    /// Make `lo` hold exactly these of our prefixes.
    SetLocal(BTreeSet<IpNet>),
    /// Publish which VIPs this node serves.
    Report(BTreeMap<String, bool>),
    /// Publish a new steering view to the DNS server.
    SetDns(DnsView),
    /// Wait before the next action (shutdown: let the withdraws leave).
    Wait(Duration),
    /// Remove what the kernel dataplanes installed (shutdown).
    RemoveL4,
}

impl Action {
    /// The tier an action belongs to (`Wait` has none).
    pub fn tier(&self) -> Option<Tier> {
        match self {
            Action::ProgramL4(_) | Action::RemoveL4 => Some(Tier::L4),
            Action::SetL7(_) => Some(Tier::L7),
            Action::AddLocal(_) | Action::SetLocal(_) => Some(Tier::Local),
            Action::Announce(_) => Some(Tier::Bgp),
            Action::Report(_) => Some(Tier::Report),
            Action::SetDns(_) => Some(Tier::Dns),
            Action::Wait(_) => None,
        }
    }
}

/// The result of one step.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Counts steps that produced actions; `/status` shows it.
    pub generation: u64,
    /// The whole desired state (`None` before a configuration arrived, and
    /// after shutdown).
    pub desired: Option<Arc<Desired>>,
    /// What to do, in order. Empty when nothing changed.
    pub actions: Vec<Action>,
    /// When to step again with [`Input::Tick`] (the next drain deadline).
    pub wake_at: Option<Instant>,
}

/// What a predecessor left, and until when it counts.
#[derive(Debug)]
struct Inherited {
    routes: BTreeSet<Route>,
    local: BTreeSet<IpNet>,
    until: Option<Instant>,
}

/// The node's controller (see the module docs).
#[derive(Debug)]
pub struct Controller {
    node: String,
    dep: Option<Arc<Deployment>>,
    snapshot: Arc<HealthSnapshot>,
    ejected: Ejected,
    /// When each VIP entered its current drain.
    draining_since: BTreeMap<String, Instant>,
    /// What each tier was last given (cleared by [`Controller::failed`]).
    last_l4: Option<L4Plan>,
    last_l7: Option<BTreeMap<String, Vec<L7Member>>>,
    last_routes: Option<BTreeSet<Route>>,
    last_local: Option<BTreeSet<IpNet>>,
    last_serves: Option<BTreeMap<String, bool>>,
    last_dns: Option<DnsView>,
    /// The L7 pools the node's proxy knows (set by the driver).
    l7_pools: BTreeSet<String>,
    /// A predecessor's routes and `lo` prefixes, kept until the checks
    /// conclude or the deadline passes.
    inherited: Option<Inherited>,
    generation: u64,
    stopped: bool,
}

impl Controller {
    /// A controller for `node`, with no configuration yet.
    pub fn new(node: impl Into<String>) -> Self {
        Controller {
            node: node.into(),
            dep: None,
            snapshot: Arc::new(HealthSnapshot::default()),
            ejected: Ejected::new(),
            draining_since: BTreeMap::new(),
            last_l4: None,
            last_l7: None,
            last_routes: None,
            last_local: None,
            last_serves: None,
            last_dns: None,
            l7_pools: BTreeSet::new(),
            inherited: None,
            generation: 0,
            stopped: false,
        }
    }

    /// The pools the L7 tier serves (their members are part of each plan).
    /// Set at start and after a reload changed the proxy's pools.
    pub fn set_l7_pools(&mut self, pools: impl IntoIterator<Item = String>) {
        self.l7_pools = pools.into_iter().collect();
    }

    /// The applied state of `tier` is unknown (its driver failed): the next
    /// step hands it the desired state again.
    pub fn failed(&mut self, tier: Tier) {
        match tier {
            Tier::L4 => self.last_l4 = None,
            Tier::L7 => self.last_l7 = None,
            Tier::Local => self.last_local = None,
            Tier::Bgp => self.last_routes = None,
            Tier::Report => self.last_serves = None,
            Tier::Dns => self.last_dns = None,
        }
    }

    /// Whether [`Input::Shutdown`] was stepped.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Takes one input at time `now` and returns what to do about it.
    pub fn step(&mut self, now: Instant, input: Input) -> Plan {
        match input {
            Input::Config(dep) => self.dep = Some(dep),
            Input::Snapshot(s) => self.snapshot = s,
            Input::Ejected(e) => self.ejected = e,
            Input::L7Pools(p) => self.l7_pools = p,
            Input::Inherited { routes, local } => {
                self.inherited = Some(Inherited {
                    routes,
                    local,
                    until: None,
                })
            }
            Input::Tick => {}
            Input::Shutdown => return self.shutdown(),
            Input::Handover => {
                if !self.stopped {
                    self.stopped = true;
                    self.generation += 1;
                }
                return Plan {
                    generation: self.generation,
                    desired: None,
                    actions: Vec::new(),
                    wake_at: None,
                };
            }
        }
        if self.stopped {
            return Plan {
                generation: self.generation,
                desired: None,
                actions: Vec::new(),
                wake_at: None,
            };
        }
        let Some(dep) = self.dep.clone() else {
            return Plan {
                generation: self.generation,
                desired: None,
                actions: Vec::new(),
                wake_at: None,
            };
        };
        let desired = self.derive(&dep, now);
        let actions = self.diff(&desired);
        if !actions.is_empty() {
            self.generation += 1;
        }
        let wake_at = self
            .draining_since
            .values()
            .map(|t| *t + dep.bgp.drain)
            .chain(self.inherited.as_ref().and_then(|i| i.until))
            .filter(|d| *d > now)
            .min();
        Plan {
            generation: self.generation,
            desired: Some(Arc::new(desired)),
            actions,
            wake_at,
        }
    }

    fn derive(&mut self, dep: &Deployment, now: Instant) -> Desired {
        let node = self.node.as_str();
        let snap = &*self.snapshot;
        let verdicts = derive::vip_verdicts(dep, node, snap);
        // A drain's clock starts the first time a VIP is seen draining, and
        // stops when it leaves the drain.
        self.draining_since
            .retain(|vip, _| verdicts.get(vip).is_some_and(|v| v.decision == Decision::Drain));
        for (vip, v) in &verdicts {
            if v.decision == Decision::Drain {
                self.draining_since.entry(vip.clone()).or_insert(now);
            }
        }
        let announcements = derive::announcements(dep, &verdicts, &self.draining_since, now);
        let mut routes = derive::routes(dep, &announcements);
        let mut local = derive::local_prefixes(dep, &verdicts);
        if let Some(inherited) = &mut self.inherited {
            let until = *inherited.until.get_or_insert(now + INHERIT_LIMIT);
            if derive::checks_concluded(dep, node, snap) || now >= until {
                self.inherited = None;
            } else {
                routes = inherited.routes.clone();
                local.extend(inherited.local.iter().copied());
            }
        }
        let l4 = L4Plan {
            userspace: derive::l4_state_of(dep, node, snap, Some(DataplaneKind::Userspace)),
            nftables: derive::l4_state_of(dep, node, snap, Some(DataplaneKind::Nftables)),
            xdp: derive::l4_state_of(dep, node, snap, Some(DataplaneKind::Xdp)),
        };
        let pools: BTreeMap<String, Vec<ActiveBackend>> = dep
            .pools
            .keys()
            .map(|p| (p.clone(), derive::backend_set(dep, node, p, snap)))
            .collect();
        let l7 = self
            .l7_pools
            .iter()
            .map(|p| {
                let members = pools
                    .get(p)
                    .map(|set| {
                        set.iter()
                            .map(|b| L7Member {
                                name: b.name.clone(),
                                addr: b.addr,
                                weight: b.weight,
                                backup: b.backup,
                                healthy: !b.draining && !self.ejected.contains(&(p.clone(), b.name.clone())),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (p.clone(), members)
            })
            .collect();
        let serves = verdicts
            .iter()
            .map(|(k, v)| (k.clone(), v.decision == Decision::Announce))
            .collect();
        Desired {
            dns: DnsView::from_snapshot(dep, snap),
            verdicts,
            announcements,
            routes,
            local,
            l4,
            l7,
            pools,
            serves,
        }
    }

    /// The actions that take the tiers from what they were last given to
    /// `d`, in the safe order, and records `d` as given.
    fn diff(&mut self, d: &Desired) -> Vec<Action> {
        let mut out = Vec::new();
        // Dataplanes first: traffic the routers send must find them ready.
        if self.last_l4.as_ref() != Some(&d.l4) {
            out.push(Action::ProgramL4(d.l4.clone()));
            self.last_l4 = Some(d.l4.clone());
        }
        if !self.l7_pools.is_empty() && self.last_l7.as_ref() != Some(&d.l7) {
            out.push(Action::SetL7(d.l7.clone()));
            self.last_l7 = Some(d.l7.clone());
        }
        let local_changed = self.last_local.as_ref() != Some(&d.local);
        let prev = self.last_local.clone().unwrap_or_default();
        let mut both = prev.clone();
        both.extend(d.local.iter().copied());
        if local_changed && both != prev {
            // Addresses before routes: what is announced must be accepted.
            out.push(Action::AddLocal(both.clone()));
        }
        if self.last_routes.as_ref() != Some(&d.routes) {
            out.push(Action::Announce(d.routes.clone()));
            self.last_routes = Some(d.routes.clone());
        }
        if local_changed {
            // Removals only after the withdraws went out, so the routers
            // stop sending before the addresses go. An unknown state (at
            // start, or after a failure) is reconciled exactly.
            if both != d.local || self.last_local.is_none() {
                out.push(Action::SetLocal(d.local.clone()));
            }
            self.last_local = Some(d.local.clone());
        }
        if self.last_serves.as_ref() != Some(&d.serves) {
            out.push(Action::Report(d.serves.clone()));
            self.last_serves = Some(d.serves.clone());
        }
        if self.last_dns.as_ref() != Some(&d.dns) {
            out.push(Action::SetDns(d.dns.clone()));
            self.last_dns = Some(d.dns.clone());
        }
        out
    }

    /// Shutdown in reverse start order.
    fn shutdown(&mut self) -> Plan {
        let mut actions = Vec::new();
        if !self.stopped {
            self.stopped = true;
            if self.last_routes.as_ref().is_some_and(|r| !r.is_empty()) {
                actions.push(Action::Announce(BTreeSet::new()));
                actions.push(Action::Wait(WITHDRAW_GRACE));
            }
            actions.push(Action::SetLocal(BTreeSet::new()));
            actions.push(Action::RemoveL4);
            self.last_routes = Some(BTreeSet::new());
            self.last_local = Some(BTreeSet::new());
            self.last_l4 = None;
            self.generation += 1;
        }
        Plan {
            generation: self.generation,
            desired: None,
            actions,
            wake_at: None,
        }
    }
}

#[cfg(test)]
mod tests;
