//! Forwarding headers (X-Forwarded-*, RFC 7239 `Forwarded`, request ID) and
//! hop-by-hop header removal. Pure functions over a `HeaderMap`.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{
    CONNECTION, HOST, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use ipnet::IpNet;

use crate::route::canonical_ip;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// RFC 9110 §7.6.1 connection-specific headers, plus the legacy ones,
/// besides `Connection`, `TE`, `Transfer-Encoding` and `Upgrade` (handled
/// on their own). Statics: removing by `&str` would parse the name again on
/// every request.
fn hop_by_hop() -> [&'static HeaderName; 5] {
    [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TRAILER,
    ]
}

/// Removes hop-by-hop headers. With `keep_upgrade` (a WebSocket handshake
/// being relayed) `Upgrade` and `Connection: upgrade` survive, since they
/// must reach the other side for the tunnel to be set up. `TE: trailers` is
/// kept: gRPC servers require it and it is valid end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none of them: one pass over the names instead of
    // a lookup per hop-by-hop name.
    let hop = |k: &HeaderName| {
        k == CONNECTION || k == TE || k == TRANSFER_ENCODING || k == UPGRADE || hop_by_hop().contains(&k)
    };
    if !keep_upgrade && !headers.keys().any(hop) {
        return;
    }
    // Names listed in Connection go too (except Upgrade on an upgrade, and
    // TE, handled below).
    if headers.contains_key(CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(keep_upgrade && n == UPGRADE))
            .filter(|n| n != TE)
            .collect();
        for n in listed {
            headers.remove(n);
        }
        headers.remove(CONNECTION);
    }
    for n in hop_by_hop() {
        headers.remove(n);
    }
    headers.remove(TRANSFER_ENCODING);
    if !keep_upgrade {
        headers.remove(UPGRADE);
    }
    if headers.contains_key(TE) {
        let te_trailers = headers.get_all(TE).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers")))
        });
        headers.remove(TE);
        if te_trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    pub addr: IpAddr,
    pub tls: bool,
    /// Host as the client sent it (Host header or :authority).
    pub host: Option<&'a str>,
    /// Our own address the request arrived on (`by=` in `Forwarded`).
    pub local: Option<IpAddr>,
    /// The same facts about the connection, formatted once per connection
    /// (must match `addr` and `local`).
    pub conn: Option<&'a ConnForwarding>,
}

/// The connection's part of the forwarding headers, formatted when the
/// connection is accepted instead of for every request on it.
#[derive(Debug, Clone)]
pub struct ConnForwarding {
    /// The peer address as an X-Forwarded-For value.
    xff: Option<HeaderValue>,
    /// `for=PEER[;by=LOCAL]` of the RFC 7239 element.
    for_by: String,
}

impl ConnForwarding {
    pub fn new(peer: IpAddr, local: Option<IpAddr>) -> Self {
        let peer = canonical_ip(peer);
        let mut for_by = String::with_capacity(48);
        for_by.push_str("for=");
        push_node(&mut for_by, peer);
        if let Some(local) = local {
            for_by.push_str(";by=");
            push_node(&mut for_by, canonical_ip(local));
        }
        Self {
            xff: HeaderValue::from_maybe_shared(Bytes::from(peer.to_string())).ok(),
            for_by,
        }
    }
}

