//! The one flow → backend mapping every hashing dataplane programs.
//!
//! A service's Maglev table is built from [`ServiceSpec::schedulable`] (keys
//! `"ip:port"`, address order), exactly as the userspace proxy builds it, so
//! the kernel dataplanes, the proxy and every other node agree on which
//! backend owns each slot. Only the *slot* a flow falls into is
//! dataplane-specific: the proxy and XDP use [`flow_hash`] (SipHash-1-3,
//! reproduced in C), nftables uses the kernel's `jhash` (see
//! `nftables::nft_slot`), which it cannot replace.

use std::net::SocketAddr;

use crate::DataplaneError;
use crate::hash::{FlowKey, flow_hash};
use crate::maglev::{MaglevTable, TableSize};
use crate::sched::{SchedulerError, SchedulerKind};
use crate::state::{ServiceKey, ServiceSpec};

/// A service's Maglev table with the backend address of every index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTable {
    /// Backends that take new flows, indexed like the table entries.
    pub addrs: Vec<SocketAddr>,
    pub table: MaglevTable,
}

impl ServiceTable {
    /// Builds the table for a `maglev` service.
    pub fn build(service: ServiceKey, spec: &ServiceSpec, size: TableSize) -> Result<Self, DataplaneError> {
        let (addrs, weighted) = spec.schedulable();
        let table = MaglevTable::build(&weighted, size).map_err(|e| DataplaneError::Scheduler {
            service,
            source: SchedulerError::from(e),
        })?;
        Ok(ServiceTable { addrs, table })
    }

    /// Backend of the slot `slot`, `None` when no backend takes new flows.
    pub fn backend_at(&self, slot: usize) -> Option<SocketAddr> {
        let &i = self.table.entries().get(slot)?;
        self.addrs.get(i as usize).copied()
    }

    /// Backend the proxy and the XDP program pick for a new flow.
    pub fn lookup(&self, flow: &FlowKey) -> Option<SocketAddr> {
        self.table
            .lookup(flow_hash(flow))
            .and_then(|i| self.addrs.get(i).copied())
    }
}

/// Refuses schedulers a kernel dataplane cannot run: only Maglev keeps
/// flows on one backend across nodes without per-flow state, and that is the
/// only one the kernel programs implement.
pub fn require_maglev(
    backend: &'static str,
    service: ServiceKey,
    spec: &ServiceSpec,
) -> Result<(), DataplaneError> {
    if spec.scheduler == SchedulerKind::Maglev {
        Ok(())
    } else {
        Err(DataplaneError::Unsupported {
            backend,
            service,
            reason: format!("scheduler {} (only maglev is implemented here)", spec.scheduler),
        })
    }
}

/// Refuses backends of the other address family than the VIP (a kernel
/// dataplane cannot translate between families).
pub fn require_same_family(
    backend: &'static str,
    service: ServiceKey,
    spec: &ServiceSpec,
) -> Result<(), DataplaneError> {
    match spec
        .backends
        .keys()
        .find(|a| a.is_ipv4() != service.vip.is_ipv4())
    {
        None => Ok(()),
        Some(a) => Err(DataplaneError::Unsupported {
            backend,
            service,
            reason: format!("backend {a} is not of the VIP's address family"),
        }),
    }
}
