"""Deadline maths of the spot retry policy: work done, work left, slack, and the switch rule.

The rule is the safety net of Uniform Progress ("Can't Be Late", NSDI'24): stay on spot while
the time left before the deadline covers the remaining work at on-demand speed plus a restart
overhead and a margin; once it no longer does, switch to on-demand and stay there. Everything
here is pure: times are parameters, the reports are SageMaker's own (``SpotJobReport``), and the
work done is read from ``SecondaryStatusTransitions`` (structure, never message text).

Work is counted in training seconds of an uninterrupted run: ``expected_training_seconds`` is
the ``TrainingTimeInSeconds`` that one uninterrupted on-demand run of the whole job would show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeAlias

from airflow_spot_provider.exceptions import Violation
from airflow_spot_provider.lifecycle import BILLABLE_SECONDARY, SecondaryStatus, SpotJobReport
from airflow_spot_provider.request_input import bounded_number
from airflow_spot_provider.request_rules import DEFAULT_MAX_RUNTIME_SECONDS

if TYPE_CHECKING:  # retry imports this module; the annotations are never evaluated
    from airflow_spot_provider.retry import RequestChanges

__all__ = [
    "CreateAttempt",
    "DeadlineRule",
    "KeepWaiting",
    "SlackCheck",
    "SwitchToOnDemand",
    "WaitingDecision",
    "WorkEstimate",
    "check_slack",
    "estimate_work",
    "saved_seconds",
    "training_segments",
    "validate_deadline_options",
]


class DeadlineRule(StrEnum):
    """Which deadline rule a decision rests on (named in the reason and the summary)."""

    DEADLINE_PASSED = "deadline-passed"  # the attempt would start at or after the deadline
    SLACK_COVERS_WORK = "slack-covers-work"  # spot: the slack covers the work left on-demand
    SLACK_EXHAUSTED = "slack-exhausted"  # on-demand: it no longer does
    NOT_DEADLINE_AWARE = "not-deadline-aware"  # deadline_aware is off or no deadline is set
    ALREADY_ON_DEMAND = "already-on-demand"  # the job runs on-demand: nothing to switch
    NOT_WAITING = "not-waiting"  # the job holds instances (or has ended): no mid-job switch
    BUDGET_USED = "budget-used"  # no attempt left for an on-demand resubmission


@dataclass(frozen=True, kw_only=True)
class CreateAttempt:
    """Create attempt 1, with ``changes`` applied to the request (none: as requested).

    :param changes: on-demand when the deadline leaves no room for spot; else no changes.
    :param reason: why, for the log.
    :param rule: the deadline rule that chose, None when the policy is not deadline-aware.
    :param at: when the decision was taken.
    """

    changes: RequestChanges
    reason: str
    rule: DeadlineRule | None
    at: datetime


@dataclass(frozen=True, kw_only=True)
class KeepWaiting:
    """Let the waiting spot job wait on.

    :param reason: why, for the log.
    :param rule: the rule that decided.
    :param at: when the decision was taken.
    :param recheck_at: the moment the answer changes if nothing else does (the latest on-demand
        start); None when only a new job state can change it. The caller may sleep or defer
        until the earlier of this and its next poll.
    """

    reason: str
    rule: DeadlineRule
    at: datetime
    recheck_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class SwitchToOnDemand:
    """Stop the waiting spot job, wait for ``Stopped``, resubmit on-demand from its checkpoint.

    :param attempt: number of the on-demand attempt to create (attempts so far + 1).
    :param changes: the changes of that attempt (on-demand).
    :param reason: why, for the log and the summary.
    :param rule: the rule that fired (SLACK_EXHAUSTED).
    :param at: when the decision was taken.
    """

    attempt: int
    changes: RequestChanges
    reason: str
    rule: DeadlineRule
    at: datetime


WaitingDecision: TypeAlias = KeepWaiting | SwitchToOnDemand


@dataclass(frozen=True)
class WorkEstimate:
    """How much training the whole job needs and how much of it is saved in the checkpoint.

    :param total_seconds: training seconds of the whole job, uninterrupted, on-demand.
    :param done_seconds: training seconds saved in the checkpoint so far (estimated).
    :param source: where ``total_seconds`` comes from: ``progress`` (learnt from the fraction
        the script reports), ``expected`` (the policy's figure) or ``max-runtime`` (the request's
        MaxRuntimeInSeconds, an upper bound).
    """

    total_seconds: float
    done_seconds: float
    source: str

    @property
    def remaining_seconds(self) -> float:
        """Training seconds still to do (never negative)."""
        return max(0.0, self.total_seconds - self.done_seconds)


@dataclass(frozen=True)
class SlackCheck:
    """The switch rule evaluated at one moment.

    :param rule: SLACK_COVERS_WORK or SLACK_EXHAUSTED.
    :param at: the moment evaluated.
    :param latest_switch: the last moment an on-demand attempt can start and still finish in time.
    :param remaining_seconds: training seconds still to do.
    :param slack_seconds: seconds from ``at`` to the deadline.
    """

    rule: DeadlineRule
    at: datetime
    latest_switch: datetime
    remaining_seconds: float
    slack_seconds: float

    @property
    def covers(self) -> bool:
        """Whether spot may still be used."""
        return self.rule is DeadlineRule.SLACK_COVERS_WORK

    def describe(self, deadline: datetime) -> str:
        """The check in words, for a reason.

        :param deadline: the deadline the check was made against.
        """
        verdict = "covers" if self.covers else "no longer covers"
        return (
            f"{self.slack_seconds:.0f} s to the deadline {deadline.isoformat()} {verdict}"
            f" {self.remaining_seconds:.0f} s of work left at on-demand speed plus overhead and"
            f" margin (latest on-demand start {self.latest_switch.isoformat()})"
        )


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())


def training_segments(report: SpotJobReport, now: datetime) -> list[tuple[float, bool]]:
    """The job's runs on instances: seconds held and whether an interruption ended the run.

    A run is a maximal sequence of billable phases (Downloading, Training, Uploading); an open
    transition counts up to ``now``.

    :param report: the job's report.
    :param now: the current time (aware), for the open transition.
    """
    segments: list[tuple[float, bool]] = []
    current: float | None = None
    for t in report.transitions:
        if t.status in BILLABLE_SECONDARY:
            end = t.end if t.end is not None else now
            current = (current or 0.0) + _seconds(t.start, end)
            continue
        if current is not None:
            segments.append((current, t.status is SecondaryStatus.INTERRUPTED))
            current = None
    if current is not None:
        segments.append((current, False))
    return segments


def saved_seconds(
    reports: Iterable[SpotJobReport],
    now: datetime,
    *,
    restart_overhead_seconds: float,
    checkpoint_interval_seconds: float,
) -> float:
    """Training seconds saved in the checkpoint by the attempts so far (an estimate).

    Each run first spends ``restart_overhead_seconds`` (instances, download, checkpoint load).
    A run ended by an interruption keeps only whole checkpoint intervals: the rest is lost.
    A run that ended otherwise (completed, stopped: SageMaker sends SIGTERM and the script
    checkpoints) keeps all it trained, as does the run still going.

    :param reports: every attempt's report, oldest first (the running one included).
    :param now: the current time (aware).
    :param restart_overhead_seconds: seconds of each run that do no training.
    :param checkpoint_interval_seconds: training seconds between two checkpoints (> 0).
    """
    total = 0.0
    for report in reports:
        segments = training_segments(report, now)
        if not segments and report.training_seconds:
            # No transitions to read (a partial response): TrainingTimeInSeconds stands in.
            segments = [(float(report.training_seconds), report.interruptions > 0)]
        for held, interrupted in segments:
            useful = max(0.0, held - restart_overhead_seconds)
            if interrupted:
                useful = math.floor(useful / checkpoint_interval_seconds) * (
                    checkpoint_interval_seconds
                )
            total += useful
    return total


def _max_runtime(request: Mapping[str, Any]) -> float:
    stopping = request.get("StoppingCondition") or {}
    return float(stopping.get("MaxRuntimeInSeconds") or DEFAULT_MAX_RUNTIME_SECONDS)


def estimate_work(
    reports: Sequence[SpotJobReport],
    now: datetime,
    *,
    request: Mapping[str, Any],
    expected_training_seconds: float | None,
    restart_overhead_seconds: float,
    checkpoint_interval_seconds: float,
    progress: float | None = None,
) -> WorkEstimate:
    """The work of the whole job and the part of it already saved.

    The total is learnt from ``progress`` when the script reports one (saved / progress), else
    it is ``expected_training_seconds``, else the request's MaxRuntimeInSeconds (an upper bound:
    the deadline rule then errs on the side of on-demand).

    :param reports: every attempt's report, oldest first (the running one included).
    :param now: the current time (aware).
    :param request: the last CreateTrainingJob request.
    :param expected_training_seconds: the policy's figure for the whole job, or None.
    :param restart_overhead_seconds: seconds of each run that do no training.
    :param checkpoint_interval_seconds: training seconds between two checkpoints.
    :param progress: fraction (0..1] of the job saved in the checkpoint, if the script says.
    """
    done = saved_seconds(
        reports,
        now,
        restart_overhead_seconds=restart_overhead_seconds,
        checkpoint_interval_seconds=checkpoint_interval_seconds,
    )
    if progress is not None and 0 < progress <= 1 and done > 0:
        return WorkEstimate(done / progress, done, "progress")
    if expected_training_seconds is not None:
        return WorkEstimate(expected_training_seconds, done, "expected")
    return WorkEstimate(_max_runtime(request), done, "max-runtime")


def check_slack(
    now: datetime,
    deadline: datetime,
    remaining_seconds: float,
    *,
    restart_overhead_seconds: float,
    margin_seconds: float,
    reserve_seconds: float = 0.0,
) -> SlackCheck:
    """Evaluate the switch rule: does the slack still cover the work left on-demand?

    An on-demand attempt started at ``s`` finishes at ``s + overhead + remaining``; spot may be
    kept while ``now`` is before ``deadline - remaining - overhead - margin - reserve``. The
    reserve is what one more spot interruption would cost (a restart and the work since the
    last checkpoint): a job that resumes on spot with less than that could be interrupted once
    more when it is too late to switch (the paper's safety net keeps two restart overheads).

    :param now: the moment evaluated (aware).
    :param deadline: the deadline (aware).
    :param remaining_seconds: training seconds still to do.
    :param restart_overhead_seconds: seconds an attempt needs before it trains.
    :param margin_seconds: extra seconds kept for polling, stopping and the unexpected.
    :param reserve_seconds: what one more interruption would cost.
    """
    need = remaining_seconds + restart_overhead_seconds + margin_seconds + reserve_seconds
    slack = (deadline - now).total_seconds()
    try:
        latest = deadline - timedelta(seconds=need)
    except OverflowError:
        latest = datetime.min.replace(tzinfo=deadline.tzinfo)
    rule = DeadlineRule.SLACK_COVERS_WORK if slack > need else DeadlineRule.SLACK_EXHAUSTED
    return SlackCheck(rule, now, latest, remaining_seconds, slack)


# The deadline options of SpotRetryPolicy: name -> (low, high, optional).
_OPTION_RANGES: dict[str, tuple[float, float, bool]] = {
    "expected_training_seconds": (1.0, math.inf, True),
    "restart_overhead_seconds": (0.0, math.inf, False),
    "checkpoint_interval_seconds": (1.0, math.inf, False),
    "deadline_margin_seconds": (0.0, math.inf, False),
}


def validate_deadline_options(
    values: Mapping[str, Any], problems: list[Violation]
) -> dict[str, Any]:
    """Check and normalise the deadline options of SpotRetryPolicy; violations are appended.

    :param values: the options by field name (``deadline_aware`` and the numbers above).
    :param problems: the list the violations go to.
    """
    normal: dict[str, Any] = {
        name: bounded_number(
            problems, f"SpotRetryPolicy.{name}", values[name], low, high, optional=optional
        )
        for name, (low, high, optional) in _OPTION_RANGES.items()
    }
    aware = values["deadline_aware"]
    # No deadline is no error here: the operator's or the sensor's templated ``deadline`` may
    # bring it (task_deadline.task_policy refuses a deadline-aware task left without one).
    if not isinstance(aware, bool):
        problems.append(Violation("SpotRetryPolicy.deadline_aware", aware, "must be True or False"))
    normal["deadline_aware"] = aware
    return normal
