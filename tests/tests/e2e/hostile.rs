//! Hostile frames on the WebSocket get a clear refusal or close code, and
//! the server keeps serving.

use amicus_core::SpaceId;
use amicus_core::wire::{AppendItem, ClientFrame, RefusalCode, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Server, Ws, answer, connect, opaque_change, register, subscribed};

/// The close code the server ends the connection with.
async fn closed_with(ws: &mut Ws) -> u16 {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => return f.code.into(),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A session token is taken from the `Authorization` header or, for a
/// browser, the WebSocket subprotocol `amicus.bearer.<token>` (answered
/// with `amicus.v1`), never from the URL, where proxies log it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_takes_its_token_from_a_header_never_from_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let alice = register(dir.path(), &server, "alice").await;
    let token = alice.http().token().unwrap().to_owned();
    let host = server.url.trim_start_matches("http://");

    let url = format!("ws://{host}/v1/ws?access_token={token}");
    let refused = tokio_tungstenite::connect_async(url).await;
    assert!(refused.is_err(), "a token in the URL opened a socket");

    let offer = |protocols: String| {
        let mut req = format!("ws://{host}/v1/ws").into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
        req
    };
    let (mut ws, response) =
        tokio_tungstenite::connect_async(offer(format!("amicus.v1, amicus.bearer.{token}")))
            .await
            .expect("the subprotocol's token refused");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "amicus.v1",
        "the server must answer with the protocol, never echo the token"
    );
    ws.send(Message::Binary(ClientFrame::Ping.encode().into()))
        .await
        .unwrap();
    assert!(matches!(answer(&mut ws).await, ServerFrame::Pong));
    let forged = offer("amicus.v1, amicus.bearer.forged".into());
    assert!(tokio_tungstenite::connect_async(forged).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_are_refused_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut alice = register(dir.path(), &server, "alice").await;
    let space = alice.create_space().await.unwrap();
    let token = alice.http().token().unwrap().to_owned();

    assert!(connect(&server, None).await.is_err(), "no token, no socket");
    assert!(connect(&server, Some("forged")).await.is_err());

    let mut ws = connect(&server, Some(&token)).await.unwrap();
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(closed_with(&mut ws).await, 1003);

    let mut ws = connect(&server, Some(&token)).await.unwrap();
    ws.send(Message::Binary(vec![1, 0xff, 0xff, 0xff].into()))
        .await
        .unwrap();
    assert_eq!(closed_with(&mut ws).await, 1008);

    let mut ws = connect(&server, Some(&token)).await.unwrap();
    ws.send(Message::Binary(vec![9, 2].into())).await.unwrap();
    assert_eq!(closed_with(&mut ws).await, 1008, "unknown frame version");

    let mut ws = connect(&server, Some(&token)).await.unwrap();
    let too_big = vec![1u8; amicus_core::wire::MAX_FRAME_LEN + 1];
    let _ = ws.send(Message::Binary(too_big.into())).await;
    assert!(
        !matches!(ws.next().await, Some(Ok(Message::Binary(_)))),
        "an oversized frame ends the connection"
    );

    let mut ws = connect(&server, Some(&token)).await.unwrap();
    let stranger = SpaceId::random();
    ws.send(Message::Binary(
        ClientFrame::Subscribe {
            request: 7,
            space: stranger,
            from_seq: 0,
        }
        .encode()
        .into(),
    ))
    .await
    .unwrap();
    assert!(matches!(
        answer(&mut ws).await,
        ServerFrame::Refused {
            request: 7,
            code: RefusalCode::Forbidden,
            ..
        }
    ));
    for (request, item) in [
        (8, AppendItem::Envelope(vec![0; 300])),
        (9, AppendItem::Proposal(vec![1, 2, 3])),
        (
            10,
            AppendItem::Commit {
                epoch: 0,
                commit: vec![0; 64],
                welcome: None,
                aad: vec![1],
            },
        ),
        (11, AppendItem::Application(Vec::new())),
    ] {
        ws.send(Message::Binary(
            ClientFrame::Append {
                request,
                space,
                item,
            }
            .encode()
            .into(),
        ))
        .await
        .unwrap();
        match answer(&mut ws).await {
            ServerFrame::Refused {
                request: r,
                code: RefusalCode::Malformed,
                message,
            } => {
                assert_eq!(r, request);
                assert!(!message.is_empty());
            }
            other => panic!("request {request}: expected a Malformed refusal, got {other:?}"),
        }
    }
    ws.send(Message::Binary(ClientFrame::Ping.encode().into()))
        .await
        .unwrap();
    assert_eq!(answer(&mut ws).await, ServerFrame::Pong);

    // Still serving, and the member's space is intact.
    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert!(health.status().is_success());
    let doc = alice.new_document(space, "Après l'orage").await.unwrap();
    assert_eq!(alice.read(space, doc).unwrap().title, "Après l'orage");
}

