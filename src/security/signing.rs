//! Certificates for charge points, signed by a sub-CA the operator gives the gateway
//! (`security.ca_cert`, `security.ca_key`): the SignCertificate of the 1.6 security extension
//! and of 2.0.1. [`check_csr`] judges a request (pure, no clock): its signature, its subject's
//! CN against the identity that sent it, the key (ECDSA P-256 or P-384, RSA of 2048 bits or
//! more) and the extensions it asks for; [`CertificateAuthority::sign`] makes the certificate.
//!
//! What the certificate says is the gateway's choice, not the request's: the subject is the
//! identity as CN and nothing else (a station could name any operator as O), the key is the
//! request's, copied byte for byte, and the extensions are a charge point's (not a
//! CA, digital signature, TLS client and server authentication). Requested extensions are only
//! checked: one asking for more than that (a CA, certificate or CRL signing, another key
//! purpose) refuses the request.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// The longest CSR a charge point may send (1.6 and 2.0.1 cap `csr` at 5500 characters).
pub const MAX_CSR: usize = 5500;
/// A signed certificate starts this long before it was made, for charge points whose clock
/// runs a little behind.
const BACKDATE: Duration = Duration::from_secs(300);

/// Why a request is not signed: the reason in the answer (2.0.1's `statusInfo`), the journal
/// and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrRefusal {
    Encoding,
    Malformed,
    Signature,
    CommonName,
    KeyType,
    Extensions,
    CertificateType,
    Signing,
    NoAuthority,
    /// The CA's own certificate has expired.
    AuthorityExpired,
    /// More requests than `security.signings_per_second`: to be sent again.
    Busy,
    NotAuthenticated,
}

impl std::fmt::Display for CsrRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl std::error::Error for CsrRefusal {}

impl CsrRefusal {
    /// What is wrong, for people (2.0.1's `statusInfo.additionalInfo`, the log).
    pub fn text(self) -> &'static str {
        match self {
            CsrRefusal::Encoding => "the CSR is not PEM or base64 DER",
            CsrRefusal::Malformed => "the CSR is not a PKCS#10 request",
            CsrRefusal::Signature => "the CSR's signature does not verify with its key",
            CsrRefusal::CommonName => "the CSR's subject CN is not the charge point's identity",
            CsrRefusal::KeyType => {
                "the CSR's key is not ECDSA P-256, P-384 or RSA of 2048 bits or more"
            }
            CsrRefusal::Extensions => {
                "the CSR asks for a CA, certificate or CRL signing, or another key purpose"
            }
            CsrRefusal::CertificateType => {
                "only ChargingStationCertificate requests are signed here"
            }
            CsrRefusal::Signing => "the certificate could not be made",
            CsrRefusal::NoAuthority => "no certificate authority is configured",
            CsrRefusal::AuthorityExpired => "the gateway's certificate authority has expired",
            CsrRefusal::Busy => {
                "the gateway signs only security.signings_per_second certificates a second: \
                 send the request again later"
            }
            CsrRefusal::NotAuthenticated => {
                "the connection did not authenticate (security profile 0): no certificate"
            }
        }
    }

    /// 2.0.1's `statusInfo.reasonCode` (at most 20 characters) and the journal's reason.
    pub fn code(self) -> &'static str {
        match self {
            CsrRefusal::Encoding | CsrRefusal::Malformed => "InvalidCSR",
            CsrRefusal::Signature => "InvalidSignature",
            CsrRefusal::CommonName => "InvalidCommonName",
            CsrRefusal::KeyType => "InvalidKey",
            CsrRefusal::Extensions => "InvalidExtensions",
            CsrRefusal::CertificateType => "UnsupportedCertType",
            CsrRefusal::Signing => "InternalError",
            CsrRefusal::NoAuthority => "NoCA",
            CsrRefusal::AuthorityExpired => "CAExpired",
            CsrRefusal::Busy => "TooManyRequests",
            CsrRefusal::NotAuthenticated => "NotAuthenticated",
        }
    }
}

/// The key a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    P256,
    P384,
    Rsa { bits: usize },
}

