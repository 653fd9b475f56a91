// Shared by every page: the API, DOM building, formatting, service colours.
// No framework and nothing from outside this folder (the server's CSP says so).

/** The API's base, relative to this page (/ui/ -> /api/): works behind a path prefix. */
export const API = new URL("../api/", document.baseURI);

/** An error the API answered: its status and message (the parameter it names, if any). */
export class ApiError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

/** GET `path` (relative to /api/) with `params` (an object or URLSearchParams); JSON back. */
export async function api(path, params, signal) {
  const url = new URL(path, API);
  if (params) {
    const entries = params instanceof URLSearchParams ? params : Object.entries(params);
    for (const [k, v] of entries) {
      if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
      else if (v !== undefined && v !== null && v !== "") url.searchParams.append(k, v);
    }
  }
  const answer = await fetch(url, { signal, headers: { Accept: "application/json" } });
  const text = await answer.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError(answer.status, `not JSON: ${text.slice(0, 200)}`);
  }
  if (!answer.ok) {
    const err = (body && body.error) || (body && body.errors && body.errors[0]) || {};
    throw new ApiError(answer.status, err.message || err.msg || answer.statusText, err.param);
  }
  return body;
}

/**
 * h("div", {class: "x", onclick: f, dataset: {id: 1}}, "text", child, [more]) -> an element.
 * Attributes whose value is null, undefined or false are left out.
 */
export function h(tag, attrs, ...children) {
  const svg = SVG_TAGS.has(tag);
  const el = svg ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
      else if (k === "class" && !svg) el.className = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_TAGS = new Set(["svg", "g", "path", "line", "circle", "rect", "text", "title", "polyline", "defs", "marker"]);

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---------------------------------------------------------------- formatting

/** Microseconds as a short duration: 850µs, 12.3ms, 1.24s, 2m05s. */
export function fmtDuration(us) {
  if (us === null || us === undefined || Number.isNaN(us)) return "–";
  const a = Math.abs(us);
  if (a === 0) return "0";
  if (a < 1) return `${(us * 1000).toFixed(0)}ns`;
  if (a < 1000) return `${trim(us, a < 10 ? 2 : a < 100 ? 1 : 0)}µs`;
  if (a < 1e6) return `${trim(us / 1e3, a < 1e4 ? 2 : a < 1e5 ? 1 : 0)}ms`;
  if (a < 60e6) return `${trim(us / 1e6, 2)}s`;
  const s = Math.round(us / 1e6);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

function trim(x, digits) {
  return String(Number(x.toFixed(digits)));
}

/** Unix microseconds as a local date and time. */
export function fmtTime(us) {
  const d = new Date(us / 1000);
  return d.toLocaleString(undefined, { hour12: false });
}

/** Unix microseconds as a local time of day, with milliseconds. */
export function fmtClock(us) {
  const d = new Date(us / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** "3m ago", from Unix microseconds. */
export function fmtAgo(us) {
  const s = Math.round((Date.now() * 1000 - us) / 1e6);
  if (s < 5) return "just now";
  if (s < 90) return `${s}s ago`;
  if (s < 5400) return `${Math.round(s / 60)}m ago`;
  if (s < 129600) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

export function fmtPercent(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return `${(x * 100).toFixed(digits)}%`;
}

export function fmtRate(perSecond) {
  if (perSecond === null || perSecond === undefined) return "–";
  if (perSecond >= 100) return `${perSecond.toFixed(0)}/s`;
  if (perSecond >= 1) return `${perSecond.toFixed(1)}/s`;
  return `${(perSecond * 60).toFixed(1)}/min`;
}

// ---------------------------------------------------------------- colours

// Ten colours that stay apart for the common kinds of colour blindness
// (Paul Tol's "muted" and "bright" sets), then hue steps.
const PALETTE = [
  "#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee",
  "#aa3377", "#332288", "#117733", "#999933", "#cc6677",
  "#88ccee", "#44aa99",
];

/** A service's colour: the same name gets the same colour on every page and every trace. */
export function serviceColor(name) {
  let hash = 0x811c9dc5; // FNV-1a, 32 bits
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return PALETTE[hash % PALETTE.length];
}

export function serviceChip(name) {
  return h("span", { class: "chip", title: name },
    h("i", { class: "swatch", style: { background: serviceColor(name) } }), name);
}

// ---------------------------------------------------------------- page state, for people and tests

/** The page says what it is doing on <html data-page=... data-state=loading|ready|error>. */
export function pageState(page, state) {
  document.documentElement.dataset.page = page;
  document.documentElement.dataset.state = state;
}

/** Timings of the last renders (ms), read by the browser tests: window.seawall.timings. */
export function recordTiming(name, values) {
  window.seawall = window.seawall || {};
  window.seawall.timings = window.seawall.timings || {};
  window.seawall.timings[name] = values;
}

/** Resolves after the next frame is painted (a frame, then a task after it). */
export function painted() {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

export function errorBox(err) {
  const param = err && err.param ? h("code", null, err.param) : null;
  return h("div", { class: "error", role: "alert" },
    h("strong", null, err && err.status ? `Error ${err.status}` : "Error"), " ",
    param, param ? ": " : "", String((err && err.message) || err));
}

/** A hash URL: "#/search" + "?k=v..." without empty values. */
export function hashUrl(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (Array.isArray(v)) v.forEach((x) => x !== "" && q.append(k, x));
    else if (v !== undefined && v !== null && v !== "") q.append(k, v);
  }
  const s = q.toString();
  return `#${path}${s ? "?" + s : ""}`;
}

/** Parse `k=v k2="a b"` (logfmt, as Jaeger's search form) into [[k, v], ...]. */
export function parseLogfmt(text) {
  const out = [];
  const re = /\s*([^\s=]+)=("((?:[^"\\]|\\.)*)"|(\S*))/gy;
  let m;
  let last = 0;
  while ((m = re.exec(text)) !== null) {
    out.push([m[1], m[3] !== undefined ? m[3].replace(/\\(.)/g, "$1") : m[4]]);
    last = re.lastIndex;
  }
  if (text.slice(last).trim()) throw new Error(`cannot read "${text.slice(last).trim()}": write key=value`);
  return out;
}

/** "12.3ms"-style text to microseconds (Go's duration units); null when empty. */
export function parseDuration(text) {
  text = (text || "").trim();
  if (!text) return null;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  const unit = { ns: 1e-3, us: 1, "µs": 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 };
  let total = 0;
  let m;
  let last = 0;
  while ((m = re.exec(text)) !== null) {
    total += parseFloat(m[1]) * unit[m[2]];
    last = re.lastIndex;
  }
  if (last !== text.length || last === 0) throw new Error(`"${text}" is not a duration (300ms, 1.5s)`);
  return total;
}

/** Nice tick values covering [lo, hi], about `count` of them. */
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return out;
}

/** A canvas sized to its box, drawn at the device's pixel ratio; returns [ctx, width, height]. */
export function sizeCanvas(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return [ctx, width, height];
}
