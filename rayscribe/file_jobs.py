"""The Ray-free half of batch transcription: finding inputs, naming outputs, resuming, and the report."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayscribe.audio import is_audio_path, probe_duration
from rayscribe.errors import RayscribeError
from rayscribe.work import ItemResult, WorkItem

SUMMARY_FILE = "rayscribe-summary.json"


class InputError(RayscribeError):
    """A path given on the command line does not exist or holds no audio."""


@dataclass
class BatchInput:
    """An input file and the stem (relative path without extension) its outputs get in the output folder."""

    path: Path
    stem: str


def discover_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[BatchInput]:
    """Expand files and directories (recursively, by audio extension) into inputs with unique output stems.

    Files keep their folder structure below a directory argument. When two inputs would share a stem
    (``talk.mp3`` and ``talk.wav``), both keep their extension in the stem (``talk.mp3.srt``).
    """
    found: list[tuple[Path, Path]] = []  # (file, path relative to its argument's root)
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_audio_path(p))
            found.extend((f, f.relative_to(path)) for f in files)
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            raise InputError(f"input {str(raw)!r} does not exist; give audio files or folders that hold them")
    if not found:
        names = ", ".join(str(p) for p in paths)
        raise InputError(f"no audio files found in {names} (looked for: mp3, wav, flac, m4a, webm, ogg, ...)")
    seen: set[Path] = set()
    unique = []
    for file, rel in found:
        if file.resolve() not in seen:
            seen.add(file.resolve())
            unique.append((file, rel))
    counts = Counter(rel.with_suffix("") for _, rel in unique)
    return [
        BatchInput(path=file, stem=str(rel if counts[rel.with_suffix("")] > 1 else rel.with_suffix("")))
        for file, rel in unique
    ]


def work_items(inputs: Iterable[BatchInput]) -> list[WorkItem]:
    """Work items keyed by output stem, with the duration the container declares (for grouping and progress)."""
    return [
        WorkItem(key=i.stem, name=str(i.path), source=str(i.path), duration=probe_duration(i.path))
        for i in inputs
    ]


@dataclass
class BatchReport:
    """What a batch run did, for the summary table, the exit code and ``rayscribe-summary.json``."""

    results: list[ItemResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    startup_seconds: float = 0.0
    workers: int = 0
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if not r.ok]

    @property
    def succeeded(self) -> list[ItemResult]:
        return [r for r in self.results if r.ok]

    @property
    def audio_seconds(self) -> float:
        return sum(r.audio_seconds for r in self.succeeded)

    @property
    def real_time_factor(self) -> float:
        """Audio seconds transcribed per wall-clock second of the run (model start-up excluded)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": len(self.results) + len(self.skipped),
            "transcribed": len(self.succeeded),
            "skipped": self.skipped,
            "failed": [{"file": r.name, "error": r.error, "type": r.error_type} for r in self.failed],
            "audio_seconds": round(self.audio_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "startup_seconds": round(self.startup_seconds, 3),
            "real_time_factor": round(self.real_time_factor, 2),
            "workers": self.workers,
            "engine": self.engine,
            "per_file": [r.metrics() for r in self.succeeded],
            "languages": self.languages(),
        }

    def languages(self) -> dict[str, dict[str, Any]]:
        """Per language: files, audio seconds and the models that transcribed them (the summary's last key)."""
        found: dict[str, dict[str, Any]] = {}
        for r in self.succeeded:
            fields = r.language_fields()
            entry = found.setdefault(fields["language"], {"files": 0, "audio_seconds": 0.0, "models": []})
            entry["files"] += 1
            entry["audio_seconds"] = round(entry["audio_seconds"] + r.audio_seconds, 3)
            model = fields.get("model") or r.worker.get("model")
            if model and model not in entry["models"]:
                entry["models"].append(model)
        return dict(sorted(found.items()))

    def write(self, out_dir: Path) -> Path:
        path = out_dir / SUMMARY_FILE
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        return path