/// A request that passed every check: what the certificate is made from.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    pub common_name: String,
    pub key: KeyKind,
    /// The subjectPublicKey bits (an EC point, or an RSAPublicKey).
    public_key: Vec<u8>,
}

impl PublicKeyData for CheckedCsr {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    /// Only its key algorithm and parameters are written (the certificate's SPKI); the issuer's
    /// key signs.
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self.key {
            KeyKind::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// Judges the `csr` a charge point named `identity` sent (PEM, or bare base64 DER).
pub fn check_csr(csr: &str, identity: &str) -> Result<CheckedCsr, CsrRefusal> {
    let der = decode(csr)?;
    let (rest, request) =
        X509CertificationRequest::from_der(&der).map_err(|_| CsrRefusal::Malformed)?;
    if !rest.is_empty() {
        return Err(CsrRefusal::Malformed);
    }
    let info = &request.certification_request_info;
    let mut names = info.subject.iter_common_name();
    let common_name = names
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or(CsrRefusal::CommonName)?;
    if common_name != identity || names.next().is_some() {
        return Err(CsrRefusal::CommonName);
    }
    let spki = &info.subject_pki;
    let key = match spki.parsed() {
        Ok(PublicKey::EC(_)) if spki.algorithm.algorithm.to_id_string() == OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            match curve.as_deref() {
                Some(OID_P256) => KeyKind::P256,
                Some(OID_P384) => KeyKind::P384,
                _ => return Err(CsrRefusal::KeyType),
            }
        }
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => KeyKind::Rsa {
            bits: rsa.key_size(),
        },
        _ => return Err(CsrRefusal::KeyType),
    };
    // After the key's type: ring verifies no RSA signature under 2048 bits, and such a key is
    // refused for what it is.
    request
        .verify_signature()
        .map_err(|_| CsrRefusal::Signature)?;
    for extension in request.requested_extensions().into_iter().flatten() {
        let too_much = match extension {
            ParsedExtension::BasicConstraints(bc) => bc.ca,
            ParsedExtension::KeyUsage(usage) => usage.key_cert_sign() || usage.crl_sign(),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                eku.any
                    || eku.code_signing
                    || eku.email_protection
                    || eku.time_stamping
                    || eku.ocsp_signing
                    || !eku.other.is_empty()
            }
            // Names, key identifiers and the like are not copied into the certificate.
            _ => false,
        };
        if too_much {
            return Err(CsrRefusal::Extensions);
        }
    }
    Ok(CheckedCsr {
        common_name: common_name.to_owned(),
        key,
        public_key: spki.subject_public_key.data.to_vec(),
    })
}

fn decode(csr: &str) -> Result<Vec<u8>, CsrRefusal> {
    use base64::Engine as _;
    if csr.len() > MAX_CSR {
        return Err(CsrRefusal::Encoding);
    }
    let text = csr.trim();
    let body = if text.starts_with("-----BEGIN") {
        let begin = text.find('\n').ok_or(CsrRefusal::Encoding)?;
        let end = text.rfind("-----END").ok_or(CsrRefusal::Encoding)?;
        let kind = &text[..begin];
        if !kind.contains("CERTIFICATE REQUEST") || end < begin {
            return Err(CsrRefusal::Encoding);
        }
        &text[begin..end]
    } else {
        text
    };
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| CsrRefusal::Encoding)
}

/// Why the sub-CA did not load (the start stops).
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("`security.ca_cert` {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("`security.ca_key` {path}: {reason}")]
    Key { path: PathBuf, reason: String },
}

/// A signed certificate, ready for CertificateSigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The new certificate then the CA's chain, PEM.
    pub chain: String,
    /// Its serial number, hex.
    pub serial: String,
    /// Its notAfter, seconds since the epoch.
    pub not_after: u64,
}

/// The sub-CA that signs charge points' certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate and any above it, PEM, as the file has them: appended to each
    /// certificate signed.
    chain: String,
    validity: Duration,
    /// The CA's own notAfter: nothing it signs outlives it (a chain is good only while every
    /// certificate in it is).
    ca_not_after: SystemTime,
    /// How fast it takes requests, whichever processor asks, on a clock of its own (a wall
    /// clock stepped back must not close the gate for as long).
    pace: Pace,
    origin: Instant,
}

