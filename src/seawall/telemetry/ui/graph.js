// The service graph: nodes and edges built from spans (a callee's SERVER span
// under a caller's span), the RED figures per edge, each edge's drift from its
// own baseline, and its breaker and outlier state as the caller's sidecar
// reports them (its admin /clusters page; "unknown" when it cannot be read).
import {
  api, h, fill, fmtDuration, fmtPercent, fmtRate, serviceColor, serviceChip, pageState,
  hashUrl, recordTiming, painted,
} from "./util.js";

const WINDOWS = [["5m", "Last 5 minutes"], ["15m", "Last 15 minutes"], ["1h", "Last hour"],
  ["6h", "Last 6 hours"], ["24h", "Last day"]];
const NODE_W = 170;
const NODE_H = 58;
const COL = 440;
const ROW = 130;

export async function render(view, { params, signal }) {
  const q = {
    lookback: params.get("lookback") || "15m",
    current: params.get("current") || "10m",
    baseline: params.get("baseline") || "24h",
    threshold: params.get("threshold") || "",
  };
  const controls = h("form", { class: "toolbar", id: "graph-form", onsubmit: (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    location.hash = hashUrl("/graph", Object.fromEntries(data.entries()));
  } },
  h("label", null, "Window ", h("select", { name: "lookback" },
    WINDOWS.map(([v, l]) => h("option", { value: v, selected: v === q.lookback }, l)))),
  h("label", { title: "drift: the current window's p99 against the baseline before it" }, "Drift: current ",
    h("input", { name: "current", value: q.current, size: 4 }), " against the ",
    h("input", { name: "baseline", value: q.baseline, size: 4 }), " before it, flagged at ×",
    h("input", { name: "threshold", value: q.threshold, size: 3, placeholder: "1.5" })),
  h("button", { type: "submit" }, "Refresh"));
  const out = h("div", { class: "graph-out" }, h("p", { class: "muted" }, "Reading the spans…"));
  fill(view, h("div", { class: "graph-page" }, h("h1", null, "Service graph"), controls, out));
  const doc = await api("seawall/graph", q, signal);
  const t0 = performance.now();
  if (!doc.edges.length && !doc.nodes.length) {
    fill(out, h("p", { class: "empty" }, "No calls in this window."));
  } else {
    fill(out, drawGraph(doc), legend(), edgeTable(doc));
  }
  const rendered = performance.now();
  await painted();
  recordTiming("graph", { render: rendered - t0, painted: performance.now() - t0, edges: doc.edges.length });
  pageState("graph", "ready");
}

/** Longest-path layers from the callers nobody calls, cycles broken where a depth-first
 * walk meets them (the edge closing a cycle is drawn backwards, under the nodes). */
function layout(nodes, edges) {
  const names = nodes.map((n) => n.service);
  const out = new Map(names.map((n) => [n, []]));
  const calledBy = new Map(names.map((n) => [n, 0]));
  for (const e of edges) {
    if (e.caller === e.callee || !out.has(e.caller) || !out.has(e.callee)) continue;
    out.get(e.caller).push(e.callee);
    calledBy.set(e.callee, calledBy.get(e.callee) + 1);
  }
  const state = new Map();
  const back = new Set();
  const visit = (n) => {
    state.set(n, 1);
    for (const m of out.get(n)) {
      if (state.get(m) === 1) back.add(`${n}\u0000${m}`);
      else if (!state.has(m)) visit(m);
    }
    state.set(n, 2);
  };
  for (const n of names) if (!calledBy.get(n) && !state.has(n)) visit(n);
  for (const n of names) if (!state.has(n)) visit(n);
  const rank = new Map(names.map((n) => [n, 0]));
  for (let pass = 0; pass < names.length; pass++) {
    let moved = false;
    for (const [a, targets] of out) {
      for (const b of targets) {
        if (back.has(`${a}\u0000${b}`)) continue;
        if (rank.get(a) + 1 > rank.get(b)) { rank.set(b, rank.get(a) + 1); moved = true; }
      }
    }
    if (!moved) break;
  }
  const layers = [];
  for (const n of names) (layers[rank.get(n)] ||= []).push(n);
  const pos = new Map();
  layers.forEach((layer, x) => {
    if (x > 0) {
      // barycentre of the callers already placed: fewer crossings
      const y = (n) => {
        const ys = edges.filter((e) => e.callee === n && pos.has(e.caller)).map((e) => pos.get(e.caller).row);
        return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 1e9;
      };
      layer.sort((a, b) => y(a) - y(b) || a.localeCompare(b));
    }
    layer.forEach((n, row) => pos.set(n, { col: x, row }));
  });
  const rows = Math.max(...layers.filter(Boolean).map((l) => l.length));
  for (const [n, p] of pos) {
    const size = layers[p.col].length;
    p.x = 30 + p.col * COL;
    p.y = 40 + (p.row + (rows - size) / 2) * ROW;
  }
  return { pos, width: 60 + (layers.length - 1) * COL + NODE_W + 60, height: 80 + (rows - 1) * ROW + NODE_H };
}

