//! The HTTP API (JSON; binary values as lowercase hex). `docs/PROTOCOL.md`
//! §15 lists every route.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use amicus_core::api::{
    Challenge, ChallengeRequest, Claim, Claimed, ClaimedKeyPackage, Count, KeyPackages,
    ListedDevice, QueuedWelcome, Revoke, Session, SignIn, UserListing, Welcomes,
};
use amicus_core::identity::{DeviceCertificate, DeviceRevocation, Statement, verify_statement};
use amicus_core::{DeviceId, MlsProvider, SpaceId, UserId, api};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::blobs::{BlobId, Stored};
use crate::config::Registration;
use crate::error::{ApiError, rejection};
use crate::public::check_doc_id;
use crate::state::{AppState, Caller, now, random32, secret_hash};
use crate::store::{
    Admission, Created, DeviceRecord, InviteRecord, NotifyMode, Provenance, PublicFile,
    PublicRecord, PublicRole, SessionRecord, SpaceKind, SpaceRecord, UserRecord,
};

type S = State<Arc<AppState>>;
pub(crate) type ApiJson<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

pub(crate) fn body<T>(j: ApiJson<T>) -> Result<T, ApiError> {
    j.map(|Json(v)| v).map_err(rejection)
}

fn bytes_hex<const N: usize>(field: &str, s: &str) -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| ApiError::BadRequest(format!("`{field}` must be {} hex digits", N * 2)))?;
    Ok(out)
}

fn vec_hex(field: &str, s: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    if s.len() > max * 2 {
        return Err(ApiError::TooLarge(format!("`{field}` exceeds {max} bytes")));
    }
    hex::decode(s).map_err(|_| ApiError::BadRequest(format!("`{field}` must be hex")))
}

fn user_id(s: &str) -> Result<UserId, ApiError> {
    UserId::new(s).map_err(|e| ApiError::BadRequest(format!("user name: {e}")))
}

fn space_id(s: &str) -> Result<SpaceId, ApiError> {
    SpaceId::from_hex(s).map_err(|_| ApiError::BadRequest("a space id is 32 hex digits".into()))
}

fn device_id(s: &str) -> Result<DeviceId, ApiError> {
    DeviceId::from_hex(s).map_err(|_| ApiError::BadRequest("a device id is 32 hex digits".into()))
}

fn certificate(s: &str) -> Result<DeviceCertificate, ApiError> {
    let bytes = vec_hex("certificate", s, 4096)?;
    match postcard::take_from_bytes::<DeviceCertificate>(&bytes) {
        Ok((c, [])) => Ok(c),
        _ => Err(ApiError::BadRequest(
            "`certificate` is not a device certificate".into(),
        )),
    }
}

fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    state.caller(headers)
}

/// `GET /healthz`: 200 when the store answers.
pub async fn healthz(State(state): S) -> Result<&'static str, ApiError> {
    state.store.space(SpaceId([0; 16]))?;
    Ok("ok\n")
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): S) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Body of `POST /v1/register`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// The first device's certificate (hex of its postcard encoding), which
    /// names the user and its identity key.
    pub certificate: String,
    /// An invitation code, when registration is by invitation.
    #[serde(default)]
    pub invite: Option<String>,
}

/// `POST /v1/register`: creates an account and its first device.
pub async fn register(State(state): S, j: ApiJson<Register>) -> Result<Response, ApiError> {
    let req = body(j)?;
    let cert = certificate(&req.certificate)?;
    cert.verify(&cert.identity_key).map_err(|_| {
        ApiError::BadRequest("the device certificate's signature is invalid".into())
    })?;
    if state.store.user(&cert.user)?.is_some() {
        return Err(
            ApiError::Conflict(format!("the name {} is taken", cert.user)).because("name_taken"),
        );
    }
    // The first account needs no invitation; later ones do if configured.
    let mut admission = Admission::Any;
    if state.config.registration == Registration::Invite {
        if !state.store.admin_exists()? {
            admission = Admission::OnlyFirst;
        } else {
            let code = req.invite.as_deref().ok_or_else(|| {
                ApiError::Forbidden(
                    "registration is by invitation: ask an administrator for a code".into(),
                )
                .because("invitation_needed")
            })?;
            let invite = state.store.take_invite(secret_hash(code))?.ok_or_else(|| {
                ApiError::Forbidden("unknown or used invitation code".into())
                    .because("invitation_unknown")
            })?;
            if invite.expires < now() {
                return Err(
                    ApiError::Forbidden("the invitation code has expired".into())
                        .because("invitation_expired"),
                );
            }
        }
    }
    let user = UserRecord {
        user: cert.user.clone(),
        identity_key: cert.identity_key,
        admin: false,
        created: now(),
    };
    let device = DeviceRecord {
        certificate: cert.clone(),
        created: now(),
    };
    let created = state.store.create_user(&user, &device, admission)?;
    tracing::info!(user = %cert.user, admin = created == Created::Admin, "account created");
    match created {
        Created::Taken => Err(
            ApiError::Conflict(format!("the name {} is taken", cert.user)).because("name_taken"),
        ),
        Created::NotFirst => Err(ApiError::Forbidden(
            "another account became the administrator first; registration now needs an invitation"
                .into(),
        )
        .because("invitation_needed")),
        c => Ok((
            StatusCode::CREATED,
            Json(json!({ "user": cert.user.as_str(), "admin": c == Created::Admin })),
        )
            .into_response()),
    }
}

/// Body of `POST /v1/invites` (administrator).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// Validity in days (default 7, at most 90).
    #[serde(default)]
    pub days: Option<u64>,
}

/// `POST /v1/invites`: an administrator creates an invitation code.
pub async fn invite(
    State(state): S,
    headers: HeaderMap,
    j: ApiJson<NewInvite>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    let req = body(j)?;
    let admin = state.store.user(&who.user)?.is_some_and(|u| u.admin);
    if !admin {
        return Err(
            ApiError::Forbidden("only the administrator creates invitations".into())
                .because("not_administrator"),
        );
    }
    let days = req.days.unwrap_or(7).clamp(1, 90);
    let code = hex::encode(&random32()[..16]);
    state.store.put_invite(
        secret_hash(&code),
        &InviteRecord {
            by: who.user,
            expires: now() + days * 86_400,
        },
    )?;
    Ok(Json(json!({ "code": code, "expires_in_days": days })))
}

/// `POST /v1/challenge`: a random challenge for a device to sign.
pub async fn challenge(
    State(state): S,
    j: ApiJson<ChallengeRequest>,
) -> Result<Json<Challenge>, ApiError> {
    let device = device_id(&body(j)?.device)?;
    if state.store.device(device)?.is_none() {
        return Err(ApiError::NotFound("no such device; register first".into()));
    }
    Ok(Json(Challenge {
        challenge: hex::encode(state.challenge(device)),
    }))
}

/// `POST /v1/pairing/open`: a device of the user, showing a pairing code,
/// opens the channel derived from it for one offer (§3.6).
pub async fn pairing_open(
    State(state): S,
    headers: HeaderMap,
    j: ApiJson<api::PairingOpen>,
) -> Result<StatusCode, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let channel = bytes_hex::<16>("channel", &body(j)?.channel)?;
    state
        .pairings
        .lock()
        .expect("pairing lock")
        .open(who.user, channel)?;
    Ok(StatusCode::NO_CONTENT)
}

