//! The native client: a tokio driver of the core's client engine
//! ([`amicus_core::engine::Engine`]).
//!
//! Every protocol decision (subscriptions and catch-up, withholding and
//! fork detection, commits and their retries, flushing, signing in again)
//! is the engine's; this module moves its frames over one WebSocket and
//! its requests over HTTP, keeps its state encrypted in a [`Home`] (durable
//! before anything it sends, as the engine asks), and turns its results
//! into [`ClientError`]s. A restarted client reads each space's log from
//! where its saved state stopped.

use std::path::Path;
use std::time::{Duration, Instant};

use amicus_core::at_rest::{DeviceRecord, Restored};
use amicus_core::document::filing;
use amicus_core::engine::{
    self, Code, Config, Engine, Event, Failure, Intent, Link, OpId, Output, OwnDevice,
};
use amicus_core::files::{ChunkId, FileManifest, UploadProgress};
use amicus_core::identity::{Contacts, Device, UserIdentity};
use amicus_core::library;
use amicus_core::space::Role;
use amicus_core::transfer::{
    Download, DownloadStep, HttpFailure, Interrupted, PartFetch, PartStep, Source, Target,
    TransferError, Upload, UploadStep,
};
use amicus_core::wire::{ClientFrame, LogEntry, ServerFrame};
use amicus_core::{DeviceId, MlsProvider, SpaceId, StreamId, UserId, api};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::home::Home;
use crate::transport::{Conn, Http};

const STATE_FILE: &str = "state";
const WAIT: Duration = Duration::from_secs(60);

/// The persisted state of a device, version 3: the server, the session
/// token, then the [`DeviceRecord`] the browser client keeps too (encoded
/// with its own version byte).
#[derive(Serialize, Deserialize)]
struct StateV3 {
    server: String,
    token: Option<String>,
    record: Vec<u8>,
}

impl Drop for StateV3 {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.record.zeroize();
    }
}

/// Version 2, read once and written again as version 3 (its spaces read
/// their logs again from entry 0 that once).
#[derive(Deserialize)]
struct StateV2 {
    server: String,
    token: Option<String>,
    record: amicus_core::at_rest::LegacyDeviceRecord,
}

const STATE_VERSION: u8 = 3;

/// An edit to a filing.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Replace the title.
    Title(String),
    /// Insert text at a character position (`None`: at the end).
    Insert(Option<usize>, String),
    /// Delete characters.
    Delete(usize, usize),
    /// Comment on a passage `[start, end)`.
    Comment(usize, usize, String),
    /// Format a passage with a mark (`bold`, `italic`...).
    Format(usize, usize, String),
    /// Name the current version.
    Version(String),
    /// Reply in a comment thread (its id, as `doc cat` shows it).
    Reply(String, String),
    /// Resolve a comment thread (`true`) or open it again.
    Resolve(String, bool),
}

/// A filing as read.
#[derive(Clone, Debug, Serialize)]
pub struct Filing {
    /// The document stream (hex).
    pub id: String,
    /// The title.
    pub title: String,
    /// The text.
    pub body: String,
    /// Comment threads: anchors and messages.
    pub comments: Vec<Value>,
    /// Named versions, oldest first, each with who named it.
    pub versions: Vec<NamedVersion>,
    /// Number of Automerge changes.
    pub changes: usize,
}

/// A named version of a filing.
#[derive(Clone, Debug, Serialize)]
pub struct NamedVersion {
    /// Its name.
    pub name: String,
    /// The user whose device named it, or the name a snapshot claims.
    pub author: String,
    /// Whether `author` is the signer's user (not only a claim).
    pub verified: bool,
    /// When it was named (RFC 3339, UTC), as the namer's device said.
    pub at: Option<String>,
}

/// A time in milliseconds since 1970 as RFC 3339 in UTC, to the second,
/// or `None` for a time no calendar holds.
/// A time in milliseconds since 1970 as RFC 3339 in UTC.
pub fn rfc3339(at_ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1000)).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A library entry as listed.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    /// `document`, `file` or `folder`.
    pub kind: &'static str,
    /// Stream id (documents), file id (files) or folder id.
    pub id: String,
    /// Title or name.
    pub name: String,
    /// Size in bytes (files).
    pub size: Option<u64>,
    /// The folder it is in (a folder's parent; empty: the top).
    pub folder: String,
    /// How many versions a file has (the current one included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<usize>,
}

/// The device's client.
pub struct Client {
    home: Home,
    http: Http,
    engine: Engine,
    conn: Option<Conn>,
    /// The origin of the engine's clock.
    clock: Instant,
    /// Things the user should know (refused commits, unreadable entries).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({:?})", self.engine)
    }
}

/// A document holding this device's unacknowledged edits ([`Client::unsent`]).
#[derive(Clone, Debug)]
pub struct UnsentDocument {
    /// The space.
    pub space: SpaceId,
    /// The document.
    pub stream: StreamId,
    /// How many changes wait.
    pub changes: usize,
    /// Why they can no longer be sent, or `None` while they go out.
    pub blocked: Option<String>,
    /// A filing's title and body as this device has them (edits included).
    pub text: Option<(String, String)>,
}

/// The engine's settings for a command-line client: an operation fails at
/// once when the server cannot be reached (the user runs the command
/// again), and reconnects without waiting.
fn config() -> Config {
    Config {
        fail_offline: true,
        reconnect_ms: (0, 0),
        ..Config::default()
    }
}

impl From<Failure> for ClientError {
    fn from(f: Failure) -> Self {
        match (f.code, f.server) {
            (Code::Withheld, _) => ClientError::Withheld(f.message),
            (Code::Forked, _) => ClientError::Forked(f.message),
            (Code::Network | Code::Timeout, _) => ClientError::Network(f.message),
            (Code::NotMember | Code::NoKeyPackages, _) => ClientError::NotFound(f.message),
            (Code::Identity, _) => ClientError::Identity(f.message),
            (Code::Protocol, _) => ClientError::Protocol(f.message),
            (_, Some((status, code))) => ClientError::Server {
                status,
                code,
                message: f.message,
            },
            _ => ClientError::Refused(f.message),
        }
    }
}

impl Client {
    /// A client from its parts, not yet connected.
    fn assemble(home: Home, mut http: Http, restored: Restored, token: Option<String>) -> Self {
        http.set_token(token.clone());
        Self {
            home,
            http,
            engine: Engine::new(restored, token, config()),
            conn: None,
            clock: Instant::now(),
            warnings: Vec::new(),
        }
    }

    fn fresh(identity: Option<UserIdentity>, device: Device, contacts: Contacts) -> Restored {
        Restored {
            identity,
            device,
            provider: MlsProvider::new(),
            spaces: Default::default(),
            contacts,
            seen: Some(Vec::new()),
        }
    }

    /// Registers a new user with its first device on `server`, and stores the
    /// device's state in a new home at `dir`.
    pub async fn register(
        dir: &Path,
        passphrase: &[u8],
        server: &str,
        user: &str,
        invite: Option<&str>,
    ) -> Result<Self, ClientError> {
        let user = UserId::new(user).map_err(|e| ClientError::Usage(e.to_string()))?;
        let http = Http::new(server)?;
        let identity = UserIdentity::generate(user);
        let device = identity.new_device();
        let home = Home::create(dir, passphrase)?;
        let cert = hex::encode(postcard::to_allocvec(device.certificate()).expect("encodes"));
        let restored = Self::fresh(Some(identity), device, Contacts::default());
        let mut client = Self::assemble(home, http, restored, None);
        // The identity key is on disk before the server knows the name; if
        // the server refuses, the new home is removed again.
        client.save()?;
        if let Err(e) = client
            .http
            .post::<Value>(
                "/v1/register",
                &json!({ "certificate": cert, "invite": invite }),
            )
            .await
        {
            client.home.destroy()?;
            return Err(e);
        }
        client.login().await?;
        client.save()?;
        Ok(client)
    }

