//! The topology file contract: every example parses, unknown fields are
//! rejected, and a broken file reports all of its errors with field paths.

use edge_topology::{TopologyError, parse, parse_raw};

fn examples() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("examples dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).expect("read"),
            )
        })
        .collect();
    out.push((
        "labs/two-pop/deployment.toml".into(),
        edge_topology::TWO_POP.into(),
    ));
    out.sort();
    out
}

#[test]
fn every_example_validates() {
    let all = examples();
    assert!(all.len() >= 2, "expected the demo and the two-pop lab at least");
    for (name, text) in all {
        if let Err(e) = parse(&text) {
            panic!("{name} does not validate:\n{e}");
        }
    }
}

#[test]
fn two_pop_has_the_shape_the_lab_promises() {
    let d = parse(edge_topology::TWO_POP).expect("valid");
    assert_eq!(d.sites.len(), 2);
    assert_eq!(d.nodes().count(), 4);
    assert_eq!(
        d.router("ams-r1").map(|r| r.kind),
        Some(edge_topology::RouterKind::Frr)
    );
    assert_eq!(
        d.router("nyc-r1").map(|r| r.kind),
        Some(edge_topology::RouterKind::Bird)
    );
    let (_, e1) = d.node("ams-e1").expect("node");
    // One IPv4 and one IPv6 session to ams-r1, over the shared link.
    let remotes: Vec<String> = e1.peers.iter().map(|p| p.remote.to_string()).collect();
    assert_eq!(remotes, ["198.18.11.1", "2001:db8:11::1"]);
    assert_eq!(e1.gossip.to_string(), "198.18.11.2:7946");
    let anycast = &d.vips["anycast"];
    assert_eq!(anycast.announce.communities, vec![(65000, 100)]);
    assert_eq!(d.vips_of_site("nyc").count(), 3);
}

#[test]
fn demo_is_loopback_only() {
    let d = parse(edge_topology::DEMO).expect("valid");
    let (_, n) = d.node("demo").expect("node");
    assert!(n.admin.ip().is_loopback());
    assert!(n.gossip.ip().is_loopback());
    assert!(d.routers().next().is_none());
}

#[test]
fn unknown_fields_are_rejected_with_their_name() {
    let text = edge_topology::DEMO.replace("asn = 65010", "asn = 65010\nasm = 1");
    match parse_raw(&text) {
        Err(TopologyError::Parse(m)) => assert!(m.contains("asm"), "{m}"),
        other => panic!("expected a parse error, got {other:?}"),
    }
    let text = format!("{}\n[extra]\nx = 1\n", edge_topology::DEMO);
    assert!(matches!(parse_raw(&text), Err(TopologyError::Parse(_))));
}

