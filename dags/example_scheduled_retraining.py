"""A scheduled retraining pipeline on spot capacity.

prepare_data (train and holdout sets to S3) -> train (spot, checkpoints, resubmission on
MaxWaitTimeExceeded) -> evaluate (accuracy of the new model on the holdout set) -> publish the
model only if it beats the last published one.
"""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from airflow.sdk import DAG, Param, task

from airflow_spot_provider.examples import (
    AWS_CONN_ID,
    BUCKET,
    DEFAULT_ARGS,
    POLL_INTERVAL,
    checkpoint_uri,
    ensure_bucket,
    training_config,
    upload_trainer,
)
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.retry import SpotRetryPolicy

PUBLISHED = "published/model"
N_FEATURES = 8


def _s3() -> Any:
    return ensure_bucket()


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _make_set(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    truth = np.linspace(-1.0, 1.0, N_FEATURES)  # the relation every day's data follows
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    y = (x @ truth + 0.3 * rng.normal(size=n) > 0).astype(np.float64)
    return x, y


@task
def prepare_data(ds_nodash: str | None = None) -> str:
    """Write today's training set and holdout set to S3; return the data prefix.

    :param ds_nodash: the run's date (injected by Airflow).
    """
    prefix = f"data/{ds_nodash or 'manual'}"
    s3 = _s3()
    for name, seed, n in (("train", 1, 2048), ("holdout", 2, 512)):
        x, y = _make_set(seed + int(ds_nodash or 0), n)
        buffer = io.BytesIO()
        np.savez(buffer, X=x, y=y)
        s3.load_bytes(
            buffer.getvalue(), key=f"{prefix}/{name}/{name}.npz", bucket_name=BUCKET, replace=True
        )
    return f"s3://{BUCKET}/{prefix}"


@task
def trainer_config(source_uri: str, data_uri: str, steps: int) -> dict[str, Any]:
    """The request: the trainer reads the ``train`` channel.

    :param source_uri: where the trainer was uploaded.
    :param data_uri: the data prefix from ``prepare_data``.
    :param steps: training steps.
    """
    config = training_config(source_uri, {"total_steps": int(steps), "checkpoint_every": 10})
    config["InputDataConfig"] = [
        {
            "ChannelName": "train",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"{data_uri}/train/",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
    ]
    return config


def _accuracy(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    scores = x @ weights[:-1] + weights[-1]
    return float(np.mean((scores > 0) == (y > 0.5)))


@task
def evaluate(summary: dict[str, Any], data_uri: str) -> dict[str, Any]:
    """Accuracy of the new model on the holdout set.

    :param summary: the training task's summary (model artifact URI).
    :param data_uri: the data prefix.
    """
    s3 = _s3()
    bucket, key = _split(summary["model_artifact_uri"])
    archive = s3.get_key(key, bucket).get()["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("model.npy")
        assert member is not None, "model.npy missing from the model artifact"
        weights = np.load(io.BytesIO(member.read()))
    bucket, key = _split(f"{data_uri}/holdout/holdout.npz")
    holdout = np.load(io.BytesIO(s3.get_key(key, bucket).get()["Body"].read()))
    accuracy = _accuracy(weights, holdout["X"], holdout["y"])
    print(f"holdout accuracy of {summary['job_name']}: {accuracy:.4f}")
    return {"model_artifact_uri": summary["model_artifact_uri"], "accuracy": accuracy}


@task
def publish_if_better(candidate: dict[str, Any]) -> bool:
    """Copy the model to the published prefix if it beats the published one.

    :param candidate: ``evaluate``'s result.
    """
    s3 = _s3()
    current = None
    if s3.check_for_key(f"{PUBLISHED}/metrics.json", BUCKET):
        current = json.loads(s3.read_key(f"{PUBLISHED}/metrics.json", BUCKET))
    if current is not None and current["accuracy"] >= candidate["accuracy"]:
        print(
            f"kept the published model ({current['accuracy']:.4f} >= {candidate['accuracy']:.4f})"
        )
        return False
    bucket, key = _split(candidate["model_artifact_uri"])
    s3.copy_object(key, f"{PUBLISHED}/model.tar.gz", bucket, BUCKET)
    s3.load_string(json.dumps(candidate), f"{PUBLISHED}/metrics.json", BUCKET, replace=True)
    print(f"published {candidate['model_artifact_uri']} ({candidate['accuracy']:.4f})")
    return True


TRAINER_DIR = str(Path(__file__).parent / "training")

with DAG(
    dag_id="example_scheduled_retraining",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    render_template_as_native_obj=True,
    tags=["spot", "example"],
    params={
        "steps": Param(80, type="integer", minimum=1),
        "max_run_seconds": Param(3600, type="integer", minimum=1),
        "max_wait_seconds": Param(7200, type="integer", minimum=1),
    },
) as dag:
    data = prepare_data()
    config = trainer_config(upload_trainer(TRAINER_DIR), data, "{{ params.steps }}")
    train = SageMakerSpotTrainingOperator(
        task_id="train",
        config=config,
        checkpoint_s3_uri=checkpoint_uri("scheduled-retraining"),
        max_run="{{ params.max_run_seconds }}",
        max_wait="{{ params.max_wait_seconds }}",
        job_name="retraining",
        spot_retry_policy=SpotRetryPolicy(max_attempts=3, backoff_initial_seconds=5),
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        aws_conn_id=AWS_CONN_ID,
    )
    publish_if_better(evaluate(train.output, data))
