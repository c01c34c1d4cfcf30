//! Drop boxes (PROTOCOL §11.6): people without an account submit sealed
//! statements and files to a confidential space.
//!
//! Members publish the space's intake key and open boxes; the server keeps
//! what it needs to take submissions (the key, an expiry, a quota) and the
//! sealed bytes, and learns their sizes and times only. The routes under
//! `/v1/drop/` need no account and are limited per address and per box.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use amicus_core::SpaceId;
use amicus_core::intake::IntakePublicKey;
use amicus_core::intake::drop::{CHUNK_LEN, MAX_PARTS};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Peer;
use crate::api::{ApiJson, body, load_space};
use crate::blobs::BlobId;
use crate::error::ApiError;
use crate::state::{Anonymous, AppState, now};
use crate::store::{DropBoxRecord, IntakeRecord, PartRecord, SpaceKind, SubmissionRecord};

type S = State<Arc<AppState>>;

/// A submission whose chunks have not all arrived after this long is
/// dropped and its reserved bytes given back to the box.
const PENDING_SECS: u64 = 24 * 3600;

/// The first bytes of every age v1 file.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

fn box_id(s: &str) -> Result<[u8; 16], ApiError> {
    amicus_core::intake::drop::BoxId::parse(s)
        .map(|b| b.0)
        .ok_or_else(|| ApiError::BadRequest("a drop box id is 32 lowercase hex digits".into()))
}

fn submission_id(s: &str) -> Result<[u8; 16], ApiError> {
    amicus_core::intake::drop::BoxId::parse(s)
        .map(|b| b.0)
        .ok_or_else(|| ApiError::BadRequest("a submission id is 32 lowercase hex digits".into()))
}

fn confidential(state: &AppState, headers: &HeaderMap, space: &str) -> Result<SpaceId, ApiError> {
    confidential_record(state, headers, space).map(|r| r.id)
}

fn confidential_record(
    state: &AppState,
    headers: &HeaderMap,
    space: &str,
) -> Result<crate::store::SpaceRecord, ApiError> {
    let who = state.caller(headers)?;
    state.rate_api(who.device)?;
    let record = load_space(state, &who, space)?;
    if record.kind != SpaceKind::Confidential {
        return Err(ApiError::BadRequest(
            "drop boxes belong to confidential spaces; a public space takes documents from its members"
                .into(),
        ));
    }
    Ok(record)
}

/// Body of `PUT /v1/spaces/{space}/intake`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutIntake {
    /// `age1…`.
    pub recipient: String,
    /// The epoch whose key it is.
    pub epoch: u64,
}

/// `PUT /v1/spaces/{space}/intake`: a member publishes the space's intake
/// key after opening or rotating it (§11.5).
pub async fn put_intake(
    State(state): S,
    headers: HeaderMap,
    Path(space): Path<String>,
    j: ApiJson<PutIntake>,
) -> Result<Json<Value>, ApiError> {
    let who = state.caller(&headers)?;
    let record = confidential_record(&state, &headers, &space)?;
    let space = record.id;
    let b = body(j)?;
    // An epoch the space has not reached would block every later key.
    if b.epoch > record.epoch {
        return Err(ApiError::BadRequest(format!(
            "epoch: the space is in epoch {}; a key of a later epoch cannot be in force",
            record.epoch
        )));
    }
    let key = IntakePublicKey::parse_age_recipient(&b.recipient)
        .map_err(|e| ApiError::BadRequest(format!("recipient: {e}")))?;
    let record = IntakeRecord {
        recipient: key.to_bytes(),
        epoch: b.epoch,
        by: who.device,
        at: now(),
    };
    if !state.store.put_intake(space, &record)? {
        return Err(ApiError::Conflict(
            "the space's intake key of this or a later epoch is already published".into(),
        )
        .because("intake_key_newer"));
    }
    Ok(Json(json!({ "recipient": b.recipient, "epoch": b.epoch })))
}

