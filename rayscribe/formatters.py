"""Turn a :class:`~rayscribe.transcript.Transcript` into the output formats and write them to disk.

Formats are ``txt`` (one segment per line), ``srt`` (composed with the ``srt`` library), ``vtt`` (WebVTT via
``webvtt-py``), ``json`` (:meth:`Transcript.to_dict`, plus optional ``"metadata"``) and ``verbose_json``
(the shape of OpenAI's ``response_format=verbose_json``). Subtitles share one cue list
(:func:`subtitle_cues`): long segments with word timings are split at word boundaries, times are clamped
to ``[0, duration]`` and never overlap or go backwards, and empty segments are skipped.

whisperx's writers (``whisperx.utils.WriteSRT`` and friends) are not reused because whisperx is an optional
extra that pulls in torch, and the core must format transcripts without it.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import secrets
import textwrap
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import srt
import webvtt

from rayscribe.config.checks import LANGUAGE_NAMES, OUTPUT_FORMATS
from rayscribe.transcript import Segment, Transcript, Word

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "LANGUAGE_NAMES",
    "Cue",
    "format_transcript",
    "language_name",
    "output_paths",
    "outputs_exist",
    "subtitle_cues",
    "verbose_json_dict",
    "write_outputs",
]

FORMATS: tuple[str, ...] = OUTPUT_FORMATS

EXTENSIONS: dict[str, str] = {
    "txt": ".txt",
    "srt": ".srt",
    "vtt": ".vtt",
    "json": ".json",
    "verbose_json": ".verbose.json",
}

# Subtitle cue limits: about two lines of 42 characters, shown for at most about 7 seconds.
MAX_CUE_SECONDS = 7.0
MAX_CUE_CHARS = 84
MAX_LINE_CHARS = 42

# Languages whose words are written without spaces between them.
_NO_SPACE_LANGUAGES = frozenset({"ja", "zh", "yue", "th", "lo", "km", "my", "bo"})
# Where a long cue may be cut; the \uffXX escapes are the full-width (CJK) forms of ? ! , ; :
_SENTENCE_END = tuple(".?!…。\uff1f\uff01")
_CLAUSE_END = tuple(",;:、\uff0c\uff1b\uff1a")


class Cue(NamedTuple):
    """One subtitle cue; times in whole milliseconds so SRT and WebVTT show exactly the same thing."""

    start_ms: int
    end_ms: int
    text: str


def language_name(code: str) -> str:
    """``"en"`` -> ``"english"``, as OpenAI reports it; an unknown code (or a name) comes back as is."""
    return LANGUAGE_NAMES.get(code.strip().lower(), code)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; allowed: {', '.join(FORMATS)}")


# --------------------------------------------------------------------------------------------- cues


def _join_words(words: Sequence[Word], language: str) -> str:
    """Join word tokens as written: faster-whisper words carry their leading space, whisperx's do not."""
    pieces = [w.word for w in words]
    if language in _NO_SPACE_LANGUAGES:
        return "".join(p.strip() for p in pieces)
    if any(p[:1].isspace() for p in pieces[1:]):
        return "".join(pieces).strip()
    return " ".join(p.strip() for p in pieces if p.strip())


def _too_long(words: Sequence[Word], language: str, max_seconds: float, max_chars: int) -> bool:
    return (words[-1].end - words[0].start) > max_seconds or len(_join_words(words, language)) > max_chars


def _break_point(words: Sequence[Word]) -> int:
    """Where to cut a full cue: after its last sentence (else clause) end in the second half, else the end."""
    half = len(words) // 2
    for ends in (_SENTENCE_END, _CLAUSE_END):
        for i in range(len(words) - 1, max(half, 1) - 1, -1):
            if words[i - 1].word.strip().endswith(ends):
                return i
    return len(words)


def _split_words(
    words: Sequence[Word], language: str, max_seconds: float, max_chars: int
) -> list[list[Word]]:
    chunks: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        while current and _too_long([*current, word], language, max_seconds, max_chars):
            cut = _break_point(current)
            chunks.append(current[:cut])
            current = current[cut:]
        current.append(word)
    if current:
        chunks.append(current)
    return chunks


