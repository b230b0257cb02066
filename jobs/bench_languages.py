"""Languages benchmark: the multilingual dev set and a mixed English + multilingual set, as whole commands.

    python -m jobs.bench_languages [--quick] [--json PATH]
    python -m jobs.benchmark --only languages

Contenders, each a whole command a user runs (start-up, model load and language detection inside the wall time):

- ``rayscribe transcribe`` with the default multilingual model (``base``);
- the same with ``RAYSCRIBE_ENGLISH_MODEL=tiny.en`` (files detected as English go to the English model);
- a per-file faster-whisper loop (``WhisperModel.transcribe`` on each file, the same ``base`` model, int8, 2
  threads, beam 5), in a fresh process;
- the same loop told each file's language, to show what detection costs.

Scores: speed (audio seconds per wall second), language detection accuracy, and per language the error rate after
Whisper's basic normaliser (English's for English): WER for space-separated languages, CER for zh and ja.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobs.harness.audio import shared_clips, spread
from jobs.harness.multilingual import error_rate as basic_error_rate
from jobs.harness.multilingual import multilingual_clips as harness_clips
from jobs.harness.processes import timed_command
from jobs.harness.speech import speech_dir, wer
from rayscribe.audio import SAMPLE_RATE, decode_audio

MODEL = "base"
ENGLISH_MODEL = "tiny.en"
THREADS = 2
QUICK_ENGLISH = 8
BIN = Path(sys.executable).parent


@dataclass
class Clip:
    path: Path
    language: str
    reference: str
    seconds: float


@dataclass
class Run:
    """One contender on one set."""

    set_name: str
    contender: str
    files: int
    audio_seconds: float
    wall_seconds: float
    detected_right: int
    error_rates: dict[str, float]  # language -> WER or CER
    models: dict[str, int] = field(default_factory=dict)  # model named by the output -> files
    failed: int = 0

    @property
    def speed(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def multilingual_clips() -> list[Clip]:
    """Every clip of the multilingual dev set with its language (the folder name), reference and length."""
    return [Clip(c.path, c.language, c.reference, decode_audio(c.path).shape[0] / SAMPLE_RATE)
            for c in harness_clips()]


def english_clips(count: int | None) -> list[Clip]:
    _, every = shared_clips(speech_dir())
    picked = spread(every, count) if count else every
    return [Clip(c.path, "en", c.text, c.seconds) for c in picked]


def error_rate(language: str, refs: list[str], hyps: list[str]) -> float:
    """WER (CER for zh and ja) after Whisper's basic normaliser; English's own normaliser for English."""
    if language == "en":
        return wer(refs, hyps)
    return basic_error_rate(language, refs, hyps)


def score(set_name: str, contender: str, clips: Sequence[Clip], wall: float,
          outputs: dict[str, dict[str, Any]]) -> Run:
    """``outputs``: clip path -> {"text", "language", "model"} (missing: the file failed)."""
    by_language: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    models: dict[str, int] = defaultdict(int)
    right = failed = 0
    for clip in clips:
        out = outputs.get(str(clip.path))
        if out is None:
            failed += 1
        right += bool(out and out.get("language") == clip.language)
        if out and out.get("model"):
            models[str(out["model"])] += 1
        refs, hyps = by_language[clip.language]
        refs.append(clip.reference)
        hyps.append(out["text"] if out else "")
    rates = {lang: round(error_rate(lang, refs, hyps), 4) for lang, (refs, hyps) in sorted(by_language.items())}
    return Run(set_name, contender, len(clips), round(sum(c.seconds for c in clips), 2), round(wall, 2), right,
               rates, dict(models), failed)


# -- contenders -----------------------------------------------------------------------------------------


def rayscribe_run(clips: Sequence[Clip], work: Path, english_model: str | None) -> tuple[float, dict[str, Any]]:
    """``rayscribe transcribe <files> --format json`` on its own embedded Ray; (wall, outputs)."""
    from rayscribe.file_jobs import discover_inputs

    out_dir = work / ("out-routed" if english_model else "out-default")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYSCRIBE_RAY_ADDRESS",
                                                            "RAYSCRIBE_LANGUAGE", "RAYSCRIBE_ENGLISH_MODEL")}
    env["RAYSCRIBE_MODEL"] = MODEL
    if english_model:
        env["RAYSCRIBE_ENGLISH_MODEL"] = english_model
    argv = [str(BIN / "rayscribe"), "transcribe", *[str(c.path) for c in clips], "--out", str(out_dir),
            "--format", "json", "--overwrite"]
    wall = timed_command(argv, env, work / f"{out_dir.name}.log", ok_codes=(0, 1))  # 1: some files failed
    stems = {str(i.path): i.stem for i in discover_inputs([str(c.path) for c in clips])}
    outputs = {}
    for clip in clips:
        path = out_dir / f"{stems.get(str(clip.path), clip.path.stem)}.json"
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            outputs[str(clip.path)] = {"text": data.get("text", ""), "language": data.get("language"),
                                       "model": data.get("model")}
    return wall, outputs


DIRECT_SCRIPT = """
import json, sys
from faster_whisper import WhisperModel
from rayscribe.engines.model_paths import resolve_model
files, languages, model_name, threads = json.loads(sys.argv[1])
model = WhisperModel(resolve_model(model_name), device="cpu", compute_type="int8", cpu_threads=threads)
out = {}
for path, language in zip(files, languages):
    segments, info = model.transcribe(path, language=language, beam_size=5)
    out[path] = {"text": " ".join(s.text.strip() for s in segments), "language": info.language,
                 "model": model_name}
