//! The request path: rate limit, route, forwarding headers, backend
//! selection with persistence, retries, upgrades, metrics and access log.
//!
//! ```text
//!  client ─► limits ─► RouteTable ─► action ─┬─ deny / redirect ─► response
//!                                            └─ pool ─► PoolView (ArcSwap load)
//!                                                 ├─ sticky cookie / Selector
//!                                                 ├─ hyper client (pooled) ──► backend
//!                                                 ├─ retry elsewhere (budget)
//!                                                 └─ 101 ─► byte tunnel task
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderName, HeaderValue, LOCATION, SET_COOKIE, UPGRADE,
};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use ring::hmac;
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::balance::{BackendStats, PickCtx, stable_hash, thread_rng};
use crate::body::{self, Guarded, Limited, ProxyBody};
use crate::client::{Buffered, RespBody};
use crate::client::{UpstreamClient, UpstreamError};
use crate::config::{Balance, HashKey, Limits, PoolConfig, UpstreamProtocol};
use crate::error::{ErrorSource, ProxyErrorKind};
use crate::forward::{
    ClientInfo, ConnForwarding, apply_forwarding, effective_client, new_request_id_value, strip_hop_by_hop,
};
use crate::metrics::{Metrics, PoolLabels, UpstreamErrorLabels};
use crate::ratelimit::RateLimiter;
use crate::route::{
    Action, CompiledRule, RequestInfo, RouteTable, canonical_ip, cookie, normalize_host, normalize_path,
};
use crate::tls::SniResolver;
use crate::upstream::{PoolView, RetryBudget, Upstreams};

/// A backend failure seen on the request path, for the node's outlier
/// detection. Sent best-effort: if the consumer lags, events are dropped
/// (and counted) rather than slowing requests down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveEvent {
    pub pool: String,
    pub backend: String,
    pub address: SocketAddr,
    pub kind: PassiveKind,
    /// Successful responses from this backend since its previous failure
    /// event. Successes are not sent one by one (that would flood the
    /// channel); this count lets outlier detection tell consecutive failures
    /// (`0`) from isolated ones and estimate success rates.
    pub preceding_successes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveKind {
    ConnectFailure,
    ConnectTimeout,
    /// Connection broke after the request was sent.
    Reset,
    /// No response headers within the pool's request timeout.
    Timeout,
    /// A 5xx response.
    ServerError(u16),
}

impl PassiveKind {
    fn as_str(self) -> &'static str {
        match self {
            PassiveKind::ConnectFailure => "connect_failure",
            PassiveKind::ConnectTimeout => "connect_timeout",
            PassiveKind::Reset => "reset",
            PassiveKind::Timeout => "timeout",
            PassiveKind::ServerError(_) => "5xx",
        }
    }
}

pub(crate) struct PoolRuntime {
    pub config: PoolConfig,
    pub client: Arc<UpstreamClient>,
    pub budget: RetryBudget,
    pub sticky_key: Option<hmac::Key>,
    /// SHA-256 of the upstream TLS files (CA, client certificate and key)
    /// as read when the client was built, so a reload can tell a rotated
    /// file from an untouched one. `None` without upstream TLS.
    pub tls_fingerprint: Option<[u8; 32]>,
}

pub(crate) struct TlsRuntime {
    pub resolver: Arc<SniResolver>,
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub handshake_timeout: Duration,
}

/// One listener as one configuration sees it. Replaced (not mutated) when
/// its routes or TLS change; connections take the current one per request
/// (routes) or per accept (TLS).
pub(crate) struct ListenerRuntime {
    pub name: String,
    pub routes: RouteTable,
    pub tls: Option<Arc<TlsRuntime>>,
    /// Shared by every runtime of this listener from the `new` or
    /// reconfigure that added it to the one that removes it.
    pub life: Arc<ListenerLife>,
}

/// Tells a listener's serve loops that a reconfigure removed it.
pub(crate) struct ListenerLife {
    pub removed: tokio::sync::watch::Sender<bool>,
}

