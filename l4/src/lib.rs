//! `edge-l4`: the L4 stage of an edge node.
//!
//! Owns Maglev consistent hashing and the other L4 schedulers, the desired L4
//! state with its pure diff, and the `Dataplane` trait with its backends
//! (userspace proxy, XDP, nftables).
//!
//! Must never depend on `bgp`, `dns`, `l7`, `labs` or hyper.
//!
//! Layout:
//! - pure core, no I/O, no clock: [`hash`] (fixed SipHash-1-3, flow hash),
//!   [`maglev`], [`sched`], [`state`] ([`L4State`], [`diff`]);
//! - [`table`]: the Maglev table every hashing dataplane programs
//!   ([`ServiceTable`]), so all of them (and all nodes) agree per slot;
//! - dataplanes behind [`Dataplane`]: `userspace` (tokio proxy, feature
//!   `userspace`, the reference backend; `hosted` gives it a runtime of its
//!   own), `nftables` (DNAT through a Maglev map, feature `nftables`), `xdp`
//!   (L2 DSR in XDP, feature `xdp`, needs clang-14 to build) and [`ipvs`]
//!   (extension point only: not available on this kernel);
//! - helpers for kernel dataplanes: `netns` (program another network
//!   namespace from a thread inside it) and `handoff` (keep proxied
//!   connections alive when anycast moves them to another node).
//!
//! Which dataplane passes which guarantee is pinned by one conformance
//! table run against all of them (`tests/tests/l4_conformance.rs`), and
//! the XDP program by packet fixtures (`tests/tests/l4_xdp_fixtures.rs`).
//!
//! How `edge` drives it: derive an [`L4State`] from config and health on
//! every snapshot, and hand it to the dataplane, which reconciles.
//!
//! ```no_run
//! use std::net::{Ipv4Addr, SocketAddr};
//! use edge_l4::{BackendSpec, Dataplane, DataplaneKind, L4State, Protocol};
//! use edge_l4::{SchedulerKind, ServiceKey, ServiceSpec};
//!
//! # fn main() -> Result<(), edge_l4::DataplaneError> {
//! # let rt = tokio::runtime::Runtime::new().map_err(|e| edge_l4::DataplaneError::NoRuntime {
//! #     backend: "userspace", reason: e.to_string() })?;
//! # let _guard = rt.enter();
//! let mut dp = edge_l4::backend(DataplaneKind::Userspace)?;
//! let vip = ServiceKey::new(Ipv4Addr::new(203, 0, 113, 10).into(), 443, Protocol::Tcp);
//! let backend = SocketAddr::from((Ipv4Addr::new(198, 51, 100, 7), 8443));
//! let desired = L4State::default().with_service(
//!     vip,
//!     ServiceSpec::new(SchedulerKind::Maglev).with_backend(backend, BackendSpec::active(1)),
//! );
//! let applied = dp.apply(&desired)?; // binds 203.0.113.10:443, starts proxying
//! assert!(dp.apply(&desired)?.is_noop()); // idempotent
//! let drift = edge_l4::diff(&dp.observe()?, &desired); // empty unless a listener died
//! # let _ = (applied, drift);
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "nftables")]
pub mod handoff;
pub mod hash;
#[cfg(feature = "userspace")]
pub mod hosted;
pub mod ipvs;
pub mod maglev;
#[cfg(all(feature = "netns", target_os = "linux"))]
pub mod netns;
#[cfg(feature = "nftables")]
pub mod nftables;
pub mod sched;
pub mod state;
pub mod table;
#[cfg(feature = "userspace")]
pub mod userspace;
#[cfg(all(feature = "xdp", target_os = "linux"))]
pub mod xdp;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use hash::{FlowKey, Protocol, flow_hash, source_hash};
pub use maglev::{DEFAULT_TABLE_SIZE, MaglevError, MaglevTable, TableSize};
pub use sched::{Scheduler, SchedulerError, SchedulerKind, WeightedBackend};
pub use state::{BackendSpec, BackendState, Change, L4State, ServiceKey, ServiceSpec, StateError, diff};
pub use table::ServiceTable;

