// The medtune web console: plain JS over the REST API. The API key lives in sessionStorage only
// (gone when the tab closes); every page is built with DOM calls, never from HTML strings, so no
// server value is ever parsed as markup.
"use strict";

const KEY = "medtune.apiKey";
const main = () => document.getElementById("main");
let leaving = []; // cleanups of the current page (streams, timers)

// --- DOM helpers ------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const svgNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function render(title, ...content) {
  document.title = `${title} · medtune`;
  const m = main();
  m.replaceChildren(el("h1", {}, title), ...content);
  m.focus({ preventScroll: true });
}

function flash(message, ok = false) {
  const f = document.getElementById("flash");
  f.className = ok ? "ok" : "";
  f.textContent = message || "";
}

// A message for the page we are about to open (navigation clears the flash otherwise).
let carried = null;
function flashNext(message, ok = false) { carried = { message, ok }; }

const badge = (status) => el("span", { class: `badge ${status}` }, status);
// A job or model version trained on images erased since: flagged, not retrained; no alias may point at it.
const statusOf = (x) => x.data_erased
  ? el("span", {}, badge(x.status), " ", el("span", { class: "badge failed", title: "Images it trained on were erased since" }, "data erased"))
  : badge(x.status);
const fmt = (v, d = 3) => (typeof v === "number" ? v.toFixed(d) : v ?? "");
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

function tableOf(columns, rows) {
  return el("div", { class: "table-wrap" },
    el("table", {},
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((v) => el("td", {}, v)))))));
}

function stats(pairs) {
  return el("dl", { class: "stats" }, pairs.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", { dataset: { stat: k } }, v))));
}

// --- the API ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.type = err.type;
    this.param = err.param;
  }
}

async function api(method, path, { json, form, body, headers } = {}) {
  const h = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`, ...(headers || {}) };
  let payload = body;
  if (json !== undefined) {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  } else if (form) {
    payload = form;
  }
  const r = await fetch(path, { method, headers: h, body: payload });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (r.status === 401) {
    sessionStorage.removeItem(KEY);
    location.hash = "#/signin";
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// Upload with progress events (fetch cannot report upload progress).
function xhrUpload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("POST", path);
    x.setRequestHeader("Authorization", `Bearer ${sessionStorage.getItem(KEY) || ""}`);
    x.upload.onprogress = (e) => onProgress(e.loaded);
    x.onload = () => {
      let data = null;
      try { data = JSON.parse(x.responseText); } catch { data = null; }
      if (x.status >= 200 && x.status < 300) resolve(data);
      else reject(new ApiError(x.status, data));
    };
    x.onerror = () => reject(new Error("the upload could not reach the server"));
    x.send(form);
  });
}

// Server-sent events with the Authorization header (EventSource cannot send one).
function streamEvents(path, onEvent) {
  const ctrl = new AbortController();
  (async () => {
    let last = null;
    for (let attempt = 0; attempt < 5 && !ctrl.signal.aborted; attempt++) {
      try {
        const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`, Accept: "text/event-stream" };
        if (last) headers["Last-Event-ID"] = last;
        const r = await fetch(path, { headers, signal: ctrl.signal });
        if (!r.ok) return;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buf += value;
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const frame = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            const ev = { event: "message", data: [], id: null };
            for (const line of frame.split("\n")) {
              if (!line || line.startsWith(":")) continue;
              const i = line.indexOf(":");
              const name = i < 0 ? line : line.slice(0, i);
              const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
              if (name === "event") ev.event = val;
              else if (name === "data") ev.data.push(val);
              else if (name === "id") ev.id = val;
            }
            if (!ev.data.length) continue;
            if (ev.id) last = ev.id;
            let data = ev.data.join("\n");
            try { data = JSON.parse(data); } catch { /* keep text */ }
            if (onEvent(ev.event, data) === false || ev.event === "end") return;
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
        await new Promise((ok) => setTimeout(ok, 1000 * (attempt + 1)));
      }
    }
  })();
  return () => ctrl.abort();
}

function every(ms, fn) {
  const t = setInterval(fn, ms);
  leaving.push(() => clearInterval(t));
}

