// The browser client's I/O: HTTP, the WebSocket, IndexedDB, timers. Every
// key and every check lives in the wasm module (amicus_client); this file
// moves bytes between it and the network and retries what the protocol
// says to retry (PROTOCOL §6: commits that lose their epoch, envelopes
// sealed under an old epoch, rate limits).

import init, { Device, Linking, PairingCode, StateKey, Upload } from "./pkg/amicus_client.js";

export { Upload };

let ready = null;
/** Loads the wasm module once. */
export function load() {
  if (!ready) ready = init({ module_or_path: new URL("./pkg/amicus_client_bg.wasm", import.meta.url) });
  return ready;
}

const KEY_PACKAGE_TARGET = 20;
const CHUNK_SIZE = 1 << 20;

/** An error the server answered with (`{error, message}`). */
export class ServerError extends Error {
  constructor(status, code, message) {
    super(message || `${status} ${code}`);
    this.status = status;
    this.code = code;
  }
}

// ---------------------------------------------------------------- storage

/**
 * The device states of this browser, sealed, in IndexedDB: `devices` holds
 * `{user, salt, sealed}` (the state), `unsent` holds `{user, sealed}` (the
 * edits the server has not acknowledged, sealed under the same key),
 * `uploads` holds `{id, user, sealed, chunk}` for each interrupted upload
 * (its sealed progress, and the last sealed chunk, ciphertext, until the
 * server has it).
 */
export const vault = {
  db: null,
  async open() {
    if (this.db) return this.db;
    this.db = await new Promise((resolve, reject) => {
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
    return this.db;
  },
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
  /** Stores the sealed unsent edits, or forgets them (`sealed` undefined). */
  async putUnsent(user, sealed) {
    return this.tx("readwrite", (s) => (sealed ? s.put({ user, sealed }) : s.delete(user)), "unsent");
  },
};

// ------------------------------------------------------------------- HTTP

async function http(method, path, token, body, raw) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  let payload;
  if (raw !== undefined) {
    headers["content-type"] = "application/octet-stream";
    payload = raw;
  } else if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload });
  const type = res.headers.get("content-type") || "";
  if (!res.ok) {
    let code = "error";
    let message = `${res.status}`;
    if (type.startsWith("application/json")) {
      const e = await res.json().catch(() => ({}));
      code = e.error || code;
      message = e.message || message;
    }
    throw new ServerError(res.status, code, message);
  }
  if (type.startsWith("application/json")) return res.json();
  return new Uint8Array(await res.arrayBuffer());
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ----------------------------------------------------------------- client

/**
 * One signed-in device. Emits events on `this.events` (an EventTarget):
 * `status` ({online}), `spaces`, `changed` ({space, streams}), `members`
 * ({space}), `presence` ({space, user, device, payload}), `warning`
 * ({message}), `unsent` ({documents}: how many documents have edits the
 * server has not acknowledged, stored in this browser).
 */
export class Client {
  constructor(device, key, salt) {
    this.device = device;
    this.key = key;
    this.salt = salt;
    this.unsentDocuments = 0; // documents with edits kept in this browser
    this.token = null;
    this.ws = null;
    this.online = false;
    this.nextRequest = 1;
    this.waiting = new Map(); // request id -> {resolve, reject, timer}
    this.synced = new Map(); // space -> Promise resolver list
    this.subscribed = new Set();
    this.isSynced = new Set(); // spaces whose catch-up ended on this connection
    this.subscribeRequests = new Map(); // space -> request id of its Subscribe
    this.brokenShown = new Set(); // spaces whose broken log was reported
    this.dirty = new Map(); // "space/stream" -> true: unsent local edits
    this.events = new EventTarget();
    this.saving = Promise.resolve();
    this.closed = false;
  }

  emit(type, detail) {
    this.events.dispatchEvent(new CustomEvent(type, { detail }));
  }

  get user() {
    return this.device.user();
  }

  /** Creates a new user with this browser as its first device. */
  static async signUp(user, passphrase, invite) {
    await Client.vacant(user);
    const device = Device.create(user);
    return Client.settle(device, passphrase, () => http("POST", "/v1/register", null, {
      certificate: device.certificate(),
      invite: invite || null,
    }));
  }

