//! What does a TLS handshake cost the gateway, full and resumed from its session ticket, TLS 1.3
//! and TLS 1.2? Only the server's side is timed (reading the client's flight, answering, sealing
//! the next ticket), with the gateway's own server configuration (`TlsConfigs`: the
//! whitepaper's suites, an ECDSA P-256 certificate, the ticketer of a profile 2 listener). The
//! client's half runs untimed between the server's steps, in memory.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ocpp_gateway::config::{DEFAULT_TLS_TICKET_LIFETIME, TicketConfig};
use ocpp_gateway::security::certificates::{CertFiles, TlsConfigs, TlsFiles};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection};

/// The gateway's profile 2 configuration and the CA its certificate chains to.
fn configs() -> (Arc<ServerConfig>, rustls::RootCertStore) {
    let dir = std::env::temp_dir().join(format!("ocpp-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("certificate");
    let files = CertFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.cert, cert.pem()).expect("write");
    std::fs::write(&files.key, key.serialize_pem()).expect("write");
    let tls = TlsConfigs::load(
        TlsFiles {
            certs: vec![files],
            client_ca: None,
            client_crl: Vec::new(),
            tickets: Some(TicketConfig {
                keys: None,
                lifetime: DEFAULT_TLS_TICKET_LIFETIME,
            }),
        },
        false,
    )
    .expect("the gateway's configuration");
    let _ = std::fs::remove_dir_all(&dir);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    (Arc::clone(&tls.current().server_auth), roots)
}

/// A client of one TLS version trusting `roots`, keeping tickets or not.
fn client(
    version: &'static rustls::SupportedProtocolVersion,
    roots: &rustls::RootCertStore,
    resumption: Resumption,
) -> Arc<ClientConfig> {
    // rustls's client order (AES-256/SHA-384 first, as most clients); the server's wins.
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .expect("version")
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
    config.resumption = resumption;
    Arc::new(config)
}

/// One handshake (and the ticket that follows it); returns the server's time and the kind.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> (Duration, HandshakeKind) {
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = ClientConnection::new(Arc::clone(client), name).expect("client");
    let mut s = ServerConnection::new(Arc::clone(server)).expect("server");
    let mut spent = Duration::ZERO;
    let mut wire = Vec::with_capacity(8192);
    // Until the client has read everything the server sent, the ticket included.
    for _ in 0..8 {
        wire.clear();
        while c.wants_write() {
            c.write_tls(&mut wire).expect("client writes");
        }
        let started = Instant::now();
        let mut input = &wire[..];
        while !input.is_empty() {
            s.read_tls(&mut input).expect("server reads");
            s.process_new_packets().expect("server accepts");
        }
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).expect("server writes");
        }
        spent += started.elapsed();
        if wire.is_empty() && !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
        let mut input = &wire[..];
        while !input.is_empty() {
            c.read_tls(&mut input).expect("client reads");
            c.process_new_packets().expect("client accepts");
        }
    }
    assert!(!s.is_handshaking(), "handshake done");
    (spent, s.handshake_kind().expect("kind"))
}

fn bench(c: &mut Criterion) {
    let (server, roots) = configs();
    let mut group = c.benchmark_group("tls_handshake_server");
    for (version, name) in [
        (&rustls::version::TLS13, "tls13"),
        (&rustls::version::TLS12, "tls12"),
    ] {
        let full = client(version, &roots, Resumption::disabled());
        let resuming = client(version, &roots, Resumption::in_memory_sessions(4));
        assert_eq!(handshake(&server, &full).1, HandshakeKind::Full);
        assert_eq!(handshake(&server, &resuming).1, HandshakeKind::Full);
        assert_eq!(handshake(&server, &resuming).1, HandshakeKind::Resumed);
        group.bench_function(format!("{name}/full"), |b| {
            b.iter_custom(|n| (0..n).map(|_| black_box(handshake(&server, &full)).0).sum())
        });
        group.bench_function(format!("{name}/resumed"), |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| {
                        let (spent, kind) = handshake(&server, &resuming);
                        assert_eq!(kind, HandshakeKind::Resumed);
                        spent
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
