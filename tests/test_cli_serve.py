"""How ``rayscribe serve`` stops what it started (the whole command runs in tests/test_serve_proxy.py)."""

from __future__ import annotations

from typing import Any

import pytest

from rayscribe.cli_serve import _stop_serve


class _RecordingServe:
    """Stands in for ``ray.serve`` so the choice between shutting Serve down and deleting one app is observable;
    ``delete_times_out`` makes ``delete`` raise as Serve does when the controller does not confirm in 60 s."""

    def __init__(self, delete_times_out: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.delete_times_out = delete_times_out

    def shutdown(self) -> None:
        self.calls.append(("shutdown", None))

    def delete(self, name: str) -> None:
        self.calls.append(("delete", name))
        if self.delete_times_out:
            raise TimeoutError(f"Some of these applications weren't deleted after 60s: [{name!r}]")


def test_an_embedded_cluster_gets_serve_shut_down_whole() -> None:
    serve = _RecordingServe()
    _stop_serve(serve, "rayscribe", embedded=True)
    assert serve.calls == [("shutdown", None)]  # stops the proxies (and HAProxy) too, in bounded time


def test_a_joined_cluster_loses_only_this_application() -> None:
    serve = _RecordingServe()
    _stop_serve(serve, "rayscribe", embedded=False)
    assert serve.calls == [("delete", "rayscribe")]  # other apps and Serve itself stay up


def test_a_slow_cluster_gets_a_note_instead_of_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    serve = _RecordingServe(delete_times_out=True)
    _stop_serve(serve, "rayscribe", embedded=False)
    err = capsys.readouterr().err
    assert "has not confirmed the deletion of the 'rayscribe' application" in err and "serve status" in err
    assert "Traceback" not in err
