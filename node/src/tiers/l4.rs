//! Runs the L4 stage (`edge-l4`) for the services of this node's site.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use edge_l4::userspace::{UserspaceConfig, UserspaceDataplane};
use edge_topology::{DataplaneKind, Deployment, Protocol};
use socket2::Type;

use crate::controller::{L4Plan, listen_addrs};
use crate::sockets::bind;

/// The node's L4 dataplanes: the userspace proxy for `userspace`
/// listeners, nftables DNAT for `nftables` ones, the XDP program for `xdp`
/// ones.
pub struct L4Stage {
    pub userspace: Option<UserspaceDataplane>,
    /// How long established flows may outlive a drain (or a handover).
    drain_timeout: std::time::Duration,
    pub nft: Option<edge_l4::nftables::NftDataplane>,
    #[cfg(feature = "xdp")]
    pub xdp: Option<Xdp>,
}

/// The XDP dataplane and what its timer work needs.
#[cfg(feature = "xdp")]
pub struct Xdp {
    pub dp: edge_l4::xdp::XdpDataplane,
    /// The last state applied, re-applied while backends are unresolved.
    desired: Option<edge_l4::L4State>,
    last_refresh: std::time::Instant,
}

/// How often the XDP dataplane re-reads backend MACs from the neighbour
/// table (the program bypasses the kernel, so nothing else keeps them
/// fresh).
#[cfg(feature = "xdp")]
const NEIGHBOUR_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

impl L4Stage {
    /// How long established flows may outlive a drain or a handover.
    pub fn drain_timeout(&self) -> std::time::Duration {
        self.drain_timeout
    }