/// Body of `POST /v1/spaces/{space}/drop-boxes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDropBox {
    /// 32 hex digits, chosen by the member's device.
    pub id: String,
    /// Days it stays open (1 to 365).
    pub days: u32,
    /// The bytes it may take, sealed.
    pub quota: u64,
}

/// `POST /v1/spaces/{space}/drop-boxes`: opens a drop box.
pub async fn create_drop_box(
    State(state): S,
    headers: HeaderMap,
    Path(space): Path<String>,
    j: ApiJson<NewDropBox>,
) -> Result<Response, ApiError> {
    let who = state.caller(&headers)?;
    let space = confidential(&state, &headers, &space)?;
    let b = body(j)?;
    let id = box_id(&b.id)?;
    if !(1..=365).contains(&b.days) {
        return Err(ApiError::BadRequest(
            "days: a drop box stays open 1 to 365 days".into(),
        ));
    }
    let max = state.config.limits.max_drop_quota;
    if b.quota < CHUNK_LEN as u64 || b.quota > max {
        return Err(ApiError::BadRequest(format!(
            "quota: between {CHUNK_LEN} and {max} bytes"
        )));
    }
    if state.store.intake(space)?.is_none() {
        return Err(ApiError::Conflict(
            "publish the space's intake key before opening a drop box".into(),
        )
        .because("no_intake_key"));
    }
    let at = now();
    let open = state
        .store
        .drop_boxes(space)?
        .into_iter()
        .filter(|(_, r)| r.closed.is_none() && r.expires > at)
        .count();
    if open >= state.config.limits.drop_boxes_per_space {
        return Err(ApiError::Conflict(format!(
            "a space has at most {} open drop boxes; close one first",
            state.config.limits.drop_boxes_per_space
        ))
        .because("too_many_drop_boxes"));
    }
    let record = DropBoxRecord {
        space,
        created_by: who.user,
        created: at,
        expires: at + u64::from(b.days) * 86_400,
        quota: b.quota,
        used: 0,
        closed: None,
    };
    if !state.store.create_drop_box(id, &record)? {
        return Err(ApiError::Conflict("this drop box id is taken".into()));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": b.id, "expires": record.expires })),
    )
        .into_response())
}

