"""Joining or starting the Ray cluster the actors run on, and checking a cluster config with Ray's own validation
(the Ray half of :mod:`rayscribe.cluster.config_file`, which stays Ray-free)."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray

from actors.join import check_address
from rayscribe.cluster.config_file import Problem, check_schema, find_problems
from rayscribe.config.aws import apply_aws_env
from rayscribe.errors import RayscribeError
from rayscribe.gpu_demand import ClusterCapacity, NodeType, node_types_from_config, wants_gpu

log = logging.getLogger("rayscribe.cluster")

# Variables the workers need from the driver's environment; a cluster started with ``ray start`` has its
# own environment, so they travel in the runtime env.
START_ATTEMPTS = 3
FORWARDED_PREFIXES = ("RAYSCRIBE_", "AWS_", "HF_", "PYANNOTE_", "OMP_NUM_THREADS")


def worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)}


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
                log_to_driver: bool = True, connect_timeout: float | None = None) -> Iterator[bool]:
    """Use the running Ray session, join ``address`` (``auto`` finds a local one), or start an embedded local
    cluster that is shut down on exit. Yields whether this call started Ray. ``log_to_driver=False`` keeps the
    actors' log lines in Ray's log files (``/tmp/ray/session_latest/logs``) instead of this process's output,
    where they would interleave with what a command prints for people.

    Before joining, :func:`actors.join.check_address` asks the GCS at ``address`` within ``connect_timeout``
    seconds (default ``RAYSCRIBE_RAY_CONNECT_TIMEOUT``), so a wrong address is one
    :class:`~actors.join.ClusterUnreachable` line instead of minutes of Ray's connection warnings."""
    if ray.is_initialized():
        yield False
        return
    apply_aws_env()  # .env's AWS_* values travel to the workers with the rest (the environment wins)
    runtime_env = {"env_vars": worker_env()}
    if address:
        # Inside `ray job submit` the job's runtime env already applies; combine ours with it instead of
        # failing on a variable both name.
        os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
        check_address(address, _connect_timeout(connect_timeout))
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=log_to_driver)
        log.info("joined Ray cluster at %s", address)
    else:
        _start_embedded(runtime_env, num_cpus, num_gpus, log_to_driver)
    try:
        yield True
    finally:
        ray.shutdown()


def _connect_timeout(given: float | None) -> float:
    if given is not None:
        return given
    from rayscribe.config.settings import load_settings

    return load_settings().ray_connect_timeout


def _start_embedded(runtime_env: dict, num_cpus: int | None, num_gpus: int | None,
                    log_to_driver: bool = True) -> None:
    """Start a local cluster. Ray gives its processes a fixed time to come up, which a busy machine can miss:
    then end what the failed try started and try again, and in the end say so plainly instead of a traceback."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     runtime_env=runtime_env, log_to_driver=log_to_driver, configure_logging=False)
            log.info("started an embedded local Ray cluster")
            return
        except Exception as exc:
            if "timed out during startup" not in str(exc) and "failed to start" not in str(exc):
                raise
            ray.shutdown()
            end_children()
            if attempt == START_ATTEMPTS:
                raise RayscribeError(
                    f"could not start an embedded Ray cluster ({START_ATTEMPTS} tries; last: {exc}); the machine "
                    f"is probably overloaded: try again, or start one with `ray start --head` and pass "
                    f"--address auto") from None
            log.warning("embedded Ray did not start in time (try %d of %d); trying again", attempt,
                        START_ATTEMPTS)


def end_children() -> None:
    """End the processes this process started (a failed Ray start leaves some behind); never anyone else's."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=10)


def actor_identity(engine_description: dict[str, Any]) -> dict[str, Any]:
    """What a worker actor reports about itself: its engine, node, process and GPU ids."""
    return {
        **engine_description,
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
    }


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


def cluster_cpus() -> float:
    return float(ray.cluster_resources().get("CPU", 0.0))


# -- GPU demand: what the cluster has and what its autoscaler may launch ------------------------------------------

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # what `ray up` leaves on the head (the v1 autoscaler reads it)


