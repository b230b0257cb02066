"""Test-session set-up: an offline environment, one shared Ray cluster, and the shared speech clips."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.fake_cluster import free_port

# -- no traffic beyond loopback (docs/design.md "Pitfalls"), set before Ray is imported anywhere ----------------
_HOME = Path(tempfile.mkdtemp(prefix="rayscribe-home-"))
(_HOME / "ray_bootstrap_config.yaml").write_text("{}\n")
OFFLINE_ENV = {
    "HOME": str(_HOME),
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "AWS_EC2_METADATA_DISABLED": "true",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYANNOTE_METRICS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
}
os.environ.update(OFFLINE_ENV)
for key in [k for k in os.environ if k.startswith("RAYSCRIBE_") and k != "RAYSCRIBE_SPEECH_DIR"]:
    del os.environ[key]  # tests start from the documented defaults

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class RayCluster:
    """A local Ray head started with ``ray start`` for the whole session (start-up costs ~8 s)."""

    def __init__(self) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rs-ray-"))
        self.port = free_port()
        self.dashboard_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"

    def start(self) -> None:
        subprocess.run(
            [str(BIN / "ray"), "start", "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
             "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
             "--num-cpus=2", "--num-gpus=0", "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
             f"--metrics-export-port={free_port()}"],
            check=True, capture_output=True, text=True, cwd=REPO, env={**os.environ}, timeout=180,
        )

    def stop(self) -> None:
        """Stop this cluster's processes only (``ray stop`` would stop every Ray cluster on the machine)."""
        import psutil

        mine = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                cmdline = " ".join(proc.info["cmdline"] or [])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if str(self.temp_dir) in cmdline or (f":{self.port}" in cmdline and "ray" in cmdline):
                mine.append(proc)
        for proc in mine:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        _, alive = psutil.wait_procs(mine, timeout=20)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    cluster = RayCluster()
    for attempt in range(1, 4):  # on a loaded machine the dashboard can miss its start-up deadline
        try:
            cluster.start()
            break
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            # a half-started head (GCS, dashboard) would otherwise outlive the session
            cluster.stop()
            if attempt == 3:
                pytest.fail(f"ray start failed 3 times; last:\n{exc.stdout}\n{exc.stderr}")
            cluster = RayCluster()
    yield cluster
    import ray

    if ray.is_initialized():
        ray.shutdown()
    cluster.stop()


@pytest.fixture(scope="session")
def ray_connected(ray_cluster: RayCluster) -> Iterator[RayCluster]:
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
