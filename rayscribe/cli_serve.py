"""``rayscribe serve``: run the HTTP API on an embedded local Ray or on a given cluster until Ctrl-C.

Kept apart from :mod:`rayscribe.cli` and registered with :func:`register`, so the HTTP command's imports
(Ray, Ray Serve, FastAPI) load only when it runs.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from rayscribe.errors import RayscribeError

console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


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


def _stop_serve(serve: Any, app_name: str, embedded: bool) -> None:
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
        console.print(f"note: the cluster has not confirmed the deletion of the {app_name!r} application yet; "
                      "`serve status` shows when it is gone", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""

    @app.command("serve")
    def serve_command(
        address: str | None = typer.Option(
            None, "--address", help="Ray cluster to join ('auto' for a running local one); default: "
            "RAYSCRIBE_RAY_ADDRESS, else start an embedded local cluster."),
        host: str | None = typer.Option(None, "--host", help="Listen address; default RAYSCRIBE_SERVE_HOST "
                                        "(127.0.0.1)."),
        port: int | None = typer.Option(None, "--port", help="Listen port; default RAYSCRIBE_SERVE_PORT (8000)."),
        print_config: bool = typer.Option(False, "--print-config",
                                          help="Print the `serve deploy` config for these settings and exit."),
    ) -> None:
        """Serve the OpenAI-compatible HTTP API (POST /v1/audio/transcriptions) until Ctrl-C."""
        from rayscribe.config.serve import load_serve_settings
        from rayscribe.config.settings import load_settings
        from rayscribe.logs import configure_logging

        try:
            settings = load_settings(ray_address=address)
            serve_settings = load_serve_settings(serve_host=host, serve_port=port)
        except RayscribeError as exc:
            raise _fail(str(exc)) from None
        if print_config:
            import yaml

            from serve.app import serve_config

            typer.echo(yaml.safe_dump(serve_config(serve_settings), sort_keys=False).rstrip("\n"))
            return
        configure_logging(settings.log_level)
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
                console.print("note: RAYSCRIBE_SERVE_PROXY=haproxy applies to an embedded cluster; the cluster at "
                              f"{settings.ray_address!r} keeps the proxy it was started with (start it with "
                              "RAY_SERVE_ENABLE_HA_PROXY=1 and RAY_SERVE_THROUGHPUT_OPTIMIZED=1 for HAProxy)",
                              highlight=False)
        stop = threading.Event()
        try:
            # After ray_session: ray.init installs its own SIGTERM handler (sys.exit), which ours replaces.
            with ray_session(settings.ray_address), stop_on_signals(stop):
                proxy = front_label()
                try:
                    serve.start(http_options={"host": serve_settings.serve_host,
                                              "port": serve_settings.serve_port})
                except (RayError, TimeoutError) as exc:
                    raise _fail(f"Ray Serve's HTTP proxy ({proxy}) did not start on {serve_settings.serve_host}:"
                                f"{serve_settings.serve_port}: {str(exc).splitlines()[0]} Check that the port is "
                                "free and the machine not overloaded; the Ray logs (/tmp/ray/session_latest/logs) "
                                "say more.") from None
                try:
                    serve.run(build_app(settings, serve_settings), name=APP_NAME, route_prefix="/")
                except (RayError, RayServeException, TimeoutError) as exc:
                    _stop_serve(serve, APP_NAME, embedded)
                    raise _fail(f"the rayscribe application did not start: {str(exc).splitlines()[0]} The Ray "
                                "logs (/tmp/ray/session_latest/logs/serve) say more.") from None
                keys = "API key required" if serve_settings.key_list() else "no API key"
                console.print(f"rayscribe HTTP API on http://{serve_settings.serve_host}:{serve_settings.serve_port}"
                              f" ({keys}, {proxy}); Ctrl-C to stop", highlight=False, soft_wrap=True)
                try:
                    stop.wait()
                    console.print("stopping", highlight=False)
                finally:
                    _stop_serve(serve, APP_NAME, embedded)
        except RayscribeError as exc:
            raise _fail(str(exc)) from None
        except ConnectionError as exc:
            raise _fail(f"cannot reach the Ray cluster at {settings.ray_address!r}: {exc}") from None
