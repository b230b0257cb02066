"""The health endpoint of a container in ``ray`` mode (a Ray head or worker node, ``docker/entrypoint.sh ray ...``).

The entrypoint starts it in the background before it hands the container to ``ray start --block``; it answers
``GET /health`` on ``RAYSCRIBE_HEALTH_PORT`` in the contract of :mod:`rayscribe.health`: ``healthy`` while the main
process (``ray start``) and this node's raylet run, ``unhealthy`` (503) once either is gone. It reads ``/proc``
only (standard library, no Ray import): a health check must not depend on what it checks.

    python -m rayscribe.node_health --pid 1 --port 8080
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rayscribe.health import HealthServer, Observation, report

PROC = Path("/proc")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def processes_named(name: str) -> list[int]:
    """Pids of the live processes whose command name is ``name`` (e.g. ``raylet``)."""
    found = []
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name and pid_alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def gpu_present() -> bool:
    """An NVIDIA device node in this container (what Ray's GPU detection finds too)."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


class NodeHealth:
    """``GET /health`` of a Ray node container: its main process and its raylet."""

    def __init__(self, main_pid: int, daemon: str = "raylet") -> None:
        self.main_pid = main_pid
        self.daemon = daemon  # the process that makes this a Ray node
        self.started = time.time()

    def __call__(self) -> dict[str, Any]:
        daemons = processes_named(self.daemon)
        main = pid_alive(self.main_pid)
        seen = Observation(running=main, workers_wanted=1, workers_up=1 if daemons else 0, worker_label=self.daemon)
        return report(seen, mode="ray", started=self.started, gpu_available=gpu_present(),
                      main_process={"pid": self.main_pid, "running": main}, raylets=daemons)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Health endpoint of a rayscribe container in ray mode.")
    parser.add_argument("--pid", type=int, required=True, help="the container's main process (ray start)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("RAYSCRIBE_HEALTH_PORT", "8080") or 0))
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args(argv)
    if args.port <= 0:
        return 0
    try:
        server = HealthServer(NodeHealth(args.pid), args.port, host=args.host, mode="ray")
    except OSError as exc:
        print(f"rayscribe node health: cannot listen on port {args.port}: {exc.strerror or exc}; set "
              f"RAYSCRIBE_HEALTH_PORT to a free port, or 0 to turn it off", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with server:
        while not done.wait(1.0):
            if not pid_alive(args.pid):
                break  # the container is ending with its main process; the check then finds no answer
    return 0


if __name__ == "__main__":
    sys.exit(main())
