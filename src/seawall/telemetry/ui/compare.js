// Two traces side by side: their spans merged by their path of (service,
// operation) from the root, as Jaeger's trace diff merges them; each row says
// whether the second trace added the span, is missing it, or is slower at it.
import { api, h, fill, fmtDuration, fmtTime, serviceChip, serviceColor, pageState, recordTiming, painted } from "./util.js";

export async function render(view, { match, params, signal }) {
  const [a, b] = [match[1], match[2]].map((x) => (x || "").toLowerCase());
  const form = h("form", { class: "toolbar", id: "compare-form", autocomplete: "off", onsubmit: (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    const x = String(data.get("a")).trim().toLowerCase();
    const y = String(data.get("b")).trim().toLowerCase();
    if (x && y) location.hash = `#/compare/${x}/${y}`;
  } },
  h("label", null, "A ", h("input", { name: "a", value: a, placeholder: "trace id", size: 34, spellcheck: "false" })),
  h("label", null, "B ", h("input", { name: "b", value: b, placeholder: "trace id", size: 34, spellcheck: "false" })),
  h("button", { type: "submit" }, "Compare"));
  const out = h("div", { class: "compare-out" });
  fill(view, h("div", { class: "compare-page" }, h("h1", null, "Compare two traces"), form, out));
  if (!a || !b) {
    fill(out, h("p", { class: "muted" }, "Give two trace ids, or tick two traces in a search's results."));
    pageState("compare", "ready");
    return;
  }
  const doc = await api(`seawall/diff/${a}/${b}`, null, signal);
  const t0 = performance.now();
  fill(out, heads(doc), legend(doc.nodes), table(doc));
  const rendered = performance.now();
  await painted();
  recordTiming("compare", { render: rendered - t0, painted: performance.now() - t0, nodes: doc.nodes.length });
  pageState("compare", "ready");
}

function heads(doc) {
  const card = (name, t) => h("a", { class: "trace-card", href: `#/trace/${t.traceID}` },
    h("span", { class: "ab" }, name), serviceChip(t.rootService), " ", h("span", { class: "op" }, t.rootName),
    h("div", { class: "muted" }, h("code", null, t.traceID.slice(0, 16)), ` · ${fmtTime(t.start)}`),
    h("div", null, h("strong", null, fmtDuration(t.duration)), ` · ${t.spans} spans`, t.errors ? ` · ${t.errors} errors` : ""));
  return h("div", { class: "cards" }, card("A", doc.a), card("B", doc.b));
}

function legend(nodes) {
  const n = (f) => nodes.filter(f).length;
  return h("p", { class: "legend" },
    h("span", { class: "lg added" }, `${n((x) => x.status === "added")} added in B`), " · ",
    h("span", { class: "lg missing" }, `${n((x) => x.status === "missing")} missing from B`), " · ",
    h("span", { class: "lg slower" }, `${n((x) => x.slower)} slower in B`),
    " (mean at least ×1.2 and 1 ms more) · counts are spans at that place in the tree");
}

function table(doc) {
  const max = Math.max(1, ...doc.nodes.map((x) => Math.max(x.aMeanMs || 0, x.bMeanMs || 0)));
  const bar = (meanMs, count, cls) => meanMs === null
    ? h("span", { class: "muted" }, "—")
    : h("span", { class: `dbar ${cls}` }, h("i", { style: { width: `${Math.max(1, (100 * meanMs) / max)}%` } }),
      `${count > 1 ? `${count} × ` : ""}${fmtDuration(meanMs * 1000)}`);
  return h("table", { class: "grid diff", id: "diff-table" },
    h("thead", null, h("tr", null, h("th", null, "Span (service · operation)"), h("th", null, "A"), h("th", null, "B"), h("th", null, "B − A"), h("th", null, ""))),
    h("tbody", null, doc.nodes.map((x) => {
      const status = x.slower ? "slower" : x.status === "both" ? "same" : x.status;
      const delta = x.aMeanMs !== null && x.bMeanMs !== null ? x.bMeanMs - x.aMeanMs : null;
      return h("tr", { class: status, dataset: { status, service: x.service, operation: x.operation } },
        h("td", { class: "tree", style: { paddingLeft: `${6 + 16 * x.depth}px` } },
          h("i", { class: "swatch", style: { background: serviceColor(x.service) } }), `${x.service} `, h("span", { class: "op" }, x.operation)),
        h("td", null, bar(x.aMeanMs, x.aCount, "a")),
        h("td", null, bar(x.bMeanMs, x.bCount, "b")),
        h("td", { class: "num" }, delta === null ? "" : `${delta >= 0 ? "+" : "−"}${fmtDuration(Math.abs(delta) * 1000)}`),
        h("td", null, h("span", { class: `badge ${status}` }, { added: "added", missing: "missing", slower: "slower", same: "" }[status])));
    })));
}
