//! WebSocket, gRPC-style h2 with trailers, h2c via curl, TLS with SNI and
//! TLS/mTLS to backends, over loopback sockets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use edge_l7::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn websocket_echo_through_proxy() {
    let web = backend("web").await;
    let ws = backend("ws").await;
    let routes = vec![
        RouteRule::new(
            "ws",
            vec![Match::Header {
                name: "upgrade".into(),
                value: Some("websocket".into()),
            }],
            Action::Pool("ws".into()),
        ),
        to_pool("web"),
    ];
    let mut ws_pool = pool("ws", &[&ws]);
    ws_pool.tunnel_idle_timeout_ms = 500;
    let run = start(config(
        vec![listener("edge", routes)],
        vec![pool("web", &[&web]), ws_pool],
    ))
    .await;

    let mut s = tokio::net::TcpStream::connect(run.addr("edge")).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    s.write_all(
        format!(
            "GET /chat HTTP/1.1\r\nHost: www.example.net\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    // RFC 6455's own example key/accept pair.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert!(head.contains("x-backend: ws"), "{head}");

    for msg in ["hello edge", "second frame"] {
        s.write_all(&encode_frame(0x1, msg.as_bytes(), Some([1, 2, 3, 4])))
            .await
            .unwrap();
        let (op, payload) = read_frame(&mut s).await.unwrap();
        assert_eq!(op, 0x1);
        assert_eq!(payload, msg.as_bytes());
    }
    // A 3000-byte frame crosses the 126-length encoding.
    let big = vec![b'z'; 3000];
    s.write_all(&encode_frame(0x2, &big, Some([9, 8, 7, 6])))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut s).await.unwrap(), (0x2, big));

    // Idle tunnel is closed by the proxy after its idle timeout.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "tunnel not closed after idle timeout");
}