async function* pages(path, limit = 100) {
  let after = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api("GET", `${path}${sep}limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    yield* page.data;
    if (!page.has_more || !page.last_id) return;
    after = page.last_id;
  }
}

async function all(path, limit) {
  const out = [];
  for await (const x of pages(path, limit)) out.push(x);
  return out;
}

// --- pages ------------------------------------------------------------------------------------

function signIn() {
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  const key = el("input", { id: "api-key", type: "password", autocomplete: "off", required: true, placeholder: "mt_…" });
  const form = el("form", { class: "stack card", onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, key.value.trim());
    try {
      const project = await api("GET", "/v1/project");
      document.getElementById("project-name").textContent = `project ${project.name}`;
      flash("");
      location.hash = "#/datasets";
    } catch (err) {
      sessionStorage.removeItem(KEY);
      flash(`Sign-in failed: ${err.message}`);
      key.focus();
    }
  } },
  el("label", { for: "api-key" }, "API key"), key,
  el("p", { class: "muted" }, "The key stays in this tab only (sessionStorage) and is sent to this server alone. `medtune up` prints an admin key; `medtune admin create-key` makes more."),
  el("div", {}, el("button", { type: "submit" }, "Sign in")));
  render("Sign in", form);
  key.focus();
}

async function datasetsPage() {
  const name = el("input", { id: "ds-name", required: true, maxlength: 200 });
  const labels = el("input", { id: "ds-labels", required: true, placeholder: "effusion, nodule" });
  const task = el("select", { id: "ds-task" }, el("option", { value: "binary" }, "binary"), el("option", { value: "multilabel" }, "multilabel"));
  const minSize = el("input", { id: "ds-min-size", type: "number", min: 1, value: 128 });
  const aeTitle = el("input", { id: "ds-ae-title", maxlength: 16, placeholder: "optional, e.g. CHEST" });
  const create = el("form", { class: "row", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const ds = await api("POST", "/v1/datasets", { json: {
        name: name.value, task: task.value,
        labels: labels.value.split(",").map((s) => s.trim()).filter(Boolean),
        options: { min_image_size: Number(minSize.value) }, dicom_ae_title: aeTitle.value.trim() || null,
      } });
      location.hash = `#/datasets/${ds.id}`;
    } catch (err) { flash(err.message); }
  } },
  el("label", {}, "Name", name), el("label", {}, "Labels (comma-separated)", labels),
  el("label", {}, "Task", task), el("label", {}, "Min. image size (px)", minSize), el("label", {}, "PACS AE title", aeTitle),
  el("button", { type: "submit" }, "Create dataset"));
  const list = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  render("Datasets", el("section", { class: "card" }, el("h2", {}, "New dataset"), create), el("section", { class: "card" }, el("h2", {}, "All datasets"), list));
  const rows = await all("/v1/datasets", 100);
  list.replaceChildren(rows.length
    ? tableOf(["Name", "Task", "Status", "AE title", "Accepted", "Rejected", "Patients", "Labelled studies"], rows.map((d) => [
      el("a", { href: `#/datasets/${d.id}` }, d.name), d.task, badge(d.status), d.dicom_ae_title || "", d.counts.accepted,
      Object.values(d.counts.rejected).reduce((a, b) => a + b, 0), d.counts.patients, d.counts.labelled_studies]))
    : el("p", { class: "muted" }, "No dataset yet: create one above."));
}

// Files from a drop: folders are walked (webkitGetAsEntry), zips and files pass as they are.
async function droppedFiles(dt) {
  const out = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const f = await new Promise((ok, ko) => entry.file(ok, ko));
      out.push({ file: f, name: prefix + f.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, ko) => reader.readEntries(ok, ko));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  const entries = [...(dt.items || [])].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (entries.length) for (const e of entries) await walk(e, "");
  else for (const f of dt.files) out.push({ file: f, name: f.name });
  return out.filter((x) => !x.name.split("/").some((p) => p.startsWith(".")));
}

function uploader(ds, onDone) {
  const files = el("input", { id: "upload-files", type: "file", multiple: true, accept: ".dcm,.dicom,.zip,.png,.jpg,.jpeg,application/dicom,application/zip" });
  const folder = el("input", { id: "upload-folder", type: "file", webkitdirectory: true, multiple: true });
  const manifest = el("input", { id: "upload-manifest", type: "file", accept: ".csv,text/csv" });
  const bar = el("progress", { id: "upload-progress", max: 1, value: 0, hidden: true });
  const status = el("p", { id: "upload-status", role: "status" });
  const report = el("div", { id: "upload-report" });
  const drop = el("div", { class: "drop", id: "drop" },
    el("p", {}, "Drop DICOM files, folders or zips here, or choose them:"),
    el("div", { class: "row" }, el("label", {}, "Files or zips", files), el("label", {}, "A folder", folder)),
    el("label", {}, "Manifest CSV (PNG/JPEG datasets only)", manifest));

  async function send(items) {
    if (!items.length) return;
    const total = items.reduce((a, x) => a + x.file.size, 0);
    bar.hidden = false; bar.max = total; bar.value = 0;
    const outcomes = [];
    let sent = 0;
    for (let i = 0; i < items.length; i += 16) {
      const chunk = items.slice(i, i + 16);
      const form = new FormData();
      for (const x of chunk) form.append("files", x.file, x.name);
      if (manifest.files[0]) form.append("manifest", manifest.files[0]);
      status.textContent = `Uploading ${Math.min(i + 16, items.length)} of ${items.length} files…`;
      try {
        const answer = await xhrUpload(`/v1/datasets/${ds.id}/files`, form, (n) => { bar.value = sent + n; });
        outcomes.push(...answer.data);
      } catch (err) { flash(`Upload failed: ${err.message}`); return; }
      sent += chunk.reduce((a, x) => a + x.file.size, 0);
      bar.value = sent;
    }
    const count = (o) => outcomes.filter((x) => x.outcome === o).length;
    status.textContent = `${outcomes.length} files: ${count("queued")} queued, ${count("duplicate")} duplicates, ${count("rejected")} rejected.`;
    const bad = outcomes.filter((x) => x.outcome === "rejected");
    report.replaceChildren(bad.length ? tableOf(["File", "Reason"], bad.map((x) => [x.filename, x.reason])) : "");
    onDone();
  }
  const pick = (input) => send([...input.files].map((f) => ({ file: f, name: f.webkitRelativePath || f.name })));
  files.addEventListener("change", () => pick(files));
  folder.addEventListener("change", () => pick(folder));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => { e.preventDefault(); drop.classList.remove("over"); send(await droppedFiles(e.dataTransfer)); });
  return el("section", { class: "card" }, el("h2", {}, "Upload images"), drop, bar, status, report);
}

