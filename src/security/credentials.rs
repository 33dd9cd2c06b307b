//! Basic-auth credentials (security profiles 1 and 2): per charge point, a random salt and
//! HMAC-SHA256(salt, AuthorizationKey). The key itself is never stored.
//!
//! Why a fast keyed hash and not a password KDF (bcrypt, argon2): the secret is the
//! AuthorizationKey, 16 to 40 random bytes chosen by a machine, not a human password, so there is
//! nothing for a slow hash to protect against brute force (2^128 guesses stay out of reach at any
//! speed), while a KDF tuned to ~50 ms would make a reconnect storm of 100,000 charge points cost
//! over an hour of CPU. HMAC-SHA256 costs about a microsecond; the salt keeps equal keys from
//! showing as equal hashes; `ring::hmac::verify` compares in constant time.
//!
//! The file (`security.credentials`) has one line per charge point, later lines replacing
//! earlier ones: `identity<TAB>salt-hex<TAB>hmac-hex`, optionally followed by
//! `<TAB>min_profile=N` (the lowest security profile the charge point is served on, whatever
//! `security.min_profile` says and whatever it authenticated at before); `#` comments and blank
//! lines ignored.
//! Setting a key through the operator API appends a line and syncs it before answering, so an
//! acknowledged change survives a crash; loading (at start and on SIGHUP) compacts a file whose
//! replaced lines outnumber the live ones.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::security::Profile;
use crate::types::IdentityRule;

/// Bytes of salt per charge point.
const SALT_LEN: usize = 16;
/// Bytes of an HMAC-SHA256 tag.
const HASH_LEN: usize = 32;
/// A file is compacted on load when it holds more than this many lines and more than twice as
/// many as live entries.
const COMPACT_MIN_LINES: usize = 1024;
/// Keys accepted through the API, in bytes (the whitepaper: 16 to 20 bytes, or 40 hex digits
/// written as text; a little room either way).
pub const MIN_KEY_LEN: usize = 8;
pub const MAX_KEY_LEN: usize = 64;

/// Why credentials cannot be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file cannot be read or written: the message names it.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line is not `identity<TAB>salt-hex<TAB>hmac-hex`: fix or delete it.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
    /// The key given through the API is out of bounds.
    #[error("the key must be {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes")]
    KeyLength,
    /// The system's random source failed.
    #[error("no randomness for a salt")]
    Random,
}

/// One charge point's salted hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credential {
    salt: [u8; SALT_LEN],
    hash: [u8; HASH_LEN],
    /// `min_profile=N`: the identity's own lowest profile.
    pub min_profile: Option<Profile>,
}

impl Credential {
    /// A credential for `key` with a fresh salt.
    pub fn new(key: &[u8]) -> Result<Credential, CredentialsError> {
        let mut salt = [0u8; SALT_LEN];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| CredentialsError::Random)?;
        Ok(Credential::with_salt(salt, key))
    }

    fn with_salt(salt: [u8; SALT_LEN], key: &[u8]) -> Credential {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &salt), key);
        let mut hash = [0u8; HASH_LEN];
        hash.copy_from_slice(tag.as_ref());
        Credential {
            salt,
            hash,
            min_profile: None,
        }
    }

    /// Whether `password` is the key, in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.salt);
        hmac::verify(&key, password, &self.hash).is_ok()
    }

    /// The file line for `identity` (without the newline).
    pub fn line(&self, identity: &str) -> String {
        let mut line = format!("{identity}\t{}\t{}", hex(&self.salt), hex(&self.hash));
        if let Some(profile) = self.min_profile {
            line.push_str(&format!("\tmin_profile={}", profile.number()));
        }
        line
    }

    /// Reads a file line (`identity<TAB>salt-hex<TAB>hmac-hex[<TAB>min_profile=N]`).
    pub fn parse(line: &str) -> Result<(&str, Credential), &'static str> {
        let mut fields = line.split('\t');
        let (Some(id), Some(salt), Some(hash), extra, None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err("expected identity, salt and hash separated by tabs");
        };
        let min_profile = match extra {
            None => None,
            Some(field) => Some(
                field
                    .strip_prefix("min_profile=")
                    .and_then(|n| n.parse::<u8>().ok())
                    .and_then(Profile::from_number)
                    .ok_or("the fourth field is not min_profile=0..3")?,
            ),
        };
        if id.is_empty() || id.trim() != id {
            return Err("empty identity, or spaces around it");
        }
        let salt = unhex::<SALT_LEN>(salt).ok_or("the salt is not 32 hex digits")?;
        let hash = unhex::<HASH_LEN>(hash).ok_or("the hash is not 64 hex digits")?;
        Ok((
            id,
            Credential {
                salt,
                hash,
                min_profile,
            },
        ))
    }
}

