"""Soak test of the queue path: hundreds of SQS jobs through the ingest actor while faults are injected.

    python -m jobs.soak --jobs 500 --workers 16 [--speed 2] [--json bench-results/soak.json]

What runs: moto in server mode for SQS and S3, behind a TCP relay that can go dark (the endpoint outage); a Ray
cluster of one head and ``--nodes`` worker nodes started on this machine (``ray.cluster_utils.Cluster``: separate
raylets, so a node can be killed); the real :class:`jobs.worker.IngestActor` with a pool of ``--workers`` Whisper
workers on the simulated engine (``RAYSCRIBE_BACKEND=simulated``: real decoding, then a sleep of audio length /
``--speed`` in place of GPU time, and real output files), and ``--spares`` warm standby workers
(``RAYSCRIBE_SPARE_WORKERS``) that take a dead worker's place. The feeder starts once the loop receives and the
standbys are up, so the drain window measures running, not starting.

What it injects while a feeder keeps the queue backlog small (moto slows down with hundreds of waiting messages):
``--actor-kills`` ``ray.kill`` of Whisper workers, one worker node killed, one SQS/S3 outage of
``--outage-seconds`` (connections cut and refused; moto keeps its state, as AWS does when its endpoint is
unreachable, so the check needs no bookkeeping on the driver's side), ``--malformed`` malformed messages and
``--corrupt`` jobs whose audio is corrupt. Each fault fires when a set fraction of the jobs has been sent.

What it checks, from S3 and the queues alone once both queues are empty: every good job has exactly one complete
set of outputs (every format, metrics, one done marker), every bad one is in the dead-letter queue or has an error
record with its reason, nothing is left in flight, no stray objects. The drain rate (good jobs per second from the
first send to the last finished job) is compared with the ideal, workers x speed / mean audio seconds per job.
A rich table goes to the terminal and the figures to ``--json``; the exit code is 1 when a job was lost or
duplicated, a failure is unexplained or something was left in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import wave
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from jobs.fake_cluster import free_port
from rayscribe.audio import SAMPLE_RATE, decode_audio
from rayscribe.errors import AudioDecodeError
from rayscribe.formatters import EXTENSIONS
from rayscribe.queue_settings import QueueSettings
from rayscribe.queueing import JobQueue, QueueError

log = logging.getLogger("rayscribe.soak")
T = TypeVar("T")

CLIP_SECONDS = (4.0, 6.0, 8.0, 10.0, 12.0)  # good jobs cycle through these: 8 s on average
FORMATS = ("txt", "srt", "vtt", "json")
HIGH_PRIORITY_EVERY = 10  # every tenth good job goes to the high-priority queue
MAX_RECEIVE_COUNT = 5  # a job hit by two injected faults still completes (production default: 3)
POLL = 0.3  # seconds between the driver's looks at the queues
AWS_ENV = {"AWS_ACCESS_KEY_ID": "soak", "AWS_SECRET_ACCESS_KEY": "soak", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
OFFLINE_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
               "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYANNOTE_METRICS_ENABLED": "0"}
# Started raylets read these: a busy machine may need more than Ray's default for a node's agents to come up,
# and no idle worker processes are prestarted (the pool's actors start their own).
RAY_NODE_ENV = {"RAY_agent_register_timeout_ms": "180000", "RAY_enable_worker_prestart": "0",
                "RAY_prestart_worker_first_driver": "0"}


@dataclass
class SoakConfig:
    jobs: int = 500
    workers: int = 16
    spares: int = 8  # warm standby workers (RAYSCRIBE_SPARE_WORKERS): a killed worker's place is taken at once
    inflight: int = 2  # jobs each worker holds (RAYSCRIBE_MAX_INFLIGHT_PER_WORKER)
    prefetch: int = 3  # inputs read ahead per worker (RAYSCRIBE_PREFETCH_PER_WORKER): 12 s of work at 4 s a job
    probe: float = 5.0  # a worker silent this long is taken for lost (RAYSCRIBE_WORKER_PROBE_SECONDS)
    nodes: int = 3
    speed: float = 2.0
    actor_kills: int = 10
    node_kill: bool = True
    outage_seconds: float = 12.0
    malformed: int = 20
    corrupt: int = 20
    backlog: int = 0  # visible messages the feeder keeps waiting; 0: workers x 2
    visibility: int = 60  # SQS lease in seconds; the heartbeat renews it every sixth of that
    seed: int = 7
    timeout: float = 0.0  # 0: 4 x the ideal time + 180 s
    json_path: Path = Path("bench-results/soak.json")
    keep: bool = False
    verbose: bool = False


@dataclass
class Entry:
    """One message the feeder sends, and what the checker expects of it."""

    kind: str  # good | corrupt | malformed
    body: str
    queue: str = "normal"
    job_id: str | None = None  # set where the message names a valid job id and output path
    audio_seconds: float = 0.0
    sent: bool = False


@dataclass
class Fault:
    at: float  # fraction of the messages sent when it fires
    kind: str  # actor_kill | node_kill | outage
    fired_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ inputs


def _wav_bytes(seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    signal = 0.2 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.02 * rng.standard_normal(t.size)
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def _flac_bytes(wav: bytes) -> bytes:
    """``wav`` re-encoded as FLAC with PyAV (the decode path then sees two containers)."""
    import av

    audio = decode_audio(wav)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray((audio * 32767).astype(np.int16).reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


def good_clips() -> dict[str, tuple[bytes, float]]:
    """The good inputs: name -> (bytes, seconds); WAV and FLAC alternate."""
    clips = {}
    for i, seconds in enumerate(CLIP_SECONDS):
        wav = _wav_bytes(seconds, i)
        clips[f"clip{i}.{'flac' if i % 2 else 'wav'}"] = (_flac_bytes(wav) if i % 2 else wav, seconds)
    return clips


def corrupt_inputs(count: int, seed: int) -> dict[str, bytes]:
    """``count`` distinct inputs that :func:`decode_audio` rejects (each is checked): empty, text, random bytes,
    fake headers over garbage, truncated WAV and FLAC, a WAV header with no data."""
    wav = _wav_bytes(6.0, 99)
    flac = _flac_bytes(wav)
    data_at = wav.find(b"data")
    rng = np.random.default_rng(seed)
    makers: list[Callable[[int], tuple[str, bytes]]] = [
        lambda i: ("empty.wav", b""),
        lambda i: ("agenda.mp3", f"Not audio: meeting agenda item {i}.\n".encode() * 30),
        lambda i: ("noise.ogg", rng.integers(0, 256, 2048 + 97 * i, dtype=np.uint8).tobytes()),
        lambda i: ("id3.mp3", b"ID3\x04" + bytes(6) + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        lambda i: ("cut.wav", wav[: len(wav) // (3 + i % 3)]),
        lambda i: ("header-only.wav", wav[: data_at + 8]),
        lambda i: ("cut.flac", flac[: len(flac) // (4 + i % 3)]),
        lambda i: ("fake.flac", b"fLaC" + rng.integers(0, 256, 1024, dtype=np.uint8).tobytes()),
    ]
    found: dict[str, bytes] = {}
    i = 0
    while len(found) < count:
        name, data = makers[i % len(makers)](i)
        i += 1
        try:
            decode_audio(data, name=name)
        except AudioDecodeError:
            found[f"corrupt-{len(found):02d}-{name}"] = data
        if i > 20 * count + 100:
            raise RuntimeError("could not make enough corrupt inputs")
    return found


def malformed_bodies(count: int, bucket: str, out: str) -> list[tuple[str, str | None]]:
    """``count`` malformed message bodies, with the job id where one is readable (its error record goes beside
    the would-be output)."""
    src = f"s3://{bucket}/soak/clip0.wav"

    def job(i: int, **fields: Any) -> str:
        return json.dumps({"job_id": f"malformed-{i:02d}", "s3_input_path": src, "s3_output_path": out, **fields})

    shapes: list[Callable[[int], tuple[str, str | None]]] = [
        lambda i: (f"{{this is not json {i}", None),
        lambda i: (f"[{i}, 2, 3]", None),
        lambda i: (f'"just a string {i}"', None),
        lambda i: (json.dumps({"hello": i}), None),
        lambda i: (json.dumps({"job_id": f"malformed-{i:02d}", "s3_output_path": out}), f"malformed-{i:02d}"),
        lambda i: (job(i, version=99), f"malformed-{i:02d}"),
        lambda i: (job(i, priority="whenever"), f"malformed-{i:02d}"),
        lambda i: (job(i, formats=["docx"]), f"malformed-{i:02d}"),
        lambda i: (job(i, language="english"), f"malformed-{i:02d}"),
        lambda i: (job(i, webhook_url="ftp://example.invalid/hook"), f"malformed-{i:02d}"),
        lambda i: (job(i, s3_input_path="ftp://example.invalid/a.wav"), f"malformed-{i:02d}"),
        lambda i: (json.dumps({"job_id": f"bad id {i}!", "s3_input_path": src, "s3_output_path": out}), None),
    ]
    return [shapes[i % len(shapes)](i) for i in range(count)]


def build_entries(config: SoakConfig, in_bucket: str, out: str) -> tuple[list[Entry], dict[str, bytes]]:
    """Every message of the run in send order (bad ones spread at random among the good), and the objects to
    upload to the input bucket (key -> bytes)."""
    rng = random.Random(config.seed)
    clips = good_clips()
    uploads = {f"soak/{name}": data for name, (data, _) in clips.items()}
    names = list(clips)
    entries: list[Entry] = []
    for n in range(config.jobs):
        name = names[n % len(names)]
        job_id = f"soak-{n:05d}"
        priority = "high" if n % HIGH_PRIORITY_EVERY == HIGH_PRIORITY_EVERY - 1 else "normal"
        body = json.dumps({"job_id": job_id, "s3_input_path": f"s3://{in_bucket}/soak/{name}",
                           "s3_output_path": out, "priority": priority})
        entries.append(Entry("good", body, priority, job_id, clips[name][1]))
    bad: list[Entry] = []
    for i, (name, data) in enumerate(corrupt_inputs(config.corrupt, config.seed).items()):
        uploads[f"soak/{name}"] = data
        job_id = f"corrupt-{i:02d}"
        bad.append(Entry("corrupt", json.dumps({"job_id": job_id, "s3_input_path": f"s3://{in_bucket}/soak/{name}",
                                                "s3_output_path": out}), job_id=job_id))
    bad += [Entry("malformed", body, job_id=job_id) for body, job_id in malformed_bodies(config.malformed, in_bucket,
                                                                                         out)]
    for entry in bad:
        entries.insert(rng.randrange(len(entries) + 1), entry)
    return entries, uploads


# ------------------------------------------------------------------------------------------ moto and relay




class Moto:
    """``moto_server`` on a loopback port, as a child process."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "moto.log"
        binary = Path(sys.executable).parent / "moto_server"
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(self.port)], stdout=handle,
                                            stderr=subprocess.STDOUT, env={**os.environ, **AWS_ENV})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)  # polling interval while it starts
        self.stop()
        raise RuntimeError(f"moto_server did not answer within 60 s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


class FlakyEndpoint:
    """A TCP relay in front of moto that can go dark: :meth:`down` cuts every open connection and refuses new
    ones until :meth:`up`, as when the SQS and S3 endpoints are unreachable. moto behind it keeps its state,
    as AWS does through an outage of its endpoint."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="soak-relay", daemon=True)
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[asyncio.StreamWriter] = set()
        self.cut = 0

    def start(self) -> None:
        self.thread.start()
        self.up()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def up(self) -> None:
        self._call(self._open())

    def down(self) -> None:
        self._call(self._close())

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    async def _open(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.connections):
            writer.transport.abort()
            self.cut += 1
        self.connections.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        try:
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        finally:
            self.connections.discard(writer)
            self.connections.discard(upstream_writer)


# ------------------------------------------------------------------------------------------------- feeder


class Feeder(threading.Thread):
    """Sends the entries in order, keeping at most ``backlog`` messages visible across the two job queues. A
    send that fails (the outage) is tried again; the relay cuts connections before a request is answered, so a
    retried batch may have arrived once already: the workers' done markers make that harmless."""

    def __init__(self, queue: JobQueue, entries: list[Entry], backlog: int) -> None:
        super().__init__(name="soak-feeder", daemon=True)
        self.queue = queue
        self.entries = entries
        self.backlog = backlog
        self.sent = 0
        self.resends = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        self.started_at = time.time()
        while self.sent < len(self.entries) and not self.stopping.is_set():
            try:
                waiting = sum(self.queue.counts(q)["visible"] for q in ("high", "normal"))
                room = self.backlog - waiting
                if room < min(10, self.backlog):
                    self.stopping.wait(POLL)
                    continue
                batch = self.entries[self.sent:self.sent + min(room, 10)]
                for which in ("high", "normal"):
                    bodies = [e.body for e in batch if e.queue == which and not e.sent]
                    if bodies:
                        self.queue.send(which, bodies)
                        for e in batch:
                            if e.queue == which:
                                e.sent = True
                self.sent += len(batch)
            except QueueError as exc:
                self.resends += 1
                log.warning("feeder: %s; trying again", str(exc).splitlines()[0])
                self.stopping.wait(1.0)  # retry pacing while the endpoint is down
        self.finished_at = time.time()


# ------------------------------------------------------------------------------------------------ cluster


def start_cluster(config: SoakConfig, temp_dir: Path, attempts: int = 4) -> Any:
    """A head that runs only the ingest actor, and ``nodes`` worker nodes with enough CPU slots that the pool
    still fits after one node is lost. A start that fails (Ray gives a raylet 30 s to register, and its agents
    15 s to come up, which a busy machine can miss) is cleaned up and tried again."""
    import ray

    per_node = -(-(config.workers + config.spares) // max(1, config.nodes - 1 if config.node_kill else config.nodes))
    for attempt in range(1, attempts + 1):
        folder = temp_dir / f"try{attempt}"
        cluster = None
        try:
            with _lean_nodes(), _write_agent_ports_ahead(folder):
                cluster = _start_nodes(config, folder, per_node)
            ray.init(address=cluster.address, log_to_driver=config.verbose)
            return cluster
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning("Ray cluster start failed (%s); trying again", str(exc).splitlines()[0])
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.shutdown()
            kill_processes_under(folder)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _lean_nodes() -> Iterator[None]:
    """Start nodes with as few Python processes as Ray allows: no dashboard web server on the head, and each
    node's dashboard agent in Ray's minimal mode (what a ``ray`` install without the dashboard extras runs). A
    raylet aborts when its agent takes over 15 s to report its ports, which on a machine loaded several times
    over its cores the full set of start-up processes makes it do; the soak needs none of them. Only this
    process's node start-up sees the change."""
    from unittest import mock

    import ray._private.node
    import ray._private.utils

    def no_api_server(self: Any, **_: Any) -> None:
        self._webui_url = None

    with mock.patch.object(ray._private.utils, "get_dashboard_dependency_error",
                           return_value=ImportError("soak: minimal dashboard agents")), \
            mock.patch.object(ray._private.node.Node, "start_api_server", no_api_server):
        yield


def _start_nodes(config: SoakConfig, folder: Path, per_node: int) -> Any:
    from ray.cluster_utils import Cluster

    head = _node_args()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "resources": {"soak_head": 1}, "include_dashboard": False, "temp_dir": str(folder),
        "object_store_memory": 200 * 1024 * 1024, "no_monitor": True, "include_log_monitor": False, **head,
    })
    for _ in range(config.nodes):
        _add_node(cluster, folder, per_node)
    cluster.wait_for_nodes()
    return cluster


