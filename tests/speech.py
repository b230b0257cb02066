"""Shared speech clips with human references, and the word error rate used to judge transcripts (both from the
harness, :mod:`jobs.harness.speech`); ``require_speech`` skips a test where the clips are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.harness.speech import REPO, normalize, references, speech_dir, wer

__all__ = ["REPO", "SAMPLES", "normalize", "references", "require_speech", "speech_dir", "wer"]

SAMPLES = REPO / "samples"


def require_speech() -> Path:
    path = speech_dir()
    if not (path / "jfk" / "jfk.wav").exists():
        pytest.skip(f"shared speech clips not found at {path} (set RAYSCRIBE_SPEECH_DIR)")
    return path
