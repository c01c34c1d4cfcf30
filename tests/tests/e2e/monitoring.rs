//! Case records and their published counts through the `amicus` command
//! (PROTOCOL §9.7, §15.4), two members against a real server: bad records
//! are refused with a sentence and nothing is written, only a space
//! manager adds a type or publishes, the counts and the CSV exports are
//! what was written (a formula made inert), and a member checks the
//! published counts against their own records, also after an edit.

use amicus_core::space::Role;
use serde_json::Value;

use crate::support::{Server, amicus_json, amicus_refused, register};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_record_count_export_publish_and_check_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut amina = register(dir.path(), &server, "amina").await;
    let bruno = register(dir.path(), &server, "bruno").await;
    let space = amina.create_space().await.unwrap();
    amina
        .invite(space, "bruno", Role::Contributor)
        .await
        .unwrap();
    let public = amina.create_public_space("Observatoire").await.unwrap();
    drop((amina, bruno));
    let (a, b) = (dir.path().join("amina"), dir.path().join("bruno"));
    let (s, p) = (space.to_hex(), public.to_hex());
    let new = |home: &std::path::Path, date: &str, country: &str, kind: &str, notes: &str| {
        amicus_json(
            home,
            &[
                "record",
                "new",
                &s,
                "--date",
                date,
                "--country",
                country,
                "--type",
                kind,
                "--profession",
                "lawyer",
                "--gender",
                "woman",
                "--status",
                "open",
                "--notes",
                notes,
            ],
        )["record"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let refused = |date: &str, country: &str, kind: &str| {
        amicus_refused(
            &b,
            &[
                "record",
                "new",
                &s,
                "--date",
                date,
                "--country",
                country,
                "--type",
                kind,
                "--profession",
                "lawyer",
                "--gender",
                "woman",
                "--status",
                "open",
            ],
        )
    };
    // Bad records: a sentence each, nothing written.
    assert!(refused("2099-01-01", "FR", "threat").contains("future"));
    assert!(refused("2025-02-30", "FR", "threat").contains("not a date"));
    assert!(refused("2025-01-01", "XX", "threat").contains("ISO 3166-1"));
    assert!(refused("2025-01-01", "FR", "bar_strike").contains("bar_strike"));
    let listed = amicus_json(&b, &["record", "ls", &s]);
    assert_eq!(
        listed,
        Value::Array(Vec::new()),
        "a refused record was written"
    );

    // Only a space manager adds a type; a member then uses it.
    let said = amicus_refused(&b, &["record", "add-type", &s, "bar_strike", "Grève"]);
    assert!(said.contains("space managers"), "{said}");
    amicus_json(
        &a,
        &[
            "record",
            "add-type",
            &s,
            "bar_strike",
            "Grève du barreau réprimée",
        ],
    );
    new(
        &b,
        "2025-03",
        "FR",
        "bar_strike",
        "=HYPERLINK(\"http://x\")",
    );
    new(&b, "2024-05-02", "FR", "threat", "Maître S. menacée");
    let third = new(&a, "2025-01-20", "FR", "threat", "");
    new(&a, "2025", "TN", "arrest", "");

    let listed = amicus_json(&b, &["record", "ls", &s, "--country", "FR"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[0]["date"], "2025-03", "newest first");
    assert_eq!(listed[0]["by"]["author"], "bruno");
    assert_eq!(listed[0]["by"]["verified"], true);
    let counts = amicus_json(&b, &["record", "counts", &s]);
    assert_eq!(counts["country"]["FR"], 3);
    assert_eq!(counts["type"]["bar_strike"], 1);
    assert_eq!(counts["year"]["2025"], 3);

    let csv = std::process::Command::new(crate::support::amicus_bin())
        .arg("--home")
        .arg(&b)
        .args(["record", "export", &s])
        .env(
            "AMICUS_PASSPHRASE",
            std::str::from_utf8(crate::support::PASS).unwrap(),
        )
        .output()
        .unwrap();
    assert!(csv.status.success());
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(csv.starts_with("id,date,country,region,types"), "{csv}");
    assert!(csv.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{csv}");
    assert_eq!(csv.lines().count(), 5);

    // Publishing: a member may not; the manager sees, then publishes.
    let publish = [
        "record",
        "publish",
        &s,
        "--to",
        &p,
        "--id",
        "carte",
        "--title",
        "Violations",
        "--by",
        "country,year",
        "--k",
        "2",
    ];
    let dry_run = [&publish[..], &["--dry-run"]].concat();
    let said = amicus_refused(&b, &publish);
    assert!(said.contains("space managers"), "{said}");
    let preview = amicus_json(&a, &dry_run);
    assert_eq!(
        preview["cells"],
        serde_json::json!([{ "values": ["FR", "2025"], "count": 2 }])
    );
    assert_eq!(
        preview["suppressed"], 2,
        "FR 2024 and TN 2025 have one record each"
    );
    let listed: Value = reqwest::get(format!("{}/v1/public/{p}/aggregates", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["aggregates"],
        Value::Array(Vec::new()),
        "a dry run published"
    );
    let published = amicus_json(&a, &publish);
    assert_eq!(published["cells"], preview["cells"]);

    // Bruno checks the counts against his own records, before and after
    // an edit: they name the heads they were computed at.
    let check = amicus_json(&b, &["record", "check", &p, "carte"]);
    assert_eq!(check["check"], "matches");
    amicus_json(
        &a,
        &[
            "record",
            "edit",
            &s,
            &third,
            "--status",
            "closed",
            "--outcome",
            "Classée",
        ],
    );
    let check = amicus_json(&b, &["record", "check", &p, "carte"]);
    assert_eq!(check["check"], "matches");
    let edited = amicus_json(&b, &["record", "ls", &s, "--status", "closed"]);
    assert_eq!(edited[0]["record"], third.as_str());
    assert_eq!(edited[0]["outcome"], "Classée");
    assert_eq!(edited[0]["edited_by"]["author"], "amina");
    // Taken out, a record is no longer listed nor counted.
    amicus_json(&b, &["record", "rm", &s, &third]);
    let listed = amicus_json(&a, &["record", "ls", &s, "--status", "closed"]);
    assert_eq!(listed, Value::Array(Vec::new()));
    let counts = amicus_json(&a, &["record", "counts", &s]);
    assert_eq!(counts["country"]["FR"], 2);
}
