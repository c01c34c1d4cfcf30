//! The values crossing the wasm boundary. The TypeScript declarations the
//! web app is checked against (`tsc --noEmit`) are generated from these
//! types (tsify), field for field; each type says what it carries, and a
//! field's name is its JSON name.
#![allow(missing_docs)]

use amicus_core::StreamId;
use amicus_core::engine::{Code, Event, Failure, Output};
use serde::Serialize;
use tsify::Tsify;

/// A stable code for an error or a warning: the interface translates it
/// and matches on it, never on a message (the engine's [`Code`], and the
/// browser's own).
#[derive(Clone, Copy, Debug, Serialize, Tsify)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The server announces log entries it does not deliver.
    Withheld,
    /// The server forked, rewrote, rolled back or replayed the log.
    Forked,
    /// The server refused a frame.
    Refused,
    /// The space kept changing under a commit or a flush.
    Contended,
    /// This device is not in the space, or no longer.
    NotMember,
    /// The user has no device that could be added.
    NoKeyPackages,
    /// An identity key changed or a certificate does not verify.
    Identity,
    /// An MLS operation failed.
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
    /// This device was revoked by its user.
    Revoked,
    /// This device may not write in the space (removed, Reader, broken log).
    ReadOnly,
    /// An argument is not what the call takes (an id, a role, a range).
    BadInput,
    /// The stored state does not open with this key (a wrong passphrase),
    /// or is corrupt.
    Sealed,
    /// A resumed upload's file is not the one chosen before.
    SourceChanged,
    /// A pairing or recovery code, offer or answer does not check.
    BadCode,
    /// A title or name is empty, too long, or not one line.
    BadName,
    /// A comment or a description is empty or too long.
    BadText,
    /// Only the space's managers may do this.
    NotManager,
    /// A text mentions someone who is not a member of the space.
    Mention,
    /// Only a post's author may edit it.
    NotAuthor,
    /// The library refuses: no such folder.
    NoFolder,
    /// The library refuses: no such entry.
    NoEntry,
    /// The library refuses: a folder into itself or one of its folders.
    FolderCycle,
    /// The library refuses: the folder still holds entries.
    FolderNotEmpty,
    /// The library refuses: discussions are not kept in folders.
    DiscussionInFolder,
    /// The library refuses: a new version of what is not a file.
    NotAFile,
    /// The library refuses: this version is already the current one.
    AlreadyCurrent,
    /// A file entry's manifest does not decode.
    BadManifest,
    /// An attachment that is not in the library.
    NoAttachment,
    /// An entry to put back is listed already.
    AlreadyListed,
    /// A drop-box submission that cannot be opened (not sealed to this
    /// space's key, damaged, or malformed): nothing of it is shown.
    Intake,
    /// The operation was stopped.
    Stopped,
    /// A pairing code was shown for its whole lifetime and no new device
    /// used it.
    PairingExpired,
    /// No device of the user shows this pairing code.
    NoPairing,
    /// A case record, a violation type or an aggregate is refused; the
    /// error's `reason` says why (`future_date`, `unknown_country`...).
    Record,
}

impl From<&amicus_core::library::LibraryError> for ErrorCode {
    fn from(e: &amicus_core::library::LibraryError) -> Self {
        use amicus_core::library::LibraryError as L;
        match e {
            L::NoFolder(_) => Self::NoFolder,
            L::NoEntry(_) => Self::NoEntry,
            L::Cycle => Self::FolderCycle,
            L::NotEmpty => Self::FolderNotEmpty,
            L::DiscussionInFolder => Self::DiscussionInFolder,
            L::NotAFile(_) => Self::NotAFile,
            L::AlreadyCurrent => Self::AlreadyCurrent,
            L::BadManifest(_) => Self::BadManifest,
            L::NoAttachment(_) => Self::NoAttachment,
            L::Listed(_) => Self::AlreadyListed,
        }
    }
}

