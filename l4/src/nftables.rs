//! nftables dataplane: every service becomes a DNAT through a precomputed
//! Maglev table held in an nft map, in one table (`inet edge_l4`) that this
//! module owns entirely and replaces atomically on every change.
//!
//! ```text
//! prerouting (nat, dstnat)
//!   ip daddr VIP meta l4proto tcp th dport P  jump svc_N     comment "edge_l4 svc_N VIP:P/tcp maglev"
//! chain svc_N
//!   dnat ip to jhash ip saddr . th sport . ip daddr . th dport mod M seed S map @slots_N
//! map slots_N   slot (0..M) → backend ip . port      (the service's Maglev table)
//! set be_N      backend ip . port, comment "weight=W state=active|draining";
//!               the set's own comment names the service   (both for observe)
//! set config    empty; its comment records size, seed and masquerade
//! postrouting (nat, srcnat), only with `masquerade`
//!   ct status dnat ct original ip daddr @vips4 masquerade
//! ```
//!
//! Why this shape (kube-proxy's nftables mode uses `numgen random` over a
//! vmap instead):
//! - the slot comes from a hash of the 5-tuple, not a random number, and the
//!   map is the *same* Maglev table the proxy and XDP build from the backend
//!   set ([`ServiceTable`]); nodes running nftables with the same seed and
//!   size therefore agree per flow, and a backend change remaps only ~1/N of
//!   the slots. The hash itself is the kernel's `jhash` (nft cannot run our
//!   SipHash), so a given flow's slot differs from the XDP/proxy slot;
//!   [`nft_slot`] reproduces it exactly, which lets tests predict backends.
//! - established flows keep their backend when it is removed or drained:
//!   conntrack made the NAT decision on the first packet and the rules are
//!   not consulted again. nftables has no drain timeout; such flows end
//!   when the client or backend closes them or conntrack expires them.
//!
//! NAT return path: DNAT rewrites the destination only. The backend answers
//! the client's own address, so the reply must come back through *this*
//! node for conntrack to undo the NAT. That holds when the backends route
//! the clients via this node, and breaks as soon as anycast/ECMP spreads a
//! service over several nodes that share backends (the reply would go to
//! whichever node the backend routes through). [`NftConfig::masquerade`]
//! then source-NATs to the node's LAN address, which makes replies return
//! to the right node at the cost of hiding the client address from the
//! backend (and using the node's source ports). L2 DSR (the XDP dataplane)
//! has neither problem.
//!
//! Every change is one `nft -f -` transaction that deletes and recreates the
//! table, so the kernel switches from the old to the new ruleset at once and
//! no other table is ever touched. The settings a table was written with
//! (size, seed, masquerade) are recorded in a rule comment; `apply`
//! rewrites a table written with other settings even when the services are
//! unchanged (the returned [`Applied`] is then empty).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;
use tracing::{debug, info};

use crate::hash::{FlowKey, Protocol};
use crate::maglev::TableSize;
use crate::state::{BackendSpec, BackendState, L4State, ServiceKey, ServiceSpec, diff};
use crate::table::{ServiceTable, require_maglev, require_same_family};
use crate::{Applied, Dataplane, DataplaneError};

/// [`Dataplane::name`] of this backend.
pub const NAME: &str = "nftables";
/// The table this dataplane owns (family `inet`).
pub const TABLE: &str = "edge_l4";
/// Default `jhash` seed: "edge" in ASCII. Every node must use the same one.
pub const DEFAULT_SEED: u32 = 0x6564_6765;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftConfig {
    /// Maglev table size (the nft map has this many elements per service).
    pub table_size: TableSize,
    /// `jhash` seed; equal on every node so that they agree per flow.
    pub seed: u32,
    /// Source-NAT DNATed flows to the node (see the module docs).
    pub masquerade: bool,
    /// The `nft` binary.
    pub nft: PathBuf,
}

impl Default for NftConfig {
    fn default() -> Self {
        NftConfig {
            table_size: TableSize::default(),
            seed: DEFAULT_SEED,
            masquerade: false,
            nft: PathBuf::from("nft"),
        }
    }
}

/// The nftables dataplane. Programs the network namespace of the thread
/// that calls it (see [`crate::netns`] to program another one).
#[derive(Debug)]
pub struct NftDataplane {
    config: NftConfig,
}

