//! Drop boxes as members see them (PROTOCOL §11.6): the server's listing
//! checked against the space's own intake keys, labels read from the
//! library, and sealed parts opened.
//!
//! The server serves a key to the boxes' pages; a member's device checks
//! that key is the one the space derives for the epoch the server names,
//! and gives a box's link only then. A link pins that key by its
//! fingerprint, so a server that swaps the key is refused by the page,
//! and a key from before a removal is replaced by the next member device
//! that lists the boxes (or commits the removal).

use std::collections::BTreeMap;

use crate::api;
use crate::intake::drop::{self, BoxId, Part};
use crate::intake::{self, IntakePublicKey};
use crate::space::Space;

/// The most days a drop box stays open.
pub const MAX_DAYS: u32 = 365;

/// The state of the key the server serves to a space's drop boxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// No key published: no box can take submissions.
    Missing,
    /// The space's key in force.
    Current,
    /// A key of the space, from before the intake last rotated (a
    /// removal): being replaced.
    Stale,
    /// A key of the space, but this device does not know whether it is in
    /// force (it has not read the epoch record that says where the intake
    /// stands): no link is given until it does.
    Unknown,
    /// Not a key this device can derive for the epoch the server names:
    /// a server (or member) that swapped it. No link is given.
    Foreign,
}

impl KeyState {
    /// A stable name for interfaces.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Current => "current",
            Self::Stale => "stale",
            Self::Unknown => "unknown",
            Self::Foreign => "foreign",
        }
    }
}

/// One drop box, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropBoxView {
    /// The box (hex).
    pub id: String,
    /// Its label, from inside the space (absent if its library entry has
    /// not arrived).
    pub label: Option<String>,
    /// Who opened it.
    pub created_by: String,
    /// When (Unix seconds).
    pub created: u64,
    /// When it stops taking submissions (Unix seconds).
    pub expires: u64,
    /// The bytes it may take.
    pub quota: u64,
    /// The bytes taken.
    pub used: u64,
    /// When a member closed it.
    pub closed: Option<u64>,
    /// The link's fragment (what follows `/drop/#`), given only when the
    /// server serves the space's key in force.
    pub fragment: Option<String>,
    /// The complete submissions, newest first.
    pub submissions: Vec<api::Submission>,
}

/// A space's drop boxes, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropBoxList {
    /// The key the server serves.
    pub key: KeyState,
    /// The boxes, newest first.
    pub boxes: Vec<DropBoxView>,
}

/// Checks the server's listing against `space`: the served key must be
/// the one the space derives for the epoch it names, and current.
pub fn check(
    space: &Space,
    labels: &BTreeMap<String, String>,
    listing: api::DropBoxes,
) -> DropBoxList {
    let in_force = space.intake_in_force();
    let served = listing.intake.as_ref().and_then(|i| {
        Some((
            i.epoch,
            IntakePublicKey::parse_age_recipient(&i.recipient).ok()?,
        ))
    });
    let key = match (&listing.intake, served) {
        (None, _) => KeyState::Missing,
        (Some(_), None) => KeyState::Foreign,
        (Some(_), Some((epoch, served))) => {
            let derived = space.intake_key_of(epoch).map(|k| k.public());
            match in_force {
                _ if derived.is_none_or(|d| d != served) => KeyState::Foreign,
                Some((e, _)) if e == epoch => KeyState::Current,
                Some((e, _)) if e > epoch => KeyState::Stale,
                // Not opened as far as this device knows, or opened again
                // later than it has read.
                _ => KeyState::Unknown,
            }
        }
    };
    let link_key = match (key, served) {
        (KeyState::Current, Some((_, k))) => Some(k),
        _ => None,
    };
    let mut boxes: Vec<DropBoxView> = listing
        .boxes
        .into_iter()
        .map(|b| {
            let mut submissions = b.submissions;
            submissions.sort_by_key(|s| std::cmp::Reverse(s.at));
            DropBoxView {
                fragment: match (BoxId::parse(&b.id), &link_key) {
                    (Some(id), Some(k)) => Some(drop::link_fragment(id, k)),
                    _ => None,
                },
                label: labels.get(&b.id).cloned(),
                id: b.id,
                created_by: b.created_by,
                created: b.created,
                expires: b.expires,
                quota: b.quota,
                used: b.used,
                closed: b.closed,
                submissions,
            }
        })
        .collect();
    boxes.sort_by_key(|b| std::cmp::Reverse(b.created));
    DropBoxList { key, boxes }
}

/// Why a sealed part could not be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not sealed to a key of this space that this device holds, damaged,
    /// or not an age file at all.
    Sealed(intake::IntakeError),
    /// Opened, but its content is malformed.
    Part(drop::PartError),
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Sealed(e) => write!(f, "the submission cannot be opened: {e}"),
            Self::Part(e) => write!(f, "the submission was opened but is malformed: {e}"),
        }
    }
}

/// Opens one sealed part with the space's intake key of `epoch` (as the
/// server recorded it), then with every other intake key this device
/// holds. The whole file is authenticated before anything is returned:
/// a damaged or forged part gives nothing.
pub fn open_part(space: &Space, epoch: u64, sealed: &[u8]) -> Result<Part, OpenError> {
    let mut keys = Vec::new();
    keys.extend(space.intake_key_of(epoch));
    keys.extend(space.every_intake_key());
    let plaintext = intake::open(&keys, sealed, sealed.len()).map_err(OpenError::Sealed)?;
    Part::parse(plaintext).map_err(OpenError::Part)
}
