// cnnkit studio: plain JavaScript, no libraries, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { source: null, sourceLabel: "", run: null, runHasCheckpoint: false, job: null, stream: null, info: null,
                history: [], live: null, phases: [] };
const SOURCE_KEY = "cnnkit-studio-source";  // the chosen data survives a reload (this browser only)

// ------------------------------------------------------------------ helpers
// the server wrote this process's session token into the page; only this page's script can read it
const TOKEN = (document.querySelector("meta[name=cnnkit-token]") || {}).content || "";
async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...(options.headers || {}), "X-Cnnkit-Token": TOKEN } });
  const type = res.headers.get("content-type") || "";
  const body = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) throw new Error((body && body.detail) || `${res.status} ${res.statusText}`);
  return body;
}
const postJSON = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                             body: JSON.stringify(body || {}) });
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);
const num = (x, d = 4) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
function showError(err) {
  const box = $("error");
  box.textContent = err ? String(err.message || err) : "";
  box.hidden = !err;
}
const runUrl = (suffix = "") => `/api/runs/${encodeURIComponent(state.run)}${suffix}`;

const secs = (x) => (x < 90 ? `${Math.max(0, Math.round(x))} s` : `${Math.floor(x / 60)} min ${Math.round(x % 60)} s`);

// ------------------------------------------------------------------ tabs
function showTab(name, focus) {
  for (const b of document.querySelectorAll("#tabs button")) {
    const on = b.dataset.tab === name;
    b.classList.toggle("active", on);
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
    if (on && focus) b.focus();
  }
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== `tab-${name}`;
  if (name === "runs") loadRuns();
}
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
$("tabs").addEventListener("keydown", (e) => {  // the arrow keys move between tabs (WAI-ARIA tabs pattern)
  const tabs = [...document.querySelectorAll("#tabs button")];
  const i = tabs.findIndex((b) => b.getAttribute("aria-selected") === "true");
  const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
  if (next === undefined) return;
  e.preventDefault();
  showTab(tabs[(next + tabs.length) % tabs.length].dataset.tab, true);
});

// ------------------------------------------------------------------ 1. data
async function browseTo(path) {
  try {
    const listing = await api(`/api/browse?path=${encodeURIComponent(path)}`);
    const crumbs = $("crumbs");
    crumbs.replaceChildren(el("button", { class: "link", onclick: () => browseTo("") }, state.info ? state.info.root : "root"));
    let acc = "";
    for (const part of listing.path ? listing.path.split("/") : []) {
      acc = acc ? `${acc}/${part}` : part;
      const target = acc;
      crumbs.append(" / ", el("button", { class: "link", onclick: () => browseTo(target) }, part));
    }
    const list = $("folders");
    list.replaceChildren();
    for (const f of listing.folders) {
      const what = f.images ? `${f.images} images` : f.folders ? `${f.folders} folders` : "empty";
      list.append(el("li", {},
        el("button", { class: "link", onclick: () => browseTo(f.path) }, `${f.name}/`),
        el("span", { class: "muted" }, ` ${what} `),
        f.dataset === false ? el("span", { class: "muted" }, "(uploaded datasets: open it to choose one)")
          : el("button", { class: "small", dataset: { path: f.path }, onclick: () => chooseFolder(f.path),
                           "aria-label": `use ${f.path} as the data` }, "use")));
    }
    if (!listing.folders.length) list.append(el("li", { class: "muted" }, "no sub-folders"));
    const out = listing.left_out || [];
    $("left-out").hidden = !out.length;
    $("left-out").textContent = out.length ? `Left out: ${out.map((o) => o.name).join(", ")} (links that lead outside the studio folder)` : "";
    $("folder-path").value = listing.path;
  } catch (err) { showError(err); }
}

function chooseFolder(path) { choose({ kind: "folder", path }, path || (state.info && state.info.root)); }
function choose(source, label) {
  state.source = source;
  state.sourceLabel = label;
  $("train-source").textContent = label;
  try { localStorage.setItem(SOURCE_KEY, JSON.stringify({ source, label })); } catch (err) { /* private mode */ }
  inspect();
}
function restoreSource() {
  // a reload keeps the data chosen before it (checked again by inspecting it)
  try {
    const saved = JSON.parse(localStorage.getItem(SOURCE_KEY) || "null");
    if (saved && saved.source && typeof saved.label === "string") choose(saved.source, saved.label);
  } catch (err) { /* nothing saved */ }
}

