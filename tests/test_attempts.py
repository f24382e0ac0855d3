"""Tests of the attempt chain: names, the request rebuilt from a describe, the follow state."""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.model import StructureShape
from botocore.validate import validate_parameters

from airflow_spot_provider.attempts import (
    _echoed_request_fields,
    attempt_name,
    attempts_in,
    chain_base,
    chain_filter,
    request_from_describe,
)
from airflow_spot_provider.job_names import attempt_job_name
from airflow_spot_provider.lifecycle import SecondaryStatus, TrainingJobStatus

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def _create_training_job_shape() -> StructureShape:
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTrainingJob").input_shape
    assert isinstance(shape, StructureShape)
    return shape


def full_request() -> dict[str, Any]:
    """A valid CreateTrainingJob request using most of the API, Tags included."""
    return {
        "TrainingJobName": "train-a1",
        "HyperParameters": {"epochs": "10", "lr": "0.01"},
        "AlgorithmSpecification": {
            "TrainingImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/trainer:latest",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "loss", "Regex": "loss=([0-9.]+)"}],
        },
        "RoleArn": "arn:aws:iam::123456789012:role/sagemaker",
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": "s3://bucket/train/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/output"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        "VpcConfig": {"SecurityGroupIds": ["sg-0123456789"], "Subnets": ["subnet-0123456789"]},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
        "Tags": [{"Key": "team", "Value": "ml"}],
        "EnableNetworkIsolation": False,
        "EnableInterContainerTrafficEncryption": True,
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {
            "S3Uri": "s3://bucket/checkpoints",
            "LocalPath": "/opt/ml/checkpoints",
        },
        "DebugHookConfig": {"S3OutputPath": "s3://bucket/debug"},
        "TensorBoardOutputConfig": {"S3OutputPath": "s3://bucket/tensorboard"},
        "ExperimentConfig": {"ExperimentName": "spot", "TrialName": "trial-1"},
        "ProfilerConfig": {"S3OutputPath": "s3://bucket/profiler"},
        "Environment": {"MODE": "spot"},
        "RetryStrategy": {"MaximumRetryAttempts": 2},
        "RemoteDebugConfig": {"EnableRemoteDebug": False},
        "InfraCheckConfig": {"EnableInfraCheck": False},
    }


def describe_of(request: dict[str, Any]) -> dict[str, Any]:
    """The DescribeTrainingJob response of a finished job created with ``request``."""
    echoed = {k: copy.deepcopy(v) for k, v in request.items() if k != "Tags"}
    name = request["TrainingJobName"]
    return {
        **echoed,
        "TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://bucket/output/{name}/output/model.tar.gz"},
        "TrainingJobStatus": TrainingJobStatus.COMPLETED.value,
        "SecondaryStatus": SecondaryStatus.COMPLETED.value,
        "CreationTime": T0,
        "TrainingStartTime": T0,
        "TrainingEndTime": T0,
        "LastModifiedTime": T0,
        "SecondaryStatusTransitions": [
            {"Status": SecondaryStatus.COMPLETED.value, "StartTime": T0, "StatusMessage": ""}
        ],
        "FinalMetricDataList": [{"MetricName": "loss", "Value": 0.1, "Timestamp": T0}],
        "TrainingTimeInSeconds": 100,
        "BillableTimeInSeconds": 40,
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }


# --- the echoed fields, from botocore's model -----------------------------------------------------


def test_echoed_fields_are_the_request_members_describe_returns() -> None:
    fields = _echoed_request_fields()
    for kept in (
        "TrainingJobName",
        "HyperParameters",
        "AlgorithmSpecification",
        "RoleArn",
        "InputDataConfig",
        "OutputDataConfig",
        "ResourceConfig",
        "VpcConfig",
        "StoppingCondition",
        "EnableManagedSpotTraining",
        "CheckpointConfig",
        "RetryStrategy",
        "Environment",
    ):
        assert kept in fields, kept
    for dropped in (
        "TrainingJobStatus",
        "SecondaryStatus",
        "CreationTime",
        "TrainingJobArn",
        "ModelArtifacts",
        "SecondaryStatusTransitions",
        "Tags",
    ):
        assert dropped not in fields, dropped
    request_members = list(_create_training_job_shape().members)
    assert set(fields) <= set(request_members)
    assert list(fields) == [m for m in request_members if m in fields]  # request order
    assert len(set(fields)) == len(fields)
    assert _echoed_request_fields() is fields  # loaded once


