//! Routing, forwarding headers and limits through a real proxy on loopback.

mod common;

use bytes::Bytes;
use common::*;
use edge_l7::*;
use http::Request;
use http_body_util::Full;

fn haproxy_routes(admin_cidr: &str) -> Vec<RouteRule> {
    vec![
        RouteRule::new(
            "admin",
            vec![
                Match::PathPrefix("/admin".into()),
                Match::SourceCidr(vec![admin_cidr.parse().unwrap()]),
            ],
            Action::Pool("admin".into()),
        ),
        RouteRule::new(
            "admin-deny",
            vec![Match::PathPrefix("/admin".into())],
            Action::Deny { status: 403 },
        ),
        RouteRule {
            request_headers: HeaderEdits::default().set("x-route", "api").remove("x-internal"),
            response_headers: HeaderEdits::default()
                .set("x-served-by", "edge")
                .remove("x-backend"),
            ..RouteRule::new(
                "api",
                vec![Match::PathPrefix("/api".into())],
                Action::Pool("api".into()),
            )
        },
        RouteRule::new(
            "static",
            vec![Match::PathPrefix("/static".into())],
            Action::Pool("static".into()),
        ),
        RouteRule::new(
            "ws",
            vec![Match::Header {
                name: "upgrade".into(),
                value: Some("websocket".into()),
            }],
            Action::Pool("ws".into()),
        ),
        RouteRule::new(
            "old",
            vec![Match::PathExact("/old".into())],
            Action::Redirect {
                status: 308,
                location: "https://{host}/new{query}".into(),
            },
        ),
        RouteRule::new("default", vec![], Action::Pool("default".into())),
    ]
}

#[tokio::test]
async fn haproxy_acl_set_routes_denies_and_edits_headers() {
    let api = backend("api").await;
    let admin = backend("admin").await;
    let stat = backend("static").await;
    let ws = backend("ws").await;
    let def = backend("default").await;
    let cfg = config(
        vec![listener("web", haproxy_routes("127.0.0.0/8"))],
        vec![
            pool("api", &[&api]),
            pool("admin", &[&admin]),
            pool("static", &[&stat]),
            pool("ws", &[&ws]),
            pool("default", &[&def]),
        ],
    );
    let run = start(cfg).await;
    let c = client();

    let r = get(&c, &run.url("web", "/api/v1/users"), &[("x-internal", "1")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "api");
    assert_eq!(r.seen_header("x-route").as_deref(), Some("api"));
    assert_eq!(r.seen_header("x-internal"), None);
    assert_eq!(r.headers["x-served-by"], "edge");
    assert!(!r.headers.contains_key("x-backend"));

    assert_eq!(get(&c, &run.url("web", "/admin/x"), &[]).await.backend(), "admin");
    assert_eq!(
        get(&c, &run.url("web", "/static/a.css"), &[]).await.backend(),
        "static"
    );
    assert_eq!(
        get(&c, &run.url("web", "/chat"), &[("upgrade", "websocket")])
            .await
            .backend(),
        "ws"
    );
    assert_eq!(get(&c, &run.url("web", "/"), &[]).await.backend(), "default");
    // The request target reaches the backend as sent (routing alone sees
    // the normalized path).
    for target in ["/api/./v1//x?q=a%20b&r=1", "/a/b/../c"] {
        let r = get(&c, &run.url("web", target), &[]).await;
        assert_eq!(r.json()["path"], target, "{target}");
    }

    let connect = Request::connect(format!("{}", run.addr("web")))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&c, connect).await.status, 405);

    let r = get(&c, &run.url("web", "/old?x=1"), &[("host", "www.example.net")]).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "https://www.example.net/new?x=1");

    // Hot-swap the table: loopback is no longer allow-listed for /admin.
    run.proxy
        .set_routes("web", &haproxy_routes("203.0.113.0/24"))
        .unwrap();
    let r = get(&c, &run.url("web", "/admin/x"), &[]).await;
    assert_eq!(r.status, 403);
    let r = get(&c, &run.url("web", "//admin/x"), &[]).await;
    assert_eq!(r.status, 403, "path normalization must not bypass the ACL");
    // A route to an unknown pool is refused and the old table stays.
    let bad = vec![RouteRule::new("x", vec![], Action::Pool("nope".into()))];
    assert!(run.proxy.set_routes("web", &bad).is_err());
    assert_eq!(get(&c, &run.url("web", "/api"), &[]).await.backend(), "api");
}

