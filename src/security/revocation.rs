//! Client certificate revocation (profile 3): `security.client_crl`, one or more CRL files (PEM
//! or DER) of the client CA, read at start and on every reload (SIGHUP).
//!
//! Checked twice. In the TLS handshake, by rustls's verifier: a revoked certificate ends the
//! handshake with the alert `certificate_revoked` (counted in `tls_failures_total` and
//! `auth_failures_total{kind="certificate_revoked"}`). And at the upgrade, against [`Revoked`]: a session resumed
//! from a ticket was not verified again (the ticket carries the certificate verified when it
//! was issued), so a certificate revoked since then is refused there with 403. Only the leaf is
//! checked; a certificate whose issuer has no CRL here passes (an operator lists the CRLs of
//! the CAs they revoke with).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateRevocationListDer;
use rustls::pki_types::pem::PemObject;
use transport::tls::{CertificateId, certificate_id};

use super::certificates::CertError;

const CONFIG_KEY: &str = "security.client_crl";

/// The certificates the configured CRLs revoke.
#[derive(Debug, Default)]
pub struct Revoked {
    ids: HashSet<CertificateId>,
}

impl Revoked {
    pub fn contains(&self, id: &CertificateId) -> bool {
        self.ids.contains(id)
    }
}

/// Reads `paths`: the CRLs for rustls's verifier, and what they revoke.
pub fn load(
    paths: &[PathBuf],
) -> Result<(Vec<CertificateRevocationListDer<'static>>, Revoked), CertError> {
    let mut crls = Vec::new();
    let mut revoked = Revoked::default();
    for path in paths {
        for crl in read(path)? {
            let (_, parsed) =
                x509_parser::parse_x509_crl(crl.as_ref()).map_err(|e| invalid(path, e))?;
            let issuer = parsed.issuer().as_raw();
            for entry in parsed.iter_revoked_certificates() {
                revoked
                    .ids
                    .insert(certificate_id(issuer, entry.raw_serial()));
            }
            crls.push(crl);
        }
    }
    Ok((crls, revoked))
}

/// The CRLs of one file: PEM (one or more `X509 CRL` blocks) or a single DER one.
fn read(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, CertError> {
    let bytes = std::fs::read(path).map_err(|source| CertError::Read {
        key: CONFIG_KEY,
        path: path.to_owned(),
        source,
    })?;
    if bytes.starts_with(b"-----") || bytes.iter().take(64).all(u8::is_ascii) {
        let crls: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(path, e))?;
        if crls.is_empty() {
            return Err(invalid(path, "no X509 CRL block"));
        }
        return Ok(crls);
    }
    Ok(vec![CertificateRevocationListDer::from(bytes)])
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> CertError {
    CertError::Invalid {
        key: CONFIG_KEY,
        path: path.to_owned(),
        reason: format!("not a CRL: {reason}"),
    }
}