def cluster_capacity(autoscaling_config: str | None = None) -> ClusterCapacity:
    """The GPUs (and CPUs) up now and the node types the autoscaler may launch.

    Node types come from Ray's own cluster config in the GCS (``ray._private.state.state.get_cluster_config``,
    which Ray Data and Train read too; the v2 autoscaler and KubeRay report it), else from the autoscaler's
    config file: ``autoscaling_config`` (``RAYSCRIBE_AUTOSCALING_CONFIG``) or ``~/ray_bootstrap_config.yaml``.
    """
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    gpu_nodes = tuple(dict(n["Resources"]) for n in nodes if n["Resources"].get("GPU", 0) > 0)
    resources = ray.cluster_resources()
    types, max_nodes, source, notes = _node_types(autoscaling_config)
    return ClusterCapacity(gpus_now=float(resources.get("GPU", 0.0)), cpus_now=float(resources.get("CPU", 0.0)),
                           gpus_per_node_now=gpu_nodes, node_types=types, max_nodes=max_nodes, source=source,
                           notes=notes)


def _node_types(path: str | None) -> tuple[tuple[NodeType, ...], int | None, str, list[str]]:
    notes: list[str] = []
    try:
        config = ray._private.state.state.get_cluster_config()
    except Exception as exc:  # an older or newer Ray without it: fall back to the file
        config = None
        notes.append(f"Ray's cluster config unreadable: {exc}")
    if config is not None and config.node_group_configs:
        types = tuple(NodeType(g.name, {k: float(v) for k, v in g.resources.items()}, int(g.max_count))
                      for g in config.node_group_configs)
        return types, None, "Ray's cluster config", notes
    file = Path(os.path.expanduser(path or BOOTSTRAP_CONFIG))
    if not file.is_file():
        if path:
            notes.append(f"RAYSCRIBE_AUTOSCALING_CONFIG={path} does not exist")
        return (), None, "", notes
    try:
        import yaml

        loaded = yaml.safe_load(file.read_text())
    except (OSError, ValueError) as exc:
        notes.append(f"cannot read {file}: {exc}")
        return (), None, "", notes
    types, max_nodes = node_types_from_config(loaded if isinstance(loaded, dict) else {})
    return types, max_nodes, str(file) if types else "", notes


def gpu_wanted(device: str, gpu_nodes: str, fraction: float, *, autoscaling_config: str | None = None,
               what: str = "RAYSCRIBE_DEVICE=cuda") -> bool:
    """Whether an actor or replica asking ``fraction`` of a GPU should ask for it on this cluster (see
    :func:`rayscribe.gpu_demand.wants_gpu`); False when Ray is not running."""
    if device == "cpu" or fraction <= 0 or not ray.is_initialized():
        return False
    return wants_gpu(device, gpu_nodes, cluster_capacity(autoscaling_config), fraction, what=what)


# -- cluster config checks (``rayscribe cluster render|validate``) ------------------------------------------------


def check_config(config: dict[str, Any]) -> list[Problem]:
    """Every problem found in a cluster config, offline, with Ray's schema and validation; an empty list means
    ``ray up`` should accept it."""
    return find_problems(config, copy.deepcopy(ray_schema()), validate_with_ray)


@functools.lru_cache(maxsize=1)
def ray_schema() -> dict[str, Any]:
    """Ray's JSON schema of a cluster config (``ray-schema.json`` in the installed Ray)."""
    from pathlib import Path

    import ray.autoscaler

    return dict(json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text()))


def validate_with_ray(config: dict[str, Any], schema: dict[str, Any]) -> list[Problem]:
    """Ray's own preparation (defaults merged from the provider's local defaults.yaml) and validation."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    logging.getLogger("ray.autoscaler._private.util").setLevel(logging.WARNING)  # it logs each default it fills
    try:
        prepared = prepare_config(copy.deepcopy(config))
    except Exception as exc:  # Ray's messages are asserts and KeyErrors; give them a place and a name
        return [Problem("", f"Ray cannot prepare this config: {type(exc).__name__}: {exc}")]
    problems = check_schema(prepared, schema)
    if problems:
        return problems
    try:
        validate_config(prepared)
    except (ValueError, RuntimeError, jsonschema.ValidationError) as exc:
        problems.append(Problem("", f"Ray rejects it: {getattr(exc, 'message', None) or exc}"))
    return problems
