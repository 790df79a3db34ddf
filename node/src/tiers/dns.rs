//! Runs the GSLB DNS server (`edge-dns`) on the node's DNS VIP addresses.
//!
//! One UDP socket and one TCP listener per address of the DNS VIP (hickory
//! replies from the socket's own address, so no wildcard), bound with
//! `IP_FREEBIND`: the VIP reaches `lo` only once the controller decides to
//! serve it, and the sockets must exist before that.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use edge_dns::{DnsOptions, DnsServer, DnsView, GeoDb, RecordType, ViewHandle};
use edge_topology::Deployment;
use prometheus_client::registry::Registry;
use socket2::Type;

use crate::sockets::bind;

pub struct Dns {
    server: DnsServer,
}

/// Explains queries with the same code and the same authority the server
/// answers with, against the view it currently serves (a reload changes
/// both at once).
#[derive(Clone)]
pub struct Explainer(edge_dns::DnsExplainer);

impl Explainer {
    /// `name=..&type=..&client=..[&ecs=..]` → the decision trace.
    pub fn explain_query(&self, query: &str) -> Result<String, String> {
        let (mut name, mut qtype, mut client, mut ecs) = (None, "A".to_string(), None, None);
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            match kv.split_once('=') {
                Some(("name", v)) => name = Some(v.to_string()),
                Some(("type", v)) => qtype = v.to_ascii_uppercase(),
                Some(("client", v)) => {
                    client = Some(
                        v.parse::<IpAddr>()
                            .map_err(|_| format!("client {v:?} is not an address"))?,
                    )
                }
                Some(("ecs", v)) => {
                    ecs = Some(
                        v.parse::<ipnet::IpNet>()
                            .map_err(|_| format!("ecs {v:?} is not a subnet"))?,
                    )
                }
                _ => return Err(format!("unexpected query part {kv:?}")),
            }
        }
        let mut name = name.ok_or("name is required")?;
        // Like dig: a name on the command line is absolute.
        if !name.ends_with('.') {
            name.push('.');
        }
        let client = client.ok_or("client is required")?;
        let qtype: RecordType = qtype
            .parse()
            .map_err(|_| format!("unknown query type {qtype:?}"))?;
        self.0
            .explain(&name, qtype, client, ecs)
            .map(|o| o.to_string())
            .map_err(|e| e.to_string())
    }
}

impl Dns {
    pub fn view_handle(&self) -> ViewHandle {
        self.server.view_handle()
    }

    pub fn explainer(&self) -> Explainer {
        Explainer(self.server.explainer())
    }

    /// Applies the DNS part of a new deployment (zones, records, GSLB
    /// names, GeoIP database, steering and RRL settings) in one swap;
    /// on an error the server keeps answering as before. Blocking: it
    /// builds the zones and reads the GeoIP file.
    pub fn reload(
        &self,
        dep: &Deployment,
        base_dir: &Path,
    ) -> Result<edge_dns::DnsChanges, edge_dns::DnsError> {
        self.server
            .reload_from_dir(dep, base_dir, DnsOptions::default().with_deployment(dep))
    }

    /// The resolvers that recently queried this server.
    pub fn resolvers(&self) -> Arc<edge_dns::resolvers::RecentResolvers> {
        self.server.resolvers()
    }

    pub async fn shutdown(&mut self) {
        if let Err(e) = self.server.shutdown().await {
            tracing::warn!(error = %e, "DNS server shutdown");
        }
    }
}

/// Starts the DNS server if the topology has a `[dns]` section with a VIP.
pub async fn start(dep: &Deployment, base_dir: &Path, registry: &mut Registry) -> Result<Option<Dns>> {
    let Some(cfg) = &dep.dns else {
        return Ok(None);
    };
    let Some(vip) = cfg.vip.as_ref().and_then(|v| dep.vips.get(v)) else {
        tracing::info!("no DNS VIP configured: the DNS server does not run");
        return Ok(None);
    };
    let geo = GeoDb::for_deployment(dep, base_dir).context("opening the GeoIP database")?;
    let options = DnsOptions::default().with_deployment(dep);
    let mut server = DnsServer::new(dep, geo, DnsView::default(), options, Some(registry))
        .context("building the DNS server")?;
    for prefix in &vip.prefixes {
        let addr = SocketAddr::new(prefix.addr(), cfg.port);
        let udp = bind(addr, Type::DGRAM).with_context(|| format!("binding DNS udp/{addr}"))?;
        let tcp = bind(addr, Type::STREAM).with_context(|| format!("binding DNS tcp/{addr}"))?;
        server.serve_udp(tokio::net::UdpSocket::from_std(udp.into())?);
        server.serve_tcp(tokio::net::TcpListener::from_std(tcp.into())?);
        tracing::info!(%addr, "DNS server listening");
    }
    Ok(Some(Dns { server }))
}
