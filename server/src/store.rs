//! The server's durable store: a small trait with a documented contract, and
//! its sled implementation.
//!
//! Every record is a versioned format (`1 || postcard(record)`), separate from
//! the domain types. A method that writes returns only once the write is
//! durable (flushed to disk): the server acknowledges nothing before that.

use std::collections::BTreeMap;
use std::path::Path;

use amicus_core::identity::{DeviceCertificate, DeviceRevocation, IdentityPublicKey};
use amicus_core::wire::LogEntry;
use amicus_core::{DeviceId, SpaceId, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;

/// Why the store failed. The server answers 500 and logs it; nothing a client
/// sends can cause one, except a full or failing disk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed (disk full, I/O error, corruption).
    #[error("database: {0}")]
    Database(String),
    /// A stored record does not decode: the data directory is corrupt or
    /// was written by a newer version.
    #[error("corrupt record in `{0}`")]
    Corrupt(&'static str),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        Self::Database(e.to_string())
    }
}

/// A user account: the name, the identity key (pinned by the server at
/// registration) and whether it administers the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The user name.
    pub user: UserId,
    /// The identity public key.
    pub identity_key: IdentityPublicKey,
    /// The first account administers the server (invitations).
    pub admin: bool,
    /// Unix seconds at registration.
    pub created: u64,
}

/// A registered device: its certificate, signed by the user's identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The certificate (user, device id, device key, identity key).
    pub certificate: DeviceCertificate,
    /// Unix seconds at registration.
    pub created: u64,
}

/// A signed-in device's session; the store keys it by the token's hash, so
/// a copy of the data directory yields no usable token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// Unix seconds after which the token is refused.
    pub expires: u64,
}

/// An invitation to register, keyed by the code's hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    /// Who created it.
    pub by: UserId,
    /// Unix seconds after which it is refused.
    pub expires: u64,
}

/// Whether a space is confidential (MLS, ciphertext only) or public
/// (plaintext documents readable by every member of the network).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpaceKind {
    /// An MLS group; the server relays ciphertext only.
    Confidential,
    /// Plaintext documents and files, indexed for search.
    Public,
}

/// A role in a public space (confidential spaces keep roles inside MLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicRole {
    /// May write documents and files.
    Contributor,
    /// May also remove documents.
    ContentManager,
    /// May also change roles.
    SpaceManager,
}

/// What the server knows of a space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceRecord {
    /// The space id.
    pub id: SpaceId,
    /// Confidential or public.
    pub kind: SpaceKind,
    /// Who created it.
    pub created_by: UserId,
    /// The current MLS epoch (confidential spaces).
    pub epoch: u64,
    /// The sequence number of the next log entry.
    pub next_seq: u64,
    /// The chained hash of the last entry (the genesis hash if none).
    pub head: [u8; 32],
    /// The delivery roster: devices that may read and append (confidential).
    pub roster: BTreeMap<DeviceId, UserId>,
    /// Roles (public spaces).
    pub roles: BTreeMap<UserId, PublicRole>,
    /// For each stream, the sequence number of its latest snapshot envelope.
    pub snapshots: BTreeMap<[u8; 16], u64>,
    /// A display name (public spaces only; confidential names stay encrypted).
    pub name: Option<String>,
    /// The last commit accepted (confidential), while its epoch may still
    /// be reopened by the members' reports (PROTOCOL §6.3).
    pub last_commit: Option<LastCommit>,
    /// Users a majority of members refused a commit of: none of their
    /// devices may commit in this space again.
    pub barred: std::collections::BTreeSet<UserId>,
}

/// The last commit of a space, as the relay keeps it to reopen its epoch
/// if the members refuse it: who appended it, what its clear roster change
/// did to the delivery roster (to undo it), and who reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCommit {
    /// The commit's sequence number.
    pub seq: u64,
    /// The epoch it moved from.
    pub epoch: u64,
    /// The device that appended it, and its user.
    pub committer: (DeviceId, UserId),
    /// Devices it added to the delivery roster.
    pub added: Vec<DeviceId>,
    /// Devices it took off the delivery roster, with their users.
    pub removed: Vec<(DeviceId, UserId)>,
    /// Users who reported it (each counts once, whatever its devices).
    pub reports: std::collections::BTreeSet<UserId>,
    /// True once its epoch was reopened.
    pub reopened: bool,
}

/// A [`SpaceRecord`] as stored before epochs could be reopened (version 1).
#[derive(Deserialize)]
struct SpaceRecordV1 {
    id: SpaceId,
    kind: SpaceKind,
    created_by: UserId,
    epoch: u64,
    next_seq: u64,
    head: [u8; 32],
    roster: BTreeMap<DeviceId, UserId>,
    roles: BTreeMap<UserId, PublicRole>,
    snapshots: BTreeMap<[u8; 16], u64>,
    name: Option<String>,
}

/// A public document: plaintext, readable by every member of the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicRecord {
    /// The space.
    pub space: SpaceId,
    /// The document id (chosen by the writer, `[a-z0-9._-]{1,64}`).
    pub id: String,
    /// The title.
    pub title: String,
    /// The text.
    pub body: String,
    /// Its bold, italic and underline (empty in a record of version 1).
    pub marks: Vec<amicus_core::publication::TextMark>,
    /// The declared language (BCP 47 primary tag), if any.
    pub language: Option<String>,
    /// `document` or `file`.
    pub kind: String,
    /// Year of the document, if known.
    pub year: Option<u16>,
    /// For a file: its name, size and plaintext chunk ids (hex).
    pub file: Option<PublicFile>,
    /// Signed provenance when published from a confidential space.
    pub provenance: Option<Provenance>,
    /// Who wrote it last.
    pub author: UserId,
    /// Unix seconds of the last write.
    pub updated: u64,
}

/// A public document as version 1 of the record stored it (before marks).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct PublicRecordV1 {
    space: SpaceId,
    id: String,
    title: String,
    body: String,
    language: Option<String>,
    kind: String,
    year: Option<u16>,
    file: Option<PublicFile>,
    provenance: Option<Provenance>,
    author: UserId,
    updated: u64,
}

/// The version of a stored [`PublicRecord`] (`marks` came with 2).
const PUBLIC_VERSION: u8 = 2;

fn enc_public(doc: &PublicRecord) -> Vec<u8> {
    enc_at(PUBLIC_VERSION, doc)
}

fn dec_public(bytes: &[u8]) -> Result<PublicRecord, StoreError> {
    dec_or_v1("public", PUBLIC_VERSION, bytes, |v1: PublicRecordV1| {
        PublicRecord {
            space: v1.space,
            id: v1.id,
            title: v1.title,
            body: v1.body,
            marks: Vec::new(),
            language: v1.language,
            kind: v1.kind,
            year: v1.year,
            file: v1.file,
            provenance: v1.provenance,
            author: v1.author,
            updated: v1.updated,
        }
    })
}

/// What stays of a withdrawn public copy: who withdrew which copy (its
/// `updated` time) and when, with the withdrawing device's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The device's signed withdrawal of the copy.
    pub withdrawal: amicus_core::publication::Withdrawal,
    /// The user behind the device.
    pub by: UserId,
    /// The withdrawn copy's `updated` time (what the signature names).
    pub copy_updated: u64,
    /// When it was withdrawn (Unix seconds).
    pub at: u64,
}

/// An aggregate of case records published into a public space for the
/// public map (PROTOCOL §15.4): counts only, signed by a device of its
/// author.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateRecord {
    /// The public space.
    pub space: SpaceId,
    /// The publication's id in that space.
    pub id: String,
    /// The counts and their signed provenance.
    pub published: amicus_core::monitoring::PublishedAggregate,
    /// Who published it.
    pub author: UserId,
    /// When (Unix seconds).
    pub updated: u64,
}

/// What [`Store::withdraw_public`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withdrawn {
    /// The copy is gone and its tombstone kept.
    Done,
    /// There is no such document.
    Missing,
    /// Another copy is stored now (written since the withdrawal was
    /// signed): nothing was removed.
    Changed,
}

