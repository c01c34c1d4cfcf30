//! The client engine: everything a client decides, once, without I/O.
//!
//! In the manner of quinn-proto and rustls, a driver (the native client's
//! tokio loop, the browser's JavaScript, the whole-system simulation) feeds
//! the [`Engine`] what happened — user intents ([`Engine::start`]), server
//! frames ([`Engine::handle_frame`]), answers to HTTP requests
//! ([`Engine::handle_response`]), the connection going up or down
//! ([`Engine::handle_link`]) and time ([`Engine::handle_timeout`]) — and
//! asks it what to do: state to make durable ([`Engine::must_persist`],
//! [`Engine::persist`]), frames to send ([`Engine::poll_transmit`]), HTTP
//! requests to make ([`Engine::poll_request`]), events for the interface
//! ([`Engine::poll_event`]) and when to wake it ([`Engine::poll_timeout`]).
//!
//! **Durability rule.** While [`Engine::must_persist`] is true,
//! [`Engine::poll_transmit`] and [`Engine::poll_request`] return nothing:
//! the driver makes [`Engine::persist`]'s record durable first. The engine
//! asks for it after every change that must survive a crash before the
//! server may see its consequence: a commit staged (so that its answer, if
//! lost, is recognised in the log), a commit merged, a space joined, fresh
//! KeyPackages (their private keys), a space created.
//!
//! Decided here, for every client: the subscription to a space's log and
//! reading it after a gap, the limit after which a server that announces
//! entries it does not deliver is reported as withholding
//! ([`Config::subscribe_attempts`]), fork and rollback detection (through
//! [`SpaceView`]), commits with their write-ahead pending record, the retry
//! after losing an epoch to another commit, epoch records, flushing with
//! its retries and back-off, signing in again when the session expired,
//! reconnecting with back-off, keep-alive pings, Welcomes and KeyPackage
//! top-up. Times are milliseconds on the driver's monotonic clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::api::{self, HttpRequest, HttpResponse, Method};
use crate::at_rest::{AtRestError, DeviceRecord, Restored};
use crate::document::{DocumentError, Replica};
use crate::files::FileManifest;
use crate::identity::{
    Contacts, Device, DeviceRevocation, IdentityPublicKey, Statement, UserIdentity,
};
use crate::space::{
    Content, HistoryPolicy, NewMember, PendingCommit, Processed, Role, Space, SpaceError,
};
use crate::view::SpaceView;
use crate::wire::{AppendItem, ClientFrame, LogEntry, RefusalCode, ServerFrame};
use crate::{
    DeviceId, MlsProvider, SpaceId, StreamId, UserId, activity, discussion, library, monitoring,
    publication, transfer,
};

/// Whether a user is a space manager in the space's current policy: whose
/// words count for the space's name and description and for the violation
/// types its register adds.
fn manager_now(view: &SpaceView) -> impl Fn(&str) -> bool + use<> {
    let policy = view.space().policy().ok();
    move |user: &str| {
        let role = UserId::new(user)
            .ok()
            .and_then(|u| policy.as_ref().and_then(|p| p.role(&u)));
        role == Some(Role::SpaceManager)
    }
}

/// Users' names for a sentence: `a, b, c`.
fn names(users: &[UserId]) -> String {
    users
        .iter()
        .map(UserId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The largest presence message [`Engine::presence`] sends.
pub const MAX_PRESENCE: usize = 1024;

/// How long a device waits to report a refused commit again while its
/// epoch is not reopened (milliseconds).
pub const REPORT_RETRY_MS: u64 = 30_000;

/// How often the identity holder reads the offers while it shows a
/// pairing code, in milliseconds (PROTOCOL §3.6).
pub const PAIRING_POLL_MS: u64 = 1_500;

/// How long a pairing code is shown for before it expires, in
/// milliseconds (the server keeps a channel as long).
pub const PAIRING_MS: u64 = 600_000;

/// How often a device just paired is looked for in the directory until it
/// has published KeyPackages, and for how long at most, in milliseconds.
pub const NEW_DEVICE_POLL_MS: u64 = 1_000;
/// See [`NEW_DEVICE_POLL_MS`].
pub const NEW_DEVICE_MS: u64 = 120_000;

/// The role of whoever joins an open space (PROTOCOL §15.3): a community
/// of practice's members write and post; its managers raise or lower a
/// role afterwards.
pub const OPEN_SPACE_ROLE: Role = Role::Contributor;

/// An operation started by [`Engine::start`].
pub type OpId = u64;
/// An HTTP request handed out by [`Engine::poll_request`].
pub type RequestId = u64;

/// The engine's limits and timings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Subscriptions to a space whose server announces entries it does not
    /// deliver before the server is reported as withholding.
    pub subscribe_attempts: u32,
    /// After reporting withholding, when to subscribe again (ms).
    pub withheld_retry_ms: u64,
    /// An operation that makes no progress for this long fails (ms).
    pub op_timeout_ms: u64,
    /// Commits built again after losing the epoch to another commit.
    pub commit_attempts: u32,
    /// Flushes sealed again after a refusal.
    pub flush_attempts: u32,
    /// Edits made through [`Engine::edit`] go out at most this long after
    /// the first of them (ms): a fixed interval, not a pause in typing, so
    /// that timing reveals little about typing.
    pub flush_interval_ms: u64,
    /// A ping on an otherwise silent connection (the server closes idle
    /// ones after 90 s).
    pub ping_ms: u64,
    /// Reconnection back-off: first delay and ceiling (ms).
    pub reconnect_ms: (u64, u64),
    /// KeyPackages the device keeps in the directory (topped up below half).
    pub key_package_target: usize,
    /// A member that finds no record of the current epoch in the log this
    /// long after it first noticed writes it itself (its committer may have
    /// stopped before writing it; ms).
    pub record_grace_ms: u64,
    /// Operations fail as soon as the connection is lost or cannot be
    /// opened (a command-line client, whose user runs the command again),
    /// instead of waiting for it to come back (an app that stays open).
    /// A commit whose answer was lost stays pending in the saved state and
    /// is recognised in the log at the next reading.
    pub fail_offline: bool,
    /// Follow every space this device is in, as an app that stays open
    /// does: keep the connection up (a Welcome may come at any time), read
    /// each space live, and at each new connection join the spaces whose
    /// Welcomes wait, top the KeyPackages up and read every space to the
    /// end ([`Intent::Refresh`]).
    pub follow: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            subscribe_attempts: 3,
            withheld_retry_ms: 30_000,
            op_timeout_ms: 60_000,
            commit_attempts: 20,
            flush_attempts: 20,
            flush_interval_ms: 2_000,
            ping_ms: 30_000,
            reconnect_ms: (500, 30_000),
            key_package_target: 20,
            record_grace_ms: 10_000,
            fail_offline: false,
            follow: false,
        }
    }
}

/// What a user (or the driver on its behalf) asks for.
#[derive(Clone, Debug)]
pub enum Intent {
    /// Sign in (a challenge signed with the device key).
    SignIn,
    /// Join the spaces whose Welcomes wait, keep the KeyPackages topped
    /// up, and read every space to the end of its log.
    Refresh,
    /// Read one space to the end of its log.
    Sync(SpaceId),
    /// Create a confidential space (history `full`) with this device as its
    /// space manager, and its library.
    CreateSpace,
    /// Add every device of `user` not yet in the space: a new member with
    /// `role`, or new devices of a member (who keeps their role).
    Invite {
        /// The space.
        space: SpaceId,
        /// The user.
        user: UserId,
        /// The role of a new member.
        role: Role,
    },
    /// Remove a user and all their devices.
    Remove {
        /// The space.
        space: SpaceId,
        /// The user.
        user: UserId,
    },
    /// Change a member's role.
    SetRole {
        /// The space.
        space: SpaceId,
        /// The member.
        user: UserId,
        /// The new role.
        role: Role,
    },
    /// Revoke one of this user's other devices (seized, lost): the
    /// identity key signs the revocation, the server is told (it refuses
    /// the device's sign-in from then on), and every space this device
    /// shares with it removes it in one commit, which also lists it as
    /// revoked so that no member adds it again. Needs the identity key.
    Revoke {
        /// The device.
        device: DeviceId,
    },
    /// List the space in the network's directory with a public name and
    /// description, open to anyone or on request (`None`: take it out).
    /// Space managers only. Whether it is open is also written inside the
    /// space, where the managers' devices read it before adding anyone.
    List {
        /// The space.
        space: SpaceId,
        /// The listing, or `None` to unlist (which closes it too).
        listing: Option<api::Listing>,
    },
    /// Accept a request to join: add every certified device of `user`
    /// with `role` (as [`Intent::Invite`] does), then close the request.
    /// Space managers only.
    Accept {
        /// The space.
        space: SpaceId,
        /// Who asked.
        user: UserId,
        /// Their role.
        role: Role,
    },
    /// Decline a request to join: nothing changes in the space, the
    /// requester sees it declined. Space managers only.
    Decline {
        /// The space.
        space: SpaceId,
        /// Who asked.
        user: UserId,
    },
    /// Open a drop box for the space (PROTOCOL §11.6): the intake is
    /// opened if it is not, its key published, the box created at the
    /// server and its label written in the library. Space managers only.
    /// Ends with [`Output::DropBox`].
    OpenDropBox {
        /// The space.
        space: SpaceId,
        /// What members call it (kept inside the space).
        label: String,
        /// Days it stays open (1 to 365).
        days: u32,
        /// The bytes it may take, sealed.
        quota: u64,
    },
    /// Close a drop box: its link answers "closed" from then on; what it
    /// received stays. Space managers only.
    CloseDropBox {
        /// The space.
        space: SpaceId,
        /// The box (hex).
        dropbox: String,
    },
    /// List the space's drop boxes and submissions, the served key
    /// checked (and published again first when the server's is from
    /// before the intake last rotated). Ends with [`Output::DropBoxes`].
    DropBoxes(SpaceId),
    /// Open `code`'s channel at the server, so that it keeps an offer
    /// made with it (PROTOCOL §3.6); the interface shows the code once
    /// this is done, then starts [`Intent::Pair`]. Needs the identity key.
    OpenPairing(Box<crate::pairing::PairingCode>),
    /// Pair a new device of this user with `code`, whose channel is open:
    /// the offers are read every [`PAIRING_POLL_MS`] for up to
    /// [`PAIRING_MS`], and the first made with this code is certified,
    /// registered, then answered (with the contacts this device pinned).
    /// Offers made with another code are left unanswered. Needs the
    /// identity key. Ends with [`Output::Paired`]; [`Engine::cancel`]
    /// stops it.
    Pair(Box<crate::pairing::PairingCode>),
    /// Add this user's `device`, paired a moment ago, to every space where
    /// this device is a space manager, once it has published KeyPackages
    /// (looked for every [`NEW_DEVICE_POLL_MS`], for up to
    /// [`NEW_DEVICE_MS`]). Ends with [`Output::DeviceAdded`].
    AddDevice(DeviceId),
    /// Send now every document of the space with local changes waiting
    /// (what an operation such as [`Engine::new_discussion`] wrote: its
    /// document and the library), each as [`Intent::Flush`]; done when all
    /// are, or with the first failure.
    FlushSpace(SpaceId),
    /// Send a document's changes now.
    Flush {
        /// The space.
        space: SpaceId,
        /// The document.
        stream: StreamId,
    },
}

/// What a finished operation produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Nothing more to say.
    Done,
    /// The space created.
    Space(SpaceId),
    /// The space's epoch after the commit.
    Epoch(u64),
    /// A device revoked, and the spaces it was removed from.
    Revoked(Vec<SpaceId>),
    /// A drop box opened: its id (hex) and its link's fragment.
    DropBox {
        /// The box (hex).
        id: String,
        /// What follows `/drop/#` in its link.
        fragment: String,
    },
    /// A space's drop boxes, checked.
    DropBoxes(crate::dropbox::DropBoxList),
    /// A new device of this user paired (certified and registered).
    Paired(DeviceId),
    /// A new device added where this device manages the space.
    DeviceAdded {
        /// The spaces it was added to.
        added: Vec<SpaceId>,
        /// The spaces where a space manager must add it.
        others: Vec<SpaceId>,
    },
}

/// A document others changed since its user last looked ([`Engine::activity`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityItem {
    /// The space.
    pub space: SpaceId,
    /// The document (the library's stream for [`activity::Kind::Library`]).
    pub stream: StreamId,
    /// What it is.
    pub kind: activity::Kind,
    /// Its title as listed (empty for the library).
    pub title: String,
    /// What changed.
    pub changes: activity::Changes,
}

/// A document with edits of this device the server has not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsent {
    /// The space.
    pub space: SpaceId,
    /// The document.
    pub stream: StreamId,
    /// How many changes wait.
    pub changes: usize,
    /// Why they can no longer be sent (removed, a Reader, a broken log),
    /// or `None` while they go out at the next flush.
    pub blocked: Option<String>,
}

/// A stable code for an error or a warning: the interface translates it,
/// and matches on it rather than on a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// The server announces log entries it does not deliver.
    Withheld,
    /// The server forked, rewrote, rolled back or replayed the log.
    Forked,
    /// The server refused a frame (the message says why).
    Refused,
    /// The space kept changing under a commit or a flush.
    Contended,
    /// This device is not in the space, or no longer.
    NotMember,
    /// The user has no device that could be added.
    NoKeyPackages,
    /// An identity key changed or a certificate does not verify.
    Identity,
    /// An MLS operation failed (see the message).
    Space,
    /// A document operation failed.
    Document,
    /// The server could not be reached.
    Network,
    /// The server answered an HTTP request with an error.
    Server,
    /// Nothing happened for too long.
    Timeout,
    /// The server's answer is not what the protocol says.
    Protocol,
    /// Signing in was refused.
    SignIn,
    /// A commit of another member was refused (the entry is skipped).
    EntryRefused,
    /// The epoch record after a commit could not be stored.
    EpochRecordNotStored,
    /// A Welcome could not be used.
    InvitationRefused,
    /// This device was revoked by its user: it will never sign in again.
    Revoked,
    /// This device may not write in the space: it was removed, its role
    /// is Reader, or the space's log can no longer be trusted.
    ReadOnly,
    /// Only the space's managers may do this (name the space).
    NotManager,
    /// A text mentions someone who is not a member of the space.
    Mention,
    /// A drop-box submission that cannot be opened: not sealed to a key
    /// of the space this device holds, damaged, or malformed.
    Intake,
    /// The operation was stopped ([`Engine::cancel`]).
    Stopped,
    /// A pairing code was shown for its whole lifetime and no new device
    /// used it.
    PairingExpired,
}

impl Code {
    /// The code as the interface sees it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Withheld => "withheld",
            Code::Forked => "forked",
            Code::Refused => "refused",
            Code::Contended => "contended",
            Code::NotMember => "not_member",
            Code::NoKeyPackages => "no_key_packages",
            Code::Identity => "identity",
            Code::Space => "space",
            Code::Document => "document",
            Code::Network => "network",
            Code::Server => "server",
            Code::Timeout => "timeout",
            Code::Protocol => "protocol",
            Code::SignIn => "sign_in",
            Code::EntryRefused => "entry_refused",
            Code::EpochRecordNotStored => "epoch_record_not_stored",
            Code::InvitationRefused => "invitation_refused",
            Code::ReadOnly => "read_only",
            Code::Revoked => "revoked",
            Code::NotManager => "not_manager",
            Code::Mention => "mention",
            Code::Intake => "intake",
            Code::Stopped => "stopped",
            Code::PairingExpired => "pairing_expired",
        }
    }
}

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The stable code.
    pub code: Code,
    /// A sentence for people.
    pub message: String,
    /// For [`Code::Server`]: the HTTP status and the server's error code.
    pub server: Option<(u16, String)>,
}

impl Failure {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            server: None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the interface hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Documents of a space changed.
    Changed {
        /// The space.
        space: SpaceId,
        /// The documents.
        streams: Vec<StreamId>,
    },
    /// Membership, roles or the epoch of a space changed.
    Membership {
        /// The space.
        space: SpaceId,
    },
    /// This device joined a space.
    Joined {
        /// The space.
        space: SpaceId,
    },
    /// This device was removed from a space.
    Removed {
        /// The space.
        space: SpaceId,
    },
    /// Something the user should know.
    Warning {
        /// The stable code.
        code: Code,
        /// The space concerned.
        space: Option<SpaceId>,
        /// A sentence for people.
        message: String,
    },
    /// Another member's presence message (live, never stored: where
    /// their caret is, that they are typing), as they sent it.
    Presence {
        /// The space.
        space: SpaceId,
        /// The member.
        user: UserId,
        /// Their device.
        device: DeviceId,
        /// What they sent ([`Engine::presence`]).
        payload: Vec<u8>,
    },
    /// An operation of [`Engine::start`] ended.
    Done {
        /// The operation.
        op: OpId,
        /// What it produced, or why it failed.
        result: Result<Output, Failure>,
    },
}

/// The state of the WebSocket, as the driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Connected.
    Up,
    /// Closed, or could not be opened.
    Down,
    /// The server refused the connection's session token.
    Unauthorized,
    /// Could not be opened, for a reason the driver cannot see (a browser
    /// is told neither the status nor the cause): the session may have
    /// expired, so the next attempt, after the back-off, signs in first.
    Failed,
}

/// One space this device is in, and its subscription on this connection.
struct Tracked {
    view: SpaceView,
    /// Subscribe requests not answered by `Synced` yet, in order.
    outstanding: VecDeque<u32>,
    /// Subscribed, with nothing missing since.
    live: bool,
    /// To subscribe again when the connection comes back.
    wanted: bool,
    /// The last subscribe request whose `Synced` found the log read to its end.
    completed: u32,
    /// Subscriptions in a row whose catch-up ended short of the log.
    attempts: u32,
    /// An entry skipped for a gap since the last subscription (its position).
    gap: Option<u64>,
    /// The subscriptions up to this request failed, and why.
    failed: Option<(u32, Failure)>,
    /// After withholding was reported: when to subscribe again.
    retry_at: Option<u64>,
    /// A forked log was reported.
    fork_reported: bool,
    /// Users reported as pinned with another key than this device's.
    key_conflicts: BTreeSet<UserId>,
    /// When to report (again) the commit this device refused
    /// ([`SpaceView::refused`]) while its epoch is not reopened.
    report_at: Option<u64>,
}

impl Tracked {
    fn new(view: SpaceView) -> Self {
        Self {
            view,
            outstanding: VecDeque::new(),
            live: false,
            wanted: false,
            completed: 0,
            attempts: 0,
            gap: None,
            failed: None,
            retry_at: None,
            fork_reported: false,
            key_conflicts: BTreeSet::new(),
            report_at: None,
        }
    }
}

/// A commit to make.
#[derive(Clone, Debug)]
enum CommitIntent {
    Invite { user: UserId, role: Role },
    Remove { user: UserId },
    SetRole { user: UserId, role: Role },
    Revoke { revocation: DeviceRevocation },
}

#[derive(Debug)]
enum CommitStage {
    Start,
    Lookup(RequestId),
    Syncing(OpId),
    Claiming(RequestId),
    Appending {
        request: u32,
        epoch: u64,
        link: u64,
    },
    Recording(OpId),
    /// The record of the epoch the commit leaves is not in the log yet:
    /// written first, so that no epoch is left without one.
    PreRecording(OpId),
}

#[derive(Debug)]
struct CommitOp {
    space: SpaceId,
    intent: CommitIntent,
    stage: CommitStage,
    attempt: u32,
    key: Option<IdentityPublicKey>,
    /// The invited user's revoked devices, from the directory (verified).
    revoked: Vec<DeviceRevocation>,
    claimed: Option<Vec<(DeviceId, Vec<u8>)>>,
    /// A commit of ours sent at this epoch whose answer was lost: the log
    /// tells whether it was accepted.
    sent: Option<u64>,
    /// After a conflict: the epoch the space must be followed to.
    target: u64,
    /// The missing record of the current epoch was written (once).
    prerecorded: bool,
}

#[derive(Debug)]
enum FlushStage {
    Ready,
    Appending { request: u32, link: u64 },
    Waiting { until: u64 },
    Syncing { child: OpId, target: u64 },
}

#[derive(Debug)]
enum RefreshStage {
    Start,
    Welcomes(RequestId),
    Deleting(Vec<RequestId>),
    Listing(RequestId),
    Publishing(RequestId),
    Syncing(Vec<OpId>),
    /// Asking which revoked devices are still in this device's spaces.
    Revocations(RequestId),
    /// Committing those revocations.
    Revoking(Vec<OpId>),
}

#[derive(Debug)]
enum CreateStage {
    Start,
    Registering(SpaceId, RequestId),
    Syncing(SpaceId, OpId),
    Recording(SpaceId, OpId),
    Library(SpaceId, OpId),
}

#[derive(Debug)]
enum DropStage {
    Start,
    /// The intake was opened here: an epoch record says so to the others.
    Recording(OpId),
    Publishing(RequestId),
    Creating(RequestId, String),
    Labelling(OpId, String),
    Listing(RequestId),
    Republishing(RequestId, crate::api::DropBoxes),
}

#[derive(Debug)]
enum Op {
    SignIn {
        challenge: Option<RequestId>,
        session: Option<RequestId>,
    },
    Sync {
        space: SpaceId,
        request: Option<u32>,
    },
    Refresh {
        full: bool,
        stage: RefreshStage,
    },
    Create(CreateStage),
    Commit(Box<CommitOp>),
    Flush {
        space: SpaceId,
        stream: StreamId,
        attempt: u32,
        stage: FlushStage,
    },
    Record {
        space: SpaceId,
        sent: Option<(u32, u64)>,
    },
    Revoke {
        device: DeviceId,
        stage: RevokeStage,
    },
    /// One request to the server (its answer's body is not read), or why
    /// it is not sent.
    Call {
        call: Result<(Method, String, Option<Vec<u8>>), Failure>,
        request: Option<RequestId>,
    },
    Accept {
        space: SpaceId,
        user: UserId,
        stage: AcceptStage,
    },
    /// Adds whoever asked to join an open space (PROTOCOL §15.3).
    Admit {
        space: SpaceId,
        stage: AdmitStage,
        /// Someone asked again while this ran: read the requests again
        /// before ending.
        again: bool,
    },
    /// Lists a space in the directory, or takes it out.
    List {
        space: SpaceId,
        listing: Option<api::Listing>,
        request: Option<RequestId>,
    },
    /// Opens a drop box (PROTOCOL §11.6).
    OpenDropBox {
        space: SpaceId,
        label: String,
        days: u32,
        quota: u64,
        stage: DropStage,
    },
    /// Lists a space's drop boxes, publishing the key in force first if
    /// the server's is older.
    DropBoxes {
        space: SpaceId,
        stage: DropStage,
    },
    /// Publishes the intake key in force (after a removal rotated it).
    PublishIntake {
        space: SpaceId,
        request: Option<RequestId>,
    },
    FlushSpace {
        space: SpaceId,
        /// The documents still to send (the library last), once listed.
        waiting: Option<VecDeque<StreamId>>,
        /// The flush under way.
        current: Option<OpId>,
    },
    /// Pairs a new device of this user (PROTOCOL §3.6).
    Pair {
        code: Box<crate::pairing::PairingCode>,
        /// When the code expires.
        until: u64,
        stage: PairStage,
        /// Asked to stop ([`Engine::cancel`]).
        stop: bool,
    },
    /// Adds a device just paired where this device manages the space.
    AddDevice {
        device: DeviceId,
        /// When to stop waiting for its KeyPackages.
        until: u64,
        stage: AddDeviceStage,
        /// Asked to stop ([`Engine::cancel`]).
        stop: bool,
    },
}

#[derive(Debug)]
enum PairStage {
    Start,
    /// Reading the offers again at this time.
    Waiting(u64),
    Reading(RequestId),
    /// The certificate is being registered; then the answer goes.
    Registering {
        request: RequestId,
        offer: String,
        device: DeviceId,
        answer: Vec<u8>,
    },
    Answering(RequestId, DeviceId),
}

#[derive(Debug)]
enum AddDeviceStage {
    /// Looking the user up in the directory again at this time.
    Waiting(u64),
    Reading(RequestId),
    /// The invitations under way, by space, and the spaces left to
    /// another manager.
    Inviting(Vec<(SpaceId, OpId)>, Vec<SpaceId>),
}

#[derive(Debug)]
enum AdmitStage {
    Start,
    Reading(RequestId),
    /// Those still to add, the acceptance under way, the first failure.
    Adding(VecDeque<UserId>, Option<OpId>, Option<Failure>),
}

#[derive(Debug)]
enum AcceptStage {
    Start(Role),
    Adding(OpId),
    Closing(RequestId),
}

#[derive(Debug)]
enum RevokeStage {
    Start,
    Telling(RequestId, DeviceRevocation),
    Committing(Vec<(SpaceId, OpId)>),
}

struct Running {
    op: Op,
    /// A child of another operation: its result goes to the parent.
    child: bool,
    /// Started by the engine itself: a failure becomes a warning.
    detached: bool,
    deadline: u64,
}

enum Step {
    Pending,
    Moved,
    Finished(Result<Output, Failure>),
}

