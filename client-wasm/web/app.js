// The web app: views built with plain DOM calls (never innerHTML with
// data), routed by the location hash:
//   #/                       spaces
//   #/space/ID               a space: members, library
//   #/doc/SPACE/STREAM       the editor
//   #/thread/SPACE/STREAM    a discussion
//   #/records/SPACE          case records: form, list, counts, publication
//   #/activity               what changed since the person last looked
//   #/search                 the public library
//   #/devices                this user's devices
//   #/unsent                 edits not sent, to save or discard
//   #/admin                  the administrator's invitations
//   #/join/CODE              (signed out) the sign-up form, invited

import { Client, ServerError, country_codes, drawPdf, load, mentions, progress as starting } from "./amicus.js";
import { languages, setLanguage, initialLanguage, language, t, tn } from "./i18n.js";
import { createEditor, marked } from "./editor.js";

/** @type {Client} The signed-in device (null before signing in). */
let client = null;
let cleanup = [];
let generation = 0; // counts the views drawn: a view still loading checks it is current
const presence = new Map(); // "space/stream" -> Map(device -> {user, at, cursor})
let administrator = false; // this user administers the server (the directory says)

// ------------------------------------------------------------------ DOM

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  // What a person types takes the direction of its first letter: a French
  // title in the Arabic interface runs and aligns left to right.
  if ((tag === "textarea" || (tag === "input" && (!attrs.type || attrs.type === "text" || attrs.type === "search"))) && !attrs.dir) el.dir = "auto";
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function field(label, input) {
  if (!input.id) input.id = `f-${Math.random().toString(36).slice(2)}`;
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input);
}

/** Replaces an element's children, skipping absent ones. */
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function status(message, kind = "info") {
  const box = document.getElementById("status");
  box.textContent = message || "";
  box.className = `status ${kind}`;
}

/** The server's refusals, by specific reason and then by kind, as the
 * interface words them (PROTOCOL §15, "Reasons"). */
const SERVER_REASONS = {
  name_taken: "errNameTaken", invitation_needed: "errInvitationNeeded", invitation_unknown: "errInvitationUnknown",
  invitation_expired: "errInvitationExpired", not_administrator: "errNotAdministrator", already_member: "errAlreadyMember",
  space_requests_full: "errSpaceRequestsFull", own_requests_full: "errOwnRequestsFull", not_listed: "errNotListed",
  no_public_role: "errNoPublicRole", not_publisher: "errNotPublisher", withdrawn: "errWithdrawn",
  all_suppressed: "rec_all_suppressed", bad_k: "rec_bad_k", dimensions: "rec_dimensions", already_published: "errAlreadyPublished",
  not_in_space: "errNotInSpace", no_mail_server: "errNoMailServer",
  too_many_drop_boxes: "errTooManyDropBoxes", intake_key_newer: "errIntakeKeyNewer",
};
const SERVER_KINDS = {
  bad_request: "errBadRequest", unauthenticated: "errUnauthenticated", sign_in_refused: "errSignInRefused",
  forbidden: "errForbidden", not_found: "errNotFound", gone: "errGone", conflict: "errConflict",
  too_large: "errTooLarge", quota_exceeded: "errQuota", rate_limited: "errRateLimited",
  hash_mismatch: "errHashMismatch", internal: "errInternal",
};

function fail(e) {
  console.error(e);
  // A server's refusal is said in the person's language, its own words
  // kept under "Details" for whoever helps them.
  if (e instanceof ServerError) {
    const key = SERVER_REASONS[e.reason] || SERVER_KINDS[e.code];
    if (key) {
      const box = document.getElementById("status");
      box.replaceChildren(t(key), " ", h("details", { class: "error-details" }, h("summary", {}, t("details")), h("code", { dir: "ltr" }, `${e.status} ${e.code}${e.reason ? ` (${e.reason})` : ""}: ${e.message}`)));
      box.className = "status error";
      return;
    }
  }
  // Errors with a code the interface words are said in the person's
  // language; the others with the engine's sentence.
  const known = {
    bad_name: "badName", bad_text: "badText", read_only: "warnReadOnly", not_manager: "notManager", mention: "mentionRefused", not_author: "notAuthor",
    no_folder: "libNoFolder", no_entry: "libNoEntry", folder_cycle: "libCycle", folder_not_empty: "libNotEmpty",
    discussion_in_folder: "libDiscussionInFolder", not_a_file: "libNoEntry", already_current: "libAlreadyCurrent",
    bad_manifest: "libBadManifest", no_attachment: "libNoEntry", already_listed: "libAlreadyListed",
    "preview-failed": "previewFailed", intake: "submissionBroken",
  }[e && e.code] || (e && e.code === "record" ? `rec_${e.reason}` : null);
  status(known ? t(known) : `${t("error")}: ${e.message || e}`, "error");
}

/** How long a removal can be undone from the status line. */
const UNDO_MS = 30000;

/** Says `message` in the status line with an Undo button that calls
 * `undo` once, for `UNDO_MS`. */
function offerUndo(message, undo) {
  const box = document.getElementById("status");
  const button = h("button", { type: "button", id: "undo", class: "link", onclick: async () => {
    button.remove();
    await undo();
    status(t("undone"));
  } }, t("undo"));
  box.replaceChildren(message, " ", button);
  box.className = "status info";
  setTimeout(() => button.remove(), UNDO_MS);
}

/** Listens to the client's `type` events until the page is left (the
 * session may have ended by then: the client is kept here). */
function listen(type, fn) {
  const events = client.events;
  events.addEventListener(type, fn);
  onCleanup(() => events.removeEventListener(type, fn));
}

function onCleanup(fn) {
  cleanup.push(fn);
}

// ---------------------------------------------------------------- shell

function header() {
  const select = h(
    "select",
    { id: "language", "aria-label": t("language"), onchange: (e) => { setLanguage(e.target.value); render(); } },
    languages.map(([code, name]) => h("option", { value: code, lang: code, selected: code === language() }, name)),
  );
  const nav = client
    ? h(
        "nav",
        { "aria-label": t("app") },
        h("a", { href: "#/" }, t("spaces")),
        activityLink(),
        h("a", { href: "#/search" }, t("publicLibrary")),
        h("a", { href: "#/devices" }, t("devices")),
        administrator ? h("a", { href: "#/admin", id: "admin-link" }, t("admin")) : null,
        h("span", { id: "connection", class: client.online ? "online" : "offline", role: "status" },
          client.online ? t("online") : t("offline")),
        unsentNote(),
        h("span", { class: "who" }, client.user),
        h("button", { type: "button", onclick: signOut }, t("signOut")),
      )
    : h("nav", { "aria-label": t("app") },
        h("a", { href: "#/search", id: "public-link" }, t("publicLibrary")),
        h("a", { href: "#/" }, t("signIn")));
  return h("header", {}, h("h1", {}, h("a", { href: "#/" }, t("app"))), nav, h("label", { class: "lang" }, h("span", { class: "lang-word" }, t("language")), " ", select));
}

/** What others changed since this person last looked, in every space
 * (computed in this browser by the engine); [] while it cannot be read. */
function activityItems() {
  try {
    return client.device.activity();
  } catch (_) {
    return [];
  }
}

/** The navigation's link to the activity page, with how many documents
 * changed and how many mentions wait. */
function activityLink() {
  const items = activityItems();
  const m = items.reduce((sum, i) => sum + i.mentions, 0);
  return h("a", { href: "#/activity", id: "activity-link", "data-count": items.length, "data-mentions": m },
    t("activity"),
    items.length ? h("span", { class: "badge", title: t("activityBadge", { n: items.length, m }), "aria-label": t("activityBadge", { n: items.length, m }) },
      m ? `${items.length} · @${m}` : String(items.length)) : null);
}

/** How many documents have edits the server has not acknowledged, kept in
 * this browser (they survive a reload and go out when connected). */
function unsentNote() {
  const n = client.unsentDocuments || 0;
  return h("a", { id: "unsent", href: "#/unsent", class: "muted", role: "status", "data-documents": n, hidden: n === 0 },
    t("unsentKept", { n }));
}

function render() {
  generation++;
  // A page's cleanup that fails never stops the next page (nor a lock).
  for (const fn of cleanup) {
    try {
      fn();
    } catch (e) {
      queueMicrotask(() => { throw e; });
    }
  }
  cleanup = [];
  document.title = t("app");
  const root = document.getElementById("app");
  root.replaceChildren(header(), h("div", { id: "status", class: "status", role: "status", "aria-live": "polite" }), h("main", { id: "main" }));
  const main = document.getElementById("main");
  const [, view, a, b] = location.hash.split("/");
  // Public libraries are read without an account (where the server allows
  // it): their search and documents, and nothing else.
  if (!client && view === "search") return searchView(main);
  if (!client && view === "public" && a && b) return publicView(main, a, b);
  if (!client) return authView(main);
  if (view === "space" && a) return spaceView(main, a);
  if (view === "doc" && a && b) return editorView(main, a, b);
  if (view === "thread" && a && b) return discussionView(main, a, b);
  if (view === "records" && a) return recordsView(main, a);
  if (view === "activity") return activityView(main);
  if (view === "search") return searchView(main);
  if (view === "public" && a && b) return publicView(main, a, b);
  if (view === "devices") return devicesView(main);
  if (view === "unsent") return unsentView(main);
  if (view === "admin") return adminView(main);
  return spacesView(main);
}

// ----------------------------------------------------------------- auth

async function authView(main) {
  const mine = generation;
  // An invitation link (#/join/CODE) fills the code in: the fragment never
  // reaches the server with a request.
  const [, route, code] = location.hash.split("/");
  const invited = route === "join" && /^[0-9a-f]{32}$/.test(code || "") ? code : null;
  // The accounts held here are not listed: someone shown the page (at a
  // checkpoint, say) learns nothing of who uses this browser.
  const signIn = h("form", { id: "sign-in", onsubmit: async (e) => {
    e.preventDefault();
    const f = e.target;
    status(t("working"));
    try {
      await load();
      client = await Client.unlock(f.user.value.trim(), f.passphrase.value);
      started();
    } catch (err) {
      const known = { "no-device": t("noDevice"), "wrong-passphrase": t("wrongPassphrase") };
      status(known[err.code] || `${t("error")}: ${err.message}`, "error");
    }
  } },
    h("h2", {}, t("signIn")),
    field(t("user"), h("input", { name: "user", required: true, autocomplete: "username", autocapitalize: "none", spellcheck: "false" })),
    field(t("passphrase"), h("input", { name: "passphrase", type: "password", required: true, autocomplete: "current-password" })),
    h("button", { type: "submit" }, t("signIn")),
  );
  const signUp = h("form", { id: "sign-up", onsubmit: async (e) => {
    e.preventDefault();
    const f = e.target;
    status(t("working"));
    try {
      await load();
      client = await Client.signUp(f.user.value.trim(), f.passphrase.value, f.invite.value.trim());
      // The used invitation leaves the address bar and the history.
      if (invited) history.replaceState(null, "", "#/");
      started();
    } catch (err) {
      const known = { exists: "exists", "weak-passphrase": "weakPassphrase" }[err.code];
      if (known) status(t(known), "error");
      else fail(err);
    }
  } },
    h("h2", {}, t("signUp")),
    field(t("user"), h("input", { name: "user", required: true, autocomplete: "username", pattern: "[a-z0-9][a-z0-9._\\-]{0,63}" })),
    field(t("passphrase"), h("input", { name: "passphrase", type: "password", required: true, minlength: 8, autocomplete: "new-password" })),
    field(t("invite"), h("input", { name: "invite", autocomplete: "off", value: invited || undefined })),
    h("button", { type: "submit" }, t("signUp")),
  );
  // Linking and recovering: the form stays disabled while it works, and a
  // failure names what went wrong.
  const opening = (open, done, known) => async (e) => {
    e.preventDefault();
    const f = e.target;
    status(t("working"));
    f.querySelector("button").disabled = true;
    try {
      await load();
      client = await open(f);
      f.code.value = "";
      started();
      status(t(done));
    } catch (err) {
      f.querySelector("button").disabled = false;
      const key = { exists: "exists", "weak-passphrase": "weakPassphrase", ...known }[err.code];
      if (key) status(t(key), "error");
      else fail(err);
    }
  };
  const link = h("form", { id: "link", onsubmit: opening(
    (f) => Client.link(f.user.value.trim(), f.code.value, f.passphrase.value, () => status(t("linkWaiting"))),
    "linked",
    { bad_code: "badCode", pairing_expired: "pairingExpired", no_pairing: "pairingNotFound" },
  ) },
    h("h2", {}, t("linkBrowser")),
    h("p", { class: "muted" }, t("linkIntro")),
    field(t("user"), h("input", { name: "user", required: true, autocomplete: "username", pattern: "[a-z0-9][a-z0-9._\\-]{0,63}" })),
    field(t("pairingCode"), h("input", { name: "code", required: true, autocomplete: "off", inputmode: "numeric", dir: "ltr" })),
    field(t("passphrase"), h("input", { name: "passphrase", type: "password", required: true, minlength: 8, autocomplete: "new-password" })),
    h("button", { type: "submit" }, t("link")),
  );
  const recover = h("form", { id: "recover", onsubmit: opening(
    (f) => Client.recover(f.user.value.trim(), f.code.value, f.passphrase.value),
    "recovered",
    { "bad-recovery-code": "badRecoveryCode" },
  ) },
    h("h2", {}, t("recoverAccount")),
    h("p", { class: "muted" }, t("recoverIntro")),
    field(t("user"), h("input", { name: "user", required: true, autocomplete: "username", pattern: "[a-z0-9][a-z0-9._\\-]{0,63}" })),
    field(t("recoveryCode"), h("input", { name: "code", required: true, autocomplete: "off", inputmode: "numeric", dir: "ltr", spellcheck: "false" })),
    field(t("passphrase"), h("input", { name: "passphrase", type: "password", required: true, minlength: 8, autocomplete: "new-password" })),
    h("button", { type: "submit" }, t("recover")),
  );
  // A browser that holds an account shows only how to unlock it (the
  // passphrase, or the device's screen lock where it was turned on); the
  // other ways in wait behind a link. A new browser shows how to get in.
  let returning = false;
  let deviceUnlock = false;
  try {
    returning = !invited && await Client.holdsAccount();
    deviceUnlock = returning && await Client.deviceUnlockStored() && await Client.deviceUnlockOffered();
  } catch (_) { /* no IndexedDB here: a new browser */ }
  if (mine !== generation) return;
  // (A new browser holds no account to unlock.)
  const others = returning ? [signUp, link, recover] : [link, recover];
  const first = returning ? signIn : signUp;
  signIn.querySelector("h2").textContent = t("unlock");
  if (returning) signIn.prepend(h("p", { class: "muted" }, t("unlockIntro")));
  if (deviceUnlock) {
    signIn.append(" ", h("button", { type: "button", id: "unlock-device", onclick: async () => {
      status(t("working"));
      try {
        client = await Client.unlockWithDevice();
        started();
      } catch (err) {
        status(err.code === "device-unlock-failed" ? t("deviceUnlockFailed") : `${t("error")}: ${err.message}`, "error");
      }
    } }, t("unlockDevice")));
  }
  main.append(h("p", { class: "tagline" }, t("tagline")),
    invited ? h("p", { id: "invited", class: "notice" }, t("invitedJoin")) : null,
    h("div", { class: "auth" }, first,
      h("details", { id: "other-ways", open: !returning }, h("summary", {}, t(returning ? "otherWays" : "otherWaysNew")), h("div", { class: "auth" }, ...others))));
  if (invited) signUp.querySelector("input[name=user]").focus();
}

