"""The queue worker's decisions without Ray or AWS: backoff, permanent failures, the next job, places held."""

from __future__ import annotations

from rayscribe.queue.policy import (
    LOCAL_BACKOFF_MAX,
    ReadyJob,
    analyze_options,
    capacity,
    input_error_type,
    is_permanent,
    job_units,
    local_backoff,
    may_retry_locally,
    next_ready,
)
from rayscribe.queue.report import IngestReport, JobOutcome


def test_the_last_jobs_go_high_priority_first_then_longest_first() -> None:
    """While the queues have work, inputs read ahead start in the order received (a job put back after a worker
    died goes first); once a receive finds them empty, the high-priority ones go first, then the longest, so the
    workers of a batch finish together instead of waiting on a long job started last."""
    order = [("a", ReadyJob("normal", 4.0)), ("b", ReadyJob("normal", 12.0)), ("c", ReadyJob("high", 6.0)),
             ("d", ReadyJob("normal", None)), ("e", ReadyJob("normal", 10.0))]

    def started(queues_dry: bool) -> list[str]:
        ready, names = list(order), []
        while ready:
            names.append(ready.pop(next_ready([job for _, job in ready], queues_dry))[0])
        return names

    assert started(False) == ["a", "b", "c", "d", "e"]
    assert started(True) == ["c", "d", "b", "e", "a"]  # unknown length counts as longest


def test_local_backoff_doubles_from_half_a_second_up_to_its_cap() -> None:
    assert [local_backoff(t) for t in (0, 1, 2, 3, 9)] == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert max(local_backoff(t) for t in range(20)) == LOCAL_BACKOFF_MAX


def test_local_retries_last_while_the_lease_is_safe() -> None:
    # 60 s leases renewed every 10 s: half of the 50 s a renewed lease is sure to last
    assert may_retry_locally(24.9, visibility_timeout=60, heartbeat_seconds=10)
    assert not may_retry_locally(25.0, visibility_timeout=60, heartbeat_seconds=10)
    assert not may_retry_locally(0.0, visibility_timeout=10, heartbeat_seconds=10)


def test_only_undecodable_audio_and_unreadable_inputs_fail_for_good() -> None:
    assert is_permanent("AudioDecodeError")
    assert not is_permanent("RuntimeError") and not is_permanent(None)
    assert (input_error_type(missing=True), input_error_type(missing=False)) == ("MissingInput", "InputDenied")


def test_analyze_field_asks_for_a_summary_or_a_question() -> None:
    assert analyze_options(True).task == "summary"
    assert analyze_options("  ").task == "summary"
    question = analyze_options(" Who speaks? ")
    assert (question.task, question.prompt) == ("question", "Who speaks?")


def test_a_packed_short_job_takes_its_share_of_a_place_and_others_a_whole_one() -> None:
    assert job_units(6.0, packed=False, group_seconds=240, max_per_group=16) == 1.0
    assert job_units(None, packed=True, group_seconds=240, max_per_group=16) == 1.0
    assert job_units(6.0, packed=True, group_seconds=240, max_per_group=16) == 1 / 16  # at least 1/16th
    assert job_units(60.0, packed=True, group_seconds=240, max_per_group=16) == 0.25
    assert capacity(ready_workers=2, inflight_per_worker=2, prefetch_per_worker=2) == 8


def test_report_counts_outcomes_and_audio_of_done_jobs_only() -> None:
    report = IngestReport(outcomes=[JobOutcome("a", "done", audio_seconds=10.0), JobOutcome("b", "failed"),
                                    JobOutcome("c", "done", audio_seconds=5.0), JobOutcome("d", "requeued")],
                          wall_seconds=5.0)
    summary = report.to_dict()
    assert (summary["done"], summary["failed"], summary["requeued"]) == (2, 1, 1)
    assert summary["audio_seconds"] == 15.0 and summary["real_time_factor"] == 3.0
