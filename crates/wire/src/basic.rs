//! The `Authorization: Basic` header of a charge point's upgrade (security profiles 1 and 2),
//! decoded without deciding anything: whether the password is right is the caller's question.
//!
//! The username must be the identity in the URL. Since an identity may contain colons, the
//! decoded text is split right after the identity, not at its first colon. The password is bytes
//! (the OCPP security whitepaper recommends random binary keys).

use base64::Engine;

/// Why a header gives no password for the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BasicError {
    /// No header, or another scheme than Basic.
    Missing,
    /// Not `Basic <base64>`.
    Malformed,
    /// The username is not the identity.
    WrongUser,
}

/// Calls `check` with the password `authorization` gives `identity`, then wipes the decoded
/// bytes (the password never outlives the call).
pub fn with_password<T>(
    authorization: Option<&[u8]>,
    identity: &str,
    check: impl FnOnce(&[u8]) -> T,
) -> Result<T, BasicError> {
    let header = authorization.ok_or(BasicError::Missing)?.trim_ascii();
    let (scheme, encoded) = match header.iter().position(|&b| b == b' ') {
        Some(i) => (&header[..i], header[i + 1..].trim_ascii()),
        None => return Err(BasicError::Malformed),
    };
    if !scheme.eq_ignore_ascii_case(b"Basic") {
        return Err(BasicError::Missing);
    }
    let mut decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| BasicError::Malformed)?;
    let result = decoded
        .strip_prefix(identity.as_bytes())
        .and_then(|rest| rest.strip_prefix(b":"))
        .map(check)
        .ok_or(BasicError::WrongUser);
    decoded.fill(0);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_pass: &[u8]) -> Vec<u8> {
        let mut h = b"Basic ".to_vec();
        h.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(user_pass)
                .as_bytes(),
        );
        h
    }

    fn password(authorization: Option<&[u8]>, identity: &str) -> Result<Vec<u8>, BasicError> {
        with_password(authorization, identity, <[u8]>::to_vec)
    }

    #[test]
    fn the_password_after_the_identity() {
        assert_eq!(
            password(Some(&header(b"CP1:secret")), "CP1"),
            Ok(b"secret".to_vec())
        );
        assert_eq!(
            password(Some(&header(b"a:b:c:d")), "a:b"),
            Ok(b"c:d".to_vec())
        );
        assert_eq!(
            password(Some(&header(b"CP1:\x00\xff")), "CP1"),
            Ok(vec![0, 0xff])
        );
        let mut spaced = b"  bAsIc   ".to_vec();
        spaced.extend_from_slice(&header(b"CP1:k")[6..]);
        assert_eq!(password(Some(&spaced), "CP1"), Ok(b"k".to_vec()));
    }

    #[test]
    fn what_gives_no_password() {
        assert_eq!(password(None, "CP1"), Err(BasicError::Missing));
        assert_eq!(
            password(Some(b"Bearer abc"), "CP1"),
            Err(BasicError::Missing)
        );
        assert_eq!(password(Some(b"Basic"), "CP1"), Err(BasicError::Malformed));
        assert_eq!(
            password(Some(b"Basic !!!"), "CP1"),
            Err(BasicError::Malformed)
        );
        assert_eq!(
            password(Some(&header(b"CP2:secret")), "CP1"),
            Err(BasicError::WrongUser)
        );
        assert_eq!(
            password(Some(&header(b"CP1secret")), "CP1"),
            Err(BasicError::WrongUser)
        );
        assert_eq!(
            password(Some(&header(b"CP10:secret")), "CP1"),
            Err(BasicError::WrongUser)
        );
    }
}