#[tokio::test]
async fn host_routing_and_https_redirect() {
    let a = backend("a").await;
    let w = backend("w").await;
    let routes = vec![
        RouteRule::new(
            "insecure",
            vec![Match::Host("secure.example.net".into()), Match::Tls(false)],
            Action::RedirectHttps {
                status: 301,
                port: Some(8443),
            },
        ),
        RouteRule::new(
            "a",
            vec![Match::Host("a.example.net".into())],
            Action::Pool("a".into()),
        ),
        RouteRule::new(
            "w",
            vec![Match::Host("*.example.net".into())],
            Action::Pool("w".into()),
        ),
    ];
    let run = start(config(
        vec![listener("web", routes)],
        vec![pool("a", &[&a]), pool("w", &[&w])],
    ))
    .await;
    let c = client();
    let url = run.url("web", "/p?q=1");
    assert_eq!(
        get(&c, &url, &[("host", "A.example.net:80")]).await.backend(),
        "a"
    );
    assert_eq!(get(&c, &url, &[("host", "x.y.example.net")]).await.backend(), "w");
    assert_eq!(get(&c, &url, &[("host", "example.org")]).await.status, 404);
    let r = get(&c, &url, &[("host", "secure.example.net")]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://secure.example.net:8443/p?q=1");
}

#[tokio::test]
async fn xff_spoof_from_untrusted_client_is_replaced() {
    let b = backend("b").await;
    let run = start(config(
        vec![listener("web", vec![to_pool("p")])],
        vec![pool("p", &[&b])],
    ))
    .await;
    let c = client();
    let r = get(
        &c,
        &run.url("web", "/"),
        &[
            ("x-forwarded-for", "198.18.0.1"),
            ("forwarded", "for=198.18.0.1"),
            ("x-forwarded-proto", "https"),
            ("host", "www.example.net"),
        ],
    )
    .await;
    assert_eq!(r.seen_header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.seen_header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        r.seen_header("x-forwarded-host").as_deref(),
        Some("www.example.net")
    );
    let fwd = r.seen_header("forwarded").unwrap();
    assert!(
        fwd.starts_with("for=127.0.0.1;by=127.0.0.1;host=www.example.net;proto=http"),
        "{fwd}"
    );
    // A request ID was generated, forwarded and echoed back.
    let rid = r.seen_header("x-request-id").unwrap();
    assert_eq!(rid.len(), 32);
    assert_eq!(r.headers["x-request-id"], rid.as_str());
    // A client-supplied request ID is kept.
    let r = get(&c, &run.url("web", "/"), &[("x-request-id", "abc-123")]).await;
    assert_eq!(r.seen_header("x-request-id").as_deref(), Some("abc-123"));
}

#[tokio::test]
async fn xff_from_trusted_proxy_is_appended() {
    let b = backend("b").await;
    let mut cfg = config(vec![listener("web", vec![to_pool("p")])], vec![pool("p", &[&b])]);
    cfg.forwarding.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let run = start(cfg).await;
    let r = get(
        &client(),
        &run.url("web", "/"),
        &[("x-forwarded-for", "198.18.0.1"), ("x-forwarded-proto", "https")],
    )
    .await;
    assert_eq!(
        r.seen_header("x-forwarded-for").as_deref(),
        Some("198.18.0.1, 127.0.0.1")
    );
    assert_eq!(r.seen_header("x-forwarded-proto").as_deref(), Some("https"));
}

#[tokio::test]
async fn rate_limit_returns_429() {
    let b = backend("b").await;
    let mut cfg = config(vec![listener("web", vec![to_pool("p")])], vec![pool("p", &[&b])]);
    // Refill so slow that no token comes back during the test.
    cfg.rate_limit = Some(RateLimitConfig {
        requests_per_second: 0.001,
        burst: 2,
        max_clients: 1000,
    });
    let run = start(cfg).await;
    let c = client();
    assert_eq!(get(&c, &run.url("web", "/"), &[]).await.status, 200);
    assert_eq!(get(&c, &run.url("web", "/"), &[]).await.status, 200);
    let r = get(&c, &run.url("web", "/"), &[]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "1");
    assert!(
        run.metrics()
            .contains("l7_rate_limited_total{listener=\"web\"} 1")
    );
}

/// A request body of unknown length, streamed in chunks.
struct Chunks(Vec<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        std::task::Poll::Ready(if this.0.is_empty() {
            None
        } else {
            Some(Ok(http_body::Frame::data(this.0.remove(0))))
        })
    }
}

