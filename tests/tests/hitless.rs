//! Hitless operations on the default two-PoP lab (real FRR at ams, real
//! BIRD at nyc, four `edge` nodes): while a change is made, clients keep
//! requesting HTTP through the anycast VIP, querying the DNS VIP with `dig`,
//! and holding 50 long-lived TCP connections through the L4 stage, and the
//! routers' RIBs are polled every 50 ms with `vtysh` and `birdc`. Each test
//! asserts that nothing failed, nothing was reset and no VIP ever left a
//! router's RIB, and prints what it measured.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_labs::{IpNet, RouteExpect};
use edge_tests::{TopologyLab, lab_ready, repo_root};

const VIP: &str = "203.0.113.10";
const CLIENTS: [&str; 2] = ["ams-c1", "nyc-c1"];

/// Root and the tools these tests drive (see [`lab_ready`]).
fn ready(test: &str) -> bool {
    lab_ready(
        test,
        &[
            "ip",
            "vtysh",
            "bird",
            "birdc",
            "dig",
            "curl",
            "openssl",
            "/usr/lib/frr/bgpd",
        ],
    )
}

/// What every client sees of the configuration under test: the tagged
/// route's header, the certificate, a static record and the GSLB TTL.
fn assert_serves(t: &TopologyLab, route_tag: &str, cn: &str, api_addr: &str, gslb_ttl: u32) {
    for c in CLIENTS {
        let r = http(t, c, "/tagged").expect("tagged route");
        assert!(r.contains(&format!("x-route: {route_tag}")), "{c}: {r}");
        assert_eq!(served_cn(t, c).expect("tls"), cn, "{c}");
        assert_eq!(dig(t, c, "api.edge.example").expect("dig"), [api_addr], "{c}");
        assert_eq!(dig_ttl(t, c, "www.edge.example").expect("ttl"), gslb_ttl, "{c}");
    }
}

/// One lab at a time: the assertions on timing and on every request need a
/// machine that is not also running another two-PoP lab.
static ONE_LAB: Mutex<()> = Mutex::new(());

fn vip() -> IpNet {
    "203.0.113.10/32".parse().expect("prefix")
}

/// What the traffic saw while a change was made.
#[derive(Debug, Default)]
struct Seen {
    http_ok: usize,
    http_failed: Vec<String>,
    dns_ok: usize,
    dns_bad: Vec<String>,
    /// Per router: the fewest and most paths to the VIP seen in one poll.
    rib_paths: BTreeMap<&'static str, (usize, usize)>,
    rib_polls: usize,
    rib_missing: Vec<String>,
    conns_survived: usize,
}

