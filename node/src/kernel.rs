//! Kernel integration: VIP addresses on `lo` (rtnetlink).
//!
//! While the node serves a VIP, its prefixes sit on `lo` so the kernel
//! accepts traffic for them (a whole prefix on `lo` makes every address in
//! it local). This kernel has no `dummy` links, hence `lo`. The node only
//! ever removes addresses it added itself: an address that was already
//! local when the node wanted it (configured by the operator, or the
//! loopback demo's 127.0.0.1) is left alone, now and at shutdown.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::Handle;

pub struct LoopbackVips {
    handle: Handle,
    lo: u32,
    /// Prefixes this process added to `lo`.
    ours: BTreeSet<IpNet>,
    /// Whether a permission error was already logged (non-root demo).
    warned: bool,
}

/// Whether `ip` is already a local address (something can bind it).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

impl LoopbackVips {
    pub async fn new() -> Result<LoopbackVips> {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(conn);
        let lo = handle
            .link()
            .get()
            .match_name("lo".to_string())
            .execute()
            .try_next()
            .await
            .context("looking up lo")?
            .map(|l| l.header.index)
            .context("no lo interface")?;
        Ok(LoopbackVips {
            handle,
            lo,
            ours: BTreeSet::new(),
            warned: false,
        })
    }

    /// Takes over prefixes a previous process of this node added (an
    /// upgrade): they are ours to remove when no longer desired.
    pub fn adopt(&mut self, prefixes: impl IntoIterator<Item = IpNet>) {
        self.ours.extend(prefixes);
    }

    /// The prefixes this process added (or adopted).
    pub fn owned(&self) -> &BTreeSet<IpNet> {
        &self.ours
    }

    /// Makes `lo` hold exactly our share of `desired`: adds what is missing
    /// (unless already local), removes what we added and is no longer
    /// desired. Errors are logged per address; one bad address does not
    /// stop the others. Returns false when an address could not be added
    /// or removed for another reason than a lack of permission (a node
    /// without CAP_NET_ADMIN serves only VIPs that are already local, and
    /// retrying would not change that).
    pub async fn reconcile(&mut self, desired: &BTreeSet<IpNet>) -> bool {
        let mut ok = true;
        for p in desired {
            if self.ours.contains(p) || is_local(p.addr()) {
                continue;
            }
            match self
                .handle
                .address()
                .add(self.lo, p.addr(), p.prefix_len())
                .execute()
                .await
            {
                Ok(()) => {
                    tracing::info!(vip = %p, "VIP added to lo");
                    self.ours.insert(*p);
                }
                Err(e) => {
                    let msg = e.to_string();
                    if msg.contains("EPERM") || msg.contains("Operation not permitted") {
                        if !self.warned {
                            tracing::warn!(vip = %p, "cannot add VIPs to lo without CAP_NET_ADMIN; serving only VIPs that are already local");
                            self.warned = true;
                        }
                    } else {
                        tracing::error!(vip = %p, error = %msg, "adding VIP to lo failed");
                        ok = false;
                    }
                }
            }
        }
        let stale: Vec<IpNet> = self
            .ours
            .iter()
            .filter(|p| !desired.contains(p))
            .copied()
            .collect();
        for p in stale {
            if let Err(e) = self.remove(p).await {
                tracing::error!(vip = %p, error = %format!("{e:#}"), "removing VIP from lo failed");
                ok = false;
            } else {
                tracing::info!(vip = %p, "VIP removed from lo");
                self.ours.remove(&p);
            }
        }
        ok
    }

    async fn remove(&self, p: IpNet) -> Result<()> {
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.lo)
            .set_address_filter(p.addr())
            .set_prefix_length_filter(p.prefix_len())
            .execute();
        while let Some(msg) = addrs.try_next().await.context("listing lo addresses")? {
            self.handle
                .address()
                .del(msg)
                .execute()
                .await
                .context("deleting the address")?;
        }
        Ok(())
    }
}
