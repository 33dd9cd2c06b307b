//! TLS record protection after the handshake, without rustls's connection state.
//!
//! Why: once a server connection's handshake is done, rustls still holds about 2.3 KB for it
//! (its connection struct, handshake deframer, queues and key schedule, measured with a counting
//! allocator), while all an established connection needs is the two traffic keys, their IVs and
//! sequence numbers. So the transport hands rustls's connection to
//! `dangerous_into_kernel_connection` (the API rustls offers for kernel TLS, which does exactly
//! this split) and protects records here with ring's AEAD, the same primitive rustls uses. For
//! TLS 1.3 the small [`KernelConnection`] stays, to derive the next keys when the peer sends a
//! KeyUpdate.
//!
//! Record formats (RFC 8446 5.2, RFC 5288 3):
//! - TLS 1.3: header `23 03 03 len`; AEAD over `plaintext || content type || zero padding`,
//!   nonce = IV xor sequence number, additional data = the header.
//! - TLS 1.2 AES-GCM: header `type 03 03 len`, then an 8-byte explicit nonce and the ciphertext;
//!   nonce = 4-byte salt || explicit part (ours: IV xor sequence number, as rustls does),
//!   additional data = sequence number || type || version || plaintext length.
//!
//! Anything a client may legitimately send after the handshake is handled: application data,
//! alerts (close_notify ends the stream; anything else fails it), and in TLS 1.3 a KeyUpdate
//! (answered with our own when the peer asks). Everything else (renegotiation, stray
//! handshake messages, oversized or undecryptable records) fails the connection.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::{ConnectionTrafficSecrets, ProtocolVersion};

use super::{MAX_PLAINTEXT, Opened, TlsError};

/// Content types.
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
/// The handshake message type of KeyUpdate.
const KEY_UPDATE: u8 = 24;
const TAG_LEN: usize = 16;
/// TLS 1.2's explicit nonce, in front of each AES-GCM record.
const EXPLICIT_NONCE_LEN: usize = 8;
/// Records sealed with one TLS 1.3 key before it is replaced (AES-GCM's confidentiality
/// limit is 2^24.5 records; rustls uses the same margin).
const TLS13_REKEY_AFTER: u64 = 1 << 24;
/// KeyUpdates a peer may send in a row without application data between them (rustls's limit
/// too): each makes us derive a key, and one that asks makes us answer, so they are bounded.
const KEY_UPDATES_IN_A_ROW: u8 = 32;
/// TLS 1.2 has no rekeying: past this the connection ends (the charge point reconnects).
const TLS12_MAX_RECORDS: u64 = 1 << 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Tls12,
    Tls13,
}

/// One direction's key.
struct Keys {
    key: LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl Keys {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Result<Keys, TlsError> {
        let (algorithm, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return Err(TlsError::Unexpected("unknown cipher")),
        };
        let key = UnboundKey::new(algorithm, key.as_ref())
            .map_err(|_| TlsError::Unexpected("bad traffic key"))?;
        let mut fixed = [0u8; aead::NONCE_LEN];
        fixed.copy_from_slice(iv.as_ref());
        Ok(Keys {
            key: LessSafeKey::new(key),
            iv: fixed,
            seq,
        })
    }

    /// IV xor the sequence number (the TLS 1.3 nonce; ours for TLS 1.2 too).
    fn nonce(&self) -> [u8; aead::NONCE_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }
}

/// The record protection of an established server connection.
pub struct Records {
    version: Version,
    tx: Keys,
    rx: Keys,
    /// TLS 1.3: what derives the next keys on a KeyUpdate.
    kernel: Option<Box<KernelConnection<ServerConnectionData>>>,
    /// The peer sent close_notify: whatever follows is ignored, never opened (RFC 8446 6.1).
    closed: bool,
    /// The peer's KeyUpdates since its last application data.
    key_updates: u8,
    /// Test hook: records one key seals, instead of the limits above (0: those limits).
    #[cfg(feature = "test-hooks")]
    records_per_key: u64,
}

impl Records {
    /// Takes the keys out of a server connection whose handshake is done (rustls must have
    /// been configured with `enable_secret_extraction`, and have nothing left to send).
    pub fn from_rustls(conn: UnbufferedServerConnection) -> Result<Records, TlsError> {
        let (secrets, kernel) = conn.dangerous_into_kernel_connection()?;
        let version = match kernel.protocol_version() {
            ProtocolVersion::TLSv1_3 => Version::Tls13,
            ProtocolVersion::TLSv1_2 => Version::Tls12,
            _ => return Err(TlsError::Unexpected("protocol version")),
        };
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        if version == Version::Tls12
            && matches!(tx, ConnectionTrafficSecrets::Chacha20Poly1305 { .. })
        {
            // Not among our TLS 1.2 suites; its nonce is built differently.
            return Err(TlsError::Unexpected("TLS 1.2 ChaCha20"));
        }
        Ok(Records {
            version,
            tx: Keys::new(tx_seq, tx)?,
            rx: Keys::new(rx_seq, rx)?,
            kernel: (version == Version::Tls13).then(|| Box::new(kernel)),
            closed: false,
            key_updates: 0,
            #[cfg(feature = "test-hooks")]
            records_per_key: 0,
        })
    }

