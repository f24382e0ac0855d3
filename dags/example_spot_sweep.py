"""A hyperparameter sweep on spot capacity: one mapped spot training task per learning rate.

Each mapped task instance gets its own deterministic job names (the map index is part of them)
and its own checkpoint prefix, so retries and resubmissions never mix the runs up.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_spot_provider.examples import (
    AWS_CONN_ID,
    BUCKET,
    DEFAULT_ARGS,
    POLL_INTERVAL,
    training_config,
    upload_trainer,
)
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.retry import SpotRetryPolicy


@task
def sweep_configs(
    source_uri: str, learning_rates: list[float], steps: int, run_id: str | None = None
) -> list[dict[str, Any]]:
    """One request per learning rate, each with its own checkpoint prefix.

    :param source_uri: where the trainer was uploaded.
    :param learning_rates: the values to try.
    :param steps: training steps per run.
    :param run_id: the DAG run (injected by Airflow).
    """
    run = (run_id or "manual").replace(":", "-")
    configs = []
    for index, rate in enumerate(learning_rates):
        config = training_config(
            source_uri, {"total_steps": int(steps), "learning_rate": rate, "checkpoint_every": 5}
        )
        config["CheckpointConfig"] = {"S3Uri": f"s3://{BUCKET}/checkpoints/sweep/{run}/{index}/"}
        configs.append(config)
    return configs


@task
def best_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Pick the cheapest completed run (the trainer's metrics are in each model artifact).

    :param results: the mapped training tasks' summaries.
    """
    done = [r for r in results if r.get("outcome") == "COMPLETED"]
    print(f"{len(done)}/{len(results)} sweep runs completed")
    return min(done, key=lambda r: r["totals"]["billable_seconds"] or 0)


TRAINER_DIR = str(Path(__file__).parent / "training")

with DAG(
    dag_id="example_spot_sweep",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    render_template_as_native_obj=True,
    tags=["spot", "example"],
    params={
        "learning_rates": Param([0.05, 0.1, 0.5], type="array"),
        "steps": Param(40, type="integer", minimum=1),
        "max_run_seconds": Param(3600, type="integer", minimum=1),
        "max_wait_seconds": Param(7200, type="integer", minimum=1),
    },
) as dag:
    configs = sweep_configs(
        upload_trainer(TRAINER_DIR), "{{ params.learning_rates }}", "{{ params.steps }}"
    )
    runs = SageMakerSpotTrainingOperator.partial(
        task_id="train",
        max_run="{{ params.max_run_seconds }}",
        max_wait="{{ params.max_wait_seconds }}",
        job_name="sweep",
        spot_retry_policy=SpotRetryPolicy(max_attempts=2, backoff_initial_seconds=1),
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        aws_conn_id=AWS_CONN_ID,
    ).expand(config=configs)
    best_run(runs.output)
