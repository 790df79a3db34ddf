//! TLS: SNI-selected server certificates (hot-swappable) and client configs
//! for backends. The ring provider is chosen explicitly (see DEPS-FACTS).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
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
    let pem = src.load()?;
    let certs = CertificateDer::pem_slice_iter(&pem)
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

fn certified_key(c: &CertConfig, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, ConfigError> {
    let key = CertifiedKey::from_der(load_chain(&c.cert)?, load_key(&c.key)?, provider).map_err(tls_err)?;
    Ok(Arc::new(key))
}

#[derive(Debug)]
struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.net` stored under `example.net`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertStore {
    fn build(certs: &[CertConfig], provider: &CryptoProvider) -> Result<Self, ConfigError> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for c in certs {
            let ck = certified_key(c, provider)?;
            default.get_or_insert_with(|| ck.clone());
            for name in &c.server_names {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(rest) => wildcard.insert(rest.to_string(), ck.clone()),
                    None => exact.insert(name, ck.clone()),
                };
            }
        }
        let default = default.ok_or_else(|| ConfigError::Tls("no certificates".into()))?;
        Ok(CertStore {
            exact,
            wildcard,
            default,
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
