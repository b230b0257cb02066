"""The GPU-demand decisions (rayscribe/gpu_demand.py), without Ray: whether workers ask for GPUs, how many fit on
what the autoscaler may launch, and the error when GPUs are required and can never come."""

from __future__ import annotations

import pytest

from rayscribe.gpu_demand import (
    ClusterCapacity,
    GpuUnavailableError,
    NodeType,
    bounded_workers,
    gpu_slots,
    node_types_from_config,
    wants_gpu,
    work_units,
)

T4 = NodeType("gpu_spot", {"CPU": 4, "GPU": 1}, 4)
MULTI = NodeType("gpu_multi", {"CPU": 48, "GPU": 4}, 1)
CPU_ONLY = NodeType("cpu", {"CPU": 8}, 10)
FRESH = ClusterCapacity(cpus_now=4, node_types=(T4, CPU_ONLY), max_nodes=4, source="test")
BARE = ClusterCapacity(cpus_now=4)


def test_a_fresh_autoscaling_cluster_asks_for_gpus() -> None:
    assert wants_gpu("auto", "auto", FRESH, 0.5)
    assert wants_gpu("cuda", "auto", FRESH, 0.5)
    assert not wants_gpu("cpu", "auto", FRESH, 0.5)
    assert not wants_gpu("auto", "auto", FRESH, 0.0)


def test_no_gpu_anywhere_runs_on_cpu_and_cuda_says_what_is_missing() -> None:
    assert not wants_gpu("auto", "auto", BARE, 0.5)
    cpu_nodes = ClusterCapacity(node_types=(CPU_ONLY,), source="the test config")
    with pytest.raises(GpuUnavailableError, match=r"RAYSCRIBE_DEVICE=cuda.*no GPUs.*launch none.*RAYSCRIBE_GPU_NODES"):
        wants_gpu("cuda", "auto", cpu_nodes, 0.5)


def test_the_setting_forces_either_way() -> None:
    assert wants_gpu("auto", "yes", BARE, 0.5)
    assert not wants_gpu("auto", "no", FRESH, 0.5)
    assert wants_gpu("auto", "no", ClusterCapacity(gpus_now=1, gpus_per_node_now=({"CPU": 4, "GPU": 1},)), 0.5)


def test_worker_slots_follow_what_may_be_launched() -> None:
    # 4 T4 nodes x min(1 GPU / 0.5, 4 CPU / 1) = 8 workers; the CPU-only type holds none
    assert gpu_slots(FRESH, {"CPU": 1, "GPU": 0.5}) == 8
    # CPUs bound it too: 2 CPUs per worker -> 2 per node
    assert gpu_slots(FRESH, {"CPU": 2, "GPU": 0.5}) == 8
    assert gpu_slots(FRESH, {"CPU": 3, "GPU": 0.5}) == 4
    # the global node cap: at most 2 nodes in all, the larger ones first
    capped = ClusterCapacity(node_types=(T4, MULTI), max_nodes=2)
    assert gpu_slots(capped, {"CPU": 1, "GPU": 0.5}) == 8 + 2
    assert capped.launchable_gpus() == 5
    # a Whisper + Voxtral pair takes a whole GPU
    assert gpu_slots(FRESH, {"CPU": 2, "GPU": 1.0}) == 4
    assert gpu_slots(FRESH, {"CPU": 1, "GPU": 0.5}, "no") == 0


def test_gpus_up_now_count_without_an_autoscaler() -> None:
    local = ClusterCapacity(gpus_now=2, cpus_now=4, gpus_per_node_now=({"CPU": 4, "GPU": 2},))
    assert gpu_slots(local, {"CPU": 1, "GPU": 0.5}) == 4
    assert gpu_slots(local, {"CPU": 2, "GPU": 1.0}) == 2


def test_the_count_is_bounded_by_the_work() -> None:
    assert bounded_workers(8, 3) == 3
    assert bounded_workers(8, None) == 8
    assert bounded_workers(8, 0) == 1
    assert bounded_workers(0, 5) == 1
    assert work_units([10.0, None, 1500.0], split_seconds=600, piece_seconds=300) == 1 + 1 + 5
    assert work_units([1500.0], split_seconds=0, piece_seconds=300) == 1


def test_node_types_from_a_launcher_config() -> None:
    config = {
        "max_workers": 3, "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 4, "GPU": 0}, "node_config": {}},
            "gpu_spot": {"resources": {"CPU": 4, "GPU": 1}, "min_workers": 0, "max_workers": 4, "node_config": {}},
            "gpu_on_demand": {"resources": {"CPU": 4, "GPU": 1}, "node_config": {}},
        },
    }
    types, cap = node_types_from_config(config)
    assert cap == 3
    assert [(t.name, t.gpus, t.max_count) for t in types] == [("gpu_spot", 1.0, 4), ("gpu_on_demand", 1.0, 3)]
    capacity = ClusterCapacity(node_types=types, max_nodes=cap)
    assert capacity.launchable_gpus() == 3
    assert "gpu_spot (CPU 4, GPU 1) x up to 4" in capacity.describe()
    assert node_types_from_config({}) == ((), None)
