//! Canaries written into titles, text, comments, file names and file bodies,
//! a discussion's subject and post, a space's name, a file's new version, a
//! drop box's label and a witness's statement, file name and file appear
//! nowhere the server keeps anything: `amicus audit` finds none in
//! any byte under its data directory (raw, base64, hex, UTF-16), nor in any
//! sled value read back through sled, and its hash chains, blobs and index
//! check out; the canaries are not in the server's logs, nor in the
//! clients' state at rest. Then the audit is shown to find what is planted:
//! an encoded canary, a corrupted blob, a confidential document in the
//! index, a rewritten log entry.

use std::path::Path;
use std::process::Command;

use amicus_cli::Edit;
use amicus_core::intake::drop::{self, Part};
use amicus_core::intake::{self, IntakePublicKey};
use amicus_core::space::Role;
use amicus_server::audit::{Canary, find};
use base64::Engine;
use serde_json::Value;

use crate::support::{Server, amicus_bin, register};

fn scan_dir(dir: &Path, canaries: &[Canary], files: &mut usize) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan_dir(&path, canaries, files);
        } else {
            *files += 1;
            let bytes = std::fs::read(&path).unwrap();
            if let Some((canary, form)) = find(canaries, &bytes) {
                panic!("{canary} as {form} found in {}", path.display());
            }
        }
    }
}