/// Sets X-Forwarded-For/-Proto/-Host and (optionally) `Forwarded`.
///
/// A client inside `trusted` is a proxy in front of us: its forwarding
/// headers are kept and we append our hop. Anyone else could have forged
/// them, so they are replaced by what we saw ourselves.
pub fn apply_forwarding(
    headers: &mut HeaderMap,
    client: &ClientInfo<'_>,
    trusted: &[IpNet],
    forwarded: bool,
) {
    let addr = canonical_ip(client.addr);
    let trusted_peer = trusted.iter().any(|n| n.contains(&addr));
    let proto = if client.tls { "https" } else { "http" };

    // Each value is built in one String that becomes the header's bytes.
    let previous = if trusted_peer {
        joined(headers, &X_FORWARDED_FOR).filter(|p| !p.is_empty())
    } else {
        None
    };
    match (previous, client.conn.and_then(|c| c.xff.as_ref())) {
        (None, Some(v)) => {
            headers.insert(X_FORWARDED_FOR.clone(), v.clone());
        }
        (previous, _) => {
            let mut xff = String::with_capacity(48);
            if let Some(prev) = previous {
                xff.push_str(&prev);
                xff.push_str(", ");
            }
            let _ = write!(xff, "{addr}");
            set(headers, &X_FORWARDED_FOR, xff);
        }
    }

    if !(trusted_peer && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !(trusted_peer && headers.contains_key(&X_FORWARDED_HOST)) {
        match client.host {
            // Usually the Host header itself: its value is shared, not copied.
            Some(h) => match headers
                .get(HOST)
                .filter(|v| v.as_bytes() == h.as_bytes())
                .cloned()
            {
                Some(v) => {
                    headers.insert(X_FORWARDED_HOST.clone(), v);
                }
                None => set(headers, &X_FORWARDED_HOST, h.to_string()),
            },
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }

    if forwarded {
        let mut value = String::with_capacity(96);
        if trusted_peer && let Some(prev) = joined(headers, &FORWARDED).filter(|p| !p.is_empty()) {
            value.push_str(&prev);
            value.push_str(", ");
        }
        match client.conn {
            Some(c) => value.push_str(&c.for_by),
            None => {
                value.push_str("for=");
                push_node(&mut value, addr);
                if let Some(local) = client.local {
                    value.push_str(";by=");
                    push_node(&mut value, canonical_ip(local));
                }
            }
        }
        if let Some(h) = client.host {
            value.push_str(";host=");
            push_quoted_if_needed(&mut value, h);
        }
        value.push_str(";proto=");
        value.push_str(proto);
        set(headers, &FORWARDED, value);
    } else if !trusted_peer {
        headers.remove(&FORWARDED);
    }
}

/// The address to treat as "the client" for rate limits, source ACLs and
/// source hashing. A direct peer outside `trusted` is the client. Behind
/// trusted proxies, walk X-Forwarded-For from the right (each proxy
/// appends) and take the first hop that is not itself trusted: entries
/// further left were written by the client and cannot be believed.
pub fn effective_client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&canonical_ip(*ip)));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map_while(|h| h.trim().parse::<IpAddr>().ok())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        client = *hop;
        if !is_trusted(hop) {
            break;
        }
    }
    client
}

/// RFC 7239 §6 node: IPv6 must be bracketed and quoted.
fn push_node(out: &mut String, ip: IpAddr) {
    let _ = match ip {
        IpAddr::V4(v4) => write!(out, "{v4}"),
        IpAddr::V6(v6) => write!(out, "\"[{v6}]\""),
    };
}

/// A token as is, anything else as a quoted-string.
fn push_quoted_if_needed(out: &mut String, v: &str) {
    let token = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        out.push_str(v);
    } else {
        out.push('"');
        for c in v.chars() {
            if c == '\\' || c == '"' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
}

/// All lines of a header joined with ", " (repeated headers are one list).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(", "))
    }
}

