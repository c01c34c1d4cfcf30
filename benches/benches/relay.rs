//! Relay: messages delivered per second, delivery latency and memory per
//! connection of a real `amicus serve` on loopback.
//!
//! The server runs as its own process (`target/release/amicus`, built by
//! `cargo xtask bench`), a fresh one per configuration on a scratch data directory, with rate limits
//! raised so that the writer is not throttled. Accounts are registered
//! through the HTTP API (device certificates, signed challenges); a writer
//! creates each confidential space with a real MLS commit adding every
//! subscriber's device. Configurations: 10, 100 and 1,000 WebSocket clients
//! in one space, and the same numbers spread round-robin over 100 spaces
//! (10 clients use 10 spaces, one each). Each client subscribes to its
//! space from the live end of the log.
//!
//! The writer, on one WebSocket, appends 1 KiB envelopes (sealed
//! beforehand with the space's epoch key, so that the clock measures the
//! relay) round-robin over the spaces, keeping 8 appends in flight; the
//! server makes each durable (one flush) before acknowledging and fanning
//! it out. Latency is from the moment the writer sends an append to the
//! moment a subscriber has decoded the entry; throughput is deliveries
//! (entries received by subscribers) per second from the first send to the
//! last delivery. Memory per connection is the growth of the server's
//! resident memory (`VmRSS`) from before the clients connect to after all
//! have subscribed, divided by their number.
//!
//! Baseline, same clients, same frames, same run: a bare tokio-tungstenite
//! fan-out in the benchmark's process (no accounts, no storage, no checks:
//! each frame of the writer is broadcast to the subscribers of its space
//! and acknowledged).
//!
//! The clients run in the benchmark's process: on a 2-core machine they
//! compete with the server for the CPU, as the notes in the report say.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amicus_benches::{fmt_duration, percentile, quick, scratch, write_section};
use amicus_core::envelope::{Header, Kind};
use amicus_core::identity::{Device, Statement, UserIdentity};
use amicus_core::space::{HistoryPolicy, NewMember, Role, Space};
use amicus_core::wire::{AppendItem, ClientFrame, EntryKind, LogEntry, ServerFrame};
use amicus_core::{MessageId, MlsProvider, SpaceId, StreamId, UserId};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WINDOW: usize = 8;
const BODY: usize = 1024;
const DEADLINE: Duration = Duration::from_secs(300);

fn amicus_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("benchmark path");
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target directory")
        .join("amicus");
    assert!(
        bin.exists(),
        "{} is missing: `cargo xtask bench` builds it (or `cargo build --release -p amicus`)",
        bin.display()
    );
    bin
}

/// `amicus serve` on 127.0.0.1:0, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &std::path::Path) -> Self {
        let config = dir.join("relay.toml");
        std::fs::write(
            &config,
            "[limits]\nrate_per_second = 1000000\nrate_burst = 1000000\nidle_timeout_secs = 3600\nsend_queue = 100000\n",
        )
        .expect("config");
        let mut child = Command::new(amicus_bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--registration",
                "open",
                "--data",
            ])
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&config)
            .env("AMICUS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start amicus serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, url }
    }

    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Account {
    identity: UserIdentity,
    device: Device,
    token: String,
}

