//! One device's view of one confidential space, rebuilt from the space's
//! log: its MLS state, how far it has read, the documents the log's
//! envelopes hold, and what it detected about the server.
//!
//! Sans-IO: a client hands every [`LogEntry`] it receives to
//! [`SpaceView::apply`] in log order, and every `Synced` position to
//! [`SpaceView::synced`]. The view checks the hash chain, the consistency
//! of every commit with the log its committer saw (PROTOCOL §6.1), rollback
//! and rewriting against the head saved in an earlier run, then processes
//! commits and opens envelopes. A detected fork or rewrite makes the view
//! [`broken`](SpaceView::broken) and it ignores everything afterwards. The
//! native client and the browser client run this same code.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::document::{Authors, DocumentError, Replica, SavedReplica};
use crate::envelope::{EnvelopeError, Header};
use crate::identity::Device;
use crate::space::{CommitAad, Content, Processed, Space, SpaceError, SpaceState};
use crate::wire::{EntryKind, LogEntry, Reopen, genesis, inspect_mls};
use crate::{DeviceId, MlsProvider, SpaceId, StreamId};

/// The persisted part of a [`SpaceView`] (inside a device's encrypted
/// state; field order is the format).
#[derive(Serialize, Deserialize)]
pub struct SavedView {
    /// The [`SpaceState`], postcard-encoded.
    pub state: Vec<u8>,
    /// Entries before this were processed in an earlier run.
    pub next_seq: u64,
    /// Chained hash of entry `next_seq - 1` (genesis if none).
    pub head: [u8; 32],
    /// This device was removed from the space.
    pub removed: bool,
    /// A commit sent and not yet answered: if it shows up in the log, the
    /// server accepted it (the answer may have been lost).
    pub pending_commit: Option<Vec<u8>>,
    /// What reading entries `0..next_seq` built, so that a restarted device
    /// reads only the entries after them; `None` (a state saved by an
    /// earlier version, or in the middle of reading the log again) means
    /// the log is read again from entry 0.
    pub cache: Option<ViewCache>,
    /// Why the log can no longer be trusted, once detected: the evidence
    /// of a fork or rollback outlives a restart (a server that shows the
    /// honest log afterwards does not erase it).
    pub broken: Option<String>,
}

impl Drop for SavedView {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.state.zeroize();
    }
}

/// What a [`SpaceView`] built from the entries it read (field order is the
/// format): the epoch in force after them, the chained hash of each, the
/// documents, the epoch records not ingested yet, the envelopes that wait
/// for their epoch's key, and the epochs whose record the log holds.
#[derive(Serialize, Deserialize)]
pub struct ViewCache {
    in_force: u64,
    hashes: Vec<[u8; 32]>,
    replicas: Vec<SavedReplica>,
    records: Vec<Vec<u8>>,
    locked: Vec<(StreamId, Vec<u8>, u64)>,
    recorded: Vec<u64>,
}

impl Drop for ViewCache {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for r in &mut self.records {
            r.zeroize();
        }
        for (_, payload, _) in &mut self.locked {
            payload.zeroize();
        }
    }
}

/// A [`SavedView`] as earlier versions held it (before the [`ViewCache`]):
/// such a view reads its log again from entry 0.
#[derive(Serialize, Deserialize)]
pub struct LegacySavedView {
    state: Vec<u8>,
    next_seq: u64,
    head: [u8; 32],
    removed: bool,
    pending_commit: Option<Vec<u8>>,
}

impl From<LegacySavedView> for SavedView {
    fn from(mut v: LegacySavedView) -> Self {
        SavedView {
            state: std::mem::take(&mut v.state),
            next_seq: v.next_seq,
            head: v.head,
            removed: v.removed,
            pending_commit: v.pending_commit.take(),
            cache: None,
            broken: None,
        }
    }
}

impl Drop for LegacySavedView {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.state.zeroize();
    }
}

