//! Runs the L7 proxy tier (`edge-l7`) for the services of this node's site.
//!
//! The topology carries the L7 settings in the L7 tier's own syntax (route
//! rules, pool settings, proxy-wide limits) as opaque tables; this module
//! assembles them, with the listeners and pools the topology implies, into
//! one `ProxyConfig` — the same function checks it in `edge validate`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use edge_l7::{Backend, PassiveEvent, Proxy, ProxyConfig};
use edge_topology::Deployment;
use prometheus_client::registry::Registry;
use socket2::Type;
use tokio::sync::{mpsc, watch};
use toml::{Table, Value};

use crate::controller::{L7Member, listen_addrs};
use crate::sockets::{bind, bind_shared};

/// One L7 listener of the node: its name in the proxy and where it listens.
#[derive(Debug, Clone)]
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
    /// Per serving thread: its socket of every listener address.
    sockets: Sockets,
    threads: usize,
}

/// Per serving thread: (listener name, socket) for every listener address.
pub type Sockets = Vec<Vec<(String, std::net::TcpListener)>>;

/// Binds the sockets of `plans`: with `threads` > 1, one `SO_REUSEPORT`
/// socket per listener address and thread.
pub fn bind_listeners(plans: &[ListenerPlan], threads: usize) -> Result<Sockets> {
    let threads = threads.max(1);
    let mut sockets: Sockets = (0..threads).map(|_| Vec::new()).collect();
    for p in plans {
        for addr in &p.addrs {
            for per_thread in &mut sockets {
                let s = if threads == 1 {
                    bind(*addr, Type::STREAM)
                } else {
                    bind_shared(*addr)
                }
                .with_context(|| format!("binding L7 {}/{addr}", p.name))?;
                per_thread.push((p.name.clone(), s.into()));
            }
            tracing::info!(listener = %p.name, %addr, threads, "L7 listener bound");
        }
    }
    Ok(sockets)
}

/// Builds the proxy and binds its listeners (serving starts with
/// [`L7::serve`]).
pub fn start(
    dep: &Deployment,
    node: &str,
    base_dir: &Path,
    registry: &mut Registry,
    threads: usize,
) -> Result<Option<L7>> {
    let Some((cfg, plans)) = proxy_config(dep, node, base_dir)? else {
        return Ok(None);
    };
    let pools = cfg.pools.iter().map(|p| p.name.clone()).collect();
    let (proxy, events) = Proxy::new(cfg, registry).context("building the L7 proxy")?;
    let threads = threads.max(1);
    let sockets = bind_listeners(&plans, threads)?;
    Ok(Some(L7 {
        proxy,
        pools,
        events,
        sockets,
        threads,
    }))
}

impl L7 {
    /// Serving threads per listener.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Serves every listener bound at start until `stop` turns true, once
    /// `ready` turns true (the controller has handed the proxy its first
    /// backend sets; until then connections wait in the kernel's backlog
    /// instead of getting a 503).
    pub fn serve(
        &mut self,
        ready: &watch::Receiver<bool>,
        stop: &watch::Receiver<bool>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        let sockets = std::mem::take(&mut self.sockets);
        self.serve_sockets(sockets, ready, stop, tasks);
    }

    /// Serves `sockets` (bound with [`bind_listeners`]) until `stop` turns
    /// true or a reload removes their listener, on dedicated threads that
    /// each run a single-threaded runtime with their own socket of every
    /// listener (thread per core, as HAProxy's nbthread and nginx's
    /// workers do). Measured with `labs/bench/l7.sh`: the same proxy on a
    /// current-thread runtime serves ~40 % more requests per CPU-second than
    /// on a one-worker work-stealing runtime. Shared state (routes, pools,
    /// metrics, upstream connections) stays shared across the threads.
    pub fn serve_sockets(
        &self,
        sockets: Sockets,
        ready: &watch::Receiver<bool>,
        stop: &watch::Receiver<bool>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        for (i, sockets) in sockets.into_iter().enumerate() {
            if sockets.is_empty() {
                continue;
            }
            let proxy = self.proxy.clone();
            let stop = stop.clone();
            let ready = ready.clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name(format!("edge-l7-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "L7 thread: no runtime");
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let mut listeners = tokio::task::JoinSet::new();
                        for (name, sock) in sockets {
                            let proxy = proxy.clone();
                            let mut stop = stop.clone();
                            let mut ready = ready.clone();
                            listeners.spawn(async move {
                                tokio::select! {
                                    r = ready.wait_for(|r| *r) => if r.is_err() { return },
                                    _ = stop.changed() => return,
                                }
                                let shutdown = async move {
                                    let _ = stop.changed().await;
                                };
                                if let Err(e) = proxy.serve_std(&name, sock, shutdown).await {
                                    tracing::error!(listener = %name, error = %e, "L7 listener failed");
                                }
                            });
                        }
                        while listeners.join_next().await.is_some() {}
                    });
                    let _ = done_tx.send(());
                });
            match spawned {
                Ok(_) => {
                    tasks.spawn(async move {
                        let _ = done_rx.await;
                    });
                }
                Err(e) => tracing::error!(error = %e, "cannot start an L7 thread"),
            }
        }
    }
}

/// The controller's L7 members as the proxy's backend sets.
pub fn backend_sets(sets: &BTreeMap<String, Vec<L7Member>>) -> HashMap<String, Vec<Backend>> {
    sets.iter()
        .map(|(pool, members)| {
            let set = members
                .iter()
                .map(|m| {
                    let mut be = Backend::new(m.name.clone(), m.addr)
                        .weight(m.weight)
                        .healthy(m.healthy);
                    if m.backup {
                        be = be.backup();
                    }
                    be
                })
                .collect();
            (pool.clone(), set)
        })
        .collect()
}
