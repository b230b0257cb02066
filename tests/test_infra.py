"""`rayscribe infra up | validate | down` against the moto server: idempotent, strict, and careful in `down`."""

from __future__ import annotations

import json
from typing import Any

import boto3
from typer.testing import CliRunner

from rayscribe.cli.app import app

runner = CliRunner()


def infra(*args: str) -> Any:
    return runner.invoke(app, ["infra", *args], catch_exceptions=False)


def test_up_is_idempotent_and_validate_passes(moto, queue_names) -> None:
    first = infra("up")
    assert first.exit_code == 0, first.output
    assert "created queue " + queue_names["RAYSCRIBE_DLQ_NAME"] in first.output
    assert "created bucket " + queue_names["RAYSCRIBE_OUTPUT_BUCKET"] in first.output
    second = infra("up")
    assert second.exit_code == 0 and "created" not in second.output
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_names["RAYSCRIBE_QUEUE_NAME"])["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    policy = json.loads(attrs["RedrivePolicy"])
    assert int(policy["maxReceiveCount"]) == 3 and policy["deadLetterTargetArn"].endswith(
        queue_names["RAYSCRIBE_DLQ_NAME"])
    assert attrs["VisibilityTimeout"] == "300"
    ok = infra("validate")
    assert ok.exit_code == 0 and "infrastructure ok" in ok.output


def test_validate_catches_missing_and_misconfigured_queues(moto, queue_names, monkeypatch) -> None:
    assert infra("up").exit_code == 0
    sqs = boto3.client("sqs")
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=queue_names["RAYSCRIBE_HIGH_PRIORITY_QUEUE_NAME"])["QueueUrl"])
    main = sqs.get_queue_url(QueueName=queue_names["RAYSCRIBE_QUEUE_NAME"])["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=main, Attributes={"VisibilityTimeout": "30"})
    monkeypatch.setenv("RAYSCRIBE_MAX_RECEIVE_COUNT", "5")
    bad = infra("validate")
    assert bad.exit_code == 1
    assert f"queue {queue_names['RAYSCRIBE_HIGH_PRIORITY_QUEUE_NAME']!r} does not exist" in bad.output
    assert "visibility timeout of 30 s" in bad.output
    assert "after 3 receives, but RAYSCRIBE_MAX_RECEIVE_COUNT=5" in bad.output
    assert infra("up").exit_code == 0  # up repairs what it manages
    assert infra("validate").exit_code == 0


def test_down_needs_confirmation_and_deletes_only_what_up_created(moto, queue_names) -> None:
    sqs, s3 = boto3.client("sqs"), boto3.client("s3")
    s3.create_bucket(Bucket=queue_names["RAYSCRIBE_INPUT_BUCKET"])  # someone else's bucket
    assert infra("up").exit_code == 0
    s3.put_object(Bucket=queue_names["RAYSCRIBE_OUTPUT_BUCKET"], Key="t/x.txt", Body=b"keep me")
    refused = infra("down")
    assert refused.exit_code != 0 and "--yes" in refused.output
    assert sqs.get_queue_url(QueueName=queue_names["RAYSCRIBE_QUEUE_NAME"])
    done = infra("down", "--yes")
    assert done.exit_code == 1, done.output  # the output bucket holds a transcript: kept without --purge
    assert f"keep bucket {queue_names['RAYSCRIBE_INPUT_BUCKET']} (not created by rayscribe)" in done.output
    assert "still holds objects" in done.output
    queues = sqs.list_queues().get("QueueUrls", [])
    assert not [q for q in queues if q.rsplit("/", 1)[-1] in queue_names.values()]
    purged = infra("down", "--yes", "--purge")
    assert purged.exit_code == 0, purged.output
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert queue_names["RAYSCRIBE_INPUT_BUCKET"] in buckets and queue_names["RAYSCRIBE_OUTPUT_BUCKET"] not in buckets
    assert "nothing to delete" in infra("down", "--yes").output


def test_missing_bucket_setting_is_one_line(moto, queue_names, monkeypatch) -> None:
    monkeypatch.delenv("RAYSCRIBE_OUTPUT_BUCKET")
    monkeypatch.delenv("RAYSCRIBE_INPUT_BUCKET")
    assert infra("up").exit_code == 0
    result = infra("validate")
    assert result.exit_code == 1 and "set RAYSCRIBE_INPUT_BUCKET and RAYSCRIBE_OUTPUT_BUCKET" in result.output
    status = runner.invoke(app, ["status", "x"])
    assert status.exit_code == 2 and "RAYSCRIBE_OUTPUT_BUCKET is not set" in status.output
