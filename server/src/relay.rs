//! The Delivery Service of confidential spaces: one ordered, hash-chained log
//! per space, exactly one commit per epoch, Welcome queues, and live fan-out
//! to subscribed connections.
//!
//! The relay reads only what is in clear: the MLS framing (group, epoch,
//! content type, authenticated data), the commit AAD's roster change, and
//! envelope headers. It never holds a key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use amicus_core::envelope::{Header, Kind};
use amicus_core::space::{CommitAad, RosterChange};
use amicus_core::wire::{
    AppendItem, EntryKind, LogEntry, MlsContent, RefusalCode, Reopen, ServerFrame, inspect_mls,
    is_mls_welcome,
};
use amicus_core::{DeviceId, SpaceId, UserId};
use tokio::sync::{Notify, mpsc};

use crate::config::Limits;

/// Devices added by one commit (as the core's `MAX_ADDS_PER_COMMIT`).
const MAX_ADDS_PER_COMMIT: usize = amicus_core::space::MAX_ADDS_PER_COMMIT;
/// Welcomes queued for one device at most.
pub const MAX_QUEUED_WELCOMES: usize = 1_000;
/// Streams whose latest snapshot position a space remembers.
pub const MAX_SNAPSHOT_STREAMS: usize = 10_000;
/// Largest application message (relayed live, never stored).
pub const MAX_APPLICATION_MESSAGE: usize = 64 << 10;
use crate::state::{AppState, Caller};
use crate::store::{Append, LastCommit, Logged, SpaceKind, SpaceRecord, StoreError};

/// One live connection's outbound side.
#[derive(Clone)]
pub struct Outbox {
    /// The connection's id.
    pub id: u64,
    /// The device.
    pub device: DeviceId,
    tx: mpsc::Sender<Arc<Vec<u8>>>,
    overflow: Arc<(AtomicBool, Notify)>,
    revoked: Arc<Notify>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl Outbox {
    /// Queues an encoded frame; if the queue is full, marks the connection
    /// as too slow (it is then closed) and returns false.
    pub fn offer(&self, frame: Arc<Vec<u8>>) -> bool {
        let len = frame.len();
        let queued = self.queued_bytes.fetch_add(len, Ordering::SeqCst) + len;
        if queued <= self.max_bytes && self.tx.try_send(frame).is_ok() {
            true
        } else {
            self.queued_bytes.fetch_sub(len, Ordering::SeqCst);
            self.overflow.0.store(true, Ordering::SeqCst);
            self.overflow.1.notify_one();
            false
        }
    }
}

/// The inbound side a connection task reads.
pub struct Inbox {
    /// Frames to send.
    pub rx: mpsc::Receiver<Arc<Vec<u8>>>,
    /// Set and notified when the queue overflowed.
    pub overflow: Arc<(AtomicBool, Notify)>,
    /// Notified when the device is revoked: the connection closes.
    pub revoked: Arc<Notify>,
    /// Bytes waiting in the queue; the reader subtracts what it takes.
    pub queued_bytes: Arc<AtomicUsize>,
}

/// Live state of the relay (not durable: rebuilt as clients reconnect).
pub struct Relay {
    limits: Limits,
    next_conn: AtomicU64,
    locks: Mutex<HashMap<SpaceId, Arc<tokio::sync::Mutex<()>>>>,
    /// Appends waiting for their space's lock, in the order they came.
    queues: Mutex<HashMap<SpaceId, Vec<Pending>>>,
    subscribers: Mutex<HashMap<SpaceId, HashMap<u64, Outbox>>>,
    devices: Mutex<HashMap<DeviceId, HashMap<u64, Outbox>>>,
}

/// Why an append was refused, as sent to the client.
#[derive(Debug)]
pub struct Refusal {
    /// The code.
    pub code: RefusalCode,
    /// A sentence for people.
    pub message: String,
}

fn refuse(code: RefusalCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// An append waiting in its space's queue.
struct Pending {
    caller: Caller,
    from: Option<u64>,
    item: AppendItem,
    answer: tokio::sync::oneshot::Sender<Result<Appended, Refusal>>,
}

/// What became of one queued append, before it is answered.
enum Outcome {
    Refused(Refusal),
    Relayed {
        message: Vec<u8>,
        from: Option<u64>,
        next_seq: u64,
        head: [u8; 32],
    },
    Logged {
        entry: LogEntry,
        welcome: Option<Vec<u8>>,
        welcome_to: Vec<DeviceId>,
        removed: Vec<DeviceId>,
        user: UserId,
        members: Option<Vec<UserId>>,
    },
}

/// The same refusal again, for each item of a batch.
fn again(refusal: &Refusal) -> Refusal {
    refuse(refusal.code.clone(), refusal.message.clone())
}

/// The outcome of an append.
pub enum Appended {
    /// Durable at `seq` with chained hash `hash`.
    Logged {
        /// Sequence number.
        seq: u64,
        /// Chained hash.
        hash: [u8; 32],
    },
    /// An application message relayed live (not stored) at this log point.
    Relayed {
        /// The next sequence number of the log.
        next_seq: u64,
        /// The log head.
        head: [u8; 32],
    },
}

impl Relay {
    /// An empty relay.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            next_conn: AtomicU64::new(1),
            locks: Default::default(),
            queues: Default::default(),
            subscribers: Default::default(),
            devices: Default::default(),
        }
    }

