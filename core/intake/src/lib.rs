//! Sealed intake: one-way submissions from people without an account.
//!
//! A space publishes an intake public key. Anyone holding it (a witness, a
//! source, a member of the public) can seal a note or a file to it; only the
//! members of the space, who can derive the matching secret key, can open it.
//! The sealed form is a standard binary [age] v1 file with X25519 recipient
//! stanzas, so a witness may also use any age implementation (for example
//! `age -r age1...`) instead of the Amicus client.
//!
//! Scope of this module:
//!
//! * X25519 recipients and identities only (`age1...` and
//!   `AGE-SECRET-KEY-1...`). Other stanza types in a file are skipped, as the
//!   format requires; a file carrying no X25519 stanza at all is reported as
//!   [`IntakeError::UnsupportedRecipients`].
//! * Binary files only: the ASCII armor (`age -a`) is not supported and is
//!   reported as [`IntakeError::ArmorNotSupported`].
//! * Sans-IO: every function works on byte slices; nothing here reads files,
//!   talks to the network or spawns processes. Randomness comes from
//!   [`getrandom`].
//!
//! Submissions are hostile input, so parsing is strict (canonical base64,
//! exact stanza grammar, exact version line) and bounded: headers longer
//! than [`MAX_HEADER_LEN`] or with more than [`MAX_STANZAS`] stanzas are
//! refused before any key agreement, and the caller gives the largest
//! plaintext it accepts to [`open`] and [`Opener::new`].
//!
//! [age]: https://c2sp.org/age

pub mod drop;

use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32, Hrp};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use x25519_dalek::{EphemeralSecret, PublicKey, StaticSecret};
use zeroize::{ZeroizeOnDrop, Zeroizing};

/// Largest header accepted, in bytes, from the first byte of the file to the
/// newline that ends the MAC line.
///
/// A header with one X25519 stanza is about 170 bytes; this leaves room for
/// files sealed to many recipients or carrying large foreign stanzas, while
/// keeping the work done on an unauthenticated header small.
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// Largest number of recipient stanzas accepted in a header, and the largest
/// number of recipients [`seal_to_many`] writes.
pub const MAX_STANZAS: usize = 32;

const VERSION_LINE: &[u8] = b"age-encryption.org/v1\n";
const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
const STANZA_PREFIX: &[u8] = b"-> ";
const MAC_PREFIX: &[u8] = b"---";
const X25519_TYPE: &str = "X25519";
const SCRYPT_TYPE: &str = "scrypt";
const X25519_INFO: &[u8] = b"age-encryption.org/v1/X25519";
const HEADER_INFO: &[u8] = b"header";
const PAYLOAD_INFO: &[u8] = b"payload";
const RECIPIENT_HRP: &str = "age";
const IDENTITY_HRP: &str = "AGE-SECRET-KEY-";
const FINGERPRINT_CONTEXT: &str = "amicus intake fingerprint v1";

const KEY_LEN: usize = 32;
const FILE_KEY_LEN: usize = 16;
const TAG_LEN: usize = 16;
const MAC_LEN: usize = 32;
/// Length of a base64 line inside a stanza body.
const BODY_COLUMNS: usize = 64;
/// Length of the unpadded base64 encoding of 32 bytes.
const B64_32_LEN: usize = 43;
const PAYLOAD_NONCE_LEN: usize = 16;
const CHUNK_LEN: usize = 64 * 1024;
const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
const FINGERPRINT_LEN: usize = 16;

/// Everything that can go wrong while parsing keys, sealing or opening.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    /// The text is not an age X25519 recipient (`age1` followed by a lower-case
    /// Bech32 encoding of 32 bytes), or it encodes a weak key that would give
    /// everyone the same shared secret. Ask for the recipient string again; it
    /// was probably cut or mistyped when copied.
    #[error("not a valid age X25519 recipient (expected a lower-case `age1...` string)")]
    InvalidRecipient,

    /// The text is not an age X25519 identity (`AGE-SECRET-KEY-1` followed by
    /// an upper-case Bech32 encoding of 32 bytes). Check that the whole line was
    /// copied, without comments or spaces.
    #[error(
        "not a valid age X25519 identity (expected an upper-case `AGE-SECRET-KEY-1...` string)"
    )]
    InvalidIdentity,

    /// [`seal_to_many`] was given no recipient. Pass at least one public key.
    #[error("no recipient given")]
    NoRecipients,

    /// [`seal_to_many`] was given more recipients than a reader accepts.
    /// Seal to at most `max` keys (the current and previous intake keys are
    /// enough during a rotation).
    #[error("too many recipients (at most {max})")]
    TooManyRecipients {
        /// Largest number of recipients accepted.
        max: usize,
    },

    /// The input is an ASCII-armored age file (`-----BEGIN AGE ENCRYPTED
    /// FILE-----`), which this module does not read. Ask the sender to encrypt
    /// without `-a`/`--armor`, or remove the armor before opening.
    #[error("ASCII-armored age files are not supported; send the binary form (without -a)")]
    ArmorNotSupported,

    /// The input does not start with the age v1 version line: it is not an
    /// age file, or it uses a future version of the format. Nothing can be
    /// done with it here; ask the sender what tool produced it.
    #[error("not an age v1 file")]
    NotAgeFile,

    /// The header is longer than [`MAX_HEADER_LEN`] bytes or has more than
    /// [`MAX_STANZAS`] stanzas. The file was not sealed by Amicus to a sensible
    /// number of recipients; refuse it and ask for a re-send to the intake key
    /// only.
    #[error("age header too large (at most {max_len} bytes and {max_stanzas} stanzas)")]
    HeaderTooLarge {
        /// Largest header accepted, in bytes.
        max_len: usize,
        /// Largest number of stanzas accepted.
        max_stanzas: usize,
    },

    /// The header breaks the age grammar (the reason says where). The file was
    /// damaged or forged; refuse it and ask for a re-send.
    #[error("malformed age header: {0}")]
    MalformedHeader(&'static str),

    /// The header has no X25519 stanza: the file was encrypted with a
    /// passphrase, an SSH key, a plugin or a post-quantum key. Ask the sender
    /// to encrypt to the space's `age1...` intake recipient.
    #[error("the file is not sealed to any X25519 recipient")]
    UnsupportedRecipients,

    /// None of the given identities can unwrap any X25519 stanza: the file was
    /// sealed to another key, or to an intake key that has been rotated out.
    /// Try again with older intake keys, or ask for a re-send to the current
    /// intake key.
    #[error("no identity matches any recipient of the file")]
    NoMatchingIdentity,

    /// A file key was unwrapped but the header MAC does not match: the header
    /// was altered after sealing. Refuse the file and ask for a re-send.
    #[error("age header MAC mismatch")]
    HeaderMacMismatch,

    /// The input ends early (inside the header, before the payload nonce, or
    /// before the final payload chunk), usually an interrupted upload. Ask for
    /// a re-send; with [`Opener`] discard everything released so far.
    #[error("age file truncated")]
    Truncated,

    /// A payload chunk failed authentication, the final chunk is badly formed,
    /// or data follows the final chunk. The payload was damaged or tampered
    /// with; refuse it and ask for a re-send (with [`Opener`] discard
    /// everything released so far).
    #[error("age payload corrupted or tampered with")]
    PayloadCorrupted,

    /// The plaintext is larger than the limit the caller gave. Refuse the
    /// submission, or open it again with a larger limit if it is legitimate.
    #[error("plaintext larger than the accepted maximum of {max} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        max: usize,
    },

    /// An earlier call on this [`Opener`] failed, so the stream can no longer
    /// be trusted. Discard everything it released and start over with a new
    /// [`Opener`].
    #[error("the opener already failed")]
    OpenerFailed,
}

/// The public half of a space's intake key: what a witness seals to.
///
/// It is always a usable key: constructors refuse the weak (low-order) points
/// that would make the shared secret predictable.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IntakePublicKey([u8; KEY_LEN]);

