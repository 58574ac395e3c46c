// One call's timeline drawn as SVG: a band per leg (one ownership run), lanes for the
// caller's and the agent's speech and the tool calls, and markers for barge-ins, holds,
// resumes, handoffs and follow-ups. Built as one markup string: 10,000 events draw in
// one DOM update.

import { esc, seconds } from "./format.js";

const LABEL_W = 190;
const PAD_R = 16;
const AXIS_H = 26;
const LEG_HEAD = 20;
const SPEECH_H = 16;
const TOOL_H = 12;
const MAX_TOOL_ROWS = 8;
const GAP = 10;
const FOLLOWUP_H = 28;

/** Time ticks at a round step for the span ``t1 - t0`` (seconds). */
function ticks(span, width) {
  const steps = [0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
  const want = Math.max(2, Math.floor(width / 90));
  const step = steps.find((s) => span / s <= want) || steps[steps.length - 1];
  const out = [];
  for (let t = 0; t <= span + 1e-9; t += step) out.push(t);
  return { step, out };
}

function label(t, step) {
  if (step >= 60) return `+${(t / 60).toFixed(step % 60 ? 1 : 0)}m`;
  return `+${t.toFixed(step < 1 ? 1 : 0)}s`;
}

/** Rows for the tool bars of one leg so that bars in one row never overlap. */
function toolRows(tools, x) {
  const ends = [];
  const rows = new Map();
  for (const t of tools) {
    const a = x(t.requested_at);
    let row = ends.findIndex((end) => end + 2 <= a);
    if (row < 0) row = ends.length < MAX_TOOL_ROWS ? ends.length : ends.indexOf(Math.min(...ends));
    ends[row] = Math.max(ends[row] ?? 0, x(t.ended_at ?? t.last_at) + 1);
    rows.set(t.call_id, row);
  }
  return { rows, count: Math.max(1, ends.length) };
}

function group(items, legs) {
  const by = new Map(legs.map((l) => [l.epoch, []]));
  for (const item of items) {
    if (!by.has(item.leg)) by.set(item.leg, []);
    by.get(item.leg).push(item);
  }
  return by;
}

function title(text) {
  return `<title>${esc(text)}</title>`;
}

/**
 * The timeline's SVG markup and its height.
 * @param {object} data the /calls/{id}/timeline answer
 * @param {number} width pixels
 */
export function timelineSvg(data, width) {
  const t0 = data.t0;
  const span = Math.max(1e-3, data.t1 - data.t0);
  const innerW = Math.max(100, width - LABEL_W - PAD_R);
  const k = innerW / span;
  const x = (t) => LABEL_W + ((t ?? data.t1) - t0) * k;
  const w = (a, b) => Math.max(3, x(b) - x(a));
  const f = (n) => n.toFixed(1);
  const legs = data.legs;
  const speech = group(data.speech, legs);
  const tools = group(data.tools.map((t) => ({ ...t, last_at: data.t1 })), legs);
  const bargeIns = group(data.barge_ins, legs);
  const holds = group(data.holds, legs);
  const resumes = group(data.resumes, legs);
  const handoffs = group(data.handoffs, legs);
  const parts = [];
  let y = AXIS_H;

  for (const leg of legs) {
    const legTools = tools.get(leg.epoch) || [];
    const { rows, count } = toolRows(legTools, x);
    const callerY = y + LEG_HEAD;
    const agentY = callerY + SPEECH_H + 4;
    const toolY = agentY + SPEECH_H + 6;
    const h = LEG_HEAD + 2 * SPEECH_H + 10 + count * (TOOL_H + 3) + 6;
    const legEnd = leg.end ?? data.t1;
    parts.push(
      `<g class="leg" data-epoch="${leg.epoch}" data-via="${esc(leg.via)}" data-agent="${esc(leg.agent)}" data-outcome="${esc(leg.outcome || "")}" data-health="${esc(leg.health || "")}">`,
      `<rect class="leg-band" x="0" y="${y}" width="${width}" height="${h}"/>`,
      `<rect class="leg-span" x="${f(x(leg.start))}" y="${y + 2}" width="${f(w(leg.start, legEnd))}" height="${h - 4}"/>`,
      `<text class="leg-label" x="8" y="${y + 14}">leg ${leg.epoch} · ${esc(leg.agent)}</text>`,
      `<text class="leg-sub" x="8" y="${y + 28}">${esc(leg.via)}${leg.outcome ? " → " + esc(leg.outcome) : ""}</text>`,
      leg.health ? `<text class="leg-sub health" x="8" y="${y + 42}">${esc(leg.health)}</text>` : "",
      `<text class="lane-label" x="${LABEL_W - 6}" y="${callerY + 12}">caller</text>`,
      `<text class="lane-label" x="${LABEL_W - 6}" y="${agentY + 12}">agent</text>`,
      `<text class="lane-label" x="${LABEL_W - 6}" y="${toolY + 10}">tools</text>`,
    );
    for (const r of resumes.get(leg.epoch) || []) {
      const from = Math.max(t0, r.at - r.gap_s);
      parts.push(
        `<g class="resume" data-via="${esc(r.via)}" data-gap="${r.gap_s}">`,
        `<rect class="gap" x="${f(x(from))}" y="${y + 2}" width="${f(w(from, r.at))}" height="${h - 4}"/>`,
        `<path class="resume-mark" d="M${f(x(r.at))},${y + 3} l7,7 l-7,7 z"/>`,
        title(`${r.via} after a ${seconds(r.gap_s)} gap`),
        `</g>`,
      );
    }
    for (const hold of holds.get(leg.epoch) || []) {
      parts.push(
        `<rect class="hold" x="${f(x(hold.start))}" y="${callerY - 2}" width="${f(w(hold.start, hold.end))}" height="${h - LEG_HEAD - 2}">`,
        title(`on hold: link lost${hold.reason ? " (" + hold.reason + ")" : ""} for ${seconds((hold.end ?? data.t1) - hold.start)}`),
        `</rect>`,
      );
    }
    for (const s of speech.get(leg.epoch) || []) {
      const sy = s.who === "caller" ? callerY : agentY;
      const cls = `speech ${s.who}${s.interrupted ? " interrupted" : ""}`;
      const said = s.interrupted ? `heard “${s.heard}” of “${s.text}”` : `“${s.text}”`;
      parts.push(
        `<rect class="${cls}" x="${f(x(s.start))}" y="${sy}" width="${f(w(s.start, s.end))}" height="${SPEECH_H}">`,
        title(`${s.who}: ${said}`),
        `</rect>`,
      );
    }
    for (const t of legTools) {
      const ty = toolY + rows.get(t.call_id) * (TOOL_H + 3);
      const end = t.ended_at ?? data.t1;
      const run = t.started_at ?? t.requested_at;
      const cls = `tool status-${esc(t.status)} effect-${esc(t.effect)}${t.in_doubt ? " in-doubt" : ""}`;
      parts.push(
        `<g class="${cls}" data-call-id="${esc(t.call_id)}" data-status="${esc(t.status)}">`,
        title(
          `${t.name} (${t.call_id}, ${t.effect}): ${t.status}` +
            (t.in_doubt ? `, in doubt → ${t.resolution}` : "") +
            (t.deliveries.length ? `; ${t.deliveries.map((d) => d.decision).join(" → ")}` : "") +
            ` · ${seconds(end - t.requested_at)}`,
        ),
        `<rect class="tool-intent" x="${f(x(t.requested_at))}" y="${ty}" width="${f(w(t.requested_at, run))}" height="${TOOL_H}"/>`,
        `<rect class="tool-run" x="${f(x(run))}" y="${ty}" width="${f(w(run, end))}" height="${TOOL_H}"/>`,
      );
      for (const d of t.deliveries) {
        if (d.at === undefined) continue;
        parts.push(
          `<rect class="delivery decision-${esc(d.decision)}" data-decision="${esc(d.decision)}" x="${f(x(d.at) - 1.5)}" y="${ty - 2}" width="3" height="${TOOL_H + 4}"/>`,
        );
      }
      parts.push(`</g>`);
    }
    for (const b of bargeIns.get(leg.epoch) || []) {
      const bx = f(x(b.at));
      parts.push(
        `<g class="barge-in" data-at="${b.at}">`,
        title(`barge-in: the caller heard “${b.heard}”${b.overtaken?.length ? "; overtook " + b.overtaken.join(", ") : ""}`),
        `<line x1="${bx}" x2="${bx}" y1="${y + 4}" y2="${y + h - 4}"/>`,
        `<path d="M${bx},${y + 12} l-5,-8 h10 z"/>`,
        `</g>`,
      );
    }
    for (const ho of handoffs.get(leg.epoch) || []) {
      const hx = x(ho.at);
      parts.push(
        `<g class="handoff" data-kind="${esc(ho.kind)}">`,
        title(`handoff ${ho.kind}${ho.agent ? " (" + ho.agent + ")" : ""}`),
        `<path d="M${f(hx)},${y + 4} l6,6 l-6,6 l-6,-6 z"/>`,
        `</g>`,
      );
    }
    parts.push(`</g>`);
    y += h + GAP;
  }

  if (data.followups.length) {
    parts.push(
      `<g class="followups">`,
      `<text class="lane-label" x="${LABEL_W - 6}" y="${y + 16}">follow-ups</text>`,
    );
    for (const fu of data.followups) {
      const fx = f(x(fu.at));
      parts.push(
        `<g class="followup ${fu.ok ? "ok" : "failed"}" data-leg="${fu.leg}">`,
        title(`follow-up ${fu.name} for leg${fu.legs.length > 1 ? "s " + fu.legs.join(", ") : " " + fu.leg}: ${fu.ok ? "ok" : "failed"}`),
        `<circle cx="${fx}" cy="${y + 12}" r="6"/>`,
        `</g>`,
      );
    }
    parts.push(`</g>`);
    y += FOLLOWUP_H;
  }

  const { step, out } = ticks(span, innerW);
  const axis = [`<g class="axis">`];
  for (const t of out) {
    const tx = f(LABEL_W + t * k);
    axis.push(
      `<line x1="${tx}" x2="${tx}" y1="${AXIS_H - 6}" y2="${y}"/>`,
      `<text x="${tx}" y="${AXIS_H - 10}">${label(t, step)}</text>`,
    );
  }
  axis.push(`</g>`);
  const height = y + 4;
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" role="img" aria-label="timeline of call ${esc(data.session_id)}" ` +
    `data-legs="${legs.length}" data-events="${data.events}">` +
    axis.join("") +
    parts.join("") +
    `</svg>`;
  return { svg, height };
}

export const LEGEND = [
  ["speech caller", "caller speech"],
  ["speech agent", "agent speech"],
  ["speech agent interrupted", "cut off by a barge-in"],
  ["barge-in", "barge-in"],
  ["tool-intent", "tool: intent → start"],
  ["tool-run", "tool: running → outcome"],
  ["delivery", "result delivered / held / announced"],
  ["hold", "on hold (link lost)"],
  ["gap", "drop before a resume"],
  ["handoff", "handoff"],
  ["followup ok", "follow-up"],
];
