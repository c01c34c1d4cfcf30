//! Chunked, streamed encryption of files.
//!
//! A file is encrypted under its own random 32-byte [`FileSecret`] and named
//! by a random 16-byte [`FileId`]. The ciphertext is a sequence of chunks,
//! each stored as an opaque blob addressed by its [`ChunkId`]; the
//! [`FileManifest`] lists the chunks in order and carries the secret, so it
//! must itself travel inside an encrypted envelope. Everything here is
//! sans-IO: the caller reads the plaintext, stores and fetches the blobs, and
//! keeps the manifest; the module only turns bytes into bytes, holding at most
//! about one chunk in memory at a time.
//!
//! # Keys
//!
//! From the secret `k` (BLAKE3 in key-derivation mode):
//!
//! - chunk key: `blake3::derive_key("amicus file chunk key v1", k)`;
//! - key commitment: `blake3::derive_key("amicus file key commitment v1", k)`;
//! - resume key: `blake3::derive_key("amicus file resume v1", k)`, the key of
//!   the keyed BLAKE3 hash kept in an [`UploadProgress`].
//!
//! # Padding (Padmé)
//!
//! Before chunking, the plaintext of length `L` is padded with zero bytes to
//! [`padme`]`(L)`, the Padmé length of Nikitin et al. ("Reducing Metadata
//! Leakage from Encrypted Files and Communication with PURBs", PETS 2019):
//! with `E = floor(log2 L)`, `S = floor(log2 E) + 1`, `lastBits = E - S` and
//! `bitMask = 2^lastBits - 1`, the padded length is
//! `(L + bitMask) & !bitMask`. For `L < 2` (where `log2 E` is undefined) the
//! length is left as it is: `padme(0) = 0`, `padme(1) = 1`; the formula also
//! gives `lastBits = 0` (no padding) for `L` in `2..=7`. The overhead is at
//! most 11.7 % (reached just above 128 bytes) and shrinks as files grow, and
//! a padded length reveals only `O(log log L)` bits. Padding bytes are zeros
//! appended after the content; the real length is in the manifest, and the
//! opener checks that the padding is all zeros.
//!
//! # Chunks (STREAM)
//!
//! The padded plaintext is cut into chunks of [`CHUNK_SIZE`] (1 MiB) bytes;
//! the last one may be shorter, and an empty file is one empty chunk. The
//! number of chunks is therefore [`chunk_count`]`(padded)` =
//! `max(1, ceil(padded / CHUNK_SIZE))`. Chunk `i` of `n` is sealed with
//! ChaCha20-Poly1305 (RFC 8439) under the chunk key, in the STREAM
//! construction of Hoang, Reyhanitabar, Rogaway and Vizár:
//!
//! ```text
//! nonce (12 bytes) = i as 88-bit big-endian integer (11 bytes)
//!                 || 0x01 if i == n - 1 else 0x00  (1 byte)
//! aad   (48 bytes) = "amicus file chunk v1"        (20 bytes, ASCII)
//!                 || file id                       (16 bytes)
//!                 || CHUNK_SIZE as u32 big-endian  ( 4 bytes)
//!                 || n as u64 big-endian           ( 8 bytes)
//! ```
//!
//! The index in the nonce stops reordering, the last-chunk flag stops
//! truncation and extension, and the file id in the AAD stops chunks of one
//! file from being accepted in another. The chunk count in the AAD detects
//! truncation and extension a second time, even if a manifest claimed a
//! different size.
//!
//! The stored blob of a chunk is
//!
//! ```text
//! chunk 0:  key commitment (32) || ciphertext (len of chunk 0) || tag (16)
//! chunk i:                          ciphertext (len of chunk i) || tag (16)
//! ```
//!
//! and its [`ChunkId`] is `blake3(blob)`, the plain (unkeyed) BLAKE3 hash of
//! the whole stored blob, never of plaintext. ChaCha20-Poly1305 does not
//! commit to its key: a crafted ciphertext can be valid under two keys. The
//! key commitment in chunk 0, checked in constant time before anything is
//! decrypted, ties the blob to one secret, and since the opener only accepts
//! chunks in order, no chunk of a file is released before chunk 0 has pinned
//! the secret (and with it the chunk key of every other chunk).
//! [`FileOpener::open_pair`] may decrypt chunk 1 on another thread while
//! chunk 0 is checked, but releases both or neither, so the same holds.
//!
//! # Opening
//!
//! [`FileOpener::open_chunk`] accepts chunks strictly in order and checks, for
//! each: the index is the next expected one; `blake3(blob)` equals the
//! manifest's chunk id (constant time); the blob has the exact expected
//! length; on chunk 0, the key commitment (constant time); the AEAD tag; and
//! that any padding is zero. A failed chunk does not advance the opener, so
//! the caller may fetch the blob again and retry. Each returned piece is
//! authentic, but the file is complete only once [`FileOpener::finish`]
//! returns `Ok`: until then it may have been truncated.
//!
//! # Resuming an upload without nonce reuse
//!
//! Nonces are deterministic (chunk index and flag), so sealing two different
//! plaintexts for the same chunk index under the same secret would reuse a
//! nonce and leak the XOR of the two plaintexts (and the Poly1305 key). A
//! fresh upload takes a fresh random secret, so only resuming can cause this.
//! [`FileSealer::progress`] returns an [`UploadProgress`] holding the secret,
//! the file id, the lengths, the chunks already emitted with their ids, and a
//! keyed BLAKE3 hash (under the resume key) of the content bytes those chunks
//! covered. [`FileSealer::resume`] rebuilds a sealer from it; the caller
//! pushes the source again from byte 0. Bytes before the resume point (the
//! end of the last emitted chunk) are only hashed, not sealed again; when the
//! resume point is reached the hash is compared in constant time with the
//! recorded one, and any difference fails with [`FileError::SourceChanged`]
//! and poisons the sealer. The caller must then discard the progress and
//! start afresh with [`FileSealer::new`], hence a new secret.
//!
//! The argument: a chunk's plaintext is a function of the source bytes it
//! covers (padding is zeros, lengths are fixed by the progress). Every chunk
//! before the resume point is never re-encrypted. Every chunk after it is
//! encrypted again, but with a nonce that, under the write-ahead rule below,
//! never protected anything that left the device. So no nonce ever protects
//! two different plaintexts seen by anyone else.
//!
//! **Write-ahead rule for callers**: persist a progress snapshot taken after
//! a chunk was emitted *before* that chunk is uploaded (or otherwise leaves
//! the device), always resume from the most recent persisted snapshot, and
//! after a resume upload only chunks covered by a newly persisted snapshot.
//! Chunks emitted but not yet covered by a persisted snapshot must be thrown
//! away if the process stops.

use core::fmt;

