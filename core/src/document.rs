//! Encrypted Automerge documents.
//!
//! A [`Replica`] is one device's copy of one document stream (a filing, or
//! the space's library). Local edits are Automerge changes; [`Replica::flush`]
//! batches every change made since the last flush into one envelope (the
//! caller flushes every few seconds, so that timing and sizes reveal little
//! about typing). [`Replica::receive`] verifies and decrypts an envelope,
//! drops duplicates by (signer, message id), binds each Automerge actor id to
//! the first device that signed a change of it (a change of that actor signed
//! by anyone else is refused), buffers changes whose dependencies have not
//! arrived, and applies the rest. A refused envelope changes nothing.
//!
//! [`filing`] is the model of a strategic filing: title, rich text with marks,
//! comment threads anchored to the text, and named versions.

use std::collections::{HashMap, HashSet};

use automerge::{AutoCommit, Change, ChangeHash, ReadDoc};
use serde::{Deserialize, Serialize};

use crate::envelope::{EnvelopeError, Kind};
use crate::identity::Device;
use crate::keyring::{KeyRing, KeyRingError};
use crate::{DeviceId, MessageId, StreamId};

/// The most changes buffered while waiting for their dependencies.
pub const MAX_PENDING_CHANGES: usize = 100_000;

/// The most characters in a title or a name (filings, folders).
pub const MAX_NAME_CHARS: usize = 200;

/// A title or name as it is stored: without the spaces around it, not
/// empty, at most [`MAX_NAME_CHARS`] characters, on one line.
pub fn checked_name(raw: &str) -> Result<String, DocumentError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(DocumentError::BadName(
            "a title or name cannot be empty".into(),
        ));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(DocumentError::BadName(format!(
            "a title or name holds at most {MAX_NAME_CHARS} characters; this one has {chars}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(DocumentError::BadName(
            "a title or name is one line, without control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

/// The most characters in one comment or reply.
pub const MAX_COMMENT_CHARS: usize = 10_000;

/// A comment's text as it is stored: without the spaces around it, not
/// empty, at most [`MAX_COMMENT_CHARS`] characters (lines allowed).
pub fn checked_text(raw: &str) -> Result<String, DocumentError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(DocumentError::BadText("a comment cannot be empty".into()));
    }
    let chars = text.chars().count();
    if chars > MAX_COMMENT_CHARS {
        return Err(DocumentError::BadText(format!(
            "a comment holds at most {MAX_COMMENT_CHARS} characters; this one has {chars}"
        )));
    }
    Ok(text.to_owned())
}

/// Why a document operation failed. A refused envelope changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The envelope was refused (see the inner error).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// Sealing failed: this device has no write role in the current epoch.
    #[error(transparent)]
    KeyRing(#[from] KeyRingError),
    /// The decrypted body is not a document body of this version.
    #[error("malformed document body")]
    BadBody,
    /// A change's actor id is bound to another device than the signer: one
    /// member tried to write under another's actor id.
    #[error("an Automerge actor id already belongs to another device")]
    ActorMismatch,
    /// The envelope's kind does not belong on a document stream.
    #[error("unexpected envelope kind on a document stream")]
    WrongKind,
    /// A snapshot's document does not have the heads it declares.
    #[error("the snapshot's heads do not match its content")]
    SnapshotHeads,
    /// Too many changes are waiting for dependencies; the log is being
    /// withheld or flooded. Catch up from the server first.
    #[error("too many changes waiting for their dependencies")]
    TooManyPending,
    /// Automerge refused a change or a snapshot.
    #[error("automerge: {0}")]
    Automerge(String),
    /// A title or name is empty, too long or not one line
    /// ([`checked_name`]).
    #[error("{0}")]
    BadName(String),
    /// A comment is empty or too long ([`checked_text`]).
    #[error("{0}")]
    BadText(String),
    /// A text mentions someone who is not a member of the space.
    #[error("{0}")]
    Mention(String),
    /// Only a post's creator may edit it.
    #[error("{0}")]
    NotAuthor(String),
    /// The library refuses a change of its entries (no such entry, a
    /// folder into itself, a folder not empty).
    #[error(transparent)]
    Library(#[from] crate::library::LibraryError),
    /// A case record, a violation type or an aggregate is refused
    /// (a date in the future, an unknown country...).
    #[error(transparent)]
    Record(#[from] crate::monitoring::RecordError),
    /// The envelope names as the log its writer had read a head this
    /// device's log does not hold before it: its writer was shown another
    /// log (the server forked it), or it lies.
    #[error("written on a log this device was never shown (the server may have forked the log)")]
    UnknownLogHead,
}

fn am<E: core::fmt::Display>(e: E) -> DocumentError {
    DocumentError::Automerge(e.to_string())
}

/// The plaintext body of a document envelope (`1 || postcard(DocBody)`).
#[derive(Serialize, Deserialize)]
enum DocBody {
    /// Raw Automerge changes, in causal order.
    Changes(Vec<Vec<u8>>),
    /// A whole saved document and its heads.
    Snapshot {
        document: Vec<u8>,
        heads: Vec<[u8; 32]>,
    },
}

impl DocBody {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        out.extend_from_slice(&postcard::to_allocvec(self).expect("body always encodes"));
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, DocumentError> {
        match bytes.split_first() {
            Some((1, rest)) => crate::decode_exact(rest).ok_or(DocumentError::BadBody),
            _ => Err(DocumentError::BadBody),
        }
    }
}

/// What receiving an envelope did.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// The changes were verified; `applied` of them (and possibly earlier
    /// buffered ones) are now in the document, the rest wait for dependencies.
    Applied {
        /// The signer.
        device: DeviceId,
        /// How many changes are now in the document that were not before.
        applied: usize,
    },
    /// The same (signer, message id) was seen before: dropped.
    Duplicate,
    /// A snapshot was loaded.
    Snapshot,
    /// The changes were verified and wait to be applied
    /// ([`Replica::receive_later`]).
    Queued {
        /// The signer.
        device: DeviceId,
    },
}

/// A [`Replica`] between runs (inside the device's encrypted state;
/// field order is the format): the saved Automerge document, the
/// device's sequence number on the stream, the (signer, message id) pairs
/// seen, the actor bindings, the changes waiting for their dependencies,
/// and this device's changes the server has not acknowledged.
#[derive(Serialize, Deserialize)]
pub struct SavedReplica {
    stream: StreamId,
    document: Vec<u8>,
    seq: u64,
    seen: Vec<(DeviceId, MessageId)>,
    actors: Vec<(Vec<u8>, DeviceId)>,
    pending: Vec<Vec<u8>>,
    carried: Vec<Vec<u8>>,
}

impl Drop for SavedReplica {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.document.zeroize();
        for c in self.pending.iter_mut().chain(self.carried.iter_mut()) {
            c.zeroize();
        }
    }
}

/// One device's replica of one document stream.
pub struct Replica {
    stream: StreamId,
    doc: AutoCommit,
    seq: u64,
    flushed_heads: Vec<ChangeHash>,
    /// The flushed heads before the last flush, until the server answers.
    unacknowledged_from: Option<Vec<ChangeHash>>,
    seen: HashSet<(DeviceId, MessageId)>,
    actors: HashMap<Vec<u8>, DeviceId>,
    pending: Vec<Change>,
    /// This device's changes from an earlier run that the server had not
    /// acknowledged ([`Self::adopt`]): sent with the next flush.
    carried: Vec<Carried>,
    /// Changes were received with [`Self::receive_later`] and not applied
    /// yet: the next look at the document applies them, in one batch.
    unsettled: bool,
}

/// A change of this device carried over from an earlier run.
struct Carried {
    hash: ChangeHash,
    raw: Vec<u8>,
    /// In the flush awaiting an answer.
    sent: bool,
}

impl core::fmt::Debug for Replica {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Replica({}, {} pending)",
            self.stream,
            self.pending.len()
        )
    }
}