/// One device's client, without I/O.
pub struct Engine {
    config: Config,
    identity: Option<UserIdentity>,
    device: Device,
    provider: MlsProvider,
    contacts: Contacts,
    token: Option<String>,
    spaces: BTreeMap<SpaceId, Tracked>,
    now: u64,
    online: bool,
    /// Incremented each time the connection goes down.
    link: u64,
    reconnect_at: u64,
    reconnect_delay: u64,
    last_sent: u64,
    next_frame: u32,
    subscriptions: BTreeMap<u32, SpaceId>,
    /// Reports sent and not answered yet (request → space).
    reports: BTreeMap<u32, SpaceId>,
    answers: BTreeMap<u32, ServerFrame>,
    next_request: RequestId,
    inflight: BTreeMap<RequestId, HttpRequest>,
    /// Requests waiting for a session (sent again once signed in).
    parked: Vec<RequestId>,
    /// Answers to requests, or why there is none (the server could not be
    /// reached, or signing in again before sending it failed).
    responses: BTreeMap<RequestId, Result<HttpResponse, Failure>>,
    next_op: OpId,
    ops: BTreeMap<OpId, Running>,
    finished: BTreeMap<OpId, Result<Output, Failure>>,
    /// Documents edited through [`Engine::edit`], and when they go out.
    due: BTreeMap<(SpaceId, StreamId), u64>,
    /// Spaces whose log holds no record of their current epoch: the epoch,
    /// and when this device writes it if nobody has by then.
    unrecorded: BTreeMap<SpaceId, (u64, u64)>,
    transmit: VecDeque<ClientFrame>,
    requests: VecDeque<(RequestId, HttpRequest)>,
    events: VecDeque<Event>,
    must_persist: bool,
    changed: bool,
    /// The server said this device was revoked: no more signing in, and
    /// every request fails at once.
    revoked: Option<Failure>,
    /// Where the user last looked at each document (its heads then).
    seen: BTreeMap<(SpaceId, StreamId), Vec<automerge::ChangeHash>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({}, {})", self.device.user(), self.device.id())
    }
}

impl Engine {
    /// An engine for a device restored from its record (or new), with its
    /// session token if it has one.
    pub fn new(restored: Restored, token: Option<String>, config: Config) -> Self {
        let mut due = BTreeMap::new();
        let mut spaces = BTreeMap::new();
        let mut events = VecDeque::new();
        let mut seen: BTreeMap<(SpaceId, StreamId), Vec<automerge::ChangeHash>> = restored
            .seen
            .iter()
            .flatten()
            .map(|m| {
                let heads = m.heads.iter().map(|h| automerge::ChangeHash(*h)).collect();
                ((m.space, m.stream), heads)
            })
            .collect();
        for (id, mut view) in restored.spaces {
            // Edits kept from the last run that the server had not
            // acknowledged go out at the first flush interval.
            if read_only(&view).is_none() {
                for (stream, _) in view.unsent() {
                    due.insert((id, stream), config.flush_interval_ms);
                }
            }
            if let Some(reason) = view.broken() {
                // Said again at every start: the log was forked or rolled
                // back for this device in an earlier run.
                events.push_back(Event::Warning {
                    code: Code::Forked,
                    space: Some(id),
                    message: reason.to_owned(),
                });
            }
            if restored.seen.is_none() {
                // A state saved before activity was kept: what the device
                // holds counts as seen, rather than all of it as new.
                for stream in view.streams() {
                    if let Some(r) = view.existing_replica(stream) {
                        seen.insert((id, stream), r.heads());
                    }
                }
            }
            let mut tracked = Tracked::new(view);
            tracked.fork_reported = tracked.view.broken().is_some();
            tracked.wanted = config.follow && !tracked.view.is_removed();
            spaces.insert(id, tracked);
        }
        Self {
            config,
            identity: restored.identity,
            device: restored.device,
            provider: restored.provider,
            contacts: restored.contacts,
            token,
            spaces,
            now: 0,
            online: false,
            link: 0,
            reconnect_at: 0,
            reconnect_delay: 0,
            last_sent: 0,
            next_frame: 0,
            subscriptions: BTreeMap::new(),
            reports: BTreeMap::new(),
            answers: BTreeMap::new(),
            next_request: 0,
            inflight: BTreeMap::new(),
            parked: Vec::new(),
            responses: BTreeMap::new(),
            next_op: 0,
            ops: BTreeMap::new(),
            finished: BTreeMap::new(),
            due,
            unrecorded: BTreeMap::new(),
            transmit: VecDeque::new(),
            requests: VecDeque::new(),
            events,
            must_persist: false,
            changed: false,
            revoked: None,
            seen,
        }
    }

    // ---- reading ------------------------------------------------------

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The user's identity, if this device holds it.
    pub fn identity(&self) -> Option<&UserIdentity> {
        self.identity.as_ref()
    }

    /// The device's MLS provider.
    pub fn provider(&self) -> &MlsProvider {
        &self.provider
    }

    /// The identity keys pinned on first use.
    pub fn contacts(&self) -> &Contacts {
        &self.contacts
    }

