// Types for callstate.js, the browser client served by callstate.web at /callstate.js.

export declare const VERSION: string;

/** An error answered by the server (`code` is its stable JSON code) or met on the way
 * (`network`, `transport`, `no_call`, `bad_option`). */
export declare class CallstateError extends Error {
  constructor(code: string, message: string, status?: number);
  readonly code: string;
  /** the HTTP status, 0 when no answer came */
  readonly status: number;
  /** on a refused resume: the preflight answer (why not; `active`, `expired`...) */
  readonly preflight?: Preflight;
}

/** `/v1/preflight`'s answer, also carried by a refused `/v1/resume`. */
export interface Preflight {
  status: "resumable" | "expired" | "unknown" | "invalid" | "ended" | "superseded" | "active";
  session_id: string | null;
  agent: string | null;
  epoch: number | null;
  /** unix seconds */
  expires_at: number | null;
  reason: string;
}

/** What `connect` is given: the session the transport must join. */
export interface SessionInfo {
  sessionId: string;
  epoch: number;
  agent: string;
  token: string;
  resumed: boolean;
  /** seconds the link was down, when resumed */
  gapS: number | null;
}

/** What `connect` returns: an RTCDataChannel, a WebSocket, or anything shaped alike. */
export interface Transport {
  send(data: string | ArrayBuffer | Blob | ArrayBufferView): void;
  close(): void;
  /** 1 or "open" once open (WebSocket / RTCDataChannel) */
  readonly readyState?: number | string;
  addEventListener?(type: "open" | "close" | "error" | "message", listener: (ev: any) => void): void;
  removeEventListener?(type: "open" | "close" | "error" | "message", listener: (ev: any) => void): void;
  onopen?: ((ev: any) => void) | null;
  onclose?: ((ev: any) => void) | null;
  onerror?: ((ev: any) => void) | null;
  onmessage?: ((ev: any) => void) | null;
}

export interface ClientOptions {
  /** Open the transport for a session (called once resume or start answered). */
  connect(session: SessionInfo): Transport | Promise<Transport>;
  /** Where the app is mounted; default: where callstate.js was served from. */
  baseUrl?: string;
  /** The caller id; default: one random id per browser, kept in localStorage. */
  caller?: string;
  /** The agent a fresh call starts with (`/v1/start`). */
  agent?: string;
  /** Take a call that is live in another tab without asking (default false: `active`). */
  takeover?: boolean;
  /** Prefix of the storage keys (several widgets on one origin). Default "callstate". */
  namespace?: string;
  /** How a numbered message goes on the wire; default `JSON.stringify({type: "callstate", seq, data})` (Pipecat's SmallWebRTC wants a `type`). */
  encode?(seq: number, data: unknown): string | ArrayBuffer | Blob | ArrayBufferView;
  /**
   * The receiver acknowledges what it has recorded (default false): a sent message is kept
   * until an ack covers its number and goes again over the next transport, so one sent as
   * the link silently died still arrives. The receiver drops a number it has already kept.
   */
  acked?: boolean;
  /**
   * The highest number a transport message acknowledges, or null for any other message
   * (those are `message` events). Default: `{"type": "callstate-ack", "seq": n}` as JSON.
   */
  readAck?(data: unknown): number | null;
  /** Refresh the token when this fraction of its life has passed (default 0.8). */
  refreshAt?: number;
  /** Reconnect backoff, first and longest wait in ms (default [250, 5000]). */
  retryMs?: [number, number];
  /** Listen to pagehide, online/offline, network and route changes (default true). */
  watch?: boolean;
  /** The fetch to call the endpoints with (default globalThis.fetch). */
  fetch?: typeof fetch;
}

export type ClientState =
  | "idle"
  | "checking"
  | "connecting"
  | "open"
  | "waiting"
  | "active"
  | "closed";

/** How long each step of the last (re)connect took, in ms; `at_ms` is performance.now(). */
export interface Timings {
  reason: string;
  at_ms: number;
  /** only on a route change with the transport open (it checks, takes nothing) */
  preflight_ms?: number;
  /** the resume, which is also the check: a refusal carries the preflight answer */
  resume_ms?: number;
  start_ms?: number;
  connect_ms?: number;
  total_ms?: number;
}

export interface CallstateEventMap {
  /** Resumed at a new epoch; the transport opens next (`reason`: load, route, network, takeover). */
  resuming: CustomEvent<{ sessionId: string; reason: string }>;
  /** Resumed at a new epoch and the transport is open. */
  resumed: CustomEvent<SessionInfo & { timings: Timings }>;
  /** A new call started and its transport is open (`reason`: new, expired, ended, superseded, unknown, invalid). */
  fresh: CustomEvent<SessionInfo & { reason: string; timings: Timings }>;
  /** This tab's call expired; a fresh one starts next. */
  expired: CustomEvent<{ sessionId: string | null; reason: string }>;
  /** The call is live in another tab; `takeover()` takes it. */
  active: CustomEvent<{ sessionId: string; code: "session_active"; reason: string }>;
  /** Another tab or a handoff took the call while this tab had it. */
  superseded: CustomEvent<{ sessionId: string | null; reason: string }>;
  /** A new token (after start, resume or refresh). */
  token: CustomEvent<{ sessionId: string; epoch: number; token: string }>;
  /** A message from the transport. */
  message: CustomEvent<{ data: unknown }>;
  /** The transport closed; reconnecting. */
  disconnected: CustomEvent<{ sessionId: string | null }>;
  offline: CustomEvent<Record<string, never>>;
  online: CustomEvent<Record<string, never>>;
  /** navigator.connection changed (Wi-Fi to cellular...). */
  network: CustomEvent<{ type: string | null; effectiveType: string | null }>;
  state: CustomEvent<{ state: ClientState }>;
  /** A failure; `code` is the server's JSON code when it answered. */
  error: CustomEvent<{ code: string; message: string; status: number }>;
}

export declare class CallstateClient extends EventTarget {
  constructor(options: ClientOptions);
  readonly state: ClientState;
  readonly sessionId: string | null;
  readonly epoch: number | null;
  readonly token: string | null;
  /** messages waiting for the transport */
  readonly pending: number;
  /** Messages sent but not yet acknowledged (0 unless `acked`). */
  readonly unacked: number;
  readonly caller: string;
  timings: Timings | null;
  /** Resume (checked as preflight would) or start fresh, then connect. Null when nothing was opened. */
  start(options?: { fresh?: boolean }): Promise<SessionInfo | null>;
  /** Take the call from the tab that holds it. */
  takeover(): Promise<SessionInfo | null>;
  /** Send a numbered message (queued during a gap). Returns its number. */
  send(data: unknown): number;
  /** A fresh token for this session and epoch (runs by itself before expiry). */
  refresh(): Promise<string | null>;
  /** Close the transport, keep the call: a later start() in this tab resumes it. */
  detach(): void;
  /** Forget the call in this tab. */
  end(): void;
  /** detach() and stop listening to the window. */
  dispose(): void;
  addEventListener<K extends keyof CallstateEventMap>(
    type: K,
    listener: (ev: CallstateEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof CallstateEventMap>(
    type: K,
    listener: (ev: CallstateEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