/// `DELETE /v1/spaces/{space}/drop-boxes/{id}`: closes a box; its link
/// answers 410 from then on; what it received stays.
pub async fn close_drop_box(
    State(state): S,
    headers: HeaderMap,
    Path((space, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let space = confidential(&state, &headers, &space)?;
    let id = box_id(&id)?;
    let at = now();
    match state.store.update_drop_box(id, &mut |r| {
        if r.space != space || r.closed.is_some() {
            return false;
        }
        r.closed = Some(at);
        true
    })? {
        Some((r, _)) if r.space == space => Ok(StatusCode::NO_CONTENT),
        _ => Err(ApiError::NotFound("no such drop box in this space".into())),
    }
}

/// `GET /v1/spaces/{space}/drop-boxes`: the space's intake key as
/// published, its boxes and their complete submissions.
pub async fn list_drop_boxes(
    State(state): S,
    headers: HeaderMap,
    Path(space): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let space = confidential(&state, &headers, &space)?;
    let intake = state.store.intake(space)?.map(|i| {
        json!({
            "recipient": IntakePublicKey::from_bytes(i.recipient)
                .map(|k| k.to_age_recipient_string())
                .unwrap_or_default(),
            "epoch": i.epoch,
        })
    });
    let mut boxes = Vec::new();
    for (id, r) in state.store.drop_boxes(space)? {
        let submissions: Vec<Value> = state
            .store
            .submissions(id)?
            .into_iter()
            .filter(|(_, s)| s.complete)
            .map(|(sid, s)| {
                json!({
                    "id": hex::encode(sid),
                    "at": s.at,
                    "epoch": s.epoch,
                    "parts": s.parts.iter().map(|p| json!({
                        "size": p.size,
                        "chunks": p.chunks.iter().map(hex::encode).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        boxes.push(json!({
            "id": hex::encode(id),
            "created": r.created,
            "created_by": r.created_by,
            "expires": r.expires,
            "quota": r.quota,
            "used": r.used,
            "closed": r.closed,
            "submissions": submissions,
        }));
    }
    Ok(Json(json!({ "intake": intake, "boxes": boxes })))
}

/// `GET /v1/spaces/{space}/drop-chunks/{hash}`: a chunk of a complete
/// submission to one of the space's boxes (members only).
pub async fn get_drop_chunk(
    State(state): S,
    headers: HeaderMap,
    Path((space, hash)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let space = confidential(&state, &headers, &space)?;
    let chunk = BlobId::parse(&hash)?;
    let mut named = false;
    for (id, _) in state.store.drop_boxes(space)? {
        named = state
            .store
            .submissions(id)?
            .iter()
            .any(|(_, s)| s.complete && s.parts.iter().any(|p| p.chunks.contains(&chunk.0)));
        if named {
            break;
        }
    }
    let missing =
        || ApiError::NotFound("no submission to this space's drop boxes has this chunk".into());
    if !named {
        return Err(missing());
    }
    let bytes = match tokio::fs::read(state.drop_blobs.path(&chunk)).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

// ---- the routes that need no account -----------------------------------

fn peer(headers: &axum::http::Extensions) -> Option<SocketAddr> {
    headers.get::<Peer>().map(|p| p.0)
}

/// The box if it takes submissions now: 404 unknown, 410 closed or
/// expired (with a reason the page words in the witness's language).
fn open_box(state: &AppState, id: [u8; 16]) -> Result<DropBoxRecord, ApiError> {
    let r = state
        .store
        .drop_box(id)?
        .ok_or_else(|| ApiError::NotFound("no such drop box".into()).because("drop_box_unknown"))?;
    if r.closed.is_some() {
        return Err(
            ApiError::Gone("this drop box was closed by the people who opened it".into())
                .because("drop_box_closed"),
        );
    }
    if r.expires <= now() {
        return Err(ApiError::Gone("this drop box has expired".into()).because("drop_box_expired"));
    }
    Ok(r)
}

/// Drops this box's submissions that never completed, giving their bytes
/// back to the box; returns how many, and their chunks that no other
/// submission of the box names, for [`delete_chunks`]. Called under the
/// box's lock ([`AppState::drop_lock`]).
fn expire_pending(state: &AppState, id: [u8; 16]) -> Result<(usize, Vec<[u8; 32]>), ApiError> {
    let at = now();
    let all = state.store.submissions(id)?;
    let mut dropped = Vec::new();
    for (sid, s) in &all {
        if !s.complete && s.at.saturating_add(PENDING_SECS) <= at {
            drop_submission(state, id, *sid, s)?;
            dropped.push(*sid);
        }
    }
    Ok((dropped.len(), unshared_chunks(&all, &dropped)))
}

/// Removes a submission and gives its bytes back to the box.
fn drop_submission(
    state: &AppState,
    dropbox: [u8; 16],
    sid: [u8; 16],
    s: &SubmissionRecord,
) -> Result<(), ApiError> {
    let size: u64 = s.parts.iter().map(|p| p.size).sum();
    state.store.put_submission(dropbox, sid, None)?;
    state.store.update_drop_box(dropbox, &mut |r| {
        r.used = r.used.saturating_sub(size);
        true
    })?;
    Ok(())
}

/// The chunks of the `dropped` submissions that no other one names.
fn unshared_chunks(all: &[([u8; 16], SubmissionRecord)], dropped: &[[u8; 16]]) -> Vec<[u8; 32]> {
    let kept: BTreeSet<[u8; 32]> = all
        .iter()
        .filter(|(sid, _)| !dropped.contains(sid))
        .flat_map(|(_, s)| s.parts.iter().flat_map(|p| p.chunks.iter().copied()))
        .collect();
    let mut out: Vec<[u8; 32]> = all
        .iter()
        .filter(|(sid, _)| dropped.contains(sid))
        .flat_map(|(_, s)| s.parts.iter().flat_map(|p| p.chunks.iter().copied()))
        .filter(|c| !kept.contains(c))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Deletes chunks of the drop boxes' own store (never members' blobs,
/// which live apart) that no submission names any more: the bytes of a
/// witness's upload that never completed. The store is shared by every
/// box and a chunk is stored once whoever names it, so the names of every
/// box's submissions are read (a declaration in one box naming a chunk
/// that another box's complete submission holds must not delete it when
/// it expires). Checked and deleted under the box's lock, so that a
/// declaration of this box naming one again meanwhile keeps it; one of
/// another box that does so finds the chunk missing when it finishes and
/// sends it again.
fn delete_chunks(state: &AppState, dropbox: [u8; 16], chunks: &[[u8; 32]]) -> Result<(), ApiError> {
    if chunks.is_empty() {
        return Ok(());
    }
    let _guard = state.drop_lock(&dropbox);
    let named = every_named_chunk(state)?;
    for c in chunks.iter().filter(|c| !named.contains(*c)) {
        if let Err(e) = std::fs::remove_file(state.drop_blobs.path(&BlobId(*c)))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "a dropped submission's chunk could not be deleted");
        }
    }
    Ok(())
}

/// The chunks some submission of some drop box names.
fn every_named_chunk(state: &AppState) -> Result<BTreeSet<[u8; 32]>, ApiError> {
    let mut named = BTreeSet::new();
    for (id, _) in state.store.every_drop_box()? {
        for (_, s) in state.store.submissions(id)? {
            named.extend(s.parts.iter().flat_map(|p| p.chunks.iter().copied()));
        }
    }
    Ok(named)
}

/// Drops the box's submissions that never completed and deletes their
/// chunks (before a new one is taken, and at every [`sweep`]); returns how
/// many were dropped.
fn expire(state: &AppState, dropbox: [u8; 16]) -> Result<usize, ApiError> {
    let (dropped, chunks) = {
        let _guard = state.drop_lock(&dropbox);
        expire_pending(state, dropbox)?
    };
    delete_chunks(state, dropbox, &chunks)?;
    Ok(dropped)
}

/// How often the server sweeps the drop boxes ([`run`]).
const SWEEP_SECS: u64 = 3600;

/// What one [`sweep`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Submissions that never completed within a day.
    pub submissions: usize,
    /// Chunks that no submission names.
    pub chunks: usize,
    /// False if an upload was under way, so that chunks no submission
    /// names were left for the next sweep.
    pub chunks_swept: bool,
}

/// Removes what witnesses sent that no member will ever read: in every
/// box, the submissions that did not complete within a day (their bytes
/// given back to the box, their chunks deleted), without waiting for the
/// box's next submission; then every chunk that no submission names, left
/// by a server stopped during an upload (`POST /v1/drop/{box}` names its
/// chunks only once the whole file is in) or between a submission's
/// removal and its chunks'. The chunks are judged only while no upload or
/// declaration is under way ([`AppState::drop_uploads`]); otherwise they
/// wait for the next sweep.
pub fn sweep(state: &AppState) -> Result<Swept, ApiError> {
    let mut swept = Swept::default();
    for (id, _) in state.store.every_drop_box()? {
        swept.submissions += expire(state, id)?;
    }
    let Ok(_alone) = state.drop_uploads.try_write() else {
        return Ok(swept);
    };
    let named = every_named_chunk(state)?;
    let stored = state.drop_blobs.list().map_err(|e| {
        tracing::warn!(error = %e, "the drop boxes' chunks could not be listed");
        ApiError::Internal
    })?;
    for chunk in stored.iter().filter(|c| !named.contains(&c.0)) {
        match std::fs::remove_file(state.drop_blobs.path(chunk)) {
            Ok(()) => swept.chunks += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e, "a chunk no submission names could not be deleted")
            }
        }
    }
    swept.chunks_swept = true;
    Ok(swept)
}

/// Sweeps the drop boxes ([`sweep`]) when the server starts and every hour
/// after, until it shuts down.
pub async fn run(state: Arc<AppState>) {
    loop {
        let s = state.clone();
        match tokio::task::spawn_blocking(move || sweep(&s)).await {
            Ok(Ok(swept)) if swept.submissions + swept.chunks > 0 => tracing::info!(
                submissions = swept.submissions,
                chunks = swept.chunks,
                "drop boxes: unfinished submissions and unnamed chunks deleted"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "drop boxes: the sweep failed"),
            Err(e) => tracing::warn!(error = %e, "drop boxes: the sweep stopped"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(SWEEP_SECS)) => {}
            () = state.shutdown.cancelled() => return,
        }
    }
}

/// One more submission of `bytes` for the box: within its submissions per
/// hour, and reserved against its quota at once (507 `drop_box_full`
/// otherwise, before any byte is read). Called under the box's lock ([`AppState::drop_lock`]).
fn reserve(state: &AppState, dropbox: [u8; 16], bytes: u64) -> Result<(), ApiError> {
    let mut key = b"box".to_vec();
    key.extend_from_slice(&dropbox);
    let per_hour = f64::from(state.config.limits.drop_submissions_per_hour.max(1));
    state.rate_anonymous(&key, per_hour / 3600.0, per_hour)?;
    let reserved = state.store.update_drop_box(dropbox, &mut |r| match r
        .used
        .checked_add(bytes)
        .filter(|t| *t <= r.quota)
    {
        Some(t) => {
            r.used = t;
            true
        }
        None => false,
    })?;
    if matches!(reserved, Some((_, true))) {
        return Ok(());
    }
    let left = reserved.map_or(0, |(r, _)| r.quota.saturating_sub(r.used));
    Err(ApiError::Quota(format!(
        "this drop box takes {left} more bytes; the submission has {bytes}"
    ))
    .because("drop_box_full"))
}

/// The length a declared chunk must have: a full chunk, or what is left of
/// its part for the last one.
fn chunk_length(part: &PartRecord, index: usize) -> u64 {
    if index + 1 < part.chunks.len() {
        CHUNK_LEN as u64
    } else {
        part.size - (part.chunks.len() as u64 - 1) * CHUNK_LEN as u64
    }
}

/// `GET /v1/drop/{box}`: what a page needs to seal to the box: the key in
/// force and its epoch, and how much the box still takes.
pub async fn drop_box_info(
    State(state): S,
    Path(id): Path<String>,
    extensions: axum::http::Extensions,
) -> Result<Json<Value>, ApiError> {
    state.rate_address(peer(&extensions), Anonymous::Drop)?;
    let id = box_id(&id)?;
    let r = open_box(&state, id)?;
    let intake = state.store.intake(r.space)?.ok_or_else(|| {
        ApiError::Gone("this drop box has no key".into()).because("drop_box_closed")
    })?;
    let recipient = IntakePublicKey::from_bytes(intake.recipient)
        .map_err(|_| ApiError::Internal)?
        .to_age_recipient_string();
    Ok(Json(json!({
        "recipient": recipient,
        "epoch": intake.epoch,
        "expires": r.expires,
        "left": r.quota.saturating_sub(r.used),
        "chunk": CHUNK_LEN,
        "max_parts": MAX_PARTS,
    })))
}

/// One part of a new submission.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPart {
    /// Bytes of the sealed part.
    pub size: u64,
    /// Hex BLAKE3 of each chunk of [`CHUNK_LEN`] bytes, in order.
    pub chunks: Vec<String>,
}

/// Body of `POST /v1/drop/{box}/submissions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubmission {
    /// The intake epoch whose key sealed the parts.
    pub epoch: u64,
    /// The parts.
    pub parts: Vec<NewPart>,
}

/// `POST /v1/drop/{box}/submissions`: declares a submission before its
/// bytes; over the box's quota it is refused before any byte is sent.
/// The same declaration again (an interrupted page going on) answers the
/// same id with the chunks still missing.
pub async fn new_submission(
    State(state): S,
    Path(id): Path<String>,
    extensions: axum::http::Extensions,
    j: ApiJson<NewSubmission>,
) -> Result<Response, ApiError> {
    state.rate_address(peer(&extensions), Anonymous::Drop)?;
    let dropbox = box_id(&id)?;
    let b = body(j)?;
    // Until the declaration is recorded and its missing chunks told: a
    // chunk it finds stored is not deleted meanwhile by a sweep.
    let _declaring = state.drop_uploads.read().await;
    open_box(&state, dropbox)?;
    let r = state.store.drop_box(dropbox)?.ok_or(ApiError::Internal)?;
    let intake = state.store.intake(r.space)?.ok_or(ApiError::Internal)?;
    if b.epoch != intake.epoch {
        return Err(ApiError::Conflict(
            "the drop box's key changed since the page read it; read it again".into(),
        )
        .because("drop_box_key_changed"));
    }
    if b.parts.is_empty() || b.parts.len() > MAX_PARTS {
        return Err(ApiError::BadRequest(format!(
            "parts: a submission has 1 to {MAX_PARTS} parts"
        )));
    }
    let mut parts = Vec::with_capacity(b.parts.len());
    for (n, p) in b.parts.iter().enumerate() {
        let expected = usize::try_from(p.size.div_ceil(CHUNK_LEN as u64)).unwrap_or(usize::MAX);
        if p.size == 0 || p.chunks.len() != expected {
            return Err(ApiError::BadRequest(format!(
                "parts[{n}]: a part of {} bytes has {expected} chunks of {CHUNK_LEN} bytes (the last shorter)",
                p.size
            )));
        }
        let chunks = p
            .chunks
            .iter()
            .map(|c| BlobId::parse(c).map(|b| b.0))
            .collect::<Result<Vec<_>, _>>()?;
        parts.push(PartRecord {
            size: p.size,
            chunks,
        });
    }
    let mut named = BTreeSet::new();
    if !parts
        .iter()
        .flat_map(|p| &p.chunks)
        .all(|c| named.insert(*c))
    {
        return Err(ApiError::BadRequest(
            "parts: a chunk is named twice (each chunk of a sealed part differs)".into(),
        ));
    }
    let total: u64 = parts.iter().map(|p| p.size).sum();
    // The id names the declaration: the same parts give the same id.
    let mut hasher = blake3::Hasher::new_derive_key("amicus drop submission v1");
    hasher.update(&dropbox);
    for p in &parts {
        hasher.update(&p.size.to_be_bytes());
        for c in &p.chunks {
            hasher.update(c);
        }
    }
    let mut sid = [0u8; 16];
    sid.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    expire(&state, dropbox)?;
    // One change to a box's records at a time: a declaration sent twice at
    // once reserves once.
    let guard = state.drop_lock(&dropbox);
    let existing = state
        .store
        .submissions(dropbox)?
        .into_iter()
        .find(|(s, _)| *s == sid);
    if existing.is_none() {
        reserve(&state, dropbox, total)?;
        let record = SubmissionRecord {
            at: now(),
            epoch: b.epoch,
            parts: parts.clone(),
            complete: false,
        };
        state.store.put_submission(dropbox, sid, Some(&record))?;
    }
    drop(guard);
    let missing = missing_chunks(&state, &parts).await;
    Ok((
        if existing.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(json!({ "id": hex::encode(sid), "missing": missing })),
    )
        .into_response())
}

async fn missing_chunks(state: &AppState, parts: &[PartRecord]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut missing = Vec::new();
    for c in parts.iter().flat_map(|p| &p.chunks) {
        if seen.insert(*c) && !state.drop_blobs.exists(&BlobId(*c)).await {
            missing.push(hex::encode(c));
        }
    }
    missing
}

/// `PUT /v1/drop/{box}/chunks/{hash}`: one chunk of a declared
/// submission, stored only if its bytes hash to its name.
pub async fn put_chunk(
    State(state): S,
    Path((id, hash)): Path<(String, String)>,
    extensions: axum::http::Extensions,
    request_body: Body,
) -> Result<StatusCode, ApiError> {
    state.rate_address(peer(&extensions), Anonymous::Drop)?;
    let dropbox = box_id(&id)?;
    let chunk = BlobId::parse(&hash)?;
    open_box(&state, dropbox)?;
    let expected = state
        .store
        .submissions(dropbox)?
        .iter()
        .filter(|(_, s)| !s.complete)
        .flat_map(|(_, s)| &s.parts)
        .find_map(|p| {
            let index = p.chunks.iter().position(|c| *c == chunk.0)?;
            Some(chunk_length(p, index))
        });
    let Some(expected) = expected else {
        return Err(ApiError::NotFound(
            "no submission under way in this drop box names this chunk".into(),
        ));
    };
    let counted = state.clone();
    let stored = state
        .drop_blobs
        .put(
            &chunk,
            request_body.into_data_stream(),
            expected as usize,
            // Exactly the declared length: what a box stores is what it
            // reserved, never more.
            move |size| {
                if size == expected {
                    Ok(())
                } else {
                    Err(ApiError::BadRequest(format!(
                        "this chunk is declared with {expected} bytes; {size} arrived"
                    )))
                }
            },
            move |size| {
                counted
                    .metrics
                    .blob_bytes_in
                    .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
            },
        )
        .await?;
    Ok(match stored {
        crate::blobs::Stored::New(_) => StatusCode::CREATED,
        crate::blobs::Stored::Existing => StatusCode::OK,
    })
}

/// A submission of a box, 404 if there is none (any more).
fn submission(
    state: &AppState,
    dropbox: [u8; 16],
    sid: [u8; 16],
) -> Result<SubmissionRecord, ApiError> {
    state
        .store
        .submissions(dropbox)?
        .into_iter()
        .find_map(|(s, record)| (s == sid).then_some(record))
        .ok_or_else(|| ApiError::NotFound("no such submission".into()))
}

/// `POST /v1/drop/{box}/submissions/{id}/done`: the submission is complete
/// once every chunk is there; members see it from then on.
pub async fn finish_submission(
    State(state): S,
    Path((id, sid)): Path<(String, String)>,
    extensions: axum::http::Extensions,
) -> Result<Response, ApiError> {
    state.rate_address(peer(&extensions), Anonymous::Drop)?;
    let dropbox = box_id(&id)?;
    let sid = submission_id(&sid)?;
    let s = submission(&state, dropbox, sid)?;
    if !s.complete {
        let mut missing = missing_chunks(&state, &s.parts).await;
        if missing.is_empty() {
            // Complete only if it was not dropped meanwhile (an expiry),
            // and with its chunks counted again under the box's lock: a
            // sweep may have dropped it and its chunks since they were
            // counted, and the page declared it again.
            let completed = {
                let _guard = state.drop_lock(&dropbox);
                let mut current = submission(&state, dropbox, sid)?;
                let all_there = current
                    .parts
                    .iter()
                    .flat_map(|p| &p.chunks)
                    .all(|c| state.drop_blobs.path(&BlobId(*c)).is_file());
                if all_there {
                    current.complete = true;
                    state.store.put_submission(dropbox, sid, Some(&current))?;
                }
                all_there
            };
            if completed {
                return Ok(Json(json!({ "id": hex::encode(sid) })).into_response());
            }
            missing = missing_chunks(&state, &s.parts).await;
        }
        return Ok((
            StatusCode::CONFLICT,
            Json(json!({
                "error": "conflict",
                "message": format!("{} chunks have not arrived", missing.len()),
                "missing": missing,
            })),
        )
            .into_response());
    }
    Ok(Json(json!({ "id": hex::encode(sid) })).into_response())
}

/// `POST /v1/drop/{box}`: one age file as the whole body (what `curl
/// --data-binary @file.age` sends), a submission of one part. The
/// `Content-Length` must fit the box's quota: a larger file is refused
/// before its bytes are read.
pub async fn submit_file(
    State(state): S,
    Path(id): Path<String>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    request_body: Body,
) -> Result<Response, ApiError> {
    state.rate_address(peer(&extensions), Anonymous::Drop)?;
    let dropbox = box_id(&id)?;
    let r = open_box(&state, dropbox)?;
    let intake = state.store.intake(r.space)?.ok_or(ApiError::Internal)?;
    let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Err(ApiError::BadRequest(
            "send the file with a Content-Length (curl --data-binary @FILE does)".into(),
        ));
    };
    if length == 0 {
        return Err(ApiError::BadRequest("the body is empty".into()));
    }
    let mut sid = [0u8; 16];
    getrandom::fill(&mut sid).map_err(|_| ApiError::Internal)?;
    // Until the file's chunks are named by its record: none is deleted
    // meanwhile by a sweep.
    let _uploading = state.drop_uploads.read().await;
    // Reserved and recorded (incomplete) before a byte is read: a
    // connection or a server lost midway leaves a record that expires and
    // gives the bytes back.
    expire(&state, dropbox)?;
    {
        let _guard = state.drop_lock(&dropbox);
        reserve(&state, dropbox, length)?;
        let pending = SubmissionRecord {
            at: now(),
            epoch: intake.epoch,
            parts: vec![PartRecord {
                size: length,
                chunks: vec![],
            }],
            complete: false,
        };
        state.store.put_submission(dropbox, sid, Some(&pending))?;
    }
    let mut chunks = Vec::new();
    let streamed = store_chunks(&state, request_body, length, &mut chunks).await;
    let finished = {
        let _guard = state.drop_lock(&dropbox);
        let current = state
            .store
            .submissions(dropbox)?
            .into_iter()
            .find(|(s, _)| *s == sid);
        match (streamed, current) {
            (Ok(()), Some((_, mut record))) => {
                record.parts[0].chunks = chunks.clone();
                record.complete = true;
                state.store.put_submission(dropbox, sid, Some(&record))?;
                Ok(())
            }
            (Ok(()), None) => Err(ApiError::Internal),
            (Err(e), current) => {
                if let Some((_, record)) = current {
                    drop_submission(&state, dropbox, sid, &record)?;
                }
                Err(e)
            }
        }
    };
    match finished {
        Ok(()) => {
            Ok((StatusCode::CREATED, Json(json!({ "id": hex::encode(sid) }))).into_response())
        }
        Err(e) => {
            // The bytes that came before the failure (those another
            // submission of the box names stay).
            delete_chunks(&state, dropbox, &chunks)?;
            Err(e)
        }
    }
}

/// Cuts a body of exactly `length` bytes into stored chunks; the first
/// bytes must be an age file's.
async fn store_chunks(
    state: &AppState,
    request_body: Body,
    length: u64,
    chunks: &mut Vec<[u8; 32]>,
) -> Result<(), ApiError> {
    let mut stream = request_body.into_data_stream();
    let mut buffer: Vec<u8> = Vec::with_capacity(CHUNK_LEN);
    let mut total = 0u64;
    let mut checked = false;
    loop {
        let next = stream.next().await;
        let end = next.is_none();
        if let Some(data) = next {
            let data =
                data.map_err(|e| ApiError::BadRequest(format!("the upload was interrupted: {e}")))?;
            total += data.len() as u64;
            if total > length {
                return Err(ApiError::BadRequest(
                    "the body is longer than its Content-Length".into(),
                ));
            }
            buffer.extend_from_slice(&data);
        }
        if !checked && (buffer.len() >= AGE_MAGIC.len() || end) {
            if !buffer.starts_with(AGE_MAGIC) {
                return Err(ApiError::BadRequest(
                    "the body is not a binary age v1 file (seal it with `age -r RECIPIENT`, without -a)"
                        .into(),
                ));
            }
            checked = true;
        }
        while buffer.len() >= CHUNK_LEN || (end && !buffer.is_empty()) {
            let take = buffer.len().min(CHUNK_LEN);
            let piece: Vec<u8> = buffer.drain(..take).collect();
            let id = BlobId(*blake3::hash(&piece).as_bytes());
            let one =
                futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(piece))]);
            state
                .drop_blobs
                .put(&id, one, CHUNK_LEN, |_| Ok(()), |_| {})
                .await?;
            chunks.push(id.0);
        }
        if end {
            break;
        }
    }
    if total != length {
        return Err(ApiError::BadRequest(
            "the body is shorter than its Content-Length".into(),
        ));
    }
    Ok(())
}
