"""Checkpoint advice from a chain's observed interruptions: work lost and the Young/Daly interval.

Young (1974) and Daly (2006): with a checkpoint cost C (seconds to write one) and a mean time
between interruptions M, the interval between checkpoints that minimises the time lost is about
``sqrt(2 C M)``; the work lost per interruption is then about half an interval plus the restart.

C is measured where the chain shows it (:func:`measured_checkpoint_cost`: from the SIGTERM of an
attempt's last run to the newest checkpoint object in S3, read when the follower lists the
prefix before a resubmission), else it is the user's figure, else
:data:`DEFAULT_CHECKPOINT_COST_SECONDS` (:func:`checkpoint_cost`); the advice says which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal

from airflow_spot_provider.deadline import training_segments
from airflow_spot_provider.lifecycle import BILLABLE_SECONDARY, SecondaryStatus, SpotJobReport
from airflow_spot_provider.progress import CheckpointObject
from airflow_spot_provider.retry import (
    CreateAttempt,
    GiveUp,
    KeepWaiting,
    Resubmit,
    SwitchToOnDemand,
)
from airflow_spot_provider.summary import summarize_attempts

__all__ = [
    "DEFAULT_CHECKPOINT_COST_SECONDS",
    "CostSource",
    "checkpoint_advice",
    "checkpoint_cost",
    "decision_entry",
    "expected_work_lost_seconds",
    "measured_checkpoint_cost",
    "summarize_with_advice",
    "young_daly_interval_seconds",
]


# Seconds to write one checkpoint when neither a measurement nor the user's figure is there:
# SageMaker gives a stopped or interrupted job up to 120 s after SIGTERM; half of it is taken as
# a typical save and upload.
DEFAULT_CHECKPOINT_COST_SECONDS: Final = 60.0
# The last sync of a run comes within SageMaker's 120 s between SIGTERM and the end of the
# instances; later objects are not that run's (a slow final upload is given as much again).
_SIGTERM_WINDOW_SECONDS: Final = 240.0
# The transitions that begin with SIGTERM to the training process: a stop and an interruption.
_SIGTERM_STARTS: Final = frozenset({SecondaryStatus.STOPPING, SecondaryStatus.INTERRUPTED})
# Where the advice's checkpoint cost comes from (:func:`checkpoint_cost`).
CostSource = Literal["measured", "given", "default"]


def _sigterm_moment(report: SpotJobReport) -> datetime | None:
    """When the attempt's last run got SIGTERM; None if it did not end with a stop or interruption.

    That is the start of the Stopping or Interrupted transition right after its last billable
    phase.

    :param report: the attempt's report.
    """
    transitions = report.transitions
    billable = [i for i, t in enumerate(transitions) if t.status in BILLABLE_SECONDARY]
    if not billable or billable[-1] + 1 >= len(transitions):
        return None
    after = transitions[billable[-1] + 1]
    return after.start if after.status in _SIGTERM_STARTS else None


def measured_checkpoint_cost(
    report: SpotJobReport, objects: Sequence[CheckpointObject]
) -> float | None:
    """Seconds from the SIGTERM of the attempt's last run to its last checkpoint sync, or None.

    The newest object under the checkpoint prefix, listed after the attempt ended and before the
    next one exists, was written by that run's last sync if it is younger than the SIGTERM: the
    start of the ``Stopping`` (StopTrainingJob, MaxWait, MaxRuntime) or ``Interrupted``
    transition right after the run's last billable phase. No such run, no object written after
    it: no measurement. (S3's ``LastModified`` has a one-second resolution on AWS.)

    :param report: the ended attempt.
    :param objects: the checkpoint prefix's objects.
    """
    sigterm = _sigterm_moment(report)
    if sigterm is None or not objects:
        return None
    newest = max(o.last_modified for o in objects)
    seconds = (newest - sigterm).total_seconds()
    return seconds if 0 < seconds <= _SIGTERM_WINDOW_SECONDS else None


def checkpoint_cost(measured: Mapping[str, float], given: float | None) -> tuple[float, CostSource]:
    """The checkpoint cost for the advice, and where it comes from.

    :param measured: attempt -> seconds measured (:func:`measured_checkpoint_cost`).
    :param given: the user's figure (``SpotRetryPolicy.checkpoint_cost_seconds``), or None.
    :returns: the mean of the measurements (``measured``), else the user's figure (``given``),
        else :data:`DEFAULT_CHECKPOINT_COST_SECONDS` (``default``).
    """
    if measured:
        return sum(measured.values()) / len(measured), "measured"
    if given is not None:
        return float(given), "given"
    return DEFAULT_CHECKPOINT_COST_SECONDS, "default"


def young_daly_interval_seconds(checkpoint_cost_seconds: float, mtbi_seconds: float) -> float:
    """The Young/Daly checkpoint interval ``sqrt(2 C M)``.

    :param checkpoint_cost_seconds: C, seconds to write one checkpoint (> 0).
    :param mtbi_seconds: M, mean seconds between interruptions while running (> 0).
    :raises ValueError: on a non-positive or non-finite figure.
    """
    for name, value in (
        ("checkpoint_cost_seconds", checkpoint_cost_seconds),
        ("mtbi_seconds", mtbi_seconds),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value!r}: must be a finite number > 0")
    return math.sqrt(2 * checkpoint_cost_seconds * mtbi_seconds)


def expected_work_lost_seconds(interval_seconds: float, restart_overhead_seconds: float) -> float:
    """Expected seconds lost per interruption: half an interval of work plus the restart.

    :param interval_seconds: seconds of work between two checkpoints.
    :param restart_overhead_seconds: seconds a restart spends before it trains again.
    """
    return interval_seconds / 2 + restart_overhead_seconds


def _running_seconds(history: Sequence[SpotJobReport]) -> tuple[float, int]:
    """Seconds the chain held instances, and the interruptions among its runs."""
    held, interruptions = 0.0, 0
    for report in history:
        end = report.end_time or report.creation_time
        if end is None:
            continue
        for seconds, interrupted in training_segments(report, end):
            held += seconds
            interruptions += interrupted
    return held, interruptions


def checkpoint_advice(
    history: Sequence[SpotJobReport],
    *,
    measured: Mapping[str, float] | None = None,
    given_cost_seconds: float | None = None,
    checkpoint_interval_seconds: float | None = None,
    restart_overhead_seconds: float = 300.0,
) -> dict[str, Any]:
    """The ``advice`` block for a chain's summary (plain JSON, for the log and XCom).

    From the attempts' transitions: the seconds spent on instances and the interruptions
    among them give the observed mean time between interruptions; with the checkpoint cost
    (:func:`checkpoint_cost`: measured, else the user's figure, else the default; the advice
    says which) that gives the Young/Daly interval. Without an interruption there is nothing to
    estimate: the interval is None and the advice says so.

    :param history: every attempt's report, oldest first.
    :param measured: attempt -> seconds measured (:func:`measured_checkpoint_cost`).
    :param given_cost_seconds: the user's figure (``SpotRetryPolicy.checkpoint_cost_seconds``),
        or None.
    :param checkpoint_interval_seconds: the interval in use, if known (for the work-lost figure).
    :param restart_overhead_seconds: seconds a restart spends before it trains again.
    """
    measured = measured or {}
    checkpoint_cost_seconds, checkpoint_cost_source = checkpoint_cost(measured, given_cost_seconds)
    held, interruptions = _running_seconds(history)
    advice: dict[str, Any] = {
        "interruptions": interruptions,
        "running_seconds": round(held, 1),
        "checkpoint_cost_seconds": round(checkpoint_cost_seconds, 3),
        "checkpoint_cost_source": checkpoint_cost_source,
        "checkpoint_cost_measured": {k: round(v, 3) for k, v in measured.items()},
        "mean_seconds_between_interruptions": None,
        "young_daly_interval_seconds": None,
        "expected_work_lost_seconds_per_interruption": None,
        "advice": "no interruption observed: nothing to base a checkpoint interval on",
    }
    if interruptions == 0 or held <= 0 or checkpoint_cost_seconds <= 0:
        return advice
    mtbi = held / interruptions
    best = young_daly_interval_seconds(checkpoint_cost_seconds, mtbi)
    interval = checkpoint_interval_seconds if checkpoint_interval_seconds else best
    advice |= {
        "mean_seconds_between_interruptions": round(mtbi, 1),
        "young_daly_interval_seconds": round(best, 1),
        "expected_work_lost_seconds_per_interruption": round(
            expected_work_lost_seconds(interval, restart_overhead_seconds), 1
        ),
        "advice": (
            f"{interruptions} interruption(s) in {held / 3600:.2f} h on instances (one per"
            f" {mtbi / 3600:.2f} h); with {checkpoint_cost_seconds:.0f} s per checkpoint"
            f" ({checkpoint_cost_source}),"
            f" checkpoint every {best / 60:.0f} min (Young/Daly sqrt(2CM))"
        ),
    }
    return advice


_KINDS: dict[type, str] = {
    CreateAttempt: "create",
    Resubmit: "resubmit",
    GiveUp: "give-up",
    KeepWaiting: "keep-waiting",
    SwitchToOnDemand: "switch-to-on-demand",
}


def decision_entry(
    decision: CreateAttempt | Resubmit | GiveUp | KeepWaiting | SwitchToOnDemand,
) -> dict[str, Any]:
    """One decision as plain JSON for the summary: kind, rule that fired, when, and why.

    :param decision: any decision of :class:`~airflow_spot_provider.retry.SpotRetryPolicy`.
    """
    on_demand = isinstance(decision, CreateAttempt | Resubmit | SwitchToOnDemand) and (
        decision.changes.on_demand
    )
    return {
        "kind": _KINDS[type(decision)],
        "rule": decision.rule.value if decision.rule else None,
        "at": decision.at.isoformat() if decision.at else None,
        "on_demand": on_demand,
        "reason": decision.reason,
    }


def summarize_with_advice(
    history: Sequence[SpotJobReport],
    *,
    measured: Mapping[str, float] | None = None,
    given_cost_seconds: float | None = None,
    checkpoint_interval_seconds: float | None = None,
    restart_overhead_seconds: float = 300.0,
    decisions: Sequence[CreateAttempt | Resubmit | GiveUp | KeepWaiting | SwitchToOnDemand] = (),
) -> dict[str, Any]:
    """:func:`~airflow_spot_provider.summary.summarize_attempts` plus ``advice`` and ``decisions``.

    The result is plain JSON for the task log and XCom.

    :param history: every attempt's report, oldest first.
    :param measured: attempt -> seconds measured (:func:`measured_checkpoint_cost`).
    :param given_cost_seconds: the user's checkpoint cost, or None.
    :param checkpoint_interval_seconds: the interval in use, if known.
    :param restart_overhead_seconds: seconds a restart spends before it trains again.
    :param decisions: the policy's decisions of the chain, oldest first (which rule fired, when).
    """
    summary = summarize_attempts(history)
    summary["advice"] = checkpoint_advice(
        history,
        measured=measured,
        given_cost_seconds=given_cost_seconds,
        checkpoint_interval_seconds=checkpoint_interval_seconds,
        restart_overhead_seconds=restart_overhead_seconds,
    )
    summary["decisions"] = [decision_entry(d) for d in decisions]
    return summary
