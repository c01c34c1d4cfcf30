//! Appends sent one after another without waiting for their answers are
//! logged in the order sent, answered in that order, fanned out in that
//! order, and written in fewer flushes than entries (group commit).

use amicus_core::envelope::{Header, Kind};
use amicus_core::wire::{AppendItem, ClientFrame, ServerFrame};
use amicus_core::{MessageId, StreamId};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Server, answer, connect, register};

const APPENDS: u32 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_sent_without_waiting_keep_their_order_and_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        "[limits]\nrate_burst = 100000\nrate_per_second = 100000\n",
    );
    let mut alice = register(dir.path(), &server, "alice").await;
    let space = alice.create_space().await.unwrap();
    let token = alice.http().token().unwrap().to_owned();
    drop(alice); // its own connection is not part of this experiment

    let mut reader = connect(&server, Some(&token)).await.unwrap();
    reader
        .send(Message::Binary(
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
    let ServerFrame::Synced {
        next_seq: first, ..
    } = answer(&mut reader).await
    else {
        panic!("the subscription is answered with Synced");
    };
    let appends_before = server.metric("amicus_appends_total").await;
    let batches_before = server.metric("amicus_append_batches_total").await;

    // Every envelope (a valid clear header and an opaque body) names its
    // place in the sending order in its last bytes.
    let mut writer = connect(&server, Some(&token)).await.unwrap();
    let mut sent = Vec::new();
    for request in 0..APPENDS {
        let header = Header {
            kind: Kind::Change,
            space,
            stream: StreamId::random(),
            epoch: 0,
            message: MessageId::random(),
            nonce: [0; 24],
        };
        let mut envelope = header.to_bytes().to_vec();
        envelope.extend_from_slice(&[0xa5; 200]);
        envelope.extend_from_slice(&request.to_be_bytes());
        sent.push(envelope.clone());
        writer
            .feed(Message::Binary(
                ClientFrame::Append {
                    request,
                    space,
                    item: AppendItem::Envelope(envelope),
                }
                .encode()
                .into(),
            ))
            .await
            .unwrap();
    }
    writer.flush().await.unwrap();

    let mut seqs = Vec::new();
    for request in 0..APPENDS {
        match answer(&mut writer).await {
            ServerFrame::Accepted {
                request: answered,
                seq,
                ..
            } => {
                assert_eq!(answered, request, "answers come in the order sent");
                seqs.push(seq);
            }
            other => panic!("append {request}: {other:?}"),
        }
    }
    let expected: Vec<u64> = (first..first + u64::from(APPENDS)).collect();
    assert_eq!(
        seqs, expected,
        "logged in the order sent, one after another"
    );
    for (i, envelope) in sent.iter().enumerate() {
        match answer(&mut reader).await {
            ServerFrame::Entry { entry, .. } => {
                assert_eq!(entry.seq, expected[i]);
                assert_eq!(&entry.payload, envelope, "entry {i} is the {i}th sent");
            }
            other => panic!("expected entry {i}, got {other:?}"),
        }
    }

    let appends = server.metric("amicus_appends_total").await - appends_before;
    let batches = server.metric("amicus_append_batches_total").await - batches_before;
    assert_eq!(appends, u64::from(APPENDS));
    assert!(
        (1..u64::from(APPENDS)).contains(&batches),
        "{appends} appends were written in {batches} batches"
    );
    println!("{appends} appends sent without waiting were written in {batches} batches");
}
