"""The HTTP path's composition root, :func:`run_server`: what ``rayscribe serve`` runs, from the Ray session to the
stop, in one place (the CLI only parses its flags and prints).

An embedded cluster is the command's own: it may switch the proxy to HAProxy before the cluster starts, and on
the way out Serve is shut down whole. A joined cluster keeps its proxy and loses only the rayscribe application.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rayscribe.config.serve import ServeSettings
from rayscribe.config.settings import Settings
from rayscribe.errors import RayscribeError


class ServeStartError(RayscribeError):
    """Ray Serve or the rayscribe application did not start; the message says where to look."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on the first SIGINT (Ctrl-C) or SIGTERM (``docker stop``, systemd, ``kill``), so the server
    shuts down cleanly either way; a second Ctrl-C while it stops raises KeyboardInterrupt as usual. The handlers
    are installed even where SIGINT arrives ignored (a process started in the background by a non-interactive
    shell inherits that), as uvicorn does; the previous ones come back on exit."""

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous: dict[signal.Signals, Callable | int | None] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _stop_serve(serve: Any, app_name: str, embedded: bool, say: Callable[[str], None] = _say) -> None:
    """Stop what ``rayscribe serve`` started, in bounded time. On its own embedded cluster it shuts Serve down
    whole: the proxies stop their HAProxy on the way, and Serve bounds the wait (30 s) where deleting one app
    would poll the controller for up to a minute. On a shared cluster it deletes only its own application and
    says so when the cluster is too slow to confirm it."""
    if embedded:
        serve.shutdown()
        return
    try:
        serve.delete(app_name)
    except TimeoutError:
        say(f"note: the cluster has not confirmed the deletion of the {app_name!r} application yet; "
            "`serve status` shows when it is gone")


def run_server(settings: Settings, serve_settings: ServeSettings, *, verbose: bool = True,
               stop: threading.Event | None = None, say: Callable[[str], None] = _say) -> None:
    """Serve the HTTP API on ``settings.ray_address`` (or an embedded cluster) until SIGINT/SIGTERM or ``stop``
    is set, then stop it. ``say`` gets the lines meant for the person who started it; failures to start raise
    :class:`ServeStartError`. ``verbose=False`` keeps the replicas' log lines in Ray's log files."""
    from ray import serve
    from ray.exceptions import RayError
    from ray.serve.exceptions import RayServeException

    from actors.cluster import ray_session
    from serve.app import APP_NAME, build_app
    from serve.proxy import front_label, haproxy_on, use_haproxy

    embedded = not settings.ray_address  # an embedded cluster is this command's own
    if serve_settings.serve_proxy == "haproxy":
        if embedded:
            use_haproxy()  # read by the embedded cluster's processes as they start
        elif not haproxy_on():
            say("note: RAYSCRIBE_SERVE_PROXY=haproxy applies to an embedded cluster; the cluster at "
                f"{settings.ray_address!r} keeps the proxy it was started with (start it with "
                "RAY_SERVE_ENABLE_HA_PROXY=1 and RAY_SERVE_THROUGHPUT_OPTIMIZED=1 for HAProxy)")
    stop = stop if stop is not None else threading.Event()
    # After ray_session: ray.init installs its own SIGTERM handler (sys.exit), which ours replaces.
    with ray_session(settings.ray_address, log_to_driver=verbose), stop_on_signals(stop):
        proxy = front_label()
        try:
            serve.start(http_options={"host": serve_settings.serve_host, "port": serve_settings.serve_port})
        except (RayError, TimeoutError) as exc:
            raise ServeStartError(
                f"Ray Serve's HTTP proxy ({proxy}) did not start on {serve_settings.serve_host}:"
                f"{serve_settings.serve_port}: {str(exc).splitlines()[0]} Check that the port is free and the "
                "machine not overloaded; the Ray logs (/tmp/ray/session_latest/logs) say more.") from None
        try:
            serve.run(build_app(settings, serve_settings), name=APP_NAME, route_prefix="/")
        except (RayError, RayServeException, TimeoutError) as exc:
            _stop_serve(serve, APP_NAME, embedded, say)
            raise ServeStartError(f"the rayscribe application did not start: {str(exc).splitlines()[0]} The Ray "
                                  "logs (/tmp/ray/session_latest/logs/serve) say more.") from None
        keys = "API key required" if serve_settings.key_list() else "no API key"
        say(f"rayscribe HTTP API on http://{serve_settings.serve_host}:{serve_settings.serve_port} ({keys}, "
            f"{proxy}); Ctrl-C to stop")
        try:
            stop.wait()
            say("stopping")
        finally:
            _stop_serve(serve, APP_NAME, embedded, say)
