#!/usr/bin/env python3
"""The image's HEALTHCHECK: is this container doing its job?

- ``serve`` mode: ``GET http://127.0.0.1:$RAYSCRIBE_SERVE_PORT/health`` must answer 200 with ``"status": "ok"``
  within the timeout (``degraded``, another status, an error status or no answer: unhealthy).
- ``worker`` / ``ray`` / other modes: the entrypoint's main process must still be alive (they have no endpoint).

The entrypoint records the mode in ``$RAYSCRIBE_STATE_DIR/rayscribe-mode``; ``--url`` forces the HTTP check.
Exit 0 healthy, 1 unhealthy, with one line saying why. Standard library only, so it works even when the
application's own imports are broken.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def check_http(url: str, timeout: float) -> tuple[bool, str]:
    """(healthy, reason) for the health endpoint at ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(65536)
            code = response.status
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url} unreachable: {reason} (is `rayscribe serve` running on that port?)"
    try:
        payload = json.loads(body)
    except ValueError:
        return False, f"{url} answered HTTP {code} but not JSON"
    status = payload.get("status") if isinstance(payload, dict) else None
    if status != "ok":
        detail = ""
        if isinstance(payload, dict) and payload.get("worker_running") is False:
            detail = " (no Whisper replica running)"
        return False, f"{url} reports status {status!r}{detail}"
    return True, f"{url} ok"


def check_process(pid: int) -> tuple[bool, str]:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, f"the main process {pid} has exited"
    except PermissionError:
        pass  # it exists, owned by someone else
    return True, f"main process {pid} running"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="health URL; default http://127.0.0.1:$RAYSCRIBE_SERVE_PORT/health")
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

    if args.url is not None or mode == "serve":
        port = os.environ.get("RAYSCRIBE_SERVE_PORT", "8000")
        ok, reason = check_http(args.url or f"http://127.0.0.1:{port}/health", timeout)
    elif pid is not None:
        ok, reason = check_process(pid)
        reason = f"{mode} mode: {reason}"
    else:
        ok, reason = True, f"{mode} mode has no health endpoint"
    print(f"{'healthy' if ok else 'unhealthy'}: {reason}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
