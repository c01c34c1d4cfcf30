//! The native client: one device's state, its spaces and their documents,
//! kept in sync with a relay server.
//!
//! The device state (secrets, MLS store, epoch secrets, log cursors) lives
//! in an encrypted [`Home`]. Documents are rebuilt in memory by reading each
//! space's log from the start: commits already processed are skipped, every
//! envelope is opened again with the key ring, and the chain of the log is
//! verified again against the head this device saw last.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use amicus_core::at_rest::DeviceRecord;
use amicus_core::document::filing;
use amicus_core::files::{ChunkId, FileManifest, FileOpener, FileSealer, UploadProgress};
use amicus_core::identity::{Contacts, Device, IdentityPublicKey, Statement, UserIdentity};
use amicus_core::library;
use amicus_core::space::{HistoryPolicy, NewMember, PendingCommit, Role, Space, SpaceError};
use amicus_core::view::SpaceView;
use amicus_core::wire::{AppendItem, ClientFrame, LogEntry, RefusalCode, ServerFrame};
use amicus_core::{MlsProvider, SpaceId, StreamId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::home::Home;
use crate::transport::{Conn, Http};

const STATE_FILE: &str = "state";
const WAIT: Duration = Duration::from_secs(60);
/// KeyPackages a device keeps in the directory.
const KEY_PACKAGE_TARGET: usize = 20;

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

/// One space as this device sees it, and whether the current connection
/// is subscribed to it.
struct Local {
    view: SpaceView,
    /// Subscribed on the current connection, with nothing missing since.
    subscribed: bool,
    /// Where the last `Synced` said the server's log ends.
    synced: Option<u64>,
}

impl Local {
    fn new(view: SpaceView) -> Self {
        Self {
            view,
            subscribed: false,
            synced: None,
        }
    }
}

/// How many times a client subscribes again to a space whose server
/// announces entries it does not deliver, before saying so.
const SUBSCRIBE_ATTEMPTS: usize = 3;

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
    /// Named versions.
    pub versions: Vec<String>,
    /// Number of Automerge changes.
    pub changes: usize,
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
}

/// The device's client.
pub struct Client {
    home: Home,
    http: Http,
    identity: Option<UserIdentity>,
    device: Device,
    provider: MlsProvider,
    spaces: BTreeMap<SpaceId, Local>,
    contacts: Contacts,
    conn: Option<Conn>,
    /// When the connection last carried a frame (the server closes idle ones).
    last_io: std::time::Instant,
    next_request: u32,
    answers: HashMap<u32, ServerFrame>,
    /// Things the user should know (refused commits, unreadable entries).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({}, {})", self.device.user(), self.device.id())
    }
}

fn hexs<const N: usize>(s: &str) -> Result<[u8; N], ClientError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| ClientError::Protocol(format!("expected {} hex digits", N * 2)))?;
    Ok(out)
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str, ClientError> {
    v[name]
        .as_str()
        .ok_or_else(|| ClientError::Protocol(format!("the server's answer lacks `{name}`")))
}

