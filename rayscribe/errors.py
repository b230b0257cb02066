"""Typed errors: every failure a user can see names the problem and what to do about it."""

from __future__ import annotations


class RayscribeError(Exception):
    """Base class for errors that are reported to users as a message, never as a traceback."""


class AudioDecodeError(RayscribeError):
    """The input could not be decoded as audio (empty, truncated, corrupt or not audio at all)."""

    def __init__(self, name: str, cause: str) -> None:
        self.name = name
        self.cause = cause
        super().__init__(f"cannot decode audio from {name!r}: {cause}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Keep the two fields when the error crosses a process boundary (Ray pickles it).
        return (AudioDecodeError, (self.name, self.cause))


class ModelNotAvailableError(RayscribeError):
    """A model (Whisper, alignment, diarization) is not present locally and cannot be fetched."""


class SettingsError(RayscribeError):
    """A setting has a bad value; the message names the key and the allowed values."""


class LanguageNotSupportedError(RayscribeError):
    """A file's language (detected or given) that no loaded model can transcribe: an English-only model and no
    multilingual one. Permanent: the same file fails the same way on every worker of this configuration."""
