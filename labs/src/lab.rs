//! `Lab`: builds a [`LabSpec`] in the kernel, runs its routers and
//! processes, and removes all of it again.
//!
//! Build order (each step recorded in `state.json` as it happens):
//! namespaces + sysctls → `lo` addresses → bridges → veth links → bridge
//! ports → static routes → routers → processes. Teardown reverses it:
//! stop processes (recorded PIDs whose cmdline still matches, pid files,
//! then anything else still inside a lab namespace) → delete namespaces,
//! which also removes every veth, bridge, address and route.
//!
//! Daemons run in the foreground (`bird -f`, FRR without `-d`), so the PID
//! we spawn is the daemon's PID from the first instant; no pid-file race.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::Serialize;

use crate::cmd::{self, CMD_TIMEOUT};
use crate::config;
use crate::error::{LabError, Result};
use crate::names::{self, MAX_SOCKET_PATH, NS_PREFIX};
use crate::procs;
use crate::spec::{LabSpec, ProcessSpec, RouterKind, RouterSpec};
use crate::state::{LabState, ProcessRecord, RouterRecord, STATE_VERSION};

/// How long a router daemon may take to answer its control socket.
pub const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// SIGTERM grace period before SIGKILL at teardown.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// gRPC address of every GoBGP instance, inside its own namespace (each
/// namespace has its own loopback, so they do not collide).
pub const GOBGP_API: &str = "127.0.0.1:50051";

/// What [`Lab::wait_route`] waits for in a kernel table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteExpect {
    /// At least one path.
    Present,
    /// No route for exactly this prefix.
    Absent,
    /// Exactly this many next hops.
    Ecmp(usize),
}

/// A kernel route for one prefix (`ip -j route show exact <prefix>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    /// Number of next hops (1 for a plain route, N for multipath).
    pub paths: usize,
    /// Gateways of the next hops, when they have one.
    pub gateways: Vec<IpAddr>,
    /// The JSON iproute2 printed, for messages.
    pub raw: String,
}

/// The BGP view and the kernel view of one router, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterRoutes {
    /// `vtysh show bgp ipv4/ipv6 unicast`, `birdc show route all`, or
    /// `gobgp global rib -a ipv4/ipv6`.
    pub bgp: String,
    /// `ip route` in the router's namespace.
    pub kernel_v4: String,
    /// `ip -6 route` in the router's namespace.
    pub kernel_v6: String,
}

/// What a teardown did; warnings are non-fatal problems worth printing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Teardown {
    pub stopped_pids: Vec<u32>,
    pub deleted_namespaces: Vec<String>,
    pub warnings: Vec<String>,
}

