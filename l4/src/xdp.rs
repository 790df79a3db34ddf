//! XDP dataplane: Maglev + connection table + L2 direct server return,
//! in the kernel driver path (program: `l4/bpf/edge_xdp.c`, loaded by aya).
//!
//! ```text
//!  router ──► ingress if (XDP: edge_xdp) ──┬─ not a service ──► XDP_PASS (kernel)
//!                                          ├─ conns[5-tuple] hit ─┐
//!                                          └─ maglev[svc][hash % M] ┴► backends[id]
//!              rewrite dst MAC = backend, src MAC = egress if; XDP_TX (same if)
//!              or XDP_REDIRECT via tx_ports (DEVMAP_HASH) to the LAN interface
//!  backend (VIP on lo) ──► answers the client directly (DSR), not via us
//! ```
//!
//! ICMP "fragmentation needed" and ICMPv6 "packet too big" addressed to a
//! VIP quote a packet a backend sent; the program forwards them to the
//! backend of the quoted flow, so path MTU discovery works under DSR.
//!
//! Userspace side (this module): builds each service's Maglev table with
//! [`ServiceTable`] (the same table the proxy uses: the program's SipHash-1-3
//! flow hash is byte-for-byte [`crate::flow_hash`]), writes only the slots
//! that changed, resolves backend MACs from the node's neighbour table and
//! reads per-CPU counters.
//!
//! Backends must be on-link (one L2 hop away) and hold the VIP on `lo`,
//! with `net.ipv4.conf.all.arp_ignore=1` and `arp_announce=2` so they never
//! answer ARP for it (otherwise the LAN would learn the VIP at a backend
//! and traffic would bypass the balancer). DSR cannot rewrite ports, so a
//! backend's port must equal the service port. If the node holds the VIP on
//! its own `lo` and the backends' replies are routed through it, set
//! `accept_local=1` on its LAN interface, or the kernel drops the replies
//! as martians (their source is a local address).
//!
//! Flow lifecycle: a flow's first packet is placed by Maglev and recorded in
//! the LRU connection table; later packets follow the table, so a backend
//! removed from the service (or `Draining`) keeps its established flows
//! while new flows go elsewhere. After `drain_timeout` its entry is cut
//! (removed, or flagged when it is still listed as draining) and its flows
//! are re-placed by Maglev, which ends them at the new backend (TCP RST).
//! A flow that arrives at another node (anycast/ECMP change) has no entry
//! there, but Maglev gives the same backend as long as the backend set is
//! the same.
//!
//! Everything here runs in the network namespace of the calling thread: the
//! interfaces it attaches to, the neighbour lookups, and the ifindexes
//! written to the DEVMAP (LAB-FACTS §0). Use [`crate::netns::NetnsThread`]
//! to program another namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use aya::maps::{Array, DevMapHash, HashMap, MapData, PerCpuArray};
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::hash::{FlowKey, Protocol};
use crate::maglev::TableSize;
use crate::state::{BackendSpec, BackendState, L4State, ServiceKey, ServiceSpec, diff};
use crate::table::{ServiceTable, require_maglev, require_same_family};
use crate::{Applied, Dataplane, DataplaneError, SchedulerKind};

/// [`Dataplane::name`] of this backend.
pub const NAME: &str = "xdp";

/// The program object, compiled by `build.rs`.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/edge_xdp.o"));

/// `edge_xdp.c` `NO_BACKEND`: an empty Maglev slot.
const NO_BACKEND: u32 = u32::MAX;
const F_HAS_MAC: u8 = 1;
const F_CUT: u8 = 2;

/// Where the program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) XDP. On veth, XDP_TX/REDIRECT need an XDP program or
    /// GRO on the peer (LAB-FACTS §4).
    Native,
    /// Generic (skb) XDP: works on any device, slower.
    #[default]
    Generic,
    /// Let the kernel pick (native when the driver supports it).
    Auto,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// Interfaces whose ingress the program is attached to (the uplinks
    /// towards the routers). Empty: load only (tests, [`XdpDataplane::test_run`]).
    pub interfaces: Vec<String>,
    pub mode: AttachMode,
    /// Maglev table size; the same on every node and dataplane.
    pub table_size: TableSize,
    /// Services the maps can hold (the Maglev array holds
    /// `max_services * table_size` slots, 4 bytes each).
    pub max_services: u32,
    pub max_backends: u32,
    /// Connection-table entries (LRU: the least recently used flow is
    /// evicted when full, and is then re-placed by Maglev).
    pub conn_table_size: u32,
    /// How long flows of a removed or draining backend are kept.
    pub drain_timeout: Duration,
    /// How long `apply` waits for a backend's MAC after poking it.
    pub resolve_timeout: Duration,
}

