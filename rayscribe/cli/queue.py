"""The queue path's commands: ``infra``, ``submit``, ``worker``, ``status`` and ``dlq``, registered on the main app.

All configuration comes from ``RAYSCRIBE_*`` settings (environment or ``.env``) and the standard ``AWS_*``
variables. Errors are one red line (exit 2 for bad settings or input, 1 for failed jobs or checks); Ray is imported
only by ``worker``, which calls :func:`jobs.worker.run_worker`.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from rayscribe.config.queue import QueueSettings, load_queue_settings
from rayscribe.errors import RayscribeError
from rayscribe.logs import configure_logging

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

infra_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Create, check or delete the queues and buckets of the queue path.")
dlq_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Inspect the dead-letter queue and send its jobs back after a fix.")


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _queue_settings(**overrides: Any) -> QueueSettings:
    try:
        return load_queue_settings(**overrides)
    except RayscribeError as exc:
        raise _fail(str(exc)) from None


# ----------------------------------------------------------------------------------------------- infra


def _print_report(report: Any) -> None:
    for line in report.actions:
        out.print(f"  ok  {line}", highlight=False, soft_wrap=True)
    for line in report.problems:
        out.print(f"[red]  !!  {line}[/]", highlight=False, soft_wrap=True)


@infra_app.command("up")
def infra_up() -> None:
    """Create the queues (main, high priority, dead-letter with redrive) and buckets that are missing."""
    from rayscribe.queue import infra

    settings = _queue_settings()
    try:
        report = infra.up(settings)
    except RayscribeError as exc:
        raise _fail(str(exc), 1) from None
    _print_report(report)


@infra_app.command("validate")
def infra_validate() -> None:
    """Check that the queues and buckets exist and are configured as the settings say; exit 1 if not."""
    from rayscribe.queue import infra

    settings = _queue_settings()
    try:
        report = infra.validate(settings)
    except RayscribeError as exc:
        raise _fail(str(exc), 1) from None
    _print_report(report)
    if report.problems:
        raise _fail(f"{len(report.problems)} problem(s) found; `rayscribe infra up` fixes missing resources", 1)
    out.print("infrastructure ok")


@infra_app.command("down")
def infra_down(
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking."),
    purge: bool = typer.Option(False, "--purge", help="Also delete buckets that still hold objects."),
) -> None:
    """Delete the queues and buckets that `infra up` created (tagged rayscribe:managed), nothing else."""
    from rayscribe.queue import infra

    settings = _queue_settings()
    try:
        doomed, kept = infra.plan_down(settings)
        for line in kept:
            out.print(f"  keep {line}", highlight=False, soft_wrap=True)
        if not doomed:
            out.print("nothing to delete")
            return
        out.print("will delete: " + ", ".join(f"{kind} {name}" for kind, name in doomed), highlight=False,
                  soft_wrap=True)
        if not yes:
            if not sys.stdin.isatty():
                raise _fail("not deleting without confirmation; run again with --yes")
            typer.confirm("delete them?", abort=True)
        report = infra.down(settings, doomed, purge=purge)
    except RayscribeError as exc:
        raise _fail(str(exc), 1) from None
    _print_report(report)
    if report.problems:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------- submit


def _new_job_id(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in Path(name).stem).strip(".-_")[:60]
    return f"{stem or 'job'}-{uuid.uuid4().hex[:12]}"


def submit(
    inputs: list[str] = typer.Argument(..., help="Audio files, folders (searched recursively) or s3:// objects."),
    priority: bool = typer.Option(False, "--priority", help="Send to the high-priority queue."),
    out_url: str | None = typer.Option(None, "--out", help="Where transcripts go (s3://bucket/prefix/); default "
                                       "s3://$RAYSCRIBE_OUTPUT_BUCKET/$RAYSCRIBE_OUTPUT_PREFIX."),
    formats: str | None = typer.Option(None, "--format", "-f", help="Comma-separated output formats for these "
                                       "jobs; default: the worker's RAYSCRIBE_OUTPUT_FORMATS."),
    language: str | None = typer.Option(None, "--language", help="Language code; default: detect."),
    task: str | None = typer.Option(None, "--task", help="transcribe (default) or translate (English text out)."),
    webhook: str | None = typer.Option(None, "--webhook", help="URL to POST each job's result to."),
) -> None:
    """Upload local audio to the input bucket when needed and queue one job per file; prints the job ids."""
    from rayscribe.file_jobs import InputError, discover_inputs
    from rayscribe.queue.jobspec import JobSpec, JobSpecError
    from rayscribe.queue.sqs import JobQueue
    from rayscribe.storage import Storage, is_s3, join, name_of

    settings = _queue_settings()
    try:
        out_base = out_url or f"s3://{settings.require_bucket('output')}/{settings.output_prefix}"
        if not is_s3(out_base) and not settings.allow_local_paths:
            raise _fail(f"--out {out_base} is not an s3:// URL; workers refuse local paths unless "
                        f"RAYSCRIBE_ALLOW_LOCAL_PATHS=true (a trusted single machine)")
        storage = Storage(settings)
        local = [i for i in inputs if not is_s3(i)]
        discovered = discover_inputs(local) if local else []
        jobs: list[tuple[JobSpec, str]] = []
        for raw in inputs:
            sources: list[tuple[str, Path | None]] = []
            if is_s3(raw):
                sources.append((raw, None))
            else:
                sources += [(str(entry.path), entry.path) for entry in _take_for(raw, discovered)]
            for source, path in sources:
                job_id = _new_job_id(name_of(source))
                if path is not None:
                    bucket = settings.require_bucket("input")
                    remote = join(f"s3://{bucket}/{settings.input_prefix}", job_id, path.name)
                    storage.upload_file(path, remote)
                    source = remote
                try:
                    spec = JobSpec(job_id=job_id, s3_input_path=source, s3_output_path=out_base,
                                   priority="high" if priority else "normal",
                                   formats=[f.strip() for f in formats.split(",") if f.strip()] if formats else None,
                                   language=language, task=task, webhook_url=webhook)  # type: ignore[arg-type]
                except ValueError as exc:
                    raise JobSpecError(str(exc).splitlines()[-1] if str(exc) else "invalid job") from None
                jobs.append((spec, raw))
        queue = JobQueue(settings)
        queue.send("high" if priority else "normal", [spec.to_message() for spec, _ in jobs])
    except (RayscribeError, InputError) as exc:
        raise _fail(str(exc)) from None
    for spec, _ in jobs:
        typer.echo(f"{spec.job_id}\t{spec.s3_input_path}")  # tab-separated, for scripts
    queue_name = settings.high_priority_queue_name if priority else settings.queue_name
    console.print(f"queued {len(jobs)} job(s) on {queue_name}; transcripts go to {out_base}", highlight=False)


def _language_note(metrics: dict[str, Any]) -> str:
    """``, language de (p=0.99)`` for a job record that has one (records written before languages: nothing)."""
    if not metrics.get("language"):
        return ""
    probability = metrics.get("language_probability")
    return f", language {metrics['language']}" + (f" (p={probability:.2f})" if probability is not None else "")


def _take_for(raw: str, discovered: list[Any]) -> list[Any]:
    """The discovered inputs that came from the argument ``raw`` (a file or a folder)."""
    root = Path(raw).expanduser().resolve()
    return [e for e in discovered if e.path.resolve() == root or root in e.path.resolve().parents]


# ---------------------------------------------------------------------------------------------- worker


def worker(
    address: str | None = typer.Option(None, "--address", help="Ray cluster to join ('auto' for a running "
                                       "local one); default: RAYSCRIBE_RAY_ADDRESS or an embedded cluster."),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Number of Whisper workers."),
    drain: bool = typer.Option(False, "--drain", help="Exit once both queues are empty and nothing is in "
                               "flight (batch-style runs)."),
    autoscale: bool = typer.Option(False, "--autoscale", help="Size the GPU workers (and, through Ray's "
                                   "autoscaler, the GPU nodes) from the queue depth; RAYSCRIBE_SCALING_* settings."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the Ray workers' log lines here too "
                                 "(default: only in Ray's log files, /tmp/ray/session_latest/logs)."),
) -> None:
    """Run the ingest loop and a Whisper pool until stopped (Ctrl-C / SIGTERM: finish jobs in flight; a second
    signal releases their leases at once)."""
    from rayscribe.config.settings import load_settings

    try:
        settings = load_settings(ray_address=address)
    except RayscribeError as exc:
        raise _fail(str(exc)) from None
    queue_settings = _queue_settings()
    scaling_settings = None
    if autoscale:
        from rayscribe.config.scaling import load_scaling_settings

        try:
            scaling_settings = load_scaling_settings()
        except RayscribeError as exc:
            raise _fail(str(exc)) from None
    configure_logging(settings.log_level)

    from jobs.worker import run_worker
    from rayscribe.config.voxtral import load_voxtral_settings

    try:
        voxtral_settings = load_voxtral_settings()
    except RayscribeError as exc:
        raise _fail(str(exc)) from None
    try:
        report = run_worker(settings, queue_settings, workers=workers, drain=drain, autoscale=scaling_settings,
                            voxtral=voxtral_settings, handle_signals=True, verbose=verbose,
                            health_port=queue_settings.health_port)
    except KeyboardInterrupt:
        raise _fail("interrupted while starting", 130) from None
    except RayscribeError as exc:
        raise _fail(str(exc)) from None
    except ConnectionError as exc:
        raise _fail(f"cannot reach the Ray cluster at {settings.ray_address!r}: {exc}") from None
    _print_worker_summary(report.to_dict())
    if report.count("failed"):
        raise typer.Exit(1)


def _print_worker_summary(summary: dict[str, Any]) -> None:
    table = Table(title="rayscribe worker", show_header=True)
    for column in ("done", "failed", "retried", "duplicates", "released", "audio", "wall", "speed", "workers"):
        table.add_column(column, justify="right")
    table.add_row(str(summary["done"]), str(summary["failed"]), str(summary["retried"]), str(summary["duplicates"]),
                  str(summary["released"]), f"{summary['audio_seconds']:.1f} s", f"{summary['wall_seconds']:.1f} s",
                  f"{summary['real_time_factor']:.1f}x RT", str(summary["workers"]))
    console.print(table)
    engine = summary.get("engine") or {}
    if engine:
        console.print(f"engine: {engine.get('backend')} {engine.get('model')} on {engine.get('device')}/"
                      f"{engine.get('compute_type')}; {summary['stop_reason']}", highlight=False)
    failures = [j for j in summary["jobs"] if j["status"] == "failed"]
    if failures:
        failed = Table(title="failed jobs (in the dead-letter queue)", show_header=True)
        failed.add_column("job")
        failed.add_column("reason")
        for job in failures:
            failed.add_row(job["job_id"], job["reason"])
        console.print(failed)


# ---------------------------------------------------------------------------------------------- status


def status(
    job_ids: list[str] = typer.Argument(..., help="Job ids, as `submit` printed them."),
    out_url: str | None = typer.Option(None, "--out", help="The --out the jobs were submitted with; default "
                                       "s3://$RAYSCRIBE_OUTPUT_BUCKET/$RAYSCRIBE_OUTPUT_PREFIX."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per job."),
) -> None:
    """What happened to each job: done (with its metrics), failed (with the reason) or still pending."""
    from rayscribe.queue.jobspec import output_base
    from rayscribe.queue.jobstore import job_status
    from rayscribe.storage import Storage

    settings = _queue_settings()
    try:
        base = out_url or f"s3://{settings.require_bucket('output')}/{settings.output_prefix}"
        storage = Storage(settings)
        found = {job_id: job_status(storage, output_base(base, job_id)) for job_id in job_ids}
    except RayscribeError as exc:
        raise _fail(str(exc)) from None
    for job_id, state in found.items():
        if as_json:
            typer.echo(json.dumps({"job_id": job_id, **state}))
        elif state["status"] == "done":
            m = state["metrics"]
            out.print(f"{job_id}: done — {m.get('audio_seconds', 0):.1f} s audio, {m.get('real_time_factor', 0)}x "
                      f"real time, {m.get('model')} on {m.get('device')}, finished {m.get('finished_at')}"
                      + _language_note(m),
                      highlight=False, soft_wrap=True)
        elif state["status"] == "failed":
            e = state["error"]
            out.print(f"{job_id}: failed — {e.get('reason')} ({e.get('type')}, attempt {e.get('attempt')})",
                      highlight=False, soft_wrap=True)
        else:
            out.print(f"{job_id}: {state['status']} — {state.get('reason', '')}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------------- dlq


@dlq_app.command("list")
def dlq_list(
    limit: int = typer.Option(100, "--limit", min=1, help="Show at most this many."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per message."),
) -> None:
    """Show what sits in the dead-letter queue and why."""
    from rayscribe.queue.sqs import JobQueue, QueueError

    queue = JobQueue(_queue_settings())
    try:
        messages = queue.peek_dlq(limit)
        queue.dlq_release(messages)
    except QueueError as exc:
        raise _fail(str(exc), 1) from None
    for m in messages:
        row = {"message_id": m.message_id, "job_id": m.attributes.get("job_id"),
               "reason": m.attributes.get("error_reason", "(no reason: moved by SQS's redrive policy)"),
               "type": m.attributes.get("error_type"), "body": m.body}
        if as_json:
            typer.echo(json.dumps(row))
        else:
            out.print(f"{row['job_id'] or m.message_id}: {row['reason']}", highlight=False, soft_wrap=True)
    console.print(f"{len(messages)} message(s) in the dead-letter queue", highlight=False)


@dlq_app.command("redrive")
def dlq_redrive(
    job_ids: list[str] = typer.Argument(None, help="Only these jobs; default: every dead-lettered message."),
    limit: int = typer.Option(1000, "--limit", min=1, help="Send back at most this many."),
) -> None:
    """Send dead-lettered jobs back to their queue (after fixing the cause), clearing their error records."""
    from rayscribe.queue.jobspec import JobSpecError, output_base, parse_job, salvage
    from rayscribe.queue.sqs import JobQueue, QueueError
    from rayscribe.storage import Storage, StorageError

    settings = _queue_settings()
    queue = JobQueue(settings)
    storage = Storage(settings)
    wanted = set(job_ids or [])
    sent = 0
    try:
        messages = queue.peek_dlq(limit)
        chosen = [m for m in messages if not wanted or (m.attributes.get("job_id") or
                                                         salvage(m.body).get("job_id")) in wanted]
        queue.dlq_release([m for m in messages if m not in chosen])
        for m in chosen:
            try:
                target = "high" if parse_job(m.body).priority == "high" else "normal"
            except JobSpecError:
                target = "normal"  # still invalid: it will come back here with its reason
            queue.send(target, [m.body])
            queue.dlq_delete(m)
            known = salvage(m.body)
            if "job_id" in known and "s3_output_path" in known:
                try:
                    storage.delete(output_base(known["s3_output_path"], known["job_id"]) + ".error.json")
                except StorageError as exc:
                    console.print(f"[yellow]warning:[/] {exc}", highlight=False)
            sent += 1
            out.print(f"redriven: {known.get('job_id') or m.message_id}", highlight=False)
    except QueueError as exc:
        raise _fail(str(exc), 1) from None
    missing = wanted - {salvage(m.body).get("job_id") for m in chosen} if wanted else set()
    console.print(f"sent {sent} message(s) back", highlight=False)
    if missing:
        raise _fail(f"not in the dead-letter queue: {', '.join(sorted(missing))}", 1)


def register(app: typer.Typer) -> None:
    """Add the queue commands to the main ``rayscribe`` app."""
    app.add_typer(infra_app, name="infra")
    app.command("submit")(submit)
    app.command("worker")(worker)
    app.command("status")(status)
    app.add_typer(dlq_app, name="dlq")
