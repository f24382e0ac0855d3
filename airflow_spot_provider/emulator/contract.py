"""The environment a training process gets: SageMaker's container contract, variable by variable.

The names and formats are the SageMaker training toolkit's (``sagemaker-training``,
``Environment.to_env_vars()``: ``SM_`` + the property name upper-cased; strings as they are,
anything else as compact JSON with sorted keys), for one homogeneous instance group, plus what the
platform itself sets (``TRAINING_JOB_NAME``, ``TRAINING_JOB_ARN``). Paths are under ``base``:
``/opt/ml`` when the job runs in its own namespaces, the sandbox dir otherwise (then
``SAGEMAKER_BASE_DIR`` points there too, as the toolkit reads it).

SageMaker defines no variable for the checkpoint dir: scripts use ``/opt/ml/checkpoints`` (the
default ``CheckpointConfig.LocalPath``) or a hyperparameter. ``SM_CHECKPOINT_DIR`` is kept as an
emulator addition for scripts written against earlier versions of this backend.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from collections.abc import Mapping
from typing import Any

from airflow_spot_provider.emulator.images import decode_hp
from airflow_spot_provider.emulator.stages import hosts_of, input_data_config, resource_config

# The toolkit's own hyperparameters (params.SAGEMAKER_HYPERPARAMETERS); any other ``sagemaker_``
# one is a framework parameter (SM_FRAMEWORK_PARAMS).
TOOLKIT_HYPERPARAMETERS = frozenset(
    {
        "sagemaker_program",
        "sagemaker_submit_directory",
        "sagemaker_enable_cloudwatch_metrics",
        "sagemaker_region",
        "sagemaker_container_log_level",
        "sagemaker_job_name",
        "default_user_module_name",
        "_tuning_objective_metric",
        "sagemaker_s3_output",
    }
)
_SAGEMAKER_PREFIX = "sagemaker_"
GROUP_NAME = "homogeneousCluster"


def _decoded(request: Mapping[str, Any]) -> dict[str, Any]:
    hps = request.get("HyperParameters") or {}
    return {str(k): decode_hp(str(v)) for k, v in hps.items()}


def _is_toolkit_key(key: str) -> bool:
    return key in TOOLKIT_HYPERPARAMETERS or key.startswith(_SAGEMAKER_PREFIX)


def user_hyperparameters(request: Mapping[str, Any]) -> dict[str, Any]:
    """The decoded hyperparameters, without the toolkit's ``sagemaker_*`` ones.

    :param request: the CreateTrainingJob request.
    """
    return {k: v for k, v in _decoded(request).items() if not _is_toolkit_key(k)}


def _toolkit_hyperparameters(request: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _decoded(request).items() if _is_toolkit_key(k)}


def _arg_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    return "" if value is None else str(value)


def command_args(request: Mapping[str, Any]) -> list[str]:
    """The entry point's arguments, as the toolkit's ``to_cmd_args`` makes them.

    ``--name value`` per user hyperparameter, sorted (``-n`` for a one-letter name); a JSON
    object becomes ``k=v,k2=v2``, anything else its Python ``str``.

    :param request: the CreateTrainingJob request.
    """
    args: list[str] = []
    for name, value in sorted(user_hyperparameters(request).items()):
        args += [f"--{name}" if len(name) > 1 else f"-{name}", _arg_value(value)]
    return args


def env_value(value: Any) -> str:
    """A value as the toolkit writes it into a variable.

    :param value: any JSON-able value.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _distribution_groups(framework: Mapping[str, Any]) -> list[str]:
    explicit = framework.get("sagemaker_distribution_instance_groups")
    if explicit is not None:
        return list(explicit)
    flags = (
        "sagemaker_mpi_enabled",
        "sagemaker_parameter_server_enabled",
        "sagemaker_distributed_dataparallel_enabled",
        "sagemaker_pytorch_ddp_enabled",
        "sagemaker_pytorch_xla_multi_worker_enabled",
        "sagemaker_multi_worker_mirrored_strategy_enabled",
        "sagemaker_torch_distributed_enabled",
    )
    return [GROUP_NAME] if any(framework.get(f, False) for f in flags) else []


