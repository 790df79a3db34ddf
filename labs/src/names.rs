//! Kernel-visible names and the rules they follow.
//!
//! Every namespace a lab creates is called `edge-<lab>-<ns>`. The lab name
//! may not contain `-`, so `edge-<lab>-` is an exact prefix for one lab:
//! cleaning lab `two` can never touch lab `twopop` or `two2`'s namespaces,
//! which matters because several engineers' tests run labs side by side on
//! one machine.

use crate::error::{LabError, Result};

/// Prefix of every namespace created by this crate. `cleanup_prefix`
/// refuses prefixes that do not start with it, so a typo cannot delete
/// namespaces that belong to something else on the machine.
pub const NS_PREFIX: &str = "edge-";

/// Longest lab name. Keeps kernel namespace names and workdir paths short.
pub const MAX_LAB_NAME: usize = 16;

/// Longest local namespace name (the `<ns>` in `edge-<lab>-<ns>`).
pub const MAX_NS_NAME: usize = 24;

/// Linux `IFNAMSIZ` is 16 including the terminating NUL.
pub const MAX_IFNAME: usize = 15;

/// Unix socket paths (`sun_path`) hold 108 bytes including the NUL; FRR and
/// BIRD control sockets live under the workdir, so long workdirs fail there.
pub const MAX_SOCKET_PATH: usize = 107;

/// The kernel name of namespace `ns` in lab `lab`: `edge-<lab>-<ns>`.
pub fn kernel_ns(lab: &str, ns: &str) -> String {
    format!("{NS_PREFIX}{lab}-{ns}")
}

/// The prefix shared by all namespaces of one lab: `edge-<lab>-`.
pub fn lab_prefix(lab: &str) -> String {
    format!("{NS_PREFIX}{lab}-")
}

/// Lab names: 1..=16 of `[a-z0-9]`. No `-` (see the module comment).
pub fn validate_lab_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LAB_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(LabError::Invalid(format!(
            "lab name {name:?} must be 1..={MAX_LAB_NAME} characters of [a-z0-9]; \
             '-' is not allowed because it separates lab and namespace in kernel names \
             ({NS_PREFIX}<lab>-<ns>)"
        )))
    }
}

/// Local names of namespaces, routers and processes: 1..=24 of
/// `[a-z0-9_-]`, starting with a letter or digit. They end up in kernel
/// names, file names and BIRD/FRR config, so nothing needs quoting.
pub fn validate_local_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NS_NAME
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LabError::Invalid(format!(
            "{kind} name {name:?} must be 1..={MAX_NS_NAME} characters of [a-z0-9_-] \
             starting with a letter or digit"
        )))
    }
}

/// Interface names: at most 15 bytes (IFNAMSIZ - 1), no `/`, `:`, space or
/// `%`, not `.`/`..`, not `lo`. The kernel would truncate or reject these;
/// we reject them up front with the offending name in the message.
pub fn validate_ifname(ns: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(LabError::Invalid(format!(
            "empty interface name in namespace {ns:?}"
        )));
    }
    if name.len() > MAX_IFNAME {
        return Err(LabError::Invalid(format!(
            "interface name {name:?} in namespace {ns:?} is {} bytes; Linux allows at most \
             {MAX_IFNAME} (IFNAMSIZ-1) and this harness never truncates",
            name.len()
        )));
    }
    if name == "." || name == ".." || name == "lo" {
        return Err(LabError::Invalid(format!(
            "interface name {name:?} in namespace {ns:?} is reserved"
        )));
    }
    let bad = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    if let Some(c) = bad {
        return Err(LabError::Invalid(format!(
            "interface name {name:?} in namespace {ns:?} contains {c:?}; use [A-Za-z0-9_.-]"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names() {
        assert_eq!(kernel_ns("smoke", "r1"), "edge-smoke-r1");
        assert_eq!(lab_prefix("smoke"), "edge-smoke-");
    }

    #[test]
    fn lab_names() {
        assert!(validate_lab_name("smoke1234").is_ok());
        assert!(validate_lab_name("").is_err());
        // '-' would make `edge-two-` a prefix of lab `two-pop`'s namespaces.
        let err = validate_lab_name("two-pop").unwrap_err().to_string();
        assert!(err.contains("'-' is not allowed"), "{err}");
        assert!(validate_lab_name("Smoke").is_err());
        assert!(validate_lab_name("abcdefghijklmnopq").is_err()); // 17
        assert!(validate_lab_name("abcdefghijklmnop").is_ok()); // 16
    }

    #[test]
    fn local_names() {
        assert!(validate_local_name("namespace", "edge1").is_ok());
        assert!(validate_local_name("namespace", "pop-a_1").is_ok());
        assert!(validate_local_name("namespace", "-x").is_err());
        assert!(validate_local_name("namespace", "a/b").is_err());
        assert!(validate_local_name("namespace", "a b").is_err());
        assert!(validate_local_name("namespace", &"x".repeat(25)).is_err());
    }

    #[test]
    fn ifnames() {
        assert!(validate_ifname("r", "r1-r2").is_ok());
        assert!(validate_ifname("r", &"a".repeat(15)).is_ok());
        let err = validate_ifname("r", &"a".repeat(16)).unwrap_err().to_string();
        assert!(
            err.contains("16 bytes") && err.contains("never truncates"),
            "{err}"
        );
        assert!(validate_ifname("r", "lo").is_err());
        assert!(validate_ifname("r", "a/b").is_err());
        assert!(validate_ifname("r", "a:b").is_err());
        assert!(validate_ifname("r", "").is_err());
    }
}
