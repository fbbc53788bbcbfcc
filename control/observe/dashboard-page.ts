// The dashboard the control plane serves at / on its admin port: one page,
// plain JS, no build step. It polls /api/v1/mesh every two seconds and
// redraws three tables (workloads, edges, proxies). Data is written with
// textContent only, so a label value can never become markup.
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tsmesh dashboard</title>
<style>
  :root { --fg: #1d2330; --muted: #6b7385; --line: #e3e6ec; --bg: #f7f8fa; --ok: #12805c; --warn: #b7791f; --bad: #c53030; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; align-items: baseline; gap: 16px; padding: 14px 24px; background: #1d2330; color: #fff; }
  header h1 { margin: 0; font-size: 18px; font-weight: 600; }
  header #status { color: #b8c0d0; font-size: 13px; }
  header #status.error { color: #feb2b2; }
  main { padding: 8px 24px 32px; max-width: 1280px; }
  h2 { font-size: 15px; margin: 22px 0 8px; }
  h2 small { color: var(--muted); font-weight: 400; }
  table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
  th, td { padding: 7px 10px; text-align: left; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); background: #fbfbfc; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.ids { white-space: normal; font-size: 12px; color: var(--muted); }
  .ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); }
  .tag { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px; font-weight: 600; }
  .tag.ok { background: #e6f6ef; } .tag.bad { background: #fde8e8; }
  .arrow { color: var(--muted); padding: 0 4px; }
  .empty { color: var(--muted); text-align: center; padding: 16px; }
</style>
</head>
<body>
<header><h1>tsmesh</h1><span id="status">connecting…</span></header>
<main>
  <h2>Workloads <small>what each workload's pods answered (inbound)</small></h2>
  <table id="workloads"><thead><tr>
    <th>Namespace</th><th>Workload</th><th class="num">Meshed</th><th class="num">Success</th><th class="num">RPS</th>
    <th class="num">P50</th><th class="num">P99</th><th>Certificate expires</th>
  </tr></thead><tbody></tbody></table>

  <h2>Edges <small>calls from a workload to a service, as the caller's proxy saw them</small></h2>
  <table id="edges"><thead><tr>
    <th>From</th><th>To</th><th class="num">Success</th><th class="num">RPS</th><th class="num">P50</th><th class="num">P99</th>
    <th>Security</th><th>Identities</th>
  </tr></thead><tbody></tbody></table>

  <h2>Proxies <small>one row per sidecar scraped</small></h2>
  <table id="proxies"><thead><tr>
    <th>Namespace</th><th>Workload</th><th>Metrics</th><th>State</th><th>Certificate expires</th>
  </tr></thead><tbody></tbody></table>
</main>
<script>
"use strict";
var API = "/api/v1/mesh";
var POLL_MS = 2000;

function pct(v) { return v === null ? "-" : (v * 100).toFixed(2) + "%"; }
function rate(v) { return v.toFixed(1); }
function ms(v) { return v === null ? "-" : (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " ms"; }
function successClass(v) { return v === null ? "" : v >= 0.99 ? "ok" : v >= 0.95 ? "warn" : "bad"; }
function shortId(id) { return id.replace(/^spiffe:\\/\\/[^/]+\\//, ""); }
function expiry(seconds) {
  if (seconds === null) return { text: "no certificate", cls: "bad" };
  if (seconds <= 0) return { text: "expired", cls: "bad" };
  var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
  return { text: "in " + (h > 0 ? h + "h " : "") + m + "m", cls: seconds < 600 ? "warn" : "ok" };
}

function cell(tr, text, cls, field) {
  var td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  if (field) td.dataset.field = field;
  tr.appendChild(td);
  return td;
}
function fill(id, rows, columns, draw) {
  var body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  if (rows.length === 0) {
    var tr = body.insertRow();
    cell(tr, "nothing yet", "empty").colSpan = columns;
    return;
  }
  rows.forEach(function (r) { var tr = body.insertRow(); draw(tr, r); });
}

function render(view) {
  var soonest = {};
  view.proxies.forEach(function (p) {
    var key = p.namespace + "/" + p.workload;
    if (p.certExpiresInSeconds !== null && (soonest[key] === undefined || p.certExpiresInSeconds < soonest[key])) soonest[key] = p.certExpiresInSeconds;
  });
  fill("workloads", view.workloads, 8, function (tr, w) {
    var key = w.namespace + "/" + w.name;
    tr.dataset.workload = key;
    cell(tr, w.namespace);
    cell(tr, w.name, "", "name");
    cell(tr, w.meshedPods + "/" + w.pods, "num", "meshed");
    cell(tr, pct(w.successRate), "num " + successClass(w.successRate), "success");
    cell(tr, rate(w.rps), "num", "rps");
    cell(tr, ms(w.p50Ms), "num", "p50");
    cell(tr, ms(w.p99Ms), "num", "p99");
    var e = expiry(soonest[key] === undefined ? null : soonest[key]);
    cell(tr, e.text, e.cls, "cert");
  });
  fill("edges", view.edges, 8, function (tr, e) {
    tr.dataset.edge = e.sourceNamespace + "/" + e.source + " -> " + e.destination;
    cell(tr, e.sourceNamespace + "/" + e.source, "", "source");
    cell(tr, "→ " + e.destination, "", "destination");
    cell(tr, pct(e.successRate), "num " + successClass(e.successRate), "success");
    cell(tr, rate(e.rps), "num", "rps");
    cell(tr, ms(e.p50Ms), "num", "p50");
    cell(tr, ms(e.p99Ms), "num", "p99");
    var sec = cell(tr, "", "", "security");
    var tag = document.createElement("span");
    tag.className = "tag " + (e.mtls ? "ok" : "bad");
    tag.textContent = e.mtls ? "mTLS" : "plain";
    sec.appendChild(tag);
    cell(tr, e.sourceIdentities.map(shortId).join(", ") + " → " + e.destinationIdentities.map(shortId).join(", "), "ids", "identities");
  });
  fill("proxies", view.proxies, 5, function (tr, p) {
    tr.dataset.proxy = p.url;
    cell(tr, p.namespace);
    cell(tr, p.workload, "", "name");
    cell(tr, p.url, "ids", "url");
    cell(tr, p.up ? "up" : "down: " + (p.error || "not scraped yet"), p.up ? "ok" : "bad", "state");
    var e = expiry(p.certExpiresInSeconds);
    cell(tr, p.certExpiresAt ? e.text + " (" + p.certExpiresAt.replace("T", " ").replace(/\\.\\d+Z$/, " UTC") + ")" : e.text, e.cls, "cert");
  });
  var status = document.getElementById("status");
  status.className = "";
  status.textContent = "updated " + new Date(view.generatedAt).toLocaleTimeString() + " · rates over the last " +
    view.windowSeconds.toFixed(0) + " s · " + view.proxies.length + " proxies";
}

function poll() {
  fetch(API, { cache: "no-store" })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(render)
    .catch(function (err) {
      var status = document.getElementById("status");
      status.className = "error";
      status.textContent = "cannot reach the control plane (" + err.message + "); retrying";
    })
    .finally(function () { setTimeout(poll, POLL_MS); });
}
poll();
</script>
</body>
</html>
`;
