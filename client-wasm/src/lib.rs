//! # amicus-client-wasm
//!
//! The browser client of Amicus: [`amicus_core`] exported through
//! wasm-bindgen. [`Device`] is the client engine
//! ([`amicus_core::engine`]), the same one the native client drives: the
//! web app's JavaScript (`web/amicus.js`) only moves what the engine asks
//! for between it and the WebSocket, `fetch`, IndexedDB and the timer, and
//! shows its events. Every key, every check and every protocol decision is
//! here. The values crossing the boundary are Rust types whose TypeScript
//! declarations are generated (tsify) into the `.d.ts` the JavaScript is
//! checked against; errors are `Error`s with a stable `code`.
//!
//! - [`Device`]: one browser device: the engine, with its identity (the
//!   first device holds the user's identity key), MLS state, spaces and
//!   documents.
//! - [`StateKey`]: the passphrase-derived key that seals the device's state
//!   for IndexedDB ([`amicus_core::at_rest`], the native client's format).
//! - [`Upload`] and [`Download`]: a file sealed and opened chunk by chunk.
#![forbid(unsafe_code)]

mod types;

pub use types::*;

use std::collections::BTreeMap;

use amicus_core::api::{self, HttpResponse, Method};
use amicus_core::at_rest::{DeviceRecord, Restored, UnsentEdits};
use amicus_core::document::{Replica, filing};
use amicus_core::engine::{Config, Engine, Intent, Link};
use amicus_core::files::{FileManifest, UploadProgress};
use amicus_core::identity::{Contacts, Device as CoreDevice, DeviceCertificate, UserIdentity};
use amicus_core::library;
use amicus_core::pairing;
use amicus_core::publication::{self, CopyCheck, Provenance};
use amicus_core::recovery::{self, RecoveryCode};
use amicus_core::space::Role;
use amicus_core::transfer;
use amicus_core::view::SpaceView;
use amicus_core::wire::ServerFrame;
use amicus_core::{DeviceId, MlsProvider, SpaceId, StreamId, UserId};
use serde::Serialize;
use serde_json::{Value, json};
use tsify::{Ts, Tsify};
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** An interrupted upload, as its sealed progress describes it. */
export interface SavedUploadInfo { file: string; space: string; folder: string; replaces: string; name: string; size: number; done: number; chunks: number }
/** What a driver does next for an upload (`Upload.step`). */
export type UploadStep =
  | { kind: "read"; offset: number; len: number }
  | { kind: "store"; sealed: Uint8Array }
  | { kind: "put"; id: string; blob: Uint8Array }
  | { kind: "missing"; ids: string[] }
  | { kind: "wait"; ms: number }
  | { kind: "done" };
/** What a new browser does next while linking (`Linking.step`). */
export type LinkStep =
  | { kind: "request"; method: string; path: string; body?: string }
  | { kind: "wait"; until: number };
/** What a driver does next for a download (`Download.step`). */
export type DownloadStep = { kind: "get"; id: string } | { kind: "wait"; ms: number } | { kind: "done" };
"#;

fn err(e: impl std::fmt::Display) -> JsValue {
    fail(ErrorCode::Document, e)
}

fn js(v: &Value) -> JsValue {
    js_sys::JSON::parse(&v.to_string()).unwrap_or(JsValue::NULL)
}

fn parse_dims(names: &[String]) -> Result<Vec<amicus_core::monitoring::Dim>, JsValue> {
    names
        .iter()
        .map(|n| {
            amicus_core::monitoring::Dim::parse(n)
                .ok_or_else(|| bad(format!("not a dimension of the counts: {n}")))
        })
        .collect()
}

fn space_id(hex: &str) -> Result<SpaceId, JsValue> {
    SpaceId::from_hex(hex).map_err(|_| bad(format!("not a space id: {hex}")))
}

