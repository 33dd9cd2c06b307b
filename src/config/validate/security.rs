//! The `[security]` section, checked with the listeners it must serve: which profiles are
//! terminated here and which behind a balancer, the certificates and keys they need, lockouts,
//! session tickets, revocation lists and certificate signing.

use super::super::raw::OneOrMany;
use super::*;

/// Validates `[security]` against the main listener (`server`) and the extra ones.
pub(super) fn security(
    check: &Check<'_>,
    s: RawSecurity,
    server: &ServerConfig,
    extra: &[ListenerConfig],
) -> Result<SecurityConfig, ConfigError> {
    let main = profile(check, "security.profile", s.profile)?;
    let lockout = lockout(check, &s)?;
    let profiles: Vec<Profile> = std::iter::once(main)
        .chain(extra.iter().map(|l| l.profile))
        .collect();
    let terminated = terminated_profiles(check, main, server, extra)?;
    distinct_addresses(check, server, extra)?;
    let credentials = file(s.credentials);
    if credentials.is_none() && profiles.iter().any(|p| p.basic_auth()) {
        return Err(check.invalid(
            "security.credentials",
            "a profile 1 or 2 listener needs a credentials file".into(),
        ));
    }
    let tls_certs = certificate_pairs(check, s.tls_cert, s.tls_key)?;
    if tls_certs.is_empty() && terminated.iter().any(|p| p.tls()) {
        return Err(check.invalid(
            "security.tls_cert",
            "a profile 2 or 3 listener needs a certificate and its key (security.tls_key)".into(),
        ));
    }
    let client_ca = file(s.client_ca);
    if client_ca.is_none() && terminated.contains(&Profile::MutualTls) {
        return Err(check.invalid(
            "security.client_ca",
            "a profile 3 listener needs the CA client certificates must chain to".into(),
        ));
    }
    let signing = signing(
        check,
        s.certificate_signing,
        (s.ca_cert, s.ca_key),
        s.certificate_validity,
    )?;
    let renew_before = check.duration(
        "security.renew_before",
        s.renew_before,
        DEFAULT_RENEW_BEFORE,
    )?;
    let renewals_per_scan = check.within(
        "security.renewals_per_scan",
        s.renewals_per_scan.unwrap_or(0),
        0..=100_000,
    )?;
    if let Signing::Ca { validity, .. } = &signing
        && renewals_per_scan > 0
        && renew_before >= *validity
    {
        // Every certificate the gateway signs would be due the moment it is made, and asked
        // to renew again after each renewal.
        return Err(check.invalid(
            "security.renew_before",
            format!(
                "must be shorter than security.certificate_validity when the gateway asks \
                 renewals (renewals_per_scan > 0): {}s is not shorter than {}s (renew_before \
                 defaults to 30 days)",
                renew_before.as_secs(),
                validity.as_secs()
            ),
        ));
    }
    Ok(SecurityConfig {
        profile: main,
        credentials,
        tls_certs,
        client_ca,
        client_crl: s
            .client_crl
            .map(|c| c.into_vec())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !c.is_empty())
            .map(PathBuf::from)
            .collect(),
        check_serial_number: s.check_serial_number.unwrap_or(DEFAULT_CHECK_SERIAL_NUMBER),
        tickets: tickets(
            check,
            s.tls_resumption,
            s.tls_ticket_lifetime,
            s.tls_ticket_keys,
        )?,
        signing,
        renew_before,
        renewals_per_scan,
        signings_per_second: check.within(
            "security.signings_per_second",
            s.signings_per_second.unwrap_or(DEFAULT_SIGNINGS_PER_SECOND),
            1..=100_000,
        )?,
        certificate_scan: check.duration_min(
            "security.certificate_scan",
            s.certificate_scan,
            DEFAULT_CERTIFICATE_SCAN,
            Duration::from_millis(100),
        )?,
        min_profile: match s.min_profile {
            None => DEFAULT_MIN_PROFILE,
            Some(_) => profile(check, "security.min_profile", s.min_profile)?,
        },
        lockout,
    })
}

