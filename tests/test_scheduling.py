"""The pool's decisions without Ray: which files go together, and which worker gets work next."""

from __future__ import annotations

from rayscribe.config.settings import load_settings
from rayscribe.scheduling import (
    MAX_JOBS_PER_GROUP,
    MIN_GROUP_SECONDS,
    WorkerLoad,
    group_target,
    pack_next,
    plan_groups,
    soonest_free,
)
from rayscribe.work import WorkItem


def item(key: str, seconds: float | None) -> WorkItem:
    return WorkItem(key=key, name=key, source="", duration=seconds)


def test_plan_groups_packs_short_files_and_leaves_long_ones_alone() -> None:
    settings = load_settings(short_file_seconds=60, group_seconds=40)
    items = [WorkItem(key=f"s{i}", name="", source="", duration=10.0) for i in range(10)]
    items += [WorkItem(key="long", name="", source="", duration=600.0),
              WorkItem(key="unknown", name="", source="", duration=None)]
    groups = plan_groups(items, settings.short_file_seconds, settings.group_seconds, workers=1)
    assert sorted(k.key for g in groups for k in g) == sorted(i.key for i in items)
    assert groups[0] == [items[10]]  # longest first
    assert [items[11]] in groups
    short_groups = [g for g in groups if g[0].key.startswith("s")]
    assert all(sum(i.duration or 0 for i in g) <= 40 for g in short_groups)
    assert max(len(g) for g in short_groups) >= 3


def test_plan_groups_keeps_every_worker_busy() -> None:
    settings = load_settings(group_seconds=240)
    items = [WorkItem(key=f"s{i}", name="", source="", duration=10.0) for i in range(12)]
    assert len(plan_groups(items, settings.short_file_seconds, settings.group_seconds, workers=2)) >= 4


def test_group_target_is_two_groups_per_worker_within_one_window_and_the_cap() -> None:
    assert group_target(283.0, 2, 240.0) == 283.0 / 4
    assert group_target(20.0, 4, 240.0) == MIN_GROUP_SECONDS
    assert group_target(10_000.0, 1, 240.0) == 240.0
    assert group_target(120.0, 2, 240.0, calls_per_worker=1) == 60.0


def test_pack_next_fills_the_target_in_order_skipping_what_does_not_fit_or_repeats_a_key() -> None:
    first = item("a", 10.0)
    candidates = [item("b", 25.0), item("c", 5.0), item("a", 5.0), item("d", 10.0), item("e", 1.0)]
    chosen = pack_next(first, candidates, target=30.0)
    assert [candidates[i].key for i in chosen] == ["c", "d", "e"]  # b does not fit; a second "a" never


def test_pack_next_stops_at_the_most_jobs_per_group() -> None:
    chosen = pack_next(item("x", 1.0), [item(f"k{i}", 1.0) for i in range(40)], target=1000.0)
    assert len(chosen) + 1 == MAX_JOBS_PER_GROUP


def test_soonest_free_counts_audio_left_not_calls() -> None:
    now = 100.0
    loads = [WorkerLoad(inflight=1, audio_seconds=300.0, oldest_sent=99.0),  # a long file just sent
             WorkerLoad(inflight=2, audio_seconds=20.0, oldest_sent=99.0)]  # two short ones
    assert soonest_free(loads, speed=10.0, now=now) == 1
    # the long one is nearly done at the speed shown: it frees up first
    loads[0] = WorkerLoad(inflight=1, audio_seconds=300.0, oldest_sent=now - 29.5)
    assert soonest_free(loads, speed=10.0, now=now) == 0
    # with nothing in flight anywhere the fewest calls win, the first on a tie
    assert soonest_free([WorkerLoad(0), WorkerLoad(0)], speed=None, now=now) == 0
