//! Content keys: one per MLS epoch, derived from the MLS exporter.
//!
//! ```text
//! epoch secret  S_e = MLS-Exporter("amicus content v1", space id, 32)
//! content key   K_e = blake3::derive_key("amicus content key v1", S_e)
//! intake seed   I_e = blake3::derive_key("amicus intake key v1", S_e)
//! ```
//!
//! Current members derive `S_e` themselves: no key is ever distributed. A
//! removed member cannot derive the epochs after its removal, so it reads
//! nothing written afterwards. Right after each commit an **epoch record**
//! (an envelope of kind [`Kind::EpochRecord`] sealed under `K_e`) states the
//! roster of epoch `e` with roles and, only under history policy
//! [`HistoryPolicy::Full`], the secret and roster of epoch `e - 1`. A joiner
//! derives its join epoch from the Welcome and walks back through the
//! records: the whole history under `Full`, nothing before its join under
//! [`HistoryPolicy::SinceJoin`]. The price: stored content has no forward
//! secrecy against a member's device compromise; the history is the point.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::envelope::{self, EnvelopeError, Header, Kind, Opened, SealParams, SignerInfo};
use crate::identity::Device;
use crate::intake::IntakeSecretKey;
use crate::space::{HistoryPolicy, Role};
use crate::{DeviceId, SpaceId, StreamId, UserId};

/// The MLS exporter label of epoch secrets.
pub const EXPORTER_LABEL: &str = "amicus content v1";

/// A 32-byte secret of one epoch (zeroizes on drop, never printed).
#[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize, PartialEq, Eq)]
pub struct EpochSecret([u8; 32]);

impl core::fmt::Debug for EpochSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("EpochSecret(..)")
    }
}

impl EpochSecret {
    /// Wraps bytes exported from MLS.
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The content key of this epoch.
    pub fn content_key(&self) -> ContentKey {
        ContentKey(blake3::derive_key("amicus content key v1", &self.0))
    }

    /// The sealed-intake key of this epoch (used when the intake is opened or
    /// rotated at this epoch).
    pub fn intake_key(&self) -> IntakeSecretKey {
        IntakeSecretKey::from_seed(blake3::derive_key("amicus intake key v1", &self.0))
    }
}

/// The symmetric key that seals every envelope of one epoch.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ContentKey([u8; 32]);

impl core::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

impl ContentKey {
    /// Wraps raw key bytes (tests and benchmarks; real keys come from an
    /// [`EpochSecret`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn aead_key(&self) -> chacha20poly1305::Key {
        chacha20poly1305::Key::from(self.0)
    }
}

/// One device of an epoch's roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// The device's Ed25519 leaf key.
    pub signature_key: [u8; 32],
    /// The user's role in that epoch.
    pub role: Role,
}

/// The devices of one epoch, with roles.
pub type Roster = Vec<RosterEntry>;

/// What an epoch record states (postcard inside an envelope).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch this record is about.
    pub epoch: u64,
    /// The roster of that epoch.
    pub roster: Roster,
    /// The epoch whose intake key is in force (the intake was opened or
    /// last rotated then), if the space has an intake.
    pub intake_epoch: Option<u64>,
    /// Under history policy `full` only: the previous epoch's secret and roster.
    pub previous: Option<PreviousEpoch>,
}

/// The previous epoch, as handed on by an epoch record under `full` history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreviousEpoch {
    /// Its secret.
    pub secret: EpochSecret,
    /// Its roster.
    pub roster: Roster,
    /// The device whose commit began it, if the writer knows: the one
    /// device besides its space managers whose record of it is accepted.
    pub committer: Option<DeviceId>,
}

/// An epoch record as written before records named the previous epoch's
/// committer (read with `committer: None`).
#[derive(Deserialize)]
struct EpochRecordV1 {
    epoch: u64,
    roster: Roster,
    intake_epoch: Option<u64>,
    previous: Option<PreviousEpochV1>,
}

#[derive(Deserialize)]
struct PreviousEpochV1 {
    secret: EpochSecret,
    roster: Roster,
}

