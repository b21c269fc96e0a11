// probekit leaderboard page: ranked table, decodability x causal gain scatter, per-layer curves,
// and the superseded (result/1) results apart. Reads the JSON the builder inlines; no network,
// no libraries. State lives in the URL fragment (#task=…&family=…&q=…&sort=…&dir=…&model=…) so
// a view can be shared. Figures are drawn at the size they are shown (one SVG unit = one CSS
// pixel), so text stays legible on a phone; they are redrawn when the window is resized.
"use strict";

const DATA = JSON.parse(document.getElementById("leaderboard-data").textContent);
const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#d9480f", "#e69f00", "#2b8a3e", "#1971c2", "#7048e8", "#c2255c", "#0c8599",
                 "#8c6d31", "#5f6b7a", "#b2182b"];
const SPECTRUM = ["ntp", "multi-token", "future-summary", "next-latent", "jepa"];
const MODELS = new Map(DATA.models.map((m) => [m.key, m]));
const FAMILIES = [...new Set(DATA.models.map((m) => m.family_label))].sort((a, b) => {
  const i = SPECTRUM.indexOf(a), j = SPECTRUM.indexOf(b);
  return (i < 0) - (j < 0) || (i < 0 ? a.localeCompare(b) : i - j);
});
// A family's mark: colour, and shape — circles for the built-in spectrum, diamonds for other
// models (squares after ten other families), so no two families look alike.
const STYLE = new Map();
{
  let other = 0;
  for (const f of FAMILIES) {
    const i = SPECTRUM.indexOf(f);
    STYLE.set(f, i >= 0 ? { color: PALETTE[i], shape: "circle" }
      : { color: PALETTE[other % PALETTE.length], shape: other++ < PALETTE.length ? "diamond" : "square" });
  }
}
const styleOf = (f) => STYLE.get(f) ?? { color: "#5f6b7a", shape: "circle" };
const VERDICTS = {
  "causal": ["causal", "the causal gain's interval lies above 0 and above the random-subspace control"],
  "decodable-not-causal": ["decodable, not causal",
    "the world state is decodable, but swapping it does not change the model's answer beyond the control"],
  "neither": ["neither", "neither decodable above the random-init twin nor causal"],
  "untested": ["untested", "causal probes ran, but no site could reach the answer"],
};

const fmt = (v, digits = 2) => {
  if (v == null) return "—";
  const r = Number(Number(v).toFixed(digits));
  return (r === 0 ? 0 : r).toFixed(digits);  // never "-0.00"
};
const interval = (ci) => (ci ? `[${fmt(ci[0])}, ${fmt(ci[1])}]` : null);
const fmtParams = (n) => (n == null ? "—" : n >= 1e9 ? (n / 1e9).toFixed(1) + "B"
  : n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e3 ? (n / 1e3).toFixed(0) + "k" : String(n));
const shortName = (id) => id.slice(id.lastIndexOf("/") + 1) || id;

