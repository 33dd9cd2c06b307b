//! Certificates for the security tests, generated per test with `rcgen`: a CA, server
//! certificates for `localhost`/127.0.0.1 (ECDSA, or RSA from a fixed test key, since ring
//! cannot generate RSA keys), client certificates with a chosen CN; files in a directory of
//! the test's own; and blocking wss clients (rustls + tungstenite) with Basic auth.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, PKCS_RSA_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::WebSocket;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;

use super::WATCHDOG;

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;
pub type TlsClient = WebSocket<TlsStream>;

/// A fixed 2048-bit RSA key (PKCS#8) for RSA certificates.
const RSA_KEY: &str = include_str!("../fixtures/rsa-2048.key");

/// A CA and the files of one test.
pub struct Pki {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate chain and its key.
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Pki {
    /// A fresh CA; files go to a new directory named after `test`.
    pub fn new(test: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("ocpp-pki-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{test} test CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
            .expect("CA certificate");
        let pki = Pki { dir, ca };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).expect("write CA");
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// Writes a server certificate for localhost and 127.0.0.1 to `{stem}.pem` and
    /// `{stem}.key` (RSA when `rsa`, else ECDSA P-256); returns the paths and the certificate.
    pub fn server(&self, stem: &str, rsa: bool) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let key = if rsa {
            KeyPair::from_pem_and_sign_algo(RSA_KEY, &PKCS_RSA_SHA256).expect("RSA test key")
        } else {
            KeyPair::generate().expect("key")
        };
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("server certificate");
        let (cert_path, key_path) = (
            self.path(&format!("{stem}.pem")),
            self.path(&format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path, cert.der().clone())
    }

    /// A client certificate with subject CN `cn`, signed by this CA.
    pub fn client(&self, cn: &str) -> ClientCert {
        self.client_with(cn, |_| {})
    }

    /// The same, issued a year ago and valid for `days` from now (a certificate of a normal
    /// life coming to its end).
    pub fn client_for_days(&self, cn: &str, days: i64) -> ClientCert {
        let now = time::OffsetDateTime::now_utc();
        self.client_with(cn, |params| {
            params.not_before = now - time::Duration::days(365);
            params.not_after = now + time::Duration::days(days);
        })
    }

    fn client_with(&self, cn: &str, shape: impl FnOnce(&mut CertificateParams)) -> ClientCert {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        shape(&mut params);
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("client certificate");
        ClientCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
        }
    }

    /// A CRL of this CA revoking `certs`, written to `name` (replacing it); its path.
    pub fn crl(&self, name: &str, certs: &[&CertificateDer<'_>]) -> PathBuf {
        let revoked_certs = certs
            .iter()
            .map(|der| {
                let (_, parsed) =
                    x509_parser::parse_x509_certificate(der.as_ref()).expect("a certificate");
                rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(parsed.raw_serial()),
                    revocation_time: rcgen::date_time_ymd(2026, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                }
            })
            .collect();
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2026, 1, 1),
            next_update: rcgen::date_time_ymd(2036, 1, 1),
            crl_number: rcgen::SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.ca).expect("CRL");
        let path = self.path(name);
        std::fs::write(&path, crl.pem().expect("PEM")).expect("write CRL");
        path
    }

    /// A client configuration trusting this CA, presenting `cert` if given.
    pub fn client_config(&self, cert: Option<ClientCert>) -> Arc<ClientConfig> {
        client_config_with(self, cert, None)
    }