impl IntakePublicKey {
    /// Builds a key from its 32-byte X25519 encoding.
    ///
    /// # Errors
    ///
    /// [`IntakeError::InvalidRecipient`] for a low-order point.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Result<Self, IntakeError> {
        if is_low_order(&bytes) {
            return Err(IntakeError::InvalidRecipient);
        }
        Ok(Self(bytes))
    }

    /// The 32-byte X25519 encoding.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }

    /// The age recipient string, `age1...` (lower-case Bech32).
    pub fn to_age_recipient_string(&self) -> String {
        bech32::encode_lower::<Bech32>(Hrp::parse_unchecked(RECIPIENT_HRP), &self.0)
            .expect("a 32-byte payload always fits in Bech32")
    }

    /// Parses an age recipient string, `age1...`.
    ///
    /// Parsing is strict: lower case only, Bech32 (not Bech32m) checksum,
    /// exactly 32 bytes with canonical padding, no surrounding whitespace.
    ///
    /// # Errors
    ///
    /// [`IntakeError::InvalidRecipient`] when the text is anything else, or
    /// encodes a low-order point.
    pub fn parse_age_recipient(s: &str) -> Result<Self, IntakeError> {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(IntakeError::InvalidRecipient);
        }
        let bytes = decode_bech32(s, RECIPIENT_HRP).ok_or(IntakeError::InvalidRecipient)?;
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IntakeError::InvalidRecipient)?;
        if Self(key).to_age_recipient_string() != s {
            return Err(IntakeError::InvalidRecipient);
        }
        Self::from_bytes(key)
    }

    /// A short, stable, URL-safe string identifying this key, meant for URL
    /// fragments and for reading aloud: 22 characters of unpadded base64url.
    ///
    /// It is the first 16 bytes of
    /// `BLAKE3-derive_key("amicus intake fingerprint v1", key bytes)`.
    pub fn fingerprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.fingerprint_bytes())
    }

    /// Whether `fingerprint` is this key's [`fingerprint`](Self::fingerprint),
    /// compared in constant time.
    pub fn verify_fingerprint(&self, fingerprint: &str) -> bool {
        let expected = self.fingerprint();
        bool::from(expected.as_bytes().ct_eq(fingerprint.as_bytes()))
    }

    fn fingerprint_bytes(&self) -> [u8; FINGERPRINT_LEN] {
        let full = blake3::derive_key(FINGERPRINT_CONTEXT, &self.0);
        let mut out = [0u8; FINGERPRINT_LEN];
        out.copy_from_slice(&full[..FINGERPRINT_LEN]);
        out
    }
}

impl fmt::Debug for IntakePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IntakePublicKey")
            .field(&self.to_age_recipient_string())
            .finish()
    }
}

impl fmt::Display for IntakePublicKey {
    /// Writes the age recipient string, `age1...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_age_recipient_string())
    }
}

impl FromStr for IntakePublicKey {
    type Err = IntakeError;

    /// Same as [`IntakePublicKey::parse_age_recipient`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_age_recipient(s)
    }
}

/// The secret half of a space's intake key: what members open submissions
/// with.
///
/// The secret is wiped from memory when the value is dropped, and [`Debug`]
/// shows only the public key's fingerprint.
#[derive(Clone)]
pub struct IntakeSecretKey {
    secret: StaticSecret,
    public: IntakePublicKey,
}

