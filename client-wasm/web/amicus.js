// @ts-check
// The browser client's I/O. The wasm module's `Device` is the client engine
// (PROTOCOL §16), the one the native client drives too: it decides every
// step of the protocol (signing in, following each space's log and reading
// it after a gap, reporting a server that withholds or forks it, commits
// and their retries, flushes, epoch records, Welcomes, KeyPackages,
// reconnecting). This file only does what it asks: store its sealed state in
// IndexedDB before anything else goes out, send its frames and HTTP
// requests, hand it what comes back, wake it when it asks, and turn its
// events into DOM events. Pairing, recovery and file transfers are HTTP
// calls around the module's keys.

import init, { Device, Linking, PairingCode, PartFetch, StateKey, Upload, country_codes, mentions } from "./pkg/amicus_client.js";

export { Upload, country_codes, mentions };

/** @typedef {import("./pkg/amicus_client.js").ClientEvent} ClientEvent */
/** @typedef {import("./pkg/amicus_client.js").HttpCall} HttpCall */
/** @typedef {import("./pkg/amicus_client.js").OwnDevice} OwnDevice */
/** @typedef {import("./pkg/amicus_client.js").NewDropBox} NewDropBox */
/** @typedef {import("./pkg/amicus_client.js").DropBoxList} DropBoxList */
/** @typedef {import("./pkg/amicus_client.js").Submission} Submission */
/** @typedef {import("./pkg/amicus_client.js").OpenedPart} OpenedPart */

/** What a slow start is doing, for the interface to say: `step` events
 * with `{step, percent?, bytes?}`, `step` one of `download` (the app's
 * module: the bytes read, and the percentage when the size is known),
 * `key` (deriving the key from the passphrase), `state` (opening the state
 * kept here), `sign-in`. */
export const progress = new EventTarget();

/** Tells the interface what starts now, and lets it draw that before a
 * step that holds the page (deriving a key does, for seconds on a phone).
 * @param {string} step @param {number} [percent] */
async function stepping(step, percent) {
  progress.dispatchEvent(new CustomEvent("step", { detail: { step, percent } }));
  // A hidden tab draws no frame: it waits 100 ms at most.
  await new Promise((r) => {
    requestAnimationFrame(() => setTimeout(r, 0));
    setTimeout(r, 100);
  });
}

/** @type {Promise<unknown> | null} */
let ready = null;
/** Loads the wasm module once, telling how much of it has arrived. */
export function load() {
  if (!ready) {
    ready = (async () => {
      const res = await fetch(new URL("./pkg/amicus_client_bg.wasm", import.meta.url));
      // The length of a compressed answer is not that of the bytes read:
      // then only the bytes read are told, each tenth of a megabyte.
      const total = res.headers.get("content-encoding") ? 0 : Number(res.headers.get("content-length")) || 0;
      if (!res.ok || !res.body) return init({ module_or_path: res });
      const reader = res.body.getReader();
      let bytes = 0;
      let told = "";
      const counted = new ReadableStream({
        async pull(controller) {
          const { done, value } = await reader.read();
          if (done) return controller.close();
          bytes += value.byteLength;
          const percent = total ? Math.min(99, Math.floor((bytes * 100) / total)) : undefined;
          const now = percent === undefined ? `${Math.floor(bytes / 100000)}` : `${percent}%`;
          if (now !== told) {
            told = now;
            progress.dispatchEvent(new CustomEvent("step", { detail: { step: "download", percent, bytes } }));
          }
          controller.enqueue(value);
        },
      });
      await stepping("download", 0);
      return init({ module_or_path: new Response(counted, { headers: { "content-type": "application/wasm" } }) });
    })();
    ready.catch(() => { ready = null; });
  }
  return ready;
}

/** @type {Promise<typeof import("./strength/amicus_strength.js")> | null} */
let strength = null;

/** Refuses a new passphrase that is too easy to guess for whoever seizes
 * the device: the check `amicus register` makes (zxcvbn, score 3 of 4 at
 * least), from a module of its own loaded the first time it is needed.
 * @param {string} passphrase @param {string} user */
export async function checkNewPassphrase(passphrase, user) {
  if (!strength) {
    strength = import("./strength/amicus_strength.js").then(async (m) => {
      await m.default({ module_or_path: new URL("./strength/amicus_strength_bg.wasm", import.meta.url) });
      return m;
    });
  }
  const score = (await strength).weakness(passphrase, user);
  if (score !== undefined) throw new AppError("weak-passphrase", `strength ${score} of 4`);
}

/** @type {Worker | null} */
let pdfWorker = null;
/** The previews the worker is drawing, by request number.
 * @type {Map<number, { resolve: (v: { total: number, pages: ImageData[] }) => void, reject: (e: Error) => void, timer: ReturnType<typeof setTimeout> }>} */
const pdfPending = new Map();
let pdfRequest = 0;
/** How long drawing a PDF's first pages may take before its worker is ended. */
const PDF_DRAW_MS = 30000;

/** Ends the preview worker (a PDF crashed or hung it, or left it in doubt)
 * and fails every preview it was drawing; the next one starts another. */
function endPdfWorker(message) {
  pdfWorker?.terminate();
  pdfWorker = null;
  for (const p of pdfPending.values()) {
    clearTimeout(p.timer);
    p.reject(new AppError("preview-failed", message));
  }
  pdfPending.clear();
}

/** Draws the first `pages` pages of a decrypted PDF `width` pixels wide, in
 * the preview worker (started the first time; ended and started again after
 * a PDF that failed, crashed it or ran past `PDF_DRAW_MS`). The bytes and
 * pixels stay in memory. Several previews may be drawn at once: each
 * answer names its request.
 * @param {Blob} blob @param {number} pages @param {number} width
 * @returns {Promise<{ total: number, pages: ImageData[] }>} */
