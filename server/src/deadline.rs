//! A deadline on a whole request body.
//!
//! tower-http's body timeout (`body_timeout_secs`) starts again with every
//! piece of the body that arrives, so a client sending one byte every few
//! seconds (a slow-body "slowloris") would hold a connection and a request
//! for ever. [`limit`] also counts from the start of the request: a body
//! not received within `body_deadline_secs` ends the request with 408 and
//! the connection with it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

/// The error a body reports once its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
struct TooSlow;

struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(axum::Error::new(TooSlow))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: the request's body must arrive within `deadline` of the
/// request's start; otherwise the answer is 408 `timeout` and the
/// connection is closed (`Connection: close`).
pub async fn limit(deadline: Duration, request: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(deadline)),
        expired: expired.clone(),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    if !expired.load(Ordering::SeqCst) {
        return response;
    }
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        Json(serde_json::json!({
            "error": "timeout",
            "message": format!(
                "the request body did not arrive within {} s; send it again on a faster connection or in smaller pieces",
                deadline.as_secs()
            ),
        })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
