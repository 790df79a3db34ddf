//! Runs the L4 stage (`edge-l4`) for the services of this node's site.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use edge_l4::userspace::{UserspaceConfig, UserspaceDataplane};
use edge_topology::{DataplaneKind, Deployment, Protocol};
use socket2::Type;

use crate::controller::listen_addrs;
use crate::sockets::bind;

/// Binds every L4 listener of the node's site and returns the dataplane that
/// serves them, or `None` when the site has no L4 listener.
pub fn start(dep: &Deployment, node: &str) -> Result<Option<UserspaceDataplane>> {
    let Some((site, _)) = dep.node(node) else {
        return Ok(None);
    };
    let handle = tokio::runtime::Handle::try_current().context("the L4 stage needs the tokio runtime")?;
    let mut dp = UserspaceDataplane::new(handle, UserspaceConfig::default());
    let mut any = false;
    for svc in dep.services.values() {
        let Some(vip) = dep.vips.get(&svc.vip) else {
            continue;
        };
        if !vip.sites.contains(&site.name) {
            continue;
        }
        for l in &svc.l4 {
            match l.dataplane {
                DataplaneKind::Userspace => {}
                other => bail!(
                    "service {}: dataplane {other:?} is not available in this build; use `userspace`",
                    svc.name
                ),
            }
            for ip in listen_addrs(vip) {
                let addr = SocketAddr::new(ip, l.port);
                match l.protocol {
                    Protocol::Tcp => {
                        let s = bind(addr, Type::STREAM).with_context(|| format!("binding L4 tcp/{addr}"))?;
                        dp.register_tcp_listener(s.into())
                            .with_context(|| format!("registering tcp/{addr}"))?;
                    }
                    Protocol::Udp => {
                        let s = bind(addr, Type::DGRAM).with_context(|| format!("binding L4 udp/{addr}"))?;
                        dp.register_udp_socket(s.into())
                            .with_context(|| format!("registering udp/{addr}"))?;
                    }
                }
                tracing::info!(service = %svc.name, %addr, protocol = ?l.protocol, "L4 listener bound");
                any = true;
            }
        }
    }
    Ok(any.then_some(dp))
}

/// Open flows (TCP connections, UDP flows) and flows opened since start,
/// over every service of the dataplane.
pub fn load(dp: &UserspaceDataplane) -> (u64, u64) {
    let stats = dp.stats();
    let active = stats
        .keys()
        .filter_map(|k| dp.active_flows(k))
        .map(|n| n as u64)
        .sum();
    let opened = stats.values().map(|s| s.flows_opened).sum();
    (active, opened)
}
