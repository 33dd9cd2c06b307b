//! The value types that carry a schema constraint of their own, so a payload field's type says
//! everything about it: [`CiString`] (`maxLength`), [`DateTime`] (`format: date-time`), [`Uri`]
//! (`format: uri`), [`Decimal`] (`number` with `multipleOf: 0.1`) and [`NonEmpty`]
//! (`minItems: 1`).
//!
//! Each checks itself while deserializing and reports through serde's standard messages
//! (`invalid length ...`, `invalid value ...`), which the decoder maps to
//! PropertyConstraintViolation. Each also has a checked constructor for building payloads, so a
//! value of these types is always schema-valid and anything built from them serializes to JSON
//! the schema accepts.
//!
//! Decisions where the schemas leave room:
//! - Lengths count Unicode scalar values, as JSON Schema's `maxLength` does.
//! - date-time is RFC 3339 `date-time` exactly: `T`/`t` separator, seconds required, optional
//!   fraction, `Z`/`z` or `±HH:MM`; real calendar dates; second 60 only where it is 23:59:60 UTC.
//!   The text is kept as received (relaying must not rewrite a charge point's timestamps).
//! - uri is an absolute RFC 3986 URI (scheme required), checked by its grammar, no normalizing.
//! - Decimal: every `number` in the 1.6 schemas has `multipleOf: 0.1`, i.e. at most one
//!   decimal place; integers are accepted as the schema allows.

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::Deref;

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};
use serde::{Serialize, Serializer};

/// Most characters of a rejected value quoted back in an error.
pub(super) const ECHO_LIMIT: usize = 64;

/// Why a value cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The text has more characters than the field allows.
    #[error("longer than {max} characters")]
    TooLong { max: usize },
    /// Not an RFC 3339 date-time with a time zone.
    #[error("not an RFC 3339 date-time with a time zone")]
    NotDateTime,
    /// Not an absolute RFC 3986 URI.
    #[error("not an absolute URI")]
    NotUri,
    /// Not a finite multiple of 0.1.
    #[error("not a multiple of 0.1")]
    NotTenths,
    /// An empty list where the schema asks for at least one element.
    #[error("empty list")]
    Empty,
}

/// The first [`ECHO_LIMIT`] characters of `s`: bounds what a peer can make us write.
pub(super) fn capped(s: &str) -> &str {
    s.char_indices()
        .nth(ECHO_LIMIT)
        .map_or(s, |(end, _)| &s[..end])
}

/// A string of at most `N` characters (the spec's CiStringN; also the security whitepaper's
/// `string[N]` fields). Case-insensitive in meaning, kept as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CiString<const N: usize>(String);

/// IdToken: an identifier of at most 20 characters (idTag, parentIdTag).
pub type IdToken = CiString<20>;

impl<const N: usize> CiString<N> {
    /// The largest number of characters.
    pub const MAX_CHARS: usize = N;

    /// `text` if it has at most `N` characters.
    pub fn new(text: impl Into<String>) -> Result<Self, ValueError> {
        let text = text.into();
        match Self::excess(&text) {
            None => Ok(CiString(text)),
            Some(_) => Err(ValueError::TooLong { max: N }),
        }
    }

    /// The characters of `text` when it has more than `N` (the byte length is an upper bound,
    /// so short texts are not counted).
    fn excess(text: &str) -> Option<usize> {
        if text.len() <= N {
            return None;
        }
        let chars = text.chars().count();
        (chars > N).then_some(chars)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Equal ignoring ASCII case, as CiString comparisons are meant.
    pub fn eq_ignore_case(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl<const N: usize> Deref for CiString<N> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> AsRef<str> for CiString<N> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> fmt::Display for CiString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const N: usize> TryFrom<String> for CiString<N> {
    type Error = ValueError;

    fn try_from(text: String) -> Result<Self, ValueError> {
        Self::new(text)
    }
}

impl<const N: usize> TryFrom<&str> for CiString<N> {
    type Error = ValueError;

    fn try_from(text: &str) -> Result<Self, ValueError> {
        Self::new(text)
    }
}

impl<const N: usize> Serialize for CiString<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// serde's `Expected` for a length limit: "at most N characters".
struct AtMostChars(usize);

impl de::Expected for AtMostChars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at most {} characters", self.0)
    }
}

impl<'de, const N: usize> Deserialize<'de> for CiString<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CiStringVisitor<const N: usize>;

