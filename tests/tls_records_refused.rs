//! What the gateway's own record layer (`transport`'s records) refuses from a stock rustls client, for
//! every cipher suite it configures, in memory (`common::tls_pipe`): a record with one byte
//! flipped (in its header's type or length, in TLS 1.2's explicit nonce, in the ciphertext, in
//! the tag) fails the connection with the record error and opens nothing, without a panic; and
//! after close_notify nothing more is opened, even a genuine record sealed after it, whether it
//! arrives in the same read or a later one (RFC 8446 6.1: data after a closure alert is
//! ignored), and nothing of it is kept; and in TLS 1.3 more than 32 KeyUpdates in a row without
//! application data (each costs a key derivation and, when asked, an answer) fail it, as
//! rustls would.

mod common;

use std::io::Write as _;

use common::tls_pipe::{Failure, Pipe};
use common::tls_suites::{Case, Gateway};
use transport::tls::TlsError;

/// The client's record, sealed after `before` (whose records are delivered first).
fn sealed_record(pipe: &mut Pipe, before: &[u8], data: &[u8]) -> Vec<u8> {
    let received = pipe
        .client_to_gateway(before, usize::MAX)
        .expect("delivered");
    assert_eq!(received.plain, before);
    pipe.client_seals(data, usize::MAX).expect("sealed")
}

/// Byte positions to flip in a record of `len` bytes: header type and length, the start of
/// the body (TLS 1.2's explicit nonce, else ciphertext), the middle, the last tag byte.
fn positions(len: usize) -> [(usize, &'static str); 6] {
    [
        (0, "content type"),
        (3, "length, high byte"),
        (4, "length, low byte"),
        (5, "first byte of the body"),
        (len / 2, "ciphertext"),
        (len - 1, "tag"),
    ]
}

fn check_flips(gateway: &Gateway, case: &Case) {
    for read_size in [usize::MAX, 3] {
        let probe = {
            let mut pipe = gateway.connect(case, read_size);
            sealed_record(&mut pipe, b"first", b"a record to tamper with").len()
        };
        for (at, part) in positions(probe) {
            let what = format!(
                "{} flip in {part} (byte {at}), reads of {read_size}",
                case.name
            );
            let mut pipe = gateway.connect(case, read_size);
            let mut record = sealed_record(&mut pipe, b"first", b"a record to tamper with");
            record[at] ^= 0x01;
            match pipe.gateway_reads(&record) {
                // The record error, named by what failed.
                Err(Failure::Gateway(TlsError::Record(reason))) => {
                    let expected: &[&str] = match part {
                        "content type" => &[
                            "record does not decrypt",
                            "unprotected record after the handshake",
                        ],
                        _ => &["record does not decrypt"],
                    };
                    assert!(expected.contains(&reason), "{what}: {reason}");
                }
                // A longer length: the record is not complete yet, so nothing is opened and
                // its bytes wait for the rest.
                Ok(received) if part.starts_with("length") && record[at] & 1 == 1 => {
                    assert!(received.plain.is_empty() && !received.closed, "{what}");
                    assert!(pipe.server.held() > 0, "{what}: the record waits");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_flipped_byte_fails_the_connection_in_every_suite() {
    let gateway = Gateway::new("records-flipped");
    for case in gateway.cases() {
        check_flips(&gateway, &case);
    }
}

#[test]
fn nothing_after_close_notify_is_opened_in_every_suite() {
    let gateway = Gateway::new("records-after-close");
    for case in gateway.cases() {
        for read_size in [usize::MAX, 7] {
            let what = format!("{} reads of {read_size}", case.name);
            let mut pipe = gateway.connect(&case, read_size);
            // A genuine flight: data, close_notify, then more data the client seals after it.
            pipe.client
                .writer()
                .write_all(b"before")
                .expect("client writes");
            pipe.client.send_close_notify();
            let mut flight = pipe
                .client_seals(b"after close_notify", usize::MAX)
                .expect("sealed");
            let received = pipe.gateway_reads(&flight).expect("gateway reads");
            assert_eq!(received.plain, b"before", "{what}");
            assert!(received.closed, "{what}");
            assert_eq!(
                pipe.server.held(),
                0,
                "{what}: nothing kept after close_notify"
            );
            // A later read, with another genuine record: still closed, still nothing.
            flight = pipe
                .client_seals(b"later still", usize::MAX)
                .expect("sealed");
            let received = pipe.gateway_reads(&flight).expect("gateway reads");
            assert!(received.plain.is_empty(), "{what}: {:?}", received.plain);
            assert!(received.closed, "{what}");
            assert_eq!(pipe.server.held(), 0, "{what}");
        }
    }
}

#[test]
fn key_updates_without_data_are_bounded() {
    let gateway = Gateway::new("records-key-updates");
    for case in gateway.cases() {
        if case.suite.version() != &rustls::version::TLS13 {
            continue;
        }
        let what = case.name.clone();
        let mut pipe = gateway.connect(&case, usize::MAX);
        // 32 in a row are followed; data resets the count, so 32 more are too.
        for _ in 0..2 {
            for _ in 0..32 {
                pipe.client.refresh_traffic_keys().expect("client updates");
            }
            let flight = pipe.client_seals(b"data", usize::MAX).expect("sealed");
            let received = pipe
                .gateway_reads(&flight)
                .expect("32 KeyUpdates are followed");
            assert_eq!(received.plain, b"data", "{what}");
            pipe.to_client.clear();
        }
        for _ in 0..33 {
            pipe.client.refresh_traffic_keys().expect("client updates");
        }
        let flight = pipe.client_flight().expect("flight");
        match pipe.gateway_reads(&flight) {
            Err(Failure::Gateway(TlsError::Record(why))) => {
                assert!(why.contains("KeyUpdate"), "{what}: {why}");
            }
            other => panic!("{what}: the 33rd KeyUpdate in a row was taken: {other:?}"),
        }
    }
}
