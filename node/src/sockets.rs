//! Listening sockets for service addresses (VIPs).
//!
//! Bound with `IP_FREEBIND`: a VIP reaches `lo` only when the controller
//! decides to serve it, but the node binds its listeners at start-up, so
//! that a port clash is reported at once and a VIP that comes and goes does
//! not need its sockets rebound.

use std::net::SocketAddr;

use anyhow::Result;
use socket2::{Domain, Protocol, Socket, Type};

/// A non-blocking socket bound to `addr` (listening, for `Type::STREAM`).
pub fn bind(addr: SocketAddr, ty: Type) -> Result<Socket> {
    bind_with(addr, ty, false)
}

/// One of several TCP listeners on the same address (`SO_REUSEPORT`): the
/// kernel spreads new connections over them, one per serving thread.
pub fn bind_shared(addr: SocketAddr) -> Result<Socket> {
    bind_with(addr, Type::STREAM, true)
}

fn bind_with(addr: SocketAddr, ty: Type, reuse_port: bool) -> Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let proto = if ty == Type::DGRAM {
        Protocol::UDP
    } else {
        Protocol::TCP
    };
    let s = Socket::new(domain, ty, Some(proto))?;
    if ty == Type::STREAM {
        // Restarts must not wait for TIME_WAIT; for UDP it would let two
        // servers share the port silently, so not there.
        s.set_reuse_address(true)?;
    }
    if addr.is_ipv4() {
        s.set_freebind_v4(true)?;
    } else {
        s.set_freebind_v6(true)?;
        s.set_only_v6(true)?;
    }
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    if ty == Type::STREAM {
        s.listen(1024)?;
    }
    Ok(s)
}
