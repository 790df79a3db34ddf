//! The `edge` BGP speaker against real FRR, BIRD and GoBGP routers, each in
//! its own namespace, with `edge run` processes as the nodes: the routers'
//! own CLIs must show our VIPs with our next hop, AS path, MED and
//! communities; ECMP over two nodes; GSHUT before a drain's withdraw;
//! withdraw on backend failure (timed); hold-timer expiry and recovery.

use std::time::{Duration, Instant};

use edge_labs::{IpNet, RouteExpect};
use edge_tests::{TopologyLab, lab_ready};

/// One site, one router of `kind`, `nodes` edge nodes peering with it over
/// IPv4 and IPv6, two backends on the LAN.
fn topology(name: &str, kind: &str, nodes: usize) -> String {
    topology_with(name, kind, nodes, "")
}

/// Like [`topology`], with extra router settings (`password`, `ttl_security`).
fn topology_with(name: &str, kind: &str, nodes: usize, router_extra: &str) -> String {
    let mut t = format!(
        r#"name = "{name}"
[bgp]
hold_time = 3
drain = "2s"
[sites.lab]
location = {{ lat = 52.37, lon = 4.90, country = "NL" }}
lan = ["198.19.1.0/24"]
[[sites.lab.routers]]
name = "r1"
kind = "{kind}"
{router_extra}
asn = 65000
router_id = "198.18.0.1"
addresses = ["#
    );
    for i in 1..=nodes {
        t.push_str(&format!("\"198.18.1{i}.1/24\", \"2001:db8:1{i}::1/64\", "));
    }
    t.push_str("]\n");
    for i in 1..=nodes {
        t.push_str(&format!(
            r#"[[sites.lab.nodes]]
name = "e{i}"
router_id = "198.18.1{i}.2"
asn = 65010
addresses = ["198.18.1{i}.2/24", "2001:db8:1{i}::2/64", "198.19.1.{i}/24"]
peers = ["r1"]
"#
        ));
    }
    t.push_str(
        r#"[vips.anycast]
prefixes = ["203.0.113.10/32", "2001:db8:ffff::10/128"]
sites = ["lab"]
announce = { med = 50, communities = ["65000:100"], large_communities = ["65000:1:10"] }
[pools.web]
check = { kind = "http", path = "/health", interval = "200ms", timeout = "150ms", rise = 2, fall = 3 }
backends = [
  { name = "b1", site = "lab", address = "198.19.1.11", port = 8080 },
  { name = "b2", site = "lab", address = "198.19.1.12", port = 8080 },
]
[services.web]
vip = "anycast"
pool = "web"
l4 = [{ protocol = "tcp", port = 9000 }]
"#,
    );
    t
}

fn v4() -> IpNet {
    "203.0.113.10/32".parse().expect("prefix")
}

fn frr_paths(t: &TopologyLab, cmd: &str) -> Result<Vec<serde_json::Value>, String> {
    let v = t.lab.vtysh_json("r1", cmd).map_err(|e| e.to_string())?;
    Ok(v["paths"].as_array().cloned().unwrap_or_default())
}

fn backend(t: &TopologyLab, b: &str, verb: &str) {
    let ip = if b == "b1" { "198.19.1.11" } else { "198.19.1.12" };
    let out = t
        .lab
        .exec(
            "e1",
            &[
                "curl",
                "-s",
                "-m",
                "2",
                "-X",
                "POST",
                &format!("http://{ip}:8080/{verb}"),
            ],
        )
        .expect("curl");
    assert!(
        out.status.success(),
        "{verb} {b}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn frr_vips_attributes_ecmp_gshut_drain_health_withdraw_and_hold_timer() {
    if !lab_ready(
        "bgp_interop_frr",
        &["ip", "vtysh", "curl", "/usr/lib/frr/bgpd", "/usr/lib/frr/zebra"],
    ) {
        return;
    }
    let t = TopologyLab::up(&topology(
        &format!("bfrr{}", std::process::id() % 10000),
        "frr",
        2,
    ));
    let t0 = Instant::now();

    // Both nodes' paths, with our attributes, for v4 and v6.
    let paths = TopologyLab::wait("two IPv4 paths at FRR", Duration::from_secs(30), || {
        let p = frr_paths(&t, "show bgp ipv4 unicast 203.0.113.10/32 json")?;
        if p.len() == 2 {
            Ok(p)
        } else {
            Err(format!("{p:?}"))
        }
    });
    eprintln!("FRR has both IPv4 paths {:?} after lab up", t0.elapsed());
    for p in &paths {
        assert_eq!(p["aspath"]["string"], "65010", "{p:#}");
        assert_eq!(p["metric"], 50, "{p:#}");
        let comm = p["community"]["string"].as_str().unwrap_or_default();
        assert!(comm.contains("65000:100"), "{p:#}");
        let large = p["largeCommunity"]["string"].as_str().unwrap_or_default();
        assert!(large.contains("65000:1:10"), "{p:#}");
        let nh = p["nexthops"][0]["ip"].as_str().unwrap_or_default();
        assert!(nh == "198.18.11.2" || nh == "198.18.12.2", "{p:#}");
    }
    TopologyLab::wait("two IPv6 paths at FRR", Duration::from_secs(30), || {
        let p = frr_paths(&t, "show bgp ipv6 unicast 2001:db8:ffff::10/128 json")?;
        let nhs: Vec<String> = p.iter().map(|p| p["nexthops"][0]["ip"].to_string()).collect();
        if p.len() == 2 && nhs.iter().all(|n| n.contains("2001:db8:1")) {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    // ECMP in FRR's kernel table (zebra, maximum-paths).
    let r = t
        .lab
        .wait_route("r1", v4(), RouteExpect::Ecmp(2), Duration::from_secs(10))
        .expect("ecmp route");
    eprintln!("kernel multipath route: {:?}", r.map(|r| r.gateways));

    // Planned drain of e1: GSHUT first, then the withdraw after `drain`.
    let out = t.edge("e1", &["drain", "e1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d0 = Instant::now();
    TopologyLab::wait("GSHUT on e1's path", Duration::from_secs(5), || {
        let text = t
            .lab
            .vtysh("r1", &["show bgp ipv4 unicast 203.0.113.10/32"])
            .map_err(|e| e.to_string())?;
        if text.contains("graceful-shutdown") {
            Ok(())
        } else {
            Err(text)
        }
    });
    let gshut_at = d0.elapsed();
    TopologyLab::wait(
        "e1's path withdrawn after the drain",
        Duration::from_secs(10),
        || {
            let p = frr_paths(&t, "show bgp ipv4 unicast 203.0.113.10/32 json")?;
            let only_e2 = p.len() == 1 && p[0]["nexthops"][0]["ip"] == "198.18.12.2";
            if only_e2 { Ok(()) } else { Err(format!("{p:?}")) }
        },
    );
    eprintln!(
        "drain: GSHUT seen after {gshut_at:?}, withdraw after {:?} (drain time 2 s)",
        d0.elapsed()
    );
    let out = t.edge("e1", &["undrain", "e1"]);
    assert!(out.status.success());
    t.lab
        .wait_route("r1", v4(), RouteExpect::Ecmp(2), Duration::from_secs(10))
        .expect("ECMP back");

    // Health-driven withdraw: both backends fail their checks.
    backend(&t, "b1", "fail");
    backend(&t, "b2", "fail");
    let w0 = Instant::now();
    TopologyLab::wait("VIP gone from FRR's RIB", Duration::from_secs(10), || {
        let p = frr_paths(&t, "show bgp ipv4 unicast 203.0.113.10/32 json")?;
        if p.is_empty() {
            Ok(())
        } else {
            Err(format!("{} paths", p.len()))
        }
    });
    let withdraw = w0.elapsed();
    eprintln!(
        "health-driven withdraw: last backend failed → route gone from FRR's RIB in {withdraw:?} (inter 200ms fall 3)"
    );
    assert!(withdraw < Duration::from_secs(3), "{withdraw:?}");
    backend(&t, "b1", "heal");
    t.lab
        .wait_route("r1", v4(), RouteExpect::Ecmp(2), Duration::from_secs(10))
        .expect("back after heal");

    // Hold timer: FRR's bgpd stops answering; our 3 s hold timer expires.
    let bgpd = t.lab.pid("r1/bgpd").expect("bgpd pid").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &bgpd])
            .status()
            .expect("kill")
            .success()
    );
    let h0 = Instant::now();
    TopologyLab::wait("e1's session down by hold timer", Duration::from_secs(10), || {
        let out = t.edge("e1", &["bgp", "sessions", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let s = &v[0];
        if s["state"] != "Established"
            && s["last_error"]
                .as_str()
                .unwrap_or("")
                .to_lowercase()
                .contains("hold")
        {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    });
    eprintln!("hold timer expired {:?} after the peer went silent", h0.elapsed());
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &bgpd])
            .status()
            .expect("kill")
            .success()
    );
    let r0 = Instant::now();
    TopologyLab::wait(
        "sessions and routes back after the peer resumed",
        Duration::from_secs(30),
        || {
            let p = frr_paths(&t, "show bgp ipv4 unicast 203.0.113.10/32 json")?;
            if p.len() == 2 {
                Ok(())
            } else {
                Err(format!("{p:?}"))
            }
        },
    );
    eprintln!(
        "re-established and re-announced {:?} after the peer resumed",
        r0.elapsed()
    );
}

#[test]
fn bird_vips_attributes_merged_ecmp_and_withdraw() {
    if !lab_ready("bgp_interop_bird", &["ip", "bird", "birdc", "curl"]) {
        return;
    }
    let t = TopologyLab::up(&topology(
        &format!("bbird{}", std::process::id() % 10000),
        "bird",
        2,
    ));
    let route = TopologyLab::wait("both paths at BIRD", Duration::from_secs(30), || {
        let r = t
            .lab
            .birdc("r1", "show route all 203.0.113.10/32")
            .map_err(|e| e.to_string())?;
        if r.matches("BGP.as_path: 65010").count() == 2 {
            Ok(r)
        } else {
            Err(r)
        }
    });
    for needle in [
        "BGP.med: 50",
        "BGP.community: (65000,100)",
        "BGP.large_community: (65000, 1, 10)",
    ] {
        assert!(route.contains(needle), "missing {needle} in\n{route}");
    }
    assert!(
        route.contains("BGP.next_hop: 198.18.11.2") && route.contains("BGP.next_hop: 198.18.12.2"),
        "{route}"
    );
    TopologyLab::wait("IPv6 VIP at BIRD", Duration::from_secs(30), || {
        let r = t
            .lab
            .birdc("r1", "show route all 2001:db8:ffff::10/128")
            .map_err(|e| e.to_string())?;
        if r.matches("BGP.as_path: 65010").count() == 2 {
            Ok(())
        } else {
            Err(r)
        }
    });
    // `merge paths on`: one kernel route with both nodes as next hops.
    t.lab
        .wait_route("r1", v4(), RouteExpect::Ecmp(2), Duration::from_secs(10))
        .expect("merged ECMP route");

    backend(&t, "b1", "fail");
    backend(&t, "b2", "fail");
    let w0 = Instant::now();
    TopologyLab::wait("VIP withdrawn at BIRD", Duration::from_secs(10), || {
        // birdc exits non-zero with "Network not found" once it is gone.
        match t.lab.birdc("r1", "show route 203.0.113.10/32") {
            Ok(r) if r.contains("203.0.113.10/32") => Err(r),
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    });
    eprintln!("BIRD: health-driven withdraw in {:?}", w0.elapsed());
    TopologyLab::wait("IPv6 VIP withdrawn at BIRD", Duration::from_secs(5), || {
        match t.lab.birdc("r1", "show route 2001:db8:ffff::10/128") {
            Ok(r) if r.contains("2001:db8:ffff::10/128") => Err(r),
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    });
    t.lab
        .wait_route("r1", v4(), RouteExpect::Absent, Duration::from_secs(5))
        .expect("kernel route gone");
}

#[test]
fn gobgp_sees_vips_and_their_withdraw() {
    if !lab_ready("bgp_interop_gobgp", &["ip", "gobgpd", "gobgp", "curl"]) {
        return;
    }
    let t = TopologyLab::up(&topology(
        &format!("bgo{}", std::process::id() % 10000),
        "gobgp",
        1,
    ));
    let rib = TopologyLab::wait("VIP in GoBGP's RIB", Duration::from_secs(40), || {
        let r = t
            .lab
            .gobgp("r1", &["global", "rib", "-a", "ipv4"])
            .map_err(|e| e.to_string())?;
        if r.contains("203.0.113.10/32") {
            Ok(r)
        } else {
            Err(r)
        }
    });
    let line = rib
        .lines()
        .find(|l| l.contains("203.0.113.10/32"))
        .unwrap_or_default();
    assert!(line.contains("198.18.11.2") && line.contains("65010"), "{rib}");
    assert!(line.contains("{Med: 50}") || rib.contains("Med: 50"), "{rib}");
    assert!(line.contains("65000:100"), "{rib}");
    TopologyLab::wait("IPv6 VIP in GoBGP's RIB", Duration::from_secs(20), || {
        let r = t
            .lab
            .gobgp("r1", &["global", "rib", "-a", "ipv6"])
            .map_err(|e| e.to_string())?;
        if r.contains("2001:db8:ffff::10/128") && r.contains("2001:db8:11::2") {
            Ok(())
        } else {
            Err(r)
        }
    });
    backend(&t, "b1", "fail");
    backend(&t, "b2", "fail");
    TopologyLab::wait("VIP withdrawn at GoBGP", Duration::from_secs(10), || {
        let r = t
            .lab
            .gobgp("r1", &["global", "rib", "-a", "ipv4"])
            .map_err(|e| e.to_string())?;
        if r.contains("203.0.113.10/32") {
            Err(r)
        } else {
            Ok(())
        }
    });
}

/// TCP-MD5 (RFC 2385) and GTSM (RFC 5082) against FRR, which runs both on
/// every node session: e1 has the right password and GTSM and gets in; e2
/// has a wrong password; e3 the right password but no GTSM (its packets
/// arrive with TTL 64 < 254). Only e1 ever establishes, which shows both
/// that we sign and set TTL 255 and that each protection really filters.
#[test]
fn frr_session_with_tcp_md5_and_gtsm() {
    if !lab_ready(
        "bgp_interop_md5",
        &["ip", "vtysh", "/usr/lib/frr/bgpd", "/usr/lib/frr/zebra"],
    ) {
        return;
    }
    let name = format!("bmd5{}", std::process::id() % 10000);
    let text = topology_with(&name, "frr", 3, "password = \"s3cret-Key\"\nttl_security = true");
    let t = TopologyLab::up(&text);
    let variants = [
        ("e2", text.replace("s3cret-Key", "not-the-key")),
        ("e3", text.replace("ttl_security = true", "ttl_security = false")),
    ];
    let bin = edge_tests::edge_bin().display().to_string();
    let mut children = Vec::new();
    for (node, cfg) in variants {
        // Replace the lab's node process with one running the variant.
        if let Some(pid) = t.lab.pid(&format!("{node}-edge")) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let file = t.dir.path().join(format!("{node}.toml"));
        std::fs::write(&file, cfg).expect("write variant");
        let file = file.display().to_string();
        children.push(
            std::process::Command::new("ip")
                .args(["netns", "exec", &t.lab.kernel_ns(node).expect("ns")])
                .args([bin.as_str(), "run", "--config", file.as_str(), "--node", node])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn variant"),
        );
    }

    let paths = TopologyLab::wait(
        "e1's signed, TTL-255 session and route",
        Duration::from_secs(30),
        || {
            let p = frr_paths(&t, "show bgp ipv4 unicast 203.0.113.10/32 json")?;
            if p.len() == 1 {
                Ok(p)
            } else {
                Err(format!("{p:?}"))
            }
        },
    );
    assert_eq!(paths[0]["nexthops"][0]["ip"], "198.18.11.2", "only e1 gets in");
    let e1 = t
        .lab
        .vtysh("r1", &["show bgp neighbors 198.18.11.2"])
        .expect("vtysh");
    assert!(
        e1.contains("BGP state = Established") && e1.contains("Peer Authentication Enabled"),
        "{e1}"
    );
    // Give the others several connect-retry rounds.
    std::thread::sleep(Duration::from_secs(4));
    for (node, addr) in [
        ("e2 (wrong password)", "198.18.12.2"),
        ("e3 (no GTSM)", "198.18.13.2"),
    ] {
        let n = t
            .lab
            .vtysh("r1", &[&format!("show bgp neighbors {addr}")])
            .expect("vtysh");
        assert!(
            !n.contains("BGP state = Established"),
            "{node} must not establish:\n{n}"
        );
    }
    let p = frr_paths(&t, "show bgp ipv4 unicast 203.0.113.10/32 json").expect("paths");
    assert_eq!(p.len(), 1, "{p:?}");
    drop(t);
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}
