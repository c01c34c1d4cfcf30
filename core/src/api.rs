//! The HTTP API's request and answer bodies, as JSON (PROTOCOL §12.1):
//! one definition for the server's handlers, the client engine and the
//! browser. Binary values travel as lower-case hex; every body refuses
//! unknown fields.
//!
//! [`HttpRequest`] and [`HttpResponse`] are what the client engine hands
//! its driver and gets back: a method, a path and JSON bytes. The driver
//! adds the session token (`Authorization: Bearer`) when
//! [`HttpRequest::signed_in`] says so, and nothing else.

use serde::{Deserialize, Serialize};

/// An HTTP method the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// A request for the driver to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The path and query, from `/v1/`.
    pub path: String,
    /// A JSON body (`Content-Type: application/json`), if any.
    pub body: Option<Vec<u8>>,
    /// The request carries the session token.
    pub signed_in: bool,
}

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body (JSON, or empty).
    pub body: Vec<u8>,
}

/// The JSON form of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code (`bad_request`, `unauthenticated`, `not_found`, …).
    pub error: String,
    /// A sentence for people.
    pub message: String,
}

/// Body of `POST /v1/challenge`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The device (hex).
    pub device: String,
}

/// Body of `POST /v1/pairing/open`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingOpen {
    /// The channel (hex, derived from the code the device shows).
    pub channel: String,
}

/// Body of `POST /v1/pairing`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingOffer {
    /// The user the new device asks to join.
    pub user: String,
    /// The channel the user's device opened (hex, derived from the code).
    pub channel: String,
    /// The offer (hex, opaque to the server).
    pub offer: String,
}

/// Answer to `POST /v1/pairing`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingOffered {
    /// The offer's handle (hex), to ask for the answer with.
    pub id: String,
    /// How long the server keeps it.
    pub expires_in_secs: u64,
}

/// One offer waiting for the caller's user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedOffer {
    /// Its handle (hex).
    pub id: String,
    /// The offer (hex).
    pub offer: String,
}

/// Answer to `GET /v1/pairing`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingOffers {
    /// The unanswered offers for the caller's user.
    pub offers: Vec<ListedOffer>,
}

/// Body of `POST /v1/pairing/{id}/answer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingReply {
    /// The answer (hex, opaque to the server).
    pub answer: String,
}

/// Answer to `GET /v1/pairing/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingAnswer {
    /// The answer (hex), or `None` while there is none.
    pub answer: Option<String>,
}

/// Body of `POST /v1/devices`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// The new device's certificate (hex of postcard).
    pub certificate: String,
}

/// Body of `POST /v1/blobs/missing`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobQuery {
    /// Blob ids (hex).
    pub ids: Vec<String>,
}

/// Answer to `POST /v1/blobs/missing`: the ids the server lacks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingBlobs {
    /// Blob ids (hex), in the order asked.
    pub missing: Vec<String>,
}

/// Answer to `POST /v1/challenge`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// 32 random bytes (hex) to sign.
    pub challenge: String,
}

/// Body of `POST /v1/session`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The device (hex).
    pub device: String,
    /// The challenge (hex).
    pub challenge: String,
    /// Ed25519 signature by the device key over the challenge, statement
    /// `SignIn` (hex).
    pub signature: String,
}

/// Answer to `POST /v1/session`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session token.
    pub token: String,
    /// When it expires (seconds since the Unix epoch).
    pub expires: u64,
    /// The user.
    pub user: String,
}

/// Answer to `GET /v1/users/{user}`: the identity key and certified
/// devices; members who add the user check every certificate themselves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserListing {
    /// The user.
    pub user: String,
    /// The identity key (hex).
    pub identity_key: String,
    /// The safety number the server computed (never trusted; shown only).
    pub safety_number: String,
    /// The certified devices that are not revoked.
    pub devices: Vec<ListedDevice>,
    /// The revoked devices: each a [`crate::identity::DeviceRevocation`]
    /// (hex of postcard) signed by the identity key, which members check
    /// and keep in every space's policy so that nobody adds them again.
    #[serde(default)]
    pub revoked: Vec<String>,
    /// The user administers the server (makes invitations): shown to the
    /// user, never trusted for anything in a space.
    #[serde(default)]
    pub admin: bool,
}