def _wrap(text: str, width: int = MAX_LINE_CHARS) -> str:
    """Break a cue into lines: two balanced lines up to ``2 * width`` characters, else ``width`` per line."""
    if len(text) <= width or " " not in text:
        return text
    if len(text) <= 2 * width:
        middle = len(text) // 2
        spaces = [i for i, ch in enumerate(text) if ch == " "]
        cut = min(spaces, key=lambda i: abs(i - middle))
        return f"{text[:cut].rstrip()}\n{text[cut + 1:].lstrip()}"
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False))


def _raw_cues(
    segment: Segment, language: str, max_seconds: float, max_chars: int
) -> list[tuple[float, float, str]]:
    text = " ".join(segment.text.split())
    if not text:
        return []
    prefix = f"[{segment.speaker}]: " if segment.speaker else ""
    long = (segment.end - segment.start) > max_seconds or len(text) > max_chars
    if not (long and segment.words):
        return [(segment.start, segment.end, prefix + text)]
    out = []
    for chunk in _split_words(segment.words, language, max_seconds, max_chars):
        chunk_text = " ".join(_join_words(chunk, language).split())
        if chunk_text:
            out.append((chunk[0].start, chunk[-1].end, prefix + chunk_text))
    return out


def _ms(seconds: float) -> int:
    return round(seconds * 1000) if math.isfinite(seconds) else 0


def subtitle_cues(
    transcript: Transcript,
    *,
    max_seconds: float = MAX_CUE_SECONDS,
    max_chars: int = MAX_CUE_CHARS,
) -> list[Cue]:
    """The cues SRT and WebVTT both write.

    Segments with empty text are skipped. A segment longer than ``max_seconds`` or ``max_chars`` that has
    word timings becomes several cues split at word boundaries (preferring sentence, then clause, ends);
    without words it stays one cue. Times are clamped so that ``0 <= start <= end <= duration`` and each cue
    starts no earlier than the previous one ends. A cue left with no time at all (all of it was clamped
    away) is merged into the cue before it rather than dropped. A non-positive ``duration`` is treated as
    unknown: the last segment end is used instead. Cue text is wrapped onto lines of about 42 characters.
    """
    language = transcript.language.strip().lower()
    raw = [c for s in transcript.segments for c in _raw_cues(s, language, max_seconds, max_chars)]
    duration = transcript.duration
    if not (math.isfinite(duration) and duration > 0):
        duration = max((end for _, end, _ in raw if math.isfinite(end)), default=0.0)
    limit = max(math.floor(duration * 1000 + 1e-6), 0)

    cues: list[Cue] = []
    carry = ""  # text of leading zero-length cues, put in front of the first real one
    prev_end = 0
    for start_s, end_s, text in raw:
        start = min(max(_ms(start_s), prev_end), limit)
        end = min(max(_ms(end_s), start), limit)
        if end == start:
            if cues:
                last = cues[-1]
                cues[-1] = Cue(last.start_ms, max(last.end_ms, start), f"{last.text} {text}")
            else:
                carry = f"{carry} {text}".strip()
            continue
        cues.append(Cue(start, end, f"{carry} {text}".strip()))
        carry = ""
        prev_end = end
    if carry:  # nothing had any duration (e.g. the whole transcript is clamped to zero length)
        cues.append(Cue(prev_end, prev_end, carry))
    return [Cue(c.start_ms, c.end_ms, _wrap(c.text)) for c in cues]


# ------------------------------------------------------------------------------------------ formats


def _safe_cue_text(text: str) -> str:
    # "-->" ends a cue's text in both SRT and WebVTT; blank lines end the block.
    return "\n".join(line for line in text.replace("-->", "->").splitlines() if line.strip())


def _to_txt(transcript: Transcript) -> str:
    lines = []
    for segment in transcript.segments:
        text = " ".join(segment.text.split())
        if text:
            lines.append(f"[{segment.speaker}]: {text}" if segment.speaker else text)
    return "\n".join(lines) + "\n"  # a lone newline when empty: outputs_exist wants non-empty files


def _to_srt(transcript: Transcript) -> str:
    subtitles = [
        srt.Subtitle(
            index=i,
            start=timedelta(milliseconds=cue.start_ms),
            end=timedelta(milliseconds=cue.end_ms),
            content=_safe_cue_text(cue.text),
        )
        for i, cue in enumerate(subtitle_cues(transcript), start=1)
    ]
    # reindex=False: cues are already in order and numbered; reindexing would also drop zero-length ones.
    return str(srt.compose(subtitles, reindex=False)) or "\n"  # never an empty file, see _to_txt


