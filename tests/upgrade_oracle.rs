//! The gateway's upgrade-request parser agrees with httparse called directly on 50,000
//! generated requests (the rule is tests/oracle/upgrade.rs, which the `upgrade_diff` fuzz
//! target shares): valid upgrades varied in method, version, target, header count (around the
//! 32-header limit), repeated and malformed WebSocket headers and size (around the 8 KiB
//! limit), then cut, bit-flipped or given a stray byte.

#[path = "oracle/upgrade.rs"]
mod oracle;
#[path = "oracle/rng.rs"]
mod rng;

use rng::Rng;

use wire::upgrade::{self, Parsed};

const INPUTS: usize = 50_000;

fn input(rng: &mut Rng) -> Vec<u8> {
    let method = if rng.chance(8) {
        rng.pick(&["POST", "get", "HEAD"])
    } else {
        "GET"
    };
    let target = rng.pick(&["/ocpp/CP1", "/ocpp/CP%2D1?x=1", "/", "*", "/a b"]);
    let version = if rng.chance(8) {
        rng.pick(&["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 "])
    } else {
        "HTTP/1.1"
    };
    let mut text = format!("{method} {target} {version}\r\nHost: cs.example\r\n");
    let mut lines = vec![
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];
    if rng.chance(3) {
        lines.push("Sec-WebSocket-Protocol: ocpp1.5, ocpp1.6");
    }
    if rng.chance(4) {
        lines.push("Authorization: Basic Q1AxOnNlY3JldA==");
    }
    if rng.chance(6) {
        let i = rng.below(lines.len() as u64) as usize;
        lines.push(lines[i]); // repeated
    }
    if rng.chance(6) {
        let odd = rng.pick(&[
            "Sec-WebSocket-Version: 8",
            "Sec-WebSocket-Key: short",
            "Upgrade: h2c",
            "Connection: close",
        ]);
        let i = rng.below(lines.len() as u64) as usize;
        lines[i] = odd;
    }
    for line in &lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    // Around the 32-header limit: 5-9 lines so far, with Host.
    for i in 0..rng.below(30) {
        text.push_str(&format!("X-{i}: y\r\n"));
    }
    if rng.chance(300) {
        let pad = 8 * 1024 - 64 + rng.below(128) as usize;
        text.push_str(&format!("X-Pad: {}\r\n", "p".repeat(pad)));
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    if rng.chance(4) {
        bytes.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]); // the first frame, right behind
    }
    match rng.below(5) {
        0 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
        1 => {
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
        }
        2 => {
            let at = rng.below(bytes.len() as u64 + 1) as usize;
            let stray = [b'\r', b'\n', 0, b' ', b':', b'\t', 0x7F, 0xC3][rng.below(8) as usize];
            bytes.insert(at, stray);
        }
        _ => {}
    }
    bytes
}

#[test]
fn upgrade_requests_agree_with_httparse() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut upgrades, mut refused, mut partial) = (0, 0, 0);
    for _ in 0..INPUTS {
        let bytes = input(&mut rng);
        if let Err(disagreement) = oracle::check(&bytes) {
            panic!("{disagreement}");
        }
        match upgrade::parse(&bytes, &["ocpp1.6"]) {
            Parsed::Upgrade { .. } => upgrades += 1,
            Parsed::Refused(_) => refused += 1,
            Parsed::Partial => partial += 1,
        }
    }
    // The inputs reach every answer, so agreement is not agreement on one kind of input.
    assert!(
        upgrades > INPUTS / 10 && refused > INPUTS / 10 && partial > INPUTS / 50,
        "upgrades {upgrades}, refused {refused}, partial {partial}"
    );
}
