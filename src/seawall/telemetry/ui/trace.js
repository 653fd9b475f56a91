// The trace view: a waterfall timeline with the critical path drawn on it,
// span details (attributes, events, links), and the trace's statistics.
//
// The timeline draws only the rows in view (22px each), so a trace of
// thousands of spans costs what its first screen costs; the tree, the
// critical path and the order of the rows are computed once per trace.
import {
  api, h, fill, fmtDuration, fmtTime, fmtPercent, serviceChip, serviceColor, pageState,
  errorBox, recordTiming, painted, ticks,
} from "./util.js";

const ROW = 22;
const OVERSCAN = 12;
/** Attributes that say which hop a span is, shown next to its name where there is room. */
const KEY_ATTRIBUTES = ["seawall.attempt", "seawall.endpoint", "url.path", "http.route", "http.response.status_code"];

export async function render(view, { match, params, signal }) {
  const id = match[1].toLowerCase();
  const fetched = performance.now();
  const data = await api(`seawall/traces/${id}`, null, signal);
  const t0 = performance.now();
  const model = buildModel(data);
  const page = h("div", { class: "trace-page" });
  fill(view, page);
  const tabs = renderPage(page, data, model, params.get("tab") || "timeline", signal);
  const rendered = performance.now();
  await painted();
  recordTiming("trace", {
    fetch: t0 - fetched, render: rendered - t0, painted: performance.now() - t0, spans: data.spans.length,
  });
  pageState("trace", "ready");
  return tabs;
}

/** The tree, each span's depth, the rows' order, the critical path per span. */
export function buildModel(data) {
  const spans = data.spans;
  const n = spans.length;
  const index = new Map();
  spans.forEach((s, i) => index.set(s.id, i));
  const children = new Array(n);
  const roots = [];
  for (let i = 0; i < n; i++) {
    const p = spans[i].parent ? index.get(spans[i].parent) : undefined;
    if (p === undefined || p === i) roots.push(i);
    else (children[p] || (children[p] = [])).push(i);
  }
  // spans come sorted by start; children keep that order
  const depth = new Int32Array(n);
  const order = [];
  const seen = new Uint8Array(n);
  const walk = (start) => {
    const stack = [start];
    depth[start] = 0;
    while (stack.length) {
      const i = stack.pop();
      if (seen[i]) continue;
      seen[i] = 1;
      order.push(i);
      const kids = children[i];
      if (kids) for (let k = kids.length - 1; k >= 0; k--) { depth[kids[k]] = depth[i] + 1; stack.push(kids[k]); }
    }
  };
  roots.forEach(walk);
  for (let i = 0; i < n; i++) if (!seen[i]) walk(i); // a parent loop: shown as roots
  const path = new Map();
  for (const [i, s, e] of data.criticalPath) {
    if (!path.has(i)) path.set(i, []);
    path.get(i).push([s, e]);
  }
  const onPath = new Map(data.onPath.map(([i, t]) => [i, t]));
  let maxDepth = 0;
  for (let i = 0; i < n; i++) if (depth[i] > maxDepth) maxDepth = depth[i];
  return { index, children, order, depth, path, onPath, maxDepth, collapsed: new Set(), selected: null };
}

function attr(span, key) {
  const kv = span.attributes.find(([k]) => k === key);
  return kv ? kv[1] : undefined;
}

/** "attempt 2 · 127.0.0.1:8002 · 503": what tells this span from its siblings. A server
 * span without an endpoint of its own says where its caller's attempt went ("at ..."). */
function describe(span, parent) {
  const parts = [];
  const attempt = attr(span, "seawall.attempt");
  if (attempt !== undefined) parts.push(`attempt ${attempt}`);
  const endpoint = attr(span, "seawall.endpoint");
  if (endpoint !== undefined) parts.push(endpoint);
  else if (parent && span.kind === "server" && attr(parent, "seawall.endpoint") !== undefined) {
    parts.push(`at ${attr(parent, "seawall.endpoint")}`);
  }
  const status = attr(span, "http.response.status_code");
  if (status !== undefined) parts.push(String(status));
  return parts.join(" · ");
}

function parentOf(data, model, i) {
  const p = data.spans[i].parent ? model.index.get(data.spans[i].parent) : undefined;
  return p === undefined ? null : data.spans[p];
}