impl Replica {
    /// An empty replica of `stream` (a joiner's, filled by [`Self::receive`]).
    pub fn new(stream: StreamId, device: &Device) -> Self {
        let mut doc = AutoCommit::new();
        // A fresh random actor per replica: an actor id is never reused for
        // two change histories, even if a device loses its state.
        doc.set_actor(automerge::ActorId::random());
        let mut actors = HashMap::new();
        actors.insert(doc.get_actor().to_bytes().to_vec(), device.id());
        Self {
            stream,
            doc,
            seq: 0,
            flushed_heads: Vec::new(),
            unacknowledged_from: None,
            seen: HashSet::new(),
            actors,
            pending: Vec::new(),
            carried: Vec::new(),
            unsettled: false,
        }
    }

    /// The stream this replica follows.
    pub fn stream(&self) -> StreamId {
        self.stream
    }

    /// The Automerge document (read it with [`filing`] or [`crate::library`]).
    pub fn doc(&mut self) -> &mut AutoCommit {
        self.settle();
        &mut self.doc
    }

    /// The document's heads, sorted: equal heads mean equal documents.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.settle();
        let mut h = self.doc.get_heads();
        h.sort();
        h
    }

    /// Changes received whose dependencies are still missing.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// This replica's own changes not in `since`'s history, in causal order.
    fn own_changes_since(&mut self, since: &[ChangeHash]) -> Vec<Vec<u8>> {
        self.settle();
        self.doc.commit();
        // Most replicas were only read in this run: their actor has no
        // change, known without rebuilding the document's changes.
        if self.doc.get_last_local_change().is_none() {
            return Vec::new();
        }
        let actor = self.doc.get_actor().clone();
        self.doc
            .get_changes(since)
            .into_iter()
            .filter(|c| c.actor_id() == &actor)
            .map(|c| c.raw_bytes().to_vec())
            .collect()
    }

    /// Seals every local change since the last flush, and the changes
    /// carried over from an earlier run, into one envelope, or returns
    /// `None` if there is nothing new.
    pub fn flush(
        &mut self,
        keyring: &KeyRing,
        device: &Device,
        log_head: [u8; 32],
    ) -> Result<Option<Vec<u8>>, DocumentError> {
        let flushed = self.flushed_heads.clone();
        let own = self.own_changes_since(&flushed);
        if own.is_empty() && self.carried.is_empty() {
            return Ok(None);
        }
        // Carried changes first: this run's changes may depend on them.
        let mut changes = Vec::with_capacity(self.carried.len() + own.len());
        for c in &mut self.carried {
            c.sent = true;
            changes.push(c.raw.clone());
        }
        changes.extend(own);
        self.seq += 1;
        let body = DocBody::Changes(changes).encode();
        let envelope =
            keyring.seal(device, Kind::Change, self.stream, self.seq, log_head, &body)?;
        let before = std::mem::replace(&mut self.flushed_heads, self.doc.get_heads());
        self.unacknowledged_from = Some(before);
        Ok(Some(envelope))
    }

    /// The server refused the last flushed envelope (for instance a commit
    /// moved the space to a new epoch first): its changes go into the next
    /// [`flush`](Self::flush) again, sealed anew under the current key.
    pub fn flush_refused(&mut self) {
        if let Some(before) = self.unacknowledged_from.take() {
            self.flushed_heads = before;
        }
        for c in &mut self.carried {
            c.sent = false;
        }
    }

    /// The server accepted the last flushed envelope.
    pub fn flush_accepted(&mut self) {
        self.unacknowledged_from = None;
        self.carried.retain(|c| !c.sent);
    }

    /// This device's changes the server has not acknowledged (unsent, or
    /// sent without an answer yet), raw, in causal order: what to keep
    /// across a reload, to be given back to [`Self::adopt`].
    pub fn unsent(&mut self) -> Vec<Vec<u8>> {
        let since = self
            .unacknowledged_from
            .clone()
            .unwrap_or_else(|| self.flushed_heads.clone());
        let mut out: Vec<Vec<u8>> = self.carried.iter().map(|c| c.raw.clone()).collect();
        out.extend(self.own_changes_since(&since));
        out
    }

    /// Drops this device's changes the server has not acknowledged (see
    /// [`Self::unsent`]): the document becomes what was acknowledged and
    /// received, and later edits go under a fresh actor (an actor id is
    /// never reused for two histories, and a dropped change may have
    /// reached others). Returns how many changes were dropped.
    pub fn discard_unsent(&mut self) -> Result<usize, DocumentError> {
        let dropped: HashSet<ChangeHash> = self
            .unsent()
            .into_iter()
            .filter_map(|raw| Change::from_bytes(raw).ok().map(|c| c.hash()))
            .collect();
        if dropped.is_empty() {
            return Ok(0);
        }
        let kept: Vec<Change> = self
            .doc
            .get_changes(&[])
            .into_iter()
            .filter(|c| !dropped.contains(&c.hash()))
            .collect();
        let mut doc = AutoCommit::new();
        doc.set_actor(automerge::ActorId::random());
        doc.apply_changes(kept)
            .map_err(|e| DocumentError::Automerge(e.to_string()))?;
        let own = self.actors.get(self.doc.get_actor().to_bytes()).copied();
        if let Some(device) = own {
            self.actors
                .insert(doc.get_actor().to_bytes().to_vec(), device);
        }
        self.doc = doc;
        self.carried.clear();
        self.unacknowledged_from = None;
        self.flushed_heads = self.doc.get_heads();
        Ok(dropped.len())
    }

    /// Takes back this device's changes kept from an earlier run by
    /// [`Self::unsent`]: they enter the document (once the changes they
    /// depend on have been read from the log) and go out with the next
    /// flush, unless the log turns out to hold them already. Their actors
    /// are bound to `device`, as the receivers bind them.
    pub fn adopt(&mut self, device: DeviceId, raw: Vec<Vec<u8>>) -> Result<(), DocumentError> {
        let mut changes = Vec::with_capacity(raw.len());
        for bytes in raw {
            let change = Change::from_bytes(bytes.clone()).map_err(am)?;
            let actor = change.actor_id().to_bytes().to_vec();
            if self
                .actors
                .get(&actor)
                .is_some_and(|owner| *owner != device)
            {
                return Err(DocumentError::ActorMismatch);
            }
            changes.push((change, bytes));
        }
        if self.pending.len() + changes.len() > MAX_PENDING_CHANGES {
            return Err(DocumentError::TooManyPending);
        }
        for (change, raw) in changes {
            let hash = change.hash();
            self.actors
                .insert(change.actor_id().to_bytes().to_vec(), device);
            if self.holds(&hash) || self.carried.iter().any(|c| c.hash == hash) {
                continue;
            }
            self.carried.push(Carried {
                hash,
                raw,
                sent: false,
            });
            self.pending.push(change);
        }
        self.apply_ready()?;
        Ok(())
    }

    /// The replica's state, to be kept between runs so that a restarted
    /// device reads only the log entries after the ones it processed.
    /// This device's changes the server has not acknowledged are kept apart
    /// (as by [`Self::unsent`]) and go out again with the next flush.
    pub fn save(&mut self) -> SavedReplica {
        self.settle();
        let carried = self.unsent();
        let mut seen: Vec<(DeviceId, MessageId)> = self.seen.iter().copied().collect();
        seen.sort();
        let mut actors: Vec<(Vec<u8>, DeviceId)> =
            self.actors.iter().map(|(a, d)| (a.clone(), *d)).collect();
        actors.sort();
        SavedReplica {
            stream: self.stream,
            document: self.doc.save(),
            seq: self.seq,
            seen,
            actors,
            pending: self
                .pending
                .iter_mut()
                .map(|c| c.raw_bytes().to_vec())
                .collect(),
            carried,
        }
    }

    /// A replica saved by [`Self::save`]. It writes under a fresh actor
    /// id (an actor id never serves two change histories, even if the
    /// saved state is older than the last run); the changes of the earlier
    /// actor that the server had not acknowledged go out with the next
    /// flush.
    pub fn restore(saved: &SavedReplica, device: &Device) -> Result<Self, DocumentError> {
        let mut doc = AutoCommit::load(&saved.document).map_err(am)?;
        doc.set_actor(automerge::ActorId::random());
        let mut actors: HashMap<Vec<u8>, DeviceId> = saved.actors.iter().cloned().collect();
        actors.insert(doc.get_actor().to_bytes().to_vec(), device.id());
        let mut pending = Vec::with_capacity(saved.pending.len());
        for raw in &saved.pending {
            pending.push(Change::from_bytes(raw.clone()).map_err(am)?);
        }
        let mut carried = Vec::with_capacity(saved.carried.len());
        for raw in &saved.carried {
            let change = Change::from_bytes(raw.clone()).map_err(am)?;
            carried.push(Carried {
                hash: change.hash(),
                raw: raw.clone(),
                sent: false,
            });
        }
        let flushed_heads = doc.get_heads();
        Ok(Self {
            stream: saved.stream,
            doc,
            seq: saved.seq,
            flushed_heads,
            unacknowledged_from: None,
            seen: saved.seen.iter().copied().collect(),
            actors,
            pending,
            carried,
            unsettled: false,
        })
    }

    /// Seals the whole document as a snapshot (content managers only).
    pub fn snapshot(
        &mut self,
        keyring: &KeyRing,
        device: &Device,
        log_head: [u8; 32],
    ) -> Result<Vec<u8>, DocumentError> {
        self.settle();
        self.doc.commit();
        let heads = self.heads().iter().map(|h| h.0).collect();
        let body = DocBody::Snapshot {
            document: self.doc.save(),
            heads,
        }
        .encode();
        self.seq += 1;
        Ok(keyring.seal(
            device,
            Kind::Snapshot,
            self.stream,
            self.seq,
            log_head,
            &body,
        )?)
    }

    /// Verifies, decrypts and applies an envelope of this stream. `in_force`
    /// is the epoch in force at its log position, when known.
    pub fn receive(
        &mut self,
        keyring: &KeyRing,
        envelope: &[u8],
        in_force: Option<u64>,
    ) -> Result<Received, DocumentError> {
        self.receive_inner(keyring, envelope, in_force, false, |_| true)
    }

    /// Like [`Self::receive`], but the changes are applied at the next look
    /// at the document ([`Self::doc`], [`Self::heads`], a flush, a save),
    /// together with every change received meanwhile: Automerge applies a
    /// batch in about the time of one change, so reading a long log this
    /// way costs a fraction of applying its envelopes one by one. The
    /// envelope is verified now, and refused now if it must be.
    pub fn receive_later(
        &mut self,
        keyring: &KeyRing,
        envelope: &[u8],
        in_force: Option<u64>,
    ) -> Result<Received, DocumentError> {
        self.receive_inner(keyring, envelope, in_force, true, |_| true)
    }

    /// [`Self::receive_later`] for an envelope read from the log: `on_log`
    /// says whether the log head its writer names is one this device's log
    /// holds before the envelope (PROTOCOL §12.3); if not, it is refused.
    pub fn receive_from_log(
        &mut self,
        keyring: &KeyRing,
        envelope: &[u8],
        in_force: Option<u64>,
        on_log: impl FnOnce(&[u8; 32]) -> bool,
    ) -> Result<Received, DocumentError> {
        self.receive_inner(keyring, envelope, in_force, true, on_log)
    }

    fn receive_inner(
        &mut self,
        keyring: &KeyRing,
        envelope: &[u8],
        in_force: Option<u64>,
        later: bool,
        on_log: impl FnOnce(&[u8; 32]) -> bool,
    ) -> Result<Received, DocumentError> {
        let opened = keyring.open(envelope, self.stream, in_force)?;
        if !on_log(&opened.log_head) {
            return Err(DocumentError::UnknownLogHead);
        }
        let key = (opened.device, opened.header.message);
        if self.seen.contains(&key) {
            return Ok(Received::Duplicate);
        }
        match (opened.header.kind, DocBody::decode(&opened.body)?) {
            (Kind::Change, DocBody::Changes(raw)) => {
                let mut changes = Vec::with_capacity(raw.len());
                let mut new_bindings = Vec::new();
                for bytes in raw {
                    let change = Change::from_bytes(bytes).map_err(am)?;
                    let actor = change.actor_id().to_bytes().to_vec();
                    match self.actors.get(&actor) {
                        Some(owner) if *owner != opened.device => {
                            return Err(DocumentError::ActorMismatch);
                        }
                        Some(_) => {}
                        None => new_bindings.push(actor),
                    }
                    changes.push(change);
                }
                if self.pending.len() + changes.len() > MAX_PENDING_CHANGES {
                    return Err(DocumentError::TooManyPending);
                }
                for actor in new_bindings {
                    self.actors.insert(actor, opened.device);
                }
                // Carried changes the log holds need not be sent again.
                let arrived: HashSet<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
                self.carried.retain(|c| !arrived.contains(&c.hash));
                self.seen.insert(key);
                self.pending.extend(changes);
                if later {
                    self.unsettled = true;
                    return Ok(Received::Queued {
                        device: opened.device,
                    });
                }
                self.settle();
                let applied = self.apply_ready()?;
                Ok(Received::Applied {
                    device: opened.device,
                    applied,
                })
            }
            (Kind::Snapshot, DocBody::Snapshot { document, heads }) => {
                let mut loaded = AutoCommit::load(&document).map_err(am)?;
                let mut declared: Vec<ChangeHash> = heads.into_iter().map(ChangeHash).collect();
                declared.sort();
                let mut actual = loaded.get_heads();
                actual.sort();
                if declared != actual {
                    return Err(DocumentError::SnapshotHeads);
                }
                self.seen.insert(key);
                self.settle();
                self.doc.merge(&mut loaded).map_err(am)?;
                self.apply_ready()?;
                Ok(Received::Snapshot)
            }
            _ => Err(DocumentError::WrongKind),
        }
    }

    /// Whether the document holds the change `hash`. A look-up in the change
    /// graph: `get_change_by_hash` would rebuild the change from the whole
    /// op set. (Automerge's own queue of changes waiting for dependencies
    /// stays empty: only changes whose dependencies are present are given
    /// to it.)
    fn holds(&mut self, hash: &ChangeHash) -> bool {
        !self
            .doc
            .get_missing_deps(std::slice::from_ref(hash))
            .contains(hash)
    }

    /// Applies the changes received with [`Self::receive_later`]. A batch
    /// Automerge refuses (a member's change that reuses a sequence number
    /// of its actor) is applied change by change instead, and the refused
    /// changes are dropped.
    fn settle(&mut self) {
        if !std::mem::take(&mut self.unsettled) {
            return;
        }
        let backup = self.pending.clone();
        if self.apply_ready().is_ok() {
            return;
        }
        self.pending = backup;
        loop {
            let mut progressed = false;
            for change in std::mem::take(&mut self.pending) {
                let hash = change.hash();
                if self.holds(&hash) {
                    progressed = true;
                } else if change.deps().iter().all(|d| self.holds(d)) {
                    // Automerge checks a change before applying anything of
                    // it: a refused change leaves the document as it was.
                    let _ = self.doc.apply_changes([change]);
                    progressed = true;
                } else {
                    self.pending.push(change);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// Applies every buffered change whose dependencies are present or
    /// applied with it, in one Automerge application per pass (a change
    /// that comes after its dependencies, the usual order, is ready in the
    /// same pass). Drops changes the document already has. Returns how many
    /// were applied.
    fn apply_ready(&mut self) -> Result<usize, DocumentError> {
        let mut applied = 0;
        loop {
            let mut ready = Vec::new();
            let mut ready_hashes = HashSet::new();
            let mut waiting = Vec::new();
            for change in std::mem::take(&mut self.pending) {
                let hash = change.hash();
                if ready_hashes.contains(&hash) || self.holds(&hash) {
                    continue;
                }
                let deps_met = change
                    .deps()
                    .iter()
                    .all(|d| ready_hashes.contains(d) || self.holds(d));
                if deps_met {
                    ready_hashes.insert(hash);
                    ready.push(change);
                } else {
                    waiting.push(change);
                }
            }
            self.pending = waiting;
            if ready.is_empty() {
                return Ok(applied);
            }
            applied += ready.len();
            self.doc.apply_changes(ready).map_err(am)?;
        }
    }
}

/// Who wrote what in a document, as the log proves it: each Automerge
/// actor of the replica bound to the device that signed its changes, and
/// each device to its user through the space's rosters
/// ([`crate::view::SpaceView::authors`]). A name written into the document
/// (a comment's or a version's `author` field) is a claim anyone could make;
/// the interface shows the name found here.
#[derive(Clone, Debug, Default)]
pub struct Authors(HashMap<Vec<u8>, String>);

impl Authors {
    /// Authors from (actor, user) pairs.
    pub fn new(pairs: impl IntoIterator<Item = (Vec<u8>, String)>) -> Self {
        Self(pairs.into_iter().collect())
    }

    /// The user who wrote with `actor`, if the log binds it to one.
    pub fn of(&self, actor: &automerge::ActorId) -> Option<&str> {
        self.0.get(actor.to_bytes()).map(String::as_str)
    }
}

impl Replica {
    /// Each Automerge actor of this document and the device bound to it
    /// (the one that signed the first change of that actor).
    pub fn actor_devices(&self) -> impl Iterator<Item = (&[u8], DeviceId)> {
        self.actors.iter().map(|(a, d)| (a.as_slice(), *d))
    }
}

/// The Automerge model of a strategic filing.
///
/// ```text
/// root: { title: Text, body: Text (marks: bold, italic, heading...),
///         comments: Map<thread id, { start: Cursor, end: Cursor, resolved: bool,
///                                    messages: List<{ author, text, at }> }>,
///         versions: List<{ name, author, at, heads: List<hex> }> }
/// ```
/// Times are milliseconds since the Unix epoch, given by the caller.
pub mod filing {
    use automerge::marks::{ExpandMark, Mark};
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ChangeHash, ObjType, ROOT, ReadDoc, ScalarValue, Value};

    use super::{Authors, DocumentError, am};

    /// Who wrote an item: the user the log binds its actor to, or, if the
    /// actor is bound to none (content that came in a snapshot), the name
    /// the item claims, not verified.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Author {
        /// The name to show.
        pub name: String,
        /// True when `name` is the signer's, false when it is a claim.
        pub verified: bool,
    }

    /// The author of the field `key` of `item`: whoever last wrote it.
    pub(crate) fn author(
        doc: &AutoCommit,
        item: &automerge::ObjId,
        key: &str,
        claimed: &str,
        authors: &Authors,
    ) -> Author {
        let actor = match doc.get(item, key) {
            Ok(Some((_, automerge::ObjId::Id(_, actor, _)))) => Some(actor),
            _ => None,
        };
        match actor.as_ref().and_then(|a| authors.of(a)) {
            Some(user) => Author {
                name: user.to_owned(),
                verified: true,
            },
            None => Author {
                name: claimed.to_owned(),
                verified: false,
            },
        }
    }

    /// One message of a thread.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Message {
        /// Who wrote its text.
        pub author: Author,
        /// Its text.
        pub text: String,
        /// When it was written, in milliseconds since 1970 UTC, as the
        /// writer's device clock said (part of what the writer signed, so
        /// a claim of `author` when verified, not of the relay).
        pub at_ms: Option<i64>,
    }

    /// A comment thread anchored to a passage.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Thread {
        /// The thread id.
        pub id: String,
        /// Where the passage starts now (follows edits).
        pub start: usize,
        /// Where it ends now.
        pub end: usize,
        /// Whether it was resolved.
        pub resolved: bool,
        /// Who resolved it, when it is (an empty unverified name: the
        /// writer is bound to no device, as in a snapshot).
        pub resolved_by: Option<Author>,
        /// The messages in order.
        pub messages: Vec<Message>,
    }

    /// A named version.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Version {
        /// Its name.
        pub name: String,
        /// Who named it.
        pub author: Author,
        /// The document heads it names.
        pub heads: Vec<ChangeHash>,
        /// When it was named, as for [`Message::at_ms`].
        pub at_ms: Option<i64>,
    }

    /// The timestamp in the field `key` of `item`, if it holds one.
    fn timestamp(doc: &AutoCommit, item: &automerge::ObjId, key: &str) -> Option<i64> {
        match doc.get(item, key) {
            Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                ScalarValue::Timestamp(t) => Some(*t),
                _ => None,
            },
            _ => None,
        }
    }

    fn obj(doc: &AutoCommit, key: &str) -> Result<automerge::ObjId, DocumentError> {
        match doc.get(ROOT, key).map_err(am)? {
            Some((Value::Object(_), id)) => Ok(id),
            _ => Err(DocumentError::Automerge(format!(
                "the filing has no `{key}`"
            ))),
        }
    }

    /// Creates the structure of a new filing (its creator does this once).
    pub fn init(doc: &mut AutoCommit, title: &str) -> Result<(), DocumentError> {
        let title = super::checked_name(title)?;
        let t = doc.put_object(ROOT, "title", ObjType::Text).map_err(am)?;
        doc.splice_text(&t, 0, 0, &title).map_err(am)?;
        doc.put_object(ROOT, "body", ObjType::Text).map_err(am)?;
        doc.put_object(ROOT, "comments", ObjType::Map).map_err(am)?;
        doc.put_object(ROOT, "versions", ObjType::List)
            .map_err(am)?;
        Ok(())
    }

    /// The title.
    pub fn title(doc: &AutoCommit) -> Result<String, DocumentError> {
        doc.text(obj(doc, "title")?).map_err(am)
    }

    /// Replaces the title (checked by [`super::checked_name`]).
    pub fn set_title(doc: &mut AutoCommit, title: &str) -> Result<(), DocumentError> {
        let title = super::checked_name(title)?;
        let t = obj(doc, "title")?;
        doc.update_text(&t, &title).map_err(am)
    }

    /// The body text.
    pub fn body(doc: &AutoCommit) -> Result<String, DocumentError> {
        doc.text(obj(doc, "body")?).map_err(am)
    }

    /// Deletes `delete` characters at `pos` and inserts `insert` there.
    pub fn splice(
        doc: &mut AutoCommit,
        pos: usize,
        delete: isize,
        insert: &str,
    ) -> Result<(), DocumentError> {
        let b = obj(doc, "body")?;
        doc.splice_text(&b, pos, delete, insert).map_err(am)
    }

    /// Applies a format mark (`bold`, `italic`, `heading`...) to `start..end`.
    pub fn format(
        doc: &mut AutoCommit,
        start: usize,
        end: usize,
        mark: &str,
        on: bool,
    ) -> Result<(), DocumentError> {
        let b = obj(doc, "body")?;
        let value = if on {
            ScalarValue::Boolean(true)
        } else {
            ScalarValue::Null
        };
        doc.mark(
            &b,
            Mark::new(mark.to_owned(), value, start, end),
            ExpandMark::After,
        )
        .map_err(am)
    }

    /// The marks of the body as (name, start, end).
    pub fn marks(doc: &AutoCommit) -> Result<Vec<(String, usize, usize)>, DocumentError> {
        let b = obj(doc, "body")?;
        Ok(doc
            .marks(&b)
            .map_err(am)?
            .into_iter()
            .filter(|m| !matches!(m.value(), ScalarValue::Null))
            .map(|m| (m.name().to_owned(), m.start, m.end))
            .collect())
    }

    /// Opens a comment thread on `start..end` and returns its id.
    pub fn comment(
        doc: &mut AutoCommit,
        thread: &str,
        start: usize,
        end: usize,
        author: &str,
        text: &str,
        at_ms: i64,
    ) -> Result<(), DocumentError> {
        let text = super::checked_text(text)?;
        let b = obj(doc, "body")?;
        let start_c = doc.get_cursor(&b, start, None).map_err(am)?;
        let end_c = doc.get_cursor(&b, end, None).map_err(am)?;
        let comments = obj(doc, "comments")?;
        let t = doc
            .put_object(&comments, thread, ObjType::Map)
            .map_err(am)?;
        doc.put(&t, "start", start_c.to_string()).map_err(am)?;
        doc.put(&t, "end", end_c.to_string()).map_err(am)?;
        doc.put(&t, "resolved", false).map_err(am)?;
        doc.put_object(&t, "messages", ObjType::List).map_err(am)?;
        reply(doc, thread, author, &text, at_ms)
    }

    /// Adds a message to a thread.
    pub fn reply(
        doc: &mut AutoCommit,
        thread: &str,
        author: &str,
        text: &str,
        at_ms: i64,
    ) -> Result<(), DocumentError> {
        let text = super::checked_text(text)?;
        let t = thread_obj(doc, thread)?;
        let Some((Value::Object(_), list)) = doc.get(&t, "messages").map_err(am)? else {
            return Err(DocumentError::Automerge("thread without messages".into()));
        };
        let n = doc.length(&list);
        let m = doc.insert_object(&list, n, ObjType::Map).map_err(am)?;
        doc.put(&m, "author", author).map_err(am)?;
        doc.put(&m, "text", text.as_str()).map_err(am)?;
        doc.put(&m, "at", ScalarValue::Timestamp(at_ms))
            .map_err(am)?;
        Ok(())
    }

    fn thread_obj(doc: &AutoCommit, thread: &str) -> Result<automerge::ObjId, DocumentError> {
        let comments = obj(doc, "comments")?;
        match doc.get(&comments, thread).map_err(am)? {
            Some((Value::Object(_), t)) => Ok(t),
            _ => Err(DocumentError::Automerge(format!(
                "no comment thread {thread}"
            ))),
        }
    }

    /// Marks a thread resolved, or open again; the reader sees who did
    /// ([`Thread::resolved_by`]).
    pub fn resolve(
        doc: &mut AutoCommit,
        thread: &str,
        resolved: bool,
    ) -> Result<(), DocumentError> {
        let t = thread_obj(doc, thread)?;
        doc.put(&t, "resolved", resolved).map_err(am)
    }

    /// Every comment thread, with its passage where it is now and each
    /// message's author as `authors` proves it.
    pub fn threads(doc: &AutoCommit, authors: &Authors) -> Result<Vec<Thread>, DocumentError> {
        let b = obj(doc, "body")?;
        let comments = obj(doc, "comments")?;
        let mut out = Vec::new();
        for item in doc.map_range(&comments, ..) {
            let t = item.id();
            let text = |key: &str| -> Option<String> {
                match doc.get(&t, key).ok()?? {
                    (Value::Scalar(s), _) => match s.as_ref() {
                        ScalarValue::Str(s) => Some(s.to_string()),
                        _ => None,
                    },
                    _ => None,
                }
            };
            let pos = |key: &str| -> Option<usize> {
                let c = automerge::Cursor::try_from(text(key)?.as_str()).ok()?;
                doc.get_cursor_position(&b, &c, None).ok()
            };
            let resolved = matches!(doc.get(&t, "resolved").map_err(am)?, Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Boolean(true)));
            let mut messages = Vec::new();
            if let Some((Value::Object(_), list)) = doc.get(&t, "messages").map_err(am)? {
                for i in 0..doc.length(&list) {
                    if let Some((Value::Object(_), m)) = doc.get(&list, i).map_err(am)? {
                        let field = |k: &str| match doc.get(&m, k) {
                            Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                                ScalarValue::Str(s) => s.to_string(),
                                _ => String::new(),
                            },
                            _ => String::new(),
                        };
                        messages.push(Message {
                            author: author(doc, &m, "text", &field("author"), authors),
                            text: field("text"),
                            at_ms: timestamp(doc, &m, "at"),
                        });
                    }
                }
            }
            out.push(Thread {
                id: item.key.to_string(),
                start: pos("start").unwrap_or(0),
                end: pos("end").unwrap_or(0),
                resolved,
                resolved_by: resolved.then(|| author(doc, &t, "resolved", "", authors)),
                messages,
            });
        }
        Ok(out)
    }

    /// Names the current state of the document.
    pub fn name_version(
        doc: &mut AutoCommit,
        name: &str,
        author: &str,
        at_ms: i64,
    ) -> Result<(), DocumentError> {
        doc.commit();
        let heads = doc.get_heads();
        let versions = obj(doc, "versions")?;
        let n = doc.length(&versions);
        let v = doc.insert_object(&versions, n, ObjType::Map).map_err(am)?;
        doc.put(&v, "name", name).map_err(am)?;
        doc.put(&v, "author", author).map_err(am)?;
        doc.put(&v, "at", ScalarValue::Timestamp(at_ms))
            .map_err(am)?;
        let list = doc.put_object(&v, "heads", ObjType::List).map_err(am)?;
        for (i, h) in heads.iter().enumerate() {
            doc.insert(&list, i, h.to_string()).map_err(am)?;
        }
        Ok(())
    }

    /// The named versions, oldest first, each with its author as `authors`
    /// proves it.
    pub fn versions(doc: &AutoCommit, authors: &Authors) -> Result<Vec<Version>, DocumentError> {
        let versions = obj(doc, "versions")?;
        let mut out = Vec::new();
        for i in 0..doc.length(&versions) {
            let Some((Value::Object(_), v)) = doc.get(&versions, i).map_err(am)? else {
                continue;
            };
            let s = |k: &str| match doc.get(&v, k) {
                Ok(Some((Value::Scalar(x), _))) => x.as_str().unwrap_or_default().to_owned(),
                _ => String::new(),
            };
            let mut heads = Vec::new();
            if let Some((Value::Object(_), list)) = doc.get(&v, "heads").map_err(am)? {
                for j in 0..doc.length(&list) {
                    if let Some((Value::Scalar(x), _)) = doc.get(&list, j).map_err(am)?
                        && let Some(h) = x.as_str().and_then(|h| h.parse::<ChangeHash>().ok())
                    {
                        heads.push(h);
                    }
                }
            }
            out.push(Version {
                name: s("name"),
                author: author(doc, &v, "name", &s("author"), authors),
                heads,
                at_ms: timestamp(doc, &v, "at"),
            });
        }
        Ok(out)
    }

    /// The body text as it was at a named version.
    pub fn body_at(doc: &AutoCommit, version: &Version) -> Result<String, DocumentError> {
        doc.text_at(obj(doc, "body")?, &version.heads).map_err(am)
    }
}

