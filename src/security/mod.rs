//! Who may connect as whom: the OCPP 1.6 security whitepaper's profiles, per listener.
//!
//! | profile | the charge point proves its identity by            | channel    |
//! |---------|----------------------------------------------------|------------|
//! | 0       | nothing (trusted networks, the embedded default)    | TCP        |
//! | 1       | HTTP Basic auth: identity + AuthorizationKey        | TCP        |
//! | 2       | HTTP Basic auth                                     | TLS        |
//! | 3       | a client certificate whose subject CN is the identity | mutual TLS |
//!
//! The checks run in the event loop at the upgrade, before the connection counts as the charge
//! point's: a connection that fails them is refused (401, 403) and never reaches a processor,
//! so it can never take over a connection that authenticated. Nothing here does I/O on the
//! loops' behalf; the files are read at start and on SIGHUP ([`Security::reload`]).

pub mod certificates;
pub mod credentials;
pub mod lockout;
pub mod revocation;
pub mod signing;
pub mod tickets;

use std::sync::Arc;

use log::{info, warn};

use crate::config::Config;
use certificates::{CertError, TlsConfigs, TlsFiles};
use credentials::{Credentials, CredentialsError};

pub use crate::types::Profile;

/// Why the security setup cannot be used; the message names the key and the file.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Certificates(#[from] CertError),
    #[error("`security.credentials`: {0}")]
    Credentials(#[from] CredentialsError),
}

/// What every loop checks connections against, and the admin API changes.
#[derive(Debug, Default)]
pub struct Security {
    /// Basic-auth credentials (when a profile 1 or 2 listener exists).
    pub credentials: Option<Arc<Credentials>>,
    /// Server configurations (when a profile 2 or 3 listener exists).
    pub tls: Option<TlsConfigs>,
    /// A BootNotification's serial number must be the client certificate's CN (profile 3).
    pub check_serial_number: bool,
    /// Failed authentications per address: the lockout and the refusals' journal allowance.
    pub lockouts: lockout::Lockouts,
    /// `security.min_profile`: no identity is served below it unless its credentials say so.
    pub min_profile: Profile,
}

impl Security {
    /// Loads what the configured listeners need: a missing or bad file stops the start.
    pub fn load(config: &Config) -> Result<Security, SecurityError> {
        let listeners = config.listeners();
        let profiles: Vec<Profile> = listeners.iter().map(|l| l.profile).collect();
        // Profiles whose TLS the gateway does itself (not a balancer in front).
        let terminated: Vec<Profile> = listeners
            .iter()
            .filter(|l| l.terminates_tls())
            .map(|l| l.profile)
            .collect();
        let s = &config.security;
        let credentials = match &s.credentials {
            Some(path) if profiles.iter().any(|p| p.basic_auth()) => {
                let store = Credentials::load_with(path, config.ocpp.identity_charset)?;
                info!(
                    "credentials: {} charge points from {}",
                    store.len(),
                    path.display()
                );
                Some(Arc::new(store))
            }
            _ => None,
        };
        if !s.client_crl.is_empty() && !terminated.contains(&Profile::MutualTls) {
            // Offloaded profile 3 listeners: revocation is the balancer's (its crl-file).
            warn!(
                "security.client_crl is set but no profile 3 listener does its own TLS: it is \
                 not checked here (behind a balancer doing TLS, revocation is its crl-file)"
            );
        }
        let tls = if !terminated.is_empty() {
            let files = TlsFiles {
                certs: s.tls_certs.clone(),
                client_ca: s.client_ca.clone(),
                client_crl: s.client_crl.clone(),
                tickets: s.tickets.clone(),
            };
            let mutual = terminated.contains(&Profile::MutualTls);
            Some(TlsConfigs::load(files, mutual)?)
        } else {
            None
        };
        Ok(Security {
            credentials,
            tls,
            check_serial_number: s.check_serial_number,
            lockouts: lockout::Lockouts::new(s.lockout),
            min_profile: s.min_profile,
        })
    }

