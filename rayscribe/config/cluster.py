"""Settings of the AWS cluster (``cluster.yaml`` for ``ray up``): environment variables ``RAYSCRIBE_CLUSTER_*``.

A third settings class beside the engine and queue ones, read the same way (environment or ``.env``), so the
account-specific values (region, image, instance profile, network) can live in the environment instead of the
repository. ``rayscribe cluster render`` writes each setting that is set over the shipped ``cluster.yaml`` (whose
own values are the defaults); only the image is required. AWS credentials are not settings: the nodes get theirs
from the IAM instance profile.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from rayscribe.config.base import ENV_PREFIX, RayscribeSettings, read_settings, split_commas
from rayscribe.errors import SettingsError

_PROFILE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:instance-profile/[\w+=,.@/-]+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")

# Settings without a default that ``render`` cannot do without, with what to put there.
REQUIRED = {
    "cluster_image": "the GPU image built from docker/Dockerfile and pushed to a registry the nodes can pull "
                     "from (e.g. an ECR repository URI with a tag); without one, use cluster.yaml as shipped "
                     "(Ray's GPU image, the project installed on each node)",
}


class ClusterSettings(RayscribeSettings):
    """AWS cluster configuration; field ``x`` is read from ``RAYSCRIBE_X`` (all start ``RAYSCRIBE_CLUSTER_``)."""

    cluster_name: str = Field("rayscribe", min_length=1, max_length=60)

    # Where and what (no defaults: account-specific)
    cluster_region: str | None = None
    cluster_availability_zones: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cluster_image: str | None = None
    cluster_ami: str | None = None
    cluster_instance_profile_arn: str | None = None
    cluster_worker_instance_profile_arn: str | None = None

    # SSH and network (optional: Ray creates a key pair, subnets and a security group when unset)
    cluster_key_name: str | None = None
    cluster_ssh_private_key: str | None = None
    cluster_ssh_user: str = "ubuntu"
    cluster_subnet_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cluster_security_group_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Node types
    cluster_head_instance_type: str = "m5.xlarge"
    cluster_head_cpus: int = Field(2, ge=0, le=256)
    cluster_worker_instance_type: str = "g4dn.xlarge"
    cluster_multi_gpu_instance_type: str = "g4dn.12xlarge"
    cluster_disk_gb: int = Field(150, ge=30, le=16384)

    # Scaling
    cluster_min_workers: int = Field(0, ge=0, le=1000)
    cluster_max_workers: int = Field(4, ge=0, le=1000)
    cluster_multi_gpu_max_workers: int = Field(0, ge=0, le=1000)
    cluster_idle_timeout_minutes: float = Field(5.0, ge=0, le=1440)
    cluster_upscaling_speed: float = Field(1.0, gt=0, le=100)
    cluster_autoscaler_v2: bool = True

    # Spot
    cluster_spot: bool = True
    cluster_spot_max_price: str | None = None
    cluster_on_demand_fallback: bool = True

    # Container
    cluster_shm_size: str = "8g"

    @field_validator("cluster_region", "cluster_image", "cluster_ami", "cluster_instance_profile_arn",
                     "cluster_worker_instance_profile_arn", "cluster_key_name", "cluster_ssh_private_key",
                     "cluster_spot_max_price", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cluster_availability_zones", "cluster_subnet_ids", "cluster_security_group_ids",
                     mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("cluster_region")
    @classmethod
    def _check_region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION.match(value):
            raise ValueError("not an AWS region code; it looks like <area>-<direction>-<number>, e.g. eu-west-1")
        return value

    @field_validator("cluster_instance_profile_arn", "cluster_worker_instance_profile_arn")
    @classmethod
    def _check_profile(cls, value: str | None) -> str | None:
        if value is not None and not _PROFILE_ARN.match(value):
            raise ValueError("give the instance profile's ARN, arn:aws:iam::<12-digit account>:instance-profile/"
                             "<name> (not a role ARN and not an access key)")
        return value

    @field_validator("cluster_ami")
    @classmethod
    def _check_ami(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"ami-[0-9a-f]{8,17}", value):
            raise ValueError("an AMI id looks like ami-0123456789abcdef0; leave empty for Ray's default "
                             "Deep Learning AMI of the region")
        return value

    @field_validator("cluster_subnet_ids")
    @classmethod
    def _check_subnets(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not v.startswith("subnet-")]
        if bad:
            raise ValueError(f"subnet ids start with subnet-: {', '.join(bad)}")
        return value

    @field_validator("cluster_security_group_ids")
    @classmethod
    def _check_groups(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not v.startswith("sg-")]
        if bad:
            raise ValueError(f"security group ids start with sg-: {', '.join(bad)}")
        return value

    @field_validator("cluster_head_instance_type", "cluster_worker_instance_type", "cluster_multi_gpu_instance_type")
    @classmethod
    def _check_instance_type(cls, value: str) -> str:
        if not _INSTANCE_TYPE.match(value):
            raise ValueError("an EC2 instance type looks like family.size, e.g. g4dn.xlarge")
        return value

    @field_validator("cluster_spot_max_price")
    @classmethod
    def _check_price(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            price = float(value)
        except ValueError:
            raise ValueError("the spot price cap is US dollars per hour, e.g. 0.30; empty: on-demand price") \
                from None
        if price <= 0:
            raise ValueError("the spot price cap must be above 0 (US dollars per hour)")
        return value

    @field_validator("cluster_shm_size")
    @classmethod
    def _check_shm(cls, value: str) -> str:
        if not re.fullmatch(r"\d+[bkmg]?", value.lower()):
            raise ValueError("a Docker size such as 8g or 4096m")
        return value.lower()

    @model_validator(mode="after")
    def _cross_checks(self) -> ClusterSettings:
        if self.cluster_min_workers > self.cluster_max_workers:
            raise ValueError(f"cluster_min_workers ({self.cluster_min_workers}) must not exceed "
                             f"cluster_max_workers ({self.cluster_max_workers})")
        if (self.cluster_key_name is None) != (self.cluster_ssh_private_key is None):
            raise ValueError("set RAYSCRIBE_CLUSTER_KEY_NAME and RAYSCRIBE_CLUSTER_SSH_PRIVATE_KEY together (the "
                             "EC2 key pair and its private key file), or neither (Ray then creates a key pair)")
        if not self.cluster_spot and self.cluster_spot_max_price is not None:
            raise ValueError("RAYSCRIBE_CLUSTER_SPOT_MAX_PRICE is set but RAYSCRIBE_CLUSTER_SPOT is off")
        return self

    def require(self) -> None:
        """Raise a :class:`SettingsError` naming every required variable that is unset, with what it holds."""
        missing = [name for name in REQUIRED if getattr(self, name) is None]
        if missing:
            lines = [f"{ENV_PREFIX}{name.upper()} is not set: {REQUIRED[name]}" for name in missing]
            raise SettingsError("cannot render the cluster config; set (in the environment or .env):\n  "
                                + "\n  ".join(lines))


def load_cluster_settings(**overrides: Any) -> ClusterSettings:
    """Read the cluster settings from the environment and ``.env``; overrides (e.g. CLI flags) win."""
    return read_settings(ClusterSettings, overrides)