#[cfg(test)]
mod tests {
    /// Titles and names are stored trimmed; an empty one, one longer than
    /// 200 characters or one of several lines is refused with a sentence
    /// that says so, and nothing is written.
    #[test]
    fn titles_are_trimmed_and_refused_when_empty_or_too_long() {
        let mut doc = AutoCommit::new();
        filing::init(&mut doc, "  Requête en référé  ").unwrap();
        assert_eq!(filing::title(&doc).unwrap(), "Requête en référé");
        for bad in ["   ", "", "deux\nlignes"] {
            let err = filing::set_title(&mut doc, bad).unwrap_err();
            assert!(matches!(err, DocumentError::BadName(_)), "{bad:?}: {err}");
        }
        let long = "é".repeat(MAX_NAME_CHARS + 1);
        let err = filing::set_title(&mut doc, &long).unwrap_err();
        assert!(err.to_string().contains("201"), "{err}");
        assert_eq!(
            filing::title(&doc).unwrap(),
            "Requête en référé",
            "nothing written"
        );
        assert!(filing::set_title(&mut doc, &"é".repeat(MAX_NAME_CHARS)).is_ok());
        let mut library = AutoCommit::new();
        crate::library::init(&mut library).unwrap();
        assert!(matches!(
            crate::library::add_folder(&mut library, "f1", " \t ", ""),
            Err(DocumentError::BadName(_))
        ));
    }

