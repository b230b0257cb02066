"""Head + worker nodes as separate raylets on this machine (``ray.cluster_utils.Cluster``), so that a worker node
can be killed: the soak's cluster.

The head runs no tasks (0 CPUs, a custom resource for what must stay on it); each worker node gets fixed ports so
its agents' port files can be written ahead of them. Everything runs under one temp dir, so a failed start ends
exactly its own processes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobs.harness.ports import free_port
from jobs.harness.processes import kill_processes_under, processes_matching

log = logging.getLogger("rayscribe.harness")


def start_multinode(nodes: int, cpus_per_node: int, temp_dir: Path, *, head_resources: dict[str, float],
                    log_to_driver: bool = False, attempts: int = 4) -> Any:
    """A head that runs only what asks for ``head_resources``, and ``nodes`` worker nodes of ``cpus_per_node``
    CPUs each; this process joins it (``ray.init``). A start that fails (Ray gives a raylet 30 s to register,
    and its agents 15 s to come up, which a busy machine can miss) is cleaned up and tried again. Returns the
    ``Cluster`` (``shutdown()`` ends it; ``remove_node`` kills one node)."""
    import ray

    for attempt in range(1, attempts + 1):
        folder = temp_dir / f"try{attempt}"
        cluster = None
        try:
            with _lean_nodes(), write_agent_ports_ahead(folder):
                cluster = _start_nodes(nodes, folder, cpus_per_node, head_resources)
            ray.init(address=cluster.address, log_to_driver=log_to_driver)
            return cluster
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning("Ray cluster start failed (%s); trying again", str(exc).splitlines()[0])
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.shutdown()
            kill_processes_under(folder)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _lean_nodes() -> Iterator[None]:
    """Start nodes with as few Python processes as Ray allows: no dashboard web server on the head, and each
    node's dashboard agent in Ray's minimal mode (what a ``ray`` install without the dashboard extras runs). A
    raylet aborts when its agent takes over 15 s to report its ports, which on a machine loaded several times
    over its cores the full set of start-up processes makes it do; the soak and tests need none of them. Only this
    process's node start-up sees the change."""
    from unittest import mock

    import ray._private.node
    import ray._private.utils

    def no_api_server(self: Any, **_: Any) -> None:
        self._webui_url = None

    with mock.patch.object(ray._private.utils, "get_dashboard_dependency_error",
                           return_value=ImportError("harness: minimal dashboard agents")), \
            mock.patch.object(ray._private.node.Node, "start_api_server", no_api_server):
        yield


def _start_nodes(nodes: int, folder: Path, per_node: int, head_resources: dict[str, float]) -> Any:
    from ray.cluster_utils import Cluster

    head = node_args()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "resources": head_resources, "include_dashboard": False, "temp_dir": str(folder),
        "object_store_memory": 200 * 1024 * 1024, "no_monitor": True, "include_log_monitor": False, **head,
    })
    for _ in range(nodes):
        add_node(cluster, folder, per_node)
    cluster.wait_for_nodes()
    return cluster


def add_node(cluster: Any, folder: Path, cpus: int, attempts: int = 4) -> Any:
    """One worker node, tried again when its raylet gives up at start (its processes, found by the ports only
    it uses, are stopped first)."""
    for attempt in range(1, attempts + 1):
        args = node_args()
        try:
            return cluster.add_node(num_cpus=cpus, object_store_memory=100 * 1024 * 1024, **args)
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning("a worker node did not start (%s); trying again", str(exc).splitlines()[0])
            ports = [v for k, v in args.items() if k.endswith("_port")]
            for proc in processes_matching([f"={port}" for port in ports]):
                with contextlib.suppress(Exception):
                    proc.kill()
    raise AssertionError("unreachable")


def node_args() -> dict[str, Any]:
    """A node's fixed ports (its agents' port files can then be written ahead of them: see
    :func:`write_agent_ports_ahead`)."""
    return {"node_manager_port": free_port(), "runtime_env_agent_port": free_port(),
            "metrics_agent_port": free_port(), "metrics_export_port": free_port(),
            "dashboard_agent_listen_port": free_port()}


@contextlib.contextmanager
def write_agent_ports_ahead(folder: Path, real_ports: bool = False) -> Iterator[None]:
    """While nodes start under ``folder``, write each raylet's agent port files as soon as the raylet runs.

    A raylet waits at most 15 s (fixed in Ray) for its agents to write their ports to files, then aborts; a
    minimal-mode dashboard agent imports every dashboard module first, which on a machine loaded several times
    over its cores takes longer. The ports are fixed by :func:`node_args`, so the files say exactly what the
    agents write themselves (-1 for what a minimal agent does not serve): nothing changes but the wait."""
    import psutil
    from ray._raylet import (  # type: ignore[attr-defined]
        DASHBOARD_AGENT_LISTEN_PORT_NAME,
        METRICS_AGENT_PORT_NAME,
        METRICS_EXPORT_PORT_NAME,
        RUNTIME_ENV_AGENT_PORT_NAME,
        persist_port,
    )

    done = threading.Event()
    handled: set[str] = set()

    def watch() -> None:
        while not done.is_set():
            for proc in psutil.process_iter(["cmdline"]):
                with contextlib.suppress(psutil.Error, ValueError, KeyError):
                    argv = proc.info["cmdline"] or []
                    if not argv or not argv[0].endswith("raylet") or f"--temp_dir={folder}" not in argv:
                        continue
                    flags = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
                    node_id = flags["node_id"]
                    if node_id in handled:
                        continue
                    runtime_env_port = int(flags.get("runtime_env_agent_port", 0))
                    # Minimal agents serve no metrics and no HTTP (-1); full ones (``real_ports``) on their flags'
                    # ports (-1 where the agent picks its own: nothing of this harness calls it there).
                    listen = re.search(r"--listen-port=(\d+)", " ".join(argv)) if real_ports else None
                    ports = ((int(flags.get("metrics-agent-port", 0)) or -1, int(flags.get("metrics_export_port", 0))
                              or -1, int(listen.group(1)) if listen else -1) if real_ports else (-1, -1, -1))
                    for name, port in ((METRICS_AGENT_PORT_NAME, ports[0]), (METRICS_EXPORT_PORT_NAME, ports[1]),
                                       (DASHBOARD_AGENT_LISTEN_PORT_NAME, ports[2] or -1),
                                       (RUNTIME_ENV_AGENT_PORT_NAME, runtime_env_port)):
                        if port != 0:  # 0: the agent picks its port and writes it (the raylet must wait)
                            persist_port(flags["session_dir"], node_id, name, port)
                    handled.add(node_id)
            done.wait(0.2)  # polling for raylets being started

    watcher = threading.Thread(target=watch, name="harness-agent-ports", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(timeout=10)
