// Small SVG charts over time buckets: a line chart (one or more series) and a bar chart.

import { esc } from "./format.js";

const W = 560;
const H = 200;
const M = { l: 48, r: 12, t: 12, b: 26 };

function frame(buckets, max, yLabel) {
  const iw = W - M.l - M.r;
  const ih = H - M.t - M.b;
  const n = Math.max(1, buckets.length);
  const x = (i) => M.l + ((i + 0.5) * iw) / n;
  const y = (v) => M.t + ih - (ih * v) / (max || 1);
  const parts = [`<g class="axis">`];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    parts.push(
      `<line x1="${M.l}" x2="${W - M.r}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/>`,
      `<text class="y" x="${M.l - 6}" y="${(y(v) + 4).toFixed(1)}">${esc(yLabel(v))}</text>`,
    );
  }
  const every = Math.max(1, Math.ceil(n / 6));
  buckets.forEach((b, i) => {
    if (i % every) return;
    const d = new Date(b.start * 1000);
    const text = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
    parts.push(`<text class="x" x="${x(i).toFixed(1)}" y="${H - 8}">${esc(text)}</text>`);
  });
  parts.push(`</g>`);
  return { x, y, iw, n, parts };
}

function svg(name, parts) {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${esc(name)}" ` +
    `viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(name)}">` +
    parts.join("") +
    `</svg>`
  );
}

/**
 * Lines through the buckets for each series; a null value breaks the line.
 * @param {string} name chart name (data-chart)
 * @param {object[]} buckets /quality buckets
 * @param {{key: string, label: string, cls: string}[]} series
 * @param {(v: number) => string} yLabel
 * @param {number|null} fixedMax
 */
export function lineChart(name, buckets, series, yLabel, fixedMax = null) {
  const values = series.flatMap((s) => buckets.map((b) => b[s.key]).filter((v) => v !== null));
  const max = fixedMax ?? Math.max(1e-9, ...values) * 1.1;
  const { x, y, parts } = frame(buckets, max, yLabel);
  for (const s of series) {
    let d = "";
    let pen = false;
    const dots = [];
    buckets.forEach((b, i) => {
      const v = b[s.key];
      if (v === null || v === undefined) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      dots.push(
        `<circle class="point" cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" data-value="${v}"><title>${esc(s.label)}: ${esc(yLabel(v))}</title></circle>`,
      );
    });
    parts.push(`<g class="series ${esc(s.cls)}" data-series="${esc(s.key)}"><path d="${d}"/>${dots.join("")}</g>`);
  }
  return svg(name, parts);
}

/** One bar per bucket for ``key``. */
export function barChart(name, buckets, key, label, yLabel) {
  const max = Math.max(1, ...buckets.map((b) => b[key] || 0)) * 1.1;
  const { x, y, iw, n, parts } = frame(buckets, max, yLabel);
  const bw = Math.max(1, (iw / n) * 0.7);
  const bars = [`<g class="series bars" data-series="${esc(key)}">`];
  buckets.forEach((b, i) => {
    const v = b[key] || 0;
    if (!v) return;
    bars.push(
      `<rect class="bar" x="${(x(i) - bw / 2).toFixed(1)}" y="${y(v).toFixed(1)}" width="${bw.toFixed(1)}" height="${(y(0) - y(v)).toFixed(1)}" data-value="${v}"><title>${esc(label)}: ${v}</title></rect>`,
    );
  });
  bars.push(`</g>`);
  parts.push(...bars);
  return svg(name, parts);
}

/** Stacked bars per bucket: one segment per key of ``b[field]`` (e.g. health classes). */
export function stackedBars(name, buckets, field, keys) {
  const max = Math.max(1, ...buckets.map((b) => Object.values(b[field] || {}).reduce((a, v) => a + v, 0))) * 1.1;
  const { x, y, iw, n, parts } = frame(buckets, max, (v) => v.toFixed(v < 10 ? 1 : 0));
  const bw = Math.max(1, (iw / n) * 0.7);
  parts.push(`<g class="series stacked" data-series="${esc(field)}">`);
  buckets.forEach((b, i) => {
    let base = 0;
    for (const key of keys) {
      const v = (b[field] || {})[key] || 0;
      if (!v) continue;
      parts.push(
        `<rect class="bar ${esc(field)}-${esc(key)}" data-key="${esc(key)}" data-value="${v}" x="${(x(i) - bw / 2).toFixed(1)}" y="${y(base + v).toFixed(1)}" width="${bw.toFixed(1)}" height="${(y(base) - y(base + v)).toFixed(1)}"><title>${esc(key)}: ${v}</title></rect>`,
      );
      base += v;
    }
  });
  parts.push(`</g>`);
  return svg(name, parts);
}
