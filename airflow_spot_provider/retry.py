"""When and how to resubmit a spot training job that ended without its model.

:class:`SpotRetryPolicy` is a frozen, JSON-serializable dataclass. Its ``decide`` is pure (no AWS
call, no sleep, no clock: ``now`` is a parameter): from the reports of the attempts so far and the
last request it returns :class:`Resubmit`, carrying the :class:`RequestChanges` of the next
attempt, or :class:`GiveUp`, each with a readable reason. The backoff follows Step Functions'
``Retry`` (interval, rate, cap, jitter); the on-demand last attempt follows Flyte.

With ``deadline_aware`` the policy also chooses spot or on-demand from the deadline (the safety
net of Uniform Progress, "Can't Be Late", NSDI'24; the maths is in :mod:`deadline`): before
attempt 1 (:meth:`SpotRetryPolicy.first_attempt`), per resubmission (``decide``) and while a spot
job waits for capacity (:meth:`SpotRetryPolicy.decide_while_waiting`).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias

from airflow_spot_provider.deadline import (
    CreateAttempt,
    DeadlineRule,
    KeepWaiting,
    SlackCheck,
    SwitchToOnDemand,
    WaitingDecision,
    check_slack,
    estimate_work,
    validate_deadline_options,
)
from airflow_spot_provider.exceptions import SpotRequestValidationError, Violation
from airflow_spot_provider.lifecycle import WAITING_SECONDARY, JobOutcome, SpotJobReport
from airflow_spot_provider.request_input import bounded_number, key_text
from airflow_spot_provider.request_rules import (
    DEFAULT_MAX_RUNTIME_SECONDS,
    SAGEMAKER_MAX_WAIT_SECONDS,
)

__all__ = [
    "DEFAULT_MAX_RUNTIME_SECONDS",
    "MAX_WAIT_LIMIT_SECONDS",
    "RETRYABLE_OUTCOMES",
    "CreateAttempt",
    "Decision",
    "FirstAttemptDecision",
    "GiveUp",
    "KeepWaiting",
    "RequestChanges",
    "Resubmit",
    "SpotRetryPolicy",
    "SwitchToOnDemand",
    "WaitingDecision",
    "read_deadline",
]

log = logging.getLogger(__name__)

# Growth of MaxWaitTimeInSeconds stops at the limit the request rules hold it to (28 days).
MAX_WAIT_LIMIT_SECONDS: Final = SAGEMAKER_MAX_WAIT_SECONDS
# Each attempt is a billed training job: no budget runs to a thousand, and the bound keeps the
# attempt numbers short enough for job names and JSON.
_MAX_ATTEMPTS: Final = 1000
# progress.ProgressRequirement's values (progress imports this module).
_PROGRESS_REQUIREMENTS: Final = frozenset({"resubmit", "give_up"})
# More entries than retry_on could hold distinct outcomes: iterating further proves nothing.
_MAX_OUTCOMES: Final = 64
_INSTANCE_TYPE: Final = re.compile(r"ml\.[a-z0-9]+(?:[.-][a-z0-9]+)*")
# Outcomes a resubmission can help with. STOPPED is a user's decision and FAILED an algorithm or
# internal error (SageMaker's own RetryStrategy covers the latter): resubmitting would not help.
RETRYABLE_OUTCOMES: frozenset[JobOutcome] = frozenset(
    {JobOutcome.MAX_WAIT_EXCEEDED, JobOutcome.MAX_RUNTIME_EXCEEDED, JobOutcome.CAPACITY_ERROR}
)


def _bad(problems: list[Violation], owner: str, name: str, value: Any, rule: str) -> None:
    problems.append(Violation(f"{owner}.{name}", value, rule))


def _real(
    problems: list[Violation],
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    optional: bool = False,
) -> float | None:
    """A finite number of SpotRetryPolicy in ``[low, high]`` (:func:`bounded_number`)."""
    field = f"SpotRetryPolicy.{name}"
    return bounded_number(problems, field, value, low, high, optional=optional)


def _flag(problems: list[Violation], owner: str, name: str, value: Any) -> bool | None:
    if not isinstance(value, bool):
        _bad(problems, owner, name, value, "must be True or False")
        return None
    return value


def _instance_type_ok(value: Any) -> bool:
    return (
        isinstance(value, str) and len(value) <= 64 and _INSTANCE_TYPE.fullmatch(value) is not None
    )


def _outcomes(problems: list[Violation], value: Any) -> frozenset[JobOutcome] | None:
    """``retry_on`` as a frozenset of outcomes (members or their values), or None if invalid."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        _bad(problems, "SpotRetryPolicy", "retry_on", value, "must be a set of JobOutcome")
        return None
    items = list(itertools.islice(value, _MAX_OUTCOMES + 1))  # an endless iterator ends here
    try:
        if len(items) > _MAX_OUTCOMES:
            raise ValueError(f"more than {_MAX_OUTCOMES} entries")
        outcomes = frozenset(JobOutcome(item) for item in items)
    except ValueError:
        _bad(problems, "SpotRetryPolicy", "retry_on", value, "must be a set of JobOutcome")
        return None
    if not outcomes <= RETRYABLE_OUTCOMES:
        refused = ", ".join(sorted(o.value for o in outcomes - RETRYABLE_OUTCOMES))
        allowed = ", ".join(sorted(o.value for o in RETRYABLE_OUTCOMES))
        _bad(problems, "SpotRetryPolicy", "retry_on", refused, f"may only hold {allowed}")
        return None
    return outcomes


