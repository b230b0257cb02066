"""The autoscaling policy as tables: queue state in, desired GPUs and workers out; settings named on error."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayscribe.cluster.scaling import QueueCounts, RateEstimate, ScalingPolicy, decide, resource_bundles
from rayscribe.config.scaling import ScalingSettings, load_scaling_settings
from rayscribe.errors import SettingsError

BASE = {"throughput_per_gpu": 30.0, "job_seconds": 300.0, "target_drain_seconds": 600.0, "min_gpus": 0,
        "max_gpus": 4, "gpu_per_worker": 0.5, "idle_timeout": 300.0}


@pytest.mark.parametrize(
    ("counts", "previous", "idle", "overrides", "gpus", "workers", "reason"),
    [
        # empty queue, idle timeout passed: down to min_gpus (0 = no GPU nodes)
        (QueueCounts(), 0, 0.0, {"idle_timeout": 0.0}, 0, 0, "steady at the minimum"),
        (QueueCounts(), 3, 301.0, {}, 0, 0, "scale down"),
        (QueueCounts(), 3, 301.0, {"min_gpus": 1}, 1, 2, "scale down"),
        # empty queue, timeout not yet passed: hold what runs
        (QueueCounts(), 3, 10.0, {}, 3, 6, "hold: queues empty"),
        # one short job: at least one GPU, whatever the estimate
        (QueueCounts(main_visible=1), 0, 0.0, {}, 1, 2, "scale up"),
        # 120 jobs x 300 s = 36000 s of audio / (30 x 600) = 2 GPUs
        (QueueCounts(main_visible=100, main_inflight=20), 0, 0.0, {}, 2, 4, "scale up"),
        # high-priority messages count the same
        (QueueCounts(high_visible=60, high_inflight=60), 0, 0.0, {}, 2, 4, "scale up"),
        # 2.0001 GPUs needed → 3
        (QueueCounts(main_visible=121), 0, 0.0, {}, 3, 6, "scale up"),
        # capped at max_gpus
        (QueueCounts(main_visible=10000), 1, 0.0, {}, 4, 8, "scale up"),
        # tighter drain target → more GPUs
        (QueueCounts(main_visible=120), 0, 0.0, {"target_drain_seconds": 300.0}, 4, 8, "scale up"),
        # faster GPUs → fewer
        (QueueCounts(main_visible=120), 0, 0.0, {"throughput_per_gpu": 120.0}, 1, 2, "scale up"),
        # work remains but less is needed: hold (no flapping on approximate counts)
        (QueueCounts(main_inflight=1), 3, 0.0, {}, 3, 6, "hold: work remains"),
        (QueueCounts(main_visible=120), 2, 0.0, {}, 2, 4, "steady"),
        # no more workers than jobs: 2 jobs of 1 GPU each never ask for 4 GPUs
        (QueueCounts(main_visible=2), 0, 0.0, {"gpu_per_worker": 1.0, "job_seconds": 1e6}, 2, 2, "scale up"),
        # a worker spanning two GPUs
        (QueueCounts(main_visible=1), 0, 0.0, {"gpu_per_worker": 2.0}, 2, 1, "scale up"),
        # min_gpus keeps a floor under load too
        (QueueCounts(main_visible=1), 0, 0.0, {"min_gpus": 2}, 2, 4, "scale up"),
    ],
)
def test_decision_table(counts: QueueCounts, previous: int, idle: float, overrides: dict[str, float],
                        gpus: int, workers: int, reason: str) -> None:
    decision = decide(counts, previous_gpus=previous, idle_seconds=idle, **{**BASE, **overrides})  # type: ignore[arg-type]
    assert (decision.desired_gpus, decision.desired_workers) == (gpus, workers), decision
    assert decision.reason.startswith(reason), decision.reason
    logged = decision.to_dict()  # the inputs travel with the decision, for the log line
    assert logged["backlog_jobs"] == counts.total and logged["counts"]["main_visible"] == counts.main_visible


def test_cpu_workers_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="RAYSCRIBE_GPU_PER_WORKER"):
        decide(QueueCounts(main_visible=1), previous_gpus=0, idle_seconds=0.0, **{**BASE, "gpu_per_worker": 0.0})  # type: ignore[arg-type]


def test_policy_over_time_scales_up_holds_then_to_zero_after_idle_timeout() -> None:
    policy = ScalingPolicy(ScalingSettings(scaling_idle_timeout=30, scaling_job_seconds_prior=300), 0.5)
    timeline = [  # (time, visible, inflight) → desired GPUs
        (0, 120, 0, 2), (10, 60, 4, 2), (20, 0, 1, 2), (30, 0, 0, 2), (50, 0, 0, 2), (60, 0, 0, 0),
        (70, 0, 0, 0), (80, 1, 0, 1),
    ]
    seen = [policy.step(QueueCounts(main_visible=v, main_inflight=f), now=t).desired_gpus for t, v, f, _ in timeline]
    assert seen == [want for *_, want in timeline]


@pytest.mark.parametrize(
    ("jobs", "throughput", "job_seconds"),
    [
        ([], 30.0, 300.0),  # no jobs: the priors
        ([(60.0, 1.0)], 30.0 + 0.5 * (120.0 - 30.0), 300.0 + 0.5 * (60.0 - 300.0)),  # 60x RT on half a GPU
        ([(60.0, 0.0), (0.0, 1.0)], 30.0, 300.0),  # nonsense samples are ignored
    ],
)
def test_rates_follow_finished_jobs(jobs: list[tuple[float, float]], throughput: float,
                                    job_seconds: float) -> None:
    rates = RateEstimate(30.0, 300.0, alpha=0.5)
    for audio, processing in jobs:
        rates.observe(audio, processing, gpu_per_worker=0.5)
    assert rates.throughput_per_gpu == pytest.approx(throughput)
    assert rates.job_seconds == pytest.approx(job_seconds)


def test_learnt_speed_changes_the_decision() -> None:
    policy = ScalingPolicy(ScalingSettings(scaling_ewma_alpha=1.0), 1.0)
    assert policy.step(QueueCounts(main_visible=120), now=0).desired_gpus == 2
    policy.observe(audio_seconds=300.0, processing_seconds=2.5)  # 120x real time per GPU
    policy.previous_gpus = 0
    assert policy.step(QueueCounts(main_visible=120), now=1).desired_gpus == 1


def test_bundles_match_the_worker_shape() -> None:
    assert resource_bundles(3, 0.5, 1.0) == [{"GPU": 0.5, "CPU": 1.0}] * 3
    assert resource_bundles(0, 0.5, 1.0) == []


def test_defaults_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_scaling_settings()
    assert (s.scaling_min_gpus, s.scaling_max_gpus, s.scaling_target_drain_seconds) == (0, 4, 600.0)
    monkeypatch.setenv("RAYSCRIBE_SCALING_MAX_GPUS", "0")
    with pytest.raises(SettingsError, match="RAYSCRIBE_SCALING_MAX_GPUS"):
        load_scaling_settings()
    monkeypatch.setenv("RAYSCRIBE_SCALING_MAX_GPUS", "2")
    monkeypatch.setenv("RAYSCRIBE_SCALING_MIN_GPUS", "3")
    with pytest.raises(SettingsError, match="must not exceed RAYSCRIBE_SCALING_MAX_GPUS"):
        load_scaling_settings()


def test_env_template_documents_every_scaling_setting() -> None:
    template = (Path(__file__).resolve().parents[1] / ".env.template").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in template.splitlines() if "=" in line}
    keys = [f"RAYSCRIBE_{name.upper()}" for name in ScalingSettings.model_fields]
    missing = [key for key in keys if key not in documented]
    assert not missing, f".env.template lacks {missing}"
