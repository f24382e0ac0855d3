"""The four spot lifecycles of the SageMaker developer guide, as DescribeTrainingJob responses.

Each scenario is the response SageMaker gives at the job's end (figures are made up, except the
guide's savings example: billable 100, training 500).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus

_FIRST_RUN = (S.STARTING, S.DOWNLOADING, S.TRAINING)
_ENDING = (S.STOPPING, S.MAX_WAIT_TIME_EXCEEDED)
# (final TrainingJobStatus, SecondaryStatus sequence, training seconds, billable seconds)
SEED_SCENARIOS: dict[str, tuple[TrainingJobStatus, tuple[S, ...], int | None, int | None]] = {
    "no-interruption": (
        TrainingJobStatus.COMPLETED,
        (*_FIRST_RUN, S.UPLOADING, S.COMPLETED),
        500,
        100,
    ),
    "one-interruption": (
        TrainingJobStatus.COMPLETED,
        (*_FIRST_RUN, S.INTERRUPTED, *_FIRST_RUN, S.UPLOADING, S.COMPLETED),
        620,
        190,
    ),
    "two-interruptions-max-wait": (
        TrainingJobStatus.STOPPED,
        (*_FIRST_RUN, S.INTERRUPTED, *_FIRST_RUN, S.INTERRUPTED, *_FIRST_RUN[1:], *_ENDING),
        410,
        125,
    ),
    "never-launched": (
        TrainingJobStatus.STOPPED,
        (S.STARTING, *_ENDING),
        None,
        None,
    ),
}


def describe_response(name: str) -> dict[str, Any]:
    """The DescribeTrainingJob response at the end of one seed scenario.

    :param name: a key of :data:`SEED_SCENARIOS`.
    """
    status, sequence, training, billable = SEED_SCENARIOS[name]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    transitions = []
    for i, secondary in enumerate(sequence):
        begin = start + timedelta(minutes=i)
        item: dict[str, Any] = {"Status": secondary.value, "StartTime": begin}
        if i + 1 < len(sequence):
            item["EndTime"] = begin + timedelta(minutes=1)
        transitions.append(item)
    response: dict[str, Any] = {
        "TrainingJobName": f"seed-{name}",
        "TrainingJobStatus": status.value,
        "SecondaryStatus": sequence[-1].value,
        "SecondaryStatusTransitions": transitions,
        "EnableManagedSpotTraining": True,
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        "CheckpointConfig": {"S3Uri": f"s3://bucket/checkpoints/{name}/"},
        "CreationTime": start,
    }
    if training is not None:
        response["TrainingTimeInSeconds"] = training
        response["BillableTimeInSeconds"] = billable
    return response
