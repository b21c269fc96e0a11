// probekit leaderboard page: table, decodability x causality scatter, per-layer curves.
// Reads the JSON the builder inlines; no network, no libraries. State lives in the URL
// fragment (#task=…&family=…&q=…&sort=…&dir=…&model=…) so a view can be shared.
"use strict";

const DATA = JSON.parse(document.getElementById("leaderboard-data").textContent);
const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#d9480f", "#1971c2", "#2b8a3e", "#7048e8", "#e8a00c", "#c2255c", "#0c8599",
                 "#5f6b7a"];
const UNKNOWN = "(unknown)";
const MODELS = new Map(DATA.models.map((m) => [m.key, m]));
const FAMILIES = [...new Set(DATA.models.map((m) => m.family ?? UNKNOWN))].sort();
const COLOR = new Map(FAMILIES.map((f, i) => [f, PALETTE[i % PALETTE.length]]));

const fmt = (v, digits = 3) => (v == null ? "—" : Number(v).toFixed(digits));
const fmtParams = (n) => (n == null ? "—" : n >= 1e9 ? (n / 1e9).toFixed(1) + "B"
  : n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e3 ? (n / 1e3).toFixed(1) + "k" : String(n));

// key, header, value getter (model, score), text column?, cell formatter
const COLUMNS = [
  { key: "rank", label: "#", sortable: false },
  { key: "model", label: "Model", text: true, get: (m) => m.id },
  { key: "family", label: "Family", text: true, get: (m) => m.family },
  { key: "alpha", label: "α", get: (m) => m.alpha, show: (v) => fmt(v, 2) },
  { key: "n_params", label: "Params", get: (m) => m.n_params, show: fmtParams },
  { key: "decodability", label: "Decodability", get: (m, s) => s?.decodability,
    sub: (s) => s && `[${fmt(s.ci95[0])}, ${fmt(s.ci95[1])}]` },
  { key: "control", label: "Control", get: (m, s) => s?.control },
  { key: "selectivity", label: "Selectivity", get: (m, s) => s?.selectivity },
  { key: "random_init", label: "Random init", get: (m, s) => s?.random_init },
  { key: "iia", label: "IIA", get: (m, s) => s?.iia,
    sub: (s) => s?.iia_ci95 && `[${fmt(s.iia_ci95[0])}, ${fmt(s.iia_ci95[1])}]` },
  { key: "world_model_score", label: "WM score", title: "world-model score",
    get: (m, s) => s?.world_model_score },
  { key: "verdict", label: "Verdict", text: true, get: (m, s) => s?.verdict },
  { key: "layer", label: "Layer", text: true, get: (m, s) => s?.layer },
  { key: "date", label: "Date", text: true, get: (m, s) => s?.date ?? m.date },
];
const BY_KEY = new Map(COLUMNS.map((c) => [c.key, c]));

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

function visibleModels() {
  const q = state.q.trim().toLowerCase();
  return DATA.models.filter((m) => (!state.family || (m.family ?? UNKNOWN) === state.family)
    && (!q || m.id.toLowerCase().includes(q)));
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

function renderControls() {
  const task = document.getElementById("task");
  task.replaceChildren(...DATA.tasks.map((t) => el("option", { value: t.key },
    `${t.key} (${t.results} result${t.results === 1 ? "" : "s"})`)));
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
  const head = document.getElementById("head");
  for (const c of COLUMNS) {
    const th = el("th", { "data-key": c.key, class: c.text ? "text" : "", scope: "col",
                          title: c.title ?? c.label }, c.label);
    if (c.sortable !== false) {
      th.addEventListener("click", () => update(state.sort === c.key
        ? { dir: state.dir === "asc" ? "desc" : "asc" }
        : { sort: c.key, dir: c.text ? "asc" : "desc" }));
    }
    head.append(th);
  }
  const t = DATA.tasks;
  document.getElementById("meta").textContent = `${DATA.models.length} model${DATA.models.length === 1 ? "" : "s"}, `
    + `${t.length} task${t.length === 1 ? "" : "s"}; latest result ${DATA.generated ?? "—"}.`;
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
    for (const c of COLUMNS) {
      let td;
      if (c.key === "rank") td = el("td", {}, String(i + 1));
      else if (c.key === "model") {
        td = el("td", { class: "text" }, m.id);
        td.append(el("span", { class: "sub" }, m.revision));
      } else if (c.key === "verdict") {
        td = el("td", { class: "text" });
        if (s?.verdict) td.append(el("span", { class: `badge ${s.verdict}` }, s.verdict));
        else td.textContent = "—";
      } else {
        const v = c.get(m, s);
        td = el("td", { class: (c.text ? "text" : "") + (v == null ? " null" : "") },
          c.show ? c.show(v) : c.text ? (v ?? "—") : fmt(v));
        const sub = c.sub?.(s);
        if (sub) td.append(el("span", { class: "sub" }, sub));
      }
      tr.append(td);
    }
    tr.addEventListener("click", () => update({ model: m.key }));
    return tr;
  });
  document.getElementById("rows").replaceChildren(...rows);
  document.getElementById("empty").hidden = rows.length > 0;
}

function axes(svg, box, x, y, xLabel, yLabel, xTicks, yTicks) {
  for (const t of yTicks) {
    svg.append(svgEl("line", { class: "grid", x1: box.l, x2: box.r, y1: y(t), y2: y(t) }));
    svg.append(svgEl("text", { x: box.l - 6, y: y(t) + 4, "text-anchor": "end" }, t.toFixed(1)));
  }
  for (const [t, label] of xTicks) {
    svg.append(svgEl("text", { x: x(t), y: box.b + 16, "text-anchor": "middle" }, label));
  }
  svg.append(svgEl("line", { class: "axis", x1: box.l, x2: box.r, y1: box.b, y2: box.b }));
  svg.append(svgEl("line", { class: "axis", x1: box.l, x2: box.l, y1: box.t, y2: box.b }));
  svg.append(svgEl("text", { x: (box.l + box.r) / 2, y: box.b + 34, "text-anchor": "middle" }, xLabel));
  svg.append(svgEl("text", { x: 14, y: (box.t + box.b) / 2, "text-anchor": "middle",
    transform: `rotate(-90 14 ${(box.t + box.b) / 2})` }, yLabel));
}

