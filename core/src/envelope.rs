//! Envelopes: the encrypted, signed, padded unit of persistent content
//! (document changes, snapshots, the library, epoch records).
//!
//! ```text
//! header (82 bytes, the AEAD's associated data, sent in clear):
//!   version u8 = 1 | kind u8 | space id [16] | stream id [16] | epoch u64 BE
//!   | message id [16] | nonce [24]
//! ciphertext = XChaCha20-Poly1305(content key of `epoch`, nonce, aad = header,
//!   plaintext = u32 BE n | signed inner (n bytes) | zero padding)
//! signed inner = postcard(SignedInner { inner, signature })
//! inner = postcard(Inner { device, seq, log_head, body })
//! signature = Ed25519(device key, "amicus envelope v1\0" || header || inner)
//! ```
//!
//! The nonce is 192 random bits: many devices share one content key, and
//! 2^-96 collision odds after 2^48 envelopes per epoch stay negligible, which
//! 96-bit random nonces would not. The plaintext is padded to a size bucket
//! ([`padded_len`]) so that sizes say little about what was typed. The
//! signer's identity is inside the ciphertext: the envelope does not tell the
//! server who wrote it (the connection it arrives on may).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::identity::Device;
use crate::keyring::ContentKey;
use crate::{DeviceId, MessageId, SpaceId, StreamId};

/// Length of the clear header.
pub const HEADER_LEN: usize = 82;
/// The largest envelope accepted (header, ciphertext and tag).
pub const MAX_ENVELOPE_LEN: usize = 16 << 20;
/// The smallest padded plaintext size.
pub const MIN_BUCKET: usize = 256;
const VERSION: u8 = 1;
const SIGNATURE_CONTEXT: &[u8] = b"amicus envelope v1\0";
const TAG_LEN: usize = 16;

/// What an envelope carries; the role its signer needs depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    /// One Automerge change of a document or of the library (contributor or above).
    Change = 1,
    /// A whole Automerge document (content manager or above).
    Snapshot = 2,
    /// The record written right after a commit (any member of the epoch).
    EpochRecord = 3,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Change),
            2 => Some(Self::Snapshot),
            3 => Some(Self::EpochRecord),
            _ => None,
        }
    }
}

/// Why an envelope was refused. None of these change any state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Shorter than a header and a tag, longer than [`MAX_ENVELOPE_LEN`], or
    /// of an unknown version or kind.
    #[error("malformed envelope (length, version or kind)")]
    Malformed,
    /// The envelope belongs to another space or stream than the one it was
    /// delivered for (a server mixing streams).
    #[error("envelope delivered for the wrong space or stream")]
    WrongStream,
    /// No content key is known for the envelope's epoch: either it predates
    /// what this member may read (history policy, join time) or the epoch
    /// records that lead to it have not been read yet.
    #[error("no content key for epoch {0}")]
    UnknownEpoch(u64),
    /// The epoch is not the one in force at the envelope's log position.
    #[error("envelope of epoch {found} at a log position where epoch {expected} is in force")]
    WrongEpoch {
        /// The epoch in force.
        expected: u64,
        /// The epoch in the header.
        found: u64,
    },
    /// Authentication failed: the envelope was altered, truncated, or sealed
    /// under another key. Nothing was applied.
    #[error("envelope authentication failed (tampered or wrong key)")]
    Decrypt,
    /// The decrypted content is not well formed (bad length prefix, non-zero
    /// padding, undecodable inner structure).
    #[error("envelope content is malformed")]
    BadContent,
    /// The signer is not in the roster of the envelope's epoch.
    #[error("signer {0} is not a member in the envelope's epoch")]
    UnknownSigner(DeviceId),
    /// The signer's role does not allow this kind of envelope.
    #[error("signer {0} has no role that allows writing this kind of envelope")]
    NotAllowed(DeviceId),
    /// The signature does not verify under the signer's leaf key.
    #[error("envelope signature invalid")]
    BadSignature,
}

/// The clear header of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the envelope carries.
    pub kind: Kind,
    /// The space.
    pub space: SpaceId,
    /// The stream (document, library, epoch records) inside the space.
    pub stream: StreamId,
    /// The epoch whose content key sealed it.
    pub epoch: u64,
    /// Unique per envelope; with the signer, the duplicate-detection key.
    pub message: MessageId,
    /// The random 192-bit nonce.
    pub nonce: [u8; 24],
}

