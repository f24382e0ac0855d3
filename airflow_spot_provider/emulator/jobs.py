"""One training job: its request, its persisted state, and how DescribeTrainingJob shows it.

The state machine that moves jobs lives in :mod:`.machine`; this module only holds data and
renders it in the service's shapes.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_spot_provider.emulator.rules import DEFAULT_MAX_RUNTIME_SECONDS
from airflow_spot_provider.emulator.stages import model_artifact_uri
from airflow_spot_provider.emulator.validation import operation_model
from airflow_spot_provider.lifecycle import BILLABLE_SECONDARY, SecondaryStatus, TrainingJobStatus

_S = SecondaryStatus
# StatusMessage per SecondaryStatus in SageMaker's wording. Informational only: clients must not
# decide on it (AWS says messages may change).
STATUS_MESSAGES: Mapping[SecondaryStatus, str] = {
    _S.STARTING: "Preparing the instances for training",
    _S.DOWNLOADING: "Downloading input data",
    _S.TRAINING: "Training image download completed. Training in progress.",
    _S.UPLOADING: "Uploading generated training model",
    _S.COMPLETED: "Training job completed",
    _S.INTERRUPTED: "Spot instance interrupted",
    _S.STOPPING: "Stopping the training job",
    _S.STOPPED: "Training job stopped",
    _S.MAX_WAIT_TIME_EXCEEDED: "Training job exceeded MaxWaitTimeInSeconds provided",
    _S.MAX_RUNTIME_EXCEEDED: "Training job exceeded MaxRuntimeInSeconds provided",
    _S.FAILED: "Training job failed",
}
NO_CAPACITY_MESSAGE = "Insufficient capacity error from EC2 while launching instances, retrying!"
FAILURE_REASON_LIMIT = 1024

# DescribeTrainingJob echoes the request members that its output shape also has (so not Tags).
_ECHOED: frozenset[str] = frozenset(
    operation_model("sagemaker", "CreateTrainingJob").input_shape.members  # type: ignore[union-attr]
) & frozenset(
    operation_model("sagemaker", "DescribeTrainingJob").output_shape.members  # type: ignore[union-attr]
)
# Flags SageMaker shows as false when the request left them out.
_DEFAULT_FLAGS = (
    "EnableManagedSpotTraining",
    "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption",
)


@dataclass
class JobState:
    """Everything about a job that changes, persisted as JSON on every transition."""

    status: TrainingJobStatus
    secondary: SecondaryStatus
    last_modified: float
    phase_since: float
    transitions: list[dict[str, Any]] = field(default_factory=list)
    training_start: float | None = None
    training_end: float | None = None
    billable_closed: float = 0.0
    billable_since: float | None = None
    starts: int = 0
    interruptions: int = 0
    retries: int = 0
    failure_reason: str | None = None
    model_artifacts: str | None = None
    stop_reason: SecondaryStatus | None = None
    log_stream: str | None = None

    def to_json(self) -> str:
        """The persisted form."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> JobState:
        """Inverse of :meth:`to_json`.

        :param text: the persisted form.
        """
        data = json.loads(text)
        data["status"] = TrainingJobStatus(data["status"])
        data["secondary"] = SecondaryStatus(data["secondary"])
        if data.get("stop_reason"):
            data["stop_reason"] = SecondaryStatus(data["stop_reason"])
        return cls(**data)


