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

use edge_bgp::{
    Community, GracefulRestart, PeerConfig, RibKind, Route, Speaker, SpeakerConfig, SpeakerOptions, State,
};

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
    start_bgpd_with(dir, port, "", "network 198.51.100.0/24")
}

/// `bgp_extra`: lines for the `router bgp` block; `v4_networks`: the
/// IPv4 `network` statements.
fn start_bgpd_with(dir: &Path, port: u16, bgp_extra: &str, v4_networks: &str) -> Daemon {
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
             {bgp_extra}\n \
             neighbor 127.0.0.1 remote-as 65010\n \
             neighbor 127.0.0.1 passive\n \
             neighbor 127.0.0.1 disable-connected-check\n \
             neighbor 127.0.0.1 timers 1 3\n \
             address-family ipv4 unicast\n  \
             {v4_networks}\n \
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

/// FRR's path for `prefix` from its IPv4 table, if any.
fn frr_path(dir: &Path, prefix: &str) -> Option<serde_json::Value> {
    let v = vtysh(dir, "show bgp ipv4 unicast json");
    v["routes"][prefix].as_array()?.first().cloned()
}

fn frr_peer_state(dir: &Path) -> Option<String> {
    let v = vtysh(dir, "show bgp summary json");
    Some(
        v["ipv4Unicast"]["peers"]["127.0.0.1"]["state"]
            .as_str()?
            .to_string(),
    )
}

/// RFC 4724 against FRR as the receiving speaker (its default helper
/// mode): after `abandon` FRR keeps our routes, flagged stale; the next
/// process (R bit) re-announces one of them and sends End-of-RIB, and FRR
/// clears the stale flag on that one and drops the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frr_keeps_our_routes_stale_across_abandon_and_restart() {
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

    let config = || {
        let mut peer = PeerConfig::new(LO, 65000);
        peer.port = port;
        peer.hold_time = 3;
        peer.connect_retry = Duration::from_millis(250);
        peer.connect_retry_max = Duration::from_secs(2);
        peer.next_hop_v4 = Some(Ipv4Addr::new(198, 51, 100, 1));
        peer.families = vec![(1, 1)];
        peer.graceful_restart = Some(GracefulRestart::new(Duration::from_secs(120)));
        SpeakerConfig {
            local_as: 65010,
            router_id: Ipv4Addr::new(198, 51, 100, 1),
            listen: None,
            peers: vec![peer],
        }
    };
    let vip = |s: &str| Route::new(s.parse().unwrap());
    let speaker = Speaker::start(config()).await.unwrap();
    speaker.announce(
        [vip("203.0.113.10/32"), vip("203.0.113.11/32")]
            .into_iter()
            .collect(),
    );
    wait_for("both routes in FRR", || {
        (frr_path(&dir, "203.0.113.10/32").is_some() && frr_path(&dir, "203.0.113.11/32").is_some())
            .then_some(())
    })
    .await;
    // FRR advertised GR too (helper), so the session negotiated it.
    assert!(
        speaker.sessions()[0].graceful_restart.is_some(),
        "{:?}",
        speaker.sessions()
    );
    assert!(frr_path(&dir, "203.0.113.10/32").unwrap().get("stale").is_none());

    // Upgrade, old process: no Cease, no withdrawals.
    speaker.abandon().await;
    wait_for("FRR sees the connection drop", || {
        frr_peer_state(&dir).filter(|s| s != "Established")
    })
    .await;
    for p in ["203.0.113.10/32", "203.0.113.11/32"] {
        let path = frr_path(&dir, p).unwrap_or_else(|| panic!("FRR dropped {p} after abandon"));
        assert_eq!(path["stale"], true, "{p}: {path}");
    }

    // New process, R bit set; announces only one of the two.
    let speaker = Speaker::start_with_options(
        config(),
        None,
        SpeakerOptions {
            restarting: true,
            ..Default::default()
        },
    )
    .unwrap();
    speaker.announce([vip("203.0.113.10/32")].into_iter().collect());
    wait_for("FRR refreshed after our End-of-RIB", || {
        let kept = frr_path(&dir, "203.0.113.10/32")?;
        (kept.get("stale").is_none() && frr_path(&dir, "203.0.113.11/32").is_none()).then_some(())
    })
    .await;
    assert_eq!(frr_peer_state(&dir).as_deref(), Some("Established"));
    // FRR's view of the restart: our R and F bits, our End-of-RIB.
    let n = vtysh(&dir, "show bgp neighbors 127.0.0.1 json");
    let gr = &n["127.0.0.1"]["gracefulRestartInfo"];
    assert_eq!(gr["rBit"], true, "{gr}");
    assert_eq!(gr["ipv4Unicast"]["fBit"], true, "{gr}");
    assert_eq!(gr["endOfRibRecv"]["ipv4Unicast"], true, "{gr}");
    assert_eq!(gr["remoteGrMode"], "Restart", "{gr}");

    // Leaving for good: Cease, FRR withdraws at once.
    speaker.shutdown().await;
    wait_for("FRR drops our route on Cease", || {
        frr_path(&dir, "203.0.113.10/32").is_none().then_some(())
    })
    .await;
}

