//! Router configuration text generated from a [`RouterSpec`].
//!
//! Pure functions (spec + directory → text) so they are unit-tested
//! without root. The shapes follow the verified recipes in LAB-FACTS §2,
//! including its traps:
//! * FRR zebra: `no zebra nexthop kernel enable` (FRR 8.4 loses ECMP after
//!   a link flap with kernel nexthop groups).
//! * BIRD: `merge paths on` for ECMP in the kernel, `connect delay time 1`
//!   (the default 5 s delays start-up by ~4 s).
//! * Timers 1/3/1 everywhere so failures show in ~3 s.
//!
//! Address families: every neighbour is activated only in the family of
//! its own address (IPv4 neighbour ↔ IPv4 unicast, IPv6 ↔ IPv6 unicast).

use std::fmt::Write as _;
use std::path::Path;

use crate::spec::{NeighborSpec, RouterSpec};

/// Most ECMP paths the routers install; plenty for lab topologies.
pub const MAX_PATHS: u32 = 8;

// `writeln!` into a String cannot fail; this keeps the generators free of
// `unwrap()` noise.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{ let _ = writeln!($dst, $($arg)*); }};
}

/// `zebra.conf` for an FRR router that installs routes.
pub fn frr_zebra_conf(r: &RouterSpec, dir: &Path) -> String {
    let mut s = String::new();
    w!(s, "hostname {}", r.name);
    w!(s, "log file {}/zebra.log", dir.display());
    w!(s, "no zebra nexthop kernel enable");
    s
}

/// `bgpd.conf` for an FRR router.
pub fn frr_bgpd_conf(r: &RouterSpec, dir: &Path) -> String {
    let t = r.timers;
    let mut s = String::new();
    w!(s, "hostname {}", r.name);
    w!(s, "log file {}/bgpd.log", dir.display());
    w!(s, "router bgp {}", r.asn);
    w!(s, " bgp router-id {}", r.router_id);
    w!(s, " bgp log-neighbor-changes");
    // Labs have no policies; without these FRR 8.4 refuses to send or
    // accept eBGP routes and refuses `network` for prefixes not in a RIB.
    w!(s, " no bgp ebgp-requires-policy");
    w!(s, " no bgp network import-check");
    // Activate families explicitly per neighbour (see module comment).
    w!(s, " no bgp default ipv4-unicast");
    if r.multipath {
        w!(s, " bgp bestpath as-path multipath-relax");
    }
    for n in &r.neighbors {
        let a = n.address;
        w!(s, " neighbor {a} remote-as {}", n.asn);
        if !n.description.is_empty() {
            w!(s, " neighbor {a} description {}", n.description);
        }
        w!(s, " neighbor {a} timers {} {}", t.keepalive, t.hold);
        w!(s, " neighbor {a} timers connect {}", t.connect);
        w!(s, " neighbor {a} advertisement-interval 0");
        if let Some(pw) = &n.password {
            w!(s, " neighbor {a} password {pw}");
        }
        if n.ttl_security {
            w!(s, " neighbor {a} ttl-security hops 1");
        }
    }
    let paths = if r.multipath { MAX_PATHS } else { 1 };
    let families: [(&str, Vec<&NeighborSpec>, Vec<ipnet::IpNet>); 2] = [
        ("ipv4", r.neighbors_v4().collect(), r.originate_v4().collect()),
        ("ipv6", r.neighbors_v6().collect(), r.originate_v6().collect()),
    ];
    for (af, neighbors, prefixes) in families {
        if neighbors.is_empty() && prefixes.is_empty() {
            continue;
        }
        w!(s, " address-family {af} unicast");
        for p in prefixes {
            w!(s, "  network {p}");
        }
        w!(s, "  maximum-paths {paths}");
        w!(s, "  maximum-paths ibgp {paths}");
        for n in neighbors {
            w!(s, "  neighbor {} activate", n.address);
        }
        w!(s, " exit-address-family");
    }
    s
}

