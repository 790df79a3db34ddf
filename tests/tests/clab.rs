//! The committed containerlab export of the two-PoP lab
//! (`labs/two-pop/clab/`, written by `edge_labs::clab`).
//!
//! containerlab and Docker are not available here, so the file is checked
//! the way containerlab would read it, plus what it has to agree with:
//! * the YAML parses; every node has a kind and an image; every link names
//!   defined nodes and each interface once; every bind source exists;
//! * the links are exactly the plan's veths and bridge ports;
//! * addresses and management subnets stay in the lab address space;
//! * the router configs pass the real parsers (`bird -p`, `vtysh --dryrun`,
//!   `gobgpd --dry-run`) where installed;
//! * the files are what `edge_labs::clab::render` produces now;
//! * as root, the wiring is rebuilt in namespaces (one per container, one
//!   veth per link) and every node's `ip` commands from `exec` must succeed
//!   and give the reachability the plan promises.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use edge_labs::IpNet;
use edge_labs::spec::check_net;
use edge_tests::{LabMode, find_tool, lab_ready, repo_root};
use serde_norway::Value;

fn clab_dir() -> PathBuf {
    repo_root().join("labs/two-pop/clab")
}

fn deployment() -> edge_topology::Deployment {
    edge_topology::parse(edge_topology::TWO_POP).expect("two-PoP topology")
}

fn clab_text() -> String {
    let dep = deployment();
    let path = clab_dir().join(edge_labs::clab::clab_file_name(&dep));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn clab() -> Value {
    serde_norway::from_str(&clab_text()).expect("the clab file is valid YAML")
}

fn s<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v:?}"))
}

fn nodes(doc: &Value) -> BTreeMap<String, Value> {
    doc["topology"]["nodes"]
        .as_mapping()
        .expect("topology.nodes is a mapping")
        .iter()
        .map(|(k, v)| (s(k, "node name").to_string(), v.clone()))
        .collect()
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Sequence(items) => items.iter().map(|i| s(i, what).to_string()).collect(),
        other => panic!("{what} is not a list: {other:?}"),
    }
}

/// Each link as its two endpoints `(node, ifname)`, in file order.
fn links(doc: &Value) -> Vec<[(String, String); 2]> {
    doc["topology"]["links"]
        .as_sequence()
        .expect("topology.links is a list")
        .iter()
        .map(|l| {
            let eps = strings(&l["endpoints"], "endpoint");
            assert_eq!(eps.len(), 2, "a veth link has two endpoints: {eps:?}");
            let split = |e: &str| -> (String, String) {
                let (n, i) = e
                    .split_once(':')
                    .unwrap_or_else(|| panic!("endpoint {e:?} is not node:ifname"));
                (n.to_string(), i.to_string())
            };
            [split(&eps[0]), split(&eps[1])]
        })
        .collect()
}

#[test]
fn clab_nodes_links_and_binds_are_consistent() {
    let text = clab_text();
    assert!(
        !text.contains('$'),
        "containerlab expands $VARS in the whole file"
    );
    let doc = clab();
    assert_eq!(s(&doc["name"], "name"), edge_labs::plan::lab_name(&deployment()));
    let nodes = nodes(&doc);
    assert!(!nodes.is_empty());
    for (name, n) in &nodes {
        let kind = s(&n["kind"], "kind");
        assert!(["linux", "bridge"].contains(&kind), "{name}: kind {kind}");
        assert!(!s(&n["image"], "image").is_empty(), "{name} has no image");
        for b in strings(&n["binds"], "bind") {
            let parts: Vec<&str> = b.split(':').collect();
            assert!(
                (2..=3).contains(&parts.len()),
                "{name}: bind {b:?} is not src:dst[:mode]"
            );
            let src = clab_dir().join(parts[0]);
            assert!(
                src.is_file(),
                "{name}: bind source {} does not exist",
                src.display()
            );
            assert!(
                parts[1].starts_with('/'),
                "{name}: bind target {b:?} is not absolute"
            );
        }
        for (k, v) in n["sysctls"].as_mapping().into_iter().flatten() {
            let k = s(k, "sysctl");
            assert!(
                k.starts_with("net."),
                "{name}: sysctl {k} is not per network namespace"
            );
            let v = s(v, "sysctl value");
            assert!(v.parse::<u32>().is_ok(), "{name}: sysctl {k} = {v:?}");
        }
    }

    let mut used = BTreeSet::new();
    for ends in links(&doc) {
        for (node, ifname) in ends {
            assert!(nodes.contains_key(&node), "link to undefined node {node}");
            assert!(
                !ifname.is_empty() && ifname.len() <= 15 && ifname != "eth0",
                "{node}:{ifname} is not a usable interface name"
            );
            assert!(
                used.insert((node.clone(), ifname.clone())),
                "{node}:{ifname} is used by two links"
            );
        }
    }
}

