"""Set-up, checking and tear-down of the queue path's cloud resources: three queues and the buckets.

``up`` is idempotent: it creates what is missing and corrects the attributes of queues it manages. Everything it
creates is tagged ``rayscribe:managed=true``, and ``down`` deletes only tagged resources, so pointing rayscribe at
existing queues or buckets never puts them at risk. ``validate`` reports every problem at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rayscribe.aws import AwsError, client, describe, error_code
from rayscribe.config.queue import QueueSettings
from rayscribe.queue.sqs import MISSING_QUEUE

TAG_KEY = "rayscribe:managed"
TAG_VALUE = "true"
RETENTION_SECONDS = 14 * 24 * 3600  # SQS's maximum: a dead letter waits two weeks for a fix


@dataclass
class InfraReport:
    """What a command did (``actions``) or found wrong (``problems``)."""

    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _buckets(settings: QueueSettings) -> list[str]:
    return list(dict.fromkeys(b for b in (settings.input_bucket, settings.output_bucket) if b))


def _queue_attributes(settings: QueueSettings, dlq_arn: str | None) -> dict[str, str]:
    attrs = {"VisibilityTimeout": str(settings.visibility_timeout),
             "ReceiveMessageWaitTimeSeconds": str(settings.wait_seconds),
             "MessageRetentionPeriod": str(RETENTION_SECONDS)}
    if dlq_arn:
        attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn,
                                             "maxReceiveCount": settings.max_receive_count})
    return attrs


def _call(what: str, fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(f"cannot {what}: {describe(exc)}") from None


def _queue_url(sqs: Any, name: str) -> str | None:
    try:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in MISSING_QUEUE:
            return None
        raise AwsError(f"cannot look up queue {name!r}: {describe(exc)}") from None


def _managed_queue(sqs: Any, url: str) -> bool:
    tags = _call("read queue tags", sqs.list_queue_tags, QueueUrl=url).get("Tags", {})
    return bool(tags.get(TAG_KEY) == TAG_VALUE)


def _managed_bucket(s3: Any, bucket: str) -> bool:
    try:
        tags = s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in ("NoSuchTagSet", "NoSuchTagSetError"):
            return False
        raise AwsError(f"cannot read the tags of bucket {bucket!r}: {describe(exc)}") from None
    return any(t.get("Key") == TAG_KEY and t.get("Value") == TAG_VALUE for t in tags)


def _bucket_exists(s3: Any, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise AwsError(f"cannot check bucket {bucket!r}: {describe(exc)}") from None


def up(settings: QueueSettings) -> InfraReport:
    """Create the dead-letter queue, the two job queues (redrive to the DLQ) and the buckets, where missing."""
    sqs, s3 = client("sqs", settings), client("s3", settings)
    report = InfraReport()
    dlq_url = _queue_url(sqs, settings.dlq_name)
    if dlq_url is None:
        dlq_url = _call("create the dead-letter queue", sqs.create_queue, QueueName=settings.dlq_name,
                        Attributes=_queue_attributes(settings, None), tags={TAG_KEY: TAG_VALUE})["QueueUrl"]
        report.actions.append(f"created queue {settings.dlq_name} (dead letters)")
    else:
        report.actions.append(f"queue {settings.dlq_name} exists")
    dlq_arn = _call("read the dead-letter queue's ARN", sqs.get_queue_attributes, QueueUrl=dlq_url,
                    AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attrs = _queue_attributes(settings, dlq_arn)
    for name in (settings.queue_name, settings.high_priority_queue_name):
        url = _queue_url(sqs, name)
        if url is None:
            _call(f"create queue {name!r}", sqs.create_queue, QueueName=name, Attributes=attrs,
                  tags={TAG_KEY: TAG_VALUE})
            report.actions.append(f"created queue {name} (redrive to {settings.dlq_name} after "
                                  f"{settings.max_receive_count} receives, visibility {settings.visibility_timeout} s)")
        elif _managed_queue(sqs, url):
            _call(f"update queue {name!r}", sqs.set_queue_attributes, QueueUrl=url, Attributes=attrs)
            report.actions.append(f"queue {name} exists; attributes brought in line with settings")
        else:
            report.actions.append(f"queue {name} exists and is not managed by rayscribe; left as it is "
                                  "(`rayscribe infra validate` checks it)")
    for bucket in _buckets(settings):
        if _bucket_exists(s3, bucket):
            report.actions.append(f"bucket {bucket} exists")
            continue
        region = s3.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        _call(f"create bucket {bucket!r}", s3.create_bucket, **kwargs)
        _call(f"tag bucket {bucket!r}", s3.put_bucket_tagging, Bucket=bucket,
              Tagging={"TagSet": [{"Key": TAG_KEY, "Value": TAG_VALUE}]})
        report.actions.append(f"created bucket {bucket}")
    return report


def validate(settings: QueueSettings) -> InfraReport:
    """Check that every queue and bucket exists and the job queues redrive to the DLQ as settings say."""
    sqs, s3 = client("sqs", settings), client("s3", settings)
    report = InfraReport()
    dlq_url = _queue_url(sqs, settings.dlq_name)
    dlq_arn = None
    if dlq_url is None:
        report.problems.append(f"dead-letter queue {settings.dlq_name!r} does not exist (run `rayscribe infra up`)")
    else:
        dlq_arn = _call("read the dead-letter queue", sqs.get_queue_attributes, QueueUrl=dlq_url,
                        AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        report.actions.append(f"queue {settings.dlq_name} ok")
    for name in (settings.queue_name, settings.high_priority_queue_name):
        url = _queue_url(sqs, name)
        if url is None:
            report.problems.append(f"queue {name!r} does not exist (run `rayscribe infra up`)")
            continue
        attrs = _call(f"read queue {name!r}", sqs.get_queue_attributes, QueueUrl=url,
                      AttributeNames=["All"])["Attributes"]
        before = len(report.problems)
        visibility = int(attrs.get("VisibilityTimeout", 0))
        if visibility < settings.visibility_timeout:
            report.problems.append(f"queue {name!r} has a visibility timeout of {visibility} s, below "
                                   f"RAYSCRIBE_VISIBILITY_TIMEOUT={settings.visibility_timeout}")
        policy = json.loads(attrs.get("RedrivePolicy") or "{}")
        if not policy:
            report.problems.append(f"queue {name!r} has no redrive policy: failed jobs would never reach "
                                   f"{settings.dlq_name!r}")
        else:
            if dlq_arn and policy.get("deadLetterTargetArn") != dlq_arn:
                report.problems.append(f"queue {name!r} redrives to {policy.get('deadLetterTargetArn')}, not to "
                                       f"{settings.dlq_name!r}")
            if int(policy.get("maxReceiveCount", 0)) != settings.max_receive_count:
                report.problems.append(f"queue {name!r} moves messages to the DLQ after "
                                       f"{policy.get('maxReceiveCount')} receives, but "
                                       f"RAYSCRIBE_MAX_RECEIVE_COUNT={settings.max_receive_count}")
        if len(report.problems) == before:
            report.actions.append(f"queue {name} ok")
    if not _buckets(settings):
        report.problems.append("no bucket configured: set RAYSCRIBE_INPUT_BUCKET and RAYSCRIBE_OUTPUT_BUCKET")
    for bucket in _buckets(settings):
        if _bucket_exists(s3, bucket):
            report.actions.append(f"bucket {bucket} ok")
        else:
            report.problems.append(f"bucket {bucket!r} does not exist (run `rayscribe infra up`)")
    return report


def plan_down(settings: QueueSettings) -> tuple[list[tuple[str, str]], list[str]]:
    """What ``down`` would delete, as (kind, name) pairs, and what it leaves because rayscribe didn't create it."""
    sqs, s3 = client("sqs", settings), client("s3", settings)
    doomed: list[tuple[str, str]] = []
    kept: list[str] = []
    for name in (settings.queue_name, settings.high_priority_queue_name, settings.dlq_name):
        url = _queue_url(sqs, name)
        if url is None:
            continue
        if _managed_queue(sqs, url):
            doomed.append(("queue", name))
        else:
            kept.append(f"queue {name} (not created by rayscribe)")
    for bucket in _buckets(settings):
        if not _bucket_exists(s3, bucket):
            continue
        if _managed_bucket(s3, bucket):
            doomed.append(("bucket", bucket))
        else:
            kept.append(f"bucket {bucket} (not created by rayscribe)")
    return doomed, kept


def down(settings: QueueSettings, doomed: list[tuple[str, str]], *, purge: bool = False) -> InfraReport:
    """Delete the planned resources. A bucket that still holds objects is kept unless ``purge``."""
    sqs, s3 = client("sqs", settings), client("s3", settings)
    report = InfraReport()
    for kind, name in doomed:
        if kind == "queue":
            url = _queue_url(sqs, name)
            if url is not None:
                _call(f"delete queue {name!r}", sqs.delete_queue, QueueUrl=url)
                report.actions.append(f"deleted queue {name}")
            continue
        listing = _call(f"list bucket {name!r}", s3.list_objects_v2, Bucket=name, MaxKeys=1)
        if listing.get("KeyCount", 0) and not purge:
            report.problems.append(f"bucket {name} still holds objects; kept (add --purge to delete them too)")
            continue
        _empty_bucket(s3, name)
        _call(f"delete bucket {name!r}", s3.delete_bucket, Bucket=name)
        report.actions.append(f"deleted bucket {name}")
    return report


def _empty_bucket(s3: Any, bucket: str) -> None:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            _call(f"empty bucket {bucket!r}", s3.delete_objects, Bucket=bucket, Delete={"Objects": keys})
