//! The PROXY protocol header (HAProxy's spec, versions 1 and 2), without I/O. A load balancer in
//! TCP mode puts one header in front of the connection's bytes, naming the charge point's
//! address; the transport strips it (before TLS) on listeners with `proxy_protocol = true`, and
//! the address becomes the connection's peer in logs, the journal and the API. On those
//! listeners a connection that does not start with a valid header is closed; on the others
//! nothing is parsed, so no client can claim an address.
//!
//! A version 2 header may carry what the balancer learnt from the client's TLS handshake when it
//! ended TLS itself (HAProxy's `send-proxy-v2-ssl-cn`): the PP2_TYPE_SSL TLV, read into [`Ssl`].
//! Its bits say what happened, so they are what a listener trusting the balancer's TLS checks:
//! HAProxy sends the TLV with "client used TLS" off on a plain frontend, and a non-zero verify
//! result with a certificate that did not verify.

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

/// PP2_TYPE_SSL and its sub-types (HAProxy's proxy-protocol.txt, 2.2.5).
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
/// The client connected over TLS.
pub const PP2_CLIENT_SSL: u8 = 0x01;
/// The client presented a certificate on this connection.
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
/// The client presented a certificate at least once in this TLS session (a resumed one).
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// What the bytes received so far start with.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// Not a whole header yet.
    Partial,
    /// A header of `len` bytes; `source` is the client's address (None for a health check of
    /// the balancer itself, or an address family without one: the socket's peer stands).
    /// `ssl`: the PP2_TYPE_SSL TLV of a version 2 header for a client (never for version 1 or
    /// a health check).
    Done {
        len: usize,
        version: u8,
        source: Option<SocketAddr>,
        ssl: Option<Ssl>,
    },
}

/// What the balancer says of the client's TLS (the PP2_TYPE_SSL TLV).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ssl {
    /// PP2_CLIENT_* bits.
    pub client: u8,
    /// The certificate's verification result: 0 when it verified (HAProxy's `ssl_c_verify`).
    pub verify: u32,
    /// The client certificate's subject CN (PP2_SUBTYPE_SSL_CN), as sent.
    pub common_name: Option<Box<str>>,
    /// The TLS version (PP2_SUBTYPE_SSL_VERSION), e.g. "TLSv1.2".
    pub version: Option<Box<str>>,
    /// The cipher suite (PP2_SUBTYPE_SSL_CIPHER), OpenSSL's name.
    pub cipher: Option<Box<str>>,
}

impl Ssl {
    /// The client reached the balancer over TLS.
    pub fn used_tls(&self) -> bool {
        self.client & PP2_CLIENT_SSL != 0
    }

    /// It presented a certificate (on this connection or its TLS session).
    pub fn presented_certificate(&self) -> bool {
        self.client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS) != 0
    }

    /// It presented a certificate and the balancer verified it.
    pub fn certificate_verified(&self) -> bool {
        self.used_tls() && self.presented_certificate() && self.verify == 0
    }
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
        return Ok(Header::Done {
            len,
            version: 1,
            source: None,
            ssl: None,
        });
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
        version: 1,
        source: Some(SocketAddr::new(ip, port)),
        ssl: None,
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
    let (source, addresses) = match version_command & 0x0F {
        // LOCAL: the balancer's own connection (a health check); its TLVs say nothing of a
        // client.
        0 => {
            return Ok(Header::Done {
                len,
                version: 2,
                source: None,
                ssl: None,
            });
        }
        1 => match buf[13] >> 4 {
            1 if block.len() >= 12 => {
                let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
                let port = u16::from_be_bytes([block[8], block[9]]);
                (Some(SocketAddr::new(ip.into(), port)), 12)
            }
            2 if block.len() >= 36 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&block[..16]);
                let port = u16::from_be_bytes([block[32], block[33]]);
                (
                    Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port)),
                    36,
                )
            }
            1 | 2 => return Err(ProxyError::V2("address block too short")),
            3 if block.len() >= 216 => (None, 216),
            3 => return Err(ProxyError::V2("address block too short")),
            // UNSPEC: no address to report, no address block.
            _ => (None, 0),
        },
        _ => return Err(ProxyError::V2("unknown command")),
    };
    let mut ssl = None;
    for tlv in Tlvs(&block[addresses..]) {
        let (kind, value) = tlv?;
        if kind == PP2_TYPE_SSL {
            if ssl.is_some() {
                return Err(ProxyError::V2("two SSL TLVs"));
            }
            ssl = Some(parse_ssl(value)?);
        }
    }
    Ok(Header::Done {
        len,
        version: 2,
        source,
        ssl,
    })
}