#[test]
fn clab_links_are_the_plans_veths_and_bridge_ports() {
    let spec = edge_labs::plan::plan(&deployment()).expect("plan");
    let pair = |a: (&str, &str), b: (&str, &str)| -> BTreeSet<(String, String)> {
        [a, b]
            .iter()
            .map(|(n, i)| (n.to_string(), i.to_string()))
            .collect()
    };
    let mut want: Vec<BTreeSet<(String, String)>> = spec
        .links
        .iter()
        .map(|l| pair((&l.a.namespace, &l.a.ifname), (&l.b.namespace, &l.b.ifname)))
        .collect();
    for b in &spec.bridges {
        for (i, p) in b.ports.iter().enumerate() {
            want.push(pair(
                (&p.namespace, &p.ifname),
                (&b.namespace, &p.bridge_side_name(&b.name, i)),
            ));
        }
    }
    let mut got: Vec<BTreeSet<(String, String)>> = links(&clab())
        .into_iter()
        .map(|[a, b]| [a, b].into_iter().collect())
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "clab links vs. plan veths + bridge ports");

    // One container per namespace, nothing else.
    let names: BTreeSet<String> = nodes(&clab()).into_keys().collect();
    let ns: BTreeSet<String> = spec.namespaces.iter().map(|n| n.name.clone()).collect();
    assert_eq!(names, ns);
}

#[test]
fn clab_addresses_stay_in_the_lab_address_space() {
    let doc = clab();
    let spec = edge_labs::plan::plan(&deployment()).expect("plan");
    let mut lab_addrs: Vec<IpNet> = Vec::new();
    for l in &spec.links {
        lab_addrs.extend(l.a.addresses.iter().chain(&l.b.addresses));
    }
    for b in &spec.bridges {
        for p in &b.ports {
            lab_addrs.extend(&p.addresses);
        }
    }
    for key in ["ipv4-subnet", "ipv6-subnet"] {
        let net: IpNet = s(&doc["mgmt"][key], key).parse().expect("a prefix");
        check_net(key, &net).expect("management subnet in the lab address space");
        for a in &lab_addrs {
            assert!(
                !net.contains(&a.addr()) && !a.trunc().contains(&net.addr()),
                "management {net} overlaps lab address {a}"
            );
        }
    }
    let mut seen = 0;
    for (name, n) in nodes(&doc) {
        for cmd in strings(&n["exec"], "exec") {
            for word in cmd.split_whitespace() {
                if let Ok(net) = word.parse::<IpNet>() {
                    seen += 1;
                    // 0.0.0.0/0 and ::/0 only appear in the command that
                    // removes Docker's default routes.
                    if net.prefix_len() > 0 {
                        check_net(&format!("{name}: {cmd}"), &net).expect("lab address space");
                    } else {
                        assert!(cmd.contains("route flush exact"), "{name}: {cmd}");
                    }
                }
            }
        }
    }
    assert!(seen > 50, "only {seen} prefixes in exec commands");
}

