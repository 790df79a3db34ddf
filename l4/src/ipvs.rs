//! IPVS dataplane: extension point, **not available on this kernel**.
//!
//! An IPVS backend would program the kernel's virtual servers over generic
//! netlink (`IPVS_CMD_NEW_SERVICE` / `IPVS_CMD_NEW_DEST`) from the same
//! [`crate::diff`] steps the userspace proxy consumes, with `mh` (IPVS's own
//! Maglev) as the scheduler. The kernels edge is developed and tested on
//! are built without `ip_vs` (no `/proc/net/ip_vs`, no module), so there is
//! nothing to test it against, and no fake backend is provided in its place:
//! asking for it returns [`DataplaneError::Unavailable`].
//!
//! To add it: implement [`crate::Dataplane`] in this module behind an `ipvs`
//! feature, reconcile with `diff(observe()?, desired)`, and run its tests in
//! a privileged job on a kernel with `CONFIG_IP_VS` and `CONFIG_IP_VS_MH`.

use crate::DataplaneError;

/// Where the kernel exposes IPVS when it has it.
pub const PROC_IP_VS: &str = "/proc/net/ip_vs";

/// The error returned for `DataplaneKind::Ipvs`, saying whether the kernel
/// has IPVS at all (so an operator knows what is missing).
pub fn unavailable() -> DataplaneError {
    let reason = if std::path::Path::new(PROC_IP_VS).exists() {
        "the kernel has ip_vs, but edge has no IPVS backend yet (extension point in edge_l4::ipvs)"
    } else {
        "not available on this kernel (no /proc/net/ip_vs); use the userspace dataplane"
    };
    DataplaneError::Unavailable {
        backend: "ipvs",
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipvs_is_refused_with_a_reason() {
        let e = crate::backend(crate::DataplaneKind::Ipvs).err();
        match e {
            Some(DataplaneError::Unavailable {
                backend: "ipvs",
                reason,
            }) => {
                assert!(reason.contains("ip_vs"), "{reason}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}
