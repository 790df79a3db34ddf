//! The userspace dataplane with a tokio runtime of its own.
//!
//! `edge` runs the proxy on its main runtime. Tools without one (lab
//! helpers, benches, the conformance tests, and a node whose proxy should
//! not share threads with the control plane) use [`HostedUserspace`]. The
//! runtime's threads are started by the thread that calls
//! [`HostedUserspace::new`], so they inherit its network namespace (see
//! [`crate::netns`]).

use std::time::Duration;

use tokio::runtime::{Builder, Runtime};

use crate::userspace::{NAME, UserspaceConfig, UserspaceDataplane};
use crate::{Applied, Dataplane, DataplaneError, L4State};

pub struct HostedUserspace {
    // Dropped before the runtime (see Drop), so listeners close first.
    dp: Option<UserspaceDataplane>,
    rt: Option<Runtime>,
}

impl std::fmt::Debug for HostedUserspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedUserspace").field("dp", &self.dp).finish()
    }
}

impl HostedUserspace {
    pub fn new(config: UserspaceConfig, worker_threads: usize) -> Result<Self, DataplaneError> {
        let rt = Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("edge-l4-proxy")
            .enable_all()
            .build()
            .map_err(|e| DataplaneError::NoRuntime {
                backend: NAME,
                reason: e.to_string(),
            })?;
        let dp = UserspaceDataplane::new(rt.handle().clone(), config);
        Ok(HostedUserspace {
            dp: Some(dp),
            rt: Some(rt),
        })
    }

    /// The proxy itself (stats, flows per backend).
    pub fn dataplane(&self) -> Option<&UserspaceDataplane> {
        self.dp.as_ref()
    }

    pub fn dataplane_mut(&mut self) -> Option<&mut UserspaceDataplane> {
        self.dp.as_mut()
    }

    fn gone() -> DataplaneError {
        DataplaneError::Unavailable {
            backend: NAME,
            reason: "shut down".into(),
        }
    }
}

impl Dataplane for HostedUserspace {
    fn name(&self) -> &'static str {
        NAME
    }

    fn apply(&mut self, desired: &L4State) -> Result<Applied, DataplaneError> {
        self.dp.as_mut().ok_or_else(Self::gone)?.apply(desired)
    }

    fn observe(&self) -> Result<L4State, DataplaneError> {
        self.dp.as_ref().ok_or_else(Self::gone)?.observe()
    }
}

impl Drop for HostedUserspace {
    fn drop(&mut self) {
        self.dp.take();
        if let Some(rt) = self.rt.take() {
            // Flows still running are cut; don't hang on them.
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}
