// The latency view of a route: a heatmap of the calls' durations over time
// (the server sends the cells, not the spans), with its p50, p90 and p99
// lines. Drag over a region (the slow band of the last minutes, say) and the
// page compares the spans in it with the rest, attribute by attribute
// (BubbleUp): the attributes whose values differ most come first.
import {
  api, h, fill, fmtDuration, fmtPercent, fmtClock, pageState, errorBox, hashUrl, recordTiming,
  painted, ticks, sizeCanvas,
} from "./util.js";

const WINDOWS = [["5m", "Last 5 minutes"], ["15m", "Last 15 minutes"], ["1h", "Last hour"],
  ["6h", "Last 6 hours"], ["24h", "Last day"]];
const PAD = { l: 64, r: 14, t: 12, b: 30 };
const HEIGHT = 340;
const LINES = [["p50Ms", "p50", "#1b9e77"], ["p90Ms", "p90", "#e6a100"], ["p99Ms", "p99", "#d0312d"]];
/** Friendlier names for the attributes BubbleUp ranks most often. */
const NAMES = {
  "seawall.endpoint": "endpoint", "seawall.subset": "subset", attempts: "attempt count",
  "seawall.attempt": "attempt", caller: "caller", "seawall.caller": "caller", status: "status",
  "http.response.status_code": "HTTP status", "service.name": "service", "span.name": "operation",
};

export async function render(view, { params, signal }) {
  const q = {
    service: params.get("service") || "",
    route: params.get("route") || "",
    operation: params.get("operation") || "",
    lookback: params.get("lookback") || "15m",
    start: params.get("start") || "",
    end: params.get("end") || "",
  };
  const sel = ["selStart", "selEnd", "selMin", "selMax"].map((k) => params.get(k));
  const catalog = await api("seawall/routes", null, signal);
  const services = Object.keys(catalog.services);
  if (!q.service && services.length) q.service = services[0];
  const form = controls(q, catalog.services);
  const out = h("div", { class: "latency-out" });
  fill(view, h("div", { class: "latency-page" }, h("h1", null, "Latency"), form, out));
  if (!q.service) {
    fill(out, h("p", { class: "empty" }, "No spans yet."));
    pageState("latency", "ready");
    return;
  }
  const width = Math.max(600, out.clientWidth || 900);
  const plotW = width - PAD.l - PAD.r;
  // a column a second for short windows (20 at least), one every 4 px for long ones
  const seconds = q.start && q.end ? (Number(q.end) - Number(q.start)) / 1e6 : seconds_of(q.lookback);
  const timeBuckets = Math.round(Math.min(Math.floor(plotW / 4), Math.max(20, seconds)));
  const fetched = performance.now();
  let doc;
  try {
    doc = await api("seawall/heatmap", {
      service: q.service, route: q.operation ? "" : q.route, operation: q.operation,
      ...(q.start ? { start: q.start, end: q.end } : { lookback: q.lookback }),
      timeBuckets, latencyBuckets: 60,
    }, signal);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    fill(out, errorBox(err));
    pageState("latency", "error");
    return;
  }
  const t0 = performance.now();
  const bubble = h("section", { class: "bubble", id: "bubbleup", "aria-label": "comparison" },
    h("p", { class: "muted" }, "Drag over the heatmap to select a region: its spans are compared with the rest, attribute by attribute."));
  const plot = heatmap(doc, width, (region) => compareRegion(bubble, q, doc, region, signal), signal);
  fill(out,
    h("p", { class: "view-what" }, describeView(doc), h("span", { class: "muted" }, ` · ${doc.total.toLocaleString()} spans${doc.truncated ? " (truncated)" : ""}`)),
    plot.element, bubble);
  const rendered = performance.now();
  await painted();
  recordTiming("heatmap", {
    fetch: t0 - fetched, render: rendered - t0, painted: performance.now() - t0, spans: doc.total,
    cells: doc.counts.length * (doc.latencyEdgesMs.length - 1),
  });
  if (sel.every((x) => x)) {
    plot.select({ start: Number(sel[0]), end: Number(sel[1]), minMs: Number(sel[2]), maxMs: Number(sel[3]) });
  } else {
    pageState("latency", "ready");
  }
}