  /** Loads the module; refuses a user this browser already holds. */
  static async vacant(user) {
    await load();
    if ((await vault.users()).includes(user)) throw new Error("exists");
  }

  /** Stores a new device of this browser under `passphrase` (the key is
   * derived first, so nothing can fail between registering and storing
   * but the storage itself), once `register()` has made it known to the
   * server; then signs it in and publishes KeyPackages. */
  static async settle(device, passphrase, register) {
    const salt = StateKey.new_salt();
    const client = new Client(device, StateKey.derive(passphrase, salt), salt);
    await register();
    await client.save();
    await client.signIn();
    await client.replenishKeyPackages();
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
    let linking;
    try {
      linking = new Linking(user, code);
    } catch (e) {
      throw new Error(`bad-code: ${e.message}`);
    }
    try {
      let o;
      try {
        o = await http("POST", "/v1/pairing", null, { user, channel: linking.channel(), offer: linking.offer() });
      } catch (e) {
        if (e instanceof ServerError && e.status === 404) throw new Error("no-pairing");
        throw e;
      }
      if (onOffered) onOffered();
      const deadline = Date.now() + (o.expires_in_secs || 600) * 1000;
      let device = null;
      while (!device) {
        if (Date.now() > deadline) throw new Error("pairing-expired");
        await sleep(1000);
        let a;
        try {
          a = await http("GET", `/v1/pairing/${o.id}`);
        } catch (e) {
          if (e instanceof ServerError && e.status === 404) throw new Error("pairing-expired");
          continue; // the network: try again
        }
        if (a.answer) device = linking.complete(a.answer);
      }
      // Registered by the device that answered.
      return Client.settle(device, passphrase, async () => {});
    } finally {
      linking.free();
    }
  }

