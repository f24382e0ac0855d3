"""Typed trigger events, the state a deferred task carries, and the task results (JSON round trip).

A deferred task's :class:`ChainState` travels inside its trigger (kwarg ``carry``) and comes
back in the trigger's event: ``dag.test()`` drops a deferral's own kwargs when an event arrives,
and the event is the one channel every runner of a trigger keeps.

Job names mean the same in every mode: ``job_name`` (and ``first_job_name``) is the chain's first
job, its identity (the XCom key ``job_name`` too, which a sensor in another task follows);
``latest_job_name`` is the chain's latest job, the one the ARN, the outcome and the model are of.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from airflow_spot_provider.lifecycle import SpotJobReport, json_safe
from airflow_spot_provider.next_action import Submit
from airflow_spot_provider.position import Position
from airflow_spot_provider.summary import summarize_attempts

EVENT_DONE = "done"
EVENT_ERROR = "error"
EVENT_WAITED = "waited"


@dataclass(frozen=True)
class JobEnded:
    """A trigger's event: the job it followed has ended (or waits and the policy would switch it).

    A description that is not terminal hands a waiting job back to the worker, which asks the
    policy again (:func:`~airflow_spot_provider.next_action.next_action`) and stops it.

    :param job_name: the job.
    :param describe: its final DescribeTrainingJob (plain JSON), so it is not described again.
    :param position: what the trigger logged of it.
    :param state: the task's :class:`ChainState` JSON, handed back as the trigger got it.
    """

    job_name: str
    describe: Mapping[str, Any]
    position: Position
    state: Mapping[str, Any] | None = None

    @property
    def report(self) -> SpotJobReport:
        """The job's report."""
        return SpotJobReport.from_describe(self.describe)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the event's payload)."""
        return {
            "status": EVENT_DONE,
            "job_name": self.job_name,
            "describe": json_safe(dict(self.describe)),
            "position": self.position.to_json(),
            "state": self.state,
        }


@dataclass(frozen=True)
class FollowFailed:
    """A trigger's event: the API kept failing with a lasting error.

    :param job_name: the job.
    :param code: the AWS error code.
    :param message: the AWS error message.
    :param state: the task's :class:`ChainState` JSON, handed back as the trigger got it.
    """

    job_name: str
    code: str
    message: str
    state: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the event's payload)."""
        return {
            "status": EVENT_ERROR,
            "job_name": self.job_name,
            "code": self.code,
            "message": self.message,
            "state": self.state,
        }


@dataclass(frozen=True)
class BackoffEnded:
    """A backoff trigger's event: the wait before a resubmission is over.

    :param state: the task's :class:`ChainState` JSON, handed back as the trigger got it.
    """

    state: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the event's payload)."""
        return {"status": EVENT_WAITED, "state": self.state}


TriggerEvent: TypeAlias = JobEnded | FollowFailed | BackoffEnded


def event_from_json(data: Mapping[str, Any]) -> TriggerEvent:
    """The event of a payload made by ``to_json``.

    :param data: the payload.
    :raises ValueError: on a payload that is neither.
    """
    state = data.get("state")
    if data.get("status") == EVENT_DONE:
        return JobEnded(
            job_name=str(data["job_name"]),
            describe=dict(data["describe"]),
            position=Position.from_json(data["position"]),
            state=state,
        )
    if data.get("status") == EVENT_ERROR:
        code, message = str(data["code"]), str(data["message"])
        return FollowFailed(str(data["job_name"]), code, message, state)
    if data.get("status") == EVENT_WAITED:
        return BackoffEnded(state)
    raise ValueError(f"not a spot training trigger event: {dict(data)!r}")