impl ListenerLife {
    pub fn new() -> Arc<Self> {
        Arc::new(ListenerLife {
            removed: tokio::sync::watch::Sender::new(false),
        })
    }
}

pub(crate) type FastMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Everything a request needs, as one immutable snapshot: a request loads
/// it once (one `ArcSwap` load and reference count, which replaced the
/// per-request clone of the former long-lived state) and finishes with it
/// whatever is reconfigured meanwhile. Control-plane calls build a new one
/// and swap it in (see `server.rs`).
#[derive(Clone)]
pub(crate) struct Shared {
    /// Looked up per request (listener, then pool): a fast hash, as the
    /// keys come from the config, not from clients.
    pub listeners: FastMap<Arc<ListenerRuntime>>,
    pub pools: FastMap<Arc<PoolRuntime>>,
    pub upstreams: Arc<Upstreams>,
    pub limits: Limits,
    pub trusted: Vec<IpNet>,
    pub forwarded: bool,
    pub request_id: HeaderName,
    /// Shared between snapshots while the rate-limit settings stay the
    /// same, so a reload does not refill every client's bucket.
    pub rate: Option<Arc<RateLimiter>>,
    /// Registered once, at `Proxy::new`; cloning shares the families.
    pub metrics: Metrics,
    pub health: mpsc::Sender<PassiveEvent>,
    pub drain: Duration,
}

pub(crate) struct ConnCtx {
    pub listener: Arc<ListenerRuntime>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// Flips to `true` when the listener shuts down; upgraded tunnels
    /// outlive their HTTP connection and watch it themselves.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// The forwarding headers' part that depends only on the connection.
    pub forwarding: ConnForwarding,
}

/// What the access log and metrics need to know about one request.
#[derive(Default)]
struct Outcome {
    route: Arc<str>,
    pool: Arc<str>,
    backend: Arc<str>,
    attempts: u32,
    error: Option<&'static str>,
    /// Who caused `error`, for proxy failures (pingora-style source).
    source: Option<ErrorSource>,
}

impl Outcome {
    fn fail(&mut self, kind: ProxyErrorKind) {
        self.error = Some(kind.as_str());
        self.source = Some(kind.source());
    }
}

/// What the proxy derived about the client before forwarding.
struct Seen {
    /// Host as sent (Host header or :authority), with port.
    raw_host: Option<String>,
    /// See [`effective_client`].
    client_ip: IpAddr,
}

/// Decrements a backend's in-flight count when dropped.
struct InFlight(Arc<BackendStats>);