/// BIRD 2 configuration. `log_file` is where BIRD logs.
pub fn bird_conf(r: &RouterSpec, dir: &Path) -> String {
    let t = r.timers;
    let mut s = String::new();
    w!(s, "log \"{}/bird.log\" all;", dir.display());
    w!(s, "router id {};", r.router_id);
    w!(s, "protocol device {{ scan time 10; }}");
    if r.installs_routes() {
        // Only BGP-learned routes go to the kernel: the static blackholes
        // below exist to originate prefixes, not to drop traffic locally.
        let merge = if r.multipath {
            format!("merge paths on limit {MAX_PATHS}; ")
        } else {
            String::new()
        };
        for af in ["ipv4", "ipv6"] {
            let k = if af == "ipv4" { "k4" } else { "k6" };
            w!(
                s,
                "protocol kernel {k} {{ {merge}{af} {{ import none; export where source = RTS_BGP; }}; }}"
            );
        }
    }
    for (name, af, prefixes) in [
        ("originate4", "ipv4", r.originate_v4().collect::<Vec<_>>()),
        ("originate6", "ipv6", r.originate_v6().collect::<Vec<_>>()),
    ] {
        if prefixes.is_empty() {
            continue;
        }
        w!(s, "protocol static {name} {{");
        w!(s, "  {af};");
        for p in prefixes {
            w!(s, "  route {p} blackhole;");
        }
        w!(s, "}}");
    }
    w!(
        s,
        "template bgp peers {{ local as {}; hold time {}; keepalive time {}; connect retry time {}; \
         connect delay time 1; error wait time 1, 5; }}",
        r.asn,
        t.hold,
        t.keepalive,
        t.connect
    );
    for (i, n) in r.neighbors.iter().enumerate() {
        let af = if n.address.is_ipv4() { "ipv4" } else { "ipv6" };
        let desc = if n.description.is_empty() {
            String::new()
        } else {
            format!("description \"{}\"; ", n.description)
        };
        let mut security = String::new();
        if let Some(pw) = &n.password {
            security.push_str(&format!("password \"{pw}\"; "));
        }
        if n.ttl_security {
            security.push_str("ttl security on; ");
        }
        // Export originated and BGP-learned routes: a lab router behaves
        // like a transit router that passes VIPs on. On import, honour
        // RFC 8326 GRACEFUL_SHUTDOWN as FRR does by itself: such paths get
        // LOCAL_PREF 0, so a draining node loses its traffic before it
        // withdraws.
        w!(
            s,
            "protocol bgp peer{i} from peers {{ {desc}{security}neighbor {} as {}; {af} {{ \
             import filter {{ if (65535, 0) ~ bgp_community then bgp_local_pref = 0; accept; }}; \
             export where source ~ [RTS_STATIC, RTS_BGP]; }}; }}",
            n.address,
            n.asn
        );
    }
    s
}

/// GoBGP TOML configuration. Originated prefixes are not part of the file
/// (GoBGP's config has no static routes); the launcher adds them through
/// `gobgp global rib add` once the API answers — see [`gobgp_originate_args`].
pub fn gobgp_toml(r: &RouterSpec) -> String {
    let t = r.timers;
    let mut s = String::new();
    w!(s, "[global.config]");
    w!(s, "  as = {}", r.asn);
    w!(s, "  router-id = \"{}\"", r.router_id);
    // Listening makes sessions come up in ~1.4 s instead of 5–10 s when
    // GoBGP has to dial (LAB-FACTS §2).
    w!(s, "  port = 179");
    if r.multipath {
        w!(s, "[global.use-multiple-paths.config]");
        w!(s, "  enabled = true");
    }
    for n in &r.neighbors {
        let family = if n.address.is_ipv4() {
            "ipv4-unicast"
        } else {
            "ipv6-unicast"
        };
        w!(s, "[[neighbors]]");
        w!(s, "  [neighbors.config]");
        w!(s, "    neighbor-address = \"{}\"", n.address);
        w!(s, "    peer-as = {}", n.asn);
        if let Some(pw) = &n.password {
            w!(s, "    auth-password = {}", toml::Value::String(pw.clone()));
        }
        if !n.description.is_empty() {
            w!(
                s,
                "    description = {}",
                toml::Value::String(n.description.clone())
            );
        }
        if n.ttl_security {
            w!(s, "  [neighbors.ttl-security.config]");
            w!(s, "    enabled = true");
            w!(s, "    ttl-min = 255");
        }
        w!(s, "  [neighbors.timers.config]");
        w!(s, "    connect-retry = {}", t.connect);
        w!(s, "    hold-time = {}", t.hold);
        w!(s, "    keepalive-interval = {}", t.keepalive);
        w!(s, "  [[neighbors.afi-safis]]");
        w!(s, "    [neighbors.afi-safis.config]");
        w!(s, "      afi-safi-name = \"{family}\"");
    }
    s
}

