//! The route table: ordered rules, pure matching (no I/O, no clock).
//!
//! A rule holds when all of its matches hold; the first rule that holds
//! decides. Rules can express HAProxy-style ACLs, e.g.
//!
//! ```text
//! path_prefix /admin + source_cidr 203.0.113.0/24  -> pool admin
//! path_prefix /admin                               -> deny 403
//! path_prefix /api                                 -> pool api
//! header Upgrade: websocket                        -> pool ws
//! (no match)                                       -> pool default
//! ```

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use http::header::{COOKIE, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use ipnet::IpNet;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// A compiled regular expression that (de)serializes as its source text.
#[derive(Clone)]
pub struct Pattern(Regex);

impl Pattern {
    pub fn new(pattern: &str) -> Result<Self, ConfigError> {
        Regex::new(pattern).map(Pattern).map_err(|e| ConfigError::Regex {
            pattern: pattern.to_string(),
            error: e.to_string(),
        })
    }
    pub fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

/// Patterns are equal when their source text is (what a config diff needs).
impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.0.as_str())
    }
}

impl TryFrom<String> for Pattern {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        Pattern::new(&s)
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.0.as_str().to_string()
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(serde::de::Error::custom)
    }
}

/// One condition on a request.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Match {
    /// Plain string prefix of the normalized path (HAProxy `path_beg`):
    /// `/admin` also covers `/administrator`, which errs on the side of the ACL.
    PathPrefix(String),
    PathExact(String),
    PathRegex(Pattern),
    /// `example.net` (exact, case-insensitive, port ignored) or
    /// `*.example.net` (one or more labels in front of `example.net`).
    Host(String),
    /// Header present; with `value`, one of its comma-separated elements
    /// equals it case-insensitively (so `Connection: keep-alive, Upgrade`
    /// matches `upgrade`).
    Header {
        name: String,
        #[serde(default)]
        value: Option<String>,
    },
    HeaderRegex {
        name: String,
        pattern: Pattern,
    },
    /// Cookie present; with `value`, equal to it.
    Cookie {
        name: String,
        #[serde(default)]
        value: Option<String>,
    },
    Method(Vec<String>),
    SourceCidr(Vec<IpNet>),
    /// The request arrived over TLS (`true`) or in clear (`false`).
    Tls(bool),
    Not(Box<Match>),
    AnyOf(Vec<Match>),
}

/// What to do with a request once its rule matched.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Pool(String),
    /// `location` may contain `{host}`, `{path}` and `{query}` (with its `?`).
    Redirect {
        #[serde(default = "default_redirect")]
        status: u16,
        location: String,
    },
    /// Same host and path over HTTPS (`port` when not 443).
    RedirectHttps {
        #[serde(default = "default_https_redirect")]
        status: u16,
        #[serde(default)]
        port: Option<u16>,
    },
    Deny {
        #[serde(default = "default_deny")]
        status: u16,
    },
}

fn default_redirect() -> u16 {
    302
}
fn default_https_redirect() -> u16 {
    301
}
fn default_deny() -> u16 {
    403
}

