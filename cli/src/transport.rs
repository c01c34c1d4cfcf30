//! The client's two transports: JSON over HTTP (reqwest) and binary frames
//! over one WebSocket (tokio-tungstenite), both in the clear to an
//! `http://` address (a local server, a tunnel) or over TLS to an
//! `https://` one (rustls, with the system's roots and those given by
//! [`trust_certificates`]).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use amicus_core::transfer::HttpFailure;
use amicus_core::wire::{ClientFrame, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::ClientError;

/// What went wrong with a request, with its causes (a refused certificate
/// is a cause of "error sending request"), without the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Roots trusted besides the system's, for this process (`--ca-cert`).
static EXTRA_ROOTS: OnceLock<Vec<rustls_pki_types::CertificateDer<'static>>> = OnceLock::new();

/// Trusts the certificates of a PEM file as roots, besides the system's,
/// for every `https://` server this process reaches (a server with a
/// certificate of the organisation's own authority). Once per process;
/// returns how many certificates the file holds.
pub fn trust_certificates(pem: &Path) -> Result<usize, ClientError> {
    use rustls_pki_types::pem::PemObject;
    let unreadable = |e: &dyn std::fmt::Display| {
        ClientError::Usage(format!(
            "cannot read the certificates of {}: {e}",
            pem.display()
        ))
    };
    let certificates = rustls_pki_types::CertificateDer::pem_file_iter(pem)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if certificates.is_empty() {
        return Err(unreadable(&"no certificate in the file"));
    }
    let n = certificates.len();
    EXTRA_ROOTS
        .set(certificates)
        .map_err(|_| ClientError::Usage("extra roots are set once per process".into()))?;
    Ok(n)
}

/// The TLS settings of every `https://` and `wss://` connection: TLS 1.2
/// or 1.3 (rustls's safe defaults, the ring provider), the system's roots
/// and the extra ones. Built once.
fn tls() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            // Unreadable system certificates are skipped, as browsers do.
            let system = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(system.certs);
            for c in EXTRA_ROOTS.get().into_iter().flatten() {
                roots.add(c.clone()).map_err(|e| {
                    format!("a certificate given with --ca-cert is not a usable root: {e}")
                })?;
            }
            if roots.is_empty() {
                return Err("no root certificate to check the server's with: install the system's CA certificates or give --ca-cert".into());
            }
            // ring: no C toolchain beyond a compiler, and no post-quantum
            // key exchange yet (which rustls marks as deprecated). The
            // content is end-to-end encrypted whatever the transport; TLS
            // keeps the session token and the traffic's shape from the
            // network.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(ClientError::Usage)
}

/// The HTTP side.
#[derive(Clone)]
pub struct Http {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Http {
    /// A client of the server at `base` (`https://host[:port]`, or
    /// `http://host:port` for a local server or a tunnel).
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        let builder = if base.starts_with("https://") {
            builder
                .use_preconfigured_tls((*tls()?).clone())
                .https_only(true)
        } else if base.starts_with("http://") {
            builder
        } else {
            return Err(ClientError::Usage(format!(
                "the server address must start with https:// or http:// (got {base})"
            )));
        };
        let http = builder
            .build()
            .map_err(|e| ClientError::Network(e.to_string()))?;
        Ok(Self {
            base,
            http,
            token: None,
        })
    }

