//! Adapters between the topology and each tier's crate: they build a tier
//! from the deployment, bind its sockets and apply the controller's plan.

pub mod dns;
pub mod l4;
pub mod l7;