// key, header, value getter (model, score), text column?, cell formatter, sub line, group
const GROUPS = { dec: "Decodability", causal: "Causality" };
const COLUMNS = [
  { key: "rank", label: "#", sortable: false, title: "position in the current order" },
  { key: "model", label: "Model", text: true, get: (m) => m.id,
    title: "model id; below it its family and size" },
  { key: "world_model_score", label: "World-model score", wrap: true, get: (m, s) => s?.world_model_score,
    title: "world-model score: √(decodability gain over the random-init twin × causal gain); "
      + "high only when the state is both readable and used" },
  { key: "verdict", label: "Verdict", text: true, get: (m, s) => s?.verdict,
    title: "what the two axes say together" },
  { key: "decodability", label: "late", group: "dec", get: (m, s) => s?.decodability,
    sub: (s) => interval(s?.ci95),
    title: "decodability late in the episode (last quarter of the steps), 95% interval below; "
      + "0 = chance, 1 = perfect" },
  { key: "pooled", label: "pooled", group: "dec", get: (m, s) => s?.pooled,
    title: "decodability pooled over every step" },
  { key: "random_init", label: "rand. init", group: "dec", get: (m, s) => s?.random_init,
    title: "late decodability of the same architecture untrained (the null to beat)" },
  { key: "mdl", label: "MDL", group: "dec", get: (m, s) => s?.mdl?.compression,
    show: (v) => (v == null ? "—" : v.toFixed(1) + "×"),
    sub: (s) => s?.mdl?.random_init_compression != null
      && `twin ${s.mdl.random_init_compression.toFixed(1)}×`,
    title: "description length: how many times the probe compresses the labels (higher = "
      + "more easily decodable); below it the random-init twin's" },
  { key: "layer", label: "layer", text: true, group: "dec", get: (m, s) => s?.layer,
    title: "the layer decodability is read from (chosen on validation)" },
  { key: "gain", label: "gain", group: "causal", get: (m, s) => s?.gain,
    sub: (s) => interval(s?.gain_ci95),
    title: "causal gain: share of swaps after which the model answers as the other episode "
      + "would (0 = no effect, 1 = always), 95% interval below" },
  { key: "random_control", label: "random", group: "causal", get: (m, s) => s?.random_control,
    title: "the same swap in a random subspace of the same size (the control the gain must beat)" },
  { key: "site", label: "site", text: true, group: "causal", get: (m, s) => s?.site?.layer,
    title: "where the causal gain was measured: layer · token positions, and the subspace swapped" },
  { key: "prediction", label: "Prediction", optional: true, get: (m, s) => s?.prediction,
    title: "violation of expectation (prediction axis)" },
];
const SHOWN = COLUMNS.filter((c) => !c.optional || Object.values(DATA.scores)
  .some((t) => Object.values(t).some((s) => c.get(null, s) != null)));
const BY_KEY = new Map(SHOWN.map((c) => [c.key, c]));

const state = readState();
let selected;  // the model whose curves are shown: state.model, else the top visible one

function readState() {
  const p = new URLSearchParams(location.hash.slice(1));
  const task = DATA.tasks.some((t) => t.key === p.get("task")) ? p.get("task") : DATA.tasks[0]?.key;
  const sort = BY_KEY.get(p.get("sort"))?.get ? p.get("sort") : "world_model_score";
  return { task, family: p.get("family") ?? "", q: p.get("q") ?? "", sort,
           dir: p.get("dir") === "asc" ? "asc" : "desc", model: p.get("model") ?? "" };
}

function writeState() {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) if (v) p.set(k, v);
  try { history.replaceState(null, "", "#" + p.toString()); } catch (e) { /* file:// quirks */ }
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

function scoresOf(task) { return DATA.scores[task] ?? {}; }

function matches(id, family) {
  const q = state.q.trim().toLowerCase();
  return (!state.family || family === state.family) && (!q || id.toLowerCase().includes(q));
}

// The rows of the chosen task: a model evaluated on other tasks only is left out (and counted
// under the table), so a store of single-task models does not fill the board with dashes.
function visibleModels() {
  const scores = scoresOf(state.task);
  return DATA.models.filter((m) => matches(m.id, m.family_label)
    && (!DATA.tasks.length || scores[m.key]));
}

function elsewhere() {
  const scores = scoresOf(state.task);
  const n = DATA.models.filter((m) => matches(m.id, m.family_label) && !scores[m.key]).length;
  const note = document.getElementById("elsewhere");
  note.hidden = n === 0 || !DATA.tasks.length;
  note.textContent = `${n} more model${n === 1 ? " has" : "s have"} no result on `
    + `${state.task}; choose another task above to see ${n === 1 ? "it" : "them"}.`;
}

function sorted(models) {
  const col = BY_KEY.get(state.sort);
  const scores = scoresOf(state.task);
  const sign = state.dir === "asc" ? 1 : -1;
  return models.map((m, i) => ({ m, i, v: col.get(m, scores[m.key]) }))
    .sort((a, b) => {
      if (a.v == null || b.v == null) return (a.v == null) - (b.v == null) || a.i - b.i;
      const d = typeof a.v === "string" ? a.v.localeCompare(b.v) : a.v - b.v;
      return sign * d || a.i - b.i;
    })
    .map((x) => x.m);
}

function dot(family) {
  const { color, shape } = styleOf(family);
  return el("span", { class: `dot ${shape}`, style: `background:${color}` });
}

