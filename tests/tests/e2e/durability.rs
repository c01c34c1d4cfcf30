//! Crash safety. The server is killed (SIGKILL) again and again while a
//! member writes, and restarted: every acknowledged edit is there, once
//! and in order, and the store opens and passes `amicus audit`. A client
//! that stops between staging a commit and merging it starts again in a
//! state that follows the space.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amicus_cli::{Client, Edit};
use amicus_core::space::Role;
use amicus_core::wire::{AppendItem, ClientFrame, EntryKind, ServerFrame};

use crate::relay_double::Relay;
use crate::support::{PASS, Server, amicus_bin, long, register, setting};

fn random(below: u64) -> u64 {
    u64::from_le_bytes(amicus_core::MessageId::random().0[..8].try_into().unwrap()) % below
}

/// How many times the server is killed: `AMICUS_CRASH_ROUNDS`, else 50
/// (500 with `AMICUS_LONG=1`).
fn rounds() -> usize {
    setting("AMICUS_CRASH_ROUNDS", if long() { 500 } else { 50 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_the_server_is_killed_again_and_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let mut alice = register(dir.path(), &server, "alice").await;
    register(dir.path(), &server, "bob").await;
    let space = alice.create_space().await.unwrap();
    alice.invite(space, "bob", Role::Contributor).await.unwrap();
    let doc = alice.new_document(space, "Plainte").await.unwrap();

    let started = Instant::now();
    let mut acknowledged = Vec::new();
    let mut unanswered = Vec::new();
    let mut next = 0u64;
    let rounds = rounds();
    for _ in 0..rounds {
        // The killer strikes after a few acknowledgements of this round,
        // at a moment that varies, usually with an edit in flight.
        let acked = Arc::new(AtomicUsize::new(0));
        let seen = acked.clone();
        let after = 1 + random(6) as usize;
        let jitter = random(12);
        let killer = std::thread::spawn(move || {
            while seen.load(Ordering::SeqCst) < after {
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(Duration::from_millis(jitter));
            server.kill();
        });
        loop {
            let mark = format!("<{next}>");
            let result = alice.edit(space, doc, &[Edit::Insert(None, mark)]).await;
            match result {
                Ok(()) => {
                    acknowledged.push(next);
                    next += 1;
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                Err(_) => {
                    // Not acknowledged: it may or may not have been stored,
                    // and it stays in the replica to be sent again.
                    unanswered.push(next);
                    next += 1;
                    break;
                }
            }
        }
        killer.join().unwrap();
        server = Server::start(&data);
        alice.set_server(&server.url).unwrap();
    }

    alice.sync_all().await.unwrap();
    let mut bob = Client::open(&dir.path().join("bob"), PASS).await.unwrap();
    bob.set_server(&server.url).unwrap();
    bob.sync_all().await.unwrap();
    for reader in [&mut alice, &mut bob] {
        let body = reader.read(space, doc).unwrap().body;
        let mut last = 0;
        for i in &acknowledged {
            let mark = format!("<{i}>");
            assert_eq!(
                body.matches(&mark).count(),
                1,
                "edit {i} is missing or doubled"
            );
            let at = body.find(&mark).unwrap();
            assert!(at >= last, "edit {i} is out of order");
            last = at;
        }
        for i in &unanswered {
            assert!(
                body.matches(&format!("<{i}>")).count() <= 1,
                "edit {i} doubled"
            );
        }
    }
    // The store still takes writes, and its chains and blobs verify.
    alice
        .edit(space, doc, &[Edit::Insert(None, "<after>".into())])
        .await
        .unwrap();
    bob.sync(space).await.unwrap();
    assert!(bob.read(space, doc).unwrap().body.ends_with("<after>"));
    server.stop();
    let audit = std::process::Command::new(amicus_bin())
        .args(["audit", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "amicus audit after {rounds} kills: {}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
    println!(
        "{rounds} SIGKILLs in {:.1} s: {} edits acknowledged, all present once and in order; {} unanswered",
        started.elapsed().as_secs_f64(),
        acknowledged.len(),
        unanswered.len()
    );
}

/// The client stops (a crash: the task is dropped, nothing more is saved)
/// while its commit is on the way, in the two places that matter: before
/// the server got the commit, and after the server stored it but before
/// the answer came back. Started again from its saved state, the client
/// follows the space and can commit again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stopped_between_staging_and_merging_a_commit_starts_again_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut alice = register(dir.path(), &server, "alice").await;
    let mut bob = register(dir.path(), &server, "bob").await;
    let mut carol = register(dir.path(), &server, "carol").await;
    let space = alice.create_space().await.unwrap();
    let relay = Relay::start(&server.url).await;
    alice.set_server(&relay.url).unwrap();
    let is_commit = |f: &ClientFrame| {
        matches!(
            f,
            ClientFrame::Append {
                item: AppendItem::Commit { .. },
                ..
            }
        )
    };

    // 1. The commit never reaches the server.
    relay.up(move |f| if is_commit(&f) { None } else { Some(f) });
    let crashed = tokio::time::timeout(
        Duration::from_secs(3),
        alice.invite(space, "bob", Role::Contributor),
    )
    .await;
    assert!(crashed.is_err(), "the invitation was cut short");
    drop(alice);
    relay.honest();
    let mut alice = Client::open(&dir.path().join("alice"), PASS).await.unwrap();
    let epoch = alice.invite(space, "bob", Role::Contributor).await.unwrap();
    assert_eq!(epoch, 1);
    bob.sync_all().await.unwrap();
    assert_eq!(alice.epoch(space).unwrap(), bob.epoch(space).unwrap());

    // 2. The server stores the commit; its answer (and the entry) is lost.
    relay.down(|f| match f {
        ServerFrame::Accepted { .. } => vec![],
        ServerFrame::Entry { entry, .. } if entry.kind == EntryKind::Commit => vec![],
        other => vec![other],
    });
    let crashed = tokio::time::timeout(
        Duration::from_secs(3),
        alice.invite(space, "carol", Role::Contributor),
    )
    .await;
    assert!(crashed.is_err(), "the invitation was cut short");
    drop(alice);
    relay.honest();
    let mut alice = Client::open(&dir.path().join("alice"), PASS).await.unwrap();
    alice.sync_all().await.unwrap();
    assert_eq!(
        alice.epoch(space).unwrap().0,
        2,
        "its commit, found in the log, was merged"
    );
    carol.sync_all().await.unwrap();
    bob.sync_all().await.unwrap();
    let code = alice.epoch(space).unwrap();
    assert_eq!(carol.epoch(space).unwrap(), code);
    assert_eq!(bob.epoch(space).unwrap(), code);
    // Everyone writes and reads on.
    let doc = alice.new_document(space, "Mémoire").await.unwrap();
    carol.sync(space).await.unwrap();
    carol
        .edit(space, doc, &[Edit::Insert(None, "Carol écrit.".into())])
        .await
        .unwrap();
    bob.sync(space).await.unwrap();
    assert_eq!(bob.read(space, doc).unwrap().body, "Carol écrit.");
}
