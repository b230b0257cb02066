"""Long-form, whole commands: ``rayscribe transcribe --address <running cluster>`` against faster-whisper's
``BatchedInferencePipeline`` called directly (``cpu_threads=2``), each a fresh subprocess timed from start to
exit, on one long-form WAV built from the shared clips (:func:`jobs.harness.audio.build_long_form`).

This is what a user sees (issue 19 item 10): process start, imports, joining Ray, the pool's start-up (model
loads) and the outputs all count. rayscribe runs twice on the same running cluster: the first command (cold)
starts the warm pool, the second (warm) finds it (:mod:`actors.pool.warm`). Called by ``python -m jobs.benchmark``
(``--only longform`` runs just this); the direct contender is this module run with ``--direct FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.harness.audio import Clip
from jobs.harness.processes import timed_command

TARGET = 1.0  # rayscribe whole-command speed / direct faster-whisper whole-command speed
THREADS = 2
BIN = Path(sys.executable).parent


RUNS = (  # (name, rayscribe?, RAYSCRIBE_WARM_POOL): direct runs on either side show the machine's drift
    ("direct", False, ""), ("rayscribe_no_warm_pool", True, "false"), ("rayscribe_cold", True, "true"),
    ("rayscribe_warm", True, "true"), ("direct_again", False, ""),
)


def whole_commands(clip: Clip, address: str, work: Path, *, model: str = "tiny.en",
                   env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Each of :data:`RUNS` as a fresh subprocess on ``clip``: direct faster-whisper, ``rayscribe transcribe
    --address`` with warm sets off (every command starts its own workers, as before them), then twice with them
    on (the first builds the warm set, the second reuses it), and direct again; name -> {wall_seconds, text,
    log}. The warm set is left for its idle timeout (or the caller's cluster stop)."""
    from rayscribe.transcript import Transcript

    work.mkdir(parents=True, exist_ok=True)
    base = {**(env or os.environ), "RAYSCRIBE_MODEL": model}
    runs: dict[str, dict[str, Any]] = {}
    for name, ours, warm in RUNS:
        log = work / f"{name}.log"
        if not ours:
            out_txt = work / f"{name}.txt"
            wall = timed_command([str(BIN / "python"), "-m", "jobs.bench_longform", "--direct", str(clip.path),
                                  "--model", model, "--out", str(out_txt)], base, log)
            text = out_txt.read_text(encoding="utf-8")
        else:
            out = work / f"out-{name}"
            wall = timed_command([str(BIN / "rayscribe"), "transcribe", str(clip.path), "--out", str(out),
                                  "--address", address, "--overwrite"], {**base, "RAYSCRIBE_WARM_POOL": warm}, log)
            text = Transcript.from_dict(json.loads((out / f"{clip.path.stem}.json").read_text())).text
        runs[name] = {"wall_seconds": round(wall, 3), "text": text, "log": str(log)}
        print(f"[long_form_command] {name}: {wall:.1f} s", flush=True)
    return runs


def longform_ratio(runs: dict[str, dict[str, Any]], audio_seconds: float) -> dict[str, Any]:
    """Whole-command speed of each rayscribe run over direct faster-whisper's (the mean of the direct runs before
    and after); the two direct runs' spread says how much the machine's load moved meanwhile."""
    directs = [runs[n]["wall_seconds"] for n in ("direct", "direct_again") if n in runs]
    direct = sum(directs) / len(directs)
    walls = {n: runs[n]["wall_seconds"] for n in runs if n.startswith("rayscribe")}
    by_run = {n: round(direct / w, 3) for n, w in walls.items()}
    return {"target": TARGET, "audio_seconds": round(audio_seconds, 1), "direct_wall_seconds": directs,
            "direct_spread": round((max(directs) - min(directs)) / direct, 3), "rayscribe_wall_seconds": walls,
            "by_run": by_run, "cold": by_run.get("rayscribe_cold"), "warm": by_run.get("rayscribe_warm"),
            "met": by_run.get("rayscribe_warm", 0.0) >= TARGET}


def command_ratio(rows: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """:func:`longform_ratio` from the benchmark's rows (scenario ``long_form_command``, layout = run name)."""
    runs = {r.layout: {"wall_seconds": r.wall_seconds} for r in rows if r.scenario == "long_form_command"}
    if "direct" not in runs or not any(n.startswith("rayscribe") for n in runs):
        return {}
    audio = next(r.audio_seconds for r in rows if r.scenario == "long_form_command")
    return {"long_form_command": longform_ratio(runs, audio)}


# -- the direct contender, in its own process -------------------------------------------------------------


def direct(path: str, model: str, out: Path, threads: int = THREADS) -> None:
    """What a user of faster-whisper writes: load the model, transcribe with the batched pipeline (VAD, words),
    write the text. Same engine options as rayscribe's defaults (batch 8, beam 5, word timestamps)."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from rayscribe.engines.model_paths import resolve_model

    whisper = WhisperModel(resolve_model(model), device="cpu", compute_type="int8", cpu_threads=threads)
    segments, _ = BatchedInferencePipeline(whisper).transcribe(path, batch_size=8, word_timestamps=True)
    out.write_text(" ".join(s.text.strip() for s in segments), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.bench_longform", description=__doc__.split("\n")[0])
    parser.add_argument("--direct", required=True, help="transcribe this file with faster-whisper directly")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "direct.txt")
    args = parser.parse_args(argv)
    direct(args.direct, args.model, args.out)


if __name__ == "__main__":
    main()