    /// The session token, for the driver to present.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Replaces the session token (a driver that signed in another way).
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
        self.changed = true;
    }

    /// A summary of the engine's state for diagnostics (no secret, no
    /// content): connection, running operations, each space's subscription.
    pub fn status(&self) -> String {
        let ops: Vec<String> = self
            .ops
            .values()
            .map(|r| format!("{:?}", r.op).chars().take(80).collect())
            .collect();
        let spaces: Vec<String> = self
            .spaces
            .iter()
            .map(|(id, t)| {
                format!(
                    "{id}: read {} live {} wanted {} outstanding {:?} completed {} attempts {} failed {:?} retry {:?}",
                    t.view.read_to(),
                    t.live,
                    t.wanted,
                    t.outstanding,
                    t.completed,
                    t.attempts,
                    t.failed.as_ref().map(|(r, f)| (r, f.code)),
                    t.retry_at
                )
            })
            .collect();
        format!(
            "now {} online {} token {} reconnect at {} ops {ops:?} spaces {spaces:?}",
            self.now,
            self.online,
            self.token.is_some(),
            self.reconnect_at
        )
    }

    /// The spaces this device is in.
    pub fn spaces(&self) -> Vec<SpaceId> {
        self.spaces.keys().copied().collect()
    }

    /// One space's view.
    pub fn view(&self, space: SpaceId) -> Option<&SpaceView> {
        self.spaces.get(&space).map(|t| &t.view)
    }

    /// Test hook: a space's view with the provider and device, to play a
    /// misbehaving member that stages what its engine never would.
    #[cfg(feature = "dangerous-test-hooks")]
    pub fn dangerous_space(
        &mut self,
        space: SpaceId,
    ) -> Option<(&mut SpaceView, &MlsProvider, &Device)> {
        let t = self.spaces.get_mut(&space)?;
        Some((&mut t.view, &self.provider, &self.device))
    }

    /// One space's view, to read its documents.
    pub fn view_mut(&mut self, space: SpaceId) -> Option<&mut SpaceView> {
        self.spaces.get_mut(&space).map(|t| &mut t.view)
    }

    /// Applies local edits to a document (created empty if the space has
    /// none); they go out within [`Config::flush_interval_ms`], or at once
    /// with [`Intent::Flush`].
    pub fn edit<T, E>(
        &mut self,
        space: SpaceId,
        stream: StreamId,
        edit: impl FnOnce(&mut Replica) -> Result<T, E>,
    ) -> Result<Result<T, E>, Failure> {
        let tracked = self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| not_member(space))?;
        if let Some(why) = read_only(&tracked.view) {
            return Err(Failure::new(Code::ReadOnly, why));
        }
        let result = edit(tracked.view.replica(stream, &self.device));
        let due = self.now + self.config.flush_interval_ms;
        self.due.entry((space, stream)).or_insert(due);
        self.changed = true;
        Ok(result)
    }

    /// Checks that this device may upload a file to `target` before
    /// anything is sealed or sent: a member that may write, and for a new
    /// version, a file of the library with that id.
    pub fn check_upload(&mut self, target: &transfer::Target) -> Result<(), Failure> {
        let tracked = self
            .spaces
            .get_mut(&target.space)
            .ok_or_else(|| not_member(target.space))?;
        if let Some(why) = read_only(&tracked.view) {
            return Err(Failure::new(Code::ReadOnly, why));
        }
        if let Some(entry) = &target.replaces {
            let files = tracked
                .view
                .existing_replica(library::stream(target.space))
                .map(|r| library::entries(r.doc()))
                .transpose()
                .map_err(|e| Failure::new(Code::Document, e.to_string()))?
                .unwrap_or_default();
            if !files
                .iter()
                .any(|e| matches!(e, library::Entry::File { id, .. } if id == entry))
            {
                return Err(Failure::new(
                    Code::Document,
                    format!("no file {entry} in this space"),
                ));
            }
        }
        Ok(())
    }

    /// Lists a file whose upload is done ([`transfer::UploadStep::Done`])
    /// where its target says: a new file in its folder, or the new version
    /// of a file. It goes out with the library's next flush
    /// ([`Intent::FlushSpace`]); the driver deletes the upload's record
    /// once that flush is done.
    pub fn list_upload(
        &mut self,
        target: &transfer::Target,
        manifest: &FileManifest,
    ) -> Result<(), Failure> {
        let space = target.space;
        let file_id = manifest.file_id.to_string();
        self.edit(space, library::stream(space), |r| {
            // Listed already (a listing whose sending failed, resumed):
            // nothing to add.
            if library::manifest(r.doc(), &file_id)?.is_some() {
                return Ok(());
            }
            match &target.replaces {
                Some(entry) => library::add_version(r.doc(), entry, manifest),
                None => library::add_file(r.doc(), manifest, &target.folder),
            }
        })?
        .map_err(|e| Failure::new(Code::Document, e.to_string()))
    }

    /// The version of a file of the space's library whose own file id is
    /// `file_id` (a file's id in the library is its first version's).
    pub fn file_version(&mut self, space: SpaceId, file_id: &str) -> Result<FileManifest, Failure> {
        let view = self.view_mut(space).ok_or_else(|| not_member(space))?;
        let replica = view
            .existing_replica(library::stream(space))
            .ok_or_else(|| Failure::new(Code::Document, "this space has no library yet"))?;
        library::manifest(replica.doc(), file_id)
            .map_err(|e| Failure::new(Code::Document, e.to_string()))?
            .ok_or_else(|| Failure::new(Code::Document, format!("no file {file_id} in this space")))
    }

    /// The file of the space's library that `name_or_id` names (its name,
    /// its id, or the id of one of its later versions), at `version`
    /// (counted from 1, the oldest; `None`: the current one, or the later
    /// version the id names), to start a [`transfer::Download`] with. A
    /// file's id is its first version's own id and names the file: its
    /// first version is `version` 1 (or [`Engine::file_version`]).
    pub fn file(
        &mut self,
        space: SpaceId,
        name_or_id: &str,
        version: Option<usize>,
    ) -> Result<FileManifest, Failure> {
        let view = self.view_mut(space).ok_or_else(|| not_member(space))?;
        let entries = match view.existing_replica(library::stream(space)) {
            Some(r) => library::entries(r.doc())
                .map_err(|e| Failure::new(Code::Document, e.to_string()))?,
            None => Vec::new(),
        };
        let not_found = || {
            Failure::new(
                Code::Document,
                format!("no file {name_or_id} in this space"),
            )
        };
        for e in entries {
            let library::Entry::File {
                id: entry,
                manifest,
                mut versions,
                ..
            } = e
            else {
                continue;
            };
            let named = manifest.name == name_or_id || entry == name_or_id;
            versions.push(*manifest);
            if named {
                return match version {
                    None => versions.pop().ok_or_else(not_found),
                    Some(n) => versions.get(n.wrapping_sub(1)).cloned().ok_or_else(|| {
                        Failure::new(
                            Code::Document,
                            format!(
                                "{name_or_id} has {} version(s), not a version {n}",
                                versions.len()
                            ),
                        )
                    }),
                };
            }
            if let Some(m) = versions
                .into_iter()
                .find(|m| m.file_id.to_string() == name_or_id)
            {
                return Ok(m);
            }
        }
        Err(not_found())
    }

    /// The space's name and description, as its space managers set them
    /// (PROTOCOL §9.4): a value written by a member who is not a space
    /// manager now is not shown.
    pub fn profile(&mut self, space: SpaceId) -> Result<library::Profile, Failure> {
        let tracked = self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| not_member(space))?;
        let view = &mut tracked.view;
        let stream = library::stream(space);
        let authors = view.authors(stream);
        let manager = manager_now(view);
        Ok(match view.existing_replica(stream) {
            Some(replica) => library::profile(replica.doc(), &authors, manager),
            None => library::Profile::default(),
        })
    }

    /// Names and describes the space: space managers only (others get
    /// [`Code::NotManager`] and nothing is written); it goes out with the
    /// library's next flush.
    pub fn set_profile(
        &mut self,
        space: SpaceId,
        name: &str,
        description: &str,
    ) -> Result<Result<(), DocumentError>, Failure> {
        let tracked = self.spaces.get(&space).ok_or_else(|| not_member(space))?;
        if read_only(&tracked.view).is_none()
            && tracked.view.space().own_role().ok() != Some(Role::SpaceManager)
        {
            return Err(Failure::new(
                Code::NotManager,
                format!("only the space managers of space {space} name and describe it"),
            ));
        }
        self.edit(space, library::stream(space), |replica| {
            library::set_profile(replica.doc(), name, description)
        })
    }

    /// Creates a filing titled `title` and lists it in the library's
    /// `folder` (`""`: the top); returns its stream. Both go out within
    /// [`Config::flush_interval_ms`].
    pub fn new_document(
        &mut self,
        space: SpaceId,
        title: &str,
        folder: &str,
    ) -> Result<Result<StreamId, DocumentError>, Failure> {
        let stream = StreamId::random();
        // The library first: a folder that does not exist refuses the
        // filing before anything is written.
        if let Err(e) = self.edit(space, library::stream(space), |r| {
            library::add_document(r.doc(), stream, title, folder)
        })? {
            return Ok(Err(e));
        }
        let created = self.edit(space, stream, |r| {
            crate::document::filing::init(r.doc(), title)
        })?;
        Ok(created.map(|()| stream))
    }

    /// Refuses a text that mentions (`@user`) someone who is not a member
    /// of the space now: what a comment, reply or post goes through before
    /// it is written.
    pub fn check_mentions(&self, space: SpaceId, text: &str) -> Result<(), Failure> {
        let tracked = self.spaces.get(&space).ok_or_else(|| not_member(space))?;
        let members = tracked.view.space().members().map_err(space_failure)?;
        for name in discussion::mentions(text) {
            if !members.iter().any(|m| m.user.as_str() == name) {
                return Err(Failure::new(
                    Code::Mention,
                    format!("@{name} is not a member of this space: mention only its members"),
                ));
            }
        }
        Ok(())
    }

    /// Starts a discussion titled `title` with its opening post, lists it
    /// in the library, and returns its stream and the post's id.
    pub fn new_discussion(
        &mut self,
        space: SpaceId,
        title: &str,
        text: &str,
        attachments: &[String],
        at_ms: i64,
    ) -> Result<Result<(StreamId, String), DocumentError>, Failure> {
        self.check_mentions(space, text)?;
        if let Err(e) = self.check_attachments(space, attachments)? {
            return Ok(Err(e));
        }
        let user = self.device.user().to_string();
        let stream = StreamId::random();
        let post = crate::MessageId::random().to_hex();
        let first = discussion::NewPost {
            id: &post,
            author: &user,
            text,
            reply_to: None,
            attachments,
            at_ms,
        };
        // Checked before anything is written: a refused title or post
        // leaves neither a listing nor a document behind.
        if let Err(e) =
            crate::document::checked_name(title).and_then(|_| discussion::checked_post(text))
        {
            return Ok(Err(e));
        }
        if let Err(e) = self.edit(space, stream, |r| discussion::init(r.doc(), title, &first))? {
            return Ok(Err(e));
        }
        let listed = self.edit(space, library::stream(space), |r| {
            library::add_discussion(r.doc(), stream, title)
        })?;
        Ok(listed.map(|()| (stream, post)))
    }

    /// Posts in a discussion (a reply to `reply_to`, if given); returns the
    /// post's id.
    pub fn post(
        &mut self,
        space: SpaceId,
        stream: StreamId,
        reply_to: Option<&str>,
        text: &str,
        attachments: &[String],
        at_ms: i64,
    ) -> Result<Result<String, DocumentError>, Failure> {
        self.check_mentions(space, text)?;
        if let Err(e) = self.check_attachments(space, attachments)? {
            return Ok(Err(e));
        }
        self.existing_discussion(space, stream)?;
        let user = self.device.user().to_string();
        let id = crate::MessageId::random().to_hex();
        let new = discussion::NewPost {
            id: &id,
            author: &user,
            text,
            reply_to,
            attachments,
            at_ms,
        };
        Ok(self
            .edit(space, stream, |r| discussion::post(r.doc(), &new))?
            .map(|()| id))
    }

    /// Replaces the text of one of this user's posts.
    pub fn edit_post(
        &mut self,
        space: SpaceId,
        stream: StreamId,
        post: &str,
        text: &str,
        at_ms: i64,
    ) -> Result<Result<(), DocumentError>, Failure> {
        self.check_mentions(space, text)?;
        let read = self.discussion(space, stream)?;
        let user = self.device.user().as_str().to_owned();
        match read.posts.iter().find(|p| p.id == post) {
            None => {
                return Ok(Err(DocumentError::BadText(format!(
                    "this discussion has no post {post}"
                ))));
            }
            Some(p) if !(p.by.verified && p.by.name == user) => {
                return Ok(Err(DocumentError::NotAuthor(
                    "only a post's author may edit it".into(),
                )));
            }
            Some(_) => {}
        }
        self.edit(space, stream, |r| {
            discussion::edit(r.doc(), post, text, at_ms)
        })
    }

    /// Reads a discussion of the space.
    pub fn discussion(
        &mut self,
        space: SpaceId,
        stream: StreamId,
    ) -> Result<discussion::Discussion, Failure> {
        let view = &mut self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| not_member(space))?
            .view;
        let authors = view.authors(stream);
        let replica = view.existing_replica(stream).ok_or_else(|| {
            Failure::new(
                Code::Document,
                format!("no discussion {stream} in this space"),
            )
        })?;
        discussion::read(replica.doc(), &authors)
            .map_err(|e| Failure::new(Code::Document, e.to_string()))
    }

    /// The public copy of the filing `stream` as it reads now (title, text,
    /// formatting), to publish as `doc` in `public_space`, with its
    /// provenance signed by this device ([`publication::publish`]). The
    /// driver sends the filing's changes first, so that members can check
    /// the heads it names.
    pub fn publication(
        &mut self,
        space: SpaceId,
        stream: StreamId,
        public_space: SpaceId,
        doc: &str,
        language: Option<&str>,
    ) -> Result<publication::PublicCopy, Failure> {
        let view = &mut self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| not_member(space))?
            .view;
        let replica = view.existing_replica(stream).ok_or_else(|| {
            Failure::new(
                Code::Document,
                format!("no readable document {stream} in this space"),
            )
        })?;
        publication::publish(
            replica.doc(),
            &self.device,
            public_space,
            doc,
            space,
            stream,
            language,
        )
        .map_err(|e| Failure::new(Code::Document, e.to_string()))
    }

    /// The space's case records and the violation types its register
    /// knows (PROTOCOL §9.7); a type counts only if a space manager of now
    /// added it.
    pub fn records(&mut self, space: SpaceId) -> Result<monitoring::Register, Failure> {
        let view = &mut self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| not_member(space))?
            .view;
        let stream = monitoring::stream(space);
        let authors = view.authors(stream);
        let manager = manager_now(view);
        Ok(match view.existing_replica(stream) {
            Some(replica) => monitoring::read(replica.doc(), &authors, manager),
            None => monitoring::Register::default(),
        })
    }

    /// The ids of the documents and files the space's library lists now.
    fn library_ids(&mut self, space: SpaceId) -> Result<BTreeSet<String>, Failure> {
        let view = &mut self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| not_member(space))?
            .view;
        let entries = match view.existing_replica(library::stream(space)) {
            Some(r) => library::entries(r.doc()).unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(entries
            .into_iter()
            .filter_map(|e| match e {
                library::Entry::Document { stream, .. } => Some(stream.to_hex()),
                library::Entry::File { id, .. } => Some(id),
                _ => None,
            })
            .collect())
    }

    /// Checks `fields` against the register's types, the library and the
    /// date `at_ms` falls on.
    fn checked_record(
        &mut self,
        space: SpaceId,
        fields: &monitoring::Fields,
        at_ms: i64,
    ) -> Result<Result<monitoring::Fields, DocumentError>, Failure> {
        let types = self.records(space)?.types();
        let entries = self.library_ids(space)?;
        Ok(monitoring::checked(fields, &types, &entries, at_ms).map_err(DocumentError::from))
    }

    /// Writes a new case record in the space's register; returns its id.
    /// A record with a date after today (by `at_ms`), an unknown country,
    /// a type the register does not know or a field over its limit is
    /// refused and nothing is written.
    pub fn new_record(
        &mut self,
        space: SpaceId,
        fields: &monitoring::Fields,
        at_ms: i64,
    ) -> Result<Result<String, DocumentError>, Failure> {
        let fields = match self.checked_record(space, fields, at_ms)? {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let id = crate::MessageId::random().to_hex();
        Ok(self
            .edit(space, monitoring::stream(space), |r| {
                monitoring::create(r.doc(), &id, &fields, at_ms)
            })?
            .map(|()| id))
    }

    /// Writes the fields of the record `id` (checked as for a new one)
    /// that differ from `before`, what the form was opened from: a field
    /// another member changed meanwhile, and this one did not, keeps their
    /// value.
    pub fn edit_record(
        &mut self,
        space: SpaceId,
        id: &str,
        before: &monitoring::Fields,
        fields: &monitoring::Fields,
        at_ms: i64,
    ) -> Result<Result<(), DocumentError>, Failure> {
        if !self.records(space)?.records.iter().any(|r| r.id == id) {
            return Ok(Err(monitoring::RecordError::NoRecord(
                id.chars().take(40).collect(),
            )
            .into()));
        }
        let fields = match self.checked_record(space, fields, at_ms)? {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        self.edit(space, monitoring::stream(space), |r| {
            monitoring::edit(r.doc(), id, before, &fields, at_ms)
        })
    }

    /// Takes the record `id` out of the space's register (its history keeps
    /// it).
    pub fn remove_record(
        &mut self,
        space: SpaceId,
        id: &str,
    ) -> Result<Result<(), DocumentError>, Failure> {
        self.edit(space, monitoring::stream(space), |r| {
            monitoring::remove(r.doc(), id)
        })
    }

    /// Refuses what only a space manager may do, for anyone else.
    fn manager_only(&self, space: SpaceId, what: &str) -> Result<(), Failure> {
        let tracked = self.spaces.get(&space).ok_or_else(|| not_member(space))?;
        if tracked.view.space().own_role().ok() != Some(Role::SpaceManager) {
            return Err(Failure::new(
                Code::NotManager,
                format!("only the space managers of space {space} {what}"),
            ));
        }
        Ok(())
    }

    /// Adds a violation type to the register: space managers only.
    pub fn add_violation_type(
        &mut self,
        space: SpaceId,
        code: &str,
        label: &str,
    ) -> Result<Result<(), DocumentError>, Failure> {
        self.manager_only(space, "add types of violation")?;
        let register = self.records(space)?;
        self.edit(space, monitoring::stream(space), |r| {
            monitoring::add_type(r.doc(), &register, code, label)
        })
    }

    /// The aggregate of the space's records by `dims`, cells under `k` left
    /// out: what [`Self::publish_aggregate`] would publish, to show first.
    pub fn aggregate(
        &mut self,
        space: SpaceId,
        title: &str,
        dims: &[monitoring::Dim],
        k: u32,
    ) -> Result<Result<monitoring::Aggregate, DocumentError>, Failure> {
        let records = self.records(space)?.records;
        Ok(monitoring::aggregate(&records, title, dims, k))
    }

    /// Signs the aggregate of the space's records (as [`Self::aggregate`]
    /// computes it now) for publication `id` of `public_space`: space
    /// managers only. The driver sends the register's changes first, so
    /// that members can check the heads it names
    /// ([`Self::check_aggregate`]).
    pub fn publish_aggregate(
        &mut self,
        space: SpaceId,
        public_space: SpaceId,
        id: &str,
        title: &str,
        dims: &[monitoring::Dim],
        k: u32,
    ) -> Result<Result<monitoring::PublishedAggregate, DocumentError>, Failure> {
        self.manager_only(space, "publish counts of its records")?;
        let aggregate = match self.aggregate(space, title, dims, k)? {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let view = &mut self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| not_member(space))?
            .view;
        let replica = view.replica(monitoring::stream(space), &self.device);
        Ok(Ok(monitoring::publish(
            replica.doc(),
            aggregate,
            &self.device,
            public_space,
            id,
            space,
        )))
    }

    /// Compares a published aggregate with what this device's register of
    /// the source space gives at the heads it names.
    pub fn check_aggregate(
        &mut self,
        published: &monitoring::PublishedAggregate,
    ) -> Result<monitoring::Check, Failure> {
        let space = SpaceId::from_hex(&published.provenance.source_space)
            .map_err(|e| Failure::new(Code::Document, e.to_string()))?;
        let view = &mut self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| not_member(space))?
            .view;
        let stream = monitoring::stream(space);
        let authors = view.authors(stream);
        Ok(match view.existing_replica(stream) {
            Some(replica) => monitoring::check(replica.doc(), published, &authors),
            None => monitoring::Check::Unknown,
        })
    }

    fn existing_discussion(&mut self, space: SpaceId, stream: StreamId) -> Result<(), Failure> {
        self.discussion(space, stream).map(|_| ())
    }

    /// Refuses attachments that are not files or documents of the
    /// space's library.
    fn check_attachments(
        &mut self,
        space: SpaceId,
        attachments: &[String],
    ) -> Result<Result<(), DocumentError>, Failure> {
        if attachments.is_empty() {
            return Ok(Ok(()));
        }
        let listed = self.library_ids(space)?;
        if let Some(a) = attachments.iter().find(|a| !listed.contains(*a)) {
            return Ok(Err(library::LibraryError::NoAttachment(a.clone()).into()));
        }
        Ok(Ok(()))
    }

    /// What changed since this device's user last looked, in every space:
    /// one item per document (and per library) that others changed since
    /// [`Self::mark_seen`] was last called on it, spaces in order, each
    /// space's library first. Kept on the device only.
    pub fn activity(&mut self) -> Vec<ActivityItem> {
        let me = self.device.user().as_str().to_owned();
        let mut out = Vec::new();
        for (&space, tracked) in &mut self.spaces {
            let view = &mut tracked.view;
            let lib = library::stream(space);
            let mut docs = vec![(lib, activity::Kind::Library, String::new())];
            if let Some(r) = view.existing_replica(lib) {
                for e in library::entries(r.doc()).unwrap_or_default() {
                    match e {
                        library::Entry::Document { stream, title, .. } => {
                            docs.push((stream, activity::Kind::Filing, title));
                        }
                        library::Entry::Discussion { stream, title } => {
                            docs.push((stream, activity::Kind::Discussion, title));
                        }
                        _ => {}
                    }
                }
            }
            for (stream, kind, title) in docs {
                let authors = view.authors(stream);
                let Some(replica) = view.existing_replica(stream) else {
                    continue;
                };
                let seen = self.seen.get(&(space, stream)).map(Vec::as_slice);
                // A document that does not read as its kind (a newer
                // client's format) shows no activity rather than failing
                // the whole list.
                if let Ok(changes) = activity::changes(replica.doc(), kind, seen, &authors, &me)
                    && !changes.is_empty()
                {
                    out.push(ActivityItem {
                        space,
                        stream,
                        kind,
                        title,
                        changes,
                    });
                }
            }
        }
        out
    }

    /// Records that the user has seen a document as this device holds it
    /// now (the next [`Self::activity`] counts only what comes after).
    pub fn mark_seen(&mut self, space: SpaceId, stream: StreamId) -> Result<(), Failure> {
        let view = &mut self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| not_member(space))?
            .view;
        let heads = match view.existing_replica(stream) {
            Some(r) => r.heads(),
            None => Vec::new(),
        };
        if self.seen.get(&(space, stream)) != Some(&heads) {
            self.seen.insert((space, stream), heads);
            self.changed = true;
        }
        Ok(())
    }

    /// The documents holding edits of this device that the server has not
    /// acknowledged, in every space, with whether they can still be sent:
    /// what a person must be shown, never silently lost (kept across
    /// restarts until sent or discarded with [`Self::discard_unsent`]).
    pub fn unsent(&mut self) -> Vec<Unsent> {
        let mut out = Vec::new();
        for (id, t) in &mut self.spaces {
            let waiting = t.view.unsent();
            // Read the policy only where something waits (this runs at
            // every save of the browser).
            let blocked = if waiting.is_empty() {
                None
            } else {
                read_only(&t.view)
            };
            for (stream, changes) in waiting {
                out.push(Unsent {
                    space: *id,
                    stream,
                    changes: changes.len(),
                    blocked: blocked.clone(),
                });
            }
        }
        out
    }

    /// Drops this device's unacknowledged edits of a document (after the
    /// person saw or exported them): the document becomes what the others
    /// have. Returns how many changes were dropped.
    pub fn discard_unsent(&mut self, space: SpaceId, stream: StreamId) -> Result<usize, Failure> {
        let t = self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| not_member(space))?;
        let Some(replica) = t.view.existing_replica(stream) else {
            return Ok(0);
        };
        let dropped = replica
            .discard_unsent()
            .map_err(|e| Failure::new(Code::Document, e.to_string()))?;
        self.due.remove(&(space, stream));
        self.changed = true;
        Ok(dropped)
    }

    /// Sends a presence message to the space's members online now (an MLS
    /// application message: relayed, never stored; at most
    /// [`MAX_PRESENCE`] bytes). Best effort: `Ok(false)` when offline. It
    /// moves this device's sending ratchet on, so the state is made durable
    /// before the frame leaves (the durability rule).
    pub fn presence(&mut self, space: SpaceId, payload: &[u8]) -> Result<bool, Failure> {
        if payload.len() > MAX_PRESENCE {
            return Err(Failure::new(
                Code::Refused,
                format!("a presence message holds at most {MAX_PRESENCE} bytes"),
            ));
        }
        let tracked = self.spaces.get_mut(&space).ok_or_else(|| {
            Failure::new(
                Code::NotMember,
                format!("this device is not in space {space}"),
            )
        })?;
        if !self.online || !tracked.live || tracked.view.is_removed() {
            return Ok(false);
        }
        let message = tracked
            .view
            .space_mut()
            .create_message(&self.provider, &self.device, payload)
            .map_err(|e| Failure::new(Code::Space, e.to_string()))?;
        self.must_persist = true;
        self.transmit.push_back(ClientFrame::Append {
            request: 0,
            space,
            item: AppendItem::Application(message),
        });
        Ok(true)
    }

    /// The documents whose local edits the server has not acknowledged yet
    /// (waiting for the flush interval, or being sent).
    pub fn unsent_documents(&mut self) -> usize {
        let mut documents: BTreeSet<(SpaceId, StreamId)> = self.due.keys().copied().collect();
        documents.extend(self.unsent().into_iter().map(|u| (u.space, u.stream)));
        for r in self.ops.values() {
            if let Op::Flush { space, stream, .. } = r.op {
                documents.insert((space, stream));
            }
        }
        documents.len()
    }

    /// Reads entries handed over out of band (as a seized server could),
    /// to show what this device can and cannot open.
    pub fn ingest(&mut self, space: SpaceId, entries: Vec<LogEntry>) {
        for entry in entries {
            self.on_entry(space, entry);
        }
    }

    // ---- durability ---------------------------------------------------

    /// True when [`Self::persist`]'s record must be durable before anything
    /// else is sent.
    pub fn must_persist(&self) -> bool {
        self.must_persist
    }

    /// True when something changed since the last [`Self::persist`].
    pub fn changed(&self) -> bool {
        self.changed || self.must_persist
    }

    /// The device's whole state, to make durable (see the module's
    /// durability rule).
    pub fn persist(&mut self) -> Result<DeviceRecord, AtRestError> {
        let record = DeviceRecord::capture(
            self.identity.as_ref(),
            &self.device,
            &self.provider,
            self.spaces.values_mut().map(|t| &mut t.view),
            &self.contacts,
        )?
        .with_seen(
            self.seen
                .iter()
                .filter(|((space, _), _)| self.spaces.contains_key(space))
                .map(|((space, stream), heads)| crate::at_rest::SeenMark {
                    space: *space,
                    stream: *stream,
                    heads: heads.iter().map(|h| h.0).collect(),
                })
                .collect(),
        );
        self.must_persist = false;
        self.changed = false;
        Ok(record)
    }

    // ---- outputs ------------------------------------------------------

    /// The next frame to send on the WebSocket.
    pub fn poll_transmit(&mut self) -> Option<ClientFrame> {
        if self.must_persist || !self.online {
            return None;
        }
        let frame = self.transmit.pop_front()?;
        self.last_sent = self.now;
        Some(frame)
    }

    /// The next HTTP request to make.
    pub fn poll_request(&mut self) -> Option<(RequestId, HttpRequest)> {
        if self.must_persist {
            return None;
        }
        self.requests.pop_front()
    }

    /// The next event for the interface.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True when the driver should open the WebSocket now.
    pub fn wants_connection(&self) -> bool {
        !self.online && self.token.is_some() && self.now >= self.reconnect_at && self.needs_link()
    }

    /// Some operation or subscription needs the WebSocket.
    fn needs_link(&self) -> bool {
        self.ops
            .values()
            .any(|r| matches!(r.op, Op::Sync { .. } | Op::Flush { .. } | Op::Record { .. }))
            || self.spaces.values().any(|t| t.wanted)
            || self.config.follow
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut at: Option<u64> = None;
        let mut consider = |t: u64| at = Some(at.map_or(t, |a| a.min(t)));
        for r in self.ops.values() {
            consider(r.deadline);
            match r.op {
                Op::Flush {
                    stage: FlushStage::Waiting { until },
                    ..
                }
                | Op::Pair {
                    stage: PairStage::Waiting(until),
                    ..
                }
                | Op::AddDevice {
                    stage: AddDeviceStage::Waiting(until),
                    ..
                } => consider(until),
                _ => {}
            }
        }
        for t in self.spaces.values() {
            if let Some(r) = t.retry_at {
                consider(r);
            }
        }
        for due in self.due.values() {
            consider(*due);
        }
        for (_, at) in self.unrecorded.values() {
            consider(*at);
        }
        if self.online {
            for t in self.spaces.values() {
                if let Some(at) = t.report_at {
                    consider(at);
                }
            }
            consider(self.last_sent + self.config.ping_ms);
        } else if self.reconnect_at > self.now && self.needs_link() {
            // Time to reconnect, or to sign in again first.
            consider(self.reconnect_at);
        }
        at
    }

    // ---- inputs -------------------------------------------------------

    /// Starts an operation; its end comes as [`Event::Done`].
    pub fn start(&mut self, now: u64, intent: Intent) -> OpId {
        self.now = self.now.max(now);
        let op = match intent {
            Intent::SignIn => Op::SignIn {
                challenge: None,
                session: None,
            },
            Intent::Refresh => Op::Refresh {
                full: true,
                stage: RefreshStage::Start,
            },
            Intent::Sync(space) => Op::Sync {
                space,
                request: None,
            },
            Intent::CreateSpace => Op::Create(CreateStage::Start),
            Intent::Invite { space, user, role } => {
                commit(space, CommitIntent::Invite { user, role })
            }
            Intent::Remove { space, user } => commit(space, CommitIntent::Remove { user }),
            Intent::SetRole { space, user, role } => {
                commit(space, CommitIntent::SetRole { user, role })
            }
            Intent::Revoke { device } => Op::Revoke {
                device,
                stage: RevokeStage::Start,
            },
            Intent::List { space, listing } => Op::List {
                space,
                listing,
                request: None,
            },
            Intent::Accept { space, user, role } => Op::Accept {
                space,
                user,
                stage: AcceptStage::Start(role),
            },
            Intent::Decline { space, user } => Op::Call {
                call: self.managed(space).map(|()| {
                    let path = format!("/v1/directory/{}/requests/{user}/decline", space.to_hex());
                    (Method::Post, path, None)
                }),
                request: None,
            },
            Intent::OpenDropBox {
                space,
                label,
                days,
                quota,
            } => Op::OpenDropBox {
                space,
                label,
                days,
                quota,
                stage: DropStage::Start,
            },
            Intent::CloseDropBox { space, dropbox } => Op::Call {
                call: self.managed(space).and_then(|()| {
                    crate::intake::drop::BoxId::parse(&dropbox)
                        .map(|id| {
                            let path = format!("/v1/spaces/{}/drop-boxes/{id}", space.to_hex());
                            (Method::Delete, path, None)
                        })
                        .ok_or_else(|| {
                            Failure::new(Code::Protocol, "a drop box id is 32 hex digits")
                        })
                }),
                request: None,
            },
            Intent::DropBoxes(space) => Op::DropBoxes {
                space,
                stage: DropStage::Start,
            },
            Intent::OpenPairing(code) => Op::Call {
                call: self.holds_identity().map(|()| {
                    let body = api::to_json(&api::PairingOpen {
                        channel: hex::encode(code.channel()),
                    });
                    (Method::Post, "/v1/pairing/open".to_owned(), Some(body))
                }),
                request: None,
            },
            Intent::Pair(code) => Op::Pair {
                code,
                until: self.now + PAIRING_MS,
                stage: PairStage::Start,
                stop: false,
            },
            Intent::AddDevice(device) => Op::AddDevice {
                device,
                until: self.now + NEW_DEVICE_MS,
                stage: AddDeviceStage::Waiting(self.now),
                stop: false,
            },
            Intent::FlushSpace(space) => Op::FlushSpace {
                space,
                waiting: None,
                current: None,
            },
            Intent::Flush { space, stream } => {
                self.due.remove(&(space, stream));
                Op::Flush {
                    space,
                    stream,
                    attempt: 0,
                    stage: FlushStage::Ready,
                }
            }
        };
        let id = self.spawn(op, false, false);
        self.drive();
        id
    }

    /// Stops a pairing ([`Intent::Pair`]) or the wait for a new device
    /// ([`Intent::AddDevice`]) whose page the person left: it ends with
    /// [`Code::Stopped`] at its next safe point, while it waits or reads,
    /// never between registering a device and answering it nor during
    /// the invitations. Other operations are not stopped.
    pub fn cancel(&mut self, op: OpId) {
        if let Some(running) = self.ops.get_mut(&op)
            && let Op::Pair { stop, .. } | Op::AddDevice { stop, .. } = &mut running.op
        {
            *stop = true;
            self.drive();
        }
    }

    /// A frame from the server.
    pub fn handle_frame(&mut self, now: u64, frame: ServerFrame) {
        self.now = self.now.max(now);
        match frame {
            ServerFrame::Entry { space, entry } => self.on_entry(space, entry),
            ServerFrame::Synced {
                space, next_seq, ..
            } => self.on_synced(space, next_seq),
            ServerFrame::Refused { request, .. } if self.subscriptions.contains_key(&request) => {
                self.on_subscribe_refused(request, frame);
            }
            ServerFrame::Reported {
                request, reopened, ..
            } => self.on_reported(request, reopened, None),
            ServerFrame::Refused {
                request, message, ..
            } if self.reports.contains_key(&request) => {
                self.on_reported(request, false, Some(message));
            }
            // Request 0 is a presence message's: nothing waits for its answer.
            ServerFrame::Accepted { request: 0, .. } | ServerFrame::Refused { request: 0, .. } => {}
            ServerFrame::Accepted { request, .. } | ServerFrame::Refused { request, .. } => {
                self.answers.insert(request, frame);
            }
            ServerFrame::Welcome { .. } => {
                let refreshing = self
                    .ops
                    .values()
                    .any(|r| matches!(r.op, Op::Refresh { .. }));
                if !refreshing {
                    let op = Op::Refresh {
                        full: false,
                        stage: RefreshStage::Start,
                    };
                    self.spawn(op, false, true);
                }
            }
            ServerFrame::Application { space, message } => self.on_presence(space, &message),
            ServerFrame::Asked { space } => self.admit_waiting(space),
            ServerFrame::Pong => {}
        }
        self.drive();
    }

    fn on_presence(&mut self, space: SpaceId, message: &[u8]) {
        let Some(tracked) = self.spaces.get_mut(&space) else {
            return;
        };
        // A message this device cannot open (another epoch, a replay) is
        // dropped: presence is best effort.
        let Ok(Processed::Application { device, payload }) =
            tracked
                .view
                .space_mut()
                .process(&self.provider, message, Content::Application)
        else {
            return;
        };
        // Opening it moved the receiving ratchet on.
        self.changed = true;
        let user = tracked
            .view
            .space()
            .members()
            .ok()
            .and_then(|members| members.into_iter().find(|m| m.device == device))
            .map(|m| m.user);
        if let Some(user) = user {
            self.events.push_back(Event::Presence {
                space,
                user,
                device,
                payload,
            });
        }
    }

    /// The answer to an HTTP request (`Err`: it could not be sent or no
    /// answer came).
    pub fn handle_response(
        &mut self,
        now: u64,
        id: RequestId,
        response: Result<HttpResponse, String>,
    ) {
        self.now = self.now.max(now);
        let Some(request) = self.inflight.get(&id) else {
            return;
        };
        let expired = matches!(&response, Ok(r) if r.status == 401) && request.signed_in;
        if expired {
            // The session expired: sign in again, then send it again.
            self.token = None;
            self.parked.push(id);
            self.ensure_sign_in();
        } else {
            self.inflight.remove(&id);
            let response = response.map_err(|e| {
                Failure::new(
                    Code::Network,
                    format!("the server could not be reached: {e}"),
                )
            });
            self.responses.insert(id, response);
        }
        self.drive();
    }

    /// The WebSocket went up or down.
    pub fn handle_link(&mut self, now: u64, link: Link) {
        self.now = self.now.max(now);
        match link {
            Link::Up => {
                self.online = true;
                self.reconnect_delay = 0;
                self.last_sent = self.now;
                let wanted: Vec<SpaceId> = self
                    .spaces
                    .iter()
                    .filter(|(_, t)| t.wanted)
                    .map(|(id, _)| *id)
                    .collect();
                for id in wanted {
                    self.subscribe(id);
                }
                let refreshing = self.busy(|op| matches!(op, Op::Refresh { .. }));
                if self.config.follow && !refreshing {
                    let op = Op::Refresh {
                        full: true,
                        stage: RefreshStage::Start,
                    };
                    self.spawn(op, false, true);
                }
            }
            Link::Down | Link::Unauthorized | Link::Failed => {
                let was_online = self.online;
                self.online = false;
                self.link += 1;
                self.transmit.clear();
                self.subscriptions.clear();
                self.answers.clear();
                for t in self.spaces.values_mut() {
                    t.wanted |= t.live || !t.outstanding.is_empty();
                    t.live = false;
                    t.outstanding.clear();
                    t.gap = None;
                }
                let (first, ceiling) = self.config.reconnect_ms;
                self.reconnect_delay = if was_online {
                    first
                } else {
                    (self.reconnect_delay * 2).clamp(first, ceiling)
                };
                self.reconnect_at = self.now + self.reconnect_delay;
                if link == Link::Unauthorized {
                    self.token = None;
                    self.reconnect_at = self.now;
                    self.ensure_sign_in();
                } else {
                    if link == Link::Failed {
                        // Signed in again once the back-off has passed.
                        self.token = None;
                    }
                    if self.config.fail_offline {
                        self.abort_offline();
                    }
                }
            }
        }
        self.drive();
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        if self.online && self.now >= self.last_sent + self.config.ping_ms {
            self.transmit.push_back(ClientFrame::Ping);
        }
        let retry: Vec<SpaceId> = self
            .spaces
            .iter()
            .filter(|(_, t)| t.retry_at.is_some_and(|r| r <= self.now))
            .map(|(id, _)| *id)
            .collect();
        for id in retry {
            if let Some(t) = self.spaces.get_mut(&id) {
                t.retry_at = None;
                t.wanted = true;
            }
            if self.online {
                self.subscribe(id);
            }
        }
        let due: Vec<(SpaceId, StreamId)> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= self.now)
            .map(|(k, _)| *k)
            .collect();
        for (space, stream) in due {
            self.due.remove(&(space, stream));
            let op = Op::Flush {
                space,
                stream,
                attempt: 0,
                stage: FlushStage::Ready,
            };
            self.spawn(op, false, true);
        }
        self.check_records();
        self.send_reports();
        self.drive();
    }

    /// Reports the commits this device refused whose report is due (once
    /// refused, then every [`REPORT_RETRY_MS`] until the epoch is reopened
    /// or a later commit makes it moot: an answer can be lost).
    fn send_reports(&mut self) {
        if !self.online {
            return;
        }
        let now = self.now;
        let due: Vec<(SpaceId, u64)> = self
            .spaces
            .iter_mut()
            .filter_map(|(id, t)| {
                let due = t.report_at.is_some_and(|at| at <= now);
                let commit = t.view.refused().filter(|_| due)?;
                t.report_at = Some(now + REPORT_RETRY_MS);
                Some((*id, commit))
            })
            .collect();
        for (space, commit) in due {
            self.next_frame = self.next_frame.wrapping_add(1).max(1);
            let request = self.next_frame;
            self.reports.insert(request, space);
            self.transmit.push_back(ClientFrame::Report {
                request,
                space,
                commit,
            });
        }
    }

    /// The server's answer to a report: once the epoch is reopened, the
    /// space is read again if the server had stopped serving it (the
    /// refused commit may have taken this device off the roster); a
    /// refusal ends the reporting and is shown.
    fn on_reported(&mut self, request: u32, reopened: bool, refused: Option<String>) {
        let Some(id) = self.reports.remove(&request) else {
            return;
        };
        let Some(t) = self.spaces.get_mut(&id) else {
            return;
        };
        if let Some(message) = refused {
            t.report_at = None;
            self.events.push_back(Event::Warning {
                code: Code::Refused,
                space: Some(id),
                message: format!(
                    "the server did not count this device's report of a refused commit: {message}"
                ),
            });
        } else if reopened {
            t.report_at = None;
            if !t.live && t.outstanding.is_empty() {
                t.failed = None;
                self.subscribe(id);
            }
        }
    }

    /// Notes spaces whose log, read to its end, holds no record of their
    /// current epoch, and writes the record once the grace period passed.
    fn check_records(&mut self) {
        let ids: Vec<SpaceId> = self.spaces.keys().copied().collect();
        for id in ids {
            let t = &self.spaces[&id];
            let (view, epoch) = (&t.view, t.view.space().epoch());
            let usable =
                t.live && !view.is_removed() && view.broken().is_none() && view.can_record();
            if !usable || view.has_record(epoch) {
                self.unrecorded.remove(&id);
                continue;
            }
            match self.unrecorded.get(&id) {
                Some((e, at)) if *e == epoch => {
                    if self.now >= *at {
                        let writing =
                            self.busy(|op| matches!(op, Op::Record { space, .. } if *space == id));
                        if !writing {
                            self.spawn(
                                Op::Record {
                                    space: id,
                                    sent: None,
                                },
                                false,
                                true,
                            );
                        }
                        let again = self.now + self.config.record_grace_ms;
                        self.unrecorded.insert(id, (epoch, again));
                    }
                }
                _ => {
                    let at = self.now + self.config.record_grace_ms;
                    self.unrecorded.insert(id, (epoch, at));
                }
            }
        }
    }

    /// Ends every operation that needs the connection (see
    /// [`Config::fail_offline`]); changes sent without an answer go again
    /// with the next flush.
    fn abort_offline(&mut self) {
        let ids: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, r)| !matches!(r.op, Op::SignIn { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(running) = self.ops.remove(&id) else {
                continue;
            };
            if let Op::Flush {
                space,
                stream,
                stage: FlushStage::Appending { .. },
                ..
            } = running.op
            {
                self.refuse_flush(space, stream);
            }
            let failure = Failure::new(
                Code::Network,
                "the connection to the server was lost or could not be opened",
            );
            if running.child {
                continue;
            }
            self.finish(id, &running, Err(failure));
        }
        self.finished.clear();
    }

    // ---- the log ------------------------------------------------------

    fn subscribe(&mut self, id: SpaceId) -> Option<u32> {
        if !self.online {
            return None;
        }
        let t = self.spaces.get_mut(&id)?;
        if t.view.is_removed() || t.view.broken().is_some() {
            return None;
        }
        self.next_frame = self.next_frame.wrapping_add(1).max(1);
        let request = self.next_frame;
        t.outstanding.push_back(request);
        t.live = false;
        t.wanted = true;
        t.gap = None;
        self.subscriptions.insert(request, id);
        self.transmit.push_back(ClientFrame::Subscribe {
            request,
            space: id,
            from_seq: t.view.read_to(),
        });
        Some(request)
    }

    fn on_entry(&mut self, id: SpaceId, entry: LogEntry) {
        let Some(t) = self.spaces.get_mut(&id) else {
            return;
        };
        let seq = entry.seq;
        let was_removed = t.view.is_removed();
        let intake_before = t.view.space().intake_in_force().map(|(e, _)| e);
        // Only a commit (or a reopening) changes who may write.
        let was_writable =
            entry.kind != crate::wire::EntryKind::Envelope && read_only(&t.view).is_none();
        let applied = t.view.apply(&self.device, &self.provider, entry);
        self.changed = true;
        if applied.missing.is_some() {
            t.gap = Some(t.gap.map_or(seq, |g| g.max(seq)));
            if t.live && t.outstanding.is_empty() {
                // An entry was skipped on the way: read again from it.
                self.subscribe(id);
            }
        }
        let t = self.spaces.get_mut(&id).expect("present");
        if !applied.streams.is_empty() {
            self.events.push_back(Event::Changed {
                space: id,
                streams: applied.streams,
            });
        }
        if applied.membership {
            self.events.push_back(Event::Membership { space: id });
        }
        // The intake rotated (a removal, whoever committed it) or this
        // device learned of a later opening: the drop boxes' pages must
        // seal to the key in force (§11.6). The server keeps the latest.
        let intake_after = t.view.space().intake_in_force().map(|(e, _)| e);
        let removed = t.view.is_removed();
        if intake_after > intake_before
            && !removed
            && !self.busy(|op| matches!(op, Op::PublishIntake { space, .. } if *space == id))
        {
            let op = Op::PublishIntake {
                space: id,
                request: None,
            };
            self.spawn(op, false, true);
        }
        let t = self.spaces.get_mut(&id).expect("present");
        if let Some(message) = applied.warning {
            self.events.push_back(Event::Warning {
                code: Code::EntryRefused,
                space: Some(id),
                message,
            });
        }
        if applied.refused.is_some() {
            t.report_at = Some(self.now);
        } else if t.view.refused().is_none() {
            // Reopened, or moot.
            t.report_at = None;
        }
        if !was_removed && t.view.is_removed() {
            self.events.push_back(Event::Removed { space: id });
        }
        if was_writable && let Some(why) = read_only(&t.view) {
            // Rights changed under the person's feet: said at once, and
            // what waits to be sent is kept for them to see.
            let waiting = t.view.unsent().len();
            let kept = if waiting > 0 {
                format!(" Edits not sent in {waiting} document(s) are kept on this device.")
            } else {
                String::new()
            };
            self.events.push_back(Event::Warning {
                code: Code::ReadOnly,
                space: Some(id),
                message: format!("{why}.{kept}"),
            });
        }
        if applied.membership {
            self.check_pinned_keys(id);
        }
        self.report_fork(id);
        if applied.refused.is_some() {
            self.send_reports();
        }
    }

    /// After a commit: users new to this device are pinned with the key the
    /// group pins for them; a user the group pins with another key than the
    /// one this device verified is reported (once per user and space).
    fn check_pinned_keys(&mut self, id: SpaceId) {
        let Some(t) = self.spaces.get(&id) else {
            return;
        };
        let Ok(policy) = t.view.space().policy() else {
            return;
        };
        let keys = policy.members.iter().map(|(u, m)| (u, m.identity_key));
        let conflicts = self.contacts.conflicts(keys);
        for (user, m) in &policy.members {
            if self.contacts.pin(user, m.identity_key) {
                self.changed = true;
            }
        }
        let t = self.spaces.get_mut(&id).expect("present");
        let fresh: Vec<UserId> = conflicts
            .into_iter()
            .filter(|u| t.key_conflicts.insert(u.clone()))
            .collect();
        if !fresh.is_empty() {
            self.events.push_back(Event::Warning {
                code: Code::Identity,
                space: Some(id),
                message: format!(
                    "space {id} now names another identity key for {} than the one this device verified: do not trust what is written under that name until you have compared safety numbers",
                    names(&fresh)
                ),
            });
        }
    }

    fn report_fork(&mut self, id: SpaceId) {
        let Some(t) = self.spaces.get_mut(&id) else {
            return;
        };
        if let Some(reason) = t.view.broken()
            && !t.fork_reported
        {
            t.fork_reported = true;
            // The evidence is durable before anything else goes out.
            self.must_persist = true;
            t.live = false;
            t.wanted = false;
            self.events.push_back(Event::Warning {
                code: Code::Forked,
                space: Some(id),
                message: reason.to_owned(),
            });
        }
    }

    fn on_synced(&mut self, id: SpaceId, next_seq: u64) {
        let Some(t) = self.spaces.get_mut(&id) else {
            return;
        };
        let Some(request) = t.outstanding.pop_front() else {
            return;
        };
        self.subscriptions.remove(&request);
        t.view.synced(next_seq);
        if t.view.broken().is_some() {
            self.report_fork(id);
            return;
        }
        if t.view.read_to() >= next_seq {
            t.completed = request;
            t.attempts = 0;
            t.failed = None;
            if t.outstanding.is_empty() {
                if t.gap.is_some_and(|g| g >= t.view.read_to()) {
                    // Live entries passed the catch-up: read them again.
                    self.subscribe(id);
                } else {
                    t.live = true;
                    t.gap = None;
                    self.check_records();
                    // Requests made while no manager's device was online.
                    self.admit_waiting(id);
                }
            }
        } else if t.outstanding.is_empty() {
            t.attempts += 1;
            if t.attempts >= self.config.subscribe_attempts {
                let failure = Failure::new(
                    Code::Withheld,
                    format!(
                        "the server says space {id} has {next_seq} entries but did not deliver entry {} after {} subscriptions: it is withholding part of the log",
                        t.view.read_to(),
                        t.attempts
                    ),
                );
                t.attempts = 0;
                t.live = false;
                t.wanted = false;
                t.retry_at = Some(self.now + self.config.withheld_retry_ms);
                t.failed = Some((request, failure.clone()));
                self.events.push_back(Event::Warning {
                    code: Code::Withheld,
                    space: Some(id),
                    message: failure.message,
                });
            } else {
                self.subscribe(id);
            }
        }
    }

    fn on_subscribe_refused(&mut self, request: u32, frame: ServerFrame) {
        let Some(id) = self.subscriptions.remove(&request) else {
            return;
        };
        let ServerFrame::Refused { code, message, .. } = frame else {
            return;
        };
        let Some(t) = self.spaces.get_mut(&id) else {
            return;
        };
        t.outstanding.retain(|r| *r != request);
        t.live = false;
        t.wanted = false;
        if code == RefusalCode::Forbidden && !t.view.space().is_active() {
            // A device removed from the space is no longer served.
            if !t.view.is_removed() {
                t.view.mark_removed();
                self.must_persist = true;
                self.events.push_back(Event::Removed { space: id });
            }
        } else if code == RefusalCode::Forbidden {
            // The group has not removed this device: the server's word
            // alone does not (it could lie); the space is not followed
            // until asked again.
            t.failed = Some((request, Failure::new(Code::NotMember, message)));
        } else {
            t.failed = Some((request, Failure::new(Code::Refused, message)));
        }
    }

    fn append(&mut self, space: SpaceId, item: AppendItem) -> u32 {
        self.next_frame = self.next_frame.wrapping_add(1).max(1);
        let request = self.next_frame;
        self.transmit.push_back(ClientFrame::Append {
            request,
            space,
            item,
        });
        request
    }

    // ---- HTTP ---------------------------------------------------------

    fn request(&mut self, method: Method, path: String, body: Option<Vec<u8>>) -> RequestId {
        self.next_request += 1;
        let id = self.next_request;
        let request = HttpRequest {
            method,
            path,
            body,
            signed_in: true,
        };
        if let Some(revoked) = &self.revoked {
            self.responses.insert(id, Err(revoked.clone()));
            return id;
        }
        self.inflight.insert(id, request.clone());
        if self.token.is_none() {
            self.parked.push(id);
            self.ensure_sign_in();
        } else {
            self.requests.push_back((id, request));
        }
        id
    }

    fn open_request(&mut self, path: &str, body: Vec<u8>) -> RequestId {
        self.next_request += 1;
        let id = self.next_request;
        let request = HttpRequest {
            method: Method::Post,
            path: path.to_owned(),
            body: Some(body),
            signed_in: false,
        };
        self.inflight.insert(id, request.clone());
        self.requests.push_back((id, request));
        id
    }

    /// Takes the answer to `id`, decoded, if it came.
    fn answer<T: for<'a> serde::Deserialize<'a>>(
        &mut self,
        id: RequestId,
    ) -> Option<Result<T, Failure>> {
        let response = self.responses.remove(&id)?;
        Some(match response {
            Err(e) => Err(e),
            Ok(r) if (200..300).contains(&r.status) => {
                let body: &[u8] = if r.body.is_empty() { b"null" } else { &r.body };
                api::from_json(body).map_err(|e| Failure::new(Code::Protocol, e))
            }
            Ok(r) => {
                let e: api::ErrorBody = api::from_json(&r.body).unwrap_or(api::ErrorBody {
                    error: "unknown".into(),
                    message: "the server gave no explanation".into(),
                });
                Err(Failure {
                    code: Code::Server,
                    message: format!("the server refused ({}): {}", r.status, e.message),
                    server: Some((r.status, e.error)),
                })
            }
        })
    }

    fn ensure_sign_in(&mut self) {
        if self.revoked.is_some() {
            return;
        }
        if !self.ops.values().any(|r| matches!(r.op, Op::SignIn { .. })) {
            let op = Op::SignIn {
                challenge: None,
                session: None,
            };
            self.spawn(op, false, true);
        }
    }

    // ---- operations ---------------------------------------------------

    fn spawn(&mut self, op: Op, child: bool, detached: bool) -> OpId {
        self.next_op += 1;
        let id = self.next_op;
        self.ops.insert(
            id,
            Running {
                op,
                child,
                detached,
                deadline: self.now + self.config.op_timeout_ms,
            },
        );
        id
    }

    fn child(&mut self, op: Op) -> OpId {
        self.spawn(op, true, false)
    }

    /// A child that reads `space` to the end of its log.
    fn sync_child(&mut self, space: SpaceId) -> OpId {
        self.child(Op::Sync {
            space,
            request: None,
        })
    }

    /// A child that writes the record of `space`'s current epoch.
    fn record_child(&mut self, space: SpaceId) -> OpId {
        self.child(Op::Record { space, sent: None })
    }

    /// Takes a child's result, if it ended.
    fn child_result(&mut self, id: OpId) -> Option<Result<Output, Failure>> {
        self.finished.remove(&id)
    }

    /// Advances every operation until none moves.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            let ids: Vec<OpId> = self.ops.keys().copied().collect();
            for id in ids {
                let Some(mut running) = self.ops.remove(&id) else {
                    continue;
                };
                let step = if self.now >= running.deadline {
                    Step::Finished(Err(Failure::new(
                        Code::Timeout,
                        "the server did not answer in time",
                    )))
                } else {
                    self.advance(&mut running.op)
                };
                match step {
                    Step::Pending => {
                        self.ops.insert(id, running);
                    }
                    Step::Moved => {
                        moved = true;
                        running.deadline = self.now + self.config.op_timeout_ms;
                        self.ops.insert(id, running);
                    }
                    Step::Finished(result) => {
                        moved = true;
                        self.finish(id, &running, result);
                    }
                }
            }
            if !moved {
                break;
            }
        }
        // The connection needs a session this device no longer has (it
        // expired, or signing in failed): sign in again, with back-off.
        let signing_in = self.busy(|op| matches!(op, Op::SignIn { .. }));
        if !self.online
            && self.token.is_none()
            && self.revoked.is_none()
            && !signing_in
            && self.now >= self.reconnect_at
            && self.needs_link()
        {
            self.ensure_sign_in();
            self.drive();
        }
    }

    fn finish(&mut self, id: OpId, running: &Running, result: Result<Output, Failure>) {
        if let Op::SignIn { .. } = running.op {
            if let Err(e) = &result
                && e.code == Code::Revoked
            {
                // For good: the device stops asking (PROTOCOL §3.8).
                self.revoked = Some(e.clone());
            }
            if result.is_err() {
                let (first, ceiling) = self.config.reconnect_ms;
                self.reconnect_delay = (self.reconnect_delay * 2).clamp(first, ceiling);
                self.reconnect_at = self.now + self.reconnect_delay;
            }
            let parked = std::mem::take(&mut self.parked);
            for r in parked {
                match (&result, self.inflight.get(&r)) {
                    (Ok(_), Some(request)) => self.requests.push_back((r, request.clone())),
                    (Err(e), Some(_)) => {
                        self.inflight.remove(&r);
                        // Signing in was refused (a revoked device, an
                        // unknown one): the request fails for that reason.
                        self.responses.insert(r, Err(e.clone()));
                    }
                    _ => {}
                }
            }
        }
        if running.child {
            self.finished.insert(id, result);
        } else if running.detached {
            if let Err(f) = result {
                self.events.push_back(Event::Warning {
                    code: f.code,
                    space: None,
                    message: f.message,
                });
            }
        } else {
            self.events.push_back(Event::Done { op: id, result });
        }
    }

    fn advance(&mut self, op: &mut Op) -> Step {
        match op {
            Op::SignIn { challenge, session } => self.advance_sign_in(challenge, session),
            Op::Sync { space, request } => self.advance_sync(*space, request),
            Op::Refresh { full, stage } => self.advance_refresh(*full, stage),
            Op::Create(stage) => self.advance_create(stage),
            Op::Commit(c) => self.advance_commit(c),
            Op::Flush {
                space,
                stream,
                attempt,
                stage,
            } => self.advance_flush(*space, *stream, attempt, stage),
            Op::Record { space, sent } => self.advance_record(*space, sent),
            Op::Revoke { device, stage } => self.advance_revoke(*device, stage),
            Op::Call { call, request } => match (call, *request) {
                (Err(f), _) => Step::Finished(Err(f.clone())),
                (Ok((method, path, body)), None) => {
                    *request = Some(self.request(*method, path.clone(), body.take()));
                    Step::Moved
                }
                (Ok(_), Some(r)) => match self.answer::<serde_json::Value>(r) {
                    None => Step::Pending,
                    Some(result) => Step::Finished(result.map(|_| Output::Done)),
                },
            },
            Op::Accept { space, user, stage } => self.advance_accept(*space, user, stage),
            Op::Admit {
                space,
                stage,
                again,
            } => self.advance_admit(*space, stage, again),
            Op::List {
                space,
                listing,
                request,
            } => self.advance_list(*space, listing, request),
            Op::OpenDropBox {
                space,
                label,
                days,
                quota,
                stage,
            } => self.advance_open_drop_box(*space, label, *days, *quota, stage),
            Op::DropBoxes { space, stage } => self.advance_drop_boxes(*space, stage),
            Op::Pair {
                code,
                until,
                stage,
                stop,
            } => self.advance_pair(code, *until, stage, *stop),
            Op::AddDevice {
                device,
                until,
                stage,
                stop,
            } => self.advance_add_device(*device, *until, stage, *stop),
            Op::PublishIntake { space, request } => match *request {
                None => match self.intake_request(*space) {
                    Some(r) => {
                        *request = Some(r);
                        Step::Moved
                    }
                    None => Step::Finished(Ok(Output::Done)),
                },
                Some(r) => match self.answer::<serde_json::Value>(r) {
                    None => Step::Pending,
                    // Another device published this epoch's key or a
                    // later one first: nothing is left to do.
                    Some(Err(f)) if f.server.as_ref().is_some_and(|(status, _)| *status == 409) => {
                        Step::Finished(Ok(Output::Done))
                    }
                    Some(result) => Step::Finished(result.map(|_| Output::Done)),
                },
            },
            Op::FlushSpace {
                space,
                waiting,
                current,
            } => {
                let space = *space;
                if let Some(c) = *current {
                    match self.child_result(c) {
                        None => return Step::Pending,
                        Some(Err(f)) => return Step::Finished(Err(f)),
                        Some(Ok(_)) => *current = None,
                    }
                }
                // A document before the library that lists it, so that no
                // member is shown an entry whose document has not arrived.
                let queue = waiting.get_or_insert_with(|| {
                    let lib = library::stream(space);
                    let mut streams: VecDeque<StreamId> = self
                        .due
                        .keys()
                        .filter(|(s, stream)| *s == space && *stream != lib)
                        .map(|(_, stream)| *stream)
                        .collect();
                    if self.due.contains_key(&(space, lib)) {
                        streams.push_back(lib);
                    }
                    streams
                });
                match queue.pop_front() {
                    None => Step::Finished(Ok(Output::Done)),
                    Some(stream) => {
                        self.due.remove(&(space, stream));
                        *current = Some(self.child(Op::Flush {
                            space,
                            stream,
                            attempt: 0,
                            stage: FlushStage::Ready,
                        }));
                        Step::Moved
                    }
                }
            }
        }
    }

    /// Refuses, for anyone but the space's managers, what only they do.
    fn managed(&self, space: SpaceId) -> Result<(), Failure> {
        let tracked = self.spaces.get(&space).ok_or_else(|| not_member(space))?;
        if let Some(why) = read_only(&tracked.view) {
            return Err(Failure::new(Code::ReadOnly, why));
        }
        if tracked.view.space().own_role().ok() != Some(Role::SpaceManager) {
            return Err(Failure::new(
                Code::NotManager,
                format!(
                    "only the space managers of space {space} list it and answer requests to join it"
                ),
            ));
        }
        Ok(())
    }

    /// If this device manages `space` and the space says it is open (a
    /// space manager's word inside the space, never the server's), starts
    /// adding whoever is waiting, unless that is under way already.
    fn admit_waiting(&mut self, space: SpaceId) {
        if !self.admits(space) {
            return;
        }
        let running = self.ops.values_mut().find_map(|r| match &mut r.op {
            Op::Admit {
                space: s, again, ..
            } if *s == space => Some(again),
            _ => None,
        });
        match running {
            // It reads the requests again before it ends.
            Some(again) => *again = true,
            None => {
                let op = Op::Admit {
                    space,
                    stage: AdmitStage::Start,
                    again: false,
                };
                self.spawn(op, false, true);
            }
        }
    }

    /// This device is adding people who asked to join an open space (a
    /// driver that is about to stop lets it finish first).
    pub fn admitting(&self) -> bool {
        self.ops.values().any(|r| matches!(r.op, Op::Admit { .. }))
    }

    /// This device adds those who ask to join `space`: it is a space
    /// manager there and the space, read to the end of its log (a change
    /// closing it would be in), is open.
    fn admits(&mut self, space: SpaceId) -> bool {
        self.spaces.get(&space).is_some_and(|t| t.live)
            && self.managed(space).is_ok()
            && self.profile(space).is_ok_and(|p| p.open)
    }

    fn advance_admit(&mut self, space: SpaceId, stage: &mut AdmitStage, again: &mut bool) -> Step {
        match stage {
            AdmitStage::Start => {
                *again = false;
                if !self.admits(space) {
                    return Step::Finished(Ok(Output::Done));
                }
                let path = format!("/v1/directory/{}/requests", space.to_hex());
                *stage = AdmitStage::Reading(self.request(Method::Get, path, None));
                Step::Moved
            }
            AdmitStage::Reading(r) => match self.answer::<api::JoinRequests>(*r) {
                None => Step::Pending,
                Some(Err(f)) => Step::Finished(Err(f)),
                Some(Ok(waiting)) => {
                    let policy = self
                        .spaces
                        .get(&space)
                        .and_then(|t| t.view.space().policy().ok());
                    let users = waiting
                        .requests
                        .iter()
                        .filter_map(|r| UserId::new(&r.user).ok())
                        // One whose request another manager's device is
                        // still closing is a member already.
                        .filter(|u| policy.as_ref().is_none_or(|p| p.role(u).is_none()))
                        .collect();
                    *stage = AdmitStage::Adding(users, None, None);
                    Step::Moved
                }
            },
            AdmitStage::Adding(users, current, failed) => {
                if let Some(child) = *current {
                    match self.child_result(child) {
                        None => return Step::Pending,
                        // Another manager's device added them first (or
                        // they have no device left to add): nothing to do.
                        Some(Err(f)) if f.code == Code::NoKeyPackages => {}
                        Some(Err(f)) => {
                            failed.get_or_insert(f);
                        }
                        Some(Ok(_)) => {}
                    }
                    *current = None;
                }
                match users.pop_front() {
                    // Closed (or this device no longer a manager) meanwhile.
                    Some(_) if !self.admits(space) => Step::Finished(Ok(Output::Done)),
                    Some(user) => {
                        *current = Some(self.child(Op::Accept {
                            space,
                            user,
                            stage: AcceptStage::Start(OPEN_SPACE_ROLE),
                        }));
                        Step::Moved
                    }
                    None if *again => {
                        *stage = AdmitStage::Start;
                        Step::Moved
                    }
                    None => Step::Finished(failed.take().map_or(Ok(Output::Done), Err)),
                }
            }
        }
    }

    /// Lists or unlists `space`. Whether it is open is written inside the
    /// space as well, where the managers' devices read it: closing at
    /// once, opening only once the server holds the listing (a listing it
    /// refused leaves the space as it was).
    /// The intake key in force of a space, if it is open and held.
    fn intake_in_force(&self, space: SpaceId) -> Option<(u64, crate::intake::IntakePublicKey)> {
        self.spaces.get(&space)?.view.space().intake_in_force()
    }

    fn intake_request_due(&self, space: SpaceId) -> bool {
        self.intake_in_force(space).is_some()
    }

    /// The request publishing the space's intake key in force, if any.
    fn intake_request(&mut self, space: SpaceId) -> Option<RequestId> {
        let (epoch, key) = self.intake_in_force(space)?;
        let body = api::PublishedIntake {
            recipient: key.to_age_recipient_string(),
            epoch,
        };
        let path = format!("/v1/spaces/{}/intake", space.to_hex());
        Some(self.request(Method::Put, path, Some(api::to_json(&body))))
    }

    fn advance_open_drop_box(
        &mut self,
        space: SpaceId,
        label: &str,
        days: u32,
        quota: u64,
        stage: &mut DropStage,
    ) -> Step {
        match stage {
            DropStage::Start => {
                if let Err(f) = self.managed(space) {
                    return Step::Finished(Err(f));
                }
                if let Err(e) = crate::document::checked_name(label) {
                    return Step::Finished(Err(Failure::new(Code::Protocol, e.to_string())));
                }
                if !(1..=crate::dropbox::MAX_DAYS).contains(&days) {
                    return Step::Finished(Err(Failure::new(
                        Code::Protocol,
                        "a drop box stays open 1 to 365 days",
                    )));
                }
                let tracked = self.spaces.get_mut(&space).expect("managed");
                if tracked.view.space().intake_in_force().is_none() {
                    if let Err(e) = tracked.view.space_mut().open_intake() {
                        return Step::Finished(Err(space_failure(e)));
                    }
                    // The intake epoch is space state: durable before the
                    // key goes out.
                    self.must_persist = true;
                }
                // The other members learn where the intake stands from a
                // record of this epoch by a space manager (§7.2); until
                // they do, their devices give no link (§11.6). Written at
                // each opening of a box: the record of the epoch may have
                // been sealed by a device that did not know.
                if tracked.view.can_record() {
                    let child = self.child(Op::Record { space, sent: None });
                    *stage = DropStage::Recording(child);
                    return Step::Moved;
                }
                match self.intake_request(space) {
                    Some(r) => {
                        *stage = DropStage::Publishing(r);
                        Step::Moved
                    }
                    None => Step::Finished(Err(Failure::new(
                        Code::Space,
                        "this device does not hold the key of the space's current epoch",
                    ))),
                }
            }
            DropStage::Recording(child) => match self.child_result(*child) {
                None => Step::Pending,
                Some(Err(f)) => Step::Finished(Err(f)),
                Some(Ok(_)) => match self.intake_request(space) {
                    Some(r) => {
                        *stage = DropStage::Publishing(r);
                        Step::Moved
                    }
                    None => Step::Finished(Err(Failure::new(
                        Code::Space,
                        "the space's epoch changed while its intake was opened; open the drop box again",
                    ))),
                },
            },
            DropStage::Publishing(r) => match self.answer::<serde_json::Value>(*r) {
                None => Step::Pending,
                Some(Err(f)) => Step::Finished(Err(f)),
                Some(Ok(_)) => {
                    let id = crate::intake::drop::BoxId(crate::random::bytes()).to_hex();
                    let body = api::NewDropBox {
                        id: id.clone(),
                        days,
                        quota,
                    };
                    let path = format!("/v1/spaces/{}/drop-boxes", space.to_hex());
                    let r = self.request(Method::Post, path, Some(api::to_json(&body)));
                    *stage = DropStage::Creating(r, id);
                    Step::Moved
                }
            },
            DropStage::Creating(r, id) => match self.answer::<serde_json::Value>(*r) {
                None => Step::Pending,
                Some(Err(f)) => Step::Finished(Err(f)),
                Some(Ok(_)) => {
                    let id = core::mem::take(id);
                    let written = self
                        .edit(space, library::stream(space), |r| {
                            library::set_drop_box(r.doc(), &id, label)
                        })
                        .and_then(|w| w.map_err(|e| Failure::new(Code::Protocol, e.to_string())));
                    if let Err(f) = written {
                        return Step::Finished(Err(f));
                    }
                    let child = self.child(Op::FlushSpace {
                        space,
                        waiting: None,
                        current: None,
                    });
                    *stage = DropStage::Labelling(child, id);
                    Step::Moved
                }
            },
            DropStage::Labelling(child, id) => match self.child_result(*child) {
                None => Step::Pending,
                Some(Err(f)) => Step::Finished(Err(f)),
                Some(Ok(_)) => {
                    let fragment = match (
                        crate::intake::drop::BoxId::parse(id),
                        self.intake_in_force(space),
                    ) {
                        (Some(b), Some((_, key))) => crate::intake::drop::link_fragment(b, &key),
                        _ => {
                            return Step::Finished(Err(Failure::new(
                                Code::Space,
                                "the space's intake key changed while the box was opened; list the boxes for its link",
                            )));
                        }
                    };
                    Step::Finished(Ok(Output::DropBox {
                        id: core::mem::take(id),
                        fragment,
                    }))
                }
            },
            _ => unreachable!("stages of a listing"),
        }
    }

    fn advance_drop_boxes(&mut self, space: SpaceId, stage: &mut DropStage) -> Step {
        match stage {
            DropStage::Start => {
                if !self.spaces.contains_key(&space) {
                    return Step::Finished(Err(not_member(space)));
                }
                let path = format!("/v1/spaces/{}/drop-boxes", space.to_hex());
                *stage = DropStage::Listing(self.request(Method::Get, path, None));
                Step::Moved
            }
            DropStage::Listing(r) => match self.answer::<api::DropBoxes>(*r) {
                None => Step::Pending,
                Some(Err(f)) => Step::Finished(Err(f)),
                Some(Ok(listing)) => {
                    let behind = match (self.intake_in_force(space), &listing.intake) {
                        (Some(_), None) => true,
                        (Some((epoch, _)), Some(served)) => served.epoch < epoch,
                        (None, _) => false,
                    };
                    let writable = self
                        .spaces
                        .get(&space)
                        .is_some_and(|t| read_only(&t.view).is_none());
                    if behind
                        && writable
                        && let Some(r) = self.intake_request(space)
                    {
                        *stage = DropStage::Republishing(r, listing);
                        return Step::Moved;
                    }
                    Step::Finished(Ok(Output::DropBoxes(self.checked_boxes(space, listing))))
                }
            },
            DropStage::Republishing(r, listing) => match self.answer::<serde_json::Value>(*r) {
                None => Step::Pending,
                Some(Err(f)) => Step::Finished(Err(f)),
                Some(Ok(_)) => {
                    let mut listing = core::mem::replace(
                        listing,
                        api::DropBoxes {
                            intake: None,
                            boxes: vec![],
                        },
                    );
                    if let Some((epoch, key)) = self.intake_in_force(space) {
                        listing.intake = Some(api::PublishedIntake {
                            recipient: key.to_age_recipient_string(),
                            epoch,
                        });
                    }
                    Step::Finished(Ok(Output::DropBoxes(self.checked_boxes(space, listing))))
                }
            },
            _ => unreachable!("stages of an opening"),
        }
    }

    fn checked_boxes(
        &mut self,
        space: SpaceId,
        listing: api::DropBoxes,
    ) -> crate::dropbox::DropBoxList {
        let Some(tracked) = self.spaces.get_mut(&space) else {
            return crate::dropbox::DropBoxList {
                key: crate::dropbox::KeyState::Missing,
                boxes: vec![],
            };
        };
        let labels = library::drop_boxes(
            tracked
                .view
                .replica(library::stream(space), &self.device)
                .doc(),
        );
        crate::dropbox::check(tracked.view.space(), &labels, listing)
    }

    /// Opens one sealed part of a drop-box submission of `space` (the
    /// server's listing names the epoch whose key sealed it): the whole
    /// age file is authenticated before anything is returned.
    pub fn open_submission_part(
        &self,
        space: SpaceId,
        epoch: u64,
        sealed: &[u8],
    ) -> Result<crate::intake::drop::Part, Failure> {
        let tracked = self.spaces.get(&space).ok_or_else(|| not_member(space))?;
        crate::dropbox::open_part(tracked.view.space(), epoch, sealed)
            .map_err(|e| Failure::new(Code::Intake, e.to_string()))
    }

    fn advance_list(
        &mut self,
        space: SpaceId,
        listing: &mut Option<api::Listing>,
        request: &mut Option<RequestId>,
    ) -> Step {
        let open = listing.as_ref().is_some_and(|l| l.open);
        let write_open = |engine: &mut Engine, open: bool| {
            engine
                .edit(space, library::stream(space), |r| {
                    library::set_open(r.doc(), open)
                })
                .and_then(|written| {
                    written.map_err(|e| Failure::new(Code::Protocol, e.to_string()))
                })
        };
        match *request {
            None => {
                if let Err(f) = self.managed(space) {
                    return Step::Finished(Err(f));
                }
                if !open && let Err(f) = write_open(self, false) {
                    return Step::Finished(Err(f));
                }
                let path = format!("/v1/directory/{}", space.to_hex());
                *request = Some(match listing {
                    Some(l) => self.request(Method::Put, path, Some(api::to_json(l))),
                    None => self.request(Method::Delete, path, None),
                });
                Step::Moved
            }
            Some(r) => match self.answer::<serde_json::Value>(r) {
                None => Step::Pending,
                Some(Err(f)) => Step::Finished(Err(f)),
                Some(Ok(_)) if open => {
                    Step::Finished(write_open(self, true).map(|()| Output::Done))
                }
                Some(Ok(_)) => Step::Finished(Ok(Output::Done)),
            },
        }
    }

    fn advance_accept(&mut self, space: SpaceId, user: &UserId, stage: &mut AcceptStage) -> Step {
        match stage {
            AcceptStage::Start(role) => {
                if let Err(f) = self.managed(space) {
                    return Step::Finished(Err(f));
                }
                let intent = CommitIntent::Invite {
                    user: user.clone(),
                    role: *role,
                };
                *stage = AcceptStage::Adding(self.child(commit(space, intent)));
                Step::Moved
            }
            AcceptStage::Adding(child) => match self.child_result(*child) {
                None => Step::Pending,
                // The request stays open: another manager (or this one,
                // again) can still accept it.
                Some(Err(f)) => Step::Finished(Err(f)),
                Some(Ok(_)) => {
                    let path = format!("/v1/directory/{}/requests/{user}", space.to_hex());
                    *stage = AcceptStage::Closing(self.request(Method::Delete, path, None));
                    Step::Moved
                }
            },
            AcceptStage::Closing(r) => match self.answer::<serde_json::Value>(*r) {
                None => Step::Pending,
                Some(Err(f)) => Step::Finished(Err(Failure::new(
                    f.code,
                    format!(
                        "{user} was added, but the request could not be closed: {}",
                        f.message
                    ),
                ))),
                Some(Ok(_)) => Step::Finished(Ok(Output::Done)),
            },
        }
    }

    /// The identity key's revocation of `device`, one of this user's
    /// other devices.
    fn revocation(&self, device: DeviceId) -> Result<DeviceRevocation, Failure> {
        let Some(identity) = &self.identity else {
            return Err(Failure::new(
                Code::Identity,
                "this device does not hold the identity key: revoke from the device that does, or recover the identity with the recovery code first",
            ));
        };
        if device == self.device.id() {
            return Err(Failure::new(
                Code::Identity,
                "a device cannot revoke itself; revoke it from another device of yours",
            ));
        }
        Ok(identity.revoke(device))
    }

    /// The results of one child operation per space, once all ended: the
    /// spaces where it succeeded, and why it failed elsewhere.
    fn per_space(&mut self, children: &[(SpaceId, OpId)]) -> Option<(Vec<SpaceId>, Vec<String>)> {
        if children.iter().any(|(_, c)| !self.finished.contains_key(c)) {
            return None;
        }
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for (space, c) in children {
            match self.child_result(*c) {
                Some(Ok(_)) => done.push(*space),
                Some(Err(e)) => failed.push(format!("{space}: {e}")),
                None => {}
            }
        }
        Some((done, failed))
    }

    /// Only the device holding the identity key certifies others.
    fn holds_identity(&self) -> Result<(), Failure> {
        match self.identity {
            Some(_) => Ok(()),
            None => Err(Failure::new(
                Code::Identity,
                "this device does not hold the identity key: pair the new device from the first one",
            )),
        }
    }

    fn advance_pair(
        &mut self,
        code: &crate::pairing::PairingCode,
        until: u64,
        stage: &mut PairStage,
        stop: bool,
    ) -> Step {
        let stopped = || Step::Finished(Err(Failure::new(Code::Stopped, "stopped")));
        match stage {
            PairStage::Start => {
                if let Err(f) = self.holds_identity() {
                    return Step::Finished(Err(f));
                }
                *stage = PairStage::Waiting(self.now);
                Step::Moved
            }
            PairStage::Waiting(_) if stop => stopped(),
            PairStage::Waiting(at) => {
                if self.now >= until {
                    return Step::Finished(Err(Failure::new(
                        Code::PairingExpired,
                        "no new device used the code in time: show a new one",
                    )));
                }
                if self.now < *at {
                    return Step::Pending;
                }
                *stage = PairStage::Reading(self.request(Method::Get, "/v1/pairing".into(), None));
                Step::Moved
            }
            PairStage::Reading(r) => match self.answer::<api::PairingOffers>(*r) {
                None => Step::Pending,
                Some(answer) => {
                    // A failed reading (the network) is tried again at
                    // the next poll, until the code expires.
                    let offers = answer.map(|a| a.offers).unwrap_or_default();
                    let identity = self.identity.as_ref().expect("checked at the start");
                    let accepted = offers.into_iter().find_map(|listed| {
                        let offer = hex::decode(&listed.offer).ok()?;
                        // Made with another code (a typo, or not ours):
                        // never answered.
                        let (certificate, answer) =
                            crate::pairing::accept_offer(identity, code, &offer, &self.contacts)
                                .ok()?;
                        Some((listed.id, certificate, answer))
                    });
                    let Some((offer, certificate, answer)) = accepted else {
                        if stop {
                            return stopped();
                        }
                        *stage = PairStage::Waiting(self.now + PAIRING_POLL_MS);
                        return Step::Moved;
                    };
                    // Registered before the answer: the new device signs
                    // in as soon as it has it.
                    let body = api::to_json(&api::NewDevice {
                        certificate: hex::encode(
                            postcard::to_allocvec(&certificate)
                                .expect("a certificate always encodes"),
                        ),
                    });
                    *stage = PairStage::Registering {
                        request: self.request(Method::Post, "/v1/devices".into(), Some(body)),
                        offer,
                        device: certificate.device,
                        answer,
                    };
                    Step::Moved
                }
            },
            PairStage::Registering {
                request,
                offer,
                device,
                answer,
            } => match self.answer::<serde_json::Value>(*request) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(e)),
                Some(Ok(_)) => {
                    let body = api::to_json(&api::PairingReply {
                        answer: hex::encode(answer),
                    });
                    let path = format!("/v1/pairing/{offer}/answer");
                    *stage =
                        PairStage::Answering(self.request(Method::Post, path, Some(body)), *device);
                    Step::Moved
                }
            },
            PairStage::Answering(r, device) => match self.answer::<serde_json::Value>(*r) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(e)),
                Some(Ok(_)) => Step::Finished(Ok(Output::Paired(*device))),
            },
        }
    }

    fn advance_add_device(
        &mut self,
        device: DeviceId,
        until: u64,
        stage: &mut AddDeviceStage,
        stop: bool,
    ) -> Step {
        match stage {
            AddDeviceStage::Waiting(_) if stop => {
                Step::Finished(Err(Failure::new(Code::Stopped, "stopped")))
            }
            AddDeviceStage::Waiting(at) => {
                if self.now < *at {
                    return Step::Pending;
                }
                let path = format!("/v1/users/{}", self.device.user());
                *stage = AddDeviceStage::Reading(self.request(Method::Get, path, None));
                Step::Moved
            }
            AddDeviceStage::Reading(r) => match self.answer::<api::UserListing>(*r) {
                None => Step::Pending,
                Some(listing) => {
                    let ready = listing.as_ref().is_ok_and(|l| {
                        l.devices
                            .iter()
                            .any(|d| d.device == device.to_hex() && d.key_packages > 0)
                    });
                    // Invited anyway once the wait is over: the
                    // invitation says what is missing.
                    if !ready && self.now + NEW_DEVICE_POLL_MS < until {
                        *stage = AddDeviceStage::Waiting(self.now + NEW_DEVICE_POLL_MS);
                        return Step::Moved;
                    }
                    let user = self.device.user().clone();
                    let mut invites = Vec::new();
                    let mut others = Vec::new();
                    let spaces: Vec<(SpaceId, Option<Role>)> = self
                        .spaces
                        .iter()
                        .filter(|(_, t)| !t.view.is_removed() && t.view.space().is_active())
                        .filter(|(_, t)| {
                            !t.view
                                .space()
                                .members()
                                .is_ok_and(|roster| roster.iter().any(|m| m.device == device))
                        })
                        .map(|(id, t)| (*id, t.view.space().own_role().ok()))
                        .collect();
                    for (space, role) in spaces {
                        match role {
                            Some(Role::SpaceManager)
                                if self.spaces[&space].view.broken().is_none() =>
                            {
                                let op = self.child(commit(
                                    space,
                                    CommitIntent::Invite {
                                        user: user.clone(),
                                        role: Role::SpaceManager,
                                    },
                                ));
                                invites.push((space, op));
                            }
                            _ => others.push(space),
                        }
                    }
                    *stage = AddDeviceStage::Inviting(invites, others);
                    Step::Moved
                }
            },
            AddDeviceStage::Inviting(invites, others) => {
                let Some((added, failed)) = self.per_space(invites) else {
                    return Step::Pending;
                };
                if failed.is_empty() {
                    Step::Finished(Ok(Output::DeviceAdded {
                        added,
                        others: std::mem::take(others),
                    }))
                } else {
                    Step::Finished(Err(Failure::new(
                        Code::Space,
                        format!(
                            "the new device could not be added to {} space(s): {}",
                            failed.len(),
                            failed.join("; ")
                        ),
                    )))
                }
            }
        }
    }

    fn advance_revoke(&mut self, device: DeviceId, stage: &mut RevokeStage) -> Step {
        match stage {
            RevokeStage::Start => {
                let revocation = match self.revocation(device) {
                    Ok(r) => r,
                    Err(e) => return Step::Finished(Err(e)),
                };
                let body = api::to_json(&api::Revoke {
                    revocation: hex::encode(
                        postcard::to_allocvec(&revocation).expect("a revocation always encodes"),
                    ),
                });
                let request = self.request(Method::Post, "/v1/devices/revoke".into(), Some(body));
                *stage = RevokeStage::Telling(request, revocation);
                Step::Moved
            }
            RevokeStage::Telling(r, revocation) => match self.answer::<serde_json::Value>(*r) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(e)),
                Some(Ok(_)) => {
                    // The server no longer serves the device; now every
                    // space it shares with this one removes it.
                    let spaces: Vec<SpaceId> = self
                        .spaces
                        .keys()
                        .copied()
                        .filter(|space| self.must_revoke(*space, revocation))
                        .collect();
                    let children = spaces
                        .into_iter()
                        .map(|space| {
                            let intent = CommitIntent::Revoke {
                                revocation: revocation.clone(),
                            };
                            (space, self.child(commit(space, intent)))
                        })
                        .collect();
                    *stage = RevokeStage::Committing(children);
                    Step::Moved
                }
            },
            RevokeStage::Committing(children) => {
                let Some((removed, failed)) = self.per_space(children) else {
                    return Step::Pending;
                };
                if failed.is_empty() {
                    Step::Finished(Ok(Output::Revoked(removed)))
                } else {
                    Step::Finished(Err(Failure::new(
                        Code::Space,
                        format!(
                            "the server no longer serves the device, but it is still in {} space(s): {}; run the revocation again",
                            failed.len(),
                            failed.join("; ")
                        ),
                    )))
                }
            }
        }
    }

    fn advance_sign_in(
        &mut self,
        challenge: &mut Option<RequestId>,
        session: &mut Option<RequestId>,
    ) -> Step {
        let device = self.device.id().to_hex();
        match (*challenge, *session) {
            (None, _) => {
                let body = api::to_json(&api::ChallengeRequest {
                    device: device.clone(),
                });
                *challenge = Some(self.open_request("/v1/challenge", body));
                Step::Moved
            }
            (Some(c), None) => match self.answer::<api::Challenge>(c) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(sign_in_failure(e))),
                Some(Ok(answer)) => {
                    let mut bytes = [0u8; 32];
                    if hex::decode_to_slice(&answer.challenge, &mut bytes).is_err() {
                        return Step::Finished(Err(Failure::new(
                            Code::Protocol,
                            "the server's challenge is not 32 bytes of hex",
                        )));
                    }
                    let signature = self.device.sign_statement(Statement::SignIn, &bytes);
                    let body = api::to_json(&api::SignIn {
                        device,
                        challenge: answer.challenge,
                        signature: hex::encode(signature),
                    });
                    *session = Some(self.open_request("/v1/session", body));
                    Step::Moved
                }
            },
            (Some(_), Some(s)) => match self.answer::<api::Session>(s) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(sign_in_failure(e))),
                Some(Ok(answer)) => {
                    self.token = Some(answer.token);
                    self.changed = true;
                    self.reconnect_at = self.now;
                    Step::Finished(Ok(Output::Done))
                }
            },
        }
    }

    fn advance_sync(&mut self, space: SpaceId, request: &mut Option<u32>) -> Step {
        let Some(t) = self.spaces.get(&space) else {
            return Step::Finished(Err(not_member(space)));
        };
        if let Some(reason) = t.view.broken() {
            return Step::Finished(Err(Failure::new(Code::Forked, reason)));
        }
        if t.view.is_removed() {
            return match &t.failed {
                Some((r, f)) if request.is_some_and(|mine| *r >= mine) => {
                    Step::Finished(Err(f.clone()))
                }
                _ => Step::Finished(Ok(Output::Done)),
            };
        }
        match *request {
            None => match self.subscribe(space) {
                Some(r) => {
                    *request = Some(r);
                    Step::Moved
                }
                None => Step::Pending,
            },
            Some(mine) => {
                if t.completed >= mine {
                    return Step::Finished(Ok(Output::Done));
                }
                if let Some((r, f)) = &t.failed
                    && *r >= mine
                {
                    return Step::Finished(Err(f.clone()));
                }
                if self.online && t.outstanding.is_empty() && !t.live && t.retry_at.is_none() {
                    // The subscription was lost with the connection.
                    *request = self.subscribe(space);
                    return Step::Moved;
                }
                Step::Pending
            }
        }
    }

    fn advance_refresh(&mut self, full: bool, stage: &mut RefreshStage) -> Step {
        match stage {
            RefreshStage::Start => {
                *stage =
                    RefreshStage::Welcomes(self.request(Method::Get, "/v1/welcomes".into(), None));
                Step::Moved
            }
            RefreshStage::Welcomes(r) => {
                let welcomes = match self.answer::<api::Welcomes>(*r) {
                    None => return Step::Pending,
                    Some(Err(e)) => return Step::Finished(Err(e)),
                    Some(Ok(w)) => w.welcomes,
                };
                let mut deletes = Vec::new();
                for w in welcomes {
                    self.join(&w);
                    deletes.push(self.request(
                        Method::Delete,
                        format!("/v1/welcomes/{}", w.id),
                        None,
                    ));
                }
                *stage = RefreshStage::Deleting(deletes);
                Step::Moved
            }
            RefreshStage::Deleting(rs) => {
                while let Some(r) = rs.last().copied() {
                    match self.answer::<serde::de::IgnoredAny>(r) {
                        None => return Step::Pending,
                        Some(Err(e)) => return Step::Finished(Err(e)),
                        Some(Ok(_)) => {
                            rs.pop();
                        }
                    }
                }
                if !full {
                    return Step::Finished(Ok(Output::Done));
                }
                let path = format!("/v1/users/{}", self.device.user());
                *stage = RefreshStage::Listing(self.request(Method::Get, path, None));
                Step::Moved
            }
            RefreshStage::Listing(r) => {
                let listing = match self.answer::<api::UserListing>(*r) {
                    None => return Step::Pending,
                    Some(Err(e)) => return Step::Finished(Err(e)),
                    Some(Ok(l)) => l,
                };
                let me = self.device.id().to_hex();
                let have = listing
                    .devices
                    .iter()
                    .find(|d| d.device == me)
                    .map_or(0, |d| d.key_packages) as usize;
                let target = self.config.key_package_target;
                if have >= target / 2 {
                    *stage = RefreshStage::Syncing(self.sync_all());
                    return Step::Moved;
                }
                let kps = match self.device.key_packages(&self.provider, target - have) {
                    Ok(k) => k,
                    Err(e) => return Step::Finished(Err(Failure::new(Code::Space, e.to_string()))),
                };
                // Their private keys are in the MLS store: durable before
                // anyone can use them.
                self.must_persist = true;
                let body = api::to_json(&api::KeyPackages {
                    key_packages: kps.iter().map(hex::encode).collect(),
                });
                *stage = RefreshStage::Publishing(self.request(
                    Method::Post,
                    "/v1/key-packages".into(),
                    Some(body),
                ));
                Step::Moved
            }
            RefreshStage::Publishing(r) => match self.answer::<api::Count>(*r) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(e)),
                Some(Ok(_)) => {
                    *stage = RefreshStage::Syncing(self.sync_all());
                    Step::Moved
                }
            },
            RefreshStage::Syncing(children) => {
                if children.iter().any(|c| !self.finished.contains_key(c)) {
                    return Step::Pending;
                }
                let mut result = Ok(Output::Done);
                for c in children.iter() {
                    if let Some(Err(e)) = self.child_result(*c)
                        && result.is_ok()
                    {
                        result = Err(e);
                    }
                }
                if result.is_err() {
                    return Step::Finished(result);
                }
                *stage = RefreshStage::Revocations(self.request(
                    Method::Get,
                    "/v1/revocations".into(),
                    None,
                ));
                Step::Moved
            }
            RefreshStage::Revocations(r) => {
                let listed = match self.answer::<api::Revocations>(*r) {
                    None => return Step::Pending,
                    Some(Err(e)) => return Step::Finished(Err(e)),
                    Some(Ok(l)) => l,
                };
                let children = self
                    .revocations_to_commit(&listed)
                    .into_iter()
                    .map(|(space, revocation)| {
                        self.child(commit(space, CommitIntent::Revoke { revocation }))
                    })
                    .collect();
                *stage = RefreshStage::Revoking(children);
                Step::Moved
            }
            RefreshStage::Revoking(children) => {
                if children.iter().any(|c| !self.finished.contains_key(c)) {
                    return Step::Pending;
                }
                // Another member may have committed it first, or a commit
                // lost its epoch for good: the next refresh tries again.
                for c in children.iter() {
                    if let Some(Err(e)) = self.child_result(*c) {
                        self.events.push_back(Event::Warning {
                            code: e.code,
                            space: None,
                            message: format!("a revoked device is still in a space: {e}"),
                        });
                    }
                }
                Step::Finished(Ok(Output::Done))
            }
        }
    }

    /// The revocations the server lists that this device should commit:
    /// each of a device still in one of its spaces' groups and not yet in
    /// that space's policy (the space checks the signature when it stages
    /// the commit; a forged one is refused there).
    fn revocations_to_commit(&self, listed: &api::Revocations) -> Vec<(SpaceId, DeviceRevocation)> {
        let mut out = Vec::new();
        for entry in &listed.spaces {
            let Ok(space) = SpaceId::from_hex(&entry.space) else {
                continue;
            };
            for h in &entry.revoked {
                let revocation = hex::decode(h)
                    .ok()
                    .and_then(|b| crate::decode_exact::<DeviceRevocation>(&b));
                if let Some(revocation) = revocation
                    && self.must_revoke(space, &revocation)
                {
                    out.push((space, revocation));
                }
            }
        }
        out
    }

    /// Whether this device should commit `revocation` in `space`: it is in
    /// the space (not removed, its log not broken), whose group holds the
    /// revoked device of that user and whose policy does not list it yet.
    fn must_revoke(&self, space: SpaceId, revocation: &DeviceRevocation) -> bool {
        let Some(t) = self.spaces.get(&space) else {
            return false;
        };
        let view = &t.view;
        !view.is_removed()
            && view.broken().is_none()
            && view.space().members().is_ok_and(|roster| {
                roster
                    .iter()
                    .any(|m| m.device == revocation.device && m.user == revocation.user)
            })
            && view
                .space()
                .policy()
                .is_ok_and(|p| !p.is_revoked(revocation.device, &revocation.user))
    }

    fn sync_all(&mut self) -> Vec<OpId> {
        let ids: Vec<SpaceId> = self.spaces.keys().copied().collect();
        ids.into_iter()
            .map(|space| {
                self.child(Op::Sync {
                    space,
                    request: None,
                })
            })
            .collect()
    }

    fn join(&mut self, w: &api::QueuedWelcome) {
        let Ok(space) = SpaceId::from_hex(&w.space) else {
            self.events.push_back(Event::Warning {
                code: Code::InvitationRefused,
                space: None,
                message: "a queued Welcome names no valid space".into(),
            });
            return;
        };
        if self.spaces.contains_key(&space) {
            return;
        }
        let own = self.device.certificate().identity_key;
        let joined = hex::decode(&w.welcome)
            .map_err(|_| "the Welcome is not hex".to_owned())
            .and_then(|bytes| {
                Space::join(&self.provider, &self.device, &own, &bytes).map_err(|e| e.to_string())
            });
        // The group must pin, for every user this device knows, the key it
        // verified: a server could otherwise build a group whose "alice" is
        // a key it holds (PROTOCOL §5.3).
        let joined = joined.and_then(|s| {
            let policy = s.policy().map_err(|e| e.to_string())?;
            let keys = policy.members.iter().map(|(u, m)| (u, m.identity_key));
            let conflicts = self.contacts.conflicts(keys);
            if !conflicts.is_empty() {
                return Err(format!(
                    "it names another identity key for {} than the one this device verified: it may come from someone posing as them",
                    names(&conflicts)
                ));
            }
            for (user, m) in &policy.members {
                self.contacts.pin(user, m.identity_key);
            }
            Ok(s)
        });
        match joined {
            Ok(s) => {
                self.spaces.insert(space, Tracked::new(SpaceView::new(s)));
                self.must_persist = true;
                self.events.push_back(Event::Joined { space });
                if self.config.follow {
                    // Sent once the joined state is durable.
                    if let Some(t) = self.spaces.get_mut(&space) {
                        t.wanted = true;
                    }
                    self.subscribe(space);
                }
            }
            Err(e) => self.events.push_back(Event::Warning {
                code: Code::InvitationRefused,
                space: Some(space),
                message: format!("refused the invitation to space {space}: {e}"),
            }),
        }
    }

    fn advance_create(&mut self, stage: &mut CreateStage) -> Step {
        match *stage {
            CreateStage::Start => {
                let key = self.device.certificate().identity_key;
                let space =
                    match Space::create(&self.provider, &self.device, key, HistoryPolicy::Full) {
                        Ok(s) => s,
                        Err(e) => return Step::Finished(Err(space_failure(e))),
                    };
                let id = space.id();
                self.spaces.insert(id, Tracked::new(SpaceView::new(space)));
                self.must_persist = true;
                let body = api::to_json(&api::NewSpace {
                    id: id.to_hex(),
                    kind: "confidential".into(),
                    name: None,
                });
                let r = self.request(Method::Post, "/v1/spaces".into(), Some(body));
                *stage = CreateStage::Registering(id, r);
                Step::Moved
            }
            CreateStage::Registering(id, r) => match self.answer::<serde::de::IgnoredAny>(r) {
                None => Step::Pending,
                Some(Err(e)) => {
                    self.spaces.remove(&id);
                    self.must_persist = true;
                    Step::Finished(Err(e))
                }
                Some(Ok(_)) => {
                    let child = self.sync_child(id);
                    *stage = CreateStage::Syncing(id, child);
                    Step::Moved
                }
            },
            CreateStage::Syncing(id, child) => match self.child_result(child) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(e)),
                Some(Ok(_)) => {
                    let child = self.record_child(id);
                    *stage = CreateStage::Recording(id, child);
                    Step::Moved
                }
            },
            CreateStage::Recording(id, child) => match self.child_result(child) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(e)),
                Some(Ok(_)) => {
                    let stream = library::stream(id);
                    let device = &self.device;
                    let Some(t) = self.spaces.get_mut(&id) else {
                        return Step::Finished(Err(not_member(id)));
                    };
                    if let Err(e) = library::init(t.view.replica(stream, device).doc()) {
                        return Step::Finished(Err(Failure::new(Code::Document, e.to_string())));
                    }
                    let child = self.child(Op::Flush {
                        space: id,
                        stream,
                        attempt: 0,
                        stage: FlushStage::Ready,
                    });
                    *stage = CreateStage::Library(id, child);
                    Step::Moved
                }
            },
            CreateStage::Library(id, child) => match self.child_result(child) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(e)),
                Some(Ok(_)) => Step::Finished(Ok(Output::Space(id))),
            },
        }
    }

    fn advance_record(&mut self, space: SpaceId, sent: &mut Option<(u32, u64)>) -> Step {
        match *sent {
            Some((request, link)) => {
                if let Some(answer) = self.answers.remove(&request) {
                    if let ServerFrame::Refused { message, .. } = answer {
                        self.events.push_back(Event::Warning {
                            code: Code::EpochRecordNotStored,
                            space: Some(space),
                            message: format!("the epoch record was not stored: {message}"),
                        });
                    }
                    return Step::Finished(Ok(Output::Done));
                }
                if link != self.link {
                    // Lost with the connection: send it again.
                    *sent = None;
                    return Step::Moved;
                }
                Step::Pending
            }
            None => {
                if !self.online {
                    return Step::Pending;
                }
                let Some(t) = self.spaces.get(&space) else {
                    return Step::Finished(Err(not_member(space)));
                };
                let record = match t
                    .view
                    .space()
                    .seal_epoch_record(&self.device, t.view.head())
                {
                    Ok(r) => r,
                    Err(e) => return Step::Finished(Err(space_failure(e))),
                };
                let request = self.append(space, AppendItem::Envelope(record));
                *sent = Some((request, self.link));
                Step::Moved
            }
        }
    }

    fn advance_flush(
        &mut self,
        space: SpaceId,
        stream: StreamId,
        attempt: &mut u32,
        stage: &mut FlushStage,
    ) -> Step {
        if *attempt >= self.config.flush_attempts {
            return Step::Finished(Err(Failure::new(
                Code::Contended,
                format!("the space kept changing epoch; {attempt} flushes were refused"),
            )));
        }
        match *stage {
            FlushStage::Ready => {
                if !self.online || self.busy(|op| matches!(op, Op::Flush { space: s, stream: t, stage, .. } if (*s, *t) == (space, stream) && !matches!(stage, FlushStage::Ready)))
                {
                    // One flush of a document at a time: a refused flush
                    // gives its changes back to the next one.
                    return Step::Pending;
                }
                let device = &self.device;
                let Some(t) = self.spaces.get_mut(&space) else {
                    return Step::Finished(Err(not_member(space)));
                };
                if let Some(why) = read_only(&t.view) {
                    // Kept, listed by `unsent`, never sent to be refused.
                    return Step::Finished(Err(Failure::new(Code::ReadOnly, why)));
                }
                if t.view.existing_replica(stream).is_none() {
                    // Nothing was written to a document this device has not.
                    return Step::Finished(Ok(Output::Done));
                }
                match t.view.flush(stream, device) {
                    Err(e) => Step::Finished(Err(Failure::new(Code::Document, e.to_string()))),
                    Ok(None) => Step::Finished(Ok(Output::Done)),
                    Ok(Some(envelope)) => {
                        let request = self.append(space, AppendItem::Envelope(envelope));
                        *stage = FlushStage::Appending {
                            request,
                            link: self.link,
                        };
                        Step::Moved
                    }
                }
            }
            FlushStage::Appending { request, link } => {
                let Some(answer) = self.answers.remove(&request) else {
                    if link != self.link {
                        // Unanswered: the changes go again (receivers drop
                        // the ones they hold).
                        self.refuse_flush(space, stream);
                        *stage = FlushStage::Ready;
                        return Step::Moved;
                    }
                    return Step::Pending;
                };
                match answer {
                    ServerFrame::Accepted { .. } => {
                        if let Some(r) = self.replica(space, stream) {
                            r.flush_accepted();
                        }
                        self.changed = true;
                        Step::Finished(Ok(Output::Done))
                    }
                    ServerFrame::Refused { code, message, .. } => {
                        self.refuse_flush(space, stream);
                        *attempt += 1;
                        match code {
                            RefusalCode::StaleEpoch { current_epoch } => {
                                let child = self.child(Op::Sync {
                                    space,
                                    request: None,
                                });
                                *stage = FlushStage::Syncing {
                                    child,
                                    target: current_epoch,
                                };
                                Step::Moved
                            }
                            RefusalCode::RateLimited { retry_after_ms } => {
                                *stage = FlushStage::Waiting {
                                    until: self.now + u64::from(retry_after_ms),
                                };
                                Step::Moved
                            }
                            _ => Step::Finished(Err(Failure::new(Code::Refused, message))),
                        }
                    }
                    _ => Step::Pending,
                }
            }
            FlushStage::Waiting { until } => {
                if self.now >= until {
                    *stage = FlushStage::Ready;
                    Step::Moved
                } else {
                    Step::Pending
                }
            }
            FlushStage::Syncing { child, target } => match self.child_result(child) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(e)),
                Some(Ok(_)) => {
                    let epoch = self
                        .spaces
                        .get(&space)
                        .map_or(0, |t| t.view.space().epoch());
                    if epoch < target {
                        return Step::Finished(Err(could_not_follow(space, target)));
                    }
                    *stage = FlushStage::Ready;
                    Step::Moved
                }
            },
        }
    }

    /// Whether another running operation matches (the one being advanced
    /// is out of the table meanwhile).
    fn busy(&self, matches: impl Fn(&Op) -> bool) -> bool {
        self.ops.values().any(|r| matches(&r.op))
    }

    fn replica(&mut self, space: SpaceId, stream: StreamId) -> Option<&mut Replica> {
        self.spaces.get_mut(&space)?.view.existing_replica(stream)
    }

    fn refuse_flush(&mut self, space: SpaceId, stream: StreamId) {
        if let Some(r) = self.replica(space, stream) {
            r.flush_refused();
        }
    }

    fn advance_commit(&mut self, c: &mut CommitOp) -> Step {
        if c.attempt >= self.config.commit_attempts {
            return Step::Finished(Err(Failure::new(
                Code::Contended,
                format!(
                    "the space kept changing; {} attempts to commit lost their epoch",
                    c.attempt
                ),
            )));
        }
        match c.stage {
            CommitStage::Start
                if self.busy(|op| {
                    matches!(op, Op::Commit(o) if o.space == c.space && !matches!(o.stage, CommitStage::Start))
                }) =>
            {
                // One commit of a space at a time: the MLS group holds one
                // pending commit.
                Step::Pending
            }
            CommitStage::Start => {
                if let (CommitIntent::Invite { user, .. }, None) = (&c.intent, c.key) {
                    let path = format!("/v1/users/{user}");
                    c.stage = CommitStage::Lookup(self.request(Method::Get, path, None));
                } else {
                    c.stage = CommitStage::Syncing(self.sync_child(c.space));
                }
                Step::Moved
            }
            CommitStage::Lookup(r) => {
                let listing = match self.answer::<api::UserListing>(r) {
                    None => return Step::Pending,
                    Some(Err(e)) => return Step::Finished(Err(e)),
                    Some(Ok(l)) => l,
                };
                let CommitIntent::Invite { user, .. } = &c.intent else {
                    return Step::Finished(Err(Failure::new(Code::Protocol, "no lookup")));
                };
                match self.pin(user, &listing) {
                    Ok(key) => c.key = Some(key),
                    Err(e) => return Step::Finished(Err(e)),
                }
                match revocations(user, c.key.as_ref().expect("pinned"), &listing) {
                    Ok(revoked) => c.revoked = revoked,
                    Err(e) => return Step::Finished(Err(e)),
                }
                c.stage = CommitStage::Syncing(self.sync_child(c.space));
                Step::Moved
            }
            CommitStage::Syncing(child) => {
                match self.child_result(child) {
                    None => return Step::Pending,
                    Some(Err(e)) => return Step::Finished(Err(e)),
                    Some(Ok(_)) => {}
                }
                let Some(t) = self.spaces.get_mut(&c.space) else {
                    return Step::Finished(Err(not_member(c.space)));
                };
                if let Some(epoch) = c.sent.take()
                    && t.view.pending_commit().is_none()
                    && t.view.space().epoch() > epoch
                {
                    // Our commit is in the log: it was accepted, and the
                    // view merged it.
                    self.must_persist = true;
                    c.stage = CommitStage::Recording(self.record_child(c.space));
                    return Step::Moved;
                }
                if t.view.space().epoch() < c.target {
                    return Step::Finished(Err(could_not_follow(c.space, c.target)));
                }
                // Read to the end of the log: a commit still pending from
                // before (a crash, a lost answer) is not in it, so it was
                // never accepted.
                t.view.set_pending_commit(None);
                if let Err(e) = discard_pending(t.view.space_mut(), &self.provider) {
                    return Step::Finished(Err(space_failure(e)));
                }
                if !c.prerecorded
                    && !t.view.has_record(t.view.space().epoch())
                    && t.view.can_record()
                {
                    c.prerecorded = true;
                    c.stage = CommitStage::PreRecording(self.record_child(c.space));
                    return Step::Moved;
                }
                if let (CommitIntent::Invite { user, .. }, None) = (&c.intent, &c.claimed) {
                    let mut except = self.present(c.space, user);
                    except.extend(c.revoked.iter().map(|r| r.device));
                    let body = api::to_json(&api::Claim {
                        except: except.iter().map(DeviceId::to_hex).collect(),
                    });
                    let path = format!("/v1/users/{user}/key-packages/claim");
                    c.stage = CommitStage::Claiming(self.request(Method::Post, path, Some(body)));
                    return Step::Moved;
                }
                self.build_commit(c)
            }
            CommitStage::Claiming(r) => {
                let claimed = match self.answer::<api::Claimed>(r) {
                    None => return Step::Pending,
                    Some(Err(e)) => return Step::Finished(Err(e)),
                    Some(Ok(c)) => c,
                };
                // A commit that lost its epoch never reached anyone, so the
                // KeyPackages claimed for it serve again.
                c.claimed = Some(
                    claimed
                        .key_packages
                        .into_iter()
                        .filter_map(|k| {
                            Some((
                                DeviceId::from_hex(&k.device).ok()?,
                                hex::decode(&k.key_package).ok()?,
                            ))
                        })
                        .collect(),
                );
                self.build_commit(c)
            }
            CommitStage::Appending {
                request,
                epoch,
                link,
            } => {
                let Some(answer) = self.answers.remove(&request) else {
                    if link != self.link {
                        // The answer was lost with the connection: the log
                        // will say whether the commit was accepted.
                        c.sent = Some(epoch);
                        c.stage = CommitStage::Syncing(self.sync_child(c.space));
                        return Step::Moved;
                    }
                    return Step::Pending;
                };
                let Some(t) = self.spaces.get_mut(&c.space) else {
                    return Step::Finished(Err(not_member(c.space)));
                };
                t.view.set_pending_commit(None);
                match answer {
                    ServerFrame::Accepted { .. } => {
                        let space = t.view.space_mut();
                        match space.commit_accepted(&self.provider) {
                            Ok(_) => {}
                            // It came back through the log first and was
                            // merged there.
                            Err(SpaceError::NoPendingCommit) if space.epoch() > epoch => {}
                            Err(e) => return Step::Finished(Err(space_failure(e))),
                        }
                        self.must_persist = true;
                        self.events.push_back(Event::Membership { space: c.space });
                        c.stage = CommitStage::Recording(self.record_child(c.space));
                        Step::Moved
                    }
                    ServerFrame::Refused { code, message, .. } => {
                        // The winner may have arrived first: merging it
                        // already discarded our pending commit.
                        if let Err(e) = discard_pending(t.view.space_mut(), &self.provider) {
                            return Step::Finished(Err(space_failure(e)));
                        }
                        self.changed = true;
                        match code {
                            RefusalCode::CommitConflict { current_epoch } => {
                                c.attempt += 1;
                                c.target = current_epoch;
                                c.stage = CommitStage::Syncing(self.sync_child(c.space));
                                Step::Moved
                            }
                            _ => Step::Finished(Err(Failure::new(Code::Refused, message))),
                        }
                    }
                    _ => Step::Pending,
                }
            }
            CommitStage::PreRecording(child) => match self.child_result(child) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(e)),
                Some(Ok(_)) => {
                    // Read it back (and anything else new) before building.
                    c.stage = CommitStage::Syncing(self.sync_child(c.space));
                    Step::Moved
                }
            },
            CommitStage::Recording(child) => match self.child_result(child) {
                None => Step::Pending,
                Some(Err(e)) => Step::Finished(Err(e)),
                Some(Ok(_)) => {
                    let epoch = self
                        .spaces
                        .get(&c.space)
                        .map_or(0, |t| t.view.space().epoch());
                    // A removal rotated the intake key (§11.5): the drop
                    // boxes' pages must seal to the new one from now on.
                    if matches!(
                        c.intent,
                        CommitIntent::Remove { .. } | CommitIntent::Revoke { .. }
                    ) && self.intake_request_due(c.space)
                    {
                        let op = Op::PublishIntake {
                            space: c.space,
                            request: None,
                        };
                        self.spawn(op, false, true);
                    }
                    Step::Finished(Ok(Output::Epoch(epoch)))
                }
            },
        }
    }

    /// Checks a directory listing against the keys pinned on first use.
    /// Checks a user's listing (`GET /v1/users/{user}`): every device
    /// certified by the identity key, and the key the one pinned when it
    /// was first seen (trust on first use). Returns the identity key.
    pub fn pin(
        &mut self,
        user: &UserId,
        listing: &api::UserListing,
    ) -> Result<IdentityPublicKey, Failure> {
        let protocol = |m: &str| Failure::new(Code::Protocol, m);
        let mut key = [0u8; 32];
        hex::decode_to_slice(&listing.identity_key, &mut key)
            .map_err(|_| protocol("the listing's identity key is not 32 bytes of hex"))?;
        let key = IdentityPublicKey(key);
        let mut certificates = Vec::with_capacity(listing.devices.len());
        for d in &listing.devices {
            certificates.push(
                hex::decode(&d.certificate)
                    .map_err(|_| protocol("a listed certificate is not hex"))?,
            );
        }
        // Trust on first use: a changed key is refused until people
        // compare safety numbers.
        self.contacts
            .check_listing(user, key, &certificates)
            .map_err(|e| Failure::new(Code::Identity, e.to_string()))?;
        self.changed = true;
        Ok(key)
    }

    /// The devices of `user` already in the space.
    fn present(&self, space: SpaceId, user: &UserId) -> Vec<DeviceId> {
        self.spaces
            .get(&space)
            .and_then(|t| t.view.space().members().ok())
            .map(|roster| {
                roster
                    .into_iter()
                    .filter(|m| m.user == *user)
                    .map(|m| m.device)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn build_commit(&mut self, c: &mut CommitOp) -> Step {
        if !self.online {
            // Built when the connection is back: the log may move first.
            c.stage = CommitStage::Syncing(self.sync_child(c.space));
            return Step::Moved;
        }
        // Neither a device in the space already nor a revoked one, even if
        // the directory handed out a KeyPackage of it.
        let present: BTreeSet<DeviceId> = match &c.intent {
            CommitIntent::Invite { user, .. } => self
                .present(c.space, user)
                .into_iter()
                .chain(c.revoked.iter().map(|r| r.device))
                .collect(),
            _ => BTreeSet::new(),
        };
        let Some(t) = self.spaces.get_mut(&c.space) else {
            return Step::Finished(Err(not_member(c.space)));
        };
        let log = t.view.log_position();
        let epoch = t.view.space().epoch();
        let (provider, device) = (&self.provider, &self.device);
        let space = t.view.space_mut();
        let staged: Result<PendingCommit, Failure> = match &c.intent {
            CommitIntent::Invite { user, role } => {
                let key_packages: Vec<Vec<u8>> = c
                    .claimed
                    .iter()
                    .flatten()
                    .filter(|(d, _)| !present.contains(d))
                    .map(|(_, kp)| kp.clone())
                    .collect();
                if key_packages.is_empty() {
                    return Step::Finished(Err(Failure::new(
                        Code::NoKeyPackages,
                        format!(
                            "{user} has no device that could be added (all are members, or none has a KeyPackage left)"
                        ),
                    )));
                }
                let role = space
                    .policy()
                    .ok()
                    .and_then(|p| p.role(user))
                    .unwrap_or(*role);
                let member = NewMember {
                    user: user.clone(),
                    identity_key: c.key.expect("looked up before"),
                    role,
                    key_packages,
                    revoked: c.revoked.clone(),
                };
                space
                    .add_members(provider, device, &[member], log)
                    .map_err(space_failure)
            }
            CommitIntent::Revoke { revocation } => {
                if space
                    .policy()
                    .is_ok_and(|p| p.is_revoked(revocation.device, &revocation.user))
                {
                    // Another member committed it first.
                    return Step::Finished(Ok(Output::Epoch(epoch)));
                }
                space
                    .revoke_device(provider, device, revocation, log)
                    .map_err(space_failure)
            }
            CommitIntent::Remove { user } => space
                .remove_user(provider, device, user, log)
                .map_err(space_failure),
            CommitIntent::SetRole { user, role } => space
                .policy()
                .and_then(|mut policy| {
                    policy
                        .members
                        .get_mut(user)
                        .ok_or(SpaceError::NoSuchMember)?
                        .role = *role;
                    space.change_policy(provider, device, policy, log)
                })
                .map_err(space_failure),
        };
        let pending = match staged {
            Ok(p) => p,
            Err(e) => return Step::Finished(Err(e)),
        };
        // Write-ahead: if the answer is lost, the commit found in the log
        // is recognised as ours.
        t.view.set_pending_commit(Some(pending.commit.clone()));
        self.must_persist = true;
        let item = AppendItem::Commit {
            epoch,
            commit: pending.commit,
            welcome: pending.welcome,
            aad: pending.aad.to_bytes(),
        };
        let request = self.append(c.space, item);
        c.stage = CommitStage::Appending {
            request,
            epoch,
            link: self.link,
        };
        Step::Moved
    }
}

/// One device of this device's own user, from the directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OwnDevice {
    /// The device id (hex).
    pub device: String,
    /// This device.
    pub this: bool,
    /// Revoked: it can no longer sign in, and no space that lists the
    /// revocation accepts it.
    pub revoked: bool,
    /// KeyPackages it has in the directory.
    pub key_packages: u64,
}

/// This user's devices from the listing of `GET /v1/users/{own user}`, each
/// certificate and revocation checked against the identity key that
/// certified `device`: a server can neither slip in a device of its own nor
/// pass a live device off as revoked.
pub fn own_devices(device: &Device, listing: &api::UserListing) -> Result<Vec<OwnDevice>, Failure> {
    let key = device.certificate().identity_key;
    let user = device.user();
    if listing.user != user.as_str() || listing.identity_key != hex::encode(key.0) {
        return Err(Failure::new(
            Code::Identity,
            "the directory lists another identity key for this user",
        ));
    }
    let mut out = Vec::new();
    for d in &listing.devices {
        let certificate = hex::decode(&d.certificate)
            .ok()
            .and_then(|b| crate::decode_exact::<crate::identity::DeviceCertificate>(&b))
            .filter(|c| c.user == *user && c.verify(&key).is_ok())
            .ok_or_else(|| {
                Failure::new(
                    Code::Identity,
                    format!("device {} is not certified by your identity key", d.device),
                )
            })?;
        out.push(OwnDevice {
            device: certificate.device.to_hex(),
            this: certificate.device == device.id(),
            revoked: false,
            key_packages: d.key_packages,
        });
    }
    for r in revocations(user, &key, listing)? {
        out.push(OwnDevice {
            device: r.device.to_hex(),
            this: r.device == device.id(),
            revoked: true,
            key_packages: 0,
        });
    }
    Ok(out)
}

/// The revoked devices of a user's listing, each checked against the
/// identity key pinned for the user.
fn revocations(
    user: &UserId,
    key: &IdentityPublicKey,
    listing: &api::UserListing,
) -> Result<Vec<DeviceRevocation>, Failure> {
    listing
        .revoked
        .iter()
        .map(|h| {
            let revocation = hex::decode(h)
                .ok()
                .and_then(|b| crate::decode_exact::<DeviceRevocation>(&b))
                .filter(|r| r.user == *user)
                .ok_or_else(|| Failure::new(Code::Protocol, "a listed revocation is malformed"))?;
            revocation
                .verify(key)
                .map_err(|e| Failure::new(Code::Identity, e.to_string()))?;
            Ok(revocation)
        })
        .collect()
}

fn commit(space: SpaceId, intent: CommitIntent) -> Op {
    Op::Commit(Box::new(CommitOp {
        space,
        intent,
        stage: CommitStage::Start,
        attempt: 0,
        key: None,
        revoked: Vec::new(),
        claimed: None,
        sent: None,
        target: 0,
        prerecorded: false,
    }))
}

fn discard_pending(space: &mut Space, provider: &MlsProvider) -> Result<(), SpaceError> {
    match space.commit_rejected(provider) {
        Ok(()) | Err(SpaceError::NoPendingCommit) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why this device may not write in a space, if it may not: removed, a
/// Reader, or a log that can no longer be trusted (what [`Engine::edit`]
/// refuses with [`Code::ReadOnly`]; an interface offers no way to write).
pub fn read_only(view: &SpaceView) -> Option<String> {
    let id = view.id();
    if view.is_removed() || !view.space().is_active() {
        return Some(format!(
            "this device was removed from space {id}: what it shows is the history up to then, and nothing can be written there"
        ));
    }
    if view.broken().is_some() {
        return Some(format!(
            "the log of space {id} can no longer be trusted: nothing more is written there"
        ));
    }
    match view.space().own_role() {
        Ok(role) if role.may_write(crate::envelope::Kind::Change) => None,
        Ok(_) => Some(format!(
            "your role in space {id} is Reader: you can read, not write"
        )),
        Err(_) => Some(format!("this device has no role in space {id}")),
    }
}

fn not_member(space: SpaceId) -> Failure {
    Failure::new(
        Code::NotMember,
        format!("this device is not in space {space}"),
    )
}

fn space_failure(e: SpaceError) -> Failure {
    Failure::new(Code::Space, e.to_string())
}

fn sign_in_failure(e: Failure) -> Failure {
    if e.server
        .as_ref()
        .is_some_and(|(_, code)| code == "device_revoked")
    {
        Failure {
            code: Code::Revoked,
            ..e
        }
    } else if e.code == Code::Server {
        Failure {
            code: Code::SignIn,
            ..e
        }
    } else {
        e
    }
}

fn could_not_follow(space: SpaceId, epoch: u64) -> Failure {
    Failure::new(
        Code::Contended,
        format!("could not follow space {space} to epoch {epoch}; see the warnings"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HttpResponse;

    fn engine(name: &str) -> Engine {
        person(name).engine(Vec::new(), Contacts::default())
    }

    fn ok(body: &str) -> Result<HttpResponse, String> {
        Ok(HttpResponse {
            status: 200,
            body: body.as_bytes().to_vec(),
        })
    }

    /// The durability rule: a created space (its MLS state) is durable
    /// before the server hears of it, and fresh KeyPackages (their private
    /// keys) before they are published; nothing is requested or sent while
    /// a persist is due.
    #[test]
    fn nothing_goes_out_before_what_it_depends_on_is_durable() {
        let mut e = engine("amina");
        e.start(0, Intent::CreateSpace);
        assert!(e.must_persist());
        assert_eq!(e.poll_request(), None, "a request before the persist");
        e.persist().unwrap();
        let (_, request) = e.poll_request().expect("the space is registered");
        assert_eq!(request.path, "/v1/spaces");

        let mut e = engine("bruno");
        e.start(0, Intent::Refresh);
        let (welcomes, _) = e.poll_request().unwrap();
        e.handle_response(1, welcomes, ok(r#"{"welcomes":[]}"#));
        let (listing, request) = e.poll_request().unwrap();
        assert_eq!(request.path, "/v1/users/bruno");
        let me = e.device().id().to_hex();
        let body = format!(
            r#"{{"user":"bruno","identity_key":"00","safety_number":"","devices":[{{"device":"{me}","certificate":"","key_packages":0}}]}}"#
        );
        e.handle_response(2, listing, ok(&body));
        assert!(e.must_persist(), "fresh KeyPackages are not durable yet");
        assert_eq!(e.poll_request(), None);
        e.persist().unwrap();
        let (_, request) = e.poll_request().unwrap();
        assert_eq!(request.path, "/v1/key-packages");
    }

    /// A connection that carried nothing for `ping_ms` gets a ping (the
    /// server closes idle ones), and nothing before.
    #[test]
    fn a_silent_connection_is_kept_alive_with_a_ping() {
        let mut e = engine("amina");
        e.handle_link(1_000, Link::Up);
        assert_eq!(e.poll_timeout(), Some(31_000));
        e.handle_timeout(30_999);
        assert_eq!(e.poll_transmit(), None);
        e.handle_timeout(31_000);
        assert_eq!(e.poll_transmit(), Some(ClientFrame::Ping));
    }

    /// A device its user revoked is told so at its next sign-in: the engine
    /// reports it once, stops signing in and connecting, and fails every
    /// later request at once instead of retrying for ever.
    #[test]
    fn a_revoked_device_stops_signing_in_and_says_why() {
        let (mut e, _) = following("amina", true);
        e.handle_link(0, Link::Failed);
        e.handle_timeout(60_000);
        let (challenge, request) = e.poll_request().expect("a sign-in");
        assert_eq!(request.path, "/v1/challenge");
        e.handle_response(
            60_001,
            challenge,
            ok(&format!(r#"{{"challenge":"{}"}}"#, "ab".repeat(32))),
        );
        let (session, _) = e.poll_request().unwrap();
        e.handle_response(
            60_002,
            session,
            Ok(HttpResponse {
                status: 401,
                body: br#"{"error":"device_revoked","message":"this device was revoked"}"#.to_vec(),
            }),
        );
        let events: Vec<Event> = std::iter::from_fn(|| e.poll_event()).collect();
        assert!(
            events.iter().any(|ev| matches!(
                ev,
                Event::Warning {
                    code: Code::Revoked,
                    ..
                }
            )),
            "{events:?}"
        );
        for t in [120_000, 600_000, 3_600_000] {
            e.handle_timeout(t);
            assert!(!e.wants_connection());
            assert_eq!(e.poll_request(), None, "signing in again at {t}");
        }
        let op = e.start(3_600_001, Intent::Refresh);
        let done = done_of(&mut e, op);
        assert!(
            matches!(
                done,
                Some(Err(Failure {
                    code: Code::Revoked,
                    ..
                }))
            ),
            "{done:?}"
        );
    }

    /// Pairing, from the identity holder: the code's channel opened
    /// first; an offer made with another code never answered; the one
    /// made with this code certified and registered *before* it is
    /// answered; a code no device used expires; a pairing stopped ends.
    #[test]
    fn pairing_registers_then_answers_only_an_offer_made_with_its_code() {
        use crate::pairing::{NewDevice, PairingCode};
        let mut e = engine("amina");
        let user = e.device().user().clone();
        let code = PairingCode::random();
        let open = e.start(0, Intent::OpenPairing(Box::new(code.clone())));
        let (opening, request) = e.poll_request().expect("the channel opened");
        assert_eq!(request.path, "/v1/pairing/open");
        let body: api::PairingOpen = api::from_json(request.body.as_ref().unwrap()).unwrap();
        assert_eq!(body.channel, hex::encode(code.channel()));
        e.handle_response(
            1,
            opening,
            Ok(HttpResponse {
                status: 204,
                body: Vec::new(),
            }),
        );
        assert!(
            std::iter::from_fn(|| e.poll_event())
                .any(|ev| matches!(ev, Event::Done { op, result: Ok(_) } if op == open))
        );
        let op = e.start(1, Intent::Pair(Box::new(code.clone())));

        // An offer made with another code (a typo): left alone.
        let (read, request) = e.poll_request().expect("the offers read");
        assert_eq!(
            (request.method, request.path.as_str()),
            (Method::Get, "/v1/pairing")
        );
        let stranger = NewDevice::generate(user.clone());
        let listed = |id: &str, offer: Vec<u8>| {
            format!(
                r#"{{"offers":[{{"id":"{id}","offer":"{}"}}]}}"#,
                hex::encode(offer)
            )
        };
        e.handle_response(
            2,
            read,
            ok(&listed("01", stranger.offer(&PairingCode::random()))),
        );
        assert_eq!(
            e.poll_request(),
            None,
            "an offer of another code is not answered"
        );
        assert_eq!(
            e.poll_timeout().map(|t| t.min(2 + PAIRING_POLL_MS)),
            Some(2 + PAIRING_POLL_MS)
        );
        e.handle_timeout(2 + PAIRING_POLL_MS);

        // The offer made with this code: registered, then answered.
        let (read, _) = e.poll_request().expect("the offers read again");
        let new = NewDevice::generate(user.clone());
        e.handle_response(2_000, read, ok(&listed("02", new.offer(&code))));
        let (register, request) = e.poll_request().expect("the certificate registered");
        assert_eq!(request.path, "/v1/devices");
        assert_eq!(
            e.poll_request(),
            None,
            "the answer waits for the registration"
        );
        let body: api::NewDevice = api::from_json(request.body.as_ref().unwrap()).unwrap();
        let certificate: crate::identity::DeviceCertificate =
            postcard::from_bytes(&hex::decode(body.certificate).unwrap()).unwrap();
        assert_eq!(certificate.device, new.id());
        e.handle_response(2_001, register, ok("{}"));
        let (reply, request) = e.poll_request().expect("the answer");
        assert_eq!(request.path, "/v1/pairing/02/answer");
        let body: api::PairingReply = api::from_json(request.body.as_ref().unwrap()).unwrap();
        e.handle_response(
            2_002,
            reply,
            Ok(HttpResponse {
                status: 204,
                body: Vec::new(),
            }),
        );
        let done = done_of(&mut e, op);
        assert_eq!(done, Some(Ok(Output::Paired(new.id()))));
        // The new device accepts the answer: it certifies its own key.
        let (device, _) = new
            .complete(&code, &hex::decode(body.answer).unwrap())
            .expect("the answer opens on the new device");
        assert_eq!(device.id(), new.id());
        assert_eq!(
            device.certificate().identity_key,
            e.identity().unwrap().public()
        );

        // A code nobody uses expires; a stopped pairing ends at once.
        let op = e.start(10_000, Intent::Pair(Box::new(PairingCode::random())));
        let mut at = 10_000;
        while at < 10_000 + PAIRING_MS + PAIRING_POLL_MS {
            if let Some((read, _)) = e.poll_request() {
                e.handle_response(at, read, ok(r#"{"offers":[]}"#));
            }
            at += PAIRING_POLL_MS;
            e.handle_timeout(at);
        }
        let done = done_of(&mut e, op);
        assert_eq!(
            done.map(|r| r.map_err(|f| f.code)),
            Some(Err(Code::PairingExpired))
        );
        // Stopped while the offers are being read: it ends once they are,
        // not in the middle.
        let op = e.start(at, Intent::Pair(Box::new(PairingCode::random())));
        let (read, _) = e.poll_request().expect("the offers read");
        e.cancel(op);
        assert!(
            !std::iter::from_fn(|| e.poll_event())
                .any(|ev| matches!(ev, Event::Done { op: o, .. } if o == op))
        );
        e.handle_response(at + 1, read, ok(r#"{"offers":[]}"#));
        let done = done_of(&mut e, op);
        assert_eq!(
            done.map(|r| r.map_err(|f| f.code)),
            Some(Err(Code::Stopped))
        );
    }

    /// A session the server no longer accepts is renewed, and the refused
    /// request goes again with the same id once signed in.
    #[test]
    fn an_expired_session_is_renewed_and_the_request_sent_again() {
        let mut e = engine("amina");
        e.start(0, Intent::Refresh);
        let (id, first) = e.poll_request().unwrap();
        e.handle_response(
            1,
            id,
            Ok(HttpResponse {
                status: 401,
                body: br#"{"error":"unauthenticated","message":"sign in first"}"#.to_vec(),
            }),
        );
        assert_eq!(e.token(), None);
        let (challenge, request) = e.poll_request().unwrap();
        assert_eq!(request.path, "/v1/challenge");
        assert!(!request.signed_in);
        e.handle_response(
            2,
            challenge,
            ok(&format!(r#"{{"challenge":"{}"}}"#, "ab".repeat(32))),
        );
        let (session, request) = e.poll_request().unwrap();
        assert_eq!(request.path, "/v1/session");
        e.handle_response(
            3,
            session,
            ok(r#"{"token":"renewed","expires":0,"user":"amina"}"#),
        );
        assert_eq!(e.token(), Some("renewed"));
        let (again, request) = e.poll_request().unwrap();
        assert_eq!((again, request), (id, first));
    }

    /// An engine in `follow` mode, holding a space it created if `space`.
    fn following(name: &str, space: bool) -> (Engine, Option<SpaceId>) {
        let p = person(name);
        let key = p.device.certificate().identity_key;
        let spaces: Vec<Space> = space
            .then(|| Space::create(&p.mls, &p.device, key, HistoryPolicy::Full).unwrap())
            .into_iter()
            .collect();
        let id = spaces.first().map(Space::id);
        let config = Config {
            follow: true,
            ..Config::default()
        };
        (p.engine_with(spaces, Contacts::default(), config), id)
    }

    /// Connects `e` and has the server say `space`'s log is empty: the
    /// space is read live.
    fn live(e: &mut Engine, space: SpaceId) {
        e.handle_link(0, Link::Up);
        while e.poll_transmit().is_some() {}
        e.handle_frame(
            0,
            ServerFrame::Synced {
                space,
                next_seq: 0,
                head: crate::wire::genesis(space),
                epoch: 0,
            },
        );
    }

    /// An app that follows its spaces wants the connection even with no
    /// space (a Welcome may come), subscribes to every space as it comes
    /// up, and refreshes its Welcomes and KeyPackages at each connection.
    #[test]
    fn an_app_that_follows_subscribes_and_refreshes_at_each_connection() {
        let (e, _) = following("amina", false);
        assert!(e.wants_connection(), "no connection wanted with no space");
        let (mut e, space) = following("amina", true);
        let space = space.unwrap();
        assert!(e.wants_connection());
        e.handle_link(0, Link::Up);
        assert!(matches!(
            e.poll_transmit(),
            Some(ClientFrame::Subscribe { space: s, from_seq: 0, .. }) if s == space
        ));
        let (_, request) = e.poll_request().expect("a refresh at the connection");
        assert_eq!(request.path, "/v1/welcomes");
        e.handle_link(10, Link::Down);
        e.handle_timeout(10_000);
        assert!(e.wants_connection(), "no reconnection after the back-off");
    }

    /// A socket a browser could not open (it is not told why) is tried
    /// again after the back-off, signed in anew first: the session may be
    /// what the server refused.
    #[test]
    fn a_socket_that_could_not_be_opened_signs_in_again_after_the_back_off() {
        let (mut e, _) = following("amina", true);
        e.handle_link(0, Link::Failed);
        assert_eq!(e.token(), None);
        assert_eq!(e.poll_request(), None, "signed in again at once");
        let at = e.poll_timeout().expect("a time to try again");
        assert!(at > 0);
        e.handle_timeout(at);
        let (_, request) = e.poll_request().expect("signing in after the back-off");
        assert_eq!(request.path, "/v1/challenge");
        assert!(!e.wants_connection(), "connecting without a session");
    }

    /// A presence message is sent only on a live subscription, after the
    /// state its sending ratchet moved is durable; its answer is awaited by
    /// nobody and kept nowhere.
    #[test]
    fn a_presence_message_leaves_after_the_ratchet_is_durable() {
        let (mut e, space) = following("amina", true);
        let space = space.unwrap();
        assert_eq!(e.presence(space, b"{}"), Ok(false), "sent while offline");
        e.handle_link(0, Link::Up);
        let Some(ClientFrame::Subscribe { .. }) = e.poll_transmit() else {
            panic!("no subscription");
        };
        assert_eq!(
            e.presence(space, b"{}"),
            Ok(false),
            "sent before the log was read"
        );
        e.handle_frame(
            1,
            ServerFrame::Synced {
                space,
                next_seq: 0,
                head: crate::wire::genesis(space),
                epoch: 0,
            },
        );
        assert_eq!(e.presence(space, b"{\"doc\":\"x\"}"), Ok(true));
        assert!(e.must_persist());
        assert_eq!(e.poll_transmit(), None, "sent before the persist");
        e.persist().unwrap();
        let frame = e.poll_transmit().expect("the presence message");
        assert!(matches!(
            frame,
            ClientFrame::Append {
                request: 0,
                item: AppendItem::Application(_),
                ..
            }
        ));
        e.handle_frame(
            2,
            ServerFrame::Accepted {
                request: 0,
                seq: 0,
                hash: [0; 32],
            },
        );
        assert!(e.answers.is_empty(), "an answer nobody waits for is kept");
        let big = vec![b' '; MAX_PRESENCE + 1];
        assert_eq!(
            e.presence(space, &big).map_err(|f| f.code),
            Err(Code::Refused)
        );
    }

    /// How the operation `op` ended, among the events waiting (`None`:
    /// not yet).
    fn done_of(e: &mut Engine, op: OpId) -> Option<Result<Output, Failure>> {
        std::iter::from_fn(|| e.poll_event()).find_map(|ev| match ev {
            Event::Done { op: o, result } if o == op => Some(result),
            _ => None,
        })
    }

    /// One user's parts.
    struct Person {
        identity: UserIdentity,
        device: Device,
        mls: MlsProvider,
    }

    fn person(name: &str) -> Person {
        let identity = UserIdentity::generate(UserId::new(name).unwrap());
        let device = identity.new_device();
        Person {
            identity,
            device,
            mls: MlsProvider::new(),
        }
    }

    impl Person {
        /// An invitation of this person's device as a contributor.
        fn invitation(&self) -> NewMember {
            NewMember {
                user: self.device.user().clone(),
                identity_key: self.identity.public(),
                role: Role::Contributor,
                key_packages: self.device.key_packages(&self.mls, 1).unwrap(),
                revoked: Vec::new(),
            }
        }

        /// An engine for this person holding `spaces`.
        fn engine(self, spaces: Vec<Space>, contacts: Contacts) -> Engine {
            self.engine_with(spaces, contacts, Config::default())
        }

        fn engine_with(self, spaces: Vec<Space>, contacts: Contacts, config: Config) -> Engine {
            let restored = Restored {
                identity: Some(self.identity),
                device: self.device,
                provider: self.mls,
                spaces: spaces
                    .into_iter()
                    .map(|s| (s.id(), SpaceView::new(s)))
                    .collect(),
                contacts,
                seen: Some(Vec::new()),
            };
            Engine::new(restored, Some("token".into()), config)
        }
    }

    /// Amina's space (her state at epoch 1) with Bruno added as a
    /// contributor (his joined state), and the log's first entry: the
    /// commit that added him.
    fn amina_adds_bruno() -> (Person, Space, Person, Space, LogEntry) {
        let (amina, bruno) = (person("amina"), person("bruno"));
        let key = amina.device.certificate().identity_key;
        let mut space = Space::create(&amina.mls, &amina.device, key, HistoryPolicy::Full).unwrap();
        let genesis = crate::wire::genesis(space.id());
        let added = space
            .add_members(
                &amina.mls,
                &amina.device,
                &[bruno.invitation()],
                (0, genesis),
            )
            .unwrap();
        space.commit_accepted(&amina.mls).unwrap();
        let welcome = added.welcome.expect("a Welcome");
        let joined = Space::join(
            &bruno.mls,
            &bruno.device,
            &bruno.identity.public(),
            &welcome,
        )
        .unwrap();
        let entry = LogEntry {
            seq: 0,
            prev: genesis,
            kind: crate::wire::EntryKind::Commit,
            epoch: 0,
            payload: added.commit,
        };
        (amina, space, bruno, joined, entry)
    }

    /// Rights that change under a person's feet lose nothing: Bruno's
    /// sentence typed before his removal is never sent to be refused, is
    /// said at once, stays listed (also after a restart) with why, and
    /// goes only when he discards it; a Reader cannot type at all.
    #[test]
    fn edits_that_can_no_longer_be_sent_are_kept_listed_and_discarded_only_on_request() {
        let (amina, mut space, bruno, joined, first) = amina_adds_bruno();
        let id = space.id();
        let stream = StreamId::random();
        let removal = space
            .remove_user(
                &amina.mls,
                &amina.device,
                bruno.device.user(),
                (0, first.hash()),
            )
            .unwrap();
        let mut b = bruno.engine(vec![joined], Contacts::default());
        b.handle_link(0, Link::Up);
        b.handle_frame(
            0,
            ServerFrame::Entry {
                space: id,
                entry: first.clone(),
            },
        );
        b.edit(id, stream, |r| {
            crate::document::filing::init(r.doc(), "Brouillon de Bruno")
        })
        .unwrap()
        .unwrap();
        while b.poll_event().is_some() {}
        let second = LogEntry {
            seq: 1,
            prev: first.hash(),
            kind: crate::wire::EntryKind::Commit,
            epoch: 1,
            payload: removal.commit,
        };
        b.handle_frame(
            10,
            ServerFrame::Entry {
                space: id,
                entry: second,
            },
        );
        let said: Vec<Event> = std::iter::from_fn(|| b.poll_event()).collect();
        assert!(
            said.iter().any(|e| matches!(e, Event::Warning { code: Code::ReadOnly, message, .. } if message.contains("kept"))),
            "{said:?}"
        );
        while b.poll_transmit().is_some() {}
        b.handle_timeout(60_000);
        let sent: Vec<ClientFrame> = std::iter::from_fn(|| b.poll_transmit()).collect();
        assert!(
            !sent.iter().any(|f| matches!(f, ClientFrame::Append { .. })),
            "nothing is sent to be refused: {sent:?}"
        );
        let listed = b.unsent();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].stream, stream);
        assert!(
            listed[0]
                .blocked
                .as_deref()
                .unwrap_or_default()
                .contains("removed")
        );
        assert_eq!(b.unsent_documents(), 1);
        let refused = b.edit(id, stream, |_| Ok::<(), ()>(()));
        assert!(
            matches!(refused, Err(ref f) if f.code == Code::ReadOnly),
            "{refused:?}"
        );

        // After a restart: still there, still not sent.
        let record = b.persist().unwrap();
        let mut b = Engine::new(
            record.restore().unwrap(),
            Some("token".into()),
            Config::default(),
        );
        b.handle_link(0, Link::Up);
        b.handle_timeout(60_000);
        assert!(
            !std::iter::from_fn(|| b.poll_transmit())
                .any(|f| matches!(f, ClientFrame::Append { .. }))
        );
        assert_eq!(b.unsent().len(), 1);
        let title = |e: &mut Engine| {
            let view = e.view_mut(id).unwrap();
            let r = view.existing_replica(stream).unwrap();
            crate::document::filing::title(r.doc()).ok()
        };
        assert_eq!(title(&mut b).as_deref(), Some("Brouillon de Bruno"));
        // Discarded on request only: nothing waits, and the text is gone.
        assert_eq!(b.discard_unsent(id, stream).unwrap(), 1);
        assert!(b.unsent().is_empty());
        assert_eq!(b.unsent_documents(), 0);
        assert_ne!(title(&mut b).as_deref(), Some("Brouillon de Bruno"));
    }

    /// A Reader's engine refuses to write instead of queuing edits that
    /// every other member would refuse.
    #[test]
    fn a_reader_cannot_write() {
        let (amina, mut space, bruno, mut joined, first) = amina_adds_bruno();
        let id = space.id();
        let mut policy = space.policy().unwrap();
        policy.members.get_mut(bruno.device.user()).unwrap().role = Role::Reader;
        let demoted = space
            .change_policy(&amina.mls, &amina.device, policy, (0, first.hash()))
            .unwrap();
        joined
            .process(&bruno.mls, &demoted.commit, Content::Commit)
            .unwrap();
        let mut b = bruno.engine(vec![joined], Contacts::default());
        let refused = b.edit(id, StreamId::random(), |_| Ok::<(), ()>(()));
        assert!(
            matches!(refused, Err(ref f) if f.code == Code::ReadOnly && f.message.contains("Reader")),
            "{refused:?}"
        );
        assert!(b.unsent().is_empty());
    }

    /// A commit its group refuses is reported to the server (and again
    /// while its epoch is not reopened); the reopening entry puts the
    /// member back in the epoch with nothing lost, while a device whose
    /// group went through the refused commit (its committer, or a device
    /// it added) learns that it can no longer follow the space.
    #[test]
    fn a_refused_commit_is_reported_and_its_reopening_strands_only_who_accepted_it() {
        let (amina, space, bruno, mut joined, first) = amina_adds_bruno();
        let (id, amina_device) = (space.id(), amina.device.id());
        // Bruno, a contributor, removes Amina: his own checks skipped.
        joined.dangerous_skip_local_role_checks();
        let bad = joined
            .remove_devices(
                &bruno.mls,
                &bruno.device,
                &[amina_device],
                (0, first.hash()),
            )
            .unwrap();
        joined.commit_accepted(&bruno.mls).unwrap();
        let second = LogEntry {
            seq: 1,
            prev: first.hash(),
            kind: crate::wire::EntryKind::Commit,
            epoch: 1,
            payload: bad.commit,
        };
        let reopen = LogEntry {
            seq: 2,
            prev: second.hash(),
            kind: crate::wire::EntryKind::Reopen,
            epoch: 1,
            payload: crate::wire::Reopen {
                commit: 1,
                committer: bruno.device.id(),
            }
            .encode(),
        };
        let mut a = amina.engine(vec![space], Contacts::default());
        a.handle_link(0, Link::Up);
        while a.poll_transmit().is_some() {}
        for entry in [first.clone(), second.clone()] {
            a.handle_frame(0, ServerFrame::Entry { space: id, entry });
        }
        let reports = |e: &mut Engine| {
            std::iter::from_fn(|| e.poll_transmit())
                .filter(
                    |f| matches!(f, ClientFrame::Report { space, commit: 1, .. } if *space == id),
                )
                .count()
        };
        assert_eq!(reports(&mut a), 1, "the refused commit is reported");
        assert_eq!(a.view(id).unwrap().space().epoch(), 1);
        a.handle_timeout(REPORT_RETRY_MS);
        assert_eq!(reports(&mut a), 1, "and reported again while not reopened");
        a.handle_frame(
            REPORT_RETRY_MS,
            ServerFrame::Entry {
                space: id,
                entry: reopen.clone(),
            },
        );
        let view = a.view(id).unwrap();
        assert!(view.broken().is_none() && view.refused().is_none());
        a.handle_timeout(3 * REPORT_RETRY_MS);
        assert_eq!(reports(&mut a), 0, "nothing to report once reopened");
        // The epoch is open again: Amina's next commit is valid.
        let epoch = a.view(id).unwrap().space().epoch();
        assert_eq!(epoch, 1);

        // Bruno's group went through his own commit: he is stranded.
        let mut b = bruno.engine(vec![joined], Contacts::default());
        for entry in [first, second, reopen] {
            b.handle_frame(0, ServerFrame::Entry { space: id, entry });
        }
        let broken = b.view(id).unwrap().broken().unwrap_or_default().to_owned();
        assert!(broken.contains("had accepted"), "{broken}");
    }

    /// A device id names one leaf: a commit that would put a second leaf
    /// under an id already in the group (a user certifying another key
    /// under it) is refused by every member, and a Welcome into a group
    /// holding one is refused by the joiner.
    #[test]
    fn no_two_leaves_share_a_device_id() {
        let (amina, mut space, bruno, mut joined, first) = amina_adds_bruno();
        let twin_mls = MlsProvider::new();
        let twin = {
            let key = ed25519_dalek::SigningKey::from_bytes(&crate::random::bytes());
            let certificate = bruno
                .identity
                .certify(bruno.device.id(), &key.verifying_key());
            Device::certified(key, certificate).unwrap()
        };
        let member = NewMember {
            key_packages: twin.key_packages(&twin_mls, 1).unwrap(),
            ..bruno.invitation()
        };
        let log = (1, first.hash());
        let refused = space.add_members(
            &amina.mls,
            &amina.device,
            std::slice::from_ref(&member),
            log,
        );
        assert!(
            matches!(refused, Err(SpaceError::PolicyViolation(_))),
            "{refused:?}"
        );
        space.dangerous_skip_local_role_checks();
        let pending = space
            .add_members(&amina.mls, &amina.device, &[member], log)
            .unwrap();
        let before = joined.epoch();
        let processed = joined.process(&bruno.mls, &pending.commit, Content::Commit);
        assert!(
            matches!(processed, Err(SpaceError::PolicyViolation(ref m)) if m.contains("twice")),
            "{processed:?}"
        );
        assert_eq!(joined.epoch(), before);
        let welcome = pending.welcome.expect("a Welcome");
        let joining = Space::join(&twin_mls, &twin, &bruno.identity.public(), &welcome);
        assert!(
            matches!(joining, Err(SpaceError::PolicyViolation(ref m)) if m.contains("twice")),
            "{joining:?}"
        );
    }

    /// A commit delivered as a presence message (the live, unstored path),
    /// or in a log entry labelled as a proposal, is refused before MLS sees
    /// it: it merges nothing and shows nothing. Only a commit entry carries
    /// a commit, where every member reads the same one at the same place.
    #[test]
    fn a_commit_delivered_as_presence_or_as_a_proposal_merges_nothing() {
        let (amina, mut space, bruno, joined, first) = amina_adds_bruno();
        let id = space.id();
        let epoch = joined.epoch();
        let mut policy = space.policy().unwrap();
        policy.members.get_mut(bruno.device.user()).unwrap().role = Role::Reader;
        let log = (1, first.hash());
        let demoted = space
            .change_policy(&amina.mls, &amina.device, policy, log)
            .unwrap();
        let mut e = bruno.engine(vec![joined], Contacts::default());
        e.handle_frame(
            0,
            ServerFrame::Application {
                space: id,
                message: demoted.commit.clone(),
            },
        );
        let unchanged = |e: &Engine, how: &str| {
            let view = e.view(id).unwrap();
            assert_eq!(view.space().epoch(), epoch, "the commit was merged {how}");
            let role = view.space().policy().unwrap().role(e.device().user());
            assert_eq!(role, Some(Role::Contributor), "{how}");
        };
        unchanged(&e, "as presence");
        assert_eq!(e.poll_event(), None);
        // The log: Bruno's addition, then the commit labelled a proposal.
        let second = LogEntry {
            seq: 1,
            prev: first.hash(),
            kind: crate::wire::EntryKind::Proposal,
            epoch,
            payload: demoted.commit,
        };
        e.ingest(id, vec![first, second]);
        assert_eq!(e.view(id).unwrap().read_to(), 2, "the log was not read");
        assert_eq!(e.view(id).unwrap().broken(), None);
        unchanged(&e, "as a proposal");
    }

    /// A space manager's device adds whoever asked to join an open space
    /// as a contributor, with no one's click; while the space itself does
    /// not say open, the server's word that someone asked reads nothing.
    #[test]
    fn a_managers_device_adds_who_asked_only_when_the_space_itself_is_open() {
        let (mut e, space) = following("amina", true);
        let space = space.unwrap();
        live(&mut e, space);
        let requests = |e: &mut Engine| {
            let mut all = Vec::new();
            while let Some(r) = e.poll_request() {
                all.push(r);
            }
            all
        };
        requests(&mut e);
        e.handle_frame(1, ServerFrame::Asked { space });
        assert_eq!(requests(&mut e), Vec::new(), "read while closed");

        let list = |e: &mut Engine| {
            e.start(
                2,
                Intent::List {
                    space,
                    listing: Some(api::Listing {
                        name: "Réseau des avocats".into(),
                        description: String::new(),
                        open: true,
                    }),
                },
            )
        };
        // A listing the server refuses leaves the space closed inside.
        list(&mut e);
        let sent = requests(&mut e);
        let [(refused, _)] = &sent[..] else {
            panic!("{sent:?}")
        };
        e.handle_response(
            2,
            *refused,
            Ok(HttpResponse {
                status: 400,
                body: br#"{"error":"bad_request","message":"no"}"#.to_vec(),
            }),
        );
        assert!(
            !e.profile(space).unwrap().open,
            "opened by a refused listing"
        );

        list(&mut e);
        let sent = requests(&mut e);
        let [(put, listing)] = &sent[..] else {
            panic!("{sent:?}")
        };
        assert_eq!(listing.path, format!("/v1/directory/{}", space.to_hex()));
        let body: api::Listing = serde_json::from_slice(listing.body.as_ref().unwrap()).unwrap();
        assert!(body.open);
        e.handle_response(3, *put, ok("{}"));
        assert!(e.profile(space).unwrap().open, "written inside the space");

        e.handle_frame(4, ServerFrame::Asked { space });
        let sent = requests(&mut e);
        let [(read, waiting)] = &sent[..] else {
            panic!("{sent:?}")
        };
        assert_eq!(
            (waiting.method, waiting.path.as_str()),
            (
                Method::Get,
                &*format!("/v1/directory/{}/requests", space.to_hex())
            )
        );
        // Asked again while reading: one reading at a time, and one more
        // once it is done, for whoever asked meanwhile.
        e.handle_frame(5, ServerFrame::Asked { space });
        assert_eq!(requests(&mut e), Vec::new());
        e.handle_response(6, *read, ok(r#"{"requests":[]}"#));
        let sent = requests(&mut e);
        let [(read, waiting)] = &sent[..] else {
            panic!("not read again: {sent:?}")
        };
        assert_eq!(waiting.method, Method::Get);
        e.handle_response(
            6,
            *read,
            ok(r#"{"requests":[{"user":"bruno","message":"Bonjour","at":1}]}"#),
        );
        // The invitation of bruno starts: his keys are looked up.
        let sent = requests(&mut e);
        let paths: Vec<&str> = sent.iter().map(|(_, r)| r.path.as_str()).collect();
        assert_eq!(paths, ["/v1/users/bruno"]);
    }

    /// Edits go out at a fixed interval after the first of them, however
    /// the typing goes on or pauses: when envelopes leave says nothing of
    /// the rhythm of typing (PROTOCOL §9.3).
    #[test]
    fn edits_leave_at_a_fixed_interval_not_after_a_pause_in_typing() {
        let (mut e, space) = following("amina", true);
        let space = space.unwrap();
        live(&mut e, space);
        let stream = StreamId::random();
        let sent = |e: &mut Engine| {
            let mut n = 0;
            while let Some(f) = e.poll_transmit() {
                if let ClientFrame::Append {
                    item: AppendItem::Envelope(_),
                    ..
                } = f
                {
                    n += 1;
                }
            }
            n
        };
        // Typing every 100 ms, with a pause of 700 ms in the middle.
        for t in (100..=900).step_by(100).chain((1_600..=1_900).step_by(100)) {
            e.handle_timeout(t);
            e.edit(space, stream, |r| {
                if t == 100 {
                    crate::document::filing::init(r.doc(), "Requête")?;
                }
                crate::document::filing::splice(r.doc(), 0, 0, "x")
            })
            .unwrap()
            .unwrap();
            assert_eq!(sent(&mut e), 0, "an envelope left at {t} ms");
        }
        e.handle_timeout(2_099);
        assert_eq!(sent(&mut e), 0, "an envelope left before the interval");
        e.handle_timeout(2_100);
        assert_eq!(sent(&mut e), 1, "the interval after the first edit");
    }

    /// An envelope names the log head its writer had read. Between commits
    /// a server could show members different logs; a member refuses, and
    /// reports, an envelope whose writer names a head its own log does not
    /// hold before the envelope, and takes one that names an entry it read.
    #[test]
    fn an_envelope_written_on_a_log_this_device_never_saw_is_refused() {
        use crate::document::{Replica, filing};
        let (amina, space, bruno, joined, first) = amina_adds_bruno();
        let id = space.id();
        let write = |text: &str, head: [u8; 32]| {
            let mut replica = Replica::new(StreamId::random(), &bruno.device);
            filing::init(replica.doc(), text).unwrap();
            let stream = replica.stream();
            let envelope = replica
                .flush(joined.keyring(), &bruno.device, head)
                .unwrap()
                .unwrap();
            (stream, envelope)
        };
        // The entry Bruno was shown at position 1, and Amina never was.
        let elsewhere = LogEntry {
            seq: 1,
            prev: first.hash(),
            kind: crate::wire::EntryKind::Proposal,
            epoch: 1,
            payload: b"shown to bruno only".to_vec(),
        };
        let (forked, on_fork) = write("Sur un autre journal", elsewhere.hash());
        let (genuine, on_log) = write("Sur le journal commun", first.hash());
        let mut e = amina.engine(vec![space], Contacts::default());
        let entry = |seq: u64, prev: [u8; 32], payload: Vec<u8>| LogEntry {
            seq,
            prev,
            kind: crate::wire::EntryKind::Envelope,
            epoch: 1,
            payload,
        };
        let second = entry(1, first.hash(), on_fork);
        let third = entry(2, second.hash(), on_log);
        e.ingest(id, vec![first, second, third]);
        let view = e.view_mut(id).unwrap();
        assert!(
            view.existing_replica(forked)
                .is_none_or(|r| filing::title(r.doc()).is_err())
        );
        let title = filing::title(view.existing_replica(genuine).expect("read").doc()).unwrap();
        assert_eq!(title, "Sur le journal commun");
        let warned = std::iter::from_fn(|| e.poll_event()).any(|ev| {
            matches!(ev, Event::Warning { message, .. } if message.contains("entry 1") && message.contains("forked"))
        });
        assert!(warned, "the refused envelope was not reported");
    }

    /// The author shown for a comment or a named version is the user whose
    /// device signed it, not the name written into it: a contributor who
    /// writes "amina" as the author of his comment and of his version is
    /// shown as himself at every member's.
    #[test]
    fn a_comment_or_version_claiming_another_author_shows_its_signer() {
        use crate::document::{Replica, filing};
        let (amina, space, bruno, joined, first) = amina_adds_bruno();
        let id = space.id();

        // Bruno writes a filing with a comment and a version, both "by amina".
        let stream = StreamId::random();
        let mut forged = Replica::new(stream, &bruno.device);
        filing::init(forged.doc(), "Requête").unwrap();
        filing::splice(forged.doc(), 0, 0, "Exposé des faits.").unwrap();
        filing::comment(forged.doc(), "t1", 0, 6, "amina", "Approuvé", 0).unwrap();
        filing::name_version(forged.doc(), "Version signée", "amina", 0).unwrap();
        let envelope = forged
            .flush(joined.keyring(), &bruno.device, first.hash())
            .unwrap()
            .unwrap();

        let mut e = amina.engine(vec![space], Contacts::default());
        let second = LogEntry {
            seq: 1,
            prev: first.hash(),
            kind: crate::wire::EntryKind::Envelope,
            epoch: 1,
            payload: envelope,
        };
        e.ingest(id, vec![first, second]);
        let view = e.view_mut(id).unwrap();
        let authors = view.authors(stream);
        let doc = view.existing_replica(stream).expect("the filing").doc();
        let threads = filing::threads(doc, &authors).unwrap();
        let message = &threads[0].messages[0];
        assert_eq!(message.text, "Approuvé");
        assert_eq!(
            (message.author.name.as_str(), message.author.verified),
            ("bruno", true),
            "a comment shown under the name it claims"
        );
        let versions = filing::versions(doc, &authors).unwrap();
        assert_eq!(
            (
                versions[0].author.name.as_str(),
                versions[0].author.verified
            ),
            ("bruno", true),
            "a version shown under the name it claims"
        );
        // Without the log's bindings the claim is all there is, and it says so.
        let unbound = filing::threads(doc, &Default::default()).unwrap();
        assert_eq!(unbound[0].messages[0].author.name, "amina");
        assert!(!unbound[0].messages[0].author.verified);
    }

    /// A reply that mentions Amina shows in her activity (one new post,
    /// one mention, by Bruno) until she looks, across a restart both
    /// ways; she cannot edit his post nor mention a non-member, and a
    /// refused post writes nothing.
    #[test]
    fn a_mention_is_activity_until_seen_and_only_members_are_mentioned() {
        use crate::document::Replica;
        let (amina, space, bruno, joined, first) = amina_adds_bruno();
        let id = space.id();
        let stream = StreamId::random();
        let mut d = Replica::new(stream, &bruno.device);
        let opening = discussion::NewPost {
            id: "p1",
            author: "bruno",
            text: "Audience avancée au 12 : @amina, tu plaides ?",
            reply_to: None,
            attachments: &[],
            at_ms: 1,
        };
        discussion::init(d.doc(), "Audience", &opening).unwrap();
        let mut lib = Replica::new(library::stream(id), &bruno.device);
        library::init(lib.doc()).unwrap();
        library::add_discussion(lib.doc(), stream, "Audience").unwrap();
        let mut entries = vec![first.clone()];
        for r in [&mut lib, &mut d] {
            let payload = r
                .flush(joined.keyring(), &bruno.device, first.hash())
                .unwrap()
                .unwrap();
            let prev = entries.last().unwrap().hash();
            entries.push(LogEntry {
                seq: entries.len() as u64,
                prev,
                kind: crate::wire::EntryKind::Envelope,
                epoch: 1,
                payload,
            });
        }
        let mut e = amina.engine(vec![space], Contacts::default());
        e.ingest(id, entries);
        // A state saved before activity was kept counts what it holds as
        // seen: an upgrade does not make every document new.
        let v3 = e.persist().unwrap().encode_v3();
        let restored = DeviceRecord::decode(&v3).unwrap().restore().unwrap();
        assert!(restored.seen.is_none());
        assert!(
            Engine::new(restored, None, Config::default())
                .activity()
                .is_empty()
        );
        let items = e.activity();
        let item = items
            .iter()
            .find(|i| i.kind == activity::Kind::Discussion)
            .expect("the discussion is activity");
        assert_eq!(
            (
                item.title.as_str(),
                item.changes.posts,
                item.changes.mentions
            ),
            ("Audience", 1, 1)
        );
        assert_eq!(item.changes.by, vec!["bruno".to_owned()]);
        let library = items.iter().find(|i| i.kind == activity::Kind::Library);
        assert_eq!(library.unwrap().changes.added, vec!["Audience".to_owned()]);

        // Her reply may mention Bruno, not someone outside the space.
        let refused = e.post(id, stream, Some("p1"), "Oui, avec @chidi", &[], 2);
        assert!(
            matches!(refused, Err(ref f) if f.code == Code::Mention && f.message.contains("@chidi")),
            "{refused:?}"
        );
        let refused = e.new_discussion(id, "Autre", "cc @chidi", &[], 2);
        assert!(matches!(refused, Err(ref f) if f.code == Code::Mention));
        assert!(e.unsent().is_empty(), "a refused post writes nothing");
        let edit = e
            .edit_post(id, stream, "p1", "Amina ne plaide pas.", 3)
            .unwrap();
        assert!(matches!(edit, Err(DocumentError::NotAuthor(_))), "{edit:?}");
        let reply = e
            .post(id, stream, Some("p1"), "Oui, @bruno.", &[], 4)
            .unwrap()
            .unwrap();
        let read = e.discussion(id, stream).unwrap();
        assert_eq!(read.posts[1].id, reply);
        assert_eq!(read.posts[1].reply_to.as_deref(), Some("p1"));
        assert!(read.posts[1].by.verified && read.posts[1].by.name == "amina");

        // Unseen survives a restart; once seen, nothing is left, also after one.
        let restart = |e: &mut Engine| {
            let bytes = e.persist().unwrap().encode();
            let restored = DeviceRecord::decode(&bytes).unwrap().restore().unwrap();
            Engine::new(restored, None, Config::default())
        };
        let mut e = restart(&mut e);
        assert_eq!(e.activity().len(), 2);
        e.mark_seen(id, stream).unwrap();
        e.mark_seen(id, library::stream(id)).unwrap();
        assert!(e.changed(), "a new mark is state to save");
        assert!(e.activity().is_empty());
        let mut e = restart(&mut e);
        assert!(e.activity().is_empty(), "the marks were saved");
    }

    /// A Welcome into a group that pins, for a user this device verified,
    /// another identity key (a group the server built around a key it
    /// holds) is refused: the device does not join and says why. The same
    /// group from the genuine user is joined.
    #[test]
    fn a_welcome_pinning_another_key_for_a_known_user_is_refused() {
        let bruno = UserIdentity::generate(UserId::new("bruno").unwrap());
        let bruno_device = bruno.new_device();
        let bruno_mls = MlsProvider::new();
        let genuine = UserIdentity::generate(UserId::new("amina").unwrap());
        let posing = UserIdentity::generate(UserId::new("amina").unwrap());
        let welcome_from = |amina: &UserIdentity| {
            let device = amina.new_device();
            let mls = MlsProvider::new();
            let key = device.certificate().identity_key;
            let mut space = Space::create(&mls, &device, key, HistoryPolicy::Full).unwrap();
            let member = NewMember {
                user: bruno_device.user().clone(),
                identity_key: bruno.public(),
                role: Role::Contributor,
                key_packages: bruno_device.key_packages(&bruno_mls, 1).unwrap(),
                revoked: Vec::new(),
            };
            let log = (0, crate::wire::genesis(space.id()));
            let added = space.add_members(&mls, &device, &[member], log).unwrap();
            (space.id(), added.welcome.unwrap())
        };
        let (forged_space, forged) = welcome_from(&posing);
        let (real_space, real) = welcome_from(&genuine);

        let mut contacts = Contacts::default();
        assert!(contacts.pin(genuine.user(), genuine.public()));
        let restored = Restored {
            identity: Some(bruno),
            device: bruno_device,
            provider: bruno_mls,
            spaces: Default::default(),
            contacts,
            seen: Some(Vec::new()),
        };
        let mut e = Engine::new(restored, Some("token".into()), Config::default());
        e.start(0, Intent::Refresh);
        let (welcomes, _) = e.poll_request().unwrap();
        let body = serde_json::json!({ "welcomes": [
            { "id": 1, "space": forged_space.to_hex(), "welcome": hex::encode(forged) },
            { "id": 2, "space": real_space.to_hex(), "welcome": hex::encode(real) },
        ]});
        e.handle_response(1, welcomes, ok(&body.to_string()));
        assert_eq!(
            e.spaces(),
            vec![real_space],
            "joined the group of a posing key"
        );
        let mut refused = false;
        while let Some(event) = e.poll_event() {
            if let Event::Warning {
                code: Code::InvitationRefused,
                space: Some(s),
                message,
            } = event
            {
                refused |= s == forged_space && message.contains("amina");
            }
        }
        assert!(refused, "the refusal was not reported");
    }

    /// A server refusing to serve a space (`Forbidden`) does not make a
    /// device that the group still counts as a member leave it: only the
    /// group's own removal does. The device keeps the space, unremoved.
    #[test]
    fn a_bare_forbidden_does_not_mark_a_member_removed() {
        let (mut e, space) = following("amina", true);
        let space = space.unwrap();
        e.handle_link(0, Link::Up);
        let Some(ClientFrame::Subscribe { request, .. }) = e.poll_transmit() else {
            panic!("no subscription");
        };
        e.handle_frame(
            1,
            ServerFrame::Refused {
                request,
                code: RefusalCode::Forbidden,
                message: "not a member".into(),
            },
        );
        assert!(
            !e.view(space).unwrap().is_removed(),
            "marked removed on the server's word"
        );
        assert!(!e.must_persist());
        while let Some(event) = e.poll_event() {
            assert!(!matches!(event, Event::Removed { .. }), "{event:?}");
        }
    }

    /// A commit that brings a user the device verified with another key
    /// than the group now pins for them is reported, once; a user new to the
    /// device is pinned with the group's key.
    #[test]
    fn a_commit_pinning_another_key_for_a_known_user_is_reported() {
        let (amina, mut space, bruno, joined, entry0) = amina_adds_bruno();
        let id = space.id();
        let chloe = UserIdentity::generate(UserId::new("chloe").unwrap());
        let posing = person("chloe");
        let second = space
            .add_members(
                &amina.mls,
                &amina.device,
                &[posing.invitation()],
                (0, entry0.hash()),
            )
            .unwrap();
        let entry1 = LogEntry {
            seq: 1,
            prev: entry0.hash(),
            kind: crate::wire::EntryKind::Commit,
            epoch: 1,
            payload: second.commit,
        };

        let mut contacts = Contacts::default();
        contacts.pin(chloe.user(), chloe.public());
        let mut e = bruno.engine(vec![joined], contacts);
        e.ingest(id, vec![entry0, entry1]);
        assert_eq!(
            e.view(id).unwrap().space().epoch(),
            2,
            "the commit was not read"
        );
        let warned: Vec<String> = std::iter::from_fn(|| e.poll_event())
            .filter_map(|ev| match ev {
                Event::Warning {
                    code: Code::Identity,
                    message,
                    ..
                } => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("chloe"));
        assert_eq!(
            e.contacts().key_of(chloe.user()),
            Some(chloe.public()),
            "re-pinned"
        );
        let amina_key = amina.identity.public();
        assert_eq!(e.contacts().key_of(amina.identity.user()), Some(amina_key));
    }

    /// Case records (PROTOCOL §9.7): a date in the future, an unknown
    /// country or a type the register does not know is refused with
    /// nothing written; only a space manager adds a type or signs an
    /// aggregate; the signed aggregate verifies under the device's
    /// certificate and matches the register at its heads, and a count
    /// altered afterwards neither verifies nor matches.
    #[test]
    fn records_are_checked_and_only_managers_publish_their_counts() {
        use monitoring::{Dim, Fields, RecordError};
        let (amina, space, bruno, joined, _first) = amina_adds_bruno();
        let id = space.id();
        let certificate = amina.device.certificate().clone();
        let mut e = amina.engine(vec![space], Contacts::default());
        let now = 1_765_000_000_000; // 2025-12-06
        let record = |country: &str, date: &str, kind: &str| Fields {
            date: date.into(),
            country: country.into(),
            region: String::new(),
            types: vec![kind.into()],
            profession: "lawyer".into(),
            gender: "woman".into(),
            status: "open".into(),
            outcome: String::new(),
            sources: Vec::new(),
            notes: "Me Selma Haddad, menacée devant le tribunal".into(),
        };
        let refused = |r: Result<Result<String, DocumentError>, Failure>| match r {
            Ok(Err(DocumentError::Record(e))) => e.code(),
            other => panic!("not refused as a record: {other:?}"),
        };
        assert_eq!(
            refused(e.new_record(id, &record("FR", "2025-12-08", "threat"), now)),
            "future_date"
        );
        assert_eq!(
            refused(e.new_record(id, &record("XX", "2025-01-01", "threat"), now)),
            "unknown_country"
        );
        assert_eq!(
            refused(e.new_record(id, &record("fr", "2025-01-01", "threat"), now)),
            "unknown_country"
        );
        assert_eq!(
            refused(e.new_record(id, &record("FR", "2025-02-30", "threat"), now)),
            "bad_date"
        );
        assert_eq!(
            refused(e.new_record(id, &record("FR", "2025-01-01", "bar_strike"), now)),
            "unknown_value"
        );
        let mut long = record("FR", "2025-01-01", "threat");
        long.notes = "x".repeat(monitoring::MAX_NOTES_CHARS + 1);
        assert_eq!(refused(e.new_record(id, &long, now)), "too_long");
        long.notes.clear();
        long.sources = vec!["00".repeat(16)];
        assert_eq!(refused(e.new_record(id, &long, now)), "no_source");
        assert!(
            e.records(id).unwrap().records.is_empty(),
            "a refused record wrote something"
        );

        e.add_violation_type(id, "bar_strike", "Grève du barreau réprimée")
            .unwrap()
            .unwrap();
        for (country, date, kind) in [
            ("FR", "2024-03-01", "threat"),
            ("FR", "2024-05", "bar_strike"),
            ("FR", "2025", "threat"),
            ("TN", "2025-11-30", "arrest"),
            ("TN", "2025-12-06", "arrest"),
        ] {
            e.new_record(id, &record(country, date, kind), now)
                .unwrap()
                .unwrap();
        }
        let register = e.records(id).unwrap();
        assert_eq!(register.records.len(), 5);
        assert_eq!(register.records[0].by.name, "amina");
        assert!(register.records[0].by.verified);
        let counts = monitoring::counts(&register.records);
        assert_eq!(counts[&Dim::Country]["FR"], 3);
        assert_eq!(counts[&Dim::Year]["2025"], 3);
        let third = register
            .records
            .iter()
            .find(|r| r.fields.date == "2025")
            .unwrap();
        let mut edited = third.fields.clone();
        edited.status = "closed".into();
        edited.outcome = "Plainte classée".into();
        e.edit_record(id, &third.id, &third.fields, &edited, now)
            .unwrap()
            .unwrap();
        let again = e.records(id).unwrap();
        let third_again = again.records.iter().find(|r| r.id == third.id).unwrap();
        assert_eq!(
            (
                third_again.fields.status.as_str(),
                third_again.fields.notes.as_str()
            ),
            ("closed", "Me Selma Haddad, menacée devant le tribunal")
        );
        assert!(third_again.edited_ms.is_some());
        // Removed, a record is no longer read nor counted; removing it
        // again says there is no such record.
        let removed = register.records.iter().find(|r| r.id != third.id).unwrap();
        let first = removed.id.clone();
        e.remove_record(id, &first).unwrap().unwrap();
        assert!(!e.records(id).unwrap().records.iter().any(|r| r.id == first));
        assert!(matches!(
            e.remove_record(id, &first).unwrap(),
            Err(DocumentError::Record(RecordError::NoRecord(_)))
        ));
        e.new_record(id, &removed.fields, now).unwrap().unwrap();
        // A form opened before that edit, saved with only its notes
        // changed, leaves the status as the first edit set it.
        let mut stale = third.fields.clone();
        stale.notes = "Menaces répétées".into();
        e.edit_record(id, &third.id, &third.fields, &stale, now)
            .unwrap()
            .unwrap();
        let again = e.records(id).unwrap();
        let third_again = again.records.iter().find(|r| r.id == third.id).unwrap();
        assert_eq!(
            (
                third_again.fields.status.as_str(),
                third_again.fields.notes.as_str()
            ),
            ("closed", "Menaces répétées"),
            "a stale form wrote back a field it did not change"
        );

        let dims = [Dim::Country, Dim::Year];
        let a = e.aggregate(id, "Carte", &dims, 2).unwrap().unwrap();
        let cells: Vec<(Vec<&str>, u32)> = a
            .cells
            .iter()
            .map(|c| (c.values.iter().map(String::as_str).collect(), c.count))
            .collect();
        assert_eq!(
            cells,
            vec![(vec!["FR", "2024"], 2), (vec!["TN", "2025"], 2)]
        );
        assert_eq!(a.suppressed, 1, "FR 2025 has one record");
        match e.aggregate(id, "Carte", &dims, 10).unwrap() {
            Err(DocumentError::Record(RecordError::AllSuppressed(10))) => {}
            other => panic!("k = 10 publishes nothing: {other:?}"),
        }

        let public = SpaceId::random();
        let published = e
            .publish_aggregate(id, public, "carte", "Carte", &dims, 2)
            .unwrap()
            .unwrap();
        assert_eq!(published.aggregate, a);
        published.verify(public, "carte", &certificate).unwrap();
        assert!(published.verify(public, "autre", &certificate).is_err());
        assert_eq!(
            e.check_aggregate(&published).unwrap(),
            monitoring::Check::Matches
        );
        let mut altered = published.clone();
        altered.aggregate.cells[0].count = 7;
        assert!(altered.verify(public, "carte", &certificate).is_err());
        assert_eq!(
            e.check_aggregate(&altered).unwrap(),
            monitoring::Check::Differs
        );

        // Bruno is a member, not a manager.
        let mut b = bruno.engine(vec![joined], Contacts::default());
        let code = |r: Result<Result<(), DocumentError>, Failure>| r.err().map(|f| f.code);
        assert_eq!(
            code(b.add_violation_type(id, "other_kind", "Autre")),
            Some(Code::NotManager)
        );
        assert_eq!(
            b.publish_aggregate(id, public, "carte", "Carte", &dims, 2)
                .err()
                .map(|f| f.code),
            Some(Code::NotManager)
        );
    }
}
