//! # amicus-client-wasm
//!
//! The browser client of Amicus: [`amicus_core`] exported through
//! wasm-bindgen, sans-IO like the core itself. The web app's JavaScript
//! (`web/amicus.js`) owns the WebSocket, `fetch` and IndexedDB; this crate
//! owns every key and every check. Frames go in as bytes and come out as
//! bytes; events come out as plain objects whose TypeScript types are
//! declared below and emitted into the generated `.d.ts`.
//!
//! - [`Device`]: one browser device: its identity (the first device holds
//!   the user's identity key), MLS state, the spaces it is in (each a
//!   [`SpaceView`] rebuilt from the space's log, with the same fork and
//!   rollback detection as the native client), and its documents.
//! - [`StateKey`]: the passphrase-derived key that seals the device's state
//!   for IndexedDB ([`amicus_core::at_rest`], the native client's format).
//! - [`Upload`] and [`Download`]: a file sealed and opened chunk by chunk.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use amicus_core::at_rest::{DeviceRecord, UnsentEdits};
use amicus_core::document::filing;
use amicus_core::files::{FileError, FileManifest, FileOpener, FileSealer, UploadProgress};
use amicus_core::identity::{
    Contacts, Device as CoreDevice, DeviceCertificate, IdentityPublicKey, Statement, UserIdentity,
};
use amicus_core::library;
use amicus_core::pairing;
use amicus_core::publication::{self, CopyCheck, Provenance};
use amicus_core::recovery::{self, RecoveryCode};
use amicus_core::space::{
    HistoryPolicy, NewMember, PendingCommit, Processed, Role, Space, SpaceError,
};
use amicus_core::view::SpaceView;
use amicus_core::wire::{AppendItem, ClientFrame, RefusalCode, ServerFrame};
use amicus_core::{MlsProvider, SpaceId, StreamId, UserId};
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** What a server frame changed. */
export type ClientEvent =
  | { kind: "entry"; space: string; streams: string[]; membership: boolean; warning?: string; missing?: number; broken?: string }
  | { kind: "synced"; space: string; next_seq: number; broken?: string }
  | { kind: "accepted"; request: number; seq: number }
  | { kind: "refused"; request: number; code: string; current_epoch?: number; retry_after_ms?: number; message: string }
  | { kind: "welcome"; space: string; welcome: string }
  | { kind: "presence"; space: string; user: string; device: string; payload: any }
  | { kind: "pong" }
  | { kind: "ignored"; reason: string };
/** A space this device is in. */
export interface SpaceSummary { id: string; epoch: number; authenticator: string; removed: boolean; broken?: string; unreadable: number; role?: string }
/** A member device of a space. */
export interface Member { user: string; device: string; role: string; safety_number?: string }
/** An entry of a space's library. */
export interface LibraryEntry { kind: "folder" | "document" | "file"; id: string; name: string; folder?: string; size?: number }
/** A filing as read. */
export interface FilingText { title: string; body: string; marks: { mark: string; start: number; end: number }[]; comments: { thread: string; start: number; end: number; resolved: boolean; messages: { author: string; text: string }[] }[] }
export interface Publication { title: string; body: string; language: string | null; provenance: { source_space: string; source_stream: string; heads: string[]; device: string; signature: string } }
export interface Filing extends FilingText { versions: { name: string; author: string; body: string }[] }
/** The edits the server has not acknowledged, sealed (absent if none). */
export interface UnsentEdits { documents: number; sealed?: Uint8Array }
/** The identity holder's answer to a pairing offer. */
export interface PairingAnswer { device: string; certificate: string; answer: string }
/** An interrupted upload, as its sealed progress describes it. */
export interface SavedUploadInfo { file: string; space: string; folder: string; name: string; size: number; done: number; chunks: number }
/** A sealed chunk to store under its id. */
export interface SealedChunk { index: number; id: string; blob: Uint8Array }
"#;

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn js(v: &Value) -> JsValue {
    js_sys::JSON::parse(&v.to_string()).unwrap_or(JsValue::NULL)
}

fn space_id(hex: &str) -> Result<SpaceId, JsError> {
    SpaceId::from_hex(hex).map_err(|_| err(format!("not a space id: {hex}")))
}

fn stream_id(hex: &str) -> Result<StreamId, JsError> {
    StreamId::from_hex(hex).map_err(|_| err(format!("not a document id: {hex}")))
}

fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// The sealed item holds [`DeviceRecord::encode`].
const STATE_ITEM: &str = "browser-state";
/// The sealed item holding the edits not yet acknowledged.
const UNSENT_ITEM: &str = "browser-unsent";

/// The key that seals a device's state at rest (Argon2id of the passphrase).
#[wasm_bindgen]
pub struct StateKey(amicus_core::at_rest::StateKey);

#[wasm_bindgen]
impl StateKey {
    /// A new random salt, to store beside the sealed state.
    pub fn new_salt() -> Vec<u8> {
        amicus_core::at_rest::new_salt().to_vec()
    }

    /// Derives the key (about a second: Argon2id, 19 MiB).
    pub fn derive(passphrase: &str, salt: &[u8]) -> Result<StateKey, JsError> {
        if salt.len() < 16 {
            return Err(err("the salt must be at least 16 bytes"));
        }
        Ok(Self(amicus_core::at_rest::StateKey::derive(
            passphrase.as_bytes(),
            salt,
        )))
    }
}

/// A pairing code made on the identity holder (shown to the user, who
/// types it into the new browser; zeroized when freed).
#[wasm_bindgen]
pub struct PairingCode(pairing::PairingCode);

#[wasm_bindgen]
impl PairingCode {
    /// A fresh code.
    #[wasm_bindgen(constructor)]
    pub fn new() -> PairingCode {
        PairingCode(pairing::PairingCode::random())
    }

    /// The code to show: six groups of four digits.
    pub fn display(&self) -> String {
        self.0.display()
    }

    /// The channel (hex) to open with `POST /v1/pairing/open` before
    /// showing the code: the server keeps only an offer made on it.
    pub fn channel(&self) -> String {
        hex::encode(self.0.channel())
    }
}

impl Default for PairingCode {
    fn default() -> Self {
        Self::new()
    }
}

/// A browser being linked to an existing user (PROTOCOL §3.6).
#[wasm_bindgen]
pub struct Linking {
    new: pairing::NewDevice,
    code: pairing::PairingCode,
}

#[wasm_bindgen]
impl Linking {
    /// Generates this browser's device key for `user`, with the code typed
    /// from the other device (Latin or Arabic digits; spaces, dashes
    /// ignored).
    #[wasm_bindgen(constructor)]
    pub fn new(user: &str, code: &str) -> Result<Linking, JsError> {
        let user = UserId::new(user).map_err(err)?;
        Ok(Linking {
            new: pairing::NewDevice::generate(user),
            code: pairing::PairingCode::parse(code).map_err(err)?,
        })
    }

