// The dashboard's JSON endpoints, with the operator token from this tab's sessionStorage.

const KEY = "callstate.dashboard.token";

export class Unauthorized extends Error {}

/** Take a token given once in the address (#token=...) and drop it from the address. */
export function adoptTokenFromAddress() {
  const hash = window.location.hash;
  if (!hash.startsWith("#token=")) return;
  const token = decodeURIComponent(hash.slice("#token=".length));
  if (token) sessionStorage.setItem(KEY, token);
  history.replaceState(null, "", window.location.pathname + window.location.search + "#/calls");
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  sessionStorage.setItem(KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

/** GET /v1/dashboard/<path> with the token; resolves to the decoded JSON. */
export async function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
  }
  const base = new URL("../v1/dashboard/", window.location.href);
  const url = new URL(path + (query.size ? "?" + query : ""), base);
  const reply = await fetch(url, {
    headers: { authorization: "Bearer " + (token() || "") },
    cache: "no-store",
    referrerPolicy: "no-referrer",
  });
  const body = await reply.json().catch(() => ({}));
  if (reply.status === 401) throw new Unauthorized(body?.error?.message || "unauthorized");
  if (!reply.ok) throw new Error(body?.error?.message || `HTTP ${reply.status}`);
  return body;
}
