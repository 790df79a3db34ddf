//! Live reconfiguration: what differs between two [`ProxyConfig`]s.
//!
//! [`diff`] is pure (no I/O): a node can print it for a `--dry-run` without
//! a running proxy. [`crate::Proxy::reconfigure`] reports the same diff
//! against the running configuration, plus what only a running proxy can
//! see: certificate or CA files whose content changed under an unchanged
//! path (a rotation).
//!
//! Pool members (`backends`) are not part of the diff: the node pushes them
//! separately with [`crate::Proxy::set_many`], so a config listing none (or
//! stale ones) is not a change.

use std::fmt;

use crate::config::{ListenerConfig, PoolConfig, ProxyConfig};

/// One change, as data. Ordered (listeners, then pools, then proxy-wide
/// settings; by name within each) so reports are stable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Listener { name: String, change: ListenerChange },
    Pool { name: String, change: PoolChange },
    Proxy(ProxyChange),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ListenerChange {
    /// The node must bind a socket and call [`crate::Proxy::serve`] for it.
    Added,
    /// Its serve loops stop accepting and drain on their own.
    Removed,
    Routes,
    /// TLS turned on or off, or the handshake timeout changed.
    Tls,
    /// The certificate list in the config changed (names, paths, inline PEM).
    Certificates,
    /// Same certificate config, but the files' content changed (rotation).
    /// Only [`crate::Proxy::reconfigure`] reports this: it reads the files.
    CertificatesReread,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PoolChange {
    /// Starts with the members its config lists until the node pushes some.
    Added,
    Removed,
    /// These settings differ (field names of [`PoolConfig`]).
    Settings(Vec<&'static str>),
    /// Same upstream TLS config, but the CA or client certificate files'
    /// content changed. Only [`crate::Proxy::reconfigure`] reports this.
    TlsFilesReread,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProxyChange {
    Limits,
    Forwarding,
    RateLimit,
    DrainTimeout,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Listener { name, change } => {
                let what = match change {
                    ListenerChange::Added => "added",
                    ListenerChange::Removed => "removed",
                    ListenerChange::Routes => "routes changed",
                    ListenerChange::Tls => "tls settings changed",
                    ListenerChange::Certificates => "certificates changed",
                    ListenerChange::CertificatesReread => "certificates re-read",
                };
                write!(f, "listener {name}: {what}")
            }
            Change::Pool { name, change } => match change {
                PoolChange::Added => write!(f, "pool {name}: added"),
                PoolChange::Removed => write!(f, "pool {name}: removed"),
                PoolChange::Settings(fields) => {
                    write!(f, "pool {name}: settings changed ({})", fields.join(", "))
                }
                PoolChange::TlsFilesReread => write!(f, "pool {name}: tls files re-read"),
            },
            Change::Proxy(p) => f.write_str(match p {
                ProxyChange::Limits => "proxy: limits changed",
                ProxyChange::Forwarding => "proxy: forwarding changed",
                ProxyChange::RateLimit => "proxy: rate limit changed",
                ProxyChange::DrainTimeout => "proxy: drain timeout changed",
            }),
        }
    }
}

/// The changes between two configs, sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    changes: Vec<Change>,
}

/// What [`crate::Proxy::reconfigure`] applied.
pub type Reconfigured = ConfigDiff;

impl ConfigDiff {
    pub(crate) fn from_changes(mut changes: Vec<Change>) -> Self {
        changes.sort();
        changes.dedup();
        ConfigDiff { changes }
    }

    pub(crate) fn push(&mut self, change: Change) {
        if let Err(at) = self.changes.binary_search(&change) {
            self.changes.insert(at, change);
        }
    }

    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    fn listeners_where(&self, pred: impl Fn(ListenerChange) -> bool) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Listener { name, change } if pred(*change) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        out.dedup();
        out
    }

    fn pools_where(&self, pred: impl Fn(&PoolChange) -> bool) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Pool { name, change } if pred(change) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        out.dedup();
        out
    }

    /// Listeners the node must bind and [`crate::Proxy::serve`].
    pub fn listeners_added(&self) -> Vec<&str> {
        self.listeners_where(|c| c == ListenerChange::Added)
    }

    /// Listeners whose serve loops stop and drain by themselves.
    pub fn listeners_removed(&self) -> Vec<&str> {
        self.listeners_where(|c| c == ListenerChange::Removed)
    }

    /// Listeners that stay, with new routes, TLS settings or certificates.
    pub fn listeners_changed(&self) -> Vec<&str> {
        self.listeners_where(|c| !matches!(c, ListenerChange::Added | ListenerChange::Removed))
    }

    /// Pools the node should push members to.
    pub fn pools_added(&self) -> Vec<&str> {
        self.pools_where(|c| *c == PoolChange::Added)
    }

    pub fn pools_removed(&self) -> Vec<&str> {
        self.pools_where(|c| *c == PoolChange::Removed)
    }

    /// Pools that got a new runtime (their members were kept).
    pub fn pools_changed(&self) -> Vec<&str> {
        self.pools_where(|c| !matches!(c, PoolChange::Added | PoolChange::Removed))
    }
}

