"""What happens next in a chain of attempts: the one decision point, pure.

From the chain's descriptions (oldest first), :func:`next_action` returns one of
:class:`Done` (the last attempt completed), :class:`Follow` (the last attempt runs: follow it),
:class:`Switch` (the running spot attempt waits for capacity and the deadline no longer leaves
room for it: stop it, then resubmit on-demand), :class:`Submit` (create an attempt with this
request, not before this time: "wait until T" then "resubmit with request R") or
:class:`GiveUp` (with the reason). Whether and how to create an attempt is the policy's answer
(:meth:`SpotRetryPolicy.first_attempt` before attempt 1, :meth:`SpotRetryPolicy.decide` after
an attempt ended, :meth:`SpotRetryPolicy.decide_while_waiting` while a spot attempt waits), with
``require_checkpoint_progress`` applied to the progress findings
(:func:`~airflow_spot_provider.progress.apply_requirement`); this module turns it into the
action. The runner (:mod:`airflow_spot_provider.runner`) carries actions out in worker, deferred
and poke modes; the trigger asks :func:`switch_due` (this same function) on each poll.

How a stop the policy made is told from a user's stop: the runner records the name of each job
it stopped for a switch in the chain's state (``ChainState.switched``, which travels with
deferrals and, for a sensor in reschedule mode, in its Variable) and passes it as ``switched``.
A task retry starts with an empty state, so a STOPPED attempt not in ``switched`` is also taken
as a switch when the policy, re-evaluated on that attempt as it was when it was stopped (its
transitions before ``Stopping``, at the moment ``Stopping`` began), says it would have switched
(:func:`stopped_for_switch`): a user's stop of a waiting spot job after its latest on-demand
start is then carried on on-demand, as the policy would have done; any other stop gives up.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from airflow_spot_provider.attempts import attempt_name, request_from_describe
from airflow_spot_provider.deadline import DeadlineRule
from airflow_spot_provider.economics import decision_entry
from airflow_spot_provider.lifecycle import (
    WAITING_SECONDARY,
    JobOutcome,
    SecondaryStatus,
    SpotJobReport,
    TrainingJobStatus,
    to_datetime,
)
from airflow_spot_provider.progress import Finding, ProgressRequirement, apply_requirement
from airflow_spot_provider.retry import (
    CreateAttempt,
    Decision,
    RequestChanges,
    Resubmit,
    SpotRetryPolicy,
    SwitchToOnDemand,
)
from airflow_spot_provider.retry import GiveUp as PolicyGiveUp


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
    :param decision: the policy's decision as :func:`~airflow_spot_provider.economics.
        decision_entry` JSON (which rule fired, when, why), for the summary.
    """

    job_name: str
    attempt: int
    request: Mapping[str, Any]
    not_before: datetime | None = None
    # The record of why, not what is done: deciding again must compare equal.
    decision: Mapping[str, Any] | None = field(default=None, compare=False)

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
            "decision": copy.deepcopy(dict(self.decision)) if self.decision else None,
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
            decision=data.get("decision"),
        )


@dataclass(frozen=True)
class GiveUp:
    """Make no further attempt.

    :param reason: why.
    :param outcome: how the last attempt ended.
    :param reports: every attempt's report, oldest first.
    :param decision: the policy's decision as JSON, for the summary.
    """

    reason: str
    outcome: JobOutcome | None
    reports: tuple[SpotJobReport, ...]
    decision: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Switch:
    """Stop the waiting spot attempt: an on-demand attempt resumes from its checkpoint.

    :param job_name: the running job to stop.
    :param attempt: its attempt number.
    :param decision: the policy's decision (reason, rule, the on-demand attempt's number).
    """

    job_name: str
    attempt: int
    decision: SwitchToOnDemand


Action: TypeAlias = Done | Follow | Switch | Submit | GiveUp

_ON_DEMAND = RequestChanges(on_demand=True)
_SLACK_EXHAUSTED = DeadlineRule.SLACK_EXHAUSTED


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


def _waiting_switch(
    policy: SpotRetryPolicy,
    reports: Sequence[SpotJobReport],
    request: Mapping[str, Any],
    now: datetime,
) -> SwitchToOnDemand | None:
    """The policy's switch for the last (running) attempt, if it waits and the slack is gone."""
    last = reports[-1]
    if not policy.deadline_aware or last.secondary_status not in WAITING_SECONDARY:
        return None  # the common case costs no evaluation
    decision = policy.decide_while_waiting(reports[:-1], last, now=now, last_request=request)
    return decision if isinstance(decision, SwitchToOnDemand) else None


def _before_stop(report: SpotJobReport) -> tuple[SpotJobReport, datetime] | None:
    """A stopped attempt as it was when its stop began, and that moment; None if unknown."""
    for index, transition in enumerate(report.transitions):
        if transition.status is SecondaryStatus.STOPPING and transition.start is not None:
            before = report.transitions[:index]
            if not before:
                return None
            open_last = replace(before[-1], end=None)
            running = replace(
                report,
                status=TrainingJobStatus.IN_PROGRESS,
                secondary_status=before[-1].status,
                outcome=None,
                transitions=(*before[:-1], open_last),
                end_time=None,
            )
            return running, transition.start
    return None


