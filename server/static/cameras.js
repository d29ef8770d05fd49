// Cameras panel: test a camera URL once (POST /v1/streams/test), add it with the page's task (POST /v1/streams),
// see each camera's state and failure reason (GET /v1/streams), watch its live results (WS /v1/streams/{id}/results:
// the overlay JPEG of each result, the legend marks its classes) and remove it (DELETE /v1/streams/{id}).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const api = window.m2f.api;
  const el = {
    form: $("camera-form"), url: $("camera-url"), test: $("camera-test"), status: $("camera-status"),
    view: $("camera-view"), list: $("cameras"),
  };
  const SETTLED = new Set(["failed", "stopped"]);
  const POLL_MS = 700;
  const cams = { streams: [], watching: null, ws: null, results: 0, pollTimer: null };
  window.m2f.cameras = cams;

  function setStatus(text, isError = false) {
    el.status.textContent = text;
    el.status.classList.toggle("error", isError);
  }

  async function call(method, url, body) {
    const headers = { ...api.headers(), ...(body ? { "content-type": "application/json" } : {}) };
    const resp = await fetch(url, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const data = resp.status === 204 ? null : await resp.json().catch(() => null);
    if (!resp.ok) {
      const why = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : "";
      throw new Error(`HTTP ${resp.status}${why ? `: ${why}` : ""}`);
    }
    return data;
  }

  async function refresh() {
    try {
      cams.streams = (await call("GET", "/v1/streams")).streams;
    } catch (err) {
      if (!String(err.message).startsWith("HTTP 401")) setStatus(`GET /v1/streams: ${err.message}`, true);
      return;
    }
    render();
    const changing = cams.streams.some((s) => !SETTLED.has(s.state) && s.state !== "running");
    if (changing && !cams.pollTimer) cams.pollTimer = setInterval(refresh, POLL_MS);
    if (!changing && cams.pollTimer) { clearInterval(cams.pollTimer); cams.pollTimer = null; }
  }

  function cell(text, className = "") {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function button(text, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  function render() {
    el.list.replaceChildren(...cams.streams.map((s) => {
      const tr = document.createElement("tr");
      tr.dataset.id = s.id;
      tr.dataset.state = s.state;
      const actions = document.createElement("td");
      if (s.state !== "failed") actions.append(button(cams.watching === s.id ? "Stop watching" : "Watch", () => toggleWatch(s)));
      actions.append(button("Remove", () => remove(s)));
      const counters = s.state === "running" ? ` · ${s.processed} frames` : "";
      tr.append(cell(s.url), cell(s.task), cell(s.state + counters, "state"), cell(s.last_error || "", "reason"), actions);
      return tr;
    }));
  }

  async function test() {
    const url = el.url.value.trim();
    if (!url) return;
    setStatus(`testing ${url}…`);
    try {
      const r = await call("POST", "/v1/streams/test", { url });
      setStatus(r.ok ? `ok: ${r.codec} ${r.width}×${r.height}${r.fps ? ` at ${r.fps.toFixed(1)} fps` : ""}` : `not usable: ${r.reason}`, !r.ok);
    } catch (err) {
      setStatus(`refused: ${err.message}`, true);
    }
  }

  async function add(ev) {
    ev.preventDefault();
    const url = el.url.value.trim();
    try {
      const s = await call("POST", "/v1/streams", { url, task: api.task(), encodings: ["overlay"] });
      setStatus(`camera ${s.id} added (${s.state})`);
      el.url.value = "";
    } catch (err) {
      setStatus(`cannot add the camera: ${err.message}`, true);
    }
    refresh();
  }

  function stopWatching() {
    if (cams.ws) { cams.ws.onclose = null; cams.ws.close(1000); cams.ws = null; }
    cams.watching = null;
    el.view.hidden = true;
  }

  function toggleWatch(s) {
    if (cams.watching === s.id) { stopWatching(); render(); return; }
    stopWatching();
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/streams/${s.id}/results`);
    cams.ws = ws;
    cams.watching = s.id;
    cams.results = 0;
    ws.onopen = () => { if (api.apiKey()) ws.send(JSON.stringify({ type: "auth", api_key: api.apiKey() })); };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "result") {
        cams.results++;
        if (msg.masks && msg.masks.overlay) { el.view.src = `data:image/jpeg;base64,${msg.masks.overlay}`; el.view.hidden = false; }
        api.showPresent(msg);
        setStatus(`watching camera ${s.id}: ${cams.results} results`);
      } else if (msg.type === "state" || msg.type === "subscribed") {
        refresh();
      } else if (msg.type === "error") {
        setStatus(`camera ${s.id}: ${msg.message}`, true);
      }
    };
    ws.onclose = (ev) => {
      if (cams.watching === s.id) { cams.watching = null; cams.ws = null; }
      if (ev.code !== 1000) setStatus(`camera ${s.id}: results closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ""})`, true);
      refresh();
    };
    render();
  }

  async function remove(s) {
    if (cams.watching === s.id) stopWatching();
    try {
      await call("DELETE", `/v1/streams/${s.id}`);
      setStatus(`camera ${s.id} removed`);
    } catch (err) {
      setStatus(`cannot remove camera ${s.id}: ${err.message}`, true);
    }
    refresh();
  }

  el.form.addEventListener("submit", add);
  el.test.addEventListener("click", test);
  window.addEventListener("m2f-api-key", refresh);
  refresh();
})();
