//! Hostile frames on the WebSocket get a clear refusal or close code, and
//! the server keeps serving.

use amicus_core::SpaceId;
use amicus_core::wire::{AppendItem, ClientFrame, RefusalCode, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Server, register};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server, token: Option<&str>) -> Result<Ws, String> {
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

async fn answer(ws: &mut Ws) -> ServerFrame {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => return ServerFrame::decode(&b).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
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
    use amicus_core::envelope::{Header, Kind};
    use amicus_core::{MessageId, StreamId};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        "[limits]\nsend_queue = 4\nrate_burst = 100000\nrate_per_second = 100000\n",
    );
    let mut alice = register(dir.path(), &server, "alice").await;
    let space = alice.create_space().await.unwrap();
    let token = alice.http().token().unwrap().to_owned();
    drop(alice); // its own connection is not part of this experiment

    let mut slow = connect(&server, Some(&token)).await.unwrap();
    slow.send(Message::Binary(
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
    assert!(matches!(
        answer(&mut slow).await,
        ServerFrame::Synced { .. }
    ));

    // 1 MiB envelopes (valid clear headers, opaque bodies) until the slow
    // connection's queue overflows; the writer's appends keep succeeding.
    let mut writer = connect(&server, Some(&token)).await.unwrap();
    let mut appended = 0;
    for request in 0..200u32 {
        let header = Header {
            kind: Kind::Change,
            space,
            stream: StreamId::random(),
            epoch: 0,
            message: MessageId::random(),
            nonce: [0; 24],
        };
        let mut envelope = header.to_bytes().to_vec();
        envelope.resize(1 << 20, 0xa5);
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