def toolkit_environment(
    request: Mapping[str, Any], job_name: str, host: str, base: str
) -> dict[str, Any]:
    """What ``dict(sagemaker_training.environment.Environment())`` holds inside the job.

    :param request: the CreateTrainingJob request.
    :param job_name: the job's name.
    :param host: the current host (``algo-1``...).
    :param base: the container's ``/opt/ml`` as the process sees it.
    """
    toolkit = _toolkit_hyperparameters(request)
    framework = {k: v for k, v in toolkit.items() if k not in TOOLKIT_HYPERPARAMETERS}
    hosts = hosts_of(request)
    resources = resource_config(request, host)
    groups = _distribution_groups(framework)
    program = toolkit.get("sagemaker_program")
    module = str(program)
    mp_parameters = user_hyperparameters(request).get("mp_parameters")
    group = {g["instance_group_name"]: g for g in resources["instance_groups"]}
    distribution_hosts = hosts if GROUP_NAME in groups else []
    return {
        "additional_framework_parameters": framework,
        "channel_input_dirs": {
            name: posixpath.join(base, "input", "data", name) for name in input_data_config(request)
        },
        "current_host": host,
        "current_instance_group": GROUP_NAME,
        "current_instance_group_hosts": hosts,
        "current_instance_type": resources["current_instance_type"],
        "distribution_hosts": distribution_hosts,
        "distribution_instance_groups": groups,
        "framework_module": None,  # the image's SAGEMAKER_TRAINING_MODULE: no image here
        "hosts": hosts,
        "hyperparameters": user_hyperparameters(request),
        "input_config_dir": posixpath.join(base, "input", "config"),
        "input_data_config": input_data_config(request),
        "input_dir": posixpath.join(base, "input"),
        "instance_groups": list(group),
        "instance_groups_dict": group,
        "is_hetero": False,
        "is_master": host == (distribution_hosts or hosts)[0],
        "is_modelparallel_enabled": None if mp_parameters is None else mp_parameters != {},
        "is_smddpmprun_installed": False,
        "is_smddprun_installed": False,
        "job_name": job_name,
        "log_level": toolkit.get("sagemaker_container_log_level", logging.INFO),
        "master_hostname": (distribution_hosts or hosts)[0],
        "model_dir": posixpath.join(base, "model"),
        "module_dir": str(toolkit.get("sagemaker_submit_directory", posixpath.join(base, "code"))),
        "module_name": module.removesuffix(".py"),
        "network_interface_name": resources["network_interface_name"],
        "num_cpus": os.cpu_count() or 1,
        "num_gpus": 0,
        "num_neurons": 0,
        "output_data_dir": posixpath.join(base, "output", "data"),
        "output_dir": posixpath.join(base, "output"),
        "output_intermediate_dir": posixpath.join(base, "output", "intermediate"),
        "resource_config": resources,
        "topology": [],
        "user_entry_point": program,
    }


_ENV_KEYS = (
    "hosts",
    "network_interface_name",
    "user_entry_point",
    "resource_config",
    "input_data_config",
    "output_data_dir",
    "current_host",
    "current_instance_type",
    "current_instance_group",
    "current_instance_group_hosts",
    "instance_groups",
    "instance_groups_dict",
    "distribution_instance_groups",
    "is_hetero",
    "module_name",
    "log_level",
    "framework_module",
    "input_dir",
    "input_config_dir",
    "output_dir",
    "num_cpus",
    "num_gpus",
    "num_neurons",
    "model_dir",
    "module_dir",
    "output_intermediate_dir",
)


def contract_variables(
    request: Mapping[str, Any], job_name: str, arn: str, host: str, base: str
) -> dict[str, str]:
    """Every variable of the container contract (toolkit's and platform's).

    :param request: the CreateTrainingJob request.
    :param job_name: the job's name.
    :param arn: the job's ARN (``TRAINING_JOB_ARN``).
    :param host: the current host.
    :param base: the container's ``/opt/ml`` as the process sees it.
    """
    env = toolkit_environment(request, job_name, host, base)
    values: dict[str, Any] = {key: env[key] for key in _ENV_KEYS}
    values.update(
        hps=env["hyperparameters"],
        framework_params=env["additional_framework_parameters"],
        channels=sorted(env["channel_input_dirs"]),
        training_env=env,
        user_args=command_args(request),
    )
    for name, path in env["channel_input_dirs"].items():
        values[f"channel_{name}"] = path
    for name, value in env["hyperparameters"].items():
        values[f"hp_{name}"] = value
    variables = {f"SM_{key.upper()}": env_value(value) for key, value in values.items()}
    variables.update(TRAINING_JOB_NAME=job_name, TRAINING_JOB_ARN=arn)
    return variables


# Variables of the backend's own environment a training process may see; nothing else leaks
# (no AWS credentials, no Airflow connections).
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
_ALLOWED_AWS_ENV = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION"})


def process_environment(
    *,
    request: Mapping[str, Any],
    job_name: str,
    arn: str,
    host: str,
    base: str,
    checkpoint_dir: str,
    python: str,
    namespaced: bool,
) -> dict[str, str]:
    """The whole environment of a training process.

    The request's ``Environment`` first (without ``AWS_*`` credentials), then the contract.

    :param request: the CreateTrainingJob request.
    :param job_name: the job's name.
    :param arn: the job's ARN.
    :param host: the current host.
    :param base: the container's ``/opt/ml`` as the process sees it.
    :param checkpoint_dir: the checkpoint dir as the process sees it (``SM_CHECKPOINT_DIR``).
    :param python: the interpreter; its directory leads ``PATH`` (``python3`` of the image).
    :param namespaced: whether the process runs in its own namespaces (else
        ``SAGEMAKER_BASE_DIR`` tells the toolkit where ``/opt/ml`` is).
    """
    env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
    env["PATH"] = os.pathsep.join(p for p in (os.path.dirname(python), env.get("PATH")) if p)
    for key, value in (request.get("Environment") or {}).items():
        if not key.startswith("AWS_") or key in _ALLOWED_AWS_ENV:  # never credentials
            env[str(key)] = str(value)
    env.update(contract_variables(request, job_name, arn, host, base))
    env.update(
        SM_CHECKPOINT_DIR=checkpoint_dir,  # emulator addition, kept for older scripts
        HOME=base,
        TMPDIR=posixpath.join(base, "tmp"),
        PYTHONPATH=posixpath.join(base, "code"),
        PYTHONUNBUFFERED="1",  # lines reach the log as they are printed
        PYTHONDONTWRITEBYTECODE="1",
    )
    if not namespaced:
        env["SAGEMAKER_BASE_DIR"] = base
    return env