async fn post(http: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> Value {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let v: Value = resp.json().await.expect("a JSON answer");
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

async fn register(http: &reqwest::Client, base: &str, name: &str) -> Account {
    let identity = UserIdentity::generate(UserId::new(name).expect("a user name"));
    let device = identity.new_device();
    let cert = hex::encode(postcard::to_allocvec(device.certificate()).expect("encodes"));
    post(
        http,
        &format!("{base}/v1/register"),
        None,
        json!({ "certificate": cert }),
    )
    .await;
    let hex_id = device.id().to_hex();
    let c = post(
        http,
        &format!("{base}/v1/challenge"),
        None,
        json!({ "device": hex_id }),
    )
    .await;
    let mut challenge = [0u8; 32];
    hex::decode_to_slice(c["challenge"].as_str().expect("challenge"), &mut challenge).expect("hex");
    let signature = device.sign_statement(Statement::SignIn, &challenge);
    let s = post(
        http,
        &format!("{base}/v1/session"),
        None,
        json!({ "device": hex_id, "challenge": hex::encode(challenge), "signature": hex::encode(signature) }),
    )
    .await;
    Account {
        identity,
        device,
        token: s["token"].as_str().expect("token").to_owned(),
    }
}

async fn connect(url: &str, token: Option<&str>) -> Ws {
    let mut request = url.into_client_request().expect("a WebSocket URL");
    if let Some(t) = token {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .expect("WebSocket");
    ws
}

async fn next_frame(ws: &mut Ws) -> ServerFrame {
    loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                return ServerFrame::decode(&b).expect("a server frame");
            }
            Ok(Some(Ok(Message::Close(f)))) => panic!("the server closed the socket: {f:?}"),
            Ok(Some(Ok(_))) => continue,
            other => panic!("the socket failed: {other:?}"),
        }
    }
}

/// The pre-sealed envelopes of a run and where each goes.
struct Load {
    /// (space index, envelope bytes), in sending order.
    messages: Vec<(usize, Vec<u8>)>,
    /// Message id → index in `messages`.
    index: HashMap<MessageId, usize>,
}

/// What the subscribers saw.
struct Outcome {
    latencies: Vec<Duration>,
    elapsed: Duration,
    deliveries: usize,
}

/// Runs the subscribers' receive loops and the writer; `send` sends the
/// writer's i-th message, `acked` waits for one acknowledgement.
async fn drive<W, Fs, Fa>(
    load: Arc<Load>,
    subscribers: Vec<(usize, Ws)>,
    mut writer: W,
    send: Fs,
    acked: Fa,
) -> Outcome
where
    Fs: AsyncFn(&mut W, usize, &[u8]),
    Fa: AsyncFn(&mut W),
{
    let spaces = subscribers.iter().map(|(s, _)| *s).max().unwrap_or(0) + 1;
    let mut per_space = vec![0usize; spaces];
    for (s, _) in &load.messages {
        per_space[*s] += 1;
    }
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new(
        (0..load.messages.len())
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (space, mut ws) in subscribers {
        let expected = per_space[space];
        let (load, sent_at) = (load.clone(), sent_at.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(expected);
            let mut last = Duration::ZERO;
            while lat.len() < expected {
                if let ServerFrame::Entry { entry, .. } = next_frame(&mut ws).await {
                    let now = t0.elapsed();
                    let header = Header::parse(&entry.payload).expect("an envelope");
                    let i = load.index[&header.message];
                    let sent = Duration::from_nanos(sent_at[i].load(Ordering::Acquire));
                    lat.push(now.saturating_sub(sent));
                    last = now;
                }
            }
            (lat, last, ws)
        }));
    }
    let mut in_flight = 0;
    for (i, (space, bytes)) in load.messages.iter().enumerate() {
        if in_flight == WINDOW {
            acked(&mut writer).await;
            in_flight -= 1;
        }
        sent_at[i].store(t0.elapsed().as_nanos() as u64, Ordering::Release);
        send(&mut writer, *space, bytes).await;
        in_flight += 1;
    }
    for _ in 0..in_flight {
        acked(&mut writer).await;
    }
    let mut latencies = Vec::new();
    let mut end = Duration::ZERO;
    for t in tasks {
        let (lat, last, ws) = t.await.expect("a subscriber");
        latencies.extend(lat);
        end = end.max(last);
        drop(ws);
    }
    latencies.sort();
    Outcome {
        deliveries: latencies.len(),
        latencies,
        elapsed: end,
    }
}