/// One space as this device sees it.
pub struct SpaceView {
    space: Space,
    /// Entries before this were processed in an earlier run (durable).
    next_seq: u64,
    /// Chained hash of entry `next_seq - 1`.
    head: [u8; 32],
    removed: bool,
    pending_commit: Option<Vec<u8>>,
    // Rebuilt in every run from the log:
    chain: (u64, [u8; 32]),
    in_force: u64,
    replicas: HashMap<StreamId, Replica>,
    records: Vec<Vec<u8>>,
    /// The chained hash of every entry read so far, by sequence number.
    hashes: Vec<[u8; 32]>,
    locked: Vec<(StreamId, Vec<u8>, u64)>,
    /// The epochs whose record the log holds.
    recorded: std::collections::BTreeSet<u64>,
    broken: Option<String>,
    /// The position and epoch of the last commit read in this run (not
    /// saved: after a restart a reopening is checked against the epoch in
    /// force alone).
    last_commit: Option<(u64, u64)>,
    /// The commit this device refused in this run, until its epoch is
    /// reopened or a later commit makes the refusal moot.
    refused: Option<u64>,
}

impl std::fmt::Debug for SpaceView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpaceView({}, read {})", self.space.id(), self.chain.0)
    }
}

/// What applying one entry changed, for a user interface to refresh.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Documents whose content changed.
    pub streams: Vec<StreamId>,
    /// The membership, roles or epoch changed.
    pub membership: bool,
    /// Something the user should know (a refused commit, an unreadable entry).
    pub warning: Option<String>,
    /// The entry came after a gap (an entry was dropped or reordered on the
    /// way): it was not read, and the log must be read again from this
    /// position (subscribe again from [`SpaceView::read_to`]).
    pub missing: Option<u64>,
    /// This device's group refused the commit at this position: report it
    /// to the server (PROTOCOL §6.3), which reopens its epoch once most
    /// members did.
    pub refused: Option<u64>,
}

impl SpaceView {
    /// A view of a space just created or joined (nothing read yet).
    pub fn new(space: Space) -> Self {
        let head = genesis(space.id());
        Self::resume(space, 0, head, false)
    }

    fn resume(space: Space, next_seq: u64, head: [u8; 32], removed: bool) -> Self {
        let id = space.id();
        Self {
            space,
            next_seq,
            head,
            removed,
            pending_commit: None,
            chain: (0, genesis(id)),
            in_force: 0,
            replicas: HashMap::new(),
            records: Vec::new(),
            hashes: Vec::new(),
            locked: Vec::new(),
            recorded: Default::default(),
            broken: None,
            last_commit: None,
            refused: None,
        }
    }

    /// Loads a saved view. With its [`ViewCache`], reading goes on after
    /// the entries it had processed; without, from entry 0 (entries before
    /// `next_seq` are then checked against the saved head, not processed).
    pub fn restore(
        provider: &MlsProvider,
        device: &Device,
        saved: &SavedView,
    ) -> Result<Self, SpaceError> {
        let state = SpaceState::decode(&saved.state)
            .ok_or_else(|| SpaceError::Mls("corrupt saved space state".into()))?;
        let space = Space::load(provider, state)?;
        let mut view = Self::resume(space, saved.next_seq, saved.head, saved.removed);
        view.pending_commit = saved.pending_commit.clone();
        view.broken = saved.broken.clone();
        if let Some(cache) = &saved.cache {
            if cache.hashes.len() as u64 != saved.next_seq
                || cache.hashes.last().is_some_and(|h| *h != saved.head)
            {
                return Err(SpaceError::Mls(
                    "the saved view's log hashes do not end at its head".into(),
                ));
            }
            for r in &cache.replicas {
                let replica = Replica::restore(r, device)
                    .map_err(|e| SpaceError::Mls(format!("saved document: {e}")))?;
                view.replicas.insert(replica.stream(), replica);
            }
            view.chain = (saved.next_seq, saved.head);
            view.in_force = cache.in_force;
            view.hashes = cache.hashes.clone();
            view.records = cache.records.clone();
            view.locked = cache.locked.clone();
            view.recorded = cache.recorded.iter().copied().collect();
        }
        Ok(view)
    }

