"""Benchmark: the HTTP API on Ray Serve against the engine called directly, on the same 5-15 s clips.

    python -m jobs.bench_serve [--requests 32] [--json bench-results/serve.json]

One process: an embedded Ray with the app (one model replica, batching up to 8) and, in this process, the same
engine with the same threads called directly. Concurrency 1 runs in pairs (direct call, HTTP request, same
clip, order alternating) and reports the median per-pair difference; then HTTP clients at concurrency 4, 8
and 16, with the batch path (decode + ``transcribe_many`` in batches of 8) measured just before and after
concurrency 8. Both sides decode the same bytes, so the difference is what the HTTP layer, Serve's routing
and the batch queue add.

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

from jobs.harness.ports import free_port
from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.config.serve import load_serve_settings
from rayscribe.config.settings import load_settings
from rayscribe.engines import TranscribeOptions, create_engine
from serve.proxy import THROUGHPUT_SWITCH, haproxy_on, use_haproxy

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 4, 8, 16)
THREADS = 2
BATCH = 8
INGRESS_GETS = 300


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


class Direct:
    """The engine in this process, with the replica's settings: the peer every HTTP figure is compared with."""

    def __init__(self) -> None:
        settings = load_settings(cpu_threads=THREADS)
        self.engine = create_engine(settings)
        self.options = TranscribeOptions.from_settings(settings)

    def one(self, clip: tuple[str, bytes, float]) -> tuple[float, float]:
        """(whole call, engine alone) in seconds: decoding the bytes and transcribing them."""
        started = time.perf_counter()
        audio = decode_audio(clip[1])
        decoded = time.perf_counter()
        self.engine.transcribe(audio, self.options)
        ended = time.perf_counter()
        return ended - started, ended - decoded

    def batch_path(self, work: list[tuple[str, bytes, float]]) -> dict[str, Any]:
        """Decode + ``transcribe_many`` in batches of :data:`BATCH`: the best the engine does without HTTP."""
        started = time.perf_counter()
        for start in range(0, len(work), BATCH):
            group = work[start : start + BATCH]
            self.engine.transcribe_many([decode_audio(data) for _, data, _ in group], self.options)
        wall = time.perf_counter() - started
        return {"requests": len(work), "rps": round(len(work) / wall, 3),
                "audio_x_realtime": round(sum(c[2] for c in work) / wall, 1)}


def _driver_handle(deployment: str) -> Any:
    """A handle on the benchmark app's ``deployment`` for this (synchronous) driver. Serve's throughput mode runs
    a handle's router on the caller's event loop, which a plain script lacks: this one gets its own."""
    from ray import serve

    handle = serve.get_deployment_handle(deployment, "bench")
    if os.environ.get(THROUGHPUT_SWITCH) == "1":
        handle._init(_run_router_in_separate_loop=True)
    return handle


