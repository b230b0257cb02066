"""The shipped cluster.yaml is a Ray cluster config `ray up` takes as typed: valid by rayscribe's checks and by
Ray's own validation, with concrete defaults (a CPU head, g4dn spot workers from 0 with an on-demand fallback,
instance profiles, no keys), Ray's GPU image with the repository installed, and Ray's metrics off the health port.
A broken copy is refused. All offline."""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from typer.testing import CliRunner

from actors.cluster import ray_schema, validate_with_ray
from rayscribe.cli.app import app
from rayscribe.cluster.config_file import IMAGE_CHECK, render
from rayscribe.config.cluster import ClusterSettings

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "cluster.yaml"
HEALTH_PORT = 8080


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def shipped() -> dict[str, Any]:
    return dict(yaml.safe_load(SHIPPED.read_text()))


def test_rayscribe_cluster_validate_passes_on_the_shipped_file() -> None:
    result = CliRunner().invoke(app, ["cluster", "validate", str(SHIPPED)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "warning" not in result.output


def test_rays_own_validation_passes_on_the_shipped_file(shipped: dict[str, Any]) -> None:
    assert validate_with_ray(shipped, ray_schema()) == []


def test_the_shipped_defaults(shipped: dict[str, Any]) -> None:
    text = SHIPPED.read_text()
    assert "${" not in text
    assert not re.search(r"AKIA[0-9A-Z]{12}|aws_secret_access_key|KeyName:\s*\S", text)  # no keys
    assert re.fullmatch(r"[a-z]{2}-[a-z]+-\d", shipped["provider"]["region"])
    types = shipped["available_node_types"]
    head = types[shipped["head_node_type"]]
    assert head["resources"]["GPU"] == 0 and not head["node_config"]["InstanceType"].startswith(("g", "p"))
    spot, fallback = types["gpu_spot"], types["gpu_on_demand"]
    assert spot["node_config"]["InstanceType"].startswith("g4dn.")
    assert spot["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert "InstanceMarketOptions" not in fallback["node_config"] and spot["priority"] > fallback["priority"]
    assert all(t.get("min_workers", 0) == 0 for name, t in types.items() if name != shipped["head_node_type"])
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())
    assert f"-e AWS_DEFAULT_REGION={shipped['provider']['region']}" in shipped["docker"]["run_options"]


def test_it_runs_rays_gpu_image_with_the_repository_installed(shipped: dict[str, Any]) -> None:
    version = f"{ray.__version__}-py{sys.version_info.major}{sys.version_info.minor}-gpu"
    assert shipped["docker"]["image"] == f"rayproject/ray:{version}"  # the Ray and Python the lock pins
    assert shipped["file_mounts"] == {"~/rayscribe": "."}
    install = shipped["setup_commands"][0]
    assert "uv export --frozen" in install and "--extra whisperx --extra voxtral" in install
    assert shipped["setup_commands"][-1].startswith('python -c "import rayscribe, actors, serve, jobs"')
    assert ".venv" in shipped["rsync_exclude"]


def test_rays_metrics_are_not_on_the_health_port(shipped: dict[str, Any]) -> None:
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in shipped[key] if "ray start" in c)
        port = re.search(r"--metrics-export-port=(\d+)", start)
        assert port and int(port.group(1)) != HEALTH_PORT, start


def _validate(config: dict[str, Any], tmp_path: Path) -> Any:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(config))
    return CliRunner().invoke(app, ["cluster", "validate", str(path)])


@pytest.mark.parametrize(("break_it", "expected"), [
    (lambda c: c.update(max_workers="four"), "max_workers: 'four' is a str"),
    (lambda c: c.update(head_node_type="headd"), "'headd' is not a node type (did you mean head?)"),
    (lambda c: c["available_node_types"]["gpu_spot"]["node_config"].update(IamInstanceProfile="rayscribe-worker"),
     "IamInstanceProfile: 'rayscribe-worker' is a str"),
    (lambda c: c["available_node_types"]["gpu_spot"].update(min_workers=9), "Ray rejects it"),
])
def test_a_broken_copy_is_refused(shipped: dict[str, Any], tmp_path: Path, break_it: Any, expected: str) -> None:
    break_it(shipped)
    result = _validate(shipped, tmp_path)
    assert result.exit_code == 2 and expected in result.output, result.output


def test_a_region_edited_in_one_place_only_is_warned_about(shipped: dict[str, Any], tmp_path: Path) -> None:
    shipped["provider"]["region"] = "eu-west-1"
    result = _validate(shipped, tmp_path)
    assert result.exit_code == 0 and "warning: docker.run_options: AWS_DEFAULT_REGION=" in result.output


def test_render_switches_to_the_rayscribe_image_and_keeps_the_users_edits(tmp_path: Path) -> None:
    edited = SHIPPED.read_text().replace("max_workers: 4\n", "max_workers: 7\n", 1)
    template = tmp_path / "cluster.yaml"
    template.write_text(edited)
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/rayscribe:1"
    settings = ClusterSettings(cluster_image=image, cluster_region="eu-west-1", _env_file=None)
    config = render(settings, template)
    assert config["max_workers"] == 7  # a setting left unset keeps the file's value
    assert config["docker"]["image"] == image and config["file_mounts"] == {}
    assert config["setup_commands"] == [IMAGE_CHECK] and "docker login" in config["initialization_commands"][0]
    assert config["provider"]["region"] == "eu-west-1"
    assert "-e AWS_DEFAULT_REGION=eu-west-1" in config["docker"]["run_options"]
    assert validate_with_ray(config, ray_schema()) == []
