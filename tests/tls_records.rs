//! The gateway's own record layer (`transport`'s records, which replaces rustls's once the handshake is
//! done) understood by a stock rustls client (`ClientConnection`, the buffered API), in memory
//! (`common::tls_pipe`), for every cipher suite the gateway configures: the TLS 1.3 suites with
//! its ECDSA and with its RSA certificate, the TLS 1.2 suites with the certificate each names.
//! Per suite: application data both ways around the 16 KiB record limit, whole and in small
//! reads; 65,546 one-byte records each way, so the sequence numbers cross 2^8 and 2^16; in
//! TLS 1.3, KeyUpdates the client asks for, which the gateway follows and answers; and a key
//! that has sealed its limit: TLS 1.3 sends its own KeyUpdate, TLS 1.2 stops sealing. The limit
//! is 2^24 records; a test hook (`TlsLayer::limit_records_per_key`) lowers it to 300 so the
//! test reaches it in a few hundred records.

mod common;

use common::tls_pipe::{Failure, Pipe};
use common::tls_suites::Gateway;
use rustls::ProtocolVersion;
use transport::tls::TlsError;

/// Plaintext sizes around the record limit (16,384 bytes per record).
const SIZES: [usize; 7] = [0, 1, 100, 16_383, 16_384, 16_385, 40_000];
/// One-byte records each way: sequence numbers 0 to 65,545 cross 255/256 and 65,535/65,536.
const MANY_RECORDS: usize = (1 << 16) + 10;
/// Client KeyUpdates per TLS 1.3 connection.
const KEY_UPDATES: usize = 3;
/// The lowered limit of records per key, and how many records are sealed against it.
const LIMIT: u64 = 300;
const PAST_LIMIT: usize = 1_000;

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + seed % 251) % 251) as u8)
        .collect()
}

/// `data` from the client reaches the gateway whole, and back.
fn both_ways(pipe: &mut Pipe, data: &[u8], write_size: usize, what: &str) {
    let received = pipe
        .client_to_gateway(data, write_size)
        .unwrap_or_else(|e| panic!("{what}: client -> gateway: {e:?}"));
    assert!(!received.closed, "{what}");
    assert!(received.plain == data, "{what}: client -> gateway differs");
    let received = pipe
        .gateway_to_client(data)
        .unwrap_or_else(|e| panic!("{what}: gateway -> client: {e:?}"));
    assert!(!received.closed, "{what}");
    assert!(received.plain == data, "{what}: gateway -> client differs");
}

/// The records in `wire` (outer headers only).
fn record_count(wire: &[u8]) -> usize {
    let mut count = 0;
    let mut rest = wire;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        rest = &rest[(5 + len).min(rest.len())..];
        count += 1;
    }
    count
}

#[test]
fn every_suite_carries_data_both_ways_whole_and_in_small_reads() {
    let gateway = Gateway::new("records-data");
    for case in gateway.cases() {
        for read_size in [usize::MAX, 1_000, 7] {
            let mut pipe = gateway.connect(&case, read_size);
            for size in SIZES {
                let what = format!("{} size {size} reads of {read_size}", case.name);
                both_ways(&mut pipe, &pattern(size, read_size), usize::MAX, &what);
            }
            // Each side's close_notify ends the other's stream.
            pipe.gateway_closes().expect("close_notify sealed");
            assert!(
                pipe.client_reads().expect("client reads").closed,
                "{}",
                case.name
            );
            pipe.client.send_close_notify();
            let wire = pipe.client_flight().expect("client flight");
            assert!(pipe.gateway_reads(&wire).expect("gateway reads").closed);
            pipe.server.release(&mut pipe.gauge);
            assert_eq!(pipe.gauge, 0, "{}: nothing held", case.name);
        }
    }
}

#[test]
fn sequence_numbers_cross_2_to_the_8_and_2_to_the_16_in_every_suite() {
    let gateway = Gateway::new("records-many");
    let many = pattern(MANY_RECORDS, 3);
    for case in gateway.cases() {
        let mut pipe = gateway.connect(&case, usize::MAX);
        // One write, one record.
        let wire = pipe.client_seals(&many, 1).expect("client seals");
        assert_eq!(record_count(&wire), MANY_RECORDS, "{}", case.name);
        let received = pipe.gateway_reads(&wire).expect("gateway reads");
        assert!(
            received.plain == many,
            "{}: client -> gateway differs",
            case.name
        );
        for byte in &many {
            pipe.gateway_seals(std::slice::from_ref(byte))
                .expect("gateway seals");
        }
        assert_eq!(record_count(&pipe.to_client), MANY_RECORDS, "{}", case.name);
        let received = pipe.client_reads().expect("client reads");
        assert!(
            received.plain == many,
            "{}: gateway -> client differs",
            case.name
        );
        // Past 2^16 records, full ones still open both ways.
        both_ways(&mut pipe, &pattern(40_000, 1), usize::MAX, &case.name);
    }
}