    /// A thread is replied to, resolved and opened again; an empty or
    /// too long comment is refused and nothing is written.
    #[test]
    fn threads_take_replies_and_are_resolved_and_reopened() {
        let mut doc = AutoCommit::new();
        filing::init(&mut doc, "Requête").unwrap();
        filing::splice(&mut doc, 0, 0, "Attendu que").unwrap();
        filing::comment(&mut doc, "t1", 0, 7, "amina", "  Préciser  ", 1).unwrap();
        filing::reply(&mut doc, "t1", "bruno", "Fait.", 2).unwrap();
        let authors = Authors::new([]);
        let t = &filing::threads(&doc, &authors).unwrap()[0];
        assert_eq!(t.messages.len(), 2);
        assert_eq!(t.messages[0].text, "Préciser");
        assert_eq!(t.messages[1].text, "Fait.");
        assert!(!t.resolved && t.resolved_by.is_none());
        filing::resolve(&mut doc, "t1", true).unwrap();
        let t = &filing::threads(&doc, &authors).unwrap()[0];
        assert!(t.resolved);
        assert!(t.resolved_by.as_ref().is_some_and(|a| !a.verified));
        filing::resolve(&mut doc, "t1", false).unwrap();
        assert!(!filing::threads(&doc, &authors).unwrap()[0].resolved);
        assert!(filing::resolve(&mut doc, "t9", true).is_err());
        let heads = doc.get_heads();
        for bad in ["   ".to_owned(), "x".repeat(MAX_COMMENT_CHARS + 1)] {
            let err = filing::reply(&mut doc, "t1", "bruno", &bad, 3).unwrap_err();
            assert!(matches!(err, DocumentError::BadText(_)), "{err}");
            let err = filing::comment(&mut doc, "t2", 0, 1, "bruno", &bad, 3).unwrap_err();
            assert!(matches!(err, DocumentError::BadText(_)), "{err}");
        }
        doc.commit();
        assert_eq!(doc.get_heads(), heads, "nothing written");
        assert_eq!(filing::threads(&doc, &authors).unwrap().len(), 1);
    }

