//! `edge-topology`: the declarative model of a whole edge deployment.
//!
//! Owns the topology file schema (sites, routers, edge nodes, VIPs, services,
//! backend pools, DNS zones and GSLB records, the health bus), its loose serde
//! input form and the validated model built from it, with every error
//! reported at once together with its field path.
//!
//! Must never depend on tokio, sockets or any other edge crate: it is the
//! shared vocabulary every other crate builds on.