impl Default for XdpConfig {
    fn default() -> Self {
        XdpConfig {
            interfaces: Vec::new(),
            mode: AttachMode::default(),
            table_size: TableSize::default(),
            max_services: 16,
            max_backends: 1024,
            conn_table_size: 65_536,
            drain_timeout: Duration::from_secs(30),
            resolve_timeout: Duration::from_millis(500),
        }
    }
}

/// How to reach a backend on the LAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Egress {
    pub ifindex: u32,
    /// MAC of the egress interface (the frame's new source).
    pub src_mac: [u8; 6],
    /// The backend's MAC; `None` while unresolved.
    pub dst_mac: Option<[u8; 6]>,
}

/// Where backend MACs come from.
pub trait Neighbours: Send {
    /// The egress of an on-link backend, or `None` if it is not on-link or
    /// not known at all.
    fn resolve(&mut self, ip: IpAddr) -> Option<Egress>;
}

/// The kernel's routing and neighbour tables of the calling thread's
/// namespace, read with `ip -j`. An unknown neighbour is poked with a UDP
/// datagram (discard port) so that the kernel starts ARP/ND for it.
#[derive(Debug)]
pub struct KernelNeighbours {
    pub ip: PathBuf,
    pub timeout: Duration,
}

impl Default for KernelNeighbours {
    fn default() -> Self {
        KernelNeighbours {
            ip: PathBuf::from("ip"),
            timeout: Duration::from_millis(500),
        }
    }
}

impl KernelNeighbours {
    fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let out = Command::new(&self.ip).arg("-j").args(args).output().ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn neigh(&self, ip: IpAddr, dev: &str) -> Option<[u8; 6]> {
        let v = self.json(&["neigh", "show", "to", &ip.to_string(), "dev", dev])?;
        let e = v.as_array()?.first()?;
        let failed = e
            .get("state")
            .and_then(|s| s.as_array())
            .is_some_and(|s| s.iter().any(|x| x == "FAILED" || x == "INCOMPLETE"));
        if failed {
            return None;
        }
        parse_mac(e.get("lladdr")?.as_str()?)
    }
}

impl Neighbours for KernelNeighbours {
    fn resolve(&mut self, ip: IpAddr) -> Option<Egress> {
        let route = self.json(&["route", "get", &ip.to_string()])?;
        let r = route.as_array()?.first()?;
        if r.get("gateway").is_some() {
            // L2 DSR needs the backend on the LAN: through a gateway the
            // frame would be routed by its destination, the VIP.
            warn!(%ip, "backend is not on-link; cannot reach it by L2 DSR");
            return None;
        }
        let dev = r.get("dev")?.as_str()?.to_string();
        let link = self.json(&["link", "show", "dev", &dev])?;
        let l = link.as_array()?.first()?;
        let ifindex = u32::try_from(l.get("ifindex")?.as_u64()?).ok()?;
        let src_mac = parse_mac(l.get("address")?.as_str()?)?;
        let mut dst_mac = self.neigh(ip, &dev);
        if dst_mac.is_none() {
            poke(ip);
            let deadline = Instant::now() + self.timeout;
            while dst_mac.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                dst_mac = self.neigh(ip, &dev);
            }
        }
        Some(Egress {
            ifindex,
            src_mac,
            dst_mac,
        })
    }
}

