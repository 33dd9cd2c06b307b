//! TLS session resumption without server state: stateless tickets (RFC 5077 for TLS 1.2, PSK
//! tickets for TLS 1.3). rustls puts what a resumed session needs (the secret, the suite, the
//! client's verified certificate chain) into a ticket; [`Ticketer`] seals it with AES-256-GCM
//! under a key only the gateway knows and opens it when the client brings it back. Nothing is
//! kept per connection or per ticket, so a million idle connections cost nothing here.
//!
//! Keys ([`TicketKeys`]): either `security.tls_ticket_keys`, a file every node of a fleet shares
//! (so a charge point that fails over resumes on another node), one key of 32 random bytes in hex
//! per line, the first sealing, all opening; re-read on SIGHUP (a file that does not load
//! leaves the old keys). Or, without the file, a key made at start and replaced every
//! `security.tls_ticket_lifetime`, the previous one kept for one more lifetime so tickets
//! already given stay good until they expire. To rotate the file: put a new key first, SIGHUP
//! every node, and drop the last key once a lifetime has passed.
//!
//! One listener's tickets never open on a listener of another profile: the sealing key is
//! derived per profile (HKDF-SHA256 of the file's key with the profile in its label), so a
//! profile-2 session without a client certificate cannot resume on a profile-3 port; it gets a
//! full handshake there, which asks for the certificate. A resumed profile-3 session carries the
//! certificate chain verified when the ticket was issued, and the identity check (CN = the
//! identity in the URL) runs on it as after a full handshake.
//!
//! A ticket: key id (4 bytes) || issued at (8, seconds since the epoch) || nonce (12, random) ||
//! ciphertext || tag (16); the first two are authenticated with it. A ticket older than
//! `security.tls_ticket_lifetime` is not opened (a full handshake follows), whatever its key:
//! rustls keeps no age of its own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

use super::certificates::CertError;

const KEY_ID_LEN: usize = 4;
/// Key id and the time of issue (seconds since the epoch), authenticated with the ticket.
const HEADER_LEN: usize = KEY_ID_LEN + 8;
const TAG_LEN: usize = 16;
/// How far ahead of ours another node's clock may be when it issues a ticket.
const CLOCK_SKEW_SECS: u64 = 300;
/// Keys the file may hold (a current one and those still opening older tickets).
const MAX_KEYS: usize = 16;
const CONFIG_KEY: &str = "security.tls_ticket_keys";

/// Whose tickets: a listener profile's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketScope {
    /// Profile 2: server certificate only.
    ServerAuth,
    /// Profile 3: client certificates.
    Mutual,
}

impl TicketScope {
    fn label(self) -> &'static [u8] {
        match self {
            TicketScope::ServerAuth => b"ocpp-gateway ticket key, security profile 2",
            TicketScope::Mutual => b"ocpp-gateway ticket key, security profile 3",
        }
    }

    fn index(self) -> usize {
        match self {
            TicketScope::ServerAuth => 0,
            TicketScope::Mutual => 1,
        }
    }
}

/// One key of the ring, derived for each scope.
struct Derived {
    id: [u8; KEY_ID_LEN],
    sealing: [LessSafeKey; 2],
}

struct Ring {
    /// The first seals.
    keys: Vec<Derived>,
    /// Memory mode: when the first key was made.
    made_at: Instant,
    /// The keys come from Redis (cluster mode): rotated there, not here.
    shared: bool,
}