impl Header {
    /// The 82 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = VERSION;
        out[1] = self.kind as u8;
        out[2..18].copy_from_slice(&self.space.0);
        out[18..34].copy_from_slice(&self.stream.0);
        out[34..42].copy_from_slice(&self.epoch.to_be_bytes());
        out[42..58].copy_from_slice(&self.message.0);
        out[58..82].copy_from_slice(&self.nonce);
        out
    }

    /// Parses the header of an envelope (the server does this too, to route
    /// and to refuse stale epochs, without any key).
    pub fn parse(envelope: &[u8]) -> Result<Self, EnvelopeError> {
        if envelope.len() < HEADER_LEN + TAG_LEN || envelope.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::Malformed);
        }
        if envelope[0] != VERSION {
            return Err(EnvelopeError::Malformed);
        }
        let kind = Kind::from_byte(envelope[1]).ok_or(EnvelopeError::Malformed)?;
        let arr16 = |r: core::ops::Range<usize>| -> [u8; 16] {
            envelope[r].try_into().expect("range of 16")
        };
        Ok(Self {
            kind,
            space: SpaceId(arr16(2..18)),
            stream: StreamId(arr16(18..34)),
            epoch: u64::from_be_bytes(envelope[34..42].try_into().expect("8 bytes")),
            message: MessageId(arr16(42..58)),
            nonce: envelope[58..82].try_into().expect("24 bytes"),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Inner {
    device: DeviceId,
    seq: u64,
    log_head: [u8; 32],
    body: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct SignedInner {
    inner: Vec<u8>,
    #[serde(with = "serde_big_array")]
    signature: [u8; 64],
}

mod serde_big_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(sig)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let v: &[u8] = Deserialize::deserialize(d)?;
        v.try_into()
            .map_err(|_| serde::de::Error::invalid_length(v.len(), &"64 bytes"))
    }
}

/// What a sender puts into an envelope besides the body.
#[derive(Clone, Copy, Debug)]
pub struct SealParams {
    /// What the envelope carries.
    pub kind: Kind,
    /// The space.
    pub space: SpaceId,
    /// The stream.
    pub stream: StreamId,
    /// The epoch of `key`.
    pub epoch: u64,
    /// The sender's per-device sequence number in this stream.
    pub seq: u64,
    /// The hash of the last log entry the sender had seen.
    pub log_head: [u8; 32],
}

/// A verified, decrypted envelope. Its `Debug` shows the body's length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    /// The clear header.
    pub header: Header,
    /// The signing device.
    pub device: DeviceId,
    /// The signer's sequence number.
    pub seq: u64,
    /// The log head the signer had seen.
    pub log_head: [u8; 32],
    /// The payload.
    pub body: Vec<u8>,
}

impl core::fmt::Debug for Opened {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opened")
            .field("header", &self.header)
            .field("device", &self.device)
            .field("seq", &self.seq)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The padded size of a plaintext of `len` bytes: the next power of two
/// (at least [`MIN_BUCKET`]) up to 64 KiB, then the next multiple of 64 KiB.
pub fn padded_len(len: usize) -> usize {
    const STEP: usize = 64 << 10;
    if len <= STEP {
        len.max(MIN_BUCKET).next_power_of_two()
    } else {
        len.div_ceil(STEP) * STEP
    }
}

/// Seals `body` as `device` under `key`.
pub fn seal(device: &Device, key: &ContentKey, params: SealParams, body: &[u8]) -> Vec<u8> {
    let header = Header {
        kind: params.kind,
        space: params.space,
        stream: params.stream,
        epoch: params.epoch,
        message: MessageId::random(),
        nonce: crate::random::bytes(),
    };
    let header_bytes = header.to_bytes();
    let inner = postcard::to_allocvec(&Inner {
        device: device.id(),
        seq: params.seq,
        log_head: params.log_head,
        body: body.to_vec(),
    })
    .expect("inner always encodes");
    let mut signed_input = header_bytes.to_vec();
    signed_input.extend_from_slice(&inner);
    let signature = device.sign_with_context(SIGNATURE_CONTEXT, &signed_input);
    let signed = postcard::to_allocvec(&SignedInner { inner, signature }).expect("encodes");

    let mut plaintext = Vec::with_capacity(padded_len(signed.len() + 4));
    plaintext.extend_from_slice(&(signed.len() as u32).to_be_bytes());
    plaintext.extend_from_slice(&signed);
    plaintext.resize(padded_len(plaintext.len()), 0);

    let cipher = XChaCha20Poly1305::new(&key.aead_key());
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(header.nonce),
            Payload {
                msg: &plaintext,
                aad: &header_bytes,
            },
        )
        .expect("encryption of a bounded buffer cannot fail");
    let mut out = header_bytes.to_vec();
    out.extend_from_slice(&ciphertext);
    out
}

/// The roster entry a receiver needs to check a signer.
#[derive(Clone, Copy, Debug)]
pub struct SignerInfo {
    /// The signer's Ed25519 leaf key.
    pub signature_key: [u8; 32],
    /// Whether the signer's role allows the envelope's kind.
    pub allowed: bool,
}

