//! The gateway's TLS server configuration as it loads it (`TlsConfigs`, an ECDSA and an RSA
//! certificate), and one case per cipher suite it configures: each TLS 1.3 suite with either
//! certificate, each TLS 1.2 suite with the certificate it names. Connections are in-memory
//! [`Pipe`]s to a stock rustls client offering just that suite.

use std::path::Path;
use std::sync::Arc;

use ocpp_gateway::security::certificates::{CertFiles, TlsConfigs, TlsFiles, provider};
use rustls::pki_types::CertificateDer;
use rustls::{CipherSuite, ServerConfig, SupportedCipherSuite};

use super::pki::{Pki, client_config_with};
use super::tls_pipe::Pipe;

/// The gateway's server configurations with both certificates, each one preferred in turn.
pub struct Gateway {
    pki: Pki,
    ecdsa_first: Arc<ServerConfig>,
    rsa_first: Arc<ServerConfig>,
    ecdsa: CertificateDer<'static>,
    rsa: CertificateDer<'static>,
}

/// One handshake to run: a suite, and the certificate the client must see.
pub struct Case {
    pub suite: SupportedCipherSuite,
    server: Arc<ServerConfig>,
    certificate: CertificateDer<'static>,
    pub name: String,
}

impl Gateway {
    pub fn new(test: &str) -> Gateway {
        let pki = Pki::new(test);
        let (ecdsa_cert, ecdsa_key, ecdsa) = pki.server("ecdsa", false);
        let (rsa_cert, rsa_key, rsa) = pki.server("rsa", true);
        let load = |certs: [(&Path, &Path); 2]| {
            let files = TlsFiles {
                certs: certs
                    .into_iter()
                    .map(|(cert, key)| CertFiles {
                        cert: cert.to_owned(),
                        key: key.to_owned(),
                    })
                    .collect(),
                client_ca: None,
                client_crl: Vec::new(),
                // As shipped: a session ticket follows every full handshake.
                tickets: Some(ocpp_gateway::config::TicketConfig {
                    keys: None,
                    lifetime: ocpp_gateway::config::DEFAULT_TLS_TICKET_LIFETIME,
                }),
            };
            // What the gateway loads for a profile 2 listener.
            TlsConfigs::load(files, false)
                .expect("configuration loads")
                .current()
                .server_auth
                .clone()
        };
        let ecdsa_pair = (ecdsa_cert.as_path(), ecdsa_key.as_path());
        let rsa_pair = (rsa_cert.as_path(), rsa_key.as_path());
        Gateway {
            ecdsa_first: load([ecdsa_pair, rsa_pair]),
            rsa_first: load([rsa_pair, ecdsa_pair]),
            pki,
            ecdsa,
            rsa,
        }
    }

    /// Every configured suite: TLS 1.3 ones with each certificate, TLS 1.2 ones with theirs.
    pub fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for suite in provider().cipher_suites.iter().copied() {
            let with =
                |server: &Arc<ServerConfig>, certificate: &CertificateDer<'static>, key: &str| {
                    Case {
                        suite,
                        server: Arc::clone(server),
                        certificate: certificate.clone(),
                        name: format!("{:?} with the {key} certificate", suite.suite()),
                    }
                };
            if suite.version() == &rustls::version::TLS13 {
                cases.push(with(&self.ecdsa_first, &self.ecdsa, "ECDSA"));
                cases.push(with(&self.rsa_first, &self.rsa, "RSA"));
            } else if is_rsa_suite(suite.suite()) {
                // Offered the ECDSA certificate first, the gateway still picks the one the
                // suite can use.
                cases.push(with(&self.ecdsa_first, &self.rsa, "RSA"));
            } else {
                cases.push(with(&self.rsa_first, &self.ecdsa, "ECDSA"));
            }
        }
        assert_eq!(
            cases.len(),
            10,
            "3 TLS 1.3 suites x 2 certificates, 4 TLS 1.2 suites"
        );
        cases
    }

    /// A connection for `case` whose gateway side reads at most `read_size` bytes at a time.
    pub fn connect(&self, case: &Case, read_size: usize) -> Pipe {
        let client = client_config_with(&self.pki, None, Some(vec![case.suite]));
        let pipe = Pipe::connect(Arc::clone(&case.server), client, read_size)
            .unwrap_or_else(|e| panic!("{}: handshake: {e:?}", case.name));
        assert_eq!(
            pipe.client.negotiated_cipher_suite(),
            Some(case.suite),
            "{}",
            case.name
        );
        let chain = pipe
            .client
            .peer_certificates()
            .expect("a server certificate");
        assert_eq!(chain.first(), Some(&case.certificate), "{}", case.name);
        assert!(
            pipe.server.is_established(),
            "{}: rustls handed over",
            case.name
        );
        pipe
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.pki.cleanup();
    }
}

fn is_rsa_suite(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    )
}