        impl<const N: usize> Visitor<'_> for CiStringVisitor<N> {
            type Value = CiString<N>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a string of at most {N} characters")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<CiString<N>, E> {
                match CiString::<N>::excess(text) {
                    None => Ok(CiString(text.to_owned())),
                    Some(chars) => Err(E::invalid_length(chars, &AtMostChars(N))),
                }
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<CiString<N>, E> {
                match CiString::<N>::excess(&text) {
                    None => Ok(CiString(text)),
                    Some(chars) => Err(E::invalid_length(chars, &AtMostChars(N))),
                }
            }
        }

        deserializer.deserialize_string(CiStringVisitor::<N>)
    }
}

/// Generates Deref/Display/Serialize/Deserialize for a validated text newtype.
macro_rules! checked_text {
    ($name:ident, $check:path, $error:expr, $expected:literal) => {
        impl $name {
            /// `text` if it is valid.
            pub fn parse(text: impl Into<String>) -> Result<Self, ValueError> {
                let text = text.into();
                if $check(&text) {
                    Ok($name(text))
                } else {
                    Err($error)
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct TextVisitor;

                impl Visitor<'_> for TextVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expected)
                    }

                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$name, E> {
                        if $check(text) {
                            Ok($name(text.to_owned()))
                        } else {
                            Err(E::invalid_value(Unexpected::Str(capped(text)), &self))
                        }
                    }
                }

                deserializer.deserialize_str(TextVisitor)
            }
        }
    };
}

/// An RFC 3339 date-time with a time zone, kept as its text (e.g. `2026-01-31T23:59:59.5Z`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DateTime(String);

checked_text!(
    DateTime,
    is_date_time,
    ValueError::NotDateTime,
    "an RFC 3339 date-time with a time zone"
);

/// An absolute URI (RFC 3986), kept as its text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Uri(String);

checked_text!(Uri, is_absolute_uri, ValueError::NotUri, "an absolute URI");

/// RFC 3339 `date-time`: `full-date "T" full-time`, see the module doc.
pub(crate) fn is_date_time(text: &str) -> bool {
    let b = text.as_bytes();
    // "YYYY-MM-DDTHH:MM:SS" and at least "Z" after it.
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return false;
    }
    if b[13] != b':' || b[16] != b':' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) =
        (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10]))
    else {
        return false;
    };
    let (Some(hour), Some(minute), Some(second)) =
        (digits(&b[11..13]), digits(&b[14..16]), digits(&b[17..19]))
    else {
        return false;
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return false;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut rest = &b[19..];
    if let [b'.', fraction @ ..] = rest {
        let count = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if count == 0 {
            return false;
        }
        rest = &fraction[count..];
    }
    // Minutes east of UTC.
    let offset: i32 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), hh1, hh2, b':', mm1, mm2] => {
            let (Some(hh), Some(mm)) = (digits(&[*hh1, *hh2]), digits(&[*mm1, *mm2])) else {
                return false;
            };
            if hh > 23 || mm > 59 {
                return false;
            }
            let minutes = (hh * 60 + mm) as i32;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return false,
    };
    // A leap second is the last second of a UTC day.
    second != 60 || ((hour * 60 + minute) as i32 - offset).rem_euclid(24 * 60) == 23 * 60 + 59
}

/// The value of a run of ASCII digits (at most 4 here, so no overflow).
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |value, &c| {
        c.is_ascii_digit().then(|| value * 10 + u32::from(c - b'0'))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// RFC 3986 `URI = scheme ":" hier-part [ "?" query ] [ "#" fragment ]`.
fn is_absolute_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut scheme_chars = scheme.bytes();
    if !scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return false;
    }
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (hier_part, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = match hier_part.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            if !is_authority(&after[..end]) {
                return false;
            }
            &after[end..]
        }
        None => hier_part,
    };
    // pchar / "/" for the path; query and fragment also take "?" ("#" was split off above, and
    // a second "#" is left in the fragment, where it is invalid).
    uri_chars(path, b":@/") && uri_chars(query, b":@/?") && uri_chars(fragment, b":@/?")
}

/// `authority = [ userinfo "@" ] host [ ":" port ]`.
fn is_authority(authority: &str) -> bool {
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    if userinfo.is_some_and(|userinfo| !uri_chars(userinfo, b":")) {
        return false;
    }
    let (host, port) = if let Some(literal) = host_port.strip_prefix('[') {
        let Some((literal, after)) = literal.split_once(']') else {
            return false;
        };
        if !is_ip_literal(literal) {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => ("", port),
            None if after.is_empty() => ("", ""),
            None => return false,
        }
    } else {
        host_port.split_once(':').unwrap_or((host_port, ""))
    };
    // reg-name covers IPv4 addresses too.
    uri_chars(host, b"") && port.bytes().all(|c| c.is_ascii_digit())
}

