"""A scheduled retraining DAG whose spot training runs only if the trainer resumes.

verify_resume (the trainer, small and quick, interrupted on the embedded backend in the worker)
>> upload_trainer -> trainer_config -> train (spot, checkpoints, resubmission). A trainer that
restarts from scratch or loses its work on an interruption fails the gate, and no spot job is
created.
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
from airflow_spot_provider.operators.verify_resume import VerifyResumeOperator
from airflow_spot_provider.retry import SpotRetryPolicy

TRAINER_DIR = str(Path(__file__).parent / "training")

with DAG(
    dag_id="example_verify_resume_gate",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    render_template_as_native_obj=True,
    tags=["spot", "example", "verify"],
    params={
        "steps": Param(200, type="integer", minimum=1),
        "step_sleep": Param(0.05, type="number", minimum=0),
        # The gate's own run: short, it checks resuming, not the model.
        "verify_steps": Param(40, type="integer", minimum=10),
        "verify_runs": Param(4, type="integer", minimum=1, maximum=20),
        "max_run_seconds": Param(3600, type="integer", minimum=1),
        "max_wait_seconds": Param(7200, type="integer", minimum=1),
    },
) as dag:
    gate = VerifyResumeOperator(
        task_id="verify_resume",
        source_dir=TRAINER_DIR,
        entry_point="train.py",
        hyperparameters={
            "total_steps": "{{ params.verify_steps }}",
            "step_sleep": 0.05,
            "checkpoint_every": 10,
        },
        runs="{{ params.verify_runs }}",
        notice_seconds=1.0,
        # No retry, unlike the other tasks (examples.DEFAULT_ARGS): a FAIL is a verdict, not a
        # transient error, and a retry would only run the whole verification again. The gate
        # never defers, so the scheduler race that the retry covers cannot hit it; an
        # inconclusive run is already made again, earlier, within the verification.
        retries=0,
    )
    source = upload_trainer(TRAINER_DIR)
    config = trainer_config(source, "{{ params.steps }}", "{{ params.step_sleep }}")
    train = SageMakerSpotTrainingOperator(
        task_id="train",
        config=config,
        checkpoint_s3_uri=checkpoint_uri("verified-retraining"),
        max_run="{{ params.max_run_seconds }}",
        max_wait="{{ params.max_wait_seconds }}",
        job_name="verified-retraining",
        spot_retry_policy=SpotRetryPolicy(max_attempts=3, backoff_initial_seconds=5),
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        aws_conn_id=AWS_CONN_ID,
    )
    gate >> source  # nothing of the spot run starts before the gate passed