function labelsForm(ds, onDone) {
  const csv = el("input", { id: "labels-file", type: "file", accept: ".csv,text/csv" });
  const result = el("div", { id: "labels-result", role: "status" });
  csv.addEventListener("change", async () => {
    if (!csv.files[0]) return;
    const form = new FormData();
    form.append("file", csv.files[0]);
    try {
      const r = await api("POST", `/v1/datasets/${ds.id}/labels`, { form });
      result.replaceChildren(el("p", {}, `${r.rows} rows: ${r.matched} matched, ${r.unmatched} not matched yet, ${r.errors.length} errors.`),
        r.errors.length ? tableOf(["Row", "Column", "Problem"], r.errors.map((x) => [x.row, x.column, x.message])) : "");
      onDone();
    } catch (err) { flash(`Labels refused: ${err.message}`); }
  });
  return el("section", { class: "card" }, el("h2", {}, "Labels"),
    el("p", { class: "muted" }, "A CSV with an AccessionNumber or StudyInstanceUID column (original values; matched by HMAC, never stored) and one 0/1 column per label. Labels may come before or after the images."),
    el("label", {}, "Labels CSV", csv), result);
}

function reportOf(ds) {
  const c = ds.counts;
  const rejected = Object.entries(c.rejected);
  return el("div", { id: "report" },
    el("p", {}, "Status ", badge(ds.status), ` · task ${ds.task} · labels ${ds.labels.join(", ")}`),
    stats([["Received", c.received], ["Accepted", c.accepted], ["Rejected", rejected.reduce((a, [, n]) => a + n, 0)],
      ["Duplicates", c.duplicates], ["Pending", c.pending], ["Studies", c.studies], ["Patients", c.patients], ["Labelled studies", c.labelled_studies]]),
    rejected.length ? el("div", {}, el("h3", {}, "Rejected by reason"), tableOf(["Reason", "Images"], rejected.sort((a, b) => b[1] - a[1]))) : "",
    el("h3", {}, "Labels (studies)"),
    tableOf(["Label", "Positive", "Negative"], Object.entries(c.labels).map(([k, v]) => [k, v.positives, v.negatives])));
}

async function datasetPage(id) {
  let ds = await api("GET", `/v1/datasets/${id}`);
  const report = el("section", { class: "card" }, el("h2", {}, "Ingest report"), reportOf(ds));
  const refresh = async () => {
    ds = await api("GET", `/v1/datasets/${id}`);
    report.replaceChildren(el("h2", {}, "Ingest report"), reportOf(ds));
    return ds;
  };
  every(2000, () => { if (ds.status === "ingesting") refresh().catch(() => {}); });
  const splits = el("div", { id: "splits" });
  const loadSplits = async () => {
    const rows = await all(`/v1/datasets/${id}/splits`, 50).catch(() => []);
    splits.replaceChildren(rows.length ? tableOf(["Split", "Seed", "Train / val / test patients", "SHA-256", ""], rows.map((s) => [
      s.id, s.seed ?? s.source, ["train", "val", "test"].map((k) => s.counts[k]?.patients ?? "?").join(" / "), el("code", {}, s.sha256.slice(0, 12)),
      s.erased_members ? el("span", { class: "badge failed", title: "Images of this manifest were erased; make a new split" }, `${s.erased_members} erased`)
        : el("a", { href: `#/jobs/new?dataset=${id}&split=${s.id}` }, "Train on it")])) : el("p", { class: "muted" }, "No split yet."));
  };
  const seed = el("input", { id: "split-seed", type: "number", min: 0, placeholder: "drawn if empty" });
  const fraction = (part, value) => el("input", { id: `split-${part}`, type: "number", min: 0, max: 1, step: 0.05, value, required: true });
  const parts = { train: fraction("train", 0.7), val: fraction("val", 0.15), test: fraction("test", 0.15) };
  const splitForm = el("form", { class: "row", id: "split-form", onsubmit: async (e) => {
    e.preventDefault();
    const body = { fractions: Object.fromEntries(Object.entries(parts).map(([k, input]) => [k, Number(input.value)])) };
    if (seed.value) body.seed = Number(seed.value);
    try {
      const made = await api("POST", `/v1/datasets/${id}/splits`, { json: body });
      flash(`Split ${made.id} created (seed ${made.seed}).`, true);
      loadSplits();
    } catch (err) { flash(`Split refused: ${err.message}`); }
  } }, el("label", {}, "Seed", seed), el("label", {}, "Train", parts.train), el("label", {}, "Validation", parts.val),
  el("label", {}, "Test", parts.test), el("button", { type: "submit" }, "Make a split (by patient, stratified)"));
  render(ds.name, report, el("div", { class: "grid" }, uploader(ds, refresh), labelsForm(ds, refresh)),
    el("section", { class: "card" }, el("h2", {}, "Splits"), splitForm, splits), pacsCard(ds),
    el("p", {}, el("a", { class: "button", href: `#/jobs/new?dataset=${id}` }, "New fine-tuning job")));
  loadSplits();
}

