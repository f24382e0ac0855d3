"""Every response is what botocore's model says SageMaker returns, in every terminal state.

botocore validates requests only; a client parsing a response trusts the model (a required member
that is missing, a string where a number belongs, an enum value it does not know...). This
checks the wire JSON of Create/Describe/ListTrainingJobs against the OUTPUT shapes: required
members, no member the model lacks, types, enums, lengths and ranges, patterns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import botocore.session
import pytest
from botocore.model import ListShape, MapShape, Shape, StructureShape

from airflow_spot_provider.emulator.admin import AdminClient
from airflow_spot_provider.emulator.testing import synthetic_request, wait_for_job
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus

MODEL = botocore.session.get_session().get_service_model("sagemaker")
_NUMBER_TYPES = {"integer": (int,), "long": (int,), "float": (int, float), "double": (int, float)}


def _pattern_errors(value: str, shape: Shape, path: str) -> list[str]:
    pattern = shape.metadata.get("pattern")
    if not pattern:
        return []
    try:
        compiled = re.compile(pattern)
    except re.error:  # a Java-only construct: the other checks still apply
        return []
    return [] if compiled.search(value) else [f"{path}: {value!r} does not match {pattern}"]


def _scalar_errors(value: Any, shape: Shape, path: str) -> list[str]:
    kind, meta = shape.type_name, shape.metadata
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: {value!r} is not a string"]
        errors = _pattern_errors(value, shape, path)
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} is not one of {shape.enum}")
        if not meta.get("min", 0) <= len(value) <= meta.get("max", len(value)):
            bounds = f"[{meta.get('min')}, {meta.get('max')}]"
            errors.append(f"{path}: length {len(value)} outside {bounds}")
        return errors
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: {value!r} is not a boolean"]
    if kind == "timestamp":  # JSON protocol: epoch seconds
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} is not epoch seconds"]
    if kind in _NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, _NUMBER_TYPES[kind]):
            return [f"{path}: {value!r} is not a {kind}"]
        if not meta.get("min", value) <= value <= meta.get("max", value):
            return [f"{path}: {value} outside [{meta.get('min')}, {meta.get('max')}]"]
        return []
    return [f"{path}: shape type {kind} not checked"]


def shape_errors(value: Any, shape: Shape, path: str = "") -> list[str]:
    """What in ``value`` breaks ``shape`` (empty: nothing).

    :param value: the wire JSON.
    :param shape: a botocore shape.
    :param path: where ``value`` is, for the messages.
    """
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} where a structure belongs"]
        errors = [
            f"{path}.{m}: required, missing" for m in shape.required_members if m not in value
        ]
        for name, member in value.items():
            if name not in shape.members:
                errors.append(f"{path}.{name}: not a member of {shape.name}")
            else:
                errors += shape_errors(member, shape.members[name], f"{path}.{name}")
        return errors
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} where a list belongs"]
        meta = shape.metadata
        errors = []
        if not meta.get("min", 0) <= len(value) <= meta.get("max", len(value)):
            bounds = f"[{meta.get('min')}, {meta.get('max')}]"
            errors.append(f"{path}: {len(value)} items outside {bounds}")
        for i, item in enumerate(value):
            errors += shape_errors(item, shape.member, f"{path}[{i}]")
        return errors
    if isinstance(shape, MapShape):
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} where a map belongs"]
        errors = []
        for key, item in value.items():
            errors += shape_errors(key, shape.key, f"{path}<key {key!r}>")
            errors += shape_errors(item, shape.value, f"{path}[{key!r}]")
        return errors
    return _scalar_errors(value, shape, path)


class WireResponses:
    """The raw JSON bodies a boto3 client received, per operation."""

    def __init__(self, client: Any) -> None:
        self.bodies: list[tuple[str, Any]] = []
        client.meta.events.register("before-parse.sagemaker.*", self._keep)

    def _keep(self, operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        if response_dict["status_code"] == 200:
            self.bodies.append((operation_model.name, json.loads(response_dict["body"] or b"{}")))

    def check(self) -> Iterator[str]:
        """Every shape error of every body kept."""
        for operation, body in self.bodies:
            shape = MODEL.operation_model(operation).output_shape
            if shape is None:  # StopTrainingJob: no output at all
                yield from [f"{operation}: {body!r} where nothing belongs"] if body else []
            else:
                yield from shape_errors(body, shape, operation)


def test_the_validator_finds_what_breaks_the_model() -> None:
    describe = MODEL.operation_model("DescribeTrainingJob").output_shape
    good = {
        "TrainingJobName": "j",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/j",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/j/output/model.tar.gz"},
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Starting",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "CreationTime": 1.5,
    }
    assert shape_errors(good, describe) == []
    bad = dict(good, SecondaryStatus="Napping", TrainingTimeInSeconds=0, Extra=1)
    del bad["ModelArtifacts"]
    bad["ResourceConfig"] = {"InstanceCount": "1", "VolumeSizeInGB": True}
    bad["TrainingJobName"] = "-" * 64
    secondary_enum = describe.members["SecondaryStatus"].enum
    assert sorted(shape_errors(bad, describe)) == [
        ".Extra: not a member of DescribeTrainingJobResponse",
        ".ModelArtifacts: required, missing",
        ".ResourceConfig.InstanceCount: '1' is not a integer",
        ".ResourceConfig.VolumeSizeInGB: True is not a integer",
        f".SecondaryStatus: 'Napping' is not one of {secondary_enum}",
        ".TrainingJobName: '" + "-" * 64 + "' does not match [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
        ".TrainingJobName: length 64 outside [1, 63]",
        ".TrainingTimeInSeconds: 0 outside [1, None]",
    ]


def _ending(name: str, ending: str, bucket: str) -> dict[str, Any]:
    """The request that ends as ``ending`` (with the admin settings of the test)."""
    if ending == "Completed":
        return synthetic_request(name, bucket, train_seconds=0.3)
    if ending == "MaxRuntimeExceeded":
        return synthetic_request(name, bucket, spot=False, train_seconds=30, max_runtime=1)
    if ending == "Failed":
        hps = {"train_seconds": "1", "step_seconds": "0.1", "fail_at_step": "2"}
        return synthetic_request(name, bucket, HyperParameters=hps)
    if ending == "MaxWaitTimeExceeded":
        return synthetic_request(name, bucket, max_runtime=1, max_wait=2, instance_type=NO_CAPACITY)
    if ending == "CapacityError":
        return synthetic_request(name, bucket, spot=False, instance_type=NO_CAPACITY)
    return synthetic_request(name, bucket, train_seconds=30)  # Stopped by StopTrainingJob


NO_CAPACITY = "ml.p3.16xlarge"
EXPECTED = {
    "Completed": (TrainingJobStatus.COMPLETED, S.COMPLETED),
    "MaxRuntimeExceeded": (TrainingJobStatus.STOPPED, S.MAX_RUNTIME_EXCEEDED),
    "MaxWaitTimeExceeded": (TrainingJobStatus.STOPPED, S.MAX_WAIT_TIME_EXCEEDED),
    "Stopped": (TrainingJobStatus.STOPPED, S.STOPPED),
    "Failed": (TrainingJobStatus.FAILED, S.FAILED),
    "CapacityError": (TrainingJobStatus.FAILED, S.FAILED),
}


@pytest.mark.parametrize("ending", list(EXPECTED))
def test_responses_of_every_ending_match_botocores_output_shapes(
    sm: Any, bucket: str, job_name: str, admin: AdminClient, ending: str
) -> None:
    wire = WireResponses(sm)
    request = _ending(job_name, ending, bucket)
    admin.set_capacity(NO_CAPACITY, False)
    try:
        sm.create_training_job(**request)
        created = sm.describe_training_job(TrainingJobName=job_name)
        if ending == "Stopped":
            sm.stop_training_job(TrainingJobName=job_name)
        final = wait_for_job(sm, job_name, timeout=60)
    finally:
        admin.set_capacity(NO_CAPACITY, None)
    assert (final["TrainingJobStatus"], final["SecondaryStatus"]) == EXPECTED[ending]
    if ending == "CapacityError":
        assert final["FailureReason"].startswith("CapacityError:")
    # From creation on, ModelArtifacts names <S3OutputPath>/<job>/output/model.tar.gz.
    model = f"s3://{bucket}/output/{job_name}/output/model.tar.gz"
    assert created["ModelArtifacts"]["S3ModelArtifacts"] == model
    assert final["ModelArtifacts"]["S3ModelArtifacts"] == model
    sm.list_training_jobs(NameContains=job_name)
    sm.list_training_jobs(StatusEquals=final["TrainingJobStatus"], MaxResults=100)
    operations = {operation for operation, _body in wire.bodies}
    assert operations >= {"CreateTrainingJob", "DescribeTrainingJob", "ListTrainingJobs"}
    assert list(wire.check()) == []


def test_answers_carry_the_services_date_as_aws_sends_it(sm: Any) -> None:
    # The shared watch lists from the service's time of an answer (RFC 7231, GMT, to the second).
    before = datetime.now(UTC).replace(microsecond=0)
    headers = sm.list_training_jobs(MaxResults=1)["ResponseMetadata"]["HTTPHeaders"]
    after = datetime.now(UTC)
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT", headers["date"])
    assert before <= parsedate_to_datetime(headers["date"]) <= after
