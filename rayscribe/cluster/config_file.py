"""Check a cluster config offline before ``ray up`` spends money, and render the shipped ``cluster.yaml`` into a
copy that runs the rayscribe image from ``docker/`` with the settings applied.

The shipped ``cluster.yaml`` is a concrete Ray cluster config (Ray's GPU image, the repository copied in and
installed by ``setup_commands``). :func:`render` reads it and writes over it what the ``RAYSCRIBE_CLUSTER_*``
settings say: the image (required), and every setting the user set (environment, ``.env`` or flags); a setting
left at its default leaves the file's own value, so an edit to the file survives a render.
:func:`find_problems` runs the checks ``ray up`` would run before it touches AWS: the plain-spoken structure
checks against Ray's JSON schema, Ray's own preparation and validation (handed in as ``ray_check``:
:func:`actors.cluster.validate_with_ray`, so this module never imports Ray; :func:`actors.cluster.check_config`
puts the two together), then botocore's parameter validation of each node type's ``node_config`` against EC2
``RunInstances`` (botocore's bundled service model). Nothing here opens a connection or needs credentials.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from rayscribe.config.cluster import ClusterSettings
from rayscribe.errors import RayscribeError

SHIPPED = Path(__file__).resolve().parents[2] / "cluster.yaml"  # the repository root
TEMPLATE = SHIPPED  # the name earlier versions used
RENDERED_HEADER = ("# Rendered by `rayscribe cluster render` from cluster.yaml and the RAYSCRIBE_CLUSTER_* settings:\n"
                   "# the rayscribe image from docker/ instead of Ray's image plus an install on every node.\n"
                   "# Edit cluster.yaml or the settings and render again rather than editing this file.\n")

_ECR_IMAGE = re.compile(r"^(\d{12}\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?)/")
_REGION_OPTION = re.compile(r"^-e AWS_DEFAULT_REGION=(\S*)$")
# Keys of Ray's AWS node_config that Ray handles itself before calling RunInstances.
_RAY_NODE_CONFIG_KEYS = {"SubnetIds"}
HEAD, SPOT, ON_DEMAND, MULTI = "head", "gpu_spot", "gpu_on_demand", "gpu_multi"
IMAGE_CHECK = ('python -c "import rayscribe, actors, serve, jobs" && rayscribe --help > /dev/null '
               '&& echo "rayscribe image OK"')


class TemplateError(RayscribeError):
    """The shipped config or a config file cannot be read (YAML syntax, not a mapping, node types missing)."""


@dataclass(frozen=True)
class Problem:
    """One finding: where in the config (a readable path), what is wrong and what would fix it."""

    where: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


# -- rendering ---------------------------------------------------------------------------------------------

def render(settings: ClusterSettings, template: Path | None = None) -> dict[str, Any]:
    """The shipped config (or ``template``) switched to the rayscribe image and with the settings applied.

    Raises :class:`~rayscribe.errors.SettingsError` naming each required variable that is unset, and
    :class:`TemplateError` for a file that is not a cluster config with rayscribe's node types."""
    settings.require()
    path = template or (SHIPPED if SHIPPED.exists() else Path("cluster.yaml"))  # installed: the working dir's
    try:
        text = path.read_text()
    except OSError as exc:
        raise TemplateError(f"cannot read the cluster config {path}: {exc.strerror}; pass --template PATH "
                            "(the repository's cluster.yaml)") from None
    config = _load_yaml(text, str(path))
    if not isinstance(config, dict) or not isinstance(config.get("available_node_types"), dict):
        raise TemplateError(f"{path} is not a cluster config (a YAML mapping with available_node_types)")
    types = config["available_node_types"]
    missing = [name for name in (HEAD, SPOT, ON_DEMAND) if not isinstance(types.get(name), dict)]
    if missing:
        raise TemplateError(f"{path} lacks the node type(s) {', '.join(missing)} that render fills in; start "
                            "from the repository's cluster.yaml")
    _use_image(config, settings)
    _apply_settings(config, settings, settings.model_fields_set)
    return config


def _use_image(config: dict[str, Any], s: ClusterSettings) -> None:
    """The rayscribe image carries the code: nothing to copy or install per node, only a check that it imports."""
    docker = config.setdefault("docker", {})
    docker["image"] = s.cluster_image
    docker["pull_before_run"] = True
    config["file_mounts"] = {}
    config["rsync_exclude"], config["rsync_filter"] = [], []
    config["setup_commands"] = [IMAGE_CHECK]
    config["initialization_commands"] = _initialization_commands(s)


