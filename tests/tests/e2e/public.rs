//! Public libraries: a vetted filing published with signed provenance, found
//! by multilingual search; the index survives a rebuild from the store.

use std::process::Command;

use amicus_cli::Edit;
use serde_json::{Value, json};

use crate::support::{Server, amicus_bin, register};

async fn search(http: &amicus_cli::transport::Http, q: &str, lang: Option<&str>) -> Value {
    let mut params = vec![("q", q.to_owned())];
    if let Some(l) = lang {
        params.push(("lang", l.to_owned()));
    }
    http.get_query("/v1/search", &params).await.unwrap()
}

/// Rebuilds the index of the (stopped) server's `data` from its store with
/// `amicus reindex`: the command's JSON answer.
fn reindex(data: &std::path::Path) -> Value {
    std::fs::remove_dir_all(data.join("index")).unwrap();
    let out = Command::new(amicus_bin())
        .args(["--json", "reindex", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_filing_is_found_by_search_with_its_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let mut alice = register(dir.path(), &server, "alice").await;
    let bob = register(dir.path(), &server, "bob").await;
    let space = alice.create_space().await.unwrap();
    let doc = alice
        .new_document(space, "Détention arbitraire à Makala")
        .await
        .unwrap();
    alice
        .edit(
            space,
            doc,
            &[Edit::Insert(
                None,
                "Les détenus de la prison centrale vivent dans des conditions inhumaines.".into(),
            )],
        )
        .await
        .unwrap();
    let library = alice
        .create_public_space("Bibliothèque publique")
        .await
        .unwrap();
    alice
        .publish(space, doc, library, "makala-2026", Some("fr"))
        .await
        .unwrap();
    let arabic: Value = alice
        .http()
        .send(
            reqwest::Method::PUT,
            &format!("/v1/public/{}/docs/udhr-3", library.to_hex()),
            &json!({ "title": "المادة 3", "body": "لكل فرد الحق في الحياة والحرية وسلامة شخصه.", "year": 1948 }),
        )
        .await
        .unwrap();
    assert_eq!(arabic["id"], "udhr-3");

    // The index commits in the background, within a quarter of a second.
    let published = std::time::Instant::now();
    while search(bob.http(), "detention", None).await["total"] != 1
        || search(bob.http(), "حرية", None).await["total"] != 1
    {
        assert!(
            published.elapsed() < std::time::Duration::from_secs(10),
            "the published documents never became searchable"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Another member finds it, inflected and without accents.
    let r = search(bob.http(), "detention", None).await;
    assert_eq!(r["hits"][0]["id"], "makala-2026", "{r}");
    assert_eq!(r["hits"][0]["language"], "fr");
    // Matched words are highlighted, exact, with a typo or as a prefix.
    let r = search(bob.http(), "detenus inhum", None).await;
    assert!(
        r["hits"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains("<mark>détenus</mark>"),
        "{r}"
    );
    assert!(
        r["hits"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains("<mark>inhumaines</mark>"),
        "{r}"
    );
    assert_eq!(r["facets"]["language"]["fr"], 1);
    assert_eq!(
        search(bob.http(), "détenu", Some("fr")).await["hits"][0]["id"],
        "makala-2026"
    );
    assert_eq!(search(bob.http(), "détenus", Some("en")).await["total"], 0);
    // Arabic, detected, matched without the article.
    let r = search(bob.http(), "حرية", Some("ar")).await;
    assert_eq!(r["hits"][0]["id"], "udhr-3", "{r}");
    let bad: Result<Value, _> = bob
        .http()
        .get_query(
            "/v1/search",
            &[("q", "x".to_owned()), ("lang", "klingon".to_owned())],
        )
        .await;
    assert!(matches!(
        bad,
        Err(amicus_cli::ClientError::Server { status: 400, .. })
    ));

    // The provenance names opaque ids and heads, signed by alice's device.
    let record: Value = bob
        .http()
        .get(&format!("/v1/public/{}/docs/makala-2026", library.to_hex()))
        .await
        .unwrap();
    assert_eq!(record["provenance"]["source_space"], space.to_hex());
    assert_eq!(record["provenance"]["device"], alice.device_id());

    // The index is rebuilt from the store by `amicus reindex`.
    server.stop();
    assert_eq!(reindex(&data)["indexed"], 2);
    let server = Server::start(&data);
    let mut bob = bob;
    bob.set_server(&server.url).unwrap();
    assert_eq!(
        search(bob.http(), "prison centrale", None).await["hits"][0]["id"],
        "makala-2026"
    );

    // Bob may not withdraw Alice's copy; Alice does, and it is no longer
    // read or found, nor brought back by a rebuild of the index.
    let by_bob = bob.withdraw(library, "makala-2026").await;
    assert!(
        matches!(
            by_bob,
            Err(amicus_cli::ClientError::Server { status: 403, .. })
        ),
        "{by_bob:?}"
    );
    alice.set_server(&server.url).unwrap();
    alice.withdraw(library, "makala-2026").await.unwrap();
    // The index forgets it within its commit window.
    let withdrawn = std::time::Instant::now();
    while search(bob.http(), "prison centrale", None).await["total"] != 0 {
        assert!(
            withdrawn.elapsed() < std::time::Duration::from_secs(10),
            "the withdrawn copy is still found"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let gone: Result<Value, _> = bob
        .http()
        .get(&format!("/v1/public/{}/docs/makala-2026", library.to_hex()))
        .await;
    assert!(
        matches!(&gone, Err(amicus_cli::ClientError::Server { status: 410, message, .. }) if message.contains("alice")),
        "{gone:?}"
    );
    server.stop();
    assert_eq!(
        reindex(&data)["indexed"],
        1,
        "only the Arabic document is left"
    );
}
