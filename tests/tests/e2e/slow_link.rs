//! The web app over an emulated slow 3G link (400 kbit/s each way, 400 ms
//! of latency, through the DevTools protocol): the time of a first visit
//! to a signed-up, connected account, and of a repeat visit to an unlocked
//! spaces page, with the bytes each transfers. A repeat visit, served by
//! the app's service worker, transfers at most 50 KB. The times are
//! printed (they depend on the machine); the bytes are asserted.

use std::time::Instant;

use serde_json::{Value, json};

use crate::browser::{
    CHROMIUM, LONG, submit_sign_in, target_dir, web_dir, worker_ready_and_stored,
};
use crate::support::Server;
use crate::webdriver::Browser;

/// Bytes the page's document and resources came with (Resource Timing;
/// what a service worker answers counts nothing).
const TRANSFERRED: &str = "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).reduce((n, e) => n + (e.transferSize || 0), 0)";

async fn slow(b: &Browser) {
    b.cdp("Network.enable", json!({})).await;
    b.cdp(
        "Network.emulateNetworkConditions",
        json!({
            "offline": false,
            "latency": 400,
            "downloadThroughput": 400_000 / 8,
            "uploadThroughput": 400_000 / 8,
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_slow_3g_a_first_visit_and_a_repeat_visit_are_measured() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &format!("web = {web:?}\n"));
    let shots = target_dir().join("browser-screenshots-slow");
    let _ = std::fs::remove_dir_all(&shots);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let amina = Browser::start("amina", "fr", &shots, &downloads).await;
    amina.resize(360, 740).await;
    slow(&amina).await;

    // First visit: the page, then signing up (the client's module comes
    // with it), to the spaces page connected.
    let start = Instant::now();
    amina.goto(&server.url).await;
    amina.element("#sign-up input[name=user]").await;
    let page = start.elapsed();
    amina.type_into("#sign-up input[name=user]", "amina").await;
    amina
        .type_into(
            "#sign-up input[name=passphrase]",
            "correct horse battery staple",
        )
        .await;
    amina.click("#sign-up button[type=submit]").await;
    let online =
        "const c = document.getElementById('connection'); return c && c.className === 'online'";
    amina
        .wait_for("the first visit, connected", online, LONG * 4)
        .await;
    let first = start.elapsed();
    let first_bytes = amina.js(TRANSFERRED, json!([])).await;
    worker_ready_and_stored(&amina).await;

    // Repeat visit: to the unlocked spaces page.
    amina.goto("about:blank").await;
    slow(&amina).await;
    let again = Instant::now();
    amina.goto(&server.url).await;
    amina.element("#sign-in input[name=user]").await;
    let repeat_page = again.elapsed();
    let repeat_bytes = amina.js(TRANSFERRED, json!([])).await;
    submit_sign_in(&amina, "amina").await;
    amina
        .wait_for("the repeat visit, connected", online, LONG * 2)
        .await;
    let repeat = again.elapsed();
    let repeat_all = amina.js(TRANSFERRED, json!([])).await;
    amina.screenshot("amina-repeat-visit").await;
    println!(
        "slow 3G (400 kbit/s, 400 ms): first visit: page {:.1} s, signed up and connected {:.1} s, {} bytes; \
         repeat visit: page {:.1} s ({} bytes), unlocked and connected {:.1} s ({} bytes)",
        page.as_secs_f64(),
        first.as_secs_f64(),
        first_bytes,
        repeat_page.as_secs_f64(),
        repeat_bytes,
        repeat.as_secs_f64(),
        repeat_all,
    );
    let bytes = |v: &Value| v.as_f64().expect("a byte count");
    assert!(
        bytes(&first_bytes) > 500_000.0,
        "the first visit brings the client's module: {first_bytes}"
    );
    assert!(
        bytes(&repeat_all) <= 50_000.0,
        "a repeat visit transfers at most 50 KB: {repeat_all}"
    );
    server.stop();
}
