"""What every settings class shares: the ``RAYSCRIBE_`` prefix, the ``.env`` file, and one loader that turns
pydantic's errors into a :class:`SettingsError` naming the variable and what is allowed.

One base so the six settings classes (engine, queue, HTTP, cluster, scaling, Voxtral) cannot drift apart in how
they read the environment, and one loader so a bad value reads the same whichever command hits it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from rayscribe.errors import SettingsError

ENV_PREFIX = "RAYSCRIBE_"


class RayscribeSettings(BaseSettings):
    """Base of rayscribe's settings classes: field ``x`` is read from ``RAYSCRIBE_X`` or ``.env``; unknown
    variables are ignored (each class reads only its own), defaults are validated too."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore",
        validate_default=True,
    )


def split_commas(value: Any) -> Any:
    """``"a, b,,c"`` → ``["a", "b", "c"]`` for list settings written as one environment variable."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return value


def format_validation_error(exc: ValidationError, secret_keys: Collection[str] = ()) -> str:
    """Turn pydantic's error list into lines that name the environment variable and what is allowed.

    A secret's value is never echoed; a check across several fields (no single key) is given by its message."""
    lines = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:
            lines.append(message)
            continue
        key = str(err["loc"][0])
        shown = "" if key in secret_keys else f"={err.get('input')!r}"
        lines.append(f"{ENV_PREFIX}{key.upper()}{shown}: {message}")
    return "invalid settings:\n  " + "\n  ".join(lines)


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def read_settings(cls: type[SettingsT], overrides: dict[str, Any]) -> SettingsT:
    """Build any of rayscribe's settings classes from the environment and ``.env``; overrides that are not
    ``None`` (e.g. CLI flags) win. A bad value raises :class:`SettingsError`; fields declared with
    ``repr=False`` are secrets and their values stay out of the message."""
    secrets = {name for name, info in cls.model_fields.items() if info.repr is False}
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, secrets)) from None
