//! Error types. Request-path failures are classified by who caused them
//! (following pingora's `ErrorSource`) so that retries, passive health and the
//! access log can tell a dead backend from a misbehaving client.

use std::fmt;

/// Which side of the proxy a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The backend (connect refused, reset, timeout, bad response).
    Upstream,
    /// The client (body too large, aborted body, bad request).
    Downstream,
    /// Our own state or configuration.
    Internal,
}

impl fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorSource::Upstream => "upstream",
            ErrorSource::Downstream => "downstream",
            ErrorSource::Internal => "internal",
        })
    }
}

/// What went wrong while proxying one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyErrorKind {
    ConnectFailed,
    ConnectTimeout,
    RequestTimeout,
    /// The backend connection broke after the request was (partly) sent.
    UpstreamReset,
    NoBackend,
    BodyTooLarge,
    DownstreamBody,
    UpgradeUnsupported,
}

impl ProxyErrorKind {
    pub fn source(self) -> ErrorSource {
        match self {
            ProxyErrorKind::ConnectFailed
            | ProxyErrorKind::ConnectTimeout
            | ProxyErrorKind::RequestTimeout
            | ProxyErrorKind::UpstreamReset => ErrorSource::Upstream,
            ProxyErrorKind::BodyTooLarge | ProxyErrorKind::DownstreamBody => ErrorSource::Downstream,
            ProxyErrorKind::NoBackend | ProxyErrorKind::UpgradeUnsupported => ErrorSource::Internal,
        }
    }

    /// A failure where the request never reached the backend, so any
    /// request (idempotent or not) may be sent elsewhere.
    pub fn before_send(self) -> bool {
        matches!(
            self,
            ProxyErrorKind::ConnectFailed | ProxyErrorKind::ConnectTimeout
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyErrorKind::ConnectFailed => "connect_failed",
            ProxyErrorKind::ConnectTimeout => "connect_timeout",
            ProxyErrorKind::RequestTimeout => "request_timeout",
            ProxyErrorKind::UpstreamReset => "upstream_reset",
            ProxyErrorKind::NoBackend => "no_backend",
            ProxyErrorKind::BodyTooLarge => "body_too_large",
            ProxyErrorKind::DownstreamBody => "downstream_body",
            ProxyErrorKind::UpgradeUnsupported => "upgrade_unsupported",
        }
    }
}

/// Configuration or setup errors: returned by constructors, never seen on the
/// request path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("duplicate {what} name {name:?}")]
    Duplicate { what: &'static str, name: String },
    #[error("route {route} of listener {listener} refers to unknown pool {pool:?}")]
    UnknownPool {
        listener: String,
        route: String,
        pool: String,
    },
    #[error("unknown pool {0:?}")]
    NoSuchPool(String),
    #[error("unknown listener {0:?}")]
    NoSuchListener(String),
    #[error("invalid regex {pattern:?}: {error}")]
    Regex { pattern: String, error: String },
    #[error("invalid header name or value {0:?}")]
    Header(String),
    #[error("invalid value for {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("reading {path}: {error}")]
    Io { path: String, error: std::io::Error },
}