fn pairing_id(s: &str) -> Result<[u8; 16], ApiError> {
    bytes_hex::<16>("id", s)
}

/// `POST /v1/pairing` (no session: the device is not certified yet): keeps
/// a new device's offer for the user's identity holder (§3.6).
pub async fn pairing_offer(
    State(state): S,
    j: ApiJson<api::PairingOffer>,
) -> Result<Response, ApiError> {
    let b = body(j)?;
    let user = user_id(&b.user)?;
    let channel = bytes_hex::<16>("channel", &b.channel)?;
    let offer = vec_hex("offer", &b.offer, crate::pairing::MAX_OFFER)?;
    if state.store.user(&user)?.is_none() {
        return Err(ApiError::NotFound(format!("no user {user}")));
    }
    let id = state
        .pairings
        .lock()
        .expect("pairing lock")
        .offer(user, channel, offer)?;
    Ok((
        StatusCode::CREATED,
        Json(api::PairingOffered {
            id: hex::encode(id),
            expires_in_secs: crate::pairing::TTL.as_secs(),
        }),
    )
        .into_response())
}

/// `GET /v1/pairing`: the unanswered offers for the caller's user.
pub async fn pairing_offers(
    State(state): S,
    headers: HeaderMap,
) -> Result<Json<api::PairingOffers>, ApiError> {
    let who = caller(&state, &headers)?;
    let offers = state
        .pairings
        .lock()
        .expect("pairing lock")
        .offers_for(&who.user)
        .into_iter()
        .map(|(id, offer)| api::ListedOffer {
            id: hex::encode(id),
            offer: hex::encode(offer),
        })
        .collect();
    Ok(Json(api::PairingOffers { offers }))
}