#[tokio::test]
async fn grpc_unary_over_h2c_keeps_trailers() {
    let g1 = backend("g1").await;
    let g2 = backend("g2").await;
    let mut p = pool("grpc", &[&g1, &g2]);
    p.protocol = UpstreamProtocol::Http2;
    p.balance = Balance::RoundRobin;
    let run = start(config(vec![listener("edge", vec![to_pool("grpc")])], vec![p])).await;
    // One h2 connection from the client; requests on it are still balanced
    // per request (stream), not per connection.
    let c = h2_client();
    let mut seen = std::collections::HashSet::new();
    for i in 0..4 {
        let req = Request::post(run.url("edge", "/demo.Greeter/SayHello"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(grpc_frame(format!("n{i}").as_bytes())))
            .unwrap();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers preserved");
        assert_eq!(
            trailers["grpc-status"], "0",
            "te: trailers must reach the backend"
        );
        assert_eq!(trailers["grpc-message"], "ok");
        let data = collected.to_bytes();
        let text = String::from_utf8_lossy(&data[5..]).to_string();
        assert!(text.starts_with(&format!("hello n{i} from ")), "{text}");
        // h2 on the backend leg, with the client's :authority kept.
        let tail = format!("via HTTP/2.0 for {}", run.addr("edge"));
        assert!(text.ends_with(&tail), "{text}");
        seen.insert(text.split(' ').nth(3).unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "streams were not balanced: {seen:?}");
}

#[tokio::test]
async fn curl_h2_prior_knowledge() {
    if !curl_available() {
        return;
    }
    let b = backend("b").await;
    let run = start(config(
        vec![listener("edge", vec![to_pool("p")])],
        vec![pool("p", &[&b])],
    ))
    .await;
    let out = tokio::process::Command::new("/usr/bin/curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .arg(run.url("edge", "/hello"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, trailer) = text.rsplit_once('\n').unwrap();
    assert_eq!(trailer, "2 200");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["backend"], "b");
    assert_eq!(json["path"], "/hello");
    // h2 downstream, HTTP/1.1 to the backend, Host rebuilt from :authority.
    assert_eq!(json["version"], "HTTP/1.1");
    assert_eq!(json["headers"]["host"], run.addr("edge").to_string());
}

async fn peer_cert(addr: std::net::SocketAddr, ca: &str, sni: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls_client(ca, &[b"h2", b"http/1.1"]))
        .connect(sni.to_string().try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    (
        conn.peer_certificates().unwrap()[0].to_vec(),
        conn.alpn_protocol().map(|p| p.to_vec()),
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

#[tokio::test]
async fn tls_with_two_sni_certs_picks_the_right_one() {
    let b = backend("b").await;
    let pki = Pki::new();
    let a = pki.leaf(&["a.example.net"]);
    let w = pki.leaf(&["*.b.example.net", "b.example.net"]);
    let l = tls_listener(
        "tls",
        vec![
            a.cert_config(&["a.example.net"]),
            w.cert_config(&["*.b.example.net", "b.example.net"]),
        ],
        vec![to_pool("p")],
    );
    let run = start(config(vec![l], vec![pool("p", &[&b])])).await;
    let addr = run.addr("tls");
    let (cert, alpn) = peer_cert(addr, &pki.ca_pem, "a.example.net").await;
    assert_eq!(cert, a.der);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(peer_cert(addr, &pki.ca_pem, "b.example.net").await.0, w.der);
    assert_eq!(peer_cert(addr, &pki.ca_pem, "x.b.example.net").await.0, w.der);

    // h2 over TLS (ALPN) to the proxy, request forwarded with proto https.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls_client(&pki.ca_pem, &[b"h2"]))
        .connect("a.example.net".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get("https://a.example.net/x")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["headers"]["x-forwarded-proto"], "https");
    assert_eq!(json["headers"]["host"], "a.example.net");

    // Hot swap: a new certificate for a.example.net, served to new handshakes.
    let a2 = pki.leaf(&["a.example.net"]);
    run.proxy
        .set_certificates(
            "tls",
            &[
                a2.cert_config(&["a.example.net"]),
                w.cert_config(&["b.example.net"]),
            ],
        )
        .unwrap();
    assert_eq!(peer_cert(addr, &pki.ca_pem, "a.example.net").await.0, a2.der);
    // A broken PEM is refused and the current certificates stay.
    let broken = CertConfig {
        server_names: vec!["a.example.net".into()],
        cert: PemSource::Pem("not a pem".into()),
        key: PemSource::Pem(a2.key_pem.clone()),
    };
    assert!(run.proxy.set_certificates("tls", &[broken]).is_err());
    assert_eq!(peer_cert(addr, &pki.ca_pem, "a.example.net").await.0, a2.der);
}

#[tokio::test]
async fn tls_1_1_clients_are_refused() {
    // rustls cannot even speak TLS 1.1, so send a raw TLS 1.1 ClientHello
    // record and expect an alert or a close, never a ServerHello.
    let b = backend("b").await;
    let pki = Pki::new();
    let a = pki.leaf(&["a.example.net"]);
    let l = tls_listener("tls", vec![a.cert_config(&["a.example.net"])], vec![to_pool("p")]);
    let run = start(config(vec![l], vec![pool("p", &[&b])])).await;
    let mut hello = vec![
        0x03, 0x02, // client_version TLS 1.1
    ];
    hello.extend_from_slice(&[7u8; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x02, 0x00, 0x2f]); // one suite: TLS_RSA_WITH_AES_128_CBC_SHA
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0x00, (hello.len() >> 8) as u8, hello.len() as u8];
    hs.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x02, (hs.len() >> 8) as u8, hs.len() as u8];
    record.extend_from_slice(&hs);
    let mut s = tokio::net::TcpStream::connect(run.addr("tls")).await.unwrap();
    s.write_all(&record).await.unwrap();
    let mut buf = [0u8; 5];
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .unwrap();
    // Closed without an answer is also a refusal; an answer must be an alert.
    if read.is_ok() {
        assert_eq!(buf[0], 0x15, "expected an alert record, got {buf:?}");
    }
}

#[tokio::test]
async fn curl_over_tls_with_ca() {
    if !curl_available() {
        return;
    }
    let b = backend("b").await;
    let pki = Pki::new();
    let a = pki.leaf(&["a.example.net"]);
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();
    let l = tls_listener("tls", vec![a.cert_config(&["a.example.net"])], vec![to_pool("p")]);
    let run = start(config(vec![l], vec![pool("p", &[&b])])).await;
    let port = run.addr("tls").port();
    let out = tokio::process::Command::new("/usr/bin/curl")
        .args(["-sS", "--cacert"])
        .arg(&ca_path)
        .arg("--resolve")
        .arg(format!("a.example.net:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_version} %{http_code}"])
        .arg(format!("https://a.example.net:{port}/secure"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, trailer) = text.rsplit_once('\n').unwrap();
    // curl negotiates h2 by ALPN.
    assert_eq!(trailer, "2 200");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["path"], "/secure");
    assert_eq!(json["headers"]["x-forwarded-proto"], "https");
}

fn mtls_backend_config(pki: &Pki, leaf: &Leaf, require_client: bool) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots(&pki.ca_pem)),
            provider(),
        )
        .build()
        .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let certs = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let mut cfg = builder.with_single_cert(certs, key).unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[tokio::test]
