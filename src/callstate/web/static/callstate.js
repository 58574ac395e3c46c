// callstate.js: the browser half of callstate's web calls. An ES module, no build step,
// no dependencies; served by callstate.web at /callstate.js, types in callstate.d.ts.
//
// One CallstateClient per call widget. It keeps the call's resume token per tab
// (sessionStorage) and the caller id across tabs (localStorage); on start and on every
// route change it checks the call BEFORE opening any connection: /v1/resume (epoch+1)
// takes it only where /v1/preflight would have said so, and otherwise refuses with the
// preflight answer, on which the client decides (starts fresh, reports `active`...);
// one round trip instead of two. Then it opens the page's transport.
// Outgoing messages are numbered; during a gap (offline, a network switch, a dropped
// transport) they wait in a queue kept in sessionStorage and go out in order, once,
// when the transport is open again. Tokens are refreshed before they expire.

export const VERSION = "1";

/** An error answered by the server (`code` is its stable JSON code) or met on the way. */
export class CallstateError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.name = "CallstateError";
    this.code = code;
    this.status = status;
  }
}

// Route changes (history.pushState / popstate) reach every client as one window event.
const ROUTE_EVENT = "callstate:route";
let routesPatched = false;

function patchRoutes() {
  if (routesPatched || typeof window === "undefined") return;
  routesPatched = true;
  const push = history.pushState;
  history.pushState = function pushState(...args) {
    const result = push.apply(this, args);
    window.dispatchEvent(new Event(ROUTE_EVENT));
    return result;
  };
  window.addEventListener("popstate", () => window.dispatchEvent(new Event(ROUTE_EVENT)));
}

// Sessions some client in this document started or resumed: a new client for the same
// session here (a component remounted after a route change) is the same tab, not another.
const heldHere = new Set();

// The reload mark is good for this long: a reload reaches its next page well within it.
const RELOAD_MARK_MS = 30_000;

const now = () => performance.now();

function isOpen(transport) {
  return transport != null && (transport.readyState === 1 || transport.readyState === "open");
}

function listen(target, type, fn) {
  if (typeof target.addEventListener === "function") {
    target.addEventListener(type, fn);
    return () => target.removeEventListener(type, fn);
  }
  const prop = `on${type}`;
  const before = target[prop];
  target[prop] = (ev) => {
    if (typeof before === "function") before(ev);
    fn(ev);
  };
  return () => {
    target[prop] = before;
  };
}

function defaultBaseUrl() {
  // the API sits where this module is served from (the app's mount point)
  return new URL(".", import.meta.url).href;
}