/// One broken file, many distinct errors: each must be reported, at once,
/// with its field path.
#[test]
fn a_broken_file_reports_every_error_with_its_path() {
    let broken = r#"
name = "broken"
[bus]
seeds = ["ghost"]
interval = "soon"

[sites.ams]
location = { lat = 95.0, lon = 4.9, country = "nl" }
lan = ["198.19.1.0/24"]
[[sites.ams.routers]]
name = "ams-r1"
kind = "juniper"
asn = 23456
router_id = "198.18.0.1"
addresses = ["198.18.11.1/24"]
[[sites.ams.nodes]]
name = "ams-e1"
router_id = "198.18.11.2"
asn = 65011
addresses = ["198.18.11.2/24", "198.19.1.1/24"]
peers = ["ams-r1", "ams-r9"]
[[sites.ams.nodes]]
name = "ams-e2"
router_id = "198.18.11.2"
asn = 0
addresses = ["198.18.99.2/24", "not-an-address"]
peers = ["ams-r1"]

[vips.a]
prefixes = ["203.0.113.0/24"]
sites = ["ams", "lon"]
announce = { communities = ["65000:70000"] }
[vips.b]
prefixes = ["203.0.113.10/32", "203.0.113.11/24"]
sites = ["ams"]

[pools.empty]
backends = []
[pools.web]
check = { kind = "http", path = "health", interval = "100ms", timeout = "1s", rise = 0 }
backends = [ { name = "b1", site = "ams", address = "198.51.100.99", port = 8080 } ]

[services.s]
vip = "nope"
pool = "missing"
l4 = [{ protocol = "sctp", port = 80, algorithm = "magic" }]
"#;
    let err = parse(broken).expect_err("must fail");
    let errs = err.field_errors();
    let text = err.to_string();
    let expect = [
        ("bus.seeds[0]", "unknown node"),
        ("bus.interval", "not a duration"),
        ("sites.ams.location.lat", "outside"),
        ("sites.ams.location.country", "ISO 3166"),
        ("sites.ams.routers[0].kind", "unknown router kind"),
        ("sites.ams.routers[0].asn", "AS_TRANS"),
        ("sites.ams.nodes[0].peers[1]", "unknown router"),
        ("sites.ams.nodes[1].router_id", "duplicates sites.ams.nodes[0]"),
        ("sites.ams.nodes[1].asn", "reserved"),
        ("sites.ams.nodes[1].addresses[1]", "CIDR"),
        ("sites.ams.nodes[1].addresses", "LAN"),
        ("sites.ams.nodes[1].peers[0]", "no address on a subnet shared"),
        ("vips.a.sites[1]", "unknown site"),
        ("vips.a.announce.communities[0]", "0..=65535"),
        ("vips.b.prefixes[0]", "overlaps"),
        ("vips.b.prefixes[1]", "host bits"),
        ("pools.empty.backends", "empty"),
        ("pools.web.backends[0].address", "outside site ams's LAN"),
        ("pools.web.check.path", "must start with '/'"),
        ("pools.web.check.timeout", "longer than the interval"),
        ("pools.web.check.rise", "at least 1"),
        ("services.s.vip", "unknown VIP"),
        ("services.s.pool", "unknown pool"),
        ("services.s.l4[0].protocol", "unknown protocol"),
        ("services.s.l4[0].algorithm", "unknown algorithm"),
    ];
    for (path, reason) in expect {
        assert!(
            errs.iter().any(|e| e.path == path && e.reason.contains(reason)),
            "missing `{path}: …{reason}…` in:\n{text}"
        );
    }
    assert!(errs.len() >= expect.len(), "{text}");
}

#[test]
fn duplicate_names_across_sites_are_reported_with_the_first_place() {
    let text = edge_topology::TWO_POP.replacen("name = \"nyc-e2\"", "name = \"ams-e1\"", 1);
    let err = parse(&text).expect_err("must fail");
    assert!(
        err.field_errors()
            .iter()
            .any(|e| e.path == "sites.nyc.nodes[1].name" && e.reason.contains("sites.ams.nodes[0]")),
        "{err}"
    );
}

#[test]
fn a_listener_port_used_twice_on_one_vip_is_an_error() {
    let text = edge_topology::DEMO.replace("l7 = [{ port = 8080 }]", "l7 = [{ port = 9000 }]");
    let err = parse(&text).expect_err("must fail");
    assert!(
        err.field_errors()
            .iter()
            .any(|e| e.path == "services.demo.l7[0].port" && e.reason.contains("already used")),
        "{err}"
    );
}

#[test]
fn the_xdp_dataplane_needs_maglev_and_the_service_port_at_the_backend() {
    let userspace = "{ protocol = \"tcp\", port = 9000, algorithm = \"maglev\", dataplane = \"userspace\", backend_port = 9000 }";
    assert!(edge_topology::TWO_POP.contains(userspace));
    let ok = edge_topology::TWO_POP.replace(
        userspace,
        "{ protocol = \"tcp\", port = 9000, dataplane = \"xdp\", backend_port = 9000 }",
    );
    parse(&ok).expect("xdp with maglev and an unchanged port is fine");
    let text = edge_topology::TWO_POP.replace(
        userspace,
        "{ protocol = \"tcp\", port = 9000, algorithm = \"rr\", dataplane = \"xdp\", backend_port = 9001 }",
    );
    let err = parse(&text).expect_err("must fail");
    let errs = err.field_errors();
    assert!(
        errs.iter()
            .any(|e| e.path == "services.web.l4[0].algorithm" && e.reason.contains("maglev only")),
        "{err}"
    );
    assert!(
        errs.iter().any(|e| e.path == "services.web.l4[0].backend_port"
            && e.reason.contains("cannot rewrite port 9000 to 9001")),
        "{err}"
    );
    // Without backend_port, the pool's backend ports (8080) are the target.
    let text = edge_topology::TWO_POP.replace(
        userspace,
        "{ protocol = \"tcp\", port = 9000, dataplane = \"xdp\" }",
    );
    let err = parse(&text).expect_err("must fail");
    assert!(
        err.field_errors()
            .iter()
            .any(|e| e.path == "services.web.l4[0].backend_port"
                && e.reason.contains("set backend_port = 9000")),
        "{err}"
    );
}

