//! Runs the L4 stage (`edge-l4`) for the services of this node's site.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use edge_l4::userspace::{UserspaceConfig, UserspaceDataplane};
use edge_topology::{DataplaneKind, Deployment, Protocol};
use socket2::Type;

use crate::controller::listen_addrs;
use crate::sockets::bind;

/// The node's L4 dataplanes: the userspace proxy for `userspace`
/// listeners, nftables DNAT for `nftables` ones.
pub struct L4Stage {
    pub userspace: Option<UserspaceDataplane>,
    pub nft: Option<edge_l4::nftables::NftDataplane>,
}

impl L4Stage {
    /// Programs every dataplane with its share of the desired state.
    pub fn apply(
        &mut self,
        dep: &Deployment,
        node: &str,
        view: &edge_topology::health::HealthSnapshot,
    ) -> bool {
        let mut ok = true;
        let planes: [(Option<&mut dyn edge_l4::Dataplane>, DataplaneKind); 2] = [
            (
                self.userspace.as_mut().map(|d| d as &mut dyn edge_l4::Dataplane),
                DataplaneKind::Userspace,
            ),
            (
                self.nft.as_mut().map(|d| d as &mut dyn edge_l4::Dataplane),
                DataplaneKind::Nftables,
            ),
        ];
        for (dp, kind) in planes {
            let Some(dp) = dp else { continue };
            let desired = crate::controller::l4_state_of(dep, node, view, Some(kind));
            match dp.apply(&desired) {
                Ok(applied) => {
                    if !applied.is_noop() {
                        tracing::info!(
                            changes = applied.changes.len(),
                            dataplane = dp.name(),
                            "L4 state applied"
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, dataplane = dp.name(), "L4 apply failed");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Removes what the kernel dataplanes installed (shutdown).
    pub fn remove(&mut self) {
        if let Some(n) = &mut self.nft
            && let Err(e) = n.remove()
        {
            tracing::warn!(error = %e, "removing the nftables dataplane");
        }
    }
}

/// Binds every L4 listener of the node's site and sets up the dataplanes
/// that serve them, or `None` when the site has no L4 listener.
pub fn start(dep: &Deployment, node: &str) -> Result<Option<L4Stage>> {
    let Some((site, _)) = dep.node(node) else {
        return Ok(None);
    };
    let handle = tokio::runtime::Handle::try_current().context("the L4 stage needs the tokio runtime")?;
    let mut dp = UserspaceDataplane::new(handle, UserspaceConfig::default());
    let mut any = false;
    let mut nft = false;
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
                DataplaneKind::Nftables => {
                    // Kernel DNAT on VIP:port: nothing to bind.
                    nft = true;
                    if let Some(pool) = dep.pools.get(&svc.pool) {
                        for ip in listen_addrs(vip) {
                            let same = pool.backends.iter().any(|b| b.address.is_ipv4() == ip.is_ipv4());
                            if !same {
                                tracing::warn!(service = %svc.name, vip = %ip, port = l.port,
                                    "nftables cannot translate to backends of another address family: \
                                     this VIP address is not served on this port");
                            }
                        }
                    }
                    continue;
                }
                DataplaneKind::Xdp => bail!(
                    "service {}: the xdp dataplane is built and tested in edge-l4 but not yet run by edge; \
                     use `userspace` or `nftables`",
                    svc.name
                ),
                DataplaneKind::Ipvs => bail!(
                    "service {}: IPVS is not available on this kernel (no /proc/net/ip_vs); use `userspace` or `nftables`",
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
    if !any && !nft {
        return Ok(None);
    }
    // With several nodes in a site the backends' replies must come back to
    // the node that translated the flow, which only source NAT guarantees.
    let nft = nft.then(|| {
        edge_l4::nftables::NftDataplane::new(edge_l4::nftables::NftConfig {
            masquerade: site.nodes.len() > 1,
            ..Default::default()
        })
    });
    Ok(Some(L4Stage {
        userspace: any.then_some(dp),
        nft,
    }))
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

/// Installs the L4 connection hand-off (`site.handoff`) between this node
/// and the other node of its site: mid-connection TCP packets for the VIPs
/// that this node has no state for go to the peer's LAN address.
pub fn handoff(dep: &Deployment, node: &str) -> Result<Option<edge_l4::handoff::Handoff>> {
    let Some((site, me)) = dep.node(node) else {
        return Ok(None);
    };
    if !site.handoff {
        return Ok(None);
    }
    let on_lan = |ip: &std::net::IpAddr| site.lan.iter().any(|l| l.contains(ip));
    let peer = site
        .nodes
        .iter()
        .filter(|n| n.name != node)
        .flat_map(|n| n.addresses.iter().map(|a| a.addr()))
        .filter(|a| a.is_ipv4())
        .find(|a| on_lan(a))
        .context("hand-off: the peer node has no IPv4 address on the site LAN")?;
    let uplinks = uplink_interfaces(me.peers.iter().map(|p| p.local).collect())?;
    let services: Vec<edge_l4::ServiceKey> = crate::controller::l4_state(dep, node, &Default::default())
        .services
        .into_keys()
        .collect();
    let h = edge_l4::handoff::Handoff::install(
        edge_l4::handoff::HandoffConfig {
            uplinks: uplinks.clone(),
            peer,
        },
        &services,
    )
    .context("installing the L4 hand-off")?;
    tracing::info!(%peer, ?uplinks, "L4 connection hand-off installed");
    // Handed-off packets are routed on to the peer, which needs forwarding.
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "0") {
        tracing::warn!(
            "net.ipv4.ip_forward is 0: handed-off packets will be dropped; enable it for the hand-off"
        );
    }
    Ok(Some(h))
}

/// The interfaces that hold `addrs` (the node's side of its router links).
fn uplink_interfaces(addrs: Vec<std::net::IpAddr>) -> Result<Vec<String>> {
    let out = std::process::Command::new("ip")
        .args(["-j", "addr", "show"])
        .output()
        .context("running ip -j addr show")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing ip -j addr")?;
    let mut names = std::collections::BTreeSet::new();
    for link in v.as_array().into_iter().flatten() {
        let Some(name) = link["ifname"].as_str() else {
            continue;
        };
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let local = a["local"]
                .as_str()
                .and_then(|s| s.parse::<std::net::IpAddr>().ok());
            if local.is_some_and(|l| addrs.contains(&l)) {
                names.insert(name.to_string());
            }
        }
    }
    if names.is_empty() {
        bail!("hand-off: none of the node's peering addresses ({addrs:?}) is on an interface here");
    }
    Ok(names.into_iter().collect())
}
