//! The node puts the VIPs it serves on `lo` and takes them away when it
//! stops serving them, never touching addresses it did not add. Runs an
//! `edge` process in a network namespace made by the test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_tests::{edge_bin, lab_ready};

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?} failed");
}

fn lo_addrs(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-br", "addr", "show", "dev", "lo"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn wait_lo(ns: &str, what: &str, pred: impl Fn(&str) -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        let a = lo_addrs(ns);
        if pred(&a) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}; lo: {a}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn vips_follow_health_on_lo_and_foreign_addresses_are_left_alone() {
    if !lab_ready("vips_follow_health_on_lo", &["ip", "socat"]) {
        return;
    }
    let ns = format!("edge-viplo{}", std::process::id());
    ip(&["netns", "add", &ns]);
    let _ns = Netns(ns.clone());
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    // An address the operator configured: the node must never remove it.
    ip(&["-n", &ns, "addr", "add", "203.0.113.99/32", "dev", "lo"]);

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        r#"
name = "viplo"
[sites.lab]
location = { lat = 52.37, lon = 4.90, country = "NL" }
[[sites.lab.nodes]]
name = "n1"
router_id = "198.18.200.2"
asn = 65010
addresses = ["198.18.200.2/24"]
[vips.web]
prefixes = ["203.0.113.10/32", "2001:db8:ffff::10/128"]
sites = ["lab"]
[vips.pre]
prefixes = ["203.0.113.99/32"]
sites = ["lab"]
[pools.web]
check = { kind = "tcp", interval = "100ms", timeout = "100ms", rise = 1, fall = 1 }
backends = [{ name = "b1", site = "lab", address = "127.0.0.1", port = 18080 }]
[services.web]
vip = "web"
pool = "web"
l4 = [{ protocol = "tcp", port = 80 }]
"#,
    )
    .expect("write config");

    let bin = edge_bin();
    assert!(
        bin.exists(),
        "{} missing: cargo build --workspace --bins",
        bin.display()
    );
    let mut edge = Proc(
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(&bin)
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn edge"),
    );

    // No backend yet: the web VIP stays off lo.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!lo_addrs(&ns).contains("203.0.113.10"), "{}", lo_addrs(&ns));

    // The backend comes up: both web prefixes appear.
    let backend = Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "socat",
                "TCP-LISTEN:18080,fork,reuseaddr",
                "SYSTEM:true",
            ])
            .spawn()
            .expect("socat"),
    );
    let t = wait_lo(&ns, "web VIP on lo", |a| {
        a.contains("203.0.113.10/32") && a.contains("2001:db8:ffff::10/128")
    });
    eprintln!("VIP on lo {t:?} after the backend came up");

    // The backend dies: the web VIP leaves lo, the operator's address stays.
    drop(backend);
    let t = wait_lo(&ns, "web VIP removed", |a| !a.contains("203.0.113.10"));
    eprintln!("VIP removed from lo {t:?} after the backend died");
    assert!(lo_addrs(&ns).contains("203.0.113.99/32"));

    // Up again, then a clean stop removes what the node added, only that.
    let _backend = Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "socat",
                "TCP-LISTEN:18080,fork,reuseaddr",
                "SYSTEM:true",
            ])
            .spawn()
            .expect("socat"),
    );
    wait_lo(&ns, "web VIP back", |a| a.contains("203.0.113.10/32"));
    let pid = edge.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = edge.0.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let a = lo_addrs(&ns);
    assert!(
        !a.contains("203.0.113.10") && !a.contains("2001:db8:ffff::10"),
        "{a}"
    );
    assert!(
        a.contains("203.0.113.99/32"),
        "the operator's address must survive: {a}"
    );
}