impl IntakeSecretKey {
    /// Builds the key from a 32-byte seed, typically exported from the space's
    /// MLS group. The seed is used as the X25519 private key as is (clamping
    /// happens inside X25519), so the same seed always gives the same key.
    pub fn from_seed(seed: [u8; KEY_LEN]) -> Self {
        let secret = StaticSecret::from(seed);
        // The product of the base point and a clamped scalar is never a
        // low-order point, so this key is always usable.
        let public = IntakePublicKey(PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// Generates a fresh random key.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn generate() -> Self {
        let secret = StaticSecret::random();
        let public = IntakePublicKey(PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// The matching public key.
    pub fn public(&self) -> IntakePublicKey {
        self.public
    }

    /// The age identity string, `AGE-SECRET-KEY-1...` (upper-case Bech32),
    /// as written by `age-keygen`. The returned string is wiped on drop.
    pub fn to_age_identity_string(&self) -> Zeroizing<String> {
        let encoded = bech32::encode_upper::<Bech32>(
            Hrp::parse_unchecked(IDENTITY_HRP),
            self.secret.as_bytes(),
        )
        .expect("a 32-byte payload always fits in Bech32");
        Zeroizing::new(encoded)
    }

    /// Parses an age identity string, `AGE-SECRET-KEY-1...`.
    ///
    /// Parsing is strict: upper case only, Bech32 (not Bech32m) checksum,
    /// exactly 32 bytes with canonical padding, no surrounding whitespace or
    /// comment lines.
    ///
    /// # Errors
    ///
    /// [`IntakeError::InvalidIdentity`] when the text is anything else.
    pub fn parse_age_identity(s: &str) -> Result<Self, IntakeError> {
        if s.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(IntakeError::InvalidIdentity);
        }
        let bytes =
            Zeroizing::new(decode_bech32(s, IDENTITY_HRP).ok_or(IntakeError::InvalidIdentity)?);
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(IntakeError::InvalidIdentity);
        }
        seed.copy_from_slice(&bytes);
        let key = Self::from_seed(*seed);
        let canonical = key.to_age_identity_string();
        if !bool::from(canonical.as_bytes().ct_eq(s.as_bytes())) {
            return Err(IntakeError::InvalidIdentity);
        }
        Ok(key)
    }
}

impl ZeroizeOnDrop for IntakeSecretKey {}

impl fmt::Debug for IntakeSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntakeSecretKey")
            .field("public_fingerprint", &self.public.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Decodes a Bech32 string whose human-readable part is `hrp` (compared
/// without regard to case; callers enforce the case they require).
fn decode_bech32(s: &str, hrp: &str) -> Option<Vec<u8>> {
    let checked = CheckedHrpstring::new::<Bech32>(s).ok()?;
    if !checked.hrp().as_str().eq_ignore_ascii_case(hrp) {
        return None;
    }
    Some(checked.byte_iter().collect())
}

/// Whether `point` lies in the small subgroup of Curve25519, so that any
/// key agreement with it yields the all-zero shared secret.
///
/// X25519 clamps every scalar to a multiple of the cofactor, and a clamped
/// scalar is never a multiple of the prime group order, so the product is
/// the identity exactly for low-order points whichever scalar is used.
fn is_low_order(point: &[u8; KEY_LEN]) -> bool {
    let probe = StaticSecret::from([0x55; KEY_LEN]);
    !probe
        .diffie_hellman(&PublicKey::from(*point))
        .was_contributory()
}

fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut okm = Zeroizing::new([0u8; KEY_LEN]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, okm.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA-256 output length");
    okm
}

fn aead(key: &[u8; KEY_LEN]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&Key::from(*key))
}

fn header_mac(file_key: &[u8; FILE_KEY_LEN]) -> Hmac<Sha256> {
    let mac_key = hkdf_sha256(file_key, &[], HEADER_INFO);
    <Hmac<Sha256> as Mac>::new_from_slice(mac_key.as_slice())
        .expect("HMAC accepts keys of any length")
}

fn payload_cipher(file_key: &[u8; FILE_KEY_LEN], nonce: &[u8]) -> ChaCha20Poly1305 {
    aead(&hkdf_sha256(file_key, nonce, PAYLOAD_INFO))
}

fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

/// STREAM nonce: 11-byte big-endian chunk counter, then the last-chunk flag.
fn chunk_nonce(counter: u64, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::from(nonce)
}

/// Decrypts one sealed chunk (ciphertext then tag), appending the plaintext to
/// `out`. On failure `out` is left as it was.
fn open_chunk(
    cipher: &ChaCha20Poly1305,
    counter: u64,
    last: bool,
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ()> {
    let Some(ct_len) = sealed.len().checked_sub(TAG_LEN) else {
        return Err(());
    };
    let (ct, tag) = sealed.split_at(ct_len);
    let tag = Tag::try_from(tag).map_err(|_| ())?;
    let start = out.len();
    out.extend_from_slice(ct);
    let nonce = chunk_nonce(counter, last);
    match cipher.decrypt_inout_detached(&nonce, &[], (&mut out[start..]).into(), &tag) {
        Ok(()) => Ok(()),
        Err(_) => {
            out.truncate(start);
            Err(())
        }
    }
}

/// Decrypts the chunk at the end of the input. When it does not authenticate
/// as a final chunk but does as an intermediate one, the file was cut at a
/// chunk boundary.
fn open_final_chunk(
    cipher: &ChaCha20Poly1305,
    counter: u64,
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), IntakeError> {
    if sealed.len() < TAG_LEN {
        return Err(IntakeError::PayloadCorrupted);
    }
    let start = out.len();
    if open_chunk(cipher, counter, true, sealed, out).is_ok() {
        if out.len() == start && counter > 0 {
            // Only an empty file may end with an empty chunk.
            return Err(IntakeError::PayloadCorrupted);
        }
        return Ok(());
    }
    if sealed.len() == SEALED_CHUNK_LEN {
        let mut scratch = Vec::with_capacity(CHUNK_LEN);
        if open_chunk(cipher, counter, false, sealed, &mut scratch).is_ok() {
            return Err(IntakeError::Truncated);
        }
    }
    Err(IntakeError::PayloadCorrupted)
}

fn seal_chunk(
    cipher: &ChaCha20Poly1305,
    counter: u64,
    last: bool,
    chunk: &[u8],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(chunk);
    let nonce = chunk_nonce(counter, last);
    let tag = cipher
        .encrypt_inout_detached(&nonce, &[], (&mut out[start..]).into())
        .expect("a chunk is far below the ChaCha20-Poly1305 message limit");
    out.extend_from_slice(&tag);
}

/// Length of the payload (nonce and sealed chunks) for `plaintext_len` bytes
/// of plaintext, or `None` on overflow.
fn payload_len(plaintext_len: usize) -> Option<usize> {
    let chunks = plaintext_len.div_ceil(CHUNK_LEN).max(1);
    plaintext_len
        .checked_add(chunks.checked_mul(TAG_LEN)?)?
        .checked_add(PAYLOAD_NONCE_LEN)
}

/// Plaintext length carried by `sealed_len` bytes of sealed chunks, if that
/// length is possible at all.
fn plaintext_len(sealed_len: usize) -> Result<usize, IntakeError> {
    if sealed_len == 0 {
        return Err(IntakeError::Truncated);
    }
    let chunks = sealed_len.div_ceil(SEALED_CHUNK_LEN);
    let last = sealed_len - (chunks - 1) * SEALED_CHUNK_LEN;
    if last < TAG_LEN || (last == TAG_LEN && chunks > 1) {
        return Err(IntakeError::PayloadCorrupted);
    }
    Ok(sealed_len - chunks * TAG_LEN)
}

/// Upper bound on the size of an age file that [`open`] can accept with the
/// given `max_plaintext`: useful to cap uploads before they are stored.
pub fn max_sealed_len(max_plaintext: usize) -> usize {
    payload_len(max_plaintext)
        .and_then(|p| p.checked_add(MAX_HEADER_LEN))
        .unwrap_or(usize::MAX)
}

/// Seals `plaintext` to one intake key, returning a binary age v1 file.
///
/// The result can be opened with [`open`], or with `age -d -i identity-file`.
///
/// # Panics
///
/// If the operating system's random number generator fails.
pub fn seal(recipient: &IntakePublicKey, plaintext: &[u8]) -> Vec<u8> {
    seal_to_many(core::slice::from_ref(recipient), plaintext)
        .expect("one recipient is always accepted")
}

/// Seals `plaintext` to several intake keys at once (for example the current
/// and the previous key during a rotation); any one of them opens it.
///
/// # Errors
///
/// [`IntakeError::NoRecipients`] for an empty list,
/// [`IntakeError::TooManyRecipients`] for more than [`MAX_STANZAS`] keys.
///
/// # Panics
///
/// If the operating system's random number generator fails.
pub fn seal_to_many(
    recipients: &[IntakePublicKey],
    plaintext: &[u8],
) -> Result<Vec<u8>, IntakeError> {
    if recipients.is_empty() {
        return Err(IntakeError::NoRecipients);
    }
    if recipients.len() > MAX_STANZAS {
        return Err(IntakeError::TooManyRecipients { max: MAX_STANZAS });
    }
    let payload = payload_len(plaintext.len()).expect("a slice length leaves room for tags");
    let stanza_len = STANZA_PREFIX.len() + X25519_TYPE.len() + 1 + B64_32_LEN + 1 + B64_32_LEN + 1;
    let header_len =
        VERSION_LINE.len() + recipients.len() * stanza_len + MAC_PREFIX.len() + 1 + B64_32_LEN + 1;
    let mut out = Vec::with_capacity(header_len + payload);

    let mut file_key = Zeroizing::new([0u8; FILE_KEY_LEN]);
    fill_random(file_key.as_mut_slice());

    out.extend_from_slice(VERSION_LINE);
    for recipient in recipients {
        let their_public = PublicKey::from(recipient.0);
        let ephemeral = EphemeralSecret::random();
        let share = PublicKey::from(&ephemeral);
        // `IntakePublicKey` never holds a low-order point, so this secret is
        // never all zeros.
        let shared = ephemeral.diffie_hellman(&their_public);
        let mut salt = [0u8; 2 * KEY_LEN];
        salt[..KEY_LEN].copy_from_slice(share.as_bytes());
        salt[KEY_LEN..].copy_from_slice(&recipient.0);
        let wrap_key = hkdf_sha256(shared.as_bytes(), &salt, X25519_INFO);
        let mut body = Zeroizing::new([0u8; FILE_KEY_LEN + TAG_LEN]);
        body[..FILE_KEY_LEN].copy_from_slice(file_key.as_slice());
        let tag = aead(&wrap_key)
            .encrypt_inout_detached(&Nonce::default(), &[], (&mut body[..FILE_KEY_LEN]).into())
            .expect("16 bytes are within the ChaCha20-Poly1305 limit");
        body[FILE_KEY_LEN..].copy_from_slice(&tag);

        out.extend_from_slice(STANZA_PREFIX);
        out.extend_from_slice(X25519_TYPE.as_bytes());
        out.push(b' ');
        out.extend_from_slice(STANDARD_NO_PAD.encode(share.as_bytes()).as_bytes());
        out.push(b'\n');
        // 32 bytes encode to 43 columns: a single, final (short) body line.
        out.extend_from_slice(STANDARD_NO_PAD.encode(body.as_slice()).as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(MAC_PREFIX);
    let mut mac = header_mac(&file_key);
    mac.update(&out);
    let tag = mac.finalize().into_bytes();
    out.push(b' ');
    out.extend_from_slice(STANDARD_NO_PAD.encode(tag).as_bytes());
    out.push(b'\n');

    let mut nonce = [0u8; PAYLOAD_NONCE_LEN];
    fill_random(&mut nonce);
    out.extend_from_slice(&nonce);
    let cipher = payload_cipher(&file_key, &nonce);
    if plaintext.is_empty() {
        seal_chunk(&cipher, 0, true, &[], &mut out);
    } else {
        let count = plaintext.len().div_ceil(CHUNK_LEN);
        for (i, chunk) in plaintext.chunks(CHUNK_LEN).enumerate() {
            seal_chunk(&cipher, i as u64, i + 1 == count, chunk, &mut out);
        }
    }
    debug_assert_eq!(out.len(), header_len + payload);
    Ok(out)
}

/// Opens an age file sealed to one of `identities`, returning the plaintext.
///
/// Several identities may be given (for example the current intake key and
/// those it replaced); each X25519 stanza is tried with each of them. The
/// whole file is authenticated before anything is returned. Files whose
/// plaintext would exceed `max_plaintext` bytes are refused before any
/// payload decryption.
///
/// # Errors
///
/// Any [`IntakeError`] describing why the file cannot be opened.
pub fn open(
    identities: &[IntakeSecretKey],
    age_file: &[u8],
    max_plaintext: usize,
) -> Result<Vec<u8>, IntakeError> {
    let window = &age_file[..age_file.len().min(MAX_HEADER_LEN)];
    let Some((header, header_len)) = parse_header(window)? else {
        return Err(if age_file.len() >= MAX_HEADER_LEN {
            header_too_large()
        } else {
            IntakeError::Truncated
        });
    };
    let file_key = unwrap_file_key(&header, identities)?;

    let rest = &age_file[header_len..];
    if rest.len() < PAYLOAD_NONCE_LEN {
        return Err(IntakeError::Truncated);
    }
    let (nonce, sealed) = rest.split_at(PAYLOAD_NONCE_LEN);
    let expected = plaintext_len(sealed.len())?;
    if expected > max_plaintext {
        return Err(IntakeError::TooLarge { max: max_plaintext });
    }

    let cipher = payload_cipher(&file_key, nonce);
    let mut out = Vec::with_capacity(expected);
    let mut chunks = sealed.chunks(SEALED_CHUNK_LEN).peekable();
    let mut counter = 0u64;
    while let Some(chunk) = chunks.next() {
        if chunks.peek().is_none() {
            open_final_chunk(&cipher, counter, chunk, &mut out)?;
        } else {
            open_chunk(&cipher, counter, false, chunk, &mut out)
                .map_err(|()| IntakeError::PayloadCorrupted)?;
        }
        counter += 1;
    }
    debug_assert_eq!(out.len(), expected);
    Ok(out)
}

fn header_too_large() -> IntakeError {
    IntakeError::HeaderTooLarge {
        max_len: MAX_HEADER_LEN,
        max_stanzas: MAX_STANZAS,
    }
}

/// A parsed (not yet authenticated) header.
struct Header<'a> {
    stanzas: Vec<Stanza<'a>>,
    /// The header bytes covered by the MAC: everything up to and including
    /// the `---` mark.
    mac_input: &'a [u8],
    mac: [u8; MAC_LEN],
}

struct Stanza<'a> {
    args: Vec<&'a str>,
    body: Vec<u8>,
}

/// Splits `buf` into newline-terminated lines.
struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    /// The next complete line (without its newline) and its offset, or `None`
    /// when the rest of the buffer holds no newline.
    fn next_line(&mut self) -> Option<(usize, &'a [u8])> {
        let rest = &self.buf[self.pos..];
        let len = rest.iter().position(|&b| b == b'\n')?;
        let start = self.pos;
        self.pos += len + 1;
        Some((start, &rest[..len]))
    }
}

/// Strict canonical unpadded base64, as age requires.
fn decode_b64(s: &[u8]) -> Option<Vec<u8>> {
    STANDARD_NO_PAD.decode(s).ok()
}

fn decode_b64_32(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != B64_32_LEN {
        return None;
    }
    decode_b64(s)?.as_slice().try_into().ok()
}

/// Parses a header at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` is a valid beginning of a header that ends
/// further on, and the parsed header with its length in bytes otherwise.
fn parse_header(buf: &[u8]) -> Result<Option<(Header<'_>, usize)>, IntakeError> {
    let seen = buf.len().min(VERSION_LINE.len());
    if buf[..seen] != VERSION_LINE[..seen] {
        let trimmed = buf.trim_ascii_start();
        let n = trimmed.len().min(ARMOR_BEGIN.len());
        if n > 0 && trimmed[..n] == ARMOR_BEGIN[..n] {
            return Err(IntakeError::ArmorNotSupported);
        }
        return Err(IntakeError::NotAgeFile);
    }
    let mut lines = Lines { buf, pos: 0 };
    if lines.next_line().is_none() {
        return Ok(None);
    }

    let mut stanzas = Vec::new();
    loop {
        let Some((start, line)) = lines.next_line() else {
            return Ok(None);
        };
        if let Some(args) = line.strip_prefix(STANZA_PREFIX) {
            if stanzas.len() == MAX_STANZAS {
                return Err(header_too_large());
            }
            let args = parse_args(args)?;
            let mut body = Vec::new();
            loop {
                let Some((_, line)) = lines.next_line() else {
                    return Ok(None);
                };
                if line.len() > BODY_COLUMNS {
                    return Err(IntakeError::MalformedHeader(
                        "stanza body line longer than 64 columns",
                    ));
                }
                let decoded = decode_b64(line).ok_or(IntakeError::MalformedHeader(
                    "stanza body is not canonical base64",
                ))?;
                body.extend_from_slice(&decoded);
                if line.len() < BODY_COLUMNS {
                    break;
                }
            }
            stanzas.push(Stanza { args, body });
        } else if line.starts_with(MAC_PREFIX) {
            if stanzas.is_empty() {
                return Err(IntakeError::MalformedHeader("no recipient stanza"));
            }
            let encoded = line
                .strip_prefix(b"--- ")
                .ok_or(IntakeError::MalformedHeader("malformed MAC line"))?;
            let mac =
                decode_b64_32(encoded).ok_or(IntakeError::MalformedHeader("malformed MAC line"))?;
            let header = Header {
                stanzas,
                mac_input: &buf[..start + MAC_PREFIX.len()],
                mac,
            };
            return Ok(Some((header, lines.pos)));
        } else {
            return Err(IntakeError::MalformedHeader(
                "line is neither a stanza nor the MAC",
            ));
        }
    }
}

fn parse_args(args: &[u8]) -> Result<Vec<&str>, IntakeError> {
    args.split(|&b| b == b' ')
        .map(|arg| {
            if arg.is_empty() || !arg.iter().all(|&b| (33..=126).contains(&b)) {
                return Err(IntakeError::MalformedHeader("invalid stanza argument"));
            }
            // Visible ASCII is always valid UTF-8.
            core::str::from_utf8(arg)
                .map_err(|_| IntakeError::MalformedHeader("invalid stanza argument"))
        })
        .collect()
}

/// An X25519 stanza that passed the format checks.
struct X25519Stanza {
    share: [u8; KEY_LEN],
    body: [u8; FILE_KEY_LEN + TAG_LEN],
}

fn x25519_stanzas(header: &Header<'_>) -> Result<Vec<X25519Stanza>, IntakeError> {
    if header.stanzas.len() > 1 && header.stanzas.iter().any(|s| s.args[0] == SCRYPT_TYPE) {
        return Err(IntakeError::MalformedHeader(
            "an scrypt stanza must be the only stanza",
        ));
    }
    let mut found = Vec::new();
    for stanza in header.stanzas.iter().filter(|s| s.args[0] == X25519_TYPE) {
        let [_, share] = stanza.args.as_slice() else {
            return Err(IntakeError::MalformedHeader(
                "X25519 stanza needs exactly one share",
            ));
        };
        let share = decode_b64_32(share.as_bytes()).ok_or(IntakeError::MalformedHeader(
            "X25519 share is not 32 bytes of canonical base64",
        ))?;
        let body = stanza
            .body
            .as_slice()
            .try_into()
            .map_err(|_| IntakeError::MalformedHeader("X25519 stanza body is not 32 bytes"))?;
        if is_low_order(&share) {
            return Err(IntakeError::MalformedHeader(
                "X25519 share is a low-order point",
            ));
        }
        found.push(X25519Stanza { share, body });
    }
    Ok(found)
}

/// Unwraps the file key with the first identity that matches a stanza, then
/// checks the header MAC with it.
fn unwrap_file_key(
    header: &Header<'_>,
    identities: &[IntakeSecretKey],
) -> Result<Zeroizing<[u8; FILE_KEY_LEN]>, IntakeError> {
    let stanzas = x25519_stanzas(header)?;
    if stanzas.is_empty() {
        return Err(IntakeError::UnsupportedRecipients);
    }
    for identity in identities {
        for stanza in &stanzas {
            let shared = identity
                .secret
                .diffie_hellman(&PublicKey::from(stanza.share));
            if !shared.was_contributory() {
                return Err(IntakeError::MalformedHeader("X25519 shared secret is zero"));
            }
            let mut salt = [0u8; 2 * KEY_LEN];
            salt[..KEY_LEN].copy_from_slice(&stanza.share);
            salt[KEY_LEN..].copy_from_slice(&identity.public.0);
            let wrap_key = hkdf_sha256(shared.as_bytes(), &salt, X25519_INFO);
            let mut file_key = Zeroizing::new([0u8; FILE_KEY_LEN]);
            file_key.copy_from_slice(&stanza.body[..FILE_KEY_LEN]);
            let tag = Tag::try_from(&stanza.body[FILE_KEY_LEN..]).expect("the tag is 16 bytes");
            let unwrapped = aead(&wrap_key).decrypt_inout_detached(
                &Nonce::default(),
                &[],
                file_key.as_mut_slice().into(),
                &tag,
            );
            if unwrapped.is_ok() {
                let mut mac = header_mac(&file_key);
                mac.update(header.mac_input);
                mac.verify_slice(&header.mac)
                    .map_err(|_| IntakeError::HeaderMacMismatch)?;
                return Ok(file_key);
            }
        }
    }
    Err(IntakeError::NoMatchingIdentity)
}

/// Incremental opener, for files too large to hold twice in memory.
///
/// Feed the file in pieces of any size with [`push`](Self::push), which
/// returns the plaintext of every chunk authenticated so far, then call
/// [`finish`](Self::finish), which authenticates the final chunk.
///
/// Each released piece is authenticated, but the file as a whole is only
/// known to be complete (not cut short) once `finish` returns `Ok`: until then
/// treat the output as provisional, and discard it if any call fails.
pub struct Opener<'a> {
    identities: &'a [IntakeSecretKey],
    max_plaintext: usize,
    state: OpenerState,
}

enum OpenerState {
    Header(Vec<u8>),
    Payload(Payload),
    Failed,
}

struct Payload {
    file_key: Zeroizing<[u8; FILE_KEY_LEN]>,
    nonce: Vec<u8>,
    cipher: Option<ChaCha20Poly1305>,
    /// Sealed bytes not yet decrypted; at most one sealed chunk, kept until
    /// more input shows whether it is the final one.
    pending: Vec<u8>,
    counter: u64,
    released: usize,
}

impl<'a> Opener<'a> {
    /// Starts opening a file with the given identities, refusing plaintexts
    /// larger than `max_plaintext` bytes.
    pub fn new(identities: &'a [IntakeSecretKey], max_plaintext: usize) -> Self {
        Self {
            identities,
            max_plaintext,
            state: OpenerState::Header(Vec::new()),
        }
    }

