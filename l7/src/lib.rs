//! `edge-l7`: the L7 proxy tier of an edge node (hyper + rustls).
//!
//! Owns TLS termination, the route table, upstream selection and persistence,
//! retries, WebSocket and gRPC forwarding.
//!
//! Must never depend on `bgp`, `l4`, `dns` or `labs`.

pub mod balance;
pub mod config;
pub mod error;
pub mod forward;
pub mod route;
