"""The job message that travels on the queue: versioned, and accepting the predecessor's messages as they are.

The predecessor sent ``{"job_id", "s3_input_path", "s3_output_path", "priority"}``; that is version 1 with every
new field optional, so old producers keep working. A message with an unknown ``version`` or a bad field is
rejected with a :class:`JobSpecError` that names the field, so the dead-letter queue says what to fix.

Where outputs go: ``s3_output_path`` is a folder (``s3://bucket/transcripts/``) and a job writes
``<folder>/<job_id>.<ext>``; when it names a file instead (``.../abc.json``) the outputs go beside it with that
file's stem. Either way the same job always writes the same keys (see :func:`output_base`).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rayscribe.config.checks import check_language_code, check_output_formats
from rayscribe.errors import RayscribeError
from rayscribe.formatters import EXTENSIONS

SUPPORTED_VERSIONS = (1,)
MAX_JOB_ID = 128
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Percent-encoded '.', '/' and '\\': some S3 tools and proxies decode them, turning a literal key into a traversal.
_ENCODED_TRAVERSAL = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)
# Suffixes that mark s3_output_path as a file (its stem becomes the outputs' base) rather than a folder.
_FILE_SUFFIXES = tuple(sorted({*EXTENSIONS.values(), ".metrics.json"}, key=len, reverse=True))


class JobSpecError(RayscribeError):
    """A job message is not valid JSON, has an unknown version or a bad field; the message names it."""


class JobSpec(BaseModel):
    """One transcription job. Unknown keys are kept out (``extra="ignore"``) so newer producers don't break
    older workers; known keys are checked strictly."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: int = 1
    job_id: str = Field(min_length=1, max_length=MAX_JOB_ID)
    s3_input_path: str = Field(min_length=1)
    s3_output_path: str = Field(min_length=1)
    priority: Literal["normal", "high"] = "normal"
    formats: list[str] | None = None
    language: str | None = None
    # "transcribe" or "translate" (English text out, Whisper's task); checked like ``language``. None: the
    # worker's RAYSCRIBE_TASK (transcribe by default), and the message keeps the predecessor's shape.
    task: Literal["transcribe", "translate"] | None = None
    model: str | None = None
    webhook_url: str | None = None
    analyze: bool | str | None = None

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: int) -> int:
        if value not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported version {value}; this worker understands "
                             f"{', '.join(map(str, SUPPORTED_VERSIONS))}; upgrade the worker")
        return value

    @field_validator("job_id")
    @classmethod
    def _check_job_id(cls, value: str) -> str:
        if not _JOB_ID.fullmatch(value):
            raise ValueError("use letters, digits, '.', '_' and '-' only (it names the output files)")
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        """The predecessor used words and numbers; anything above normal (1) is high."""
        if value is None:
            return "normal"
        if isinstance(value, bool):
            raise ValueError("use 'normal' or 'high'")
        if isinstance(value, (int, float)):
            return "high" if value > 1 else "normal"
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("", "normal", "low", "default", "standard"):
                return "normal"
            if word in ("high", "urgent"):
                return "high"
        return value

    @field_validator("s3_input_path", "s3_output_path")
    @classmethod
    def _check_location(cls, value: str) -> str:
        return check_location(value)

    @field_validator("formats")
    @classmethod
    def _check_formats(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_output_formats(value)

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: str | None) -> str | None:
        return None if value in (None, "") else check_language_code(value)

    @field_validator("task", mode="before")
    @classmethod
    def _check_task(cls, value: Any) -> Any:
        if value in (None, ""):
            return None
        if isinstance(value, str) and value.strip().lower() in ("transcribe", "translate"):
            return value.strip().lower()
        raise ValueError(f"unknown task {value!r}; use 'transcribe' or 'translate' (English text out)")

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    def to_message(self) -> str:
        """The message body: JSON without unset optional fields, readable by the predecessor's consumers."""
        return self.model_dump_json(exclude_none=True)


def check_location(value: str) -> str:
    """``value`` stripped, if it is an ``s3://bucket/key`` URL or a local path that stays in the folder it names.

    :raises ValueError: saying what is wrong.
    """
    value = value.strip()
    if value.startswith("s3://"):
        bucket, _, key = value[5:].partition("/")
        if not bucket:
            raise ValueError(f"{value!r} names no bucket; use s3://bucket/key")
        check_key(value, key)
    elif "://" in value:
        raise ValueError(f"{value!r}: only s3:// URLs and local paths are supported")
    else:
        check_key(value, value.lstrip("/"))
    return value


def check_key(location: str, key: str) -> None:
    """Refuse a key (or local path) that could leave the folder it names: ``.`` or ``..`` segments, empty
    segments (``//``), backslashes, percent-encoded dots and slashes, control characters.

    :raises ValueError: naming the location and the problem.
    """
    segments = key.split("/")
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash marks a folder
    problem = None
    if "\\" in key:
        problem = "a backslash"
    elif any(ord(c) < 32 or ord(c) == 127 for c in key):
        problem = "a control character"
    elif _ENCODED_TRAVERSAL.search(key):
        problem = "a percent-encoded '.', '/' or '\\'"
    elif any(seg in (".", "..") for seg in segments):
        problem = "a '.' or '..' segment"
    elif "" in segments:
        problem = "an empty segment ('//')"
    if problem:
        raise ValueError(f"{location!r} holds {problem}; give a plain path such as s3://bucket/folder/name")


def parse_job(body: str | bytes) -> JobSpec:
    """Parse and check a message body.

    :raises JobSpecError: naming the field and the problem (or saying the body is not a JSON object).
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobSpecError(f"the message is not JSON ({exc}); send a JSON object with job_id, "
                           "s3_input_path and s3_output_path") from None
    if not isinstance(data, dict):
        raise JobSpecError(f"the message is JSON {type(data).__name__}, not an object with job_id, "
                           "s3_input_path and s3_output_path")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise JobSpecError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    """``field: problem`` for each error, joined; missing fields are called missing."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "message"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "missing (a required field)"
        parts.append(f"{field}: {message}")
    return "invalid job message: " + "; ".join(parts)


def salvage(body: str | bytes) -> dict[str, str]:
    """``job_id`` and ``s3_output_path`` from a message that failed to parse, where they are readable strings:
    enough to write its error record beside the would-be output."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    found = {k: data[k] for k in ("job_id", "s3_output_path") if isinstance(data.get(k), str) and data[k]}
    job_id = found.get("job_id", "")
    if job_id and (not _JOB_ID.fullmatch(job_id) or len(job_id) > MAX_JOB_ID):
        found.pop("job_id")
    if "s3_output_path" in found:  # the error record must not go where a valid job could not write
        try:
            check_location(found["s3_output_path"])
        except ValueError:
            found.pop("s3_output_path")
    return found


def output_base(output_path: str, job_id: str) -> str:
    """Where a job's files go, without extension: ``<folder>/<job_id>`` or the named file's stem.

    :raises JobSpecError: when ``job_id`` is not a plain name (it could otherwise leave the folder).
    """
    if not _JOB_ID.fullmatch(job_id) or len(job_id) > MAX_JOB_ID:
        raise JobSpecError(f"job id {job_id!r} is not valid; use letters, digits, '.', '_' and '-' only")
    path = output_path.strip()
    for suffix in _FILE_SUFFIXES:
        if path.endswith(suffix) and not path.endswith("/"):
            return path[: -len(suffix)]
    return f"{path.rstrip('/')}/{job_id}"
