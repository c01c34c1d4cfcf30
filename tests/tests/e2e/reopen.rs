//! A malicious Reader cannot freeze a space (PROTOCOL §6.3). Mallory, a
//! Reader, appends a commit that removes Amina: the server cannot read it
//! and accepts it (dropping Amina's device, as its clear roster change
//! says), so one commit would stop the space for ever. Every other member's
//! group refuses it and reports it; once most of them did, the server
//! reopens the epoch: Amina is served again, the next valid commit takes
//! the epoch, Mallory may never commit in the space again, and a member
//! who joins afterwards reads the case file as its authors wrote it.

use amicus_cli::Edit;
use amicus_core::DeviceId;
use amicus_core::space::Role;
use amicus_core::wire::{
    AppendItem, ClientFrame, EntryKind, RefusalCode, ServerFrame, inspect_mls,
};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Server, answer, connect, register};

/// Mallory's client stages what no honest engine would: the removal of
/// `victim` by a Reader. Returns the append (never merged by Mallory).
fn bad_commit(
    mallory: &mut amicus_cli::Client,
    space: amicus_core::SpaceId,
    victim: DeviceId,
) -> AppendItem {
    let (view, provider, device) = mallory
        .dangerous_engine()
        .dangerous_space(space)
        .expect("mallory is in the space");
    let log = view.log_position();
    let group = view.space_mut();
    group.dangerous_skip_local_role_checks();
    let pending = group
        .remove_devices(provider, device, &[victim], log)
        .expect("staged without local checks");
    group.commit_rejected(provider).unwrap();
    let framing = inspect_mls(&pending.commit).unwrap();
    AppendItem::Commit {
        epoch: framing.epoch,
        commit: pending.commit,
        welcome: None,
        aad: framing.aad,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_bad_commit_is_reopened_once_and_the_space_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut amina = register(dir.path(), &server, "amina").await;
    let mut bruno = register(dir.path(), &server, "bruno").await;
    let mut chloe = register(dir.path(), &server, "chloe").await;
    let mut mallory = register(dir.path(), &server, "mallory").await;
    let mut dan = register(dir.path(), &server, "dan").await;
    let space = amina.create_space().await.unwrap();
    for (who, role) in [
        ("bruno", Role::Contributor),
        ("chloe", Role::Contributor),
        ("mallory", Role::Reader),
    ] {
        amina.invite(space, who, role).await.unwrap();
    }
    let doc = amina.new_document(space, "Requête").await.unwrap();
    amina
        .edit(
            space,
            doc,
            &[Edit::Insert(None, "Drafted by Amina. ".into())],
        )
        .await
        .unwrap();
    for c in [&mut bruno, &mut chloe, &mut mallory] {
        c.sync_all().await.unwrap();
    }
    let epoch = amina.epoch(space).unwrap().0;

    // Mallory's commit removes Amina; the server accepts it.
    let victim = DeviceId::from_hex(&amina.device_id()).unwrap();
    let item = bad_commit(&mut mallory, space, victim);
    let token = mallory.http().token().unwrap().to_owned();
    let mut ws = connect(&server, Some(&token)).await.unwrap();
    let append = ClientFrame::Append {
        request: 1,
        space,
        item,
    };
    ws.send(Message::Binary(append.encode().into()))
        .await
        .unwrap();
    let ServerFrame::Accepted { seq: refused, .. } = answer(&mut ws).await else {
        panic!("the server cannot read the commit and accepts it");
    };
    // The server no longer serves Amina, as the commit's clear part says
    // (her client, still connected when the commit went out, refused it
    // and reported it).
    assert!(amina.sync(space).await.is_err());
    // Bruno's and Chloe's groups refuse it too: they stay in the epoch and
    // report it; two of the three other users reopen it.
    for c in [&mut bruno, &mut chloe] {
        c.sync(space).await.unwrap();
        assert_eq!(
            c.epoch(space).unwrap().0,
            epoch,
            "the member stays in the epoch"
        );
        assert!(
            c.warnings.iter().any(|w| w.contains("refused the commit")),
            "{:?}",
            c.warnings
        );
    }
    let mut reopened = None;
    for _ in 0..50 {
        bruno.sync(space).await.unwrap();
        let log = bruno.fetch_log(space).await.unwrap();
        reopened = log.into_iter().find(|e| e.kind == EntryKind::Reopen);
        if reopened.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let reopened = reopened.expect("the epoch was reopened");
    assert_eq!(reopened.epoch, epoch);
    assert_eq!(reopened.payload[..8], refused.to_be_bytes());
    assert!(
        bruno.warnings.iter().any(|w| w.contains("open again")),
        "{:?}",
        bruno.warnings
    );

    // Amina is served again and the next valid commit takes the epoch.
    amina.sync(space).await.unwrap();
    amina
        .edit(
            space,
            doc,
            &[Edit::Insert(None, "Amended by Amina. ".into())],
        )
        .await
        .unwrap();
    bruno.sync(space).await.unwrap();
    bruno
        .edit(space, doc, &[Edit::Insert(None, "Signed by Bruno.".into())])
        .await
        .unwrap();
    amina.invite(space, "dan", Role::Reader).await.unwrap();
    for c in [&mut amina, &mut bruno, &mut chloe] {
        c.sync(space).await.unwrap();
        assert_eq!(c.epoch(space).unwrap().0, epoch + 1);
    }
    let code = |c: &amicus_cli::Client| c.epoch(space).unwrap().1;
    assert_eq!(code(&amina), code(&bruno));
    assert_eq!(code(&amina), code(&chloe));

    // A later joiner reads the case file as its authors wrote it.
    dan.sync_all().await.unwrap();
    let text = "Drafted by Amina. Amended by Amina. Signed by Bruno.";
    assert_eq!(dan.read(space, doc).unwrap().body, text);
    assert_eq!(chloe.read(space, doc).unwrap().body, text);
    assert_eq!(dan.unreadable(space), 0);

    // Mallory may never commit in the space again: the space stops for
    // one reopening, not two.
    mallory.sync(space).await.unwrap();
    let victim = DeviceId::from_hex(&bruno.device_id()).unwrap();
    let item = bad_commit(&mut mallory, space, victim);
    let append = ClientFrame::Append {
        request: 2,
        space,
        item,
    };
    ws.send(Message::Binary(append.encode().into()))
        .await
        .unwrap();
    match answer(&mut ws).await {
        ServerFrame::Refused {
            request: 2,
            code: RefusalCode::Forbidden,
            message,
        } => assert!(message.contains("refused an earlier commit"), "{message}"),
        other => panic!("mallory committed again: {other:?}"),
    }
    // Nor can Mallory reopen a valid commit alone (Amina invited Dan: one
    // report of the three other users, Bruno, Chloe and Mallory, is short
    // of two).
    let last = amina.fetch_log(space).await.unwrap();
    let commit = last
        .iter()
        .rev()
        .find(|e| e.kind == EntryKind::Commit)
        .unwrap()
        .seq;
    let report = ClientFrame::Report {
        request: 3,
        space,
        commit,
    };
    ws.send(Message::Binary(report.encode().into()))
        .await
        .unwrap();
    match answer(&mut ws).await {
        ServerFrame::Reported {
            request: 3,
            reopened: false,
            reports: 1,
            needed: 2,
        } => {}
        other => panic!("{other:?}"),
    }
}