/** Says what a slow start is doing (the first sign-in on a weak link:
 * downloading the app, deriving the key, opening the state, signing in). */
starting.addEventListener("step", (/** @type {any} */ e) => {
  if (client) return;
  const { step, percent, bytes } = e.detail;
  const key = { download: "stepDownload", key: "stepKey", state: "stepState", "sign-in": "stepSignIn" }[step];
  const amount = percent !== undefined ? `${percent} %` : bytes ? formatSize(bytes) : "";
  if (key) status(t(key, { amount }));
});

/** Who wrote a comment or named a version: the user whose device signed
 * it, or, for content that came in a snapshot, the name it claims, marked
 * as not verified. */
function authorName(item) {
  return item.verified ? item.author : t("unverifiedAuthor", { author: item.author });
}

/** The engine's warnings the interface words itself. */
const warnings = { withheld: "warnWithheld", forked: "warnForked", sign_in: "warnSignIn", revoked: "warnRevoked", read_only: "warnReadOnly" };

function started() {
  const rerender = () => render();
  // The administrator is told so once, and finds the invitations in the
  // header from then on.
  administrator = false;
  client.isAdmin().then((admin) => {
    if (!admin || administrator) return;
    administrator = true;
    render();
    status(t("youAreAdmin"));
  }).catch(() => {});
  client.events.addEventListener("spaces", () => {
    if (!location.hash || location.hash === "#/") rerender();
  });
  client.events.addEventListener("status", () => {
    const c = document.getElementById("connection");
    if (c) {
      c.className = client.online ? "online" : "offline";
      c.textContent = client.online ? t("online") : t("offline");
    }
  });
  // A warning the interface knows is shown in its language; the others
  // with the engine's sentence.
  client.events.addEventListener("warning", (/** @type {any} */ e) => {
    const known = warnings[e.detail.code];
    // Rights changed in the space on screen: it is drawn again without
    // the means to write (what was typed and not sent stays, listed).
    const [, view, on] = location.hash.split("/");
    if (e.detail.code === "read_only" && (view === "space" || view === "doc") && on === e.detail.space) {
      client.save().then(() => {
        render();
        status(t(known), "warning");
      });
      return;
    }
    status(known ? `${t(known)} (${e.detail.message})` : e.detail.message, "warning");
  });
  client.events.addEventListener("unsent", () => {
    document.getElementById("unsent")?.replaceWith(unsentNote());
  });
  // The activity count follows what arrives and what the person looks at;
  // while the tab is hidden, a browser notice (if allowed) says only that
  // something is new and how many mentions wait.
  let counting;
  let noticed = activityItems().length;
  const recount = () => {
    clearTimeout(counting);
    counting = setTimeout(() => {
      if (!client) return;
      const link = activityLink();
      document.getElementById("activity-link")?.replaceWith(link);
      updateSpaceBadges();
      const n = Number(link.dataset.count);
      if (n > noticed && document.hidden && "Notification" in window && Notification.permission === "granted") {
        const mentions = Number(link.dataset.mentions);
        const body = mentions ? tn("browserNoticeMentions", mentions) : t("browserNoticeBody");
        new Notification(t("app"), { body, tag: "amicus-activity" });
      }
      noticed = n;
    }, 250);
  };
  client.events.addEventListener("changed", recount);
  client.events.addEventListener("activity", recount);
  client.events.addEventListener("presence", (/** @type {any} */ e) => {
    const { space, user, device, payload } = e.detail;
    if (!payload || typeof payload.doc !== "string") return;
    const k = `${space}/${payload.doc}`;
    // A device is in one document at a time.
    for (const [other, here] of presence) {
      if (other !== k && other.startsWith(`${space}/`) && here.delete(device)) client.emit("presence-changed", { key: other });
    }
    if (!presence.has(k)) presence.set(k, new Map());
    presence.get(k).set(device, { user, at: Date.now(), cursor: payload.cursor });
    client.emit("presence-changed", { key: k });
  });
  client.start();
  status("");
  render();
  idle.arm();
}

/** Leaves the signed-in views for the sign-in page; returns the client
 * that was signed in, for the caller to lock or erase. */
function endSession() {
  const c = client;
  client = null;
  idle.disarm();
  presence.clear();
  location.hash = "#/";
  render();
  return c;
}

/** Ends the session: the state is stored, then the keys held in memory
 * are freed; `message` is shown on the sign-in page. */
async function lockNow(message = "") {
  const c = endSession();
  if (!c) return;
  await c.lock();
  if (message) status(message, "warning");
}

/** A button that acts on its second click, the first asking to confirm
 * (its label becomes `confirmLabel`). */
function confirmingButton(attrs, label, confirmLabel, act) {
  const button = h("button", { type: "button", ...attrs, onclick: async () => {
    if (!button.classList.contains("confirm")) {
      button.classList.add("confirm");
      button.textContent = confirmLabel;
      return;
    }
    button.disabled = true;
    await act(button);
  } }, label);
  return button;
}

function signOut() {
  lockNow();
}

/** The idle lock: after `seconds()` without a key, a pointer or a touch,
 * the session locks and forgets its keys (a phone taken from a table
 * holds nothing open). The delay is this browser's choice (Devices page);
 * 15 minutes unless chosen. */
const idle = {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  timer: undefined,
  key: "amicus.idle",
  choices: [300, 900, 1800, 3600],
  seconds() {
    const chosen = Number(localStorage.getItem(this.key));
    return Number.isFinite(chosen) && chosen > 0 ? chosen : 900;
  },
  /** @param {number} seconds */
  choose(seconds) {
    localStorage.setItem(this.key, String(seconds));
    this.arm();
  },
  arm() {
    clearTimeout(this.timer);
    if (!client) return;
    const seconds = this.seconds();
    this.timer = setTimeout(() => lockNow(t("lockedIdle", { n: Math.max(1, Math.round(seconds / 60)) })), seconds * 1000);
  },
  disarm() {
    clearTimeout(this.timer);
    this.timer = undefined;
  },
};
for (const event of ["keydown", "pointerdown", "touchstart", "wheel"]) {
  document.addEventListener(event, () => {
    if (client) idle.arm();
  }, { capture: true, passive: true });
}

// --------------------------------------------------------------- spaces

/** A space's count of what changed since the person last looked (null:
 * nothing), from `activity`. */
function spaceBadge(space, activity) {
  const here = activity.filter((i) => i.space === space);
  const m = here.reduce((sum, i) => sum + i.mentions, 0);
  return here.length ? h("span", { class: "badge space-badge", "data-count": here.length, "data-mentions": m, title: t("activityBadge", { n: here.length, m }) },
    m ? `${here.length} · @${m}` : String(here.length)) : null;
}

/** Draws the spaces page's counts again, in place. */
function updateSpaceBadges() {
  const activity = activityItems();
  for (const link of document.querySelectorAll("a.space-link")) {
    const old = link.nextElementSibling?.classList.contains("space-badge") ? link.nextElementSibling : null;
    const now = spaceBadge(link.getAttribute("data-space"), activity);
    if (old && now) old.replaceWith(now);
    else if (old) old.remove();
    else if (now) link.after(now);
  }
}

function spacesView(main) {
  const list = client.device.spaces();
  const activity = activityItems();
  const badge = (space) => spaceBadge(space, activity);
  const form = h("form", { id: "new-space", onsubmit: async (e) => {
    e.preventDefault();
    status(t("working"));
    try {
      const id = await client.createSpace(e.target.name.value.trim());
      status("");
      location.hash = `#/space/${id}`;
    } catch (err) {
      fail(err);
    }
  } },
    h("h3", {}, t("newSpace")),
    field(t("spaceName"), h("input", { name: "name", required: true, maxlength: 200 })),
    h("button", { type: "submit" }, t("create")),
  );
  main.append(
    recoveryWarning(),
    h("h2", {}, t("spaces")),
    list.length
      ? h("ul", { class: "spaces" }, list.map((s) => h("li", {},
          h("a", { href: `#/space/${s.id}`, class: "space-link", "data-space": s.id }, spaceLabel(s.id)), badge(s.id),
          s.role ? [" ", h("span", { class: "muted" }, t(s.role))] : null,
          s.removed ? h("span", { class: "warning" }, ` · ${t("removed")}`) : null)))
      : h("p", {}, t("empty")),
    form,
    directorySection(),
    h("p", {}, t("safetyNumber"), ": ", h("code", { class: "safety" }, client.device.safety_number())),
  );
  // A space just joined is named once its library arrives.
  const named = () => {
    for (const a of main.querySelectorAll("a.space-link")) {
      const label = spaceLabel(a.dataset.space);
      if (a.textContent !== label) a.textContent = label;
    }
  };
  listen("changed", named);
}

/** The network's directory: the spaces their managers listed, found by
 * words; a request to join each (its message read by the server and the
 * space's members), and this person's requests with their state. */
function directorySection() {
  const box = h("section", { id: "directory", "aria-labelledby": "directory-h" });
  const results = h("ul", { id: "directory-results", class: "spaces" });
  const mine = h("div", { id: "my-requests" });
  let requests = [];
  const drawMine = async () => {
    try {
      requests = (await client.api("GET", "/v1/account/requests")).requests;
    } catch (_) {
      requests = [];
    }
    fill(mine, requests.length ? [h("h4", {}, t("myRequests")), h("ul", {}, requests.map((r) =>
      h("li", { "data-space": r.space, "data-state": r.state }, h("span", { dir: "auto" }, r.name || r.space.slice(0, 8)), " — ",
        h("span", { class: r.state === "declined" ? "warning" : "muted" }, t(r.state === "declined" ? "requestDeclined" : "requestPending")))))] : []);
  };
  const search = async (q) => {
    let found;
    try {
      found = await client.api("GET", `/v1/directory?q=${encodeURIComponent(q)}`);
    } catch (err) { return fail(err); }
    fill(results, found.spaces.length ? found.spaces.map((l) => {
      const member = client.device.has_space(l.space);
      const asked = requests.find((r) => r.space === l.space);
      const message = h("textarea", { name: "message", rows: 2, maxlength: 1000, dir: "auto" });
      return h("li", { class: "listed", "data-space": l.space, "data-open": l.open ? "true" : "false" },
        h("strong", { dir: "auto" }, l.name), l.open ? [" ", h("span", { class: "badge open-space" }, t("openSpace"))] : null,
        l.description ? h("p", { class: "description", dir: "auto" }, l.description) : null,
        member ? h("a", { href: `#/space/${l.space}` }, t("youAreMember"))
          : asked && asked.state === "pending" ? h("span", { class: "muted" }, t("requestPending"))
          : h("details", { class: "ask" }, h("summary", {}, t(l.open ? "joinOpen" : "askToJoin")),
            h("form", { class: "ask-form", onsubmit: async (e) => {
              e.preventDefault();
              status(t("working"));
              try {
                const answer = await client.api("POST", `/v1/directory/${l.space}/requests`, { message: message.value });
                status(t(answer.open ? "requestSentOpen" : "requestSent"));
                await drawMine();
                search(q);
              } catch (err) { fail(err); }
            } }, field(t("askMessage"), message), h("p", { class: "muted" }, t("askMessageWho")), h("button", { type: "submit" }, t(l.open ? "joinOpen" : "askToJoin")))));
    }) : [h("li", { class: "muted" }, t("directoryEmpty"))]);
  };
  const query = h("input", { type: "search", name: "q", "aria-label": t("directorySearch"), dir: "auto" });
  box.append(h("h3", { id: "directory-h" }, t("directory")), h("p", { class: "muted" }, t("directoryExplain")),
    h("form", { id: "directory-search", role: "search", onsubmit: (e) => { e.preventDefault(); search(query.value); } },
      query, h("button", { type: "submit" }, t("search"))),
    results, mine);
  drawMine().then(() => search(""));
  return box;
}

const ROLES = ["contributor", "reader", "content_manager", "space_manager"];

/** A space's label: the name its space managers gave it (encrypted in the
 * library, so only members see it), else the start of its id. */
function spaceLabel(space) {
  try {
    const name = client.device.space_profile(space).name;
    if (name) return name;
    // Spaces created before names existed: their first folder's name.
    const folder = client.device.library(space).find((e) => e.kind === "folder" && !e.folder);
    if (folder) return `${folder.name} (${space.slice(0, 8)})`;
  } catch (_) {
    /* not read yet */
  }
  // No name (yet): said so, with the id's beginning to tell several apart.
  return t("unnamedSpace", { id: space.slice(0, 8) });
}

