"""The queue worker's loop: SQS in, the Whisper pool, S3 out (the actor that runs it in a cluster is
``jobs.worker.IngestActor``, built by the same composition root as ``rayscribe worker``)."""

from actors.ingest.loop import IngestLoop

__all__ = ["IngestLoop"]
