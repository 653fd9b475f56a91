// Search: the filters of Jaeger's search form, results as a duration-vs-time
// scatter plot and a list. The query lives in the URL (#/search?...), so a
// search can be linked and the back button works.
import {
  api, h, fill, fmtDuration, fmtTime, fmtAgo, fmtClock, serviceChip, serviceColor, pageState,
  errorBox, hashUrl, parseLogfmt, parseDuration, ticks, sizeCanvas, recordTiming, painted,
} from "./util.js";

const ORDERS = [
  ["newest", "Most recent"],
  ["oldest", "Oldest"],
  ["slowest", "Longest first"],
  ["fastest", "Shortest first"],
  ["most_spans", "Most spans"],
  ["most_errors", "Most errors"],
];
const LOOKBACKS = [
  ["5m", "Last 5 minutes"], ["15m", "Last 15 minutes"], ["1h", "Last hour"],
  ["6h", "Last 6 hours"], ["24h", "Last day"], ["48h", "Last 2 days"], ["168h", "Last 7 days"],
  ["all", "Any time"], ["custom", "Custom range…"],
];
const FIELDS = ["service", "operation", "route", "status", "minDuration", "maxDuration",
  "attrs", "lookback", "start", "end", "limit", "order"];

export async function render(view, { params, signal }) {
  const q = Object.fromEntries(FIELDS.map((f) => [f, params.get(f) || ""]));
  q.lookback = q.lookback || "1h";
  q.limit = q.limit || "100";
  q.order = q.order || "newest";

  const services = await api("services", null, signal).then((r) => r.data || []);
  const form = searchForm(q, services, signal);
  const results = h("section", { class: "results", "aria-label": "results" });
  fill(view, h("div", { class: "search-page" }, form, results));

  let apiParams;
  try {
    apiParams = toApiParams(q);
  } catch (err) {
    fill(results, errorBox(err));
    pageState("search", "error");
    return;
  }
  fill(results, h("p", { class: "muted" }, "Searching…"));
  let found;
  try {
    found = await api("seawall/search", apiParams, signal);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    fill(results, errorBox(err));
    pageState("search", "error");
    return;
  }
  const t0 = performance.now();
  showResults(results, found.traces, q);
  const rendered = performance.now();
  await painted();
  recordTiming("search", { render: rendered - t0, painted: performance.now() - t0, traces: found.traces.length });
  pageState("search", "ready");
}

/** The form's values as /api/seawall/search parameters (throws on an unreadable field). */
function toApiParams(q) {
  const p = {
    service: q.service, operation: q.operation, route: q.route, status: q.status,
    limit: q.limit, order: q.order,
  };
  for (const name of ["minDuration", "maxDuration"]) {
    if (q[name]) {
      try {
        parseDuration(q[name]);
      } catch (err) {
        err.param = name;
        throw err;
      }
      p[name] = q[name].replace("µs", "us");
    }
  }
  if (q.attrs) {
    try {
      p.tag = parseLogfmt(q.attrs).map(([k, v]) => `${k}:${v}`);
    } catch (err) {
      err.param = "attributes";
      throw err;
    }
  }
  if (q.lookback === "custom") {
    if (q.start) p.start = String(Date.parse(q.start) * 1000);
    if (q.end) p.end = String(Date.parse(q.end) * 1000);
  } else if (q.lookback !== "all") {
    p.lookback = q.lookback;
  }
  return p;
}

