"""The Whisper pool on a real Ray cluster: every file once, bad files alone, dead workers replaced."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray

from actors.pool import WhisperPool, plan_groups
from rayscribe.config.settings import load_settings
from rayscribe.file_jobs import discover_inputs, work_items
from rayscribe.work import WorkItem
from tests.speech import references, require_speech, wer


def read(item: WorkItem) -> bytes:
    return Path(item.source).read_bytes()


def test_plan_groups_packs_short_files_and_leaves_long_ones_alone() -> None:
    settings = load_settings(short_file_seconds=60, group_seconds=40)
    items = [WorkItem(key=f"s{i}", name="", source="", duration=10.0) for i in range(10)]
    items += [WorkItem(key="long", name="", source="", duration=600.0),
              WorkItem(key="unknown", name="", source="", duration=None)]
    groups = plan_groups(items, settings, workers=1)
    assert sorted(k.key for g in groups for k in g) == sorted(i.key for i in items)
    assert groups[0] == [items[10]]  # longest first
    assert [items[11]] in groups
    short_groups = [g for g in groups if g[0].key.startswith("s")]
    assert all(sum(i.duration or 0 for i in g) <= 40 for g in short_groups)
    assert max(len(g) for g in short_groups) >= 3


def test_plan_groups_keeps_every_worker_busy() -> None:
    settings = load_settings(group_seconds=240)
    items = [WorkItem(key=f"s{i}", name="", source="", duration=10.0) for i in range(12)]
    assert len(plan_groups(items, settings, workers=2)) >= 4


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
    p = WhisperPool(load_settings(cpu_threads=1), workers=2)
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