def bench(clips: list[tuple[str, bytes, float]], requests: int) -> dict[str, Any]:
    """Both paths in one run. Concurrency 1 is measured in pairs (direct, then HTTP on the same clip, the
    order alternating) and the overhead is the median of the per-pair differences, so load that drifts
    during the run cancels out; the batch path is measured right before and right after concurrency 8."""
    import ray
    from ray import serve

    from serve.app import build_app

    temp_dir = tempfile.mkdtemp(prefix="rs-bench-serve-")
    ray.init(address="local", num_cpus=THREADS, include_dashboard=False, log_to_driver=False,
             _temp_dir=temp_dir)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve_settings = load_serve_settings(
            serve_host="127.0.0.1", serve_port=port, api_keys="", min_replicas=1, max_replicas=1,
            cpus_per_replica=THREADS - 0.2, max_batch_size=BATCH, max_queued_requests=-1,
        )
        serve.run(build_app(load_settings(cpu_threads=THREADS), serve_settings), name="bench", route_prefix="/")
        url = f"http://127.0.0.1:{port}/v1/audio/transcriptions"
        local = threading.local()
        direct = Direct()

        def timed_http(clip: tuple[str, bytes, float]) -> tuple[float, dict[str, float]]:
            """Seconds to the answer, and the server's Server-Timing parts in seconds."""
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(timeout=300)
            t = time.perf_counter()
            r = client.post(url, files={"file": (clip[0], clip[1], "audio/wav")}, data={"model": "whisper-1"})
            elapsed = time.perf_counter() - t
            r.raise_for_status()
            parts = (part.split(";dur=") for part in r.headers["server-timing"].split(", "))
            return elapsed, {name: float(ms) / 1000 for name, ms in parts}

        def http(clip: tuple[str, bytes, float]) -> float:
            return timed_http(clip)[0]

        for clip in clips[:3]:  # warm-up: proxy routes, replica, both models
            http(clip)
            direct.one(clip)
        # the HTTP hop alone (client, proxy, ingress replica and back; no model call): GET /v1/models
        client = httpx.Client(timeout=60)
        hops = []
        for i in range(INGRESS_GETS + 20):
            t = time.perf_counter()
            client.get(f"http://127.0.0.1:{port}/v1/models").raise_for_status()
            if i >= 20:  # the first ones warm the connection and routes
                hops.append(time.perf_counter() - t)
        hops.sort()
        replica = _driver_handle("WhisperDeployment")
        work = [clips[i % len(clips)] for i in range(requests)]
        directs: list[tuple[float, float]] = []
        https: list[tuple[float, dict[str, float]]] = []
        started = time.perf_counter()
        for i, clip in enumerate(work):
            if i % 2:
                https.append(timed_http(clip))
                directs.append(direct.one(clip))
            else:
                directs.append(direct.one(clip))
                https.append(timed_http(clip))
        wall = time.perf_counter() - started
        audio = sum(c[2] for c in work)
        direct_times, http_times = [d[0] for d in directs], [h[0] for h in https]
        overheads = sorted(h - d for h, d in zip(http_times, direct_times))
        # The same difference with each side's own engine time taken out (the replica's from Server-Timing):
        # what HTTP, Serve and the batch queue add, without the engine's run-to-run noise (±100 ms on 5-15 s
        # clips here), which the plain difference carries twice.
        outside = sorted((h - t["engine"]) - (d - e) for (h, t), (d, e) in zip(https, directs))
        parts = {
            "hop": [h - t["read-decode"] - t["model"] for h, t in https],  # client -> ingress route -> client
            "read_decode": [t["read-decode"] for _, t in https],
            "direct_decode": [d - e for d, e in directs],
            "call": [t["model"] - t["queue"] - t["engine"] for _, t in https],  # ingress -> model replica -> back
            "queue": [t["queue"] for _, t in https],
        }
        # where the overhead is: the replica's own engine time per request (Server-Timing) against the direct call's
        replica_engine = statistics.fmean(t["engine"] for _, t in https)
        results: dict[str, Any] = {
            "direct_c1": _summary(direct_times, sum(direct_times), audio),
            "c1": _summary(http_times, sum(http_times), audio),
            "paired_overhead_ms": {"p50": round(_percentile(overheads, 0.5) * 1000, 1),
                                   "p95": round(_percentile(overheads, 0.95) * 1000, 1),
                                   "pairs": len(overheads), "wall_seconds": round(wall, 1),
                                   "replica_engine_ms_mean": round(replica_engine * 1000, 1),
                                   "direct_ms_mean": round(statistics.fmean(direct_times) * 1000, 1)},
            "outside_engine_overhead_ms": {"p50": round(_percentile(outside, 0.5) * 1000, 1),
                                           "p95": round(_percentile(outside, 0.95) * 1000, 1),
                                           "pairs": len(outside)},
            "parts_p50_ms": {name: round(_percentile(values, 0.5) * 1000, 1) for name, values in parts.items()},
            "ingress_get_ms": {"p50": round(_percentile(hops, 0.5) * 1000, 2),
                               "p95": round(_percentile(hops, 0.95) * 1000, 2), "requests": len(hops)},
            "proxy": "haproxy" if haproxy_on() else "serve",
            "throughput_optimized": os.environ.get(THROUGHPUT_SWITCH) == "1",
        }
        batch_runs = []
        for concurrency in CONCURRENCY[1:]:
            load = [clips[i % len(clips)] for i in range(max(requests, 2 * concurrency))]
            if concurrency == 8:
                batch_runs.append(direct.batch_path(load))
            before = replica.info.remote().result(timeout_s=60)
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                latencies = list(pool.map(http, load))
            results[f"c{concurrency}"] = _summary(latencies, time.perf_counter() - started,
                                                  sum(c[2] for c in load))
            after = replica.info.remote().result(timeout_s=60)
            batches = after["batches"] - before["batches"]  # how well this level's requests were batched
            results[f"c{concurrency}"]["engine_batches"] = batches
            results[f"c{concurrency}"]["mean_batch"] = round((after["items"] - before["items"]) / max(1, batches), 2)
            if concurrency == 8:
                batch_runs.append(direct.batch_path(load))
        results["batch_path"] = {**batch_runs[0], "rps": round(statistics.fmean(b["rps"] for b in batch_runs), 3),
                                 "audio_x_realtime": round(statistics.fmean(b["audio_x_realtime"]
                                                                            for b in batch_runs), 1),
                                 "runs_rps": [b["rps"] for b in batch_runs]}
        info = replica.info.remote().result(timeout_s=60)
        results["replica_batches"] = {k: info[k] for k in ("batches", "items", "largest_batch")}
        results["engine"] = direct.engine.describe()
        serve.shutdown()
        return results
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"rayscribe HTTP API vs direct engine ({report['clips']} clips, 5-15 s)")
    for column in ("path", "concurrency", "p50 ms", "p95 ms", "req/s", "x realtime", "mean batch"):
        table.add_column(column, justify="right")
    d = report["http"]["direct_c1"]
    table.add_row("direct engine", "1", str(d["p50_ms"]), str(d["p95_ms"]), str(d["rps"]),
                  str(d["audio_x_realtime"]), "1")
    b = report["http"]["batch_path"]
    table.add_row(f"batch path (x{BATCH})", "-", "-", "-", str(b["rps"]), str(b["audio_x_realtime"]), str(BATCH))
    for concurrency in CONCURRENCY:
        h = report["http"][f"c{concurrency}"]
        table.add_row("HTTP (Serve)", str(concurrency), str(h["p50_ms"]), str(h["p95_ms"]), str(h["rps"]),
                      str(h["audio_x_realtime"]), str(h.get("mean_batch", 1.0)))
    console = Console()
    console.print(table)
    t = report["targets"]
    paired = report["http"]["paired_overhead_ms"]
    console.print(f"concurrency 1, mean per request: engine in the replica {paired['replica_engine_ms_mean']} ms, "
                  f"direct call (decode + engine) {paired['direct_ms_mean']} ms", highlight=False)
    hop = report["http"]["ingress_get_ms"]
    console.print(f"HTTP hop alone ({report['http']['proxy']} proxy; GET /v1/models): p50 {hop['p50']} ms, "
                  f"p95 {hop['p95']} ms", highlight=False)
    outside, parts = report["http"]["outside_engine_overhead_ms"], report["http"]["parts_p50_ms"]
    console.print(f"concurrency 1, outside the engine (each side's engine time taken out): p50 {outside['p50']} ms,"
                  f" p95 {outside['p95']} ms; parts p50: " + ", ".join(f"{k} {v} ms" for k, v in parts.items()),
                  highlight=False)
    console.print(f"p50 overhead at concurrency 1: {t['p50_overhead_ms_c1']} ms (target ≤ 10 ms); "
                  f"throughput at concurrency 8 / batch path: {t['throughput_ratio_c8']}x (target ≥ 0.9x); "
                  f"replica batches: {report['http']['replica_batches']}", highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    parser.add_argument("--json", type=Path, default=REPO / "bench-results" / "serve.json")
    parser.add_argument("--haproxy", action="store_true", help="Ray Serve's experimental HAProxy ingress "
                        "(RAY_SERVE_ENABLE_HA_PROXY=1) instead of its Python proxy, with its throughput mode "
                        f"(gRPC between deployments) unless {THROUGHPUT_SWITCH}=0")
    args = parser.parse_args()
    if args.haproxy:  # read by Serve's controller and replicas, which inherit this process's environment
        use_haproxy()
    clips = load_clips()
    report: dict[str, Any] = {
        "clips": len(clips), "clip_seconds": round(sum(c[2] for c in clips) / len(clips), 2),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_start": os.getloadavg()},
        "threads": THREADS,
    }
    report["http"] = bench(clips, args.requests)
    report["machine"]["load_avg_end"] = os.getloadavg()
    report["targets"] = {
        "p50_overhead_ms_c1": report["http"]["paired_overhead_ms"]["p50"],
        "p50_overhead_outside_engine_ms_c1": report["http"]["outside_engine_overhead_ms"]["p50"],
        "throughput_ratio_c8": round(report["http"]["c8"]["rps"] / report["http"]["batch_path"]["rps"], 3),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    render(report)


if __name__ == "__main__":
    main()
