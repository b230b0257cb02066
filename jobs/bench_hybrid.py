"""Benchmark: the hybrid path (Whisper and Voxtral started on the same audio at once, in one placement group)
against the sequential one (transcribe, then analyse) on the same clips in one run.

    python -m jobs.bench_hybrid [--voxtral-model DIR] [--rounds 2] [--json bench-results/hybrid.json]

Without ``--voxtral-model`` a tiny random-weight Voxtral is built (the real weights can't be fetched on these
machines), so the analysis times are the pipeline's, not the 3B model's. The same two actors serve both modes,
clip by clip, alternating which mode goes first, so both see the same load. Reported: wall time to the
transcript and to the analysis (median over clips and rounds), and the memory each actor holds afterwards (host
RSS and its peak; torch's GPU allocation for Voxtral on CUDA). On a cluster without GPUs the group is given one
*logical* GPU, so the placement group is the real one and the models run on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def load_clips(limit: int) -> list[tuple[str, bytes]]:
    speech = Path(os.environ.get("RAYSCRIBE_SPEECH_DIR", REPO.parent / "shared" / "data" / "speech"))
    paths = [*sorted((REPO / "samples").glob("*.wav")), REPO / "samples" / "jfk.mp3"]
    paths += sorted(speech.glob("ljspeech/*.wav"))
    return [(p.name, p.read_bytes()) for p in paths[:limit]]


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


def run(model: str, clips: list[tuple[str, bytes]], rounds: int, max_new_tokens: int) -> dict[str, Any]:
    import ray

    from actors.hybrid import HybridGroup
    from rayscribe.config.settings import load_settings
    from rayscribe.config.voxtral import load_voxtral_settings
    from rayscribe.engines.voxtral_engine import AnalyzeOptions
    from rayscribe.work import WorkItem

    temp_dir = tempfile.mkdtemp(prefix="rs-bh-")
    real_gpus = 0
    try:
        import torch

        real_gpus = torch.cuda.device_count()
    except Exception:
        pass
    ray.init(address="local", num_cpus=max(2, os.cpu_count() or 2), num_gpus=real_gpus or 1,
             include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    try:
        settings = load_settings(cpu_threads=1, beam_size=1)
        vsettings = load_voxtral_settings(voxtral_model=model, voxtral_max_new_tokens=max_new_tokens,
                                          voxtral_cpus=1)
        group = HybridGroup(settings, vsettings, use_gpu=True)
        started = time.perf_counter()
        infos = group.start(timeout=600)
        load_seconds = time.perf_counter() - started
        options = AnalyzeOptions(task="summary")
        for _ in group.run(clips[0][1], clips[0][0], options):  # warm-up: first calls pay lazy set-up
            pass
        times: dict[str, dict[str, list[float]]] = {m: {"transcript": [], "analysis": [], "both": []}
                                                    for m in ("hybrid", "sequential")}
        for r in range(rounds):
            for i, (name, data) in enumerate(clips):
                order = ("hybrid", "sequential") if (i + r) % 2 == 0 else ("sequential", "hybrid")
                for mode in order:
                    if mode == "hybrid":
                        seen = list(group.run(data, name, options))
                        for event in seen:
                            times[mode][event.kind].append(event.seconds)
                        times[mode]["both"].append(max(event.seconds for event in seen))
                        continue
                    t0 = time.perf_counter()
                    ref = ray.put(data)
                    ray.get(group.whisper.transcribe.remote([WorkItem(key=name, name=name, source=name)], [ref]))
                    times[mode]["transcript"].append(time.perf_counter() - t0)
                    ray.get(group.voxtral.analyze.remote(ref, options, name))
                    times[mode]["analysis"].append(time.perf_counter() - t0)
                    times[mode]["both"].append(time.perf_counter() - t0)
        memory = group.memory()
        group.stop()
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    result: dict[str, Any] = {
        "load_seconds": round(load_seconds, 2), "gpus": real_gpus, "logical_gpu": real_gpus == 0,
        "placement": {k: {f: v.get(f) for f in ("node_id", "gpu_ids", "device", "model")} for k, v in infos.items()},
        "memory_mb": {actor: {k: round(v / 2**20, 1) for k, v in m.items()} for actor, m in memory.items()},
    }
    for mode, kinds in times.items():
        result[mode] = {f"{kind}_s_median": _median(v) for kind, v in kinds.items()}
        result[mode]["samples"] = len(kinds["analysis"])
    result["ratios"] = {
        "analysis_time_hybrid_over_sequential": round(result["hybrid"]["analysis_s_median"]
                                                      / result["sequential"]["analysis_s_median"], 3),
        "transcript_time_hybrid_over_sequential": round(result["hybrid"]["transcript_s_median"]
                                                        / result["sequential"]["transcript_s_median"], 3),
        "both_done_hybrid_over_sequential": round(result["hybrid"]["both_s_median"]
                                                  / result["sequential"]["both_s_median"], 3),
    }
    return result


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"hybrid vs sequential ({report['clips']} clips x {report['rounds']} rounds, "
                        f"Voxtral: {report['voxtral_model']})")
    for column in ("mode", "to transcript s (median)", "to analysis s (median)", "to both s (median)", "samples"):
        table.add_column(column, justify="right")
    for mode in ("hybrid", "sequential"):
        r = report["result"][mode]
        table.add_row(mode, str(r["transcript_s_median"]), str(r["analysis_s_median"]), str(r["both_s_median"]),
                      str(r["samples"]))
    console = Console()
    console.print(table)
    result = report["result"]
    console.print(f"ratios: {result['ratios']}; memory per actor (MB): {result['memory_mb']}; "
                  f"placement: {result['placement']}", highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxtral-model", default=None, help="a Voxtral folder; default: build a tiny one")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--json", type=Path, default=REPO / "bench-results" / "hybrid.json")
    args = parser.parse_args()
    scratch = None
    model = args.voxtral_model
    if model is None:
        from rayscribe.engines.voxtral_tiny import build_tiny_voxtral

        scratch = tempfile.mkdtemp(prefix="rs-tinyvox-")
        model = str(build_tiny_voxtral(Path(scratch) / "tiny-voxtral"))
    clips = load_clips(args.clips)
    report: dict[str, Any] = {
        "clips": len(clips), "rounds": args.rounds, "max_new_tokens": args.max_new_tokens,
        "voxtral_model": Path(model).name,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": os.getloadavg()},
    }
    try:
        report["result"] = run(model, clips, args.rounds, args.max_new_tokens)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    report["machine"]["load_avg_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    render(report)


if __name__ == "__main__":
    main()