impl EpochRecord {
    /// Decodes a record's body, of either format.
    fn decode(body: &[u8]) -> Option<Self> {
        crate::decode_exact::<EpochRecord>(body).or_else(|| {
            let v1: EpochRecordV1 = crate::decode_exact(body)?;
            Some(EpochRecord {
                epoch: v1.epoch,
                roster: v1.roster,
                intake_epoch: v1.intake_epoch,
                previous: v1.previous.map(|p| PreviousEpoch {
                    secret: p.secret,
                    roster: p.roster,
                    committer: None,
                }),
            })
        })
    }
}

/// Why the key ring refused something.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRingError {
    /// The envelope itself was refused.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// An epoch record's content does not decode or names another epoch than
    /// the envelope it came in.
    #[error("malformed epoch record")]
    BadRecord,
    /// This device has no write role in the current epoch.
    #[error("this device may not write this kind of envelope in the current epoch")]
    NotAllowed,
    /// An epoch record signed by a device that is neither the epoch's
    /// committer nor a space manager in it: ignored.
    #[error("an epoch record from neither the epoch's committer nor a space manager")]
    RecordNotAuthorized,
}

struct EpochEntry {
    secret: EpochSecret,
    roster: Option<Roster>,
}

/// The epochs a member can read, with their rosters.
pub struct KeyRing {
    space: SpaceId,
    epochs: BTreeMap<u64, EpochEntry>,
}

impl core::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "KeyRing({}, epochs {:?})",
            self.space,
            self.epochs.keys().collect::<Vec<_>>()
        )
    }
}

/// The stored form of a key ring (secret: keep it encrypted at rest).
#[derive(Serialize, Deserialize)]
pub struct KeyRingState {
    space: SpaceId,
    epochs: Vec<(u64, EpochSecret, Option<Roster>)>,
}

impl KeyRing {
    /// An empty ring for `space`.
    pub fn new(space: SpaceId) -> Self {
        Self {
            space,
            epochs: BTreeMap::new(),
        }
    }

    /// The space.
    pub fn space(&self) -> SpaceId {
        self.space
    }

    /// Adds an epoch this member derived itself (from MLS) or learned from a
    /// record. A roster learned later fills in a missing one.
    pub fn insert(&mut self, epoch: u64, secret: EpochSecret, roster: Option<Roster>) {
        let entry = self.epochs.entry(epoch).or_insert(EpochEntry {
            secret,
            roster: None,
        });
        if entry.roster.is_none() {
            entry.roster = roster;
        }
    }

