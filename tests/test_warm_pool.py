"""Warm worker sets on a running cluster (actors/pool/warm.py): a later command reuses the workers an earlier one
left, only when everything they depend on matches, and idle sets end. Simulated engine: the model's output is
not what these tests check."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from ray.exceptions import RayActorError

from actors.pool import WhisperPool
from actors.pool.warm import registry, start_pool, stop_pool
from jobs.harness.audio import tone, write_wav
from rayscribe.config.settings import Settings, load_settings
from tests.conftest import BIN, REPO


def warm_settings(**overrides: Any) -> Settings:
    return load_settings(**{"backend": "simulated", "warm_pool": True, "warm_pool_idle_seconds": 120.0,
                            "log_level": "WARNING", **overrides})


def held_sets() -> list[dict[str, Any]]:
    found = registry(0.0, create=False)
    if found is None:
        return []
    try:
        return list(ray.get(found.describe.remote(), timeout=30))
    except RayActorError:  # ending itself: it holds nothing
        return []


def wait_until(check: Any, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.2)  # polling interval


@pytest.fixture
def clean_registry(ray_connected) -> Iterator[None]:
    """No warm set before or after each test: the session's cluster has 2 CPUs for everyone."""
    yield
    found = registry(0.0, create=False)
    if found is not None:
        with contextlib.suppress(RayActorError):
            ray.get(found.dismiss_all.remote(), timeout=30)
    wait_until(lambda: ray.available_resources().get("CPU", 0) >= 2, what="the warm workers' CPUs back")


def pids(infos: list[dict[str, Any]]) -> list[int]:
    return sorted(i["pid"] for i in infos)


def test_second_command_reuses_the_first_ones_workers(clean_registry) -> None:
    settings = warm_settings()
    first = WhisperPool(settings, workers=2)
    infos, lease = start_pool(first)
    assert lease is not None and not lease.reused
    ids = sorted(s.handle._actor_id.hex() for s in first.slots)
    stop_pool(first, lease)
    [held] = held_sets()
    assert not held["leased"] and sorted(held["workers"]) == ids

    second = WhisperPool(settings, workers=2)
    again, lease2 = start_pool(second)
    try:
        assert lease2 is not None and lease2.reused
        assert sorted(s.handle._actor_id.hex() for s in second.slots) == ids
        assert pids(again) == pids(infos)
        [busy] = held_sets()
        assert busy["leased"]
    finally:
        stop_pool(second, lease2)


def test_a_set_serves_a_command_wanting_fewer_workers_and_is_rebuilt_for_more(clean_registry) -> None:
    """The worker count is not part of the key: two warm workers serve a command that wants one (it gets both,
    loaded already); a set of one is dismissed and rebuilt for a command that wants two."""
    settings = warm_settings()
    two = WhisperPool(settings, workers=2)
    infos, lease = start_pool(two)
    stop_pool(two, lease)
    one = WhisperPool(settings, workers=1)
    again, lease1 = start_pool(one)
    try:
        assert lease1 is not None and lease1.reused and lease1.key == lease.key
        assert pids(again) == pids(infos) and one.size == 2 and len(one.slots) == 2
    finally:
        stop_pool(one, lease1)
    [held] = held_sets()
    assert not held["leased"] and len(held["workers"]) == 2
    ray.get(registry(0.0, create=False).dismiss_all.remote(), timeout=30)
    wait_until(lambda: ray.available_resources().get("CPU", 0) >= 2, what="the set's CPUs back")

    small = WhisperPool(settings, workers=1)
    first, lease_small = start_pool(small)
    stop_pool(small, lease_small)
    larger = WhisperPool(settings, workers=2)
    # the idle set of one holds a CPU the second worker needs: it must be dismissed for them to start at all
    rebuilt, lease_larger = start_pool(larger, timeout=120)
    try:
        assert lease_larger is not None and not lease_larger.reused and lease_larger.key == lease_small.key
        assert len(rebuilt) == 2 and not set(pids(rebuilt)) & set(pids(first))
    finally:
        stop_pool(larger, lease_larger)
    [held] = held_sets()
    assert len(held["workers"]) == 2


