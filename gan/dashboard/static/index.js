// The `gan` tab: chosen runs' grids side by side at one step (each run at its nearest logged step, labelled with
// its primary metric there), their primary-metric curves below with that step marked. Runs are chosen by
// experiment, sweep or name; only chosen runs are read, and they are read again only when they changed (polled).
// The first choice may come from the URL: ?runs=a,b&step=4&tag=images/fake (this page's or TensorBoard's).
import { drawCurves, fmt } from "./chart.js";

const POLL_MS = 10000;
const COLORS = ["#ff7043", "#0077bb", "#009988", "#ee3377", "#33bbee", "#cc3311", "#997700", "#332288", "#117733",
  "#888888"];
const MAX_LISTED = 400; // run rows drawn at once: the filter finds the others
const SAVED = "gan-dashboard"; // the last choice, kept in this browser
const FAKE = "images/fake";

const S = {
  runs: [], byName: new Map(), names: {}, chosen: [], data: new Map(),
  filter: "", exp: "", tag: FAKE, step: null, follow: true, error: "", fromAddress: false,
};
const $ = {};

function h(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...kids.filter((k) => k !== null && k !== undefined));
  return e;
}

// The logged step closest to `step` (`steps` sorted; a tie goes to the earlier): gan/dashboard/view.py's rule.
export function nearest(steps, step) {
  if (!steps.length) return null;
  let lo = 0, hi = steps.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (steps[mid] < step) lo = mid + 1; else hi = mid; }
  if (lo === 0) return steps[0];
  if (lo === steps.length) return steps[steps.length - 1];
  return steps[lo] - step < step - steps[lo - 1] ? steps[lo] : steps[lo - 1];
}

async function getJSON(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

const experimentOf = (r) => r.experiment || (r.run.includes("/") ? r.run.split("/")[0] : r.run);
const colorOf = (run) => COLORS[S.chosen.indexOf(run) % COLORS.length];
const gridName = (tag) => S.names[tag] || tag.replace(/^images\//, "");

function matcher(text) {
  if (!text) return () => true;
  try { const re = new RegExp(text, "i"); return (s) => re.test(s); }
  catch { const t = text.toLowerCase(); return (s) => s.toLowerCase().includes(t); }
}

function save() {
  try {
    localStorage.setItem(SAVED, JSON.stringify({ chosen: S.chosen, tag: S.tag, filter: S.filter, exp: S.exp }));
  } catch { /* storage off: the choice lasts this visit */ }
}

function initialChoice() {
  let q = new URLSearchParams(location.search);
  try { // TensorBoard's own address, when the user put the choice there
    const top = new URLSearchParams(window.parent.location.search);
    if (!q.has("runs") && top.has("runs")) q = top;
    if (window.parent.document.body.classList.contains("dark-mode")) document.body.classList.add("dark");
  } catch { /* not inside TensorBoard's page */ }
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(SAVED) || "{}"); } catch { saved = {}; }
  if (q.has("runs")) {
    S.chosen = q.get("runs").split(",").map((s) => s.trim()).filter(Boolean);
    S.fromAddress = S.chosen.length > 0;
  } else if (Array.isArray(saved.chosen)) S.chosen = saved.chosen;
  if (q.has("step") && q.get("step") !== "" && !Number.isNaN(Number(q.get("step")))) {
    S.step = Number(q.get("step"));
    S.follow = false;
  }
  S.tag = q.get("tag") || saved.tag || FAKE;
  S.filter = q.get("filter") ?? saved.filter ?? "";
  S.exp = q.get("experiment") ?? saved.exp ?? "";
}

// ---- the run list ------------------------------------------------------------------------------------------
function groupBox(names) {
  const on = names.filter((n) => S.chosen.includes(n)).length;
  return h("input", { type: "checkbox", checked: on === names.length && on > 0,
    indeterminate: on > 0 && on < names.length, on: { change: (e) => toggle(names, e.target.checked) } });
}

