// The SLO page (/ui/slos): every objective the control plane evaluates, with
// its budget over the period, the burn rate of each alert window (long and
// short, against the rate that fires it), the alerts pending or firing, and,
// for the objectives that burn, links to example traces of their bad requests
// (the exemplars the sidecars keep on their 5xx counters and slow buckets).
//
// The collector reads the control plane for it (/api/seawall/slos and
// /api/seawall/slos/<name>/history); the page refreshes every 15 seconds.
// /ui/slos#slo-<name> opens at one objective.
import {
  api, h, fill, fmtTime, fmtAgo, pageState, errorBox, ticks, serviceChip, painted, recordTiming,
} from "./util.js";

const REFRESH_MS = 15000;
const STEPS = [60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400];
const MAX_POINTS = 240;
const GRAPH_W = 640;
const GRAPH_H = 170;
const PAD = { left: 46, right: 12, top: 10, bottom: 24 };
const PARALLEL = 4;
// A history row spans a minute at least: a graph is read again no sooner, and kept on
// screen meanwhile (a refresh redraws the figures, not the graphs).
const HISTORY_MS = 60000;
const drawnGraphs = new Map(); // objective name -> { nodes: the graph's, at: when read }

let view = null;
let shown = null; // the evaluated_at drawn, so an unchanged report is not drawn again
let busy = false; // a refresh is drawing: the next tick waits for the one after

