"""Whether the workers ask for GPUs, and how many of them to start, on a cluster whose GPUs may not exist yet.

On an autoscaling cluster (`ray up cluster.yaml`: a CPU head, GPU node types at 0 running) the GPUs present at
start are none; what counts is what the autoscaler *may* launch. An actor that asks for a GPU fraction is the
demand that makes the autoscaler start a GPU node, so the decision here follows the node types the autoscaler
may launch (read by :func:`actors.cluster.cluster_capacity` through Ray's API) as well as the GPUs up now.

Pure decisions, no Ray: the actors and the Serve app call them with what they read from the cluster.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rayscribe.errors import RayscribeError

UNBOUNDED_NODES = 1000  # a node type with no max (``-1``) counts as this many nodes


class GpuUnavailableError(RayscribeError):
    """GPUs are required (``RAYSCRIBE_DEVICE=cuda``, a hybrid pair) but none exist and none can be launched."""


@dataclass(frozen=True)
class NodeType:
    """A node type the autoscaler may launch: its resources and how many of it at most (``-1``: no limit)."""

    name: str
    resources: Mapping[str, float]
    max_count: int

    @property
    def gpus(self) -> float:
        return float(self.resources.get("GPU", 0.0))

    def describe(self) -> str:
        shown = ", ".join(f"{k} {v:g}" for k, v in sorted(self.resources.items()) if k in ("CPU", "GPU"))
        count = "no limit" if self.max_count < 0 else f"up to {self.max_count}"
        return f"{self.name} ({shown}) x {count}"


@dataclass(frozen=True)
class ClusterCapacity:
    """What the cluster has now and what its autoscaler may add. ``source`` says where the node types came from
    (Ray's cluster config in the GCS, or the autoscaler's config file), empty when no autoscaler is known."""

    gpus_now: float = 0.0
    cpus_now: float = 0.0
    gpus_per_node_now: tuple[Mapping[str, float], ...] = ()  # resources of each alive node with GPUs
    node_types: tuple[NodeType, ...] = ()
    max_nodes: int | None = None  # the autoscaler's global cap on worker nodes
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def gpu_node_types(self) -> tuple[NodeType, ...]:
        return tuple(t for t in self.node_types if t.gpus > 0 and t.max_count != 0)

    def launchable_gpus(self) -> float:
        """GPUs the autoscaler may bring up at most (the global node cap applied, largest nodes first)."""
        return _fill([(t.gpus, t.max_count) for t in self.gpu_node_types], self.max_nodes)

    def describe(self) -> str:
        """One line for messages: GPUs now and what may be launched."""
        types = "; ".join(t.describe() for t in self.gpu_node_types) or "none"
        where = f" (from {self.source})" if self.source else ""
        return f"GPUs up now: {self.gpus_now:g}; GPU node types the autoscaler may launch{where}: {types}"


def _fill(per_node: list[tuple[float, int]], max_nodes: int | None) -> float:
    """The most of something that ``max_count`` nodes of each kind hold, at most ``max_nodes`` nodes in all."""
    left = UNBOUNDED_NODES if max_nodes is None or max_nodes < 0 else max_nodes
    total = 0.0
    for amount, count in sorted(per_node, key=lambda pair: -pair[0]):
        take = min(left, UNBOUNDED_NODES if count < 0 else count)
        total += amount * take
        left -= take
        if left <= 0:
            break
    return total


def gpus_launchable(capacity: ClusterCapacity, gpu_nodes: str) -> bool:
    """Whether GPU nodes can come: ``gpu_nodes`` ``yes``/``no`` forces it, ``auto`` reads the node types."""
    if gpu_nodes == "yes":
        return True
    if gpu_nodes == "no":
        return False
    return capacity.launchable_gpus() > 0


def wants_gpu(device: str, gpu_nodes: str, capacity: ClusterCapacity, fraction: float, *,
              what: str = "RAYSCRIBE_DEVICE=cuda") -> bool:
    """Whether a worker should ask Ray for ``fraction`` of a GPU: when the device allows it and the cluster has
    GPUs or can launch them. ``cuda`` with neither is an error naming what is missing (it could never start)."""
    if device == "cpu" or fraction <= 0:
        return False
    available = capacity.gpus_now > 0 or gpus_launchable(capacity, gpu_nodes)
    if device == "cuda" and not available:
        raise GpuUnavailableError(
            f"{what} but the Ray cluster has no GPUs and its autoscaler can launch none ({capacity.describe()}); "
            "add a GPU node type to the cluster config, set RAYSCRIBE_GPU_NODES=yes if the autoscaler can "
            "launch GPU nodes rayscribe cannot see, or use RAYSCRIBE_DEVICE=auto or cpu")
    return available


def fits(node: Mapping[str, float], demand: Mapping[str, float]) -> int:
    """How many actors asking ``demand`` one node of ``node`` resources holds."""
    counts = [math.floor(float(node.get(k, 0.0)) / v + 1e-9) for k, v in demand.items() if v > 0]
    return max(0, min(counts)) if counts else 0


def gpu_slots(capacity: ClusterCapacity, demand: Mapping[str, float], gpu_nodes: str = "auto") -> int:
    """How many actors asking ``demand`` (CPU and GPU) the cluster holds at its largest: on the GPU nodes up now,
    or on the nodes the autoscaler may launch (the global node cap applied), whichever is more."""
    now = sum(fits(node, demand) for node in capacity.gpus_per_node_now)
    launch = 0
    if gpu_nodes != "no":
        launch = int(_fill([(fits(t.resources, demand), t.max_count) for t in capacity.gpu_node_types],
                           capacity.max_nodes))
    return max(now, launch)


def bounded_workers(slots: int, work: int | None) -> int:
    """The automatic worker count: what the cluster holds, never more than the work (files, pieces, jobs)."""
    count = slots if work is None else min(slots, max(1, work))
    return max(1, count)


def work_units(durations: Iterable[float | None], split_seconds: float, piece_seconds: float) -> int:
    """Pieces of work a batch has: one per file, a long file (over ``split_seconds``) one per piece."""
    units = 0
    for duration in durations:
        if split_seconds > 0 and duration is not None and duration > split_seconds:
            units += max(1, math.ceil(duration / piece_seconds))
        else:
            units += 1
    return units


def node_types_from_config(config: Mapping[str, object]) -> tuple[tuple[NodeType, ...], int | None]:
    """The worker node types of a Ray cluster launcher config (``available_node_types`` less the head's) and its
    global ``max_workers``: what the autoscaler started with ``--autoscaling-config`` may launch."""
    types = config.get("available_node_types")
    if not isinstance(types, Mapping):
        return (), None
    head = config.get("head_node_type")
    cap = config.get("max_workers")
    max_nodes = int(cap) if isinstance(cap, int | float) else None
    found = []
    for name, spec in types.items():
        if name == head or not isinstance(spec, Mapping):
            continue
        resources = spec.get("resources")
        if not isinstance(resources, Mapping):
            continue
        count = spec.get("max_workers", max_nodes if max_nodes is not None else -1)
        found.append(NodeType(str(name), {str(k): float(v) for k, v in resources.items()
                                          if isinstance(v, int | float)}, int(count)))
    return tuple(found), max_nodes
