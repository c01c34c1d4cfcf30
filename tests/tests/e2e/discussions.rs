//! Discussions, mentions and activity through the `amicus` command, as a
//! litigation team uses them (PROTOCOL §9.5, §9.6).

use amicus_core::space::Role;
use serde_json::{Value, json};

use crate::support::{Server, amicus_json, amicus_refused, register};

/// The activity item of `kind` about `id` in `activity --json`.
fn item<'a>(activity: &'a Value, kind: &str, id: &str) -> Option<&'a Value> {
    activity["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == kind && i["id"] == id)
}

/// Amina opens a discussion that mentions Bruno and attaches a filing;
/// Bruno sees it in his activity (one post, one mention, by Amina), reads
/// it, which clears it, and replies; a mention of someone outside the space
/// is refused with a sentence and writes nothing; Amina cannot edit his
/// post, edits her own, and sees his reply as activity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discussion_with_a_reply_and_a_mention_reaches_the_mentioned_members_activity() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut amina = register(dir.path(), &server, "amina").await;
    let bruno = register(dir.path(), &server, "bruno").await;
    let _chidi = register(dir.path(), &server, "chidi").await;
    let space = amina.create_space().await.unwrap();
    amina
        .invite(space, "bruno", Role::Contributor)
        .await
        .unwrap();
    let filing = amina.new_document(space, "Requête").await.unwrap();
    drop((amina, bruno));
    let (a, b) = (dir.path().join("amina"), dir.path().join("bruno"));
    let s = space.to_hex();

    // Bruno has seen the space's library as it is now.
    amicus_json(&b, &["doc", "ls", &s]);
    let refused = amicus_refused(&a, &["thread", "new", &s, "Audience", "Avec @chidi ?"]);
    assert!(
        refused.contains("@chidi is not a member of this space"),
        "{refused}"
    );
    let opened = amicus_json(
        &a,
        &[
            "thread",
            "new",
            &s,
            "Audience du 12",
            "@bruno, peux-tu plaider ? Voir la requête.",
            "--attach",
            "Requête",
        ],
    );
    let thread = opened["thread"].as_str().unwrap().to_owned();
    assert_eq!(
        amicus_json(&a, &["thread", "ls", &s])["entries"][0]["name"],
        "Audience du 12"
    );

    let activity = amicus_json(&b, &["activity"]);
    let it = item(&activity, "discussion", &thread).expect("the discussion in Bruno's activity");
    assert_eq!(it["title"], "Audience du 12");
    assert_eq!(
        (it["posts"].as_u64(), it["mentions"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(it["by"], serde_json::json!(["amina"]));
    let library = item(
        &activity,
        "library",
        &amicus_core::library::stream(space).to_hex(),
    )
    .expect("the new discussion in the library");
    assert_eq!(library["added"], serde_json::json!(["Audience du 12"]));
    assert_eq!(activity["mentions"], 1);

    let read = amicus_json(&b, &["thread", "cat", &s, "Audience du 12"]);
    let first = read["posts"][0].clone();
    assert_eq!(first["author"], "amina");
    assert_eq!(first["verified"], true);
    assert_eq!(first["mentions"], serde_json::json!(["bruno"]));
    assert_eq!(first["attachments"], serde_json::json!([filing.to_hex()]));
    let after = amicus_json(&b, &["activity"]);
    assert!(item(&after, "discussion", &thread).is_none(), "{after}");
    let first_id = first["post"].as_str().unwrap().to_owned();

    let refused = amicus_refused(
        &b,
        &[
            "thread",
            "reply",
            &s,
            &thread,
            "Et @chidi ?",
            "--to",
            &first_id,
        ],
    );
    assert!(refused.contains("@chidi"), "{refused}");
    let reply = amicus_json(
        &b,
        &[
            "thread",
            "reply",
            &s,
            &thread,
            "Oui, @amina.",
            "--to",
            &first_id,
        ],
    );
    let reply_id = reply["post"].as_str().unwrap().to_owned();

    let refused = amicus_refused(&a, &["thread", "edit", &s, &thread, &reply_id, "Non."]);
    assert!(refused.contains("only a post's author"), "{refused}");
    amicus_json(
        &a,
        &[
            "thread",
            "edit",
            &s,
            &thread,
            &first_id,
            "@bruno, plaide le 12.",
        ],
    );
    let seen_by_amina = amicus_json(&a, &["activity", "--seen"]);
    let it = item(&seen_by_amina, "discussion", &thread).expect("Bruno's reply");
    assert_eq!(
        (it["posts"].as_u64(), it["mentions"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        amicus_json(&a, &["activity"])["items"]
            .as_array()
            .unwrap()
            .is_empty(),
        "--seen counts everything as seen"
    );

    let read = amicus_json(&b, &["thread", "cat", &s, &thread]);
    let posts = read["posts"].as_array().unwrap();
    assert_eq!(posts.len(), 2, "one refused reply wrote nothing: {read}");
    assert_eq!(posts[0]["text"], "@bruno, plaide le 12.");
    assert!(posts[0]["edited"].is_string());
    assert_eq!(posts[1]["reply_to"], first_id.as_str());
    assert_eq!(posts[1]["author"], "bruno");
}

/// The directory and requests to join (PROTOCOL §15.3): Amina lists her
/// space with a public name; a contributor cannot; Bruno finds it by a word
/// of its description and asks to join, Chidi too; a space that is not
/// listed answers exactly as one that does not exist; Amina accepts Bruno
/// (his device joins) and declines Chidi (he is told, and is not in it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_space_is_found_and_joined_on_request_or_declined() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut amina = register(dir.path(), &server, "amina").await;
    for name in ["bruno", "chidi", "eve"] {
        drop(register(dir.path(), &server, name).await);
    }
    let space = amina.create_space().await.unwrap();
    let hidden = amina.create_space().await.unwrap();
    amina.invite(space, "eve", Role::Contributor).await.unwrap();
    drop(amina);
    let home = |n: &str| dir.path().join(n);
    let s = space.to_hex();

    let refused = amicus_refused(&home("eve"), &["space", "listing", &s, "--name", "Mine"]);
    assert!(refused.contains("only the space managers"), "{refused}");
    amicus_json(
        &home("amina"),
        &[
            "space",
            "listing",
            &s,
            "--name",
            "Défenseurs du Kivu",
            "--description",
            "Avocats des défenseurs des droits au Nord-Kivu",
        ],
    );
    let found = amicus_json(&home("bruno"), &["space", "directory", "nord-kivu avocats"]);
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["spaces"][0]["space"], s.as_str());
    assert_eq!(found["spaces"][0]["name"], "Défenseurs du Kivu");
    let all = amicus_json(&home("bruno"), &["space", "directory"]);
    assert!(
        !all.to_string().contains(&hidden.to_hex()),
        "an unlisted space appears nowhere: {all}"
    );

    // Not listed and not existing: the same answer.
    let unlisted = amicus_refused(&home("bruno"), &["space", "request", &hidden.to_hex()]);
    let missing = amicus_refused(
        &home("bruno"),
        &["space", "request", &amicus_core::SpaceId::random().to_hex()],
    );
    assert!(
        unlisted.contains("no such space in the directory"),
        "{unlisted}"
    );
    assert_eq!(unlisted, missing);
    let long = "é".repeat(amicus_core::api::MAX_JOIN_MESSAGE + 1);
    let refused = amicus_refused(
        &home("bruno"),
        &["space", "request", &s, "--message", &long],
    );
    assert!(refused.contains("at most 1000 characters"), "{refused}");
    let refused = amicus_refused(&home("eve"), &["space", "request", &s]);
    assert!(refused.contains("already a member"), "{refused}");

    amicus_json(
        &home("bruno"),
        &["space", "request", &s, "--message", "Je plaide à Goma."],
    );
    amicus_json(&home("chidi"), &["space", "request", &s]);
    let waiting = amicus_json(&home("amina"), &["space", "requests", &s]);
    let users: Vec<&str> = waiting["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 2, "{waiting}");
    assert!(users.contains(&"bruno") && users.contains(&"chidi"));
    assert!(waiting.to_string().contains("Je plaide à Goma."));

    let refused = amicus_refused(&home("eve"), &["space", "accept", &s, "bruno"]);
    assert!(refused.contains("only the space managers"), "{refused}");
    amicus_json(&home("amina"), &["space", "accept", &s, "bruno"]);
    amicus_json(&home("amina"), &["space", "decline", &s, "chidi"]);

    let bruno_spaces = amicus_json(&home("bruno"), &["space", "list"]);
    assert!(bruno_spaces.to_string().contains(&s), "{bruno_spaces}");
    let bruno_requests = amicus_json(&home("bruno"), &["space", "requests"]);
    assert!(
        bruno_requests["requests"].as_array().unwrap().is_empty(),
        "{bruno_requests}"
    );
    let chidi = amicus_json(&home("chidi"), &["space", "requests"]);
    assert_eq!(chidi["requests"][0]["state"], "declined", "{chidi}");
    assert_eq!(chidi["requests"][0]["name"], "Défenseurs du Kivu");
    let chidi_spaces = amicus_json(&home("chidi"), &["space", "list"]);
    assert!(!chidi_spaces.to_string().contains(&s), "{chidi_spaces}");
    let left = amicus_json(&home("amina"), &["space", "requests", &s]);
    assert!(left["requests"].as_array().unwrap().is_empty(), "{left}");

    amicus_json(&home("amina"), &["space", "listing", &s, "--off"]);
    let gone = amicus_json(&home("bruno"), &["space", "directory", "kivu"]);
    assert_eq!(gone["total"], 0, "{gone}");
}

/// An open space (PROTOCOL §15.3): Amina lists hers as open; Bruno sees
/// it marked open and asks; the next time a device of Amina's is online
/// (here, any command that reads her spaces) it adds him as a contributor
/// with no one answering, and his request is closed. A space listed on
/// request keeps Chidi's request waiting through the same commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_space_is_joined_at_once_and_one_on_request_waits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut amina = register(dir.path(), &server, "amina").await;
    for name in ["bruno", "chidi"] {
        drop(register(dir.path(), &server, name).await);
    }
    let open = amina.create_space().await.unwrap().to_hex();
    let closed = amina.create_space().await.unwrap().to_hex();
    drop(amina);
    let home = |n: &str| dir.path().join(n);
    let listed = amicus_json(
        &home("amina"),
        &[
            "space",
            "listing",
            &open,
            "--name",
            "Réseau des avocats",
            "--open",
        ],
    );
    assert_eq!(listed["open"], true);
    amicus_json(
        &home("amina"),
        &["space", "listing", &closed, "--name", "Affaire Kassa"],
    );
    let found = amicus_json(&home("bruno"), &["space", "directory"]);
    let open_of = |name: &str| {
        found["spaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .map(|l| l["open"].clone())
    };
    assert_eq!(open_of("Réseau des avocats"), Some(json!(true)), "{found}");
    assert_eq!(open_of("Affaire Kassa"), Some(json!(false)), "{found}");

    let asked = amicus_json(&home("bruno"), &["space", "request", &open]);
    assert_eq!(asked["open"], true, "{asked}");
    let asked = amicus_json(&home("chidi"), &["space", "request", &closed]);
    assert_eq!(asked["open"], false, "{asked}");

    // Amina's device comes online.
    amicus_json(&home("amina"), &["sync"]);
    let members = amicus_json(&home("amina"), &["space", "members", &open]);
    let bruno = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"] == "bruno")
        .cloned();
    assert_eq!(
        bruno.as_ref().map(|m| m["role"].clone()),
        Some(json!("contributor")),
        "{members}"
    );
    let bruno_spaces = amicus_json(&home("bruno"), &["space", "list"]);
    assert!(bruno_spaces.to_string().contains(&open), "{bruno_spaces}");
    let left = amicus_json(&home("amina"), &["space", "requests", &open]);
    assert!(left["requests"].as_array().unwrap().is_empty(), "{left}");

    let waiting = amicus_json(&home("amina"), &["space", "requests", &closed]);
    assert_eq!(waiting["requests"][0]["user"], "chidi", "{waiting}");
    let chidi_spaces = amicus_json(&home("chidi"), &["space", "list"]);
    assert!(
        !chidi_spaces.to_string().contains(&closed),
        "{chidi_spaces}"
    );
}