    /// The channel (hex) the other device opened for this code, named in
    /// `POST /v1/pairing`.
    pub fn channel(&self) -> String {
        hex::encode(self.code.channel())
    }

    /// The offer (hex) for `POST /v1/pairing`.
    pub fn offer(&self) -> String {
        hex::encode(self.new.offer(&self.code))
    }

    /// Checks the answer (hex) and returns the new, certified device.
    pub fn complete(&self, answer: &str) -> Result<Device, JsError> {
        let answer = hex::decode(answer).map_err(err)?;
        let device = self.new.complete(&self.code, &answer).map_err(err)?;
        Ok(Device::assemble(None, device, MlsProvider::new()))
    }
}

/// One browser device.
#[wasm_bindgen]
pub struct Device {
    identity: Option<UserIdentity>,
    device: CoreDevice,
    provider: MlsProvider,
    spaces: BTreeMap<SpaceId, SpaceView>,
    contacts: Contacts,
}

#[wasm_bindgen]
impl Device {
    /// A new user with this browser as its first device (holding the
    /// user's identity key).
    pub fn create(user: &str) -> Result<Device, JsError> {
        let user = UserId::new(user).map_err(err)?;
        let identity = UserIdentity::generate(user);
        let device = identity.new_device();
        Ok(Self::assemble(Some(identity), device, MlsProvider::new()))
    }

    fn assemble(identity: Option<UserIdentity>, device: CoreDevice, provider: MlsProvider) -> Self {
        Self {
            identity,
            device,
            provider,
            spaces: BTreeMap::new(),
            contacts: Contacts::default(),
        }
    }

    /// Opens a sealed state (from IndexedDB). Each space's log is then
    /// read from the first entry the saved state had not processed
    /// ([`Device::subscribe`] does).
    pub fn unseal(sealed: &[u8], key: &StateKey) -> Result<Device, JsError> {
        let bytes = key.0.open(STATE_ITEM, sealed).map_err(err)?;
        let record = DeviceRecord::decode(&bytes).map_err(err)?;
        let r = record.restore().map_err(err)?;
        Ok(Self {
            identity: r.identity,
            device: r.device,
            provider: r.provider,
            spaces: r.spaces,
            contacts: r.contacts,
        })
    }

    /// Seals the whole state for IndexedDB. Save after every call that
    /// changes keys (joining, commits, KeyPackages, presence messages)
    /// *before* sending what it produced.
    pub fn seal(&mut self, key: &StateKey) -> Result<Vec<u8>, JsError> {
        let record = DeviceRecord::capture(
            self.identity.as_ref(),
            &self.device,
            &self.provider,
            self.spaces.values_mut(),
            &self.contacts,
        )
        .map_err(err)?;
        let bytes = record.encode();
        Ok(key.0.seal(STATE_ITEM, &bytes))
    }

