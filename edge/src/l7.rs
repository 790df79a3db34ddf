//! Runs the L7 proxy tier (`edge-l7`) for the services of this node's site.
//!
//! The topology carries the L7 settings in the L7 tier's own syntax (route
//! rules, pool settings, proxy-wide limits) as opaque tables; this module
//! assembles them, with the listeners and pools the topology implies, into
//! one `ProxyConfig` — the same function checks it in `edge validate`.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use edge_l7::{Backend, PassiveEvent, Proxy, ProxyConfig};
use edge_topology::Deployment;
use prometheus_client::registry::Registry;
use socket2::Type;
use tokio::sync::{mpsc, watch};
use toml::{Table, Value};

use crate::controller::{backend_set, listen_addrs};
use crate::sockets::bind;

/// One L7 listener of the node: its name in the proxy and where it listens.
pub struct ListenerPlan {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
}

/// The L7 configuration of `node`, or `None` if its site serves no L7
/// frontend. Relative certificate paths are resolved against `base_dir`.
pub fn proxy_config(
    dep: &Deployment,
    node: &str,
    base_dir: &Path,
) -> Result<Option<(ProxyConfig, Vec<ListenerPlan>)>> {
    let Some((site, _)) = dep.node(node) else {
        return Ok(None);
    };
    let mut listeners = Vec::new();
    let mut plans = Vec::new();
    let mut pools: BTreeSet<String> = BTreeSet::new();
    for svc in dep.services.values() {
        let Some(vip) = dep.vips.get(&svc.vip) else {
            continue;
        };
        if !vip.sites.contains(&site.name) {
            continue;
        }
        for f in &svc.l7 {
            let name = format!("{}:{}", svc.name, f.port);
            let mut routes: Vec<Value> = f.routes.iter().cloned().map(Value::Table).collect();
            for r in &f.routes {
                if let Some(p) = r
                    .get("action")
                    .and_then(|a| a.get("pool"))
                    .and_then(Value::as_str)
                {
                    pools.insert(p.to_string());
                }
            }
            // Whatever no rule takes goes to the service's pool; its answers
            // say which node served them (like HAProxy's X-Served-By habit),
            // which is how an operator sees ECMP at work.
            let mut fallback = Table::new();
            fallback.insert("name".into(), Value::String("default".into()));
            let mut action = Table::new();
            action.insert("pool".into(), Value::String(svc.pool.clone()));
            fallback.insert("action".into(), Value::Table(action));
            let mut served_by = Table::new();
            served_by.insert("name".into(), Value::String("x-edge-node".into()));
            served_by.insert("value".into(), Value::String(node.to_string()));
            let mut edits = Table::new();
            edits.insert("set".into(), Value::Array(vec![Value::Table(served_by)]));
            fallback.insert("response_headers".into(), Value::Table(edits));
            routes.push(Value::Table(fallback));
            pools.insert(svc.pool.clone());

            let mut l = Table::new();
            l.insert("name".into(), Value::String(name.clone()));
            l.insert("routes".into(), Value::Array(routes));
            if !f.tls.is_empty() {
                let certs = f
                    .tls
                    .iter()
                    .map(|c| {
                        let mut t = Table::new();
                        let names = c.names.iter().cloned().map(Value::String).collect();
                        t.insert("server_names".into(), Value::Array(names));
                        for (field, path) in [("cert", &c.cert), ("key", &c.key)] {
                            let mut src = Table::new();
                            let full = base_dir.join(path).display().to_string();
                            src.insert("path".into(), Value::String(full));
                            t.insert(field.into(), Value::Table(src));
                        }
                        Value::Table(t)
                    })
                    .collect();
                let mut tls = Table::new();
                tls.insert("certs".into(), Value::Array(certs));
                l.insert("tls".into(), Value::Table(tls));
            }
            listeners.push(Value::Table(l));
            plans.push(ListenerPlan {
                name,
                addrs: listen_addrs(vip)
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, f.port))
                    .collect(),
            });
        }
    }
    if listeners.is_empty() {
        return Ok(None);
    }
    let mut root = dep.l7.clone().unwrap_or_default();
    root.insert("listeners".into(), Value::Array(listeners));
    let pool_tables = pools
        .iter()
        .map(|p| {
            let mut t = dep.pools.get(p).and_then(|p| p.l7.clone()).unwrap_or_default();
            t.insert("name".into(), Value::String(p.clone()));
            Value::Table(t)
        })
        .collect();
    root.insert("pools".into(), Value::Array(pool_tables));
    let cfg: ProxyConfig = Value::Table(root)
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("L7 settings: {}", e.message()))?;
    Ok(Some((cfg, plans)))
}

pub struct L7 {
    pub proxy: Proxy,
    /// The pools the proxy knows (the controller pushes their members).
    pub pools: Vec<String>,
    pub events: mpsc::Receiver<PassiveEvent>,
    sockets: Vec<(String, std::net::TcpListener)>,
}

/// Builds the proxy and binds its listeners (serving starts with [`L7::serve`]).
pub fn start(dep: &Deployment, node: &str, base_dir: &Path, registry: &mut Registry) -> Result<Option<L7>> {
    let Some((cfg, plans)) = proxy_config(dep, node, base_dir)? else {
        return Ok(None);
    };
    let pools = cfg.pools.iter().map(|p| p.name.clone()).collect();
    let (proxy, events) = Proxy::new(cfg, registry).context("building the L7 proxy")?;
    let mut sockets = Vec::new();
    for p in plans {
        for addr in p.addrs {
            let s = bind(addr, Type::STREAM).with_context(|| format!("binding L7 {}/{addr}", p.name))?;
            tracing::info!(listener = %p.name, %addr, "L7 listener bound");
            sockets.push((p.name.clone(), s.into()));
        }
    }
    Ok(Some(L7 {
        proxy,
        pools,
        events,
        sockets,
    }))
}

impl L7 {
    /// Serves every listener until `stop` turns true.
    pub fn serve(&mut self, stop: &watch::Receiver<bool>, tasks: &mut tokio::task::JoinSet<()>) {
        for (name, sock) in self.sockets.drain(..) {
            let proxy = self.proxy.clone();
            let mut stop = stop.clone();
            tasks.spawn(async move {
                let shutdown = async move {
                    let _ = stop.changed().await;
                };
                if let Err(e) = proxy.serve_std(&name, sock, shutdown).await {
                    tracing::error!(listener = %name, error = %e, "L7 listener failed");
                }
            });
        }
    }
}

/// The backend sets of every pool the proxy knows, from the health view.
pub fn backend_sets(
    dep: &Deployment,
    node: &str,
    pools: &[String],
    view: &edge_topology::health::HealthSnapshot,
    ejected: &crate::outlier::Ejected,
) -> HashMap<String, Vec<Backend>> {
    pools
        .iter()
        .map(|p| {
            let set = backend_set(dep, node, p, view)
                .into_iter()
                .map(|b| {
                    let out = ejected.contains(&(p.clone(), b.name.clone()));
                    let mut be = Backend::new(b.name, b.addr)
                        .weight(b.weight)
                        .healthy(!b.draining && !out);
                    if b.backup {
                        be = be.backup();
                    }
                    be
                })
                .collect();
            (p.clone(), set)
        })
        .collect()
}
