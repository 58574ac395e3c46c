// One call: its timeline picture, the legend and its tool ledger.

import { get } from "./api.js";
import { badge, clock, esc, seconds } from "./format.js";
import { LEGEND, timelineSvg } from "./timeline.js";

const LEDGER_ROWS = 200;

function legend() {
  const items = LEGEND.map(
    ([cls, text]) =>
      `<span class="key"><svg width="14" height="12"><rect class="${esc(cls)}" x="0" y="0" width="14" height="12"/></svg>${esc(text)}</span>`,
  );
  return `<div class="legend">${items.join("")}</div>`;
}

function ledger(tools) {
  if (!tools.length) return `<p class="empty">No tool calls.</p>`;
  const rows = tools.slice(0, LEDGER_ROWS).map(
    (t) => `<tr class="tool-row" data-call-id="${esc(t.call_id)}">
      <td>${esc(t.leg)}</td><td>${esc(t.call_id)}</td><td>${esc(t.name)}</td><td>${esc(t.effect)}</td>
      <td>${badge("status", t.status)}${t.in_doubt ? ` ${badge("doubt", "in doubt → " + (t.resolution || "?"))}` : ""}</td>
      <td>${esc(t.deliveries.map((d) => d.decision).join(" → ") || "–")}</td>
      <td class="num">${t.attempts}</td>
      <td class="num">${esc(seconds((t.ended_at ?? t.requested_at) - t.requested_at))}</td></tr>`,
  );
  const more = tools.length > LEDGER_ROWS ? `<p class="muted">${tools.length - LEDGER_ROWS} more not listed.</p>` : "";
  return `<table class="ledger"><thead><tr><th>leg</th><th>call</th><th>tool</th><th>effect</th>
    <th>status</th><th>delivery</th><th>attempts</th><th>took</th></tr></thead>
    <tbody>${rows.join("")}</tbody></table>${more}`;
}

function facts(data) {
  const legs = data.legs
    .map((l) => `leg ${l.epoch} ${esc(l.agent)} (${esc(l.via)}): outcome ${badge("outcome", l.outcome)}${l.health ? ", health " + badge("health", l.health) : ""}`)
    .join(" · ");
  return `<p class="facts">${data.events} events from the ${esc(data.source)} ·
    ${esc(clock(data.t0))} – ${esc(clock(data.t1))} (${esc(seconds(data.t1 - data.t0))}) · ${legs}</p>`;
}

export async function showCall(view, sessionId, params, stale = () => false) {
  const t0 = performance.now();
  view.innerHTML = `<p class="loading">loading…</p>`;
  const data = await get(`calls/${encodeURIComponent(sessionId)}/timeline`);
  if (stale()) return;
  const fetched = performance.now();
  const zoom = Math.max(1, Math.min(32, Number(params.get("zoom")) || 1));
  const style = getComputedStyle(view);
  const inner = view.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 2;
  const width = Math.max(900, inner || 1200) * zoom;
  const { svg } = timelineSvg(data, width);
  const zooms = [1, 2, 4, 8, 16]
    .map((z) => `<a href="#/call/${encodeURIComponent(sessionId)}?zoom=${z}"${z === zoom ? ' class="on"' : ""}>${z}×</a>`)
    .join(" ");
  view.innerHTML = `<h1>Call <code>${esc(sessionId)}</code></h1>${facts(data)}
    <div class="zoom">zoom ${zooms}</div>${legend()}
    <div class="timeline-box">${svg}</div>
    <h2>Tool calls</h2>${ledger(data.tools)}`;
  void view.offsetHeight; // style and layout of the new picture, inside the measured time
  const drawn = performance.now();
  const timing = { fetch_ms: fetched - t0, render_ms: drawn - fetched, total_ms: drawn - t0 };
  window.dashboardTiming = timing;
  document.documentElement.dataset.rendered = "call";
  // the frame after next starts once the picture was painted
  requestAnimationFrame(() => requestAnimationFrame(() => {
    timing.painted_ms = performance.now() - t0;
    timing.since_navigation_ms = performance.now(); // from this document's navigation start
  }));
}