use chacha20poly1305::{AeadInOut, ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Size of a plaintext chunk in bytes (1 MiB); the last chunk may be shorter.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Size of the Poly1305 tag at the end of every blob.
pub const TAG_SIZE: usize = 16;

/// Size of the key commitment at the start of chunk 0's blob.
pub const KEY_COMMITMENT_SIZE: usize = 32;

/// [`CHUNK_SIZE`] as stored in manifests and bound into the AAD.
const CHUNK_SIZE_U32: u32 = 1 << 20;
/// [`CHUNK_SIZE`] as a `u64`, for offsets in a file.
const CHUNK_SIZE_U64: u64 = 1 << 20;

/// Context of the chunk key derivation.
const CHUNK_KEY_CONTEXT: &str = "amicus file chunk key v1";
/// Context of the key commitment derivation.
const KEY_COMMITMENT_CONTEXT: &str = "amicus file key commitment v1";
/// Context of the resume hash key derivation.
const RESUME_KEY_CONTEXT: &str = "amicus file resume v1";
/// Label at the start of every chunk's associated data.
const CHUNK_AAD_LABEL: &[u8; 20] = b"amicus file chunk v1";
/// Length of a chunk's associated data.
const AAD_LEN: usize = 20 + 16 + 4 + 8;

/// The Padmé padded length of a plaintext of `len` bytes, or `None` if it does
/// not fit in a `u64` (only for lengths within 2^57 of `u64::MAX`).
///
/// With `E = floor(log2 len)`, `S = floor(log2 E) + 1`, `lastBits = E - S`
/// and `bitMask = 2^lastBits - 1`, the result is
/// `(len + bitMask) & !bitMask`. Lengths 0 and 1 are returned unchanged, and
/// so are lengths 2 to 7 (the formula gives `lastBits = 0` there).
pub const fn padme(len: u64) -> Option<u64> {
    if len < 2 {
        return Some(len);
    }
    let e = len.ilog2();
    let s = e.ilog2() + 1;
    let last_bits = e - s;
    let mask = (1u64 << last_bits) - 1;
    match len.checked_add(mask) {
        Some(v) => Some(v & !mask),
        None => None,
    }
}

/// The number of chunks of a file whose padded plaintext has `padded_size`
/// bytes: `ceil(padded_size / CHUNK_SIZE)`, and 1 for an empty file.
pub const fn chunk_count(padded_size: u64) -> u64 {
    if padded_size == 0 {
        1
    } else {
        padded_size.div_ceil(CHUNK_SIZE_U64)
    }
}

/// Everything that can go wrong while sealing or opening a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The platform's random number generator failed, so no secret or file id
    /// could be drawn. Nothing was encrypted; retry later or report the
    /// platform as unsupported.
    #[error("random number generator failed: {0}")]
    Randomness(getrandom::Error),
    /// The declared plaintext length is so large that its padded length does
    /// not fit in 64 bits. Such a file cannot be stored; refuse it.
    #[error("file of {0} bytes is too large")]
    TooLarge(u64),
    /// More bytes were pushed than the length declared when the sealer was
    /// created. Nothing of the offending push was consumed; the source
    /// probably changed size: start afresh with a new sealer and its real
    /// length.
    #[error("more plaintext than declared: {received} bytes pushed, {declared} declared")]
    TooMuchData {
        /// The length declared to the sealer.
        declared: u64,
        /// The length the offending push would have reached.
        received: u64,
    },
    /// Fewer bytes were pushed than declared when the sealer was finished (or
    /// asked for its trailing chunks). Push the rest of the source first; if
    /// the source shrank, start afresh with a new sealer.
    #[error("less plaintext than declared: {received} bytes pushed, {declared} declared")]
    NotEnoughData {
        /// The length declared to the sealer.
        declared: u64,
        /// The number of bytes pushed so far.
        received: u64,
    },
    /// On a resumed upload, the source pushed again differs from the one
    /// already encrypted up to the resume point. Continuing would reuse
    /// nonces, so the sealer refuses all further work: discard the progress
    /// and its uploaded chunks and start afresh with [`FileSealer::new`].
    #[error("the source changed since the upload was interrupted; start a new upload")]
    SourceChanged,
    /// An [`UploadProgress`] is inconsistent (lengths, chunk count or chunk
    /// list do not agree, or it was made with another chunk size). It was
    /// corrupted or comes from an incompatible version: start afresh.
    #[error("invalid upload progress: {0}")]
    InvalidProgress(&'static str),
    /// A [`FileManifest`] is inconsistent (lengths, chunk size or number of
    /// chunk ids do not agree). The file cannot be opened; the manifest is
    /// corrupted or was made by an incompatible version.
    #[error("invalid file manifest: {0}")]
    InvalidManifest(&'static str),
    /// The key commitment (in the manifest or at the start of chunk 0) does
    /// not match the file secret. The chunk or manifest was forged or belongs
    /// to another file: do not trust the file, report it.
    #[error("key commitment does not match the file secret")]
    KeyCommitmentMismatch,
    /// A chunk was given out of order. Chunks must be opened in order: give
    /// chunk `expected` next.
    #[error("chunk {got} given, but chunk {expected} is expected next")]
    ChunkOutOfOrder {
        /// The index the opener expects next.
        expected: u64,
        /// The index that was given.
        got: u64,
    },
    /// A chunk index at or beyond the file's chunk count was given. The file
    /// has only `chunk_count` chunks; the caller or the storage is confused.
    #[error("chunk {index} given, but the file has only {chunk_count} chunks")]
    UnexpectedChunk {
        /// The index that was given.
        index: u64,
        /// The number of chunks of the file.
        chunk_count: u64,
    },
    /// The blob's BLAKE3 hash is not the chunk id listed in the manifest:
    /// storage returned a corrupted, swapped or foreign blob. Fetch it again;
    /// if it persists, the stored copy is damaged or was tampered with.
    #[error("chunk {index} does not match its id in the manifest")]
    ChunkIdMismatch {
        /// Index of the chunk.
        index: u64,
    },
    /// The blob does not have the length its position in the file requires.
    /// It was truncated, extended or belongs to another position or file:
    /// do not trust the file.
    #[error("chunk {index} has the wrong length")]
    MalformedChunk {
        /// Index of the chunk.
        index: u64,
    },
    /// The chunk failed AEAD authentication: it was modified, moved, or
    /// belongs to another file. Do not trust the file, report it.
    #[error("chunk {index} failed authentication")]
    AuthenticationFailed {
        /// Index of the chunk.
        index: u64,
    },
    /// The padding after the file's content is not all zeros, which an
    /// honest sealer never produces. Do not trust the file.
    #[error("chunk {index} has non-zero padding")]
    InvalidPadding {
        /// Index of the chunk.
        index: u64,
    },
    /// The opener was finished before every chunk was opened: the file was
    /// truncated. Open the missing chunks first; if they are gone, the file is
    /// incomplete and its content must not be used as a whole.
    #[error("file incomplete: {received} of {expected} chunks opened")]
    MissingChunks {
        /// The number of chunks of the file.
        expected: u64,
        /// The number of chunks opened.
        received: u64,
    },
    /// The AEAD refused to encrypt. This does not happen with valid chunk
    /// sizes; the sealer is unusable, start afresh with a new one.
    #[error("chunk encryption failed")]
    EncryptionFailed,
}

impl From<getrandom::Error> for FileError {
    fn from(e: getrandom::Error) -> Self {
        Self::Randomness(e)
    }
}

/// The random 32-byte secret of one file. Zeroized on drop; its `Debug`
/// output does not show it; compared in constant time.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct FileSecret([u8; 32]);

impl FileSecret {
    /// Draws a fresh secret from the platform's random number generator.
    pub fn generate() -> Result<Self, FileError> {
        let mut secret = Self([0u8; 32]);
        getrandom::fill(&mut secret.0)?;
        Ok(secret)
    }

    /// Wraps existing secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key commitment of this secret, as stored at the start of chunk 0.
    pub fn key_commitment(&self) -> KeyCommitment {
        KeyCommitment(blake3::derive_key(KEY_COMMITMENT_CONTEXT, &self.0))
    }

    /// The ChaCha20-Poly1305 key of every chunk.
    fn chunk_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(CHUNK_KEY_CONTEXT, &self.0))
    }

    /// A fresh keyed hasher for the resume check.
    fn resume_hasher(&self) -> blake3::Hasher {
        let key = Zeroizing::new(blake3::derive_key(RESUME_KEY_CONTEXT, &self.0));
        blake3::Hasher::new_keyed(&key)
    }
}

impl fmt::Debug for FileSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileSecret(..)")
    }
}

impl PartialEq for FileSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0[..].ct_eq(&other.0[..]).into()
    }
}

impl Eq for FileSecret {}

/// Writes bytes as lower-case hex.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// The random 16-byte identifier of a file, bound into every chunk.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileId(pub [u8; 16]);

impl FileId {
    /// Draws a fresh file id from the platform's random number generator.
    pub fn generate() -> Result<Self, FileError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id)?;
        Ok(Self(id))
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileId(")?;
        write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

/// The address of a stored chunk: the BLAKE3 hash of its whole blob
/// (ciphertext, never plaintext). Displayed as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// The id of a stored blob: `blake3(blob)`.
    pub fn of(blob: &[u8]) -> Self {
        Self(*blake3::hash(blob).as_bytes())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChunkId(")?;
        write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

/// The 32-byte key commitment of a file secret (not secret itself: it is
/// stored in clear at the start of chunk 0).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyCommitment(pub [u8; 32]);

impl fmt::Debug for KeyCommitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyCommitment(")?;
        write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

/// Everything needed to fetch, check and decrypt a file. It contains the
/// secret: keep it only inside an encrypted envelope. `Debug` does not show
/// the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileManifest {
    /// The file's random id, bound into every chunk.
    pub file_id: FileId,
    /// The file name as given by the uploader.
    pub name: String,
    /// The media type as given by the uploader.
    pub media_type: String,
    /// Length of the content in bytes.
    pub plaintext_size: u64,
    /// Length after Padmé padding: `padme(plaintext_size)`.
    pub padded_size: u64,
    /// Plaintext bytes per chunk: [`CHUNK_SIZE`].
    pub chunk_size: u32,
    /// The id of every chunk, in order; `chunk_count(padded_size)` of them.
    pub chunk_ids: Vec<ChunkId>,
    /// The file secret.
    pub secret: FileSecret,
    /// The key commitment derived from the secret.
    pub key_commitment: KeyCommitment,
}

impl FileManifest {
    /// The number of chunks of the file, from its padded size.
    pub fn chunk_count(&self) -> u64 {
        chunk_count(self.padded_size)
    }

    /// Checks that the sizes, the chunk size, the number of chunk ids and the
    /// key commitment agree with each other.
    pub fn validate(&self) -> Result<(), FileError> {
        if self.chunk_size != CHUNK_SIZE_U32 {
            return Err(FileError::InvalidManifest("unsupported chunk size"));
        }
        if padme(self.plaintext_size) != Some(self.padded_size) {
            return Err(FileError::InvalidManifest(
                "padded size is not the Padmé length",
            ));
        }
        if self.chunk_ids.len() as u64 != self.chunk_count() {
            return Err(FileError::InvalidManifest("wrong number of chunk ids"));
        }
        let expected = self.secret.key_commitment();
        if !bool::from(self.key_commitment.0[..].ct_eq(&expected.0[..])) {
            return Err(FileError::KeyCommitmentMismatch);
        }
        Ok(())
    }
}

/// A sealed chunk, ready to be stored under its id.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedChunk {
    /// Position of the chunk in the file, from 0.
    pub index: u64,
    /// `blake3(blob)`, the address to store the blob under.
    pub id: ChunkId,
    /// The bytes to store.
    pub blob: Vec<u8>,
}

impl fmt::Debug for SealedChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedChunk")
            .field("index", &self.index)
            .field("id", &self.id)
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

/// A snapshot of an upload, enough to resume it after an interruption
/// without reusing a nonce (see the module documentation, including the
/// write-ahead rule). It contains the file secret: store it as securely as
/// the manifest. `Debug` does not show the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadProgress {
    file_id: FileId,
    secret: FileSecret,
    name: String,
    media_type: String,
    plaintext_size: u64,
    padded_size: u64,
    chunk_size: u32,
    chunks_emitted: u64,
    chunk_ids: Vec<ChunkId>,
    source_hash: [u8; 32],
}

impl UploadProgress {
    /// The id of the file being uploaded.
    pub fn file_id(&self) -> FileId {
        self.file_id
    }

    /// The declared plaintext length.
    pub fn plaintext_size(&self) -> u64 {
        self.plaintext_size
    }

    /// The file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The total number of chunks of the file.
    pub fn chunk_count(&self) -> u64 {
        chunk_count(self.padded_size)
    }

    /// How many chunks (indexes `0..chunks_emitted`) were already emitted.
    pub fn chunks_emitted(&self) -> u64 {
        self.chunks_emitted
    }

    /// The ids of the chunks already emitted, in order.
    pub fn chunk_ids(&self) -> &[ChunkId] {
        &self.chunk_ids
    }

    /// The resume point: how many content bytes the emitted chunks cover.
    /// After [`FileSealer::resume`] the source is pushed again from byte 0,
    /// and it must be unchanged up to this offset.
    pub fn resume_offset(&self) -> u64 {
        covered(self.chunks_emitted, self.plaintext_size)
    }

    /// Checks the snapshot's internal consistency.
    fn validate(&self) -> Result<(), FileError> {
        if self.chunk_size != CHUNK_SIZE_U32 {
            return Err(FileError::InvalidProgress("unsupported chunk size"));
        }
        if padme(self.plaintext_size) != Some(self.padded_size) {
            return Err(FileError::InvalidProgress(
                "padded size is not the Padmé length",
            ));
        }
        if self.chunks_emitted > self.chunk_count() {
            return Err(FileError::InvalidProgress(
                "more chunks emitted than the file has",
            ));
        }
        if self.chunk_ids.len() as u64 != self.chunks_emitted {
            return Err(FileError::InvalidProgress(
                "chunk ids do not match the emitted count",
            ));
        }
        Ok(())
    }
}

/// Content bytes covered by the first `chunks` chunks of a file.
fn covered(chunks: u64, plaintext_size: u64) -> u64 {
    chunks.saturating_mul(CHUNK_SIZE_U64).min(plaintext_size)
}

/// Converts a length known to be at most [`CHUNK_SIZE`] to `usize`.
fn small(len: u64) -> usize {
    debug_assert!(len <= CHUNK_SIZE_U64);
    // Never truncates: callers only pass values up to CHUNK_SIZE (2^20).
    len.min(CHUNK_SIZE_U64) as usize
}

/// Bytes before the ciphertext in the blob of chunk `index`.
fn header_len(index: u64) -> usize {
    if index == 0 { KEY_COMMITMENT_SIZE } else { 0 }
}

/// Geometry of a file: where its chunks start and how much they hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    plaintext_size: u64,
    padded_size: u64,
    chunk_count: u64,
}

