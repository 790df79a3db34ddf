//! TLS: SNI-selected server certificates (hot-swappable) and client configs
//! for backends. The ring provider is chosen explicitly (see DEPS-FACTS).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ring::digest;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{CertConfig, PemSource, UpstreamProtocol, UpstreamTls};
use crate::error::ConfigError;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.2 and 1.3 only; older versions are not even compiled in by rustls.
static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn tls_err(e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Tls(e.to_string())
}

fn load_chain(src: &PemSource) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    parse_chain(&src.load()?)
}

fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(tls_err)?;
    if certs.is_empty() {
        return Err(ConfigError::Tls("no certificate in PEM".into()));
    }
    Ok(certs)
}

fn load_key(src: &PemSource) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_slice(&src.load()?).map_err(tls_err)
}

/// Reads `c`'s files once, feeding exactly the bytes parsed into
/// `fingerprint`, so a rotation (same path, new content) shows as a change.
fn certified_key(
    c: &CertConfig,
    provider: &CryptoProvider,
    fingerprint: &mut digest::Context,
) -> Result<Arc<CertifiedKey>, ConfigError> {
    let cert = c.cert.load()?;
    let key = c.key.load()?;
    for part in [&cert, &key] {
        fingerprint.update(&(part.len() as u64).to_be_bytes());
        fingerprint.update(part);
    }
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(tls_err)?;
    let key = CertifiedKey::from_der(parse_chain(&cert)?, key, provider).map_err(tls_err)?;
    Ok(Arc::new(key))
}

#[derive(Debug)]
struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.net` stored under `example.net`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    /// SHA-256 over the names and PEM bytes this store was built from.
    fingerprint: [u8; 32],
}

impl CertStore {
    fn build(certs: &[CertConfig], provider: &CryptoProvider) -> Result<Self, ConfigError> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        let mut fp = digest::Context::new(&digest::SHA256);
        for c in certs {
            let ck = certified_key(c, provider, &mut fp)?;
            default.get_or_insert_with(|| ck.clone());
            for name in &c.server_names {
                fp.update(&(name.len() as u64).to_be_bytes());
                fp.update(name.as_bytes());
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(rest) => wildcard.insert(rest.to_string(), ck.clone()),
                    None => exact.insert(name, ck.clone()),
                };
            }
        }
        let default = default.ok_or_else(|| ConfigError::Tls("no certificates".into()))?;
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(fp.finish().as_ref());
        Ok(CertStore {
            exact,
            wildcard,
            default,
            fingerprint,
        })
    }

    fn lookup(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(c) = self.exact.get(&name) {
            return c.clone();
        }
        // A wildcard covers exactly one label (RFC 6125 §6.4.3).
        if let Some((_, parent)) = name.split_once('.')
            && let Some(c) = self.wildcard.get(parent)
        {
            return c.clone();
        }
        self.default.clone()
    }
}

/// Picks a certificate by SNI. The store is swapped atomically, so new
/// handshakes see new certificates at once and running ones are unaffected.
#[derive(Debug)]
pub struct SniResolver {
    store: ArcSwap<CertStore>,
    provider: Arc<CryptoProvider>,
}

impl SniResolver {
    pub fn new(certs: &[CertConfig]) -> Result<Self, ConfigError> {
        let provider = provider();
        Ok(SniResolver {
            store: ArcSwap::from_pointee(CertStore::build(certs, &provider)?),
            provider,
        })
    }

    /// Replaces all certificates; on error the old ones stay in place.
    pub fn replace(&self, certs: &[CertConfig]) -> Result<(), ConfigError> {
        let store = CertStore::build(certs, &self.provider)?;
        self.store.store(Arc::new(store));
        Ok(())
    }

    /// SHA-256 over the server names and the PEM bytes (certificate chain
    /// and key, as read) of the certificates in use: equal fingerprints mean
    /// nothing changed, so a reload can tell a rotated file from an
    /// untouched one.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.store.load().fingerprint
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.load().lookup(hello.server_name()))
    }
}

/// Server config with ALPN `h2` then `http/1.1`.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<ServerConfig>, ConfigError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Client config towards a pool's backends: verified against the pool's CA,
/// optionally presenting a client certificate (mTLS).
pub fn client_config(
    tls: &UpstreamTls,
    protocol: UpstreamProtocol,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let mut roots = RootCertStore::empty();
    for c in load_chain(&tls.ca)? {
        roots.add(c).map_err(tls_err)?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(tls_err)?
        .with_root_certificates(roots);
    let mut cfg = match &tls.client_cert {
        Some(cc) => builder
            .with_client_auth_cert(load_chain(&cc.cert)?, load_key(&cc.key)?)
            .map_err(tls_err)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = match protocol {
        UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
    };
    Ok(Arc::new(cfg))
}

/// SHA-256 over the upstream TLS files' content (CA, then client
/// certificate and key when set): lets a reload see a rotated file under an
/// unchanged path.
pub(crate) fn upstream_fingerprint(tls: &UpstreamTls) -> Result<[u8; 32], ConfigError> {
    let mut fp = digest::Context::new(&digest::SHA256);
    let mut feed = |src: &PemSource| -> Result<(), ConfigError> {
        let bytes = src.load()?;
        fp.update(&(bytes.len() as u64).to_be_bytes());
        fp.update(&bytes);
        Ok(())
    };
    feed(&tls.ca)?;
    if let Some(cc) = &tls.client_cert {
        feed(&cc.cert)?;
        feed(&cc.key)?;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(fp.finish().as_ref());
    Ok(out)
}
