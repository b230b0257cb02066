"""The soak's verdict, read from S3 and the queues alone: every job's fate."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

from jobs.soak.config import FORMATS, Entry
from rayscribe.formatters import EXTENSIONS
from rayscribe.queue.sqs import JobQueue


def _iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def list_versions(s3: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every version of every object under ``prefix``, by key (delete markers left out)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            found.setdefault(version["Key"], []).append(version)
    return found


def read_dlq(queue: JobQueue) -> list[dict[str, str]]:
    """Every dead letter (leased for 5 minutes so each is seen once): body and attributes."""
    found: dict[str, dict[str, str]] = {}
    empty = 0
    while empty < 3:
        response = queue.sqs.receive_message(QueueUrl=queue.url("dlq"), MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                             VisibilityTimeout=300, MessageAttributeNames=["All"])
        batch = response.get("Messages", [])
        empty = 0 if batch else empty + 1
        for m in batch:
            found[m["MessageId"]] = {"body": m["Body"], "message_id": m["MessageId"],
                                     **{k: v.get("StringValue", "") for k, v in m.get("MessageAttributes", {}).items()}}
    return list(found.values())


def check(entries: list[Entry], queue: JobQueue, s3: Any, out_bucket: str, prefix: str) -> dict[str, Any]:
    """Every entry's fate from S3 and the queues alone."""
    versions = list_versions(s3, out_bucket, prefix)
    dead = read_dlq(queue)
    # A message is copied to the DLQ before it is deleted, and a copy whose send answer was cut off (the outage)
    # is sent again: copies of one source message are one dead letter (SQS's redrive keeps the message id).
    sources = {(d["body"], d.get("source_message_id") or d["message_id"]) for d in dead}
    dead_by_body = Counter(body for body, _ in sources)
    reasons_by_body: dict[str, str] = {}
    for d in dead:
        if d.get("error_reason"):
            reasons_by_body[d["body"]] = d["error_reason"]
    left = {q: queue.counts(q) for q in ("high", "normal")}
    expected_keys: set[str] = set()
    result: dict[str, Any] = {"good_done": 0, "good_failed_explained": 0, "lost": [], "duplicated": [],
                              "reprocessed": 0, "bad_explained": 0, "bad_unexplained": [], "bad_succeeded": [],
                              "incomplete_outputs": [], "wrong_content": [], "finished_at": [], "attempts": Counter(),
                              "work": []}
    for entry in entries:
        base = f"{prefix}{entry.job_id}" if entry.job_id else None
        keys = {f"{base}{EXTENSIONS[f]}" for f in FORMATS} | {f"{base}.metrics.json", f"{base}.done.json"} if base \
            else set()
        expected_keys |= keys | ({f"{base}.error.json"} if base else set())
        done = versions.get(f"{base}.done.json", []) if base else []
        error_record: dict[str, Any] | None = None
        if base and f"{base}.error.json" in versions:
            error_record = json.loads(s3.get_object(Bucket=out_bucket, Key=f"{base}.error.json")["Body"].read())
        dead_copies = dead_by_body.get(entry.body, 0)
        if entry.kind == "good":
            if done:
                result["good_done"] += 1
                if len(done) > 1:
                    result["duplicated"].append(entry.job_id)
                if len(versions.get(f"{base}.metrics.json", [])) > 1:
                    result["reprocessed"] += 1
                missing = [k for k in keys if k not in versions]
                if missing:
                    result["incomplete_outputs"].append(entry.job_id)
                metrics = json.loads(s3.get_object(Bucket=out_bucket, Key=f"{base}.metrics.json")["Body"].read())
                if abs(metrics["audio_seconds"] - entry.audio_seconds) > 0.05 or metrics["backend"] != "simulated":
                    result["wrong_content"].append(entry.job_id)
                result["finished_at"].append(_iso(metrics["finished_at"]))
                result["work"].append((metrics["worker"]["pid"], _iso(metrics["started_at"]),
                                       metrics["processing_seconds"]))
                result["attempts"][metrics["attempt"]] += 1
            elif (error_record and error_record.get("reason")) or dead_copies:
                result["good_failed_explained"] += 1
            else:
                result["lost"].append(entry.job_id)
            if dead_copies > max(1, entry.sends):
                result["duplicated"].append(entry.job_id)
            continue
        label = entry.job_id or entry.body[:40]
        if done:
            result["bad_succeeded"].append(label)
        explained = bool(reasons_by_body.get(entry.body)) or bool(error_record and error_record.get("reason"))
        if explained:
            result["bad_explained"] += 1
        elif dead_copies:
            result["bad_explained"] += 1  # moved by SQS's redrive policy: in the DLQ, reason in the logs
        else:
            result["bad_unexplained"].append(label)
        if dead_copies > max(1, entry.sends):  # a send retried after a cut-off answer made two source messages
            result["duplicated"].append(label)
    result["stray_objects"] = sorted(k for k in versions if k not in expected_keys)
    known_bodies = {e.body for e in entries}
    result["stray_dead_letters"] = sum(1 for d in dead if d["body"] not in known_bodies)
    result["dead_letters"] = len(sources)
    result["dead_letter_copies"] = len(dead) - len(sources)
    result["left_in_queues"] = left
    result["left_in_flight"] = sum(sum(c.values()) for c in left.values())
    return result
