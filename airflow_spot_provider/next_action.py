"""What happens next in a chain of attempts: the one decision point, pure.

From the chain's descriptions (oldest first), :func:`next_action` returns one of
:class:`Done` (the last attempt completed), :class:`Follow` (the last attempt runs: follow it),
:class:`Submit` (create an attempt with this request, not before this time: "wait until T" then
"resubmit with request R") or :class:`GiveUp` (with the reason). Whether and how to resubmit
is :meth:`SpotRetryPolicy.decide`'s answer; this module turns it into the action. The runner
(:mod:`airflow_spot_provider.runner`) carries actions out in worker, deferred and poke modes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from airflow_spot_provider.attempts import attempt_name, request_from_describe
from airflow_spot_provider.lifecycle import JobOutcome, SpotJobReport, to_datetime
from airflow_spot_provider.retry import GiveUp as PolicyGiveUp
from airflow_spot_provider.retry import SpotRetryPolicy


@dataclass(frozen=True)
class Done:
    """The last attempt completed.

    :param reports: every attempt's report, oldest first.
    """

    reports: tuple[SpotJobReport, ...]


@dataclass(frozen=True)
class Follow:
    """The last attempt is running: follow it.

    :param job_name: the job.
    :param attempt: its attempt number.
    """

    job_name: str
    attempt: int


@dataclass(frozen=True)
class Submit:
    """Create an attempt (the first, or a resubmission), not before a time.

    :param job_name: its job name.
    :param attempt: its attempt number.
    :param request: the CreateTrainingJob request, ``TrainingJobName`` included.
    :param not_before: when the backoff ends (aware); None: at once.
    """

    job_name: str
    attempt: int
    request: Mapping[str, Any]
    not_before: datetime | None = None

    def seconds_left(self, now: datetime) -> float:
        """How long to wait before creating it.

        :param now: the current time (aware).
        """
        return 0.0 if self.not_before is None else (self.not_before - now).total_seconds()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "job_name": self.job_name,
            "attempt": self.attempt,
            "request": copy.deepcopy(dict(self.request)),
            "not_before": self.not_before.isoformat() if self.not_before else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Submit:
        """Inverse of :meth:`to_json`.

        :param data: a dict made by :meth:`to_json`.
        """
        return cls(
            job_name=str(data["job_name"]),
            attempt=int(data["attempt"]),
            request=dict(data["request"]),
            not_before=to_datetime(data.get("not_before")),
        )


@dataclass(frozen=True)
class GiveUp:
    """Make no further attempt.

    :param reason: why.
    :param outcome: how the last attempt ended.
    :param reports: every attempt's report, oldest first.
    """

    reason: str
    outcome: JobOutcome | None
    reports: tuple[SpotJobReport, ...]


Action: TypeAlias = Done | Follow | Submit | GiveUp


def policy_view(base: Mapping[str, Any], describe: Mapping[str, Any]) -> dict[str, Any]:
    """The last attempt's request: the user's request with the fields a policy may have changed.

    :param base: the validated request of the first attempt.
    :param describe: DescribeTrainingJob of the last attempt.
    """
    request = copy.deepcopy(dict(base))
    request["EnableManagedSpotTraining"] = bool(describe.get("EnableManagedSpotTraining"))
    request["ResourceConfig"]["InstanceType"] = describe["ResourceConfig"]["InstanceType"]
    request["StoppingCondition"] = copy.deepcopy(describe.get("StoppingCondition", {}))
    if "CheckpointConfig" in describe:
        # Resume from where the chain checkpoints, even if a template renders differently now.
        request["CheckpointConfig"] = copy.deepcopy(describe["CheckpointConfig"])
    return request


def last_request(base: Mapping[str, Any] | None, describe: Mapping[str, Any]) -> dict[str, Any]:
    """The request of the last attempt, without its name.

    :param base: the first attempt's request; None where only the job is known (a sensor):
        then it is rebuilt from the description.
    :param describe: DescribeTrainingJob of the last attempt.
    """
    if base is not None:
        return policy_view(base, describe)
    request = request_from_describe(describe)
    request.pop("TrainingJobName", None)
    return request


def next_action(
    *,
    first_name: str,
    describes: Sequence[Mapping[str, Any]],
    policy: SpotRetryPolicy,
    base_request: Mapping[str, Any] | None,
    now: datetime,
) -> Action:
    """What happens next in a chain.

    :param first_name: the chain's first job name.
    :param describes: DescribeTrainingJob of each attempt so far, oldest first (may be empty).
    :param policy: the retry policy.
    :param base_request: the first attempt's request without ``TrainingJobName``; None for a
        follower of a job made elsewhere (a sensor).
    :param now: the current time (aware).
    :raises ValueError: when the chain has no job and there is no request to create one.
    """
    if not describes:
        if base_request is None:
            raise ValueError(f"training job {first_name} does not exist and there is no request")
        return Submit(first_name, 1, {**base_request, "TrainingJobName": first_name})
    reports = tuple(SpotJobReport.from_describe(d) for d in describes)
    last = reports[-1]
    if not last.is_terminal:
        return Follow(last.job_name, len(reports))
    if last.outcome is JobOutcome.COMPLETED:
        return Done(reports)
    request = last_request(base_request, describes[-1])
    decision = policy.decide(reports, now=now, last_request=request)
    if isinstance(decision, PolicyGiveUp):
        return GiveUp(decision.reason, decision.outcome, reports)
    name = attempt_name(first_name, decision.attempt)
    submitted = {**decision.changes.apply(request), "TrainingJobName": name}
    # The backoff counts from the end of the last attempt: a resumed follower waits what is left.
    ended = last.end_time or last.creation_time or now
    try:
        not_before = ended + timedelta(seconds=decision.delay_seconds)
    except OverflowError:
        reason = f"{decision.reason}; but a {decision.delay_seconds:.1f} s backoff ends past 9999"
        return GiveUp(reason, last.outcome, reports)
    return Submit(name, decision.attempt, submitted, not_before)
