"""Scripts written for SageMaker run as on AWS: SageMaker's paths, the training toolkit's view."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_spot_provider.emulator.admin import AdminClient
from airflow_spot_provider.emulator.container import namespaces_unavailable
from airflow_spot_provider.emulator.testing import script_request, secondary_statuses, wait_for_job
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
LOG_GROUP = "/aws/sagemaker/TrainingJobs"

CHECKPOINT_SCRIPT = """
    import json, os, time
    # Written for AWS: the checkpoint dir is SageMaker's default LocalPath, hard-coded.
    path = "/opt/ml/checkpoints/state.json"
    step = json.load(open(path))["step"] if os.path.exists(path) else 0
    print(f"start at step {step}", flush=True)
    while step < 30:
        time.sleep(0.05)
        step += 1
        with open("/opt/ml/checkpoints/.state.tmp", "w") as handle:
            json.dump({"step": step}, handle)
        os.replace("/opt/ml/checkpoints/.state.tmp", path)
    with open("/opt/ml/model/final.json", "w") as handle:
        json.dump({"step": step}, handle)
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


def _model_file(s3: Any, described: dict[str, Any], name: str) -> Any:
    uri = described["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        member = tar.extractfile(name)
        assert member is not None
        return json.loads(member.read())


def _log_lines(logs: Any, job: str) -> list[str]:
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=job + "/")
    (stream,) = streams["logStreams"]
    events = logs.get_log_events(
        logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"], startFromHead=True
    )["events"]
    return [e["message"] for e in events]


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
    report = _model_file(s3, final, "report.json")
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
    admin.load_scenario([{"interrupt": {"job": job_name, "at_training_second": 0.6}}])
    request = script_request(job_name, bucket, _source(tmp_path, CHECKPOINT_SCRIPT), "train.py")
    sm.create_training_job(**request)
    final = wait_for_job(sm, job_name, timeout=120)
    assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED, final.get("FailureReason")
    assert S.INTERRUPTED in secondary_statuses(final)
    assert _model_file(s3, final, "final.json") == {"step": 30}
    # The checkpoint went to S3 from the job's /opt/ml/checkpoints and came back after the restart.
    checkpoint = s3.get_object(Bucket=bucket, Key=f"checkpoints/{job_name}/state.json")
    assert json.loads(checkpoint["Body"].read()) == {"step": 30}
    starts = [line for line in _log_lines(logs, job_name) if line.startswith("start at step")]
    assert starts[0] == "start at step 0"
    assert len(starts) == 2 and starts[1] != "start at step 0", starts  # resumed, not restarted
    assert _host_opt_ml() == host_view  # the host's own /opt/ml was never written
