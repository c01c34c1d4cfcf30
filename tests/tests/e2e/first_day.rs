//! A lawyer's first day in the web app, on a 360 × 740 phone screen, once
//! in French and once in Arabic (the administrator in the other language),
//! on a server that registers by invitation only; and a returning browser that unlocks with
//! the device's authenticator. Screenshots go to
//! `<target>/browser-screenshots-first-day-<language>/`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::{
    CHROMIUM, ENTER, LONG, SELECT, create_space_and_invite, fits_a_finger, remove_entry, sign_up,
    target_dir, unlock, until_searched, web_dir,
};
use crate::support::Server;
use crate::webdriver::Browser;

/// What the first day says and writes in one interface language.
struct Day {
    lang: &'static str,
    /// The administrator's interface language.
    admin_lang: &'static str,
    /// What the administrator is told after signing up.
    admin_told: &'static str,
    /// The refusal of a wrong invitation code.
    refusal: &'static str,
    /// How the first sign-in says it derives the key.
    key_step: &'static str,
    /// "Publish to «Jurisprudence»" on the confirmation.
    publish_to: &'static str,
    /// "“x” removed." when the file goes.
    removed: &'static str,
}

const FRENCH: &str = "Les avocats ont été arrêtés à Bujumbura pendant l’audience publique.";
const ARABIC: &str = "واعتقلت الشرطة المحامين أثناء الجلسة وصادرت ملفات الدفاع.";

