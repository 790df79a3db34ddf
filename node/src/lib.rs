//! `edge-node`: one edge node as a library — every tier composed, the
//! health subsystem, the controller and the admin API.
//!
//! Owns:
//! * [`node`]: [`Node::build`] (load and check the topology, bind every
//!   socket, build each tier), [`Node::spawn`], [`Node::reload`] and
//!   [`Node::shutdown`]; [`run`] wraps them for `edge run`;
//! * [`controller`]: the pure derivations and the sans-IO controller state
//!   machine that turns configuration + health into one plan per step;
//! * [`health`]: active checks, the reporter, the health bus (local and
//!   gossip), passive outlier detection and the client latency prober;
//! * [`admin`]: the admin API server (status, metrics, operator verbs);
//! * [`tiers`]: the adapters from the topology to the BGP, DNS, L4 and L7
//!   crates; [`kernel`] and [`sockets`]: `lo` addresses and listeners.
//!
//! Must never depend on: the lab harness (`edge-labs`), command-line
//! parsing, or anything that prints for a human; those are the binary's.
//! Protocol logic stays in the tier crates: this crate composes them.

pub mod admin;
pub mod controller;
pub mod health;
pub mod kernel;
pub mod node;
pub mod reload;
pub mod sockets;
pub mod tiers;
pub mod upgrade;

pub use node::{Node, NodeOptions, load_config, run};

/// Checks the L7 settings of every node of `dep` as each node would build
/// its proxy (the part of validation the topology crate cannot do, because
/// the L7 syntax belongs to the L7 tier). Returns one line per error.
pub fn validate_l7(dep: &edge_topology::Deployment, base_dir: &std::path::Path) -> Vec<String> {
    let mut errors = Vec::new();
    for n in dep.nodes() {
        match tiers::l7::proxy_config(dep, &n.name, base_dir) {
            Ok(Some((cfg, _))) => {
                if let Err(e) = cfg.validate() {
                    errors.push(format!("node {}: L7: {e}", n.name));
                }
            }
            Ok(None) => {}
            Err(e) => errors.push(format!("node {}: {e:#}", n.name)),
        }
    }
    errors
}