/// `POST /v1/pairing/{id}/answer`: the identity holder's answer to an offer
/// for its user.
pub async fn pairing_reply(
    State(state): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    j: ApiJson<api::PairingReply>,
) -> Result<StatusCode, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let id = pairing_id(&id)?;
    let answer = vec_hex("answer", &body(j)?.answer, crate::pairing::MAX_ANSWER)?;
    state
        .pairings
        .lock()
        .expect("pairing lock")
        .answer(&who.user, id, answer)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/pairing/{id}` (no session; the id is the new device's handle):
/// the answer, or `null` while there is none. A delivered answer is
/// forgotten.
pub async fn pairing_answer(
    State(state): S,
    Path(id): Path<String>,
) -> Result<Json<api::PairingAnswer>, ApiError> {
    let id = pairing_id(&id)?;
    let answer = state
        .pairings
        .lock()
        .expect("pairing lock")
        .take_answer(id)?;
    Ok(Json(api::PairingAnswer {
        answer: answer.map(hex::encode),
    }))
}

/// `POST /v1/session`: answers a challenge and receives a session token.
pub async fn session(State(state): S, j: ApiJson<SignIn>) -> Result<Json<Session>, ApiError> {
    let req = body(j)?;
    let device = device_id(&req.device)?;
    let challenge: [u8; 32] = bytes_hex("challenge", &req.challenge)?;
    let signature: [u8; 64] = bytes_hex("signature", &req.signature)?;
    if !state.take_challenge(&challenge, device) {
        return Err(ApiError::SignInRefused(
            "unknown or expired challenge; ask for a new one".into(),
        ));
    }
    let record = state
        .store
        .device(device)?
        .ok_or_else(|| ApiError::SignInRefused("no such device".into()))?;
    if state.store.revocation(device)?.is_some() {
        return Err(ApiError::DeviceRevoked);
    }
    if !verify_statement(
        &record.certificate.device_key,
        Statement::SignIn,
        &challenge,
        &signature,
    ) {
        return Err(ApiError::SignInRefused(
            "the signature does not verify".into(),
        ));
    }
    let token = hex::encode(random32());
    let expires = now() + state.config.limits.session_secs;
    state.store.put_session(
        secret_hash(&token),
        &SessionRecord {
            user: record.certificate.user.clone(),
            device,
            expires,
        },
    )?;
    tracing::info!(user = %record.certificate.user, device = %device, "signed in");
    Ok(Json(Session {
        token,
        expires,
        user: record.certificate.user.to_string(),
    }))
}

/// `POST /v1/devices`: a signed-in device registers another device of the
/// same user, certified by the user's identity key.
pub async fn add_device(
    State(state): S,
    headers: HeaderMap,
    j: ApiJson<api::NewDevice>,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let cert = certificate(&body(j)?.certificate)?;
    if cert.user != who.user {
        return Err(ApiError::Forbidden(
            "a device can only be added to its own user".into(),
        ));
    }
    register_device(&state, cert)
}

/// `POST /v1/devices/revoke`: a device of the user files the revocation of
/// another of the user's devices, signed by the identity key. From then on
/// the revoked device cannot sign in (401), its sessions and KeyPackages
/// are gone, its connections close (4003), and the directory lists it as
/// revoked (for members, who remove it from their spaces). Filing the same
/// revocation again changes nothing.
pub async fn revoke_device(
    State(state): S,
    headers: HeaderMap,
    j: ApiJson<Revoke>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let bytes = vec_hex("revocation", &body(j)?.revocation, 1024)?;
    let revocation: DeviceRevocation = postcard::from_bytes(&bytes)
        .map_err(|_| ApiError::BadRequest("`revocation` is not a device revocation".into()))?;
    if revocation.user != who.user {
        return Err(ApiError::Forbidden(
            "a device can only revoke devices of its own user".into(),
        ));
    }
    if revocation.device == who.device {
        return Err(ApiError::BadRequest(
            "a device cannot revoke itself; revoke it from another device".into(),
        ));
    }
    let user = state
        .store
        .user(&who.user)?
        .ok_or(ApiError::Unauthenticated)?;
    revocation.verify(&user.identity_key).map_err(|_| {
        ApiError::BadRequest("the revocation is not signed by this user's identity key".into())
    })?;
    if state
        .store
        .device(revocation.device)?
        .is_none_or(|d| d.certificate.user != who.user)
    {
        return Err(ApiError::NotFound(format!(
            "{} has no device {}",
            who.user, revocation.device
        )));
    }
    let newly = state.store.revoke_device(&revocation)?;
    state.relay.close_revoked(revocation.device);
    if newly {
        tracing::info!(user = %who.user, device = %revocation.device, by = %who.device, "device revoked");
    }
    Ok(Json(
        json!({ "device": revocation.device.to_hex(), "revoked": true }),
    ))
}

fn notifications_of(state: &AppState, user: &UserId) -> api::Notifications {
    let record = state.notifier.get(user);
    api::Notifications {
        available: state.notifier.available(),
        email: record.as_ref().map(|r| r.email.clone()).unwrap_or_default(),
        mode: match record.as_ref().map(|r| r.mode) {
            Some(NotifyMode::Daily) => "daily",
            Some(NotifyMode::Immediate) => "immediate",
            Some(NotifyMode::Off) | None => "off",
        }
        .into(),
        language: record.map_or_else(|| "en".into(), |r| r.language),
    }
}

/// `GET /v1/account/notifications`: the caller's notification email
/// settings, and whether this server sends email at all.
pub async fn notifications(
    State(state): S,
    headers: HeaderMap,
) -> Result<Json<api::Notifications>, ApiError> {
    let who = caller(&state, &headers)?;
    Ok(Json(notifications_of(&state, &who.user)))
}

/// `PUT /v1/account/notifications`: sets the caller's address, choice
/// (`off`, `daily`, `immediate`) and language. `off` forgets the address.
/// Nothing is stored unless every field is valid.
pub async fn set_notifications(
    State(state): S,
    headers: HeaderMap,
    j: ApiJson<api::NotificationSettings>,
) -> Result<Json<api::Notifications>, ApiError> {
    let who = caller(&state, &headers)?;
    let req = body(j)?;
    let mode = match req.mode.as_str() {
        "off" => NotifyMode::Off,
        "daily" => NotifyMode::Daily,
        "immediate" => NotifyMode::Immediate,
        other => {
            return Err(ApiError::BadRequest(format!(
                "`mode` is off, daily or immediate, not {other:?}"
            )));
        }
    };
    let language = req.language.unwrap_or_else(|| "en".into());
    if !crate::notify::LANGUAGES.contains(&language.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "`language` is one of {}, not {language:?}",
            crate::notify::LANGUAGES.join(", ")
        )));
    }
    let settings = if mode == NotifyMode::Off {
        None
    } else {
        if !state.notifier.available() {
            return Err(ApiError::Conflict(
                "this server sends no email: its administrator has not configured a mail server"
                    .into(),
            )
            .because("no_mail_server"));
        }
        let email = crate::notify::checked_email(&req.email).map_err(ApiError::BadRequest)?;
        Some((email, mode, language))
    };
    state
        .notifier
        .set(state.store.as_ref(), &who.user, settings)?;
    Ok(Json(notifications_of(&state, &who.user)))
}

// ---- the directory and requests to join (PROTOCOL §15.3) -----------------

/// Pending requests one space holds, and one user makes, at most.
const MAX_REQUESTS_PER_SPACE: usize = 500;
const MAX_REQUESTS_PER_USER: usize = 50;

/// A confidential space the caller's device is in.
fn member_space(state: &AppState, who: &Caller, id: &str) -> Result<SpaceRecord, ApiError> {
    let space = load_space(state, who, id)?;
    if space.kind != SpaceKind::Confidential {
        return Err(ApiError::BadRequest(
            "public spaces are not listed: everyone already reads them".into(),
        ));
    }
    Ok(space)
}

/// A listed space, as anyone asks about it: a space that is not listed
/// gets the same answer as one that does not exist.
fn listed_space(state: &AppState, id: &str) -> Result<(SpaceId, crate::store::Listing), ApiError> {
    let id = space_id(id)?;
    match state.store.listing(id)? {
        Some(l) => Ok((id, l)),
        None => {
            Err(ApiError::NotFound("no such space in the directory".into()).because("not_listed"))
        }
    }
}

/// `GET /v1/directory?q=&limit=&offset=`: the listed spaces whose name or
/// description holds every word of `q` (any case), by name.
pub async fn directory(
    State(state): S,
    headers: HeaderMap,
    query: Result<
        axum::extract::Query<std::collections::HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<api::Directory>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let axum::extract::Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let words: Vec<String> = q
        .get("q")
        .map(|q| q.split_whitespace().map(str::to_lowercase).collect())
        .unwrap_or_default();
    let number = |key: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match q.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| ApiError::BadRequest(format!("`{key}` is a number up to {max}"))),
        }
    };
    let limit = number("limit", 50, 200)?;
    let offset = number("offset", 0, 100_000)?;
    let mut found: Vec<api::Listed> = state
        .store
        .listings()?
        .into_iter()
        .filter(|(_, l)| {
            let hay = format!("{} {}", l.name, l.description).to_lowercase();
            words.iter().all(|w| hay.contains(w.as_str()))
        })
        .map(|(id, l)| api::Listed {
            space: id.to_hex(),
            name: l.name,
            description: l.description,
            open: l.open,
        })
        .collect();
    found.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.space.cmp(&b.space))
    });
    let total = found.len();
    Ok(Json(api::Directory {
        total,
        spaces: found.into_iter().skip(offset).take(limit).collect(),
    }))
}

/// `PUT /v1/directory/{space}`: lists a confidential space the caller's
/// device is in (its client lets only space managers do it), or changes
/// its listing.
pub async fn list_space(
    State(state): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    j: ApiJson<api::Listing>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let space = member_space(&state, &who, &id)?;
    let req = body(j)?;
    let name = amicus_core::document::checked_name(&req.name)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let description = req.description.trim().to_owned();
    if description.chars().count() > api::MAX_LISTING_DESCRIPTION {
        return Err(ApiError::BadRequest(format!(
            "a description holds at most {} characters",
            api::MAX_LISTING_DESCRIPTION
        )));
    }
    state.store.put_listing(
        space.id,
        Some(&crate::store::Listing {
            name,
            description,
            listed_by: who.user,
            at: crate::state::now(),
            open: req.open,
        }),
    )?;
    Ok(Json(json!({})))
}

/// `DELETE /v1/directory/{space}`: takes a space out of the directory (its
/// pending requests stay, to be answered).
pub async fn unlist_space(
    State(state): S,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let space = member_space(&state, &who, &id)?;
    state.store.put_listing(space.id, None)?;
    Ok(Json(json!({})))
}

/// `POST /v1/directory/{space}/requests`: asks to join a listed space.
/// Asking again replaces the earlier request (a declined one too).
pub async fn ask_to_join(
    State(state): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    j: ApiJson<api::AskToJoin>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let req = body(j)?;
    let (space, listing) = listed_space(&state, &id)?;
    let message = req.message.trim().to_owned();
    if message.chars().count() > api::MAX_JOIN_MESSAGE {
        return Err(ApiError::BadRequest(format!(
            "a message holds at most {} characters",
            api::MAX_JOIN_MESSAGE
        )));
    }
    let record = state.store.space(space)?;
    if let Some(record) = &record
        && record.roster.values().any(|u| *u == who.user)
    {
        return Err(
            ApiError::Conflict("you are already a member of this space".into())
                .because("already_member"),
        );
    }
    let pending = state.store.join_requests(space)?;
    let again = pending.iter().any(|(u, _)| *u == who.user);
    if !again && pending.iter().filter(|(_, r)| !r.declined).count() >= MAX_REQUESTS_PER_SPACE {
        return Err(ApiError::Conflict(
            "this space has too many requests waiting: try again later".into(),
        )
        .because("space_requests_full"));
    }
    let mine = state
        .store
        .all_join_requests()?
        .into_iter()
        .filter(|(s, u, r)| *u == who.user && !r.declined && *s != space)
        .count();
    if mine >= MAX_REQUESTS_PER_USER {
        return Err(ApiError::Conflict(format!(
            "you have {MAX_REQUESTS_PER_USER} requests waiting: withdraw one first"
        ))
        .because("own_requests_full"));
    }
    state.store.put_join_request(
        space,
        &who.user,
        Some(&crate::store::JoinRequest {
            message,
            at: crate::state::now(),
            declined: false,
        }),
    )?;
    // The roster's connected devices hear of it: a manager's adds the
    // requester at once if the space is open (the others ignore it).
    if let Some(record) = record {
        state.relay.tell_devices(
            record.roster.keys().copied(),
            &amicus_core::wire::ServerFrame::Asked { space },
        );
    }
    Ok(Json(json!({ "state": "pending", "open": listing.open })))
}

/// `GET /v1/directory/{space}/requests`: the pending requests, for the
/// space's members.
pub async fn join_requests(
    State(state): S,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<api::JoinRequests>, ApiError> {
    let who = caller(&state, &headers)?;
    let space = member_space(&state, &who, &id)?;
    let mut requests: Vec<api::JoinRequest> = state
        .store
        .join_requests(space.id)?
        .into_iter()
        .filter(|(_, r)| !r.declined)
        .map(|(user, r)| api::JoinRequest {
            user: user.to_string(),
            message: r.message,
            at: r.at,
        })
        .collect();
    requests.sort_by_key(|r| r.at);
    Ok(Json(api::JoinRequests { requests }))
}

/// `DELETE /v1/directory/{space}/requests/{user}`: a member closes a
/// request once the requester was added (or the requester withdraws it).
pub async fn close_join_request(
    State(state): S,
    headers: HeaderMap,
    Path((id, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let user = UserId::new(&user).map_err(|_| ApiError::BadRequest("not a user name".into()))?;
    let space = if user == who.user {
        space_id(&id)?
    } else {
        member_space(&state, &who, &id)?.id
    };
    state.store.put_join_request(space, &user, None)?;
    Ok(Json(json!({})))
}

/// `POST /v1/directory/{space}/requests/{user}/decline`: a member declines
/// a request; the requester sees it declined, nothing else changes.
pub async fn decline_join_request(
    State(state): S,
    headers: HeaderMap,
    Path((id, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let space = member_space(&state, &who, &id)?;
    let user = UserId::new(&user).map_err(|_| ApiError::BadRequest("not a user name".into()))?;
    let Some((_, mut request)) = state
        .store
        .join_requests(space.id)?
        .into_iter()
        .find(|(u, _)| *u == user)
    else {
        return Err(ApiError::NotFound(format!("{user} has not asked to join")));
    };
    request.declined = true;
    state
        .store
        .put_join_request(space.id, &user, Some(&request))?;
    Ok(Json(json!({})))
}

/// `GET /v1/account/requests`: the caller's requests to join, pending or
/// declined (an accepted one is closed, and the space is among theirs).
pub async fn own_join_requests(
    State(state): S,
    headers: HeaderMap,
) -> Result<Json<api::OwnRequests>, ApiError> {
    let who = caller(&state, &headers)?;
    let mut requests = Vec::new();
    for (space, user, r) in state.store.all_join_requests()? {
        if user != who.user {
            continue;
        }
        requests.push(api::OwnRequest {
            space: space.to_hex(),
            name: state.store.listing(space)?.map(|l| l.name),
            state: if r.declined { "declined" } else { "pending" }.to_owned(),
        });
    }
    Ok(Json(api::OwnRequests { requests }))
}

/// `GET /v1/revocations`: for each confidential space the caller's device
/// is in, the revocations of devices still in its delivery roster, so that
/// a member can commit them (any member may: the revocation is signed by
/// the device's user, and every member checks it).
pub async fn revocations(
    State(state): S,
    headers: HeaderMap,
) -> Result<Json<api::Revocations>, ApiError> {
    let who = caller(&state, &headers)?;
    let revoked = state.store.revocations()?;
    let mut spaces = Vec::new();
    if !revoked.is_empty() {
        for s in state.store.spaces()? {
            if s.kind != SpaceKind::Confidential || !visible(&s, &who) {
                continue;
            }
            let here: Vec<String> = revoked
                .iter()
                .filter(|r| s.roster.contains_key(&r.device))
                .map(|r| hex::encode(postcard::to_allocvec(r).unwrap_or_default()))
                .collect();
            if !here.is_empty() {
                spaces.push(api::SpaceRevocations {
                    space: s.id.to_hex(),
                    revoked: here,
                });
            }
        }
    }
    Ok(Json(api::Revocations { spaces }))
}

/// Registers a device whose certificate verifies under its user's
/// registered identity key.
fn register_device(state: &AppState, cert: DeviceCertificate) -> Result<Response, ApiError> {
    let user = state
        .store
        .user(&cert.user)?
        .ok_or_else(|| ApiError::NotFound(format!("no user {}", cert.user)))?;
    cert.verify(&user.identity_key).map_err(|_| {
        ApiError::BadRequest("the certificate is not signed by this user's identity key".into())
    })?;
    if state.store.device(cert.device)?.is_some() {
        return Err(ApiError::Conflict(
            "this device id is registered already".into(),
        ));
    }
    if !state.store.add_device(&DeviceRecord {
        certificate: cert.clone(),
        created: now(),
    })? {
        return Err(ApiError::Conflict(
            "this device id is registered already".into(),
        ));
    }
    tracing::info!(user = %cert.user, device = %cert.device, "device added");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "device": cert.device.to_hex() })),
    )
        .into_response())
}

/// Body of `PUT /v1/recovery`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryKit {
    /// The kit (hex, opaque to the server: sealed under the user's
    /// recovery code).
    pub kit: String,
    /// The verifier of the code's access value (hex, 32 bytes).
    pub verifier: String,
}

/// `PUT /v1/recovery`: a device stores its user's recovery kit and the
/// verifier of its code's access value, replacing the earlier ones (the old
/// code then opens nothing here).
pub async fn put_recovery(
    State(state): S,
    headers: HeaderMap,
    j: ApiJson<RecoveryKit>,
) -> Result<StatusCode, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let b = body(j)?;
    let kit = vec_hex("kit", &b.kit, amicus_core::recovery::MAX_KIT_BYTES)?;
    if kit.is_empty() {
        return Err(ApiError::BadRequest("the kit is empty".into()));
    }
    let verifier = bytes_hex::<32>("verifier", &b.verifier)?;
    state.store.put_recovery(&who.user, verifier, &kit)?;
    tracing::info!(user = %who.user, "recovery kit replaced");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/recovery`: whether the caller's user has a recovery kit.
