// Webcam demo for mask2former-ttt: camera -> JPEG frames over WS /v1/streams/ws -> masks drawn over the video.
// Protocol: docs/websocket-protocol.md (start message, binary frames = u32be header length + JSON header + JPEG,
// one JSON result per processed frame). Masks arrive as PNG (semantic label map, instance id map, or
// COCO-panoptic RGB ids) and are coloured with one typed-array palette lookup per pixel into an ImageData.
//
// URL parameters (all optional): task, method, preset, api_key, autostart=1, width (capture width, default 320),
// fps (max frames sent per second, default 15), inflight (max frames awaiting a result, default 2),
// score_threshold (0..1) and min_area (pixels): drop weaker / smaller instances and panoptic segments
// (default: the server's, /v1/info defaults), ttt_view (every N-th result
// carries the TTT view: masked input + reconstruction; default 3, 0 = off).
//
// The legend lists every class from page load (/v1/classes); classes of the drawn result come first.
// Colours: class c is drawn in /v1/classes class_colors[c] (the legend); things (instances, panoptic things) in
// their id's shade of their class colour (`shade`, the same rule as mask2former_ttt.outputs.palette.thing_shades)
// and labelled "class #id score". The TTT view panel shows the masked input, g∘f's reconstruction and the
// ℓ_s curve (each result's ttt.loss).
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  const el = {
    task: $("task"), method: $("method"), apiKey: $("api-key"), opacity: $("opacity"),
    start: $("start"), reset: $("reset"), video: $("video"), overlay: $("overlay"), stage: $("stage"),
    status: $("status"), legend: $("legend"),
    results: $("stat-results"), fps: $("stat-fps"), latency: $("stat-latency"), server: $("stat-server"),
    loss: $("stat-loss"), dropped: $("stat-dropped"), sent: $("stat-sent"), rollbacks: $("stat-rollbacks"),
    errors: $("stat-errors"), labels: $("labels"), tttMasked: $("ttt-masked"), tttRecon: $("ttt-recon"),
    tttCurve: $("ttt-curve"), tttCaption: $("ttt-caption"),
  };
  const intParam = (name, dflt, lo, hi) => {
    const v = Number.parseInt(params.get(name) ?? "", 10);
    return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : dflt;
  };
  const CAPTURE_WIDTH = intParam("width", 320, 32, 1920);
  const MAX_FPS = intParam("fps", 15, 1, 60);
  const MAX_IN_FLIGHT = intParam("inflight", 2, 1, 16);
  const SCORE_THRESHOLD = Number.parseFloat(params.get("score_threshold") ?? "");
  const MIN_AREA = intParam("min_area", null, 0, 1 << 24);
  const TTT_VIEW_EVERY = intParam("ttt_view", 3, 0, 1000);
  const CURVE_POINTS = 300; // the ℓ_s curve keeps the last 300 losses
  const MAX_BUFFERED = 1 << 20; // do not queue more than 1 MiB in the socket
  const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([0x0a0b0c0d]).buffer)[0] === 0x0d;

  const ui = {
    ws: null, stream: null, running: false, started: null, classes: null, luts: null,
    nextId: 0, pending: new Map(), encoding: false, lastSend: 0, pumpTimer: null,
    results: 0, sent: 0, errors: 0, dropped: 0, rollbacks: 0, lastLoss: null, latencyMs: null, serverMs: null,
    resultTimes: [], fps: 0, rendered: 0, lastRenderedIndex: -1, renderedTask: null, renderedClasses: [],
    rendering: false, nextRender: null, lastError: null, legendItems: null,
    losses: [], tttViews: 0, viewLoss: null, labelTexts: [], renderedSegments: [],
  };
  // read-only view for tests and debugging: window.m2f.stats
  window.m2f = {
    get stats() {
      return { results: ui.results, sent: ui.sent, errors: ui.errors, dropped: ui.dropped, rendered: ui.rendered,
               fps: ui.fps, latencyMs: ui.latencyMs, loss: ui.lastLoss, running: ui.running, lastError: ui.lastError,
               streamId: ui.started && ui.started.stream_id, renderedTask: ui.renderedTask,
               renderedClasses: ui.renderedClasses, tttViews: ui.tttViews, curvePoints: ui.losses.length,
               viewLoss: ui.viewLoss, labels: ui.labelTexts, renderedSegments: ui.renderedSegments };
    },
  };

  // ------------------------------------------------------------------------------------------- small helpers
  function setStatus(text, isError = false) {
    el.status.textContent = text;
    el.status.classList.toggle("error", isError);
    if (isError) ui.lastError = text;
  }

  function rgba(r, g, b, a) {
    return LITTLE_ENDIAN ? ((a << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | a) >>> 0;
  }

  function apiKey() { return el.apiKey.value.trim(); }

  function authHeaders() {
    const key = apiKey();
    return key ? { "X-API-Key": key } : {};
  }

  // PASCAL VOC colour map: only used when the server does not offer /v1/classes (same as its class_palette).
  function vocPalette(n) {
    const out = [];
    for (let i = 1; i <= n; i++) {
      let c = i, r = 0, g = 0, b = 0;
      for (let shift = 7; shift >= 0; shift--) {
        r |= (c & 1) << shift; g |= ((c >> 1) & 1) << shift; b |= ((c >> 2) & 1) << shift;
        c >>= 3;
      }
      out.push([r, g, b]);
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------- classes & legend
  async function loadClasses() {
    try {
      const resp = await fetch("/v1/classes", { headers: authHeaders() });
      if (resp.status === 401) throw new Error("unauthorized: enter a valid API key");
      if (!resp.ok) throw new Error(`GET /v1/classes: HTTP ${resp.status}`);
      ui.classes = await resp.json();
    } catch (err) {
      if (String(err.message).startsWith("unauthorized")) throw err;
      ui.classes = null; // filled from the "started" message instead
    }
  }

  async function loadMethods() {
    try {
      const resp = await fetch("/v1/info", { headers: authHeaders() });
      if (!resp.ok) return;
      const info = await resp.json();
      $("demo-note").hidden = !info.model.bundled_demo;
      const g = { true: "trained", false: "untrained", null: "not recorded" }[String(info.model.recon_trained)];
      $("model-state").textContent = `Model ${info.model.name}: reconstruction decoder g ${g}, guard ` +
        (info.model.guard_calibrated ? "calibrated" : "not calibrated") +
        (info.model.recon_trained === false ? ` — TTT is off by default; prepare the model with ` +
          "m2f-ttt prepare MODEL FOOTAGE -o OUT" : "") + ".";
      $("model-state").hidden = false;
      const wanted = params.get("method") || el.method.value;
      el.method.replaceChildren(new Option(`server default (${info.defaults.method})`, ""));
      for (const m of info.methods) el.method.add(new Option(m, m));
      el.method.value = info.methods.includes(wanted) ? wanted : "";
    } catch (_) { /* optional */ }
  }

  function classesFromStarted(started) {
    if (ui.classes) return;
    const names = started.class_names || [];
    ui.classes = { class_names: names, thing_class_ids: started.thing_class_ids || [],
                   class_colors: vocPalette(names.length), instance_colors: [] };
  }

  function buildLuts() {
    const c = ui.classes;
    const alpha = Number(el.opacity.value);
    ui.luts = {
      alpha,
      classFill: Uint32Array.from(c.class_colors, ([r, g, b]) => rgba(r, g, b, alpha)),
      classEdge: Uint32Array.from(c.class_colors, ([r, g, b]) => rgba(r, g, b, 255)),
    };
  }

  // a thing's colour: its class colour, lighter or darker by a golden-ratio step of its id (±25 %), as the server's
  // overlays draw it (mask2former_ttt.outputs.palette.thing_shades)
  function shade([r, g, b], id) {
    const f = (((id * 0.618033988749895) % 1) - 0.5) * 0.5;
    const one = (c) => Math.min(255, Math.max(0, Math.round(f >= 0 ? c + (255 - c) * f : c * (1 + f))));
    return [one(r), one(g), one(b)];
  }

  function classColor(cls) {
    const colors = ui.classes.class_colors;
    return colors[((cls % colors.length) + colors.length) % colors.length];
  }

  function buildLegend() {
    const frag = document.createDocumentFragment();
    ui.legendItems = ui.classes.class_names.map((name, i) => {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      const [r, g, b] = ui.classes.class_colors[i];
      sw.className = "swatch";
      sw.style.background = `rgb(${r} ${g} ${b})`;
      const nm = document.createElement("span");
      nm.className = "name";
      nm.textContent = name;
      const area = document.createElement("span");
      area.className = "area";
      li.append(sw, nm, area);
      frag.append(li);
      return { li, area, present: false };
    });
    el.legend.replaceChildren(frag);
  }

  function updateLegend(result) {
    if (!ui.legendItems) return;
    const total = result.width * result.height || 1;
    const areas = new Map();
    for (const s of result.segments_info || []) {
      areas.set(s.category_id, (areas.get(s.category_id) || 0) + (s.area || 0));
    }
    ui.legendItems.forEach((item, cls) => {
      const present = areas.has(cls);
      if (present !== item.present) { item.li.classList.toggle("present", present); item.present = present; }
      item.area.textContent = present ? `${(100 * areas.get(cls) / total).toFixed(1)}%` : "";
    });
  }

  // ------------------------------------------------------------------------------------------- mask decoding
  const scratch = document.createElement("canvas");
  const scratchCtx = scratch.getContext("2d", { willReadFrequently: true });
  const overlayCtx = el.overlay.getContext("2d");

  function base64Bytes(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // PNG -> RGBA bytes of the exact stored values (no colour management, no premultiplication).
  async function pngPixels(b64, width, height) {
    const blob = new Blob([base64Bytes(b64)], { type: "image/png" });
    const bmp = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    if (scratch.width !== width || scratch.height !== height) { scratch.width = width; scratch.height = height; }
    scratchCtx.clearRect(0, 0, width, height);
    scratchCtx.drawImage(bmp, 0, 0);
    bmp.close();
    return scratchCtx.getImageData(0, 0, width, height).data;
  }

  // COCO compressed RLE counts string -> run lengths (pycocotools' rleFrString).
  function rleCounts(s) {
    const counts = [];
    let p = 0;
    while (p < s.length) {
      let x = 0, k = 0, more = 1;
      while (more) {
        const c = s.charCodeAt(p) - 48;
        x |= (c & 0x1f) << (5 * k);
        more = c & 0x20; p++; k++;
        if (!more && (c & 0x10)) x |= -1 << (5 * k);
      }
      if (counts.length > 2) x += counts[counts.length - 2];
      counts.push(x);
    }
    return counts;
  }

  // RLEs aligned with segments_info -> (H*W) ids (row-major); RLE runs are column-major.
  function idsFromRle(rles, segments, width, height) {
    const ids = new Int32Array(width * height);
    rles.forEach((rle, i) => {
      const value = segments[i].id;
      const counts = rleCounts(rle.counts);
      let pos = 0;
      for (let j = 0; j < counts.length; j++) {
        const end = pos + counts[j];
        if (j & 1) for (let q = pos; q < end; q++) ids[(q % height) * width + ((q / height) | 0)] = value;
        pos = end;
      }
    });
    return ids;
  }

  function idsFromPng(px, task, n) {
    const ids = new Int32Array(n);
    if (task === "panoptic") {
      for (let p = 0, q = 0; p < n; p++, q += 4) ids[p] = px[q] | (px[q + 1] << 8) | (px[q + 2] << 16);
    } else {
      for (let p = 0, q = 0; p < n; p++, q += 4) ids[p] = px[q];
    }
    return ids;
  }

  // per-id fill / edge colours (Uint32 RGBA) for one result; id 0 is transparent for instance and panoptic.
  // Every segment is drawn in its class colour (the legend's), things in their id's shade of it.
  function resultLuts(result, maxId) {
    const L = ui.luts;
    const size = maxId + 1;
    const fill = new Uint32Array(size), edge = new Uint32Array(size);
    const nc = L.classFill.length;
    if (result.task === "semantic") {
      for (let c = 0; c < size; c++) { fill[c] = L.classFill[c % nc]; edge[c] = L.classEdge[c % nc]; }
    } else {
      for (const s of result.segments_info || []) {
        if (s.id >= size) continue;
        const [r, g, b] = s.isthing ? shade(classColor(s.category_id), s.id) : classColor(s.category_id);
        fill[s.id] = rgba(r, g, b, L.alpha);
        edge[s.id] = rgba(r, g, b, 255);
      }
    }
    return { fill, edge };
  }

  // "class #id score" on each thing, at the top-left of its box (percentages of the stage: they follow its size)
  function updateLabels(result, minX, minY) {
    const { width: w, height: h } = result;
    const frag = document.createDocumentFragment();
    ui.labelTexts = [];
    for (const s of result.task === "semantic" ? [] : result.segments_info || []) {
      if (!s.isthing || s.id >= minX.length || minX[s.id] >= w) continue;
      const text = `${s.name ?? ui.classes.class_names[s.category_id]} #${s.id} ${(s.score ?? 0).toFixed(2)}`;
      const [r, g, b] = shade(classColor(s.category_id), s.id);
      const span = document.createElement("span");
      span.textContent = text;
      span.style.left = `${(100 * minX[s.id]) / w}%`;
      span.style.top = `${(100 * minY[s.id]) / h}%`;
      span.style.background = `rgb(${r} ${g} ${b})`;
      span.style.color = 0.299 * r + 0.587 * g + 0.114 * b < 140 ? "#fff" : "#000";
      frag.append(span);
      ui.labelTexts.push(text);
    }
    el.labels.replaceChildren(frag);
  }

  async function render(result) {
    const { width: w, height: h } = result;
    const n = w * h;
    let ids;
    if (result.masks.png) {
      ids = idsFromPng(await pngPixels(result.masks.png, w, h), result.task, n);
    } else if (result.masks.rle) {
      ids = idsFromRle(result.masks.rle, result.segments_info || [], w, h);
    } else {
      return;
    }
    if (result.frame_index < ui.lastRenderedIndex) return; // a newer result was drawn meanwhile
    let maxId = 0;
    for (let p = 0; p < n; p++) if (ids[p] > maxId) maxId = ids[p];
    const { fill, edge } = resultLuts(result, maxId);
    const image = new ImageData(w, h);
    const out = new Uint32Array(image.data.buffer);
    const minX = new Int32Array(maxId + 1).fill(w), minY = new Int32Array(maxId + 1).fill(h); // boxes, for labels
    for (let y = 0, p = 0; y < h; y++) {
      for (let x = 0; x < w; x++, p++) {
        const id = ids[p];
        const border = (x + 1 < w && ids[p + 1] !== id) || (y + 1 < h && ids[p + w] !== id);
        out[p] = border ? edge[id] : fill[id];
        if (x < minX[id]) minX[id] = x;
        if (y < minY[id]) minY[id] = y;
      }
    }
    if (el.overlay.width !== w || el.overlay.height !== h) { el.overlay.width = w; el.overlay.height = h; }
    overlayCtx.putImageData(image, 0, 0);
    ui.lastRenderedIndex = result.frame_index;
    ui.rendered++;
    ui.renderedTask = result.task;
    ui.renderedClasses = (result.segments_info || []).map((s) => s.category_id);
    ui.renderedSegments = (result.segments_info || []).map(({ id, category_id, isthing }) => ({ id, category_id, isthing }));
    updateLegend(result);
    updateLabels(result, minX, minY);
  }

  // ------------------------------------------------------------------------------------------- TTT view
  async function drawJpeg(canvas, b64) {
    const bmp = await createImageBitmap(new Blob([base64Bytes(b64)], { type: "image/jpeg" }));
    if (canvas.width !== bmp.width || canvas.height !== bmp.height) { canvas.width = bmp.width; canvas.height = bmp.height; }
    canvas.getContext("2d").drawImage(bmp, 0, 0);
    bmp.close();
  }

  async function showTttView(view) {
    await Promise.all([drawJpeg(el.tttMasked, view.masked_jpeg), drawJpeg(el.tttRecon, view.reconstruction_jpeg)]);
    ui.tttViews++;
    ui.viewLoss = view.loss;
  }

  // ℓ_s of each result's TTT step against the frame index (thin: each step, on random crops and masks; bold: its
  // running mean, the trend), scaled to the range of the steps shown
  function drawCurve() {
    const c = el.tttCurve, ctx = c.getContext("2d");
    const w = c.width, h = c.height, pad = 4, pts = ui.losses;
    ctx.clearRect(0, 0, w, h);
    if (pts.length < 1) return;
    let lo = Infinity, hi = -Infinity;
    for (const p of pts) { lo = Math.min(lo, p.loss); hi = Math.max(hi, p.loss); }
    const span = hi - lo || 1, i0 = pts[0].i, di = pts[pts.length - 1].i - i0 || 1;
    const xy = (i, loss) => [pad + ((i - i0) / di) * (w - 2 * pad), pad + (1 - (loss - lo) / span) * (h - 2 * pad)];
    const line = (values, color, width) => {
      ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath();
      values.forEach((v, k) => { const [x, y] = xy(pts[k].i, v); if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y); });
      ctx.stroke();
    };
    let mean = pts[0].loss;
    const trend = pts.map((p) => (mean = 0.85 * mean + 0.15 * p.loss));
    line(pts.map((p) => p.loss), "#4fb3ff66", 1);
    line(trend, "#ffb454", 2);
    el.tttCaption.textContent = `ℓ_s (running mean) ${pts[0].loss.toFixed(3)} → ${mean.toFixed(3)} over ` +
      `${pts.length} steps` + (ui.viewLoss == null ? "" : ` · shown frame ${ui.viewLoss.toFixed(3)}`);
  }

  function onTtt(msg) {
    if (msg.ttt && typeof msg.ttt.loss === "number") {
      ui.losses.push({ i: msg.frame_index, loss: msg.ttt.loss });
      if (ui.losses.length > CURVE_POINTS) ui.losses.shift();
    }
    const shown = msg.ttt_view ? showTttView(msg.ttt_view) : Promise.resolve();
    shown.then(drawCurve, (err) => setStatus(`cannot draw the TTT view: ${err.message}`, true));
  }

  // draw the newest result; results arriving while one is decoding replace each other (no backlog)
  function scheduleRender(result) {
    ui.nextRender = result;
    if (ui.rendering) return;
    ui.rendering = true;
    (async () => {
      while (ui.nextRender) {
        const r = ui.nextRender;
        ui.nextRender = null;
        try { await render(r); } catch (err) { setStatus(`cannot draw result: ${err.message}`, true); }
      }
      ui.rendering = false;
    })();
  }

  // ------------------------------------------------------------------------------------------- frames out
  const capture = document.createElement("canvas");
  const captureCtx = capture.getContext("2d");
  const encoder = new TextEncoder();

  function pump() {
    const ws = ui.ws;
    if (!ui.running || !ws || ws.readyState !== WebSocket.OPEN || ui.encoding) return;
    const v = el.video;
    if (v.readyState < 2 || !v.videoWidth) return;
    const now = performance.now();
    if (ui.pending.size >= MAX_IN_FLIGHT || now - ui.lastSend < 1000 / MAX_FPS || ws.bufferedAmount > MAX_BUFFERED) return;
    const w = Math.min(CAPTURE_WIDTH, v.videoWidth) & ~1;
    const h = Math.max(2, Math.round(v.videoHeight * w / v.videoWidth) & ~1);
    if (capture.width !== w || capture.height !== h) { capture.width = w; capture.height = h; }
    captureCtx.drawImage(v, 0, 0, w, h);
    const capturedAt = performance.now(); // latency is measured from here to the drawn result's arrival
    ui.encoding = true;
    ui.lastSend = now;
    capture.toBlob((jpeg) => {
      ui.encoding = false;
      if (!jpeg || !ui.running || ws.readyState !== WebSocket.OPEN) return;
      const id = ui.nextId++;
      const header = encoder.encode(JSON.stringify({ frame_id: id, capture_ts: Date.now() / 1000 }));
      const len = new Uint8Array(4);
      new DataView(len.buffer).setUint32(0, header.length, false);
      ws.send(new Blob([len, header, jpeg]));
      ui.pending.set(id, capturedAt);
      ui.sent++;
      showStats();
    }, "image/jpeg", 0.8);
  }

  // ------------------------------------------------------------------------------------------- results in
  function settle(frameId) {
    // frames are processed in order: earlier frames without a result were dropped by the server's `latest` policy
    const sentAt = ui.pending.get(frameId);
    for (const id of ui.pending.keys()) if (id <= frameId) ui.pending.delete(id);
    return sentAt;
  }

  function onResult(msg) {
    const now = performance.now();
    const sentAt = settle(msg.frame_id);
    ui.results++;
    if (sentAt !== undefined) ui.latencyMs = now - sentAt;
    ui.serverMs = msg.timings_ms ? msg.timings_ms.end_to_end : null;
    ui.dropped = msg.dropped ?? ui.dropped;
    ui.lastLoss = msg.ttt ? msg.ttt.loss : null;
    ui.rollbacks = msg.ttt ? msg.ttt.rollbacks : ui.rollbacks;
    ui.resultTimes.push(now);
    while (ui.resultTimes.length > 2 && now - ui.resultTimes[0] > 3000) ui.resultTimes.shift();
    const span = (ui.resultTimes[ui.resultTimes.length - 1] - ui.resultTimes[0]) / 1000;
    ui.fps = span > 0 ? (ui.resultTimes.length - 1) / span : 0;
    showStats();
    scheduleRender(msg);
    onTtt(msg);
    pump();
  }

  function showStats() {
    el.results.textContent = String(ui.results);
    el.fps.textContent = ui.results > 1 ? ui.fps.toFixed(2) : "–";
    el.latency.textContent = ui.latencyMs == null ? "–" : `${Math.round(ui.latencyMs)} ms`;
    el.server.textContent = ui.serverMs == null ? "–" : `${Math.round(ui.serverMs)} ms`;
    el.loss.textContent = ui.lastLoss == null ? (ui.results ? "n/a (no TTT step)" : "–") : ui.lastLoss.toFixed(4);
    el.dropped.textContent = String(ui.dropped);
    el.sent.textContent = `${ui.sent} / ${ui.pending.size}`;
    el.rollbacks.textContent = String(ui.rollbacks);
    el.errors.textContent = String(ui.errors);
  }

  function onMessage(event) {
    let msg;
    try { msg = JSON.parse(event.data); } catch (_) { return; }
    switch (msg.type) {
      case "started":
        ui.started = msg;
        classesFromStarted(msg);
        buildLuts();
        buildLegend();
        el.reset.disabled = false;
        setStatus(`streaming · ${msg.task} · ${msg.method}/${msg.preset} · stream ${msg.stream_id}`);
        ui.pumpTimer = setInterval(pump, 10);
        break;
      case "result":
        onResult(msg);
        break;
      case "error":
        ui.errors++;
        if (msg.frame_id !== undefined) settle(msg.frame_id);
        setStatus(`server error ${msg.code}: ${msg.message}`, true);
        showStats();
        break;
      case "reset":
        setStatus(`adaptation reset to the initial weights after ${msg.frames_before_reset} frames`);
        break;
      case "set_task":
        setStatus(`task is now ${msg.task}`);
        break;
      case "stop":
        setStatus(`stopped: ${msg.processed} frames processed, ${msg.dropped} dropped`);
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------------------------------- start / stop
  async function start() {
    el.start.disabled = true;
    try {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw new Error("no camera API: open the page over HTTPS or on localhost");
      }
      await loadClasses();
      setStatus("asking for the camera…");
      ui.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 } }, audio: false });
      el.video.srcObject = ui.stream;
      await el.video.play();
      const ar = el.video.videoWidth / el.video.videoHeight;
      if (Number.isFinite(ar) && ar > 0) el.stage.style.aspectRatio = String(ar);
      openSocket();
    } catch (err) {
      setStatus(`cannot start: ${err.message || err}`, true);
      stop();
    }
  }

  function openSocket() {
    const key = apiKey();  // sent in the start message, never in the URL (URLs end up in logs)
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/streams/ws`);
    ui.ws = ws;
    ui.running = true;
    ui.pending.clear();
    ui.losses = [];
    ws.onopen = () => {
      const task = el.task.value;
      const start = { type: "start", task, encodings: encodingsFor(task), policy: "latest", queue_size: 2 };
      if (el.method.value) start.method = el.method.value;
      if (params.get("preset")) start.preset = params.get("preset");
      if (SCORE_THRESHOLD >= 0 && SCORE_THRESHOLD <= 1) start.score_threshold = SCORE_THRESHOLD;
      if (MIN_AREA !== null) start.min_area = MIN_AREA;
      if (TTT_VIEW_EVERY > 0) start.ttt_view = TTT_VIEW_EVERY;
      if (key) start.api_key = key;
      ws.send(JSON.stringify(start));
      setStatus("connected, starting the stream…");
    };
    ws.onmessage = onMessage;
    ws.onerror = () => setStatus("WebSocket error (is the server up?)", true);
    ws.onclose = (ev) => {
      const why = ev.code === 1008 ? "unauthorized or start timeout" : ev.code === 1013 ? "server is full, try later" : "";
      if (ui.running || ev.code !== 1000) {
        setStatus(`stream closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ""}${why ? ` — ${why}` : ""})`, ev.code !== 1000);
      }
      ui.running = false;
      stop(false);
    };
    el.start.textContent = "Stop";
    el.start.classList.add("stop");
    el.start.disabled = false;
  }

  function encodingsFor(task) {
    // PNG for every task; 16-bit label maps (>= 256 classes) do not survive the browser's 8-bit decoding: use RLE
    const n = ui.classes ? ui.classes.class_names.length : 0;
    return task === "semantic" && n >= 256 ? ["rle"] : ["png"];
  }

  function stop(sendStop = true) {
    ui.running = false;
    if (ui.pumpTimer) { clearInterval(ui.pumpTimer); ui.pumpTimer = null; }
    const ws = ui.ws;
    if (ws && ws.readyState === WebSocket.OPEN && sendStop) ws.send(JSON.stringify({ type: "stop" }));
    if (ui.stream) { for (const t of ui.stream.getTracks()) t.stop(); ui.stream = null; }
    el.reset.disabled = true;
    el.start.textContent = "Start camera";
    el.start.classList.remove("stop");
    el.start.disabled = false;
  }

  el.start.addEventListener("click", () => (ui.running ? stop() : start()));
  el.reset.addEventListener("click", () => {
    if (ui.ws && ui.ws.readyState === WebSocket.OPEN) ui.ws.send(JSON.stringify({ type: "reset" }));
  });
  el.task.addEventListener("change", () => {
    const task = el.task.value;
    if (ui.ws && ui.ws.readyState === WebSocket.OPEN && ui.started) {
      ui.ws.send(JSON.stringify({ type: "set_task", task, encodings: encodingsFor(task) }));
    }
  });
  el.method.addEventListener("change", () => {
    if (ui.running) setStatus("the TTT method applies to the next stream: stop and start again");
  });
  el.opacity.addEventListener("input", () => { if (ui.classes) buildLuts(); });
  el.apiKey.addEventListener("change", () => {
    sessionStorage.setItem("m2f-api-key", apiKey());
    loadMethods();
    loadLegend();
    window.dispatchEvent(new Event("m2f-api-key"));
  });

  // the legend before any stream: /v1/classes (names and colours), else /v1/info's names in the fallback palette
  async function loadLegend() {
    try {
      await loadClasses();
      if (!ui.classes) {
        const resp = await fetch("/v1/info", { headers: authHeaders() });
        if (!resp.ok) return;
        const names = (await resp.json()).model.class_names;
        ui.classes = { class_names: names, thing_class_ids: [], class_colors: vocPalette(names.length), instance_colors: [] };
      }
      buildLuts();
      buildLegend();
    } catch (err) {
      setStatus(`cannot load the classes: ${err.message}`, true);
    }
  }

  // for the page's other panels (jobs.js, cameras.js): the key's headers, the chosen task and overlay style, the legend
  window.m2f.api = {
    headers: authHeaders,
    apiKey,
    task: () => el.task.value,
    overlayStyle: () => ({ legend: $("legend-mode").value, labels: $("labels-on").checked }),
    showPresent: (result) => updateLegend(result),
  };

  // ------------------------------------------------------------------------------------------- boot
  el.apiKey.value = params.get("api_key") || sessionStorage.getItem("m2f-api-key") || "";
  if (params.has("api_key")) {  // keep the key out of the address bar, history and bookmarks
    sessionStorage.setItem("m2f-api-key", el.apiKey.value);
    params.delete("api_key");
    history.replaceState(null, "", `${location.pathname}${params.toString() ? `?${params}` : ""}`);
  }
  if (["semantic", "instance", "panoptic"].includes(params.get("task"))) el.task.value = params.get("task");
  if (params.get("method")) el.method.add(new Option(params.get("method"), params.get("method"), true, true));
  Promise.all([loadMethods(), loadLegend()]).finally(() => { if (params.get("autostart") === "1") start(); });
})();