function renderList() {
  const match = matcher(S.filter);
  const shown = S.runs.filter((r) => (!S.exp || experimentOf(r) === S.exp) && match(r.run));
  const groups = new Map();
  for (const r of shown) {
    const e = experimentOf(r);
    if (!groups.has(e)) groups.set(e, new Map());
    const sweeps = groups.get(e);
    if (!sweeps.has(r.sweep || "")) sweeps.set(r.sweep || "", []);
    sweeps.get(r.sweep || "").push(r);
  }
  const rows = [];
  let drawn = 0;
  for (const [exp, sweeps] of [...groups].sort((a, b) => a[0].localeCompare(b[0]))) {
    const all = [...sweeps.values()].flat().map((r) => r.run);
    rows.push(h("li", { class: "group", "data-experiment": exp },
      h("label", {}, groupBox(all), h("span", { class: "name" }, exp), h("span", { class: "n" }, `${all.length}`))));
    for (const [sweep, runs] of [...sweeps].sort((a, b) => a[0].localeCompare(b[0]))) {
      if (sweep) {
        rows.push(h("li", { class: "group sweep", "data-sweep": sweep }, h("label", {},
          groupBox(runs.map((r) => r.run)), h("span", { class: "name" }, sweep), h("span", { class: "n" }, `${runs.length}`))));
      }
      for (const r of runs) {
        if (drawn++ >= MAX_LISTED) continue;
        const on = S.chosen.includes(r.run);
        rows.push(h("li", { class: on ? "run chosen" : "run", "data-run": r.run, title: r.run }, h("label", {},
          h("input", { type: "checkbox", checked: on, on: { change: (e) => toggle([r.run], e.target.checked) } }),
          h("span", { class: "swatch", style: on ? `background:${colorOf(r.run)}` : "" }),
          h("span", { class: "name" }, r.run.split("/").pop()),
          h("span", { class: `status ${r.status || ""}` }, r.status || ""))));
      }
    }
  }
  if (drawn > MAX_LISTED) rows.push(h("li", { class: "more" }, `${drawn - MAX_LISTED} more: narrow the filter`));
  $.list.replaceChildren(...rows);
  $.count.firstChild.textContent = S.error ||
    `${shown.length} of ${S.runs.length} runs · ${S.chosen.filter((n) => S.byName.has(n)).length} chosen`;
  const exps = [...new Set(S.runs.map(experimentOf))].sort();
  $.exp.replaceChildren(h("option", { value: "" }, "all experiments"),
    ...exps.map((e) => h("option", { value: e, selected: e === S.exp }, e)));
}

function toggle(names, on) {
  for (const n of names) {
    if (on && !S.chosen.includes(n)) S.chosen.push(n);
    if (!on) S.chosen = S.chosen.filter((c) => c !== n);
  }
  save();
  renderList();
  renderMain();
  loadChosen().then(renderMain, fail);
}

// ---- data --------------------------------------------------------------------------------------------------
async function loadChosen() {
  await Promise.all(S.chosen.map(async (run) => {
    const entry = S.byName.get(run), have = S.data.get(run);
    if (!entry || (have && have.updated === entry.updated)) return;
    const d = await getJSON(`run?run=${encodeURIComponent(run)}`);
    for (const seq of Object.values(d.grids)) seq.sort((a, b) => a[0] - b[0]);
    d.metric.points.sort((a, b) => a[0] - b[0]);
    S.data.set(run, { ...d, updated: entry.updated });
  }));
}

let busy = false, first = true;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const d = await getJSON("runs");
    S.runs = d.runs;
    S.names = d.names;
    S.byName = new Map(d.runs.map((r) => [r.run, r]));
    if (first) { // runs named in the address are kept even before TensorBoard has read them; a saved choice not
      const known = S.fromAddress ? S.chosen : S.chosen.filter((n) => S.byName.has(n));
      S.chosen = known.length ? known : [...d.runs].filter((r) => r.grids.includes(FAKE))
        .sort((a, b) => (b.updated || 0) - (a.updated || 0)).slice(0, 4).map((r) => r.run).sort();
      first = false;
    }
    S.error = "";
    renderList();
    await loadChosen();
    renderMain();
  } catch (e) {
    fail(e);
  } finally {
    busy = false;
  }
}

function fail(e) {
  S.error = `cannot read from TensorBoard (${e.message})`;
  $.count.firstChild.textContent = S.error;
}

// ---- grids, slider, curves ---------------------------------------------------------------------------------
function stepsOf(run, tag) {
  return (S.data.get(run)?.grids[tag] || []).map((g) => g[0]);
}

function pointLabel(metric, step) {
  if (!metric || !metric.tag) return "no metric logged";
  const pts = metric.points;
  if (!pts.length) return `${metric.label}: no point yet`;
  const at = nearest(pts.map((p) => p[0]), step);
  return `${metric.label} ${fmt(pts.find((p) => p[0] === at)[1])} @ step ${at}`;
}

function card(run) {
  const d = S.data.get(run), seq = d?.grids[S.tag] || [];
  const fig = h("figure", { class: "card", "data-run": run, style: `--c:${colorOf(run)}` });
  const cap = h("figcaption", {}, h("div", { class: "run" }, run));
  fig.append(cap);
  if (!d) {
    fig.append(h("div", { class: "missing" }, "loading…"));
    return fig;
  }
  const s = nearest(seq.map((g) => g[0]), S.step ?? Infinity);
  if (s === null) {
    const why = S.tag === "images/fake_per_class" ? ": not a conditional run" : " yet";
    fig.append(h("div", { class: "missing" }, `no ${gridName(S.tag)} grid${why}`));
    cap.append(h("div", { class: "metric" }, pointLabel(d.metric, S.step ?? 0)));
    return fig;
  }
  fig.dataset.step = s;
  const off = S.step !== null && s !== S.step ? ` (nearest to ${S.step})` : "";
  cap.append(h("div", { class: "step" }, `step ${s}${off}`), h("div", { class: "metric" }, pointLabel(d.metric, s)));
  const key = seq.find((g) => g[0] === s)[1];
  const img = h("img", { alt: `${gridName(S.tag)} of ${run} at step ${s}`, src: `blob?key=${encodeURIComponent(key)}` });
  img.addEventListener("load", () => { // small images (a 32×32 run's grid is 274 px) drawn at least that wide
    img.style.width = `${Math.max(img.naturalWidth, 274)}px`;
    img.dataset.loaded = `${img.naturalWidth}x${img.naturalHeight}`;
  });
  fig.append(img);
  return fig;
}

