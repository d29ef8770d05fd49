// Videos panel: drop or choose a video -> POST /v1/jobs (multipart, with the page's task and overlay style) with
// upload progress -> the job's progress from GET /v1/jobs -> play its overlay.mp4 in the page, download its archive.
// Downloads go through fetch with the key's headers (a <video src> or <a href> could not send them).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const api = window.m2f.api;
  const el = {
    drop: $("drop"), file: $("file"), progress: $("upload-progress"), status: $("upload-status"),
    video: $("job-video"), jobs: $("jobs"),
  };
  const ACTIVE = new Set(["queued", "running"]);
  const POLL_MS = 700;
  const view = { jobs: [], playing: null, pollTimer: null, objectUrl: null };
  window.m2f.jobs = view;

  function setStatus(text, isError = false) {
    el.status.textContent = text;
    el.status.classList.toggle("error", isError);
  }

  function detail(xhrOrBody, status) {
    try {
      const body = typeof xhrOrBody === "string" ? JSON.parse(xhrOrBody) : xhrOrBody;
      return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) {
      return `HTTP ${status}`;
    }
  }

  // XMLHttpRequest, not fetch: only it reports upload progress
  function upload(file) {
    const form = new FormData();
    const style = api.overlayStyle();
    form.append("file", file, file.name);
    form.append("task", api.task());
    form.append("legend", style.legend);
    form.append("labels", String(style.labels));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/jobs");
    for (const [k, v] of Object.entries(api.headers())) xhr.setRequestHeader(k, v);
    el.progress.hidden = false;
    el.progress.value = 0;
    setStatus(`uploading ${file.name}…`);
    xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) el.progress.value = ev.loaded / ev.total; };
    xhr.onload = () => {
      el.progress.hidden = true;
      if (xhr.status !== 202) {
        setStatus(`upload refused (${xhr.status}): ${detail(xhr.responseText, xhr.status)}`, true);
        return;
      }
      const job = JSON.parse(xhr.responseText);
      setStatus(`${file.name}: job ${job.id} ${job.state}`);
      refresh();
    };
    xhr.onerror = () => { el.progress.hidden = true; setStatus("upload failed: is the server up?", true); };
    xhr.send(form);
  }

  async function refresh() {
    const resp = await fetch("/v1/jobs", { headers: api.headers() });
    if (!resp.ok) {
      if (resp.status !== 401) setStatus(`GET /v1/jobs: ${detail(await resp.json(), resp.status)}`, true);
      return;
    }
    view.jobs = (await resp.json()).jobs;
    render();
    const active = view.jobs.some((j) => ACTIVE.has(j.state));
    if (active && !view.pollTimer) view.pollTimer = setInterval(refresh, POLL_MS);
    if (!active && view.pollTimer) { clearInterval(view.pollTimer); view.pollTimer = null; }
  }

  function button(text, onClick, title = "") {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.title = title;
    b.addEventListener("click", onClick);
    return b;
  }

  function cell(text, className = "") {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function render() {
    const rows = view.jobs.slice().reverse().map((job) => {
      const tr = document.createElement("tr");
      tr.dataset.id = job.id;
      tr.dataset.state = job.state;
      const pct = `${Math.round(100 * job.progress)}%` + (job.state === "running" && job.eta_s != null ? ` · ${Math.round(job.eta_s)} s left` : "");
      const state = job.error ? `${job.state}: ${job.error}` : job.message ? `${job.state} (${job.message})` : job.state;
      const actions = document.createElement("td");
      if (job.state === "succeeded") {
        if (job.results.includes("overlay.mp4")) actions.append(button("Play", () => play(job), "play the overlay here"));
        actions.append(button("Download", () => download(job), "every result file as one ZIP"));
      }
      actions.append(button(ACTIVE.has(job.state) ? "Cancel" : "Delete", () => remove(job)));
      tr.append(cell(job.filename), cell(job.task), cell(state, "state"), cell(pct, "progress"), actions);
      return tr;
    });
    el.jobs.replaceChildren(...rows);
  }

  async function blobOf(url) {
    const resp = await fetch(url, { headers: api.headers() });
    if (!resp.ok) throw new Error(detail(await resp.json(), resp.status));
    return resp.blob();
  }

  async function play(job) {
    try {
      const blob = await blobOf(`/v1/jobs/${job.id}/results/overlay.mp4`);
      if (view.objectUrl) URL.revokeObjectURL(view.objectUrl);
      view.objectUrl = URL.createObjectURL(blob);
      view.playing = job.id;
      el.video.src = view.objectUrl;
      el.video.hidden = false;
      setStatus(`playing the overlay of ${job.filename} (job ${job.id})`);
      await el.video.play().catch(() => {});
    } catch (err) {
      setStatus(`cannot play job ${job.id}: ${err.message}`, true);
    }
  }

  async function download(job) {
    try {
      const url = URL.createObjectURL(await blobOf(`/v1/jobs/${job.id}/archive`));
      const a = document.createElement("a");
      a.href = url;
      a.download = `${job.id}-results.zip`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      setStatus(`cannot download job ${job.id}: ${err.message}`, true);
    }
  }

  async function remove(job) {
    const resp = await fetch(`/v1/jobs/${job.id}`, { method: "DELETE", headers: api.headers() });
    if (!resp.ok && resp.status !== 404) setStatus(`cannot delete job ${job.id}: HTTP ${resp.status}`, true);
    if (view.playing === job.id) { el.video.removeAttribute("src"); el.video.hidden = true; view.playing = null; }
    refresh();
  }

  el.file.addEventListener("change", () => { if (el.file.files.length) upload(el.file.files[0]); el.file.value = ""; });
  el.drop.addEventListener("dragover", (ev) => { ev.preventDefault(); el.drop.classList.add("over"); });
  el.drop.addEventListener("dragleave", () => el.drop.classList.remove("over"));
  el.drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    el.drop.classList.remove("over");
    const file = ev.dataTransfer && ev.dataTransfer.files[0];
    if (file) upload(file);
  });
  window.addEventListener("m2f-api-key", refresh);
  refresh();
})();
