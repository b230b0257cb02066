"""Where a batch run's transcripts go, a local folder or an ``s3://bucket/prefix/``, behind one set of calls:
which files are done already (to resume), writing one file's outputs, and the run's summary.

The resume rule is the same for both: a file is done when every output format of its stem exists and is not
empty. In S3 that is one ``HEAD`` per format; the checks for a stretch of inputs run at once on a few threads
(:func:`rayscribe.storage.io_threads`), so resuming a large archive is not one round trip per object after another.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rayscribe.aws import MISSING_CODES, describe, error_code
from rayscribe.file_jobs import SUMMARY_FILE, BatchReport, InputError
from rayscribe.formatters import EXTENSIONS, format_transcript, output_paths, outputs_exist, write_outputs
from rayscribe.queue.jobstore import CONTENT_TYPES
from rayscribe.storage import Storage, io_threads, is_s3, join, parse_s3
from rayscribe.transcript import Transcript
from rayscribe.work import ItemResult, WorkItem

CHECK_CHUNK = 64  # inputs whose outputs are looked up at once


class BatchOutputs:
    """The output location of a batch run: ``location`` is a folder or an ``s3://`` prefix; ``storage`` makes
    the S3 client holder when one is needed (queue settings carry the AWS retry policy)."""

    def __init__(self, location: str, formats: Sequence[str], storage: Callable[[], Storage]) -> None:
        self.location = location
        self.formats = list(formats)
        self.in_s3 = is_s3(location)
        self._storage_factory = storage
        self._storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = self._storage_factory()
        return self._storage

    @property
    def summary_location(self) -> str:
        return join(self.location, SUMMARY_FILE)

    def urls(self, stem: str) -> dict[str, str]:
        """Each format's location for ``stem``. :raises ValueError: for a stem that would leave the location
        (absolute, or with a ``..`` part), in S3 as on disk."""
        paths = output_paths("/" if self.in_s3 else self.location, stem, self.formats)  # the same checks for both
        if not self.in_s3:
            return {fmt: str(path) for fmt, path in paths.items()}
        return {fmt: join(self.location, f"{stem}{EXTENSIONS[fmt]}") for fmt in paths}

    def check(self) -> None:
        """Fail now, before any work, when an S3 output location's bucket does not exist or cannot be listed."""
        if not self.in_s3:
            return
        loc = parse_s3(self.location)
        try:
            self.storage.s3.list_objects_v2(Bucket=loc.bucket, Prefix=loc.key, MaxKeys=1)
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "NoSuchBucket":
                raise InputError(f"--out {self.location!r}: bucket {loc.bucket!r} does not exist; create it "
                                 f"(e.g. `aws s3 mb s3://{loc.bucket}`) or name another") from None
            raise InputError(f"--out {self.location!r}: {describe(exc)}") from None

    def done(self, stem: str, s3: Any = None) -> bool:
        """Whether every format of ``stem`` exists and is not empty."""
        if not self.in_s3:
            return outputs_exist(self.location, stem, self.formats)
        client = s3 or self.storage.s3
        for url in self.urls(stem).values():
            loc = parse_s3(url)
            try:
                head = client.head_object(Bucket=loc.bucket, Key=loc.key)
            except (ClientError, BotoCoreError) as exc:
                if error_code(exc) in MISSING_CODES:
                    return False
                raise InputError(f"cannot check output {url}: {describe(exc)}") from None
            if not head.get("ContentLength"):
                return False
        return bool(self.formats)

    def pending(self, items: Iterable[WorkItem], skipped: list[str], failed: Callable[[ItemResult], None], *,
                check: bool = True) -> Iterator[WorkItem]:
        """The items whose outputs are not all there yet (every item when not ``check``: overwrite), lazily; the
        names of the others go to ``skipped``, and an item whose key cannot name an output goes to ``failed``
        (a failure result), without being transcribed."""
        source = iter(items)
        while chunk := list(islice(source, CHECK_CHUNK)):
            named = []
            for item in chunk:
                try:
                    self.urls(item.key)
                    named.append(item)
                except ValueError as exc:
                    failed(ItemResult(key=item.key, name=item.name, error=str(exc), error_type="ValueError",
                                      attempts=0))
            if not check:
                flags = [False] * len(named)
            elif self.in_s3 and len(named) > 1:
                s3 = self.storage.s3  # clients are thread-safe; the checking threads share this one
                flags = list(io_threads().map(self.done, [item.key for item in named], [s3] * len(named)))
            else:
                flags = [self.done(item.key) for item in named]
            for item, is_done in zip(named, flags):
                if is_done:
                    skipped.append(item.name)
                else:
                    yield item

    def write(self, transcript: Transcript, stem: str, metadata: dict[str, Any] | None = None) -> None:
        """Write ``transcript`` in every format (each file or object replaced whole, never seen half-written).
        :raises OSError: or :class:`rayscribe.storage.StorageError` when the location refuses it."""
        if not self.in_s3:
            write_outputs(transcript, self.location, stem, self.formats, metadata=metadata)
            return
        self.storage.write_all([(url, format_transcript(transcript, fmt, metadata=metadata), CONTENT_TYPES[fmt])
                                for fmt, url in self.urls(stem).items()])

    def write_summary(self, report: BatchReport) -> str:
        """``rayscribe-summary.json`` in the output location; returns where it went."""
        if not self.in_s3:
            return str(report.write(Path(self.location)))
        text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
        self.storage.write_text(self.summary_location, text, content_type="application/json")
        return self.summary_location
