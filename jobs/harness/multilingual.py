"""The shared non-English clips (``../shared/data/speech-multilingual/<lang>/``) and how transcripts of them are
scored: Whisper's basic text normalizer (lower case, no punctuation or symbols: the FLEURS references have none,
the Picovoice ones do), then word errors for space-separated languages and character errors for zh and ja."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jiwer
from whisper_normalizer.basic import BasicTextNormalizer

from jobs.harness.speech import REPO, references

CHARACTER_LANGUAGES = frozenset({"zh", "ja"})  # no spaces between words: scored by characters
AUDIO_SUFFIXES = (".wav", ".ogg", ".mp3", ".flac")

_normalizer = BasicTextNormalizer()


def multilingual_dir() -> Path:
    """``RAYSCRIBE_MULTILINGUAL_DIR``, else ``../shared/data/speech-multilingual`` beside the repository, else the
    workplace's ``/work/shared/data/speech-multilingual``."""
    if "RAYSCRIBE_MULTILINGUAL_DIR" in os.environ:
        return Path(os.environ["RAYSCRIBE_MULTILINGUAL_DIR"])
    candidates = [REPO.parent / "shared" / "data" / "speech-multilingual",
                  Path("/work/shared/data/speech-multilingual")]
    return next((c for c in candidates if (c / "de" / "transcripts.tsv").exists()), candidates[0])


@dataclass(frozen=True)
class Clip:
    """One non-English clip: its language (the folder), path and reference text."""

    language: str
    path: Path
    reference: str

    @property
    def key(self) -> str:
        """``de/fleurs_de_001``: the output stem a batch run over the whole folder gives it."""
        return f"{self.language}/{self.path.stem}"


def multilingual_clips(root: Path | None = None) -> list[Clip]:
    """Every clip with a reference, by language then name."""
    root = root or multilingual_dir()
    clips = []
    for folder in sorted(p for p in root.iterdir() if (p / "transcripts.tsv").exists()):
        for name, text in sorted(references(str(folder)).items()):
            if name.endswith(AUDIO_SUFFIXES) and (folder / name).exists():
                clips.append(Clip(folder.name, folder / name, text))
    return clips


def normalize_basic(text: str, language: str) -> str:
    """Whisper's basic normalization; for zh and ja also without spaces (characters are the units)."""
    text = " ".join(str(_normalizer(text)).split())
    return text.replace(" ", "") if language in CHARACTER_LANGUAGES else text


def errors(language: str, refs: list[str], hyps: list[str]) -> tuple[int, int]:
    """(errors, reference units) over a set: words, or characters for zh and ja."""
    ref = [normalize_basic(r, language) for r in refs]
    hyp = [normalize_basic(h, language) or "<empty>" for h in hyps]
    process = jiwer.process_characters if language in CHARACTER_LANGUAGES else jiwer.process_words
    out = process(ref, hyp)
    wrong = out.substitutions + out.deletions + out.insertions
    return wrong, out.hits + out.substitutions + out.deletions


def error_rate(language: str, refs: list[str], hyps: list[str]) -> float:
    """WER (CER for zh and ja) of a set after basic normalization."""
    wrong, units = errors(language, refs, hyps)
    return wrong / units if units else 0.0
