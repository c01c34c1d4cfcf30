//! The shared state of one server, its sessions, rate limits and metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amicus_core::{DeviceId, UserId};
use axum::http::HeaderMap;
use tokio_util::sync::CancellationToken;

use crate::blobs::Blobs;
use crate::config::Config;
use crate::error::ApiError;
use crate::public::PublicIndex;
use crate::relay::Relay;
use crate::search::SearchService;
use crate::store::{SessionRecord, Store};

/// The WebSocket subprotocol the server speaks (and answers with).
pub const WS_PROTOCOL: &str = "amicus.v1";
/// The prefix of the subprotocol that carries a browser's session token.
pub const WS_BEARER: &str = "amicus.bearer.";

/// Everything a handler needs, shared behind one `Arc`.
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// The blob directory.
    pub blobs: Blobs,
    /// The search index of public documents (also the write hook).
    pub search: Arc<SearchService>,
    /// The hook called after each write of a public document.
    pub index: Arc<dyn PublicIndex>,
    /// Live connections, per-space ordering and fan-out.
    pub relay: Relay,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Cancelled when the server shuts down: WebSockets close.
    pub shutdown: CancellationToken,
    challenges: std::sync::Mutex<HashMap<DeviceId, ([u8; 32], Instant)>>,
    rates: std::sync::Mutex<HashMap<DeviceId, Bucket>>,
    anonymous: std::sync::Mutex<HashMap<Vec<u8>, Bucket>>,
    /// Held while a drop box's records change (reservations, expiries,
    /// completions), so that each is counted once; one of 16 by the box's
    /// first byte, so that boxes rarely wait for each other.
    drops: [std::sync::Mutex<()>; 16],
    /// The drop boxes' chunks, apart from the members' blobs: what a
    /// witness sends, and what is deleted of it, never touches a member's
    /// file.
    pub drop_blobs: Blobs,
    /// Held shared while a drop box takes a submission's declaration or
    /// bytes, and alone while the sweep deletes the chunks no submission
    /// names ([`crate::drop::sweep`]): a chunk on its way is never one.
    pub drop_uploads: tokio::sync::RwLock<()>,
    /// The pairing mailbox (in memory only).
    pub pairings: std::sync::Mutex<crate::pairing::Pairings>,
    /// Who asked for notification emails, and who has activity waiting.
    pub notifier: crate::notify::Notifier,
}

/// Who is calling: a signed-in device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Hash of a bearer token or invitation code: the store keeps only this.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    blake3::derive_key("amicus server token v1", secret.as_bytes())
}

/// 32 random bytes.
pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system provides randomness");
    b
}

/// A token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
    /// When it is full again if nothing more comes: after that it is the
    /// same as no bucket, and may be forgotten.
    full_at: Instant,
}

impl Bucket {
    fn full(now: Instant, burst: f64) -> Self {
        Self {
            tokens: burst,
            at: now,
            full_at: now,
        }
    }

    /// Takes one token (filled at `rate` per second up to `burst`), or
    /// says in how many milliseconds one will be there.
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), u32> {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.full_at = now + Duration::from_secs_f64((burst - self.tokens) / rate);
            Ok(())
        } else {
            Err((((1.0 - self.tokens) / rate) * 1000.0)
                .ceil()
                .min(f64::from(u32::MAX)) as u32)
        }
    }
}

