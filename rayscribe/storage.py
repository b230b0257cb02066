"""One interface for where audio comes from and transcripts go: local paths and ``s3://bucket/key`` URLs.

``read_bytes``, ``write_bytes`` (atomic: a reader sees the old object or the whole new one, never a part),
``exists`` and ``join``. ``write_bytes(..., if_absent=True)`` creates an object only if none is there and says
whether it did: on S3 a conditional put (``IfNoneMatch="*"``, which real S3 and moto 5 both enforce), locally an
exclusive hard link. The queue worker uses it for its done marker, so two consumers that received the same message
can't both claim to have finished it.

Errors are :class:`StorageError` with ``missing=True`` when the object (or bucket) does not exist, which the
queue treats as permanent; transient S3 failures are retried by botocore (see :mod:`rayscribe.aws`) before
they get here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rayscribe.aws import DENIED_CODES, MISSING_CODES, client, describe, error_code
from rayscribe.config.queue import QueueSettings
from rayscribe.errors import RayscribeError


class StorageError(RayscribeError):
    """Reading or writing a location failed. ``missing``: it does not exist; ``permanent``: retrying won't help."""

    def __init__(self, message: str, *, missing: bool = False, permanent: bool = False) -> None:
        super().__init__(message)
        self.missing = missing
        self.permanent = permanent or missing

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (str(self), self.missing, self.permanent))


def _rebuild(message: str, missing: bool, permanent: bool) -> StorageError:
    return StorageError(message, missing=missing, permanent=permanent)


@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_s3(url: str) -> bool:
    return url.startswith("s3://")


def parse_s3(url: str) -> S3Url:
    """``s3://bucket/key`` → bucket and key. :raises StorageError: when the URL names no bucket."""
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise StorageError(f"{url!r} names no bucket; use s3://bucket/key", permanent=True)
    return S3Url(bucket, key)


def join(base: str, *parts: str) -> str:
    """``base`` and ``parts`` joined with single slashes; works for s3:// URLs and local paths alike."""
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base).joinpath(*parts))


