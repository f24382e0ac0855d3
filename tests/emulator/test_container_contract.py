"""Scripts written for SageMaker run as on AWS: SageMaker's paths, the training toolkit's view,
and SageMaker SDK v3's ``ModelTrainer`` unchanged.

``ModelTrainer`` sends ``AlgorithmSpecification.ContainerEntrypoint=["/bin/bash"]`` with
``ContainerArguments`` running ``/opt/ml/input/data/sm_drivers/sm_train.sh``, and its source and
drivers as the ``code`` and ``sm_drivers`` channels. It runs in a child process, routed to the
backend by boto3's service endpoint variables, so that its imports and settings stay there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.admin import AdminClient
from airflow_spot_provider.emulator.container import namespaces_unavailable
from airflow_spot_provider.emulator.testing import (
    ROLE_ARN,
    log_lines,
    model_files,
    script_request,
    secondary_statuses,
    wait_for_job,
)
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus

TOOLKIT_SCRIPT = """
    import json, os
    from sagemaker_training import environment

    env = environment.Environment()
    report = {
        "hosts": env.hosts,
        "current_host": env.current_host,
        "channel_input_dirs": env.channel_input_dirs,
        "hyperparameters": env.hyperparameters,
        "model_dir": env.model_dir,
        "output_data_dir": env.output_data_dir,
        "job_name": env.job_name,
        "module_name": env.module_name,
        "toolkit_env_vars": env.to_env_vars(),
        "job_env": dict(os.environ),
        "train_files": sorted(os.listdir(env.channel_input_dirs["train"])),
    }
    with open(os.path.join(env.model_dir, "report.json"), "w") as handle:
        json.dump(report, handle)
"""

CHECKPOINT_SCRIPT = """
    import json, os, sys, time
    # Written for AWS: the checkpoint dir is SageMaker's default LocalPath, hard-coded.
    path = "/opt/ml/checkpoints/state.json"
    step = json.load(open(path))["step"] if os.path.exists(path) else 0
    print(f"start at step {step} with {sys.argv[1:]}", flush=True)
    while step < 30:
        time.sleep(float(os.environ.get("STEP_SECONDS", "0.05")))
        step += 1
        with open("/opt/ml/checkpoints/.state.tmp", "w") as handle:
            json.dump({"step": step}, handle)
        os.replace("/opt/ml/checkpoints/.state.tmp", path)
        print(f"step {step}", flush=True)
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "final.json"), "w") as handle:
        json.dump({"step": step, "argv": sys.argv[1:]}, handle)
"""

PYTORCH_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311"
DRIVER = """
    import json, sys
    import boto3
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import (
        CheckpointConfig, Compute, OutputDataConfig, SourceCode, StoppingCondition,
    )

    spec = json.loads(sys.argv[1])
    boto_session = boto3.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    trainer = ModelTrainer(
        sagemaker_session=Session(boto_session=boto_session, default_bucket=spec["bucket"]),
        role=spec["role"],
        base_job_name=spec["base"],
        training_image=spec["image"],
        source_code=SourceCode(source_dir=spec["source"], entry_script="train.py"),
        compute=Compute(
            instance_type="ml.m5.large", instance_count=1, enable_managed_spot_training=True
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=120, max_wait_time_in_seconds=600
        ),
        checkpoint_config=CheckpointConfig(s3_uri=spec["checkpoints"]),
        output_data_config=OutputDataConfig(s3_output_path=spec["output"]),
        hyperparameters={"epochs": 2, "lr": 0.1},
        environment={"STEP_SECONDS": "0.2"},  # time enough to see progress, then interrupt
    )
    trainer.train(wait=True, logs=True)
    print("JOB " + trainer._latest_training_job.training_job_name, flush=True)
