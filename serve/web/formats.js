// Transcript downloads built in the page from the one answer it already has (no second transcription).
// A port of rayscribe/formatters.py (subtitle_cues, txt, srt, vtt): the browser test compares the two outputs.
"use strict";

(function () {
  const MAX_CUE_SECONDS = 7.0;
  const MAX_CUE_CHARS = 84;
  const MAX_LINE_CHARS = 42;
  const NO_SPACE = new Set(["ja", "zh", "yue", "th", "lo", "km", "my", "bo", "japanese", "chinese",
    "cantonese", "thai", "lao", "khmer", "myanmar", "tibetan"]);
  const SENTENCE_END = [".", "?", "!", "…", "。", "\uff1f", "\uff01"];
  const CLAUSE_END = [",", ";", ":", "、", "\uff0c", "\uff1b", "\uff1a"];

  const len = (s) => Array.from(s).length;  // code points, as Python counts
  const squash = (s) => s.split(/\s+/).filter(Boolean).join(" ");
  const isSpace = (ch) => ch !== "" && /\s/.test(ch);

  function pyRound(x) {  // Python's round(): halves go to the even neighbour
    const r = Math.round(x);
    return (Math.abs(x % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
  }
  const ms = (s) => (Number.isFinite(s) ? pyRound(s * 1000) : 0);

  function joinWords(words, language) {
    const pieces = words.map((w) => w.word);
    if (NO_SPACE.has(language)) return pieces.map((p) => p.trim()).join("");
    if (pieces.slice(1).some((p) => isSpace(p.slice(0, 1)))) return pieces.join("").trim();
    return pieces.map((p) => p.trim()).filter(Boolean).join(" ");
  }

  function tooLong(words, language) {
    return (words[words.length - 1].end - words[0].start) > MAX_CUE_SECONDS ||
      len(joinWords(words, language)) > MAX_CUE_CHARS;
  }

  function breakPoint(words) {
    const half = Math.floor(words.length / 2);
    for (const ends of [SENTENCE_END, CLAUSE_END]) {
      for (let i = words.length - 1; i >= Math.max(half, 1); i--) {
        const text = words[i - 1].word.trim();
        if (ends.some((e) => text.endsWith(e))) return i;
      }
    }
    return words.length;
  }

  function splitWords(words, language) {
    const chunks = [];
    let current = [];
    for (const word of words) {
      while (current.length && tooLong([...current, word], language)) {
        const cut = breakPoint(current);
        chunks.push(current.slice(0, cut));
        current = current.slice(cut);
      }
      current.push(word);
    }
    if (current.length) chunks.push(current);
    return chunks;
  }

  function textwrap(text, width) {  // textwrap.wrap without breaking long words or hyphens
    const lines = [];
    let line = "";
    for (const word of text.split(" ")) {
      if (!line) line = word;
      else if (len(line) + 1 + len(word) <= width) line += " " + word;
      else { lines.push(line); line = word; }
    }
    if (line) lines.push(line);
    return lines.join("\n");
  }

  function wrap(text, width = MAX_LINE_CHARS) {
    if (len(text) <= width || !text.includes(" ")) return text;
    if (len(text) <= 2 * width) {
      const chars = Array.from(text);
      const middle = Math.floor(chars.length / 2);
      let cut = -1;
      chars.forEach((ch, i) => { if (ch === " " && (cut < 0 || Math.abs(i - middle) < Math.abs(cut - middle))) cut = i; });
      return chars.slice(0, cut).join("").trimEnd() + "\n" + chars.slice(cut + 1).join("").trimStart();
    }
    return textwrap(text, width);
  }

  function rawCues(segment, language) {
    const text = squash(segment.text || "");
    if (!text) return [];
    const prefix = segment.speaker ? `[${segment.speaker}]: ` : "";
    const words = segment.words || [];
    const long = (segment.end - segment.start) > MAX_CUE_SECONDS || len(text) > MAX_CUE_CHARS;
    if (!(long && words.length)) return [[segment.start, segment.end, prefix + text]];
    const out = [];
    for (const chunk of splitWords(words, language)) {
      const chunkText = squash(joinWords(chunk, language));
      if (chunkText) out.push([chunk[0].start, chunk[chunk.length - 1].end, prefix + chunkText]);
    }
    return out;
  }

  // The cues SRT and WebVTT share: times in whole ms, clamped to [0, duration], never backwards.
  function cues(result) {
    const language = String(result.language || "").trim().toLowerCase();
    const raw = (result.segments || []).flatMap((s) => rawCues(s, language));
    let duration = Number(result.duration);
    if (!(Number.isFinite(duration) && duration > 0)) {
      duration = Math.max(0, ...raw.map((c) => c[1]).filter(Number.isFinite));
    }
    const limit = Math.max(Math.floor(duration * 1000 + 1e-6), 0);
    const out = [];
    let carry = "";
    let prevEnd = 0;
    for (const [startS, endS, text] of raw) {
      const start = Math.min(Math.max(ms(startS), prevEnd), limit);
      const end = Math.min(Math.max(ms(endS), start), limit);
      if (end === start) {
        if (out.length) {
          const last = out[out.length - 1];
          out[out.length - 1] = [last[0], Math.max(last[1], start), `${last[2]} ${text}`];
        } else {
          carry = `${carry} ${text}`.trim();
        }
        continue;
      }
      out.push([start, end, `${carry} ${text}`.trim()]);
      carry = "";
      prevEnd = end;
    }
    if (carry) out.push([prevEnd, prevEnd, carry]);
    return out.map(([s, e, t]) => [s, e, wrap(t)]);
  }

  function stamp(totalMs, sep) {
    const pad = (n, w) => String(n).padStart(w, "0");
    const h = Math.floor(totalMs / 3600000);
    const m = Math.floor((totalMs % 3600000) / 60000);
    const s = Math.floor((totalMs % 60000) / 1000);
    return `${pad(h, 2)}:${pad(m, 2)}:${pad(s, 2)}${sep}${pad(totalMs % 1000, 3)}`;
  }

  const safeCueText = (text) => text.replace(/-->/g, "->").split("\n").filter((l) => l.trim()).join("\n");
  const escapeVtt = (text) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

  function txt(result) {
    const lines = [];
    for (const s of result.segments || []) {
      const text = squash(s.text || "");
      if (text) lines.push(s.speaker ? `[${s.speaker}]: ${text}` : text);
    }
    return lines.join("\n") + "\n";
  }

  function srt(result) {
    const blocks = cues(result).map(([s, e, t], i) =>
      `${i + 1}\n${stamp(s, ",")} --> ${stamp(e, ",")}\n${safeCueText(t)}\n\n`);
    return blocks.join("") || "\n";
  }

  function vtt(result) {
    const blocks = cues(result).map(([s, e, t]) =>
      `${stamp(s, ".")} --> ${stamp(e, ".")}\n${escapeVtt(safeCueText(t))}`);
    return blocks.length ? `WEBVTT\n\n${blocks.join("\n\n")}\n` : "WEBVTT\n";
  }

  function json(result) {  // OpenAI's verbose_json shape, as the API answers it
    const body = {
      task: result.task || "transcribe",
      language: result.language || "",
      duration: result.duration,
      text: result.text,
      segments: (result.segments || []).map((s) => ({ id: s.id, start: s.start, end: s.end, text: s.text })),
    };
    if (result.words && result.words.length) body.words = result.words;
    return JSON.stringify(body, null, 2) + "\n";
  }

  const formats = { txt, srt, vtt, json };

  function format(result, fmt) {
    if (!formats[fmt]) throw new Error(`unknown format ${fmt}`);
    return formats[fmt](result);
  }

  window.RayscribeFormats = { format, cues, FORMATS: Object.keys(formats) };
})();