/// Whether `password` opens `credential`. The whitepaper keeps the AuthorizationKey as hex text
/// in the configuration key and sends its bytes as the password; some charge points send the
/// hex text itself. Both are the same secret, so both are accepted.
pub fn password_matches(credential: &Credential, password: &[u8]) -> bool {
    if credential.verify(password) {
        return true;
    }
    match decode_hex(password) {
        Some(bytes) => credential.verify(&bytes),
        None => false,
    }
}

/// A fixed credential to check against when the identity has none, so that a refusal costs the
/// same time whether or not the identity exists.
fn decoy() -> &'static Credential {
    static DECOY: std::sync::OnceLock<Credential> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| Credential::with_salt([0x5A; SALT_LEN], b"no such charge point"))
}

/// The credentials of every charge point, shared by the loops (which check them at upgrade)
/// and the operator API (which sets them).
#[derive(Debug)]
pub struct Credentials {
    path: PathBuf,
    /// Which identities the file (and other nodes) may name (`ocpp.identity_charset`).
    rule: IdentityRule,
    entries: RwLock<HashMap<Box<str>, Credential>>,
    /// Serialises appends and reloads.
    file: Mutex<()>,
}

impl Credentials {
    /// Loads `path` (which must exist; an empty file is fine), its identities checked against
    /// the default rule ([`IdentityRule::IdentifierString`]).
    pub fn load(path: &Path) -> Result<Credentials, CredentialsError> {
        Credentials::load_with(path, IdentityRule::default())
    }

    /// Loads `path`; a line naming an identity `rule` does not allow stops the load.
    pub fn load_with(path: &Path, rule: IdentityRule) -> Result<Credentials, CredentialsError> {
        let credentials = Credentials {
            path: path.to_owned(),
            rule,
            entries: RwLock::new(HashMap::new()),
            file: Mutex::new(()),
        };
        credentials.reload()?;
        Ok(credentials)
    }

    /// Reads the file again, replacing what is held (on a bad file, what is held stays);
    /// returns the number of charge points with credentials.
    pub fn reload(&self) -> Result<usize, CredentialsError> {
        let _guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let (entries, lines) = read_file(&self.path, self.rule)?;
        let count = entries.len();
        if lines > COMPACT_MIN_LINES && lines > 2 * count {
            // Best effort: a failure leaves the longer file, which still reads the same.
            if let Err(e) = write_compacted(&self.path, &entries) {
                log::warn!("credentials: cannot compact {}: {e}", self.path.display());
            } else {
                log::info!(
                    "credentials: compacted {} from {lines} to {count} lines",
                    self.path.display()
                );
            }
        }
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = entries;
        Ok(count)
    }

    /// Whether `password` is `identity`'s key. An identity without credentials fails, after
    /// the same work as one with.
    pub fn verify(&self, identity: &str, password: &[u8]) -> bool {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        match entries.get(identity) {
            Some(credential) => password_matches(credential, password),
            None => {
                let _ = password_matches(decoy(), password);
                false
            }
        }
    }

    /// Whether `identity` has a credential, and the lowest profile its line pins, if any.
    pub fn profile_rule(&self, identity: &str) -> (bool, Option<Profile>) {
        match self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(identity)
        {
            Some(credential) => (true, credential.min_profile),
            None => (false, None),
        }
    }

    pub fn contains(&self, identity: &str) -> bool {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(identity)
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes `key` `identity`'s key: appended to the file and synced, then in effect. Returns
    /// the stored line, which in cluster mode the caller hands to the other nodes
    /// (`{prefix}credentials`, where [`Credentials::adopt`] takes it).
    pub fn set(&self, identity: &str, key: &[u8]) -> Result<String, CredentialsError> {
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
            return Err(CredentialsError::KeyLength);
        }
        let mut credential = Credential::new(key)?;
        // A new key keeps the identity's pinned profile.
        credential.min_profile = self.profile_rule(identity).1;
        self.store(identity, credential)?;
        Ok(credential.line(identity))
    }

    /// A credential another node set (a line of `{prefix}credentials`): stored like one set
    /// here, unless it is already the one held. Whether it changed anything.
    pub fn adopt(&self, line: &str) -> Result<bool, CredentialsError> {
        let malformed = |reason| CredentialsError::Malformed {
            path: PathBuf::from("{prefix}credentials"),
            line: 0,
            reason,
        };
        let (identity, credential) = Credential::parse(line).map_err(malformed)?;
        // From Redis, so from anyone who can write there: it goes into our file, where a
        // newline or control character would break every line after it.
        if !self.rule.allows(identity) {
            return Err(malformed("not an identity ocpp.identity_charset allows"));
        }
        let held = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(identity)
            .copied();
        if held == Some(credential) {
            return Ok(false);
        }
        self.store(identity, credential)?;
        Ok(true)
    }

    /// Appends `identity`'s credential to the file, syncs it, then puts it in effect.
    fn store(&self, identity: &str, credential: Credential) -> Result<(), CredentialsError> {
        let _guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let io = |source| CredentialsError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let mut line = credential.line(identity);
        line.push('\n');
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(identity.into(), credential);
        Ok(())
    }
}

