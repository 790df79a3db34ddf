//! Timeouts and HTTP/2 limits, over loopback sockets.

mod common;

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
