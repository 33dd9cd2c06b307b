//! Which URLs name a charge point: `{prefix}/{percent-encoded id}`, 1 to 48 characters of
//! OCPP 2.0.1's identifierString (or, with `ocpp.identity_charset = "unicode"`, letters, marks
//! and digits of assigned code points too, never an invisible one), not `.` or `..`. Anything
//! else is 404; a request that is not HTTP is 400.

mod common;

use common::*;

#[test]
fn wrong_path_gets_404() {
    let server = TestServer::start(test_config());
    for path in ["/", "/ocpp", "/ocpp/", "/other/CP1", "/ocpp/CP1/extra"] {
        let answer = raw_exchange(server.addr, upgrade_request(path, "").as_bytes());
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
    }
    let err = try_connect(
        server.addr,
        &format!("ws://{}/nowhere/CP1", server.addr),
        "ocpp1.6",
    );
    match err {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected HTTP 404, got {other:?}"),
    }
    assert_eq!(server.stats().handshakes_ok, 0);
}

#[test]
fn id_longer_than_48_characters_gets_404() {
    let server = TestServer::start(test_config());
    let longest = "x".repeat(48);
    let mut ok = connect(&server, &longest);
    boot(&mut ok);
    let too_long = "x".repeat(49);
    match try_connect(server.addr, &server.url(&too_long), "ocpp1.6") {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected HTTP 404, got {other:?}"),
    }
}

#[test]
fn look_alike_and_path_like_identities_get_404() {
    let server = TestServer::start(test_config());
    for encoded in [
        "CP%E2%80%AE1",    // U+202E right-to-left override
        "CP%E2%80%8B1",    // U+200B zero-width space
        "%EF%BB%BFCP1",    // U+FEFF byte order mark
        "CP%E2%80%A81",    // U+2028 line separator
        "CP%E2%80%A91",    // U+2029 paragraph separator
        "CP%E2%81%A61",    // U+2066 left-to-right isolate
        "%20CP1",          // leading space
        "CP1%20",          // trailing space
        "CP1%C2%A0",       // trailing no-break space
        "CP%091",          // tab
        "CP%E3%85%A4X",    // U+3164 Hangul filler: reads as "CPX"
        "CP%CD%8FX",       // U+034F combining grapheme joiner
        "CP%EF%B8%8FX",    // U+FE0F variation selector
        "CP%F3%A0%84%80X", // U+E0100 variation selector supplement
        "CP%CD%B8X",       // U+0378, unassigned
        "RDAM%20123",      // a space inside
        "%C3%A9t%C3%A9",   // not ASCII: only with identity_charset = "unicode"
        ".",
        "..",
        "%2E%2E",
    ] {
        let path = format!("/ocpp/{encoded}");
        let answer = raw_exchange(server.addr, upgrade_request(&path, "").as_bytes());
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
    }
    let mut fine = connect(&server, "a.b-c%3A%2A_%3D%2B%7C%40");
    boot(&mut fine);
    assert_eq!(server.stats().handshakes_ok, 1);
}

#[test]
fn the_unicode_charset_takes_letters_but_never_invisible_ones() {
    let mut config = test_config();
    config.ocpp.identity_charset = ocpp_gateway::types::IdentityRule::Unicode;
    let server = TestServer::start(config);
    for encoded in ["CP%E3%85%A4X", "CP%EF%B8%8FX", "RDAM%20123", "CP%E2%80%8B1"] {
        let path = format!("/ocpp/{encoded}");
        let answer = raw_exchange(server.addr, upgrade_request(&path, "").as_bytes());
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
    }
    let mut fine = connect(&server, "%C3%A9t%C3%A9-%E5%85%85%E7%94%B5");
    boot(&mut fine);
    assert_eq!(server.stats().handshakes_ok, 1);
}

#[test]
fn percent_encoded_id_is_decoded() {
    // "RDAM-123" spelled two ways is one identity: the second connection takes over the first.
    let server = TestServer::start(test_config());
    let mut first = connect(&server, "RDAM-123");
    boot(&mut first);
    let mut second = connect(&server, "RDAM%2D12%33");
    let frame = expect_close(&mut first).expect("the first connection is closed");
    assert_eq!(u16::from(frame.code), 1000);
    boot(&mut second);
}

#[test]
fn garbage_gets_400() {
    let server = TestServer::start(test_config());
    let answer = raw_exchange(server.addr, b"\x16\x03\x01garbage that is not HTTP\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    // Valid HTTP that is not an upgrade is a bad request too.
    let answer = raw_exchange(server.addr, b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
}
