"""The SageMaker operations: CreateTrainingJob, DescribeTrainingJob, StopTrainingJob,
ListTrainingJobs. Each takes the decoded request and returns the response dict, or raises an
:class:`~airflow_spot_provider.emulator.errors.EmulatorError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
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
from airflow_spot_provider.emulator.listing import KEYS, Key, page
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
        """``ListTrainingJobs`` with its filters, sorting and cursor pagination.

        ``NextToken`` holds the sort key of the last job returned: the next page starts after it
        in the index, so every job present throughout is listed once, whatever changes between
        pages (a job whose status changes may move under ``SortBy=Status``, as on SageMaker).

        :param params: the request.
        """
        validate_input(operation_model("sagemaker", "ListTrainingJobs"), params)
        index = self.machine.index
        jobs = self.machine.jobs
        sort_by = params.get("SortBy") or "CreationTime"
        accept = _filter(params, jobs)
        keys: list[Key] = index.by_sort[sort_by]
        if params.get("LastModifiedTimeAfter") is not None:
            # The jobs changed since then, read from their index: the cost follows the changes.
            key = KEYS[sort_by]
            after = _epoch(params["LastModifiedTimeAfter"])
            keys = sorted(key(jobs[name]) for name in index.modified_after(after))
        fingerprint = _fingerprint(params)
        names, more = page(
            keys,
            descending=params.get("SortOrder") == "Descending",
            cursor=_decode_token(params.get("NextToken"), fingerprint),
            size=int(params.get("MaxResults") or DEFAULT_MAX_RESULTS),
            accept=accept,
        )
        result: dict[str, Any] = {"TrainingJobSummaries": [jobs[n].summary() for n in names]}
        if more:
            result["NextToken"] = _encode_token(KEYS[sort_by](jobs[names[-1]]), fingerprint)
        return result


def _filter(params: Mapping[str, Any], jobs: Mapping[str, Job]) -> Callable[[str], bool]:
    """The filters of a List request as one test of a job name (timestamps parsed once)."""
    contains = str(params.get("NameContains") or "").lower()
    status = params.get("StatusEquals")
    bounds = [
        (field, _epoch(params[key]), sign)
        for key, field, sign in (
            ("CreationTimeAfter", "created", 1),
            ("CreationTimeBefore", "created", -1),
            ("LastModifiedTimeAfter", "last_modified", 1),
            ("LastModifiedTimeBefore", "last_modified", -1),
        )
        if params.get(key) is not None
    ]

    def accept(name: str) -> bool:
        job = jobs[name]
        # SageMaker matches NameContains without regard to case.
        if contains and contains not in name.lower():
            return False
        if status and job.state.status.value != status:
            return False
        values = {"created": job.created, "last_modified": job.state.last_modified}
        # After and Before are strict bounds.
        return all((values[field] - bound) * sign > 0 for field, bound, sign in bounds)

    return accept


def _fingerprint(params: Mapping[str, Any]) -> str:
    filters = {k: params.get(k) for k in _LIST_FILTERS}
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def _encode_token(key: Key, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": key, "f": fingerprint}).encode()).decode()


def _decode_token(token: Any, fingerprint: str) -> Key | None:
    """The cursor of a NextToken (the sort key of the last job returned), or None.

    :raises ValidationError: not a token of this emulator, or of other filters.
    """
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        key, seen = tuple(data["k"]), str(data["f"])
    except (binascii.Error, ValueError, TypeError, KeyError) as err:
        raise ValidationError("Invalid pagination token.") from err
    if seen != fingerprint or not key or not isinstance(key[-1], str):
        raise ValidationError(
            "Invalid pagination token: the filters or the sort order changed since it was issued."
        )
    return key