function newId() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  return `p-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// Pipecat's SmallWebRTC drops a data-channel message that is not a JSON object with a "type"
const defaultEncode = (seq, data) => JSON.stringify({ type: "callstate", seq, data });

// `{"type": "callstate-ack", "seq": n}` from the receiver: it has recorded every message up to n
const defaultAck = (data) => {
  if (typeof data !== "string" || !data.includes("callstate-ack")) return null;
  try {
    const m = JSON.parse(data);
    return m?.type === "callstate-ack" && Number.isInteger(m.seq) ? m.seq : null;
  } catch {
    return null;
  }
};

export class CallstateClient extends EventTarget {
  /**
   * @param {object} options see callstate.d.ts (ClientOptions)
   */
  constructor(options = {}) {
    super();
    if (typeof options.connect !== "function") {
      throw new CallstateError("bad_option", "CallstateClient needs `connect`: (session) => transport");
    }
    this._connect = options.connect;
    const base = options.baseUrl ?? defaultBaseUrl();
    this._base = new URL(base, location.href).href.replace(/\/?$/, "/");
    this._ns = options.namespace ?? "callstate";
    this._agent = options.agent ?? null;
    this._takeover = options.takeover === true;
    this._encode = options.encode ?? defaultEncode;
    this._acked = options.acked ?? false;
    this._readAck = options.readAck ?? defaultAck;
    this._sentUpTo = 0; // the highest number sent over the current transport
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this._refreshAt = options.refreshAt ?? 0.8;
    this._retryMs = options.retryMs ?? [250, 5000];
    this._callerGiven = options.caller ?? null;
    this._state = "idle";
    this._transport = null;
    this._unlisten = [];
    this._chain = Promise.resolve();
    this._refreshTimer = null;
    this._retryTimer = null;
    this._retrying = false;
    this._failures = 0;
    this._closing = false;
    this.timings = null;
    this._call = this._read(sessionStorage, "call");
    this._queue = this._read(sessionStorage, "outbox") ?? [];
    const mark = Number(sessionStorage.getItem(this._key("unloaded")) ?? 0);
    sessionStorage.removeItem(this._key("unloaded"));
    // set on pagehide of this very tab: a reload or a return, never a duplicated tab
    this._reloaded = mark > 0 && Date.now() - mark < RELOAD_MARK_MS;
    if (options.watch !== false) this._watch();
  }

  // -- what the page reads ------------------------------------------------------------

  /** idle | checking | connecting | open | waiting | active | closed */
  get state() { return this._state; }
  get sessionId() { return this._call?.sessionId ?? null; }
  get epoch() { return this._call?.epoch ?? null; }
  get token() { return this._call?.token ?? null; }
  /** messages waiting for the transport */
  get pending() { return this._queue.filter(([seq]) => seq > this._sentUpTo).length; }
  /** messages sent but not yet acknowledged (always 0 unless `acked`) */
  get unacked() { return this._queue.length - this.pending; }
  /** the caller id this browser uses for every tab (localStorage) */
  get caller() {
    if (this._callerGiven) return this._callerGiven;
    const key = this._key("caller");
    let id = localStorage.getItem(key);
    if (!id) {
      id = newId();
      localStorage.setItem(key, id);
    }
    return id;
  }

  // -- what the page calls ------------------------------------------------------------

  /**
   * Resume this tab's call or start a fresh one, then open the transport.
   * Preflight always runs before any connection. Resolves with the session, or null
   * when nothing was opened (live in another tab: an `active` event; or `fresh: false`).
   */
  start({ fresh = true } = {}) {
    this._closing = false;
    return this._begin(() => this._establish("load", { fresh }));
  }

  /** Take the call from the tab that holds it (after an `active` event). */
  takeover() {
    this._closing = false;
    return this._begin(() => this._establish("takeover", { takeover: true }));
  }

  /**
   * Send one message over the transport, numbered; queued (in order) while the link is
   * down and sent once it is back. Returns its number.
   */
  send(data) {
    const call = this._call;
    if (!call) throw new CallstateError("no_call", "send() before start(): no call yet");
    call.seq = (call.seq ?? 0) + 1;
    this._save();
    this._queue.push([call.seq, data]);
    this._flush();
    return call.seq;
  }

  /** Close the transport but keep the call: a later start() in this tab resumes it. */
  detach() {
    this._closing = true;
    this._stopTimers();
    this._drop();
    this._setState("idle");
  }

  /** Forget the call in this tab: close the transport, drop the token and the queue. */
  end() {
    this._closing = true;
    this._stopTimers();
    this._drop();
    if (this._call) heldHere.delete(this._call.sessionId);
    this._forget();
    this._setState("closed");
  }

  /** Stop listening to the window (for a widget that goes away for good). */
  dispose() {
    this.detach();
    for (const off of this._unlisten) off();
    this._unlisten = [];
  }

  // -- the flow -------------------------------------------------------------------

  // a page-started attempt: its failure is an `error` event too, and a call this tab
  // holds is retried (the promise still rejects, so the page knows the first try failed)
  async _begin(fn) {
    try {
      return await this._serial(fn);
    } catch (err) {
      this._fail(err);
      if (this._call && (err.code === "network" || err.code === "transport")) {
        this._setState("waiting");
        this._failures += 1;
        this._retry("network");
      } else if (this._state !== "closed" && this._state !== "active") {
        this._drop();
        this._setState("idle"); // nothing open: start() may be called again
      }
      throw err;
    }
  }

  _serial(fn) {
    const run = this._chain.then(fn, fn);
    this._chain = run.catch(() => {});
    return run;
  }

  async _establish(reason, { fresh = true, takeover = false } = {}) {
    const t0 = now();
    this.timings = { reason, at_ms: t0 };
    this._drop();
    if (!navigator.onLine) await this._online();
    let why = "new";
    const call = this._call;
    if (call?.token) {
      this._setState("checking");
      // one round trip: the resume takes the call only where preflight would have said
      // so (resumable, or live elsewhere and ours to take over), else it refuses with
      // the preflight answer, and the page decides on that as it would have
      const ours = takeover || this._takeover || this._reloaded || heldHere.has(call.sessionId);
      const got = await this._claim(reason, ours, t0);
      if (got.done) return got.info;
      why = got.why;
    }
    if (!fresh) {
      this._setState("idle");
      return null;
    }
    return this._fresh(why, t0);
  }

  // resume the call, or read why not from the preflight answer the refusal carries:
  // {done, info} (resumed, or null: stop) or {why} (start fresh because of why)
  async _claim(reason, takeover, t0) {
    const call = this._call;
    let answer;
    try {
      answer = await this._timed("resume_ms", () =>
        this._post("v1/resume", { token: call.token, takeover }),
      );
    } catch (err) {
      const pre = err.preflight;
      if (!pre?.status || pre.status === "resumable") throw err; // no refusal: a failure
      if (pre.status === "active") {
        this._setState("active");
        this._emit("active", { sessionId: call.sessionId, code: "session_active", reason: pre.reason });
        return { done: true, info: null };
      }
      const why = this._gone(pre.status, pre.reason, reason);
      return why === null ? { done: true, info: null } : { why };
    }
    this._emit("resuming", { sessionId: call.sessionId, reason });
    await this._adopt(answer);
    this._emit("resumed", { ...this._info(answer), timings: this.timings });
    return { done: true, info: this._info(answer) };
  }

  // a call that cannot be resumed: tell the page; null means stop, else why we start fresh
  _gone(status, message, reason) {
    const sessionId = this._call?.sessionId ?? null;
    if (status === "superseded" && reason !== "load") {
      // the call went on elsewhere (another tab took it, or a handoff): do not start a second one
      heldHere.delete(sessionId);
      this._forget();
      this._setState("closed");
      this._emit("superseded", { sessionId, reason: message });
      return null;
    }
    if (status === "expired") this._emit("expired", { sessionId, reason: message });
    heldHere.delete(sessionId);
    this._forget();
    return status;
  }

  async _fresh(why, t0) {
    this._setState("checking");
    const body = { caller: this.caller };
    if (this._agent) body.agent = this._agent;
    const answer = await this._timed("start_ms", () => this._post("v1/start", body));
    this._queue = [];
    this._sentUpTo = 0;
    this._call = null;
    await this._adopt(answer);
    this._emit("fresh", { ...this._info(answer), reason: why, timings: this.timings });
    return this._info(answer);
  }

  _info(answer) {
    return {
      sessionId: answer.session_id,
      epoch: answer.epoch,
      agent: answer.agent,
      token: answer.token,
      resumed: answer.resumed,
      gapS: answer.gap_s ?? null,
    };
  }

  // keep the new token, then open the transport and send what waited
  async _adopt(answer) {
    const seq = this._call?.sessionId === answer.session_id ? this._call.seq ?? 0 : 0;
    this._call = { sessionId: answer.session_id, epoch: answer.epoch, token: answer.token, seq };
    this._save();
    heldHere.add(answer.session_id);
    this._scheduleRefresh(answer.expires_in);
    this._emit("token", { sessionId: answer.session_id, epoch: answer.epoch, token: answer.token });
    await this._timed("connect_ms", () => this._open(this._info(answer)));
    this.timings.total_ms = now() - this.timings.at_ms;
    this._failures = 0;
  }

  async _open(info) {
    this._setState("connecting");
    const transport = await this._connect(info);
    this._transport = transport;
    const offs = [];
    const opened = new Promise((resolve, reject) => {
      if (isOpen(transport)) resolve();
      offs.push(listen(transport, "open", () => resolve()));
      offs.push(listen(transport, "close", () => reject(new CallstateError("transport", "the transport closed before it opened"))));
      offs.push(listen(transport, "error", () => reject(new CallstateError("transport", "the transport failed to open"))));
    });
    try {
      await opened;
    } finally {
      for (const off of offs) off();
    }
    if (this._transport !== transport) return; // dropped while opening
    this._sentUpTo = 0; // what the old transport carried but nobody acknowledged goes again
    this._transportOffs = [
      listen(transport, "close", () => this._lost(transport)),
      listen(transport, "message", (ev) => {
        const acked = this._acked ? this._readAck(ev.data) : null;
        if (acked === null) this._emit("message", { data: ev.data });
        else this._ack(acked);
      }),
    ];
    this._setState(navigator.onLine ? "open" : "waiting");
    this._flush();
  }

  // close our transport without reacting to its close
  _drop() {
    const transport = this._transport;
    this._transport = null;
    for (const off of this._transportOffs ?? []) off();
    this._transportOffs = [];
    if (transport) {
      try {
        transport.close();
      } catch {
        // already closed
      }
    }
  }

  _lost(transport) {
    if (this._transport !== transport) return;
    this._drop();
    if (this._closing) return;
    this._setState("waiting");
    this._emit("disconnected", { sessionId: this.sessionId });
    this._retry("network");
  }

  // reconnect after a backoff; one attempt at a time (it waits for `online` itself)
  _retry(reason) {
    if (this._retrying || this._closing) return;
    this._retrying = true;
    const [low, high] = this._retryMs;
    const delay = this._failures === 0 ? 0 : Math.min(high, low * 2 ** (this._failures - 1));
    this._retryTimer = setTimeout(() => this._reconnect(reason), delay);
  }

  async _reconnect(reason) {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    try {
      await this._serial(() =>
        this._closing || isOpen(this._transport) ? null : this._establish(reason, { takeover: true }),
      );
      this._retrying = false;
    } catch (err) {
      this._retrying = false;
      this._failures += 1;
      this._fail(err);
      if (this._state !== "closed" && this._state !== "active") this._retry(reason);
    }
  }

  _flush() {
    const transport = this._transport;
    for (const [seq, data] of [...this._queue]) {
      if (!(isOpen(transport) && navigator.onLine && this._state === "open")) break;
      if (seq <= this._sentUpTo) continue;
      try {
        transport.send(this._encode(seq, data));
      } catch {
        break; // stays first in line
      }
      this._sentUpTo = seq;
      // unacknowledged messages stay, to go again over the next transport
      if (!this._acked) this._queue.shift();
    }
    this._write(sessionStorage, "outbox", this._queue);
  }

  // the receiver has recorded every message up to `seq`
  _ack(seq) {
    const before = this._queue.length;
    this._queue = this._queue.filter(([n]) => n > seq);
    if (this._queue.length !== before) this._write(sessionStorage, "outbox", this._queue);
  }

  // -- the window ------------------------------------------------------------------

  _watch() {
    patchRoutes();
    const on = (target, type, fn) => this._unlisten.push(listen(target, type, fn));
    on(window, "pagehide", () => {
      sessionStorage.setItem(this._key("unloaded"), String(Date.now()));
    });
    on(window, "pageshow", (ev) => {
      if (ev.persisted) sessionStorage.removeItem(this._key("unloaded"));
    });
    on(window, "offline", () => {
      if (this._state === "open") this._setState("waiting");
      this._emit("offline", {});
    });
    on(window, "online", () => {
      this._emit("online", {});
      this._relink("network");
    });
    if (navigator.connection && typeof navigator.connection.addEventListener === "function") {
      on(navigator.connection, "change", () => {
        this._emit("network", { type: navigator.connection.type ?? null, effectiveType: navigator.connection.effectiveType ?? null });
        this._relink("network");
      });
    }
    on(window, ROUTE_EVENT, () => {
      if (this._state === "idle" || this._state === "closed" || this._closing) return;
      this._serial(() => this._check()).catch((err) => this._fail(err));
    });
  }

  // the link may be back: flush over the open transport, or reconnect now
  _relink(reason) {
    if (this._closing || this._state === "idle" || this._state === "closed" || this._state === "active") return;
    if (!navigator.onLine) return;
    if (isOpen(this._transport)) {
      if (this._state === "waiting") this._setState("open");
      this._flush();
      return;
    }
    if (this._retryTimer !== null) {
      this._failures = 0;
      this._reconnect(reason); // skip the rest of the backoff
    } else if (!this._retrying && this._state === "waiting") {
      this._retry(reason);
    }
  }

  // on a route change: is the call still this tab's? preflight when the link is open
  // (it only checks), else reconnect with a resume that is its own check
  async _check() {
    const call = this._call;
    if (!call?.token) return null;
    const t0 = now();
    this.timings = { reason: "route", at_ms: t0 };
    if (isOpen(this._transport)) {
      const pre = await this._timed("preflight_ms", () => this._post("v1/preflight", { token: call.token }));
      if (pre.status === "resumable" || pre.status === "active") {
        return this._info({ session_id: call.sessionId, epoch: call.epoch, token: call.token, resumed: true });
      }
      this._drop();
      const why = this._gone(pre.status, pre.reason, "route");
      return why === null ? null : this._fresh(why, t0);
    }
    const got = await this._claim("route", true, t0);
    return got.done ? got.info : this._fresh(got.why, t0);
  }

  _online() {
    return new Promise((resolve) => {
      const off = listen(window, "online", () => {
        off();
        resolve();
      });
    });
  }

  // -- tokens ------------------------------------------------------------------------

  _scheduleRefresh(expiresIn) {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (typeof expiresIn !== "number" || !(expiresIn > 0)) return;
    const delay = Math.max(1000, expiresIn * this._refreshAt * 1000);
    if (delay > 2 ** 31 - 1) return; // beyond what setTimeout can wait; a resume refreshes it
    this._refreshTimer = setTimeout(() => {
      this._serial(() => this.refresh()).catch((err) => this._fail(err));
    }, delay);
  }

  /** Ask the server for a fresh token for this session and epoch (done before expiry). */
  async refresh() {
    const call = this._call;
    if (!call?.token) return null;
    let answer;
    try {
      answer = await this._post("v1/token/refresh", { token: call.token });
    } catch (err) {
      const status = { token_superseded: "superseded", call_ended: "ended", session_expired: "expired" }[err.code];
      if (status === undefined) {
        this._scheduleRefresh(30); // try again shortly
        throw err;
      }
      this._drop();
      this._gone(status, err.message, "refresh");
      if (this._state !== "closed") this._setState("idle");
      throw err;
    }
    if (this._call?.sessionId !== answer.session_id) return null;
    this._call.token = answer.token;
    this._save();
    this._scheduleRefresh(answer.expires_in);
    this._emit("token", { sessionId: answer.session_id, epoch: answer.epoch, token: answer.token });
    return answer.token;
  }

  // -- plumbing ----------------------------------------------------------------------

  async _post(path, body) {
    let reply;
    try {
      reply = await this._fetch(new URL(path, this._base), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (err) {
      throw new CallstateError("network", `POST ${path} failed: ${err?.message ?? err}`);
    }
    let answer = null;
    try {
      answer = await reply.json();
    } catch {
      // not JSON: judged by the status below
    }
    if (!reply.ok) {
      const error = answer?.error ?? {};
      const failed = new CallstateError(error.code ?? "http", error.message ?? `POST ${path}: HTTP ${reply.status}`, reply.status);
      if (answer?.preflight) failed.preflight = answer.preflight; // a resume's refusal: why not
      throw failed;
    }
    return answer;
  }

  async _timed(name, fn) {
    const t = now();
    try {
      return await fn();
    } finally {
      if (this.timings) this.timings[name] = now() - t;
    }
  }

  _fail(err) {
    const code = err?.code ?? "client";
    this._emit("error", { code, message: err?.message ?? String(err), status: err?.status ?? 0 });
  }

  _stopTimers() {
    clearTimeout(this._refreshTimer);
    clearTimeout(this._retryTimer);
    this._refreshTimer = null;
    this._retryTimer = null;
    this._retrying = false;
  }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit("state", { state });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _key(name) {
    return `${this._ns}:${name}`;
  }

  _read(storage, name) {
    try {
      return JSON.parse(storage.getItem(this._key(name)) ?? "null");
    } catch {
      return null;
    }
  }

  _write(storage, name, value) {
    storage.setItem(this._key(name), JSON.stringify(value));
  }

  _save() {
    this._write(sessionStorage, "call", this._call);
  }

  _forget() {
    this._call = null;
    this._queue = [];
    this._sentUpTo = 0;
    sessionStorage.removeItem(this._key("call"));
    sessionStorage.removeItem(this._key("outbox"));
  }
}