/// Answer to `GET /v1/revocations`: for each space the caller's device is
/// in, the revocations of devices its delivery roster still holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    /// The spaces with a revoked device still in them.
    pub spaces: Vec<SpaceRevocations>,
}

/// Body of `PUT /v1/account/notifications`: where and how often the
/// server may say, by email, that there is activity (PROTOCOL §15.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// The address (may be empty with mode `off`: the server forgets it).
    pub email: String,
    /// `off`, `daily` or `immediate`.
    pub mode: String,
    /// The language of the messages: `en`, `fr`, `ar`, `de` or `pt`.
    #[serde(default)]
    pub language: Option<String>,
}

/// Answer to `GET` and `PUT /v1/account/notifications`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notifications {
    /// Whether this server sends email at all (it has a mail server).
    pub available: bool,
    /// The address given, or empty.
    pub email: String,
    /// `off`, `daily` or `immediate`.
    pub mode: String,
    /// The language of the messages.
    pub language: String,
}

/// The most characters in a directory listing's description, and in a
/// request to join's message.
pub const MAX_LISTING_DESCRIPTION: usize = 2_000;
/// The most characters in a request to join's message.
pub const MAX_JOIN_MESSAGE: usize = 1_000;

/// Body of `PUT /v1/directory/{space}`: what a space's manager shows of
/// it to everyone on the server (PROTOCOL §15.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    /// The public name (1–200 characters, one line).
    pub name: String,
    /// The public description (at most 2,000 characters).
    pub description: String,
    /// Anyone on the server who asks is added at once, by the first
    /// device of a space manager that is online (PROTOCOL §15.3).
    #[serde(default)]
    pub open: bool,
}

/// One space of the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// The space (hex).
    pub space: String,
    /// Its public name.
    pub name: String,
    /// Its public description.
    pub description: String,
    /// Whoever asks is added without waiting for a manager's answer.
    #[serde(default)]
    pub open: bool,
}

/// Answer to `GET /v1/directory?q=&limit=&offset=`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// How many listed spaces match.
    pub total: usize,
    /// This page of them, by name.
    pub spaces: Vec<Listed>,
}

/// Body of `POST /v1/directory/{space}/requests`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskToJoin {
    /// A message to the space's managers (at most 1,000 characters; the
    /// server and the space's members read it).
    pub message: String,
}

/// A request to join, as the space's members see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Who asks.
    pub user: String,
    /// Their message.
    pub message: String,
    /// When (Unix seconds).
    pub at: u64,
}

/// Answer to `GET /v1/directory/{space}/requests`: the pending requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequests {
    /// Oldest first.
    pub requests: Vec<JoinRequest>,
}

/// One of the caller's own requests to join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnRequest {
    /// The space (hex).
    pub space: String,
    /// Its public name while it is listed.
    pub name: Option<String>,
    /// `pending` or `declined`.
    pub state: String,
}

/// Answer to `GET /v1/account/requests`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnRequests {
    /// The caller's requests that are pending or were declined.
    pub requests: Vec<OwnRequest>,
}

/// One space of [`Revocations`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceRevocations {
    /// The space (hex).
    pub space: String,
    /// Each a [`crate::identity::DeviceRevocation`] (hex of postcard).
    pub revoked: Vec<String>,
}

/// Body of `POST /v1/devices/revoke`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// The [`crate::identity::DeviceRevocation`] (hex of postcard).
    pub revocation: String,
}

/// One device of a [`UserListing`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedDevice {
    /// The device (hex).
    pub device: String,
    /// Its certificate (hex of postcard).
    pub certificate: String,
    /// KeyPackages it has in the directory.
    #[serde(default)]
    pub key_packages: u64,
}