// The id with break opportunities after / - _ . so long names wrap between their parts.
function breakable(id) {
  const span = el("span", { class: "id" });
  for (const part of id.split(/(?<=[/_.-])/)) span.append(part, el("wbr"));
  span.lastChild.remove();
  return span;
}

// SVG path of a family's mark centred on (cx, cy); `r` is the circle's radius.
function markPath(shape, cx, cy, r) {
  if (shape === "diamond") {
    const d = r * 1.3;
    return `M${cx},${cy - d}L${cx + d},${cy}L${cx},${cy + d}L${cx - d},${cy}Z`;
  }
  if (shape === "square") {
    const d = r * 0.9;
    return `M${cx - d},${cy - d}h${2 * d}v${2 * d}h${-2 * d}Z`;
  }
  return `M${cx - r},${cy}a${r},${r} 0 1,0 ${2 * r},0a${r},${r} 0 1,0 ${-2 * r},0Z`;
}

function renderControls() {
  const task = document.getElementById("task");
  task.replaceChildren(...DATA.tasks.map((t) => el("option", { value: t.key },
    `${t.key} (${t.results} result${t.results === 1 ? "" : "s"})`)));
  if (!DATA.tasks.length) task.append(el("option", { value: "" }, "no ranked results"));
  task.value = state.task ?? "";
  const family = document.getElementById("family");
  family.replaceChildren(el("option", { value: "" }, "all families"),
    ...FAMILIES.map((f) => el("option", { value: f }, f)));
  family.value = state.family;
  document.getElementById("search").value = state.q;
  task.addEventListener("change", () => update({ task: task.value }));
  family.addEventListener("change", () => update({ family: family.value }));
  document.getElementById("search").addEventListener("input", (e) => update({ q: e.target.value }));
  document.getElementById("model").addEventListener("change", (e) => update({ model: e.target.value }));
  const groups = document.getElementById("groups");
  const head = document.getElementById("head");
  let last;
  for (const c of SHOWN) {
    if (c.group && c.group === last?.dataset.group) {
      last.colSpan += 1;
    } else {
      last = el("th", { scope: "colgroup", class: c.group ? "group" : "nogroup" },
        c.group ? GROUPS[c.group] : "");
      last.dataset.group = c.group ?? "";
      groups.append(last);
    }
    const th = el("th", { "data-key": c.key, class: (c.text ? "text" : "") + (c.group ? " in-group" : "")
                          + (c.wrap ? " wrap" : ""),
                          scope: "col", title: c.title ?? c.label }, c.label);
    if (c.sortable !== false) {
      th.addEventListener("click", () => update(state.sort === c.key
        ? { dir: state.dir === "asc" ? "desc" : "asc" }
        : { sort: c.key, dir: c.text ? "asc" : "desc" }));
    }
    head.append(th);
  }
  const t = DATA.tasks;
  const old = DATA.superseded.length;
  document.getElementById("meta").textContent = `${DATA.models.length} ranked model`
    + `${DATA.models.length === 1 ? "" : "s"} on ${t.length} task${t.length === 1 ? "" : "s"}`
    + (old ? `, ${old} superseded result${old === 1 ? "" : "s"} listed apart` : "")
    + `; latest result ${DATA.generated ?? "—"}.`;
}

function cell(c, m, s, i) {
  if (c.key === "rank") return el("td", { class: "rank" }, String(i + 1));
  if (c.key === "model") {
    const td = el("td", { class: "text model" });
    td.append(breakable(m.id));
    const sub = el("span", { class: "sub" });
    sub.append(dot(m.family_label), m.family_label,
      el("span", { class: "params" }, (m.width && m.depth ? ` · ${m.width} × ${m.depth}` : "")
        + ` · ${fmtParams(m.n_params)}`));
    td.append(sub);
    td.title = `${m.id}@${m.revision}`;
    return td;
  }
  if (c.key === "verdict") {
    const td = el("td", { class: "text" });
    const v = VERDICTS[s?.verdict];
    if (v) td.append(el("span", { class: `badge ${s.verdict}`, title: v[1] }, v[0]));
    else {
      td.textContent = "—";
      td.classList.add("null");
      td.title = s?.causality_reason ?? "no result on this task";
    }
    return td;
  }
  if (c.key === "site") {
    const site = s?.site;
    if (!site) return el("td", { class: "text null", title: s?.causality_reason ?? "" }, "—");
    const td = el("td", { class: "text" }, `${site.layer} · ${site.positions}`);
    td.append(el("span", { class: "sub" },
      `${site.featurizer} subspace${site.scope === "onward" ? ", onward" : ""}`));
    td.title = `${site.featurizer} subspace swapped at ${site.layer}, positions '${site.positions}'`
      + `${site.scope === "onward" ? " and every later layer" : ""}; readout ${site.readout}, `
      + `${site.pairs} pairs`;
    return td;
  }
  const v = c.get(m, s);
  const td = el("td", { class: (c.text ? "text" : "") + (v == null ? " null" : "") },
    c.show ? c.show(v) : c.text ? (v ?? "—") : fmt(v));
  const sub = c.sub?.(s);
  if (sub) td.append(el("span", { class: "sub" }, sub));
  if (v == null && (c.group === "causal") && s?.causality_reason) td.title = s.causality_reason;
  return td;
}

