//! The web app: static files (the wasm client, its JavaScript glue, the
//! interface) served at `/` from the directory `cargo xtask web` builds.
//!
//! Every answer carries a strict Content-Security-Policy: scripts only from
//! this origin (and WebAssembly compilation), connections only back to this
//! origin, no frames, no plugins. The server that serves the app can still
//! serve a malicious one (PROTOCOL, "The limit no protocol removes"); the
//! policy keeps a script injected through content from running.

use std::path::Path;

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
pub fn router(dir: &Path) -> Router {
    with_headers(
        Router::new()
            .fallback_service(
                ServeDir::new(dir)
                    .append_index_html_on_directories(true)
                    .precompressed_br()
                    .precompressed_gzip(),
            )
            // The same path answers gzip or not: caches must keep both apart.
            .layer(SetResponseHeaderLayer::if_not_present(
                header::VARY,
                HeaderValue::from_static("accept-encoding"),
            )),
    )
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
