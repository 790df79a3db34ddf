//! `edge-bgp`: the BGP speaker of an edge node.
//!
//! Owns the wire codec (a fixed, vendored zettabgp), the sans-IO session state
//! machine (RFC 4271 §8), the per-peer Adj-RIB-In/Out and the tokio driver that
//! carries the state machine's outputs to real sockets and timers.
//!
//! Must never depend on `l4`, `l7`, `dns`, `labs` or netlink: it announces what
//! it is told to announce and reports what it sees, nothing more.

#[cfg(feature = "runtime")]
pub mod driver;
pub mod fsm;
pub mod rib;
pub mod wire;

#[cfg(feature = "runtime")]
pub use driver::{PeerConfig, RibEntry, RibKind, SessionInfo, Speaker, SpeakerConfig, SpeakerError};
pub use fsm::State;
pub use rib::Route;
pub use wire::{Community, GRACEFUL_SHUTDOWN, LargeCommunity};