def stopped_for_switch(
    policy: SpotRetryPolicy,
    reports: Sequence[SpotJobReport],
    request: Mapping[str, Any],
    switched: Collection[str],
) -> SwitchToOnDemand | None:
    """The switch that stopped the last attempt, if the policy stopped it; else None.

    :param policy: the retry policy.
    :param reports: every attempt's report, oldest first; the last one ended.
    :param request: the last attempt's request.
    :param switched: the jobs the runner stopped for a switch (the chain's state).
    """
    last = reports[-1]
    if last.outcome is not JobOutcome.STOPPED or not policy.deadline_aware:
        return None
    then = _before_stop(last)
    if then is None:
        return None
    running, stopped_at = then
    decision = _waiting_switch(policy, [*reports[:-1], running], request, stopped_at)
    if decision is None and last.job_name in switched:
        # Recorded by the runner, though the re-evaluation disagrees (a clock skew between the
        # worker and SageMaker's timestamps): the record wins.
        reason = f"{last.job_name} was stopped by the policy to resubmit on-demand"
        decision = SwitchToOnDemand(
            attempt=len(reports) + 1,
            changes=_ON_DEMAND,
            reason=reason,
            rule=_SLACK_EXHAUSTED,
            at=stopped_at,
        )
    return decision


def switch_due(
    *,
    first_name: str,
    history: Sequence[Mapping[str, Any]],
    describe: Mapping[str, Any],
    policy: SpotRetryPolicy,
    base_request: Mapping[str, Any] | None,
    now: datetime,
) -> bool:
    """Whether :func:`next_action` says to stop a running attempt now (a follower's early exit).

    :param first_name: the chain's first job name.
    :param history: DescribeTrainingJob of the attempts before the running one, oldest first.
    :param describe: DescribeTrainingJob of the running attempt.
    :param policy: the retry policy.
    :param base_request: the first attempt's request (None for a sensor).
    :param now: the current time (aware).
    """
    action = next_action(
        first_name=first_name,
        describes=[*history, describe],
        policy=policy,
        base_request=base_request,
        now=now,
    )
    return isinstance(action, Switch)


def _first(
    first_name: str, policy: SpotRetryPolicy, request: Mapping[str, Any], now: datetime
) -> Action:
    decision = policy.first_attempt(now=now, request=request)
    if isinstance(decision, PolicyGiveUp):
        return GiveUp(decision.reason, None, (), decision_entry(decision))
    assert isinstance(decision, CreateAttempt)
    submitted = {**decision.changes.apply(request), "TrainingJobName": first_name}
    return Submit(first_name, 1, submitted, None, decision_entry(decision))


def next_action(
    *,
    first_name: str,
    describes: Sequence[Mapping[str, Any]],
    policy: SpotRetryPolicy,
    base_request: Mapping[str, Any] | None,
    now: datetime,
    switched: Collection[str] = (),
    findings: Sequence[Finding] = (),
) -> Action:
    """What happens next in a chain.

    :param first_name: the chain's first job name.
    :param describes: DescribeTrainingJob of each attempt so far, oldest first (may be empty).
    :param policy: the retry policy.
    :param base_request: the first attempt's request without ``TrainingJobName``; None for a
        follower of a job made elsewhere (a sensor).
    :param now: the current time (aware).
    :param switched: the jobs the runner stopped to switch to on-demand (see the module).
    :param findings: the progress findings before a resubmission (:mod:`progress`).
    :raises ValueError: when the chain has no job and there is no request to create one.
    """
    if not describes:
        if base_request is None:
            raise ValueError(f"training job {first_name} does not exist and there is no request")
        return _first(first_name, policy, base_request, now)
    reports = tuple(SpotJobReport.from_describe(d) for d in describes)
    last = reports[-1]
    request = last_request(base_request, describes[-1])
    if not last.is_terminal:
        switch = _waiting_switch(policy, reports, request, now)
        if switch is not None and last.job_name not in switched:
            return Switch(last.job_name, len(reports), switch)
        return Follow(last.job_name, len(reports))
    if last.outcome is JobOutcome.COMPLETED:
        return Done(reports)
    switch = stopped_for_switch(policy, reports, request, switched)
    decision: Decision
    if switch is not None:
        decision = Resubmit(
            attempt=switch.attempt,
            delay_seconds=0.0,
            changes=switch.changes,
            reason=switch.reason,
            rule=switch.rule,
            at=now,
        )
    else:
        decision = policy.decide(reports, now=now, last_request=request)
    requirement = ProgressRequirement(policy.require_checkpoint_progress)
    decision = apply_requirement(decision, findings, requirement, last.outcome)
    if isinstance(decision, PolicyGiveUp):
        return GiveUp(decision.reason, decision.outcome, reports, decision_entry(decision))
    return _resubmission(first_name, decision, request, last, reports)


def _resubmission(
    first_name: str,
    decision: Resubmit,
    request: Mapping[str, Any],
    last: SpotJobReport,
    reports: tuple[SpotJobReport, ...],
) -> Action:
    name = attempt_name(first_name, decision.attempt)
    submitted = {**decision.changes.apply(request), "TrainingJobName": name}
    # The backoff counts from the end of the last attempt: a resumed follower waits what is left.
    ended = last.end_time or last.creation_time or decision.at
    assert ended is not None
    try:
        not_before = ended + timedelta(seconds=decision.delay_seconds)
    except OverflowError:
        reason = f"{decision.reason}; but a {decision.delay_seconds:.1f} s backoff ends past 9999"
        return GiveUp(reason, last.outcome, reports)
    return Submit(name, decision.attempt, submitted, not_before, decision_entry(decision))
