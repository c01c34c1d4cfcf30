//! Removal, devices added later, and two managers committing in one epoch.

use amicus_cli::Edit;
use amicus_core::space::Role;

use crate::support::{PASS, Server, amicus_json, register};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_reads_nothing_written_afterwards_and_a_later_device_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut alice = register(dir.path(), &server, "alice").await;
    let mut bob = register(dir.path(), &server, "bob").await;
    let mut carol = register(dir.path(), &server, "carol").await;
    let space = alice.create_space().await.unwrap();
    alice.invite(space, "bob", Role::Contributor).await.unwrap();
    alice
        .invite(space, "carol", Role::Contributor)
        .await
        .unwrap();
    let doc = alice.new_document(space, "Mémoire").await.unwrap();
    alice
        .edit(space, doc, &[Edit::Insert(None, "before removal. ".into())])
        .await
        .unwrap();
    carol.sync_all().await.unwrap();
    assert_eq!(carol.read(space, doc).unwrap().body, "before removal. ");

    alice.remove(space, "carol").await.unwrap();
    alice
        .edit(
            space,
            doc,
            &[Edit::Insert(None, "AFTER-REMOVAL secret strategy".into())],
        )
        .await
        .unwrap();
    bob.sync_all().await.unwrap();
    bob.edit(space, doc, &[Edit::Insert(None, " bob-after".into())])
        .await
        .unwrap();

    // The server stops serving carol...
    carol.sync_all().await.unwrap();
    assert!(carol.is_removed(space));
    // ...and even handed the whole log (as a seized or colluding server
    // could), carol decrypts nothing written after her removal.
    let log = alice.fetch_log(space).await.unwrap();
    carol.ingest(space, log);
    let seen = carol.read(space, doc).unwrap().body;
    assert_eq!(seen, "before removal. ");
    assert!(
        carol.unreadable(space) >= 2,
        "the later envelopes stay sealed to carol"
    );

    // A device bob adds later reads the whole history (policy `full`).
    let mut bob_phone = bob
        .add_device(&dir.path().join("bob-phone"), PASS)
        .await
        .unwrap();
    alice.sync_all().await.unwrap();
    alice.invite(space, "bob", Role::Contributor).await.unwrap();
    bob_phone.sync_all().await.unwrap();
    let read = bob_phone.read(space, doc).unwrap();
    assert_eq!(
        read.body,
        "before removal. AFTER-REMOVAL secret strategy bob-after"
    );
    assert_eq!(read.title, "Mémoire");
    assert_eq!(bob_phone.unreadable(space), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_two_managers_commit_in_one_epoch_one_wins_and_the_other_reapplies_its_change() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut alice = register(dir.path(), &server, "alice").await;
    let mut bob = register(dir.path(), &server, "bob").await;
    let space = alice.create_space().await.unwrap();
    alice
        .invite(space, "bob", Role::SpaceManager)
        .await
        .unwrap();
    bob.sync_all().await.unwrap();

    // Both managers stage against the epoch they synced; whether one's
    // append lands between the other's sync and append depends on
    // scheduling, so rounds go on until the race has happened twice.
    let mut invited = Vec::new();
    for round in 0..30 {
        let (x, y) = (format!("x{round}"), format!("y{round}"));
        register(dir.path(), &server, &x).await;
        register(dir.path(), &server, &y).await;
        alice.sync_all().await.unwrap();
        bob.sync_all().await.unwrap();
        let (a, b) = tokio::join!(
            alice.invite(space, &x, Role::Reader),
            bob.invite(space, &y, Role::Reader)
        );
        a.unwrap();
        b.unwrap();
        invited.push(x);
        invited.push(y);
        if server.metric("amicus_commit_conflicts_total").await >= 2 {
            break;
        }
    }
    let conflicts = server.metric("amicus_commit_conflicts_total").await;
    assert!(
        conflicts >= 1,
        "no commit ever lost its epoch: the race was not exercised"
    );
    alice.sync_all().await.unwrap();
    bob.sync_all().await.unwrap();
    for who in [&alice, &bob] {
        let members: Vec<String> = who
            .members(space)
            .unwrap()
            .iter()
            .map(|m| m["user"].as_str().unwrap().to_owned())
            .collect();
        for u in &invited {
            assert!(members.contains(u), "{u}'s addition was lost");
        }
    }
    assert_eq!(alice.epoch(space).unwrap(), bob.epoch(space).unwrap());
    println!(
        "{conflicts} commit conflicts, all recovered; {} users added",
        invited.len()
    );
}