function spaceView(main, space) {
  if (!client.device.has_space(space)) {
    main.append(h("p", { class: "warning" }, t("notInSpace")));
    return;
  }
  const membersBox = h("section", { id: "members", "aria-labelledby": "members-h" });
  const libraryBox = h("section", { id: "library", "aria-labelledby": "library-h" });
  const discussionsBox = h("section", { id: "discussions", "aria-labelledby": "discussions-h" });
  const progress = h("progress", { id: "progress", max: 1, value: 0, hidden: true });
  const progressText = h("span", { id: "progress-text", role: "status", "aria-live": "polite" });

  const drawMembers = () => {
    const summary = client.device.spaces().find((s) => s.id === space);
    const me = summary?.role;
    let members = [];
    try {
      members = client.device.members(space);
    } catch (_) {
      /* removed */
    }
    const byUser = new Map();
    for (const m of members) {
      if (!byUser.has(m.user)) byUser.set(m.user, { ...m, devices: 0 });
      byUser.get(m.user).devices++;
    }
    fill(membersBox, 
      h("h3", { id: "members-h" }, t("members")),
      summary?.broken ? h("p", { class: "warning", role: "alert" }, `${t("broken")}: ${summary.broken}`) : null,
      summary?.removed ? h("p", { class: "warning" }, t("removed")) : null,
      h("table", { class: "members" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("user")), h("th", { scope: "col" }, t("role")), h("th", { scope: "col" }, t("safetyNumberCol")), h("th", { scope: "col" }, ""))),
        h("tbody", {}, [...byUser.values()].map((m) => h("tr", { "data-user": m.user, "data-role": m.role },
          h("td", {}, m.user, m.devices > 1 ? ` (${m.devices})` : ""),
          h("td", {}, me === "space_manager" && m.user !== client.user
            ? h("select", { "aria-label": `${t("role")}: ${m.user}`, class: "role", onchange: async (e) => {
                status(t("working"));
                try { await client.setRole(space, m.user, e.target.value); status(""); drawMembers(); } catch (err) { fail(err); drawMembers(); }
              } }, ROLES.map((r) => h("option", { value: r, selected: r === m.role }, t(r))))
            : t(m.role)),
          h("td", {}, h("code", { class: "safety" }, m.safety_number || "")),
          h("td", {}, me === "space_manager" && m.user !== client.user
            ? h("button", { type: "button", onclick: async () => {
                status(t("working"));
                try { await client.remove(space, m.user); status(""); drawMembers(); } catch (err) { fail(err); }
              } }, t("remove"))
            : null),
        )))),
      // The space code, and what comparing it means, in plain words.
      h("details", { class: "space-code" },
        h("summary", {}, t("spaceCode"), ": ", h("code", { id: "epoch-code", dir: "ltr", "data-epoch": summary?.epoch ?? "" }, summary?.code || "")),
        h("p", { class: "muted" }, t("spaceCodeExplain", { n: summary?.epoch ?? "?" }))),
      me === "space_manager"
        ? h("form", { id: "invite", onsubmit: async (e) => {
            e.preventDefault();
            const f = e.target;
            status(t("working"));
            try {
              await client.invite(space, f.user.value.trim(), f.role.value);
              f.user.value = "";
              status("");
              drawMembers();
            } catch (err) {
              fail(err);
            }
          } },
            field(t("inviteMember"), h("input", { name: "user", required: true })),
            field(t("role"), h("select", { name: "role" }, ROLES.map((r) => h("option", { value: r }, t(r))))),
            h("button", { type: "submit" }, t("add")))
        : null,
    );
    if (me === "space_manager") offerNewDevices(byUser);
  };

  // A space manager sees which members have certified browsers that are not
  // in the space yet (linked or recovered since) and adds them in one click.
  const offerNewDevices = (byUser) => {
    const inSpace = new Set(members().map((m) => m.device));
    for (const m of byUser.values()) {
      client.api("GET", `/v1/users/${encodeURIComponent(m.user)}`).then((listing) => {
        const waiting = (listing.devices || []).filter((d) => !inSpace.has(d.device) && d.key_packages > 0);
        const cell = membersBox.querySelector(`tr[data-user="${CSS.escape(m.user)}"] td:last-child`);
        if (!waiting.length || !cell) return;
        cell.append(h("button", { type: "button", class: "add-devices", "data-user": m.user, onclick: async (e) => {
          e.target.disabled = true;
          status(t("working"));
          try { await client.invite(space, m.user, m.role); status(""); drawMembers(); } catch (err) { e.target.disabled = false; fail(err); }
        } }, t("addNewDevices", { n: waiting.length })));
      }).catch(() => {});
    }
  };
  const members = () => {
    try {
      return client.device.members(space);
    } catch (_) {
      return [];
    }
  };

  // The folder new documents, folders and uploads go into.
  let target = "";
  // Sends a change of the library, then draws it again.
  const libraryEdit = async (edit) => {
    try {
      edit();
      await client.flushSpace(space);
    } catch (err) {
      fail(err);
    }
    drawLibrary(true);
  };
  const drawLibrary = (force) => {
    // Not while the person has an entry's actions, versions or a preview
    // open (unless they acted).
    if (!force && libraryBox.querySelector("details.entry-actions[open], details.file-versions[open], .preview-box:not(:empty)")) return;
    const summary = client.device.spaces().find((s) => s.id === space);
    const readOnly = Boolean(summary?.read_only);
    let entries = [];
    try {
      entries = client.device.library(space).filter((e) => e.kind !== "discussion");
    } catch (_) {
      /* not readable yet */
    }
    client.seen(space, client.libraryStream(space));
    const folders = entries.filter((e) => e.kind === "folder");
    const byId = new Map(folders.map((f) => [f.id, f]));
    // A folder whose chain of parents does not reach the top (removed, or
    // moved into each other at the same time by two people) shows at the top.
    const reachesTop = (id) => {
      const seen = new Set();
      for (let at = id; at; at = byId.get(at)?.folder || "") {
        if (!byId.has(at) || seen.has(at)) return false;
        seen.add(at);
      }
      return true;
    };
    const parentOf = (e) => (e.folder && reachesTop(e.folder) && !(e.kind === "folder" && e.folder === e.id) ? e.folder : "");
    const path = (id) => {
      const names = [];
      for (let at = id, n = 0; at && n < folders.length; at = parentOf(byId.get(at)), n++) names.unshift(byId.get(at)?.name || "?");
      return names.join(" / ");
    };
    const within = (id, ancestor) => {
      for (let at = id, n = 0; at && n <= folders.length; at = parentOf(byId.get(at)), n++) if (at === ancestor) return true;
      return false;
    };
    const folderOptions = (except) => [h("option", { value: "" }, t("libraryTop")),
      ...folders.filter((f) => reachesTop(f.id) && !(except && within(f.id, except))).map((f) => h("option", { value: f.id }, path(f.id)))];
    if (target && !byId.has(target)) target = "";
    const actions = (e) => {
      const name = h("input", { name: "name", value: e.name, required: true, maxlength: 200, "aria-label": t("rename") });
      const to = h("select", { name: "to", "aria-label": t("moveTo") }, folderOptions(e.kind === "folder" ? e.id : null));
      to.value = parentOf(e);
      return h("details", { class: "entry-actions" }, h("summary", { "aria-label": t("entryActions", { name: e.name }) }, "⋯"),
        h("form", { class: "rename", onsubmit: (ev) => { ev.preventDefault(); libraryEdit(() => client.device.rename_entry(space, e.id, name.value)); } },
          name, h("button", { type: "submit" }, t("rename"))),
        h("form", { class: "move", onsubmit: (ev) => { ev.preventDefault(); libraryEdit(() => client.device.move_entry(space, e.id, to.value)); } },
          to, h("button", { type: "submit" }, t("move"))),
        e.kind === "file" ? h("label", { class: "new-version" }, t("newVersion"), " ",
          h("input", { type: "file", class: "version-upload", "data-file": e.id, onchange: async (ev) => {
            const file = ev.target.files[0];
            if (!file) return;
            await uploadFile(file, undefined, e.id);
            ev.target.value = "";
          } })) : null,
        confirmingButton({ class: "remove-entry" }, t("removeEntry"), t("removeConfirm"), async () => {
          let undo = "";
          await libraryEdit(() => { undo = client.device.remove_entry(space, e.id); });
          if (undo) {
            offerUndo(t("entryRemoved", { name: e.name || "—" }),
              () => libraryEdit(() => client.device.restore_entry(space, e.id, undo)));
          }
        }));
    };
    const previewBox = (e) => h("div", { class: "preview-box", "data-file": e.id });
    const fileExtras = (e) => {
      const box = previewBox(e);
      return [
        previewable(e) ? h("button", { type: "button", class: "link preview", "data-file": e.id, onclick: () => preview(space, e, box) }, t("preview")) : null,
        e.versions.length ? h("details", { class: "file-versions" }, h("summary", {}, tn("olderVersions", e.versions.length)),
          h("ol", {}, e.versions.map((v, i) => h("li", { "data-version": v.file },
            h("button", { type: "button", class: "link version-download", "data-version": v.file,
              onclick: () => download(space, { id: v.file }, progress, progressText) }, `${t("versionN", { n: i + 1 })}: ${v.name} (${formatSize(v.size)})`))))) : null,
        box,
      ];
    };
    const row = (e) => [
      e.kind === "document"
        ? h("a", { href: `#/doc/${space}/${e.id}`, class: "doc-link" }, e.name || "—")
        : e.kind === "file"
          ? h("button", { type: "button", class: "link file-link", "data-file": e.id, onclick: () => download(space, e, progress, progressText) }, `${e.name} (${formatSize(e.size)})`)
          : h("span", { class: "folder-name" }, e.name),
      readOnly ? null : actions(e),
      ...(e.kind === "file" ? fileExtras(e) : []),
    ];
    const tree = (folder, depth) => {
      const here = entries.filter((e) => parentOf(e) === folder && !(e.kind === "folder" && e.id === folder));
      return here.length && depth <= folders.length
        ? h("ul", { class: "library" }, here.map((e) => h("li", { class: e.kind, "data-entry": e.id }, row(e), e.kind === "folder" ? tree(e.id, depth + 1) : null)))
        : null;
    };
    const putIn = h("select", { id: "target-folder", onchange: (e) => { target = e.target.value; } }, folderOptions(null));
    putIn.value = target;
    fill(libraryBox, 
      h("h3", { id: "library-h" }, t("library")),
      entries.length ? tree("", 0) : h("p", {}, t("empty")),
      readOnly || !folders.length ? null : field(t("putIn"), putIn),
      readOnly ? h("p", { id: "read-only", class: "muted" }, t(summary?.removed ? "removed" : "readerOnly")) : null,
      readOnly ? null : h("form", { id: "new-doc", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const id = await client.newDocument(space, e.target.title.value, target);
          location.hash = `#/doc/${space}/${id}`;
        } catch (err) { fail(err); }
      } }, field(t("title"), h("input", { name: "title", required: true })), h("button", { type: "submit" }, t("newDocument"))),
      readOnly ? null : h("form", { id: "new-folder", onsubmit: async (e) => {
        e.preventDefault();
        try {
          client.device.new_folder(space, e.target.name.value.trim(), target);
          await client.flushSpace(space);
          drawLibrary(true);
        } catch (err) { fail(err); }
      } }, field(t("folderName"), h("input", { name: "name", required: true })), h("button", { type: "submit" }, t("newFolder"))),
      readOnly ? null : field(t("upload"), h("input", { type: "file", id: "upload", onchange: async (e) => {
        const file = e.target.files[0];
        if (!file) return;
        await uploadFile(file);
        e.target.value = "";
      } })),
      progress, progressText,
      interruptedBox,
    );
  };

  const interruptedBox = h("section", { id: "interrupted", "aria-labelledby": "interrupted-h" });
  const uploadFile = async (file, resume, replaces) => {
    progress.hidden = false;
    try {
      await client.upload(space, file, target, (done, total) => {
        progress.max = total;
        progress.value = done;
        progressText.textContent = `${t("uploading")} ${done}/${total}`;
      }, resume, replaces);
      progressText.textContent = `${t("uploading")}: ${t("done")}`;
      drawLibrary(true);
    } catch (err) {
      fail(err);
    }
    drawInterrupted();
  };
  const drawInterrupted = async () => {
    const list = (await client.interruptedUploads().catch(() => [])).filter((u) => u.space === space);
    fill(interruptedBox, list.length ? [
      h("h4", { id: "interrupted-h" }, t("interrupted")),
      h("ul", {}, list.map((u) => h("li", { class: "interrupted", "data-upload": u.id },
        `${u.name} (${formatSize(u.size)}) — ${u.done}/${u.chunks} `,
        field(t("resumeUpload", { name: u.name }), h("input", { type: "file", class: "resume", onchange: async (e) => {
          const file = e.target.files[0];
          if (!file) return;
          if (file.size !== u.size) {
            status(t("notSameFile", { name: u.name }), "error");
            return;
          }
          await uploadFile(file, u.id);
        } })),
        h("button", { type: "button", class: "discard", onclick: async () => {
          await client.discardUpload(u.id);
          drawInterrupted();
        } }, t("discard"))))),
    ] : []);
  };

  // The name and description; a space manager may change them.
  const profileBox = h("section", { id: "space-profile" });
  const drawProfile = () => {
    // Not while a space manager has the form open.
    if (profileBox.querySelector("#rename-space[open]")) return;
    let p = {};
    try {
      p = client.device.space_profile(space);
    } catch (_) {
      /* removed */
    }
    const me = client.device.spaces().find((s) => s.id === space)?.role;
    const nameInput = h("input", { name: "name", required: true, maxlength: 200, value: p.name || "" });
    const description = h("textarea", { name: "description", dir: "auto", maxlength: 2000, rows: 3 }, p.description || "");
    const form = h("form", { id: "space-profile-form", onsubmit: async (e) => {
      e.preventDefault();
      status(t("working"));
      try {
        await client.setSpaceProfile(space, nameInput.value, description.value);
        status(t("saved"));
        profileBox.querySelector("#rename-space").open = false;
        drawProfile();
      } catch (err) { fail(err); }
    } },
    field(t("spaceName"), nameInput), field(t("spaceDescription"), description),
    h("button", { type: "submit" }, t("notifySave")));
    fill(profileBox, h("h2", { id: "space-name", dir: "auto" }, spaceLabel(space)),
      p.description ? h("p", { id: "space-description", class: "description", dir: "auto" }, p.description) : null,
      me === "space_manager" ? h("details", { id: "rename-space" }, h("summary", {}, t("renameSpace")), form) : null);
  };
  // The discussions, each with what is new in it; a form to start one.
  const drawDiscussions = () => {
    if (discussionsBox.querySelector("#new-discussion textarea")?.value) return; // being typed
    const summary = client.device.spaces().find((s) => s.id === space);
    let list = [];
    try {
      list = client.device.library(space).filter((e) => e.kind === "discussion");
    } catch (_) {
      /* not readable yet */
    }
    const news = new Map(activityItems().filter((i) => i.space === space).map((i) => [i.id, i]));
    const text = h("textarea", { name: "text", required: true, rows: 3, dir: "auto", maxlength: 20000 });
    fill(discussionsBox,
      h("h3", { id: "discussions-h" }, t("discussions")),
      list.length
        ? h("ul", { class: "discussions" }, list.map((d) => {
            const n = news.get(d.id);
            return h("li", { "data-discussion": d.id },
              h("a", { href: `#/thread/${space}/${d.id}`, class: "discussion-link", dir: "auto" }, d.name || "—"),
              n ? h("span", { class: "badge", "data-posts": n.posts, "data-mentions": n.mentions }, n.mentions ? `${n.posts} · @${n.mentions}` : String(n.posts || t("activityNew"))) : null);
          }))
        : h("p", { class: "muted" }, t("noDiscussions")),
      summary?.read_only ? null : h("details", { id: "start-discussion" }, h("summary", {}, t("newDiscussion")),
        h("form", { id: "new-discussion", onsubmit: async (e) => {
          e.preventDefault();
          status(t("working"));
          try {
            const id = await client.newDiscussion(space, e.target.subject.value, text.value);
            text.value = "";
            status("");
            location.hash = `#/thread/${space}/${id}`;
          } catch (err) { fail(err); }
        } },
        field(t("discussionTitle"), h("input", { name: "subject", required: true, maxlength: 200, dir: "auto" })),
        field(t("postText"), text), mentionChips(space, text),
        h("button", { type: "submit" }, t("sendPost")))));
  };
  // A space manager lists the space in the directory, and answers the
  // requests to join.
  const listingBox = h("section", { id: "space-listing", "aria-labelledby": "listing-h" });
  const drawListing = async () => {
    const me = client.device.spaces().find((s) => s.id === space);
    if (me?.role !== "space_manager" || me?.read_only) return fill(listingBox);
    let listed = null;
    let waiting = [];
    try {
      const found = await client.api("GET", "/v1/directory");
      listed = found.spaces.find((l) => l.space === space) || null;
      waiting = (await client.api("GET", `/v1/directory/${space}/requests`)).requests;
    } catch (_) {
      /* offline: drawn again when something changes */
    }
    const name = h("input", { name: "name", required: true, maxlength: 200, dir: "auto", value: listed?.name || "" });
    const description = h("textarea", { name: "description", rows: 2, maxlength: 2000, dir: "auto" }, listed?.description || "");
    const open = h("input", { type: "checkbox", name: "open", checked: !!listed?.open });
    const act = async (fn) => {
      status(t("working"));
      try { await fn(); status(""); } catch (err) { fail(err); }
      drawListing();
    };
    fill(listingBox,
      h("h3", { id: "listing-h" }, t("directoryListing")),
      h("p", { class: "muted" }, t(listed ? "listedExplain" : "unlistedExplain")),
      h("details", { id: "listing-form-box" }, h("summary", {}, t(listed ? "changeListing" : "listSpace")),
        h("form", { id: "listing-form", onsubmit: (e) => { e.preventDefault(); act(() => client.listSpace(space, name.value, description.value, open.checked)); } },
          field(t("publicName"), name), field(t("publicDescription"), description),
          h("label", { class: "check" }, open, " ", t("openListing")), h("p", { class: "muted" }, t("openListingHelp")),
          h("button", { type: "submit" }, t(listed ? "changeListing" : "listSpace")))),
      listed ? h("button", { type: "button", id: "unlist", onclick: () => act(() => client.listSpace(space, "", "")) }, t("unlistSpace")) : null,
      waiting.length ? h("h4", {}, t("joinRequests")) : null,
      waiting.length ? h("ul", { id: "join-requests" }, waiting.map((r) => {
        const role = h("select", { "aria-label": `${t("role")}: ${r.user}` }, ROLES.map((x) => h("option", { value: x }, t(x))));
        return h("li", { "data-user": r.user }, h("strong", {}, r.user), r.message ? h("p", { dir: "auto" }, r.message) : null,
          role, " ",
          h("button", { type: "button", class: "accept", onclick: () => act(() => client.accept(space, r.user, role.value)) }, t("acceptRequest")), " ",
          h("button", { type: "button", class: "decline", onclick: () => act(() => client.decline(space, r.user)) }, t("declineRequest")));
      })) : null);
  };
  // Drop boxes: every member sees what arrived; space managers open and
  // close boxes. The key the server serves is checked by the engine.
  const dropBox = h("section", { id: "drop-boxes", "aria-labelledby": "drop-h" });
  /** @type {Map<string, HTMLElement>} what was opened stays open across redraws */
  const openedSubmissions = new Map();
  // The link of the box just opened stays shown across redraws.
  const made = h("div", { id: "new-drop-link", "aria-live": "polite" });
  const drawDropBoxes = async () => {
    const me = client.device.spaces().find((s) => s.id === space);
    const manager = me?.role === "space_manager" && !me?.read_only;
    let list;
    try {
      list = await client.dropBoxes(space);
    } catch (_) {
      /* offline: drawn again when something changes */
      return;
    }
    if (!manager && !list.boxes.length) return fill(dropBox);
    const when = (secs) => new Intl.DateTimeFormat(language(), { dateStyle: "medium", timeStyle: "short" }).format(new Date(secs * 1000));
    const now = Date.now() / 1000;
    const act = async (fn) => {
      status(t("working"));
      try { await fn(); status(""); } catch (err) { fail(err); }
      drawDropBoxes();
    };
    const label = h("input", { name: "label", required: true, maxlength: 200 });
    const days = h("input", { type: "number", name: "days", min: 1, max: 365, value: 30, required: true });
    const quota = h("input", { type: "number", name: "quota", min: 1, max: 2048, value: 100, required: true });
    const linkOf = (fragment) => `${location.origin}/drop/#${fragment}`;
    const linkField = (fragment) => h("input", { type: "url", readonly: true, class: "drop-link", dir: "ltr", value: linkOf(fragment), "aria-label": t("dropLink"), onfocus: (e) => e.target.select() });
    const openOne = async (sub, where) => {
      status(t("working"));
      try {
        const parts = await client.openSubmission(space, sub);
        fill(where, parts.map((p) => {
          if (p.kind === "statement") return h("blockquote", { class: "statement", dir: "auto" }, p.text || "");
          // The witness names the type: only types a browser shows inertly
          // are kept (no HTML, no SVG: opened in a tab, they would be
          // pages of this origin).
          const inert = /^(image\/(png|jpeg|gif|webp)|application\/pdf|text\/plain|audio\/(mpeg|ogg|wav|webm|mp4)|video\/(mp4|webm|ogg))$/;
          const type = inert.test(p.media_type) ? p.media_type : "application/octet-stream";
          const url = URL.createObjectURL(new Blob([p.content], { type }));
          const name = p.name || `${sub.id.slice(0, 8)}.bin`;
          return h("div", { class: "submitted-file" },
            /^image\/(png|jpeg|gif|webp)$/.test(type) ? h("img", { src: url, alt: name, class: "preview-image" }) : null,
            h("a", { href: url, download: name, dir: "auto" }, name), ` (${formatSize(p.size)})`);
        }));
        status("");
      } catch (err) {
        fill(where, h("p", { class: "status error" }, t("submissionBroken")));
        fail(err);
      }
    };
    fill(dropBox,
      h("h3", { id: "drop-h" }, t("dropBoxes")),
      h("p", { class: "muted" }, t("dropBoxesExplain")),
      list.key === "foreign" ? h("p", { class: "status error", id: "drop-key-warning" }, t("dropKeyForeign")) : null,
      list.key === "stale" ? h("p", { class: "status warning" }, t("dropKeyStale")) : null,
      list.key === "unknown" && list.boxes.length ? h("p", { class: "muted" }, t("dropKeyUnknown")) : null,
      manager ? h("details", { id: "drop-form-box" }, h("summary", {}, t("openDropBox")),
        h("form", { id: "drop-form", onsubmit: (e) => {
          e.preventDefault();
          act(async () => {
            const box = await client.openDropBox(space, label.value, Number(days.value), Number(quota.value) * 1024 * 1024);
            fill(made, h("p", {}, t("dropLinkMade")), linkField(box.fragment));
          });
        } },
          field(t("dropLabel"), label), field(t("dropDays"), days), field(t("dropQuota"), quota),
          h("button", { type: "submit" }, t("openDropBox")))) : null,
      made,
      list.boxes.length ? null : h("p", { class: "muted" }, t("noDropBoxes")),
      h("ul", { id: "drop-list" }, list.boxes.map((b) => {
        const open = !b.closed && b.expires > now;
        const state = b.closed ? t("dropClosed") : open ? t("dropUntil", { date: when(b.expires) }) : t("dropExpired");
        return h("li", { "data-box": b.id },
          h("strong", { dir: "auto" }, b.label || t("dropNoLabel")), " — ", state, " · ",
          t("dropUsed", { used: formatSize(b.used), quota: formatSize(b.quota) }),
          open && b.fragment ? linkField(b.fragment) : null,
          open && manager ? h("button", { type: "button", class: "close-drop", onclick: () => act(() => client.closeDropBox(space, b.id)) }, t("closeDropBox")) : null,
          b.submissions.length ? h("ul", { class: "submissions" }, b.submissions.map((sub) => {
            const where = openedSubmissions.get(sub.id) || h("div", { class: "opened" });
            openedSubmissions.set(sub.id, where);
            const size = sub.parts.reduce((n, p) => n + p.size, 0);
            return h("li", { "data-submission": sub.id },
              t("submissionAt", { date: when(sub.at) }), ` · ${formatSize(size)} · `,
              h("button", { type: "button", class: "open-submission", onclick: () => openOne(sub, where) }, t("openSubmission")),
              where);
          })) : h("p", { class: "muted" }, t("noSubmissions")));
      })));
  };
  const recordsLink = h("section", { id: "records-link", "aria-labelledby": "records-h" },
    h("h3", { id: "records-h" }, t("records")), h("p", { class: "muted" }, t("recordsExplain")),
    h("p", {}, h("a", { href: `#/records/${space}`, class: "button secondary" }, t("openRecords"))));
  main.append(h("p", {}, h("a", { href: "#/", class: "back" }, t("back"))), profileBox, h("div", { class: "columns" }, libraryBox, membersBox), discussionsBox, recordsLink, dropBox, listingBox);
  drawListing();
  drawDropBoxes();
  // Requests to join and drop-box submissions arrive through the server
  // only: the page asks again every 15 s (requests: managers only).
  const asking = setInterval(() => {
    if (!listingBox.querySelector("details[open], select:focus")) drawListing();
    if (!dropBox.querySelector("details[open], input:focus")) drawDropBoxes();
  }, 15000);
  onCleanup(() => clearInterval(asking));
  drawProfile();
  drawMembers();
  drawLibrary();
  drawDiscussions();
  drawInterrupted();
  client.sync(space).catch(() => {});
  const onChanged = (e) => { if (e.detail.space === space) { drawLibrary(); drawProfile(); drawDiscussions(); } };
  const onMembers = (e) => { if (e.detail.space === space) { drawMembers(); drawProfile(); } };
  listen("changed", onChanged);
  listen("members", onMembers);
}