#[test]
fn clab_files_are_current() {
    let dep = deployment();
    let base = repo_root().join("labs/two-pop");
    let files = edge_labs::clab::render(
        &dep,
        &edge_labs::clab::Source {
            text: edge_topology::TWO_POP,
            base_dir: &base,
        },
    )
    .expect("render");
    for f in files {
        let path = clab_dir().join(&f.path);
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            on_disk == f.contents,
            "{} is stale; run `EDGE_REGENERATE=1 cargo test -p edge-labs clab`",
            path.display()
        );
    }
}

/// Runs a config parser when it is installed; missing tools skip (fail
/// under `EDGE_LAB=require`).
fn parse_with(tool: &str, args: &[&str], file: &Path) -> bool {
    let Some(bin) = find_tool(tool) else {
        let msg = format!("{tool} not installed, {} not parsed", file.display());
        match LabMode::from_env() {
            LabMode::Require => panic!("{msg} (EDGE_LAB=require)"),
            LabMode::Optional => {
                eprintln!("SKIP {msg}");
                return false;
            }
        }
    };
    let out = Command::new(&bin)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{tool} rejects {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[test]
fn clab_router_configs_pass_the_real_parsers() {
    let mut parsed = Vec::new();
    for (name, n) in nodes(&clab()) {
        for b in strings(&n["binds"], "bind") {
            let mut parts = b.split(':');
            let (Some(src), Some(dst)) = (parts.next(), parts.next()) else {
                panic!("{name}: bind {b:?}")
            };
            let file = clab_dir().join(src);
            let ok = if dst.starts_with("/etc/bird/") {
                parse_with("bird", &["-p", "-c"], &file)
            } else if dst.starts_with("/etc/frr/") && dst.ends_with(".conf") {
                // vtysh checks every line against the daemons' grammar
                // without starting them (exit 2 on an unknown command).
                parse_with("vtysh", &["--dryrun", "-f"], &file)
            } else if dst.starts_with("/etc/gobgp/") {
                parse_with("gobgpd", &["--dry-run", "-f"], &file)
            } else {
                continue;
            };
            if ok {
                parsed.push(format!("{name}:{dst}"));
            }
        }
    }
    eprintln!("parsed {parsed:?}");
    // FRR (zebra + bgpd) on ams-r1 and BIRD on nyc-r1 when the tools are
    // there: a file whose router configs are not bound at all must fail.
    if find_tool("vtysh").is_some() && find_tool("bird").is_some() {
        assert_eq!(parsed.len(), 3, "{parsed:?}");
    }
}

/// Namespaces standing in for the containers; removed on drop, also when
/// an assertion fails.
struct Netns {
    lab: String,
}

impl Netns {
    fn name(&self, node: &str) -> String {
        edge_labs::kernel_ns(&self.lab, node)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = edge_labs::Lab::cleanup_lab(&self.lab) {
            eprintln!("cleanup of {}: {e}", self.lab);
        }
    }
}

fn run(argv: &[&str]) -> Result<String, String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| format!("{argv:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{argv:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Wires the lab the way containerlab would (a namespace per node, a veth
/// per link, the node's sysctls), then runs each node's `ip` commands from
/// `exec`, each of which must succeed. Returns the namespaces and how many
/// commands ran.
fn wire(lab: &str, doc: &Value) -> (Netns, usize) {
    let ns = Netns { lab: lab.to_string() };
    let nodes = nodes(doc);
    for (name, n) in &nodes {
        let k = ns.name(name);
        run(&["ip", "netns", "add", &k]).expect("netns");
        run(&["ip", "-n", &k, "link", "set", "lo", "up"]).expect("lo up");
        for (key, v) in n["sysctls"].as_mapping().into_iter().flatten() {
            let setting = format!("{}={}", s(key, "sysctl"), s(v, "sysctl value"));
            run(&["ip", "netns", "exec", &k, "sysctl", "-q", "-w", &setting]).expect("sysctl");
        }
    }
    for [(na, ia), (nb, ib)] in links(doc) {
        let (ka, kb) = (ns.name(&na), ns.name(&nb));
        run(&[
            "ip", "link", "add", &ia, "netns", &ka, "type", "veth", "peer", "name", &ib, "netns", &kb,
        ])
        .expect("veth");
    }
    let mut ran = 0;
    for (name, n) in &nodes {
        let k = ns.name(name);
        for cmd in strings(&n["exec"], "exec") {
            // Only the network commands: the flag file and GoBGP's API
            // calls belong inside a container.
            let Some(rest) = cmd.strip_prefix("ip ") else {
                continue;
            };
            let mut argv = vec!["ip", "-n", k.as_str()];
            argv.extend(rest.split_whitespace());
            if let Err(e) = run(&argv) {
                panic!("{name}: exec {cmd:?} failed: {e}");
            }
            ran += 1;
        }
    }
    (ns, ran)
}

fn ping(ns: &Netns, node: &str, target: &str) -> Result<String, String> {
    run(&[
        "ip",
        "netns",
        "exec",
        &ns.name(node),
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        target,
    ])
}

/// The `exec` commands give the reachability the plan promises on every
/// link and LAN, and the routes it lists. Routers and programs are not
/// started here (see the next test for the routers).
#[test]
fn clab_exec_commands_build_the_wiring_in_namespaces() {
    if !lab_ready(
        "clab_exec_commands_build_the_wiring_in_namespaces",
        &["ip", "ping"],
    ) {
        return;
    }
    let (ns, ran) = wire(&format!("ck{}", std::process::id()), &clab());
    assert!(ran > 100, "only {ran} commands ran");

    // Over a veth: client to router, both families; over a bridge: backend
    // to its site's first node (IPv4-only backend); edge node to router.
    for (node, target) in [
        ("ams-c1", "198.18.1.1"),
        ("ams-c1", "2001:db8:1::1"),
        ("nyc-c1", "198.18.2.1"),
        ("ams-b1", "198.19.1.1"),
        ("nyc-b2", "198.19.2.1"),
        ("ams-e2", "2001:db8:101::1"),
        ("nyc-e1", "198.18.21.1"),
        ("ams-r1", "198.18.100.2"),
    ] {
        ping(&ns, node, target).unwrap_or_else(|e| panic!("{node} cannot reach {target}: {e}"));
    }
    // The static routes are in place and nothing routes "everything".
    let routes = run(&["ip", "-n", &ns.name("ams-c1"), "route"]).expect("routes");
    assert!(routes.contains("203.0.113.0/24 via 198.18.1.1"), "{routes}");
    assert!(!routes.contains("default"), "{routes}");
    // Without the routers, the other site is unreachable: the pings above
    // prove the wiring, not some path around it.
    assert!(ping(&ns, "ams-c1", "198.18.2.2").is_err());
}

/// The committed router configs, bound where the containers read them,
/// with only their log paths moved off the host's /tmp and /var/log.
fn router_config(node: &str, file: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(clab_dir().join("configs").join(node).join(file)).expect("config");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("log file ") {
                format!("log file {}/{file}.log\n", dir.display())
            } else if l.starts_with("log \"") {
                format!("log \"{}/{file}.log\" all;\n", dir.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write config");
    path
}

fn frr_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"frr") && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .expect("user frr")
}

/// FRR (ams-r1) and BIRD (nyc-r1) run the committed configs in the wired
/// namespaces: the eBGP session between them comes up over the exec-built
/// link, both install the other site's client subnet, and the two clients
/// reach each other over IPv4 and IPv6, which nothing but BGP provides.
#[test]
fn clab_routers_route_client_to_client_in_namespaces() {
    let zebra = "/usr/lib/frr/zebra";
    let bgpd = "/usr/lib/frr/bgpd";
    if !lab_ready(
        "clab_routers_route_client_to_client_in_namespaces",
        &["ip", "ping", "bird", zebra, bgpd],
    ) {
        return;
    }
    // Declared before the namespaces so it outlives the daemons using it.
    let dir = tempfile::tempdir().expect("tempdir");
    let (ns, _) = wire(&format!("cr{}", std::process::id()), &clab());
    let d = dir.path();
    let (uid, gid) = frr_ids();
    // FRR drops to user frr, which must be able to write its directory.
    std::os::unix::fs::chown(d, Some(uid), Some(gid)).expect("chown");

    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (ka, kn) = (ns.name("ams-r1"), ns.name("nyc-r1"));
    let frr = |daemon: &str, extra: &[&str]| {
        let conf = router_config("ams-r1", &format!("{daemon}.conf"), d);
        std::os::unix::fs::chown(&conf, Some(uid), Some(gid)).expect("chown");
        let mut argv = vec![
            "ip".to_string(),
            "netns".into(),
            "exec".into(),
            ka.clone(),
            daemon_path(daemon),
            "-d".into(),
            "-f".into(),
            s(&conf),
            "-i".into(),
            s(&d.join(format!("{daemon}.pid"))),
            "--vty_socket".into(),
            s(d),
            "-z".into(),
            s(&d.join("zserv.api")),
            "-P".into(),
            "0".into(),
            "-u".into(),
            "frr".into(),
            "-g".into(),
            "frr".into(),
        ];
        argv.extend(extra.iter().map(|e| e.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        run(&argv).unwrap_or_else(|e| panic!("starting {daemon}: {e}"));
    };
    frr("zebra", &[]);
    wait("zebra's API socket", || d.join("zserv.api").exists());
    frr("bgpd", &[]);
    let bird_conf = router_config("nyc-r1", "bird.conf", d);
    run(&[
        "ip",
        "netns",
        "exec",
        &kn,
        "bird",
        "-c",
        &s(&bird_conf),
        "-s",
        &s(&d.join("bird.ctl")),
        "-P",
        &s(&d.join("bird.pid")),
    ])
    .expect("starting bird");

    // IPv6 next hops are the peer's link-local address, so those routes
    // are recognised by the interface they leave through.
    for (k, prefix, via) in [
        (&ka, "198.18.2.0/24", "via 198.18.100.2 "),
        (&kn, "198.18.1.0/24", "via 198.18.100.1 "),
        (&ka, "2001:db8:2::/64", "dev p-nyc-r1 "),
        (&kn, "2001:db8:1::/64", "dev p-ams-r1 "),
    ] {
        // `ip route show` lists IPv4 unless told the family.
        let family = if prefix.contains(':') { "-6" } else { "-4" };
        let found =
            poll(|| run(&["ip", "-n", k, family, "route", "show", prefix]).is_ok_and(|r| r.contains(via)));
        if !found {
            let diag = [
                run(&["ip", "-n", &ka, "-6", "route"]),
                run(&["ip", "-n", &kn, "-6", "route"]),
                run(&["birdc", "-s", &s(&d.join("bird.ctl")), "show", "protocols", "all"]),
                run(&["vtysh", "--vty_socket", &s(d), "-c", "show bgp summary"]),
            ];
            panic!("no route {prefix} {via}in {k} after 30 s:\n{diag:#?}");
        }
    }
    for target in ["198.18.2.2", "2001:db8:2::2"] {
        ping(&ns, "ams-c1", target).unwrap_or_else(|e| panic!("ams-c1 cannot reach nyc-c1 {target}: {e}"));
    }
}

fn daemon_path(daemon: &str) -> String {
    format!("/usr/lib/frr/{daemon}")
}

/// BGP with 1/3 s timers converges in a few seconds; 30 s leaves room for
/// a loaded CI machine.
fn poll(mut ok: impl FnMut() -> bool) -> bool {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(30) {
        if ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    false
}

fn wait(what: &str, ok: impl FnMut() -> bool) {
    assert!(poll(ok), "timed out after 30 s waiting for {what}");
}
