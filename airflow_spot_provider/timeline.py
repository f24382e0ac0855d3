"""A spot attempt's lifecycle as a timeline: segments of time drawn from its status transitions.

Each ``SecondaryStatusTransitions`` entry with a start time becomes a segment in one of a few
phases a reader cares about (waiting for capacity, downloading, training, interrupted,
uploading, stopping). A terminal status (``Completed``, ``MaxWaitTimeExceeded``...) is the
attempt's end, not a segment. Pure functions: the Spot training view and the tests use them on
a task's return value without any AWS call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from airflow_spot_provider.lifecycle import (
    WAITING_SECONDARY,
    SecondaryStatus,
    SpotJobReport,
    Transition,
    to_datetime,
)


class Phase(StrEnum):
    """What an attempt was doing during a segment of its timeline."""

    WAITING = "waiting"  # for (spot) capacity: Pending, Starting and its details, Restarting
    DOWNLOADING = "downloading"  # input channels, checkpoints or the image onto the instances
    TRAINING = "training"  # the training process runs (Updating happens while it runs)
    INTERRUPTED = "interrupted"  # the spot instances were reclaimed
    UPLOADING = "uploading"  # the model is packed and uploaded
    STOPPING = "stopping"  # on the way to Stopped (a user, MaxWait or MaxRuntime)
    OTHER = "other"  # a status this release does not know


_PHASES: Mapping[SecondaryStatus, Phase] = {
    **{s: Phase.WAITING for s in WAITING_SECONDARY - {SecondaryStatus.INTERRUPTED}},
    SecondaryStatus.INTERRUPTED: Phase.INTERRUPTED,
    SecondaryStatus.DOWNLOADING: Phase.DOWNLOADING,
    SecondaryStatus.DOWNLOADING_TRAINING_IMAGE: Phase.DOWNLOADING,
    SecondaryStatus.TRAINING: Phase.TRAINING,
    SecondaryStatus.UPDATING: Phase.TRAINING,
    SecondaryStatus.UPLOADING: Phase.UPLOADING,
    SecondaryStatus.STOPPING: Phase.STOPPING,
}


def phase_of(status: SecondaryStatus) -> Phase | None:
    """The timeline phase of a secondary status; None for a terminal one (the attempt's end).

    :param status: the secondary status.
    """
    if status.is_terminal:
        return None
    return _PHASES.get(status, Phase.OTHER)


@dataclass(frozen=True)
class Segment:
    """One stretch of an attempt's timeline.

    :param phase: what the attempt was doing.
    :param status: the secondary status that SageMaker reported.
    :param start: when it began.
    :param end: when it ended (for the open last segment: the time the timeline was drawn).
    :param is_open: the status had not ended when the timeline was drawn.
    :param message: SageMaker's status message (shown, never decided on).
    """

    phase: Phase
    status: SecondaryStatus
    start: datetime
    end: datetime
    is_open: bool = False
    message: str = ""

    @property
    def seconds(self) -> float:
        """The segment's length in seconds."""
        return max(0.0, (self.end - self.start).total_seconds())

    @property
    def is_billable(self) -> bool:
        """Whether instances were held (SageMaker counts it as training time)."""
        return self.status.is_billable

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, ISO-8601 timestamps."""
        return {
            "phase": self.phase.value,
            "status": self.status.value,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "seconds": round(self.seconds, 3),
            "open": self.is_open,
            "billable": self.is_billable,
            "message": self.message,
        }


def segments(transitions: Sequence[Transition], *, until: datetime | None = None) -> list[Segment]:
    """The timeline segments of one attempt, oldest first.

    A transition without an end time ends where the next one starts; the last one, if it is
    not terminal, ends at ``until`` (the attempt's end or now) and is marked open. Transitions
    without a start time cannot be placed and are left out.

    :param transitions: the attempt's transitions, oldest first.
    :param until: where an open last transition ends; without it that transition is left out.
    """
    timed = [t for t in transitions if t.start is not None]
    result: list[Segment] = []
    for index, transition in enumerate(timed):
        phase = phase_of(transition.status)
        if phase is None or transition.start is None:
            continue
        following = timed[index + 1].start if index + 1 < len(timed) else None
        end = transition.end or following or until
        if end is None:
            continue
        is_open = transition.end is None and following is None
        result.append(
            Segment(phase, transition.status, transition.start, end, is_open, transition.message)
        )
    return result


def attempt_timeline(report: SpotJobReport, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The timeline of one attempt as plain JSON segments.

    :param report: the attempt's report.
    :param now: where a running attempt's open segment ends (its end time when it has one).
    """
    return [s.to_json() for s in segments(report.transitions, until=report.end_time or now)]


def phase_seconds(timeline: Iterable[Segment]) -> dict[str, float]:
    """Seconds spent in each phase, for the phases present.

    :param timeline: segments, e.g. from :func:`segments`.
    """
    totals: dict[str, float] = {}
    for segment in timeline:
        totals[segment.phase.value] = totals.get(segment.phase.value, 0.0) + segment.seconds
    return totals


def attempt_transitions(summary: Mapping[str, Any], index: int) -> list[Transition]:
    """The transitions of attempt ``index`` (0-based) in a task's return value.

    Reads the attempt's own ``transitions`` (from :func:`~airflow_spot_provider.summary.
    summarize_attempts`), else the matching full report (``reports``) when the result has one.

    :param summary: the task's return value (through JSON).
    :param index: the attempt's position in ``summary["attempts"]``.
    """
    attempt = summary["attempts"][index]
    raw = attempt.get("transitions")
    if raw is None:
        reports = summary.get("reports") or ()
        raw = reports[index].get("transitions") if index < len(reports) else None
    return [Transition.from_json(t) for t in raw or ()]


def summary_timelines(
    summary: Mapping[str, Any], *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Every attempt of a task's return value with its timeline segments.

    :param summary: the task's return value (through JSON).
    :param now: where a still-open segment ends.
    """
    result = []
    for index, attempt in enumerate(summary.get("attempts") or ()):
        until = to_datetime(attempt.get("end_time")) or now
        timeline = segments(attempt_transitions(summary, index), until=until)
        result.append(
            {
                "attempt": attempt.get("attempt", index + 1),
                "job_name": attempt.get("job_name"),
                "outcome": attempt.get("outcome"),
                "creation_time": attempt.get("creation_time"),
                "end_time": attempt.get("end_time"),
                "segments": [s.to_json() for s in timeline],
                "phase_seconds": phase_seconds(timeline),
            }
        )
    return result
