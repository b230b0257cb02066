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


def test_sigterm_and_ctrl_c_stop_the_server_even_where_ctrl_c_arrived_ignored() -> None:
    import os
    import signal
    import threading

    from rayscribe.cli_serve import stop_on_signals

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job of a script inherits it
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            stop = threading.Event()
            with stop_on_signals(stop):
                os.kill(os.getpid(), sig)
                assert stop.wait(timeout=10), f"{sig.name} did not ask the server to stop"
                with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C while stopping: stop at once
                    os.kill(os.getpid(), signal.SIGINT)
                    stop.wait(timeout=10)  # the handler runs here, in the main thread
                    pytest.fail("the second Ctrl-C was not raised")
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # what was there comes back
    finally:
        signal.signal(signal.SIGINT, before)