fn stream_id(hex: &str) -> Result<StreamId, JsValue> {
    StreamId::from_hex(hex).map_err(|_| bad(format!("not a document id: {hex}")))
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
    pub fn derive(passphrase: &str, salt: &[u8]) -> Result<StateKey, JsValue> {
        if salt.len() < 16 {
            return Err(bad("the salt must be at least 16 bytes"));
        }
        Ok(Self(amicus_core::at_rest::StateKey::derive(
            passphrase.as_bytes(),
            salt,
        )))
    }

    /// This key sealed under `secret`, the 32 bytes the platform
    /// authenticator gives (WebAuthn PRF) after verifying its user: kept
    /// beside the state, it opens it without the passphrase.
    pub fn wrap(&self, secret: &[u8]) -> Result<Vec<u8>, JsValue> {
        self.0.wrap(secret).map_err(|e| fail(ErrorCode::Sealed, e))
    }

    /// The key [`Self::wrap`] sealed under `secret`.
    pub fn unwrap_with(secret: &[u8], wrapped: &[u8]) -> Result<StateKey, JsValue> {
        amicus_core::at_rest::StateKey::unwrap_with(secret, wrapped)
            .map(Self)
            .map_err(|e| fail(ErrorCode::Sealed, e))
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

/// A new browser linking to its user with the code the user's first
/// device shows, as [`pairing::Linking`] says, step by step: the page
/// only sends the requests it is given and waits.
#[wasm_bindgen]
pub struct Linking {
    inner: pairing::Linking,
    linked: Option<(
        amicus_core::identity::Device,
        amicus_core::identity::Contacts,
    )>,
}

fn link_err(e: pairing::LinkError) -> JsValue {
    let code = match e {
        pairing::LinkError::NoPairing => ErrorCode::NoPairing,
        pairing::LinkError::Expired => ErrorCode::PairingExpired,
        pairing::LinkError::Answer(_) => ErrorCode::BadCode,
        pairing::LinkError::Offer(_) => ErrorCode::Network,
        // The page words the server's own refusal from the answer it has.
        pairing::LinkError::Refused { .. } => ErrorCode::Server,
        pairing::LinkError::OutOfTurn => ErrorCode::Protocol,
    };
    fail(code, e)
}

#[wasm_bindgen]
impl Linking {
    /// Generates this browser's device key for `user`, with the code typed
    /// from the other device (Latin or Arabic digits; spaces, dashes
    /// ignored).
    #[wasm_bindgen(constructor)]
    pub fn new(user: &str, code: &str) -> Result<Linking, JsValue> {
        let user = UserId::new(user).map_err(bad)?;
        let code = pairing::PairingCode::parse(code).map_err(|e| fail(ErrorCode::BadCode, e))?;
        Ok(Linking {
            inner: pairing::Linking::start(user, code),
            linked: None,
        })
    }

    /// The next step at `now` (ms, the page's clock): `{kind: "request",
    /// method, path, body?}` to send (no session), then `answered` or
    /// `unreachable`; `{kind: "wait", until}`.
    #[wasm_bindgen(unchecked_return_type = "LinkStep")]
    pub fn step(&mut self, now: f64) -> Result<JsValue, JsValue> {
        match self.inner.step(now as u64).map_err(link_err)? {
            pairing::LinkStep::Request(r) => {
                let body = r.body.map(|b| String::from_utf8_lossy(&b).into_owned());
                Ok(js(&json!({
                    "kind": "request", "method": r.method.as_str(), "path": r.path, "body": body,
                })))
            }
            pairing::LinkStep::Wait(at) => Ok(js(&json!({ "kind": "wait", "until": at }))),
            pairing::LinkStep::Done(_) => Err(link_err(pairing::LinkError::OutOfTurn)),
        }
    }

    /// What the server answered; true once linked (then `device`).
    pub fn answered(&mut self, now: f64, status: u16, body: &[u8]) -> Result<bool, JsValue> {
        let response = Ok(api::HttpResponse {
            status,
            body: body.to_vec(),
        });
        self.take(now, response)
    }

    /// The request got no answer (the network).
    pub fn unreachable(&mut self, now: f64, message: &str) -> Result<bool, JsValue> {
        self.take(now, Err(message.to_owned()))
    }

    /// Whether the offer is with the server (the other device can answer).
    pub fn offered(&self) -> bool {
        self.inner.offered()
    }

    /// The new, certified device, trusting the identity keys the other
    /// device had pinned.
    pub fn device(&mut self) -> Result<Device, JsValue> {
        let (device, contacts) = self
            .linked
            .take()
            .ok_or_else(|| link_err(pairing::LinkError::OutOfTurn))?;
        Ok(Device::fresh(None, device, contacts))
    }
}

impl Linking {
    fn take(
        &mut self,
        now: f64,
        response: Result<api::HttpResponse, String>,
    ) -> Result<bool, JsValue> {
        match self
            .inner
            .answered(now as u64, response)
            .map_err(link_err)?
        {
            Some(pairing::LinkStep::Done(linked)) => {
                self.linked = Some(*linked);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// A JavaScript `Error` with a stable `code` beside its message.
fn fail(code: ErrorCode, message: impl std::fmt::Display) -> JsValue {
    let e = js_sys::Error::new(&message.to_string());
    let code = serde_wasm_bindgen::to_value(&code).unwrap_or(JsValue::NULL);
    let _ = js_sys::Reflect::set(&e, &"code".into(), &code);
    e.into()
}

fn bad(e: impl std::fmt::Display) -> JsValue {
    fail(ErrorCode::BadInput, e)
}

fn doc_err(e: impl std::fmt::Display) -> JsValue {
    fail(ErrorCode::Document, e)
}

/// A value with generated TypeScript declarations, for JavaScript.
fn ts<T: Tsify + Serialize>(value: T) -> Result<Ts<T>, JsValue> {
    value.into_ts().map_err(|e| fail(ErrorCode::Protocol, e))
}

/// A refused edit: a bad name or text with its own code, the rest as a
/// document error.
fn edit_err(e: amicus_core::document::DocumentError) -> JsValue {
    use amicus_core::document::DocumentError;
    match e {
        DocumentError::Record(e) => {
            let err = fail(ErrorCode::Record, &e);
            let _ = js_sys::Reflect::set(&err, &"reason".into(), &e.code().into());
            err
        }
        DocumentError::BadName(m) => fail(ErrorCode::BadName, m),
        DocumentError::BadText(m) => fail(ErrorCode::BadText, m),
        DocumentError::Library(e) => fail(ErrorCode::from(&e), e),
        DocumentError::NotAuthor(m) => fail(ErrorCode::NotAuthor, m),
        e => doc_err(e),
    }
}

/// The browser's engine settings: an app that stays open follows every
/// space live and waits for the connection to come back instead of failing.
fn config() -> Config {
    Config {
        follow: true,
        ..Config::default()
    }
}

/// Every ISO 3166-1 alpha-2 country code a case record accepts.
#[wasm_bindgen]
pub fn country_codes() -> Vec<String> {
    amicus_core::monitoring::countries()
        .map(str::to_owned)
        .collect()
}

/// The users a text mentions (`@name`), as the engine reads them
/// (PROTOCOL §9.5): what the interface marks in comments.
#[wasm_bindgen]
pub fn mentions(text: &str) -> Vec<String> {
    amicus_core::discussion::mentions(text)
}

/// One browser device: the client engine ([`amicus_core::engine`]) with
/// its keys, spaces and documents. The page's JavaScript drives it: it
/// hands over frames, HTTP answers, the connection's state and time, and
/// does what the engine asks — make the state durable in IndexedDB
/// ([`Device::must_persist`], [`Device::seal`]) *before* sending anything
/// further, send frames ([`Device::poll_transmit`]), make HTTP requests
/// ([`Device::poll_request`]), show events ([`Device::poll_event`]) and
/// wake it at [`Device::next_timeout`]. It decides nothing itself.
#[wasm_bindgen]
pub struct Device {
    engine: Engine,
    /// The engine's clock starts at this wall-clock time (ms).
    started: f64,
    /// The content of the submission part opened last.
    opened: Option<Vec<u8>>,
}

#[wasm_bindgen]
impl Device {
    /// A new user with this browser as its first device (holding the
    /// user's identity key).
    pub fn create(user: &str) -> Result<Device, JsValue> {
        let user = UserId::new(user).map_err(bad)?;
        let identity = UserIdentity::generate(user);
        let device = identity.new_device();
        Ok(Self::fresh(Some(identity), device, Contacts::default()))
    }

    fn fresh(identity: Option<UserIdentity>, device: CoreDevice, contacts: Contacts) -> Self {
        Self::assemble(Restored {
            identity,
            device,
            provider: MlsProvider::new(),
            spaces: BTreeMap::new(),
            contacts,
            seen: Some(Vec::new()),
        })
    }

    fn assemble(restored: Restored) -> Self {
        Self {
            engine: Engine::new(restored, None, config()),
            started: js_sys::Date::now(),
            opened: None,
        }
    }

    /// Opens a sealed state (from IndexedDB). A restarted device reads
    /// only the log entries it had not processed. `unsent` is the sealed
    /// edits an earlier version of the app kept beside the state: they are
    /// taken back (and go out at the first flush).
    pub fn unseal(
        sealed: &[u8],
        key: &StateKey,
        unsent: Option<Vec<u8>>,
    ) -> Result<Device, JsValue> {
        let bytes = key
            .0
            .open(STATE_ITEM, sealed)
            .map_err(|e| fail(ErrorCode::Sealed, e))?;
        let record = DeviceRecord::decode(&bytes).map_err(|e| fail(ErrorCode::Sealed, e))?;
        let mut restored = record.restore().map_err(|e| fail(ErrorCode::Sealed, e))?;
        if let Some(sealed) = unsent {
            adopt_unsent(&mut restored, &sealed, key)?;
        }
        Ok(Self::assemble(restored))
    }

    fn now(&self) -> u64 {
        (js_sys::Date::now() - self.started).max(0.0) as u64
    }

    // ---- the engine's inputs -------------------------------------------

    /// Signs in (a challenge signed with the device key); returns the
    /// operation, ended by a `done` event.
    pub fn sign_in(&mut self) -> f64 {
        self.start(Intent::SignIn)
    }

    /// Joins the spaces whose Welcomes wait, tops the KeyPackages up and
    /// reads every space to the end of its log.
    pub fn refresh(&mut self) -> f64 {
        self.start(Intent::Refresh)
    }

    /// Reads one space to the end of its log.
    pub fn sync(&mut self, space: &str) -> Result<f64, JsValue> {
        Ok(self.start(Intent::Sync(space_id(space)?)))
    }

    /// Creates a confidential space (history `full`) with its library
    /// (`done` carries its id).
    pub fn create_space(&mut self) -> f64 {
        self.start(Intent::CreateSpace)
    }

    /// Adds every device of `user` not yet in the space, a new member with
    /// `role` (`reader`, `contributor`, `content_manager`, `space_manager`).
    pub fn invite(&mut self, space: &str, user: &str, role: &str) -> Result<f64, JsValue> {
        let intent = Intent::Invite {
            space: space_id(space)?,
            user: UserId::new(user).map_err(bad)?,
            role: parse_role(role)?,
        };
        Ok(self.start(intent))
    }

    /// Removes `user` and all their devices from the space.
    pub fn remove(&mut self, space: &str, user: &str) -> Result<f64, JsValue> {
        let intent = Intent::Remove {
            space: space_id(space)?,
            user: UserId::new(user).map_err(bad)?,
        };
        Ok(self.start(intent))
    }

    /// Sends now every document of the space with local changes waiting
    /// (an operation's document and the library), the library last.
    pub fn flush_space(&mut self, space: &str) -> Result<f64, JsValue> {
        Ok(self.start(Intent::FlushSpace(space_id(space)?)))
    }

    /// Lists the space in the network's directory with a public name and
    /// description, `open` to whoever asks or on request (space managers
    /// only; `done` when the server has it).
    pub fn list_space(
        &mut self,
        space: &str,
        name: &str,
        description: &str,
        open: bool,
    ) -> Result<f64, JsValue> {
        let intent = Intent::List {
            space: space_id(space)?,
            listing: Some(api::Listing {
                name: name.to_owned(),
                description: description.to_owned(),
                open,
            }),
        };
        Ok(self.start(intent))
    }

    /// Takes the space out of the directory (space managers only).
    pub fn unlist_space(&mut self, space: &str) -> Result<f64, JsValue> {
        let intent = Intent::List {
            space: space_id(space)?,
            listing: None,
        };
        Ok(self.start(intent))
    }

    /// Accepts `user`'s request to join: adds every device of theirs with
    /// `role`, then closes the request (space managers only).
    pub fn accept(&mut self, space: &str, user: &str, role: &str) -> Result<f64, JsValue> {
        let intent = Intent::Accept {
            space: space_id(space)?,
            user: UserId::new(user).map_err(bad)?,
            role: parse_role(role)?,
        };
        Ok(self.start(intent))
    }

    /// Declines `user`'s request to join (space managers only).
    pub fn decline(&mut self, space: &str, user: &str) -> Result<f64, JsValue> {
        let intent = Intent::Decline {
            space: space_id(space)?,
            user: UserId::new(user).map_err(bad)?,
        };
        Ok(self.start(intent))
    }

    /// Opens a drop box for the space (space managers only): `done`
    /// carries `drop_box` with its id and its link's fragment.
    pub fn open_drop_box(
        &mut self,
        space: &str,
        label: &str,
        days: u32,
        quota: f64,
    ) -> Result<f64, JsValue> {
        if !(quota.is_finite() && quota >= 1.0) {
            return Err(fail(
                ErrorCode::BadInput,
                "a drop box's quota is a number of bytes",
            ));
        }
        let intent = Intent::OpenDropBox {
            space: space_id(space)?,
            label: label.to_owned(),
            days,
            quota: quota as u64,
        };
        Ok(self.start(intent))
    }

    /// Closes a drop box (space managers only).
    pub fn close_drop_box(&mut self, space: &str, dropbox: &str) -> Result<f64, JsValue> {
        let intent = Intent::CloseDropBox {
            space: space_id(space)?,
            dropbox: dropbox.to_owned(),
        };
        Ok(self.start(intent))
    }

    /// Lists the space's drop boxes and submissions: `done` carries
    /// `drop_boxes`, checked against the space's keys.
    pub fn drop_boxes(&mut self, space: &str) -> Result<f64, JsValue> {
        Ok(self.start(Intent::DropBoxes(space_id(space)?)))
    }

    /// Opens one sealed part of a submission (its chunks joined): what it
    /// is, and its content through [`Device::take_opened`]. A part that
    /// does not open whole gives nothing (error code `intake`).
    #[wasm_bindgen(unchecked_return_type = "OpenedPart")]
    pub fn open_submission_part(
        &mut self,
        space: &str,
        epoch: f64,
        sealed: &[u8],
    ) -> Result<JsValue, JsValue> {
        let part = self
            .engine
            .open_submission_part(space_id(space)?, epoch as u64, sealed)
            .map_err(|f| fail(f.code.into(), f.message))?;
        let statement = part.kind == amicus_core::intake::drop::Kind::Statement;
        let opened = OpenedPart {
            kind: if statement { "statement" } else { "file" }.to_owned(),
            name: part.name.clone(),
            media_type: part.media_type.clone(),
            text: statement.then(|| String::from_utf8_lossy(&part.content).into_owned()),
            size: part.content.len() as f64,
        };
        self.opened = Some(part.content);
        serde_wasm_bindgen::to_value(&opened).map_err(|e| fail(ErrorCode::Protocol, e))
    }

    /// The content of the part [`Device::open_submission_part`] opened
    /// last (once).
    pub fn take_opened(&mut self) -> Vec<u8> {
        self.opened.take().unwrap_or_default()
    }

    /// Revokes another device of this user (this browser must hold the
    /// identity key): the server stops serving it and every space this
    /// browser shares with it removes it (`done` lists those spaces).
    pub fn revoke(&mut self, device: &str) -> Result<f64, JsValue> {
        let device = DeviceId::from_hex(device).map_err(bad)?;
        Ok(self.start(Intent::Revoke { device }))
    }

    /// Opens `code`'s channel at the server (PROTOCOL §3.6): show the
    /// code once this is done, then `pair`. Only the browser holding the
    /// identity key can.
    pub fn open_pairing(&mut self, code: &PairingCode) -> f64 {
        self.start(Intent::OpenPairing(Box::new(code.0.clone())))
    }

    /// Pairs a new device of this user with `code`, shown meanwhile; its
    /// `done` names the new device.
    pub fn pair(&mut self, code: &PairingCode) -> f64 {
        self.start(Intent::Pair(Box::new(code.0.clone())))
    }

    /// Adds this user's `device`, paired a moment ago, to every space this
    /// browser manages; its `done` says where (`added`).
    pub fn add_device(&mut self, device: &str) -> Result<f64, JsValue> {
        let device = DeviceId::from_hex(device).map_err(bad)?;
        Ok(self.start(Intent::AddDevice(device)))
    }

    /// Stops an operation (a pairing whose code is no longer shown): it
    /// ends with the code `stopped`.
    pub fn cancel(&mut self, op: f64) {
        self.engine.cancel(op as u64);
    }

    /// This user's devices from the JSON of `GET /v1/users/{own user}`,
    /// each certificate and revocation checked against the identity key.
    pub fn own_devices(&self, listing: &str) -> Result<Ts<OwnDevices>, JsValue> {
        let listing: api::UserListing = serde_json::from_str(listing)
            .map_err(|e| fail(ErrorCode::Protocol, format!("the listing: {e}")))?;
        let devices = amicus_core::engine::own_devices(self.engine.device(), &listing)
            .map_err(|f| fail(f.code.into(), f.message))?
            .into_iter()
            .map(|d| OwnDevice {
                device: d.device,
                this: d.this,
                revoked: d.revoked,
                key_packages: d.key_packages as f64,
            })
            .collect();
        ts(OwnDevices { devices })
    }

    /// Gives a member another role.
    pub fn set_role(&mut self, space: &str, user: &str, role: &str) -> Result<f64, JsValue> {
        let intent = Intent::SetRole {
            space: space_id(space)?,
            user: UserId::new(user).map_err(bad)?,
            role: parse_role(role)?,
        };
        Ok(self.start(intent))
    }

    /// Sends a document's edits now rather than at the next interval.
    pub fn flush(&mut self, space: &str, stream: &str) -> Result<f64, JsValue> {
        let intent = Intent::Flush {
            space: space_id(space)?,
            stream: stream_id(stream)?,
        };
        Ok(self.start(intent))
    }

    fn start(&mut self, intent: Intent) -> f64 {
        let now = self.now();
        self.engine.start(now, intent) as f64
    }

    /// A frame from the WebSocket (an unreadable one is refused).
    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<(), JsValue> {
        let frame = ServerFrame::decode(frame).map_err(|e| fail(ErrorCode::Protocol, e))?;
        let now = self.now();
        self.engine.handle_frame(now, frame);
        Ok(())
    }

    /// The answer to the request `id` of [`Self::poll_request`].
    pub fn handle_response(&mut self, id: f64, status: u16, body: Vec<u8>) {
        let now = self.now();
        self.engine
            .handle_response(now, id as u64, Ok(HttpResponse { status, body }));
    }

    /// The request `id` could not be sent, or no answer came.
    pub fn handle_unreachable(&mut self, id: f64, message: &str) {
        let now = self.now();
        self.engine
            .handle_response(now, id as u64, Err(message.to_owned()));
    }

    /// The WebSocket opened.
    pub fn link_up(&mut self) {
        let now = self.now();
        self.engine.handle_link(now, Link::Up);
    }

    /// The WebSocket closed; `opened`: it had opened before (a browser is
    /// not told why one could not be opened).
    pub fn link_down(&mut self, opened: bool) {
        let now = self.now();
        let link = if opened { Link::Down } else { Link::Failed };
        self.engine.handle_link(now, link);
    }

    /// Time passed (call at [`Self::next_timeout`]).
    pub fn handle_timeout(&mut self) {
        let now = self.now();
        self.engine.handle_timeout(now);
    }

    // ---- the engine's outputs ------------------------------------------

    /// True when the state must be sealed and stored ([`Self::seal`]),
    /// and the store complete, before anything else is sent.
    pub fn must_persist(&self) -> bool {
        self.engine.must_persist()
    }

    /// True when something changed since the last [`Self::seal`] (store it
    /// soon: documents read, edits made).
    pub fn changed(&self) -> bool {
        self.engine.changed()
    }

    /// Seals the whole state for IndexedDB (the native client's format).
    pub fn seal(&mut self, key: &StateKey) -> Result<Vec<u8>, JsValue> {
        let record = self
            .engine
            .persist()
            .map_err(|e| fail(ErrorCode::Sealed, e))?;
        Ok(key.0.seal(STATE_ITEM, &record.encode()))
    }

    /// The next frame to send on the WebSocket.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.engine.poll_transmit().map(|f| f.encode())
    }

    /// The next HTTP request to make.
    pub fn poll_request(&mut self) -> Option<Ts<HttpCall>> {
        let (id, request) = self.engine.poll_request()?;
        ts(HttpCall {
            id: id as f64,
            method: match request.method {
                Method::Get => HttpMethod::Get,
                Method::Post => HttpMethod::Post,
                Method::Put => HttpMethod::Put,
                Method::Delete => HttpMethod::Delete,
            },
            path: request.path,
            body: request
                .body
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
            token: request
                .signed_in
                .then(|| self.engine.token().map(str::to_owned))
                .flatten(),
        })
        .ok()
    }

    /// The next event for the interface.
    pub fn poll_event(&mut self) -> Option<Ts<ClientEvent>> {
        let event = ClientEvent::from(self.engine.poll_event()?);
        ts(event).ok()
    }

    /// True when the WebSocket should be opened now.
    pub fn wants_connection(&self) -> bool {
        self.engine.wants_connection()
    }

    /// In how many milliseconds to call [`Self::handle_timeout`].
    pub fn next_timeout(&self) -> Option<f64> {
        let at = self.engine.poll_timeout()?;
        Some(at.saturating_sub(self.now()) as f64)
    }

    /// The session token, for the WebSocket and the file transfers.
    pub fn token(&self) -> Option<String> {
        self.engine.token().map(str::to_owned)
    }

    /// The documents with edits the server has not acknowledged (kept in
    /// the sealed state until it has).
    pub fn unsent_documents(&mut self) -> usize {
        self.engine.unsent_documents()
    }

    /// Every document holding edits of this browser the server has not
    /// acknowledged, with why they can no longer be sent, if they cannot
    /// (they are kept until sent or discarded; read them with `text`).
    pub fn unsent(&mut self) -> Result<Ts<UnsentList>, JsValue> {
        ts(UnsentList(
            self.engine
                .unsent()
                .into_iter()
                .map(|u| UnsentDocument {
                    space: u.space.to_hex(),
                    stream: u.stream.to_hex(),
                    changes: u.changes,
                    blocked: u.blocked,
                })
                .collect(),
        ))
    }

    /// Drops this browser's unacknowledged edits of a document (after the
    /// person saw or saved them); returns how many changes were dropped.
    pub fn discard_unsent(&mut self, space: &str, stream: &str) -> Result<usize, JsValue> {
        self.engine
            .discard_unsent(space_id(space)?, stream_id(stream)?)
            .map_err(|f| fail(f.code.into(), f.message))
    }

    /// The engine's state, for diagnostics (nothing secret).
    pub fn status(&self) -> String {
        self.engine.status()
    }

    /// Sends a presence message (JSON, at most 1 KiB) to the space's
    /// members online; false when offline. Pump afterwards: the state is
    /// made durable before the frame leaves.
    pub fn presence(&mut self, space: &str, payload: &str) -> Result<bool, JsValue> {
        let _: Value = serde_json::from_str(payload).map_err(bad)?;
        self.engine
            .presence(space_id(space)?, payload.as_bytes())
            .map_err(|f| fail(f.code.into(), f.message))
    }

    // ---- identity -------------------------------------------------------

    /// A new recovery code and the kit it opens (the identity key sealed
    /// under it): the code to show once, and the kit and the verifier of
    /// the code's access value (hex) for `PUT /v1/recovery`, which replaces
    /// the earlier ones. Only the browser holding the identity key can.
    pub fn new_recovery_kit(&self) -> Result<Ts<RecoveryKit>, JsValue> {
        let identity = self.engine.identity().ok_or_else(|| {
            fail(ErrorCode::Identity, "this browser does not hold your identity key: make the recovery code in the first one")
        })?;
        let code = RecoveryCode::random();
        let kit = recovery::seal_kit(identity, &code);
        let verifier = recovery::access_verifier(&code.access());
        ts(RecoveryKit {
            code: code.display().as_str().to_owned(),
            kit: hex::encode(kit),
            verifier: hex::encode(verifier),
        })
    }

    /// The access value (hex) of a typed recovery code, shown to the server
    /// to fetch the kit and register the recovered device.
    pub fn recovery_access(code: &str) -> Result<String, JsValue> {
        let code = RecoveryCode::parse(code).map_err(|e| fail(ErrorCode::BadCode, e))?;
        Ok(hex::encode(*code.access()))
    }

    /// A new device for `user` recovered from its kit (hex, from `POST
    /// /v1/recovery/{user}/kit`) with the code typed (Latin or Arabic digits):
    /// it holds the identity key again, and its certificate (see
    /// [`Device::certificate`]) goes to `POST /v1/recovery/{user}/devices`.
    pub fn recover(user: &str, code: &str, kit: &str) -> Result<Device, JsValue> {
        let user = UserId::new(user).map_err(bad)?;
        let code = RecoveryCode::parse(code).map_err(|e| fail(ErrorCode::BadCode, e))?;
        let kit = hex::decode(kit).map_err(bad)?;
        let identity =
            recovery::open_kit(&user, &code, &kit).map_err(|e| fail(ErrorCode::BadCode, e))?;
        let device = identity.new_device();
        Ok(Self::fresh(Some(identity), device, Contacts::default()))
    }

    /// Whether this browser holds the user's identity key (it can link
    /// other devices).
    pub fn holds_identity(&self) -> bool {
        self.engine.identity().is_some()
    }

    /// The user name.
    pub fn user(&self) -> String {
        self.engine.device().user().to_string()
    }

    /// This device's id (hex).
    pub fn device_id(&self) -> String {
        self.engine.device().id().to_hex()
    }

    /// The user's safety number, to compare out of band.
    pub fn safety_number(&self) -> String {
        let device = self.engine.device();
        device
            .certificate()
            .identity_key
            .safety_number(device.user())
    }

    /// The device certificate (hex), for `POST /v1/register` or `/v1/devices`.
    pub fn certificate(&self) -> String {
        hex::encode(postcard::to_allocvec(self.engine.device().certificate()).expect("encodes"))
    }

    /// Checks a public copy's provenance in this browser, without relying
    /// on the server's check: `listing` is the author's `GET
    /// /v1/users/{author}` answer, checked as a commit's is (every device
    /// certified by the identity key, the key the one seen before); the
    /// device the record names must be among them, and its signature must
    /// hold over this copy (`public_space`, `doc`, `title`, `body`, `marks`
    /// as JSON) and the record's source. Returns the author's safety number.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_provenance(
        &mut self,
        author: &str,
        listing: &str,
        public_space: &str,
        doc: &str,
        title: &str,
        body: &str,
        marks: &str,
        provenance: &str,
    ) -> Result<String, JsValue> {
        let marks = text_marks(marks)?;
        let author = UserId::new(author).map_err(bad)?;
        let listing: api::UserListing = serde_json::from_str(listing)
            .map_err(|e| fail(ErrorCode::Protocol, format!("the author's listing: {e}")))?;
        let key = self
            .engine
            .pin(&author, &listing)
            .map_err(|f| fail(f.code.into(), f.message))?;
        let record: Provenance = serde_json::from_str(provenance).map_err(bad)?;
        let certificate = listing
            .devices
            .iter()
            .filter_map(|d| hex::decode(&d.certificate).ok())
            .filter_map(|c| postcard::from_bytes::<DeviceCertificate>(&c).ok())
            .find(|c| c.device.to_hex() == record.device)
            .ok_or_else(|| {
                fail(
                    ErrorCode::Identity,
                    "the device named by the provenance is not one of its author's",
                )
            })?;
        record
            .verify(
                space_id(public_space)?,
                doc,
                title,
                body,
                &marks,
                &certificate,
            )
            .map_err(|e| fail(ErrorCode::Identity, e))?;
        Ok(key.safety_number(&author))
    }

    // ---- spaces ---------------------------------------------------------

    /// True if this device is in the space.
    pub fn has_space(&self, space: &str) -> bool {
        space_id(space).is_ok_and(|id| self.engine.view(id).is_some())
    }

    /// The spaces this device is in.
    pub fn spaces(&self) -> Result<Ts<SpaceList>, JsValue> {
        let me = self.engine.device().user();
        ts(SpaceList(
            self.engine
                .spaces()
                .into_iter()
                .filter_map(|id| self.engine.view(id))
                .map(|v| {
                    let role = v.space().policy().ok().and_then(|p| p.role(me));
                    SpaceSummary {
                        id: v.id().to_hex(),
                        epoch: v.space().epoch() as f64,
                        authenticator: hex::encode(v.space().epoch_authenticator()),
                        code: v.space().space_code(),
                        removed: v.is_removed(),
                        broken: v.broken().map(str::to_owned),
                        unreadable: v.unreadable() as f64,
                        role: role.map(|r| r.as_str().to_owned()),
                        read_only: amicus_core::engine::read_only(v),
                    }
                })
                .collect(),
        ))
    }

    /// The member devices of a space, with roles and safety numbers.
    pub fn members(&self, space: &str) -> Result<Ts<MemberList>, JsValue> {
        let view = self.view(space_id(space)?)?;
        let policy = view
            .space()
            .policy()
            .map_err(|e| fail(ErrorCode::Space, e))?;
        let members = view
            .space()
            .members()
            .map_err(|e| fail(ErrorCode::Space, e))?;
        ts(MemberList(
            members
                .into_iter()
                .map(|m| Member {
                    safety_number: policy
                        .members
                        .get(&m.user)
                        .map(|p| p.identity_key.safety_number(&m.user)),
                    user: m.user.to_string(),
                    device: m.device.to_hex(),
                    role: m.role.as_str().to_owned(),
                })
                .collect(),
        ))
    }

    // ---- documents ------------------------------------------------------

    /// Creates a filing and lists it in the library; returns its id. Both
    /// go out at the next flush interval (or [`Self::flush`] them).
    pub fn new_document(
        &mut self,
        space: &str,
        title: &str,
        folder: &str,
    ) -> Result<String, JsValue> {
        Ok(self
            .engine
            .new_document(space_id(space)?, title, folder)
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)?
            .to_hex())
    }

    // ---- case records ---------------------------------------------------

    /// The space's case records, the types they may name, and their counts
    /// (computed on this device).
    pub fn records(&mut self, space: &str) -> Result<Ts<RegisterView>, JsValue> {
        use amicus_core::monitoring;
        let id = space_id(space)?;
        let register = self
            .engine
            .records(id)
            .map_err(|f| fail(f.code.into(), f.message))?;
        let at = |t: Option<i64>| t.map(|t| t as f64);
        let counts = monitoring::counts(&register.records)
            .into_iter()
            .map(|(d, v)| DimCounts {
                dim: d.as_str().to_owned(),
                values: v
                    .into_iter()
                    .map(|(value, count)| ValueCount { value, count })
                    .collect(),
            })
            .collect();
        ts(RegisterView {
            stream: monitoring::stream(id).to_hex(),
            types: register.types(),
            added_types: register
                .added_types
                .iter()
                .map(|(code, label)| AddedType {
                    code: code.clone(),
                    label: label.clone(),
                })
                .collect(),
            counts,
            records: register
                .records
                .into_iter()
                .map(|r| RecordView {
                    id: r.id,
                    date: r.fields.date,
                    country: r.fields.country,
                    region: r.fields.region,
                    types: r.fields.types,
                    profession: r.fields.profession,
                    gender: r.fields.gender,
                    status: r.fields.status,
                    outcome: r.fields.outcome,
                    sources: r.fields.sources,
                    notes: r.fields.notes,
                    by: r.by.name,
                    by_verified: r.by.verified,
                    edited_by: r.edited_by.name,
                    edited_by_verified: r.edited_by.verified,
                    created: at(r.created_ms),
                    edited: at(r.edited_ms),
                })
                .collect(),
        })
    }

    /// Writes a new case record (`fields`: `{date, country, region, types,
    /// profession, gender, status, outcome, sources, notes}`); returns its
    /// id. It goes out at the next flush interval.
    pub fn new_record(&mut self, space: &str, fields: JsValue) -> Result<String, JsValue> {
        let fields: amicus_core::monitoring::Fields =
            serde_wasm_bindgen::from_value(fields).map_err(bad)?;
        self.engine
            .new_record(space_id(space)?, &fields, now_ms())
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)
    }

    /// Writes the fields of the record `id` that differ from `before`
    /// (what the form was opened from).
    pub fn edit_record(
        &mut self,
        space: &str,
        id: &str,
        before: JsValue,
        fields: JsValue,
    ) -> Result<(), JsValue> {
        let before: amicus_core::monitoring::Fields =
            serde_wasm_bindgen::from_value(before).map_err(bad)?;
        let fields: amicus_core::monitoring::Fields =
            serde_wasm_bindgen::from_value(fields).map_err(bad)?;
        self.engine
            .edit_record(space_id(space)?, id, &before, &fields, now_ms())
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)
    }

    /// Takes a record out of the space's register.
    pub fn remove_record(&mut self, space: &str, id: &str) -> Result<(), JsValue> {
        self.engine
            .remove_record(space_id(space)?, id)
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)
    }

    /// Adds a violation type to the space's register (space managers).
    pub fn add_violation_type(
        &mut self,
        space: &str,
        code: &str,
        label: &str,
    ) -> Result<(), JsValue> {
        self.engine
            .add_violation_type(space_id(space)?, code, label)
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)
    }

    /// The records (or, with `counts`, the counts) as CSV.
    pub fn records_csv(&mut self, space: &str, counts: bool) -> Result<String, JsValue> {
        use amicus_core::monitoring;
        let records = self
            .engine
            .records(space_id(space)?)
            .map_err(|f| fail(f.code.into(), f.message))?
            .records;
        Ok(if counts {
            monitoring::counts_csv(&monitoring::counts(&records))
        } else {
            monitoring::records_csv(&records)
        })
    }

    /// The aggregate publishing would send: counts by `dims`, cells under
    /// `k` left out (refused when every cell is).
    pub fn aggregate(
        &mut self,
        space: &str,
        title: &str,
        dims: Vec<String>,
        k: u32,
    ) -> Result<Ts<AggregateView>, JsValue> {
        let dims = parse_dims(&dims)?;
        let a = self
            .engine
            .aggregate(space_id(space)?, title, &dims, k)
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)?;
        ts(AggregateView::from(&a))
    }

    /// The aggregate signed by this device for publication `id` of
    /// `public_space` (space managers), as the JSON text of the body of `PUT
    /// /v1/public/{public_space}/aggregates/{id}`. Flush the register
    /// first, so that members can check the heads it names.
    pub fn publish_aggregate(
        &mut self,
        space: &str,
        public_space: &str,
        id: &str,
        title: &str,
        dims: Vec<String>,
        k: u32,
    ) -> Result<String, JsValue> {
        let dims = parse_dims(&dims)?;
        let published = self
            .engine
            .publish_aggregate(
                space_id(space)?,
                space_id(public_space)?,
                id,
                title,
                &dims,
                k,
            )
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)?;
        serde_json::to_string(&published).map_err(bad)
    }

    // ---- discussions ----------------------------------------------------

    /// Starts a discussion with its first post (`attachments`: library
    /// entry ids) and lists it; returns its id. Both go out at the next
    /// flush interval.
    pub fn new_discussion(
        &mut self,
        space: &str,
        title: &str,
        text: &str,
        attachments: Vec<String>,
    ) -> Result<String, JsValue> {
        let (stream, _) = self
            .engine
            .new_discussion(space_id(space)?, title, text, &attachments, now_ms())
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)?;
        Ok(stream.to_hex())
    }

    /// Posts in a discussion, replying to `reply_to` (empty: none);
    /// returns the post's id.
    pub fn post(
        &mut self,
        space: &str,
        stream: &str,
        reply_to: &str,
        text: &str,
        attachments: Vec<String>,
    ) -> Result<String, JsValue> {
        let reply_to = (!reply_to.is_empty()).then_some(reply_to);
        self.engine
            .post(
                space_id(space)?,
                stream_id(stream)?,
                reply_to,
                text,
                &attachments,
                now_ms(),
            )
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)
    }

    /// Replaces the text of one of this user's posts.
    pub fn edit_post(
        &mut self,
        space: &str,
        stream: &str,
        post: &str,
        text: &str,
    ) -> Result<(), JsValue> {
        self.engine
            .edit_post(space_id(space)?, stream_id(stream)?, post, text, now_ms())
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)
    }

    /// Reads a discussion.
    pub fn discussion(&mut self, space: &str, stream: &str) -> Result<Ts<DiscussionView>, JsValue> {
        let d = self
            .engine
            .discussion(space_id(space)?, stream_id(stream)?)
            .map_err(|f| fail(f.code.into(), f.message))?;
        let at = |t: Option<i64>| t.map(|t| t as f64);
        ts(DiscussionView {
            title: d.title,
            posts: d
                .posts
                .into_iter()
                .map(|p| Post {
                    id: p.id,
                    author: p.author.name,
                    verified: p.author.verified,
                    by: p.by.name,
                    by_verified: p.by.verified,
                    text: p.text,
                    at_ms: at(p.at_ms),
                    edited_ms: at(p.edited_ms),
                    reply_to: p.reply_to,
                    attachments: p.attachments,
                    mentions: p.mentions,
                })
                .collect(),
        })
    }

    /// What others changed since this user last looked, in every space.
    pub fn activity(&mut self) -> Result<Ts<ActivityList>, JsValue> {
        ts(ActivityList(
            self.engine
                .activity()
                .into_iter()
                .map(|i| ActivityEntry {
                    space: i.space.to_hex(),
                    id: i.stream.to_hex(),
                    kind: i.kind.as_str().to_owned(),
                    title: i.title,
                    new: i.changes.new,
                    by: i.changes.by,
                    posts: i.changes.posts,
                    mentions: i.changes.mentions,
                    added: i.changes.added,
                })
                .collect(),
        ))
    }

    /// Counts a document (or, with the library's id, the library) as seen
    /// as this device holds it now.
    pub fn mark_seen(&mut self, space: &str, stream: &str) -> Result<(), JsValue> {
        self.engine
            .mark_seen(space_id(space)?, stream_id(stream)?)
            .map_err(|f| fail(f.code.into(), f.message))
    }

    /// Renames a library entry (a document as listed, a file, a folder);
    /// it goes out with the library's next flush.
    pub fn rename_entry(&mut self, space: &str, entry: &str, name: &str) -> Result<(), JsValue> {
        let id = space_id(space)?;
        self.edit(id, library::stream(id), |doc| {
            library::rename(doc, entry, name)
        })
    }

    /// Moves a library entry into `folder` (empty: the top).
    pub fn move_entry(&mut self, space: &str, entry: &str, folder: &str) -> Result<(), JsValue> {
        let id = space_id(space)?;
        self.edit(id, library::stream(id), |doc| {
            library::move_to(doc, entry, folder)
        })
    }

    /// Removes a library entry (a folder only once empty).
    ///
    /// Returns what undoes it with [`Device::restore_entry`] (the library's
    /// heads before the removal, hex, comma-separated).
    pub fn remove_entry(&mut self, space: &str, entry: &str) -> Result<String, JsValue> {
        let id = space_id(space)?;
        self.edit(id, library::stream(id), |doc| {
            let heads = doc.get_heads();
            library::remove(doc, entry)?;
            Ok(heads
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(","))
        })
    }

    /// Puts back an entry this device removed, as it was (`undo`: what
    /// [`Device::remove_entry`] returned).
    pub fn restore_entry(&mut self, space: &str, entry: &str, undo: &str) -> Result<(), JsValue> {
        let id = space_id(space)?;
        let heads: Vec<automerge::ChangeHash> = undo
            .split(',')
            .map(|h| h.parse())
            .collect::<Result<_, _>>()
            .map_err(|_| fail(ErrorCode::BadInput, "not what removing the entry returned"))?;
        self.edit(id, library::stream(id), |doc| {
            library::restore(doc, entry, &heads)
        })
    }

    /// Adds a folder to the library; returns its id.
    pub fn new_folder(&mut self, space: &str, name: &str, parent: &str) -> Result<String, JsValue> {
        let id = space_id(space)?;
        let folder = hex::encode(amicus_core::MessageId::random().0);
        self.edit(id, library::stream(id), |doc| {
            library::add_folder(doc, &folder, name, parent)
        })?;
        Ok(folder)
    }

    /// The id of a space's library stream.
    pub fn library_stream(space: &str) -> Result<String, JsValue> {
        Ok(library::stream(space_id(space)?).to_hex())
    }

    /// A space's name and description, as its space managers set them.
    pub fn space_profile(&mut self, space: &str) -> Result<Ts<SpaceProfile>, JsValue> {
        let profile = self
            .engine
            .profile(space_id(space)?)
            .map_err(|f| fail(f.code.into(), f.message))?;
        ts(SpaceProfile {
            name: profile.name,
            description: profile.description,
        })
    }

    /// Names and describes a space (space managers only); it goes out
    /// with the library's next flush.
    pub fn set_space_profile(
        &mut self,
        space: &str,
        name: &str,
        description: &str,
    ) -> Result<(), JsValue> {
        self.engine
            .set_profile(space_id(space)?, name, description)
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)
    }

    /// The library of a space.
    pub fn library(&mut self, space: &str) -> Result<Ts<LibraryList>, JsValue> {
        let id = space_id(space)?;
        let view = self.view_mut(id)?;
        let Some(replica) = view.existing_replica(library::stream(id)) else {
            return ts(LibraryList(Vec::new()));
        };
        let entries = library::entries(replica.doc()).map_err(doc_err)?;
        ts(LibraryList(
            entries
                .into_iter()
                .map(|e| match e {
                    library::Entry::Folder { id, name, parent } => LibraryEntry {
                        kind: EntryKind::Folder,
                        id,
                        name,
                        folder: Some(parent),
                        size: None,
                        media_type: None,
                        versions: Vec::new(),
                        current: None,
                    },
                    library::Entry::Document {
                        stream,
                        title,
                        folder,
                    } => LibraryEntry {
                        kind: EntryKind::Document,
                        id: stream.to_hex(),
                        name: title,
                        folder: Some(folder),
                        size: None,
                        media_type: None,
                        versions: Vec::new(),
                        current: None,
                    },
                    library::Entry::Discussion { stream, title } => LibraryEntry {
                        kind: EntryKind::Discussion,
                        id: stream.to_hex(),
                        name: title,
                        folder: None,
                        size: None,
                        media_type: None,
                        versions: Vec::new(),
                        current: None,
                    },
                    library::Entry::File {
                        id,
                        manifest,
                        folder,
                        versions,
                    } => LibraryEntry {
                        kind: EntryKind::File,
                        id,
                        media_type: Some(manifest.media_type.clone()),
                        name: manifest.name,
                        folder: Some(folder),
                        size: Some(manifest.plaintext_size as f64),
                        versions: versions
                            .into_iter()
                            .map(|m| FileVersion {
                                file: m.file_id.to_string(),
                                name: m.name,
                                size: m.plaintext_size as f64,
                            })
                            .collect(),
                        current: Some(manifest.file_id.to_string()),
                    },
                })
                .collect(),
        ))
    }

    /// Reads a filing: its text with marks and comments, and its named
    /// versions (each rebuilt at its heads: the editor reads [`Self::text`]
    /// on each keystroke instead).
    pub fn read(&mut self, space: &str, stream: &str) -> Result<Ts<Filing>, JsValue> {
        let text = self.filing_text(space, stream)?;
        let authors = self.authors(space, stream)?;
        let doc = self.doc(space, stream)?;
        let mut versions = Vec::new();
        for v in filing::versions(doc, &authors).map_err(doc_err)? {
            let body = filing::body_at(doc, &v).map_err(doc_err)?;
            versions.push(NamedVersion {
                name: v.name,
                author: v.author.name,
                verified: v.author.verified,
                at_ms: v.at_ms.map(|t| t as f64),
                body: Some(body),
            });
        }
        ts(Filing {
            title: text.title,
            body: text.body,
            marks: text.marks,
            comments: text.comments,
            versions,
        })
    }

    /// A filing's named versions, without their text.
    pub fn versions(&mut self, space: &str, stream: &str) -> Result<Ts<VersionList>, JsValue> {
        let authors = self.authors(space, stream)?;
        let doc = self.doc(space, stream)?;
        ts(VersionList(
            filing::versions(doc, &authors)
                .map_err(doc_err)?
                .into_iter()
                .map(|v| NamedVersion {
                    name: v.name,
                    author: v.author.name,
                    verified: v.author.verified,
                    at_ms: v.at_ms.map(|t| t as f64),
                    body: None,
                })
                .collect(),
        ))
    }

    /// A filing's title and text with its marks and commented passages.
    pub fn text(&mut self, space: &str, stream: &str) -> Result<Ts<FilingText>, JsValue> {
        ts(self.filing_text(space, stream)?)
    }

    fn filing_text(&mut self, space: &str, stream: &str) -> Result<FilingText, JsValue> {
        let authors = self.authors(space, stream)?;
        let doc = self.doc(space, stream)?;
        let marks = filing::marks(doc)
            .map_err(doc_err)?
            .into_iter()
            .map(|(mark, start, end)| Mark { mark, start, end })
            .collect();
        let comments = filing::threads(doc, &authors)
            .map_err(doc_err)?
            .into_iter()
            .map(|t| Thread {
                thread: t.id,
                start: t.start,
                end: t.end,
                resolved: t.resolved,
                resolved_by: t.resolved_by.map(|a| Message {
                    author: a.name,
                    verified: a.verified,
                    text: String::new(),
                    at_ms: None,
                }),
                messages: t
                    .messages
                    .into_iter()
                    .map(|m| Message {
                        author: m.author.name,
                        verified: m.author.verified,
                        text: m.text,
                        at_ms: m.at_ms.map(|t| t as f64),
                    })
                    .collect(),
            })
            .collect();
        Ok(FilingText {
            title: filing::title(doc).map_err(doc_err)?,
            body: filing::body(doc).map_err(doc_err)?,
            marks,
            comments,
        })
    }

    /// The signed withdrawal of the public copy `doc` of `public_space`
    /// written at `updated` (its record's `updated`), to send as the body
    /// of `DELETE /v1/public/{space}/docs/{doc}`.
    pub fn withdrawal(
        &self,
        public_space: &str,
        doc: &str,
        updated: f64,
    ) -> Result<Ts<WithdrawalBody>, JsValue> {
        let signed = amicus_core::publication::Withdrawal::sign(
            self.engine.device(),
            space_id(public_space)?,
            doc,
            updated as u64,
        );
        ts(WithdrawalBody {
            withdrawal: SignedWithdrawal {
                device: signed.device,
                signature: signed.signature,
            },
        })
    }

    /// The body of `PUT /v1/public/{public_space}/docs/{doc}` publishing a
    /// filing's current title, text and formatting, with its provenance
    /// signed by this device (PROTOCOL §15.1, [`publication::publish`]).
    /// `language` is a primary tag or empty.
    pub fn publication(
        &mut self,
        space: &str,
        stream: &str,
        public_space: &str,
        doc: &str,
        language: &str,
    ) -> Result<Ts<Publication>, JsValue> {
        let copy = self
            .engine
            .publication(
                space_id(space)?,
                stream_id(stream)?,
                space_id(public_space)?,
                doc,
                Some(language),
            )
            .map_err(|f| fail(f.code.into(), f.message))?;
        ts(Publication {
            title: copy.title,
            body: copy.body,
            marks: copy.marks.into_iter().map(Mark::from).collect(),
            language: copy.language,
            provenance: SignedProvenance {
                source_space: copy.provenance.source_space,
                source_stream: copy.provenance.source_stream,
                heads: copy.provenance.heads,
                device: copy.provenance.device,
                signature: copy.provenance.signature,
            },
        })
    }

    /// Compares a public copy with this device's replica of its source:
    /// `matches` (the title and text at the provenance's heads are the
    /// published ones, and the formatting too if the copy has any; `marks`
    /// is the copy's as JSON), `differs`, or `unknown` (some head is not held
    /// here yet).
    pub fn check_copy(
        &mut self,
        space: &str,
        stream: &str,
        heads: Vec<String>,
        title: &str,
        body: &str,
        marks: &str,
    ) -> Result<Ts<CopyCheckResult>, JsValue> {
        let marks = text_marks(marks)?;
        let doc = self.doc(space, stream)?;
        ts(
            match publication::check_copy(doc, &heads, title, body, &marks).map_err(doc_err)? {
                CopyCheck::Matches => CopyCheckResult::Matches,
                CopyCheck::Differs => CopyCheckResult::Differs,
                CopyCheck::Unknown => CopyCheckResult::Unknown,
            },
        )
    }

    /// Replaces `delete` characters at `at` (Unicode code points) by `text`.
    pub fn splice(
        &mut self,
        space: &str,
        stream: &str,
        at: usize,
        delete: usize,
        text: &str,
    ) -> Result<(), JsValue> {
        let len = filing::body(self.doc(space, stream)?)
            .map_err(doc_err)?
            .chars()
            .count();
        if at.saturating_add(delete) > len {
            return Err(bad(format!("the edit reaches past the end ({len})")));
        }
        self.edit_existing(space, stream, |doc| {
            filing::splice(doc, at, delete as isize, text)
        })
    }

    /// Sets the title.
    pub fn set_title(&mut self, space: &str, stream: &str, title: &str) -> Result<(), JsValue> {
        self.edit_existing(space, stream, |doc| filing::set_title(doc, title))
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
    ) -> Result<(), JsValue> {
        if !matches!(mark, "bold" | "italic" | "underline") {
            return Err(bad(format!("unknown mark {mark}")));
        }
        self.edit_existing(space, stream, |doc| {
            filing::format(doc, start, end, mark, on)
        })
    }

    /// Comments on the passage `[start, end)`.
    pub fn comment(
        &mut self,
        space: &str,
        stream: &str,
        start: usize,
        end: usize,
        text: &str,
    ) -> Result<(), JsValue> {
        self.check_mentions(space, text)?;
        let author = self.user();
        let thread = hex::encode(amicus_core::MessageId::random().0);
        self.edit_existing(space, stream, |doc| {
            filing::comment(doc, &thread, start, end, &author, text, now_ms())
        })
    }

    /// Replies in a comment thread.
    pub fn reply(
        &mut self,
        space: &str,
        stream: &str,
        thread: &str,
        text: &str,
    ) -> Result<(), JsValue> {
        self.check_mentions(space, text)?;
        let author = self.user();
        self.edit_existing(space, stream, |doc| {
            filing::reply(doc, thread, &author, text, now_ms())
        })
    }

    /// Marks a comment thread resolved, or open again.
    pub fn resolve(
        &mut self,
        space: &str,
        stream: &str,
        thread: &str,
        resolved: bool,
    ) -> Result<(), JsValue> {
        self.edit_existing(space, stream, |doc| filing::resolve(doc, thread, resolved))
    }

    /// Names the current version.
    pub fn name_version(&mut self, space: &str, stream: &str, name: &str) -> Result<(), JsValue> {
        let author = self.user();
        self.edit_existing(space, stream, |doc| {
            filing::name_version(doc, name, &author, now_ms())
        })
    }

    /// Checks, before a file is read, that it may go to `space` (in
    /// `folder`, or as the new version of the library's file `replaces`,
    /// "" for none).
    pub fn check_upload(
        &mut self,
        space: &str,
        folder: &str,
        replaces: &str,
    ) -> Result<(), JsValue> {
        let target = upload_target(space, folder, replaces)?;
        self.engine
            .check_upload(&target)
            .map_err(|f| fail(f.code.into(), f.message))
    }

    /// Lists a file whose upload is done where it was going; it goes out
    /// with the library's next flush (then forget the upload's record).
    pub fn list_upload(&mut self, upload: &Upload) -> Result<(), JsValue> {
        let manifest = upload
            .manifest
            .as_ref()
            .ok_or_else(|| err("the upload is not done"))?;
        self.engine
            .list_upload(upload.inner.target(), manifest)
            .map_err(|f| fail(f.code.into(), f.message))
    }

    /// Starts downloading a version of a file of the library (the
    /// version's own file id: `current` or one of `versions` in the
    /// listing; a file's id in the library is its first version's).
    pub fn download(&mut self, space: &str, file: &str) -> Result<Download, JsValue> {
        let manifest = self
            .engine
            .file_version(space_id(space)?, file)
            .map_err(|f| fail(f.code.into(), f.message))?;
        Ok(Download {
            inner: transfer::Download::start(manifest).map_err(err)?,
        })
    }
}