class Job:
    """A training job: the immutable request and the mutable :class:`JobState`.

    :param request: the validated CreateTrainingJob request.
    :param created: creation time, epoch seconds.
    :param state: the state.
    :param arn: the job's ARN.
    """

    def __init__(
        self, request: Mapping[str, Any], created: float, state: JobState, arn: str
    ) -> None:
        self.request = dict(request)
        self.name: str = request["TrainingJobName"]
        self.created = created
        self.state = state
        self.arn = arn
        self.spot = bool(request.get("EnableManagedSpotTraining"))
        resources = request.get("ResourceConfig") or {}
        self.instance_type: str = resources.get("InstanceType", "")
        self.instance_count = int(resources.get("InstanceCount") or 1)
        stopping = request.get("StoppingCondition") or {}
        self.max_runtime = int(stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS))
        wait = stopping.get("MaxWaitTimeInSeconds")
        self.max_wait: int | None = None if wait is None else int(wait)
        self.max_retries = int((request.get("RetryStrategy") or {}).get("MaximumRetryAttempts", 0))
        self.checkpoint_uri: str | None = (request.get("CheckpointConfig") or {}).get("S3Uri")

    @functools.cached_property
    def model_uri(self) -> str:
        """``<S3OutputPath>/<job>/output/model.tar.gz``, where the model goes (or would go)."""
        return model_artifact_uri(self.request, self.name)

    @property
    def is_live(self) -> bool:
        """Whether the job holds or waits for instances (counts against quotas)."""
        return self.state.status.is_running

    def billable_seconds(self, now: float) -> float:
        """Instance seconds spent in Downloading, Training and Uploading, over all restarts.

        :param now: epoch seconds.
        """
        open_part = 0.0 if self.state.billable_since is None else now - self.state.billable_since
        return self.state.billable_closed + max(open_part, 0.0)

    def record_transition(self, secondary: SecondaryStatus, now: float, message: str) -> None:
        """Close the current transition and open one for ``secondary``; keep the clocks.

        :param secondary: the new SecondaryStatus.
        :param now: epoch seconds.
        :param message: its StatusMessage.
        """
        state = self.state
        if state.transitions:
            state.transitions[-1]["EndTime"] = now
        entry: dict[str, Any] = {"Status": secondary.value, "StartTime": now}
        if secondary.is_terminal:
            entry["EndTime"] = now
        entry["StatusMessage"] = message
        state.transitions.append(entry)
        was_billable = state.secondary in BILLABLE_SECONDARY and state.billable_since is not None
        if was_billable and secondary not in BILLABLE_SECONDARY:
            state.billable_closed += now - (state.billable_since or now)
            state.billable_since = None
        elif secondary in BILLABLE_SECONDARY and state.billable_since is None:
            state.billable_since = now
        state.secondary = secondary
        state.phase_since = now
        state.last_modified = now

    def training_time(self) -> int | None:
        """``TrainingTimeInSeconds`` of a finished job (None while running or never launched)."""
        seconds = self.billable_seconds(self.state.last_modified)
        if not self.state.status.is_terminal or seconds <= 0:
            return None
        return max(1, round(seconds))

    def billable_time(self, price_ratio: float) -> int | None:
        """``BillableTimeInSeconds``: training time scaled by spot over on-demand price.

        :param price_ratio: spot price over on-demand price of the instance type.
        """
        training = self.training_time()
        if training is None:
            return None
        if not self.spot:
            return training
        return max(1, math.ceil(training * price_ratio - 1e-9))

    def describe(self, price_ratio: float) -> dict[str, Any]:
        """The DescribeTrainingJob response (timestamps as epoch seconds, JSON 1.1 style).

        :param price_ratio: spot over on-demand price of the instance type.
        """
        state = self.state
        out: dict[str, Any] = {k: v for k, v in self.request.items() if k in _ECHOED}
        # SageMaker shows the default MaxRuntimeInSeconds it applied (one day).
        out["StoppingCondition"] = {
            "MaxRuntimeInSeconds": self.max_runtime,
            **(self.request.get("StoppingCondition") or {}),
        }
        for flag in _DEFAULT_FLAGS:
            out.setdefault(flag, False)
        out.update(
            TrainingJobName=self.name,
            TrainingJobArn=self.arn,
            TrainingJobStatus=state.status.value,
            SecondaryStatus=state.secondary.value,
            CreationTime=self.created,
            LastModifiedTime=state.last_modified,
            SecondaryStatusTransitions=[dict(t) for t in state.transitions],
        )
        optional = {
            "TrainingStartTime": state.training_start,
            "TrainingEndTime": state.training_end,
            "FailureReason": state.failure_reason,
            "TrainingTimeInSeconds": self.training_time(),
            "BillableTimeInSeconds": self.billable_time(price_ratio),
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        # A required member of the output shape: SageMaker shows where the model will go from
        # creation on, whether or not the job ever uploads one.
        out["ModelArtifacts"] = {"S3ModelArtifacts": state.model_artifacts or self.model_uri}
        return out

    def summary(self) -> dict[str, Any]:
        """The ``TrainingJobSummary`` of ListTrainingJobs."""
        state = self.state
        item: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "CreationTime": self.created,
            "LastModifiedTime": state.last_modified,
            "TrainingJobStatus": state.status.value,
            "SecondaryStatus": state.secondary.value,
        }
        if state.training_end is not None:
            item["TrainingEndTime"] = state.training_end
        return item


def wall_clock() -> float:
    """Now, in epoch seconds to the millisecond, as SageMaker keeps its timestamps.

    Millisecond values survive the round trip through botocore's datetimes exactly, so a client
    filtering on a time it was given (``CreationTimeAfter``...) compares equal values.
    """
    return round(time.time(), 3)


def clip_reason(reason: str) -> str:
    """A FailureReason within the service's 1,024 characters (the tail is what matters).

    :param reason: the full reason.
    """
    if len(reason) <= FAILURE_REASON_LIMIT:
        return reason
    head = reason.split(":", 1)[0] + ": ..."
    return head + reason[-(FAILURE_REASON_LIMIT - len(head)) :]