    /// A version and a comment carry the time their writer gave, read back
    /// as written; an item written without one (an older client) has none.
    #[test]
    fn versions_and_messages_keep_their_time() {
        use automerge::transaction::Transactable;
        let mut doc = AutoCommit::new();
        filing::init(&mut doc, "Requête").unwrap();
        filing::splice(&mut doc, 0, 0, "Attendu que").unwrap();
        let when = 1_796_000_000_123;
        filing::comment(&mut doc, "t1", 0, 7, "amina", "Préciser", when + 1).unwrap();
        filing::name_version(&mut doc, "Déposée", "amina", when).unwrap();
        let authors = Authors::new([]);
        let versions = filing::versions(&doc, &authors).unwrap();
        assert_eq!(versions[0].at_ms, Some(when));
        let threads = filing::threads(&doc, &authors).unwrap();
        assert_eq!(threads[0].messages[0].at_ms, Some(when + 1));
        let list = doc.get(automerge::ROOT, "versions").unwrap().unwrap().1;
        let v = doc.get(&list, 0).unwrap().unwrap().1;
        doc.delete(&v, "at").unwrap();
        assert_eq!(filing::versions(&doc, &authors).unwrap()[0].at_ms, None);
    }

    use super::*;
    use crate::identity::UserIdentity;
    use crate::keyring::{EpochSecret, RosterEntry};
    use crate::space::Role;
    use crate::{SpaceId, UserId};

