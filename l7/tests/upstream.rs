//! Backend selection through the proxy: persistence, retries, passive
//! health, ejection and backups, over loopback sockets.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use edge_l7::*;
use http::Request;
use http_body_util::Full;

fn sticky_pool(name: &str, backends: &[&TestBackend]) -> PoolConfig {
    let mut p = pool(name, backends);
    p.balance = Balance::RoundRobin;
    p.sticky = Some(StickyConfig {
        cookie: "EDGE_SRV".into(),
        secret: Some("shared-secret".into()),
    });
    p
}

fn cookie_from(r: &Reply) -> Option<String> {
    r.headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

#[tokio::test]
async fn sticky_cookie_pins_and_repins_after_backend_dies() {
    let b = [backend("b0").await, backend("b1").await, backend("b2").await];
    let cfg = config(
        vec![listener("web", vec![to_pool("p")])],
        vec![sticky_pool("p", &[&b[0], &b[1], &b[2]])],
    );
    let mut run = start(cfg).await;
    let c = client();
    let url = run.url("web", "/");

    let first = get(&c, &url, &[]).await;
    let cookie = cookie_from(&first).expect("first response sets the cookie");
    let set = first.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(!set.contains("Secure"), "no Secure flag in clear HTTP: {set}");
    assert!(!cookie.contains("127.0.0.1"), "cookie must be opaque: {cookie}");
    let pinned = first.backend();
    // Round robin would rotate; the cookie keeps us on one backend.
    for _ in 0..6 {
        let r = get(&c, &url, &[("cookie", cookie.as_str())]).await;
        assert_eq!(r.backend(), pinned);
        assert!(cookie_from(&r).is_none(), "no re-pin while the backend is up");
    }

    let dead = b.iter().find(|x| x.name == pinned).unwrap();
    dead.kill();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = get(&c, &url, &[("cookie", cookie.as_str())]).await;
    assert_eq!(r.status, 200);
    let moved = r.backend();
    assert_ne!(moved, pinned);
    let new_cookie = cookie_from(&r).expect("re-pinned with a new cookie");
    assert_ne!(new_cookie, cookie);
    for _ in 0..4 {
        assert_eq!(
            get(&c, &url, &[("cookie", new_cookie.as_str())]).await.backend(),
            moved
        );
    }
    // The failure was reported to passive health.
    let ev = tokio::time::timeout(Duration::from_secs(5), run.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.backend, pinned);
    assert_eq!(ev.pool, "p");
    // It had answered the first request and the six pinned ones.
    assert_eq!(ev.preceding_successes, 7);
    assert!(
        matches!(ev.kind, PassiveKind::ConnectFailure | PassiveKind::Reset),
        "{ev:?}"
    );

    // Once the controller ejects it, the old cookie re-pins without a
    // failed attempt.
    let members: Vec<Backend> = b.iter().map(|x| x.backend().healthy(x.name != pinned)).collect();
    run.proxy.set_backends("p", members).unwrap();
    let r = get(&c, &url, &[("cookie", cookie.as_str())]).await;
    assert_ne!(r.backend(), pinned);
    assert!(cookie_from(&r).is_some());
}

#[tokio::test]
async fn sticky_cookie_is_secure_over_tls_listener() {
    use hyper_util::rt::TokioIo;
    let b = backend("b0").await;
    let pki = Pki::new();
    let leaf = pki.leaf(&["www.example.net"]);
    let mut l = listener("tls", vec![to_pool("p")]);
    l.tls = Some(ListenerTls {
        certs: vec![leaf.cert_config(&["www.example.net"])],
        handshake_timeout_ms: 5_000,
    });
    let run = start(config(vec![l], vec![sticky_pool("p", &[&b])])).await;
    let tcp = tokio::net::TcpStream::connect(run.addr("tls")).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls_client(&pki.ca_pem, &[b"http/1.1"]))
        .connect("www.example.net".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get("/")
                .header("host", "www.example.net")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let set = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("Secure") && set.contains("HttpOnly"), "{set}");
}