function ticks(lo, hi) {
  const out = [];
  for (let t = Math.ceil(lo * 5) / 5; t <= hi + 1e-9; t += 0.2) out.push(Math.round(t * 10) / 10);
  return out;
}

function renderScatter(models) {
  const svg = document.getElementById("scatter");
  svg.replaceChildren();
  const scores = scoresOf(state.task);
  const pts = models.filter((m) => scores[m.key]).map((m) => ({ m, s: scores[m.key] }));
  const box = { l: 48, r: 505, t: 12, b: 330 };
  const xlo = Math.min(0, ...pts.map((p) => p.s.decodability));
  const x = (v) => box.l + ((v - xlo) / (1 - xlo)) * (box.r - box.l);
  const y = (v) => box.b - 24 - v * (box.b - 24 - box.t);  // 24 px strip for "no IIA" below 0
  axes(svg, box, x, y, "decodability (0 = chance)", "IIA", ticks(xlo, 1).map((t) => [t, t.toFixed(1)]),
    ticks(0, 1));
  svg.append(svgEl("line", { class: "diag", x1: x(Math.max(0, xlo)), y1: y(Math.max(0, xlo)), x2: x(1), y2: y(1) }));
  svg.append(svgEl("text", { x: box.r, y: box.b - 6, "text-anchor": "end" }, "○ no causal run"));
  for (const { m, s } of pts) {
    const noIia = s.iia == null;
    const color = COLOR.get(m.family ?? UNKNOWN);
    const attrs = { class: `point${noIia ? " no-iia" : ""}${m.key === selected ? " selected" : ""}`,
      "data-model": m.key, cx: x(s.decodability), cy: noIia ? box.b - 10 : y(s.iia), r: 6, fill: color };
    if (noIia) attrs.style = `stroke: ${color}`;
    const c = svgEl("circle", attrs);
    c.append(svgEl("title", {}, `${m.id}@${m.revision}\ndecodability ${fmt(s.decodability)}`
      + `\nIIA ${fmt(s.iia)}\nfamily ${m.family ?? UNKNOWN}`));
    c.addEventListener("click", () => update({ model: m.key }));
    svg.append(c);
    if (m.key === selected) {
      svg.append(svgEl("text", { x: x(s.decodability) + 9, y: (noIia ? box.b - 10 : y(s.iia)) - 8 }, m.id));
    }
  }
  FAMILIES.forEach((f, i) => {
    const lx = box.l + i * 110;
    svg.append(svgEl("circle", { cx: lx + 6, cy: 380, r: 5, fill: COLOR.get(f) }));
    svg.append(svgEl("text", { x: lx + 15, y: 384 }, f));
  });
  document.querySelectorAll(".task-name").forEach((n) => { n.textContent = state.task ?? "—"; });
}

function renderCurves(models) {
  const scores = scoresOf(state.task);
  const withScore = models.filter((m) => scores[m.key]);
  const select = document.getElementById("model");
  select.replaceChildren(...withScore.map((m) => el("option", { value: m.key }, `${m.id}@${m.revision}`)));
  const key = selected;
  const svg = document.getElementById("curves");
  svg.replaceChildren();
  if (!key) return;
  select.value = key;
  const s = scores[key];
  const { layers } = s.curve;
  const series = ["test", "control", "random_init"].filter((k) => s.curve[k] != null);
  const values = series.flatMap((k) => s.curve[k]).filter((v) => v != null);
  const ylo = Math.min(0, ...values);
  const box = { l: 48, r: 505, t: 12, b: 330 };
  const x = (i) => box.l + (layers.length > 1 ? i / (layers.length - 1) : 0.5) * (box.r - box.l);
  const y = (v) => box.b - ((v - ylo) / (1 - ylo)) * (box.b - box.t);
  const every = Math.ceil(layers.length / 10);
  axes(svg, box, x, y, "layer", "normalised score (0 = chance)",
    layers.map((l, i) => [i, l]).filter((_, i) => i % every === 0), ticks(ylo, 1));
  const chosen = layers.indexOf(s.layer);
  svg.append(svgEl("line", { class: "chosen", x1: x(chosen), x2: x(chosen), y1: box.t, y2: box.b }));
  const names = { test: "trained (test)", control: "control task", random_init: "random init" };
  series.forEach((k, j) => {
    const d = s.curve[k].map((v, i) => `${i === 0 ? "M" : "L"}${x(i)},${y(v)}`).join(" ");
    svg.append(svgEl("path", { class: "curve", "data-series": k, d }));
    const lx = box.l + j * 150;
    svg.append(svgEl("line", { class: "curve", "data-series": k, x1: lx, x2: lx + 22, y1: 378, y2: 378 }));
    svg.append(svgEl("text", { x: lx + 28, y: 382 }, names[k]));
  });
}

function render() {
  const models = sorted(visibleModels());
  const scores = scoresOf(state.task);
  const scored = models.filter((m) => scores[m.key]);
  selected = scored.some((m) => m.key === state.model) ? state.model : scored[0]?.key;
  renderTable(models);
  renderScatter(models);
  renderCurves(models);
}

function update(change) {
  Object.assign(state, change);
  writeState();
  render();
}

renderControls();
render();