impl Action {
    pub fn pool(&self) -> Option<&str> {
        match self {
            Action::Pool(p) => Some(p),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdits {
    /// Replace (or add) these headers.
    #[serde(default)]
    pub set: Vec<HeaderPair>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderPair {
    pub name: String,
    pub value: String,
}

impl HeaderEdits {
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.set.push(HeaderPair {
            name: name.to_string(),
            value: value.to_string(),
        });
        self
    }
    pub fn remove(mut self, name: &str) -> Self {
        self.remove.push(name.to_string());
        self
    }
}

/// One entry of a listener's route list.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Used in metrics and logs; defaults to the rule's index.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Vec<Match>,
    pub action: Action,
    #[serde(default)]
    pub request_headers: HeaderEdits,
    #[serde(default)]
    pub response_headers: HeaderEdits,
}

impl RouteRule {
    pub fn new(name: &str, matches: Vec<Match>, action: Action) -> Self {
        RouteRule {
            name: Some(name.to_string()),
            matches,
            action,
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        CompiledRule::compile(self, 0).map(|_| ())
    }
}

/// Header edits with names and values already parsed.
#[derive(Debug, Clone, Default)]
pub struct CompiledEdits {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl CompiledEdits {
    fn compile(e: &HeaderEdits) -> Result<Self, ConfigError> {
        let name =
            |n: &str| HeaderName::from_bytes(n.as_bytes()).map_err(|_| ConfigError::Header(n.to_string()));
        let mut out = CompiledEdits::default();
        for p in &e.set {
            let v = HeaderValue::from_str(&p.value).map_err(|_| ConfigError::Header(p.value.clone()))?;
            out.set.push((name(&p.name)?, v));
        }
        for n in &e.remove {
            out.remove.push(name(n)?);
        }
        Ok(out)
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
    }
}

#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// Shared (not copied) into every request's outcome.
    pub name: std::sync::Arc<str>,
    matches: Vec<CompiledMatch>,
    pub action: Action,
    /// The pool of an [`Action::Pool`], shared the same way.
    pub pool: Option<std::sync::Arc<str>>,
    pub request_headers: CompiledEdits,
    pub response_headers: CompiledEdits,
}

#[derive(Debug, Clone)]
enum CompiledMatch {
    PathPrefix(String),
    PathExact(String),
    PathRegex(Pattern),
    HostExact(String),
    /// Stored as `.example.net`.
    HostSuffix(String),
    Header(HeaderName, Option<String>),
    HeaderRegex(HeaderName, Pattern),
    Cookie(String, Option<String>),
    Method(Vec<Method>),
    SourceCidr(Vec<IpNet>),
    Tls(bool),
    Not(Box<CompiledMatch>),
    AnyOf(Vec<CompiledMatch>),
}

impl CompiledMatch {
    fn compile(m: &Match) -> Result<Self, ConfigError> {
        let hname =
            |n: &str| HeaderName::from_bytes(n.as_bytes()).map_err(|_| ConfigError::Header(n.to_string()));
        Ok(match m {
            Match::PathPrefix(p) => CompiledMatch::PathPrefix(p.clone()),
            Match::PathExact(p) => CompiledMatch::PathExact(p.clone()),
            Match::PathRegex(p) => CompiledMatch::PathRegex(p.clone()),
            Match::Host(h) => {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix("*.") {
                    Some(rest) if !rest.is_empty() => CompiledMatch::HostSuffix(format!(".{rest}")),
                    _ => CompiledMatch::HostExact(h),
                }
            }
            Match::Header { name, value } => CompiledMatch::Header(hname(name)?, value.clone()),
            Match::HeaderRegex { name, pattern } => CompiledMatch::HeaderRegex(hname(name)?, pattern.clone()),
            Match::Cookie { name, value } => CompiledMatch::Cookie(name.clone(), value.clone()),
            Match::Method(ms) => CompiledMatch::Method(
                ms.iter()
                    .map(|m| {
                        Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                            ConfigError::Invalid {
                                field: "method".into(),
                                reason: format!("{m:?} is not a method"),
                            }
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Match::SourceCidr(c) => CompiledMatch::SourceCidr(c.clone()),
            Match::Tls(t) => CompiledMatch::Tls(*t),
            Match::Not(inner) => CompiledMatch::Not(Box::new(CompiledMatch::compile(inner)?)),
            Match::AnyOf(ms) => {
                CompiledMatch::AnyOf(ms.iter().map(CompiledMatch::compile).collect::<Result<_, _>>()?)
            }
        })
    }

    fn holds(&self, r: &RequestInfo<'_>) -> bool {
        match self {
            CompiledMatch::PathPrefix(p) => r.path.starts_with(p.as_str()),
            CompiledMatch::PathExact(p) => r.path == p,
            CompiledMatch::PathRegex(p) => p.is_match(r.path),
            CompiledMatch::HostExact(h) => r.host == h,
            CompiledMatch::HostSuffix(s) => r.host.len() > s.len() && r.host.ends_with(s.as_str()),
            CompiledMatch::Header(name, None) => r.headers.contains_key(name),
            CompiledMatch::Header(name, Some(want)) => r
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.trim().eq_ignore_ascii_case(want)
                        || v.split(',').any(|e| e.trim().eq_ignore_ascii_case(want))
                }),
            CompiledMatch::HeaderRegex(name, p) => r
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| p.is_match(v)),
            CompiledMatch::Cookie(name, want) => match cookie(r.headers, name) {
                None => false,
                Some(v) => want.as_deref().is_none_or(|w| w == v),
            },
            CompiledMatch::Method(ms) => ms.contains(r.method),
            CompiledMatch::SourceCidr(nets) => {
                let ip = canonical_ip(r.client);
                nets.iter().any(|n| n.contains(&ip))
            }
            CompiledMatch::Tls(t) => r.tls == *t,
            CompiledMatch::Not(inner) => !inner.holds(r),
            CompiledMatch::AnyOf(ms) => ms.iter().any(|m| m.holds(r)),
        }
    }
}

impl CompiledRule {
    fn compile(rule: &RouteRule, index: usize) -> Result<Self, ConfigError> {
        Ok(CompiledRule {
            name: rule.name.clone().unwrap_or_else(|| index.to_string()).into(),
            pool: match &rule.action {
                Action::Pool(p) => Some(p.as_str().into()),
                _ => None,
            },
            matches: rule
                .matches
                .iter()
                .map(CompiledMatch::compile)
                .collect::<Result<_, _>>()?,
            action: rule.action.clone(),
            request_headers: CompiledEdits::compile(&rule.request_headers)?,
            response_headers: CompiledEdits::compile(&rule.response_headers)?,
        })
    }

    pub fn holds(&self, r: &RequestInfo<'_>) -> bool {
        self.matches.iter().all(|m| m.holds(r))
    }
}

/// What the matcher sees of a request. `host` is lower-case without port and
/// `path` is normalized (see [`normalize_path`]) so that `//admin` or
/// `/%61dmin` cannot slip past an ACL.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a Method,
    pub host: &'a str,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub client: IpAddr,
    pub tls: bool,
}

/// A listener's ordered rules.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    rules: Vec<CompiledRule>,
}

impl RouteTable {
    pub fn new(rules: &[RouteRule]) -> Result<Self, ConfigError> {
        Ok(RouteTable {
            rules: rules
                .iter()
                .enumerate()
                .map(|(i, r)| CompiledRule::compile(r, i))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The first rule that holds, if any.
    pub fn evaluate(&self, r: &RequestInfo<'_>) -> Option<&CompiledRule> {
        self.rules.iter().find(|rule| rule.holds(r))
    }
}

/// IPv4-mapped IPv6 clients (dual-stack sockets) are matched as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The value of cookie `name` in the request's Cookie header(s).
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Lower-cased host without port (IPv6 literals keep their brackets).
/// Borrowed when the host is in that form already (the common case: no
/// allocation per request).
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let h = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    let h = h.trim_end_matches('.');
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

/// Path used for matching: unreserved percent-escapes decoded, empty and `.`
/// segments dropped, `..` resolved (never above the root). The request is
/// forwarded unchanged; only the routing decision uses this form.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if is_normal_path(path) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (decoded.ends_with('/') && !segments.is_empty()) {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Whether [`normalize_path`] would return `path` unchanged: absolute, no
/// escapes, no empty, `.` or `..` segment (a trailing `/` is kept).
fn is_normal_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if path.contains('%') {
        return false;
    }
    if rest.is_empty() {
        return true; // "/"
    }
    let body = rest.strip_suffix('/').unwrap_or(rest);
    !body.is_empty() && body.split('/').all(|seg| !matches!(seg, "" | "." | ".."))
}

/// Decodes `%XX` escapes of RFC 3986 unreserved characters only: decoding
/// `%2F` would change the segment structure the backend sees.
fn decode_unreserved(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            let c = h * 16 + l;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(c);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn info<'a>(
        method: &'a Method,
        host: &'a str,
        path: &'a str,
        headers: &'a HeaderMap,
        client: IpAddr,
    ) -> RequestInfo<'a> {
        RequestInfo {
            method,
            host,
            path,
            headers,
            client,
            tls: false,
        }
    }

