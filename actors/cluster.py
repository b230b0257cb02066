"""Joining or starting the Ray cluster the actors run on."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

log = logging.getLogger("rayscribe.cluster")

# Variables the workers need from the driver's environment; a cluster started with ``ray start`` has its
# own environment, so they travel in the runtime env.
FORWARDED_PREFIXES = ("RAYSCRIBE_", "AWS_", "HF_", "PYANNOTE_", "OMP_NUM_THREADS")


def worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)}


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                num_gpus: int | None = None) -> Iterator[bool]:
    """Use the running Ray session, join ``address`` (``auto`` finds a local one), or start an embedded local
    cluster that is shut down on exit. Yields whether this call started Ray."""
    if ray.is_initialized():
        yield False
        return
    runtime_env = {"env_vars": worker_env()}
    if address:
        # Inside `ray job submit` the job's runtime env already applies; combine ours with it instead of
        # failing on a variable both name.
        os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        log.info("joined Ray cluster at %s", address)
    else:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 runtime_env=runtime_env, log_to_driver=True, configure_logging=False)
        log.info("started an embedded local Ray cluster")
    try:
        yield True
    finally:
        ray.shutdown()


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


def cluster_cpus() -> float:
    return float(ray.cluster_resources().get("CPU", 0.0))