    /// Registers a connection of `device`; `None` if the device already has
    /// as many connections as allowed.
    pub fn connect(&self, device: DeviceId) -> Option<(Outbox, Inbox)> {
        let mut devices = self.devices.lock().expect("relay lock");
        let conns = devices.entry(device).or_default();
        if conns.len() >= self.limits.connections_per_device {
            return None;
        }
        let (tx, rx) = mpsc::channel(self.limits.send_queue.max(1));
        let overflow = Arc::new((AtomicBool::new(false), Notify::new()));
        let revoked = Arc::new(Notify::new());
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let outbox = Outbox {
            id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            device,
            tx,
            overflow: overflow.clone(),
            revoked: revoked.clone(),
            queued_bytes: queued_bytes.clone(),
            max_bytes: self.limits.send_queue_bytes,
        };
        conns.insert(outbox.id, outbox.clone());
        Some((
            outbox,
            Inbox {
                rx,
                overflow,
                revoked,
                queued_bytes,
            },
        ))
    }

    /// Forgets a connection and its subscriptions.
    pub fn disconnect(&self, outbox: &Outbox) {
        let mut devices = self.devices.lock().expect("relay lock");
        if let Some(conns) = devices.get_mut(&outbox.device) {
            conns.remove(&outbox.id);
            if conns.is_empty() {
                devices.remove(&outbox.device);
            }
        }
        drop(devices);
        let mut subs = self.subscribers.lock().expect("relay lock");
        subs.retain(|_, conns| {
            conns.remove(&outbox.id);
            !conns.is_empty()
        });
    }

    fn lock_of(&self, space: SpaceId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("relay lock")
            .entry(space)
            .or_default()
            .clone()
    }

    /// Subscribes a connection to a space, under the space's lock so that
    /// every entry after the returned state reaches the connection live.
    /// Returns the space at that moment.
    pub async fn subscribe(
        &self,
        state: &AppState,
        caller: &Caller,
        outbox: &Outbox,
        space: SpaceId,
    ) -> Result<SpaceRecord, Refusal> {
        // Only spaces that exist get a lock (the map never grows with ids
        // made up by a client).
        member(&load(state, space)?, caller)?;
        let lock = self.lock_of(space);
        let _guard = lock.lock().await;
        let record = load(state, space)?;
        member(&record, caller)?;
        self.subscribers
            .lock()
            .expect("relay lock")
            .entry(space)
            .or_default()
            .insert(outbox.id, outbox.clone());
        Ok(record)
    }

    /// Counts an entry made durable and fans it out to every subscriber.
    fn logged(&self, state: &AppState, space: SpaceId, entry: LogEntry) {
        state.metrics.appends.fetch_add(1, Ordering::Relaxed);
        self.fan_out(state, space, &ServerFrame::Entry { space, entry }, None);
    }