/// At most `per_second` requests a second, a second's worth at once: a generic cell rate
/// algorithm on the requests' own time, its one number (the theoretical arrival time of the
/// next request) an atomic that every processor moves.
#[derive(Debug)]
struct Pace {
    interval_us: u64,
    /// How far ahead of the clock the theoretical arrival time may run (the burst).
    ahead_us: u64,
    next_us: AtomicU64,
}

impl Pace {
    fn new(per_second: u32) -> Pace {
        let interval_us = 1_000_000 / u64::from(per_second.max(1));
        Pace {
            interval_us,
            ahead_us: interval_us * u64::from(per_second.max(1)).saturating_sub(1),
            next_us: AtomicU64::new(0),
        }
    }

    /// Whether a request at `now_us` (microseconds since the epoch) may go on.
    fn admit(&self, now_us: u64) -> bool {
        let mut next = self.next_us.load(Ordering::Relaxed);
        loop {
            let from = next.max(now_us);
            if from - now_us > self.ahead_us {
                return false;
            }
            match self.next_us.compare_exchange_weak(
                next,
                from + self.interval_us,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => next = actual,
            }
        }
    }
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads the CA's certificate chain (first: the CA that signs) and its key (PKCS#8, SEC1 or
    /// PKCS#1 PEM); certificates it signs are good for `validity`.
    pub fn load(cert: &Path, key: &Path, validity: Duration) -> Result<Self, CaError> {
        let cert_error = |reason: String| CaError::Cert {
            path: cert.to_owned(),
            reason,
        };
        let chain = std::fs::read_to_string(cert).map_err(|e| cert_error(e.to_string()))?;
        let first = CertificateDer::pem_slice_iter(chain.as_bytes())
            .next()
            .ok_or_else(|| cert_error("no certificate in it".into()))?
            .map_err(|e| cert_error(e.to_string()))?;
        let key_error = |reason: String| CaError::Key {
            path: key.to_owned(),
            reason,
        };
        let der = PrivateKeyDer::from_pem_file(key).map_err(|e| key_error(e.to_string()))?;
        let pair = KeyPair::try_from(&der).map_err(|e| key_error(e.to_string()))?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&first).map_err(|e| cert_error(e.to_string()))?;
        if !parsed.is_ca() {
            return Err(cert_error("its first certificate is not a CA's".into()));
        }
        if parsed.public_key().raw != pair.subject_public_key_info().as_slice() {
            return Err(key_error("not the key of security.ca_cert".into()));
        }
        let issuer =
            Issuer::from_ca_cert_der(&first, pair).map_err(|e| cert_error(e.to_string()))?;
        // rcgen rebuilds the CA's name from its attributes (one value per type): a subject with a
        // repeated type (two DC or OU) would come out as another name, and no certificate signed
        // with it would chain. Sign one and compare before taking the CA.
        let probe = KeyPair::generate().map_err(|e| cert_error(e.to_string()))?;
        let signed = CertificateParams::default()
            .signed_by(&probe, &issuer)
            .map_err(|e| cert_error(e.to_string()))?;
        let (_, signed) = x509_parser::parse_x509_certificate(signed.der())
            .map_err(|e| cert_error(e.to_string()))?;
        if signed.issuer().as_raw() != parsed.subject().as_raw() {
            return Err(cert_error(
                "its subject cannot be written back as it is (a repeated attribute type?): \
                 certificates signed with it would not chain to it"
                    .into(),
            ));
        }
        let ca_not_after = u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0);
        Ok(CertificateAuthority {
            issuer,
            chain,
            validity,
            ca_not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(ca_not_after),
            pace: Pace::new(crate::config::DEFAULT_SIGNINGS_PER_SECOND),
            origin: Instant::now(),
        })
    }

    /// The same CA taking at most `per_second` requests a second
    /// (`security.signings_per_second`).
    pub fn paced(mut self, per_second: u32) -> Self {
        self.pace = Pace::new(per_second);
        self
    }

    /// A request at `now` may be checked and signed, or the CA is busy (its pace is spent).
    pub fn admit(&self, now: Instant) -> Result<(), CsrRefusal> {
        let since = now.saturating_duration_since(self.origin);
        let now_us = u64::try_from(since.as_micros()).unwrap_or(u64::MAX);
        if self.pace.admit(now_us) {
            Ok(())
        } else {
            Err(CsrRefusal::Busy)
        }
    }

    /// The CA's own notAfter: nothing it signs lasts longer.
    pub fn not_after(&self) -> SystemTime {
        self.ca_not_after
    }

    /// Signs `csr` at `now` with `serial` (16 random bytes; the top bit is cleared so the
    /// number stays positive).
    pub fn sign(
        &self,
        csr: &CheckedCsr,
        now: SystemTime,
        mut serial: [u8; 16],
    ) -> Result<Signed, CsrRefusal> {
        serial[0] &= 0x7f;
        serial[0] |= 0x01; // no leading zero byte: the DER integer keeps its 16 bytes
        let mut params = CertificateParams::default();
        // The subject is the identity alone: whatever else the request names (an O of another
        // operator) is not vouched for.
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, csr.common_name.as_str());
        params.distinguished_name = name;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        // An expired CA signs nothing (a certificate it signed would end before it began).
        if self.ca_not_after <= now {
            return Err(CsrRefusal::AuthorityExpired);
        }
        let not_after = (now + self.validity).min(self.ca_not_after);
        params.not_before = at(now - BACKDATE)?;
        params.not_after = at(not_after)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = match csr.key {
            KeyKind::Rsa { .. } => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            _ => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyAgreement,
            ],
        };
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let certificate = params
            .signed_by(csr, &self.issuer)
            .map_err(|_| CsrRefusal::Signing)?;
        let mut chain = certificate.pem();
        if !chain.ends_with('\n') {
            chain.push('\n');
        }
        chain.push_str(self.chain.trim_start());
        Ok(Signed {
            chain,
            serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
            not_after: not_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }
}