async function inspect() {
  showError(null);
  $("inspection").hidden = false;
  $("source-label").textContent = state.sourceLabel;
  $("inspect-status").textContent = "Reading every image…";
  $("inspection").dataset.state = "loading";
  for (const id of ["counts", "problems", "near-dups"]) $(id).replaceChildren();
  for (const id of ["sizes", "train-size", "dups"]) $(id).textContent = "";
  $("samples").removeAttribute("src");
  try {
    const report = await postJSON("/api/inspect", { source: state.source });
    renderReport(report);
    const q = new URLSearchParams(state.source.kind === "named" ? { kind: "named", name: state.source.name }
                                                                : { kind: "folder", path: state.source.path });
    $("samples").src = `/api/samples.png?${q}`;
    $("inspect-status").textContent = `${report.classes.length} classes, ${Object.values(report.totals).reduce((a, b) => a + b, 0)} images`;
    $("inspection").dataset.state = "done";
  } catch (err) {
    $("inspect-status").textContent = "";
    $("inspection").dataset.state = "error";
    if (/no such|not a folder|outside/.test(err.message)) forgetSource();
    showError(err);
  }
}
function forgetSource() {
  state.source = null;
  $("train-source").textContent = "none chosen yet";
  try { localStorage.removeItem(SOURCE_KEY); } catch (err) { /* private mode */ }
}

function renderReport(r) {
  const splits = Object.keys(r.counts);
  const table = $("counts");
  table.append(el("tr", {}, el("th", {}, "class"), ...splits.map((s) => el("th", {}, s))));
  for (const c of r.classes) table.append(el("tr", {}, el("td", {}, c), ...splits.map((s) => el("td", { class: "n" }, r.counts[s][c] || 0))));
  table.append(el("tr", { class: "total" }, el("td", {}, "total"), ...splits.map((s) => el("td", { class: "n" }, r.totals[s]))));
  const sz = r.sizes || {};
  $("sizes").textContent = sz.distinct ? `image sizes (H×W): ${sz.distinct} distinct, median ${sz.median_hw.join("×")}, ` +
    `from ${sz.min_hw.join("×")} to ${sz.max_hw.join("×")}` : "";
  const ts = r.training_size;
  $("train-size").textContent = ts ? `Training uses ${ts.size.join("×")} pixels (H×W): ${ts.why}. Auto, and models ` +
    "with a pretrained backbone, resize to the size they need; the run's config.json records the size used." : "";
  const dup = r.duplicates || {};
  const across = (dup.across_splits || []).length, within = dup.within_split || 0;
  $("dups").textContent = `exact duplicates (the same bytes): ${across} across splits, ${within} within a split`;
  const problems = $("problems");
  for (const w of r.warnings || []) problems.append(el("li", { class: "warn" }, w));
  for (const [file, why] of (r.unreadable || []).slice(0, 50)) problems.append(el("li", {}, el("code", {}, file), `: ${why}`));
  for (const group of ((r.duplicates || {}).across_splits || []).slice(0, 20)) problems.append(el("li", {}, "same bytes: ", group.join("  =  ")));
  if (!problems.children.length) problems.append(el("li", { class: "ok" }, "none found"));
  renderNearDuplicates(r.near_duplicates);
}

function renderNearDuplicates(near) {
  // inspect's pHash pairs across splits: [{a, a_split, b, b_split, similarity}]; shown when the report has them
  $("near-box").hidden = !Array.isArray(near);
  if ($("near-box").hidden) return;
  $("near-summary").textContent = near.length ? `${near.length} pair(s) of near-identical pictures in different splits ` +
    "(resized or re-encoded copies: evaluation scores will be optimistic)" : "";
  const list = $("near-dups");
  for (const p of near.slice(0, 20)) {
    list.append(el("li", {}, el("code", {}, p.a), ` (${p.a_split}) ≈ `, el("code", {}, p.b),
      ` (${p.b_split}), similarity ${Number(p.similarity).toFixed(3)}`));
  }
  if (!near.length) list.append(el("li", { class: "ok" }, "none found"));
}

$("use-folder").addEventListener("click", () => chooseFolder($("folder-path").value.trim()));
$("folder-path").addEventListener("keydown", (e) => { if (e.key === "Enter") chooseFolder(e.target.value.trim()); });
$("use-dataset").addEventListener("click", () => choose({ kind: "named", name: $("dataset").value }, $("dataset").value));
$("to-train").addEventListener("click", () => showTab("train"));

async function uploadZip(file) {
  if (!file) return;
  $("zip-status").textContent = `Uploading ${file.name}…`;
  const form = new FormData();
  form.append("file", file);
  try {
    const r = await api("/api/upload", { method: "POST", body: form });
    $("zip-status").textContent = `Unpacked into ${r.path}/`;
    browseTo("uploads");
    chooseFolder(r.path);
  } catch (err) { $("zip-status").textContent = ""; showError(err); }
}
$("zip").addEventListener("change", (e) => uploadZip(e.target.files[0]));
dropTarget(document.querySelector("label[for=zip]"), uploadZip);

