// The app's service worker: after one visit the app starts without the
// network. It keeps the app shell and the client's module of one build
// (the cache is named by the build, written here by `cargo xtask web`),
// answers them from that cache, and leaves everything else to the
// network: the API (`/v1/`) is never cached, nor the drop-box page, the
// public map, the PDF preview or the passphrase check, which are loaded
// when needed.
//
// A new build is a new worker: it fills its own cache, then waits. The
// page tells the person an update is ready and, when they choose (after
// saving the state and the edits not yet sent), asks it to take over and
// reloads; otherwise it takes over when every tab of the app is closed.

const BUILD = "__BUILD__";
const CACHE = `amicus-${BUILD}`;
const SHELL = [
  "./",
  "index.html",
  "app.js",
  "amicus.js",
  "i18n.js",
  "editor.js",
  "style.css",
  "favicon.svg",
  "manifest.en.webmanifest",
  "manifest.fr.webmanifest",
  "manifest.ar.webmanifest",
  "manifest.de.webmanifest",
  "manifest.pt.webmanifest",
  "pkg/amicus_client.js",
  "pkg/amicus_client_bg.wasm",
];

self.addEventListener("install", (event) => {
  // `no-cache`: the files of this build as the server has them, asked for
  // again only if changed (what the page has just downloaded, the client's
  // module first, is not downloaded a second time on a first visit).
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL.map((path) => new Request(path, { cache: "no-cache" })))));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((names) => Promise.all(
    names.filter((name) => name.startsWith("amicus-") && name !== CACHE).map((name) => caches.delete(name)))));
});

self.addEventListener("message", (event) => {
  if (event.data === "take-over") self.skipWaiting();
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  const scope = new URL(self.registration.scope);
  const path = url.pathname.slice(scope.pathname.length);
  // The app's pages are one document; its state lives in the fragment.
  const key = request.mode === "navigate" && (path === "" || path === "index.html") ? "index.html" : path;
  if (!SHELL.includes(key)) return;
  event.respondWith(caches.open(CACHE).then(async (cache) => (await cache.match(key)) || fetch(request)));
});
