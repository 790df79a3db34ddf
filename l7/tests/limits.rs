//! Timeouts and HTTP/2 limits, over loopback sockets.

mod common;

use std::time::Duration;

use common::*;
use edge_l7::*;
use http::Request;

#[tokio::test]
async fn request_timeout_gives_504_and_passive_event() {
    let slow = backend_with("slow", Mode::Slow(3_000), None).await;
    let mut p = pool("p", &[&slow]);
    p.request_timeout_ms = 200;
    p.retry.attempts = 0;
    let mut run = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    let r = get(&client(), &run.url("web", "/"), &[]).await;
    assert_eq!(r.status, 504);
    let ev = run.events.recv().await.unwrap();
    assert_eq!(ev.kind, PassiveKind::Timeout);
    assert_eq!(ev.backend, "slow");
}

#[tokio::test]
async fn h2_max_concurrent_streams_is_advertised() {
    let b = backend("b").await;
    let mut cfg = config(vec![listener("web", vec![to_pool("p")])], vec![pool("p", &[&b])]);
    cfg.limits.max_concurrent_streams = 7;
    let run = start(cfg).await;
    let tcp = tokio::net::TcpStream::connect(run.addr("web")).await.unwrap();
    let (client, mut conn) = h2::client::handshake(tcp).await.unwrap();
    // The connection future is driven here (not spawned) so that its
    // settings can be inspected afterwards.
    let mut client = tokio::select! {
        c = client.ready() => c.unwrap(),
        r = &mut conn => panic!("connection ended: {r:?}"),
    };
    let req = Request::get(run.url("web", "/")).body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = tokio::select! {
        r = resp => r.unwrap(),
        r = &mut conn => panic!("connection ended: {r:?}"),
    };
    assert_eq!(resp.status(), 200);
    // By the first response the server's SETTINGS have been applied.
    assert_eq!(conn.max_concurrent_send_streams(), 7);
}

#[tokio::test]
async fn upstream_connections_are_reused_until_idle_timeout() {
    use std::sync::atomic::Ordering;
    let b = backend("b").await;
    let mut p = pool("p", &[&b]);
    p.idle_timeout_ms = 300;
    let run = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    let c = client();
    for _ in 0..5 {
        assert_eq!(get(&c, &run.url("web", "/"), &[]).await.status, 200);
    }
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "keep-alive connection not reused"
    );
    // hyper's pool reaper runs at the idle-timeout interval: after two of
    // them the idle connection is gone and the next request dials again.
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert_eq!(get(&c, &run.url("web", "/"), &[]).await.status, 200);
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        2,
        "idle connection outlived its timeout"
    );
}

#[tokio::test]
async fn stalled_tls_handshake_is_dropped() {
    use tokio::io::AsyncReadExt;
    let b = backend("b").await;
    let pki = Pki::new();
    let leaf = pki.leaf(&["a.example.net"]);
    let mut l = listener("tls", vec![to_pool("p")]);
    l.tls = Some(ListenerTls {
        certs: vec![leaf.cert_config(&["a.example.net"])],
        handshake_timeout_ms: 200,
    });
    let run = start(config(vec![l], vec![pool("p", &[&b])])).await;
    let mut s = tokio::net::TcpStream::connect(run.addr("tls")).await.unwrap();
    // Send nothing: the proxy must close the connection on its own.
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "stalled handshake kept open");
    assert!(buf.is_empty());
}

#[tokio::test]
async fn idle_keep_alive_client_is_closed_by_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = backend("b").await;
    let mut cfg = config(vec![listener("web", vec![to_pool("p")])], vec![pool("p", &[&b])]);
    cfg.limits.header_read_timeout_ms = 300;
    let run = start(cfg).await;
    let mut s = tokio::net::TcpStream::connect(run.addr("web")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Keep-alive, then silence: the wait for the next head is bounded too.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "idle keep-alive connection never closed");
}

#[tokio::test]
async fn max_connections_holds_back_extra_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = backend("b").await;
    let mut cfg = config(vec![listener("web", vec![to_pool("p")])], vec![pool("p", &[&b])]);
    cfg.limits.max_connections = Some(1);
    let run = start(cfg).await;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(run.addr("web")).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // The kernel completes the second handshake, but the proxy does not
    // accept it while the first connection is open.
    let mut second = tokio::net::TcpStream::connect(run.addr("web")).await.unwrap();
    second.write_all(request).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(early.is_err(), "second connection served while at the limit");
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buf))
        .await
        .expect("second connection never served")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn connect_timeout_is_reported_as_such() {
    // A listener that never accepts, with its accept queue filled: further
    // SYNs are dropped by the kernel, so connecting hangs (no refusal).
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let stuck = sock.listen(0).unwrap();
    let addr = stuck.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        match tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
    }
    let probe = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await;
    if probe.is_ok() {
        eprintln!("skipping: this kernel completes connects to a full accept queue");
        return;
    }
    let mut p = PoolConfig::new("p", vec![Backend::new("stuck", addr)]);
    p.connect_timeout_ms = 200;
    p.retry.attempts = 0;
    let mut run = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    let r = get(&client(), &run.url("web", "/"), &[]).await;
    assert_eq!(r.status, 504);
    let ev = run.events.recv().await.unwrap();
    assert_eq!(ev.kind, PassiveKind::ConnectTimeout);
    drop(fillers);
}