export async function drawPdf(blob, pages, width) {
  const bytes = await blob.arrayBuffer();
  if (!pdfWorker) {
    const worker = new Worker(new URL("./preview-worker.js", import.meta.url), { type: "module" });
    worker.onmessage = (event) => {
      const { id, error, total, pages: drawn } = event.data;
      const p = pdfPending.get(id);
      if (!p) return;
      pdfPending.delete(id);
      clearTimeout(p.timer);
      // A rasterizer that failed may be left in a bad state: not reused.
      if (error) {
        p.reject(new AppError("preview-failed", error));
        return endPdfWorker(error);
      }
      p.resolve({
        total,
        pages: drawn.map((/** @type {{ width: number, height: number, rgba: Uint8Array<ArrayBuffer> }} */ d) =>
          new ImageData(new Uint8ClampedArray(d.rgba.buffer, d.rgba.byteOffset, d.rgba.byteLength), d.width, d.height)),
      });
    };
    worker.onerror = (event) => endPdfWorker(event.message || "the PDF could not be drawn");
    pdfWorker = worker;
  }
  const id = ++pdfRequest;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => endPdfWorker("the PDF took too long to draw"), PDF_DRAW_MS);
    pdfPending.set(id, { resolve, reject, timer });
    pdfWorker?.postMessage({ id, bytes, pages, width }, [bytes]);
  });
}

/** An error with a stable code the interface matches on (the module's
 * `ErrorCode`s, the server's codes, and this file's own: `exists`,
 * `no-device`, `wrong-passphrase`, `bad-recovery-code`, `no-upload`,
 * `no-device-unlock`, `device-unlock-failed`). */
export class AppError extends Error {
  /** @param {string} code @param {string} [message] */
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

/** An error the server answered with (`{error, message}`). */
export class ServerError extends AppError {
  /** `code` is the refusal's kind, `reason` (if the server gave one) the
   * specific, stable cause (PROTOCOL §15, "Reasons").
   * @param {number} status @param {string} code @param {string} [message] @param {string} [reason] */
  constructor(status, code, message, reason) {
    super(code, message || `${status} ${code}`);
    this.status = status;
    this.reason = reason;
    /** The server's `Retry-After`, in seconds (0: none). */
    this.retryAfter = 0;
  }
}

// ---------------------------------------------------------------- storage

/**
 * The device states of this browser, sealed, in IndexedDB: `devices` holds
 * `{user, salt, sealed}` (the state), `unsent` holds `{user, sealed}` (the
 * edits the server has not acknowledged, sealed under the same key),
 * `uploads` holds `{id, user, sealed, chunk}` for each interrupted upload:
 * its record (PROTOCOL §10.7: the progress and the sealed chunks the
 * server may not have yet), sealed; `chunk` is only in records an earlier
 * version of the page wrote, which kept the last chunk beside the record.
 */
export const vault = {
  /** @type {IDBDatabase | null} */
  db: null,
  /** @returns {Promise<IDBDatabase>} */
  async open() {
    if (this.db) return this.db;
    /** @type {IDBDatabase} */
    const db = await new Promise((resolve, reject) => {
      const req = indexedDB.open("amicus", 3);
      req.onupgradeneeded = () => {
        for (const store of ["devices", "unsent"]) {
          if (!req.result.objectStoreNames.contains(store)) {
            req.result.createObjectStore(store, { keyPath: "user" });
          }
        }
        if (!req.result.objectStoreNames.contains("uploads")) {
          req.result.createObjectStore("uploads", { keyPath: "id" });
        }
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    this.db = db;
    return db;
  },
  /** Runs `fn` in a transaction on `store`; resolves with its request's
   * result once the transaction is complete (durable).
   * @param {IDBTransactionMode} mode
   * @param {(s: IDBObjectStore) => IDBRequest | undefined} fn
   * @returns {Promise<any>} */
  async tx(mode, fn, store = "devices") {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const t = db.transaction(store, mode);
      const req = fn(t.objectStore(store));
      t.oncomplete = () => resolve(req && req.result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error || new Error("IndexedDB transaction aborted"));
    });
  },
  /** The users with a device in this browser. */
  async users() {
    const all = await this.tx("readonly", (s) => s.getAllKeys());
    return all || [];
  },
  async get(user) {
    return this.tx("readonly", (s) => s.get(user));
  },
  /** Durable once the transaction completes. */
  async put(record) {
    return this.tx("readwrite", (s) => s.put(record));
  },
  async remove(user) {
    for (const u of await this.uploads(user)) await this.removeUpload(u.id);
    await this.tx("readwrite", (s) => s.delete(user), "unsent");
    return this.tx("readwrite", (s) => s.delete(user));
  },
  async getUnsent(user) {
    return this.tx("readonly", (s) => s.get(user), "unsent");
  },
  /** The interrupted uploads of `user`. */
  async uploads(user) {
    const all = await this.tx("readonly", (s) => s.getAll(), "uploads");
    return (all || []).filter((u) => u.user === user);
  },
  /** Durable once the transaction completes. */
  async putUpload(record) {
    return this.tx("readwrite", (s) => s.put(record), "uploads");
  },
  async removeUpload(id) {
    return this.tx("readwrite", (s) => s.delete(id), "uploads");
  },
  /** Deletes the whole database (no account is left in it). */
  async destroy() {
    if (this.db) this.db.close();
    this.db = null;
    await new Promise((resolve, reject) => {
      const req = indexedDB.deleteDatabase("amicus");
      req.onsuccess = () => resolve(undefined);
      req.onerror = () => reject(req.error);
      req.onblocked = () => resolve(undefined);
    });
  },
  /** Stores the sealed unsent edits, or forgets them (`sealed` undefined). */
  async putUnsent(user, sealed) {
    return this.tx("readwrite", (s) => (sealed ? s.put({ user, sealed }) : s.delete(user)), "unsent");
  },
};

// ------------------------------------------------------------------- HTTP

/**
 * One HTTP request to the page's origin; JSON in and out (or bytes with
 * `raw`). Rejects with a `ServerError` for an error answer.
 * @param {string} method @param {string} path @param {string | null | undefined} [token]
 * @param {unknown} [body] @param {Uint8Array} [raw]
 * @returns {Promise<any>}
 */
async function http(method, path, token, body, raw) {
  /** @type {Record<string, string>} */
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  /** @type {BodyInit | undefined} */
  let payload;
  if (raw !== undefined) {
    headers["content-type"] = "application/octet-stream";
    payload = /** @type {Uint8Array<ArrayBuffer>} */ (raw);
  } else if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload });
  const type = res.headers.get("content-type") || "";
  if (!res.ok) {
    let code = "error";
    let message = `${res.status}`;
    let reason;
    if (type.startsWith("application/json")) {
      const e = await res.json().catch(() => ({}));
      code = e.error || code;
      message = e.message || message;
      reason = e.reason;
    }
    const error = new ServerError(res.status, code, message, reason);
    error.retryAfter = Number.parseInt(res.headers.get("retry-after") || "0", 10) || 0;
    throw error;
  }
  if (type.startsWith("application/json")) return res.json();
  return new Uint8Array(await res.arrayBuffer());
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Hands a failed request to a transfer (`answer(status, retry_after)`,
 * 0 for no answer and for no `Retry-After`). When the transfer stops on
 * it, the request's own error goes up: the server's code and reason, which
 * the interface words in the person's language.
 * @param {(status: number, retryAfter: number) => void} answer @param {unknown} e */
function failTo(answer, e) {
  try {
    if (e instanceof ServerError) answer(e.status, e.retryAfter || 0);
    else answer(0, 0);
  } catch (stopped) {
    throw e instanceof ServerError ? e : stopped;
  }
}

/** base64url of `bytes` (WebAuthn's credential ids as keys).
 * @param {Uint8Array} bytes */
function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// ----------------------------------------------------------------- client

/**
 * One signed-in device. Emits events on `this.events` (an EventTarget):
 * `status` ({online}), `spaces`, `changed` ({space, streams}), `members`
 * ({space}), `presence` ({space, user, device, payload}), `warning`
 * ({code, message}), `unsent` ({documents}: how many documents have edits
 * the server has not acknowledged, kept in this browser's sealed state).
 */
export class Client {
  /** @param {Device} device @param {StateKey} key @param {Uint8Array} salt */
  constructor(device, key, salt) {
    this.device = device;
    this.key = key;
    this.salt = salt;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.online = false;
    this.closed = false;
    /** Locked: the engine and the state key were freed. */
    this.freed = false;
    this.events = new EventTarget();
    /** @type {Map<number, {resolve: (e: any) => void, reject: (e: Error) => void}>} */
    this.ops = new Map();
    /** @type {Promise<unknown>} */
    this.saving = Promise.resolve();
    this.pumping = false;
    this.again = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.saveTimer = undefined;
    this.unsentDocuments = device.unsent_documents();
    /** The state key sealed under the device authenticator's secret:
     * `{credential, salt, wrapped}`, or undefined.
     * @type {{credential: Uint8Array, salt: Uint8Array, wrapped: Uint8Array} | undefined} */
    this.deviceUnlock = undefined;
    /** @type {boolean | undefined} */
    this.recoveryKit = undefined;
  }

