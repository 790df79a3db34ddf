//! `edge-bgp`: the BGP speaker of an edge node.
//!
//! Owns the wire codec (a fixed, vendored zettabgp), the sans-IO session state
//! machine (RFC 4271 §8), the per-peer Adj-RIB-In/Out and the tokio driver that
//! carries the state machine's outputs to real sockets and timers.
//!
//! Must never depend on `l4`, `l7`, `dns`, `labs` or netlink: it announces what
//! it is told to announce and reports what it sees, nothing more.

pub mod fsm;
pub mod rib;
pub mod wire;
