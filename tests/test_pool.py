"""The Whisper pool on a real Ray cluster: every file once, bad files alone, dead workers replaced."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray

from actors.pool import WhisperPool
from rayscribe.config.settings import load_settings
from rayscribe.file_jobs import discover_inputs, work_items
from rayscribe.work import WorkItem
from tests.speech import references, require_speech, wer


def read(item: WorkItem) -> bytes:
    return Path(item.source).read_bytes()


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    root = require_speech()
    folder = tmp_path_factory.mktemp("clips")
    for name in references(str(root / "librivox")):
        shutil.copy(root / "librivox" / name, folder / name)
    shutil.copy(root / "jfk" / "jfk.wav", folder / "jfk.wav")
    return folder


@pytest.fixture(scope="module")
def pool(ray_connected):
    # half a CPU each: the session's cluster has 2, and this module's other tests start pools beside this one
    p = WhisperPool(load_settings(cpu_threads=1, cpus_per_worker=0.5), workers=2)
    p.start()
    yield p
    p.stop()


def test_every_file_once_and_a_corrupt_file_fails_alone(pool, clip_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(clip_dir, folder)
    (folder / "broken.mp3").write_bytes(b"ID3\x03\x00\x00\x00" + np.random.default_rng(1).bytes(4000))
    items = work_items(discover_inputs([folder]))
    results = pool.run(items, read)
    assert sorted(r.key for r in results) == sorted(i.key for i in items)
    failed = [r for r in results if not r.ok]
    assert [r.key for r in failed] == ["broken"]
    assert "broken.mp3" in (failed[0].error or "") and failed[0].error_type == "AudioDecodeError"
    refs = references(str(require_speech() / "librivox"))
    good = {r.key: r for r in results if r.ok and r.key != "jfk"}
    assert wer([refs[k + ".wav"] for k in good], [good[k].transcript.text for k in good]) < 0.15
    assert all(r.audio_seconds > 0 and r.processing_seconds > 0 and r.worker["model"] == "tiny.en"
               for r in results if r.ok)


def test_a_worker_killed_mid_batch_is_replaced_and_nothing_is_lost(pool, clip_dir: Path) -> None:
    items = work_items(discover_inputs([clip_dir]))
    for item in items:  # one file per call, so work is still queued when the kill lands
        item.duration = None
    killed: list[int] = []
    before = pool.replaced

    def kill_one(result) -> None:
        if not killed:
            victim = pool.slots[0]
            killed.append(victim.info["pid"])
            ray.kill(victim.handle, no_restart=True)

    results = pool.run(items, read, kill_one)
    assert killed and pool.replaced >= before + 1
    assert sorted(r.key for r in results) == sorted(i.key for i in items)  # each exactly once
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert killed[0] not in {s.info["pid"] for s in pool.slots}


def test_a_file_whose_worker_dies_twice_is_reported_failed(pool, clip_dir: Path) -> None:
    item = WorkItem(key="doomed", name="doomed.wav", source=str(clip_dir / "jfk.wav"), duration=None)
    stop = threading.Event()

    def killer() -> None:  # kill whichever worker holds the file, on each attempt
        deadline = time.monotonic() + 120
        killed: list[object] = []
        while not stop.is_set() and time.monotonic() < deadline and len(killed) < 2:
            for slot in list(pool.slots):
                handle = slot.handle
                if slot.inflight > 0 and not any(handle is k for k in killed):
                    ray.kill(handle, no_restart=True)
                    killed.append(handle)
            stop.wait(0.005)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        results = pool.run([item], read)
    finally:
        stop.set()
        thread.join(10)
    assert len(results) == 1
    assert not results[0].ok
    assert results[0].attempts == 2
    assert "failed 2 times" in (results[0].error or "") and "died" in (results[0].error or "")


def test_a_frozen_worker_on_the_batch_path_is_found_by_its_probe_and_its_files_run_on_a_standby(
        ray_connected, tmp_path: Path) -> None:
    """The pool probes its workers for the batch path as for the queue path: a worker frozen mid-call (SIGSTOP:
    alive to Ray, which never reports it) is stopped after ``worker_probe_seconds``, a standby takes its place,
    and its files run again there, each once."""
    import os
    import signal

    from jobs.harness.audio import wav_bytes
    from rayscribe.audio import SAMPLE_RATE

    tone = wav_bytes(np.sin(np.arange(4 * SAMPLE_RATE) / 20) * 8000 / 32767)
    items = []
    for i in range(3):
        (tmp_path / f"t{i}.wav").write_bytes(tone)
        items.append(WorkItem(key=f"t{i}", name=f"t{i}.wav", source=str(tmp_path / f"t{i}.wav"), duration=None))
    settings = load_settings(backend="simulated", simulated_speed=1.0, workers=1, cpus_per_worker=0.1,
                             gpu_per_worker=0, max_inflight_per_worker=1, spare_workers=1, worker_probe_seconds=1.5)
    frozen: list[int] = []
    stop = threading.Event()
    pool = WhisperPool(settings, workers=1)
    pool.start(timeout=120)  # fails naming what is free, rather than at the test's timeout

    def freeze_once_busy() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            slot = pool.slots[0]
            if slot.inflight > 0 and pool.spares_ready() == 1:
                frozen.append(int(slot.info["pid"]))
                os.kill(frozen[0], signal.SIGSTOP)
                return
            stop.wait(0.02)  # polling interval

    thread = threading.Thread(target=freeze_once_busy, daemon=True)
    try:
        standby = pool.spares[0][0]
        thread.start()
        results = pool.run(items, read)
        assert frozen, "the worker was never seen busy"
        assert pool.replaced == 1 and pool.slots[0].handle is standby
        assert sorted(r.key for r in results) == ["t0", "t1", "t2"]  # each exactly once
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        assert int(pool.slots[0].info["pid"]) != frozen[0]
    finally:
        stop.set()
        thread.join(10)
        for pid in frozen:  # stopped by the pool already; never leave a frozen process behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pool.stop()


def test_cuda_workers_wait_for_gpu_nodes_with_progress_then_say_what_is_missing(
        ray_connected, monkeypatch, caplog) -> None:
    """RAYSCRIBE_DEVICE=cuda where GPU nodes may come (forced here: the test cluster has none and launches none):
    the pool asks for GPU shares, says every PROGRESS_SECONDS that it waits, and past RAYSCRIBE_GPU_WAIT_SECONDS
    fails naming the share, what the cluster may launch and what is free; nothing is left asking for a GPU."""
    import logging

    from ray.util.state import list_actors

    from actors.pool import placement
    from actors.pool.workers import PoolError

    monkeypatch.setattr(placement, "PROGRESS_SECONDS", 0.5)
    gcs = ray.get_runtime_context().gcs_address
    settings = load_settings(backend="simulated", device="cuda", gpu_nodes="yes", gpu_wait_seconds=3)
    pool = WhisperPool(settings, workers=1)
    assert pool.num_gpus > 0  # the worker asks for a GPU share: that is what makes an autoscaler start a node
    try:
        with caplog.at_level(logging.WARNING, logger="rayscribe.pool"), pytest.raises(PoolError) as info:
            pool.start()
    finally:
        pool.stop()
    message = str(info.value)
    assert "0 of 1 Whisper worker(s) started within 3 s" in message and "no GPU nodes came" in message
    assert "RAYSCRIBE_GPU_WAIT_SECONDS" in message and "ray status" in message
    assert "waiting for GPU nodes: 0 of 1 Whisper worker(s) up" in caplog.text
    deadline = time.monotonic() + 30
    while any(a["state"] != "DEAD" and a["class_name"] == "WhisperWorker" and a.get("required_resources", {})
              .get("GPU") for a in list_actors(address=gcs, detail=True)) and time.monotonic() < deadline:
        time.sleep(0.2)  # polling: the state API has no wait
    assert not any(a["state"] != "DEAD" and a["class_name"] == "WhisperWorker"
                   and a.get("required_resources", {}).get("GPU") for a in list_actors(address=gcs, detail=True))
