//! Question: what does checking one charge point's Basic-auth credentials cost at the upgrade
//! (decoding the header, splitting after the identity, looking the identity up among 100,000,
//! and the salted HMAC-SHA256 compared in constant time)? A reconnect storm of a whole fleet
//! pays it once per charge point; a password KDF would cost tens of milliseconds instead.
//!
//! `basic_auth/right_key` times an accepted check, `basic_auth/wrong_key` a refused one (the
//! wrong key is then tried as hex too, as charge points may send the key's hex text), and
//! `basic_auth/unknown_identity` one for an identity without credentials (checked against a
//! decoy, so it costs the same).

use std::hint::black_box;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use ocpp_gateway::security::check_basic;
use ocpp_gateway::security::credentials::{Credential, Credentials};

fn header(identity: &str, key: &[u8]) -> Vec<u8> {
    let mut user_pass = identity.as_bytes().to_vec();
    user_pass.push(b':');
    user_pass.extend_from_slice(key);
    let mut header = b"Basic ".to_vec();
    header.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(user_pass)
            .as_bytes(),
    );
    header
}

fn basic_auth(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("bench-basic-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("credentials");
    let key = |i: u32| format!("key-of-cp-{i:010}").into_bytes();
    let lines: String = (0..100_000)
        .map(|i| {
            let credential = Credential::new(&key(i)).expect("credential");
            credential.line(&format!("CP{i}")) + "\n"
        })
        .collect();
    std::fs::write(&path, lines).expect("write credentials");
    let store = Credentials::load(&path).expect("load credentials");
    let _ = std::fs::remove_dir_all(&dir);

    let right = header("CP4242", &key(4242));
    let wrong = header("CP4242", b"0123456789abcdef0123");
    let unknown = header("NOPE", &key(4242));
    assert!(check_basic(&store, "CP4242", Some(&right)).is_ok());
    assert!(check_basic(&store, "CP4242", Some(&wrong)).is_err());
    let mut group = c.benchmark_group("basic_auth");
    group.bench_function("right_key", |b| {
        b.iter(|| check_basic(&store, black_box("CP4242"), Some(black_box(&right))))
    });
    group.bench_function("wrong_key", |b| {
        b.iter(|| check_basic(&store, black_box("CP4242"), Some(black_box(&wrong))))
    });
    group.bench_function("unknown_identity", |b| {
        b.iter(|| check_basic(&store, black_box("NOPE"), Some(black_box(&unknown))))
    });
    group.finish();
}

criterion_group!(benches, basic_auth);
criterion_main!(benches);