// ------------------------------------------------------------------ 2. train
function modelChanged() {
  // auto races its candidates within the budget (its own default budget when none is given)
  const auto = $("model").value === "auto", info = state.info || {};
  $("epochs").placeholder = auto ? "chosen by auto" : String(info.default_epochs ?? "");
  $("budget").placeholder = auto ? `${info.auto_time ?? ""} (auto's default)` : "none";
  budgetNote();
}
function budgetNote() {
  // the note says the budget the run will use: the one typed, else auto's default, else none
  const auto = $("model").value === "auto", info = state.info || {}, typed = $("budget").value.trim();
  $("budget-note").textContent = typed ? (auto ? `Auto tries its candidates and trains its choice within ${typed} s.`
    : `The run stops at an epoch's end within ${typed} s.`)
    : auto ? `Auto tries its candidates and trains its choice within its default budget of ${info.auto_time ?? "?"} s.`
    : "No time limit: every epoch runs.";
}
$("model").addEventListener("change", modelChanged);
$("budget").addEventListener("input", budgetNote);
function formSettings(defaults) {
  const body = { source: state.source };
  if (!defaults) {
    // numbers go as JSON numbers (the server checks types as the CLI does); an empty field: the default
    const number = (id) => ($(id).value.trim() === "" ? null : Number($(id).value));
    body.model = $("model").value;
    body.epochs = number("epochs");
    body.augment = $("augment").value;
    body.time_budget = number("budget");
  }
  return body;
}
async function startTraining(defaults) {
  $("train-error").textContent = "";
  if (!state.source) { $("train-error").textContent = "Choose the data first (step 1)."; return; }
  try {
    const job = await postJSON("/api/jobs", formSettings(defaults));
    attach(job);
  } catch (err) { $("train-error").textContent = err.message; }
}
$("train-form").addEventListener("submit", (e) => { e.preventDefault(); startTraining(false); });
$("stop").addEventListener("click", () => stopJob(state.job.id));
async function stopJob(id) {
  try { await api(`/api/jobs/${id}/stop`, { method: "POST" }); refreshQueue(); } catch (err) { showError(err); }
}
$("resume").addEventListener("click", () => resumeRun(state.job.run));
$("job-review").addEventListener("click", () => openRun(state.job.run, "review"));

async function resumeRun(name) {
  try {
    const job = await postJSON(`/api/runs/${encodeURIComponent(name)}/resume`, {});
    attach(job);
    showTab("train");
  } catch (err) { showError(err); }
}

function attach(job) {
  // (re)attach to a job: the server replays its events from the first, so a reload rebuilds the curves
  if (state.stream) state.stream.close();
  state.job = job;
  state.history = [];
  state.live = null;
  state.phases = [];
  showPhase();
  $("job-auto").hidden = true;
  $("job-run").textContent = job.run;
  const shown = job.settings || {};  // after a reload the form shows the job's own settings
  if (shown.data && !state.source) $("train-source").textContent = shown.data;
  if (shown.model && [...$("model").options].some((o) => o.value === shown.model)) $("model").value = shown.model;
  $("epochs").value = shown.epochs || "";
  $("augment").value = shown.augment || "";
  $("budget").value = shown.time_budget || "";
  modelChanged();
  setJobState(job.state, job.message || "");
  drawCurves();
  const stream = new EventSource(`/api/jobs/${job.id}/events`);
  state.stream = stream;
  stream.onmessage = (m) => onEvent(JSON.parse(m.data));
  stream.addEventListener("end", () => { stream.close(); refreshQueue(); });
  if (job.kind === "resume") seedHistory(job);
}

async function seedHistory(job) {
  // a resumed run's earlier epochs are in its history file, not in this job's events
  try {
    const run = await api(`/api/runs/${encodeURIComponent(job.run)}`);
    if (state.job !== job) return;
    const have = new Set(state.history.map((h) => h.epoch));
    state.history = state.history.concat((run.history || []).filter((h) => !have.has(h.epoch))).sort((a, b) => a.epoch - b.epoch);
    drawCurves();
  } catch (err) { /* the run folder appears with the first epoch */ }
}

function setJobState(s, message, resumable = true) {
  const p = $("job-state");
  p.dataset.state = s;
  const words = { queued: "Waiting in the queue", running: "Training", stopping: "Stopping at the next step…",
                  done: "Finished", stopped: "Stopped", cancelled: "Cancelled", error: "Failed" };
  p.textContent = `${words[s] || s}${message && !["running", "queued"].includes(s) ? `: ${message}` : ""}`;
  p.classList.toggle("err", s === "error");
  $("stop").hidden = !["queued", "running"].includes(s);
  $("stop").textContent = s === "queued" ? "Cancel" : "Stop";
  $("resume").hidden = s !== "stopped" || !resumable;
  $("job-review").hidden = s !== "done";
}

