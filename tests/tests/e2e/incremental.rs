//! A device that reopens reads only the log entries it has not processed:
//! the server's `amicus_log_entries_served_total` does not grow when a
//! space with nothing new is synced again, and grows by exactly the new
//! entries otherwise. Prints the time to open the space both ways.

use std::time::Instant;

use amicus_cli::{Client, Edit};
use amicus_core::space::Role;

use crate::support::{PASS, Server, register, setting};

const SERVED: &str = "amicus_log_entries_served_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_device_reads_only_the_entries_it_has_not_read() {
    let entries: usize = setting("AMICUS_SYNC_ENTRIES", 1_000);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut amina = register(dir.path(), &server, "amina").await;
    let bertrand = register(dir.path(), &server, "bertrand").await;
    drop(bertrand);
    let space = amina.create_space().await.unwrap();
    amina
        .invite(space, "bertrand", Role::Contributor)
        .await
        .unwrap();
    let doc = amina.new_document(space, "Mémoire").await.unwrap();
    for i in 0..entries {
        amina
            .edit(space, doc, &[Edit::Insert(None, format!("§{i} "))])
            .await
            .unwrap();
    }
    amina.sync(space).await.unwrap();
    let expected = amina.read(space, doc).unwrap();

    // Bertrand's device reads the whole log once.
    let home = dir.path().join("bertrand");
    let before = server.metric(SERVED).await;
    let started = Instant::now();
    let mut bertrand = Client::open(&home, PASS).await.unwrap();
    bertrand.sync_all().await.unwrap();
    let first_open = started.elapsed();
    let first = server.metric(SERVED).await - before;
    assert!(
        first as usize > entries,
        "the first sync read {first} entries of a log of more than {entries}"
    );
    assert_eq!(bertrand.read(space, doc).unwrap().body, expected.body);
    drop(bertrand);

    // Reopened with nothing new: no entry is read again.
    let before = server.metric(SERVED).await;
    let started = Instant::now();
    let mut bertrand = Client::open(&home, PASS).await.unwrap();
    bertrand.sync_all().await.unwrap();
    let reopen = started.elapsed();
    assert_eq!(server.metric(SERVED).await - before, 0);
    assert_eq!(bertrand.read(space, doc).unwrap().body, expected.body);
    drop(bertrand);

    // Three new entries: exactly those are read.
    for i in 0..3 {
        amina
            .edit(space, doc, &[Edit::Insert(Some(0), format!("new{i} "))])
            .await
            .unwrap();
    }
    amina.sync(space).await.unwrap();
    let before = server.metric(SERVED).await;
    let mut bertrand = Client::open(&home, PASS).await.unwrap();
    bertrand.sync_all().await.unwrap();
    assert_eq!(server.metric(SERVED).await - before, 3);
    assert_eq!(
        bertrand.read(space, doc).unwrap().body,
        amina.read(space, doc).unwrap().body
    );
    println!(
        "a space of {first} entries: first open and sync {:.0} ms, reopened with nothing new {:.0} ms",
        first_open.as_secs_f64() * 1e3,
        reopen.as_secs_f64() * 1e3
    );
}