impl InFlight {
    fn new(stats: &Arc<BackendStats>) -> Self {
        stats.begin();
        InFlight(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

// Not an `async fn`: an async block uses its captured arguments in place,
// where an async fn's future keeps a second copy of each (rustc); this
// future is moved into place on every request, so its size counts.
#[allow(clippy::manual_async_fn)]
pub(crate) fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnCtx>,
    mut req: Request<Incoming>,
) -> impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + use<> {
    async move {
        let start = Instant::now();
        // The client's request ID when it sent a usable one, else a new one
        // (added to the request); echoed on the response either way.
        let rid_value = match req
            .headers()
            .get(&shared.request_id)
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
        {
            Some(v) => Some(v.clone()),
            None => {
                let v = new_request_id_value();
                if let Some(v) = &v {
                    req.headers_mut().insert(shared.request_id.clone(), v.clone());
                }
                v
            }
        };
        // What only the access log needs, taken only when it is on.
        let access = tracing::enabled!(target: "edge_l7::access", tracing::Level::INFO).then(|| {
            (
                req.method().clone(),
                req.uri().path().to_string(),
                host_of(&req).unwrap_or_default(),
            )
        });
        let mut out = Outcome::default();

        let mut resp = dispatch(&shared, &conn, req, &mut out).await;

        if let Some(mut v) = rid_value.clone() {
            // Unique per request: never worth a slot in the client's HPACK
            // dynamic table (h2 encodes it as a never-indexed literal).
            v.set_sensitive(true);
            resp.headers_mut().insert(shared.request_id.clone(), v);
        }
        let status = resp.status().as_u16();
        let elapsed = start.elapsed();
        shared.metrics.observe_request(
            &conn.listener.name,
            &out.route,
            &out.pool,
            &out.backend,
            status,
            elapsed.as_secs_f64(),
        );
        if let Some((method, path, host)) = access {
            tracing::info!(
                target: "edge_l7::access",
                listener = %conn.listener.name,
                request_id = rid_value.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
                client = %conn.peer,
                tls = conn.tls,
                method = %method,
                host = %host,
                path = %path,
                status,
                route = %out.route,
                pool = %out.pool,
                backend = %out.backend,
                attempts = out.attempts,
                error = out.error.unwrap_or(""),
                error_source = out.source.map(|s| s.to_string()).unwrap_or_default(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        }
        Ok(resp)
    }
}

/// Host as the client sent it: the Host header (HTTP/1) or :authority (h2).
fn host_of<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

fn status_response(status: StatusCode) -> Response<ProxyBody> {
    let mut r = Response::new(body::full(format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn status_or(code: u16, fallback: StatusCode) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(fallback)
}

// Not an `async fn`, for the reason given at `handle`.
#[allow(clippy::manual_async_fn)]
fn dispatch(
    shared: &Arc<Shared>,
    conn: &Arc<ConnCtx>,
    req: Request<Incoming>,
    out: &mut Outcome,
) -> impl Future<Output = Response<ProxyBody>> {
    async move {
        let client_ip = effective_client(conn.peer.ip(), req.headers(), &shared.trusted);
        if let Some(rl) = &shared.rate
            && !rl.check(client_ip, Instant::now())
        {
            shared
                .metrics
                .rate_limited
                .get_or_create(&crate::metrics::ListenerLabels {
                    listener: conn.listener.name.clone(),
                })
                .inc();
            out.error = Some("rate_limited");
            let mut r = status_response(StatusCode::TOO_MANY_REQUESTS);
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        if req.method() == Method::CONNECT {
            // A reverse proxy: CONNECT tunnels to arbitrary targets are not ours
            // to open.
            out.error = Some("connect_method");
            return status_response(StatusCode::METHOD_NOT_ALLOWED);
        }
        let declared_len = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_len.is_some_and(|n| n > shared.limits.max_body_bytes) {
            out.fail(ProxyErrorKind::BodyTooLarge);
            return status_response(StatusCode::PAYLOAD_TOO_LARGE);
        }

        let raw_host = host_of(&req);
        let host = raw_host.as_deref().map(normalize_host).unwrap_or_default();
        let path = normalize_path(req.uri().path());
        // The listener's routes in this request's snapshot; a connection
        // whose listener was removed (and is draining) keeps the routes it
        // was accepted with.
        let table = &shared
            .listeners
            .get(conn.listener.name.as_str())
            .unwrap_or(&conn.listener)
            .routes;
        let info = RequestInfo {
            method: req.method(),
            host: &host,
            path: &path,
            headers: req.headers(),
            client: client_ip,
            tls: conn.tls,
        };
        let Some(rule) = table.evaluate(&info) else {
            out.error = Some("no_route");
            return status_response(StatusCode::NOT_FOUND);
        };
        out.route = rule.name.clone();

        let mut resp = match &rule.action {
            Action::Deny { status } => {
                out.error = Some("denied");
                status_response(status_or(*status, StatusCode::FORBIDDEN))
            }
            Action::Redirect { status, location } => {
                let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
                let loc = location
                    .replace("{host}", &host)
                    .replace("{path}", req.uri().path())
                    .replace("{query}", &query);
                redirect(status_or(*status, StatusCode::FOUND), &loc)
            }
            Action::RedirectHttps { status, port } => {
                let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let port = port
                    .filter(|p| *p != 443)
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default();
                redirect(
                    status_or(*status, StatusCode::MOVED_PERMANENTLY),
                    &format!("https://{host}{port}{pq}"),
                )
            }
            Action::Pool(pool) => {
                if let Some(p) = &rule.pool {
                    out.pool = p.clone();
                }
                let seen = Seen { raw_host, client_ip };
                forward(shared, conn, rule, pool, req, seen, out).await
            }
        };
        rule.response_headers.apply(resp.headers_mut());
        resp
    }
}

fn redirect(status: StatusCode, location: &str) -> Response<ProxyBody> {
    let mut r = status_response(status);
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(LOCATION, v);
            r
        }
        // Only reachable with a Host header full of odd bytes.
        Err(_) => status_response(StatusCode::BAD_REQUEST),
    }
}

/// An HTTP/1.1 protocol upgrade to relay (WebSocket and the like). `h2c`
/// upgrades concern only the client-proxy hop and are not relayed.
fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req
            .headers()
            .get(UPGRADE)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"h2c"))
        && req
            .headers()
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

pub(crate) fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn report(shared: &Shared, pool: &str, view: &PoolView, idx: usize, kind: PassiveKind) {
    let b = &view.members[idx].backend;
    shared
        .metrics
        .upstream_errors
        .get_or_create(&UpstreamErrorLabels {
            pool: pool.to_string(),
            backend: b.name.clone(),
            kind: kind.as_str().to_string(),
        })
        .inc();
    tracing::debug!(pool, backend = %b.name, address = %b.address, kind = kind.as_str(), "passive health event");
    let ev = PassiveEvent {
        pool: pool.to_string(),
        backend: b.name.clone(),
        address: b.address,
        kind,
        preceding_successes: view.members[idx].stats.take_successes(),
    };
    if let Err(mpsc::error::TrySendError::Full(_)) = shared.health.try_send(ev) {
        shared.metrics.passive_events_dropped.inc();
    }
}

/// Whether hyper's error came from our side of the request body (the client
/// aborted, or the body limit tripped) rather than from the backend.
fn is_body_error(err: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_user()
        {
            return true;
        }
        if e.is::<body::BodyTooLarge>() {
            return true;
        }
        cur = e.source();
    }
    false
}

fn hash_key(
    balance: &Balance,
    headers: &http::HeaderMap,
    path_and_query: &str,
    client: IpAddr,
) -> Option<u64> {
    match balance {
        Balance::ConsistentHash { key } => match key {
            HashKey::Uri => Some(stable_hash(path_and_query.as_bytes(), 0)),
            HashKey::Header(name) => headers.get(name.as_str()).map(|v| stable_hash(v.as_bytes(), 0)),
            HashKey::Cookie(name) => cookie(headers, name).map(|v| stable_hash(v.as_bytes(), 0)),
        },
        Balance::SourceIpHash => Some(match canonical_ip(client) {
            IpAddr::V4(a) => stable_hash(&a.octets(), 0),
            IpAddr::V6(a) => stable_hash(&a.octets(), 0),
        }),
        _ => None,
    }
}

/// What [`forward`] works from once the request is taken apart: only this
/// (not the whole request, nor the parts already used) lives in the
/// request's future across its awaits.
struct Prepared<'a> {
    pool: &'a Arc<PoolRuntime>,
    view: Arc<PoolView>,
    is_upgrade: bool,
    downstream_upgrade: Option<hyper::upgrade::OnUpgrade>,
    method: Method,
    path_and_query: PathAndQuery,
    headers: http::HeaderMap,
    body: Incoming,
    client_ip: IpAddr,
}

/// The synchronous part of [`forward`]: pool lookup, hop-by-hop and
/// forwarding headers, header edits. `Err`: the response to send instead
/// (not boxed: an allocation on the error path for nothing).
#[allow(clippy::result_large_err)]
fn prepare<'a>(
    shared: &'a Arc<Shared>,
    conn: &Arc<ConnCtx>,
    rule: &CompiledRule,
    pool_name: &str,
    mut req: Request<Incoming>,
    seen: Seen,
    out: &mut Outcome,
) -> Result<Prepared<'a>, Response<ProxyBody>> {
    let Seen { raw_host, client_ip } = seen;
    let (Some(pool), Some(view)) = (
        shared.pools.get(pool_name),
        shared.upstreams.pool(pool_name).cloned(),
    ) else {
        out.fail(ProxyErrorKind::NoBackend);
        return Err(status_response(StatusCode::SERVICE_UNAVAILABLE));
    };
    let is_upgrade = is_upgrade_request(&req);
    if is_upgrade && pool.client.protocol == UpstreamProtocol::Http2 {
        // RFC 8441 extended CONNECT towards backends is not implemented.
        out.fail(ProxyErrorKind::UpgradeUnsupported);
        return Err(status_response(StatusCode::BAD_GATEWAY));
    }
    let downstream_upgrade = is_upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let http::request::Parts {
        method,
        uri,
        mut headers,
        ..
    } = parts;
    strip_hop_by_hop(&mut headers, is_upgrade);
    apply_forwarding(
        &mut headers,
        &ClientInfo {
            addr: conn.peer.ip(),
            tls: conn.tls,
            host: raw_host.as_deref(),
            local: Some(conn.local.ip()),
            conn: Some(&conn.forwarding),
        },
        &shared.trusted,
        shared.forwarded,
    );
    rule.request_headers.apply(&mut headers);
    if !headers.contains_key(HOST)
        && let Some(v) = raw_host.as_deref().and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert(HOST, v);
    }
    // Sent in origin form, as received: cloning shares the parsed bytes (no
    // string copy and parse per attempt).
    let path_and_query = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Ok(Prepared {
        pool,
        view,
        is_upgrade,
        downstream_upgrade,
        method,
        path_and_query,
        headers,
        body,
        client_ip,
    })
}