    /// Feeds the next piece of the file; returns the plaintext that became
    /// available (possibly none).
    ///
    /// # Errors
    ///
    /// Any [`IntakeError`] describing why the file cannot be opened; after an
    /// error every later call fails with [`IntakeError::OpenerFailed`].
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>, IntakeError> {
        let result = self.push_inner(data);
        if result.is_err() {
            self.state = OpenerState::Failed;
        }
        result
    }

    /// Signals the end of the file; returns the last piece of plaintext.
    ///
    /// # Errors
    ///
    /// Any [`IntakeError`] describing why the file cannot be opened, notably
    /// [`IntakeError::Truncated`] when it ends early.
    pub fn finish(mut self) -> Result<Vec<u8>, IntakeError> {
        let max = self.max_plaintext;
        match &mut self.state {
            OpenerState::Failed => Err(IntakeError::OpenerFailed),
            OpenerState::Header(buf) => {
                // Reports a malformed beginning rather than a short one.
                parse_header(buf)?;
                Err(IntakeError::Truncated)
            }
            OpenerState::Payload(payload) => payload.finish(max),
        }
    }

    fn push_inner(&mut self, data: &[u8]) -> Result<Vec<u8>, IntakeError> {
        let mut out = Vec::new();
        match &mut self.state {
            OpenerState::Failed => return Err(IntakeError::OpenerFailed),
            OpenerState::Payload(payload) => payload.push(data, self.max_plaintext, &mut out)?,
            OpenerState::Header(buf) => {
                let take = data.len().min(MAX_HEADER_LEN - buf.len());
                let fresh = &data[..take];
                buf.extend_from_slice(fresh);
                // The header can only end, or a line be found bad, when a
                // newline arrives; the version prefix is checked right away.
                let parse_now = fresh.contains(&b'\n') || buf.len() <= VERSION_LINE.len();
                let parsed = if parse_now { parse_header(buf)? } else { None };
                let Some((header, header_len)) = parsed else {
                    if buf.len() == MAX_HEADER_LEN {
                        return Err(header_too_large());
                    }
                    return Ok(out);
                };
                let file_key = unwrap_file_key(&header, self.identities)?;
                let mut payload = Payload {
                    file_key,
                    nonce: Vec::with_capacity(PAYLOAD_NONCE_LEN),
                    cipher: None,
                    pending: Vec::new(),
                    counter: 0,
                    released: 0,
                };
                payload.push(&buf[header_len..], self.max_plaintext, &mut out)?;
                payload.push(&data[take..], self.max_plaintext, &mut out)?;
                self.state = OpenerState::Payload(payload);
            }
        }
        Ok(out)
    }
}

impl fmt::Debug for Opener<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            OpenerState::Header(_) => "header",
            OpenerState::Payload(_) => "payload",
            OpenerState::Failed => "failed",
        };
        f.debug_struct("Opener")
            .field("identities", &self.identities.len())
            .field("max_plaintext", &self.max_plaintext)
            .field("state", &state)
            .finish()
    }
}

