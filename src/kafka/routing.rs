//! Which partition of `kafka.commands_topic` a gateway consumes: a backend that found the
//! gateway holding a charge point (the Redis registry, or the API) writes the command to
//! partition `fnv1a32(gatewayId) % partitions`.
//!
//! FNV-1a, 32 bits, over the UTF-8 bytes of the gateway id (`server.node_id`): start with
//! 2166136261; for each byte, xor it in, then multiply by 16777619 modulo 2^32. Any language
//! computes it in a few lines (the README has Python); the tests below pin known values.

/// FNV-1a (32 bits) of `bytes`.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(2_166_136_261u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(16_777_619)
    })
}

/// The partition of a topic with `partitions` partitions that gateway `node` consumes.
pub fn partition_of(node: &str, partitions: i32) -> i32 {
    let partitions = partitions.max(1) as u32;
    (fnv1a32(node.as_bytes()) % partitions) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_values() {
        // The reference test vectors of FNV-1a 32.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn a_gateway_maps_to_one_partition() {
        assert_eq!(partition_of("gw-1", 1), 0);
        let p = partition_of("gw-1", 12);
        assert!((0..12).contains(&p));
        assert_eq!(p, (fnv1a32(b"gw-1") % 12) as i32);
        assert_eq!(partition_of("gw-1", 0), 0, "no partitions known: the first");
    }
}