    /// The part to persist. In the middle of reading the log again from
    /// entry 0 (a view saved without its cache), the cache is left out
    /// until the reading has caught up.
    pub fn save(&mut self) -> SavedView {
        let cache = (self.chain.0 == self.next_seq).then(|| {
            let mut streams: Vec<StreamId> = self.replicas.keys().copied().collect();
            streams.sort();
            ViewCache {
                in_force: self.in_force,
                hashes: self.hashes.clone(),
                replicas: streams
                    .into_iter()
                    .map(|s| self.replicas.get_mut(&s).expect("listed").save())
                    .collect(),
                records: self.records.clone(),
                locked: self.locked.clone(),
                recorded: self.recorded.iter().copied().collect(),
            }
        });
        SavedView {
            state: postcard::to_allocvec(&self.space.to_state()).expect("space state encodes"),
            next_seq: self.next_seq,
            head: self.head,
            removed: self.removed,
            pending_commit: self.pending_commit.clone(),
            cache,
            broken: self.broken.clone(),
        }
    }

    /// The space id.
    pub fn id(&self) -> SpaceId {
        self.space.id()
    }

    /// The MLS space.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// The MLS space, to stage commits.
    pub fn space_mut(&mut self) -> &mut Space {
        &mut self.space
    }

    /// The log position a commit must name (§6.1): the last entry processed
    /// and its chained hash (genesis if none).
    pub fn log_position(&self) -> (u64, [u8; 32]) {
        (self.next_seq.saturating_sub(1), self.head)
    }

    /// The chained hash of the last entry processed (genesis if none).
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// The next entry expected in this run (where to subscribe from).
    pub fn read_to(&self) -> u64 {
        self.chain.0
    }

    /// True if this device was removed from the space.
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// Marks the device as removed (the server no longer serves it).
    pub fn mark_removed(&mut self) {
        self.removed = true;
    }

    /// The commit this device refused in this run, while its epoch is not
    /// reopened and no later commit made the refusal moot.
    pub fn refused(&self) -> Option<u64> {
        self.refused
    }

    /// Why the log can no longer be trusted, if it cannot.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Envelopes this device could not open (sealed under epochs it cannot
    /// derive).
    pub fn unreadable(&self) -> usize {
        self.locked.len()
    }

    /// Whether the log read so far holds a complete record of `epoch`
    /// (written by its committer, or by another member when the committer
    /// did not): one this device could open, handing on the previous
    /// epoch's secret under history `full`.
    pub fn has_record(&self, epoch: u64) -> bool {
        self.recorded.contains(&epoch)
    }

    /// Whether this device can write a complete record of the current
    /// epoch that joiners accept: it made the epoch's commit or is a space
    /// manager, and under history `full` it has the previous epoch's secret.
    pub fn can_record(&self) -> bool {
        if !self.space.may_record() {
            return false;
        }
        let epoch = self.space.epoch();
        let full = self
            .space
            .policy()
            .is_ok_and(|p| p.history == crate::space::HistoryPolicy::Full);
        epoch == 0 || !full || self.space.keyring().secret(epoch - 1).is_some()
    }

    /// The commit sent and not answered yet, if any.
    pub fn pending_commit(&self) -> Option<&[u8]> {
        self.pending_commit.as_deref()
    }

    /// Records a commit about to be sent (write-ahead: save before sending).
    pub fn set_pending_commit(&mut self, commit: Option<Vec<u8>>) {
        self.pending_commit = commit;
    }

    /// The replica of a document, created empty if this view has none.
    pub fn replica(&mut self, stream: StreamId, device: &Device) -> &mut Replica {
        self.replicas
            .entry(stream)
            .or_insert_with(|| Replica::new(stream, device))
    }

    /// The documents this device holds a replica of.
    pub fn streams(&self) -> Vec<StreamId> {
        self.replicas.keys().copied().collect()
    }

