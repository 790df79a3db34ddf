//! The admin API's HTTP server: routes requests to the node state.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use edge_bgp::{RibEntry, RibKind};
use edge_topology::health::IntentOp;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::state::{NodeState, Verb};

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Largest request body the admin API reads (an intent is a few bytes).
const MAX_BODY: usize = 16 * 1024;

async fn handle(state: Arc<NodeState>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == Method::POST && req.uri().path() == "/intent" {
        use http_body_util::{BodyExt, Limited};
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return Ok(respond(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n"))),
        };
        let op: IntentOp = match serde_json::from_slice(&body) {
            Ok(op) => op,
            Err(e) => {
                return Ok(respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("bad intent: {e}\n"),
                ));
            }
        };
        return Ok(match state.apply_intent(op) {
            Ok(()) => respond(StatusCode::OK, "text/plain", "ok\n"),
            Err((code, msg)) => respond(code, "text/plain", format!("{msg}\n")),
        });
    }
    if req.method() == Method::POST && req.uri().path() == "/reload" {
        let dry_run = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "dry_run" || kv == "dry_run=1"));
        return Ok(match state.request(Verb::Reload { dry_run }).await {
            Ok(summary) => respond(StatusCode::OK, "text/plain", format!("ok: {summary}\n")),
            Err(e) => respond(StatusCode::UNPROCESSABLE_ENTITY, "text/plain", format!("{e}\n")),
        });
    }
    if req.method() == Method::POST && req.uri().path() == "/upgrade" {
        // `?binary=/path/to/edge`; without it, the binary this node runs.
        let binary = req.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "binary")
                .map(|(_, v)| std::path::PathBuf::from(v.into_owned()))
        });
        return Ok(match state.request(Verb::Upgrade { binary }).await {
            Ok(summary) => respond(StatusCode::OK, "text/plain", format!("ok: {summary}\n")),
            Err(e) => respond(StatusCode::UNPROCESSABLE_ENTITY, "text/plain", format!("{e}\n")),
        });
    }
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => respond(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/status") => match serde_json::to_vec_pretty(&state.status(&state.deployment())) {
            Ok(body) => respond(StatusCode::OK, "application/json", body),
            Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
        },
        (&Method::GET, "/bgp/sessions") => {
            let sessions = state.speaker().map(|s| s.sessions()).unwrap_or_default();
            json(&sessions)
        }
        (&Method::GET, "/bgp/routes") => bgp_routes(&state, req.uri().query().unwrap_or("")),
        (&Method::GET, "/dns/explain") => match state.dns.get() {
            None => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "this node runs no DNS server\n",
            ),
            Some(e) => match e.explain_query(req.uri().query().unwrap_or("")) {
                Ok(text) => respond(StatusCode::OK, "text/plain", text),
                Err(msg) => respond(StatusCode::BAD_REQUEST, "text/plain", format!("{msg}\n")),
            },
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

fn json<T: Serialize>(v: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(v) {
        Ok(body) => respond(StatusCode::OK, "application/json", body),
        Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
    }
}

/// `GET /bgp/routes?peer=IP&kind=advertised|received`: every peer (or one),
/// advertised routes by default.
fn bgp_routes(state: &NodeState, query: &str) -> Response<Full<Bytes>> {
    let mut peer = None;
    let mut kind = RibKind::Advertised;
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("peer", v)) => match v.parse::<std::net::IpAddr>() {
                Ok(ip) => peer = Some(ip),
                Err(_) => return respond(StatusCode::BAD_REQUEST, "text/plain", format!("bad peer {v:?}\n")),
            },
            Some(("kind", "advertised")) => kind = RibKind::Advertised,
            Some(("kind", "received")) => kind = RibKind::Received,
            _ => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("bad query {kv:?}\n"),
                );
            }
        }
    }
    let Some(sp) = state.speaker() else {
        return json(&BTreeMap::<String, Vec<RibEntry>>::new());
    };
    let peers: Vec<std::net::IpAddr> = match peer {
        Some(p) => vec![p],
        None => sp.sessions().iter().map(|s| s.peer).collect(),
    };
    let out: BTreeMap<String, Vec<RibEntry>> = peers
        .into_iter()
        .map(|p| (p.to_string(), sp.routes(p, kind)))
        .collect();
    json(&out)
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