/// A public file's content: plaintext chunks stored as blobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicFile {
    /// File name.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Blob ids of the chunks, in order (hex).
    pub chunks: Vec<String>,
}

pub use amicus_core::publication::Provenance;

/// Whether a user was created, and as what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// The first account: it administers the server.
    Admin,
    /// Any later account.
    Member,
    /// The name is taken; nothing was written.
    Taken,
    /// Admission was [`Admission::OnlyFirst`] and an administrator exists;
    /// nothing was written.
    NotFirst,
}

/// Whether [`Store::create_user`] may create any account or only the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Any account (open registration, or a valid invitation was used).
    Any,
    /// Only the first account (registration by invitation, no code given).
    OnlyFirst,
}

/// An append to a space log, written atomically with the space's new state
/// and the Welcomes it queues.
pub struct Append<'a> {
    /// The space's state after the append.
    pub space: &'a SpaceRecord,
    /// The entry, or `None` for a state-only change.
    pub entry: Option<&'a LogEntry>,
    /// The MLS Welcome of the entry (stored once) and the devices to queue
    /// it for.
    pub welcome: Option<(&'a [u8], &'a [DeviceId])>,
}

/// One entry of [`Store::append_all`]: the entry and, for a commit that adds
/// devices, its Welcome and the devices to queue it for.
#[derive(Clone, Copy)]
pub struct Logged<'a> {
    /// The entry.
    pub entry: &'a LogEntry,
    /// The Welcome and the devices it is queued for.
    pub welcome: Option<(&'a [u8], &'a [DeviceId])>,
}

/// The store. Contract, for every implementation:
/// - a method that writes returns `Ok` only once the write is durable;
/// - `Ok(None)` means "no such record", never an error;
/// - [`Store::append`] and the `take_*` methods are atomic: a crash leaves
///   either all of their writes or none;
/// - callers serialize appends to one space (the relay holds a per-space
///   lock); the store need not arbitrate them.
pub trait Store: Send + Sync + 'static {
    /// Creates a user and its first device; the very first user is the
    /// administrator. Atomic.
    fn create_user(
        &self,
        user: &UserRecord,
        device: &DeviceRecord,
        admission: Admission,
    ) -> Result<Created, StoreError>;
    /// True once the first account exists.
    fn admin_exists(&self) -> Result<bool, StoreError>;
    /// A user.
    fn user(&self, user: &UserId) -> Result<Option<UserRecord>, StoreError>;
    /// Adds a device to its certificate's user; `false` (nothing written)
    /// if the device id is taken. Atomic.
    fn add_device(&self, device: &DeviceRecord) -> Result<bool, StoreError>;
    /// A user's devices.
    fn devices(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError>;
    /// Replaces a user's recovery kit (opaque: sealed under a code the
    /// server never sees) and the verifier of the code's access value.
    fn put_recovery(&self, user: &UserId, verifier: [u8; 32], kit: &[u8])
    -> Result<(), StoreError>;
    /// A user's recovery verifier and kit.
    fn recovery(&self, user: &UserId) -> Result<Option<RecoveryRecord>, StoreError>;
    /// A device.
    fn device(&self, device: DeviceId) -> Result<Option<DeviceRecord>, StoreError>;
    /// Records a device's revocation (signed by its user's identity key,
    /// checked by the caller) and deletes the device's sessions and
    /// KeyPackages; false if it was revoked already. Atomic.
    fn revoke_device(&self, revocation: &DeviceRevocation) -> Result<bool, StoreError>;
    /// The revocation of a device, if it is revoked.
    fn revocation(&self, device: DeviceId) -> Result<Option<DeviceRevocation>, StoreError>;
    /// Every revocation (revocations are rare: a few per user at most).
    fn revocations(&self) -> Result<Vec<DeviceRevocation>, StoreError>;
    /// Stores an invitation under its code's hash.
    fn put_invite(&self, code_hash: [u8; 32], invite: &InviteRecord) -> Result<(), StoreError>;
    /// Removes and returns an invitation. Atomic: a code is used once.
    fn take_invite(&self, code_hash: [u8; 32]) -> Result<Option<InviteRecord>, StoreError>;
    /// Stores a session under its token's hash.
    fn put_session(&self, token_hash: [u8; 32], session: &SessionRecord) -> Result<(), StoreError>;
    /// A session.
    fn session(&self, token_hash: [u8; 32]) -> Result<Option<SessionRecord>, StoreError>;
    /// Deletes a session.
    fn delete_session(&self, token_hash: [u8; 32]) -> Result<(), StoreError>;
    /// Adds KeyPackages of a device; returns how many it now has.
    fn add_key_packages(&self, device: DeviceId, kps: &[Vec<u8>]) -> Result<usize, StoreError>;
    /// How many KeyPackages a device has.
    fn key_package_count(&self, device: DeviceId) -> Result<usize, StoreError>;
    /// Removes and returns one KeyPackage of a device (oldest first). Atomic:
    /// each is handed out once.
    fn take_key_package(&self, device: DeviceId) -> Result<Option<Vec<u8>>, StoreError>;
    /// Creates a space; `false` if the id exists (nothing written).
    fn create_space(&self, space: &SpaceRecord) -> Result<bool, StoreError>;
    /// A space.
    fn space(&self, id: SpaceId) -> Result<Option<SpaceRecord>, StoreError>;
    /// Every space.
    fn spaces(&self) -> Result<Vec<SpaceRecord>, StoreError>;
    /// Writes a log entry, the space's new state and queued Welcomes. Atomic.
    fn append(&self, append: Append<'_>) -> Result<(), StoreError>;
    /// Writes log entries of one space in order, each with its queued
    /// Welcome, and the space's state after the last. Atomic: all or none.
    fn append_all(&self, space: &SpaceRecord, entries: &[Logged<'_>]) -> Result<(), StoreError>;
    /// Log entries of a space from `from` on, at most `limit` entries and
    /// about `max_bytes` of payload (at least one entry if any).
    fn entries(
        &self,
        space: SpaceId,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, StoreError>;
    /// Welcomes queued for a device: (queue id, space, Welcome).
    /// Welcomes queued for a device, oldest first, at most `limit`:
    /// (queue id, space, Welcome).
    fn welcomes(
        &self,
        device: DeviceId,
        limit: usize,
    ) -> Result<Vec<(u64, SpaceId, Vec<u8>)>, StoreError>;
    /// How many Welcomes are queued for a device.
    fn welcome_count(&self, device: DeviceId) -> Result<usize, StoreError>;
    /// Deletes a delivered Welcome (the device joined or gave up).
    fn delete_welcome(&self, device: DeviceId, id: u64) -> Result<bool, StoreError>;
    /// Writes a public document.
    fn put_public(&self, doc: &PublicRecord) -> Result<(), StoreError>;
    /// A public document.
    fn public_doc(&self, space: SpaceId, id: &str) -> Result<Option<PublicRecord>, StoreError>;
    /// The public documents of a space.
    fn public_docs(&self, space: SpaceId) -> Result<Vec<PublicRecord>, StoreError>;
    /// Every public document (to rebuild the search index).
    fn all_public_docs(&self) -> Result<Vec<PublicRecord>, StoreError>;
    /// Removes the public document whose `updated` is the tombstone's
    /// `copy_updated` and keeps the tombstone, in one durable write; writes
    /// nothing if there is no document, or another copy took its place.
    fn withdraw_public(
        &self,
        space: SpaceId,
        id: &str,
        tombstone: &Tombstone,
    ) -> Result<Withdrawn, StoreError>;
    /// Writes (or replaces) a published aggregate.
    fn put_aggregate(&self, record: &AggregateRecord) -> Result<(), StoreError>;
    /// A published aggregate.
    fn aggregate(&self, space: SpaceId, id: &str) -> Result<Option<AggregateRecord>, StoreError>;
    /// The aggregates published in a public space.
    fn aggregates(&self, space: SpaceId) -> Result<Vec<AggregateRecord>, StoreError>;
    /// Every published aggregate, of every public space.
    fn all_aggregates(&self) -> Result<Vec<AggregateRecord>, StoreError>;
    /// Removes a published aggregate; `false` if there was none.
    fn delete_aggregate(&self, space: SpaceId, id: &str) -> Result<bool, StoreError>;
    /// The tombstone of the last copy withdrawn under this id, if any.
    fn tombstone(&self, space: SpaceId, id: &str) -> Result<Option<Tombstone>, StoreError>;
    /// Adds `bytes` to a user's blob usage if the total stays within
    /// `quota`; returns the new total, or `None` (nothing written) if over.
    fn charge(&self, user: &UserId, bytes: u64, quota: u64) -> Result<Option<u64>, StoreError>;
    /// A user's notification settings and state.
    fn notify(&self, user: &UserId) -> Result<Option<NotifyRecord>, StoreError>;
    /// Writes a user's notification record, or forgets it (`None`).
    fn put_notify(&self, user: &UserId, record: Option<&NotifyRecord>) -> Result<(), StoreError>;
    /// Every notification record (one per user who asked for email).
    fn all_notify(&self) -> Result<Vec<(UserId, NotifyRecord)>, StoreError>;
    /// A space's listing in the directory.
    fn listing(&self, space: SpaceId) -> Result<Option<Listing>, StoreError>;
    /// Lists a space in the directory, or takes it out (`None`).
    fn put_listing(&self, space: SpaceId, listing: Option<&Listing>) -> Result<(), StoreError>;
    /// Every listed space.
    fn listings(&self) -> Result<Vec<(SpaceId, Listing)>, StoreError>;
    /// Writes a request to join a space, or removes it (`None`).
    fn put_join_request(
        &self,
        space: SpaceId,
        user: &UserId,
        request: Option<&JoinRequest>,
    ) -> Result<(), StoreError>;
    /// The requests to join a space.
    fn join_requests(&self, space: SpaceId) -> Result<Vec<(UserId, JoinRequest)>, StoreError>;
    /// Every request to join (to find one user's).
    fn all_join_requests(&self) -> Result<Vec<(SpaceId, UserId, JoinRequest)>, StoreError>;
    /// The intake key a space's members published (§11.5).
    fn intake(&self, space: SpaceId) -> Result<Option<IntakeRecord>, StoreError>;
    /// Publishes a space's intake key: kept if its epoch is later than the
    /// stored one's, or the same key again; `false` (nothing changed) if
    /// the stored key is of a later epoch, or of the same epoch and
    /// another key.
    fn put_intake(&self, space: SpaceId, intake: &IntakeRecord) -> Result<bool, StoreError>;
    /// Creates a drop box; `false` if the id is taken.
    fn create_drop_box(&self, id: [u8; 16], record: &DropBoxRecord) -> Result<bool, StoreError>;
    /// A drop box.
    fn drop_box(&self, id: [u8; 16]) -> Result<Option<DropBoxRecord>, StoreError>;
    /// The drop boxes of a space.
    fn drop_boxes(&self, space: SpaceId) -> Result<Vec<([u8; 16], DropBoxRecord)>, StoreError>;
    /// Every drop box of every space (the server's sweep, the audit).
    fn every_drop_box(&self) -> Result<Vec<([u8; 16], DropBoxRecord)>, StoreError>;
    /// Changes a drop box in one atomic step: `change` edits the record and
    /// says whether to keep the edit. Returns the record as stored after
    /// it, and whether the edit was kept; `None` for no such box.
    fn update_drop_box(
        &self,
        id: [u8; 16],
        change: &mut dyn FnMut(&mut DropBoxRecord) -> bool,
    ) -> Result<Option<(DropBoxRecord, bool)>, StoreError>;
    /// Writes a submission to a drop box (`None`: deletes it).
    fn put_submission(
        &self,
        dropbox: [u8; 16],
        id: [u8; 16],
        submission: Option<&SubmissionRecord>,
    ) -> Result<(), StoreError>;
    /// The submissions to a drop box, complete or not.
    fn submissions(
        &self,
        dropbox: [u8; 16],
    ) -> Result<Vec<([u8; 16], SubmissionRecord)>, StoreError>;
    /// Flushes everything to disk.
    fn flush(&self) -> Result<(), StoreError>;
}

/// A space's intake key as its members published it: the X25519 public
/// key of the epoch whose key is in force (§11.5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeRecord {
    /// The public key.
    pub recipient: [u8; 32],
    /// Its epoch.
    pub epoch: u64,
    /// The device that published it.
    pub by: DeviceId,
    /// When (Unix seconds).
    pub at: u64,
}

/// A drop box: where people without an account submit sealed statements
/// and files to a space. Its label stays inside the space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropBoxRecord {
    /// The space it delivers to.
    pub space: SpaceId,
    /// Who opened it.
    pub created_by: UserId,
    /// When (Unix seconds).
    pub created: u64,
    /// When it stops taking submissions (Unix seconds).
    pub expires: u64,
    /// The bytes it may hold, sealed.
    pub quota: u64,
    /// The bytes used or reserved by submissions under way.
    pub used: u64,
    /// When a member closed it.
    pub closed: Option<u64>,
}

/// One submission to a drop box: parts, each an age file stored as
/// content-addressed chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    /// When it was started (Unix seconds).
    pub at: u64,
    /// The intake epoch whose key it was sealed to.
    pub epoch: u64,
    /// Its parts.
    pub parts: Vec<PartRecord>,
    /// Every chunk arrived and members can see it.
    pub complete: bool,
}

/// One sealed part of a submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    /// Its size in bytes.
    pub size: u64,
    /// The BLAKE3 hashes of its chunks, in order (blob ids).
    pub chunks: Vec<[u8; 32]>,
}

