"""Build and validate the CreateTrainingJob request of a managed spot training job.

Nothing invalid may reach the SageMaker API. :func:`build_spot_request` turns a user's base config
(often rendered from Airflow templates, so numbers may arrive as digit strings) plus the spot
arguments into a new request and refuses it with every broken rule at once. The rules are the
explicit ones of the spot feature plus botocore's own model of CreateTrainingJob (types, required
members, minimums via botocore's ParamValidator; maximums and patterns read from the same model), so
a request the builder accepts also passes botocore's parameter validation.

Job names are deterministic (:func:`task_job_base_name`, :func:`attempt_job_name`): the same task
instance and attempt give the same name on every Airflow retry, so a retry finds its job again.

This module holds the builder; the rules live in :mod:`~airflow_spot_provider.request_rules`, the
model checks in :mod:`~airflow_spot_provider.request_model`, the bounded reading of any input in
:mod:`~airflow_spot_provider.request_input` and the names in
:mod:`~airflow_spot_provider.job_names`. Their public names are re-exported here, the one place
callers import from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final, cast

from airflow_spot_provider.exceptions import SpotRequestValidationError, Violation
from airflow_spot_provider.job_names import JOB_NAME_MAX_CHARS, attempt_job_name, task_job_base_name
from airflow_spot_provider.request_input import is_static, load_json, plain_copy, positive_seconds
from airflow_spot_provider.request_model import _cast_ints, _input_shape, _seconds_or_none
from airflow_spot_provider.request_rules import (
    _MAX_RUN,
    _MAX_WAIT,
    BUILTIN_ALGORITHM_REPOSITORIES,
    BUILTIN_NO_CHECKPOINT_MAX_WAIT_SECONDS,
    DEFAULT_MAX_RUNTIME_SECONDS,
    HYPERPARAMETER_MAX_CHARS,
    JOB_NAME_PATTERN,
    KEEP_ALIVE_MAX_SECONDS,
    S3_URI_PATTERN,
    SAGEMAKER_MAX_RUNTIME_SECONDS,
    SAGEMAKER_MAX_WAIT_SECONDS,
    _first_per_field,
    check_spot_request,
    is_builtin_algorithm_image,
    validate_spot_request,
    validate_training_request,
)

__all__ = [
    "BUILTIN_ALGORITHM_REPOSITORIES",
    "BUILTIN_NO_CHECKPOINT_MAX_WAIT_SECONDS",
    "DEFAULT_CHECKPOINT_LOCAL_PATH",
    "DEFAULT_MAX_RUNTIME_SECONDS",
    "DEFAULT_TRAINING_INPUT_MODE",
    "HYPERPARAMETER_MAX_CHARS",
    "JOB_NAME_MAX_CHARS",
    "JOB_NAME_PATTERN",
    "KEEP_ALIVE_MAX_SECONDS",
    "S3_URI_PATTERN",
    "SAGEMAKER_MAX_RUNTIME_SECONDS",
    "SAGEMAKER_MAX_WAIT_SECONDS",
    "attempt_job_name",
    "build_spot_request",
    "check_spot_request",
    "is_builtin_algorithm_image",
    "is_static",
    "positive_seconds",
    "task_job_base_name",
    "to_seconds",
    "validate_spot_request",
    "validate_training_request",
]

DEFAULT_CHECKPOINT_LOCAL_PATH: Final = "/opt/ml/checkpoints/"
DEFAULT_TRAINING_INPUT_MODE: Final = "File"
_SECONDS_RULE = "must be a whole number of seconds: an int, a digit string or a timedelta"
# Ints past this many bits print as more digits than a hyperparameter value may hold (and may pass
# Python's int-to-text limit): they are refused as ints rather than converted.
_HYPERPARAMETER_INT_BITS: Final = HYPERPARAMETER_MAX_CHARS * 4


def to_seconds(value: int | str | float | timedelta, field: str) -> int:
    """Return ``value`` as whole seconds; digit strings come from rendered Airflow templates.

    :param value: seconds as an int, a digit string, a whole float, or a timedelta.
    :param field: the request field it is for, named in the error.
    :raises SpotRequestValidationError: if ``value`` is no whole number of seconds.
    """
    seconds = _seconds_or_none(value)
    if seconds is None:
        raise SpotRequestValidationError([Violation(field, value, _SECONDS_RULE)])
    return seconds


def _load_config(config: Mapping[str, Any] | str, found: list[Violation]) -> dict[str, Any] | None:
    if isinstance(config, str):
        config = load_json(config, "config", found)
        if config is None:
            return None
    if not isinstance(config, Mapping):
        found.append(Violation("config", config, "must be a mapping (a CreateTrainingJob request)"))
        return None
    return cast("dict[str, Any] | None", plain_copy(config, "", found))


def _refuse_given_by_the_builder(request: dict[str, Any], found: list[Violation]) -> None:
    """The config may not set what the builder sets: the spot flag and the job name.

    Overriding either silently would hide a user's mistake: an on-demand config run on spot, a
    name that is not the job's.
    """
    spot = request.get("EnableManagedSpotTraining", True)
    if spot is not True:
        rule = (
            "must be true or left out: this builds managed spot training requests (the retry"
            " policy's on_demand_fallback or deadline_aware moves an attempt to on-demand)"
        )
        found.append(Violation("EnableManagedSpotTraining", spot, rule))
    if "TrainingJobName" in request:
        rule = (
            "must not be in config: the job name is given apart (the operator makes one per"
            " attempt from its job_name)"
        )
        found.append(Violation("TrainingJobName", request["TrainingJobName"], rule))


def _fill_stopping_condition(
    request: dict[str, Any], max_run: Any, max_wait: Any, found: list[Violation]
) -> None:
    stop = request.setdefault("StoppingCondition", {})
    if not isinstance(stop, dict):
        return  # the validation names the wrong type
    stop.setdefault("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
    for field, given in ((_MAX_RUN, max_run), (_MAX_WAIT, max_wait)):
        key = field.rpartition(".")[2]
        value = given if given is not None else stop.get(key)
        if value is not None:
            seconds = _seconds_or_none(value)
            stop[key] = value if seconds is None else seconds
            if seconds is None:
                found.append(Violation(field, value, _SECONDS_RULE))


def _fill_checkpoint(request: dict[str, Any], s3_uri: str | None, local_path: str | None) -> None:
    checkpoint = request.get("CheckpointConfig")
    if s3_uri is not None or local_path is not None:
        checkpoint = dict(checkpoint) if isinstance(checkpoint, Mapping) else {}
        given = {"S3Uri": s3_uri, "LocalPath": local_path}
        checkpoint.update({key: value for key, value in given.items() if value is not None})
        request["CheckpointConfig"] = checkpoint
    if isinstance(checkpoint, dict) and "S3Uri" in checkpoint:
        # The service's default, written out so the request says where checkpoints go.
        checkpoint.setdefault("LocalPath", DEFAULT_CHECKPOINT_LOCAL_PATH)


def _fill_defaults(request: dict[str, Any]) -> None:
    spec = request.get("AlgorithmSpecification")
    if isinstance(spec, dict):
        spec.setdefault("TrainingInputMode", DEFAULT_TRAINING_INPUT_MODE)
    hyperparameters = request.get("HyperParameters")
    if isinstance(hyperparameters, dict):
        # SageMaker takes strings only; JSON keeps numbers and booleans readable to the script.
        for key, value in hyperparameters.items():
            if isinstance(value, bool | float) or (
                isinstance(value, int) and value.bit_length() <= _HYPERPARAMETER_INT_BITS
            ):
                hyperparameters[key] = json.dumps(value)


def build_spot_request(
    config: Mapping[str, Any] | str,
    *,
    checkpoint_s3_uri: str | None = None,
    checkpoint_local_path: str | None = None,
    max_run: int | str | timedelta | None = None,
    max_wait: int | str | timedelta | None = None,
    job_name: str | None = None,
) -> dict[str, Any]:
    """Build a managed spot CreateTrainingJob request and validate it before any AWS call.

    The result is a new dict (``config`` is never changed) with ``EnableManagedSpotTraining``
    true (``config`` may leave it out or set it true, nothing else; nor may it hold a
    ``TrainingJobName``), ``StoppingCondition`` from ``max_run``/``max_wait`` (they override
    ``config``; a missing ``MaxRuntimeInSeconds`` gets the service default of one day),
    ``CheckpointConfig`` from the checkpoint arguments, ``TrainingInputMode`` defaulting to
    ``File``, digit strings cast to int where the API wants an integer, numbers and booleans of
    ``HyperParameters`` as JSON strings.
    Without ``job_name`` the name is not required yet: set it later and call
    :func:`check_spot_request`.

    :param config: the user's base CreateTrainingJob request, as a mapping or JSON text.
    :param checkpoint_s3_uri: ``CheckpointConfig.S3Uri``: reuse it to resume from checkpoints.
    :param checkpoint_local_path: ``CheckpointConfig.LocalPath`` (default /opt/ml/checkpoints/).
    :param max_run: ``MaxRuntimeInSeconds``: training time, summed over restarts.
    :param max_wait: ``MaxWaitTimeInSeconds``: waiting plus training, from creation.
    :param job_name: ``TrainingJobName``.
    :raises SpotRequestValidationError: with every violation.
    """
    found: list[Violation] = []
    request = _load_config(config, found)
    if request is None:
        raise SpotRequestValidationError(found)
    _refuse_given_by_the_builder(request, found)
    request["EnableManagedSpotTraining"] = True
    if job_name is not None:
        request["TrainingJobName"] = job_name
    _fill_stopping_condition(request, max_run, max_wait, found)
    _fill_checkpoint(request, checkpoint_s3_uri, checkpoint_local_path)
    _fill_defaults(request)
    _cast_ints(request, _input_shape())
    found.extend(validate_spot_request(request, require_name=False))
    if found:
        raise SpotRequestValidationError(_first_per_field(found))
    return request
