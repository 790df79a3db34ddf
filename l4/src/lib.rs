//! `edge-l4`: the L4 stage of an edge node.
//!
//! Owns Maglev consistent hashing and the other L4 schedulers, the desired L4
//! state with its pure diff, and the `Dataplane` trait with its backends
//! (userspace proxy, XDP, nftables).
//!
//! Must never depend on `bgp`, `dns`, `l7`, `labs` or hyper.

pub mod hash;
pub mod maglev;
pub mod sched;

pub use hash::{FlowKey, Protocol, flow_hash, source_hash};
pub use maglev::{DEFAULT_TABLE_SIZE, MaglevError, MaglevTable, TableSize};
pub use sched::{Scheduler, SchedulerError, SchedulerKind, WeightedBackend};
