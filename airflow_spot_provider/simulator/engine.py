"""The virtual clock: one chain of attempts run through the real policy and lifecycle code.

Each attempt is a simulated training job whose state is kept as DescribeTrainingJob would show
it (statuses, ``SecondaryStatusTransitions`` checked against :data:`SPOT_TRANSITIONS`, training
and billable seconds); every decision reads a :class:`SpotJobReport` parsed from that
describe-shaped dict, exactly as the follower does, and asks the same policy methods:
``first_attempt`` before attempt 1, ``decide_while_waiting`` on the poll ticks while a spot job
waits for capacity (and again at the ``recheck_at`` it names), ``decide`` after each attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_spot_provider.lifecycle import (
    SPOT_TRANSITIONS,
    JobOutcome,
    SecondaryStatus,
    SpotJobReport,
    TrainingJobStatus,
)
from airflow_spot_provider.retry import GiveUp, SpotRetryPolicy, SwitchToOnDemand
from airflow_spot_provider.simulator.jobs import JobModel, Price
from airflow_spot_provider.simulator.markets import Availability

__all__ = ["BASE_TIME", "ChainResult", "Decided", "run_chain"]

S = SecondaryStatus
# Virtual second 0 of every job; any aware moment would do.
BASE_TIME = datetime(2026, 1, 5, tzinfo=UTC)
# A chain that has not finished after this many seconds is abandoned (unbounded policies).
_HORIZON_SECONDS = 60 * 86_400.0


def _at(t: float) -> datetime:
    return BASE_TIME + timedelta(seconds=t)


def _seconds(moment: datetime) -> float:
    return (moment - BASE_TIME).total_seconds()


@dataclass(frozen=True)
class Decided:
    """One decision of the chain, for the record and for comparison with the backend.

    :param seconds: virtual seconds after the job's start.
    :param kind: ``create``, ``give-up``, ``resubmit``, ``switch-to-on-demand``.
    :param on_demand: whether the attempt it creates runs on-demand.
    :param rule: the deadline rule that fired, if any.
    """

    seconds: float
    kind: str
    on_demand: bool
    rule: str | None


@dataclass
class ChainResult:
    """What happened to one job under one policy.

    :param finished_seconds: when the model was there (inf: never).
    :param deadline_seconds: the job's deadline.
    :param cost: USD paid.
    :param interruptions: spot interruptions over all attempts.
    :param lost_seconds: training seconds lost to interruptions.
    :param on_demand_seconds: billed on-demand seconds.
    :param attempts: attempts created.
    :param decisions: every decision, in order.
    :param interrupted_runs: (attempt, start number in the attempt, seconds trained in that run)
        of every interruption, as the embedded backend's ``interrupt`` events count them.
    """

    finished_seconds: float = math.inf
    deadline_seconds: float = math.inf
    cost: float = 0.0
    interruptions: int = 0
    lost_seconds: float = 0.0
    on_demand_seconds: float = 0.0
    attempts: int = 0
    decisions: list[Decided] = field(default_factory=list)
    interrupted_runs: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def met_deadline(self) -> bool:
        """Whether the model was there by the deadline."""
        return self.finished_seconds <= self.deadline_seconds


class _Attempt:
    """One simulated training job, kept in DescribeTrainingJob's terms."""

    def __init__(self, name: str, request: dict[str, Any], created: float) -> None:
        self.name, self.request, self.created = name, request, created
        self.spot = bool(request.get("EnableManagedSpotTraining"))
        stopping = request.get("StoppingCondition") or {}
        self.max_runtime = float(stopping.get("MaxRuntimeInSeconds") or math.inf)
        self.max_wait_end = created + float(stopping.get("MaxWaitTimeInSeconds") or math.inf)
        self.status = TrainingJobStatus.IN_PROGRESS
        self.transitions: list[list[Any]] = []  # [SecondaryStatus, start, end or None]
        self.held = 0.0
        self.starts = 0
        self.ended: float | None = None

    def enter(self, status: SecondaryStatus, t: float) -> None:
        if self.transitions:
            previous = self.transitions[-1][0]
            if status not in SPOT_TRANSITIONS.get(previous, frozenset()):
                raise RuntimeError(f"{self.name}: illegal move {previous} -> {status}")
            self.transitions[-1][2] = t
        self.transitions.append([status, t, None])

    def finish(
        self, status: TrainingJobStatus, last: SecondaryStatus, t: float, stopping: float = 0.0
    ) -> None:
        """End the job at ``t``; a stop goes through ``Stopping`` for ``stopping`` seconds."""
        if status is not TrainingJobStatus.COMPLETED:
            self.enter(S.STOPPING, t)
            t += stopping
        self.enter(last, t)
        self.transitions[-1][2] = t
        self.status, self.ended = status, t

    def describe(self, now: float, price: Price) -> dict[str, Any]:
        """The DescribeTrainingJob response at ``now``."""
        response: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobStatus": self.status.value,
            "SecondaryStatus": self.transitions[-1][0].value,
            "SecondaryStatusTransitions": [
                {"Status": s.value, "StartTime": _at(a)}
                | ({} if b is None else {"EndTime": _at(b)})
                for s, a, b in self.transitions
            ],
            "EnableManagedSpotTraining": self.spot,
            "ResourceConfig": self.request["ResourceConfig"],
            "StoppingCondition": self.request["StoppingCondition"],
            "CheckpointConfig": self.request.get("CheckpointConfig"),
            "CreationTime": _at(self.created),
        }
        if self.ended is not None and now >= self.ended:
            training = max(1, round(self.held))
            share = (1 - price.spot_discount) if self.spot else 1.0
            response["TrainingEndTime"] = _at(self.ended)
            response["TrainingTimeInSeconds"] = training
            response["BillableTimeInSeconds"] = max(1, round(self.held * share))
        return response