function select(name, options, value, attrs) {
  return h("select", { name, id: `f-${name}`, ...attrs },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", null, label), control, hint ? h("small", null, hint) : null);
}

function searchForm(q, services, signal) {
  const operation = select("operation", [["", "All operations"]], "");
  const loadOperations = async (service) => {
    const ops = service ? await api(`services/${encodeURIComponent(service)}/operations`, null, signal)
      .then((r) => r.data || []).catch(() => []) : [];
    fill(operation, h("option", { value: "" }, "All operations"),
      ops.map((o) => h("option", { value: o, selected: o === q.operation }, o)));
  };
  const service = select("service", [["", "All services"], ...services.map((s) => [s, s])], q.service, {
    onchange: (e) => loadOperations(e.target.value),
  });
  loadOperations(q.service);
  const custom = h("div", { class: "custom-range", hidden: q.lookback !== "custom" },
    field("From", h("input", { type: "datetime-local", name: "start", value: q.start, step: "1" })),
    field("To", h("input", { type: "datetime-local", name: "end", value: q.end, step: "1" })));
  const lookback = select("lookback", LOOKBACKS, q.lookback, {
    onchange: (e) => { custom.hidden = e.target.value !== "custom"; },
  });
  const form = h("form", { class: "search-form", id: "search-form", autocomplete: "off" },
    h("h2", null, "Search"),
    field("Service", service),
    field("Operation", operation),
    field("Route", h("input", { name: "route", value: q.route, placeholder: "checkout" }), "the route's name in mesh.yaml"),
    field("Status", select("status", [["", "Any"], ["error", "Error"], ["ok", "OK"]], q.status)),
    h("div", { class: "pair" },
      field("Min duration", h("input", { name: "minDuration", value: q.minDuration, placeholder: "100ms" })),
      field("Max duration", h("input", { name: "maxDuration", value: q.maxDuration, placeholder: "5s" }))),
    field("Attributes", h("input", { name: "attrs", value: q.attrs, placeholder: "seawall.subset=v2 http.response.status_code=503" }), "key=value, space-separated"),
    field("Time", lookback),
    custom,
    h("div", { class: "pair" },
      field("Limit", h("input", { name: "limit", type: "number", min: "1", max: "10000", value: q.limit })),
      field("Sort", select("order", ORDERS, q.order))),
    h("button", { type: "submit", class: "primary", id: "search-button" }, "Find traces"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const f of FIELDS) next[f] = (data.get(f) || "").toString().trim();
    if (next.lookback !== "custom") { next.start = ""; next.end = ""; }
    const url = hashUrl("/search", next);
    if (location.hash === url) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = url;
  });
  return form;
}

function showResults(results, traces, q) {
  if (!traces.length) {
    fill(results, h("p", { class: "empty" }, "No trace matches. Widen the time range or drop a filter."));
    return;
  }
  const chosen = new Set();
  const compareButton = h("button", { type: "button", disabled: true, id: "compare-selected",
    onclick: () => { const [a, b] = [...chosen]; location.hash = `#/compare/${a}/${b}`; } },
  "Compare the two selected");
  const maxDuration = Math.max(...traces.map((t) => t.duration), 1);
  const list = h("ol", { class: "trace-list", id: "trace-list" }, traces.map((t) => {
    const box = h("input", { type: "checkbox", "aria-label": "select to compare", onclick: (e) => {
      e.stopPropagation();
      if (e.target.checked) chosen.add(t.traceID); else chosen.delete(t.traceID);
      compareButton.disabled = chosen.size !== 2;
    } });
    return h("li", { class: `trace-item${t.errors ? " has-errors" : ""}`, dataset: { traceId: t.traceID } },
      box,
      h("a", { href: `#/trace/${t.traceID}`, class: "trace-link" },
        h("div", { class: "trace-title" },
          serviceChip(t.rootService), h("span", { class: "op" }, t.rootName),
          h("code", { class: "tid" }, t.traceID.slice(0, 12))),
        h("div", { class: "trace-bar" },
          h("i", { style: { width: `${Math.max(1, (100 * t.duration) / maxDuration)}%`, background: serviceColor(t.rootService) } })),
        h("div", { class: "trace-meta" },
          h("strong", { class: "duration" }, fmtDuration(t.duration)),
          h("span", null, `${t.spans} span${t.spans === 1 ? "" : "s"}`),
          t.errors ? h("span", { class: "badge err" }, `${t.errors} error${t.errors === 1 ? "" : "s"}`) : null,
          h("span", { class: "services" }, t.services.map(([name, n]) =>
            h("span", { class: "svc", title: `${n} spans` }, h("i", { class: "swatch", style: { background: serviceColor(name) } }), `${name} ${n}`))),
          h("time", { title: fmtTime(t.start) }, fmtAgo(t.start)))));
  }));
  fill(results,
    h("div", { class: "results-head" }, h("h2", null, `${traces.length} trace${traces.length === 1 ? "" : "s"}`),
      h("span", { class: "muted" }, `sorted: ${ORDERS.find(([k]) => k === q.order)[1].toLowerCase()}`), compareButton),
    scatter(traces),
    list);
}