function renderTable(models) {
  const scores = scoresOf(state.task);
  for (const th of document.querySelectorAll("#head th")) {
    th.setAttribute("aria-sort", th.dataset.key === state.sort
      ? (state.dir === "asc" ? "ascending" : "descending") : "none");
  }
  const rows = models.map((m, i) => {
    const s = scores[m.key];
    const tr = el("tr", { "data-model": m.key, class: m.key === selected ? "selected" : "" });
    for (const c of SHOWN) tr.append(cell(c, m, s, i));
    tr.addEventListener("click", () => update({ model: m.key }));
    return tr;
  });
  document.getElementById("rows").replaceChildren(...rows);
  document.getElementById("empty").hidden = rows.length > 0;
  scrollHint();
  if (!DATA.tasks.length) {
    document.getElementById("empty").textContent = "No probekit.result/2 results yet; the "
      + "superseded results below are not ranked.";
    document.querySelector(".figures").hidden = true;
  }
}

function scrollHint() {
  const box = document.getElementById("board-scroll");
  document.getElementById("scroll-hint").hidden = box.scrollWidth <= box.clientWidth + 1;
}

function renderSuperseded() {
  const box = document.getElementById("superseded");
  const rows = DATA.superseded.filter((r) => matches(r.id, r.family_label));
  box.hidden = DATA.superseded.length === 0;
  if (!DATA.tasks.length) box.open = true;
  document.getElementById("superseded-count").textContent =
    `${rows.length} result${rows.length === 1 ? "" : "s"}`;
  document.getElementById("superseded-rows").replaceChildren(...rows.map((r) => {
    const tr = el("tr", { "data-model": r.key, "data-task": r.task });
    const model = el("td", { class: "text model" });
    model.append(breakable(r.id), el("span", { class: "sub" }, r.revision));
    tr.append(model, el("td", { class: "text" }, r.family_label), el("td", { class: "text" }, r.task),
      el("td", {}, fmt(r.decodability)), el("td", { class: "old" }, fmt(r.iia)),
      el("td", { class: "text old" }, r.verdict ?? "—"), el("td", { class: "text" }, r.date));
    return tr;
  }));
}

// --- figures ------------------------------------------------------------------------------

function frame(svg, aspect, min, max) {
  const w = Math.max(240, Math.floor(svg.parentElement.clientWidth));
  const h = Math.round(Math.max(min, Math.min(max, w * aspect)));
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.replaceChildren();
  return { w, h };
}

function ticks(lo, hi, step = 0.2) {
  const out = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + 1e-9; t += step) {
    out.push(Math.round(t * 10) / 10);
  }
  return out;
}

function yAxis(svg, box, y, yTicks, label) {
  for (const t of yTicks) {
    svg.append(svgEl("line", { class: "grid", x1: box.l, x2: box.r, y1: y(t), y2: y(t) }));
    svg.append(svgEl("text", { class: "tick", x: box.l - 6, y: y(t) + 4, "text-anchor": "end" },
      t.toFixed(1)));
  }
  const mid = (box.t + box.b) / 2;
  svg.append(svgEl("text", { class: "axis-label", x: 13, y: mid, "text-anchor": "middle",
    transform: `rotate(-90 13 ${mid})` }, label));
}