// Not an `async fn`, for the reason given at `handle`.
#[allow(clippy::manual_async_fn)]
fn forward(
    shared: &Arc<Shared>,
    conn: &Arc<ConnCtx>,
    rule: &CompiledRule,
    pool_name: &str,
    req: Request<Incoming>,
    seen: Seen,
    out: &mut Outcome,
) -> impl Future<Output = Response<ProxyBody>> {
    // Taken apart before the future is built, so that the future holds
    // the prepared pieces rather than the request.
    let prepared = prepare(shared, conn, rule, pool_name, req, seen, out);
    async move {
        let Prepared {
            pool,
            view,
            is_upgrade,
            downstream_upgrade,
            method,
            path_and_query,
            headers,
            body,
            client_ip,
        } = match prepared {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        // After header edits, so a rule that rewrites Host also sets the
        // HTTP/2 :authority.
        let authority = headers.get(HOST).and_then(|v| v.to_str().ok());
        let cfg = &pool.config;
        let request_timeout = Duration::from_millis(cfg.request_timeout_ms);
        let max_body = shared.limits.max_body_bytes;
        // Set by the body limit of a streamed body (only those have one).
        let mut tripped: Option<Arc<AtomicBool>> = None;

        // HTTP/1.1 pools send requests with their body in memory from this task
        // (upgrades excepted: hyper hands those connections over).
        let inline = !is_upgrade && pool.client.sends_buffered();
        // A body is replayable (so the request can be retried) when it is empty
        // or small enough to buffer; larger bodies stream through once. Small
        // ones are buffered for the inline client too.
        let (mut streaming, replay): (Option<ProxyBody>, Option<Bytes>) = if body.is_end_stream() {
            (None, Some(Bytes::new()))
        } else if (cfg.retry.attempts > 0 || inline)
            && !is_upgrade
            && body
                .size_hint()
                .exact()
                .is_some_and(|n| n <= cfg.retry.buffer_bytes as u64 && n <= max_body)
        {
            match tokio::time::timeout(request_timeout, body.collect()).await {
                Ok(Ok(c)) => (None, Some(c.to_bytes())),
                Ok(Err(_)) => {
                    out.fail(ProxyErrorKind::DownstreamBody);
                    return status_response(StatusCode::BAD_REQUEST);
                }
                Err(_) => {
                    out.fail(ProxyErrorKind::DownstreamBody);
                    return status_response(StatusCode::REQUEST_TIMEOUT);
                }
            }
        } else {
            (
                Some(Limited::new(body, max_body, tripped.insert(Arc::default()).clone()).boxed_unsync()),
                None,
            )
        };

        let hash = hash_key(&cfg.balance, &headers, path_and_query.as_str(), client_ip);
        let sticky_cookie = cfg
            .sticky
            .as_ref()
            .and_then(|s| cookie(&headers, &s.cookie))
            .map(str::to_string);
        let pinned = sticky_cookie.as_deref().and_then(|c| view.pinned(c));
        let idempotent = idempotent(&method);
        let max_attempts = 1 + cfg.retry.attempts;
        let slow_start = Duration::from_millis(cfg.slow_start_ms);
        let version = match pool.client.protocol {
            UpstreamProtocol::Http1 => Version::HTTP_11,
            UpstreamProtocol::Http2 => Version::HTTP_2,
        };
        let mut rng = thread_rng();
        // Backends tried so far (on the stack for the usual few attempts).
        let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
        let mut last_err = ProxyErrorKind::NoBackend;
        pool.budget.deposit();
        // A retry needs attempts left and budget; checked only once a retry is
        // actually wanted so that healthy traffic does not drain the budget.
        let may_retry = |attempt: u32| {
            let ok = attempt + 1 < max_attempts && pool.budget.try_withdraw();
            if ok {
                shared
                    .metrics
                    .retries
                    .get_or_create(&PoolLabels {
                        pool: pool_name.to_string(),
                    })
                    .inc();
            }
            ok
        };

        for attempt in 0..max_attempts {
            let now = Instant::now();
            let idx = match (attempt, pinned) {
                (0, Some(p)) => Some(p),
                _ => view.pick(
                    &PickCtx {
                        hash,
                        exclude: &tried,
                        now,
                        slow_start,
                    },
                    &mut rng,
                ),
            };
            let Some(idx) = idx else {
                if attempt == 0 {
                    last_err = ProxyErrorKind::NoBackend;
                }
                break;
            };
            tried.push(idx);
            let member = &view.members[idx];
            out.backend = member.name.clone();
            out.attempts = attempt + 1;
            let in_flight = InFlight::new(&member.stats);
            // The pick's clock reading serves as the send time (a few µs apart).
            let sent_at = now;
            let addr = member.backend.address;
            let result = match &replay {
                // In memory and not an upgrade: the inline HTTP/1.1 client sends
                // it from this task, borrowing method, target and headers.
                Some(b) if inline => {
                    let req = Buffered {
                        method: &method,
                        target: path_and_query.as_str(),
                        headers: &headers,
                        body: b,
                    };
                    let exchange = pool.client.send_buffered(addr, &req, now);
                    tokio::time::timeout(request_timeout, exchange)
                        .await
                        .map(|r| r.map(|resp| (resp, None)))
                }
                _ => {
                    let body = match (&replay, streaming.take()) {
                        // An empty body needs no allocation.
                        (Some(b), _) if b.is_empty() => body::empty(),
                        (Some(b), _) => body::full(b.clone()),
                        (None, Some(s)) => s,
                        // The streamed body went to a backend already: nothing to
                        // resend.
                        (None, None) => break,
                    };
                    let mut up = Request::new(body);
                    *up.method_mut() = method.clone();
                    *up.uri_mut() = Uri::from(path_and_query.clone());
                    *up.version_mut() = version;
                    *up.headers_mut() = headers.clone();
                    // Boxed, as it is large (hyper's handshakes) and off the
                    // common path: see `send_buffered`.
                    let exchange = Box::pin(pool.client.send(addr, authority, up));
                    tokio::time::timeout(request_timeout, exchange).await
                }
            };
            let resp = match result {
                Err(_) => {
                    // A timeout is the slowest possible answer: let it raise the
                    // EWMA so peak-EWMA steers away from this backend.
                    let answered = Instant::now();
                    member
                        .stats
                        .observe_rtt(answered.saturating_duration_since(sent_at), answered);
                    report(shared, pool_name, &view, idx, PassiveKind::Timeout);
                    last_err = ProxyErrorKind::RequestTimeout;
                    if idempotent && replay.is_some() && may_retry(attempt) {
                        continue;
                    }
                    break;
                }
                Ok(Err(e)) => {
                    if tripped.as_ref().is_some_and(|t| t.load(Ordering::Relaxed)) {
                        last_err = ProxyErrorKind::BodyTooLarge;
                        break;
                    }
                    if is_body_error(e.inner()) {
                        last_err = ProxyErrorKind::DownstreamBody;
                        break;
                    }
                    let kind = match &e {
                        UpstreamError::Connect { timeout: true, .. } => {
                            report(shared, pool_name, &view, idx, PassiveKind::ConnectTimeout);
                            ProxyErrorKind::ConnectTimeout
                        }
                        UpstreamError::Connect { .. } => {
                            report(shared, pool_name, &view, idx, PassiveKind::ConnectFailure);
                            ProxyErrorKind::ConnectFailed
                        }
                        UpstreamError::Exchange(_) => {
                            report(shared, pool_name, &view, idx, PassiveKind::Reset);
                            ProxyErrorKind::UpstreamReset
                        }
                    };
                    tracing::debug!(pool = pool_name, backend = %member.backend.name, error = %e, "upstream error");
                    last_err = kind;
                    // Never sent: safe to resend anything we still hold. Sent and
                    // broken: only idempotent requests.
                    if replay.is_some() && (kind.before_send() || idempotent) && may_retry(attempt) {
                        continue;
                    }
                    break;
                }
                Ok(Ok(pair)) => pair,
            };
            let (mut resp, reuse) = resp;
            let answered = Instant::now();
            member
                .stats
                .observe_rtt(answered.saturating_duration_since(sent_at), answered);
            let status = resp.status();
            if !status.is_server_error() {
                member.stats.success();
            } else {
                report(
                    shared,
                    pool_name,
                    &view,
                    idx,
                    PassiveKind::ServerError(status.as_u16()),
                );
            }
            if matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE)
                && idempotent
                && replay.is_some()
                && may_retry(attempt)
            {
                continue;
            }

            if status == StatusCode::SWITCHING_PROTOCOLS {
                let Some(down) = downstream_upgrade else {
                    out.error = Some("unexpected_101");
                    return status_response(StatusCode::BAD_GATEWAY);
                };
                let up_upgrade = hyper::upgrade::on(&mut resp);
                let idle = Duration::from_millis(cfg.tunnel_idle_timeout_ms);
                let backend = member.backend.name.clone();
                let stop = conn.stop.clone();
                let drain = shared.drain;
                tokio::spawn(async move {
                    tunnel(down, up_upgrade, idle, in_flight, backend, stop, drain).await;
                });
                // The backend connection now belongs to the tunnel.
                drop(reuse);
                let (mut rparts, _) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers, true);
                rparts.version = Version::HTTP_11;
                return Response::from_parts(rparts, body::empty());
            }

            let (mut rparts, rbody) = resp.into_parts();
            strip_hop_by_hop(&mut rparts.headers, false);
            rparts.version = Version::HTTP_11;
            if let Some(s) = &cfg.sticky
                && pinned != Some(idx)
            {
                // (Re-)pin: first visit, or the pinned backend is gone.
                let mut c = format!(
                    "{}={}; Path=/; HttpOnly; SameSite=Lax",
                    s.cookie,
                    view.cookie_id(idx)
                );
                if conn.tls {
                    c.push_str("; Secure");
                }
                if let Ok(v) = HeaderValue::from_str(&c) {
                    rparts.headers.append(SET_COOKIE, v);
                }
            }
            let watch = BodyWatch {
                shared: shared.clone(),
                pool: rule.pool.clone().unwrap_or_else(|| pool_name.into()),
                view: view.clone(),
                idx,
                reported: false,
            };
            let body = Guarded::new(
                UpstreamBody {
                    inner: rbody,
                    watch,
                    reuse,
                },
                in_flight,
            )
            .boxed_unsync();
            return Response::from_parts(rparts, body);
        }

        out.fail(last_err);
        status_response(match last_err {
            ProxyErrorKind::RequestTimeout | ProxyErrorKind::ConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyErrorKind::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            ProxyErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyErrorKind::DownstreamBody => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        })
    }
}