/// Sets `name` to `value` (taken as the header's bytes, no copy); an
/// invalid value removes the header rather than forward a forged one.
fn set(headers: &mut HeaderMap, name: &HeaderName, value: String) {
    match HeaderValue::from_maybe_shared(Bytes::from(value)) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// A new request ID: 128 random bits as 32 lower-case hex digits.
pub fn new_request_id_value() -> Option<HeaderValue> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (half, v) in [crate::balance::random_u64(), crate::balance::random_u64()]
        .into_iter()
        .enumerate()
    {
        for i in 0..16 {
            out[half * 16 + i] = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    HeaderValue::from_bytes(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn client(ip: IpAddr) -> ClientInfo<'static> {
        ClientInfo {
            addr: ip,
            tls: true,
            host: Some("www.example.net"),
            local: None,
            conn: None,
        }
    }

    #[test]
    fn per_connection_values_give_the_same_headers() {
        let v4: IpAddr = "198.51.100.20".parse().unwrap();
        let v6: IpAddr = "2001:db8::5".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.18.0.9".parse().unwrap();
        let local: IpAddr = "203.0.113.10".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["2001:db8::/32".parse().unwrap(), "198.18.0.0/15".parse().unwrap()];
        let mut prior = HeaderMap::new();
        prior.append(&X_FORWARDED_FOR, HeaderValue::from_static("198.18.0.1"));
        prior.insert(&FORWARDED, HeaderValue::from_static("for=198.18.0.1"));
        for peer in [v4, v6, mapped] {
            for local in [None, Some(local)] {
                for headers in [HeaderMap::new(), prior.clone()] {
                    for forwarded in [true, false] {
                        let conn = ConnForwarding::new(peer, local);
                        let info = |conn| ClientInfo {
                            addr: peer,
                            tls: false,
                            host: Some("www.example.net:8080"),
                            local,
                            conn,
                        };
                        let (mut a, mut b) = (headers.clone(), headers.clone());
                        apply_forwarding(&mut a, &info(None), &trusted, forwarded);
                        apply_forwarding(&mut b, &info(Some(&conn)), &trusted, forwarded);
                        assert_eq!(a, b, "{peer} {local:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn untrusted_client_xff_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("198.18.0.1"));
        h.insert(&FORWARDED, HeaderValue::from_static("for=198.18.0.1"));
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20));
        apply_forwarding(&mut h, &client(ip), &[], true);
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.20");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "www.example.net");
        assert_eq!(
            h[&FORWARDED],
            "for=198.51.100.20;host=www.example.net;proto=https"
        );
    }

    #[test]
    fn trusted_proxy_xff_is_appended() {
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("198.18.0.1"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("198.18.0.2"));
        h.insert(&FORWARDED, HeaderValue::from_static("for=198.18.0.1"));
        let ip: IpAddr = "2001:db8::5".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["2001:db8::/32".parse().unwrap()];
        apply_forwarding(&mut h, &client(ip), &trusted, true);
        assert_eq!(h[&X_FORWARDED_FOR], "198.18.0.1, 198.18.0.2, 2001:db8::5");
        assert_eq!(
            h[&FORWARDED],
            "for=198.18.0.1, for=\"[2001:db8::5]\";host=www.example.net;proto=https"
        );
    }

    #[test]
    fn hop_by_hop_removed_but_upgrade_and_te_trailers_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret, Upgrade"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(TE, HeaderValue::from_static("trailers, deflate"));
        let mut plain = h.clone();
        strip_hop_by_hop(&mut h, true);
        assert!(!h.contains_key("x-secret"));
        assert!(!h.contains_key("keep-alive"));
        assert_eq!(h[UPGRADE], "websocket");
        assert_eq!(h[CONNECTION], "upgrade");
        assert_eq!(h[TE], "trailers");
        strip_hop_by_hop(&mut plain, false);
        assert!(!plain.contains_key(UPGRADE));
        assert!(!plain.contains_key(CONNECTION));
    }

    #[test]
    fn effective_client_skips_trusted_hops_only() {
        let trusted: Vec<IpNet> = vec!["198.51.100.0/24".parse().unwrap()];
        let lb: IpAddr = "198.51.100.1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("203.0.113.66, 203.0.113.7, 198.51.100.2"),
        );
        // The client may have forged 203.0.113.66; 203.0.113.7 is what our
        // trusted proxy saw.
        assert_eq!(
            effective_client(lb, &h, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(effective_client(outsider, &h, &trusted), outsider);
        assert_eq!(effective_client(lb, &HeaderMap::new(), &trusted), lb);
    }

    #[test]
    fn request_ids_differ() {
        let a = new_request_id_value().unwrap();
        assert_eq!(a.len(), 32);
        assert!(
            a.as_bytes()
                .iter()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, new_request_id_value().unwrap());
    }
}
