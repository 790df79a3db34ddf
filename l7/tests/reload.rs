//! Live reconfiguration (`Proxy::reconfigure`) through a real proxy on
//! loopback: routes, certificate rotation, pools, listeners, failed reloads
//! and reloads under load.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use edge_l7::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type ServeTask = JoinHandle<Result<(), ServeError>>;

/// A proxy whose listeners are served one by one (as the node does), each
/// until it is removed: the shutdown future never completes.
struct Node {
    proxy: Proxy,
    addrs: HashMap<String, SocketAddr>,
    tasks: HashMap<String, ServeTask>,
}

impl Node {
    async fn start(cfg: ProxyConfig) -> Node {
        let mut registry = Registry::default();
        let (proxy, _events) = Proxy::new(cfg.clone(), &mut registry).expect("valid config");
        let mut node = Node {
            proxy,
            addrs: HashMap::new(),
            tasks: HashMap::new(),
        };
        for l in &cfg.listeners {
            node.serve(&l.name).await;
        }
        node
    }

    /// Binds a socket for `name` and serves it.
    async fn serve(&mut self, name: &str) {
        let sock = TcpListener::bind(LOCAL).await.expect("bind");
        self.addrs
            .insert(name.to_string(), sock.local_addr().expect("addr"));
        let p = self.proxy.clone();
        let n = name.to_string();
        self.tasks.insert(
            name.to_string(),
            tokio::spawn(async move { p.serve(&n, sock, std::future::pending()).await }),
        );
    }

    fn url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{}", self.addrs[listener], path)
    }
}

fn route(name: &str, prefix: &str, pool: &str) -> RouteRule {
    RouteRule::new(
        name,
        vec![Match::PathPrefix(prefix.into())],
        Action::Pool(pool.into()),
    )
}

fn tls_listener(name: &str, certs: Vec<CertConfig>, routes: Vec<RouteRule>) -> ListenerConfig {
    let mut l = listener(name, routes);
    l.tls = Some(ListenerTls {
        certs,
        handshake_timeout_ms: 5_000,
    });
    l
}

/// A certificate served from files (what a rotation rewrites in place).
fn file_cert(dir: &Path, names: &[&str]) -> CertConfig {
    CertConfig {
        server_names: names.iter().map(|s| s.to_string()).collect(),
        cert: PemSource::Path(dir.join("cert.pem")),
        key: PemSource::Path(dir.join("key.pem")),
    }
}

fn write_cert(dir: &Path, leaf: &Leaf) {
    std::fs::write(dir.join("cert.pem"), &leaf.cert_pem).expect("write cert");
    std::fs::write(dir.join("key.pem"), &leaf.key_pem).expect("write key");
}

/// An HTTP/1.1 connection over TLS, kept open across reloads.
struct TlsConn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    peer_cert: Vec<u8>,
}

async fn tls_connect(addr: SocketAddr, ca: &str, sni: &str) -> TlsConn {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(tls_client(ca, &[b"http/1.1"]))
        .connect(sni.to_string().try_into().expect("server name"), tcp)
        .await
        .expect("TLS handshake");
    let peer_cert = tls.get_ref().1.peer_certificates().expect("certificate")[0].to_vec();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    TlsConn { send, peer_cert }
}