/// What the engine tells the interface ([`Device::poll_event`]).
#[derive(Serialize, Tsify)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Documents of a space changed.
    Changed { space: String, streams: Vec<String> },
    /// Membership, roles or the epoch of a space changed.
    Membership { space: String },
    /// This device joined a space.
    Joined { space: String },
    /// This device was removed from a space.
    Removed { space: String },
    /// Something the user should know.
    Warning {
        code: ErrorCode,
        #[tsify(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        space: Option<String>,
        message: String,
    },
    /// Another member's presence message (its JSON text).
    Presence {
        space: String,
        user: String,
        device: String,
        payload: String,
    },
    /// An operation ended: `error` absent when it succeeded.
    Done {
        op: f64,
        /// The space an operation created.
        #[tsify(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        space: Option<String>,
        /// The space's epoch after a commit.
        #[tsify(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<f64>,
        /// The spaces a revoked device was removed from.
        #[tsify(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        removed_from: Option<Vec<String>>,
        /// A drop box opened.
        #[tsify(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        drop_box: Option<NewDropBox>,
        /// A space's drop boxes, checked.
        #[tsify(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        drop_boxes: Option<DropBoxList>,
        /// A new device of this user, paired.
        #[tsify(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        /// The spaces a new device was added to, and those where a space
        /// manager must add it.
        #[tsify(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        added: Option<AddedDevice>,
        #[tsify(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<OpError>,
    },
}

/// Why an operation failed.
#[derive(Serialize, Tsify)]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
    /// For `server`: the HTTP status and the server's own error code.
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_code: Option<String>,
}

/// An HTTP request the engine asks for ([`Device::poll_request`]): send
/// it to the page's own origin, then hand the answer to
/// [`Device::handle_response`] (or [`Device::handle_unreachable`]).
#[derive(Serialize, Tsify)]
pub struct HttpCall {
    pub id: f64,
    pub method: HttpMethod,
    /// From `/v1/`.
    pub path: String,
    /// A JSON body.
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The session token, for `Authorization: Bearer`.
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// An HTTP method.
#[derive(Serialize, Tsify)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Delete,
}

