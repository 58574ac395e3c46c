// Small formatting helpers shared by the views.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text made safe inside HTML or SVG markup (element content and quoted attributes). */
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

export function clock(at) {
  if (!at) return "–";
  return new Date(at * 1000).toLocaleString(undefined, { hour12: false });
}

export function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function percent(x) {
  return x === null || x === undefined ? "–" : `${Math.round(x * 100)}%`;
}

/** An outcome or health class as a coloured badge. */
export function badge(kind, value) {
  if (!value) return "";
  return `<span class="badge ${esc(kind)}-${esc(value)}" data-${esc(kind)}="${esc(value)}">${esc(value)}</span>`;
}
