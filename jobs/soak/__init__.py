"""Soak test of the queue path: hundreds of SQS jobs through the ingest actor while faults are injected.

    python -m jobs.soak --jobs 500 --workers 16 [--speed 2] [--json bench-results/soak.json]

What runs: moto in server mode for SQS and S3, behind the harness's fault proxy, which can go dark (the endpoint
outage); a Ray cluster of one head and ``--nodes`` worker nodes started on this machine
(``ray.cluster_utils.Cluster``: separate raylets, so a node can be killed); the real
:class:`jobs.worker.IngestActor` with a pool of ``--workers`` Whisper workers on the simulated engine
(``RAYSCRIBE_BACKEND=simulated``: real decoding, then a sleep of audio length / ``--speed`` in place of GPU time,
and real output files), and ``--spares`` warm standby workers (``RAYSCRIBE_SPARE_WORKERS``) that take a dead
worker's place. The feeder starts once the loop receives and the standbys are up, so the drain window measures
running, not starting.

What it injects while a feeder keeps the queue backlog small (moto slows down with hundreds of waiting messages):
``--actor-kills`` ``ray.kill`` of Whisper workers, one worker node killed, one SQS/S3 outage of
``--outage-seconds`` (connections cut and refused; moto keeps its state, as AWS does when its endpoint is
unreachable, so the check needs no bookkeeping on the driver's side), ``--malformed`` malformed messages and
``--corrupt`` jobs whose audio is corrupt. Each fault fires when a set fraction of the jobs has been sent.

What it checks, from S3 and the queues alone once both queues are empty: every good job has exactly one complete
set of outputs (every format, metrics, one done marker), every bad one is in the dead-letter queue or has an error
record with its reason, nothing is left in flight, no stray objects. The drain rate (good jobs per second from the
first send to the last finished job) is compared with the ideal, workers x speed / mean audio seconds per job.
A rich table goes to the terminal and the figures to ``--json``; the exit code is 1 when a job was lost or
duplicated, a failure is unexplained or something was left in flight.
"""

from jobs.soak.checks import check
from jobs.soak.config import Entry, Fault, SoakConfig
from jobs.soak.inputs import build_entries, corrupt_inputs, good_clips, malformed_bodies
from jobs.soak.report import busy_per_bucket, summarise
from jobs.soak.run import run_soak

__all__ = ["Entry", "Fault", "SoakConfig", "build_entries", "busy_per_bucket", "check", "corrupt_inputs",
           "good_clips", "malformed_bodies", "run_soak", "summarise"]