    /// Seals the edits the server has not acknowledged yet, for IndexedDB
    /// (beside the state, item `unsent`): `{documents, sealed}`, `sealed`
    /// absent when no document has any. Store it whenever documents change:
    /// after a reload, [`Device::adopt_unsent`] takes them back.
    #[wasm_bindgen(unchecked_return_type = "UnsentEdits")]
    pub fn seal_unsent(&mut self, key: &StateKey) -> JsValue {
        let list: Vec<UnsentEdits> = self
            .spaces
            .iter_mut()
            .flat_map(|(space, view)| {
                view.unsent()
                    .into_iter()
                    .map(|(stream, changes)| UnsentEdits {
                        space: *space,
                        stream,
                        changes,
                    })
            })
            .collect();
        let out = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&out, &"documents".into(), &list.len().into());
        if !list.is_empty() {
            let sealed = key.0.seal(UNSENT_ITEM, &UnsentEdits::encode(&list));
            let _ = js_sys::Reflect::set(
                &out,
                &"sealed".into(),
                &js_sys::Uint8Array::from(&sealed[..]).into(),
            );
        }
        out.into()
    }

    /// Takes back the edits sealed by [`Device::seal_unsent`] before a
    /// reload; returns the documents (`"space/stream"`) to flush once their
    /// space is read. Edits of a space this device no longer follows are
    /// dropped.
    #[wasm_bindgen(unchecked_return_type = "string[]")]
    pub fn adopt_unsent(&mut self, sealed: &[u8], key: &StateKey) -> Result<JsValue, JsError> {
        let bytes = key.0.open(UNSENT_ITEM, sealed).map_err(err)?;
        let mut documents = Vec::new();
        for mut edits in UnsentEdits::decode(&bytes).map_err(err)? {
            let Some(view) = self.spaces.get_mut(&edits.space) else {
                continue;
            };
            let changes = std::mem::take(&mut edits.changes);
            view.adopt(&self.device, edits.stream, changes)
                .map_err(err)?;
            documents.push(format!(
                "{}/{}",
                edits.space.to_hex(),
                edits.stream.to_hex()
            ));
        }
        Ok(js(&json!(documents)))
    }

    /// Answers a new device's pairing offer (hex, from `GET /v1/pairing`)
    /// made with `code`: returns `{certificate, answer}` (hex) for
    /// `POST /v1/devices` and then `POST /v1/pairing/{id}/answer`. Only the
    /// browser holding the user's identity key can; an offer made with
    /// another code is refused.
    #[wasm_bindgen(unchecked_return_type = "PairingAnswer")]
    pub fn accept_pairing(&self, code: &PairingCode, offer: &str) -> Result<JsValue, JsError> {
        let identity = self.identity.as_ref().ok_or_else(|| {
            err("this browser does not hold your identity key: link the new browser from the first one")
        })?;
        let offer = hex::decode(offer).map_err(err)?;
        let (certificate, answer) =
            pairing::accept_offer(identity, &code.0, &offer).map_err(err)?;
        Ok(js(&json!({
            "device": certificate.device.to_hex(),
            "certificate": hex::encode(postcard::to_allocvec(&certificate).map_err(err)?),
            "answer": hex::encode(answer),
        })))
    }

    /// A new recovery code and the kit it opens (the identity key sealed
    /// under it): `{code, kit, verifier}`, the code to show once, and the
    /// kit and the verifier of the code's access value (hex) for `PUT
    /// /v1/recovery`, which replaces the earlier ones. Only the browser
    /// holding the identity key can.
    #[wasm_bindgen(unchecked_return_type = "{ code: string; kit: string; verifier: string }")]
    pub fn new_recovery_kit(&self) -> Result<JsValue, JsError> {
        let identity = self.identity.as_ref().ok_or_else(|| {
            err("this browser does not hold your identity key: make the recovery code in the first one")
        })?;
        let code = RecoveryCode::random();
        let kit = recovery::seal_kit(identity, &code);
        let verifier = recovery::access_verifier(&code.access());
        Ok(js(&json!({
            "code": code.display().as_str(),
            "kit": hex::encode(kit),
            "verifier": hex::encode(verifier),
        })))
    }

    /// The access value (hex) of a typed recovery code, shown to the server
    /// to fetch the kit and register the recovered device.
    pub fn recovery_access(code: &str) -> Result<String, JsError> {
        let code = RecoveryCode::parse(code).map_err(err)?;
        Ok(hex::encode(*code.access()))
    }

    /// A new device for `user` recovered from its kit (hex, from `POST
    /// /v1/recovery/{user}/kit`) with the code typed (Latin or Arabic digits):
    /// it holds the identity key again, and its certificate (see
    /// [`Device::certificate`]) goes to `POST /v1/recovery/{user}/devices`.
    pub fn recover(user: &str, code: &str, kit: &str) -> Result<Device, JsError> {
        let user = UserId::new(user).map_err(err)?;
        let code = RecoveryCode::parse(code).map_err(err)?;
        let kit = hex::decode(kit).map_err(err)?;
        let identity = recovery::open_kit(&user, &code, &kit).map_err(err)?;
        let device = identity.new_device();
        Ok(Self::assemble(Some(identity), device, MlsProvider::new()))
    }

    /// Whether this browser holds the user's identity key (it can link
    /// other devices).
    pub fn holds_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// The user name.
    pub fn user(&self) -> String {
        self.device.user().to_string()
    }

    /// This device's id (hex).
    pub fn device_id(&self) -> String {
        self.device.id().to_hex()
    }

    /// The user's safety number, to compare out of band.
    pub fn safety_number(&self) -> String {
        self.device
            .certificate()
            .identity_key
            .safety_number(self.device.user())
    }

    /// The device certificate (hex), for `POST /v1/register` or `/v1/devices`.
    pub fn certificate(&self) -> String {
        hex::encode(postcard::to_allocvec(self.device.certificate()).expect("encodes"))
    }

    /// Signs a sign-in challenge (hex) from `POST /v1/challenge`.
    pub fn sign_in(&self, challenge: &str) -> Result<String, JsError> {
        let c = hex::decode(challenge).map_err(err)?;
        if c.len() != 32 {
            return Err(err("a challenge is 32 bytes"));
        }
        Ok(hex::encode(
            self.device.sign_statement(Statement::SignIn, &c),
        ))
    }

    /// `n` new KeyPackages (hex) for `POST /v1/key-packages`. Their private
    /// keys are in the state: seal and store it before uploading them.
    #[wasm_bindgen(unchecked_return_type = "string[]")]
    pub fn key_packages(&self, n: usize) -> Result<JsValue, JsError> {
        let kps = self
            .device
            .key_packages(&self.provider, n.min(100))
            .map_err(err)?;
        Ok(js(&json!(kps.iter().map(hex::encode).collect::<Vec<_>>())))
    }

    /// Checks a user's listing from `GET /v1/users/{user}`: every device
    /// must be certified by the identity key, and the key must be the one
    /// seen before (trust on first use). Returns the identity key (hex).
    pub fn trust(&mut self, user: &str, listing: &str) -> Result<String, JsError> {
        let user = UserId::new(user).map_err(err)?;
        let v: Value = serde_json::from_str(listing).map_err(err)?;
        let key_hex = v["identity_key"]
            .as_str()
            .ok_or_else(|| err("the listing lacks identity_key"))?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(key_hex, &mut key).map_err(err)?;
        if &user == self.device.user() && key != self.device.certificate().identity_key.0 {
            return Err(err(
                "the server lists another identity key for your own user: do not trust this server",
            ));
        }
        let certificates = v["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                d["certificate"]
                    .as_str()
                    .and_then(|c| hex::decode(c).ok())
                    .ok_or_else(|| err("a device lacks its certificate"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.contacts
            .check_listing(&user, IdentityPublicKey(key), &certificates)
            .map_err(err)?;
        Ok(key_hex.to_owned())
    }

    /// Checks a public copy's provenance in this browser, without relying
    /// on the server's check: `listing` is the author's `GET
    /// /v1/users/{author}` answer, checked as [`Self::trust`] does (every
    /// device certified by the identity key, the key the one seen before);
    /// the device the record names must be among them, and its signature
    /// must hold over this copy (`public_space`, `doc`, `title`, `body`) and
    /// the record's source. Returns the author's safety number.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_provenance(
        &mut self,
        author: &str,
        listing: &str,
        public_space: &str,
        doc: &str,
        title: &str,
        body: &str,
        provenance: &str,
    ) -> Result<String, JsError> {
        let key = self.trust(author, listing)?;
        let record: Provenance = serde_json::from_str(provenance).map_err(err)?;
        let v: Value = serde_json::from_str(listing).map_err(err)?;
        let certificate = v["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["certificate"].as_str().and_then(|c| hex::decode(c).ok()))
            .filter_map(|c| postcard::from_bytes::<DeviceCertificate>(&c).ok())
            .find(|c| c.device.to_hex() == record.device)
            .ok_or_else(|| err("the device named by the provenance is not one of its author's"))?;
        record
            .verify(space_id(public_space)?, doc, title, body, &certificate)
            .map_err(err)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&key, &mut bytes).map_err(err)?;
        Ok(IdentityPublicKey(bytes).safety_number(&UserId::new(author).map_err(err)?))
    }

    // ---- frames -------------------------------------------------------

    /// A `Subscribe` frame for a space, from the next entry this device
    /// has not read in this run.
    pub fn subscribe(&self, request: u32, space: &str) -> Result<Vec<u8>, JsError> {
        let id = space_id(space)?;
        let view = self.view(id)?;
        Ok(ClientFrame::Subscribe {
            request,
            space: id,
            from_seq: view.read_to(),
        }
        .encode())
    }

    /// A `Ping` frame.
    pub fn ping() -> Vec<u8> {
        ClientFrame::Ping.encode()
    }

    /// Reads one server frame and says what it changed.
    #[wasm_bindgen(unchecked_return_type = "ClientEvent")]
    pub fn receive(&mut self, frame: &[u8]) -> Result<JsValue, JsError> {
        let frame = ServerFrame::decode(frame).map_err(err)?;
        let event = match frame {
            ServerFrame::Entry { space, entry } => match self.spaces.get_mut(&space) {
                Some(view) => {
                    let applied = view.apply(&self.device, &self.provider, entry);
                    json!({
                        "kind": "entry",
                        "space": space.to_hex(),
                        "streams": applied.streams.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
                        "membership": applied.membership,
                        "warning": applied.warning,
                        "missing": applied.missing,
                        "broken": view.broken(),
                    })
                }
                None => {
                    json!({ "kind": "ignored", "reason": "an entry of a space this device is not in" })
                }
            },
            ServerFrame::Synced {
                space, next_seq, ..
            } => match self.spaces.get_mut(&space) {
                Some(view) => {
                    view.synced(next_seq);
                    json!({ "kind": "synced", "space": space.to_hex(), "next_seq": next_seq, "broken": view.broken() })
                }
                None => json!({ "kind": "ignored", "reason": "a space this device is not in" }),
            },
            ServerFrame::Accepted { request, seq, .. } => {
                json!({ "kind": "accepted", "request": request, "seq": seq })
            }
            ServerFrame::Refused {
                request,
                code,
                message,
            } => {
                let mut v = json!({ "kind": "refused", "request": request, "message": message });
                let name = match code {
                    RefusalCode::CommitConflict { current_epoch } => {
                        v["current_epoch"] = json!(current_epoch);
                        "commit_conflict"
                    }
                    RefusalCode::StaleEpoch { current_epoch } => {
                        v["current_epoch"] = json!(current_epoch);
                        "stale_epoch"
                    }
                    RefusalCode::RateLimited { retry_after_ms } => {
                        v["retry_after_ms"] = json!(retry_after_ms);
                        "rate_limited"
                    }
                    RefusalCode::TooLarge => "too_large",
                    RefusalCode::Forbidden => "forbidden",
                    RefusalCode::Malformed => "malformed",
                    RefusalCode::Unavailable => "unavailable",
                };
                v["code"] = json!(name);
                v
            }
            ServerFrame::Welcome { space, welcome } => {
                json!({ "kind": "welcome", "space": space.to_hex(), "welcome": hex::encode(welcome) })
            }
            ServerFrame::Application { space, message } => self.presence_in(space, &message),
            ServerFrame::Pong => json!({ "kind": "pong" }),
        };
        Ok(js(&event))
    }

    fn presence_in(&mut self, space: SpaceId, message: &[u8]) -> Value {
        let Some(view) = self.spaces.get_mut(&space) else {
            return json!({ "kind": "ignored", "reason": "a space this device is not in" });
        };
        match view.space_mut().process(&self.provider, message) {
            Ok(Processed::Application { device, payload }) => {
                let user = view
                    .space()
                    .members()
                    .ok()
                    .and_then(|r| r.into_iter().find(|m| m.device == device))
                    .map(|m| m.user.to_string())
                    .unwrap_or_default();
                let payload: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                json!({ "kind": "presence", "space": space.to_hex(), "user": user, "device": device.to_hex(), "payload": payload })
            }
            Ok(_) => json!({ "kind": "ignored", "reason": "not an application message" }),
            Err(e) => json!({ "kind": "ignored", "reason": e.to_string() }),
        }
    }

    /// An `Append` frame carrying a presence message (an MLS application
    /// message: relayed live, never stored). It advances this device's
    /// sending ratchet: seal the state before sending the frame.
    pub fn presence(
        &mut self,
        request: u32,
        space: &str,
        payload: &str,
    ) -> Result<Vec<u8>, JsError> {
        let id = space_id(space)?;
        let _: Value = serde_json::from_str(payload).map_err(err)?;
        if payload.len() > 1024 {
            return Err(err("a presence message is at most 1 KiB"));
        }
        let view = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        let message = view
            .space_mut()
            .create_message(&self.provider, &self.device, payload.as_bytes())
            .map_err(err)?;
        Ok(append(request, id, AppendItem::Application(message)))
    }

    // ---- spaces -------------------------------------------------------

    /// Creates a confidential space with this device as its space manager;
    /// returns its id. Then: `POST /v1/spaces`, subscribe, append
    /// [`Device::epoch_record`], and flush the library ([`Device::init_library`]).
    pub fn create_space(&mut self) -> Result<String, JsError> {
        let key = self.device.certificate().identity_key;
        let space =
            Space::create(&self.provider, &self.device, key, HistoryPolicy::Full).map_err(err)?;
        let id = space.id();
        self.spaces.insert(id, SpaceView::new(space));
        Ok(id.to_hex())
    }

    /// Starts the library of a space this device created.
    pub fn init_library(&mut self, space: &str) -> Result<(), JsError> {
        let id = space_id(space)?;
        let device = &self.device;
        let view = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        library::init(view.replica(library::stream(id), device).doc()).map_err(err)
    }

    /// Joins a space from a Welcome (hex); returns the space id.
    pub fn join(&mut self, welcome: &str) -> Result<String, JsError> {
        let bytes = hex::decode(welcome).map_err(err)?;
        let own = self.device.certificate().identity_key;
        let space = Space::join(&self.provider, &self.device, &own, &bytes).map_err(err)?;
        let id = space.id();
        self.spaces
            .entry(id)
            .or_insert_with(|| SpaceView::new(space));
        Ok(id.to_hex())
    }

    /// True if this device is in the space.
    pub fn has_space(&self, space: &str) -> bool {
        space_id(space).is_ok_and(|id| self.spaces.contains_key(&id))
    }

    /// Marks the device as removed from a space (the server refuses to
    /// serve it).
    pub fn mark_removed(&mut self, space: &str) -> Result<(), JsError> {
        let id = space_id(space)?;
        self.view_mut(id)?.mark_removed();
        Ok(())
    }

    /// The spaces this device is in.
    #[wasm_bindgen(unchecked_return_type = "SpaceSummary[]")]
    pub fn spaces(&self) -> JsValue {
        let me = self.device.user();
        let list: Vec<Value> = self
            .spaces
            .values()
            .map(|v| {
                let role = v.space().policy().ok().and_then(|p| p.role(me));
                json!({
                    "id": v.id().to_hex(),
                    "epoch": v.space().epoch(),
                    "authenticator": hex::encode(v.space().epoch_authenticator()),
                    "removed": v.is_removed(),
                    "broken": v.broken(),
                    "unreadable": v.unreadable(),
                    "role": role.map(role_name),
                })
            })
            .collect();
        js(&json!(list))
    }

    /// The member devices of a space, with roles and safety numbers.
    #[wasm_bindgen(unchecked_return_type = "Member[]")]
    pub fn members(&self, space: &str) -> Result<JsValue, JsError> {
        let view = self.view(space_id(space)?)?;
        let policy = view.space().policy().map_err(err)?;
        let list: Vec<Value> = view
            .space()
            .members()
            .map_err(err)?
            .into_iter()
            .map(|m| {
                let safety = policy
                    .members
                    .get(&m.user)
                    .map(|p| p.identity_key.safety_number(&m.user));
                json!({ "user": m.user.as_str(), "device": m.device.to_hex(), "role": role_name(m.role), "safety_number": safety })
            })
            .collect();
        Ok(js(&json!(list)))
    }

    /// Stages a commit adding every device of `user` whose KeyPackage was
    /// claimed (`key_packages`: hex strings) with `role` (`reader`,
    /// `contributor`, `content_manager`, `space_manager`); `identity_key`
    /// comes from [`Device::trust`]. Returns the `Append` frame; then call
    /// [`Device::commit_accepted`] or [`Device::commit_rejected`] with the
    /// server's answer.
    pub fn stage_invite(
        &mut self,
        request: u32,
        space: &str,
        user: &str,
        identity_key: &str,
        key_packages: Vec<String>,
        role: &str,
    ) -> Result<Vec<u8>, JsError> {
        let id = space_id(space)?;
        let user = UserId::new(user).map_err(err)?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(identity_key, &mut key).map_err(err)?;
        if self.contacts.key_of(&user) != Some(IdentityPublicKey(key)) {
            return Err(err(format!("check {user}'s listing with trust() first")));
        }
        let role = parse_role(role)?;
        let kps = key_packages
            .iter()
            .map(|k| hex::decode(k).map_err(err))
            .collect::<Result<Vec<_>, _>>()?;
        if kps.is_empty() {
            return Err(err(format!(
                "{user} has no device that could be added (all are members, or none has a KeyPackage left)"
            )));
        }
        self.stage(request, id, |space, provider, device, log| {
            // A member's new devices keep the member's role.
            let role = space
                .policy()
                .ok()
                .and_then(|p| p.role(&user))
                .unwrap_or(role);
            let member = NewMember {
                user,
                identity_key: IdentityPublicKey(key),
                role,
                key_packages: kps,
            };
            space.add_members(provider, device, &[member], log)
        })
    }

    /// Stages a commit removing `user` and all their devices.
    pub fn stage_remove(
        &mut self,
        request: u32,
        space: &str,
        user: &str,
    ) -> Result<Vec<u8>, JsError> {
        let id = space_id(space)?;
        let user = UserId::new(user).map_err(err)?;
        self.stage(request, id, |space, provider, device, log| {
            space.remove_user(provider, device, &user, log)
        })
    }

    /// Stages a commit giving `user` another role.
    pub fn stage_role(
        &mut self,
        request: u32,
        space: &str,
        user: &str,
        role: &str,
    ) -> Result<Vec<u8>, JsError> {
        let id = space_id(space)?;
        let user = UserId::new(user).map_err(err)?;
        let role = parse_role(role)?;
        self.stage(request, id, |space, provider, device, log| {
            let mut policy = space.policy()?;
            policy
                .members
                .get_mut(&user)
                .ok_or(SpaceError::NoSuchMember)?
                .role = role;
            space.change_policy(provider, device, policy, log)
        })
    }

    /// Stages a commit built by `build` against the space's current epoch
    /// and log position, records it as pending (write-ahead: a commit found
    /// in the log is recognised as ours) and returns its `Append` frame.
    fn stage(
        &mut self,
        request: u32,
        id: SpaceId,
        build: impl FnOnce(
            &mut Space,
            &MlsProvider,
            &CoreDevice,
            (u64, [u8; 32]),
        ) -> Result<PendingCommit, SpaceError>,
    ) -> Result<Vec<u8>, JsError> {
        let view = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        // The caller has read the log to its end (a `Synced`): a commit
        // still pending from before (a reload, a lost answer) is not in it,
        // so the server never accepted it. Forget it.
        view.set_pending_commit(None);
        match view.space_mut().commit_rejected(&self.provider) {
            Ok(()) | Err(SpaceError::NoPendingCommit) => {}
            Err(e) => return Err(err(e)),
        }
        let log = view.log_position();
        let epoch = view.space().epoch();
        let pending = build(view.space_mut(), &self.provider, &self.device, log).map_err(err)?;
        view.set_pending_commit(Some(pending.commit.clone()));
        let item = AppendItem::Commit {
            epoch,
            commit: pending.commit,
            welcome: pending.welcome,
            aad: pending.aad.to_bytes(),
        };
        Ok(append(request, id, item))
    }

    /// The server accepted the staged commit: merges it; returns the epoch.
    pub fn commit_accepted(&mut self, space: &str) -> Result<u64, JsError> {
        let id = space_id(space)?;
        let provider = &self.provider;
        let view = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        view.set_pending_commit(None);
        match view.space_mut().commit_accepted(provider) {
            Ok(e) => Ok(e),
            // It came back through the log first and was merged there.
            Err(amicus_core::space::SpaceError::NoPendingCommit) => Ok(view.space().epoch()),
            Err(e) => Err(err(e)),
        }
    }

    /// The server refused the staged commit (or another took the epoch):
    /// drops it. Catch up with the log, then stage again.
    pub fn commit_rejected(&mut self, space: &str) -> Result<(), JsError> {
        let id = space_id(space)?;
        let provider = &self.provider;
        let view = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        view.set_pending_commit(None);
        match view.space_mut().commit_rejected(provider) {
            Ok(()) | Err(amicus_core::space::SpaceError::NoPendingCommit) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// An `Append` frame with the epoch record of the current epoch (after
    /// creating a space or a commit of this device).
    pub fn epoch_record(&self, request: u32, space: &str) -> Result<Vec<u8>, JsError> {
        let id = space_id(space)?;
        let view = self.view(id)?;
        let record = view
            .space()
            .seal_epoch_record(&self.device, view.head())
            .map_err(err)?;
        Ok(append(request, id, AppendItem::Envelope(record)))
    }

    // ---- documents ----------------------------------------------------

    /// Creates a filing and lists it in the library; returns its id. Flush
    /// the filing, then the library.
    pub fn new_document(&mut self, space: &str, title: &str) -> Result<String, JsError> {
        let id = space_id(space)?;
        let stream = StreamId::random();
        let device = &self.device;
        let view = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        filing::init(view.replica(stream, device).doc(), title).map_err(err)?;
        library::add_document(
            view.replica(library::stream(id), device).doc(),
            stream,
            title,
            "",
        )
        .map_err(err)?;
        Ok(stream.to_hex())
    }

    /// Adds a folder to the library; returns its id.
    pub fn new_folder(&mut self, space: &str, name: &str, parent: &str) -> Result<String, JsError> {
        let id = space_id(space)?;
        let device = &self.device;
        let view = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        let folder = hex::encode(amicus_core::MessageId::random().0);
        library::add_folder(
            view.replica(library::stream(id), device).doc(),
            &folder,
            name,
            parent,
        )
        .map_err(err)?;
        Ok(folder)
    }

    /// The id of a space's library stream.
    pub fn library_stream(space: &str) -> Result<String, JsError> {
        Ok(library::stream(space_id(space)?).to_hex())
    }

    /// The library of a space.
    #[wasm_bindgen(unchecked_return_type = "LibraryEntry[]")]
    pub fn library(&mut self, space: &str) -> Result<JsValue, JsError> {
        let id = space_id(space)?;
        let view = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        let Some(replica) = view.existing_replica(library::stream(id)) else {
            return Ok(js(&json!([])));
        };
        let list: Vec<Value> = library::entries(replica.doc())
            .map_err(err)?
            .into_iter()
            .map(|e| match e {
                library::Entry::Folder { id, name, parent } => {
                    json!({ "kind": "folder", "id": id, "name": name, "folder": parent })
                }
                library::Entry::Document {
                    stream,
                    title,
                    folder,
                } => json!({ "kind": "document", "id": stream.to_hex(), "name": title, "folder": folder }),
                library::Entry::File { manifest, folder } => json!({
                    "kind": "file", "id": manifest.file_id.to_string(), "name": manifest.name,
                    "size": manifest.plaintext_size, "folder": folder,
                }),
            })
            .collect();
        Ok(js(&json!(list)))
    }

    /// Reads a filing: its text with marks and comments, and its named
    /// versions (each rebuilt at its heads: the editor reads [`Self::text`]
    /// on each keystroke instead).
    #[wasm_bindgen(unchecked_return_type = "Filing")]
    pub fn read(&mut self, space: &str, stream: &str) -> Result<JsValue, JsError> {
        let mut out = self.text_value(space, stream)?;
        let doc = self.doc(space, stream)?;
        let mut versions = Vec::new();
        for v in filing::versions(doc).map_err(err)? {
            let body = filing::body_at(doc, &v).map_err(err)?;
            versions.push(json!({ "name": v.name, "author": v.author, "body": body }));
        }
        out["versions"] = json!(versions);
        Ok(js(&out))
    }

    /// A filing's named versions, without their text.
    #[wasm_bindgen(unchecked_return_type = "{ name: string; author: string }[]")]
    pub fn versions(&mut self, space: &str, stream: &str) -> Result<JsValue, JsError> {
        let doc = self.doc(space, stream)?;
        let list: Vec<Value> = filing::versions(doc)
            .map_err(err)?
            .into_iter()
            .map(|v| json!({ "name": v.name, "author": v.author }))
            .collect();
        Ok(js(&json!(list)))
    }

    /// A filing's title and text with its marks and commented passages.
    #[wasm_bindgen(unchecked_return_type = "FilingText")]
    pub fn text(&mut self, space: &str, stream: &str) -> Result<JsValue, JsError> {
        Ok(js(&self.text_value(space, stream)?))
    }

    /// The body of `PUT /v1/public/{public_space}/docs/{doc}` publishing a
    /// filing's current title and text, with its provenance signed by this
    /// device (PROTOCOL §15.1). `language` is a primary tag or empty.
    #[wasm_bindgen(unchecked_return_type = "Publication")]
    pub fn publication(
        &mut self,
        space: &str,
        stream: &str,
        public_space: &str,
        doc: &str,
        language: &str,
    ) -> Result<JsValue, JsError> {
        let public = space_id(public_space)?;
        let source = space_id(space)?;
        let stream_hex = stream_id(stream)?.to_hex();
        let replica = self.replica(space, stream)?;
        let heads: Vec<String> = replica.heads().iter().map(|h| h.to_string()).collect();
        let doc_ = replica.doc();
        let title = filing::title(doc_).map_err(err)?;
        let body = filing::body(doc_).map_err(err)?;
        let message = publication::provenance_message(
            public,
            doc,
            &title,
            &body,
            &source.to_hex(),
            &stream_hex,
            &heads,
        );
        let provenance = Provenance {
            source_space: source.to_hex(),
            source_stream: stream_hex,
            heads,
            device: self.device.id().to_hex(),
            signature: hex::encode(self.device.sign_statement(Statement::Provenance, &message)),
        };
        Ok(js(&json!({
            "title": title,
            "body": body,
            "language": if language.is_empty() { Value::Null } else { json!(language) },
            "provenance": provenance,
        })))
    }

    /// Compares a public copy with this device's replica of its source:
    /// `"matches"` (the title and text at the provenance's heads are the
    /// published ones), `"differs"`, or `"unknown"` (some head is not held
    /// here yet).
    #[wasm_bindgen(unchecked_return_type = "\"matches\" | \"differs\" | \"unknown\"")]
    pub fn check_copy(
        &mut self,
        space: &str,
        stream: &str,
        heads: Vec<String>,
        title: &str,
        body: &str,
    ) -> Result<JsValue, JsError> {
        let doc = self.doc(space, stream)?;
        Ok(JsValue::from_str(
            match publication::check_copy(doc, &heads, title, body).map_err(err)? {
                CopyCheck::Matches => "matches",
                CopyCheck::Differs => "differs",
                CopyCheck::Unknown => "unknown",
            },
        ))
    }

    fn text_value(&mut self, space: &str, stream: &str) -> Result<Value, JsError> {
        let doc = self.doc(space, stream)?;
        let marks: Vec<Value> = filing::marks(doc)
            .map_err(err)?
            .into_iter()
            .map(|(mark, start, end)| json!({ "mark": mark, "start": start, "end": end }))
            .collect();
        let comments: Vec<Value> = filing::threads(doc)
            .map_err(err)?
            .into_iter()
            .map(|t| {
                json!({
                    "thread": t.id, "start": t.start, "end": t.end, "resolved": t.resolved,
                    "messages": t.messages.iter().map(|(a, m)| json!({ "author": a, "text": m })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({
            "title": filing::title(doc).map_err(err)?,
            "body": filing::body(doc).map_err(err)?,
            "marks": marks,
            "comments": comments,
        }))
    }

    /// Replaces `delete` characters at `at` (Unicode code points) by `text`.
    pub fn splice(
        &mut self,
        space: &str,
        stream: &str,
        at: usize,
        delete: usize,
        text: &str,
    ) -> Result<(), JsError> {
        let doc = self.doc(space, stream)?;
        let len = filing::body(doc).map_err(err)?.chars().count();
        if at.saturating_add(delete) > len {
            return Err(err(format!("the edit reaches past the end ({len})")));
        }
        filing::splice(doc, at, delete as isize, text).map_err(err)
    }

    /// Sets the title.
    pub fn set_title(&mut self, space: &str, stream: &str, title: &str) -> Result<(), JsError> {
        filing::set_title(self.doc(space, stream)?, title).map_err(err)
    }

    /// Turns a mark (`bold`, `italic`, `underline`) on or off over `[start, end)`.
    pub fn format(
        &mut self,
        space: &str,
        stream: &str,
        start: usize,
        end: usize,
        mark: &str,
        on: bool,
    ) -> Result<(), JsError> {
        if !matches!(mark, "bold" | "italic" | "underline") {
            return Err(err(format!("unknown mark {mark}")));
        }
        filing::format(self.doc(space, stream)?, start, end, mark, on).map_err(err)
    }

    /// Comments on the passage `[start, end)`.
    pub fn comment(
        &mut self,
        space: &str,
        stream: &str,
        start: usize,
        end: usize,
        text: &str,
    ) -> Result<(), JsError> {
        let author = self.device.user().to_string();
        let thread = hex::encode(amicus_core::MessageId::random().0);
        let doc = self.doc(space, stream)?;
        filing::comment(doc, &thread, start, end, &author, text, now_ms()).map_err(err)
    }

    /// Names the current version.
    pub fn name_version(&mut self, space: &str, stream: &str, name: &str) -> Result<(), JsError> {
        let author = self.device.user().to_string();
        filing::name_version(self.doc(space, stream)?, name, &author, now_ms()).map_err(err)
    }

    /// An `Append` frame sealing the document's unsent changes, or
    /// `undefined` if there are none. Then [`Device::flush_accepted`] or
    /// [`Device::flush_refused`] (the changes are sent again next time).
    pub fn flush(
        &mut self,
        request: u32,
        space: &str,
        stream: &str,
    ) -> Result<Option<Vec<u8>>, JsError> {
        let id = space_id(space)?;
        let stream = stream_id(stream)?;
        let device = &self.device;
        let view = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        Ok(view
            .flush(stream, device)
            .map_err(err)?
            .map(|envelope| append(request, id, AppendItem::Envelope(envelope))))
    }

    /// The server stored the last flush.
    pub fn flush_accepted(&mut self, space: &str, stream: &str) -> Result<(), JsError> {
        self.replica(space, stream)?.flush_accepted();
        Ok(())
    }

    /// The last flush was refused or unanswered.
    pub fn flush_refused(&mut self, space: &str, stream: &str) -> Result<(), JsError> {
        self.replica(space, stream)?.flush_refused();
        Ok(())
    }

    /// Lists a sealed file (its manifest from [`Upload::finish`]) in the
    /// library; flush the library afterwards.
    pub fn add_file(&mut self, space: &str, manifest: &[u8], folder: &str) -> Result<(), JsError> {
        let id = space_id(space)?;
        let manifest: FileManifest =
            postcard::from_bytes(manifest).map_err(|_| err("not a file manifest"))?;
        let device = &self.device;
        let view = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        library::add_file(
            view.replica(library::stream(id), device).doc(),
            &manifest,
            folder,
        )
        .map_err(err)
    }

    /// Starts downloading a file of the library (by file id).
    pub fn download(&mut self, space: &str, file: &str) -> Result<Download, JsError> {
        let id = space_id(space)?;
        let view = self.spaces.get_mut(&id).ok_or_else(|| no_space(id))?;
        let replica = view
            .existing_replica(library::stream(id))
            .ok_or_else(|| err("this space has no library yet"))?;
        let manifest = library::entries(replica.doc())
            .map_err(err)?
            .into_iter()
            .find_map(|e| match e {
                library::Entry::File { manifest, .. } if manifest.file_id.to_string() == file => {
                    Some(manifest)
                }
                _ => None,
            })
            .ok_or_else(|| err(format!("no file {file} in this space")))?;
        let opener = FileOpener::new(&manifest).map_err(err)?;
        Ok(Download {
            chunk_ids: manifest.chunk_ids.iter().map(|c| c.to_string()).collect(),
            name: manifest.name.clone(),
            media_type: manifest.media_type.clone(),
            opener: Some(opener),
        })
    }

    fn view(&self, id: SpaceId) -> Result<&SpaceView, JsError> {
        self.spaces.get(&id).ok_or_else(|| no_space(id))
    }

    fn view_mut(&mut self, id: SpaceId) -> Result<&mut SpaceView, JsError> {
        self.spaces.get_mut(&id).ok_or_else(|| no_space(id))
    }

    fn replica(
        &mut self,
        space: &str,
        stream: &str,
    ) -> Result<&mut amicus_core::document::Replica, JsError> {
        let id = space_id(space)?;
        let stream = stream_id(stream)?;
        self.view_mut(id)?
            .existing_replica(stream)
            .ok_or_else(|| err(format!("no readable document {stream} in this space")))
    }

    fn doc(&mut self, space: &str, stream: &str) -> Result<&mut automerge::AutoCommit, JsError> {
        Ok(self.replica(space, stream)?.doc())
    }
}

/// An `Append` frame.
fn append(request: u32, space: SpaceId, item: AppendItem) -> Vec<u8> {
    ClientFrame::Append {
        request,
        space,
        item,
    }
    .encode()
}

fn no_space(id: SpaceId) -> JsError {
    err(format!("this device is not in space {id}"))
}

fn role_name(role: Role) -> &'static str {
    role.as_str()
}

fn parse_role(role: &str) -> Result<Role, JsError> {
    Role::parse(role).ok_or_else(|| err(format!("unknown role {role}")))
}

/// A file being sealed, chunk by chunk, for upload.
#[wasm_bindgen]
pub struct Upload {
    sealer: Option<FileSealer>,
    /// Where the file goes (kept with the sealed progress).
    space: String,
    folder: String,
}

/// The sealed item of an upload in progress.
const UPLOAD_ITEM: &str = "browser-upload";

/// What an interrupted upload keeps: `1 || postcard(SavedUpload)`.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedUpload {
    progress: UploadProgress,
    space: String,
    folder: String,
}

fn open_upload(sealed: &[u8], key: &StateKey) -> Result<SavedUpload, JsError> {
    let bytes = key.0.open(UPLOAD_ITEM, sealed).map_err(err)?;
    match bytes.split_first() {
        Some((1, rest)) => postcard::from_bytes(rest)
            .map_err(|_| err("the saved upload is corrupt or from another version")),
        _ => Err(err("the saved upload is corrupt or from another version")),
    }
}

fn chunks_js(chunks: Vec<amicus_core::files::SealedChunk>) -> JsValue {
    let out = js_sys::Array::new();
    for c in chunks {
        let o = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&o, &"index".into(), &JsValue::from_f64(c.index as f64));
        let _ = js_sys::Reflect::set(&o, &"id".into(), &c.id.to_string().into());
        let _ = js_sys::Reflect::set(
            &o,
            &"blob".into(),
            &js_sys::Uint8Array::from(&c.blob[..]).into(),
        );
        out.push(&o);
    }
    out.into()
}

#[wasm_bindgen]
impl Upload {
    /// Starts sealing a file of `size` bytes under a fresh random secret,
    /// for the library of `space` (in `folder`, `""` for the top).
    #[wasm_bindgen(constructor)]
    pub fn new(
        name: &str,
        media_type: &str,
        size: u64,
        space: &str,
        folder: &str,
    ) -> Result<Upload, JsError> {
        space_id(space)?;
        Ok(Self {
            sealer: Some(FileSealer::new(name, media_type, size).map_err(err)?),
            space: space.to_owned(),
            folder: folder.to_owned(),
        })
    }

    /// The progress so far, sealed for IndexedDB. Write-ahead (PROTOCOL
    /// §10.7): store it after a chunk is sealed and *before* that chunk is
    /// uploaded, with the chunk itself (ciphertext), so a resumed upload
    /// sends that chunk again instead of sealing it again.
    pub fn seal_progress(&self, key: &StateKey) -> Result<Vec<u8>, JsError> {
        let sealer = self.sealer.as_ref().ok_or_else(|| err("upload finished"))?;
        let saved = SavedUpload {
            progress: sealer.progress(),
            space: self.space.clone(),
            folder: self.folder.clone(),
        };
        let mut bytes = Zeroizing::new(vec![1u8]);
        bytes.extend_from_slice(&postcard::to_allocvec(&saved).map_err(err)?);
        Ok(key.0.seal(UPLOAD_ITEM, &bytes))
    }

    /// Rebuilds an interrupted upload from its sealed progress. Push the
    /// file again from byte 0: the chunks already sealed are not sealed
    /// again, and if the file is not the same up to that point the push
    /// fails with the error `source-changed` (start a new upload).
    pub fn resume(sealed: &[u8], key: &StateKey) -> Result<Upload, JsError> {
        let SavedUpload {
            progress,
            space,
            folder,
        } = open_upload(sealed, key)?;
        Ok(Self {
            sealer: Some(FileSealer::resume(progress).map_err(err)?),
            space,
            folder,
        })
    }

    /// What a sealed progress describes: `{file, space, folder, name, size,
    /// done, chunks}` (chunks sealed so far, and in all).
    #[wasm_bindgen(unchecked_return_type = "SavedUploadInfo")]
    pub fn describe(sealed: &[u8], key: &StateKey) -> Result<JsValue, JsError> {
        let saved = open_upload(sealed, key)?;
        let p = &saved.progress;
        Ok(js(&json!({
            "file": p.file_id().to_string(), "space": saved.space, "folder": saved.folder,
            "name": p.name(), "size": p.plaintext_size(),
            "done": p.chunks_emitted(), "chunks": p.chunk_count(),
        })))
    }

    /// The file id (hex).
    pub fn file_id(&self) -> String {
        self.sealer
            .as_ref()
            .map_or_else(String::new, |s| s.file_id().to_string())
    }

    /// The space the file goes to.
    pub fn space(&self) -> String {
        self.space.clone()
    }

    /// The folder the file goes to.
    pub fn folder(&self) -> String {
        self.folder.clone()
    }

    /// How many chunks were sealed so far.
    pub fn chunks_sealed(&self) -> u64 {
        self.sealer
            .as_ref()
            .map_or(0, |s| s.progress().chunks_emitted())
    }

    /// The ids of the chunks sealed so far (to ask the server which it lacks).
    pub fn chunk_ids(&self) -> Vec<String> {
        self.sealer.as_ref().map_or_else(Vec::new, |s| {
            s.progress()
                .chunk_ids()
                .iter()
                .map(|c| c.to_string())
                .collect()
        })
    }

    /// After the last bytes: the next padding chunk, or `undefined` when
    /// there is none left (take them one at a time, storing the progress
    /// before each).
    #[wasm_bindgen(unchecked_return_type = "SealedChunk | undefined")]
    pub fn next_trailing(&mut self) -> Result<JsValue, JsError> {
        let sealer = self.sealer.as_mut().ok_or_else(|| err("upload finished"))?;
        match sealer.next_trailing_chunk().map_err(err)? {
            Some(c) => Ok(js_sys::Array::from(&chunks_js(vec![c])).get(0)),
            None => Ok(JsValue::UNDEFINED),
        }
    }

    /// The number of chunks the file will have.
    pub fn chunk_count(&self) -> u64 {
        self.sealer.as_ref().map_or(0, FileSealer::chunk_count)
    }

    /// Seals the next bytes of the file; returns the chunks completed.
    #[wasm_bindgen(unchecked_return_type = "SealedChunk[]")]
    pub fn push(&mut self, data: &[u8]) -> Result<JsValue, JsError> {
        let sealer = self.sealer.as_mut().ok_or_else(|| err("upload finished"))?;
        match sealer.push(data) {
            Ok(chunks) => Ok(chunks_js(chunks)),
            Err(FileError::SourceChanged) => Err(JsError::new("source-changed")),
            Err(e) => Err(err(e)),
        }
    }

    /// After the last bytes: the padding chunks, then the manifest to pass
    /// to [`Device::add_file`].
    #[wasm_bindgen(unchecked_return_type = "SealedChunk[]")]
    pub fn trailing(&mut self) -> Result<JsValue, JsError> {
        let sealer = self.sealer.as_mut().ok_or_else(|| err("upload finished"))?;
        let mut out = Vec::new();
        while let Some(c) = sealer.next_trailing_chunk().map_err(err)? {
            out.push(c);
        }
        Ok(chunks_js(out))
    }

    /// The manifest (bytes, secret inside: keep it only in the encrypted
    /// library).
    pub fn finish(&mut self) -> Result<Vec<u8>, JsError> {
        let sealer = self.sealer.take().ok_or_else(|| err("upload finished"))?;
        let (rest, manifest) = sealer.finish().map_err(err)?;
        if !rest.is_empty() {
            return Err(err("call trailing() before finish()"));
        }
        postcard::to_allocvec(&manifest).map_err(err)
    }
}

/// A file being downloaded and opened chunk by chunk.
#[wasm_bindgen]
pub struct Download {
    chunk_ids: Vec<String>,
    name: String,
    media_type: String,
    opener: Option<FileOpener>,
}

#[wasm_bindgen]
impl Download {
    /// The chunk ids to fetch, in order.
    pub fn chunk_ids(&self) -> Vec<String> {
        self.chunk_ids.clone()
    }

    /// The file's name.
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The file's media type.
    pub fn media_type(&self) -> String {
        self.media_type.clone()
    }

    /// Checks and decrypts chunk `index`.
    pub fn open_chunk(&mut self, index: u64, blob: &[u8]) -> Result<Vec<u8>, JsError> {
        let opener = self
            .opener
            .as_mut()
            .ok_or_else(|| err("download finished"))?;
        opener.open_chunk(index, blob).map_err(err)
    }

    /// Checks that every chunk was opened (a truncated file is refused).
    pub fn finish(&mut self) -> Result<(), JsError> {
        let opener = self.opener.take().ok_or_else(|| err("download finished"))?;
        opener.finish().map_err(err)
    }
}