function plotArea(svg, box) {
  svg.append(svgEl("rect", { class: "plot-area", x: box.l, y: box.t, width: box.r - box.l,
                             height: box.b - box.t }));
}

function legendItem(swatch, text, attrs = {}) {
  const li = el("li", attrs);
  li.append(swatch, el("span", {}, text));
  return li;
}

function lineSwatch(series, extra = {}) {
  const s = svgEl("svg", { class: "swatch", width: 26, height: 12, viewBox: "0 0 26 12" });
  if (extra.band) s.append(svgEl("rect", { class: "band", x: 0, y: 1, width: 26, height: 10 }));
  s.append(svgEl("line", { class: "curve", "data-series": series, x1: 1, x2: 25, y1: 6, y2: 6 }));
  if (extra.marker) s.append(svgEl("circle", { class: `marker ${series}`, cx: 13, cy: 6, r: 3 }));
  return s;
}

function pointSwatch(attrs, shape = "circle") {
  const s = svgEl("svg", { class: "swatch", width: 16, height: 16, viewBox: "0 0 16 16" });
  s.append(svgEl("path", { d: markPath(shape, 8, 8, 5), ...attrs }));
  return s;
}

const overlaps = (a, b) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;

// Place one label per point, touching it, where it overlaps no point, no other label and stays
// inside its band of the plot (above the "none" row, or in it); the selected model first (if
// nothing touching fits, a little way off with a leader line), then by world-model score.
// Labels that fit nowhere are left out (the point keeps its tooltip). Returns how many.
function placeLabels(svg, box, split, pts) {
  const pad = 1;
  const obstacles = pts.map((p) => ({ x0: p.cx - p.extent - pad, x1: p.cx + p.extent + pad,
                                      y0: p.cy - p.extent - pad, y1: p.cy + p.extent + pad }));
  const placed = [];
  const order = [...pts].sort((a, b) => (b.m.key === selected) - (a.m.key === selected)
    || (b.s.world_model_score ?? -1) - (a.s.world_model_score ?? -1)
    || b.s.decodability - a.s.decodability);
  let hidden = 0;
  for (const p of order) {
    const text = svgEl("text", { class: "label", "data-model": p.m.key, x: 0, y: 0 },
      shortName(p.m.id));
    const isSel = p.m.key === selected;
    if (isSel) text.classList.add("selected");
    svg.append(text);
    const bb = text.getBBox();
    const w = bb.width, h = bb.height;
    const [top, bottom] = p.s.gain == null ? [split, box.b - 1] : [box.t + 2, split - 1];
    let spot = null, leader = false;
    for (const d of isSel ? [2, 10, 20, 34, 50] : [2]) {
      const g = p.extent + d, k = g * 0.7;
      const candidates = [
        [p.cx + g, p.cy - h / 2], [p.cx - g - w, p.cy - h / 2],        // right, left
        [p.cx + g, p.cy - h + 2], [p.cx + g, p.cy - 2],                // right, raised / lowered
        [p.cx - g - w, p.cy - h + 2], [p.cx - g - w, p.cy - 2],        // left, raised / lowered
        [p.cx - w / 2, p.cy - g - h], [p.cx - w / 2, p.cy + g],        // above, below
        [p.cx + k, p.cy - k - h], [p.cx + k, p.cy + k],                // diagonals
        [p.cx - k - w, p.cy - k - h], [p.cx - k - w, p.cy + k],
      ];
      for (const [x0, y0] of candidates) {
        const rect = { x0, y0, x1: x0 + w, y1: y0 + h };
        if (x0 < box.l + 2 || rect.x1 > box.r - 2 || y0 < top || rect.y1 > bottom) continue;
        if (obstacles.some((o) => overlaps(rect, o)) || placed.some((o) => overlaps(rect, o))) continue;
        spot = rect;
        leader = d > 2;
        break;
      }
      if (spot) break;
    }
    if (!spot) { text.remove(); hidden += 1; continue; }
    placed.push({ x0: spot.x0 - pad, x1: spot.x1 + pad, y0: spot.y0 - pad, y1: spot.y1 + pad });
    text.setAttribute("x", spot.x0 - bb.x);
    text.setAttribute("y", spot.y0 - bb.y);
    if (leader) {
      const tx = Math.max(spot.x0, Math.min(p.cx, spot.x1));
      const ty = Math.max(spot.y0, Math.min(p.cy, spot.y1));
      const len = Math.hypot(tx - p.cx, ty - p.cy);
      svg.insertBefore(svgEl("line", { class: "leader", x1: p.cx + (tx - p.cx) * p.extent / len,
        y1: p.cy + (ty - p.cy) * p.extent / len, x2: tx, y2: ty }), svg.querySelector(".point"));
    }
  }
  return hidden;
}

