//! A misbehaving relay: a test double that stands between one client and
//! the real server and does what a seized or malicious server could do to
//! that client's traffic.
//!
//! It forwards HTTP requests and the WebSocket to the real server, and
//! passes every frame and answer through hooks the test sets:
//! - [`Relay::down`] sees each frame going to the client and returns what
//!   to deliver instead (nothing to drop, two to duplicate, later to
//!   reorder);
//! - [`Relay::http`] may rewrite the body of any HTTP answer (a substituted
//!   KeyPackage or directory listing, a swapped blob);
//! - [`Relay::up`] sees each frame the client sends and forwards it or
//!   drops it (a lost request);
//! - a [`Shadow`] log serves a chosen space from a log the relay keeps
//!   itself, from some position on: the client sees a consistent hash chain
//!   that is not the real server's (a replayed entry, a fork shared by the
//!   relays of several clients).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use amicus_core::SpaceId;
use amicus_core::wire::{AppendItem, ClientFrame, EntryKind, LogEntry, ServerFrame};
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// What the relay does with a frame the client sent.
enum Upward {
    /// Pass it to the server.
    Forward(ClientFrame),
    /// Do not pass it; answer the client with these frames.
    Answer(Vec<ServerFrame>),
}

type DownHook = Box<dyn FnMut(ServerFrame) -> Vec<ServerFrame> + Send>;
/// A frame from the client → forward it (`Some`) or drop it (`None`).
type UpHook = Box<dyn FnMut(ClientFrame) -> Option<ClientFrame> + Send>;
/// (method, path, status, body) → new body.
type HttpHook = Box<dyn FnMut(&str, &str, u16, Vec<u8>) -> Vec<u8> + Send>;

#[derive(Default)]
struct Hooks {
    down: Option<DownHook>,
    up: Option<UpHook>,
    http: Option<HttpHook>,
    shadow: Option<Arc<Mutex<Shadow>>>,
}

/// Lock order: `hooks`, then a shadow, then `clients`.
struct Shared {
    upstream: String,
    hooks: Mutex<Hooks>,
    /// Writers of the client connections open through this relay.
    clients: Mutex<Vec<mpsc::UnboundedSender<ServerFrame>>>,
    http: reqwest::Client,
}

/// A relay in front of the server at `upstream`, on 127.0.0.1:0.
pub struct Relay {
    /// Where the client should connect (`http://127.0.0.1:port`).
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Starts a relay that forwards everything unchanged.
    pub async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            hooks: Mutex::new(Hooks::default()),
            clients: Mutex::new(Vec::new()),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .route("/v1/ws", axum::routing::get(websocket))
            .fallback(forward)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// Every frame to the client goes through `hook` (replacing any before).
    pub fn down(&self, hook: impl FnMut(ServerFrame) -> Vec<ServerFrame> + Send + 'static) {
        self.shared.hooks.lock().unwrap().down = Some(Box::new(hook));
    }

    /// Every frame from the client goes through `hook`.
    pub fn up(&self, hook: impl FnMut(ClientFrame) -> Option<ClientFrame> + Send + 'static) {
        self.shared.hooks.lock().unwrap().up = Some(Box::new(hook));
    }

    /// Every HTTP answer's body goes through `hook`.
    pub fn http(&self, hook: impl FnMut(&str, &str, u16, Vec<u8>) -> Vec<u8> + Send + 'static) {
        self.shared.hooks.lock().unwrap().http = Some(Box::new(hook));
    }

    /// Serves `shadow`'s space from the shadow log from its base on.
    pub fn shadow(&self, shadow: &Arc<Mutex<Shadow>>) {
        let mut hooks = self.shared.hooks.lock().unwrap();
        hooks.shadow = Some(shadow.clone());
        shadow
            .lock()
            .unwrap()
            .relays
            .push(Arc::downgrade(&self.shared));
    }

    /// Behaves honestly again.
    pub fn honest(&self) {
        let mut hooks = self.shared.hooks.lock().unwrap();
        hooks.down = None;
        hooks.up = None;
        hooks.http = None;
        hooks.shadow = None;
    }
}

/// A log the relays keep for one space from position `base` on, in place
/// of the server's: entries the relays' clients append go there (answered
/// by the relay, never reaching the server), and the server's own entries
/// from `base` on are hidden from those clients.
pub struct Shadow {
    space: SpaceId,
    base: u64,
    epoch: u64,
    head: [u8; 32],
    entries: Vec<LogEntry>,
    relays: Vec<std::sync::Weak<Shared>>,
}