    fn fan_out(&self, state: &AppState, space: SpaceId, frame: &ServerFrame, except: Option<u64>) {
        let bytes = Arc::new(frame.encode());
        let subs = self.subscribers.lock().expect("relay lock");
        if let Some(conns) = subs.get(&space) {
            for (id, outbox) in conns {
                if Some(*id) != except && outbox.offer(bytes.clone()) {
                    state.metrics.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Sends `frame` to every connection of each of `devices`.
    pub fn tell_devices(&self, devices: impl IntoIterator<Item = DeviceId>, frame: &ServerFrame) {
        let bytes = Arc::new(frame.encode());
        let connected = self.devices.lock().expect("relay lock");
        for device in devices {
            for outbox in connected.get(&device).into_iter().flat_map(|c| c.values()) {
                outbox.offer(bytes.clone());
            }
        }
    }

    fn to_device(&self, device: DeviceId, frame: &ServerFrame) {
        self.tell_devices([device], frame);
    }

    /// Closes every connection of a revoked device (each ends with close
    /// code 4003).
    pub fn close_revoked(&self, device: DeviceId) {
        if let Some(conns) = self.devices.lock().expect("relay lock").get(&device) {
            for outbox in conns.values() {
                outbox.revoked.notify_one();
            }
        }
    }

    fn unsubscribe_devices(&self, space: SpaceId, removed: &[DeviceId]) {
        let mut subs = self.subscribers.lock().expect("relay lock");
        if let Some(conns) = subs.get_mut(&space) {
            conns.retain(|_, o| !removed.contains(&o.device));
        }
    }

    /// Appends an item to a space log (see `docs/PROTOCOL.md` §12.5): checks
    /// membership and the clear framing, arbitrates commits ([`decide`]),
    /// makes the entry durable, then fans it out. The item takes its place
    /// in the space's queue when this is called, so the items of one
    /// connection keep their order however their answers are awaited; the
    /// returned future is the answer. Whoever holds the space's lock next
    /// takes every item queued by then and writes the entries in one
    /// transaction and one flush (group commit): each is still answered and
    /// fanned out only once durable.
    pub fn append(
        state: &Arc<AppState>,
        caller: &Caller,
        from: Option<u64>,
        space_id: SpaceId,
        item: AppendItem,
    ) -> impl Future<Output = Result<Appended, Refusal>> + Send + 'static {
        // Only spaces that exist get a queue and a lock (the maps never
        // grow with ids made up by a client).
        let queued = load(state, space_id)
            .and_then(|space| member(&space, caller))
            .map(|()| {
                let (answer, answered) = tokio::sync::oneshot::channel();
                state
                    .relay
                    .queues
                    .lock()
                    .expect("relay lock")
                    .entry(space_id)
                    .or_default()
                    .push(Pending {
                        caller: caller.clone(),
                        from,
                        item,
                        answer,
                    });
                tokio::spawn(Self::drain(state.clone(), space_id));
                answered
            });
        async move {
            queued?.await.unwrap_or_else(|_| {
                Err(internal(StoreError::Database("append task failed".into())))
            })
        }
    }

    /// Takes the space's lock and handles every item queued by then (none
    /// if another drain took them first).
    async fn drain(state: Arc<AppState>, space_id: SpaceId) {
        let relay = &state.relay;
        let lock = relay.lock_of(space_id);
        let _guard = lock.lock().await;
        let batch = relay
            .queues
            .lock()
            .expect("relay lock")
            .remove(&space_id)
            .unwrap_or_default();
        if !batch.is_empty() {
            relay.append_batch(&state, space_id, batch).await;
        }
    }

    /// Decides each queued item in order on the space as the ones before
    /// it left it, writes the entries at once, then answers every item and
    /// fans out what was logged or relayed, in order.
    async fn append_batch(&self, state: &AppState, space_id: SpaceId, batch: Vec<Pending>) {
        let mut space = match load(state, space_id) {
            Ok(space) => space,
            Err(refusal) => {
                for pending in batch {
                    let _ = pending.answer.send(Err(again(&refusal)));
                }
                return;
            }
        };
        let mut outcomes: Vec<_> = batch
            .into_iter()
            .map(|pending| {
                let outcome = decide_queued(
                    state,
                    &mut space,
                    &pending.caller,
                    pending.from,
                    pending.item,
                );
                (pending.answer, outcome)
            })
            .collect();
        let logs = outcomes
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Logged { .. }));
        if logs {
            let store = state.store.clone();
            let written = tokio::task::spawn_blocking(move || {
                let entries: Vec<Logged<'_>> = outcomes
                    .iter()
                    .filter_map(|(_, o)| match o {
                        Outcome::Logged {
                            entry,
                            welcome,
                            welcome_to,
                            ..
                        } => Some(Logged {
                            entry,
                            welcome: welcome.as_deref().map(|w| (w, welcome_to.as_slice())),
                        }),
                        _ => None,
                    })
                    .collect();
                let result = store.append_all(&space, &entries);
                (outcomes, result)
            })
            .await;
            match written {
                Ok((written_outcomes, Ok(()))) => {
                    state.metrics.append_batches.fetch_add(1, Ordering::Relaxed);
                    outcomes = written_outcomes;
                }
                Ok((written_outcomes, Err(e))) => {
                    tracing::error!(error = %e, "writing appends failed");
                    for (answer, outcome) in written_outcomes {
                        let _ = answer.send(Err(match outcome {
                            Outcome::Refused(r) => r,
                            _ => internal(StoreError::Database(e.to_string())),
                        }));
                    }
                    return;
                }
                Err(_) => {
                    // The task panicked: its answers were dropped with it,
                    // and every waiting item is told of a failure.
                    return;
                }
            }
        }
        for (answer, outcome) in outcomes {
            let answered = match outcome {
                Outcome::Refused(refusal) => Err(refusal),
                Outcome::Relayed {
                    message,
                    from,
                    next_seq,
                    head,
                } => {
                    self.fan_out(
                        state,
                        space_id,
                        &ServerFrame::Application {
                            space: space_id,
                            message,
                        },
                        from,
                    );
                    Ok(Appended::Relayed { next_seq, head })
                }
                Outcome::Logged {
                    entry,
                    welcome,
                    welcome_to,
                    removed,
                    user,
                    members,
                } => {
                    let (seq, hash) = (entry.seq, entry.hash());
                    self.logged(state, space_id, entry);
                    if let Some(members) = members {
                        state
                            .notifier
                            .activity(&members, &user, crate::state::now());
                    }
                    if !removed.is_empty() {
                        self.unsubscribe_devices(space_id, &removed);
                    }
                    if let Some(welcome) = welcome {
                        let frame = ServerFrame::Welcome {
                            space: space_id,
                            welcome,
                        };
                        for device in welcome_to {
                            self.to_device(device, &frame);
                        }
                    }
                    Ok(Appended::Logged { seq, hash })
                }
            };
            let _ = answer.send(answered);
        }
    }

    /// Counts a member's report of a refused commit ([`report`]): the
    /// count is durable before the answer, and a reopening's entry is
    /// durable before it is fanned out.
    pub async fn report(
        &self,
        state: &AppState,
        caller: &Caller,
        space_id: SpaceId,
        commit: u64,
    ) -> Result<Reported, Refusal> {
        // Only spaces that exist get a lock (a device the last commit
        // removed may report it: no roster check here).
        load(state, space_id)?;
        let lock = self.lock_of(space_id);
        let _guard = lock.lock().await;
        let mut space = load(state, space_id)?;
        let before = space.clone();
        let mut outcome = report(&mut space, (caller.device, &caller.user), commit)?;
        if space != before {
            let store = state.store.clone();
            let entry = outcome.reopen.clone();
            tokio::task::spawn_blocking(move || {
                store.append(Append {
                    space: &space,
                    entry: entry.as_ref(),
                    welcome: None,
                })
            })
            .await
            .map_err(|_| internal(StoreError::Database("report task failed".into())))?
            .map_err(internal)?;
        }
        if let Some(entry) = outcome.reopen.take() {
            self.logged(state, space_id, entry);
        }
        Ok(outcome)
    }
}

/// What a report did ([`report`]).
#[derive(Debug)]
pub struct Reported {
    /// The `Reopen` entry this report wrote (to make durable and fan
    /// out), if it was the one that reached the majority.
    pub reopen: Option<LogEntry>,
    /// True if the commit's epoch is reopened (by this report or before).
    pub reopened: bool,
    /// Users who reported the commit.
    pub reports: u32,
    /// Users whose reports reopen it: more than half of the users the
    /// space's delivery roster held before the commit, its committer's
    /// user left out.
    pub needed: u32,
}

/// The relay's decision on one report that a member's group refused the
/// commit at `commit` (PROTOCOL §6.3), without lock or store. Only the
/// space's last commit can be reported, only by a device the roster held
/// before it (a device it removed included) of another user than its
/// committer's, and each user counts once. When more than half of those
/// users reported it, the epoch is reopened: the roster is as before the
/// commit, the space is back in the commit's epoch (the next valid commit
/// takes it), the committer's user may never commit in the space again,
/// and a `Reopen` entry records it in the log, where the refused commit
/// stays. A commit its members accepted cannot be reopened by a minority.
pub fn report(
    space_record: &mut SpaceRecord,
    reporter: (DeviceId, &UserId),
    commit: u64,
) -> Result<Reported, Refusal> {
    let mut space = space_record.clone();
    let Some(last) = space.last_commit.as_mut().filter(|c| c.seq == commit) else {
        return Err(malformed(format!(
            "entry {commit} is not the last commit of the space (a later commit was accepted, or it is no commit): it can no longer be reported"
        )));
    };
    let mut before = space.roster.clone();
    if !last.reopened {
        for d in &last.added {
            before.remove(d);
        }
        for (d, u) in &last.removed {
            before.insert(*d, u.clone());
        }
    }
    if before.get(&reporter.0) != Some(reporter.1) {
        return Err(refuse(
            RefusalCode::Forbidden,
            "this device was not in the space's roster when the commit was made",
        ));
    }
    if last.committer.1 == *reporter.1 {
        return Err(refuse(
            RefusalCode::Forbidden,
            "a commit cannot be reported by its committer's own user",
        ));
    }
    let voters: std::collections::BTreeSet<&UserId> = before
        .values()
        .filter(|u| **u != last.committer.1)
        .collect();
    let needed = voters.len() as u32 / 2 + 1;
    let mut reopen = None;
    if !last.reopened {
        last.reports.insert(reporter.1.clone());
        if last.reports.len() as u32 >= needed {
            last.reopened = true;
            let entry = LogEntry {
                seq: space.next_seq,
                prev: space.head,
                kind: EntryKind::Reopen,
                epoch: last.epoch,
                payload: Reopen {
                    commit: last.seq,
                    committer: last.committer.0,
                }
                .encode(),
            };
            space.roster = before;
            space.epoch = last.epoch;
            space.barred.insert(last.committer.1.clone());
            space.next_seq += 1;
            space.head = entry.hash();
            reopen = Some(entry);
        }
    }
    let last = space.last_commit.as_ref().expect("present");
    let outcome = Reported {
        reopen,
        reopened: last.reopened,
        reports: last.reports.len() as u32,
        needed,
    };
    *space_record = space;
    Ok(outcome)
}

/// What an accepted append does.
pub enum Decision {
    /// A new log entry; the space record has advanced past it.
    Log {
        /// The entry.
        entry: LogEntry,
        /// The Welcome of a commit that adds devices.
        welcome: Option<Vec<u8>>,
        /// The devices the commit adds (they get the Welcome).
        adds: Vec<DeviceId>,
        /// The devices the commit removes (they are no longer served).
        removed: Vec<DeviceId>,
    },
    /// An application message to relay live (never stored).
    Relay(Vec<u8>),
}

/// The relay's decision on one queued append, on the space as the items
/// before it in its batch left it: a refusal, a message to relay, or an
/// entry to write with the devices its Welcome goes to.
fn decide_queued(
    state: &AppState,
    space: &mut SpaceRecord,
    caller: &Caller,
    from: Option<u64>,
    item: AppendItem,
) -> Outcome {
    let registered = |device: DeviceId, user: &UserId| {
        state
            .store
            .device(device)
            .map_err(internal)
            .map(|d| d.is_some_and(|d| &d.certificate.user == user))
    };
    // A commit may have to be taken back (below): its space as before.
    let before = matches!(item, AppendItem::Commit { .. }).then(|| space.clone());
    let decision = member(space, caller)
        .and_then(|()| decide(space, (caller.device, &caller.user), item, registered));
    let (entry, welcome, adds, removed) = match decision {
        Err(refusal) => {
            if matches!(refusal.code, RefusalCode::CommitConflict { .. }) {
                state
                    .metrics
                    .commit_conflicts
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Outcome::Refused(refusal);
        }
        Ok(Decision::Relay(message)) => {
            return Outcome::Relayed {
                message,
                from,
                next_seq: space.next_seq,
                head: space.head,
            };
        }
        Ok(Decision::Log {
            entry,
            welcome,
            adds,
            removed,
        }) => (entry, welcome, adds, removed),
    };
    // A device's queue is bounded: past the limit, the device must drain
    // its Welcomes before it can be added elsewhere.
    let mut welcome_to = Vec::new();
    for d in adds {
        match state.store.welcome_count(d) {
            Ok(n) if n < MAX_QUEUED_WELCOMES => welcome_to.push(d),
            Ok(_) => {}
            // The added devices cannot all be counted: the commit is
            // refused as it would have been alone, and the space is as
            // before it.
            Err(e) => {
                if let Some(before) = before {
                    *space = before;
                }
                return Outcome::Refused(internal(e));
            }
        }
    }
    Outcome::Logged {
        entry,
        welcome,
        welcome_to,
        removed,
        user: caller.user.clone(),
        // Who may hear of it by email (only if anyone asked for email):
        // the roster after it.
        members: state
            .notifier
            .anyone()
            .then(|| space.roster.values().cloned().collect()),
    }
}

/// The relay's decision on one append to a confidential space, without
/// lock, store or socket: the server calls it under the space's lock and
/// makes the result durable; the whole-system simulation's model relay
/// calls it too. `caller` is the appending device and its user;
/// `registered` says whether a device is a registered device of a user. On
/// success `space` has advanced (position, head, epoch, delivery roster,
/// snapshot positions, last commit); on a refusal it is unchanged.
pub fn decide(
    space_record: &mut SpaceRecord,
    caller: (DeviceId, &UserId),
    item: AppendItem,
    registered: impl Fn(DeviceId, &UserId) -> Result<bool, Refusal>,
) -> Result<Decision, Refusal> {
    let mut space = space_record.clone();
    let space_id = space.id;
    let stale = |what: &str, epoch: u64| {
        refuse(
            RefusalCode::StaleEpoch {
                current_epoch: epoch,
            },
            format!("{what} is for another epoch; the space is in epoch {epoch}"),
        )
    };
    let mut welcome_body: Option<Vec<u8>> = None;
    let mut removed = Vec::new();
    let mut added = Vec::new();
    let (kind, payload) = match item {
        AppendItem::Commit {
            epoch,
            commit,
            welcome,
            aad,
        } => {
            let framing = inspect_mls(&commit)
                .map_err(|_| malformed("the commit is not an MLS PrivateMessage"))?;
            if framing.group != space_id.0 || framing.content != MlsContent::Commit {
                return Err(malformed("the commit is not a commit of this space"));
            }
            if framing.epoch != epoch || framing.aad != aad {
                return Err(malformed(
                    "the commit's epoch or authenticated data differs from the append's",
                ));
            }
            let parsed = CommitAad::from_bytes(&aad)
                .map_err(|_| malformed("the commit's authenticated data is malformed"))?;
            if space.barred.contains(caller.1) {
                return Err(refuse(
                    RefusalCode::Forbidden,
                    "the members of this space refused an earlier commit of yours: you may not commit in it any more",
                ));
            }
            if epoch != space.epoch {
                return Err(refuse(
                    RefusalCode::CommitConflict {
                        current_epoch: space.epoch,
                    },
                    format!(
                        "another commit took epoch {epoch}; the space is in epoch {}: process it and re-apply your change",
                        space.epoch
                    ),
                ));
            }
            if parsed.roster_change.len() > MAX_ADDS_PER_COMMIT * 2
                || !parsed.roster_change.windows(2).all(|w| w[0] < w[1])
            {
                return Err(malformed(
                    "a commit's roster change is sorted, without repeats, and at most 2,000 devices long",
                ));
            }
            let mut adds = Vec::new();
            for change in &parsed.roster_change {
                match change {
                    RosterChange::Add { user, device } => {
                        let known = registered(*device, user)?;
                        if !known {
                            return Err(malformed(format!(
                                "the commit adds device {device}, which is not a registered device of {user}"
                            )));
                        }
                        adds.push((*device, user.clone()));
                    }
                    RosterChange::Remove { device } => removed.push(*device),
                }
            }
            if adds.len() > MAX_ADDS_PER_COMMIT {
                return Err(malformed("at most 1,000 devices are added per commit"));
            }
            match (&welcome, adds.is_empty()) {
                (Some(w), false) if is_mls_welcome(w) => {}
                (None, true) => {}
                _ => {
                    return Err(malformed(
                        "a commit that adds devices carries one MLS Welcome, and only then",
                    ));
                }
            }
            let mut undo = Vec::new();
            for d in &removed {
                if let Some(u) = space.roster.remove(d) {
                    undo.push((*d, u));
                }
            }
            let mut new = Vec::new();
            for (d, u) in &adds {
                if space.roster.insert(*d, u.clone()).is_none() {
                    new.push(*d);
                }
            }
            space.last_commit = Some(LastCommit {
                seq: space.next_seq,
                epoch,
                committer: (caller.0, caller.1.clone()),
                added: new,
                removed: undo,
                reports: Default::default(),
                reopened: false,
            });
            if space.roster.is_empty() {
                return Err(malformed(
                    "a commit may not remove every device of the space",
                ));
            }
            added = adds.iter().map(|(d, _)| *d).collect();
            welcome_body = welcome;
            (EntryKind::Commit, commit)
        }
        AppendItem::Envelope(bytes) => {
            let header = Header::parse(&bytes)
                .map_err(|_| malformed("the envelope's header does not parse"))?;
            if header.space != space_id {
                return Err(malformed("the envelope belongs to another space"));
            }
            // Content must be sealed under the current epoch's key. An
            // epoch record may come late (another commit can follow the
            // one it describes before the committer writes it); members
            // open records without an epoch-in-force check.
            let in_time = match header.kind {
                Kind::EpochRecord => header.epoch <= space.epoch,
                Kind::Change | Kind::Snapshot => header.epoch == space.epoch,
            };
            if !in_time {
                return Err(stale("the envelope", space.epoch));
            }
            if header.kind == Kind::Snapshot
                && (space.snapshots.len() < MAX_SNAPSHOT_STREAMS
                    || space.snapshots.contains_key(&header.stream.0))
            {
                space.snapshots.insert(header.stream.0, space.next_seq);
            }
            (EntryKind::Envelope, bytes)
        }
        AppendItem::Proposal(bytes) => {
            let framing = inspect_mls(&bytes)
                .map_err(|_| malformed("the proposal is not an MLS PrivateMessage"))?;
            if framing.group != space_id.0 || framing.content != MlsContent::Proposal {
                return Err(malformed("not a proposal of this space"));
            }
            if framing.epoch != space.epoch {
                return Err(stale("the proposal", space.epoch));
            }
            (EntryKind::Proposal, bytes)
        }
        AppendItem::Application(bytes) => {
            if bytes.len() > MAX_APPLICATION_MESSAGE {
                return Err(refuse(
                    RefusalCode::TooLarge,
                    "an application message (presence, cursors) holds at most 64 KiB",
                ));
            }
            let framing = inspect_mls(&bytes)
                .map_err(|_| malformed("the application message is not an MLS PrivateMessage"))?;
            if framing.group != space_id.0 || framing.content != MlsContent::Application {
                return Err(malformed("not an application message of this space"));
            }
            if framing.epoch != space.epoch {
                return Err(stale("the application message", space.epoch));
            }
            return Ok(Decision::Relay(bytes));
        }
    };
    let entry = LogEntry {
        seq: space.next_seq,
        prev: space.head,
        kind,
        epoch: space.epoch,
        payload,
    };
    space.next_seq += 1;
    space.head = entry.hash();
    if kind == EntryKind::Commit {
        space.epoch += 1;
    }
    *space_record = space;
    Ok(Decision::Log {
        entry,
        welcome: welcome_body,
        adds: added,
        removed,
    })
}

fn malformed(message: impl Into<String>) -> Refusal {
    refuse(RefusalCode::Malformed, message)
}

fn internal(e: StoreError) -> Refusal {
    tracing::error!(error = %e, "store failure during an append");
    refuse(
        RefusalCode::Unavailable,
        "the server could not store the entry; nothing was stored, retry later",
    )
}

fn load(state: &AppState, space: SpaceId) -> Result<SpaceRecord, Refusal> {
    match state.store.space(space).map_err(internal)? {
        Some(s) if s.kind == SpaceKind::Confidential => Ok(s),
        Some(_) => Err(refuse(
            RefusalCode::Forbidden,
            "a public space has no log; write its documents over HTTP",
        )),
        None => Err(refuse(RefusalCode::Forbidden, "no such space")),
    }
}

fn member(space: &SpaceRecord, caller: &Caller) -> Result<(), Refusal> {
    if space.roster.get(&caller.device) == Some(&caller.user) {
        Ok(())
    } else {
        Err(refuse(
            RefusalCode::Forbidden,
            "this device is not in the space's roster",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use amicus_core::wire::genesis;

    use super::*;

    fn user(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    /// A space of `users` (one device each) whose last commit, appended by
    /// `committer`'s device, took `removed`'s device off the roster.
    fn space(users: &[&str], committer: &str, removed: &str) -> (SpaceRecord, Vec<DeviceId>) {
        let devices: Vec<DeviceId> = users.iter().map(|_| DeviceId::random()).collect();
        let id = SpaceId::random();
        let mut roster: BTreeMap<DeviceId, UserId> = users
            .iter()
            .zip(&devices)
            .map(|(u, d)| (*d, user(u)))
            .collect();
        let at = |name: &str| devices[users.iter().position(|u| *u == name).unwrap()];
        roster.remove(&at(removed));
        let record = SpaceRecord {
            id,
            kind: SpaceKind::Confidential,
            created_by: user(users[0]),
            epoch: 4,
            next_seq: 10,
            head: genesis(id),
            roster,
            roles: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            name: None,
            last_commit: Some(LastCommit {
                seq: 9,
                epoch: 3,
                committer: (at(committer), user(committer)),
                added: Vec::new(),
                removed: vec![(at(removed), user(removed))],
                reports: Default::default(),
                reopened: false,
            }),
            barred: Default::default(),
        };
        (record, devices)
    }

    /// Most users other than the committer's reopen the epoch, a removed
    /// device's report counting; the roster, epoch and log are as the
    /// reopening says, and the committer's user is barred.
    #[test]
    fn most_other_users_reopen_the_last_commit_and_its_committer_is_barred() {
        let users = ["amina", "bruno", "chloe", "dan", "mallory"];
        let (mut space, d) = space(&users, "mallory", "amina");
        // Four voters: three reports are needed.
        let first = report(&mut space, (d[0], &user("amina")), 9).unwrap();
        assert_eq!((first.reopened, first.reports, first.needed), (false, 1, 3));
        // A user counts once, however often it reports.
        let again = report(&mut space, (d[0], &user("amina")), 9).unwrap();
        assert_eq!((again.reopened, again.reports), (false, 1));
        let second = report(&mut space, (d[1], &user("bruno")), 9).unwrap();
        assert_eq!((second.reopened, second.reports), (false, 2));
        assert_eq!(space.epoch, 4);
        let third = report(&mut space, (d[2], &user("chloe")), 9).unwrap();
        assert!(third.reopened);
        let entry = third.reopen.expect("the reopening entry");
        assert_eq!(entry.kind, EntryKind::Reopen);
        assert_eq!((entry.seq, entry.epoch), (10, 3));
        assert_eq!(
            Reopen::decode(&entry.payload),
            Some(Reopen {
                commit: 9,
                committer: d[4]
            })
        );
        assert_eq!(
            (space.epoch, space.next_seq, space.head),
            (3, 11, entry.hash())
        );
        assert_eq!(space.roster.get(&d[0]), Some(&user("amina")));
        assert!(space.barred.contains(&user("mallory")));
        // Late reports are answered, and reopen nothing twice.
        let late = report(&mut space, (d[3], &user("dan")), 9).unwrap();
        assert!(late.reopened && late.reopen.is_none());
        assert_eq!(space.next_seq, 11);
    }

    #[test]
    fn only_the_last_commit_is_reported_by_another_user_of_the_roster_before_it() {
        let users = ["amina", "bruno", "mallory"];
        let (mut space, d) = space(&users, "mallory", "amina");
        let before = space.clone();
        let refused = |r: Result<Reported, Refusal>| r.expect_err("refused").code;
        assert_eq!(
            refused(report(&mut space, (d[2], &user("mallory")), 9)),
            RefusalCode::Forbidden
        );
        assert_eq!(
            refused(report(&mut space, (DeviceId::random(), &user("bruno")), 9)),
            RefusalCode::Forbidden
        );
        assert_eq!(
            refused(report(&mut space, (d[1], &user("amina")), 9)),
            RefusalCode::Forbidden
        );
        assert_eq!(
            refused(report(&mut space, (d[1], &user("bruno")), 8)),
            RefusalCode::Malformed
        );
        assert_eq!(space, before, "a refused report changes nothing");
        // Two voters: both are needed.
        assert!(
            !report(&mut space, (d[1], &user("bruno")), 9)
                .unwrap()
                .reopened
        );
        assert!(
            report(&mut space, (d[0], &user("amina")), 9)
                .unwrap()
                .reopened
        );
    }
}
