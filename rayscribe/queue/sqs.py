"""A thin SQS client: the few calls the queue path makes, with names that say what they are for.

Queues are addressed by name (from settings) and their URLs looked up once. Failures after botocore's retries
become :class:`QueueError`, whose message names the queue and what to check (``rayscribe infra validate``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rayscribe.aws import client, describe, error_code
from rayscribe.config.queue import QueueSettings
from rayscribe.errors import RayscribeError

MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
SEND_BATCH = 10  # SQS's limit per SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch
MAX_ATTRIBUTE = 1024  # attribute values are kept short; the full reason is in the error record


class QueueError(RayscribeError):
    """An SQS call failed; ``missing`` is set when the queue does not exist."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass
class Message:
    """A received message and where it came from."""

    queue: str  # "high" or "normal"
    queue_url: str
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1
    attributes: dict[str, str] = field(default_factory=dict)


class JobQueue:
    """The main, high-priority and dead-letter queues named in settings."""

    def __init__(self, settings: QueueSettings) -> None:
        self.settings = settings
        self.names = {"high": settings.high_priority_queue_name, "normal": settings.queue_name,
                      "dlq": settings.dlq_name}
        self._urls: dict[str, str] = {}

    @property
    def sqs(self) -> Any:
        return client("sqs", self.settings)

    def url(self, which: str) -> str:
        if which not in self._urls:
            name = self.names[which]
            try:
                self._urls[which] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except (ClientError, BotoCoreError) as exc:
                if error_code(exc) in MISSING_QUEUE:
                    raise QueueError(f"queue {name!r} does not exist; create it with `rayscribe infra up` or set "
                                     f"the RAYSCRIBE_*QUEUE*_NAME settings", missing=True) from None
                raise QueueError(f"cannot look up queue {name!r}: {describe(exc)}") from None
        return self._urls[which]

    def _call(self, what: str, which: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.sqs, method)(QueueUrl=self.url(which), **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise QueueError(f"cannot {what} on queue {self.names[which]!r}: {describe(exc)}",
                             missing=error_code(exc) in MISSING_QUEUE) from None

    # -- consuming ------------------------------------------------------------------------------------

    def receive(self, which: str, max_messages: int, wait_seconds: int) -> list[Message]:
        """Up to ``max_messages`` (1-10) messages, leased for the configured visibility timeout."""
        response = self._call(
            "receive", which, "receive_message", MaxNumberOfMessages=max(1, min(10, max_messages)),
            WaitTimeSeconds=wait_seconds, VisibilityTimeout=self.settings.visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            MessageAttributeNames=["All"],
        )
        return [
            Message(queue=which, queue_url=self.url(which), message_id=m["MessageId"],
                    receipt_handle=m["ReceiptHandle"], body=m.get("Body", ""),
                    receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                    attributes={k: v.get("StringValue", "") for k, v in m.get("MessageAttributes", {}).items()})
            for m in response.get("Messages", [])
        ]

    def extend(self, messages: Sequence[Message], seconds: int) -> list[Message]:
        """Set each message's visibility to ``seconds`` from now (0 releases it); returns those that failed
        (their lease is gone: another consumer may have it)."""
        return self._batched("extend leases", "change_message_visibility_batch", messages, VisibilityTimeout=seconds)

    def _batched(self, what: str, method: str, messages: Sequence[Message], **entry: Any) -> list[Message]:
        """``method`` (a ``*_batch`` SQS call) on ``messages``, ten per request and queue; those that failed."""
        failed: list[Message] = []
        for which in ("high", "normal"):
            group = [m for m in messages if m.queue == which]
            for start in range(0, len(group), SEND_BATCH):
                chunk = {str(i): m for i, m in enumerate(group[start:start + SEND_BATCH])}
                response = self._call(what, which, method, Entries=[{"Id": i, "ReceiptHandle": m.receipt_handle,
                                                                     **entry} for i, m in chunk.items()])
                failed += [chunk[f["Id"]] for f in response.get("Failed", [])]
        return failed

    def release(self, messages: Sequence[Message], delay: int = 0) -> list[Message]:
        """Give leases back so the messages can be received again after ``delay`` seconds."""
        return self.extend(messages, delay)

    def delete(self, message: Message) -> None:
        self._call("delete a message", message.queue, "delete_message", ReceiptHandle=message.receipt_handle)

    def delete_many(self, messages: Sequence[Message]) -> list[Message]:
        """Delete finished messages, ten per request (SQS bills per request); returns those that failed (they
        come back after their lease, and find their job done)."""
        return self._batched("delete messages", "delete_message_batch", messages)

    def dead_letter(self, message: Message, reason: str, error_type: str, job_id: str | None) -> None:
        """A copy of the message in the dead-letter queue, with the reason in its attributes; the caller then
        deletes the original (in that order: a crash between the two leaves a duplicate, never a loss) and may
        retry the delete alone."""
        attributes = {
            "error_reason": reason[:MAX_ATTRIBUTE],
            "error_type": error_type,
            "source_queue": self.names[message.queue],
            "receive_count": str(message.receive_count),
            # The copy is sent before the original is deleted, and a send whose answer is lost is sent again:
            # the same message can reach the DLQ twice, and this id tells such copies apart from two jobs.
            "source_message_id": message.message_id,
        }
        if job_id:
            attributes["job_id"] = job_id
        self._call("move a message to the dead-letter queue", "dlq", "send_message",
                   MessageBody=message.body or "(empty message)",
                   MessageAttributes={k: {"DataType": "String", "StringValue": v or "-"}
                                      for k, v in attributes.items()})

    # -- producing ------------------------------------------------------------------------------------

    def send(self, which: str, bodies: Iterable[str]) -> list[str]:
        """Send message bodies in batches of 10; returns the SQS message ids. :raises QueueError: if any fails."""
        ids: list[str] = []
        batch = list(bodies)
        for start in range(0, len(batch), SEND_BATCH):
            entries = [{"Id": str(i), "MessageBody": body}
                       for i, body in enumerate(batch[start:start + SEND_BATCH])]
            response = self._call("send messages", which, "send_message_batch", Entries=entries)
            if response.get("Failed"):
                reasons = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in response["Failed"])
                raise QueueError(f"{len(response['Failed'])} message(s) were not sent to "
                                 f"{self.names[which]!r}: {reasons}")
            ids += [s["MessageId"] for s in sorted(response.get("Successful", []), key=lambda s: int(s["Id"]))]
        return ids

    # -- inspecting -----------------------------------------------------------------------------------

    def counts(self, which: str) -> dict[str, int]:
        """Approximate visible, in-flight (not visible) and delayed message counts."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        attrs = self._call("read attributes", which, "get_queue_attributes", AttributeNames=names)["Attributes"]
        return {"visible": int(attrs.get(names[0], 0)), "in_flight": int(attrs.get(names[1], 0)),
                "delayed": int(attrs.get(names[2], 0))}

    def peek_dlq(self, limit: int = 100) -> list[Message]:
        """Receive dead-letter messages for a short lease (to list or redrive them)."""
        found: dict[str, Message] = {}
        while len(found) < limit:
            response = self._call("receive", "dlq", "receive_message", MaxNumberOfMessages=10,
                                  WaitTimeSeconds=0, VisibilityTimeout=30, MessageAttributeNames=["All"],
                                  MessageSystemAttributeNames=["ApproximateReceiveCount"])
            batch = response.get("Messages", [])
            if not batch:
                break
            for m in batch:
                found.setdefault(m["MessageId"], Message(
                    queue="dlq", queue_url=self.url("dlq"), message_id=m["MessageId"],
                    receipt_handle=m["ReceiptHandle"], body=m.get("Body", ""),
                    attributes={k: v.get("StringValue", "") for k, v in m.get("MessageAttributes", {}).items()}))
        return list(found.values())[:limit]

    def dlq_release(self, messages: Sequence[Message]) -> None:
        for start in range(0, len(messages), SEND_BATCH):
            chunk = messages[start:start + SEND_BATCH]
            self._call("release", "dlq", "change_message_visibility_batch",
                       Entries=[{"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                                for i, m in enumerate(chunk)])

    def dlq_delete(self, message: Message) -> None:
        self._call("delete a message", "dlq", "delete_message", ReceiptHandle=message.receipt_handle)
