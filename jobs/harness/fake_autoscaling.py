"""A Ray head whose autoscaler starts *fake* GPU nodes on this machine (Ray's ``fake_multinode`` provider).

For the autoscaling test and benchmark only: ``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=...``
with a GPU worker node type; each node the autoscaler "launches" is one more raylet here, advertising logical
GPUs. The head gets its own temp dir and ports (never the machine's shared ``/tmp/ray``), and :meth:`stop` ends
only this cluster's processes: ``ray stop`` would end every Ray cluster on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from jobs.harness.multinode import write_agent_ports_ahead
from jobs.harness.ports import free_port
from jobs.harness.processes import end_processes, processes_matching

BIN = Path(sys.executable).parent


class FakeAutoscalingCluster:
    """Head with ``head_cpus`` CPUs and no GPU; up to ``max_gpu_nodes`` worker nodes of ``node_resources``."""

    def __init__(self, *, head_cpus: int = 2, node_resources: dict[str, float] | None = None,
                 max_gpu_nodes: int = 2, idle_timeout_minutes: float = 0.05, dashboard: bool = False,
                 ports_ahead: bool = False) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rs-fake-"))
        self.port = free_port()
        self.metrics_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = dashboard  # the Jobs API (`ray job submit`) and the state API need it
        # Write the agents' port files ahead (see _start_once): for the tests; the benchmark keeps Ray's own way.
        self.ports_ahead = ports_ahead
        self.dashboard_port = free_port()
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.head_cpus = head_cpus
        self._stopped = threading.Event()
        self._ports = contextlib.ExitStack()
        self.node_type = "rayscribe.gpu"
        self.config: dict[str, Any] = {
            "cluster_name": f"rs-fake-{self.port}",
            "max_workers": max_gpu_nodes,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True, "gcs_address": self.address},
            "available_node_types": {
                "ray.head.default": {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0},
                self.node_type: {
                    "resources": {"CPU": 1, "GPU": 1, "object_store_memory": 100 * 1024 * 1024,
                                  **(node_resources or {})},
                    "node_config": {}, "min_workers": 0, "max_workers": max_gpu_nodes,
                },
            },
            "head_node_type": "ray.head.default",
            "auth": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": idle_timeout_minutes, "docker": {},
            "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
            "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
            "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
            "rsync_exclude": [], "rsync_filter": [],
        }
        # Workers and the fake nodes inherit the environment of `ray start`: report metrics every second.
        self.env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                    "RAY_metrics_report_interval_ms": "1000", "RAY_raylet_start_wait_time_s": "60",
                    # a loaded machine starts the node's agent slowly; the raylet must not give up on it
                    "RAY_agent_register_timeout_ms": "180000",
                    # Serve's controller (a worker of this cluster) gives a proxy 5 s to be ready and 10 s per
                    # health check, which a loaded machine misses: it then kills the proxy it just started
                    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60"}

    def _boost_agents(self) -> None:
        """Give this cluster's node agents a head start over the machine's other work.

        Each raylet (the head's and every fake node's) waits a fixed ~15 s for its Python agent to report its
        port and aborts otherwise; on a busy 2-core machine the agent's imports alone take longer. Raising the
        agents' (and raylets') scheduling priority a little needs root; without it this does nothing. They are
        light once started, so this costs others little."""
        import psutil

        seen: set[int] = set()
        marks = ("dashboard/agent.py", "runtime_env/agent/main.py", "raylet/raylet")
        while not self._stopped.is_set():
            for proc in psutil.process_iter(["cmdline"]):
                if proc.pid in seen:
                    continue
                try:
                    cmdline = " ".join(proc.info["cmdline"] or [])
                    if str(self.temp_dir) in cmdline and any(m in cmdline for m in marks):
                        seen.add(proc.pid)
                        proc.nice(-5)
                except (psutil.Error, OSError):
                    continue
            self._stopped.wait(0.3)

    def start(self, timeout: float = 240.0, attempts: int = 3) -> float:
        """Start the head; returns the seconds it took. On a loaded machine the raylet can give up on its
        agent (it waits a fixed ~15 s for it), so a failed start is retried in a fresh temp dir."""
        started = time.monotonic()
        self._stopped.clear()
        threading.Thread(target=self._boost_agents, name="boost-agents", daemon=True).start()
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout)
                return time.monotonic() - started
            except RuntimeError:
                if attempt == attempts:
                    raise
                self.temp_dir = Path(tempfile.mkdtemp(prefix="rs-fake-"))
        raise AssertionError("unreachable")

    @property
    def config_path(self) -> Path:
        """The autoscaler's config file; rayscribe reads the node types it may launch from it when given as
        ``RAYSCRIBE_AUTOSCALING_CONFIG`` (as it reads ``~/ray_bootstrap_config.yaml`` on a `ray up` head)."""
        return self.temp_dir / "autoscaling.json"  # JSON is YAML

    def _start_once(self, timeout: float) -> None:
        # Each raylet (the head's, and every fake node's, under the same temp dir) aborts when its agents take
        # over 15 s to write their port files, which a loaded machine misses: write them ahead, for the cluster's
        # whole life (see jobs.harness.multinode).
        self._ports.close()
        if self.ports_ahead:
            self._ports.enter_context(write_agent_ports_ahead(self.temp_dir, real_ports=True))
        config = self.config_path
        config.write_text(json.dumps(self.config))
        # the drivers `ray job submit` starts inherit this environment, as on a `ray up` head
        self.env["RAYSCRIBE_AUTOSCALING_CONFIG"] = str(config)
        try:
            run = subprocess.run(
                [str(BIN / "ray"), "start", "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                 f"--num-cpus={self.head_cpus}", "--num-gpus=0",
                 f"--include-dashboard={str(self.dashboard).lower()}", "--dashboard-host=127.0.0.1",
                 f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}",
                 f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                 f"--runtime-env-agent-port={free_port()}",
                 f"--metrics-export-port={self.metrics_port}",
                 "--object-store-memory=150000000", "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
                 f"--autoscaling-config={config}"],
                capture_output=True, text=True, env=self.env, timeout=timeout,
            )
        except BaseException:
            self.stop()
            raise
        if run.returncode != 0:
            why = self._raylet_failure()
            self.stop()
            raise RuntimeError(f"ray start failed ({run.returncode}): {why}\n{run.stderr[-1500:]}")

    def _raylet_failure(self) -> str:
        """The raylet's fatal line, if it died (e.g. its agent did not report in time)."""
        for log in self.temp_dir.glob("session_*/logs/raylet.out"):
            for line in log.read_text(errors="replace").splitlines():
                if "Check failed" in line:
                    return line[line.index("Check failed"):][:300]
        return "no raylet failure logged"

    def stop(self) -> None:
        """End this cluster's processes only (found by its temp dir or its GCS port), the fake nodes included."""
        self._stopped.set()
        self._ports.close()
        end_processes(processes_matching([str(self.temp_dir), f"127.0.0.1:{self.port}"]), grace=15)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def scrape(self) -> str:
        """The head node's Prometheus metrics export."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            return str(response.read().decode())