function renderPage(page, data, model, tab, signal) {
  const root = data.spans[model.order[0]];
  const services = data.services;
  const errors = data.spans.filter((s) => s.error).length;
  const header = h("header", { class: "trace-head" },
    h("h1", null, serviceChip(services[root.service]), " ", h("span", { class: "op" }, root.name)),
    h("dl", { class: "facts" },
      fact("Trace", h("code", { id: "trace-id" }, data.traceID)),
      fact("Start", fmtTime(data.start)),
      fact("Duration", h("strong", { id: "trace-duration" }, fmtDuration(data.duration))),
      fact("Services", services.length),
      fact("Depth", model.maxDepth + 1),
      fact("Spans", data.spans.length),
      errors ? fact("Errors", h("span", { class: "badge err" }, errors)) : null),
    h("div", { class: "trace-actions" },
      compareWith(data.traceID),
      h("a", { href: `../api/v3/traces/${data.traceID}`, target: "_blank", rel: "noopener" }, "OTLP JSON")));
  const body = h("div", { class: "trace-body" });
  const tabBar = h("div", { class: "tabs", role: "tablist" },
    ["timeline", "statistics"].map((name) => h("button", {
      type: "button", role: "tab", class: "tab", "aria-selected": String(name === tab), dataset: { tab: name },
      onclick: () => show(name),
    }, name === "timeline" ? "Timeline" : "Statistics")));
  const show = (name) => {
    for (const b of tabBar.children) b.setAttribute("aria-selected", String(b.dataset.tab === name));
    if (name === "statistics") showStatistics(body, data, signal);
    else showTimeline(body, data, model);
  };
  page.append(header, criticalSummary(data, model, (i) => select(i)), tabBar, body);
  const select = (i) => {
    show("timeline");
    body.dispatchEvent(new CustomEvent("select-span", { detail: i }));
  };
  show(tab);
}

function fact(name, value) {
  return h("div", null, h("dt", null, name), h("dd", null, value));
}

function compareWith(id) {
  const input = h("input", { name: "other", placeholder: "another trace id", "aria-label": "trace to compare with", spellcheck: "false" });
  return h("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    const other = input.value.trim().toLowerCase();
    if (other) location.hash = `#/compare/${id}/${other}`;
  } }, input, h("button", { type: "submit" }, "Compare"));
}

/** What the trace waited on: the spans on the critical path, longest stretch first. */
function criticalSummary(data, model, select) {
  const top = data.onPath.slice(0, 6);
  return h("section", { class: "critical", id: "critical-path", "aria-label": "critical path" },
    h("h2", null, "Critical path ", h("small", null, "what the end of the trace waited on, longest first")),
    h("ol", null, top.map(([i, t]) => {
      const s = data.spans[i];
      const service = data.services[s.service];
      return h("li", { dataset: { spanId: s.id, service }, onclick: () => select(i), title: "show in the timeline" },
        h("i", { class: "swatch", style: { background: serviceColor(service) } }),
        h("span", { class: "svc" }, service), " ",
        h("span", { class: "name" }, s.name), " ",
        h("span", { class: "what" }, describe(s, parentOf(data, model, i))),
        h("span", { class: "cp-time" }, fmtDuration(t), h("small", null, ` ${fmtPercent(t / (data.duration || 1), 0)}`)),
        h("i", { class: "cp-bar", style: { width: `${Math.max(1, (100 * t) / (data.duration || 1))}%` } }));
    })));
}

// ---------------------------------------------------------------- the timeline