/// A space this device is in.
#[derive(Serialize, Tsify)]
pub struct SpaceSummary {
    pub id: String,
    pub epoch: f64,
    pub authenticator: String,
    /// The space code people compare (the same form as `amicus`'s).
    pub code: String,
    pub removed: bool,
    /// Why its log cannot be trusted (forked, rolled back), if it cannot.
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// Entries this device could not open.
    pub unreadable: f64,
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Why this browser may not write there (removed, Reader, broken
    /// log), if it may not: the interface offers no way to write.
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<String>,
}

/// A space's name and description, as its space managers set them.
#[derive(Serialize, Tsify)]
pub struct SpaceProfile {
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The spaces of [`Device::spaces`].
#[derive(Serialize, Tsify)]
pub struct SpaceList(pub Vec<SpaceSummary>);

/// A member device of a space.
#[derive(Serialize, Tsify)]
pub struct Member {
    pub user: String,
    pub device: String,
    pub role: String,
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_number: Option<String>,
}

/// The members of [`Device::members`].
#[derive(Serialize, Tsify)]
pub struct MemberList(pub Vec<Member>);

/// The kind of a library entry.
#[derive(Serialize, Tsify)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Folder,
    Document,
    Discussion,
    File,
}

/// An entry of a space's library.
#[derive(Serialize, Tsify)]
pub struct LibraryEntry {
    pub kind: EntryKind,
    pub id: String,
    pub name: String,
    /// The folder it is in (`""`: the top).
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    /// A file's size in bytes.
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<f64>,
    /// A file's media type, as its uploader gave it.
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// A file's current version (its own file id, for downloading).
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// A file's earlier versions, oldest first.
    pub versions: Vec<FileVersion>,
}

/// An earlier version of a file.
#[derive(Serialize, Tsify)]
pub struct FileVersion {
    /// Its own file id (what [`Device::download`] takes).
    pub file: String,
    pub name: String,
    pub size: f64,
}

/// The entries of [`Device::library`].
#[derive(Serialize, Tsify)]
pub struct LibraryList(pub Vec<LibraryEntry>);

/// A mark over `[start, end)`.
#[derive(Serialize, Tsify)]
pub struct Mark {
    pub mark: String,
    pub start: usize,
    pub end: usize,
}

impl From<amicus_core::publication::TextMark> for Mark {
    fn from(m: amicus_core::publication::TextMark) -> Self {
        Self {
            mark: m.mark,
            start: m.start as usize,
            end: m.end as usize,
        }
    }
}

/// A comment thread on the passage `[start, end)`.
#[derive(Serialize, Tsify)]
pub struct Thread {
    pub thread: String,
    pub start: usize,
    pub end: usize,
    pub resolved: bool,
    /// Who resolved it (while it is), as for [`Message::author`].
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<Message>,
    pub messages: Vec<Message>,
}

/// One message of a thread. `author` is the user whose device signed the
/// text (`verified`), or, for text that came in a snapshot, the name the
/// message claims (not `verified`).
#[derive(Serialize, Tsify)]
pub struct Message {
    pub author: String,
    pub verified: bool,
    pub text: String,
    /// When it was written, in milliseconds since 1970 UTC, as the
    /// writer's device said (absent if it gave none).
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<f64>,
}

/// One post of a discussion: `author` wrote its text (as for
/// [`Message`]), `by` created the post; they differ when someone else
/// wrote over it.
#[derive(Serialize, Tsify)]
pub struct Post {
    pub id: String,
    pub author: String,
    pub verified: bool,
    pub by: String,
    pub by_verified: bool,
    pub text: String,
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<f64>,
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_ms: Option<f64>,
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Library entry ids.
    pub attachments: Vec<String>,
    /// The user names its text mentions.
    pub mentions: Vec<String>,
}

/// A discussion as read.
#[derive(Serialize, Tsify)]
pub struct DiscussionView {
    pub title: String,
    pub posts: Vec<Post>,
}

/// What others changed in one document (or a space's library) since its
/// user last looked.
#[derive(Serialize, Tsify)]
pub struct ActivityEntry {
    pub space: String,
    pub id: String,
    /// `filing`, `discussion` or `library`.
    pub kind: String,
    pub title: String,
    /// Never looked at on this device.
    pub new: bool,
    pub by: Vec<String>,
    pub posts: usize,
    pub mentions: usize,
    /// Names of the library entries others added.
    pub added: Vec<String>,
}

/// Every space's activity.
#[derive(Serialize, Tsify)]
pub struct ActivityList(pub Vec<ActivityEntry>);

/// A filing's title and text with its marks and comments.
#[derive(Serialize, Tsify)]
pub struct FilingText {
    pub title: String,
    pub body: String,
    pub marks: Vec<Mark>,
    pub comments: Vec<Thread>,
}

/// A named version (its text only where asked for); `author` as for
/// [`Message`].
#[derive(Serialize, Tsify)]
pub struct NamedVersion {
    pub name: String,
    pub author: String,
    pub verified: bool,
    /// When it was named, as for [`Message::at_ms`].
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<f64>,
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// The versions of [`Device::versions`].
#[derive(Serialize, Tsify)]
pub struct VersionList(pub Vec<NamedVersion>);

/// A filing as read, with its named versions.
#[derive(Serialize, Tsify)]
pub struct Filing {
    pub title: String,
    pub body: String,
    pub marks: Vec<Mark>,
    pub comments: Vec<Thread>,
    pub versions: Vec<NamedVersion>,
}

/// A public copy to `PUT`, with its provenance (JSON text).
#[derive(Serialize, Tsify)]
pub struct Publication {
    pub title: String,
    pub body: String,
    /// Bold, italic and underline of the body (code points).
    pub marks: Vec<Mark>,
    /// A primary language tag, if given.
    #[tsify(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    pub provenance: SignedProvenance,
}

/// A publication's provenance (PROTOCOL §15.1), as `Provenance` in the core.
#[derive(Serialize, Tsify)]
pub struct SignedProvenance {
    pub source_space: String,
    pub source_stream: String,
    pub heads: Vec<String>,
    pub device: String,
    pub signature: String,
}

/// The body of a public copy's withdrawal (`DELETE
/// /v1/public/{space}/docs/{doc}`), as `WithdrawPublic` in the core.
#[derive(Serialize, Tsify)]
pub struct WithdrawalBody {
    pub withdrawal: SignedWithdrawal,
}

/// A device's signed withdrawal of one public copy (PROTOCOL §15.1).
#[derive(Serialize, Tsify)]
pub struct SignedWithdrawal {
    pub device: String,
    pub signature: String,
}

/// What [`Device::check_copy`] found.
#[derive(Serialize, Tsify)]
#[serde(rename_all = "snake_case")]
pub enum CopyCheckResult {
    Matches,
    Differs,
    Unknown,
}

/// One device of this user, as the directory lists it (checked).
#[derive(Serialize, Tsify)]
pub struct OwnDevice {
    pub device: String,
    /// This browser.
    pub this: bool,
    /// Revoked by its user: it can no longer sign in.
    pub revoked: bool,
    pub key_packages: f64,
}

/// This user's devices (checked against the identity key).
#[derive(Serialize, Tsify)]
pub struct OwnDevices {
    pub devices: Vec<OwnDevice>,
}

/// A recovery code (to show once) and its kit.
#[derive(Serialize, Tsify)]
pub struct RecoveryKit {
    pub code: String,
    pub kit: String,
    pub verifier: String,
}

impl From<Code> for ErrorCode {
    fn from(code: Code) -> Self {
        match code {
            Code::Withheld => Self::Withheld,
            Code::Forked => Self::Forked,
            Code::Refused => Self::Refused,
            Code::Contended => Self::Contended,
            Code::NotMember => Self::NotMember,
            Code::NoKeyPackages => Self::NoKeyPackages,
            Code::Identity => Self::Identity,
            Code::Space => Self::Space,
            Code::Document => Self::Document,
            Code::Network => Self::Network,
            Code::Server => Self::Server,
            Code::Timeout => Self::Timeout,
            Code::Protocol => Self::Protocol,
            Code::SignIn => Self::SignIn,
            Code::EntryRefused => Self::EntryRefused,
            Code::EpochRecordNotStored => Self::EpochRecordNotStored,
            Code::InvitationRefused => Self::InvitationRefused,
            Code::Revoked => Self::Revoked,
            Code::ReadOnly => Self::ReadOnly,
            Code::NotManager => Self::NotManager,
            Code::Mention => Self::Mention,
            Code::Intake => Self::Intake,
            Code::Stopped => Self::Stopped,
            Code::PairingExpired => Self::PairingExpired,
        }
    }
}

impl From<Event> for ClientEvent {
    fn from(event: Event) -> Self {
        let hexes = |streams: Vec<StreamId>| streams.iter().map(|s| s.to_hex()).collect();
        match event {
            Event::Changed { space, streams } => Self::Changed {
                space: space.to_hex(),
                streams: hexes(streams),
            },
            Event::Membership { space } => Self::Membership {
                space: space.to_hex(),
            },
            Event::Joined { space } => Self::Joined {
                space: space.to_hex(),
            },
            Event::Removed { space } => Self::Removed {
                space: space.to_hex(),
            },
            Event::Warning {
                code,
                space,
                message,
            } => Self::Warning {
                code: code.into(),
                space: space.map(|s| s.to_hex()),
                message,
            },
            Event::Presence {
                space,
                user,
                device,
                payload,
            } => Self::Presence {
                space: space.to_hex(),
                user: user.to_string(),
                device: device.to_hex(),
                payload: String::from_utf8_lossy(&payload).into_owned(),
            },
            Event::Done { op, result } => {
                let (mut space, mut epoch, mut removed_from, mut error) = (None, None, None, None);
                let (mut drop_box, mut drop_boxes) = (None, None);
                let (mut device, mut added) = (None, None);
                match result {
                    Ok(Output::Done) => {}
                    Ok(Output::Space(id)) => space = Some(id.to_hex()),
                    Ok(Output::Epoch(e)) => epoch = Some(e as f64),
                    Ok(Output::Revoked(spaces)) => {
                        removed_from = Some(spaces.iter().map(|s| s.to_hex()).collect());
                    }
                    Ok(Output::DropBox { id, fragment }) => {
                        drop_box = Some(NewDropBox { id, fragment })
                    }
                    Ok(Output::DropBoxes(list)) => drop_boxes = Some(list.into()),
                    Ok(Output::Paired(id)) => device = Some(id.to_hex()),
                    Ok(Output::DeviceAdded { added: to, others }) => {
                        added = Some(AddedDevice {
                            added: to.iter().map(|s| s.to_hex()).collect(),
                            others: others.iter().map(|s| s.to_hex()).collect(),
                        })
                    }
                    Err(f) => error = Some(op_error(f)),
                }
                Self::Done {
                    op: op as f64,
                    space,
                    epoch,
                    removed_from,
                    drop_box,
                    drop_boxes,
                    device,
                    added,
                    error,
                }
            }
        }
    }
}

fn op_error(f: Failure) -> OpError {
    let (status, server_code) = match f.server {
        Some((status, code)) => (Some(status), Some(code)),
        None => (None, None),
    };
    OpError {
        code: f.code.into(),
        message: f.message,
        status,
        server_code,
    }
}

/// A document with edits of this browser the server has not acknowledged.
#[derive(Serialize, Tsify)]
pub struct UnsentDocument {
    pub space: String,
    pub stream: String,
    /// How many changes wait.
    pub changes: usize,
    /// Why they can no longer be sent (removed, Reader, broken log), or
    /// null while they go out at the next flush.
    pub blocked: Option<String>,
}

/// The documents of [`Device::unsent`].
#[derive(Serialize, Tsify)]
pub struct UnsentList(pub Vec<UnsentDocument>);

/// A drop box just opened.
#[derive(Serialize, Tsify)]
pub struct NewDropBox {
    /// The box (hex).
    pub id: String,
    /// What follows `/drop/#` in its link.
    pub fragment: String,
}

/// A space's drop boxes, checked against the space's keys.
#[derive(Serialize, Tsify)]
pub struct DropBoxList {
    /// The key the server serves: `missing`, `current`, `stale` (from
    /// before a removal, being replaced) or `foreign` (not the space's:
    /// no link is given).
    pub key: String,
    pub boxes: Vec<DropBox>,
}

/// One drop box.
#[derive(Serialize, Tsify)]
pub struct DropBox {
    pub id: String,
    /// Its label, from inside the space.
    pub label: Option<String>,
    pub created_by: String,
    /// Unix seconds.
    pub created: f64,
    pub expires: f64,
    pub quota: f64,
    pub used: f64,
    pub closed: Option<f64>,
    /// What follows `/drop/#` in its link, when the server serves the
    /// space's key in force.
    pub fragment: Option<String>,
    pub submissions: Vec<Submission>,
}

/// Where a new device was added.
#[derive(Serialize, Tsify)]
pub struct AddedDevice {
    /// The spaces it was added to.
    pub added: Vec<String>,
    /// The spaces where a space manager must add it.
    pub others: Vec<String>,
}

/// One complete submission.
#[derive(Serialize, Tsify)]
pub struct Submission {
    pub id: String,
    /// Unix seconds.
    pub at: f64,
    /// The epoch whose key sealed it (give it back to `open_submission_part`).
    pub epoch: f64,
    pub parts: Vec<SubmissionPart>,
}

/// One sealed part: download its chunks (blob ids) in order and join them.
#[derive(Serialize, Tsify)]
pub struct SubmissionPart {
    pub size: f64,
    pub chunks: Vec<String>,
}

impl From<amicus_core::dropbox::DropBoxList> for DropBoxList {
    fn from(list: amicus_core::dropbox::DropBoxList) -> Self {
        Self {
            key: list.key.as_str().to_owned(),
            boxes: list
                .boxes
                .into_iter()
                .map(|b| DropBox {
                    id: b.id,
                    label: b.label,
                    created_by: b.created_by,
                    created: b.created as f64,
                    expires: b.expires as f64,
                    quota: b.quota as f64,
                    used: b.used as f64,
                    closed: b.closed.map(|c| c as f64),
                    fragment: b.fragment,
                    submissions: b
                        .submissions
                        .into_iter()
                        .map(|s| Submission {
                            id: s.id,
                            at: s.at as f64,
                            epoch: s.epoch as f64,
                            parts: s
                                .parts
                                .into_iter()
                                .map(|p| SubmissionPart {
                                    size: p.size as f64,
                                    chunks: p.chunks,
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// One opened part of a submission.
#[derive(Serialize, Tsify)]
pub struct OpenedPart {
    /// `statement` or `file`.
    pub kind: String,
    /// The witness's file name (untrusted; may be empty).
    pub name: String,
    /// The media type the witness's browser gave (untrusted; may be empty).
    pub media_type: String,
    /// The statement's text (for a statement).
    pub text: Option<String>,
    /// The content's length in bytes.
    pub size: f64,
}

/// A case record as read (PROTOCOL §9.7).
#[derive(Serialize, Tsify)]
pub struct RecordView {
    pub id: String,
    pub date: String,
    pub country: String,
    pub region: String,
    pub types: Vec<String>,
    pub profession: String,
    pub gender: String,
    pub status: String,
    pub outcome: String,
    pub sources: Vec<String>,
    pub notes: String,
    /// Who created it, and whether the log binds that name.
    pub by: String,
    pub by_verified: bool,
    /// Who last edited it.
    pub edited_by: String,
    pub edited_by_verified: bool,
    /// Milliseconds since 1970, by the writer's clock.
    pub created: Option<f64>,
    pub edited: Option<f64>,
}

/// A violation type a space manager added.
#[derive(Serialize, Tsify)]
pub struct AddedType {
    pub code: String,
    pub label: String,
}

/// A space's records, the types they may name and their counts.
#[derive(Serialize, Tsify)]
pub struct RegisterView {
    /// The register's stream (to flush before publishing).
    pub stream: String,
    pub records: Vec<RecordView>,
    /// Every type code the register accepts, built-in ones first.
    pub types: Vec<String>,
    /// The labels of the types a space manager added.
    pub added_types: Vec<AddedType>,
    /// Counts by dimension (`country`, `region`, `type`, `year`, `gender`,
    /// `status`, `profession`), then by value.
    pub counts: Vec<DimCounts>,
}

/// The counts of one dimension.
#[derive(Serialize, Tsify)]
pub struct DimCounts {
    pub dim: String,
    pub values: Vec<ValueCount>,
}

/// How many records have one value.
#[derive(Serialize, Tsify)]
pub struct ValueCount {
    pub value: String,
    pub count: u32,
}

/// One cell of an aggregate.
#[derive(Serialize, Tsify)]
pub struct AggregateCell {
    pub values: Vec<String>,
    pub count: u32,
}

/// An aggregate as it would be published (or was).
#[derive(Serialize, Tsify)]
pub struct AggregateView {
    pub title: String,
    pub dims: Vec<String>,
    pub k: u32,
    pub cells: Vec<AggregateCell>,
    /// How many cells were left out (fewer than `k` records).
    pub suppressed: u32,
}

impl From<&amicus_core::monitoring::Aggregate> for AggregateView {
    fn from(a: &amicus_core::monitoring::Aggregate) -> Self {
        Self {
            title: a.title.clone(),
            dims: a.dims.iter().map(|d| d.as_str().to_owned()).collect(),
            k: a.k,
            cells: a
                .cells
                .iter()
                .map(|c| AggregateCell {
                    values: c.values.clone(),
                    count: c.count,
                })
                .collect(),
            suppressed: a.suppressed,
        }
    }
}
