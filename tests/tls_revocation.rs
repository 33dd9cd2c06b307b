//! `security.client_crl` on a profile 3 listener, with a stock rustls client over real sockets:
//! a revoked certificate is refused in the TLS handshake (counted); a reload (SIGHUP) reads the
//! CRL again and closes (1008) the open connection of a certificate it now revokes; a
//! certificate revoked after its session ticket was issued still resumes the TLS session but is
//! refused with 403 at the upgrade; a CRL that does not load keeps the old list; a certificate
//! the CRL does not list connects and resumes as before.

mod common;

use std::path::PathBuf;

use common::pki::*;
use common::*;
use ocpp_gateway::config::{Config, DEFAULT_TLS_TICKET_LIFETIME, TicketConfig};
use ocpp_gateway::security::Profile;
use ocpp_gateway::security::certificates::CertFiles;
use rustls::HandshakeKind;

fn config(pki: &Pki, crl: PathBuf) -> Config {
    let (cert, key, _) = pki.server("server", false);
    let mut config = test_config();
    config.security.profile = Profile::MutualTls;
    config.security.tls_certs = vec![CertFiles { cert, key }];
    config.security.client_ca = Some(pki.path("ca.pem"));
    config.security.client_crl = vec![crl];
    config.security.tickets = Some(TicketConfig {
        keys: None,
        lifetime: DEFAULT_TLS_TICKET_LIFETIME,
    });
    config
}

/// A second handle on a client certificate (the configuration takes one).
fn same(cert: &ClientCert) -> ClientCert {
    ClientCert {
        chain: cert.chain.clone(),
        key: cert.key.clone_key(),
    }
}

#[test]
fn revoked_certificates_are_refused_in_the_handshake_and_after_resuming() {
    let pki = Pki::new("crl");
    let cp1 = pki.client("CP-1");
    let cp2 = pki.client("CP-2");
    let crl = pki.crl("client.crl", &[&cp2.chain[0]]);
    let server = TestServer::start(config(&pki, crl.clone()));

    // CP-1 is not listed: boots, and resumes on its reconnect.
    let tls1 = resuming(pki.client_config(Some(same(&cp1))));
    assert_eq!(
        boot_once(server.addr, &tls1, "CP-1", None),
        HandshakeKind::Full
    );
    assert_eq!(
        boot_once(server.addr, &tls1, "CP-1", None),
        HandshakeKind::Resumed
    );

    // CP-2 is: the handshake fails.
    let tls2 = pki.client_config(Some(same(&cp2)));
    assert!(wss_connect(server.addr, tls2.clone(), "CP-2", None).is_err());
    server.wait_for("revoked in the handshake", |s| {
        s.certificates_revoked == 1 && s.tls_failures >= 1
    });

    // CP-4 is connected when its certificate is revoked.
    let cp4 = pki.client("CP-4");
    let (mut connected, _) = wss_connect(
        server.addr,
        pki.client_config(Some(same(&cp4))),
        "CP-4",
        None,
    )
    .expect("CP-4 connects");
    boot(&mut connected);

    // CP-1 and CP-4 revoked now (the CRL replaced, then SIGHUP's reload): CP-4's open
    // connection is closed with 1008.
    pki.crl("client.crl", &[&cp2.chain[0], &cp1.chain[0], &cp4.chain[0]]);
    server.server().reload();
    let close = expect_close(&mut connected).expect("CP-4 is closed");
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    server.wait_for("closed as revoked", |s| s.certificates_revoked == 2);
    // CP-1's ticket still resumes the TLS session, but the upgrade is refused.
    let stream = tls_stream(server.addr, tls1).expect("the session resumes");
    assert_eq!(stream.conn.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(
        refused_status(wss_upgrade(stream, server.addr, "CP-1", None)),
        403
    );
    server.wait_for("revoked at the upgrade", |s| s.certificates_revoked == 3);
    // And a full handshake with it fails.
    let fresh = pki.client_config(Some(same(&cp1)));
    assert!(wss_connect(server.addr, fresh, "CP-1", None).is_err());
    server.wait_for("revoked again", |s| s.certificates_revoked == 4);

    // A CRL that does not load on reload: the old list stays.
    std::fs::write(&crl, "not a CRL").unwrap();
    server.server().reload();
    assert!(wss_connect(server.addr, tls2, "CP-2", None).is_err());
    server.wait_for("still revoked", |s| s.certificates_revoked == 5);
    // Someone never listed connects as always.
    let cp3 = pki.client_config(Some(pki.client("CP-3")));
    assert_eq!(
        boot_once(server.addr, &cp3, "CP-3", None),
        HandshakeKind::Full
    );
    pki.cleanup();
}