    /// Opens the device state in `dir`.
    pub async fn open(dir: &Path, passphrase: &[u8]) -> Result<Self, ClientError> {
        let home = Home::open(dir, passphrase)?;
        let bytes = home
            .read(STATE_FILE)?
            .ok_or_else(|| ClientError::Home(crate::home::HomeError::Missing(dir.into())))?;
        let corrupt = || ClientError::Home(crate::home::HomeError::Corrupt(STATE_FILE.into()));
        let (server, token, record) = match bytes.split_first() {
            Some((&STATE_VERSION, rest)) => {
                let mut state: StateV3 = postcard::from_bytes(rest).map_err(|_| corrupt())?;
                let record = DeviceRecord::decode(&state.record)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                (
                    std::mem::take(&mut state.server),
                    state.token.take(),
                    record,
                )
            }
            Some((2, rest)) => {
                let state: StateV2 = postcard::from_bytes(rest).map_err(|_| corrupt())?;
                (state.server, state.token, DeviceRecord::from(state.record))
            }
            _ => return Err(corrupt()),
        };
        let restored = record
            .restore()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let http = Http::new(&server)?;
        Ok(Self::assemble(home, http, restored, token))
    }

    /// Writes the device's state (encrypted) to its home.
    pub fn save(&mut self) -> Result<(), ClientError> {
        let record = self
            .engine
            .persist()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let state = StateV3 {
            server: self.http.base().to_owned(),
            token: self.engine.token().map(str::to_owned),
            record: record.encode().to_vec(),
        };
        let mut bytes = Zeroizing::new(vec![STATE_VERSION]);
        bytes.extend_from_slice(&postcard::to_allocvec(&state).expect("state encodes"));
        self.home.write(STATE_FILE, &bytes)?;
        Ok(())
    }

    /// Points the device at another server address (the same server moved).
    pub fn set_server(&mut self, server: &str) -> Result<(), ClientError> {
        self.http = Http::new(server)?;
        self.http.set_token(self.engine.token().map(str::to_owned));
        self.drop_connection();
        Ok(())
    }

    fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn drop_connection(&mut self) {
        if self.conn.take().is_some() {
            let now = self.now();
            self.engine.handle_link(now, Link::Down);
        }
    }

    /// The user.
    pub fn user(&self) -> &UserId {
        self.engine.device().user()
    }

    /// The device id (hex).
    pub fn device_id(&self) -> String {
        self.engine.device().id().to_hex()
    }

    /// The user's safety number.
    pub fn safety_number(&self) -> String {
        let device = self.engine.device();
        device
            .certificate()
            .identity_key
            .safety_number(device.user())
    }

    /// Runs one operation of the engine to its end: makes durable what it
    /// asks to, sends its frames and requests, feeds it what comes back.
    async fn run(&mut self, intent: Intent) -> Result<Output, ClientError> {
        let now = self.now();
        let op = self.engine.start(now, intent);
        loop {
            if let Some(result) = self.pump(op).await? {
                return result.map_err(ClientError::from);
            }
            self.wait().await;
        }
    }

    /// Does everything the engine asks for now; returns the operation's
    /// result once it ended.
    async fn pump(&mut self, op: OpId) -> Result<Option<Result<Output, Failure>>, ClientError> {
        loop {
            let mut moved = false;
            if self.engine.must_persist() {
                self.save()?;
            }
            if self.conn.is_none() && self.engine.wants_connection() {
                self.connect().await;
                moved = true;
            }
            while let Some(frame) = self.engine.poll_transmit() {
                moved = true;
                self.send(frame).await;
            }
            while let Some((id, request)) = self.engine.poll_request() {
                moved = true;
                let response = self.http.call(&request, self.engine.token()).await;
                let now = self.now();
                self.engine.handle_response(now, id, response);
            }
            // Commands that only call the API use the engine's session.
            self.http.set_token(self.engine.token().map(str::to_owned));
            let mut result = None;
            while let Some(event) = self.engine.poll_event() {
                match event {
                    Event::Done {
                        op: done,
                        result: r,
                    } if done == op => result = Some(r),
                    Event::Warning { message, .. } => self.warnings.push(message),
                    _ => {}
                }
            }
            if result.is_some() {
                return Ok(result);
            }
            if !moved {
                return Ok(None);
            }
        }
    }

    async fn connect(&mut self) {
        let token = self.engine.token().unwrap_or_default().to_owned();
        let link = match Conn::open(self.http.base(), &token).await {
            Ok(conn) => {
                self.conn = Some(conn);
                Link::Up
            }
            Err(ClientError::Server { status: 401, .. }) => Link::Unauthorized,
            Err(_) => Link::Down,
        };
        let now = self.now();
        self.engine.handle_link(now, link);
    }