    /// Who wrote what in a document: each of its Automerge actors bound to
    /// the device that signed its changes, and each device to its user in
    /// the current roster or the roster of any epoch this device can read.
    pub fn authors(&self, stream: StreamId) -> Authors {
        let Some(replica) = self.replicas.get(&stream) else {
            return Authors::default();
        };
        // Read on every redraw of a filing: only the document's own actors
        // (a few) are resolved, the current roster first, then older ones.
        let members = self.space.members().unwrap_or_default();
        let user_of = |device: DeviceId| {
            members
                .iter()
                .chain(self.space.keyring().rosters().flatten())
                .find(|e| e.device == device)
                .map(|e| e.user.to_string())
        };
        Authors::new(
            replica
                .actor_devices()
                .filter_map(|(actor, device)| Some((actor.to_vec(), user_of(device)?))),
        )
    }

    /// The replica of a document, if the log held it.
    pub fn existing_replica(&mut self, stream: StreamId) -> Option<&mut Replica> {
        self.replicas.get_mut(&stream)
    }

    /// Seals the pending changes of a document under the current epoch.
    pub fn flush(
        &mut self,
        stream: StreamId,
        device: &Device,
    ) -> Result<Option<Vec<u8>>, crate::document::DocumentError> {
        let Self {
            space,
            replicas,
            head,
            ..
        } = self;
        replicas
            .entry(stream)
            .or_insert_with(|| Replica::new(stream, device))
            .flush(space.keyring(), device, *head)
    }

    /// Every document's local changes the server has not acknowledged
    /// ([`Replica::unsent`]), to keep across a reload.
    pub fn unsent(&mut self) -> Vec<(StreamId, Vec<Vec<u8>>)> {
        let mut out: Vec<(StreamId, Vec<Vec<u8>>)> = self
            .replicas
            .iter_mut()
            .map(|(stream, r)| (*stream, r.unsent()))
            .filter(|(_, changes)| !changes.is_empty())
            .collect();
        out.sort_by_key(|(stream, _)| *stream);
        out
    }

    /// Takes back changes kept by [`Self::unsent`] in an earlier run
    /// ([`Replica::adopt`]).
    pub fn adopt(
        &mut self,
        device: &Device,
        stream: StreamId,
        changes: Vec<Vec<u8>>,
    ) -> Result<(), DocumentError> {
        self.replica(stream, device).adopt(device.id(), changes)
    }

    /// The server's log has `next_seq` entries (a `Synced` frame): fewer
    /// than this device processed before means it was rolled back.
    pub fn synced(&mut self, next_seq: u64) {
        if next_seq < self.next_seq && self.broken.is_none() {
            self.broken = Some(format!(
                "the server's log of space {} has {next_seq} entries, fewer than the {} this device saw: it was rolled back or truncated",
                self.space.id(),
                self.next_seq
            ));
        }
    }