class _Chain:
    """The attempts of one job under one policy, on one market timeline."""

    def __init__(
        self,
        policy: SpotRetryPolicy,
        market: Availability,
        job: JobModel,
        price: Price,
        *,
        name: str,
        poll_seconds: float,
        stop_seconds: float,
    ) -> None:
        self.policy, self.market, self.job, self.price = policy, market, job, price
        self.name, self.poll, self.stop_seconds = name, poll_seconds, stop_seconds
        self.history: list[SpotJobReport] = []
        self.saved = 0.0  # training seconds in the checkpoint
        self.result = ChainResult(deadline_seconds=job.deadline_seconds)
        self.switch: SwitchToOnDemand | None = None

    def report(self, attempt: _Attempt, now: float) -> SpotJobReport:
        return SpotJobReport.from_describe(attempt.describe(now, self.price))

    def record(self, t: float, kind: str, on_demand: bool, rule: str | None) -> None:
        self.result.decisions.append(Decided(t, kind, on_demand, rule))

    # --- one attempt ----------------------------------------------------------------------------

    def run_attempt(self, attempt: _Attempt) -> None:
        """Run ``attempt`` until it ends (or is stopped for an on-demand switch)."""
        attempt.enter(S.STARTING, attempt.created)
        t = attempt.created
        while attempt.ended is None:
            if attempt.spot and not self.market.available(t):
                t = self.wait(attempt, t)
            else:
                t = self.hold(attempt, t, S.DOWNLOADING)

    def wait(self, attempt: _Attempt, t: float) -> float:
        """Wait for capacity from ``t``, asking the policy on the poll ticks; the next time."""
        up = self.market.next_change(t)
        until = min(up, attempt.max_wait_end)
        switch_at = self.watch(attempt, t, until)
        if switch_at is not None:
            attempt.finish(TrainingJobStatus.STOPPED, S.STOPPED, switch_at, self.stop_seconds)
            return switch_at
        if attempt.max_wait_end <= up:
            end = attempt.max_wait_end
            attempt.finish(
                TrainingJobStatus.STOPPED, S.MAX_WAIT_TIME_EXCEEDED, end, self.stop_seconds
            )
            return end
        return up

    def watch(self, attempt: _Attempt, start: float, until: float) -> float | None:
        """Ask ``decide_while_waiting`` on the ticks in [start, until); the switch time or None."""
        tick = attempt.created + math.ceil((start - attempt.created) / self.poll) * self.poll
        while tick < until:
            decision = self.policy.decide_while_waiting(
                self.history,
                self.report(attempt, tick),
                now=_at(tick),
                last_request=attempt.request,
            )
            if isinstance(decision, SwitchToOnDemand):
                self.switch = decision
                self.record(tick, "switch-to-on-demand", True, decision.rule.value)
                return tick
            if decision.recheck_at is None:
                return None
            again = _seconds(decision.recheck_at)
            ticks = math.ceil((again - attempt.created) / self.poll)
            tick = max(tick + self.poll, attempt.created + ticks * self.poll)
        return None

    def hold(self, attempt: _Attempt, t: float, phase: SecondaryStatus) -> float:
        """Hold instances from ``t``: start, train, upload, until the first event; the next time."""
        job = self.job
        attempt.enter(phase, t)
        attempt.starts += 1
        train_from = t + job.restart_overhead_seconds
        need = max(0.0, job.training_seconds - self.saved)
        upload_from = train_from + need
        done = upload_from + job.upload_seconds
        lost_capacity = self.market.next_change(t) if attempt.spot else math.inf
        runtime_end = t + max(0.0, attempt.max_runtime - attempt.held)
        limit = min(runtime_end, attempt.max_wait_end)
        end = min(done, lost_capacity, limit)
        self.phases(attempt, t, train_from, upload_from, end)
        attempt.held += end - t
        trained = min(need, max(0.0, end - train_from))
        if end == done:
            self.saved = job.training_seconds
            attempt.finish(TrainingJobStatus.COMPLETED, S.COMPLETED, done)
        elif end == lost_capacity:
            period = job.checkpoint_period_seconds
            kept = math.floor(trained / period) * period
            self.saved += kept
            self.result.interruptions += 1
            self.result.interrupted_runs.append((self.result.attempts, attempt.starts, trained))
            self.result.lost_seconds += trained - kept
            attempt.enter(S.INTERRUPTED, end)
        else:
            self.saved += trained  # stopped: the script checkpoints on SIGTERM
            last = S.MAX_RUNTIME_EXCEEDED if end == runtime_end else S.MAX_WAIT_TIME_EXCEEDED
            attempt.finish(TrainingJobStatus.STOPPED, last, end, self.stop_seconds)
        return end

    @staticmethod
    def phases(attempt: _Attempt, t: float, train: float, upload: float, end: float) -> None:
        if end > train:
            attempt.enter(S.TRAINING, train)
        if end > upload:
            attempt.enter(S.UPLOADING, upload)

    # --- the chain ------------------------------------------------------------------------------

    def bill(self, attempt: _Attempt) -> None:
        hours = attempt.held / 3600.0
        if attempt.spot:
            self.result.cost += hours * self.price.spot_per_hour
        else:
            self.result.cost += hours * self.price.on_demand_per_hour
            self.result.on_demand_seconds += attempt.held

    def run(self, request: dict[str, Any]) -> ChainResult:
        first = self.policy.first_attempt(now=_at(0.0), request=request)
        if isinstance(first, GiveUp):
            self.record(0.0, "give-up", False, first.rule)
            return self.result
        request = first.changes.apply(request)
        self.record(0.0, "create", not request.get("EnableManagedSpotTraining"), first.rule)
        t = 0.0
        while t < _HORIZON_SECONDS:
            self.result.attempts += 1
            attempt = _Attempt(f"{self.name}-a{self.result.attempts}", request, t)
            self.switch = None
            self.run_attempt(attempt)
            self.bill(attempt)
            assert attempt.ended is not None
            report = self.report(attempt, attempt.ended)
            self.history.append(report)
            if report.outcome is JobOutcome.COMPLETED:
                self.result.finished_seconds = attempt.ended
                break
            if self.switch is not None:
                request, t = self.switch.changes.apply(request), attempt.ended
                continue
            decision = self.policy.decide(
                self.history, now=_at(attempt.ended), last_request=request
            )
            if isinstance(decision, GiveUp):
                self.record(attempt.ended, "give-up", False, decision.rule)
                break
            request = decision.changes.apply(request)
            on_demand = not request.get("EnableManagedSpotTraining")
            self.record(attempt.ended, "resubmit", on_demand, decision.rule)
            t = attempt.ended + decision.delay_seconds
        return self.result


def run_chain(
    policy: SpotRetryPolicy,
    request: dict[str, Any],
    market: Availability,
    job: JobModel,
    price: Price,
    *,
    name: str = "sim",
    poll_seconds: float = 60.0,
    stop_seconds: float = 30.0,
) -> ChainResult:
    """Run one job's chain of attempts to its end on the virtual clock.

    :param policy: the policy, with the job's deadline if it uses one.
    :param request: attempt 1's CreateTrainingJob request (without a name).
    :param market: the job's spot capacity timeline.
    :param job: the job model.
    :param price: the instance type's prices.
    :param name: the base of the attempts' job names.
    :param poll_seconds: seconds between the follower's polls of a waiting job.
    :param stop_seconds: seconds from Stopping to Stopped.
    """
    chain = _Chain(
        policy,
        market,
        job,
        price,
        name=name,
        poll_seconds=poll_seconds,
        stop_seconds=stop_seconds,
    )
    return chain.run(request)
