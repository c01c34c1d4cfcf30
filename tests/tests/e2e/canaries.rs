//! Canaries written into titles, text, comments, file names and file bodies
//! appear nowhere the server keeps anything: not in any byte under its data
//! directory (raw, base64, hex, UTF-16), not in any sled value read back
//! through sled, not in its logs; and not in the clients' state at rest.

use std::path::Path;

use amicus_cli::Edit;
use amicus_core::space::Role;
use base64::Engine;

use crate::support::{Server, register};

/// A canary and its encoded forms (form name, bytes).
type Canary = (String, Vec<(String, Vec<u8>)>);

/// The forms a canary could take when stored or logged.
fn forms(canary: &str) -> Vec<(String, Vec<u8>)> {
    let raw = canary.as_bytes();
    let mut out = vec![
        ("raw".to_owned(), raw.to_vec()),
        ("hex".to_owned(), hex::encode(raw).into_bytes()),
        ("HEX".to_owned(), hex::encode_upper(raw).into_bytes()),
        (
            "utf-16le".to_owned(),
            canary.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        ),
        (
            "utf-16be".to_owned(),
            canary.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        ),
    ];
    for (name, engine) in [
        ("base64", &base64::engine::general_purpose::STANDARD),
        ("base64url", &base64::engine::general_purpose::URL_SAFE),
    ] {
        // Whatever the alignment of the canary in the encoded data, one of
        // these three middles appears in its encoding.
        for shift in 0..3 {
            let mut input = vec![0u8; shift];
            input.extend_from_slice(raw);
            let enc = engine.encode(&input);
            out.push((
                format!("{name}+{shift}"),
                enc.as_bytes()[4..enc.len() - 4].to_vec(),
            ));
        }
    }
    out
}

fn find(haystack: &[u8], canaries: &[Canary]) -> Option<String> {
    for (canary, forms) in canaries {
        for (form, needle) in forms {
            if haystack
                .windows(needle.len())
                .any(|w| w == needle.as_slice())
            {
                return Some(format!("{canary} as {form}"));
            }
        }
    }
    None
}

fn scan_dir(dir: &Path, canaries: &[Canary], files: &mut usize) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan_dir(&path, canaries, files);
        } else {
            *files += 1;
            let bytes = std::fs::read(&path).unwrap();
            if let Some(hit) = find(&bytes, canaries) {
                panic!("{hit} found in {}", path.display());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_appear_nowhere_on_the_server_nor_in_client_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let mut alice = register(dir.path(), &server, "alice").await;
    let mut bob = register(dir.path(), &server, "bob").await;
    let tag = hex::encode(amicus_core::MessageId::random().0);
    let canary = |what: &str| format!("canary-{what}-{tag}");
    let (title, text, comment, file_name, file_body) = (
        canary("title"),
        canary("text"),
        canary("comment"),
        canary("filename"),
        canary("filebody"),
    );

    let space = alice.create_space().await.unwrap();
    alice.invite(space, "bob", Role::Contributor).await.unwrap();
    let doc = alice.new_document(space, &title).await.unwrap();
    alice
        .edit(
            space,
            doc,
            &[Edit::Insert(None, format!("Témoin protégé : {text}. "))],
        )
        .await
        .unwrap();
    alice
        .edit(space, doc, &[Edit::Comment(0, 6, comment.clone())])
        .await
        .unwrap();
    let plain = dir.path().join("statement.txt");
    std::fs::write(&plain, format!("{file_body}\n").repeat(5000)).unwrap();
    alice
        .put_file(space, &plain, &file_name, &mut |_, _| {})
        .await
        .unwrap();

    // A public document fills the search index, which is scanned too.
    let library = alice.create_public_space("Bibliothèque").await.unwrap();
    let _: serde_json::Value = alice
        .http()
        .send(
            reqwest::Method::PUT,
            &format!("/v1/public/{}/docs/rapport", library.to_hex()),
            &serde_json::json!({ "title": "Rapport annuel", "body": "Les libertés publiques en 2026." }),
        )
        .await
        .unwrap();

    // The content really went through: bob reads every canary.
    bob.sync_all().await.unwrap();
    let read = bob.read(space, doc).unwrap();
    assert_eq!(read.title, title);
    assert!(read.body.contains(&text));
    assert!(
        read.comments
            .iter()
            .any(|c| c.to_string().contains(&comment))
    );
    let out = dir.path().join("statement.out");
    bob.get_file(space, &file_name, &out, &mut |_, _| {})
        .await
        .unwrap();
    assert!(std::fs::read_to_string(&out).unwrap().contains(&file_body));
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(&plain).unwrap();
    drop(alice);
    drop(bob);
    let log = server.log.clone();
    server.stop();

    let canaries: Vec<Canary> = [&title, &text, &comment, &file_name, &file_body]
        .into_iter()
        .map(|c| (c.clone(), forms(c)))
        .collect();
    // The scanner itself finds each form wherever it sits.
    for shift in 0..4 {
        let mut planted = vec![b'x'; shift];
        planted.extend_from_slice(text.as_bytes());
        planted.extend_from_slice(b"tail");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&planted);
        let utf16: Vec<u8> = String::from_utf8_lossy(&planted)
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        for encoded in [
            b64.into_bytes(),
            hex::encode(&planted).into_bytes(),
            utf16,
            planted.clone(),
        ] {
            assert!(
                find(&encoded, &canaries).is_some(),
                "the scanner misses a planted canary"
            );
        }
    }
    let index_files = std::fs::read_dir(data.join("index")).unwrap().count();
    assert!(
        index_files > 1,
        "the search index holds the public document"
    );
    let mut files = 0;
    scan_dir(&data, &canaries, &mut files);
    assert!(files >= 3, "the data directory holds the store and a blob");

    let db = sled::open(data.join("store")).unwrap();
    let mut values = 0;
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        for item in tree.iter() {
            let (k, v) = item.unwrap();
            values += 1;
            for bytes in [&k[..], &v[..]] {
                if let Some(hit) = find(bytes, &canaries) {
                    panic!(
                        "{hit} found in sled tree {}",
                        String::from_utf8_lossy(&name)
                    );
                }
            }
        }
    }
    assert!(values > 10, "sled holds the logs");
    drop(db);

    let logs = std::fs::read(&log).unwrap();
    assert!(logs.len() > 100, "the server logged its work");
    if let Some(hit) = find(&logs, &canaries) {
        panic!("{hit} found in the server's log");
    }
    let mut client_files = 0;
    for who in ["alice", "bob"] {
        scan_dir(&dir.path().join(who), &canaries, &mut client_files);
    }
    println!(
        "scanned {files} files and {values} sled entries under the data directory, {} bytes of logs, {client_files} client state files: no canary",
        logs.len()
    );
}