impl AppState {
    /// A state over an opened store and blob directory; an error says
    /// what is wrong in the `[mail]` section.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        blobs: Blobs,
        drop_blobs: Blobs,
        search: Arc<SearchService>,
    ) -> Result<Self, String> {
        let notifier = crate::notify::Notifier::open(config.mail.as_ref(), store.as_ref())?;
        Ok(Self {
            index: search.clone(),
            search,
            relay: Relay::new(config.limits.clone()),
            config,
            store,
            blobs,
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
            challenges: Default::default(),
            rates: Default::default(),
            anonymous: Default::default(),
            drops: Default::default(),
            drop_blobs,
            drop_uploads: tokio::sync::RwLock::new(()),
            pairings: Default::default(),
            notifier,
        })
    }

    /// Issues a sign-in challenge for a device (replacing any earlier one:
    /// one pending challenge per device, so the map is bounded by the
    /// number of registered devices).
    pub fn challenge(&self, device: DeviceId) -> [u8; 32] {
        let c = random32();
        self.challenges
            .lock()
            .expect("challenge lock")
            .insert(device, (c, Instant::now()));
        c
    }

    /// Consumes a device's challenge: true if `challenge` is the one issued
    /// and it is fresh (compared in constant time).
    pub fn take_challenge(&self, challenge: &[u8; 32], device: DeviceId) -> bool {
        use subtle::ConstantTimeEq;
        let ttl = Duration::from_secs(self.config.limits.challenge_secs);
        let mut map = self.challenges.lock().expect("challenge lock");
        match map.remove(&device) {
            Some((c, t)) => bool::from(c.ct_eq(challenge)) && t.elapsed() < ttl,
            None => false,
        }
    }

    /// Resolves the bearer token of a request: the header `Authorization:
    /// Bearer`, or, for a browser opening a WebSocket (which cannot set
    /// that header), the subprotocol `amicus.bearer.<token>` offered beside
    /// [`WS_PROTOCOL`]. Never a URL: URLs end in proxies' logs.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .get_all("sec-websocket-protocol")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .find_map(|p| p.trim().strip_prefix(WS_BEARER))
                    .map(str::to_owned)
            })
            .ok_or(ApiError::Unauthenticated)?;
        let session: SessionRecord = self
            .store
            .session(secret_hash(&token))?
            .ok_or(ApiError::Unauthenticated)?;
        // A revoked device's sessions are deleted with its revocation; one
        // made in the same instant is refused here.
        if session.expires < now() || self.store.revocation(session.device)?.is_some() {
            return Err(ApiError::Unauthenticated);
        }
        Ok(Caller {
            user: session.user,
            device: session.device,
        })
    }

    /// Takes one token from the device's bucket, or says how long to wait.
    pub fn rate(&self, device: DeviceId) -> Result<(), u32> {
        let limits = &self.config.limits;
        let rate = f64::from(limits.rate_per_second.max(1));
        let burst = f64::from(limits.rate_burst.max(1));
        let mut map = self.rates.lock().expect("rate lock");
        if map.len() > 100_000 {
            map.retain(|_, b| b.at.elapsed() < Duration::from_secs(60));
        }
        let now = Instant::now();
        let taken = map
            .entry(device)
            .or_insert_with(|| Bucket::full(now, burst))
            .take(now, rate, burst);
        if taken.is_err() {
            self.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Takes one token from the bucket named `key` (an address, a drop
    /// box), filled at `rate` per second up to `burst`; the error says how
    /// long to wait. For the routes that need no account.
    pub fn rate_anonymous(&self, key: &[u8], rate: f64, burst: f64) -> Result<(), ApiError> {
        let mut map = self.anonymous.lock().expect("rate lock");
        let now = Instant::now();
        if map.len() > 100_000 {
            // Full buckets say nothing; if that is not enough (a flood
            // from more addresses than that), forget them all rather than
            // grow without bound.
            map.retain(|_, b| b.full_at > now);
            if map.len() > 100_000 {
                // Addresses only: a box's submissions per hour stay counted.
                map.retain(|key, _| !key.starts_with(b"addr"));
            }
        }
        let taken = map
            .entry(key.to_vec())
            .or_insert_with(|| Bucket::full(now, burst))
            .take(now, rate, burst);
        if taken.is_err() {
            self.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        taken.map_err(ApiError::RateLimited)
    }

    /// One request from `peer` on a route that needs no account: the
    /// per-address limit (an IPv6 address counts by its /64, what one
    /// subscriber usually holds), one allowance per kind of route, so that
    /// reading the public library from an office's one address does not
    /// use up what a witness there needs to submit, nor the reverse.
    pub fn rate_address(
        &self,
        peer: Option<std::net::SocketAddr>,
        route: Anonymous,
    ) -> Result<(), ApiError> {
        let mut key = b"addr".to_vec();
        key.push(route as u8);
        match peer.map(|p| p.ip().to_canonical()) {
            Some(std::net::IpAddr::V4(v4)) => key.extend_from_slice(&v4.octets()),
            Some(std::net::IpAddr::V6(v6)) => key.extend_from_slice(&v6.octets()[..8]),
            None => {}
        }
        let limits = &self.config.limits;
        self.rate_anonymous(
            &key,
            f64::from(limits.anonymous_rate_per_second.max(1)),
            f64::from(limits.anonymous_rate_burst.max(1)),
        )
    }

    /// The lock of one drop box's records.
    pub fn drop_lock(&self, dropbox: &[u8; 16]) -> std::sync::MutexGuard<'_, ()> {
        self.drops[usize::from(dropbox[0] % 16)]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`Self::rate`] as an API error.
    pub fn rate_api(&self, device: DeviceId) -> Result<(), ApiError> {
        self.rate(device).map_err(ApiError::RateLimited)
    }
}

/// The routes without an account, each with its own allowance per
/// address ([`AppState::rate_address`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anonymous {
    /// Reading public libraries: documents, files, search, aggregates.
    Read = 0,
    /// Drop boxes: what a witness's page or `curl` sends.
    Drop = 1,
}

/// Counters exported at `/metrics` in the Prometheus text format.
#[derive(Default)]
pub struct Metrics {
    /// HTTP requests answered.
    pub http_requests: AtomicU64,
    /// Log entries appended.
    pub appends: AtomicU64,
    /// Writes of queued appends (each one transaction and one flush for
    /// every entry of a space decided together).
    pub append_batches: AtomicU64,
    /// Appends refused (any reason).
    pub refusals: AtomicU64,
    /// Commits refused because another took the epoch.
    pub commit_conflicts: AtomicU64,
    /// Live frames delivered to subscribers.
    pub delivered: AtomicU64,
    /// Log entries read from the store and sent to catch up a subscription.
    pub log_entries_served: AtomicU64,
    /// Connections closed because their send queue was full.
    pub slow_consumers: AtomicU64,
    /// Requests refused by the rate limiter.
    pub rate_limited: AtomicU64,
    /// Open WebSocket connections.
    pub connections: AtomicU64,
    /// Blobs stored.
    pub blobs_stored: AtomicU64,
    /// Blob bytes received.
    pub blob_bytes_in: AtomicU64,
    /// Blob bytes sent.
    pub blob_bytes_out: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &AtomicU64, &str); 13] = [
            (
                "amicus_http_requests_total",
                "counter",
                &self.http_requests,
                "HTTP requests answered",
            ),
            (
                "amicus_appends_total",
                "counter",
                &self.appends,
                "log entries appended",
            ),
            (
                "amicus_append_batches_total",
                "counter",
                &self.append_batches,
                "writes of appends decided together (group commit)",
            ),
            (
                "amicus_refusals_total",
                "counter",
                &self.refusals,
                "appends refused",
            ),
            (
                "amicus_commit_conflicts_total",
                "counter",
                &self.commit_conflicts,
                "commits that lost their epoch",
            ),
            (
                "amicus_delivered_total",
                "counter",
                &self.delivered,
                "live frames delivered",
            ),
            (
                "amicus_log_entries_served_total",
                "counter",
                &self.log_entries_served,
                "log entries sent to catch up subscriptions",
            ),
            (
                "amicus_slow_consumers_total",
                "counter",
                &self.slow_consumers,
                "connections closed as too slow",
            ),
            (
                "amicus_rate_limited_total",
                "counter",
                &self.rate_limited,
                "requests refused by the rate limiter",
            ),
            (
                "amicus_connections",
                "gauge",
                &self.connections,
                "open WebSocket connections",
            ),
            (
                "amicus_blobs_stored_total",
                "counter",
                &self.blobs_stored,
                "blobs stored",
            ),
            (
                "amicus_blob_bytes_in_total",
                "counter",
                &self.blob_bytes_in,
                "blob bytes received",
            ),
            (
                "amicus_blob_bytes_out_total",
                "counter",
                &self.blob_bytes_out,
                "blob bytes sent",
            ),
        ];
        let mut out = String::new();
        for (name, kind, value, help) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out
    }
}
