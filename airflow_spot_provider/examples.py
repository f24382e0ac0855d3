"""What the example DAGs in ``dags/`` share: the trainer upload and the CreateTrainingJob request.

Defaults run on the embedded backend (``make demo``); on AWS set the environment variables
``SPOT_EXAMPLES_BUCKET``, ``SPOT_EXAMPLES_ROLE_ARN`` and, if you like, ``SPOT_EXAMPLES_IMAGE`` and
``SPOT_EXAMPLES_INSTANCE_TYPE``, and point the ``aws_default`` connection at your account.
Nothing else changes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import task

BUCKET = os.environ.get("SPOT_EXAMPLES_BUCKET", "spot-examples")
ROLE_ARN = os.environ.get(
    "SPOT_EXAMPLES_ROLE_ARN", "arn:aws:iam::123456789012:role/SageMakerSpotExamples"
)
# A script-mode framework image: on AWS it runs train.py; the embedded backend maps it to the
# same script mode with the local Python.
IMAGE = os.environ.get(
    "SPOT_EXAMPLES_IMAGE",
    "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
)
INSTANCE_TYPE = os.environ.get("SPOT_EXAMPLES_INSTANCE_TYPE", "ml.m5.xlarge")
AWS_CONN_ID = os.environ.get("SPOT_EXAMPLES_AWS_CONN_ID", "aws_default")
# Seconds between two DescribeTrainingJob calls: 30 suits AWS; the demo sets 1.
POLL_INTERVAL = float(os.environ.get("SPOT_EXAMPLES_POLL_INTERVAL", "30"))
# Every example task gets one quick retry. Airflow 3.3's scheduler (LocalExecutor) now and then
# fails a task that has just resumed from a deferral, with "Executor LocalExecutor reported that
# the task instance ... finished with state success, but the task instance's state attribute is
# queued": a race, frequent with the examples' jobs of a few seconds. The retry re-attaches to
# the task's job chain (deterministic job names; no duplicate job), so a first `make ui` succeeds.
# The resume gate (example_verify_resume_gate) sets retries=0: its FAIL is a verdict.
DEFAULT_ARGS: dict[str, Any] = {"retries": 1, "retry_delay": timedelta(seconds=5)}


def trainer_archive(trainer_dir: str | Path) -> bytes:
    """``sourcedir.tar.gz`` of a trainer directory, byte-identical for identical sources.

    :param trainer_dir: the directory holding ``train.py``.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as archive:
        for path in sorted(Path(trainer_dir).glob("*.py")):
            info = tarfile.TarInfo(path.name)
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ensure_bucket() -> Any:
    """An S3 hook on the examples' bucket, which is created if missing."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=AWS_CONN_ID)
    if not hook.check_for_bucket(BUCKET):
        hook.create_bucket(BUCKET)
    return hook


@task
def upload_trainer(trainer_dir: str) -> str:
    """Upload the trainer to S3 (once per content) and return its ``s3://`` URI.

    :param trainer_dir: the directory holding ``train.py`` (``dags/training``).
    """
    data = trainer_archive(trainer_dir)
    key = f"code/sourcedir-{hashlib.sha256(data).hexdigest()[:12]}.tar.gz"
    hook = ensure_bucket()
    hook.load_bytes(data, key=key, bucket_name=BUCKET, replace=True)
    return f"s3://{BUCKET}/{key}"


def training_config(source_uri: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The CreateTrainingJob request of the example trainer, without spot arguments.

    :param source_uri: the ``sourcedir.tar.gz`` URI returned by :func:`upload_trainer`.
    :param hyperparameters: the trainer's hyperparameters (see ``training/train.py``).
    """
    # The SageMaker SDK's script-mode convention: JSON-encoded string values.
    hps = {k: json.dumps(v) for k, v in hyperparameters.items()}
    hps["sagemaker_program"] = json.dumps("train.py")
    hps["sagemaker_submit_directory"] = json.dumps(source_uri)
    return {
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE_ARN,
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
        "ResourceConfig": {
            "InstanceType": INSTANCE_TYPE,
            "InstanceCount": 1,
            "VolumeSizeInGB": 10,
        },
        "HyperParameters": hps,
    }


@task
def trainer_config(source_uri: str, steps: int | str, step_sleep: float | str) -> dict[str, Any]:
    """The request for the example trainer, as a TaskFlow task (its inputs may be templates).

    :param source_uri: where the trainer was uploaded.
    :param steps: training steps.
    :param step_sleep: seconds per step (so a run lasts long enough to see interruptions).
    """
    hps = {"total_steps": int(steps), "step_sleep": float(step_sleep), "checkpoint_every": 5}
    return training_config(source_uri, hps)


def checkpoint_uri(name: str) -> str:
    """A checkpoint prefix per DAG run (templated): every attempt of the run resumes from it.

    :param name: a readable part of the prefix.
    """
    return f"s3://{BUCKET}/checkpoints/{name}/{{{{ run_id | replace(':', '-') }}}}/"
