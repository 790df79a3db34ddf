//! `edge-labs`: builds network-namespace labs with real routers.
//!
//! Owns the namespace/veth/bridge builder driven by topology files and the
//! FRR, BIRD and GoBGP launchers. Used by tests and by `edge lab`.
//!
//! Product crates (`bgp`, `dns`, `l4`, `l7`, `topology`) never depend on it.
