//! A witness without an account submits through a drop box's page in a
//! fresh browser (Arabic, a 360 × 740 phone screen): a statement and a
//! 3 MB photo, sealed in the page; the space manager who opened the box
//! reads both in her browser; the witness's browser, still without an
//! account, finds and reads a public document. Screenshots go to
//! `<target>/browser-screenshots-drop/`.

use serde_json::json;

use crate::browser::{
    CHROMIUM, LONG, RED_PIXEL, fits_a_finger, sign_up, target_dir, text_of, until_searched, web_dir,
};
use crate::support::Server;
use crate::webdriver::Browser;

const NO_SIDEWAYS: &str = "return document.documentElement.scrollWidth <= window.innerWidth";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_submits_a_statement_and_a_photo_through_the_drop_page() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &format!("web = {web:?}\n"));
    let shots = target_dir().join("browser-screenshots-drop");
    let _ = std::fs::remove_dir_all(&shots);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();

    // Amina opens a space and a drop box in French.
    let amina = Browser::start("amina", "fr", &shots, &downloads).await;
    amina.resize(360, 740).await;
    sign_up(&amina, &server.url, "amina").await;
    amina
        .type_into("#new-space input[name=name]", "Dossier K.")
        .await;
    amina.click("#new-space button[type=submit]").await;
    amina.element("#drop-form-box summary").await;
    amina.click("#drop-form-box summary").await;
    amina
        .type_into("#drop-form input[name=label]", "Témoins de l’audience")
        .await;
    amina.click("#drop-form button[type=submit]").await;
    let link = amina
        .wait_for(
            "the new drop box's link",
            "const i = document.querySelector('#new-drop-link .drop-link'); return i && i.value",
            LONG,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        link.starts_with(&format!("{}/drop/#", server.url)),
        "{link}"
    );
    amina.screenshot("amina-drop-box").await;

    // A witness, in a browser that never saw Amicus, in Arabic.
    let witness = Browser::start("witness", "ar", &shots, &downloads).await;
    witness.resize(360, 740).await;
    witness.goto(&link).await;
    witness
        .wait_for(
            "the page ready to take a submission",
            "return document.body.dataset.state === 'ready'",
            LONG,
        )
        .await;
    assert_eq!(
        witness
            .js("return document.documentElement.dir", json!([]))
            .await,
        json!("rtl")
    );
    assert_eq!(witness.js(NO_SIDEWAYS, json!([])).await, json!(true));
    fits_a_finger(&witness, "witness-form").await;
    let statement = "رأيتُ ثلاثة رجال يقتادون المحامي ك. أمام المحكمة صباح الثالث من مارس.";
    witness.type_into("#statement", statement).await;
    // A photo of 3 MB: a PNG whose bytes after its end (ignored by image
    // decoders) make up the size.
    let photo = dir.path().join("photo.png");
    let mut bytes = RED_PIXEL.to_vec();
    bytes.resize(3 << 20, 0x5a);
    std::fs::write(&photo, &bytes).unwrap();
    witness.type_into("#files", photo.to_str().unwrap()).await;
    witness.click("#send").await;
    witness
        .wait_for(
            "the submission sent",
            "return document.body.dataset.state === 'sent'",
            LONG,
        )
        .await;
    assert_eq!(witness.js(NO_SIDEWAYS, json!([])).await, json!(true));
    fits_a_finger(&witness, "witness-sent").await;
    witness.screenshot("witness-sent").await;
    let reference = text_of(&witness, "#reference").await;
    assert!(!reference.trim().is_empty());
    assert_eq!(witness.console_errors().await, Vec::<String>::new());

    // The same browser, still without an account, finds and reads a
    // public document.
    let mut chidi = crate::support::register(dir.path(), &server, "chidi").await;
    let library = chidi.create_public_space("Jurisprudence").await.unwrap();
    let _: serde_json::Value = chidi
        .http()
        .send(
            reqwest::Method::PUT,
            &format!("/v1/public/{}/docs/arret-12", library.to_hex()),
            &json!({ "title": "Arrêt sur la détention de Maître K.", "body": "La Cour juge la détention arbitraire." }),
        )
        .await
        .unwrap();
    drop(chidi);
    witness.goto(&format!("{}/#/search", server.url)).await;
    witness.element("#reading-without-account").await;
    // Searched again until the index has it (it commits every 250 ms).
    until_searched(
        &witness,
        "détention",
        "Arrêt sur la détention de Maître K.",
        true,
    )
    .await;
    witness.click("#results .hit a").await;
    let body = witness
        .wait_for(
            "the public document read without an account",
            "const b = document.querySelector('#public-doc .public-body'); return b && b.textContent",
            LONG,
        )
        .await;
    assert_eq!(body, json!("La Cour juge la détention arbitraire."));
    assert_eq!(
        text_of(&witness, "#public-doc h2").await,
        "Arrêt sur la détention de Maître K."
    );
    assert_eq!(witness.js(NO_SIDEWAYS, json!([])).await, json!(true));
    fits_a_finger(&witness, "witness-public-document").await;
    witness.screenshot("witness-public-document").await;
    assert_eq!(witness.console_errors().await, Vec::<String>::new());

    // Amina's open page shows it (asked again every 15 s) and opens both
    // parts in her browser.
    amina
        .wait_for(
            "the submission in Amina's page",
            "return document.querySelector('[data-submission] .open-submission') !== null",
            LONG,
        )
        .await;
    amina.click("[data-submission] .open-submission").await;
    let shown = amina
        .wait_for(
            "the statement opened",
            "const q = document.querySelector('[data-submission] blockquote.statement'); return q && q.textContent",
            LONG,
        )
        .await;
    assert_eq!(shown, json!(statement));
    let image = amina
        .wait_for(
            "the photo opened",
            "const i = document.querySelector('[data-submission] img.preview-image'); \
             const a = document.querySelector('[data-submission] .submitted-file a[download]'); \
             return i && i.complete && i.naturalWidth > 0 && a && [a.textContent, a.getAttribute('download')]",
            LONG,
        )
        .await;
    assert_eq!(image, json!(["photo.png", "photo.png"]));
    // Its size as the witness sent it.
    let file = text_of(&amina, "[data-submission] .submitted-file").await;
    assert!(file.ends_with("photo.png (3.0 MiB)"), "{file}");
    assert_eq!(amina.js(NO_SIDEWAYS, json!([])).await, json!(true));
    fits_a_finger(&amina, "amina-submission-opened").await;
    amina.screenshot("amina-submission-opened").await;
    assert_eq!(amina.console_errors().await, Vec::<String>::new());
}