async fn tls_to_backends_with_ca_verification_and_mtls() {
    let pki = Pki::new();
    let server_leaf = pki.leaf(&["backend.example.net"]);
    let client_leaf = pki.leaf(&["edge-node.example.net"]);
    let b = backend_with(
        "secure",
        Mode::Echo(200),
        Some(mtls_backend_config(&pki, &server_leaf, true)),
    )
    .await;

    let upstream_tls = |client_cert: bool, name: &str| UpstreamTls {
        ca: PemSource::Pem(pki.ca_pem.clone()),
        server_name: name.to_string(),
        client_cert: client_cert.then(|| ClientCert {
            cert: PemSource::Pem(client_leaf.cert_pem.clone()),
            key: PemSource::Pem(client_leaf.key_pem.clone()),
        }),
    };
    let mk = |name: &str, tls: UpstreamTls, proto: UpstreamProtocol| {
        let mut p = pool(name, &[&b]);
        p.tls = Some(tls);
        p.protocol = proto;
        p.retry.attempts = 0;
        p
    };
    let routes = vec![
        RouteRule::new(
            "h1",
            vec![Match::PathPrefix("/h1".into())],
            Action::Pool("h1".into()),
        ),
        RouteRule::new(
            "h2",
            vec![Match::PathPrefix("/h2".into())],
            Action::Pool("h2".into()),
        ),
        RouteRule::new(
            "nocert",
            vec![Match::PathPrefix("/nocert".into())],
            Action::Pool("nocert".into()),
        ),
        RouteRule::new("wrongname", vec![], Action::Pool("wrongname".into())),
    ];
    let run = start(config(
        vec![listener("edge", routes)],
        vec![
            mk(
                "h1",
                upstream_tls(true, "backend.example.net"),
                UpstreamProtocol::Http1,
            ),
            mk(
                "h2",
                upstream_tls(true, "backend.example.net"),
                UpstreamProtocol::Http2,
            ),
            mk(
                "nocert",
                upstream_tls(false, "backend.example.net"),
                UpstreamProtocol::Http1,
            ),
            mk(
                "wrongname",
                upstream_tls(true, "other.example.net"),
                UpstreamProtocol::Http1,
            ),
        ],
    ))
    .await;
    let c = client();
    let r = get(&c, &run.url("edge", "/h1"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "HTTP/1.1");
    let r = get(&c, &run.url("edge", "/h2"), &[("host", "grpc.example.net")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "HTTP/2.0");
    assert_eq!(r.json()["authority"], "grpc.example.net");
    // The backend demands a client certificate.
    assert_eq!(get(&c, &run.url("edge", "/nocert"), &[]).await.status, 502);
    // The backend's certificate does not match the configured name.
    assert_eq!(get(&c, &run.url("edge", "/other"), &[]).await.status, 502);
}

#[tokio::test]
async fn websocket_tunnel_closes_after_shutdown_drain() {
    let ws = backend("ws").await;
    let mut cfg = config(
        vec![listener("edge", vec![to_pool("ws")])],
        vec![pool("ws", &[&ws])],
    );
    cfg.drain_timeout_ms = 1_500;
    let run = start(cfg).await;
    let mut s = tokio::net::TcpStream::connect(run.addr("edge")).await.unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    run.shutdown().await;
    // Still usable during the drain period...
    s.write_all(&encode_frame(0x1, b"late", Some([1, 1, 1, 1])))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut s).await.unwrap(), (0x1, b"late".to_vec()));
    // ...then closed (the tunnel idle timeout is 300 s, so this is the drain).
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "tunnel survived shutdown");
}

/// A TLS backend that closes each connection (close_notify, then FIN) a
/// moment after answering one request: the proxy must notice the closed
/// idle connection before reusing it, so that even a POST (which is never
/// retried once it may have reached a backend) goes out on a new
/// connection without an error or a passive-health report.
#[tokio::test]
async fn tls_backend_closing_idle_connections_is_not_an_error() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pki = Pki::new();
    let leaf = pki.leaf(&["backend.example.net"]);
    let mut server_cfg = (*mtls_backend_config(&pki, &leaf, false)).clone();
    server_cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let tcp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp_listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = tcp_listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = tls.flush().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let mut p = PoolConfig::new("p", vec![Backend::new("tls", addr)]);
    p.retry.attempts = 0;
    p.tls = Some(UpstreamTls {
        ca: PemSource::Pem(pki.ca_pem.clone()),
        server_name: "backend.example.net".into(),
        client_cert: None,
    });
    let mut run = start(config(vec![listener("web", vec![to_pool("p")])], vec![p])).await;
    let c = client();
    let r = get(&c, &run.url("web", "/"), &[]).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"ok"[..]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = send(
        &c,
        Request::post(run.url("web", "/"))
            .body(Full::new(Bytes::from_static(b"data")))
            .unwrap(),
    )
    .await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"ok"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert!(
        run.events.try_recv().is_err(),
        "a backend closing an idle connection is not a failure"
    );
}