/** Buttons that put `@user` for each other member of the space into `input`
 * where the caret is (mentions are offered from the members only). */
function mentionChips(space, input) {
  let users = [];
  try {
    users = [...new Set(client.device.members(space).map((m) => m.user))].filter((u) => u !== client.user);
  } catch (_) {
    /* removed */
  }
  if (!users.length) return null;
  return h("p", { class: "mentions", role: "group", "aria-label": t("mentionHint") }, `${t("mentionHint")}: `,
    users.map((u) => h("button", { type: "button", class: "mention-chip", "data-user": u, onclick: () => {
      const at = input.selectionStart ?? input.value.length;
      const before = input.value.slice(0, at);
      const insert = `${before && !/\s$/.test(before) ? " " : ""}@${u} `;
      input.value = before + insert + input.value.slice(input.selectionEnd ?? at);
      input.dispatchEvent(new Event("input")); // kept as a draft like typing
      input.focus();
      input.selectionStart = input.selectionEnd = at + insert.length;
    } }, `@${u}`)));
}

/** A post's or comment's text with the mentions the engine found marked. */
function withMentions(text, mentions) {
  const names = new Set(mentions);
  const out = [];
  let last = 0;
  for (const m of text.matchAll(/@([a-z0-9][a-z0-9._-]*)/g)) {
    const name = m[1].replace(/[._-]+$/, "");
    if (!names.has(name)) continue;
    out.push(text.slice(last, m.index), h("mark", { class: "mention", "data-user": name, dir: "ltr" }, `@${name}`));
    last = m.index + 1 + name.length;
  }
  out.push(text.slice(last));
  return out;
}

/** A time as the writer's device gave it, in the reader's language and
 * time zone; nothing when the writer gave none. */
function timeOf(ms) {
  return ms === undefined ? null
    : h("time", { datetime: new Date(ms).toISOString(), class: "muted" },
      new Intl.DateTimeFormat(language(), { dateStyle: "medium", timeStyle: "short" }).format(new Date(ms)));
}

function discussionView(main, space, stream) {
  if (!client.device.has_space(space)) {
    main.append(h("p", { class: "warning" }, t("notInSpace")));
    return;
  }
  let read;
  try {
    read = client.device.discussion(space, stream);
  } catch (_) {
    client.sync(space).then(() => render()).catch(() => {});
    main.append(h("p", {}, t("working")));
    return;
  }
  const summary = client.device.spaces().find((x) => x.id === space);
  const readOnly = Boolean(summary?.read_only);
  const postsBox = h("ol", { id: "posts", class: "posts" });
  const entries = () => {
    try {
      return client.device.library(space).filter((e) => e.kind === "document" || e.kind === "file");
    } catch (_) {
      return [];
    }
  };
  const attachment = (id) => {
    const e = entries().find((x) => x.id === id);
    if (!e) return h("li", { class: "muted" }, t("attachmentGone"));
    return h("li", { "data-attachment": id }, e.kind === "document"
      ? h("a", { href: `#/doc/${space}/${id}`, dir: "auto" }, e.name)
      : h("button", { type: "button", class: "link file-link", "data-file": id, onclick: () => download(space, e, progress, progressText) }, `${e.name} (${formatSize(e.size)})`));
  };
  const progress = h("progress", { id: "progress", max: 1, value: 0, hidden: true });
  const progressText = h("span", { id: "progress-text", role: "status", "aria-live": "polite" });
  // A post form: its text, the member chips, what to attach.
  const postForm = (id, label, send, initial = "") => {
    const text = h("textarea", { name: "text", required: true, rows: 3, dir: "auto", maxlength: 20000 }, initial);
    const attach = h("select", { name: "attach", multiple: true, size: 1 }, entries().map((e) => h("option", { value: e.id }, e.name)));
    return h("form", { class: "post-form", id, onsubmit: async (e) => {
      e.preventDefault();
      status(t("working"));
      try {
        await send(text.value, [...attach.selectedOptions].map((o) => o.value));
        text.value = "";
        status("");
        draw(true);
      } catch (err) { fail(err); }
    } }, field(label, text), mentionChips(space, text),
    initial || !entries().length ? null : field(t("attach"), attach),
    h("button", { type: "submit" }, t("sendPost")));
  };
  const byId = (posts) => new Map(posts.map((p) => [p.id, p]));
  const draw = (force) => {
    // A reply or an edit being typed is not drawn over.
    if (!force && [...postsBox.querySelectorAll("details[open] textarea")].some((x) => x.value)) return;
    try {
      read = client.device.discussion(space, stream);
    } catch (err) { return fail(err); }
    const posts = byId(read.posts);
    const item = (p) => h("li", { class: "post", "data-post": p.id, "data-author": p.author },
      h("p", { class: "post-meta" }, h("strong", {}, authorName(p)), " ", timeOf(p.at_ms),
        p.reply_to && posts.has(p.reply_to) ? h("span", { class: "muted reply-to" }, ` · ${t("inReplyTo", { author: posts.get(p.reply_to).author })}`) : null,
        p.author !== p.by ? h("span", { class: "warning edited-by-other" }, ` · ${t("editedByOther", { author: p.author, by: p.by })}`)
          : p.edited_ms !== undefined ? h("span", { class: "muted edited" }, ` · ${t("edited")}`) : null),
      h("p", { class: "post-text", dir: "auto" }, withMentions(p.text, p.mentions)),
      p.attachments.length ? h("ul", { class: "attachments" }, p.attachments.map(attachment)) : null,
      readOnly ? null : h("details", { class: "reply" }, h("summary", {}, t("reply")),
        postForm(null, t("postText"), (text, attach) => client.post(space, stream, p.id, text, attach))),
      !readOnly && p.by === client.user && p.by_verified ? h("details", { class: "edit-post" }, h("summary", {}, t("editPost")),
        postForm(null, t("postText"), (text) => client.editPost(space, stream, p.id, text), p.text)) : null,
      // Replies under the post they answer (one level: a reply to a reply
      // goes under the same first post).
      p.reply_to ? null : (() => {
        const replies = read.posts.filter((r) => r.reply_to && rootOf(r) === p.id);
        return replies.length ? h("ol", { class: "replies" }, replies.map(item)) : null;
      })());
    const rootOf = (p) => {
      let at = p;
      for (let n = 0; at.reply_to && posts.has(at.reply_to) && n < read.posts.length; n++) at = posts.get(at.reply_to);
      return at.id;
    };
    fill(postsBox, read.posts.filter((p) => !p.reply_to || !posts.has(p.reply_to)).map(item));
    client.seen(space, stream);
  };
  main.append(...[
    h("p", {}, h("a", { href: `#/space/${space}`, class: "back" }, t("back"))),
    readOnly ? h("p", { id: "read-only", class: "warning", role: "status" }, t(summary?.removed ? "removed" : "readerOnly")) : null,
    h("h2", { id: "thread-title", dir: "auto" }, read.title),
    postsBox, progress, progressText,
    readOnly ? null : postForm("new-post", t("postText"), (text, attach) => client.post(space, stream, "", text, attach)),
  ].filter(Boolean));
  draw(true);
  const onChanged = (e) => { if (e.detail.space === space && (e.detail.streams.includes(stream) || !e.detail.streams.length)) draw(false); };
  listen("changed", onChanged);
}

// ---------------------------------------------------------- case records

/** Built-in violation types, professions, genders and statuses: their
 * codes are the core's (`monitoring`), their words the interface's. */
const RECORD_LISTS = {
  profession: ["lawyer", "defender", "journalist", "judge", "trainee", "other"],
  gender: ["woman", "man", "non_binary", "undisclosed"],
  status: ["open", "ongoing", "closed"],
};
const RECORD_DIMS = ["country", "region", "type", "year", "gender", "status", "profession"];