def _add_node(cluster: Any, folder: Path, cpus: int, attempts: int = 4) -> Any:
    """One worker node, tried again when its raylet gives up at start (its processes, found by the ports only
    it uses, are stopped first)."""
    for attempt in range(1, attempts + 1):
        args = _node_args()
        try:
            return cluster.add_node(num_cpus=cpus, object_store_memory=100 * 1024 * 1024, **args)
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning("a worker node did not start (%s); trying again", str(exc).splitlines()[0])
            ports = [v for k, v in args.items() if k.endswith("_port")]
            for proc in processes_matching([f"={port}" for port in ports]):
                with contextlib.suppress(Exception):
                    proc.kill()
    raise AssertionError("unreachable")


def _node_args() -> dict[str, Any]:
    """A node's fixed ports (its agents' port files can then be written ahead of them: see
    :func:`_write_agent_ports_ahead`)."""
    return {"node_manager_port": free_port(), "runtime_env_agent_port": free_port(),
            "metrics_agent_port": free_port(), "metrics_export_port": free_port(),
            "dashboard_agent_listen_port": free_port()}


@contextlib.contextmanager
def _write_agent_ports_ahead(folder: Path) -> Iterator[None]:
    """While nodes start under ``folder``, write each raylet's agent port files as soon as the raylet runs.

    A raylet waits at most 15 s (fixed in Ray) for its agents to write their ports to files, then aborts; a
    minimal-mode dashboard agent imports every dashboard module first, which on a machine loaded several times
    over its cores takes longer. The ports are fixed by :func:`_node_args`, so the files say exactly what the
    agents write themselves (-1 for what a minimal agent does not serve): nothing changes but the wait."""
    import psutil
    from ray._raylet import (  # type: ignore[attr-defined]
        DASHBOARD_AGENT_LISTEN_PORT_NAME,
        METRICS_AGENT_PORT_NAME,
        METRICS_EXPORT_PORT_NAME,
        RUNTIME_ENV_AGENT_PORT_NAME,
        persist_port,
    )

    done = threading.Event()
    handled: set[str] = set()

    def watch() -> None:
        while not done.is_set():
            for proc in psutil.process_iter(["cmdline"]):
                with contextlib.suppress(psutil.Error, ValueError, KeyError):
                    argv = proc.info["cmdline"] or []
                    if not argv or not argv[0].endswith("raylet") or f"--temp_dir={folder}" not in argv:
                        continue
                    flags = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
                    node_id = flags["node_id"]
                    if node_id in handled:
                        continue
                    for name, port in ((METRICS_AGENT_PORT_NAME, -1), (METRICS_EXPORT_PORT_NAME, -1),
                                       (DASHBOARD_AGENT_LISTEN_PORT_NAME, -1),
                                       (RUNTIME_ENV_AGENT_PORT_NAME, int(flags["runtime_env_agent_port"]))):
                        persist_port(flags["session_dir"], node_id, name, port)
                    handled.add(node_id)
            done.wait(0.2)  # polling for raylets being started

    watcher = threading.Thread(target=watch, name="soak-agent-ports", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(timeout=10)


def processes_under(folder: Path) -> list[Any]:
    """The processes whose command line names ``folder`` (a cluster's temp dir): this run's Ray processes."""
    return processes_matching([str(folder)])


def processes_matching(fragments: list[str]) -> list[Any]:
    """Other processes whose command line holds one of ``fragments``."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.pid != os.getpid() and any(f in cmdline for f in fragments):
                mine.append(proc)
    return mine


def kill_processes_under(folder: Path) -> None:
    """Stop a half-started cluster's processes, and only those."""
    import psutil

    mine = processes_under(folder)
    for proc in mine:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(mine, timeout=10)


# ------------------------------------------------------------------------------------------------- checks


def _iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def list_versions(s3: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every version of every object under ``prefix``, by key (delete markers left out)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            found.setdefault(version["Key"], []).append(version)
    return found


def read_dlq(queue: JobQueue) -> list[dict[str, str]]:
    """Every dead letter (leased for 5 minutes so each is seen once): body and attributes."""
    found: dict[str, dict[str, str]] = {}
    empty = 0
    while empty < 3:
        response = queue.sqs.receive_message(QueueUrl=queue.url("dlq"), MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                             VisibilityTimeout=300, MessageAttributeNames=["All"])
        batch = response.get("Messages", [])
        empty = 0 if batch else empty + 1
        for m in batch:
            found[m["MessageId"]] = {"body": m["Body"], "message_id": m["MessageId"],
                                     **{k: v.get("StringValue", "") for k, v in m.get("MessageAttributes", {}).items()}}
    return list(found.values())


def check(entries: list[Entry], queue: JobQueue, s3: Any, out_bucket: str, prefix: str) -> dict[str, Any]:
    """Every entry's fate from S3 and the queues alone."""
    versions = list_versions(s3, out_bucket, prefix)
    dead = read_dlq(queue)
    # A message is copied to the DLQ before it is deleted, and a copy whose send answer was cut off (the outage)
    # is sent again: copies of one source message are one dead letter (SQS's redrive keeps the message id).
    sources = {(d["body"], d.get("source_message_id") or d["message_id"]) for d in dead}
    dead_by_body = Counter(body for body, _ in sources)
    reasons_by_body: dict[str, str] = {}
    for d in dead:
        if d.get("error_reason"):
            reasons_by_body[d["body"]] = d["error_reason"]
    left = {q: queue.counts(q) for q in ("high", "normal")}
    expected_keys: set[str] = set()
    result: dict[str, Any] = {"good_done": 0, "good_failed_explained": 0, "lost": [], "duplicated": [],
                              "reprocessed": 0, "bad_explained": 0, "bad_unexplained": [], "bad_succeeded": [],
                              "incomplete_outputs": [], "wrong_content": [], "finished_at": [], "attempts": Counter(),
                              "work": []}
    for entry in entries:
        base = f"{prefix}{entry.job_id}" if entry.job_id else None
        keys = {f"{base}{EXTENSIONS[f]}" for f in FORMATS} | {f"{base}.metrics.json", f"{base}.done.json"} if base \
            else set()
        expected_keys |= keys | ({f"{base}.error.json"} if base else set())
        done = versions.get(f"{base}.done.json", []) if base else []
        error_record: dict[str, Any] | None = None
        if base and f"{base}.error.json" in versions:
            error_record = json.loads(s3.get_object(Bucket=out_bucket, Key=f"{base}.error.json")["Body"].read())
        dead_copies = dead_by_body.get(entry.body, 0)
        if entry.kind == "good":
            if done:
                result["good_done"] += 1
                if len(done) > 1:
                    result["duplicated"].append(entry.job_id)
                if len(versions.get(f"{base}.metrics.json", [])) > 1:
                    result["reprocessed"] += 1
                missing = [k for k in keys if k not in versions]
                if missing:
                    result["incomplete_outputs"].append(entry.job_id)
                metrics = json.loads(s3.get_object(Bucket=out_bucket, Key=f"{base}.metrics.json")["Body"].read())
                if abs(metrics["audio_seconds"] - entry.audio_seconds) > 0.05 or metrics["backend"] != "simulated":
                    result["wrong_content"].append(entry.job_id)
                result["finished_at"].append(_iso(metrics["finished_at"]))
                result["work"].append((metrics["worker"]["pid"], _iso(metrics["started_at"]),
                                       metrics["processing_seconds"]))
                result["attempts"][metrics["attempt"]] += 1
            elif (error_record and error_record.get("reason")) or dead_copies:
                result["good_failed_explained"] += 1
            else:
                result["lost"].append(entry.job_id)
            if dead_copies > 1:
                result["duplicated"].append(entry.job_id)
            continue
        label = entry.job_id or entry.body[:40]
        if done:
            result["bad_succeeded"].append(label)
        explained = bool(reasons_by_body.get(entry.body)) or bool(error_record and error_record.get("reason"))
        if explained:
            result["bad_explained"] += 1
        elif dead_copies:
            result["bad_explained"] += 1  # moved by SQS's redrive policy: in the DLQ, reason in the logs
        else:
            result["bad_unexplained"].append(label)
        if dead_copies > 1:
            result["duplicated"].append(label)
    result["stray_objects"] = sorted(k for k in versions if k not in expected_keys)
    known_bodies = {e.body for e in entries}
    result["stray_dead_letters"] = sum(1 for d in dead if d["body"] not in known_bodies)
    result["dead_letters"] = len(sources)
    result["dead_letter_copies"] = len(dead) - len(sources)
    result["left_in_queues"] = left
    result["left_in_flight"] = sum(sum(c.values()) for c in left.values())
    return result


# -------------------------------------------------------------------------------------------------- run


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
    moto = Moto(workdir)
    relay = FlakyEndpoint(moto.port)
    relay.start()
    saved_env = {k: os.environ.get(k) for k in [*AWS_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update({**AWS_ENV, "AWS_ENDPOINT_URL": relay.url})
    try:
        return _run(config, workdir, rng, relay)
    finally:
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
        relay.stop()
        moto.stop()
        for key, saved in saved_env.items():
            if saved is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = saved
        if not config.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(config: SoakConfig, workdir: Path, rng: random.Random, relay: FlakyEndpoint) -> dict[str, Any]:
    import ray

    from jobs.worker import IngestActor
    from rayscribe import infra
    from rayscribe.aws import client
    from rayscribe.settings import load_settings, read_settings

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


def summarise(config: SoakConfig, entries: list[Entry], faults: list[Fault], outages: list[dict[str, float]],
              found: dict[str, Any], ingest_view: dict[str, Any], feeder: Feeder, ideal_rate: float,
              mean_audio: float, drained_at: float, timed_out: bool) -> dict[str, Any]:
    good = sum(1 for e in entries if e.kind == "good")
    bad = len(entries) - good
    start = feeder.started_at or drained_at
    last = max(found["finished_at"], default=drained_at)
    window = max(1e-6, last - start)
    outage_seconds = sum(o.get("end", last) - o["start"] for o in outages if "start" in o)
    rate = found["good_done"] / window
    rate_no_outage = found["good_done"] / max(1e-6, window - outage_seconds)
    explained = found["bad_explained"] + found["good_failed_explained"]
    failures = bad + found["good_failed_explained"]
    kills = [f for f in faults if f.kind == "actor_kill" and f.fired_at]
    node_kills = [f for f in faults if f.kind == "node_kill" and f.fired_at]
    results: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "jobs": {"good": good, "malformed": config.malformed, "corrupt": config.corrupt, "total": len(entries),
                 "mean_audio_seconds": round(mean_audio, 3)},
        "faults": {"actor_kills": len(kills),
                   "node_kills": len(node_kills),
                   "workers_lost_with_node": sum(f.detail.get("workers_on_it", 0) for f in node_kills),
                   "outage_seconds": round(outage_seconds, 1),
                   "connections_cut": sum(o.get("connections_cut", 0) for o in outages),
                   "malformed_messages": config.malformed, "corrupt_audio": config.corrupt,
                   "feeder_send_retries": feeder.resends,
                   "timeline": [{"kind": f.kind, "at_sent_fraction": round(f.at, 3),
                                 "seconds_after_start": round((f.fired_at or start) - start, 1), **f.detail}
                                for f in faults]},
        "outcome": {
            "good_done": found["good_done"],
            "good_failed_explained": found["good_failed_explained"],
            "lost": len(found["lost"]), "lost_jobs": found["lost"][:50],
            "duplicated": len(found["duplicated"]), "duplicated_jobs": found["duplicated"][:50],
            "reprocessed": found["reprocessed"],
            "incomplete_outputs": found["incomplete_outputs"][:50],
            "wrong_content": found["wrong_content"][:50],
            "bad_succeeded": found["bad_succeeded"][:50],
            "failures": failures, "explained": explained,
            "explained_percent": round(100.0 * explained / failures, 2) if failures else 100.0,
            "unexplained": found["bad_unexplained"][:50],
            "dead_letters": found["dead_letters"], "dead_letter_copies": found["dead_letter_copies"],
            "stray_dead_letters": found["stray_dead_letters"],
            "stray_objects": found["stray_objects"][:50],
            "left_in_flight": found["left_in_flight"], "left_in_queues": found["left_in_queues"],
            "attempts_of_done_jobs": {str(k): v for k, v in sorted(found["attempts"].items())},
            "timed_out": timed_out,
        },
        "drain": {"window_seconds": round(window, 2), "jobs_per_second": round(rate, 3),
                  "ideal_jobs_per_second": round(ideal_rate, 3),
                  "percent_of_ideal": round(100 * rate / ideal_rate, 1),
                  "jobs_per_second_outage_excluded": round(rate_no_outage, 3),
                  "percent_of_ideal_outage_excluded": round(100 * rate_no_outage / ideal_rate, 1),
                  "ideal": f"{config.workers} workers x {config.speed:g}x / {mean_audio:.2f} s mean audio",
                  # good jobs finished in each 10 s from the first send: where the faults cost throughput
                  "done_per_10s": _per_bucket(found["finished_at"], start, 10.0),
                  # share of the workers' time spent on jobs that were then stored, in each 10 s: where
                  # the workers waited (outputs are written later than that when S3 is down)
                  "busy_percent_per_10s": busy_per_bucket(found["work"], start, last, 10.0, config.workers)},
        "ingest_view": {k: ingest_view.get(k) for k in ("done", "failed", "retried", "requeued", "duplicates",
                                                        "released", "stop_reason")},
    }
    o = results["outcome"]
    results["passed"] = bool(o["lost"] == 0 and o["duplicated"] == 0 and o["explained_percent"] == 100.0
                             and o["left_in_flight"] == 0 and not o["incomplete_outputs"] and not o["wrong_content"]
                             and not o["bad_succeeded"] and not o["stray_objects"] and not timed_out)
    results["drain_target_met"] = results["drain"]["percent_of_ideal"] >= 90.0
    return results


def busy_per_bucket(work: list[tuple[Any, float, float]], start: float, end: float, width: float,
                    workers: int) -> list[float]:
    """Percent of ``workers`` x ``width`` seconds spent transcribing jobs that were done, in each bucket from
    ``start``. ``work`` holds (worker pid, time sent to it, processing seconds); a worker runs its jobs in the
    order they were sent, each beginning when it arrived or the one before ended, whichever is later."""
    buckets = [0.0] * max(1, int((end - start) // width) + 1)
    by_worker: dict[Any, list[tuple[float, float]]] = {}
    for pid, sent, seconds in work:
        by_worker.setdefault(pid, []).append((sent, seconds))
    for jobs in by_worker.values():
        free = start
        for sent, seconds in sorted(jobs):
            begin = max(sent, free)
            free = begin + seconds
            for i in range(int((begin - start) // width), min(len(buckets), int((free - start) // width) + 1)):
                low, high = start + i * width, start + (i + 1) * width
                buckets[i] += max(0.0, min(free, high) - max(begin, low))
    # the last bucket ends with the window: share of its own length
    return [round(100 * b / (workers * max(1e-9, min(end, start + (i + 1) * width) - (start + i * width))), 1)
            for i, b in enumerate(buckets)]


def _per_bucket(times: list[float], start: float, width: float) -> list[int]:
    """How many of ``times`` fall in each ``width``-second bucket from ``start``."""
    counts = Counter(int((t - start) // width) for t in times if t >= start)
    return [counts.get(i, 0) for i in range(max(counts, default=-1) + 1)]


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    jobs, faults, o, d = results["jobs"], results["faults"], results["outcome"], results["drain"]
    table = Table(title="rayscribe soak (queue path, simulated engine)", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    rows = [
        ("jobs sent", f"{jobs['total']} ({jobs['good']} good, {jobs['malformed']} malformed, "
                      f"{jobs['corrupt']} corrupt audio)", ""),
        ("faults injected", f"{faults['actor_kills']} actor kills, {faults['node_kills']} node kill "
                            f"({faults['workers_lost_with_node']} workers), {faults['outage_seconds']:.0f} s outage",
         ""),
        ("good jobs done", f"{o['good_done']} / {jobs['good']}", str(jobs["good"])),
        ("lost", str(o["lost"]), "0"),
        ("duplicated", str(o["duplicated"]), "0"),
        ("re-processed after a fault", str(o["reprocessed"]), ""),
        ("failures explained", f"{o['explained']} / {o['failures']} ({o['explained_percent']:.0f} %)", "100 %"),
        ("left in flight", str(o["left_in_flight"]), "0"),
        ("drain rate", f"{d['jobs_per_second']:.2f} jobs/s = {d['percent_of_ideal']:.0f} % of ideal "
                       f"{d['ideal_jobs_per_second']:.2f}", ">= 90 %"),
        ("drain, outage excluded", f"{d['jobs_per_second_outage_excluded']:.2f} jobs/s = "
                                   f"{d['percent_of_ideal_outage_excluded']:.0f} %", ""),
        ("window", f"{d['window_seconds']:.0f} s ({d['ideal']})", ""),
        ("standby workers", str(results["config"]["spares"]), ""),
        ("jobs run again here / via SQS", f"{results['ingest_view'].get('requeued')} / "
                                          f"{results['ingest_view'].get('retried')}", ""),
    ]
    for row in rows:
        table.add_row(*row)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(table)
    verdict = "[green]PASSED[/]" if results["passed"] else "[red]FAILED[/]"
    console.print(f"soak {verdict}; drain target {'met' if results['drain_target_met'] else 'missed'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.soak", description=__doc__.split("\n")[0])
    defaults = SoakConfig()
    parser.add_argument("--jobs", type=int, default=defaults.jobs, help="good jobs to send")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="simulated Whisper workers")
    parser.add_argument("--spares", type=int, default=defaults.spares, help="warm standby workers beside the "
                        "pool (0: none; a killed worker is then replaced by a new process)")
    parser.add_argument("--inflight", type=int, default=defaults.inflight, help="jobs each worker holds "
                        "(RAYSCRIBE_MAX_INFLIGHT_PER_WORKER)")
    parser.add_argument("--prefetch", type=int, default=defaults.prefetch, help="inputs read ahead per worker "
                        "(RAYSCRIBE_PREFETCH_PER_WORKER)")
    parser.add_argument("--probe", type=float, default=defaults.probe, help="seconds a worker may not answer "
                        "a liveness probe before it is taken for lost (RAYSCRIBE_WORKER_PROBE_SECONDS; 0: off)")
    parser.add_argument("--nodes", type=int, default=defaults.nodes, help="worker nodes (one may be killed)")
    parser.add_argument("--speed", type=float, default=defaults.speed, help="simulated speed (x real time)")
    parser.add_argument("--actor-kills", type=int, default=defaults.actor_kills)
    parser.add_argument("--no-node-kill", dest="node_kill", action="store_false")
    parser.add_argument("--outage-seconds", type=float, default=defaults.outage_seconds, help="0: no outage")
    parser.add_argument("--malformed", type=int, default=defaults.malformed)
    parser.add_argument("--corrupt", type=int, default=defaults.corrupt)
    parser.add_argument("--backlog", type=int, default=defaults.backlog, help="visible messages kept waiting "
                        "(0: workers x 2)")
    parser.add_argument("--visibility", type=int, default=defaults.visibility, help="SQS lease in seconds (jobs "
                        "caught by the outage come back after it)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help="seconds; 0: from the ideal time")
    parser.add_argument("--json", dest="json_path", type=Path, default=defaults.json_path)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (Ray logs, moto log)")
    parser.add_argument("--verbose", action="store_true", help="show the workers' log lines")
    args = parser.parse_args(argv)
    config = SoakConfig(**vars(args))
    if config.jobs < 1 or config.workers < 1 or config.nodes < (2 if config.node_kill else 1):
        parser.error("--jobs and --workers must be >= 1, and --nodes >= 2 when a node is killed")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.ERROR)
    results = run_soak(config)
    config.json_path.parent.mkdir(parents=True, exist_ok=True)
    config.json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table(results)
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
