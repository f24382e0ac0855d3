"""DAG composition: launch -> wait -> report as one task group."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from airflow.sdk import TaskGroup, XComArg, task

from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.retry import SpotRetryPolicy
from airflow_spot_provider.sensors.spot_training import SageMakerSpotTrainingSensor
from airflow_spot_provider.summary import format_summary_table


@task(task_id="report")
def spot_training_report(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Log the chain's summary table and pass the summary on (XCom) for downstream tasks.

    :param summary: the sensor's return value.
    """
    print(format_summary_table(summary))
    return dict(summary)


def spot_training_group(
    *,
    group_id: str = "spot_training",
    config: Any,
    checkpoint_s3_uri: Any = None,
    checkpoint_local_path: str | None = None,
    max_run: int | str | timedelta | None = None,
    max_wait: int | str | timedelta | None = None,
    job_name: str | None = None,
    spot_retry_policy: SpotRetryPolicy | None = None,
    deadline: datetime | str | None = None,
    deferrable: bool | None = None,
    poll_interval: float = 30.0,
    mode: str = "poke",
    print_log: bool = True,
    aws_conn_id: str | None = "aws_default",
    region_name: str | None = None,
) -> TaskGroup:
    """A task group ``launch >> wait >> report`` for one spot training chain.

    ``config`` and ``checkpoint_s3_uri`` may be XComArgs of TaskFlow tasks (or the mapped
    arguments of a ``@task_group``). The group chains with ``>>`` like any task.

    :param group_id: the group's id.
    :param config: the CreateTrainingJob request (dict, JSON, or an XComArg).
    :param checkpoint_s3_uri: ``CheckpointConfig.S3Uri``.
    :param checkpoint_local_path: ``CheckpointConfig.LocalPath``.
    :param max_run: ``MaxRuntimeInSeconds``.
    :param max_wait: ``MaxWaitTimeInSeconds``.
    :param job_name: readable base of the job names.
    :param spot_retry_policy: the sensor's resubmission policy (and the launch's first-attempt
        decision).
    :param deadline: the model is due by then (templated; see the operator's ``deadline``),
        given to the launch and the sensor.
    :param deferrable: wait in the triggerer (None: ``[operators] default_deferrable``).
    :param poll_interval: seconds between two checks.
    :param mode: the sensor's mode when not deferrable (``poke`` or ``reschedule``).
    :param print_log: log the training job's CloudWatch lines.
    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: AWS region.
    """
    wait_mode: dict[str, Any] = {} if deferrable is None else {"deferrable": deferrable}
    with TaskGroup(group_id=group_id) as group:
        launch = SageMakerSpotTrainingOperator(
            task_id="launch",
            config=config,
            checkpoint_s3_uri=checkpoint_s3_uri,
            checkpoint_local_path=checkpoint_local_path,
            max_run=max_run,
            max_wait=max_wait,
            job_name=job_name,
            spot_retry_policy=spot_retry_policy,
            deadline=deadline,
            wait_for_completion=False,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
        )
        wait = SageMakerSpotTrainingSensor(
            task_id="wait",
            job_name=cast(Any, XComArg(launch, key="job_name")),
            spot_retry_policy=spot_retry_policy,
            deadline=deadline,
            poll_interval=poll_interval,
            poke_interval=poll_interval,
            mode=mode,
            print_log=print_log,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            **wait_mode,
        )
        launch >> wait >> spot_training_report(cast(Any, wait.output))
    return group