  /** @param {string} type @param {unknown} [detail] */
  emit(type, detail) {
    this.events.dispatchEvent(new CustomEvent(type, { detail }));
  }

  get user() {
    return this.device.user();
  }

  /** Creates a new user with this browser as its first device.
   * @param {string} user @param {string} passphrase @param {string} [invite] */
  static async signUp(user, passphrase, invite) {
    await Client.vacant(user);
    await checkNewPassphrase(passphrase, user);
    const device = Device.create(user);
    return Client.settle(device, passphrase, () => http("POST", "/v1/register", null, {
      certificate: device.certificate(),
      invite: invite || null,
    }));
  }

  /** Loads the module; refuses a user this browser already holds.
   * @param {string} user */
  static async vacant(user) {
    await load();
    if ((await vault.users()).includes(user)) throw new AppError("exists");
  }

  /** Stores a new device of this browser under `passphrase` (the key is
   * derived first, so nothing can fail between registering and storing
   * but the storage itself), once `register()` has made it known to the
   * server; then signs it in and publishes KeyPackages.
   * @param {Device} device @param {string} passphrase @param {() => Promise<unknown>} register */
  static async settle(device, passphrase, register) {
    const salt = StateKey.new_salt();
    await stepping("key");
    const client = new Client(device, StateKey.derive(passphrase, salt), salt);
    await stepping("sign-in");
    await register();
    await client.save();
    await client.run(device.sign_in());
    await client.run(device.refresh());
    return client;
  }

  /**
   * Links this browser to an existing user (PROTOCOL §3.6) with the code
   * shown by the user's first device: leaves an offer with the server,
   * waits for the answer (up to the offer's lifetime), checks it, and
   * stores the new device under `passphrase`. `onOffered()` is called once
   * the offer is with the server.
   */
  static async link(user, code, passphrase, onOffered) {
    await Client.vacant(user);
    await checkNewPassphrase(passphrase, user);
    // The module decides every step (the offer, asking for the answer,
    // when it expired); this sends what it is given and waits.
    const linking = new Linking(user, code);
    try {
      let told = false;
      for (;;) {
        const step = linking.step(Date.now());
        if (step.kind === "wait") {
          await sleep(Math.max(0, step.until - Date.now()));
          continue;
        }
        /** @type {Record<string, string>} */
        const headers = step.body === undefined ? {} : { "content-type": "application/json" };
        let linked;
        try {
          const res = await fetch(step.path, { method: step.method, headers, body: step.body });
          const body = new Uint8Array(await res.arrayBuffer());
          linked = () => {
            try {
              return linking.answered(Date.now(), res.status, body);
            } catch (e) {
              // The server refused the offer: its own code and reason.
              if (!(e instanceof Error && "code" in e && e.code === "server")) throw e;
              let answer = {};
              try {
                answer = JSON.parse(new TextDecoder().decode(body));
              } catch (_) { /* not JSON */ }
              throw new ServerError(res.status, answer.error || "error", answer.message, answer.reason);
            }
          };
        } catch (e) {
          linked = () => linking.unreachable(Date.now(), e instanceof Error ? e.message : String(e));
        }
        const done = linked();
        if (!told && linking.offered()) {
          told = true;
          if (onOffered) onOffered();
        }
        if (done) break;
      }
      // Registered by the device that answered.
      return Client.settle(linking.device(), passphrase, async () => {});
    } finally {
      linking.free();
    }
  }