async function jobsPage() {
  const rows = await all("/v1/fine-tuning/jobs", 100);
  render("Fine-tuning jobs",
    el("p", {}, el("a", { class: "button", href: "#/jobs/new" }, "New job")),
    el("section", { class: "card" }, rows.length ? tableOf(["Job", "Status", "Base model", "Epoch", "Best", "Seed sweep", "Created"], rows.map((j) => [
      el("a", { href: `#/jobs/${j.id}` }, j.id), statusOf(j), j.base_model,
      j.progress ? `${j.progress.epoch ?? 0}/${j.progress.epochs ?? "?"}` : "", j.best ? `${j.best.metric} ${fmt(j.best.value)}` : "",
      j.group_id ? el("a", { href: `#/job-groups/${j.group_id}` }, j.group_id) : "", when(j.created_at)]))
      : el("p", { class: "muted" }, "No job yet.")));
}

const HP = ["epochs", "batch_size", "learning_rate", "weight_decay", "warmup_epochs", "early_stopping_patience", "image_size", "augmentation", "class_weighting"];

async function newJobPage(params) {
  const [datasets, catalog] = await Promise.all([all("/v1/datasets", 100), all("/v1/base-models", 200).then((data) => ({ data }))]);
  const dataset = el("select", { id: "job-dataset", required: true }, datasets.map((d) => el("option", { value: d.id, selected: d.id === params.get("dataset") }, `${d.name} (${d.id})`)));
  // The catalog comes radiography foundation models first, then general vision: one optgroup each, in that order.
  const groupOf = (m) => m.group || "registered weights";
  const modelOption = (m) => el("option", { value: m.name, dataset: { weights: m.weights } }, `${m.name}${m.description ? ` — ${m.description}` : ""}${m.weights_available ? "" : " (no weights)"}`);
  const model = el("select", { id: "job-base-model" }, [...new Set(catalog.data.map(groupOf))].map((g) => el("optgroup", { label: g }, catalog.data.filter((m) => groupOf(m) === g).map(modelOption))));
  const weights = el("select", { id: "job-weights" }, ["pretrained", "random"].map((w) => el("option", { value: w }, w)));
  const method = el("select", { id: "job-method" }, ["lora", "full", "linear_probe"].map((m) => el("option", { value: m }, m)));
  const splitId = el("input", { id: "job-split", value: params.get("split") || "", placeholder: "empty: a new split" });
  const splitSeed = el("input", { id: "job-split-seed", type: "number", min: 0, placeholder: "drawn if empty" });
  const sweep = el("input", { id: "job-split-seeds", inputmode: "numeric", placeholder: "e.g. 1, 2, 3", "aria-describedby": "sweep-help" });
  const hp = Object.fromEntries(HP.map((k) => [k, el("input", { id: `hp-${k}`, value: "auto" })]));
  const form = el("form", { class: "stack card", onsubmit: async (e) => {
    e.preventDefault();
    const hyper = {};
    for (const [k, input] of Object.entries(hp)) {
      const v = input.value.trim();
      if (!v || v === "auto") continue;
      hyper[k] = v === "true" ? true : v === "false" ? false : Number.isNaN(Number(v)) ? v : Number(v);
    }
    const body = { dataset_id: dataset.value, base_model: model.value, weights: weights.value, method: { type: method.value }, hyperparameters: hyper };
    const seeds = sweep.value.split(",").map((x) => x.trim()).filter(Boolean);
    if (seeds.length) {
      if (splitId.value.trim()) { flash("A seed sweep makes one split per seed: leave the split id empty."); splitId.focus(); return; }
      if (seeds.some((x) => !/^\d+$/.test(x))) { flash("Split seeds are whole numbers, separated by commas."); sweep.focus(); return; }
      try {
        const group = await api("POST", "/v1/fine-tuning/job-groups", { json: { ...body, split_seeds: seeds.map(Number) } });
        location.hash = `#/job-groups/${group.id}`;
      } catch (err) { flash(`Seed sweep refused: ${err.message}`); }
      return;
    }
    if (splitId.value.trim()) body.split_id = splitId.value.trim();
    else if (splitSeed.value) body.split = { seed: Number(splitSeed.value) };
    try {
      const job = await api("POST", "/v1/fine-tuning/jobs", { json: body });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) { flash(`Job refused: ${err.message}`); }
  } },
  el("label", {}, "Dataset", dataset), el("label", {}, "Base model", model),
  el("div", { class: "row" }, el("label", {}, "Weights", weights), el("label", {}, "Method", method)),
  el("fieldset", {}, el("legend", {}, "Split"), el("div", { class: "row" }, el("label", {}, "Split id", splitId), el("label", {}, "or a new split with seed", splitSeed)),
    el("label", {}, "or a seed sweep: split seeds", sweep),
    el("p", { class: "muted", id: "sweep-help" }, "One job per seed, each on its own split; the sweep page shows mean, SD and the 95% CI of the test metrics.")),
  el("fieldset", {}, el("legend", {}, "Hyperparameters (auto: chosen from the model and the data)"), el("div", { class: "hp" }, HP.map((k) => el("label", {}, k.replaceAll("_", " "), hp[k])))),
  el("div", {}, el("button", { type: "submit" }, "Start fine-tuning")));
  sweep.addEventListener("input", () => { form.querySelector("button[type=submit]").textContent = sweep.value.trim() ? "Start the seed sweep" : "Start fine-tuning"; });
  render("New fine-tuning job", form);
}

