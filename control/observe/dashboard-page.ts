// The dashboard the control plane serves at / on its admin port: one page,
// plain JS and inline SVG, no build step and nothing fetched but the control
// plane's own JSON. It polls /api/v1/mesh every two seconds and
// /api/v1/history every five, and draws:
//   - the topology: workloads as nodes, layered left to right by call depth,
//     an arrow per call (to each backend of a split, with its share), labelled
//     with the caller's rate, success, p99 and mTLS share, and, where the
//     backends answered worse than the caller saw, their success and the
//     retries that hid the difference;
//   - for the selected workload: its charts and its edges' over the last
//     15 minutes, the policies in force on it (/api/v1/policies) and a live
//     tap of its requests (/api/v1/tap, when the control plane serves it);
//   - the tables: workloads, edges (both sides, retries, ejections, overload
//     rejections, faults), proxies.
// Data is written with textContent only, so a label value can never become markup.
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tsmesh dashboard</title>
<style>
  :root { --fg: #1d2330; --muted: #6b7385; --line: #e3e6ec; --bg: #f7f8fa; --ok: #12805c; --warn: #b7791f; --bad: #c53030; --accent: #2b6cb0; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; align-items: baseline; gap: 16px; padding: 14px 24px; background: #1d2330; color: #fff; }
  header h1 { margin: 0; font-size: 18px; font-weight: 600; }
  header #status { color: #b8c0d0; font-size: 13px; }
  header #status.error { color: #feb2b2; }
  main { padding: 8px 24px 32px; max-width: 1880px; }
  .scroll { overflow-x: auto; }
  h2 { font-size: 15px; margin: 22px 0 8px; }
  h2 small, h3 small { color: var(--muted); font-weight: 400; }
  h3 { font-size: 13px; margin: 14px 0 6px; }
  .top { display: flex; gap: 16px; align-items: flex-start; }
  .graph-box { flex: 1 1 auto; min-width: 0; background: #fff; border: 1px solid var(--line); }
  @media (max-width: 1599px) {
    .top { flex-direction: column; align-items: stretch; }
    aside { display: grid; grid-template-columns: 1fr 1fr; gap: 0 24px; max-height: none; }
    aside > h2 { grid-column: 1 / 3; }
  }
  #graph { display: block; width: 100%; }
  #graph .node rect { fill: #fff; stroke: #aab2c0; stroke-width: 1.2; }
  #graph .node.selected rect { stroke: var(--accent); stroke-width: 2.5; }
  #graph .node.service rect { stroke-dasharray: 4 3; fill: #fbfbfc; }
  #graph .node { cursor: pointer; }
  #graph .node .title { font-weight: 600; font-size: 13px; }
  #graph .node .sub, #graph .edge text { font-size: 11px; fill: var(--muted); }
  #graph .edge text { paint-order: stroke; stroke: #fff; stroke-width: 4px; stroke-linejoin: round; fill: #3c4557; }
  #graph .edge path { fill: none; }
  #graph .edge text.hot { fill: var(--bad); font-weight: 600; }
  #graph text.ok { fill: var(--ok); } #graph text.warn { fill: var(--warn); } #graph text.bad { fill: var(--bad); }
  aside { flex: 0 0 520px; background: #fff; border: 1px solid var(--line); padding: 10px 14px; max-height: 900px; overflow: auto; }
  aside h2 { margin-top: 4px; }
  .chart { display: block; }
  .chart text { font-size: 10px; fill: var(--muted); }
  .charts { display: grid; grid-template-columns: repeat(3, 1fr); gap: 6px; }
  .chart-title { font-size: 11px; color: var(--muted); }
  dl.policy { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 4px 0 8px; font-size: 12px; }
  dl.policy dt { color: var(--muted); } dl.policy dd { margin: 0; word-break: break-word; }
  #tap { font: 11px/1.35 ui-monospace, Menlo, monospace; max-height: 220px; overflow: auto; background: #fbfbfc; border: 1px solid var(--line); padding: 4px 6px; }
  table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
  th, td { padding: 7px 9px; text-align: left; border-bottom: 1px solid var(--line); white-space: nowrap; }
  td.wrap { white-space: normal; min-width: 90px; }
  th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); background: #fbfbfc; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.ids { white-space: normal; font-size: 12px; color: var(--muted); min-width: 150px; }
  .ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); }
  .muted { color: var(--muted); }
  .tag { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px; font-weight: 600; }
  .tag.ok { background: #e6f6ef; } .tag.bad { background: #fde8e8; } .tag.warn { background: #fdf3e1; }
  .empty { color: var(--muted); text-align: center; padding: 16px; }
</style>
</head>
<body>
<header><h1>tsmesh</h1><span id="status">connecting…</span></header>
<main>
  <h2>Topology <small>callers on the left; an arrow per call, labelled with what the caller saw; click a workload</small></h2>
  <div class="top">
    <div class="graph-box"><svg id="graph" role="img" aria-label="mesh topology"></svg></div>
    <aside id="panel">
      <h2 id="panel-title">Select a workload</h2>
      <div id="panel-history"></div>
      <div>
        <h3>Policies in force <small>from the control plane's model</small></h3>
        <div id="policies" class="muted">select a workload</div>
        <h3>Live tap <small>its requests as its proxy sees them</small></h3>
        <div id="tap-state" class="muted"></div>
        <div id="tap"></div>
      </div>
    </aside>
  </div>

  <h2>Edges <small>calls from a workload to a service: what the caller saw, what the backends answered, what the caller's proxy did</small></h2>
  <div class="scroll"><table id="edges"><thead><tr>
    <th>From</th><th>To</th><th class="num">Success</th><th class="num">Backend</th><th class="num">RPS</th><th class="num">P50</th><th class="num">P99</th>
    <th class="num">Retries</th><th>Resilience</th><th>Security</th><th>Split</th><th>Identities</th><th>15 min</th>
  </tr></thead><tbody></tbody></table></div>

  <h2>Workloads <small>what each workload's pods answered (inbound)</small></h2>
  <div class="scroll"><table id="workloads"><thead><tr>
    <th>Namespace</th><th>Workload</th><th class="num">Meshed</th><th class="num">Success</th><th class="num">RPS</th>
    <th class="num">P50</th><th class="num">P99</th><th>Certificate expires</th><th>15 min</th>
  </tr></thead><tbody></tbody></table></div>

  <h2>Proxies <small>one row per sidecar scraped</small></h2>
  <div class="scroll"><table id="proxies"><thead><tr>
    <th>Namespace</th><th>Workload</th><th>Metrics</th><th>State</th><th>Certificate expires</th>
  </tr></thead><tbody></tbody></table></div>
</main>
<script>
"use strict";
var API = "/api/v1/mesh";
var HISTORY = "/api/v1/history", POLICIES = "/api/v1/policies", TAP = "/api/v1/tap";
var POLL_MS = 2000, HISTORY_MS = 5000, POLICY_MS = 10000, TAP_ROWS = 60;
// The SVG namespace, from the page's own inline <svg> (the HTML parser puts it there).
var SVG = document.getElementById("graph").namespaceURI;
var lastView = null, lastHistory = null, selected = null, policyTimer = null, tapAbort = null;

function pct(v) { return v === null || v === undefined ? "-" : (v * 100).toFixed(2) + "%"; }
function pct0(v) { return v === null || v === undefined ? "-" : (v * 100).toFixed(v >= 0.9995 || v === 0 ? 0 : 1) + "%"; }
function rate(v) { return v.toFixed(1); }
function ms(v) { return v === null ? "-" : (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " ms"; }
function successClass(v) { return v === null || v === undefined ? "" : v >= 0.99 ? "ok" : v >= 0.95 ? "warn" : "bad"; }
function shortId(id) { return id.replace(/^spiffe:[/][/][^/]+[/]/, ""); }
function expiry(seconds) {
  if (seconds === null) return { text: "no certificate", cls: "bad" };
  if (seconds <= 0) return { text: "expired", cls: "bad" };
  var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
  return { text: "in " + (h > 0 ? h + "h " : "") + m + "m", cls: seconds < 600 ? "warn" : "ok" };
}
function edgeKey(e) { return e.sourceNamespace + "/" + e.source + " -> " + e.destination; }
function el(tag, attrs, text) {
  var n = document.createElementNS(SVG, tag);
  for (var k in attrs) n.setAttribute(k, attrs[k]);
  if (text !== undefined) n.textContent = text;
  return n;
}
function html(tag, cls, text) {
  var n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined) n.textContent = text;
  return n;
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

/* ---------- charts ---------- */

/** A line chart of points[field] (and, dashed, points[field2]) over the history's span. */
function chart(points, field, opts) {
  var w = opts.width, h = opts.height, pad = opts.axes ? 14 : 2;
  var svg = el("svg", { width: w, height: h, viewBox: "0 0 " + w + " " + h, class: "chart" });
  svg.dataset.points = String(points.length);
  var fields = [field].concat(opts.field2 ? [opts.field2] : []);
  var values = [];
  points.forEach(function (p) { fields.forEach(function (f) { if (p[f] !== null && p[f] !== undefined) values.push(p[f]); }); });
  var lo = opts.min !== undefined ? Math.min(opts.min, Math.min.apply(null, values.concat([opts.min]))) : Math.min.apply(null, values.concat([0]));
  var hi = Math.max.apply(null, values.concat([opts.max !== undefined ? opts.max : lo + 1e-9]));
  if (hi - lo < 1e-9) hi = lo + 1;
  // The ring's span (15 min) once it is full; before, the span of the points, at least 5 minutes.
  var full = lastHistory ? lastHistory.points * lastHistory.intervalSeconds * 1000 : 900000;
  var end = points.length ? points[points.length - 1].at : Date.now();
  var span = Math.min(full, Math.max(300000, points.length ? end - points[0].at : 0));
  var x = function (at) { return pad + ((at - (end - span)) / span) * (w - pad - 2); };
  var y = function (v) { return h - pad - ((v - lo) / (hi - lo)) * (h - 2 * pad); };
  svg.appendChild(el("rect", { x: pad, y: 0, width: w - pad, height: h - pad + 1, fill: "#fbfbfc", stroke: "#eef0f4" }));
  fields.forEach(function (f, i) {
    var d = "", pen = false;
    points.forEach(function (p) {
      if (p[f] === null || p[f] === undefined) { pen = false; return; }
      d += (pen ? "L" : "M") + x(p.at).toFixed(1) + " " + y(p[f]).toFixed(1) + " ";
      pen = true;
    });
    if (d) svg.appendChild(el("path", { d: d, fill: "none", stroke: i === 0 ? (opts.color || "#2b6cb0") : "#c53030", "stroke-width": 1.6, "stroke-dasharray": i === 0 ? "" : "4 2" }));
    if (points.length === 1 && points[0][f] !== null && points[0][f] !== undefined) svg.appendChild(el("circle", { cx: x(points[0].at), cy: y(points[0][f]), r: 2, fill: i === 0 ? (opts.color || "#2b6cb0") : "#c53030" }));
  });
  if (opts.axes) {
    svg.appendChild(el("text", { x: 0, y: 9 }, opts.format(hi)));
    svg.appendChild(el("text", { x: 0, y: h - pad }, opts.format(lo)));
    svg.appendChild(el("text", { x: w - 2, y: h - 2, "text-anchor": "end" }, "now"));
    svg.appendChild(el("text", { x: pad + 2, y: h - 2 }, "-" + Math.round(span / 60000) + " min"));
  }
  return svg;
}
function chartWidth() {
  var panel = document.getElementById("panel-history");
  return Math.max(110, Math.min(220, Math.floor(((panel && panel.clientWidth) || 380) / 3) - 8));
}
function chartRow(points, isEdge) {
  var row = html("div", "charts");
  var specs = [
    { title: "requests/s", field: "rps", format: function (v) { return v.toFixed(v < 10 ? 1 : 0); } },
    { title: isEdge ? "success: caller, backend (dashed)" : "success", field: "successRate", field2: isEdge ? "backendSuccessRate" : undefined, min: 0.9, max: 1, color: "#12805c", format: function (v) { return (v * 100).toFixed(0) + "%"; } },
    { title: isEdge ? "p99 (caller)" : "p99", field: "p99Ms", color: "#6b46c1", format: function (v) { return v.toFixed(v < 10 ? 1 : 0) + "ms"; } },
  ];
  specs.forEach(function (s) {
    var box = html("div");
    box.appendChild(html("div", "chart-title", s.title));
    box.appendChild(chart(points, s.field, { width: chartWidth(), height: 64, axes: true, field2: s.field2, min: s.min, max: s.max, color: s.color, format: s.format }));
    box.dataset.chart = s.field;
    row.appendChild(box);
  });
  return row;
}

/* ---------- topology ---------- */

/** Nodes and arrows of the view: a workload per node; a call goes to each workload that answered it, else to its service. */
function topology(view) {
  var nodes = {}, arrows = [];
  view.workloads.forEach(function (w) { nodes[w.namespace + "/" + w.name] = { key: w.namespace + "/" + w.name, w: w, service: false }; });
  view.edges.forEach(function (e) {
    var from = e.sourceNamespace + "/" + e.source;
    if (!nodes[from]) nodes[from] = { key: from, w: null, service: false };
    var targets = e.split.length ? e.split.map(function (s) { return { key: s.workload, share: s.share }; }) :
      e.destinationIdentities.length ? e.destinationIdentities.map(function (id) { return { key: shortId(id).replace(/^ns[/]([^/]+)[/]sa[/]/, "$1/"), share: null }; }) : [];
    if (!targets.length) {
      var serving = view.workloads.filter(function (w) { return w.services.indexOf(e.destination) >= 0; });
      targets = serving.length ? serving.map(function (w) { return { key: w.namespace + "/" + w.name, share: null }; }) : [{ key: "service:" + e.destination, share: null }];
    }
    targets.forEach(function (t) {
      if (!nodes[t.key]) nodes[t.key] = { key: t.key, w: null, service: t.key.indexOf("service:") === 0 };
      arrows.push({ edge: e, from: from, to: t.key, share: e.split.length > 1 ? t.share : null });
    });
  });
  // Layers: the longest chain of calls from a node nobody calls (a cycle stops growing after as many rounds as nodes).
  var keys = Object.keys(nodes).sort(), depth = {};
  keys.forEach(function (k) { depth[k] = 0; });
  for (var round = 0; round < keys.length; round++) {
    var moved = false;
    arrows.forEach(function (a) { if (a.from !== a.to && depth[a.to] < depth[a.from] + 1) { depth[a.to] = depth[a.from] + 1; moved = true; } });
    if (!moved) break;
  }
  return { nodes: nodes, keys: keys, depth: depth, arrows: arrows };
}

var NODE_W = 156, NODE_H = 58;
function drawGraph(view) {
  var svg = document.getElementById("graph");
  var t = topology(view);
  var layers = [];
  t.keys.forEach(function (k) { (layers[t.depth[k]] = layers[t.depth[k]] || []).push(k); });
  var width = Math.max(640, svg.parentElement.clientWidth || 900);
  var rows = Math.max.apply(null, layers.map(function (l) { return l ? l.length : 0 }).concat([1]));
  var rowH = 150, height = Math.max(260, rows * rowH + 30);
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.setAttribute("height", String(height));
  svg.replaceChildren();
  var defs = el("defs");
  ["ok", "warn", "bad", "idle"].forEach(function (c) {
    var m = el("marker", { id: "arrow-" + c, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 10, markerHeight: 10, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" });
    m.appendChild(el("path", { d: "M0 0 L10 5 L0 10 z", fill: { ok: "#12805c", warn: "#b7791f", bad: "#c53030", idle: "#aab2c0" }[c] }));
    defs.appendChild(m);
  });
  svg.appendChild(defs);
  if (!t.keys.length) { svg.appendChild(el("text", { x: 20, y: 40, class: "sub" }, "no proxies scraped yet")); return; }
  var cols = layers.length, gap = cols > 1 ? (width - 40 - NODE_W) / (cols - 1) : 0;
  var pos = {};
  layers.forEach(function (layer, d) {
    (layer || []).forEach(function (k, i) {
      var top = (height - layer.length * rowH) / 2 + i * rowH + (rowH - NODE_H) / 2;
      pos[k] = { x: 20 + d * gap, y: top };
    });
  });
  var edgeLayer = el("g"), nodeLayer = el("g");
  svg.appendChild(edgeLayer);
  svg.appendChild(nodeLayer);
  t.arrows.forEach(function (a) {
    var p = pos[a.from], q = pos[a.to], e = a.edge;
    var x1 = p.x + NODE_W, y1 = p.y + NODE_H / 2, x2 = q.x - 2, y2 = q.y + NODE_H / 2;
    if (q.x <= p.x) { x1 = p.x + NODE_W / 2; y1 = p.y + NODE_H; x2 = q.x + NODE_W / 2; y2 = q.y + NODE_H + 2; }
    var cls = e.rps > 0 ? (successClass(e.successRate) || "ok") : "idle";
    var g = el("g", { class: "edge" });
    g.dataset.edge = edgeKey(e);
    g.dataset.target = a.to;
    var mx = (x1 + x2) / 2, bend = q.x <= p.x ? 60 : 0;
    var width = e.rps > 0 ? Math.min(6, 1.2 + Math.log10(1 + e.rps) * 2) : 1;
    var path = el("path", { d: "M" + x1 + " " + y1 + " C" + mx + " " + (y1 + bend) + " " + mx + " " + (y2 + bend) + " " + x2 + " " + y2,
      stroke: { ok: "#12805c", warn: "#b7791f", bad: "#c53030", idle: "#aab2c0" }[cls], "stroke-width": width, "marker-end": "url(#arrow-" + cls + ")" });
    if (e.mtlsShare !== null && e.mtlsShare < 1) path.setAttribute("stroke-dasharray", "6 4");
    g.appendChild(path);
    // Above the curve's middle: what the caller saw; below it: the backends' side and what the caller's proxy did.
    var lx = mx, ly = (y1 + y2) / 2 - 20;
    var label = el("text", { x: lx, y: ly, "text-anchor": "middle" });
    if (a.share !== null) {
      var sh = el("tspan", { x: lx, dy: 0 }, pct0(a.share) + " of calls · ");
      sh.dataset.field = "share";
      label.appendChild(sh);
    }
    var l1 = el("tspan", a.share !== null ? {} : { x: lx, dy: 0 }, rate(a.share !== null ? e.rps * a.share : e.rps) + " rps · ");
    var s = el("tspan", { class: successClass(e.successRate) }, pct0(e.successRate));
    s.dataset.field = "success";
    l1.dataset.field = "rps";
    label.appendChild(l1);
    label.appendChild(s);
    var mt = e.mtlsShare === null ? (e.mtls ? "mTLS" : "plain") : e.mtlsShare >= 1 ? "mTLS" : "mTLS " + pct0(e.mtlsShare);
    var l2 = el("tspan", { x: lx, dy: 13 }, "p99 " + ms(e.p99Ms) + " · " + mt);
    l2.dataset.field = "p99";
    label.appendChild(l2);
    g.appendChild(label);
    var r = e.resilience, masked = e.backend.successRate !== null && e.successRate !== null && e.backend.successRate < e.successRate - 0.0005;
    if (masked || r.retries > 0 || r.ejections > 0 || r.endpointsEjected > 0 || r.overloadRejections > 0 || r.faultsInjected > 0) {
      var parts = [];
      if (e.backend.successRate !== null) parts.push("backend " + pct0(e.backend.successRate));
      if (r.retries > 0) parts.push(r.retries + " retries");
      if (r.retryBudgetExhausted > 0) parts.push("budget out " + r.retryBudgetExhausted);
      if (r.ejections > 0 || r.endpointsEjected > 0) parts.push("ejected " + r.endpointsEjected);
      if (r.overloadRejections > 0) parts.push(r.overloadRejections + " overloaded");
      if (r.faultsInjected > 0) parts.push(r.faultsInjected + " faults");
      var l3 = el("text", { x: lx, y: ly + 37, "text-anchor": "middle", class: masked ? "hot" : "" }, parts.join(" · "));
      l3.dataset.field = "backend";
      g.appendChild(l3);
    }
    edgeLayer.appendChild(g);
  });
  t.keys.forEach(function (k) {
    var n = t.nodes[k], p = pos[k];
    var g = el("g", { class: "node" + (n.service ? " service" : "") + (selected === k ? " selected" : ""), transform: "translate(" + p.x + "," + p.y + ")" });
    g.dataset.workload = k;
    g.appendChild(el("rect", { width: NODE_W, height: NODE_H, rx: 8 }));
    var title = n.service ? k.slice("service:".length) : k.split("/")[1];
    g.appendChild(el("text", { x: 10, y: 19, class: "title" }, title));
    var ns = el("text", { x: NODE_W - 8, y: 19, "text-anchor": "end", class: "sub" }, n.service ? "service" : k.split("/")[0]);
    g.appendChild(ns);
    if (n.w) {
      var line = el("text", { x: 10, y: 37, class: "sub" });
      var rps = el("tspan", {}, rate(n.w.rps) + " rps in · ");
      rps.dataset.field = "rps";
      var ok = el("tspan", { class: successClass(n.w.successRate) }, n.w.successRate === null ? "no calls" : pct0(n.w.successRate));
      ok.dataset.field = "success";
      line.appendChild(rps);
      line.appendChild(ok);
      g.appendChild(line);
      var l2 = el("text", { x: 10, y: 51, class: "sub" }, "p99 " + ms(n.w.p99Ms) + " · " + n.w.meshedPods + "/" + n.w.pods + " meshed");
      l2.dataset.field = "p99";
      g.appendChild(l2);
    }
    g.addEventListener("click", function () { select(k); });
    nodeLayer.appendChild(g);
  });
}

/* ---------- the selected workload ---------- */

function select(key) {
  if (key.indexOf("service:") === 0) return;
  var changed = selected !== key;
  selected = key;
  document.querySelectorAll("#graph .node").forEach(function (n) { n.classList.toggle("selected", n.dataset.workload === key); });
  document.getElementById("panel-title").textContent = key;
  document.getElementById("panel").dataset.workload = key;
  drawPanelHistory();
  if (changed) { loadPolicies(); startTap(); }
}

function drawPanelHistory() {
  var box = document.getElementById("panel-history");
  box.replaceChildren();
  if (!selected || !lastHistory || !lastView) return;
  var mine = lastHistory.workloads[selected] || [];
  var h = html("h3", "", "What its pods answered ");
  h.appendChild(html("small", "", mine.length + " points, one every " + lastHistory.intervalSeconds + " s"));
  box.appendChild(h);
  var row = chartRow(mine, false);
  row.dataset.history = selected;
  box.appendChild(row);
  lastView.edges.filter(function (e) {
    var from = e.sourceNamespace + "/" + e.source;
    return from === selected || e.split.some(function (s) { return s.workload === selected; }) ||
      lastView.workloads.some(function (w) { return w.namespace + "/" + w.name === selected && w.services.indexOf(e.destination) >= 0; });
  }).forEach(function (e) {
    var pts = lastHistory.edges[edgeKey(e)] || [];
    box.appendChild(html("h3", "", e.source + " → " + e.destination));
    var r = chartRow(pts, true);
    r.dataset.history = edgeKey(e);
    box.appendChild(r);
  });
}

function summary(v) {
  if (v === null || v === undefined) return "-";
  if (typeof v !== "object") return String(v);
  if (Array.isArray(v)) return v.map(summary).join("; ");
  return Object.keys(v).map(function (k) { return k + " " + summary(v[k]); }).join(", ");
}
function policyList(box, title, entries) {
  var dl = html("dl", "policy");
  box.appendChild(html("div", "", title));
  entries.forEach(function (kv) { dl.appendChild(html("dt", "", kv[0])); var dd = html("dd", "", kv[1]); dd.dataset.field = kv[0]; dl.appendChild(dd); });
  box.appendChild(dl);
}
function trafficPolicy(box, sp, role) {
  if (!sp.trafficPolicy) { box.appendChild(html("div", "muted", sp.service + " (" + role + "): no TrafficPolicy")); return; }
  var p = sp.trafficPolicy, rows = [];
  ["routes", "timeout", "retries", "circuitBreaker", "faults", "limits"].forEach(function (k) { if (p[k] !== undefined) rows.push([k, summary(p[k])]); });
  sp.conflicts.forEach(function (c) { rows.push(["ignored " + c.name, c.reason]); });
  var before = box.childElementCount;
  policyList(box, "TrafficPolicy " + p.name + " on " + sp.service + " (" + role + ")", rows);
  box.children[before].className = "policy-title";
  box.children[before].dataset.policy = p.name;
}
function loadPolicies() {
  clearTimeout(policyTimer);
  var key = selected;
  var box = document.getElementById("policies");
  fetch(POLICIES + "?workload=" + encodeURIComponent(key), { cache: "no-store" })
    .then(function (r) { return r.json().then(function (b) { if (!r.ok) throw new Error(b.error || "HTTP " + r.status); return b; }); })
    .then(function (p) {
      if (key !== selected) return;
      box.className = "";
      box.replaceChildren();
      var inb = p.inbound;
      policyList(box, "Inbound (" + shortId(p.identity) + ")", [
        ["mTLS", inb.mtlsMode + " (" + inb.mtlsModeFrom + ")" + (Object.keys(inb.portMtlsModes).length ? "; ports " + summary(inb.portMtlsModes) : "")],
        ["default policy", inb.defaultInboundPolicy || "all-authenticated"],
      ].concat(inb.authorizationPolicies.map(function (a) { return ["AuthorizationPolicy " + a.name, (a.action || "ALLOW") + ": " + summary(a.rules)]; }))
        .concat(inb.authorizationPolicies.length ? [] : [["authorization", "no AuthorizationPolicy selects it"]]));
      p.serves.forEach(function (s) { trafficPolicy(box, s, "callers apply it"); });
      p.calls.forEach(function (s) { trafficPolicy(box, s, "its proxy applies it"); });
    })
    .catch(function (err) { if (key === selected) { box.className = "muted"; box.textContent = "policies unavailable: " + err.message; } })
    .finally(function () { if (key === selected) policyTimer = setTimeout(loadPolicies, POLICY_MS); });
}

function startTap() {
  if (tapAbort) tapAbort.abort();
  var key = selected, parts = key.split("/");
  var state = document.getElementById("tap-state"), out = document.getElementById("tap");
  out.replaceChildren();
  var ctl = new AbortController();
  tapAbort = ctl;
  state.textContent = "connecting…";
  var url = TAP + "?target=workload/" + encodeURIComponent(parts[1]) + "&namespace=" + encodeURIComponent(parts[0]) + "&maxRps=10";
  var reqs = {};
  fetch(url, { signal: ctl.signal, cache: "no-store" }).then(function (r) {
    if (r.status === 404) { state.textContent = "this control plane serves no tap (" + TAP + " answered 404)"; return; }
    if (!r.ok) return r.text().then(function (t) { state.textContent = "tap refused: " + t; });
    state.textContent = "live";
    var reader = r.body.getReader(), decoder = new TextDecoder(), buf = "";
    var pump = function () {
      return reader.read().then(function (chunk) {
        if (chunk.done) { state.textContent = "tap ended"; return; }
        buf += decoder.decode(chunk.value, { stream: true });
        var lines = buf.split("\\n");
        buf = lines.pop();
        lines.forEach(function (line) { if (line) tapEvent(JSON.parse(line), reqs, out, state); });
        return pump();
      });
    };
    return pump();
  }).catch(function (err) { if (!ctl.signal.aborted) state.textContent = "tap unavailable: " + err.message; });
}
function tapEvent(ev, reqs, out, state) {
  if (ev.type === "status") { state.textContent = "live · " + ev.message; return; }
  if (ev.type === "req") { reqs[ev.id] = ev; return; }
  if (ev.type !== "rsp" && ev.type !== "end") return;
  var req = reqs[ev.id];
  if (!req) return;
  if (ev.type === "rsp") { req.status = ev.status; req.latencyMs = ev.latencyMs; return; }
  delete reqs[ev.id];
  var line = html("div", req.status >= 500 || ev.error ? "bad" : "", [
    req.direction === "inbound" ? "in " : "out", shortId(req.source || "-") + " → " + (req.authority || shortId(req.destination || "")),
    req.method, req.path, String(req.status || "-"), (req.latencyMs !== undefined ? req.latencyMs.toFixed(1) : ev.durationMs.toFixed(1)) + " ms", ev.error || "",
  ].join("  "));
  line.dataset.tap = "1";
  out.insertBefore(line, out.firstChild);
  while (out.childElementCount > TAP_ROWS) out.removeChild(out.lastChild);
}

/* ---------- tables ---------- */

function sparkCell(tr, points, field) {
  var td = cell(tr, "", "", field);
  if (points && points.length) td.appendChild(chart(points, "rps", { width: 90, height: 22 }));
  return td;
}

function render(view) {
  lastView = view;
  drawGraph(view);
  if (!selected) {
    var first = view.workloads.filter(function (w) { return w.services.length > 0; })[0] || view.workloads[0];
    if (first) select(first.namespace + "/" + first.name);
  } else drawPanelHistory();
  var hist = lastHistory || { workloads: {}, edges: {} };
  var soonest = {};
  view.proxies.forEach(function (p) {
    var key = p.namespace + "/" + p.workload;
    if (p.certExpiresInSeconds !== null && (soonest[key] === undefined || p.certExpiresInSeconds < soonest[key])) soonest[key] = p.certExpiresInSeconds;
  });
  fill("workloads", view.workloads, 9, function (tr, w) {
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
    sparkCell(tr, hist.workloads[key], "trend");
  });
  fill("edges", view.edges, 13, function (tr, e) {
    tr.dataset.edge = edgeKey(e);
    cell(tr, e.sourceNamespace + "/" + e.source, "", "source");
    cell(tr, "→ " + e.destination, "", "destination");
    cell(tr, pct(e.successRate), "num " + successClass(e.successRate), "success");
    cell(tr, pct(e.backend.successRate), "num " + successClass(e.backend.successRate), "backend");
    cell(tr, rate(e.rps), "num", "rps");
    cell(tr, ms(e.p50Ms), "num", "p50");
    cell(tr, ms(e.p99Ms), "num", "p99");
    var r = e.resilience;
    cell(tr, String(r.retries), "num" + (r.retries > 0 ? " warn" : ""), "retries");
    var res = [];
    if (r.retryBudgetExhausted) res.push("budget exhausted " + r.retryBudgetExhausted);
    if (r.ejections || r.endpointsEjected) res.push("ejections " + r.ejections + ", ejected now " + r.endpointsEjected);
    if (r.overloadRejections) res.push("overloaded " + r.overloadRejections);
    if (r.faultsInjected) res.push("faults " + r.faultsInjected);
    cell(tr, res.join("; ") || "-", res.length ? "wrap warn" : "muted", "resilience");
    var sec = cell(tr, "", "", "security");
    var tag = document.createElement("span");
    var partial = e.mtlsShare !== null && e.mtlsShare < 1;
    tag.className = "tag " + (e.mtls ? "ok" : partial && e.mtlsShare > 0 ? "warn" : "bad");
    tag.textContent = e.mtls ? "mTLS" : partial && e.mtlsShare > 0 ? "mTLS " + pct0(e.mtlsShare) : "plain";
    sec.appendChild(tag);
    cell(tr, e.split.length > 1 ? e.split.map(function (s) { return s.workload.split("/")[1] + " " + pct0(s.share); }).join(", ") : "-", "wrap", "split");
    cell(tr, e.sourceIdentities.map(shortId).join(", ") + " → " + e.destinationIdentities.map(shortId).join(", "), "ids", "identities");
    sparkCell(tr, hist.edges[edgeKey(e)], "trend");
  });
  fill("proxies", view.proxies, 5, function (tr, p) {
    tr.dataset.proxy = p.url;
    cell(tr, p.namespace);
    cell(tr, p.workload, "", "name");
    cell(tr, p.url, "ids", "url");
    cell(tr, p.up ? "up" : "down: " + (p.error || "not scraped yet"), p.up ? "ok" : "bad", "state");
    var e = expiry(p.certExpiresInSeconds);
    cell(tr, p.certExpiresAt ? e.text + " (" + p.certExpiresAt.replace("T", " ").replace(/[.][0-9]+Z$/, " UTC") + ")" : e.text, e.cls, "cert");
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
function pollHistory() {
  fetch(HISTORY, { cache: "no-store" })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(function (h) { lastHistory = h; if (lastView) render(lastView); })
    .catch(function () { /* the mesh poll reports an unreachable control plane */ })
    .finally(function () { setTimeout(pollHistory, HISTORY_MS); });
}
window.addEventListener("resize", function () { if (lastView) drawGraph(lastView); });
poll();
pollHistory();
</script>
</body>
</html>
`;
