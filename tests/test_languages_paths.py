"""Every multilingual dev clip through the batch path (the CLI on the session's cluster, the default model) and
the queue path (moto, `rayscribe worker`): the language detected right and reported with its probability, and
the batch path's error rate per language no worse than faster-whisper called directly with the same model.

Each path runs the whole set once per module (26 clips, 197 s of speech)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobs.harness.multilingual import Clip, errors, multilingual_clips, multilingual_dir
from rayscribe.audio import decode_audio
from tests.fixtures_moto import unique_queue_env
from tests.speech import REPO
from tests.test_queue_worker import run_cli as run_queue_cli
from tests.test_queue_worker import s3_json, s3_text

RAYSCRIBE = str(Path(sys.executable).parent / "rayscribe")
# The default model, written out: tests/conftest.py sets the fast tiny.en for the rest of the suite.
DEFAULT_MODEL_ENV = {"RAYSCRIBE_MODEL": "base", "RAYSCRIBE_DETECT_MODEL": "base", "RAYSCRIBE_CPU_THREADS": "1"}
# Greedy on every path and in the direct pipeline they are compared with: faster than beam 5, same comparison
BEAM = 1
# base calls this clip's few words (a 4 s Picovoice test recording) Hindi or Greek, with a low probability,
# whichever way it is asked; every other clip is detected right.
HARD_CASE = "es/picovoice_cheetah_es"
# "beyond one word per set": one word, or two characters where characters are scored (zh, ja)
TOLERANCE = {"zh": 2, "ja": 2}


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    root = multilingual_dir()
    if not (root / "de" / "transcripts.tsv").exists():
        pytest.skip(f"multilingual clips not found at {root} (set RAYSCRIBE_MULTILINGUAL_DIR)")
    return multilingual_clips(root)


@pytest.fixture(scope="module")
def batch_run(ray_cluster, clips: list[Clip], tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    out = tmp_path_factory.mktemp("multilingual-out")
    proc = subprocess.run([RAYSCRIBE, "transcribe", str(multilingual_dir()), "--out", str(out), "--format",
                           "txt,json,verbose_json", "--address", ray_cluster.address, "--workers", "2"],
                          capture_output=True, text=True, timeout=1200, cwd=REPO,
                          env={**os.environ, **DEFAULT_MODEL_ENV, "RAYSCRIBE_BEAM_SIZE": str(BEAM)})
    return proc, out


@pytest.fixture(scope="module")
def direct(clips: list[Clip]) -> dict[str, tuple[str, str, float]]:
    """faster-whisper's BatchedInferencePipeline on each file, with the same model: (text, language, p)."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from rayscribe.engines.model_paths import resolve_model

    model = WhisperModel(resolve_model("base"), device="cpu", compute_type="int8", cpu_threads=2)
    pipeline = BatchedInferencePipeline(model)
    found = {}
    for clip in clips:
        segments, info = pipeline.transcribe(decode_audio(clip.path), batch_size=8, word_timestamps=True,
                                             beam_size=BEAM)
        found[clip.key] = (" ".join(s.text.strip() for s in segments), info.language, info.language_probability)
    return found


def _check_language(key: str, language: str, probability: float) -> None:
    if key == HARD_CASE:
        assert language != "es" and probability < 0.5, (key, language, probability)
    else:
        assert language == key.split("/")[0] and probability > 0.5, (key, language, probability)


def test_every_clip_is_detected_and_reported_through_the_batch_path(batch_run, clips: list[Clip]) -> None:
    proc, out = batch_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    for clip in clips:
        data = json.loads((out / f"{clip.key}.json").read_text())
        _check_language(clip.key, data["language"], data["language_probability"])
        meta = data["metadata"]
        assert (meta["language"], meta["language_probability"]) == (data["language"], data["language_probability"])
        assert data["model"] == meta["model"] == "base"
        verbose = json.loads((out / f"{clip.key}.verbose.json").read_text())
        assert verbose["language_probability"] == data["language_probability"]
    summary = json.loads((out / "rayscribe-summary.json").read_text())
    languages = summary["languages"]
    assert {lang for lang in languages} >= {"de", "fr", "es", "pt", "it", "ja", "zh"}
    assert sum(entry["files"] for entry in languages.values()) == len(clips) == summary["transcribed"]
    assert all(entry["models"] == ["base"] for entry in languages.values())
    assert {f["language"] for f in summary["per_file"]} == set(languages)