def _node_configs(config: dict[str, Any], names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    types = config["available_node_types"]
    return [t.setdefault("node_config", {}) for name, t in types.items()
            if isinstance(t, dict) and (names is None or name in names)]


def _apply_settings(config: dict[str, Any], s: ClusterSettings, given: set[str]) -> None:
    """Write each setting the user gave over the file's value (settings left at their defaults change nothing)."""
    types = config["available_node_types"]
    workers = tuple(name for name in types if name != HEAD)
    provider = config.setdefault("provider", {})
    if "cluster_name" in given:
        config["cluster_name"] = s.cluster_name
    if "cluster_region" in given and s.cluster_region:
        provider["region"] = s.cluster_region
        options = config["docker"].setdefault("run_options", [])
        region_option = f"-e AWS_DEFAULT_REGION={s.cluster_region}"
        options[:] = [region_option if _REGION_OPTION.match(str(o)) else o for o in options]
        if region_option not in options:
            options.append(region_option)
    if "cluster_availability_zones" in given:
        if s.cluster_availability_zones:
            provider["availability_zone"] = ",".join(s.cluster_availability_zones)
        else:
            provider.pop("availability_zone", None)
    if "cluster_ami" in given and s.cluster_ami:
        for node in _node_configs(config):
            node["ImageId"] = s.cluster_ami
    head_arn = s.cluster_instance_profile_arn
    worker_arn = s.cluster_worker_instance_profile_arn or head_arn
    if head_arn:
        _node_configs(config, (HEAD,))[0]["IamInstanceProfile"] = {"Arn": head_arn}
    if worker_arn:
        for node in _node_configs(config, workers):
            node["IamInstanceProfile"] = {"Arn": worker_arn}
    if s.cluster_key_name and s.cluster_ssh_private_key:
        config.setdefault("auth", {})["ssh_private_key"] = s.cluster_ssh_private_key
        for node in _node_configs(config):
            node["KeyName"] = s.cluster_key_name
    if "cluster_ssh_user" in given:
        config.setdefault("auth", {})["ssh_user"] = s.cluster_ssh_user
    for field, key in (("cluster_subnet_ids", "SubnetIds"), ("cluster_security_group_ids", "SecurityGroupIds")):
        if field in given:
            for node in _node_configs(config):
                if getattr(s, field):
                    node[key] = list(getattr(s, field))
                else:
                    node.pop(key, None)
    if "cluster_head_instance_type" in given:
        _node_configs(config, (HEAD,))[0]["InstanceType"] = s.cluster_head_instance_type
    if "cluster_head_cpus" in given:
        types[HEAD].setdefault("resources", {})["CPU"] = s.cluster_head_cpus
    if "cluster_worker_instance_type" in given:
        for node in _node_configs(config, (SPOT, ON_DEMAND)):
            node["InstanceType"] = s.cluster_worker_instance_type
    if "cluster_multi_gpu_instance_type" in given and MULTI in types:
        _node_configs(config, (MULTI,))[0]["InstanceType"] = s.cluster_multi_gpu_instance_type
    if "cluster_disk_gb" in given:
        for node in _node_configs(config):
            for device in node.get("BlockDeviceMappings", []):
                device.setdefault("Ebs", {})["VolumeSize"] = s.cluster_disk_gb
    _apply_scaling(config, s, given)
    if "cluster_shm_size" in given:
        options = config["docker"].setdefault("run_options", [])
        options[:] = [o for o in options if not str(o).startswith("--shm-size")]
        options.insert(0, f"--shm-size={s.cluster_shm_size}")
    if "cluster_autoscaler_v2" in given:
        flag = "RAY_enable_autoscaler_v2=1 "
        commands = config.get("head_start_ray_commands", [])
        config["head_start_ray_commands"] = [
            (c.replace(flag, "") if not s.cluster_autoscaler_v2 else
             c if flag in c or "ray start" not in c else c.replace("ray start", flag + "ray start", 1))
            for c in commands]


def _apply_scaling(config: dict[str, Any], s: ClusterSettings, given: set[str]) -> None:
    """Node counts, spot and the on-demand fallback (spot and on-demand single-GPU nodes share one cap)."""
    types = config["available_node_types"]
    spot, on_demand, multi = types[SPOT], types[ON_DEMAND], types.get(MULTI)
    scaling = {"cluster_min_workers", "cluster_max_workers", "cluster_multi_gpu_max_workers", "cluster_spot",
               "cluster_on_demand_fallback"}
    if given & scaling:
        use_spot, fallback = s.cluster_spot, s.cluster_on_demand_fallback
        spot["min_workers"] = s.cluster_min_workers if use_spot else 0
        spot["max_workers"] = s.cluster_max_workers if use_spot else 0
        on_demand["min_workers"] = 0 if use_spot else s.cluster_min_workers
        on_demand["max_workers"] = s.cluster_max_workers if (not use_spot or fallback) else 0
        if multi is not None:
            multi["max_workers"] = s.cluster_multi_gpu_max_workers
            node = multi.setdefault("node_config", {})
            if use_spot:
                node["InstanceMarketOptions"] = _market_options(s)
            else:
                node.pop("InstanceMarketOptions", None)
        config["max_workers"] = s.cluster_max_workers + s.cluster_multi_gpu_max_workers
    if s.cluster_spot_max_price is not None:
        for node_type in (spot, multi):
            if node_type is not None and "InstanceMarketOptions" in node_type.get("node_config", {}):
                node_type["node_config"]["InstanceMarketOptions"] = _market_options(s)
    if "cluster_idle_timeout_minutes" in given:
        config["idle_timeout_minutes"] = s.cluster_idle_timeout_minutes
    if "cluster_upscaling_speed" in given:
        config["upscaling_speed"] = s.cluster_upscaling_speed


def _market_options(s: ClusterSettings) -> dict[str, Any]:
    options: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
    if s.cluster_spot_max_price is not None:
        options["MaxPrice"] = s.cluster_spot_max_price
    return {"MarketType": "spot", "SpotOptions": options}


def _initialization_commands(s: ClusterSettings) -> list[str]:
    """On the host before ``docker run``: log Docker in to ECR when the image is in ECR (credentials from the
    instance profile); nothing for a public registry."""
    match = _ECR_IMAGE.match(s.cluster_image or "")
    if not match:
        return []
    registry, region = match.groups()
    return [f"aws ecr get-login-password --region {region} | docker login --username AWS --password-stdin {registry}"]


def dump(config: dict[str, Any]) -> str:
    """The rendered config as YAML, with a header saying where it came from."""
    return RENDERED_HEADER + yaml.safe_dump(config, sort_keys=False, width=120)


def load(path: Path) -> dict[str, Any]:
    """Read a cluster config file; a clear :class:`TemplateError` when it is missing or not a YAML mapping."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise TemplateError(f"cannot read {path}: {exc.strerror}") from None
    data = _load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise TemplateError(f"{path} is not a cluster config (a YAML mapping with cluster_name, provider, ...)")
    return data


def _load_yaml(text: str, name: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TemplateError(f"{name} is not valid YAML{where}: {problem}") from None


# -- checking ----------------------------------------------------------------------------------------------

def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


# Ray's own checks of a config that passed the structure checks: (config, Ray's JSON schema) -> problems.
RayCheck = Callable[[dict[str, Any], dict[str, Any]], list[Problem]]


def find_problems(config: dict[str, Any], schema: dict[str, Any], ray_check: RayCheck) -> list[Problem]:
    """Every problem found in a cluster config, offline; an empty list means ``ray up`` should accept it.

    ``schema`` is Ray's ``ray-schema.json``; ``ray_check`` runs Ray's preparation and validation (both come from
    :mod:`actors.cluster`, which may import Ray)."""
    problems, cleaned, fatal = _check_structure(config, schema)
    problems += _check_region(config)
    if not fatal:  # unknown keys are reported above and left out, so Ray's checks still see the rest
        problems += ray_check(cleaned, schema)
    node_types = config.get("available_node_types")
    provider = config.get("provider")
    if isinstance(provider, dict) and provider.get("type") == "aws" and isinstance(node_types, dict):
        for name, node_type in node_types.items():
            if isinstance(node_type, dict) and "node_config" in node_type:
                problems += check_node_config(name, node_type["node_config"])
    return problems


def _check_region(config: dict[str, Any]) -> list[Problem]:
    """The region boto3 uses on the nodes (``-e AWS_DEFAULT_REGION`` in docker run_options) should be the one the
    cluster runs in; a warning, since another region can be meant (queues elsewhere)."""
    provider, docker = config.get("provider"), config.get("docker")
    if not isinstance(provider, dict) or not isinstance(docker, dict):
        return []
    for option in docker.get("run_options") or []:
        match = _REGION_OPTION.match(str(option))
        if match and match.group(1) != provider.get("region"):
            return [Problem("docker.run_options", f"AWS_DEFAULT_REGION={match.group(1)} but provider.region is "
                                                  f"{provider.get('region')}; edit both", "warning")]
    return []


def _check_structure(config: dict[str, Any], schema: dict[str, Any]) -> tuple[list[Problem], dict[str, Any], bool]:
    """The mistakes people make, said plainly (Ray's schema would say them as one terse line each).

    Returns the problems, the config without its unknown keys, and whether Ray's own checks can still run."""
    problems = []
    fatal = False
    cleaned = copy.deepcopy(config)
    allowed = list(schema["properties"])
    for key in config:
        if key not in schema["properties"]:
            problems.append(Problem(str(key), f"unknown top-level key{_did_you_mean(str(key), allowed)}; "
                                              f"allowed: {', '.join(allowed)}"))
            del cleaned[key]
    for key in schema.get("required", []):
        if key not in config:
            problems.append(Problem(key, "missing; Ray needs it"))
            fatal = True
    provider = config.get("provider")
    if "provider" in config and (not isinstance(provider, dict) or "type" not in provider):
        problems.append(Problem("provider", "needs a mapping with a type (aws here)"))
        fatal = True
    node_types = config.get("available_node_types")
    if node_types is None:
        problems.append(Problem("available_node_types", "missing; define the head and the worker node types"))
        return problems, cleaned, True
    if not isinstance(node_types, dict) or not node_types:
        problems.append(Problem("available_node_types", "must be a mapping of node type names to their settings"))
        return problems, cleaned, True
    type_schema = schema["properties"]["available_node_types"]["patternProperties"][".*"]
    type_keys = list(type_schema["properties"])
    for name, node_type in node_types.items():
        where = f"available_node_types.{name}"
        if not isinstance(node_type, dict):
            problems.append(Problem(where, "must be a mapping (resources, node_config, min_workers, ...)"))
            fatal = True
            continue
        for key in type_schema["required"]:
            if key not in node_type:
                what = ("the EC2 launch parameters, e.g. InstanceType: g4dn.xlarge" if key == "node_config"
                        else "`resources: {}` lets Ray detect the CPUs and GPUs from the instance type")
                problems.append(Problem(f"{where}.{key}", f"missing; node type {name!r} needs it ({what})"))
                fatal = True
        for key in node_type:
            if key not in type_schema["properties"]:
                problems.append(Problem(f"{where}.{key}", f"unknown node type key{_did_you_mean(str(key), type_keys)}"
                                                          f"; allowed: {', '.join(type_keys)}"))
                del cleaned["available_node_types"][name][key]
    head = config.get("head_node_type")
    if head is None:
        problems.append(Problem("head_node_type", f"missing; name one of {', '.join(map(str, node_types))}"))
        fatal = True
    elif head not in node_types:
        problems.append(Problem("head_node_type", f"{head!r} is not a node type{_did_you_mean(str(head), node_types)}"
                                                  f"; defined: {', '.join(map(str, node_types))}"))
        fatal = True
    return problems, cleaned, fatal


def check_schema(prepared: dict[str, Any], schema: dict[str, Any]) -> list[Problem]:
    """A config Ray has prepared (defaults filled in) against Ray's JSON schema, each error said with its path."""
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [Problem(_json_path(err.absolute_path), _schema_message(err))
            for err in sorted(validator.iter_errors(prepared), key=lambda e: list(map(str, e.absolute_path)))]


def _json_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_message(err: Any) -> str:
    if err.validator == "type":
        wanted = [err.validator_value] if isinstance(err.validator_value, str) else list(err.validator_value)
        expected = " or ".join(_YAML_TYPES.get(w, w) for w in wanted)
        return f"{err.instance!r} is a {type(err.instance).__name__}; Ray expects {_a(expected)}"
    if err.validator == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        hints = [f"{k!r}{_did_you_mean(k, allowed)}" for k in extra]
        return f"unknown key(s) {', '.join(hints)}; allowed: {', '.join(allowed)}"
    if err.validator == "minimum":
        return f"{err.instance!r} is below the minimum {err.validator_value}"
    return str(err.message)


# JSON schema type names as a YAML writer knows them.
_YAML_TYPES = {"object": "mapping", "array": "list", "number": "number (int or float)"}


def _a(type_name: str) -> str:
    return f"an {type_name}" if type_name[:1] in "aeiou" else f"a {type_name}"


def check_node_config(node_type: str, node_config: Any) -> list[Problem]:
    """Check one AWS ``node_config`` as the parameters of EC2 ``RunInstances`` (botocore's bundled model).

    Ray adds ``MinCount``/``MaxCount`` and turns its own ``SubnetIds`` into ``SubnetId`` before the call, so
    the same is done here first."""
    where = f"available_node_types.{node_type}.node_config"
    if not isinstance(node_config, dict):
        return [Problem(where, "must be a mapping of EC2 RunInstances parameters, e.g. InstanceType: g4dn.xlarge")]
    from botocore.validate import ParamValidator

    shape = _run_instances_shape()
    params = {k: copy.deepcopy(v) for k, v in node_config.items() if k not in _RAY_NODE_CONFIG_KEYS}
    subnets = node_config.get("SubnetIds")
    problems = []
    if subnets is not None:
        if not isinstance(subnets, list) or not all(isinstance(s, str) for s in subnets):
            problems.append(Problem(f"{where}.SubnetIds", "must be a list of subnet ids (subnet-...)"))
        elif subnets:
            params["SubnetId"] = subnets[0]
    params.setdefault("MinCount", 1)
    params.setdefault("MaxCount", 1)
    typo = difflib.get_close_matches("InstanceType", list(map(str, node_config)), n=1, cutoff=0.6)
    if "InstanceType" not in node_config and "LaunchTemplate" not in node_config and not typo:
        problems.append(Problem(where, "no InstanceType; Ray needs it to launch the node and to count its CPUs "
                                       "and GPUs (e.g. InstanceType: g4dn.xlarge)"))
    report = ParamValidator().validate(params, shape)
    for kind, name, extra in getattr(report, "_errors", []):
        problems.append(_botocore_problem(where, kind, name, extra))
    if report.has_errors() and not getattr(report, "_errors", None):  # botocore changed its internals
        problems.append(Problem(where, report.generate_report()))
    problems += _check_enums(where, params, shape)
    return problems


@functools.lru_cache(maxsize=1)
def _run_instances_shape() -> Any:
    """EC2 RunInstances' input shape from botocore's bundled model (a local file; loaded once, it is large)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("ec2").operation_model("RunInstances").input_shape


def _botocore_problem(where: str, kind: str, name: str, extra: dict[str, Any]) -> Problem:
    at = f"{where}.{name.lstrip('.')}" if name else where
    if kind == "unknown field":
        unknown, valid = extra["unknown_param"], list(extra["valid_names"])
        hint = _did_you_mean(unknown, valid)
        shown = ", ".join(valid[:12]) + (", ..." if len(valid) > 12 else "")
        return Problem(f"{at}.{unknown}", f"not an EC2 RunInstances parameter{hint}; allowed here: {shown}")
    if kind == "invalid type":
        param = extra["param"]
        return Problem(at, f"{param!r} is a {type(param).__name__}; EC2 expects "
                           f"{' or '.join(extra['valid_types'])}")
    if kind == "missing required field":
        return Problem(f"{at}.{extra['required_name']}", "missing; EC2 requires it here")
    if kind in ("invalid range", "invalid length"):
        return Problem(at, f"{extra['param']!r} is too small (minimum {extra['min_allowed']})")
    return Problem(at, f"{kind}: {extra}")


def _check_enums(where: str, params: Any, shape: Any, path: str = "") -> list[Problem]:
    """Warn about a value outside the model's enumeration (e.g. a misspelt instance type). A warning, not an
    error: an instance type newer than this botocore is not in its list."""
    found: list[Problem] = []
    kind = getattr(shape, "type_name", None)
    if kind == "structure" and isinstance(params, dict):
        for key, value in params.items():
            if key in shape.members:
                found += _check_enums(where, value, shape.members[key], f"{path}.{key}" if path else key)
    elif kind == "list" and isinstance(params, list):
        for i, value in enumerate(params):
            found += _check_enums(where, value, shape.member, f"{path}[{i}]")
    elif kind == "string" and isinstance(params, str) and getattr(shape, "enum", None) and params not in shape.enum:
        found.append(Problem(f"{where}.{path}", f"{params!r} is not a value this botocore knows"
                                                f"{_did_you_mean(params, shape.enum)}", "warning"))
    return found


def errors(problems: list[Problem]) -> list[Problem]:
    """The problems that make a config invalid (warnings are left out)."""
    return [p for p in problems if p.severity == "error"]
