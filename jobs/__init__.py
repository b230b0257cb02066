"""Entrypoints for ``ray job submit``: batch transcription, benchmarks."""
