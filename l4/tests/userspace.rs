//! The userspace dataplane over real loopback sockets.
//!
//! Backends are tiny servers on 127.0.0.1 ephemeral ports that announce
//! their own port, so a client can tell where the proxy sent it. Service
//! sockets are bound by the test on port 0 and handed in, as `edge` does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use edge_l4::sched::Maglev;
use edge_l4::userspace::{SourceLimit, TcpCopy, UserspaceConfig, UserspaceDataplane};
use edge_l4::{
    BackendSpec, Change, Dataplane, DataplaneError, DataplaneKind, FlowKey, L4State, Protocol, Scheduler,
    SchedulerKind, ServiceKey, ServiceSpec, TableSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Handle;

/// Generous bound for anything that should happen "soon" on loopback; only
/// hit when the test is failing.
const PATIENCE: Duration = Duration::from_secs(10);

/// TCP backend: sends "<port>\n", then echoes.
async fn tcp_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let port = s.local_addr().unwrap().port();
                if s.write_all(format!("{port}\n").as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// UDP backend: replies "<port>:<payload>".
async fn udp_backend() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let mut reply = format!("{}:", addr.port()).into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&reply, from).await;
        }
    });
    addr
}

/// A connection through the proxy, with the backend port it reached.
struct Client {
    stream: TcpStream,
    local: SocketAddr,
    backend_port: u16,
}

async fn connect(proxy: SocketAddr) -> Client {
    let mut stream = tokio::time::timeout(PATIENCE, TcpStream::connect(proxy))
        .await
        .unwrap()
        .unwrap();
    let local = stream.local_addr().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "proxy closed before the backend greeting");
        line.push(byte[0]);
    }
    let backend_port = std::str::from_utf8(&line).unwrap().trim().parse().unwrap();
    Client {
        stream,
        local,
        backend_port,
    }
}

impl Client {
    /// True if a round trip through proxy and backend works.
    async fn echoes(&mut self, msg: &[u8]) -> bool {
        if self.stream.write_all(msg).await.is_err() {
            return false;
        }
        let mut buf = vec![0u8; msg.len()];
        matches!(
            tokio::time::timeout(PATIENCE, self.stream.read_exact(&mut buf)).await,
            Ok(Ok(_))
        ) && buf == msg
    }

    /// Waits for the proxy to close the connection.
    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(PATIENCE, self.stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

fn config(drain: Duration) -> UserspaceConfig {
    UserspaceConfig {
        drain_timeout: drain,
        udp_idle_timeout: Duration::from_millis(300),
        ..UserspaceConfig::default()
    }
}

fn spec(kind: SchedulerKind, backends: &[SocketAddr]) -> ServiceSpec {
    backends.iter().fold(ServiceSpec::new(kind), |s, b| {
        s.with_backend(*b, BackendSpec::active(1))
    })
}

/// Binds a service socket on an ephemeral loopback port and hands it in.
fn tcp_service(dp: &mut UserspaceDataplane) -> ServiceKey {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    dp.register_tcp_listener(l).unwrap()
}

fn udp_service(dp: &mut UserspaceDataplane) -> ServiceKey {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    dp.register_udp_socket(s).unwrap()
}

/// Where the Maglev table says a flow goes (the independent oracle: built
/// here from the spec, not taken from the dataplane).
fn maglev_expect(spec: &ServiceSpec, flow: FlowKey) -> SocketAddr {
    let (addrs, weighted) = spec.schedulable();
    let mut m = Maglev::new(&weighted, TableSize::default()).unwrap();
    addrs[m.pick(&flow, &[]).unwrap()]
}

fn tcp_flow(src: SocketAddr, key: ServiceKey) -> FlowKey {
    FlowKey {
        src,
        dst: key.socket_addr(),
        protocol: Protocol::Tcp,
    }
}

async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_follow_the_maglev_table() {
    let backends = [tcp_backend().await, tcp_backend().await, tcp_backend().await];
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_secs(30)));
    let key = tcp_service(&mut dp);
    let svc = spec(SchedulerKind::Maglev, &backends);
    let state = L4State::default().with_service(key, svc.clone());
    let applied = dp.apply(&state).unwrap();
    assert_eq!(applied.changes.len(), 1);