pub async fn recovery_status(State(state): S, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    Ok(Json(
        json!({ "exists": state.store.recovery(&who.user)?.is_some() }),
    ))
}

/// The kit of `user` if `access` (hex) matches its verifier. The same
/// answer for an unknown user, a user without a kit and a wrong access
/// value: the route tells nothing to whoever lacks the code.
fn recovery_kit(state: &AppState, user: &UserId, access: &str) -> Result<Vec<u8>, ApiError> {
    let access = bytes_hex::<32>("access", access)?;
    match state.store.recovery(user)? {
        Some((verifier, kit)) if amicus_core::recovery::access_matches(&access, &verifier) => {
            Ok(kit)
        }
        _ => Err(ApiError::NotFound(
            "no recovery kit of this account opens with this code".into(),
        )),
    }
}

/// Body of `POST /v1/recovery/{user}/kit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryAccess {
    /// The code's access value (hex, 32 bytes).
    pub access: String,
}

/// `POST /v1/recovery/{user}/kit`: the user's recovery kit, to a request
/// that shows the code's access value.
pub async fn get_recovery(
    State(state): S,
    Path(name): Path<String>,
    j: ApiJson<RecoveryAccess>,
) -> Result<Json<Value>, ApiError> {
    let user = user_id(&name)?;
    let kit = recovery_kit(&state, &user, &body(j)?.access)?;
    Ok(Json(json!({ "kit": hex::encode(kit) })))
}