// ------------------------------------------------------------------ phases (decoding, feature pass, evaluation, report)
function onPhase(e) {
  // a stack by depth: the innermost running phase is shown, with a bar and the time left
  state.phases = state.phases.filter((p) => p.depth < e.depth || (p.depth === e.depth && p.name === e.name && e.kind !== "end"));
  if (e.kind !== "end") {
    e.received = performance.now() / 1000;  // the page counts the seconds between events itself
    const i = state.phases.findIndex((p) => p.depth === e.depth);
    if (i >= 0) state.phases[i] = e; else state.phases.push(e);
  }
  showPhase();
}
const replaying = (p) => !["running", "stopping"].includes($("job-state").dataset.state) || p.received === undefined;
setInterval(() => { if (state.phases.length) showPhase(); }, 1000);
function showPhase() {
  const p = state.phases[state.phases.length - 1];
  $("phase").hidden = !p;
  if (!p) return;
  $("phase-name").textContent = p.name;
  const known = p.total !== null && p.total !== undefined && p.total > 0;
  const frac = known ? Math.min(1, p.done / p.total) : null;
  $("phase-count").textContent = known ? `${p.done}/${p.total} ${p.unit}` : p.done ? `${p.done} ${p.unit}` : "";
  const since = replaying(p) ? 0 : performance.now() / 1000 - p.received;
  $("phase-left").textContent = p.eta !== null && p.eta !== undefined && p.kind !== "start" ? `· about ${secs(p.eta - since)} left`
    : `· ${secs((p.elapsed || 0) + since)} so far`;
  $("phase-bar").classList.toggle("busy", !known);
  $("phase-progress").style.width = known ? `${(100 * frac).toFixed(1)}%` : "30%";
  if (known) $("phase-bar").setAttribute("aria-valuenow", String(Math.round(100 * frac)));
  else $("phase-bar").removeAttribute("aria-valuenow");
}

function onEvent(e) {
  const job = state.job;
  switch (e.type) {
    case "queued":
      setJobState("queued");
      $("job-detail").textContent = `position ${e.position} in the queue`;
      break;
    case "running": setJobState("running"); $("job-detail").textContent = "preparing the data and the model…"; break;
    case "phase": onPhase(e); break;
    case "begin":
      job.epochs = e.epochs; job.steps = e.steps;
      // the automatic default trains one candidate after another: each one's curves start afresh
      if ((job.settings || {}).model === "auto" && job.kind === "train") { state.history = []; state.live = null; drawCurves(); }
      break;
    case "epoch_begin":
      job.epoch = e.epoch; job.steps = e.steps;
      $("job-detail").textContent = `epoch ${e.epoch}/${e.epochs}`;
      progress(e.epoch - 1, 0);
      break;
    case "step":
      state.live = { epoch: e.epoch, loss: e.loss, acc: e.acc };
      progress(e.epoch - 1, e.step / (job.steps || 1));
      $("job-detail").textContent = `epoch ${e.epoch}/${job.epochs}, step ${e.step}/${job.steps}: loss ${num(e.loss)} acc ${num(e.acc)}`;
      drawCurves();
      break;
    case "epoch":
      state.history = state.history.filter((h) => h.epoch < e.epoch);
      state.history.push(e);
      state.live = null;
      progress(e.epoch, 0);
      $("job-detail").textContent = `epoch ${e.epoch}/${e.epochs}: loss ${num(e.loss)} acc ${num(e.acc)}` +
        (e.val_acc !== undefined && e.val_acc !== null ? `, val_loss ${num(e.val_loss)} val_acc ${num(e.val_acc)}` : "") +
        ` (${num(e.time, 1)} s)`;
      drawCurves();
      break;
    case "stopping": setJobState("stopping"); break;
    case "done":
      setJobState("done", e.metrics && e.metrics.accuracy !== undefined ?
        `${e.metrics.split} accuracy ${pct(e.metrics.accuracy)} on ${e.metrics.n} images` : e.message);
      progress(job.epochs || 1, 0, true);
      state.phases = []; showPhase();
      state.run = job.run;
      state.runHasCheckpoint = true;
      for (const id of ["review-title", "try-title"]) $(id).textContent = job.run;
      updateTry();
      showAuto($("job-auto"), job.run);
      loadRuns();
      break;
    case "stopped": case "cancelled": case "error":
      setJobState(e.type, e.message, e.resumable !== false);
      state.phases = []; showPhase();
      loadRuns();
      if (e.type === "cancelled") reattachRunning(job);
      break;
  }
  refreshQueue();
}

async function reattachRunning(cancelled) {
  // cancelling a queued job shows the job that is still training (if any), not an empty card
  try {
    const jobs = await api("/api/jobs");
    const running = jobs.find((j) => ["running", "stopping"].includes(j.state));
    if (running && state.job === cancelled) attach(running);
  } catch (err) { /* the card keeps the cancelled job */ }
}

