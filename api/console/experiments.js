// Data-volume experiments in the console: the list, and an experiment's page with the table by
// training-set size, the two figures drawn from its result (test AUROC by size with the 95% CIs and the
// fitted learning curve; epoch seconds by size with the linear fit) and the samples a target AUROC
// needs. Loaded after evaluation.js (ciText) and before console.js, whose helpers (el, svg, api, all,
// render, tableOf, badge, fmt, when, every, flash, KEY) it calls at run time.
"use strict";

const EXPERIMENT_METRICS = ["auroc", "auprc", "sensitivity", "specificity", "f1"];
const experimentPath = (id) => `/v1/fine-tuning/experiments/${encodeURIComponent(id)}`;

async function experimentsPage() {
  const rows = await all("/v1/fine-tuning/experiments", 100);
  render("Data-volume experiments", el("section", { class: "card" },
    el("p", { class: "muted" }, "Each experiment trains one model per training-set size and seed on nested subsets of a split's training part, and tests every size on the same test split. Create one with the SDK (client.experiments.create), the CLI (medtune experiments create) or POST /v1/fine-tuning/experiments."),
    rows.length ? tableOf(["Experiment", "Status", "Base model", "Sizes", "Seeds", "Created"], rows.map((x) => [
      el("a", { href: `#/experiments/${x.id}` }, x.id), badge(x.status), x.base_model, x.sizes.join(", "), x.seeds.join(", "), when(x.created_at)]))
      : el("p", { class: "muted", id: "no-experiments" }, "No experiment yet.")));
}

// A scatter chart with optional error bars and fitted lines, in data coordinates (x on a log scale
// when asked). Each point carries data-size and data-value, each line data-fit, for readers and tests.
function xyChart(id, { label, xLabel, yLabel, logX }, points, lines) {
  const W = 560, H = 260, P = 44;
  const xs = points.map((p) => p.x), ys = points.flatMap((p) => [p.y, ...(p.ci || [])]).concat(lines.flatMap((l) => l.pts.map((q) => q[1])));
  const tx = (x) => (logX ? Math.log10(x) : x);
  const x0 = tx(logX ? Math.min(...xs) / 1.5 : 0), x1 = tx(Math.max(...xs) * (logX ? 1.5 : 1.1));
  const lo = Math.min(...ys), hi = Math.max(...ys), pad = (hi - lo || 1) * 0.1;
  const y0 = logX ? lo - pad : Math.min(0, lo), y1 = hi + pad;
  const X = (x) => P + ((tx(x) - x0) / (x1 - x0 || 1)) * (W - 2 * P);
  const Y = (y) => H - P - ((y - y0) / (y1 - y0 || 1)) * (H - 2 * P);
  const root = svg("svg", { class: "chart", id, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label },
    svg("line", { class: "axis", x1: P, y1: H - P, x2: W - P, y2: H - P }), svg("line", { class: "axis", x1: P, y1: P, x2: P, y2: H - P }),
    svg("text", { x: W / 2 - 60, y: H - 8 }, xLabel), svg("text", { x: 2, y: P - 10 }, yLabel),
    svg("text", { x: 2, y: P + 4 }, fmt(y1, 2)), svg("text", { x: 2, y: H - P }, fmt(y0, 2)));
  for (const x of [...new Set(xs)]) root.append(svg("text", { x: X(x) - 8, y: H - P + 16 }, String(x)));
  for (const l of lines)
    root.append(svg("polyline", { fill: "none", stroke: "#b42318", "stroke-width": 2, "stroke-dasharray": "6 4", "data-fit": l.name,
      points: l.pts.map(([x, y]) => `${X(x)},${Y(y)}`).join(" ") }, svg("title", {}, l.title)));
  for (const p of points) {
    if (p.ci) root.append(svg("line", { class: "ci", stroke: "#0b5cad", "stroke-width": 1.5, "data-size": p.x, x1: X(p.x), x2: X(p.x), y1: Y(p.ci[0]), y2: Y(p.ci[1]) }));
    root.append(svg("circle", { cx: X(p.x), cy: Y(p.y), r: 4, fill: "#0b5cad", "data-size": p.x, "data-value": p.y }, svg("title", {}, p.title)));
  }
  return root;
}

function aurocFigure(result) {
  const rows = result.sizes.filter((s) => s.metrics.auroc.mean !== null);
  if (!rows.length) return el("p", { class: "muted" }, "No run has a test AUROC yet.");
  const points = rows.map((s) => ({ x: s.size, y: s.metrics.auroc.mean, ci: s.metrics.auroc.ci95,
    title: `${s.size} samples: AUROC ${fmt(s.metrics.auroc.mean)} (95% CI ${ciText(s.metrics.auroc.ci95)})` }));
  const c = result.fits.learning_curve, lines = [];
  if (c) {
    const a = Math.min(...points.map((p) => p.x)) / 1.5, b = Math.max(...points.map((p) => p.x)) * 1.5;
    const pts = Array.from({ length: 40 }, (_, i) => a * (b / a) ** (i / 39)).map((n) => [n, c.a - c.b * n ** -c.c]);
    lines.push({ name: "learning_curve", pts, title: `AUROC(n) = ${fmt(c.a)} − ${fmt(c.b)}·n^−${fmt(c.c)}` });
  }
  return el("figure", { id: "auroc-by-size" }, xyChart("auroc-chart", { label: "Test AUROC by training-set size", xLabel: "training samples (log)", yLabel: "test AUROC", logX: true }, points, lines),
    el("figcaption", { class: "muted" }, "Mean over seeds with the mean bootstrap 95% CI; dashed: ",
      c ? `AUROC(n) = ${fmt(c.a)} − ${fmt(c.b)}·n^−${fmt(c.c)} (a 95% CI ${ciText(c.a_ci95)})` : "no learning curve (it needs three sizes that fit)"));
}

