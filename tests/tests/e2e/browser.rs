//! The web app in a real browser: two headless Chromium profiles (one in
//! French, one in English) against a real `amicus serve` with the app built
//! by `cargo xtask web`. Screenshots go to `<target>/browser-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::relay_double::Relay;
use crate::support::{Server, register, shared_filing};
use crate::webdriver::Browser;

pub(crate) const LONG: Duration = Duration::from_secs(60);

/// One browser test at a time: each drives Chromium profiles, which two
/// cores run one scenario's worth of at a time.
pub(crate) static CHROMIUM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/release/deps/e2e-… → <target>
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

pub(crate) fn web_dir() -> PathBuf {
    let web = target_dir().join("web");
    assert!(
        web.join("index.html").is_file() && web.join("pkg/amicus_client_bg.wasm").is_file(),
        "{} holds no built web app: run `cargo xtask web` (or `cargo xtask test`) first",
        web.display()
    );
    web
}

pub(crate) async fn sign_up(b: &Browser, url: &str, user: &str) {
    b.goto(url).await;
    b.type_into("#sign-up input[name=user]", user).await;
    b.type_into(
        "#sign-up input[name=passphrase]",
        "correct horse battery staple",
    )
    .await;
    b.click("#sign-up button[type=submit]").await;
    b.wait_for(
        "the connection after signing up",
        "const c = document.getElementById('connection'); return c && c.className === 'online'",
        LONG,
    )
    .await;
}

/// Selects, in the editor, the first occurrence of `arguments[0]` (or
/// places the caret before it when `arguments[1]` is true). The editor
/// shows the text as text nodes, with its marks as elements around them.
pub(crate) const SELECT: &str = "const e = document.getElementById('editor'); e.focus(); \
    const nodes = []; const walk = (x) => { for (const c of x.childNodes) { if (c.nodeType === 3) nodes.push(c); else walk(c); } }; walk(e); \
    const find = (i) => { let seen = 0; for (const n of nodes) { if (i <= seen + n.data.length) return [n, i - seen]; seen += n.data.length; } }; \
    const at = e.textContent.indexOf(arguments[0]); if (at < 0) throw new Error('not in the text: ' + arguments[0]); \
    const r = document.createRange(); r.setStart(...find(at)); r.setEnd(...find(arguments[1] ? at : at + arguments[0].length)); \
    getSelection().removeAllRanges(); getSelection().addRange(r);";

/// The W3C WebDriver codes of the keys the editor test presses.
/// The controls of the page a finger cannot reliably touch: each visible
/// button, link, field, list, summary and element made focusable whose box
/// (a check box's or radio button's: its label's) is less than 44 × 44 CSS
/// px, overlaps another's, or (a link, button or summary) has its text run
/// out of it, as `tag.class "text" W×H` (and what is wrong). A field drawn
/// only through its label is judged by its label. `arguments[0]`, if not
/// empty, selects controls left out because the page offers what they do
/// through others of the right size (WCAG 2.5.5's "equivalent"). A link inside a sentence is left out, as WCAG 2.5.5 leaves
/// it out.
pub(crate) const SMALL_TARGETS: &str = r#"
const small = [];
const boxes = [];
const name = (t, r) => {
  const cls = typeof t.className === 'string' && t.className ? '.' + t.className.split(' ')[0] : '';
  const text = (t.textContent || t.getAttribute('aria-label') || t.name || '').trim().slice(0, 24);
  return `${t.tagName.toLowerCase()}${cls} "${text}" ${Math.round(r.width)}x${Math.round(r.height)}`;
};
for (const e of document.querySelectorAll('button, a[href], input:not([type=hidden]), select, textarea, summary, [role=button], [tabindex]:not([tabindex="-1"])')) {
  if (arguments[0] && e.matches(arguments[0])) continue;
  // A check box, a radio button or a field drawn through its label (a
  // file field hidden behind a button-like label): the label is touched.
  const drawn = e.getBoundingClientRect();
  const label = e.closest('label') || (e.labels && e.labels[0]);
  const t = label && (e.matches('input[type=checkbox], input[type=radio]') || (drawn.width <= 1 && drawn.height <= 1)) ? label : e;
  const r = t.getBoundingClientRect();
  const style = getComputedStyle(t);
  // Not drawn: hidden, or inside a closed <details>.
  if (r.width === 0 || r.height === 0 || !t.checkVisibility({ visibilityProperty: true })) continue;
  if (e.tagName === 'A' && style.display === 'inline'
      && [...e.parentElement.childNodes].some((n) => n.nodeType === 3 && n.data.trim())) continue;
  if (r.width < 44 || r.height < 44) small.push(name(t, r));
  if (t.matches('a, button, summary') && t.scrollWidth > t.clientWidth + 1) small.push(`${name(t, r)} runs out of its box`);
  for (const [o, q] of boxes) {
    if (o.contains(t) || t.contains(o)) continue;
    const x = Math.min(r.right, q.right) - Math.max(r.left, q.left);
    const y = Math.min(r.bottom, q.bottom) - Math.max(r.top, q.top);
    if (x > 1 && y > 1) small.push(`${name(t, r)} overlaps ${name(o, q)}`);
  }
  boxes.push([t, r]);
}
return small;
"#;
/// Asserts that every control of the page `b` shows fits a finger
/// (`SMALL_TARGETS` finds none), `step` naming the page in the message.
pub(crate) async fn fits_a_finger(b: &Browser, step: &str) {
    fits_a_finger_but(b, step, "").await;
}

/// `fits_a_finger`, leaving out the controls `equivalent` selects: their
/// page does what they do through controls or content of the right size.
pub(crate) async fn fits_a_finger_but(b: &Browser, step: &str, equivalent: &str) {
    let small = b.js(SMALL_TARGETS, serde_json::json!([equivalent])).await;
    assert_eq!(
        small,
        serde_json::json!([]),
        "{}: controls smaller than 44 × 44 px, over one another or too narrow for their text on the {step} page",
        b.name
    );
}

pub(crate) const ENTER: &str = "\u{E007}";
const CONTROL: &str = "\u{E009}";
const SHIFT: &str = "\u{E008}";
const RELEASE: &str = "\u{E000}";

/// Places the caret at the end of the editor's text.
const TO_END: &str = "const e = document.getElementById('editor'); e.focus(); \
    const r = document.createRange(); r.selectNodeContents(e); r.collapse(false); \
    getSelection().removeAllRanges(); getSelection().addRange(r);";

/// Opens the app and unlocks the device of `user` stored in the browser
/// (the page lists no account: the name is typed).
pub(crate) async fn unlock(b: &Browser, url: &str, user: &str) {
    b.goto(url).await;
    b.wait_for(
        "a sign-in form that lists no account",
        "return !!document.querySelector('#sign-in input[name=user]') && !document.querySelector('#sign-in select, #sign-in option')",
        LONG,
    )
    .await;
    submit_sign_in(b, user).await;
    b.wait_for(
        "the connection after unlocking",
        "const c = document.getElementById('connection'); return c && c.className === 'online'",
        LONG,
    )
    .await;
}

/// Fills the sign-in form with `user` and the tests' passphrase, and sends it.
pub(crate) async fn submit_sign_in(b: &Browser, user: &str) {
    b.type_into("#sign-in input[name=user]", user).await;
    b.type_into(
        "#sign-in input[name=passphrase]",
        "correct horse battery staple",
    )
    .await;
    b.click("#sign-in button[type=submit]").await;
}

/// Creates a confidential space named `name` from the spaces page and
/// invites `user` as a member; returns the space id once `user` is listed.
pub(crate) async fn create_space_and_invite(b: &Browser, name: &str, user: &str) -> String {
    b.type_into("#new-space input[name=name]", name).await;
    b.click("#new-space button[type=submit]").await;
    b.element("#invite input[name=user]").await;
    let space = b
        .js("return location.hash.split('/')[2]", json!([]))
        .await
        .as_str()
        .expect("space id in the location")
        .to_owned();
    b.type_into("#invite input[name=user]", user).await;
    b.click("#invite button[type=submit]").await;
    let listed = format!("return document.querySelector('tr[data-user={user}]') !== null");
    b.wait_for(&format!("{user} in the members"), &listed, LONG)
        .await;
    space
}