// ------------------------------------------------------------------ what auto chose, and why
async function showAuto(box, run) {
  box.hidden = true;
  try {
    const details = await api(`/api/runs/${encodeURIComponent(run)}`);
    renderAuto(box, details.auto);
  } catch (err) { /* a run without its folder yet */ }
}
function renderAuto(box, auto) {
  box.replaceChildren();
  box.hidden = !auto;
  if (!auto) return;
  box.append(el("h3", {}, "What auto chose, and why"), el("p", { class: "auto-line" }, auto.line || "(no summary line)"));
  if (auto.reason && !(auto.line || "").includes(auto.reason)) box.append(el("p", { class: "muted" }, auto.reason));
  const rows = auto.candidates || [];
  if (!rows.length) return;
  const cols = [["name", "candidate"], ["model", "model"], ["transfer", "transfer"], ["score", "score"],
                ["cv", "cross-validated"], ["seconds", "seconds"], ["epochs", "epochs"], ["stopped", "stopped"],
                ["chosen", "chosen"]];
  const given = (v) => v !== null && v !== undefined && v !== "";
  const cell = (r, k) => {
    const v = r[k];
    if (k === "score" && given(v)) return `${Number(v).toFixed(4)}${r.score_kind ? ` ${r.score_kind}` : ""}`;
    if (k === "cv" && given(v)) return Number(v).toFixed(4);
    if (k === "seconds" && given(v)) return Number(v).toFixed(1);
    if (k === "chosen") return [true, "true", "True", "1"].includes(v) ? "✓ chosen" : "";
    return v === null || v === undefined ? "" : String(v);
  };
  const table = el("table", { class: "candidates" }, el("caption", { class: "muted" }, "the candidates auto tried"),
    el("tr", {}, ...cols.map(([, h]) => el("th", { scope: "col" }, h))));
  for (const r of rows) {
    const chosen = cell(r, "chosen") !== "";
    table.append(el("tr", { class: chosen ? "chosen" : "" }, ...cols.map(([k]) => el("td", { class: ["score", "cv", "seconds", "epochs"].includes(k) ? "n" : "" }, cell(r, k)))));
  }
  box.append(el("div", { class: "scroll" }, table));
  const notes = auto.notes || [];  // the race's decisions: what it did not try, and why
  if (notes.length) box.append(el("ul", { class: "auto-notes muted" }, ...notes.map((n) => el("li", {}, n))));
}

function progress(epochsDone, fraction, full) {
  const total = (state.job && state.job.epochs) || 1;
  const value = full ? 100 : Math.min(100, (100 * (epochsDone + fraction)) / total);
  $("job-progress").style.width = `${value}%`;
  $("job-bar").setAttribute("aria-valuenow", String(Math.round(value)));
}

let queueTimer = null;
function refreshQueue() {
  if (queueTimer) return;
  queueTimer = setTimeout(async () => {
    queueTimer = null;
    try {
      const jobs = await api("/api/jobs");
      const active = jobs.filter((j) => ["queued", "running", "stopping"].includes(j.state)).sort((a, b) => a.position - b.position);
      const list = $("queue-list");
      list.replaceChildren(...active.map((j) => el("li", { dataset: { job: j.id, state: j.state } },
        el("button", { class: "link", onclick: () => attach(j), "aria-label": `show job ${j.run}` }, j.run),
        `: ${j.state}${j.state === "queued" ? ` (#${j.position})` : ""} `,
        j.state === "queued" ? el("button", { class: "small cancel", onclick: () => stopJob(j.id) }, "cancel") : "")));
      if (!active.length) list.append(el("li", { class: "empty" }, "nothing waiting"));
      const running = active.filter((j) => j.state !== "queued").length;
      const waiting = active.length - running;
      $("queue").textContent = active.length ? `${running ? "1 training" : ""}${running && waiting ? ", " : ""}${waiting ? `${waiting} waiting` : ""}` : "";
    } catch (err) { /* the next event retries */ }
  }, 150);
}

// ------------------------------------------------------------------ curves (canvas)
const SERIES_COLOURS = { train: "#2f6fdf", validation: "#e0742b" };

// one canvas per curve the server declares (/api/info "curves"), id PREFIX-<its first key>: curve-acc, ...
function curveCanvases(box, prefix, width, height) {
  const curves = (state.info && state.info.curves) || [];
  if (box.childElementCount !== curves.length) {
    box.replaceChildren(...curves.map((c) => el("figure", {},
      el("canvas", { id: `${prefix}-${c.series[0][0]}`, width, height, dataset: { points: "0" } }),
      el("figcaption", {}, `${c.title} per epoch`))));
  }
  return curves.map((c) => [$(`${prefix}-${c.series[0][0]}`), c]);
}

function drawCurveSet(box, prefix, width, height, rows, live, total) {
  for (const [canvas, c] of curveCanvases(box, prefix, width, height)) {
    const series = c.series.map(([key, label]) => [key, label, SERIES_COLOURS[label]]);
    drawChart(canvas, rows, series, live, c.series[0][0], c.limits, total);
  }
}

function drawCurves() {
  const total = state.job && state.job.epochs;  // the x axis spans the whole run while it grows
  drawCurveSet($("curves"), "curve", 350, 220, state.history.slice(), state.live, total);
}

function drawChart(canvas, rows, series, live, liveKey, fixed, epochs) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 44, R = 10, T = 12, B = 28;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  canvas.dataset.points = rows.length;
  const values = rows.flatMap((r) => series.map(([k]) => r[k])).filter((v) => typeof v === "number" && isFinite(v));
  if (live && typeof live[liveKey] === "number") values.push(live[liveKey]);
  let [lo, hi] = fixed || (values.length ? [Math.min(0, ...values), Math.max(...values, 1e-6)] : [0, 1]);
  if (!fixed && values.length) hi *= 1.08;
  const last = rows[rows.length - 1];
  canvas.setAttribute("aria-label", last ? `${canvas.nextElementSibling ? canvas.nextElementSibling.textContent : ""}: ` +
    `${rows.length} epoch(s); last epoch ${series.map(([k, label]) => `${label} ${num(last[k], 3)}`).join(", ")}`
    : `${canvas.nextElementSibling ? canvas.nextElementSibling.textContent : "chart"}: no epochs yet`);
  const maxEpoch = Math.max(1, rows.length ? rows[rows.length - 1].epoch : 1, live ? live.epoch : 1, epochs || 1);
  const x = (ep) => L + ((W - L - R) * (ep - (maxEpoch > 1 ? 1 : 0))) / Math.max(1, maxEpoch - (maxEpoch > 1 ? 1 : 0));
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo || 1));
  ctx.strokeStyle = "#d5dbe1"; ctx.fillStyle = "#5b6672"; ctx.lineWidth = 1;
  // as many decimals as make the five tick labels differ (never "0.000" four times)
  let digits = 2;
  while (digits < 6 && new Set([0, 1, 2, 3, 4].map((i) => (lo + ((hi - lo) * i) / 4).toFixed(digits))).size < 5) digits++;
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    ctx.beginPath(); ctx.moveTo(L, y(v)); ctx.lineTo(W - R, y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(digits), 4, y(v) + 4);
  }
  const step = Math.max(1, Math.ceil(maxEpoch / 10));
  for (let ep = 1; ep <= maxEpoch; ep += step) ctx.fillText(String(ep), x(ep) - 3, H - 12);
  ctx.fillText("epoch", W - R - 30, H - 1);
  series.forEach(([key, label, color], i) => {
    const pts = rows.filter((r) => typeof r[key] === "number" && isFinite(r[key]));
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 2;
    ctx.beginPath();
    pts.forEach((r, j) => (j ? ctx.lineTo(x(r.epoch), y(r[key])) : ctx.moveTo(x(r.epoch), y(r[key]))));
    ctx.stroke();
    for (const r of pts) { ctx.beginPath(); ctx.arc(x(r.epoch), y(r[key]), 3, 0, 7); ctx.fill(); }
    ctx.fillRect(L + 10 + i * 90, T + 4, 10, 3);
    ctx.fillText(label, L + 24 + i * 90, T + 10);
  });
  if (live && typeof live[liveKey] === "number") {  // the running mean of the epoch in progress
    ctx.strokeStyle = "#2f6fdf"; ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.arc(x(live.epoch), y(live[liveKey]), 5, 0, 7); ctx.stroke(); ctx.setLineDash([]);
  }
}