function renderMain() {
  const chosen = S.chosen.filter((n) => S.byName.has(n));
  const tags = [...new Set(chosen.flatMap((n) => S.byName.get(n).grids))]
    .filter((t) => !["images/real", "images/real_augmented"].includes(t) || chosen.length === 1);
  const order = (t) => [FAKE, "images/fake_per_class", "images/neighbours"].indexOf(t) >>> 0;
  tags.sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  if (tags.length && !tags.includes(S.tag)) S.tag = tags.includes(FAKE) ? FAKE : tags[0];
  $.tag.replaceChildren(...tags.map((t) => h("option", { value: t, selected: t === S.tag }, gridName(t))));
  $.tag.disabled = tags.length < 2;
  const steps = [...new Set(chosen.flatMap((n) => stepsOf(n, S.tag)))].sort((a, b) => a - b);
  if (steps.length && (S.follow || S.step === null)) S.step = steps[steps.length - 1];
  $.slider.max = Math.max(0, steps.length - 1);
  $.slider.value = steps.length ? steps.indexOf(nearest(steps, S.step)) : 0;
  $.slider.disabled = steps.length < 2;
  $.steps = steps;
  $.stepnum.textContent = steps.length ? `step ${S.step}` : "no grids";
  $.follow.checked = S.follow;
  $.cards.replaceChildren(...(chosen.length ? chosen.map(card)
    : [h("div", { class: "empty" }, S.runs.length ? "Choose runs on the left." : "No run has logged a grid yet.")]));
  const byTag = new Map();
  for (const n of chosen) {
    const m = S.data.get(n)?.metric;
    if (!m || !m.tag) continue;
    if (!byTag.has(m.tag)) byTag.set(m.tag, { label: m.label, higher: m.higher_is_better, series: [] });
    byTag.get(m.tag).series.push({ run: n, color: colorOf(n), points: m.points });
  }
  $.charts.replaceChildren(...[...byTag.values()].map((c) => {
    const box = h("div", { class: "chart" },
      h("h3", {}, `${c.label} (${c.higher ? "higher" : "lower"} is better)`));
    $.charts.append(box); // in the page first, so the chart knows its width
    box.append(drawCurves(box, { ...c, step: S.step }), h("div", { class: "legend" },
      ...c.series.map((s) => h("span", {}, h("i", { class: "swatch", style: `background:${s.color}` }), s.run))));
    return box;
  }));
}

function onSlide() {
  S.step = $.steps[Number($.slider.value)] ?? S.step;
  S.follow = Number($.slider.value) === $.steps.length - 1;
  renderMain();
}

export async function render() {
  document.head.append(h("link", { rel: "stylesheet", href: "style.css" }));
  initialChoice();
  $.filter = h("input", { type: "search", placeholder: "Filter runs (regex)", value: S.filter,
    on: { input: (e) => { S.filter = e.target.value; save(); renderList(); } } });
  $.exp = h("select", { on: { change: (e) => { S.exp = e.target.value; save(); renderList(); } } });
  $.count = h("div", { class: "count" }, document.createTextNode(""),
    h("button", { class: "link", on: { click: () => toggle([...S.chosen], false) } }, "clear"));
  $.list = h("ul", { class: "runs" });
  $.tag = h("select", { on: { change: (e) => { S.tag = e.target.value; save(); renderMain(); } } });
  $.slider = h("input", { type: "range", class: "slider", min: 0, max: 0, step: 1, on: { input: onSlide } });
  $.stepnum = h("span", { class: "stepnum" });
  $.follow = h("input", { type: "checkbox", on: { change: (e) => { S.follow = e.target.checked; renderMain(); } } });
  $.cards = h("div", { class: "cards" });
  $.charts = h("div", { class: "charts" });
  document.body.append(h("div", { class: "app" },
    h("aside", { class: "side" }, h("div", { class: "head" }, $.filter, $.exp, $.count), $.list),
    h("main", {}, h("div", { class: "controls" }, h("label", {}, "grid", $.tag), $.stepnum, $.slider,
      h("label", { title: "move to the newest step as runs log it" }, $.follow, "latest")), $.cards, $.charts)));
  await refresh();
  setInterval(refresh, POLL_MS);
}
