//! `edge lab`: the command-line front end of the lab harness (`edge-labs`).
//!
//! A lab is built from a topology file (default: the embedded two-PoP lab),
//! lives in network namespaces named `edge-<lab>-<host>`, and is remembered
//! in `<workdir>/state.json` so that later `edge lab …` commands (other
//! processes) can inspect and tear it down.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use edge_labs::{Lab, plan};
use edge_topology::Deployment;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab (default: the embedded two-PoP lab,
    /// labs/two-pop/deployment.toml): namespaces, links, routers, backend
    /// servers and one `edge run` per node.
    Up {
        #[command(flatten)]
        lab: LabArgs,
        /// Only namespaces, links and routers: no backends, no edge nodes.
        #[arg(long)]
        routers_only: bool,
    },
    /// Tear the lab down: stop its processes, delete its namespaces.
    Down(LabArgs),
    /// Which namespaces and processes of the lab are alive.
    Status {
        #[command(flatten)]
        lab: LabArgs,
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside one host's namespace: `edge lab exec ams-c1 -- ping 203.0.113.10`.
    Exec {
        host: String,
        #[command(flatten)]
        lab: LabArgs,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// A router's BGP table (vtysh/birdc/gobgp) and its kernel routes.
    Routes {
        router: String,
        /// Only this prefix (e.g. 203.0.113.10/32).
        prefix: Option<String>,
        #[command(flatten)]
        lab: LabArgs,
    },
    /// `dig` from a client at the lab's DNS VIP: `edge lab dig ams-c1 www.edge.example -- +subnet=198.18.2.0/24`.
    Dig {
        client: String,
        name: String,
        #[command(flatten)]
        lab: LabArgs,
        /// Extra dig arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// `curl` from a client: `edge lab curl ams-c1 http://203.0.113.10/`.
    Curl {
        client: String,
        url: String,
        #[command(flatten)]
        lab: LabArgs,
        /// Extra curl arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Break something: a BACKEND fails its health checks, a NODE freezes
    /// (as a hang or partition would: its routers drop it when the hold
    /// timer expires), a ROUTER loses all its links.
    Fail {
        target: String,
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Undo `edge lab fail`.
    Heal {
        target: String,
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Write a containerlab topology equivalent to the lab (routers,
    /// nodes, backends, clients, links and startup configs) for users who
    /// run containerlab: `edge lab clab labs/two-pop/deployment.toml`.
    Clab {
        /// The topology file.
        file: PathBuf,
        /// Output directory (default: `clab/` next to FILE).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the lab plan derived from the topology (JSON), without building.
    Plan(LabArgs),
    /// Run the lab's backend server (the lab starts one per backend): it
    /// answers with its name; `POST /fail` and `/heal` flip its health.
    Backend {
        #[arg(long)]
        name: String,
        /// HTTP listener ("off" to disable).
        #[arg(long, default_value = "0.0.0.0:8080")]
        http: String,
        /// TCP line-echo listener ("off" to disable).
        #[arg(long, default_value = "0.0.0.0:9000")]
        tcp: String,
        /// UDP echo socket ("off" to disable).
        #[arg(long, default_value = "0.0.0.0:9000")]
        udp: String,
        /// Start with a failing health endpoint.
        #[arg(long)]
        unhealthy: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct LabArgs {
    /// Topology file; default: the embedded two-PoP lab.
    #[arg(long, short)]
    pub file: Option<PathBuf>,
    /// Where configs, logs and state.json live; default /run/edge-lab/<lab>.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
}

impl LabArgs {
    fn deployment(&self) -> Result<Deployment> {
        match &self.file {
            Some(f) => edge_topology::load(f).with_context(|| format!("loading {}", f.display())),
            None => edge_topology::parse(edge_topology::TWO_POP).context("the embedded two-PoP topology"),
        }
    }

    fn workdir(&self, dep: &Deployment) -> PathBuf {
        self.workdir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/run/edge-lab").join(plan::lab_name(dep)))
    }
}

pub fn run(cmd: LabCommand) -> Result<ExitCode> {
    match cmd {
        LabCommand::Up { lab, routers_only } => up(&lab, routers_only),
        LabCommand::Down(args) => down(&args),
        LabCommand::Status { lab, json } => status(&lab, json),
        LabCommand::Exec { host, lab, cmd } => exec(&lab, &host, &cmd),
        LabCommand::Routes { router, prefix, lab } => routes(&lab, &router, prefix.as_deref()),
        LabCommand::Backend {
            name,
            http,
            tcp,
            udp,
            unhealthy,
        } => {
            let addr = |s: &str| -> Result<Option<std::net::SocketAddr>> {
                if s == "off" {
                    Ok(None)
                } else {
                    Ok(Some(s.parse().with_context(|| format!("{s:?} is not ip:port"))?))
                }
            };
            let args = edge_labs::backend::BackendArgs {
                name,
                http: addr(&http)?,
                tcp: addr(&tcp)?,
                udp: addr(&udp)?,
                unhealthy,
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(edge_labs::backend::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Dig {
            client,
            name,
            lab,
            args,
        } => {
            let dep = lab.deployment()?;
            let vip = dep
                .dns
                .as_ref()
                .and_then(|d| d.vip.as_ref())
                .and_then(|v| dep.vips.get(v))
                .and_then(|v| v.prefixes.first())
                .context("the topology has no DNS VIP")?;
            let port = dep.dns.as_ref().map(|d| d.port).unwrap_or(53).to_string();
            let mut cmd = vec![
                "dig".to_string(),
                format!("@{}", vip.addr()),
                "-p".into(),
                port,
                name,
            ];
            cmd.extend(args);
            exec(&lab, &client, &cmd)
        }
        LabCommand::Curl {
            client,
            url,
            lab,
            args,
        } => {
            let mut cmd = vec!["curl".to_string(), "-sS".into(), "-m".into(), "5".into()];
            cmd.extend(args);
            cmd.push(url);
            exec(&lab, &client, &cmd)
        }
        LabCommand::Clab { file, out } => {
            let out = out.unwrap_or_else(|| edge_labs::clab::default_out_dir(&file));
            let written = edge_labs::clab::generate_file(&file, &out)
                .with_context(|| format!("generating the containerlab files from {}", file.display()))?;
            for w in &written {
                println!("wrote {}", w.display());
            }
            if let Some(first) = written.first() {
                println!(
                    "\nthen: docker build -t edge:latest -f labs/docker/Dockerfile . && containerlab deploy -t {}",
                    first.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Fail { target, lab } => fail_heal(&lab, &target, true),
        LabCommand::Heal { target, lab } => fail_heal(&lab, &target, false),
        LabCommand::Plan(args) => {
            let spec = plan::plan(&args.deployment()?)?;
            println!("{}", serde_json::to_string_pretty(&spec)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn require_root() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid0 = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !euid0 {
        bail!("edge lab needs root (network namespaces, veth links, routing daemons)");
    }
    Ok(())
}

/// The GeoIP test database of the two-PoP lab, embedded so that `edge lab
/// up` works from the binary alone.
const LAB_MMDB: &[u8] = include_bytes!("../../labs/geoip/lab.mmdb");

fn up(args: &LabArgs, routers_only: bool) -> Result<ExitCode> {
    require_root()?;
    let dep = args.deployment()?;
    let mut spec = plan::plan(&dep)?;
    let workdir = args.workdir(&dep);
    if edge_labs::LabState::path(&workdir).exists() {
        bail!(
            "a lab is already recorded in {} — run `edge lab down` first",
            workdir.display()
        );
    }
    if !routers_only {
        let config = match &args.file {
            // The nodes read the operator's file where it is, so its
            // relative paths (GeoIP) resolve as they do for `edge run`.
            Some(f) => std::fs::canonicalize(f).with_context(|| format!("resolving {}", f.display()))?,
            // The embedded lab is written out laid out like the repository
            // (topology next to geoip/), for its `../geoip/lab.mmdb`.
            None => {
                let config = workdir.join("two-pop").join("deployment.toml");
                std::fs::create_dir_all(workdir.join("two-pop")).context("creating the lab workdir")?;
                std::fs::create_dir_all(workdir.join("geoip")).context("creating the lab workdir")?;
                std::fs::write(&config, edge_topology::TWO_POP).context("writing the lab topology")?;
                std::fs::write(workdir.join("geoip").join("lab.mmdb"), LAB_MMDB)
                    .context("writing the GeoIP db")?;
                config
            }
        };
        let edge_bin = std::env::current_exe().context("locating the edge binary")?;
        plan::add_programs(&mut spec, &dep, &plan::Programs { edge_bin, config });
    }
    let t0 = std::time::Instant::now();
    let lab = Lab::up(&spec, &workdir).context("building the lab")?;
    let workdir = lab.detach();
    println!(
        "lab {} is up in {:.1}s: {} namespaces, {} routers, {} processes (workdir {})",
        spec.name,
        t0.elapsed().as_secs_f64(),
        spec.namespaces.len(),
        spec.routers.len(),
        spec.processes.len(),
        workdir.display()
    );
    print_next_steps(&dep);
    Ok(ExitCode::SUCCESS)
}

fn print_next_steps(dep: &Deployment) {
    println!("\nTry next:");
    for r in dep.routers() {
        println!(
            "  edge lab routes {}            # {} BGP table and kernel routes",
            r.name, r.kind
        );
    }
    if let Some(c) = dep.clients().next()
        && let Some(vip) = dep.vips.values().flat_map(|v| v.prefixes.iter()).next()
    {
        println!("  edge lab exec {} -- ping -c1 {}", c.name, vip.addr());
    }
    if let (Some(c), Some(g)) = (
        dep.clients().next(),
        dep.dns.as_ref().and_then(|d| d.gslb.first()),
    ) {
        println!(
            "  edge lab dig {} {}          # GSLB answer for {}'s region",
            c.name, g.name, c.name
        );
        println!("  edge lab dig {} {} -- +subnet=198.18.2.0/24", c.name, g.name);
    }
    if let Some(b) = dep.pools.values().flat_map(|p| p.backends.iter()).next() {
        println!(
            "  edge lab fail {}                # its health check fails; heal with edge lab heal",
            b.name
        );
    }
    println!("  edge lab status                 # namespaces and processes");
    println!("  edge lab down                   # remove everything");
}

fn down(args: &LabArgs) -> Result<ExitCode> {
    require_root()?;
    let dep = args.deployment()?;
    let workdir = args.workdir(&dep);
    let mut stopped = 0;
    let mut deleted = 0;
    if edge_labs::LabState::path(&workdir).exists() {
        let t = Lab::down(&workdir).context("tearing down the recorded lab")?;
        for w in &t.warnings {
            eprintln!("warning: {w}");
        }
        stopped += t.stopped_pids.len();
        deleted += t.deleted_namespaces.len();
    }
    // Leftovers whose state was lost (a crashed `up`, a deleted workdir).
    let t = Lab::cleanup_lab(&plan::lab_name(&dep)).context("removing leftover namespaces")?;
    stopped += t.stopped_pids.len();
    deleted += t.deleted_namespaces.len();
    println!(
        "lab {} is down: stopped {stopped} processes, deleted {deleted} namespaces",
        plan::lab_name(&dep)
    );
    Ok(ExitCode::SUCCESS)
}

fn status(args: &LabArgs, json: bool) -> Result<ExitCode> {
    let dep = args.deployment()?;
    let workdir = args.workdir(&dep);
    if !edge_labs::LabState::path(&workdir).exists() {
        println!(
            "lab {} is not up (no {})",
            plan::lab_name(&dep),
            workdir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let st = Lab::status(&workdir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        println!("lab {} ({})", st.lab, st.workdir.display());
        for n in &st.namespaces {
            println!(
                "  netns {:<24} {}",
                n.kernel_name,
                if n.exists { "up" } else { "MISSING" }
            );
        }
        for p in &st.processes {
            println!(
                "  proc  {:<24} pid {:<7} {}",
                format!("{}@{}", p.name, p.namespace),
                p.pid,
                if p.alive { "running" } else { "DEAD" }
            );
        }
    }
    Ok(if st.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn attach(args: &LabArgs) -> Result<Lab> {
    let dep = args.deployment()?;
    let workdir = args.workdir(&dep);
    attach_at(&workdir)
}

fn attach_at(workdir: &Path) -> Result<Lab> {
    Lab::attach(workdir).with_context(|| format!("no lab recorded in {} (is it up?)", workdir.display()))
}

fn exec(args: &LabArgs, host: &str, cmd: &[String]) -> Result<ExitCode> {
    require_root()?;
    let lab = attach(args)?;
    let ns = lab.kernel_ns(host)?;
    // `edge lab exec NODE -- edge status` means this very binary, which
    // need not be on PATH.
    let mut cmd = cmd.to_vec();
    if cmd.first().map(String::as_str) == Some("edge")
        && let Ok(me) = std::env::current_exe()
    {
        cmd[0] = me.display().to_string();
    }
    // Inherit stdio so interactive tools (ping, curl, dig) behave as usual.
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(&cmd)
        .status()
        .context("running ip netns exec")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

fn routes(args: &LabArgs, router: &str, prefix: Option<&str>) -> Result<ExitCode> {
    require_root()?;
    let lab = attach(args)?;
    let prefix = prefix
        .map(|p| {
            p.parse::<edge_labs::IpNet>()
                .with_context(|| format!("{p:?} is not a prefix"))
        })
        .transpose()?;
    let r = lab.router_routes(router, prefix)?;
    println!("== {router}: BGP\n{}", r.bgp.trim_end());
    if !r.kernel_v4.is_empty() {
        println!("== {router}: kernel IPv4\n{}", r.kernel_v4.trim_end());
    }
    if !r.kernel_v6.is_empty() {
        println!("== {router}: kernel IPv6\n{}", r.kernel_v6.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

/// `edge lab fail|heal TARGET`.
fn fail_heal(args: &LabArgs, target: &str, fail: bool) -> Result<ExitCode> {
    require_root()?;
    let dep = args.deployment()?;
    let lab = attach(args)?;
    let backend = dep
        .pools
        .values()
        .flat_map(|p| p.backends.iter())
        .find(|b| b.name == target);
    if let Some(b) = backend {
        // The backend's own switch: its health endpoint fails or recovers.
        let url = format!(
            "http://{}/{}",
            b.socket_addr(),
            if fail { "fail" } else { "heal" }
        );
        let out = lab.exec(&b.name, &["curl", "-sS", "-m", "2", "-X", "POST", &url])?;
        if !out.status.success() {
            bail!("{url}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
        return Ok(ExitCode::SUCCESS);
    }
    if dep.node(target).is_some() {
        let pid = lab
            .pid(&format!("{target}-edge"))
            .with_context(|| format!("no edge process recorded for node {target}"))?;
        let sig = if fail { "-STOP" } else { "-CONT" };
        let st = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?;
        if !st.success() {
            bail!("kill {sig} {pid} failed");
        }
        println!(
            "node {target} {}",
            if fail {
                "is frozen: its sessions drop when the routers' hold timer expires"
            } else {
                "runs again"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    if dep.router(target).is_some() {
        let spec = lab.spec().clone();
        let ifaces: Vec<&str> = spec
            .links
            .iter()
            .flat_map(|l| [&l.a, &l.b])
            .filter(|e| e.namespace == target)
            .map(|e| e.ifname.as_str())
            .collect();
        let ns = lab.kernel_ns(target)?;
        for i in &ifaces {
            edge_labs::cmd::ip_n(&ns, &["link", "set", i, if fail { "down" } else { "up" }])?;
        }
        if !fail {
            // A link that went down took the static routes through it with
            // it (LAB-FACTS); put every static route of the lab back.
            for r in &spec.routes {
                let kns = lab.kernel_ns(&r.namespace)?;
                let dst = r.destination.to_string();
                let gw = r.gateway.to_string();
                edge_labs::cmd::ip_n(&kns, &["route", "replace", &dst, "via", &gw])?;
            }
        }
        println!(
            "router {target}: {} links {}",
            ifaces.len(),
            if fail {
                "down"
            } else {
                "up, static routes restored"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    bail!("no backend, node or router named {target:?}")
}