def _fallbacks(problems: list[Violation], value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list | tuple) or len(value) >= _MAX_ATTEMPTS:
        rule = f"must be a tuple of fewer than {_MAX_ATTEMPTS} entries"
        _bad(problems, "SpotRetryPolicy", "instance_type_fallbacks", value, rule)
        return None
    wrong = [v for v in value if not _instance_type_ok(v)]
    if wrong:
        rule = "every entry must be an instance type starting with 'ml.' (a-z, 0-9, '.', '-')"
        _bad(problems, "SpotRetryPolicy", "instance_type_fallbacks", wrong, rule)
        return None
    return tuple(value)


_DEADLINE_FORM: Final = (
    "must be a timezone-aware datetime or its ISO-8601 text (e.g. '2026-03-02T06:00:00+00:00',"
    " or a rendered '{{ data_interval_end + macros.timedelta(hours=12) }}'); naive times are"
    " ambiguous"
)


def read_deadline(value: Any, field: str = "deadline") -> datetime | None:
    """A deadline as an aware UTC datetime; None when not given.

    The one reader of a deadline: the policy's field and the task's ``deadline`` argument.

    :param value: None, an empty text, an aware datetime (pendulum's too) or ISO-8601 text.
    :param field: the field named by the error.
    :raises SpotRequestValidationError: naming ``field``, the value and the rule.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if isinstance(moment, datetime) and moment.utcoffset() is not None:
        try:
            utc = moment.astimezone(UTC)
        except OverflowError:  # an offset that moves it past year 1 or 9999
            pass
        else:
            # A plain datetime (not pendulum's subclass): it crosses JSON and process boundaries.
            return datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=UTC)
    raise SpotRequestValidationError([Violation(field, value, _DEADLINE_FORM)])


def _deadline(problems: list[Violation], value: Any) -> datetime | None:
    try:
        return read_deadline(value, "SpotRetryPolicy.deadline")
    except SpotRequestValidationError as error:
        problems.extend(error.violations)
        return None


# Numeric fields of the resubmission (backoff, MaxWait growth) and their closed ranges; the
# deadline options have theirs in deadline.py.
_RANGES: dict[str, tuple[float, float]] = {
    "backoff_initial_seconds": (0.0, math.inf),
    "backoff_multiplier": (1.0, math.inf),
    "backoff_max_seconds": (0.0, math.inf),
    "backoff_jitter": (0.0, 1.0),
    "max_wait_growth": (1.0, math.inf),
}
# The user's checkpoint cost feeds only the summary's advice (economics.checkpoint_cost), not a
# retry or deadline rule; a cost of 0 would make the Young/Daly interval 0.
_MIN_CHECKPOINT_COST_SECONDS: Final = 0.001


@dataclass(frozen=True, kw_only=True)
class RequestChanges:
    """What the next attempt changes relative to the last CreateTrainingJob request.

    :param max_wait_seconds: new ``StoppingCondition.MaxWaitTimeInSeconds``; None keeps it.
    :param instance_type: new ``ResourceConfig.InstanceType``; None keeps it.
    :param on_demand: run without spot: ``EnableManagedSpotTraining`` False, no MaxWait.
    """

    max_wait_seconds: int | None = None
    instance_type: str | None = None
    on_demand: bool = False

    def __post_init__(self) -> None:
        problems: list[Violation] = []
        wait = self.max_wait_seconds
        if wait is not None and (
            isinstance(wait, bool)
            or not isinstance(wait, int)
            or not 1 <= wait <= MAX_WAIT_LIMIT_SECONDS
        ):
            rule = f"must be None or an int >= 1 and <= {MAX_WAIT_LIMIT_SECONDS}"
            _bad(problems, "RequestChanges", "max_wait_seconds", wait, rule)
        if self.instance_type is not None and not _instance_type_ok(self.instance_type):
            rule = "must be None or an instance type starting with 'ml.'"
            _bad(problems, "RequestChanges", "instance_type", self.instance_type, rule)
        if _flag(problems, "RequestChanges", "on_demand", self.on_demand) and wait is not None:
            rule = "must be None when on_demand is True (MaxWait is for spot jobs only)"
            _bad(problems, "RequestChanges", "max_wait_seconds", wait, rule)
        if problems:
            raise SpotRequestValidationError(problems)

    def apply(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Return the next attempt's request: a deep copy of ``request`` with the changes applied.

        ``CheckpointConfig`` is kept as is, so the next attempt resumes from the same S3 prefix.
        ``TrainingJobName`` is removed: the caller names each attempt, and a forgotten name must
        fail loudly rather than collide with the previous attempt.

        :param request: the last CreateTrainingJob request (not modified).
        """
        new = copy.deepcopy(dict(request))
        new.pop("TrainingJobName", None)
        if self.instance_type is not None:
            resources = new.setdefault("ResourceConfig", {})
            if resources.get("InstanceGroups"):
                raise ValueError(
                    "cannot set ResourceConfig.InstanceType on an InstanceGroups request"
                )
            resources["InstanceType"] = self.instance_type
        if self.on_demand:
            new["EnableManagedSpotTraining"] = False
            (new.get("StoppingCondition") or {}).pop("MaxWaitTimeInSeconds", None)
        elif self.max_wait_seconds is not None:
            new.setdefault("StoppingCondition", {})["MaxWaitTimeInSeconds"] = self.max_wait_seconds
        return new

    def describe(self) -> str:
        """The changes in words, for the task log."""
        parts = []
        if self.instance_type is not None:
            parts.append(f"InstanceType -> {self.instance_type}")
        if self.max_wait_seconds is not None:
            parts.append(f"MaxWaitTimeInSeconds -> {self.max_wait_seconds}")
        if self.on_demand:
            parts.append("on-demand (EnableManagedSpotTraining False, no MaxWaitTimeInSeconds)")
        return ", ".join(parts) if parts else "no request changes"


