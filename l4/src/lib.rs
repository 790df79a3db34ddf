//! `edge-l4`: the L4 stage of an edge node.
//!
//! Owns Maglev consistent hashing and the other L4 schedulers, the desired L4
//! state with its pure diff, and the `Dataplane` trait with its backends
//! (userspace proxy, XDP, nftables).
//!
//! Must never depend on `bgp`, `dns`, `l7`, `labs` or hyper.
