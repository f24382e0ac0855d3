"""OpenLineage: the S3 channels in; the model artifact and the checkpoint prefix out.

The end-to-end test runs a spot training task with ``airflow dags test`` in its own process
(the OpenLineage provider reads its configuration once per process) with the file transport,
and reads the events that the OpenLineage listener wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.lineage import input_uris, operator_lineage, output_uris, s3_dataset_id
from tests.e2e.conftest import BUCKET, emulator, synthetic_config
from tests.e2e.test_spot_training_dags import spot_conf

__all__ = ["emulator"]

REQUEST: dict[str, Any] = {
    "InputDataConfig": [
        {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://data/train/"}}},
        {"ChannelName": "validation", "DataSource": {"S3DataSource": {"S3Uri": "s3://data/val"}}},
        {"ChannelName": "fs", "DataSource": {"FileSystemDataSource": {"FileSystemId": "fs-1"}}},
    ],
    "CheckpointConfig": {"S3Uri": "s3://ckpt/churn/"},
}


def test_s3_uris_become_bucket_namespaced_datasets() -> None:
    assert s3_dataset_id("s3://data/train/") == ("s3://data", "train")
    assert s3_dataset_id("s3://data") == ("s3://data", "")
    assert s3_dataset_id("file:///tmp/x") is None
    assert s3_dataset_id("s3:///key") is None


def test_inputs_are_the_s3_channels_and_outputs_the_model_and_checkpoints() -> None:
    assert input_uris(REQUEST) == ["s3://data/train/", "s3://data/val"]
    result = {"model_artifact_uri": "s3://models/churn-a2/output/model.tar.gz"}
    assert output_uris(REQUEST, result) == [
        "s3://models/churn-a2/output/model.tar.gz",
        "s3://ckpt/churn/",
    ]
    # Before the task's result is known, only the checkpoint prefix is certain.
    assert output_uris(REQUEST, None) == ["s3://ckpt/churn/"]
    lineage = operator_lineage(REQUEST, result)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("s3://data", "train"),
        ("s3://data", "val"),
    ]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [
        ("s3://models", "churn-a2/output/model.tar.gz"),
        ("s3://ckpt", "churn"),
    ]


@pytest.mark.e2e
def test_listener_reports_the_task_lineage_through_the_file_transport(
    emulator: SpotEmulator, tmp_path: Path
) -> None:
    name = f"l{uuid.uuid4().hex[:8]}"
    emulator.boto3_client("s3").put_object(Bucket=BUCKET, Key=f"data/{name}/train.csv", Body=b"1")
    config = synthetic_config(0.5)
    config["InputDataConfig"] = [
        {
            "ChannelName": "train",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{BUCKET}/data/{name}/",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
    ]
    conf = spot_conf(name, config)
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "spot-tests",
        # The listener emits from a forked process, ended after this many seconds (10 by
        # default: too short on a loaded CI machine).
        "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT": "120",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow",
            "dags",
            "test",
            "e2e_once_worker",
            "-c",
            json.dumps(conf),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (tmp_path / "dags-test.log").write_text(done.stdout + done.stderr)
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    (complete,) = [
        e
        for e in events
        if e["eventType"] == "COMPLETE" and e["job"]["name"] == "e2e_once_worker.train"
    ]
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        (f"s3://{BUCKET}", f"data/{name}")
    ]
    outputs = [(d["namespace"], d["name"]) for d in complete["outputs"]]
    assert outputs == [
        (f"s3://{BUCKET}", f"models/{name}-{outputs[0][1].split('-')[1]}-a1/output/model.tar.gz"),
        (f"s3://{BUCKET}", f"checkpoints/{name}"),
    ]