/// Waits for the app's service worker, then lets the page store what it
/// read (within 300 ms, PROTOCOL §16), before the network goes.
pub(crate) async fn worker_ready_and_stored(b: &Browser) {
    b.js(
        "navigator.serviceWorker.ready.then(() => { window.workerReady = true; })",
        json!([]),
    )
    .await;
    b.wait_for(
        "the app's service worker",
        "return window.workerReady === true",
        LONG,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
}

pub(crate) async fn text_of(b: &Browser, css: &str) -> String {
    let q = serde_json::to_string(css).unwrap();
    b.js(
        &format!(
            "const e = document.querySelector({q}); return e ? (e.value ?? e.textContent) : null"
        ),
        json!([]),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_co_edit_share_a_file_and_search_in_chromium() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!("web = {web:?}\n");
    let server = Server::start_with(&data, &config);
    let shots = target_dir().join("browser-screenshots");
    // Only this run's screenshots (a failure leaves a `timeout` one).
    let _ = std::fs::remove_dir_all(&shots);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let amina = Browser::start("amina", "fr", &shots, &downloads.join("amina")).await;
    let bruno = Browser::start("bruno", "en", &shots, &downloads.join("bruno")).await;

    // The interface follows the browser's language: French for Amina.
    amina.goto(&server.url).await;
    amina
        .wait_for(
            "the French sign-up form",
            "return document.documentElement.lang === 'fr' && document.querySelector('#sign-up h2')?.textContent === 'Créer un compte'",
            LONG,
        )
        .await;
    sign_up(&amina, &server.url, "amina").await;
    sign_up(&bruno, &server.url, "bruno").await;
    amina.screenshot("signed-up").await;

    // Amina creates a confidential space and invites Bruno.
    let space = create_space_and_invite(&amina, "Recours", "bruno").await;
    amina.screenshot("space-members").await;

    // Bruno's browser joins from the Welcome without reloading.
    bruno
        .wait_for(
            "the space in Bruno's list",
            &format!(
                "return document.querySelector('.space-link[data-space=\"{space}\"]') !== null"
            ),
            LONG,
        )
        .await;

    // The name Amina gave is the space's at Bruno's; Amina, its space
    // manager, describes it, and Bruno (a contributor, who cannot) reads it.
    bruno
        .click(&format!(".space-link[data-space=\"{space}\"]"))
        .await;
    bruno
        .wait_for(
            "the space's name at Bruno's",
            "return document.getElementById('space-name')?.textContent === 'Recours' \
             && document.getElementById('rename-space') === null",
            LONG,
        )
        .await;
    amina.click("#rename-space summary").await;
    amina
        .type_into(
            "#space-profile-form textarea[name=description]",
            "Requêtes devant la Cour",
        )
        .await;
    amina.click("#space-profile-form button[type=submit]").await;
    bruno
        .wait_for(
            "the description at Bruno's",
            "return document.getElementById('space-description')?.textContent === 'Requêtes devant la Cour'",
            LONG,
        )
        .await;

    // Amina writes a filing; both open it.
    amina
        .type_into("#new-doc input[name=title]", "Requête")
        .await;
    amina.click("#new-doc button[type=submit]").await;
    amina.element("#editor").await;
    let doc = amina
        .js("return location.hash.split('/')[3]", json!([]))
        .await
        .as_str()
        .expect("document id")
        .to_owned();
    bruno
        .js(
            "location.hash = arguments[0]",
            json!([format!("#/doc/{space}/{doc}")]),
        )
        .await;
    bruno.element("#editor").await;

    // Both type at once; both end with the same text holding both.
    let a = "Bonjour de Kinshasa. ";
    let b = "Hello from Tunis. ";
    tokio::join!(amina.type_into("#editor", a), bruno.type_into("#editor", b));
    let both = format!(
        "const v = document.getElementById('editor').textContent; return v.includes({a:?}) && v.includes({b:?})"
    );
    amina
        .wait_for("both sentences at Amina's", &both, LONG)
        .await;
    bruno
        .wait_for("both sentences at Bruno's", &both, LONG)
        .await;
    // Quiescence: the two texts converge to the same string.
    let mut same = false;
    for _ in 0..100 {
        if text_of(&amina, "#editor").await == text_of(&bruno, "#editor").await {
            same = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ta, tb) = (
        text_of(&amina, "#editor").await,
        text_of(&bruno, "#editor").await,
    );
    assert!(same, "the texts differ:\n amina: {ta:?}\n bruno: {tb:?}");
    assert_eq!(ta.chars().count(), a.chars().count() + b.chars().count());
    bruno
        .wait_for(
            "Amina's presence at Bruno's",
            "return document.getElementById('presence').textContent.includes('amina')",
            LONG,
        )
        .await;
    // The editor reads each change as one replacement: on random pairs of
    // texts with characters outside the Basic Multilingual Plane, the
    // replacement rebuilds the new text and never cuts a surrogate pair.
    let broken = amina
        .js(
            "return import('./editor.js').then(({ difference }) => { \
               const alphabet = ['a', 'b', '\\n', 'é', 'ب', '😀', '😁', '🈀']; \
               const word = () => Array.from({ length: Math.floor(Math.random() * 6) }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join(''); \
               const cut = (s, i) => i > 0 && i < s.length && s.charCodeAt(i) >= 0xdc00 && s.charCodeAt(i) <= 0xdfff; \
               const bad = []; \
               for (let k = 0; k < 5000; k++) { \
                 const was = word(); const now = word(); const [s, ew, en] = difference(was, now); \
                 if (was.slice(0, s) + now.slice(s, en) + was.slice(ew) !== now || cut(was, s) || cut(was, ew) || cut(now, s) || cut(now, en)) bad.push([was, now]); \
               } \
               return bad.slice(0, 3); })",
            json!([]),
        )
        .await;
    assert_eq!(broken, json!([]), "replacements that are wrong");

    // Amina's caret, placed before "Kinshasa", is drawn at Bruno's right
    // before the same letter.
    amina.js(SELECT, json!(["Kinshasa", true])).await;
    bruno
        .wait_for(
            "Amina's caret at Bruno's",
            "const c = document.querySelector('.remote-caret[data-user=\"amina\"]'); if (!c) return false; \
             const e = document.getElementById('editor'); const t = e.textContent; const at = t.indexOf('Kinshasa'); \
             const nodes = []; const walk = (x) => { for (const n of x.childNodes) { if (n.nodeType === 3) nodes.push(n); else walk(n); } }; walk(e); \
             let seen = 0; let r = null; for (const n of nodes) { if (at < seen + n.data.length) { r = document.createRange(); r.setStart(n, at - seen); r.setEnd(n, at - seen + 1); break; } seen += n.data.length; } \
             const k = r.getBoundingClientRect(); const b = c.getBoundingClientRect(); \
             return Math.abs(b.left - k.left) < 4 && Math.abs(b.top - k.top) < 4",
            LONG,
        )
        .await;
    bruno.screenshot("remote-caret").await;

    // Formatting in place, a comment on a passage and a named version, seen
    // by both. Bold comes from the toolbar, italic from Ctrl+I.
    amina.js(SELECT, json!(["Kinshasa", false])).await;
    amina.click("button[data-mark=bold]").await;
    amina.js(SELECT, json!(["Hello", false])).await;
    amina
        .type_into("#editor", &format!("{CONTROL}i{RELEASE}"))
        .await;
    // The passage is selected and the comment field takes the focus in the
    // same turn of the page, before the browser tells of the new selection:
    // a quick hand does the same, and the comment must still be on "Tunis".
    amina
        .js(
            &format!("{SELECT} document.querySelector('#comment-form input[name=text]').focus();"),
            json!(["Tunis", false]),
        )
        .await;
    amina
        .type_into("#comment-form input[name=text]", "Préciser la date")
        .await;
    amina.click("#comment-form button[type=submit]").await;
    amina
        .type_into("#version-form input[name=name]", "Premier jet")
        .await;
    amina.click("#version-form button[type=submit]").await;
    bruno
        .wait_for(
            "bold and italic at Bruno's",
            "return document.querySelector('#editor strong')?.textContent === 'Kinshasa' \
             && document.querySelector('#editor em')?.textContent === 'Hello'",
            LONG,
        )
        .await;
    bruno
        .wait_for(
            "the comment on \"Tunis\" at Bruno's",
            "return document.querySelector('#editor mark')?.textContent === 'Tunis' \
             && document.querySelector('#comments q')?.textContent === 'Tunis' \
             && document.querySelector('#comments').textContent.includes('Préciser la date')",
            LONG,
        )
        .await;
    bruno
        .wait_for(
            "the version at Bruno's",
            "return (document.querySelector('#versions summary')?.textContent || '').startsWith('Premier jet')",
            LONG,
        )
        .await;
    // Each carries the time Amina's device gave, shown at Bruno's.
    bruno
        .wait_for(
            "the version's and the comment's time at Bruno's",
            "const recent = (sel) => { const t = document.querySelector(sel); \
               if (!t || !t.textContent.trim()) return false; \
               const age = Date.now() - Date.parse(t.getAttribute('datetime')); \
               return age >= -60000 && age < 3600000; }; \
             return recent('#versions summary time') && recent('#comments li p time')",
            LONG,
        )
        .await;
    amina.screenshot("co-editing").await;
    bruno.screenshot("co-editing").await;

    // Bruno answers Amina's comment and resolves it; Amina sees both, with
    // who resolved it, and opens it again.
    bruno
        .type_into("#comments form.reply input[name=reply]", "C'est fait")
        .await;
    // Amina's name offered from the members, and marked in the text.
    bruno
        .click("#comments .mention-chip[data-user=amina]")
        .await;
    bruno
        .click("#comments form.reply button[type=submit]")
        .await;
    bruno.click("#comments button.resolve").await;
    amina
        .wait_for(
            "Bruno's reply and resolution at Amina's",
            "const li = document.querySelector('#comments li'); \
             return li && li.classList.contains('resolved') \
               && li.textContent.includes(\"C'est fait @amina\") \
               && li.querySelector('mark.mention[data-user=amina]') !== null \
               && (li.querySelector('.resolved-by')?.textContent || '') === 'Résolu par bruno' \
               && li.querySelectorAll('p').length === 2 && !li.querySelector('form.reply')",
            LONG,
        )
        .await;
    amina.screenshot("resolved").await;
    amina.click("#comments button.resolve").await;
    bruno
        .wait_for(
            "the thread open again at Bruno's",
            "const li = document.querySelector('#comments li'); \
             return li && !li.classList.contains('resolved') && li.querySelector('form.reply') !== null",
            LONG,
        )
        .await;

    // Undo and redo (Ctrl+Z, Ctrl+Shift+Z) take back and restore Amina's
    // typing, at both pages.
    amina.js(TO_END, json!([])).await;
    amina.type_into("#editor", "Brouillon").await;
    let with_draft = format!(
        "return document.getElementById('editor').textContent === {:?}",
        format!("{ta}Brouillon")
    );
    let without_draft = format!("return document.getElementById('editor').textContent === {ta:?}");
    bruno
        .wait_for("the draft word at Bruno's", &with_draft, LONG)
        .await;
    amina
        .type_into("#editor", &format!("{CONTROL}z{RELEASE}"))
        .await;
    bruno
        .wait_for("the draft word undone at Bruno's", &without_draft, LONG)
        .await;
    amina
        .type_into("#editor", &format!("{CONTROL}{SHIFT}z{RELEASE}"))
        .await;
    bruno
        .wait_for("the draft word redone at Bruno's", &with_draft, LONG)
        .await;
    amina
        .type_into("#editor", &format!("{CONTROL}z{RELEASE}"))
        .await;
    for who in [&amina, &bruno] {
        who.wait_for("the draft word undone again", &without_draft, LONG)
            .await;
    }

    // The server goes away. Bruno keeps typing; Amina types too, then
    // leaves the page before the server is back: her sentence is kept,
    // sealed, in IndexedDB. Once the server is back at the same address,
    // Bruno's page reconnects, Amina opens the app and unlocks again, and
    // both sentences reach both pages.
    let listen = server.url.trim_start_matches("http://").to_owned();
    server.stop();
    for who in [&bruno, &amina] {
        who.wait_for(
            "the offline state",
            "return document.getElementById('connection').className === 'offline'",
            LONG,
        )
        .await;
        who.js(TO_END, json!([])).await;
    }
    bruno
        .type_into("#editor", &format!("{ENTER}Écrit hors ligne."))
        .await;
    amina.type_into("#editor", "Gardé au rechargement.").await;
    amina
        .wait_for(
            "Amina's unsent edit kept in the browser",
            "return document.getElementById('unsent')?.dataset.documents === '1'",
            LONG,
        )
        .await;
    bruno.screenshot("offline").await;
    amina.screenshot("offline-unsent").await;
    amina.goto("about:blank").await;
    let sealed = walk(&amina.profile().join("Default/IndexedDB"));
    assert!(!sealed.is_empty(), "no IndexedDB files in Amina's profile");
    for file in sealed {
        let data = std::fs::read(&file).unwrap_or_default();
        let needle = "Gardé au rechargement".as_bytes();
        assert!(
            !data.windows(needle.len()).any(|w| w == needle),
            "the unsent edit is in clear in {}",
            file.display()
        );
    }
    let server = Server::start_at(&data, &config, &listen);
    unlock(&amina, &server.url, "amina").await;
    amina
        .js(
            "location.hash = arguments[0]",
            json!([format!("#/doc/{space}/{doc}")]),
        )
        .await;
    let both_offline = "const v = document.getElementById('editor')?.textContent || ''; \
        return v.includes('\\nÉcrit hors ligne.') && v.includes('Gardé au rechargement.')";
    amina
        .wait_for("both offline sentences at Amina's", both_offline, LONG)
        .await;
    bruno
        .wait_for("both offline sentences at Bruno's", both_offline, LONG)
        .await;
    amina
        .wait_for(
            "the kept edit forgotten once acknowledged",
            "return document.getElementById('unsent')?.dataset.documents === '0'",
            LONG,
        )
        .await;
    let now = text_of(&bruno, "#editor").await;
    assert!(now.starts_with(&ta), "{now:?}");
    assert_eq!(
        now.chars().count(),
        ta.chars().count() + "\nÉcrit hors ligne.Gardé au rechargement.".chars().count(),
        "each sentence once: {now:?}"
    );
    let same = format!("return document.getElementById('editor').textContent === {now:?}");
    amina
        .wait_for("the same text at Amina's", &same, LONG)
        .await;
    // Bruno's Enter is a line break in the text, drawn as a new line, with
    // no markup of the browser's own in the editor.
    let lines = amina
        .js(
            "const e = document.getElementById('editor'); \
             const nodes = []; const walk = (x) => { for (const n of x.childNodes) { if (n.nodeType === 3) nodes.push(n); else walk(n); } }; walk(e); \
             const top = (i) => { let seen = 0; for (const n of nodes) { if (i < seen + n.data.length) { const r = document.createRange(); r.setStart(n, i - seen); r.setEnd(n, i - seen + 1); return r.getBoundingClientRect().top; } seen += n.data.length; } }; \
             const at = e.textContent.indexOf('\\nÉcrit') + 1; \
             return [top(0) < top(at), e.querySelectorAll('div, p, span, b, i, font').length]",
            json!([]),
        )
        .await;
    assert_eq!(lines, json!([true, 0]), "the line break as drawn");

    // A file uploads from Bruno and downloads at Amina's, byte-identical.
    let file = dir.path().join("evidence.bin");
    let bytes: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    bruno
        .js(
            "location.hash = arguments[0]",
            json!([format!("#/space/{space}")]),
        )
        .await;
    // Amina makes Bruno a content manager meanwhile: his page shows it.
    amina
        .js(
            "location.hash = arguments[0]",
            json!([format!("#/space/{space}")]),
        )
        .await;
    amina.element("tr[data-user=bruno] select.role").await;
    amina
        .js(
            "const s = document.querySelector('tr[data-user=bruno] select.role'); s.value = 'content_manager'; s.dispatchEvent(new Event('change'));",
            json!([]),
        )
        .await;
    bruno
        .wait_for(
            "Bruno's new role at Bruno's",
            "return document.querySelector('tr[data-user=bruno]')?.textContent.includes('Content manager')",
            LONG,
        )
        .await;
    // The server goes away as Bruno starts the upload; he leaves the page.
    // Back, he chooses the file again and the upload resumes from its
    // stored record (the progress and, sealed with it, the chunk sealed
    // before: more than 1 MiB): that chunk is sent, not sealed again.
    server.stop();
    bruno
        .wait_for(
            "the offline state at Bruno's",
            "return document.getElementById('connection').className === 'offline'",
            LONG,
        )
        .await;
    bruno.type_into("#upload", file.to_str().unwrap()).await;
    bruno
        .wait_for(
            "the upload's progress stored before its first chunk leaves",
            "return new Promise((done) => { const q = indexedDB.open('amicus'); \
             q.onsuccess = () => { const g = q.result.transaction('uploads').objectStore('uploads').getAll(); \
             g.onsuccess = () => done(g.result.some((u) => u.user === 'bruno' && u.sealed && u.sealed.length > 1048576)); }; })",
            LONG,
        )
        .await;
    bruno.goto("about:blank").await;
    let server = Server::start_at(&data, &config, &listen);
    unlock(&bruno, &server.url, "bruno").await;
    bruno
        .js(
            "location.hash = arguments[0]",
            json!([format!("#/space/{space}")]),
        )
        .await;
    bruno.element(".interrupted input.resume").await;
    bruno.screenshot("interrupted-upload").await;
    bruno
        .type_into(".interrupted input.resume", file.to_str().unwrap())
        .await;
    bruno
        .wait_for(
            "the resumed upload to finish",
            "return document.querySelector('.file-link') !== null \
             && document.querySelector('.interrupted') === null",
            LONG,
        )
        .await;
    // Resumed, not restarted: the server holds exactly the file's chunks
    // (a fresh start would have left the first attempt's chunk behind).
    let blobs = walk(&data.join("blobs"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.len() == 64))
        .count();
    assert_eq!(blobs, 3, "chunks stored for a 2.5 MB file");
    amina.click(".file-link").await;
    let downloaded = downloads.join("amina").join("evidence.bin");
    let mut got = None;
    for _ in 0..300 {
        if let Ok(b) = std::fs::read(&downloaded)
            && b.len() == bytes.len()
        {
            got = Some(b);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = got.unwrap_or_else(|| panic!("{} was not downloaded", downloaded.display()));
    assert!(got == bytes, "the downloaded file differs from the upload");
    amina.screenshot("library").await;

    // Amina organises the library: a folder "Pièces" and, made in it,
    // "Témoins"; the file moved into Témoins and renamed. Bruno sees it
    // nested under its new name; a folder that holds entries is not
    // removed.
    amina
        .type_into("#new-folder input[name=name]", "Pièces")
        .await;
    amina.click("#new-folder button[type=submit]").await;
    amina.element("#target-folder").await;
    const CHOOSE: &str = "const s = document.querySelector(arguments[0]); \
        s.value = [...s.options].find((o) => o.text === arguments[1]).value; \
        s.dispatchEvent(new Event('change'));";
    amina.js(CHOOSE, json!(["#target-folder", "Pièces"])).await;
    amina
        .type_into("#new-folder input[name=name]", "Témoins")
        .await;
    amina.click("#new-folder button[type=submit]").await;
    amina
        .wait_for(
            "Témoins inside Pièces",
            "return [...document.querySelectorAll('li.folder li.folder > .folder-name')].some((n) => n.textContent === 'Témoins')",
            LONG,
        )
        .await;
    amina.click("li.file details.entry-actions summary").await;
    amina
        .js(
            CHOOSE,
            json!(["li.file form.move select", "Pièces / Témoins"]),
        )
        .await;
    amina.click("li.file form.move button").await;
    amina
        .wait_for(
            "the file in Témoins",
            "return document.querySelector('li.folder li.folder li.file') !== null",
            LONG,
        )
        .await;
    amina.click("li.file details.entry-actions summary").await;
    amina
        .js(
            "document.querySelector('li.file form.rename input').value = 'témoignage.bin'",
            json!([]),
        )
        .await;
    amina.click("li.file form.rename button").await;
    bruno
        .wait_for(
            "the file renamed and nested at Bruno's",
            "return (document.querySelector('li.folder li.folder li.file .file-link')?.textContent || '').startsWith('témoignage.bin')",
            LONG,
        )
        .await;
    amina.click("li.folder details.entry-actions summary").await;
    amina.click("li.folder button.remove-entry").await;
    amina.click("li.folder button.remove-entry").await;
    amina
        .wait_for(
            "the refusal to remove a folder that holds entries",
            "return (document.getElementById('status')?.textContent || '') === 'Ce dossier n’est pas vide : déplacez ou supprimez d’abord ce qu’il contient.' \
             && document.querySelector('li.folder li.folder li.file') !== null",
            LONG,
        )
        .await;
    amina.screenshot("organised").await;

    // German and Portuguese: Bruno's interface in each, left to right.
    for (lang, spaces) in [("de", "Bereiche"), ("pt", "Espaços")] {
        bruno
            .js(
                "const s = document.getElementById('language'); s.value = arguments[0]; s.dispatchEvent(new Event('change'));",
                json!([lang]),
            )
            .await;
        bruno
            .wait_for(
                &format!("Bruno's interface in {lang}"),
                &format!(
                    "return document.documentElement.lang === {lang:?} && document.documentElement.dir === 'ltr' \
                     && document.querySelector('header nav a[href=\"#/\"]')?.textContent === {spaces:?}"
                ),
                LONG,
            )
            .await;
        bruno.screenshot(&format!("interface-{lang}")).await;
    }

    // Arabic: right to left, and remembered after a reload.
    amina
        .js(
            "const s = document.getElementById('language'); s.value = 'ar'; s.dispatchEvent(new Event('change'));",
            json!([]),
        )
        .await;
    amina
        .wait_for(
            "the Arabic layout",
            "return document.documentElement.dir === 'rtl' && document.documentElement.lang === 'ar'",
            LONG,
        )
        .await;
    amina.screenshot("arabic-rtl").await;
    amina.goto(&server.url).await;
    amina
        .wait_for(
            "Arabic remembered after a reload",
            "return document.documentElement.dir === 'rtl' && document.querySelector('#sign-in h2')?.textContent === 'فتح القفل'",
            LONG,
        )
        .await;
    amina.screenshot("arabic-sign-in").await;

    // The device state in IndexedDB opens only with the passphrase; once
    // unlocked, the page reads the space's log again and shows the filing.
    amina.type_into("#sign-in input[name=user]", "amina").await;
    amina
        .type_into("#sign-in input[name=passphrase]", "not the passphrase")
        .await;
    amina.click("#sign-in button[type=submit]").await;
    amina
        .wait_for(
            "the wrong passphrase refused",
            "return document.getElementById('status').textContent.includes('عبارة المرور خاطئة')",
            LONG,
        )
        .await;
    amina
        .js(
            "document.querySelector('#sign-in input[name=passphrase]').value = ''",
            json!([]),
        )
        .await;
    amina
        .type_into(
            "#sign-in input[name=passphrase]",
            "correct horse battery staple",
        )
        .await;
    amina.click("#sign-in button[type=submit]").await;
    amina
        .wait_for(
            "the connection after unlocking",
            "const c = document.getElementById('connection'); return c && c.className === 'online'",
            LONG,
        )
        .await;
    amina
        .js(
            "location.hash = arguments[0]",
            json!([format!("#/doc/{space}/{doc}")]),
        )
        .await;
    let restored = format!(
        "const e = document.getElementById('editor'); return e !== null && e.textContent === {now:?}"
    );
    amina
        .wait_for("the filing rebuilt after unlocking", &restored, LONG)
        .await;

    // Amina links a second browser (in Arabic) with the code her first one
    // shows, typed in Arabic-Indic digits: the new browser is certified,
    // added to the space Amina manages, and reads the filing.
    let amina2 = Browser::start("amina-2", "ar", &shots, &downloads.join("amina-2")).await;
    amina.js("location.hash = '#/devices'", json!([])).await;
    amina.click("#link-another").await;
    let code = amina
        .wait_for(
            "the pairing code",
            "return document.getElementById('pairing-code')?.textContent || null",
            LONG,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let arabic: String = code
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_u32(0x660 + d).unwrap(),
            None => ' ',
        })
        .collect();
    assert_eq!(arabic.chars().filter(|c| *c != ' ').count(), 24, "{code}");
    amina.screenshot("pairing-code").await;
    amina2.goto(&server.url).await;
    amina2.type_into("#link input[name=user]", "amina").await;
    amina2.type_into("#link input[name=code]", &arabic).await;
    amina2
        .type_into(
            "#link input[name=passphrase]",
            "another browser, another passphrase",
        )
        .await;
    amina2.click("#link button[type=submit]").await;
    amina2
        .wait_for(
            "the linked browser online",
            "const c = document.getElementById('connection'); return c && c.className === 'online'",
            LONG,
        )
        .await;
    amina
        .wait_for(
            "the new browser added to the space",
            "return document.getElementById('pairing-done')?.textContent.includes('1') \
             && document.querySelectorAll('ul.devices li').length === 2",
            LONG,
        )
        .await;
    amina2
        .wait_for(
            "the space in the linked browser",
            &format!(
                "return document.querySelector('.space-link[data-space=\"{space}\"]') !== null"
            ),
            LONG,
        )
        .await;
    amina2
        .js(
            "location.hash = arguments[0]",
            json!([format!("#/doc/{space}/{doc}")]),
        )
        .await;
    amina2
        .wait_for("the filing in the linked browser", &restored, LONG)
        .await;
    amina2.screenshot("linked-browser").await;

    // The second browser is seized: Amina revokes it from her first one
    // (two clicks, the second confirming). The page says it was removed
    // from the space and lists it as revoked; the revoked browser loses its
    // connection and, unable to sign in again, says so in Arabic.
    amina.js("location.hash = '#/devices'", json!([])).await;
    amina
        .wait_for(
            "a revoke button on the linked browser's line",
            "return document.querySelector('ul.devices li button.revoke') !== null",
            LONG,
        )
        .await;
    amina.click("ul.devices li button.revoke").await;
    amina.click("ul.devices li button.revoke.confirm").await;
    amina
        .wait_for(
            "the linked browser revoked and out of the space",
            "const s = document.getElementById('status');              return document.querySelector('ul.devices li.revoked') !== null              && document.querySelector('ul.devices li button.revoke') === null              && s.textContent.includes('1')",
            LONG,
        )
        .await;
    amina.screenshot("revoked-browser").await;
    amina2
        .wait_for(
            "the revoked browser offline and told it cannot sign in",
            "const c = document.getElementById('connection'); const s = document.getElementById('status');              return c && c.className !== 'online' && s.textContent.includes('أُبطل هذا المتصفح من جهاز آخر')",
            LONG,
        )
        .await;
    drop(amina2);

    // Recovery: Amina's spaces page warns that her account has no recovery
    // code; she makes one (shown, then used once she confirms). A new browser (German interface) that knows only
    // her name and the code gets her account back: a wrong code is refused
    // and changes nothing, the right one registers a device that holds her
    // identity key again (it can link further browsers).
    amina.js("location.hash = '#/'", json!([])).await;
    amina
        .wait_for(
            "the warning that no recovery code exists",
            "const n = document.getElementById('no-recovery'); return n !== null && !n.hidden",
            LONG,
        )
        .await;
    amina.js("location.hash = '#/devices'", json!([])).await;
    amina.click("#make-recovery").await;
    let recovery = amina
        .wait_for(
            "the recovery code",
            "return document.getElementById('recovery-code')?.textContent || null",
            LONG,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        recovery.chars().filter(char::is_ascii_digit).count(),
        40,
        "{recovery}"
    );
    amina.screenshot("recovery-code").await;
    amina.click("#activate-recovery").await;
    amina
        .wait_for(
            "the recovery code active",
            "return document.getElementById('recovery-active') !== null",
            LONG,
        )
        .await;
    let amina3 = Browser::start("amina-3", "de", &shots, &downloads.join("amina-3")).await;
    amina3.goto(&server.url).await;
    let wrong: String = recovery
        .chars()
        .enumerate()
        .map(|(i, c)| match (i, c.to_digit(10)) {
            (0, Some(d)) => char::from_digit((d + 1) % 10, 10).unwrap(),
            _ => c,
        })
        .collect();
    for (code, outcome) in [(&wrong, "refused"), (&recovery, "accepted")] {
        amina3
            .js(
                "document.querySelectorAll('#recover input').forEach((i) => { i.value = ''; })",
                json!([]),
            )
            .await;
        amina3.type_into("#recover input[name=user]", "amina").await;
        amina3.type_into("#recover input[name=code]", code).await;
        amina3
            .type_into("#recover input[name=passphrase]", "a third passphrase")
            .await;
        amina3.click("#recover button[type=submit]").await;
        if outcome == "refused" {
            amina3
                .wait_for(
                    "the wrong recovery code refused",
                    "const s = document.getElementById('status'); return s.className.includes('error') \
                     && s.textContent.includes('Wiederherstellungscode')",
                    LONG,
                )
                .await;
        }
    }
    amina3
        .wait_for(
            "the recovered browser online",
            "const c = document.getElementById('connection'); return c && c.className === 'online'",
            LONG,
        )
        .await;
    amina3.js("location.hash = '#/devices'", json!([])).await;
    amina3
        .wait_for(
            "the recovered browser among Amina's devices, able to link others",
            "return document.querySelectorAll('ul.devices li').length === 3 \
             && document.getElementById('link-another') !== null \
             && document.getElementById('recovery-state')?.textContent.length > 0",
            LONG,
        )
        .await;
    amina3.screenshot("recovered").await;
    // The recovered browser is in no space yet: Amina's first browser, a
    // space manager, offers to add it and does; it then reads the filing.
    amina
        .js(
            "location.hash = arguments[0]",
            json!([format!("#/space/{space}")]),
        )
        .await;
    amina
        .wait_for(
            "the offer to add Amina's new browser",
            "return document.querySelector('button.add-devices[data-user=\"amina\"]')?.textContent.includes('1') || false",
            LONG,
        )
        .await;
    amina.screenshot("add-new-browser").await;
    amina.click("button.add-devices[data-user=\"amina\"]").await;
    amina3.js("location.hash = '#/'", json!([])).await;
    amina3
        .wait_for(
            "the space in the recovered browser",
            &format!(
                "return document.querySelector('.space-link[data-space=\"{space}\"]') !== null"
            ),
            LONG,
        )
        .await;
    amina3
        .js(
            "location.hash = arguments[0]",
            json!([format!("#/doc/{space}/{doc}")]),
        )
        .await;
    amina3
        .wait_for("the filing in the recovered browser", &restored, LONG)
        .await;
    drop(amina3);

    // The public library: Bruno publishes, then finds it with a highlight.
    bruno.js("location.hash = '#/search'", json!([])).await;
    bruno
        .type_into("#new-public input[name=name]", "Jurisprudence")
        .await;
    bruno.click("#new-public button[type=submit]").await;
    bruno.element("#publish-doc").await;
    bruno
        .type_into("#publish-doc input[name=title]", "Détention arbitraire")
        .await;
    bruno
        .type_into(
            "#publish-doc textarea[name=body]",
            "La Cour constate la détention arbitraire des requérants à Bujumbura.",
        )
        .await;
    bruno
        .js(
            "document.querySelector('#publish-doc select[name=language]').value = 'fr'",
            json!([]),
        )
        .await;
    bruno.click("#publish-doc button[type=submit]").await;
    bruno
        .wait_for(
            "the publication",
            "return document.getElementById('status').textContent.length > 0",
            LONG,
        )
        .await;
    let mut found = false;
    for _ in 0..50 {
        bruno
            .js(
                "document.querySelector('#search input[name=q]').value = ''",
                json!([]),
            )
            .await;
        bruno.type_into("#search input[name=q]", "détentions").await;
        bruno.click("#search button[type=submit]").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let marked = bruno
            .js(
                "return Array.from(document.querySelectorAll('#results .snippet mark')).map(m => m.textContent)",
                json!([]),
            )
            .await;
        if marked.as_array().is_some_and(|m| !m.is_empty()) {
            assert!(
                marked.as_array().unwrap().iter().any(|m| m
                    .as_str()
                    .is_some_and(|s| s.to_lowercase().starts_with("détention"))),
                "highlighted words: {marked}"
            );
            found = true;
            break;
        }
    }
    assert!(found, "the public search showed no highlighted hit");
    // Public spaces by their names, never by ids; no empty facet drawn.
    let shown = bruno
        .js(
            "const r = document.getElementById('results'); \
             return [/[0-9a-f]{32}/.test(r.textContent), \
                     [...r.querySelectorAll('.facet')].every((f) => f.querySelector('li')), \
                     r.querySelector('.hit p.muted').textContent.includes('Jurisprudence'), \
                     r.querySelector('[data-facet=space] li')?.textContent]",
            json!([]),
        )
        .await;
    assert_eq!(
        shown,
        json!([false, true, true, "Jurisprudence (1)"]),
        "ids, empty facets or names in the results"
    );
    bruno.screenshot("search").await;
    // Languages are named in the interface's language (Portuguese here),
    // the languages of the DRC, Burundi and Uganda included.
    let names = bruno
        .js(
            "return Array.from(document.querySelectorAll('#search select[name=lang] option')).filter((o) => o.value).map((o) => [o.value, o.textContent])",
            json!([]),
        )
        .await;
    let names = names.as_array().expect("language options").clone();
    assert_eq!(names.len(), 11, "{names:?}");
    for pair in &names {
        assert_ne!(pair[0], pair[1], "a language shown by its code: {pair}");
    }
    assert!(names.contains(&json!(["fr", "francês"])), "{names:?}");

    // Bruno publishes a second filing of the confidential space from its
    // editor, with signed provenance. Amina finds it, opens it, and her
    // browser checks the signature against Bruno's certified devices and
    // the text against her own replica of the filing.
    let vetted = "Le Comité conclut à la torture du requérant à Goma.";
    bruno
        .js(
            "location.hash = arguments[0]",
            json!([format!("#/space/{space}")]),
        )
        .await;
    bruno
        .type_into("#new-doc input[name=title]", "Constatations")
        .await;
    bruno.click("#new-doc button[type=submit]").await;
    bruno.element("#editor").await;
    bruno.type_into("#editor", vetted).await;
    bruno.element("#publish-filing form").await;
    bruno
        .js(
            "document.querySelector('#publish-filing select[name=language]').value = 'fr'",
            json!([]),
        )
        .await;
    // A preview of exactly what becomes public first, and a confirmation
    // that names the public space.
    bruno.click("#publish-filing button[type=submit]").await;
    let previewed = bruno
        .wait_for(
            "the preview of the publication",
            "const b = document.querySelector('#publish-preview .public-body'); \
             const c = document.getElementById('confirm-publish'); \
             return b && c && [document.querySelector('#publish-preview h5').textContent, b.textContent, c.textContent]",
            LONG,
        )
        .await;
    assert_eq!(
        previewed,
        json!(["Constatations", vetted, "Publicar em «Jurisprudence»"])
    );
    bruno.click("#confirm-publish").await;
    bruno
        .wait_for(
            "the published filing",
            "return document.querySelector('#public-copy a[href^=\"#/public/\"]') !== null",
            LONG,
        )
        .await;
    amina.js("location.hash = '#/search'", json!([])).await;
    until_searched(&amina, "torture Goma", "Constatations", true).await;
    amina
        .js(
            "Array.from(document.querySelectorAll('#results .hit h4 a')).find((a) => a.textContent === 'Constatations').click()",
            json!([]),
        )
        .await;
    amina
        .wait_for(
            "the public copy checked against Amina's replica",
            &format!(
                "return document.querySelector('#public-doc .public-body')?.textContent === {vetted:?} \
                 && document.getElementById('copy-check')?.dataset.verdict === 'matches' \
                 && document.getElementById('signature-check')?.dataset.signature === 'verified'"
            ),
            LONG,
        )
        .await;
    amina.screenshot("public-copy-checked").await;

    // Bruno withdraws the public copy: it is no longer found. Amina, who
    // has no role in any public space, is offered no publishing at all
    // (told so in Arabic, her language by now).
    bruno.click("#withdraw-copy").await;
    bruno.click("#withdraw-copy").await;
    bruno
        .wait_for(
            "the copy withdrawn",
            "return !document.getElementById('withdraw-copy') && !document.querySelector('#public-copy a')",
            LONG,
        )
        .await;
    let filing = bruno
        .js("return location.hash", json!([]))
        .await
        .as_str()
        .unwrap()
        .to_owned();
    amina.js("location.hash = '#/search'", json!([])).await;
    until_searched(&amina, "torture Goma", "Constatations", false).await;
    amina
        .js("location.hash = arguments[0]", json!([filing]))
        .await;
    let offered = amina
        .wait_for(
            "Amina's publishing box",
            "return document.querySelector('#publish-filing p.muted')?.textContent",
            LONG,
        )
        .await;
    assert!(
        offered
            .as_str()
            .unwrap()
            .starts_with("ليس لك دور في أي مساحة عامة"),
        "{offered}"
    );
    assert_eq!(
        amina
            .js("return document.getElementById('publish-form')", json!([]))
            .await,
        serde_json::Value::Null
    );

    // The server saw only ciphertext of the confidential filing.
    drop((amina, bruno));
    server.stop();
    let mut leaked = Vec::new();
    let flat_recovery = recovery.replace('-', "");
    for entry in walk(&dir.path().join("data")) {
        let data = std::fs::read(&entry).unwrap_or_default();
        for canary in [
            "Bonjour de Kinshasa",
            "Hello from Tunis",
            "Écrit hors ligne",
            "Gardé au rechargement",
            "Requête",
            recovery.as_str(),
            flat_recovery.as_str(),
        ] {
            if data.windows(canary.len()).any(|w| w == canary.as_bytes()) {
                leaked.push(format!("{canary} in {}", entry.display()));
            }
        }
    }
    assert!(leaked.is_empty(), "plaintext on the server: {leaked:?}");
}

/// Searches the public library for `words` from the search page: the
/// titles of the hits, once the answer is drawn.
pub(crate) async fn search_titles(b: &Browser, words: &str) -> Vec<String> {
    b.js(
        "document.querySelector('#search input[name=q]').value = ''; \
         document.getElementById('results').replaceChildren()",
        json!([]),
    )
    .await;
    b.type_into("#search input[name=q]", words).await;
    b.click("#search button[type=submit]").await;
    b.wait_for(
        "the search answered",
        "return document.querySelector('#results > p') !== null",
        LONG,
    )
    .await;
    let titles = b
        .js(
            "return Array.from(document.querySelectorAll('#results .hit h4 a')).map((a) => a.textContent)",
            json!([]),
        )
        .await;
    serde_json::from_value(titles).unwrap_or_default()
}

/// Searches for `words` until the hit titled `title` is there (`present`)
/// or gone; the index commits within a window, so it is asked again.
pub(crate) async fn until_searched(b: &Browser, words: &str, title: &str, present: bool) {
    for _ in 0..50 {
        if search_titles(b, words).await.iter().any(|t| t == title) == present {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!(
        "{}: {title:?} {} by {words:?}",
        b.name,
        if present {
            "never found"
        } else {
            "still found"
        }
    );
}

/// Removes the library entry `entry` (its actions, then two clicks) and
/// returns what the status line says, once it offers to undo.
pub(crate) async fn remove_entry(b: &Browser, entry: &str) -> serde_json::Value {
    let li = format!("li[data-entry='{entry}']");
    b.click(&format!("{li} details.entry-actions summary"))
        .await;
    b.click(&format!("{li} button.remove-entry")).await;
    b.click(&format!("{li} button.remove-entry.confirm")).await;
    b.wait_for(
        "the removal with its undo",
        "const s = document.getElementById('status'); \
         return document.getElementById('undo') && s.firstChild.textContent",
        LONG,
    )
    .await
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A browser reloaded reads no log entry it had read before (the engine's
/// saved position, PROTOCOL §7.2), and a browser whose server withholds
/// entries it announces says so, in the interface's language, as the
/// native client does (the same engine decides, `Code::Withheld`). Amina's
/// browser talks to the server through the misbehaving relay; Bruno is a
/// native client talking to the server directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_browser_reads_no_old_entry_and_reports_a_withholding_server() {
    const SERVED: &str = "amicus_log_entries_served_total";
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &format!("web = {web:?}\n"));
    let relay = Relay::start(&server.url).await;
    let shots = target_dir().join("browser-screenshots-withheld");
    let _ = std::fs::remove_dir_all(&shots);
    let amina = Browser::start("amina", "en", &shots, &dir.path().join("downloads")).await;
    let mut bruno = register(dir.path(), &server, "bruno").await;

    sign_up(&amina, &relay.url, "amina").await;
    let space = create_space_and_invite(&amina, "Recours", "bruno").await;
    let id = amicus_core::SpaceId::from_hex(&space).unwrap();
    bruno.sync_all().await.unwrap();
    let doc = bruno.new_document(id, "Requête").await.unwrap();
    bruno
        .edit(
            id,
            doc,
            &[amicus_cli::Edit::Insert(None, "Exposé des faits.".into())],
        )
        .await
        .unwrap();
    let listed = "return [...document.querySelectorAll('a.doc-link')].some((a) => a.textContent === 'Requête')";
    amina.wait_for("Bruno's filing listed", listed, LONG).await;
    // The position read is stored within 300 ms of the last change.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Reloaded and unlocked, the page subscribes from where it was: the
    // server serves no entry, and the filing is there from the saved state.
    amina.goto("about:blank").await;
    let before = server.metric(SERVED).await;
    unlock(&amina, &relay.url, "amina").await;
    amina
        .js(
            "location.hash = arguments[0]",
            json!([format!("#/space/{space}")]),
        )
        .await;
    amina
        .wait_for("the filing after the reload", listed, LONG)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        server.metric(SERVED).await - before,
        0,
        "the reloaded page read entries it had read before"
    );
    amina.screenshot("reloaded").await;

    // The relay now withholds every entry of the space it is asked for,
    // while the server's `Synced` still announces them; Bruno writes while
    // Amina's page is closed.
    amina.goto("about:blank").await;
    relay.down(move |frame| match frame {
        amicus_core::wire::ServerFrame::Entry { space, .. } if space == id => Vec::new(),
        other => vec![other],
    });
    bruno
        .edit(
            id,
            doc,
            &[amicus_cli::Edit::Insert(
                None,
                " Gardé par le serveur.".into(),
            )],
        )
        .await
        .unwrap();
    unlock(&amina, &relay.url, "amina").await;
    amina
        .wait_for(
            "the withholding warning",
            "return (document.getElementById('status')?.textContent || '').includes('The server holds back part of this space')",
            LONG,
        )
        .await;
    amina.screenshot("withheld").await;
}

/// For the seized phone, in a browser (Portuguese interface): a passphrase
/// easy to guess is refused; the session locks by itself after the idle
/// delay chosen for this browser and needs the passphrase again; and
/// erasing the browser leaves no trace of the account in it (no database,
/// the name unknown at the sign-in page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_locks_when_idle_and_erases_every_trace_of_its_account() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &format!("web = {web:?}\n"));
    let shots = target_dir().join("browser-screenshots-seized");
    let _ = std::fs::remove_dir_all(&shots);
    let amina = Browser::start("amina", "pt", &shots, &dir.path().join("downloads")).await;

    // A passphrase easy to guess is refused before anything is created,
    // by the same check as `amicus register` (loaded on demand).
    amina.goto(&server.url).await;
    amina.type_into("#sign-up input[name=user]", "amina").await;
    amina
        .type_into("#sign-up input[name=passphrase]", "amina2024")
        .await;
    amina.click("#sign-up button[type=submit]").await;
    amina
        .wait_for(
            "the weak passphrase refused",
            "const s = document.getElementById('status'); \
             return s.className.includes('error') && s.textContent.includes('Esta frase-passe é demasiado fácil')",
            LONG,
        )
        .await;
    // Nothing was made of it: the name is still free, here and on the server.
    sign_up(&amina, &server.url, "amina").await;

    // Idle for the delay this browser chose (3 s here): the session locks,
    // the sign-in page says why, and only the passphrase opens it again.
    amina
        .js(
            "localStorage.setItem('amicus.idle', '3'); document.dispatchEvent(new KeyboardEvent('keydown'))",
            json!([]),
        )
        .await;
    amina
        .wait_for(
            "the session locked after the idle delay",
            "const s = document.getElementById('status'); \
             return document.getElementById('sign-in') !== null && document.getElementById('connection') === null \
             && s.textContent.includes('Bloqueado após')",
            LONG,
        )
        .await;
    amina.screenshot("locked").await;
    amina
        .js("localStorage.setItem('amicus.idle', '900')", json!([]))
        .await;
    unlock(&amina, &server.url, "amina").await;

    // Erased: nothing of the account stays in the browser.
    amina.js("location.hash = '#/devices'", json!([])).await;
    amina.click("#erase-browser").await;
    amina.click("#erase-browser.confirm").await;
    amina
        .wait_for(
            "the browser erased",
            "const s = document.getElementById('status'); \
             return document.getElementById('sign-up') !== null && s.textContent.includes('já não contém nada')",
            LONG,
        )
        .await;
    // The page is that of a new browser: nothing to unlock. Opened again,
    // it still holds no database (asking whether it holds an account
    // creates none).
    amina.screenshot("erased").await;
    for round in ["after the erasure", "after opening the page again"] {
        assert_eq!(
            amina
                .js("return document.getElementById('sign-in')", json!([]))
                .await,
            serde_json::Value::Null,
            "an unlock form {round}"
        );
        let databases = amina
            .wait_for(
                "the list of this origin's databases",
                "indexedDB.databases().then((d) => { window.__dbs = d.map((x) => x.name); }); \
                 return window.__dbs ? JSON.stringify(window.__dbs) : null",
                LONG,
            )
            .await;
        assert_eq!(databases, json!("[]"), "a database {round}");
        amina.goto("about:blank").await;
        amina.goto(&server.url).await;
        amina.element("#sign-up").await;
    }
}

/// Rights that change under Bruno's feet (French interface). He is typing
/// in a filing, his sentence not yet acknowledged, when Amina removes him:
/// within 2 seconds the page says so and the filing turns read-only; the
/// sentence is listed with why it cannot go, saved as a file on request,
/// and still listed after a reload, when the history up to the removal
/// is still readable. Nothing of it reached Amina. In a space where he is
/// a Reader, nothing to create, upload or edit is offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_while_typing_keeps_the_sentence_and_a_reader_cannot_write() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &format!("web = {web:?}\n"));
    let relay = Relay::start(&server.url).await;
    let shots = target_dir().join("browser-screenshots-rights");
    let _ = std::fs::remove_dir_all(&shots);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let bruno = Browser::start("bruno", "fr", &shots, &downloads).await;
    sign_up(&bruno, &relay.url, "bruno").await;
    let mut amina = register(dir.path(), &server, "amina").await;
    let (space, doc) = shared_filing(&mut amina, "bruno").await;
    let shown = "return (document.getElementById('editor')?.textContent || '').includes('Exposé des faits.')";
    bruno
        .wait_for(
            "the filing at Bruno's",
            &visit(&format!("#/doc/{space}/{doc}"), shown),
            LONG,
        )
        .await;

    // A title of spaces only is refused with a sentence in his language.
    bruno
        .wait_for(
            "the space page",
            &visit(
                &format!("#/space/{space}"),
                "return document.querySelector('#new-doc') !== null",
            ),
            LONG,
        )
        .await;
    bruno.type_into("#new-doc input[name=title]", "   ").await;
    bruno.click("#new-doc button[type=submit]").await;
    bruno
        .wait_for(
            "the refusal of an empty title",
            "return (document.getElementById('status')?.textContent || '').includes('Un titre ou un nom ne peut pas être vide')",
            LONG,
        )
        .await;
    bruno
        .wait_for(
            "the filing again",
            &visit(&format!("#/doc/{space}/{doc}"), shown),
            LONG,
        )
        .await;

    // From now on his page's writes do not reach the server (a connection
    // that loses them): what he types stays unacknowledged.
    relay.up(|frame| match frame {
        amicus_core::wire::ClientFrame::Append {
            item: amicus_core::wire::AppendItem::Envelope(_),
            ..
        } => None,
        other => Some(other),
    });
    bruno.js(TO_END, json!([])).await;
    bruno.type_into("#editor", " Phrase de Bruno.").await;
    amina.remove(space, "bruno").await.unwrap();
    let notice = "return document.getElementById('read-only') !== null \
        && document.getElementById('editor').getAttribute('contenteditable') === 'false' \
        && (document.getElementById('status')?.textContent || '').includes('Vous ne pouvez plus écrire')";
    bruno
        .wait_for(
            "the removal notice within 2 s",
            notice,
            Duration::from_secs(2),
        )
        .await;
    bruno.screenshot("removed-while-typing").await;

    let listed = visit(
        "#/unsent",
        &format!(
            "const li = document.querySelector('#unsent-list li[data-stream=\"{}\"].blocked'); \
             return li !== null && li.textContent.includes('retiré')",
            doc.to_hex()
        ),
    );
    bruno
        .wait_for("the unsent sentence listed", &listed, LONG)
        .await;
    bruno
        .click("#unsent-list li.blocked button.save-unsent")
        .await;
    let saved = downloads.join("Requête.md");
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&saved).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains("Phrase de Bruno."), "saved: {text:?}");
    bruno.screenshot("unsent").await;

    // After a reload: still listed, and the history still readable.
    relay.honest();
    bruno.goto("about:blank").await;
    unlock(&bruno, &relay.url, "bruno").await;
    bruno
        .wait_for("the sentence still listed after a reload", &listed, LONG)
        .await;
    let readable = visit(
        &format!("#/doc/{space}/{doc}"),
        &format!("{shown} && document.getElementById('read-only') !== null"),
    );
    bruno
        .wait_for("the filing readable after the reload", &readable, LONG)
        .await;
    amina.sync(space).await.unwrap();
    assert_eq!(amina.read(space, doc).unwrap().body, "Exposé des faits.");

    // A Reader is offered nothing to write.
    let other = amina.create_space().await.unwrap();
    amina
        .invite(other, "bruno", amicus_core::space::Role::Reader)
        .await
        .unwrap();
    let reader = visit(
        &format!("#/space/{other}"),
        "return Boolean(document.getElementById('read-only')?.textContent.includes('Lecteur')) \
         && !document.querySelector('#new-doc, #new-folder, #upload')",
    );
    bruno.wait_for("a Reader's space page", &reader, LONG).await;
    bruno.screenshot("reader").await;

    // The page and the command show the same epoch and space code, in
    // one form.
    amina.sync(other).await.unwrap();
    let code = amina.space_code(other).unwrap();
    let epoch = amina.epoch(other).unwrap().0;
    assert_eq!(code.len(), 24, "five groups of four: {code}");
    let shown = bruno
        .js(
            "const c = document.getElementById('epoch-code'); \
             return [c?.textContent, c?.dataset.epoch, c?.closest('details')?.querySelector('p')?.textContent]",
            json!([]),
        )
        .await;
    assert_eq!(shown[0].as_str(), Some(code.as_str()), "{shown}");
    // And the same role names: the page's rows carry the names the
    // command prints.
    let roles = bruno
        .js(
            "return [...document.querySelectorAll('tr[data-user]')].map((r) => [r.dataset.user, r.dataset.role]).sort()",
            json!([]),
        )
        .await;
    let mut listed: Vec<(String, String)> = amina
        .members(other)
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    listed.sort();
    listed.dedup();
    assert_eq!(roles, json!(listed), "roles at the page and at the command");
    // The epoch is not a word people meet: the code comes with what
    // comparing it means, and the number of key changes.
    assert_eq!(shown[1], json!(epoch.to_string()), "{shown}");
    let explained = shown[2].as_str().unwrap_or_default();
    assert!(
        explained.starts_with("Toutes les personnes de cet espace qui voient ce même code")
            && explained.ends_with(&format!("(changement de clés n° {epoch}).")),
        "{shown}"
    );
}

/// A script for `wait_for` that shows the view at `hash` and checks it
/// with `check` (a function body returning a boolean); while the check
/// fails, it draws the view again (through another view), so that what
/// arrived meanwhile is shown.
fn visit(hash: &str, check: &str) -> String {
    format!(
        "const want = {hash:?}; const ok = location.hash === want && (() => {{ {check} }})(); \
         if (!ok) location.hash = location.hash === want ? '#/' : want; return ok;"
    )
}

/// On a 360-px phone screen in Arabic, Bruno asks on his Devices page for
/// an email soon after there is something new, and closes the app; Amina
/// writes in a space they share; the message reaches the SMTP server in
/// Arabic, the language of his interface, and holds none of her words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_asks_for_email_in_the_browser_and_is_told_when_away() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let smtp = crate::notifications::Smtp::start(&dir.path().join("mail"));
    let server = Server::start_with(
        &dir.path().join("data"),
        &format!(
            "web = {web:?}\n{}",
            crate::notifications::mail_config(&smtp)
        ),
    );
    let shots = target_dir().join("browser-screenshots-notify");
    let _ = std::fs::remove_dir_all(&shots);
    let bruno = Browser::start("bruno", "ar", &shots, &dir.path().join("downloads")).await;
    bruno.resize(360, 760).await;
    sign_up(&bruno, &server.url, "bruno").await;
    bruno.click("a[href='#/devices']").await;
    bruno.element("#notify-form").await;
    bruno
        .type_into("#notify-form input[name=email]", "bruno@example.org")
        .await;
    bruno
        .js(
            "document.querySelector('#notify-form select[name=mode]').value = 'immediate'",
            json!([]),
        )
        .await;
    bruno.click("#notify-form button[type=submit]").await;
    bruno
        .wait_for(
            "the choice saved",
            "return (document.querySelector('#notify-form [role=status]')?.textContent || '') === 'تم الحفظ.'",
            LONG,
        )
        .await;
    let fits = bruno
        .js(
            "const f = document.getElementById('notify-form').getBoundingClientRect(); \
             return document.documentElement.scrollWidth <= window.innerWidth \
               && f.left >= 0 && f.right <= window.innerWidth && document.dir === 'rtl'",
            json!([]),
        )
        .await;
    assert_eq!(
        fits,
        json!(true),
        "the section fits a 360-px screen, right to left"
    );
    bruno.screenshot("notifications").await;
    drop(bruno);

    let mut amina = register(dir.path(), &server, "amina").await;
    let space = amina.create_space().await.unwrap();
    amina
        .invite(space, "bruno", amicus_core::space::Role::Contributor)
        .await
        .unwrap();
    let words = "Le témoin a vu la scène depuis la fenêtre";
    let doc = amina
        .new_document(space, "Requête confidentielle")
        .await
        .unwrap();
    amina
        .edit(space, doc, &[amicus_cli::Edit::Insert(None, words.into())])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + LONG;
    let (subject, body) = loop {
        if let Some(m) = smtp.to("bruno@example.org").pop() {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no email reached Bruno"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(subject, "Amicus: نشاط جديد");
    assert!(body.contains("https://amicus.test/"), "{body}");
    for secret in [words, "Requête", "amina", &space.to_hex(), &doc.to_hex()] {
        assert!(!body.contains(secret), "{secret} in {body}");
    }
}

/// A discussion in the browser (Arabic, right to left, a 360-px phone):
/// Amina's post that mentions Bruno shows in his navigation's counts and
/// on his activity page, marked as a mention in the text; once read it
/// leaves his activity; his reply, with a mention offered from the
/// members, reaches Amina's device as a reply that mentions her; a mention
/// of someone outside the space is refused in his language. While his tab
/// is hidden, the notices the app shows say only that there is something
/// new and how many mentions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discussion_with_a_reply_and_a_mention_in_the_browser() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &format!("web = {web:?}\n"));
    let shots = target_dir().join("browser-screenshots-discussions");
    let _ = std::fs::remove_dir_all(&shots);
    let bruno = Browser::start("bruno", "ar", &shots, &dir.path().join("downloads")).await;
    bruno.resize(360, 760).await;
    // The user-name field's pattern is one Chromium compiles (it uses the
    // `v` flag, where an unescaped `-` ends the pattern's use): a name with
    // capitals and a space is refused before anything is sent.
    bruno.goto(&server.url).await;
    bruno
        .type_into("#sign-up input[name=user]", "Bad Name")
        .await;
    let mismatch = bruno
        .js(
            "return document.querySelector('#sign-up input[name=user]').validity.patternMismatch",
            json!([]),
        )
        .await;
    assert_eq!(mismatch, json!(true), "the pattern is in force");
    sign_up(&bruno, &server.url, "bruno").await;
    // Bruno allowed notices and looks elsewhere: the Notification API is
    // replaced by a recorder of what the app asks Chromium to show.
    bruno
        .js(
            "window.__notices = []; \
             window.Notification = class { \
               static permission = 'granted'; \
               constructor(title, options) { window.__notices.push({ title, ...options }); } \
             }; \
             Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });",
            json!([]),
        )
        .await;

    let mut amina = register(dir.path(), &server, "amina").await;
    let _chidi = register(dir.path(), &server, "chidi").await;
    let space = amina.create_space().await.unwrap();
    amina
        .invite(space, "bruno", amicus_core::space::Role::Contributor)
        .await
        .unwrap();
    let thread = amina
        .new_discussion(
            space,
            "Audience du 12",
            "@bruno, peux-tu plaider le 12 ?",
            &[],
        )
        .await
        .unwrap();

    bruno
        .wait_for(
            "a mention counted in the navigation",
            "const a = document.getElementById('activity-link'); return a && a.dataset.mentions === '1'",
            LONG,
        )
        .await;
    // A notice said that something is new and how many mentions, and
    // nothing of what, where or who.
    let notices = bruno
        .wait_for(
            "a notice of the mention",
            "return window.__notices.some((n) => n.body.includes('إشارة واحدة')) && window.__notices",
            LONG,
        )
        .await;
    for notice in notices.as_array().unwrap() {
        assert_eq!(notice["tag"], "amicus-activity");
        let text = notice.to_string();
        for secret in [
            "Audience",
            "plaider",
            "amina",
            &space.to_hex(),
            &thread.to_string(),
        ] {
            assert!(!text.contains(secret), "{secret} in the notice {text}");
        }
    }
    bruno.js("delete document.hidden", json!([])).await;
    // The spaces page counts it in the space's line too.
    bruno
        .wait_for(
            "the space's count on the spaces page",
            &format!("return document.querySelector(\"a.space-link[data-space='{}'] + .badge\")?.dataset.mentions === '1'", space.to_hex()),
            LONG,
        )
        .await;
    bruno.click("#activity-link").await;
    let item = format!(".activity-item.discussion[data-id='{thread}']");
    bruno.element(&item).await;
    assert_eq!(
        text_of(&bruno, &format!("{item} a")).await,
        "Audience du 12"
    );
    let said = bruno
        .js(
            "return document.querySelector(arguments[0]).textContent",
            json!([item]),
        )
        .await;
    let said = said.as_str().unwrap_or_default();
    // Arabic's plural form for one, not "1" before the plural.
    assert!(said.contains("إشارة واحدة إليك"), "{said}");
    bruno.screenshot("activity").await;
    // A space nobody named is said to be one, not shown as an id.
    let heading = bruno
        .js(
            "return document.querySelector(arguments[0]).textContent",
            json!([format!("h3 a[href='#/space/{}']", space.to_hex())]),
        )
        .await;
    assert_eq!(
        heading,
        json!(format!("مساحة بلا اسم ({})", &space.to_hex()[..8]))
    );
    bruno.click(&format!("{item} a")).await;
    bruno.element("mark.mention[data-user=bruno]").await;
    // On the phone the header is two short rows, not a third of the screen.
    let header = bruno
        .js(
            "return document.querySelector('header').getBoundingClientRect().height",
            json!([]),
        )
        .await;
    assert!(
        header.as_f64().unwrap() <= 110.0,
        "a header {header} px high"
    );
    // Right to left, the way back points right.
    let arrow = bruno
        .js(
            "return getComputedStyle(document.querySelector('a.back'), '::before').content",
            json!([]),
        )
        .await;
    assert!(
        arrow.as_str().unwrap_or_default().starts_with("\"→"),
        "{arrow}"
    );
    assert_eq!(text_of(&bruno, "#thread-title").await, "Audience du 12");
    bruno
        .wait_for(
            "the discussion no longer counted once read",
            "const a = document.getElementById('activity-link'); return a && a.dataset.mentions === '0'",
            LONG,
        )
        .await;

    // A mention of someone outside the space is refused, in Arabic.
    bruno
        .type_into("#new-post textarea", "وماذا عن @chidi ؟")
        .await;
    bruno.click("#new-post button[type=submit]").await;
    bruno
        .wait_for(
            "the refusal",
            "return (document.getElementById('status')?.textContent || '').includes('لا يمكنك الإشارة')",
            LONG,
        )
        .await;
    bruno
        .js(
            "document.querySelector('#new-post textarea').value = ''",
            json!([]),
        )
        .await;

    // His reply under her post, with her name offered from the members.
    bruno.click("li.post details.reply summary").await;
    bruno
        .type_into("li.post details.reply textarea", "نعم، سأترافع.")
        .await;
    bruno
        .click("li.post details.reply .mention-chip[data-user=amina]")
        .await;
    bruno
        .click("li.post details.reply button[type=submit]")
        .await;
    bruno.element("ol.replies li.post[data-author=bruno]").await;
    let fits = bruno
        .js(
            "return document.documentElement.scrollWidth <= window.innerWidth && document.dir === 'rtl'",
            json!([]),
        )
        .await;
    assert_eq!(
        fits,
        json!(true),
        "the discussion fits a 360-px screen, right to left"
    );
    bruno.screenshot("discussion").await;

    let deadline = std::time::Instant::now() + LONG;
    loop {
        amina.sync(space).await.unwrap();
        let read = amina.discussion(space, thread).unwrap();
        if let Some(reply) = read.posts.get(1) {
            assert_eq!(reply.text, "نعم، سأترافع. @amina");
            assert_eq!(reply.reply_to.as_deref(), Some(read.posts[0].id.as_str()));
            assert!(reply.author.verified && reply.author.name == "bruno");
            assert_eq!(reply.mentions, vec!["amina".to_owned()]);
            assert_eq!(read.posts.len(), 2, "the refused post wrote nothing");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Bruno's reply never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A 1×1 PNG (one opaque red pixel).
pub(crate) const RED_PIXEL: [u8; 70] = [
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0,
    0, 0, 31, 21, 196, 137, 0, 0, 0, 13, 73, 68, 65, 84, 120, 218, 99, 252, 207, 192, 240, 31, 0,
    5, 5, 2, 0, 95, 200, 241, 210, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
];

/// Files in the browser (German, a 360-px phone): a new version of a
/// file uploaded from the library keeps its name while the earlier one
/// stays listed and downloads byte for byte; an image and a text are
/// previewed, decrypted in memory (the image drawn on a canvas, its red
/// pixel read back); the other member's device lists both versions; a
/// file removed by mistake is put back with Undo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_of_a_file_and_previews_in_the_browser() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &format!("web = {web:?}\n"));
    let shots = target_dir().join("browser-screenshots-files");
    let _ = std::fs::remove_dir_all(&shots);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let bruno = Browser::start("bruno", "de", &shots, &downloads).await;
    bruno.resize(360, 760).await;
    sign_up(&bruno, &server.url, "bruno").await;

    let mut amina = register(dir.path(), &server, "amina").await;
    let space = amina.create_space().await.unwrap();
    amina
        .invite(space, "bruno", amicus_core::space::Role::Contributor)
        .await
        .unwrap();
    let png = dir.path().join("scene.png");
    std::fs::write(&png, RED_PIXEL).unwrap();
    let image = amina
        .put_file(space, &png, "scene.png", &mut |_, _| {})
        .await
        .unwrap();
    let note = dir.path().join("note.txt");
    std::fs::write(&note, "Le témoin a vu la scène.\n").unwrap();
    let text = amina
        .put_file(space, &note, "note.txt", &mut |_, _| {})
        .await
        .unwrap();
    let brief = dir.path().join("brief.pdf");
    std::fs::write(
        &brief,
        amicus_fixtures::pdf(&["Requete", "Faits", "Moyens", "Annexes"]),
    )
    .unwrap();
    let brief = amina
        .put_file(space, &brief, "brief.pdf", &mut |_, _| {})
        .await
        .unwrap();
    let (image, text, brief) = (
        image.file_id.to_string(),
        text.file_id.to_string(),
        brief.file_id.to_string(),
    );

    bruno
        .goto(&format!("{}/#/space/{}", server.url, space.to_hex()))
        .await;
    bruno
        .element(&format!("button.preview[data-file='{image}']"))
        .await;
    bruno
        .click(&format!("button.preview[data-file='{image}']"))
        .await;
    let pixel = bruno
        .wait_for(
            "the image drawn",
            "const c = document.querySelector('canvas.preview-image'); \
             return c && c.width === 1 ? [...c.getContext('2d').getImageData(0, 0, 1, 1).data] : null",
            LONG,
        )
        .await;
    assert_eq!(pixel, json!([255, 0, 0, 255]), "the decrypted pixel");

    // A PDF of four pages: the first three drawn by the preview worker,
    // each with ink in its top part and none below the middle, the fourth
    // announced.
    bruno
        .click(&format!("button.preview[data-file='{brief}']"))
        .await;
    let drawn = bruno
        .wait_for(
            "the PDF's first pages drawn",
            &format!("const box = document.querySelector(\".preview-box[data-file='{brief}']\"); \
             const pages = box ? [...box.querySelectorAll('canvas.preview-image')] : []; \
             if (pages.length < 3) return null; \
             return pages.map((c) => {{ \
               const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
               let top = 0, bottom = 0; \
               for (let i = 0; i < d.length; i += 4) if (d[i] < 128) {{ \
                 if (i / 4 / c.width < c.height / 4) top++; else if (i / 4 / c.width > c.height / 2) bottom++; \
               }} \
               return [c.width > 200, c.height > c.width, top > 100, bottom, c.getAttribute('aria-label')]; \
             }})"),
            LONG,
        )
        .await;
    assert_eq!(
        drawn,
        json!([
            [true, true, true, 0, "Seite 1 von 4: brief.pdf"],
            [true, true, true, 0, "Seite 2 von 4: brief.pdf"],
            [true, true, true, 0, "Seite 3 von 4: brief.pdf"],
        ]),
        "three A4 pages drawn with their line of text"
    );
    let more = bruno
        .js(
            "return document.querySelector(arguments[0]).textContent",
            json!([format!(".preview-box[data-file='{brief}'] p.muted")]),
        )
        .await;
    assert_eq!(
        more,
        json!("1 weitere Seite: Laden Sie die Datei herunter, um sie zu lesen.")
    );
    bruno.screenshot("pdf-preview").await;

    // A new version of the note, from the library.
    let revised = dir.path().join("revised.txt");
    std::fs::write(&revised, "Le témoin a vu la scène depuis la fenêtre.\n").unwrap();
    bruno
        .click(&format!(
            "li[data-entry='{text}'] details.entry-actions summary"
        ))
        .await;
    bruno
        .type_into(
            &format!("input.version-upload[data-file='{text}']"),
            revised.to_str().unwrap(),
        )
        .await;
    let older = format!("li[data-entry='{text}'] .version-download[data-version='{text}']");
    bruno.element(&older).await;
    let listed = bruno
        .js(
            "return document.querySelector(arguments[0]).textContent",
            json!([format!("li[data-entry='{text}'] .file-link")]),
        )
        .await;
    assert!(
        listed
            .as_str()
            .unwrap_or_default()
            .starts_with("note.txt (46 B)"),
        "the entry keeps its name, with the new version's size: {listed}"
    );
    bruno
        .click(&format!("button.preview[data-file='{text}']"))
        .await;
    bruno
        .wait_for(
            "the new version previewed",
            "return (document.querySelector('pre.preview-text')?.textContent || '') === 'Le témoin a vu la scène depuis la fenêtre.\\n'",
            LONG,
        )
        .await;
    bruno.screenshot("versions").await;
    let versions = bruno
        .js(
            "return document.querySelector(arguments[0]).textContent",
            json!([format!(
                "li[data-entry='{text}'] details.file-versions summary"
            )]),
        )
        .await;
    assert_eq!(versions, json!("1 frühere Version"), "German's singular");
    bruno
        .click(&format!(
            "li[data-entry='{text}'] details.file-versions summary"
        ))
        .await;
    bruno.click(&older).await;
    let downloaded = downloads.join("note.txt");
    let mut got = None;
    for _ in 0..300 {
        if let Ok(b) = std::fs::read(&downloaded)
            && !b.is_empty()
        {
            got = Some(b);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        got.as_deref(),
        Some(&b"Le t\xc3\xa9moin a vu la sc\xc3\xa8ne.\n"[..]),
        "the earlier version downloads as it was"
    );
    let fits = bruno
        .js(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            json!([]),
        )
        .await;
    assert_eq!(
        fits,
        json!(true),
        "the space page fits a 360-px screen (the members' table scrolls within itself)"
    );

    // A file removed by mistake is put back from the status line, as it
    // was, for the other member too.
    let said = remove_entry(&bruno, &image).await;
    assert_eq!(said, json!("„scene.png“ entfernt."));
    assert_eq!(
        bruno
            .js(
                "return document.querySelector(arguments[0])",
                json!([format!("li[data-entry='{image}']")]),
            )
            .await,
        serde_json::Value::Null,
        "removed from the library"
    );
    bruno.click("#undo").await;
    bruno
        .element(&format!("li[data-entry='{image}'] button.preview"))
        .await;

    amina.sync(space).await.unwrap();
    let versions = amina.file_versions(space, &text).unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[0]["file"], text.as_str());
    let listed = amina.library(space).unwrap();
    assert!(
        listed
            .iter()
            .any(|e| e.id == image && e.name == "scene.png"),
        "the file put back at Amina's: {:?}",
        listed.iter().map(|e| &e.name).collect::<Vec<_>>()
    );
}

/// The directory in two browsers (French; Portuguese on a 360-px phone):
/// Amina lists her space with a public name; Bruno finds it by a word and
/// asks to join; Chidi asks from the command line; Amina sees both
/// requests, accepts Bruno, whose browser then holds the space, and
/// declines Chidi, who is told. Then Amina opens the space, and her
/// browser adds Chidi as soon as he asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_space_is_joined_on_request_in_the_browser() {
    let _one = CHROMIUM.lock().await;
    let web = web_dir();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &format!("web = {web:?}\n"));
    let shots = target_dir().join("browser-screenshots-directory");
    let _ = std::fs::remove_dir_all(&shots);
    let amina = Browser::start("amina", "fr", &shots, &dir.path().join("dl-a")).await;
    let bruno = Browser::start("bruno", "pt", &shots, &dir.path().join("dl-b")).await;
    bruno.resize(360, 760).await;
    sign_up(&amina, &server.url, "amina").await;
    sign_up(&bruno, &server.url, "bruno").await;
    drop(register(dir.path(), &server, "chidi").await);

    amina
        .type_into("#new-space input[name=name]", "Kassa")
        .await;
    amina.click("#new-space button[type=submit]").await;
    amina.element("#listing-form-box summary").await;
    let space = amina
        .js("return location.hash.split('/')[2]", json!([]))
        .await
        .as_str()
        .unwrap()
        .to_owned();
    amina.click("#listing-form-box summary").await;
    amina
        .type_into("#listing-form input[name=name]", "Défenseurs du Kivu")
        .await;
    amina
        .type_into(
            "#listing-form textarea[name=description]",
            "Avocats des défenseurs au Nord-Kivu",
        )
        .await;
    amina.click("#listing-form button[type=submit]").await;
    amina.element("#unlist").await;

    bruno
        .type_into("#directory-search input[name=q]", "kivu")
        .await;
    bruno.click("#directory-search button[type=submit]").await;
    let listed = format!("li.listed[data-space='{space}']");
    bruno.element(&listed).await;
    bruno.click(&format!("{listed} details.ask summary")).await;
    bruno
        .type_into(&format!("{listed} textarea"), "Advogo em Goma.")
        .await;
    bruno.click(&format!("{listed} button[type=submit]")).await;
    bruno
        .element(&format!(
            "#my-requests li[data-space='{space}'][data-state=pending]"
        ))
        .await;
    let fits = bruno
        .js(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            json!([]),
        )
        .await;
    assert_eq!(fits, json!(true), "the directory fits a 360-px screen");
    bruno.screenshot("directory").await;
    crate::support::amicus_json(&dir.path().join("chidi"), &["space", "request", &space]);

    amina.js("location.hash = '#/'", json!([])).await;
    amina
        .click(&format!("a.space-link[data-space='{space}']"))
        .await;
    amina.element("#join-requests li[data-user=bruno]").await;
    amina.element("#join-requests li[data-user=chidi]").await;
    assert!(
        text_of(&amina, "#join-requests li[data-user=bruno] p").await == "Advogo em Goma.",
        "the message is shown"
    );
    amina.screenshot("requests").await;
    amina
        .click("#join-requests li[data-user=bruno] button.accept")
        .await;
    amina.element("tr[data-user=bruno]").await;
    amina
        .wait_for(
            "Bruno's request closed",
            "return !document.querySelector('#join-requests li[data-user=bruno]')",
            LONG,
        )
        .await;
    amina
        .click("#join-requests li[data-user=chidi] button.decline")
        .await;
    amina
        .wait_for(
            "Chidi's request answered",
            "return !document.querySelector('#join-requests li[data-user=chidi]')",
            LONG,
        )
        .await;

    bruno.goto(&format!("{}/#/", server.url)).await;
    bruno
        .wait_for(
            "the space among Bruno's",
            &format!("return !!document.querySelector(\"a.space-link[data-space='{space}']\")"),
            LONG,
        )
        .await;
    let chidi = crate::support::amicus_json(&dir.path().join("chidi"), &["space", "requests"]);
    assert_eq!(chidi["requests"][0]["state"], "declined", "{chidi}");

    // Amina opens the space; Chidi asks again, and Amina's browser, open
    // on the space, adds him with no click: the server only said that
    // someone asked.
    amina.click("#listing-form-box summary").await;
    amina.click("#listing-form input[name=open]").await;
    amina.click("#listing-form button[type=submit]").await;
    // Drawn again from the server's listing once it holds it.
    amina
        .element("#listing-form input[name=open][checked]")
        .await;
    bruno.click("#directory-search button[type=submit]").await;
    bruno
        .element(&format!(
            "li.listed[data-space='{space}'][data-open=true] .open-space"
        ))
        .await;
    let asked =
        crate::support::amicus_json(&dir.path().join("chidi"), &["space", "request", &space]);
    assert_eq!(asked["open"], true, "{asked}");
    amina.element("tr[data-user=chidi]").await;
    let role = amina
        .js(
            "return document.querySelector('tr[data-user=chidi]').dataset.role",
            json!([]),
        )
        .await;
    assert_eq!(role, json!("contributor"));
    amina.screenshot("open-space-joined").await;
    let spaces = crate::support::amicus_json(&dir.path().join("chidi"), &["space", "list"]);
    assert!(spaces.to_string().contains(&space), "{spaces}");
}
