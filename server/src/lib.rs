//! # amicus-server
//!
//! The relay and Delivery Service of Amicus. It stores and forwards
//! ciphertext for confidential spaces and never holds a key of one; it
//! serves public spaces' plaintext documents to members of the network.
//!
//! - [`app`] builds the HTTP and WebSocket router over one [`AppState`];
//! - [`serve`] runs it on a listener, in the clear or over TLS
//!   ([`tls_acceptor`]), with header and body timeouts and a graceful
//!   shutdown that flushes the store;
//! - [`store::Store`] is the durable store (sled in [`store::SledStore`]),
//!   [`blobs::Blobs`] the content-addressed blob directory;
//! - [`relay`] orders each space's log and fans entries out;
//! - [`public::PublicIndex`] is the hook the search index plugs into;
//! - [`web`] serves the web app at `/` when it was built.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod audit;
pub mod blobs;
pub mod config;
mod deadline;
pub mod drop;
pub mod error;
pub mod map;
pub mod notify;
pub mod pairing;
pub mod public;
pub mod relay;
pub mod search;
pub mod state;
pub mod store;
pub mod web;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub use config::{Config, Limits, Registration};
pub use state::AppState;

/// The address a request came from (set by [`serve`] on each
/// connection; absent when the router is called directly, as in tests).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// The client's address as a trusted reverse proxy saw it: the rightmost
/// entry of `X-Forwarded-For` (the ones before it are the client's word).
fn forwarded_for(headers: &axum::http::HeaderMap) -> Option<SocketAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()?;
    let ip: std::net::IpAddr = last.trim().parse().ok()?;
    Some(SocketAddr::new(ip, 0))
}

/// The router of the whole API over `state`.
pub fn app(state: Arc<AppState>) -> Router {
    let limits = &state.config.limits;
    let body_deadline = limits.body_deadline();
    let json_limit = DefaultBodyLimit::max(limits.max_body);
    let public_limit = DefaultBodyLimit::max(limits.max_public_body + 64 * 1024);
    let counted = state.clone();
    let web = match &state.config.web {
        Some(dir) => web::router(dir),
        None => web::missing(),
    };
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/v1/register", post(api::register))
        .route("/v1/invites", post(api::invite))
        .route("/v1/challenge", post(api::challenge))
        .route("/v1/session", post(api::session))
        .route("/v1/devices", post(api::add_device))
        .route("/v1/devices/revoke", post(api::revoke_device))
        .route("/v1/revocations", get(api::revocations))
        .route(
            "/v1/account/notifications",
            get(api::notifications).put(api::set_notifications),
        )
        .route(
            "/v1/recovery",
            put(api::put_recovery).get(api::recovery_status),
        )
        .route("/v1/recovery/{user}/kit", post(api::get_recovery))
        .route("/v1/recovery/{user}/devices", post(api::recover_device))
        .route(
            "/v1/pairing",
            post(api::pairing_offer).get(api::pairing_offers),
        )
        .route("/v1/pairing/open", post(api::pairing_open))
        .route("/v1/pairing/{id}", get(api::pairing_answer))
        .route("/v1/pairing/{id}/answer", post(api::pairing_reply))
        .route("/v1/users/{user}", get(api::user))
        .route(
            "/v1/users/{user}/key-packages/claim",
            post(api::claim_key_packages),
        )
        .route("/v1/key-packages", post(api::upload_key_packages))
        .route("/v1/spaces", post(api::create_space).get(api::list_spaces))
        .route("/v1/spaces/{id}", get(api::get_space))
        .route("/v1/spaces/{id}/roles/{user}", put(api::set_role))
        .route("/v1/directory", get(api::directory))
        .route(
            "/v1/directory/{space}",
            put(api::list_space).delete(api::unlist_space),
        )
        .route(
            "/v1/directory/{space}/requests",
            post(api::ask_to_join).get(api::join_requests),
        )
        .route(
            "/v1/directory/{space}/requests/{user}",
            axum::routing::delete(api::close_join_request),
        )
        .route(
            "/v1/directory/{space}/requests/{user}/decline",
            post(api::decline_join_request),
        )
        .route("/v1/account/requests", get(api::own_join_requests))
        .route("/v1/welcomes", get(api::welcomes))
        .route(
            "/v1/welcomes/{id}",
            axum::routing::delete(api::delete_welcome),
        )
        .route("/v1/ws", get(api::websocket))
        .route("/v1/search", get(api::search))
        .route("/v1/blobs/missing", post(api::missing_blobs))
        .route(
            "/v1/blobs/{id}",
            put(api::put_blob)
                .get(api::get_blob)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/spaces/{id}/intake", put(drop::put_intake))
        .route(
            "/v1/spaces/{id}/drop-boxes",
            post(drop::create_drop_box).get(drop::list_drop_boxes),
        )
        .route(
            "/v1/spaces/{id}/drop-chunks/{hash}",
            get(drop::get_drop_chunk),
        )
        .route(
            "/v1/spaces/{id}/drop-boxes/{dropbox}",
            axum::routing::delete(drop::close_drop_box),
        )
        .route(
            "/v1/drop/{dropbox}",
            get(drop::drop_box_info)
                .post(drop::submit_file)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/drop/{dropbox}/submissions", post(drop::new_submission))
        .route(
            "/v1/drop/{dropbox}/chunks/{hash}",
            put(drop::put_chunk).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/drop/{dropbox}/submissions/{id}/done",
            post(drop::finish_submission),
        )
        .route("/v1/public", get(api::public_spaces))
        .route("/v1/public/{space}/aggregates", get(map::list_aggregates))
        .route(
            "/v1/public/{space}/aggregates/{id}",
            get(map::get_aggregate)
                .put(map::put_aggregate)
                .delete(map::delete_aggregate),
        )
        .route("/v1/public/{space}/docs", get(api::list_public))
        .route(
            "/v1/public/{space}/docs/{doc}",
            put(api::put_public)
                .get(api::get_public)
                .delete(api::delete_public)
                .layer(public_limit),
        )
        .route("/v1/{*rest}", axum::routing::any(api::not_found))
        .fallback_service(web)
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(json_limit)
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_timeout(),
        ))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                deadline::limit(body_deadline, req, next)
            },
        ))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let state = counted.clone();
                async move {
                    state.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
                    next.run(req).await
                }
            },
        ))
        .with_state(state)
}