    let mut used = BTreeSet::new();
    for _ in 0..30 {
        let mut c = connect(key.socket_addr()).await;
        let expected = maglev_expect(&svc, tcp_flow(c.local, key));
        assert_eq!(c.backend_port, expected.port(), "client {}", c.local);
        assert!(c.echoes(b"hello").await);
        used.insert(c.backend_port);
    }
    // 30 flows on one of 3 backends would be a 3^-29 coincidence.
    assert!(used.len() >= 2, "{used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_backend_keeps_established_connections_and_gets_no_new_ones() {
    let backends = [tcp_backend().await, tcp_backend().await, tcp_backend().await];
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_secs(60)));
    let key = tcp_service(&mut dp);
    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::Maglev, &backends)))
        .unwrap();

    // Open connections until one lands on backend 0, which we then remove.
    let victim = backends[0];
    let mut established = Vec::new();
    for _ in 0..200 {
        let c = connect(key.socket_addr()).await;
        let on_victim = c.backend_port == victim.port();
        established.push(c);
        if on_victim {
            break;
        }
    }
    let mut kept = established.pop().unwrap();
    assert_eq!(
        kept.backend_port,
        victim.port(),
        "no connection reached backend 0"
    );

    let survivors = spec(SchedulerKind::Maglev, &backends[1..]);
    let applied = dp
        .apply(&L4State::default().with_service(key, survivors.clone()))
        .unwrap();
    assert_eq!(
        applied.changes,
        vec![Change::RemoveBackend {
            service: key,
            backend: victim
        }],
    );

    // The established connection still works...
    assert!(kept.echoes(b"still here").await);
    assert_eq!(dp.flows_by_backend(&key).unwrap().get(&victim), Some(&1));
    // ...while new ones go only where the new table says.
    for _ in 0..20 {
        let c = connect(key.socket_addr()).await;
        assert_ne!(c.backend_port, victim.port());
        assert_eq!(
            c.backend_port,
            maglev_expect(&survivors, tcp_flow(c.local, key)).port()
        );
    }
    assert!(kept.echoes(b"and still").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_ends_connections_on_a_draining_backend() {
    drain_timeout_ends_connections(TcpCopy::Buffered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_ends_spliced_connections() {
    drain_timeout_ends_connections(TcpCopy::Splice).await;
}

async fn drain_timeout_ends_connections(tcp_copy: TcpCopy) {
    let mut backends = [tcp_backend().await, tcp_backend().await];
    // Round robin walks backends in address order.
    backends.sort();
    let cfg = UserspaceConfig {
        tcp_copy,
        ..config(Duration::from_millis(200))
    };
    let mut dp = UserspaceDataplane::new(Handle::current(), cfg);
    let key = tcp_service(&mut dp);
    // Round robin: the first connection goes to backend 0, the second to 1.
    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::RoundRobin, &backends)))
        .unwrap();
    let mut on0 = connect(key.socket_addr()).await;
    let mut on1 = connect(key.socket_addr()).await;
    assert_eq!(
        (on0.backend_port, on1.backend_port),
        (backends[0].port(), backends[1].port())
    );

    let drained = ServiceSpec::new(SchedulerKind::RoundRobin)
        .with_backend(backends[0], BackendSpec::draining(1))
        .with_backend(backends[1], BackendSpec::active(1));
    dp.apply(&L4State::default().with_service(key, drained)).unwrap();

    // New connections avoid the draining backend.
    for _ in 0..4 {
        assert_eq!(connect(key.socket_addr()).await.backend_port, backends[1].port());
    }
    // The drain timer cuts the connection on backend 0 and only that one.
    assert!(on0.closed().await, "connection on draining backend was not cut");
    assert!(on1.echoes(b"unaffected").await);
    assert!(eventually(|| !dp.flows_by_backend(&key).unwrap().contains_key(&backends[0])).await);
    assert_eq!(dp.stats()[&key].drain_cuts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiesced_backend_keeps_its_connections_past_the_drain_timeout() {
    let mut backends = [tcp_backend().await, tcp_backend().await];
    backends.sort();
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_millis(100)));
    let key = tcp_service(&mut dp);
    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::RoundRobin, &backends)))
        .unwrap();
    let mut on0 = connect(key.socket_addr()).await;
    assert_eq!(on0.backend_port, backends[0].port());

    // Weight 0: no new flows, but existing ones are not cut.
    let quiesced = ServiceSpec::new(SchedulerKind::RoundRobin)
        .with_backend(backends[0], BackendSpec::active(0))
        .with_backend(backends[1], BackendSpec::active(1));
    dp.apply(&L4State::default().with_service(key, quiesced)).unwrap();
    for _ in 0..3 {
        assert_eq!(connect(key.socket_addr()).await.backend_port, backends[1].port());
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(on0.echoes(b"not cut").await);
}