#[tokio::test]
async fn body_limit_returns_413() {
    let b = backend("b").await;
    let mut cfg = config(vec![listener("web", vec![to_pool("p")])], vec![pool("p", &[&b])]);
    cfg.limits.max_body_bytes = 1024;
    let run = start(cfg).await;
    let c = client();
    let small = Request::post(run.url("web", "/up"))
        .body(Full::new(Bytes::from(vec![b'x'; 1000])))
        .unwrap();
    let r = send(&c, small).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 1000);
    let big = Request::post(run.url("web", "/up"))
        .body(Full::new(Bytes::from(vec![b'x'; 4096])))
        .unwrap();
    assert_eq!(send(&c, big).await.status, 413);

    // Chunked (no Content-Length): the limit trips while streaming.
    let chunked: hyper_util::client::legacy::Client<_, Chunks> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = Request::post(run.url("web", "/up"))
        .body(Chunks(vec![Bytes::from(vec![b'y'; 800]); 4]))
        .unwrap();
    let resp = chunked.request(req).await.unwrap();
    assert_eq!(resp.status(), 413);
    let req = Request::post(run.url("web", "/up"))
        .body(Chunks(vec![Bytes::from(vec![b'y'; 300]); 3]))
        .unwrap();
    assert_eq!(chunked.request(req).await.unwrap().status(), 200);
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let b = backend("b").await;
    let mut cfg = config(vec![listener("web", vec![to_pool("p")])], vec![pool("p", &[&b])]);
    cfg.limits.max_header_bytes = 8192;
    let run = start(cfg).await;
    let big = "v".repeat(10_000);
    let resp = client()
        .request(
            Request::get(run.url("web", "/"))
                .header("x-big", big.as_str())
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
}