/// Runs `amicus audit`: its exit status and JSON report.
pub(crate) fn audit(data: &Path, canary_file: &Path) -> (bool, Value) {
    let out = Command::new(amicus_bin())
        .args(["audit", "--data"])
        .arg(data)
        .arg("--canary")
        .arg(canary_file)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "audit printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

fn kinds(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_appear_nowhere_and_the_audit_finds_what_is_planted() {
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
    let (subject, post, space_name, version_body) = (
        canary("subject"),
        canary("post"),
        canary("spacename"),
        canary("versionbody"),
    );
    let (drop_label, drop_statement, drop_file_name, drop_file_body) = (
        canary("droplabel"),
        canary("dropstatement"),
        canary("dropfilename"),
        canary("dropfilebody"),
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
    let first = alice
        .put_file(space, &plain, &file_name, &mut |_, _| {})
        .await
        .unwrap();
    // A discussion (subject, a post that mentions Bob), the space's name,
    // and a new version of the file.
    let thread = alice
        .new_discussion(space, &subject, &format!("@bob {post}"), &[])
        .await
        .unwrap();
    alice.set_profile(space, &space_name, "").await.unwrap();
    let revised = dir.path().join("revised.txt");
    std::fs::write(&revised, format!("{version_body}\n").repeat(3000)).unwrap();
    alice
        .put_version(space, &revised, &first.file_id.to_string(), &mut |_, _| {})
        .await
        .unwrap();
    std::fs::remove_file(&revised).unwrap();
    // A drop box (its label) and a witness's submission (a statement and a
    // file with its name), sent without an account as the page sends it.
    let (dropbox, _) = alice
        .open_drop_box(space, &drop_label, 7, 8 << 20)
        .await
        .unwrap();
    let submission = witness_sends(
        &server.url,
        &dropbox,
        &[
            Part::statement(&drop_statement),
            Part::file(
                &drop_file_name,
                "text/plain",
                format!("{drop_file_body}\n").repeat(3000).into_bytes(),
            ),
        ],
    )
    .await;

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
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains(&version_body)
    );
    std::fs::remove_file(&out).unwrap();
    bob.get_file_version(space, &file_name, Some(1), &out, &mut |_, _| {})
        .await
        .unwrap();
    assert!(std::fs::read_to_string(&out).unwrap().contains(&file_body));
    std::fs::remove_file(&out).unwrap();
    let d = bob.discussion(space, thread).unwrap();
    assert_eq!(d.title, subject);
    assert!(d.posts[0].text.contains(&post));
    assert_eq!(
        bob.profile(space).unwrap().name.as_deref(),
        Some(space_name.as_str())
    );
    let (_, parts) = bob.open_submission(space, &submission).await.unwrap();
    assert_eq!(parts[0], Part::statement(&drop_statement));
    assert_eq!(parts[1].name, drop_file_name);
    assert!(String::from_utf8_lossy(&parts[1].content).contains(&drop_file_body));
    let boxes = bob.drop_boxes(space).await.unwrap();
    assert_eq!(boxes.boxes[0].label.as_deref(), Some(drop_label.as_str()));
    std::fs::remove_file(&plain).unwrap();
    drop(alice);
    drop(bob);
    let log = server.log.clone();
    server.stop();

    let all = [
        &title,
        &text,
        &comment,
        &file_name,
        &file_body,
        &subject,
        &post,
        &space_name,
        &version_body,
        &drop_label,
        &drop_statement,
        &drop_file_name,
        &drop_file_body,
    ];
    let canaries: Vec<Canary> = all.iter().map(|c| Canary::new(c).unwrap()).collect();
    let canary_file = dir.path().join("canaries.txt");
    std::fs::write(
        &canary_file,
        all.iter().map(|c| format!("{c}\n")).collect::<String>(),
    )
    .unwrap();
    let index_files = std::fs::read_dir(data.join("index")).unwrap().count();
    assert!(
        index_files > 1,
        "the search index holds the public document"
    );

    // The audit of the clean directory passes, having looked everywhere.
    let (passed, report) = audit(&data, &canary_file);
    assert!(passed, "{report:#}");
    assert_eq!(report["canaries"], all.len());
    assert!(report["spaces"].as_u64().unwrap() >= 2, "{report}");
    assert!(report["log_entries"].as_u64().unwrap() >= 4, "{report}");
    assert!(report["blobs"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["drop_chunks"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(report["index_documents"], 1, "{report}");
    assert!(report["files_scanned"].as_u64().unwrap() >= 3, "{report}");
    assert!(report["sled_entries"].as_u64().unwrap() > 10, "{report}");
    let files = report["files_scanned"].as_u64().unwrap();
    let values = report["sled_entries"].as_u64().unwrap();

    let logs = std::fs::read(&log).unwrap();
    assert!(logs.len() > 100, "the server logged its work");
    if let Some((canary, form)) = find(&canaries, &logs) {
        panic!("{canary} as {form} found in the server's log");
    }
    let mut client_files = 0;
    for who in ["alice", "bob"] {
        scan_dir(&dir.path().join(who), &canaries, &mut client_files);
    }
    println!(
        "audit: {files} files and {values} sled entries under the data directory; {} bytes of logs, {client_files} client state files: no canary",
        logs.len()
    );

    // An encoded canary planted anywhere under the directory is found.
    let planted = data.join("blobs").join("notes.bin");
    let mut bytes = b"xx".to_vec();
    bytes.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(format!("y{text}z"))
            .as_bytes(),
    );
    std::fs::write(&planted, &bytes).unwrap();
    let (passed, report) = audit(&data, &canary_file);
    assert!(!passed);
    let canary_findings: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "canary")
        .collect();
    assert_eq!(canary_findings.len(), 1, "{report:#}");
    assert!(
        canary_findings[0]["location"]
            .as_str()
            .unwrap()
            .ends_with("notes.bin"),
        "{report:#}"
    );
    assert!(
        canary_findings[0]["detail"]
            .as_str()
            .unwrap()
            .contains("base64"),
        "{report:#}"
    );
    std::fs::remove_file(&planted).unwrap();

    // A blob whose content no longer matches its name is found.
    let blob = first_blob(&data.join("blobs"));
    let original = std::fs::read(&blob).unwrap();
    let mut corrupt = original.clone();
    corrupt[original.len() / 2] ^= 1;
    std::fs::write(&blob, &corrupt).unwrap();
    let (passed, report) = audit(&data, &canary_file);
    assert!(!passed);
    assert_eq!(kinds(&report), vec!["blob_hash"], "{report:#}");
    std::fs::write(&blob, &original).unwrap();

    // The drop boxes' chunks: one altered is found as a blob is; one no
    // submission names (a witness's bytes kept for no one) is found; one
    // of a complete submission gone is found.
    let chunk = first_blob(&data.join("drop-chunks"));
    let original = std::fs::read(&chunk).unwrap();
    let mut corrupt = original.clone();
    corrupt[0] ^= 1;
    std::fs::write(&chunk, &corrupt).unwrap();
    let (passed, report) = audit(&data, &canary_file);
    assert!(!passed);
    assert_eq!(kinds(&report), vec!["blob_hash"], "{report:#}");
    std::fs::write(&chunk, &original).unwrap();
    let kept_for_no_one = b"age-encryption.org/v1\n-> X25519 left behind";
    let hash = blake3::hash(kept_for_no_one).to_hex().to_string();
    let stray = data.join("drop-chunks").join(&hash[..2]).join(&hash);
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, kept_for_no_one).unwrap();
    let (passed, report) = audit(&data, &canary_file);
    assert!(!passed);
    assert_eq!(kinds(&report), vec!["stray_drop_chunk"], "{report:#}");
    std::fs::remove_file(&stray).unwrap();
    std::fs::remove_file(&chunk).unwrap();
    let (passed, report) = audit(&data, &canary_file);
    assert!(!passed);
    assert_eq!(kinds(&report), vec!["missing_drop_chunk"], "{report:#}");
    std::fs::write(&chunk, &original).unwrap();
    assert!(audit(&data, &canary_file).0, "clean again");

    // A document of the confidential space in the index is found.
    let leak = amicus_search::PublicDocument {
        space: space.to_hex(),
        id: "leak".into(),
        title: "Not public".into(),
        body: "Should never be indexed.".into(),
        language: None,
        kind: amicus_search::DocKind::Document,
        year: None,
    };
    {
        let index = amicus_search::SearchIndex::open(&data.join("index")).unwrap();
        index.upsert(&leak).unwrap();
        index.commit().unwrap();
    }
    let (passed, report) = audit(&data, &canary_file);
    assert!(!passed);
    assert_eq!(kinds(&report), vec!["index_not_public"], "{report:#}");
    {
        let index = amicus_search::SearchIndex::open(&data.join("index")).unwrap();
        index.delete(&leak.space, &leak.id).unwrap();
        index.commit().unwrap();
    }
    assert!(audit(&data, &canary_file).0, "clean again");

    // A log entry rewritten in the store breaks the chain.
    {
        let db = sled::open(data.join("store")).unwrap();
        let log = db.open_tree("log").unwrap();
        let (key, value) = log.iter().nth(1).unwrap().unwrap();
        let mut changed = value.to_vec();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        log.insert(key, changed).unwrap();
        db.flush().unwrap();
    }
    let (passed, report) = audit(&data, &canary_file);
    assert!(!passed);
    let found = kinds(&report);
    assert!(
        found == vec!["broken_chain"] || found == vec!["head_mismatch"],
        "{report:#}"
    );
}

/// Sends `parts` to a drop box as its page does, without an account: the
/// key read from the server, each part sealed to it, declared, uploaded
/// in chunks, done. Returns the submission's id.
async fn witness_sends(server: &str, dropbox: &str, parts: &[Part]) -> String {
    let http = reqwest::Client::new();
    let info: Value = http
        .get(format!("{server}/v1/drop/{dropbox}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = IntakePublicKey::parse_age_recipient(info["recipient"].as_str().unwrap()).unwrap();
    let sealed: Vec<Vec<u8>> = parts
        .iter()
        .map(|p| intake::seal(&key, &p.encode()))
        .collect();
    let declared: Vec<Value> = sealed
        .iter()
        .map(|p| {
            let chunks: Vec<String> = drop::chunks(p).map(|(id, _)| hex::encode(id)).collect();
            serde_json::json!({ "size": p.len(), "chunks": chunks })
        })
        .collect();
    let answer: Value = http
        .post(format!("{server}/v1/drop/{dropbox}/submissions"))
        .json(&serde_json::json!({ "epoch": info["epoch"], "parts": declared }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    for part in &sealed {
        for (hash, bytes) in drop::chunks(part) {
            let r = http
                .put(format!(
                    "{server}/v1/drop/{dropbox}/chunks/{}",
                    hex::encode(hash)
                ))
                .body(bytes.to_vec())
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
        }
    }
    let r = http
        .post(format!("{server}/v1/drop/{dropbox}/submissions/{id}/done"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    id
}

fn first_blob(dir: &Path) -> std::path::PathBuf {
    for shard in std::fs::read_dir(dir).unwrap() {
        let shard = shard.unwrap().path();
        if shard.is_dir()
            && !shard.ends_with("tmp")
            && let Some(f) = std::fs::read_dir(&shard).unwrap().next()
        {
            return f.unwrap().path();
        }
    }
    panic!("no blob under {}", dir.display());
}