/// Sends one datagram to the discard port so the kernel resolves `ip`.
fn poke(ip: IpAddr) {
    let bind: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    if let Ok(s) = UdpSocket::bind(bind) {
        // Best effort: a failure just leaves the backend unresolved.
        let _ = s.send_to(b"edge-l4 neighbour probe", (ip, 9));
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Fixed answers, for packet fixtures and tests.
#[derive(Clone, Debug, Default)]
pub struct StaticNeighbours(pub BTreeMap<IpAddr, Egress>);

impl Neighbours for StaticNeighbours {
    fn resolve(&mut self, ip: IpAddr) -> Option<Egress> {
        self.0.get(&ip).copied()
    }
}

/// Packets and bytes of one counter, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// The program's per-CPU counters, summed (`edge_xdp.c` `enum counter`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct XdpStats {
    /// Not for a service: left to the kernel.
    pub pass_other: Counter,
    /// IP fragments, IPv6 extension headers, truncated headers.
    pub pass_unparsed: Counter,
    /// For a service without a backend that takes new flows.
    pub pass_no_backend: Counter,
    /// Backend MAC unresolved or no egress port: left to the kernel.
    pub pass_unresolved: Counter,
    pub tx: Counter,
    pub redirect: Counter,
    /// Of tx+redirect: forwarded by the connection table.
    pub conn_hit: Counter,
    /// Of tx+redirect: new flows placed by Maglev.
    pub conn_new: Counter,
    /// Of tx+redirect: ICMP "fragmentation needed" / ICMPv6 "packet too
    /// big" about a flow, sent on to its backend (path MTU discovery).
    pub icmp_too_big: Counter,
}

/// What `apply` wrote for one service, so the next apply writes only the
/// slots that changed.
#[derive(Debug)]
struct Programmed {
    index: u32,
    slots: Vec<u32>,
    backends: BTreeSet<u32>,
}

/// A backend known to the program, by address.
#[derive(Debug)]
struct KnownBackend {
    id: u32,
    entry: [u8; 36],
    /// When its flows are cut (set while it is not `Active` in any service).
    cut_at: Option<Instant>,
}

pub struct XdpDataplane {
    config: XdpConfig,
    // The program and its attachments live as long as `ebpf`; dropping the
    // dataplane detaches it.
    ebpf: Ebpf,
    services_map: HashMap<MapData, [u8; 20], [u8; 8]>,
    maglev: Array<MapData, u32>,
    backends_map: HashMap<MapData, u32, [u8; 36]>,
    svc_backends: HashMap<MapData, u64, u64>,
    conns: HashMap<MapData, [u8; 40], u32>,
    tx_ports: DevMapHash<MapData>,
    stats: PerCpuArray<MapData, [u64; 2]>,
    neighbours: Box<dyn Neighbours>,
    programmed: BTreeMap<ServiceKey, Programmed>,
    known: BTreeMap<IpAddr, KnownBackend>,
    next_id: u32,
    ports: BTreeSet<u32>,
}

impl std::fmt::Debug for XdpDataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpDataplane")
            .field("config", &self.config)
            .field("services", &self.programmed.keys().collect::<Vec<_>>())
            .field("backends", &self.known.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn bpf_err(context: impl Into<String>, e: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::Kernel {
        backend: NAME,
        context: context.into(),
        reason: e.to_string(),
    }
}

/// Like [`bpf_err`], with the error's whole source chain (aya's top-level
/// messages leave out the errno).
fn chain_err(context: impl Into<String>, e: &dyn std::error::Error) -> DataplaneError {
    let mut reason = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        src = s.source();
    }
    bpf_err(context, reason)
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, DataplaneError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| bpf_err("load", format!("map {name} missing from the object")))?;
    T::try_from(map).map_err(|e| bpf_err(format!("map {name}"), e))
}

impl XdpDataplane {
    /// Loads the program (and attaches it to `config.interfaces`), with
    /// backend MACs from the kernel's neighbour table.
    pub fn new(config: XdpConfig) -> Result<Self, DataplaneError> {
        let neighbours = KernelNeighbours {
            timeout: config.resolve_timeout,
            ..KernelNeighbours::default()
        };
        Self::with_neighbours(config, Box::new(neighbours))
    }