// ------------------------------------------------------------------ 3. review
async function openRun(name, tab, hasCheckpoint = true) {
  state.run = name;
  state.runHasCheckpoint = hasCheckpoint;
  for (const id of ["review-title", "try-title"]) $(id).textContent = name;
  updateTry();
  if (tab) showTab(tab);
  loadReview();
}
function updateTry() {
  // Try names the run it uses, or asks for one; the downloads work only once there is a file
  const ready = Boolean(state.run && state.runHasCheckpoint);
  $("try-ask").hidden = ready;
  $("try-ask").firstChild.textContent = state.run ? `${state.run} has no checkpoint yet (it has not finished an epoch): open another from the `
    : "No run chosen yet: open one from the ";
  $("try-body").classList.toggle("disabled", !ready);
  $("try-file").disabled = !ready;
  if (!state.run) $("try-title").textContent = "(no run chosen)";
  for (const [id, suffix] of [["dl-onnx", "/download/onnx"], ["dl-ckpt", "/download/checkpoint"]]) {
    const a = $(id);
    if (ready) { a.href = runUrl(suffix); a.removeAttribute("aria-disabled"); a.tabIndex = 0; }
    else { a.removeAttribute("href"); a.setAttribute("aria-disabled", "true"); a.tabIndex = -1; }
  }
}
$("try-to-runs").addEventListener("click", () => showTab("runs"));

async function loadReview() {
  const status = $("review-status");
  $("review-body").hidden = true;
  $("review-body").dataset.state = "loading";
  status.textContent = "Evaluating the best checkpoint on the run's held-out images…";
  try {
    const run = await api(runUrl());
    renderAuto($("review-auto"), run.auto);
    const rows = run.history || [];
    drawCurveSet($("review-curves"), "review", 420, 200, rows, null);
    const ev = await api(runUrl("/evaluation"));
    $("metrics").textContent = `${run.model} on ${run.data}: ${ev.split} accuracy ${pct(ev.accuracy)} on ${ev.n} images, ` +
      `loss ${num(ev.loss)}, macro F1 ${num(ev.macro_f1, 3)}; ${run.epochs}/${run.epochs_planned} epochs (${run.state})`;
    renderConfusion(ev);
    renderPerClass(ev);
    const wrong = await api(runUrl("/most-wrong?n=16"));
    renderThumbs($("most-wrong"), wrong, true);
    status.textContent = "";
    $("review-body").hidden = false;
    $("review-body").dataset.state = "done";
  } catch (err) {
    status.textContent = "";
    $("review-body").dataset.state = "error";
    showError(err);
  }
}