    fn member(name: &str) -> Device {
        UserIdentity::generate(UserId::new(name).unwrap()).new_device()
    }

    fn ring(devices: &[&Device]) -> KeyRing {
        let mut ring = KeyRing::new(SpaceId::random());
        let roster = devices
            .iter()
            .map(|d| RosterEntry {
                user: d.user().clone(),
                device: d.id(),
                signature_key: d.public_key(),
                role: Role::Contributor,
            })
            .collect();
        ring.insert(
            0,
            EpochSecret::from_bytes(crate::random::bytes()),
            Some(roster),
        );
        ring
    }

    /// A batch of changes received with `receive_later` in which one member
    /// reuses a sequence number of its actor for another change (which
    /// Automerge refuses, and would refuse the whole batch for): the good
    /// changes are all applied, only one of the two rival changes is.
    #[test]
    fn a_rival_change_in_a_batch_is_dropped_and_the_rest_applied() {
        let (amina, bertrand) = (member("amina"), member("bertrand"));
        let ring = ring(&[&amina, &bertrand]);
        let stream = StreamId::random();
        let mut a = Replica::new(stream, &amina);
        filing::init(a.doc(), "Mémoire").unwrap();
        let first = a.flush(&ring, &amina, [0; 32]).unwrap().unwrap();
        // Bertrand's replica, and a copy of it that reuses his actor.
        let mut b = Replica::new(stream, &bertrand);
        b.receive(&ring, &first, None).unwrap();
        let mut rival = AutoCommit::load(&b.doc().save()).unwrap();
        rival.set_actor(b.doc().get_actor().clone());
        filing::splice(b.doc(), 0, 0, "Bonne ").unwrap();
        let good = b.flush(&ring, &bertrand, [0; 32]).unwrap().unwrap();
        filing::splice(&mut rival, 0, 0, "Rivale ").unwrap();
        rival.commit();
        let raw = rival.get_last_local_change().unwrap().raw_bytes().to_vec();
        let body = DocBody::Changes(vec![raw]).encode();
        let forged = ring
            .seal(&bertrand, Kind::Change, stream, 9, [0; 32], &body)
            .unwrap();
        filing::splice(a.doc(), 0, 0, "Amina. ").unwrap();
        let later = a.flush(&ring, &amina, [0; 32]).unwrap().unwrap();
        let mut c = Replica::new(stream, &member("chloe"));
        for e in [&first, &good, &forged, &later] {
            assert!(matches!(
                c.receive_later(&ring, e, None).unwrap(),
                Received::Queued { .. }
            ));
        }
        let text = filing::body(c.doc()).unwrap();
        assert!(text.contains("Amina. "), "{text}");
        assert_eq!(
            text.contains("Bonne ") as u8 + text.contains("Rivale ") as u8,
            1,
            "{text}"
        );
        assert_eq!(c.pending(), 0);
    }