impl Layout {
    fn new(plaintext_size: u64) -> Result<Self, FileError> {
        let padded_size = padme(plaintext_size).ok_or(FileError::TooLarge(plaintext_size))?;
        Ok(Self {
            plaintext_size,
            padded_size,
            chunk_count: chunk_count(padded_size),
        })
    }

    /// Offset of chunk `index` in the padded plaintext.
    fn start(&self, index: u64) -> u64 {
        index.saturating_mul(CHUNK_SIZE_U64)
    }

    /// Plaintext length of chunk `index` (content and padding).
    fn chunk_len(&self, index: u64) -> usize {
        small(
            self.padded_size
                .saturating_sub(self.start(index))
                .min(CHUNK_SIZE_U64),
        )
    }

    /// Content length of chunk `index` (without padding).
    fn content_len(&self, index: u64) -> usize {
        small(
            self.plaintext_size
                .saturating_sub(self.start(index))
                .min(CHUNK_SIZE_U64),
        )
    }

    /// Length of the stored blob of chunk `index`.
    fn blob_len(&self, index: u64) -> usize {
        header_len(index) + self.chunk_len(index) + TAG_SIZE
    }
}

/// The STREAM nonce of chunk `index`.
fn chunk_nonce(index: u64, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::from(nonce)
}

/// The associated data of every chunk of a file.
fn chunk_aad(file_id: &FileId, chunk_count: u64) -> [u8; AAD_LEN] {
    let mut aad = [0u8; AAD_LEN];
    aad[..20].copy_from_slice(CHUNK_AAD_LABEL);
    aad[20..36].copy_from_slice(&file_id.0);
    aad[36..40].copy_from_slice(&CHUNK_SIZE_U32.to_be_bytes());
    aad[40..48].copy_from_slice(&chunk_count.to_be_bytes());
    aad
}

/// Streaming encryption of one file.
///
/// Create it with the plaintext length, [`push`](Self::push) the plaintext in
/// pieces of any size, store the chunks each push returns, then
/// [`finish`](Self::finish) to get the last chunks and the manifest. The
/// sealer holds at most one chunk of plaintext; to bound memory, push at most
/// [`CHUNK_SIZE`] bytes at a time and take the trailing chunks one by one
/// with [`next_trailing_chunk`](Self::next_trailing_chunk) (large files can
/// end with several chunks of padding).
pub struct FileSealer {
    file_id: FileId,
    secret: FileSecret,
    chunk_key: Zeroizing<[u8; 32]>,
    key_commitment: KeyCommitment,
    name: String,
    media_type: String,
    layout: Layout,
    /// Content bytes pushed so far.
    consumed: u64,
    /// The number of chunks emitted.
    next_index: u64,
    /// Index of the chunk being filled (`next_index` between calls).
    filling: u64,
    /// Header and plaintext of chunk `filling`.
    buffer: Zeroizing<Vec<u8>>,
    /// Ids of the chunks emitted so far.
    chunk_ids: Vec<ChunkId>,
    /// Keyed hash of the content covered by the emitted chunks (while a
    /// resume check is pending: of the content pushed so far).
    hasher: blake3::Hasher,
    /// On a resumed upload, the check still to be made at the resume point.
    pending_check: Option<ResumeCheck>,
    /// Set after an unrecoverable error; every later call fails with it.
    poisoned: Option<FileError>,
}

/// The comparison a resumed sealer makes when the source reaches the resume
/// point.
struct ResumeCheck {
    offset: u64,
    expected: [u8; 32],
}