impl TlsConn {
    /// GET `path`; the backend that answered.
    async fn get(&mut self, host: &str, path: &str) -> (u16, String) {
        self.send.ready().await.expect("connection usable");
        let resp = self
            .send
            .send_request(
                Request::get(path)
                    .header("host", host)
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
            .expect("response");
        let status = resp.status().as_u16();
        let backend = resp
            .headers()
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        resp.into_body().collect().await.expect("body");
        (status, backend)
    }
}

#[tokio::test]
async fn route_change_is_seen_by_the_next_request() {
    let a = backend("a").await;
    let b = backend("b").await;
    let cfg = config(
        vec![listener("web", vec![to_pool("a")])],
        vec![pool("a", &[&a]), pool("b", &[&b])],
    );
    let node = Node::start(cfg.clone()).await;
    // One keep-alive client: the change must reach open connections too.
    let c = client();
    assert_eq!(get(&c, &node.url("web", "/new/x"), &[]).await.backend(), "a");
    assert_eq!(a.accepted.load(Ordering::SeqCst), 1);

    let mut next = cfg.clone();
    next.listeners[0].routes = vec![route("new", "/new", "b"), to_pool("a")];
    // Initial members listed in the config are not a change (and are not
    // re-applied: the node pushes members).
    next.pools[1].backends.clear();
    let done = node.proxy.reconfigure(next).expect("reconfigure");
    assert_eq!(done.to_string(), "listener web: routes changed");
    assert_eq!(done.listeners_changed(), ["web"]);

    let r = get(&c, &node.url("web", "/new/x"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "b", "new route on the next request");
    assert_eq!(get(&c, &node.url("web", "/old"), &[]).await.backend(), "a");
    // Unchanged pool `a` kept its runtime: its idle upstream connection was
    // reused rather than a new one opened.
    assert_eq!(a.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(node.proxy.upstreams().pool("b").expect("pool b").members.len(), 1);
}

#[tokio::test]
async fn certificate_rotation_under_the_same_path() {
    let b = backend("b").await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let one = pki.leaf(&["www.example.net"]);
    write_cert(dir.path(), &one);
    let cfg = config(
        vec![tls_listener(
            "tls",
            vec![file_cert(dir.path(), &["www.example.net"])],
            vec![to_pool("p")],
        )],
        vec![pool("p", &[&b])],
    );
    let node = Node::start(cfg.clone()).await;
    let addr = node.addrs["tls"];
    let mut before = tls_connect(addr, &pki.ca_pem, "www.example.net").await;
    assert_eq!(before.peer_cert, one.der);
    assert_eq!(before.get("www.example.net", "/").await, (200, "b".into()));

    // Nothing changed on disk: nothing to report.
    assert!(
        node.proxy
            .reconfigure(cfg.clone())
            .expect("reconfigure")
            .is_empty()
    );

    let two = pki.leaf(&["www.example.net"]);
    write_cert(dir.path(), &two);
    let done = node.proxy.reconfigure(cfg.clone()).expect("reconfigure");
    assert_eq!(done.to_string(), "listener tls: certificates re-read");

    let mut after = tls_connect(addr, &pki.ca_pem, "www.example.net").await;
    assert_eq!(after.peer_cert, two.der, "new handshakes get the new certificate");
    assert_eq!(after.get("www.example.net", "/").await, (200, "b".into()));
    // The connection opened before keeps working (with its certificate).
    assert_eq!(before.get("www.example.net", "/again").await, (200, "b".into()));
}

#[tokio::test]
async fn added_pool_serves_once_members_are_pushed_and_pool_settings_apply() {
    let a = backend("a").await;
    let canary = backend("canary").await;
    let slow = backend_with("slow", Mode::Slow(400), None).await;
    let cfg = config(
        vec![listener(
            "web",
            vec![route("slow", "/slow", "slow"), to_pool("a")],
        )],
        vec![pool("a", &[&a]), pool("slow", &[&slow])],
    );
    let node = Node::start(cfg.clone()).await;
    let c = client();
    assert_eq!(get(&c, &node.url("web", "/slow"), &[]).await.status, 200);

    // A new pool and a route to it, in one reload.
    let mut next = cfg.clone();
    next.pools.push(PoolConfig::new("canary", vec![]));
    next.listeners[0]
        .routes
        .insert(0, route("canary", "/canary", "canary"));
    let done = node.proxy.reconfigure(next.clone()).expect("reconfigure");
    assert_eq!(
        done.to_string(),
        "listener web: routes changed\npool canary: added"
    );
    assert_eq!(done.pools_added(), ["canary"]);
    // Routed at once; no members until the node pushes them.
    assert_eq!(get(&c, &node.url("web", "/canary"), &[]).await.status, 503);
    node.proxy
        .set_many(HashMap::from([("canary".to_string(), vec![canary.backend()])]))
        .expect("push members");
    let r = get(&c, &node.url("web", "/canary"), &[]).await;
    assert_eq!((r.status.as_u16(), r.backend()), (200, "canary".to_string()));

    // A pool setting change applies to the next request; the pool keeps
    // its members (a 504, not a 503 for an empty pool).
    let mut tighter = next.clone();
    // As the node sends it: no members in the config, they are pushed.
    for p in &mut tighter.pools {
        p.backends.clear();
    }
    let p = tighter.pools.iter_mut().find(|p| p.name == "slow").expect("slow");
    p.request_timeout_ms = 100;
    p.retry.attempts = 0;
    p.balance = Balance::RoundRobin;
    let done = node.proxy.reconfigure(tighter).expect("reconfigure");
    assert_eq!(
        done.to_string(),
        "pool slow: settings changed (balance, request_timeout_ms, retry)"
    );
    assert_eq!(get(&c, &node.url("web", "/slow"), &[]).await.status, 504);
    assert_eq!(
        node.proxy.upstreams().pool("slow").expect("slow").members.len(),
        1
    );
    // Pushed members of the new pool survived the second reload too.
    assert_eq!(
        get(&c, &node.url("web", "/canary"), &[]).await.backend(),
        "canary"
    );
}

#[tokio::test]
async fn removed_listener_drains_and_stops_added_listener_is_served() {
    let a = backend("a").await;
    let slow = backend_with("slow", Mode::Slow(300), None).await;
    let cfg = config(
        vec![
            listener("web", vec![to_pool("a")]),
            listener("admin", vec![to_pool("slow")]),
        ],
        vec![pool("a", &[&a]), pool("slow", &[&slow])],
    );
    let mut node = Node::start(cfg.clone()).await;
    let admin_url = node.url("admin", "/");
    let admin_addr = node.addrs["admin"];
    // A request in flight on the listener about to go.
    let in_flight = tokio::spawn(async move { get(&client(), &admin_url, &[]).await.status });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut next = cfg.clone();
    next.listeners.retain(|l| l.name != "admin");
    next.listeners.push(listener("extra", vec![to_pool("a")]));
    let done = node.proxy.reconfigure(next).expect("reconfigure");
    assert_eq!(done.to_string(), "listener admin: removed\nlistener extra: added");
    assert_eq!(done.listeners_removed(), ["admin"]);
    assert_eq!(done.listeners_added(), ["extra"]);

    // The removed listener's serve future completes by itself, after its
    // in-flight request finished.
    let task = node.tasks.remove("admin").expect("admin task");
    let served = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returned after removal")
        .expect("serve task");
    assert!(served.is_ok());
    assert_eq!(in_flight.await.expect("request task"), 200);
    // And its socket is closed.
    assert!(tokio::net::TcpStream::connect(admin_addr).await.is_err());
    assert!(matches!(
        node.proxy
            .serve("admin", TcpListener::bind(LOCAL).await.expect("bind"), async {})
            .await,
        Err(ServeError::UnknownListener(_))
    ));

    // The added one is served once the node hands it a socket.
    node.serve("extra").await;
    let c = client();
    assert_eq!(get(&c, &node.url("extra", "/"), &[]).await.backend(), "a");
    assert_eq!(get(&c, &node.url("web", "/"), &[]).await.backend(), "a");
    assert!(!node.tasks["web"].is_finished());
}

#[tokio::test]
async fn failed_reconfigure_leaves_everything_as_it_was() {
    let a = backend("a").await;
    let b = backend("b").await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let one = pki.leaf(&["www.example.net"]);
    write_cert(dir.path(), &one);
    let cfg = config(
        vec![
            tls_listener(
                "tls",
                vec![file_cert(dir.path(), &["www.example.net"])],
                vec![to_pool("a")],
            ),
            listener("web", vec![to_pool("a")]),
        ],
        vec![pool("a", &[&a]), pool("b", &[&b])],
    );
    let node = Node::start(cfg.clone()).await;
    let c = client();

    // Wanted changes (routes, a new pool, a rotated certificate) together
    // with a certificate file that is missing: nothing may be applied.
    let two = pki.leaf(&["www.example.net"]);
    let rotated = tempfile::tempdir().expect("tempdir");
    write_cert(rotated.path(), &two);
    let mut bad = cfg.clone();
    bad.listeners[1].routes = vec![to_pool("b")];
    bad.pools.push(PoolConfig::new("new", vec![]));
    bad.listeners[0].tls.as_mut().expect("tls").certs = vec![
        file_cert(rotated.path(), &["www.example.net"]),
        file_cert(&dir.path().join("missing"), &["other.example.net"]),
    ];
    assert!(matches!(node.proxy.reconfigure(bad), Err(ConfigError::Io { .. })));

    // A route to a pool that does not exist.
    let mut bad = cfg.clone();
    bad.listeners[1].routes = vec![route("b", "/", "b"), route("ghost", "/", "ghost")];
    assert!(matches!(
        node.proxy.reconfigure(bad),
        Err(ConfigError::UnknownPool { .. })
    ));

    // Everything answers as before.
    assert_eq!(get(&c, &node.url("web", "/"), &[]).await.backend(), "a");
    assert!(node.proxy.upstreams().pool("new").is_none());
    let mut conn = tls_connect(node.addrs["tls"], &pki.ca_pem, "www.example.net").await;
    assert_eq!(conn.peer_cert, one.der);
    assert_eq!(conn.get("www.example.net", "/").await, (200, "a".into()));
    // And a later good reload reports against the running config, as if
    // the failed ones never happened.
    assert!(diff(&node.proxy.config(), &cfg).is_empty());
    let mut good = cfg.clone();
    good.listeners[1].routes = vec![to_pool("b")];
    let done = node.proxy.reconfigure(good).expect("reconfigure");
    assert_eq!(done.to_string(), "listener web: routes changed");
    assert_eq!(get(&c, &node.url("web", "/"), &[]).await.backend(), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_repeated_reconfigures_never_fail() {
    let a = backend("a").await;
    let b = backend("b").await;
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    write_cert(dir.path(), &pki.leaf(&["www.example.net"]));
    let base = config(
        vec![
            listener("web", vec![to_pool("a")]),
            tls_listener(
                "tls",
                vec![file_cert(dir.path(), &["www.example.net"])],
                vec![to_pool("a")],
            ),
        ],
        vec![pool("a", &[&a]), pool("b", &[&b])],
    );
    let node = Node::start(base.clone()).await;
    let url = node.url("web", "/x");
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let url = url.clone();
        let failures = failures.clone();
        let done = done.clone();
        load.spawn(async move {
            // Two workers on keep-alive connections, two on a new
            // connection per request.
            let keep = client();
            for _ in 0..150 {
                let c = if worker < 2 { keep.clone() } else { client() };
                let req = Request::get(&url).body(Full::new(Bytes::new())).expect("request");
                let ok = match c.request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let backend = resp
                            .headers()
                            .get("x-backend")
                            .map(|v| v.as_bytes().to_vec())
                            .unwrap_or_default();
                        let body = resp.into_body().collect().await;
                        status == 200 && body.is_ok() && (backend == b"a" || backend == b"b")
                    }
                    Err(_) => false,
                };
                if !ok {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    // TLS handshakes during the reloads, each on a new connection.
    let tls_addr = node.addrs["tls"];
    let ca = pki.ca_pem.clone();
    let tls_failures = failures.clone();
    let tls_stop = stop.clone();
    load.spawn(async move {
        while !tls_stop.load(Ordering::SeqCst) {
            let mut conn = tls_connect(tls_addr, &ca, "www.example.net").await;
            if conn.get("www.example.net", "/").await.0 != 200 {
                tls_failures.fetch_add(1, Ordering::SeqCst);
            }
        }
    });

    let proxy = node.proxy.clone();
    let mut reloads = 0;
    let mut without_members = base.clone();
    for p in &mut without_members.pools {
        p.backends.clear();
    }
    while done.load(Ordering::SeqCst) < 600 {
        let mut next = without_members.clone();
        match reloads % 4 {
            0 => next.listeners[0].routes = vec![to_pool("b")],
            1 => {
                next.pools[0].balance = Balance::LeastConnections;
                next.pools[0].request_timeout_ms = 10_000;
                next.pools.push(PoolConfig::new("extra", vec![]));
                next.listeners.push(listener("other", vec![to_pool("extra")]));
            }
            2 => {
                next.listeners[0].routes = vec![route("b", "/x", "b"), to_pool("a")];
                next.limits.max_body_bytes = 1 << 20;
                next.drain_timeout_ms = 1_000;
            }
            _ => write_cert(dir.path(), &pki.leaf(&["www.example.net"])),
        }
        proxy.reconfigure(next).expect("reconfigure");
        reloads += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::SeqCst);
    while let Some(r) = load.join_next().await {
        r.expect("load task");
    }
    eprintln!("{reloads} reloads during 600 requests");
    assert!(reloads >= 20, "only {reloads} reloads");
    assert_eq!(failures.load(Ordering::SeqCst), 0, "after {reloads} reloads");
    assert_eq!(done.load(Ordering::SeqCst), 600);
}

/// A TLS backend server config presenting `leaf`.
fn tls_backend_config(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[tokio::test]
async fn upstream_ca_file_rotation_is_picked_up() {
    let pki = Pki::new();
    let other = Pki::new();
    let secure = backend_with(
        "secure",
        Mode::Echo(200),
        Some(tls_backend_config(&pki.leaf(&["backend.example.net"]))),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write CA");
    let mut p = pool("p", &[&secure]);
    p.tls = Some(UpstreamTls {
        ca: PemSource::Path(ca.clone()),
        server_name: "backend.example.net".into(),
        client_cert: None,
    });
    p.retry.attempts = 0;
    let cfg = config(vec![listener("web", vec![to_pool("p")])], vec![p]);
    let node = Node::start(cfg.clone()).await;
    let c = client();
    let url = node.url("web", "/");
    assert_eq!(get(&c, &url, &[]).await.status, 200);
    assert!(
        node.proxy
            .reconfigure(cfg.clone())
            .expect("reconfigure")
            .is_empty()
    );

    // The CA file now holds a CA that did not sign the backend: the pool's
    // new client refuses it.
    std::fs::write(&ca, &other.ca_pem).expect("write CA");
    let done = node.proxy.reconfigure(cfg.clone()).expect("reconfigure");
    assert_eq!(done.to_string(), "pool p: tls files re-read");
    assert_eq!(done.pools_changed(), ["p"]);
    assert_eq!(get(&c, &url, &[]).await.status, 502);

    std::fs::write(&ca, &pki.ca_pem).expect("write CA");
    node.proxy.reconfigure(cfg.clone()).expect("reconfigure");
    assert_eq!(get(&c, &url, &[]).await.status, 200);

    // A CA file gone: refused, the running client stays.
    std::fs::remove_file(&ca).expect("remove CA");
    assert!(matches!(
        node.proxy.reconfigure(cfg.clone()),
        Err(ConfigError::Io { .. })
    ));
    assert_eq!(get(&c, &url, &[]).await.status, 200);
}
