// seawall traces: the hash router. Each page is a module with one
// `render(view, ctx)`; ctx has the route's parts, its query, and an
// AbortSignal that fires when the reader leaves the page.
//
//   #/search?service=&operation=&route=&status=&minDuration=&maxDuration=&attrs=&lookback=&limit=&order=
//   #/trace/<id>                 the waterfall, the critical path, span details, statistics
//   #/graph?lookback=            the service graph: RED per edge, drift, breaker and outlier state
//   #/latency?service=&route=    a route's latency heatmap; select a region to compare it
//   #/compare/<a>/<b>            two traces side by side
//
// and /ui/slos (slos.html, the same header): the SLOs the control plane evaluates.
import { fill, errorBox, pageState } from "./util.js";
import * as search from "./search.js";
import * as trace from "./trace.js";
import * as graph from "./graph.js";
import * as latency from "./latency.js";
import * as compare from "./compare.js";
import * as slos from "./slos.js";

const ROUTES = [
  [/^\/search$/, search, "search"],
  [/^\/trace\/([0-9a-fA-F]{1,32})$/, trace, "trace"],
  [/^\/graph$/, graph, "graph"],
  [/^\/latency$/, latency, "latency"],
  [/^\/compare(?:\/([0-9a-fA-F]{1,32})\/([0-9a-fA-F]{1,32}))?$/, compare, "compare"],
];

let leaving = null;

async function route() {
  const view = document.getElementById("view");
  const hash = location.hash.replace(/^#/, "") || "/search";
  const [path, query = ""] = hash.split("?", 2);
  if (leaving) leaving.abort();
  leaving = new AbortController();
  for (const [pattern, page, name] of ROUTES) {
    const m = pattern.exec(path);
    if (!m) continue;
    for (const a of document.querySelectorAll("nav a")) {
      a.classList.toggle("active", a.dataset.nav === name);
    }
    document.title = `${name} · seawall traces`;
    pageState(name, "loading");
    try {
      await page.render(view, { match: m, params: new URLSearchParams(query), signal: leaving.signal });
    } catch (err) {
      if (err && err.name === "AbortError") return;
      console.error(err);
      fill(view, errorBox(err));
      pageState(name, "error");
    }
    return;
  }
  fill(view, errorBox(new Error(`no page ${path}`)));
  pageState("none", "error");
}

// /ui/slos is a page of its own (slos.html): no hash routing there, its hash is an anchor
const ownPage = document.body.dataset.app;

document.getElementById("jump").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = event.target.elements.trace.value.trim().toLowerCase();
  if (id && ownPage) location.href = slos.traceUrl(id);
  else if (id) location.hash = `#/trace/${id}`;
});

if (ownPage === "slos") {
  slos.render(document.getElementById("view"), { signal: new AbortController().signal });
} else {
  window.addEventListener("hashchange", route);
  route();
}
