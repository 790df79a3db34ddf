//! Hot reload of the DNS tier on real 127.0.0.1 sockets: the next query
//! after `DnsServer::reload` gets the new answer over UDP and TCP, queries
//! racing reloads always get a whole answer of one version, a failed reload
//! changes nothing, `explain` follows the served configuration, and `diff`
//! reports the same changes without a server.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use edge_dns::{DnsError, DnsOptions, RecordType, RrlConfig};
use edge_topology::Deployment;
use hickory_proto::op::{Message, ResponseCode};

const WWW: &str = "www.edge.example.";
const ANYCAST: &str = "anycast.edge.example.";
/// A client subnet the lab GeoIP database places in Amsterdam.
const AMS_CLIENTS: &str = "198.18.1.0/24";

/// The static record and the GSLB definition the "new" deployment changes.
const OLD_ANYCAST: &str = r#"{ name = "anycast", type = "A", value = "203.0.113.10" }"#;
const NEW_ANYCAST: &str = r#"{ name = "anycast", type = "A", value = "203.0.113.11" }"#;
const OLD_WWW_VIPS: &str = r#"vips = ["ams-web", "nyc-web"]"#;
const NEW_WWW_VIPS: &str = r#"vips = ["nyc-web"]"#;

/// The two-pop lab deployment with `edits` (`from`, `to`) applied to its text.
fn two_pop(edits: &[(&str, &str)]) -> Deployment {
    let mut text = edge_topology::TWO_POP.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} is not in the two-pop deployment");
        text = text.replace(from, to);
    }
    edge_topology::parse(&text).unwrap()
}

fn old_dep() -> Deployment {
    two_pop(&[])
}

/// `anycast` A moved to .11; `www` answers with the nyc VIP only.
fn new_dep() -> Deployment {
    two_pop(&[(OLD_ANYCAST, NEW_ANYCAST), (OLD_WWW_VIPS, NEW_WWW_VIPS)])
}

/// What a reload from `old_dep` to `new_dep` must report, exactly.
const NEW_CHANGES: [&str; 2] = [
    "zone edge.example.: record anycast.edge.example. A changed",
    "gslb www.edge.example.: candidate ams-web@ams removed",
];

/// No RRL: the tests send many queries from one address.
fn options() -> DnsOptions {
    DnsOptions {
        rrl: RrlConfig {
            responses_per_second: 0,
            ..RrlConfig::default()
        },
        ..DnsOptions::default()
    }
}

fn www() -> Ask {
    Ask::new(WWW, RecordType::A).ecs(AMS_CLIENTS)
}

fn anycast() -> Ask {
    Ask::new(ANYCAST, RecordType::A)
}

/// The answers of both questions, over UDP and over TCP.
async fn answers(addr: SocketAddr) -> [Vec<String>; 4] {
    [
        addrs(&udp(addr, &www()).await),
        addrs(&tcp(addr, &www()).await),
        addrs(&udp(addr, &anycast()).await),
        addrs(&tcp(addr, &anycast()).await),
    ]
}

fn old_answers() -> [Vec<String>; 4] {
    [AMS, AMS, "203.0.113.10", "203.0.113.10"].map(|a| vec![a.to_string()])
}

fn new_answers() -> [Vec<String>; 4] {
    [NYC, NYC, "203.0.113.11", "203.0.113.11"].map(|a| vec![a.to_string()])
}

#[tokio::test]
async fn the_next_query_after_a_reload_gets_the_new_answer() {
    let lab = start_with(&old_dep(), options()).await;
    assert_eq!(answers(lab.addr).await, old_answers());
    let metrics = lab.server.metrics();
    assert_eq!(metrics.site_answers("ams"), 2);
    assert_eq!(metrics.site_answers("nyc"), 0);

    let changes = lab.server.reload(&new_dep(), Some(lab_geo()), options()).unwrap();
    assert_eq!(changes.lines(), NEW_CHANGES, "{changes}");
    assert_eq!(changes.to_string(), NEW_CHANGES.join("\n"));
    assert!(!changes.needs_restart());

    assert_eq!(answers(lab.addr).await, new_answers());
    // The site list changed (nyc is now site 0): answers are counted for
    // the site they went to.
    assert_eq!(metrics.site_answers("ams"), 2);
    assert_eq!(metrics.site_answers("nyc"), 2);

    // Back again, and a reload to the same configuration changes nothing.
    let back = lab.server.reload(&old_dep(), Some(lab_geo()), options()).unwrap();
    assert_eq!(back.len(), 2, "{back}");
    assert_eq!(answers(lab.addr).await, old_answers());
    let same = lab.server.reload(&old_dep(), Some(lab_geo()), options()).unwrap();
    assert!(same.is_empty(), "{same}");
    assert_eq!(same.to_string(), "unchanged");
    assert_eq!(answers(lab.addr).await, old_answers());
}