function epochFigure(result) {
  const runs = result.runs.filter((r) => r.status === "succeeded" && typeof r.epoch_seconds === "number");
  if (!runs.length) return el("p", { class: "muted" }, "No run has finished yet.");
  const points = runs.map((r) => ({ x: r.size, y: r.epoch_seconds, title: `${r.size} samples, seed ${r.seed}: ${fmt(r.epoch_seconds, 2)} s per epoch` }));
  const f = result.fits.epoch_time, lines = [];
  if (f) {
    const top = Math.max(...points.map((p) => p.x)) * 1.1;
    lines.push({ name: "epoch_time", pts: [[0, f.intercept_s], [top, f.intercept_s + f.slope_s_per_sample * top]], title: "linear fit" });
  }
  return el("figure", { id: "epoch-by-size" }, xyChart("epoch-chart", { label: "Epoch seconds by training-set size", xLabel: "training samples", yLabel: "seconds per epoch" }, points, lines),
    el("figcaption", { class: "muted", id: "epoch-fit" }, f ? `${fmt(f.at_100_s, 2)} s at 100 samples, +${fmt(f.seconds_per_100, 2)} s per 100 more (linear fit over ${f.n_points} runs)` : "No linear fit yet (it needs two sizes)."));
}

function sizeTable(result) {
  const wrap = tableOf(["Size", "Runs ok", ...EXPERIMENT_METRICS.map((m) => `${m.toUpperCase()} mean ± SD (95% CI)`), "Epoch s"], []);
  const body = wrap.querySelector("tbody");
  for (const s of result.sizes)
    body.append(el("tr", { dataset: { size: s.size } }, el("td", {}, String(s.size)), el("td", {}, `${s.succeeded}/${s.runs}`),
      EXPERIMENT_METRICS.map((m) => { const v = s.metrics[m];
        return el("td", { dataset: { metric: m } }, v.mean === null ? "—" : `${fmt(v.mean)}${v.sd === null ? "" : ` ± ${fmt(v.sd)}`} (${ciText(v.ci95)})`); }),
      el("td", { dataset: { metric: "epoch_seconds" } }, fmt(s.epoch_seconds.mean, 2))));
  return wrap;
}

// The stored PNG (the same figure, drawn by the server for reports and MLflow), fetched with the key.
function pngButton(x, name) {
  return el("button", { type: "button", class: "secondary small", dataset: { figure: name }, onclick: async () => {
    const r = await fetch(x.figures[name], { headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` } });
    if (!r.ok) { flash(`No ${name} figure yet.`); return; }
    const a = el("a", { href: URL.createObjectURL(await r.blob()), download: `${x.id}-${name}.png` });
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } }, "Download PNG");
}

function targetText(t) {
  if (!t) return "";
  if (t.samples !== null && t.samples !== undefined) {
    const [lo, hi] = t.samples_ci95 || [null, null];
    return `AUROC ${t.target_auroc}: about ${t.samples} training samples (95% CI ${lo === null ? "?" : Math.ceil(lo)} to ${hi === null ? "open" : Math.ceil(hi)}).`;
  }
  return `AUROC ${t.target_auroc}: ${t.reason}`;
}

async function experimentPage(id) {
  let x = await api("GET", experimentPath(id));
  const head = el("section", { class: "card", id: "experiment-summary" });
  const body = el("div", { id: "experiment-result" });
  const target = el("input", { id: "target-auroc", type: "number", min: 0.51, max: 0.99, step: 0.01, value: 0.85 });
  const answer = el("p", { id: "target-answer", role: "status" });
  const ask = el("form", { class: "row", id: "target-form", onsubmit: async (e) => {
    e.preventDefault();
    try { answer.textContent = targetText((await api("GET", `${experimentPath(id)}?target_auroc=${encodeURIComponent(target.value)}`)).target); }
    catch (err) { flash(err.message); }
  } }, el("label", {}, "Target test AUROC", target), el("button", { type: "submit" }, "Samples needed"));
  const draw = () => {
    head.replaceChildren(el("h2", {}, "Status ", badge(x.status)),
      el("p", {}, `${x.base_model}; sizes ${x.sizes.join(", ")}; seeds ${x.seeds.join(", ")}; ${x.balanced ? `balanced on ${(x.labels || []).join(", ")}` : "not balanced"}; split `, el("code", {}, x.split_id || "")),
      tableOf(["Size", "Seed", "Job", "Status"], x.runs.map((r) => [r.size, r.seed, el("a", { href: `#/jobs/${r.job_id}` }, r.job_id), badge(r.status)])));
    if (!x.result) { body.replaceChildren(el("p", { class: "muted" }, "No run has finished yet.")); return; }
    body.replaceChildren(
      el("section", { class: "card" }, el("h2", {}, "By training-set size (test, macro)"), sizeTable(x.result)),
      el("div", { class: "grid" },
        el("section", { class: "card" }, el("h2", {}, "AUROC by dataset size"), aurocFigure(x.result), x.figures.auroc_by_size ? pngButton(x, "auroc_by_size") : ""),
        el("section", { class: "card" }, el("h2", {}, "Epoch time by dataset size"), epochFigure(x.result), x.figures.epoch_time_by_size ? pngButton(x, "epoch_time_by_size") : "")),
      el("section", { class: "card" }, el("h2", {}, "How many samples for a target AUROC?"), ask, answer));
  };
  render(`Experiment ${id}`, head, body);
  draw();
  every(2000, async () => {
    if (x.status !== "running") return;
    try { x = await api("GET", experimentPath(id)); draw(); } catch { /* next tick */ }
  });
}