/// How often a user wants to hear of activity while away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyMode {
    /// Never.
    Off,
    /// One message a day, at the configured hour, if there was activity.
    Daily,
    /// Soon after activity, at most once per configured interval.
    Immediate,
}

/// What the server keeps to tell a user, by email, that there is
/// activity while none of their devices is connected: the address, the
/// choice, and two times. Never which space or what changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyRecord {
    /// Where to write.
    pub email: String,
    /// How often.
    pub mode: NotifyMode,
    /// The language of the message (`en`, `fr`, `ar`, `de`, `pt`).
    pub language: String,
    /// Since when (Unix seconds) there has been activity the user has not
    /// been connected for; `None` when there is nothing to say.
    pub pending_since: Option<u64>,
    /// When (Unix seconds) the last message was sent.
    pub last_sent: Option<u64>,
}

/// A space in the network's directory: what one of its members chose to
/// show of it to everyone on the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The public name.
    pub name: String,
    /// The public description.
    pub description: String,
    /// Who listed it (last changed it).
    pub listed_by: UserId,
    /// When (Unix seconds).
    pub at: u64,
    /// Whoever asks is added by the first manager's device online (the
    /// managers' devices read this from inside the space, not from here).
    pub open: bool,
}

/// A listing as version 1 of the record stored it (before open spaces).
#[derive(Deserialize)]
struct ListingV1 {
    name: String,
    description: String,
    listed_by: UserId,
    at: u64,
}

/// The version of a stored [`Listing`] (`open` came with 2).
const LISTING_VERSION: u8 = 2;

fn enc_listing(listing: &Listing) -> Vec<u8> {
    enc_at(LISTING_VERSION, listing)
}

fn dec_listing(bytes: &[u8]) -> Result<Listing, StoreError> {
    dec_or_v1("directory", LISTING_VERSION, bytes, |v1: ListingV1| {
        Listing {
            name: v1.name,
            description: v1.description,
            listed_by: v1.listed_by,
            at: v1.at,
            open: false,
        }
    })
}

/// A user's request to join a listed space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The requester's message to the space's managers.
    pub message: String,
    /// When it was made (Unix seconds).
    pub at: u64,
    /// A member declined it (the requester is told; nothing else changes).
    pub declined: bool,
}

const VERSION: u8 = 1;

fn enc<T: Serialize>(value: &T) -> Vec<u8> {
    enc_at(VERSION, value)
}

fn dec<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    dec_at(tree, VERSION, bytes)
}

/// A record: its version byte, then postcard.
fn enc_at<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    out.extend_from_slice(&postcard::to_allocvec(value).expect("records always encode"));
    out
}

