"""The DAG of the CeleryExecutor cell: a fleet of deferred spot training tasks, one per job.

Copied into that deployment's own dags folder. The run's conf says how many jobs, their request
and their limits; a first task turns it into one set of operator arguments per job, and the
spot training task is mapped over them, deferrable: each mapped task instance creates its job on
a Celery worker, defers to a triggerer, and resumes on a worker when its job has ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, get_current_context, task

from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.retry import SpotRetryPolicy

# Resubmits a job stopped by MaxWaitTimeExceeded at once (the chain of the cell).
POLICY = SpotRetryPolicy(max_attempts=3, backoff_initial_seconds=0.5)

with DAG(
    dag_id="deploy_fleet",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    # Deferred tasks hold no slot; running ones (create, resume) are bounded by the workers.
    max_active_tasks=1000,
    tags=["deployment"],
) as deploy_fleet:

    @task
    def plan() -> list[dict[str, Any]]:
        """One set of operator arguments per job of the run's conf."""
        conf = get_current_context()["dag_run"].conf
        return [
            {
                "job_name": f"{conf['name']}-{index}",
                "config": conf["config"],
                "checkpoint_s3_uri": f"{conf['checkpoint_s3_uri']}{index}/",
                "max_run": conf["max_run"],
                "max_wait": conf["max_wait"],
                "poll_interval": conf["poll_interval"],
            }
            for index in range(conf["count"])
        ]

    SageMakerSpotTrainingOperator.partial(
        task_id="train", spot_retry_policy=POLICY, deferrable=True
    ).expand_kwargs(plan())
