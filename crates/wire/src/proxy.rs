//! The PROXY protocol header (HAProxy's spec, versions 1 and 2), without I/O. A load balancer in
//! TCP mode puts one header in front of the connection's bytes, naming the charge point's
//! address; the transport strips it (before TLS) on listeners with `proxy_protocol = true`, and
//! the address becomes the connection's peer in logs, the journal and the API. On those
//! listeners a connection that does not start with a valid header is closed; on the others
//! nothing is parsed, so no client can claim an address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's header is at most this long, CRLF included.
const V1_MAX: usize = 107;
/// Version 2's address block and TLVs are accepted up to this length (TLVs from cloud balancers
/// are a few hundred bytes).
const V2_MAX_PAYLOAD: usize = 2048;
/// The longest header accepted, in bytes.
pub const MAX_HEADER: usize = 16 + V2_MAX_PAYLOAD;

/// What the bytes received so far start with.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// Not a whole header yet.
    Partial,
    /// A header of `len` bytes; `source` is the client's address (None for a health check of
    /// the balancer itself, or an address family without one: the socket's peer stands).
    Done {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Why a header is refused (the connection is closed).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY v1 header: {0}")]
    V1(&'static str),
    #[error("malformed PROXY v2 header: {0}")]
    V2(&'static str),
}

/// Reads the header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Header, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(Header::Partial)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if n < 6 {
            Ok(Header::Partial)
        } else {
            parse_v1(buf)
        };
    }
    Err(ProxyError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Header, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::V1("no CRLF within 107 bytes"))
        } else {
            Ok(Header::Partial)
        };
    };
    let len = end + 2;
    let line = std::str::from_utf8(&buf[6..end]).map_err(|_| ProxyError::V1("not ASCII"))?;
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    if family == "UNKNOWN" {
        return Ok(Header::Done { len, source: None });
    }
    let (src, _dst, sport, _dport) = match (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) {
        (Some(a), Some(b), Some(c), Some(d), None) => (a, b, c, d),
        _ => return Err(ProxyError::V1("expected 4 fields after the family")),
    };
    let ip: IpAddr = match family {
        "TCP4" => src
            .parse::<Ipv4Addr>()
            .map_err(|_| ProxyError::V1("bad IPv4 source"))?
            .into(),
        "TCP6" => src
            .parse::<Ipv6Addr>()
            .map_err(|_| ProxyError::V1("bad IPv6 source"))?
            .into(),
        _ => return Err(ProxyError::V1("unknown family")),
    };
    let port = parse_port(sport).ok_or(ProxyError::V1("bad source port"))?;
    Ok(Header::Done {
        len,
        source: Some(SocketAddr::new(ip, port)),
    })
}

/// A decimal port without sign or leading zeros (the spec's form).
fn parse_port(text: &str) -> Option<u16> {
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    plain.then(|| text.parse().ok()).flatten()
}

fn parse_v2(buf: &[u8]) -> Result<Header, ProxyError> {
    if buf.len() < 16 {
        return Ok(Header::Partial);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(ProxyError::V2("version is not 2"));
    }
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Err(ProxyError::V2("longer than 2048 bytes"));
    }
    let len = 16 + payload;
    if buf.len() < len {
        return Ok(Header::Partial);
    }
    let block = &buf[16..len];
    let source = match version_command & 0x0F {
        // LOCAL: the balancer's own connection (a health check).
        0 => None,
        1 => match buf[13] >> 4 {
            1 if block.len() >= 12 => {
                let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
                Some(SocketAddr::new(
                    ip.into(),
                    u16::from_be_bytes([block[8], block[9]]),
                ))
            }
            2 if block.len() >= 36 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&block[..16]);
                Some(SocketAddr::new(
                    Ipv6Addr::from(octets).into(),
                    u16::from_be_bytes([block[32], block[33]]),
                ))
            }
            1 | 2 => return Err(ProxyError::V2("address block too short")),
            // UNSPEC or UNIX: no address to report.
            _ => None,
        },
        _ => return Err(ProxyError::V2("unknown command")),
    };
    Ok(Header::Done { len, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(block.len() as u16).to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    #[test]
    fn version_1() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /";
        assert_eq!(
            parse(line),
            Ok(Header::Done {
                len: line.len() - 5,
                source: Some("192.0.2.7:56324".parse().unwrap())
            })
        );
        let six = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert_eq!(
            parse(six),
            Ok(Header::Done {
                len: six.len(),
                source: Some("[2001:db8::1]:1".parse().unwrap())
            })
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN whatever\r\n"),
            Ok(Header::Done {
                len: 24,
                source: None
            })
        );
        for cut in [0, 3, 6, 20, line.len() - 8] {
            assert_eq!(parse(&line[..cut]), Ok(Header::Partial), "{cut}");
        }
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"[..],
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::V1(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert!(matches!(parse(&endless), Err(ProxyError::V1(_))));
    }

    #[test]
    fn version_2() {
        let mut block = vec![192, 0, 2, 7, 198, 51, 100, 1];
        block.extend_from_slice(&56324u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        let mut header = v2(1, 0x11, &block);
        let len = header.len();
        header.extend_from_slice(b"\x16\x03\x01"); // TLS follows
        assert_eq!(
            parse(&header),
            Ok(Header::Done {
                len,
                source: Some("192.0.2.7:56324".parse().unwrap())
            })
        );
        for cut in [1, 11, 12, 15, len - 1] {
            assert_eq!(parse(&header[..cut]), Ok(Header::Partial), "{cut}");
        }
        let mut six = [0u8; 36];
        six[15] = 1;
        six[32..34].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 0x21, &six)),
            Ok(Header::Done {
                len: 52,
                source: Some("[::1]:7".parse().unwrap())
            })
        );
        // A health check of the balancer, with TLVs.
        assert_eq!(
            parse(&v2(0, 0x00, &[1, 0, 1, 9])),
            Ok(Header::Done {
                len: 20,
                source: None
            })
        );
        assert!(matches!(
            parse(&v2(1, 0x11, &[1, 2])),
            Err(ProxyError::V2(_))
        ));
        assert!(matches!(
            parse(&v2(2, 0x11, &block)),
            Err(ProxyError::V2(_))
        ));
        let mut wrong_version = v2(1, 0x11, &block);
        wrong_version[12] = 0x11;
        assert!(matches!(parse(&wrong_version), Err(ProxyError::V2(_))));
        let mut huge = v2(1, 0x11, &block);
        huge[14..16].copy_from_slice(&4000u16.to_be_bytes());
        assert!(matches!(parse(&huge), Err(ProxyError::V2(_))));
    }

    #[test]
    fn anything_else_is_missing_the_header() {
        for bytes in [
            &b"GET /ocpp/CP1 HTTP/1.1\r\n"[..],
            b"\x16\x03\x01\x02\x00",
            b"PROXX",
            b"\r\n\r\n\x01",
        ] {
            assert_eq!(parse(bytes), Err(ProxyError::Missing));
        }
    }
}