#[tokio::test]
async fn slow_client_header_timeout_closes_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = backend("b").await;
    let mut cfg = config(vec![listener("web", vec![to_pool("p")])], vec![pool("p", &[&b])]);
    cfg.limits.header_read_timeout_ms = 200;
    let run = start(cfg).await;
    let mut s = tokio::net::TcpStream::connect(run.addr("web")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Never finish the head: the proxy must give up on us.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after the header timeout");
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn metrics_and_graceful_shutdown() {
    let b = backend("b").await;
    let run = start(config(
        vec![listener("web", vec![to_pool("p")])],
        vec![pool("p", &[&b])],
    ))
    .await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(get(&c, &run.url("web", "/"), &[]).await.status, 200);
    }
    let m = run.metrics();
    assert!(
        m.contains(
            "l7_requests_total{listener=\"web\",route=\"p\",pool=\"p\",backend=\"b\",status=\"2xx\"} 3"
        ),
        "{m}"
    );
    assert!(
        m.contains("l7_request_duration_seconds_count{listener=\"web\",pool=\"p\"} 3"),
        "{m}"
    );
    assert!(m.contains("l7_active_connections{listener=\"web\"} 1"), "{m}");
    let addr = run.addr("web");
    run.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

/// Requests in flight when the listener is told to stop are answered: over
/// HTTP/1.1 and as several concurrent streams of one h2 connection (h2
/// streams run inside their connection's task, which the drain waits for).
#[tokio::test]
async fn in_flight_requests_finish_during_a_graceful_shutdown() {
    let b = backend_with("slow", Mode::Slow(400), None).await;
    let run = start(config(
        vec![listener("web", vec![to_pool("p")])],
        vec![pool("p", &[&b])],
    ))
    .await;
    let h1 = client();
    let h2 = h2_client();
    // One h2 connection first, so that the concurrent requests below are
    // streams of it rather than connections of their own.
    assert_eq!(get(&h2, &run.url("web", "/warm"), &[]).await.status, 200);
    let mut inflight = tokio::task::JoinSet::new();
    for i in 0..5 {
        let (c, url) = (h2.clone(), run.url("web", &format!("/h2/{i}")));
        inflight.spawn(async move { get(&c, &url, &[]).await });
    }
    let (c, url) = (h1.clone(), run.url("web", "/h1"));
    inflight.spawn(async move { get(&c, &url, &[]).await });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let addr = run.addr("web");
    let stopping = tokio::spawn(run.shutdown());
    let mut paths = Vec::new();
    while let Some(r) = inflight.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, 200);
        paths.push(r.json()["path"].as_str().unwrap().to_string());
    }
    paths.sort();
    assert_eq!(paths, ["/h1", "/h2/0", "/h2/1", "/h2/2", "/h2/3", "/h2/4"]);
    tokio::time::timeout(std::time::Duration::from_secs(10), stopping)
        .await
        .expect("drain did not end")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn a_connection_accepted_just_before_a_drain_gets_its_first_request_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = backend("b").await;
    let run = start(config(
        vec![listener("web", vec![to_pool("p")])],
        vec![pool("p", &[&b])],
    ))
    .await;
    // Connected (and accepted) before the drain, request sent after it: an
    // upgrade's old process hands its sockets over at any moment, and the
    // client of such a connection must not see it closed unanswered.
    let mut conn = tokio::net::TcpStream::connect(run.addr("web")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let stopping = tokio::spawn(run.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    conn.write_all(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    tokio::time::timeout(std::time::Duration::from_secs(10), stopping)
        .await
        .expect("drain did not end")
        .unwrap();
}

#[tokio::test]
async fn ipv6_loopback_std_listener() {
    let Ok(back_sock) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("skipping: no IPv6 loopback");
        return;
    };
    drop(back_sock);
    let b = backend("b").await;
    let cfg = config(vec![listener("v6", vec![to_pool("p")])], vec![pool("p", &[&b])]);
    let mut registry = prometheus_client::registry::Registry::default();
    let (proxy, _events) = Proxy::new(cfg, &mut registry).unwrap();
    let sock = std::net::TcpListener::bind("[::1]:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let p = proxy.clone();
    let task = tokio::spawn(async move {
        p.serve_std("v6", sock, async move {
            let _ = stop_rx.await;
        })
        .await
    });
    let r = get(&client(), &format!("http://{addr}/six"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seen_header("x-forwarded-for").as_deref(), Some("::1"));
    let fwd = r.seen_header("forwarded").unwrap();
    assert!(fwd.starts_with("for=\"[::1]\";by=\"[::1]\""), "{fwd}");
    // Unknown listener names are an error, not a silent no-op.
    let other = tokio::net::TcpListener::bind(LOCAL).await.unwrap();
    assert!(matches!(
        proxy.serve("nope", other, async {}).await,
        Err(ServeError::UnknownListener(_))
    ));
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn garbage_input_does_not_break_the_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = backend("b").await;
    let run = start(config(
        vec![listener("web", vec![to_pool("p")])],
        vec![pool("p", &[&b])],
    ))
    .await;
    let mut seed: u64 = 0x1234_5678;
    let mut junk = |n: usize| {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect::<Vec<u8>>()
    };
    let inputs: Vec<Vec<u8>> = vec![
        junk(64),
        junk(4096),
        b"GET\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".to_vec(),
        [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), junk(256)].concat(),
        b"GET /%zz%00\xff HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n".to_vec(),
    ];
    for input in inputs {
        let mut s = tokio::net::TcpStream::connect(run.addr("web")).await.unwrap();
        let _ = s.write_all(&input).await;
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains(" 200 "), "garbage was proxied: {text}");
    }
    assert_eq!(get(&client(), &run.url("web", "/"), &[]).await.status, 200);
}
