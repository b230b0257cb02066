// The rayscribe page: a plain client of this server's own API (/health, /v1/models, /v1/audio/...).
// The API key lives in the key field only: sent as the Authorization header, never stored, logged or put in a URL.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("form"), files = $("files"), drop = $("drop"), results = $("results");
  const keyRow = $("key-row"), keyInput = $("key"), statusEl = $("status");
  let chosen = [];
  let engineModel = "";

  const authHeaders = () => (keyInput.value.trim() ? { Authorization: `Bearer ${keyInput.value.trim()}` } : {});

  // ---- status strip (/health; reads both the older {status: ok} and the newer {status: healthy} shapes) ----

  function describeReplicas(replicas) {
    if (replicas == null) return "";
    if (typeof replicas === "number") return `${replicas} replica${replicas === 1 ? "" : "s"}`;
    if (typeof replicas === "object") {
      const parts = Object.entries(replicas).map(([name, v]) => {
        const n = (v && typeof v === "object") ? (v.running ?? v.replicas ?? v.count ?? JSON.stringify(v)) : v;
        return `${name} ${n}`;
      });
      return parts.length ? `replicas: ${parts.join(", ")}` : "";
    }
    return `replicas: ${replicas}`;
  }

  function modelNames(models) {
    if (!Array.isArray(models)) return [];
    return models.map((m) => (typeof m === "string" ? m : (m && (m.id || m.name || m.model)) || "")).filter(Boolean);
  }

  async function loadHealth() {
    try {
      const response = await fetch("/health", { cache: "no-store" });
      const body = await response.json().catch(() => ({}));
      const status = String(body.status || (response.ok ? "ok" : "unhealthy"));
      const healthy = response.ok && ["ok", "healthy"].includes(status);
      const engine = body.engine || {};
      engineModel = String(engine.model || "");
      const device = body.gpu_available === true || engine.device === "cuda" ? "GPU" : "CPU";
      const names = modelNames(body.models);
      const parts = [healthy ? "Healthy" : `Not healthy (${status})`, describeReplicas(body.replicas), device,
        names.length ? `models: ${names.join(", ")}` : "", engineModel ? `engine: ${engineModel}` : ""];
      statusEl.textContent = parts.filter(Boolean).join(" · ");
      statusEl.dataset.state = healthy ? "healthy" : "unhealthy";
    } catch (err) {
      statusEl.textContent = `The server did not answer /health (${err.message}).`;
      statusEl.dataset.state = "unreachable";
    }
    updateTaskHint();
  }

  // ---- models and key (/v1/models answers 401 when the server wants a key) ----

  async function loadModels() {
    const response = await fetch("/v1/models", { headers: authHeaders(), cache: "no-store" }).catch(() => null);
    if (!response) return;
    if (response.status === 401) {
      keyRow.hidden = false;
      return;
    }
    if (!response.ok) return;
    const body = await response.json().catch(() => ({}));
    const names = modelNames(body.data);
    if (!names.length) return;
    const select = $("model"), current = select.value;
    select.replaceChildren(...names.map((n) => new Option(n, n, false, n === current)));
  }

  function updateTaskHint() {
    const englishOnly = /\.en$/.test(engineModel);
    $("task-hint").textContent = englishOnly
      ? `The loaded model (${engineModel}) is English-only: translation needs a multilingual model.` : "";
  }

  // ---- files ----

  function choose(list) {
    chosen = Array.from(list || []);
    $("chosen").textContent = chosen.length ? chosen.map((f) => f.name).join(", ") : "No file chosen.";
  }
  files.addEventListener("change", () => choose(files.files));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files); });

  function localDuration(file) {  // what the browser itself reads from the file, when the stream says nothing
    return new Promise((resolve) => {
      const audio = document.createElement("audio");
      const url = URL.createObjectURL(file);
      const done = (value) => { URL.revokeObjectURL(url); resolve(value); };
      audio.preload = "metadata";
      audio.onloadedmetadata = () => done(Number.isFinite(audio.duration) ? audio.duration : null);
      audio.onerror = () => done(null);
      setTimeout(() => done(null), 5000);
      audio.src = url;
    });
  }

  // ---- one file's card ----

  const clock = (s) => {
    const m = Math.floor(s / 60), rest = s - m * 60;
    return `${String(m).padStart(2, "0")}:${rest.toFixed(3).padStart(6, "0")}`;
  };

  function newCard(file) {
    const card = $("card").content.firstElementChild.cloneNode(true);
    card.querySelector(".name").textContent = file.name;
    card.dataset.segments = "0";
    results.append(card);
    return card;
  }

  function addSegment(card, result, segment) {
    result.segments.push(segment);
    const li = document.createElement("li");
    li.className = "segment";
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = `${clock(segment.start)} → ${clock(segment.end)}`;
    const text = document.createElement("span");
    text.className = "seg-text";
    text.textContent = segment.text;
    li.append(time, " ", text);
    card.querySelector(".segments").append(li);
    card.dataset.segments = String(result.segments.length);
  }

  function showError(card, message) {
    const el = card.querySelector(".message");
    el.textContent = message;
    el.hidden = false;
    card.dataset.state = "error";
  }

  async function errorMessage(response, route) {
    const body = await response.json().catch(() => null);
    const apiMessage = body && body.error && body.error.message ? body.error.message : response.statusText;
    if (response.status === 401) return `401: ${apiMessage} Enter a valid key in the API key field.`;
    if (response.status === 404 && route.endsWith("/translations")) {
      return "404: this server does not offer translation (POST /v1/audio/translations is not there). Choose Transcribe.";
    }
    if (response.status === 503) {
      const retry = response.headers.get("Retry-After");
      return `503: ${apiMessage}${retry ? ` Retry after ${retry} s.` : ""}`;
    }
    return `${response.status}: ${apiMessage}`;
  }

  function attachWords(segments, words) {  // verbose_json lists words apart; the subtitles want them per segment
    let i = 0;
    for (const word of words || []) {
      while (i + 1 < segments.length && segments[i + 1].start <= word.start) i++;
      if (segments[i]) (segments[i].words = segments[i].words || []).push(word);
    }
  }

  async function readStream(response, card, result) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (!data || data === "[DONE]") continue;
        const payload = JSON.parse(data);
        if (event === "error" || payload.error) {
          throw new Error(payload.error ? payload.error.message : "the stream failed");
        }
        if (payload.language) result.language = payload.language;
        if (payload.languages && payload.languages.length) result.language = languageName(payload.languages[0].code);
        if (payload.model) result.model = payload.model;
        if (payload.type === "transcript.text.delta") {
          addSegment(card, result, { id: result.segments.length, start: payload.start ?? 0,
            end: payload.end ?? 0, text: payload.delta.trim() });
        } else if (payload.type === "transcript.text.done") {
          result.text = payload.text;
          if (payload.duration != null) result.duration = payload.duration;
        }
      }
    }
  }

  // "de" -> "german", as verbose_json names languages (the stream's done event carries codes).
  function languageName(code) {
    const option = document.querySelector(`#language option[value="${CSS.escape(code)}"]`);
    return option ? option.textContent.replace(/\s*\(.*\)$/, "").toLowerCase() : code;
  }

  function showFacts(card, result, elapsed, localSeconds, request) {
    if (result.duration == null && localSeconds != null) result.duration = localSeconds;
    const lang = result.language || (request.language ? request.language
      : (/\.en$/.test(engineModel) ? "english (English-only model)" : "not reported"));
    card.querySelector(".language").textContent = lang;
    card.querySelector(".duration").textContent = result.duration != null ? `${Number(result.duration).toFixed(2)} s` : "unknown";
    card.querySelector(".speed").textContent = result.duration != null && elapsed > 0
      ? `${(result.duration / elapsed).toFixed(1)}× real time (${elapsed.toFixed(2)} s)` : "unknown";
    card.querySelector(".model").textContent = result.model;
  }

  function render(card, result) {
    const fmt = $("format").value;
    const preview = card.querySelector(".preview");
    const segments = card.querySelector(".segments");
    if (fmt === "segments") {
      preview.hidden = true;
      segments.hidden = false;
    } else {
      preview.textContent = fileText(result, fmt);
      preview.hidden = false;
      segments.hidden = true;
    }
  }

  function fileText(result, fmt) {
    if (fmt === "json" && result.raw) return JSON.stringify(result.raw, null, 2) + "\n";
    return window.RayscribeFormats.format(result, fmt);
  }

  function download(result, fmt) {
    const types = { txt: "text/plain", srt: "application/x-subrip", vtt: "text/vtt", json: "application/json" };
    const blob = new Blob([fileText(result, fmt)], { type: `${types[fmt]};charset=utf-8` });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${result.name.replace(/\.[^.]+$/, "") || "transcript"}.${fmt}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  }

  async function transcribe(file, card) {
    const request = { model: $("model").value, language: $("language").value, task: $("task").value,
      words: $("words").checked };
    request.stream = $("stream").checked && !request.words;
    const route = request.task === "translate" ? "/v1/audio/translations" : "/v1/audio/transcriptions";
    const body = new FormData();
    body.append("file", file, file.name);
    body.append("model", request.model);
    if (request.language && request.task !== "translate") body.append("language", request.language);
    body.append("response_format", "verbose_json");
    if (request.stream) body.append("stream", "true");
    if (request.words) { body.append("timestamp_granularities[]", "word"); body.append("timestamp_granularities[]", "segment"); }

    const result = { name: file.name, task: request.task, segments: [], text: "", language: "", duration: null,
      model: engineModel && request.model !== engineModel ? `${request.model} (${engineModel})` : request.model };
    const probe = localDuration(file);
    const started = performance.now();
    card.dataset.state = "sending";
    let response;
    try {
      response = await fetch(route, { method: "POST", body, headers: authHeaders() });
    } catch (err) {
      showError(card, `The request failed before the server answered (${err.message}): check that the server ` +
        "runs; for a large file, the server's upload limit (RAYSCRIBE_MAX_UPLOAD_MB) may be the reason.");
      return;
    }
    if (!response.ok) {
      showError(card, await errorMessage(response, route));
      return;
    }
    try {
      if ((response.headers.get("content-type") || "").startsWith("text/event-stream")) {
        card.dataset.state = "streaming";
        await readStream(response, card, result);
        if (!result.text) result.text = result.segments.map((s) => s.text).join(" ");
      } else {
        const verbose = await response.json();
        result.raw = verbose;
        Object.assign(result, { text: verbose.text, language: verbose.language || "", duration: verbose.duration ?? null });
        if (verbose.model) result.model = verbose.model;
        for (const s of verbose.segments || []) addSegment(card, result, { id: s.id, start: s.start, end: s.end, text: s.text.trim() });
        attachWords(result.segments, verbose.words);
        result.words = verbose.words;
      }
    } catch (err) {
      showError(card, `The transcription failed: ${err.message}`);
      return;
    }
    const elapsed = (performance.now() - started) / 1000;
    showFacts(card, result, elapsed, await probe, request);
    card.result = result;
    render(card, result);
    card.querySelector(".downloads").hidden = false;
    card.querySelectorAll(".downloads button").forEach((b) => b.addEventListener("click", () => download(result, b.dataset.format)));
    card.dataset.state = "done";
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!chosen.length) { $("chosen").textContent = "Choose at least one audio file first."; files.focus(); return; }
    const go = $("go");
    go.disabled = true;
    try {
      for (const file of chosen) await transcribe(file, newCard(file));
    } finally {
      go.disabled = false;
    }
  });

  $("format").addEventListener("change", () => {
    results.querySelectorAll(".card").forEach((card) => { if (card.result) render(card, card.result); });
  });
  keyInput.addEventListener("change", loadModels);

  loadHealth();
  loadModels();
})();