def _vtt_timestamp(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def _to_vtt(transcript: Transcript) -> str:
    captions = [
        webvtt.Caption(
            start=_vtt_timestamp(cue.start_ms),
            end=_vtt_timestamp(cue.end_ms),
            # WebVTT cue text is markup: &, < and > must be escaped to show as written.
            text=html.escape(_safe_cue_text(cue.text), quote=False),
        )
        for cue in subtitle_cues(transcript)
    ]
    return str(webvtt.WebVTT(captions=captions).content)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def _to_json(transcript: Transcript, metadata: dict[str, Any] | None) -> str:
    data = transcript.to_dict()
    if metadata is not None:
        data["metadata"] = metadata
    return _dumps(data)


def verbose_json_dict(transcript: Transcript) -> dict[str, Any]:
    """OpenAI's ``verbose_json`` transcription object.

    ``seek`` is approximated by the segment start in 10 ms frames and ``tokens`` is empty: the transcript
    keeps neither.
    """
    extra = {"model": transcript.model} if transcript.model else {}
    return {
        "task": "transcribe",
        "language": language_name(transcript.language),
        # Beyond OpenAI's object (clients ignore unknown keys): how sure the detection was, and which model did it.
        "language_probability": transcript.language_probability,
        **extra,
        "duration": transcript.duration,
        "text": transcript.text,
        "segments": [
            {
                "id": s.id,
                "seek": max(int(s.start * 100), 0) if math.isfinite(s.start) else 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": [],
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in transcript.segments
        ],
        "words": [{"word": w.word.strip(), "start": w.start, "end": w.end} for w in transcript.words],
    }


def format_transcript(transcript: Transcript, fmt: str, *, metadata: dict[str, Any] | None = None) -> str:
    """The transcript in ``fmt`` (one of :data:`FORMATS`) as a string; ``metadata`` goes into ``json`` only.

    :raises ValueError: for an unknown format.
    """
    _check_format(fmt)
    if fmt == "txt":
        return _to_txt(transcript)
    if fmt == "srt":
        return _to_srt(transcript)
    if fmt == "vtt":
        return _to_vtt(transcript)
    if fmt == "json":
        return _to_json(transcript, metadata)
    return _dumps(verbose_json_dict(transcript))


# -------------------------------------------------------------------------------------------- files


def output_paths(out_dir: Path | str, stem: str, formats: Iterable[str]) -> dict[str, Path]:
    """Where each format of ``stem`` goes in ``out_dir``, in the order given (duplicates dropped).

    ``stem`` may hold sub-folders (inputs keep their layout) but never leaves ``out_dir``.

    :raises ValueError: for an unknown format, or a stem that is absolute or has a ``..`` part.
    """
    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    for fmt in formats:
        _check_format(fmt)
        name = Path(f"{stem}{EXTENSIONS[fmt]}")
        if name.is_absolute() or ".." in name.parts:
            raise ValueError(f"output name {str(name)!r} would leave the output folder {str(out_dir)!r}")
        paths[fmt] = out_dir / name
    return paths


def _write_atomic(path: Path, content: str) -> None:
    """Write to a fresh temp file beside ``path``, flush it to disk, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_outputs(
    transcript: Transcript,
    out_dir: Path | str,
    stem: str,
    formats: Iterable[str],
    *,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``transcript`` in each format to ``out_dir/<stem><ext>``, creating ``out_dir``; return the paths.

    Every format is rendered before any file is written, and each file is replaced atomically, so a reader
    never sees a half-written file and a failure leaves no temp files behind.
    """
    paths = output_paths(out_dir, stem, formats)
    contents = {fmt: format_transcript(transcript, fmt, metadata=metadata) for fmt in paths}
    for fmt, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)  # stems may hold sub-folders ("talks/day1/intro")
        _write_atomic(path, contents[fmt])
    return paths


def outputs_exist(out_dir: Path | str, stem: str, formats: Iterable[str]) -> bool:
    """Whether every format of ``stem`` exists and is non-empty (to resume batches); False for no formats."""
    paths = output_paths(out_dir, stem, formats)
    try:
        return bool(paths) and all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    except OSError:
        return False