/// Body of `POST /v1/recovery/{user}/devices`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveredDevice {
    /// The code's access value (hex, 32 bytes).
    pub access: String,
    /// The new device's certificate (hex of postcard).
    pub certificate: String,
}

/// `POST /v1/recovery/{user}/devices`: registers a device of `user`
/// without a session, for a request that shows the code's access value and
/// a certificate made with the identity key the kit holds.
pub async fn recover_device(
    State(state): S,
    Path(name): Path<String>,
    j: ApiJson<RecoveredDevice>,
) -> Result<Response, ApiError> {
    let user = user_id(&name)?;
    let b = body(j)?;
    recovery_kit(&state, &user, &b.access)?;
    let cert = certificate(&b.certificate)?;
    if cert.user != user {
        return Err(ApiError::BadRequest(format!(
            "the certificate is for {}, not {user}",
            cert.user
        )));
    }
    let device = cert.device;
    let response = register_device(&state, cert)?;
    tracing::info!(user = %user, device = %device, "device registered by recovery");
    Ok(response)
}

/// `GET /v1/users/{user}`: the identity key and certified devices, for
/// members who add the user (they check each certificate themselves).
pub async fn user(
    State(state): S,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<UserListing>, ApiError> {
    caller(&state, &headers)?;
    let name = user_id(&name)?;
    let user = state
        .store
        .user(&name)?
        .ok_or_else(|| ApiError::NotFound(format!("no user {name}")))?;
    let mut devices = Vec::new();
    let mut revoked = Vec::new();
    for d in state.store.devices(&name)? {
        match state.store.revocation(d.certificate.device)? {
            Some(r) => revoked.push(hex::encode(postcard::to_allocvec(&r).unwrap_or_default())),
            None => devices.push(d),
        }
    }
    let devices: Vec<ListedDevice> = devices
        .into_iter()
        .map(|d| ListedDevice {
            device: d.certificate.device.to_hex(),
            certificate: hex::encode(postcard::to_allocvec(&d.certificate).unwrap_or_default()),
            key_packages: state
                .store
                .key_package_count(d.certificate.device)
                .unwrap_or(0) as u64,
        })
        .collect();
    Ok(Json(UserListing {
        user: name.to_string(),
        identity_key: hex::encode(user.identity_key.0),
        safety_number: user.identity_key.safety_number(&name),
        devices,
        revoked,
        admin: user.admin,
    }))
}

/// `POST /v1/key-packages`: uploads a batch of the caller device's KeyPackages.
pub async fn upload_key_packages(
    State(state): S,
    headers: HeaderMap,
    j: ApiJson<KeyPackages>,
) -> Result<Json<Count>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let req = body(j)?;
    let limits = &state.config.limits;
    if req.key_packages.len() > limits.max_key_packages_per_call {
        return Err(ApiError::TooLarge(format!(
            "at most {} KeyPackages per call",
            limits.max_key_packages_per_call
        )));
    }
    let have = state.store.key_package_count(who.device)?;
    if have + req.key_packages.len() > limits.max_key_packages_per_device {
        return Err(ApiError::TooLarge(format!(
            "a device holds at most {} KeyPackages; it has {have}",
            limits.max_key_packages_per_device
        )));
    }
    let user = state
        .store
        .user(&who.user)?
        .ok_or(ApiError::Unauthenticated)?;
    let provider = MlsProvider::new();
    let mut kps = Vec::with_capacity(req.key_packages.len());
    for (i, h) in req.key_packages.iter().enumerate() {
        let bytes = vec_hex("key_packages", h, 16 << 10)?;
        let kp = amicus_core::identity::validate_key_package(
            &provider,
            &bytes,
            &who.user,
            &user.identity_key,
        )
        .map_err(|e| ApiError::BadRequest(format!("KeyPackage {i}: {e}")))?;
        let cert = DeviceCertificate::from_extensions(kp.leaf_node().extensions())
            .map_err(|e| ApiError::BadRequest(format!("KeyPackage {i}: {e}")))?;
        if cert.device != who.device {
            return Err(ApiError::BadRequest(format!(
                "KeyPackage {i} is for another device"
            )));
        }
        kps.push(bytes);
    }
    let count = state.store.add_key_packages(who.device, &kps)?;
    Ok(Json(Count {
        count: count as u64,
    }))
}

/// `POST /v1/users/{user}/key-packages/claim`: one KeyPackage per device of
/// the user, each handed out once.
pub async fn claim_key_packages(
    State(state): S,
    headers: HeaderMap,
    Path(name): Path<String>,
    j: ApiJson<Claim>,
) -> Result<Json<Claimed>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let except = body(j)?.except;
    if except.len() > 10_000 {
        return Err(ApiError::TooLarge(
            "at most 10,000 devices in `except`".into(),
        ));
    }
    let name = user_id(&name)?;
    if state.store.user(&name)?.is_none() {
        return Err(ApiError::NotFound(format!("no user {name}")));
    }
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for d in state.store.devices(&name)? {
        let id = d.certificate.device;
        if except.contains(&id.to_hex()) || state.store.revocation(id)?.is_some() {
            continue;
        }
        match state.store.take_key_package(id)? {
            Some(kp) => found.push(ClaimedKeyPackage {
                device: id.to_hex(),
                key_package: hex::encode(kp),
            }),
            None => missing.push(id.to_hex()),
        }
    }
    Ok(Json(Claimed {
        key_packages: found,
        missing,
    }))
}

/// Body of `POST /v1/spaces`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSpace {
    /// The space id (hex; for a confidential space, its MLS group id).
    pub id: String,
    /// `confidential` or `public`.
    pub kind: SpaceKind,
    /// A name, for public spaces only.
    #[serde(default)]
    pub name: Option<String>,
}

fn space_json(s: &SpaceRecord, detail: bool) -> Value {
    let mut v = json!({
        "id": s.id.to_hex(),
        "kind": s.kind,
        "epoch": s.epoch,
        "next_seq": s.next_seq,
        "head": hex::encode(s.head),
        "name": s.name,
    });
    if detail {
        v["roster"] = s
            .roster
            .iter()
            .map(|(d, u)| json!({ "device": d.to_hex(), "user": u.as_str() }))
            .collect();
        v["roles"] = serde_json::to_value(&s.roles).unwrap_or_default();
        v["snapshots"] = s
            .snapshots
            .iter()
            .map(|(stream, seq)| json!({ "stream": hex::encode(stream), "seq": seq }))
            .collect();
    }
    v
}

