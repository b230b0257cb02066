"""The soak's figures: the results dictionary, the drain rate over time, and the table."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jobs.soak.config import Entry, Fault, SoakConfig
from jobs.soak.inputs import Feeder


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
