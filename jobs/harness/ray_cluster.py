"""Local Ray clusters for the tests and benchmarks: a ``ray start`` head that other processes join, and an
embedded ``ray.init`` cluster owned by this process (logical GPUs on request).

Both get their own temp dir and ports, never the machine's shared ``/tmp/ray``, and end only their own processes.
For a head whose autoscaler starts fake GPU nodes see :mod:`jobs.harness.fake_autoscaling`; for separate worker
raylets (a node that can be killed) see :mod:`jobs.harness.multinode`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobs.harness.ports import free_port
from jobs.harness.processes import end_processes, processes_matching

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


class RayHead:
    """A local Ray head started with ``ray start`` (start-up costs ~8 s): the tests' session cluster, which
    ``rayscribe`` subprocesses and this process join by :attr:`address`."""

    def __init__(self, *, num_cpus: int = 2, num_gpus: int = 0, dashboard: bool = True) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rs-ray-"))
        self.port = free_port()
        self.dashboard_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.num_cpus, self.num_gpus, self.dashboard = num_cpus, num_gpus, dashboard
        self.metrics_port = free_port()  # the head's Prometheus export (``/metrics``), for tests of the gauges

    def start(self) -> None:
        subprocess.run(
            [str(BIN / "ray"), "start", "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
             f"--include-dashboard={str(self.dashboard).lower()}", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={self.dashboard_port}", f"--num-cpus={self.num_cpus}",
             f"--num-gpus={self.num_gpus}", "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
             f"--metrics-export-port={self.metrics_port}",
             # every port free, not Ray's fixed defaults: another head (a second pytest worker's) may run beside it
             f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
             f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}"],
            check=True, capture_output=True, text=True, cwd=REPO, env={**os.environ}, timeout=180,
        )

    def stop(self) -> None:
        """Stop this cluster's processes only (``ray stop`` would stop every Ray cluster on the machine)."""
        end_processes([*processes_matching([str(self.temp_dir)]),
                       *processes_matching([f":{self.port}"], also="ray")], grace=20)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_head(attempts: int = 3, **options: Any) -> RayHead:
    """A started :class:`RayHead`; on a loaded machine the dashboard can miss its start-up deadline, so a failed
    start is cleaned up (a half-started GCS or dashboard would outlive the caller) and tried again."""
    for attempt in range(1, attempts + 1):
        head = RayHead(**options)
        try:
            head.start()
            return head
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            head.stop()
            if attempt == attempts:
                raise RuntimeError(f"ray start failed {attempts} times; last:\n{exc.stdout!s}\n{exc.stderr!s}") from exc
    raise AssertionError("unreachable")


@contextlib.contextmanager
def embedded_ray(num_cpus: int, *, num_gpus: int = 0, address: str | None = None, temp_dir: Path | None = None,
                 runtime_env: dict[str, Any] | None = None, attempts: int = 3,
                 log_to_driver: bool = False) -> Iterator[float]:
    """Join ``address``, or start an embedded cluster of ``num_cpus`` CPUs and ``num_gpus`` (logical) GPUs in
    ``temp_dir`` (a fresh one, removed afterwards, when not given); yields its start-up seconds.

    Ray gives a new node 30 s (fixed) to register; on a busy machine that can run out, so the embedded
    cluster is tried again after ending the processes the failed try started."""
    import ray

    from actors.cluster import end_children

    own_dir = temp_dir is None
    folder = Path(tempfile.mkdtemp(prefix="rs-ray-")) if temp_dir is None else temp_dir
    started = time.perf_counter()
    try:
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            try:
                if address:
                    ray.init(address=address, runtime_env=runtime_env, log_to_driver=log_to_driver)
                else:
                    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                             runtime_env=runtime_env, log_to_driver=log_to_driver, configure_logging=False,
                             _temp_dir=str(folder / f"try{attempt}"))
                break
            except Exception as exc:
                if address or attempt == attempts or "timed out during startup" not in str(exc):
                    raise
                print(f"Ray start-up try {attempt} failed ({exc}); trying again", flush=True)
                ray.shutdown()
                end_children()  # only what this process started
        try:
            yield time.perf_counter() - started
        finally:
            ray.shutdown()
    finally:
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)
