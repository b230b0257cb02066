"""Benchmark (and the end-to-end check) of queue-driven autoscaling on Ray's fake multi-node provider.

    python -m jobs.bench_autoscale [--jobs 6] [--json bench-results/autoscale.json]

A fresh cluster (jobs/harness/fake_autoscaling.py: a head without GPUs, up to two fake GPU nodes of 1 CPU + 1 GPU)
runs the autoscaling policy and an ingest loop whose pool starts empty. Then short real speech clips are queued as jobs
(plus one malformed message, which must go to the dead-letter queue) and the times are recorded from that moment
("backlog"): the policy's first scale-up decision, the first fake GPU node, the first Whisper worker ready, every
job handled ("drained"), the policy asking for 0 GPUs after its idle timeout, and every GPU node gone
("released"). Finally the head's Prometheus export is read for the rayscribe metrics.

SQS and S3 are moto (the session's server under pytest, else one started here): its speed is not SQS's, so the
figures are about scaling reaction, not throughput. The fake nodes are raylets on this machine and the workers
transcribe on its CPUs (``RAYSCRIBE_DEVICE=auto`` finds no CUDA) while holding the logical GPU.

Target: first node ≤ 15 s after the backlog appears.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from actors.metrics import NAMES
from jobs.harness.fake_autoscaling import FakeAutoscalingCluster
from jobs.harness.moto import MotoStartError, start_moto
from jobs.harness.speech import speech_dir

REPO = Path(__file__).resolve().parents[1]
POLL = 0.25  # how often the driver samples the cluster state while it waits (a sampling rate, not a sync)
FIRST_NODE_TARGET_S = 15.0


def exported_name(name: str) -> str:
    """What Ray's export calls a metric: ``ray_`` prefix; counters end in ``_total``."""
    counters = {"rayscribe_jobs_done", "rayscribe_jobs_failed", "rayscribe_audio_seconds"}
    return f"ray_{name}_total" if name in counters else f"ray_{name}"


def clips(count: int) -> list[Path]:
    found = sorted((speech_dir() / "ljspeech").glob("*.wav"))[:count]
    if len(found) < count:
        raise SystemExit(f"need {count} clips under {speech_dir() / 'ljspeech'} (set RAYSCRIBE_SPEECH_DIR)")
    return found


@contextmanager
def aws_stand_in() -> Iterator[None]:
    """moto on loopback unless ``AWS_ENDPOINT_URL`` already points somewhere (pytest's session server);
    fresh queue and bucket names unless the environment names them."""
    suffix = uuid.uuid4().hex[:8]
    names = {"RAYSCRIBE_QUEUE_NAME": f"as-{suffix}", "RAYSCRIBE_HIGH_PRIORITY_QUEUE_NAME": f"as-high-{suffix}",
             "RAYSCRIBE_DLQ_NAME": f"as-dlq-{suffix}", "RAYSCRIBE_INPUT_BUCKET": f"as-in-{suffix}",
             "RAYSCRIBE_OUTPUT_BUCKET": f"as-out-{suffix}"}
    for key, value in names.items():
        os.environ.setdefault(key, value)
    if os.environ.get("AWS_ENDPOINT_URL"):
        yield
        return
    try:
        server = start_moto()
    except MotoStartError as exc:
        raise SystemExit(str(exc)) from None
    os.environ.update(server.env())  # for the rest of this process: the cluster below starts after it
    try:
        yield
    finally:
        server.stop()


