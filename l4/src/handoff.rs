//! Connection hand-off for full-proxy nodes under anycast ("second chance"
//! forwarding, as in Beamer's daisy chaining or Cloudflare's Unimog).
//!
//! The userspace proxy terminates TCP on the node. When the routers move a
//! flow to another node (an ECMP path withdrawn, a node drained), that node
//! has no socket for it and would reset it. With a hand-off installed, a
//! node forwards every *mid-connection* TCP packet for a VIP that it has no
//! conntrack state for (not a SYN, `ct state new`) to a peer node on the
//! LAN, unchanged, so the peer that still holds the socket keeps serving
//! it; the peer answers the client directly. Connections the node opened
//! itself are `ct state established` and stay local; new connections (SYN)
//! stay local.
//!
//! ```text
//! uplink ─► prerouting (mangle): iif uplink, tcp, !syn, ct state new|invalid,
//!           daddr . dport in @vips  ─► meta mark set FWMARK
//!           ip rule pref 90 fwmark FWMARK lookup TABLE: VIP via peer (LAN)
//!           ip rule pref 100 lookup local   (moved from pref 0, so the mark
//!                                            wins over local delivery)
//! ```
//!
//! Only packets that arrive on an uplink are handed off, so a packet a peer
//! handed to us is never handed on again (no loops). One peer per node:
//! right for a pair of nodes sharing a LAN; with more nodes the packet must
//! go to the flow's previous owner, which needs that owner per flow bucket
//! (Unimog keeps it in its forwarding table) and is not implemented here.
//! The peer must accept packets from clients on its LAN interface (no
//! strict `rp_filter` there).
//!
//! Everything is installed in the namespace of the calling thread, in a
//! table of its own (`inet edge_l4_handoff`), routing table [`ROUTE_TABLE`]
//! and rule preference [`RULE_PREF`]; [`Handoff::remove`] (or drop) puts
//! the `local` rule back at preference 0.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use tracing::{info, warn};

use crate::DataplaneError;
use crate::hash::Protocol;
use crate::state::ServiceKey;

const NAME: &str = "handoff";
/// The nft table this module owns.
pub const TABLE: &str = "edge_l4_handoff";
/// Routing table holding `VIP via peer`.
pub const ROUTE_TABLE: u32 = 4334;
/// Preference of the fwmark rule; `local` moves to `RULE_PREF + 10`.
pub const RULE_PREF: u32 = 90;
/// Packet mark of handed-off packets ("L4" + 1).
pub const FWMARK: u32 = 0x4c34_0001;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffConfig {
    /// Interfaces where client traffic arrives from the routers.
    pub uplinks: Vec<String>,
    /// The peer node's address on the shared LAN (on-link).
    pub peer: IpAddr,
}

/// An installed hand-off. Removed on drop (best effort; use
/// [`Handoff::remove`] to see errors).
#[derive(Debug)]
pub struct Handoff {
    config: HandoffConfig,
    vips: BTreeSet<IpAddr>,
    installed: bool,
}

fn fail(context: &str, reason: String) -> DataplaneError {
    DataplaneError::Kernel {
        backend: NAME,
        context: context.into(),
        reason,
    }
}