/// `POST /v1/spaces`: creates a space with the caller's device as its only
/// member (confidential) or the caller as its space manager (public).
pub async fn create_space(
    State(state): S,
    headers: HeaderMap,
    j: ApiJson<NewSpace>,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let req = body(j)?;
    let id = space_id(&req.id)?;
    let name = match (req.kind, req.name) {
        (SpaceKind::Confidential, Some(_)) => {
            return Err(ApiError::BadRequest(
                "a confidential space's name stays encrypted: do not send it".into(),
            ));
        }
        (_, Some(n)) if n.chars().count() > 200 || n.trim().is_empty() => {
            return Err(ApiError::BadRequest("a name is 1 to 200 characters".into()));
        }
        (_, n) => n,
    };
    let mut record = SpaceRecord {
        id,
        kind: req.kind,
        created_by: who.user.clone(),
        epoch: 0,
        next_seq: 0,
        head: amicus_core::wire::genesis(id),
        roster: BTreeMap::new(),
        roles: BTreeMap::new(),
        snapshots: BTreeMap::new(),
        name,
        last_commit: None,
        barred: Default::default(),
    };
    match req.kind {
        SpaceKind::Confidential => {
            record.roster.insert(who.device, who.user.clone());
        }
        SpaceKind::Public => {
            record
                .roles
                .insert(who.user.clone(), PublicRole::SpaceManager);
        }
    }
    if !state.store.create_space(&record)? {
        return Err(ApiError::Conflict("a space with this id exists".into()));
    }
    tracing::info!(space = %id, kind = ?req.kind, "space created");
    Ok((StatusCode::CREATED, Json(space_json(&record, true))).into_response())
}

fn visible(s: &SpaceRecord, who: &Caller) -> bool {
    match s.kind {
        SpaceKind::Confidential => s.roster.get(&who.device) == Some(&who.user),
        SpaceKind::Public => true,
    }
}

/// `GET /v1/spaces`: the confidential spaces this device is in, and every
/// public space.
pub async fn list_spaces(State(state): S, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    let spaces: Vec<Value> = state
        .store
        .spaces()?
        .iter()
        .filter(|s| visible(s, &who))
        .map(|s| {
            let mut v = space_json(s, false);
            if s.kind == SpaceKind::Public {
                // The caller's own role, so that an app offers publishing
                // only where it is allowed.
                v["role"] = serde_json::to_value(s.roles.get(&who.user)).unwrap_or_default();
            }
            v
        })
        .collect();
    Ok(Json(json!({ "spaces": spaces })))
}

pub(crate) fn load_space(
    state: &AppState,
    who: &Caller,
    id: &str,
) -> Result<SpaceRecord, ApiError> {
    let id = space_id(id)?;
    match state.store.space(id)? {
        Some(s) if visible(&s, who) => Ok(s),
        _ => Err(
            ApiError::NotFound("no such space, or this device is not in it".into())
                .because("not_in_space"),
        ),
    }
}

/// `GET /v1/spaces/{id}`: a space, with its delivery roster.
pub async fn get_space(
    State(state): S,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    Ok(Json(space_json(&load_space(&state, &who, &id)?, true)))
}

/// Body of `PUT /v1/spaces/{id}/roles/{user}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// The role, or `null` to remove the user.
    pub role: Option<PublicRole>,
}

/// `PUT /v1/spaces/{id}/roles/{user}`: a public space's manager sets a role.
pub async fn set_role(
    State(state): S,
    headers: HeaderMap,
    Path((id, user)): Path<(String, String)>,
    j: ApiJson<SetRole>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let role = body(j)?.role;
    let user = user_id(&user)?;
    let mut space = load_space(&state, &who, &id)?;
    if space.kind != SpaceKind::Public {
        return Err(ApiError::BadRequest(
            "roles of a confidential space live inside MLS; change them with a commit".into(),
        ));
    }
    if space.roles.get(&who.user) != Some(&PublicRole::SpaceManager) {
        return Err(ApiError::Forbidden(
            "only a space manager changes roles".into(),
        ));
    }
    if state.store.user(&user)?.is_none() {
        return Err(ApiError::NotFound(format!("no user {user}")));
    }
    match role {
        Some(r) => space.roles.insert(user, r),
        None => space.roles.remove(&user),
    };
    if !space.roles.values().any(|r| *r == PublicRole::SpaceManager) {
        return Err(ApiError::BadRequest(
            "a space keeps at least one space manager".into(),
        ));
    }
    state.store.append(crate::store::Append {
        space: &space,
        entry: None,
        welcome: None,
    })?;
    Ok(Json(space_json(&space, true)))
}

/// `GET /v1/welcomes`: Welcomes queued for this device.
pub async fn welcomes(State(state): S, headers: HeaderMap) -> Result<Json<Welcomes>, ApiError> {
    let who = caller(&state, &headers)?;
    let welcomes = state
        .store
        .welcomes(who.device, 50)?
        .into_iter()
        .map(|(id, space, w)| QueuedWelcome {
            id,
            space: space.to_hex(),
            welcome: hex::encode(w),
        })
        .collect();
    Ok(Json(Welcomes { welcomes }))
}

/// `DELETE /v1/welcomes/{id}`: the device processed a Welcome.
pub async fn delete_welcome(
    State(state): S,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest("a Welcome id is a number".into()))?;
    if state.store.delete_welcome(who.device, id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such Welcome".into()))
    }
}

/// `GET /v1/ws`: upgrades to the WebSocket of `crate::ws`.
pub async fn websocket(
    State(state): S,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let who = state.caller(&headers)?;
    let max = state.config.limits.max_frame;
    // Chosen when the client offers it (a browser carrying its token in
    // the subprotocol must be answered with one it offered).
    Ok(ws
        .protocols([crate::state::WS_PROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| crate::ws::connection(state, socket, who)))
}

/// `PUT /v1/blobs/{id}`: streams a blob; its blake3 hash must be the id.
pub async fn put_blob(
    State(state): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    request_body: Body,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let id = BlobId::parse(&id)?;
    let limits = &state.config.limits;
    let store = state.store.clone();
    let user = who.user.clone();
    let quota = limits.quota_bytes;
    let counted = state.clone();
    let stored = state
        .blobs
        .put(
            &id,
            request_body.into_data_stream(),
            limits.max_blob,
            move |size| match store.charge(&user, size, quota)? {
                Some(_) => Ok(()),
                None => Err(ApiError::Quota(format!(
                    "your {quota} bytes of blob storage are used"
                ))),
            },
            move |size| {
                counted.metrics.blobs_stored.fetch_add(1, Ordering::Relaxed);
                counted
                    .metrics
                    .blob_bytes_in
                    .fetch_add(size, Ordering::Relaxed);
            },
        )
        .await?;
    Ok(match stored {
        Stored::New(_) => StatusCode::CREATED.into_response(),
        Stored::Existing => StatusCode::OK.into_response(),
    })
}

/// `GET /v1/blobs/{id}`: streams a blob.
pub async fn get_blob(
    State(state): S,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller(&state, &headers)?;
    let id = BlobId::parse(&id)?;
    let file = match tokio::fs::File::open(state.blobs.path(&id)).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound("no such blob".into()));
        }
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata().await?.len();
    state
        .metrics
        .blob_bytes_out
        .fetch_add(len, Ordering::Relaxed);
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `POST /v1/blobs/missing`: which of these blobs the server lacks (to resume).
pub async fn missing_blobs(
    State(state): S,
    headers: HeaderMap,
    j: ApiJson<api::BlobQuery>,
) -> Result<Json<api::MissingBlobs>, ApiError> {
    caller(&state, &headers)?;
    let req = body(j)?;
    if req.ids.len() > state.config.limits.max_blob_query {
        return Err(ApiError::TooLarge(format!(
            "at most {} ids per call",
            state.config.limits.max_blob_query
        )));
    }
    let mut missing = Vec::new();
    for s in &req.ids {
        let id = BlobId::parse(s)?;
        if !state.blobs.exists(&id).await {
            missing.push(id.to_hex());
        }
    }
    Ok(Json(api::MissingBlobs { missing }))
}