/// Opens the store, the blob directory and the search index under
/// `config.data` and builds the state. An empty index is rebuilt from the
/// store's public documents.
pub fn open(config: Config) -> Result<Arc<AppState>, Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(&config.data)?;
    let store = Arc::new(store::SledStore::open(&config.data.join("store"))?);
    let blobs = blobs::Blobs::open(&config.data.join("blobs"))?;
    let drop_blobs = blobs::Blobs::open(&config.data.join("drop-chunks"))?;
    let search = Arc::new(search::SearchService::open(&config.data.join("index"))?);
    if search.is_empty() {
        let n = search.rebuild(store.as_ref())?;
        if n > 0 {
            tracing::info!(documents = n, "search index rebuilt from the store");
        }
    }
    Ok(Arc::new(AppState::new(
        config, store, blobs, drop_blobs, search,
    )?))
}

/// The TLS side of [`serve`]: the certificate chain and private key of PEM
/// files, TLS 1.2 and 1.3 (rustls's safe defaults, the ring provider),
/// HTTP/1.1 (the WebSocket upgrade needs it).
pub fn tls_acceptor(
    certificates: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(certificates)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "cannot read the certificates of {}: {e}",
                certificates.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", certificates.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key of {}: {e}", key.display()))?;
    // ring: see the client's transport; the content is end-to-end
    // encrypted whatever the transport.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `state` on `listener` (over TLS with `tls`) until `shutdown`
/// resolves; then stops accepting, closes WebSockets, lets requests in
/// flight finish (at most 10 seconds) and flushes the store.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let router = app(state.clone());
    tokio::spawn(notify::run(state.clone()));
    tokio::spawn(drop::run(state.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.limits.header_timeout());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // A TLS handshake gets as long as a request's headers.
    let handshake = state.config.limits.header_timeout();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer): (_, SocketAddr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Live edits and presence are small frames: send each at
                // once rather than waiting for the previous one's ACK.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not disable Nagle's algorithm");
                }
                // The peer's address, for the per-address limits of the
                // routes that need no account.
                let trusted = state.config.trusted_proxies.contains(&peer.ip().to_canonical());
                let service = hyper_util::service::TowerToHyperService::new(
                    tower::ServiceExt::map_request(router.clone(), move |mut req: axum::http::Request<hyper::body::Incoming>| {
                        let client = if trusted { forwarded_for(req.headers()).unwrap_or(peer) } else { peer };
                        req.extensions_mut().insert(Peer(client));
                        req
                    }),
                );
                match tls.clone() {
                    None => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        let conn = graceful.watch(conn.into_owned());
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    Some(acceptor) => {
                        // Watched once the handshake is done.
                        let (builder, watcher) = (builder.clone(), graceful.watcher());
                        tokio::spawn(async move {
                            let stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            };
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            let _ = watcher.watch(conn.into_owned()).await;
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down");
    state.shutdown.cancel();
    drop(listener);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
    state.store.flush().map_err(std::io::Error::other)?;
    if let Err(e) = state.search.flush() {
        tracing::error!(error = %e, "committing the search index at shutdown failed");
    }
    tracing::info!("store and index flushed; stopped");
    Ok(())
}