  /** Recovers the account `user` in this browser with its recovery code:
   * the kit the server keeps opens with the code and gives back the
   * identity key, which certifies a new device for this browser. */
  static async recover(user, code, passphrase) {
    await Client.vacant(user);
    await checkNewPassphrase(passphrase, user);
    let access;
    try {
      access = Device.recovery_access(code);
    } catch (e) {
      throw new AppError("bad-recovery-code", e instanceof Error ? e.message : String(e));
    }
    const path = `/v1/recovery/${encodeURIComponent(user)}`;
    let kit;
    try {
      kit = (await http("POST", `${path}/kit`, null, { access })).kit;
    } catch (e) {
      // The same answer for no such user, no kit and a wrong code.
      if (e instanceof ServerError && e.status === 404) throw new AppError("bad-recovery-code");
      throw e;
    }
    const device = Device.recover(user, code, kit);
    return Client.settle(device, passphrase, () => http("POST", `${path}/devices`, null, { access, certificate: device.certificate() }));
  }

  /** Whether this browser and device can unlock with a platform
   * authenticator (fingerprint, face, screen lock) at all. */
  static async deviceUnlockOffered() {
    try {
      return !!window.PublicKeyCredential && window.isSecureContext
        && await PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable();
    } catch (_) {
      return false;
    }
  }

  /** Makes a credential of the platform authenticator for this account
   * (user verification required, PRF extension) and keeps the state key
   * sealed under its secret beside the state. */
  async enableDeviceUnlock() {
    const salt = crypto.getRandomValues(new Uint8Array(32));
    let credential;
    try {
      credential = /** @type {PublicKeyCredential} */ (await navigator.credentials.create({ publicKey: {
        rp: { name: "Amicus" },
        // The authenticator may list its credentials (a phone's password
        // manager does): this one names no account.
        user: { id: crypto.getRandomValues(new Uint8Array(16)), name: "Amicus", displayName: "Amicus" },
        challenge: crypto.getRandomValues(new Uint8Array(32)),
        pubKeyCredParams: [{ type: "public-key", alg: -7 }, { type: "public-key", alg: -257 }],
        authenticatorSelection: { authenticatorAttachment: "platform", userVerification: "required", residentKey: "discouraged" },
        extensions: /** @type {any} */ ({ prf: { eval: { first: salt } } }),
      } }));
    } catch (e) {
      throw new AppError("device-unlock-failed", e instanceof Error ? e.message : String(e));
    }
    const id = new Uint8Array(credential.rawId);
    const made = /** @type {any} */ (credential.getClientExtensionResults()).prf;
    let secret = made?.results?.first;
    if (!secret && made?.enabled) {
      // Most authenticators give the secret only when asked again.
      try {
        const a = /** @type {PublicKeyCredential} */ (await navigator.credentials.get({ publicKey: {
          challenge: crypto.getRandomValues(new Uint8Array(32)),
          allowCredentials: [{ type: "public-key", id }],
          userVerification: "required",
          extensions: /** @type {any} */ ({ prf: { eval: { first: salt } } }),
        } }));
        secret = /** @type {any} */ (a.getClientExtensionResults()).prf?.results?.first;
      } catch (e) {
        throw new AppError("device-unlock-failed", e instanceof Error ? e.message : String(e));
      }
    }
    if (!secret) throw new AppError("no-device-unlock", "the authenticator has no PRF extension");
    this.deviceUnlock = { credential: id, salt, wrapped: this.key.wrap(new Uint8Array(secret)) };
    await this.save();
  }

  /** Forgets the sealed state key: only the passphrase opens the state.
   * The authenticator is told the credential is no longer used, where the
   * browser can say so (it may then remove it from its list). */
  async disableDeviceUnlock() {
    const was = this.deviceUnlock;
    this.deviceUnlock = undefined;
    await this.save();
    const signal = /** @type {any} */ (window.PublicKeyCredential)?.signalUnknownCredential;
    if (was && signal) {
      await signal.call(PublicKeyCredential, { rpId: location.hostname, credentialId: base64url(was.credential) }).catch(() => {});
    }
  }

  /** A new recovery code and its kit, not yet active: show the code, then
   * `activateRecovery` (which may be retried with the same kit). */
  newRecoveryKit() {
    return this.device.new_recovery_kit();
  }

  /** Stores a kit made by `newRecoveryKit`: it replaces the earlier one,
   * whose code then opens nothing at the server. */
  async activateRecovery({ kit, verifier }) {
    await this.api("PUT", "/v1/recovery", { kit, verifier });
    this.recoveryKit = true;
  }

  /** Whether the server keeps a recovery kit for this user (remembered in
   * `recoveryKit`; a kit activated meanwhile counts). */
  async hasRecoveryKit() {
    const exists = !!(await this.api("GET", "/v1/recovery")).exists;
    this.recoveryKit = exists || this.recoveryKit === true;
    return this.recoveryKit;
  }

  /** Unlocks the device of `user` stored in this browser.
   * @param {string} user @param {string} passphrase */
  static async unlock(user, passphrase) {
    await load();
    const record = await vault.get(user);
    if (!record) throw new AppError("no-device");
    await stepping("key");
    return Client.open(record, StateKey.derive(passphrase, record.salt), "wrong-passphrase");
  }

