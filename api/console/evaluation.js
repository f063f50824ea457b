// Clinical evaluation on a job's page: calibration, operating points chosen on validation and the
// subgroup table (issue 13). Loaded before console.js, whose helpers (el, tableOf, fmt) it calls at run time.
"use strict";

const ciText = (ci) => (Array.isArray(ci) ? `${fmt(ci[0])} – ${fmt(ci[1])}` : "—");

function calibrationTable(cal) {
  const rows = Object.entries(cal.per_label || {}).map(([label, c]) =>
    [label, fmt(c.ece), fmt(c.brier), c.temperature == null ? "—" : fmt(c.temperature, 2), c.ece_scaled == null ? "—" : fmt(c.ece_scaled)]);
  return el("div", { id: "calibration" }, el("h3", {}, "Calibration on test"),
    tableOf(["Label", "ECE", "Brier", "Temperature (validation)", "ECE after scaling"], rows));
}

function operatingPointsTable(points) {
  const rows = [];
  for (const [label, list] of Object.entries(points.per_label || {}))
    for (const p of list)
      rows.push([label, p.name, fmt(p.threshold), `${fmt(p.test.sensitivity)} (${ciText(p.test_ci95.sensitivity)})`,
        `${fmt(p.test.specificity)} (${ciText(p.test_ci95.specificity)})`]);
  return el("div", { id: "operating-points" }, el("h3", {}, "Operating points (thresholds chosen on validation)"),
    tableOf(["Label", "Operating point", "Threshold", "Test sensitivity (95% CI)", "Test specificity (95% CI)"], rows));
}

function subgroupTable(groups) {
  const attrs = Object.entries(groups.attributes || {});
  if (!attrs.length)
    return el("div", { id: "subgroups" }, el("h3", {}, "Subgroups"),
      el("p", { class: "muted" }, "No attribute (sex, age band, view position, modality, manufacturer, a labels CSV group:<name> column) has two known values on the test split."));
  const wrap = tableOf(["Attribute", "Value", "Images", "AUROC", "95% CI", "Flag"], []);
  const body = wrap.querySelector("tbody");
  for (const [attr, list] of attrs)
    for (const g of list) {
      const flagged = g.below_overall.length > 0;
      body.append(el("tr", { class: flagged ? "flagged" : "", dataset: { attribute: attr, value: g.value } },
        el("td", {}, attr), el("td", {}, g.value), el("td", { dataset: { col: "n" } }, String(g.n)),
        el("td", {}, fmt(g.macro.auroc)), el("td", {}, ciText(g.ci95.macro.auroc)),
        el("td", {}, flagged ? el("span", { class: "badge failed" }, "below overall") : "")));
    }
  return el("div", { id: "subgroups" }, el("h3", {}, "Subgroups"),
    el("p", { class: "muted" }, "Flagged: the subgroup's AUROC CI lies wholly below the overall AUROC."), wrap);
}

function clinicalEvaluation(result) {
  const parts = [el("h2", {}, "Clinical evaluation")];
  if (result.calibration?.per_label) parts.push(calibrationTable(result.calibration));
  if (result.operating_points?.per_label) parts.push(operatingPointsTable(result.operating_points));
  if (result.subgroups) parts.push(subgroupTable(result.subgroups));
  return parts;
}