    /// Test hook: from now on one key seals at most `records` records (TLS 1.3 then sends a
    /// KeyUpdate and switches keys, TLS 1.2 refuses to seal), so tests reach the limits with a
    /// few hundred records instead of 2^24.
    #[cfg(feature = "test-hooks")]
    pub fn limit_records_per_key(&mut self, records: u64) {
        self.records_per_key = records;
    }

    /// Records one key may seal: TLS 1.3 rekeys after them, TLS 1.2 stops.
    fn records_per_key(&self) -> u64 {
        #[cfg(feature = "test-hooks")]
        if self.records_per_key != 0 {
            return self.records_per_key;
        }
        match self.version {
            Version::Tls13 => TLS13_REKEY_AFTER,
            Version::Tls12 => TLS12_MAX_RECORDS,
        }
    }

    /// Opens the complete records at the start of `cipher` into `plain`; what is sent back (a
    /// KeyUpdate) is appended to `out`. Returns the bytes of `cipher` consumed: all of them
    /// once close_notify came, since nothing after it is opened.
    pub fn open(
        &mut self,
        cipher: &mut [u8],
        plain: &mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Opened), TlsError> {
        let mut pos = 0;
        let mut opened = Opened {
            closed: self.closed,
            ..Opened::default()
        };
        while cipher.len() - pos >= 5 && !opened.closed {
            let header = [
                cipher[pos],
                cipher[pos + 1],
                cipher[pos + 2],
                cipher[pos + 3],
                cipher[pos + 4],
            ];
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            let max = match self.version {
                Version::Tls13 => MAX_PLAINTEXT + 256,
                Version::Tls12 => MAX_PLAINTEXT + 2048,
            };
            if len > max || header[1] != 3 {
                return Err(TlsError::Record("record too long or not TLS"));
            }
            if cipher.len() - pos - 5 < len {
                break; // unfinished: kept for the next read
            }
            if len > plain.len() - opened.plain {
                opened.more = true;
                break;
            }
            let body = &mut cipher[pos + 5..pos + 5 + len];
            pos += 5 + len;
            let (content_type, content) = self.open_record(header, body)?;
            match content_type {
                APPLICATION_DATA => {
                    plain[opened.plain..opened.plain + content.len()].copy_from_slice(content);
                    opened.plain += content.len();
                    if !content.is_empty() {
                        self.key_updates = 0;
                    }
                }
                ALERT => match content {
                    // close_notify (level warning or fatal): the stream ends here.
                    [_, 0] => {
                        self.closed = true;
                        opened.closed = true;
                    }
                    _ => return Err(TlsError::Record("alert from the peer")),
                },
                HANDSHAKE if self.version == Version::Tls13 => {
                    let request = match content {
                        [KEY_UPDATE, 0, 0, 1, request @ (0 | 1)] => *request,
                        _ => return Err(TlsError::Record("handshake message after the handshake")),
                    };
                    self.key_updates += 1;
                    if self.key_updates > KEY_UPDATES_IN_A_ROW {
                        return Err(TlsError::Record("too many KeyUpdates without data"));
                    }
                    self.key_update(request == 1, out)?;
                }
                _ => return Err(TlsError::Record("unexpected record after the handshake")),
            }
        }
        if self.closed {
            // Data after a closure alert is ignored (RFC 8446 6.1), not held for a later read.
            pos = cipher.len();
        }
        Ok((pos, opened))
    }