function showTimeline(body, data, model) {
  const spans = data.spans;
  const total = data.duration || 1;
  const pct = (us) => `${(100 * us) / total}%`;
  let visible = [];
  const computeVisible = () => {
    visible = [];
    const hiddenBelow = [];
    for (const i of model.order) {
      const d = model.depth[i];
      while (hiddenBelow.length && hiddenBelow[hiddenBelow.length - 1] >= d) hiddenBelow.pop();
      if (hiddenBelow.length) continue;
      visible.push(i);
      if (model.collapsed.has(i)) hiddenBelow.push(d);
    }
  };
  computeVisible();

  const showPath = h("input", { type: "checkbox", checked: true, id: "show-critical-path",
    onchange: (e) => timeline.classList.toggle("no-path", !e.target.checked) });
  const ruler = h("div", { class: "ruler" }, h("div", { class: "label" }, "Service · operation"),
    h("div", { class: "lane" }, ticks(0, total, 5).map((v) =>
      h("span", { class: "tick", style: { left: pct(v) } }, fmtDuration(v)))));
  const spacer = h("div", { class: "spacer" });
  const rows = h("div", { class: "rows", tabindex: "0" }, spacer);
  const detail = h("section", { class: "span-detail", id: "span-detail", "aria-label": "span detail" },
    h("p", { class: "muted" }, "Select a span to see its attributes, events and links."));
  const timeline = h("div", { class: "timeline", id: "timeline" }, ruler, rows);

  let drawn = [-1, -1];
  const draw = (force) => {
    const first = Math.max(0, Math.floor(rows.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(visible.length, Math.ceil((rows.scrollTop + rows.clientHeight) / ROW) + OVERSCAN);
    if (!force && first === drawn[0] && last === drawn[1]) return;
    drawn = [first, last];
    const frag = document.createDocumentFragment();
    for (let r = first; r < last; r++) frag.append(row(visible[r], r));
    spacer.replaceChildren(frag);
  };
  const row = (i, r) => {
    const s = spans[i];
    const service = data.services[s.service];
    const color = serviceColor(service);
    const kids = model.children[i];
    const onPath = model.path.get(i);
    const cls = ["row"];
    if (onPath) cls.push("on-path");
    if (s.error) cls.push("failed");
    if (model.selected === i) cls.push("selected");
    const toggle = kids
      ? h("button", { type: "button", class: "toggle", "aria-label": model.collapsed.has(i) ? "expand" : "collapse",
        onclick: (e) => {
          e.stopPropagation();
          if (model.collapsed.has(i)) model.collapsed.delete(i); else model.collapsed.add(i);
          computeVisible();
          spacer.style.height = `${visible.length * ROW}px`;
          draw(true);
        } }, model.collapsed.has(i) ? "▸" : "▾")
      : h("span", { class: "toggle leaf" });
    const lane = h("div", { class: "lane" },
      h("div", { class: "bar", style: { left: pct(s.start), width: `max(1px, ${pct(s.duration)})`, background: color } }));
    if (onPath) {
      for (const [a, b] of onPath) lane.append(h("div", { class: "cp", style: { left: pct(a), width: `max(1px, ${pct(b - a)})` } }));
    }
    if (s.events) {
      for (const e of s.events) {
        lane.append(h("i", { class: `ev${e.name.startsWith("seawall.") ? " policy" : ""}`, style: { left: pct(e.time) }, title: e.name }));
      }
    }
    const right = s.start + s.duration > total * 0.8;
    lane.append(h("span", { class: `dur${right ? " inside" : ""}`, style: right ? { right: `${100 - (100 * s.start) / total}%` } : { left: pct(s.start + s.duration) } },
      fmtDuration(s.duration)));
    return h("div", {
      class: cls.join(" "), style: { top: `${r * ROW}px` },
      dataset: { spanId: s.id, index: i, service },
      onclick: () => choose(i),
    },
    h("div", { class: "label", style: { paddingLeft: `${4 + model.depth[i] * 14}px` }, title: `${service}: ${s.name}` },
      toggle, h("i", { class: "swatch", style: { background: color } }),
      h("span", { class: "svc" }, service), " ", h("span", { class: "name" }, s.name),
      h("span", { class: "what" }, describe(s, parentOf(data, model, i)))),
    lane);
  };
  const choose = (i) => {
    model.selected = i;
    // open every collapsed ancestor so the row can be seen
    let p = spans[i].parent ? model.index.get(spans[i].parent) : undefined;
    let opened = false;
    while (p !== undefined) {
      if (model.collapsed.delete(p)) opened = true;
      p = spans[p].parent ? model.index.get(spans[p].parent) : undefined;
    }
    if (opened) { computeVisible(); spacer.style.height = `${visible.length * ROW}px`; }
    const r = visible.indexOf(i);
    if (r >= 0 && (r * ROW < rows.scrollTop || (r + 1) * ROW > rows.scrollTop + rows.clientHeight)) {
      rows.scrollTop = Math.max(0, r * ROW - rows.clientHeight / 3);
    }
    draw(true);
    fill(detail, spanDetail(data, model, i));
  };

  fill(body,
    h("div", { class: "timeline-tools" },
      h("label", null, showPath, " Critical path"),
      h("span", { class: "legend" }, h("i", { class: "cp-legend" }), "on the critical path",
        h("i", { class: "ev-legend" }), "policy event")),
    timeline, detail);
  spacer.style.height = `${visible.length * ROW}px`;
  rows.style.height = `${Math.min(visible.length * ROW + 2, Math.max(220, window.innerHeight * 0.55))}px`;
  rows.addEventListener("scroll", () => requestAnimationFrame(() => draw(false)), { passive: true });
  body.addEventListener("select-span", (e) => choose(e.detail));
  draw(true);
}

function spanDetail(data, model, i) {
  const s = data.spans[i];
  const service = data.services[s.service];
  const resource = data.resources[s.service] || [];
  const onPath = model.onPath.get(i);
  return h("div", { dataset: { spanId: s.id } },
    h("h3", null, serviceChip(service), " ", s.name, " ", h("small", { class: "muted" }, s.kind)),
    h("dl", { class: "facts" },
      fact("Span", h("code", null, s.id)),
      fact("Parent", s.parent ? h("code", null, s.parent) : "—"),
      fact("Start", `+${fmtDuration(s.start)}`),
      fact("Duration", fmtDuration(s.duration)),
      fact("Status", s.error ? h("span", { class: "badge err" }, s.status || "error") : (s.status || "ok")),
      fact("On the critical path", onPath ? `${fmtDuration(onPath)} (${fmtPercent(onPath / (data.duration || 1), 0)})` : "no"),
      s.scope ? fact("Recorded by", s.scope) : null),
    h("h4", null, "Attributes"),
    kvTable(s.attributes),
    h("h4", null, `Events${s.events ? ` (${s.events.length})` : ""}`),
    s.events ? h("ol", { class: "events" }, s.events.map((e) =>
      h("li", { class: e.name.startsWith("seawall.") ? "policy" : "" },
        h("span", { class: "ev-time" }, `+${fmtDuration(e.time - s.start)}`), " ",
        h("strong", null, e.name), e.attributes.length ? kvTable(e.attributes) : null))) : h("p", { class: "muted" }, "none"),
    h("h4", null, "Links"),
    s.links ? h("ul", { class: "links" }, s.links.map((l) =>
      h("li", null, h("a", { href: `#/trace/${l.traceID}` }, h("code", null, `${l.traceID.slice(0, 12)}…/${l.spanID}`)),
        l.attributes.length ? kvTable(l.attributes) : null))) : h("p", { class: "muted" }, "none"),
    h("details", null, h("summary", null, `Resource of ${service}`), kvTable(resource)));
}

function kvTable(pairs) {
  if (!pairs.length) return h("p", { class: "muted" }, "none");
  return h("table", { class: "kv" }, h("tbody", null, pairs.map(([k, v]) =>
    h("tr", null, h("th", null, k), h("td", null, typeof v === "object" ? JSON.stringify(v) : String(v))))));
}

// ---------------------------------------------------------------- statistics

async function showStatistics(body, data, signal) {
  fill(body, h("p", { class: "muted" }, "Computing…"));
  let stats;
  try {
    stats = await api(`seawall/traces/${data.traceID}/stats`, null, signal);
  } catch (err) {
    if (err.name === "AbortError") return;
    fill(body, errorBox(err));
    return;
  }
  fill(body, h("div", { class: "statistics", id: "statistics" },
    h("p", { class: "muted" }, "Self time: a span's duration less the time its children cover (Jaeger's). ",
      "The critical path above is a different question: what the trace's end waited on."),
    statsTable("By service", stats.services, "service"),
    statsTable("By operation", stats.operations, "operation")));
}

function statsTable(title, groups, kind) {
  const ms = (x) => fmtDuration(x * 1000);
  return h("section", null, h("h3", null, title),
    h("table", { class: "grid stats", dataset: { group: kind } },
      h("thead", null, h("tr", null,
        h("th", null, kind === "service" ? "Service" : "Service · operation"),
        ["Count", "Total", "Avg", "Max", "Self total", "Self avg", "Self max", "Self, % of trace"].map((c) => h("th", { class: "num" }, c)))),
      h("tbody", null, groups.map((g) => h("tr", null,
        h("td", null, serviceChip(g.service), g.operation ? h("span", { class: "op" }, ` ${g.operation}`) : ""),
        h("td", { class: "num" }, g.count),
        h("td", { class: "num" }, ms(g.totalMs)),
        h("td", { class: "num" }, ms(g.avgMs)),
        h("td", { class: "num" }, ms(g.maxMs)),
        h("td", { class: "num" }, ms(g.selfTotalMs)),
        h("td", { class: "num" }, ms(g.selfAvgMs)),
        h("td", { class: "num" }, ms(g.selfMaxMs)),
        h("td", { class: "num" }, h("span", { class: "share" },
          h("i", { style: { width: `${0.8 * Math.min(100, g.selfPercent)}px` } }), `${g.selfPercent.toFixed(1)}%`)))))));
}