function countryName(code) {
  try {
    return new Intl.DisplayNames([language()], { type: "region" }).of(code) || code;
  } catch (_) {
    return code;
  }
}

/** A value of a record's field as people read it. */
function recordValue(dim, value, added = []) {
  if (!value) return dim === "region" ? t("noRegion") : "—";
  if (dim === "country") return countryName(value);
  if (dim === "type") {
    const said = t(`vt_${value}`);
    return added.find((x) => x.code === value)?.label || (said === `vt_${value}` ? value : said);
  }
  if (dim === "profession" || dim === "gender" || dim === "status") return t(`${dim}_${value}`);
  return value;
}

/** Case records (PROTOCOL §9.7): a form, the list with filters and
 * sorting, the counts computed on this device with CSV exports, and, for
 * space managers, a publication of counts for the public map, shown
 * before it goes. */
function recordsView(main, space) {
  const summary = client.device.spaces().find((s) => s.id === space);
  if (!summary) return spacesView(main);
  const manager = summary.role === "space_manager" && !summary.read_only;
  const readOnly = Boolean(summary.read_only) || summary.role === "reader";
  const formBox = h("section", { id: "record-form-box", "aria-labelledby": "record-form-h" });
  const listBox = h("section", { id: "record-list", "aria-labelledby": "record-list-h" });
  const countsBox = h("section", { id: "record-counts", "aria-labelledby": "record-counts-h" });
  const publishBox = h("section", { id: "publish-counts", "aria-labelledby": "publish-counts-h" });
  const typesBox = h("section", { id: "record-types", "aria-labelledby": "record-types-h" });
  const filters = { country: "", type: "", year: "", status: "", sort: "date" };
  let editing = null; // the record being edited, or null for a new one
  const codes = country_codes().sort((a, b) => countryName(a).localeCompare(countryName(b), language()));
  const read = () => client.device.records(space);

  const drawForm = (reg) => {
    const r = editing || { date: "", country: "", region: "", types: [], profession: "lawyer", gender: "undisclosed", status: "open", outcome: "", sources: [], notes: "" };
    const date = h("input", { name: "date", required: true, value: r.date, placeholder: t("recordDateFormat"), dir: "ltr", "aria-describedby": "record-date-hint" });
    const country = h("select", { name: "country", required: true },
      h("option", { value: "" }, "—"), codes.map((c) => h("option", { value: c, selected: c === r.country }, `${countryName(c)} (${c})`)));
    const region = h("input", { name: "region", value: r.region, placeholder: "FR-75", dir: "ltr", maxlength: 6, "aria-describedby": "record-region-hint" });
    const types = h("fieldset", { class: "checks", id: "record-types-field" }, h("legend", {}, t("recordTypes")),
      reg.types.map((code) => h("label", { class: "check" },
        h("input", { type: "checkbox", name: "types", value: code, checked: r.types.includes(code) }), " ", recordValue("type", code, reg.added_types))));
    const select = (name) => h("select", { name }, RECORD_LISTS[name].map((v) => h("option", { value: v, selected: r[name] === v }, t(`${name}_${v}`))));
    const entries = (() => {
      try {
        return client.device.library(space).filter((e) => e.kind === "document" || e.kind === "file");
      } catch (_) {
        return [];
      }
    })();
    const sources = h("select", { name: "sources", multiple: true, size: Math.min(6, Math.max(2, entries.length)) },
      entries.map((e) => h("option", { value: e.id, selected: r.sources.includes(e.id) }, e.name)));
    const outcome = h("input", { name: "outcome", value: r.outcome, maxlength: 500 });
    const notes = h("textarea", { name: "notes", rows: 4 }, r.notes);
    const error = h("p", { id: "record-error", class: "error", role: "alert" });
    const form = h("form", { id: "record-form", novalidate: true, onsubmit: (e) => {
      e.preventDefault();
      const fields = {
        date: date.value.trim(), country: country.value, region: region.value.trim().toUpperCase(),
        types: [...form.querySelectorAll("input[name=types]:checked")].map((x) => x.value),
        profession: form.profession.value, gender: form.gender.value, status: form.status.value,
        outcome: outcome.value, sources: [...sources.selectedOptions].map((o) => o.value), notes: notes.value,
      };
      try {
        // Only what this form changed is written: a field another member
        // changed since the form was opened keeps their value.
        const { date: d, country: c, region: g, types: ty, profession: p, gender: ge, status: st, outcome: o, sources: so, notes: n } = editing || {};
        const before = { date: d, country: c, region: g, types: ty, profession: p, gender: ge, status: st, outcome: o, sources: so, notes: n };
        if (editing) client.device.edit_record(space, editing.id, before, fields);
        else client.device.new_record(space, fields);
        client.edited();
        error.textContent = "";
        status(t(editing ? "recordSaved" : "recordAdded"));
        editing = null;
        draw();
      } catch (err) {
        // Said next to the form, and nothing of what was typed is lost.
        fail(err);
        error.textContent = document.getElementById("status").textContent;
      }
    } },
      field(t("recordDate"), date), h("p", { id: "record-date-hint", class: "hint" }, t("recordDateHint")),
      field(t("country"), country),
      field(t("region"), region), h("p", { id: "record-region-hint", class: "hint" }, t("recordRegionHint")),
      types,
      field(t("profession"), select("profession")), field(t("gender"), select("gender")), field(t("recordStatus"), select("status")),
      field(t("recordOutcome"), outcome),
      entries.length ? field(t("recordSources"), sources) : null,
      field(t("recordNotes"), notes),
      error,
      h("button", { type: "submit" }, t(editing ? "saveRecord" : "addRecord")),
      editing ? [" ", h("button", { type: "button", class: "secondary", onclick: () => { editing = null; draw(); } }, t("cancel"))] : null);
    fill(formBox, h("h3", { id: "record-form-h" }, t(editing ? "editRecord" : "newRecord")),
      h("p", { class: "muted" }, t("recordsPrivacy")), form);
    if (editing) date.focus();
  };

  const drawList = (reg) => {
    const present = (f) => [...new Set(reg.records.flatMap((r) => (f === "type" ? r.types : f === "year" ? [r.date.slice(0, 4)] : [r[f]])))].sort();
    const pick = (name, label, values, show) => h("div", { class: "field" }, h("label", { for: `rf-${name}` }, label),
      h("select", { id: `rf-${name}`, onchange: (e) => { filters[name] = e.target.value; drawList(reg); document.getElementById(`rf-${name}`)?.focus(); } },
        name === "sort" ? null : h("option", { value: "" }, t("all")),
        values.map((v) => h("option", { value: v, selected: filters[name] === v }, show(v)))));
    const shown = reg.records.filter((r) => (!filters.country || r.country === filters.country)
      && (!filters.type || r.types.includes(filters.type)) && (!filters.year || r.date.startsWith(filters.year))
      && (!filters.status || r.status === filters.status));
    const by = { date: (a, b) => b.date.localeCompare(a.date), country: (a, b) => countryName(a.country).localeCompare(countryName(b.country), language()) || b.date.localeCompare(a.date), status: (a, b) => a.status.localeCompare(b.status) || b.date.localeCompare(a.date) }[filters.sort];
    shown.sort(by);
    fill(listBox, h("h3", { id: "record-list-h" }, t("recordList"), ` (${shown.length}/${reg.records.length})`),
      reg.records.length ? h("div", { class: "filters" },
        pick("country", t("country"), present("country"), (v) => countryName(v)),
        pick("type", t("recordType"), present("type"), (v) => recordValue("type", v, reg.added_types)),
        pick("year", t("year"), present("year"), (v) => v),
        pick("status", t("recordStatus"), present("status"), (v) => t(`status_${v}`)),
        pick("sort", t("sortBy"), ["date", "country", "status"], (v) => t(`sort_${v}`))) : h("p", { class: "muted" }, t("noRecords")),
      shown.length ? h("div", { class: "table-wrap" }, h("table", { id: "records-table" },
        h("thead", {}, h("tr", {}, [t("recordDate"), t("country"), t("recordTypes"), t("profession"), t("gender"), t("recordStatus"), t("recordBy"), ""].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, shown.map((r) => h("tr", { "data-record": r.id },
          h("td", { dir: "ltr" }, r.date),
          h("td", {}, countryName(r.country), r.region ? ` · ${r.region}` : ""),
          h("td", {}, r.types.map((x) => recordValue("type", x, reg.added_types)).join(", ")),
          h("td", {}, t(`profession_${r.profession}`)), h("td", {}, t(`gender_${r.gender}`)),
          h("td", {}, t(`status_${r.status}`), r.outcome ? h("div", { class: "muted", dir: "auto" }, r.outcome) : null),
          h("td", {}, r.by, r.by_verified ? "" : ` (${t("unverified")})`),
          h("td", {}, readOnly ? null : [
            h("button", { type: "button", class: "link edit-record", onclick: () => { editing = r; drawForm(reg); formBox.scrollIntoView(); } }, t("edit")), " ",
            confirmingButton({ class: "link remove-record" }, t("remove"), t("removeRecordConfirm"), async () => {
              try {
                client.device.remove_record(space, r.id);
                client.edited();
                status(t("recordRemoved"));
                if (editing?.id === r.id) editing = null;
                draw();
              } catch (err) { fail(err); }
            })])))))) : null);
  };

  const download = (name, text) => {
    const a = h("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" })), download: name });
    document.body.append(a);
    a.click();
    a.remove();
  };

  const drawCounts = (reg) => {
    const dims = ["country", "region", "type", "year", "gender", "status", "profession"];
    fill(countsBox, h("h3", { id: "record-counts-h" }, t("recordCounts")),
      h("p", { class: "muted" }, t("recordCountsExplain")),
      reg.records.length ? h("div", { class: "counts" }, dims.map((d) => {
        const values = (reg.counts.find((c) => c.dim === d)?.values || []).map((v) => [v.value, v.count]).sort((a, b) => b[1] - a[1]);
        const max = Math.max(1, ...values.map((v) => v[1]));
        return h("table", { class: "count-table", "data-dim": d },
          h("caption", {}, t(d === "type" ? "recordType" : d === "status" ? "recordStatus" : d)),
          h("tbody", {}, values.map(([v, n]) => h("tr", { "data-value": v },
            h("th", { scope: "row" }, recordValue(d, v, reg.added_types)),
            h("td", { class: "n" }, String(n)),
            h("td", { class: "bar" }, h("meter", { min: 0, max, value: n, "aria-hidden": "true" }))))));
      })) : null,
      h("p", {},
        h("button", { type: "button", id: "export-records", class: "secondary", disabled: !reg.records.length, onclick: () => download("records.csv", client.device.records_csv(space, false)) }, t("exportRecords")), " ",
        h("button", { type: "button", id: "export-counts", class: "secondary", disabled: !reg.records.length, onclick: () => download("counts.csv", client.device.records_csv(space, true)) }, t("exportCounts"))));
  };

  const drawTypes = (reg) => {
    if (!manager) return fill(typesBox);
    const code = h("input", { name: "code", required: true, pattern: "[a-z0-9_]{2,40}", dir: "ltr" });
    const label = h("input", { name: "label", required: true, maxlength: 200 });
    fill(typesBox, h("details", {}, h("summary", { id: "record-types-h" }, t("addType")),
      h("p", { class: "muted" }, t("addTypeHelp")),
      reg.added_types.length ? h("ul", {}, reg.added_types.map((x) => h("li", {}, h("code", {}, x.code), " — ", x.label))) : null,
      h("form", { id: "type-form", onsubmit: (e) => {
        e.preventDefault();
        try {
          client.device.add_violation_type(space, code.value.trim(), label.value);
          client.edited();
          status(t("typeAdded"));
          draw();
        } catch (err) { fail(err); }
      } }, field(t("typeCode"), code), field(t("typeLabel"), label), h("button", { type: "submit" }, t("addType")))));
  };

  // Publishing counts for the public map: space managers, into a public
  // space where they have a role; what goes is shown first, then a
  // confirmation names the public space.
  const drawPublish = (reg) => {
    if (!manager) return fill(publishBox);
    fill(publishBox, h("h3", { id: "publish-counts-h" }, t("publishCounts")), h("p", { class: "muted" }, t("publishCountsHelp")));
    client.api("GET", "/v1/spaces").then((v) => {
      const mine = (v.spaces || []).filter((x) => x.kind === "public" && x.role);
      if (!mine.length) return publishBox.append(h("p", { class: "muted" }, t("noPublishRole")));
      const nameOf = (id) => mine.find((x) => x.id === id)?.name || id;
      const target = h("select", { name: "space" }, mine.map((x) => h("option", { value: x.id }, x.name || x.id)));
      const title = h("input", { name: "title", required: true, maxlength: 200, value: t("publishCountsDefaultTitle") });
      const id = h("input", { name: "publication", required: true, pattern: "[a-z0-9][a-z0-9._\\-]{0,63}", value: "violations", dir: "ltr" });
      const place = h("select", { name: "place" }, h("option", { value: "country" }, t("country")), h("option", { value: "region" }, t("countryAndRegion")));
      const dims = h("fieldset", { class: "checks" }, h("legend", {}, t("publishBy")),
        ["type", "year", "gender", "status", "profession"].map((d) => h("label", { class: "check" },
          h("input", { type: "checkbox", name: "dims", value: d, checked: d === "year" }), " ", t(d === "type" ? "recordType" : d === "status" ? "recordStatus" : d))));
      const k = h("input", { type: "number", name: "k", min: 2, max: 1000, value: 5, required: true, "aria-describedby": "k-hint" });
      const preview = h("div", { id: "publish-counts-preview", "aria-live": "polite" });
      const chosenDims = () => [...(place.value === "region" ? ["country", "region"] : ["country"]), ...[...dims.querySelectorAll("input:checked")].map((x) => x.value)];
      publishBox.append(h("form", { id: "publish-counts-form", onsubmit: (e) => {
        e.preventDefault();
        let a;
        // What is shown is what goes: the choices are kept as they were
        // when the preview was made.
        const chosen = { space: target.value, id: id.value, title: title.value, dims: chosenDims(), k: Number(k.value) };
        try {
          a = client.device.aggregate(space, chosen.title, chosen.dims, chosen.k);
        } catch (err) {
          fill(preview);
          return fail(err);
        }
        fill(preview,
          h("h4", {}, t("publishPreview")),
          h("div", { class: "table-wrap" }, h("table", { id: "aggregate-preview" },
            h("thead", {}, h("tr", {}, a.dims.map((d) => h("th", { scope: "col" }, t(d === "type" ? "recordType" : d === "status" ? "recordStatus" : d))), h("th", { scope: "col", class: "n" }, t("cases")))),
            h("tbody", {}, a.cells.map((c) => h("tr", {}, c.values.map((v, i) => h("td", {}, recordValue(a.dims[i], v, reg.added_types))), h("td", { class: "n" }, String(c.count))))))),
          h("p", { id: "suppressed-note" }, tn("cellsLeftOut", a.suppressed, { k: a.k })),
          h("p", { class: "warning" }, t("publishCountsConfirm", { space: nameOf(chosen.space) })),
          h("button", { type: "button", id: "confirm-publish-counts", onclick: async () => {
            try {
              // The register's signed heads go to the server first, for
              // members to check.
              await client.flush(space, reg.stream);
              const body = JSON.parse(client.device.publish_aggregate(space, chosen.space, chosen.id, chosen.title, chosen.dims, chosen.k));
              // Records that arrived since the preview change the counts:
              // nothing goes that was not shown.
              if (JSON.stringify(body.aggregate.cells) !== JSON.stringify(a.cells) || body.aggregate.suppressed !== a.suppressed) {
                fill(preview);
                return status(t("countsChanged"), "warning");
              }
              await client.api("PUT", `/v1/public/${chosen.space}/aggregates/${chosen.id}`, body);
              fill(preview, h("p", { role: "status", id: "counts-published" }, t("countsPublished"), " ",
                h("a", { href: `/map/#${chosen.space}/${chosen.id}`, target: "_blank", rel: "noopener" }, t("openMap"))));
            } catch (err) { fail(err); }
          } }, t("publishTo", { space: nameOf(chosen.space) })), " ",
          h("button", { type: "button", onclick: () => fill(preview) }, t("cancel")));
      } },
        field(t("publicSpaces"), target), field(t("publicationTitle"), title), field(t("publicationId"), id),
        field(t("publishPlace"), place), dims, field(t("kThreshold"), k), h("p", { id: "k-hint", class: "hint" }, t("kHint")),
        h("button", { type: "submit" }, t("previewPublication"))), preview);
    }).catch(() => publishBox.append(h("p", { class: "muted" }, t("offline"))));
  };

  const draw = () => {
    let reg;
    try {
      reg = read();
    } catch (err) {
      return fail(err);
    }
    if (!readOnly) drawForm(reg);
    drawList(reg);
    drawCounts(reg);
    drawTypes(reg);
  };
  main.append(h("p", {}, h("a", { href: `#/space/${space}`, class: "back" }, t("back"))),
    h("h2", {}, t("records"), " — ", h("span", { dir: "auto" }, spaceLabel(space))),
    readOnly ? h("p", { class: "warning" }, t("readerOnly")) : null,
    formBox, listBox, countsBox, typesBox, publishBox);
  draw();
  drawPublish(read());
  // What others write arrives live; the form is not redrawn under the
  // person typing in it.
  listen("changed", (e) => {
    if (e.detail.space !== space) return;
    let reg;
    try {
      reg = read();
    } catch (_) {
      return;
    }
    drawList(reg);
    drawCounts(reg);
  });
}