print(json.dumps(out))
"""


def direct_run(clips: Sequence[Clip], work: Path, told_language: bool) -> tuple[float, dict[str, Any]]:
    """The per-file faster-whisper loop in a fresh process; (wall, outputs)."""
    args = json.dumps([[str(c.path) for c in clips], [c.language if told_language else None for c in clips],
                       MODEL, THREADS])
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", DIRECT_SCRIPT, args], capture_output=True, text=True,
                         timeout=3600, check=True)
    wall = time.perf_counter() - started
    (work / f"direct-{told_language}.log").write_text(run.stderr)
    return wall, json.loads(run.stdout.strip().splitlines()[-1])


def benchmark(work: Path, quick: bool) -> dict[str, Any]:
    multilingual = multilingual_clips()
    mixed = english_clips(QUICK_ENGLISH if quick else None) + multilingual
    runs: list[Run] = []
    for set_name, clips in (("multilingual", multilingual), ("mixed", mixed)):
        folder = work / set_name
        folder.mkdir(parents=True, exist_ok=True)
        contenders: list[tuple[str, str, Any]] = [
            ("faster-whisper loop", "direct", False),
            ("faster-whisper loop, language given", "direct", True),
            ("rayscribe", "rayscribe", None),
        ]
        if set_name == "mixed":
            contenders.append((f"rayscribe + english {ENGLISH_MODEL}", "rayscribe", ENGLISH_MODEL))
        for contender, kind, arg in contenders:
            wall, outputs = direct_run(clips, folder, arg) if kind == "direct" else rayscribe_run(clips, folder, arg)
            run = score(set_name, contender, clips, wall, outputs)
            runs.append(run)
            print(f"  {set_name:12} {contender:40} {run.wall_seconds:7.1f} s  {run.speed:5.2f}x  "
                  f"lang {run.detected_right}/{run.files}", flush=True)
    return {
        "date": datetime.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"model": MODEL, "english_model": ENGLISH_MODEL, "threads": THREADS, "compute_type": "int8",
                     "beam_size": 5, "quick": quick},
        "runs": [{**asdict(r), "speed": round(r.speed, 3)} for r in runs],
    }


def render(results: dict[str, Any]) -> None:
    runs = results["runs"]
    languages = sorted({lang for r in runs for lang in r["error_rates"]})
    print(f"\nLanguages ({results['date']}, {results['machine']['cpus']} CPUs; model {results['settings']['model']}; "
          "error rate: WER, CER for zh/ja)")
    header = f"{'set':12} {'contender':40} {'wall s':>7} {'speed':>6} {'lang ok':>8} " + " ".join(
        f"{lang:>6}" for lang in languages)
    print(header)
    for r in runs:
        rates = " ".join(f"{r['error_rates'][lang]:6.3f}" if lang in r["error_rates"] else f"{'':6}"
                         for lang in languages)
        print(f"{r['set_name']:12} {r['contender']:40} {r['wall_seconds']:7.1f} {r['speed']:5.2f}x "
              f"{r['detected_right']:>3}/{r['files']:<4} {rates}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.bench_languages", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ENGLISH} English clips in the mixed set")
    parser.add_argument("--json", type=Path, default=Path("bench-results/languages.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rs-bench-lang-") as work:
        results = benchmark(Path(work), args.quick)
    results["command"] = " ".join(["python -m jobs.bench_languages", *(sys.argv[1:] if argv is None else argv)])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    render(results)
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
