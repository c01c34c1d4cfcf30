//! The client's two transports: JSON over HTTP (reqwest) and binary frames
//! over one WebSocket (tokio-tungstenite).

use std::time::Duration;

use amicus_core::wire::{ClientFrame, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::ClientError;

/// The HTTP side.
#[derive(Clone)]
pub struct Http {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Http {
    /// A client of the server at `base` (`http://host:port`).
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(ClientError::Usage(format!(
                "the server address must start with http:// (got {base}); put a TLS reverse proxy in front of remote servers and reach it through a local tunnel"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
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
        ClientError::Network(e.without_url().to_string())
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
        let response = r.send().await.map_err(|e| e.without_url().to_string())?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
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
        body: &Value,
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
        body: &Value,
    ) -> Result<T, ClientError> {
        self.send(reqwest::Method::POST, path, body).await
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

    /// `PUT /v1/blobs/{id}` with the blob's bytes; waits and retries while
    /// the server's rate limit says so.
    pub async fn put_blob(&self, id: &str, blob: Vec<u8>) -> Result<(), ClientError> {
        let blob = bytes::Bytes::from(blob);
        for _ in 0..100 {
            let r = self
                .request(reqwest::Method::PUT, &format!("/v1/blobs/{id}"))
                .body(blob.clone())
                .send()
                .await
                .map_err(Self::network)?;
            if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let secs = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(secs.clamp(1, 60))).await;
                continue;
            }
            return Self::answer::<Value>(r).await.map(|_| ());
        }
        Err(ClientError::Network(
            "the server kept refusing the upload as too frequent".into(),
        ))
    }

    /// `GET /v1/blobs/{id}`, at most `max` bytes.
    pub async fn get_blob(&self, id: &str, max: usize) -> Result<Vec<u8>, ClientError> {
        let r = self
            .request(reqwest::Method::GET, &format!("/v1/blobs/{id}"))
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
                    "blob {id} is longer than {max} bytes"
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
    /// Opens the WebSocket of the server at `base` with a session token.
    pub async fn open(base: &str, token: &str) -> Result<Self, ClientError> {
        let url = format!("ws://{}/v1/ws", base.trim_start_matches("http://"));
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
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
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