function activityView(main) {
  const box = h("section", { id: "activity", "aria-labelledby": "activity-h" });
  const draw = () => {
    const items = activityItems();
    const spaces = [...new Set(items.map((i) => i.space))];
    const describe = (i) => [
      i.kind === "library" ? null : (i.new ? t("activityNew") : t("activityChangedBy", { names: i.by.join(", ") })),
      i.kind === "library" && i.added.length ? t("activityAdded", { names: i.added.join(", ") }) : null,
      i.kind === "library" && !i.added.length ? t("activityChangedBy", { names: i.by.join(", ") }) : null,
      i.posts ? tn("activityPosts", i.posts) : null,
      i.mentions ? tn("activityMentions", i.mentions) : null,
    ].filter(Boolean).join(" · ");
    const href = (i) => i.kind === "filing" ? `#/doc/${i.space}/${i.id}` : i.kind === "discussion" ? `#/thread/${i.space}/${i.id}` : `#/space/${i.space}`;
    fill(box, h("h2", { id: "activity-h" }, t("activity")),
      items.length
        ? spaces.map((sp) => h("section", { class: "activity-space", "data-space": sp },
            h("h3", { dir: "auto" }, h("a", { href: `#/space/${sp}` }, spaceLabel(sp))),
            h("ul", {}, items.filter((i) => i.space === sp).map((i) => h("li", { class: `activity-item ${i.kind}`, "data-id": i.id, "data-kind": i.kind, "data-mentions": i.mentions, "data-posts": i.posts },
              h("a", { href: href(i), dir: "auto" }, i.kind === "library" ? t("library") : i.title || "—"), " — ", describe(i))))))
        : h("p", { id: "nothing-new" }, t("nothingNew")),
      items.length ? h("button", { type: "button", id: "mark-all-seen", onclick: () => {
        for (const i of items) client.seen(i.space, i.id);
        draw();
      } }, t("markAllSeen")) : null);
  };
  main.append(box);
  draw();
  listen("changed", draw);
}

/** Browser notices while the tab is open in the background (the
 * Notification API): they say only that something is new. */
function browserNoticeSection() {
  const box = h("section", { id: "browser-notices" }, h("h3", {}, t("browserNotices")), h("p", { class: "muted" }, t("browserNoticesExplain")));
  if (!("Notification" in window)) return box;
  const state = h("p", { class: "muted", role: "status" });
  const show = () => {
    state.textContent = Notification.permission === "granted" ? t("browserNoticesActive")
      : Notification.permission === "denied" ? t("browserNoticesDenied") : "";
  };
  show();
  box.append(state, Notification.permission === "default" ? h("button", { type: "button", id: "notices-on", onclick: async (e) => {
    await Notification.requestPermission();
    e.target.hidden = Notification.permission !== "default";
    show();
  } }, t("browserNoticesOn")) : null);
  return box;
}

function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

async function download(space, entry, progress, progressText) {
  progress.hidden = false;
  try {
    const { blob, name } = await client.download(space, entry.current || entry.id, (done, total) => {
      progress.max = total;
      progress.value = done;
      progressText.textContent = `${t("downloading")} ${done}/${total}`;
    });
    progressText.textContent = `${t("downloading")}: ${t("done")}`;
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 60000);
  } catch (err) {
    fail(err);
  }
}

/** The files the browser previews: images, PDFs and plain text. */
const PREVIEW_MAX = 20 * 1024 * 1024;
/** How many of a PDF's pages a preview draws. */
const PDF_PREVIEW_PAGES = 3;
function isPdf(e) {
  return e.media_type === "application/pdf" || /\.pdf$/i.test(e.name);
}
function previewable(e) {
  const type = e.media_type || "";
  return e.size <= PREVIEW_MAX && (type.startsWith("image/") || type.startsWith("text/") || isPdf(e) || /\.(txt|md|csv)$/i.test(e.name));
}

/** A canvas holding `image` (an ImageBitmap or ImageData). */
function previewCanvas(image, label) {
  const canvas = h("canvas", { class: "preview-image", width: image.width, height: image.height, role: "img", "aria-label": label });
  const context = canvas.getContext("2d");
  if (image instanceof ImageData) context.putImageData(image, 0, 0);
  else context.drawImage(image, 0, 0);
  return canvas;
}

/** Shows a file in `box`, decrypted in memory only: an image drawn on a
 * canvas (no URL of it exists, and nothing is written anywhere), a PDF's
 * first pages drawn by the preview worker, or the beginning of a text.
 * Shown again, it closes. */
async function preview(space, e, box) {
  if (box.childNodes.length) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(h("p", { class: "muted" }, t("working")));
  try {
    const { blob } = await client.download(space, e.current || e.id, () => {});
    if ((e.media_type || "").startsWith("image/")) {
      const image = await createImageBitmap(blob);
      const canvas = previewCanvas(image, e.name);
      image.close();
      box.replaceChildren(canvas);
    } else if (isPdf(e)) {
      // Drawn for the screen the person has (a phone's width too), sharp
      // on dense screens.
      const width = Math.round(Math.min(box.clientWidth || 800, 900) * Math.min(window.devicePixelRatio || 1, 2));
      const { total, pages } = await drawPdf(blob, PDF_PREVIEW_PAGES, width);
      box.replaceChildren(
        ...pages.map((page, i) => previewCanvas(page, t("pdfPage", { page: i + 1, total, name: e.name }))),
        total > pages.length ? h("p", { class: "muted" }, tn("pdfMorePages", total - pages.length)) : null,
      );
    } else {
      const text = await blob.slice(0, 64 * 1024).text();
      box.replaceChildren(h("pre", { class: "preview-text", dir: "auto" }, text));
    }
  } catch (err) {
    box.replaceChildren();
    fail(err);
  }
}

// --------------------------------------------------------------- editor

function editorView(main, space, stream) {
  if (!client.device.has_space(space)) {
    main.append(h("p", { class: "warning" }, t("notInSpace")));
    return;
  }
  let filing;
  try {
    filing = client.device.read(space, stream);
  } catch (_) {
    client.sync(space).then(() => render()).catch(() => {});
    main.append(h("p", {}, t("working")));
    return;
  }
  const key = `${space}/${stream}`;
  const title = h("input", { id: "title", class: "title", value: filing.title, "aria-label": t("title") });
  const commentsBox = h("section", { id: "comments" });
  const versionsBox = h("section", { id: "versions" });
  const here = h("p", { id: "presence", class: "muted", role: "status", "aria-live": "polite" });

  // A time as the writer's device gave it, in the reader's language and
  // time zone; nothing when the writer gave none.
  const when = (item) => item.at_ms === undefined ? null
    : h("time", { datetime: new Date(item.at_ms).toISOString(), class: "muted" },
      new Intl.DateTimeFormat(language(), { dateStyle: "medium", timeStyle: "short" }).format(new Date(item.at_ms)));
  const summary = client.device.spaces().find((x) => x.id === space);
  const readOnly = Boolean(summary?.read_only);
  // The threads are drawn again only when they or their passages change;
  // a reply being typed keeps its text and its focus.
  const drafts = new Map();
  let commentsKey = "";
  const threadEdit = (thread, edit) => {
    try {
      edit();
      client.edited();
      refresh();
    } catch (err) { fail(err); }
  };
  const drawThread = (c, chars) => {
    const input = h("input", { name: "reply", "data-thread": c.thread, "aria-label": t("reply"), value: drafts.get(c.thread) || "",
      oninput: (e) => drafts.set(c.thread, e.target.value) });
    const replyForm = h("form", { class: "reply", onsubmit: (e) => {
      e.preventDefault();
      threadEdit(c.thread, () => {
        client.device.reply(space, stream, c.thread, input.value);
        drafts.delete(c.thread);
      });
    } }, input, h("button", { type: "submit" }, t("reply")));
    const toggleButton = h("button", { type: "button", class: "resolve", onclick: () =>
      threadEdit(c.thread, () => client.device.resolve(space, stream, c.thread, !c.resolved)) },
    t(c.resolved ? "reopen" : "resolve"));
    return h("li", { "data-thread": c.thread, class: c.resolved ? "resolved" : "" },
      h("q", {}, chars.slice(c.start, c.end).join("")), " ",
      c.resolved ? h("span", { class: "muted resolved-by" }, t("resolvedBy", { author: c.resolved_by ? authorName(c.resolved_by) : "?" })) : null,
      c.messages.map((m) => h("p", { dir: "auto" }, h("strong", { class: m.verified ? "" : "unverified" }, authorName(m)), " ", when(m), ": ", withMentions(m.text, mentions(m.text)))),
      readOnly ? null : h("div", { class: "thread-actions" }, c.resolved ? null : replyForm, toggleButton),
      readOnly || c.resolved ? null : mentionChips(space, input));
  };
  const drawComments = (f) => {
    const chars = Array.from(f.body);
    const key = JSON.stringify(f.comments.map((c) => [c, chars.slice(c.start, c.end).join("")]));
    if (key === commentsKey) return;
    commentsKey = key;
    const focused = document.activeElement?.getAttribute("data-thread");
    // Open threads first, resolved ones after.
    const threads = [...f.comments].sort((a, b) => Number(a.resolved) - Number(b.resolved));
    fill(commentsBox, h("h3", {}, t("comments")), threads.length
      ? h("ul", {}, threads.map((c) => drawThread(c, chars)))
      : h("p", { class: "muted" }, t("empty")));
    if (focused) commentsBox.querySelector(`input[data-thread="${focused}"]`)?.focus();
  };
  const drawVersions = (f) => {
    fill(versionsBox, h("h3", {}, t("versions")), f.versions.length
      ? h("ul", {}, f.versions.map((v) => h("li", {}, h("details", {}, h("summary", {}, `${v.name} — ${authorName(v)} `, when(v)), h("pre", { dir: "auto" }, v.body)))))
      : h("p", { class: "muted" }, t("empty")));
  };

  // Formats the selection, or removes the mark if all of it carries it.
  const toggle = (mark) => {
    const s = editor.selection();
    if (!s) return status(t("selectFirst"), "warning");
    try {
      const active = client.device.text(space, stream).marks.some((m) => m.mark === mark && m.start <= s[0] && m.end >= s[1]);
      client.device.format(space, stream, s[0], s[1], mark, !active);
      client.edited();
      editor.redraw();
    } catch (err) { fail(err); }
  };

  // The caret is announced at most once a second, the last position always.
  let lastSent = 0;
  let pending = null;
  const announce = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      lastSent = Date.now();
      const cursor = editor.caret();
      client.presence(space, cursor === null ? { doc: stream } : { doc: stream, cursor });
    }, Math.max(0, lastSent + 1000 - Date.now()));
  };

  const editor = createEditor({
    label: t("editor"),
    model: () => client.device.text(space, stream),
    splice: (at, removed, text) => client.device.splice(space, stream, at, removed, text),
    format: toggle,
    changed: () => {
      client.edited();
      drawComments(client.device.text(space, stream));
      announce();
    },
    moved: announce,
    failed: fail,
  });
  editor.refresh();
  drawComments(filing);
  drawVersions(filing);
  let versionsKey = JSON.stringify(filing.versions.map((v) => [v.name, v.author]));

  title.addEventListener("change", () => {
    try {
      client.device.set_title(space, stream, title.value);
      client.edited();
    } catch (err) { fail(err); }
  });

  // Edits from elsewhere: the editor keeps the caret where it was relative
  // to the text around it.
  // The versions (each rebuilt at its heads) are read again only when one
  // is added, which also keeps an opened one open while others type.
  const refresh = () => {
    const f = client.device.text(space, stream);
    editor.refresh();
    if (document.activeElement !== title && f.title !== title.value) title.value = f.title;
    drawComments(f);
    const key = JSON.stringify(client.device.versions(space, stream).map((v) => [v.name, v.author]));
    if (key !== versionsKey) {
      versionsKey = key;
      drawVersions(client.device.read(space, stream));
    }
  };

  const formatButton = (mark) => h("button", { type: "button", "data-mark": mark, title: t(`${mark}Key`), onmousedown: (e) => e.preventDefault(), onclick: () => toggle(mark) }, t(mark));

  const commentForm = h("form", { id: "comment-form", onsubmit: (e) => {
    e.preventDefault();
    const s = editor.selection();
    if (!s) return status(t("selectFirst"), "warning");
    try {
      client.device.comment(space, stream, s[0], s[1], e.target.text.value);
      e.target.text.value = "";
      client.edited();
      refresh();
    } catch (err) { fail(err); }
  } }, field(t("commentText"), h("input", { name: "text", required: true })), h("button", { type: "submit" }, t("comment")));

  const versionForm = h("form", { id: "version-form", onsubmit: (e) => {
    e.preventDefault();
    try {
      client.device.name_version(space, stream, e.target.name.value);
      e.target.name.value = "";
      client.edited();
      refresh();
    } catch (err) { fail(err); }
  } }, field(t("versionName"), h("input", { name: "name", required: true })), h("button", { type: "submit" }, t("nameVersion")));

  // Publishing the filing's current text with signed provenance, as a
  // deliberate act: a preview of exactly what becomes public, then a
  // confirmation naming the public space; a copy there can be withdrawn.
  // Offered only in public spaces where this user has a role. The public
  // copy's id is the stream's, so publishing again replaces it.
  const publishBox = h("section", { id: "publish-filing" }, h("h3", {}, t("publishFiling")));
  client.api("GET", "/v1/spaces").then((v) => {
    const publics = (v.spaces || []).filter((x) => x.kind === "public");
    const mine = publics.filter((x) => x.role);
    if (!publics.length) return publishBox.append(h("p", { class: "muted" }, t("noPublicSpace")));
    if (!mine.length) return publishBox.append(h("p", { class: "muted" }, t("noPublishRole")));
    const nameOf = (id) => mine.find((x) => x.id === id)?.name || id;
    const target = h("select", { name: "space" }, mine.map((x) => h("option", { value: x.id }, x.name || x.id)));
    const language = h("select", { name: "language" }, h("option", { value: "" }, t("detect")), SEARCH_LANGUAGES.map((l) => h("option", { value: l }, langName(l))));
    const copy = h("div", { id: "public-copy", "aria-live": "polite" });
    const preview = h("div", { id: "publish-preview" });
    // The copy already public in the chosen space, if any, with its
    // withdrawal.
    const drawCopy = async () => {
      const space_ = target.value;
      let record = null;
      try {
        const found = await client.api("GET", `/v1/public/${space_}/docs?id=${stream}`);
        record = (found.documents || [])[0] || null;
      } catch (_) {
        /* offline */
      }
      fill(copy, record ? [
        h("p", {}, t("publicCopyExists", { space: nameOf(space_) }), " ", h("a", { href: `#/public/${space_}/${stream}` }, t("openPublic"))),
        confirmingButton({ id: "withdraw-copy" }, t("withdrawCopy"), t("withdrawConfirm"), async () => {
          try {
            await client.api("DELETE", `/v1/public/${space_}/docs/${stream}`, client.device.withdrawal(space_, stream, record.updated));
            status(t("withdrawn"));
          } catch (err) { fail(err); }
          drawCopy();
        }),
      ] : []);
    };
    target.addEventListener("change", () => { fill(preview); drawCopy(); });
    publishBox.append(h("form", { id: "publish-form", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const space_ = target.value;
        // The signed heads go to the server first, for members to check.
        await client.flush(space, stream);
        const body = client.device.publication(space, stream, space_, stream, language.value);
        fill(preview,
          h("h4", {}, t("publishPreview")),
          h("article", { class: "public-preview" }, h("h5", { dir: "auto" }, body.title), h("div", { class: "public-body", dir: "auto" }, marked(body.body, body.marks))),
          h("p", { class: "warning" }, t("publishConfirmText", { space: nameOf(space_) })),
          h("button", { type: "button", id: "confirm-publish", onclick: async () => {
            try {
              await client.api("PUT", `/v1/public/${space_}/docs/${stream}`, body);
              fill(preview, h("p", { role: "status" }, t("published")));
              drawCopy();
            } catch (err) { fail(err); }
          } }, t("publishTo", { space: nameOf(space_) })), " ",
          h("button", { type: "button", id: "cancel-publish", onclick: () => fill(preview) }, t("cancel")));
      } catch (err) { fail(err); }
    } },
      h("p", { class: "muted" }, t("publishFilingHelp")),
      field(t("publicSpaces"), target),
      field(t("docLanguage"), language),
      h("button", { type: "submit" }, t("previewPublication")),
    ), preview, copy);
    drawCopy();
  }).catch(() => {});

  // Who is here, and where their caret is (announced within 15 seconds).
  const drawPresence = () => {
    const now = Date.now();
    const live = [...(presence.get(key) || new Map()).entries()].filter(([, p]) => now - p.at < 15000);
    const people = [...new Set(live.map(([, p]) => p.user))];
    const line = people.length ? `${t("present")}: ${people.join(", ")}` : "";
    if (here.textContent !== line) here.textContent = line;
    editor.showCarets(live.filter(([, p]) => Number.isInteger(p.cursor) && p.cursor >= 0).map(([device, p]) => ({ device, user: p.user, cursor: p.cursor })));
  };
  const beat = setInterval(() => { announce(); drawPresence(); }, 5000);

  // Where this browser may not write (removed, Reader), the filing is
  // shown read-only, with nothing offered that would be refused.
  if (readOnly) {
    title.readOnly = true;
    const text = editor.element.querySelector("#editor");
    text.setAttribute("contenteditable", "false");
    text.setAttribute("aria-readonly", "true");
  }
  main.append(...[
    h("p", {}, h("a", { href: `#/space/${space}`, class: "back" }, t("back"))),
    readOnly ? h("p", { id: "read-only", class: "warning", role: "status" }, t(summary?.removed ? "removed" : "readerOnly")) : null,
    title,
    readOnly ? null : h("div", { class: "toolbar", role: "toolbar", "aria-label": t("formatting"), "aria-controls": "editor" }, formatButton("bold"), formatButton("italic"), formatButton("underline")),
    here,
    h("div", { class: "columns" }, editor.element, h("aside", {}, readOnly ? null : commentForm, commentsBox, readOnly ? null : versionForm, versionsBox, readOnly ? null : publishBox)),
  ].filter(Boolean));
  drawPresence();
  client.seen(space, stream);
  const onChanged = (e) => {
    if (e.detail.space === space && (e.detail.streams.includes(stream) || !e.detail.streams.length)) {
      refresh();
      client.seen(space, stream);
    }
  };
  const onPresence = (e) => { if (e.detail.key === key) drawPresence(); };
  listen("changed", onChanged);
  listen("presence-changed", onPresence);
  onCleanup(() => {
    clearInterval(beat);
    clearTimeout(pending);
    editor.close();
  });
}

