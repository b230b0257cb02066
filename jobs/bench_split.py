"""Benchmark: one long file on 1, 2 and 4 workers (split at voice-activity boundaries and stitched).

    python -m jobs.bench_split [--minutes 10] [--workers 1,2,4] [--device cuda] [--json bench-results/split.json]

The long file is the shared clips concatenated (reshuffled rounds, 0.5 s silences). Every run uses the same
pool code on one embedded Ray cluster that declares as many logical CPUs as the largest worker count (the
stand-in for GPUs: one worker per "GPU", one thread each); 1 worker means no split. Speed-up is the 1-worker
wall time over the N-worker wall time, in the same run, each the median of ``--rounds`` runs taken in
alternating order. A machine with fewer physical cores than N can't
show more than (cores) x: the table says how many it has. With ``--device cuda`` the workers share one GPU
(1/N each, float16): the speed-up then shows how well one GPU is kept busy, not more hardware.

What the hardware allows, measured (CPU only): N plain processes, no Ray and no coordinator, each with the same
engine and one thread, decode the same stretch of the file (its first eighth, cut between windows, speech clips
given) at once, started together after loading the model (median of 3 or more rounds). N times the 1-process
time over the N-process time is the machine's own N-way decoding ceiling: below N on shared or hyper-threaded
cores, where each thread slows down while the others run. ``of ceiling`` is the split's speed-up over it. The
split also pays for what no hardware removes: the voice-activity pass before the pieces, and whole 30 s
windows as the smallest piece.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from jobs.benchmark import gpu_name, machine_info
from jobs.harness.audio import build_long_form, shared_clips, write_wav
from jobs.harness.ray_cluster import embedded_ray
from jobs.harness.speech import speech_dir, wer
from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.work import WorkItem

TARGET_EFFICIENCY = 0.8  # speed-up >= 0.8 N where the hardware allows


def run_once(path: Path, workers: int, seconds: float, device: str = "cpu") -> dict[str, Any]:
    """Transcribe ``path`` with a fresh pool of ``workers`` one-thread workers; model loading is excluded."""
    from actors.pool import WhisperPool
    from rayscribe.config.settings import load_settings

    # compute type auto: float16 on cuda, int8 on the CPU
    settings = load_settings(device=device, gpu_per_worker=1.0 / workers, cpu_threads=1, cpus_per_worker=1,
                             language="en", split_seconds=min(600.0, seconds / 2), split_piece_seconds=300,
                             log_level="WARNING")
    pool = WhisperPool(settings, workers=workers)
    pool.start()
    try:
        item = WorkItem(key="long", name=str(path), source=str(path), duration=seconds)
        started = time.perf_counter()
        [result] = pool.run([item], lambda i: Path(i.source).read_bytes())
        wall = time.perf_counter() - started
    finally:
        pool.stop()
    if not result.ok or result.transcript is None:
        raise RuntimeError(f"{workers} worker(s): {result.error}")
    return {"workers": workers, "wall_seconds": round(wall, 2), "pieces": result.worker.get("pieces", 1),
            "workers_used": result.worker.get("workers_used", 1),
            "plan_seconds": result.worker.get("plan_seconds", 0.0),
            "piece_seconds": result.worker.get("piece_seconds", []), "text": result.transcript.text,
            "speed_x_real_time": round(seconds / wall, 2)}


def _plain_part(path: str, first: int, last: int, clips: list[dict], start: Any, spans: Any, rounds: int) -> None:
    """In a fresh process: load the engine; then ``rounds`` times wait at the ``start`` barrier with the other
    processes, decode samples ``first:last`` with their speech ``clips`` and put the decode's wall-clock (start,
    end) on ``spans``. The first round is cold, like the benchmark's workers, which get a fresh pool per run."""
    from rayscribe.config.settings import load_settings
    from rayscribe.engines import TranscribeOptions, create_engine

    settings = load_settings(device="cpu", cpu_threads=1, cpus_per_worker=1, language="en", log_level="WARNING")
    engine = create_engine(settings)
    audio = decode_audio(Path(path).read_bytes(), name=path)[first:last]
    options = TranscribeOptions.from_settings(settings)
    for number in range(rounds):
        start.wait()
        begun = time.time()
        engine.transcribe_many([audio], options, speech=[clips])
        spans.put((number, begun, time.time()))


CEILING_SHARE = 8  # each plain process decodes the first of this many pieces of the file


def plain_ceiling(path: Path, counts: list[int], rounds: int = 3) -> dict[int, float]:
    """Wall seconds (median of ``rounds``) for N plain processes (N in ``counts``) to decode the same stretch of
    the file at once: the machine's own limit on N-way decoding, without Ray, splitting or uneven pieces."""
    from multiprocessing import get_context

    from rayscribe.splitting import cut_audio, plan_pieces, speech_clips, window_cuts

    audio = decode_audio(path.read_bytes(), name=str(path))
    clips = speech_clips(audio)
    first = plan_pieces(audio.shape[0] / SAMPLE_RATE, window_cuts(clips), CEILING_SHARE)[0]
    stretch = cut_audio(audio, [first], clips)[0]
    context = get_context("spawn")
    walls: dict[int, float] = {}
    for n in counts:
        start, spans = context.Barrier(n), context.Queue()
        processes = [context.Process(target=_plain_part, args=(str(path), 0, stretch.samples.shape[0],
                                                               stretch.clips, start, spans, rounds))
                     for _ in range(n)]
        for process in processes:
            process.start()
        got = [spans.get(timeout=600) for _ in range(n * rounds)]
        for process in processes:
            process.join()
        walls[n] = round(statistics.median(
            max(end for k, _, end in got if k == number) - min(begun for k, begun, _ in got if k == number)
            for number in range(rounds)), 3)
    return walls


