// The call list: one row per call (session), with outcome, health and filters.

import { get } from "./api.js";
import { badge, clock, esc, seconds } from "./format.js";

const OUTCOMES = ["completed", "recovered", "superseded", "abandoned", "failed"];
export const HEALTH = ["failed", "worker_lost", "caller_never_returned", "superseded", "recovered", "caller_ended", "ok"];
const RANGES = [["", "any time"], ["3600", "last hour"], ["86400", "last 24 h"], ["604800", "last 7 days"]];

function options(list, chosen) {
  return list.map(([value, text]) => `<option value="${esc(value)}"${value === chosen ? " selected" : ""}>${esc(text)}</option>`).join("");
}

function filterForm(p) {
  return `<form class="filters" id="filters">
    <label>outcome <select name="outcome">${options([["", "any"], ...OUTCOMES.map((o) => [o, o])], p.get("outcome") || "")}</select></label>
    <label>health <select name="health">${options([["", "any"], ...HEALTH.map((h) => [h, h])], p.get("health") || "")}</select></label>
    <label>agent <input name="agent" value="${esc(p.get("agent") || "")}" placeholder="any" size="10"></label>
    <label>session <input name="session" value="${esc(p.get("session") || "")}" placeholder="id prefix" size="12"></label>
    <label>caller <input name="caller_tag" value="${esc(p.get("caller_tag") || "")}" placeholder="tag" size="11"></label>
    <label>ended <select name="range">${options(RANGES, p.get("range") || "")}</select></label>
    <button type="submit">Filter</button>
    <a href="#/calls" class="reset">reset</a>
  </form>`;
}

function row(c) {
  const link = `#/call/${encodeURIComponent(c.session_id)}`;
  const outcomes = c.outcomes.map((o) => badge("outcome", o)).join(" ");
  const health = c.healths.some((h) => h)
    ? c.healths.map((h) => badge("health", h || "unknown")).join(" ")
    : `<span class="muted">–</span>`;
  const tag = c.caller_tag
    ? `<a class="caller-tag" href="#/calls?caller_tag=${encodeURIComponent(c.caller_tag)}" title="caller (keyed hash)">${esc(c.caller_tag)}</a>`
    : `<span class="muted">–</span>`;
  return `<tr class="call" data-session="${esc(c.session_id)}" data-outcome="${esc(c.outcome)}">
    <td><a class="session" href="${link}">${esc(c.session_id.slice(0, 12))}</a></td>
    <td>${tag}</td>
    <td class="badges">${outcomes}</td>
    <td class="badges">${health}</td>
    <td>${esc(c.agents.join(" → "))}</td>
    <td class="num">${c.legs}</td>
    <td>${esc(clock(c.ended_at))}</td>
    <td class="num">${esc(seconds(c.duration_s))}</td>
    <td class="num">${c.turns}</td>
    <td class="num">${c.tools}</td>
    <td class="num">${c.barge_ins}</td>
    <td class="num${c.in_doubt ? " warn" : ""}">${c.in_doubt}</td>
    <td class="num">${c.resumes}</td>
    <td class="num">${c.handoffs}</td>
  </tr>`;
}

export async function showCalls(view, params, stale = () => false) {
  const range = params.get("range");
  const query = Object.fromEntries(
    ["outcome", "health", "agent", "session", "caller_tag"].map((k) => [k, params.get(k)]),
  );
  if (range) query.since = Date.now() / 1000 - Number(range);
  view.innerHTML = `<h1>Calls</h1>${filterForm(params)}<p class="loading">loading…</p>`;
  view.querySelector("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const next = new URLSearchParams();
    for (const [k, v] of form) if (v) next.set(k, String(v));
    delete document.documentElement.dataset.rendered; // the list is about to change
    window.location.hash = "#/calls" + (next.size ? "?" + next : "");
  });
  const { calls } = await get("calls", query);
  if (stale()) return;
  const table = calls.length
    ? `<div class="table-box"><table class="calls"><thead><tr>
        <th>session</th><th>caller</th><th>outcome (per leg)</th><th>health (per leg)</th><th>agents</th>
        <th>legs</th><th>ended</th><th>duration</th><th>turns</th><th>tools</th>
        <th>barge-ins</th><th>in doubt</th><th>resumes</th><th>handoffs</th>
      </tr></thead><tbody>${calls.map(row).join("")}</tbody></table></div>`
    : `<p class="empty">No archived calls match.</p>`;
  view.querySelector(".loading").outerHTML = `<p class="count">${calls.length} call${calls.length === 1 ? "" : "s"}</p>${table}`;
  document.documentElement.dataset.rendered = "calls";
}