#[test]
fn l4_settings_are_checked() {
    let good = format!(
        "{}\n[l4]\ntable_size = 655373\ndrain_timeout = \"5s\"\nxdp_mode = \"native\"\nsource_limit = {{ per_second = 50 }}\n",
        edge_topology::TWO_POP
    );
    let d = parse(&good).expect("valid l4 settings");
    assert_eq!(d.l4.table_size, 655_373);
    assert_eq!(d.l4.drain_timeout, std::time::Duration::from_secs(5));
    assert_eq!(d.l4.xdp_mode, edge_topology::XdpMode::Native);
    let limit = edge_topology::SourceLimit {
        per_second: 50,
        burst: 100,
    };
    assert_eq!(d.l4.source_limit, Some(limit), "burst defaults to twice the rate");
    assert_eq!(
        parse(edge_topology::TWO_POP).expect("valid").l4,
        edge_topology::L4Settings::default()
    );
    let bad = format!(
        "{}\n[l4]\ntable_size = 65536\ndrain_timeout = \"soon\"\nxdp_mode = \"fast\"\nsource_limit = {{ per_second = 0 }}\n",
        edge_topology::TWO_POP
    );
    let err = parse(&bad).expect_err("must fail");
    let paths: Vec<&str> = err.field_errors().iter().map(|e| e.path.as_str()).collect();
    for p in [
        "l4.table_size",
        "l4.drain_timeout",
        "l4.xdp_mode",
        "l4.source_limit",
    ] {
        assert!(paths.contains(&p), "{p} missing in {err}");
    }
}

#[test]
fn gslb_load_and_latency_settings_are_checked() {
    let with = |extra_dns: &str, node_extra: &str| {
        edge_topology::TWO_POP
            .replacen(
                "name = \"ams-e1\"",
                &format!("name = \"ams-e1\"\n{node_extra}"),
                1,
            )
            .replacen("[dns]\n", &format!("[dns]\n{extra_dns}\n"), 1)
    };
    assert!(edge_topology::TWO_POP.contains("[dns]\n"));
    let d = parse(&with(
        "shed_load_above = 0.75\nlatency_tolerance = \"2ms\"\ncountry_sites = { nl = [\"ams\"] }",
        "capacity = 1000",
    ))
    .expect("valid");
    let dns = d.dns.as_ref().expect("dns");
    assert_eq!(dns.shed_load_above, 0.75);
    assert_eq!(dns.latency_tolerance, std::time::Duration::from_millis(2));
    assert_eq!(dns.country_sites["NL"], vec!["ams".to_string()]);
    assert_eq!(d.node("ams-e1").expect("node").1.capacity, Some(1000));
    let err = parse(&with(
        "shed_load_above = 1.5\nlatency_tolerance = \"soon\"\ncountry_sites = { nld = [\"mars\"] }",
        "capacity = 0",
    ))
    .expect_err("must fail");
    let paths: Vec<&str> = err.field_errors().iter().map(|e| e.path.as_str()).collect();
    for p in [
        "dns.shed_load_above",
        "dns.latency_tolerance",
        "dns.country_sites.nld",
        "sites.ams.nodes[0].capacity",
    ] {
        assert!(paths.contains(&p), "{p} missing in {err}");
    }
}