function chart(id, series, points, { yMin, yMax } = {}) {
  const W = 560, H = 220, P = 36;
  const xs = points.map((p) => p.epoch);
  const ys = series.flatMap((s) => points.map((p) => p[s.key]).filter((v) => typeof v === "number"));
  const x0 = 1, x1 = Math.max(2, ...xs);
  const lo = yMin ?? Math.min(...ys, 0), hi = yMax ?? Math.max(...ys, 1);
  const X = (x) => P + ((x - x0) / (x1 - x0)) * (W - 2 * P);
  const Y = (y) => H - P - ((y - lo) / (hi - lo || 1)) * (H - 2 * P);
  const root = svg("svg", { class: "chart", id, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${series.map((s) => s.key).join(" and ")} per epoch` },
    svg("line", { class: "axis", x1: P, y1: H - P, x2: W - P, y2: H - P }), svg("line", { class: "axis", x1: P, y1: P, x2: P, y2: H - P }),
    svg("text", { x: P, y: H - 10 }, "epoch 1"), svg("text", { x: W - P - 40, y: H - 10 }, `epoch ${x1}`),
    svg("text", { x: 2, y: P }, fmt(hi, 2)), svg("text", { x: 2, y: H - P }, fmt(lo, 2)));
  for (const s of series) {
    const pts = points.filter((p) => typeof p[s.key] === "number");
    root.append(svg("polyline", { fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.key, points: pts.map((p) => `${X(p.epoch)},${Y(p[s.key])}`).join(" ") }));
    for (const p of pts) root.append(svg("circle", { cx: X(p.epoch), cy: Y(p[s.key]), r: 3, fill: s.color, "data-series": s.key, "data-epoch": p.epoch }, svg("title", {}, `${s.key} ${fmt(p[s.key])} (epoch ${p.epoch})`)));
  }
  return el("figure", {}, root, el("figcaption", { class: "legend" }, series.map((s) => el("span", { style: `color:${s.color}` }, s.key))));
}

async function jobPage(id) {
  let job = await api("GET", `/v1/fine-tuning/jobs/${id}`);
  const points = new Map();
  const summary = el("section", { class: "card", id: "job-summary", tabindex: -1 });
  const curves = el("section", { class: "card" }, el("h2", {}, "Curves"), el("div", { id: "curves" }));
  const log = el("ol", { id: "events", class: "muted" });
  const actions = el("div", { class: "row" });
  const promote = el("section", { class: "card", id: "promote" });
  const clinical = el("section", { class: "card", id: "clinical" });

  const drawCurves = () => {
    const pts = [...points.values()].sort((a, b) => a.epoch - b.epoch);
    curves.querySelector("#curves").replaceChildren(pts.length ? el("div", { class: "grid" },
      chart("loss-chart", [{ key: "train_loss", color: "#0b5cad" }, { key: "val_loss", color: "#d9480f" }], pts),
      chart("auroc-chart", [{ key: "val_auroc", color: "#1a7f37" }], pts, { yMin: 0, yMax: 1 })) : el("p", { class: "muted" }, "The curves appear after the first epoch."));
  };
  const drawSummary = () => {
    const p = job.progress || {};
    summary.replaceChildren(el("h2", {}, "Status ", badge(job.status)),
      job.status === "running" && p.epochs ? el("progress", { max: p.epochs * (p.steps || 1), value: ((p.epoch || 1) - 1) * (p.steps || 1) + (p.step || 0), "aria-label": "training progress" }) : "",
      stats([["Base model", job.base_model], ["Method", job.method?.type ?? ""], ["Epoch", `${p.epoch ?? 0}/${p.epochs ?? job.hyperparameters?.epochs ?? "?"}`],
        ["Best", job.best ? `${job.best.metric} ${fmt(job.best.value)} @${job.best.epoch}` : "—"], ["Split", job.split?.seed ?? job.split?.id ?? ""], ["Test AUROC", fmt(job.result?.metrics?.macro?.auroc ?? job.result?.macro?.auroc)]]),
      job.error ? el("p", { class: "badge failed" }, `${job.error.code}: ${job.error.message}`) : "",
      job.data_erased ? el("p", { class: "badge failed" }, "Data erased: images this job trained on were erased since. Its model is flagged, not retrained, and its versions cannot take an alias.") : "",
      job.mlflow_url ? el("p", {}, el("a", { href: job.mlflow_url, target: "_blank", rel: "noopener" }, "Open the run in MLflow")) : "",
      job.group_id ? el("p", {}, "Part of the seed sweep ", el("a", { href: `#/job-groups/${job.group_id}` }, job.group_id), ".") : "",
      el("details", {}, el("summary", {}, "Resolved hyperparameters"), el("pre", {}, JSON.stringify(job.hyperparameters, null, 2))));
    const terminal = ["succeeded", "failed", "cancelled"].includes(job.status);
    // Cancel and resume swap places; the keyboard focus follows to whichever button is left.
    const act = (verb) => async () => {
      try {
        job = await api("POST", `/v1/fine-tuning/jobs/${id}/${verb}`);
        flash(verb === "cancel" ? `Cancelling ${id}: it stops within one step and keeps its checkpoints.` : `Resumed ${id}.`, true);
      } catch (err) { flash(`${verb === "cancel" ? "Cancel" : "Resume"} refused: ${err.message}`); }
      drawSummary();
      if (verb === "resume") follow();
    };
    const hadFocus = actions.contains(document.activeElement);
    actions.replaceChildren(
      !terminal ? el("button", { class: "danger", type: "button", id: "cancel-job", onclick: act("cancel") }, "Cancel") : "",
      ["failed", "cancelled"].includes(job.status) ? el("button", { type: "button", id: "resume-job", onclick: act("resume") }, "Resume") : "");
    if (hadFocus) (actions.querySelector("button") || summary).focus();
    if (job.status === "succeeded" && job.result && !clinical.childElementCount) clinical.append(...clinicalEvaluation(job.result));
    if (job.status === "succeeded" && !promote.childElementCount) promote.append(...promoteForm(job));
  };
  render(`Job ${id}`, summary, actions, curves, clinical, promote, el("section", { class: "card" }, el("h2", {}, "Events"), log));
  // The event stream ends with the job; a resumed job is followed again from its first event.
  let stopStream = () => {};
  leaving.push(() => stopStream());
  function follow() {
    stopStream();
    log.replaceChildren();
    points.clear();
    stopStream = streamEvents(`/v1/fine-tuning/jobs/${id}/events/stream`, (type, ev) => {
      if (type === "end") return false;
      if (!ev || typeof ev !== "object") return true;
      log.prepend(el("li", { class: ev.level === "error" ? "badge failed" : "" }, `${when(ev.created_at)} — ${ev.message}`));
      if (ev.type === "metrics" && ev.data && typeof ev.data.epoch === "number") {
        points.set(ev.data.epoch, ev.data);
        drawCurves();
      }
      return true;
    });
  }
  drawSummary();
  drawCurves();
  follow();
  // Polled while the job is under way (a resume starts it again); redrawn only when it changed, so a
  // button under the keyboard's focus is not swapped for nothing.
  every(2000, async () => {
    if (["succeeded", "failed", "cancelled"].includes(job.status)) return;
    try {
      const next = await api("GET", `/v1/fine-tuning/jobs/${id}`);
      if (JSON.stringify(next) !== JSON.stringify(job)) { job = next; drawSummary(); }
    } catch { /* next tick */ }
  });
}