function seconds_of(lookback) {
  const m = /^(\d+)(s|m|h)$/.exec(lookback);
  return m ? Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2]] : 900;
}

function describeView(doc) {
  if (doc.operation) return h("span", null, h("strong", null, doc.service), ` spans named `, h("strong", null, doc.operation));
  return h("span", null, "Calls to ", h("strong", null, doc.service),
    doc.route ? [" on route ", h("strong", null, doc.route)] : " (every route)", ", one per attempt");
}

function controls(q, catalog) {
  const routes = h("datalist", { id: "route-names" });
  const fillRoutes = (service) => fill(routes, (catalog[service] || []).map((r) => h("option", { value: r })));
  fillRoutes(q.service);
  return h("form", { class: "toolbar", id: "latency-form", autocomplete: "off", onsubmit: (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(e.target).entries());
    if (data.operation) data.route = "";
    if (data.lookback) { delete data.start; delete data.end; }
    location.hash = hashUrl("/latency", data);
  } },
  h("label", null, "Calls to ", h("select", { name: "service", onchange: (e) => fillRoutes(e.target.value) },
    Object.keys(catalog).map((s) => h("option", { value: s, selected: s === q.service }, s)))),
  h("label", null, "route ", h("input", { name: "route", value: q.route, list: "route-names", placeholder: "every route", size: 12 })),
  routes,
  h("label", { title: "instead of the calls through the mesh: the service's own spans of this name" }, "or its spans named ",
    h("input", { name: "operation", value: q.operation, placeholder: "POST /checkout", size: 14 })),
  h("label", null, h("select", { name: "lookback" },
    q.start ? h("option", { value: "", selected: true }, "The chosen range") : null,
    WINDOWS.some(([v]) => v === q.lookback) || q.start ? null : h("option", { value: q.lookback, selected: true }, `Last ${q.lookback}`),
    WINDOWS.map(([v, l]) => h("option", { value: v, selected: !q.start && v === q.lookback }, l)))),
  q.start ? h("input", { type: "hidden", name: "start", value: q.start }) : null,
  q.start ? h("input", { type: "hidden", name: "end", value: q.end }) : null,
  h("button", { type: "submit" }, "Show"));
}

