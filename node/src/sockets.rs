//! Listening sockets for service addresses (VIPs).
//!
//! Bound with `IP_FREEBIND`: a VIP reaches `lo` only when the controller
//! decides to serve it, but the node binds its listeners at start-up, so
//! that a port clash is reported at once and a VIP that comes and goes does
//! not need its sockets rebound.
//!
//! Every socket bound here is also kept, as a duplicate, in a process-wide
//! inventory, so that `edge upgrade` can hand all of them to the next
//! process (see `crate::upgrade`); a process started by an upgrade takes
//! the sockets it inherited from the inventory instead of binding new ones,
//! so no SYN and no query is refused while one process replaces the other.
//! The inventory is process-wide because the sockets are: like systemd's
//! `LISTEN_FDS`, there is one set per process.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

/// What a listening socket is, as the handover names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketKey {
    pub addr: SocketAddr,
    /// TCP (`true`) or UDP.
    pub stream: bool,
    /// One of several `SO_REUSEPORT` sockets on the address.
    pub shared: bool,
}

/// Sockets this process serves on (duplicates) and sockets it inherited
/// and has not taken yet.
#[derive(Default)]
struct Inventory {
    bound: Vec<(SocketKey, OwnedFd)>,
    inherited: Vec<(SocketKey, OwnedFd)>,
}

static INVENTORY: Mutex<Inventory> = Mutex::new(Inventory {
    bound: Vec::new(),
    inherited: Vec::new(),
});

fn inventory() -> std::sync::MutexGuard<'static, Inventory> {
    INVENTORY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands sockets received from the previous process to later binds.
pub fn inherit(sockets: Vec<(SocketKey, OwnedFd)>) {
    inventory().inherited.extend(sockets);
}

/// Duplicates of every socket this process serves on, for the next one.
pub fn for_handover() -> std::io::Result<Vec<(SocketKey, OwnedFd)>> {
    inventory()
        .bound
        .iter()
        .map(|(k, fd)| Ok((*k, fd.try_clone()?)))
        .collect()
}

/// Inherited sockets no bind asked for (closed once the node is built:
/// the new configuration no longer serves there).
pub fn drop_unclaimed() -> usize {
    let mut inv = inventory();
    let n = inv.inherited.len();
    inv.inherited.clear();
    n
}

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
    let key = SocketKey {
        addr,
        stream: ty == Type::STREAM,
        shared: reuse_port,
    };
    let inherited = {
        let mut inv = inventory();
        let i = inv.inherited.iter().position(|(k, _)| *k == key);
        i.map(|i| inv.inherited.swap_remove(i).1)
    };
    let s = match inherited {
        Some(fd) => {
            let s = Socket::from(fd);
            s.set_nonblocking(true)?;
            tracing::debug!(%addr, stream = key.stream, "socket inherited from the previous process");
            s
        }
        None => fresh(addr, ty, reuse_port)?,
    };
    let dup = s.try_clone()?;
    inventory().bound.push((key, dup.into()));
    Ok(s)
}

fn fresh(addr: SocketAddr, ty: Type, reuse_port: bool) -> Result<Socket> {
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