/// One line per change; `no changes` when there are none.
impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return f.write_str("no changes");
        }
        for (i, c) in self.changes.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// The changes from `old` to `new` visible in the configs themselves. Pure:
/// certificate files are not read, so a rotation under the same path does
/// not show here (it does in [`crate::Proxy::reconfigure`]'s report).
pub fn diff(old: &ProxyConfig, new: &ProxyConfig) -> ConfigDiff {
    let mut out = Vec::new();
    for l in &new.listeners {
        let name = || l.name.clone();
        match old.listeners.iter().find(|o| o.name == l.name) {
            None => out.push(Change::Listener {
                name: name(),
                change: ListenerChange::Added,
            }),
            Some(o) => {
                for change in listener_diff(o, l) {
                    out.push(Change::Listener { name: name(), change });
                }
            }
        }
    }
    for o in &old.listeners {
        if !new.listeners.iter().any(|l| l.name == o.name) {
            out.push(Change::Listener {
                name: o.name.clone(),
                change: ListenerChange::Removed,
            });
        }
    }
    for p in &new.pools {
        match old.pools.iter().find(|o| o.name == p.name) {
            None => out.push(Change::Pool {
                name: p.name.clone(),
                change: PoolChange::Added,
            }),
            Some(o) => {
                let fields = pool_settings_diff(o, p);
                if !fields.is_empty() {
                    out.push(Change::Pool {
                        name: p.name.clone(),
                        change: PoolChange::Settings(fields),
                    });
                }
            }
        }
    }
    for o in &old.pools {
        if !new.pools.iter().any(|p| p.name == o.name) {
            out.push(Change::Pool {
                name: o.name.clone(),
                change: PoolChange::Removed,
            });
        }
    }
    if old.limits != new.limits {
        out.push(Change::Proxy(ProxyChange::Limits));
    }
    if old.forwarding != new.forwarding {
        out.push(Change::Proxy(ProxyChange::Forwarding));
    }
    if old.rate_limit != new.rate_limit {
        out.push(Change::Proxy(ProxyChange::RateLimit));
    }
    if old.drain_timeout_ms != new.drain_timeout_ms {
        out.push(Change::Proxy(ProxyChange::DrainTimeout));
    }
    ConfigDiff::from_changes(out)
}

fn listener_diff(old: &ListenerConfig, new: &ListenerConfig) -> Vec<ListenerChange> {
    let mut out = Vec::new();
    if old.routes != new.routes {
        out.push(ListenerChange::Routes);
    }
    match (&old.tls, &new.tls) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            if a.handshake_timeout_ms != b.handshake_timeout_ms {
                out.push(ListenerChange::Tls);
            }
            if a.certs != b.certs {
                out.push(ListenerChange::Certificates);
            }
        }
        _ => out.push(ListenerChange::Tls),
    }
    out
}

/// Names of the settings that differ, members (`backends`) excepted.
pub(crate) fn pool_settings_diff(old: &PoolConfig, new: &PoolConfig) -> Vec<&'static str> {
    // Destructured so that a field added to `PoolConfig` fails to compile
    // here until someone decides whether it is a setting.
    let PoolConfig {
        name: _,
        balance,
        protocol,
        tls,
        connect_timeout_ms,
        request_timeout_ms,
        idle_timeout_ms,
        max_idle_per_backend,
        slow_start_ms,
        sticky,
        retry,
        tunnel_idle_timeout_ms,
        backends: _,
    } = new;
    let mut out = Vec::new();
    let mut check = |differs: bool, field: &'static str| {
        if differs {
            out.push(field);
        }
    };
    check(old.balance != *balance, "balance");
    check(old.protocol != *protocol, "protocol");
    check(old.tls != *tls, "tls");
    check(
        old.connect_timeout_ms != *connect_timeout_ms,
        "connect_timeout_ms",
    );
    check(
        old.request_timeout_ms != *request_timeout_ms,
        "request_timeout_ms",
    );
    check(old.idle_timeout_ms != *idle_timeout_ms, "idle_timeout_ms");
    check(
        old.max_idle_per_backend != *max_idle_per_backend,
        "max_idle_per_backend",
    );
    check(old.slow_start_ms != *slow_start_ms, "slow_start_ms");
    check(old.sticky != *sticky, "sticky");
    check(old.retry != *retry, "retry");
    check(
        old.tunnel_idle_timeout_ms != *tunnel_idle_timeout_ms,
        "tunnel_idle_timeout_ms",
    );
    out
}