def run_scenario(jobs: int = 6, *, idle_timeout: float = 5.0, timeout: float = 240.0) -> dict[str, Any]:
    """Queue ``jobs`` clips on an idle autoscaling cluster and time scaling up, draining and scaling down."""
    import ray

    from actors.autoscaler import autoscaled_pool, start_autoscaler
    from actors.cluster import ray_session
    from actors.ingest import IngestLoop
    from rayscribe.config.queue import load_queue_settings
    from rayscribe.config.scaling import load_scaling_settings
    from rayscribe.config.settings import load_settings
    from rayscribe.queue import infra
    from rayscribe.queue.jobspec import JobSpec
    from rayscribe.queue.sqs import JobQueue
    from rayscribe.storage import Storage

    settings = load_settings(device="auto", gpu_per_worker=1.0, cpus_per_worker=1.0, cpu_threads=1,
                             output_formats="txt,json", log_level="WARNING")
    scaling = load_scaling_settings(scaling_poll_interval=1.0, scaling_idle_timeout=idle_timeout,
                                    scaling_target_drain_seconds=5.0, scaling_throughput_prior=10.0,
                                    scaling_job_seconds_prior=10.0, scaling_min_gpus=0, scaling_max_gpus=2)
    qs = load_queue_settings(wait_seconds=1)
    infra.up(qs)
    storage, queue = Storage(qs), JobQueue(qs)
    specs = []
    for path in clips(jobs):
        job_id = f"{path.stem}-{uuid.uuid4().hex[:6]}"
        source = f"s3://{qs.input_bucket}/{qs.input_prefix}{job_id}/{path.name}"
        storage.upload_file(path, source)
        specs.append(JobSpec(job_id=job_id, s3_input_path=source,
                             s3_output_path=f"s3://{qs.output_bucket}/{qs.output_prefix}"))

    cluster = FakeAutoscalingCluster(max_gpu_nodes=2)
    result: dict[str, Any] = {"jobs": jobs, "bad_jobs": 1, "head_start_s": round(cluster.start(), 2)}
    try:
        with ray_session(cluster.address):
            scaler = start_autoscaler(settings, qs, scaling)
            pool = autoscaled_pool(settings)
            loop = IngestLoop(settings, qs, pool, autoscaler=scaler)
            runner = threading.Thread(target=loop.run, name="ingest", daemon=True)
            runner.start()
            ready_by = time.monotonic() + 120
            while ray.get(scaler.desired_workers.remote()) is None:  # its first (idle) decision
                if time.monotonic() > ready_by:
                    raise RuntimeError("the autoscaling policy made no decision within 120 s")
                time.sleep(POLL)

            queue.send("normal", [s.to_message() for s in specs] + ["{not json"])
            t0 = time.time()
            times: dict[str, float | None] = dict.fromkeys(
                ("first_scale_up_decision", "first_node", "first_worker_ready", "drained", "request_zero",
                 "released"))
            peak_gpus, peak_workers = 0.0, 0
            seen_metrics: set[str] = set()
            next_scrape = 0.0
            deadline = time.monotonic() + timeout

            def mark(key: str) -> None:
                if times[key] is None:
                    times[key] = round(time.time() - t0, 2)

            while time.monotonic() < deadline and times["released"] is None:
                gpus = float(ray.cluster_resources().get("GPU", 0.0))
                peak_gpus = max(peak_gpus, gpus)
                peak_workers = max(peak_workers, len(pool.slots))
                if time.monotonic() >= next_scrape:  # gauges are exported only while they are being set
                    seen_metrics |= _found(cluster)
                    next_scrape = time.monotonic() + 2.0
                if gpus > 0:
                    mark("first_node")
                if pool.slots:
                    mark("first_worker_ready")
                decisions = ray.get(scaler.decisions.remote())
                if any(d["desired_gpus"] > 0 and d["wall_time"] >= t0 for d in decisions):
                    mark("first_scale_up_decision")
                handled = sum(1 for o in loop.report.outcomes if o.status in ("done", "failed"))
                if handled >= jobs + 1:
                    mark("drained")
                if times["drained"] is not None:
                    if any(d["desired_gpus"] == 0 and d["wall_time"] >= t0 + times["drained"] for d in decisions):
                        mark("request_zero")
                    if times["request_zero"] is not None and gpus == 0:
                        mark("released")
                time.sleep(POLL)
            loop.request_stop()
            runner.join(timeout=60)
            decisions = ray.get(scaler.decisions.remote())
            ray.get(scaler.stop.remote(), timeout=60)
            pool.stop()
            result.update(times=times, peak_gpus=peak_gpus, peak_workers=peak_workers,
                          outcomes={s: loop.report.count(s) for s in ("done", "failed", "retry", "duplicate")},
                          audio_seconds=round(loop.report.audio_seconds, 2), decisions=len(decisions),
                          decision_changes=_changes(decisions, t0))
            result["metrics_found"], result["metrics_missing"] = _scrape(cluster, seen_metrics)
    finally:
        cluster.stop()
    return result


def _changes(decisions: list[dict[str, Any]], t0: float) -> list[dict[str, Any]]:
    """The decisions where the desired GPU count changed, with their main inputs, for the log and the JSON."""
    out, last = [], None
    for d in decisions:
        if d["desired_gpus"] != last:
            out.append({"t": round(d["wall_time"] - t0, 2), "desired_gpus": d["desired_gpus"],
                        "desired_workers": d["desired_workers"], "backlog_jobs": d["backlog_jobs"],
                        "throughput_per_gpu": round(d["throughput_per_gpu"], 2),
                        "job_seconds": round(d["job_seconds"], 2), "reason": d["reason"]})
            last = d["desired_gpus"]
    return out


def _found(cluster: FakeAutoscalingCluster) -> set[str]:
    """The rayscribe metrics in one read of the head's Prometheus export."""
    try:
        text = cluster.scrape()
    except OSError:
        return set()
    return {n for n in (exported_name(m) for m in NAMES) if f"\n{n}{{" in text or f"\n{n} " in text}


def _scrape(cluster: FakeAutoscalingCluster, seen: set[str], timeout: float = 20.0) -> tuple[list[str], list[str]]:
    """Poll the head's metrics export until every rayscribe metric has been seen (or the time is up). A gauge
    shows only while it is being set, so the reads made during the run count too."""
    wanted = [exported_name(n) for n in NAMES]
    deadline = time.monotonic() + timeout
    while True:
        seen |= _found(cluster)
        if all(n in seen for n in wanted) or time.monotonic() > deadline:
            return [n for n in wanted if n in seen], [n for n in wanted if n not in seen]
        time.sleep(1.0)  # the agent exports every second here


def print_table(result: dict[str, Any]) -> None:
    table = Table(title=f"queue-driven autoscaling, fake GPU nodes ({result['jobs']} jobs + 1 malformed)")
    table.add_column("event (from backlog)")
    table.add_column("seconds", justify="right")
    for key, value in result["times"].items():
        shown = "—" if value is None else f"{value:.1f}"
        if key == "first_node" and value is not None:
            shown += " ✓" if value <= FIRST_NODE_TARGET_S else f" (target ≤ {FIRST_NODE_TARGET_S:.0f})"
        table.add_row(key.replace("_", " "), shown)
    console = Console()
    console.print(table)
    console.print(f"head start {result['head_start_s']} s; peak {result['peak_gpus']:g} GPU(s), "
                  f"{result['peak_workers']} worker(s); outcomes {result['outcomes']}; "
                  f"metrics missing: {result['metrics_missing'] or 'none'}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--idle-timeout", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=REPO / "bench-results" / "autoscale.json")
    args = parser.parse_args(argv)
    with aws_stand_in():
        result = run_scenario(args.jobs, idle_timeout=args.idle_timeout)
    result["target_first_node_s"] = FIRST_NODE_TARGET_S
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
