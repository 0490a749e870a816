"""The status page: plain HTML and CSS, a small script that fetches ``/status.json`` every
few seconds and redraws, and a chart of the last hour drawn on the server as SVG.

The script builds every element with ``textContent``, never ``innerHTML``: account IDs, rows
and Jira's messages are shown as text whatever they hold. The chart holds only numbers and the
labels written here; it is escaped all the same.
"""

from __future__ import annotations

from html import escape

from runner.monitor.subscriber import CHART_SPAN_S, Chart

REFRESH_S = 2

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>forge-runner status</title>
<style>
:root { color-scheme: light; --ink: #1b1f24; --muted: #4a5260; --line: #c8ced6;
        --bad: #a1141c; --warn: #7a4a00; --ok: #1d6b2a; --bg: #ffffff; --band: #f2f4f7; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, sans-serif; color: var(--ink); background: var(--bg); }
header, main { max-width: 1280px; margin: 0 auto; padding: 0.5rem 1rem; }
header { display: flex; gap: 1rem; align-items: baseline; flex-wrap: wrap;
         border-bottom: 1px solid var(--line); }
h1 { font-size: 1.3rem; margin: 0.3rem 0; }
h2 { font-size: 1.1rem; margin: 1rem 0 0.4rem; }
h3 { font-size: 1rem; margin: 0.2rem 0; }
.muted { color: var(--muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 1rem; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 0.6rem 0.8rem; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; font-weight: 600; padding: 0.2rem 0; }
th, td { text-align: left; padding: 0.15rem 0.4rem; border-bottom: 1px solid var(--band);
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
progress { width: 100%; height: 1rem; }
.state-running { color: var(--ok); font-weight: 600; }
.state-failed, .bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); font-weight: 600; }
code { font-size: 0.9em; overflow-wrap: anywhere; }
img.chart { max-width: 100%; height: auto; border: 1px solid var(--line); }
</style>
</head>
<body>
<header>
<h1>forge-runner status</h1>
<p class="muted" id="process">loading…</p>
<p class="muted" aria-live="polite" id="updated"></p>
</header>
<main>
<section aria-labelledby="runs-h"><h2 id="runs-h">Runs</h2><div id="runs" class="grid"></div>
</section>
<section aria-labelledby="chart-h"><h2 id="chart-h">The last hour</h2>
<img class="chart" id="chart" src="status/chart.svg" width="720" height="180"
 alt="Items per second and mints per second over the last hour"></section>
<section aria-labelledby="budgets-h"><h2 id="budgets-h">Budgets</h2>
<div class="grid" id="budgets"></div></section>
<div class="grid">
<section aria-labelledby="sites-h"><h2 id="sites-h">Sites</h2><div id="sites"></div></section>
<section aria-labelledby="inst-h"><h2 id="inst-h">Installations</h2>
<div id="installations"></div></section>
</div>
<section aria-labelledby="workers-h"><h2 id="workers-h">Workers and lanes</h2>
<p class="muted" id="cluster-note"></p><div class="grid" id="workers"></div></section>
</main>
<script>
"use strict";
const REFRESH_MS = __REFRESH_MS__;
function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const kid of kids) {
    if (kid === null || kid === undefined) continue;
    node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}
