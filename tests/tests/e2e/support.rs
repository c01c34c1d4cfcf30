//! A real `amicus serve` process on 127.0.0.1:0 and native clients.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use amicus_cli::Client;
use amicus_core::wire::ServerFrame;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const PASS: &[u8] = b"correct horse battery staple";
/// The close code of a connection that did not read fast enough.
pub const CLOSE_TOO_SLOW: u16 = amicus_server::ws::CLOSE_TOO_SLOW;

/// The `amicus` binary built beside this test.
pub fn amicus_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("amicus");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test`, or `cargo build --release -p amicus` before the tests",
        bin.display()
    );
    bin
}

/// Runs the `amicus` command with `--json` on a home (whose client must
/// be closed meanwhile); its output, parsed.
pub fn amicus_json(home: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(amicus_bin())
        .arg("--home")
        .arg(home)
        .arg("--json")
        .args(args)
        .env("AMICUS_PASSPHRASE", std::str::from_utf8(PASS).unwrap())
        .output()
        .expect("run amicus");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "amicus {args:?}: {said}");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Runs the `amicus` command on a home (whose client must be closed
/// meanwhile) expecting it to refuse; what it said on stderr.
pub fn amicus_refused(home: &Path, args: &[&str]) -> String {
    let out = Command::new(amicus_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("AMICUS_PASSPHRASE", std::str::from_utf8(PASS).unwrap())
        .output()
        .expect("run amicus");
    assert!(!out.status.success(), "amicus {args:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A space `owner` creates with `member` in it as a contributor, and a
/// filing "Requête" holding "Exposé des faits.".
pub async fn shared_filing(
    owner: &mut Client,
    member: &str,
) -> (amicus_core::SpaceId, amicus_core::StreamId) {
    let space = owner.create_space().await.unwrap();
    owner
        .invite(space, member, amicus_core::space::Role::Contributor)
        .await
        .unwrap();
    let doc = owner.new_document(space, "Requête").await.unwrap();
    owner
        .edit(
            space,
            doc,
            &[amicus_cli::Edit::Insert(None, "Exposé des faits.".into())],
        )
        .await
        .unwrap();
    (space, doc)
}

/// A server process.
pub struct Server {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `amicus serve` on `data` (open registration), its logs in `data/../server-N.log`.
    pub fn start(data: &Path) -> Self {
        Self::start_with(data, "")
    }

    /// Starts `amicus serve` with a configuration file holding `config` (TOML).
    pub fn start_with(data: &Path, config: &str) -> Self {
        Self::start_at(data, config, "127.0.0.1:0")
    }

    /// Starts `amicus serve` listening on `listen` (to restart a server at
    /// the address its clients know).
    pub fn start_at(data: &Path, config: &str, listen: &str) -> Self {
        Self::start_args(data, config, listen, &[])
    }

    /// Starts `amicus serve` with more arguments (`--tls-cert` …).
    pub fn start_args(data: &Path, config: &str, listen: &str, extra: &[&std::ffi::OsStr]) -> Self {
        let log = data.with_extension(format!("{}.log", std::process::id() ^ rand_u32()));
        let config_path = data.with_extension("toml");
        std::fs::write(&config_path, config).expect("config file");
        // Open registration unless the configuration chooses.
        let registration: &[&str] = if config.contains("registration") {
            &[]
        } else {
            &["--registration", "open"]
        };
        let child = Command::new(amicus_bin())
            .args(["serve", "--listen", listen])
            .args(registration)
            .arg("--data")
            .arg(data)
            .arg("--config")
            .arg(&config_path)
            .args(extra)
            .env("AMICUS_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start amicus serve");
        let mut server = Self {
            child,
            url: String::new(),
            log,
        };
        let stdout = server.child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the address");
        server.url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM: graceful shutdown (flushes the store).
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                assert!(s.success(), "the server exited with {s}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A counter or gauge from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_u32() -> u32 {
    u32::from_le_bytes(amicus_core::MessageId::random().0[..4].try_into().unwrap())
}

/// Registers a user with its first device in `root/<name>`.
pub async fn register(root: &Path, server: &Server, name: &str) -> Client {
    Client::register(&root.join(name), PASS, &server.url, name, None)
        .await
        .unwrap_or_else(|e| panic!("register {name}: {e}"))
}

/// Peak resident memory (VmHWM) of a running process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// True when the long variants of the crash, load and fuzz tests are asked
/// for (`AMICUS_LONG=1`).
pub fn long() -> bool {
    std::env::var("AMICUS_LONG").is_ok_and(|v| v == "1")
}

/// A numeric setting from the environment, else `default`.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a valid number")),
        Err(_) => default,
    }
}

/// A raw WebSocket to the server (for frames no client sends).
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(server: &Server, token: Option<&str>) -> Result<Ws, String> {
    let url = format!("ws://{}/v1/ws", server.url.trim_start_matches("http://"));
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// The next frame the server sends.
pub async fn answer(ws: &mut Ws) -> ServerFrame {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return ServerFrame::decode(&b).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

/// A `Change` envelope of `space` in epoch 0, `len` bytes long (or just
/// long enough): a valid clear header (what the server checks) and an
/// opaque body ending with `tag`'s bytes (the server cannot open it, and
/// need not).
pub fn opaque_change(space: amicus_core::SpaceId, len: usize, tag: u32) -> Vec<u8> {
    use amicus_core::envelope::{Header, Kind};
    use amicus_core::{MessageId, StreamId};
    let header = Header {
        kind: Kind::Change,
        space,
        stream: StreamId::random(),
        epoch: 0,
        message: MessageId::random(),
        nonce: [0; 24],
    };
    let mut envelope = header.to_bytes().to_vec();
    envelope.resize(len.saturating_sub(4).max(envelope.len()), 0xa5);
    envelope.extend_from_slice(&tag.to_be_bytes());
    envelope
}

/// A connection with `token`, subscribed to `space` from the live end of
/// its log; the log's next position.
pub async fn subscribed(server: &Server, token: &str, space: amicus_core::SpaceId) -> (Ws, u64) {
    use amicus_core::wire::ClientFrame;
    use futures_util::SinkExt;
    let mut ws = connect(server, Some(token)).await.unwrap();
    ws.send(Message::Binary(
        ClientFrame::Subscribe {
            request: 1,
            space,
            from_seq: u64::MAX,
        }
        .encode()
        .into(),
    ))
    .await
    .unwrap();
    match answer(&mut ws).await {
        ServerFrame::Synced { next_seq, .. } => (ws, next_seq),
        other => panic!("the subscription is answered with Synced, not {other:?}"),
    }
}