/// A desired-state reconciler (cilium's reconcilers, katran's `KatranLb`).
///
/// `apply` is idempotent: applying the same state twice changes nothing the
/// second time and returns an empty [`Applied`]. After a partial failure the
/// controller simply applies again.
pub trait Dataplane: Send {
    fn name(&self) -> &'static str;
    fn apply(&mut self, desired: &L4State) -> Result<Applied, DataplaneError>; // idempotent
    fn observe(&self) -> Result<L4State, DataplaneError>; // drift, `edge status`
}

/// What an `apply` changed, as [`diff`] steps from the observed to the
/// desired state. Empty when nothing had to change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub changes: Vec<Change>,
}

impl Applied {
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataplaneError {
    #[error("invalid desired state: {0}")]
    InvalidState(#[from] StateError),
    #[error("service {service}: {source}")]
    Scheduler {
        service: ServiceKey,
        source: SchedulerError,
    },
    #[error("service {service}: cannot bind {addr}: {source}")]
    Bind {
        service: ServiceKey,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{backend} dataplane is not available: {reason}")]
    Unavailable { backend: &'static str, reason: String },
    #[error("{backend} dataplane needs a tokio runtime: {reason}")]
    NoRuntime { backend: &'static str, reason: String },
    /// The desired state asks for something this dataplane cannot do (a
    /// scheduler other than Maglev in the kernel, a port rewrite under DSR).
    #[error("{backend} dataplane cannot run service {service}: {reason}")]
    Unsupported {
        backend: &'static str,
        service: ServiceKey,
        reason: String,
    },
    /// The kernel (or the tool that talks to it) refused a change.
    #[error("{backend} dataplane: {context}: {reason}")]
    Kernel {
        backend: &'static str,
        context: String,
        reason: String,
    },
    /// Some services could not be brought to the desired state; the others
    /// were. `applied` lists what did change.
    #[error("{} service(s) not applied, first: {}", failed.len(), failed.first().map_or(String::new(), ToString::to_string))]
    Partial {
        applied: Applied,
        failed: Vec<DataplaneError>,
    },
}

/// Which dataplane a node runs (`[l4] kind = "userspace"` in the config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataplaneKind {
    /// The tokio proxy: runs anywhere, the reference backend.
    #[default]
    Userspace,
    /// Linux IPVS over netlink. Extension point only, see [`ipvs`].
    Ipvs,
    /// nftables DNAT through a Maglev map (feature `nftables`), see
    /// `nftables`.
    Nftables,
    /// XDP with L2 DSR (feature `xdp`). Needs the interfaces to attach to,
    /// so it is built with `xdp::XdpDataplane::new`, not [`backend`].
    Xdp,
}

/// Builds the dataplane `kind` with its default settings.
///
/// `Userspace` must be called inside a tokio runtime (it spawns its
/// listeners there); use [`userspace::UserspaceDataplane::new`] to pass a
/// handle and non-default timeouts explicitly.
pub fn backend(kind: DataplaneKind) -> Result<Box<dyn Dataplane>, DataplaneError> {
    match kind {
        #[cfg(feature = "userspace")]
        DataplaneKind::Userspace => {
            let handle = tokio::runtime::Handle::try_current().map_err(|e| DataplaneError::NoRuntime {
                backend: userspace::NAME,
                reason: e.to_string(),
            })?;
            Ok(Box::new(userspace::UserspaceDataplane::new(
                handle,
                userspace::UserspaceConfig::default(),
            )))
        }
        #[cfg(not(feature = "userspace"))]
        DataplaneKind::Userspace => Err(DataplaneError::Unavailable {
            backend: "userspace",
            reason: "edge-l4 was built without the `userspace` feature".into(),
        }),
        DataplaneKind::Ipvs => Err(ipvs::unavailable()),
        #[cfg(feature = "nftables")]
        DataplaneKind::Nftables => Ok(Box::new(nftables::NftDataplane::new(
            nftables::NftConfig::default(),
        ))),
        #[cfg(not(feature = "nftables"))]
        DataplaneKind::Nftables => Err(DataplaneError::Unavailable {
            backend: "nftables",
            reason: "edge-l4 was built without the `nftables` feature".into(),
        }),
        DataplaneKind::Xdp => Err(DataplaneError::Unavailable {
            backend: "xdp",
            reason: if cfg!(feature = "xdp") {
                "needs the interfaces to attach to: build it with xdp::XdpDataplane::new(XdpConfig)".into()
            } else {
                "edge-l4 was built without the `xdp` feature (needs clang-14 to build)".into()
            },
        }),
    }
}