#[test]
fn tls13_key_updates_from_the_client_are_followed_and_answered() {
    let gateway = Gateway::new("records-key-update");
    let cases = gateway.cases();
    let tls13 = cases
        .iter()
        .filter(|case| case.suite.version() == &rustls::version::TLS13);
    let mut updated = 0;
    for case in tls13 {
        let mut pipe = gateway.connect(case, 1_000);
        assert_eq!(
            pipe.client.protocol_version(),
            Some(ProtocolVersion::TLSv1_3)
        );
        for round in 0..KEY_UPDATES {
            let what = format!("{} update {round}", case.name);
            // Some records under the old keys first, so the new ones start from a used key.
            both_ways(&mut pipe, &pattern(300, round), 1, &what);
            pipe.client
                .refresh_traffic_keys()
                .unwrap_or_else(|e| panic!("{what}: {e:?}"));
            // The KeyUpdate (asking for ours) and data under the client's new key, in one flight.
            let data = pattern(20_000, round);
            let received = pipe
                .client_to_gateway(&data, 5_000)
                .unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert!(
                received.plain == data,
                "{what}: the gateway followed the client's key"
            );
            assert_eq!(
                record_count(&pipe.to_client),
                1,
                "{what}: the gateway answers with one KeyUpdate"
            );
            // Our answer, then data under our new key: the client must follow both.
            let received = pipe
                .gateway_to_client(&data)
                .unwrap_or_else(|e| panic!("{what}: the client did not follow: {e:?}"));
            assert!(
                received.plain == data,
                "{what}: the client followed our key"
            );
            updated += 1;
        }
        both_ways(&mut pipe, &pattern(40_000, 9), usize::MAX, &case.name);
    }
    assert_eq!(updated, 6 * KEY_UPDATES, "3 suites x 2 certificates");
}

#[test]
fn a_key_that_sealed_its_limit_is_replaced_in_tls13_and_ends_tls12() {
    let gateway = Gateway::new("records-limit");
    for case in gateway.cases() {
        let mut pipe = gateway.connect(&case, usize::MAX);
        assert!(pipe.server.limit_records_per_key(LIMIT), "{}", case.name);
        let bytes = pattern(PAST_LIMIT, 5);
        if case.suite.version() == &rustls::version::TLS13 {
            for byte in &bytes {
                pipe.gateway_seals(std::slice::from_ref(byte))
                    .expect("gateway seals");
            }
            // Before records LIMIT, 2 LIMIT and 3 LIMIT: a KeyUpdate and a new key.
            let updates = (PAST_LIMIT - 1) / LIMIT as usize;
            assert_eq!(
                record_count(&pipe.to_client),
                PAST_LIMIT + updates,
                "{}: {updates} KeyUpdates",
                case.name
            );
            let received = pipe
                .client_reads()
                .unwrap_or_else(|e| panic!("{}: the client did not follow: {e:?}", case.name));
            assert!(
                received.plain == bytes,
                "{}: data under the new keys",
                case.name
            );
            // The client's key did not change (we did not ask it to): both ways still work.
            both_ways(&mut pipe, &pattern(1_000, 6), 1, &case.name);
        } else {
            // The key sealed the gateway's Finished first (sequence number 0).
            let room = LIMIT as usize - 1;
            for (i, byte) in bytes.iter().enumerate() {
                let sealed = pipe.gateway_seals(std::slice::from_ref(byte));
                if i < room {
                    sealed.unwrap_or_else(|e| panic!("{} record {i}: {e:?}", case.name));
                } else {
                    assert!(
                        matches!(sealed, Err(Failure::Gateway(TlsError::Encrypt(_)))),
                        "{} record {i}: {sealed:?}",
                        case.name
                    );
                }
            }
            let received = pipe.client_reads().expect("client reads");
            assert!(
                received.plain == bytes[..room],
                "{}: the records before the limit",
                case.name
            );
        }
    }
}