/** The page (app.js calls it on /ui/slos): drawn now, then again every REFRESH_MS. */
export async function render(into, { signal }) {
  view = into;
  const timer = setInterval(() => refresh(false, signal), REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
  await refresh(true, signal);
}

async function refresh(first, signal) {
  if (busy || signal.aborted) return;
  busy = true;
  try {
    await update(first, signal);
  } finally {
    busy = false;
  }
}

/** Read the report; draw it unless it is the one shown; then the budget graphs. */
async function update(first, signal) {
  if (first) pageState("slos", "loading");
  let doc;
  try {
    doc = await api("seawall/slos", null, signal);
  } catch (err) {
    if (err.name === "AbortError") return;
    shown = null;
    fill(view, h("div", { class: "slo-page" }, h("h1", null, "SLOs"), errorBox(err),
      h("p", { class: "muted" }, "The page reads the SLOs from the control plane through this ",
        "collector; it tries again every ", REFRESH_MS / 1000, " seconds.")));
    pageState("slos", "error");
    return;
  }
  if (!first && shown !== null && doc.evaluated_at === shown) return;
  shown = doc.evaluated_at;
  const t0 = performance.now();
  const graphs = draw(doc);
  if (first && location.hash.startsWith("#slo-")) {
    const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (target) target.scrollIntoView();
  }
  await loadGraphs(graphs, doc, signal);
  if (signal.aborted) return;
  await painted();
  recordTiming("slos", { painted: performance.now() - t0, objectives: doc.objectives.length });
  pageState("slos", "ready");
}

// ---------------------------------------------------------------- the page

function draw(doc) {
  const objectives = doc.objectives || [];
  const alerts = doc.alerts || [];
  const byObjective = new Map();
  for (const a of alerts) {
    const key = alertObjective(a.labels || {});
    if (!byObjective.has(key)) byObjective.set(key, []);
    byObjective.get(key).push(a);
  }
  const graphs = [];
  const cards = objectives.map((o) => card(o, byObjective.get(o.name) || [], doc, graphs));
  const head = h("div", { class: "slo-head" },
    h("h1", null, "SLOs ", h("small", null, objectives.length, objectives.length === 1 ? " objective" : " objectives")),
    h("p", { class: "muted", id: "slo-source" },
      "From the control plane at ", h("code", null, doc.control || "?"), ", ",
      doc.evaluated_at ? ["evaluated ", h("time", { title: fmtTime(doc.evaluated_at * 1e6) }, fmtAgo(doc.evaluated_at * 1e6))]
        : "not evaluated yet",
      ` · ${doc.pages ?? 0} pages scraped, ${doc.pages_malformed ?? 0} malformed, ${doc.scrape_failures ?? 0} failed`));
  if (!objectives.length) {
    fill(view, h("div", { class: "slo-page" }, head, h("p", { class: "empty" },
      doc.evaluated_at ? "No SLO: declare some under slos: in mesh.yaml, then seawall apply."
        : "The control plane has not evaluated the SLOs yet (no config applied, or its first pass is to come).")));
    return graphs;
  }
  fill(view, h("div", { class: "slo-page" }, head,
    summary(objectives, byObjective),
    h("h2", null, "Alerts ", h("small", null, alerts.length ? `${alerts.length} pending or firing` : "")),
    alertTable(alerts),
    h("div", { class: "slo-cards" }, cards)));
  return graphs;
}

function summary(objectives, byObjective) {
  return h("table", { class: "grid slo-summary", id: "slo-summary" },
    h("thead", null, h("tr", null,
      h("th", null, "Objective"), h("th", { class: "num" }, "Target"), h("th", { class: "num" }, "SLI"),
      h("th", null, "Budget left"), h("th", { class: "num" }, "Burn now"), h("th", null, "Alerts"),
      h("th", null, "Bad requests"))),
    h("tbody", null, objectives.map((o) => {
      const active = byObjective.get(o.name) || [];
      const now = currentBurn(o);
      const burning = isBurning(o, active);
      return h("tr", { "data-name": o.name, class: burning ? "burning" : null },
        h("td", null, h("a", { href: `#${cardId(o.name)}` }, o.name)),
        h("td", { class: "num" }, `${o.target}%`),
        h("td", { class: "num" }, fmtSli(o.sli)),
        h("td", null, budgetBar(o.budget_remaining)),
        h("td", { class: "num" }, fmtBurn(now)),
        h("td", null, active.length ? active.map(alertBadge) : h("span", { class: "muted" }, "none")),
        h("td", null, burning && (o.exemplars || []).length
          ? h("a", { class: "exemplar", href: traceUrl(o.exemplars[0].trace_id), "data-trace-id": o.exemplars[0].trace_id },
            `newest ${o.exemplars[0].kind === "slow" ? "slow" : "failed"} request`)
          : h("span", { class: "muted" }, "–")));
    })));
}

function alertTable(alerts) {
  if (!alerts.length) return h("p", { class: "empty", id: "slo-alerts" }, "No alert is pending or firing.");
  return h("table", { class: "grid slo-alerts", id: "slo-alerts" },
    h("thead", null, h("tr", null, h("th", null, "State"), h("th", null, "Alert"), h("th", null, "Objective"),
      h("th", null, "Severity"), h("th", null, "Windows"), h("th", null, "Since"), h("th", null, "Summary"))),
    h("tbody", null, alerts.map((a) => {
      const l = a.labels || {};
      const name = alertObjective(l);
      return h("tr", { class: `alert ${a.state}`, "data-state": a.state, "data-objective": name,
        "data-alertname": l.alertname || "", "data-long": l.long || "", "data-short": l.short || "" },
      h("td", null, alertBadge(a)),
      h("td", null, l.alertname || "?"),
      h("td", null, h("a", { href: `#${cardId(name)}` }, name)),
      h("td", null, l.severity || ""),
      h("td", null, l.long ? `${l.long} / ${l.short}` : "–"),
      h("td", null, a.active_since ? h("time", { title: fmtTime(a.active_since * 1e6) }, since(a.active_since)) : "–"),
      h("td", { class: "muted" }, (a.annotations || {}).summary || ""));
    })));
}

function card(o, active, doc, graphs) {
  const burning = isBurning(o, active);
  const journey = !o.name.includes(":");
  const kept = drawnGraphs.get(o.name);
  const graph = h("div", { class: "budget-graph" },
    journey ? h("p", { class: "muted" }, "A journey: the graphs of its objectives show how their budgets were spent.")
      : kept ? kept.nodes : h("p", { class: "muted" }, "Reading the history…"));
  if (!journey) graphs.push({ objective: o, box: graph, burning });
  const events = o.events || { total: 0, bad: 0 };
  return h("section", { class: `slo-card${burning ? " burning" : ""}`, id: cardId(o.name), "data-name": o.name },
    h("div", { class: "slo-card-head" },
      h("h2", null, o.name, " ", burning ? h("span", { class: "badge err" }, "burning") : null),
      o.service ? serviceChip(o.service) : h("span", { class: "badge" }, "journey")),
    h("dl", { class: "facts" },
      fact("target", `${o.target}%`),
      fact("SLI", fmtSli(o.sli)),
      fact("budget left", fmtBudget(o.budget_remaining)),
      fact("exhausted in", o.budget_remaining !== null && o.budget_remaining <= 0 ? "spent" : fmtSeconds(o.exhaustion_s)),
      fact("requests", `${fmtCount(events.total)} (${fmtCount(events.bad)} bad)`),
      fact("data", o.coverage === null || o.coverage === undefined ? "–" : `${Math.round(o.coverage * 100)}%`),
      fact("period", o.period ? `${fmtDate(o.period.start)} → ${fmtDate(o.period.end)}` : "–")),
    h("div", { class: "slo-card-body" },
      h("div", null, h("h4", null, "Budget left over the period"), graph),
      h("div", null, h("h4", null, "Burn rate per alert window"), burnTable(o, active))),
    exemplars(o, burning));
}

function fact(name, value) {
  return h("div", null, h("dt", null, name), h("dd", { "data-fact": name }, value));
}

function burnTable(o, active) {
  const burn = o.burn || [];
  if (!burn.length) return h("p", { class: "muted" }, "No burn-rate alert.");
  return h("table", { class: "grid burn" },
    h("thead", null, h("tr", null, h("th", null, "Severity"), h("th", null, "Windows"),
      h("th", { class: "num" }, "Long burn"), h("th", { class: "num" }, "Short burn"),
      h("th", { class: "num" }, "Fires at"), h("th", { class: "num" }, "Requests (long)"), h("th", null, "Alert"))),
    h("tbody", null, burn.map((b) => {
      const long = span(b.long);
      const short = span(b.short);
      const alert = active.find((a) => a.labels && a.labels.alertname === "SLOBurnRate"
        && a.labels.long === long && a.labels.short === short);
      const over = (x) => x !== null && x !== undefined && x >= b.burn_rate;
      return h("tr", { "data-long": long, "data-short": short, class: alert ? alert.state : null },
        h("td", null, b.severity),
        h("td", null, `${long} / ${short}`),
        h("td", { class: `num${over(b.long_burn) ? " over" : ""}`, "data-burn": "long" }, fmtBurn(b.long_burn)),
        h("td", { class: `num${over(b.short_burn) ? " over" : ""}`, "data-burn": "short" }, fmtBurn(b.short_burn)),
        h("td", { class: "num" }, `${fmtNumber(b.burn_rate)}×`),
        h("td", { class: "num" }, fmtCount(b.long_events)),
        h("td", null, alert ? h("span", { class: `badge alert-${alert.state}` }, alert.state) : h("span", { class: "muted" }, "–")));
    })));
}

function exemplars(o, burning) {
  const found = o.exemplars || [];
  const what = o.name.endsWith(":latency") ? "slow" : o.name.endsWith(":availability") ? "failed" : "bad";
  if (!found.length) {
    return h("div", { class: "exemplars none" }, h("h4", null, "Example traces"),
      h("p", { class: "muted" }, `No ${what} request with a sampled trace seen`,
        burning ? " yet: only requests whose trace was sampled keep one." : "."));
  }
  return h("div", { class: `exemplars${burning ? " burning" : ""}` },
    h("h4", null, `Example traces of ${what} requests`, burning ? " (burning now)" : ""),
    h("ul", null, found.map((e) => h("li", null,
      h("a", { class: "exemplar", href: traceUrl(e.trace_id), "data-trace-id": e.trace_id, "data-kind": e.kind },
        h("code", null, e.trace_id)),
      " ", h("span", { class: `badge${e.kind === "error" ? " err" : ""}` }, e.kind === "slow" ? `slow: ${fmtLatency(e.value)}` : "5xx"),
      " ", h("time", { class: "muted", title: fmtTime(e.at * 1e6) }, since(e.at))))));
}

// ---------------------------------------------------------------- budget over time

async function loadGraphs(graphs, doc, signal) {
  const now = doc.evaluated_at || Date.now() / 1000;
  const queue = [...graphs].sort((a, b) => Number(b.burning) - Number(a.burning));
  const worker = async () => {
    while (queue.length && !signal.aborted) {
      const { objective, box } = queue.shift();
      const kept = drawnGraphs.get(objective.name);
      if (kept && Date.now() - kept.at < HISTORY_MS) continue; // still on screen, still fresh
      const path = `seawall/slos/${encodeURIComponent(objective.name)}/history`;
      const start = objective.period ? objective.period.start : now - 86400;
      let step = pickStep(now - start);
      try {
        // the whole period first; if its data began later (a new objective), again from
        // there with a finer step: a 30-day budget a few hours old is drawn from its first hour
        let history = await api(path, { step: `${step}s` }, signal);
        const first = (history.rows || []).find((r) => r.total > 0);
        let from = start;
        if (first && first.start > start) {
          from = first.start;
          const finer = pickStep(now - from);
          if (finer < step) {
            step = finer;
            history = await api(path, { step: `${step}s`, since: from }, signal);
            const fine = (history.rows || []).find((r) => r.total > 0);
            if (fine) from = Math.max(from, fine.start);
          }
        }
        fill(box, budgetGraph(objective, history, step, from),
          from > start ? h("p", { class: "muted graph-note" }, `Data since ${fmtDate(from)}; the period began ${fmtDate(start)}.`) : null);
        drawnGraphs.set(objective.name, { nodes: [...box.childNodes], at: Date.now() });
      } catch (err) {
        if (err.name === "AbortError") return;
        fill(box, errorBox(err));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker));
}

/** The smallest step that draws the elapsed period in at most MAX_POINTS points. */
function pickStep(elapsed) {
  return STEPS.find((s) => elapsed / s <= MAX_POINTS) || STEPS[STEPS.length - 1];
}

/** The budget left from `start` (when the period began, or its data did: all of it left
 * then) to the period's end, a point at the end of each step. */
function budgetGraph(o, history, step, start) {
  const rows = (history.rows || []).filter((r) => r.end > start);
  const end = Math.max(o.period ? o.period.end : history.now, history.now, start + step);
  const points = [[start, 1]];
  for (const r of rows) if (r.budget_remaining !== null && r.budget_remaining !== undefined) points.push([r.end, r.budget_remaining]);
  const low = Math.min(0, ...points.map((p) => p[1]));
  const w = GRAPH_W - PAD.left - PAD.right;
  const hgt = GRAPH_H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - start) / (end - start)) * w;
  const y = (v) => PAD.top + ((1 - v) / (1 - low)) * hgt;
  const line = points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
  const last = points[points.length - 1];
  const area = `${line}L${x(last[0]).toFixed(1)},${y(low).toFixed(1)}L${x(start).toFixed(1)},${y(low).toFixed(1)}Z`;
  const yTicks = ticks(low, 1, 4).filter((v) => (1 - v) / (1 - low) > 0.08);
  yTicks.push(1);
  const xTicks = timeTicks(start, end, 5);
  const spent = last[1] < 0;
  return h("svg", {
    class: `budget${spent ? " overspent" : ""}`, viewBox: `0 0 ${GRAPH_W} ${GRAPH_H}`, width: GRAPH_W, height: GRAPH_H,
    role: "img", "aria-label": `${o.name}: budget left over the period`, "data-points": points.length,
    "data-last": last[1].toFixed(4),
  },
  h("title", null, `${o.name}: ${fmtBudget(last[1])} of the budget left`),
  yTicks.map((v) => h("g", { class: "tick" },
    h("line", { x1: PAD.left, x2: GRAPH_W - PAD.right, y1: y(v), y2: y(v), class: v === 0 ? "zero" : "grid" }),
    h("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, `${Math.round(v * 100)}%`))),
  xTicks.map((t, i) => h("text", {
    class: "tick", x: x(t), y: GRAPH_H - 6,
    "text-anchor": i === 0 ? "start" : i === xTicks.length - 1 ? "end" : "middle",
  }, fmtDate(t))),
  h("path", { class: "area", d: area }),
  h("path", { class: "line", d: line }),
  rows.filter((r) => r.budget_remaining !== null && r.bad > 0).map((r) => h("circle", {
    class: r.burn !== null && r.burn >= 1 ? "spend hot" : "spend", cx: x(r.end), cy: y(r.budget_remaining), r: 2.5 },
  h("title", null, `${fmtDate(r.start)} → ${fmtDate(r.end)}: ${fmtCount(r.bad)} bad of ${fmtCount(r.total)}, `
    + `burn ${fmtBurn(r.burn)}, ${fmtBudget(r.budget_remaining)} left`))),
  h("line", { class: "now", x1: x(history.now), x2: x(history.now), y1: PAD.top, y2: GRAPH_H - PAD.bottom }));
}

function timeTicks(start, end, count) {
  const out = [];
  for (let i = 0; i <= count; i++) out.push(start + ((end - start) * i) / count);
  return out;
}

// ---------------------------------------------------------------- reading the report

/** The objective an alert is about: "slo:kind", or the journey's name. */
function alertObjective(labels) {
  return labels.objective && labels.objective !== "journey" ? `${labels.slo}:${labels.objective}` : labels.slo || "?";
}

/** The burn of the shortest short window (what is spent now), else null. */
function currentBurn(o) {
  let best = null;
  for (const b of o.burn || []) {
    if (b.short_burn === null || b.short_burn === undefined) continue;
    if (best === null || b.short < best.short) best = b;
  }
  return best ? best.short_burn : null;
}

/** Burning: an alert pending or firing, or the budget spent faster than it lasts now. */
function isBurning(o, active) {
  if (active.some((a) => a.labels && a.labels.alertname === "SLOBurnRate")) return true;
  const now = currentBurn(o);
  return now !== null && now > 1;
}

function alertBadge(a) {
  const l = a.labels || {};
  const what = l.alertname === "SLODataMissing" ? "no data" : `${l.severity || ""} ${l.long || ""}/${l.short || ""}`.trim();
  return h("span", { class: `badge alert-${a.state}`, title: (a.annotations || {}).summary || "" }, `${a.state}: ${what}`);
}

function budgetBar(left) {
  if (left === null || left === undefined) return h("span", { class: "muted" }, "–");
  const share = Math.max(0, Math.min(1, left));
  return h("span", { class: `budget-bar${left < 0 ? " overspent" : left < 0.25 ? " low" : ""}` },
    h("span", { class: "track" }, h("i", { style: { width: `${(share * 100).toFixed(1)}%` } })),
    h("b", null, fmtBudget(left)));
}

// ---------------------------------------------------------------- formatting

function cardId(name) {
  return `slo-${name}`;
}

export function traceUrl(id) {
  return `./#/trace/${id}`;
}

function span(seconds) {
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${Math.round(seconds * 1000)}ms`;
}

function since(unixSeconds) {
  return fmtAgo(unixSeconds * 1e6);
}

function fmtSli(sli) {
  return sli === null || sli === undefined ? "–" : `${sli.toFixed(3)}%`;
}

function fmtBudget(left) {
  return left === null || left === undefined ? "–" : `${(left * 100).toFixed(1)}%`;
}

function fmtBurn(x) {
  return x === null || x === undefined ? "–" : `${x.toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2)}×`;
}

function fmtNumber(x) {
  return String(Number(x.toFixed(2)));
}

function fmtCount(n) {
  if (n === null || n === undefined) return "–";
  return Math.round(n).toLocaleString("en");
}

function fmtLatency(seconds) {
  return seconds >= 1 ? `${Number(seconds.toFixed(2))}s` : `${Number((seconds * 1000).toFixed(1))}ms`;
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s >= 2 * 86400) return `${Math.round(s / 86400)}d`;
  if (s >= 2 * 3600) return `${Math.round(s / 3600)}h`;
  if (s >= 120) return `${Math.round(s / 60)}m`;
  return `${Math.max(0, Math.round(s))}s`;
}

function fmtDate(unixSeconds) {
  const d = new Date(unixSeconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getMonth() + 1}/${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