fn at(time: SystemTime) -> Result<time::OffsetDateTime, CsrRefusal> {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| CsrRefusal::Signing)?
        .as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64).map_err(|_| CsrRefusal::Signing)
}

/// A CA and requests for the handlers' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use rcgen::BasicConstraints;

    /// A sub-CA (ECDSA P-256) written to `dir` (`ca.pem`, `ca.key`) and loaded; its key.
    pub fn authority_in(dir: &Path) -> (CertificateAuthority, KeyPair) {
        std::fs::create_dir_all(dir).unwrap();
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "charge point sub-CA");
        let ca = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("ca.key"), key.serialize_pem()).unwrap();
        let loaded = CertificateAuthority::load(
            &dir.join("ca.pem"),
            &dir.join("ca.key"),
            Duration::from_secs(86_400 * 365),
        )
        .expect("the CA loads");
        (loaded, key)
    }

    /// [`authority_in`] a directory of the test's own, removed again.
    pub fn authority(test: &str) -> CertificateAuthority {
        let dir = std::env::temp_dir().join(format!("signing-{test}-{}", std::process::id()));
        let (loaded, _) = authority_in(&dir);
        let _ = std::fs::remove_dir_all(dir);
        loaded
    }

    /// A PEM CSR for `cn` with a new P-256 key.
    pub fn csr(cn: &str) -> String {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serialize_request(&key).unwrap().pem().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateSigningRequest, PKCS_ECDSA_P384_SHA384};
    use x509_parser::prelude::X509Certificate;

    const RSA_KEY: &str = include_str!("../../tests/fixtures/rsa-2048.key");

    fn csr_of(key: &KeyPair, cn: &str, shape: impl FnOnce(&mut CertificateParams)) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example CPO");
        shape(&mut params);
        let request: CertificateSigningRequest = params.serialize_request(key).expect("CSR");
        request.pem().expect("PEM")
    }

    fn p256() -> KeyPair {
        KeyPair::generate().expect("key")
    }

    /// A CA in files of a directory of the test's own, loaded.
    fn authority(test: &str) -> (CertificateAuthority, KeyPair, PathBuf) {
        let dir = std::env::temp_dir().join(format!("signing-{test}-{}", std::process::id()));
        let (loaded, key) = super::testing::authority_in(&dir);
        (loaded, key, dir)
    }

    fn leaf(chain: &str) -> Vec<u8> {
        CertificateDer::pem_slice_iter(chain.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn the_pace_takes_a_seconds_worth_at_once_then_one_per_interval() {
        let pace = Pace::new(4); // one per 250 ms, four at once
        let t = 1_000_000_000_000u64;
        assert!((0..4).all(|_| pace.admit(t)), "a second's worth at once");
        assert!(!pace.admit(t), "then busy");
        assert!(!pace.admit(t + 200_000));
        assert!(pace.admit(t + 250_000), "one interval later, one more");
        assert!(!pace.admit(t + 250_000));
        // A clock that steps back does not open the gate.
        assert!(!pace.admit(t - 10_000_000));
        // A quiet while refills the burst, not more.
        let later = t + 60_000_000;
        assert!((0..4).all(|_| pace.admit(later)));
        assert!(!pace.admit(later));
        let (ca, _, dir) = authority("paced");
        let ca = ca.paced(1);
        let now = Instant::now();
        assert_eq!(ca.admit(now), Ok(()));
        assert_eq!(ca.admit(now), Err(CsrRefusal::Busy));
        assert_eq!(ca.admit(now + Duration::from_secs(1)), Ok(()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn nothing_signed_outlives_the_ca() {
        let dir = std::env::temp_dir().join(format!("signing-short-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "short sub-CA");
        let ca_end = 1_800_000_000 + 86_400 * 10;
        params.not_after = at(SystemTime::UNIX_EPOCH + Duration::from_secs(ca_end)).unwrap();
        let ca = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("ca.key"), key.serialize_pem()).unwrap();
        let year = Duration::from_secs(86_400 * 365);
        let ca = CertificateAuthority::load(&dir.join("ca.pem"), &dir.join("ca.key"), year)
            .expect("the CA loads");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let checked = check_csr(&csr_of(&p256(), "CP-1", |_| {}), "CP-1").unwrap();
        let signed = ca.sign(&checked, now, [0x42; 16]).expect("signed");
        assert_eq!(
            signed.not_after, ca_end,
            "cut to the CA's own end, not a year"
        );
        let der = leaf(&signed.chain);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.validity().not_after.timestamp(), ca_end as i64);
        let after = SystemTime::UNIX_EPOCH + Duration::from_secs(ca_end);
        assert_eq!(
            ca.sign(&checked, after, [0x42; 16]).unwrap_err(),
            CsrRefusal::AuthorityExpired,
            "an expired CA signs nothing"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn good_requests_of_each_key_type_are_signed_with_their_own_key() {
        let (ca, ca_key, dir) = authority("good");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let rsa = KeyPair::from_pem_and_sign_algo(RSA_KEY, &rcgen::PKCS_RSA_SHA256).unwrap();
        let p384 = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        for (key, kind) in [
            (p256(), KeyKind::P256),
            (p384, KeyKind::P384),
            (rsa, KeyKind::Rsa { bits: 2048 }),
        ] {
            let pem = csr_of(&key, "CP-1", |_| {});
            let checked = check_csr(&pem, "CP-1").expect("a good request");
            assert_eq!(checked.key, kind);
            let signed = ca.sign(&checked, now, [0xff; 16]).expect("signed");
            assert!(
                signed
                    .chain
                    .contains("-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----")
            );
            let der = leaf(&signed.chain);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            assert_eq!(
                cert.subject().to_string(),
                "CN=CP-1",
                "the request's O is not vouched for"
            );
            assert_eq!(cert.issuer().to_string(), "CN=charge point sub-CA");
            assert!(!cert.is_ca());
            // The request's key, as it was: algorithm, curve and bits.
            assert_eq!(
                cert.public_key().raw,
                key.subject_public_key_info().as_slice()
            );
            let ca_spki = ca_key.subject_public_key_info();
            let (_, ca_spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&ca_spki).unwrap();
            cert.verify_signature(Some(&ca_spki))
                .expect("signed by the CA");
            assert_eq!(signed.serial, format!("7f{}", "ff".repeat(15)));
            assert_eq!(cert.raw_serial_as_string().replace(':', ""), signed.serial);
            assert_eq!(
                cert.validity().not_after.timestamp(),
                1_800_000_000 + 86_400 * 365
            );
            assert_eq!(cert.validity().not_before.timestamp(), 1_800_000_000 - 300);
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth && !eku.code_signing);
        }
        // Bare base64 DER, as some stations send it, is read too.
        let pem = csr_of(&p256(), "CP-1", |_| {});
        let bare: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(check_csr(&bare, "CP-1").is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn each_flaw_has_its_refusal() {
        let key = p256();
        let good = csr_of(&key, "CP-1", |_| {});
        assert_eq!(
            check_csr(&good, "CP-2").unwrap_err(),
            CsrRefusal::CommonName
        );
        assert_eq!(
            check_csr(&good, "cp-1").unwrap_err(),
            CsrRefusal::CommonName
        );
        let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_eq!(
            check_csr(&csr_of(&ed25519, "CP-1", |_| {}), "CP-1").unwrap_err(),
            CsrRefusal::KeyType
        );
        let signs_certificates = csr_of(&key, "CP-1", |p| {
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
            ];
        });
        assert_eq!(
            check_csr(&signs_certificates, "CP-1").unwrap_err(),
            CsrRefusal::Extensions
        );
        let signs_code = csr_of(&key, "CP-1", |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        });
        assert_eq!(
            check_csr(&signs_code, "CP-1").unwrap_err(),
            CsrRefusal::Extensions
        );
        let client = csr_of(&key, "CP-1", |p| {
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            p.subject_alt_names = vec![rcgen::SanType::DnsName("cp-1.example".try_into().unwrap())];
        });
        assert!(
            check_csr(&client, "CP-1").is_ok(),
            "a client's own extensions pass"
        );

        // A signature that does not match: the last byte of the DER is the signature's.
        let mut der = decode(&good).unwrap();
        *der.last_mut().unwrap() ^= 0x01;
        use base64::Engine as _;
        let tampered = base64::engine::general_purpose::STANDARD.encode(&der);
        assert_eq!(
            check_csr(&tampered, "CP-1").unwrap_err(),
            CsrRefusal::Signature
        );

        assert_eq!(
            check_csr("not base64 at all!", "CP-1").unwrap_err(),
            CsrRefusal::Encoding
        );
        assert_eq!(
            check_csr("AAAA", "CP-1").unwrap_err(),
            CsrRefusal::Malformed
        );
        let certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            check_csr(certificate, "CP-1").unwrap_err(),
            CsrRefusal::Encoding
        );
        let long = "A".repeat(MAX_CSR + 4);
        assert_eq!(check_csr(&long, "CP-1").unwrap_err(), CsrRefusal::Encoding);
        for refusal in [
            CsrRefusal::Encoding,
            CsrRefusal::CertificateType,
            CsrRefusal::Signing,
        ] {
            assert!(refusal.code().len() <= 20);
        }
    }

    #[test]
    fn a_ca_needs_its_own_key_and_a_ca_certificate() {
        let (_, _, dir) = authority("files");
        let other = p256();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
        let year = Duration::from_secs(86_400 * 365);
        let wrong_key =
            CertificateAuthority::load(&dir.join("ca.pem"), &dir.join("other.key"), year);
        assert!(
            matches!(wrong_key, Err(CaError::Key { .. })),
            "{wrong_key:?}"
        );
        let leaf = CertificateParams::new(vec!["x".to_owned()])
            .unwrap()
            .self_signed(&other)
            .unwrap();
        std::fs::write(dir.join("leaf.pem"), leaf.pem()).unwrap();
        let not_ca =
            CertificateAuthority::load(&dir.join("leaf.pem"), &dir.join("other.key"), year);
        assert!(matches!(not_ca, Err(CaError::Cert { .. })), "{not_ca:?}");
        let missing = CertificateAuthority::load(&dir.join("none.pem"), &dir.join("ca.key"), year);
        assert!(matches!(missing, Err(CaError::Cert { .. })));
        let _ = std::fs::remove_dir_all(dir);
    }
}
