"""SageMaker's semantic rules for CreateTrainingJob, beyond the service model's constraints.

Messages the facts page gives are used verbatim; the ones it marks *unverified* are grouped below
so that a correction is one edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_spot_provider.emulator.errors import ValidationError
from airflow_spot_provider.emulator.images import ImageKind, UnknownImageError, resolve_image
from airflow_spot_provider.emulator.sandbox import Sandbox, SandboxError

# Verified wording (SAGEMAKER_FACTS.md).
MAX_WAIT_WITHOUT_SPOT = (
    "Invalid MaxWaitTimeInSeconds. It is only supported when EnableManagedSpotTraining is set to "
    "true"
)
# Partly verified (checked 2026-11-29 in public sources): no AWS page quotes the service's answer
# to a spot job without MaxWaitTimeInSeconds or with one below MaxRuntimeInSeconds. Public
# notebooks written against the service (a DeepAR spot example, two copies) note next to
# ``max_wait`` that "It must be present and be greater than or equal to MaxRuntimeInSeconds",
# which reads as the service's sentence; the "Invalid MaxWaitTimeInSeconds." prefix follows the
# verified message above. The same sentence answers both cases. The values in parentheses are the
# emulator's addition (this project's rule: name the field, the value and the rule).
MAX_WAIT_RULE = (
    "Invalid MaxWaitTimeInSeconds. It must be present and be greater than or equal to "
    "MaxRuntimeInSeconds"
)
MAX_WAIT_MISSING = MAX_WAIT_RULE + " (MaxWaitTimeInSeconds is missing)"
MAX_WAIT_BELOW_RUNTIME = MAX_WAIT_RULE + " ({max_wait} < {max_runtime})"
# Unverified wording: a plausible message in the service's style, kept in this one place.
MAX_RUNTIME_TOO_LONG = (
    "Invalid MaxRuntimeInSeconds. It must be less than or equal to {limit} (28 days), got {value}"
)

DEFAULT_MAX_RUNTIME_SECONDS = 86_400  # SageMaker's default: one day
MAX_RUNTIME_LIMIT_SECONDS = 2_419_200  # 28 days


def _stopping_rules(request: Mapping[str, Any]) -> None:
    spot = bool(request.get("EnableManagedSpotTraining"))
    stopping = request.get("StoppingCondition") or {}
    max_runtime = stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
    max_wait = stopping.get("MaxWaitTimeInSeconds")
    if max_runtime > MAX_RUNTIME_LIMIT_SECONDS:
        raise ValidationError(
            MAX_RUNTIME_TOO_LONG.format(limit=MAX_RUNTIME_LIMIT_SECONDS, value=max_runtime)
        )
    if max_wait is not None and not spot:
        raise ValidationError(MAX_WAIT_WITHOUT_SPOT)
    if spot and max_wait is None:
        raise ValidationError(MAX_WAIT_MISSING)
    if max_wait is not None and max_wait < max_runtime:
        raise ValidationError(
            MAX_WAIT_BELOW_RUNTIME.format(max_wait=max_wait, max_runtime=max_runtime)
        )


def _resource_rules(request: Mapping[str, Any]) -> None:
    resources = request.get("ResourceConfig") or {}
    if resources.get("InstanceGroups"):
        raise ValidationError(
            "ResourceConfig.InstanceGroups (heterogeneous clusters) is not supported by the spot "
            "emulator; give InstanceType and InstanceCount"
        )
    if not resources.get("InstanceType"):
        raise ValidationError("ResourceConfig.InstanceType is required")
    if int(resources.get("InstanceCount") or 0) < 1:
        raise ValidationError("ResourceConfig.InstanceCount must be at least 1")


def _channel_rules(request: Mapping[str, Any]) -> None:
    seen: set[str] = set()
    for channel in request.get("InputDataConfig") or ():
        name = channel["ChannelName"]
        if name in seen:
            raise ValidationError(f"Channel names must be unique; {name!r} appears twice")
        seen.add(name)
        if "S3DataSource" not in (channel.get("DataSource") or {}):
            raise ValidationError(
                f"Channel {name!r}: only S3DataSource is supported by the spot emulator"
            )


def check_create_request(request: Mapping[str, Any]) -> ImageKind:
    """Apply SageMaker's semantic rules (and the emulator's limits) to a valid-shaped request.

    :param request: a CreateTrainingJob request that passed the model's constraints.
    :returns: how the training image runs here.
    :raises ValidationError: the first rule broken.
    """
    _stopping_rules(request)
    _resource_rules(request)
    _channel_rules(request)
    checkpoint = request.get("CheckpointConfig") or {}
    if checkpoint.get("LocalPath"):
        try:
            Sandbox.validate_local_path(str(checkpoint["LocalPath"]))
        except SandboxError as err:
            raise ValidationError(f"Invalid CheckpointConfig.LocalPath: {err}") from err
    try:
        return resolve_image(request)
    except UnknownImageError as err:
        raise ValidationError(str(err)) from err