  /** Recovers the account `user` in this browser with its recovery code:
   * the kit the server keeps opens with the code and gives back the
   * identity key, which certifies a new device for this browser. */
  static async recover(user, code, passphrase) {
    await Client.vacant(user);
    let access;
    try {
      access = Device.recovery_access(code);
    } catch (e) {
      throw new Error(`bad-recovery-code: ${e.message}`);
    }
    const path = `/v1/recovery/${encodeURIComponent(user)}`;
    let kit;
    try {
      kit = (await http("POST", `${path}/kit`, null, { access })).kit;
    } catch (e) {
      // The same answer for no such user, no kit and a wrong code.
      if (e instanceof ServerError && e.status === 404) throw new Error("bad-recovery-code");
      throw e;
    }
    const device = Device.recover(user, code, kit);
    return Client.settle(device, passphrase, () => http("POST", `${path}/devices`, null, { access, certificate: device.certificate() }));
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

  /** Unlocks the device of `user` stored in this browser. */
  static async unlock(user, passphrase) {
    await load();
    const record = await vault.get(user);
    if (!record) throw new Error("no-device");
    const key = StateKey.derive(passphrase, record.salt);
    let device;
    try {
      device = Device.unseal(record.sealed, key);
    } catch (_) {
      throw new Error("wrong-passphrase");
    }
    const client = new Client(device, key, record.salt);
    // Edits the server had not acknowledged when the page was left go out
    // once their space has been read again.
    const unsent = await vault.getUnsent(user);
    if (unsent) {
      try {
        for (const k of device.adopt_unsent(unsent.sealed, key)) client.dirty.set(k, true);
      } catch (e) {
        client.pendingWarning = `edits kept in this browser could not be restored: ${e.message}`;
      }
    }
    try {
      await client.signIn();
    } catch (e) {
      // Unreachable server: the page starts offline and signs in when it
      // reconnects. A refusal is an error.
      if (e instanceof ServerError) throw e;
    }
    return client;
  }

  /** Seals the state and stores it (queued: saves never interleave). */
  save() {
    const sealed = this.device.seal(this.key);
    const record = { user: this.device.user(), salt: this.salt, sealed };
    this.saving = this.saving.then(() => vault.put(record));
    return this.saving;
  }

  /** Seals the edits the server has not acknowledged and stores them. */
  saveUnsent() {
    clearTimeout(this.unsentTimer);
    const { documents, sealed } = this.device.seal_unsent(this.key);
    this.saving = this.saving
      .then(() => vault.putUnsent(this.device.user(), sealed))
      .then(() => {
        this.unsentDocuments = documents;
        this.emit("unsent", { documents });
      })
      .catch((e) => this.emit("warning", { message: `could not keep unsent edits in this browser: ${e.message}` }));
    return this.saving;
  }

  scheduleUnsentSave() {
    clearTimeout(this.unsentTimer);
    this.unsentTimer = setTimeout(() => this.saveUnsent(), 300);
  }

  async signIn() {
    const device = this.device.device_id();
    const c = await http("POST", "/v1/challenge", null, { device });
    const signature = this.device.sign_in(c.challenge);
    const s = await http("POST", "/v1/session", null, { device, challenge: c.challenge, signature });
    this.token = s.token;
  }

  api(method, path, body) {
    return http(method, path, this.token, body);
  }

  async replenishKeyPackages() {
    const me = await this.api("GET", `/v1/users/${encodeURIComponent(this.user)}`);
    const mine = (me.devices || []).find((d) => d.device === this.device.device_id());
    const have = mine ? mine.key_packages || 0 : 0;
    if (have >= KEY_PACKAGE_TARGET / 2) return;
    const kps = this.device.key_packages(KEY_PACKAGE_TARGET - have);
    // The private keys are in the state: store it before anyone can use them.
    await this.save();
    await this.api("POST", "/v1/key-packages", { key_packages: kps });
  }

  // ------------------------------------------------------------ connection

  /** Connects and keeps reconnecting until `close()`. */
  start() {
    this.closed = false;
    if (this.pendingWarning) this.emit("warning", { message: this.pendingWarning });
    this.connect();
    this.pinger = setInterval(() => {
      if (this.online) this.ws.send(Device.ping());
    }, 30000);
  }

  close() {
    this.closed = true;
    clearInterval(this.pinger);
    if (this.ws) this.ws.close();
  }

  connect(delay = 0) {
    if (this.closed) return;
    setTimeout(async () => {
      if (this.closed) return;
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const url = `${proto}//${location.host}/v1/ws?access_token=${encodeURIComponent(this.token)}`;
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onopen = () => this.onOpen();
      ws.onmessage = (m) => this.onFrame(new Uint8Array(m.data));
      ws.onclose = async () => {
        if (this.ws !== ws) return;
        const was = this.online;
        this.online = false;
        this.subscribed.clear();
        this.isSynced.clear();
        this.subscribeRequests.clear();
        for (const [, w] of this.waiting) w.reject(new Error("offline"));
        this.waiting.clear();
        if (was) this.emit("status", { online: false });
        if (this.closed) return;
        // The token may have expired: sign in again before reconnecting.
        try {
          await this.signIn();
        } catch (_) {
          /* the server is unreachable: keep the token, try again later */
        }
        this.connect(Math.min(10000, 1000 + delay * 2));
      };
    }, delay);
  }

  async onOpen() {
    this.online = true;
    this.emit("status", { online: true });
    try {
      await this.acceptWelcomes();
      for (const s of this.device.spaces()) {
        if (!s.removed) this.subscribe(s.id);
      }
      // Edits made while offline (or kept from before a reload) go out
      // once their space has been read.
      for (const k of [...this.dirty.keys()]) {
        const [space, stream] = k.split("/");
        this.subscribe(space)
          .then(() => this.flush(space, stream))
          .catch(() => {});
      }
    } catch (e) {
      this.emit("warning", { message: e.message });
    }
  }

  subscribe(space) {
    if (!this.online || this.subscribed.has(space)) return this.whenSynced(space);
    this.subscribed.add(space);
    const request = this.nextRequest++;
    const p = this.whenSynced(space);
    // Answered by `Synced` (which carries no request id) or a refusal.
    this.subscribeRequests.set(space, request);
    this.waiting.set(request, {
      resolve: () => {},
      reject: () => {},
      refused: (ev) => {
        this.subscribed.delete(space);
        if (ev.code === "forbidden") {
          // A device removed from the space is no longer served.
          this.device.mark_removed(space);
          this.save();
          this.emit("spaces", {});
        }
        this.emit("warning", { message: ev.message });
      },
    });
    this.ws.send(this.device.subscribe(request, space));
    return p;
  }

  whenSynced(space) {
    return new Promise((resolve) => {
      const list = this.synced.get(space) || [];
      list.push(resolve);
      this.synced.set(space, list);
      if (this.online && this.subscribed.has(space) && this.isSynced.has(space)) {
        this.synced.set(space, []);
        resolve();
      }
    });
  }

  onFrame(bytes) {
    let ev;
    try {
      ev = this.device.receive(bytes);
    } catch (e) {
      this.emit("warning", { message: `unreadable frame: ${e.message}` });
      return;
    }
    switch (ev.kind) {
      case "entry":
        if (ev.warning) this.emit("warning", { message: ev.warning });
        if (ev.broken && !this.brokenShown.has(ev.space)) {
          this.brokenShown.add(ev.space);
          this.emit("warning", { message: ev.broken });
        }
        if (ev.missing != null && !this.subscribeRequests.has(ev.space)) {
          // An entry was skipped on the way: read the log again from the
          // first missing one.
          this.subscribed.delete(ev.space);
          this.isSynced.delete(ev.space);
          this.subscribe(ev.space).catch(() => {});
        }
        if (ev.streams.length) this.emit("changed", { space: ev.space, streams: ev.streams });
        if (ev.membership) {
          this.scheduleSave();
          this.emit("members", { space: ev.space });
          this.emit("spaces", {});
        } else {
          this.scheduleSave();
        }
        break;
      case "synced": {
        this.isSynced.add(ev.space);
        this.waiting.delete(this.subscribeRequests.get(ev.space));
        this.subscribeRequests.delete(ev.space);
        if (ev.broken) this.emit("warning", { message: ev.broken });
        const list = this.synced.get(ev.space) || [];
        this.synced.set(ev.space, []);
        for (const r of list) r();
        this.emit("changed", { space: ev.space, streams: [] });
        break;
      }
      case "accepted":
      case "refused": {
        const w = this.waiting.get(ev.request);
        if (!w) break;
        this.waiting.delete(ev.request);
        clearTimeout(w.timer);
        if (ev.kind === "refused" && w.refused) w.refused(ev);
        w.resolve(ev);
        break;
      }
      case "welcome":
        this.acceptWelcomes().catch((e) => this.emit("warning", { message: e.message }));
        break;
      case "presence":
        this.emit("presence", ev);
        break;
      default:
        break;
    }
  }

  scheduleSave() {
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => this.save(), 300);
  }