/// Whether two pool configs need the same upstream client (connector, TLS,
/// idle connection cache): if so, a settings change keeps the pool's
/// upstream connections.
pub(crate) fn same_client(old: &PoolConfig, new: &PoolConfig) -> bool {
    old.protocol == new.protocol
        && old.tls == new.tls
        && old.connect_timeout_ms == new.connect_timeout_ms
        && old.idle_timeout_ms == new.idle_timeout_ms
        && old.max_idle_per_backend == new.max_idle_per_backend
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Balance, CertConfig, ForwardingConfig, Limits, ListenerTls, PemSource};
    use crate::route::{Action, Match, RouteRule};

    fn base() -> ProxyConfig {
        ProxyConfig {
            listeners: vec![
                ListenerConfig {
                    name: "web:443".into(),
                    tls: Some(ListenerTls {
                        certs: vec![CertConfig {
                            server_names: vec!["a.example".into()],
                            cert: PemSource::Path("/etc/a.pem".into()),
                            key: PemSource::Path("/etc/a.key".into()),
                        }],
                        handshake_timeout_ms: 1000,
                    }),
                    routes: vec![RouteRule::new("all", vec![], Action::Pool("web".into()))],
                },
                ListenerConfig {
                    name: "admin:8443".into(),
                    tls: None,
                    routes: vec![RouteRule::new("all", vec![], Action::Pool("web".into()))],
                },
            ],
            pools: vec![PoolConfig::new("web", vec![])],
            limits: Limits::default(),
            forwarding: ForwardingConfig::default(),
            rate_limit: None,
            drain_timeout_ms: 1000,
        }
    }

    #[test]
    fn identical_configs_have_no_changes() {
        let d = diff(&base(), &base());
        assert!(d.is_empty());
        assert_eq!(d.to_string(), "no changes");
    }

    #[test]
    fn changes_are_listed_sorted_one_per_line() {
        let old = base();
        let mut new = base();
        new.listeners[0].routes.insert(
            0,
            RouteRule::new(
                "api",
                vec![Match::PathPrefix("/api".into())],
                Action::Pool("canary".into()),
            ),
        );
        new.listeners.remove(1);
        new.listeners.push(ListenerConfig {
            name: "plain:80".into(),
            tls: None,
            routes: vec![],
        });
        new.pools[0].balance = Balance::LeastConnections;
        new.pools[0].request_timeout_ms = 5;
        // Members are pushed separately: not a change.
        new.pools[0]
            .backends
            .push(crate::Backend::new("b", "127.0.0.1:1".parse().unwrap()));
        new.pools.push(PoolConfig::new("canary", vec![]));
        new.drain_timeout_ms = 5;
        let d = diff(&old, &new);
        assert_eq!(
            d.to_string(),
            "listener admin:8443: removed\n\
             listener plain:80: added\n\
             listener web:443: routes changed\n\
             pool canary: added\n\
             pool web: settings changed (balance, request_timeout_ms)\n\
             proxy: drain timeout changed"
        );
        assert_eq!(d.listeners_added(), ["plain:80"]);
        assert_eq!(d.listeners_removed(), ["admin:8443"]);
        assert_eq!(d.listeners_changed(), ["web:443"]);
        assert_eq!(d.pools_added(), ["canary"]);
        assert_eq!(d.pools_changed(), ["web"]);
    }

    #[test]
    fn tls_and_certificate_changes() {
        let old = base();
        let mut new = base();
        let tls = new.listeners[0].tls.as_mut().unwrap();
        tls.certs[0].server_names.push("b.example".into());
        new.listeners[1].tls = Some(tls.clone());
        let d = diff(&old, &new);
        assert_eq!(
            d.to_string(),
            "listener admin:8443: tls settings changed\nlistener web:443: certificates changed"
        );
    }
}
