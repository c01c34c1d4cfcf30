//! The server is killed (SIGKILL) while a member writes, and restarted:
//! every acknowledged edit is there, once and in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amicus_cli::{Client, Edit};
use amicus_core::space::Role;

use crate::support::{PASS, Server, register};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_the_server_is_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let mut alice = register(dir.path(), &server, "alice").await;
    register(dir.path(), &server, "bob").await;
    let space = alice.create_space().await.unwrap();
    alice.invite(space, "bob", Role::Contributor).await.unwrap();
    let doc = alice.new_document(space, "Plainte").await.unwrap();

    // The killer strikes while edits are in flight, after at least ten
    // acknowledgements, at a moment that varies from run to run.
    let acked = Arc::new(AtomicUsize::new(0));
    let seen = acked.clone();
    let jitter = u64::from(amicus_core::MessageId::random().0[0] % 40);
    let killer = std::thread::spawn(move || {
        while seen.load(Ordering::SeqCst) < 10 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(jitter));
        server.kill();
    });
    let mut acknowledged = Vec::new();
    for i in 0..100_000 {
        match alice
            .edit(space, doc, &[Edit::Insert(None, format!("<{i}>"))])
            .await
        {
            Ok(()) => {
                acknowledged.push(i);
                acked.store(acknowledged.len(), Ordering::SeqCst);
            }
            Err(_) => break,
        }
    }
    killer.join().unwrap();
    assert!(acknowledged.len() >= 10);

    let server = Server::start(&data);
    alice.set_server(&server.url).unwrap();
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
    }
    // The store still takes writes after the restart.
    alice
        .edit(space, doc, &[Edit::Insert(None, "<after>".into())])
        .await
        .unwrap();
    bob.sync(space).await.unwrap();
    assert!(bob.read(space, doc).unwrap().body.ends_with("<after>"));
    println!(
        "{} edits acknowledged before SIGKILL; all present once, in order",
        acknowledged.len()
    );
}