/// The ticket keys every TLS configuration of this gateway shares, across reloads.
pub struct TicketKeys {
    file: Option<PathBuf>,
    lifetime: Duration,
    ring: RwLock<Ring>,
    random: SystemRandom,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys")
            .field("file", &self.file)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl TicketKeys {
    /// Keys from `file`, or made in memory when None.
    pub fn load(file: Option<PathBuf>, lifetime: Duration) -> Result<Arc<TicketKeys>, CertError> {
        let random = SystemRandom::new();
        let keys = match &file {
            Some(path) => read_keys(path)?,
            None => vec![fresh_secret(&random)?],
        };
        Ok(Arc::new(TicketKeys {
            file,
            lifetime,
            ring: RwLock::new(Ring {
                keys: keys.iter().map(derive).collect(),
                made_at: Instant::now(),
                shared: false,
            }),
            random,
        }))
    }

    /// Reads the file again (SIGHUP); without a file nothing changes. On failure the old keys
    /// stay and the error is returned for the log.
    pub fn reload(&self) -> Result<usize, CertError> {
        let Some(path) = &self.file else {
            return Ok(0);
        };
        let keys = read_keys(path)?;
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        ring.keys = keys.iter().map(derive).collect();
        Ok(keys.len())
    }

    /// How long a ticket is good.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The keys are made here (no key file): in cluster mode they are the fleet's, through
    /// Redis.
    pub fn shared_through_redis(&self) -> bool {
        self.file.is_none()
    }

    /// A fresh key, in hex, to offer the fleet (cluster mode without a key file): None with a
    /// key file (the file is the fleet's), or when no random bytes came.
    pub fn candidate(&self) -> Option<String> {
        if self.file.is_some() {
            return None;
        }
        let secret = fresh_secret(&self.random).ok()?;
        Some(secret.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Installs the fleet's keys as Redis keeps them (`{made at}:{hex}`, newest first: it
    /// seals, all open); from then on they are rotated in Redis, not here. The key this node
    /// sealed with before still opens its tickets (unless it is one of the fleet's).
    /// Ok(true) when the keys changed.
    pub fn install_shared(&self, entries: &[String]) -> Result<bool, String> {
        let text: String = entries
            .iter()
            .map(|e| e.split_once(':').map_or(e.as_str(), |(_, hex)| hex))
            .collect::<Vec<_>>()
            .join("\n");
        let keys = parse_keys(&text)?;
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        let fresh: Vec<Derived> = keys.iter().map(derive).collect();
        let same = ring.shared
            && ring.keys.len() >= fresh.len()
            && fresh.iter().zip(&ring.keys).all(|(a, b)| a.id == b.id);
        if same {
            return Ok(false);
        }
        let mut next = fresh;
        // Our own sealing key until now keeps opening what it sealed.
        if let Some(own) = ring.keys.first()
            && next.iter().all(|k| k.id != own.id)
        {
            let own = ring.keys.remove(0);
            next.push(own);
        }
        next.truncate(MAX_KEYS);
        ring.keys = next;
        ring.shared = true;
        Ok(true)
    }

    /// The ticketer of one listener profile.
    pub fn ticketer(self: &Arc<Self>, scope: TicketScope) -> Arc<dyn ProducesTickets> {
        Arc::new(Ticketer {
            keys: Arc::clone(self),
            scope,
        })
    }

    /// Memory mode: a new sealing key once the first is a lifetime old (the previous one
    /// still opens for one more lifetime, older ones are erased).
    fn rotate_if_due(&self) {
        if self.file.is_some() {
            return;
        }
        let due = {
            let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
            !ring.shared && ring.made_at.elapsed() >= self.lifetime
        };
        if !due {
            return;
        }
        let Ok(secret) = fresh_secret(&self.random) else {
            return; // the old key seals on; tried again with the next ticket
        };
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        if ring.made_at.elapsed() < self.lifetime {
            return; // another thread rotated meanwhile
        }
        ring.keys.insert(0, derive(&secret));
        ring.keys.truncate(2);
        ring.made_at = Instant::now();
    }
}

/// Seals and opens the tickets of one listener profile.
#[derive(Debug)]
struct Ticketer {
    keys: Arc<TicketKeys>,
    scope: TicketScope,
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.keys.lifetime.as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(plain, unix_now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(cipher, unix_now())
    }
}

impl Ticketer {
    /// A ticket for `plain`, issued at `now` (seconds since the epoch).
    fn seal(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        self.keys.rotate_if_due();
        let mut nonce = [0u8; NONCE_LEN];
        self.keys.random.fill(&mut nonce).ok()?;
        let ring = self.keys.ring.read().unwrap_or_else(|e| e.into_inner());
        let key = ring.keys.first()?;
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&now.to_be_bytes());
        let header_end = out.len();
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let mut sealed = out.split_off(start);
        key.sealing[self.scope.index()]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&out[..header_end]),
                &mut sealed,
            )
            .ok()?;
        out.append(&mut sealed);
        Some(out)
    }