/// A record of `version`, and nothing after it.
fn dec_at<T: DeserializeOwned>(
    tree: &'static str,
    version: u8,
    bytes: &[u8],
) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((v, rest)) if *v == version => match postcard::take_from_bytes(rest) {
            Ok((value, [])) => Ok(value),
            _ => Err(StoreError::Corrupt(tree)),
        },
        _ => Err(StoreError::Corrupt(tree)),
    }
}

/// A record of `version`, or of version 1 (`Old`) brought up to date by
/// `upgrade`.
fn dec_or_v1<T: DeserializeOwned, Old: DeserializeOwned>(
    tree: &'static str,
    version: u8,
    bytes: &[u8],
    upgrade: impl FnOnce(Old) -> T,
) -> Result<T, StoreError> {
    match bytes.first() {
        Some(v) if *v == version => dec_at(tree, version, bytes),
        _ => dec_at(tree, VERSION, bytes).map(upgrade),
    }
}

/// The version byte of a stored [`SpaceRecord`] (version 1, without
/// `last_commit` and `barred`, is still read).
const SPACE_VERSION: u8 = 2;

fn enc_space(space: &SpaceRecord) -> Vec<u8> {
    enc_at(SPACE_VERSION, space)
}

fn dec_space(bytes: &[u8]) -> Result<SpaceRecord, StoreError> {
    dec_or_v1("spaces", SPACE_VERSION, bytes, |v1: SpaceRecordV1| {
        SpaceRecord {
            id: v1.id,
            kind: v1.kind,
            created_by: v1.created_by,
            epoch: v1.epoch,
            next_seq: v1.next_seq,
            head: v1.head,
            roster: v1.roster,
            roles: v1.roles,
            snapshots: v1.snapshots,
            name: v1.name,
            last_commit: None,
            barred: Default::default(),
        }
    })
}

fn log_key(space: SpaceId, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&space.0);
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn user_key(user: &UserId) -> &[u8] {
    user.as_str().as_bytes()
}

