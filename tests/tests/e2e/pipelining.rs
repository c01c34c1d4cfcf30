//! Appends sent one after another without waiting for their answers are
//! logged in the order sent, answered in that order, fanned out in that
//! order, and written in fewer flushes than entries (group commit).

use amicus_core::wire::{AppendItem, ClientFrame, ServerFrame};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Server, answer, connect, opaque_change, register, subscribed};

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

    let (mut reader, first) = subscribed(&server, &token, space).await;
    let appends_before = server.metric("amicus_appends_total").await;
    let batches_before = server.metric("amicus_append_batches_total").await;

    // Every envelope (a valid clear header and an opaque body) names its
    // place in the sending order in its last bytes.
    let mut writer = connect(&server, Some(&token)).await.unwrap();
    let mut sent = Vec::new();
    for request in 0..APPENDS {
        let envelope = opaque_change(space, 204, request);
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