/** The heatmap on a canvas, the percentile lines, and the drag-to-select region. */
function heatmap(doc, width, onSelect, signal) {
  const canvas = h("canvas", { id: "heatmap", "aria-label": "latency heatmap" });
  const region = h("div", { class: "region", hidden: true });
  const wrap = h("div", { class: "heatmap", style: { width: `${width}px` } }, canvas, region);
  const [ctx] = sizeCanvas(canvas, width, HEIGHT);
  const T = doc.counts.length;
  const L = doc.latencyEdgesMs.length - 1;
  const t0 = doc.timeEdgesNs[0] / 1000;
  const t1 = doc.timeEdgesNs[T] / 1000;
  // some room above and below the cells, so that a band at either end stays in sight
  const lo = doc.latencyEdgesMs[0] / 1.5;
  const hi = doc.latencyEdgesMs[L] * 1.5;
  const plotW = width - PAD.l - PAD.r;
  const plotH = HEIGHT - PAD.t - PAD.b;
  const x = (us) => PAD.l + ((us - t0) / (t1 - t0)) * plotW;
  const y = (ms) => PAD.t + plotH - (Math.log(Math.max(ms, lo * 1e-3) / lo) / Math.log(hi / lo)) * plotH;
  const usAt = (px) => t0 + ((px - PAD.l) / plotW) * (t1 - t0);
  const msAt = (py) => lo * (hi / lo) ** ((PAD.t + plotH - py) / plotH);

  // cells: darker is more spans (log scale), empty cells left blank
  let max = 0;
  for (const col of doc.counts) for (const c of col) if (c > max) max = c;
  const scale = Math.log1p(max || 1);
  ctx.fillStyle = "#fbfcfe";
  ctx.fillRect(PAD.l, PAD.t, plotW, plotH);
  const ys = doc.latencyEdgesMs.map(y);
  for (let i = 0; i < T; i++) {
    const col = doc.counts[i];
    const xa = x(doc.timeEdgesNs[i] / 1000);
    const xb = x(doc.timeEdgesNs[i + 1] / 1000);
    for (let j = 0; j < L; j++) {
      const c = col[j];
      if (!c) continue;
      ctx.fillStyle = ramp(Math.log1p(c) / scale);
      ctx.fillRect(xa, ys[j + 1], xb - xa + 0.5, ys[j] - ys[j + 1] + 0.5);
    }
  }
  // axes
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#556";
  ctx.strokeStyle = "rgba(80,90,110,0.18)";
  ctx.textAlign = "right";
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v < lo || v > hi) continue;
      ctx.beginPath(); ctx.moveTo(PAD.l, y(v)); ctx.lineTo(PAD.l + plotW, y(v)); ctx.stroke();
      ctx.fillText(fmtDuration(v * 1000), PAD.l - 6, y(v) + 4);
    }
  }
  ctx.textAlign = "center";
  for (const v of ticks(t0, t1, 6)) {
    ctx.fillText(t1 - t0 < 20e6 ? fmtClock(v) : new Date(v / 1000).toLocaleTimeString(undefined, { hour12: false }), x(v), HEIGHT - 10);
  }
  // percentile lines through the middle of each time bucket
  for (const [key, , color] of LINES) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.75;
    ctx.beginPath();
    let open = false;
    for (let i = 0; i < T; i++) {
      const v = doc[key][i];
      if (v === null || v === undefined) { open = false; continue; }
      const px = x((doc.timeEdgesNs[i] + doc.timeEdgesNs[i + 1]) / 2000);
      const py = y(Math.max(v, lo));
      if (open) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      open = true;
    }
    ctx.stroke();
  }
  ctx.lineWidth = 1;
  const key = h("div", { class: "line-key" }, LINES.map(([, name, color]) =>
    h("span", null, h("i", { style: { background: color } }), name)),
  h("span", { class: "ramp" }, "fewer", h("i", { class: "ramp-bar" }), `more spans (max ${max} a cell)`));

  // dragging a region
  let from = null;
  const clamp = (v, a, b) => Math.min(b, Math.max(a, v));
  const local = (event) => {
    const box = canvas.getBoundingClientRect();
    return [clamp(event.clientX - box.left, PAD.l, PAD.l + plotW), clamp(event.clientY - box.top, PAD.t, PAD.t + plotH)];
  };
  const show = (a, b) => {
    region.hidden = false;
    Object.assign(region.style, {
      left: `${Math.min(a[0], b[0])}px`, top: `${Math.min(a[1], b[1])}px`,
      width: `${Math.abs(a[0] - b[0])}px`, height: `${Math.abs(a[1] - b[1])}px`,
    });
  };
  canvas.addEventListener("mousedown", (e) => { from = local(e); show(from, from); e.preventDefault(); });
  window.addEventListener("mousemove", (e) => { if (from) show(from, local(e)); }, { signal });
  window.addEventListener("mouseup", (e) => {
    if (!from) return;
    const to = local(e);
    const a = from;
    from = null;
    if (Math.abs(a[0] - to[0]) < 3 && Math.abs(a[1] - to[1]) < 3) { region.hidden = true; return; }
    const selection = {
      start: Math.round(usAt(Math.min(a[0], to[0]))), end: Math.round(usAt(Math.max(a[0], to[0]))),
      minMs: msAt(Math.max(a[1], to[1])), maxMs: msAt(Math.min(a[1], to[1])),
    };
    onSelect(selection);
  }, { signal });
  const select = (s) => {
    show([x(s.start), y(s.maxMs)], [x(s.end), y(s.minMs)]);
    onSelect(s);
  };
  // for the browser tests (and the curious): where a time and a duration are drawn
  window.seawall = window.seawall || {};
  window.seawall.latency = {
    pixelFor: (us, ms) => ({ x: x(us), y: y(ms), width, height: HEIGHT }),
    window: { start: t0, end: t1, minMs: lo, maxMs: hi },
    select,
  };
  return { element: h("div", null, wrap, key), select };
}

