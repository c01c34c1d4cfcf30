//! The web app: static files (the wasm client, its JavaScript glue, the
//! interface) served at `/` from the directory `cargo xtask web` builds.
//!
//! Every answer carries a strict Content-Security-Policy: scripts only from
//! this origin (and WebAssembly compilation), connections only back to this
//! origin, no frames, no plugins. The server that serves the app can still
//! serve a malicious one (PROTOCOL, "The limit no protocol removes"); the
//! policy keeps a script injected through content from running.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// The Content-Security-Policy of every page of the app.
pub const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    connect-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
    font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// The router serving `dir` (with `index.html` for `/`). A file's `.br` or
/// `.gz` sibling, written by `cargo xtask web`, is sent instead to a
/// browser that accepts brotli (browsers offer it over HTTPS) or gzip.
/// Files are revalidated by their content ([`validate`]).
pub fn router(dir: &Path) -> Router {
    let tags = Tags {
        dir: dir.to_owned(),
    };
    with_headers(
        Router::new()
            .fallback_service(
                ServeDir::new(dir)
                    .append_index_html_on_directories(true)
                    .precompressed_br()
                    .precompressed_gzip(),
            )
            .layer(axum::middleware::from_fn_with_state(tags, validate))
            // The same path answers gzip or not: caches must keep both apart.
            .layer(SetResponseHeaderLayer::if_not_present(
                header::VARY,
                HeaderValue::from_static("accept-encoding"),
            )),
    )
}

/// The content tags of the app's files.
#[derive(Clone)]
struct Tags {
    dir: PathBuf,
}

impl Tags {
    /// The tag of the file a request path names as `ServeDir` serves it (a
    /// path ending in `/`: its directory's `index.html`), `None` if there
    /// is none. Only paths whose every segment is a plain name are looked
    /// at. The file is read and hashed at each request: a cache keyed by
    /// modification time and size would trust what a copy can keep (the
    /// service worker is the same size in every build).
    async fn of(&self, uri_path: &str) -> Option<String> {
        let decoded = percent_encoding::percent_decode_str(uri_path)
            .decode_utf8()
            .ok()?;
        let mut path = self.dir.clone();
        for segment in decoded.split('/').filter(|s| !s.is_empty()) {
            let plain = Path::new(segment)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !plain || segment.contains('\\') {
                return None;
            }
            path.push(segment);
        }
        let directory = decoded.ends_with('/');
        tokio::task::spawn_blocking(move || {
            let meta = std::fs::metadata(&path).ok()?;
            if meta.is_dir() != directory {
                // A directory without its `/` is redirected, a file with one
                // is not found: neither is this file.
                return None;
            }
            if directory {
                path.push("index.html");
            }
            let bytes = std::fs::read(&path).ok()?;
            Some(format!("W/\"{}\"", &blake3::hash(&bytes).to_hex()[..32]))
        })
        .await
        .ok()?
    }
}

/// Revalidation by content: `ServeDir` answers `If-Modified-Since` from
/// modification times, which a deployment that keeps older times (a copy
/// that preserves them, going back to an earlier build) makes wrong: a
/// browser, or the app's service worker asking with `cache: "no-cache"`,
/// would be told that its copy from another build is current. Here the
/// dates are left out (no `Last-Modified`, `If-Modified-Since` ignored)
/// and a file carries an `ETag` made from its content (BLAKE3 of the
/// uncompressed file, read at each request; weak, since its brotli and
/// gzip forms share it),
/// `If-None-Match` answered with 304 only when it names that tag.
async fn validate(
    axum::extract::State(tags): axum::extract::State<Tags>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    request.headers_mut().remove(header::IF_MODIFIED_SINCE);
    let asked = request.headers_mut().remove(header::IF_NONE_MATCH);
    let tag = if request.method() == axum::http::Method::GET
        || request.method() == axum::http::Method::HEAD
    {
        tags.of(request.uri().path()).await
    } else {
        None
    };
    if let (Some(tag), Some(asked)) = (&tag, &asked)
        && asked.to_str().unwrap_or_default().split(',').any(|t| {
            t.trim() == "*" || t.trim().trim_start_matches("W/") == tag.trim_start_matches("W/")
        })
    {
        let mut response = axum::http::StatusCode::NOT_MODIFIED.into_response();
        if let Ok(value) = HeaderValue::from_str(tag) {
            response.headers_mut().insert(header::ETAG, value);
        }
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        return response;
    }
    let mut response = next.run(request).await;
    response.headers_mut().remove(header::LAST_MODIFIED);
    if response.status() == axum::http::StatusCode::OK
        && let Some(tag) = tag
        && let Ok(value) = HeaderValue::from_str(&tag)
    {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// A page explaining that the app was not built (the API still works).
pub fn missing() -> Router {
    with_headers(Router::new().route(
        "/",
        axum::routing::get(|| async {
            Html(
                "<!doctype html><meta charset=utf-8><title>Amicus</title>\
                 <p>This server runs without its web app. Build and serve it with \
                 <code>cargo xtask run</code>, or pass <code>--web DIR</code> to \
                 <code>amicus serve</code>.</p>",
            )
            .into_response()
        }),
    ))
}

fn with_headers(router: Router) -> Router {
    router
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}
