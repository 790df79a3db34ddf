//! `edge-dns`: the authoritative GSLB DNS server of an edge node.
//!
//! Owns the steering policies (pure functions over a health view), the zone
//! handler that answers from static zones and GSLB records, and the server that
//! runs on sockets it is given.
//!
//! Must never depend on `bgp`, `l4`, `l7` or `labs`.
