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
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.harness.audio import Clip

TARGET = 1.0  # rayscribe whole-command speed / direct faster-whisper whole-command speed
THREADS = 2
BIN = Path(sys.executable).parent


def _timed(argv: list[str], env: dict[str, str], log: Path) -> float:
    """Run one whole command (its output to ``log``); its wall seconds. Raises if it fails."""
    with log.open("w") as handle:
        started = time.perf_counter()
        run = subprocess.run(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=1800)
        wall = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} exited {run.returncode}; see {log}:\n{log.read_text()[-2000:]}")
    return wall


def whole_commands(clip: Clip, address: str, work: Path, *, model: str = "tiny.en",
                   env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Direct faster-whisper, then ``rayscribe transcribe`` twice (cold, warm) on the cluster at ``address``;
    name -> {wall_seconds, text, log}. The direct run goes first, while no rayscribe worker holds the cores."""
    from rayscribe.transcript import Transcript

    work.mkdir(parents=True, exist_ok=True)
    env = {**(env or os.environ), "RAYSCRIBE_MODEL": model}
    runs: dict[str, dict[str, Any]] = {}
    direct_out = work / "direct.txt"
    log = work / "direct.log"
    wall = _timed([str(BIN / "python"), "-m", "jobs.bench_longform", "--direct", str(clip.path), "--model", model,
                   "--out", str(direct_out)], env, log)
    runs["direct"] = {"wall_seconds": wall, "text": direct_out.read_text(), "log": str(log)}
    for name in ("cold", "warm"):
        out = work / f"out-{name}"
        log = work / f"{name}.log"
        wall = _timed([str(BIN / "rayscribe"), "transcribe", str(clip.path), "--out", str(out), "--address",
                       address, "--overwrite"], env, log)
        transcript = Transcript.from_dict(json.loads((out / f"{clip.path.stem}.json").read_text()))
        runs[name] = {"wall_seconds": wall, "text": transcript.text, "log": str(log)}
    return runs


def longform_ratio(runs: dict[str, dict[str, Any]], audio_seconds: float) -> dict[str, Any]:
    """rayscribe's whole-command speed over direct faster-whisper's, cold and warm."""
    direct = runs["direct"]["wall_seconds"]
    cold, warm = runs["cold"]["wall_seconds"], runs["warm"]["wall_seconds"]
    return {"target": TARGET, "audio_seconds": round(audio_seconds, 1), "direct_wall_seconds": round(direct, 2),
            "cold_wall_seconds": round(cold, 2), "warm_wall_seconds": round(warm, 2),
            "cold": round(direct / cold, 3), "warm": round(direct / warm, 3), "met": direct / warm >= TARGET}


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