/// Body of `POST /v1/key-packages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPackages {
    /// Encoded KeyPackages (hex), each an MLS message.
    pub key_packages: Vec<String>,
}

/// Answer to `POST /v1/key-packages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// KeyPackages the device now has in the directory.
    pub count: u64,
}

/// Body of `POST /v1/users/{user}/key-packages/claim`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// Devices (hex) already in the space: no KeyPackage is taken for them.
    #[serde(default)]
    pub except: Vec<String>,
}

/// Answer to a claim: one KeyPackage per device, each handed out once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    /// The KeyPackages taken.
    pub key_packages: Vec<ClaimedKeyPackage>,
    /// Devices (hex) that had none left.
    pub missing: Vec<String>,
}

/// One KeyPackage of [`Claimed`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedKeyPackage {
    /// The device (hex).
    pub device: String,
    /// The KeyPackage (hex).
    pub key_package: String,
}

/// Body of `POST /v1/spaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSpace {
    /// The space id (hex; for a confidential space, its MLS group id).
    pub id: String,
    /// `confidential` or `public`.
    pub kind: String,
    /// A name, for public spaces only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Answer to `GET /v1/welcomes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcomes {
    /// Welcomes queued for the device, oldest first.
    pub welcomes: Vec<QueuedWelcome>,
}

/// One Welcome of [`Welcomes`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedWelcome {
    /// The queue id (to delete it once processed).
    pub id: u64,
    /// The space (hex).
    pub space: String,
    /// The MLS Welcome (hex).
    pub welcome: String,
}

/// Encodes a body.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("API bodies always encode")
}

/// Decodes an answer's body.
pub(crate) fn from_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("unexpected answer from the server: {e}"))
}

/// Body of `DELETE /v1/public/{space}/docs/{doc}`: the withdrawal of the
/// copy there, signed by one of the caller's devices (PROTOCOL §15.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawPublic {
    /// The signed withdrawal.
    pub withdrawal: crate::publication::Withdrawal,
}

/// Body of `PUT /v1/spaces/{space}/intake`: the space's intake key in
/// force (PROTOCOL §11.5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedIntake {
    /// `age1…`.
    pub recipient: String,
    /// The epoch whose key it is.
    pub epoch: u64,
}

/// Body of `POST /v1/spaces/{space}/drop-boxes` (PROTOCOL §11.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDropBox {
    /// The box (32 hex digits), chosen by the member's device.
    pub id: String,
    /// Days it stays open (1 to 365).
    pub days: u32,
    /// The bytes it may take, sealed.
    pub quota: u64,
}

/// Answer of `GET /v1/spaces/{space}/drop-boxes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropBoxes {
    /// The intake key the server serves to the boxes' pages.
    pub intake: Option<PublishedIntake>,
    /// The space's boxes.
    pub boxes: Vec<DropBoxRecord>,
}

/// One drop box as the server keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropBoxRecord {
    /// The box (hex).
    pub id: String,
    /// When it was opened (Unix seconds).
    pub created: u64,
    /// Who opened it.
    pub created_by: String,
    /// When it stops taking submissions (Unix seconds).
    pub expires: u64,
    /// The bytes it may take.
    pub quota: u64,
    /// The bytes taken or reserved.
    pub used: u64,
    /// When a member closed it.
    pub closed: Option<u64>,
    /// Its complete submissions.
    pub submissions: Vec<Submission>,
}

/// One complete submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// The submission (hex).
    pub id: String,
    /// When it was sent (Unix seconds).
    pub at: u64,
    /// The intake epoch whose key sealed it, as the server recorded.
    pub epoch: u64,
    /// Its sealed parts.
    pub parts: Vec<SubmissionPart>,
}

/// One sealed part: an age file stored as chunks (blob ids, in order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionPart {
    /// Its size in bytes.
    pub size: u64,
    /// The blob ids of its chunks (hex), in order.
    pub chunks: Vec<String>,
}