impl Device {
    fn view(&self, id: SpaceId) -> Result<&SpaceView, JsValue> {
        self.engine.view(id).ok_or_else(|| no_space(id))
    }

    fn view_mut(&mut self, id: SpaceId) -> Result<&mut SpaceView, JsValue> {
        self.engine.view_mut(id).ok_or_else(|| no_space(id))
    }

    fn replica(&mut self, space: &str, stream: &str) -> Result<&mut Replica, JsValue> {
        let id = space_id(space)?;
        let stream = stream_id(stream)?;
        self.view_mut(id)?.existing_replica(stream).ok_or_else(|| {
            fail(
                ErrorCode::Document,
                format!("no readable document {stream} in this space"),
            )
        })
    }

    /// Who wrote what in a document, as the log proves it.
    fn authors(
        &self,
        space: &str,
        stream: &str,
    ) -> Result<amicus_core::document::Authors, JsValue> {
        Ok(self.view(space_id(space)?)?.authors(stream_id(stream)?))
    }

    fn doc(&mut self, space: &str, stream: &str) -> Result<&mut automerge::AutoCommit, JsValue> {
        Ok(self.replica(space, stream)?.doc())
    }

    /// A local edit of a document (created empty if the space has none),
    /// through the engine, which sends it at the next flush interval.
    fn edit<T>(
        &mut self,
        space: SpaceId,
        stream: StreamId,
        edit: impl FnOnce(&mut automerge::AutoCommit) -> Result<T, amicus_core::document::DocumentError>,
    ) -> Result<T, JsValue> {
        self.engine
            .edit(space, stream, |replica| edit(replica.doc()))
            .map_err(|f| fail(f.code.into(), f.message))?
            .map_err(edit_err)
    }

