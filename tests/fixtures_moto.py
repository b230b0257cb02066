"""A local AWS stand-in for the queue tests: moto in server mode on 127.0.0.1 (jobs/harness/moto.py), started once
per session.

The server is a separate process (``moto_server``), so it serves this process, the ``rayscribe`` subprocesses and
Ray workers alike through the standard ``AWS_ENDPOINT_URL``; nothing in production code knows about it.
``moto`` resets its state before a test; ``queue_names`` gives a test its own queue and bucket names instead, for
module-scoped set-ups that must survive other tests' resets.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobs.harness.env import AWS_ENV, patched_environ
from jobs.harness.moto import MotoServer, MotoStartError, start_moto, unique_queue_env

__all__ = ["AWS_ENV", "MotoServer", "moto", "moto_server", "queue_names", "unique_queue_env"]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto on a free loopback port; ``AWS_*`` set for this process and everything it starts."""
    try:
        server = start_moto()
    except MotoStartError as exc:
        pytest.fail(str(exc))
    try:
        with patched_environ(server.env()):
            yield server
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server: MotoServer) -> MotoServer:
    """The session's moto server with its state reset."""
    moto_server.reset()
    return moto_server


@pytest.fixture
def queue_names(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fresh queue and bucket names, set in this process's environment for the test."""
    names = unique_queue_env()
    for key, value in names.items():
        monkeypatch.setenv(key, value)
    return names
