"""The hybrid path: one Whisper worker and one Voxtral worker packed onto the same GPU, both started on the
same audio at once, the transcript handed back as soon as it is ready and the analysis when it is.

Packing is a placement group of two bundles, ``{"GPU": HYBRID_WHISPER_GPU, "CPU": HYBRID_CPUS}`` and
``{"GPU": HYBRID_VOXTRAL_GPU, "CPU": HYBRID_CPUS}``, with ``STRICT_PACK`` (one node), and Ray gives fractional
GPU requests on one node the same GPU while it has room; so the two workers share a GPU, and a second group,
finding that GPU full, lands on another. GPU fractions are scheduling labels only: the memory budget (Voxtral
fp16 about 9.5 GB of a T4's 16 GB, see the README) is the operator's to respect, and Voxtral checks free memory
before loading. On a cluster without GPUs the bundles ask for CPUs only and everything runs on CPU.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.cluster import cluster_gpus
from actors.voxtral_worker import VoxtralWorker
from actors.whisper_worker import WhisperWorker
from rayscribe.config.settings import Settings
from rayscribe.config.voxtral import VoxtralSettings
from rayscribe.engines import TranscribeOptions
from rayscribe.engines.voxtral_engine import AnalyzeOptions
from rayscribe.errors import RayscribeError
from rayscribe.work import ItemResult, WorkItem

log = logging.getLogger("rayscribe.hybrid")

START_TIMEOUT = 900.0


class HybridError(RayscribeError):
    """The hybrid group cannot start (no room for its placement group, a worker failed to load)."""


def hybrid_bundles(vsettings: VoxtralSettings, use_gpu: bool) -> list[dict[str, float]]:
    """The placement group's two bundles: Whisper's, then Voxtral's."""
    bundles = []
    for gpu in (vsettings.hybrid_whisper_gpu, vsettings.hybrid_voxtral_gpu):
        bundle = {"CPU": vsettings.hybrid_cpus}
        if use_gpu and gpu > 0:
            bundle["GPU"] = gpu
        bundles.append(bundle)
    return bundles


def pair_demand(bundles: list[dict[str, float]]) -> dict[str, float]:
    """What one Whisper + Voxtral pair asks of one node (STRICT_PACK): the sum of its bundles."""
    total: dict[str, float] = {}
    for bundle in bundles:
        for key, value in bundle.items():
            total[key] = total.get(key, 0.0) + value
    return total


def reserve_pair(bundles: list[dict[str, float]]) -> Any:
    """The pair's placement group (STRICT_PACK: one node; fractional GPU bundles on one node share a GPU while
    it has room). Not waited for: on an autoscaling cluster it is the demand that brings a GPU node up."""
    return placement_group(bundles, strategy="STRICT_PACK", name=f"rayscribe-hybrid-{uuid.uuid4().hex[:8]}")


def start_in_bundle(actor_class: Any, pg: Any, index: int, bundle: dict[str, float], settings: dict[str, Any]) -> Any:
    """An actor of ``actor_class`` in bundle ``index`` of ``pg``, asking exactly that bundle's resources."""
    return actor_class.options(
        num_cpus=bundle["CPU"], num_gpus=bundle.get("GPU", 0), max_restarts=0,
        scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index),
    ).remote(settings)


@dataclass
class HybridEvent:
    """One half of a hybrid answer, in the order they finish."""

    kind: str  # "transcript" | "analysis"
    seconds: float  # since both were started
    transcript: ItemResult | None = None
    analysis: dict[str, Any] = field(default_factory=dict)