/// A path given and not empty.
fn file(value: Option<String>) -> Option<PathBuf> {
    value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The profiles of listeners that terminate TLS (or speak plain) themselves; a listener that
/// takes TLS done by the balancer must be a TLS profile behind trusted PROXY v2 headers.
fn terminated_profiles(
    check: &Check<'_>,
    main: Profile,
    server: &ServerConfig,
    extra: &[ListenerConfig],
) -> Result<Vec<Profile>, ConfigError> {
    let listeners = std::iter::once((main, server.tls_offload, server.proxy_protocol)).chain(
        extra
            .iter()
            .map(|l| (l.profile, l.tls_offload, l.proxy_protocol)),
    );
    let mut terminated = Vec::new();
    for (profile, offload, proxy) in listeners {
        if !offload {
            terminated.push(profile);
            continue;
        }
        let reason = if !profile.tls() {
            "only a profile 2 or 3 listener can take TLS done by the balancer"
        } else if !proxy {
            "needs proxy_protocol = true: the balancer's word on the client's TLS comes in the \
             PROXY v2 header"
        } else if server.trusted_proxies.is_empty() {
            "needs server.trusted_proxies: only the balancer may vouch for a client's TLS"
        } else {
            continue;
        };
        return Err(check.invalid("tls_offload", reason.into()));
    }
    Ok(terminated)
}

/// No two listeners on one address (port 0, "any free port", may repeat).
fn distinct_addresses(
    check: &Check<'_>,
    server: &ServerConfig,
    extra: &[ListenerConfig],
) -> Result<(), ConfigError> {
    let mut seen = Vec::new();
    for addr in std::iter::once(server.listen).chain(extra.iter().map(|l| l.listen)) {
        if addr.port() != 0 && seen.contains(&addr) {
            return Err(check.invalid(
                "listeners.listen",
                format!("{addr} is used by two listeners"),
            ));
        }
        seen.push(addr);
    }
    Ok(())
}

/// `security.tls_cert` and `security.tls_key`, paired in order.
fn certificate_pairs(
    check: &Check<'_>,
    certs: Option<OneOrMany>,
    keys: Option<OneOrMany>,
) -> Result<Vec<CertFiles>, ConfigError> {
    let given = |v: Option<OneOrMany>| -> Vec<String> {
        v.map(|v| v.into_vec())
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect()
    };
    let (certs, keys) = (given(certs), given(keys));
    if certs.len() != keys.len() {
        return Err(check.invalid(
            "security.tls_key",
            format!(
                "{} keys for {} certificates (security.tls_cert): give them in pairs",
                keys.len(),
                certs.len()
            ),
        ));
    }
    Ok(certs
        .into_iter()
        .zip(keys)
        .map(|(cert, key)| CertFiles {
            cert: cert.into(),
            key: key.into(),
        })
        .collect())
}

/// Lockouts of identities that keep failing authentication.
fn lockout(check: &Check<'_>, s: &RawSecurity) -> Result<LockoutRule, ConfigError> {
    let first = check.duration_min(
        "security.lockout_time",
        s.lockout_time.clone(),
        DEFAULT_LOCKOUT_TIME,
        Duration::from_secs(1),
    )?;
    let max = check.duration(
        "security.lockout_max_time",
        s.lockout_max_time.clone(),
        DEFAULT_LOCKOUT_MAX_TIME,
    )?;
    if max < first {
        return Err(check.invalid(
            "security.lockout_max_time",
            format!("{max:?} is shorter than security.lockout_time ({first:?})"),
        ));
    }
    Ok(LockoutRule {
        failures: s.lockout_failures.unwrap_or(DEFAULT_LOCKOUT_FAILURES),
        window: check.duration_min(
            "security.lockout_window",
            s.lockout_window.clone(),
            DEFAULT_LOCKOUT_WINDOW,
            Duration::from_secs(1),
        )?,
        first,
        max,
        table: check.within(
            "security.lockout_table",
            s.lockout_table.unwrap_or(DEFAULT_LOCKOUT_TABLE),
            16..=16_777_216,
        )?,
        journaled: s.journaled_refusals.unwrap_or(DEFAULT_JOURNALED_REFUSALS),
    })
}

/// Session tickets (None: resumption off).
fn tickets(
    check: &Check<'_>,
    resumption: Option<bool>,
    lifetime: Option<String>,
    keys: Option<String>,
) -> Result<Option<TicketConfig>, ConfigError> {
    if !resumption.unwrap_or(DEFAULT_TLS_RESUMPTION) {
        return Ok(None);
    }
    let lifetime = check.duration_min(
        "security.tls_ticket_lifetime",
        lifetime,
        DEFAULT_TLS_TICKET_LIFETIME,
        Duration::from_secs(60),
    )?;
    // TLS 1.3 caps a ticket's lifetime at seven days (RFC 8446 4.6.1).
    if lifetime > Duration::from_secs(7 * 86_400) {
        return Err(check.invalid(
            "security.tls_ticket_lifetime",
            format!("{lifetime:?} is over TLS 1.3's limit of 7 days"),
        ));
    }
    Ok(Some(TicketConfig {
        keys: file(keys),
        lifetime,
    }))
}

/// Who signs the charge points' certificates: nobody, the gateway's sub-CA, or the backend.
fn signing(
    check: &Check<'_>,
    mode: Option<String>,
    (ca_cert, ca_key): (Option<String>, Option<String>),
    validity: Option<String>,
) -> Result<Signing, ConfigError> {
    let (ca_cert, ca_key) = (file(ca_cert), file(ca_key));
    Ok(match mode.as_deref() {
        None | Some("") if ca_cert.is_none() && ca_key.is_none() => Signing::Off,
        Some("off") => Signing::Off,
        Some("backend") => Signing::Backend,
        None | Some("") | Some("ca") => match (ca_cert, ca_key) {
            (Some(cert), Some(key)) => Signing::Ca {
                cert,
                key,
                validity: check.duration_min(
                    "security.certificate_validity",
                    validity,
                    DEFAULT_CERTIFICATE_VALIDITY,
                    Duration::from_secs(86_400),
                )?,
            },
            _ => {
                return Err(check.invalid(
                    "security.ca_cert",
                    "certificate signing by the gateway needs security.ca_cert and \
                     security.ca_key (the sub-CA's certificate and key)"
                        .into(),
                ));
            }
        },
        Some(other) => {
            return Err(check.invalid(
                "security.certificate_signing",
                format!("{other:?} is not \"off\", \"ca\" or \"backend\""),
            ));
        }
    })
}
