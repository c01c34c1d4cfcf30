//! The web app after one visit, with the network gone: it starts from its
//! service worker, unlocks, shows the filing read before and takes an edit,
//! which reaches the other member once the network is back. Screenshots go
//! to `<target>/browser-screenshots-offline/`.

use std::time::Duration;

use serde_json::json;

use crate::browser::{
    CHROMIUM, LONG, sign_up, submit_sign_in, target_dir, web_dir, worker_ready_and_stored,
};
use crate::support::{Server, amicus_json, register, shared_filing};
use crate::webdriver::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_one_visit_the_app_starts_and_takes_edits_without_the_network() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!("web = {web:?}\n");
    let server = Server::start_with(&data, &config);
    let url = server.url.clone();
    let listen = url.trim_start_matches("http://").to_owned();
    let shots = target_dir().join("browser-screenshots-offline");
    let _ = std::fs::remove_dir_all(&shots);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();

    // One visit: Amina signs up; Bruno shares a filing with her; she reads
    // it; the app's worker is installed.
    let amina = Browser::start("amina", "fr", &shots, &downloads).await;
    amina.resize(360, 740).await;
    sign_up(&amina, &url, "amina").await;
    let mut bruno = register(dir.path(), &server, "bruno").await;
    let (space, doc) = shared_filing(&mut bruno, "amina").await;
    drop(bruno);
    let filing = format!("#/doc/{space}/{doc}");
    let shows = |text: &str| {
        format!(
            "return (document.getElementById('editor')?.textContent || '').includes({})",
            json!(text)
        )
    };
    amina
        .js("location.hash = arguments[0]", json!([filing]))
        .await;
    amina
        .wait_for("the filing at Amina's", &shows("Exposé des faits."), LONG)
        .await;
    worker_ready_and_stored(&amina).await;
    // The network is gone (the server stopped): the app starts from the
    // worker, unlocks from this browser's state, and shows the filing.
    server.stop();
    amina.goto("about:blank").await;
    amina.goto(&url).await;
    amina
        .wait_for(
            "the unlock form without the network",
            "return !!document.querySelector('#sign-in input[name=user]')",
            LONG,
        )
        .await;
    assert_eq!(
        amina
            .js(
                "return navigator.serviceWorker.controller !== null",
                json!([])
            )
            .await,
        json!(true),
        "the page came from the worker"
    );
    submit_sign_in(&amina, "amina").await;
    amina
        .wait_for(
            "the spaces page, offline",
            "return !!document.querySelector('#new-space') \
             && document.getElementById('connection')?.className === 'offline'",
            LONG,
        )
        .await;
    amina
        .js("location.hash = arguments[0]", json!([filing]))
        .await;
    amina
        .wait_for("the filing, offline", &shows("Exposé des faits."), LONG)
        .await;
    amina.type_into("#editor", "Écrit sans réseau. ").await;
    amina
        .wait_for("the offline edit", &shows("Écrit sans réseau."), LONG)
        .await;
    amina.screenshot("amina-offline-filing").await;

    // The network is back: the edit reaches Bruno.
    let server = Server::start_at(&data, &config, &listen);
    let b = dir.path().join("bruno");
    let mut seen = String::new();
    for _ in 0..60 {
        amicus_json(&b, &["sync"]);
        let read = amicus_json(&b, &["doc", "cat", &space.to_hex(), &doc.to_hex()]);
        seen = read["body"].as_str().unwrap_or_default().to_owned();
        if seen.contains("Écrit sans réseau.") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(seen.contains("Écrit sans réseau."), "Bruno reads {seen:?}");
    assert!(seen.contains("Exposé des faits."), "Bruno reads {seen:?}");
    server.stop();
}