/// A subscriber that stops reading is disconnected with close code 4008
/// once its bounded send queue is full; the writer is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_disconnected_as_too_slow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        "[limits]\nsend_queue = 4\nrate_burst = 100000\nrate_per_second = 100000\n",
    );
    let mut alice = register(dir.path(), &server, "alice").await;
    let space = alice.create_space().await.unwrap();
    let token = alice.http().token().unwrap().to_owned();
    drop(alice); // its own connection is not part of this experiment

    let (mut slow, _) = subscribed(&server, &token, space).await;

    // 1 MiB envelopes (valid clear headers, opaque bodies) until the slow
    // connection's queue overflows; the writer's appends keep succeeding.
    let mut writer = connect(&server, Some(&token)).await.unwrap();
    let mut appended = 0;
    for request in 0..200u32 {
        let envelope = opaque_change(space, 1 << 20, request);
        let frame = ClientFrame::Append {
            request,
            space,
            item: AppendItem::Envelope(envelope),
        };
        writer
            .send(Message::Binary(frame.encode().into()))
            .await
            .unwrap();
        match answer(&mut writer).await {
            ServerFrame::Accepted { .. } => {}
            other => panic!("append {request}: {other:?}"),
        }
        appended += 1;
        if server.metric("amicus_slow_consumers_total").await >= 1 {
            break;
        }
    }
    assert_eq!(
        server.metric("amicus_slow_consumers_total").await,
        1,
        "after {appended} appends"
    );
    // Reading again, the slow client finds the entries sent before, then the
    // end: a 4008 close, or (if the server was blocked writing to it) the
    // connection dropped.
    let mut entries = 0;
    loop {
        match slow.next().await {
            Some(Ok(Message::Binary(_))) => entries += 1,
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), crate::support::CLOSE_TOO_SLOW);
                break;
            }
            Some(Err(_)) | None => break,
            other => panic!("expected entries then the end, got {other:?}"),
        }
    }
    assert!(
        entries < appended,
        "the server stopped queueing for the slow reader"
    );
    println!("slow reader closed after {appended} appends of 1 MiB, {entries} entries delivered");
}

/// Writes `head`, then one more byte every 300 ms, until the server closes
/// the connection; returns how long that took (None: still open at 20 s).
async fn trickle(addr: &str, head: &[u8]) -> Option<std::time::Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(head).await.ok()?;
    let mut buf = [0u8; 1024];
    while started.elapsed() < std::time::Duration::from_secs(20) {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {} // an error answer; the close follows
            },
            () = tokio::time::sleep(std::time::Duration::from_millis(300)) => {
                if stream.write_all(b"a").await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
    }
    None
}