    /// The server's base address.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Uses this session token from now on.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// The session token.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    async fn answer<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Network(e.to_string()))?;
        if status.is_success() {
            let bytes = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes[..]
            };
            serde_json::from_slice(bytes)
                .map_err(|e| ClientError::Protocol(format!("unexpected answer: {e}")))
        } else {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Err(ClientError::Server {
                status: status.as_u16(),
                code: v["error"].as_str().unwrap_or("unknown").to_owned(),
                message: v["message"]
                    .as_str()
                    .unwrap_or("the server gave no explanation")
                    .to_owned(),
            })
        }
    }

    fn network(e: reqwest::Error) -> ClientError {
        ClientError::Network(describe(e))
    }

    /// Sends a request of the client engine and hands back what came (`Err`
    /// when no answer came).
    pub async fn call(
        &self,
        request: &amicus_core::api::HttpRequest,
        token: Option<&str>,
    ) -> Result<amicus_core::api::HttpResponse, String> {
        use amicus_core::api::Method;
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut r = self
            .http
            .request(method, format!("{}{}", self.base, request.path));
        if request.signed_in
            && let Some(t) = token
        {
            r = r.bearer_auth(t);
        }
        if let Some(body) = &request.body {
            r = r
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = r.send().await.map_err(describe)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(describe)?;
        Ok(amicus_core::api::HttpResponse {
            status,
            body: body.to_vec(),
        })
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let r = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(Self::network)?;
        Self::answer(r).await
    }

    /// `GET path?query` (the pairs are URL-encoded).
    pub async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let r = self
            .request(reqwest::Method::GET, path)
            .query(query)
            .send()
            .await
            .map_err(Self::network)?;
        Self::answer(r).await
    }

    /// `method path` with a JSON body.
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &(impl serde::Serialize + ?Sized),
    ) -> Result<T, ClientError> {
        let r = self
            .request(method, path)
            .json(body)
            .send()
            .await
            .map_err(Self::network)?;
        Self::answer(r).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl serde::Serialize + ?Sized),
    ) -> Result<T, ClientError> {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl serde::Serialize + ?Sized),
    ) -> Result<T, ClientError> {
        self.send(reqwest::Method::PUT, path, body).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let r = self
            .request(reqwest::Method::DELETE, path)
            .send()
            .await
            .map_err(Self::network)?;
        Self::answer::<Value>(r).await.map(|_| ())
    }

    /// One attempt at `PUT /v1/blobs/{id}` with the blob's bytes. A
    /// failure comes with what the transfer decides a retry on (the
    /// status and `Retry-After`, [`amicus_core::transfer`]).
    pub async fn put_blob(
        &self,
        id: &str,
        blob: Vec<u8>,
    ) -> Result<(), (ClientError, HttpFailure)> {
        let r = self
            .request(reqwest::Method::PUT, &format!("/v1/blobs/{id}"))
            .body(blob)
            .send()
            .await
            .map_err(|e| (Self::network(e), HttpFailure::NETWORK))?;
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let status = r.status().as_u16();
        Self::answer::<Value>(r).await.map(|_| ()).map_err(|e| {
            let failure = match e {
                ClientError::Network(_) => HttpFailure::NETWORK,
                _ => HttpFailure {
                    status: Some(status),
                    retry_after,
                },
            };
            (e, failure)
        })
    }

    /// `GET /v1/blobs/{id}`, at most `max` bytes.
    pub async fn get_blob(&self, id: &str, max: usize) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(&format!("/v1/blobs/{id}"), max).await
    }

    /// The bytes at `path` (at most `max`).
    pub async fn get_bytes(&self, path: &str, max: usize) -> Result<Vec<u8>, ClientError> {
        let r = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(Self::network)?;
        if !r.status().is_success() {
            return Self::answer::<Value>(r).await.map(|_| Vec::new());
        }
        let mut out = Vec::new();
        let mut stream = r.bytes_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(Self::network)?;
            if out.len() + piece.len() > max {
                return Err(ClientError::Protocol(format!(
                    "{path} is longer than {max} bytes"
                )));
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }
}

const NO_ANSWER: &str = "the server did not answer in time";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The WebSocket side.
pub struct Conn {
    socket: Socket,
}

impl Conn {
    /// Opens the WebSocket of the server at `base` with a session token
    /// (in the `Authorization` header, never in the URL).
    pub async fn open(base: &str, token: &str) -> Result<Self, ClientError> {
        let (url, connector) = match base.strip_prefix("https://") {
            Some(host) => (
                format!("wss://{host}/v1/ws"),
                Some(tokio_tungstenite::Connector::Rustls(tls()?)),
            ),
            None => (
                format!("ws://{}/v1/ws", base.trim_start_matches("http://")),
                None,
            ),
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| ClientError::Network(e.to_string()))?;
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::Protocol("bad token".into()))?,
        );
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(amicus_core::wire::MAX_FRAME_LEN))
            .max_frame_size(Some(amicus_core::wire::MAX_FRAME_LEN));
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(config),
            true,
            connector,
        )
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401 => {
                ClientError::Server {
                    status: 401,
                    code: "unauthenticated".into(),
                    message: "the session token was refused".into(),
                }
            }
            e => ClientError::Network(format!("WebSocket: {e}")),
        })?;
        Ok(Self { socket })
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.socket
            .send(Message::Binary(frame.encode().into()))
            .await
            .map_err(|e| ClientError::Network(format!("WebSocket: {e}")))
    }

    /// The next server frame, or `None` if none comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<ServerFrame>, ClientError> {
        match self.recv(wait).await {
            Ok(f) => Ok(Some(f)),
            Err(ClientError::Network(m)) if m == NO_ANSWER => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next server frame, or an error if none comes within `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Result<ServerFrame, ClientError> {
        loop {
            let next = tokio::time::timeout(wait, self.socket.next())
                .await
                .map_err(|_| ClientError::Network(NO_ANSWER.into()))?;
            match next {
                Some(Ok(Message::Binary(b))) => {
                    return ServerFrame::decode(&b)
                        .map_err(|e| ClientError::Protocol(format!("server frame: {e}")));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(ClientError::Network(format!(
                        "the server closed the connection: {}",
                        frame
                            .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                            .unwrap_or_default()
                    )));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Network(format!("WebSocket: {e}"))),
                None => return Err(ClientError::Network("the connection ended".into())),
            }
        }
    }
}