impl fmt::Debug for FileSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSealer")
            .field("file_id", &self.file_id)
            .field("plaintext_size", &self.layout.plaintext_size)
            .field("padded_size", &self.layout.padded_size)
            .field("chunk_count", &self.layout.chunk_count)
            .field("consumed", &self.consumed)
            .field("chunks_emitted", &self.next_index)
            .field("resume_pending", &self.pending_check.is_some())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl FileSealer {
    /// Starts encrypting a file of exactly `plaintext_len` bytes under a fresh
    /// random secret and file id.
    pub fn new(
        name: impl Into<String>,
        media_type: impl Into<String>,
        plaintext_len: u64,
    ) -> Result<Self, FileError> {
        let layout = Layout::new(plaintext_len)?;
        let secret = FileSecret::generate()?;
        let file_id = FileId::generate()?;
        Ok(Self::build(
            file_id,
            secret,
            name.into(),
            media_type.into(),
            layout,
            0,
            Vec::new(),
        ))
    }

    /// Rebuilds the sealer of an interrupted upload. Push the source again
    /// from byte 0: chunks before the resume point are not emitted again, and
    /// the push that reaches the resume point fails with
    /// [`FileError::SourceChanged`] if the source is not the same as before.
    pub fn resume(progress: UploadProgress) -> Result<Self, FileError> {
        progress.validate()?;
        let layout = Layout::new(progress.plaintext_size)?;
        let offset = progress.resume_offset();
        let mut sealer = Self::build(
            progress.file_id,
            progress.secret.clone(),
            progress.name.clone(),
            progress.media_type.clone(),
            layout,
            progress.chunks_emitted,
            progress.chunk_ids.clone(),
        );
        sealer.pending_check = Some(ResumeCheck {
            offset,
            expected: progress.source_hash,
        });
        if offset == 0 {
            sealer.check_resume_point()?;
        }
        Ok(sealer)
    }

    fn build(
        file_id: FileId,
        secret: FileSecret,
        name: String,
        media_type: String,
        layout: Layout,
        next_index: u64,
        chunk_ids: Vec<ChunkId>,
    ) -> Self {
        let mut sealer = Self {
            file_id,
            chunk_key: secret.chunk_key(),
            key_commitment: secret.key_commitment(),
            hasher: secret.resume_hasher(),
            secret,
            name,
            media_type,
            layout,
            consumed: 0,
            next_index,
            filling: next_index,
            buffer: Zeroizing::new(Vec::new()),
            chunk_ids,
            pending_check: None,
            poisoned: None,
        };
        sealer.start_chunk();
        sealer
    }

    /// The id of the file being encrypted.
    pub fn file_id(&self) -> FileId {
        self.file_id
    }

    /// The total number of chunks the file will have.
    pub fn chunk_count(&self) -> u64 {
        self.layout.chunk_count
    }

    /// The number of plaintext bytes pushed so far.
    pub fn bytes_pushed(&self) -> u64 {
        self.consumed
    }

    /// Encrypts the next piece of plaintext and returns every chunk that
    /// became complete (possibly none). A push that would exceed the declared
    /// length fails with [`FileError::TooMuchData`] and consumes nothing.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<SealedChunk>, FileError> {
        let filled = self.fill(data)?;
        let mut sealed = Vec::with_capacity(filled.len());
        for chunk in filled {
            self.hasher.update(self.content(&chunk));
            sealed.push(self.seal_filled(chunk)?);
        }
        Ok(sealed)
    }

    /// Like [`push`](Self::push), but the chunks this piece completes are
    /// encrypted two at a time on two threads (STREAM chunks are
    /// independent; the resume hash runs first, in order). Push pieces of
    /// `2 * CHUNK_SIZE` bytes to keep both busy; memory stays at about two
    /// chunks.
    /// The chunks are exactly those [`push`](Self::push) would return.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn push_parallel(&mut self, data: &[u8]) -> Result<Vec<SealedChunk>, FileError> {
        let filled = self.fill(data)?;
        let mut sealed = Vec::with_capacity(filled.len());
        let mut filled = filled.into_iter();
        while let Some(first) = filled.next() {
            match filled.next() {
                Some(second) => {
                    let [a, b] = self.seal_pair(first, second)?;
                    sealed.push(a);
                    sealed.push(b);
                }
                None => {
                    self.hasher.update(self.content(&first));
                    sealed.push(self.seal_filled(first)?);
                }
            }
        }
        Ok(sealed)
    }

    /// Copies `data` into the chunk being filled and returns the chunks it
    /// completed, not yet sealed nor added to the resume hash (which covers
    /// only the content of emitted chunks: the caller adds each, in order).
    fn fill(&mut self, data: &[u8]) -> Result<Vec<Filled>, FileError> {
        self.ensure_usable()?;
        let declared = self.layout.plaintext_size;
        let received = self.consumed.saturating_add(data.len() as u64);
        if received > declared {
            return Err(FileError::TooMuchData { declared, received });
        }
        let mut data = data;
        if let Some(offset) = self.pending_check.as_ref().map(|check| check.offset) {
            let before = usize::try_from(offset - self.consumed).unwrap_or(usize::MAX);
            let (skipped, rest) = data.split_at(data.len().min(before));
            self.hasher.update(skipped);
            self.consumed += skipped.len() as u64;
            data = rest;
            if self.consumed == offset {
                self.check_resume_point()?;
            }
        }
        let mut filled = Vec::new();
        while !data.is_empty() && self.filling < self.layout.chunk_count {
            let index = self.filling;
            let have = self.buffer.len() - header_len(index);
            let room = self.layout.content_len(index) - have;
            let take = room.min(data.len());
            if take == 0 {
                break;
            }
            let (piece, rest) = data.split_at(take);
            self.buffer.extend_from_slice(piece);
            self.consumed += take as u64;
            data = rest;
            if have + take == self.layout.chunk_len(index) {
                filled.push(self.take_buffer());
            }
        }
        debug_assert!(
            data.is_empty(),
            "the length check leaves room for every pushed byte"
        );
        Ok(filled)
    }

    /// Once the whole plaintext was pushed, seals the next chunk still to be
    /// emitted (the one holding the end of the content, then any chunks of
    /// pure padding), one at a time; `None` when every chunk was emitted.
    /// Optional: [`finish`](Self::finish) emits whatever is left.
    pub fn next_trailing_chunk(&mut self) -> Result<Option<SealedChunk>, FileError> {
        self.ensure_usable()?;
        self.ensure_all_pushed()?;
        if self.filling >= self.layout.chunk_count {
            return Ok(None);
        }
        let full = header_len(self.filling) + self.layout.chunk_len(self.filling);
        self.buffer.resize(full, 0);
        let chunk = self.take_buffer();
        self.hasher.update(self.content(&chunk));
        self.seal_filled(chunk).map(Some)
    }

    /// A snapshot from which [`resume`](Self::resume) can continue this
    /// upload. Take and persist one after each push that emitted chunks,
    /// before uploading them (see the module documentation).
    pub fn progress(&self) -> UploadProgress {
        let source_hash = match &self.pending_check {
            Some(check) => check.expected,
            None => *self.hasher.finalize().as_bytes(),
        };
        UploadProgress {
            file_id: self.file_id,
            secret: self.secret.clone(),
            name: self.name.clone(),
            media_type: self.media_type.clone(),
            plaintext_size: self.layout.plaintext_size,
            padded_size: self.layout.padded_size,
            chunk_size: CHUNK_SIZE_U32,
            chunks_emitted: self.next_index,
            chunk_ids: self.chunk_ids.clone(),
            source_hash,
        }
    }

    /// Checks that exactly the declared length was pushed, seals the chunks
    /// not yet emitted, and returns them with the file's manifest.
    pub fn finish(mut self) -> Result<(Vec<SealedChunk>, FileManifest), FileError> {
        self.ensure_usable()?;
        self.ensure_all_pushed()?;
        let mut sealed = Vec::new();
        while let Some(chunk) = self.next_trailing_chunk()? {
            sealed.push(chunk);
        }
        let manifest = FileManifest {
            file_id: self.file_id,
            name: self.name,
            media_type: self.media_type,
            plaintext_size: self.layout.plaintext_size,
            padded_size: self.layout.padded_size,
            chunk_size: CHUNK_SIZE_U32,
            chunk_ids: self.chunk_ids,
            secret: self.secret,
            key_commitment: self.key_commitment,
        };
        Ok((sealed, manifest))
    }

    fn ensure_usable(&self) -> Result<(), FileError> {
        match &self.poisoned {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn ensure_all_pushed(&self) -> Result<(), FileError> {
        if self.consumed == self.layout.plaintext_size {
            Ok(())
        } else {
            Err(FileError::NotEnoughData {
                declared: self.layout.plaintext_size,
                received: self.consumed,
            })
        }
    }

    /// Compares the hash of the source pushed again with the recorded one.
    fn check_resume_point(&mut self) -> Result<(), FileError> {
        if let Some(check) = self.pending_check.take() {
            let actual = self.hasher.finalize();
            if !bool::from(actual.as_bytes()[..].ct_eq(&check.expected[..])) {
                self.poisoned = Some(FileError::SourceChanged);
                return Err(FileError::SourceChanged);
            }
        }
        Ok(())
    }

    /// Prepares the buffer for chunk `filling`, with room for all of it.
    fn start_chunk(&mut self) {
        let index = self.filling;
        if index >= self.layout.chunk_count {
            self.buffer = Zeroizing::new(Vec::new());
            return;
        }
        let mut buffer = Vec::with_capacity(self.layout.blob_len(index));
        if index == 0 {
            buffer.extend_from_slice(&self.key_commitment.0);
        }
        self.buffer = Zeroizing::new(buffer);
    }

    /// Takes the full buffer as chunk `filling` and starts the next one.
    fn take_buffer(&mut self) -> Filled {
        let index = self.filling;
        debug_assert_eq!(
            self.buffer.len(),
            header_len(index) + self.layout.chunk_len(index)
        );
        let buffer = core::mem::take(&mut self.buffer);
        self.filling += 1;
        self.start_chunk();
        Filled { index, buffer }
    }

    /// The content bytes (no header, no padding) of a filled chunk.
    fn content<'a>(&self, chunk: &'a Filled) -> &'a [u8] {
        let header = header_len(chunk.index);
        &chunk.buffer[header..header + self.layout.content_len(chunk.index)]
    }

    /// Encrypts a filled chunk in place and records its id.
    fn seal_filled(&mut self, chunk: Filled) -> Result<SealedChunk, FileError> {
        let index = chunk.index;
        match self.cipher().seal(chunk) {
            Some((blob, id)) => Ok(self.record(index, blob, id)),
            None => Err(self.poison(FileError::EncryptionFailed)),
        }
    }

    /// Seals two consecutive filled chunks on two threads. The resume hash
    /// must take the contents in order before either is encrypted in
    /// place: this thread hashes the first, hands it to another thread to
    /// encrypt and address, then hashes the second and seals it.
    #[cfg(not(target_arch = "wasm32"))]
    fn seal_pair(&mut self, a: Filled, b: Filled) -> Result<[SealedChunk; 2], FileError> {
        debug_assert_eq!(a.index + 1, b.index);
        let (index_a, index_b) = (a.index, b.index);
        let mut hasher = core::mem::replace(&mut self.hasher, blake3::Hasher::new());
        hasher.update(self.content(&a));
        let cipher = self.cipher();
        let (sealed_a, sealed_b) = on_two_threads(
            move || cipher.seal(a),
            || {
                hasher.update(self.content(&b));
                cipher.seal(b)
            },
        );
        self.hasher = hasher;
        let (Some((blob_a, id_a)), Some((blob_b, id_b))) = (sealed_a, sealed_b) else {
            return Err(self.poison(FileError::EncryptionFailed));
        };
        Ok([
            self.record(index_a, blob_a, id_a),
            self.record(index_b, blob_b, id_b),
        ])
    }

    /// What encrypting a chunk of this file needs, shareable by threads.
    fn cipher(&self) -> ChunkCipher<'_> {
        ChunkCipher {
            key: &self.chunk_key,
            aad: chunk_aad(&self.file_id, self.layout.chunk_count),
            chunk_count: self.layout.chunk_count,
        }
    }

    /// Counts a sealed blob emitted.
    fn record(&mut self, index: u64, blob: Vec<u8>, id: ChunkId) -> SealedChunk {
        debug_assert_eq!(index, self.next_index);
        self.chunk_ids.push(id);
        self.next_index += 1;
        SealedChunk { index, id, blob }
    }

    fn poison(&mut self, e: FileError) -> FileError {
        self.poisoned = Some(e.clone());
        e
    }
}

/// Runs `other` on another thread while `here` runs on this one; both on
/// this one, `other` first, if the system cannot start a thread.
#[cfg(not(target_arch = "wasm32"))]
fn on_two_threads<A: Send, B>(
    other: impl FnOnce() -> A + Send,
    here: impl FnOnce() -> B,
) -> (A, B) {
    let other = std::sync::Mutex::new(Some(other));
    let take = || other.lock().unwrap_or_else(|p| p.into_inner()).take();
    std::thread::scope(|scope| {
        match std::thread::Builder::new().spawn_scoped(scope, || take().map(|f| f())) {
            Ok(thread) => {
                let b = here();
                let a = thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (a.expect("the other thread ran it"), b)
            }
            Err(_) => {
                let a = take().map(|f| f()).expect("no thread took it");
                (a, here())
            }
        }
    })
}

/// A chunk whose plaintext is complete: the blob's header (chunk 0's key
/// commitment) and the padded plaintext, not yet encrypted.
struct Filled {
    index: u64,
    buffer: Zeroizing<Vec<u8>>,
}

/// The chunk key and the associated data of one file.
#[derive(Clone, Copy)]
struct ChunkCipher<'a> {
    key: &'a [u8; 32],
    aad: [u8; AAD_LEN],
    chunk_count: u64,
}

impl ChunkCipher<'_> {
    /// Encrypts a filled chunk in place: its blob and the blob's id;
    /// `None` only if the AEAD refuses the length, which a chunk's length
    /// never reaches.
    fn seal(&self, mut chunk: Filled) -> Option<(Vec<u8>, ChunkId)> {
        let header = header_len(chunk.index);
        let last = chunk.index + 1 == self.chunk_count;
        let tag = ChaCha20Poly1305::new(<&Key>::from(self.key))
            .encrypt_inout_detached(
                &chunk_nonce(chunk.index, last),
                &self.aad,
                (&mut chunk.buffer[header..]).into(),
            )
            .ok()?;
        chunk.buffer.extend_from_slice(tag.as_slice());
        let blob = core::mem::take(&mut *chunk.buffer);
        let id = ChunkId::of(&blob);
        Some((blob, id))
    }
}