    /// What a ticket holds, if it is intact, sealed by a key we still have, in our scope, and
    /// issued within the lifetime before `now` (rustls keeps no age of its own: a key file that
    /// is never rotated would otherwise let a ticket resume for ever).
    fn open(&self, cipher: &[u8], now: u64) -> Option<Vec<u8>> {
        if cipher.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (header, rest) = cipher.split_at(HEADER_LEN);
        let (id, issued) = header.split_at(KEY_ID_LEN);
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        // Another node's clock may be a little ahead.
        let lifetime = self.keys.lifetime.as_secs();
        if issued > now.saturating_add(CLOCK_SKEW_SECS) || now.saturating_sub(issued) > lifetime {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let ring = self.keys.ring.read().unwrap_or_else(|e| e.into_inner());
        let key = ring.keys.iter().find(|k| k.id == id)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain_len = key.sealing[self.scope.index()]
            .open_in_place(nonce, Aad::from(header), &mut buf)
            .ok()?
            .len();
        buf.truncate(plain_len);
        Some(buf)
    }
}

fn unix_now() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    #[cfg(feature = "test-hooks")]
    let now = now + testing::SKEW_SECS.load(std::sync::atomic::Ordering::Relaxed);
    now
}

/// A test hook: the ticketers' clock moved ahead, so a socket test sees a ticket expire without
/// waiting a lifetime.
#[cfg(feature = "test-hooks")]
pub mod testing {
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(super) static SKEW_SECS: AtomicU64 = AtomicU64::new(0);

    /// Every ticket sealed or opened from now on is as `secs` later (for the whole process).
    pub fn skew_clock(secs: u64) {
        SKEW_SECS.store(secs, Ordering::Relaxed);
    }
}

fn fresh_secret(random: &SystemRandom) -> Result<[u8; 32], CertError> {
    let mut secret = [0u8; 32];
    random.fill(&mut secret).map_err(|_| CertError::Invalid {
        key: CONFIG_KEY,
        path: PathBuf::new(),
        reason: "no random bytes for a ticket key".into(),
    })?;
    Ok(secret)
}

/// The key id and each scope's sealing key of one secret.
fn derive(secret: &[u8; 32]) -> Derived {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(secret);
    let expand = |info: &[u8], out: &mut [u8]| {
        let infos = [info];
        // A fixed, valid length: expanding cannot fail.
        if let Ok(okm) = prk.expand(&infos, Len(out.len())) {
            let _ = okm.fill(out);
        }
    };
    let mut id = [0u8; KEY_ID_LEN];
    expand(b"ocpp-gateway ticket key id", &mut id);
    let sealing = [TicketScope::ServerAuth, TicketScope::Mutual].map(|scope| {
        let mut bytes = [0u8; 32];
        expand(scope.label(), &mut bytes);
        // 32 bytes is AES-256's key length: this cannot fail.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).unwrap_or_else(|_| unreachable!()))
    });
    Derived { id, sealing }
}

/// An output length for HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The key file: one 32-byte key in hex per line (`#` comments and blank lines ignored), the
/// first sealing; at least one, at most [`MAX_KEYS`].
fn read_keys(path: &Path) -> Result<Vec<[u8; 32]>, CertError> {
    let text = std::fs::read_to_string(path).map_err(|source| CertError::Read {
        key: CONFIG_KEY,
        path: path.to_owned(),
        source,
    })?;
    parse_keys(&text).map_err(|reason| CertError::Invalid {
        key: CONFIG_KEY,
        path: path.to_owned(),
        reason,
    })
}

