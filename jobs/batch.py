"""The batch path's composition root, :func:`run_batch`: ``rayscribe transcribe`` calls it, and so does this
module run as a Ray job, with the same flags:

    ray job submit --working-dir . -- python -m jobs.batch samples/ --out /tmp/out

As a job it joins the cluster it was submitted to (``--address auto``); the CLI starts an embedded one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from actors import metrics
from actors.cluster import ray_session
from actors.pool import WhisperPool
from actors.pool.warm import start_pool, stop_pool
from rayscribe.config.settings import Settings
from rayscribe.file_jobs import SUMMARY_FILE, BatchReport, discover_inputs, work_items
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
    verbose: bool = True,
) -> BatchReport:
    """Transcribe every audio file under ``paths`` into ``out_dir``; files whose outputs exist are skipped
    unless ``overwrite``. Outputs of each file are written as soon as it is done, so an interrupted run
    resumes where it stopped. Builds what the run needs (the Ray session: joined at ``address`` or embedded,
    the Whisper pool) and ends it. ``verbose=False`` keeps the workers' log lines in Ray's log files."""
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
    with ray_session(address, log_to_driver=verbose):
        pool = WhisperPool(settings, workers=workers)
        # on a cluster that outlives this command, its workers stay warm for the next one (actors/pool/warm.py)
        infos, lease = start_pool(pool) if address else (pool.start(), None)
        report.startup_seconds = time.perf_counter() - started
        report.workers, report.engine = pool.size, {k: infos[0][k] for k in ("backend", "model", "device",
                                                                             "compute_type")}
        running = time.perf_counter()
        ok = False
        try:
            report.results = pool.run(items, read_bytes, store)
            ok = True
        finally:
            stop_pool(pool, lease, ok)
        report.wall_seconds = time.perf_counter() - running
    report.write(out_dir)
    return report


def _parser() -> argparse.ArgumentParser:
    """The flags of ``rayscribe transcribe`` (tests/test_jobs_batch.py keeps the two in step), parsed here so that
    this entrypoint does not depend on the CLI package."""
    parser = argparse.ArgumentParser(prog="python -m jobs.batch", description="Transcribe audio files on the Ray "
                                     "cluster this job was submitted to (`rayscribe transcribe` as a Ray job).")
    parser.add_argument("paths", nargs="+", help="Audio files or folders (searched recursively).")
    parser.add_argument("--out", "-o", dest="out_dir", type=Path, required=True, help="Folder for the transcripts.")
    parser.add_argument("--format", "-f", dest="formats", help="Comma-separated output formats; default from "
                        "RAYSCRIBE_OUTPUT_FORMATS.")
    parser.add_argument("--address", default="auto", help="Ray cluster to join (default: auto, the one this job "
                        "runs on).")
    parser.add_argument("--workers", "-w", type=int, help="Number of Whisper workers.")
    parser.add_argument("--model", help="Whisper model name or CTranslate2 folder.")
    parser.add_argument("--backend", help="faster-whisper or whisperx.")
    parser.add_argument("--language", help="Language code; default: detect.")
    parser.add_argument("--overwrite", action="store_true", help="Transcribe files whose outputs exist.")
    parser.add_argument("--print", dest="print_text", action="store_true", help="Print each transcript as it "
                        "finishes.")
    parser.add_argument("--verbose", "-v", action=argparse.BooleanOptionalAction, default=True,
                        help="Show the Ray workers' log lines in this job's log (default: on; --no-verbose "
                        "leaves them in Ray's log files).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jobs.batch PATH... --out DIR``: ``rayscribe transcribe`` as a Ray job, joining the cluster it
    runs on. Prints plain lines for the job log; exit code 0, 1 (some files failed) or 2 (bad input or
    settings), as the CLI's."""
    from rayscribe.config.settings import load_settings
    from rayscribe.errors import RayscribeError
    from rayscribe.logs import configure_logging

    args = _parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        return _error("--workers must be at least 1")
    try:
        settings = load_settings(output_formats=args.formats, model=args.model, backend=args.backend,
                                 language=args.language, ray_address=args.address)
    except RayscribeError as exc:
        return _error(str(exc))
    configure_logging("WARNING" if settings.log_level == "INFO" else settings.log_level)  # as the CLI's

    def on_result(result: ItemResult) -> None:
        if result.transcript is not None and args.print_text:
            print(f"{result.key}: {result.transcript.text}", flush=True)
        elif result.error:
            print(f"failed {result.name}: {result.error}", file=sys.stderr, flush=True)

    try:
        report = run_batch(args.paths, args.out_dir, settings, address=settings.ray_address, workers=args.workers,
                           overwrite=args.overwrite, on_result=on_result, verbose=args.verbose)
    except RayscribeError as exc:
        return _error(str(exc))
    except ConnectionError as exc:
        return _error(f"cannot reach the Ray cluster at {args.address!r}: {exc}")
    print(f"files {len(report.results) + len(report.skipped)}, done {len(report.succeeded)}, skipped "
          f"{len(report.skipped)}, failed {len(report.failed)}; {report.audio_seconds:.1f} s audio in "
          f"{report.wall_seconds:.1f} s ({report.real_time_factor:.1f}x real time) on {report.workers} worker(s); "
          f"summary in {args.out_dir / SUMMARY_FILE}", flush=True)
    for failed in report.failed:
        print(f"failed {failed.name}: {failed.error or '?'}", file=sys.stderr)
    return 1 if report.failed else 0


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
