"""The one vocabulary for the state of a SageMaker training job.

Every status string of the project lives here: the operator, the sensor, the trigger, the retry
policy and the embedded backend all import these enums instead of writing literals.

Decisions are taken on ``TrainingJobStatus`` + ``SecondaryStatus`` (and, for on-demand capacity
failures, on the one documented ``FailureReason`` prefix, in :func:`classify_outcome` only), never
on ``StatusMessage`` text, which AWS says may change.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

_seen_unknown: set[tuple[str, str]] = set()


def _warn_unknown_once(kind: str, value: str) -> None:
    """Log a status AWS added after this release, once per process and value."""
    if (kind, value) not in _seen_unknown:
        _seen_unknown.add((kind, value))
        log.warning("Unknown %s %r: treated as not terminal.", kind, value)


class _OpenStrEnum(StrEnum):
    """A ``str`` enum that accepts values it does not know.

    AWS may add statuses at any time; a running DAG must not crash on one. An unknown value becomes
    a pseudo-member (not cached, in no grouping, so never terminal) and is logged once.
    """

    @classmethod
    def _missing_(cls, value: object) -> _OpenStrEnum | None:
        if not isinstance(value, str) or not value:
            return None
        _warn_unknown_once(cls.__name__, value)
        member = str.__new__(cls, value)
        member._name_ = "UNKNOWN"
        member._value_ = value
        return member

    @property
    def is_known(self) -> bool:
        """Whether this value is one this release knows (not an AWS addition)."""
        return self._name_ != "UNKNOWN"


class TrainingJobStatus(_OpenStrEnum):
    """``TrainingJobStatus`` of DescribeTrainingJob.

    Legal transitions: ``InProgress -> Completed | Failed | Stopping``; ``Stopping -> Stopped``;
    a finished job may go to ``Deleting`` when it is deleted.
    """

    IN_PROGRESS = "InProgress"  # anything between creation and the end, interruptions included
    COMPLETED = "Completed"  # the model was uploaded
    FAILED = "Failed"  # algorithm error, capacity error of an on-demand job, internal error
    STOPPING = "Stopping"  # StopTrainingJob, or MaxWait/MaxRuntime reached; Stopped follows
    STOPPED = (
        "Stopped"  # see SecondaryStatus for why: Stopped, MaxWaitTimeExceeded, MaxRuntimeExceeded
    )
    DELETING = "Deleting"  # a finished job being deleted; its result is final

    @property
    def is_terminal(self) -> bool:
        """Whether the job has ended and no status will follow but ``Deleting``."""
        return self in TERMINAL_STATUSES

    @property
    def is_running(self) -> bool:
        """Whether the job may still be billing (running or stopping)."""
        return self in RUNNING_STATUSES


TERMINAL_STATUSES: frozenset[TrainingJobStatus] = frozenset(
    {
        TrainingJobStatus.COMPLETED,
        TrainingJobStatus.FAILED,
        TrainingJobStatus.STOPPED,
        TrainingJobStatus.DELETING,
    }
)
RUNNING_STATUSES: frozenset[TrainingJobStatus] = frozenset(
    {TrainingJobStatus.IN_PROGRESS, TrainingJobStatus.STOPPING}
)


class SecondaryStatus(_OpenStrEnum):
    """``SecondaryStatus`` of DescribeTrainingJob: where in its lifecycle the job is.

    The spot lifecycles of the SageMaker developer guide (all under ``InProgress`` until the end):

    - no interruption: ``Starting -> Downloading -> Training -> Uploading -> Completed``;
    - one interruption: ``Starting -> Downloading -> Training -> Interrupted -> Starting ->
      Downloading -> Training -> Uploading -> Completed``;
    - interrupted twice, MaxWait exceeded: ``... -> Training -> Interrupted -> Downloading ->
      Training -> Stopping -> MaxWaitTimeExceeded`` (no ``Starting`` after the second interruption);
    - never launched: ``Starting -> Stopping -> MaxWaitTimeExceeded``.

    :data:`SPOT_TRANSITIONS` lists the legal moves; the embedded backend checks its own against it.
    """

    PENDING = "Pending"  # accepted, not yet started
    STARTING = "Starting"  # waiting for (spot) capacity and launching instances
    LAUNCHING_ML_INSTANCES = "LaunchingMLInstances"  # detail of Starting on some job types
    PREPARING_TRAINING_STACK = "PreparingTrainingStack"  # detail of Starting on some job types
    DOWNLOADING = "Downloading"  # input channels and checkpoints copied onto the instances
    DOWNLOADING_TRAINING_IMAGE = "DownloadingTrainingImage"  # the container image is pulled
    TRAINING = "Training"  # the training process runs
    UPLOADING = "Uploading"  # the model directory is packed and uploaded
    INTERRUPTED = "Interrupted"  # the spot instances were reclaimed; the job waits for capacity
    RESTARTING = "Restarting"  # restart after an internal error (RetryStrategy)
    UPDATING = "Updating"  # UpdateTrainingJob in progress (profiler, warm pool)
    STOPPING = "Stopping"  # on the way to Stopped; the reason shows in the terminal value
    STOPPED = "Stopped"  # stopped by StopTrainingJob (a user)
    MAX_RUNTIME_EXCEEDED = "MaxRuntimeExceeded"  # training time reached MaxRuntimeInSeconds
    MAX_WAIT_TIME_EXCEEDED = "MaxWaitTimeExceeded"  # creation + MaxWaitTimeInSeconds passed
    COMPLETED = "Completed"  # the model was uploaded
    FAILED = "Failed"  # see FailureReason

    @property
    def is_terminal(self) -> bool:
        """Whether this secondary status only appears on a finished job."""
        return self in TERMINAL_SECONDARY

    @property
    def is_billable(self) -> bool:
        """Whether instances are held in this phase (it counts as training time)."""
        return self in BILLABLE_SECONDARY


TERMINAL_SECONDARY: frozenset[SecondaryStatus] = frozenset(
    {
        SecondaryStatus.STOPPED,
        SecondaryStatus.MAX_RUNTIME_EXCEEDED,
        SecondaryStatus.MAX_WAIT_TIME_EXCEEDED,
        SecondaryStatus.COMPLETED,
        SecondaryStatus.FAILED,
    }
)
# Phases during which SageMaker counts TrainingTimeInSeconds (instances are up).
BILLABLE_SECONDARY: frozenset[SecondaryStatus] = frozenset(
    {SecondaryStatus.DOWNLOADING, SecondaryStatus.TRAINING, SecondaryStatus.UPLOADING}
)
WAITING_SECONDARY: frozenset[SecondaryStatus] = frozenset(
    {
        SecondaryStatus.PENDING,
        SecondaryStatus.STARTING,
        SecondaryStatus.LAUNCHING_ML_INSTANCES,
        SecondaryStatus.PREPARING_TRAINING_STACK,
        SecondaryStatus.INTERRUPTED,
        SecondaryStatus.RESTARTING,
    }
)

_S = SecondaryStatus
_ENDINGS = frozenset({_S.STOPPING, _S.FAILED})
# Legal SecondaryStatus moves of a spot (or on-demand) job, as the developer guide draws them.
SPOT_TRANSITIONS: Mapping[SecondaryStatus, frozenset[SecondaryStatus]] = {
    _S.PENDING: frozenset({_S.STARTING}) | _ENDINGS,
    _S.STARTING: frozenset({_S.DOWNLOADING}) | _ENDINGS,
    _S.DOWNLOADING: frozenset({_S.TRAINING, _S.INTERRUPTED, _S.STARTING}) | _ENDINGS,
    _S.TRAINING: frozenset({_S.UPLOADING, _S.INTERRUPTED, _S.STARTING}) | _ENDINGS,
    _S.UPLOADING: frozenset({_S.COMPLETED, _S.INTERRUPTED}) | _ENDINGS,
    # After an interruption SageMaker shows Starting, or goes straight to Downloading.
    _S.INTERRUPTED: frozenset({_S.STARTING, _S.DOWNLOADING}) | _ENDINGS,
    _S.STOPPING: frozenset({_S.STOPPED, _S.MAX_WAIT_TIME_EXCEEDED, _S.MAX_RUNTIME_EXCEEDED}),
}


class JobOutcome(StrEnum):
    """How a finished training job ended, as the retry policy and the report see it."""

    COMPLETED = "COMPLETED"  # Completed
    MAX_WAIT_EXCEEDED = (
        "MAX_WAIT_EXCEEDED"  # Stopped / MaxWaitTimeExceeded: spot never came back in time
    )
    MAX_RUNTIME_EXCEEDED = "MAX_RUNTIME_EXCEEDED"  # Stopped / MaxRuntimeExceeded
    STOPPED = "STOPPED"  # Stopped / Stopped: StopTrainingJob, a user's decision
    CAPACITY_ERROR = "CAPACITY_ERROR"  # Failed, FailureReason "CapacityError: ..."
    FAILED = "FAILED"  # Failed for any other reason (algorithm, internal)

    @property
    def is_success(self) -> bool:
        """Whether the job produced its model."""
        return self is JobOutcome.COMPLETED


# The one documented FailureReason prefix for capacity failures of on-demand jobs.
CAPACITY_ERROR_PREFIX = "CapacityError"


def classify_outcome(
    status: TrainingJobStatus | str,
    secondary: SecondaryStatus | str | None,
    failure_reason: str | None = None,
) -> JobOutcome | None:
    """Classify a job's outcome from its statuses; None while it has not ended.

    The only place that reads ``FailureReason``: AWS documents the ``CapacityError`` prefix for
    capacity failures, and that is the one piece of text a decision may rest on.

    :param status: ``TrainingJobStatus``.
    :param secondary: ``SecondaryStatus`` (may be missing on old or partial responses).
    :param failure_reason: ``FailureReason``, read only for the documented prefix.
    """
    primary = TrainingJobStatus(status)
    second = SecondaryStatus(secondary) if secondary else None
    if primary is TrainingJobStatus.DELETING:
        # The job ended before it was deleted; its secondary status still tells how.
        primary = _primary_of(second)
    if primary is TrainingJobStatus.COMPLETED:
        return JobOutcome.COMPLETED
    if primary is TrainingJobStatus.STOPPED:
        if second is SecondaryStatus.MAX_WAIT_TIME_EXCEEDED:
            return JobOutcome.MAX_WAIT_EXCEEDED
        if second is SecondaryStatus.MAX_RUNTIME_EXCEEDED:
            return JobOutcome.MAX_RUNTIME_EXCEEDED
        return JobOutcome.STOPPED
    if primary is TrainingJobStatus.FAILED:
        if (failure_reason or "").startswith(CAPACITY_ERROR_PREFIX):
            return JobOutcome.CAPACITY_ERROR
        return JobOutcome.FAILED
    return None


def _primary_of(secondary: SecondaryStatus | None) -> TrainingJobStatus:
    """The terminal primary status that a terminal secondary status sits under."""
    if secondary is SecondaryStatus.COMPLETED:
        return TrainingJobStatus.COMPLETED
    if secondary in TERMINAL_SECONDARY and secondary is not SecondaryStatus.FAILED:
        return TrainingJobStatus.STOPPED
    return TrainingJobStatus.FAILED


def savings_percent(billable_seconds: int | None, training_seconds: int | None) -> float | None:
    """Managed spot savings by the documented formula ``(1 - billable / training) * 100``.

    :param billable_seconds: ``BillableTimeInSeconds`` (per instance).
    :param training_seconds: ``TrainingTimeInSeconds`` (per instance).
    :return: the percentage, or None where the API gives no figures.
    """
    if billable_seconds is None or not training_seconds:
        return None
    return round((1 - billable_seconds / training_seconds) * 100, 2)


def to_datetime(value: datetime | str | float | int | None) -> datetime | None:
    """Read a timestamp as boto3 (datetime), JSON 1.1 (epoch seconds) or ISO-8601 gives it.

    :param value: the timestamp in any of those forms, or None.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, tz=UTC)
    else:
        moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def json_safe(value: Any) -> Any:
    """A copy of an API response with datetimes as ISO-8601 strings (plain JSON).

    :param value: the response, or any part of it.
    """
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class Transition:
    """One entry of ``SecondaryStatusTransitions``."""

    status: SecondaryStatus
    start: datetime | None
    end: datetime | None = None
    message: str = ""

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Transition:
        """Parse one ``SecondaryStatusTransitions`` item.

        :param raw: ``{Status, StartTime, EndTime?, StatusMessage?}``.
        """
        return cls(
            status=SecondaryStatus(raw["Status"]),
            start=to_datetime(raw.get("StartTime")),
            end=to_datetime(raw.get("EndTime")),
            message=str(raw.get("StatusMessage") or ""),
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, ISO-8601 timestamps."""
        return {
            "status": self.status.value,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transition:
        """Inverse of :meth:`to_json`.

        :param data: a dict made by :meth:`to_json`.
        """
        return cls(
            status=SecondaryStatus(data["status"]),
            start=to_datetime(data.get("start")),
            end=to_datetime(data.get("end")),
            message=str(data.get("message") or ""),
        )


def count_interruptions(transitions: Iterable[Transition]) -> int:
    """How many times the job's spot instances were interrupted.

    :param transitions: the job's transitions, oldest first.
    """
    return sum(1 for t in transitions if t.status is SecondaryStatus.INTERRUPTED)


@dataclass(frozen=True)
class SpotJobReport:
    """What one DescribeTrainingJob response says about a (spot) training job."""

    job_name: str
    status: TrainingJobStatus
    secondary_status: SecondaryStatus | None
    outcome: JobOutcome | None
    transitions: tuple[Transition, ...] = ()
    job_arn: str | None = None
    managed_spot: bool = False
    training_seconds: int | None = None
    billable_seconds: int | None = None
    instance_count: int = 1
    instance_type: str | None = None
    model_artifact_uri: str | None = None
    checkpoint_s3_uri: str | None = None
    failure_reason: str | None = None
    creation_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def interruptions(self) -> int:
        """Number of spot interruptions the job went through."""
        return count_interruptions(self.transitions)

    @property
    def savings_percent(self) -> float | None:
        """Spot savings by the documented formula; None while the API gives no figures."""
        return savings_percent(self.billable_seconds, self.training_seconds)

    @property
    def cluster_billable_seconds(self) -> int | None:
        """Billable instance-seconds of the whole cluster (the API's figure is per instance)."""
        if self.billable_seconds is None:
            return None
        return self.billable_seconds * self.instance_count

    @property
    def is_terminal(self) -> bool:
        """Whether the job has ended."""
        return self.outcome is not None

    @classmethod
    def from_describe(cls, response: Mapping[str, Any]) -> SpotJobReport:
        """Parse a DescribeTrainingJob response (boto3 datetimes or raw epoch seconds).

        :param response: the response dict.
        """
        status = TrainingJobStatus(response["TrainingJobStatus"])
        secondary_raw = response.get("SecondaryStatus")
        secondary = SecondaryStatus(secondary_raw) if secondary_raw else None
        failure = response.get("FailureReason")
        resources = response.get("ResourceConfig") or {}
        return cls(
            job_name=response["TrainingJobName"],
            status=status,
            secondary_status=secondary,
            outcome=classify_outcome(status, secondary, failure),
            transitions=tuple(
                Transition.from_api(t) for t in response.get("SecondaryStatusTransitions") or ()
            ),
            job_arn=response.get("TrainingJobArn"),
            managed_spot=bool(response.get("EnableManagedSpotTraining", False)),
            training_seconds=_opt_int(response.get("TrainingTimeInSeconds")),
            billable_seconds=_opt_int(response.get("BillableTimeInSeconds")),
            instance_count=int(resources.get("InstanceCount") or 1),
            instance_type=resources.get("InstanceType"),
            model_artifact_uri=(response.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
            checkpoint_s3_uri=(response.get("CheckpointConfig") or {}).get("S3Uri"),
            failure_reason=failure,
            creation_time=to_datetime(response.get("CreationTime")),
            end_time=to_datetime(response.get("TrainingEndTime")),
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (ISO-8601 timestamps), safe for XCom and trigger events."""
        return {
            "job_name": self.job_name,
            "status": self.status.value,
            "secondary_status": self.secondary_status.value if self.secondary_status else None,
            "outcome": self.outcome.value if self.outcome else None,
            "transitions": [t.to_json() for t in self.transitions],
            "interruptions": self.interruptions,
            "job_arn": self.job_arn,
            "managed_spot": self.managed_spot,
            "training_seconds": self.training_seconds,
            "billable_seconds": self.billable_seconds,
            "instance_count": self.instance_count,
            "instance_type": self.instance_type,
            "savings_percent": self.savings_percent,
            "model_artifact_uri": self.model_artifact_uri,
            "checkpoint_s3_uri": self.checkpoint_s3_uri,
            "failure_reason": self.failure_reason,
            "creation_time": _iso(self.creation_time),
            "end_time": _iso(self.end_time),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpotJobReport:
        """Inverse of :meth:`to_json` (derived figures are recomputed, not trusted).

        :param data: a dict made by :meth:`to_json`.
        """
        secondary = data.get("secondary_status")
        outcome = data.get("outcome")
        return cls(
            job_name=data["job_name"],
            status=TrainingJobStatus(data["status"]),
            secondary_status=SecondaryStatus(secondary) if secondary else None,
            outcome=JobOutcome(outcome) if outcome else None,
            transitions=tuple(Transition.from_json(t) for t in data.get("transitions") or ()),
            job_arn=data.get("job_arn"),
            managed_spot=bool(data.get("managed_spot", False)),
            training_seconds=_opt_int(data.get("training_seconds")),
            billable_seconds=_opt_int(data.get("billable_seconds")),
            instance_count=int(data.get("instance_count") or 1),
            instance_type=data.get("instance_type"),
            model_artifact_uri=data.get("model_artifact_uri"),
            checkpoint_s3_uri=data.get("checkpoint_s3_uri"),
            failure_reason=data.get("failure_reason"),
            creation_time=to_datetime(data.get("creation_time")),
            end_time=to_datetime(data.get("end_time")),
        )

    def summary_line(self) -> str:
        """One readable line: name, outcome, interruptions, seconds, savings, FailureReason."""
        savings = self.savings_percent
        return (
            f"{self.job_name}: {self.outcome.value if self.outcome else self.status.value}"
            f" ({self.secondary_status.value if self.secondary_status else '-'}),"
            f" interruptions={self.interruptions},"
            f" training={_fmt(self.training_seconds)}s, billable={_fmt(self.billable_seconds)}s,"
            f" savings={'-' if savings is None else f'{savings:.1f}%'}" + self.failure_note()
        )

    def failure_note(self) -> str:
        """``; FailureReason: <text>`` when DescribeTrainingJob gave one, else empty.

        The reason is shown as SageMaker wrote it (the only place a user learns why a job
        failed, e.g. a missing input bucket); nothing decides on it.
        """
        return f"; FailureReason: {self.failure_reason}" if self.failure_reason else ""


def _fmt(value: int | None) -> str:
    return "-" if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else int(number)