    /// Decrypts one record in place; returns its content type and content.
    fn open_record<'a>(
        &mut self,
        header: [u8; 5],
        body: &'a mut [u8],
    ) -> Result<(u8, &'a [u8]), TlsError> {
        let failed = || TlsError::Record("record does not decrypt");
        match self.version {
            Version::Tls13 => {
                if header[0] != APPLICATION_DATA {
                    return Err(TlsError::Record("unprotected record after the handshake"));
                }
                let nonce = Nonce::assume_unique_for_key(self.rx.nonce());
                let inner = self
                    .rx
                    .key
                    .open_in_place(nonce, Aad::from(header), body)
                    .map_err(|_| failed())?;
                self.rx.seq += 1;
                // The content type is the last non-zero byte; zeros after it are padding.
                let end = inner
                    .iter()
                    .rposition(|&b| b != 0)
                    .ok_or(TlsError::Record("record without a content type"))?;
                let content_type = inner[end];
                if end > MAX_PLAINTEXT {
                    return Err(TlsError::Record("record content too long"));
                }
                Ok((content_type, &inner[..end]))
            }
            Version::Tls12 => {
                if body.len() < EXPLICIT_NONCE_LEN + TAG_LEN {
                    return Err(failed());
                }
                let mut nonce = self.rx.iv;
                nonce[4..].copy_from_slice(&body[..EXPLICIT_NONCE_LEN]);
                let content_len = body.len() - EXPLICIT_NONCE_LEN - TAG_LEN;
                let aad = tls12_aad(self.rx.seq, header[0], content_len);
                let inner = self
                    .rx
                    .key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut body[EXPLICIT_NONCE_LEN..],
                    )
                    .map_err(|_| failed())?;
                self.rx.seq += 1;
                if inner.len() > MAX_PLAINTEXT {
                    return Err(TlsError::Record("record content too long"));
                }
                Ok((header[0], inner))
            }
        }
    }

    /// The peer's KeyUpdate: its next key from now on; with `requested`, ours too, announced
    /// with a KeyUpdate of our own under the current key.
    fn key_update(&mut self, requested: bool, out: &mut Vec<u8>) -> Result<(), TlsError> {
        let kernel = self
            .kernel
            .as_mut()
            .ok_or(TlsError::Unexpected("KeyUpdate without key schedule"))?;
        let (seq, secrets) = kernel.update_rx_secret()?;
        self.rx = Keys::new(seq, secrets)?;
        if requested {
            self.rekey_tx(out)?;
        }
        Ok(())
    }

    /// Sends KeyUpdate(update_not_requested) and switches to the next sending key.
    fn rekey_tx(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        self.seal_record(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], out)?;
        let kernel = self
            .kernel
            .as_mut()
            .ok_or(TlsError::Unexpected("KeyUpdate without key schedule"))?;
        let (seq, secrets) = kernel.update_tx_secret()?;
        self.tx = Keys::new(seq, secrets)?;
        Ok(())
    }

    /// Seals `plain` into records appended to `out`.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        for chunk in plain.chunks(MAX_PLAINTEXT) {
            self.seal_record(APPLICATION_DATA, chunk, out)?;
        }
        Ok(())
    }

    /// Appends a close_notify alert to `out`.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        self.seal_record(ALERT, &[1, 0], out)
    }

    fn seal_record(
        &mut self,
        content_type: u8,
        content: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        let limit = self.records_per_key();
        match self.version {
            Version::Tls13 if self.tx.seq >= limit && content_type != HANDSHAKE => {
                self.rekey_tx(out)?;
            }
            Version::Tls12 if self.tx.seq >= limit => {
                return Err(TlsError::Encrypt("TLS 1.2 key usage limit reached".into()));
            }
            _ => {}
        }
        let nonce = self.tx.nonce();
        let start = out.len();
        let tag = match self.version {
            Version::Tls13 => {
                let len = content.len() + 1 + TAG_LEN;
                let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
                out.extend_from_slice(&header);
                out.extend_from_slice(content);
                out.push(content_type);
                self.tx.key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(header),
                    &mut out[start + 5..],
                )
            }
            Version::Tls12 => {
                let len = EXPLICIT_NONCE_LEN + content.len() + TAG_LEN;
                out.extend_from_slice(&[content_type, 3, 3, (len >> 8) as u8, len as u8]);
                out.extend_from_slice(&nonce[4..]);
                out.extend_from_slice(content);
                let aad = tls12_aad(self.tx.seq, content_type, content.len());
                self.tx.key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    &mut out[start + 5 + EXPLICIT_NONCE_LEN..],
                )
            }
        };
        let tag = tag.map_err(|_| {
            out.truncate(start);
            TlsError::Encrypt("seal failed".into())
        })?;
        out.extend_from_slice(tag.as_ref());
        self.tx.seq += 1;
        Ok(())
    }
}

/// TLS 1.2's additional data: sequence number, type, version, plaintext length.
fn tls12_aad(seq: u64, content_type: u8, len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = content_type;
    aad[9] = 3;
    aad[10] = 3;
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}