function secs(s) {
  if (s === null || s === undefined) return "—";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? h + " h " : "") + (h || m ? m + " min " : "") + r + " s";
}
// A duration under a minute with tenths (a small job's bound is a fraction of a second).
function short(s) {
  return s === null || s === undefined || s >= 60 ? secs(s) : s.toFixed(1) + " s";
}
function num(n, digits) { return n === null || n === undefined ? "—" : n.toFixed(digits); }
function when(t) { return t ? new Date(t * 1000).toISOString().replace(".000", "") : "—"; }
function table(caption, heads, rows, numeric) {
  const t = el("table", {}, el("caption", {}, caption));
  t.append(el("thead", {}, el("tr", {}, ...heads.map((h, i) =>
    el("th", {scope: "col", class: numeric && numeric.includes(i) ? "num" : ""}, h)))));
  const body = el("tbody");
  if (!rows.length) body.append(el("tr", {}, el("td", {colspan: heads.length}, "none")));
  for (const r of rows) body.append(el("tr", {}, ...r.map((c, i) =>
    el("td", {class: numeric && numeric.includes(i) ? "num" : ""}, c))));
  t.append(body);
  return t;
}
function run(r) {
  const card = el("article", {class: "card run", "data-run": r.run_id,
                              "aria-labelledby": "run-" + r.run_id});
  card.append(el("h3", {id: "run-" + r.run_id}, r.job, " ", el("code", {}, r.run_id)));
  card.append(el("p", {}, "state ", el("span", {class: "state state-" + r.state}, r.state),
    " · site(s) ", r.sites.join(", ") || "—"));
  const total = r.total || 0, done = r.finished;
  const bar = el("progress", {max: String(total || 1), value: String(done),
                              id: "p-" + r.run_id});
  card.append(el("label", {for: "p-" + r.run_id}, "progress "),
              el("span", {class: "progress-text"}, done + " of " + (r.total ?? "?") + " items"),
              bar);
  card.append(el("p", {}, "rate ", el("span", {class: "rate"}, num(r.rate, 2)), " items/s · ETA ",
    el("span", {class: "eta"}, secs(r.eta_s)), " · elapsed ", secs(r.elapsed_s),
    " · plan's bound ", el("span", {class: "bound"}, short(r.bound_s))));
  card.append(table("Items by state", Object.keys(r.counts),
                    [Object.values(r.counts)], Object.keys(r.counts).map((_, i) => i)));
  card.append(table("Top failure reasons", ["state", "reason", "items", "rows"],
    r.failures.map(f => [f.state, f.text && f.text !== f.reason ? `${f.reason}: ${f.text}`
                         : f.reason, f.count, f.rows.join(", ")]), [2]));
  return card;
}
function budgets(b) {
  const out = [];
  out.push(el("div", {class: "card"}, table("Mint buckets", ["bucket", "used", "limit", "window"],
    b.mint.map(m => [m.bucket, m.used, m.limit, secs(m.window_s)]), [1, 2])));
  out.push(el("div", {class: "card"}, table("Points quota",
    ["scope", "used", "left", "of", "resets in"],
    b.quota.map(q => [q.scope, num(q.used, 0), num(q.left, 0), q.points,
                      secs(q.reset_at - state.now)]), [1, 2, 3])));
  out.push(el("div", {class: "card", id: "pauses"}, table("Active pauses",
    ["scope", "reason", "ends in"],
    b.pauses.map(p => [p.scope, p.reason, p.remaining_s === null ? "until resumed"
                                                                 : secs(p.remaining_s)]))));
  return out;
}
function cluster(c) {
  document.getElementById("cluster-note").textContent = c.note || "";
  if (!c.shared) return [];
  const out = [el("div", {class: "card"}, table("Workers alive (heartbeat within 2 leases)",
    ["host", "pid", "heartbeat", "lanes held", "worker"],
    c.workers.map(w => [w.host, w.pid, short(w.heartbeat_age_s) + " ago", w.lanes_held,
                        w.worker + (w.this_process ? " (this process)" : "")]), [1, 3]))];
  for (const r of c.runs) {
    out.push(el("div", {class: "card lanes", "data-run": r.run_id}, table(
      "Lanes of " + r.run_id + ": " + r.open + " not done",
      ["worker", "host", "pid", "lanes held"],
      r.held.map(h => [h.worker + (h.alive ? "" : " (no heartbeat)"), h.host ?? "—",
                       h.pid ?? "—", h.lanes]), [2, 3])));
  }
  return out;
}
const state = {now: 0};
async function refresh() {
  try {
    const answer = await fetch("status.json", {cache: "no-store"});
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    const s = await answer.json();
    state.now = s.now;
    document.getElementById("process").textContent = "forge-runner " + s.process.kind +
      ", up since " + when(s.process.started_at);
    document.getElementById("runs").replaceChildren(
      ...(s.runs.length ? s.runs.map(run) : [el("p", {}, "no run yet")]));
    document.getElementById("budgets").replaceChildren(...budgets(s.budgets));
    document.getElementById("sites").replaceChildren(table("Jira by site",
      ["site", "requests", "429s by scope", "p50 ms", "p95 ms"],
      s.sites.map(x => [x.site, x.requests,
        Object.entries(x.rate_limited).map(([k, v]) => k + " " + v).join(", ") || "0",
        num(x.p50_ms, 1), num(x.p95_ms, 1)]), [1, 3, 4]));
    document.getElementById("installations").replaceChildren(table("System tokens",
      ["installation", "cloud ID", "token age", "expires in"],
      s.installations.map(i => [i.installation_id, i.cloud_id, secs(i.age_s),
                                i.expires_in_s === null ? "no expiry" : secs(i.expires_in_s)])));
    document.getElementById("workers").replaceChildren(...cluster(s.cluster));
    document.getElementById("chart").src = "status/chart.svg?t=" + Date.now();
    document.getElementById("updated").textContent = "updated " + when(s.now);
  } catch (err) {
    document.getElementById("updated").textContent = "not updated: " + err.message;
  }
}
refresh();
setInterval(refresh, REFRESH_MS);
</script>
</body>
</html>
"""


def page() -> str:
    return PAGE.replace("__REFRESH_MS__", str(REFRESH_S * 1000))


def chart_svg(chart: Chart, now: float, *, width: int = 720, height: int = 180) -> str:
    """Items/s and mints/s over the last hour as two lines, the newest step on the right."""
    series = chart.series(now)
    pad_l, pad_r, pad_t, pad_b = 44, 10, 24, 22
    top = max([1.0, *(max(i, m) for _, i, m in series)])
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    step = plot_w / max(1, len(series) - 1)

    def line(index: int) -> str:
        return " ".join(f"{pad_l + n * step:.1f},{pad_t + plot_h * (1 - s[index] / top):.1f}"
                        for n, s in enumerate(series))

    label = escape(f"{top:.3g}/s")
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" \
viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title">
<title id="chart-title">Items per second and mints per second, last {CHART_SPAN_S / 60:.0f} \
minutes</title>
<rect width="{width}" height="{height}" fill="#ffffff"/>
<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + plot_h}" stroke="#4a5260"/>
<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{pad_l + plot_w}" y2="{pad_t + plot_h}" \
stroke="#4a5260"/>
<text x="4" y="{pad_t + 4}" font-size="11" fill="#1b1f24">{label}</text>
<text x="4" y="{pad_t + plot_h}" font-size="11" fill="#1b1f24">0</text>
<text x="{pad_l}" y="{height - 6}" font-size="11" fill="#1b1f24">−60 min</text>
<text x="{pad_l + plot_w - 24}" y="{height - 6}" font-size="11" fill="#1b1f24">now</text>
<polyline fill="none" stroke="#0b5cad" stroke-width="2" points="{line(1)}"/>
<polyline fill="none" stroke="#a1141c" stroke-width="2" stroke-dasharray="5 3" \
points="{line(2)}"/>
<text x="{pad_l + 8}" y="15" font-size="12" fill="#0b5cad">— items/s</text>
<text x="{pad_l + 90}" y="15" font-size="12" fill="#a1141c">- - mints/s</text>
</svg>
"""
