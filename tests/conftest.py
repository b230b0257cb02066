"""Test-session set-up: an offline environment, one shared Ray cluster, and the shared speech clips."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.harness.env import OFFLINE_ENV as HARNESS_OFFLINE_ENV
from jobs.harness.env import offline_home
from jobs.harness.ports import free_port
from jobs.harness.ray_cluster import RayHead, start_head

__all__ = ["BIN", "OFFLINE_ENV", "REPO", "RayCluster", "free_port"]

# -- no traffic beyond loopback (docs/design.md "Pitfalls"), set before Ray is imported anywhere ----------------
OFFLINE_ENV = {"HOME": str(offline_home()), **HARNESS_OFFLINE_ENV, "RAY_DEDUP_LOGS": "0"}
os.environ.update(OFFLINE_ENV)
for key in [k for k in os.environ if k.startswith("RAYSCRIBE_") and k != "RAYSCRIBE_SPEECH_DIR"]:
    del os.environ[key]  # tests start from the documented defaults
# ... but for the queue worker's health port (default 8080): workers started by tests bind none unless a test gives
# them a free port, so tests (and other sessions on the machine) never compete for 8080.
os.environ["RAYSCRIBE_HEALTH_PORT"] = "0"
# ... but commands leave no warm workers on the shared cluster (tests/test_warm_pool.py turns them on itself)
os.environ["RAYSCRIBE_WARM_POOL"] = "false"

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RayCluster = RayHead  # the session's cluster: a `ray start` head (jobs/harness/ray_cluster.py)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayHead]:
    try:
        cluster = start_head(num_cpus=2, num_gpus=0)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield cluster
    import ray

    if ray.is_initialized():
        ray.shutdown()
    cluster.stop()


@pytest.fixture(scope="session")
def ray_connected(ray_cluster: RayHead) -> Iterator[RayHead]:
    """This process joined to the session's cluster (for actor and pool tests)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_cluster.address, log_to_driver=False)
    yield ray_cluster


@pytest.fixture(scope="session")
def fw_engine():  # type: ignore[no-untyped-def]
    """The default engine (faster-whisper, bundled tiny.en, CPU int8), loaded once."""
    from rayscribe.config.settings import load_settings
    from rayscribe.engines import create_engine

    return create_engine(load_settings(cpu_threads=2))


@pytest.fixture(scope="session")
def direct_texts(fw_engine) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """faster-whisper's BatchedInferencePipeline called directly on every shared clip: the accuracy peer."""
    from rayscribe.audio import decode_audio
    from tests.speech import references, require_speech

    root = require_speech()
    texts = {}
    for folder in ("ljspeech", "librivox", "jfk"):
        for name in references(str(root / folder)):
            segments, _ = fw_engine.pipeline.transcribe(decode_audio(root / folder / name), batch_size=8,
                                                         word_timestamps=True)
            texts[f"{folder}/{name}"] = " ".join(s.text.strip() for s in segments)
    return texts


from tests.fixtures_moto import *  # noqa: E402, F403 - moto server fixtures for the queue tests
from tests.fixtures_serve import *  # noqa: E402, F403 - Ray Serve fixtures for the HTTP tests
from tests.fixtures_voxtral import *  # noqa: E402, F403 - the tiny Voxtral model for the Voxtral tests

# The model: where the model's output is not the point, the small English tiny.en without the multilingual language
# check keeps the suite fast (set before any fixture starts Ray or a subprocess); tests of languages set
# RAYSCRIBE_MODEL / RAYSCRIBE_DETECT_MODEL themselves (the default is the multilingual base).
os.environ.update({"RAYSCRIBE_MODEL": "tiny.en", "RAYSCRIBE_DETECT_MODEL": ""})