/** White through blue to dark purple, for 0..1. */
function ramp(v) {
  const stops = [[255, 247, 188], [254, 196, 79], [236, 112, 20], [153, 52, 4], [72, 20, 60]];
  const p = Math.min(0.9999, Math.max(0, v)) * (stops.length - 1);
  const k = Math.floor(p);
  const f = p - k;
  const c = stops[k].map((a, n) => Math.round(a + (stops[k + 1][n] - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

async function compareRegion(box, q, doc, s, signal) {
  pageState("latency", "loading");
  const url = new URL(location.href);
  const [path, query = ""] = url.hash.replace(/^#/, "").split("?", 2);
  const params = new URLSearchParams(query);
  s = { ...s, start: Math.floor(s.start), end: Math.ceil(s.end) };
  params.set("selStart", String(s.start)); params.set("selEnd", String(s.end));
  params.set("selMin", s.minMs.toFixed(3)); params.set("selMax", s.maxMs.toFixed(3));
  history.replaceState(null, "", `#${path}?${params}`);
  fill(box, h("p", { class: "muted" }, "Comparing…"));
  let result;
  try {
    result = await api("seawall/compare", {
      service: q.service, route: q.operation ? "" : q.route, operation: q.operation,
      start: String(Math.floor(doc.timeEdgesNs[0] / 1000)), end: String(Math.ceil(doc.timeEdgesNs[doc.timeEdgesNs.length - 1] / 1000)),
      selStart: String(s.start), selEnd: String(s.end),
      selMinDuration: `${Math.floor(s.minMs * 1000)}us`, selMaxDuration: `${Math.ceil(s.maxMs * 1000)}us`,
    }, signal);
  } catch (err) {
    if (err.name === "AbortError") return;
    fill(box, errorBox(err));
    pageState("latency", "error");
    return;
  }
  fill(box,
    h("h2", null, "What the selection has that the rest has not"),
    h("p", { class: "muted" },
      `${result.selected.toLocaleString()} selected span${result.selected === 1 ? "" : "s"} (${fmtDuration(s.minMs * 1000)} to ${fmtDuration(s.maxMs * 1000)}, `,
      `${new Date(s.start / 1000).toLocaleTimeString(undefined, { hour12: false })}–${new Date(s.end / 1000).toLocaleTimeString(undefined, { hour12: false })}) `,
      `against ${result.baseline.toLocaleString()} others${result.sampled ? " (each side compared through a uniform sample)" : ""}. `,
      "Score: how far apart the two distributions of the attribute's values are (0 alike, 1 disjoint)."),
    result.attributes.length ? bubbleTable(result.attributes) : h("p", { class: "empty" }, "Nothing to compare: the selection or the rest is empty."));
  pageState("latency", "ready");
}

function bubbleTable(attributes) {
  return h("ol", { class: "bubble-list", id: "bubble-list" }, attributes.map((a) =>
    h("li", { dataset: { key: a.key } },
      h("div", { class: "bubble-head" },
        h("strong", null, NAMES[a.key] || a.key.replace(/^event:/, "event ")),
        NAMES[a.key] ? h("code", null, a.key) : null,
        h("span", { class: "score", title: "total variation distance" },
          h("i", { style: { width: `${Math.round(120 * a.score)}px` } }), a.score.toFixed(2))),
      h("table", { class: "values" }, h("tbody", null, a.values.map((v) =>
        h("tr", { dataset: { value: v.value === null ? "" : v.value } },
          h("td", { class: "value" }, v.value === null ? h("em", null, "(absent)") : v.value),
          h("td", { class: "bars" },
            h("span", { class: "sel" }, h("i", { style: { width: `${100 * v.selected}%` } }), `selected ${fmtPercent(v.selected, 0)}`),
            h("span", { class: "base" }, h("i", { style: { width: `${100 * v.baseline}%` } }), `rest ${fmtPercent(v.baseline, 0)}`)))))))));
}
