"""Finding and ending the processes one harness cluster started, and only those.

``ray stop`` would end every Ray cluster on the machine, other engineers' and other test sessions' included; the
harness finds its own processes by what only their command lines hold (a temp dir, a port).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any


def processes_matching(fragments: list[str], *, also: str = "") -> list[Any]:
    """Other processes whose command line holds one of ``fragments`` (and ``also``, when given), and their
    descendants: Ray's agents retitle themselves (``ray::DashboardAgent``), so their command lines no longer name
    the cluster, and ending only the raylet left them running, orphaned."""
    import psutil

    mine: dict[int, Any] = {}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.pid != os.getpid() and any(f in cmdline for f in fragments) and also in cmdline:
                mine[proc.pid] = proc
    for proc in list(mine.values()):
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                if child.pid != os.getpid():
                    mine.setdefault(child.pid, child)
    return list(mine.values())


def processes_under(folder: Path) -> list[Any]:
    """The processes whose command line names ``folder`` (a cluster's temp dir): that cluster's Ray processes."""
    return processes_matching([str(folder)])


def end_processes(procs: list[Any], grace: float = 15.0) -> None:
    """SIGTERM ``procs``, then SIGKILL those still alive after ``grace`` seconds."""
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def kill_processes_under(folder: Path) -> None:
    """SIGKILL a half-started cluster's processes, and only those."""
    import psutil

    mine = processes_under(folder)
    for proc in mine:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(mine, timeout=10)


def timed_command(argv: list[str], env: dict[str, str], log: Path, ok_codes: tuple[int, ...] = (0,),
                  timeout: float = 3600) -> float:
    """Run one whole command as a user does (its output to ``log``); its wall seconds, start-up included. Raises
    with the log's tail when it exits with a code outside ``ok_codes``."""
    import subprocess
    import time

    with log.open("w") as handle:
        started = time.perf_counter()
        run = subprocess.run(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout)
        wall = time.perf_counter() - started
    if run.returncode not in ok_codes:
        raise RuntimeError(f"{' '.join(argv[:3])} exited {run.returncode}; see {log}:\n{log.read_text()[-2000:]}")
    return wall