// A seed sweep: one job per split seed, and over those that succeeded the mean, SD and t-based 95% CI
// of each test metric (computed by the server).
const METRIC_ORDER = ["test_auroc", "test_auprc", "test_sensitivity", "test_specificity", "test_f1", "test_accuracy"];

async function groupPage(id) {
  let group = await api("GET", `/v1/fine-tuning/job-groups/${id}`);
  const head = el("section", { class: "card", id: "group-summary" });
  const jobs = el("section", { class: "card", id: "group-jobs" });
  const draw = () => {
    const metrics = group.summary?.metrics || {};
    const names = Object.keys(metrics).sort((a, b) => (METRIC_ORDER.indexOf(a) + 1 || 99) - (METRIC_ORDER.indexOf(b) + 1 || 99));
    const ci = (m) => (Array.isArray(m.ci95) ? `${fmt(m.ci95[0])} – ${fmt(m.ci95[1])}` : "—");
    head.replaceChildren(el("h2", {}, "Status ", badge(group.status)),
      el("p", {}, `${group.summary?.n_succeeded ?? 0} of ${group.jobs.length} jobs succeeded; split seeds ${group.split_seeds.join(", ")}. `,
        el("span", { class: "muted" }, "The 95% CI is t-based over the seeds that succeeded; it needs two.")),
      el("div", { class: "table-wrap" }, el("table", { id: "group-metrics" },
        el("caption", { class: "muted" }, "Test metrics across seeds"),
        el("thead", {}, el("tr", {}, ["Metric", "n", "Mean", "SD", "95% CI"].map((c) => el("th", { scope: "col" }, c)))),
        el("tbody", {}, names.map((k) => el("tr", { dataset: { metric: k } },
          el("th", { scope: "row" }, k.replace(/^test_/, "").toUpperCase()),
          el("td", { dataset: { col: "n" } }, metrics[k].n), el("td", { dataset: { col: "mean" } }, metrics[k].mean === null ? "—" : fmt(metrics[k].mean)),
          el("td", { dataset: { col: "sd" } }, metrics[k].sd === null ? "—" : fmt(metrics[k].sd)), el("td", { dataset: { col: "ci95" } }, ci(metrics[k]))))))));
    jobs.replaceChildren(el("h2", {}, "Jobs"), tableOf(["Job", "Split seed", "Status", "Epoch", "Test AUROC"], group.jobs.map((j) => [
      el("a", { href: `#/jobs/${j.id}` }, j.id), j.split?.seed ?? "", badge(j.status),
      j.progress ? `${j.progress.epoch ?? 0}/${j.progress.epochs ?? "?"}` : "", fmt(j.result?.macro?.auroc)])));
  };
  render(`Seed sweep ${id}`, head, jobs);
  draw();
  every(2000, async () => {
    if (group.status !== "running") return;
    try { group = await api("GET", `/v1/fine-tuning/job-groups/${id}`); draw(); } catch { /* next tick */ }
  });
}