fn run(argv: &[&str], stdin: Option<&str>) -> Result<(), DataplaneError> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| fail("run", "empty command".into()))?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(prog, e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| fail(prog, e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(prog, e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(
            &argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

fn rules(family: &str) -> Result<String, DataplaneError> {
    let out = Command::new("ip")
        .args([family, "rule", "show"])
        .output()
        .map_err(|e| fail("ip rule show", e.to_string()))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Handoff {
    /// Installs the hand-off for the TCP services among `services`.
    pub fn install(config: HandoffConfig, services: &[ServiceKey]) -> Result<Self, DataplaneError> {
        if config.uplinks.is_empty() {
            return Err(fail("install", "no uplink interface given".into()));
        }
        let mut h = Handoff {
            config,
            vips: BTreeSet::new(),
            installed: false,
        };
        h.installed = true;
        if let Err(e) = h.update(services) {
            let _ = h.uninstall();
            h.installed = false;
            return Err(e);
        }
        Ok(h)
    }

    /// Re-programs the set of VIPs and ports (one nft transaction, then the
    /// per-VIP routes).
    pub fn update(&mut self, services: &[ServiceKey]) -> Result<(), DataplaneError> {
        let tcp: Vec<&ServiceKey> = services.iter().filter(|s| s.protocol == Protocol::Tcp).collect();
        let peer_v4 = self.config.peer.is_ipv4();
        let mut els4 = Vec::new();
        let mut els6 = Vec::new();
        for s in &tcp {
            if s.vip.is_ipv4() != peer_v4 {
                warn!(service = %s, peer = %self.config.peer, "hand-off peer is of another family; service skipped");
                continue;
            }
            let e = format!("{} . {}", s.vip, s.port);
            if s.vip.is_ipv4() {
                els4.push(e)
            } else {
                els6.push(e)
            }
        }
        let ifs: Vec<String> = self.config.uplinks.iter().map(|i| format!("\"{i}\"")).collect();
        let set = |name: &str, ty: &str, els: &[String]| {
            if els.is_empty() {
                format!("  set {name} {{ type {ty} . inet_service; }}\n")
            } else {
                format!(
                    "  set {name} {{ type {ty} . inet_service; elements = {{ {} }}; }}\n",
                    els.join(", ")
                )
            }
        };
        let script = format!(
            "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n{}{}  chain prerouting {{\n    type filter hook prerouting priority mangle; policy accept;\n    iifname {{ {ifs} }} meta l4proto tcp tcp flags & syn == 0 ct state {{ new, invalid }} ip daddr . tcp dport @vips4 meta mark set {FWMARK:#x}\n    iifname {{ {ifs} }} meta l4proto tcp tcp flags & syn == 0 ct state {{ new, invalid }} ip6 daddr . tcp dport @vips6 meta mark set {FWMARK:#x}\n  }}\n}}\n",
            set("vips4", "ipv4_addr", &els4),
            set("vips6", "ipv6_addr", &els6),
            ifs = ifs.join(", "),
        );
        run(&["nft", "-f", "-"], Some(&script))?;

        let fam = if peer_v4 { "-4" } else { "-6" };
        let table = ROUTE_TABLE.to_string();
        let want: BTreeSet<IpAddr> = tcp
            .iter()
            .map(|s| s.vip)
            .filter(|v| v.is_ipv4() == peer_v4)
            .collect();
        for vip in want.difference(&self.vips) {
            let peer = self.config.peer.to_string();
            run(
                &[
                    "ip",
                    fam,
                    "route",
                    "replace",
                    &vip.to_string(),
                    "via",
                    &peer,
                    "table",
                    &table,
                ],
                None,
            )?;
        }
        for vip in self.vips.difference(&want) {
            let _ = run(
                &["ip", fam, "route", "del", &vip.to_string(), "table", &table],
                None,
            );
        }
        self.vips = want;

        // Marked packets must be routed before `local` claims the VIP.
        let current = rules(fam)?;
        let pref = RULE_PREF.to_string();
        let local_pref = (RULE_PREF + 10).to_string();
        if !current.lines().any(|l| l.starts_with(&format!("{pref}:"))) {
            run(
                &[
                    "ip",
                    fam,
                    "rule",
                    "add",
                    "pref",
                    &pref,
                    "fwmark",
                    &format!("{FWMARK:#x}"),
                    "lookup",
                    &table,
                ],
                None,
            )?;
        }
        if !current.lines().any(|l| l.starts_with(&format!("{local_pref}:"))) {
            run(
                &["ip", fam, "rule", "add", "pref", &local_pref, "lookup", "local"],
                None,
            )?;
        }
        if current
            .lines()
            .any(|l| l.starts_with("0:") && l.contains("lookup local"))
        {
            run(&["ip", fam, "rule", "del", "pref", "0", "lookup", "local"], None)?;
        }
        info!(peer = %self.config.peer, vips = self.vips.len(), "connection hand-off installed");
        Ok(())
    }

    /// Removes everything `install` added and puts `local` back at 0.
    pub fn remove(mut self) -> Result<(), DataplaneError> {
        self.installed = false;
        self.uninstall()
    }

    fn uninstall(&mut self) -> Result<(), DataplaneError> {
        let fam = if self.config.peer.is_ipv4() { "-4" } else { "-6" };
        let mut first_err = None;
        let mut note = |r: Result<(), DataplaneError>| {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        // `local` back first: from here on nothing is handed off any more.
        let current = rules(fam).unwrap_or_default();
        if !current
            .lines()
            .any(|l| l.starts_with("0:") && l.contains("lookup local"))
        {
            note(run(
                &["ip", fam, "rule", "add", "pref", "0", "lookup", "local"],
                None,
            ));
        }
        let local_pref = (RULE_PREF + 10).to_string();
        if current.lines().any(|l| l.starts_with(&format!("{local_pref}:"))) {
            note(run(
                &["ip", fam, "rule", "del", "pref", &local_pref, "lookup", "local"],
                None,
            ));
        }
        let pref = RULE_PREF.to_string();
        if current.lines().any(|l| l.starts_with(&format!("{pref}:"))) {
            note(run(&["ip", fam, "rule", "del", "pref", &pref], None));
        }
        let table = ROUTE_TABLE.to_string();
        note(run(&["ip", fam, "route", "flush", "table", &table], None));
        note(run(
            &["nft", "-f", "-"],
            Some(&format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")),
        ));
        self.vips.clear();
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if self.installed
            && let Err(e) = self.uninstall()
        {
            warn!(error = %e, "removing the connection hand-off failed");
        }
    }
}