/// Streaming decryption and verification of one file, chunk by chunk and in
/// order (see the module documentation for the checks).
#[derive(Clone)]
pub struct FileOpener {
    file_id: FileId,
    chunk_key: Zeroizing<[u8; 32]>,
    key_commitment: KeyCommitment,
    layout: Layout,
    chunk_ids: Vec<ChunkId>,
    next_index: u64,
}

impl fmt::Debug for FileOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileOpener")
            .field("file_id", &self.file_id)
            .field("plaintext_size", &self.layout.plaintext_size)
            .field("chunk_count", &self.layout.chunk_count)
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl FileOpener {
    /// Prepares to open the file described by `manifest`, after checking the
    /// manifest's consistency and key commitment.
    pub fn new(manifest: &FileManifest) -> Result<Self, FileError> {
        manifest.validate()?;
        Ok(Self {
            file_id: manifest.file_id,
            chunk_key: manifest.secret.chunk_key(),
            key_commitment: manifest.key_commitment,
            layout: Layout::new(manifest.plaintext_size)?,
            chunk_ids: manifest.chunk_ids.clone(),
            next_index: 0,
        })
    }

    /// The index of the chunk to open next.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The number of chunks of the file.
    pub fn chunk_count(&self) -> u64 {
        self.layout.chunk_count
    }

    /// The id of the chunk to fetch next, or `None` once all were opened.
    pub fn next_chunk_id(&self) -> Option<ChunkId> {
        usize::try_from(self.next_index)
            .ok()
            .and_then(|i| self.chunk_ids.get(i))
            .copied()
    }

    /// Verifies and decrypts chunk `index` from its stored `blob`, and returns
    /// its content (padding removed; empty for a chunk of pure padding).
    /// Chunks must come in order. A failure leaves the opener where it was,
    /// so the same chunk can be tried again, e.g. after fetching it again.
    pub fn open_chunk(&mut self, index: u64, blob: &[u8]) -> Result<Vec<u8>, FileError> {
        self.expect(index)?;
        let plaintext = self.open_at(index, blob)?;
        self.next_index += 1;
        Ok(plaintext)
    }

    /// Opens the next two chunks, `index` and `index + 1`, on two threads
    /// (each is checked exactly as [`open_chunk`](Self::open_chunk) checks
    /// it). Both or neither: if either fails, the opener stays where it was
    /// and the error of the first that failed is returned.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open_pair(
        &mut self,
        index: u64,
        first: &[u8],
        second: &[u8],
    ) -> Result<[Vec<u8>; 2], FileError> {
        self.expect(index)?;
        let next = index + 1;
        if next >= self.layout.chunk_count {
            return Err(FileError::UnexpectedChunk {
                index: next,
                chunk_count: self.layout.chunk_count,
            });
        }
        let this = &*self;
        let (b, a) = on_two_threads(
            move || this.open_at(next, second),
            || this.open_at(index, first),
        );
        let pair = [a?, b?];
        self.next_index += 2;
        Ok(pair)
    }

    /// Checks that chunk `index` is the one expected next.
    fn expect(&self, index: u64) -> Result<(), FileError> {
        let chunk_count = self.layout.chunk_count;
        if index >= chunk_count {
            return Err(FileError::UnexpectedChunk { index, chunk_count });
        }
        if index != self.next_index {
            return Err(FileError::ChunkOutOfOrder {
                expected: self.next_index,
                got: index,
            });
        }
        Ok(())
    }

    /// Verifies and decrypts chunk `index`, wherever the opener is.
    fn open_at(&self, index: u64, blob: &[u8]) -> Result<Vec<u8>, FileError> {
        let chunk_count = self.layout.chunk_count;
        let expected_id = usize::try_from(index)
            .ok()
            .and_then(|i| self.chunk_ids.get(i))
            .ok_or(FileError::UnexpectedChunk { index, chunk_count })?;
        if !bool::from(ChunkId::of(blob).0[..].ct_eq(&expected_id.0[..])) {
            return Err(FileError::ChunkIdMismatch { index });
        }
        if blob.len() != self.layout.blob_len(index) {
            return Err(FileError::MalformedChunk { index });
        }
        let header = header_len(index);
        if index == 0 && !bool::from(blob[..header].ct_eq(&self.key_commitment.0[..])) {
            return Err(FileError::KeyCommitmentMismatch);
        }
        let (ciphertext, tag) = blob[header..].split_at(self.layout.chunk_len(index));
        let tag = Tag::try_from(tag).map_err(|_| FileError::MalformedChunk { index })?;
        let mut plaintext = ciphertext.to_vec();
        let last = index + 1 == chunk_count;
        let cipher = ChaCha20Poly1305::new(<&Key>::from(&*self.chunk_key));
        cipher
            .decrypt_inout_detached(
                &chunk_nonce(index, last),
                &chunk_aad(&self.file_id, chunk_count),
                plaintext.as_mut_slice().into(),
                &tag,
            )
            .map_err(|_| FileError::AuthenticationFailed { index })?;
        let content = self.layout.content_len(index);
        if plaintext[content..].iter().any(|&b| b != 0) {
            return Err(FileError::InvalidPadding { index });
        }
        plaintext.truncate(content);
        Ok(plaintext)
    }

    /// Whether every chunk was opened.
    pub fn is_complete(&self) -> bool {
        self.next_index == self.layout.chunk_count
    }

    /// Checks that every chunk was opened; only then is the content whole.
    pub fn finish(self) -> Result<(), FileError> {
        if self.is_complete() {
            Ok(())
        } else {
            Err(FileError::MissingChunks {
                expected: self.layout.chunk_count,
                received: self.next_index,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CS: usize = CHUNK_SIZE;

    /// Deterministic pseudo-random bytes.
    fn source(seed: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof()
            .fill(&mut out);
        out
    }

    /// Pushes `data` in pieces cycling through `pieces` (each at least 1).
    fn push_in_pieces(
        sealer: &mut FileSealer,
        data: &[u8],
        pieces: &[usize],
    ) -> Result<Vec<SealedChunk>, FileError> {
        let mut out = Vec::new();
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = pieces[i % pieces.len()].clamp(1, rest.len());
            let (piece, tail) = rest.split_at(n);
            out.extend(sealer.push(piece)?);
            rest = tail;
            i += 1;
        }
        Ok(out)
    }

    fn seal(data: &[u8], pieces: &[usize]) -> (Vec<SealedChunk>, FileManifest) {
        let mut sealer =
            FileSealer::new("f.bin", "application/octet-stream", data.len() as u64).unwrap();
        let mut chunks = push_in_pieces(&mut sealer, data, pieces).unwrap();
        let (tail, manifest) = sealer.finish().unwrap();
        chunks.extend(tail);
        (chunks, manifest)
    }

    fn blobs(chunks: &[SealedChunk]) -> Vec<Vec<u8>> {
        chunks.iter().map(|c| c.blob.clone()).collect()
    }

    fn open(manifest: &FileManifest, blobs: &[Vec<u8>]) -> Result<Vec<u8>, FileError> {
        let mut opener = FileOpener::new(manifest)?;
        let mut out = Vec::new();
        for (i, blob) in blobs.iter().enumerate() {
            out.extend(opener.open_chunk(i as u64, blob)?);
        }
        opener.finish()?;
        Ok(out)
    }

    /// An opener of `manifest` that has already opened `blobs[..upto]`.
    fn opener_at(manifest: &FileManifest, blobs: &[Vec<u8>], upto: usize) -> FileOpener {
        let mut opener = FileOpener::new(manifest).unwrap();
        for (i, blob) in blobs[..upto].iter().enumerate() {
            opener.open_chunk(i as u64, blob).unwrap();
        }
        opener
    }

    fn check_round_trip(data: &[u8], pieces: &[usize]) {
        let (chunks, manifest) = seal(data, pieces);
        let len = data.len() as u64;
        let padded = padme(len).unwrap();
        assert_eq!(manifest.plaintext_size, len);
        assert_eq!(manifest.padded_size, padded);
        assert_eq!(manifest.chunk_size as usize, CHUNK_SIZE);
        assert_eq!(manifest.name, "f.bin");
        assert_eq!(manifest.media_type, "application/octet-stream");
        assert_eq!(manifest.key_commitment, manifest.secret.key_commitment());
        assert_eq!(chunks.len() as u64, chunk_count(padded));
        assert_eq!(manifest.chunk_ids.len(), chunks.len());
        let mut total = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.index, i as u64);
            assert_eq!(chunk.id, ChunkId::of(&chunk.blob));
            assert_eq!(manifest.chunk_ids[i], chunk.id);
            let header = if i == 0 { KEY_COMMITMENT_SIZE } else { 0 };
            assert!(chunk.blob.len() - header - TAG_SIZE <= CHUNK_SIZE);
            total += chunk.blob.len() - header - TAG_SIZE;
        }
        assert_eq!(total as u64, padded);
        assert_eq!(
            &chunks[0].blob[..KEY_COMMITMENT_SIZE],
            &manifest.key_commitment.0[..]
        );
        assert_eq!(open(&manifest, &blobs(&chunks)).unwrap(), data);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn round_trip_edge_sizes(
            len in prop::sample::select(vec![0, 1, CS - 1, CS, CS + 1, 3 * CS + 17]),
            seed in any::<u64>(),
            pieces in prop::collection::vec(1usize..=CS + CS / 2, 1..6),
        ) {
            check_round_trip(&source(seed, len), &pieces);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn round_trip_small_sizes(
            len in 0usize..20_000,
            seed in any::<u64>(),
            pieces in prop::collection::vec(1usize..3_000, 1..6),
        ) {
            check_round_trip(&source(seed, len), &pieces);
        }

        #[test]
        fn padme_bounds(len in 0u64..(1 << 62)) {
            let padded = padme(len).unwrap();
            prop_assert!(padded >= len);
            prop_assert!(u128::from(padded - len) * 100 <= u128::from(len) * 12);
            prop_assert!(padme(len + 1).unwrap() >= padded);
            prop_assert_eq!(padme(padded), Some(padded));
        }
    }

    #[test]
    fn padme_known_points() {
        let points: &[(u64, u64)] = &[
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 3),
            (7, 7),
            (8, 8),
            (9, 10),
            (10, 10),
            (11, 12),
            (15, 16),
            (16, 16),
            (17, 18),
            (33, 36),
            (100, 104),
            (129, 144),
            (1000, 1024),
            (1_000_000, 1_015_808),
            (CS as u64 - 1, CS as u64),
            (CS as u64, CS as u64),
            (CS as u64 + 1, CS as u64 + 32_768),
            (3 * CS as u64 + 17, 3_211_264),
            (1 << 63, 1 << 63),
        ];
        for &(len, padded) in points {
            assert_eq!(padme(len), Some(padded), "padme({len})");
        }
        assert_eq!(padme(u64::MAX), None);
        assert_eq!(padme((1 << 63) + 1), Some((1 << 63) + (1 << 57)));
    }

    #[test]
    fn padme_monotonic_and_bounded_exhaustively() {
        let mut previous = 0;
        let mut worst = 0.0f64;
        for len in 0..200_000u64 {
            let padded = padme(len).unwrap();
            assert!(padded >= previous && padded >= len, "padme({len})");
            if len > 0 {
                worst = worst.max((padded - len) as f64 / len as f64);
            }
            previous = padded;
        }
        assert!(worst <= 0.12, "worst overhead {worst}");
        assert!(worst > 0.11, "the bound is reached near 129 bytes: {worst}");
    }

    #[test]
    fn chunk_counts() {
        assert_eq!(chunk_count(0), 1);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CS as u64), 1);
        assert_eq!(chunk_count(CS as u64 + 1), 2);
        assert_eq!(chunk_count(3_211_264), 4);
    }

    #[test]
    fn layout_matches_the_documented_bytes() {
        let data = source(7, CS + 10);
        let (chunks, manifest) = seal(&data, &[CS + 10]);
        assert_eq!(chunks.len(), 2);
        let key = blake3::derive_key("amicus file chunk key v1", manifest.secret.as_bytes());
        let commitment =
            blake3::derive_key("amicus file key commitment v1", manifest.secret.as_bytes());
        assert_eq!(manifest.key_commitment.0, commitment);
        let mut aad = Vec::new();
        aad.extend_from_slice(b"amicus file chunk v1");
        aad.extend_from_slice(&manifest.file_id.0);
        aad.extend_from_slice(&[0x00, 0x10, 0x00, 0x00]);
        aad.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]);
        let cipher = ChaCha20Poly1305::new(&Key::from(key));
        let padded = padme(data.len() as u64).unwrap() as usize;
        let mut expected = data.clone();
        expected.resize(padded, 0);

        assert_eq!(&chunks[0].blob[..32], &commitment[..]);
        let mut chunk0 = chunks[0].blob[32..].to_vec();
        let nonce0 = Nonce::from([0u8; 12]);
        cipher.decrypt_in_place(&nonce0, &aad, &mut chunk0).unwrap();
        assert_eq!(chunk0, expected[..CS]);

        let mut chunk1 = chunks[1].blob.clone();
        let nonce1 = Nonce::from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        cipher.decrypt_in_place(&nonce1, &aad, &mut chunk1).unwrap();
        assert_eq!(chunk1, expected[CS..]);
        assert_eq!(*blake3::hash(&chunks[1].blob).as_bytes(), chunks[1].id.0);
    }

    #[test]
    fn every_sampled_byte_flip_is_detected() {
        let data = source(1, 2 * CS + 1000);
        let (chunks, manifest) = seal(&data, &[300_000]);
        let blobs = blobs(&chunks);
        assert_eq!(blobs.len(), 3);
        for (i, blob) in blobs.iter().enumerate() {
            let header = header_len(i as u64);
            let len = blob.len();
            let mut positions = vec![
                header,
                header + 1,
                (header + len) / 2,
                len - 17,
                len - 16,
                len - 1,
            ];
            if i == 0 {
                positions.extend([0, 1, 15, 31]);
            }
            let before = opener_at(&manifest, &blobs, i);
            for pos in positions {
                let mut tampered = blob.clone();
                tampered[pos] ^= 0x01;
                let index = i as u64;

                let mut opener = before.clone();
                assert_eq!(
                    opener.open_chunk(index, &tampered),
                    Err(FileError::ChunkIdMismatch { index }),
                    "chunk {i} byte {pos}"
                );
                assert_eq!(opener.next_index(), index);

                // Even with a manifest listing the tampered blob, it fails.
                let mut forged = manifest.clone();
                forged.chunk_ids[i] = ChunkId::of(&tampered);
                let mut opener = opener_at(&forged, &blobs, i);
                let expected = if i == 0 && pos < KEY_COMMITMENT_SIZE {
                    FileError::KeyCommitmentMismatch
                } else {
                    FileError::AuthenticationFailed { index }
                };
                assert_eq!(
                    opener.open_chunk(index, &tampered),
                    Err(expected),
                    "chunk {i} byte {pos}"
                );
            }
        }
        assert_eq!(open(&manifest, &blobs).unwrap(), data);
    }

    #[test]
    fn swapped_chunks_are_detected() {
        let data = source(2, 3 * CS + 17);
        let (chunks, manifest) = seal(&data, &[CS]);
        let blobs = blobs(&chunks);
        assert_eq!(blobs.len(), 4);

        let mut opener = FileOpener::new(&manifest).unwrap();
        assert_eq!(
            opener.open_chunk(0, &blobs[1]),
            Err(FileError::ChunkIdMismatch { index: 0 })
        );
        opener.open_chunk(0, &blobs[0]).unwrap();
        assert_eq!(
            opener.open_chunk(1, &blobs[2]),
            Err(FileError::ChunkIdMismatch { index: 1 })
        );

        // A manifest listing chunks 1 and 2 swapped: the nonce still differs.
        let mut swapped = manifest.clone();
        swapped.chunk_ids.swap(1, 2);
        let mut opener = opener_at(&swapped, &blobs, 1);
        assert_eq!(
            opener.open_chunk(1, &blobs[2]),
            Err(FileError::AuthenticationFailed { index: 1 })
        );

        // A manifest listing chunks 0 and 1 swapped.
        let mut swapped = manifest.clone();
        swapped.chunk_ids.swap(0, 1);
        let mut opener = FileOpener::new(&swapped).unwrap();
        assert_eq!(
            opener.open_chunk(0, &blobs[1]),
            Err(FileError::MalformedChunk { index: 0 })
        );
    }

    #[test]
    fn out_of_order_and_extra_chunks_are_refused() {
        let data = source(3, CS + 1);
        let (chunks, manifest) = seal(&data, &[1 << 16]);
        let blobs = blobs(&chunks);
        let mut opener = FileOpener::new(&manifest).unwrap();
        assert_eq!(
            opener.open_chunk(1, &blobs[1]),
            Err(FileError::ChunkOutOfOrder {
                expected: 0,
                got: 1
            })
        );
        assert_eq!(opener.next_chunk_id(), Some(manifest.chunk_ids[0]));
        assert_eq!(opener.open_chunk(0, &blobs[0]).unwrap(), data[..CS]);
        assert_eq!(
            opener.open_chunk(0, &blobs[0]),
            Err(FileError::ChunkOutOfOrder {
                expected: 1,
                got: 0
            })
        );
        assert_eq!(opener.open_chunk(1, &blobs[1]).unwrap(), data[CS..]);
        assert_eq!(opener.next_chunk_id(), None);
        assert_eq!(
            opener.open_chunk(2, &blobs[1]),
            Err(FileError::UnexpectedChunk {
                index: 2,
                chunk_count: 2
            })
        );
        assert!(opener.is_complete());
        opener.finish().unwrap();
    }

    #[test]
    fn truncation_is_detected() {
        let data = source(4, 3 * CS + 17);
        let (chunks, manifest) = seal(&data, &[CS / 3]);
        let blobs = blobs(&chunks);

        let opener = opener_at(&manifest, &blobs, 3);
        assert_eq!(
            opener.finish(),
            Err(FileError::MissingChunks {
                expected: 4,
                received: 3
            })
        );

        let mut short = manifest.clone();
        short.chunk_ids.pop();
        assert!(matches!(
            FileOpener::new(&short),
            Err(FileError::InvalidManifest(_))
        ));

        // A manifest claiming a three-chunk file: the chunk count in the AAD
        // (and the last-chunk flag) no longer match.
        let mut shorter = manifest.clone();
        shorter.plaintext_size = 3 * CS as u64;
        shorter.padded_size = 3 * CS as u64;
        shorter.chunk_ids.pop();
        let mut opener = FileOpener::new(&shorter).unwrap();
        assert_eq!(
            opener.open_chunk(0, &blobs[0]),
            Err(FileError::AuthenticationFailed { index: 0 })
        );

        // A manifest claiming a shorter content within the same chunks: the
        // chunk still opens but the former content is not zero padding.
        let mut padded = manifest.clone();
        padded.plaintext_size = 3 * CS as u64 + 16;
        assert_eq!(padme(padded.plaintext_size), Some(padded.padded_size));
        let mut opener = opener_at(&padded, &blobs, 3);
        assert_eq!(
            opener.open_chunk(3, &blobs[3]),
            Err(FileError::InvalidPadding { index: 3 })
        );
    }

    #[test]
    fn replayed_chunk_zero_is_refused() {
        let data = source(5, 2 * CS);
        let (chunks, manifest) = seal(&data, &[CS]);
        let blobs = blobs(&chunks);
        let mut opener = opener_at(&manifest, &blobs, 1);
        assert_eq!(
            opener.open_chunk(1, &blobs[0]),
            Err(FileError::ChunkIdMismatch { index: 1 })
        );

        let mut forged = manifest.clone();
        forged.chunk_ids[1] = chunks[0].id;
        let mut opener = opener_at(&forged, &blobs, 1);
        assert_eq!(
            opener.open_chunk(1, &blobs[0]),
            Err(FileError::MalformedChunk { index: 1 })
        );

        // Without its commitment, chunk 0 has the length of chunk 1.
        let stripped = blobs[0][KEY_COMMITMENT_SIZE..].to_vec();
        forged.chunk_ids[1] = ChunkId::of(&stripped);
        let mut opener = opener_at(&forged, &blobs, 1);
        assert_eq!(
            opener.open_chunk(1, &stripped),
            Err(FileError::AuthenticationFailed { index: 1 })
        );
    }

    #[test]
    fn chunks_of_another_file_are_refused() {
        let data = source(6, 2 * CS + 1000);
        let (a_chunks, a_manifest) = seal(&data, &[CS]);
        let (b_chunks, b_manifest) = seal(&data, &[CS]);
        let a = blobs(&a_chunks);
        let b = blobs(&b_chunks);
        assert_ne!(a, b, "fresh secrets give different ciphertexts");

        let mut forged = a_manifest.clone();
        forged.chunk_ids[1] = b_manifest.chunk_ids[1];
        let mut opener = opener_at(&forged, &a, 1);
        assert_eq!(
            opener.open_chunk(1, &b[1]),
            Err(FileError::AuthenticationFailed { index: 1 })
        );

        let mut forged = a_manifest.clone();
        forged.chunk_ids[0] = b_manifest.chunk_ids[0];
        let mut opener = FileOpener::new(&forged).unwrap();
        assert_eq!(
            opener.open_chunk(0, &b[0]),
            Err(FileError::KeyCommitmentMismatch)
        );

        // The right secret but another file id.
        let mut forged = b_manifest.clone();
        forged.file_id = a_manifest.file_id;
        let mut opener = FileOpener::new(&forged).unwrap();
        assert_eq!(
            opener.open_chunk(0, &b[0]),
            Err(FileError::AuthenticationFailed { index: 0 })
        );

        assert_eq!(open(&a_manifest, &a).unwrap(), data);
        assert_eq!(open(&b_manifest, &b).unwrap(), data);
    }

    #[test]
    fn wrong_key_commitment_is_refused() {
        let data = source(8, 1000);
        let (chunks, manifest) = seal(&data, &[100]);
        let blobs = blobs(&chunks);

        let mut forged = manifest.clone();
        forged.key_commitment.0[0] ^= 1;
        assert_eq!(
            FileOpener::new(&forged).unwrap_err(),
            FileError::KeyCommitmentMismatch
        );

        // A chunk 0 carrying another secret's commitment.
        let other = FileSecret::generate().unwrap();
        let mut tampered = blobs[0].clone();
        tampered[..KEY_COMMITMENT_SIZE].copy_from_slice(&other.key_commitment().0);
        let mut forged = manifest.clone();
        forged.chunk_ids[0] = ChunkId::of(&tampered);
        let mut opener = FileOpener::new(&forged).unwrap();
        assert_eq!(
            opener.open_chunk(0, &tampered),
            Err(FileError::KeyCommitmentMismatch)
        );

        // A manifest with another secret and its matching commitment.
        let mut forged = manifest.clone();
        forged.key_commitment = other.key_commitment();
        forged.secret = other;
        let mut opener = FileOpener::new(&forged).unwrap();
        assert_eq!(
            opener.open_chunk(0, &blobs[0]),
            Err(FileError::KeyCommitmentMismatch)
        );
    }

    #[test]
    fn failed_chunk_can_be_retried() {
        let data = source(9, 5000);
        let (chunks, manifest) = seal(&data, &[5000]);
        let mut opener = FileOpener::new(&manifest).unwrap();
        let mut bad = chunks[0].blob.clone();
        bad[40] ^= 0x80;
        assert!(opener.open_chunk(0, &bad).is_err());
        assert_eq!(opener.open_chunk(0, &chunks[0].blob).unwrap(), data);
        opener.finish().unwrap();
    }

    /// Seals `data` without interruption, taking a snapshot after every push
    /// and after each trailing chunk.
    fn seal_with_snapshots(
        data: &[u8],
        piece: usize,
    ) -> (Vec<SealedChunk>, FileManifest, Vec<UploadProgress>) {
        let mut sealer = FileSealer::new("r.bin", "text/plain", data.len() as u64).unwrap();
        let mut snapshots = vec![sealer.progress()];
        let mut chunks = Vec::new();
        for part in data.chunks(piece) {
            chunks.extend(sealer.push(part).unwrap());
            snapshots.push(sealer.progress());
        }
        while let Some(chunk) = sealer.next_trailing_chunk().unwrap() {
            chunks.push(chunk);
            snapshots.push(sealer.progress());
        }
        let (tail, manifest) = sealer.finish().unwrap();
        assert!(tail.is_empty());
        (chunks, manifest, snapshots)
    }

    #[test]
    fn resume_gives_identical_blobs() {
        let data = source(10, 3 * CS + 17);
        let (full, manifest, snapshots) = seal_with_snapshots(&data, 400_000);
        assert_eq!(open(&manifest, &blobs(&full)).unwrap(), data);
        let mut emitted_counts = Vec::new();
        for snapshot in snapshots {
            let k = snapshot.chunks_emitted() as usize;
            emitted_counts.push(k);
            assert_eq!(snapshot.chunk_ids(), &manifest.chunk_ids[..k]);
            let mut sealer = FileSealer::resume(snapshot.clone()).unwrap();
            assert_eq!(sealer.progress(), snapshot);
            let mut chunks = push_in_pieces(&mut sealer, &data, &[777_777, 3]).unwrap();
            let (tail, resumed_manifest) = sealer.finish().unwrap();
            chunks.extend(tail);
            assert_eq!(chunks, full[k..], "resumed after {k} chunks");
            assert_eq!(resumed_manifest, manifest);
        }
        emitted_counts.dedup();
        assert_eq!(emitted_counts, [0, 1, 2, 3, 4]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Sealing on two threads gives the same chunks, in the same order,
        /// with the same progress after every push (resume hash included)
        /// and the same manifest as sealing on one, from the start and from
        /// a resume point.
        #[test]
        fn sealing_on_two_threads_is_sealing_on_one(
            len in prop::sample::select(vec![0, 1, CS, 2 * CS, 2 * CS + 1, 5 * CS - 3]),
            seed in any::<u64>(),
            pieces in prop::collection::vec(1usize..=3 * CS, 1..4),
            resumed in any::<bool>(),
        ) {
            let data = source(seed, len);
            let (full, _, snapshots) = seal_with_snapshots(&data, CS);
            let start = if resumed { snapshots[1].clone() } else { snapshots[0].clone() };
            let mut one = FileSealer::resume(start.clone()).unwrap();
            let mut two = FileSealer::resume(start).unwrap();
            let (mut rest, mut i) = (&data[..], 0);
            let (mut by_one, mut by_two) = (Vec::new(), Vec::new());
            while !rest.is_empty() {
                let n = pieces[i % pieces.len()].clamp(1, rest.len());
                let (piece, tail) = rest.split_at(n);
                by_one.extend(one.push(piece).unwrap());
                by_two.extend(two.push_parallel(piece).unwrap());
                prop_assert_eq!(one.progress(), two.progress());
                rest = tail;
                i += 1;
            }
            let (tail_one, manifest_one) = one.finish().unwrap();
            let (tail_two, manifest_two) = two.finish().unwrap();
            by_one.extend(tail_one);
            by_two.extend(tail_two);
            prop_assert_eq!(&by_one, &by_two);
            prop_assert_eq!(&manifest_one, &manifest_two);
            let skipped = full.len() - by_two.len();
            let mut all = blobs(&full[..skipped]);
            all.extend(blobs(&by_two));
            prop_assert_eq!(open(&manifest_two, &all).unwrap(), data);
        }
    }

    #[test]
    fn opening_two_at_a_time_is_opening_one_at_a_time_and_both_or_neither() {
        let data = source(13, 5 * CS - 3);
        let (chunks, manifest) = seal(&data, &[2 * CS]);
        let blobs = blobs(&chunks);
        assert_eq!(blobs.len(), 5);
        let mut opener = FileOpener::new(&manifest).unwrap();
        let mut out = Vec::new();
        // Chunk 0's key commitment and chunk 1's tag are checked together;
        // a bad second chunk releases neither.
        let mut bad = blobs[1].clone();
        bad[10] ^= 1;
        assert_eq!(
            opener.open_pair(0, &blobs[0], &bad),
            Err(FileError::ChunkIdMismatch { index: 1 })
        );
        let mut uncommitted = blobs[0].clone();
        uncommitted[0] ^= 1;
        assert!(opener.open_pair(0, &uncommitted, &blobs[1]).is_err());
        assert_eq!(opener.next_index(), 0);
        assert_eq!(
            opener.open_pair(1, &blobs[1], &blobs[2]),
            Err(FileError::ChunkOutOfOrder {
                expected: 0,
                got: 1
            })
        );
        for i in [0, 2] {
            let [a, b] = opener
                .open_pair(i, &blobs[i as usize], &blobs[i as usize + 1])
                .unwrap();
            out.extend(a);
            out.extend(b);
        }
        assert_eq!(opener.next_index(), 4);
        assert_eq!(
            opener.open_pair(4, &blobs[4], &blobs[4]),
            Err(FileError::UnexpectedChunk {
                index: 5,
                chunk_count: 5
            })
        );
        out.extend(opener.open_chunk(4, &blobs[4]).unwrap());
        opener.finish().unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn a_changed_source_is_refused_on_two_threads_too() {
        let data = source(12, 3 * CS + 17);
        let (_, _, snapshots) = seal_with_snapshots(&data, CS);
        let two = snapshots.iter().find(|p| p.chunks_emitted() == 2).unwrap();
        let mut changed = data.clone();
        changed[CS + 5] ^= 1;
        let mut sealer = FileSealer::resume(two.clone()).unwrap();
        assert_eq!(
            sealer.push_parallel(&changed[..2 * CS]),
            Err(FileError::SourceChanged)
        );
        assert_eq!(
            sealer.push_parallel(&changed[2 * CS..]),
            Err(FileError::SourceChanged)
        );
    }

    #[test]
    fn resume_with_changed_source_is_refused() {
        let data = source(11, 3 * CS + 17);
        let (full, _, snapshots) = seal_with_snapshots(&data, CS);
        let two = snapshots
            .iter()
            .find(|p| p.chunks_emitted() == 2)
            .unwrap()
            .clone();
        assert_eq!(two.resume_offset(), 2 * CS as u64);

        // Changed before the resume point.
        let mut changed = data.clone();
        changed[2 * CS - 1] ^= 1;
        let mut sealer = FileSealer::resume(two.clone()).unwrap();
        assert!(sealer.push(&changed[..CS]).unwrap().is_empty());
        assert_eq!(
            sealer.push(&changed[CS..2 * CS + 10]),
            Err(FileError::SourceChanged)
        );
        assert_eq!(
            sealer.push(&changed[2 * CS + 10..]),
            Err(FileError::SourceChanged)
        );
        assert!(matches!(sealer.progress(), p if p.chunks_emitted() == 2));
        assert_eq!(sealer.finish().unwrap_err(), FileError::SourceChanged);

        // Changed after the resume point: those chunks were never emitted.
        let mut changed = data.clone();
        changed[2 * CS + 5] ^= 1;
        let mut sealer = FileSealer::resume(two).unwrap();
        let mut chunks = push_in_pieces(&mut sealer, &changed, &[CS]).unwrap();
        chunks.extend(sealer.finish().unwrap().0);
        assert_eq!(chunks[0].index, 2);
        assert_ne!(chunks[0], full[2]);
        assert_eq!(chunks[1..], full[3..]);

        // Every chunk emitted: the whole content is checked.
        let all = snapshots.last().unwrap().clone();
        assert_eq!(all.chunks_emitted(), 4);
        let mut changed = data.clone();
        changed[3 * CS + 16] ^= 1;
        let mut sealer = FileSealer::resume(all.clone()).unwrap();
        assert_eq!(
            push_in_pieces(&mut sealer, &changed, &[CS]).unwrap_err(),
            FileError::SourceChanged
        );
        let mut sealer = FileSealer::resume(all).unwrap();
        assert!(
            push_in_pieces(&mut sealer, &data, &[CS])
                .unwrap()
                .is_empty()
        );
        assert!(sealer.finish().unwrap().0.is_empty());
    }

    #[test]
    fn resume_of_empty_file() {
        let mut sealer = FileSealer::new("e", "text/plain", 0).unwrap();
        let snapshot = sealer.progress();
        let chunk = sealer.next_trailing_chunk().unwrap().unwrap();
        assert_eq!(chunk.blob.len(), KEY_COMMITMENT_SIZE + TAG_SIZE);
        let (tail, manifest) = sealer.finish().unwrap();
        assert!(tail.is_empty());
        let mut resumed = FileSealer::resume(snapshot.clone()).unwrap();
        assert!(resumed.push(&[]).unwrap().is_empty());
        let (again, resumed_manifest) = resumed.finish().unwrap();
        assert_eq!(again, core::slice::from_ref(&chunk));
        assert_eq!(resumed_manifest, manifest);
        assert_eq!(open(&manifest, &[chunk.blob]).unwrap(), b"");

        let mut corrupt = snapshot;
        corrupt.source_hash[0] ^= 1;
        assert_eq!(
            FileSealer::resume(corrupt).unwrap_err(),
            FileError::SourceChanged
        );
    }

    #[test]
    fn inconsistent_progress_is_refused() {
        let data = source(12, CS + 1);
        let (_, _, snapshots) = seal_with_snapshots(&data, CS);
        let one = snapshots
            .iter()
            .find(|p| p.chunks_emitted() == 1)
            .unwrap()
            .clone();

        let mut bad = one.clone();
        bad.chunk_ids.clear();
        assert!(matches!(
            FileSealer::resume(bad),
            Err(FileError::InvalidProgress(_))
        ));
        let mut bad = one.clone();
        bad.padded_size += 1;
        assert!(matches!(
            FileSealer::resume(bad),
            Err(FileError::InvalidProgress(_))
        ));
        let mut bad = one.clone();
        bad.chunk_size = 1 << 16;
        assert!(matches!(
            FileSealer::resume(bad),
            Err(FileError::InvalidProgress(_))
        ));
        let mut bad = one;
        bad.chunks_emitted = 3;
        bad.chunk_ids = vec![ChunkId([0; 32]); 3];
        assert!(matches!(
            FileSealer::resume(bad),
            Err(FileError::InvalidProgress(_))
        ));
    }

    #[test]
    fn wrong_amount_of_data_is_refused() {
        let data = source(13, 10);
        let mut sealer = FileSealer::new("x", "text/plain", 10).unwrap();
        let mut eleven = data.clone();
        eleven.push(0);
        assert_eq!(
            sealer.push(&eleven),
            Err(FileError::TooMuchData {
                declared: 10,
                received: 11
            })
        );
        assert!(sealer.push(&data[..4]).unwrap().is_empty());
        assert_eq!(
            sealer.push(&eleven[4..]),
            Err(FileError::TooMuchData {
                declared: 10,
                received: 11
            })
        );
        assert_eq!(sealer.bytes_pushed(), 4);
        assert_eq!(
            sealer.next_trailing_chunk(),
            Err(FileError::NotEnoughData {
                declared: 10,
                received: 4
            })
        );
        // 10 bytes need no padding: the push completing the chunk seals it.
        let mut chunks = sealer.push(&data[4..]).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            sealer.push(&[0]),
            Err(FileError::TooMuchData {
                declared: 10,
                received: 11
            })
        );
        let (tail, manifest) = sealer.finish().unwrap();
        assert!(tail.is_empty());
        chunks.extend(tail);
        assert_eq!(open(&manifest, &blobs(&chunks)).unwrap(), data);

        let mut sealer = FileSealer::new("x", "text/plain", CS as u64 + 5).unwrap();
        let emitted = sealer.push(&source(14, CS)).unwrap();
        assert_eq!(emitted.len(), 1);
        assert_eq!(
            sealer.finish().unwrap_err(),
            FileError::NotEnoughData {
                declared: CS as u64 + 5,
                received: CS as u64
            }
        );

        assert_eq!(
            FileSealer::new("x", "y", u64::MAX).unwrap_err(),
            FileError::TooLarge(u64::MAX)
        );
    }

    #[test]
    fn large_file_ends_with_a_chunk_of_pure_padding() {
        let len = (1u64 << 26) + 1;
        let padded = padme(len).unwrap();
        assert_eq!(padded, (1 << 26) + (1 << 21));
        assert_eq!(chunk_count(padded), 66);
        let mut reader = blake3::Hasher::new().update(b"large").finalize_xof();
        let mut source_hash = blake3::Hasher::new();
        let mut sealer = FileSealer::new("big", "application/octet-stream", len).unwrap();
        let mut chunks = Vec::new();
        let mut piece = vec![0u8; CS];
        for _ in 0..64 {
            reader.fill(&mut piece);
            source_hash.update(&piece);
            let emitted = sealer.push(&piece).unwrap();
            assert_eq!(
                emitted.len(),
                1,
                "every full chunk is emitted by the push completing it"
            );
            chunks.extend(emitted);
        }
        reader.fill(&mut piece[..1]);
        source_hash.update(&piece[..1]);
        assert!(sealer.push(&piece[..1]).unwrap().is_empty());
        while let Some(chunk) = sealer.next_trailing_chunk().unwrap() {
            chunks.push(chunk);
        }
        let (tail, manifest) = sealer.finish().unwrap();
        assert!(tail.is_empty());
        assert_eq!(chunks.len(), 66);
        let mut opener = FileOpener::new(&manifest).unwrap();
        let mut opened_hash = blake3::Hasher::new();
        for chunk in &chunks {
            let plaintext = opener.open_chunk(chunk.index, &chunk.blob).unwrap();
            let expected_len = match chunk.index {
                0..=63 => CS,
                64 => 1,
                _ => 0,
            };
            assert_eq!(plaintext.len(), expected_len);
            opened_hash.update(&plaintext);
        }
        opener.finish().unwrap();
        assert_eq!(opened_hash.finalize(), source_hash.finalize());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let data = source(15, 100);
        let mut sealer = FileSealer::new("d", "text/plain", 100).unwrap();
        sealer.push(&data).unwrap();
        let progress = sealer.progress();
        let sealer_debug = format!("{sealer:?}");
        let (_, manifest) = sealer.finish().unwrap();
        let secret = manifest.secret.as_bytes();
        let decimal = format!("{secret:?}");
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let opener = FileOpener::new(&manifest).unwrap();
        for text in [
            format!("{:?}", manifest.secret),
            format!("{manifest:?}"),
            format!("{progress:?}"),
            sealer_debug,
            format!("{opener:?}"),
        ] {
            assert!(!text.contains(&decimal) && !text.contains(&hex), "{text}");
        }
        assert_eq!(format!("{:?}", manifest.secret), "FileSecret(..)");
    }

    #[test]
    fn fresh_files_get_fresh_secrets_and_ids() {
        let a = FileSealer::new("a", "t", 1).unwrap().progress();
        let b = FileSealer::new("a", "t", 1).unwrap().progress();
        assert_ne!(a.file_id(), b.file_id());
        assert_ne!(a.secret, b.secret);
    }

    #[test]
    fn manifest_and_progress_are_serde() {
        fn is_serde<T: Serialize + for<'de> Deserialize<'de>>() {}
        is_serde::<FileManifest>();
        is_serde::<UploadProgress>();
    }
}