/** Duration against start time, one dot per trace (red: it has errors), on a canvas. */
function scatter(traces) {
  const wrap = h("div", { class: "scatter", id: "scatter" });
  const canvas = h("canvas", { "aria-label": "duration against start time" });
  const tip = h("div", { class: "tip", hidden: true });
  wrap.append(canvas, tip);
  const draw = () => {
    const width = Math.max(300, wrap.clientWidth);
    const height = 200;
    const [ctx] = sizeCanvas(canvas, width, height);
    const pad = { l: 56, r: 12, t: 10, b: 24 };
    let t0 = Math.min(...traces.map((t) => t.start));
    let t1 = Math.max(...traces.map((t) => t.start));
    if (t1 - t0 < 1e6) { t0 -= 5e5; t1 += 5e5; }
    const dMax = Math.max(...traces.map((t) => t.duration)) * 1.1 || 1;
    const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
    const y = (d) => height - pad.b - (d / dMax) * (height - pad.t - pad.b);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#667";
    ctx.strokeStyle = "#e3e6ec";
    ctx.textAlign = "right";
    for (const v of ticks(0, dMax, 4)) {
      ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(width - pad.r, y(v)); ctx.stroke();
      ctx.fillText(fmtDuration(v), pad.l - 6, y(v) + 4);
    }
    ctx.textAlign = "center";
    for (const v of ticks(t0, t1, 5)) {
      ctx.fillText(t1 - t0 < 20e6 ? fmtClock(v) : new Date(v / 1000).toLocaleTimeString(undefined, { hour12: false }), x(v), height - 6);
    }
    const maxSpans = Math.max(...traces.map((t) => t.spans));
    const points = traces.map((t) => ({
      t, px: x(t.start), py: y(t.duration), r: 2.5 + 4.5 * Math.sqrt(t.spans / maxSpans),
    }));
    for (const p of points) {
      ctx.beginPath();
      ctx.arc(p.px, p.py, p.r, 0, 2 * Math.PI);
      ctx.fillStyle = p.t.errors ? "rgba(204,51,51,0.75)" : "rgba(68,119,170,0.6)";
      ctx.fill();
    }
    const nearest = (event) => {
      const box = canvas.getBoundingClientRect();
      const mx = event.clientX - box.left;
      const my = event.clientY - box.top;
      let best = null;
      let bestD = 64;
      for (const p of points) {
        const d = (p.px - mx) ** 2 + (p.py - my) ** 2;
        if (d < bestD) { best = p; bestD = d; }
      }
      return best;
    };
    canvas.onmousemove = (event) => {
      const p = nearest(event);
      canvas.style.cursor = p ? "pointer" : "default";
      tip.hidden = !p;
      if (p) {
        fill(tip, h("strong", null, `${p.t.rootService}: ${p.t.rootName}`), h("br"),
          `${fmtDuration(p.t.duration)} · ${p.t.spans} spans${p.t.errors ? ` · ${p.t.errors} errors` : ""}`);
        tip.style.left = `${Math.min(p.px + 10, width - 220)}px`;
        tip.style.top = `${Math.max(0, p.py - 40)}px`;
      }
    };
    canvas.onmouseleave = () => { tip.hidden = true; };
    canvas.onclick = (event) => {
      const p = nearest(event);
      if (p) location.hash = `#/trace/${p.t.traceID}`;
    };
  };
  requestAnimationFrame(draw);
  return wrap;
}
