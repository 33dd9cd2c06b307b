//! What the gateway keeps of a client's certificate once the handshake is done: its CN (the
//! identity under security profile 3), the [`CertificateId`] CRLs name it by, and the facts
//! that watch its renewal; the rest of the chain goes with rustls's state.

use rustls::pki_types::CertificateDer;

/// The certificate a client presented, as far as the gateway cares: its subject CN.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientCertificate {
    /// None presented (or not asked for).
    #[default]
    None,
    CommonName(Box<str>),
    /// Presented, but without a readable CN.
    NoCommonName,
}

/// Names one certificate across CRLs in 16 bytes: a hash of its issuer's name (DER) and its
/// serial number, as a CRL lists it.
pub type CertificateId = [u8; 16];

/// The [`CertificateId`] of the certificate `serial` (the INTEGER's content bytes; leading zero
/// bytes, which only keep it positive, are not part of the number) of `issuer`.
pub fn certificate_id(issuer: &[u8], serial: &[u8]) -> CertificateId {
    let zeros = serial.iter().take_while(|b| **b == 0).count();
    let serial = &serial[zeros.min(serial.len().saturating_sub(1))..];
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(issuer.len() as u64).to_be_bytes());
    ctx.update(issuer);
    ctx.update(serial);
    let mut id = [0u8; 16];
    id.copy_from_slice(&ctx.finish().as_ref()[..16]);
    id
}

/// What the gateway keeps of a client certificate to watch its renewal: its serial number and
/// when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Hex, as the certificate writes it (leading zero bytes included).
    pub serial: Box<str>,
    /// notBefore, seconds since the Unix epoch.
    pub not_before: i64,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: i64,
}

/// The CN, the [`CertificateId`] and the renewal facts of a leaf certificate.
pub(super) fn leaf_facts(
    cert: &CertificateDer<'_>,
) -> (
    ClientCertificate,
    Option<CertificateId>,
    Option<Box<CertificateFacts>>,
) {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return (ClientCertificate::NoCommonName, None, None);
    };
    let facts = CertificateFacts {
        serial: parsed
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into(),
        not_before: parsed.validity().not_before.timestamp(),
        not_after: parsed.validity().not_after.timestamp(),
    };
    let id = certificate_id(parsed.issuer().as_raw(), parsed.raw_serial());
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    let certificate = match cn {
        Some(cn) => ClientCertificate::CommonName(cn.into()),
        None => ClientCertificate::NoCommonName,
    };
    (certificate, Some(id), Some(Box::new(facts)))
}

/// What the established phase keeps of the handshake.
#[derive(Debug, Default)]
pub(super) struct Peer {
    /// The certificate the client presented.
    pub certificate: ClientCertificate,
    /// Its [`CertificateId`] (also when the handshake resumed: the ticket carries it).
    pub id: Option<CertificateId>,
    /// Its serial number and expiry, until the session takes them at the upgrade.
    pub facts: Option<Box<CertificateFacts>>,
    /// The handshake resumed a session (a ticket) instead of a full one.
    pub resumed: bool,
}