function renderConfusion(ev) {
  const t = $("confusion");
  const max = Math.max(1, ...ev.confusion_matrix.flat());
  t.replaceChildren(el("caption", { class: "sr-only" }, "confusion matrix: rows are the true class, columns the predicted one"),
    el("tr", {}, el("th", { scope: "col" }, "true \\ pred"), ...ev.classes.map((c) => el("th", { scope: "col" }, c))));
  ev.confusion_matrix.forEach((row, i) => {
    t.append(el("tr", {}, el("th", { scope: "row" }, ev.classes[i]), ...row.map((n, j) => {
      const shade = n / max;
      const words = `${n} ${ev.classes[i]} image(s) predicted as ${ev.classes[j]}`;
      const cell = el("td", { class: `cell${i === j ? " diag" : ""}`, dataset: { true: i, pred: j }, title: words },
                      el("button", { onclick: () => openCell(i, j), "aria-label": `${words}: show them` }, n));
      cell.style.background = i === j ? `rgba(47,111,223,${0.12 + 0.6 * shade})` : n ? `rgba(179,38,30,${0.12 + 0.6 * shade})` : "";
      return cell;
    })));
  });
}

function renderPerClass(ev) {
  const t = $("per-class");
  t.replaceChildren(el("tr", {}, ...["class", "precision", "recall", "F1", "support"].map((h) => el("th", {}, h))));
  for (const r of ev.per_class) t.append(el("tr", {}, el("td", {}, r.class), el("td", { class: "n" }, num(r.precision, 3)),
    el("td", { class: "n" }, num(r.recall, 3)), el("td", { class: "n" }, num(r.f1, 3)), el("td", { class: "n" }, r.support)));
}

async function openCell(i, j) {
  try {
    const cell = await api(runUrl(`/cell?true=${i}&pred=${j}`));
    $("cell-title").textContent = `true ${cell.true}, predicted ${cell.pred}: ${cell.count} image(s)` +
      (cell.count > cell.images.length ? ` (first ${cell.images.length})` : "");
    renderThumbs($("cell-images"), cell.images);
    $("cell-images").dataset.cell = `${i},${j}`;
  } catch (err) { showError(err); }
}

function renderThumbs(box, items, byTrue) {
  // most-wrong is sorted by the probability given to the true class: the caption shows that one
  box.replaceChildren();
  for (const it of items) {
    const wrong = it.true !== it.pred;
    const shown = byTrue ? `p(${it.true}) ${it.prob_true.toFixed(3)}` : `p ${it.prob.toFixed(2)}`;
    const words = `image ${it.index}: true ${it.true}, predicted ${it.pred}; ${byTrue ? `probability of the true class ${it.prob_true.toFixed(3)}` : `probability ${it.prob.toFixed(2)}`}`;
    box.append(el("figure", { class: wrong ? "wrong" : "", dataset: { index: it.index } },
      el("button", { class: "thumb", onclick: () => showCam(it), "aria-label": `${words}. Show its Grad-CAM` },
        el("img", { src: runUrl(`/images/${it.index}.png`), alt: "" })),
      el("figcaption", {}, `${it.true} → ${it.pred}, ${shown}`)));
  }
  if (!items.length) box.append(el("p", { class: "muted" }, "no images"));
}

function showCam(it) {
  $("cam-view").hidden = false;
  $("cam-hint").hidden = true;
  $("cam-img").src = runUrl(`/gradcam/${it.index}.png`);
  $("cam-caption").textContent = `image ${it.index}: true ${it.true}, predicted ${it.pred} (p=${it.prob.toFixed(3)}); ` +
    "warm colours: where the evidence for the predicted class is";
}

// ------------------------------------------------------------------ 4. try and ship
function clearTry() {
  $("try-results").replaceChildren();
  for (const id of ["try-cam", "try-preview"]) { $(id).hidden = true; $(id).removeAttribute("src"); }
  $("try-caption").textContent = "";
  $("try-cam-caption").textContent = "";
}
async function classify(blob, name) {
  const status = $("try-status");
  if (!state.run || !state.runHasCheckpoint) { status.textContent = "Open a run with a checkpoint first (Runs tab)."; return; }
  status.dataset.state = "loading";
  status.textContent = `Classifying ${name}…`;
  $("try-results").replaceChildren();
  $("try-cam").hidden = true;
  const preview = $("try-preview");
  preview.src = URL.createObjectURL(blob);
  preview.hidden = false;
  $("try-caption").textContent = name;
  const form = new FormData();
  form.append("file", blob, name);
  try {
    const r = await api(runUrl("/predict?top_k=3"), { method: "POST", body: form });
    for (const t of r.top) {
      $("try-results").append(el("li", {}, el("span", { class: "cls" }, t.class),
        el("span", { class: "bar" }, el("span", { style: `width:${(100 * t.probability).toFixed(1)}%` })),
        el("span", { class: "pct" }, pct(t.probability))));
    }
    if (r.gradcam) {
      $("try-cam").src = r.gradcam.png;
      $("try-cam").hidden = false;
      $("try-cam-caption").textContent = `${r.gradcam.method} for ${r.gradcam.class}`;
    }
    status.textContent = `${r.top[0].class} (${pct(r.top[0].probability)}) in ${r.time_ms.toFixed(0)} ms`;
    status.dataset.state = "done";
  } catch (err) {
    clearTry();  // a rejected file leaves no picture or caption of the one before
    status.textContent = err.message;
    status.dataset.state = "error";
  }
}
$("try-file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) classify(f, f.name); e.target.value = ""; });
dropTarget($("drop"), (f) => classify(f, f.name));

if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  $("webcam").hidden = false;
  $("webcam").addEventListener("click", async () => {
    try {
      const video = $("video");
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
      video.hidden = false;
      $("snap").hidden = false;
    } catch (err) { showError(new Error(`webcam: ${err.message}`)); }
  });
  $("snap").addEventListener("click", () => {
    const video = $("video");
    const canvas = el("canvas", { width: video.videoWidth, height: video.videoHeight });
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((b) => classify(b, "webcam.png"), "image/png");
  });
}