/// One UDP query on a blocking socket: its answer addresses, or why not.
fn ask_blocking(
    sock: &std::net::UdpSocket,
    addr: SocketAddr,
    ask: &Ask,
    id: u16,
) -> Result<Vec<String>, String> {
    sock.send_to(&ask.message(id), addr).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).map_err(|e| format!("query {id}: {e}"))?;
        let m = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
        if m.metadata.id != id {
            continue; // a late answer to an earlier query
        }
        if m.metadata.response_code != ResponseCode::NoError {
            return Err(format!("query {id}: {:?}", m.metadata.response_code));
        }
        return Ok(addrs(&m));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_racing_reloads_get_old_or_new_answers_never_an_error() {
    let lab = start_with(&old_dep(), options()).await;
    let addr = lab.addr;
    let done = Arc::new(AtomicBool::new(false));

    // 2000 UDP queries, one at a time, from a thread of their own.
    let udp_done = done.clone();
    let udp_queries = std::thread::spawn(move || {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut seen = BTreeSet::new();
        let mut failures = Vec::new();
        for i in 0..2000u16 {
            let (ask, ok): (Ask, [&str; 2]) = if i % 2 == 0 {
                (www(), [AMS, NYC])
            } else {
                (anycast(), ["203.0.113.10", "203.0.113.11"])
            };
            match ask_blocking(&sock, addr, &ask, i) {
                Ok(got) if got.len() == 1 && ok.contains(&got[0].as_str()) => {
                    seen.insert(got[0].clone());
                }
                Ok(got) => failures.push(format!("query {i}: {got:?}")),
                Err(e) => failures.push(e),
            }
        }
        udp_done.store(true, Ordering::SeqCst);
        (seen, failures)
    });
    // And TCP queries, a connection each, at the same time.
    let tcp_done = done.clone();
    let tcp_queries = tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        let mut n = 0;
        while !tcp_done.load(Ordering::SeqCst) || n < 50 {
            let got = tokio::time::timeout(Duration::from_secs(3), tcp(addr, &www()))
                .await
                .expect("TCP query timed out");
            assert_eq!(got.metadata.response_code, ResponseCode::NoError);
            let a = addrs(&got);
            assert!(a == [AMS] || a == [NYC], "TCP answer {a:?}");
            seen.insert(a[0].clone());
            n += 1;
        }
        seen
    });

    let (old, new) = (old_dep(), new_dep());
    let mut reloads = 0;
    while !done.load(Ordering::SeqCst) {
        let dep = if reloads % 2 == 0 { &new } else { &old };
        let changes = lab.server.reload(dep, Some(lab_geo()), options()).unwrap();
        assert_eq!(changes.len(), 2, "{changes}");
        reloads += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (seen, failures) = udp_queries.join().unwrap();
    let tcp_seen = tcp_queries.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failed, the first: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(reloads >= 3, "only {reloads} reloads during the queries");
    // Both versions were really served while the queries ran.
    for a in [AMS, NYC, "203.0.113.10", "203.0.113.11"] {
        assert!(
            seen.contains(a),
            "UDP never saw {a}: {seen:?} ({reloads} reloads)"
        );
    }
    assert!(!tcp_seen.is_empty());
    let metrics = lab.server.metrics();
    assert_eq!(metrics.query("A", "SERVFAIL"), 0);
}