function renderScatter(models) {
  const svg = document.getElementById("scatter");
  const { w, h } = frame(svg, 0.72, 280, 440);
  const scores = scoresOf(state.task);
  const pts = models.filter((m) => scores[m.key]).map((m) => ({ m, s: scores[m.key] }));
  const box = { l: 50, r: w - 8, t: 8, b: h - 42 };
  const strip = 26;  // below the y axis: models without a causal gain
  const gains = pts.flatMap((p) => [p.s.gain, ...(p.s.gain_ci95 ?? [])]).filter((v) => v != null);
  const ylo = Math.min(0, Math.floor(Math.min(...gains, 0) * 10) / 10);
  const xlo = Math.min(0, Math.floor(Math.min(...pts.map((p) => p.s.decodability), 0) * 10) / 10);
  const x = (v) => box.l + ((v - xlo) / (1 - xlo)) * (box.r - box.l);
  const y = (v) => box.b - strip - ((v - ylo) / (1 - ylo)) * (box.b - strip - box.t - 6);
  const noneY = box.b - strip / 2;
  plotArea(svg, box);
  yAxis(svg, box, y, ticks(ylo, 1), "causal gain (0 = no effect) →");
  svg.append(svgEl("line", { class: "strip", x1: box.l, x2: box.r, y1: box.b - strip + 2,
                             y2: box.b - strip + 2 }));
  svg.append(svgEl("text", { class: "tick", x: box.l - 6, y: noneY + 4, "text-anchor": "end" }, "none"));
  const xTicks = ticks(xlo, 1, w < 420 ? 0.4 : 0.2);
  for (const t of xTicks) {
    svg.append(svgEl("line", { class: "grid", x1: x(t), x2: x(t), y1: box.t, y2: box.b }));
    svg.append(svgEl("text", { class: "tick", x: x(t), y: box.b + 15, "text-anchor": "middle" },
      t.toFixed(1)));
  }
  svg.append(svgEl("text", { class: "axis-label", x: (box.l + box.r) / 2, y: box.b + 34,
    "text-anchor": "middle" }, w < 480 ? "decodability, late (0 = chance) →"
    : "decodability, late steps (0 = chance, 1 = perfect) →"));
  const r = w < 420 ? 4.5 : 5.5;
  for (const p of pts) {
    p.cx = x(p.s.decodability);
    p.cy = p.s.gain == null ? noneY : y(p.s.gain);
    p.shape = styleOf(p.m.family_label).shape;
    p.extent = p.shape === "diamond" ? r * 1.3 : r;
  }
  const drawn = [...pts].sort((a, b) => (a.m.key === selected) - (b.m.key === selected));
  for (const p of drawn) {
    const { m, s } = p;
    const { color } = styleOf(m.family_label);
    const isSel = m.key === selected;
    if (isSel) {
      if (s.ci95) svg.append(svgEl("line", { class: "whisker", x1: x(s.ci95[0]), x2: x(s.ci95[1]),
                                             y1: p.cy, y2: p.cy }));
      if (s.gain_ci95 && s.gain != null) {
        svg.append(svgEl("line", { class: "whisker", x1: p.cx, x2: p.cx, y1: y(s.gain_ci95[0]),
                                   y2: y(s.gain_ci95[1]) }));
      }
    }
    const attrs = { class: `point${s.gain == null ? " no-gain" : ""}${isSel ? " selected" : ""}`,
      "data-model": m.key, "data-x": s.decodability, "data-y": s.gain ?? "",
      d: markPath(p.shape, p.cx, p.cy, r), fill: color };
    if (s.gain == null) attrs.style = `stroke: ${color}`;
    const c = svgEl("path", attrs);
    c.append(svgEl("title", {}, `${m.id}@${m.revision} (${m.family_label})`
      + `\ndecodability (late) ${fmt(s.decodability)} ${interval(s.ci95) ?? ""}`
      + `\ncausal gain ${fmt(s.gain)} ${interval(s.gain_ci95) ?? ""}`
      + (s.gain == null ? ` (${s.causality_reason ?? "not measured"})` : "")
      + `\nworld-model score ${fmt(s.world_model_score)}`));
    c.addEventListener("click", () => update({ model: m.key }));
    svg.append(c);
  }
  const hidden = placeLabels(svg, box, box.b - strip + 2, pts);
  const legend = document.getElementById("scatter-legend");
  const families = FAMILIES.filter((f) => pts.some((p) => p.m.family_label === f));
  legend.replaceChildren(...families.map((f) => legendItem(
    pointSwatch({ fill: styleOf(f).color }, styleOf(f).shape), f, { "data-family": f })));
  if (pts.some((p) => p.s.gain == null)) {
    legend.append(legendItem(pointSwatch({ fill: "none", class: "hollow" }),
      "hollow, in the “none” row: no causal gain (not run, or untested)"));
  }
  if (selected && pts.some((p) => p.m.key === selected)) {
    legend.append(legendItem(pointSwatch({ fill: "none", class: "ring" }),
      `ringed, with 95% intervals: ${shortName(MODELS.get(selected).id)} (click a point to choose)`));
  }
  if (hidden) {
    legend.append(el("li", { class: "note" },
      `${hidden} label${hidden === 1 ? "" : "s"} left out where they would overlap; hover a point`));
  }
  document.querySelectorAll(".task-name").forEach((n) => { n.textContent = state.task ?? "—"; });
}

