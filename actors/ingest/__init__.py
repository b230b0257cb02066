"""The queue worker: the ingest loop (SQS in, the Whisper pool, S3 out) and the actor that runs it in a cluster."""

from actors.ingest.actor import IngestActor
from actors.ingest.loop import IngestLoop

__all__ = ["IngestActor", "IngestLoop"]
