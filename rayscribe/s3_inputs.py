"""Batch inputs in S3: ``s3://bucket/prefix/`` listed lazily, page by page, into work items named after their keys.

An archive can hold millions of objects, so nothing here lists a prefix to the end before work starts: keys come
from boto3's ``list_objects_v2`` paginator one page (1,000 keys) at a time, and each becomes a
:class:`~rayscribe.work.WorkItem` whose ``source`` is the object's URL (the Whisper worker reads it itself).

The naming rules are those of local folders (:func:`rayscribe.file_jobs.discover_inputs`): only keys with an
audio extension are taken; a key's output stem is its path below the prefix without the extension
(``s3://b/in/day1/talk.mp3`` → ``day1/talk``); two keys that would share a stem (``talk.mp3``, ``talk.wav``)
both keep their extension (``talk.mp3``). That last rule needs no full listing: S3 returns keys in UTF-8 binary
order, so every key with stem ``S`` falls in the contiguous run of keys that start with ``S.``; an item waits only
until a key outside that run arrives (:class:`_StemNamer`), which holds back a handful of keys at most.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from botocore.exceptions import BotoCoreError, ClientError

from rayscribe.audio import AUDIO_EXTENSIONS
from rayscribe.aws import MISSING_CODES, describe, error_code
from rayscribe.file_jobs import InputError
from rayscribe.storage import S3Url, Storage, is_s3, parse_s3
from rayscribe.work import WorkItem

PAGE_SIZE = 1000  # keys per list request (S3's maximum)


def is_audio_key(key: str) -> bool:
    """Whether an object key has one of the audio extensions local folder scans take."""
    return PurePosixPath(key).suffix.lower() in AUDIO_EXTENSIONS


def _stem(rel: str) -> str:
    """``day1/talk.mp3`` → ``day1/talk`` (the extension of the last component only, as ``Path.with_suffix``)."""
    suffix = PurePosixPath(rel).suffix
    return rel[: len(rel) - len(suffix)] if suffix else rel


@dataclass
class _Pending:
    rel: str
    stem: str
    shared: bool = False


class _StemNamer:
    """Gives each key (arriving in sorted order) its output stem, holding a key back only while another key with
    the same stem may still come (see the module's docstring)."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.pending: list[_Pending] = []

    def add(self, rel: str) -> Iterator[WorkItem]:
        """Note the audio key ``rel`` (its path below the prefix); yield the items no later key can clash with."""
        yield from self.release(rel)
        entry = _Pending(rel, _stem(rel))
        for other in self.pending:
            if other.stem == entry.stem:
                other.shared = entry.shared = True
        self.pending.append(entry)

    def release(self, next_rel: str | None) -> Iterator[WorkItem]:
        """Yield the held keys whose stem's run ended before ``next_rel`` (every one when None: the listing ended)."""
        keep = []
        for entry in self.pending:
            if next_rel is not None and next_rel.startswith(entry.stem + "."):
                keep.append(entry)
                continue
            url = f"s3://{self.bucket}/{self.prefix}{entry.rel}"
            yield WorkItem(key=entry.rel if entry.shared else entry.stem, name=url, source=url)
        self.pending = keep


def _list_error(url: str, exc: BaseException) -> InputError:
    if error_code(exc) == "NoSuchBucket":
        return InputError(f"input {url!r}: bucket {parse_s3(url).bucket!r} does not exist; check the name "
                          f"(and AWS_DEFAULT_REGION / AWS_ENDPOINT_URL)")
    return InputError(f"cannot list input {url!r}: {describe(exc)}")


def _single_object(storage: Storage, loc: S3Url) -> bool:
    """Whether ``loc`` names an object (``s3://b/talk.mp3``) rather than a prefix."""
    if not loc.key or loc.key.endswith("/"):
        return False
    try:
        storage.s3.head_object(Bucket=loc.bucket, Key=loc.key)
        return True
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in MISSING_CODES and error_code(exc) != "NoSuchBucket":
            return False
        raise _list_error(str(loc), exc) from None


def list_s3_inputs(url: str, storage: Storage) -> Iterator[WorkItem]:
    """The audio objects under ``url`` as work items, listed lazily (one page of keys at a time).

    ``url`` is ``s3://bucket/prefix/`` (``s3://bucket`` for the whole bucket) or one object, which is taken
    whatever its extension, as a file named on the command line is. A prefix without the closing slash is
    taken as a folder (``s3://b/in`` lists ``in/...``, not ``inbox/...``).

    :raises InputError: when the bucket does not exist or cannot be listed (also mid-way through a listing,
        after botocore's retries).
    """
    loc = parse_s3(url)
    if _single_object(storage, loc):
        name = loc.key.rsplit("/", 1)[-1]
        yield WorkItem(key=_stem(name), name=url, source=url)
        return
    prefix = loc.key if not loc.key or loc.key.endswith("/") else loc.key + "/"
    namer = _StemNamer(loc.bucket, prefix)
    pages = storage.s3.get_paginator("list_objects_v2").paginate(
        Bucket=loc.bucket, Prefix=prefix, PaginationConfig={"PageSize": PAGE_SIZE})
    try:
        for page in pages:
            for obj in page.get("Contents", []):
                key: str = obj["Key"]
                rel = key[len(prefix):]
                if is_audio_key(rel) and not rel.endswith("/"):
                    yield from namer.add(rel)
                else:
                    yield from namer.release(rel)
    except (ClientError, BotoCoreError) as exc:
        raise _list_error(url, exc) from None
    yield from namer.release(None)


def first_and_rest(items: Iterator[WorkItem]) -> tuple[WorkItem | None, Iterator[WorkItem]]:
    """The first item (None when there is none) and an iterator over all of them, the first included: checks
    that an input holds audio, and that it can be listed at all, before any work starts."""
    first = next(items, None)
    if first is None:
        return None, iter(())

    def chained() -> Iterator[WorkItem]:
        yield first
        yield from items

    return first, chained()


def split_arguments(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """Command-line inputs as local ones and ``s3://`` ones, each in the order given."""
    return [p for p in paths if not is_s3(p)], [p for p in paths if is_s3(p)]