def test_different_model_is_not_reused_and_frees_the_idle_set(clean_registry) -> None:
    first = WhisperPool(warm_settings(), workers=2)
    infos, lease = start_pool(first)
    stop_pool(first, lease)
    other = WhisperPool(warm_settings(model="base.en"), workers=2)
    # the idle set of the other model holds both CPUs: it must be dismissed for these workers to start at all
    others, lease2 = start_pool(other, timeout=120)
    try:
        assert lease2 is not None and not lease2.reused
        assert not set(pids(others)) & set(pids(infos))
        [held] = held_sets()
        assert held["key"] == lease2.key != lease.key
    finally:
        stop_pool(other, lease2)


def test_a_failed_command_does_not_leave_its_set(clean_registry) -> None:
    pool = WhisperPool(warm_settings(), workers=1)
    _, lease = start_pool(pool)
    stop_pool(pool, lease, ok=False)
    assert held_sets() == []


def test_idle_timeout_releases_the_workers(clean_registry) -> None:
    pool = WhisperPool(warm_settings(warm_pool_idle_seconds=1.0), workers=2)
    _, lease = start_pool(pool)
    handles = [s.handle for s in pool.slots]
    stop_pool(pool, lease)
    wait_until(lambda: held_sets() == [], what="the idle set dismissed")
    for handle in handles:
        with pytest.raises(RayActorError):
            ray.get(handle.info.remote(), timeout=30)
    wait_until(lambda: registry(0.0, create=False) is None, what="the empty registry to end itself")


def test_warm_pool_off_starts_private_workers(clean_registry) -> None:
    pool = WhisperPool(warm_settings(warm_pool=False), workers=1)
    _, lease = start_pool(pool)
    stop_pool(pool, lease)
    assert lease is None and held_sets() == []


def test_transcribe_commands_on_a_running_cluster_share_workers(ray_cluster, clean_registry,
                                                                tmp_path: Path) -> None:
    """Two `rayscribe transcribe --address` commands, one after the other: the second's file is done by a worker
    process the first started (the pids in the outputs' metadata), and the set stays for the next."""
    clip = write_wav(tmp_path / "tone.wav", tone(3.0).astype(np.float32))
    env = {**os.environ, "RAYSCRIBE_BACKEND": "simulated", "RAYSCRIBE_WARM_POOL": "true",
           "RAYSCRIBE_OUTPUT_FORMATS": "json"}
    seen = []
    for name in ("one", "two"):
        out = tmp_path / name
        run = subprocess.run([str(BIN / "rayscribe"), "transcribe", str(clip), "--out", str(out), "--address",
                              ray_cluster.address], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        seen.append(json.loads((out / "tone.json").read_text())["metadata"]["pid"])
    [held] = held_sets()
    assert not held["leased"]
    assert set(seen) <= set(pids(ray.get([h.info.remote() for h in held["handles"]], timeout=30)))


def test_a_command_waits_for_a_set_in_use_then_reuses_it(clean_registry) -> None:
    """Two commands at once on a cluster with no room for both: the second never gets the workers while the
    first holds them, and takes them (same processes) once it gives them back."""
    settings = warm_settings()
    first = WhisperPool(settings, workers=2)
    infos, lease = start_pool(first)
    got: dict[str, Any] = {}

    def second() -> None:
        pool = WhisperPool(settings, workers=2)
        got["infos"], got["lease"] = start_pool(pool, timeout=120)
        got["pool"] = pool

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(timeout=3.0)
    assert thread.is_alive() and not got, "the second command took workers the first still holds"
    stop_pool(first, lease)
    thread.join(timeout=120)
    assert got["lease"] is not None and got["lease"].reused and pids(got["infos"]) == pids(infos)
    stop_pool(got["pool"], got["lease"])