// --------------------------------------------------------------- search

const SEARCH_LANGUAGES = ["fr", "en", "ar", "de", "pt", "es", "nl", "sw", "ln", "rn", "lg"];

/** A language's name in the interface's language ("fr" is "French",
 * "français" or "الفرنسية"): ours for the four Bantu languages (browsers
 * name some of them in few languages, or as "Rundi" and "Ganda"), else the
 * browser's, else the code. */
function langName(code) {
  const own = t(`lang_${code}`);
  if (own !== `lang_${code}`) return own;
  try {
    return new Intl.DisplayNames([language()], { type: "language" }).of(code) || code;
  } catch (_) {
    return code;
  }
}

/** A server snippet (escaped HTML with <mark>) as DOM, without innerHTML. */
function snippet(html) {
  const out = [];
  const decode = (s) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&");
  const parts = html.split(/(<mark>|<\/mark>)/);
  let marked = false;
  for (const p of parts) {
    if (p === "<mark>") marked = true;
    else if (p === "</mark>") marked = false;
    else if (p) out.push(marked ? h("mark", {}, decode(p)) : document.createTextNode(decode(p)));
  }
  return out;
}

/** A public route read through the session when signed in, else without
 * an account (the server limits such reads per address). */
async function readPublic(path) {
  if (client) return client.api("GET", path);
  const res = await fetch(path);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ServerError(res.status, body.error || "error", body.message, body.reason);
  return body;
}

function searchView(main) {
  const results = h("section", { id: "results", "aria-live": "polite" });
  const langs = h("select", { name: "lang", "aria-label": t("language") },
    h("option", { value: "" }, t("allLanguages")),
    SEARCH_LANGUAGES.map((l) => h("option", { value: l }, langName(l))));
  // Public spaces by name, never by id.
  const spaceNames = new Map();
  const spaceName = (id) => spaceNames.get(id) || t("publicSpace");
  const loadNames = () => readPublic("/v1/public").then((v) => {
    for (const x of v.spaces || []) if (x.name) spaceNames.set(x.id, x.name);
  }).catch(() => {});
  const named = loadNames();
  const run = async (q, lang, extra = "") => {
    try {
      await named;
      const params = new URLSearchParams({ q, limit: "20" });
      if (lang) params.set("lang", lang);
      const r = await readPublic(`/v1/search?${params}${extra}`);
      // A public space made since the names were read: read them again.
      const shown = [...r.hits.map((hit) => hit.space), ...Object.keys(r.facets?.space || {})];
      if (shown.some((id) => !spaceNames.has(id))) await loadNames();
      fill(results, 
        h("p", {}, r.hits.length ? tn("results", r.total) : t("noResults")),
        h("ol", { class: "hits" }, r.hits.map((hit) => h("li", { class: "hit" },
          h("h4", { dir: "auto" }, h("a", { href: `#/public/${hit.space}/${hit.id}` }, hit.title)), h("p", { class: "snippet", dir: "auto", lang: hit.language || undefined }, snippet(hit.snippet || "")),
          h("p", { class: "muted" }, hit.language ? `${langName(hit.language)} · ` : "", h("span", { dir: "auto" }, spaceName(hit.space)))))),
        h("aside", { class: "facets" }, h("h4", {}, t("facets")),
          // A facet with no value is not drawn.
          Object.entries(r.facets || {}).filter(([, counts]) => Object.keys(counts).length).map(([name, counts]) => h("div", { class: "facet", "data-facet": name }, h("strong", {}, t(`facet_${name}`)), h("ul", {},
            Object.entries(counts).map(([value, n]) => h("li", {},
              name === "language"
                ? h("button", { type: "button", class: "link", "data-lang": value, onclick: () => { langs.value = value; run(q, value); } }, `${langName(value)} (${n})`)
                : name === "space" ? h("span", { dir: "auto" }, `${spaceName(value)} (${n})`)
                : `${value} (${n})`)))))),
      );
    } catch (err) {
      fail(err);
    }
  };
  const form = h("form", { id: "search", role: "search", onsubmit: (e) => { e.preventDefault(); run(e.target.q.value, langs.value); } },
    field(t("query"), h("input", { name: "q", type: "search", required: true, dir: "auto" })), langs, h("button", { type: "submit" }, t("search")));
  main.append(...[h("h2", {}, t("publicLibrary")), client ? null : h("p", { class: "muted", id: "reading-without-account" }, t("readingWithoutAccount")), form, results, client ? publishForms() : null].filter(Boolean));
}

function publishForms() {
  const box = h("section", { id: "publish" });
  const draw = async () => {
    let spaces = [];
    try {
      const v = await client.api("GET", "/v1/spaces");
      // Writing is offered only where this user has a role.
      spaces = (v.spaces || []).filter((s) => s.kind === "public" && s.role);
    } catch (_) { /* offline */ }
    fill(box, 
      h("h3", {}, t("publicSpaces")),
      h("form", { id: "new-public", onsubmit: async (e) => {
        e.preventDefault();
        try {
          const id = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
          await client.api("POST", "/v1/spaces", { id, kind: "public", name: e.target.name.value });
          draw();
        } catch (err) { fail(err); }
      } }, field(t("newPublicSpace"), h("input", { name: "name", required: true })), h("button", { type: "submit" }, t("create"))),
      spaces.length
        ? h("form", { id: "publish-doc", onsubmit: async (e) => {
            e.preventDefault();
            const f = e.target;
            try {
              const doc = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
              await client.api("PUT", `/v1/public/${f.space.value}/docs/${doc}`, { title: f.title.value, body: f.body.value, language: f.language.value || null });
              status(t("published"));
              f.reset();
            } catch (err) { fail(err); }
          } },
            h("h3", {}, t("publish")),
            field(t("publicSpaces"), h("select", { name: "space" }, spaces.map((s) => h("option", { value: s.id }, s.name || s.id)))),
            field(t("title"), h("input", { name: "title", required: true, dir: "auto" })),
            field(t("body"), h("textarea", { name: "body", required: true, dir: "auto" })),
            field(t("docLanguage"), h("select", { name: "language" }, h("option", { value: "" }, "—"), SEARCH_LANGUAGES.map((l) => h("option", { value: l }, langName(l))))),
            h("button", { type: "submit" }, t("publish")))
        : null,
      spaces.filter((s) => s.role === "space_manager").map(publicRoles),
    );
  };
  draw();
  return box;
}

const PUBLIC_ROLES = ["contributor", "content_manager", "space_manager"];

/** The roles of a public space its manager gives and takes back: who may
 * publish there (contributors), also remove (content managers), also
 * change roles (space managers). */
function publicRoles(space) {
  const list = h("ul", { class: "public-roles" });
  const draw = async () => {
    try {
      const s = await client.api("GET", `/v1/spaces/${space.id}`);
      fill(list, Object.entries(s.roles || {}).map(([user, role]) =>
        h("li", { "data-user": user }, h("bdi", {}, user), ` · ${t(role)}`)));
    } catch (err) { fail(err); }
  };
  const form = h("form", { class: "public-role", onsubmit: async (e) => {
    e.preventDefault();
    const f = e.target;
    const user = f.user.value.trim();
    try {
      await client.api("PUT", `/v1/spaces/${space.id}/roles/${encodeURIComponent(user)}`, { role: f.role.value || null });
      status(t("roleSaved", { user }));
      f.reset();
      draw();
    } catch (err) { fail(err); }
  } },
    field(t("user"), h("input", { name: "user", required: true, autocapitalize: "none", spellcheck: "false", dir: "ltr" })),
    field(t("role"), h("select", { name: "role" }, PUBLIC_ROLES.map((r) => h("option", { value: r }, t(r))), h("option", { value: "" }, t("removeRole")))),
    h("button", { type: "submit" }, t("saveRole")));
  draw();
  return h("section", { class: "roles-of", "data-space": space.id },
    h("h4", {}, t("publicRoles", { space: space.name || space.id })),
    h("p", { class: "muted" }, t("publicRolesHelp")), list, form);
}

/** One public document, with its provenance and, for a member of the
 * source space, the comparison with the filing there. */
async function publicView(main, space, doc) {
  const mine = generation;
  const current = () => mine === generation;
  let d;
  try {
    d = await readPublic(`/v1/public/${space}/docs/${doc}`);
    if (!current()) return;
  } catch (err) {
    main.append(h("p", {}, h("a", { href: "#/search", class: "back" }, t("publicLibrary"))));
    return fail(err);
  }
  const date = new Date(d.updated * 1000).toLocaleDateString(language());
  const check = h("p", { id: "copy-check", role: "status" });
  const signed = h("p", { id: "signature-check", role: "status" });
  main.append(
    h("p", {}, h("a", { href: "#/search", class: "back" }, t("publicLibrary"))),
    h("article", { id: "public-doc", lang: d.language || undefined },
      h("h2", { dir: "auto" }, d.title),
      h("p", { class: "muted" }, [d.language && langName(d.language), t("byLine", { author: d.author, date })].filter(Boolean).join(" · ")),
      h("div", { class: "public-body", dir: "auto" }, marked(d.body, d.marks || []))),
    h("section", { id: "provenance" }, h("h3", {}, t("provenance")),
      d.provenance
        ? [h("p", {}, t("provenanceSigned", { author: d.author, device: String(d.provenance.device).slice(0, 8) })), signed, check]
        : h("p", { class: "muted" }, t("noProvenance"))),
  );
  const p = d.provenance;
  if (!p) return;
  // The signature is checked against identity keys this browser pinned:
  // without an account there are none to check it against.
  if (!client) {
    signed.textContent = t("signInToVerify");
    signed.className = "muted";
    return;
  }
  // The signature, checked here against the author's devices as certified
  // by the identity key this browser pinned (not on the server's word).
  try {
    const listing = await client.api("GET", `/v1/users/${encodeURIComponent(d.author)}`);
    if (!current()) return;
    const safety = client.device.verify_provenance(d.author, JSON.stringify(listing), space, doc, d.title, d.body, JSON.stringify(d.marks || []), JSON.stringify(p));
    await client.save();
    signed.textContent = t("signatureChecked", { author: d.author, safety });
    signed.className = "online";
    signed.dataset.signature = "verified";
  } catch (err) {
    signed.textContent = `${t("signatureFailed")} ${err.message}`;
    signed.className = "warning";
    signed.dataset.signature = "failed";
  }
  if (!current()) return;
  if (!client.device.spaces().some((x) => x.id === p.source_space && !x.removed)) {
    check.textContent = t("copyNotMember");
    return;
  }
  // Compared now, and again as the source space's entries arrive while
  // the published version is not held here yet.
  const compare = () => {
    if (!current()) return true;
    let verdict = "unknown";
    try {
      verdict = client.device.check_copy(p.source_space, p.source_stream, p.heads, d.title, d.body, JSON.stringify(d.marks || []));
    } catch (_) { /* the document is not readable here (yet) */ }
    // The text and heads of a public copy are public: anyone could sign
    // them again under their own name. A copy is vouched for only if its
    // signer is a device of the source space.
    if (verdict === "matches" && !client.device.members(p.source_space).some((m) => m.device === p.device)) verdict = "foreign";
    const title = verdict === "matches" ? client.device.text(p.source_space, p.source_stream).title : "";
    check.textContent = { matches: t("copyMatches", { title }), differs: t("copyDiffers"), foreign: t("copyForeign"), unknown: t("copyUnknown") }[verdict];
    check.className = verdict === "differs" || verdict === "foreign" ? "warning" : verdict === "matches" ? "online" : "muted";
    check.dataset.verdict = verdict;
    return verdict !== "unknown";
  };
  const onChanged = (e) => {
    if (e.detail.space === p.source_space && compare()) client.events.removeEventListener("changed", onChanged);
  };
  listen("changed", onChanged);
  compare();
  client.sync(p.source_space).then(() => onChanged({ detail: { space: p.source_space } })).catch(() => {});
}