/// The page fits the phone's width, every control is large enough for a
/// finger, the console holds no error, and a screenshot keeps the step.
async fn check_page(b: &Browser, step: &str) {
    b.wait_for(
        &format!("the {step} page drawn"),
        "return document.getElementById('main')?.childElementCount > 0",
        LONG,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let widths = b
        .js(
            "return [document.documentElement.scrollWidth, window.innerWidth, location.hash]",
            json!([]),
        )
        .await;
    b.screenshot(step).await;
    assert!(
        widths[0].as_u64() <= widths[1].as_u64(),
        "{}: the {step} page is wider than the screen: {widths}",
        b.name
    );
    let errors = b.console_errors().await;
    assert!(
        errors.is_empty(),
        "{}: console errors on the {step} page: {errors:?}",
        b.name
    );
    fits_a_finger(b, step).await;
    // The app installed from this page is named in its language and runs
    // in its direction.
    let manifest = b
        .js(
            "const link = document.querySelector('link[rel=manifest]'); \
             return fetch(link.href).then((r) => r.json()).then((m) => \
               [link.getAttribute('href'), m.lang === document.documentElement.lang, m.dir === document.documentElement.dir, m.name])",
            json!([]),
        )
        .await;
    let lang = b
        .js("return document.documentElement.lang", json!([]))
        .await;
    assert_eq!(
        manifest,
        json!([
            format!("manifest.{}.webmanifest", lang.as_str().unwrap()),
            true,
            true,
            if lang == "ar" {
                "أميكوس"
            } else {
                "Amicus"
            }
        ]),
        "{}: the manifest of the {step} page",
        b.name
    );
}

/// The filing's title, a French word, runs left to right in any interface.
async fn title_runs_left_to_right(b: &Browser) {
    let direction = b
        .wait_for(
            "the filing's title",
            "const t = document.getElementById('title'); return t && t.value && getComputedStyle(t).direction",
            LONG,
        )
        .await;
    assert_eq!(direction, json!("ltr"), "{}: the title's direction", b.name);
}

/// Opens `hash` and checks the page it shows.
async fn visit(b: &Browser, hash: &str, step: &str) {
    b.js("location.hash = arguments[0]", json!([hash])).await;
    check_page(b, step).await;
}

/// Where `arguments[0]` (a word of the editor's text) is drawn, relative to
/// the editor's box: `[from its left edge, from its right edge]` in px.
const PLACE: &str = "const e = document.getElementById('editor'); \
    const nodes = []; const walk = (x) => { for (const c of x.childNodes) { if (c.nodeType === 3) nodes.push(c); else walk(c); } }; walk(e); \
    const at = e.textContent.indexOf(arguments[0]); let seen = 0; \
    for (const n of nodes) { if (at < seen + n.data.length) { const r = document.createRange(); \
      r.setStart(n, at - seen); r.setEnd(n, at - seen + arguments[0].length); \
      const k = r.getBoundingClientRect(); const b = e.getBoundingClientRect(); \
      return [Math.round(k.left - b.left), Math.round(b.right - k.right)]; } seen += n.data.length; } \
    return null;";

async fn first_day(day: Day) {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &format!("web = {web:?}\nregistration = \"invite\"\n"),
    );
    let shots = target_dir().join(format!("browser-screenshots-first-day-{}", day.lang));
    let _ = std::fs::remove_dir_all(&shots);
    let downloads = dir.path().join("downloads");

    // The administrator signs up first and is told so; she makes an
    // invitation link on her Administration page.
    let amina = Browser::start("amina", day.admin_lang, &shots, &downloads.join("amina")).await;
    amina.resize(360, 740).await;
    sign_up(&amina, &server.url, "amina").await;
    amina
        .wait_for(
            "the administrator told so, and the Administration link",
            &format!(
                "return document.getElementById('admin-link') !== null \
                 && (document.getElementById('status')?.textContent || '').includes({:?})",
                day.admin_told
            ),
            LONG,
        )
        .await;
    check_page(&amina, "spaces").await;
    amina.click("#admin-link").await;
    amina.element("#new-invitation").await;
    amina.click("#new-invitation button[type=submit]").await;
    amina.element("#invitation-link").await;
    check_page(&amina, "admin").await;
    let link = amina
        .js(
            "return document.getElementById('invitation-link').value",
            json!([]),
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let code = link.rsplit('/').next().unwrap().to_owned();
    assert!(
        link.starts_with(&server.url) && link.contains("#/join/"),
        "{link}"
    );
    assert_eq!(code.len(), 32, "{link}");

    // The colleague opens the link on his phone: the sign-up form with the
    // code in it. A mistyped code is refused in his language; then he signs
    // up, and the page says what the slow first start is doing.
    let bruno = Browser::start("bruno", day.lang, &shots, &downloads.join("bruno")).await;
    bruno.resize(360, 740).await;
    bruno.goto(&link).await;
    bruno
        .wait_for(
            "the sign-up form with the code",
            &format!(
                "return document.querySelector('#sign-up input[name=invite]')?.value === {code:?} \
                 && document.activeElement === document.querySelector('#sign-up input[name=user]')"
            ),
            LONG,
        )
        .await;
    check_page(&bruno, "invited").await;
    bruno
        .js(
            "window.steps = []; new MutationObserver(() => { const s = document.getElementById('status'); \
             if (s && s.textContent && s.textContent !== window.steps.at(-1)) window.steps.push(s.textContent); }) \
             .observe(document.body, { subtree: true, childList: true, characterData: true }); \
             document.querySelector('#sign-up input[name=invite]').value = '0123456789abcdef0123456789abcdef'",
            json!([]),
        )
        .await;
    bruno.type_into("#sign-up input[name=user]", "bruno").await;
    bruno
        .type_into(
            "#sign-up input[name=passphrase]",
            "correct horse battery staple",
        )
        .await;
    bruno.click("#sign-up button[type=submit]").await;
    let refused = bruno
        .wait_for(
            "the wrong invitation refused",
            "const s = document.getElementById('status'); const d = s.querySelector('details code'); \
             return s.className.includes('error') && d && [s.firstChild.textContent, d.textContent]",
            LONG,
        )
        .await;
    // In his language; the server's own words under "Details".
    assert_eq!(refused[0], json!(day.refusal));
    assert!(
        refused[1].as_str().unwrap().contains(
            "403 forbidden (invitation_unknown): forbidden: unknown or used invitation code"
        ),
        "{refused}"
    );
    let _ = bruno.console_errors().await; // the refusal's 403, on purpose
    bruno
        .js(
            "document.querySelector('#sign-up input[name=invite]').value = arguments[0]",
            json!([code]),
        )
        .await;
    bruno.click("#sign-up button[type=submit]").await;
    bruno
        .wait_for(
            "Bruno signed up",
            "const c = document.getElementById('connection'); return c && c.className === 'online'",
            LONG,
        )
        .await;
    let steps = bruno.js("return window.steps", json!([])).await;
    assert!(
        steps
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().starts_with(day.key_step)),
        "the first sign-in did not say what it does: {steps}"
    );
    check_page(&bruno, "signed-up").await;
    // The link works once.
    let again = amicus_cli::Client::register(
        &dir.path().join("chloe"),
        crate::support::PASS,
        &server.url,
        "chloe",
        Some(&code),
    )
    .await;
    match again {
        Err(e) => assert!(e.to_string().contains("invitation"), "{e}"),
        Ok(_) => panic!("an invitation was used twice"),
    }

    // A named space, the colleague in it; a public space where he may
    // publish, given from the roles screen.
    amina.js("location.hash = '#/'", json!([])).await;
    let space = create_space_and_invite(&amina, "Recours Kivu", "bruno").await;
    check_page(&amina, "space").await;
    visit(&amina, "#/search", "search").await;
    amina
        .type_into("#new-public input[name=name]", "Jurisprudence")
        .await;
    amina.click("#new-public button[type=submit]").await;
    amina.type_into(".roles-of input[name=user]", "bruno").await;
    amina.click(".roles-of button[type=submit]").await;
    amina.element(".roles-of li[data-user=bruno]").await;
    check_page(&amina, "public-roles").await;

    bruno
        .wait_for(
            "the named space at Bruno's",
            "return (document.getElementById('main')?.textContent || '').includes('Recours Kivu')",
            LONG,
        )
        .await;
    visit(&bruno, &format!("#/space/{space}"), "space").await;

    // A filing with a paragraph in each language, the first in his own: each
    // paragraph runs in its own direction, whatever the other.
    bruno
        .type_into("#new-doc input[name=title]", "Requête")
        .await;
    bruno.click("#new-doc button[type=submit]").await;
    bruno.element("#editor").await;
    let (first, second) = if day.lang == "ar" {
        (ARABIC, FRENCH)
    } else {
        (FRENCH, ARABIC)
    };
    bruno
        .type_into("#editor", &format!("{first}{ENTER}{second}"))
        .await;
    bruno.js(SELECT, json!(["arrêtés", false])).await;
    bruno.click("button[data-mark=bold]").await;
    bruno
        .wait_for(
            "the bold word",
            "return document.querySelector('#editor strong')?.textContent === 'arrêtés'",
            LONG,
        )
        .await;
    let latin = bruno.js(PLACE, json!(["Les avocats"])).await;
    let arabic = bruno.js(PLACE, json!(["واعتقلت"])).await;
    assert!(
        latin[0].as_i64().unwrap() < 30,
        "the French paragraph does not start at the left: {latin}"
    );
    assert!(
        arabic[1].as_i64().unwrap() < 30,
        "the Arabic paragraph does not start at the right: {arabic}"
    );
    title_runs_left_to_right(&bruno).await;
    check_page(&bruno, "filing").await;
    let filing = bruno
        .js("return location.hash", json!([]))
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let stream = filing.rsplit('/').next().unwrap().to_owned();

    // Published after a preview that shows the formatting, and a
    // confirmation naming the public space.
    bruno.element("#publish-filing form").await;
    bruno.click("#publish-filing button[type=submit]").await;
    let previewed = bruno
        .wait_for(
            "the preview",
            "const c = document.getElementById('confirm-publish'); \
             return c && [document.querySelector('#publish-preview .public-body strong')?.textContent, c.textContent]",
            LONG,
        )
        .await;
    assert_eq!(previewed, json!(["arrêtés", day.publish_to]));
    check_page(&bruno, "publish-preview").await;
    bruno.click("#confirm-publish").await;
    bruno.element("#public-copy a[href^='#/public/']").await;

    // Found by a French word and by an Arabic word.
    bruno.js("location.hash = '#/search'", json!([])).await;
    for word in ["arrêtés", "المحامين"] {
        until_searched(&bruno, word, "Requête", true).await;
    }
    check_page(&bruno, "found").await;
    bruno
        .js(
            "Array.from(document.querySelectorAll('#results .hit h4 a')).find((a) => a.textContent === 'Requête').click()",
            json!([]),
        )
        .await;
    bruno
        .wait_for(
            "the public copy with its formatting",
            "return document.querySelector('#public-doc .public-body strong')?.textContent === 'arrêtés' \
             && document.getElementById('signature-check')?.dataset.signature === 'verified' \
             && document.getElementById('copy-check')?.dataset.verdict === 'matches'",
            LONG,
        )
        .await;
    check_page(&bruno, "public-copy").await;

    // Withdrawn: no longer found.
    visit(&bruno, &filing, "filing-published").await;
    bruno.click("#withdraw-copy").await;
    bruno.click("#withdraw-copy").await;
    bruno
        .wait_for(
            "the copy withdrawn",
            "return !document.getElementById('withdraw-copy') && !document.querySelector('#public-copy a')",
            LONG,
        )
        .await;
    bruno.js("location.hash = '#/search'", json!([])).await;
    until_searched(&bruno, "المحامين", "Requête", false).await;

    // Renamed from the library; a file removed by mistake and put back.
    visit(&bruno, &format!("#/space/{space}"), "library").await;
    let entry = format!("li[data-entry='{stream}']");
    bruno
        .click(&format!("{entry} details.entry-actions summary"))
        .await;
    bruno
        .js(
            "document.querySelector(arguments[0]).value = 'Requête en annulation'",
            json!([format!("{entry} form.rename input")]),
        )
        .await;
    bruno.click(&format!("{entry} form.rename button")).await;
    bruno
        .wait_for(
            "the filing renamed",
            &format!(
                "return document.querySelector(\"{entry} a.doc-link\")?.textContent === 'Requête en annulation'"
            ),
            LONG,
        )
        .await;
    let file = dir.path().join("témoignage.txt");
    std::fs::write(&file, "Témoignage de la greffière.").unwrap();
    bruno.type_into("#upload", file.to_str().unwrap()).await;
    let id = bruno
        .wait_for(
            "the file in the library",
            "return Array.from(document.querySelectorAll('li.file')).find((l) => l.textContent.includes('témoignage.txt'))?.dataset.entry",
            LONG,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let file_entry = format!("li[data-entry='{id}']");
    let said = remove_entry(&bruno, &id).await;
    assert_eq!(said, json!(day.removed));
    check_page(&bruno, "removed").await;
    bruno.click("#undo").await;
    bruno
        .element(&format!("{file_entry} button.file-link"))
        .await;

    // Every other page on the phone, for both.
    for (b, pages) in [
        (
            &bruno,
            vec![
                ("#/", "spaces-after"),
                ("#/activity", "activity"),
                ("#/devices", "devices"),
                ("#/unsent", "unsent"),
            ],
        ),
        (
            &amina,
            vec![
                ("#/", "spaces-after"),
                (filing.as_str(), "filing"),
                ("#/activity", "activity"),
                ("#/devices", "devices"),
                ("#/admin", "admin-after"),
            ],
        ),
    ] {
        for (hash, step) in pages {
            visit(b, hash, step).await;
            if hash == filing {
                title_runs_left_to_right(b).await;
            }
        }
    }
    // Left idle in the filing, the phone locks: nothing of the account
    // stays open.
    visit(&bruno, &filing, "filing-before-lock").await;
    bruno
        .js(
            "localStorage.setItem('amicus.idle', '2'); document.dispatchEvent(new KeyboardEvent('keydown'))",
            json!([]),
        )
        .await;
    bruno
        .wait_for(
            "the filing locked after the idle delay",
            "return document.getElementById('sign-in') !== null && document.getElementById('connection') === null \
             && document.getElementById('status').className.includes('warning')",
            LONG,
        )
        .await;
    check_page(&bruno, "locked").await;
    let shown: Value = amina
        .js("return document.documentElement.dir", json!([]))
        .await;
    assert_eq!(
        shown,
        json!(if day.admin_lang == "ar" { "rtl" } else { "ltr" })
    );
}

/// The first day in French (the administrator works in Arabic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lawyers_first_day_in_french_on_a_phone() {
    first_day(Day {
        lang: "fr",
        admin_lang: "ar",
        admin_told: "أنت مدير هذا الخادم: ادعُ زملاءك من صفحة الإدارة.",
        refusal: "Ce code d’invitation est inconnu ou a déjà servi : demandez un nouveau lien d’invitation.",
        key_step: "Calcul de la clé à partir de votre phrase secrète",
        publish_to: "Publier dans « Jurisprudence »",
        removed: "« témoignage.txt » supprimé.",
    })
    .await;
}