    fn haproxy_table() -> RouteTable {
        let admin_net: IpNet = "203.0.113.0/24".parse().unwrap();
        RouteTable::new(&[
            RouteRule::new(
                "admin",
                vec![
                    Match::PathPrefix("/admin".into()),
                    Match::SourceCidr(vec![admin_net]),
                ],
                Action::Pool("admin".into()),
            ),
            RouteRule::new(
                "admin-deny",
                vec![Match::PathPrefix("/admin".into())],
                Action::Deny { status: 403 },
            ),
            RouteRule::new(
                "api",
                vec![Match::PathPrefix("/api".into())],
                Action::Pool("api".into()),
            ),
            RouteRule::new(
                "static",
                vec![Match::PathPrefix("/static".into())],
                Action::Pool("static".into()),
            ),
            RouteRule::new(
                "ws",
                vec![Match::Header {
                    name: "upgrade".into(),
                    value: Some("websocket".into()),
                }],
                Action::Pool("ws".into()),
            ),
            RouteRule::new("default", vec![], Action::Pool("default".into())),
        ])
        .unwrap()
    }

    fn decide(t: &RouteTable, path: &str, headers: &HeaderMap, client: IpAddr) -> String {
        let m = Method::GET;
        let p = normalize_path(path);
        let rule = t.evaluate(&info(&m, "example.net", &p, headers, client)).unwrap();
        match &rule.action {
            Action::Pool(p) => p.clone(),
            Action::Deny { status } => format!("deny {status}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn haproxy_acl_set() {
        let t = haproxy_table();
        let outside = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        let inside = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
        let none = HeaderMap::new();
        assert_eq!(decide(&t, "/api/v1/x", &none, outside), "api");
        assert_eq!(decide(&t, "/admin/users", &none, inside), "admin");
        assert_eq!(decide(&t, "/admin/users", &none, outside), "deny 403");
        // Path tricks must not bypass the ACL.
        assert_eq!(decide(&t, "//admin", &none, outside), "deny 403");
        assert_eq!(decide(&t, "/%61dmin", &none, outside), "deny 403");
        assert_eq!(decide(&t, "/x/../admin", &none, outside), "deny 403");
        assert_eq!(decide(&t, "/static/a.css", &none, outside), "static");
        let mut ws = HeaderMap::new();
        ws.insert("upgrade", HeaderValue::from_static("WebSocket"));
        assert_eq!(decide(&t, "/chat", &ws, outside), "ws");
        assert_eq!(decide(&t, "/", &none, outside), "default");
        // IPv4-mapped IPv6 clients match IPv4 CIDRs.
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(decide(&t, "/admin", &none, mapped), "admin");
    }

    #[test]
    fn host_exact_and_wildcard() {
        let t = RouteTable::new(&[
            RouteRule::new(
                "a",
                vec![Match::Host("*.example.net".into())],
                Action::Pool("w".into()),
            ),
            RouteRule::new(
                "b",
                vec![Match::Host("Example.NET".into())],
                Action::Pool("e".into()),
            ),
        ])
        .unwrap();
        let h = HeaderMap::new();
        let m = Method::GET;
        let c = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let pick = |host: &str| {
            let host = normalize_host(host);
            t.evaluate(&info(&m, &host, "/", &h, c)).map(|r| r.name.clone())
        };
        assert_eq!(pick("a.example.net").as_deref(), Some("a"));
        assert_eq!(pick("a.b.example.net:8443").as_deref(), Some("a"));
        assert_eq!(pick("example.net:80").as_deref(), Some("b"));
        assert_eq!(pick("badexample.net"), None);
    }

    #[test]
    fn header_cookie_method_regex_not() {
        let t = RouteTable::new(&[
            RouteRule::new(
                "canary",
                vec![Match::Cookie {
                    name: "canary".into(),
                    value: Some("1".into()),
                }],
                Action::Pool("c".into()),
            ),
            RouteRule::new(
                "writes",
                vec![Match::Method(vec!["post".into(), "PUT".into()])],
                Action::Pool("w".into()),
            ),
            RouteRule::new(
                "img",
                vec![Match::PathRegex(Pattern::new(r"\.(png|jpg)$").unwrap())],
                Action::Pool("i".into()),
            ),
            RouteRule::new(
                "tenant",
                vec![
                    Match::Header {
                        name: "x-tenant".into(),
                        value: None,
                    },
                    Match::Not(Box::new(Match::HeaderRegex {
                        name: "x-tenant".into(),
                        pattern: Pattern::new("^internal-").unwrap(),
                    })),
                ],
                Action::Pool("t".into()),
            ),
        ])
        .unwrap();
        let c = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let get = Method::GET;
        let post = Method::POST;
        let mut ck = HeaderMap::new();
        ck.insert(COOKIE, HeaderValue::from_static("a=b; canary=1"));
        let name =
            |m: &Method, p: &str, h: &HeaderMap| t.evaluate(&info(m, "h", p, h, c)).map(|r| r.name.clone());
        assert_eq!(name(&get, "/", &ck).as_deref(), Some("canary"));
        let mut ck0 = HeaderMap::new();
        ck0.insert(COOKIE, HeaderValue::from_static("canary=0"));
        assert_eq!(name(&get, "/", &ck0), None);
        assert_eq!(name(&post, "/", &HeaderMap::new()).as_deref(), Some("writes"));
        assert_eq!(name(&get, "/a/b.png", &HeaderMap::new()).as_deref(), Some("img"));
        let mut tn = HeaderMap::new();
        tn.insert("x-tenant", HeaderValue::from_static("acme"));
        assert_eq!(name(&get, "/", &tn).as_deref(), Some("tenant"));
        tn.insert("x-tenant", HeaderValue::from_static("internal-x"));
        assert_eq!(name(&get, "/", &tn), None);
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/a//b/./c/"), "/a/b/c/");
        assert_eq!(normalize_path("/../../etc"), "/etc");
        // %2F stays encoded: it is not a separator for the backend either.
        assert_eq!(normalize_path("/a%2Fb"), "/a%2Fb");
        // Already normal: borrowed, and what the slow path would give.
        for p in ["/", "/a", "/a/", "/a/b.c/d", "/.well-known/x", "/a./..b/"] {
            assert!(matches!(normalize_path(p), Cow::Borrowed(_)), "{p}");
            let slow = {
                let mut segs = Vec::new();
                for seg in p.split('/').filter(|s| !s.is_empty()) {
                    segs.push(seg);
                }
                let mut o: String = segs.iter().map(|s| format!("/{s}")).collect();
                if o.is_empty() || (p.ends_with('/') && !segs.is_empty()) {
                    o.push('/');
                }
                o
            };
            assert_eq!(normalize_path(p), slow, "{p}");
        }
        for p in [
            "", "//", "/a//b", "/./a", "/a/.", "/a/..", "/a%41", "a/b", "/a/./",
        ] {
            assert!(matches!(normalize_path(p), Cow::Owned(_)), "{p}");
        }
        assert_eq!(normalize_host("[2001:db8::1]:443"), "[2001:db8::1]");
        assert_eq!(normalize_host("WWW.Example.net."), "www.example.net");
    }

    #[test]
    fn rejects_bad_config() {
        assert!(Pattern::new("(").is_err());
        let bad = RouteRule::new(
            "x",
            vec![Match::Header {
                name: "bad header".into(),
                value: None,
            }],
            Action::Pool("p".into()),
        );
        assert!(RouteTable::new(&[bad]).is_err());
    }
}
