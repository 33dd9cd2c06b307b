//! A session ticket older than `security.tls_ticket_lifetime` does not resume, over a real
//! socket with a stock rustls client: the ticketers' clock is moved a lifetime ahead by a test
//! hook (nothing waits), and the client's reconnect with its now expired ticket gets a full
//! handshake; the ticket that full handshake gave resumes again. (Its own process: the hook
//! moves the clock of every ticketer in it.)

mod common;

use std::time::Duration;

use common::pki::*;
use common::*;
use ocpp_gateway::config::TicketConfig;
use ocpp_gateway::security::Profile;
use ocpp_gateway::security::certificates::CertFiles;
use ocpp_gateway::security::tickets::testing::skew_clock;
use rustls::HandshakeKind;

const KEY: &[u8] = b"sixteen-byte-key";

#[test]
fn an_expired_ticket_gets_a_full_handshake() {
    let pki = Pki::new("ticket-expired");
    credentials_file(&pki.path("credentials"), &[("CP1", KEY)]);
    let (cert, key, _) = pki.server("server", false);
    let mut config = test_config();
    config.security.profile = Profile::TlsBasicAuth;
    config.security.credentials = Some(pki.path("credentials"));
    config.security.tls_certs = vec![CertFiles { cert, key }];
    config.security.tickets = Some(TicketConfig {
        keys: None,
        lifetime: Duration::from_secs(600),
    });
    let server = TestServer::start(config);
    let auth = basic("CP1", KEY);
    for (name, tls) in [
        ("TLS 1.3", resuming(pki.client_config(None))),
        (
            "TLS 1.2",
            resuming(client_config_with(
                &pki,
                None,
                Some(vec![
                    rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                ]),
            )),
        ),
    ] {
        skew_clock(0);
        assert_eq!(
            boot_once(server.addr, &tls, "CP1", Some(&auth)),
            HandshakeKind::Full,
            "{name}"
        );
        assert_eq!(
            boot_once(server.addr, &tls, "CP1", Some(&auth)),
            HandshakeKind::Resumed,
            "{name}"
        );
        // A lifetime and a second later (the key is still there: memory keys rotate only when
        // sealing after a lifetime of the process's own clock).
        skew_clock(601);
        assert_eq!(
            boot_once(server.addr, &tls, "CP1", Some(&auth)),
            HandshakeKind::Full,
            "{name}: expired"
        );
        assert_eq!(
            boot_once(server.addr, &tls, "CP1", Some(&auth)),
            HandshakeKind::Resumed,
            "{name}: the new ticket"
        );
    }
    server.wait_for("four resumed", |s| s.tls_resumptions == 4);
    pki.cleanup();
}