// -------------------------------------------------------------- devices

/** The administrator's page: invitations to the server, as a code and as
 * a link that opens the sign-up form with the code filled in. */
async function adminView(main) {
  const mine = generation;
  let admin = false;
  try { admin = await client.isAdmin(); } catch (err) { fail(err); }
  if (mine !== generation) return;
  if (!admin) {
    main.append(h("h2", {}, t("admin")), h("p", { class: "muted" }, t("notAdmin")));
    return;
  }
  const made = h("div", { id: "invitation", "aria-live": "polite" });
  const form = h("form", { id: "new-invitation", onsubmit: async (e) => {
    e.preventDefault();
    const days = Number(e.target.days.value) || 7;
    try {
      const invitation = await client.newInvitation(days);
      const url = `${location.origin}${location.pathname}#/join/${invitation.code}`;
      const copy = (text) => async () => {
        try { await navigator.clipboard.writeText(text); status(t("copied")); } catch (_) { status(text); }
      };
      fill(made,
        h("p", {}, t("invitationMade", { n: invitation.expires_in_days })),
        field(t("invitationLink"), h("input", { id: "invitation-link", readonly: true, value: url, dir: "ltr" })),
        h("button", { type: "button", onclick: copy(url) }, t("copy")),
        field(t("invitationCode"), h("input", { id: "invitation-code", readonly: true, value: invitation.code, dir: "ltr" })),
        h("p", { class: "muted" }, t("invitationOnce")));
    } catch (err) { fail(err); }
  } },
    field(t("invitationDays"), h("input", { name: "days", type: "number", min: 1, max: 90, value: 7, required: true })),
    h("button", { type: "submit" }, t("makeInvitation")));
  main.append(h("h2", {}, t("admin")), h("p", {}, t("adminIntro")), form, made);
}

/** Saves `text` as a file on this device (nothing leaves it). */
function saveText(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/markdown;charset=utf-8" }));
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 60000);
}

/** Edits this browser holds that the server has not acknowledged: each
 * can be saved as a file and, only on request, discarded. */
function unsentView(main) {
  const list = h("ul", { id: "unsent-list" });
  const draw = () => {
    const waiting = client.device.unsent();
    const spaces = client.device.spaces();
    fill(list, waiting.length ? waiting.map((u) => {
      let text = null;
      try { text = client.device.text(u.space, u.stream); } catch (_) { /* the library, not a filing */ }
      const title = text ? (text.title || "—") : t("library");
      const state = u.blocked
        ? t(spaces.find((x) => x.id === u.space)?.removed ? "unsentRemoved" : "unsentBlocked")
        : t("unsentWaiting");
      return h("li", { "data-stream": u.stream, class: u.blocked ? "blocked" : "" },
        h("strong", { dir: "auto" }, title), " ", h("span", { class: u.blocked ? "warning" : "muted" }, `· ${state}`), " ",
        text ? h("button", { type: "button", class: "save-unsent", onclick: () => saveText(`${title}.md`, `# ${text.title}\n\n${text.body}\n`) }, t("saveAsFile")) : null, " ",
        confirmingButton({ class: "discard-unsent" }, t("discardUnsent"), t("discardUnsentConfirm"), async () => {
          try {
            client.device.discard_unsent(u.space, u.stream);
            await client.save();
            draw();
          } catch (err) { fail(err); }
        }));
    }) : h("li", { class: "muted" }, t("unsentNone")));
  };
  main.append(h("h2", {}, t("unsentTitle")), h("p", { class: "muted" }, t("unsentHelp")), list);
  draw();
}

async function devicesView(main) {
  const box = h("section", {}, h("h2", {}, t("devices")));
  const list = h("ul", { class: "devices" });
  const pairing = h("section", { id: "pairing", "aria-live": "polite" });
  main.append(box, pairing);
  // A device of this user is revoked from a browser that holds the
  // identity key, after a second click that confirms it.
  const revokeButton = (device) => confirmingButton({ class: "revoke", "data-device": device }, t("revoke"), t("revokeConfirm"), async (button) => {
    status(t("working"));
    try {
      const spaces = await client.revoke(device);
      status(t("revokedDone", { n: spaces.length }));
      await drawList();
    } catch (err) {
      button.disabled = false;
      fail(err);
    }
  });
  const drawList = async () => {
    const devices = await client.ownDevices();
    const holder = client.device.holds_identity();
    fill(list, devices.map((d) => h("li", { "data-device": d.device, class: d.revoked ? "revoked" : "" },
      h("code", {}, d.device.slice(0, 16)),
      d.this ? ` (${t("thisDevice")})` : "",
      d.revoked ? h("span", { class: "warning" }, ` · ${t("revokedDevice")}`) : null,
      holder && !d.this && !d.revoked ? revokeButton(d.device) : null)));
  };
  try {
    box.append(
      h("p", {}, t("safetyNumber"), ": ", h("code", { class: "safety" }, client.device.safety_number())),
      list,
    );
    await drawList();
  } catch (err) {
    fail(err);
  }
  main.append(recoverySection(), deviceUnlockSection(), notificationSection(), browserNoticeSection(), lockSection());
  if (!client.device.holds_identity()) {
    pairing.append(h("p", { class: "muted" }, t("firstDeviceOnly")));
    return;
  }
  const start = h("button", { type: "button", id: "link-another", onclick: async () => {
    start.disabled = true;
    let p;
    try {
      p = await client.startPairing();
    } catch (err) {
      start.disabled = false;
      return fail(err);
    }
    onCleanup(p.stop);
    fill(pairing, h("p", {}, t("linkShow")), h("output", { id: "pairing-code", dir: "ltr", class: "code" }, p.code));
    try {
      const device = await p.done;
      fill(pairing, h("p", {}, t("linked")));
      await drawList();
      status(t("working"));
      const { added, others } = await client.addNewDevices(device);
      status("");
      fill(pairing,
        h("p", { id: "pairing-done" }, t("linked"), " ", t("linkedAdded", { n: added.length })),
        others.length ? h("p", {}, t("linkedOthers", { spaces: others.map(spaceLabel).join(", ") })) : null);
    } catch (err) {
      if (err.code === "stopped") return;
      fill(pairing, start);
      start.disabled = false;
      status(err.code === "pairing_expired" ? t("pairingExpired") : `${t("error")}: ${err.message}`, "error");
    }
  } }, t("linkAnother"));
  pairing.append(start);
}

/** The idle lock's delay, and erasing the account from this browser (two
 * clicks, the second confirming). */
function lockSection() {
  const minutes = h("select", { id: "idle-lock", onchange: (e) => idle.choose(Number(e.target.value)) },
    idle.choices.map((s) => h("option", { value: String(s), selected: s === idle.seconds() }, t("minutes", { n: s / 60 }))));
  const erase = confirmingButton({ id: "erase-browser" }, t("eraseBrowser"), t("eraseConfirm"), async () => {
    const c = endSession();
    if (!c) return;
    try {
      await c.erase();
      // Drawn again: the page of a browser that holds no account.
      render();
      status(t("erased"));
    } catch (err) {
      fail(err);
    }
  });
  return h("section", { id: "this-browser" }, h("h3", {}, t("thisBrowser")),
    field(t("idleLock"), minutes),
    h("p", { class: "muted" }, t("eraseExplain")), erase);
}

/** Notification emails: an address and how often, said plainly to carry
 * no content; the server checks the address. */
function notificationSection() {
  const box = h("section", { id: "notifications", "aria-live": "polite" }, h("h3", {}, t("notifyTitle")), h("p", { class: "muted" }, t("notifyExplain")));
  const email = h("input", { type: "email", name: "email", autocomplete: "email", dir: "ltr" });
  const mode = h("select", { name: "mode" }, ["off", "daily", "immediate"].map((m) => h("option", { value: m }, t(`notify_${m}`))));
  const saved = h("p", { class: "muted", role: "status" });
  const form = h("form", { id: "notify-form", onsubmit: async (e) => {
    e.preventDefault();
    saved.textContent = "";
    try {
      const now = await client.setNotifications(email.value, mode.value, language());
      email.value = now.email;
      mode.value = now.mode;
      saved.textContent = t("notifySaved");
    } catch (err) {
      fail(err);
    }
  } }, field(t("notifyEmail"), email), field(t("notifyMode"), mode), h("button", { type: "submit" }, t("notifySave")), saved);
  client.notifications().then((now) => {
    if (!now.available) return box.append(h("p", { id: "notify-unavailable" }, t("notifyUnavailable")));
    email.value = now.email;
    mode.value = now.mode;
    box.append(form);
  }).catch(fail);
  return box;
}

/** Unlocking with the device's platform authenticator instead of the
 * passphrase, with what it protects and what it does not. */
function deviceUnlockSection() {
  const box = h("section", { id: "device-unlock", "aria-live": "polite" }, h("h3", {}, t("deviceUnlock")),
    h("p", {}, t("deviceUnlockHelp")), h("p", { class: "warning" }, t("deviceUnlockRisk")));
  const state = h("p", { id: "device-unlock-state", role: "status" });
  box.append(state);
  const draw = async () => {
    if (!(await Client.deviceUnlockOffered())) {
      fill(state, t("deviceUnlockUnavailable"));
      state.className = "muted";
      return;
    }
    const on = !!client.deviceUnlock;
    state.className = "";
    fill(state, on ? t("deviceUnlockEnabled") : "", on ? " " : "",
      h("button", { type: "button", id: on ? "device-unlock-off" : "device-unlock-on", onclick: async (e) => {
        e.target.disabled = true;
        try {
          if (on) await client.disableDeviceUnlock();
          else await client.enableDeviceUnlock();
        } catch (err) {
          status(err.code === "no-device-unlock" ? t("deviceUnlockUnavailable") : t("deviceUnlockFailed"), "error");
        }
        draw();
      } }, t(on ? "deviceUnlockOff" : "deviceUnlockOn")));
  };
  draw();
  return box;
}

/** The recovery code: whether one exists, and a button to make a new one
 * (shown once). */
function recoverySection() {
  const box = h("section", { id: "recovery", "aria-live": "polite" }, h("h3", {}, t("recoveryTitle")), h("p", { class: "muted" }, t("recoveryExplain")));
  if (!client.device.holds_identity()) {
    box.append(h("p", { class: "muted" }, t("recoveryHolderOnly")));
    return box;
  }
  const state = h("p", { id: "recovery-state" });
  const shown = (has) => {
    state.textContent = has ? t("recoveryExists") : t("recoveryMissing");
    state.className = has ? "" : "warning";
  };
  // The code is shown first; the kit goes to the server (replacing the
  // earlier one) only once the person says it is written down, and the
  // same kit is sent again if that fails.
  const make = h("button", { type: "button", id: "make-recovery", onclick: () => {
    make.disabled = true;
    const made = client.newRecoveryKit();
    const activate = h("button", { type: "button", id: "activate-recovery", onclick: async () => {
      activate.disabled = true;
      try {
        await client.activateRecovery(made);
        shown(true);
        fill(pending, h("p", { id: "recovery-active" }, t("recoveryActive")));
      } catch (err) {
        activate.disabled = false;
        fail(err);
      }
    } }, t("recoveryWritten"));
    const pending = h("div", {}, h("p", { class: "warning" }, t("recoveryShown")),
      h("output", { id: "recovery-code", dir: "ltr", class: "code" }, made.code), activate);
    box.append(pending);
  } }, t("makeRecovery"));
  box.append(state, make);
  client.hasRecoveryKit().then(shown).catch(() => {});
  return box;
}

/** A warning on the spaces page while the account has no recovery code
 * (asked once per sign-in). */
function recoveryWarning() {
  const note = h("p", { id: "no-recovery", class: "warning", hidden: true }, t("recoveryMissing"), " ", h("a", { href: "#/devices" }, t("noRecoveryLink")));
  if (!client.device.holds_identity()) return note;
  const show = (has) => { note.hidden = has; };
  if (client.recoveryKit !== undefined) show(client.recoveryKit);
  else client.hasRecoveryKit().then(show).catch(() => {});
  return note;
}

// ---------------------------------------------------------------- start

setLanguage(initialLanguage());
window.addEventListener("hashchange", () => render());
render();
keepOffline();
// A phone may end a hidden page at any moment: what changed is stored as
// soon as the page is hidden or left.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") client?.save().catch(() => {});
});
window.addEventListener("pagehide", () => { client?.save().catch(() => {}); });

/** Registers the service worker that lets the app start without the
 * network, and offers a new build when one is ready: it is applied when
 * the person chooses, after the state and the edits not yet sent are
 * saved, or when every tab of the app is closed. */
function keepOffline() {
  if (!("serviceWorker" in navigator)) return;
  const offer = (worker) => {
    // The first install has nothing to replace.
    if (!navigator.serviceWorker.controller) return;
    document.getElementById("update")?.remove();
    const bar = h("div", { id: "update", class: "update", role: "status" }, t("updateReady"), " ",
      h("button", { type: "button", id: "update-now", onclick: async () => {
        try { await client?.save(); } catch (_) { /* what is not saved is kept by the engine's own saves */ }
        worker.postMessage("take-over");
      } }, t("updateNow")));
    document.body.prepend(bar);
  };
  navigator.serviceWorker.register("sw.js").then((registration) => {
    if (registration.waiting) offer(registration.waiting);
    registration.addEventListener("updatefound", () => {
      const worker = registration.installing;
      worker?.addEventListener("statechange", () => { if (worker.state === "installed") offer(worker); });
    });
  }).catch(() => { /* without a worker, the app still runs online */ });
  let reloading = false;
  // Every tab of the app reloads with the new build, each storing its
  // state and its edits first.
  navigator.serviceWorker.addEventListener("controllerchange", async () => {
    if (reloading) return;
    reloading = true;
    try { await client?.save(); } catch (_) { /* kept by the engine's own saves */ }
    location.reload();
  });
}