def test_batch_error_rate_per_language_is_no_worse_than_faster_whisper_direct(batch_run, clips, direct) -> None:
    proc, out = batch_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = []
    for language in sorted({c.language for c in clips}):
        chosen = [c for c in clips if c.language == language]
        refs = [c.reference for c in chosen]
        ours, _ = errors(language, refs, [(out / f"{c.key}.txt").read_text() for c in chosen])
        theirs, units = errors(language, refs, [direct[c.key][0] for c in chosen])
        report.append(f"{language}: rayscribe {ours}/{units}, direct {theirs}/{units}")
        assert ours <= theirs + TOLERANCE.get(language, 1), report
    print("; ".join(report))


def test_the_direct_pipeline_agrees_on_the_languages_but_one(direct, clips) -> None:
    """The peer detects with the same model: all right but the same hard case."""
    wrong = [key for key, (_, language, _) in direct.items() if language != key.split("/")[0]]
    assert wrong == [HARD_CASE], {k: direct[k][1:] for k in wrong}


@pytest.fixture(scope="module")
def queue_run(ray_cluster, moto_server, clips: list[Clip]) -> dict[str, Any]:
    """Every clip submitted with `rayscribe submit`, plus a German clip to translate and a French one with its
    language given; one `rayscribe worker --drain` with the default model (greedy: the language is the point)."""
    env = {**unique_queue_env("lang"), **DEFAULT_MODEL_ENV, "RAYSCRIBE_BEAM_SIZE": str(BEAM),
           "RAYSCRIBE_OUTPUT_FORMATS": "txt,json"}
    assert run_queue_cli("infra", "up", env=env).returncode == 0
    out = f"s3://{env['RAYSCRIBE_OUTPUT_BUCKET']}/transcripts/"
    submitted = run_queue_cli("submit", str(multilingual_dir()), "--out", out, env=env)
    assert submitted.returncode == 0, submitted.stderr
    by_stem = dict(reversed(line.split("\t")) for line in submitted.stdout.splitlines())
    jobs = {clip.key: by_stem[next(s for s in by_stem if Path(s).name == clip.path.name)] for clip in clips}
    root = multilingual_dir()
    extra = {"translate": run_queue_cli("submit", str(root / "de" / "fleurs_de_001.ogg"), "--out", out, "--task",
                                        "translate", env=env),
             "given": run_queue_cli("submit", str(root / "fr" / "fleurs_fr_005.ogg"), "--out", out, "--language",
                                    "fr", env=env)}
    for name, proc in extra.items():
        assert proc.returncode == 0, proc.stderr
        jobs[name] = proc.stdout.split("\t")[0]
    worker = run_queue_cli("worker", "--drain", "--address", ray_cluster.address, "--workers", "2", env=env,
                           timeout=1200)
    status = run_queue_cli("status", *jobs.values(), "--out", out, "--json", env=env)
    return {"jobs": jobs, "out": out, "worker": worker, "status": status, "env": env}


def test_every_clip_is_detected_and_reported_through_the_queue(queue_run, clips: list[Clip]) -> None:
    assert queue_run["worker"].returncode == 0, queue_run["worker"].stderr[-3000:]
    states = {json.loads(line)["job_id"]: json.loads(line) for line in queue_run["status"].stdout.splitlines()}
    for clip in clips:
        job_id = queue_run["jobs"][clip.key]
        metrics = states[job_id]["metrics"]
        _check_language(clip.key, metrics["language"], metrics["language_probability"])
        assert metrics["model"] == "base"
        data = s3_json(f"{queue_run['out']}{job_id}.json")
        assert (data["language"], data["model"]) == (metrics["language"], "base")
    human = run_queue_cli("status", queue_run["jobs"]["de/fleurs_de_001"], "--out", queue_run["out"],
                          env=queue_run["env"])
    assert "language de (p=" in human.stdout, human.stdout


def test_a_queue_message_can_ask_for_a_translation_or_fix_the_language(queue_run) -> None:
    translated = s3_text(f"{queue_run['out']}{queue_run['jobs']['translate']}.txt").lower()
    assert "dinosaur" in translated and "dinosaurier" not in translated, translated
    given = s3_json(f"{queue_run['out']}{queue_run['jobs']['given']}.json")
    assert (given["language"], given["language_probability"]) == ("fr", 1.0)
