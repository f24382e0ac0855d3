"""Launch and wait as separate tasks; a job stopped by MaxWaitTimeExceeded is resubmitted.

``upload_trainer -> trainer_config -> retry_on_stopped.launch -> retry_on_stopped.wait ->
retry_on_stopped.report``. When spot capacity does not come back before MaxWait, SageMaker stops
the job with ``Stopped``/``MaxWaitTimeExceeded``; the sensor's policy creates the next attempt with
the same checkpoint prefix, so it resumes where the first one stopped, and the report shows both
attempts with their interruptions, billable seconds and savings. ``make demo`` runs this DAG on the
embedded backend with a spot market scenario that forces exactly that.
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
from airflow_spot_provider.groups import spot_training_group
from airflow_spot_provider.retry import SpotRetryPolicy

TRAINER_DIR = str(Path(__file__).parent / "training")

with DAG(
    dag_id="example_retry_on_stopped",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    render_template_as_native_obj=True,
    tags=["spot", "example"],
    params={
        "steps": Param(120, type="integer", minimum=1),
        "step_sleep": Param(0.1, type="number", minimum=0),
        "max_run_seconds": Param(3600, type="integer", minimum=1),
        "max_wait_seconds": Param(7200, type="integer", minimum=1),
    },
) as dag:
    config = trainer_config(
        upload_trainer(TRAINER_DIR), "{{ params.steps }}", "{{ params.step_sleep }}"
    )
    spot_training_group(
        group_id="retry_on_stopped",
        config=config,
        checkpoint_s3_uri=checkpoint_uri("retry-on-stopped"),
        max_run="{{ params.max_run_seconds }}",
        max_wait="{{ params.max_wait_seconds }}",
        job_name="retry-on-stopped",
        spot_retry_policy=SpotRetryPolicy(max_attempts=3, backoff_initial_seconds=1),
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        aws_conn_id=AWS_CONN_ID,
    )
