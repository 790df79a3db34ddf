//! `edge-bgp`: the BGP speaker of an edge node.
//!
//! Owns the wire codec (a fixed, vendored zettabgp), the sans-IO session state
//! machine (RFC 4271 §8), the per-peer Adj-RIB-In/Out and the tokio driver that
//! carries the state machine's outputs to real sockets and timers.
//!
//! Must never depend on `l4`, `l7`, `dns`, `labs` or netlink: it announces what
//! it is told to announce and reports what it sees, nothing more.
//!
//! Modules:
//! - [`wire`]: framing check, typed [`wire::Message`], errors that map to
//!   NOTIFICATIONs, RFC 7606 handling of malformed UPDATEs.
//! - [`fsm`]: the sans-IO session, `Session::handle(now, Input) -> Vec<Output>`.
//! - [`rib`]: [`Route`], per-peer Adj-RIB-Out diffs and Adj-RIB-In.
//! - `driver` (feature `runtime`, on by default): [`Speaker`], the tokio tasks.
//!   `cargo check -p edge-bgp --no-default-features` builds without tokio.
//!
//! ```no_run
//! # async fn demo() -> Result<(), edge_bgp::SpeakerError> {
//! use edge_bgp::{Community, PeerConfig, Route, Speaker, SpeakerConfig};
//! use std::net::Ipv4Addr;
//! use std::time::Duration;
//!
//! let mut router = PeerConfig::new("198.18.11.1".parse().unwrap(), 65000);
//! router.hold_time = 3;
//! let speaker = Speaker::start(SpeakerConfig {
//!     local_as: 65010,
//!     router_id: Ipv4Addr::new(198, 18, 11, 2),
//!     listen: Some("198.18.11.2:179".parse().unwrap()),
//!     peers: vec![router],
//! })
//! .await?;
//! // The whole desired set each time; only the difference is sent.
//! speaker.announce(
//!     [Route::new("203.0.113.10/32".parse().unwrap())
//!         .with_med(50)
//!         .with_community(Community::new(65000, 100))]
//!     .into_iter()
//!     .collect(),
//! );
//! for s in speaker.sessions() {
//!     println!("{} {:?} up {:?}", s.peer, s.state, s.uptime);
//! }
//! speaker.drain(Duration::from_secs(5)).await; // RFC 8326, then withdraw
//! speaker.shutdown().await; // Cease to every peer
//! # Ok(()) }
//! ```
//!
//! Peers change at run time with [`Speaker::set_peers`] (only the affected
//! sessions are reset). With [`GracefulRestart`] on a peer, an upgrade is
//! [`Speaker::abandon`] in the old process and
//! [`Speaker::start_with_options`] with `restarting: true` in the new one
//! (RFC 4724); see [`driver`].

#[cfg(feature = "runtime")]
pub mod driver;
pub mod fsm;
pub mod rib;
#[cfg(feature = "runtime")]
pub mod sockopt;
pub mod wire;

#[cfg(feature = "runtime")]
pub use driver::{
    ChangedPeer, PeerChanges, PeerConfig, RibEntry, RibKind, SessionInfo, Speaker, SpeakerConfig,
    SpeakerError, SpeakerOptions,
};
pub use fsm::{GracefulRestart, State};
pub use rib::Route;
pub use wire::{Community, GRACEFUL_SHUTDOWN, GracefulRestartCap, GracefulRestartFamily, LargeCommunity};