#[tokio::test]
async fn retries_land_on_another_backend() {
    let bad = backend_status("bad", 503).await;
    let good = backend("good").await;
    let mut p = pool("p", &[&bad, &good]);
    p.balance = Balance::RoundRobin;
    p.retry.attempts = 1;
    let mut run = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    let c = client();
    for _ in 0..4 {
        let r = get(&c, &run.url("web", "/"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), "good");
    }
    assert!(
        run.metrics().contains("l7_retries_total{pool=\"p\"} 2"),
        "{}",
        run.metrics()
    );
    let ev = run.events.recv().await.unwrap();
    assert_eq!(ev.kind, PassiveKind::ServerError(503));
    assert_eq!(ev.backend, "bad");
    assert_eq!(ev.preceding_successes, 0, "consecutive failures");

    // POST is not idempotent: a 503 is passed through, never resent.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let req = Request::post(run.url("web", "/"))
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        statuses.push(send(&c, req).await.status.as_u16());
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[tokio::test]
async fn connect_failure_is_retried_and_reported() {
    // A port that was just bound and released: connecting is refused.
    let dead_addr = {
        let l = tokio::net::TcpListener::bind(LOCAL).await.unwrap();
        l.local_addr().unwrap()
    };
    let good = backend("good").await;
    let mut p = PoolConfig::new("p", vec![Backend::new("dead", dead_addr), good.backend()]);
    p.balance = Balance::RoundRobin;
    p.retry.attempts = 1;
    let mut run = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    let c = client();
    // POST with a small body: never reached the dead backend, so it may be
    // resent even though POST is not idempotent.
    for _ in 0..2 {
        let req = Request::post(run.url("web", "/"))
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let r = send(&c, req).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), "good");
        assert_eq!(r.json()["body_len"], 7);
    }
    let ev = run.events.recv().await.unwrap();
    assert_eq!(ev.backend, "dead");
    assert_eq!(ev.address, dead_addr);
    assert_eq!(ev.kind, PassiveKind::ConnectFailure);
    assert!(
        run.metrics()
            .contains("l7_upstream_errors_total{pool=\"p\",backend=\"dead\",kind=\"connect_failure\"} 1")
    );

    // Without retries the client sees 502.
    let mut p = PoolConfig::new("p", vec![Backend::new("dead", dead_addr)]);
    p.retry.attempts = 0;
    let run2 = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    assert_eq!(get(&c, &run2.url("web", "/"), &[]).await.status, 502);
}

#[tokio::test]
async fn ejected_backends_are_excluded_and_backups_take_over() {
    let a = backend("a").await;
    let b = backend("b").await;
    let spare = backend("spare").await;
    let mut p = PoolConfig::new("p", vec![a.backend(), b.backend(), spare.backend().backup()]);
    p.balance = Balance::RoundRobin;
    let run = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    let c = client();
    let url = run.url("web", "/");
    let mut seen = HashSet::new();
    for _ in 0..6 {
        seen.insert(get(&c, &url, &[]).await.backend());
    }
    assert_eq!(seen, HashSet::from(["a".to_string(), "b".to_string()]));

    run.proxy
        .set_backends(
            "p",
            vec![a.backend().healthy(false), b.backend(), spare.backend().backup()],
        )
        .unwrap();
    for _ in 0..4 {
        assert_eq!(get(&c, &url, &[]).await.backend(), "b");
    }
    run.proxy
        .set_backends(
            "p",
            vec![
                a.backend().healthy(false),
                b.backend().healthy(false),
                spare.backend().backup(),
            ],
        )
        .unwrap();
    for _ in 0..3 {
        assert_eq!(get(&c, &url, &[]).await.backend(), "spare");
    }
    run.proxy
        .set_backends(
            "p",
            vec![
                a.backend().healthy(false),
                b.backend().healthy(false),
                spare.backend().backup().healthy(false),
            ],
        )
        .unwrap();
    assert_eq!(get(&c, &url, &[]).await.status, 503);
    assert!(run.proxy.set_backends("nope", vec![]).is_err());
}

#[tokio::test]
async fn consistent_hash_on_header_sticks_per_key() {
    let bs = [backend("h0").await, backend("h1").await, backend("h2").await];
    let mut p = pool("p", &[&bs[0], &bs[1], &bs[2]]);
    p.balance = Balance::ConsistentHash {
        key: HashKey::Header("x-user".into()),
    };
    let run = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    let c = client();
    let url = run.url("web", "/");
    let mut used = HashSet::new();
    for user in 0..30 {
        let u = format!("user-{user}");
        let first = get(&c, &url, &[("x-user", u.as_str())]).await.backend();
        for _ in 0..2 {
            assert_eq!(get(&c, &url, &[("x-user", u.as_str())]).await.backend(), first);
        }
        used.insert(first);
    }
    assert!(used.len() >= 2, "30 keys all hashed to {used:?}");
}