impl Shadow {
    /// A shadow of `space` diverging after the server's entry `base - 1`
    /// (whose chained hash is `head`), in epoch `epoch`.
    pub fn new(space: SpaceId, base: u64, head: [u8; 32], epoch: u64) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            space,
            base,
            epoch,
            head,
            entries: Vec::new(),
            relays: Vec::new(),
        }))
    }

    /// The next position of the shadow log.
    pub fn next_seq(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Appends an entry (labelled `epoch`) and delivers it to every client
    /// of the relays serving this shadow; returns its position and hash.
    pub fn push(&mut self, kind: EntryKind, epoch: u64, payload: Vec<u8>) -> (u64, [u8; 32]) {
        let seq = self.next_seq();
        let entry = LogEntry {
            seq,
            prev: self.head,
            kind,
            epoch,
            payload,
        };
        let hash = entry.hash();
        self.head = hash;
        if kind == EntryKind::Commit {
            self.epoch = epoch + 1;
        }
        let frame = ServerFrame::Entry {
            space: self.space,
            entry: entry.clone(),
        };
        self.entries.push(entry);
        for relay in self.relays.iter().filter_map(std::sync::Weak::upgrade) {
            for client in relay.clients.lock().unwrap().iter() {
                let _ = client.send(frame.clone());
            }
        }
        (seq, hash)
    }

    /// The current epoch of the shadow log.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Entries a subscription from `from` must see after the server's part.
    fn catch_up(&self, from: u64) -> Vec<ServerFrame> {
        self.entries
            .iter()
            .filter(|e| e.seq >= from)
            .map(|e| ServerFrame::Entry {
                space: self.space,
                entry: e.clone(),
            })
            .collect()
    }

    /// Answers an append of the client instead of the server.
    fn append(&mut self, request: u32, item: AppendItem) -> ServerFrame {
        let (kind, epoch, payload) = match item {
            AppendItem::Commit { epoch, commit, .. } => (EntryKind::Commit, epoch, commit),
            AppendItem::Envelope(e) => (EntryKind::Envelope, self.epoch, e),
            AppendItem::Proposal(p) => (EntryKind::Proposal, self.epoch, p),
            AppendItem::Application(_) => {
                return ServerFrame::Accepted {
                    request,
                    seq: self.next_seq(),
                    hash: self.head,
                };
            }
        };
        let (seq, hash) = self.push(kind, epoch, payload);
        ServerFrame::Accepted { request, seq, hash }
    }
}

/// Frames from the server to the client: the shadow log first, then the
/// `down` hook.
fn downward(
    shared: &Shared,
    frame: ServerFrame,
    from: &mut HashMap<SpaceId, u64>,
) -> Vec<ServerFrame> {
    let mut hooks = shared.hooks.lock().unwrap();
    let mut frames = vec![frame];
    if let Some(shadow) = hooks.shadow.clone() {
        let shadow = shadow.lock().unwrap();
        frames = frames
            .into_iter()
            .flat_map(|f| match f {
                ServerFrame::Entry { space, entry }
                    if space == shadow.space && entry.seq >= shadow.base =>
                {
                    Vec::new()
                }
                ServerFrame::Synced { space, epoch, .. } if space == shadow.space => {
                    let mut out = shadow.catch_up(from.get(&space).copied().unwrap_or(0));
                    out.push(ServerFrame::Synced {
                        space,
                        next_seq: shadow.next_seq(),
                        head: shadow.head,
                        epoch: epoch.min(shadow.epoch),
                    });
                    out
                }
                other => vec![other],
            })
            .collect();
    }
    match hooks.down.as_mut() {
        Some(hook) => frames.into_iter().flat_map(hook).collect(),
        None => frames,
    }
}

/// A frame from the client: the shadow log answers appends to its space,
/// then the `up` hook.
fn upward(shared: &Shared, frame: ClientFrame, from: &mut HashMap<SpaceId, u64>) -> Upward {
    let hooks = shared.hooks.lock().unwrap();
    if let ClientFrame::Subscribe {
        space, from_seq, ..
    } = &frame
    {
        from.insert(*space, *from_seq);
    }
    if let Some(shadow) = hooks.shadow.clone() {
        let mut shadow = shadow.lock().unwrap();
        if let ClientFrame::Append {
            request,
            space,
            item,
        } = frame
        {
            if space == shadow.space {
                // The relay's own clients get the entry through `push`.
                let accepted = shadow.append(request, item);
                return Upward::Answer(vec![accepted]);
            }
            return upward_hook(
                hooks,
                ClientFrame::Append {
                    request,
                    space,
                    item,
                },
            );
        }
    }
    upward_hook(hooks, frame)
}