/// Body of `PUT /v1/public/{space}/docs/{doc}`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublicWrite {
    /// The title.
    pub title: String,
    /// The text.
    #[serde(default)]
    pub body: String,
    /// Declared language (BCP 47 primary tag), if known.
    #[serde(default)]
    pub language: Option<String>,
    /// Year, if known.
    #[serde(default)]
    pub year: Option<u16>,
    /// For a file: name, type, size and chunk blob ids.
    #[serde(default)]
    pub file: Option<PublicFile>,
    /// Provenance when published from a confidential space.
    #[serde(default)]
    pub provenance: Option<Provenance>,
    /// Bold, italic and underline of the text (PROTOCOL §15.1).
    #[serde(default)]
    pub marks: Vec<amicus_core::publication::TextMark>,
}

/// Who reads a public space: a signed-in device (its own rate), or, where
/// the server lets public libraries be read without an account, anyone
/// (limited per address). A request that carries a token is a device's,
/// and a bad token is refused rather than read as anonymous.
pub(crate) fn public_reader(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<Option<Caller>, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) || !state.config.public_read {
        let who = caller(state, headers)?;
        state.rate_api(who.device)?;
        return Ok(Some(who));
    }
    state.rate_address(
        extensions.get::<crate::Peer>().map(|p| p.0),
        crate::state::Anonymous::Read,
    )?;
    Ok(None)
}

/// A public space, for a device or for anyone.
pub(crate) fn public_space_for(
    state: &AppState,
    who: Option<&Caller>,
    id: &str,
) -> Result<SpaceRecord, ApiError> {
    match who {
        Some(who) => public_space(state, who, id),
        None => match state.store.space(space_id(id)?)? {
            Some(s) if s.kind == SpaceKind::Public => Ok(s),
            _ => Err(ApiError::NotFound("no such public space".into())),
        },
    }
}