fn parse_keys(text: &str) -> Result<Vec<[u8; 32]>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bytes = line.as_bytes();
        if bytes.len() != 64 {
            return Err(format!(
                "line {}: a key is 64 hex digits (32 random bytes), not {} characters",
                n + 1,
                bytes.len()
            ));
        }
        let mut key = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => key[i] = (hi * 16 + lo) as u8,
                _ => return Err(format!("line {}: not hexadecimal", n + 1)),
            }
        }
        if keys.contains(&key) {
            return Err(format!("line {}: the same key twice", n + 1));
        }
        keys.push(key);
    }
    match keys.len() {
        0 => Err("no key (one line of 64 hex digits, e.g. from `openssl rand -hex 32`)".into()),
        n if n > MAX_KEYS => Err(format!("{n} keys; at most {MAX_KEYS}")),
        _ => Ok(keys),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    fn keys(text: &str) -> Arc<TicketKeys> {
        // One file per call: the tests run in parallel.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ocpp-tickets-{}-{n}", std::process::id()));
        std::fs::write(&dir, text).unwrap();
        let keys = TicketKeys::load(Some(dir.clone()), Duration::from_secs(3600)).unwrap();
        let _ = std::fs::remove_file(&dir);
        keys
    }

    #[test]
    fn the_fleets_keys_from_redis_replace_the_own_which_still_opens_until_a_rotation() {
        let memory = TicketKeys::load(None, Duration::from_secs(3600)).unwrap();
        assert!(memory.shared_through_redis() && memory.candidate().is_some());
        assert!(keys(A).candidate().is_none(), "a key file is the fleet's");
        let two = memory.ticketer(TicketScope::ServerAuth);
        let own = two.encrypt(b"before").unwrap();
        let fleet = |list: &[&str]| -> Vec<String> {
            list.iter()
                .enumerate()
                .map(|(i, k)| format!("{}:{k}", 1000 - i))
                .collect()
        };
        assert_eq!(memory.install_shared(&fleet(&[A])), Ok(true));
        assert_eq!(memory.install_shared(&fleet(&[A])), Ok(false), "unchanged");
        let shared = two.encrypt(b"after").unwrap();
        assert_eq!(two.decrypt(&own).as_deref(), Some(&b"before"[..]));
        // Another node with the fleet's key opens what this one sealed with it.
        let peer = keys(A).ticketer(TicketScope::ServerAuth);
        assert_eq!(peer.decrypt(&shared).as_deref(), Some(&b"after"[..]));
        assert_eq!(peer.decrypt(&own), None);
        // Rotated in Redis: the new key seals, the previous opens, the own one is gone.
        assert_eq!(memory.install_shared(&fleet(&[B, A])), Ok(true));
        assert_eq!(two.decrypt(&shared).as_deref(), Some(&b"after"[..]));
        assert_eq!(two.decrypt(&own), None);
        let rotated = two.encrypt(b"rotated").unwrap();
        assert_eq!(
            keys(B)
                .ticketer(TicketScope::ServerAuth)
                .decrypt(&rotated)
                .as_deref(),
            Some(&b"rotated"[..])
        );
        assert!(memory.install_shared(&["1:not hex".to_owned()]).is_err());
    }

    #[test]
    fn a_ticket_opens_only_in_its_scope_and_only_intact() {
        let keys = keys(A);
        let two = keys.ticketer(TicketScope::ServerAuth);
        let three = keys.ticketer(TicketScope::Mutual);
        let ticket = two.encrypt(b"session state").unwrap();
        assert_eq!(two.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        assert_eq!(
            three.decrypt(&ticket),
            None,
            "profile 2 ticket on profile 3"
        );
        for i in 0..ticket.len() {
            let mut bent = ticket.clone();
            bent[i] ^= 1;
            assert_eq!(two.decrypt(&bent), None, "byte {i} changed");
        }
        assert_eq!(two.decrypt(&ticket[..20]), None);
        assert_eq!(two.decrypt(&[]), None);
        // Two tickets of one state differ (random nonces).
        assert_ne!(two.encrypt(b"x"), two.encrypt(b"x"));
        assert_eq!(two.lifetime(), 3600);
    }

    #[test]
    fn nodes_sharing_the_file_open_each_others_tickets_and_rotation_keeps_old_ones() {
        let node_a = keys(A).ticketer(TicketScope::Mutual);
        let node_b = keys(&format!("# shared\n{A}\n")).ticketer(TicketScope::Mutual);
        let ticket = node_a.encrypt(b"state").unwrap();
        assert_eq!(node_b.decrypt(&ticket).as_deref(), Some(&b"state"[..]));
        // A new key first: old tickets still open, new ones are sealed with the new key.
        let rotated = keys(&format!("{B}\n{A}\n")).ticketer(TicketScope::Mutual);
        assert!(rotated.decrypt(&ticket).is_some());
        let fresh = rotated.encrypt(b"new").unwrap();
        assert_eq!(node_a.decrypt(&fresh), None, "A does not know B's key");
        // The old key dropped: its tickets are gone.
        let dropped = keys(B).ticketer(TicketScope::Mutual);
        assert_eq!(dropped.decrypt(&ticket), None);
    }

    #[test]
    fn memory_keys_rotate_after_a_lifetime_keeping_the_previous_one() {
        let keys = TicketKeys::load(None, Duration::ZERO).unwrap();
        let t = keys.ticketer(TicketScope::ServerAuth);
        let first = t.encrypt(b"1").unwrap();
        let second = t.encrypt(b"2").unwrap(); // a new key (lifetime zero)
        assert_ne!(first[..KEY_ID_LEN], second[..KEY_ID_LEN]);
        assert!(t.decrypt(&first).is_some(), "previous key kept");
        let _third = t.encrypt(b"3").unwrap();
        assert_eq!(t.decrypt(&first), None, "two rotations ago: erased");
    }

    #[test]
    fn an_expired_or_future_ticket_does_not_open() {
        let keys = keys(A); // lifetime 3600 s
        let t = Ticketer {
            keys,
            scope: TicketScope::ServerAuth,
        };
        let now = 2_000_000_000;
        let ticket = t.seal(b"state", now).unwrap();
        assert!(t.open(&ticket, now).is_some());
        assert!(t.open(&ticket, now + 3600).is_some(), "at its lifetime");
        assert_eq!(t.open(&ticket, now + 3601), None, "past its lifetime");
        assert!(
            t.open(&ticket, now - 300).is_some(),
            "a clock a little behind"
        );
        assert_eq!(t.open(&ticket, now - 301), None, "issued in the future");
        // The time of issue is authenticated: moved back into the lifetime, it does not open.
        let later = now + 7200;
        let mut moved = ticket.clone();
        moved[KEY_ID_LEN..HEADER_LEN].copy_from_slice(&later.to_be_bytes());
        assert_eq!(t.open(&moved, later), None);
    }

    #[test]
    fn key_files_are_checked() {
        assert!(parse_keys("").is_err());
        assert!(parse_keys("# only a comment\n").is_err());
        assert!(parse_keys("abcd").unwrap_err().contains("64 hex digits"));
        assert!(
            parse_keys(&A.replace('0', "g"))
                .unwrap_err()
                .contains("hexadecimal")
        );
        assert!(
            parse_keys(&format!("{A}\n{A}"))
                .unwrap_err()
                .contains("twice")
        );
        assert_eq!(parse_keys(&format!("{A}\n\n{B}\n")).unwrap().len(), 2);
    }
}