class HybridGroup:
    """A Whisper worker and a Voxtral worker in one STRICT_PACK placement group."""

    def __init__(self, settings: Settings, vsettings: VoxtralSettings, *, use_gpu: bool | None = None) -> None:
        self.settings = settings
        self.vsettings = vsettings
        self.use_gpu = (cluster_gpus() > 0 and settings.device != "cpu") if use_gpu is None else use_gpu
        self.bundles = hybrid_bundles(vsettings, self.use_gpu)
        self.pg: Any = None
        self.whisper: Any = None
        self.voxtral: Any = None
        self.infos: dict[str, dict[str, Any]] = {}

    def start(self, timeout: float = START_TIMEOUT) -> dict[str, dict[str, Any]]:
        """Reserve the bundles, start both workers in them, wait until both have loaded their models."""
        self.launch(timeout)
        return self.wait_ready(timeout)

    def launch(self, timeout: float = START_TIMEOUT) -> None:
        """Reserve the bundles and start both workers without waiting for their models (several groups can
        then load at once)."""
        self.pg = reserve_pair(self.bundles)
        try:
            ray.get(self.pg.ready(), timeout=timeout)
        except GetTimeoutError:
            self.stop()
            raise HybridError(f"no node has room for the hybrid bundles {self.bundles} (STRICT_PACK: one node) "
                              f"within {timeout:.0f} s; the cluster has {ray.available_resources()} free") from None
        self.whisper = start_in_bundle(WhisperWorker, self.pg, 0, self.bundles[0], self.settings.model_dump())
        self.voxtral = start_in_bundle(VoxtralWorker, self.pg, 1, self.bundles[1], self.vsettings.model_dump())

    def wait_ready(self, timeout: float = START_TIMEOUT) -> dict[str, dict[str, Any]]:
        """Wait until both workers have loaded their models; their identities (node, GPU ids, model)."""
        try:
            whisper, voxtral = ray.get([self.whisper.info.remote(), self.voxtral.info.remote()], timeout=timeout)
        except (RayActorError, GetTimeoutError) as exc:
            self.stop()
            cause = getattr(exc, "cause", None) or exc
            raise HybridError(f"a hybrid worker could not start: {str(cause).strip().splitlines()[-1]}") from None
        self.infos = {"whisper": whisper, "voxtral": voxtral}
        log.info("hybrid group ready: whisper %s + voxtral %s on node %s, GPUs %s / %s", whisper["model"],
                 voxtral["model"], whisper["node_id"][:8], whisper["gpu_ids"], voxtral["gpu_ids"])
        return self.infos

    def submit(self, data: bytes, name: str = "audio", options: AnalyzeOptions | None = None,
               transcribe_options: TranscribeOptions | None = None) -> tuple[Any, Any]:
        """Start both workers on the same audio at once (one copy in the object store); the two refs."""
        ref = ray.put(data)
        item = WorkItem(key=name, name=name, source=name, attempts=1)
        transcript = self.whisper.transcribe.remote([item], [ref], transcribe_options)
        analysis = self.voxtral.analyze.remote(ref, options or AnalyzeOptions(), name)
        return transcript, analysis

    def run(self, data: bytes, name: str = "audio", options: AnalyzeOptions | None = None,
            transcribe_options: TranscribeOptions | None = None) -> Iterator[HybridEvent]:
        """Both halves, each yielded as soon as it is ready (the transcript usually first)."""
        started = time.perf_counter()
        transcript_ref, analysis_ref = self.submit(data, name, options, transcribe_options)
        pending = {transcript_ref: "transcript", analysis_ref: "analysis"}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            kind = pending.pop(ready[0])
            seconds = time.perf_counter() - started
            if kind == "transcript":
                yield HybridEvent(kind, seconds, transcript=ray.get(ready[0])[0])
            else:
                try:
                    analysis = ray.get(ready[0])
                except RayActorError as exc:  # the Voxtral worker died: the transcript is not affected
                    analysis = {"status": "failed", "error": f"the Voxtral worker died: {exc}",
                                "error_type": "WorkerDied"}
                yield HybridEvent(kind, seconds, analysis=analysis)

    def memory(self) -> dict[str, dict[str, int]]:
        """Memory each worker holds now (host RSS and, for Voxtral on CUDA, torch's GPU allocation)."""
        whisper, voxtral = ray.get([self.whisper.memory.remote(), self.voxtral.memory.remote()])
        return {"whisper": whisper, "voxtral": voxtral}

    def stop(self) -> None:
        for handle in (self.whisper, self.voxtral):
            if handle is not None:
                ray.kill(handle, no_restart=True)
        if self.pg is not None:
            remove_placement_group(self.pg)
        self.whisper = self.voxtral = self.pg = None