    /// A local edit of a document the space already holds.
    fn check_mentions(&self, space: &str, text: &str) -> Result<(), JsValue> {
        self.engine
            .check_mentions(space_id(space)?, text)
            .map_err(|f| fail(f.code.into(), f.message))
    }

    fn edit_existing<T>(
        &mut self,
        space: &str,
        stream: &str,
        edit: impl FnOnce(&mut automerge::AutoCommit) -> Result<T, amicus_core::document::DocumentError>,
    ) -> Result<T, JsValue> {
        self.replica(space, stream)?;
        self.edit(space_id(space)?, stream_id(stream)?, edit)
    }
}

/// The marks of a public copy, from their JSON (`[]` when it has none).
fn text_marks(json: &str) -> Result<Vec<publication::TextMark>, JsValue> {
    serde_json::from_str(json).map_err(|e| {
        fail(
            ErrorCode::BadInput,
            format!("the marks of a public copy: {e}"),
        )
    })
}

/// Takes back the edits an earlier version of the app sealed beside the
/// state (item `browser-unsent`); edits of a space this device no longer
/// follows are dropped.
fn adopt_unsent(restored: &mut Restored, sealed: &[u8], key: &StateKey) -> Result<(), JsValue> {
    let bytes = key
        .0
        .open(UNSENT_ITEM, sealed)
        .map_err(|e| fail(ErrorCode::Sealed, e))?;
    for mut edits in UnsentEdits::decode(&bytes).map_err(|e| fail(ErrorCode::Sealed, e))? {
        let Some(view) = restored.spaces.get_mut(&edits.space) else {
            continue;
        };
        let changes = std::mem::take(&mut edits.changes);
        view.adopt(&restored.device, edits.stream, changes)
            .map_err(doc_err)?;
    }
    Ok(())
}

