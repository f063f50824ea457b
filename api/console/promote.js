// Promotion with an operating point and calibration, and what a version serves with (issue 13): the
// promote form on a job's page, the model page's operating points and calibration per version, and a
// prediction's `positive` on the try-it page. Loaded before console.js, whose helpers (el, api, fmt,
// flash, flashNext, tableOf) it calls at run time.
"use strict";

// The operating points the job chose on validation for every label (promotion refuses a point one
// label lacks); Youden's point first, as the server's default.
function promotablePoints(result) {
  const perLabel = Object.values(result?.operating_points?.per_label || {});
  const names = perLabel.length ? perLabel[0].map((p) => p.name) : [];
  const common = names.filter((n) => perLabel.every((list) => list.some((p) => p.name === n)));
  return ["youden", ...common.filter((n) => n !== "youden")];
}

// Temperature scaling can be offered only where the job fitted a temperature for some label.
const fittedTemperature = (result) =>
  Object.values(result?.calibration?.per_label || {}).some((c) => typeof c.temperature === "number");

function promoteForm(job) {
  const name = el("input", { id: "model-name", required: true, value: job.suffix || "" });
  const point = el("select", { id: "promote-operating-point" },
    promotablePoints(job.result).map((n) => el("option", { value: n }, n)));
  const canScale = fittedTemperature(job.result);
  const temperature = el("input", { id: "promote-temperature", type: "checkbox", disabled: !canScale });
  const refused = el("p", { id: "promote-refused", role: "alert" });
  const form = el("form", { class: "row", id: "promote-form", onsubmit: async (e) => {
    e.preventDefault();
    refused.textContent = "";
    try {
      const v = await api("POST", "/v1/models", { json: {
        job_id: job.id, name: name.value, checkpoint: "best",
        operating_point: point.value, calibration: temperature.checked ? "temperature" : "none",
      } });
      flashNext(`Registered ${v.ref}.`, true);
      location.hash = `#/models/${encodeURIComponent(v.model)}`;
    } catch (err) {
      refused.textContent = `Refused: ${err.message}`;
      flash(`Promotion refused: ${err.message}`);
    }
  } },
  el("label", {}, "Model name", name),
  el("label", {}, "Operating point (chosen on validation)", point),
  el("label", { class: "inline" }, temperature, canScale ? "temperature scaling (fitted on validation)" : "temperature scaling (none fitted)"),
  el("button", { type: "submit" }, "Promote best checkpoint"));
  return [el("h2", {}, "Promote to the registry"), form, refused,
    el("p", { class: "muted" }, "The operating point's per-label thresholds decide each prediction's `positive`.")];
}

const thresholdsText = (thresholds) =>
  Object.entries(thresholds || {}).map(([label, t]) => `${label} ≥ ${fmt(t)}`).join(", ");

function calibrationText(cal) {
  if (!cal || cal.method !== "temperature") return "none";
  const temps = Object.entries(cal.temperatures || {}).map(([label, t]) => `${label} T = ${fmt(t, 2)}`).join(", ");
  return `temperature (${temps})`;
}

// One row per version, from its manifest: a version promoted from another epoch than the best has no
// validated operating point and serves the job's Youden thresholds.
function versionSettings(versions) {
  const wrap = tableOf(["Version", "Operating point", "Thresholds (uncalibrated probability)", "Calibration"], []);
  const body = wrap.querySelector("tbody");
  for (const v of versions) {
    const m = v.manifest || {};
    const op = m.operating_point;
    body.append(el("tr", { dataset: { version: v.version } },
      el("td", {}, String(v.version)),
      el("td", { dataset: { col: "operating-point" } }, op ? op.name : "youden (job default)"),
      el("td", { dataset: { col: "thresholds" } }, op ? thresholdsText(op.thresholds) : "—"),
      el("td", { dataset: { col: "calibration" } }, calibrationText(m.calibration))));
  }
  return el("section", { class: "card", id: "version-settings" },
    el("h2", {}, "Operating points and calibration"), wrap);
}

// What a prediction's `positive` was decided by, under its probabilities.
function predictionBasis(p) {
  const op = p.operating_point;
  return el("p", { class: "muted", id: "prediction-basis" },
    op ? `Positive at the operating point ${op.name}: ${thresholdsText(op.thresholds)}.` : "Positive at the job's thresholds.",
    p.calibration === "temperature" ? " Probabilities are temperature-scaled." : " Probabilities are not calibrated.");
}
