//! Monitoring and the public map (PROTOCOL §9.7, §15.4), in Chromium on
//! a 360 × 740 phone screen: a space manager enters five case records in
//! two countries (a record dated in the future is refused and nothing of
//! the form is lost), reads the counts computed on her device, previews
//! and publishes counts by country and year with k = 2 (one group left
//! out); a visitor without an account, who first found the map empty,
//! sees the two countries coloured with the published counts, filters by
//! year, opens France's breakdown from the keyboard and reads the same
//! numbers in the table, in French and in Arabic; a second publication of
//! the same records under another id is refused, k = 10 publishes nothing
//! and says why, and k = 3 by country alone replaces the first and leaves
//! Tunisia out. The victim's name written in a record's notes is nowhere
//! in the server's data directory (`amicus audit --canary`), nor in what
//! was published. Screenshots go to `<target>/browser-screenshots-map/`.

use serde_json::{Value, json};

use crate::browser::{
    CHROMIUM, LONG, fits_a_finger, fits_a_finger_but, sign_up, target_dir, web_dir,
};
use crate::support::Server;
use crate::webdriver::Browser;

const VICTIM: &str = "Selma Haddad-Benali";

/// The countries' shapes on the map, a few pixels for the smallest on a
/// phone: each count a shape opens is also in the table under the map,
/// whose rows need no touch.
const COUNTRIES: &str = "#map path";
const NO_SIDEWAYS: &str = "return document.documentElement.scrollWidth <= window.innerWidth";

/// Fills the record form and submits it.
async fn enter(b: &Browser, date: &str, country: &str, kind: &str, notes: &str) {
    b.element("#record-form").await;
    b.js(
        "const f = document.getElementById('record-form');
         f.date.value = arguments[0];
         f.country.value = arguments[1];
         for (const c of f.querySelectorAll('input[name=types]')) c.checked = c.value === arguments[2];
         f.gender.value = 'woman';
         f.notes.value = arguments[3];",
        json!([date, country, kind, notes]),
    )
    .await;
    b.click("#record-form button[type=submit]").await;
}

async fn record_count(b: &Browser) -> u64 {
    b.js(
        "return document.querySelectorAll('#records-table tbody tr').length",
        json!([]),
    )
    .await
    .as_u64()
    .unwrap()
}

/// What the visitor's map shows: the count each coloured country carries.
async fn coloured(b: &Browser) -> Value {
    b.js(
        "const out = {};
         for (const p of document.querySelectorAll('#map path[data-count]'))
           if (p.dataset.count !== '0') out[p.dataset.code] = [Number(p.dataset.count), p.getAttribute('fill')];
         return out",
        json!([]),
    )
    .await
}