fn no_space(id: SpaceId) -> JsValue {
    fail(
        ErrorCode::NotMember,
        format!("this device is not in space {id}"),
    )
}

fn parse_role(role: &str) -> Result<Role, JsValue> {
    Role::parse(role).ok_or_else(|| bad(format!("unknown role {role}")))
}

/// Where an upload goes, from the page's strings.
fn upload_target(space: &str, folder: &str, replaces: &str) -> Result<transfer::Target, JsValue> {
    Ok(transfer::Target {
        space: space_id(space)?,
        folder: folder.to_owned(),
        replaces: (!replaces.is_empty()).then(|| replaces.to_owned()),
    })
}

/// The sealed item of an upload in progress.
const UPLOAD_ITEM: &str = "browser-upload";

/// What an interrupted upload kept before [`transfer`] wrote its records:
/// `2 || postcard(LegacyUpload)`, its chunk stored beside it.
#[derive(serde::Deserialize)]
struct LegacyUpload {
    progress: UploadProgress,
    space: String,
    folder: String,
    replaces: String,
}

/// What version 1 of a saved upload held (no `replaces`).
#[derive(serde::Deserialize)]
struct LegacyUploadV1 {
    progress: UploadProgress,
    space: String,
    folder: String,
}

/// An interrupted upload's record, opened: as [`transfer`] writes it, or
/// an earlier layout (with the chunk the page kept beside it) read into it.
fn open_upload(
    sealed: &[u8],
    chunk: Option<Vec<u8>>,
    key: &StateKey,
) -> Result<Zeroizing<Vec<u8>>, JsValue> {
    let bytes = key.0.open(UPLOAD_ITEM, sealed).map_err(err)?;
    let corrupt = || err("the saved upload is corrupt or from another version");
    let legacy = match bytes.split_first() {
        Some((2, rest)) => postcard::from_bytes::<LegacyUpload>(rest).map_err(|_| corrupt())?,
        Some((1, rest)) => postcard::from_bytes::<LegacyUploadV1>(rest)
            .map(|v| LegacyUpload {
                progress: v.progress,
                space: v.space,
                folder: v.folder,
                replaces: String::new(),
            })
            .map_err(|_| corrupt())?,
        _ => {
            transfer::Interrupted::read(&bytes).ok_or_else(corrupt)?;
            return Ok(Zeroizing::new(bytes.to_vec()));
        }
    };
    let target = upload_target(&legacy.space, &legacy.folder, &legacy.replaces)?;
    Ok(transfer::Interrupted::upgrade(
        legacy.progress,
        target,
        chunk,
    ))
}

