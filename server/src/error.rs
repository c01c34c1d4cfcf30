//! The one error type of the HTTP API, and its JSON form:
//! `{"error": "<code>", "message": "<sentence>"}` with a matching status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// An API error. Every variant says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: the message says which field and why.
    #[error("{0}")]
    BadRequest(String),
    /// No valid session token: sign in again.
    #[error("sign in first: missing, expired or unknown session token")]
    Unauthenticated,
    /// The signature over the challenge is wrong or the challenge expired.
    #[error("sign-in refused: {0}")]
    SignInRefused(String),
    /// The device was revoked by its user: it will never sign in again.
    #[error("this device was revoked by its user; it can no longer sign in")]
    DeviceRevoked,
    /// The caller's role or account does not allow this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The named thing existed and was withdrawn.
    #[error("gone: {0}")]
    Gone(String),
    /// The name or id is taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The body exceeds a limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The device's storage quota is used up.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// Too many requests: wait and retry.
    #[error("rate limited: retry after {0} ms")]
    RateLimited(u32),
    /// The uploaded bytes do not hash to the blob id.
    #[error("the uploaded bytes do not hash to the blob id")]
    HashMismatch,
    /// The server failed (disk full, I/O); the request changed nothing
    /// durable, retry later. Details are in the server's log.
    #[error("internal error; retry later")]
    Internal,
    /// A refusal of one of the kinds above with a specific, stable
    /// `reason` (PROTOCOL §15, "Reasons"), which clients word in the
    /// person's language.
    #[error("{1}")]
    Because(&'static str, Box<ApiError>),
}

impl ApiError {
    /// The same refusal, with a specific reason.
    pub fn because(self, reason: &'static str) -> Self {
        Self::Because(reason, Box::new(self))
    }

    /// The specific reason, if one was given.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Because(reason, _) => Some(reason),
            _ => None,
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Because(_, inner) => inner.parts(),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Self::SignInRefused(_) => (StatusCode::UNAUTHORIZED, "sign_in_refused"),
            Self::DeviceRevoked => (StatusCode::UNAUTHORIZED, "device_revoked"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Gone(_) => (StatusCode::GONE, "gone"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::Quota(_) => (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::HashMismatch => (StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        Self::Internal
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        tracing::error!(error = %e, "i/o failure");
        Self::Internal
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let mut body = serde_json::json!({ "error": code, "message": self.to_string() });
        if let Some(reason) = self.reason() {
            body["reason"] = reason.into();
        }
        let mut response = (status, Json(body)).into_response();
        let kind = match self {
            Self::Because(_, inner) => *inner,
            other => other,
        };
        if let Self::RateLimited(ms) = kind {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = secs.to_string().parse() {
                response.headers_mut().insert("retry-after", v);
            }
        }
        response
    }
}

/// Turns axum's extractor rejections (bad JSON, wrong content type, body
/// too large) into the same JSON errors.
pub fn rejection(e: axum::extract::rejection::JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge("request body exceeds the limit".into())
    } else {
        ApiError::BadRequest(e.body_text())
    }
}

/// Gives every error response the JSON form, including those produced by
/// axum and tower themselves (wrong method, body timeout, a plain GET on the
/// WebSocket route, undecodable path parameters).
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    // A rejection's own short text says more than the status line.
    let body = axum::body::to_bytes(response.into_body(), 512)
        .await
        .unwrap_or_default();
    let message = match std::str::from_utf8(&body) {
        Ok(text) if !text.trim().is_empty() && !text.contains('<') => text.trim().to_owned(),
        _ => format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("error")
        ),
    };
    (
        status,
        Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}