impl Payload {
    fn push(&mut self, mut data: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), IntakeError> {
        if self.cipher.is_none() {
            let take = data.len().min(PAYLOAD_NONCE_LEN - self.nonce.len());
            self.nonce.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.nonce.len() < PAYLOAD_NONCE_LEN {
                return Ok(());
            }
            self.cipher = Some(payload_cipher(&self.file_key, &self.nonce));
        }
        let cipher = self.cipher.as_ref().expect("set above");
        while !data.is_empty() {
            if self.pending.len() == SEALED_CHUNK_LEN {
                // More input follows, so the held chunk is not the final one.
                if self.released.saturating_add(CHUNK_LEN) > max {
                    return Err(IntakeError::TooLarge { max });
                }
                open_chunk(cipher, self.counter, false, &self.pending, out)
                    .map_err(|()| IntakeError::PayloadCorrupted)?;
                self.pending.clear();
                self.counter = self
                    .counter
                    .checked_add(1)
                    .ok_or(IntakeError::PayloadCorrupted)?;
                self.released += CHUNK_LEN;
            }
            let take = data.len().min(SEALED_CHUNK_LEN - self.pending.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    fn finish(&mut self, max: usize) -> Result<Vec<u8>, IntakeError> {
        let Some(cipher) = &self.cipher else {
            return Err(IntakeError::Truncated);
        };
        if self.pending.is_empty() {
            return Err(IntakeError::Truncated);
        }
        let len = self.pending.len().saturating_sub(TAG_LEN);
        if self.released.saturating_add(len) > max {
            return Err(IntakeError::TooLarge { max });
        }
        let mut out = Vec::with_capacity(len);
        open_final_chunk(cipher, self.counter, &self.pending, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written by the reference `age` command-line tool (v1.1.1) with
    /// `age -r FIXTURE_RECIPIENT`, base64-encoded here.
    const FIXTURE_FILE: &str = "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBGc2lHL3VKVHo5MlA2cWR4OWxuUVhFOVMybmJrSUx2L0l0bjByMjNJRWhRCnNHV0E0SHB5REFHSmsrUm1DWUQySzBkRGdzdXRDQXRYVWxyd05FWDJqOWMKLS0tIFFYbkNRL0EwWTE0S1F6d0lPcEVFcHFRYkxQZVNUNis3VTVtbGt4ZTlvVkkK7BsxVqPuJxcjVzTwBL2Z8LmUsqGwBL5LYyw4vY4fNWkKTjIObjOCENhvmRt8yhsN0vtzvXhZg1geqiL91qdsv36EpMjBUXOT2YQ=";
    const FIXTURE_IDENTITY: &str =
        "AGE-SECRET-KEY-1VWVRYM5ZLUNEMRW3JHH0RLPMYMEYF759065PRYSN9YYZ4AZ9FDNQVLKNPR";
    const FIXTURE_RECIPIENT: &str =
        "age1gwdmfhr682csnrt38pptpht9vgvyt2wglmmje562ac9wm8h2h9js4xda55";
    const FIXTURE_PLAINTEXT: &[u8] = b"Witness statement: the van left at 21:40.\n";

    const SIZES: [usize; 6] = [0, 1, 65535, 65536, 65537, 200_000];

    fn data(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8)
            .collect()
    }

    fn header_len(file: &[u8]) -> usize {
        let mac_line = file
            .windows(5)
            .position(|w| w == b"\n--- ")
            .expect("MAC line")
            + 1;
        mac_line + file[mac_line..].iter().position(|&b| b == b'\n').unwrap() + 1
    }

    fn open_streaming(
        ids: &[IntakeSecretKey],
        file: &[u8],
        piece: usize,
        max: usize,
    ) -> Result<Vec<u8>, IntakeError> {
        let mut opener = Opener::new(ids, max);
        let mut out = Vec::new();
        for part in file.chunks(piece) {
            out.extend(opener.push(part)?);
        }
        out.extend(opener.finish()?);
        Ok(out)
    }

    fn flip(file: &[u8], at: usize, mask: u8) -> Vec<u8> {
        let mut copy = file.to_vec();
        copy[at] ^= mask;
        copy
    }

    /// Payload chunks for `craft`: plaintext and last-chunk flag.
    type Chunks<'a> = &'a [(&'a [u8], bool)];

    /// Builds a file around a chosen file key, header lines and chunks, to
    /// exercise cases that `seal` never produces.
    fn craft(file_key: &[u8; FILE_KEY_LEN], stanzas: &str, chunks: &[(&[u8], bool)]) -> Vec<u8> {
        let mut out = format!("age-encryption.org/v1\n{stanzas}---").into_bytes();
        let mut mac = header_mac(file_key);
        mac.update(&out);
        out.push(b' ');
        out.extend_from_slice(
            STANDARD_NO_PAD
                .encode(mac.finalize().into_bytes())
                .as_bytes(),
        );
        out.push(b'\n');
        let nonce = [3u8; PAYLOAD_NONCE_LEN];
        out.extend_from_slice(&nonce);
        let cipher = payload_cipher(file_key, &nonce);
        for (i, (chunk, last)) in chunks.iter().enumerate() {
            seal_chunk(&cipher, i as u64, *last, chunk, &mut out);
        }
        out
    }

    /// The two lines of an X25519 stanza wrapping `file_key` (of any length)
    /// for `to`.
    fn x25519_stanza(file_key: &[u8], to: &IntakePublicKey) -> String {
        let ephemeral = StaticSecret::from([9u8; KEY_LEN]);
        let share = PublicKey::from(&ephemeral);
        let shared = ephemeral.diffie_hellman(&PublicKey::from(to.0));
        let salt = [share.to_bytes(), to.0].concat();
        let wrap_key = hkdf_sha256(shared.as_bytes(), &salt, X25519_INFO);
        let mut body = file_key.to_vec();
        let tag = aead(&wrap_key)
            .encrypt_inout_detached(&Nonce::default(), &[], body.as_mut_slice().into())
            .unwrap();
        body.extend_from_slice(&tag);
        format!(
            "-> X25519 {}\n{}\n",
            STANDARD_NO_PAD.encode(share.as_bytes()),
            STANDARD_NO_PAD.encode(&body)
        )
    }

    #[test]
    fn round_trip_sizes() {
        let key = IntakeSecretKey::generate();
        for size in SIZES {
            let plaintext = data(size);
            let sealed = seal(&key.public(), &plaintext);
            assert_eq!(
                sealed.len(),
                header_len(&sealed) + payload_len(size).unwrap(),
                "size {size}"
            );
            let ids = [key.clone()];
            assert_eq!(open(&ids, &sealed, size).unwrap(), plaintext, "size {size}");
            for piece in [1000, 65552, 70000, sealed.len()] {
                assert_eq!(
                    open_streaming(&ids, &sealed, piece, size).unwrap(),
                    plaintext,
                    "size {size}, pieces of {piece}"
                );
            }
        }
    }

    #[test]
    fn streaming_byte_by_byte() {
        let key = IntakeSecretKey::generate();
        let plaintext = data(700);
        let sealed = seal(&key.public(), &plaintext);
        let ids = [key];
        assert_eq!(open_streaming(&ids, &sealed, 1, 700).unwrap(), plaintext);
    }

    #[test]
    fn several_identities() {
        let old = IntakeSecretKey::generate();
        let current = IntakeSecretKey::generate();
        let other = IntakeSecretKey::generate();
        let plaintext = data(5000);

        let sealed = seal(&old.public(), &plaintext);
        let ids = [other.clone(), current.clone(), old.clone()];
        assert_eq!(open(&ids, &sealed, usize::MAX).unwrap(), plaintext);

        let both = seal_to_many(&[current.public(), old.public()], &plaintext).unwrap();
        for id in [&current, &old] {
            assert_eq!(
                open(core::slice::from_ref(id), &both, usize::MAX).unwrap(),
                plaintext
            );
        }
        assert_eq!(
            open(&[other], &both, usize::MAX),
            Err(IntakeError::NoMatchingIdentity)
        );
        assert_eq!(
            seal_to_many(&[], &plaintext),
            Err(IntakeError::NoRecipients)
        );
        assert_eq!(
            seal_to_many(&[old.public(); MAX_STANZAS + 1], &plaintext),
            Err(IntakeError::TooManyRecipients { max: MAX_STANZAS })
        );
        assert!(seal_to_many(&[old.public(); MAX_STANZAS], &plaintext).is_ok());
    }

    #[test]
    fn wrong_identity_refused() {
        let key = IntakeSecretKey::generate();
        let sealed = seal(&key.public(), b"for members only");
        let stranger = IntakeSecretKey::generate();
        assert_eq!(
            open(core::slice::from_ref(&stranger), &sealed, 100),
            Err(IntakeError::NoMatchingIdentity)
        );
        assert_eq!(
            open(&[], &sealed, 100),
            Err(IntakeError::NoMatchingIdentity)
        );
        assert_eq!(
            open_streaming(&[stranger], &sealed, 7, 100),
            Err(IntakeError::NoMatchingIdentity)
        );
    }

    #[test]
    fn every_header_byte_is_authenticated() {
        let key = IntakeSecretKey::generate();
        let ids = [key.clone()];
        let sealed = seal_to_many(
            &[IntakeSecretKey::generate().public(), key.public()],
            &data(100),
        )
        .unwrap();
        for at in 0..header_len(&sealed) {
            for mask in [0x01, 0x20, 0x80] {
                let tampered = flip(&sealed, at, mask);
                assert!(
                    open(&ids, &tampered, 1000).is_err(),
                    "flip {mask:#x} at header byte {at} went unnoticed"
                );
                assert!(open_streaming(&ids, &tampered, 64, 1000).is_err());
            }
        }
    }

    #[test]
    fn payload_bytes_are_authenticated() {
        let key = IntakeSecretKey::generate();
        let ids = [key.clone()];
        let sealed = seal(&key.public(), &data(200_000));
        let start = header_len(&sealed);
        let mut positions: Vec<usize> = (start..start + PAYLOAD_NONCE_LEN).collect();
        positions.extend((start..sealed.len()).step_by(4099));
        for boundary in 1..=3 {
            let end = start + PAYLOAD_NONCE_LEN + boundary * SEALED_CHUNK_LEN;
            positions.extend([end - TAG_LEN - 1, end - TAG_LEN, end - 1, end]);
        }
        positions.extend(sealed.len() - TAG_LEN..sealed.len());
        for at in positions {
            let tampered = flip(&sealed, at, 0x04);
            assert_eq!(
                open(&ids, &tampered, usize::MAX),
                Err(IntakeError::PayloadCorrupted),
                "payload byte {at}"
            );
        }
    }

    #[test]
    fn truncation_detected() {
        let key = IntakeSecretKey::generate();
        let ids = [key.clone()];
        for size in [131_072, 200_000] {
            let sealed = seal(&key.public(), &data(size));
            let chunks_start = header_len(&sealed) + PAYLOAD_NONCE_LEN;
            let last_start = chunks_start + (size - 1) / CHUNK_LEN * SEALED_CHUNK_LEN;
            let cut = &sealed[..last_start];
            assert_eq!(open(&ids, cut, usize::MAX), Err(IntakeError::Truncated));
            assert_eq!(
                open_streaming(&ids, cut, 10_000, usize::MAX),
                Err(IntakeError::Truncated)
            );
            for len in [sealed.len() - 1, last_start + 1, last_start - 1] {
                assert_eq!(
                    open(&ids, &sealed[..len], usize::MAX),
                    Err(IntakeError::PayloadCorrupted),
                    "cut at {len}"
                );
            }
            for len in [chunks_start, chunks_start - 1, header_len(&sealed), 30, 0] {
                assert_eq!(
                    open(&ids, &sealed[..len], usize::MAX),
                    Err(IntakeError::Truncated),
                    "cut at {len}"
                );
                assert_eq!(
                    open_streaming(&ids, &sealed[..len], 100, usize::MAX),
                    Err(IntakeError::Truncated),
                    "cut at {len}"
                );
            }
        }
    }

    #[test]
    fn appended_data_detected() {
        let key = IntakeSecretKey::generate();
        let ids = [key.clone()];
        for size in [0, 10, 65_536] {
            let sealed = seal(&key.public(), &data(size));
            let last_len = (size % CHUNK_LEN)
                + TAG_LEN
                + if size > 0 && size % CHUNK_LEN == 0 {
                    CHUNK_LEN
                } else {
                    0
                };
            let last_chunk = sealed[sealed.len() - last_len..].to_vec();
            let zeros = vec![0u8; SEALED_CHUNK_LEN];
            for extra in [&[0u8][..], &[0u8; TAG_LEN][..], &zeros[..], &last_chunk[..]] {
                let longer = [&sealed[..], extra].concat();
                assert_eq!(
                    open(&ids, &longer, usize::MAX),
                    Err(IntakeError::PayloadCorrupted),
                    "size {size}, {} bytes appended",
                    extra.len()
                );
                assert_eq!(
                    open_streaming(&ids, &longer, 4096, usize::MAX),
                    Err(IntakeError::PayloadCorrupted)
                );
            }
        }
    }

    #[test]
    fn max_plaintext_enforced() {
        let key = IntakeSecretKey::generate();
        let ids = [key.clone()];
        for size in [1, 65_536, 200_000] {
            let sealed = seal(&key.public(), &data(size));
            assert!(open(&ids, &sealed, size).is_ok());
            assert_eq!(
                open(&ids, &sealed, size - 1),
                Err(IntakeError::TooLarge { max: size - 1 })
            );
            assert_eq!(
                open_streaming(&ids, &sealed, 5000, size - 1),
                Err(IntakeError::TooLarge { max: size - 1 })
            );
            assert!(sealed.len() <= max_sealed_len(size));
        }
        let empty = seal(&key.public(), &[]);
        assert_eq!(open(&ids, &empty, 0).unwrap(), Vec::<u8>::new());
        assert_eq!(max_sealed_len(usize::MAX), usize::MAX);
    }

    #[test]
    fn opens_file_from_reference_cli() {
        let file = STANDARD_NO_PAD
            .decode(FIXTURE_FILE.trim_end_matches('='))
            .unwrap();
        let identity = IntakeSecretKey::parse_age_identity(FIXTURE_IDENTITY).unwrap();
        assert_eq!(
            identity.public().to_age_recipient_string(),
            FIXTURE_RECIPIENT
        );
        assert_eq!(
            open(core::slice::from_ref(&identity), &file, 1000).unwrap(),
            FIXTURE_PLAINTEXT
        );
        assert_eq!(
            open_streaming(&[identity], &file, 3, 1000).unwrap(),
            FIXTURE_PLAINTEXT
        );
    }

    #[test]
    fn key_encoding_matches_specification_example() {
        // The X25519 identity and recipient given as examples in the age
        // specification.
        let identity = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
        let recipient = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj";
        let key = IntakeSecretKey::parse_age_identity(identity).unwrap();
        assert_eq!(key.public().to_age_recipient_string(), recipient);
        assert_eq!(key.to_age_identity_string().as_str(), identity);
        assert_eq!(
            IntakePublicKey::parse_age_recipient(recipient).unwrap(),
            key.public()
        );
        assert_eq!(key.public().to_string(), recipient);
        assert_eq!(recipient.parse::<IntakePublicKey>().unwrap(), key.public());
        // The example key is the seed 0x42 repeated.
        let from_seed = IntakeSecretKey::from_seed([0x42; KEY_LEN]);
        assert_eq!(from_seed.to_age_identity_string().as_str(), identity);
    }

    #[test]
    fn key_parsing_is_strict() {
        let key = IntakeSecretKey::from_seed([7; KEY_LEN]);
        let identity = key.to_age_identity_string();
        let recipient = key.public().to_age_recipient_string();
        assert!(IntakeSecretKey::parse_age_identity(&identity).is_ok());
        assert!(IntakePublicKey::parse_age_recipient(&recipient).is_ok());

        let bad_identities = [
            identity.to_lowercase(),
            format!("{}\n", identity.as_str()),
            format!(" {}", identity.as_str()),
            recipient.clone(),
            recipient.to_uppercase(),
            bech32::encode_upper::<bech32::Bech32m>(
                Hrp::parse_unchecked(IDENTITY_HRP),
                &[7; KEY_LEN],
            )
            .unwrap(),
            bech32::encode_upper::<Bech32>(Hrp::parse_unchecked(IDENTITY_HRP), &[7; 31]).unwrap(),
            bech32::encode_upper::<Bech32>(Hrp::parse_unchecked(IDENTITY_HRP), &[7; 33]).unwrap(),
            bech32::encode_upper::<Bech32>(Hrp::parse_unchecked("AGE-SECRET-KEY-PQ-"), &[7; 32])
                .unwrap(),
            String::new(),
        ];
        for bad in &bad_identities {
            assert_eq!(
                IntakeSecretKey::parse_age_identity(bad).unwrap_err(),
                IntakeError::InvalidIdentity,
                "{bad:?}"
            );
        }
        let mut mixed = recipient.clone();
        mixed.replace_range(5..6, &mixed[5..6].to_uppercase());
        let bad_recipients = [
            recipient.to_uppercase(),
            mixed,
            format!("{recipient} "),
            identity.to_string(),
            bech32::encode_lower::<bech32::Bech32m>(Hrp::parse_unchecked("age"), &key.public().0)
                .unwrap(),
            bech32::encode_lower::<Bech32>(Hrp::parse_unchecked("age"), &[9; 31]).unwrap(),
            bech32::encode_lower::<Bech32>(Hrp::parse_unchecked("agf"), &key.public().0).unwrap(),
            // Low-order points: zero and one.
            bech32::encode_lower::<Bech32>(Hrp::parse_unchecked("age"), &[0; 32]).unwrap(),
            bech32::encode_lower::<Bech32>(
                Hrp::parse_unchecked("age"),
                &[[1u8].as_slice(), &[0; 31]].concat(),
            )
            .unwrap(),
        ];
        for bad in &bad_recipients {
            assert_eq!(
                IntakePublicKey::parse_age_recipient(bad).unwrap_err(),
                IntakeError::InvalidRecipient,
                "{bad:?}"
            );
        }
        assert!(IntakePublicKey::from_bytes([0; 32]).is_err());
        assert_eq!(
            IntakePublicKey::from_bytes(key.public().to_bytes()).unwrap(),
            key.public()
        );
    }

    #[test]
    fn fingerprint_is_short_stable_and_checked() {
        let public = IntakeSecretKey::from_seed([0x42; KEY_LEN]).public();
        let fingerprint = public.fingerprint();
        assert_eq!(fingerprint.len(), 22);
        assert!(
            fingerprint
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let full = blake3::derive_key("amicus intake fingerprint v1", &public.to_bytes());
        assert_eq!(fingerprint, URL_SAFE_NO_PAD.encode(&full[..16]));
        assert_eq!(fingerprint, FINGERPRINT_OF_0X42);
        assert!(public.verify_fingerprint(&fingerprint));
        assert!(!public.verify_fingerprint(&fingerprint[..21]));
        assert!(!public.verify_fingerprint(&format!("{fingerprint}A")));
        assert!(!public.verify_fingerprint(""));
        let other = IntakeSecretKey::from_seed([0x43; KEY_LEN]).public();
        assert!(!other.verify_fingerprint(&fingerprint));
    }

    const FINGERPRINT_OF_0X42: &str = "xhSuh6OOQI0BcL6iPoJTYg";

    #[test]
    fn debug_output_hides_the_secret() {
        let key = IntakeSecretKey::from_seed([0x42; KEY_LEN]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("AGE-SECRET-KEY"));
        assert!(!shown.contains("66"), "{shown}");
        assert!(shown.contains(&key.public().fingerprint()));
    }

    #[test]
    fn foreign_inputs_refused() {
        let ids = [IntakeSecretKey::generate()];
        let armored = b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24ub3JnL3YxCg==\n-----END AGE ENCRYPTED FILE-----\n";
        assert_eq!(open(&ids, armored, 10), Err(IntakeError::ArmorNotSupported));
        assert_eq!(
            open(&ids, &[b"\n  ".as_slice(), armored].concat(), 10),
            Err(IntakeError::ArmorNotSupported)
        );
        assert_eq!(
            open_streaming(&ids, armored, 1, 10),
            Err(IntakeError::ArmorNotSupported)
        );
        for junk in [
            &b"hello"[..],
            b"age-encryption.org/v2\n",
            b"age-encryption.org/v1 \n",
            b"age-encryption.org/v1\r\n",
            b"\x00\x01\x02",
        ] {
            assert_eq!(open(&ids, junk, 10), Err(IntakeError::NotAgeFile));
            assert_eq!(
                open_streaming(&ids, junk, 1, 10),
                Err(IntakeError::NotAgeFile)
            );
        }
        assert_eq!(open(&ids, b"", 10), Err(IntakeError::Truncated));
        assert_eq!(open(&ids, b"age-encr", 10), Err(IntakeError::Truncated));
    }

    #[test]
    fn oversized_headers_refused() {
        let ids = [IntakeSecretKey::generate()];
        let too_large = IntakeError::HeaderTooLarge {
            max_len: MAX_HEADER_LEN,
            max_stanzas: MAX_STANZAS,
        };
        let mut long = b"age-encryption.org/v1\n-> big\n".to_vec();
        while long.len() <= MAX_HEADER_LEN {
            long.extend_from_slice(&[b'A'; BODY_COLUMNS]);
            long.push(b'\n');
        }
        assert_eq!(open(&ids, &long, 10), Err(too_large.clone()));
        assert_eq!(
            open_streaming(&ids, &long, 1000, 10),
            Err(too_large.clone())
        );

        let mut many = b"age-encryption.org/v1\n".to_vec();
        for _ in 0..=MAX_STANZAS {
            many.extend_from_slice(b"-> grease\n\n");
        }
        assert_eq!(open(&ids, &many, 10), Err(too_large.clone()));

        let mut endless = b"age-encryption.org/v1\n-> ".to_vec();
        endless.resize(MAX_HEADER_LEN + 10, b'a');
        assert_eq!(open(&ids, &endless, 10), Err(too_large.clone()));
        assert_eq!(open_streaming(&ids, &endless, 999, 10), Err(too_large));
    }

    #[test]
    fn stanza_rules() {
        let key = IntakeSecretKey::generate();
        let ids = [key.clone()];
        let file_key = [0x5a; FILE_KEY_LEN];
        let x = x25519_stanza(&file_key, &key.public());
        let chunks: &[(&[u8], bool)] = &[(b"payload", true)];
        let full_line = "A".repeat(BODY_COLUMNS);

        let accepted = [
            format!("-> grease\n\n{x}-> grease x y\n\n"),
            format!("-> unknown\n{full_line}\n{full_line}\n\n{x}"),
            format!("-> !\"#$%&' ()*+,-./ ~\nAAAA\n{x}"),
            format!("{}{x}", x.replacen("-> X25519", "-> x25519", 1)),
        ];
        for stanzas in &accepted {
            let file = craft(&file_key, stanzas, chunks);
            assert_eq!(
                open(&ids, &file, 100).as_deref(),
                Ok(&b"payload"[..]),
                "{stanzas}"
            );
        }

        let x_args_end = x.find('\n').unwrap();
        let (x_args, x_body) = (&x[..x_args_end], &x[x_args_end + 1..]);
        let zero_share = format!("-> X25519 {}\n{x_body}", "A".repeat(43));
        let long_share = format!(
            "-> X25519 {}\n{x_body}",
            STANDARD_NO_PAD.encode([[9u8; 32].as_slice(), &[0]].concat())
        );
        let non_canonical_body = {
            // The last character of a 43-character encoding carries two
            // unused bits; setting one keeps the bytes but breaks canonicity.
            let mut body = x_body.trim_end().to_string();
            let last = body.pop().unwrap();
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let index = alphabet.iter().position(|&c| c == last as u8).unwrap();
            body.push(alphabet[index | 1] as char);
            format!("{x_args}\n{body}\n")
        };
        let long_file_key = x25519_stanza(&[0x5a; 24], &key.public());
        let refused = [
            (format!("{x_args} extra\n{x_body}"), "extra argument"),
            (zero_share, "all-zero share"),
            (long_share, "33-byte share"),
            (non_canonical_body, "non-canonical body"),
            (long_file_key, "24-byte file key"),
            (format!("-> scrypt c2FsdA 10\n\n{x}"), "scrypt with others"),
            (format!("->  grease\n\n{x}"), "empty argument"),
            (format!("-> grease \n\n{x}"), "trailing space"),
            (format!("->\n\n{x}"), "no argument"),
            (format!("-> grease\n{full_line}\n{x}"), "missing final line"),
            (format!("-> grease\nAAA=\n{x}"), "padding"),
            (format!("-> grease\n{full_line}A\n\n{x}"), "long body line"),
            (format!("-> grease\n\n\n{x}"), "two short lines"),
            (format!("-> gr\u{e9}ase\n\n{x}"), "non-ASCII argument"),
            (x.replace('\n', "\r\n"), "CRLF"),
            (format!("{x}junk\n"), "unknown line"),
            (String::new(), "no stanza"),
        ];
        for (stanzas, why) in &refused {
            let file = craft(&file_key, stanzas, chunks);
            assert!(
                matches!(open(&ids, &file, 100), Err(IntakeError::MalformedHeader(_))),
                "{why}: {:?}",
                open(&ids, &file, 100)
            );
        }

        let only_foreign = craft(&file_key, "-> x25519 abc\n\n", chunks);
        assert_eq!(
            open(&ids, &only_foreign, 100),
            Err(IntakeError::UnsupportedRecipients)
        );

        let mut bad_mac = craft(&file_key, &x, chunks);
        let mac_start = header_len(&bad_mac) - 1 - B64_32_LEN;
        bad_mac[mac_start] = if bad_mac[mac_start] == b'A' {
            b'B'
        } else {
            b'A'
        };
        assert_eq!(
            open(&ids, &bad_mac, 100),
            Err(IntakeError::HeaderMacMismatch)
        );
    }

    #[test]
    fn stream_rules() {
        let key = IntakeSecretKey::generate();
        let ids = [key.clone()];
        let file_key = [0x11; FILE_KEY_LEN];
        let x = x25519_stanza(&file_key, &key.public());
        let full = data(CHUNK_LEN);

        let cases: [(Chunks<'_>, Result<usize, IntakeError>); 7] = [
            (&[(b"", true)], Ok(0)),
            (&[(&full, true)], Ok(CHUNK_LEN)),
            (&[(&full, false), (b"x", true)], Ok(CHUNK_LEN + 1)),
            (
                &[(&full, false), (b"", true)],
                Err(IntakeError::PayloadCorrupted),
            ),
            (&[(b"x", false)], Err(IntakeError::PayloadCorrupted)),
            (&[(&full, false)], Err(IntakeError::Truncated)),
            (
                &[(b"x", true), (b"y", true)],
                Err(IntakeError::PayloadCorrupted),
            ),
        ];
        for (i, (chunks, expected)) in cases.iter().enumerate() {
            let file = craft(&file_key, &x, chunks);
            let got = open(&ids, &file, usize::MAX).map(|p| p.len());
            assert_eq!(&got, expected, "case {i}");
            let streamed = open_streaming(&ids, &file, 1234, usize::MAX).map(|p| p.len());
            assert_eq!(&streamed, expected, "case {i}, streaming");
        }
        let no_chunk = craft(&file_key, &x, &[]);
        assert_eq!(open(&ids, &no_chunk, 10), Err(IntakeError::Truncated));
    }

    #[test]
    fn opener_refuses_use_after_failure() {
        let key = IntakeSecretKey::generate();
        let ids = [key.clone()];
        let sealed = seal(&IntakeSecretKey::generate().public(), b"not for you");
        let mut opener = Opener::new(&ids, 100);
        assert_eq!(opener.push(&sealed), Err(IntakeError::NoMatchingIdentity));
        assert_eq!(opener.push(b"more"), Err(IntakeError::OpenerFailed));
        assert_eq!(opener.finish(), Err(IntakeError::OpenerFailed));
    }

    #[test]
    fn sealed_files_differ_each_time() {
        let key = IntakeSecretKey::generate();
        let a = seal(&key.public(), b"same");
        let b = seal(&key.public(), b"same");
        assert_ne!(a, b);
    }
}