    async fn send(&mut self, frame: ClientFrame) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.send(&frame).await.is_err() {
            self.drop_connection();
        }
    }

    /// Waits for a frame or the engine's next timeout, and hands it over.
    async fn wait(&mut self) {
        let now = self.now();
        let until = self
            .engine
            .poll_timeout()
            .unwrap_or(now + WAIT.as_millis() as u64);
        let wait = Duration::from_millis(until.saturating_sub(now).max(1));
        match self.conn.as_mut() {
            Some(conn) => match conn.next(wait).await {
                Ok(Some(frame)) => {
                    let now = self.now();
                    self.engine.handle_frame(now, frame);
                }
                Ok(None) => {}
                Err(_) => self.drop_connection(),
            },
            None => tokio::time::sleep(wait).await,
        }
        let now = self.now();
        self.engine.handle_timeout(now);
    }

    /// Signs in: answers a challenge with the device key, and keeps the
    /// device's KeyPackages topped up.
    pub async fn login(&mut self) -> Result<(), ClientError> {
        self.run(Intent::SignIn).await?;
        self.run(Intent::Refresh).await?;
        Ok(())
    }

    /// Creates another device of this user, registers it with the server and
    /// stores its state in a new home at `dir` (this device must hold the
    /// user's identity key).
    pub async fn add_device(&self, dir: &Path, passphrase: &[u8]) -> Result<Client, ClientError> {
        let identity = self.engine.identity().ok_or_else(|| {
            ClientError::Usage(
                "this device does not hold the identity key; use the first device".into(),
            )
        })?;
        let device = identity.new_device();
        let cert = hex::encode(postcard::to_allocvec(device.certificate()).expect("encodes"));
        let restored = Self::fresh(None, device, self.engine.contacts().clone());
        let mut client = Self::assemble(
            Home::create(dir, passphrase)?,
            Http::new(self.http.base())?,
            restored,
            None,
        );
        client.save()?;
        if let Err(e) = self
            .http
            .post::<Value>("/v1/devices", &json!({ "certificate": cert }))
            .await
        {
            client.home.destroy()?;
            return Err(e);
        }
        client.login().await?;
        client.save()?;
        Ok(client)
    }

    /// Brings one space up to date with the server's log.
    pub async fn sync(&mut self, id: SpaceId) -> Result<(), ClientError> {
        self.run(Intent::Sync(id)).await.map(|_| ())
    }

    /// Joins every space whose Welcome waits for this device, tops up its
    /// KeyPackages, then syncs all.
    pub async fn sync_all(&mut self) -> Result<(), ClientError> {
        self.run(Intent::Refresh).await?;
        // A space manager's device adds whoever waits to join an open
        // space as it reads it; this command stops once that is done.
        while self.engine.admitting() {
            // No operation of this command's is waited for here.
            self.pump(OpId::MAX).await?;
            if self.engine.admitting() {
                self.wait().await;
            }
        }
        self.save()
    }

    /// Creates a confidential space (history policy `full`) with this device
    /// as its space manager, and its library.
    pub async fn create_space(&mut self) -> Result<SpaceId, ClientError> {
        let output = self.run(Intent::CreateSpace).await?;
        self.save()?;
        match output {
            Output::Space(id) => Ok(id),
            other => Err(ClientError::Protocol(format!(
                "creating a space ended with {other:?}"
            ))),
        }
    }

    /// Creates a public space with a name.
    pub async fn create_public_space(&mut self, name: &str) -> Result<SpaceId, ClientError> {
        let id = SpaceId::random();
        let _: Value = self
            .http
            .post(
                "/v1/spaces",
                &json!({ "id": id.to_hex(), "kind": "public", "name": name }),
            )
            .await?;
        Ok(id)
    }

    /// The spaces the server lists for this device.
    pub async fn list_spaces(&mut self) -> Result<Value, ClientError> {
        let mut v: Value = self.http.get("/v1/spaces").await?;
        let mine = self.engine.spaces();
        if let Some(list) = v["spaces"].as_array_mut() {
            for s in list {
                let joined = s["id"]
                    .as_str()
                    .and_then(|h| SpaceId::from_hex(h).ok())
                    .is_some_and(|id| mine.contains(&id));
                s["joined"] = json!(joined);
                // A confidential space's name and description are inside it.
                if let Some(id) = s["id"]
                    .as_str()
                    .and_then(|h| SpaceId::from_hex(h).ok())
                    .filter(|id| mine.contains(id))
                    && let Ok(p) = self.engine.profile(id)
                {
                    s["name"] = json!(p.name);
                    s["description"] = json!(p.description);
                }
            }
        }
        Ok(v)
    }

    /// A confidential space's name and description, as its space managers
    /// set them.
    pub fn profile(&mut self, id: SpaceId) -> Result<library::Profile, ClientError> {
        Ok(self.engine.profile(id)?)
    }

    /// Names and describes a space (space managers only), and sends it.
    pub async fn set_profile(
        &mut self,
        id: SpaceId,
        name: &str,
        description: &str,
    ) -> Result<(), ClientError> {
        self.sync(id).await?;
        self.engine.set_profile(id, name, description)??;
        self.flush(id, library::stream(id)).await?;
        self.save()
    }

    /// The ids of the confidential spaces this device holds.
    pub fn spaces(&self) -> Vec<SpaceId> {
        self.engine.spaces()
    }

    async fn commit(&mut self, intent: Intent) -> Result<u64, ClientError> {
        let output = self.run(intent).await?;
        self.save()?;
        match output {
            Output::Epoch(e) => Ok(e),
            other => Err(ClientError::Protocol(format!(
                "a commit ended with {other:?}"
            ))),
        }
    }

    /// Adds every device of `user` not yet in the space (a new member with
    /// `role`, or new devices of a member, who keeps their role).
    pub async fn invite(
        &mut self,
        id: SpaceId,
        user: &str,
        role: Role,
    ) -> Result<u64, ClientError> {
        let user = UserId::new(user).map_err(|e| ClientError::Usage(e.to_string()))?;
        self.commit(Intent::Invite {
            space: id,
            user,
            role,
        })
        .await
    }

    /// Lists the space in the network's directory with a public name and
    /// description, open to whoever asks or not, or takes it out (`None`).
    /// Space managers only.
    pub async fn list_in_directory(
        &mut self,
        id: SpaceId,
        listing: Option<api::Listing>,
    ) -> Result<(), ClientError> {
        self.sync(id).await?;
        self.run(Intent::List { space: id, listing }).await?;
        Ok(())
    }

    /// The listed spaces matching `query` (every word, any case).
    pub async fn directory(&self, query: &str) -> Result<api::Directory, ClientError> {
        self.http
            .get_query("/v1/directory", &[("q", query.to_owned())])
            .await
    }

    /// Asks to join a listed space, with a message to its managers.
    /// (The answer says whether the space is open: then the first device
    /// of a space manager online adds the user without anyone's click.)
    pub async fn ask_to_join(&self, id: SpaceId, message: &str) -> Result<bool, ClientError> {
        let body = serde_json::to_value(api::AskToJoin {
            message: message.to_owned(),
        })
        .expect("a request encodes");
        let answer: Value = self
            .http
            .post(&format!("/v1/directory/{}/requests", id.to_hex()), &body)
            .await?;
        Ok(answer["open"].as_bool().unwrap_or(false))
    }

    /// Withdraws this user's request to join a space.
    pub async fn withdraw_request(&self, id: SpaceId) -> Result<(), ClientError> {
        self.http
            .delete(&format!(
                "/v1/directory/{}/requests/{}",
                id.to_hex(),
                self.user()
            ))
            .await
    }

    /// The pending requests to join a space this device is in.
    pub async fn join_requests(&self, id: SpaceId) -> Result<api::JoinRequests, ClientError> {
        self.http
            .get(&format!("/v1/directory/{}/requests", id.to_hex()))
            .await
    }

    /// This user's own requests to join, pending or declined.
    pub async fn own_requests(&self) -> Result<api::OwnRequests, ClientError> {
        self.http.get("/v1/account/requests").await
    }

    /// Accepts a request to join: adds every certified device of `user`
    /// with `role`, then closes the request. Space managers only.
    pub async fn accept(&mut self, id: SpaceId, user: &str, role: Role) -> Result<(), ClientError> {
        let user = UserId::new(user).map_err(|e| ClientError::Usage(e.to_string()))?;
        self.sync(id).await?;
        let done = self
            .run(Intent::Accept {
                space: id,
                user,
                role,
            })
            .await;
        self.save()?;
        done.map(|_| ())
    }

    /// Declines a request to join (the requester is told). Space managers
    /// only.
    pub async fn decline(&mut self, id: SpaceId, user: &str) -> Result<(), ClientError> {
        let user = UserId::new(user).map_err(|e| ClientError::Usage(e.to_string()))?;
        self.sync(id).await?;
        self.run(Intent::Decline { space: id, user }).await?;
        Ok(())
    }

    /// Opens a drop box for the space (space managers only): its id and
    /// its link's fragment (what follows `/drop/#`).
    pub async fn open_drop_box(
        &mut self,
        id: SpaceId,
        label: &str,
        days: u32,
        quota: u64,
    ) -> Result<(String, String), ClientError> {
        self.sync(id).await?;
        let done = self
            .run(Intent::OpenDropBox {
                space: id,
                label: label.to_owned(),
                days,
                quota,
            })
            .await;
        self.save()?;
        match done? {
            Output::DropBox { id, fragment } => Ok((id, fragment)),
            other => Err(ClientError::Usage(format!(
                "opening a drop box ended with {other:?}"
            ))),
        }
    }

    /// Closes a drop box (space managers only).
    pub async fn close_drop_box(&mut self, id: SpaceId, dropbox: &str) -> Result<(), ClientError> {
        self.sync(id).await?;
        self.run(Intent::CloseDropBox {
            space: id,
            dropbox: dropbox.to_owned(),
        })
        .await?;
        Ok(())
    }

    /// The space's drop boxes and their submissions, the served key
    /// checked against the space's own.
    pub async fn drop_boxes(
        &mut self,
        id: SpaceId,
    ) -> Result<amicus_core::dropbox::DropBoxList, ClientError> {
        self.sync(id).await?;
        let done = self.run(Intent::DropBoxes(id)).await;
        self.save()?;
        match done? {
            Output::DropBoxes(list) => Ok(list),
            other => Err(ClientError::Usage(format!(
                "listing drop boxes ended with {other:?}"
            ))),
        }
    }

    /// Downloads and opens every part of a submission (its id, or the
    /// start of it): nothing is returned unless each part opens whole.
    pub async fn open_submission(
        &mut self,
        id: SpaceId,
        submission: &str,
    ) -> Result<
        (
            amicus_core::api::Submission,
            Vec<amicus_core::intake::drop::Part>,
        ),
        ClientError,
    > {
        let list = self.drop_boxes(id).await?;
        let mut found: Vec<amicus_core::api::Submission> = list
            .boxes
            .into_iter()
            .flat_map(|b| b.submissions)
            .filter(|s| s.id.starts_with(submission))
            .collect();
        let s = match found.len() {
            1 => found.remove(0),
            0 => {
                return Err(ClientError::Usage(format!(
                    "no submission {submission} in this space's drop boxes"
                )));
            }
            _ => {
                return Err(ClientError::Usage(format!(
                    "{submission} names several submissions; give more of the id"
                )));
            }
        };
        let mut parts = Vec::new();
        for part in &s.parts {
            let mut fetch = PartFetch::start(part);
            let mut last = None;
            let sealed = loop {
                match fetch.step().map_err(|e| transfer_failed(e, last.take()))? {
                    PartStep::Get(chunk) => {
                        let path = format!("/v1/spaces/{}/drop-chunks/{chunk}", id.to_hex());
                        let got = self
                            .http
                            .get_bytes(&path, amicus_core::intake::drop::CHUNK_LEN)
                            .await
                            .map_err(|e| {
                                let f = http_failure(&e);
                                last = Some(e);
                                f
                            });
                        fetch
                            .got(got)
                            .map_err(|e| transfer_failed(e, last.take()))?;
                    }
                    PartStep::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                    PartStep::Done(sealed) => break sealed,
                }
            };
            let opened = self
                .engine
                .open_submission_part(id, s.epoch, &sealed)
                .map_err(|f| ClientError::Usage(f.message))?;
            parts.push(opened);
        }
        Ok((s, parts))
    }

    /// Removes a user and all their devices from the space.
    pub async fn remove(&mut self, id: SpaceId, user: &str) -> Result<u64, ClientError> {
        let user = UserId::new(user).map_err(|e| ClientError::Usage(e.to_string()))?;
        self.commit(Intent::Remove { space: id, user }).await
    }

    /// This user's devices as the directory lists them, each certificate
    /// and revocation checked against the identity key this device was
    /// certified by.
    pub async fn devices(&self) -> Result<Vec<OwnDevice>, ClientError> {
        let path = format!("/v1/users/{}", self.engine.device().user());
        let listing: api::UserListing = self.http.get(&path).await?;
        Ok(engine::own_devices(self.engine.device(), &listing)?)
    }

    /// Revokes another device of this user (needs the identity key): the
    /// server stops serving it, and every space this device shares with it
    /// removes it. Returns those spaces.
    pub async fn revoke_device(&mut self, device: &str) -> Result<Vec<SpaceId>, ClientError> {
        let device = DeviceId::from_hex(device)
            .map_err(|_| ClientError::Usage(format!("{device} is not a device id")))?;
        let output = self.run(Intent::Revoke { device }).await;
        self.save()?;
        match output? {
            Output::Revoked(spaces) => Ok(spaces),
            other => Err(ClientError::Protocol(format!(
                "a revocation ended with {other:?}"
            ))),
        }
    }

    /// Changes a member's role.
    pub async fn set_role(
        &mut self,
        id: SpaceId,
        user: &str,
        role: Role,
    ) -> Result<u64, ClientError> {
        let user = UserId::new(user).map_err(|e| ClientError::Usage(e.to_string()))?;
        self.commit(Intent::SetRole {
            space: id,
            user,
            role,
        })
        .await
    }

    /// The members of a space: user, device, role and safety number.
    pub fn members(&self, id: SpaceId) -> Result<Vec<Value>, ClientError> {
        let view = self.engine.view(id).ok_or_else(|| no_space(id))?;
        let policy = view.space().policy()?;
        Ok(view
            .space()
            .members()?
            .into_iter()
            .map(|m| {
                let safety = policy
                    .members
                    .get(&m.user)
                    .map(|p| p.identity_key.safety_number(&m.user));
                json!({ "user": m.user.as_str(), "device": m.device.to_hex(), "role": m.role.as_str(), "safety_number": safety })
            })
            .collect())
    }

    /// The space's epoch and safety code (epoch authenticator).
    pub fn epoch(&self, id: SpaceId) -> Result<(u64, String), ClientError> {
        let view = self.engine.view(id).ok_or_else(|| no_space(id))?;
        Ok((
            view.space().epoch(),
            hex::encode(view.space().epoch_authenticator()),
        ))
    }

    /// The space code people compare, as every client shows it.
    pub fn space_code(&self, id: SpaceId) -> Result<String, ClientError> {
        let view = self.engine.view(id).ok_or_else(|| no_space(id))?;
        Ok(view.space().space_code())
    }

    /// True if this device was removed from the space.
    pub fn is_removed(&self, id: SpaceId) -> bool {
        self.engine.view(id).is_some_and(|v| v.is_removed())
    }

    /// Entries this device could not open (sealed under epochs it cannot derive).
    pub fn unreadable(&self, id: SpaceId) -> usize {
        self.engine.view(id).map_or(0, |v| v.unreadable())
    }

    /// Reads entries handed over out of band (as a seized or malicious
    /// server could); used to show what a device can and cannot decrypt.
    pub fn ingest(&mut self, id: SpaceId, entries: Vec<LogEntry>) {
        self.engine.ingest(id, entries);
        while let Some(event) = self.engine.poll_event() {
            if let Event::Warning { message, .. } = event {
                self.warnings.push(message);
            }
        }
    }

    /// Every log entry of a space, from the server (members only).
    pub async fn fetch_log(&mut self, id: SpaceId) -> Result<Vec<LogEntry>, ClientError> {
        let token = self.engine.token().unwrap_or_default().to_owned();
        let mut conn = Conn::open(self.http.base(), &token).await?;
        conn.send(&ClientFrame::Subscribe {
            request: 1,
            space: id,
            from_seq: 0,
        })
        .await?;
        let mut out = Vec::new();
        loop {
            match conn.recv(WAIT).await? {
                ServerFrame::Entry { entry, .. } => out.push(entry),
                ServerFrame::Synced { .. } => return Ok(out),
                ServerFrame::Refused { message, .. } => return Err(ClientError::Refused(message)),
                _ => {}
            }
        }
    }

    /// Sends this device's pending edits of a document now.
    pub async fn flush(&mut self, id: SpaceId, stream: StreamId) -> Result<(), ClientError> {
        self.run(Intent::Flush { space: id, stream })
            .await
            .map(|_| ())
    }

    /// Creates a filing in the space's library; returns its id.
    pub async fn new_document(
        &mut self,
        id: SpaceId,
        title: &str,
    ) -> Result<StreamId, ClientError> {
        self.sync(id).await?;
        let stream = self.engine.new_document(id, title, "")??;
        self.run(Intent::FlushSpace(id)).await?;
        self.save()?;
        Ok(stream)
    }

    /// Starts a discussion with its opening post; returns its stream.
    pub async fn new_discussion(
        &mut self,
        id: SpaceId,
        title: &str,
        text: &str,
        attachments: &[String],
    ) -> Result<StreamId, ClientError> {
        self.sync(id).await?;
        let (stream, _) = self
            .engine
            .new_discussion(id, title, text, attachments, now_ms())??;
        self.run(Intent::FlushSpace(id)).await?;
        self.save()?;
        Ok(stream)
    }

    /// Posts in a discussion (replying to `reply_to`, if given); returns
    /// the post's id.
    pub async fn post(
        &mut self,
        id: SpaceId,
        stream: StreamId,
        reply_to: Option<&str>,
        text: &str,
        attachments: &[String],
    ) -> Result<String, ClientError> {
        self.sync(id).await?;
        let post = self
            .engine
            .post(id, stream, reply_to, text, attachments, now_ms())??;
        self.run(Intent::FlushSpace(id)).await?;
        self.save()?;
        Ok(post)
    }

    /// Replaces the text of one of this user's posts.
    pub async fn edit_post(
        &mut self,
        id: SpaceId,
        stream: StreamId,
        post: &str,
        text: &str,
    ) -> Result<(), ClientError> {
        self.sync(id).await?;
        self.engine.edit_post(id, stream, post, text, now_ms())??;
        self.run(Intent::FlushSpace(id)).await?;
        self.save()
    }

    /// Reads a discussion (and counts it as seen).
    pub fn discussion(
        &mut self,
        id: SpaceId,
        stream: StreamId,
    ) -> Result<amicus_core::discussion::Discussion, ClientError> {
        let read = self.engine.discussion(id, stream)?;
        self.seen(id, stream)?;
        Ok(read)
    }

    /// What others changed since this user last looked, in every space.
    pub fn activity(&mut self) -> Vec<amicus_core::engine::ActivityItem> {
        self.engine.activity()
    }

    /// Counts a document (or a space's library) as seen as this device
    /// holds it now, and saves that.
    pub fn seen(&mut self, id: SpaceId, stream: StreamId) -> Result<(), ClientError> {
        self.engine.mark_seen(id, stream)?;
        if self.engine.changed() {
            self.save()?;
        }
        Ok(())
    }

    /// Applies edits to a filing and sends them as one envelope.
    pub async fn edit(
        &mut self,
        id: SpaceId,
        stream: StreamId,
        edits: &[Edit],
    ) -> Result<(), ClientError> {
        self.sync(id).await?;
        let author = self.user().to_string();
        let view = self.engine.view_mut(id).ok_or_else(|| no_space(id))?;
        if view.existing_replica(stream).is_none() {
            return Err(ClientError::NotFound(format!(
                "no document {stream} in this space"
            )));
        }
        for edit in edits {
            if let Edit::Comment(_, _, text) | Edit::Reply(_, text) = edit {
                self.engine.check_mentions(id, text)?;
            }
        }
        self.engine
            .edit(id, stream, |r| apply_edits(r.doc(), edits, &author))??;
        self.flush(id, stream).await?;
        self.save()
    }

    /// The documents holding this device's edits that the server has not
    /// acknowledged, with their text as this device has it (a filing's
    /// title and body; a space's library has none) and why they can no
    /// longer be sent, if they cannot. They are kept until sent or
    /// discarded ([`Self::discard_unsent`]).
    pub fn unsent(&mut self) -> Vec<UnsentDocument> {
        let waiting = self.engine.unsent();
        waiting
            .into_iter()
            .map(|u| {
                let text = (u.stream != library::stream(u.space))
                    .then(|| self.read(u.space, u.stream).ok())
                    .flatten()
                    .map(|f| (f.title, f.body));
                UnsentDocument {
                    space: u.space,
                    stream: u.stream,
                    changes: u.changes,
                    blocked: u.blocked,
                    text,
                }
            })
            .collect()
    }

    /// Drops this device's unacknowledged edits of a document; returns how
    /// many changes were dropped.
    pub fn discard_unsent(&mut self, id: SpaceId, stream: StreamId) -> Result<usize, ClientError> {
        let dropped = self.engine.discard_unsent(id, stream)?;
        self.save()?;
        Ok(dropped)
    }

    /// Reads a filing.
    pub fn read(&mut self, id: SpaceId, stream: StreamId) -> Result<Filing, ClientError> {
        let view = self.engine.view_mut(id).ok_or_else(|| no_space(id))?;
        let authors = view.authors(stream);
        let replica = view
            .existing_replica(stream)
            .ok_or_else(|| ClientError::NotFound(format!("no readable document {stream}")))?;
        let doc = replica.doc();
        let comments = filing::threads(doc, &authors)?
            .into_iter()
            .map(|t| {
                json!({
                    "thread": t.id,
                    "start": t.start,
                    "end": t.end,
                    "resolved": t.resolved,
                    "resolved_by": t.resolved_by.as_ref().map(|a| json!({
                        "author": a.name,
                        "verified": a.verified,
                    })),
                    "messages": t.messages.iter().map(|m| json!({
                        "author": m.author.name,
                        "verified": m.author.verified,
                        "text": m.text,
                        "at": m.at_ms.and_then(rfc3339),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(Filing {
            id: stream.to_hex(),
            title: filing::title(doc)?,
            body: filing::body(doc)?,
            comments,
            versions: filing::versions(doc, &authors)?
                .into_iter()
                .map(|v| NamedVersion {
                    name: v.name,
                    author: v.author.name,
                    verified: v.author.verified,
                    at: v.at_ms.and_then(rfc3339),
                })
                .collect(),
            changes: doc.get_changes(&[]).len(),
        })
    }

    /// The library of a space.
    pub fn library(&mut self, id: SpaceId) -> Result<Vec<Listed>, ClientError> {
        let entries = self.library_entries(id)?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let folder = e.folder().to_owned();
                match e {
                    library::Entry::Folder { id, name, .. } => Listed {
                        kind: "folder",
                        id,
                        name,
                        size: None,
                        folder,
                        versions: None,
                    },
                    library::Entry::Document { stream, title, .. } => Listed {
                        kind: "document",
                        id: stream.to_hex(),
                        name: title,
                        size: None,
                        folder,
                        versions: None,
                    },
                    library::Entry::Discussion { stream, title } => Listed {
                        kind: "discussion",
                        id: stream.to_hex(),
                        name: title,
                        size: None,
                        folder,
                        versions: None,
                    },
                    library::Entry::File {
                        id,
                        manifest,
                        versions,
                        ..
                    } => Listed {
                        kind: "file",
                        id,
                        name: manifest.name.clone(),
                        size: Some(manifest.plaintext_size),
                        folder,
                        versions: Some(versions.len() + 1),
                    },
                }
            })
            .collect())
    }

    /// The versions of a library file (by name or id), the current one
    /// last: each version's file id (what `file get` takes), name and size.
    pub fn file_versions(&mut self, id: SpaceId, file: &str) -> Result<Vec<Value>, ClientError> {
        let entry = self.entry_id(id, "file", file)?;
        let found = self.library_entries(id)?.into_iter().find_map(|e| match e {
            library::Entry::File {
                id,
                manifest,
                versions,
                ..
            } if id == entry => Some((manifest, versions)),
            _ => None,
        });
        let (current, versions) =
            found.ok_or_else(|| ClientError::NotFound(format!("no file {file} in this space")))?;
        Ok(versions
            .iter()
            .chain(std::iter::once(&*current))
            .enumerate()
            .map(|(n, m)| {
                json!({
                    "version": n + 1,
                    "file": m.file_id.to_string(),
                    "name": m.name,
                    "size": m.plaintext_size,
                    "current": m.file_id == current.file_id,
                })
            })
            .collect())
    }

    /// The id of the library entry of `kind` (`folder`, `document`,
    /// `file`) whose id or name is `key`; a name several entries share is
    /// refused (give the id).
    pub fn entry_id(&mut self, id: SpaceId, kind: &str, key: &str) -> Result<String, ClientError> {
        let listed = self.library(id)?;
        let of_kind = || listed.iter().filter(|e| e.kind == kind);
        if let Some(e) = of_kind().find(|e| e.id == key) {
            return Ok(e.id.clone());
        }
        let named: Vec<&Listed> = of_kind().filter(|e| e.name == key).collect();
        match named.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(ClientError::NotFound(format!(
                "no {kind} {key:?} in this space"
            ))),
            _ => Err(ClientError::Usage(format!(
                "{} entries of kind {kind} are named {key:?}: give the id",
                named.len()
            ))),
        }
    }

    /// Changes the space's library (the entries of its folders) and sends
    /// the change.
    async fn library_edit<T>(
        &mut self,
        id: SpaceId,
        edit: impl FnOnce(&mut automerge::AutoCommit) -> Result<T, amicus_core::document::DocumentError>,
    ) -> Result<T, ClientError> {
        self.sync(id).await?;
        let lib = library::stream(id);
        let out = self.engine.edit(id, lib, |r| edit(r.doc()))??;
        self.flush(id, lib).await?;
        self.save()?;
        Ok(out)
    }

    /// Creates a folder in `parent` (empty: at the top); returns its id.
    pub async fn new_folder(
        &mut self,
        id: SpaceId,
        name: &str,
        parent: &str,
    ) -> Result<String, ClientError> {
        let folder = hex::encode(amicus_core::MessageId::random().0);
        self.library_edit(id, |doc| library::add_folder(doc, &folder, name, parent))
            .await?;
        Ok(folder)
    }

    /// Renames a library entry (a document as listed, a file, a folder).
    pub async fn rename_entry(
        &mut self,
        id: SpaceId,
        entry: &str,
        name: &str,
    ) -> Result<(), ClientError> {
        self.library_edit(id, |doc| library::rename(doc, entry, name))
            .await
    }

    /// Moves a library entry into `folder` (empty: the top).
    pub async fn move_entry(
        &mut self,
        id: SpaceId,
        entry: &str,
        folder: &str,
    ) -> Result<(), ClientError> {
        self.library_edit(id, |doc| library::move_to(doc, entry, folder))
            .await
    }

    /// Removes a library entry (a folder only once empty). A removed
    /// file's chunks stay on the server; its listing is gone.
    pub async fn remove_entry(&mut self, id: SpaceId, entry: &str) -> Result<(), ClientError> {
        self.library_edit(id, |doc| library::remove(doc, entry))
            .await
    }

    /// Puts back an entry removed from the library, as it was just before
    /// its last removal.
    pub async fn restore_entry(&mut self, id: SpaceId, entry: &str) -> Result<(), ClientError> {
        self.library_edit(id, |doc| {
            let heads = library::before_removal(doc, entry)?;
            library::restore(doc, entry, &heads)
        })
        .await
    }

    fn library_entries(&mut self, id: SpaceId) -> Result<Vec<library::Entry>, ClientError> {
        let lib = library::stream(id);
        let view = self.engine.view_mut(id).ok_or_else(|| no_space(id))?;
        match view.existing_replica(lib) {
            Some(r) => Ok(library::entries(r.doc())?),
            None => Ok(Vec::new()),
        }
    }

    /// Encrypts and uploads a file into the space's library, resuming an
    /// interrupted upload of the same path. `progress(done, total)` is
    /// called after each chunk.
    pub async fn put_file(
        &mut self,
        id: SpaceId,
        path: &Path,
        name: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<FileManifest, ClientError> {
        self.put_file_in(id, path, name, "", progress).await
    }

    /// [`Self::put_file`] into a folder of the library (empty: the top).
    pub async fn put_file_in(
        &mut self,
        id: SpaceId,
        path: &Path,
        name: &str,
        folder: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<FileManifest, ClientError> {
        let target = Target {
            space: id,
            folder: folder.to_owned(),
            replaces: None,
        };
        self.upload(path, name, target, progress).await
    }

    /// Uploads `path` as the new version of the library's file `entry` (its
    /// id); the version it replaces stays downloadable.
    pub async fn put_version(
        &mut self,
        id: SpaceId,
        path: &Path,
        entry: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<FileManifest, ClientError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned());
        let target = Target {
            space: id,
            folder: String::new(),
            replaces: Some(entry.to_owned()),
        };
        self.upload(path, &name, target, progress).await
    }

    /// Seals and sends a file as [`amicus_core::transfer::Upload`] says
    /// (resuming an interrupted upload of the same path from its record),
    /// lists it in the library, sends that, and only then forgets the
    /// record.
    async fn upload(
        &mut self,
        path: &Path,
        name: &str,
        target: Target,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<FileManifest, ClientError> {
        let space = target.space;
        self.sync(space).await?;
        // Refused before anything is sealed: a Reader, or no such file.
        self.engine.check_upload(&target).map_err(not_found)?;
        let unreadable = |e: std::io::Error| ClientError::Usage(format!("{}: {e}", path.display()));
        let size = tokio::fs::metadata(path).await.map_err(unreadable)?.len();
        let record_name = upload_record_name(space, path);
        let record = match self.home.read(&record_name)? {
            Some(bytes) => Some(self.saved_upload(&record_name, &bytes, &target)?),
            None => None,
        };
        let source = Source {
            name: name.to_owned(),
            media_type: media_type(name).to_owned(),
            size,
        };
        let mut upload = Upload::start(source, target.clone(), record.as_deref().map(|r| &r[..]))
            .map_err(|e| transfer_failed(e, None))?;
        let mut file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let mut buf = vec![0u8; amicus_core::files::CHUNK_SIZE];
        // The last error the server or the network gave, to say why a
        // transfer that gave up stopped.
        let mut last = None;
        let manifest = loop {
            let step = upload.step().map_err(|e| transfer_failed(e, last.take()))?;
            let answered = match step {
                UploadStep::Read { offset, len } => {
                    file.seek(std::io::SeekFrom::Start(offset))
                        .await
                        .map_err(unreadable)?;
                    let n = file.read(&mut buf[..len]).await.map_err(unreadable)?;
                    upload.read(&buf[..n])
                }
                UploadStep::Store(record) => {
                    self.home.write(&record_name, &record)?;
                    upload.stored()
                }
                UploadStep::Put { id, blob } => {
                    let sent = self.http.put_blob(&id.to_string(), blob).await;
                    let answered = upload.sent(sent.map_err(|(e, f)| {
                        last = Some(e);
                        f
                    }));
                    let (done, total) = upload.progress();
                    progress(done, total);
                    answered
                }
                UploadStep::AskMissing(ids) => {
                    let query = api::BlobQuery {
                        ids: ids.iter().map(ToString::to_string).collect(),
                    };
                    let answer = self
                        .http
                        .post::<api::MissingBlobs>("/v1/blobs/missing", &query)
                        .await;
                    upload.missing(answer.map(|m| missing_ids(&ids, &m)).map_err(|e| {
                        let f = http_failure(&e);
                        last = Some(e);
                        f
                    }))
                }
                UploadStep::Wait(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(())
                }
                UploadStep::Done(manifest) => break manifest,
            };
            answered.map_err(|e| transfer_failed(e, last.take()))?;
        };
        self.engine.list_upload(&target, &manifest)?;
        self.flush(space, library::stream(space)).await?;
        self.home.remove(&record_name)?;
        self.save()?;
        Ok(manifest)
    }

    /// An interrupted upload's record, as [`Upload::start`] reads it.
    /// Records the command wrote before (its progress and the chunk sent
    /// last; or the progress alone, the chunk in a file of its own) are
    /// read into that layout.
    fn saved_upload(
        &self,
        record_name: &str,
        bytes: &[u8],
        target: &Target,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        // Whole records only: a record of one layout never reads as the other.
        if let Some((&LEGACY_UPLOAD_VERSION, rest)) = bytes.split_first()
            && let Ok((record, [])) = postcard::take_from_bytes::<LegacyUpload>(rest)
        {
            return Ok(Interrupted::upgrade(
                record.progress,
                target.clone(),
                record.chunk,
            ));
        }
        if let Ok((progress, [])) = postcard::take_from_bytes::<UploadProgress>(bytes) {
            let legacy = format!("{record_name}.chunk");
            let chunk = self.home.read(&legacy)?.map(|c| c.to_vec());
            self.home.remove(&legacy)?;
            return Ok(Interrupted::upgrade(progress, target.clone(), chunk));
        }
        Ok(Zeroizing::new(bytes.to_vec()))
    }

    /// Downloads and decrypts a file of the library (by name or file id)
    /// into `out`, chunk by chunk.
    pub async fn get_file(
        &mut self,
        id: SpaceId,
        name_or_id: &str,
        out: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64, ClientError> {
        self.get_file_version(id, name_or_id, None, out, progress)
            .await
    }

    /// [`Self::get_file`] of one version: `version` counts from 1, the
    /// oldest (`None`: the current one); a version's own file id, as
    /// `file versions` lists it, also names it.
    pub async fn get_file_version(
        &mut self,
        id: SpaceId,
        name_or_id: &str,
        version: Option<usize>,
        out: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64, ClientError> {
        self.sync(id).await?;
        let manifest = self
            .engine
            .file(id, name_or_id, version)
            .map_err(not_found)?;
        let mut download = Download::start(manifest).map_err(|e| transfer_failed(e, None))?;
        let part = out.with_extension("part");
        let unwritable = |e: std::io::Error| ClientError::Usage(format!("{}: {e}", part.display()));
        let mut file = tokio::fs::File::create(&part).await.map_err(unwritable)?;
        let mut written = 0u64;
        let mut last = None;
        loop {
            match download
                .step()
                .map_err(|e| transfer_failed(e, last.take()))?
            {
                DownloadStep::Get(cid) => {
                    let got = self
                        .http
                        .get_blob(&cid.to_string(), amicus_core::transfer::MAX_BLOB)
                        .await
                        .map_err(|e| {
                            let f = http_failure(&e);
                            last = Some(e);
                            f
                        });
                    let plain = download
                        .got(got)
                        .map_err(|e| transfer_failed(e, last.take()))?;
                    if let Some(plain) = plain {
                        file.write_all(&plain).await.map_err(unwritable)?;
                        written += plain.len() as u64;
                        let (done, total) = download.progress();
                        progress(done, total);
                    }
                }
                DownloadStep::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                DownloadStep::Done => break,
            }
        }
        file.sync_all().await.map_err(unwritable)?;
        drop(file);
        tokio::fs::rename(&part, out)
            .await
            .map_err(|e| ClientError::Usage(format!("{}: {e}", out.display())))?;
        Ok(written)
    }

    /// Publishes a filing's current text into a public space, with a signed
    /// provenance record naming only opaque ids and Automerge heads.
    pub async fn publish(
        &mut self,
        id: SpaceId,
        stream: StreamId,
        public_space: SpaceId,
        doc_id: &str,
        language: Option<&str>,
    ) -> Result<(), ClientError> {
        self.sync(id).await?;
        let body = self
            .engine
            .publication(id, stream, public_space, doc_id, language)?;
        let _: Value = self
            .http
            .send(
                reqwest::Method::PUT,
                &format!("/v1/public/{}/docs/{doc_id}", public_space.to_hex()),
                &serde_json::to_value(&body).expect("a public copy encodes"),
            )
            .await?;
        Ok(())
    }

    /// Writes a case record in the space's register; returns its id.
    pub async fn new_record(
        &mut self,
        id: SpaceId,
        fields: &amicus_core::monitoring::Fields,
    ) -> Result<String, ClientError> {
        self.sync(id).await?;
        let record = self.engine.new_record(id, fields, now_ms())??;
        self.run(Intent::FlushSpace(id)).await?;
        self.save()?;
        Ok(record)
    }

    /// Writes the fields of a case record that differ from `before`.
    pub async fn edit_record(
        &mut self,
        id: SpaceId,
        record: &str,
        before: &amicus_core::monitoring::Fields,
        fields: &amicus_core::monitoring::Fields,
    ) -> Result<(), ClientError> {
        self.sync(id).await?;
        self.engine
            .edit_record(id, record, before, fields, now_ms())??;
        self.run(Intent::FlushSpace(id)).await?;
        self.save()
    }

    /// Takes a case record out of the space's register.
    pub async fn remove_record(&mut self, id: SpaceId, record: &str) -> Result<(), ClientError> {
        self.sync(id).await?;
        self.engine.remove_record(id, record)??;
        self.run(Intent::FlushSpace(id)).await?;
        self.save()
    }

    /// The space's case records, as this device holds them now.
    pub fn records(
        &mut self,
        id: SpaceId,
    ) -> Result<amicus_core::monitoring::Register, ClientError> {
        Ok(self.engine.records(id)?)
    }

    /// The aggregate of the space's records that publishing would send.
    pub fn aggregate(
        &mut self,
        id: SpaceId,
        title: &str,
        dims: &[amicus_core::monitoring::Dim],
        k: u32,
    ) -> Result<amicus_core::monitoring::Aggregate, ClientError> {
        Ok(self.engine.aggregate(id, title, dims, k)??)
    }

    /// Compares the published aggregate `pub_id` of `public_space` with
    /// this device's register of the space it names as its source, at the
    /// heads it names (after reading that space to its end).
    pub async fn check_aggregate(
        &mut self,
        public_space: SpaceId,
        pub_id: &str,
    ) -> Result<amicus_core::monitoring::Check, ClientError> {
        let path = format!("/v1/public/{}/aggregates/{pub_id}", public_space.to_hex());
        let v: Value = self.http.get(&path).await?;
        let published: amicus_core::monitoring::PublishedAggregate = serde_json::from_value(
            serde_json::json!({ "aggregate": v["aggregate"], "provenance": v["provenance"] }),
        )
        .map_err(|e| {
            ClientError::Protocol(format!("a published aggregate that does not decode: {e}"))
        })?;
        if let Ok(source) = SpaceId::from_hex(&published.provenance.source_space) {
            self.sync(source).await?;
        }
        Ok(self.engine.check_aggregate(&published)?)
    }

    /// Adds a violation type to the space's register (space managers).
    pub async fn add_violation_type(
        &mut self,
        id: SpaceId,
        code: &str,
        label: &str,
    ) -> Result<(), ClientError> {
        self.sync(id).await?;
        self.engine.add_violation_type(id, code, label)??;
        self.run(Intent::FlushSpace(id)).await?;
        self.save()
    }

    /// Publishes the counts of the space's records by `dims` (cells under
    /// `k` left out) as the aggregate `pub_id` of `public_space`, signed by
    /// this device; returns what was published.
    pub async fn publish_aggregate(
        &mut self,
        id: SpaceId,
        public_space: SpaceId,
        pub_id: &str,
        title: &str,
        dims: &[amicus_core::monitoring::Dim],
        k: u32,
    ) -> Result<amicus_core::monitoring::PublishedAggregate, ClientError> {
        self.sync(id).await?;
        let body = self
            .engine
            .publish_aggregate(id, public_space, pub_id, title, dims, k)??;
        let _: Value = self
            .http
            .send(
                reqwest::Method::PUT,
                &format!("/v1/public/{}/aggregates/{pub_id}", public_space.to_hex()),
                &serde_json::to_value(&body).expect("an aggregate encodes"),
            )
            .await?;
        Ok(body)
    }

    /// Withdraws the public copy `doc_id` of `public_space`, signing its
    /// withdrawal (the copy's `updated` time) with this device.
    pub async fn withdraw(&self, public_space: SpaceId, doc_id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/public/{}/docs/{doc_id}", public_space.to_hex());
        let copy: Value = self.http.get(&path).await?;
        let updated = copy["updated"]
            .as_u64()
            .ok_or_else(|| ClientError::Protocol("a public copy without `updated`".into()))?;
        let body = api::WithdrawPublic {
            withdrawal: amicus_core::publication::Withdrawal::sign(
                self.engine.device(),
                public_space,
                doc_id,
                updated,
            ),
        };
        let _: Value = self
            .http
            .send(
                reqwest::Method::DELETE,
                &path,
                &serde_json::to_value(&body).expect("a withdrawal encodes"),
            )
            .await?;
        Ok(())
    }

    /// Test hook: the engine itself, to play a misbehaving member.
    #[cfg(feature = "dangerous-test-hooks")]
    pub fn dangerous_engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The HTTP side, for commands that only call the API.
    pub fn http(&self) -> &Http {
        &self.http
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The version byte of the upload records this command wrote before
/// [`amicus_core::transfer`] wrote them ([`LegacyUpload`]).
const LEGACY_UPLOAD_VERSION: u8 = 2;

/// What an interrupted upload kept in the home before: its progress and
/// the sealed chunk that progress covers last.
#[derive(serde::Deserialize)]
struct LegacyUpload {
    progress: UploadProgress,
    chunk: Option<Vec<u8>>,
}

/// A transfer that stopped, as the command says it: with the server's or
/// the network's own error when the transfer gave up on one.
fn transfer_failed(e: TransferError, last: Option<ClientError>) -> ClientError {
    match (e, last) {
        (TransferError::Refused(_) | TransferError::GaveUp, Some(last)) => last,
        (TransferError::File(e), _) => ClientError::File(e),
        (TransferError::SourceLength { expected }, _) => ClientError::Usage(format!(
            "the file is not {expected} bytes long any more: it changed while being sent"
        )),
        (e @ TransferError::PartLength { .. }, _) => ClientError::Usage(e.to_string()),
        (e, _) => ClientError::Network(e.to_string()),
    }
}

/// A library lookup that failed: no such file (or version) is a
/// not-found, whatever else went wrong is as the engine says.
fn not_found(f: Failure) -> ClientError {
    match f.code {
        Code::Document => ClientError::NotFound(f.message),
        _ => f.into(),
    }
}

/// What a failed request tells a transfer's retry decision.
fn http_failure(e: &ClientError) -> HttpFailure {
    match e {
        ClientError::Server { status, .. } => HttpFailure::status(*status),
        ClientError::Network(_) => HttpFailure::NETWORK,
        // An answer that is not what the protocol says is not retried.
        _ => HttpFailure::status(0),
    }
}

/// The chunks of `asked` the server's answer names as missing; an id it
/// made up is not one of them.
fn missing_ids(asked: &[ChunkId], answer: &api::MissingBlobs) -> Vec<ChunkId> {
    asked
        .iter()
        .filter(|id| answer.missing.contains(&id.to_string()))
        .copied()
        .collect()
}

/// The home file where an interrupted upload of `path` into `space` is kept.
pub fn upload_record_name(space: SpaceId, path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut h = blake3::Hasher::new_derive_key("amicus client upload v1");
    h.update(&space.0);
    h.update(abs.to_string_lossy().as_bytes());
    format!("upload-{}", &h.finalize().to_hex()[..32])
}

fn media_type(name: &str) -> &'static str {
    match name
        .rsplit('.')
        .next()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _ => "application/octet-stream",
    }
}

/// Applies a command line's edits to a filing.
fn apply_edits(
    doc: &mut automerge::AutoCommit,
    edits: &[Edit],
    author: &str,
) -> Result<(), ClientError> {
    for edit in edits {
        match edit {
            Edit::Title(t) => filing::set_title(doc, t)?,
            Edit::Insert(at, text) => {
                let len = filing::body(doc)?.chars().count();
                let at = at.unwrap_or(len);
                if at > len {
                    return Err(ClientError::Usage(format!(
                        "position {at} is past the end ({len})"
                    )));
                }
                filing::splice(doc, at, 0, text)?;
            }
            Edit::Delete(at, n) => {
                let len = filing::body(doc)?.chars().count();
                if at + n > len {
                    return Err(ClientError::Usage(format!("deletion past the end ({len})")));
                }
                filing::splice(doc, *at, *n as isize, "")?;
            }
            Edit::Comment(start, end, text) => {
                let thread = hex::encode(amicus_core::MessageId::random().0);
                filing::comment(doc, &thread, *start, *end, author, text, now_ms())?;
            }
            Edit::Format(start, end, mark) => filing::format(doc, *start, *end, mark, true)?,
            Edit::Version(name) => filing::name_version(doc, name, author, now_ms())?,
            Edit::Reply(thread, text) => filing::reply(doc, thread, author, text, now_ms())?,
            Edit::Resolve(thread, resolved) => filing::resolve(doc, thread, *resolved)?,
        }
    }
    Ok(())
}

fn no_space(id: SpaceId) -> ClientError {
    ClientError::NotFound(format!("this device is not in space {id}"))
}
