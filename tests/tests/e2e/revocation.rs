//! A seized phone: Amina revokes it from her laptop. The server stops
//! serving it at once, every space it was in removes it in one commit (the
//! laptop's, or, where the laptop is not a member, the next member's to
//! refresh), it reads nothing written afterwards even when handed the whole
//! log, and inviting Amina again does not bring it back.

use amicus_cli::{Client, ClientError, Edit};
use amicus_core::space::Role;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{PASS, Server, amicus_json, register};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_phone_is_shut_out_of_the_server_and_of_every_space() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut amina = register(dir.path(), &server, "amina").await;
    let mut bruno = register(dir.path(), &server, "bruno").await;
    let mut phone = amina
        .add_device(&dir.path().join("amina-phone"), PASS)
        .await
        .unwrap();
    let phone_id = phone.device_id();

    // Bruno manages two spaces; Amina (a contributor, on both devices) is in both.
    let mut spaces = Vec::new();
    for title in ["Requête CEDH", "Mémoire en défense"] {
        let space = bruno.create_space().await.unwrap();
        bruno
            .invite(space, "amina", Role::Contributor)
            .await
            .unwrap();
        let doc = bruno.new_document(space, title).await.unwrap();
        bruno
            .edit(space, doc, &[Edit::Insert(None, "before. ".into())])
            .await
            .unwrap();
        spaces.push((space, doc));
    }
    // A space the phone made itself, with Bruno as a contributor: the
    // laptop is not in it.
    let own = phone.create_space().await.unwrap();
    phone.invite(own, "bruno", Role::Contributor).await.unwrap();
    bruno.sync_all().await.unwrap();
    assert!(in_roster(&bruno, own, &phone_id));
    phone.sync_all().await.unwrap();
    amina.sync_all().await.unwrap();
    for (space, doc) in &spaces {
        assert_eq!(phone.read(*space, *doc).unwrap().body, "before. ");
        assert!(in_roster(&bruno, *space, &phone_id));
    }
    // The phone is connected when it is revoked.
    let token = phone.http().token().unwrap().to_owned();
    let url = format!("ws://{}/v1/ws", server.url.trim_start_matches("http://"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let epochs: Vec<u64> = spaces
        .iter()
        .map(|(s, _)| bruno.epoch(*s).unwrap().0)
        .collect();

    // The phone cannot revoke the laptop (it does not hold the identity key).
    let laptop_id = amina.device_id();
    assert!(matches!(
        phone.revoke_device(&laptop_id).await,
        Err(ClientError::Identity(_))
    ));

    // Amina revokes it with the command, on the laptop (its home is free
    // while the command runs).
    drop(amina);
    let amicus = |args: &[&str]| amicus_json(&dir.path().join("amina"), args);
    let revoked = amicus(&["device", "revoke", &phone_id]);
    let mut removed: Vec<String> = revoked["removed_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    removed.sort();
    let mut expected: Vec<String> = spaces.iter().map(|(s, _)| s.to_hex()).collect();
    expected.sort();
    assert_eq!(removed, expected, "removed from both spaces");
    let listed = amicus(&["device", "list"]);
    let devices = listed["devices"].as_array().unwrap();
    assert!(
        devices
            .iter()
            .any(|d| d["device"] == phone_id.as_str() && d["revoked"] == true)
    );
    let mut amina = Client::open(&dir.path().join("amina"), PASS).await.unwrap();

    // Its open socket is closed with 4003...
    let code = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(Some(f)))) => return Some(u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the revoked device's socket stays open");
    assert_eq!(code, Some(4003));
    // ...its session is refused, and signing in again gets 401.
    let refused = phone.sync_all().await;
    assert!(
        matches!(&refused, Err(ClientError::Server { status: 401, code, .. }) if code == "device_revoked"),
        "{refused:?}"
    );
    assert!(matches!(
        phone.login().await,
        Err(ClientError::Server { status: 401, code, .. }) if code == "device_revoked"
    ));
    let devices = amina.devices().await.unwrap();
    assert!(devices.iter().any(|d| d.device == phone_id && d.revoked));
    assert!(
        devices
            .iter()
            .any(|d| d.device == laptop_id && d.this && !d.revoked)
    );

    // One commit per space took it out, and Bruno's client accepted it;
    // in the phone's own space, Bruno's client committed the revocation
    // itself when it refreshed (the server lists it; Bruno's client checks
    // its signature against Amina's pinned key).
    let own_epoch = bruno.epoch(own).unwrap().0;
    bruno.sync_all().await.unwrap();
    assert_eq!(bruno.epoch(own).unwrap().0, own_epoch + 1);
    assert!(!in_roster(&bruno, own, &phone_id));
    bruno.sync_all().await.unwrap();
    assert_eq!(bruno.epoch(own).unwrap().0, own_epoch + 1, "committed once");
    for ((space, doc), before) in spaces.iter().zip(&epochs) {
        assert_eq!(bruno.epoch(*space).unwrap().0, before + 1);
        assert!(!in_roster(&bruno, *space, &phone_id));
        assert!(in_roster(&bruno, *space, &laptop_id));
        bruno
            .edit(
                *space,
                *doc,
                &[Edit::Insert(None, "AFTER the seizure".into())],
            )
            .await
            .unwrap();
    }
    amina.sync_all().await.unwrap();
    for (space, doc) in &spaces {
        assert_eq!(
            amina.read(*space, *doc).unwrap().body,
            "before. AFTER the seizure"
        );
        // Handed the whole log, the phone opens nothing written afterwards.
        let log = bruno.fetch_log(*space).await.unwrap();
        phone.ingest(*space, log);
        assert_eq!(phone.read(*space, *doc).unwrap().body, "before. ");
        assert!(phone.unreadable(*space) >= 1);
    }

    // Inviting Amina again adds nothing: the phone is revoked, the laptop in.
    for (space, _) in &spaces {
        let again = bruno.invite(*space, "amina", Role::Contributor).await;
        assert!(matches!(again, Err(ClientError::NotFound(_))), "{again:?}");
        assert!(!in_roster(&bruno, *space, &phone_id));
    }
}

fn in_roster(client: &Client, space: amicus_core::SpaceId, device: &str) -> bool {
    client
        .members(space)
        .unwrap()
        .iter()
        .any(|m| m["device"] == device)
}