impl Client {
    /// A client from its parts, not yet connected.
    fn assemble(
        home: Home,
        http: Http,
        identity: Option<UserIdentity>,
        device: Device,
        provider: MlsProvider,
        spaces: BTreeMap<SpaceId, Local>,
        contacts: Contacts,
    ) -> Self {
        Self {
            home,
            http,
            identity,
            device,
            provider,
            spaces,
            contacts,
            conn: None,
            last_io: std::time::Instant::now(),
            next_request: 1,
            answers: HashMap::new(),
            warnings: Vec::new(),
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
        let mut client = Self::assemble(
            home,
            http,
            Some(identity),
            device,
            MlsProvider::new(),
            BTreeMap::new(),
            Contacts::default(),
        );
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
        client.replenish_key_packages().await?;
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
        let spaces = restored
            .spaces
            .into_iter()
            .map(|(id, view)| (id, Local::new(view)))
            .collect();
        let mut http = Http::new(&server)?;
        http.set_token(token);
        Ok(Self::assemble(
            home,
            http,
            restored.identity,
            restored.device,
            restored.provider,
            spaces,
            restored.contacts,
        ))
    }

    /// Writes the device's state (encrypted) to its home.
    pub fn save(&mut self) -> Result<(), ClientError> {
        let record = DeviceRecord::capture(
            self.identity.as_ref(),
            &self.device,
            &self.provider,
            self.spaces.values_mut().map(|l| &mut l.view),
            &self.contacts,
        )
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let state = StateV3 {
            server: self.http.base().to_owned(),
            token: self.http.token().map(str::to_owned),
            record: record.encode().to_vec(),
        };
        let mut bytes = Zeroizing::new(vec![STATE_VERSION]);
        bytes.extend_from_slice(&postcard::to_allocvec(&state).expect("state encodes"));
        self.home.write(STATE_FILE, &bytes)?;
        Ok(())
    }

    /// Points the device at another server address (the same server moved).
    pub fn set_server(&mut self, server: &str) -> Result<(), ClientError> {
        let token = self.http.token().map(str::to_owned);
        self.http = Http::new(server)?;
        self.http.set_token(token);
        self.conn = None;
        for local in self.spaces.values_mut() {
            local.subscribed = false;
        }
        Ok(())
    }

    /// The user.
    pub fn user(&self) -> &UserId {
        self.device.user()
    }

    /// The device id (hex).
    pub fn device_id(&self) -> String {
        self.device.id().to_hex()
    }

    /// The user's safety number.
    pub fn safety_number(&self) -> String {
        self.device
            .certificate()
            .identity_key
            .safety_number(self.device.user())
    }

    /// Signs in: answers a challenge with the device key. If signing in
    /// fails (the server is unreachable, say), the previous session token is
    /// kept: it may well still be valid once the server is back.
    pub async fn login(&mut self) -> Result<(), ClientError> {
        let previous = self.http.token().map(str::to_owned);
        let signed_in = self.sign_in().await;
        if signed_in.is_err() {
            self.http.set_token(previous);
        }
        signed_in
    }

    async fn sign_in(&mut self) -> Result<(), ClientError> {
        self.http.set_token(None);
        let device = self.device.id().to_hex();
        let c: Value = self
            .http
            .post("/v1/challenge", &json!({ "device": device }))
            .await?;
        let challenge: [u8; 32] = hexs(field(&c, "challenge")?)?;
        let signature = self.device.sign_statement(Statement::SignIn, &challenge);
        let s: Value = self
            .http
            .post(
                "/v1/session",
                &json!({ "device": device, "challenge": hex::encode(challenge), "signature": hex::encode(signature) }),
            )
            .await?;
        self.http.set_token(Some(field(&s, "token")?.to_owned()));
        self.conn = None;
        Ok(())
    }

    /// Keeps [`KEY_PACKAGE_TARGET`] KeyPackages of this device in the directory.
    pub async fn replenish_key_packages(&mut self) -> Result<(), ClientError> {
        let me: Value = self
            .http
            .get(&format!("/v1/users/{}", self.device.user()))
            .await?;
        let have = me["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["device"] == self.device.id().to_hex())
            .and_then(|d| d["key_packages"].as_u64())
            .unwrap_or(0) as usize;
        if have >= KEY_PACKAGE_TARGET / 2 {
            return Ok(());
        }
        let kps = self
            .device
            .key_packages(&self.provider, KEY_PACKAGE_TARGET - have)?;
        // The private keys are in the MLS store: save it before the
        // KeyPackages can be used by anyone.
        self.save()?;
        let list: Vec<String> = kps.iter().map(hex::encode).collect();
        let _: Value = self
            .http
            .post("/v1/key-packages", &json!({ "key_packages": list }))
            .await?;
        Ok(())
    }

    /// Creates another device of this user, registers it with the server and
    /// stores its state in a new home at `dir` (this device must hold the
    /// user's identity key).
    pub async fn add_device(&self, dir: &Path, passphrase: &[u8]) -> Result<Client, ClientError> {
        let identity = self.identity.as_ref().ok_or_else(|| {
            ClientError::Usage(
                "this device does not hold the identity key; use the first device".into(),
            )
        })?;
        let device = identity.new_device();
        let cert = hex::encode(postcard::to_allocvec(device.certificate()).expect("encodes"));
        let mut client = Self::assemble(
            Home::create(dir, passphrase)?,
            Http::new(self.http.base())?,
            None,
            device,
            MlsProvider::new(),
            BTreeMap::new(),
            self.contacts.clone(),
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
        client.replenish_key_packages().await?;
        client.save()?;
        Ok(client)
    }

    async fn conn(&mut self) -> Result<&mut Conn, ClientError> {
        // The server closes connections idle for 90 s: start afresh before.
        if self.last_io.elapsed() > Duration::from_secs(60) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let token = match self.http.token() {
                Some(t) => t.to_owned(),
                None => {
                    self.login().await?;
                    self.http.token().unwrap_or_default().to_owned()
                }
            };
            let conn = match Conn::open(self.http.base(), &token).await {
                Ok(c) => c,
                Err(_) => {
                    // The token may have expired: sign in again once.
                    self.login().await?;
                    Conn::open(self.http.base(), self.http.token().unwrap_or_default()).await?
                }
            };
            self.conn = Some(conn);
            self.last_io = std::time::Instant::now();
            for local in self.spaces.values_mut() {
                local.subscribed = false;
            }
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    async fn send(&mut self, frame: ClientFrame) -> Result<(), ClientError> {
        let r = self.conn().await?.send(&frame).await;
        if r.is_err() {
            self.conn = None;
        }
        self.last_io = std::time::Instant::now();
        r
    }

    async fn recv(&mut self) -> Result<(), ClientError> {
        let frame = match self.conn().await?.recv(WAIT).await {
            Ok(f) => {
                self.last_io = std::time::Instant::now();
                f
            }
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        self.on_frame(frame)
    }

    fn on_frame(&mut self, frame: ServerFrame) -> Result<(), ClientError> {
        match frame {
            ServerFrame::Entry { space, entry } => self.on_entry(space, entry),
            ServerFrame::Synced {
                space, next_seq, ..
            } => {
                if let Some(l) = self.spaces.get_mut(&space) {
                    l.synced = Some(next_seq);
                    l.view.synced(next_seq);
                }
            }
            f @ (ServerFrame::Accepted { request, .. } | ServerFrame::Refused { request, .. }) => {
                self.answers.insert(request, f);
            }
            ServerFrame::Welcome { .. } | ServerFrame::Application { .. } | ServerFrame::Pong => {}
        }
        Ok(())
    }

    fn on_entry(&mut self, id: SpaceId, entry: LogEntry) {
        let Some(local) = self.spaces.get_mut(&id) else {
            return;
        };
        let applied = local.view.apply(&self.device, &self.provider, entry);
        if applied.missing.is_some() {
            // An entry was skipped on the way: subscribe again from it.
            local.subscribed = false;
        }
        if let Some(warning) = applied.warning {
            self.warnings.push(warning);
        }
    }

    /// Brings one space up to date with the server's log (reconnecting once
    /// if the connection dropped, for instance after an idle timeout).
    pub async fn sync(&mut self, id: SpaceId) -> Result<(), ClientError> {
        match self.sync_once(id).await {
            Err(ClientError::Network(_)) => {
                self.conn = None;
                self.sync_once(id).await
            }
            other => other,
        }
    }

    async fn sync_once(&mut self, id: SpaceId) -> Result<(), ClientError> {
        if self
            .spaces
            .get(&id)
            .ok_or_else(|| no_space(id))?
            .view
            .is_removed()
        {
            return Ok(());
        }
        // (Re)connects first: a new connection has no subscription.
        self.conn().await?;
        if !self.spaces[&id].subscribed {
            self.subscribe(id).await?;
        } else {
            let info: Value = match self.http.get(&format!("/v1/spaces/{}", id.to_hex())).await {
                Ok(v) => v,
                Err(ClientError::Server { status: 404, .. }) => {
                    self.spaces
                        .get_mut(&id)
                        .expect("present")
                        .view
                        .mark_removed();
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let target = info["next_seq"].as_u64().unwrap_or(0);
            while self.spaces[&id].view.read_to() < target {
                self.check_broken(id)?;
                if !self.spaces[&id].subscribed {
                    self.subscribe(id).await?;
                    continue;
                }
                self.recv().await?;
            }
        }
        self.check_broken(id)
    }

    /// Subscribes to a space from the first entry not read yet and reads
    /// the catch-up up to where the server's `Synced` says the log ends. If
    /// entries went missing on the way, asks again; a server that keeps
    /// announcing entries it does not deliver is reported as withholding.
    async fn subscribe(&mut self, id: SpaceId) -> Result<(), ClientError> {
        for _ in 0..SUBSCRIBE_ATTEMPTS {
            let request = self.request_id();
            let local = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
            local.synced = None;
            local.subscribed = false;
            let from = local.view.read_to();
            self.send(ClientFrame::Subscribe {
                request,
                space: id,
                from_seq: from,
            })
            .await?;
            let end = loop {
                if let Some(ServerFrame::Refused { message, .. }) = self.answers.remove(&request) {
                    let local = self.spaces.get_mut(&id).expect("present");
                    // A device removed from the space is no longer served.
                    if local.view.space().is_active() {
                        return Err(ClientError::Refused(message));
                    }
                    local.view.mark_removed();
                    return Ok(());
                }
                if let Some(end) = self.spaces[&id].synced {
                    break end;
                }
                self.recv().await?;
            };
            self.check_broken(id)?;
            let local = self.spaces.get_mut(&id).expect("present");
            // Gaps seen before the catch-up ended were filled by it if
            // everything up to its end was read.
            if local.view.read_to() >= end {
                local.subscribed = true;
                return Ok(());
            }
        }
        Err(ClientError::Withheld(format!(
            "the server says space {id} has {} entries but did not deliver entry {} after {SUBSCRIBE_ATTEMPTS} subscriptions: it is withholding part of the log",
            self.spaces[&id].synced.unwrap_or(0),
            self.spaces[&id].view.read_to()
        )))
    }

    fn check_broken(&self, id: SpaceId) -> Result<(), ClientError> {
        match self.spaces[&id].view.broken() {
            Some(reason) => Err(ClientError::Forked(reason.to_owned())),
            None => Ok(()),
        }
    }

    /// Joins every space whose Welcome waits for this device, then syncs all.
    pub async fn sync_all(&mut self) -> Result<(), ClientError> {
        self.accept_welcomes().await?;
        let ids: Vec<SpaceId> = self.spaces.keys().copied().collect();
        for id in ids {
            self.sync(id).await?;
        }
        self.save()
    }

    async fn accept_welcomes(&mut self) -> Result<(), ClientError> {
        let w: Value = self.http.get("/v1/welcomes").await?;
        for item in w["welcomes"].as_array().into_iter().flatten() {
            let id = item["id"].as_u64().unwrap_or(0);
            let space = SpaceId::from_hex(field(item, "space")?)
                .map_err(|_| ClientError::Protocol("bad space id".into()))?;
            if !self.spaces.contains_key(&space) {
                let welcome = hex::decode(field(item, "welcome")?)
                    .map_err(|_| ClientError::Protocol("bad Welcome".into()))?;
                let own = self.device.certificate().identity_key;
                match Space::join(&self.provider, &self.device, &own, &welcome) {
                    Ok(s) => {
                        self.spaces.insert(space, Local::new(SpaceView::new(s)));
                        self.save()?;
                    }
                    Err(e) => self
                        .warnings
                        .push(format!("refused the invitation to space {space}: {e}")),
                }
            }
            self.http.delete(&format!("/v1/welcomes/{id}")).await?;
        }
        self.replenish_key_packages().await
    }

    fn request_id(&mut self) -> u32 {
        self.next_request = self.next_request.wrapping_add(1).max(1);
        self.next_request
    }

    /// Appends an item and waits for the server's answer.
    async fn append(
        &mut self,
        space: SpaceId,
        item: AppendItem,
    ) -> Result<Result<(u64, [u8; 32]), (RefusalCode, String)>, ClientError> {
        let request = self.request_id();
        self.send(ClientFrame::Append {
            request,
            space,
            item,
        })
        .await?;
        loop {
            match self.answers.remove(&request) {
                Some(ServerFrame::Accepted { seq, hash, .. }) => return Ok(Ok((seq, hash))),
                Some(ServerFrame::Refused { code, message, .. }) => {
                    return Ok(Err((code, message)));
                }
                _ => self.recv().await?,
            }
        }
    }

    /// Sends a commit built by `intent` against the current state; if another
    /// commit took the epoch, processes it and builds the commit again.
    async fn commit<F>(&mut self, id: SpaceId, mut intent: F) -> Result<u64, ClientError>
    where
        F: AsyncIntent,
    {
        for _attempt in 0..20 {
            self.sync(id).await?;
            // A commit sent before the client stopped (crashed, or lost
            // its connection) and not in the log now that it has been read
            // to its end was never accepted: forget it.
            let local = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
            local.view.set_pending_commit(None);
            discard_pending(local.view.space_mut(), &self.provider)?;
            let pending: PendingCommit = {
                let claims = intent.prepare(self, id).await?;
                let local = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
                // §6.1: the last entry seen and its hash (genesis if none).
                let log = local.view.log_position();
                intent.stage(
                    local.view.space_mut(),
                    &self.provider,
                    &self.device,
                    log,
                    claims,
                )?
            };
            let epoch = self.spaces[&id].view.space().epoch();
            // Write-ahead: if the answer is lost, the commit found in the log
            // is recognised as ours (see `on_entry`).
            self.spaces
                .get_mut(&id)
                .expect("present")
                .view
                .set_pending_commit(Some(pending.commit.clone()));
            self.save()?;
            let item = AppendItem::Commit {
                epoch,
                commit: pending.commit.clone(),
                welcome: pending.welcome.clone(),
                aad: pending.aad.to_bytes(),
            };
            match self.append(id, item).await? {
                Ok(_) => {
                    let local = self.spaces.get_mut(&id).expect("present");
                    local.view.set_pending_commit(None);
                    let space = local.view.space_mut();
                    let new_epoch = match space.commit_accepted(&self.provider) {
                        Ok(e) => e,
                        // Our commit came back through the log first and
                        // was merged there.
                        Err(SpaceError::NoPendingCommit) if space.epoch() > epoch => space.epoch(),
                        Err(e) => return Err(e.into()),
                    };
                    self.save()?;
                    self.write_epoch_record(id).await?;
                    return Ok(new_epoch);
                }
                Err((RefusalCode::CommitConflict { current_epoch }, _)) => {
                    let local = self.spaces.get_mut(&id).expect("present");
                    local.view.set_pending_commit(None);
                    // The winner may have arrived first: merging it already
                    // discarded our pending commit.
                    discard_pending(local.view.space_mut(), &self.provider)?;
                    self.sync(id).await?;
                    if self.spaces[&id].view.space().epoch() < current_epoch {
                        return Err(ClientError::Refused(format!(
                            "could not follow space {id} to epoch {current_epoch}; see the warnings"
                        )));
                    }
                }
                Err((_, message)) => {
                    let local = self.spaces.get_mut(&id).expect("present");
                    local.view.set_pending_commit(None);
                    discard_pending(local.view.space_mut(), &self.provider)?;
                    return Err(ClientError::Refused(message));
                }
            }
        }
        Err(ClientError::Refused(
            "the space kept changing; 20 attempts to commit lost their epoch".into(),
        ))
    }

    async fn write_epoch_record(&mut self, id: SpaceId) -> Result<(), ClientError> {
        let local = &self.spaces[&id];
        let record = local
            .view
            .space()
            .seal_epoch_record(&self.device, local.view.head())?;
        match self.append(id, AppendItem::Envelope(record)).await? {
            Ok(_) => Ok(()),
            Err((_, message)) => {
                self.warnings
                    .push(format!("the epoch record was not stored: {message}"));
                Ok(())
            }
        }
    }

    /// Creates a confidential space (history policy `full`) with this device
    /// as its space manager, and its library.
    pub async fn create_space(&mut self) -> Result<SpaceId, ClientError> {
        let identity_key = self.device.certificate().identity_key;
        let space = Space::create(
            &self.provider,
            &self.device,
            identity_key,
            HistoryPolicy::Full,
        )?;
        let id = space.id();
        let _: Value = self
            .http
            .post(
                "/v1/spaces",
                &json!({ "id": id.to_hex(), "kind": "confidential" }),
            )
            .await?;
        self.spaces.insert(id, Local::new(SpaceView::new(space)));
        self.save()?;
        self.sync(id).await?;
        self.write_epoch_record(id).await?;
        let stream = library::stream(id);
        let local = self.spaces.get_mut(&id).expect("present");
        library::init(local.view.replica(stream, &self.device).doc())?;
        self.flush(id, stream).await?;
        self.save()?;
        Ok(id)
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
        if let Some(list) = v["spaces"].as_array_mut() {
            for s in list {
                let joined = s["id"]
                    .as_str()
                    .and_then(|h| SpaceId::from_hex(h).ok())
                    .is_some_and(|id| self.spaces.contains_key(&id));
                s["joined"] = json!(joined);
            }
        }
        Ok(v)
    }

    /// The ids of the confidential spaces this device holds.
    pub fn spaces(&self) -> Vec<SpaceId> {
        self.spaces.keys().copied().collect()
    }

    /// Looks up a user's identity key and checks it against the one seen
    /// before (trust on first use).
    async fn identity_of(
        &mut self,
        user: &UserId,
    ) -> Result<(IdentityPublicKey, Value), ClientError> {
        let v: Value = self.http.get(&format!("/v1/users/{user}")).await?;
        let key = IdentityPublicKey(hexs(field(&v, "identity_key")?)?);
        let mut certificates = Vec::new();
        for d in v["devices"].as_array().into_iter().flatten() {
            certificates.push(
                hex::decode(field(d, "certificate")?)
                    .map_err(|_| ClientError::Protocol("bad certificate".into()))?,
            );
        }
        // Trust on first use: a changed key is refused until people compare
        // safety numbers.
        self.contacts.check_listing(user, key, &certificates)?;
        Ok((key, v))
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
        let (key, _) = self.identity_of(&user).await?;
        self.commit(
            id,
            Invite {
                user,
                key,
                role,
                claimed: Vec::new(),
            },
        )
        .await
    }

    /// Removes a user and all their devices from the space.
    pub async fn remove(&mut self, id: SpaceId, user: &str) -> Result<u64, ClientError> {
        let user = UserId::new(user).map_err(|e| ClientError::Usage(e.to_string()))?;
        self.commit(id, Removal { user }).await
    }

    /// The members of a space: user, device, role and safety number.
    pub fn members(&self, id: SpaceId) -> Result<Vec<Value>, ClientError> {
        let local = self.spaces.get(&id).ok_or_else(|| no_space(id))?;
        let policy = local.view.space().policy()?;
        Ok(local
            .view
            .space()
            .members()?
            .into_iter()
            .map(|m| {
                let safety = policy
                    .members
                    .get(&m.user)
                    .map(|p| p.identity_key.safety_number(&m.user));
                json!({ "user": m.user.as_str(), "device": m.device.to_hex(), "role": format!("{:?}", m.role), "safety_number": safety })
            })
            .collect())
    }

    /// The space's epoch and safety code (epoch authenticator).
    pub fn epoch(&self, id: SpaceId) -> Result<(u64, String), ClientError> {
        let local = self.spaces.get(&id).ok_or_else(|| no_space(id))?;
        Ok((
            local.view.space().epoch(),
            hex::encode(local.view.space().epoch_authenticator()),
        ))
    }

    /// True if this device was removed from the space.
    pub fn is_removed(&self, id: SpaceId) -> bool {
        self.spaces.get(&id).is_some_and(|l| l.view.is_removed())
    }

    /// Entries this device could not open (sealed under epochs it cannot derive).
    pub fn unreadable(&self, id: SpaceId) -> usize {
        self.spaces.get(&id).map_or(0, |l| l.view.unreadable())
    }

    /// Reads entries handed over out of band (as a seized or malicious
    /// server could); used to show what a device can and cannot decrypt.
    pub fn ingest(&mut self, id: SpaceId, entries: Vec<LogEntry>) {
        for e in entries {
            self.on_entry(id, e);
        }
    }

    /// Every log entry of a space, from the server (members only).
    pub async fn fetch_log(&mut self, id: SpaceId) -> Result<Vec<LogEntry>, ClientError> {
        let mut conn = Conn::open(self.http.base(), self.http.token().unwrap_or_default()).await?;
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

    async fn flush(&mut self, id: SpaceId, stream: StreamId) -> Result<(), ClientError> {
        for _ in 0..20 {
            let local = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
            let envelope = local.view.flush(stream, &self.device)?;
            let Some(envelope) = envelope else {
                return Ok(());
            };
            let answer = self.append(id, AppendItem::Envelope(envelope)).await;
            let local = self.spaces.get_mut(&id).expect("present");
            let replica = local.view.existing_replica(stream).expect("flushed above");
            let answer = match answer {
                Ok(a) => a,
                Err(e) => {
                    // Unanswered: send these changes again next time (the
                    // document drops duplicates if the server had them).
                    replica.flush_refused();
                    return Err(e);
                }
            };
            match answer {
                Ok(_) => {
                    replica.flush_accepted();
                    return Ok(());
                }
                Err((RefusalCode::StaleEpoch { current_epoch }, _)) => {
                    replica.flush_refused();
                    self.sync(id).await?;
                    if self.spaces[&id].view.space().epoch() < current_epoch {
                        return Err(ClientError::Refused(format!(
                            "could not follow space {id} to epoch {current_epoch}; see the warnings"
                        )));
                    }
                }
                Err((RefusalCode::RateLimited { retry_after_ms }, _)) => {
                    replica.flush_refused();
                    tokio::time::sleep(Duration::from_millis(u64::from(retry_after_ms))).await;
                }
                Err((_, message)) => {
                    replica.flush_refused();
                    return Err(ClientError::Refused(message));
                }
            }
        }
        Err(ClientError::Refused(
            "the space kept changing epoch; try again".into(),
        ))
    }

    /// Creates a filing in the space's library; returns its id.
    pub async fn new_document(
        &mut self,
        id: SpaceId,
        title: &str,
    ) -> Result<StreamId, ClientError> {
        self.sync(id).await?;
        let stream = StreamId::random();
        let local = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        filing::init(local.view.replica(stream, &self.device).doc(), title)?;
        self.flush(id, stream).await?;
        let lib = library::stream(id);
        let local = self.spaces.get_mut(&id).expect("present");
        library::add_document(
            local.view.replica(lib, &self.device).doc(),
            stream,
            title,
            "",
        )?;
        self.flush(id, lib).await?;
        self.save()?;
        Ok(stream)
    }

    /// Applies edits to a filing and sends them as one envelope.
    pub async fn edit(
        &mut self,
        id: SpaceId,
        stream: StreamId,
        edits: &[Edit],
    ) -> Result<(), ClientError> {
        self.sync(id).await?;
        let local = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        let replica = local
            .view
            .existing_replica(stream)
            .ok_or_else(|| ClientError::NotFound(format!("no document {stream} in this space")))?;
        let doc = replica.doc();
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
                    let author = self.device.user().to_string();
                    let thread = hex::encode(amicus_core::MessageId::random().0);
                    filing::comment(doc, &thread, *start, *end, &author, text, now_ms())?;
                }
                Edit::Format(start, end, mark) => filing::format(doc, *start, *end, mark, true)?,
                Edit::Version(name) => {
                    let author = self.device.user().to_string();
                    filing::name_version(doc, name, &author, now_ms())?;
                }
            }
        }
        self.flush(id, stream).await?;
        self.save()
    }

    /// Reads a filing.
    pub fn read(&mut self, id: SpaceId, stream: StreamId) -> Result<Filing, ClientError> {
        let local = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        let replica = local
            .view
            .existing_replica(stream)
            .ok_or_else(|| ClientError::NotFound(format!("no readable document {stream}")))?;
        let doc = replica.doc();
        let comments = filing::threads(doc)?
            .into_iter()
            .map(|t| {
                json!({
                    "thread": t.id,
                    "start": t.start,
                    "end": t.end,
                    "resolved": t.resolved,
                    "messages": t.messages.iter().map(|(a, m)| json!({ "author": a, "text": m })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(Filing {
            id: stream.to_hex(),
            title: filing::title(doc)?,
            body: filing::body(doc)?,
            comments,
            versions: filing::versions(doc)?.into_iter().map(|v| v.name).collect(),
            changes: doc.get_changes(&[]).len(),
        })
    }

    /// The library of a space.
    pub fn library(&mut self, id: SpaceId) -> Result<Vec<Listed>, ClientError> {
        let entries = self.library_entries(id)?;
        Ok(entries
            .into_iter()
            .map(|e| match e {
                library::Entry::Folder { id, name, .. } => Listed {
                    kind: "folder",
                    id,
                    name,
                    size: None,
                },
                library::Entry::Document { stream, title, .. } => Listed {
                    kind: "document",
                    id: stream.to_hex(),
                    name: title,
                    size: None,
                },
                library::Entry::File { manifest, .. } => Listed {
                    kind: "file",
                    id: manifest.file_id.to_string(),
                    name: manifest.name.clone(),
                    size: Some(manifest.plaintext_size),
                },
            })
            .collect())
    }

    fn library_entries(&mut self, id: SpaceId) -> Result<Vec<library::Entry>, ClientError> {
        let lib = library::stream(id);
        let local = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        match local.view.existing_replica(lib) {
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
        self.sync(id).await?;
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
        let size = meta.len();
        let upload_name = upload_file_name(id, path);
        let spool_name = format!("{upload_name}.chunk");
        let mut sealer = None;
        if let Some(bytes) = self.home.read(&upload_name)?
            && let Ok(saved) = postcard::from_bytes::<UploadProgress>(&bytes)
            && saved.plaintext_size() == size
        {
            // Upload the chunk that was spooled when the upload stopped.
            if let Some(blob) = self.home.read(&spool_name)? {
                let cid = ChunkId::of(&blob);
                self.http.put_blob(&cid.to_string(), blob.to_vec()).await?;
                self.home.remove(&spool_name)?;
            }
            let ids: Vec<String> = saved.chunk_ids().iter().map(|c| c.to_string()).collect();
            let m: Value = self
                .http
                .post("/v1/blobs/missing", &json!({ "ids": ids }))
                .await?;
            if m["missing"].as_array().is_some_and(|a| a.is_empty()) {
                sealer = Some(FileSealer::resume(saved)?);
            }
        }
        let resumed = sealer.is_some();
        let mut sealer = match sealer {
            Some(s) => s,
            None => FileSealer::new(name, media_type(name), size)?,
        };
        let total = sealer.chunk_count();
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
        let mut buf = vec![0u8; amicus_core::files::CHUNK_SIZE];
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            let chunks = match sealer.push(&buf[..n]) {
                Ok(c) => c,
                Err(amicus_core::files::FileError::SourceChanged) if resumed => {
                    // The file changed since the interrupted upload: start
                    // afresh under a new secret (no nonce is reused).
                    self.home.remove(&upload_name)?;
                    return Box::pin(self.put_file(id, path, name, progress)).await;
                }
                Err(e) => return Err(e.into()),
            };
            for chunk in chunks {
                self.upload_chunk(&sealer, &upload_name, &spool_name, chunk)
                    .await?;
                progress(sealer.progress().chunks_emitted(), total);
            }
        }
        while let Some(chunk) = sealer.next_trailing_chunk()? {
            self.upload_chunk(&sealer, &upload_name, &spool_name, chunk)
                .await?;
            progress(sealer.progress().chunks_emitted(), total);
        }
        let (rest, manifest) = sealer.finish()?;
        debug_assert!(rest.is_empty(), "every chunk was taken one by one");
        let lib = library::stream(id);
        let local = self.spaces.get_mut(&id).expect("present");
        library::add_file(local.view.replica(lib, &self.device).doc(), &manifest, "")?;
        self.flush(id, lib).await?;
        self.home.remove(&upload_name)?;
        self.save()?;
        Ok(manifest)
    }

    /// Write-ahead: spool the sealed chunk and persist the progress that
    /// covers it, then upload it, then drop the spool.
    async fn upload_chunk(
        &mut self,
        sealer: &FileSealer,
        upload_name: &str,
        spool_name: &str,
        chunk: amicus_core::files::SealedChunk,
    ) -> Result<(), ClientError> {
        self.home.write(spool_name, &chunk.blob)?;
        let progress = postcard::to_allocvec(&sealer.progress()).expect("progress encodes");
        self.home.write(upload_name, &Zeroizing::new(progress))?;
        self.http
            .put_blob(&chunk.id.to_string(), chunk.blob)
            .await?;
        Ok(self.home.remove(spool_name)?)
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
        self.sync(id).await?;
        let manifest = self
            .library_entries(id)?
            .into_iter()
            .find_map(|e| match e {
                library::Entry::File { manifest, .. }
                    if manifest.name == name_or_id
                        || manifest.file_id.to_string() == name_or_id =>
                {
                    Some(manifest)
                }
                _ => None,
            })
            .ok_or_else(|| ClientError::NotFound(format!("no file {name_or_id} in this space")))?;
        let mut opener = FileOpener::new(&manifest)?;
        let part = out.with_extension("part");
        let mut file = tokio::fs::File::create(&part)
            .await
            .map_err(|e| ClientError::Usage(format!("{}: {e}", part.display())))?;
        let total = opener.chunk_count();
        let mut written = 0u64;
        for index in 0..total {
            let cid = manifest.chunk_ids[index as usize].to_string();
            let blob = self
                .http
                .get_blob(&cid, amicus_core::files::CHUNK_SIZE + 4096)
                .await?;
            let plain = opener.open_chunk(index, &blob)?;
            file.write_all(&plain)
                .await
                .map_err(|e| ClientError::Usage(format!("{}: {e}", part.display())))?;
            written += plain.len() as u64;
            progress(index + 1, total);
        }
        opener.finish()?;
        file.sync_all()
            .await
            .map_err(|e| ClientError::Usage(format!("{}: {e}", part.display())))?;
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
        let filing = self.read(id, stream)?;
        let local = self.spaces.get_mut(&id).expect("read checked it");
        let heads: Vec<String> = local
            .view
            .existing_replica(stream)
            .expect("read checked it")
            .heads()
            .iter()
            .map(|h| hex::encode(h.0))
            .collect();
        let message = amicus_server::public::provenance_message(
            public_space,
            doc_id,
            &filing.title,
            &filing.body,
            &id.to_hex(),
            &stream.to_hex(),
            &heads,
        );
        let signature = self.device.sign_statement(Statement::Provenance, &message);
        let body = json!({
            "title": filing.title,
            "body": filing.body,
            "language": language,
            "provenance": {
                "source_space": id.to_hex(),
                "source_stream": stream.to_hex(),
                "heads": heads,
                "device": self.device.id().to_hex(),
                "signature": hex::encode(signature),
            }
        });
        let _: Value = self
            .http
            .send(
                reqwest::Method::PUT,
                &format!("/v1/public/{}/docs/{doc_id}", public_space.to_hex()),
                &body,
            )
            .await?;
        Ok(())
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

fn upload_file_name(space: SpaceId, path: &Path) -> String {
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

fn discard_pending(space: &mut Space, provider: &MlsProvider) -> Result<(), ClientError> {
    match space.commit_rejected(provider) {
        Ok(()) | Err(SpaceError::NoPendingCommit) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn no_space(id: SpaceId) -> ClientError {
    ClientError::NotFound(format!("this device is not in space {id}"))
}

/// A commit to make: `prepare` gathers what it needs from the server (again
/// at every attempt), `stage` builds it against the current state.
trait AsyncIntent {
    type Claims;
    async fn prepare(
        &mut self,
        client: &mut Client,
        id: SpaceId,
    ) -> Result<Self::Claims, ClientError>;
    fn stage(
        &mut self,
        space: &mut Space,
        provider: &MlsProvider,
        device: &Device,
        log: (u64, [u8; 32]),
        claims: Self::Claims,
    ) -> Result<PendingCommit, ClientError>;
}

struct Invite {
    user: UserId,
    key: IdentityPublicKey,
    role: Role,
    /// KeyPackages claimed at the first attempt, by device: a commit that
    /// lost its epoch never reached anyone, so they serve again.
    claimed: Vec<(String, Vec<u8>)>,
}

impl AsyncIntent for Invite {
    type Claims = Vec<Vec<u8>>;

    async fn prepare(
        &mut self,
        client: &mut Client,
        id: SpaceId,
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let local = client.spaces.get(&id).ok_or_else(|| no_space(id))?;
        let present: Vec<String> = local
            .view
            .space()
            .members()?
            .into_iter()
            .filter(|m| m.user == self.user)
            .map(|m| m.device.to_hex())
            .collect();
        if self.claimed.is_empty() {
            let claimed: Value = client
                .http
                .post(
                    &format!("/v1/users/{}/key-packages/claim", self.user),
                    &json!({ "except": present }),
                )
                .await?;
            self.claimed = claimed["key_packages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| {
                    let device = k["device"].as_str()?.to_owned();
                    let kp = hex::decode(k["key_package"].as_str()?).ok()?;
                    Some((device, kp))
                })
                .collect();
        }
        let kps: Vec<Vec<u8>> = self
            .claimed
            .iter()
            .filter(|(d, _)| !present.contains(d))
            .map(|(_, kp)| kp.clone())
            .collect();
        if kps.is_empty() {
            return Err(ClientError::NotFound(format!(
                "{} has no device that could be added (all are members, or none has a KeyPackage left)",
                self.user
            )));
        }
        Ok(kps)
    }

    fn stage(
        &mut self,
        space: &mut Space,
        provider: &MlsProvider,
        device: &Device,
        log: (u64, [u8; 32]),
        key_packages: Vec<Vec<u8>>,
    ) -> Result<PendingCommit, ClientError> {
        let role = space.policy()?.role(&self.user).unwrap_or(self.role);
        let member = NewMember {
            user: self.user.clone(),
            identity_key: self.key,
            role,
            key_packages,
        };
        Ok(space.add_members(provider, device, &[member], log)?)
    }
}

struct Removal {
    user: UserId,
}

impl AsyncIntent for Removal {
    type Claims = ();

    async fn prepare(&mut self, _client: &mut Client, _id: SpaceId) -> Result<(), ClientError> {
        Ok(())
    }

    fn stage(
        &mut self,
        space: &mut Space,
        provider: &MlsProvider,
        device: &Device,
        log: (u64, [u8; 32]),
        (): (),
    ) -> Result<PendingCommit, ClientError> {
        Ok(space.remove_user(provider, device, &self.user, log)?)
    }
}