/// A raw HTTP/1.1 request; returns the status and body.
async fn raw(addr: &str, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut out),
    )
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// Slow and abusive HTTP clients: headers or a body trickled a byte at a
/// time (slowloris), a flood of requests, too many WebSockets, invalid
/// UTF-8, unknown API versions. Each is cut off in bounded time or gets a
/// clear refusal; the server's memory stays bounded and it keeps answering
/// everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_abusive_http_clients_are_cut_off_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        "[limits]\nheader_timeout_secs = 2\nbody_timeout_secs = 2\nbody_deadline_secs = 3\nrate_per_second = 50\nrate_burst = 100\n",
    );
    let alice = register(dir.path(), &server, "alice").await;
    let token = alice.http().token().unwrap().to_owned();
    let addr = server.url.trim_start_matches("http://").to_owned();
    let rss_before = crate::support::peak_rss(server.pid()).unwrap();

    // 200 slowloris connections and 20 trickled bodies at once, while a
    // patient client checks that the server still answers.
    let mut slow = Vec::new();
    for i in 0..220 {
        let addr = addr.clone();
        slow.push(tokio::spawn(async move {
            if i < 200 {
                trickle(&addr, b"GET /healthz HTTP/1.1\r\nHost: amicus\r\nX-Slow: ").await
            } else {
                trickle(
                    &addr,
                    b"POST /v1/register HTTP/1.1\r\nHost: amicus\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"certificate\":\"",
                )
                .await
            }
        }));
    }
    let health = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let r = health
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .expect("the server answers others during the attack");
        assert!(r.status().is_success());
    }
    let mut longest = std::time::Duration::ZERO;
    for (i, task) in slow.into_iter().enumerate() {
        let kind = if i < 200 { "headers" } else { "body" };
        let closed = task
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("connection {i} trickling its {kind} was never cut off"));
        longest = longest.max(closed);
    }
    assert!(
        longest < std::time::Duration::from_secs(8),
        "cut off after {longest:?} with 2 s timeouts"
    );

    // Floods of authenticated requests: searches (rate limited per device)
    // are answered or refused with 429 and a Retry-After; listings (cheap
    // reads, not rate limited) are all answered.
    let client = reqwest::Client::new();
    let mut answers = std::collections::BTreeMap::new();
    for (path, expected) in [
        ("/v1/search?q=d%C3%A9tention", &[200, 429][..]),
        ("/v1/spaces", &[200][..]),
    ] {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..15 {
            let batch = (0..100).map(|_| {
                client
                    .get(format!("{}{path}", server.url))
                    .bearer_auth(&token)
                    .send()
            });
            for r in futures_util::future::join_all(batch).await {
                let r = r.unwrap();
                if r.status() == 429 {
                    assert!(r.headers().contains_key("retry-after"));
                }
                *seen.entry(r.status().as_u16()).or_insert(0) += 1;
            }
        }
        assert_eq!(
            seen.keys().copied().collect::<Vec<_>>(),
            expected,
            "{path}: {seen:?}"
        );
        answers.insert(path, seen);
    }

    // Too many WebSockets for one device: the ninth is refused clearly.
    let mut sockets = Vec::new();
    let mut refused = None;
    for _ in 0..9 {
        let mut ws = connect(&server, Some(&token)).await.unwrap();
        ws.send(Message::Binary(ClientFrame::Ping.encode().into()))
            .await
            .unwrap();
        match ws.next().await {
            Some(Ok(Message::Binary(_))) => sockets.push(ws),
            Some(Ok(Message::Close(Some(f)))) => {
                refused = Some(u16::from(f.code));
                break;
            }
            other => panic!("expected a Pong or a close, got {other:?}"),
        }
    }
    assert_eq!(sockets.len(), 8);
    assert_eq!(refused, Some(4029));
    drop(sockets);

    // Invalid UTF-8 and unknown API versions get JSON errors.
    let search = [
        &b"GET /v1/search?q=%FF%FE HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAuthorization: Bearer "[..],
        token.as_bytes(),
        b"\r\n\r\n",
    ]
    .concat();
    let cases: [(&[u8], u16); 4] = [
        (
            b"POST /v1/challenge HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"device\":\"\xff\xfe\"}",
            400,
        ),
        (
            b"GET /v1/users/%FF%FE HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            400,
        ),
        (&search, 400),
        (
            b"GET /v2/spaces HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            404,
        ),
    ];
    for (request, expected) in cases {
        let (status, body) = raw(&addr, request).await;
        assert_eq!(status, expected, "{body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("not a JSON error: {body:?}"));
        assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
        println!("{status}: {}", v["message"]);
    }

    let rss_after = crate::support::peak_rss(server.pid()).unwrap();
    println!(
        "220 trickling connections cut off within {longest:?}; flood answers {answers:?}; peak memory {} → {} MiB",
        rss_before >> 20,
        rss_after >> 20
    );
    assert!(
        rss_after < rss_before + (64 << 20),
        "memory grew by {} MiB",
        (rss_after - rss_before) >> 20
    );
}