/// Reads a credentials file: the entries, and how many lines held one.
fn read_file(
    path: &Path,
    rule: IdentityRule,
) -> Result<(HashMap<Box<str>, Credential>, usize), CredentialsError> {
    let io = |source| CredentialsError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut entries = HashMap::new();
    let mut lines = 0;
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, credential) =
            Credential::parse(line).map_err(|reason| CredentialsError::Malformed {
                path: path.to_owned(),
                line: number + 1,
                reason,
            })?;
        if !rule.allows(id) {
            return Err(CredentialsError::Malformed {
                path: path.to_owned(),
                line: number + 1,
                reason: "an identity ocpp.identity_charset does not allow (see the README)",
            });
        }
        lines += 1;
        entries.insert(Box::from(id), credential);
    }
    Ok((entries, lines))
}

/// Replaces `path` with one line per entry (written beside it, synced, renamed over it).
fn write_compacted(path: &Path, entries: &HashMap<Box<str>, Credential>) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".compacting");
    let tmp = PathBuf::from(tmp);
    let mut out = std::io::BufWriter::new(File::create(&tmp)?);
    writeln!(
        out,
        "# identity<TAB>salt<TAB>HMAC-SHA256(salt, key); later lines win"
    )?;
    for (id, credential) in entries {
        writeln!(out, "{}", credential.line(id))?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Decodes hex text of any even length (either case).
pub fn decode_hex(text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| {
            let high = (pair[0] as char).to_digit(16)?;
            let low = (pair[1] as char).to_digit(16)?;
            Some((high * 16 + low) as u8)
        })
        .collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = decode_hex(text.as_bytes())?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_verifies_its_key_and_nothing_else() {
        let key = [7u8; 20];
        let credential = Credential::new(&key).unwrap();
        assert!(credential.verify(&key));
        assert!(!credential.verify(&[7u8; 19]));
        assert!(!credential.verify(b""));
        let again = Credential::new(&key).unwrap();
        assert_ne!(credential.hash, again.hash, "salted: equal keys differ");
        // The hex text of the key is the same secret.
        assert!(password_matches(&credential, hex(&key).as_bytes()));
        assert!(password_matches(
            &credential,
            hex(&key).to_uppercase().as_bytes()
        ));
        assert!(!password_matches(&credential, b"0707"));
    }

    #[test]
    fn lines_round_trip_and_bad_lines_are_named() {
        let credential = Credential::new(b"0123456789abcdef").unwrap();
        let line = credential.line("RDAM-123:x");
        assert_eq!(Credential::parse(&line), Ok(("RDAM-123:x", credential)));
        let pinned = Credential {
            min_profile: Some(Profile::MutualTls),
            ..credential
        };
        let pinned_line = pinned.line("CP2");
        assert!(pinned_line.ends_with("\tmin_profile=3"), "{pinned_line}");
        assert_eq!(Credential::parse(&pinned_line), Ok(("CP2", pinned)));
        for bad in [
            &format!("{line}\tmin_profile=4"),
            &format!("{line}\tmin_profile=1\tmore"),
            "CP1",
            "CP1\tzz\tzz",
            " CP1\t00\t00",
            &format!("CP1\t{}\t00", "00".repeat(16)),
            &format!("{line}\textra"),
        ] {
            assert!(Credential::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_file_loads_sets_reloads_and_compacts() {
        let dir = std::env::temp_dir().join(format!("cred-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials");
        let first = Credential::new(b"first-key-123456").unwrap();
        std::fs::write(&path, format!("# comment\n\n{}\n", first.line("CP1"))).unwrap();
        let store = Credentials::load(&path).unwrap();
        assert!(store.verify("CP1", b"first-key-123456"));
        assert!(!store.verify("CP1", b"wrong-key-123456"));
        assert!(!store.verify("CP2", b"first-key-123456"));
        store.set("CP1", b"second-key-12345").unwrap();
        assert!(store.verify("CP1", b"second-key-12345"));
        assert!(matches!(
            store.set("CP1", b"short"),
            Err(CredentialsError::KeyLength)
        ));
        // Another process (or the operator) reads the same file: the newest line wins.
        let reread = Credentials::load(&path).unwrap();
        assert!(reread.verify("CP1", b"second-key-12345"));
        assert!(!reread.verify("CP1", b"first-key-123456"));

        for _ in 0..COMPACT_MIN_LINES {
            store.set("CP2", b"churning-key-123").unwrap();
        }
        assert_eq!(store.reload().unwrap(), 2);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 3, "compacted to a header and 2 lines, not {lines}");
        assert!(store.verify("CP2", b"churning-key-123"));

        std::fs::write(&path, "CP1\tnot-hex\t00\n").unwrap();
        let err = store.reload().unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
        assert!(
            store.verify("CP2", b"churning-key-123"),
            "a bad file keeps the old set"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
