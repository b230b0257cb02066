"""The ``rayscribe`` command line: ``rayscribe transcribe PATH... --out DIR`` and friends.

``transcribe`` parses its flags, calls :func:`jobs.batch.run_batch` (imported inside the command: Ray loads only
when a command needs it) and prints; the other commands live in :mod:`rayscribe.cli.queue`, :mod:`.serve` and
:mod:`.cluster`.

Errors a user can act on are printed as one red line and exit 2 (bad input or settings) or 1 (some files
failed); never a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rayscribe.cli import cluster, queue, serve
from rayscribe.config.checks import OUTPUT_FORMATS
from rayscribe.config.settings import load_settings
from rayscribe.errors import RayscribeError
from rayscribe.logs import configure_logging

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Distributed speech-to-text on Ray.", pretty_exceptions_enable=False)
console = Console(stderr=True)
out = Console()


@app.callback()
def _main() -> None:
    """Distributed speech-to-text on Ray: batch jobs, an SQS worker and an OpenAI-compatible HTTP API."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command()
def transcribe(
    paths: list[str] = typer.Argument(..., help="Audio files or folders (searched recursively), s3://bucket/key "
                                      "objects or s3://bucket/prefix/ prefixes (listed page by page)."),
    out_dir: str = typer.Option(..., "--out", "-o", help="Folder or s3://bucket/prefix/ for the transcripts."),
    formats: str | None = typer.Option(
        None, "--format", "-f", help=f"Comma-separated output formats ({', '.join(OUTPUT_FORMATS)}); "
        "default from RAYSCRIBE_OUTPUT_FORMATS."),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster to join ('auto' for a running local one); default: start an "
        "embedded local cluster for this run."),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Number of Whisper workers."),
    model: str | None = typer.Option(None, "--model", help="Whisper model name or CTranslate2 folder."),
    backend: str | None = typer.Option(None, "--backend", help="faster-whisper or whisperx."),
    language: str | None = typer.Option(None, "--language", help="Language code; default: detect."),
    task_name: str | None = typer.Option(None, "--task", help="transcribe (default: RAYSCRIBE_TASK) or translate "
                                    "(English text out; needs a multilingual model)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Transcribe files whose outputs exist."),
    print_text: bool = typer.Option(False, "--print", help="Print each transcript as it finishes."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the Ray workers' log lines and this run's "
                                 "INFO lines too (default: workers' lines only in Ray's log files, "
                                 "/tmp/ray/session_latest/logs)."),
) -> None:
    """Transcribe audio files on Ray and write one output per format per file."""
    try:
        settings = load_settings(output_formats=formats, model=model, backend=backend, language=language,
                                 ray_address=address, task=task_name)
    except RayscribeError as exc:
        raise _fail(str(exc)) from None
    quiet = settings.log_level == "INFO" and not verbose
    configure_logging("WARNING" if quiet else settings.log_level)

    from jobs.batch import run_batch  # Ray is imported only when a command needs it

    progress = Progress(TextColumn("[bold]transcribing"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[audio]} audio s"), TimeElapsedColumn(), console=console,
                        disable=not sys.stderr.isatty())
    task = progress.add_task("audio", total=None, audio="0")

    def on_start(items: list) -> None:
        total = sum(i.duration or 0.0 for i in items)
        progress.update(task, total=round(total) or None, audio=f"0/{total:.0f}")
        progress.start()

    done_seconds = 0.0

    def on_result(result: object) -> None:
        nonlocal done_seconds
        from rayscribe.work import ItemResult

        assert isinstance(result, ItemResult)
        done_seconds += result.audio_seconds
        total = progress.tasks[0].total  # None when inputs are listed as the run goes (S3)
        progress.update(task, completed=round(done_seconds),
                        audio=f"{done_seconds:.0f}/{total:.0f}" if total else f"{done_seconds:.0f}")
        if result.transcript is not None and print_text:
            progress.console.print(f"[bold]{result.key}[/]: {result.transcript.text}", highlight=False)
        elif result.error:
            progress.console.print(f"[red]failed[/] {result.name}: {result.error}", highlight=False)

    try:
        report = run_batch(paths, out_dir, settings, address=settings.ray_address, workers=workers,
                           overwrite=overwrite, on_start=on_start, on_result=on_result, verbose=verbose)
    except RayscribeError as exc:
        raise _fail(str(exc)) from None
    except ConnectionError as exc:
        raise _fail(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    finally:
        progress.stop()
    _print_summary(report, out_dir)
    if report.failed:
        raise typer.Exit(1)


def _print_summary(report: object, out_dir: str) -> None:
    """The batch report as a table for people (``python -m jobs.batch`` prints plain lines for job logs)."""
    from rayscribe.file_jobs import BatchReport

    assert isinstance(report, BatchReport)
    table = Table(title="rayscribe batch", show_header=True)
    for column in ("files", "done", "skipped", "failed", "audio", "wall", "speed", "workers"):
        table.add_column(column, justify="right")
    table.add_row(
        str(len(report.results) + len(report.skipped)), str(len(report.succeeded)), str(len(report.skipped)),
        str(len(report.failed)), f"{report.audio_seconds:.1f} s", f"{report.wall_seconds:.1f} s",
        f"{report.real_time_factor:.1f}x RT", str(report.workers),
    )
    console.print(table)
    if report.engine:
        console.print(f"engine: {report.engine.get('backend')} {report.engine.get('model')} on "
                      f"{report.engine.get('device')}/{report.engine.get('compute_type')}; start-up "
                      f"{report.startup_seconds:.1f} s; outputs in {out_dir}", highlight=False, soft_wrap=True)
    for r in report.failed:  # one unwrapped line each: a table cut long paths mid-name at 80 columns
        console.print(f"[bold red]failed:[/] {escape(r.name)}: {escape(r.error or 'no reason given')}",
                      highlight=False, soft_wrap=True)


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings (environment and .env), secrets hidden."""
    from rayscribe.config.aws import load_aws_settings

    try:
        settings = load_settings()
        aws = load_aws_settings()
    except RayscribeError as exc:
        raise _fail(str(exc)) from None
    for key, value in settings.model_dump().items():
        if "token" in key and value:
            value = "***"
        out.print(f"RAYSCRIBE_{key.upper()}={value if value is not None else ''}", highlight=False)
    for name, shown in aws.shown().items():  # the standard AWS_* names; secrets as ***
        out.print(f"{name}={shown}", highlight=False)


queue.register(app)  # infra, submit, worker, status, dlq
serve.register(app)
cluster.register(app)  # render/validate cluster.yaml

if __name__ == "__main__":
    app()