async function modelsPage() {
  const rows = await all("/v1/models", 100);
  render("Model registry", el("section", { class: "card" }, rows.length ? tableOf(["Model", "Latest version", "Aliases"], rows.map((m) => [
    el("a", { href: `#/models/${encodeURIComponent(m.name)}` }, m.name), m.latest_version ?? "",
    Object.entries(m.aliases || {}).map(([a, v]) => `${a} → ${v}`).join(", ")]))
    : el("p", { class: "muted" }, "Nothing registered yet: promote a succeeded job from its page.")));
}

async function modelPage(name) {
  // `name` alone answers 410 once every version is archived; the page still lists them.
  const detail = api("GET", `/v1/models/${encodeURIComponent(name)}`).catch((err) => { if (err.status === 410) return { serving: null }; throw err; });
  const [model, versions] = await Promise.all([detail, all(`/v1/models/${encodeURIComponent(name)}/versions`, 200)]);
  const alias = el("input", { id: "alias-name", value: "champion", required: true });
  const version = el("select", { id: "alias-version" }, versions.filter((v) => v.status === "ready").map((v) => el("option", { value: v.version }, String(v.version))));
  const force = el("input", { id: "alias-force", type: "checkbox" });
  const form = el("form", { class: "row", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api("PUT", `/v1/models/${encodeURIComponent(name)}/aliases/${encodeURIComponent(alias.value)}`, { json: { version: Number(version.value), force: force.checked } });
      flash(`${name}@${alias.value} → ${version.value}`, true);
      modelPage(name);
    } catch (err) { flash(err.message); }
  } }, el("label", {}, "Alias", alias), el("label", {}, "Version", version), el("label", { class: "inline" }, force, "force (even to a lower test AUROC)"), el("button", { type: "submit" }, "Set alias"));
  render(`Model ${name}`,
    el("p", {}, `${name} alone serves version ${model.serving ? model.serving.version : "none"}.`),
    el("section", { class: "card" }, el("h2", {}, "Versions"), tableOf(["Version", "Status", "Aliases", "Test AUROC", "Epoch", "Job", "Loaded", ""], versions.map((v) => [
      v.version, statusOf(v), v.aliases.join(", "), fmt(v.test_auroc), v.epoch,
      v.job_id ? el("a", { href: `#/jobs/${v.job_id}` }, v.job_id) : "", v.loaded ? "yes" : "no",
      v.status === "ready" ? el("span", { class: "actions" },
        el("a", { href: `#/predict?model=${encodeURIComponent(v.ref)}` }, "Try it"),
        el("button", { type: "button", class: "danger small", dataset: { version: v.version }, "aria-label": `Archive ${v.ref}`, onclick: async () => {
          if (!window.confirm(`Archive ${v.ref}? It stops serving at once (answers 410); its record and metrics stay.`)) return;
          try {
            await api("DELETE", `/v1/models/${encodeURIComponent(name)}/versions/${v.version}`);
            flash(`Archived ${v.ref}: it no longer serves.`, true);
            await modelPage(name);
          } catch (err) { flash(`Archive refused: ${err.message}`); }
        } }, "Archive")) : ""]))),
    versionSettings(versions), el("section", { class: "card" }, el("h2", {}, "Aliases"), form));
}

