//! What clients do when the server misbehaves. Each test puts a
//! [`Relay`] (the misbehaving relay double) between one client and the real
//! server and states the attack and the client's expected reaction: reject
//! it, recover from it, or detect it and say so.

use std::sync::{Arc, Mutex};

use amicus_cli::{Client, ClientError, Edit};
use amicus_core::envelope::Header;
use amicus_core::space::{CommitAad, Role, RosterChange};
use amicus_core::wire::{EntryKind, LogEntry, ServerFrame};
use amicus_core::{DeviceId, SpaceId, StreamId, UserId};
use serde_json::Value;

use crate::relay_double::{Relay, Shadow};
use crate::support::{PASS, Server, register};

/// Alice (space manager, talking to the server directly) and Bob
/// (`bob_role`, talking through a relay), in one space with one filing.
struct Scene {
    dir: tempfile::TempDir,
    server: Server,
    alice: Client,
    bob: Client,
    relay: Relay,
    space: SpaceId,
    doc: StreamId,
}

async fn scene(bob_role: Role) -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut alice = register(dir.path(), &server, "alice").await;
    let mut bob = register(dir.path(), &server, "bob").await;
    let space = alice.create_space().await.unwrap();
    alice.invite(space, "bob", bob_role).await.unwrap();
    let doc = alice.new_document(space, "Requête").await.unwrap();
    alice
        .edit(
            space,
            doc,
            &[Edit::Insert(None, "Exposé des faits.".into())],
        )
        .await
        .unwrap();
    let relay = Relay::start(&server.url).await;
    bob.set_server(&relay.url).unwrap();
    bob.sync_all().await.unwrap();
    assert_eq!(text(&mut bob, space, doc), "Exposé des faits.");
    Scene {
        dir,
        server,
        alice,
        bob,
        relay,
        space,
        doc,
    }
}

fn text(client: &mut Client, space: SpaceId, doc: StreamId) -> String {
    client.read(space, doc).unwrap().body
}

async fn write(client: &mut Client, space: SpaceId, doc: StreamId, words: &str) {
    client
        .edit(space, doc, &[Edit::Insert(None, words.into())])
        .await
        .unwrap();
}

