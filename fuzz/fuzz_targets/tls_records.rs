//! The gateway's TLS record opener (`transport::tls::records`, behind `TlsLayer`) on arbitrary bytes, and
//! in round trips with a stock rustls client (`ClientConnection`). One connection per suite the
//! gateway configures is set up once per process: the gateway's own configuration
//! (`TlsConfigs`, with an ECDSA and an RSA certificate made by rcgen) and a real handshake in memory
//! (`tests/common/tls_pipe.rs`, shared with the record-layer tests). The first byte picks the
//! suite and what the rest of the input is:
//! - ciphertext, alone or behind a genuine record of the client's: the opener must not panic,
//!   may only refuse with a record error, and opens nothing but the genuine record (nobody
//!   without the keys makes a record that opens);
//! - plaintext for a round trip, after a client KeyUpdate (TLS 1.3) if the byte says so, in
//!   writes and gateway reads of sizes the next bytes pick: the gateway must open exactly what
//!   the client sealed, and the client must read exactly what the gateway sealed.
//!
//! A refused record changes no key or sequence number (nothing advances before a tag
//! verifies), so the connections stay in step from input to input. Their sequence numbers do
//! differ from one run to the next; an input that fails only at some count would show up as a
//! crash that does not reproduce alone.
#![no_main]

use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use transport::tls::TlsError;
use ocpp_gateway::security::certificates::{CertFiles, TlsConfigs, TlsFiles, provider};
use rustls::pki_types::CertificateDer;

#[path = "../../tests/common/tls_pipe.rs"]
mod tls_pipe;

use tls_pipe::{Failure, Pipe};

/// What the bytes after the first one are.
enum Mode {
    Garbage,
    GenuineThenGarbage,
    RoundTrip,
    KeyUpdateThenRoundTrip,
}

static PIPES: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

/// The fixed RSA test key (ring cannot generate RSA keys).
const RSA_KEY: &str = include_str!("../../tests/fixtures/rsa-2048.key");

/// One established connection per configured suite, to the gateway's configuration with an
/// ECDSA and an RSA certificate (each TLS 1.2 suite gets the one it names).
fn connect_all() -> Vec<Pipe> {
    let dir = std::env::temp_dir().join(format!("ocpp-fuzz-tls-records-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let rsa = rcgen::KeyPair::from_pem_and_sign_algo(RSA_KEY, &rcgen::PKCS_RSA_SHA256);
    let keys = [
        ("ecdsa", rcgen::KeyPair::generate().expect("ECDSA key")),
        ("rsa", rsa.expect("RSA key")),
    ];
    let certs = keys
        .into_iter()
        .map(|(stem, key)| {
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                .expect("params")
                .signed_by(&key, &ca)
                .expect("certificate");
            let files = CertFiles {
                cert: dir.join(format!("{stem}.pem")),
                key: dir.join(format!("{stem}.key")),
            };
            std::fs::write(&files.cert, cert.pem()).expect("write certificate");
            std::fs::write(&files.key, key.serialize_pem()).expect("write key");
            files
        })
        .collect();
    let files = TlsFiles {
        certs,
        client_ca: None,
        client_crl: Vec::new(),
        tickets: None,
    };
    let server = TlsConfigs::load(files, false)
        .expect("the gateway's configuration")
        .current()
        .server_auth
        .clone();
    let _ = std::fs::remove_dir_all(&dir);
    let ca_der: CertificateDer<'static> = ca.der().clone();
    provider()
        .cipher_suites
        .iter()
        .copied()
        .map(|suite| {
            let mut client = rustls::crypto::ring::default_provider();
            client.cipher_suites = vec![suite];
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca_der.clone()).expect("root");
            let client = rustls::ClientConfig::builder_with_provider(Arc::new(client))
                .with_protocol_versions(&[suite.version()])
                .expect("version")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Pipe::connect(Arc::clone(&server), Arc::new(client), usize::MAX)
                .unwrap_or_else(|e| panic!("{:?}: handshake: {e:?}", suite.suite()))
        })
        .collect()
}

/// 0 stands for "as much as there is".
fn size(byte: u8) -> usize {
    match byte {
        0 => usize::MAX,
        n => usize::from(n),
    }
}

/// Garbage must be refused with a record error or wait as an unfinished record; either way
/// nothing opens.
fn refused(pipe: &mut Pipe, wire: &[u8], genuine: &[u8]) {
    match pipe.gateway_reads(wire) {
        Ok(received) => {
            assert!(received.plain == genuine, "garbage opened");
            assert!(!received.closed, "garbage closed the stream");
        }
        Err(Failure::Gateway(TlsError::Record(_))) => {}
        Err(e) => panic!("garbage failed otherwise: {e:?}"),
    }
    pipe.drop_held();
    pipe.to_client.clear();
}

fn round_trip(pipe: &mut Pipe, data: &[u8], write_size: usize) {
    let received = pipe
        .client_to_gateway(data, write_size)
        .unwrap_or_else(|e| panic!("client -> gateway: {e:?}"));
    assert!(
        received.plain == data && !received.closed,
        "client -> gateway differs"
    );
    let received = pipe
        .gateway_to_client(data)
        .unwrap_or_else(|e| panic!("gateway -> client: {e:?}"));
    assert!(
        received.plain == data && !received.closed,
        "gateway -> client differs"
    );
}

fuzz_target!(|data: &[u8]| {
    let [selector, rest @ ..] = data else {
        return;
    };
    let mut pipes = PIPES.lock().unwrap_or_else(|e| e.into_inner());
    if pipes.is_empty() {
        *pipes = connect_all();
    }
    let count = pipes.len();
    let pipe = &mut pipes[usize::from(*selector) % count];
    let mode = match (usize::from(*selector) / count) % 4 {
        0 => Mode::Garbage,
        1 => Mode::GenuineThenGarbage,
        2 => Mode::RoundTrip,
        _ => Mode::KeyUpdateThenRoundTrip,
    };
    match (mode, rest) {
        (Mode::Garbage, garbage) => {
            pipe.read_size = usize::MAX;
            refused(pipe, garbage, &[]);
        }
        (Mode::GenuineThenGarbage, [split, read, rest @ ..]) => {
            let (genuine, garbage) = rest.split_at(usize::from(*split).min(rest.len()));
            let mut wire = pipe
                .client_seals(genuine, usize::MAX)
                .expect("client seals");
            wire.extend_from_slice(garbage);
            pipe.read_size = size(*read);
            refused(pipe, &wire, genuine);
        }
        (Mode::RoundTrip, [write, read, rest @ ..]) => {
            pipe.read_size = size(*read);
            round_trip(pipe, rest, size(*write));
        }
        (Mode::KeyUpdateThenRoundTrip, [write, read, rest @ ..]) => {
            // TLS 1.2 has no KeyUpdate: a plain round trip.
            let _ = pipe.client.refresh_traffic_keys();
            pipe.read_size = size(*read);
            round_trip(pipe, rest, size(*write));
        }
        _ => {}
    }
});