/// `Lab::status` output, serialisable for `edge lab status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabStatus {
    pub lab: String,
    pub workdir: PathBuf,
    pub namespaces: Vec<NamespaceStatus>,
    pub processes: Vec<ProcessStatus>,
    pub routers: Vec<RouterRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceStatus {
    pub kernel_name: String,
    pub exists: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessStatus {
    pub name: String,
    pub namespace: String,
    pub pid: u32,
    pub alive: bool,
}

impl LabStatus {
    /// Every namespace exists and every recorded process runs.
    pub fn healthy(&self) -> bool {
        self.namespaces.iter().all(|n| n.exists) && self.processes.iter().all(|p| p.alive)
    }
}

/// A running lab. Dropping an owning `Lab` tears it down (also while a
/// test panics); [`Lab::detach`] leaves it running for `edge lab down`.
#[derive(Debug)]
pub struct Lab {
    state: LabState,
    /// Children spawned by this process, kept to reap them (a killed child
    /// stays a zombie until its parent waits for it).
    children: Vec<Child>,
    owned: bool,
    torn_down: bool,
}

impl Lab {
    /// Builds `spec` and starts its routers and processes. Configs, logs
    /// and `state.json` go under `workdir` (created if missing). On error
    /// everything created so far is removed again.
    pub fn up(spec: &LabSpec, workdir: &Path) -> Result<Lab> {
        spec.validate()?;
        let workdir = prepare_workdir(workdir)?;
        check_socket_paths(spec, &workdir)?;
        let existing = list_netns()?;
        // A leftover namespace (crashed run, lost workdir) would make
        // `ip netns add` fail half-way; say what to do instead. Checked
        // before anything is created, so a refused `up` touches nothing.
        if let Some(taken) = spec
            .namespace_names()
            .map(|n| names::kernel_ns(&spec.name, n))
            .find(|k| existing.contains(k))
        {
            return Err(LabError::State(format!(
                "namespace {taken} already exists (lab {:?} is running or left over); \
                 run `edge lab down` or Lab::cleanup_lab({:?}) first",
                spec.name, spec.name
            )));
        }
        // Another lab recorded in this workdir would have its state file
        // overwritten and become unreachable for `edge lab down`.
        if let Ok(old) = LabState::load(&workdir)
            && old.namespaces.iter().any(|n| existing.contains(n))
        {
            return Err(LabError::State(format!(
                "{} already holds running lab {:?}; take it down first (Lab::down)",
                workdir.display(),
                old.lab
            )));
        }
        let mut lab = Lab {
            state: LabState {
                version: STATE_VERSION,
                lab: spec.name.clone(),
                workdir,
                spec: spec.clone(),
                namespaces: Vec::new(),
                processes: Vec::new(),
                routers: Vec::new(),
            },
            children: Vec::new(),
            owned: true,
            torn_down: false,
        };
        let t0 = Instant::now();
        // On error `lab` is dropped here, which tears down the partial lab.
        lab.build()?;
        tracing::info!(lab = %spec.name, elapsed = ?t0.elapsed(), "lab up");
        Ok(lab)
    }

    /// A non-owning handle on a lab started by another process (or an
    /// earlier `detach`): helpers work, dropping it does not tear down.
    pub fn attach(workdir: &Path) -> Result<Lab> {
        let workdir =
            std::fs::canonicalize(workdir).map_err(|e| LabError::io("opening lab workdir", workdir, e))?;
        Ok(Lab {
            state: LabState::load(&workdir)?,
            children: Vec::new(),
            owned: false,
            torn_down: false,
        })
    }

    /// Leaves the lab running after this handle is dropped (for
    /// `edge lab up`). Returns the workdir to pass to `Lab::down` later.
    pub fn detach(mut self) -> PathBuf {
        self.owned = false;
        self.state.workdir.clone()
    }

    /// Tears the lab down now and reports what happened. Errors only when
    /// something could not be removed.
    pub fn teardown(mut self) -> Result<Teardown> {
        self.torn_down = true;
        let mut children = std::mem::take(&mut self.children);
        teardown_state(&self.state, &mut children)
    }

    /// Tears down the lab recorded in `<workdir>/state.json` (used by
    /// `edge lab down` from a different process than the one that built it).
    pub fn down(workdir: &Path) -> Result<Teardown> {
        let mut state = LabState::load(workdir)?;
        // The workdir may have been moved since `up`; remove the state file
        // where it was found.
        state.workdir =
            std::fs::canonicalize(workdir).map_err(|e| LabError::io("opening lab workdir", workdir, e))?;
        teardown_state(&state, &mut Vec::new())
    }

    /// Reports which namespaces exist and which processes are alive.
    pub fn status(workdir: &Path) -> Result<LabStatus> {
        let state = LabState::load(workdir)?;
        let existing = list_netns()?;
        Ok(LabStatus {
            lab: state.lab.clone(),
            workdir: state.workdir.clone(),
            namespaces: state
                .namespaces
                .iter()
                .map(|n| NamespaceStatus {
                    kernel_name: n.clone(),
                    exists: existing.contains(n),
                })
                .collect(),
            processes: state
                .processes
                .iter()
                .map(|p| ProcessStatus {
                    name: p.name.clone(),
                    namespace: p.namespace.clone(),
                    pid: p.pid,
                    alive: procs::alive(p.pid) && procs::matches(p.pid, &p.kernel_ns, &p.argv),
                })
                .collect(),
            routers: state.routers.clone(),
        })
    }

    /// Removes every namespace whose name starts with `prefix` (which must
    /// start with `edge-`), after stopping every process inside them. For
    /// leftovers whose state file is lost; `cleanup_prefix("edge-")`
    /// removes all labs on the machine.
    pub fn cleanup_prefix(prefix: &str) -> Result<Teardown> {
        if !prefix.starts_with(NS_PREFIX) {
            return Err(LabError::Invalid(format!(
                "cleanup prefix {prefix:?} must start with {NS_PREFIX:?}; refusing to touch \
                 namespaces this harness did not create"
            )));
        }
        let namespaces: Vec<String> = list_netns()?
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect();
        let mut report = Teardown::default();
        stop_namespace_processes(&namespaces, Vec::new(), &mut Vec::new(), &mut report);
        delete_namespaces(&namespaces, &mut report);
        finish(report)
    }

    /// [`Lab::cleanup_prefix`] for exactly one lab: `edge-<lab>-`.
    pub fn cleanup_lab(lab: &str) -> Result<Teardown> {
        names::validate_lab_name(lab)?;
        Self::cleanup_prefix(&names::lab_prefix(lab))
    }

    /// The lab's spec.
    pub fn spec(&self) -> &LabSpec {
        &self.state.spec
    }

    /// The full recorded state.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// Absolute workdir.
    pub fn workdir(&self) -> &Path {
        &self.state.workdir
    }

    /// Kernel name (`edge-<lab>-<ns>`) of local namespace `ns`.
    pub fn kernel_ns(&self, ns: &str) -> Result<String> {
        self.state.kernel_ns(ns)
    }

    /// PIDs of every process the lab started, in start order.
    pub fn pids(&self) -> Vec<u32> {
        self.state.processes.iter().map(|p| p.pid).collect()
    }

    /// PID of a router daemon (`"r1/bgpd"`, `"r2/bird"`) or process.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.state
            .processes
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.pid)
    }

    /// Runs `argv` in namespace `ns` (`ip netns exec`), with the default
    /// 20 s limit. Returns the output whatever the exit status.
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Result<Output> {
        self.exec_timeout(ns, argv, CMD_TIMEOUT)
    }

    /// [`Lab::exec`] with an explicit time limit.
    pub fn exec_timeout(&self, ns: &str, argv: &[&str], timeout: Duration) -> Result<Output> {
        let k = self.kernel_ns(ns)?;
        cmd::output(&mut cmd::netns_exec(&k, argv), timeout)
    }

    /// Runs `argv` in `ns` and fails (with its stderr) unless it exits 0.
    pub fn exec_ok(&self, ns: &str, argv: &[&str]) -> Result<String> {
        let k = self.kernel_ns(ns)?;
        cmd::run(&mut cmd::netns_exec(&k, argv), CMD_TIMEOUT)
    }

    /// Runs vtysh commands (each one a `-c`) against FRR router `router`.
    pub fn vtysh(&self, router: &str, cmds: &[&str]) -> Result<String> {
        let r = self.router_of_kind(router, RouterKind::Frr)?;
        vtysh_at(&r.control, cmds)
    }

    /// `vtysh -c '<cmd> json'` parsed as JSON (` json` is appended when
    /// missing).
    pub fn vtysh_json(&self, router: &str, command: &str) -> Result<serde_json::Value> {
        let command = if command.trim_end().ends_with(" json") {
            command.to_string()
        } else {
            format!("{} json", command.trim_end())
        };
        let text = self.vtysh(router, &[&command])?;
        serde_json::from_str(&text).map_err(|e| LabError::Parse {
            cmd: format!("vtysh -c '{command}'"),
            detail: format!("{e}; output was: {}", truncate(&text, 2000)),
        })
    }

    /// Runs a `birdc` command against BIRD router `router`.
    pub fn birdc(&self, router: &str, command: &str) -> Result<String> {
        let r = self.router_of_kind(router, RouterKind::Bird)?;
        birdc_at(&r.control, command)
    }

    /// Runs `gobgp <args>` inside GoBGP router `router`'s namespace (its
    /// gRPC API listens on that namespace's loopback).
    pub fn gobgp(&self, router: &str, args: &[&str]) -> Result<String> {
        let r = self.router_of_kind(router, RouterKind::Gobgp)?;
        gobgp_in(&r.kernel_ns, args)
    }

    /// The router's BGP table and its namespace's kernel tables, as text,
    /// optionally for one prefix only.
    pub fn router_routes(&self, router: &str, prefix: Option<IpNet>) -> Result<RouterRoutes> {
        let r = self.state.router(router)?.clone();
        let families: Vec<&str> = match prefix {
            Some(IpNet::V4(_)) => vec!["ipv4"],
            Some(IpNet::V6(_)) => vec!["ipv6"],
            None => vec!["ipv4", "ipv6"],
        };
        let p = prefix.map(|p| p.trunc().to_string());
        let mut bgp = String::new();
        match r.kind {
            RouterKind::Frr => {
                for af in &families {
                    let mut c = format!("show bgp {af} unicast");
                    if let Some(p) = &p {
                        c = format!("{c} {p}");
                    }
                    bgp.push_str(&not_found_is_empty(self.vtysh(router, &[&c]))?);
                }
            }
            RouterKind::Bird => {
                let c = match &p {
                    Some(p) => format!("show route all {p}"),
                    None => "show route all".to_string(),
                };
                bgp.push_str(&not_found_is_empty(self.birdc(router, &c))?);
            }
            RouterKind::Gobgp => {
                for af in &families {
                    let mut args = vec!["global", "rib"];
                    if let Some(p) = &p {
                        args.push(p);
                    }
                    args.extend(["-a", af]);
                    bgp.push_str(&self.gobgp(router, &args)?);
                }
            }
        }
        let mut v4 = vec!["route", "show"];
        let mut v6 = vec!["-6", "route", "show"];
        if let Some(p) = &p {
            v4.extend(["exact", p]);
            v6.extend(["exact", p]);
        }
        let (kernel_v4, kernel_v6) = match prefix {
            Some(IpNet::V4(_)) => (cmd::ip_n(&r.kernel_ns, &v4)?, String::new()),
            Some(IpNet::V6(_)) => (String::new(), cmd::ip_n(&r.kernel_ns, &v6)?),
            None => (cmd::ip_n(&r.kernel_ns, &v4)?, cmd::ip_n(&r.kernel_ns, &v6)?),
        };
        Ok(RouterRoutes {
            bgp,
            kernel_v4,
            kernel_v6,
        })
    }

    /// The kernel route for exactly `prefix` in namespace `ns`, if any.
    pub fn kernel_route(&self, ns: &str, prefix: IpNet) -> Result<Option<KernelRoute>> {
        kernel_route(&self.kernel_ns(ns)?, prefix)
    }

    /// Polls `ns`'s kernel table every 50 ms until the route for `prefix`
    /// matches `expect`, for at most `timeout`. Returns the route seen
    /// (`None` for `Absent`); on timeout the error shows the last state.
    pub fn wait_route(
        &self,
        ns: &str,
        prefix: IpNet,
        expect: RouteExpect,
        timeout: Duration,
    ) -> Result<Option<KernelRoute>> {
        let k = self.kernel_ns(ns)?;
        let deadline = Instant::now() + timeout;
        loop {
            let route = kernel_route(&k, prefix)?;
            let ok = match (&route, expect) {
                (Some(r), RouteExpect::Present) => r.paths >= 1,
                (None, RouteExpect::Absent) => true,
                (Some(r), RouteExpect::Ecmp(n)) => r.paths == n,
                _ => false,
            };
            if ok {
                return Ok(route);
            }
            if Instant::now() >= deadline {
                let seen = route.map_or_else(|| "no route".to_string(), |r| r.raw);
                return Err(LabError::Timeout {
                    what: format!("route {prefix} in {k} to be {expect:?}; last seen: {seen}"),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts an extra process now (after `up`) and records it.
    pub fn spawn_process(&mut self, p: &ProcessSpec) -> Result<u32> {
        let mut spec = self.state.spec.clone();
        spec.processes.push(p.clone());
        spec.validate()?;
        let pid = self.start_process(p)?;
        // Keep the recorded spec in step, so `state.json` describes what runs.
        self.state.spec = spec;
        self.save()?;
        Ok(pid)
    }

    /// Stops a process or router daemon by name (SIGTERM, then SIGKILL).
    /// It stays in the state file; teardown skips it as it is gone.
    pub fn stop_process(&mut self, name: &str) -> Result<()> {
        let rec = self
            .state
            .processes
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| LabError::Unknown {
                kind: "process",
                name: name.to_string(),
                lab: self.state.lab.clone(),
            })?;
        if !procs::matches(rec.pid, &rec.kernel_ns, &rec.argv) {
            return Ok(());
        }
        let children = &mut self.children;
        let left = procs::stop_all(&[rec.pid], STOP_GRACE, || reap(children));
        if left.is_empty() {
            Ok(())
        } else {
            Err(LabError::State(format!(
                "process {name} (pid {}) survived SIGKILL",
                rec.pid
            )))
        }
    }

    fn router_of_kind(&self, name: &str, kind: RouterKind) -> Result<&RouterRecord> {
        let r = self.state.router(name)?;
        if r.kind == kind {
            Ok(r)
        } else {
            Err(LabError::Invalid(format!(
                "router {name} is {:?}, not {kind:?}",
                r.kind
            )))
        }
    }

    fn save(&self) -> Result<()> {
        self.state.save()
    }

    fn build(&mut self) -> Result<()> {
        let spec = self.state.spec.clone();
        let k = |ns: &str| names::kernel_ns(&spec.name, ns);

        for ns in &spec.namespaces {
            let kn = k(&ns.name);
            cmd::ip(&["netns", "add", &kn])?;
            self.state.namespaces.push(kn.clone());
            self.save()?;
            cmd::ip_n(&kn, &["link", "set", "lo", "up"])?;
            // Without keep_addr_on_down a link flap deletes global IPv6
            // addresses (LAB-FACTS gotcha 1). Set before any veth exists so
            // `default` covers them too.
            let mut sysctls = vec![
                "net.ipv6.conf.all.keep_addr_on_down=1",
                "net.ipv6.conf.default.keep_addr_on_down=1",
            ];
            if ns.forwarding {
                sysctls.extend(["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
            }
            if ns.multipath_hash_l4 {
                sysctls.extend([
                    "net.ipv4.fib_multipath_hash_policy=1",
                    "net.ipv6.fib_multipath_hash_policy=1",
                ]);
            }
            let extra: Vec<String> = spec
                .sysctls
                .iter()
                .filter(|s| s.namespace == ns.name)
                .map(|s| format!("{}={}", s.key, s.value))
                .collect();
            sysctls.extend(extra.iter().map(String::as_str));
            cmd::sysctl(&kn, &sysctls)?;
            for a in &ns.loopback {
                add_addr(&kn, "lo", a)?;
            }
        }

        for b in &spec.bridges {
            let kn = k(&b.namespace);
            cmd::ip_n(&kn, &["link", "add", &b.name, "type", "bridge"])?;
            cmd::ip_n(&kn, &["link", "set", &b.name, "up"])?;
            for a in &b.addresses {
                add_addr(&kn, &b.name, a)?;
            }
        }

        for l in &spec.links {
            let (ka, kb) = (k(&l.a.namespace), k(&l.b.namespace));
            // Both ends are created directly inside their namespaces: the
            // root namespace never holds a lab interface, not even briefly.
            cmd::ip(&[
                "link",
                "add",
                &l.a.ifname,
                "netns",
                &ka,
                "type",
                "veth",
                "peer",
                "name",
                &l.b.ifname,
                "netns",
                &kb,
            ])?;
            for (kn, e) in [(&ka, &l.a), (&kb, &l.b)] {
                for a in &e.addresses {
                    add_addr(kn, &e.ifname, a)?;
                }
                cmd::ip_n(kn, &["link", "set", &e.ifname, "up"])?;
            }
        }

        for b in &spec.bridges {
            let ks = k(&b.namespace);
            for (i, p) in b.ports.iter().enumerate() {
                let kp = k(&p.namespace);
                let peer = p.bridge_side_name(&b.name, i);
                cmd::ip(&[
                    "link", "add", &p.ifname, "netns", &kp, "type", "veth", "peer", "name", &peer, "netns",
                    &ks,
                ])?;
                cmd::ip_n(&ks, &["link", "set", &peer, "master", &b.name, "up"])?;
                for a in &p.addresses {
                    add_addr(&kp, &p.ifname, a)?;
                }
                cmd::ip_n(&kp, &["link", "set", &p.ifname, "up"])?;
            }
        }

        for r in &spec.routes {
            let dst = r.destination.trunc().to_string();
            let gw = r.gateway.to_string();
            cmd::ip_n(&k(&r.namespace), &["route", "add", &dst, "via", &gw])?;
        }

        for r in &spec.routers {
            self.start_router(r)?;
        }
        for p in &spec.processes {
            self.start_process(p)?;
        }
        self.save()
    }

    /// Spawns `l.argv` in-namespace, in the foreground, output to `l.log`.
    fn spawn(&mut self, l: Launch) -> Result<ProcessRecord> {
        let Launch {
            name,
            ns,
            argv,
            env,
            log,
            cwd,
            pid_file,
        } = l;
        let kn = self.kernel_ns(&ns)?;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating log dir", dir, e))?;
        }
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| LabError::io("opening process log", &log, e))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io("opening process log", &log, e))?;
        let mut c = cmd::netns_exec(&kn, &argv);
        c.envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Own process group: a Ctrl-C aimed at `edge lab up` or the
            // test runner must not hit daemons that outlive it on purpose.
            .process_group(0);
        let line = cmd::display(&c);
        let child = c
            .spawn()
            .map_err(|source| LabError::Spawn { cmd: line, source })?;
        let rec = ProcessRecord {
            name,
            namespace: ns,
            kernel_ns: kn,
            argv,
            pid: child.id(),
            pid_file,
            log,
        };
        tracing::debug!(name = %rec.name, pid = rec.pid, "started");
        self.children.push(child);
        self.state.processes.push(rec.clone());
        self.save()?;
        Ok(rec)
    }

    fn start_process(&mut self, p: &ProcessSpec) -> Result<u32> {
        let wd = self.state.workdir.clone();
        let log = match &p.log {
            Some(l) => wd.join(l),
            None => wd.join("logs").join(format!("{}.log", p.name)),
        };
        let cwd = p.cwd.as_ref().map_or_else(|| wd.clone(), |c| wd.join(c));
        let rec = self.spawn(Launch {
            name: p.name.clone(),
            ns: p.namespace.clone(),
            argv: p.argv.clone(),
            env: p.env.clone().into_iter().collect(),
            log,
            cwd,
            pid_file: None,
        })?;
        Ok(rec.pid)
    }

    fn start_router(&mut self, r: &RouterSpec) -> Result<()> {
        let wd = self.state.workdir.clone();
        let kn = self.kernel_ns(&r.namespace)?;
        let s = |p: &Path| p.to_string_lossy().into_owned();
        match r.kind {
            RouterKind::Frr => {
                let dir = wd.join("frr").join(&r.name);
                mkdir(&dir)?;
                let bgpd_conf = dir.join("bgpd.conf");
                write(&bgpd_conf, &config::frr_bgpd_conf(r, &dir))?;
                let zserv = dir.join("zserv.api");
                if r.installs_routes() {
                    write(&dir.join("zebra.conf"), &config::frr_zebra_conf(r, &dir))?;
                }
                // FRR drops to user frr: it must own its directory and be
                // able to reach it.
                chown_frr(&wd, &dir)?;
                self.record_router(r, &kn, &dir, s(&dir))?;
                let common = |daemon: &str| -> Vec<String> {
                    let mut v = vec![
                        s(&tool_in_frr(daemon)),
                        "-f".into(),
                        s(&dir.join(format!("{daemon}.conf"))),
                        "-i".into(),
                        s(&dir.join(format!("{daemon}.pid"))),
                        "--vty_socket".into(),
                        s(&dir),
                        "-P".into(),
                        "0".into(),
                        "-u".into(),
                        "frr".into(),
                        "-g".into(),
                        "frr".into(),
                    ];
                    v.extend(["-z".into(), s(&zserv)]);
                    v
                };
                if r.installs_routes() {
                    let argv = common("zebra");
                    let rec = self.spawn(Launch::daemon(r, "zebra", &dir, argv, true))?;
                    wait_for(&mut self.children, &rec, || zserv.exists())?;
                }
                let mut argv = common("bgpd");
                if !r.installs_routes() {
                    // Speaker only: no zebra, nothing installed.
                    argv.push("-Z".into());
                }
                let rec = self.spawn(Launch::daemon(r, "bgpd", &dir, argv, true))?;
                let control = s(&dir);
                wait_for(&mut self.children, &rec, || {
                    dir.join("bgpd.vty").exists() && vtysh_at(&control, &["show bgp summary"]).is_ok()
                })?;
            }
            RouterKind::Bird => {
                let dir = wd.join("bird").join(&r.name);
                mkdir(&dir)?;
                let conf = dir.join("bird.conf");
                write(&conf, &config::bird_conf(r, &dir))?;
                let ctl = dir.join("bird.ctl");
                // Parse first: a config error then reads as such, not as
                // "bird did not start".
                cmd::run(
                    Command::new(tool("bird")).arg("-p").arg("-c").arg(&conf),
                    CMD_TIMEOUT,
                )?;
                self.record_router(r, &kn, &dir, s(&ctl))?;
                let argv = vec![
                    s(&tool("bird")),
                    "-f".into(),
                    "-c".into(),
                    s(&conf),
                    "-s".into(),
                    s(&ctl),
                    "-P".into(),
                    s(&dir.join("bird.pid")),
                ];
                let rec = self.spawn(Launch::daemon(r, "bird", &dir, argv, true))?;
                let control = s(&ctl);
                wait_for(&mut self.children, &rec, || {
                    ctl.exists() && birdc_at(&control, "show status").is_ok()
                })?;
            }
            RouterKind::Gobgp => {
                let dir = wd.join("gobgp").join(&r.name);
                mkdir(&dir)?;
                let conf = dir.join("gobgpd.toml");
                write(&conf, &config::gobgp_toml(r))?;
                self.record_router(r, &kn, &dir, GOBGP_API.to_string())?;
                let argv = vec![
                    s(&tool("gobgpd")),
                    "-f".into(),
                    s(&conf),
                    "-p".into(),
                    "--pprof-disable".into(),
                    "--api-hosts".into(),
                    GOBGP_API.into(),
                ];
                let rec = self.spawn(Launch::daemon(r, "gobgpd", &dir, argv, false))?;
                // The API may refuse the first calls ("context deadline
                // exceeded"), so readiness is "a call succeeds".
                wait_for(&mut self.children, &rec, || gobgp_in(&kn, &["global"]).is_ok())?;
                for args in config::gobgp_originate_args(r) {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    self.gobgp(&r.name, &args)?;
                }
            }
        }
        Ok(())
    }

    fn record_router(&mut self, r: &RouterSpec, kn: &str, dir: &Path, control: String) -> Result<()> {
        self.state.routers.push(RouterRecord {
            name: r.name.clone(),
            kind: r.kind,
            namespace: r.namespace.clone(),
            kernel_ns: kn.to_string(),
            dir: dir.to_path_buf(),
            control,
        });
        self.save()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.owned || self.torn_down {
            return;
        }
        self.torn_down = true;
        // Never panic here: Drop also runs while a test unwinds, and a
        // second panic would abort without cleaning up.
        match teardown_state(&self.state, &mut self.children) {
            Ok(t) => {
                for w in t.warnings {
                    eprintln!("lab {}: teardown warning: {w}", self.state.lab);
                }
            }
            Err(e) => eprintln!("lab {}: teardown failed: {e}", self.state.lab),
        }
    }
}

/// Stops the processes and deletes the namespaces of `state`.
fn teardown_state(state: &LabState, children: &mut Vec<Child>) -> Result<Teardown> {
    let mut report = Teardown::default();
    let mut pids = Vec::new();
    for p in state.processes.iter().rev() {
        let mut candidates = vec![p.pid];
        // BIRD writes its pid file only after start-up, so it is read now,
        // at teardown, never copied earlier (LAB-FACTS §2).
        if let Some(pf) = p.pid_file.as_deref().and_then(procs::read_pid_file) {
            candidates.push(pf);
        }
        for pid in candidates {
            if procs::alive(pid) && procs::matches(pid, &p.kernel_ns, &p.argv) && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    // If the list cannot be read, still try every recorded namespace:
    // stopping processes matters more than a clean report.
    let namespaces: Vec<String> = match list_netns() {
        Ok(existing) => state
            .namespaces
            .iter()
            .filter(|n| existing.contains(*n))
            .cloned()
            .collect(),
        Err(e) => {
            report.warnings.push(format!("listing namespaces: {e}"));
            state.namespaces.clone()
        }
    };
    stop_namespace_processes(&namespaces, pids, children, &mut report);
    delete_namespaces(&namespaces, &mut report);
    let report = finish(report)?;
    LabState::remove(&state.workdir)?;
    tracing::info!(lab = %state.lab, "lab down");
    Ok(report)
}

/// Stops `pids` plus every process still inside `namespaces` (children of
/// our daemons, such as ExaBGP's helper, included).
fn stop_namespace_processes(
    namespaces: &[String],
    mut pids: Vec<u32>,
    children: &mut Vec<Child>,
    report: &mut Teardown,
) {
    for ns in namespaces {
        match cmd::ip(&["netns", "pids", ns]) {
            Ok(out) => {
                for pid in out.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
                    if !pids.contains(&pid) {
                        pids.push(pid);
                    }
                }
            }
            Err(e) => report.warnings.push(format!("listing processes in {ns}: {e}")),
        }
    }
    if pids.is_empty() {
        reap(children);
        return;
    }
    let left = procs::stop_all(&pids, STOP_GRACE, || reap(children));
    for pid in &left {
        report.warnings.push(format!("pid {pid} survived SIGKILL"));
    }
    report.stopped_pids = pids.into_iter().filter(|p| !left.contains(p)).collect();
}

fn delete_namespaces(namespaces: &[String], report: &mut Teardown) {
    for ns in namespaces.iter().rev() {
        match cmd::ip(&["netns", "del", ns]) {
            Ok(_) => report.deleted_namespaces.push(ns.clone()),
            Err(e) => report.warnings.push(format!("deleting namespace {ns}: {e}")),
        }
    }
}

/// Fails if any namespace could not be deleted or a process survived,
/// so `edge lab down` exits non-zero and keeps `state.json` for a retry.
fn finish(report: Teardown) -> Result<Teardown> {
    let fatal: Vec<&String> = report
        .warnings
        .iter()
        .filter(|w| w.starts_with("deleting namespace") || w.contains("survived"))
        .collect();
    if fatal.is_empty() {
        Ok(report)
    } else {
        Err(LabError::State(format!(
            "teardown incomplete: {}",
            fatal.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
        )))
    }
}

/// What to start and where (see `Lab::spawn`).
struct Launch {
    name: String,
    ns: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    cwd: PathBuf,
    pid_file: Option<PathBuf>,
}

impl Launch {
    /// A router daemon: named `<router>/<daemon>`, runs in the router's
    /// directory, logs to `<daemon>.out`, writes `<daemon>.pid` if asked.
    fn daemon(r: &RouterSpec, daemon: &str, dir: &Path, argv: Vec<String>, pid_file: bool) -> Self {
        Launch {
            name: format!("{}/{daemon}", r.name),
            ns: r.namespace.clone(),
            argv,
            env: Vec::new(),
            log: dir.join(format!("{daemon}.out")),
            cwd: dir.to_path_buf(),
            pid_file: pid_file.then(|| dir.join(format!("{daemon}.pid"))),
        }
    }
}

/// A router asked for a prefix it does not have answers with an error
/// exit (`birdc`: "Network not found", vtysh: "% Network not in table");
/// for a route listing that is an empty answer, not a failure.
fn not_found_is_empty(r: Result<String>) -> Result<String> {
    match r {
        Err(LabError::Command { stderr, .. })
            if stderr.contains("Network not found") || stderr.contains("Network not in table") =>
        {
            Ok(stderr)
        }
        other => other,
    }
}

/// Polls `ready` every 50 ms for up to [`DAEMON_READY_TIMEOUT`]; fails
/// early if the process exited, and on failure quotes the end of its log.
fn wait_for(children: &mut [Child], rec: &ProcessRecord, mut ready: impl FnMut() -> bool) -> Result<()> {
    let timeout = DAEMON_READY_TIMEOUT;
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        let exited = children
            .iter_mut()
            .find(|c| c.id() == rec.pid)
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            return Err(LabError::Command {
                cmd: rec.argv.join(" "),
                status: format!("exited during start-up: {status}"),
                stderr: log_tail(&rec.log),
            });
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: format!(
                    "{} to answer on its control socket; log tail:\n{}",
                    rec.name,
                    log_tail(&rec.log)
                ),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `vtysh --vty_socket <dir> -c ... -c ...` (vtysh reaches FRR through the
/// socket directory, so it runs from the root namespace).
fn vtysh_at(control: &str, cmds: &[&str]) -> Result<String> {
    let mut c = Command::new(tool("vtysh"));
    c.arg("--vty_socket").arg(control);
    for x in cmds {
        c.arg("-c").arg(x);
    }
    cmd::run(&mut c, CMD_TIMEOUT)
}

/// `birdc -s <socket> <command words>`.
fn birdc_at(control: &str, command: &str) -> Result<String> {
    let mut c = Command::new(tool("birdc"));
    c.arg("-s").arg(control);
    c.args(command.split_whitespace());
    cmd::run(&mut c, CMD_TIMEOUT)
}

/// `ip netns exec <ns> gobgp <args>`: GoBGP's API listens on the
/// namespace's own loopback.
fn gobgp_in(kn: &str, args: &[&str]) -> Result<String> {
    let mut argv = vec![tool("gobgp").to_string_lossy().into_owned()];
    argv.extend(args.iter().map(|s| s.to_string()));
    cmd::run(&mut cmd::netns_exec(kn, &argv), CMD_TIMEOUT)
}

fn reap(children: &mut Vec<Child>) {
    children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
}

/// Names from `ip netns list` (lines look like `name (id: 3)` or `name`).
pub fn list_netns() -> Result<BTreeSet<String>> {
    Ok(cmd::ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

fn kernel_route(kn: &str, prefix: IpNet) -> Result<Option<KernelRoute>> {
    let p = prefix.trunc().to_string();
    let fam = if prefix.addr().is_ipv4() { "-4" } else { "-6" };
    let text = cmd::ip_n(kn, &["-j", fam, "route", "show", "exact", &p])?;
    parse_kernel_route(&text).map_err(|detail| LabError::Parse {
        cmd: format!("ip -n {kn} -j {fam} route show exact {p}"),
        detail,
    })
}

/// Parses `ip -j route show exact P`: `[]` → none; otherwise one entry per
/// route (several for IPv6 on older iproute2), each either with a
/// `nexthops` array (multipath) or a single `gateway`/`dev`.
fn parse_kernel_route(text: &str) -> std::result::Result<Option<KernelRoute>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| format!("{e}: {trimmed}"))?;
    let entries = v
        .as_array()
        .ok_or_else(|| format!("not a JSON array: {trimmed}"))?;
    if entries.is_empty() {
        return Ok(None);
    }
    let mut paths = 0;
    let mut gateways = Vec::new();
    let gw = |o: &serde_json::Value| {
        o.get("gateway")
            .and_then(|g| g.as_str())
            .and_then(|g| g.parse::<IpAddr>().ok())
    };
    for e in entries {
        match e.get("nexthops").and_then(|n| n.as_array()) {
            Some(hops) => {
                paths += hops.len();
                gateways.extend(hops.iter().filter_map(gw));
            }
            None => {
                paths += 1;
                gateways.extend(gw(e));
            }
        }
    }
    Ok(Some(KernelRoute {
        paths,
        gateways,
        raw: trimmed.to_string(),
    }))
}

/// Absolute path of a tool: `PATH`, then the sbin and FRR directories a
/// non-login root environment may lack. Falls back to the bare name so the
/// spawn error names the missing tool.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/usr/lib/frr"])
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join(name))
        .find(|c| c.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn tool_in_frr(daemon: &str) -> PathBuf {
    let p = PathBuf::from("/usr/lib/frr").join(daemon);
    if p.is_file() { p } else { tool(daemon) }
}

fn prepare_workdir(workdir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(workdir).map_err(|e| LabError::io("creating lab workdir", workdir, e))?;
    std::fs::canonicalize(workdir).map_err(|e| LabError::io("resolving lab workdir", workdir, e))
}

/// FRR daemons and their control sockets are under the workdir; Unix
/// socket paths are limited to 107 bytes, and the daemon's own error for a
/// long path is obscure, so check up front.
fn check_socket_paths(spec: &LabSpec, workdir: &Path) -> Result<()> {
    for r in &spec.routers {
        let sock = match r.kind {
            RouterKind::Frr => workdir.join("frr").join(&r.name).join("zserv.api"),
            RouterKind::Bird => workdir.join("bird").join(&r.name).join("bird.ctl"),
            RouterKind::Gobgp => continue,
        };
        let len = sock.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(LabError::Invalid(format!(
                "control socket {} is {len} bytes; Unix sockets allow {MAX_SOCKET_PATH}. \
                 Use a shorter workdir",
                sock.display()
            )));
        }
    }
    Ok(())
}

fn mkdir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating directory", dir, e))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| LabError::io("writing config", path, e))
}

/// Gives user `frr` (which FRR daemons drop to) its directories: chowns
/// `dir` and its files, and makes sure frr can traverse down to it. The
/// workdir may be a 0700 temp dir, so it gets o+x (it is ours); the
/// directories above it belong to the caller and are only checked.
fn chown_frr(workdir: &Path, dir: &Path) -> Result<()> {
    let (uid, gid) = frr_ids()?;
    let chown = |p: &Path| {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| LabError::io("chown to frr", p, e))
    };
    chown(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|e| LabError::io("listing FRR dir", dir, e))?;
    for entry in entries.flatten() {
        chown(&entry.path())?;
    }
    for anc in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(anc).map_err(|e| LabError::io("checking permissions", anc, e))?;
        let mode = meta.permissions().mode();
        if mode & 0o001 != 0 {
            continue;
        }
        if anc.starts_with(workdir) {
            let mut perm = meta.permissions();
            perm.set_mode(mode | 0o001);
            std::fs::set_permissions(anc, perm)
                .map_err(|e| LabError::io("making lab dir searchable for frr", anc, e))?;
            continue;
        }
        return Err(LabError::Invalid(format!(
            "directory {} (mode {:o}) is not searchable by user frr, which FRR runs as; \
             choose a workdir below world-searchable directories",
            anc.display(),
            mode & 0o7777
        )));
    }
    Ok(())
}

fn frr_ids() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| LabError::io("reading user database", "/etc/passwd", e))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"frr") && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| LabError::Invalid("user frr not found in /etc/passwd; is FRR installed?".into()))
}

