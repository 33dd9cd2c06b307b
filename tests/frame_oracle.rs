//! The gateway's frame-header decoder agrees with tungstenite's `FrameHeader::parse` on
//! 300,000 generated headers (the rule is tests/oracle/frame.rs, which the `websocket_diff`
//! fuzz target shares): CI runs that target only seconds, so this deterministic run is the
//! proof that always runs. Headers are built around the length boundaries (125/126/127, 16- and
//! 64-bit forms, minimal or not, the 64-bit high bit), with every opcode, FIN, RSV and mask
//! combination, then bit-flipped, truncated or extended.

#[path = "oracle/frame.rs"]
mod oracle;
#[path = "oracle/rng.rs"]
mod rng;

use rng::Rng;

use wire::websocket::{self, Role};

const INPUTS: usize = 300_000;

const LENGTHS: &[u64] = &[
    0,
    1,
    124,
    125,
    126,
    127,
    128,
    1024,
    65_535,
    65_536,
    65_537,
    (1 << 63) - 1,
    1 << 63,
    u64::MAX,
];

/// A frame header (and a few payload bytes), then one mutation.
fn input(rng: &mut Rng) -> Vec<u8> {
    let opcode = if rng.chance(4) {
        rng.below(16) as u8
    } else {
        [0x0, 0x1, 0x2, 0x8, 0x9, 0xA][rng.below(6) as usize]
    };
    let fin = if rng.chance(4) { 0 } else { 0x80 };
    let rsv = if rng.chance(8) {
        (rng.below(7) as u8 + 1) << 4
    } else {
        0
    };
    let masked = if rng.chance(3) { 0 } else { 0x80 };
    let len = if rng.chance(4) {
        rng.next() >> rng.below(64)
    } else {
        LENGTHS[rng.below(LENGTHS.len() as u64) as usize]
    };
    let mut bytes = vec![fin | rsv | opcode];
    // Minimal length form mostly; sometimes a longer form than needed (5.2 says senders MUST
    // use the minimal one; the gateway accepts others on purpose, as tungstenite does).
    let form = match len {
        0..=125 if !rng.chance(5) => 0,
        0..=0xFFFF if !rng.chance(5) => 1,
        _ => 2,
    };
    match (form, len) {
        (0, _) if len <= 125 => bytes.push(masked | len as u8),
        (1, _) if len <= 0xFFFF => {
            bytes.push(masked | 126);
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            bytes.push(masked | 127);
            bytes.extend_from_slice(&len.to_be_bytes());
        }
    }
    if masked != 0 {
        bytes.extend_from_slice(&(rng.next() as u32).to_be_bytes());
    }
    for _ in 0..rng.below(4) {
        bytes.push(rng.next() as u8);
    }
    match rng.below(4) {
        0 => {
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
        }
        1 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
        2 => {
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        _ => {}
    }
    bytes
}

#[test]
fn frame_headers_agree_with_tungstenite() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused, mut incomplete) = (0, 0, 0);
    for _ in 0..INPUTS {
        let bytes = input(&mut rng);
        if let Err(disagreement) = oracle::check_all(&bytes) {
            panic!("{disagreement}");
        }
        match websocket::parse_header(&bytes, Role::Server, usize::MAX) {
            Ok(Some(_)) => accepted += 1,
            Ok(None) => incomplete += 1,
            Err(_) => refused += 1,
        }
    }
    // The inputs reach every answer, so agreement is not agreement on one kind of input.
    assert!(
        accepted > INPUTS / 10 && refused > INPUTS / 10 && incomplete > INPUTS / 50,
        "accepted {accepted}, refused {refused}, incomplete {incomplete}"
    );
}