    /// A member re-signing another member's change under its own name is
    /// refused, and the refused envelope changes nothing.
    #[test]
    fn an_actor_id_belongs_to_the_first_device_that_signed_it() {
        let (amina, bertrand) = (member("amina"), member("bertrand"));
        let ring = ring(&[&amina, &bertrand]);
        let stream = StreamId::random();
        let mut a = Replica::new(stream, &amina);
        filing::init(a.doc(), "Mémoire").unwrap();
        let first = a.flush(&ring, &amina, [0; 32]).unwrap().unwrap();

        let mut receiver = Replica::new(stream, &bertrand);
        receiver.receive(&ring, &first, None).unwrap();
        filing::splice(a.doc(), 0, 0, "Amina écrit").unwrap();
        a.flush(&ring, &amina, [0; 32]).unwrap().unwrap();
        let amina_change = a.doc().get_last_local_change().unwrap();

        let forged_body = DocBody::Changes(vec![amina_change.raw_bytes().to_vec()]).encode();
        let forged = ring
            .seal(&bertrand, Kind::Change, stream, 1, [0; 32], &forged_body)
            .unwrap();
        let before = receiver.heads();
        assert!(matches!(
            receiver.receive(&ring, &forged, None),
            Err(DocumentError::ActorMismatch)
        ));
        assert_eq!(receiver.heads(), before);
        assert_eq!(receiver.pending(), 0);
    }

