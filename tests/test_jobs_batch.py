"""The batch entrypoint submitted with ``ray job submit`` semantics, through the Jobs SDK; its flags are those of
``rayscribe transcribe``."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient

from tests.outputs import check_output_folder
from tests.speech import references, require_speech, wer


def test_job_entrypoint_transcribes_on_the_cluster(ray_cluster, tmp_path: Path, direct_texts) -> None:
    root = require_speech()
    folder = tmp_path / "in"
    shutil.copytree(root / "librivox", folder, ignore=shutil.ignore_patterns("*.tsv"))
    out = tmp_path / "out"
    client = JobSubmissionClient(ray_cluster.dashboard_url)
    job = client.submit_job(
        entrypoint=f"{sys.executable} -m jobs.batch {folder} --out {out} --format srt,vtt,json,txt",
        runtime_env={"env_vars": {"RAYSCRIBE_WORKERS": "2"}},
    )
    deadline = time.monotonic() + 600
    status = client.get_job_status(job)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, "job did not finish in 600 s"
        time.sleep(0.5)  # polling the Jobs API, not synchronising on a guess
        status = client.get_job_status(job)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    refs = references(str(root / "librivox"))
    stems = [n.rsplit(".", 1)[0] for n in refs]
    transcripts = check_output_folder(out, stems, ("txt", "srt", "vtt", "json"))
    ours = wer(list(refs.values()), [transcripts[s].text for s in stems])
    direct = wer(list(refs.values()), [direct_texts[f"librivox/{n}"] for n in refs])
    assert ours <= direct + 0.002
    assert "model loaded" in logs  # the workers' log lines reach the job log


def test_the_job_entrypoint_takes_the_flags_of_rayscribe_transcribe() -> None:
    """``python -m jobs.batch`` parses its own arguments (jobs/ never imports the CLI): the same flags."""
    import typer

    from jobs.batch import _parser
    from rayscribe.cli.app import app

    command = typer.main.get_command(app).commands["transcribe"]  # type: ignore[attr-defined]
    cli_flags = {flag for param in command.params for flag in [*param.opts, *param.secondary_opts]
                 if flag.startswith("-")}
    job_flags = {flag for action in _parser()._actions for flag in action.option_strings}
    assert job_flags - {"-h", "--help", "--no-verbose"} == cli_flags


def test_the_job_entrypoint_reports_bad_input_as_one_line(tmp_path: Path, capsys) -> None:
    from jobs.batch import main

    assert main([str(tmp_path / "nope.wav"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
