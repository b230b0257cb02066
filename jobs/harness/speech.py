"""The shared speech clips with human references, and the word error rate that judges transcripts."""

from __future__ import annotations

import csv
import os
from functools import lru_cache
from pathlib import Path

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

REPO = Path(__file__).resolve().parents[2]


def speech_dir() -> Path:
    """``RAYSCRIBE_SPEECH_DIR``, else ``../shared/data/speech`` beside the repository, else the workplace's
    ``/work/shared/data/speech`` (CI may clone the repository elsewhere)."""
    if "RAYSCRIBE_SPEECH_DIR" in os.environ:
        return Path(os.environ["RAYSCRIBE_SPEECH_DIR"])
    candidates = [REPO.parent / "shared" / "data" / "speech", Path("/work/shared/data/speech")]
    return next((c for c in candidates if (c / "jfk" / "jfk.wav").exists()), candidates[0])


@lru_cache(maxsize=8)
def references(folder: str) -> dict[str, str]:
    """file name → reference text for a folder holding ``transcripts.tsv``."""
    with open(Path(folder) / "transcripts.tsv", encoding="utf-8") as handle:
        return {row[0]: row[1] for row in csv.reader(handle, delimiter="\t") if row}


_normalizer = EnglishTextNormalizer()


def normalize(text: str) -> str:
    return str(_normalizer(text))


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate after Whisper's English normalization."""
    return float(jiwer.wer([normalize(r) for r in refs], [normalize(h) or "<empty>" for h in hyps]))