/// 4 MiB each way through the proxy, then a half-close from the client:
/// every byte comes back in order and EOF propagates both ways.
async fn bulk_transfer_and_half_close(tcp_copy: TcpCopy) {
    let backends = [tcp_backend().await];
    let cfg = UserspaceConfig {
        tcp_copy,
        ..config(Duration::from_secs(30))
    };
    let mut dp = UserspaceDataplane::new(Handle::current(), cfg);
    let key = tcp_service(&mut dp);
    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::Maglev, &backends)))
        .unwrap();

    let c = connect(key.socket_addr()).await;
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = c.stream.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        // Half-close: the backend sees EOF, finishes echoing, and closes.
        w.shutdown().await.unwrap();
    });
    let mut echoed = Vec::with_capacity(payload.len());
    tokio::time::timeout(PATIENCE, r.read_to_end(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "payload corrupted in transit");
    assert!(eventually(|| dp.active_flows(&key) == Some(0)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_transfer_buffered() {
    bulk_transfer_and_half_close(TcpCopy::Buffered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_transfer_spliced() {
    bulk_transfer_and_half_close(TcpCopy::Splice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_sees_the_connection_table() {
    let backends = [tcp_backend().await, tcp_backend().await];
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_secs(30)));
    let key = tcp_service(&mut dp);
    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::LeastConnections, &backends)))
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(connect(key.socket_addr()).await);
    }
    let per_backend = dp.flows_by_backend(&key).unwrap();
    assert_eq!(per_backend, BTreeMap::from([(backends[0], 3), (backends[1], 3)]));
    // Closing backend 0's connections sends the next ones there.
    let (on0, on1): (Vec<_>, Vec<_>) = held
        .into_iter()
        .partition(|c| c.backend_port == backends[0].port());
    drop(on0);
    assert!(eventually(|| !dp.flows_by_backend(&key).unwrap().contains_key(&backends[0])).await);
    for _ in 0..2 {
        assert_eq!(connect(key.socket_addr()).await.backend_port, backends[0].port());
    }
    drop(on1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_twice_is_a_no_op() {
    let backends = [tcp_backend().await, tcp_backend().await];
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_secs(30)));
    let tcp = tcp_service(&mut dp);
    let udp = udp_service(&mut dp);
    let state = L4State::default()
        .with_service(tcp, spec(SchedulerKind::Maglev, &backends))
        .with_service(udp, spec(SchedulerKind::Maglev, &[udp_backend().await]));

    let first = dp.apply(&state).unwrap();
    assert_eq!(first.changes.len(), 2);
    let mut c = connect(tcp.socket_addr()).await;

    let second = dp.apply(&state).unwrap();
    assert!(second.is_noop(), "{:?}", second.changes);
    assert_eq!(dp.observe().unwrap(), state);
    assert_eq!(dp.name(), "userspace");
    // Nothing was torn down: the old connection and the listener both work.
    assert!(c.echoes(b"ping").await);
    assert!(connect(tcp.socket_addr()).await.echoes(b"pong").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_echo_through_the_proxy_follows_the_maglev_table() {
    let backends = [udp_backend().await, udp_backend().await, udp_backend().await];
    let idle = UserspaceConfig {
        udp_idle_timeout: Duration::from_secs(60),
        ..UserspaceConfig::default()
    };
    let mut dp = UserspaceDataplane::new(Handle::current(), idle);
    let key = udp_service(&mut dp);
    let svc = spec(SchedulerKind::Maglev, &backends);
    dp.apply(&L4State::default().with_service(key, svc.clone()))
        .unwrap();

    let mut used = BTreeSet::new();
    let mut clients = Vec::new();
    for i in 0..12 {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let flow = FlowKey {
            src: client.local_addr().unwrap(),
            dst: key.socket_addr(),
            protocol: Protocol::Udp,
        };
        let expected = maglev_expect(&svc, flow);
        // Several datagrams per client: all on the same backend.
        for j in 0..3 {
            let msg = format!("hello {i}.{j}");
            client.send_to(msg.as_bytes(), key.socket_addr()).await.unwrap();
            let mut buf = [0u8; 256];
            let (n, from) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            // Replies come from the service address, not the backend.
            assert_eq!(from, key.socket_addr());
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                format!("{}:{msg}", expected.port())
            );
        }
        used.insert(expected.port());
        clients.push(client);
    }
    assert!(used.len() >= 2, "{used:?}");
    assert_eq!(dp.active_flows(&key), Some(12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_expire_when_idle() {
    let backends = [udp_backend().await];
    // Idle timeout 300 ms.
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_secs(30)));
    let key = udp_service(&mut dp);
    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::Maglev, &backends)))
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(b"hi", key.socket_addr()).await.unwrap();
    let mut buf = [0u8; 64];
    tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(dp.active_flows(&key).unwrap() <= 1);
    assert!(
        eventually(|| dp.active_flows(&key) == Some(0)).await,
        "udp flow did not expire"
    );
    // A new datagram from the same client opens a fresh flow that works.
    client.send_to(b"again", key.socket_addr()).await.unwrap();
    let (n, _) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], format!("{}:again", backends[0].port()).as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flow_table_pins_a_client_even_with_round_robin() {
    let mut backends = [udp_backend().await, udp_backend().await];
    backends.sort();
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_secs(30)));
    let key = udp_service(&mut dp);
    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::RoundRobin, &backends)))
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut ports = BTreeSet::new();
        for _ in 0..4 {
            client.send_to(b"x", key.socket_addr()).await.unwrap();
            let mut buf = [0u8; 64];
            let (n, _) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let reply = std::str::from_utf8(&buf[..n]).unwrap();
            ports.insert(reply.split(':').next().unwrap().parse::<u16>().unwrap());
        }
        assert_eq!(ports.len(), 1, "one client's datagrams were spread: {ports:?}");
        seen.extend(ports);
    }
    // Round robin across the two flows.
    assert_eq!(seen, vec![backends[0].port(), backends[1].port()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flow_table_is_capped() {
    let backends = [udp_backend().await];
    let capped = UserspaceConfig {
        udp_max_flows: 2,
        udp_idle_timeout: Duration::from_secs(60),
        ..UserspaceConfig::default()
    };
    let mut dp = UserspaceDataplane::new(Handle::current(), capped);
    let key = udp_service(&mut dp);
    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::Maglev, &backends)))
        .unwrap();
    let mut buf = [0u8; 64];
    let mut clients = Vec::new();
    for _ in 0..2 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(b"in", key.socket_addr()).await.unwrap();
        tokio::time::timeout(PATIENCE, c.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        clients.push(c);
    }
    // A third client finds the table full: no flow, no reply.
    let third = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    third.send_to(b"out", key.socket_addr()).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_millis(300), third.recv_from(&mut buf)).await;
    assert!(reply.is_err(), "third flow was admitted");
    assert_eq!(dp.active_flows(&key), Some(2));
    assert_eq!(dp.stats()[&key].udp_dropped, 1);
    // Existing flows are unaffected.
    clients[0].send_to(b"again", key.socket_addr()).await.unwrap();
    tokio::time::timeout(PATIENCE, clients[0].recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_tcp_and_udp() {
    let tcp_backend = {
        let l = TcpListener::bind("[::1]:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let _ = s.write_all(format!("{}\n", addr.port()).as_bytes()).await;
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    };
    let udp_backend = {
        let s = UdpSocket::bind("[::1]:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let _ = s.send_to(&buf[..n], from).await;
            }
        });
        addr
    };
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_secs(30)));
    let tcp = dp
        .register_tcp_listener(std::net::TcpListener::bind("[::1]:0").unwrap())
        .unwrap();
    let udp = dp
        .register_udp_socket(std::net::UdpSocket::bind("[::1]:0").unwrap())
        .unwrap();
    let state = L4State::default()
        .with_service(tcp, spec(SchedulerKind::Maglev, &[tcp_backend]))
        .with_service(udp, spec(SchedulerKind::SourceHash, &[udp_backend]));
    dp.apply(&state).unwrap();

    let mut c = connect(tcp.socket_addr()).await;
    assert_eq!(c.backend_port, tcp_backend.port());
    assert!(c.echoes(b"v6").await);

    let client = UdpSocket::bind("[::1]:0").await.unwrap();
    client.send_to(b"v6 udp", udp.socket_addr()).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], from), (&b"v6 udp"[..], udp.socket_addr()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flow_on_a_removed_backend_keeps_it_until_the_drain_timeout() {
    let mut backends = [udp_backend().await, udp_backend().await];
    backends.sort();
    let drain = UserspaceConfig {
        drain_timeout: Duration::from_millis(300),
        udp_idle_timeout: Duration::from_secs(60),
        ..UserspaceConfig::default()
    };
    let mut dp = UserspaceDataplane::new(Handle::current(), drain);
    let key = udp_service(&mut dp);
    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::RoundRobin, &backends)))
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let exchange = || async {
        client.send_to(b"q", key.socket_addr()).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        std::str::from_utf8(&buf[..n])
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap()
    };
    assert_eq!(exchange().await, backends[0].port());

    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::RoundRobin, &backends[1..])))
        .unwrap();
    // The flow stays on its backend right after the removal...
    assert_eq!(exchange().await, backends[0].port());
    // ...and moves once the drain timer has cut it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut moved = false;
    while tokio::time::Instant::now() < deadline {
        if exchange().await == backends[1].port() {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "udp flow never left the removed backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_or_missing_backends_close_the_client_and_are_counted() {
    // A port with nothing listening: connects are refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_secs(30)));
    let down = tcp_service(&mut dp);
    let empty = tcp_service(&mut dp);
    let state = L4State::default()
        .with_service(down, spec(SchedulerKind::Maglev, &[dead]))
        .with_service(
            empty,
            ServiceSpec::new(SchedulerKind::Maglev)
                .with_backend(tcp_backend().await, BackendSpec::draining(1)),
        );
    dp.apply(&state).unwrap();

    for key in [down, empty] {
        let mut s = TcpStream::connect(key.socket_addr()).await.unwrap();
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(PATIENCE, s.read(&mut buf)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{key}: {r:?}");
    }
    assert!(eventually(|| dp.active_flows(&down) == Some(0)).await);
    let stats = dp.stats();
    assert_eq!((stats[&down].flows_opened, stats[&down].backend_errors), (1, 1));
    assert_eq!((stats[&empty].flows_opened, stats[&empty].no_backend), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_service_closes_its_listener_and_drains_its_connections() {
    let backends = [tcp_backend().await];
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_millis(200)));
    let key = tcp_service(&mut dp);
    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::Maglev, &backends)))
        .unwrap();
    let mut c = connect(key.socket_addr()).await;

    let applied = dp.apply(&L4State::default()).unwrap();
    assert_eq!(applied.changes, vec![Change::RemoveService { service: key }]);
    assert_eq!(dp.observe().unwrap(), L4State::default());
    assert!(
        c.closed().await,
        "connection of a removed service was not drained"
    );
    // The listener is gone: connecting is refused.
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(key.socket_addr()).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_failure_is_partial_and_retried() {
    let backends = [tcp_backend().await];
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_secs(30)));
    let good = tcp_service(&mut dp);
    // Another socket already listens on the second service's port.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = ServiceKey::new(
        blocker.local_addr().unwrap().ip(),
        blocker.local_addr().unwrap().port(),
        Protocol::Tcp,
    );
    let state = L4State::default()
        .with_service(good, spec(SchedulerKind::Maglev, &backends))
        .with_service(busy, spec(SchedulerKind::Maglev, &backends));

    match dp.apply(&state) {
        Err(DataplaneError::Partial { applied, failed }) => {
            assert_eq!(applied.changes.len(), 1);
            assert!(matches!(&failed[..], [DataplaneError::Bind { service, .. }] if *service == busy));
        }
        other => panic!("expected a partial failure, got {other:?}"),
    }
    let observed = dp.observe().unwrap();
    assert_eq!(observed.services.keys().collect::<Vec<_>>(), vec![&good]);
    assert!(connect(good.socket_addr()).await.echoes(b"up").await);

    // Once the port is free, the same apply finishes the job.
    drop(blocker);
    let applied = dp.apply(&state).unwrap();
    assert!(matches!(&applied.changes[..], [Change::AddService { service, .. }] if *service == busy));
    assert!(connect(busy.socket_addr()).await.echoes(b"up too").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_change_keeps_connections() {
    let backends = [tcp_backend().await, tcp_backend().await];
    let mut dp = UserspaceDataplane::new(Handle::current(), config(Duration::from_millis(100)));
    let key = tcp_service(&mut dp);
    dp.apply(&L4State::default().with_service(key, spec(SchedulerKind::Maglev, &backends)))
        .unwrap();
    let mut c = connect(key.socket_addr()).await;
    let applied = dp
        .apply(&L4State::default().with_service(key, spec(SchedulerKind::RoundRobin, &backends)))
        .unwrap();
    assert!(matches!(
        &applied.changes[..],
        [Change::SetScheduler {
            to: SchedulerKind::RoundRobin,
            ..
        }]
    ));
    let a = connect(key.socket_addr()).await.backend_port;
    let b = connect(key.socket_addr()).await.backend_port;
    assert_ne!(a, b, "round robin alternates");
    // Both backends are still in the spec, so nothing drains.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(c.echoes(b"kept").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_factory_builds_userspace_inside_a_runtime() {
    let dp = edge_l4::backend(DataplaneKind::Userspace).unwrap();
    assert_eq!(dp.name(), "userspace");
    assert_eq!(dp.observe().unwrap(), L4State::default());
}

#[test]
fn backend_factory_needs_a_runtime() {
    assert!(matches!(
        edge_l4::backend(DataplaneKind::Userspace),
        Err(DataplaneError::NoRuntime {
            backend: "userspace",
            ..
        })
    ));
}

/// Connection-flood protection: a source gets its burst of new connections,
/// then the ones over its rate are reset right after accept; another source
/// is unaffected, and the refusals are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_over_the_per_source_limit_are_reset() {
    let backend = tcp_backend().await;
    let mut dp = UserspaceDataplane::new(
        Handle::current(),
        UserspaceConfig {
            source_limit: Some(SourceLimit {
                per_second: 1,
                burst: 3,
                max_sources: 1024,
            }),
            ..UserspaceConfig::default()
        },
    );
    let key = tcp_service(&mut dp);
    let desired = L4State::default().with_service(key, spec(SchedulerKind::RoundRobin, &[backend]));
    dp.apply(&desired).unwrap();
    let proxy = key.socket_addr();
    let mut admitted = Vec::new();
    for _ in 0..3 {
        admitted.push(connect(proxy).await);
    }
    // The fourth and fifth within the same second: reset, no greeting.
    // (The RST may already be there when connect returns.)
    for _ in 0..2 {
        let Ok(mut s) = TcpStream::connect(proxy).await else {
            continue;
        };
        let mut buf = [0u8; 16];
        let got = tokio::time::timeout(PATIENCE, s.read(&mut buf)).await.unwrap();
        assert!(
            matches!(got, Ok(0) | Err(_)),
            "over the limit: closed without a greeting, got {got:?}"
        );
    }
    // The admitted ones still work.
    for c in &mut admitted {
        assert!(c.echoes(b"still here\n").await);
    }
    // Another source has its own budget.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = other.connect(proxy).await.unwrap();
    let mut line = [0u8; 8];
    let n = tokio::time::timeout(PATIENCE, s.read(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0, "127.0.0.2 is greeted by the backend");
    assert_eq!(dp.stats()[&key].rate_limited, 2);
    // After a second, 127.0.0.1 has a token again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _again = connect(proxy).await;
}
