"""What a spot task leaves behind when its chain ends: for the view, the metrics and lineage.

A completed chain's summary is the task's return value. A chain that the retry policy gave up
ends its task with :class:`~airflow_spot_provider.exceptions.SpotTrainingError` and returns
nothing, so its summary (with the policy's reason) is pushed as the XCom
:data:`GIVEN_UP_XCOM_KEY`, where the Spot training view finds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_spot_provider.exceptions import SpotTrainingError
from airflow_spot_provider.metrics import emit_chain_metrics
from airflow_spot_provider.summary import summarize_attempts

GIVEN_UP_XCOM_KEY = "spot_chain_given_up"


def given_up_result(error: SpotTrainingError) -> dict[str, Any]:
    """A given-up chain's summary: the same keys as a completed one's, and the reason.

    :param error: the error that ends the task.
    """
    last = error.attempts[-1] if error.attempts else None
    return {
        "job_name": error.job_name,
        "job_arn": last.job_arn if last else None,
        "outcome": error.outcome.value if error.outcome else None,
        "model_artifact_uri": None,
        "checkpoint_s3_uri": last.checkpoint_s3_uri if last else None,
        **summarize_attempts(error.attempts),
        "given_up_reason": error.reason,
    }


def chain_ended(result: Mapping[str, Any], *, dag_id: str, task_id: str, given_up: bool) -> None:
    """Send the chain's metrics; for a chain given up, also leave its summary as an XCom.

    :param result: the chain's summary.
    :param dag_id: the task's DAG.
    :param task_id: the task.
    :param given_up: the retry policy gave up (the task fails with no return value).
    """
    emit_chain_metrics(result, dag_id=dag_id, task_id=task_id)
    if given_up:
        from airflow.sdk import get_current_context

        get_current_context()["ti"].xcom_push(key=GIVEN_UP_XCOM_KEY, value=dict(result))
