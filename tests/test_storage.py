"""Storage: one interface for local paths and S3 (moto server), atomic writes, create-only markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayscribe.config.queue import load_queue_settings
from rayscribe.storage import Storage, StorageError, join, name_of


def test_local_read_write_exists_and_create_only(tmp_path: Path) -> None:
    storage = Storage(load_queue_settings())
    target = str(tmp_path / "deep" / "er" / "x.txt")
    assert not storage.exists(target)
    assert storage.write_text(target, "one")
    assert storage.read_text(target) == "one" and storage.exists(target)
    assert storage.write_text(target, "two") and storage.read_text(target) == "two"
    assert storage.write_text(target, "three", if_absent=True) is False
    assert storage.read_text(target) == "two"
    assert [p.name for p in (tmp_path / "deep" / "er").iterdir()] == ["x.txt"]  # no temp files left
    with pytest.raises(StorageError) as info:
        storage.read_bytes(str(tmp_path / "missing.wav"))
    assert info.value.missing and info.value.permanent


def test_s3_read_write_exists_and_conditional_put(moto, queue_names) -> None:
    import boto3

    bucket = queue_names["RAYSCRIBE_OUTPUT_BUCKET"]
    boto3.client("s3").create_bucket(Bucket=bucket)
    storage = Storage(load_queue_settings())
    url = join(f"s3://{bucket}/", "a/", "b.json")
    assert url == f"s3://{bucket}/a/b.json" and name_of(url) == "b.json"
    assert not storage.exists(url)
    assert storage.write_text(url, "{}", content_type="application/json")
    assert storage.exists(url) and storage.read_text(url) == "{}"
    assert storage.write_text(url, "second", if_absent=True) is False  # IfNoneMatch="*" is enforced
    assert storage.read_text(url) == "{}"
    storage.delete(url)
    storage.delete(url)  # deleting what is gone is fine
    assert not storage.exists(url)
    with pytest.raises(StorageError) as info:
        storage.read_bytes(f"s3://{bucket}/nope.wav")
    assert info.value.missing and "no such object" in str(info.value)
    with pytest.raises(StorageError) as info:
        storage.read_bytes("s3://no-such-bucket-here/x.wav")
    assert info.value.missing and "no such bucket" in str(info.value)


def test_write_all_writes_every_file_and_reports_the_one_that_failed(moto, queue_names) -> None:
    """A job's outputs go to S3 together; when one cannot be written the others still are, and the error names
    the one that failed (a missing bucket: permanent, so the job is not retried forever)."""
    import boto3

    bucket = queue_names["RAYSCRIBE_OUTPUT_BUCKET"]
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    storage = Storage(load_queue_settings())
    files = [(f"s3://{bucket}/w/{i}.txt", f"text {i}", "text/plain") for i in range(6)]
    storage.write_all(files)
    for url, text, content_type in files:
        assert storage.read_text(url) == text
        assert s3.head_object(Bucket=bucket, Key=url.split("/", 3)[3])["ContentType"] == content_type
    broken = [*files[:3], (f"s3://{bucket}-missing/w/x.txt", "lost", "text/plain"), *files[3:]]
    with pytest.raises(StorageError) as info:
        storage.write_all([(u, t + " third", c) for u, t, c in broken])
    assert info.value.missing and f"{bucket}-missing/w/x.txt" in str(info.value)
    assert all(storage.read_text(u) == t + " third" for u, t, _ in files)