/// Decrypts and verifies an envelope whose header was already parsed and
/// whose key the caller looked up for `header.epoch`. `signer` answers, for
/// the device named inside, its key and whether it may write this kind in
/// that epoch (`None`: not a member).
pub fn open(
    envelope: &[u8],
    header: &Header,
    key: &ContentKey,
    signer: impl FnOnce(DeviceId, Kind) -> Option<SignerInfo>,
) -> Result<Opened, EnvelopeError> {
    let (header_bytes, ciphertext) = envelope.split_at(HEADER_LEN);
    let cipher = XChaCha20Poly1305::new(&key.aead_key());
    let plaintext = cipher
        .decrypt(
            &XNonce::from(header.nonce),
            Payload {
                msg: ciphertext,
                aad: header_bytes,
            },
        )
        .map_err(|_| EnvelopeError::Decrypt)?;

    let (len, rest) = plaintext
        .split_at_checked(4)
        .ok_or(EnvelopeError::BadContent)?;
    let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
    if len > rest.len() || rest[len..].iter().any(|b| *b != 0) {
        return Err(EnvelopeError::BadContent);
    }
    let signed: SignedInner = crate::decode_exact(&rest[..len]).ok_or(EnvelopeError::BadContent)?;
    let inner: Inner = crate::decode_exact(&signed.inner).ok_or(EnvelopeError::BadContent)?;

    let info =
        signer(inner.device, header.kind).ok_or(EnvelopeError::UnknownSigner(inner.device))?;
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&info.signature_key)
        .map_err(|_| EnvelopeError::BadSignature)?;
    let mut signed_input = SIGNATURE_CONTEXT.to_vec();
    signed_input.extend_from_slice(header_bytes);
    signed_input.extend_from_slice(&signed.inner);
    verifying
        .verify_strict(
            &signed_input,
            &ed25519_dalek::Signature::from_bytes(&signed.signature),
        )
        .map_err(|_| EnvelopeError::BadSignature)?;
    if !info.allowed {
        return Err(EnvelopeError::NotAllowed(inner.device));
    }
    Ok(Opened {
        header: *header,
        device: inner.device,
        seq: inner.seq,
        log_head: inner.log_head,
        body: inner.body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserId;
    use crate::identity::UserIdentity;

    fn setup() -> (Device, ContentKey, SealParams) {
        let device = UserIdentity::generate(UserId::new("amina").unwrap()).new_device();
        let key = ContentKey::from_bytes(crate::random::bytes());
        let params = SealParams {
            kind: Kind::Change,
            space: SpaceId::random(),
            stream: StreamId::random(),
            epoch: 7,
            seq: 1,
            log_head: [3; 32],
        };
        (device, key, params)
    }

    fn open_as(d: &Device, env: &[u8], key: &ContentKey) -> Result<Opened, EnvelopeError> {
        let header = Header::parse(env)?;
        let pk = d.public_key();
        let id = d.id();
        open(env, &header, key, |dev, _| {
            (dev == id).then_some(SignerInfo {
                signature_key: pk,
                allowed: true,
            })
        })
    }

    #[test]
    fn round_trip_and_padding_buckets() {
        let (d, key, params) = setup();
        for len in [0usize, 1, 100, 300, 5000, 70_000] {
            let body = vec![0x41; len];
            let env = seal(&d, &key, params, &body);
            let opened = open_as(&d, &env, &key).unwrap();
            assert_eq!(opened.body, body);
            assert_eq!(opened.seq, 1);
            assert_eq!(opened.device, d.id());
            let ct_len = env.len() - HEADER_LEN - TAG_LEN;
            assert_eq!(ct_len, padded_len(ct_len), "ciphertext is a bucket size");
        }
        // Bodies of 1 and 100 bytes give the same envelope size.
        assert_eq!(
            seal(&d, &key, params, b"a").len(),
            seal(&d, &key, params, &[b'a'; 100]).len()
        );
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let (d, key, params) = setup();
        let env = seal(&d, &key, params, b"Requete introductive d'instance");
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x01;
            assert!(
                open_as(&d, &bad, &key).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert!(open_as(&d, &env[..env.len() - 1], &key).is_err());
        let other = ContentKey::from_bytes(crate::random::bytes());
        assert_eq!(open_as(&d, &env, &other), Err(EnvelopeError::Decrypt));
    }

    #[test]
    fn unknown_or_unauthorised_signers_are_refused() {
        let (d, key, params) = setup();
        let env = seal(&d, &key, params, b"x");
        let header = Header::parse(&env).unwrap();
        assert_eq!(
            open(&env, &header, &key, |_, _| None),
            Err(EnvelopeError::UnknownSigner(d.id()))
        );
        let pk = d.public_key();
        assert_eq!(
            open(&env, &header, &key, |_, _| Some(SignerInfo {
                signature_key: pk,
                allowed: false
            })),
            Err(EnvelopeError::NotAllowed(d.id()))
        );
        let impostor = UserIdentity::generate(UserId::new("eve").unwrap()).new_device();
        let ipk = impostor.public_key();
        assert_eq!(
            open(&env, &header, &key, |_, _| Some(SignerInfo {
                signature_key: ipk,
                allowed: true
            })),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn nonces_and_message_ids_differ() {
        let (d, key, params) = setup();
        let a = Header::parse(&seal(&d, &key, params, b"x")).unwrap();
        let b = Header::parse(&seal(&d, &key, params, b"x")).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.message, b.message);
    }
}
