// Recovery quality over time: recovered rate, time to recover, in-doubt tool calls.

import { get } from "./api.js";
import { esc, percent, seconds } from "./format.js";
import { HEALTH } from "./calls.js";
import { barChart, lineChart, stackedBars } from "./charts.js";

const RANGES = [["3600", "last hour", 300], ["86400", "last 24 h", 3600], ["604800", "last 7 days", 21600]];

function total(buckets, key) {
  return buckets.reduce((sum, b) => sum + (b[key] || 0), 0);
}

export async function showQuality(view, params, stale = () => false) {
  const range = RANGES.find((r) => r[0] === params.get("range")) || RANGES[1];
  const until = Date.now() / 1000;
  const data = await get("quality", { since: until - Number(range[0]), until, bucket: range[2] });
  if (stale()) return;
  const b = data.buckets;
  const resumed = total(b, "resumed");
  const abandoned = total(b, "abandoned");
  const tools = total(b, "tools");
  const inDoubt = total(b, "in_doubt");
  const links = RANGES.map(
    ([value, text]) => `<a href="#/quality?range=${value}"${value === range[0] ? ' class="on"' : ""}>${esc(text)}</a>`,
  ).join(" ");
  view.innerHTML = `<h1>Recovery quality</h1>
    <div class="zoom">${links} · buckets of ${esc(seconds(data.bucket_s))}</div>
    <div class="tiles">
      <div class="tile"><b data-figure="recovered_rate">${percent(resumed + abandoned ? resumed / (resumed + abandoned) : null)}</b>recovered (${resumed} resumed, ${abandoned} abandoned)</div>
      <div class="tile"><b data-figure="legs">${total(b, "legs")}</b>legs archived</div>
      <div class="tile"><b data-figure="in_doubt">${inDoubt}</b>in-doubt tool calls of ${tools}</div>
    </div>
    <div class="charts">
      <figure><figcaption>Recovered rate</figcaption>${lineChart("recovered_rate", b, [{ key: "recovered_rate", label: "recovered", cls: "rate" }], percent, 1)}</figure>
      <figure><figcaption>Time to recover (gap before a resume)</figcaption>${lineChart(
        "time_to_recover",
        b,
        [
          { key: "recover_p50_s", label: "p50", cls: "p50" },
          { key: "recover_p95_s", label: "p95", cls: "p95" },
        ],
        seconds,
      )}<div class="legend"><span class="key p50">— p50</span><span class="key p95">— p95</span></div></figure>
      <figure><figcaption>Health classes of archived legs</figcaption>${stackedBars("health", b, "health", HEALTH)}
        <div class="legend">${HEALTH.map((h) => `<span class="key"><svg width="12" height="12"><rect class="bar health-${esc(h)}" width="12" height="12"/></svg>${esc(h)}</span>`).join("")}</div></figure>
      <figure><figcaption>In-doubt tool calls</figcaption>${barChart("in_doubt", b, "in_doubt", "in doubt", (v) => v.toFixed(v < 10 ? 1 : 0))}</figure>
    </div>`;
  document.documentElement.dataset.rendered = "quality";
}