  /** Whether this browser holds an account (not whose: the page names
   * none). */
  static async holdsAccount() {
    // Asked without opening the database, which would create it (in a
    // browser that never held an account, or was erased).
    if (indexedDB.databases && !(await indexedDB.databases()).some((d) => d.name === "amicus")) return false;
    return (await vault.users()).length > 0;
  }

  /** Whether an account of this browser unlocks with the device's
   * authenticator ([`enableDeviceUnlock`]). */
  static async deviceUnlockStored() {
    const all = await vault.tx("readonly", (s) => s.getAll());
    return (all || []).some((r) => r.unlock);
  }

  /** Unlocks with the device's platform authenticator: it verifies its
   * user and gives the secret (WebAuthn PRF) that opens the state key
   * sealed beside the state; the account is the one whose credential the
   * authenticator used. */
  static async unlockWithDevice() {
    await load();
    const records = ((await vault.tx("readonly", (s) => s.getAll())) || []).filter((r) => r.unlock);
    if (!records.length || !window.PublicKeyCredential) throw new AppError("no-device-unlock");
    /** @type {Record<string, {first: Uint8Array}>} */
    const evalByCredential = {};
    for (const r of records) evalByCredential[base64url(r.unlock.credential)] = { first: r.unlock.salt };
    let assertion;
    try {
      assertion = /** @type {PublicKeyCredential} */ (await navigator.credentials.get({ publicKey: {
        challenge: crypto.getRandomValues(new Uint8Array(32)),
        allowCredentials: records.map((r) => /** @type {PublicKeyCredentialDescriptor} */ ({ type: "public-key", id: r.unlock.credential })),
        userVerification: "required",
        extensions: /** @type {any} */ ({ prf: { evalByCredential } }),
      } }));
    } catch (e) {
      throw new AppError("device-unlock-failed", e instanceof Error ? e.message : String(e));
    }
    const id = base64url(new Uint8Array(assertion.rawId));
    const record = records.find((r) => base64url(r.unlock.credential) === id);
    const secret = /** @type {any} */ (assertion.getClientExtensionResults()).prf?.results?.first;
    if (!record || !secret) throw new AppError("device-unlock-failed", "the authenticator gave no secret");
    let key;
    try {
      key = StateKey.unwrap_with(new Uint8Array(secret), record.unlock.wrapped);
    } catch (e) {
      throw new AppError("device-unlock-failed", e instanceof Error ? e.message : String(e));
    }
    return Client.open(record, key, "device-unlock-failed");
  }

  /** Opens the stored `record` with its state key (`failure`: the code
   * of the error if it does not open), signs in, and returns the client.
   * @param {any} record @param {StateKey} key @param {string} failure */
  static async open(record, key, failure) {
    const user = record.user;
    await stepping("state");
    // Edits an earlier version of the app kept beside the state.
    const unsent = await vault.getUnsent(user);
    let device;
    try {
      device = Device.unseal(record.sealed, key, unsent ? unsent.sealed : undefined);
    } catch (_) {
      throw new AppError(failure);
    }
    const client = new Client(device, key, record.salt);
    client.deviceUnlock = record.unlock;
    await stepping("sign-in");
    if (unsent) {
      // They are in the sealed state now.
      await client.save();
      await vault.putUnsent(user, undefined);
    }
    try {
      await client.run(device.sign_in());
    } catch (e) {
      // Unreachable server: the page starts offline and the engine signs
      // in when it can. A refusal is an error.
      if (!(e instanceof AppError) || e.code !== "network") throw e;
    }
    return client;
  }

  /** Seals the state and stores it (queued: saves never interleave);
   * resolves once it is durable. Then `unsent` tells how many documents
   * have edits the server has not acknowledged, now kept in the browser. */
  save() {
    if (this.freed) return this.saving;
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    const sealed = this.device.seal(this.key);
    const documents = this.device.unsent_documents();
    const record = { user: this.device.user(), salt: this.salt, sealed, unlock: this.deviceUnlock };
    this.saving = this.saving
      .then(() => vault.put(record))
      .then(() => {
        if (documents !== this.unsentDocuments) {
          this.unsentDocuments = documents;
          this.emit("unsent", { documents });
        }
      });
    return this.saving;
  }

  // ---------------------------------------------------------- the engine

  /** Resolves with the `done` event of the engine's operation `op`, or
   * rejects with its error (an `AppError` with the engine's code).
   * @param {number} op
   * @returns {Promise<any>} */
  run(op) {
    const done = new Promise((resolve, reject) => this.ops.set(op, { resolve, reject }));
    this.pump();
    return done;
  }

  /** Does what the engine asks, until it asks nothing more: the durable
   * state first (nothing is sent while a store is due), then frames,
   * requests and events; then waits for its next timeout. */
  pump() {
    if (this.freed) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    (async () => {
      try {
        do {
          this.again = false;
          if (this.device.must_persist()) await this.save();
          if (this.freed) return;
          if (!this.closed && !this.ws && this.device.wants_connection()) this.connect();
          for (let f = this.device.poll_transmit(); f; f = this.device.poll_transmit()) {
            this.ws?.send(f);
          }
          for (let r = this.device.poll_request(); r; r = this.device.poll_request()) this.call(r);
          for (let e = this.device.poll_event(); e; e = this.device.poll_event()) this.dispatch(e);
        } while (this.again || this.device.must_persist());
        // Other changes (documents read, edits) are stored within 300 ms,
        // however fast they come.
        if (this.freed) return;
        if (this.device.changed() && this.saveTimer === undefined) {
          this.saveTimer = setTimeout(() => this.save().catch((e) => this.warn("sealed", e)), 300);
        }
        clearTimeout(this.timer);
        const wait = this.device.next_timeout();
        if (wait !== undefined && !this.closed) {
          this.timer = setTimeout(() => {
            this.device.handle_timeout();
            this.pump();
          }, Math.min(wait, 2 ** 31 - 1));
        }
      } catch (e) {
        this.warn("sealed", e);
      } finally {
        this.pumping = false;
      }
      if (this.again) this.pump();
    })();
  }

