//! The TLS side of security profiles 2 and 3: certificates and keys from PEM files, the cipher
//! suites of the OCPP 1.6 security whitepaper, the client-certificate verifier, and the
//! reloadable pair of rustls server configurations the loops take a new connection's from.
//!
//! Suites: TLS 1.3 (AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305) and, for TLS 1.2, exactly the
//! whitepaper's ECDHE-ECDSA and ECDHE-RSA with AES-128/256-GCM. An ECDSA and an RSA certificate
//! may be configured together: each handshake gets the first one the client can verify and
//! whose key type one of its offered suites can use.
//!
//! Session resumption: stateless tickets ([`super::tickets`]), sealed per listener profile with
//! keys every loop (and, with a shared key file, every node) holds; no session cache.
//!
//! Reloading (SIGHUP) builds new configurations and swaps them in; connections keep the
//! configuration they started with (rustls holds it by `Arc`), so none is dropped, and a file
//! that does not load is logged while the old configuration stays.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::cipher_suite as suites;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, RootCertStore, SignatureAlgorithm};

use super::tickets::{TicketKeys, TicketScope};
pub use crate::config::CertFiles;

/// The files TLS listeners use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// One or two chains (an ECDSA and an RSA one), in order of preference.
    pub certs: Vec<CertFiles>,
    /// CA certificates client certificates must chain to (profile 3).
    pub client_ca: Option<PathBuf>,
    /// CRLs of client certificates (profile 3).
    pub client_crl: Vec<PathBuf>,
    /// Session tickets (None: no resumption).
    pub tickets: Option<crate::config::TicketConfig>,
}