@dataclass(frozen=True, kw_only=True)
class Resubmit:
    """Create another attempt.

    :param attempt: number of the attempt to create (attempts so far + 1).
    :param delay_seconds: how long to wait before creating it.
    :param changes: what the new request changes relative to the last one.
    :param reason: why, for the log.
    :param rule: the deadline rule that chose spot or on-demand (deadline-aware policies only).
    :param at: when the decision was taken (the ``now`` it was given).
    """

    attempt: int
    delay_seconds: float
    changes: RequestChanges
    reason: str
    rule: DeadlineRule | None = None
    # When it was asked does not make another decision: deciding again must compare equal.
    at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True)
class GiveUp:
    """Make no further attempt.

    :param reason: why, for the log and the exception.
    :param outcome: how the last attempt ended (None before attempt 1).
    :param rule: the deadline rule that fired, if one did.
    :param at: when the decision was taken.
    """

    reason: str
    outcome: JobOutcome | None
    rule: DeadlineRule | None = None
    # When it was asked does not make another decision: deciding again must compare equal.
    at: datetime | None = field(default=None, compare=False)


Decision: TypeAlias = Resubmit | GiveUp


FirstAttemptDecision: TypeAlias = CreateAttempt | GiveUp


def _is_spot(request: Mapping[str, Any]) -> bool:
    return bool(request.get("EnableManagedSpotTraining", False))


def _ended(report: SpotJobReport, now: datetime) -> datetime:
    """When the backoff before the next attempt starts: the end of ``report``'s job.

    Its creation time stands in when SageMaker gave no end time, ``now`` when it gave neither.
    """
    return report.end_time or report.creation_time or now