    /// The epochs whose secret is known, oldest first.
    pub fn epochs(&self) -> impl Iterator<Item = u64> + '_ {
        self.epochs.keys().copied()
    }

    /// The newest epoch known.
    pub fn latest(&self) -> Option<u64> {
        self.epochs.keys().next_back().copied()
    }

    /// The secret of `epoch`, if known.
    pub fn secret(&self, epoch: u64) -> Option<&EpochSecret> {
        self.epochs.get(&epoch).map(|e| &e.secret)
    }

    /// The roster of `epoch`, if known.
    pub fn roster(&self, epoch: u64) -> Option<&Roster> {
        self.epochs.get(&epoch).and_then(|e| e.roster.as_ref())
    }

    /// Every roster known, newest epoch first.
    pub fn rosters(&self) -> impl Iterator<Item = &Roster> {
        self.epochs.values().rev().filter_map(|e| e.roster.as_ref())
    }

    /// Seals `body` in the newest epoch as `device`.
    pub fn seal(
        &self,
        device: &Device,
        kind: Kind,
        stream: StreamId,
        seq: u64,
        log_head: [u8; 32],
        body: &[u8],
    ) -> Result<Vec<u8>, KeyRingError> {
        let epoch = self.latest().ok_or(KeyRingError::NotAllowed)?;
        let entry = &self.epochs[&epoch];
        let allowed = entry.roster.as_ref().is_some_and(|r| {
            r.iter()
                .any(|m| m.device == device.id() && m.role.may_write(kind))
        });
        if !allowed {
            return Err(KeyRingError::NotAllowed);
        }
        let params = SealParams {
            kind,
            space: self.space,
            stream,
            epoch,
            seq,
            log_head,
        };
        Ok(envelope::seal(
            device,
            &entry.secret.content_key(),
            params,
            body,
        ))
    }

    /// Decrypts and verifies an envelope of `stream`: known epoch, signer in
    /// that epoch's roster with a role that allows the kind. `in_force` is the
    /// epoch in force at the envelope's log position when the caller knows it.
    pub fn open(
        &self,
        bytes: &[u8],
        stream: StreamId,
        in_force: Option<u64>,
    ) -> Result<Opened, EnvelopeError> {
        let header = Header::parse(bytes)?;
        if header.space != self.space || header.stream != stream {
            return Err(EnvelopeError::WrongStream);
        }
        if let Some(expected) = in_force
            && expected != header.epoch
        {
            return Err(EnvelopeError::WrongEpoch {
                expected,
                found: header.epoch,
            });
        }
        let entry = self
            .epochs
            .get(&header.epoch)
            .ok_or(EnvelopeError::UnknownEpoch(header.epoch))?;
        let roster = entry
            .roster
            .as_ref()
            .ok_or(EnvelopeError::UnknownEpoch(header.epoch))?;
        envelope::open(
            bytes,
            &header,
            &entry.secret.content_key(),
            |device, kind| {
                roster
                    .iter()
                    .find(|m| m.device == device)
                    .map(|m| SignerInfo {
                        signature_key: m.signature_key,
                        allowed: m.role.may_write(kind),
                    })
            },
        )
    }

    /// Seals the record of the newest epoch; `previous_committer` is the
    /// device whose commit began the epoch before it, if known.
    pub fn seal_record(
        &self,
        device: &Device,
        records: StreamId,
        history: HistoryPolicy,
        intake_epoch: Option<u64>,
        previous_committer: Option<DeviceId>,
        log_head: [u8; 32],
    ) -> Result<Vec<u8>, KeyRingError> {
        let epoch = self.latest().ok_or(KeyRingError::NotAllowed)?;
        let roster = self
            .roster(epoch)
            .cloned()
            .ok_or(KeyRingError::NotAllowed)?;
        let previous = match history {
            HistoryPolicy::Full => epoch.checked_sub(1).and_then(|p| {
                let e = self.epochs.get(&p)?;
                Some(PreviousEpoch {
                    secret: e.secret.clone(),
                    roster: e.roster.clone()?,
                    committer: previous_committer,
                })
            }),
            HistoryPolicy::SinceJoin => None,
        };
        let record = EpochRecord {
            epoch,
            roster,
            intake_epoch,
            previous,
        };
        let body = postcard::to_allocvec(&record).expect("records always encode");
        self.seal(device, Kind::EpochRecord, records, epoch, log_head, &body)
    }

    /// Reads an epoch record: checks it like any envelope, then asks
    /// `authorized` whether its signer may write the record of its epoch
    /// (given that epoch's roster), and only then learns the previous
    /// epoch it hands on. Returns the record.
    pub fn ingest_record(
        &mut self,
        bytes: &[u8],
        records: StreamId,
        authorized: impl FnOnce(u64, DeviceId, &Roster) -> bool,
    ) -> Result<EpochRecord, KeyRingError> {
        let opened = self.open(bytes, records, None)?;
        if opened.header.kind != Kind::EpochRecord {
            return Err(KeyRingError::BadRecord);
        }
        let record = EpochRecord::decode(&opened.body).ok_or(KeyRingError::BadRecord)?;
        if record.epoch != opened.header.epoch {
            return Err(KeyRingError::BadRecord);
        }
        let roster = self.roster(record.epoch).ok_or(KeyRingError::BadRecord)?;
        if !authorized(record.epoch, opened.device, roster) {
            return Err(KeyRingError::RecordNotAuthorized);
        }
        if let (Some(prev), Some(p)) = (record.previous.as_ref(), record.epoch.checked_sub(1)) {
            self.insert(p, prev.secret.clone(), Some(prev.roster.clone()));
        }
        Ok(record)
    }

    /// The stored form.
    pub fn to_state(&self) -> KeyRingState {
        KeyRingState {
            space: self.space,
            epochs: self
                .epochs
                .iter()
                .map(|(e, v)| (*e, v.secret.clone(), v.roster.clone()))
                .collect(),
        }
    }

    /// Restores a stored ring.
    pub fn from_state(state: KeyRingState) -> Self {
        let mut ring = Self::new(state.space);
        for (e, s, r) in state.epochs {
            ring.insert(e, s, r);
        }
        ring
    }
}