/// `GET /v1/public`: the public spaces, by id and name (for anyone where
/// public libraries are readable without an account).
pub async fn public_spaces(
    State(state): S,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Result<Json<Value>, ApiError> {
    public_reader(&state, &headers, &extensions)?;
    let spaces: Vec<Value> = state
        .store
        .spaces()?
        .iter()
        .filter(|s| s.kind == SpaceKind::Public)
        .map(|s| json!({ "id": s.id.to_hex(), "name": s.name }))
        .collect();
    Ok(Json(json!({ "spaces": spaces })))
}

pub(crate) fn public_space(
    state: &AppState,
    who: &Caller,
    id: &str,
) -> Result<SpaceRecord, ApiError> {
    let s = load_space(state, who, id)?;
    if s.kind != SpaceKind::Public {
        return Err(ApiError::BadRequest("this is not a public space".into()));
    }
    Ok(s)
}

/// `PUT /v1/public/{space}/docs/{doc}`: writes a public document (contributors and up).
pub async fn put_public(
    State(state): S,
    headers: HeaderMap,
    Path((space, doc)): Path<(String, String)>,
    j: ApiJson<PublicWrite>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let req = body(j)?;
    let space = public_space(&state, &who, &space)?;
    check_doc_id(&doc)?;
    if !space.roles.contains_key(&who.user) {
        return Err(
            ApiError::Forbidden("you have no role in this public space".into())
                .because("no_public_role"),
        );
    }
    let limits = &state.config.limits;
    if req.body.len() > limits.max_public_body {
        return Err(ApiError::TooLarge(format!(
            "a public body holds at most {} bytes",
            limits.max_public_body
        )));
    }
    if req.title.trim().is_empty() || req.title.chars().count() > 500 {
        return Err(ApiError::BadRequest(
            "a title is 1 to 500 characters".into(),
        ));
    }
    if let Some(lang) = &req.language
        && (lang.is_empty() || lang.len() > 8 || !lang.bytes().all(|b| b.is_ascii_lowercase()))
    {
        return Err(ApiError::BadRequest(
            "`language` is a lowercase primary language tag such as `fr`".into(),
        ));
    }
    if let Some(file) = &req.file {
        if file.chunks.len() > 1 << 20 || file.name.is_empty() || file.name.len() > 255 {
            return Err(ApiError::BadRequest(
                "a file has a name of 1 to 255 bytes and at most 2^20 chunks".into(),
            ));
        }
        for c in &file.chunks {
            BlobId::parse(c)?;
        }
    }
    amicus_core::publication::check_marks(&req.marks, &req.body).map_err(ApiError::BadRequest)?;
    if let Some(p) = &req.provenance {
        let device = device_id(&p.device)?;
        let record = state
            .store
            .device(device)?
            .filter(|d| d.certificate.user == who.user)
            .ok_or_else(|| {
                ApiError::BadRequest("provenance names a device that is not yours".into())
            })?;
        p.verify(
            space.id,
            &doc,
            &req.title,
            &req.body,
            &req.marks,
            &record.certificate,
        )
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    // A copy already there is replaced by whoever wrote it, or by a content
    // manager, never by another contributor (who could then withdraw it).
    let existing = state.store.public_doc(space.id, &doc)?;
    let manager = space
        .roles
        .get(&who.user)
        .is_some_and(|r| *r >= PublicRole::ContentManager);
    if existing.as_ref().is_some_and(|e| e.author != who.user) && !manager {
        return Err(ApiError::Forbidden(
            "only whoever published this copy and the space's content managers replace it".into(),
        )
        .because("not_publisher"));
    }
    // Each copy written under an id has its own `updated` time, later than
    // any copy before it (withdrawn or not): a withdrawal signs it, so it
    // never applies to another copy.
    let before = [
        existing.map(|p| p.updated),
        state
            .store
            .tombstone(space.id, &doc)?
            .map(|t| t.copy_updated),
    ]
    .into_iter()
    .flatten()
    .max();
    let updated = now().max(before.map_or(0, |u| u + 1));
    let record = PublicRecord {
        space: space.id,
        id: doc,
        kind: if req.file.is_some() {
            "file"
        } else {
            "document"
        }
        .into(),
        title: req.title,
        body: req.body,
        marks: req.marks,
        language: req.language,
        year: req.year,
        file: req.file,
        provenance: req.provenance,
        author: who.user,
        updated,
    };
    state.store.put_public(&record)?;
    state.index.upsert(&record);
    Ok(Json(
        json!({ "space": record.space.to_hex(), "id": record.id, "updated": record.updated }),
    ))
}

/// `GET /v1/public/{space}/docs[?id=DOC]`: the documents of a public
/// space, or the one copy under `id` if there is one (an empty list, not
/// an error, when there is none: a publisher's app asks this before
/// offering to withdraw).
pub async fn list_public(
    State(state): S,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Path(space): Path<String>,
    query: Result<
        axum::extract::Query<std::collections::HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<Value>, ApiError> {
    let who = public_reader(&state, &headers, &extensions)?;
    let axum::extract::Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let space = public_space_for(&state, who.as_ref(), &space)?;
    let records = match q.get("id") {
        Some(id) => {
            check_doc_id(id)?;
            state.store.public_doc(space.id, id)?.into_iter().collect()
        }
        None => state.store.public_docs(space.id)?,
    };
    let docs: Vec<Value> = records
        .into_iter()
        .map(|d| json!({ "id": d.id, "title": d.title, "kind": d.kind, "language": d.language, "year": d.year, "author": d.author.as_str(), "updated": d.updated }))
        .collect();
    Ok(Json(json!({ "documents": docs })))
}

/// `GET /v1/public/{space}/docs/{doc}`: one public document.
pub async fn get_public(
    State(state): S,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Path((space, doc)): Path<(String, String)>,
) -> Result<Json<PublicRecord>, ApiError> {
    let who = public_reader(&state, &headers, &extensions)?;
    let space = public_space_for(&state, who.as_ref(), &space)?;
    check_doc_id(&doc)?;
    if let Some(record) = state.store.public_doc(space.id, &doc)? {
        return Ok(Json(record));
    }
    Err(match state.store.tombstone(space.id, &doc)? {
        Some(t) => ApiError::Gone(format!(
            "this public copy was withdrawn by {} (signed by device {})",
            t.by, t.withdrawal.device
        ))
        .because("withdrawn"),
        None => ApiError::NotFound("no such document".into()),
    })
}

/// `DELETE /v1/public/{space}/docs/{doc}` `{withdrawal}`: withdraws a
/// public copy (whoever wrote it, or a content manager and up), signed by
/// one of the caller's devices over the copy's space, id and `updated`
/// time; the server keeps that tombstone and the index forgets the copy.
pub async fn delete_public(
    State(state): S,
    headers: HeaderMap,
    Path((space, doc)): Path<(String, String)>,
    j: ApiJson<api::WithdrawPublic>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    state.rate_api(who.device)?;
    let space = public_space(&state, &who, &space)?;
    check_doc_id(&doc)?;
    let req = body(j)?;
    let record = state
        .store
        .public_doc(space.id, &doc)?
        .ok_or_else(|| ApiError::NotFound("no such document".into()))?;
    let manager = space
        .roles
        .get(&who.user)
        .is_some_and(|r| *r >= PublicRole::ContentManager);
    if record.author != who.user && !manager {
        return Err(ApiError::Forbidden(
            "only whoever published this copy and the space's content managers withdraw it".into(),
        )
        .because("not_publisher"));
    }
    let device = device_id(&req.withdrawal.device)?;
    let certificate = state
        .store
        .device(device)?
        .filter(|d| d.certificate.user == who.user)
        .ok_or_else(|| {
            ApiError::BadRequest("the withdrawal names a device that is not yours".into())
        })?
        .certificate;
    if state.store.revocation(device)?.is_some() {
        return Err(ApiError::BadRequest(
            "the withdrawal names a revoked device".into(),
        ));
    }
    req.withdrawal
        .verify(space.id, &doc, record.updated, &certificate)
        .map_err(|e| ApiError::BadRequest(format!("the withdrawal: {e}")))?;
    let tombstone = crate::store::Tombstone {
        withdrawal: req.withdrawal,
        by: who.user,
        copy_updated: record.updated,
        at: now(),
    };
    match state.store.withdraw_public(space.id, &doc, &tombstone)? {
        crate::store::Withdrawn::Done => {}
        crate::store::Withdrawn::Missing => {
            return Err(ApiError::NotFound("no such document".into()));
        }
        crate::store::Withdrawn::Changed => {
            return Err(ApiError::Conflict(
                "another copy was published meanwhile: withdraw that one".into(),
            ));
        }
    }
    state.index.remove(space.id, &doc);
    Ok(Json(json!({ "withdrawn": true, "at": tombstone.at })))
}

/// Fallback: a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see docs/PROTOCOL.md".into())
}

/// Query of `GET /v1/search`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// The words (quoted phrases allowed).
    pub q: String,
    /// Languages, comma-separated codes (`fr,ar`); all when absent.
    #[serde(default)]
    pub lang: Option<String>,
    /// A public space (hex id).
    #[serde(default)]
    pub space: Option<String>,
    /// Hits per page (at most 100).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Hits to skip.
    #[serde(default)]
    pub offset: Option<usize>,
}

/// `GET /v1/search?q=&lang=&space=&limit=&offset=`: searches the public
/// libraries.
pub async fn search(
    State(state): S,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    RawQuery(raw): RawQuery,
    query: Result<axum::extract::Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    public_reader(&state, &headers, &extensions)?;
    // The query decoder replaces invalid UTF-8; refuse it instead, so that
    // nobody searches for replacement characters without knowing.
    let raw = raw.as_deref().unwrap_or("");
    if percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .is_err()
    {
        return Err(ApiError::BadRequest(
            "the query string is not valid UTF-8 once percent-decoded".into(),
        ));
    }
    let axum::extract::Query(p) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut languages = Vec::new();
    for code in p
        .lang
        .iter()
        .flat_map(|l| l.split(','))
        .filter(|c| !c.is_empty())
    {
        languages.push(amicus_search::Lang::from_code(code).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown language {code:?}: use fr, en, ar, de, pt, es, nl, sw, ln, rn or lg"
            ))
        })?);
    }
    if let Some(s) = &p.space {
        space_id(s)?;
    }
    let offset = p.offset.unwrap_or(0);
    if offset > 10_000 {
        return Err(ApiError::BadRequest("`offset` is at most 10,000".into()));
    }
    let request = amicus_search::SearchQuery {
        text: p.q,
        languages,
        space: p.space,
        limit: p.limit.unwrap_or(10),
        offset,
    };
    let search = state.search.clone();
    let results = tokio::task::spawn_blocking(move || search.search(&request))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| match e {
            amicus_search::SearchError::Invalid(m) => ApiError::BadRequest(m),
            e => {
                tracing::error!(error = %e, "search failed");
                ApiError::Internal
            }
        })?;
    let hits: Vec<Value> = results
        .hits
        .iter()
        .map(|h| {
            json!({
                "space": h.space,
                "id": h.id,
                "title": h.title,
                "snippet": h.snippet,
                "language": h.language.map(|l| l.code()),
                "score": h.score,
            })
        })
        .collect();
    Ok(Json(
        json!({ "total": results.total, "hits": hits, "facets": results.facets }),
    ))
}
