// noisecraft studio: plain JavaScript, no libraries; every request goes to the local JSON API (server.py).
"use strict";
const $ = (id) => document.getElementById(id);
let RUNS = [];
const CURRENT = { job: null, editJob: null, image: null, imageB: null, res: 0 };

function say(text, kind) {
  const m = $("message");
  m.textContent = text || "";
  m.className = kind || "";
  m.hidden = !text;
}

async function api(method, path, body) {
  let r;
  try {
    r = await fetch(path, { method, headers: { "Content-Type": "application/json" },
                            body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new Error("the studio server does not answer (is `noisecraft ui` still running?)");
  }
  let data;
  try { data = await r.json(); } catch (e) { throw new Error(`the server sent no JSON (HTTP ${r.status})`); }
  if (!r.ok || data.error) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

// Poll a job until it ends; onStep(job) sees progress and previews. Resolves with the result.
async function waitJob(id, onStep) {
  for (;;) {
    const j = await api("GET", `/api/job?id=${id}`);
    onStep(j);
    if (j.status === "done") return j.result;
    if (j.status === "error") throw new Error(j.error);
    if (j.status === "cancelled") throw new Error("cancelled");
    await new Promise((r) => setTimeout(r, 100));
  }
}

function progress(bar, text) {
  return (j) => {
    bar.max = Math.max(1, j.total); bar.value = j.done;
    if (text) text.textContent = j.status === "queued" ? `queued (${j.queue_position} ahead)` : `${j.done}/${j.total} steps`;
  };
}

function val(id) { const v = $(id).value.trim(); return v === "" ? null : v; }
function run() { return $("run").value || null; }

function isText() { const r = RUNS.find((x) => x.path === run()); return !!(r && r.text); }

function settings() {
  const text = isText();  // a text run takes a prompt; a class or classifier is not sent (nor is a prompt otherwise)
  return {
    prompt: text ? $("prompt").value : null, negative_prompt: text ? $("negative-prompt").value : null,
    run: run(), sampler: $("sampler").value, schedule: $("schedule").value || null, steps: val("steps"),
    seed: val("seed"), num: val("num"), batch_size: val("batch"), class: text ? null : val("class"),
    cfg: val("cfg"), cfg_interval: val("cfg-interval"), cfg_rescale: val("cfg-rescale"),
    classifier: text ? null : $("classifier").value || null,
    classifier_scale: val("classifier-scale"), clip_x0: val("clip-x0"), raw: $("raw").checked,
  };
}

// ---- runs ------------------------------------------------------------------------------------------------
async function loadRuns(extra) {
  const d = await api("GET", "/api/runs" + (extra ? "?extra=" + encodeURIComponent(extra) : ""));
  RUNS = d.runs;
  const sel = $("run"), keep = extra || sel.value;
  sel.innerHTML = "";
  const body = $("runs-table").querySelector("tbody");
  body.innerHTML = "";
  for (const r of RUNS) {
    const cond = r.text ? `text (${r.text})` : r.classes ? r.classes + " classes" : "";
    sel.add(new Option(`${r.name} (${r.size}${cond ? ", " + cond : ""})`, r.path));
    const tr = body.insertRow();
    tr.dataset.path = r.path;
    for (const v of [r.name, r.data, r.size, r.arch || r.kind, cond || "-", r.steps ?? "-",
                     r.weights_mb == null ? "-" : r.weights_mb + " MB"]) tr.insertCell().textContent = v;
    const c = tr.insertCell();
    if (r.grid) { const im = new Image(); im.src = r.grid; c.append(im); }
    tr.onclick = () => { sel.value = r.path; onRun(); };
  }
  if (keep && RUNS.some((r) => r.path === keep)) sel.value = keep;
  $("no-runs").hidden = RUNS.length > 0;
  const clf = $("classifier");
  clf.length = 1;
  for (const c of d.classifiers) clf.add(new Option(c, c));
  onRun();
}

function onRun() {
  const r = RUNS.find((x) => x.path === run());
  for (const tr of $("runs-table").querySelectorAll("tbody tr")) tr.classList.toggle("selected", tr.dataset.path === run());
  document.querySelector("fieldset.cond").hidden = false;
  const text = !!(r && r.text);
  document.querySelector("fieldset.prompt").hidden = !text;
  for (const el of document.querySelectorAll(".class-only")) el.hidden = text;
  $("class").placeholder = r && r.classes ? `0..${r.classes - 1}` : "none (unconditional)";
  CURRENT.image = null; CURRENT.imageB = null;
  $("edit-input").removeAttribute("src");
}

// ---- generate ----------------------------------------------------------------------------------------
async function generate() {
  say("");
  const out = $("images");
  try {
    const { job } = await api("POST", "/api/generate", settings());
    CURRENT.job = job;
    const res = await waitJob(job, (j) => {
      progress($("progress"), $("progress-text"))(j);
      if (j.preview) $("preview").src = j.preview;
    });
    out.innerHTML = "";
    res.images.forEach((src, i) => {
      const im = new Image(); im.src = src; im.className = "sample"; im.dataset.seed = res.seeds[0] + i;
      im.title = `seed ${res.seeds[0] + i}`; out.append(im);
    });
    if (!res.images.length) { const im = new Image(); im.src = res.grid; im.className = "points"; out.append(im); }
    $("preview").src = res.grid;
    if (res.trajectory) $("trajectory").src = res.trajectory;
    $("download").href = res.grid; $("download").hidden = false;
    $("command").textContent = res.command;
    $("progress-text").textContent = `done in ${res.seconds} s`;
    if (res.message) say(res.message, "info");
    out.dataset.done = String(job);
  } catch (e) { say(e.message); }
}

async function cancel(which) {
  const id = CURRENT[which];
  if (id) await api("POST", "/api/cancel", { id }).catch((e) => say(e.message));
}

// ---- compare -----------------------------------------------------------------------------------------
async function compare() {
  say("");
  try {
    const body = { ...settings(), x_axis: $("x-axis").value || null, x_values: val("x-values"),
                   y_axis: $("y-axis").value || null, y_values: val("y-values") };
    const { job } = await api("POST", "/api/compare", body);
    CURRENT.job = job;
    const res = await waitJob(job, progress($("compare-progress")));
    const t = $("compare-grid");
    t.innerHTML = "";
    const head = t.insertRow();
    head.insertCell().textContent = `${res.y_axis || ""} \\ ${res.x_axis || ""}`;
    for (const x of res.x_values) head.insertCell().textContent = x ?? "";
    res.cells.forEach((row, i) => {
      const tr = t.insertRow();
      tr.insertCell().textContent = res.y_values[i] ?? "";
      for (const src of row) { const im = new Image(); im.src = src; tr.insertCell().append(im); }
    });
    t.dataset.done = String(job);
  } catch (e) { say(e.message); }
}

// ---- edit ----------------------------------------------------------------------------------------------
function readFile(input) {
  return new Promise((resolve, reject) => {
    const f = input.files[0];
    if (!f) return resolve(null);
    if (f.size > 12e6) return reject(new Error(`${f.name} is ${(f.size / 1e6).toFixed(0)} MB; the studio takes images up to 12 MB`));
    const fr = new FileReader();
    fr.onload = () => resolve({ url: fr.result, name: f.name });
    fr.onerror = () => reject(new Error(`cannot read ${f.name}`));
    fr.readAsDataURL(f);
  });
}

async function prepare(input, key) {
  say("");
  try {
    const f = await readFile(input);
    if (!f) return;
    const d = await api("POST", "/api/prepare", { run: run(), image: f.url, name: f.name });
    CURRENT[key] = d.image;
    if (key === "image") {
      $("edit-input").src = d.image;
      const c = $("mask-canvas");
      c.width = c.height = CURRENT.res = d.resolution;
      $("edit-info").textContent = d.message;
    }
    say(d.message, "info");
  } catch (e) { CURRENT[key] = null; say(e.message); }
}

function paintAt(ev) {
  const c = $("mask-canvas"), r = c.getBoundingClientRect();
  if (!CURRENT.res) return;
  const x = Math.floor(((ev.clientX - r.left) / r.width) * c.width);
  const y = Math.floor(((ev.clientY - r.top) / r.height) * c.height);
  const b = Math.max(1, Number($("brush").value) || 1), ctx = c.getContext("2d");
  ctx.fillStyle = "rgb(255,0,0)";
  ctx.fillRect(x - Math.floor((b - 1) / 2), y - Math.floor((b - 1) / 2), b, b);
}

// The painted canvas as a mask PNG at the model's resolution: white = generate, black = keep.
function maskPNG() {
  const c = $("mask-canvas");
  if (!c.width) return null;
  const src = c.getContext("2d").getImageData(0, 0, c.width, c.height);
  const out = document.createElement("canvas");
  out.width = c.width; out.height = c.height;
  const ctx = out.getContext("2d"), img = ctx.createImageData(c.width, c.height);
  for (let i = 0; i < src.data.length; i += 4) {
    const v = src.data[i + 3] > 0 ? 255 : 0;
    img.data[i] = img.data[i + 1] = img.data[i + 2] = v; img.data[i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return out.toDataURL("image/png");
}

async function edit() {
  say("");
  try {
    if (!CURRENT.image) throw new Error("upload an image first");
    const mode = $("edit-mode").value;
    const body = { ...settings(), mode, image: CURRENT.image, image_b: CURRENT.imageB, strength: val("strength"),
                   num: val("edit-num"), method: $("method").value, rect: val("rect"),
                   mask: mode === "inpaint" && !val("rect") ? maskPNG() : null, iters: val("iters"),
                   frames: val("frames"), source: val("source"), target: val("target"), guidance: val("guidance"),
                   class: val("edit-class") };
    if (mode === "interpolate" && !CURRENT.imageB) throw new Error("interpolation needs a second image");
    const { job } = await api("POST", "/api/edit", body);
    CURRENT.editJob = job;
    const res = await waitJob(job, (j) => {
      progress($("edit-progress"))(j);
      if (j.preview) $("edit-preview").src = j.preview;
    });
    const out = $("edit-result");
    out.innerHTML = "";
    for (const src of res.images) { const im = new Image(); im.src = src; im.className = "edited"; out.append(im); }
    $("edit-grid").src = res.grid;
    $("edit-message").textContent = res.message;
    $("edit-command").textContent = res.command;
    $("dl-input").href = CURRENT.image;
    const extra = $("dl-extra");
    extra.innerHTML = "";
    const link = (href, name) => { const a = document.createElement("a"); a.href = href; a.download = name; a.textContent = name; extra.append(", ", a); };
    if (mode === "interpolate") link(CURRENT.imageB, "input_b.png");
    if (body.mask) link(body.mask, "mask.png");
    out.dataset.done = String(job);
  } catch (e) { say(e.message); }
}

function onMode() {
  const m = $("edit-mode").value;
  for (const el of document.querySelectorAll("#tab-edit [class*='m-']")) el.hidden = !el.classList.contains("m-" + m);
  $("mask-canvas").style.display = m === "inpaint" ? "" : "none";
  if (m === "swap" && $("guidance").value === "1") $("guidance").value = "2";
}

// ---- learn ---------------------------------------------------------------------------------------------
async function learnForward() {
  say("");
  try {
    const f = await readFile($("learn-file"));
    if (!f) throw new Error("choose an image first");
    const d = await api("POST", "/api/learn/forward", { image: f.url, sigmas: val("learn-sigmas"),
                                                         resolution: val("learn-res"), channels: 3, seed: 0 });
    $("forward-strip").src = d.strip;
  } catch (e) { say(e.message); }
}

async function plot(path, target, body) {
  say("");
  try { $(target).src = (await api(body ? "POST" : "GET", path, body)).plot; } catch (e) { say(e.message); }
}

// ---- wiring --------------------------------------------------------------------------------------------
async function init() {
  for (const b of document.querySelectorAll(".tab")) {
    b.onclick = () => {
      for (const x of document.querySelectorAll(".tab")) x.classList.toggle("active", x === b);
      for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== "tab-" + b.dataset.tab;
    };
  }
  const info = await api("GET", "/api/info");
  $("device").textContent = `device: ${info.device} · runs: ${info.runs_dir}`;
  for (const [name, text] of Object.entries(info.samplers)) $("sampler").add(new Option(name, name));
  $("sampler").value = "unipc";
  for (const [name, text] of Object.entries(info.schedules)) { const o = new Option(name, name); o.title = text; $("schedule").add(o); }
  for (const m of info.edit_modes) $("edit-mode").add(new Option(m, m));
  for (const id of ["x-axis", "y-axis"]) {
    $(id).add(new Option("(none)", ""));
    for (const a of info.axes) $(id).add(new Option(a, a));
  }
  $("x-axis").value = "sampler"; $("y-axis").value = "steps";
  $("run").onchange = onRun;
  $("add-path").onclick = () => loadRuns(val("run-path")).catch((e) => say(e.message));
  $("random-seed").onclick = () => { $("seed").value = String(Math.floor(Math.random() * 2 ** 31)); };
  $("generate").onclick = generate;
  $("cancel").onclick = () => cancel("job");
  $("compare-run").onclick = compare;
  $("edit-file").onchange = () => prepare($("edit-file"), "image");
  $("edit-file-b").onchange = () => prepare($("edit-file-b"), "imageB");
  $("edit-mode").onchange = onMode;
  $("strength").oninput = () => { $("strength-value").textContent = $("strength").value; };
  $("clear-mask").onclick = () => { const c = $("mask-canvas"); c.getContext("2d").clearRect(0, 0, c.width, c.height); };
  const c = $("mask-canvas");
  let down = false;
  c.onpointerdown = (e) => { down = true; paintAt(e); };
  c.onpointermove = (e) => { if (down) paintAt(e); };
  window.addEventListener("pointerup", () => { down = false; });
  $("edit-run").onclick = edit;
  $("edit-cancel").onclick = () => cancel("editJob");
  $("learn-forward").onclick = learnForward;
  $("learn-schedules").onclick = () => plot("/api/learn/schedules", "schedules-plot");
  $("learn-score").onclick = () => plot("/api/learn/score", "score-plot", { toy: $("score-toy").value, sigma: val("score-sigma") });
  onMode();
  await loadRuns();
  document.body.dataset.ready = "1";
}
init().catch((e) => say(e.message));