"""


def _namespaces_or_skip() -> None:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(f"jobs cannot see /opt/ml without namespaces here: {reason}")


def _source(tmp_path: Path, script: str) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(textwrap.dedent(script))
    return source


def _host_opt_ml() -> list[str] | None:
    path = Path("/opt/ml")
    return sorted(p.name for p in path.iterdir()) if path.exists() else None


def test_training_toolkit_environment_inside_a_job(
    sm: Any, s3: Any, bucket: str, job_name: str, tmp_path: Path
) -> None:
    pytest.importorskip("sagemaker_training", reason="sagemaker-training is a dev dependency")
    _namespaces_or_skip()
    s3.put_object(Bucket=bucket, Key=f"data/{job_name}/a.csv", Body=b"1,2\n")
    request = script_request(
        job_name, bucket, _source(tmp_path, TOOLKIT_SCRIPT), "train.py", epochs=3, lr="0.1"
    )
    request["HyperParameters"]["mode"] = '"fast"'
    request["InputDataConfig"] = [
        {
            "ChannelName": "train",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{bucket}/data/{job_name}",
                }
            },
        }
    ]
    sm.create_training_job(**request)
    final = wait_for_job(sm, job_name, timeout=120)
    assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED, final.get("FailureReason")
    report = json.loads(model_files(s3, final)["report.json"])
    assert report["hosts"] == ["algo-1"]
    assert report["current_host"] == "algo-1"
    assert report["channel_input_dirs"] == {"train": "/opt/ml/input/data/train"}
    assert report["train_files"] == ["a.csv"]
    assert report["hyperparameters"] == {"epochs": 3, "lr": 0.1, "mode": "fast"}
    assert report["model_dir"] == "/opt/ml/model"
    assert report["output_data_dir"] == "/opt/ml/output/data"
    assert report["job_name"] == job_name
    assert report["module_name"] == "train"
    # Every variable the toolkit would export, the job already has, with the very same value.
    toolkit, job = report["toolkit_env_vars"], report["job_env"]
    assert len(toolkit) >= 35
    for name in sorted(toolkit):
        assert job.get(name) == toolkit[name], name
    assert job["TRAINING_JOB_ARN"] == final["TrainingJobArn"]


def test_trainer_hard_coding_opt_ml_checkpoints_resumes_after_an_interruption(
    sm: Any,
    s3: Any,
    logs: Any,
    bucket: str,
    job_name: str,
    admin: AdminClient,
    tmp_path: Path,
) -> None:
    _namespaces_or_skip()
    host_view = _host_opt_ml()
    request = script_request(job_name, bucket, _source(tmp_path, CHECKPOINT_SCRIPT), "train.py")
    request["Environment"] = {"STEP_SECONDS": "0.2"}
    sm.create_training_job(**request)
    _interrupt_once_training(sm, logs, admin, job_name)
    final = wait_for_job(sm, job_name, timeout=120)
    assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED, final.get("FailureReason")
    assert S.INTERRUPTED in secondary_statuses(final)
    assert json.loads(model_files(s3, final)["final.json"]) == {"step": 30, "argv": []}
    # The checkpoint went to S3 from the job's /opt/ml/checkpoints and came back after the restart.
    checkpoint = s3.get_object(Bucket=bucket, Key=f"checkpoints/{job_name}/state.json")
    assert json.loads(checkpoint["Body"].read()) == {"step": 30}
    starts = [line for line in log_lines(logs, job_name) if line.startswith("start at step")]
    assert starts[0] == "start at step 0 with []"
    assert len(starts) == 2 and starts[1] != starts[0], starts  # resumed, not restarted
    assert _host_opt_ml() == host_view  # the host's own /opt/ml was never written


def _interrupt_once_training(sm: Any, logs: Any, admin: AdminClient, base: str) -> str:
    """Find the job whose name starts with ``base``; interrupt it once its script has made
    progress (on a signal of the job's log: on a loaded machine a fixed time may come too early).
    """
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        found = sm.list_training_jobs(NameContains=base)["TrainingJobSummaries"]
        if found and "step 3" in log_lines(logs, found[0]["TrainingJobName"]):
            admin.interrupt(found[0]["TrainingJobName"])
            return str(found[0]["TrainingJobName"])
        time.sleep(0.2)
    raise AssertionError(f"no job of {base} made progress within 180 s")


def test_model_trainer_spot_job_completes_through_an_interruption(
    emulator: SpotEmulator,
    sm: Any,
    s3: Any,
    logs: Any,
    bucket: str,
    admin: AdminClient,
    job_name: str,
    tmp_path: Path,
) -> None:
    pytest.importorskip("sagemaker.train", reason="SageMaker SDK v3 (sagemaker>=3) is a dev dep")
    _namespaces_or_skip()  # ModelTrainer's sm_train.sh hard-codes /opt/ml
    base = job_name[:30].rstrip("-")  # ModelTrainer appends a timestamp
    source = _source(tmp_path, CHECKPOINT_SCRIPT)
    (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER))
    user_config = tmp_path / "sagemaker-config.yaml"  # no telemetry calls to AWS
    user_config.write_text(
        "SchemaVersion: '1.0'\n"
        "SageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
    )
    spec = {
        "bucket": bucket,
        "role": ROLE_ARN,
        "base": base,
        "image": PYTORCH_IMAGE,
        "source": str(source),
        "checkpoints": f"s3://{bucket}/checkpoints/{base}",
        "output": f"s3://{bucket}/output",
    }
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL_SAGEMAKER=emulator.endpoint_url,
        AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=emulator.endpoint_url,
        AWS_ENDPOINT_URL_S3=emulator.s3_endpoint_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        SAGEMAKER_VALIDATE_ROLE="false",
        SAGEMAKER_USER_CONFIG_OVERRIDE=str(user_config),
    )
    out, err = tmp_path / "driver.out", tmp_path / "driver.err"  # files: a pipe could fill up
    with out.open("w") as stdout, err.open("w") as stderr:
        driver = subprocess.Popen(
            [sys.executable, str(tmp_path / "driver.py"), json.dumps(spec)],
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            name = _interrupt_once_training(sm, logs, admin, base)
            driver.wait(timeout=240)
        finally:
            driver.kill()
    assert driver.returncode == 0, err.read_text()[-3000:]
    assert out.read_text().split("JOB ")[-1].strip() == name
    final = sm.describe_training_job(TrainingJobName=name)
    assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED, final.get("FailureReason")
    assert final["EnableManagedSpotTraining"] is True
    assert S.INTERRUPTED in secondary_statuses(final)
    # What ModelTrainer sent: its entry point and channels, no script-mode hyperparameters.
    spec_sent = final["AlgorithmSpecification"]
    assert spec_sent["ContainerEntrypoint"] == ["/bin/bash"]
    assert any("sm_drivers/sm_train.sh" in a for a in spec_sent["ContainerArguments"])
    assert {c["ChannelName"] for c in final["InputDataConfig"]} == {"code", "sm_drivers"}
    assert not any(k.startswith("sagemaker_") for k in final.get("HyperParameters", {}))
    # The script resumed from the checkpoint restored into its /opt/ml/checkpoints.
    starts = [line for line in log_lines(logs, name) if line.startswith("start at step")]
    assert len(starts) == 2, starts
    assert starts[0].startswith("start at step 0 ")
    assert not starts[1].startswith("start at step 0 ")
    final_json = json.loads(model_files(s3, final)["final.json"])
    assert final_json == {"step": 30, "argv": ["--epochs", "2", "--lr", "0.1"]}
    assert final["BillableTimeInSeconds"] <= final["TrainingTimeInSeconds"]
