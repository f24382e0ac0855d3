"""The wire protocol: errors with SageMaker's codes and wording, ListTrainingJobs, CloudWatch Logs,
throttling, protocol errors, unsigned requests."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.admin import AdminClient
from airflow_spot_provider.emulator.testing import (
    synthetic_request,
    wait_for_job,
)
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus

NAME_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def _error(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = raised.value.response["Error"]
    return error["Code"], error["Message"]


def _create_error(sm: Any, request: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        sm.create_training_job(**request)
    return _error(raised)


# -- CreateTrainingJob validation ------------------------------------------------------------


def test_bad_name_one_violation(sm: Any, bucket: str) -> None:
    assert _create_error(sm, synthetic_request("bad_name", bucket)) == (
        "ValidationException",
        "1 validation error detected: Value 'bad_name' at 'trainingJobName' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {NAME_PATTERN}",
    )


def test_bad_name_two_violations(sm: Any, bucket: str) -> None:
    name = "n" * 64
    assert _create_error(sm, synthetic_request(name, bucket)) == (
        "ValidationException",
        f"2 validation errors detected: Value '{name}' at 'trainingJobName' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {NAME_PATTERN}; "
        f"Value '{name}' at 'trainingJobName' failed to satisfy constraint: Member must have "
        "length less than or equal to 63",
    )


def test_service_model_constraints(sm: Any, bucket: str, job_name: str) -> None:
    request = synthetic_request(job_name, bucket, instance_type="ml.imaginary.large")
    code, message = _create_error(sm, request)
    assert code == "ValidationException"
    assert message.startswith(
        "1 validation error detected: Value 'ml.imaginary.large' at "
        "'resourceConfig.instanceType' failed to satisfy constraint: Member must satisfy enum "
        "value set: [ml.m4.xlarge, "
    )
    request = synthetic_request(job_name, bucket, RoleArn="arn:aws:iam::123:role/short")
    code, message = _create_error(sm, request)
    assert code == "ValidationException"
    assert "at 'roleArn' failed to satisfy constraint: Member must satisfy regular" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"spot": False, "max_wait": None, "StoppingCondition": {"MaxWaitTimeInSeconds": 60}},
            "Invalid MaxWaitTimeInSeconds. It is only supported when EnableManagedSpotTraining "
            "is set to true",
        ),
        (
            {"max_runtime": 60, "max_wait": 30},
            "Invalid MaxWaitTimeInSeconds. It must be present and be greater",
        ),
        ({"max_wait": None}, "Invalid MaxWaitTimeInSeconds. It must be present"),
        (
            {"AlgorithmSpecification": {"TrainingImage": "busybox", "TrainingInputMode": "File"}},
            "TrainingImage 'busybox' is not known to the spot emulator",
        ),
        (
            {"CheckpointConfig": {"S3Uri": "s3://b/c", "LocalPath": "/opt/ml/../../etc"}},
            "Invalid CheckpointConfig.LocalPath",
        ),
    ],
    ids=[
        "max-wait-without-spot",
        "max-wait-below-runtime",
        "spot-without-max-wait",
        "unknown-image",
        "local-path-escape",
    ],
)
def test_semantic_rules(
    sm: Any, bucket: str, job_name: str, changes: dict[str, Any], expected: str
) -> None:
    helper_args = {k: changes.pop(k) for k in ("spot", "max_wait", "max_runtime") if k in changes}
    request = synthetic_request(job_name, bucket, **helper_args, **changes)
    code, message = _create_error(sm, request)
    assert code == "ValidationException"
    assert message.startswith(expected)
    with pytest.raises(ClientError, match="Requested resource not found"):
        sm.describe_training_job(TrainingJobName=job_name)  # nothing was created


def test_duplicate_name(sm: Any, bucket: str, job_name: str) -> None:
    sm.create_training_job(**synthetic_request(job_name, bucket, train_seconds=0.1))
    assert _create_error(sm, synthetic_request(job_name, bucket)) == (
        "ResourceInUse",
        "Training job names must be unique within an AWS account and region, and a training job "
        "with this name already exists "
        f"(arn:aws:sagemaker:us-east-1:123456789012:training-job/{job_name})",
    )
    wait_for_job(sm, job_name)


def test_unknown_job(sm: Any) -> None:
    for call in (sm.describe_training_job, sm.stop_training_job):
        with pytest.raises(ClientError) as raised:
            call(TrainingJobName="no-such-job")
        assert _error(raised) == ("ValidationException", "Requested resource not found.")


def test_quota_per_instance_type_and_usage(
    sm: Any, bucket: str, job_name: str, quota_type: str
) -> None:
    def job(name: str, count: int, spot: bool) -> dict[str, Any]:
        request = synthetic_request(name, bucket, spot=spot, train_seconds=30, checkpoint=False)
        request["ResourceConfig"] = {
            "InstanceType": quota_type,
            "InstanceCount": count,
            "VolumeSizeInGB": 1,
        }
        return request

    sm.create_training_job(**job(job_name + "-a", 2, spot=True))
    try:
        assert _create_error(sm, job(job_name + "-b", 1, spot=True)) == (
            "ResourceLimitExceeded",
            f"The account-level service limit '{quota_type} for spot training job usage' is 2 "
            "Instances, with current utilization of 2 Instances and a request delta of 1 "
            "Instances. Please contact AWS support to request an increase for this limit.",
        )
        # On-demand usage has its own limit.
        code, message = _create_error(sm, job(job_name + "-c", 3, spot=False))
        assert code == "ResourceLimitExceeded"
        assert f"'{quota_type} for training job usage' is 2 Instances" in message
    finally:
        sm.stop_training_job(TrainingJobName=job_name + "-a")
    wait_for_job(sm, job_name + "-a")
    # The stopped job's instances count no more.
    sm.create_training_job(**job(job_name + "-d", 2, spot=True))
    sm.stop_training_job(TrainingJobName=job_name + "-d")
    wait_for_job(sm, job_name + "-d")


# -- ListTrainingJobs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listed(sm: Any, bucket: str) -> list[str]:
    """Five jobs of one prefix: four completed, the last still training."""
    names = [f"listing-{i}" for i in range(5)]
    for name in names[:4]:
        sm.create_training_job(**synthetic_request(name, bucket, train_seconds=0.05))
        time.sleep(0.01)  # distinct creation times
    for name in names[:4]:
        wait_for_job(sm, name)
    sm.create_training_job(**synthetic_request(names[4], bucket, train_seconds=30))
    return names


def _names(response: dict[str, Any]) -> list[str]:
    return [s["TrainingJobName"] for s in response["TrainingJobSummaries"]]


def test_list_filters_and_sorting(sm: Any, listed: list[str]) -> None:
    everything = sm.list_training_jobs(NameContains="LISTING-", MaxResults=100)
    assert _names(everything) == listed  # ascending creation time by default; any case
    summary = everything["TrainingJobSummaries"][0]
    assert set(summary) >= {
        "TrainingJobName",
        "TrainingJobArn",
        "CreationTime",
        "LastModifiedTime",
        "TrainingJobStatus",
        "SecondaryStatus",
        "TrainingEndTime",
    }
    completed = sm.list_training_jobs(
        NameContains="listing-", StatusEquals=TrainingJobStatus.COMPLETED
    )
    assert _names(completed) == listed[:4]
    running = sm.list_training_jobs(
        NameContains="listing-", StatusEquals=TrainingJobStatus.IN_PROGRESS
    )
    assert _names(running) == listed[4:]
    assert "TrainingEndTime" not in running["TrainingJobSummaries"][0]
    by_name = sm.list_training_jobs(NameContains="listing-", SortBy="Name", SortOrder="Descending")
    assert _names(by_name) == sorted(listed, reverse=True)

    third = everything["TrainingJobSummaries"][2]
    after = sm.list_training_jobs(NameContains="listing-", CreationTimeAfter=third["CreationTime"])
    assert _names(after) == listed[3:]
    before = sm.list_training_jobs(
        NameContains="listing-", CreationTimeBefore=third["CreationTime"]
    )
    assert _names(before) == listed[:2]
    changed = sm.list_training_jobs(
        NameContains="listing-", LastModifiedTimeAfter=third["LastModifiedTime"]
    )
    assert listed[4] in _names(changed) and listed[2] not in _names(changed)


def test_list_pagination(sm: Any, listed: list[str]) -> None:
    pages: list[list[str]] = []
    kwargs: dict[str, Any] = {"NameContains": "listing-", "MaxResults": 2}
    while True:
        page = sm.list_training_jobs(**kwargs)
        pages.append(_names(page))
        if "NextToken" not in page:
            break
        kwargs["NextToken"] = page["NextToken"]
    assert pages == [listed[:2], listed[2:4], listed[4:]]
    # boto3's paginator walks the same pages.
    paginator = sm.get_paginator("list_training_jobs")
    walked = [
        n
        for p in paginator.paginate(NameContains="listing-", PaginationConfig={"PageSize": 3})
        for n in _names(p)
    ]
    assert walked == listed

    first = sm.list_training_jobs(NameContains="listing-", MaxResults=2)
    with pytest.raises(ClientError) as raised:
        sm.list_training_jobs(NameContains="listing-3", MaxResults=2, NextToken=first["NextToken"])
    assert _error(raised)[0] == "ValidationException"
    with pytest.raises(ClientError) as raised:
        sm.list_training_jobs(MaxResults=101)
    assert _error(raised) == (
        "ValidationException",
        "1 validation error detected: Value '101' at 'maxResults' failed to satisfy constraint: "
        "Member must have value less than or equal to 100",
    )
    sm.stop_training_job(TrainingJobName=listed[4])


# -- CloudWatch Logs ---------------------------------------------------------------------------


def test_log_streams_and_events(sm: Any, logs: Any, bucket: str, job_name: str) -> None:
    sm.create_training_job(
        **synthetic_request(job_name, bucket, train_seconds=0.5, step_seconds=0.1)
    )
    final = wait_for_job(sm, job_name)
    streams = logs.describe_log_streams(
        logGroupName=LOG_GROUP, logStreamNamePrefix=job_name + "/", orderBy="LogStreamName"
    )["logStreams"]
    assert len(streams) == 1
    stream = streams[0]["logStreamName"]
    start = int(final["TrainingStartTime"].timestamp())
    assert stream in (f"{job_name}/algo-1-{start}", f"{job_name}/algo-1-{start + 1}")

    # Forward from the head in pages of 2, until the token comes back unchanged.
    read: list[str] = []
    kwargs: dict[str, Any] = {
        "logGroupName": LOG_GROUP,
        "logStreamName": stream,
        "limit": 2,
        "startFromHead": True,
    }
    while True:
        page = logs.get_log_events(**kwargs)
        read += [e["message"] for e in page["events"]]
        if kwargs.get("nextToken") == page["nextForwardToken"]:
            assert page["events"] == []
            break
        kwargs["nextToken"] = page["nextForwardToken"]
    assert read == [f"step {i}/5" for i in range(1, 6)]

    # Without a token and not from the head: the newest events; backward from there.
    tail = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream, limit=2)
    assert [e["message"] for e in tail["events"]] == ["step 4/5", "step 5/5"]
    back = logs.get_log_events(
        logGroupName=LOG_GROUP, logStreamName=stream, limit=2, nextToken=tail["nextBackwardToken"]
    )
    assert [e["message"] for e in back["events"]] == ["step 2/5", "step 3/5"]
    later = logs.get_log_events(
        logGroupName=LOG_GROUP,
        logStreamName=stream,
        startFromHead=True,
        startTime=page_timestamp(logs, stream, index=3),
    )
    assert next(e["message"] for e in later["events"]) == "step 4/5"


def page_timestamp(logs: Any, stream: str, index: int) -> int:
    """The timestamp of the index-th event of a stream."""
    events = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=True)
    return int(events["events"][index]["timestamp"])


def test_logs_errors(logs: Any, sm: Any, bucket: str, job_name: str) -> None:
    sm.create_training_job(**synthetic_request(job_name, bucket, train_seconds=0.1))
    wait_for_job(sm, job_name)
    with pytest.raises(ClientError) as raised:
        logs.describe_log_streams(logGroupName="/no/such/group")
    assert _error(raised) == (
        "ResourceNotFoundException",
        "The specified log group does not exist.",
    )
    with pytest.raises(ClientError) as raised:
        logs.get_log_events(logGroupName=LOG_GROUP, logStreamName="no-such-stream")
    assert _error(raised) == (
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
    )
    with pytest.raises(ClientError) as raised:
        logs.describe_log_streams(
            logGroupName=LOG_GROUP, logStreamNamePrefix=job_name, orderBy="LastEventTime"
        )
    assert _error(raised)[0] == "InvalidParameterException"


# -- throttling, protocol ----------------------------------------------------------------------


def test_throttling(sm: Any, admin: AdminClient, bucket: str, job_name: str) -> None:
    sm.create_training_job(**synthetic_request(job_name, bucket, train_seconds=0.1))
    admin.load_scenario([{"throttle": {"operation": "DescribeTrainingJob", "count": 2}}])
    for _ in range(2):
        with pytest.raises(ClientError) as raised:
            sm.describe_training_job(TrainingJobName=job_name)
        assert _error(raised) == ("ThrottlingException", "Rate exceeded")
    assert sm.describe_training_job(TrainingJobName=job_name)["TrainingJobName"] == job_name

    admin.load_scenario([{"throttle": {"operation": "ListTrainingJobs", "rate": 2}}])
    try:
        outcomes: list[str] = []
        # Calls until the bucket runs dry: two a second refill it, so a loaded machine whose
        # calls are slow needs more of them (the time taken is not what is checked).
        while "ThrottlingException" not in outcomes and len(outcomes) < 50:
            try:
                sm.list_training_jobs(MaxResults=1)
                outcomes.append("ok")
            except ClientError as err:
                outcomes.append(err.response["Error"]["Code"])
        assert outcomes[:2] == ["ok", "ok"]  # a burst of one second's worth
        assert "ThrottlingException" in outcomes
        time.sleep(0.6)
        sm.list_training_jobs(MaxResults=1)  # tokens came back
    finally:
        admin.load_scenario([], replace=True)
    throttles = admin.events(kind="throttle")
    assert {e["operation"] for e in throttles} >= {"DescribeTrainingJob", "ListTrainingJobs"}
    stats = admin.stats()
    assert stats["api_errors"]["SageMaker.DescribeTrainingJob:ThrottlingException"] >= 2
    wait_for_job(sm, job_name)


def _raw(emulator: SpotEmulator, body: bytes, target: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = urllib.request.Request(emulator.endpoint_url + "/", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_protocol_errors_keep_the_server_serving(emulator: SpotEmulator, sm: Any) -> None:
    status, body = _raw(emulator, b"{not json", "SageMaker.DescribeTrainingJob")
    assert status == 400 and body["__type"] == "SerializationException"
    status, body = _raw(emulator, b"[1, 2]", "SageMaker.DescribeTrainingJob")
    assert status == 400 and body["__type"] == "SerializationException"
    status, body = _raw(emulator, b"{}", "SageMaker.DeleteEverything")
    assert status == 400 and body["__type"] == "UnknownOperationException"
    assert "SageMaker.DeleteEverything" in body["message"]
    status, body = _raw(emulator, b"{}", None)
    assert status == 400 and body["__type"] == "UnknownOperationException"
    big = json.dumps({"TrainingJobName": "x" * (3 * 1024 * 1024)}).encode()
    status, body = _raw(emulator, big, "SageMaker.DescribeTrainingJob")
    assert status == 400 and body["__type"] == "RequestEntityTooLargeException"
    assert "exceeds the limit of 2097152 bytes" in body["message"]
    status, body = _raw(emulator, b'{"TrainingJobName": 5}', "SageMaker.DescribeTrainingJob")
    assert status == 400 and body["__type"] == "ValidationException"
    # Still serving.
    assert sm.list_training_jobs(MaxResults=1)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_unsigned_requests_are_served(emulator: SpotEmulator, bucket: str, job_name: str) -> None:
    unsigned = emulator.boto3_client("sagemaker", config=Config(signature_version=UNSIGNED))
    created = unsigned.create_training_job(**synthetic_request(job_name, bucket, train_seconds=0.1))
    described = unsigned.describe_training_job(TrainingJobName=job_name)
    # Served, not just answered: the unsigned calls created the job and describe it.
    assert created["TrainingJobArn"].endswith(f":training-job/{job_name}")
    assert described["TrainingJobArn"] == created["TrainingJobArn"]
    final = wait_for_job(unsigned, job_name)
    assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED
    assert final["SecondaryStatus"] == S.COMPLETED


def test_describe_echoes_the_request_as_sagemaker_does(sm: Any, bucket: str, job_name: str) -> None:
    extra: dict[str, Any] = {
        "Environment": {"MODE": "test"},
        "VpcConfig": {"SecurityGroupIds": ["sg-12345678"], "Subnets": ["subnet-12345678"]},
        "RetryStrategy": {"MaximumRetryAttempts": 2},
        "Tags": [{"Key": "team", "Value": "ml"}],
    }
    request = synthetic_request(job_name, bucket, train_seconds=0.1, **extra)
    request["StoppingCondition"] = {"MaxWaitTimeInSeconds": 86400}  # MaxRuntime defaulted
    sm.create_training_job(**request)
    described = sm.describe_training_job(TrainingJobName=job_name)

    for field in (
        "AlgorithmSpecification",
        "RoleArn",
        "OutputDataConfig",
        "ResourceConfig",
        "HyperParameters",
        "CheckpointConfig",
        "Environment",
        "VpcConfig",
        "RetryStrategy",
        "EnableManagedSpotTraining",
    ):
        assert described[field] == request[field], field
    assert "Tags" not in described  # SageMaker does not echo tags
    assert described["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 86400,  # the default, shown as SageMaker shows it
        "MaxWaitTimeInSeconds": 86400,
    }
    assert described["EnableNetworkIsolation"] is False
    assert described["TrainingJobArn"] == (
        f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job_name}"
    )
    assert described["TrainingJobStatus"] == TrainingJobStatus.IN_PROGRESS
    assert "TrainingTimeInSeconds" not in described  # given once the job has ended
    final = wait_for_job(sm, job_name)
    assert final["LastModifiedTime"] > described["LastModifiedTime"]
