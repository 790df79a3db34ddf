//! Interop with a real FRR `bgpd` (no zebra) on loopback.
//!
//! Skips with a one-line reason when not root or FRR is not installed,
//! unless `EDGE_LAB=require`, in which case a missing prerequisite fails.
//! Every process started here is killed by a Drop guard, on success and on
//! failure alike.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edge_bgp::{Community, PeerConfig, RibKind, Route, Speaker, SpeakerConfig, State};

const BGPD: &str = "/usr/lib/frr/bgpd";
const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Kills and reaps the daemon when the test ends, however it ends.
struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skip_or_fail(reason: &str) -> bool {
    if std::env::var("EDGE_LAB").as_deref() == Ok("require") {
        panic!("EDGE_LAB=require but {reason}");
    }
    println!("skipping FRR interop test: {reason}");
    true
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn vtysh(dir: &Path, cmd: &str) -> serde_json::Value {
    let out = Command::new("vtysh")
        .arg("--vty_socket")
        .arg(dir)
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run vtysh");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn start_bgpd(dir: &Path, port: u16) -> Daemon {
    let conf = dir.join("bgpd.conf");
    // AS 65000 (the "router"), passive towards us; announces one prefix of
    // its own so we also decode a real FRR UPDATE (IPv4 and IPv6).
    std::fs::write(
        &conf,
        format!(
            "frr defaults traditional\n\
             hostname frr-interop\n\
             log file {log}\n\
             !\n\
             router bgp 65000\n \
             bgp router-id 198.51.100.254\n \
             no bgp ebgp-requires-policy\n \
             no bgp network import-check\n \
             neighbor 127.0.0.1 remote-as 65010\n \
             neighbor 127.0.0.1 passive\n \
             neighbor 127.0.0.1 disable-connected-check\n \
             neighbor 127.0.0.1 timers 1 3\n \
             address-family ipv4 unicast\n  \
             network 198.51.100.0/24\n \
             exit-address-family\n \
             address-family ipv6 unicast\n  \
             neighbor 127.0.0.1 activate\n  \
             network 2001:db8:ff00::/48\n \
             exit-address-family\n\
             !\n",
            log = dir.join("bgpd.log").display()
        ),
    )
    .unwrap();
    let st = Command::new("chown")
        .args(["-R", "frr:frr"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "chown frr:frr {}", dir.display());
    let child = Command::new(BGPD)
        .arg("-Z")
        .args(["-p", &port.to_string(), "-l", "127.0.0.1"])
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("bgpd.pid"))
        .arg("--vty_socket")
        .arg(dir)
        .args(["-P", "0", "-u", "frr", "-g", "frr"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bgpd");
    Daemon { child }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frr_receives_and_withdraws_our_route() {
    if !is_root() && skip_or_fail("not running as root") {
        return;
    }
    if !Path::new(BGPD).exists() && skip_or_fail("FRR bgpd is not installed") {
        return;
    }
    if Command::new("vtysh").arg("--version").output().is_err() && skip_or_fail("vtysh is not installed") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().to_path_buf();
    let port = free_port();
    let _bgpd = start_bgpd(&dir, port);
    wait_for("bgpd vty socket", || dir.join("bgpd.vty").exists().then_some(())).await;

    let mut peer = PeerConfig::new(LO, 65000);
    peer.port = port;
    peer.hold_time = 3;
    peer.connect_retry = Duration::from_millis(250);
    peer.connect_retry_max = Duration::from_secs(2);
    // FRR drops 127/8 next hops as martian: advertise a documentation
    // address instead of "self" here.
    peer.next_hop_v4 = Some(Ipv4Addr::new(198, 51, 100, 1));
    peer.next_hop_v6 = Some("2001:db8::1".parse().unwrap());
    let speaker = Speaker::start(SpeakerConfig {
        local_as: 65010,
        router_id: Ipv4Addr::new(198, 51, 100, 1),
        listen: None,
        peers: vec![peer],
    })
    .await
    .unwrap();
    let route = Route::new("203.0.113.10/32".parse().unwrap())
        .with_med(50)
        .with_community(Community::new(65000, 100));
    speaker.announce([route].into_iter().collect());

    wait_for("session established", || {
        (speaker.sessions()[0].state == State::Established).then_some(())
    })
    .await;

    // FRR's table has our route with our AS path and MED...
    let entry = wait_for("203.0.113.10/32 in FRR", || {
        let v = vtysh(&dir, "show bgp ipv4 unicast json");
        let paths = v["routes"]["203.0.113.10/32"].as_array()?.clone();
        paths.into_iter().next()
    })
    .await;
    assert_eq!(entry["path"], "65010", "{entry}");
    assert_eq!(entry["valid"], true, "{entry}");
    assert_eq!(entry["nexthops"][0]["ip"], "198.51.100.1", "{entry}");
    assert_eq!(entry["metric"], 50, "{entry}");
    assert_eq!(entry["origin"], "IGP", "{entry}");
    // ...and the community (FRR 8.4 shows it only in the per-prefix view).
    let detail = vtysh(&dir, "show bgp ipv4 unicast 203.0.113.10/32 json");
    let p = &detail["paths"][0];
    assert_eq!(p["community"]["string"], "65000:100", "{detail}");
    assert_eq!(p["aspath"]["segments"][0]["type"], "as-sequence", "{detail}");

    // We decoded FRR's own announcements (IPv4 classic, IPv6 MP_REACH);
    // FRR also reflects our route back, which AS loop detection drops.
    wait_for("FRR's routes in our Adj-RIB-In", || {
        let r = speaker.routes(LO, RibKind::Received);
        (r.len() == 2).then_some(())
    })
    .await;
    let received = speaker.routes(LO, RibKind::Received);
    assert!(
        received
            .iter()
            .all(|r| r.attributes.as_path_flat() == vec![65000])
    );
    assert!(
        received
            .iter()
            .any(|r| r.prefix.to_string() == "2001:db8:ff00::/48")
    );

    // Withdraw: gone from FRR.
    speaker.announce(Default::default());
    wait_for("203.0.113.10/32 withdrawn from FRR", || {
        let v = vtysh(&dir, "show bgp ipv4 unicast json");
        v["routes"].get("203.0.113.10/32").is_none().then_some(())
    })
    .await;

    speaker.shutdown().await;
    let summary = wait_for("FRR sees the Cease", || {
        let v = vtysh(&dir, "show bgp summary json");
        let st = v["ipv4Unicast"]["peers"]["127.0.0.1"]["state"]
            .as_str()?
            .to_string();
        (st != "Established").then_some(st)
    })
    .await;
    println!("FRR peer state after shutdown: {summary}");
}
