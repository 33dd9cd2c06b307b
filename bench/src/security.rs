//! What the charge points need to connect to a gateway with security profiles 1-3: wss (the
//! TLS client configuration, trusting `--ca`), Basic auth (a key per charge point derived from
//! `--basic-auth`'s seed, and the credentials file the gateway checks it against) and client
//! certificates (`--client-cert-dir`); and the `certs` and `credentials` subcommands that write
//! those files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use ring::hmac;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Bytes of a derived key (the whitepaper's 20).
const KEY_LEN: usize = 20;

/// Why a security file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn file_error(path: &Path, reason: impl ToString) -> SecurityError {
    SecurityError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// `identity`'s key: HMAC-SHA256(seed, identity), its first 20 bytes.
pub fn derive_key(seed: &str, identity: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, seed.as_bytes());
    hmac::sign(&key, identity.as_bytes()).as_ref()[..KEY_LEN].to_vec()
}

/// The `Authorization` header value for `identity` with its derived key.
pub fn basic_header(seed: &str, identity: &str) -> String {
    let mut user_pass = identity.as_bytes().to_vec();
    user_pass.push(b':');
    user_pass.extend_from_slice(&derive_key(seed, identity));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// How the charge points speak TLS.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// Trusting `--ca`, no client certificate.
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    /// Per identity `{dir}/{identity}.pem` and `.key` (profile 3).
    pub client_cert_dir: Option<PathBuf>,
    /// `--tls-resume`: each identity keeps its own session ticket.
    resume: bool,
    /// `--tls12`: TLS 1.2 only.
    tls12: bool,
    ca: PathBuf,
}

impl TlsClient {
    pub fn new(
        ca: &Path,
        host: &str,
        client_cert_dir: Option<PathBuf>,
        (resume, tls12): (bool, bool),
    ) -> Result<TlsClient, SecurityError> {
        let config = client_config(ca, None, (false, tls12))?;
        let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_owned()).map_err(|e| file_error(ca, e))?;
        Ok(TlsClient {
            config,
            server_name,
            client_cert_dir,
            resume,
            tls12,
            ca: ca.to_owned(),
        })
    }

    /// The configuration for `identity`: with its certificate when a directory is given, and
    /// its own ticket store with `--tls-resume` (loaded once per identity, kept in `cache`;
    /// otherwise one shared configuration that never resumes).
    pub fn config_for(
        &self,
        identity: &str,
        cache: &mut HashMap<String, Arc<ClientConfig>>,
    ) -> Result<Arc<ClientConfig>, SecurityError> {
        if self.client_cert_dir.is_none() && !self.resume {
            return Ok(Arc::clone(&self.config));
        }
        if let Some(config) = cache.get(identity) {
            return Ok(Arc::clone(config));
        }
        let files = self.client_cert_dir.as_ref().map(|dir| {
            (
                dir.join(format!("{identity}.pem")),
                dir.join(format!("{identity}.key")),
            )
        });
        let files = files
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()));
        let config = client_config(&self.ca, files, (self.resume, self.tls12))?;
        cache.insert(identity.to_owned(), Arc::clone(&config));
        Ok(config)
    }
}

/// A client configuration trusting `ca`, with a client certificate when given; with `resume`,
/// a ticket store of its own (one charge point's: one ticket), else no resumption at all;
/// TLS 1.2 only with `tls12`, else 1.3 and 1.2.
fn client_config(
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    (resume, tls12): (bool, bool),
) -> Result<Arc<ClientConfig>, SecurityError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).map_err(|e| file_error(ca, e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    let mut config = config;
    config.resumption = if resume {
        rustls::client::Resumption::store(Arc::new(rustls::client::ClientSessionMemoryCache::new(
            1,
        )))
    } else {
        rustls::client::Resumption::disabled()
    };
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate"));
    }
    Ok(certs)
}

/// Writes the gateway's credentials file for `identities` with keys derived from `seed`, in
/// the file's documented format (`identity<TAB>salt-hex<TAB>hmac-hex`, the HMAC-SHA256 of the key
/// under a random 16-byte salt); a test reads it back with the gateway's own loader.
pub fn write_credentials(
    out: &Path,
    seed: &str,
    identities: impl Iterator<Item = String>,
) -> Result<usize, SecurityError> {
    use ring::rand::{SecureRandom, SystemRandom};
    let random = SystemRandom::new();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut text = String::new();
    let mut count = 0;
    for identity in identities {
        let mut salt = [0u8; 16];
        random
            .fill(&mut salt)
            .map_err(|_| file_error(out, "no random bytes for a salt"))?;
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &salt),
            &derive_key(seed, &identity),
        );
        text.push_str(&format!(
            "{identity}\t{}\t{}\n",
            hex(&salt),
            hex(tag.as_ref())
        ));
        count += 1;
    }
    std::fs::write(out, text).map_err(|e| file_error(out, e))?;
    Ok(count)
}

/// Writes a CA (`ca.pem`, `ca.key`), a server certificate for localhost and 127.0.0.1
/// (`server.pem`, `server.key`) and a client certificate per identity (`{identity}.pem`,
/// `.key`, CN = identity), all ECDSA P-256, into `dir`.
pub fn write_certificates(
    dir: &Path,
    identities: impl Iterator<Item = String>,
) -> Result<usize, SecurityError> {
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| file_error(&path, e))
    };
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "ocpp-bench test CA");
    let ca_key = KeyPair::generate()?;
    write("ca.key", ca_key.serialize_pem())?;
    let ca = CertifiedIssuer::self_signed(params, ca_key)?;
    write("ca.pem", ca.pem())?;
    let key = KeyPair::generate()?;
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
        .signed_by(&key, &ca)?;
    write("server.pem", server.pem())?;
    write("server.key", key.serialize_pem())?;
    let mut count = 0;
    for identity in identities {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, &identity);
        let cert = params.signed_by(&key, &ca)?;
        write(&format!("{identity}.pem"), cert.pem())?;
        write(&format!("{identity}.key"), key.serialize_pem())?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_identity_and_match_the_credentials_file() {
        let a = derive_key("seed", "bench-1");
        assert_eq!(a.len(), KEY_LEN);
        assert_eq!(a, derive_key("seed", "bench-1"));
        assert_ne!(a, derive_key("seed", "bench-2"));
        assert_ne!(a, derive_key("other", "bench-1"));
        let dir = std::env::temp_dir().join(format!("bench-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials");
        let ids = (0..3).map(|i| format!("bench-{i}"));
        assert_eq!(write_credentials(&path, "seed", ids).unwrap(), 3);
        let store = ocpp_gateway::security::credentials::Credentials::load(&path).unwrap();
        assert!(store.verify("bench-1", &a));
        assert!(!store.verify("bench-2", &a));
        let header = basic_header("seed", "bench-1");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(header.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(&decoded[..8], b"bench-1:");
        assert_eq!(&decoded[8..], &a[..]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
