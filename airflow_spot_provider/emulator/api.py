"""The SageMaker operations: CreateTrainingJob, DescribeTrainingJob, StopTrainingJob,
ListTrainingJobs. Each takes the decoded request and returns the response dict, or raises an
:class:`~airflow_spot_provider.emulator.errors.EmulatorError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from botocore.utils import parse_timestamp

from airflow_spot_provider.emulator.errors import (
    DUPLICATE_NAME_MESSAGE,
    NOT_FOUND_MESSAGE,
    QUOTA_MESSAGE,
    STOP_REJECTED_MESSAGE,
    ResourceInUseError,
    ResourceLimitExceededError,
    ValidationError,
)
from airflow_spot_provider.emulator.jobs import Job, wall_clock
from airflow_spot_provider.emulator.machine import Machine
from airflow_spot_provider.emulator.rules import check_create_request
from airflow_spot_provider.emulator.validation import operation_model, validate_input
from airflow_spot_provider.lifecycle import SecondaryStatus, TrainingJobStatus

DEFAULT_MAX_RESULTS = 10
_LIST_FILTERS = (
    "NameContains",
    "StatusEquals",
    "CreationTimeAfter",
    "CreationTimeBefore",
    "LastModifiedTimeAfter",
    "LastModifiedTimeBefore",
    "SortBy",
    "SortOrder",
)
_SORT_KEYS = {
    "Name": lambda job: (job.name,),
    "CreationTime": lambda job: (job.created, job.name),
    "Status": lambda job: (job.state.status.value, job.created, job.name),
}


def _epoch(value: Any) -> float:
    """A request timestamp (epoch number from boto3, or a string) as epoch seconds."""
    if isinstance(value, int | float):
        return float(value)
    return parse_timestamp(value).timestamp()


class SageMakerApi:
    """The training-job operations over the :class:`Machine`.

    :param machine: the job state machine.
    """

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def _job(self, params: Mapping[str, Any]) -> Job:
        job = self.machine.jobs.get(str(params.get("TrainingJobName")))
        if job is None:
            raise ValidationError(NOT_FOUND_MESSAGE)
        return job

    def create_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        """``CreateTrainingJob``.

        :param params: the request.
        """
        validate_input(operation_model("sagemaker", "CreateTrainingJob"), params)
        check_create_request(params)
        name = params["TrainingJobName"]
        if name in self.machine.jobs:
            raise ResourceInUseError(DUPLICATE_NAME_MESSAGE.format(arn=self.machine.arn(name)))
        self._check_quota(params)
        job = self.machine.create(params, wall_clock())
        return {"TrainingJobArn": job.arn}

    def _check_quota(self, params: Mapping[str, Any]) -> None:
        resources = params["ResourceConfig"]
        instance_type = resources["InstanceType"]
        config = self.machine.config
        limit = config.quotas.get(instance_type, config.default_quota)
        spot = bool(params.get("EnableManagedSpotTraining"))
        current = self.machine.instances_in_use(instance_type, spot)
        delta = int(resources.get("InstanceCount") or 1)
        if current + delta > limit:
            usage = "spot training job" if spot else "training job"
            raise ResourceLimitExceededError(
                QUOTA_MESSAGE.format(
                    instance_type=instance_type,
                    usage=usage,
                    limit=limit,
                    current=current,
                    delta=delta,
                )
            )

    def describe_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        """``DescribeTrainingJob``.

        :param params: the request.
        """
        validate_input(operation_model("sagemaker", "DescribeTrainingJob"), params)
        job = self._job(params)
        return job.describe(self.machine.market.price_ratio(job.instance_type))

    def stop_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        """``StopTrainingJob``: Stopping now, ``Stopped/Stopped`` after the notice.

        :param params: the request.
        """
        validate_input(operation_model("sagemaker", "StopTrainingJob"), params)
        job = self._job(params)
        if job.state.status is not TrainingJobStatus.IN_PROGRESS:
            raise ValidationError(STOP_REJECTED_MESSAGE.format(status=job.state.status.value))
        self.machine.stop(job, SecondaryStatus.STOPPED, wall_clock())
        return {}

    def list_training_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        """``ListTrainingJobs`` with its filters, sorting and pagination.

        :param params: the request.
        """
        validate_input(operation_model("sagemaker", "ListTrainingJobs"), params)
        jobs = [job for job in self.machine.jobs.values() if _matches(job, params)]
        jobs.sort(
            key=_SORT_KEYS[params.get("SortBy") or "CreationTime"],
            reverse=params.get("SortOrder") == "Descending",
        )
        fingerprint = _fingerprint(params)
        offset = _decode_token(params.get("NextToken"), fingerprint)
        size = int(params.get("MaxResults") or DEFAULT_MAX_RESULTS)
        result: dict[str, Any] = {
            "TrainingJobSummaries": [job.summary() for job in jobs[offset : offset + size]]
        }
        if offset + size < len(jobs):
            result["NextToken"] = _encode_token(offset + size, fingerprint)
        return result


def _matches(job: Job, params: Mapping[str, Any]) -> bool:
    contains = params.get("NameContains")
    # SageMaker matches NameContains without regard to case.
    if contains and contains.lower() not in job.name.lower():
        return False
    status = params.get("StatusEquals")
    if status and job.state.status.value != status:
        return False
    bounds = (
        ("CreationTimeAfter", job.created, 1),
        ("CreationTimeBefore", job.created, -1),
        ("LastModifiedTimeAfter", job.state.last_modified, 1),
        ("LastModifiedTimeBefore", job.state.last_modified, -1),
    )
    for key, value, sign in bounds:
        if params.get(key) is not None and (value - _epoch(params[key])) * sign <= 0:
            return False
    return True


def _fingerprint(params: Mapping[str, Any]) -> str:
    filters = {k: params.get(k) for k in _LIST_FILTERS}
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def _encode_token(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "f": fingerprint}).encode()).decode()


def _decode_token(token: Any, fingerprint: str) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        offset, seen = int(data["o"]), str(data["f"])
    except (binascii.Error, ValueError, TypeError, KeyError) as err:
        raise ValidationError("Invalid pagination token.") from err
    if seen != fingerprint or offset < 0:
        raise ValidationError(
            "Invalid pagination token: the filters or the sort order changed since it was issued."
        )
    return offset