/// Bruno types a sentence his client has not sent yet when Alice removes
/// him: it is never sent to be refused, nor lost. `amicus sync` says it
/// waits, `amicus doc unsent --export` writes it out with why it cannot go,
/// and only `--discard` drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_members_unsent_sentence_is_kept_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut alice = register(dir.path(), &server, "alice").await;
    let mut bruno = register(dir.path(), &server, "bruno").await;
    let space = alice.create_space().await.unwrap();
    alice
        .invite(space, "bruno", Role::Contributor)
        .await
        .unwrap();
    let doc = alice.new_document(space, "Mémoire").await.unwrap();
    alice
        .edit(space, doc, &[Edit::Insert(None, "Shared text.".into())])
        .await
        .unwrap();
    alice
        .edit(
            space,
            doc,
            &[
                Edit::Comment(0, 6, "À vérifier".into()),
                Edit::Version("Premier jet".into()),
            ],
        )
        .await
        .unwrap();
    let named_at = std::time::SystemTime::now();
    bruno.sync_all().await.unwrap();
    // Typed, not flushed yet (the engine sends at its flush interval).
    bruno
        .dangerous_engine()
        .edit(space, doc, |r| {
            amicus_core::document::filing::splice(r.doc(), 12, 0, " Bruno's unsent sentence.")
        })
        .unwrap()
        .unwrap();
    bruno.save().unwrap();
    alice.remove(space, "bruno").await.unwrap();
    bruno.sync_all().await.unwrap();
    assert!(bruno.is_removed(space));
    assert!(
        bruno
            .warnings
            .iter()
            .any(|w| w.contains("kept on this device")),
        "{:?}",
        bruno.warnings
    );
    drop(bruno);

    let home = dir.path().join("bruno");
    // The history up to the removal says who named each version and when,
    // and each comment when it was written (RFC 3339, UTC).
    let recent = |at: &serde_json::Value| {
        let at = at.as_str().unwrap_or_else(|| panic!("no time: {at}"));
        let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp();
        let since = named_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((since - 120..=since + 1).contains(&t), "{at}");
    };
    let history = amicus_json(&home, &["doc", "history", &space.to_hex(), &doc.to_hex()]);
    assert_eq!(history["versions"][0]["name"], "Premier jet", "{history}");
    assert_eq!(history["versions"][0]["author"], "alice");
    recent(&history["versions"][0]["at"]);
    let cat = amicus_json(&home, &["doc", "cat", &space.to_hex(), &doc.to_hex()]);
    recent(&cat["comments"][0]["messages"][0]["at"]);
    let synced = amicus_json(&home, &["sync"]);
    assert_eq!(synced["unsent_blocked"], 1, "{synced}");
    let out = dir.path().join("unsent");
    let listed = amicus_json(&home, &["doc", "unsent", "--export", out.to_str().unwrap()]);
    let entry = &listed["unsent"][0];
    assert_eq!(entry["doc"], doc.to_hex());
    assert!(
        entry["blocked"].as_str().unwrap().contains("removed"),
        "{listed}"
    );
    let written = std::fs::read_to_string(out.join(format!("{}.md", doc.to_hex()))).unwrap();
    assert!(written.contains("Bruno's unsent sentence."), "{written}");
    // Still there at the next start; gone only when discarded.
    assert_eq!(
        amicus_json(&home, &["doc", "unsent"])["unsent"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    amicus_json(&home, &["doc", "unsent", "--discard"]);
    assert!(
        amicus_json(&home, &["doc", "unsent"])["unsent"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Alice never received it.
    alice.sync(space).await.unwrap();
    assert_eq!(alice.read(space, doc).unwrap().body, "Shared text.");
}

/// A confidential space's name is inside it: Alice names it when she
/// creates it and Bob lists it by name, while the server's listing has
/// none; Bob, a contributor, cannot rename it (the engine refuses with a
/// sentence), and a name he writes into the library anyway is not shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_is_named_by_its_managers_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let alice = register(dir.path(), &server, "alice").await;
    let mut bob = register(dir.path(), &server, "bob").await;
    drop(alice);
    let alice_home = dir.path().join("alice");
    let created = amicus_json(
        &alice_home,
        &["space", "create", "--name", " Affaire Kassa "],
    );
    let id = created["space"].as_str().unwrap().to_owned();
    let space = amicus_core::SpaceId::from_hex(&id).unwrap();
    let mut alice = amicus_cli::Client::open(&alice_home, crate::support::PASS)
        .await
        .unwrap();
    alice.invite(space, "bob", Role::Contributor).await.unwrap();
    bob.sync_all().await.unwrap();
    assert_eq!(
        bob.profile(space).unwrap().name.as_deref(),
        Some("Affaire Kassa")
    );
    let server_view: serde_json::Value = bob.http().get(&format!("/v1/spaces/{id}")).await.unwrap();
    assert!(server_view["name"].is_null(), "{server_view}");

    let refused = bob.set_profile(space, "Renamed", "").await.unwrap_err();
    assert!(
        refused.to_string().contains("only the space managers"),
        "{refused}"
    );
    // Written anyway, past the engine: not shown, at Alice's or Bob's.
    bob.dangerous_engine()
        .edit(space, amicus_core::library::stream(space), |r| {
            amicus_core::library::set_profile(r.doc(), "Renamed", "")
        })
        .unwrap()
        .unwrap();
    bob.flush(space, amicus_core::library::stream(space))
        .await
        .unwrap();
    alice.sync(space).await.unwrap();
    assert_eq!(alice.profile(space).unwrap().name, None);
    assert_eq!(bob.profile(space).unwrap().name, None);
    // Alice names it again and describes it with the command, which lists it.
    drop(alice);
    amicus_json(
        &alice_home,
        &[
            "space",
            "rename",
            &id,
            "Affaire Kassa",
            "--description",
            "Requêtes et pièces",
        ],
    );
    let listed = amicus_json(&alice_home, &["space", "list"]);
    let entry = listed["spaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["name"], "Affaire Kassa", "{listed}");
    assert_eq!(entry["description"], "Requêtes et pièces");
}