def benchmark(minutes: float, counts: list[int], work: Path, device: str = "cpu", rounds: int = 1,
              ceiling: bool = True) -> dict[str, Any]:
    from actors.cluster import worker_env

    wavs, _ = shared_clips(speech_dir())
    audio, reference = build_long_form([(decode_audio(c.path), c.text) for c in wavs], minutes * 60)
    seconds = audio.shape[0] / SAMPLE_RATE
    path = work / "long.wav"
    write_wav(path, audio)
    with embedded_ray(max(counts), num_gpus=1 if device == "cuda" else 0, temp_dir=work / "ray",
                      runtime_env={"env_vars": worker_env()}):
        if device == "cuda":  # untimed: the first run on a GPU pays for clocks and kernel caches (3x slower)
            run_once(path, 1, seconds, device)
        tries: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
        for number in range(rounds):  # the order flips every round, so drift on a noisy machine evens out
            for n in (counts if number % 2 == 0 else counts[::-1]):
                tries[n].append(run_once(path, n, seconds, device))
    plain = plain_ceiling(path, counts, max(3, rounds)) if ceiling and device == "cpu" and 1 in counts else {}
    runs = []
    for n in counts:
        walls = [t["wall_seconds"] for t in tries[n]]
        runs.append({**tries[n][0], "wall_seconds": round(statistics.median(walls), 2), "walls": walls,
                     "speed_x_real_time": round(seconds / statistics.median(walls), 2)})
    base = next((r for r in runs if r["workers"] == 1), runs[0])
    for r in runs:
        r["speed_up"] = round(base["wall_seconds"] / r["wall_seconds"], 2)
        r["efficiency"] = round(r["speed_up"] / r["workers"], 2)
        r["wer"] = round(wer([reference], [r["text"]]), 4)
        r["wer_vs_unsplit"] = round(wer([base["text"]], [r["text"]]), 4)
        hardware = 1 if device == "cuda" else min(r["workers"], os.cpu_count() or 1)
        r["target_met"] = r["speed_up"] >= TARGET_EFFICIENCY * hardware
        if plain:
            r["plain_stretch_seconds"] = plain[r["workers"]]
            r["hardware_ceiling"] = round(r["workers"] * plain[1] / plain[r["workers"]], 2)
            r["of_ceiling"] = round(r["speed_up"] / r["hardware_ceiling"], 2)
            # where the machine's own ceiling is below 0.8 N, the hardware does not allow the target
            r["hardware_allows_target"] = r["hardware_ceiling"] >= TARGET_EFFICIENCY * r["workers"]
    for r in runs:
        del r["text"]
    return {"audio_seconds": round(seconds, 1), "machine": machine_info(), "cpu_count": os.cpu_count(),
            "device": device, "gpu": gpu_name() if device == "cuda" else None,
            "target": f"speed-up >= {TARGET_EFFICIENCY} N where the machine's own N-way ceiling allows it",
            "runs": runs}


def _verdict(run: dict[str, Any]) -> str:
    if run["target_met"]:
        return "met"
    return "NOT met" if run.get("hardware_allows_target", True) else "hardware below 0.8 N"


def render(results: dict[str, Any]) -> None:
    where = f"sharing one {results['gpu']}" if results.get("gpu") else f"{results['cpu_count']} cores here"
    table = Table(title=f"one {results['audio_seconds'] / 60:.1f} min file across workers "
                        f"({where}; target {results['target']})")
    for column in ("workers", "pieces", "wall s", "x real time", "speed-up", "efficiency", "plain ceiling",
                   "of ceiling", "WER", "WER vs unsplit", "target"):
        table.add_column(column, justify="right")
    for r in results["runs"]:
        ceiling = f"{r['hardware_ceiling']:.2f}" if "hardware_ceiling" in r else "-"
        share = f"{r['of_ceiling']:.2f}" if "of_ceiling" in r else "-"
        table.add_row(str(r["workers"]), str(r["pieces"]), f"{r['wall_seconds']:.1f}",
                      f"{r['speed_x_real_time']:.1f}", f"{r['speed_up']:.2f}", f"{r['efficiency']:.2f}", ceiling,
                      share, f"{r['wer']:.3f}", f"{r['wer_vs_unsplit']:.3f}", _verdict(r))
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobs.bench_split", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long file (default 10)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to run (default 1,2,4)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per worker count; the median counts (default 3)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (one thread per worker, the default) or cuda (workers share one GPU)")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="skip the plain-process peer that measures the machine's own N-way ceiling (CPU)")
    parser.add_argument("--json", type=Path, default=Path("bench-results/split.json"))
    args = parser.parse_args(argv)
    counts = sorted({int(n) for n in args.workers.split(",")})
    with tempfile.TemporaryDirectory(prefix="rs-split-") as work:
        results = benchmark(args.minutes, counts, Path(work), args.device, args.rounds, not args.no_ceiling)
    results["command"] = " ".join(["python -m jobs.bench_split", *(sys.argv[1:] if argv is None else argv)])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    render(results)
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
