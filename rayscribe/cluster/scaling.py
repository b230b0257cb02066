"""The queue-driven autoscaling policy, without Ray: queue depth in, desired GPUs (and Whisper workers) out.

The backlog (visible + in-flight messages of the main and high-priority queues) times the mean audio length of a
job is the audio still to transcribe; divided by what one GPU transcribes per wall second and by the target drain
time it gives the GPUs needed to empty the queue in that time. Both rates start from priors in the settings and
follow finished jobs (an exponentially weighted mean), so a cluster learns its own speed.

Scaling up is immediate; scaling down waits until the queues have been empty for the idle timeout, then drops to
``min_gpus`` (0 by default: no GPU node runs without work). Holding while work remains keeps warm workers (a new
one loads its model, a new node boots) instead of flapping with the approximate counts SQS reports.

Every decision is a :class:`Decision` holding its inputs, so it can be logged and tested as a table.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from rayscribe.config.scaling import ScalingSettings


@dataclass(frozen=True)
class QueueCounts:
    """Approximate message counts of the two job queues (SQS ``ApproximateNumberOfMessages[NotVisible]``)."""

    main_visible: int = 0
    main_inflight: int = 0
    high_visible: int = 0
    high_inflight: int = 0

    @property
    def total(self) -> int:
        return self.main_visible + self.main_inflight + self.high_visible + self.high_inflight


@dataclass(frozen=True)
class Decision:
    """One decision of the policy with everything it was computed from."""

    counts: QueueCounts
    throughput_per_gpu: float  # audio seconds per wall second one GPU transcribes
    job_seconds: float  # mean audio seconds per job
    previous_gpus: int
    actual_gpus: float
    idle_seconds: float  # how long both queues have been empty (0 while they are not)
    backlog_audio_seconds: float
    needed_gpus: float
    desired_gpus: int
    desired_workers: int
    reason: str
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["backlog_jobs"] = self.counts.total
        return data


def decide(
    counts: QueueCounts,
    *,
    throughput_per_gpu: float,
    job_seconds: float,
    previous_gpus: int,
    idle_seconds: float,
    target_drain_seconds: float,
    min_gpus: int,
    max_gpus: int,
    gpu_per_worker: float,
    idle_timeout: float,
    actual_gpus: float = 0.0,
    at: float = 0.0,
) -> Decision:
    """The desired number of GPUs (and workers) for the given queue state; a pure function."""
    if gpu_per_worker <= 0:
        raise ValueError("autoscaling needs GPU workers: set RAYSCRIBE_GPU_PER_WORKER above 0 (e.g. 0.5)")
    jobs = counts.total
    backlog = jobs * job_seconds
    needed = backlog / (max(throughput_per_gpu, 1e-9) * target_drain_seconds)
    needed = min(needed, jobs * gpu_per_worker)  # no more workers than jobs
    floor = max(min_gpus, math.ceil(gpu_per_worker)) if jobs else min_gpus
    computed = min(max_gpus, max(floor, math.ceil(needed - 1e-9)))
    if jobs:
        if computed > previous_gpus:
            desired, reason = computed, f"scale up: {jobs} job(s) ≈ {backlog:.0f} s of audio need " \
                                        f"{needed:.2f} GPU(s) to drain in {target_drain_seconds:.0f} s"
        elif computed < previous_gpus:
            desired, reason = previous_gpus, "hold: work remains (scale down only after the idle timeout)"
        else:
            desired, reason = computed, "steady"
    elif idle_seconds >= idle_timeout:
        desired = min_gpus
        reason = "steady at the minimum" if previous_gpus == min_gpus else \
            f"scale down: queues empty for {idle_seconds:.0f} s (idle timeout {idle_timeout:.0f} s)"
    else:
        desired = max(min_gpus, previous_gpus)
        reason = f"hold: queues empty for {idle_seconds:.0f} s of the {idle_timeout:.0f} s idle timeout"
    desired = min(max_gpus, desired)
    return Decision(
        counts=counts, throughput_per_gpu=throughput_per_gpu, job_seconds=job_seconds,
        previous_gpus=previous_gpus, actual_gpus=actual_gpus, idle_seconds=idle_seconds,
        backlog_audio_seconds=backlog, needed_gpus=round(needed, 4), desired_gpus=desired,
        desired_workers=int(desired / gpu_per_worker + 1e-9), reason=reason, at=at,
    )


@dataclass
class RateEstimate:
    """Exponentially weighted means of per-GPU throughput and audio seconds per job, from finished jobs."""

    throughput_per_gpu: float
    job_seconds: float
    alpha: float = 0.2
    samples: int = 0

    def observe(self, audio_seconds: float, processing_seconds: float, gpu_per_worker: float) -> None:
        """One finished job: its audio length and the seconds its worker spent on it."""
        if audio_seconds <= 0 or processing_seconds <= 0 or gpu_per_worker <= 0:
            return
        speed = audio_seconds / processing_seconds / gpu_per_worker  # a GPU holds 1/gpu_per_worker workers
        self.throughput_per_gpu += self.alpha * (speed - self.throughput_per_gpu)
        self.job_seconds += self.alpha * (audio_seconds - self.job_seconds)
        self.samples += 1


@dataclass
class ScalingPolicy:
    """The policy's state between polls: learnt rates, the last decision and since when the queues are empty."""

    settings: ScalingSettings
    gpu_per_worker: float
    rates: RateEstimate = field(init=False)
    previous_gpus: int = field(init=False)
    empty_since: float | None = None

    def __post_init__(self) -> None:
        s = self.settings
        self.rates = RateEstimate(s.scaling_throughput_prior, s.scaling_job_seconds_prior, s.scaling_ewma_alpha)
        self.previous_gpus = s.scaling_min_gpus

    def observe(self, audio_seconds: float, processing_seconds: float) -> None:
        self.rates.observe(audio_seconds, processing_seconds, self.gpu_per_worker)

    def step(self, counts: QueueCounts, now: float, actual_gpus: float = 0.0) -> Decision:
        """Decide for the queue state seen at ``now`` (a monotonic clock) and remember the result."""
        if counts.total:
            self.empty_since = None
        elif self.empty_since is None:
            self.empty_since = now
        s = self.settings
        decision = decide(
            counts, throughput_per_gpu=self.rates.throughput_per_gpu, job_seconds=self.rates.job_seconds,
            previous_gpus=self.previous_gpus, idle_seconds=0.0 if self.empty_since is None else now - self.empty_since,
            target_drain_seconds=s.scaling_target_drain_seconds, min_gpus=s.scaling_min_gpus,
            max_gpus=s.scaling_max_gpus, gpu_per_worker=self.gpu_per_worker, idle_timeout=s.scaling_idle_timeout,
            actual_gpus=actual_gpus, at=now,
        )
        self.previous_gpus = decision.desired_gpus
        return decision


def resource_bundles(workers: int, gpu_per_worker: float, cpus_per_worker: float) -> list[dict[str, float]]:
    """What to ask Ray's autoscaler for: one bundle per Whisper worker, shaped as the worker asks."""
    return [{"GPU": gpu_per_worker, "CPU": cpus_per_worker} for _ in range(max(0, workers))]