fn add_addr(kn: &str, dev: &str, a: &IpNet) -> Result<()> {
    let a = a.to_string();
    let mut args = vec!["addr", "add", &a, "dev", dev];
    if a.contains(':') {
        // No duplicate address detection: otherwise the address is
        // "tentative" for ~1 s and BGP cannot bind to it yet.
        args.push("nodad");
    }
    cmd::ip_n(kn, &args).map(|_| ())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_routes() {
        assert_eq!(parse_kernel_route("").expect("ok"), None);
        assert_eq!(parse_kernel_route("[ ]\n").expect("ok"), None);
        let single = r#"[{"dst":"203.0.113.0/24","gateway":"198.18.0.2","dev":"r1-r2","protocol":"bgp","metric":20,"flags":[]}]"#;
        let r = parse_kernel_route(single).expect("ok").expect("some");
        assert_eq!(r.paths, 1);
        assert_eq!(r.gateways, vec!["198.18.0.2".parse::<IpAddr>().expect("ip")]);
        let multi = r#"[{"dst":"203.0.113.10","protocol":"bird","metric":32,"flags":[],"nexthops":[{"gateway":"198.18.11.2","dev":"r-e1","weight":1,"flags":[]},{"gateway":"198.18.12.2","dev":"r-e2","weight":1,"flags":[]}]}]"#;
        let r = parse_kernel_route(multi).expect("ok").expect("some");
        assert_eq!(r.paths, 2);
        assert_eq!(r.gateways.len(), 2);
        assert!(parse_kernel_route("{").is_err());
    }

    /// A recorded PID is signalled only while its cmdline is still the
    /// one the lab started: after PID reuse it belongs to someone else.
    #[test]
    fn teardown_checks_cmdline_before_killing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id();
        let record = |argv: &[&str]| LabState {
            version: STATE_VERSION,
            lab: "unit".into(),
            workdir: dir.path().to_path_buf(),
            spec: LabSpec::new("unit"),
            namespaces: vec![],
            processes: vec![ProcessRecord {
                name: "p".into(),
                namespace: "x".into(),
                kernel_ns: "edge-unit-x".into(),
                argv: argv.iter().map(|s| s.to_string()).collect(),
                pid,
                pid_file: None,
                log: dir.path().join("p.log"),
            }],
            routers: vec![],
        };
        let report = teardown_state(&record(&["bird", "-f"]), &mut Vec::new()).expect("teardown");
        assert!(report.stopped_pids.is_empty(), "{report:?}");
        assert!(procs::alive(pid), "a process with another cmdline is left alone");

        let report = teardown_state(&record(&["sleep", "30"]), &mut Vec::new()).expect("teardown");
        let _ = child.wait();
        assert_eq!(report.stopped_pids, vec![pid]);
        assert!(!procs::alive(pid));
    }

    #[test]
    fn cleanup_refuses_foreign_prefixes() {
        for p in ["", "e", "lab-", "frr"] {
            let err = Lab::cleanup_prefix(p).expect_err("refused").to_string();
            assert!(err.contains("must start with \"edge-\""), "{err}");
        }
        assert!(Lab::cleanup_lab("bad-name").is_err());
    }

    #[test]
    fn long_workdirs_are_refused_before_building() {
        let spec = crate::spec::tests::two_router_spec();
        let long = PathBuf::from("/tmp").join("x".repeat(100));
        let err = check_socket_paths(&spec, &long)
            .expect_err("too long")
            .to_string();
        assert!(err.contains("Unix sockets allow 107"), "{err}");
        check_socket_paths(&spec, Path::new("/tmp/lab")).expect("short is fine");
    }

    #[test]
    fn tools_resolve_to_absolute_paths() {
        assert!(tool("sh").is_absolute());
        assert_eq!(tool("no-such-tool-xyz"), PathBuf::from("no-such-tool-xyz"));
    }
}