/// Reports a backend that breaks off a response body (reset or truncated
/// after the headers) to passive health, once.
struct BodyWatch {
    shared: Arc<Shared>,
    pool: Arc<str>,
    view: Arc<PoolView>,
    idx: usize,
    reported: bool,
}

struct UpstreamBody {
    inner: RespBody,
    watch: BodyWatch,
    /// The pooled HTTP/1.1 connection, given back once the body has ended.
    reuse: Option<crate::client::Reuse>,
}

impl UpstreamBody {
    fn give_back(&mut self) {
        if let Some(r) = self.reuse.take() {
            r.finish();
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body known to be complete (e.g. empty, never polled) leaves the
        // connection reusable; otherwise the connection closes with `reuse`.
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, body::BoxError>>> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            std::task::Poll::Ready(Some(Err(e))) => {
                this.reuse = None;
                let w = &mut this.watch;
                if !w.reported {
                    w.reported = true;
                    report(&w.shared, &w.pool, &w.view, w.idx, PassiveKind::Reset);
                }
                std::task::Poll::Ready(Some(Err(e)))
            }
            std::task::Poll::Ready(None) => {
                this.give_back();
                std::task::Poll::Ready(None)
            }
            other => {
                if this.inner.is_end_stream() {
                    this.give_back();
                }
                other
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Relays bytes between the upgraded client and backend connections until
/// both sides close, either side errors, or nothing moves for `idle`.
async fn tunnel(
    down: hyper::upgrade::OnUpgrade,
    up: hyper::upgrade::OnUpgrade,
    idle: Duration,
    _in_flight: InFlight,
    backend: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) {
    let (d, u) = match tokio::try_join!(down, up) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(%backend, error = %e, "upgrade failed");
            return;
        }
    };
    let (dr, dw) = tokio::io::split(TokioIo::new(d));
    let (ur, uw) = tokio::io::split(TokioIo::new(u));
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let pumps = async { tokio::try_join!(pump(dr, uw, &last, start), pump(ur, dw, &last, start)) };
    let watchdog = async {
        loop {
            let quiet = start
                .elapsed()
                .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    tokio::select! {
        r = pumps => if let Err(e) = r {
            tracing::debug!(%backend, error = %e, "tunnel closed with error");
        },
        _ = watchdog => tracing::debug!(%backend, "tunnel idle timeout"),
        // Shutdown: the tunnel gets the drain period, like requests do.
        _ = async {
            drop(stop.wait_for(|s| *s).await);
            tokio::time::sleep(drain).await;
        } => tracing::debug!(%backend, "tunnel closed by shutdown"),
    }
}

async fn pump<R, W>(mut r: R, mut w: W, last: &AtomicU64, start: Instant) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            // Half-close: pass the EOF on, keep the other direction going.
            let _ = w.shutdown().await;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}
