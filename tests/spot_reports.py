"""Reports of spot jobs for the tests of the pure decisions: transitions at given seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_spot_provider.lifecycle import SecondaryStatus, SpotJobReport

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def job(
    name: str,
    steps: list[tuple[SecondaryStatus, float]],
    *,
    status: str = "InProgress",
    ended: float | None = None,
    **extra: Any,
) -> SpotJobReport:
    """A report whose transitions start at T0 + the given seconds; the last one stays open.

    :param name: the job name.
    :param steps: (SecondaryStatus, start second) pairs, in order.
    :param status: TrainingJobStatus.
    :param ended: TrainingEndTime, in seconds after T0.
    :param extra: more DescribeTrainingJob fields.
    """
    transitions = []
    for index, (step, start) in enumerate(steps):
        item: dict[str, Any] = {"Status": step.value, "StartTime": T0 + timedelta(seconds=start)}
        if index + 1 < len(steps):
            item["EndTime"] = T0 + timedelta(seconds=steps[index + 1][1])
        transitions.append(item)
    response: dict[str, Any] = {
        "TrainingJobName": name,
        "TrainingJobStatus": status,
        "SecondaryStatus": steps[-1][0].value,
        "SecondaryStatusTransitions": transitions,
        "EnableManagedSpotTraining": True,
        "CreationTime": T0 + timedelta(seconds=steps[0][1]),
        **extra,
    }
    if ended is not None:
        response["TrainingEndTime"] = T0 + timedelta(seconds=ended)
    return SpotJobReport.from_describe(response)