    pub fn with_neighbours(
        config: XdpConfig,
        neighbours: Box<dyn Neighbours>,
    ) -> Result<Self, DataplaneError> {
        let slots = config
            .max_services
            .checked_mul(config.table_size.get())
            .ok_or_else(|| bpf_err("config", "max_services * table_size overflows"))?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("services", config.max_services)
            .map_max_entries("maglev", slots)
            .map_max_entries("backends", config.max_backends)
            .map_max_entries(
                "svc_backends",
                config.max_services.saturating_mul(config.max_backends),
            )
            .map_max_entries("conns", config.conn_table_size)
            .load(OBJECT)
            .map_err(|e| chain_err("load object", &e))?;
        {
            let prog: &mut Xdp = ebpf
                .program_mut("edge_xdp")
                .ok_or_else(|| bpf_err("load", "program edge_xdp missing"))?
                .try_into()
                .map_err(|e| bpf_err("program type", e))?;
            prog.load().map_err(|e| chain_err("verify program", &e))?;
            let mode = match config.mode {
                AttachMode::Native => XdpMode::Driver,
                AttachMode::Generic => XdpMode::Skb,
                AttachMode::Auto => XdpMode::Default,
            };
            for iface in &config.interfaces {
                prog.attach(iface, mode)
                    .map_err(|e| chain_err(format!("attach to {iface}"), &e))?;
                info!(interface = %iface, mode = ?config.mode, "xdp program attached");
            }
        }
        Ok(XdpDataplane {
            services_map: take(&mut ebpf, "services")?,
            maglev: take(&mut ebpf, "maglev")?,
            backends_map: take(&mut ebpf, "backends")?,
            svc_backends: take(&mut ebpf, "svc_backends")?,
            conns: take(&mut ebpf, "conns")?,
            tx_ports: take(&mut ebpf, "tx_ports")?,
            stats: take(&mut ebpf, "stats")?,
            ebpf,
            config,
            neighbours,
            programmed: BTreeMap::new(),
            known: BTreeMap::new(),
            next_id: 0,
            ports: BTreeSet::new(),
        })
    }

    pub fn config(&self) -> &XdpConfig {
        &self.config
    }

    /// Counters summed over CPUs.
    pub fn stats(&self) -> Result<XdpStats, DataplaneError> {
        let get = |i: u32| -> Result<Counter, DataplaneError> {
            let per_cpu = self.stats.get(&i, 0).map_err(|e| bpf_err("read stats", e))?;
            Ok(per_cpu.iter().fold(Counter::default(), |acc, v| Counter {
                packets: acc.packets.wrapping_add(v[0]),
                bytes: acc.bytes.wrapping_add(v[1]),
            }))
        };
        Ok(XdpStats {
            pass_other: get(0)?,
            pass_unparsed: get(1)?,
            pass_no_backend: get(2)?,
            pass_unresolved: get(3)?,
            tx: get(4)?,
            redirect: get(5)?,
            conn_hit: get(6)?,
            conn_new: get(7)?,
            icmp_too_big: get(8)?,
        })
    }

    /// Number of flows in the connection table (walks it: for tests and
    /// `edge status`, not for a hot path).
    pub fn conn_count(&self) -> usize {
        self.conns.keys().filter(Result::is_ok).count()
    }