function edgeClass(e) {
  const cls = ["edge"];
  if (e.drift && e.drift.flagged) cls.push("drifted");
  if (e.breaker === "open" || e.breaker === "forced_open") cls.push("breaker-open");
  else if (e.breaker === "half_open") cls.push("breaker-half");
  if (e.errorPct >= 5) cls.push("failing");
  return cls.join(" ");
}

function drawGraph(doc) {
  const { pos, width, height } = layout(doc.nodes, doc.edges);
  const svg = h("svg", { class: "graph", id: "service-graph", width, height: height + 20, viewBox: `0 0 ${width} ${height + 20}`, role: "img", "aria-label": "service graph" });
  svg.append(h("defs", null, h("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerUnits: "userSpaceOnUse", markerWidth: "10", markerHeight: "10", orient: "auto-start-reverse" },
    h("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  for (const e of doc.edges) {
    const a = pos.get(e.caller);
    const b = pos.get(e.callee);
    if (!a || !b) continue;
    let d;
    let lx;
    let ly;
    if (a === b) { // a service calling itself
      const x = a.x + NODE_W;
      const y = a.y + NODE_H / 2;
      d = `M${x},${y - 10} C${x + 60},${y - 60} ${x + 60},${y + 60} ${x},${y + 10}`;
      lx = x + 50; ly = y - 40;
    } else if (b.col > a.col) {
      const x1 = a.x + NODE_W; const y1 = a.y + NODE_H / 2;
      const x2 = b.x; const y2 = b.y + NODE_H / 2;
      const mx = (x1 + x2) / 2;
      d = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
      lx = mx; ly = (y1 + y2) / 2;
    } else { // a call back to an earlier column: under the nodes
      const x1 = a.x + NODE_W / 2; const y1 = a.y + NODE_H;
      const x2 = b.x + NODE_W / 2; const y2 = b.y + NODE_H;
      const low = Math.max(y1, y2) + 50;
      d = `M${x1},${y1} C${x1},${low} ${x2},${low} ${x2},${y2}`;
      lx = (x1 + x2) / 2; ly = low - 10;
    }
    const rate = `${fmtRate(e.rate)} · ${fmtPercent(e.errorPct / 100)} errors`;
    const latency = `p50 ${fmtDuration(ms(e.p50Ms))} · p99 ${fmtDuration(ms(e.p99Ms))}`;
    const g = h("g", { class: edgeClass(e), "data-caller": e.caller, "data-callee": e.callee },
      h("title", null, `${e.caller} → ${e.callee}\n${rate}\n${latency}\nbreaker: ${e.breaker}, outlier: ${e.outlier}`),
      h("path", { d, "marker-end": "url(#arrow)" }),
      h("text", { x: lx, y: ly - 22, "text-anchor": "middle", class: "edge-label" }, rate),
      h("text", { x: lx, y: ly - 8, "text-anchor": "middle", class: "edge-label" }, latency));
    const marks = [];
    if (e.drift && e.drift.flagged) marks.push([`▲ p99 ×${e.drift.ratio ? e.drift.ratio.toFixed(1) : "∞"} (${e.drift.differenceMs >= 0 ? "+" : ""}${fmtDuration(ms(e.drift.differenceMs))})`, "drift-mark"]);
    if (e.breaker !== "closed" && e.breaker !== "off") marks.push([`breaker ${e.breaker.replace("_", " ")}`, `breaker-mark ${e.breaker}`]);
    if (e.outlier === "ejecting") marks.push([`${e.ejected.length} ejected`, "outlier-mark"]);
    marks.forEach(([text, cls], k) => g.append(h("text", { x: lx, y: ly + 20 + 14 * k, "text-anchor": "middle", class: cls }, text)));
    svg.append(g);
  }
  for (const n of doc.nodes) {
    const p = pos.get(n.service);
    const g = h("g", { class: `node${n.uninstrumented ? " uninstrumented" : ""}`, "data-service": n.service, transform: `translate(${p.x},${p.y})` },
      h("title", null, `${n.service}: ${n.calls} requests served`),
      h("rect", { width: NODE_W, height: NODE_H, rx: 8, class: "node-box" }),
      h("rect", { width: 6, height: NODE_H, rx: 3, fill: serviceColor(n.service) }),
      h("text", { x: 16, y: 22, class: "node-name" }, n.service),
      h("text", { x: 16, y: 42, class: "node-red" },
        n.uninstrumented ? "no spans of its own"
          : n.calls ? `${fmtRate(n.rate)} · ${fmtPercent(n.errorPct / 100)} · p99 ${fmtDuration(ms(n.p99Ms))}`
            : "calls out only"));
    svg.append(g);
  }
  return h("div", { class: "graph-wrap" }, svg);
}

function ms(x) {
  return x === null || x === undefined ? null : x * 1000;
}

function legend() {
  return h("p", { class: "legend" },
    h("span", { class: "lg drifted" }, "▲ drifted"), " p99 now against the edge's own baseline · ",
    h("span", { class: "lg breaker-open" }, "breaker open"), " · ",
    h("span", { class: "lg breaker-half" }, "half open"), " · ",
    h("span", { class: "lg failing" }, "≥ 5% errors"),
    " · breaker and outlier state from the caller's sidecar (admin /clusters)");
}

function edgeTable(doc) {
  return h("table", { class: "grid edges", id: "edge-table" },
    h("thead", null, h("tr", null, ["Caller", "Callee", "Rate", "Calls", "Errors", "p50", "p99",
      "Drift (p99 now / baseline)", "Breaker", "Outlier"].map((c) => h("th", null, c)))),
    h("tbody", null, doc.edges.map((e) => h("tr", { class: edgeClass(e), dataset: { caller: e.caller, callee: e.callee } },
      h("td", null, serviceChip(e.caller)),
      h("td", null, serviceChip(e.callee), e.uninstrumented ? h("small", { class: "muted" }, " (no spans)") : null),
      h("td", { class: "num" }, fmtRate(e.rate)),
      h("td", { class: "num" }, e.calls),
      h("td", { class: "num" }, fmtPercent(e.errorPct / 100)),
      h("td", { class: "num" }, fmtDuration(ms(e.p50Ms))),
      h("td", { class: "num" }, fmtDuration(ms(e.p99Ms))),
      h("td", { class: "drift-cell" }, driftText(e.drift)),
      h("td", { class: `state ${e.breaker}` }, e.breaker.replace("_", " ")),
      h("td", { class: `state ${e.outlier}` }, e.outlier === "ejecting" ? `ejecting ${e.ejected.join(", ")}` : e.outlier)))));
}

function driftText(d) {
  if (!d) return h("span", { class: "muted" }, "–");
  const figures = `${fmtDuration(ms(d.currentP99Ms))} / ${fmtDuration(ms(d.baselineP99Ms))}`;
  if (d.flagged) {
    return h("span", { class: "drift-mark" }, `▲ ×${d.ratio ? d.ratio.toFixed(2) : "∞"} `,
      h("small", null, `${figures} (${d.differenceMs >= 0 ? "+" : ""}${fmtDuration(ms(d.differenceMs))})`));
  }
  return h("span", { class: "muted", title: `${d.currentCalls} calls now, ${d.baselineCalls} in the baseline` },
    `${d.ratio ? `×${d.ratio.toFixed(2)} ` : ""}${figures} · ${d.reason}`);
}