/// The type-length-value records after a version 2 address block (or inside the SSL TLV).
struct Tlvs<'a>(&'a [u8]);

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<(u8, &'a [u8]), ProxyError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.0;
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 3 {
            self.0 = &[];
            return Some(Err(ProxyError::V2("truncated TLV")));
        }
        let kind = rest[0];
        let end = 3 + usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let Some(value) = rest.get(3..end) else {
            self.0 = &[];
            return Some(Err(ProxyError::V2("TLV longer than the header")));
        };
        self.0 = &rest[end..];
        Some(Ok((kind, value)))
    }
}

/// PP2_TYPE_SSL's value: client bits, verify result, then sub-TLVs.
fn parse_ssl(value: &[u8]) -> Result<Ssl, ProxyError> {
    let [client, v0, v1, v2, v3, subs @ ..] = value else {
        return Err(ProxyError::V2("SSL TLV shorter than 5 bytes"));
    };
    let mut ssl = Ssl {
        client: *client,
        verify: u32::from_be_bytes([*v0, *v1, *v2, *v3]),
        ..Ssl::default()
    };
    for tlv in Tlvs(subs) {
        let (kind, value) = tlv?;
        let slot = match kind {
            PP2_SUBTYPE_SSL_CN => &mut ssl.common_name,
            PP2_SUBTYPE_SSL_VERSION => &mut ssl.version,
            PP2_SUBTYPE_SSL_CIPHER => &mut ssl.cipher,
            _ => continue,
        };
        let text = std::str::from_utf8(value).map_err(|_| ProxyError::V2("SSL text not UTF-8"))?;
        *slot = Some(text.into());
    }
    Ok(ssl)
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

    fn done(len: usize, version: u8, source: Option<SocketAddr>) -> Header {
        Header::Done {
            len,
            version,
            source,
            ssl: None,
        }
    }

    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    /// An IPv4 PROXY header from 192.0.2.7:56324 followed by `tlvs`.
    fn with_tlvs(tlvs: &[u8]) -> Vec<u8> {
        let mut block = vec![192, 0, 2, 7, 198, 51, 100, 1];
        block.extend_from_slice(&56324u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        block.extend_from_slice(tlvs);
        v2(1, 0x11, &block)
    }

    fn ssl_of(header: &[u8]) -> Result<Option<Ssl>, ProxyError> {
        match parse(header)? {
            Header::Done { ssl, .. } => Ok(ssl),
            Header::Partial => panic!("partial"),
        }
    }

    #[test]
    fn version_1() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /";
        assert_eq!(
            parse(line),
            Ok(done(
                line.len() - 5,
                1,
                Some("192.0.2.7:56324".parse().unwrap())
            ))
        );
        let six = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert_eq!(
            parse(six),
            Ok(done(six.len(), 1, Some("[2001:db8::1]:1".parse().unwrap())))
        );
        assert_eq!(parse(b"PROXY UNKNOWN whatever\r\n"), Ok(done(24, 1, None)));
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
            Ok(done(len, 2, Some("192.0.2.7:56324".parse().unwrap())))
        );
        for cut in [1, 11, 12, 15, len - 1] {
            assert_eq!(parse(&header[..cut]), Ok(Header::Partial), "{cut}");
        }
        let mut six = [0u8; 36];
        six[15] = 1;
        six[32..34].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 0x21, &six)),
            Ok(done(52, 2, Some("[::1]:7".parse().unwrap())))
        );
        // A health check of the balancer, with TLVs.
        assert_eq!(parse(&v2(0, 0x00, &[1, 0, 1, 9])), Ok(done(20, 2, None)));
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
    fn the_ssl_tlv_is_read_bit_by_bit() {
        // What HAProxy sends for a verified client certificate (send-proxy-v2-ssl-cn), after an
        // ALPN TLV and a NOOP padding one.
        let mut ssl_value = vec![PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS];
        ssl_value.extend_from_slice(&0u32.to_be_bytes());
        ssl_value.extend(tlv(PP2_SUBTYPE_SSL_VERSION, b"TLSv1.2"));
        ssl_value.extend(tlv(PP2_SUBTYPE_SSL_CN, b"CP-7"));
        ssl_value.extend(tlv(PP2_SUBTYPE_SSL_CIPHER, b"AES128-GCM-SHA256"));
        ssl_value.extend(tlv(0x25, b"RSA2048"));
        let tlvs = [
            tlv(0x01, b"http/1.1"),
            tlv(PP2_TYPE_SSL, &ssl_value),
            tlv(0x04, &[0; 3]),
        ]
        .concat();
        let ssl = ssl_of(&with_tlvs(&tlvs)).unwrap().unwrap();
        assert!(ssl.used_tls() && ssl.presented_certificate() && ssl.certificate_verified());
        assert_eq!(ssl.common_name.as_deref(), Some("CP-7"));
        assert_eq!(ssl.version.as_deref(), Some("TLSv1.2"));
        assert_eq!(ssl.cipher.as_deref(), Some("AES128-GCM-SHA256"));

        // A plain frontend: the TLV is there, "client used TLS" is off.
        let plain = ssl_of(&with_tlvs(&tlv(PP2_TYPE_SSL, &[0, 0, 0, 0, 0])))
            .unwrap()
            .unwrap();
        assert!(!plain.used_tls() && !plain.certificate_verified());
        // A certificate that did not verify (X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20).
        let unverified = ssl_of(&with_tlvs(&tlv(PP2_TYPE_SSL, &[3, 0, 0, 0, 20])))
            .unwrap()
            .unwrap();
        assert!(unverified.presented_certificate() && !unverified.certificate_verified());
        // TLS, no certificate.
        let none = ssl_of(&with_tlvs(&tlv(PP2_TYPE_SSL, &[1, 0, 0, 0, 0])))
            .unwrap()
            .unwrap();
        assert!(none.used_tls() && !none.presented_certificate() && !none.certificate_verified());
        // Without the TLV, nothing; a health check's TLVs are not a client's.
        assert_eq!(ssl_of(&with_tlvs(&tlv(0x01, b"h2"))), Ok(None));
        assert_eq!(
            ssl_of(&v2(0, 0x00, &tlv(PP2_TYPE_SSL, &[7, 0, 0, 0, 0]))),
            Ok(None)
        );
    }

    #[test]
    fn malformed_tlvs_refuse_the_header() {
        let good = tlv(PP2_TYPE_SSL, &[1, 0, 0, 0, 0]);
        for (bad, why) in [
            (vec![0x20, 0], "truncated TLV"),
            (vec![0x20, 0, 9, 1], "TLV longer than the header"),
            (
                tlv(PP2_TYPE_SSL, &[1, 0, 0]),
                "SSL TLV shorter than 5 bytes",
            ),
            (
                tlv(
                    PP2_TYPE_SSL,
                    &[[1, 0, 0, 0, 0].as_slice(), &[0x22, 0, 5, b'C']].concat(),
                ),
                "TLV longer than the header",
            ),
            (
                tlv(
                    PP2_TYPE_SSL,
                    &[[3, 0, 0, 0, 0].as_slice(), &tlv(0x22, &[0xff, 0xfe])].concat(),
                ),
                "SSL text not UTF-8",
            ),
            ([good.clone(), good.clone()].concat(), "two SSL TLVs"),
        ] {
            assert_eq!(
                ssl_of(&with_tlvs(&bad)),
                Err(ProxyError::V2(why)),
                "{bad:?}"
            );
        }
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
