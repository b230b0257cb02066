"""Entrypoints for ``ray job submit``: batch transcription, benchmarks.

A job's ``python`` is the one on the PATH of the shell that ran ``ray start``. Started outside the project's
environment, that Python has no Ray (or no rayscribe): say so, and how to start the cluster, instead of a bare
``No module named 'ray'``.
"""

import importlib.util as _util
import sys as _sys

_missing = [name for name in ("ray", "rayscribe") if _util.find_spec(name) is None]
if _missing:
    _sys.stderr.write(
        f"error: this Python ({_sys.executable}) has no {' and no '.join(_missing)}: the job runs in the "
        "environment of the shell that ran `ray start`. Start the cluster from the project's environment: "
        "`source .venv/bin/activate && ray stop && ray start --head` (in the repository), then submit again.\n")
    raise SystemExit(2)
