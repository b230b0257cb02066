"""The batch path's composition root, :func:`run_batch`: ``rayscribe transcribe`` calls it, and so does this
module run as a Ray job, with the same flags:

    ray job submit --working-dir . -- python -m jobs.batch samples/ --out /tmp/out

As a job it joins the cluster it was submitted to (``--address auto``); the CLI starts an embedded one.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from actors import metrics
from actors.cluster import ray_session
from actors.pool import WhisperPool
from actors.pool.warm import start_pool, stop_pool
from rayscribe.audio import probe_duration
from rayscribe.batch_outputs import BatchOutputs
from rayscribe.config.queue import load_queue_settings
from rayscribe.config.settings import Settings
from rayscribe.file_jobs import SUMMARY_FILE, BatchReport, InputError, discover_inputs
from rayscribe.gpu_demand import work_units
from rayscribe.s3_inputs import first_and_rest, list_s3_inputs, split_arguments
from rayscribe.storage import Storage, StorageError, is_s3, join
from rayscribe.transcript import Transcript
from rayscribe.work import ItemResult, WorkItem

log = logging.getLogger("rayscribe.batch")


def read_bytes(item: WorkItem) -> bytes | None:
    """A local file's bytes, which the driver ships to a worker; None for an S3 object, which the worker reads
    itself (so on a cluster the audio never passes through the driver)."""
    return None if is_s3(item.source) else Path(item.source).read_bytes()


def batch_items(paths: Sequence[str], storage: Callable[[], Storage]) -> tuple[Iterable[WorkItem], bool]:
    """The work items of ``paths``: local files and folders found now (a missing one is an error), ``s3://``
    prefixes listed lazily as the run consumes them. Returns them and whether they are a stream (S3 inputs).
    :raises InputError: for a missing input, or one that holds no audio (a prefix is listed up to its first
    audio key to tell)."""
    local, remote = split_arguments(paths)
    found = [WorkItem(key=i.stem, name=str(i.path), source=str(i.path)) for i in discover_inputs(local)] if local \
        else []
    streams: list[Iterable[WorkItem]] = []
    for url in remote:
        first, items = first_and_rest(list_s3_inputs(url, storage()))
        if first is None:
            raise InputError(f"no audio objects found under {url!r} (looked for keys ending in mp3, wav, flac, "
                             f"m4a, webm, ogg, ...)")
        streams.append(items)
    if not streams:
        return found, False
    return itertools.chain(found, *streams), True


def run_batch(
    paths: Sequence[str],
    out_dir: Path | str,
    settings: Settings,
    *,
    address: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    on_start: Callable[[list[WorkItem]], None] | None = None,
    on_result: Callable[[ItemResult], None] | None = None,
    verbose: bool = True,
) -> BatchReport:
    """Transcribe every audio file under ``paths`` (local files and folders, ``s3://`` objects and prefixes) into
    ``out_dir`` (a folder or an ``s3://`` prefix); files whose outputs exist are skipped unless ``overwrite``.
    Outputs of each file are written as soon as it is done, so an interrupted run resumes where it stopped.
    Builds what the run needs (the Ray session: joined at ``address`` or embedded, the Whisper pool) and ends it.
    ``on_start`` gets the items to do when they are known up front (local inputs only); with S3 inputs, which
    are listed as the run goes, it gets an empty list. ``verbose=False`` keeps the workers' log lines in Ray's
    log files."""
    storage_holder: list[Storage] = []

    def storage() -> Storage:  # made once, and only when S3 is involved
        if not storage_holder:
            storage_holder.append(Storage(load_queue_settings()))
        return storage_holder[0]

    outputs = BatchOutputs(str(out_dir), settings.output_formats, storage)
    outputs.check()
    inputs, streamed = batch_items(paths, storage)
    report = BatchReport()
    unnamed: list[ItemResult] = []  # keys that cannot name an output: failed without being transcribed

    def fail_unnamed(result: ItemResult) -> None:
        unnamed.append(result)
        _count_failure(result)
        if on_result is not None:
            on_result(result)

    todo = _with_durations(outputs.pending(inputs, report.skipped, fail_unnamed, check=not overwrite))
    first, todo = first_and_rest(todo)
    known = [] if streamed or first is None else list(todo)
    if on_start is not None:
        on_start(known)
    if first is None:
        report.results = unnamed
        outputs.write_summary(report)
        return report

    def store(result: ItemResult) -> None:
        if result.transcript is not None:
            try:
                outputs.write(result.transcript, result.key, metadata=result.metrics())
            except (OSError, StorageError) as exc:
                result.error, result.error_type = f"cannot write outputs to {out_dir}: {exc}", type(exc).__name__
                result.transcript = None
            else:
                log.info("file done: %s (%.1f s audio, %.1fx real time)", result.name, result.audio_seconds,
                         result.real_time_factor)
                metrics.job_done("batch", result.audio_seconds, result.processing_seconds)
        if result.transcript is None:
            _count_failure(result)
        if on_result is not None:
            on_result(result)
        if streamed and result.transcript is not None:  # written: keep only what the report needs
            result.transcript = Transcript(segments=[], language=result.transcript.language,
                                           duration=result.transcript.duration)

    started = time.perf_counter()
    with ray_session(address, log_to_driver=verbose):
        # an S3 listing is read as the work goes: its size is unknown, so the cluster's size bounds the workers
        work = None if streamed else work_units((i.duration for i in known), settings.split_seconds,
                                                 settings.split_piece_seconds)
        pool = WhisperPool(settings, workers=workers, work=work)
        # on a cluster that outlives this command, its workers stay warm for the next one (actors/pool/warm.py)
        infos, lease = start_pool(pool) if address else (pool.start(), None)
        report.startup_seconds = time.perf_counter() - started
        report.workers, report.engine = pool.size, {k: infos[0][k] for k in ("backend", "model", "device",
                                                                             "compute_type")}
        running = time.perf_counter()
        ok = False
        try:
            report.results = pool.run(todo if streamed else known, read_bytes, store)
            ok = True
        finally:
            stop_pool(pool, lease, ok)
        report.wall_seconds = time.perf_counter() - running
    report.results = unnamed + report.results
    outputs.write_summary(report)
    return report


def _with_durations(items: Iterable[WorkItem]) -> Iterator[WorkItem]:
    """Local files get the duration their container declares (for grouping short files, splitting long ones and
    the progress bar), once they are known to need work; S3 objects are not fetched here, so theirs stay unknown."""
    for item in items:
        if not is_s3(item.source):
            item.duration = probe_duration(item.source)
        yield item


def _count_failure(result: ItemResult) -> None:
    metrics.job_failed("batch", result.error_type or "Error")


def _parser() -> argparse.ArgumentParser:
    """The flags of ``rayscribe transcribe`` (tests/test_jobs_batch.py keeps the two in step), parsed here so that
    this entrypoint does not depend on the CLI package."""
    parser = argparse.ArgumentParser(prog="python -m jobs.batch", description="Transcribe audio files on the Ray "
                                     "cluster this job was submitted to (`rayscribe transcribe` as a Ray job).")
    parser.add_argument("paths", nargs="+", help="Audio files or folders (searched recursively), s3://bucket/key "
                        "objects or s3://bucket/prefix/ prefixes (listed page by page).")
    parser.add_argument("--out", "-o", dest="out_dir", required=True, help="Folder or s3://bucket/prefix/ for the "
                        "transcripts.")
    parser.add_argument("--format", "-f", dest="formats", help="Comma-separated output formats; default from "
                        "RAYSCRIBE_OUTPUT_FORMATS.")
    parser.add_argument("--address", default="auto", help="Ray cluster to join (default: auto, the one this job "
                        "runs on).")
    parser.add_argument("--workers", "-w", type=int, help="Number of Whisper workers.")
    parser.add_argument("--model", help="Whisper model name or CTranslate2 folder.")
    parser.add_argument("--backend", help="faster-whisper or whisperx.")
    parser.add_argument("--language", help="Language code; default: detect.")
    parser.add_argument("--task", help="transcribe (default: RAYSCRIBE_TASK) or translate (English text out; "
                        "needs a multilingual model).")
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
                                 language=args.language, ray_address=args.address, task=args.task)
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
          f"summary in {join(args.out_dir, SUMMARY_FILE)}", flush=True)
    for failed in report.failed:
        print(f"failed {failed.name}: {failed.error or '?'}", file=sys.stderr)
    return 1 if report.failed else 0


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
