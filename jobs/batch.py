"""Batch transcription on Ray: the CLI's ``rayscribe transcribe`` and the ``ray job submit`` entrypoint.

    ray job submit --working-dir . -- python -m jobs.batch samples/ --out /tmp/out

As a job it joins the cluster it was submitted to (``--address auto``); the CLI starts an embedded one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from actors import metrics
from actors.cluster import ray_session
from actors.pool import WhisperPool
from rayscribe.config.settings import Settings
from rayscribe.file_jobs import BatchReport, discover_inputs, work_items
from rayscribe.formatters import outputs_exist, write_outputs
from rayscribe.work import ItemResult, WorkItem

log = logging.getLogger("rayscribe.batch")


def read_bytes(item: WorkItem) -> bytes:
    return Path(item.source).read_bytes()


def run_batch(
    paths: Sequence[str],
    out_dir: Path,
    settings: Settings,
    *,
    address: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    on_start: Callable[[list[WorkItem]], None] | None = None,
    on_result: Callable[[ItemResult], None] | None = None,
) -> BatchReport:
    """Transcribe every audio file under ``paths`` into ``out_dir``; files whose outputs exist are skipped
    unless ``overwrite``. Outputs of each file are written as soon as it is done, so an interrupted run
    resumes where it stopped."""
    formats = settings.output_formats
    inputs = discover_inputs(paths)
    report = BatchReport()
    todo = []
    for entry in inputs:
        if not overwrite and outputs_exist(out_dir, entry.stem, formats):
            report.skipped.append(str(entry.path))
        else:
            todo.append(entry)
    items = work_items(todo)
    if on_start is not None:
        on_start(items)
    if not items:
        report.write(out_dir)
        return report

    def store(result: ItemResult) -> None:
        if result.transcript is not None:
            try:
                write_outputs(result.transcript, out_dir, result.key, formats, metadata=result.metrics())
            except OSError as exc:
                result.error, result.error_type = f"cannot write outputs to {out_dir}: {exc}", "OSError"
                result.transcript = None
            else:
                log.info("file done: %s (%.1f s audio, %.1fx real time)", result.name, result.audio_seconds,
                         result.real_time_factor)
                metrics.job_done("batch", result.audio_seconds, result.processing_seconds)
        if result.transcript is None:
            metrics.job_failed("batch", result.error_type or "Error")
        if on_result is not None:
            on_result(result)

    started = time.perf_counter()
    with ray_session(address):
        pool = WhisperPool(settings, workers=workers)
        infos = pool.start()
        report.startup_seconds = time.perf_counter() - started
        report.workers, report.engine = pool.size, {k: infos[0][k] for k in ("backend", "model", "device",
                                                                             "compute_type")}
        running = time.perf_counter()
        try:
            report.results = pool.run(items, read_bytes, store)
        finally:
            pool.stop()
        report.wall_seconds = time.perf_counter() - running
    report.write(out_dir)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m jobs.batch PATH... --out DIR``: the CLI's transcribe command, joining the running cluster."""
    from rayscribe.cli import app

    args = list(argv) if argv is not None else __import__("sys").argv[1:]
    if not any(a == "--address" or a.startswith("--address=") for a in args):
        args += ["--address", "auto"]
    app(["transcribe", *args], prog_name="python -m jobs.batch")


if __name__ == "__main__":
    main()