/// `IP-literal` without brackets: an IPv6 address or `IPvFuture`.
fn is_ip_literal(literal: &str) -> bool {
    if let Some(future) = literal.strip_prefix(['v', 'V']) {
        let Some((version, rest)) = future.split_once('.') else {
            return false;
        };
        return !version.is_empty()
            && version.bytes().all(|c| c.is_ascii_hexdigit())
            && !rest.is_empty()
            && rest
                .bytes()
                .all(|c| is_unreserved_or_sub_delim(c) || c == b':');
    }
    literal.parse::<Ipv6Addr>().is_ok()
}

/// Every byte is unreserved, a sub-delim, one of `extra`, or part of a `%XX` escape.
fn uri_chars(text: &str, extra: &[u8]) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c == b'%' {
            let escape = bytes.get(i + 1..i + 3);
            if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if is_unreserved_or_sub_delim(c) || extra.contains(&c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_unreserved_or_sub_delim(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&c)
}

/// A decimal with at most one decimal place: every `number` of the 1.6 schemas is
/// `multipleOf: 0.1` (charging limits and rates).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Decimal(f64);

impl Decimal {
    /// `value` if it is finite and a multiple of 0.1.
    pub fn new(value: f64) -> Result<Self, ValueError> {
        if is_tenths(value) {
            Ok(Decimal(value))
        } else {
            Err(ValueError::NotTenths)
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// Whether the shortest decimal text of `value` has at most one decimal place: then
/// `round(value * 10) / 10` lands back on the same float (division is correctly rounded).
fn is_tenths(value: f64) -> bool {
    value.is_finite() && (value * 10.0).round() / 10.0 == value
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DecimalVisitor;

        impl Visitor<'_> for DecimalVisitor {
            type Value = Decimal;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number that is a multiple of 0.1")
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Decimal, E> {
                Decimal::new(value).map_err(|_| E::invalid_value(Unexpected::Float(value), &self))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Decimal, E> {
                self.visit_f64(value as f64)
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Decimal, E> {
                self.visit_f64(value as f64)
            }
        }

        deserializer.deserialize_f64(DecimalVisitor)
    }
}

/// A list with at least one element (`minItems: 1`).
#[derive(Clone, Debug, PartialEq)]
pub struct NonEmpty<T>(Vec<T>);

impl<T> NonEmpty<T> {
    /// `items` if there is at least one.
    pub fn new(items: Vec<T>) -> Result<Self, ValueError> {
        if items.is_empty() {
            Err(ValueError::Empty)
        } else {
            Ok(NonEmpty(items))
        }
    }

    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<T> Deref for NonEmpty<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Serialize> Serialize for NonEmpty<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmpty<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<T>::deserialize(deserializer)?;
        if items.is_empty() {
            return Err(de::Error::invalid_length(0, &"at least one element"));
        }
        Ok(NonEmpty(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times() {
        for good in [
            "2026-11-24T10:00:00Z",
            "2026-11-24t10:00:00.123456z",
            "2024-02-29T23:59:59+01:00",
            "2016-12-31T23:59:60Z",
            "2017-01-01T00:59:60+01:00",
        ] {
            assert!(is_date_time(good), "{good}");
        }
        for bad in [
            "yesterday",
            "2026-11-24T10:00:00",
            "2026-11-24 10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T10:00:00.Z",
            "2026-11-24T10:00:00+0100",
            "2026-11-24T10:00:60Z",
            "2026-11-24T10:00Z",
            "２０２６-11-24T10:00:00Z",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
    }

    #[test]
    fn uris() {
        for good in [
            "ftp://user:pw@example.com:21/logs/",
            "https://[2001:db8::1]:8443/fw.bin?x=1#y",
            "urn:isbn:0451450523",
            "file:///tmp/diag.zip",
        ] {
            assert!(is_absolute_uri(good), "{good}");
        }
        for bad in [
            "/relative",
            "no scheme",
            "http://a b/",
            "1http://x",
            "http://x/%zz",
        ] {
            assert!(!is_absolute_uri(bad), "{bad}");
        }
    }

    #[test]
    fn tenths() {
        for good in [0.0, 16.0, 32.1, -7.3, 1e15] {
            assert!(is_tenths(good), "{good}");
        }
        for bad in [0.05, 32.15, f64::NAN, f64::INFINITY] {
            assert!(!is_tenths(bad), "{bad}");
        }
    }

    #[test]
    fn ci_string_counts_characters() {
        assert!(CiString::<3>::new("äöü").is_ok());
        assert_eq!(
            CiString::<3>::new("äöüß"),
            Err(ValueError::TooLong { max: 3 })
        );
    }
}
