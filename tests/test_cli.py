"""``rayscribe transcribe`` as a user runs it: a real process, real audio, a real Ray cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.outputs import check_output_folder
from tests.speech import REPO, SAMPLES, normalize, references, require_speech, wer

RAYSCRIBE = str(Path(sys.executable).parent / "rayscribe")
FORMATS = ("txt", "srt", "vtt", "json")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([RAYSCRIBE, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def all_clips(tmp_path_factory) -> Path:
    """The 42 shared clips in one folder tree (ljspeech/, librivox/, jfk/), plus one corrupt file."""
    root = require_speech()
    folder = tmp_path_factory.mktemp("speech")
    for sub in ("ljspeech", "librivox", "jfk"):
        shutil.copytree(root / sub, folder / sub, ignore=shutil.ignore_patterns("*.tsv"))
    return folder


@pytest.fixture(scope="module")
def cli_run(ray_cluster, all_clips: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-out")
    proc = run_cli("transcribe", str(all_clips), "--out", str(out), "--format", ",".join(FORMATS),
                   "--address", ray_cluster.address)
    return proc, out


def test_cli_transcribes_every_clip_as_accurately_as_the_direct_engine(cli_run, all_clips, direct_texts) -> None:
    proc, out = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = require_speech()
    all_refs, all_ours, all_direct = [], [], []
    for folder in ("ljspeech", "librivox", "jfk"):
        refs = references(str(root / folder))
        stems = [f"{folder}/{n}" if folder != "jfk" else f"jfk/{n}" for n in refs]
        # jfk.{wav,mp3,flac} share a stem, so they keep their extensions; the others drop theirs
        stems = [s if folder == "jfk" else s.rsplit(".", 1)[0] for s in stems]
        transcripts = check_output_folder(out, stems, FORMATS)
        ours = wer(list(refs.values()), [transcripts[s].text for s in stems])
        direct = wer(list(refs.values()), [direct_texts[f"{folder}/{n}"] for n in refs])
        # Packing short files into shared windows changes each file's decoding context, which flips single
        # words either way; a set of 3-5 clips can't resolve less than one word, so allow that much per set.
        one_word = 1 / sum(len(normalize(r).split()) for r in refs.values())
        assert ours <= direct + max(0.002, one_word), f"{folder}: rayscribe WER {ours:.4f} vs {direct:.4f}"
        all_refs += list(refs.values())
        all_ours += [transcripts[s].text for s in stems]
        all_direct += [direct_texts[f"{folder}/{n}"] for n in refs]
    ours, direct = wer(all_refs, all_ours), wer(all_refs, all_direct)
    assert ours <= direct + 0.002, f"all clips: rayscribe WER {ours:.4f} vs direct {direct:.4f}"
    summary = json.loads((out / "rayscribe-summary.json").read_text())
    assert summary["transcribed"] == 42 and summary["failed"] == []
    assert summary["audio_seconds"] == pytest.approx(283, abs=3)
    assert "speed" in proc.stderr and "282.6 s" in proc.stderr  # the summary table


def test_cli_resumes_and_overwrites(cli_run, ray_cluster, all_clips) -> None:
    _, out = cli_run  # the first run wrote out/librivox/<stem>.*
    fmt = ",".join(FORMATS)
    again = run_cli("transcribe", str(all_clips / "librivox"), "--out", str(out / "librivox"),
                    "--address", ray_cluster.address, "--format", fmt)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads((out / "librivox" / "rayscribe-summary.json").read_text())
    assert summary["transcribed"] == 0 and len(summary["skipped"]) == 5
    srt_file = out / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.srt"
    before = srt_file.stat().st_mtime_ns
    forced = run_cli("transcribe", str(all_clips / "librivox" / srt_file.with_suffix(".wav").name), "--out",
                     str(out / "librivox"), "--address", ray_cluster.address, "--overwrite", "--format", fmt)
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert srt_file.stat().st_mtime_ns > before
    assert json.loads((out / "librivox" / "rayscribe-summary.json").read_text())["transcribed"] == 1


def test_cli_corrupt_file_fails_alone_with_exit_code_1(ray_cluster, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLES / "jfk.mp3", folder / "good.mp3")
    (folder / "bad.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 64)
    (folder / "notes.txt").write_text("not audio, and not picked up by extension")
    proc = run_cli("transcribe", str(folder), "--out", str(tmp_path / "out"), "--address", ray_cluster.address)
    assert proc.returncode == 1
    assert (tmp_path / "out" / "good.txt").read_text().lower().count("ask not") == 1
    assert not (tmp_path / "out" / "bad.txt").exists()
    # one line names the whole path and the reason, however long the path (a table used to cut it at 80 columns)
    assert any(str(folder / "bad.wav") in line and "cannot decode audio" in line for line in proc.stderr.splitlines())
    assert "Traceback" not in proc.stderr
    summary = json.loads((tmp_path / "out" / "rayscribe-summary.json").read_text())
    assert [f["file"].rsplit("/", 1)[-1] for f in summary["failed"]] == ["bad.wav"]


def test_cli_bad_input_and_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    missing = run_cli("transcribe", str(tmp_path / "nope.wav"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    bad = run_cli("transcribe", str(SAMPLES), "--out", str(tmp_path / "o"), env={"RAYSCRIBE_DEVICE": "tpu"})
    assert bad.returncode == 2 and "RAYSCRIBE_DEVICE" in bad.stderr and "'cuda'" in bad.stderr
    fmt = run_cli("transcribe", str(SAMPLES), "--out", str(tmp_path / "o"), "--format", "srt,pdf")
    assert fmt.returncode == 2 and "pdf" in fmt.stderr and "verbose_json" in fmt.stderr


def test_cli_embedded_cluster_on_the_bundled_samples(tmp_path: Path) -> None:
    """The README's first command: no --address, so the CLI starts and stops its own local Ray; the default model
    (multilingual base, written out because tests/conftest.py sets tiny.en) on the English and German samples."""
    proc = run_cli("transcribe", str(SAMPLES), "--out", str(tmp_path), "--print", "--format", "txt,json",
                   env={"RAYSCRIBE_MODEL": "base", "RAYSCRIBE_DETECT_MODEL": "base"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    refs = references(str(SAMPLES))
    english = [n for n in refs if not n.startswith("fleurs_de")]
    texts = [(tmp_path / f"{Path(n).stem}.txt").read_text() for n in english]
    assert wer([refs[n] for n in english], texts) < 0.1
    assert "fellow Americans" in proc.stdout + proc.stderr  # --print shows the transcripts
    german = json.loads((tmp_path / "fleurs_de_001.json").read_text())
    assert (german["language"], german["model"]) == ("de", "base") and german["language_probability"] > 0.9
    assert "dinosaurier" in german["text"].lower()
    assert json.loads((tmp_path / "jfk.json").read_text())["language"] == "en"


def test_cli_output_keeps_the_ray_workers_log_lines_out(cli_run) -> None:
    """The transcripts and the summary are for people: the workers' INFO lines stay in Ray's log files."""
    proc, _ = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(WhisperWorker" not in proc.stdout + proc.stderr and "model loaded" not in proc.stderr


def test_cli_verbose_shows_the_ray_workers_log_lines(ray_cluster, tmp_path: Path) -> None:
    proc = run_cli("transcribe", str(SAMPLES / "jfk.mp3"), "--out", str(tmp_path), "--address", ray_cluster.address,
                   "--workers", "1", "--print", "--verbose")
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "(WhisperWorker" in output and "model loaded" in output, output[-3000:]
    assert "fellow Americans" in output


def test_cli_a_worker_that_cannot_start_says_why_without_verbose(ray_cluster, tmp_path: Path) -> None:
    """With the workers' lines off the terminal, the reason a worker failed still reaches it, as one line."""
    (tmp_path / "notamodel").mkdir()
    proc = run_cli("transcribe", str(SAMPLES / "jfk.mp3"), "--out", str(tmp_path / "out"), "--address",
                   ray_cluster.address, "--workers", "1", "--model", str(tmp_path / "notamodel"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "a Whisper worker could not start" in proc.stderr and "not a CTranslate2" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "(WhisperWorker" not in proc.stderr