    pub fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client configuration trusting `pki`'s CA, presenting `cert`, offering only `suites` (all
/// of ring's when None).
pub fn client_config_with(
    pki: &Pki,
    cert: Option<ClientCert>,
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> =
        vec![&rustls::version::TLS13, &rustls::version::TLS12];
    if let Some(suites) = suites {
        if suites
            .iter()
            .all(|s| s.version() == &rustls::version::TLS12)
        {
            versions = vec![&rustls::version::TLS12];
        }
        provider.cipher_suites = suites;
    }
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der()).expect("CA root");
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match cert {
        Some(cert) => builder
            .with_client_auth_cert(cert.chain, cert.key)
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    // Every handshake full, as each test expects; `tests/tls_resumption.rs` turns it back on.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// `config` keeping the session tickets it is given (the tests' default turns that off).
pub fn resuming(config: Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut config = (*config).clone();
    config.resumption = rustls::client::Resumption::in_memory_sessions(16);
    Arc::new(config)
}

/// Connects as `id` on `addr` (with `authorization` if given), boots, closes, and says how
/// the TLS handshake went (the ticket came with the upgrade's answer).
pub fn boot_once(
    addr: SocketAddr,
    tls: &Arc<ClientConfig>,
    id: &str,
    authorization: Option<&str>,
) -> rustls::HandshakeKind {
    let (mut client, _) = wss_connect(addr, Arc::clone(tls), id, authorization)
        .unwrap_or_else(|e| panic!("{id} at {addr}: {e}"));
    super::boot(&mut client);
    let kind = client
        .get_ref()
        .conn
        .handshake_kind()
        .expect("handshake done");
    let _ = client.close(None);
    kind
}

/// `Basic base64(identity:key)` with the key as bytes.
pub fn basic(identity: &str, key: &[u8]) -> String {
    let mut user_pass = identity.as_bytes().to_vec();
    user_pass.push(b':');
    user_pass.extend_from_slice(key);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// A TLS stream to `addr` for `localhost`, handshake done (errors, such as a refused client
/// certificate, come back as the io error).
pub fn tls_stream(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    tls_stream_after(addr, config, &[])
}

/// [`tls_stream`], with `prefix` (a PROXY header) sent before the handshake.
pub fn tls_stream_after(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    prefix: &[u8],
) -> std::io::Result<TlsStream> {
    use std::io::Write as _;
    let mut tcp = TcpStream::connect(addr)?;
    tcp.write_all(prefix)?;
    tcp.set_read_timeout(Some(WATCHDOG))?;
    tcp.set_write_timeout(Some(WATCHDOG))?;
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// A wss connection as `id` to `path_prefix/id`, with `authorization` if given.
pub fn wss_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    id: &str,
    authorization: Option<&str>,
) -> Result<(TlsClient, tungstenite::handshake::client::Response), tungstenite::Error> {
    wss_upgrade(tls_stream(addr, config)?, addr, id, authorization)
}

/// The WebSocket upgrade as `id` over an established TLS stream.
pub fn wss_upgrade(
    stream: TlsStream,
    addr: SocketAddr,
    id: &str,
    authorization: Option<&str>,
) -> Result<(TlsClient, tungstenite::handshake::client::Response), tungstenite::Error> {
    wss_upgrade_as(stream, addr, id, authorization, "ocpp1.6")
}

/// [`wss_upgrade`] offering `protocol`.
pub fn wss_upgrade_as(
    stream: TlsStream,
    addr: SocketAddr,
    id: &str,
    authorization: Option<&str>,
    protocol: &'static str,
) -> Result<(TlsClient, tungstenite::handshake::client::Response), tungstenite::Error> {
    let url = format!("wss://localhost:{}/ocpp/{id}", addr.port());
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
    if let Some(value) = authorization {
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(value).expect("header"),
        );
    }
    tungstenite::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => unreachable!("blocking socket"),
    })
}

/// The HTTP status of a refused upgrade (panics on anything else).
pub fn refused_status(result: Result<impl Sized, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade succeeded"),
    }
}

/// Writes a credentials file with one line per (identity, key).
pub fn credentials_file(path: &Path, entries: &[(&str, &[u8])]) {
    let lines: String = entries
        .iter()
        .map(|(id, key)| {
            let credential =
                ocpp_gateway::security::credentials::Credential::new(key).expect("credential");
            credential.line(id) + "\n"
        })
        .collect();
    std::fs::write(path, lines).expect("write credentials");
}

/// A WebSocket to `addr` as `id`, with `authorization` as the Authorization header.
pub fn connect_as(
    addr: SocketAddr,
    id: &str,
    authorization: Option<&str>,
) -> Result<super::Client, tungstenite::Error> {
    connect_as_offering(addr, id, authorization, "ocpp1.6")
}

/// [`connect_as`] offering `protocol`.
pub fn connect_as_offering(
    addr: SocketAddr,
    id: &str,
    authorization: Option<&str>,
    protocol: &'static str,
) -> Result<super::Client, tungstenite::Error> {
    let url = format!("ws://{addr}/ocpp/{}", id.replace(':', "%3A"));
    let mut request = url.into_client_request()?;
    let headers = request.headers_mut();
    headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
    if let Some(value) = authorization {
        headers.insert("Authorization", HeaderValue::from_str(value).unwrap());
    }
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(super::WATCHDOG)).unwrap();
    tungstenite::client(request, stream)
        .map(|(client, _)| client)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => unreachable!(),
        })
}