/// One HTTP request from `client` to the anycast VIP; the response head
/// and body on success.
fn http(t: &TopologyLab, client: &str, path: &str) -> Result<String, String> {
    let url = format!("http://{VIP}{path}");
    let out = t
        .lab
        .exec(client, &["curl", "-sS", "-m", "2", "-D", "-", &url])
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() && text.starts_with("HTTP/1.1 200") {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `dig +short` of `name` from `client` against the DNS VIP.
fn dig(t: &TopologyLab, client: &str, name: &str) -> Result<Vec<String>, String> {
    let out = t
        .lab
        .exec(
            client,
            &["dig", "+tries=1", "+time=1", "+short", "@203.0.113.53", name],
        )
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(text);
    }
    Ok(text.lines().map(|l| l.trim().to_string()).collect())
}

/// The paths to the VIP in a router's BGP RIB (FRR: `vtysh … json`; BIRD:
/// `birdc show route for`).
fn rib_paths(t: &TopologyLab, router: &str) -> Result<usize, String> {
    if router == "ams-r1" {
        let v = t
            .lab
            .vtysh_json(router, "show bgp ipv4 unicast 203.0.113.10/32 json")
            .map_err(|e| e.to_string())?;
        Ok(v["paths"].as_array().map_or(0, Vec::len))
    } else {
        // The whole table (`show route for` fails when the prefix is gone):
        // count the BGP paths in the VIP's block.
        let text = t.lab.birdc(router, "show route all").map_err(|e| e.to_string())?;
        let mut inside = false;
        let mut paths = 0;
        for line in text.lines() {
            if !line.starts_with(char::is_whitespace) && !line.is_empty() {
                inside = line.starts_with("203.0.113.10/32 ");
            }
            if inside && line.trim_start().starts_with("BGP.as_path") {
                paths += 1;
            }
        }
        Ok(paths)
    }
}

/// Opens `n` TCP connections from `client` through the L4 stage (the
/// backends' echo service behind VIP:9000) and checks they echo.
fn open_conns(
    t: &TopologyLab,
    client: &str,
    n: usize,
) -> (edge_l4::netns::NetnsThread, Vec<std::net::TcpStream>) {
    let ns = t.lab.kernel_ns(client).expect("ns");
    let nt = edge_l4::netns::NetnsThread::spawn(&ns).expect("enter the client namespace");
    let conns: Vec<std::net::TcpStream> = nt
        .run(move || {
            (0..n)
                .map(|_| {
                    let s = std::net::TcpStream::connect((VIP, 9000)).expect("L4 connect");
                    s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
                    s
                })
                .collect()
        })
        .expect("namespace thread");
    (nt, conns)
}

/// How many of `conns` echo a line tagged `round`.
fn echo(conns: &[std::net::TcpStream], round: &str) -> usize {
    let mut ok = 0;
    for (i, mut c) in conns.iter().enumerate() {
        let line = format!("{round}-{i}\n");
        if c.write_all(line.as_bytes()).is_err() {
            continue;
        }
        let mut r = std::io::BufReader::new(c);
        let mut got = String::new();
        // The first line a backend sends is its name; then the echo.
        while r.read_line(&mut got).is_ok_and(|n| n > 0) {
            if got.trim_end().ends_with(&format!("{round}-{i}")) {
                ok += 1;
                break;
            }
            got.clear();
        }
    }
    ok
}

/// Runs `change` while the traffic runs, and returns what it returned with
/// what the traffic saw. `dns_ok(answer)` says whether a `www.edge.example`
/// answer is acceptable at that moment.
fn during<T>(
    t: &TopologyLab,
    dns_ok: &(dyn Fn(&[String]) -> bool + Sync),
    change: impl FnOnce() -> T,
) -> (T, Seen) {
    let (nt, conns) = open_conns(t, "ams-c1", 50);
    assert_eq!(echo(&conns, "before"), 50, "all 50 connections work before");
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    let out = std::thread::scope(|s| {
        for client in CLIENTS {
            let (stop, seen) = (&stop, &seen);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = http(t, client, "/");
                    let mut g = seen.lock().expect("lock");
                    match r {
                        Ok(_) => g.http_ok += 1,
                        Err(e) => g.http_failed.push(format!("{client}: {e}")),
                    }
                    drop(g);
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = dig(t, client, "www.edge.example");
                    let mut g = seen.lock().expect("lock");
                    match r {
                        Ok(a) if dns_ok(&a) => g.dns_ok += 1,
                        Ok(a) => g.dns_bad.push(format!("{client}: wrong answer {a:?}")),
                        Err(e) => g.dns_bad.push(format!("{client}: {e}")),
                    }
                    drop(g);
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        // One poller per router, every 50 ms.
        for router in ["ams-r1", "nyc-r1"] {
            let (stop, seen) = (&stop, &seen);
            s.spawn(move || {
                let t0 = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let p0 = Instant::now();
                    let r = rib_paths(t, router);
                    let mut g = seen.lock().expect("lock");
                    g.rib_polls += 1;
                    match r {
                        Ok(0) => g.rib_missing.push(format!("{router} at {:?}", t0.elapsed())),
                        Ok(n) => {
                            let e = g.rib_paths.entry(router).or_insert((n, n));
                            e.0 = e.0.min(n);
                            e.1 = e.1.max(n);
                        }
                        Err(e) => g.rib_missing.push(format!("{router}: {e}")),
                    }
                    drop(g);
                    std::thread::sleep(Duration::from_millis(50).saturating_sub(p0.elapsed()));
                }
            });
        }
        // The loops stop even when the change panics (the scope would
        // otherwise wait for them forever).
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        // Let the loops run before and after the change.
        std::thread::sleep(Duration::from_millis(500));
        let out = change();
        std::thread::sleep(Duration::from_millis(1500));
        out
    });
    let mut seen = seen.into_inner().expect("lock");
    seen.conns_survived = echo(&conns, "after");
    drop(conns);
    drop(nt);
    (out, seen)
}

fn assert_hitless(what: &str, seen: &Seen) {
    eprintln!(
        "{what}: HTTP {} ok / {} failed; DNS {} ok / {} bad; {}/50 connections survived; \
         RIB polls {} (paths min/max {:?}), missing {}",
        seen.http_ok,
        seen.http_failed.len(),
        seen.dns_ok,
        seen.dns_bad.len(),
        seen.conns_survived,
        seen.rib_polls,
        seen.rib_paths,
        seen.rib_missing.len()
    );
    assert!(seen.http_ok >= 10 && seen.dns_ok >= 10, "the loops ran: {seen:?}");
    assert!(seen.rib_polls >= 10, "the RIBs were polled: {seen:?}");
    assert!(
        seen.http_failed.is_empty(),
        "{what}: failed requests {:#?}",
        seen.http_failed
    );
    assert!(
        seen.dns_bad.is_empty(),
        "{what}: failed or wrong DNS answers {:#?}",
        seen.dns_bad
    );
    assert!(
        seen.rib_missing.is_empty(),
        "{what}: VIP missing from a RIB {:#?}",
        seen.rib_missing
    );
    for (router, (min, max)) in &seen.rib_paths {
        assert_eq!(min, max, "{what}: the paths at {router} changed");
    }
    assert_eq!(
        seen.conns_survived, 50,
        "{what}: long-lived connections were reset"
    );
}

/// A self-signed P-256 certificate for `cn` (PEM files in `dir`).
fn make_cert(dir: &std::path::Path, stem: &str, cn: &str) {
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", &format!("/CN={cn}")])
        .arg("-keyout")
        .arg(dir.join(format!("{stem}.key")))
        .arg("-out")
        .arg(dir.join(format!("{stem}.crt")))
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The subject CN of the certificate the anycast VIP's TLS listener sends
/// to `client`.
fn served_cn(t: &TopologyLab, client: &str) -> Result<String, String> {
    let out = t
        .lab
        .exec(
            client,
            &[
                "curl",
                "-sk",
                "-m",
                "2",
                "-o",
                "/dev/null",
                "-v",
                &format!("https://{VIP}/"),
            ],
        )
        .map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    err.lines()
        .find_map(|l| l.trim_start_matches('*').trim().strip_prefix("subject: CN="))
        .map(|s| s.trim().to_string())
        .ok_or(err)
}

/// The two-PoP topology with a TLS listener and a named L7 route on the
/// anycast service, and a static record the test changes.
fn topology(route_tag: &str, api_addr: &str, gslb_ttl: u32) -> String {
    let text =
        std::fs::read_to_string(repo_root().join("labs/two-pop/deployment.toml")).expect("two-pop topology");
    let anycast_l7 = "pool = \"web\"\nl7 = [{ port = 80 }]\nl4";
    assert!(text.contains(anycast_l7));
    let with = text
        .replace(
            anycast_l7,
            &format!(
                "pool = \"web\"\nl7 = [\n  {{ port = 80, routes = [{{ name = \"tagged\", match = [{{ path_prefix = \"/tagged\" }}], \
                 action = {{ pool = \"web\" }}, response_headers = {{ set = [{{ name = \"x-route\", value = \"{route_tag}\" }}] }} }}] }},\n  \
                 {{ port = 443, tls = {{ certs = [{{ names = [\"www.edge.example\"], cert = \"edge.crt\", key = \"edge.key\" }}] }} }},\n]\nl4"
            ),
        )
        .replace(
            "  { name = \"anycast\", type = \"A\", value = \"203.0.113.10\" },",
            &format!("  {{ name = \"anycast\", type = \"A\", value = \"203.0.113.10\" }},\n  {{ name = \"api\", type = \"A\", value = \"{api_addr}\" }},"),
        )
        .replace("ttl = 20\nanswers = 1", &format!("ttl = {gslb_ttl}\nanswers = 1"));
    assert!(
        with.contains(&format!("ttl = {gslb_ttl}\nanswers = 1")),
        "GSLB ttl replaced"
    );
    with.replace(
        "name = \"two-pop\"",
        &format!("name = \"hl{}\"", std::process::id() % 100_000),
    )
}

/// `dig` with TTLs: the TTL of the first answer of `name`.
fn dig_ttl(t: &TopologyLab, client: &str, name: &str) -> Result<u32, String> {
    let out = t
        .lab
        .exec(
            client,
            &[
                "dig",
                "+tries=1",
                "+time=1",
                "+noall",
                "+answer",
                "@203.0.113.53",
                name,
            ],
        )
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .ok_or(text)
}

fn up(text: &str) -> TopologyLab {
    let t = TopologyLab::up_with(text, |dir| make_cert(dir, "edge", "edge-cert-one"));
    for r in ["ams-r1", "nyc-r1"] {
        t.lab
            .wait_route(r, vip(), RouteExpect::Ecmp(2), Duration::from_secs(30))
            .expect("anycast ECMP");
    }
    // Every path in every RIB: two local nodes and the other PoP's router.
    TopologyLab::wait(
        "three paths to the VIP at each router",
        Duration::from_secs(30),
        || {
            for r in ["ams-r1", "nyc-r1"] {
                let n = rib_paths(&t, r)?;
                if n != 3 {
                    return Err(format!("{r}: {n} paths"));
                }
            }
            Ok(())
        },
    );
    TopologyLab::wait("GSLB answers at both PoPs", Duration::from_secs(20), || {
        for c in CLIENTS {
            let a = dig(&t, c, "www.edge.example")?;
            if a.is_empty() {
                return Err(format!("{c}: empty"));
            }
        }
        Ok(())
    });
    t
}

fn nodes(t: &TopologyLab) -> Vec<String> {
    t.deployment.nodes().map(|n| n.name.clone()).collect()
}

#[test]
fn reload_of_dns_records_gslb_l7_routes_and_certificates_is_hitless() {
    if !ready("hitless reload") {
        return;
    }
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let before = topology("one", "198.51.100.77", 20);
    let after = topology("two", "198.51.100.78", 30);
    let t = up(&before);
    let config = t.dir.path().join("topology/deployment.toml");
    let cert_dir = t.dir.path().join("topology");
    assert_serves(&t, "one", "edge-cert-one", "198.51.100.77", 20);
    let gslb_answers = ["198.51.100.10", "198.51.100.20"];
    let dns_ok = |a: &[String]| a.len() == 1 && gslb_answers.contains(&a[0].as_str());
    let (reload_times, seen) = during(&t, &dns_ok, || {
        // The new file and the rotated certificate (same path, new content).
        std::fs::write(&config, &after).expect("write topology");
        make_cert(&cert_dir, "edge", "edge-cert-two");
        let mut times = BTreeMap::new();
        for n in nodes(&t) {
            let r0 = Instant::now();
            let out = t.edge(&n, &["reload"]);
            assert!(
                out.status.success(),
                "reload at {n}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            for tier in ["dns", "l7"] {
                assert!(
                    text.contains(tier),
                    "{n}: reload output names the {tier} changes:\n{text}"
                );
            }
            times.insert(n, r0.elapsed());
        }
        // The new behaviour, everywhere, within a second of the last reload.
        let v0 = Instant::now();
        TopologyLab::wait("the new config at both clients", Duration::from_secs(1), || {
            for c in CLIENTS {
                let r = http(&t, c, "/tagged")?;
                if !r.contains("x-route: two") {
                    return Err(format!("{c}: {r}"));
                }
                let cn = served_cn(&t, c)?;
                if cn != "edge-cert-two" {
                    return Err(format!("{c}: certificate {cn}"));
                }
                let a = dig(&t, c, "api.edge.example")?;
                if a != ["198.51.100.78"] {
                    return Err(format!("{c}: api {a:?}"));
                }
                let ttl = dig_ttl(&t, c, "www.edge.example")?;
                if ttl != 30 {
                    return Err(format!("{c}: gslb ttl {ttl}"));
                }
            }
            Ok(())
        });
        (times, v0.elapsed())
    });
    eprintln!(
        "reload per node {:?}; new behaviour seen everywhere {:?} after the last reload",
        reload_times.0, reload_times.1
    );
    assert_hitless("reload (DNS record, GSLB, L7 route, certificate)", &seen);
}

#[test]
fn a_reload_whose_certificate_is_missing_keeps_the_old_config_everywhere() {
    if !ready("hitless reload refused") {
        return;
    }
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let before = topology("one", "198.51.100.77", 20);
    let t = up(&before);
    let config = t.dir.path().join("topology/deployment.toml");
    let gslb_answers = ["198.51.100.10", "198.51.100.20"];
    let dns_ok = |a: &[String]| a.len() == 1 && gslb_answers.contains(&a[0].as_str());
    let (_, seen) = during(&t, &dns_ok, || {
        // A file that validates but whose apply fails part-way: the DNS and
        // route changes come before the certificate that is missing.
        let broken =
            topology("two", "198.51.100.78", 30).replace("cert = \"edge.crt\"", "cert = \"gone.crt\"");
        std::fs::write(&config, &broken).expect("write");
        for n in nodes(&t) {
            let out = t.edge(&n, &["reload"]);
            assert!(
                !out.status.success(),
                "{n}: a reload with a missing certificate must fail"
            );
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(err.contains("gone.crt"), "{n}: says why: {err}");
        }
        // A file that does not parse at all.
        std::fs::write(&config, "this is not toml [").expect("write");
        for n in nodes(&t) {
            let out = t.edge(&n, &["reload"]);
            assert!(!out.status.success(), "{n}: a broken file must be refused");
        }
    });
    // The old configuration, everywhere.
    assert_serves(&t, "one", "edge-cert-one", "198.51.100.77", 20);
    assert_hitless("refused reloads", &seen);
}

/// FRR's count of established sessions with `neighbor` (grows with every
/// reset).
fn frr_established(t: &TopologyLab, router: &str, neighbor: &str) -> u64 {
    let v = t
        .lab
        .vtysh_json(router, &format!("show bgp neighbors {neighbor} json"))
        .expect("vtysh");
    v[neighbor]["connectionsEstablished"]
        .as_u64()
        .unwrap_or_else(|| panic!("no session counters for {neighbor}: {v}"))
}

#[test]
fn a_reload_that_removes_and_adds_a_bgp_peer_changes_only_that_session() {
    if !ready("hitless peer change") {
        return;
    }
    // ams-e1 peers with a second router at ams, ams-r2 (BIRD), over its own
    // link.
    let with_r2 = topology("one", "198.51.100.77", 20)
        .replace(
            "[[sites.ams.nodes]]\nname = \"ams-e1\"",
            "[[sites.ams.routers]]\nname = \"ams-r2\"\nkind = \"bird\"\nasn = 65003\nrouter_id = \"198.18.0.3\"\n\
             addresses = [\"198.18.13.1/24\"]\n\n[[sites.ams.nodes]]\nname = \"ams-e1\"",
        )
        .replace(
            "addresses = [\"198.18.11.2/24\", \"2001:db8:11::2/64\", \"198.19.1.1/24\", \"2001:db8:101::1/64\"]\npeers = [\"ams-r1\"]",
            "addresses = [\"198.18.11.2/24\", \"2001:db8:11::2/64\", \"198.19.1.1/24\", \"2001:db8:101::1/64\", \"198.18.13.2/24\"]\n\
             peers = [\"ams-r1\", \"ams-r2\"]",
        );
    assert!(with_r2.contains("ams-r2\"]"), "topology edited");
    let without_r2 = with_r2.replace("peers = [\"ams-r1\", \"ams-r2\"]", "peers = [\"ams-r1\"]");
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let t = up(&with_r2);
    TopologyLab::wait(
        "the VIP at ams-r2",
        Duration::from_secs(20),
        || match rib_paths(&t, "ams-r2")? {
            1 => Ok(()),
            n => Err(format!("{n} paths")),
        },
    );
    let config = t.dir.path().join("topology/deployment.toml");
    let frr_before = frr_established(&t, "ams-r1", "198.18.11.2");
    let gslb_answers = ["198.51.100.10", "198.51.100.20"];
    let dns_ok = |a: &[String]| a.len() == 1 && gslb_answers.contains(&a[0].as_str());
    let (outputs, seen) = during(&t, &dns_ok, || {
        std::fs::write(&config, &without_r2).expect("write");
        let removed = t.edge("ams-e1", &["reload"]);
        assert!(
            removed.status.success(),
            "{}",
            String::from_utf8_lossy(&removed.stderr)
        );
        TopologyLab::wait(
            "ams-r2 to lose the VIP",
            Duration::from_secs(10),
            || match rib_paths(&t, "ams-r2")? {
                0 => Ok(()),
                n => Err(format!("{n} paths")),
            },
        );
        std::fs::write(&config, &with_r2).expect("write");
        let added = t.edge("ams-e1", &["reload"]);
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
        TopologyLab::wait(
            "ams-r2 to learn the VIP again",
            Duration::from_secs(20),
            || match rib_paths(&t, "ams-r2")? {
                1 => Ok(()),
                n => Err(format!("{n} paths")),
            },
        );
        (
            String::from_utf8_lossy(&removed.stdout).to_string(),
            String::from_utf8_lossy(&added.stdout).to_string(),
        )
    });
    eprintln!(
        "reload without ams-r2:\n{}reload with ams-r2:\n{}",
        outputs.0, outputs.1
    );
    assert!(
        outputs.0.contains("bgp: removed peer 198.18.13.1"),
        "{}",
        outputs.0
    );
    assert!(outputs.1.contains("bgp: added peer 198.18.13.1"), "{}", outputs.1);
    for out in [&outputs.0, &outputs.1] {
        assert!(
            !out.contains("198.18.11.1") && !out.contains("2001:db8:11::1"),
            "ams-r1's sessions are not touched: {out}"
        );
    }
    assert_eq!(
        frr_established(&t, "ams-r1", "198.18.11.2"),
        frr_before,
        "FRR saw no reset of its session with ams-e1"
    );
    assert_hitless("reload removing and adding a BGP peer", &seen);
}

/// An `edge` binary built from this tree with another version string (its
/// own target directory, so the suite's binary is left alone).
fn upgraded_binary(version: &str) -> std::path::PathBuf {
    let target = repo_root().join("target/upgrade");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["build", "-p", "edge", "--bin", "edge"])
        .env("EDGE_VERSION", version)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(repo_root())
        .output()
        .expect("cargo build");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bin = target.join("debug/edge");
    let v = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .expect("edge --version");
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("edge {version}")
    );
    bin
}

