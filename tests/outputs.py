"""Checks shared by the CLI and job tests: outputs parse back, times are sane, WER matches the direct engine."""

from __future__ import annotations

import json
from pathlib import Path

import srt
import webvtt

from rayscribe.transcript import Transcript


def check_output_folder(out_dir: Path, stems: list[str], formats: tuple[str, ...]) -> dict[str, Transcript]:
    """Every stem has every format; subtitles parse with real parsers; times are monotonic and in range."""
    transcripts = {}
    for stem in stems:
        for fmt, ext in (("txt", ".txt"), ("srt", ".srt"), ("vtt", ".vtt"), ("json", ".json")):
            if fmt in formats:
                assert (out_dir / f"{stem}{ext}").stat().st_size > 0, f"{stem}{ext} missing or empty"
        data = json.loads((out_dir / f"{stem}.json").read_text(encoding="utf-8"))
        transcript = Transcript.from_dict(data)
        transcripts[stem] = transcript
        assert data["metadata"]["audio_seconds"] > 0 and data["metadata"]["model"] == "tiny.en"
        duration = transcript.duration
        if "srt" in formats:
            cues = list(srt.parse((out_dir / f"{stem}.srt").read_text(encoding="utf-8")))
            assert cues, f"{stem}.srt has no cues"
            _check_times([(c.start.total_seconds(), c.end.total_seconds()) for c in cues], duration)
        if "vtt" in formats:
            captions = webvtt.read(str(out_dir / f"{stem}.vtt")).captions
            assert captions
            _check_times([(c.start_in_seconds, c.end_in_seconds) for c in captions], duration)
        for seg in transcript.segments:
            for w in seg.words:
                assert seg.start - 0.01 <= w.start <= w.end <= seg.end + 0.01
    return transcripts


def _check_times(spans: list[tuple[float, float]], duration: float) -> None:
    previous = 0.0
    for start, end in spans:
        assert previous - 1e-3 <= start <= end <= duration + 1e-3, (start, end, duration)
        previous = start
