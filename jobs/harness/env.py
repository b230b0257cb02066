"""The environment every harness process runs in: nothing leaves the machine, AWS is moto.

Ray probes cloud metadata addresses and posts usage reports unless told not to; Hugging Face and pyannote
phone home too. Everything here is set before Ray is imported by the tests, the benchmarks and the soak.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

OFFLINE_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "AWS_EC2_METADATA_DISABLED": "true",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYANNOTE_METRICS_ENABLED": "0",
}
# Fake credentials for moto; the region is the one the queue settings expect by default.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Raylets started by the harness read these: a busy machine may need more than Ray's default for a node's agents
# to come up, and no idle worker processes are prestarted (the pool's actors start their own).
RAY_NODE_ENV = {"RAY_agent_register_timeout_ms": "180000", "RAY_enable_worker_prestart": "0",
                "RAY_prestart_worker_first_driver": "0"}


def offline_home() -> Path:
    """A fresh HOME holding ``ray_bootstrap_config.yaml`` (its presence stops Ray's cloud metadata probe)."""
    home = Path(tempfile.mkdtemp(prefix="rayscribe-home-"))
    (home / "ray_bootstrap_config.yaml").write_text("{}\n")
    return home


def apply_offline_env(*, home: bool = False, extra: Mapping[str, str] | None = None) -> None:
    """Set :data:`OFFLINE_ENV` (and ``extra``) in this process; with ``home``, also a fresh offline HOME."""
    os.environ.update(OFFLINE_ENV)
    if home:
        os.environ["HOME"] = str(offline_home())
    os.environ.update(extra or {})


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block, then put back what was there (or nothing)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
