"""``rayscribe cluster render|validate``: turn cluster.yaml into a concrete config and check it before ``ray up``.

Kept apart from :mod:`rayscribe.cli.app` and registered with :func:`register`; Ray and botocore load only when a
config is checked. Everything here is offline: no AWS call, no credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from rayscribe.errors import RayscribeError

console = Console(stderr=True)

cluster_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                          help="The AWS cluster config for `ray up`: render it from settings, check it offline.")


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _report(config: dict[str, Any], name: str) -> int:
    """Print the problems of ``config``; the number of errors (warnings don't count)."""
    from actors.cluster import check_config
    from rayscribe.cluster.config_file import errors

    problems = check_config(config)
    for problem in problems:
        colour = "red" if problem.severity == "error" else "yellow"
        console.print(f"[bold {colour}]{problem.severity}:[/] {problem}", highlight=False, soft_wrap=True)
    bad = len(errors(problems))
    if bad:
        console.print(f"{name}: {bad} error(s); fix them before `ray up`", highlight=False)
    else:
        console.print(f"[green]{name}: valid[/] (Ray's schema and EC2 RunInstances parameters, checked offline)",
                      highlight=False)
    return bad


@cluster_app.command("render")
def render_command(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the config here; default: stdout."),
    template: Path | None = typer.Option(None, "--template", help="The template; default: the repository's "
                                         "cluster.yaml."),
    check: bool = typer.Option(True, "--check/--no-check", help="Validate the result too (offline)."),
) -> None:
    """Fill cluster.yaml's ${...} placeholders from the RAYSCRIBE_CLUSTER_* settings (environment or .env)."""
    from rayscribe.cluster.config_file import dump, render
    from rayscribe.config.cluster import load_cluster_settings

    try:
        config = render(load_cluster_settings(), template)
    except RayscribeError as exc:
        raise _fail(str(exc)) from None
    text = dump(config)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        console.print(f"wrote {output}", highlight=False)
    if check and _report(config, str(output or "rendered config")):
        raise typer.Exit(2)


@cluster_app.command("validate")
def validate_command(
    path: Path | None = typer.Argument(None, help="A rendered cluster config; default: render cluster.yaml from "
                                       "the current settings and check that."),
) -> None:
    """Check a cluster config offline with Ray's own validation and EC2's parameter model; exit 2 if invalid."""
    from rayscribe.cluster.config_file import load, render
    from rayscribe.config.cluster import load_cluster_settings

    try:
        config = load(path) if path is not None else render(load_cluster_settings())
    except RayscribeError as exc:
        raise _fail(str(exc)) from None
    if _report(config, str(path or "cluster.yaml rendered from settings")):
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add the ``cluster`` command group to ``app``."""
    app.add_typer(cluster_app, name="cluster")