    /// Reads the next entry of the log.
    pub fn apply(&mut self, device: &Device, provider: &MlsProvider, entry: LogEntry) -> Applied {
        let mut out = Applied::default();
        let id = self.space.id();
        if self.broken.is_some() {
            return out;
        }
        if entry.seq < self.chain.0 {
            // Delivered twice (catch-up and live, or a second subscription):
            // it must be the entry already read at that position.
            if self.hashes.get(entry.seq as usize) != Some(&entry.hash()) {
                self.broken = Some(format!(
                    "the server sent two different entries at position {} of space {id}: it forked the log",
                    entry.seq
                ));
            }
            return out;
        }
        if entry.seq > self.chain.0 {
            // An entry is missing: nothing after it can be read before it.
            out.missing = Some(self.chain.0);
            return out;
        }
        if entry.prev != self.chain.1 {
            self.broken = Some(format!(
                "the log of space {id} breaks its hash chain at entry {}: the server rewrote or forked it",
                entry.seq
            ));
            return out;
        }
        // A reopening is labelled with the epoch it reopens: the one the
        // last commit left.
        let labelled = match entry.kind {
            EntryKind::Reopen => entry.epoch + 1 == self.in_force,
            _ => entry.epoch == self.in_force,
        };
        if !labelled {
            // The server labels every entry with the epoch in force when it
            // was appended; a commit moves it by one. Anything else is an
            // entry replayed from another epoch or a log put together.
            self.broken = Some(format!(
                "space {id}: entry {} is labelled epoch {} where epoch {} is in force: the server replayed or misplaced it",
                entry.seq, entry.epoch, self.in_force
            ));
            return out;
        }
        let hash = entry.hash();
        self.chain = (entry.seq + 1, hash);
        self.hashes.push(hash);
        let replay = entry.seq < self.next_seq;
        if entry.seq + 1 == self.next_seq && hash != self.head {
            self.broken = Some(format!(
                "the log of space {id} differs from the one this device saw before (entry {}): the server rewrote it",
                entry.seq
            ));
            return out;
        }
        if matches!(entry.kind, EntryKind::Commit | EntryKind::Proposal) {
            match inspect_mls(&entry.payload) {
                Ok(f) if f.epoch == entry.epoch && f.group == id.0 => {
                    // A commit states the log position and head its
                    // committer saw (§6.1): they must be in this log.
                    if entry.kind == EntryKind::Commit {
                        let seen = CommitAad::from_bytes(&f.aad).ok();
                        let consistent = seen.is_some_and(|a| {
                            (a.log_position == 0 && a.log_head == genesis(id))
                                || (a.log_position < entry.seq
                                    && self.hashes.get(a.log_position as usize)
                                        == Some(&a.log_head))
                        });
                        if !consistent {
                            self.broken = Some(format!(
                                "space {id}: the commit at entry {} was made on a log this device never saw: the server forked the log",
                                entry.seq
                            ));
                            return out;
                        }
                    }
                }
                _ => {
                    self.broken = Some(format!(
                        "space {id}: entry {} is labelled with an epoch or space its MLS message does not carry",
                        entry.seq
                    ));
                    return out;
                }
            }
        }
        match entry.kind {
            EntryKind::Commit => {
                if !replay && !self.removed && entry.epoch == self.space.epoch() {
                    match self
                        .space
                        .process(provider, &entry.payload, Content::Commit)
                    {
                        Ok(Processed::Commit { removed_self, .. }) => {
                            out.membership = true;
                            if removed_self {
                                self.removed = true;
                            }
                        }
                        Ok(Processed::OwnCommit | Processed::Own)
                            if self.pending_commit.as_deref() == Some(&entry.payload[..]) =>
                        {
                            // Our commit is in the log: the server accepted it
                            // even if its answer never reached us.
                            self.pending_commit = None;
                            out.membership = true;
                            if let Err(e) = self.space.commit_accepted(provider) {
                                out.warning = Some(format!("merging our own commit: {e}"));
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.refused = Some(entry.seq);
                            out.refused = Some(entry.seq);
                            out.warning = Some(format!(
                                "space {id}: refused the commit at entry {}: {e}",
                                entry.seq
                            ));
                        }
                    }
                } else if !replay && let Some(refused) = self.refused.take() {
                    out.warning = Some(format!(
                        "space {id}: the space went on past the commit at entry {refused}, which this device refused: it stays in the epoch before it and can no longer follow the space"
                    ));
                }
                self.last_commit = Some((entry.seq, entry.epoch));
                self.in_force = entry.epoch + 1;
            }
            EntryKind::Reopen => {
                let reopen = Reopen::decode(&entry.payload).filter(|r| {
                    r.commit < entry.seq
                        && self
                            .last_commit
                            .is_none_or(|c| c == (r.commit, entry.epoch))
                });
                let Some(reopen) = reopen else {
                    self.broken = Some(format!(
                        "space {id}: entry {} reopens an epoch that the last commit did not begin: the server misplaced it",
                        entry.seq
                    ));
                    return out;
                };
                // A device whose group went through the refused commit is
                // in an epoch the others left: it cannot follow any more.
                let accepted = !self.removed
                    && self.space.epoch() == entry.epoch + 1
                    && self.space.committer_of(entry.epoch + 1) == Some(reopen.committer);
                if accepted && !replay {
                    self.broken = Some(format!(
                        "space {id}: the members refused the commit at entry {}, which this device had accepted; it can no longer follow the space",
                        reopen.commit
                    ));
                    return out;
                }
                self.in_force = entry.epoch;
                self.last_commit = None;
                // Envelopes sealed after the refused commit, under the
                // epoch it would have begun, will never open.
                self.locked
                    .retain(|(_, _, in_force)| *in_force <= entry.epoch);
                if !replay {
                    self.refused = None;
                    out.membership = true;
                    out.warning = Some(format!(
                        "space {id}: the members refused the commit at entry {}; epoch {} is open again",
                        reopen.commit, entry.epoch
                    ));
                }
            }
            EntryKind::Proposal => {
                if !replay
                    && !self.removed
                    && entry.epoch == self.space.epoch()
                    && let Err(e) = self
                        .space
                        .process(provider, &entry.payload, Content::Proposal)
                {
                    out.warning = Some(format!(
                        "space {id}: refused the proposal at entry {}: {e}",
                        entry.seq
                    ));
                }
            }
            EntryKind::Envelope => match Header::parse(&entry.payload) {
                Ok(h) if h.stream == Space::records_stream(id) => {
                    self.records.push(entry.payload);
                    out.streams = self.unlock(device);
                }
                Ok(h) => {
                    let in_force = self.in_force;
                    let Self {
                        space,
                        replicas,
                        hashes,
                        ..
                    } = self;
                    let replica = replicas
                        .entry(h.stream)
                        .or_insert_with(|| Replica::new(h.stream, device));
                    let before = &hashes[..(entry.seq as usize).min(hashes.len())];
                    let on_log = |head: &[u8; 32]| on_log(id, before, head);
                    match replica.receive_from_log(
                        space.keyring(),
                        &entry.payload,
                        Some(in_force),
                        on_log,
                    ) {
                        Ok(_) => out.streams.push(h.stream),
                        // Its epoch's key may come with a later record.
                        Err(DocumentError::Envelope(EnvelopeError::UnknownEpoch(_))) => {
                            self.locked.push((h.stream, entry.payload, in_force));
                        }
                        Err(e) => {
                            out.warning = Some(format!(
                                "space {id}: refused the envelope at entry {}: {e}",
                                entry.seq
                            ));
                        }
                    }
                }
                Err(_) => {
                    out.warning = Some(format!(
                        "space {id}: unreadable envelope at entry {}",
                        entry.seq
                    ));
                }
            },
        }
        if !replay {
            self.next_seq = entry.seq + 1;
            self.head = hash;
        }
        out
    }

    /// Ingests every epoch record it can (each may hand on an older epoch's
    /// secret), then retries envelopes it could not open yet; returns the
    /// documents that changed.
    fn unlock(&mut self, device: &Device) -> Vec<StreamId> {
        loop {
            let before = self.records.len();
            let records = std::mem::take(&mut self.records);
            let full = self
                .space
                .policy()
                .is_ok_and(|p| p.history == crate::space::HistoryPolicy::Full);
            for r in records {
                match self.space.ingest_epoch_record(&r) {
                    // A record counts if it hands on what it must: under
                    // `full`, the previous epoch's secret.
                    Ok(record) => {
                        if record.previous.is_some() || record.epoch == 0 || !full {
                            self.recorded.insert(record.epoch);
                        }
                    }
                    Err(_) => self.records.push(r),
                }
            }
            if self.records.len() == before {
                break;
            }
        }
        let mut opened = Vec::new();
        let locked = std::mem::take(&mut self.locked);
        for (stream, payload, in_force) in locked {
            let Self {
                space,
                replicas,
                hashes,
                ..
            } = self;
            let replica = replicas
                .entry(stream)
                .or_insert_with(|| Replica::new(stream, device));
            // Its position is not kept: its head must be on the log read.
            let on_log = |head: &[u8; 32]| on_log(space.id(), hashes, head);
            if replica
                .receive_from_log(space.keyring(), &payload, Some(in_force), on_log)
                .is_err()
            {
                self.locked.push((stream, payload, in_force));
            } else {
                opened.push(stream);
            }
        }
        opened
    }
}

/// Whether `head`, the log head an envelope's writer names, is the genesis
/// of `space` or the hash of one of `read`, the entries before it (the
/// newest are looked at first: a writer names what it read last).
fn on_log(space: SpaceId, read: &[[u8; 32]], head: &[u8; 32]) -> bool {
    *head == crate::wire::genesis(space) || read.iter().rev().any(|h| h == head)
}