function dropTarget(node, onFile) {
  node.addEventListener("dragover", (e) => { e.preventDefault(); node.classList.add("over"); });
  node.addEventListener("dragleave", () => node.classList.remove("over"));
  node.addEventListener("drop", (e) => {
    e.preventDefault();
    node.classList.remove("over");
    if (e.dataTransfer.files[0]) onFile(e.dataTransfer.files[0]);
  });
}

// ------------------------------------------------------------------ runs
async function loadRuns() {
  try {
    const runs = await api("/api/runs");
    const body = document.querySelector("#runs-table tbody");
    body.replaceChildren(...runs.map((r) => el("tr", { dataset: { run: r.name, state: r.state } },
      el("td", {}, r.has_checkpoint ? el("button", { class: "link", onclick: () => openRun(r.name, "review") }, r.name) : r.name),
      el("td", {}, r.model), el("td", {}, r.data),
      el("td", { class: "n" }, r.accuracy !== null ? `${pct(r.accuracy)} (${r.split})` : r.val_acc !== null ? `val ${pct(r.val_acc)}` : "–"),
      el("td", { class: "n" }, `${r.epochs}/${r.epochs_planned ?? "?"}`), el("td", {}, r.date), el("td", {}, r.state),
      el("td", {}, r.has_checkpoint ? el("button", { class: "small", onclick: () => openRun(r.name, "try") }, "try") : "",
        r.resumable ? el("button", { class: "small", onclick: () => resumeRun(r.name) }, "resume") : "",
        r.state === "incomplete" ? el("button", { class: "small", onclick: () => deleteRun(r.name),
                                                  "aria-label": `delete ${r.name} (it never finished an epoch)` }, "delete") : ""))));
    if (!runs.length) body.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "no runs yet")));
  } catch (err) { showError(err); }
}

async function deleteRun(name) {
  if (!confirm(`Delete ${name}? It never finished an epoch, so it holds no model.`)) return;
  try { await api(`/api/runs/${encodeURIComponent(name)}`, { method: "DELETE" }); loadRuns(); } catch (err) { showError(err); }
}

// ------------------------------------------------------------------ start
async function start() {
  try {
    const info = await api("/api/info");
    state.info = info;
    curveCanvases($("curves"), "curve", 350, 220);  // empty until a job's first epoch
    $("model").replaceChildren(...info.models.map((m) => el("option",
      { value: m, ...(m === info.default_model ? { selected: "" } : {}) }, m === "auto" ? "auto (recommended)" : m)));
    // the first choice sends nothing: the model's default, and auto keeps its feature candidates
    // (frozen features cannot be augmented, so auto races them only when no augmentation is given)
    $("augment").replaceChildren(el("option", { value: "" }, "default"), ...info.augment.map((a) => el("option", {}, a)));
    modelChanged();
    $("dataset").replaceChildren(...info.datasets.map((d) => el("option", {}, d + (info.offline_datasets.includes(d) ? "" : " (needs the files)"))));
    for (const o of $("dataset").options) o.value = o.textContent.split(" ")[0];
    $("offline-names").textContent = info.offline_datasets.join(" and ");
    $("runs-folder").textContent = `in ${info.runs}/`;
    $("runs-folder-2").textContent = info.runs;
    $("quota-note").textContent = `; all uploads together may unpack to ${(info.upload_quota_bytes / 1024 ** 3).toFixed(3).replace(/\.?0+$/, "")} GiB`;
    updateTry();
    browseTo("");
    restoreSource();
    loadRuns();
    const jobs = await api("/api/jobs");  // a reload reattaches to the job in progress (or the latest)
    const active = jobs.filter((j) => ["running", "stopping", "queued"].includes(j.state));
    const pick = active.find((j) => j.state !== "queued") || active[0] || jobs[jobs.length - 1];
    if (pick) { attach(pick); if (active.length) showTab("train"); }
    refreshQueue();
  } catch (err) { showError(err); }
}
start();
