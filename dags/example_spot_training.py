"""One managed spot training job, followed in the triggerer, resubmitted if spot runs out.

upload_trainer -> trainer_config -> train (deferrable ``SageMakerSpotTrainingOperator``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param

from airflow_spot_provider.examples import (
    AWS_CONN_ID,
    DEFAULT_ARGS,
    POLL_INTERVAL,
    checkpoint_uri,
    trainer_config,
    upload_trainer,
)
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.retry import SpotRetryPolicy

TRAINER_DIR = str(Path(__file__).parent / "training")

with DAG(
    dag_id="example_spot_training",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    render_template_as_native_obj=True,
    tags=["spot", "example"],
    params={
        "steps": Param(60, type="integer", minimum=1),
        "step_sleep": Param(0.05, type="number", minimum=0),
        "max_run_seconds": Param(3600, type="integer", minimum=1),
        "max_wait_seconds": Param(7200, type="integer", minimum=1),
    },
) as dag:
    config = trainer_config(
        upload_trainer(TRAINER_DIR), "{{ params.steps }}", "{{ params.step_sleep }}"
    )
    SageMakerSpotTrainingOperator(
        task_id="train",
        config=config,
        checkpoint_s3_uri=checkpoint_uri("example-spot-training"),
        max_run="{{ params.max_run_seconds }}",
        max_wait="{{ params.max_wait_seconds }}",
        job_name="spot-training",
        spot_retry_policy=SpotRetryPolicy(max_attempts=3, backoff_initial_seconds=5),
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        aws_conn_id=AWS_CONN_ID,
    )