    /// Reads the certificates and credentials again (SIGHUP). What fails to load is logged and
    /// its old version stays; existing connections are untouched either way.
    pub fn reload(&self) {
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => info!("TLS certificates reloaded"),
                Err(e) => warn!("TLS certificates not reloaded, the old ones stay: {e}"),
            }
        }
        if let Some(credentials) = &self.credentials {
            match credentials.reload() {
                Ok(n) => info!("credentials reloaded: {n} charge points"),
                Err(e) => warn!("credentials not reloaded, the old ones stay: {e}"),
            }
        }
    }
}

/// How a connection proved its identity (what a processor needs to know of it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// It did not have to (profile 0).
    #[default]
    None,
    /// Basic auth (profiles 1 and 2).
    Password,
    /// A client certificate with its identity as CN (profile 3).
    Certificate,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Password => "password",
            Auth::Certificate => "certificate",
        }
    }
}

/// Why a connection was refused at the upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no Basic credentials")]
    Missing,
    #[error("malformed Basic credentials")]
    Malformed,
    #[error("Basic auth user is not the identity in the URL")]
    WrongUser,
    #[error("wrong password")]
    WrongPassword,
    #[error("no client certificate")]
    NoCertificate,
    #[error("client certificate CN is not the identity in the URL")]
    WrongCommonName,
    #[error("client certificate revoked (security.client_crl)")]
    Revoked,
    #[error("the balancer's PROXY header does not say the client used TLS (tls_offload)")]
    NotTls,
    #[error("the balancer's PROXY header does not say the client certificate was verified")]
    NotVerified,
    #[error("the identity must use a higher security profile than this listener's")]
    ProfileTooLow,
}

impl AuthFailure {
    /// The reason in journal lines and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "no_credentials",
            AuthFailure::Malformed => "malformed_credentials",
            AuthFailure::WrongUser => "wrong_user",
            AuthFailure::WrongPassword => "wrong_password",
            AuthFailure::NoCertificate => "no_certificate",
            AuthFailure::WrongCommonName => "certificate_not_for_identity",
            AuthFailure::Revoked => "certificate_revoked",
            AuthFailure::NotTls => "tls_not_used",
            AuthFailure::NotVerified => "certificate_not_verified",
            AuthFailure::ProfileTooLow => "profile_too_low",
        }
    }

    /// Answered 403 (the certificate names someone else) rather than 401 (try credentials).
    pub fn forbidden(self) -> bool {
        matches!(
            self,
            AuthFailure::NoCertificate
                | AuthFailure::WrongCommonName
                | AuthFailure::NotTls
                | AuthFailure::NotVerified
        )
    }
}

/// The lowest profile `identity` may be served on as far as a loop can tell, and whether its
/// credentials line pins it (`min_profile=N`: then exactly that floor applies, whatever the
/// identity did before). Otherwise: `security.min_profile`, and at least profile 1 for an
/// identity with a credential. What the identity authenticated at before is the processor's to
/// check (it remembers it).
pub fn required_profile(security: &Security, identity: &str) -> (Profile, bool) {
    let (has_credential, pinned) = match &security.credentials {
        Some(credentials) => credentials.profile_rule(identity),
        None => (false, None),
    };
    match pinned {
        Some(floor) => (floor, true),
        None if has_credential => (security.min_profile.max(Profile::BasicAuth), false),
        None => (security.min_profile, false),
    }
}

/// Checks an `Authorization` header for `identity` (decoding: `wire::basic`).
pub fn check_basic(
    credentials: &Credentials,
    identity: &str,
    authorization: Option<&[u8]>,
) -> Result<(), AuthFailure> {
    use wire::basic::{BasicError, with_password};
    match with_password(authorization, identity, |password| {
        credentials.verify(identity, password)
    }) {
        Ok(true) => Ok(()),
        Ok(false) => Err(AuthFailure::WrongPassword),
        Err(BasicError::Missing) => Err(AuthFailure::Missing),
        Err(BasicError::Malformed) => Err(AuthFailure::Malformed),
        Err(BasicError::WrongUser) => Err(AuthFailure::WrongUser),
    }
}

/// The certificate a client presented (the TLS layer reads its CN).
pub use transport::tls::ClientCertificate;