/// The first day in Arabic (the administrator works in French).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lawyers_first_day_in_arabic_on_a_phone() {
    first_day(Day {
        lang: "ar",
        admin_lang: "fr",
        admin_told: "Vous êtes l’administrateur de ce serveur : invitez vos collègues depuis Administration.",
        refusal: "رمز الدعوة هذا غير معروف أو استُخدم من قبل: اطلب رابط دعوة جديدًا.",
        key_step: "جارٍ اشتقاق المفتاح من عبارة مرورك",
        publish_to: "النشر في «Jurisprudence»",
        removed: "حُذف «témoignage.txt».",
    })
    .await;
}

/// A returning browser shows only how to unlock (the other ways behind a
/// link); where its user turned it on, the device's authenticator (a
/// virtual one with the PRF extension here) unlocks it without the
/// passphrase, which keeps working; turned off, only the passphrase does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_browser_unlocks_with_the_device_or_the_passphrase() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &format!("web = {web:?}\n"));
    // WebAuthn needs a domain: the same server, named localhost.
    let url = server.url.replace("127.0.0.1", "localhost");
    let shots = target_dir().join("browser-screenshots-returning");
    let _ = std::fs::remove_dir_all(&shots);
    let amina = Browser::start("amina", "pt", &shots, &dir.path().join("downloads")).await;
    amina
        .cdp("WebAuthn.enable", json!({ "enableUI": false }))
        .await;
    amina
        .cdp(
            "WebAuthn.addVirtualAuthenticator",
            json!({ "options": {
                "protocol": "ctap2", "ctap2Version": "ctap2_1", "transport": "internal",
                "hasResidentKey": true, "hasUserVerification": true, "isUserVerified": true,
                "hasPrf": true, "automaticPresenceSimulation": true,
            } }),
        )
        .await;
    sign_up(&amina, &url, "amina").await;
    amina.js("location.hash = '#/devices'", json!([])).await;
    amina.click("#device-unlock-on").await;
    amina.element("#device-unlock-off").await;
    amina.screenshot("device-unlock-on").await;
    // The browser keeps the state key sealed under the authenticator's
    // secret, never the key itself.
    let kept = amina
        .js(
            "return new Promise((done) => { const q = indexedDB.open('amicus'); \
             q.onsuccess = () => { const g = q.result.transaction('devices').objectStore('devices').get('amina'); \
             g.onsuccess = () => { const u = g.result.unlock; done(u ? [u.credential.length, u.salt.length, u.wrapped.length] : null); }; }; })",
            json!([]),
        )
        .await;
    // A credential id; a 32-byte salt; the key sealed: 12 bytes of
    // format, a 24-byte nonce, 32 bytes of key and a 16-byte tag.
    assert!(kept[0].as_u64().unwrap_or(0) >= 16, "{kept}");
    assert_eq!((&kept[1], &kept[2]), (&json!(32), &json!(84)), "{kept}");

    // Back later: only the unlock form, the other ways behind a link.
    amina.goto(&url).await;
    amina.element("#unlock-device").await;
    let shown = amina
        .js(
            "const seen = (s) => { const e = document.querySelector(s); return !!e && e.checkVisibility(); }; \
             return [seen('#sign-in'), seen('#sign-up'), seen('#link'), seen('#recover'), document.getElementById('other-ways').open]",
            json!([]),
        )
        .await;
    assert_eq!(shown, json!([true, false, false, false, false]));
    amina.screenshot("returning").await;
    amina.click("#unlock-device").await;
    amina
        .wait_for(
            "unlocked by the device",
            "const c = document.getElementById('connection'); return c && c.className === 'online'",
            LONG,
        )
        .await;

    // Turned off: the passphrase alone, as before.
    amina.js("location.hash = '#/devices'", json!([])).await;
    amina.click("#device-unlock-off").await;
    amina.element("#device-unlock-on").await;
    amina.goto("about:blank").await;
    unlock(&amina, &url, "amina").await;
    amina.goto("about:blank").await;
    amina.goto(&url).await;
    amina.element("#sign-in").await;
    assert_eq!(
        amina
            .js("return document.getElementById('unlock-device')", json!([]))
            .await,
        Value::Null,
        "the device still unlocks after it was turned off"
    );
}