def _start_text(now: datetime, ended: datetime, delay: float) -> str:
    """``max(now, ended + delay)`` in ISO-8601, for a reason; words when it is past year 9999."""
    try:
        return max(now, ended + timedelta(seconds=delay)).isoformat()
    except OverflowError:
        return f"{delay:.1f} s after {ended.isoformat()}, beyond the datetime range"


@dataclass(frozen=True, kw_only=True)
class SpotRetryPolicy:
    """When to resubmit a training job that ended without its model, and with what changes.

    :param retry_on: outcomes to resubmit on; a subset of :data:`RETRYABLE_OUTCOMES`.
    :param max_attempts: total attempts, the first included (>= 1).
    :param backoff_initial_seconds: delay before the first resubmission (>= 0).
    :param backoff_multiplier: factor applied to the delay per resubmission (>= 1).
    :param backoff_max_seconds: cap on the delay (>= backoff_initial_seconds).
    :param backoff_jitter: fraction (0..1) by which the delay varies up or down; derived from a
        hash of the last job name and the attempt number, so decisions are repeatable.
    :param max_wait_growth: factor (>= 1) on MaxWaitTimeInSeconds per resubmission, capped at
        :data:`MAX_WAIT_LIMIT_SECONDS`, never below MaxRuntimeInSeconds.
    :param instance_type_fallbacks: attempt 2 uses the first type, attempt 3 the second, and so
        on; later attempts stay on the last one.
    :param on_demand_fallback: the last allowed attempt runs on on-demand capacity.
    :param deadline: aware datetime (or its ISO-8601 text, e.g. a rendered template such as
        ``{{ data_interval_end + macros.timedelta(hours=6) }}``); no attempt is created at or
        after it.
    :param allow_without_checkpoints: resubmit a job without ``CheckpointConfig`` (it restarts
        from zero).
    :param deadline_aware: choose spot or on-demand from the deadline: stay on spot while the
        time left covers the work left at on-demand speed plus ``restart_overhead_seconds``,
        ``deadline_margin_seconds`` and what one more interruption would cost (a restart and a
        checkpoint interval); switch to on-demand (and stay) when it no longer does. Needs a
        deadline: the policy's, or the operator's or sensor's ``deadline`` argument (which
        refuses a deadline-aware policy left without one); without any it decides as if not
        deadline-aware.
    :param expected_training_seconds: training seconds of the whole job uninterrupted (what
        TrainingTimeInSeconds shows after one clean run); None: learnt from the progress the
        script reports, else MaxRuntimeInSeconds stands in (an upper bound).
    :param restart_overhead_seconds: seconds each (re)start spends before training (instances,
        download, checkpoint load).
    :param checkpoint_interval_seconds: training seconds between two checkpoints; an
        interruption is assumed to lose what was trained since the last one.
    :param checkpoint_cost_seconds: seconds one checkpoint takes to write and sync, for the
        summary's checkpoint advice (Young/Daly); a cost measured on the chain (SIGTERM to the
        last checkpoint sync) takes precedence; None: 60 s when nothing is measured.
    :param deadline_margin_seconds: extra seconds kept before the deadline for polling, stopping
        the spot job and the unexpected.
    :param require_checkpoint_progress: before a resubmission whose checkpoint prefix holds no
        object (the attempt would start from scratch): ``resubmit`` anyway (the finding is a
        warning of the summary) or ``give_up`` (see :mod:`airflow_spot_provider.progress`).
    """

    retry_on: frozenset[JobOutcome] = frozenset({JobOutcome.MAX_WAIT_EXCEEDED})
    max_attempts: int = 3
    backoff_initial_seconds: float = 30.0
    backoff_multiplier: float = 2.0
    backoff_max_seconds: float = 600.0
    backoff_jitter: float = 0.0
    max_wait_growth: float = 1.0
    instance_type_fallbacks: tuple[str, ...] = ()
    on_demand_fallback: bool = False
    deadline: datetime | None = None
    allow_without_checkpoints: bool = False
    deadline_aware: bool = False
    expected_training_seconds: float | None = None
    restart_overhead_seconds: float = 300.0
    checkpoint_interval_seconds: float = 1800.0
    checkpoint_cost_seconds: float | None = None
    deadline_margin_seconds: float = 900.0
    require_checkpoint_progress: str = "resubmit"

    def __post_init__(self) -> None:
        p: list[Violation] = []
        attempts = self.max_attempts
        if (
            isinstance(attempts, bool)
            or not isinstance(attempts, int)
            or not 1 <= attempts <= _MAX_ATTEMPTS
        ):
            rule = f"must be an int >= 1 and <= {_MAX_ATTEMPTS}"
            _bad(p, "SpotRetryPolicy", "max_attempts", attempts, rule)
        normal: dict[str, Any] = {
            name: _real(p, name, getattr(self, name), *bounds) for name, bounds in _RANGES.items()
        }
        normal["retry_on"] = _outcomes(p, self.retry_on)
        normal["instance_type_fallbacks"] = _fallbacks(p, self.instance_type_fallbacks)
        normal["deadline"] = _deadline(p, self.deadline)
        normal.update(validate_deadline_options(self.__dict__, p))
        normal["checkpoint_cost_seconds"] = _real(
            p,
            "checkpoint_cost_seconds",
            self.checkpoint_cost_seconds,
            _MIN_CHECKPOINT_COST_SECONDS,
            math.inf,
            optional=True,
        )
        for name in ("on_demand_fallback", "allow_without_checkpoints"):
            normal[name] = _flag(p, "SpotRetryPolicy", name, getattr(self, name))
        requirement = self.require_checkpoint_progress
        if not isinstance(requirement, str) or requirement not in _PROGRESS_REQUIREMENTS:
            rule = f"must be one of {', '.join(sorted(_PROGRESS_REQUIREMENTS))}"
            _bad(p, "SpotRetryPolicy", "require_checkpoint_progress", requirement, rule)
        low, high = normal["backoff_initial_seconds"], normal["backoff_max_seconds"]
        if low is not None and high is not None and high < low:
            _bad(p, "SpotRetryPolicy", "backoff_max_seconds", high, f"must be >= {low}")
        if attempts == 1 and (self.on_demand_fallback is True or normal["instance_type_fallbacks"]):
            rule = "is 1, so the fallbacks configured would never be used"
            _bad(p, "SpotRetryPolicy", "max_attempts", attempts, rule)
        if p:
            raise SpotRequestValidationError(p)
        for name, value in normal.items():
            object.__setattr__(self, name, value)

    def delay_seconds(self, attempt: int, last_job_name: str) -> float:
        """Backoff before creating ``attempt`` (>= 2): capped exponential, deterministic jitter.

        :param attempt: number of the attempt about to be created.
        :param last_job_name: job name of the previous attempt (seeds the jitter).
        """
        if self.backoff_initial_seconds == 0:
            base = 0.0
        else:
            try:
                grown = self.backoff_initial_seconds * self.backoff_multiplier ** (attempt - 2)
            except OverflowError:
                grown = math.inf
            base = min(self.backoff_max_seconds, grown)
        # sha256 rather than hash(): the same in every process, so the decision is repeatable.
        digest = hashlib.sha256(f"{last_job_name}\x00{attempt}".encode()).digest()
        unit = int.from_bytes(digest[:8], "big") / 2**64 * 2 - 1  # in [-1, 1)
        return max(0.0, base * (1 + self.backoff_jitter * unit))

    def decide(
        self,
        history: Sequence[SpotJobReport],
        *,
        now: datetime,
        last_request: Mapping[str, Any],
        progress: float | None = None,
    ) -> Decision:
        """Decide whether to create another attempt; pure, and logged at INFO with its reason.

        :param history: the reports of the attempts so far, oldest first; the last one finished.
        :param now: the current time (aware). The next attempt would start at
            ``max(now, end of the last attempt + backoff)``; only that moment is compared with the
            deadline, so deciding again part-way through the backoff gives the same answer.
        :param last_request: the CreateTrainingJob request of the last attempt.
        :param progress: fraction (0..1] of the job saved in the checkpoint, if the training
            script reports one; deadline-aware policies learn the job's length from it.
        :raises ValueError: on an empty history, an unfinished last attempt, or a naive ``now``
            or end time.
        """
        if not history:
            raise ValueError("decide() needs the report of at least one finished attempt")
        if history[-1].outcome is None:
            last = history[-1]
            raise ValueError(
                f"attempt {len(history)} ({last.job_name}) has not ended: {last.status}"
            )
        if now.tzinfo is None:
            raise ValueError(f"now must be timezone-aware, got {now!r}")
        ended = _ended(history[-1], now)
        if ended.tzinfo is None:
            raise ValueError(f"the end time of {history[-1].job_name} is naive: {ended!r}")
        decision = self._refusal(history, now) or self._next(history, now, last_request, progress)
        log.info("Spot retry decision: %s", decision.reason)
        return decision

    def _refusal(self, history: Sequence[SpotJobReport], now: datetime) -> GiveUp | None:
        """The reasons to stop that do not depend on time or the request."""
        last, used = history[-1], len(history)
        outcome = last.outcome
        head = f"attempt {used} of {self.max_attempts} ({last.job_name}) ended {outcome}"
        if outcome is JobOutcome.COMPLETED:
            return GiveUp(reason=f"{head}: completed, nothing to resubmit", outcome=outcome, at=now)
        if outcome not in self.retry_on:
            covered = ", ".join(sorted(o.value for o in self.retry_on)) or "nothing"
            reason = f"{head}, which the policy does not retry (retry_on: {covered})"
            return GiveUp(reason=reason, outcome=outcome, at=now)
        if used >= self.max_attempts:
            reason = f"{head}: budget of {self.max_attempts} attempt(s) used"
            return GiveUp(reason=reason, outcome=outcome, at=now)
        return None

    def _next(
        self,
        history: Sequence[SpotJobReport],
        now: datetime,
        request: Mapping[str, Any],
        progress: float | None,
    ) -> Decision:
        last, attempt = history[-1], len(history) + 1
        head = (
            f"attempt {attempt - 1} of {self.max_attempts} ({last.job_name}) ended {last.outcome}"
        )
        delay = self.delay_seconds(attempt, last.job_name)
        ended = _ended(last, now)
        # The backoff counts from the end of the last attempt (the driver waits only what is left
        # of it), so the attempt starts at max(now, ended + delay). Compared in seconds: a huge
        # delay may not fit in a timedelta or a datetime.
        deadline = self.deadline
        if deadline is not None and (
            now >= deadline or (deadline - ended).total_seconds() <= delay
        ):
            reason = (
                f"{head} at {ended.isoformat()}: attempt {attempt} would start at"
                f" {_start_text(now, ended, delay)} after a {delay:.1f} s backoff,"
                f" at or after the deadline {deadline.isoformat()}"
            )
            passed = DeadlineRule.DEADLINE_PASSED
            return GiveUp(reason=reason, outcome=last.outcome, rule=passed, at=now)
        checkpoint = (request.get("CheckpointConfig") or {}).get("S3Uri")
        if not checkpoint and not self.allow_without_checkpoints:
            reason = (
                f"{head}: the request has no CheckpointConfig.S3Uri, so attempt {attempt} would"
                " restart from zero; set allow_without_checkpoints=True to allow"
            )
            return GiveUp(reason=reason, outcome=last.outcome, at=now)
        changes, note = self._changes(attempt, request)
        rule: DeadlineRule | None = None
        if self.deadline_aware and deadline is not None:
            start = max(now, ended + timedelta(seconds=delay))
            check = self._slack(history, start, request, progress)
            changes, rule = self._by_slack(check, changes, request)
            note += f"; {check.describe(deadline)}"
        resume = (
            f"resumes from {checkpoint}" if checkpoint else "restarts from zero (no checkpoints)"
        )
        reason = (
            f"{head}: resubmitting as attempt {attempt} of {self.max_attempts} in {delay:.1f} s;"
            f" {changes.describe()}{note}; {resume}"
        )
        return Resubmit(
            attempt=attempt, delay_seconds=delay, changes=changes, reason=reason, rule=rule, at=now
        )

    def _slack(
        self,
        reports: Sequence[SpotJobReport],
        at: datetime,
        request: Mapping[str, Any],
        progress: float | None,
    ) -> SlackCheck:
        """The switch rule at ``at``, from the work the attempts so far saved."""
        assert self.deadline is not None  # callers check deadline_aware and deadline
        work = estimate_work(
            reports,
            at,
            request=request,
            expected_training_seconds=self.expected_training_seconds,
            restart_overhead_seconds=self.restart_overhead_seconds,
            checkpoint_interval_seconds=self.checkpoint_interval_seconds,
            progress=progress,
        )
        return check_slack(
            at,
            self.deadline,
            work.remaining_seconds,
            restart_overhead_seconds=self.restart_overhead_seconds,
            margin_seconds=self.deadline_margin_seconds,
            # One more interruption on spot costs a restart and up to an interval of work.
            reserve_seconds=self.restart_overhead_seconds + self.checkpoint_interval_seconds,
        )

    @staticmethod
    def _by_slack(
        check: SlackCheck, changes: RequestChanges, request: Mapping[str, Any]
    ) -> tuple[RequestChanges, DeadlineRule]:
        """``changes`` turned on-demand when the slack no longer covers the work left."""
        if check.covers or not _is_spot(request) or changes.on_demand:
            return changes, check.rule
        return RequestChanges(instance_type=changes.instance_type, on_demand=True), check.rule

    def first_attempt(
        self, *, now: datetime, request: Mapping[str, Any], progress: float | None = None
    ) -> FirstAttemptDecision:
        """Decide, before creating attempt 1, whether to create it and on which capacity.

        At or after the deadline no attempt is created (:class:`GiveUp`, outcome None). A
        deadline-aware policy starts on-demand when the slack already fails to cover the work;
        otherwise the request is used as given. Pure, logged at INFO.

        :param now: the current time (aware).
        :param request: the CreateTrainingJob request of attempt 1.
        :param progress: fraction of the job already in the checkpoint (a rerun), if known.
        :raises ValueError: on a naive ``now``.
        """
        if now.tzinfo is None:
            raise ValueError(f"now must be timezone-aware, got {now!r}")
        deadline = self.deadline
        decision: FirstAttemptDecision
        if deadline is not None and now >= deadline:
            reason = (
                f"attempt 1 would start at {now.isoformat()}, at or after the deadline"
                f" {deadline.isoformat()}: not created"
            )
            decision = GiveUp(
                reason=reason, outcome=None, rule=DeadlineRule.DEADLINE_PASSED, at=now
            )
        elif self.deadline_aware and deadline is not None:
            check = self._slack((), now, request, progress)
            changes, rule = self._by_slack(check, RequestChanges(), request)
            how = "on-demand" if changes.on_demand else "as requested"
            reason = f"attempt 1 starts {how}: {check.describe(deadline)}"
            decision = CreateAttempt(changes=changes, reason=reason, rule=rule, at=now)
        else:
            reason = "attempt 1 starts as requested (the policy is not deadline-aware)"
            decision = CreateAttempt(changes=RequestChanges(), reason=reason, rule=None, at=now)
        log.info("Spot first-attempt decision: %s", decision.reason)
        return decision

    def decide_while_waiting(
        self,
        history: Sequence[SpotJobReport],
        running: SpotJobReport,
        *,
        now: datetime,
        last_request: Mapping[str, Any],
        progress: float | None = None,
    ) -> WaitingDecision:
        """Decide whether a spot job waiting for capacity should give way to on-demand.

        Call it on each poll while the running attempt waits (``Starting`` after an
        interruption, ``Interrupted``, a capacity gap: any waiting SecondaryStatus). On
        :class:`SwitchToOnDemand` stop the job, wait for ``Stopped`` and create attempt
        ``decision.attempt`` with ``decision.changes.apply(last_request)``: it resumes from the
        same checkpoint. Pure, logged at INFO when it switches.

        :param history: the reports of the finished attempts before the running one, oldest first.
        :param running: the report of the running attempt.
        :param now: the current time (aware).
        :param last_request: the CreateTrainingJob request of the running attempt.
        :param progress: fraction (0..1] of the job saved in the checkpoint, if known.
        :raises ValueError: on a naive ``now``.
        """
        if now.tzinfo is None:
            raise ValueError(f"now must be timezone-aware, got {now!r}")
        attempt = len(history) + 2
        refusal = self._waiting_refusal(running, attempt, last_request)
        if refusal is not None:
            return KeepWaiting(reason=refusal[1], rule=refusal[0], at=now)
        assert self.deadline is not None  # _waiting_refusal checked it
        check = self._slack([*history, running], now, last_request, progress)
        words = check.describe(self.deadline)
        if check.covers:
            reason = f"{running.job_name} waits on spot: {words}"
            return KeepWaiting(
                reason=reason, rule=check.rule, at=now, recheck_at=check.latest_switch
            )
        reason = (
            f"{running.job_name} waits for spot capacity ({running.secondary_status}) and {words}:"
            f" stop it and resubmit on-demand as attempt {attempt}"
        )
        log.info("Spot waiting decision: %s", reason)
        changes = RequestChanges(on_demand=True)
        return SwitchToOnDemand(
            attempt=attempt, changes=changes, reason=reason, rule=check.rule, at=now
        )

    def _waiting_refusal(
        self, running: SpotJobReport, attempt: int, request: Mapping[str, Any]
    ) -> tuple[DeadlineRule, str] | None:
        """Why a waiting job is left alone whatever the slack, or None."""
        name = running.job_name
        if not self.deadline_aware or self.deadline is None:
            return DeadlineRule.NOT_DEADLINE_AWARE, f"{name}: the policy is not deadline-aware"
        if not _is_spot(request):
            return DeadlineRule.ALREADY_ON_DEMAND, f"{name} already runs on-demand"
        if running.is_terminal or running.secondary_status not in WAITING_SECONDARY:
            status = running.secondary_status or running.status
            return DeadlineRule.NOT_WAITING, f"{name} is not waiting for capacity ({status})"
        if attempt > self.max_attempts:
            reason = (
                f"{name}: attempt {attempt} would exceed the budget of {self.max_attempts}"
                " attempt(s); no on-demand switch"
            )
            return DeadlineRule.BUDGET_USED, reason
        return None

    def _changes(self, attempt: int, request: Mapping[str, Any]) -> tuple[RequestChanges, str]:
        """The changes for ``attempt``, and a note for the reason when a fallback is skipped."""
        on_demand = self.on_demand_fallback and attempt == self.max_attempts and _is_spot(request)
        instance_type, note = None, ""
        resources = request.get("ResourceConfig") or {}
        if self.instance_type_fallbacks and resources.get("InstanceGroups"):
            note = " (instance type fallback skipped: the request uses InstanceGroups)"
        elif self.instance_type_fallbacks:
            index = min(attempt - 2, len(self.instance_type_fallbacks) - 1)
            wanted = self.instance_type_fallbacks[index]
            instance_type = None if resources.get("InstanceType") == wanted else wanted
        max_wait = None if on_demand else self._grown_max_wait(request)
        changes = RequestChanges(
            max_wait_seconds=max_wait, instance_type=instance_type, on_demand=on_demand
        )
        return changes, note

    def _grown_max_wait(self, request: Mapping[str, Any]) -> int | None:
        """MaxWait grown once, within [MaxRuntime, limit]; never below the last accepted value."""
        stopping = request.get("StoppingCondition") or {}
        raw = stopping.get("MaxWaitTimeInSeconds")
        if raw is None or not _is_spot(request):
            return None
        current = int(raw)
        runtime = int(stopping.get("MaxRuntimeInSeconds") or DEFAULT_MAX_RUNTIME_SECONDS)
        grown = math.ceil(min(current * self.max_wait_growth, MAX_WAIT_LIMIT_SECONDS))
        new = max(runtime, current, grown)
        return None if new == current else new

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (ISO-8601 deadline); :meth:`from_json` gives back an equal policy."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["retry_on"] = sorted(o.value for o in self.retry_on)
        data["instance_type_fallbacks"] = list(self.instance_type_fallbacks)
        data["deadline"] = self.deadline.isoformat() if self.deadline else None
        return data

    @classmethod
    def checked(cls, value: Any) -> SpotRetryPolicy:
        """``value`` if it is a policy, the default policy if it is None.

        :param value: an operator's ``spot_retry_policy`` argument.
        :raises SpotRequestValidationError: if ``value`` is anything else.
        """
        if value is None:
            return cls()
        if not isinstance(value, cls):
            rule = "must be a SpotRetryPolicy (SpotRetryPolicy.from_json reads a dict)"
            raise SpotRequestValidationError([Violation("spot_retry_policy", value, rule)])
        return value

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpotRetryPolicy:
        """Inverse of :meth:`to_json`; missing keys take their defaults, unknown keys are refused.

        :param data: a dict made by :meth:`to_json` (or written by hand).
        :raises SpotRequestValidationError: if ``data`` is no mapping, has unknown keys or
            invalid values.
        """
        if not isinstance(data, Mapping):
            rule = "must be a mapping (as SpotRetryPolicy.to_json makes)"
            raise SpotRequestValidationError([Violation("SpotRetryPolicy", data, rule)])
        names = {f.name for f in fields(cls)}
        unknown = [key for key in data if key not in names]
        if unknown:
            raise SpotRequestValidationError(
                [
                    Violation(f"SpotRetryPolicy.{key_text(k)}", data[k], "unknown field")
                    for k in unknown
                ]
            )
        return cls(**data)
