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
    // Inherit stdio so interactive tools (ping, curl, dig) behave as usual.
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(cmd)
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