fn public_key(space: SpaceId, id: &str) -> Vec<u8> {
    let mut k = space.0.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// A user's recovery kit and the verifier of its code's access value.
pub type RecoveryRecord = ([u8; 32], Vec<u8>);

/// The sled store: one tree per kind of record.
pub struct SledStore {
    db: sled::Db,
    users: sled::Tree,
    devices: sled::Tree,
    user_devices: sled::Tree,
    invites: sled::Tree,
    sessions: sled::Tree,
    key_packages: sled::Tree,
    spaces: sled::Tree,
    log: sled::Tree,
    welcomes: sled::Tree,
    welcome_bodies: sled::Tree,
    public: sled::Tree,
    withdrawn: sled::Tree,
    usage: sled::Tree,
    recovery: sled::Tree,
    revocations: sled::Tree,
    notify: sled::Tree,
    directory: sled::Tree,
    join_requests: sled::Tree,
    intake: sled::Tree,
    drop_boxes: sled::Tree,
    submissions: sled::Tree,
    aggregates: sled::Tree,
    flusher: GroupFlush,
}

/// Group commit: writers whose writes are done wait for one flush that
/// started after them, and one of them runs it for all. A flush makes
/// durable every write completed before it began, so a writer's ticket,
/// taken after its write, is covered by any flush that starts once the
/// ticket is handed out. Each writer still returns only when its write is
/// durable (or with the error of the flush that should have covered it).
#[derive(Default)]
pub struct GroupFlush {
    state: std::sync::Mutex<FlushState>,
    done: std::sync::Condvar,
}

#[derive(Default)]
struct FlushState {
    /// Tickets handed out so far (one per finished write).
    tickets: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A flush is running.
    flushing: bool,
    /// The last failed flush: the tickets it was to cover, and why.
    failed: Option<(u64, String)>,
    /// Flushes run, for tests and metrics.
    flushes: u64,
}

impl GroupFlush {
    /// Waits until the writes the caller finished before calling are
    /// durable, running `flush` itself if no flush that covers them is
    /// under way.
    pub fn durable(&self, flush: impl FnOnce() -> Result<(), String>) -> Result<(), StoreError> {
        let mut flush = Some(flush);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.tickets += 1;
        let mine = state.tickets;
        loop {
            if state.durable >= mine {
                return Ok(());
            }
            if let Some((upto, why)) = &state.failed
                && *upto >= mine
            {
                return Err(StoreError::Database(why.clone()));
            }
            if !state.flushing {
                let Some(run) = flush.take() else {
                    // Not reached: the one flush this writer runs begins
                    // after its ticket, so it is durable or failed above.
                    return Err(StoreError::Database("group flush out of step".into()));
                };
                state.flushing = true;
                let upto = state.tickets;
                drop(state);
                // A panicking flush must not leave `flushing` set: every
                // later writer would wait for ever.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
                state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.flushing = false;
                state.flushes += 1;
                match &result {
                    Ok(Ok(())) => state.durable = state.durable.max(upto),
                    Ok(Err(why)) => state.failed = Some((upto, why.clone())),
                    Err(_) => state.failed = Some((upto, "the flush panicked".into())),
                }
                self.done.notify_all();
                if let Err(panic) = result {
                    drop(state);
                    std::panic::resume_unwind(panic);
                }
                continue;
            }
            state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// How many flushes have run.
    pub fn flushes(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).flushes
    }
}

type TxResult<T> = Result<T, sled::transaction::ConflictableTransactionError<StoreError>>;

fn tx_err(e: sled::transaction::TransactionError<StoreError>) -> StoreError {
    match e {
        sled::transaction::TransactionError::Abort(e) => e,
        sled::transaction::TransactionError::Storage(e) => e.into(),
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let tree = |name: &str| db.open_tree(name);
        Ok(Self {
            users: tree("users")?,
            devices: tree("devices")?,
            user_devices: tree("user_devices")?,
            invites: tree("invites")?,
            sessions: tree("sessions")?,
            key_packages: tree("key_packages")?,
            spaces: tree("spaces")?,
            log: tree("log")?,
            welcomes: tree("welcomes")?,
            welcome_bodies: tree("welcome_bodies")?,
            public: tree("public")?,
            withdrawn: tree("withdrawn")?,
            usage: tree("usage")?,
            recovery: tree("recovery")?,
            revocations: tree("revocations")?,
            notify: tree("notify")?,
            directory: tree("directory")?,
            join_requests: tree("join_requests")?,
            intake: tree("intake")?,
            drop_boxes: tree("drop_boxes")?,
            submissions: tree("submissions")?,
            aggregates: tree("aggregates")?,
            flusher: GroupFlush::default(),
            db,
        })
    }

    /// Every tree (sled's default tree included), by name, for the audit.
    pub fn trees(&self) -> Vec<(String, sled::Tree)> {
        self.db
            .tree_names()
            .into_iter()
            .filter_map(|n| {
                let tree = self.db.open_tree(&n).ok()?;
                Some((String::from_utf8_lossy(&n).into_owned(), tree))
            })
            .collect()
    }

    /// Returns once every write this thread finished is on disk; writers
    /// waiting at the same time share one flush ([`GroupFlush`]).
    fn durable(&self) -> Result<(), StoreError> {
        self.flusher
            .durable(|| self.db.flush().map(drop).map_err(|e| e.to_string()))
    }

    /// How many flushes the store has run for its writers.
    pub fn flushes(&self) -> u64 {
        self.flusher.flushes()
    }
}

fn user_device_key(user: &UserId, device: DeviceId) -> Vec<u8> {
    let mut k = user_key(user).to_vec();
    k.push(0);
    k.extend_from_slice(&device.0);
    k
}

impl Store for SledStore {
    fn create_user(
        &self,
        user: &UserRecord,
        device: &DeviceRecord,
        admission: Admission,
    ) -> Result<Created, StoreError> {
        let name = user_key(&user.user).to_vec();
        let device_id = device.certificate.device;
        let result = (&self.users, &self.devices, &self.user_devices)
            .transaction(|(users, devices, user_devices)| -> TxResult<Created> {
                if users.get(&name)?.is_some() || devices.get(device_id.0)?.is_some() {
                    return Ok(Created::Taken);
                }
                // The administrator is the first account: the users tree is
                // empty. A marker key makes this check part of the transaction.
                let first = users.get(b"\0admin")?.is_none();
                if !first && admission == Admission::OnlyFirst {
                    return Ok(Created::NotFirst);
                }
                let mut record = user.clone();
                record.admin = first;
                if first {
                    users.insert(b"\0admin".as_slice(), name.as_slice())?;
                }
                users.insert(name.as_slice(), enc(&record))?;
                devices.insert(device_id.0.as_slice(), enc(device))?;
                user_devices.insert(user_device_key(&user.user, device_id), &[])?;
                Ok(if first {
                    Created::Admin
                } else {
                    Created::Member
                })
            })
            .map_err(tx_err)?;
        self.durable()?;
        Ok(result)
    }

    fn admin_exists(&self) -> Result<bool, StoreError> {
        Ok(self.users.get(b"\0admin")?.is_some())
    }

    fn user(&self, user: &UserId) -> Result<Option<UserRecord>, StoreError> {
        self.users
            .get(user_key(user))?
            .map(|v| dec("users", &v))
            .transpose()
    }

    fn put_recovery(
        &self,
        user: &UserId,
        verifier: [u8; 32],
        kit: &[u8],
    ) -> Result<(), StoreError> {
        let mut value = verifier.to_vec();
        value.extend_from_slice(kit);
        self.recovery.insert(user_key(user), value)?;
        self.durable()
    }

    fn recovery(&self, user: &UserId) -> Result<Option<RecoveryRecord>, StoreError> {
        match self.recovery.get(user_key(user))? {
            None => Ok(None),
            Some(v) if v.len() > 32 => {
                let (verifier, kit) = v.split_at(32);
                Ok(Some((verifier.try_into().expect("32 bytes"), kit.to_vec())))
            }
            Some(_) => Err(StoreError::Corrupt("recovery")),
        }
    }

    fn add_device(&self, device: &DeviceRecord) -> Result<bool, StoreError> {
        let id = device.certificate.device;
        let user = device.certificate.user.clone();
        let added = (&self.devices, &self.user_devices)
            .transaction(|(devices, user_devices)| -> TxResult<bool> {
                if devices.get(id.0)?.is_some() {
                    return Ok(false);
                }
                devices.insert(id.0.as_slice(), enc(device))?;
                user_devices.insert(user_device_key(&user, id), &[])?;
                Ok(true)
            })
            .map_err(tx_err)?;
        self.durable()?;
        Ok(added)
    }

    fn devices(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        let mut prefix = user_key(user).to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.user_devices.scan_prefix(&prefix) {
            let (k, _) = item?;
            let id: [u8; 16] = k[prefix.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("user_devices"))?;
            if let Some(d) = self.device(DeviceId(id))? {
                out.push(d);
            }
        }
        Ok(out)
    }

    fn device(&self, device: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        self.devices
            .get(device.0)?
            .map(|v| dec("devices", &v))
            .transpose()
    }

    fn revoke_device(&self, revocation: &DeviceRevocation) -> Result<bool, StoreError> {
        let device = revocation.device;
        let sessions: Vec<sled::IVec> = self
            .sessions
            .iter()
            .filter_map(|item| {
                let (key, value) = item.ok()?;
                let session: SessionRecord = dec("sessions", &value).ok()?;
                (session.device == device).then_some(key)
            })
            .collect();
        let key_packages: Vec<sled::IVec> = self
            .key_packages
            .scan_prefix(device.0)
            .keys()
            .collect::<Result<_, _>>()?;
        let revoked = (&self.revocations, &self.sessions, &self.key_packages)
            .transaction(|(revocations, sessions_tx, kps)| -> TxResult<bool> {
                if revocations.get(device.0)?.is_some() {
                    return Ok(false);
                }
                revocations.insert(device.0.as_slice(), enc(revocation))?;
                for key in &sessions {
                    sessions_tx.remove(key.clone())?;
                }
                for key in &key_packages {
                    kps.remove(key.clone())?;
                }
                Ok(true)
            })
            .map_err(tx_err)?;
        self.durable()?;
        Ok(revoked)
    }

    fn revocation(&self, device: DeviceId) -> Result<Option<DeviceRevocation>, StoreError> {
        self.revocations
            .get(device.0)?
            .map(|v| dec("revocations", &v))
            .transpose()
    }

    fn revocations(&self) -> Result<Vec<DeviceRevocation>, StoreError> {
        self.revocations
            .iter()
            .values()
            .map(|v| dec("revocations", &v?))
            .collect()
    }

    fn put_invite(&self, code_hash: [u8; 32], invite: &InviteRecord) -> Result<(), StoreError> {
        self.invites.insert(code_hash, enc(invite))?;
        self.durable()
    }

    fn take_invite(&self, code_hash: [u8; 32]) -> Result<Option<InviteRecord>, StoreError> {
        let taken = self.invites.remove(code_hash)?;
        self.durable()?;
        taken.map(|v| dec("invites", &v)).transpose()
    }

    fn put_session(&self, token_hash: [u8; 32], session: &SessionRecord) -> Result<(), StoreError> {
        self.sessions.insert(token_hash, enc(session))?;
        self.durable()
    }

    fn session(&self, token_hash: [u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        self.sessions
            .get(token_hash)?
            .map(|v| dec("sessions", &v))
            .transpose()
    }

    fn delete_session(&self, token_hash: [u8; 32]) -> Result<(), StoreError> {
        self.sessions.remove(token_hash)?;
        self.durable()
    }

    fn add_key_packages(&self, device: DeviceId, kps: &[Vec<u8>]) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        for kp in kps {
            let mut key = device.0.to_vec();
            key.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
            batch.insert(key, kp.as_slice());
        }
        self.key_packages.apply_batch(batch)?;
        self.durable()?;
        self.key_package_count(device)
    }

    fn key_package_count(&self, device: DeviceId) -> Result<usize, StoreError> {
        Ok(self.key_packages.scan_prefix(device.0).count())
    }

    fn take_key_package(&self, device: DeviceId) -> Result<Option<Vec<u8>>, StoreError> {
        loop {
            let Some(first) = self.key_packages.scan_prefix(device.0).next() else {
                return Ok(None);
            };
            let (key, value) = first?;
            // Compare-and-swap to nothing: if two callers race for the same
            // KeyPackage, exactly one gets it and the other tries the next.
            if self
                .key_packages
                .compare_and_swap(&key, Some(&value), None as Option<&[u8]>)?
                .is_ok()
            {
                self.durable()?;
                return Ok(Some(value.to_vec()));
            }
        }
    }

    fn create_space(&self, space: &SpaceRecord) -> Result<bool, StoreError> {
        let created = self
            .spaces
            .compare_and_swap(space.id.0, None as Option<&[u8]>, Some(enc_space(space)))?
            .is_ok();
        self.durable()?;
        Ok(created)
    }

    fn space(&self, id: SpaceId) -> Result<Option<SpaceRecord>, StoreError> {
        self.spaces.get(id.0)?.map(|v| dec_space(&v)).transpose()
    }

    fn spaces(&self) -> Result<Vec<SpaceRecord>, StoreError> {
        self.spaces.iter().map(|item| dec_space(&item?.1)).collect()
    }

    fn append(&self, append: Append<'_>) -> Result<(), StoreError> {
        let entries: Vec<Logged<'_>> = append
            .entry
            .map(|entry| Logged {
                entry,
                welcome: append.welcome,
            })
            .into_iter()
            .collect();
        self.append_all(append.space, &entries)
    }

    fn append_all(&self, space: &SpaceRecord, entries: &[Logged<'_>]) -> Result<(), StoreError> {
        let space_bytes = enc_space(space);
        let id = space.id;
        let mut logged = Vec::with_capacity(entries.len());
        let mut queued = Vec::new();
        let mut bodies = Vec::new();
        for item in entries {
            let key = log_key(id, item.entry.seq);
            if let Some((welcome, devices)) = item.welcome {
                for device in devices {
                    let mut k = device.0.to_vec();
                    k.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
                    queued.push((k, key));
                }
                bodies.push((key, welcome));
            }
            logged.push((key, enc(item.entry)));
        }
        (
            &self.spaces,
            &self.log,
            &self.welcomes,
            &self.welcome_bodies,
        )
            .transaction(|(spaces, log, welcomes, welcome_bodies)| -> TxResult<()> {
                spaces.insert(id.0.as_slice(), space_bytes.as_slice())?;
                for (k, v) in &logged {
                    log.insert(k.as_slice(), v.as_slice())?;
                }
                for (reference, welcome) in &bodies {
                    welcome_bodies.insert(reference.as_slice(), *welcome)?;
                }
                for (k, reference) in &queued {
                    welcomes.insert(k.as_slice(), reference.as_slice())?;
                }
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable()
    }

    fn entries(
        &self,
        space: SpaceId,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in self
            .log
            .range(log_key(space, from)..=log_key(space, u64::MAX))
        {
            let (_, v) = item?;
            let entry: LogEntry = dec("log", &v)?;
            bytes += entry.payload.len();
            out.push(entry);
            if out.len() >= limit || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn welcomes(
        &self,
        device: DeviceId,
        limit: usize,
    ) -> Result<Vec<(u64, SpaceId, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.welcomes.scan_prefix(device.0).take(limit) {
            let (k, reference) = item?;
            let id = u64::from_be_bytes(
                k[16..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("welcomes"))?,
            );
            if reference.len() != 24 {
                return Err(StoreError::Corrupt("welcomes"));
            }
            let space = SpaceId(reference[..16].try_into().expect("16 bytes"));
            let body = self
                .welcome_bodies
                .get(&reference)?
                .ok_or(StoreError::Corrupt("welcome_bodies"))?;
            out.push((id, space, body.to_vec()));
        }
        Ok(out)
    }

    fn welcome_count(&self, device: DeviceId) -> Result<usize, StoreError> {
        Ok(self.welcomes.scan_prefix(device.0).count())
    }

    fn delete_welcome(&self, device: DeviceId, id: u64) -> Result<bool, StoreError> {
        let mut k = device.0.to_vec();
        k.extend_from_slice(&id.to_be_bytes());
        let existed = self.welcomes.remove(k)?.is_some();
        if existed {
            self.durable()?;
        }
        Ok(existed)
    }

    fn put_public(&self, doc: &PublicRecord) -> Result<(), StoreError> {
        self.public
            .insert(public_key(doc.space, &doc.id), enc_public(doc))?;
        self.durable()
    }

    fn public_doc(&self, space: SpaceId, id: &str) -> Result<Option<PublicRecord>, StoreError> {
        self.public
            .get(public_key(space, id))?
            .map(|v| dec_public(&v))
            .transpose()
    }

    fn public_docs(&self, space: SpaceId) -> Result<Vec<PublicRecord>, StoreError> {
        self.public
            .scan_prefix(space.0)
            .map(|item| dec_public(&item?.1))
            .collect()
    }

    fn all_public_docs(&self) -> Result<Vec<PublicRecord>, StoreError> {
        self.public
            .iter()
            .map(|item| dec_public(&item?.1))
            .collect()
    }

    fn withdraw_public(
        &self,
        space: SpaceId,
        id: &str,
        tombstone: &Tombstone,
    ) -> Result<Withdrawn, StoreError> {
        let key = public_key(space, id);
        let stone = enc(tombstone);
        let outcome = (&self.public, &self.withdrawn)
            .transaction(|(public, withdrawn)| -> TxResult<Withdrawn> {
                let Some(bytes) = public.get(key.as_slice())? else {
                    return Ok(Withdrawn::Missing);
                };
                let copy: PublicRecord = dec_public(&bytes)
                    .map_err(sled::transaction::ConflictableTransactionError::Abort)?;
                if copy.updated != tombstone.copy_updated {
                    return Ok(Withdrawn::Changed);
                }
                public.remove(key.as_slice())?;
                withdrawn.insert(key.as_slice(), stone.as_slice())?;
                Ok(Withdrawn::Done)
            })
            .map_err(tx_err)?;
        if outcome == Withdrawn::Done {
            self.durable()?;
        }
        Ok(outcome)
    }

    fn put_aggregate(&self, record: &AggregateRecord) -> Result<(), StoreError> {
        self.aggregates
            .insert(public_key(record.space, &record.id), enc(record))?;
        self.durable()
    }

    fn aggregate(&self, space: SpaceId, id: &str) -> Result<Option<AggregateRecord>, StoreError> {
        self.aggregates
            .get(public_key(space, id))?
            .map(|v| dec("aggregates", &v))
            .transpose()
    }

    fn aggregates(&self, space: SpaceId) -> Result<Vec<AggregateRecord>, StoreError> {
        self.aggregates
            .scan_prefix(space.0)
            .map(|item| dec("aggregates", &item?.1))
            .collect()
    }

    fn all_aggregates(&self) -> Result<Vec<AggregateRecord>, StoreError> {
        self.aggregates
            .iter()
            .map(|item| dec("aggregates", &item?.1))
            .collect()
    }

    fn delete_aggregate(&self, space: SpaceId, id: &str) -> Result<bool, StoreError> {
        let existed = self.aggregates.remove(public_key(space, id))?.is_some();
        if existed {
            self.durable()?;
        }
        Ok(existed)
    }

    fn tombstone(&self, space: SpaceId, id: &str) -> Result<Option<Tombstone>, StoreError> {
        self.withdrawn
            .get(public_key(space, id))?
            .map(|v| dec("withdrawn", &v))
            .transpose()
    }

    fn charge(&self, user: &UserId, bytes: u64, quota: u64) -> Result<Option<u64>, StoreError> {
        let key = user_key(user);
        let mut result = None;
        self.usage.fetch_and_update(key, |old| {
            let used = old
                .and_then(|v| v.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            match used.checked_add(bytes).filter(|t| *t <= quota) {
                Some(total) => {
                    result = Some(total);
                    Some(total.to_be_bytes().to_vec())
                }
                None => {
                    result = None;
                    old.map(|v| v.to_vec())
                }
            }
        })?;
        self.durable()?;
        Ok(result)
    }

    fn notify(&self, user: &UserId) -> Result<Option<NotifyRecord>, StoreError> {
        self.notify
            .get(user_key(user))?
            .map(|v| dec("notify", &v))
            .transpose()
    }

    fn put_notify(&self, user: &UserId, record: Option<&NotifyRecord>) -> Result<(), StoreError> {
        match record {
            Some(r) => self.notify.insert(user_key(user), enc(r))?,
            None => self.notify.remove(user_key(user))?,
        };
        self.durable()
    }

    fn all_notify(&self) -> Result<Vec<(UserId, NotifyRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.notify.iter() {
            let (k, v) = item?;
            let user = std::str::from_utf8(&k)
                .ok()
                .and_then(|u| UserId::new(u).ok())
                .ok_or(StoreError::Corrupt("notify"))?;
            out.push((user, dec("notify", &v)?));
        }
        Ok(out)
    }

    fn listing(&self, space: SpaceId) -> Result<Option<Listing>, StoreError> {
        self.directory
            .get(space.0)?
            .map(|v| dec_listing(&v))
            .transpose()
    }

    fn put_listing(&self, space: SpaceId, listing: Option<&Listing>) -> Result<(), StoreError> {
        match listing {
            Some(l) => self.directory.insert(space.0, enc_listing(l))?,
            None => self.directory.remove(space.0)?,
        };
        self.durable()
    }

    fn listings(&self) -> Result<Vec<(SpaceId, Listing)>, StoreError> {
        let mut out = Vec::new();
        for item in self.directory.iter() {
            let (k, v) = item?;
            let id = <[u8; 16]>::try_from(&k[..]).map_err(|_| StoreError::Corrupt("directory"))?;
            out.push((SpaceId(id), dec_listing(&v)?));
        }
        Ok(out)
    }

    fn put_join_request(
        &self,
        space: SpaceId,
        user: &UserId,
        request: Option<&JoinRequest>,
    ) -> Result<(), StoreError> {
        let mut key = space.0.to_vec();
        key.extend_from_slice(user_key(user));
        match request {
            Some(r) => self.join_requests.insert(key, enc(r))?,
            None => self.join_requests.remove(key)?,
        };
        self.durable()
    }

    fn join_requests(&self, space: SpaceId) -> Result<Vec<(UserId, JoinRequest)>, StoreError> {
        let mut out = Vec::new();
        for item in self.join_requests.scan_prefix(space.0) {
            let (k, v) = item?;
            let user = std::str::from_utf8(&k[16..])
                .ok()
                .and_then(|u| UserId::new(u).ok())
                .ok_or(StoreError::Corrupt("join_requests"))?;
            out.push((user, dec("join_requests", &v)?));
        }
        Ok(out)
    }

    fn all_join_requests(&self) -> Result<Vec<(SpaceId, UserId, JoinRequest)>, StoreError> {
        let mut out = Vec::new();
        for item in self.join_requests.iter() {
            let (k, v) = item?;
            let corrupt = || StoreError::Corrupt("join_requests");
            let space =
                <[u8; 16]>::try_from(k.get(..16).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
            let user = std::str::from_utf8(&k[16..])
                .ok()
                .and_then(|u| UserId::new(u).ok())
                .ok_or_else(corrupt)?;
            out.push((SpaceId(space), user, dec("join_requests", &v)?));
        }
        Ok(out)
    }

    fn intake(&self, space: SpaceId) -> Result<Option<IntakeRecord>, StoreError> {
        self.intake
            .get(space.0)?
            .map(|v| dec("intake", &v))
            .transpose()
    }

    fn put_intake(&self, space: SpaceId, intake: &IntakeRecord) -> Result<bool, StoreError> {
        let mut kept = false;
        let mut corrupt = false;
        self.intake.fetch_and_update(space.0, |old| {
            let old = match old.map(|v| dec::<IntakeRecord>("intake", v)) {
                Some(Ok(old)) => Some(old),
                Some(Err(_)) => {
                    corrupt = true;
                    None
                }
                None => None,
            };
            kept = match &old {
                None => true,
                Some(o) => {
                    o.epoch < intake.epoch
                        || (o.epoch == intake.epoch && o.recipient == intake.recipient)
                }
            };
            if kept && old.as_ref().is_none_or(|o| o.epoch < intake.epoch) {
                Some(enc(intake))
            } else {
                old.map(|o| enc(&o))
            }
        })?;
        if corrupt {
            return Err(StoreError::Corrupt("intake"));
        }
        self.durable()?;
        Ok(kept)
    }

    fn create_drop_box(&self, id: [u8; 16], record: &DropBoxRecord) -> Result<bool, StoreError> {
        let created = self
            .drop_boxes
            .compare_and_swap(id, None as Option<&[u8]>, Some(enc(record)))?
            .is_ok();
        self.durable()?;
        Ok(created)
    }

    fn drop_box(&self, id: [u8; 16]) -> Result<Option<DropBoxRecord>, StoreError> {
        self.drop_boxes
            .get(id)?
            .map(|v| dec("drop_boxes", &v))
            .transpose()
    }

    fn drop_boxes(&self, space: SpaceId) -> Result<Vec<([u8; 16], DropBoxRecord)>, StoreError> {
        let mut all = self.every_drop_box()?;
        all.retain(|(_, record)| record.space == space);
        Ok(all)
    }

    fn every_drop_box(&self) -> Result<Vec<([u8; 16], DropBoxRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.drop_boxes.iter() {
            let (k, v) = item?;
            let id = <[u8; 16]>::try_from(&k[..]).map_err(|_| StoreError::Corrupt("drop_boxes"))?;
            out.push((id, dec("drop_boxes", &v)?));
        }
        Ok(out)
    }

    fn update_drop_box(
        &self,
        id: [u8; 16],
        change: &mut dyn FnMut(&mut DropBoxRecord) -> bool,
    ) -> Result<Option<(DropBoxRecord, bool)>, StoreError> {
        let mut result = None;
        let mut corrupt = false;
        self.drop_boxes.fetch_and_update(id, |old| {
            let old = old?;
            let Ok(mut record) = dec::<DropBoxRecord>("drop_boxes", old) else {
                corrupt = true;
                return Some(old.to_vec());
            };
            let before = record.clone();
            let kept = change(&mut record);
            let bytes = if kept { enc(&record) } else { old.to_vec() };
            result = Some((if kept { record } else { before }, kept));
            Some(bytes)
        })?;
        if corrupt {
            return Err(StoreError::Corrupt("drop_boxes"));
        }
        self.durable()?;
        Ok(result)
    }

    fn put_submission(
        &self,
        dropbox: [u8; 16],
        id: [u8; 16],
        submission: Option<&SubmissionRecord>,
    ) -> Result<(), StoreError> {
        let mut key = dropbox.to_vec();
        key.extend_from_slice(&id);
        match submission {
            Some(s) => self.submissions.insert(key, enc(s))?,
            None => self.submissions.remove(key)?,
        };
        self.durable()
    }

    fn submissions(
        &self,
        dropbox: [u8; 16],
    ) -> Result<Vec<([u8; 16], SubmissionRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.submissions.scan_prefix(dropbox) {
            let (k, v) = item?;
            let id =
                <[u8; 16]>::try_from(&k[16..]).map_err(|_| StoreError::Corrupt("submissions"))?;
            out.push((id, dec("submissions", &v)?));
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.durable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amicus_core::identity::UserIdentity;

    /// Three writers: the first flushes alone (its flush began before the
    /// others finished writing); the two that wait meanwhile share one
    /// flush, run by one of them.
    /// A writer on its own thread whose flush has begun and goes on (with
    /// `outcome`) once the returned sender is used.
    fn held_flush(
        group: &std::sync::Arc<GroupFlush>,
        outcome: fn() -> Result<(), String>,
    ) -> (
        std::thread::JoinHandle<Result<(), StoreError>>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (started, is_started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let group = group.clone();
        let writer = std::thread::spawn(move || {
            group.durable(|| {
                started.send(()).unwrap();
                released.recv().unwrap();
                outcome()
            })
        });
        is_started.recv().unwrap();
        (writer, release)
    }

    /// Waits until `n` tickets were handed out.
    fn tickets(group: &GroupFlush, n: u64) {
        while group.state.lock().unwrap().tickets < n {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn writers_waiting_for_a_flush_share_the_next_one() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let group = Arc::new(GroupFlush::default());
        let (first, release) = held_flush(&group, || Ok(()));
        let later_flushes = Arc::new(AtomicU64::new(0));
        let later: Vec<_> = (0..2)
            .map(|_| {
                let (group, count) = (group.clone(), later_flushes.clone());
                std::thread::spawn(move || {
                    group.durable(|| {
                        count.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                })
            })
            .collect();
        tickets(&group, 3);
        release.send(()).unwrap();
        first.join().unwrap().unwrap();
        for writer in later {
            writer.join().unwrap().unwrap();
        }
        assert_eq!(later_flushes.load(Ordering::SeqCst), 1);
        assert_eq!(group.flushes(), 2);
    }

    /// A flush that panics fails the writers it was to cover instead of
    /// leaving them waiting, and the next writer's flush runs.
    #[test]
    fn a_panicking_flush_leaves_no_writer_waiting() {
        use std::sync::Arc;
        let group = Arc::new(GroupFlush::default());
        let (first, release) = held_flush(&group, || panic!("the disk layer panicked"));
        let waiting = {
            let group = group.clone();
            std::thread::spawn(move || group.durable(|| Ok(())))
        };
        tickets(&group, 2);
        release.send(()).unwrap();
        assert!(first.join().is_err(), "the panic reaches its own writer");
        // The waiting writer's write came after the panicking flush began:
        // it runs its own flush.
        waiting.join().unwrap().unwrap();
        group.durable(|| Ok(())).unwrap();
        assert_eq!(group.flushes(), 3);
    }

    /// A failed flush fails every writer it was to cover, and the next
    /// writer's own flush is tried again.
    #[test]
    fn a_failed_flush_fails_the_writers_it_covered_and_the_next_flush_is_tried() {
        let group = GroupFlush::default();
        let failed = group.durable(|| Err("disk full".into()));
        assert!(matches!(failed, Err(StoreError::Database(ref why)) if why == "disk full"));
        group.durable(|| Ok(())).unwrap();
        assert_eq!(group.flushes(), 2);
    }

    fn user(name: &str) -> (UserRecord, DeviceRecord) {
        let identity = UserIdentity::generate(UserId::new(name).unwrap());
        let device = identity.new_device();
        (
            UserRecord {
                user: identity.user().clone(),
                identity_key: identity.public(),
                admin: false,
                created: 0,
            },
            DeviceRecord {
                certificate: device.certificate().clone(),
                created: 0,
            },
        )
    }

    #[test]
    fn the_first_user_is_the_administrator_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (a, da) = user("alice");
        let (b, db) = user("bob");
        assert_eq!(
            store.create_user(&a, &da, Admission::OnlyFirst).unwrap(),
            Created::Admin
        );
        assert_eq!(
            store.create_user(&b, &db, Admission::OnlyFirst).unwrap(),
            Created::NotFirst
        );
        assert_eq!(
            store.create_user(&b, &db, Admission::Any).unwrap(),
            Created::Member
        );
        assert_eq!(
            store.create_user(&b, &db, Admission::Any).unwrap(),
            Created::Taken
        );
        assert!(store.user(&a.user).unwrap().unwrap().admin);
        assert!(!store.user(&b.user).unwrap().unwrap().admin);
        assert_eq!(store.devices(&a.user).unwrap(), vec![da.clone()]);
        // A new account naming an existing device id takes nothing.
        let (c, _) = user("carol");
        assert_eq!(
            store.create_user(&c, &da, Admission::Any).unwrap(),
            Created::Taken
        );
        assert!(!store.add_device(&da).unwrap());
        assert!(store.user(&c.user).unwrap().is_none());
    }

    #[test]
    fn key_packages_are_handed_out_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let d = DeviceId::random();
        assert_eq!(
            store
                .add_key_packages(d, &[vec![1], vec![2], vec![3]])
                .unwrap(),
            3
        );
        let mut got = Vec::new();
        while let Some(kp) = store.take_key_package(d).unwrap() {
            got.push(kp);
        }
        assert_eq!(got, vec![vec![1], vec![2], vec![3]]);
        assert_eq!(store.key_package_count(d).unwrap(), 0);
    }

    #[test]
    fn quota_charges_refuse_what_would_exceed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let u = UserId::new("alice").unwrap();
        assert_eq!(store.charge(&u, 60, 100).unwrap(), Some(60));
        assert_eq!(store.charge(&u, 60, 100).unwrap(), None);
        assert_eq!(store.charge(&u, 40, 100).unwrap(), Some(100));
    }

    /// A withdrawal removes the copy it was signed for, never one written
    /// since: the comparison is made in the same transaction.
    #[test]
    fn a_withdrawal_removes_only_the_copy_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let space = SpaceId([3; 16]);
        let bob = UserId::new("bob").unwrap();
        let copy = |updated| PublicRecord {
            space,
            id: "arret".into(),
            title: "Arrêt".into(),
            body: String::new(),
            marks: Vec::new(),
            language: None,
            kind: "document".into(),
            year: None,
            file: None,
            provenance: None,
            author: bob.clone(),
            updated,
        };
        let stone = |copy_updated| Tombstone {
            withdrawal: amicus_core::publication::Withdrawal {
                device: "00".repeat(16),
                signature: "00".repeat(64),
            },
            by: bob.clone(),
            copy_updated,
            at: 9,
        };
        assert_eq!(
            store.withdraw_public(space, "arret", &stone(5)).unwrap(),
            Withdrawn::Missing
        );
        store.put_public(&copy(6)).unwrap();
        assert_eq!(
            store.withdraw_public(space, "arret", &stone(5)).unwrap(),
            Withdrawn::Changed
        );
        assert!(store.public_doc(space, "arret").unwrap().is_some());
        assert_eq!(store.tombstone(space, "arret").unwrap(), None);
        assert_eq!(
            store.withdraw_public(space, "arret", &stone(6)).unwrap(),
            Withdrawn::Done
        );
        assert!(store.public_doc(space, "arret").unwrap().is_none());
        assert_eq!(store.tombstone(space, "arret").unwrap(), Some(stone(6)));
    }

    /// The intake key kept is that of the latest epoch: an older one, or
    /// another key for the same epoch, changes nothing.
    #[test]
    fn an_older_intake_key_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let space = SpaceId([3; 16]);
        let key = |recipient: u8, epoch: u64| IntakeRecord {
            recipient: [recipient; 32],
            epoch,
            by: DeviceId([9; 16]),
            at: 1,
        };
        assert!(store.put_intake(space, &key(1, 4)).unwrap());
        assert!(
            store.put_intake(space, &key(1, 4)).unwrap(),
            "the same key again"
        );
        assert!(!store.put_intake(space, &key(2, 4)).unwrap());
        assert!(!store.put_intake(space, &key(2, 3)).unwrap());
        assert_eq!(store.intake(space).unwrap().unwrap().recipient, [1; 32]);
        assert!(store.put_intake(space, &key(2, 5)).unwrap());
        assert_eq!(store.intake(space).unwrap().unwrap(), key(2, 5));
    }

    /// A listing stored before spaces could be open reads as closed; one
    /// stored now keeps `open`.
    #[test]
    fn a_listing_of_version_1_reads_as_closed() {
        #[derive(Serialize)]
        struct Old<'a> {
            name: &'a str,
            description: &'a str,
            listed_by: UserId,
            at: u64,
        }
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (old, new) = (SpaceId([1; 16]), SpaceId([2; 16]));
        let amina = UserId::new("amina").unwrap();
        let v1 = enc(&Old {
            name: "Réseau",
            description: "",
            listed_by: amina.clone(),
            at: 7,
        });
        assert_eq!(v1[0], 1);
        store.directory.insert(old.0, v1).unwrap();
        let listing = Listing {
            name: "Ouvert".into(),
            description: "À tous".into(),
            listed_by: amina.clone(),
            at: 8,
            open: true,
        };
        store.put_listing(new, Some(&listing)).unwrap();
        assert_eq!(
            store.listing(old).unwrap(),
            Some(Listing {
                name: "Réseau".into(),
                description: String::new(),
                listed_by: amina,
                at: 7,
                open: false,
            })
        );
        assert_eq!(store.listing(new).unwrap(), Some(listing));
        assert_eq!(store.listings().unwrap().len(), 2);
    }

    /// A public copy stored before copies kept their formatting reads
    /// without marks; one stored now keeps them.
    #[test]
    fn a_public_copy_of_version_1_reads_without_marks() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let space = SpaceId([3; 16]);
        let bob = UserId::new("bob").unwrap();
        let old = PublicRecordV1 {
            space,
            id: "ancien".into(),
            title: "Arrêt".into(),
            body: "Texte".into(),
            language: Some("fr".into()),
            kind: "document".into(),
            year: Some(2020),
            file: None,
            provenance: None,
            author: bob.clone(),
            updated: 4,
        };
        let v1 = enc(&old);
        assert_eq!(v1[0], 1);
        store
            .public
            .insert(public_key(space, "ancien"), v1)
            .unwrap();
        let new = PublicRecord {
            space,
            id: "nouveau".into(),
            title: "Arrêt".into(),
            body: "Texte".into(),
            marks: vec![amicus_core::publication::TextMark {
                mark: "bold".into(),
                start: 0,
                end: 5,
            }],
            language: None,
            kind: "document".into(),
            year: None,
            file: None,
            provenance: None,
            author: bob,
            updated: 5,
        };
        store.put_public(&new).unwrap();
        let read = store.public_doc(space, "ancien").unwrap().unwrap();
        assert!(read.marks.is_empty());
        assert_eq!(
            (read.body.as_str(), read.updated, read.year),
            ("Texte", 4, Some(2020))
        );
        assert_eq!(store.public_doc(space, "nouveau").unwrap(), Some(new));
        assert_eq!(store.public_docs(space).unwrap().len(), 2);
    }
}