/// A bare WebSocket fan-out: the first frame of a connection is its space
/// (4 bytes) for a subscriber, or `w` for the writer, whose frames are
/// `space (4 bytes) || frame` and are acknowledged by an empty frame.
async fn bare_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let channels: Arc<Vec<broadcast::Sender<Arc<Vec<u8>>>>> =
        Arc::new((0..100).map(|_| broadcast::channel(1 << 16).0).collect());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let channels = channels.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let Some(Ok(Message::Binary(first))) = ws.next().await else {
                    return;
                };
                if first.as_ref() == b"w" {
                    while let Some(Ok(Message::Binary(b))) = ws.next().await {
                        let space =
                            u32::from_be_bytes(b[..4].try_into().expect("4 bytes")) as usize;
                        let _ = channels[space].send(Arc::new(b[4..].to_vec()));
                        if ws.send(Message::Binary(Vec::new().into())).await.is_err() {
                            return;
                        }
                    }
                } else {
                    let space =
                        u32::from_be_bytes(first[..4].try_into().expect("4 bytes")) as usize;
                    let mut rx = channels[space].subscribe();
                    let _ = ws.send(Message::Binary(Vec::new().into())).await;
                    while let Ok(frame) = rx.recv().await {
                        if ws
                            .send(Message::Binary(frame.to_vec().into()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("ws://{addr}")
}

/// One configuration's numbers.
struct Row {
    clients: usize,
    spaces: usize,
    appends: usize,
    amicus: Outcome,
    bare: Outcome,
    rss_per_connection: f64,
}

struct Writer {
    ws: Ws,
    next_request: u32,
}

async fn writer_append(w: &mut Writer, space: SpaceId, item: AppendItem) -> u32 {
    w.next_request += 1;
    let frame = ClientFrame::Append {
        request: w.next_request,
        space,
        item,
    };
    w.ws.send(Message::Binary(frame.encode().into()))
        .await
        .expect("send");
    w.next_request
}

async fn writer_answer(w: &mut Writer) -> (u64, [u8; 32]) {
    loop {
        match next_frame(&mut w.ws).await {
            ServerFrame::Accepted { seq, hash, .. } => return (seq, hash),
            ServerFrame::Refused { code, message, .. } => {
                panic!("the append was refused: {code:?}: {message}")
            }
            _ => continue,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn configuration(
    server: &Server,
    http: &reqwest::Client,
    writer_account: &Account,
    accounts: &[Account],
    clients: usize,
    spaces_wanted: usize,
    appends: usize,
) -> Row {
    let base = &server.url;
    let ws_url = format!("ws://{}/v1/ws", base.trim_start_matches("http://"));
    let spaces = spaces_wanted.min(clients);
    let provider = MlsProvider::new();
    let pool = MlsProvider::new();
    let mut writer = Writer {
        ws: connect(&ws_url, Some(&writer_account.token)).await,
        next_request: 0,
    };
    // Spaces, each with a commit adding its subscribers.
    let mut made = Vec::new();
    for s in 0..spaces {
        let mut space = Space::create(
            &provider,
            &writer_account.device,
            writer_account.identity.public(),
            HistoryPolicy::Full,
        )
        .expect("create");
        post(
            http,
            &format!("{base}/v1/spaces"),
            Some(&writer_account.token),
            json!({ "id": space.id().to_hex(), "kind": "confidential" }),
        )
        .await;
        let members: Vec<NewMember> = accounts[..clients]
            .iter()
            .enumerate()
            .filter(|(i, _)| i % spaces == s)
            .map(|(_, a)| NewMember {
                user: a.device.user().clone(),
                identity_key: a.identity.public(),
                role: Role::Contributor,
                key_packages: a.device.key_packages(&pool, 1).expect("a KeyPackage"),
                revoked: Vec::new(),
            })
            .collect();
        let id = space.id();
        let pending = space
            .add_members(
                &provider,
                &writer_account.device,
                &members,
                (0, amicus_core::wire::genesis(id)),
            )
            .expect("add");
        writer_append(
            &mut writer,
            id,
            AppendItem::Commit {
                epoch: space.epoch(),
                commit: pending.commit,
                welcome: pending.welcome,
                aad: pending.aad.to_bytes(),
            },
        )
        .await;
        writer_answer(&mut writer).await;
        space.commit_accepted(&provider).expect("merge");
        made.push(space);
    }
    // The envelopes, sealed before the clock starts.
    let streams: Vec<StreamId> = (0..spaces).map(|_| StreamId::random()).collect();
    let body = vec![0x5Au8; BODY];
    let mut messages = Vec::with_capacity(appends);
    let mut index = HashMap::with_capacity(appends);
    for i in 0..appends {
        let s = i % spaces;
        let envelope = made[s]
            .keyring()
            .seal(
                &writer_account.device,
                Kind::Change,
                streams[s],
                i as u64 + 1,
                [0; 32],
                &body,
            )
            .expect("seal");
        index.insert(Header::parse(&envelope).expect("header").message, i);
        messages.push((s, envelope));
    }
    let load = Arc::new(Load { messages, index });

    // Subscribers, from the live end of their space's log.
    let rss_before = server.rss();
    let mut subscribers = Vec::with_capacity(clients);
    for (i, a) in accounts[..clients].iter().enumerate() {
        let s = i % spaces;
        let mut ws = connect(&ws_url, Some(&a.token)).await;
        let frame = ClientFrame::Subscribe {
            request: 1,
            space: made[s].id(),
            from_seq: 1,
        };
        ws.send(Message::Binary(frame.encode().into()))
            .await
            .expect("subscribe");
        loop {
            match next_frame(&mut ws).await {
                ServerFrame::Synced { .. } => break,
                ServerFrame::Refused { message, .. } => panic!("subscribe refused: {message}"),
                _ => continue,
            }
        }
        subscribers.push((s, ws));
    }
    let rss_after = server.rss();
    let rss_per_connection = rss_after.saturating_sub(rss_before) as f64 / clients as f64;

    let ids: Vec<SpaceId> = made.iter().map(Space::id).collect();
    let amicus = drive(
        load.clone(),
        subscribers,
        writer,
        async |w: &mut Writer, s: usize, bytes: &[u8]| {
            writer_append(w, ids[s], AppendItem::Envelope(bytes.to_vec())).await;
        },
        async |w: &mut Writer| {
            writer_answer(w).await;
        },
    )
    .await;

    // The bare fan-out, same frames.
    let bare_url = bare_server().await;
    let mut bare_subs = Vec::with_capacity(clients);
    for i in 0..clients {
        let s = i % spaces;
        let mut ws = connect(&bare_url, None).await;
        ws.send(Message::Binary((s as u32).to_be_bytes().to_vec().into()))
            .await
            .expect("subscribe");
        let _ = ws.next().await;
        bare_subs.push((s, ws));
    }
    let mut bare_writer = connect(&bare_url, None).await;
    bare_writer
        .send(Message::Binary(b"w".to_vec().into()))
        .await
        .expect("writer");
    let frames: Vec<Vec<u8>> = load
        .messages
        .iter()
        .enumerate()
        .map(|(i, (s, bytes))| {
            let mut f = (*s as u32).to_be_bytes().to_vec();
            f.extend_from_slice(
                &ServerFrame::Entry {
                    space: ids[*s],
                    entry: LogEntry {
                        seq: i as u64,
                        prev: [0; 32],
                        kind: EntryKind::Envelope,
                        epoch: 1,
                        payload: bytes.clone(),
                    },
                }
                .encode(),
            );
            f
        })
        .collect();
    let frames = &frames;
    let counter = std::cell::Cell::new(0usize);
    let bare = drive(
        load.clone(),
        bare_subs,
        bare_writer,
        async |w: &mut Ws, _s: usize, _bytes: &[u8]| {
            let i = counter.get();
            counter.set(i + 1);
            w.send(Message::Binary(frames[i].clone().into()))
                .await
                .expect("send");
        },
        async |w: &mut Ws| loop {
            if let Some(Ok(Message::Binary(_))) = w.next().await {
                break;
            }
        },
    )
    .await;
    Row {
        clients,
        spaces,
        appends,
        amicus,
        bare,
        rss_per_connection,
    }
}

fn main() {
    let q = quick();
    let counts: Vec<usize> = if q { vec![10] } else { vec![10, 100, 1_000] };
    let appends = if q { 50 } else { 1_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // A fresh server and accounts per configuration, so that each one's
    // memory growth is its own (freed memory is not given back to the
    // system and would be reused by the next configuration's connections).
    let rows: Vec<Row> = rt.block_on(async {
        let http = reqwest::Client::new();
        let mut rows = Vec::new();
        for &spaces in &[1usize, 100] {
            for &n in &counts {
                eprintln!("relay: {n} clients over {} space(s)", spaces.min(n));
                let dir = scratch();
                let server = Server::start(dir.path());
                let writer = register(&http, &server.url, "writer").await;
                let mut accounts = Vec::with_capacity(n);
                let names: Vec<String> = (0..n).map(|i| format!("reader-{i}")).collect();
                for chunk in names.chunks(50) {
                    let batch = futures_util::future::join_all(
                        chunk.iter().map(|name| register(&http, &server.url, name)),
                    )
                    .await;
                    accounts.extend(batch);
                }
                rows.push(
                    configuration(&server, &http, &writer, &accounts, n, spaces, appends).await,
                );
            }
        }
        rows
    });

    let mut md = String::from("## Relay\n\n");
    md.push_str(&format!(
        "A real `amicus serve` (its own process, a fresh one per configuration, sled store on the scratch directory, log level `warn`) on loopback; {appends} envelopes of 1 KiB appended by one writer over one WebSocket with {WINDOW} appends in flight, each made durable (one flush) before it is acknowledged and fanned out; the subscribers are WebSocket clients in the benchmark's process, subscribed from the live end of their space's log. Clients spread over 100 spaces are assigned round-robin (fewer clients than spaces: one space each). Latency: from the writer sending the append to a subscriber decoding the entry. Baseline, same clients and frames in the same run: a bare tokio-tungstenite broadcast in the benchmark's process (no accounts, no storage, no checks; Nagle off on both ends, as in the server). Both the server and the clients share this machine's cores. One run per configuration.\n\n"
    ));
    md.push_str("| clients | spaces | deliveries | amicus deliveries/s | p50 | p99 | bare fan-out deliveries/s | p50 | p99 | amicus throughput vs bare | server memory per connection |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut raw = Vec::new();
    for r in &rows {
        let rate = |o: &Outcome| o.deliveries as f64 / o.elapsed.as_secs_f64();
        let (a, b) = (rate(&r.amicus), rate(&r.bare));
        md.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {:.0} | {} | {} | {:.2}× | {:.1} KiB |\n",
            r.clients,
            r.spaces,
            r.amicus.deliveries,
            a,
            fmt_duration(percentile(&r.amicus.latencies, 50.0)),
            fmt_duration(percentile(&r.amicus.latencies, 99.0)),
            b,
            fmt_duration(percentile(&r.bare.latencies, 50.0)),
            fmt_duration(percentile(&r.bare.latencies, 99.0)),
            a / b,
            r.rss_per_connection / 1024.0,
        ));
        let ns = |d: Duration| d.as_nanos() as u64;
        raw.push(json!({
            "clients": r.clients, "spaces": r.spaces, "appends": r.appends,
            "amicus": { "deliveries": r.amicus.deliveries, "elapsed_ns": ns(r.amicus.elapsed),
                "p50_ns": ns(percentile(&r.amicus.latencies, 50.0)), "p99_ns": ns(percentile(&r.amicus.latencies, 99.0)) },
            "bare": { "deliveries": r.bare.deliveries, "elapsed_ns": ns(r.bare.elapsed),
                "p50_ns": ns(percentile(&r.bare.latencies, 50.0)), "p99_ns": ns(percentile(&r.bare.latencies, 99.0)) },
            "server_rss_per_connection_bytes": r.rss_per_connection,
        }));
    }
    md.push_str("\nEvery append is durable before it is answered and fanned out. The appends the writer has in flight to one space while a write runs are decided together and written in one transaction and one flush (group commit); appends to different spaces share the store's flushes (see Store). Memory per connection is the server's resident-set growth while the clients connect and subscribe (send queue, socket buffers, subscription), divided by their number.\n");
    write_section("relay", &md, &json!({ "rows": raw }));
}