/// (prefix, stale) of what we hold from FRR.
fn ours_from_frr(s: &Speaker) -> Vec<(String, bool)> {
    s.routes(LO, RibKind::Received)
        .iter()
        .map(|r| (r.prefix.to_string(), r.stale))
        .collect()
}

/// RFC 4724 with us as the receiving speaker: FRR in restarting mode
/// (forwarding state preserved) is killed; we keep its routes as stale
/// while it is away, and after it is back and sends End-of-RIB, we drop
/// the one it no longer announces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_keep_frr_routes_stale_across_its_restart() {
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
    let gr = "bgp graceful-restart\n bgp graceful-restart preserve-fw-state";
    let bgpd = start_bgpd_with(&dir, port, gr, "network 198.51.100.0/24\n  network 198.18.0.0/24");
    wait_for("bgpd vty socket", || dir.join("bgpd.vty").exists().then_some(())).await;

    let mut peer = PeerConfig::new(LO, 65000);
    peer.port = port;
    peer.hold_time = 3;
    peer.connect_retry = Duration::from_millis(250);
    peer.connect_retry_max = Duration::from_secs(1);
    peer.next_hop_v4 = Some(Ipv4Addr::new(198, 51, 100, 1));
    peer.next_hop_v6 = Some("2001:db8::1".parse().unwrap());
    peer.graceful_restart = Some(GracefulRestart::new(Duration::from_secs(120)));
    let speaker = Speaker::start(SpeakerConfig {
        local_as: 65010,
        router_id: Ipv4Addr::new(198, 51, 100, 1),
        listen: None,
        peers: vec![peer],
    })
    .await
    .unwrap();
    let all = |stale: bool| {
        ["198.18.0.0/24", "198.51.100.0/24", "2001:db8:ff00::/48"]
            .map(|p| (p.to_string(), stale))
            .to_vec()
    };
    wait_for("FRR's routes", || {
        (ours_from_frr(&speaker) == all(false)).then_some(())
    })
    .await;
    let cap = speaker.sessions()[0]
        .graceful_restart
        .clone()
        .expect("GR negotiated");
    assert!(cap.preserved_families().contains(&(1, 1)), "{cap:?}");

    // bgpd dies (SIGKILL): the kernel closes the connection, no
    // NOTIFICATION. Its routes stay, stale.
    drop(bgpd);
    wait_for("session down", || {
        (speaker.sessions()[0].state != State::Established).then_some(())
    })
    .await;
    assert_eq!(ours_from_frr(&speaker), all(true));
    assert_eq!(speaker.sessions()[0].prefixes_stale, 3);

    // Back, without 198.18.0.0/24: that one goes on its End-of-RIB.
    let _bgpd = start_bgpd_with(&dir, port, gr, "network 198.51.100.0/24");
    let want = vec![
        ("198.51.100.0/24".to_string(), false),
        ("2001:db8:ff00::/48".to_string(), false),
    ];
    wait_for("refreshed after FRR's End-of-RIB", || {
        (ours_from_frr(&speaker) == want).then_some(())
    })
    .await;
    let info = &speaker.sessions()[0];
    assert_eq!((info.state, info.prefixes_stale), (State::Established, 0));
    speaker.shutdown().await;
}