def name_of(url: str) -> str:
    """The last path component (``s3://b/x/talk.mp3`` → ``talk.mp3``)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


class Storage:
    """Local files and S3 objects behind one set of calls."""

    def __init__(self, settings: QueueSettings) -> None:
        self.settings = settings

    @property
    def s3(self) -> Any:
        return client("s3", self.settings)

    def warm(self) -> None:
        """Make this thread's S3 client now (it is kept per thread), so the first call that needs it does not pay
        for it; raises :class:`rayscribe.aws.AwsError` now when AWS is not configured."""
        client("s3", self.settings)

    # -- reading ----------------------------------------------------------------------------------------

    def read_bytes(self, url: str) -> bytes:
        if not is_s3(url):
            try:
                return Path(url).read_bytes()
            except FileNotFoundError:
                raise StorageError(f"{url} does not exist", missing=True) from None
            except IsADirectoryError:
                raise StorageError(f"{url} is a folder, not a file", permanent=True) from None
            except OSError as exc:
                raise StorageError(f"cannot read {url}: {exc}") from None
        loc = parse_s3(url)
        try:
            response = self.s3.get_object(Bucket=loc.bucket, Key=loc.key)
            return bytes(response["Body"].read())
        except (ClientError, BotoCoreError) as exc:
            raise self._error("read", url, exc) from None

    def read_text(self, url: str) -> str:
        return self.read_bytes(url).decode("utf-8")

    def exists(self, url: str, *, s3: Any = None) -> bool:
        """Whether ``url`` names an object (a file). ``s3``: a client to use instead of this thread's own."""
        if not is_s3(url):
            return Path(url).is_file()
        loc = parse_s3(url)
        try:
            (s3 or self.s3).head_object(Bucket=loc.bucket, Key=loc.key)
            return True
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in MISSING_CODES:
                return False
            raise self._error("check", url, exc) from None

    # -- writing ----------------------------------------------------------------------------------------

    def write_bytes(self, url: str, data: bytes, *, content_type: str | None = None,
                    if_absent: bool = False, s3: Any = None) -> bool:
        """Write ``data`` to ``url`` atomically; returns False only when ``if_absent`` and something is there.
        ``s3``: a client to use instead of this thread's own."""
        if not is_s3(url):
            return _write_local(Path(url), data, if_absent=if_absent)
        loc = parse_s3(url)
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        try:
            (s3 or self.s3).put_object(Bucket=loc.bucket, Key=loc.key, Body=data, **extra)
            return True
        except (ClientError, BotoCoreError) as exc:
            if if_absent and error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise self._error("write", url, exc) from None

    def write_text(self, url: str, text: str, *, content_type: str = "text/plain; charset=utf-8",
                   if_absent: bool = False) -> bool:
        return self.write_bytes(url, text.encode("utf-8"), content_type=content_type, if_absent=if_absent)

    def write_all(self, files: list[tuple[str, str, str]]) -> None:
        """Write ``(url, text, content type)`` files at once, on a few threads: a job's outputs are independent,
        and one after another they cost a round trip to S3 each, on the thread that feeds the workers. Returns
        when every write has ended; raises the first permanent failure, else the first failure."""
        if len(files) < 2:
            for url, text, content_type in files:
                self.write_text(url, text, content_type=content_type)
            return
        s3 = self.s3 if any(is_s3(url) for url, _, _ in files) else None  # clients are thread-safe (sessions
        # are not): the writer threads share this thread's, instead of each making its own on first use
        futures = [io_threads().submit(self.write_bytes, url, text.encode("utf-8"), content_type=content_type, s3=s3)
                   for url, text, content_type in files]
        errors = [f.exception() for f in futures]  # waits for each
        failed = [e for e in errors if e is not None]
        if failed:
            raise next((e for e in failed if isinstance(e, StorageError) and (e.permanent or e.missing)), failed[0])

    def delete(self, url: str) -> None:
        """Remove ``url`` if it exists (a missing object is not an error)."""
        if not is_s3(url):
            Path(url).unlink(missing_ok=True)
            return
        loc = parse_s3(url)
        try:
            self.s3.delete_object(Bucket=loc.bucket, Key=loc.key)
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) not in MISSING_CODES:
                raise self._error("delete", url, exc) from None

    def upload_file(self, path: Path, url: str) -> None:
        """Upload a local file (multipart for large ones) to an s3:// URL."""
        loc = parse_s3(url)
        try:
            self.s3.upload_file(str(path), loc.bucket, loc.key)
        except (ClientError, BotoCoreError) as exc:
            raise self._error("upload to", url, exc) from None
        except Exception as exc:  # boto3's S3UploadFailedError wraps the ClientError
            raise StorageError(f"cannot upload {path} to {url}: {exc}") from None

    # -- errors -----------------------------------------------------------------------------------------

    @staticmethod
    def _error(verb: str, url: str, exc: BaseException) -> StorageError:
        code = error_code(exc)
        if code in MISSING_CODES:
            what = "bucket" if code == "NoSuchBucket" else "object"
            return StorageError(f"cannot {verb} {url}: no such {what}", missing=True)
        return StorageError(f"cannot {verb} {url}: {describe(exc)}", permanent=code in DENIED_CODES)


_IO_THREADS: ThreadPoolExecutor | None = None
_IO_THREADS_LOCK = threading.Lock()
IO_THREAD_COUNT = 8


def io_threads() -> ThreadPoolExecutor:
    """The threads S3 calls run on beside their caller's (the writes of :meth:`Storage.write_all`, the ingest
    loop's done check beside its input read), started on first use and shared. Callers pass their own client
    (``s3=``): clients are thread-safe, and these threads then make none of their own."""
    global _IO_THREADS
    with _IO_THREADS_LOCK:
        if _IO_THREADS is None:
            _IO_THREADS = ThreadPoolExecutor(max_workers=IO_THREAD_COUNT, thread_name_prefix="rayscribe-io")
        return _IO_THREADS


def _write_local(path: Path, data: bytes, *, if_absent: bool) -> bool:
    """Temp file beside ``path``, fsync, then rename over it (or hard-link, failing if it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if if_absent:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        os.replace(tmp, path)
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
