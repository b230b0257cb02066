"""The rendered cluster config through Ray's own AWS provider code, against moto's in-process EC2 and IAM.

This is the step after `rayscribe cluster validate`: what `ray up` does with AWS before it starts the head
(bootstrap: key pair, security group, subnets, AMI; resources detected from the instance types), then a real
`create_node` of the spot GPU worker type, so EC2 RunInstances sees our node_config. moto intercepts the calls
inside botocore: no socket is opened (the sockets are refused, as in test_cluster_config).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from rayscribe.cluster.config_file import render
from rayscribe.config.cluster import load_cluster_settings

REGION = "eu-west-1"
PROFILE = "rayscribe-head"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
        "RAYSCRIBE_CLUSTER_REGION": REGION, "RAYSCRIBE_CLUSTER_IMAGE": "ghcr.io/example/rayscribe:test",
        "RAYSCRIBE_CLUSTER_INSTANCE_PROFILE_ARN": f"arn:aws:iam::123456789012:instance-profile/{PROFILE}",
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",  # Ray uses its own AMI table; moto's thousands of AMIs cost seconds
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_IAM", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_ray_bootstraps_the_rendered_config_and_launches_a_spot_worker(aws_env: None) -> None:
    moto = pytest.importorskip("moto")
    import boto3
    from ray.autoscaler._private.aws.config import bootstrap_aws
    from ray.autoscaler._private.aws.node_provider import AWSNodeProvider
    from ray.autoscaler._private.util import prepare_config, validate_config
    from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_NODE_NAME, TAG_RAY_USER_NODE_TYPE

    config = render(load_cluster_settings())
    with moto.mock_aws():
        boto3.client("iam", region_name=REGION).create_instance_profile(InstanceProfileName=PROFILE)
        prepared = prepare_config(config)
        validate_config(prepared)
        booted = AWSNodeProvider.fillout_available_node_types_resources(bootstrap_aws(prepared))

        types = booted["available_node_types"]
        # What Ray detects from EC2's instance type data, and our head override kept.
        assert (types["gpu_spot"]["resources"]["GPU"], types["gpu_spot"]["resources"]["CPU"]) == (1, 4)
        assert types["gpu_multi"]["resources"]["GPU"] == 4
        assert types["head"]["resources"]["GPU"] == 0 and types["head"]["resources"]["rayscribe_head"] == 1
        spot_config = types["gpu_spot"]["node_config"]
        assert spot_config["ImageId"].startswith("ami-")  # Ray's Deep Learning AMI for the region
        assert spot_config["KeyName"] and spot_config["SecurityGroupIds"] and spot_config["SubnetIds"]

        provider = AWSNodeProvider(booted["provider"], booted["cluster_name"])
        provider.create_node(spot_config, {TAG_RAY_NODE_KIND: "worker", TAG_RAY_USER_NODE_TYPE: "gpu_spot",
                                           TAG_RAY_NODE_NAME: "ray-rayscribe-worker"}, 1)
        reservations = boto3.client("ec2", region_name=REGION).describe_instances()["Reservations"]
        (instance,) = [i for r in reservations for i in r["Instances"]]
        assert instance["InstanceType"] == "g4dn.xlarge"
        assert instance["InstanceLifecycle"] == "spot"
        assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{PROFILE}")
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["rayscribe:managed"] == "true" and tags[TAG_RAY_USER_NODE_TYPE] == "gpu_spot"
