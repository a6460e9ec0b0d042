// One metric's curves, drawn as SVG (no chart library): a line per run, its points, the chosen step marked.
const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text = null) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  return e;
}

// About `n` round tick values covering [lo, hi].
export function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

export const fmt = (v) => String(+v.toPrecision(4));
const fmtStep = (v) => (Math.abs(v) >= 10000 ? `${+(v / 1000).toPrecision(3)}k` : String(v));

// spec: {label, higher, step, series: [{run, color, points: [[step, value], ...]}]}
export function drawCurves(box, spec) {
  const W = Math.max(360, box.clientWidth || 800), H = 240, m = { l: 56, r: 16, t: 10, b: 30 };
  const all = spec.series.flatMap((s) => s.points);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, height: H, role: "img", "aria-label": spec.label });
  if (!all.length) {
    svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no metric points yet"));
    return svg;
  }
  const xs = all.map((p) => p[0]).concat(spec.step ?? []), ys = all.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  const pad = (y1 - y0) * 0.08 || Math.abs(y0) * 0.1 || 1;
  [y0, y1] = [y0 - pad, y1 + pad];
  const X = (v) => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (v) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
  const axis = el("g", { class: "axis" });
  for (const t of ticks(y0, y1, 4)) {
    axis.append(el("line", { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t) }));
    axis.append(el("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end" }, fmt(t)));
  }
  for (const t of ticks(x0, x1, 6).filter((t) => Number.isInteger(t))) {
    axis.append(el("text", { x: X(t), y: H - m.b + 16, "text-anchor": "middle" }, fmtStep(t)));
  }
  axis.append(el("text", { x: W - m.r, y: H - 2, "text-anchor": "end" }, "step"));
  svg.append(axis);
  if (spec.step != null) {
    svg.append(el("line", { class: "cursor", x1: X(spec.step), x2: X(spec.step), y1: m.t, y2: H - m.b }));
    const right = X(spec.step) > W - m.r - 70; // near the right edge: the label goes left of the line
    svg.append(el("text", { x: X(spec.step) + (right ? -4 : 4), y: m.t + 10, "text-anchor": right ? "end" : "start" },
      `step ${spec.step}`));
  }
  for (const s of spec.series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
    svg.append(el("path", { d, fill: "none", stroke: s.color, "stroke-width": 1.8, "data-run": s.run }));
    for (const [st, v] of s.points) {
      const c = el("circle", { cx: X(st).toFixed(1), cy: Y(v).toFixed(1), r: 2.6, fill: s.color });
      c.append(el("title", {}, `${s.run}: ${spec.label} ${fmt(v)} @ step ${st}`));
      svg.append(c);
    }
  }
  return svg;
}
