"""How ``rayscribe serve`` stops: the signal handling and the stop choice in-process, and a real server
process on its default proxy stopped with SIGTERM (with HAProxy and Ctrl-C: tests/test_serve_proxy.py)."""

from __future__ import annotations

from typing import Any

import pytest

from serve.run import _stop_serve


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

    from serve.run import stop_on_signals

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


def test_sigterm_stops_a_real_server_cleanly(tmp_path) -> None:
    """``docker stop`` and systemd send SIGTERM; ray.init installs a handler of its own for it (``sys.exit``),
    which ``rayscribe serve`` replaces so the application is shut down before the cluster goes."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    from tests.conftest import free_port
    from tests.fixtures_serve import wait_for_health
    from tests.speech import REPO

    port = free_port()
    env = {**os.environ, "RAYSCRIBE_SERVE_PORT": str(port), "RAYSCRIBE_CPU_THREADS": "1",
           "RAYSCRIBE_MAX_REPLICAS": "1", "RAYSCRIBE_RAY_ADDRESS": "", "RAYSCRIBE_SERVE_PROXY": "serve"}
    env.pop("RAY_ADDRESS", None)
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "rayscribe"), "serve"], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_health(f"http://127.0.0.1:{port}", timeout=240)
            deadline = time.monotonic() + 30  # the start-up line comes just after the app answers
            while "Ctrl-C to stop" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)  # polling interval
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == 0, log_path.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log_path.read_text()
    assert "stopping" in output and "SIGTERM received" not in output and "Traceback" not in output, output[-3000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
