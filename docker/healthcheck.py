#!/usr/bin/env python3
"""The image's HEALTHCHECK: is this container doing its job?

Every mode asks its health endpoint (the contract of ``rayscribe/health.py``: ``status`` healthy, degraded or
unhealthy, HTTP 200, 200 or 503):

- ``serve`` mode: ``GET http://127.0.0.1:$RAYSCRIBE_SERVE_PORT/health``;
- ``worker`` and ``ray`` modes: ``GET http://127.0.0.1:$RAYSCRIBE_HEALTH_PORT/health`` (default 8080), served by
  the queue worker itself or, for a Ray node, by the entrypoint's ``rayscribe.node_health`` beside ``ray``. With
  ``RAYSCRIBE_HEALTH_PORT=0`` (no endpoint) the entrypoint's main process must still be alive;
- other commands: the main process must still be alive.

``healthy`` and ``degraded`` pass (a degraded container still works: a restart would lose its work in flight);
``unhealthy``, another status, an error status or no answer within the timeout fail. The entrypoint records the
mode in ``$RAYSCRIBE_STATE_DIR/rayscribe-mode``; ``--url`` forces the HTTP check. Exit 0 healthy, 1 unhealthy,
with one line saying why. Standard library only, so it works even when the application's own imports are broken.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

PASSING = ("healthy", "degraded")


def _reasons(payload: Any) -> str:
    reasons = payload.get("reasons") if isinstance(payload, dict) else None
    if isinstance(payload, dict) and not reasons and payload.get("worker_running") is False:
        reasons = ["no Whisper worker running"]
    return f" ({'; '.join(str(r) for r in reasons)})" if reasons else ""


def check_http(url: str, timeout: float) -> tuple[bool, str]:
    """(healthy, reason) for the health endpoint at ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(65536)
            code = response.status
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read(65536))
        except (ValueError, OSError):
            payload = None
        status = payload.get("status") if isinstance(payload, dict) else None
        detail = f" and reports status {status!r}{_reasons(payload)}" if status else ""
        return False, f"{url} answered HTTP {exc.code}{detail}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url} unreachable: {reason} (is the container's program running and listening there?)"
    try:
        payload = json.loads(body)
    except ValueError:
        return False, f"{url} answered HTTP {code} but not JSON"
    status = payload.get("status") if isinstance(payload, dict) else None
    if status not in PASSING:
        return False, f"{url} reports status {status!r}{_reasons(payload)}"
    return True, f"{url} reports {status}{_reasons(payload)}"


def check_process(pid: int) -> tuple[bool, str]:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, f"the main process {pid} has exited"
    except PermissionError:
        pass  # it exists, owned by someone else
    return True, f"main process {pid} running"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", help="health URL; default from the mode (see above)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer (default 5)")
    args = parser.parse_args(argv)
    timeout = min(max(args.timeout, 0.1), 60.0)

    mode, pid = "serve", None
    state = Path(os.environ.get("RAYSCRIBE_STATE_DIR", "/tmp")) / "rayscribe-mode"
    if args.url is None and state.exists():
        parts = state.read_text().split()
        if parts:
            mode = parts[0]
        if len(parts) > 1 and parts[1].isdigit():
            pid = int(parts[1])

    health_port = os.environ.get("RAYSCRIBE_HEALTH_PORT", "8080") or "0"
    if args.url is not None or mode == "serve":
        port = os.environ.get("RAYSCRIBE_SERVE_PORT", "8000")
        ok, reason = check_http(args.url or f"http://127.0.0.1:{port}/health", timeout)
    elif mode in ("worker", "ray") and health_port != "0":
        ok, reason = check_http(f"http://127.0.0.1:{health_port}/health", timeout)
        reason = f"{mode} mode: {reason}"
    elif pid is not None:
        ok, reason = check_process(pid)
        reason = f"{mode} mode: {reason}"
    else:
        ok, reason = True, f"{mode} mode has no health endpoint"
    print(f"{'healthy' if ok else 'unhealthy'}: {reason}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