/// `gobgp` CLI arguments (after `gobgp`) that originate each prefix of `r`.
pub fn gobgp_originate_args(r: &RouterSpec) -> Vec<Vec<String>> {
    r.originate_v4()
        .map(|p| (p, "ipv4"))
        .chain(r.originate_v6().map(|p| (p, "ipv6")))
        .map(|(p, af)| {
            ["global", "rib", "add", &p.to_string(), "-a", af]
                .map(String::from)
                .to_vec()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RouterKind;
    use crate::spec::tests::two_router_spec;
    use std::path::PathBuf;

    fn router() -> RouterSpec {
        two_router_spec().routers[0].clone()
    }

    #[test]
    fn frr_bgpd_golden() {
        let text = frr_bgpd_conf(&router(), &PathBuf::from("/lab/frr/r1"));
        let want = "\
hostname r1
log file /lab/frr/r1/bgpd.log
router bgp 65001
 bgp router-id 198.18.0.1
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 bgp bestpath as-path multipath-relax
 neighbor 198.18.0.2 remote-as 65002
 neighbor 198.18.0.2 description r2 v4
 neighbor 198.18.0.2 timers 1 3
 neighbor 198.18.0.2 timers connect 1
 neighbor 198.18.0.2 advertisement-interval 0
 neighbor 2001:db8:0:1::2 remote-as 65002
 neighbor 2001:db8:0:1::2 description r2 v6
 neighbor 2001:db8:0:1::2 timers 1 3
 neighbor 2001:db8:0:1::2 timers connect 1
 neighbor 2001:db8:0:1::2 advertisement-interval 0
 address-family ipv4 unicast
  network 198.51.100.0/24
  maximum-paths 8
  maximum-paths ibgp 8
  neighbor 198.18.0.2 activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:fffe::/48
  maximum-paths 8
  maximum-paths ibgp 8
  neighbor 2001:db8:0:1::2 activate
 exit-address-family
";
        assert_eq!(text, want);
    }

    #[test]
    fn frr_single_path_and_v4_only() {
        let mut r = router();
        r.multipath = false;
        r.neighbors.truncate(1);
        r.originate.truncate(1);
        r.timers.hold = 9;
        let text = frr_bgpd_conf(&r, &PathBuf::from("/d"));
        assert!(text.contains("  maximum-paths 1\n"));
        assert!(!text.contains("multipath-relax"));
        assert!(text.contains(" neighbor 198.18.0.2 timers 1 9\n"));
        assert!(!text.contains("address-family ipv6"), "{text}");
    }

    #[test]
    fn frr_zebra_disables_kernel_nexthop_groups() {
        let text = frr_zebra_conf(&router(), &PathBuf::from("/lab/frr/r1"));
        assert_eq!(
            text,
            "hostname r1\nlog file /lab/frr/r1/zebra.log\nno zebra nexthop kernel enable\n"
        );
    }

    #[test]
    fn bird_golden() {
        let mut r = router();
        r.kind = RouterKind::Bird;
        let text = bird_conf(&r, &PathBuf::from("/lab/bird/r1"));
        let want = "\
log \"/lab/bird/r1/bird.log\" all;
router id 198.18.0.1;
protocol device { scan time 10; }
protocol kernel k4 { merge paths on limit 8; ipv4 { import none; export where source = RTS_BGP; }; }
protocol kernel k6 { merge paths on limit 8; ipv6 { import none; export where source = RTS_BGP; }; }
protocol static originate4 {
  ipv4;
  route 198.51.100.0/24 blackhole;
}
protocol static originate6 {
  ipv6;
  route 2001:db8:fffe::/48 blackhole;
}
template bgp peers { local as 65001; hold time 3; keepalive time 1; connect retry time 1; connect delay time 1; error wait time 1, 5; }
protocol bgp peer0 from peers { description \"r2 v4\"; neighbor 198.18.0.2 as 65002; ipv4 { import filter { if (65535, 0) ~ bgp_community then bgp_local_pref = 0; accept; }; export where source ~ [RTS_STATIC, RTS_BGP]; }; }
protocol bgp peer1 from peers { description \"r2 v6\"; neighbor 2001:db8:0:1::2 as 65002; ipv6 { import filter { if (65535, 0) ~ bgp_community then bgp_local_pref = 0; accept; }; export where source ~ [RTS_STATIC, RTS_BGP]; }; }
";
        assert_eq!(text, want);
    }

    #[test]
    fn bird_without_kernel_or_multipath() {
        let mut r = router();
        r.kind = RouterKind::Bird;
        r.multipath = false;
        let text = bird_conf(&r, &PathBuf::from("/d"));
        assert!(text.contains("protocol kernel k4 { ipv4 {"), "{text}");
        r.install_routes = Some(false);
        let text = bird_conf(&r, &PathBuf::from("/d"));
        assert!(!text.contains("protocol kernel"), "{text}");
        r.originate.clear();
        let text = bird_conf(&r, &PathBuf::from("/d"));
        assert!(
            !text.contains("protocol static"),
            "empty static protocols are invalid BIRD"
        );
    }

    #[test]
    fn gobgp_golden() {
        let mut r = router();
        r.kind = RouterKind::Gobgp;
        let text = gobgp_toml(&r);
        let want = "\
[global.config]
  as = 65001
  router-id = \"198.18.0.1\"
  port = 179
[global.use-multiple-paths.config]
  enabled = true
[[neighbors]]
  [neighbors.config]
    neighbor-address = \"198.18.0.2\"
    peer-as = 65002
    description = \"r2 v4\"
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 3
    keepalive-interval = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv4-unicast\"
[[neighbors]]
  [neighbors.config]
    neighbor-address = \"2001:db8:0:1::2\"
    peer-as = 65002
    description = \"r2 v6\"
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 3
    keepalive-interval = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv6-unicast\"
";
        assert_eq!(text, want);
        // The text is valid TOML with the structure GoBGP expects.
        let v: toml::Value = toml::from_str(&text).expect("valid toml");
        assert_eq!(v["neighbors"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            gobgp_originate_args(&r),
            vec![
                vec!["global", "rib", "add", "198.51.100.0/24", "-a", "ipv4"],
                vec!["global", "rib", "add", "2001:db8:fffe::/48", "-a", "ipv6"],
            ]
        );
    }

    #[test]
    fn originated_prefixes_are_normalised() {
        let mut r = router();
        r.originate = vec!["203.0.113.10/24".parse().expect("net")];
        let text = frr_bgpd_conf(&r, &PathBuf::from("/d"));
        assert!(text.contains("  network 203.0.113.0/24\n"), "{text}");
    }

    /// The generated text is accepted by the real parsers when they are
    /// installed (`bird -p`, `gobgpd --dry-run`, `bgpd --dryrun`); no root
    /// needed. Skips each tool that is absent.
    #[test]
    fn real_parsers_accept_generated_configs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let r = router();
        let run = |tool: &str, args: &[&str]| {
            if !Path::new(tool).exists() {
                eprintln!("skipping {tool}: not installed");
                return;
            }
            let out = std::process::Command::new(tool)
                .args(args)
                .output()
                .expect("run parser");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // bgpd --dryrun exits 0 even for unknown lines; it only prints
            // "No such command" (checked by hand), so any output counts.
            let complained = tool.ends_with("/bgpd") && !text.trim().is_empty();
            assert!(
                out.status.success() && !complained,
                "{tool} {args:?} rejected the config:\n{text}"
            );
        };
        let bird = d.join("bird.conf");
        std::fs::write(&bird, bird_conf(&r, d)).expect("write");
        run("/usr/sbin/bird", &["-p", "-c", &bird.to_string_lossy()]);
        let gobgp = d.join("gobgp.toml");
        std::fs::write(&gobgp, gobgp_toml(&r)).expect("write");
        run("/usr/bin/gobgpd", &["--dry-run", "-f", &gobgp.to_string_lossy()]);
        let bgpd = d.join("bgpd.conf");
        std::fs::write(&bgpd, frr_bgpd_conf(&r, d)).expect("write");
        // -S: skip the user switch so this also runs as non-root; -Z: no zebra.
        run(
            "/usr/lib/frr/bgpd",
            &["--dryrun", "-S", "-Z", "-f", &bgpd.to_string_lossy()],
        );
    }
}