  /** Sends an Append frame built by `make(request)`; resolves with the answer. */
  async append(make, request = this.nextRequest++) {
    if (!this.online) throw new Error("offline");
    const frame = make(request);
    if (!frame) return null;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(request);
        reject(new Error("the server did not answer"));
      }, 30000);
      this.waiting.set(request, { resolve, reject, timer });
      this.ws.send(frame);
    });
  }

  /** Waits until this device has read the space up to its current epoch. */
  async catchUp(space, epoch) {
    for (let i = 0; i < 100; i++) {
      const s = this.device.spaces().find((x) => x.id === space);
      if (!s || s.epoch >= epoch) return;
      await sleep(100);
    }
    throw new Error(`could not follow space ${space} to epoch ${epoch}`);
  }

  // --------------------------------------------------------------- pairing

  /**
   * Shows a new pairing code (the first device only) and answers the offer
   * made with it; returns `{code, done}` where `done` resolves with the new
   * device's id once it is certified, or rejects. `stop()` on the returned
   * object gives up.
   */
  async startPairing() {
    const code = new PairingCode();
    try {
      // The server keeps only an offer made on this code's channel.
      await this.api("POST", "/v1/pairing/open", { channel: code.channel() });
    } catch (e) {
      code.free();
      throw e;
    }
    const shown = code.display();
    let stopped = false;
    const done = (async () => {
      try {
        const deadline = Date.now() + 600 * 1000;
        while (!stopped && Date.now() < deadline) {
          const o = await this.api("GET", "/v1/pairing").catch(() => ({ offers: [] }));
          for (const offer of o.offers || []) {
            let a;
            try {
              a = this.device.accept_pairing(code, offer.offer);
            } catch (_) {
              continue; // made with another code (a typo, or not ours): not answered
            }
            // Registered before the answer: the new device signs in with it.
            await this.api("POST", "/v1/devices", { certificate: a.certificate });
            await this.api("POST", `/v1/pairing/${offer.id}/answer`, { answer: a.answer });
            return a.device;
          }
          await sleep(1500);
        }
        throw new Error(stopped ? "stopped" : "pairing-expired");
      } finally {
        code.free();
      }
    })();
    return { code: shown, done, stop: () => { stopped = true; } };
  }

  /**
   * Adds this user's devices that are in no space yet (a browser just
   * linked) to every space this device manages, once they have published
   * KeyPackages. Returns `{added, others}`: space ids where they were
   * added, and those where a space manager must add them.
   */
  async addNewDevices(device) {
    for (let i = 0; i < 120; i++) {
      const me = await this.api("GET", `/v1/users/${encodeURIComponent(this.user)}`);
      const d = (me.devices || []).find((x) => x.device === device);
      if (d && d.key_packages > 0) break;
      await sleep(1000);
    }
    const added = [];
    const others = [];
    for (const s of this.device.spaces()) {
      if (s.removed) continue;
      if (this.device.members(s.id).some((m) => m.device === device)) continue;
      if (s.role !== "space_manager") {
        others.push(s.id);
        continue;
      }
      await this.invite(s.id, this.user, s.role);
      added.push(s.id);
    }
    return { added, others };
  }

  // ---------------------------------------------------------------- spaces

  async acceptWelcomes() {
    const w = await this.api("GET", "/v1/welcomes");
    let joined = false;
    for (const item of w.welcomes || []) {
      if (!this.device.has_space(item.space)) {
        try {
          this.device.join(item.welcome);
          joined = true;
          await this.save();
        } catch (e) {
          this.emit("warning", { message: `refused the invitation to space ${item.space}: ${e.message}` });
        }
      }
      await this.api("DELETE", `/v1/welcomes/${item.id}`);
      if (this.device.has_space(item.space)) this.subscribe(item.space);
    }
    if (joined) {
      this.emit("spaces", {});
      await this.replenishKeyPackages();
    }
  }

  /** Creates a confidential space with its library; returns its id. */
  async createSpace(name) {
    const space = this.device.create_space();
    await this.save();
    await this.api("POST", "/v1/spaces", { id: space, kind: "confidential" });
    await this.subscribe(space);
    await this.append((r) => this.device.epoch_record(r, space));
    this.device.init_library(space);
    if (name) this.device.new_folder(space, name, "");
    await this.flush(space, Device.library_stream(space));
    await this.save();
    this.emit("spaces", {});
    return space;
  }

  /** Adds every device of `user` to the space with `role`. */
  async invite(space, user, role) {
    const listing = await this.api("GET", `/v1/users/${encodeURIComponent(user)}`);
    const key = this.device.trust(user, JSON.stringify(listing));
    await this.save();
    let claimed = null;
    for (let attempt = 0; attempt < 20; attempt++) {
      await this.subscribe(space);
      const present = this.device
        .members(space)
        .filter((m) => m.user === user)
        .map((m) => m.device);
      if (!claimed) {
        const c = await this.api("POST", `/v1/users/${encodeURIComponent(user)}/key-packages/claim`, {
          except: present,
        });
        claimed = c.key_packages || [];
      }
      const kps = claimed.filter((k) => !present.includes(k.device)).map((k) => k.key_package);
      const answer = await this.commit(space, (r) => this.device.stage_invite(r, space, user, key, kps, role));
      if (answer) return answer;
    }
    throw new Error("the space kept changing; 20 attempts to commit lost their epoch");
  }

  /** Removes `user` and all their devices from the space. */
  async remove(space, user) {
    for (let attempt = 0; attempt < 20; attempt++) {
      await this.subscribe(space);
      const answer = await this.commit(space, (r) => this.device.stage_remove(r, space, user));
      if (answer) return answer;
    }
    throw new Error("the space kept changing; 20 attempts to commit lost their epoch");
  }

  /** Gives `user` another role in the space. */
  async setRole(space, user, role) {
    for (let attempt = 0; attempt < 20; attempt++) {
      await this.subscribe(space);
      const answer = await this.commit(space, (r) => this.device.stage_role(r, space, user, role));
      if (answer) return answer;
    }
    throw new Error("the space kept changing; 20 attempts to commit lost their epoch");
  }

  /** One attempt at a commit: null if another commit took the epoch. */
  async commit(space, stage) {
    if (!this.online) throw new Error("offline");
    const request = this.nextRequest++;
    const frame = stage(request);
    // Write-ahead: the pending commit is stored before it is sent. If no
    // answer comes (a lost connection, a reload), the commit found in the
    // log later is recognised as ours and merged; not found once the log is
    // read to its end, the next staging drops it.
    await this.save();
    const answer = await this.append(() => frame, request);
    if (answer.kind === "accepted") {
      const epoch = this.device.commit_accepted(space);
      await this.save();
      await this.append((r) => this.device.epoch_record(r, space)).catch(() => {});
      this.emit("members", { space });
      this.emit("spaces", {});
      return epoch;
    }
    this.device.commit_rejected(space);
    if (answer.code === "commit_conflict") {
      await this.catchUp(space, answer.current_epoch);
      return null;
    }
    throw new ServerError(409, answer.code, answer.message);
  }

  // ------------------------------------------------------------- documents

  markDirty(space, stream) {
    this.dirty.set(`${space}/${stream}`, true);
    this.scheduleUnsentSave();
    clearTimeout(this.flushTimer);
    this.flushTimer = setTimeout(() => {
      for (const k of [...this.dirty.keys()]) {
        const [sp, st] = k.split("/");
        this.flush(sp, st).catch(() => {});
      }
    }, 150);
  }

  /** Sends a document's unsent changes; they stay queued while offline. */
  async flush(space, stream) {
    const k = `${space}/${stream}`;
    if (this.flushing?.has(k)) {
      this.dirty.set(k, true);
      return;
    }
    this.flushing = this.flushing || new Set();
    this.flushing.add(k);
    this.dirty.delete(k);
    try {
      for (let attempt = 0; attempt < 20; attempt++) {
        if (!this.online) {
          this.dirty.set(k, true);
          return;
        }
        let sent = false;
        let answer;
        try {
          answer = await this.append((r) => {
            const f = this.device.flush(r, space, stream);
            sent = !!f;
            return f;
          });
        } catch (e) {
          if (sent) this.device.flush_refused(space, stream);
          this.dirty.set(k, true);
          return;
        }
        if (!sent) return;
        if (answer.kind === "accepted") {
          this.device.flush_accepted(space, stream);
          if (!this.dirty.has(k)) return;
          this.dirty.delete(k);
          continue;
        }
        this.device.flush_refused(space, stream);
        if (answer.code === "stale_epoch") {
          await this.catchUp(space, answer.current_epoch);
        } else if (answer.code === "rate_limited") {
          await sleep(answer.retry_after_ms || 500);
        } else {
          throw new ServerError(409, answer.code, answer.message);
        }
      }
    } finally {
      this.flushing.delete(k);
      this.scheduleUnsentSave();
    }
  }

  /** The id of a space's library document. */
  libraryStream(space) {
    return Device.library_stream(space);
  }

  async newDocument(space, title) {
    const stream = this.device.new_document(space, title);
    await this.flush(space, stream);
    await this.flush(space, Device.library_stream(space));
    return stream;
  }

  /** Sends a presence message (saved first: it advances a ratchet). */
  async presence(space, payload) {
    if (!this.online) return;
    const frame = this.device.presence(0, space, JSON.stringify(payload));
    await this.save();
    if (this.online) this.ws.send(frame);
  }

  // ----------------------------------------------------------------- files

  /** The uploads of this user interrupted earlier (a closed page, a lost
   * connection): `{id, file, space, folder, name, size, done, chunks}`. */
  async interruptedUploads() {
    const out = [];
    for (const u of await vault.uploads(this.user)) {
      try {
        out.push({ id: u.id, ...Upload.describe(u.sealed, this.key) });
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
   * Seals and uploads `file` chunk by chunk into `space` (`folder`, "" for
   * the top); `progress(done, total)`. Resumable: after each chunk is
   * sealed, its progress and the chunk are stored before the chunk is sent
   * (write-ahead, PROTOCOL §10.7); `resume` (an id from
   * `interruptedUploads()`) continues such an upload with the same file
   * chosen again, sealing nothing twice. A different file starts afresh.
   */
  async upload(space, file, folder, progress, resume) {
    let up = null;
    let record = null;
    if (resume) {
      record = (await vault.uploads(this.user)).find((u) => u.id === resume);
      if (!record) throw new Error("no such interrupted upload");
      up = Upload.resume(record.sealed, this.key);
      space = up.space();
      folder = up.folder();
      if (record.chunk) await this.putBlob(record.chunk.id, record.chunk.blob);
      const m = await this.api("POST", "/v1/blobs/missing", { ids: up.chunk_ids() });
      if ((m.missing || []).length) {
        // A chunk sent before is gone from the server: start afresh.
        up.free();
        up = null;
        await vault.removeUpload(record.id);
      }
    }
    if (!up) {
      up = new Upload(file.name, file.type || "application/octet-stream", BigInt(file.size), space, folder || "");
      record = { id: up.file_id(), user: this.user, sealed: null, chunk: null };
    }
    try {
      const total = Number(up.chunk_count());
      progress(Number(up.chunks_sealed()), total);
      const send = async (c) => {
        record.sealed = up.seal_progress(this.key);
        record.chunk = { id: c.id, blob: c.blob };
        await vault.putUpload(record);
        await this.putBlob(c.id, c.blob);
        progress(Number(up.chunks_sealed()), total);
      };
      for (let at = 0; at < file.size; at += CHUNK_SIZE) {
        const bytes = new Uint8Array(await file.slice(at, at + CHUNK_SIZE).arrayBuffer());
        let chunks;
        try {
          chunks = up.push(bytes);
        } catch (e) {
          if (resume && e.message === "source-changed") {
            await vault.removeUpload(record.id);
            return this.upload(space, file, folder, progress);
          }
          throw e;
        }
        for (const c of chunks) await send(c);
      }
      for (let c = up.next_trailing(); c; c = up.next_trailing()) await send(c);
      const manifest = up.finish();
      this.device.add_file(space, manifest, folder || "");
      await this.flush(space, Device.library_stream(space));
      await vault.removeUpload(record.id);
    } finally {
      up.free();
    }
  }

  /** Uploads one blob, retrying through network failures (resumes). */
  async putBlob(id, blob) {
    for (let attempt = 0; ; attempt++) {
      try {
        await http("PUT", `/v1/blobs/${id}`, this.token, undefined, blob);
        return;
      } catch (e) {
        if (e instanceof ServerError && e.status !== 503 && e.status !== 429) throw e;
        if (attempt >= 30) throw e;
        await sleep(Math.min(10000, 500 * 2 ** attempt));
      }
    }
  }

  /** Downloads and opens a file; returns a Blob. */
  async download(space, fileId, progress) {
    const d = this.device.download(space, fileId);
    const ids = d.chunk_ids();
    const parts = [];
    for (let i = 0; i < ids.length; i++) {
      let blob;
      for (let attempt = 0; ; attempt++) {
        try {
          blob = await http("GET", `/v1/blobs/${ids[i]}`, this.token);
          break;
        } catch (e) {
          if (e instanceof ServerError || attempt >= 30) throw e;
          await sleep(Math.min(10000, 500 * 2 ** attempt));
        }
      }
      parts.push(d.open_chunk(BigInt(i), blob));
      progress(i + 1, ids.length);
    }
    d.finish();
    return { blob: new Blob(parts, { type: d.media_type() }), name: d.name() };
  }
}