fn upward_hook(mut hooks: std::sync::MutexGuard<'_, Hooks>, frame: ClientFrame) -> Upward {
    match hooks.up.as_mut() {
        Some(hook) => match hook(frame) {
            Some(f) => Upward::Forward(f),
            None => Upward::Answer(Vec::new()),
        },
        None => Upward::Forward(frame),
    }
}

async fn websocket(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let url = format!(
        "ws://{}/v1/ws",
        shared.upstream.trim_start_matches("http://")
    );
    let mut request = url.into_client_request().unwrap();
    // The session: a native client's header, or a browser's subprotocol.
    for name in ["authorization", "sec-websocket-protocol"] {
        if let Some(value) = headers.get(name) {
            request.headers_mut().insert(name, value.clone());
        }
    }
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(amicus_core::wire::MAX_FRAME_LEN + 1024))
        .max_frame_size(Some(amicus_core::wire::MAX_FRAME_LEN + 1024));
    let upstream =
        match tokio_tungstenite::connect_async_with_config(request, Some(config), false).await {
            Ok((ws, _)) => ws,
            Err(_) => return StatusCode::UNAUTHORIZED.into_response(),
        };
    upgrade
        .protocols(["amicus.v1"])
        .max_message_size(amicus_core::wire::MAX_FRAME_LEN + 1024)
        .on_upgrade(move |client| pump(shared, client, upstream))
}

async fn pump(
    shared: Arc<Shared>,
    client: WebSocket,
    upstream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut up_tx, mut up_rx) = upstream.split();
    let (to_client, mut outgoing) = mpsc::unbounded_channel::<ServerFrame>();
    shared.clients.lock().unwrap().push(to_client.clone());
    let from = Arc::new(Mutex::new(HashMap::new()));

    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            let bytes = frame.encode();
            if client_tx
                .send(AxMessage::Binary(bytes.into()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let down = {
        let shared = shared.clone();
        let to_client = to_client.clone();
        let from = from.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = up_rx.next().await {
                let Message::Binary(bytes) = message else {
                    continue;
                };
                let Ok(frame) = ServerFrame::decode(&bytes) else {
                    continue;
                };
                let frames = downward(&shared, frame, &mut from.lock().unwrap());
                for f in frames {
                    let _ = to_client.send(f);
                }
            }
        })
    };
    while let Some(Ok(message)) = client_rx.next().await {
        let AxMessage::Binary(bytes) = message else {
            continue;
        };
        let Ok(frame) = ClientFrame::decode(&bytes) else {
            continue;
        };
        let decision = upward(&shared, frame, &mut from.lock().unwrap());
        match decision {
            Upward::Forward(frame) => {
                if up_tx
                    .send(Message::Binary(frame.encode().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Upward::Answer(frames) => {
                for f in frames {
                    let _ = to_client.send(f);
                }
            }
        }
    }
    down.abort();
    writer.abort();
    let _ = up_tx.close().await;
}

/// Every other request: forwarded, its answer's body through the `http`
/// hook (and a shadowed space's `next_seq` taken from the shadow log).
async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers = request.headers().clone();
    let body: Bytes = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let mut upstream = shared
        .http
        .request(method.clone(), format!("{}{path}", shared.upstream))
        .body(body);
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name) {
            upstream = upstream.header(name, v.clone());
        }
    }
    let Ok(answer) = upstream.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let content_type = answer.headers().get("content-type").cloned();
    let mut bytes = answer.bytes().await.unwrap_or_default().to_vec();
    {
        let mut hooks = shared.hooks.lock().unwrap();
        if let Some(shadow) = hooks.shadow.clone() {
            let shadow = shadow.lock().unwrap();
            if method == "GET"
                && path == format!("/v1/spaces/{}", shadow.space.to_hex())
                && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes)
            {
                v["next_seq"] = shadow.next_seq().into();
                bytes = serde_json::to_vec(&v).unwrap();
            }
        }
        if let Some(hook) = hooks.http.as_mut() {
            bytes = hook(method.as_str(), &path, status.as_u16(), bytes);
        }
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert("content-type", ct);
    }
    response
}
