//! Three members on four devices co-edit one filing at the same time and
//! end with the same document.

use amicus_cli::Edit;
use amicus_core::space::Role;
use futures_util::future::join_all;

use crate::support::{PASS, Server, register};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_on_four_devices_co_edit_and_converge() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut amina = register(dir.path(), &server, "amina").await;
    let mut amina_laptop = amina
        .add_device(&dir.path().join("amina-laptop"), PASS)
        .await
        .unwrap();
    let mut bertrand = register(dir.path(), &server, "bertrand").await;
    let mut chloe = register(dir.path(), &server, "chloe").await;

    let space = amina.create_space().await.unwrap();
    amina
        .invite(space, "bertrand", Role::Contributor)
        .await
        .unwrap();
    amina
        .invite(space, "chloe", Role::Contributor)
        .await
        .unwrap();
    // Inviting amina again adds her second device, keeping her role.
    amina
        .invite(space, "amina", Role::Contributor)
        .await
        .unwrap();
    let doc = amina
        .new_document(space, "Requête en annulation")
        .await
        .unwrap();

    let mut clients = [&mut amina, &mut amina_laptop, &mut bertrand, &mut chloe];
    for c in clients.iter_mut() {
        c.sync_all().await.unwrap();
    }
    // Every device edits in rounds, concurrently: no one waits for the others.
    let rounds = 6;
    let edits = clients.iter_mut().enumerate().map(|(i, c)| async move {
        for r in 0..rounds {
            let at = if (i + r) % 2 == 0 { Some(0) } else { None };
            c.edit(space, doc, &[Edit::Insert(at, format!("[d{i} r{r}]"))])
                .await
                .unwrap();
        }
    });
    join_all(edits).await;

    let mut bodies = Vec::new();
    for c in clients.iter_mut() {
        c.sync(space).await.unwrap();
        bodies.push(c.read(space, doc).unwrap());
    }
    for b in &bodies {
        assert_eq!(b.body, bodies[0].body, "replicas differ");
        assert_eq!(b.title, "Requête en annulation");
    }
    for i in 0..4 {
        for r in 0..rounds {
            assert!(
                bodies[0].body.contains(&format!("[d{i} r{r}]")),
                "edit d{i} r{r} lost"
            );
        }
    }
    let codes: Vec<_> = clients.iter().map(|c| c.epoch(space).unwrap()).collect();
    assert!(
        codes.iter().all(|c| *c == codes[0]),
        "epoch authenticators differ: {codes:?}"
    );
    println!(
        "converged on {} characters from {} edits",
        bodies[0].body.chars().count(),
        4 * rounds
    );
}

/// A comment thread through the `amicus` command: Bob finds Alice's
/// thread id in `doc cat`, replies and resolves it; Alice reads the reply
/// and sees Bob resolved it; an empty reply is refused with a sentence and
/// nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_thread_is_answered_and_resolved_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut alice = register(dir.path(), &server, "alice").await;
    let mut bob = register(dir.path(), &server, "bob").await;
    let (space, doc) = crate::support::shared_filing(&mut alice, "bob").await;
    alice
        .edit(
            space,
            doc,
            &[Edit::Comment(0, 6, "Préciser la date".into())],
        )
        .await
        .unwrap();
    bob.sync_all().await.unwrap();
    drop(bob);
    let home = dir.path().join("bob");
    let (s, d) = (space.to_hex(), doc.to_hex());
    let cat = crate::support::amicus_json(&home, &["doc", "cat", &s, &d]);
    let thread = cat["comments"][0]["thread"].as_str().unwrap().to_owned();

    let said = crate::support::amicus_refused(
        &home,
        &["doc", "edit", &s, &d, "--reply", &format!("{thread}:   ")],
    );
    assert!(said.contains("a comment cannot be empty"), "{said}");

    crate::support::amicus_json(
        &home,
        &[
            "doc",
            "edit",
            &s,
            &d,
            "--reply",
            &format!("{thread}:Le 12 mars"),
            "--resolve",
            &thread,
        ],
    );
    alice.sync(space).await.unwrap();
    let read = alice.read(space, doc).unwrap();
    let t = &read.comments[0];
    let texts: Vec<&str> = t["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Préciser la date", "Le 12 mars"]);
    assert_eq!(t["messages"][1]["author"], "bob");
    assert_eq!(t["messages"][1]["verified"], true);
    assert_eq!(t["resolved"], true);
    assert_eq!(t["resolved_by"]["author"], "bob");
    assert_eq!(t["resolved_by"]["verified"], true);
}
