"""Benchmark: the HTTP API on Ray Serve against the engine called directly, on the same 5-15 s clips.

    python -m jobs.bench_serve [--requests 32] [--json bench-results/serve.json]

One process: first the direct engine in-process (decode + ``transcribe``, one request at a time, then the
batch path: decode + ``transcribe_many`` in batches of 8), then an embedded Ray with the app (one model
replica with the same threads, batching up to 8) and HTTP clients at concurrency 1, 4, 8 and 16. Both sides
decode the same bytes, so the difference is what the HTTP layer, Serve's routing and the batch queue add.

Targets: p50 overhead over the direct call at concurrency 1 ≤ 10 ms; throughput at concurrency 8 ≥ 0.9x the
batch path's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.engines import TranscribeOptions, create_engine
from rayscribe.serve_settings import load_serve_settings
from rayscribe.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 4, 8, 16)
THREADS = 2
BATCH = 8


def _speech_dir() -> Path:
    return Path(os.environ.get("RAYSCRIBE_SPEECH_DIR", REPO.parent / "shared" / "data" / "speech"))


def load_clips(low: float = 5.0, high: float = 15.0) -> list[tuple[str, bytes, float]]:
    """(name, file bytes, seconds) of every shared clip between ``low`` and ``high`` seconds long."""
    clips = []
    for path in sorted(_speech_dir().glob("*/*.wav")) + sorted((REPO / "samples").glob("*.wav")):
        seconds = decode_audio(path).shape[0] / SAMPLE_RATE
        if low <= seconds <= high:
            clips.append((path.name, path.read_bytes(), seconds))
    if not clips:
        raise SystemExit(f"no 5-15 s clips under {_speech_dir()} (set RAYSCRIBE_SPEECH_DIR)")
    return clips


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _summary(latencies: list[float], wall: float, audio_seconds: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "p50_ms": round(_percentile(latencies, 0.5) * 1000, 1),
        "p95_ms": round(_percentile(latencies, 0.95) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "rps": round(len(latencies) / wall, 3),
        "audio_x_realtime": round(audio_seconds / wall, 1),
    }


def bench_direct(clips: list[tuple[str, bytes, float]], requests: int) -> dict[str, Any]:
    settings = load_settings(cpu_threads=THREADS)
    engine = create_engine(settings)
    options = TranscribeOptions.from_settings(settings)
    work = [clips[i % len(clips)] for i in range(requests)]
    engine.transcribe(decode_audio(work[0][1]), options)  # warm-up
    latencies = []
    started = time.perf_counter()
    for _, data, _ in work:
        t = time.perf_counter()
        engine.transcribe(decode_audio(data), options)
        latencies.append(time.perf_counter() - t)
    single = _summary(latencies, time.perf_counter() - started, sum(c[2] for c in work))
    started = time.perf_counter()
    for start in range(0, len(work), BATCH):
        group = work[start : start + BATCH]
        engine.transcribe_many([decode_audio(data) for _, data, _ in group], options)
    wall = time.perf_counter() - started
    batch = {"requests": len(work), "rps": round(len(work) / wall, 3),
             "audio_x_realtime": round(sum(c[2] for c in work) / wall, 1)}
    return {"direct_c1": single, "batch_path": batch, "engine": engine.describe()}


def bench_http(clips: list[tuple[str, bytes, float]], requests: int) -> dict[str, Any]:
    import ray
    from ray import serve

    from serve.app import build_app

    temp_dir = tempfile.mkdtemp(prefix="rs-bench-serve-")
    ray.init(address="local", num_cpus=THREADS, include_dashboard=False, log_to_driver=False,
             _temp_dir=temp_dir)
    try:
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve_settings = load_serve_settings(
            serve_host="127.0.0.1", serve_port=port, api_keys="", min_replicas=1, max_replicas=1,
            cpus_per_replica=THREADS - 0.2, max_batch_size=BATCH, max_queued_requests=-1,
        )
        serve.run(build_app(load_settings(cpu_threads=THREADS), serve_settings), name="bench", route_prefix="/")
        url = f"http://127.0.0.1:{port}/v1/audio/transcriptions"
        local = threading.local()

        def one(clip: tuple[str, bytes, float]) -> float:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(timeout=300)
            t = time.perf_counter()
            r = client.post(url, files={"file": (clip[0], clip[1], "audio/wav")}, data={"model": "whisper-1"})
            elapsed = time.perf_counter() - t
            r.raise_for_status()
            return elapsed

        for clip in clips[:3]:  # warm-up: proxy routes, replica, model
            one(clip)
        results: dict[str, Any] = {}
        for concurrency in CONCURRENCY:
            work = [clips[i % len(clips)] for i in range(max(requests, 2 * concurrency))]
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                latencies = list(pool.map(one, work))
            results[f"c{concurrency}"] = _summary(latencies, time.perf_counter() - started,
                                                  sum(c[2] for c in work))
        info = serve.get_deployment_handle("WhisperDeployment", "bench").info.remote().result(timeout_s=60)
        results["replica_batches"] = {k: info[k] for k in ("batches", "items", "largest_batch")}
        serve.shutdown()
        return results
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"rayscribe HTTP API vs direct engine ({report['clips']} clips, 5-15 s)")
    for column in ("path", "concurrency", "p50 ms", "p95 ms", "req/s", "x realtime"):
        table.add_column(column, justify="right")
    d = report["direct"]["direct_c1"]
    table.add_row("direct engine", "1", str(d["p50_ms"]), str(d["p95_ms"]), str(d["rps"]),
                  str(d["audio_x_realtime"]))
    b = report["direct"]["batch_path"]
    table.add_row(f"batch path (x{BATCH})", "-", "-", "-", str(b["rps"]), str(b["audio_x_realtime"]))
    for concurrency in CONCURRENCY:
        h = report["http"][f"c{concurrency}"]
        table.add_row("HTTP (Serve)", str(concurrency), str(h["p50_ms"]), str(h["p95_ms"]), str(h["rps"]),
                      str(h["audio_x_realtime"]))
    console = Console()
    console.print(table)
    t = report["targets"]
    console.print(f"p50 overhead at concurrency 1: {t['p50_overhead_ms_c1']} ms (target ≤ 10 ms); "
                  f"throughput at concurrency 8 / batch path: {t['throughput_ratio_c8']}x (target ≥ 0.9x); "
                  f"replica batches: {report['http']['replica_batches']}", highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    parser.add_argument("--json", type=Path, default=REPO / "bench-results" / "serve.json")
    args = parser.parse_args()
    clips = load_clips()
    report: dict[str, Any] = {
        "clips": len(clips), "clip_seconds": round(sum(c[2] for c in clips) / len(clips), 2),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_start": os.getloadavg()},
        "threads": THREADS,
    }
    report["direct"] = bench_direct(clips, args.requests)
    report["http"] = bench_http(clips, args.requests)
    report["machine"]["load_avg_end"] = os.getloadavg()
    report["targets"] = {
        "p50_overhead_ms_c1": round(report["http"]["c1"]["p50_ms"] - report["direct"]["direct_c1"]["p50_ms"], 1),
        "throughput_ratio_c8": round(report["http"]["c8"]["rps"] / report["direct"]["batch_path"]["rps"], 3),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    render(report)


if __name__ == "__main__":
    main()
