//! The local admin API: `/healthz`, `/status` (JSON) and `/metrics`
//! (Prometheus text format), served with hyper on the node's admin address.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use edge_topology::Deployment;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
    site: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VipLabels {
    vip: String,
}

/// What the admin API reports about this node.
pub struct NodeState {
    pub deployment: Arc<Deployment>,
    pub node: String,
    pub site: String,
    pub started: Instant,
    registry: Registry,
    uptime: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl NodeState {
    pub fn new(deployment: Arc<Deployment>, node: String, site: String, started: Instant) -> Self {
        let mut registry = Registry::with_prefix("edge");
        let info = Family::<NodeLabels, Gauge>::default();
        info.get_or_create(&NodeLabels {
            node: node.clone(),
            site: site.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
        .set(1);
        registry.register("node_info", "Static facts about this edge node", info);
        let configured = Family::<VipLabels, Gauge>::default();
        for v in deployment.vips_of_site(&site) {
            configured
                .get_or_create(&VipLabels { vip: v.name.clone() })
                .set(1);
        }
        registry.register(
            "vip_configured",
            "VIPs this node's site is configured to announce",
            configured,
        );
        let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register("uptime_seconds", "Seconds since the node started", uptime.clone());
        NodeState {
            deployment,
            node,
            site,
            started,
            registry,
            uptime,
        }
    }

    fn status(&self) -> Status<'_> {
        let (_, n) = self.deployment.node(&self.node).unzip();
        Status {
            node: &self.node,
            site: &self.site,
            deployment: &self.deployment.name,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            router_id: n.map(|n| n.router_id.to_string()).unwrap_or_default(),
            asn: n.map(|n| n.asn).unwrap_or_default(),
            vips: self
                .deployment
                .vips_of_site(&self.site)
                .map(|v| VipStatus {
                    name: &v.name,
                    prefixes: v.prefixes.iter().map(|p| p.to_string()).collect(),
                })
                .collect(),
            peers: n
                .map(|n| {
                    n.peers
                        .iter()
                        .map(|p| PeerStatus {
                            router: &p.router,
                            remote: p.remote.to_string(),
                            remote_asn: p.router_asn,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn metrics(&self) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::new();
        // Encoding into a String cannot fail for want of space; an error here
        // would be a bug in a metric's encoder, reported in the body.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            out = format!("# encoding failed: {e}\n");
        }
        out
    }
}

#[derive(Serialize)]
struct Status<'a> {
    node: &'a str,
    site: &'a str,
    deployment: &'a str,
    uptime_seconds: f64,
    router_id: String,
    asn: u32,
    vips: Vec<VipStatus<'a>>,
    peers: Vec<PeerStatus<'a>>,
}

#[derive(Serialize)]
struct VipStatus<'a> {
    name: &'a str,
    prefixes: Vec<String>,
}

#[derive(Serialize)]
struct PeerStatus<'a> {
    router: &'a str,
    remote: String,
    remote_asn: u32,
}

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(state: Arc<NodeState>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => respond(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/status") => match serde_json::to_vec_pretty(&state.status()) {
            Ok(body) => respond(StatusCode::OK, "application/json", body),
            Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
        },
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics(),
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    };
    Ok(resp)
}

/// Serves the admin API until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<NodeState>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Accept errors (EMFILE and the like) are transient: log and go on.
                        tracing::warn!(error = %e, "admin accept failed");
                        continue;
                    }
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        tracing::debug!(%peer, error = %e, "admin connection ended with an error");
                    }
                });
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}