#[tokio::test]
async fn a_failed_reload_changes_nothing() {
    let lab = start_with(&old_dep(), options()).await;
    let explainer = lab.server.explainer();
    let lab_dir = std::path::PathBuf::from(repo_path("labs/two-pop"));

    // The GeoIP file the deployment names does not exist.
    let missing = two_pop(&[
        (OLD_ANYCAST, NEW_ANYCAST),
        ("../geoip/lab.mmdb", "../geoip/no-such.mmdb"),
    ]);
    let err = lab
        .server
        .reload_from_dir(&missing, &lab_dir, options())
        .unwrap_err();
    assert!(matches!(err, DnsError::GeoIp { .. }), "{err}");
    assert_eq!(answers(lab.addr).await, old_answers());

    // A name with a CNAME and an A record: the topology accepts it, the
    // zone cannot serve it.
    let clash = two_pop(&[(
        OLD_ANYCAST,
        r#"{ name = "anycast", type = "A", value = "203.0.113.11" },
  { name = "anycast", type = "CNAME", value = "www" }"#,
    )]);
    let err = lab.server.reload(&clash, Some(lab_geo()), options()).unwrap_err();
    assert!(matches!(err, DnsError::Config { .. }), "{err}");
    assert!(err.to_string().contains("CNAME"), "{err}");
    assert_eq!(answers(lab.addr).await, old_answers());

    // No [dns] at all.
    let mut none = new_dep();
    none.dns = None;
    let err = lab.server.reload(&none, Some(lab_geo()), options()).unwrap_err();
    assert!(matches!(err, DnsError::NoDnsConfig), "{err}");
    assert_eq!(answers(lab.addr).await, old_answers());

    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let t = explainer.explain(ANYCAST, RecordType::A, ip, None).unwrap();
    assert_eq!(t.addresses(), ["203.0.113.10".parse::<IpAddr>().unwrap()]);

    // The failures left nothing half done: a good reload still reports
    // exactly its own changes against what was served.
    let changes = lab.server.reload(&new_dep(), Some(lab_geo()), options()).unwrap();
    assert_eq!(changes.lines(), NEW_CHANGES);
    assert_eq!(answers(lab.addr).await, new_answers());
}

#[tokio::test]
async fn the_explainer_follows_reloads() {
    let lab = start_with(&old_dep(), options()).await;
    // Taken before the reload, as the admin API does at start.
    let explainer = lab.server.explainer();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let ecs = Some(AMS_CLIENTS.parse().unwrap());
    let addr = |s: &str| vec![s.parse::<IpAddr>().unwrap()];

    let t = explainer.explain(WWW, RecordType::A, ip, ecs).unwrap();
    assert_eq!(t.addresses(), addr(AMS), "{t}");
    assert!(t.to_string().contains("ams-web@ams"), "{t}");

    lab.server.reload(&new_dep(), Some(lab_geo()), options()).unwrap();
    let t = explainer.explain(WWW, RecordType::A, ip, ecs).unwrap();
    assert_eq!(t.addresses(), addr(NYC), "{t}");
    assert!(!t.to_string().contains("ams-web"), "{t}");
    let t = explainer.explain(ANYCAST, RecordType::A, ip, None).unwrap();
    assert_eq!(t.addresses(), addr("203.0.113.11"), "{t}");
    // The server's own explain and authority agree, and with the wire.
    let t = lab.server.explain(WWW, RecordType::A, ip, ecs).unwrap();
    assert_eq!(t.addresses(), addr(NYC));
    assert_eq!(lab.server.authority().steering().sites(), ["nyc"]);
    assert_eq!(addrs(&udp(lab.addr, &www()).await), [NYC]);

    // The explainer also uses the view currently served.
    let mut down = edge_dns::DnsView::default();
    down.sites.insert(
        "nyc".into(),
        edge_dns::SiteState {
            up: false,
            ..Default::default()
        },
    );
    lab.server.set_view(down);
    let t = explainer.explain(WWW, RecordType::A, ip, ecs).unwrap();
    assert!(t.decisions[0].fail_open, "{t}");
}