def test_importing_attempts_does_not_load_botocore() -> None:
    code = (
        "import sys, airflow_spot_provider.attempts;"
        " print(sorted(m for m in sys.modules if m.split('.')[0] in ('botocore', 'boto3')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- request_from_describe ------------------------------------------------------------------------


def test_rebuilt_request_is_the_original_without_tags_and_passes_botocore() -> None:
    original = full_request()
    describe = describe_of(original)
    rebuilt = request_from_describe(describe)
    assert rebuilt == {k: v for k, v in original.items() if k != "Tags"}
    shape = _create_training_job_shape()
    with pytest.raises(ParamValidationError, match="TrainingJobArn"):
        validate_parameters(describe, shape)  # the raw response is not a request
    rebuilt["TrainingJobName"] = "train-a2"
    validate_parameters(rebuilt, shape)


def test_rebuilt_request_copies_deeply_and_leaves_the_response_alone() -> None:
    describe = describe_of(full_request())
    snapshot = copy.deepcopy(describe)
    rebuilt = request_from_describe(describe)
    assert describe == snapshot
    rebuilt["HyperParameters"]["epochs"] = "99"
    rebuilt["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = "s3://other/"
    rebuilt["StoppingCondition"].pop("MaxWaitTimeInSeconds")
    rebuilt["VpcConfig"]["Subnets"].append("subnet-9")
    assert describe == snapshot
    assert rebuilt["ResourceConfig"] is not describe["ResourceConfig"]


def test_fields_absent_from_the_response_stay_absent() -> None:
    describe = describe_of(full_request())
    for name in ("VpcConfig", "Environment", "RetryStrategy", "ProfilerConfig"):
        del describe[name]
    rebuilt = request_from_describe(describe)
    assert not {"VpcConfig", "Environment", "RetryStrategy", "ProfilerConfig"} & set(rebuilt)
    assert rebuilt["CheckpointConfig"] == full_request()["CheckpointConfig"]
    assert request_from_describe({}) == {}


# --- names of the chain ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "base"),
    [
        ("train-a1", "train"),  # named by this provider
        ("train", "train"),  # a name given by the user
        ("train-a2", "train-a2"),  # only -a1 marks a first attempt
        ("train-a10", "train-a10"),
        ("train-a01", "train-a01"),
        ("a1", "a1"),  # no base before the suffix
    ],
)
def test_chain_base(first: str, base: str) -> None:
    assert chain_base(first) == base


def test_attempt_name() -> None:
    assert attempt_name("train-a1", 1) == "train-a1"
    assert attempt_name("train-a1", 2) == "train-a2"
    assert attempt_name("train-a1", 12) == "train-a12"
    assert attempt_name("train", 1) == "train"
    assert attempt_name("train", 3) == "train-a3"
    assert attempt_name("train-a2", 2) == "train-a2-a2"
    longest = "x" * 60
    assert attempt_name(longest, 9) == f"{longest}-a9"  # exactly 63 characters
    assert attempt_name("x" * 57 + "-a1", 2) == "x" * 57 + "-a2"


def test_long_names_are_hashed_by_the_one_job_name_function_and_still_form_a_chain() -> None:
    base = "churn-model-" + "x" * 48  # 60 characters: attempt 10 does not fit as <base>-a10
    first = attempt_job_name(base, 1)
    names = [attempt_name(first, n) for n in range(1, 13)]
    assert names[1] == attempt_job_name(base, 2)
    assert all(len(n) <= 63 for n in names) and len(set(names)) == len(names)
    assert names[9] != f"{base}-a10" and names[9].endswith("-a10")  # hashed, never raised
    assert attempts_in(reversed(names), first) == names
    assert all(chain_filter(first) in n for n in names)
    assert chain_filter(first).startswith("churn-model-")
    assert chain_filter("train-a1") == "train-a"
    assert chain_filter("train") == "train"


def test_attempts_in_follows_the_chain_and_stops_at_a_gap() -> None:
    names = ["train-a1", "train-a3", "train-a2", "train-a5", "other-a2", "train-a2-a2", "train"]
    assert attempts_in(names, "train-a1") == ["train-a1", "train-a2", "train-a3"]
    assert attempts_in(iter(names), "train-a1") == ["train-a1", "train-a2", "train-a3"]
    assert attempts_in(["train-a2", "train-a3"], "train-a1") == []  # the first one is missing
    assert attempts_in([], "train-a1") == []
    # A user-named first job: its attempts share its name as base.
    assert attempts_in(["train", "train-a2", "train-a4"], "train") == ["train", "train-a2"]