async function predictPage(params) {
  const ref = el("input", { id: "predict-model", required: true, value: params.get("model") || "", placeholder: "name, name:N or name@alias" });
  const explain = el("input", { id: "predict-explain", type: "checkbox" });
  const file = el("input", { id: "predict-file", type: "file", accept: ".dcm,.dicom,.png,.jpg,.jpeg" });
  const out = el("div", { id: "prediction", role: "status" });
  const drop = el("div", { class: "drop", id: "predict-drop" }, el("p", {}, "Drop a DICOM, PNG or JPEG here, or choose it:"), el("label", {}, "Image", file));
  const run = async (f) => {
    if (!f || !ref.value) { flash("Choose a model and an image."); return; }
    const lower = f.name.toLowerCase();
    const type = lower.endsWith(".png") ? "image/png" : /\.jpe?g$/.test(lower) ? "image/jpeg" : "application/dicom";
    out.replaceChildren(el("p", { class: "muted" }, "Predicting…"));
    try {
      const r = await api("POST", `/v1/models/${encodeURIComponent(ref.value)}/predict${explain.checked ? "?explain=true" : ""}`, { body: f, headers: { "Content-Type": type } });
      const p = r.predictions[0];
      const heat = p.heatmap_png_base64;
      out.replaceChildren(el("h2", {}, `${r.model}:${r.version}`),
        ...Object.entries(p.probabilities).map(([label, prob]) => el("div", { class: "prob", dataset: { label, positive: String(Boolean(p.positive?.[label])) } },
          el("span", {}, `${label} (${p.positive?.[label] ? "positive" : "negative"})`), el("div", { class: "bar", style: `width:${Math.round(prob * 100)}%` }), el("span", {}, fmt(prob)))),
        predictionBasis(p),
        heat ? el("img", { class: "heatmap", alt: "Grad-CAM heatmap over the image", src: heat.startsWith("data:") ? heat : `data:image/png;base64,${heat}` }) : "");
    } catch (err) { out.replaceChildren(); flash(`Prediction refused: ${err.message}`); }
  };
  file.addEventListener("change", () => run(file.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); run(e.dataTransfer.files[0]); });
  render("Try a model", el("section", { class: "card" }, el("div", { class: "row" }, el("label", {}, "Model", ref), el("label", { class: "inline" }, explain, "heatmap (Grad-CAM)")), drop), out);
}

// --- routing ----------------------------------------------------------------------------------

const ROUTES = [
  [/^#\/signin$/, signIn],
  [/^#\/datasets$/, datasetsPage],
  [/^#\/datasets\/([^/?]+)$/, datasetPage],
  [/^#\/jobs$/, jobsPage],
  [/^#\/jobs\/new(?:\?.*)?$/, () => newJobPage(query())],
  [/^#\/jobs\/([^/?]+)$/, jobPage],
  [/^#\/job-groups\/([^/?]+)$/, groupPage],
  [/^#\/experiments$/, experimentsPage],
  [/^#\/experiments\/([^/?]+)$/, experimentPage],
  [/^#\/models$/, modelsPage],
  [/^#\/models\/([^/?]+)$/, (n) => modelPage(decodeURIComponent(n))],
  [/^#\/predict(?:\?.*)?$/, () => predictPage(query())],
  [/^#\/pacs-nodes$/, pacsNodesPage],
];

function query() {
  const i = location.hash.indexOf("?");
  return new URLSearchParams(i < 0 ? "" : location.hash.slice(i + 1));
}

async function route() {
  for (const stop of leaving) stop();
  leaving = [];
  const hash = location.hash || "#/datasets";
  if (!sessionStorage.getItem(KEY) && hash !== "#/signin") { location.hash = "#/signin"; return; }
  if (hash !== "#/signin") {
    document.getElementById("nav").hidden = false;
    document.getElementById("who").hidden = false;
    for (const a of document.querySelectorAll("#nav a")) {
      if (hash.startsWith(a.getAttribute("href"))) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
  }
  for (const [re, page] of ROUTES) {
    const m = hash.match(re);
    if (!m) continue;
    try { await page(...m.slice(1)); } catch (err) {
      if (err.status === 404) render("Not found", el("p", {}, err.message));
      else if (err.status !== 401) flash(err.message);
    }
    return;
  }
  render("Not found", el("p", {}, "No such page. ", el("a", { href: "#/datasets" }, "Datasets")));
}

async function start() {
  // The skip link moves the focus; following its #main would be read as a route.
  document.querySelector(".skip").addEventListener("click", (e) => { e.preventDefault(); main().focus(); });
  document.getElementById("signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); location.hash = "#/signin"; });
  window.addEventListener("hashchange", () => {
    flash(carried ? carried.message : "", carried ? carried.ok : false);
    carried = null;
    route();
  });
  if (sessionStorage.getItem(KEY)) {
    api("GET", "/v1/project").then((p) => { document.getElementById("project-name").textContent = `project ${p.name}`; }).catch(() => {});
  }
  await route();
}

start();