/// Checks that the client certificate names `identity` as its CN. Its chain was verified
/// against `security.client_ca` during the handshake.
pub fn check_certificate(
    identity: &str,
    presented: Option<&ClientCertificate>,
) -> Result<(), AuthFailure> {
    match presented {
        None | Some(ClientCertificate::None) => Err(AuthFailure::NoCertificate),
        Some(ClientCertificate::CommonName(cn)) if &**cn == identity => Ok(()),
        Some(_) => Err(AuthFailure::WrongCommonName),
    }
}

/// On a `tls_offload` listener, the balancer's account of the client's TLS (the PROXY v2
/// header's SSL TLV, None without one) in place of the handshake the gateway did not do: the
/// client used TLS; on profile 3 it also presented a certificate, the balancer verified it
/// (result 0) and its CN is `identity`, the check a direct mutual-TLS connection gets. The
/// bits are checked, not the TLV's presence: HAProxy sends one with "TLS" off on a plain
/// frontend.
pub fn check_offloaded(
    identity: &str,
    ssl: Option<&wire::proxy::Ssl>,
    profile: Profile,
) -> Result<(), AuthFailure> {
    let Some(ssl) = ssl.filter(|ssl| ssl.used_tls()) else {
        return Err(AuthFailure::NotTls);
    };
    if profile != Profile::MutualTls {
        return Ok(());
    }
    if !ssl.presented_certificate() {
        return Err(AuthFailure::NoCertificate);
    }
    if !ssl.certificate_verified() {
        return Err(AuthFailure::NotVerified);
    }
    match ssl.common_name.as_deref() {
        Some(cn) if cn == identity => Ok(()),
        _ => Err(AuthFailure::WrongCommonName),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn an_offloaded_handshake_is_judged_by_the_tlvs_bits() {
        use wire::proxy::{PP2_CLIENT_CERT_CONN, PP2_CLIENT_CERT_SESS, PP2_CLIENT_SSL, Ssl};
        let ssl = |client, verify, cn: Option<&str>| Ssl {
            client,
            verify,
            common_name: cn.map(Into::into),
            ..Ssl::default()
        };
        let verified = PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN;
        let check = |s: Option<Ssl>, profile| check_offloaded("CP-1", s.as_ref(), profile);
        for profile in [Profile::TlsBasicAuth, Profile::MutualTls] {
            assert_eq!(check(None, profile), Err(AuthFailure::NotTls));
            // A plain frontend still sends the TLV, with the TLS bit off.
            let plain = ssl(0, 0, Some("CP-1"));
            assert_eq!(check(Some(plain), profile), Err(AuthFailure::NotTls));
        }
        assert_eq!(
            check(Some(ssl(PP2_CLIENT_SSL, 0, None)), Profile::TlsBasicAuth),
            Ok(())
        );
        let cases = [
            (ssl(verified, 0, Some("CP-1")), Ok(())),
            // Resumed: the certificate was presented earlier in the session.
            (
                ssl(PP2_CLIENT_SSL | PP2_CLIENT_CERT_SESS, 0, Some("CP-1")),
                Ok(()),
            ),
            (
                ssl(PP2_CLIENT_SSL, 0, None),
                Err(AuthFailure::NoCertificate),
            ),
            (
                ssl(verified, 20, Some("CP-1")),
                Err(AuthFailure::NotVerified),
            ),
            (
                ssl(verified, 0, Some("CP-2")),
                Err(AuthFailure::WrongCommonName),
            ),
            (
                ssl(verified, 0, Some("cp-1")),
                Err(AuthFailure::WrongCommonName),
            ),
            (ssl(verified, 0, None), Err(AuthFailure::WrongCommonName)),
        ];
        for (s, expected) in cases {
            assert_eq!(
                check(Some(s.clone()), Profile::MutualTls),
                expected,
                "{s:?}"
            );
        }
    }

    fn header(user_pass: &[u8]) -> Vec<u8> {
        let mut h = b"Basic ".to_vec();
        h.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(user_pass)
                .as_bytes(),
        );
        h
    }

    fn store(entries: &[(&str, &[u8])]) -> Credentials {
        let dir = std::env::temp_dir().join(format!(
            "basic-test-{}-{}",
            std::process::id(),
            entries.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials");
        std::fs::write(&path, "").unwrap();
        let store = Credentials::load(&path).unwrap();
        for (id, key) in entries {
            store.set(id, key).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
        store
    }

    #[test]
    fn basic_auth_splits_after_the_identity_and_takes_bytes() {
        let key: &[u8] = &[0, 1, 0xFF, b':', 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
        let creds = store(&[("CP:1", key), ("CP", b"another-key-1234")]);
        let mut right = b"CP:1:".to_vec();
        right.extend_from_slice(key);
        assert_eq!(check_basic(&creds, "CP:1", Some(&header(&right))), Ok(()));
        // Split at the first colon, this would be user "CP": still not CP's key.
        assert_eq!(
            check_basic(&creds, "CP", Some(&header(&right))),
            Err(AuthFailure::WrongPassword)
        );
        assert_eq!(
            check_basic(&creds, "CP:1", Some(&header(b"CP:1:wrong-password"))),
            Err(AuthFailure::WrongPassword)
        );
        assert_eq!(
            check_basic(&creds, "CP:1", Some(&header(b"CP2:whatever"))),
            Err(AuthFailure::WrongUser)
        );
        assert_eq!(check_basic(&creds, "CP:1", None), Err(AuthFailure::Missing));
        assert_eq!(
            check_basic(&creds, "CP:1", Some(b"Bearer abc")),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            check_basic(&creds, "CP:1", Some(b"Basic !!!")),
            Err(AuthFailure::Malformed)
        );
        assert_eq!(
            check_basic(&creds, "CP:1", Some(b"Basic")),
            Err(AuthFailure::Malformed)
        );
        let mut lower = b"basic  ".to_vec();
        lower.extend_from_slice(&header(&right)[6..]);
        assert_eq!(check_basic(&creds, "CP:1", Some(&lower)), Ok(()));
        assert_eq!(
            check_basic(&creds, "NOPE", Some(&header(b"NOPE:another-key-1234"))),
            Err(AuthFailure::WrongPassword)
        );
    }

    #[test]
    fn profiles() {
        for n in 0..4 {
            assert_eq!(Profile::from_number(n).unwrap().number(), n);
        }
        assert_eq!(Profile::from_number(4), None);
        assert!(Profile::TlsBasicAuth.tls() && Profile::TlsBasicAuth.basic_auth());
        assert!(Profile::MutualTls.tls() && !Profile::MutualTls.basic_auth());
        assert!(!Profile::BasicAuth.tls() && Profile::BasicAuth.basic_auth());
        assert!(AuthFailure::WrongCommonName.forbidden() && !AuthFailure::Missing.forbidden());
    }

    #[test]
    fn the_lowest_profile_an_identity_is_served_on() {
        let dir = std::env::temp_dir().join(format!("floor-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials");
        let key = credentials::Credential::new(b"0123456789abcdef").unwrap();
        let mut pinned = key;
        pinned.min_profile = Some(Profile::Unsecured);
        std::fs::write(
            &path,
            format!("{}\n{}\n", key.line("CP1"), pinned.line("CP2")),
        )
        .unwrap();
        let credentials = Arc::new(Credentials::load(&path).unwrap());
        let mut security = Security {
            credentials: Some(Arc::clone(&credentials)),
            ..Security::default()
        };
        assert_eq!(
            required_profile(&security, "CP1"),
            (Profile::BasicAuth, false)
        );
        assert_eq!(
            required_profile(&security, "CP2"),
            (Profile::Unsecured, true)
        );
        assert_eq!(
            required_profile(&security, "CP3"),
            (Profile::Unsecured, false)
        );
        security.min_profile = Profile::TlsBasicAuth;
        assert_eq!(
            required_profile(&security, "CP1"),
            (Profile::TlsBasicAuth, false)
        );
        assert_eq!(
            required_profile(&security, "CP2"),
            (Profile::Unsecured, true)
        );
        assert_eq!(
            required_profile(&security, "CP3"),
            (Profile::TlsBasicAuth, false)
        );
        // A new key keeps the pin.
        credentials
            .set("CP2", b"another-key-0123")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            required_profile(&security, "CP2"),
            (Profile::Unsecured, true)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
