//! `edge-labs`: builds network-namespace labs with real routers.
//!
//! Owns the namespace/veth/bridge builder driven by topology files and the
//! FRR, BIRD and GoBGP launchers. Used by tests and by `edge lab`.
//!
//! Product crates (`bgp`, `dns`, `l4`, `l7`, `node`, `topology`) never depend on it.
//!
//! Map of the crate:
//! * [`spec`]: `LabSpec`, the serde description of a lab, and its checks
//!   (names, the 15-byte interface limit, the lab address space).
//! * [`names`]: kernel naming, `edge-<lab>-<ns>`.
//! * [`config`]: FRR/BIRD/GoBGP config text from a `RouterSpec` (pure).
//! * [`lab`]: `Lab::up`/`teardown`/`down`/`status`/`cleanup_prefix` and the
//!   inspection helpers (`exec`, `vtysh_json`, `router_routes`, `wait_route`).
//! * [`state`]: `state.json`, so another process can find and stop a lab.

pub mod backend;
pub mod clab;
pub mod cmd;
pub mod config;
pub mod error;
pub mod lab;
pub mod names;
pub mod plan;
pub mod procs;
pub mod spec;
pub mod state;

pub use error::{LabError, Result};
/// Re-exported so callers name prefixes with the same `IpNet` the spec uses.
pub use ipnet::{self, IpNet};
pub use lab::{
    KernelRoute, Lab, LabStatus, NamespaceStatus, ProcessStatus, RouteExpect, RouterRoutes, Teardown,
};
pub use names::{NS_PREFIX, kernel_ns, lab_prefix};
pub use spec::{
    BridgePort, BridgeSpec, Endpoint, LabSpec, LinkSpec, NamespaceSpec, NeighborSpec, ProcessSpec, RouteSpec,
    RouterKind, RouterSpec, Timers,
};
pub use state::{LabState, ProcessRecord, RouterRecord};