impl NftDataplane {
    pub fn new(config: NftConfig) -> Self {
        NftDataplane { config }
    }

    pub fn config(&self) -> &NftConfig {
        &self.config
    }

    /// Deletes the table (and with it every rule this dataplane made). New
    /// flows to the VIPs then reach the local stack; established flows keep
    /// their conntrack NAT binding.
    pub fn remove(&mut self) -> Result<(), DataplaneError> {
        let script = format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n");
        self.load(&script)
    }

    /// Backend nftables picks for a new flow of `spec`, for tests and
    /// `edge explain`.
    pub fn predict(
        &self,
        service: ServiceKey,
        spec: &ServiceSpec,
        flow: &FlowKey,
    ) -> Result<Option<SocketAddr>, DataplaneError> {
        let t = ServiceTable::build(service, spec, self.config.table_size)?;
        if t.table.is_empty() {
            return Ok(None);
        }
        let slot = nft_slot(flow, self.config.table_size.get(), self.config.seed);
        Ok(t.backend_at(slot as usize))
    }

    /// The whole `nft -f` script that turns any current state into
    /// `desired` (pure; also used by the golden test).
    pub fn render(&self, desired: &L4State) -> Result<String, DataplaneError> {
        render(&self.config, desired)
    }

    fn load(&self, script: &str) -> Result<(), DataplaneError> {
        let mut child = Command::new(&self.config.nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| kernel("spawn nft", e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| kernel("write to nft", e.to_string()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| kernel("wait for nft", e.to_string()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(kernel(
                "nft -f",
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }

    fn list(&self, args: &[&str]) -> Result<Option<Value>, DataplaneError> {
        let out = Command::new(&self.config.nft)
            .args(args)
            .output()
            .map_err(|e| kernel("spawn nft", e.to_string()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            // "No such file or directory": the table does not exist yet.
            if err.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(kernel("nft list", err.trim().to_string()));
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| kernel("parse nft -j output", e.to_string()))
    }
}

fn kernel(context: &str, reason: String) -> DataplaneError {
    DataplaneError::Kernel {
        backend: NAME,
        context: context.to_string(),
        reason,
    }
}

impl Dataplane for NftDataplane {
    fn name(&self) -> &'static str {
        NAME
    }

    fn apply(&mut self, desired: &L4State) -> Result<Applied, DataplaneError> {
        desired.validate()?;
        let (current, programmed_with) = self.read()?;
        let changes = diff(&current, desired);
        // A table written with another seed, size or masquerade setting maps
        // flows differently even when the services are equal: rewrite it.
        let own = signature(&self.config);
        let stale = programmed_with.as_ref().is_some_and(|sig| *sig != own);
        if changes.is_empty() && !stale {
            return Ok(Applied::default());
        }
        if stale {
            info!(was = ?programmed_with, now = %own, "nftables table written with other settings; rewriting");
        }
        let script = self.render(desired)?;
        debug!(bytes = script.len(), "loading nft ruleset");
        self.load(&script)?;
        info!(
            changes = changes.len(),
            services = desired.services.len(),
            "nftables ruleset replaced"
        );
        Ok(Applied { changes })
    }

    fn observe(&self) -> Result<L4State, DataplaneError> {
        self.read().map(|(state, _)| state)
    }
}

impl NftDataplane {
    /// The programmed state and the settings signature it was written
    /// with (`None` when the table does not exist).
    fn read(&self) -> Result<(L4State, Option<String>), DataplaneError> {
        // Only listings that do not pull the slot maps: anything that lists
        // rules or all sets makes nft fetch every map element first (≈1.5 s
        // per 65537-slot service), while single small sets and the chain
        // names come back at once. The service identity therefore lives in
        // the comment of its `be_N` set, the settings in the `config` set.
        let Some(config) = self.list(&["-j", "list", "set", "inet", TABLE, "config"])? else {
            return Ok((L4State::default(), None));
        };
        let sig = set_comment(&config).map(str::to_string);
        let mut sets = Vec::new();
        if let Some(chains) = self.list(&["-j", "list", "chains", "inet"])? {
            for chain in own_service_chains(&chains) {
                let set = chain.replacen("svc_", "be_", 1);
                if let Some(v) = self.list(&["-j", "list", "set", "inet", TABLE, &set])? {
                    sets.push(v);
                }
            }
        }
        Ok((parse_listing(&sets), sig))
    }
}

/// What the table was written with, kept as the comment of the `config`
/// set.
fn signature(config: &NftConfig) -> String {
    format!(
        "{TABLE} config m={} seed={:#x} masquerade={}",
        config.table_size.get(),
        config.seed,
        u8::from(config.masquerade)
    )
}

/// Names of the `svc_N` chains of our table in a `list chains` answer.
fn own_service_chains(v: &Value) -> Vec<String> {
    v.get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("chain"))
        .filter(|c| c.get("table").and_then(Value::as_str) == Some(TABLE))
        .filter_map(|c| c.get("name")?.as_str())
        .filter(|n| n.starts_with("svc_"))
        .map(str::to_string)
        .collect()
}

/// The comment of the (first) set in a `list set` answer.
fn set_comment(v: &Value) -> Option<&str> {
    v.get("nftables")?
        .as_array()?
        .iter()
        .find_map(|item| item.get("set")?.get("comment")?.as_str())
}

/// Service and scheduler of a `be_N` set, from its comment
/// `edge_l4 svc_N <vip:port>/<proto> <scheduler>`.
fn service_of(set: &Value) -> Option<(ServiceKey, crate::SchedulerKind)> {
    let mut words = set_comment(set)?.split_whitespace();
    let (Some(TABLE), Some(_chain), Some(svc), Some(sched)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return None;
    };
    let (addr, proto) = svc.rsplit_once('/')?;
    let addr = addr.parse::<SocketAddr>().ok()?;
    let protocol = serde_json::from_value::<Protocol>(Value::String(proto.into())).ok()?;
    let scheduler = serde_json::from_value::<crate::SchedulerKind>(Value::String(sched.into())).ok()?;
    Some((ServiceKey::new(addr.ip(), addr.port(), protocol), scheduler))
}

/// The state described by `be_N` set listings (sets that are not ours or
/// that do not parse are skipped).
pub fn parse_listing(sets: &[Value]) -> L4State {
    let mut state = L4State::default();
    for v in sets {
        let Some((service, scheduler)) = service_of(v) else {
            continue;
        };
        let mut spec = ServiceSpec::new(scheduler);
        spec.backends.extend(backends_in(v));
        state.services.insert(service, spec);
    }
    state
}

/// Backends of a `be_N` set, from elements `{"elem": {"val": {"concat":
/// [ip, port]}, "comment": "weight=W state=S"}}`.
fn backends_in(v: &Value) -> Vec<(SocketAddr, BackendSpec)> {
    let mut out = Vec::new();
    for item in v.get("nftables").and_then(Value::as_array).into_iter().flatten() {
        let Some(elems) = item
            .get("set")
            .and_then(|s| s.get("elem"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for e in elems {
            let Some(elem) = e.get("elem") else { continue };
            let concat = elem
                .get("val")
                .and_then(|v| v.get("concat"))
                .and_then(Value::as_array);
            let Some([ip, port]) = concat.map(Vec::as_slice) else {
                continue;
            };
            let (Some(Ok(ip)), Some(port)) = (ip.as_str().map(str::parse::<IpAddr>), port.as_u64()) else {
                continue;
            };
            let Ok(port) = u16::try_from(port) else { continue };
            let mut spec = BackendSpec::active(1);
            for kv in elem
                .get("comment")
                .and_then(Value::as_str)
                .unwrap_or("")
                .split_whitespace()
            {
                match kv.split_once('=') {
                    Some(("weight", w)) => spec.weight = w.parse().unwrap_or(0),
                    Some(("state", "draining")) => spec.state = BackendState::Draining,
                    _ => {}
                }
            }
            out.push((SocketAddr::new(ip, port), spec));
        }
    }
    out
}

fn render(config: &NftConfig, desired: &L4State) -> Result<String, DataplaneError> {
    use std::fmt::Write as _;
    let m = config.table_size.get();
    let mut s = String::new();
    // Create-then-delete makes the delete valid whether or not the table
    // exists; all of it is one transaction.
    let _ = writeln!(
        s,
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{"
    );
    let vips = |v4: bool| -> Vec<String> {
        let mut v: Vec<String> = desired
            .services
            .keys()
            .filter(|k| k.vip.is_ipv4() == v4)
            .map(|k| k.vip.to_string())
            .collect();
        v.dedup();
        v
    };
    for (name, ty, list) in [
        ("vips4", "ipv4_addr", vips(true)),
        ("vips6", "ipv6_addr", vips(false)),
    ] {
        let _ = write!(s, "  set {name} {{ type {ty};");
        if !list.is_empty() {
            let _ = write!(s, " elements = {{ {} }};", list.join(", "));
        }
        s.push_str(" }\n");
    }
    // Empty; only its comment matters (see `NftDataplane::read`).
    let _ = writeln!(
        s,
        "  set config {{ type inet_service; comment \"{}\"; }}",
        signature(config)
    );
    let mut dispatch = String::new();
    for (i, (key, spec)) in desired.services.iter().enumerate() {
        require_maglev(NAME, *key, spec)?;
        require_same_family(NAME, *key, spec)?;
        let t = ServiceTable::build(*key, spec, config.table_size)?;
        let (fam, addr_ty) = if key.vip.is_ipv4() {
            ("ip", "ipv4_addr")
        } else {
            ("ip6", "ipv6_addr")
        };
        let proto = key.protocol;
        // Slot map: `typeof numgen` gives the key the integer type a hash
        // expression produces (a plain `type mark` key is refused).
        let _ = write!(
            s,
            "  map slots_{i} {{ typeof numgen inc mod 2 : {fam} daddr . tcp dport;"
        );
        if !t.table.is_empty() {
            s.push_str(" elements = { ");
            for (slot, &b) in t.table.entries().iter().enumerate() {
                if slot > 0 {
                    s.push_str(", ");
                }
                let a = t.addrs[b as usize];
                let _ = write!(s, "{slot} : {} . {}", a.ip(), a.port());
            }
            s.push_str(" };");
        }
        s.push_str(" }\n");
        let _ = write!(
            s,
            "  set be_{i} {{ type {addr_ty} . inet_service; comment \"{TABLE} svc_{i} {key} {}\";",
            spec.scheduler
        );
        if !spec.backends.is_empty() {
            let els: Vec<String> = spec
                .backends
                .iter()
                .map(|(a, b)| {
                    let st = match b.state {
                        BackendState::Active => "active",
                        BackendState::Draining => "draining",
                    };
                    format!(
                        "{} . {} comment \"weight={} state={st}\"",
                        a.ip(),
                        a.port(),
                        b.weight
                    )
                })
                .collect();
            let _ = write!(s, " elements = {{ {} }};", els.join(", "));
        }
        s.push_str(" }\n");
        let _ = writeln!(s, "  chain svc_{i} {{");
        if t.table.is_empty() {
            // No backend takes new flows: leave the packet to the local
            // stack (which refuses it unless something listens on the VIP).
            let _ = writeln!(s, "    counter comment \"no backend\"");
        } else {
            let _ = writeln!(
                s,
                "    meta l4proto {proto} counter dnat {fam} to jhash {fam} saddr . th sport . {fam} daddr . th dport mod {m} seed {:#x} map @slots_{i}",
                config.seed
            );
        }
        s.push_str("  }\n");
        let _ = writeln!(
            dispatch,
            "    {fam} daddr {} meta l4proto {proto} th dport {} jump svc_{i} comment \"{TABLE} svc_{i} {key} {}\"",
            key.vip, key.port, spec.scheduler
        );
    }
    let _ = write!(
        s,
        "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{dispatch}  }}\n"
    );
    if config.masquerade {
        s.push_str(
            "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n    ct status dnat ct original ip daddr @vips4 masquerade\n    ct status dnat ct original ip6 daddr @vips6 masquerade\n  }\n",
        );
    }
    s.push_str("}\n");
    Ok(s)
}

/// Slot `0..m` that `jhash <key> mod m seed <seed>` gives a flow in the
/// kernel (`net/netfilter/nft_hash.c`): `reciprocal_scale(jhash(regs, len,
/// seed), m)`, where the key is the concatenation `saddr . sport . daddr .
/// dport` as nft lays it out in registers: each part padded with zeros to
/// a multiple of 4 bytes, ports in network order.
pub fn nft_slot(flow: &FlowKey, m: u32, seed: u32) -> u32 {
    let mut key = Vec::with_capacity(40);
    let push_ip = |key: &mut Vec<u8>, ip: IpAddr| match ip.to_canonical() {
        IpAddr::V4(a) => key.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => key.extend_from_slice(&a.octets()),
    };
    push_ip(&mut key, flow.src.ip());
    key.extend_from_slice(&flow.src.port().to_be_bytes());
    key.extend_from_slice(&[0, 0]);
    push_ip(&mut key, flow.dst.ip());
    key.extend_from_slice(&flow.dst.port().to_be_bytes());
    key.extend_from_slice(&[0, 0]);
    let h = jhash(&key, seed);
    ((u64::from(h) * u64::from(m)) >> 32) as u32
}

/// The kernel's `jhash()` (Bob Jenkins' lookup3, `include/linux/jhash.h`),
/// reading words in little-endian order as the kernel does on the
/// little-endian machines edge runs on.
pub fn jhash(key: &[u8], initval: u32) -> u32 {
    let mut a = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(initval);
    let (mut b, mut c) = (a, a);
    let word = |k: &[u8]| u32::from_le_bytes([k[0], k[1], k[2], k[3]]);
    let mut k = key;
    while k.len() > 12 {
        a = a.wrapping_add(word(&k[0..4]));
        b = b.wrapping_add(word(&k[4..8]));
        c = c.wrapping_add(word(&k[8..12]));
        // __jhash_mix
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(4);
        b = b.wrapping_add(a);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    // The tail, zero-padded: byte i of the 12 adds to a (0..4), b (4..8)
    // or c (8..12) at bit 8*(i%4), exactly like the kernel's fallthrough
    // switch.
    let mut tail = [0u8; 12];
    tail[..k.len()].copy_from_slice(k);
    a = a.wrapping_add(word(&tail[0..4]));
    b = b.wrapping_add(word(&tail[4..8]));
    c = c.wrapping_add(word(&tail[8..12]));
    // __jhash_final
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SchedulerKind;

    /// Vectors computed with the kernel's jhash.h compiled as C
    /// (`jhash(key, len, initval)`), covering the empty key, a tail-only
    /// key, a key of exactly 12 bytes (no final mix in the loop) and the
    /// 16- and 40-byte nft tuple layouts.
    #[test]
    fn jhash_matches_kernel_vectors() {
        let k: Vec<u8> = (0u8..40).collect();
        for (len, seed, want) in JHASH_VECTORS {
            assert_eq!(jhash(&k[..len], seed), want, "len {len} seed {seed:#x}");
        }
    }
    const JHASH_VECTORS: [(usize, u32, u32); 6] = [
        (0, 0, 0xdeadbeef),
        (1, 0, 0x8ba9414b),
        (5, 0x5eed, 0x5a6aaac5),
        (12, 0, 0x5e4aa593),
        (16, DEFAULT_SEED, 0x506d5897),
        (40, 1, 0x412d93d3),
    ];

    fn svc() -> ServiceKey {
        ServiceKey::new("203.0.113.10".parse().unwrap(), 8080, Protocol::Tcp)
    }

    fn state() -> L4State {
        L4State::default().with_service(
            svc(),
            ServiceSpec::new(SchedulerKind::Maglev)
                .with_backend("198.19.10.11:8080".parse().unwrap(), BackendSpec::active(1))
                .with_backend("198.19.10.12:8080".parse().unwrap(), BackendSpec::draining(2)),
        )
    }

    #[test]
    fn render_golden_small_table() {
        let cfg = NftConfig {
            table_size: TableSize::new(7).unwrap(),
            masquerade: true,
            ..NftConfig::default()
        };
        let mut st = state();
        st.services
            .get_mut(&svc())
            .unwrap()
            .backends
            .insert("198.19.10.13:8080".parse().unwrap(), BackendSpec::active(1));
        let script = render(&cfg, &st).unwrap();
        assert_eq!(script, GOLDEN_SCRIPT, "\n{script}");
    }
    const GOLDEN_SCRIPT: &str = r#"table inet edge_l4 {}
delete table inet edge_l4
table inet edge_l4 {
  set vips4 { type ipv4_addr; elements = { 203.0.113.10 }; }
  set vips6 { type ipv6_addr; }
  set config { type inet_service; comment "edge_l4 config m=7 seed=0x65646765 masquerade=1"; }
  map slots_0 { typeof numgen inc mod 2 : ip daddr . tcp dport; elements = { 0 : 198.19.10.11 . 8080, 1 : 198.19.10.13 . 8080, 2 : 198.19.10.11 . 8080, 3 : 198.19.10.13 . 8080, 4 : 198.19.10.11 . 8080, 5 : 198.19.10.11 . 8080, 6 : 198.19.10.13 . 8080 }; }
  set be_0 { type ipv4_addr . inet_service; comment "edge_l4 svc_0 203.0.113.10:8080/tcp maglev"; elements = { 198.19.10.11 . 8080 comment "weight=1 state=active", 198.19.10.12 . 8080 comment "weight=2 state=draining", 198.19.10.13 . 8080 comment "weight=1 state=active" }; }
  chain svc_0 {
    meta l4proto tcp counter dnat ip to jhash ip saddr . th sport . ip daddr . th dport mod 7 seed 0x65646765 map @slots_0
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 203.0.113.10 meta l4proto tcp th dport 8080 jump svc_0 comment "edge_l4 svc_0 203.0.113.10:8080/tcp maglev"
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ct status dnat ct original ip daddr @vips4 masquerade
    ct status dnat ct original ip6 daddr @vips6 masquerade
  }
}
"#;

    #[test]
    fn unsupported_schedulers_and_families_are_refused() {
        let mut st = state();
        st.services.get_mut(&svc()).unwrap().scheduler = SchedulerKind::RoundRobin;
        assert!(matches!(
            render(&NftConfig::default(), &st),
            Err(DataplaneError::Unsupported { .. })
        ));
        let st = L4State::default().with_service(
            svc(),
            ServiceSpec::new(SchedulerKind::Maglev)
                .with_backend("[2001:db8::1]:8080".parse().unwrap(), BackendSpec::active(1)),
        );
        assert!(matches!(
            render(&NftConfig::default(), &st),
            Err(DataplaneError::Unsupported { .. })
        ));
    }

    #[test]
    fn listing_parses_back_to_the_state() {
        // Shape as printed by nft 1.0.6 `-j list set`.
        let set: Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},{"set":{"family":"inet","name":"be_0","table":"edge_l4","type":["ipv4_addr","inet_service"],
            "comment":"edge_l4 svc_0 203.0.113.10:8080/tcp maglev",
            "elem":[{"elem":{"val":{"concat":["198.19.10.11",8080]},"comment":"weight=1 state=active"}},
                    {"elem":{"val":{"concat":["198.19.10.12",8080]},"comment":"weight=2 state=draining"}}]}}]}"#,
        )
        .unwrap();
        let foreign: Value =
            serde_json::from_str(r#"{"nftables":[{"set":{"name":"x","comment":"someone else's"}}]}"#)
                .unwrap();
        assert_eq!(parse_listing(&[set, foreign]), state());
        let chains: Value = serde_json::from_str(
            r#"{"nftables":[{"chain":{"table":"edge_l4","name":"svc_0"}},{"chain":{"table":"edge_l4","name":"prerouting"}},
            {"chain":{"table":"other","name":"svc_9"}}]}"#,
        )
        .unwrap();
        assert_eq!(own_service_chains(&chains), vec!["svc_0".to_string()]);
        assert_eq!(
            signature(&NftConfig::default()),
            "edge_l4 config m=65537 seed=0x65646765 masquerade=0"
        );
    }

    #[test]
    fn slot_is_in_range_and_spreads() {
        let mut counts = [0u32; 7];
        for port in 1000..8000u16 {
            let flow = FlowKey {
                src: SocketAddr::from(([198, 18, 1, 2], port)),
                dst: SocketAddr::from(([203, 0, 113, 10], 8080)),
                protocol: Protocol::Tcp,
            };
            counts[nft_slot(&flow, 7, DEFAULT_SEED) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800 && c < 1200), "{counts:?}");
    }
}