    /// Flows in the connection table with their backend address (walks
    /// the table: for tests and `edge status`, not for a hot path).
    pub fn flows(&self) -> Vec<(FlowKey, IpAddr)> {
        let by_id: BTreeMap<u32, IpAddr> = self.known.iter().map(|(ip, b)| (b.id, *ip)).collect();
        self.conns
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, id)| Some((parse_flow_key(&k)?, *by_id.get(&id)?)))
            .collect()
    }

    /// Backend addresses whose MAC is not known yet.
    pub fn unresolved(&self) -> Vec<IpAddr> {
        self.known
            .iter()
            .filter(|(_, b)| b.entry[17] & F_HAS_MAC == 0)
            .map(|(ip, _)| *ip)
            .collect()
    }

    /// Runs the loaded program once on `packet` (BPF_PROG_TEST_RUN) as if
    /// it arrived on `ingress_ifindex` (0: no device). Returns the verdict
    /// (`XDP_*` number) and the packet as the program left it. Nothing is
    /// transmitted. Root only.
    pub fn test_run(&self, packet: &[u8], ingress_ifindex: u32) -> Result<(u32, Vec<u8>), DataplaneError> {
        let prog: &Xdp = self
            .ebpf
            .program("edge_xdp")
            .ok_or_else(|| bpf_err("test run", "program missing"))?
            .try_into()
            .map_err(|e| bpf_err("program type", e))?;
        let len = u32::try_from(packet.len()).map_err(|e| bpf_err("test run", e))?;
        // struct xdp_md {data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex}: offsets relative to the packet.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&len.to_le_bytes());
        ctx[12..16].copy_from_slice(&ingress_ifindex.to_le_bytes());
        let mut out = vec![0u8; packet.len() + 256];
        let with_ctx = ingress_ifindex != 0;
        let opts = TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ctx_in: with_ctx.then_some(&ctx[..]),
            ..TestRunOptions::default()
        };
        let r = prog
            .test_run(opts)
            .map_err(|e| chain_err("BPF_PROG_TEST_RUN", &e))?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    /// Cuts the flows of backends whose drain timeout has passed. `apply`
    /// calls it; a controller that applies rarely may call it on a timer.
    pub fn expire_drains(
        &mut self,
        now: Instant,
        referenced: &BTreeSet<IpAddr>,
    ) -> Result<(), DataplaneError> {
        let due: Vec<IpAddr> = self
            .known
            .iter()
            .filter(|(_, b)| b.cut_at.is_some_and(|t| t <= now))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in due {
            let Some(b) = self.known.get_mut(&ip) else {
                continue;
            };
            if referenced.contains(&ip) {
                if b.entry[17] & F_CUT == 0 {
                    b.entry[17] |= F_CUT;
                    self.backends_map
                        .insert(b.id, b.entry, 0)
                        .map_err(|e| bpf_err("cut backend", e))?;
                    info!(backend = %ip, "drain timeout: flows cut");
                }
            } else {
                self.backends_map
                    .remove(&b.id)
                    .map_err(|e| bpf_err("remove backend", e))?;
                info!(backend = %ip, "drain timeout: backend forgotten");
                self.known.remove(&ip);
            }
        }
        Ok(())
    }

    fn check(&self, desired: &L4State) -> Result<(), DataplaneError> {
        if desired.services.len() > self.config.max_services as usize {
            return Err(bpf_err(
                "apply",
                format!(
                    "{} services, the maps hold {}",
                    desired.services.len(),
                    self.config.max_services
                ),
            ));
        }
        for (key, spec) in &desired.services {
            require_maglev(NAME, *key, spec)?;
            require_same_family(NAME, *key, spec)?;
            if let Some(a) = spec.backends.keys().find(|a| a.port() != key.port) {
                return Err(DataplaneError::Unsupported {
                    backend: NAME,
                    service: *key,
                    reason: format!("backend {a}: L2 DSR cannot rewrite the port; use the service port"),
                });
            }
        }
        Ok(())
    }

    /// Re-reads every backend's egress and MAC from the neighbour table and
    /// rewrites the entries that changed (a backend replaced by a machine
    /// with another MAC, a moved interface). `apply` only resolves backends
    /// that have no MAC yet; a controller calls this on a timer or on
    /// neighbour-table events.
    pub fn refresh_neighbours(&mut self) -> Result<usize, DataplaneError> {
        let ips: Vec<IpAddr> = self.known.keys().copied().collect();
        let mut changed = 0;
        for ip in ips {
            let before = self.known.get(&ip).map(|b| b.entry);
            self.resolve_backend(ip, true)?;
            if self.known.get(&ip).map(|b| b.entry) != before {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Makes sure `ip` has an id and an entry in the backends map, and tries
    /// to resolve its MAC if it has none yet.
    fn ensure_backend(&mut self, ip: IpAddr) -> Result<u32, DataplaneError> {
        self.resolve_backend(ip, false)
    }

    /// As [`Self::ensure_backend`]; with `force`, resolves again even when a
    /// MAC is known, and writes the entry only if it changed.
    fn resolve_backend(&mut self, ip: IpAddr, force: bool) -> Result<u32, DataplaneError> {
        if let Some(b) = self.known.get(&ip)
            && b.entry[17] & F_HAS_MAC != 0
            && !force
        {
            return Ok(b.id);
        }
        let id = match self.known.get(&ip) {
            Some(b) => b.id,
            None => {
                if self.known.len() >= self.config.max_backends as usize {
                    return Err(bpf_err(
                        "apply",
                        format!("more than {} backends", self.config.max_backends),
                    ));
                }
                let id = self.next_id;
                // Ids are never reused while the program runs; u32::MAX
                // is the program's NO_BACKEND marker.
                self.next_id = self
                    .next_id
                    .checked_add(1)
                    .filter(|&n| n < NO_BACKEND)
                    .ok_or_else(|| bpf_err("apply", "backend ids exhausted; reload the dataplane"))?;
                id
            }
        };
        let egress = self.neighbours.resolve(ip);
        let mut entry = [0u8; 36];
        match ip {
            IpAddr::V4(a) => {
                entry[..4].copy_from_slice(&a.octets());
                entry[16] = 4;
            }
            IpAddr::V6(a) => {
                entry[..16].copy_from_slice(&a.octets());
                entry[16] = 6;
            }
        }
        if let Some(e) = egress {
            entry[24..30].copy_from_slice(&e.src_mac);
            entry[32..36].copy_from_slice(&e.ifindex.to_le_bytes());
            if let Some(mac) = e.dst_mac {
                entry[17] |= F_HAS_MAC;
                entry[18..24].copy_from_slice(&mac);
            }
            if !self.ports.contains(&e.ifindex) {
                // The ifindex is read in this thread's namespace: the one
                // the program is attached in.
                self.tx_ports
                    .insert(e.ifindex, e.ifindex, None, 0)
                    .map_err(|err| bpf_err(format!("tx port {}", e.ifindex), err))?;
                self.ports.insert(e.ifindex);
            }
        }
        if entry[17] & F_HAS_MAC == 0 {
            warn!(backend = %ip, "backend MAC unresolved; its packets go to the kernel until it resolves");
        } else {
            debug!(backend = %ip, id, "backend resolved");
        }
        let cut_at = self.known.get(&ip).and_then(|b| b.cut_at);
        if let Some(old) = self.known.get(&ip) {
            // A refresh that cannot resolve the backend right now (the
            // kernel's entry expired: the program bypasses the stack, so
            // nothing keeps it fresh) keeps the MAC it had: a stale MAC is
            // far likelier right than none, which would send its flows to
            // the kernel.
            if entry[17] & F_HAS_MAC == 0 && old.entry[17] & F_HAS_MAC != 0 {
                debug!(backend = %ip, "backend MAC not re-resolved; keeping the last one");
                return Ok(id);
            }
            entry[17] |= old.entry[17] & F_CUT;
            if old.entry == entry {
                return Ok(id);
            }
        }
        self.backends_map
            .insert(id, entry, 0)
            .map_err(|e| bpf_err("write backend", e))?;
        self.known.insert(ip, KnownBackend { id, entry, cut_at });
        Ok(id)
    }

    fn program_service(&mut self, key: ServiceKey, spec: &ServiceSpec) -> Result<(), DataplaneError> {
        let mut ids = BTreeMap::new();
        for addr in spec.backends.keys() {
            ids.insert(addr.ip(), self.ensure_backend(addr.ip())?);
        }
        let t = ServiceTable::build(key, spec, self.config.table_size)?;
        let m = self.config.table_size.get();
        let slots: Vec<u32> = if t.table.is_empty() {
            vec![NO_BACKEND; m as usize]
        } else {
            t.table
                .entries()
                .iter()
                .map(|&i| {
                    t.addrs
                        .get(i as usize)
                        .and_then(|a| ids.get(&a.ip()).copied())
                        .unwrap_or(NO_BACKEND)
                })
                .collect()
        };
        let index = match self.programmed.get(&key) {
            Some(p) => p.index,
            None => {
                let used: BTreeSet<u32> = self.programmed.values().map(|p| p.index).collect();
                (0..self.config.max_services)
                    .find(|i| !used.contains(i))
                    .ok_or_else(|| bpf_err("apply", "no free service index"))?
            }
        };
        let old = self.programmed.remove(&key);
        let base = index * m;
        let mut written = 0usize;
        for (slot, &id) in slots.iter().enumerate() {
            if old.as_ref().and_then(|o| o.slots.get(slot)) == Some(&id) {
                continue;
            }
            self.maglev
                .set(base + slot as u32, id, 0)
                .map_err(|e| bpf_err("write maglev slot", e))?;
            written += 1;
        }
        let mut members = BTreeSet::new();
        for (addr, b) in &spec.backends {
            let Some(&id) = ids.get(&addr.ip()) else { continue };
            let state = match b.state {
                BackendState::Active => 0u64,
                BackendState::Draining => 1u64,
            };
            self.svc_backends
                .insert(
                    (u64::from(index) << 32) | u64::from(id),
                    u64::from(b.weight) | (state << 32),
                    0,
                )
                .map_err(|e| bpf_err("write service backend", e))?;
            members.insert(id);
        }
        for gone in old.iter().flat_map(|o| o.backends.difference(&members)) {
            let _ = self
                .svc_backends
                .remove(&((u64::from(index) << 32) | u64::from(*gone)));
        }
        // The service goes live (or stays) only once its table is complete.
        let mut val = [0u8; 8];
        val[..4].copy_from_slice(&index.to_le_bytes());
        val[4..].copy_from_slice(&m.to_le_bytes());
        self.services_map
            .insert(svc_key(&key), val, 0)
            .map_err(|e| bpf_err("write service", e))?;
        debug!(service = %key, index, slots_written = written, "service programmed");
        self.programmed.insert(
            key,
            Programmed {
                index,
                slots,
                backends: members,
            },
        );
        Ok(())
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        self.services_map
            .remove(&svc_key(key))
            .or_else(|e| match e {
                aya::maps::MapError::KeyNotFound => Ok(()),
                e => Err(e),
            })
            .map_err(|e| bpf_err("remove service", e))?;
        if let Some(p) = self.programmed.remove(key) {
            for id in p.backends {
                let _ = self
                    .svc_backends
                    .remove(&((u64::from(p.index) << 32) | u64::from(id)));
            }
        }
        info!(service = %key, "service removed from xdp");
        Ok(())
    }
}

fn svc_key(key: &ServiceKey) -> [u8; 20] {
    let mut k = [0u8; 20];
    match key.vip {
        IpAddr::V4(a) => {
            k[..4].copy_from_slice(&a.octets());
            k[19] = 4;
        }
        IpAddr::V6(a) => {
            k[..16].copy_from_slice(&a.octets());
            k[19] = 6;
        }
    }
    k[16..18].copy_from_slice(&key.port.to_be_bytes());
    k[18] = key.protocol.number();
    k
}

fn parse_svc_key(k: &[u8; 20]) -> Option<ServiceKey> {
    let vip = match k[19] {
        4 => IpAddr::V4(Ipv4Addr::new(k[0], k[1], k[2], k[3])),
        6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&k[..16]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    let protocol = match k[18] {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => return None,
    };
    Some(ServiceKey::new(vip, u16::from_be_bytes([k[16], k[17]]), protocol))
}

/// `edge_xdp.c` `struct flow_key`: src[16] dst[16] sport dport (network
/// order) proto family pad[2].
fn parse_flow_key(k: &[u8; 40]) -> Option<FlowKey> {
    let ip = |b: &[u8]| -> Option<IpAddr> {
        match k[37] {
            4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[..16]);
                Some(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => None,
        }
    };
    let protocol = match k[36] {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => return None,
    };
    Some(FlowKey {
        src: SocketAddr::new(ip(&k[..16])?, u16::from_be_bytes([k[32], k[33]])),
        dst: SocketAddr::new(ip(&k[16..32])?, u16::from_be_bytes([k[34], k[35]])),
        protocol,
    })
}

fn entry_ip(e: &[u8; 36]) -> Option<IpAddr> {
    match e[16] {
        4 => Some(IpAddr::V4(Ipv4Addr::new(e[0], e[1], e[2], e[3]))),
        6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&e[..16]);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

impl Dataplane for XdpDataplane {
    fn name(&self) -> &'static str {
        NAME
    }

    fn apply(&mut self, desired: &L4State) -> Result<Applied, DataplaneError> {
        desired.validate()?;
        self.check(desired)?;
        let now = Instant::now();
        let referenced: BTreeSet<IpAddr> = desired
            .services
            .values()
            .flat_map(|s| s.backends.keys().map(SocketAddr::ip))
            .collect();
        let current = self.observe()?;
        let changes = diff(&current, desired);
        // Backends still without a MAC are retried on every apply, even
        // when the state is unchanged.
        for ip in self.unresolved() {
            if referenced.contains(&ip) {
                self.ensure_backend(ip)?;
            }
        }
        if !changes.is_empty() {
            let gone: Vec<ServiceKey> = self
                .programmed
                .keys()
                .filter(|k| !desired.services.contains_key(k))
                .copied()
                .collect();
            for key in gone {
                self.remove_service(&key)?;
            }
            for (key, spec) in &desired.services {
                if current.services.get(key) != Some(spec) || !self.programmed.contains_key(key) {
                    self.program_service(*key, spec)?;
                }
            }
            info!(changes = changes.len(), "xdp maps updated");
        }
        // Drain bookkeeping: a backend not Active in any service gets a cut
        // deadline; one that is Active again loses it (and its cut flag).
        let kept: BTreeSet<IpAddr> = desired
            .services
            .values()
            .flat_map(|s| {
                s.backends
                    .iter()
                    .filter(|(_, b)| b.state == BackendState::Active)
                    .map(|(a, _)| a.ip())
            })
            .collect();
        let timeout = self.config.drain_timeout;
        for (ip, b) in &mut self.known {
            if kept.contains(ip) {
                b.cut_at = None;
                if b.entry[17] & F_CUT != 0 {
                    b.entry[17] &= !F_CUT;
                    self.backends_map
                        .insert(b.id, b.entry, 0)
                        .map_err(|e| bpf_err("uncut backend", e))?;
                }
            } else if b.cut_at.is_none() {
                b.cut_at = Some(now + timeout);
            }
        }
        self.expire_drains(now, &referenced)?;
        Ok(Applied { changes })
    }

    fn observe(&self) -> Result<L4State, DataplaneError> {
        let mut by_index: BTreeMap<u32, ServiceKey> = BTreeMap::new();
        for item in self.services_map.iter() {
            let (k, v) = item.map_err(|e| bpf_err("read services", e))?;
            if let Some(key) = parse_svc_key(&k) {
                by_index.insert(u32::from_le_bytes([v[0], v[1], v[2], v[3]]), key);
            }
        }
        let mut state = L4State::default();
        for key in by_index.values() {
            state
                .services
                .insert(*key, ServiceSpec::new(SchedulerKind::Maglev));
        }
        for item in self.svc_backends.iter() {
            let (k, v) = item.map_err(|e| bpf_err("read service backends", e))?;
            let (index, id) = ((k >> 32) as u32, k as u32);
            let Some(key) = by_index.get(&index) else { continue };
            let Ok(entry) = self.backends_map.get(&id, 0) else {
                continue;
            };
            let Some(ip) = entry_ip(&entry) else { continue };
            let spec = BackendSpec {
                weight: v as u32,
                state: if (v >> 32) == 1 {
                    BackendState::Draining
                } else {
                    BackendState::Active
                },
            };
            if let Some(s) = state.services.get_mut(key) {
                s.backends.insert(SocketAddr::new(ip, key.port), spec);
            }
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_keys_round_trip() {
        for k in [
            ServiceKey::new("203.0.113.10".parse().unwrap(), 8080, Protocol::Tcp),
            ServiceKey::new("2001:db8:ffff::10".parse().unwrap(), 53, Protocol::Udp),
        ] {
            assert_eq!(parse_svc_key(&svc_key(&k)), Some(k));
        }
        let k = svc_key(&ServiceKey::new(
            "203.0.113.10".parse().unwrap(),
            0x1f90,
            Protocol::Tcp,
        ));
        // Port in network order, as the program compares it to the header.
        assert_eq!(&k[16..18], &[0x1f, 0x90]);
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("02:00:5e:10:00:0a"), Some([2, 0, 0x5e, 0x10, 0, 0x0a]));
        assert_eq!(parse_mac("02:00:5e:10:00"), None);
        assert_eq!(parse_mac("02:00:5e:10:00:0a:01"), None);
        assert_eq!(parse_mac("zz:00:5e:10:00:0a"), None);
    }
}
