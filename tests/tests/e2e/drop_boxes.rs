//! Drop boxes through the `amicus` command and the stock tools a witness
//! may use instead of the page (PROTOCOL §11.6): the key read with `curl`,
//! a file sealed with Debian's `age`, sent with `curl`, and opened by a
//! member who did not open the box.

use std::path::Path;
use std::process::Command;

use amicus_core::space::Role;

use crate::support::{Server, amicus_json, amicus_refused, register};

fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} must be installed (`cargo xtask test` installs it): {e}")
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn curl_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-sS"];
    all.extend_from_slice(args);
    let (ok, out, err) = run("curl", &all);
    assert!(ok, "curl {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("curl {args:?} gave {out:?}: {e}"))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Amina opens a drop box and gives its link; a witness reads the key
/// with `curl`, seals a statement with `age -r` and sends it with `curl`;
/// Bruno, a member who did not open the box, lists and opens it. A file
/// that is not an age file is refused by the server; a part sealed to
/// another key is refused by the member's device with a sentence, and
/// nothing of it is written; a file over the box's quota is refused before
/// it is sent; a closed box answers 410.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_submits_with_age_and_curl_and_a_member_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut amina = register(dir.path(), &server, "amina").await;
    let bruno = register(dir.path(), &server, "bruno").await;
    let space = amina.create_space().await.unwrap();
    amina
        .invite(space, "bruno", Role::Contributor)
        .await
        .unwrap();
    drop((amina, bruno));
    let (a, b) = (dir.path().join("amina"), dir.path().join("bruno"));
    let s = space.to_hex();

    // Only a space manager opens a box.
    let refused = amicus_refused(&b, &["intake", "create", &s, "--label", "Témoins"]);
    assert!(refused.contains("space managers"), "{refused}");
    let created = amicus_json(
        &a,
        &[
            "intake",
            "create",
            &s,
            "--label",
            "Témoins de Goma",
            "--days",
            "7",
            "--quota-mb",
            "2",
        ],
    );
    let link = created["link"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let fragment = link.split_once("/drop/#").unwrap().1.to_owned();
    assert!(link.starts_with(&server.url), "{link}");
    let fingerprint = fragment.split_once('.').unwrap().1.to_owned();

    // The witness: the key from the server, checked against the link.
    let info = curl_json(&[&format!("{}/v1/drop/{id}", server.url)]);
    let recipient = info["recipient"].as_str().unwrap().to_owned();
    let key = amicus_core::intake::IntakePublicKey::parse_age_recipient(&recipient).unwrap();
    assert!(amicus_core::intake::drop::key_matches(&key, &fingerprint));
    let statement = dir.path().join("statement.txt");
    let text = "Le 3 mars, trois hommes armés ont emmené Maître K. devant le tribunal.\n";
    std::fs::write(&statement, text).unwrap();
    let sealed = dir.path().join("statement.age");
    let (ok, _, err) = run(
        "age",
        &["-r", &recipient, "-o", path(&sealed), path(&statement)],
    );
    assert!(ok, "{err}");
    let sent = curl_json(&[
        "--data-binary",
        &format!("@{}", path(&sealed)),
        &format!("{}/v1/drop/{id}", server.url),
    ]);
    let submission = sent["id"].as_str().unwrap().to_owned();

    // Not an age file: refused by the server.
    let refused = curl_json(&[
        "--data-binary",
        &format!("@{}", path(&statement)),
        &format!("{}/v1/drop/{id}", server.url),
    ]);
    assert_eq!(refused["error"], "bad_request", "{refused}");
    // An age file sealed to another key: the server cannot tell; the
    // member's device refuses it.
    let (ok, identity, err) = run("age-keygen", &[]);
    assert!(ok, "{err}");
    let other = identity
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_owned();
    let stray = dir.path().join("stray.age");
    let (ok, _, err) = run("age", &["-r", &other, "-o", path(&stray), path(&statement)]);
    assert!(ok, "{err}");
    let stray_sent = curl_json(&[
        "--data-binary",
        &format!("@{}", path(&stray)),
        &format!("{}/v1/drop/{id}", server.url),
    ]);
    // Over the quota (2 MB): refused on its length.
    let big = dir.path().join("big.age");
    std::fs::write(&big, {
        let mut v = std::fs::read(&sealed).unwrap();
        v.resize(3 << 20, 0);
        v
    })
    .unwrap();
    let over = curl_json(&[
        "--data-binary",
        &format!("@{}", path(&big)),
        &format!("{}/v1/drop/{id}", server.url),
    ]);
    assert_eq!(over["reason"], "drop_box_full", "{over}");

    // Bruno lists the box (its label from inside the space) and opens the
    // statement.
    let listed = amicus_json(&b, &["intake", "list", &s]);
    assert_eq!(listed["key"], "current", "{listed}");
    let boxes = listed["boxes"].as_array().unwrap();
    assert_eq!(boxes.len(), 1);
    assert_eq!(boxes[0]["label"], "Témoins de Goma");
    assert_eq!(boxes[0]["link"], link.as_str());
    assert_eq!(boxes[0]["submissions"].as_array().unwrap().len(), 2);
    let out = dir.path().join("opened");
    let opened = amicus_json(
        &b,
        &["intake", "open", &s, &submission[..10], "-o", path(&out)],
    );
    let files = opened["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{opened}");
    let written = std::fs::read_to_string(files[0]["path"].as_str().unwrap()).unwrap();
    assert_eq!(written, text);
    let refused = amicus_refused(
        &b,
        &[
            "intake",
            "open",
            &s,
            stray_sent["id"].as_str().unwrap(),
            "-o",
            path(&out),
        ],
    );
    assert!(refused.contains("cannot be opened"), "{refused}");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "nothing of the stray part was written"
    );

    // Closed: the link answers 410 with its reason.
    amicus_json(&a, &["intake", "close", &s, &id]);
    let gone = curl_json(&[&format!("{}/v1/drop/{id}", server.url)]);
    assert_eq!(gone["reason"], "drop_box_closed", "{gone}");
    let (_, status, _) = run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/v1/drop/{id}", server.url),
        ],
    );
    assert_eq!(status, "410");
}