#[test]
fn upgrade_of_every_node_in_turn_is_hitless() {
    if !ready("hitless upgrade") {
        return;
    }
    let version = format!("{}+upgrade", env!("CARGO_PKG_VERSION"));
    let new_bin = upgraded_binary(&version);
    // Graceful restart keeps the routes at the routers while each node's
    // new process re-establishes its sessions; the restart time only needs
    // to cover the handover.
    let text = topology("one", "198.51.100.77", 20)
        .replace("[bgp]\n", "[bgp]\ngraceful_restart = { restart_time = \"5s\" }\n")
        .replace("[bus]\n", "[l4]\ndrain_timeout = \"60s\"\n\n[bus]\n");
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let t = up(&text);
    let gslb_answers = ["198.51.100.10", "198.51.100.20"];
    let dns_ok = |a: &[String]| a.len() == 1 && gslb_answers.contains(&a[0].as_str());
    let bin = new_bin.display().to_string();
    let (times, seen) = during(&t, &dns_ok, || {
        let mut times = BTreeMap::new();
        for n in nodes(&t) {
            let u0 = Instant::now();
            let out = t.edge(&n, &["upgrade", "--binary", &bin]);
            assert!(
                out.status.success(),
                "upgrade of {n}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let handover = u0.elapsed();
            // The new process answers `edge status` with the new version and
            // the same verdicts.
            TopologyLab::wait("the new version", Duration::from_secs(10), || {
                let out = t.edge(&n, &["status", "--json"]);
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}"))?;
                if v["version"] == version.as_str() && v["vips"][0]["verdict"]["decision"] == "announce" {
                    Ok(())
                } else {
                    Err(format!("{} {}", v["version"], v["vips"][0]["verdict"]))
                }
            });
            times.insert(n, (handover, u0.elapsed()));
        }
        times
    });
    for (n, (handover, total)) in &times {
        eprintln!(
            "upgrade of {n}: handover {handover:?}, new version serving {total:?} after `edge upgrade`"
        );
    }
    assert_hitless("upgrade of every node", &seen);
    // The new processes serve the same configuration (TLS included).
    assert_serves(&t, "one", "edge-cert-one", "198.51.100.77", 20);
    // The routers re-learned every path from the new processes.
    for r in ["ams-r1", "nyc-r1"] {
        assert_eq!(rib_paths(&t, r).expect("rib"), 3, "{r}");
    }
}