    /// Changes of a refused envelope are sealed again by the next flush; an
    /// accepted flush is never repeated.
    #[test]
    fn a_refused_flush_is_sealed_again_and_an_accepted_one_is_not() {
        let amina = member("amina");
        let bertrand = member("bertrand");
        let ring = ring(&[&amina, &bertrand]);
        let stream = StreamId::random();
        let mut a = Replica::new(stream, &amina);
        filing::init(a.doc(), "Requête").unwrap();
        let _lost = a.flush(&ring, &amina, [0; 32]).unwrap().unwrap();
        a.flush_refused();
        let again = a.flush(&ring, &amina, [0; 32]).unwrap().unwrap();
        a.flush_accepted();
        assert!(a.flush(&ring, &amina, [0; 32]).unwrap().is_none());
        let mut b = Replica::new(stream, &bertrand);
        b.receive(&ring, &again, None).unwrap();
        assert_eq!(filing::title(b.doc()).unwrap(), "Requête");
        a.flush_refused();
        assert!(
            a.flush(&ring, &amina, [0; 32]).unwrap().is_none(),
            "after an acceptance there is nothing to seal again"
        );
    }

    /// Edits kept by [`Replica::unsent`] when a page is closed come back in
    /// a new replica (new actor) through [`Replica::adopt`], wait there for
    /// the changes they depend on, go out once, and reach the others; edits
    /// the log already holds are not sent again.
    #[test]
    fn unsent_edits_survive_a_reload_and_go_out_once() {
        let (amina, bertrand) = (member("amina"), member("bertrand"));
        let ring = ring(&[&amina, &bertrand]);
        let stream = StreamId::random();
        let mut b = Replica::new(stream, &bertrand);
        filing::init(b.doc(), "Requête").unwrap();
        filing::splice(b.doc(), 0, 0, "Les faits. ").unwrap();
        let log_1 = b.flush(&ring, &bertrand, [0; 32]).unwrap().unwrap();
        b.flush_accepted();

        // Amina reads the log, writes twice: the first flush is accepted,
        // the second is sent and unanswered, then a third edit stays local.
        let mut a = Replica::new(stream, &amina);
        a.receive(&ring, &log_1, None).unwrap();
        filing::splice(a.doc(), 11, 0, "Le droit. ").unwrap();
        let log_2 = a.flush(&ring, &amina, [0; 32]).unwrap().unwrap();
        a.flush_accepted();
        filing::splice(a.doc(), 21, 0, "La demande. ").unwrap();
        let _unanswered = a.flush(&ring, &amina, [0; 32]).unwrap().unwrap();
        filing::splice(a.doc(), 33, 0, "Hors ligne.").unwrap();
        let kept = a.unsent();
        assert_eq!(kept.len(), 2, "the unanswered flush and the local edit");
        drop(a);

        // The page is loaded again: the kept edits are adopted before the
        // log is read, so they wait for their dependencies.
        let mut a = Replica::new(stream, &amina);
        a.adopt(amina.id(), kept.clone()).unwrap();
        assert_eq!(a.pending(), 2);
        for entry in [&log_1, &log_2] {
            a.receive(&ring, entry, None).unwrap();
        }
        assert_eq!(a.pending(), 0);
        let text = "Les faits. Le droit. La demande. Hors ligne.";
        assert_eq!(filing::body(a.doc()).unwrap(), text);
        assert_eq!(a.unsent().len(), 2, "still unacknowledged");
        let out = a.flush(&ring, &amina, [0; 32]).unwrap().unwrap();
        a.flush_refused();
        let out_again = a.flush(&ring, &amina, [0; 32]).unwrap().unwrap();
        a.flush_accepted();
        assert!(a.unsent().is_empty());
        assert!(a.flush(&ring, &amina, [0; 32]).unwrap().is_none());

        for entry in [&log_2, &out, &out_again] {
            b.receive(&ring, entry, None).unwrap();
        }
        assert_eq!(filing::body(b.doc()).unwrap(), text);

        // Had the log already held them, nothing would be sent again.
        let mut c = Replica::new(stream, &amina);
        for entry in [&log_1, &log_2, &out] {
            c.receive(&ring, entry, None).unwrap();
        }
        c.adopt(amina.id(), kept.clone()).unwrap();
        assert!(c.unsent().is_empty());
        assert!(c.flush(&ring, &amina, [0; 32]).unwrap().is_none());

        // Nobody else's changes can be adopted as one's own.
        let mut d = Replica::new(stream, &bertrand);
        d.receive(&ring, &out, None).unwrap();
        assert!(matches!(
            d.adopt(bertrand.id(), kept),
            Err(DocumentError::ActorMismatch)
        ));
    }
}
