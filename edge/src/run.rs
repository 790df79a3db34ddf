//! The node runtime: `edge run`.
//!
//! ```text
//!   signals ──► shutdown (watch) ──┬──► admin API (status, metrics)
//!                                  └──► tiers (BGP, L4, L7, DNS) as they land
//! ```
//! Start-up binds the admin socket first so a port clash fails fast; shutdown
//! waits for every task to finish.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use edge_topology::Deployment;
use tokio::sync::watch;

use crate::admin::{self, NodeState};
use crate::cli::RunArgs;

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let dep = crate::cli::load_config(args.config.as_ref())?;
    let node = pick_node(&dep, args.node.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(serve(Arc::new(dep), node, args))?;
    Ok(ExitCode::SUCCESS)
}

/// The node this process runs: `--node`, or the only node of the topology.
fn pick_node(dep: &Deployment, wanted: Option<&str>) -> Result<String> {
    match wanted {
        Some(n) if dep.node(n).is_some() => Ok(n.to_string()),
        Some(n) => {
            let known: Vec<&str> = dep.nodes().map(|n| n.name.as_str()).collect();
            bail!(
                "no node {n:?} in topology {} (nodes: {})",
                dep.name,
                known.join(", ")
            )
        }
        None => {
            let mut nodes = dep.nodes();
            match (nodes.next(), nodes.next()) {
                (Some(only), None) => Ok(only.name.clone()),
                (None, _) => bail!("topology {} has no nodes", dep.name),
                (Some(_), Some(_)) => {
                    let known: Vec<&str> = dep.nodes().map(|n| n.name.as_str()).collect();
                    bail!(
                        "--node is required: topology {} has nodes {}",
                        dep.name,
                        known.join(", ")
                    )
                }
            }
        }
    }
}

async fn serve(dep: Arc<Deployment>, node: String, args: RunArgs) -> Result<()> {
    let (site, n) = dep.node(&node).context("node vanished from the topology")?;
    let admin_addr = args.admin.unwrap_or(n.admin);
    let state = Arc::new(NodeState::new(
        dep.clone(),
        node.clone(),
        site.name.clone(),
        Instant::now(),
    ));
    let listener = tokio::net::TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("binding the admin API on {admin_addr}"))?;
    let bound = listener.local_addr().context("admin socket address")?;
    tracing::info!(node = %node, site = %site.name, admin = %bound, "edge node started");

    let (stop_tx, stop_rx) = watch::channel(false);
    let admin_task = tokio::spawn(admin::serve(listener, state, stop_rx));

    wait_for_signal().await?;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    match admin_task.await {
        Ok(r) => r?,
        Err(e) => bail!("admin task failed: {e}"),
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    Ok(())
}
