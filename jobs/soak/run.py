"""The soak's run: moto behind the fault proxy, a multi-node Ray cluster, the ingest actor, the faults fired on
schedule, and the check once both queues are empty."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jobs.harness.env import OFFLINE_ENV, RAY_NODE_ENV, patched_environ
from jobs.harness.faults import FaultProxy
from jobs.harness.moto import start_moto
from jobs.harness.multinode import start_multinode
from jobs.soak.checks import check
from jobs.soak.config import FORMATS, MAX_RECEIVE_COUNT, POLL, Fault, SoakConfig
from jobs.soak.inputs import Feeder, build_entries
from jobs.soak.report import summarise
from rayscribe.config.queue import QueueSettings
from rayscribe.queue.sqs import JobQueue, QueueError

log = logging.getLogger("rayscribe.soak")


def start_cluster(config: SoakConfig, temp_dir: Path) -> Any:
    """A head that runs only the ingest actor, and ``nodes`` worker nodes with enough CPU slots that the pool
    still fits after one node is lost."""
    per_node = -(-(config.workers + config.spares) // max(1, config.nodes - 1 if config.node_kill else config.nodes))
    return start_multinode(config.nodes, per_node, temp_dir, head_resources={"soak_head": 1},
                           log_to_driver=config.verbose)


def plan_faults(config: SoakConfig, rng: random.Random) -> list[Fault]:
    """Actor kills spread over 10-85 % of the sends, the node kill at 30 %, the outage at 50 %."""
    faults = [Fault(0.10 + 0.75 * (i + 0.5) / config.actor_kills, "actor_kill") for i in range(config.actor_kills)]
    if config.node_kill:
        faults.append(Fault(0.30, "node_kill"))
    if config.outage_seconds > 0:
        faults.append(Fault(0.50, "outage"))
    return sorted(faults, key=lambda f: f.at)


def run_soak(config: SoakConfig) -> dict[str, Any]:
    """Set everything up, run, inject, check; returns the results (also written to ``config.json_path``)."""
    os.environ.update(OFFLINE_ENV)
    for key, value in RAY_NODE_ENV.items():
        os.environ.setdefault(key, value)
    workdir = Path(tempfile.mkdtemp(prefix="rs-soak-"))
    rng = random.Random(config.seed)
    moto = start_moto(workdir)
    relay = FaultProxy(moto.url).start()  # goes dark for the outage: connections cut and refused
    try:
        with patched_environ({**moto.env(), "AWS_ENDPOINT_URL": relay.url}):
            return _run(config, workdir, rng, relay)
    finally:
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
        relay.stop()
        moto.stop()
        if not config.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(config: SoakConfig, workdir: Path, rng: random.Random, relay: FaultProxy) -> dict[str, Any]:
    import ray

    from jobs.worker import IngestActor
    from rayscribe.aws import client
    from rayscribe.config.base import read_settings
    from rayscribe.config.settings import load_settings
    from rayscribe.queue import infra

    tag = f"{int(time.time())}-{rng.randrange(16**6):06x}"
    qs = read_settings(QueueSettings, {
        "queue_name": f"soak-jobs-{tag}", "high_priority_queue_name": f"soak-jobs-high-{tag}",
        "dlq_name": f"soak-dlq-{tag}", "input_bucket": f"soak-in-{tag}", "output_bucket": f"soak-out-{tag}",
        "max_receive_count": MAX_RECEIVE_COUNT, "visibility_timeout": config.visibility,
        "heartbeat_seconds": config.visibility / 6,
        "wait_seconds": 1, "retry_delay_seconds": 1})
    settings = load_settings(backend="simulated", simulated_speed=config.speed, workers=config.workers,
                             spare_workers=config.spares,
                             cpus_per_worker=1, gpu_per_worker=0, device="cpu", max_inflight_per_worker=config.inflight,
                             prefetch_per_worker=config.prefetch, worker_probe_seconds=config.probe,
                             output_formats=list(FORMATS), log_level="INFO")
    report = infra.up(qs)
    s3 = client("s3", qs)
    assert qs.output_bucket and qs.input_bucket
    s3.put_bucket_versioning(Bucket=qs.output_bucket, VersioningConfiguration={"Status": "Enabled"})
    prefix = "transcripts/"
    out = f"s3://{qs.output_bucket}/{prefix}"
    entries, uploads = build_entries(config, qs.input_bucket, out)
    for key, data in uploads.items():
        s3.put_object(Bucket=qs.input_bucket, Key=key, Body=data)
    log.info("infra: %s; %d messages to send, %d inputs uploaded", "; ".join(report.actions), len(entries),
             len(uploads))

    started = time.monotonic()
    cluster = start_cluster(config, workdir / "ray")
    log.info("Ray cluster up in %.1f s: head + %d worker nodes", time.monotonic() - started, config.nodes)
    queue = JobQueue(qs)
    good = [e for e in entries if e.kind == "good"]
    mean_audio = sum(e.audio_seconds for e in good) / max(1, len(good))
    ideal_rate = config.workers * config.speed / mean_audio
    timeout = config.timeout or 4 * len(good) / ideal_rate + 180
    faults = plan_faults(config, rng)
    try:
        ingest: Any = IngestActor
        actor = ingest.options(num_cpus=0, resources={"soak_head": 1}).remote(
            settings.model_dump(), qs.model_dump(), workers=config.workers)
        run_ref = actor.run.remote()
        deadline = time.monotonic() + 300
        while len(ray.get(actor.workers.remote(), timeout=60)) < config.workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the Whisper pool did not start within 300 s")
            ready, _ = ray.wait([run_ref], timeout=0.5)  # polling; fail fast if run() ended
            if ready:
                ray.get(run_ref)
                raise RuntimeError("the ingest actor stopped before its pool was ready")
        # The drain window starts when the loop takes work, with its standbys up.
        while not (ray.get(actor.receiving.remote(), timeout=60)
                   and ray.get(actor.standbys_ready.remote(), timeout=60) >= config.spares):
            if time.monotonic() > deadline:
                raise RuntimeError("the ingest loop did not start receiving within 300 s")
            time.sleep(0.2)  # polling interval
        pool_ready = time.monotonic()
        log.info("pool of %d simulated workers ready and receiving in %.1f s", config.workers, pool_ready - started)

        feeder = Feeder(queue, entries, config.backlog or config.workers * 2)
        feeder.start()
        killed: set[str] = set()
        outage_end: float | None = None
        outages: list[dict[str, float]] = []
        quiet = 0
        timed_out = False
        end_by = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            for fault in faults:
                if fault.fired_at is None and feeder.sent >= fault.at * len(entries) and (
                        fault.kind != "outage" or outage_end is None):
                    fault.fired_at = time.time()
                    if fault.kind == "actor_kill":
                        fault.detail = _kill_actor(actor, killed, rng)
                    elif fault.kind == "node_kill":
                        fault.detail = _kill_node(actor, cluster, killed)
                    else:  # timed from when the relay starts going down, and for its full length after that
                        outages.append({"start": time.time()})
                        relay.down()
                        outage_end = time.monotonic() + config.outage_seconds
                        outages[-1]["connections_cut"] = relay.cut
                        log.warning("OUTAGE: SQS/S3 endpoint down for %.0f s", config.outage_seconds)
            if outage_end is not None and now >= outage_end and "end" not in outages[-1]:
                relay.up()
                outages[-1]["end"] = time.time()
                log.warning("OUTAGE over: endpoint back")
            all_fired = all(f.fired_at is not None for f in faults) and (outage_end is None or now >= outage_end)
            if not feeder.is_alive() and all_fired:
                try:
                    quiet = quiet + 1 if sum(sum(queue.counts(q).values()) for q in ("high", "normal")) == 0 else 0
                except QueueError:
                    quiet = 0
                if quiet >= 3:
                    break
            if now > end_by:
                timed_out = True
                log.error("timed out after %.0f s; checking what is there", timeout)
                break
            time.sleep(POLL if quiet == 0 else 1.0)  # polling interval of the monitor
        drained_at = time.time()
        feeder.stopping.set()
        ray.get(actor.stop.remote(), timeout=30)
        ingest_view = ray.get(run_ref, timeout=120)
        log.info("ingest stopped: %s", ingest_view["stop_reason"])
        found = check(entries, queue, s3, qs.output_bucket, prefix)
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        cluster.shutdown()
    return summarise(config, entries, faults, outages, found, ingest_view, feeder, ideal_rate, mean_audio,
                     drained_at, timed_out)


def _kill_actor(actor: Any, killed: set[str], rng: random.Random) -> dict[str, Any]:
    import ray

    workers = [(h, node) for h, node in ray.get(actor.workers.remote(), timeout=60)
               if h._actor_id.hex() not in killed]
    handle, node = rng.choice(workers)
    killed.add(handle._actor_id.hex())
    ray.kill(handle, no_restart=True)
    log.warning("KILL: Whisper worker %s on node %s", handle._actor_id.hex()[:8], (node or "?")[:8])
    return {"actor": handle._actor_id.hex(), "node": node}


def _kill_node(actor: Any, cluster: Any, killed: set[str]) -> dict[str, Any]:
    import ray

    workers = ray.get(actor.workers.remote(), timeout=60)
    on_node = Counter(node for _, node in workers)
    victim = max(cluster.worker_nodes, key=lambda n: on_node.get(n.node_id, 0))
    doomed = [h._actor_id.hex() for h, node in workers if node == victim.node_id]
    killed.update(doomed)
    cluster.remove_node(victim, allow_graceful=False)
    log.warning("KILL: worker node %s with %d Whisper workers", victim.node_id[:8], len(doomed))
    return {"node": victim.node_id, "workers_on_it": len(doomed)}
