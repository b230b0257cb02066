"""``rayscribe serve``: run the HTTP API on an embedded local Ray or on a given cluster until Ctrl-C.

Parses the flags and calls :func:`serve.run.run_server`, imported inside the command so that the HTTP command's
imports (Ray, Ray Serve, FastAPI) load only when it runs; registered on the main app with :func:`register`.
"""

from __future__ import annotations

import typer
from rich.console import Console

from rayscribe.errors import RayscribeError

console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _say(message: str) -> None:
    console.print(message, highlight=False, soft_wrap=True)


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
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the Ray replicas' log lines here too "
                                     "(default: only in Ray's log files, /tmp/ray/session_latest/logs)."),
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
        if settings.ray_address:  # before Ray Serve's imports: a wrong address answers in seconds
            from actors.join import check_address

            try:
                check_address(settings.ray_address, settings.ray_connect_timeout)
            except RayscribeError as exc:
                raise _fail(str(exc)) from None
        from serve.run import run_server

        try:
            run_server(settings, serve_settings, verbose=verbose, say=_say)
        except RayscribeError as exc:
            raise _fail(str(exc)) from None
        except ConnectionError as exc:
            raise _fail(f"cannot reach the Ray cluster at {settings.ray_address!r}: {exc}") from None