/// Why TLS cannot be set up; each names the config key and the file to fix.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("`{key}`: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{key}`: {path}: {reason}")]
    Invalid {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server configurations of one generation.
#[derive(Debug)]
pub struct ServerConfigs {
    /// Profile 2: server certificate only.
    pub server_auth: Arc<rustls::ServerConfig>,
    /// Profile 3: client certificates required (None when no profile 3 listener exists).
    pub mutual: Option<Arc<rustls::ServerConfig>>,
    /// What `security.client_crl` revokes (checked again at the upgrade: resumed sessions).
    pub revoked: super::revocation::Revoked,
}

/// The current [`ServerConfigs`], replaced on reload. Loops check the generation (one relaxed
/// load per accept) and take the lock only when it changed.
#[derive(Debug)]
pub struct TlsConfigs {
    files: TlsFiles,
    mutual: bool,
    /// Kept across reloads: tickets given before a reload still open after it.
    tickets: Option<Arc<TicketKeys>>,
    generation: AtomicU64,
    current: RwLock<Arc<ServerConfigs>>,
}

impl TlsConfigs {
    /// The session-ticket keys, when resumption is on.
    pub fn tickets(&self) -> Option<&Arc<TicketKeys>> {
        self.tickets.as_ref()
    }

    /// Loads the files (an error stops the start); `mutual`: a profile 3 listener exists.
    pub fn load(files: TlsFiles, mutual: bool) -> Result<TlsConfigs, CertError> {
        let tickets = match &files.tickets {
            Some(t) => Some(TicketKeys::load(t.keys.clone(), t.lifetime)?),
            None => None,
        };
        let configs = build(&files, mutual, tickets.as_ref())?;
        Ok(TlsConfigs {
            files,
            mutual,
            tickets,
            generation: AtomicU64::new(1),
            current: RwLock::new(Arc::new(configs)),
        })
    }

    /// Loads the files again; on success new connections use them. On failure the old ones
    /// stay and the error is returned for the log.
    pub fn reload(&self) -> Result<(), CertError> {
        // The ticket keys on their own: a broken key file must not keep new certificates out.
        if let Some(tickets) = &self.tickets {
            match tickets.reload() {
                Ok(0) => {}
                Ok(n) => log::info!("TLS ticket keys reloaded: {n}"),
                Err(e) => log::warn!("TLS ticket keys not reloaded, the old ones stay: {e}"),
            }
        }
        let configs = build(&self.files, self.mutual, self.tickets.as_ref())?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(configs);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<ServerConfigs> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The crypto provider: ring, with the whitepaper's suites.
///
/// In the server's order of preference, which wins over the client's: the suites whose
/// handshake hashes with SHA-256 first. The key schedule, the transcript and a resumption's
/// binder are mostly hashing; with the CPU's SHA extensions a TLS 1.3 handshake then costs the
/// gateway 130 us instead of 225 us, a resumed one 98 us instead of 177 us (`benches/tls_handshake.rs`),
/// and most clients put AES-256/SHA-384 first.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        suites::TLS13_AES_128_GCM_SHA256,
        suites::TLS13_CHACHA20_POLY1305_SHA256,
        suites::TLS13_AES_256_GCM_SHA384,
        suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ];
    Arc::new(provider)
}

fn build(
    files: &TlsFiles,
    mutual: bool,
    tickets: Option<&Arc<TicketKeys>>,
) -> Result<ServerConfigs, CertError> {
    let provider = provider();
    let mut keys = Vec::with_capacity(files.certs.len());
    for pair in &files.certs {
        keys.push(Arc::new(certified_key(pair, &provider)?));
    }
    let resolver = Arc::new(ChooseByClient { keys });
    let config = |verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
                  scope: TicketScope| {
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::clone(&resolver) as _);
        // The server's suite order (see `provider`).
        config.ignore_client_order = true;
        // Stateless only: nothing is kept per session (TLS 1.2 session ids are not resumed).
        config.session_storage = Arc::new(NoServerSessionStorage {});
        match tickets {
            Some(keys) => {
                config.ticketer = keys.ticketer(scope);
                // One ticket per handshake: a charge point resumes once per reconnect.
                config.send_tls13_tickets = 1;
            }
            None => config.send_tls13_tickets = 0,
        }
        // After the handshake only the record keys are kept (see `transport`'s records).
        config.enable_secret_extraction = true;
        Ok::<_, CertError>(Arc::new(config))
    };
    let server_auth = config(None, TicketScope::ServerAuth)?;
    let (crls, revoked) = super::revocation::load(&files.client_crl)?;
    let mutual = if mutual {
        let path = files.client_ca.as_ref().ok_or_else(|| CertError::Invalid {
            key: "security.client_ca",
            path: PathBuf::new(),
            reason: "required by a profile 3 listener".into(),
        })?;
        let roots = client_roots(path)?;
        let mut builder = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider));
        if !crls.is_empty() {
            // The leaf only; a certificate of an issuer without a CRL here passes.
            builder = builder
                .with_crls(crls)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        let verifier = builder.build().map_err(|e| CertError::Invalid {
            key: "security.client_ca",
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Some(config(Some(verifier), TicketScope::Mutual)?)
    } else {
        None
    };
    Ok(ServerConfigs {
        revoked,
        server_auth,
        mutual,
    })
}

fn certified_key(pair: &CertFiles, provider: &CryptoProvider) -> Result<CertifiedKey, CertError> {
    let chain = read_certificates(&pair.cert, "security.tls_cert")?;
    let key_bytes = read(&pair.key, "security.tls_key")?;
    let invalid = |reason: String| CertError::Invalid {
        key: "security.tls_key",
        path: pair.key.clone(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| invalid(format!("no PEM private key: {e}")))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| CertError::Invalid {
        key: "security.tls_key",
        path: pair.key.clone(),
        reason: format!("does not match {}: {e}", pair.cert.display()),
    })?;
    Ok(certified)
}

fn read(path: &Path, key: &'static str) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file (at least one).
pub fn read_certificates(
    path: &Path,
    key: &'static str,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read(path, key)?;
    let invalid = |reason: String| CertError::Invalid {
        key,
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid("no certificate in the file".into()));
    }
    Ok(chain)
}

fn client_roots(path: &Path) -> Result<Arc<RootCertStore>, CertError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path, "security.client_ca")? {
        roots.add(cert).map_err(|e| CertError::Invalid {
            key: "security.client_ca",
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Picks, per handshake, the first certificate the client can use.
#[derive(Debug)]
struct ChooseByClient {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ChooseByClient {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offered = hello.cipher_suites();
        let tls13 = offered.iter().any(|s| is_tls13(*s));
        self.keys
            .iter()
            .find(|key| {
                key.key.choose_scheme(hello.signature_schemes()).is_some()
                    && (tls13
                        || offered
                            .iter()
                            .any(|s| tls12_suite_for(*s) == Some(key.key.algorithm())))
            })
            .cloned()
    }
}

fn is_tls13(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    )
}

/// The key type a TLS 1.2 suite we offer needs.
fn tls12_suite_for(suite: CipherSuite) -> Option<SignatureAlgorithm> {
    match suite {
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => Some(SignatureAlgorithm::ECDSA),
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Some(SignatureAlgorithm::RSA),
        _ => None,
    }
}