/// What the relay did, for the test to check that the attack happened.
#[derive(Clone, Default)]
struct Tally(Arc<Mutex<Vec<&'static str>>>);

impl Tally {
    fn note(&self, what: &'static str) {
        self.0.lock().unwrap().push(what);
    }
    fn seen(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

/// The server's log of a space as it is now, and its current epoch.
async fn real_log(client: &mut Client, space: SpaceId) -> (Vec<LogEntry>, u64) {
    let log = client.fetch_log(space).await.unwrap();
    let epoch = client.epoch(space).unwrap().0;
    (log, epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_reordered_and_duplicated_entries_are_recovered() {
    let mut s = scene(Role::Contributor).await;
    // From now on the relay drops the first copy of the 2nd entry it
    // carries to Bob, delivers the 5th before the 4th, and the 7th twice.
    let tally = Tally::default();
    let t = tally.clone();
    let (mut n, mut dropped, mut held) = (0, false, None);
    s.relay.down(move |frame| {
        if !matches!(frame, ServerFrame::Entry { .. }) {
            return vec![frame];
        }
        n += 1;
        match n {
            2 if !dropped => {
                dropped = true;
                t.note("dropped");
                vec![]
            }
            4 => {
                held = Some(frame);
                vec![]
            }
            5 => {
                t.note("reordered");
                vec![frame, held.take().unwrap()]
            }
            7 => {
                t.note("duplicated");
                vec![frame.clone(), frame]
            }
            _ => vec![frame],
        }
    });
    for i in 0..10 {
        write(&mut s.alice, s.space, s.doc, &format!(" [{i}]")).await;
    }
    s.bob.sync(s.space).await.unwrap();
    assert_eq!(tally.seen(), ["dropped", "reordered", "duplicated"]);
    let expected = text(&mut s.alice, s.space, s.doc);
    assert_eq!(text(&mut s.bob, s.space, s.doc), expected);
    assert!(expected.ends_with("[9]"));
    assert!(s.bob.warnings.is_empty(), "{:?}", s.bob.warnings);
    // And Bob's own writing still reaches Alice.
    write(&mut s.bob, s.space, s.doc, " Bob.").await;
    s.alice.sync(s.space).await.unwrap();
    assert!(text(&mut s.alice, s.space, s.doc).ends_with(" Bob."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_envelopes_change_nothing_and_a_replayed_commit_is_detected() {
    let mut s = scene(Role::Contributor).await;
    let (log, epoch) = real_log(&mut s.alice, s.space).await;
    let last = log.last().unwrap().clone();
    assert_eq!(last.kind, EntryKind::Envelope);
    // The relay serves Bob a log of its own from here on, whose chain is
    // valid: the server replays Alice's last envelope at a new position.
    let shadow = Shadow::new(s.space, log.len() as u64, last.hash(), epoch);
    s.relay.shadow(&shadow);
    shadow
        .lock()
        .unwrap()
        .push(EntryKind::Envelope, epoch, last.payload.clone());
    s.bob.sync(s.space).await.unwrap();
    assert_eq!(
        text(&mut s.bob, s.space, s.doc),
        "Exposé des faits.",
        "a replayed change is applied once"
    );
    assert!(s.bob.warnings.is_empty(), "{:?}", s.bob.warnings);

    // An envelope of an earlier epoch replayed now: refused and reported.
    let records = amicus_core::space::Space::records_stream(s.space);
    let old = log
        .iter()
        .find(|e| {
            e.kind == EntryKind::Envelope
                && e.epoch < epoch
                && Header::parse(&e.payload).unwrap().stream != records
        })
        .expect("the library was written in epoch 0")
        .clone();
    shadow
        .lock()
        .unwrap()
        .push(EntryKind::Envelope, epoch, old.payload);
    s.bob.sync(s.space).await.unwrap();
    assert_eq!(s.bob.warnings.len(), 1);
    assert!(
        s.bob.warnings[0].contains("refused the envelope")
            && s.bob.warnings[0].contains(&format!("where epoch {epoch} is in force")),
        "{:?}",
        s.bob.warnings
    );
    assert_eq!(text(&mut s.bob, s.space, s.doc), "Exposé des faits.");

    // The commit that added Bob, replayed: the log no longer holds together.
    let commit = log
        .iter()
        .find(|e| e.kind == EntryKind::Commit)
        .unwrap()
        .clone();
    shadow
        .lock()
        .unwrap()
        .push(EntryKind::Commit, commit.epoch, commit.payload);
    match s.bob.sync(s.space).await {
        Err(ClientError::Forked(why)) => {
            assert!(why.contains("replayed or misplaced"), "{why}");
        }
        other => panic!("a replayed commit must be detected, got {other:?}"),
    }
    assert_eq!(s.bob.epoch(s.space).unwrap().0, epoch, "nothing was merged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_entries_are_reported_then_read_and_a_rollback_is_detected() {
    let mut s = scene(Role::Contributor).await;
    s.bob.save().unwrap();
    let space = s.space;
    let read = real_log(&mut s.alice, s.space).await.0.len() as u64;
    // The relay withholds every new entry of the space from Bob but still
    // says (in `Synced`) how long the log is.
    let tally = Tally::default();
    let t = tally.clone();
    s.relay.down(move |frame| match frame {
        ServerFrame::Entry { space: sp, entry } if sp == space && entry.seq >= read => {
            t.note("withheld");
            vec![]
        }
        other => vec![other],
    });
    write(&mut s.alice, s.space, s.doc, " Premier moyen.").await;
    write(&mut s.alice, s.space, s.doc, " Second moyen.").await;
    // Bob starts his client again: it subscribes from what it had read.
    drop(s.bob);
    let mut bob = Client::open(&s.dir.path().join("bob"), PASS).await.unwrap();
    match bob.sync(s.space).await {
        Err(ClientError::Withheld(why)) => assert!(why.contains("withholding"), "{why}"),
        other => panic!("withholding must be reported, got {other:?}"),
    }
    assert!(!tally.seen().is_empty());
    assert_eq!(
        text(&mut bob, s.space, s.doc),
        "Exposé des faits.",
        "nothing half-read is shown"
    );

    // The server relents: Bob reads everything.
    s.relay.honest();
    bob.sync_all().await.unwrap();
    let expected = text(&mut s.alice, s.space, s.doc);
    assert_eq!(text(&mut bob, s.space, s.doc), expected);

    // Now the server pretends the log is two entries shorter than what Bob
    // read (a rollback to an earlier state, or a truncated store).
    s.relay.down(move |frame| match frame {
        ServerFrame::Synced {
            space,
            next_seq,
            head,
            epoch,
        } => vec![ServerFrame::Synced {
            space,
            next_seq: next_seq - 2,
            head,
            epoch,
        }],
        ServerFrame::Entry { .. } => vec![],
        other => vec![other],
    });
    drop(bob);
    let mut bob = Client::open(&s.dir.path().join("bob"), PASS).await.unwrap();
    match bob.sync(s.space).await {
        Err(ClientError::Forked(why)) => assert!(why.contains("rolled back"), "{why}"),
        other => panic!("a rollback must be detected, got {other:?}"),
    }
}

/// A fork: the server shows Alice one commit and Bob and Carol another, in
/// the same epoch. Each side's log is a valid hash chain; the members see
/// it when they compare the space's safety code (the MLS epoch
/// authenticator), and a client that is later shown the other side's log
/// refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_log_shows_in_the_safety_code_and_is_refused_when_the_sides_meet() {
    let mut s = scene(Role::SpaceManager).await;
    let mut carol = register(s.dir.path(), &s.server, "carol").await;
    register(s.dir.path(), &s.server, "dave").await;
    register(s.dir.path(), &s.server, "erin").await;
    s.alice
        .invite(s.space, "carol", Role::Contributor)
        .await
        .unwrap();
    let carol_relay = Relay::start(&s.server.url).await;
    carol.set_server(&carol_relay.url).unwrap();
    carol.sync_all().await.unwrap();
    s.bob.sync(s.space).await.unwrap();

    let (log, epoch) = real_log(&mut s.alice, s.space).await;
    let shadow = Shadow::new(s.space, log.len() as u64, log.last().unwrap().hash(), epoch);
    s.relay.shadow(&shadow);
    carol_relay.shadow(&shadow);

    // Alice's commit goes to the server's log; Bob's, in the same epoch,
    // only to the log Bob and Carol are shown.
    s.alice
        .invite(s.space, "dave", Role::Contributor)
        .await
        .unwrap();
    s.bob.invite(s.space, "erin", Role::Reader).await.unwrap();
    carol.sync(s.space).await.unwrap();
    assert!(shadow.lock().unwrap().epoch() == epoch + 1);

    let (a_epoch, a_code) = s.alice.epoch(s.space).unwrap();
    let (b_epoch, b_code) = s.bob.epoch(s.space).unwrap();
    let (c_epoch, c_code) = carol.epoch(s.space).unwrap();
    assert_eq!(
        (a_epoch, b_epoch, c_epoch),
        (epoch + 1, epoch + 1, epoch + 1)
    );
    assert_eq!(b_code, c_code, "Bob and Carol are on the same side");
    assert_ne!(a_code, c_code, "comparing safety codes reveals the fork");
    let users = |c: &Client| -> Vec<String> {
        c.members(s.space)
            .unwrap()
            .iter()
            .map(|m| m["user"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(users(&s.alice).contains(&"dave".into()) && !users(&s.alice).contains(&"erin".into()));
    assert!(users(&carol).contains(&"erin".into()) && !users(&carol).contains(&"dave".into()));

    // Each side writes on.
    write(&mut s.alice, s.space, s.doc, " (Alice)").await;
    write(&mut s.alice, s.space, s.doc, " (Alice encore)").await;
    write(&mut carol, s.space, s.doc, " (Carol)").await;
    carol.save().unwrap();

    // The relay stops hiding the server's log from Carol: her client reads
    // the server's log again and refuses it.
    carol_relay.honest();
    drop(carol);
    let mut carol = Client::open(&s.dir.path().join("carol"), PASS)
        .await
        .unwrap();
    match carol.sync(s.space).await {
        Err(ClientError::Forked(why)) => {
            assert!(
                why.contains("rewrote") || why.contains("rolled back") || why.contains("forked"),
                "{why}"
            );
        }
        other => panic!("the other side's log must be refused, got {other:?}"),
    }
}

/// A commit nobody in the space made: built by an outsider for the space's
/// group id and epoch, and appended by the server (here through a member's
/// session, as a seized server would write it into its own log) with
/// authenticated data that claims to add the outsider's device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_add_is_refused_by_every_member() {
    use amicus_core::wire::{AppendItem, ClientFrame};
    use futures_util::{SinkExt, StreamExt};
    use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
    use openmls::prelude::*;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let mut s = scene(Role::Contributor).await;
    let mallory = register(s.dir.path(), &s.server, "mallory").await;
    let (log, epoch) = real_log(&mut s.alice, s.space).await;
    let before = s.alice.epoch(s.space).unwrap();

    // The outsider's group: same group id, brought to the space's epoch.
    let provider = amicus_core::MlsProvider::new();
    let outsider = amicus_core::identity::UserIdentity::generate(UserId::new("mallory").unwrap());
    let forger = outsider.new_device();
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .build();
    let mut group = MlsGroup::new_with_group_id(
        &provider,
        &forger,
        &config,
        GroupId::from_slice(&s.space.0),
        forger.credential_with_key(),
    )
    .unwrap();
    for _ in 0..epoch {
        group
            .self_update(&provider, &forger, LeafNodeParameters::default())
            .unwrap();
        group.merge_pending_commit(&provider).unwrap();
    }
    let last = log.last().unwrap();
    let aad = CommitAad {
        log_position: last.seq,
        log_head: last.hash(),
        roster_change: vec![RosterChange::Add {
            user: UserId::new("mallory").unwrap(),
            device: DeviceId::from_hex(&mallory.device_id()).unwrap(),
        }],
    };
    // It adds a device of the outsider (a KeyPackage of its own).
    let kp = outsider
        .new_device()
        .key_packages(&provider, 1)
        .unwrap()
        .remove(0);
    let MlsMessageBodyIn::KeyPackage(kp) =
        MlsMessageIn::tls_deserialize_exact(&kp).unwrap().extract()
    else {
        unreachable!("a KeyPackage")
    };
    let kp = kp
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .unwrap();
    group.set_aad(aad.to_bytes());
    let (commit, welcome, _) = group.add_members(&provider, &forger, &[kp]).unwrap();
    let commit = commit.tls_serialize_detached().unwrap();
    let welcome = welcome.tls_serialize_detached().unwrap();

    let token = s.bob.http().token().unwrap().to_owned();
    let url = format!("ws://{}/v1/ws", s.server.url.trim_start_matches("http://"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let frame = ClientFrame::Append {
        request: 1,
        space: s.space,
        item: AppendItem::Commit {
            epoch,
            commit,
            welcome: Some(welcome),
            aad: aad.to_bytes(),
        },
    };
    ws.send(Message::Binary(frame.encode().into()))
        .await
        .unwrap();
    let answer = loop {
        if let Some(Ok(Message::Binary(b))) = ws.next().await {
            match ServerFrame::decode(&b).unwrap() {
                f @ (ServerFrame::Accepted { .. } | ServerFrame::Refused { .. }) => break f,
                _ => continue,
            }
        }
    };
    assert!(
        matches!(answer, ServerFrame::Accepted { .. }),
        "the server logs it (it cannot read MLS): {answer:?}"
    );

    for member in [&mut s.alice, &mut s.bob] {
        member.sync(s.space).await.unwrap();
        assert!(
            member
                .warnings
                .iter()
                .any(|w| w.contains("refused the commit")),
            "{:?}",
            member.warnings
        );
        assert_eq!(
            member.epoch(s.space).unwrap(),
            before,
            "nobody moved to the forged epoch"
        );
        let users: Vec<Value> = member.members(s.space).unwrap();
        assert!(users.iter().all(|m| m["user"] != "mallory"));
    }
    // Every member refused it and reported it: the server reopened the
    // epoch (PROTOCOL §6.3), and writing goes on in it.
    let log = s.alice.fetch_log(s.space).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.kind == amicus_core::wire::EntryKind::Reopen)
    );
    s.alice
        .edit(s.space, s.doc, &[Edit::Insert(None, " Après.".into())])
        .await
        .unwrap();
    assert!(text(&mut s.alice, s.space, s.doc).ends_with(" Après."));
    s.bob.sync(s.space).await.unwrap();
    assert!(text(&mut s.bob, s.space, s.doc).ends_with(" Après."));
    assert_eq!(s.alice.epoch(s.space).unwrap(), before);
}

/// The server hands Alice, who is inviting Bob, something other than
/// Bob's KeyPackages or directory listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn substituted_key_packages_and_ghost_devices_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut alice = register(dir.path(), &server, "alice").await;
    let mut bob = register(dir.path(), &server, "bob").await;
    register(dir.path(), &server, "mallory").await;
    let space = alice.create_space().await.unwrap();
    let relay = Relay::start(&server.url).await;
    alice.set_server(&relay.url).unwrap();
    let log_len = alice.fetch_log(space).await.unwrap().len();

    // A ghost "bob": a device key certified by an identity that is not Bob's.
    let ghost_provider = amicus_core::MlsProvider::new();
    let ghost_identity = amicus_core::identity::UserIdentity::generate(UserId::new("bob").unwrap());
    let ghost = ghost_identity.new_device();
    let ghost_kp = hex::encode(&ghost.key_packages(&ghost_provider, 1).unwrap()[0]);
    let ghost_cert = hex::encode(postcard_certificate(&ghost));

    // Mallory's genuine KeyPackage, handed out as Bob's.
    let claimed: Value = reqwest::Client::new()
        .post(format!(
            "{}/v1/users/mallory/key-packages/claim",
            server.url
        ))
        .bearer_auth(alice.http().token().unwrap())
        .json(&serde_json::json!({ "except": [] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mallory_kp = claimed["key_packages"][0]["key_package"]
        .as_str()
        .unwrap()
        .to_owned();

    let substitute = |kp: String| {
        move |method: &str, path: &str, _status: u16, body: Vec<u8>| {
            if method == "POST" && path == "/v1/users/bob/key-packages/claim" {
                let mut v: Value = serde_json::from_slice(&body).unwrap();
                for k in v["key_packages"].as_array_mut().unwrap() {
                    k["key_package"] = kp.clone().into();
                }
                return serde_json::to_vec(&v).unwrap();
            }
            body
        }
    };
    for (what, kp) in [
        ("another user's KeyPackage", mallory_kp),
        ("a KeyPackage of a device Bob never certified", ghost_kp),
    ] {
        relay.http(substitute(kp));
        let refused = alice.invite(space, "bob", Role::Contributor).await;
        assert!(refused.is_err(), "{what} was accepted");
        println!("{what}: {}", refused.unwrap_err());
    }

    // A ghost device slipped into Bob's directory listing.
    let (gid, gcert) = (ghost.id().to_hex(), ghost_cert.clone());
    relay.http(move |method, path, _status, body| {
        if method == "GET" && path == "/v1/users/bob" {
            let mut v: Value = serde_json::from_slice(&body).unwrap();
            v["devices"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({ "device": gid, "certificate": gcert }));
            return serde_json::to_vec(&v).unwrap();
        }
        body
    });
    match alice.invite(space, "bob", Role::Contributor).await {
        Err(ClientError::Identity(e)) => println!("ghost device: {e}"),
        other => panic!("a ghost device must be refused, got {other:?}"),
    }

    // Bob's whole identity replaced by the ghost's, after Alice has seen
    // Bob's real key: refused until people compare safety numbers.
    let (key, gid) = (hex::encode(ghost_identity.public().0), ghost.id().to_hex());
    relay.http(move |method, path, _status, body| {
        if method == "GET" && path == "/v1/users/bob" {
            let mut v: Value = serde_json::from_slice(&body).unwrap();
            v["identity_key"] = key.clone().into();
            v["devices"] = serde_json::json!([{ "device": gid, "certificate": ghost_cert }]);
            return serde_json::to_vec(&v).unwrap();
        }
        body
    });
    match alice.invite(space, "bob", Role::Contributor).await {
        Err(ClientError::Identity(e)) => {
            assert!(e.to_string().contains("changed"), "{e}");
        }
        other => panic!("a changed identity key must be refused, got {other:?}"),
    }

    // Nothing reached the log or Bob; an honest server then works.
    assert_eq!(alice.fetch_log(space).await.unwrap().len(), log_len);
    bob.sync_all().await.unwrap();
    assert!(bob.spaces().is_empty());
    relay.honest();
    alice.invite(space, "bob", Role::Contributor).await.unwrap();
    bob.sync_all().await.unwrap();
    assert_eq!(bob.spaces(), vec![space]);
}

fn postcard_certificate(device: &amicus_core::identity::Device) -> Vec<u8> {
    postcard::to_allocvec(device.certificate()).unwrap()
}

/// The server swaps the blobs of a file: another file's chunk, or the
/// chunk with one bit flipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_or_altered_blobs_are_refused_and_nothing_is_written() {
    let mut s = scene(Role::Contributor).await;
    let src = s.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("pv.txt"),
        "Procès-verbal d'audition. ".repeat(5000),
    )
    .unwrap();
    std::fs::write(src.join("photo.jpg"), vec![0x5au8; 300_000]).unwrap();
    for name in ["pv.txt", "photo.jpg"] {
        s.alice
            .put_file(s.space, &src.join(name), name, &mut |_, _| {})
            .await
            .unwrap();
    }
    let out = s.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();

    // The relay keeps the first blob Bob downloads (the photo's chunk)...
    let kept: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let k = kept.clone();
    s.relay.http(move |method, path, status, body| {
        if method == "GET" && path.starts_with("/v1/blobs/") && status == 200 {
            k.lock().unwrap().get_or_insert(body.clone());
        }
        body
    });
    s.bob
        .get_file(s.space, "photo.jpg", &out.join("photo.jpg"), &mut |_, _| {})
        .await
        .unwrap();
    let photo_chunk = kept.lock().unwrap().clone().unwrap();

    // ...and serves it in place of the report's chunk, then the report's
    // chunk with one bit flipped.
    let tally = Tally::default();
    for swap in ["other file's chunk", "one bit flipped"] {
        let chunk = photo_chunk.clone();
        let t = tally.clone();
        s.relay.http(move |method, path, status, mut body| {
            if method == "GET" && path.starts_with("/v1/blobs/") && status == 200 {
                if swap == "one bit flipped" {
                    let at = body.len() / 2;
                    body[at] ^= 1;
                    t.note("flipped");
                    return body;
                }
                t.note("swapped");
                return chunk.clone();
            }
            body
        });
        let target = out.join("pv.txt");
        match s
            .bob
            .get_file(s.space, "pv.txt", &target, &mut |_, _| {})
            .await
        {
            Err(ClientError::File(e)) => println!("{swap}: {e}"),
            other => panic!("{swap}: expected a refusal, got {other:?}"),
        }
        assert!(!target.exists(), "{swap}: nothing may be written");
    }
    assert_eq!(tally.seen(), ["swapped", "flipped"]);
    s.relay.honest();
    let target = out.join("pv.txt");
    s.bob
        .get_file(s.space, "pv.txt", &target, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(target).unwrap(),
        std::fs::read(src.join("pv.txt")).unwrap()
    );
}
