"""The completion webhook: POST a job's result as JSON to the URL the job named, with retries.

Only the standard library (urllib), so the core needs no HTTP client. A webhook that keeps failing is logged and
reported to the caller as False; it never fails the job, whose outputs are already stored.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger("rayscribe.webhook")

USER_AGENT = "rayscribe-webhook/1"


def post_json(url: str, payload: dict[str, Any], *, timeout: float = 10.0, retries: int = 3,
              backoff: float = 1.0) -> bool:
    """POST ``payload``; retry on connection errors, timeouts, 429 and 5xx (``backoff`` doubling each time).
    Returns whether the server answered 2xx. Never raises."""
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return True
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break  # the receiver rejected it: retrying the same body won't help
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(getattr(exc, "reason", exc))
    log.warning("webhook %s failed after %d attempt(s): %s (the job itself is unaffected)", url, attempt + 1, last)
    return False
