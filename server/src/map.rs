//! The public map's data (PROTOCOL §15.4): aggregates of case records that
//! a space manager of a confidential space publishes into a public space.
//! Counts only: the server checks that each cell has at least its `k`
//! records and holds no value that is not a code, and that a device of
//! the caller signed it; it never sees a record.

use std::sync::Arc;

use amicus_core::monitoring::PublishedAggregate;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::api::{ApiJson, body, public_reader, public_space, public_space_for};
use crate::error::ApiError;
use crate::public::check_doc_id;
use crate::state::{AppState, now};
use crate::store::{AggregateRecord, PublicRole, SpaceKind};

type S = State<Arc<AppState>>;

/// The most aggregates one public space holds.
pub const MAX_AGGREGATES: usize = 100;

/// One publication at a time: the checks that read what is published
/// (the one aggregate of a register, the limit per space) and the write
/// that follows them are one step.
static PUBLISHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `PUT /v1/public/{space}/aggregates/{id}` `PublishedAggregate`: publishes
/// (or replaces) an aggregate. The caller has a role in the public space
/// and its device is in the roster of the confidential space the
/// provenance names, whose register it names; the provenance names one of
/// the caller's devices and its signature verifies; every cell holds at
/// least `k` records. A register has one publication on the server (409
/// `already_published` under another id): two sets of counts of the same
/// records, with different dimensions or thresholds, could be subtracted
/// one from the other to give what each left out. A publication already
/// there is replaced by its author or a content manager only.
pub async fn put_aggregate(
    State(state): S,
    headers: HeaderMap,
    Path((space, id)): Path<(String, String)>,
    j: ApiJson<PublishedAggregate>,
) -> Result<Json<Value>, ApiError> {
    let who = state.caller(&headers)?;
    state.rate_api(who.device)?;
    let published = body(j)?;
    let space = public_space(&state, &who, &space)?;
    check_doc_id(&id)?;
    let Some(role) = space.roles.get(&who.user).copied() else {
        return Err(
            ApiError::Forbidden("you have no role in this public space".into())
                .because("no_public_role"),
        );
    };
    published.aggregate.check().map_err(|e| {
        ApiError::BadRequest(format!("this aggregate is refused: {e}")).because(e.code())
    })?;
    let device = amicus_core::DeviceId::from_hex(&published.provenance.device)
        .map_err(|_| ApiError::BadRequest("a device id is 32 hex digits".into()))?;
    let record = state
        .store
        .device(device)?
        .filter(|d| d.certificate.user == who.user)
        .ok_or_else(|| {
            ApiError::BadRequest("the aggregate names a device that is not yours".into())
        })?;
    published
        .verify(space.id, &id, &record.certificate)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let _one = PUBLISHING.lock().await;
    let existing = state.store.aggregate(space.id, &id)?;
    match &existing {
        Some(e) if e.author != who.user && role < PublicRole::ContentManager => {
            return Err(ApiError::Forbidden(
                "only whoever published these counts and the space's content managers replace them"
                    .into(),
            )
            .because("not_publisher"));
        }
        None if state.store.aggregates(space.id)?.len() >= MAX_AGGREGATES => {
            return Err(ApiError::TooLarge(format!(
                "a public space holds at most {MAX_AGGREGATES} published aggregates: withdraw one first"
            )));
        }
        _ => {}
    }
    let p = &published.provenance;
    let source = crate::api::load_space(&state, &who, &p.source_space)?;
    if source.kind != SpaceKind::Confidential
        || p.source_stream != amicus_core::monitoring::stream(source.id).to_hex()
    {
        return Err(ApiError::BadRequest(
            "the provenance names no register of a confidential space".into(),
        ));
    }
    if p.heads.len() > 1024 || p.heads.iter().any(|h| h.len() != 64) {
        return Err(ApiError::BadRequest(
            "the provenance's heads are at most 1,024 hashes of 64 hex digits".into(),
        ));
    }
    if let Some(other) = state.store.all_aggregates()?.into_iter().find(|a| {
        a.published.provenance.source_stream == p.source_stream
            && (a.space, a.id.as_str()) != (space.id, id.as_str())
    }) {
        return Err(ApiError::Conflict(format!(
            "these records are already published as `{}`: publish under that id to replace it, or withdraw it first",
            other.id
        ))
        .because("already_published"));
    }
    let updated = now().max(existing.map_or(0, |e| e.updated + 1));
    state.store.put_aggregate(&AggregateRecord {
        space: space.id,
        id: id.clone(),
        published,
        author: who.user,
        updated,
    })?;
    Ok(Json(
        json!({ "space": space.id.to_hex(), "id": id, "updated": updated }),
    ))
}

fn summary(r: &AggregateRecord) -> Value {
    let a = &r.published.aggregate;
    json!({
        "id": r.id,
        "title": a.title,
        "dims": a.dims,
        "k": a.k,
        "author": r.author.as_str(),
        "updated": r.updated,
    })
}

/// `GET /v1/public/{space}/aggregates`: the aggregates published in a
/// public space, newest first, without their cells (an empty list for a
/// space that has none).
pub async fn list_aggregates(
    State(state): S,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Path(space): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = public_reader(&state, &headers, &extensions)?;
    let space = public_space_for(&state, who.as_ref(), &space)?;
    let mut records = state.store.aggregates(space.id)?;
    records.sort_by(|a, b| b.updated.cmp(&a.updated).then(a.id.cmp(&b.id)));
    let list: Vec<Value> = records.iter().map(summary).collect();
    Ok(Json(json!({ "aggregates": list })))
}

/// `GET /v1/public/{space}/aggregates/{id}`: one published aggregate, its
/// cells and its signed provenance.
pub async fn get_aggregate(
    State(state): S,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Path((space, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let who = public_reader(&state, &headers, &extensions)?;
    let space = public_space_for(&state, who.as_ref(), &space)?;
    check_doc_id(&id)?;
    let record = state
        .store
        .aggregate(space.id, &id)?
        .ok_or_else(|| ApiError::NotFound("no such published aggregate".into()))?;
    let mut out = summary(&record);
    out["aggregate"] = json!(record.published.aggregate);
    out["provenance"] = json!(record.published.provenance);
    Ok(Json(out))
}

/// `DELETE /v1/public/{space}/aggregates/{id}`: withdraws a published
/// aggregate (its author, or a content manager and up).
pub async fn delete_aggregate(
    State(state): S,
    headers: HeaderMap,
    Path((space, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let who = state.caller(&headers)?;
    state.rate_api(who.device)?;
    let space = public_space(&state, &who, &space)?;
    check_doc_id(&id)?;
    let record = state
        .store
        .aggregate(space.id, &id)?
        .ok_or_else(|| ApiError::NotFound("no such published aggregate".into()))?;
    let manager = space
        .roles
        .get(&who.user)
        .is_some_and(|r| *r >= PublicRole::ContentManager);
    if record.author != who.user && !manager {
        return Err(ApiError::Forbidden(
            "only whoever published these counts and the space's content managers withdraw them"
                .into(),
        )
        .because("not_publisher"));
    }
    state.store.delete_aggregate(space.id, &id)?;
    Ok(Json(json!({ "withdrawn": id })))
}
