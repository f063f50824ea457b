// PACS in the console: the PACS nodes page, and on a dataset's page its AE title, the associations
// the listener took into it and its imports (start one from a labels CSV, cancel one). Loaded before
// console.js, whose helpers (el, api, all, render, tableOf, badge, flash, every, when) it calls at run time.
"use strict";

async function pacsNodesPage() {
  const name = el("input", { id: "node-name", required: true, maxlength: 100 });
  const kind = el("select", { id: "node-kind" }, el("option", { value: "dicomweb" }, "DICOMweb"), el("option", { value: "dimse" }, "DIMSE"));
  const url = el("input", { id: "node-url", placeholder: "http://pacs:8042/dicom-web" });
  const host = el("input", { id: "node-host", placeholder: "pacs.hospital" });
  const port = el("input", { id: "node-port", type: "number", min: 1, max: 65535, placeholder: "104" });
  const aet = el("input", { id: "node-ae", maxlength: 16, placeholder: "ORTHANC" });
  const token = el("input", { id: "node-token", type: "password", autocomplete: "off", placeholder: "bearer token (optional)" });
  const form = el("form", { class: "row", id: "node-form", onsubmit: async (e) => {
    e.preventDefault();
    const body = kind.value === "dicomweb"
      ? { name: name.value, kind: "dicomweb", url: url.value, auth: token.value ? { type: "bearer", token: token.value } : { type: "none" } }
      : { name: name.value, kind: "dimse", host: host.value, port: Number(port.value), ae_title: aet.value };
    try {
      await api("POST", "/v1/pacs-nodes", { json: body });
      flash(`PACS node ${body.name} added.`, true);
      token.value = "";
      load();
    } catch (err) { flash(`PACS node refused: ${err.message}`); }
  } }, el("label", {}, "Name", name), el("label", {}, "Kind", kind), el("label", {}, "DICOMweb URL", url),
  el("label", {}, "Host", host), el("label", {}, "Port", port), el("label", {}, "AE title", aet),
  el("label", {}, "Token", token), el("button", { type: "submit" }, "Add PACS node"));
  const list = el("div", { id: "nodes" }, el("p", { class: "muted" }, "Loading…"));
  const load = async () => {
    const rows = await all("/v1/pacs-nodes", 100);
    list.replaceChildren(rows.length ? tableOf(["Name", "Kind", "Address", "AE title", "Auth", "Id"], rows.map((n) => [
      n.name, n.kind, n.url || `${n.host}:${n.port}`, n.ae_title || "", n.auth_type, el("code", {}, n.id)]))
      : el("p", { class: "muted" }, "No PACS node yet."));
  };
  render("PACS nodes",
    el("section", { class: "card" }, el("h2", {}, "New PACS node"),
      el("p", { class: "muted" }, "Where imports pull studies from. Credentials are stored encrypted and never shown again."), form),
    el("section", { class: "card" }, el("h2", {}, "PACS nodes"), list));
  await load();
}

function importsTable(ds, rows, reload) {
  const cancel = (imp) => el("button", { type: "button", class: "link", onclick: async () => {
    try { await api("POST", `/v1/datasets/${ds.id}/imports/${imp.id}/cancel`); reload(); } catch (err) { flash(err.message); }
  } }, "Cancel");
  return rows.length ? tableOf(["Import", "Status", "Studies done", "Not found", "Failed", "Instances", "Queued", "Duplicates", "Rejected", "Started", ""],
    rows.map((i) => [el("code", {}, i.id), badge(i.status), `${i.progress.studies_done}/${i.progress.studies_total}`,
      i.progress.studies_not_found, i.progress.studies_failed, i.progress.instances, i.progress.queued, i.progress.duplicates,
      i.progress.rejected, when(i.created_at), ["queued", "running"].includes(i.status) ? cancel(i) : ""]))
    : el("p", { class: "muted" }, "No import yet.");
}

function pacsCard(ds) {
  const imports = el("div", { id: "imports" });
  const associations = el("div", { id: "associations" });
  const node = el("select", { id: "import-node", required: true });
  const csv = el("input", { id: "import-labels", type: "file", accept: ".csv,text/csv", required: true });
  const load = async () => {
    const [nodes, imps, assocs] = await Promise.all([all("/v1/pacs-nodes", 100), all(`/v1/datasets/${ds.id}/imports`, 50),
      all(`/v1/datasets/${ds.id}/associations`, 50)]);
    if (!node.options.length) node.replaceChildren(...nodes.map((n) => el("option", { value: n.id }, `${n.name} (${n.kind})`)));
    imports.replaceChildren(importsTable(ds, imps, load));
    associations.replaceChildren(assocs.length ? tableOf(["Calling AE", "Status", "Received", "Queued", "Duplicates", "Rejected", "Started"],
      assocs.map((a) => [a.calling_ae_title, badge(a.status), a.received, a.queued, a.duplicates, a.rejected, when(a.created_at)]))
      : el("p", { class: "muted" }, "No association yet."));
    return imps;
  };
  const form = el("form", { class: "row", id: "import-form", onsubmit: async (e) => {
    e.preventDefault();
    const body = new FormData();
    body.append("node_id", node.value);
    body.append("labels", csv.files[0]);
    try {
      const imp = await api("POST", `/v1/datasets/${ds.id}/imports`, { form: body });
      flash(`Import ${imp.id} started: ${imp.progress.studies_total} studies.`, true);
      load();
    } catch (err) { flash(`Import refused: ${err.message}`); }
  } }, el("label", {}, "PACS node", node), el("label", {}, "Labels CSV", csv), el("button", { type: "submit" }, "Import from the PACS"));
  let running = true;
  every(2000, async () => { if (running) running = (await load().catch(() => [])).some((i) => ["queued", "running"].includes(i.status)); });
  load().catch(() => {});
  return el("section", { class: "card", id: "pacs" }, el("h2", {}, "PACS"),
    el("p", {}, ds.dicom_ae_title ? ["A PACS sends to AE title ", el("code", {}, ds.dicom_ae_title), "."] : "No AE title: a PACS cannot send to this dataset."),
    el("h3", {}, "Import a labels CSV's studies"), form, imports, el("h3", {}, "Associations"), associations);
}