/// What a failed request tells a transfer: `status` 0 when the server
/// could not be reached, `retry_after` 0 when it sent none.
fn http_failure(status: u16, retry_after: u32) -> transfer::HttpFailure {
    transfer::HttpFailure {
        status: (status != 0).then_some(status),
        retry_after: (retry_after != 0).then_some(u64::from(retry_after)),
    }
}

/// A file being sealed and sent, as [`transfer::Upload`] says, step by
/// step: the page only reads the file, stores what it is given, sends,
/// asks and waits.
#[wasm_bindgen]
pub struct Upload {
    inner: transfer::Upload,
    /// Set when the last step was `done`.
    manifest: Option<FileManifest>,
}

#[wasm_bindgen]
impl Upload {
    /// Starts uploading a file of `size` bytes to `space` (in `folder`,
    /// or as the new version of the library's file `replaces`; "" for
    /// none), from the sealed record of an interrupted upload of it if
    /// there is one (and the chunk an earlier version of the page kept
    /// beside it).
    #[wasm_bindgen(constructor)]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        media_type: &str,
        size: u64,
        space: &str,
        folder: &str,
        replaces: &str,
        record: Option<Vec<u8>>,
        chunk: Option<Vec<u8>>,
        key: &StateKey,
    ) -> Result<Upload, JsValue> {
        let target = upload_target(space, folder, replaces)?;
        let record = record.map(|r| open_upload(&r, chunk, key)).transpose()?;
        let source = transfer::Source {
            name: name.to_owned(),
            media_type: media_type.to_owned(),
            size,
        };
        Ok(Self {
            inner: transfer::Upload::start(source, target, record.as_deref().map(|r| &r[..]))
                .map_err(err)?,
            manifest: None,
        })
    }

    /// What an interrupted upload's sealed record describes (and the chunk
    /// an earlier version of the page kept beside it).
    #[wasm_bindgen(unchecked_return_type = "SavedUploadInfo")]
    pub fn describe(
        record: &[u8],
        chunk: Option<Vec<u8>>,
        key: &StateKey,
    ) -> Result<JsValue, JsValue> {
        let record = open_upload(record, chunk, key)?;
        let i =
            transfer::Interrupted::read(&record).ok_or_else(|| err("not an upload's record"))?;
        Ok(js(&json!({
            "file": i.file, "space": i.target.space.to_hex(), "folder": i.target.folder,
            "replaces": i.target.replaces.unwrap_or_default(),
            "name": i.name, "size": i.size, "done": i.done, "chunks": i.chunks,
        })))
    }

    /// The file's id (hex): the record's name in the page's store.
    pub fn file_id(&self) -> String {
        self.inner.file_id()
    }

    /// The space the file goes to.
    pub fn space(&self) -> String {
        self.inner.target().space.to_hex()
    }

    /// `[chunks at the server, chunks in all]`.
    pub fn progress(&self) -> Vec<f64> {
        let (done, total) = self.inner.progress();
        vec![done as f64, total as f64]
    }

    /// The next step (`UploadStep`): `read` the file's bytes from
    /// `offset` (at most `len`) and pass them to `read`; `store` the
    /// sealed record in place of the upload's earlier one, then call
    /// `stored`; `put` the blob, then `sent`; ask which of `ids` the
    /// server lacks, then `missing`; `wait` `ms`; `done`: list it with
    /// `Device.list_upload`, send the library, then delete the record.
    #[wasm_bindgen(unchecked_return_type = "UploadStep")]
    pub fn step(&mut self, key: &StateKey) -> Result<JsValue, JsValue> {
        let o = js_sys::Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = js_sys::Reflect::set(&o, &k.into(), &v);
        };
        match self.inner.step().map_err(transfer_err)? {
            transfer::UploadStep::Read { offset, len } => {
                set("kind", "read".into());
                set("offset", JsValue::from_f64(offset as f64));
                set("len", JsValue::from_f64(len as f64));
            }
            transfer::UploadStep::Store(record) => {
                set("kind", "store".into());
                set(
                    "sealed",
                    js_sys::Uint8Array::from(&key.0.seal(UPLOAD_ITEM, &record)[..]).into(),
                );
            }
            transfer::UploadStep::Put { id, blob } => {
                set("kind", "put".into());
                set("id", id.to_string().into());
                set("blob", js_sys::Uint8Array::from(&blob[..]).into());
            }
            transfer::UploadStep::AskMissing(ids) => {
                set("kind", "missing".into());
                let list = js_sys::Array::new();
                for id in ids {
                    list.push(&id.to_string().into());
                }
                set("ids", list.into());
            }
            transfer::UploadStep::Wait(ms) => {
                set("kind", "wait".into());
                set("ms", JsValue::from_f64(ms as f64));
            }
            transfer::UploadStep::Done(manifest) => {
                self.manifest = Some(manifest);
                set("kind", "done".into());
            }
        }
        Ok(o.into())
    }

    /// The bytes a `read` step asked for.
    pub fn read(&mut self, bytes: &[u8]) -> Result<(), JsValue> {
        self.inner.read(bytes).map_err(transfer_err)
    }

    /// The record of a `store` step is stored.
    pub fn stored(&mut self) -> Result<(), JsValue> {
        self.inner.stored().map_err(transfer_err)
    }

    /// The blob of a `put` step was stored at the server.
    pub fn sent(&mut self) -> Result<(), JsValue> {
        self.inner.sent(Ok(())).map_err(transfer_err)
    }

    /// The `put` failed: the HTTP status (0: no answer) and `Retry-After`
    /// in seconds (0: none).
    pub fn send_failed(&mut self, status: u16, retry_after: u32) -> Result<(), JsValue> {
        self.inner
            .sent(Err(http_failure(status, retry_after)))
            .map_err(transfer_err)
    }

    /// The server's answer to a `missing` step: the ids it lacks.
    pub fn missing(&mut self, ids: Vec<String>) -> Result<(), JsValue> {
        let ids = ids
            .iter()
            .map(|id| {
                hex::decode(id)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(amicus_core::files::ChunkId)
                    .ok_or_else(|| bad(format!("not a chunk id: {id}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.missing(Ok(ids)).map_err(transfer_err)
    }

    /// The `missing` request failed (as for [`Upload::send_failed`]).
    pub fn missing_failed(&mut self, status: u16, retry_after: u32) -> Result<(), JsValue> {
        self.inner
            .missing(Err(http_failure(status, retry_after)))
            .map_err(transfer_err)
    }
}

/// A drop-box submission's sealed part fetched chunk by chunk, as
/// [`transfer::PartFetch`] says (retries, and a part refused when its
/// chunks are not as long as listed).
#[wasm_bindgen]
pub struct PartFetch {
    inner: transfer::PartFetch,
    sealed: Option<Vec<u8>>,
}

#[wasm_bindgen]
impl PartFetch {
    /// Starts fetching a part as the listing gives it (`size`, `chunks`).
    #[wasm_bindgen(constructor)]
    pub fn new(size: f64, chunks: Vec<String>) -> PartFetch {
        PartFetch {
            inner: transfer::PartFetch::start(&amicus_core::api::SubmissionPart {
                size: size as u64,
                chunks,
            }),
            sealed: None,
        }
    }

    /// The next step (`PartStep`): `get` the drop chunk `id` and pass it
    /// to `got`; `wait` `ms`; `done`: take the part with `take`.
    #[wasm_bindgen(unchecked_return_type = "DownloadStep")]
    pub fn step(&mut self) -> Result<JsValue, JsValue> {
        Ok(match self.inner.step().map_err(transfer_err)? {
            transfer::PartStep::Get(id) => js(&json!({ "kind": "get", "id": id })),
            transfer::PartStep::Wait(ms) => js(&json!({ "kind": "wait", "ms": ms })),
            transfer::PartStep::Done(sealed) => {
                self.sealed = Some(sealed);
                js(&json!({ "kind": "done" }))
            }
        })
    }

    /// The drop chunk of a `get` step.
    pub fn got(&mut self, blob: &[u8]) -> Result<(), JsValue> {
        self.inner.got(Ok(blob.to_vec())).map_err(transfer_err)
    }

    /// The `get` failed (as for [`Upload::send_failed`]).
    pub fn get_failed(&mut self, status: u16, retry_after: u32) -> Result<(), JsValue> {
        self.inner
            .got(Err(http_failure(status, retry_after)))
            .map_err(transfer_err)
    }

    /// The whole part, once `done`.
    pub fn take(&mut self) -> Result<Vec<u8>, JsValue> {
        self.sealed
            .take()
            .ok_or_else(|| err("the part is not whole yet"))
    }
}

/// A transfer that stopped, with a code the page words.
fn transfer_err(e: transfer::TransferError) -> JsValue {
    match e {
        transfer::TransferError::GaveUp => fail(ErrorCode::Network, e),
        transfer::TransferError::Refused(_) => fail(ErrorCode::Server, e),
        transfer::TransferError::SourceLength { .. } => fail(ErrorCode::SourceChanged, e),
        transfer::TransferError::PartLength { .. } => fail(ErrorCode::Intake, e),
        e => err(e),
    }
}

/// A file being fetched and opened, as [`transfer::Download`] says.
#[wasm_bindgen]
pub struct Download {
    inner: transfer::Download,
}

#[wasm_bindgen]
impl Download {
    /// The file's name.
    pub fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// The file's media type.
    pub fn media_type(&self) -> String {
        self.inner.media_type().to_owned()
    }

    /// `[chunks opened, chunks in all]`.
    pub fn progress(&self) -> Vec<f64> {
        let (done, total) = self.inner.progress();
        vec![done as f64, total as f64]
    }

    /// The next step (`DownloadStep`): `get` the blob `id` and pass it to
    /// `got`; `wait` `ms`; `done` when the file is whole.
    #[wasm_bindgen(unchecked_return_type = "DownloadStep")]
    pub fn step(&mut self) -> Result<JsValue, JsValue> {
        Ok(match self.inner.step().map_err(transfer_err)? {
            transfer::DownloadStep::Get(id) => js(&json!({ "kind": "get", "id": id.to_string() })),
            transfer::DownloadStep::Wait(ms) => js(&json!({ "kind": "wait", "ms": ms })),
            transfer::DownloadStep::Done => js(&json!({ "kind": "done" })),
        })
    }

    /// The blob of a `get` step: its plaintext, to keep in order.
    pub fn got(&mut self, blob: &[u8]) -> Result<Vec<u8>, JsValue> {
        match self.inner.got(Ok(blob.to_vec())).map_err(transfer_err)? {
            Some(plain) => Ok(plain),
            None => Err(err("a blob came and was not taken")),
        }
    }

    /// The `get` failed (as for [`Upload::send_failed`]).
    pub fn get_failed(&mut self, status: u16, retry_after: u32) -> Result<(), JsValue> {
        self.inner
            .got(Err(http_failure(status, retry_after)))
            .map(|_| ())
            .map_err(transfer_err)
    }
}