function segments(xs, ys) {
  // SVG path through consecutive non-null values; a null breaks the line.
  let d = "", pen = false;
  ys.forEach((v, i) => {
    if (v == null) { pen = false; return; }
    d += `${pen ? "L" : "M"}${xs[i].toFixed(1)},${v.toFixed(1)} `;
    pen = true;
  });
  return d.trim();
}

function renderCurves(models) {
  const scores = scoresOf(state.task);
  const withScore = models.filter((m) => scores[m.key]);
  const select = document.getElementById("model");
  select.replaceChildren(...withScore.map((m) => el("option", { value: m.key }, m.id)));
  const svg = document.getElementById("curves");
  const { w, h } = frame(svg, 0.72, 280, 440);
  const legend = document.getElementById("curves-legend");
  legend.replaceChildren();
  if (!selected) return;
  select.value = selected;
  const s = scores[selected];
  const cv = s.curve;
  const n = cv.layers.length;
  const causal = cv.causal;
  const values = [cv.late, cv.random_init, causal?.gain, causal?.lo, causal?.random]
    .flatMap((v) => v ?? []).filter((v) => v != null);
  const ylo = Math.min(0, Math.floor(Math.min(...values, 0) * 5) / 5);
  const box = { l: 50, r: w - 8, t: 8, b: h - 42 };
  const xs = cv.layers.map((_, i) => box.l + ((i + 0.5) / n) * (box.r - box.l));
  const y = (v) => box.b - ((v - ylo) / (1 - ylo)) * (box.b - box.t - 6);
  const Y = (vs) => (vs ?? []).map((v) => (v == null ? null : y(v)));
  plotArea(svg, box);
  yAxis(svg, box, y, ticks(ylo, 1), "score (0 = chance / no effect) →");
  const longest = Math.max(...cv.layers.map((l) => l.length));
  const every = Math.max(1, Math.ceil((n * (longest * 6.5 + 8)) / (box.r - box.l)));
  cv.layers.forEach((l, i) => {
    if (i % every === 0) {
      svg.append(svgEl("text", { class: "tick", x: xs[i], y: box.b + 15, "text-anchor": "middle" }, l));
    }
  });
  svg.append(svgEl("text", { class: "axis-label", x: (box.l + box.r) / 2, y: box.b + 34,
    "text-anchor": "middle" }, "layer (input → output)"));
  const chosen = cv.layers.indexOf(s.layer);
  if (chosen >= 0) {
    svg.append(svgEl("line", { class: "chosen", x1: xs[chosen], x2: xs[chosen], y1: box.t, y2: box.b }));
  }
  if (causal) {
    // the interval as a band under the gain, one polygon per run of reachable layers
    let run = [];
    const flush = () => {
      if (run.length) {
        const top = run.map((i) => `${xs[i].toFixed(1)},${y(causal.hi[i]).toFixed(1)}`);
        const bottom = run.slice().reverse().map((i) => `${xs[i].toFixed(1)},${y(causal.lo[i]).toFixed(1)}`);
        const pts = run.length === 1
          ? [`${xs[run[0]] - 4},${y(causal.hi[run[0]])}`, `${xs[run[0]] + 4},${y(causal.hi[run[0]])}`,
             `${xs[run[0]] + 4},${y(causal.lo[run[0]])}`, `${xs[run[0]] - 4},${y(causal.lo[run[0]])}`]
          : [...top, ...bottom];
        svg.append(svgEl("polygon", { class: "band", points: pts.join(" ") }));
      }
      run = [];
    };
    causal.gain.forEach((g, i) => {
      if (g != null && causal.lo[i] != null && causal.hi[i] != null) run.push(i); else flush();
    });
    flush();
    svg.append(svgEl("path", { class: "curve", "data-series": "random", d: segments(xs, Y(causal.random)) }));
  }
  const lines = [["random_init", cv.random_init], ["late", cv.late]];
  for (const [series, vs] of lines) {
    if (vs) svg.append(svgEl("path", { class: "curve", "data-series": series, d: segments(xs, Y(vs)) }));
  }
  if (chosen >= 0 && s.ci95) {
    svg.append(svgEl("line", { class: "whisker late", x1: xs[chosen], x2: xs[chosen],
                               y1: y(s.ci95[0]), y2: y(s.ci95[1]) }));
  }
  (cv.late ?? []).forEach((v, i) => {
    if (v != null) svg.append(svgEl("circle", { class: "marker late", cx: xs[i], cy: y(v), r: 3 }));
  });
  if (causal) {
    svg.append(svgEl("path", { class: "curve", "data-series": "gain", d: segments(xs, Y(causal.gain)) }));
    causal.gain.forEach((g, i) => {
      if (g != null) {
        svg.append(svgEl("circle", { class: "marker gain", cx: xs[i], cy: y(g), r: 3.5 }));
      } else {
        svg.append(svgEl("text", { class: "unreachable", x: xs[i], y: y(0) + 4,
                                   "text-anchor": "middle" }, "×"));
      }
    });
  }
  legend.append(legendItem(lineSwatch("late", { marker: true }), "decodability, late (trained)"));
  if (cv.random_init) legend.append(legendItem(lineSwatch("random_init"), "same, random-init twin"));
  if (chosen >= 0) {
    legend.append(legendItem(lineSwatch("chosen"),
      `${s.layer}: the layer decodability is read from (bar: its 95% interval)`));
  }
  if (causal) {
    legend.append(legendItem(lineSwatch("gain", { marker: true, band: true }),
      `causal gain, ${causal.featurizer} subspace at '${causal.positions}' positions (band: 95% interval)`));
    legend.append(legendItem(lineSwatch("random"), "same swap, random subspace (control)"));
    if (causal.reachable.some((ok) => !ok)) {
      legend.append(legendItem(el("span", { class: "swatch x" }, "×"),
        "no site there can reach the answer (not scored)"));
    }
  } else {
    legend.append(el("li", { class: "note" }, `no causal curve: ${s.causality_reason ?? "causal probes not run"}`));
  }
}

function render() {
  const models = sorted(visibleModels());
  const scores = scoresOf(state.task);
  const scored = models.filter((m) => scores[m.key]);
  selected = scored.some((m) => m.key === state.model) ? state.model : scored[0]?.key;
  renderTable(models);
  elsewhere();
  renderScatter(models);
  renderCurves(models);
  renderSuperseded();
}

function update(change) {
  Object.assign(state, change);
  writeState();
  render();
}

let resizing;
addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => {
    const models = sorted(visibleModels());
    scrollHint();
    renderScatter(models);
    renderCurves(models);
  }, 100);
});

renderControls();
render();
