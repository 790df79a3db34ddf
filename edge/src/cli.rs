//! Command-line surface of `edge`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use edge_topology::TopologyError;
use edge_topology::health::IntentOp;

/// This program's version: the package version, or `EDGE_VERSION` when
/// the binary was built with it set (a build that must be told apart from
/// another of the same tree, e.g. to test `edge upgrade`).
pub const VERSION: &str = match option_env!("EDGE_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

#[derive(Debug, Parser)]
#[command(name = "edge", version = VERSION, about = "Router-integrated anycast edge node")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// More logs (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an edge node.
    Run(RunArgs),
    /// Check a topology file; prints `ok` and a summary, or every error.
    Validate {
        /// The topology file.
        file: PathBuf,
    },
    /// Build and drive network-namespace labs with real routers.
    #[command(subcommand)]
    Lab(crate::lab::LabCommand),
    /// Show a running node's status (VIP verdicts, backends, bus members).
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running node's DNS server why it answers what it answers.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// BGP sessions and routes of a running node.
    #[command(subcommand)]
    Bgp(BgpCommand),
    /// Reload a running node's topology file (same as SIGHUP) and print
    /// what changed per tier; an invalid file is refused and the running
    /// configuration stays.
    Reload {
        /// Only print what would change; apply nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Replace a running node's process with a new one (a new binary) without
    /// refusing a connection or flapping a route: the new process takes
    /// over every listening socket, the VIP addresses and the BGP sessions
    /// (graceful restart); the old one finishes its connections and exits.
    Upgrade {
        /// The binary to run (default: the one the node was started from).
        #[arg(long)]
        binary: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Drain a site, node or backend everywhere (planned: GSHUT first).
    Drain {
        target: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Undo a drain.
    Undrain {
        target: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set a backend's weight everywhere.
    Weight {
        backend: String,
        weight: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// The GSLB decision trace for a query, against the live health view:
    /// candidates, what each filter removed and why, the answer.
    Explain {
        /// The query name (e.g. www.edge.example.).
        name: String,
        /// Query type.
        #[arg(long = "type", default_value = "A")]
        qtype: String,
        /// The resolver's address the query comes from.
        #[arg(long)]
        client: std::net::IpAddr,
        /// An EDNS Client Subnet the resolver sends (e.g. 198.18.2.0/24).
        #[arg(long)]
        ecs: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BgpCommand {
    /// Every session: state, uptime, prefixes, UPDATE counts, flaps.
    Sessions {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        json: bool,
    },
    /// Routes advertised to (default) or received from the peers.
    Routes {
        /// Only this peer's routes.
        #[arg(long)]
        peer: Option<String>,
        /// Adj-RIB-Out (what we send); the default.
        #[arg(long, conflicts_with = "received")]
        advertised: bool,
        /// Adj-RIB-In (what the peers send us).
        #[arg(long)]
        received: bool,
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// The node's admin API.
    #[arg(long, default_value = "127.0.0.1:9180")]
    pub admin: SocketAddr,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Topology file; without it, the embedded single-node loopback demo.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Which node of the topology this process is (optional when the
    /// topology has a single node).
    #[arg(long, short)]
    pub node: Option<String>,
    /// Override the node's admin API address.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Override the address the health bus listens on.
    #[arg(long)]
    pub gossip: Option<SocketAddr>,
    /// Do not put served VIPs on `lo` (when something else owns the
    /// addresses, or several nodes share one network namespace).
    #[arg(long)]
    pub no_vip_on_lo: bool,
    /// Control plane only (health, bus, BGP): bind no L4, L7 or DNS
    /// listeners, for several nodes sharing one network namespace.
    #[arg(long)]
    pub no_listeners: bool,
    /// Worker threads of the runtime (default: the CPUs this process may
    /// run on, like HAProxy's nbthread; at least 1).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Installs the log subscriber. Lines are written to stderr by a separate
/// thread through a bounded queue (tracing-appender's non-blocking writer,
/// lossy: under overload lines are dropped, never the proxy blocked on a
/// slow log consumer). Keep the returned guard alive: dropping it flushes.
pub fn init_tracing(format: LogFormat, verbose: u8) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    // hickory logs every request at info; keep it to warnings.
    let default = match verbose {
        0 => "info,hickory_server=warn,hickory_proto=warn",
        1 => "debug,hickory_server=info,hickory_proto=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour codes only for a terminal: logs sent to a file or a collector
    // stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    // A second initialisation (tests calling into the binary's modules) is
    // harmless, so its error is ignored.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    guard
}

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            edge_node::run(args.into())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file } => validate(&file),
        Command::Lab(cmd) => crate::lab::run(cmd),
        Command::Status { admin, json } => crate::client::status(admin.admin, json),
        Command::Reload { admin, dry_run } => crate::client::reload(admin.admin, dry_run),
        Command::Upgrade { binary, admin } => crate::client::upgrade(admin.admin, binary.as_deref()),
        Command::Dns(DnsCommand::Explain {
            name,
            qtype,
            client,
            ecs,
            admin,
        }) => {
            let mut q = format!("name={name}&type={qtype}&client={client}");
            if let Some(e) = ecs {
                q.push_str(&format!("&ecs={e}"));
            }
            crate::client::dns_explain(admin.admin, &q)
        }
        Command::Bgp(BgpCommand::Sessions { admin, json }) => crate::client::bgp_sessions(admin.admin, json),
        Command::Bgp(BgpCommand::Routes {
            peer,
            received,
            admin,
            json,
            ..
        }) => crate::client::bgp_routes(admin.admin, peer.as_deref(), received, json),
        Command::Drain { target, admin } => crate::client::intent(admin.admin, &IntentOp::Drain { target }),
        Command::Undrain { target, admin } => {
            crate::client::intent(admin.admin, &IntentOp::Undrain { target })
        }
        Command::Weight {
            backend,
            weight,
            admin,
        } => crate::client::intent(admin.admin, &IntentOp::Weight { backend, weight }),
    }
}

fn validate(file: &PathBuf) -> Result<ExitCode> {
    match edge_topology::load(file) {
        Ok(d) => {
            // The L7 settings are in the L7 tier's syntax: check them as each
            // node would build its proxy.
            let base = file.parent().unwrap_or(std::path::Path::new("."));
            let l7_errors = edge_node::validate_l7(&d, base);
            if !l7_errors.is_empty() {
                println!("{}: invalid", file.display());
                for e in l7_errors {
                    println!("  {e}");
                }
                return Ok(ExitCode::FAILURE);
            }
            println!("ok");
            print!("{}", d.summary());
            Ok(ExitCode::SUCCESS)
        }
        Err(TopologyError::Io { path, source }) => Err(anyhow::anyhow!("cannot read {path}: {source}")),
        Err(e) => {
            println!("{}: invalid", file.display());
            println!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

impl From<RunArgs> for edge_node::NodeOptions {
    fn from(a: RunArgs) -> Self {
        edge_node::NodeOptions {
            config: a.config,
            node: a.node,
            admin: a.admin,
            gossip: a.gossip,
            no_vip_on_lo: a.no_vip_on_lo,
            no_listeners: a.no_listeners,
            workers: a.workers.unwrap_or(0),
            version: VERSION.to_string(),
            // Resolved now: a package upgrade may replace the file later,
            // and `edge upgrade` then starts what is at this path.
            exe: std::env::current_exe().ok(),
            args: std::env::args_os().skip(1).collect(),
        }
    }
}