    /// Programs every dataplane with its share of the controller's plan.
    /// Returns whether every dataplane took it.
    pub fn apply(&mut self, plan: &L4Plan) -> bool {
        let mut ok = true;
        #[cfg(feature = "xdp")]
        if let Some(x) = &mut self.xdp {
            x.desired = Some(plan.xdp.clone());
        }
        let planes: Vec<(Option<&mut dyn edge_l4::Dataplane>, DataplaneKind)> = vec![
            (
                self.userspace.as_mut().map(|d| d as &mut dyn edge_l4::Dataplane),
                DataplaneKind::Userspace,
            ),
            (
                self.nft.as_mut().map(|d| d as &mut dyn edge_l4::Dataplane),
                DataplaneKind::Nftables,
            ),
            #[cfg(feature = "xdp")]
            (
                self.xdp
                    .as_mut()
                    .map(|x| &mut x.dp as &mut dyn edge_l4::Dataplane),
                DataplaneKind::Xdp,
            ),
        ];
        for (dp, kind) in planes {
            let Some(dp) = dp else { continue };
            let Some(desired) = plan.of(kind) else { continue };
            match dp.apply(desired) {
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

    /// Timer work of the kernel dataplanes, called about once a second:
    /// the XDP program's drain deadlines, backends still without a MAC, and
    /// a periodic neighbour refresh. Blocking (it runs `ip`).
    pub fn tick(&mut self) {
        #[cfg(feature = "xdp")]
        if let Some(x) = &mut self.xdp {
            let now = std::time::Instant::now();
            let referenced: std::collections::BTreeSet<std::net::IpAddr> = x
                .desired
                .iter()
                .flat_map(|d| d.services.values())
                .flat_map(|s| s.backends.keys().map(|a| a.ip()))
                .collect();
            if let Err(e) = x.dp.expire_drains(now, &referenced) {
                tracing::warn!(error = %e, "xdp drain expiry failed");
            }
            if !x.dp.unresolved().is_empty()
                && let Some(d) = &x.desired
                && let Err(e) = edge_l4::Dataplane::apply(&mut x.dp, d)
            {
                tracing::warn!(error = %e, "xdp: retrying unresolved backends failed");
            }
            if now.duration_since(x.last_refresh) >= NEIGHBOUR_REFRESH {
                x.last_refresh = now;
                match x.dp.refresh_neighbours() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(changed = n, "xdp: backend MACs refreshed"),
                    Err(e) => tracing::warn!(error = %e, "xdp neighbour refresh failed"),
                }
            }
        }
    }

    /// Prometheus lines of the dataplanes' own counters.
    pub fn metrics(&self, out: &mut String) {
        if let Some(dp) = &self.userspace {
            use std::fmt::Write;
            let stats = dp.stats();
            type Get = fn(&edge_l4::userspace::ServiceStats) -> u64;
            let series: [(&str, &str, &str, Get); 5] = [
                (
                    "edge_l4_flows_opened",
                    "counter",
                    "Flows placed on a backend by the userspace proxy.",
                    |s| s.flows_opened,
                ),
                (
                    "edge_l4_rate_limited",
                    "counter",
                    "New flows refused by the per-source limit.",
                    |s| s.rate_limited,
                ),
                (
                    "edge_l4_no_backend",
                    "counter",
                    "New flows refused because no backend takes new flows.",
                    |s| s.no_backend,
                ),
                (
                    "edge_l4_backend_errors",
                    "counter",
                    "Backend connects that failed or timed out.",
                    |s| s.backend_errors,
                ),
                (
                    "edge_l4_active_flows",
                    "gauge",
                    "Open flows through the userspace proxy.",
                    |s| s.active.values().sum(),
                ),
            ];
            for (name, kind, help, get) in series {
                // OpenMetrics: a counter family's samples end in _total.
                let suffix = if kind == "counter" { "_total" } else { "" };
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (key, st) in &stats {
                    let _ = writeln!(out, "{name}{suffix}{{service=\"{key}\"}} {}", get(st));
                }
            }
        }
        #[cfg(feature = "xdp")]
        if let Some(x) = &self.xdp {
            use std::fmt::Write;
            match x.dp.stats() {
                Ok(s) => {
                    let _ = writeln!(
                        out,
                        "# HELP edge_l4_xdp_packets Packets seen by the XDP program, by verdict.\n\
                         # TYPE edge_l4_xdp_packets counter"
                    );
                    let rows = [
                        ("pass_other", s.pass_other),
                        ("pass_unparsed", s.pass_unparsed),
                        ("pass_no_backend", s.pass_no_backend),
                        ("pass_unresolved", s.pass_unresolved),
                        ("tx", s.tx),
                        ("redirect", s.redirect),
                        ("conn_hit", s.conn_hit),
                        ("conn_new", s.conn_new),
                        ("icmp_too_big", s.icmp_too_big),
                    ];
                    for (k, c) in rows {
                        let _ = writeln!(out, "edge_l4_xdp_packets_total{{verdict=\"{k}\"}} {}", c.packets);
                    }
                    let _ = writeln!(
                        out,
                        "# HELP edge_l4_xdp_bytes Bytes seen by the XDP program, by verdict.\n\
                         # TYPE edge_l4_xdp_bytes counter"
                    );
                    for (k, c) in rows {
                        let _ = writeln!(out, "edge_l4_xdp_bytes_total{{verdict=\"{k}\"}} {}", c.bytes);
                    }
                    let _ = writeln!(
                        out,
                        "# HELP edge_l4_xdp_flows Entries in the XDP connection table.\n\
                         # TYPE edge_l4_xdp_flows gauge\nedge_l4_xdp_flows {}",
                        x.dp.conn_count()
                    );
                }
                Err(e) => tracing::warn!(error = %e, "reading xdp counters"),
            }
        }
        let _ = out;
    }

    /// Removes what the kernel dataplanes installed (shutdown).
    pub fn remove(&mut self) {
        if let Some(n) = &mut self.nft
            && let Err(e) = n.remove()
        {
            tracing::warn!(error = %e, "removing the nftables dataplane");
        }
        // Dropping the XDP dataplane detaches its program.
        #[cfg(feature = "xdp")]
        if self.xdp.take().is_some() {
            tracing::info!("xdp program detached");
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
    let l4 = &dep.l4;
    let table_size = edge_l4::maglev::TableSize::new(l4.table_size).context("l4.table_size")?;
    let mut dp = UserspaceDataplane::new(
        handle,
        UserspaceConfig {
            table_size,
            drain_timeout: l4.drain_timeout,
            source_limit: l4.source_limit.map(|s| edge_l4::userspace::SourceLimit {
                per_second: s.per_second,
                burst: s.burst,
                ..Default::default()
            }),
            ..UserspaceConfig::default()
        },
    );
    let mut any = false;
    let mut nft = false;
    let mut xdp = false;
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
                DataplaneKind::Xdp => {
                    // The program on the uplinks takes VIP:port before the
                    // stack: nothing to bind.
                    if cfg!(not(feature = "xdp")) {
                        bail!(
                            "service {}: this edge binary was built without the `xdp` feature; \
                             rebuild with it (needs clang-14) or use `userspace` or `nftables`",
                            svc.name
                        );
                    }
                    xdp = true;
                    continue;
                }
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
    if !any && !nft && !xdp {
        return Ok(None);
    }
    // Half-open SYN floods are the kernel's to absorb (SYN cookies) before
    // the proxy ever sees a connection; see l4/README.md "SYN floods".
    if any && std::fs::read_to_string("/proc/sys/net/ipv4/tcp_syncookies").is_ok_and(|v| v.trim() == "0") {
        tracing::warn!(
            "net.ipv4.tcp_syncookies is 0: a SYN flood can fill the L4 listeners' SYN queues and lock \
             real clients out; set it to 1"
        );
    }
    // With several nodes in a site the backends' replies must come back to
    // the node that translated the flow, which only source NAT guarantees.
    let nft = nft.then(|| {
        edge_l4::nftables::NftDataplane::new(edge_l4::nftables::NftConfig {
            masquerade: site.nodes.len() > 1,
            ..Default::default()
        })
    });
    #[cfg(feature = "xdp")]
    let xdp = if xdp {
        let (_, me) = dep.node(node).context("node vanished")?;
        let uplinks = uplink_interfaces(me.peers.iter().map(|p| p.local).collect())
            .context("finding the uplinks for the xdp program")?;
        let config = edge_l4::xdp::XdpConfig {
            interfaces: uplinks.clone(),
            mode: match l4.xdp_mode {
                edge_topology::XdpMode::Generic => edge_l4::xdp::AttachMode::Generic,
                edge_topology::XdpMode::Native => edge_l4::xdp::AttachMode::Native,
                edge_topology::XdpMode::Auto => edge_l4::xdp::AttachMode::Auto,
            },
            table_size,
            drain_timeout: l4.drain_timeout,
            ..Default::default()
        };
        let dp = edge_l4::xdp::XdpDataplane::new(config)
            .context("loading the xdp program (needs root or CAP_BPF+CAP_NET_ADMIN)")?;
        tracing::info!(?uplinks, mode = ?l4.xdp_mode, "xdp dataplane loaded");
        Some(Xdp {
            dp,
            desired: None,
            last_refresh: std::time::Instant::now(),
        })
    } else {
        None
    };
    Ok(Some(L4Stage {
        drain_timeout: l4.drain_timeout,
        userspace: any.then_some(dp),
        nft,
        #[cfg(feature = "xdp")]
        xdp,
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
    // Only the proxy's flows need handing off: kernel dataplanes (XDP,
    // nftables) place a flow by Maglev on whichever node it arrives.
    let services: Vec<edge_l4::ServiceKey> =
        crate::controller::l4_state_of(dep, node, &Default::default(), Some(DataplaneKind::Userspace))
            .services
            .into_keys()
            .collect();
    if services.is_empty() {
        return Ok(None);
    }
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