/// The table's totals by country code.
async fn table_totals(b: &Browser) -> Value {
    b.js(
        "const out = {};
         for (const r of document.querySelectorAll('#table tfoot tr[data-total]'))
           out[r.dataset.total] = Number(r.querySelector('td').textContent.replace(/[^0-9]/g, ''));
         return out",
        json!([]),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_published_with_k_reach_a_public_map_and_no_record_leaves() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &format!("web = {web:?}\n"));
    let shots = target_dir().join("browser-screenshots-map");
    let _ = std::fs::remove_dir_all(&shots);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();

    // Amina: a confidential space for the monitoring, a public one for
    // the map.
    let amina = Browser::start("amina", "fr", &shots, &downloads).await;
    amina.resize(360, 740).await;
    sign_up(&amina, &server.url, "amina").await;
    amina
        .type_into("#new-space input[name=name]", "Observatoire")
        .await;
    amina.click("#new-space button[type=submit]").await;
    amina.element("#records-link a").await;
    let space = amina
        .js("return location.hash.split('/')[2]", json!([]))
        .await
        .as_str()
        .unwrap()
        .to_owned();
    amina.js("location.hash = '#/search'", json!([])).await;
    amina
        .type_into("#new-public input[name=name]", "Carte des violations")
        .await;
    amina.click("#new-public button[type=submit]").await;
    amina.element(".roles-of").await;
    let public = amina
        .wait_for(
            "the public space's id",
            "const f = document.querySelector('.roles-of'); return f && f.dataset.space",
            LONG,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();

    // Before anything is published, the map of the public space is
    // empty and says so; it is not an error.
    let visitor = Browser::start("visitor", "fr", &shots, &downloads).await;
    visitor.resize(360, 740).await;
    visitor.goto(&format!("{}/map/#{public}", server.url)).await;
    let said = visitor
        .wait_for(
            "the empty map",
            "return document.body.dataset.state === 'empty' && document.querySelectorAll('#map path').length > 100 && document.getElementById('status').textContent",
            LONG,
        )
        .await;
    assert!(
        said.as_str()
            .unwrap()
            .contains("Rien n’a encore été publié"),
        "{said}"
    );
    assert_eq!(coloured(&visitor).await, json!({}));

    // Five records in two countries.
    amina
        .js(&format!("location.hash = '#/records/{space}'"), json!([]))
        .await;
    for (date, country, kind, notes) in [
        ("2024-03-01", "FR", "threat", ""),
        ("2024-06", "FR", "arrest", ""),
        ("2025-01-20", "FR", "threat", ""),
        ("2025-02-02", "TN", "arrest", VICTIM),
        ("2025", "TN", "assault", ""),
    ] {
        let before = record_count(&amina).await;
        enter(&amina, date, country, kind, notes).await;
        amina
            .wait_for(
                "the record in the list",
                &format!(
                    "return document.querySelectorAll('#records-table tbody tr').length === {}",
                    before + 1
                ),
                LONG,
            )
            .await;
    }
    // A record dated in the future: refused next to the form, in French,
    // and what was typed stays.
    enter(&amina, "2099-01-01", "FR", "threat", "à corriger").await;
    let refusal = amina
        .wait_for(
            "the refusal of a date in the future",
            "return document.getElementById('record-error')?.textContent",
            LONG,
        )
        .await;
    assert!(
        refusal.as_str().unwrap().contains("futur"),
        "not the French sentence: {refusal}"
    );
    assert_eq!(record_count(&amina).await, 5);
    assert_eq!(
        amina
            .js(
                "return document.getElementById('record-form').notes.value",
                json!([])
            )
            .await,
        json!("à corriger")
    );
    // The counts, computed on her device.
    let counts = amina
        .js(
            "const n = (d, v) => Number(document.querySelector(`.count-table[data-dim=${d}] tr[data-value='${v}'] td.n`)?.textContent);
             return [n('country', 'FR'), n('country', 'TN'), n('year', '2024'), n('year', '2025'), n('type', 'threat')]",
            json!([]),
        )
        .await;
    assert_eq!(counts, json!([3, 2, 2, 3, 2]));
    assert!(amina.js(NO_SIDEWAYS, json!([])).await.as_bool().unwrap());
    fits_a_finger(&amina, "records-fr").await;
    amina.screenshot("records-fr").await;

    // Counts by country and year, k = 2: what goes is shown first.
    amina.element("#publish-counts-form").await;
    amina
        .js(
            "const f = document.getElementById('publish-counts-form');
             f.k.value = '2'; f.place.value = 'country';
             for (const c of f.querySelectorAll('input[name=dims]')) c.checked = c.value === 'year';",
            json!([]),
        )
        .await;
    amina
        .click("#publish-counts-form button[type=submit]")
        .await;
    let preview = amina
        .wait_for(
            "the preview of the counts",
            "const rows = [...document.querySelectorAll('#aggregate-preview tbody tr')];
             return rows.length && rows.map((r) => [...r.children].map((c) => c.textContent))",
            LONG,
        )
        .await;
    assert_eq!(preview.as_array().unwrap().len(), 2, "{preview}");
    assert_eq!(preview[0][1], "2024");
    assert_eq!(preview[0][2], "2");
    assert_eq!(preview[1][1], "2025");
    assert_eq!(preview[1][2], "2");
    assert!(
        amina
            .js(
                "return document.getElementById('suppressed-note').textContent",
                json!([])
            )
            .await
            .as_str()
            .unwrap()
            .starts_with("1 groupe"),
        "France 2025 (one record) is left out"
    );
    amina.screenshot("publish-preview-fr").await;
    amina.click("#confirm-publish-counts").await;
    amina.element("#counts-published").await;

    // The visitor, without an account, opens the publication.
    visitor
        .goto(&format!("{}/map/#{public}/violations", server.url))
        .await;
    visitor
        .wait_for(
            "the map drawn",
            "return document.body.dataset.state === 'ready' && document.querySelectorAll('#map path').length > 100",
            LONG,
        )
        .await;
    let map = coloured(&visitor).await;
    assert_eq!(map["FR"][0], 2, "{map}");
    assert_eq!(map["TN"][0], 2, "{map}");
    assert_eq!(map.as_object().unwrap().len(), 2, "{map}");
    assert_eq!(table_totals(&visitor).await, json!({ "FR": 2, "TN": 2 }));
    let rows = visitor
        .js(
            "return document.querySelectorAll('#table tbody tr').length",
            json!([]),
        )
        .await;
    assert_eq!(rows, json!(2));
    assert!(visitor.js(NO_SIDEWAYS, json!([])).await.as_bool().unwrap());
    fits_a_finger_but(&visitor, "map-fr", COUNTRIES).await;
    visitor.screenshot("map-fr").await;
    // Filtered by year: 2024 is France's only.
    visitor
        .js(
            "const s = document.getElementById('filter-year'); s.value = '2024'; s.dispatchEvent(new Event('change'))",
            json!([]),
        )
        .await;
    let map = coloured(&visitor).await;
    assert_eq!(map, json!({ "FR": [2, map["FR"][1]] }));
    assert_eq!(table_totals(&visitor).await, json!({ "FR": 2 }));
    // France, opened from the keyboard, shows its breakdown.
    visitor
        .js(
            "const p = document.querySelector('#map path[data-code=FR]');
             p.focus();
             p.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));",
            json!([]),
        )
        .await;
    let detail = visitor
        .wait_for(
            "France's breakdown",
            "const d = document.getElementById('detail'); return !d.hidden && d.textContent",
            LONG,
        )
        .await;
    assert!(detail.as_str().unwrap().contains("France"), "{detail}");
    visitor.screenshot("map-fr-2024").await;
    // In Arabic, right to left, the same numbers.
    visitor
        .js(
            "const s = document.getElementById('language'); s.value = 'ar'; s.dispatchEvent(new Event('change'))",
            json!([]),
        )
        .await;
    assert_eq!(
        visitor
            .js("return document.documentElement.dir", json!([]))
            .await,
        json!("rtl")
    );
    assert_eq!(table_totals(&visitor).await, json!({ "FR": 2 }));
    assert!(visitor.js(NO_SIDEWAYS, json!([])).await.as_bool().unwrap());
    fits_a_finger_but(&visitor, "map-ar", COUNTRIES).await;
    visitor.screenshot("map-ar").await;
    let errors = visitor.console_errors().await;
    assert!(errors.is_empty(), "console errors on the map: {errors:?}");

    // A second publication by country alone: k = 10 publishes nothing and
    // says why; under another id it is refused (the two could be
    // subtracted one from the other); under the same id, with k = 3, it
    // replaces the first and leaves Tunisia's two cases out.
    let publish = |k: &'static str, id: &'static str| {
        let amina = &amina;
        async move {
            amina
                .js(
                    "const f = document.getElementById('publish-counts-form');
                     f.k.value = arguments[0]; f.publication.value = arguments[1]; f.place.value = 'country';
                     for (const c of f.querySelectorAll('input[name=dims]')) c.checked = false;
                     document.getElementById('status').textContent = '';",
                    json!([k, id]),
                )
                .await;
            amina
                .click("#publish-counts-form button[type=submit]")
                .await;
        }
    };
    publish("10", "violations").await;
    let said = amina
        .wait_for(
            "the refusal to publish nothing",
            "const s = document.getElementById('status').textContent; return s.length > 0 && s",
            LONG,
        )
        .await;
    assert!(
        said.as_str().unwrap().contains("rien ne serait publié"),
        "{said}"
    );
    assert_eq!(
        amina
            .js(
                "return document.querySelectorAll('#aggregate-preview').length",
                json!([])
            )
            .await,
        json!(0)
    );
    publish("3", "violations-par-pays").await;
    amina.element("#confirm-publish-counts").await;
    amina.click("#confirm-publish-counts").await;
    let said = amina
        .wait_for(
            "the refusal of a second publication of the same records",
            "const s = document.getElementById('status').textContent; return s.length > 0 && s",
            LONG,
        )
        .await;
    assert!(said.as_str().unwrap().contains("déjà publiées"), "{said}");
    publish("3", "violations").await;
    amina.element("#confirm-publish-counts").await;
    amina.click("#confirm-publish-counts").await;
    amina.element("#counts-published").await;
    amina.screenshot("published-k3-fr").await;
    visitor
        .goto(&format!("{}/map/?lang=fr#{public}/violations", server.url))
        .await;
    visitor
        .wait_for(
            "the replaced map",
            "return document.body.dataset.state === 'ready' && document.getElementById('about').textContent.includes('moins de 3')",
            LONG,
        )
        .await;
    let map = coloured(&visitor).await;
    assert_eq!(
        map.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["FR"]
    );
    assert_eq!(map["FR"][0], 3);
    let left_out = visitor
        .js(
            "return document.getElementById('suppressed').textContent",
            json!([]),
        )
        .await;
    assert!(
        left_out.as_str().unwrap().contains("moins de 3"),
        "{left_out}"
    );
    visitor.screenshot("map-fr-k3").await;

    // What was published holds counts and codes, never a name.
    let client = reqwest::Client::new();
    for id in ["violations"] {
        let text = client
            .get(format!("{}/v1/public/{public}/aggregates/{id}", server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !text.contains("Selma") && !text.contains("Haddad"),
            "{text}"
        );
    }
    drop(amina);
    drop(visitor);
    server.stop();
    let canary = dir.path().join("canary.txt");
    std::fs::write(&canary, VICTIM).unwrap();
    let (passed, report) = crate::canaries::audit(&data, &canary);
    assert!(
        passed,
        "the victim's name is in the data directory: {report}"
    );
}