#[test]
fn diff_lists_the_changes_between_two_deployments() {
    let (old, new) = (old_dep(), new_dep());
    let same = edge_dns::diff(&old, &old_dep()).unwrap();
    assert!(same.is_empty(), "{same}");
    assert_eq!(same.to_string(), "unchanged");

    // The same changes a reload reports.
    let d = edge_dns::diff(&old, &new).unwrap();
    assert_eq!(d.lines(), NEW_CHANGES);

    // More of everything, reported sorted.
    let more = two_pop(&[
        (OLD_ANYCAST, NEW_ANYCAST),
        (OLD_WWW_VIPS, r#"vips = ["nyc-web", "ams-web"]"#),
        (
            r#"{ name = "anycast", type = "AAAA", value = "2001:db8:ffff::10" },"#,
            r#"{ name = "mail", type = "MX", value = "10 anycast" },"#,
        ),
        ("serial = 1 }", "serial = 2 }"),
        ("ttl = 20\n", "ttl = 30\n"),
        (
            r#"policy = ["health", "drain", "geo", "latency", "weight"]"#,
            r#"policy = ["health", "geo"]"#,
        ),
        ("../geoip/lab.mmdb", "../geoip/other.mmdb"),
        (
            "port = 53\n",
            "port = 5353\nrrl = { responses_per_second = 5 }\nshed_load_above = 0.5\n",
        ),
    ]);
    let d = edge_dns::diff(&old, &more).unwrap();
    let want = [
        "zone edge.example.: SOA changed",
        "zone edge.example.: record anycast.edge.example. A changed",
        "zone edge.example.: record anycast.edge.example. AAAA removed",
        "zone edge.example.: record mail.edge.example. MX added",
        "gslb www.edge.example.: ttl changed",
        "gslb www.edge.example.: policy changed",
        "gslb www.edge.example.: candidates reordered",
        "geoip: database path changed",
        "options: port changed (needs a restart; not applied)",
        "options: rrl changed",
        "options: steering changed",
    ];
    assert_eq!(d.lines(), want, "{d}");
    assert!(d.needs_restart());
    // Deterministic, and the reverse is the mirror image.
    assert_eq!(edge_dns::diff(&old, &more).unwrap(), d);
    let back = edge_dns::diff(&more, &old).unwrap();
    assert!(
        back.lines()
            .contains(&"zone edge.example.: record mail.edge.example. MX removed".to_string()),
        "{back}"
    );

    // A deployment that cannot be served is an error, as its reload is.
    let clash = two_pop(&[(
        OLD_WWW_VIPS,
        &format!("{OLD_WWW_VIPS}\n[[dns.gslb]]\nname = \"anycast.edge.example.\"\nvips = [\"nyc-web\"]"),
    )]);
    assert!(edge_dns::diff(&old, &clash).is_err());
}

/// Sends `n` queries for a static name from one socket at once; how many
/// were answered.
async fn answered_of(addr: SocketAddr, n: u16) -> usize {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for id in 0..n {
        sock.send_to(&anycast().message(id), addr).await.unwrap();
    }
    let mut got = 0;
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), sock.recv(&mut buf)).await {
        got += 1;
    }
    got
}

#[tokio::test]
async fn rrl_changes_live_and_socket_settings_are_reported_as_needing_a_restart() {
    let lab = start_with(&old_dep(), options()).await;
    assert_eq!(answered_of(lab.addr, 10).await, 10);

    let limited = DnsOptions {
        rrl: RrlConfig {
            responses_per_second: 1,
            burst: 2,
            slip: 0,
            ..RrlConfig::default()
        },
        udp_batch: 8,
        ..options()
    };
    let changes = lab.server.reload(&old_dep(), Some(lab_geo()), limited).unwrap();
    assert_eq!(
        changes.lines(),
        [
            "options: rrl changed",
            "options: udp_batch changed (needs a restart; not applied)",
        ]
    );
    assert!(changes.needs_restart());
    let got = answered_of(lab.addr, 10).await;
    assert!((2..=3).contains(&got), "{got} of 10 answered under 1/s burst 2");
    assert!(lab.server.metrics().rrl_count("drop") >= 7);

    // Off again; the socket setting was never applied, so nothing to report.
    let changes = lab.server.reload(&old_dep(), Some(lab_geo()), options()).unwrap();
    assert_eq!(changes.lines(), ["options: rrl changed"]);
    assert_eq!(answered_of(lab.addr, 10).await, 10);
}