#[tokio::test]
async fn h2_upstream_multiplexes_one_connection_per_backend() {
    use std::sync::atomic::Ordering;
    let g = backend("g").await;
    let mut p = pool("p", &[&g]);
    p.protocol = UpstreamProtocol::Http2;
    let rewrite = RouteRule {
        request_headers: HeaderEdits::default().set("host", "internal.example.net"),
        ..RouteRule::new(
            "rewrite",
            vec![Match::PathPrefix("/rewrite".into())],
            Action::Pool("p".into()),
        )
    };
    let run = start(config(
        vec![listener("web", vec![rewrite, to_pool("p")])],
        vec![p],
    ))
    .await;
    let c = client();
    // A burst of concurrent first requests must share one connection.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (c, url) = (c.clone(), run.url("web", &format!("/r{i}")));
        tasks.push(tokio::spawn(async move { get(&c, &url, &[]).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(g.accepted.load(Ordering::SeqCst), 1);
    let r = get(&c, &run.url("web", "/x"), &[("host", "api.example.net")]).await;
    assert_eq!(r.json()["version"], "HTTP/2.0");
    assert_eq!(r.json()["authority"], "api.example.net");
    assert_eq!(r.seen_header("host"), None, "Host is replaced by :authority");
    // A Host rewrite by a rule becomes the :authority.
    let r = get(&c, &run.url("web", "/rewrite"), &[("host", "api.example.net")]).await;
    assert_eq!(r.json()["authority"], "internal.example.net");
}

#[tokio::test]
async fn recovering_backend_is_slow_started() {
    let a = backend("a").await;
    let b = backend("b").await;
    let mut p = pool("p", &[&a, &b]);
    p.balance = Balance::RoundRobin;
    // Far longer than the test: b stays near the start of its ramp (10 %).
    p.slow_start_ms = 600_000;
    let run = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    run.proxy
        .set_backends("p", vec![a.backend(), b.backend().healthy(false)])
        .unwrap();
    run.proxy
        .set_backends("p", vec![a.backend(), b.backend()])
        .unwrap();
    let c = client();
    let mut to_b = 0;
    for _ in 0..400 {
        if get(&c, &run.url("web", "/"), &[]).await.backend() == "b" {
            to_b += 1;
        }
    }
    // Plain round robin would send 200; b is admitted on ~10 % of its turns,
    // so ~20 (P(0) = 0.9^200, negligible).
    assert!(to_b > 0, "a recovering backend must still get some traffic");
    assert!(to_b < 100, "slow start not applied: {to_b} of 400");
}

#[tokio::test]
async fn broken_response_body_is_reported() {
    let t = backend_with("trunc", Mode::Truncate, None).await;
    let mut run = start(config(
        vec![listener("web", vec![to_pool("p")])],
        vec![pool("p", &[&t])],
    ))
    .await;
    let resp = client()
        .request(
            Request::get(run.url("web", "/"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    use http_body_util::BodyExt;
    assert!(
        resp.into_body().collect().await.is_err(),
        "truncation must reach the client"
    );
    let ev = tokio::time::timeout(Duration::from_secs(5), run.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.kind, PassiveKind::Reset);
    assert_eq!(ev.backend, "trunc");
}

/// Keep-alive towards backends: sequential requests reuse one connection;
/// when the backend closes an idle connection, the next request goes out
/// on a new one without the client seeing an error (the request had not
/// left), and passive health hears nothing about it.
#[tokio::test]
async fn idle_connections_are_reused_and_a_closed_one_is_replaced_silently() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A raw HTTP/1.1 backend that answers one request per connection with
    // keep-alive, then closes the connection 50 ms later (an idle timeout
    // shorter than the proxy's).
    let tcp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp_listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = tcp_listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                // Serve requests until 400 ms pass without one (long enough
                // for back-to-back requests on a busy test machine).
                loop {
                    let read =
                        tokio::time::timeout(std::time::Duration::from_millis(400), tcp.read(&mut buf)).await;
                    let Ok(Ok(n)) = read else { return };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        got.drain(..end + 4);
                        let body = b"{\"backend\":\"ka\"}";
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if tcp.write_all(head.as_bytes()).await.is_err() || tcp.write_all(body).await.is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    let mut p = PoolConfig::new("p", vec![Backend::new("ka", addr)]);
    p.retry.attempts = 0;
    let mut run = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    let c = client();
    for _ in 0..3 {
        let r = get(&c, &run.url("web", "/"), &[]).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one keep-alive connection for back-to-back requests"
    );
    // Let the backend close it, then ask again: no error, a new connection.
    // A POST: never resent once it may have reached a backend, so this
    // holds only if the closed connection is noticed before it is used.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let r = send(
        &c,
        Request::post(run.url("web", "/"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert!(
        run.events.try_recv().is_err(),
        "a stale idle connection is not a backend failure"
    );
    server.abort();
}

/// A raw HTTP/1.1 backend answering by path with hand-written responses
/// (chunked with trailers, close-delimited, interim 100, HEAD, a body in
/// pieces, an echo of the request), counting connections.
async fn scripted_backend() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end;
                        }
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&got[..end]).to_string();
                    got.drain(..end + 4);
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while got.len() < len {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body: Vec<u8> = got.drain(..len).collect();
                    let mut parts = head.lines().next().unwrap().split(' ');
                    let (method, path) = (
                        parts.next().unwrap().to_string(),
                        parts.next().unwrap().to_string(),
                    );
                    let pieces: Vec<Vec<u8>> = match path.as_str() {
                        "/chunked" => vec![
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n5\r\nhel".to_vec(),
                            b"lo\r\n6;ext=1\r\n world\r\n".to_vec(),
                            b"0\r\nx-sum: 11\r\n\r\n".to_vec(),
                        ],
                        "/continue" => vec![
                            b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                            b"HTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone".to_vec(),
                        ],
                        "/head" => vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec()],
                        "/pieces" => vec![
                            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234".to_vec(),
                            b"56789".to_vec(),
                        ],
                        "/close" => {
                            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil ").await;
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            let _ = tcp.write_all(b"close").await;
                            return;
                        }
                        _ => {
                            let echo = format!(
                                "{method} {path} {}|{}",
                                String::from_utf8_lossy(&body),
                                head.lines().skip(1).filter(|l| !l.starts_with("x-") && !l.starts_with("forwarded")).collect::<Vec<_>>().join(";")
                            );
                            vec![format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{echo}", echo.len()).into_bytes()]
                        }
                    };
                    for p in pieces {
                        if tcp.write_all(&p).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// The proxy's own HTTP/1.1 client towards backends: every way of framing
/// a response arrives intact (chunked with trailers, interim 100, HEAD,
/// a body in several reads, close-delimited), requests go out framed by
/// their body, and keep-alive responses leave the connection reusable.
#[tokio::test]
async fn http1_upstream_frames_every_kind_of_response() {
    use http_body_util::BodyExt;
    use std::sync::atomic::Ordering;
    let (addr, accepted) = scripted_backend().await;
    let mut p = PoolConfig::new("p", vec![Backend::new("s", addr)]);
    p.retry.attempts = 0;
    let run = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    let c = client();

    let r = get(&c, &run.url("web", "/chunked"), &[]).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"hello world"[..]));
    // Trailers reach an HTTP/2 client.
    let resp = h2_client()
        .request(
            Request::get(run.url("web", "/chunked"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-sum"], "11");
    assert_eq!(collected.to_bytes(), "hello world");

    let r = get(&c, &run.url("web", "/continue"), &[]).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (201, &b"done"[..]));
    let r = send(
        &c,
        Request::head(run.url("web", "/head"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-length"], "5");
    assert!(r.body.is_empty());
    let r = get(&c, &run.url("web", "/pieces"), &[]).await;
    assert_eq!(&r.body[..], b"0123456789");
    let r = send(
        &c,
        Request::post(run.url("web", "/echo?a=1"))
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap(),
    )
    .await;
    let echo = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(echo.starts_with("POST /echo?a=1 payload|"), "{echo}");
    assert!(echo.contains("content-length: 7"), "{echo}");
    assert!(echo.contains(&format!("host: {}", run.addr("web"))), "{echo}");
    let r = send(
        &c,
        Request::post(run.url("web", "/empty"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    let echo = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(
        echo.contains("content-length: 0"),
        "POST frames an empty body: {echo}"
    );
    // Every response so far was keep-alive on one connection (the h2
    // client's request ran on a different serving connection, same pool).
    let before_close = accepted.load(Ordering::SeqCst);
    assert_eq!(before_close, 1, "keep-alive exchanges share one connection");

    let r = get(&c, &run.url("web", "/close"), &[]).await;
    assert_eq!(&r.body[..], b"until close");
    // That connection is spent; the next exchange opens another.
    let r = get(&c, &run.url("web", "/x"), &[]).await;
    assert!(String::from_utf8_lossy(&r.body).starts_with("GET /x |"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    run.shutdown().await;
}
