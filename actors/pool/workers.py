"""The pool's vocabulary: a worker's slot, a call sent to it (a ticket) and what comes back (a completion)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rayscribe.errors import RayscribeError
from rayscribe.work import ItemResult, WorkItem

MAX_ATTEMPTS = 2  # the batch path: the first try and one retry
WORKER_START_TIMEOUT = 900.0  # a new GPU node may have to boot and load a model first
ARRIVAL_CHECK = 0.05  # while waiting on Ray, how often the pool looks at its caller's interrupt


class PoolError(RayscribeError):
    """The pool cannot run at all (no worker could start, or workers keep dying); the message says why."""


@dataclass(eq=False)
class WorkerSlot:
    """A place for one worker: the actor in it now (a replacement takes a dead one's slot), its identity, and the
    calls it holds. Read it; only the pool changes it."""

    handle: Any
    inflight: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    ready: bool = True  # False while a replacement worker starts in this slot (it is sent no work until then)


@dataclass(eq=False)
class Ticket:
    """One call sent to a worker (or, for a long file, to the split coordinator). ``tag`` is the caller's."""

    items: list[WorkItem]
    ref: Any
    slot: WorkerSlot
    handle: Any  # the worker it went to (the slot may hold a replacement by the time it ends)
    split: bool
    sent_at: float
    tag: Any = None


@dataclass
class Completion:
    """A call handed back: its results, or why it failed. ``worker_lost``: the worker (or the split coordinator,
    ``coordinator``) died or stopped answering; the pool has replaced it, and the caller decides whether to send the
    files again."""

    ticket: Ticket
    results: list[ItemResult] | None = None
    error: str = ""
    worker_lost: bool = False
    coordinator: bool = False


def root_cause(exc: BaseException) -> str:
    """Ray's actor errors run to dozens of lines; the last line of the cause says what happened."""
    cause = getattr(exc, "cause", None) or getattr(exc, "error_msg", None)
    text = str(cause or exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