@dataclass
class ChainState:
    """What a task knows of its chain beyond SageMaker's state, carried over its deferrals.

    :param positions: job -> what the task wrote of it in the task log.
    :param ended: job -> final description (an ended job's never changes: described once).
    :param pending: the resubmission decided after the last attempt ended, not made yet (it is
        not decided, nor logged, again after a backoff).
    :param latest: the latest job the task announced (attached to or created).
    :param switched: the jobs the task stopped to switch to on-demand (not a user's stop).
    :param decisions: the policy's decisions acted on, as JSON, oldest first (for the summary).
    :param findings: the progress findings, as JSON, oldest first (for the summary).
    :param checkpoint_costs: job -> seconds from SIGTERM to its last checkpoint sync, measured
        when the prefix was listed after it ended (for the summary's advice).
    """

    positions: dict[str, Position] = field(default_factory=dict)
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: Submit | None = None
    latest: str | None = None
    switched: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_costs: dict[str, float] = field(default_factory=dict)

    def position(self, job_name: str) -> Position:
        """The job's position (the start if none).

        :param job_name: the job.
        """
        return self.positions.get(job_name) or Position(job_name)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (deferral kwargs, a Variable)."""
        return {
            "positions": {name: p.to_json() for name, p in self.positions.items()},
            "ended": {name: json_safe(d) for name, d in self.ended.items()},
            "pending": self.pending.to_json() if self.pending else None,
            "latest": self.latest,
            "switched": list(self.switched),
            "decisions": json_safe(self.decisions),
            "findings": json_safe(self.findings),
            "checkpoint_costs": dict(self.checkpoint_costs),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ChainState:
        """Inverse of :meth:`to_json`.

        :param data: a dict made by :meth:`to_json`, or None.
        """
        data = data or {}
        pending = data.get("pending")
        return cls(
            positions={
                str(k): Position.from_json(v) for k, v in (data.get("positions") or {}).items()
            },
            ended={str(k): dict(v) for k, v in (data.get("ended") or {}).items()},
            pending=Submit.from_json(pending) if pending else None,
            latest=data.get("latest"),
            switched=[str(n) for n in data.get("switched") or ()],
            decisions=[dict(d) for d in data.get("decisions") or ()],
            findings=[dict(f) for f in data.get("findings") or ()],
            checkpoint_costs={
                str(k): float(v) for k, v in (data.get("checkpoint_costs") or {}).items()
            },
        )


@dataclass(frozen=True)
class LaunchResult:
    """What a launch task (``wait_for_completion=False``) returns.

    :param first_job_name: the chain's first job.
    :param latest_job_name: the chain's latest job.
    :param job_arn: the latest job's ARN.
    :param outcome: the latest job's outcome, None while it runs.
    """

    first_job_name: str
    latest_job_name: str
    job_arn: str | None
    outcome: str | None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON; ``job_name`` is the chain's first job."""
        return {
            "job_name": self.first_job_name,
            "first_job_name": self.first_job_name,
            "latest_job_name": self.latest_job_name,
            "job_arn": self.job_arn,
            "outcome": self.outcome,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LaunchResult:
        """Inverse of :meth:`to_json`.

        :param data: a dict made by :meth:`to_json`.
        """
        return cls(
            first_job_name=str(data["first_job_name"]),
            latest_job_name=str(data["latest_job_name"]),
            job_arn=data.get("job_arn"),
            outcome=data.get("outcome"),
        )


@dataclass(frozen=True)
class ChainSummary:
    """What a task that followed its chain to completion returns.

    :param first_job_name: the chain's first job.
    :param attempts: every attempt's report, oldest first (the last one completed).
    """

    first_job_name: str
    attempts: tuple[SpotJobReport, ...]

    @classmethod
    def of(cls, first_job_name: str, reports: Sequence[SpotJobReport]) -> ChainSummary:
        """The summary of a chain.

        :param first_job_name: the chain's first job.
        :param reports: every attempt's report.
        """
        return cls(first_job_name, tuple(reports))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: names, the latest job's ARN, outcome and URIs, attempts, totals."""
        last = self.attempts[-1]
        return {
            "job_name": self.first_job_name,
            "first_job_name": self.first_job_name,
            "latest_job_name": last.job_name,
            "job_arn": last.job_arn,
            "outcome": last.outcome.value if last.outcome else None,
            "model_artifact_uri": last.model_artifact_uri,
            "checkpoint_s3_uri": last.checkpoint_s3_uri,
            **summarize_attempts(self.attempts),
            "reports": [r.to_json() for r in self.attempts],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChainSummary:
        """Inverse of :meth:`to_json`.

        :param data: a dict made by :meth:`to_json`.
        """
        reports = tuple(SpotJobReport.from_json(r) for r in data["reports"])
        return cls(str(data["first_job_name"]), reports)