  /** @param {string} code @param {any} e */
  warn(code, e) {
    this.emit("warning", { code, message: e && e.message ? e.message : String(e) });
  }

  /** Makes one HTTP request of the engine and hands it the answer.
   * @param {HttpCall} r */
  async call(r) {
    /** @type {Record<string, string>} */
    const headers = {};
    if (r.token) headers.authorization = `Bearer ${r.token}`;
    if (r.body !== undefined) headers["content-type"] = "application/json";
    try {
      const res = await fetch(r.path, { method: r.method, headers, body: r.body });
      const body = new Uint8Array(await res.arrayBuffer());
      if (this.freed) return;
      this.device.handle_response(r.id, res.status, body);
    } catch (e) {
      if (this.freed) return;
      this.device.handle_unreachable(r.id, e instanceof Error ? e.message : String(e));
    }
    this.pump();
  }

  /** Turns an engine event into what the interface listens to.
   * @param {ClientEvent} e */
  dispatch(e) {
    switch (e.kind) {
      case "done": {
        const waiting = this.ops.get(e.op);
        this.ops.delete(e.op);
        if (!waiting) break;
        if (e.error) {
          const err = e.error.status
            ? new ServerError(e.error.status, e.error.server_code || e.error.code, e.error.message)
            : new AppError(e.error.code, e.error.message);
          waiting.reject(err);
        } else {
          waiting.resolve(e);
        }
        break;
      }
      case "changed":
        this.emit("changed", { space: e.space, streams: e.streams });
        break;
      case "membership":
        this.emit("members", { space: e.space });
        this.emit("spaces", {});
        break;
      case "joined":
      case "removed":
        this.emit("spaces", {});
        break;
      case "warning":
        this.emit("warning", { code: e.code, space: e.space, message: e.message });
        break;
      case "presence": {
        let payload = null;
        try {
          payload = JSON.parse(e.payload);
        } catch (_) {
          break; // not JSON: not from this app
        }
        this.emit("presence", { space: e.space, user: e.user, device: e.device, payload });
        break;
      }
    }
  }

  // ------------------------------------------------------------ connection

  /** Lets the engine keep a connection open (it opens it when it wants). */
  start() {
    this.closed = false;
    this.pump();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }

  /** Locks: stores the state, then frees the engine (device key, MLS
   * state, epoch secrets, documents: zeroized as they are dropped) and the
   * state key. Nothing of the account stays in memory but what the page
   * shows until it is drawn again; unlocking needs the passphrase, or the
   * device's authenticator where its user turned that on. */
  async lock() {
    if (this.freed) return;
    clearTimeout(this.saveTimer);
    try {
      await this.save();
    } catch (e) {
      this.warn("sealed", e);
    }
    this.close();
    await this.saving.catch(() => {});
    this.freed = true;
    this.device.free();
    this.key.free();
  }

  /** Erases every trace of this account from this browser: its sealed
   * state, its kept edits and interrupted uploads, and the whole database
   * if no other account is left. The server still knows the device: to
   * shut it out, revoke it from another device. */
  async erase() {
    const user = this.user;
    await this.lock();
    await vault.remove(user);
    if ((await vault.users()).length === 0) await vault.destroy();
  }

  connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    // A browser cannot set the Authorization header of a WebSocket: the
    // token travels as a subprotocol, never in the URL (URLs end in logs).
    const ws = new WebSocket(`${proto}//${location.host}/v1/ws`, ["amicus.v1", `amicus.bearer.${this.device.token() || ""}`]);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.online = true;
      this.device.link_up();
      this.emit("status", { online: true });
      this.pump();
    };
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      try {
        this.device.handle_frame(new Uint8Array(m.data));
      } catch (e) {
        this.warn("protocol", e);
      }
      this.pump();
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.online = false;
      this.device.link_down(opened);
      if (opened) this.emit("status", { online: false });
      this.pump();
    };
  }

  // --------------------------------------------------------------- pairing

  /**
   * Shows a pairing code for a new browser of this user (PROTOCOL §3.6):
   * `{code, done, stop}`, where `done` resolves with the new device's id
   * once the engine has certified, registered and answered its offer,
   * and rejects with `pairing_expired` when no browser used the code, or
   * `stopped` after `stop()`.
   */
  async startPairing() {
    const code = new PairingCode();
    const shown = code.display();
    let op;
    try {
      // The server keeps only an offer made on this code's channel.
      await this.run(this.device.open_pairing(code));
      op = this.device.pair(code);
    } finally {
      code.free();
    }
    const done = this.run(op).then((d) => /** @type {string} */ (d.device));
    return { code: shown, done, stop: () => { this.device.cancel(op); this.pump(); } };
  }

  /**
   * Adds this user's `device` (a browser just linked) to every space this
   * browser manages, once it has published KeyPackages (the engine waits
   * for them). Returns `{added, others}`: space ids where it was added,
   * and those where a space manager must add it.
   * @param {string} device
   */
  async addNewDevices(device) {
    const d = await this.run(this.device.add_device(device));
    return { added: d.added?.added || [], others: d.added?.others || [] };
  }

  // ---------------------------------------------------------------- spaces

  /** An HTTP call with this device's session (the interface's own reads:
   * listings, the public library, recovery).
   * @param {string} method @param {string} path @param {unknown} [body] */
  api(method, path, body) {
    return http(method, path, this.device.token(), body);
  }

  /** Creates a confidential space with its library, named `name` (inside
   * the space: the server sees only an id); returns its id.
   * @param {string} name */
  async createSpace(name) {
    const done = await this.run(this.device.create_space());
    const space = done.space;
    if (name) await this.setSpaceProfile(space, name, "");
    this.emit("spaces", {});
    return space;
  }

  /** Names and describes a space (space managers only), sent at once.
   * @param {string} space @param {string} name @param {string} description */
  async setSpaceProfile(space, name, description) {
    this.device.set_space_profile(space, name, description);
    await this.flushSpace(space);
  }

  /** Reads a space to the end of its log. @param {string} space */
  sync(space) {
    return this.run(this.device.sync(space));
  }

  /** Adds every device of `user` to the space with `role`.
   * @param {string} space @param {string} user @param {string} role */
  invite(space, user, role) {
    return this.run(this.device.invite(space, user, role));
  }

  /** Removes `user` and all their devices from the space.
   * @param {string} space @param {string} user */
  remove(space, user) {
    return this.run(this.device.remove(space, user));
  }

  /** This user's devices as the directory lists them, each checked
   * against the identity key by the engine.
   * @returns {Promise<OwnDevice[]>} */
  async ownDevices() {
    const listing = await this.api("GET", `/v1/users/${encodeURIComponent(this.user)}`);
    return this.device.own_devices(JSON.stringify(listing)).devices;
  }

  /** Whether this user administers the server (the directory says so).
   * @returns {Promise<boolean>} */
  async isAdmin() {
    const listing = await this.api("GET", `/v1/users/${encodeURIComponent(this.user)}`);
    return Boolean(listing && listing.admin);
  }

  /** This user's choice of notification email, and whether the server
   * sends email at all.
   * @returns {Promise<{available: boolean, email: string, mode: string, language: string}>} */
  notifications() {
    return this.api("GET", "/v1/account/notifications");
  }

  /** Sets where and how often (`off`, `daily`, `immediate`) the server
   * says there is activity; the server checks every field.
   * @param {string} email @param {string} mode @param {string} language */
  setNotifications(email, mode, language) {
    return this.api("PUT", "/v1/account/notifications", { email, mode, language });
  }

  /** A new invitation code to the server, valid `days` days (1–90); only
   * the administrator may make one.
   * @param {number} days @returns {Promise<{code: string, expires_in_days: number}>} */
  newInvitation(days) {
    return this.api("POST", "/v1/invites", { days });
  }

  /** Revokes another device of this user (this browser holds the identity
   * key); resolves with the spaces it was removed from.
   * @param {string} device @returns {Promise<string[]>} */
  async revoke(device) {
    const done = await this.run(this.device.revoke(device));
    return done.removed_from || [];
  }

  /** Gives `user` another role in the space.
   * @param {string} space @param {string} user @param {string} role */
  setRole(space, user, role) {
    return this.run(this.device.set_role(space, user, role));
  }

  /** Lists the space in the directory, `open` to whoever asks or on
   * request (`name` empty: takes it out).
   * @param {string} space @param {string} name @param {string} description @param {boolean} [open] */
  listSpace(space, name, description, open = false) {
    return this.run(name ? this.device.list_space(space, name, description, open) : this.device.unlist_space(space));
  }

  /** Opens a drop box (space managers): its id and its link's fragment.
   * @param {string} space @param {string} label @param {number} days @param {number} quota
   * @returns {Promise<NewDropBox>} */
  async openDropBox(space, label, days, quota) {
    const done = await this.run(this.device.open_drop_box(space, label, days, quota));
    if (!done.drop_box) throw new AppError("protocol", "no drop box in the answer");
    return done.drop_box;
  }

  /** Closes a drop box (space managers).
   * @param {string} space @param {string} id */
  closeDropBox(space, id) {
    return this.run(this.device.close_drop_box(space, id));
  }

  /** The space's drop boxes and submissions, checked by the engine.
   * @param {string} space @returns {Promise<DropBoxList>} */
  async dropBoxes(space) {
    const done = await this.run(this.device.drop_boxes(space));
    if (!done.drop_boxes) throw new AppError("protocol", "no drop boxes in the answer");
    return done.drop_boxes;
  }

  /** Downloads a submission's sealed parts and opens each (nothing is
   * returned unless every part opens whole).
   * @param {string} space @param {Submission} submission
   * @returns {Promise<Array<OpenedPart & { content: Uint8Array<ArrayBuffer> }>>} */
  async openSubmission(space, submission) {
    const opened = [];
    for (const listed of submission.parts) {
      const part = new PartFetch(listed.size, listed.chunks);
      let sealed;
      try {
        for (;;) {
          const step = part.step();
          if (step.kind === "get") {
            let blob;
            try {
              blob = await http("GET", `/v1/spaces/${space}/drop-chunks/${step.id}`, this.device.token());
            } catch (e) {
              failTo((status, after) => part.get_failed(status, after), e);
              continue;
            }
            part.got(blob);
          } else if (step.kind === "wait") {
            await sleep(step.ms);
          } else {
            sealed = part.take();
            break;
          }
        }
      } finally {
        part.free();
      }
      const info = this.device.open_submission_part(space, submission.epoch, sealed);
      opened.push({ ...info, content: /** @type {Uint8Array<ArrayBuffer>} */ (this.device.take_opened()) });
    }
    return opened;
  }

  /** Accepts a request to join: adds the user's devices with `role`.
   * @param {string} space @param {string} user @param {string} role */
  async accept(space, user, role) {
    await this.run(this.device.accept(space, user, role));
    this.emit("members", { space });
  }

  /** Declines a request to join. @param {string} space @param {string} user */
  decline(space, user) {
    return this.run(this.device.decline(space, user));
  }

  // ------------------------------------------------------------- documents

  /** A local edit was made through `this.device`: the engine sends it at
   * its next flush interval. */
  edited() {
    this.pump();
  }

  /** Sends a document's edits now (they stay queued while offline).
   * @param {string} space @param {string} stream */
  flush(space, stream) {
    return this.run(this.device.flush(space, stream));
  }

  /** Sends now what this browser wrote in a space (each document with
   * edits waiting; the engine decides the order).
   * @param {string} space */
  flushSpace(space) {
    return this.run(this.device.flush_space(space));
  }

  /** The id of a space's library document. @param {string} space */
  libraryStream(space) {
    return Device.library_stream(space);
  }

  /** A new filing, listed in `folder` (empty: the top of the library).
   * @param {string} space @param {string} title @param {string} [folder] */
  async newDocument(space, title, folder = "") {
    const stream = this.device.new_document(space, title, folder);
    await this.flushSpace(space);
    return stream;
  }

  /** A new discussion with its first post (`attachments`: library entry
   * ids), sent at once; its id.
   * @param {string} space @param {string} title @param {string} text @param {string[]} [attachments] */
  async newDiscussion(space, title, text, attachments = []) {
    const stream = this.device.new_discussion(space, title, text, attachments);
    await this.flushSpace(space);
    return stream;
  }

  /** Posts in a discussion (a reply to `replyTo`, or "" for none), sent at once.
   * @param {string} space @param {string} stream @param {string} replyTo @param {string} text @param {string[]} [attachments] */
  async post(space, stream, replyTo, text, attachments = []) {
    const id = this.device.post(space, stream, replyTo, text, attachments);
    await this.flushSpace(space);
    return id;
  }

  /** Replaces the text of one of this user's posts, sent at once.
   * @param {string} space @param {string} stream @param {string} post @param {string} text */
  async editPost(space, stream, post, text) {
    this.device.edit_post(space, stream, post, text);
    await this.flushSpace(space);
  }

  /** Counts a document (or a space's library) as seen as this browser
   * holds it now; kept with the state, in this browser only.
   * @param {string} space @param {string} stream */
  seen(space, stream) {
    try {
      this.device.mark_seen(space, stream);
    } catch (_) {
      return; // not in the space (any more)
    }
    if (this.device.changed()) {
      this.pump();
      this.emit("activity", {});
    }
  }

  /** Sends a presence message to the members online (best effort).
   * @param {string} space @param {unknown} payload */
  presence(space, payload) {
    try {
      if (this.device.presence(space, JSON.stringify(payload))) this.pump();
    } catch (_) {
      /* not in the space (any more): nothing to show */
    }
  }

  // ----------------------------------------------------------------- files

  /** The uploads of this user interrupted earlier (a closed page, a lost
   * connection): `{id, file, space, folder, name, size, done, chunks}`. */
  async interruptedUploads() {
    const out = [];
    for (const u of await vault.uploads(this.user)) {
      try {
        out.push({ id: u.id, ...Upload.describe(u.sealed, u.chunk?.blob, this.key) });
      } catch (_) {
        /* sealed under another key or corrupt: not ours to resume */
      }
    }
    return out;
  }

  /** Forgets an interrupted upload (its chunks stay unreferenced). */
  discardUpload(id) {
    return vault.removeUpload(id);
  }

  /**
   * Uploads `file` into `space` (`folder`, "" for the top; with
   * `replaces`, a file's id in the library, as that file's new version);
   * `progress(done, total)`. With `resume` (an id from
   * `interruptedUploads()`), continues that upload with the same file
   * chosen again. The module's `Upload` decides every step (what to seal,
   * store before sending, send again, retry or start afresh); this only
   * reads the file, stores, sends and waits.
   */
  async upload(space, file, folder, progress, resume, replaces = "") {
    let record = null;
    if (resume) {
      record = (await vault.uploads(this.user)).find((u) => u.id === resume);
      if (!record) throw new AppError("no-upload", "no such interrupted upload");
      const saved = Upload.describe(record.sealed, record.chunk?.blob, this.key);
      space = saved.space;
      folder = saved.folder;
      replaces = saved.replaces;
    }
    this.device.check_upload(space, folder || "", replaces || "");
    const up = new Upload(file.name, file.type || "application/octet-stream", BigInt(file.size),
      space, folder || "", replaces || "", record?.sealed, record?.chunk?.blob, this.key);
    const id = record ? record.id : up.file_id();
    try {
      const [sent, chunks] = up.progress();
      progress(sent, chunks);
      for (;;) {
        const step = up.step(this.key);
        if (step.kind === "read") {
          up.read(new Uint8Array(await file.slice(step.offset, step.offset + step.len).arrayBuffer()));
        } else if (step.kind === "store") {
          await vault.putUpload({ id, user: this.user, sealed: step.sealed, chunk: null });
          up.stored();
        } else if (step.kind === "put") {
          let sent = true;
          try {
            await http("PUT", `/v1/blobs/${step.id}`, this.device.token(), undefined, step.blob);
          } catch (e) {
            sent = false;
            failTo((status, after) => up.send_failed(status, after), e);
          }
          if (sent) up.sent();
          const [done, total] = up.progress();
          progress(done, total);
        } else if (step.kind === "missing") {
          let missing;
          try {
            missing = (await this.api("POST", "/v1/blobs/missing", { ids: step.ids })).missing;
          } catch (e) {
            failTo((status, after) => up.missing_failed(status, after), e);
            continue;
          }
          up.missing(missing);
        } else if (step.kind === "wait") {
          await sleep(step.ms);
        } else {
          this.device.list_upload(up);
          break;
        }
      }
      await this.flushSpace(space);
      await vault.removeUpload(id);
    } finally {
      up.free();
    }
  }

  /** Downloads and opens a file; returns a Blob. The module's `Download`
   * decides what to fetch, what to retry and when the file is whole. */
  async download(space, fileId, progress) {
    const d = this.device.download(space, fileId);
    /** @type {BlobPart[]} */
    const parts = [];
    try {
      for (;;) {
        const step = d.step();
        if (step.kind === "get") {
          let blob;
          try {
            blob = await http("GET", `/v1/blobs/${step.id}`, this.device.token());
          } catch (e) {
            failTo((status, after) => d.get_failed(status, after), e);
            continue;
          }
          parts.push(/** @type {Uint8Array<ArrayBuffer>} */ (d.got(blob)));
          const [done, total] = d.progress();
          progress(done, total);
        } else if (step.kind === "wait") {
          await sleep(step.ms);
        } else {
          return { blob: new Blob(parts, { type: d.media_type() }), name: d.name() };
        }
      }
    } finally {
      d.free();
    }
  }

}
