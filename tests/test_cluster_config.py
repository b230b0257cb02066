"""cluster.yaml: valid as shipped, rendered onto the rayscribe image from settings, checked offline with Ray's own
validation and EC2's parameter model.

The checks must never reach the network (no AWS call, no credentials): every test here runs with sockets that
refuse to connect anywhere.
"""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from actors.cluster import check_config
from rayscribe.cli.app import app
from rayscribe.cluster.config_file import errors, render
from rayscribe.config.cluster import ClusterSettings, load_cluster_settings
from rayscribe.errors import SettingsError

REPO = Path(__file__).resolve().parents[1]
REQUIRED_ENV = {
    "RAYSCRIBE_CLUSTER_REGION": "eu-west-1",
    "RAYSCRIBE_CLUSTER_IMAGE": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/rayscribe:test",
    "RAYSCRIBE_CLUSTER_INSTANCE_PROFILE_ARN": "arn:aws:iam::123456789012:instance-profile/rayscribe-head",
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection or name lookup fails the test: validation must be offline."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for key, value in REQUIRED_ENV.items():
        monkeypatch.setenv(key, value)
    return REQUIRED_ENV


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    settings = ClusterSettings(
        cluster_region="eu-west-1", cluster_image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/rayscribe:test",
        cluster_instance_profile_arn="arn:aws:iam::123456789012:instance-profile/rayscribe-head",
        cluster_subnet_ids=["subnet-0abc", "subnet-0def"], cluster_key_name="rayscribe",
        cluster_ssh_private_key="~/.ssh/rayscribe.pem", cluster_spot_max_price="0.25",
        cluster_multi_gpu_max_workers=1, _env_file=None,  # a developer's .env must not change the expectations
    )
    return render(settings)


def test_shipped_template_renders_to_a_valid_config(rendered: dict[str, Any]) -> None:
    assert check_config(rendered) == []
    types = rendered["available_node_types"]
    assert types["head"]["resources"]["GPU"] == 0
    spot, on_demand = types["gpu_spot"], types["gpu_on_demand"]
    assert spot["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert spot["node_config"]["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.25"
    assert "InstanceMarketOptions" not in on_demand["node_config"]
    assert spot["priority"] > on_demand["priority"]  # spot first, on demand as the fallback
    assert spot["node_config"]["InstanceType"] == on_demand["node_config"]["InstanceType"] == "g4dn.xlarge"
    assert types["gpu_multi"]["node_config"]["InstanceType"] == "g4dn.12xlarge"
    assert rendered["max_workers"] == 5
    for node_type in types.values():
        assert node_type["node_config"]["IamInstanceProfile"]["Arn"].endswith("instance-profile/rayscribe-head")
        assert node_type["node_config"]["KeyName"] == "rayscribe"
    assert "--gpus all" in rendered["docker"]["worker_run_options"]
    assert "--shm-size=8g" in rendered["docker"]["run_options"]
    assert any("docker login" in c for c in rendered["initialization_commands"])
    assert all("--disable-usage-stats" in c for c in rendered["head_start_ray_commands"][1:])
    assert "RAY_enable_autoscaler_v2=1" in rendered["head_start_ray_commands"][1]
    text = yaml.safe_dump(rendered)
    assert "${" not in text and "AWS_SECRET_ACCESS_KEY" not in text


def test_unset_optional_settings_leave_the_shipped_values(env: dict[str, str]) -> None:
    config = render(load_cluster_settings(cluster_spot=False))
    head = config["available_node_types"]["head"]["node_config"]
    assert not {"KeyName", "SubnetIds", "SecurityGroupIds", "ImageId"} & set(head)
    assert "ssh_private_key" not in config["auth"] and "availability_zone" not in config["provider"]
    types = config["available_node_types"]
    assert types["gpu_spot"]["max_workers"] == 0 and types["gpu_on_demand"]["max_workers"] == 4
    assert "InstanceMarketOptions" not in types["gpu_multi"]["node_config"]
    assert errors(check_config(config)) == []


def test_render_names_the_missing_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYSCRIBE_CLUSTER_REGION", "eu-west-1")
    with pytest.raises(SettingsError) as info:
        render(load_cluster_settings())
    message = str(info.value)
    assert "RAYSCRIBE_CLUSTER_IMAGE is not set" in message and "cluster.yaml as shipped" in message
    assert "RAYSCRIBE_CLUSTER_REGION" not in message


@pytest.mark.parametrize(
    ("env_value", "fragments"),
    [
        ({"RAYSCRIBE_CLUSTER_INSTANCE_PROFILE_ARN": "arn:aws:iam::123456789012:role/x"},
         ["RAYSCRIBE_CLUSTER_INSTANCE_PROFILE_ARN", "instance-profile"]),
        ({"RAYSCRIBE_CLUSTER_REGION": "Ireland"}, ["RAYSCRIBE_CLUSTER_REGION", "eu-west-1"]),
        ({"RAYSCRIBE_CLUSTER_MIN_WORKERS": "5", "RAYSCRIBE_CLUSTER_MAX_WORKERS": "2"}, ["must not exceed"]),
        ({"RAYSCRIBE_CLUSTER_KEY_NAME": "k"}, ["RAYSCRIBE_CLUSTER_SSH_PRIVATE_KEY"]),
        ({"RAYSCRIBE_CLUSTER_SUBNET_IDS": "subnet-1,vpc-2"}, ["RAYSCRIBE_CLUSTER_SUBNET_IDS", "vpc-2"]),
        ({"RAYSCRIBE_CLUSTER_SPOT_MAX_PRICE": "cheap"}, ["RAYSCRIBE_CLUSTER_SPOT_MAX_PRICE", "dollars"]),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, env_value: dict[str, str],
                                fragments: list[str]) -> None:
    for key, value in env_value.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_cluster_settings()
    for fragment in fragments:
        assert fragment in str(info.value)


def _messages(config: dict[str, Any]) -> list[str]:
    return [str(p) for p in errors(check_config(config))]


def test_bad_type_is_rejected(rendered: dict[str, Any]) -> None:
    config = copy.deepcopy(rendered)
    config["max_workers"] = "lots"
    assert _messages(config) == ["max_workers: 'lots' is a str; Ray expects an integer"]


def test_unknown_top_level_key_is_rejected_with_a_suggestion(rendered: dict[str, Any]) -> None:
    config = copy.deepcopy(rendered)
    config["idle_timeout_minute"] = 3
    (message,) = _messages(config)
    assert message.startswith("idle_timeout_minute: unknown top-level key (did you mean idle_timeout_minutes?)")


def test_missing_node_config_is_rejected(rendered: dict[str, Any]) -> None:
    config = copy.deepcopy(rendered)
    del config["available_node_types"]["gpu_spot"]["node_config"]
    (message,) = _messages(config)
    assert "available_node_types.gpu_spot.node_config: missing; node type 'gpu_spot' needs it" in message


def test_node_config_typo_suggests_the_ec2_parameter(rendered: dict[str, Any]) -> None:
    config = copy.deepcopy(rendered)
    node_config = config["available_node_types"]["gpu_on_demand"]["node_config"]
    node_config["InstanceTyp"] = node_config.pop("InstanceType")
    (message,) = _messages(config)
    assert message.startswith("available_node_types.gpu_on_demand.node_config.InstanceTyp: not an EC2 "
                              "RunInstances parameter (did you mean InstanceType?)")


def test_nested_ec2_type_error_and_enum_warning(rendered: dict[str, Any]) -> None:
    config = copy.deepcopy(rendered)
    node_config = config["available_node_types"]["gpu_spot"]["node_config"]
    node_config["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] = "big"
    node_config["InstanceType"] = "g4dn.xlarg"
    problems = check_config(config)
    assert [str(p) for p in errors(problems)] == [
        "available_node_types.gpu_spot.node_config.BlockDeviceMappings[0].Ebs.VolumeSize: 'big' is a str; EC2 "
        "expects <class 'int'>"]
    (warning,) = [p for p in problems if p.severity == "warning"]
    assert "did you mean g4dn.xlarge?" in str(warning)


def test_ray_semantic_check_runs(rendered: dict[str, Any]) -> None:
    config = copy.deepcopy(rendered)
    config["available_node_types"]["gpu_spot"]["min_workers"] = 9  # more than the global max_workers
    (message,) = _messages(config)
    assert "Ray rejects it" in message and "min_workers" in message


def test_cli_render_then_validate(env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cluster.rendered.yaml"
    result = runner.invoke(app, ["cluster", "render", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert yaml.safe_load(out.read_text())["provider"]["region"] == "eu-west-1"
    assert runner.invoke(app, ["cluster", "validate", str(out)]).exit_code == 0

    broken = yaml.safe_load(out.read_text())
    broken["available_node_types"]["head"]["node_config"]["InstanceTyp"] = "m5.large"
    del broken["available_node_types"]["head"]["node_config"]["InstanceType"]
    out.write_text(yaml.safe_dump(broken))
    result = runner.invoke(app, ["cluster", "validate", str(out)])
    assert result.exit_code == 2
    assert "did you mean InstanceType?" in result.output and "Traceback" not in result.output


def test_cli_errors_are_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["cluster", "render"])
    assert result.exit_code == 2 and "RAYSCRIBE_CLUSTER_IMAGE is not set" in result.output
    (tmp_path / "bad.yaml").write_text("cluster_name: [x\n")
    result = runner.invoke(app, ["cluster", "validate", "bad.yaml"])
    assert result.exit_code == 2 and "not valid YAML at line" in result.output
    result = runner.invoke(app, ["cluster", "validate", "missing.yaml"])
    assert result.exit_code == 2 and "cannot read missing.yaml" in result.output


def test_env_template_documents_every_cluster_setting() -> None:
    template = (REPO / ".env.template").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in template.splitlines() if "=" in line}
    missing = [f"RAYSCRIBE_{name.upper()}" for name in ClusterSettings.model_fields
               if f"RAYSCRIBE_{name.upper()}" not in documented]
    assert not missing, f".env.template lacks {missing}"


def _v2_launches(config: dict[str, Any], gpus: int, availability: dict[str, float]) -> list[tuple[str, int]]:
    """What Ray's autoscaler v2 scheduler would launch for ``gpus`` one-GPU actors, given recent launch failures
    (``availability`` 0.0 = a launch of that type just failed). Offline: the real scheduler, no provider."""
    from ray.autoscaler._private.util import prepare_config
    from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig
    from ray.autoscaler.v2.scheduler import ResourceDemandScheduler, SchedulingRequest
    from ray.autoscaler.v2.utils import ResourceRequestUtil
    from ray.core.generated.autoscaler_pb2 import ResourceRequestByCount

    config = copy.deepcopy(config)
    types = config["available_node_types"]
    for name in ("gpu_spot", "gpu_on_demand"):  # what `ray up` detects for g4dn.xlarge (describe_instance_types)
        types[name]["resources"] = {"CPU": 4, "GPU": 1}
    types["gpu_multi"]["resources"] = {"CPU": 48, "GPU": 4}
    autoscaling = AutoscalingConfig(prepare_config(config), skip_content_hash=True)
    request = SchedulingRequest(
        disable_launch_config_check=True, node_type_configs=autoscaling.get_node_type_configs(),
        max_num_nodes=autoscaling.get_max_num_worker_nodes(),  # get_max_num_nodes() + the running head
        resource_requests=[ResourceRequestByCount(request=ResourceRequestUtil.make({"GPU": 1}), count=gpus)],
        recoverable_resource_availabilities=availability)
    reply = ResourceDemandScheduler(None).schedule(request)
    return sorted((launch.instance_type, launch.count) for launch in reply.to_launch)


def test_autoscaler_v2_prefers_spot_and_falls_back_to_on_demand(env: dict[str, str]) -> None:
    config = render(load_cluster_settings())
    assert _v2_launches(config, 2, {}) == [("gpu_spot", 2)]
    assert _v2_launches(config, 2, {"gpu_spot": 0.0}) == [("gpu_on_demand", 2)]  # spot launches just failed
    assert _v2_launches(config, 9, {}) == [("gpu_spot", 4)]  # spot and on demand share the cap of 4
    spot_only = render(load_cluster_settings(cluster_on_demand_fallback=False))
    assert _v2_launches(spot_only, 2, {"gpu_spot": 0.0}) == [("gpu_spot", 2)]
    on_demand = render(load_cluster_settings(cluster_spot=False))
    assert _v2_launches(on_demand, 2, {}) == [("gpu_on_demand", 2)]


def test_a_config_without_rayscribes_node_types_is_not_rendered(env: dict[str, str], tmp_path: Path) -> None:
    from rayscribe.cluster.config_file import TemplateError

    other = yaml.safe_load((REPO / "cluster.yaml").read_text())
    other["available_node_types"]["gpu"] = other["available_node_types"].pop("gpu_spot")
    template = tmp_path / "cluster.yaml"
    template.write_text(yaml.safe_dump(other))
    with pytest.raises(TemplateError, match=r"lacks the node type\(s\) gpu_spot"):
        render(load_cluster_settings(), template)
