"""Logging set-up shared by the CLI, the workers and the jobs."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Send rayscribe's log lines to stderr at ``level``; quiet the chatty libraries."""
    root = logging.getLogger("rayscribe")
    if not any(getattr(h, "_rayscribe", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._rayscribe = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
