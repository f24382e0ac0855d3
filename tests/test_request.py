"""The spot request builder and validator: each rule accepted and refused, casts, job names."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters

from airflow_spot_provider.exceptions import SpotRequestValidationError
from airflow_spot_provider.request import (
    BUILTIN_NO_CHECKPOINT_MAX_WAIT_SECONDS,
    DEFAULT_CHECKPOINT_LOCAL_PATH,
    DEFAULT_MAX_RUNTIME_SECONDS,
    SAGEMAKER_MAX_RUNTIME_SECONDS,
    SAGEMAKER_MAX_WAIT_SECONDS,
    attempt_job_name,
    build_spot_request,
    check_spot_request,
    is_builtin_algorithm_image,
    task_job_base_name,
    to_seconds,
    validate_spot_request,
    validate_training_request,
)

PYTORCH_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3-cpu-py311"
KMEANS_IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"

# A user's base config as it comes from a DAG: no spot fields yet.
VALID_CONFIG: dict[str, Any] = {
    "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
    "AlgorithmSpecification": {"TrainingImage": PYTORCH_IMAGE, "TrainingInputMode": "File"},
    "OutputDataConfig": {"S3OutputPath": "s3://bucket/output/"},
    "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
    "HyperParameters": {"epochs": "3"},
}
SPOT_ARGS: dict[str, Any] = {
    "max_run": 3600,
    "max_wait": 7200,
    "checkpoint_s3_uri": "s3://bucket/checkpoints/job",
    "job_name": "train-a1",
}


def _input_shape() -> Any:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model("CreateTrainingJob").input_shape


def valid_request() -> dict[str, Any]:
    """A complete, valid spot request (what the builder makes of VALID_CONFIG and SPOT_ARGS)."""
    return build_spot_request(VALID_CONFIG, **SPOT_ARGS)


def _fields(request: dict[str, Any], *, require_name: bool = True) -> set[str]:
    return {v.field for v in validate_spot_request(request, require_name=require_name)}


# --- the builder ---------------------------------------------------------------------------------


def test_builder_makes_a_complete_spot_request_that_botocore_accepts() -> None:
    request = valid_request()
    assert request["EnableManagedSpotTraining"] is True
    assert request["TrainingJobName"] == "train-a1"
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3600,
        "MaxWaitTimeInSeconds": 7200,
    }
    assert request["CheckpointConfig"] == {
        "S3Uri": "s3://bucket/checkpoints/job",
        "LocalPath": DEFAULT_CHECKPOINT_LOCAL_PATH,
    }
    validate_parameters(request, _input_shape())
    assert validate_spot_request(request) == []


def test_builder_never_changes_its_input_and_shares_nothing_with_it() -> None:
    config = copy.deepcopy(VALID_CONFIG)
    config["ResourceConfig"]["InstanceCount"] = "2"
    before = copy.deepcopy(config)
    request = build_spot_request(config, **SPOT_ARGS)
    assert config == before
    request["ResourceConfig"]["InstanceCount"] = 99
    request["HyperParameters"]["new"] = "x"
    assert config == before


def test_builder_accepts_a_json_string_config() -> None:
    request = build_spot_request(json.dumps(VALID_CONFIG), **SPOT_ARGS)
    assert request == valid_request()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"a string"'])
def test_builder_refuses_config_text_that_is_no_json_object(text: str) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        build_spot_request(text, **SPOT_ARGS)
    assert caught.value.fields == {"config"}


def test_builder_casts_digit_strings_from_rendered_templates() -> None:
    config = copy.deepcopy(VALID_CONFIG)
    config["ResourceConfig"].update(
        {"InstanceCount": "2", "VolumeSizeInGB": " 50 ", "KeepAlivePeriodInSeconds": "600"}
    )
    config["RetryStrategy"] = {"MaximumRetryAttempts": "3"}
    # The Amazon provider forgets MaxWaitTimeInSeconds; we cast it too.
    config["StoppingCondition"] = {"MaxRuntimeInSeconds": "1800", "MaxWaitTimeInSeconds": "5400"}
    args = {**SPOT_ARGS, "max_run": None, "max_wait": None}
    request = build_spot_request(config, **args)
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 50,
        "KeepAlivePeriodInSeconds": 600,
    }
    assert request["RetryStrategy"] == {"MaximumRetryAttempts": 3}
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 1800,
        "MaxWaitTimeInSeconds": 5400,
    }
    validate_parameters(request, _input_shape())


def test_builder_takes_timedeltas_and_digit_strings_for_max_run_and_max_wait() -> None:
    args = {**SPOT_ARGS, "max_run": timedelta(hours=1), "max_wait": "7200"}
    request = build_spot_request(VALID_CONFIG, **args)
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3600,
        "MaxWaitTimeInSeconds": 7200,
    }


def test_explicit_arguments_override_the_config() -> None:
    config = copy.deepcopy(VALID_CONFIG)
    config["StoppingCondition"] = {"MaxRuntimeInSeconds": 10, "MaxWaitTimeInSeconds": 20}
    config["CheckpointConfig"] = {"S3Uri": "s3://old/ck", "LocalPath": "/old"}
    request = build_spot_request(config, **SPOT_ARGS, checkpoint_local_path="/ck")
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3600,
        "MaxWaitTimeInSeconds": 7200,
    }
    assert request["CheckpointConfig"] == {
        "S3Uri": "s3://bucket/checkpoints/job",
        "LocalPath": "/ck",
    }
    assert request["TrainingJobName"] == "train-a1"


def test_builder_fills_service_defaults() -> None:
    config = copy.deepcopy(VALID_CONFIG)
    del config["AlgorithmSpecification"]["TrainingInputMode"]
    request = build_spot_request(config, max_wait=DEFAULT_MAX_RUNTIME_SECONDS, job_name="j")
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == DEFAULT_MAX_RUNTIME_SECONDS
    assert "CheckpointConfig" not in request


def test_builder_converts_numbers_and_booleans_of_hyperparameters_to_strings() -> None:
    config = copy.deepcopy(VALID_CONFIG)
    config["HyperParameters"] = {"epochs": 3, "lr": 0.5, "shuffle": True, "name": "x"}
    request = build_spot_request(config, **SPOT_ARGS)
    assert request["HyperParameters"] == {
        "epochs": "3",
        "lr": "0.5",
        "shuffle": "true",
        "name": "x",
    }
    config["HyperParameters"] = {"layers": [1, 2], "none": None}
    with pytest.raises(SpotRequestValidationError) as caught:
        build_spot_request(config, **SPOT_ARGS)
    assert caught.value.fields == {"HyperParameters.layers", "HyperParameters.none"}


def test_builder_reports_every_violation_together() -> None:
    config = {
        "RoleArn": "not-an-arn",
        "AlgorithmSpecification": "pytorch",
        "ResourceConfig": {"InstanceType": "m5.xlarge", "InstanceCount": 0},
        "Tags": [{"Key": "team", "Value": 7}],
        "Bogus": 1,
    }
    with pytest.raises(SpotRequestValidationError) as caught:
        build_spot_request(
            config,
            max_run=0,
            max_wait="two hours",
            checkpoint_local_path="relative/dir",
            job_name="bad_name",
        )
    assert caught.value.fields == {
        "TrainingJobName",
        "RoleArn",
        "OutputDataConfig",
        "AlgorithmSpecification",
        "ResourceConfig.InstanceType",
        "ResourceConfig.InstanceCount",
        "ResourceConfig.VolumeSizeInGB",
        "StoppingCondition.MaxRuntimeInSeconds",
        "StoppingCondition.MaxWaitTimeInSeconds",
        "CheckpointConfig.S3Uri",
        "CheckpointConfig.LocalPath",
        "Tags[0].Value",
        "Bogus",
    }
    message = str(caught.value)
    assert "13 violation(s)" in message
    # Each line names the field, the value and the rule.
    assert "TrainingJobName='bad_name': must match the pattern" in message
    assert "StoppingCondition.MaxWaitTimeInSeconds='two hours': must be a whole number" in message
    assert "ResourceConfig.InstanceType='m5.xlarge': must be an ML instance type" in message


def test_unknown_parameter_names_the_closest_known_one() -> None:
    config = {**VALID_CONFIG, "HyperParameter": {"a": "b"}}
    with pytest.raises(SpotRequestValidationError) as caught:
        build_spot_request(config, **SPOT_ARGS)
    (violation,) = caught.value.violations
    assert violation.field == "HyperParameter"
    assert violation.value == {"a": "b"}
    assert "did you mean HyperParameters?" in violation.rule


@pytest.mark.parametrize(
    ("config", "shown"),
    [
        ({**VALID_CONFIG, "Bogus": 1}, "Bogus=1: is no CreateTrainingJob parameter"),
        (
            {**VALID_CONFIG, "ResourceConfig": {**VALID_CONFIG["ResourceConfig"], "Spot": "yes"}},
            "ResourceConfig.Spot='yes': is no CreateTrainingJob parameter",
        ),
    ],
)
def test_an_unknown_parameter_is_shown_with_its_value(config: dict[str, Any], shown: str) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        build_spot_request(config, **SPOT_ARGS)
    assert shown in str(caught.value)


def test_a_job_name_in_config_is_refused_the_names_come_from_job_name() -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        build_spot_request({**VALID_CONFIG, "TrainingJobName": "my-job"}, max_run=60, max_wait=60)
    (violation,) = caught.value.violations
    assert (violation.field, violation.value) == ("TrainingJobName", "my-job")
    assert "must not be in config" in violation.rule and "job_name" in violation.rule


@pytest.mark.parametrize("spot", [False, "true", 0, None])
def test_a_config_that_is_not_spot_is_refused_not_turned_into_spot(spot: object) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        build_spot_request({**VALID_CONFIG, "EnableManagedSpotTraining": spot}, **SPOT_ARGS)
    (violation,) = caught.value.violations
    assert (violation.field, violation.value) == ("EnableManagedSpotTraining", spot)
    assert violation.rule.startswith("must be true or left out")
    assert f"EnableManagedSpotTraining={spot!r}: must be true or left out" in str(caught.value)


def test_a_config_that_says_spot_is_taken() -> None:
    request = build_spot_request({**VALID_CONFIG, "EnableManagedSpotTraining": True}, **SPOT_ARGS)
    assert request == valid_request()


# --- to_seconds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (60, 60),
        ("3600", 3600),
        (" 42 ", 42),
        ("-5", -5),
        (7200.0, 7200),
        (timedelta(days=1), 86_400),
    ],
)
def test_to_seconds_accepts_whole_seconds(value: Any, seconds: int) -> None:
    assert to_seconds(value, "f") == seconds


@pytest.mark.parametrize(
    "value", [True, 1.5, "1h", "", "3600.0", timedelta(seconds=1.5), None, [60], "9" * 5000]
)
def test_to_seconds_refuses_anything_else_naming_the_field(value: Any) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        to_seconds(value, "StoppingCondition.MaxRuntimeInSeconds")
    (violation,) = caught.value.violations
    assert violation.field == "StoppingCondition.MaxRuntimeInSeconds"
    assert violation.value is value


# --- each rule, accepted and refused --------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """Set (or, with value ``...``, delete) a dotted path of a request."""

    def mutate(request: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = request
        for part in parents:
            node = node.setdefault(part, {})
        if value is ...:
            node.pop(leaf, None)
        else:
            node[leaf] = value

    return mutate


def _both(*mutations: Mutation) -> Mutation:
    def mutate(request: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(request)

    return mutate


_RUN, _WAIT = "StoppingCondition.MaxRuntimeInSeconds", "StoppingCondition.MaxWaitTimeInSeconds"
_BUILTIN_NO_CHECKPOINT = _both(
    _set("AlgorithmSpecification.TrainingImage", KMEANS_IMAGE), _set("CheckpointConfig", ...)
)

ACCEPTED: dict[str, Mutation] = {
    "max wait equal to max run": _set(_WAIT, 3600),
    "max run at its minimum": _set(_RUN, 1),
    "max run at 28 days": _both(
        _set(_RUN, SAGEMAKER_MAX_RUNTIME_SECONDS), _set(_WAIT, SAGEMAKER_MAX_RUNTIME_SECONDS)
    ),
    "max wait at 28 days": _set(_WAIT, SAGEMAKER_MAX_WAIT_SECONDS),
    "max run absent, max wait above the one-day default": _both(
        _set(_RUN, ...), _set(_WAIT, DEFAULT_MAX_RUNTIME_SECONDS)
    ),
    "https checkpoint uri": _set("CheckpointConfig.S3Uri", "https://bucket.s3.amazonaws.com/ck"),
    "checkpoint uri of 1024 characters": _set("CheckpointConfig.S3Uri", "s3://b/" + "k" * 1017),
    "local path of 4096 characters": _set("CheckpointConfig.LocalPath", "/" + "d" * 4095),
    "no checkpoint config (a warning only)": _set("CheckpointConfig", ...),
    "built-in algorithm without checkpoints, max wait 3600": _both(
        _BUILTIN_NO_CHECKPOINT,
        _set(_RUN, 1800),
        _set(_WAIT, BUILTIN_NO_CHECKPOINT_MAX_WAIT_SECONDS),
    ),
    "built-in algorithm with checkpoints, long max wait": _set(
        "AlgorithmSpecification.TrainingImage", KMEANS_IMAGE
    ),
    "xgboost image in script mode without checkpoints": _both(
        _set("AlgorithmSpecification.TrainingImage", XGBOOST_IMAGE),
        _set("CheckpointConfig", ...),
        _set("HyperParameters.sagemaker_program", "train.py"),
    ),
    "algorithm name instead of an image": _both(
        _set("AlgorithmSpecification.TrainingImage", ...),
        _set("AlgorithmSpecification.AlgorithmName", "my-algorithm"),
    ),
    "name of 63 characters": _set("TrainingJobName", "a" * 63),
    "name with inner hyphens": _set("TrainingJobName", "a--b-1"),
    "keep alive bounds": _set("ResourceConfig.KeepAlivePeriodInSeconds", 21_600),
    "keep alive zero": _set("ResourceConfig.KeepAlivePeriodInSeconds", 0),
    "retry attempts 1": _set("RetryStrategy.MaximumRetryAttempts", 1),
    "retry attempts 30": _set("RetryStrategy.MaximumRetryAttempts", 30),
    "100 hyperparameters of 256 characters": _set(
        "HyperParameters", {f"{i:0>256}": "v" * 256 for i in range(100)}
    ),
    "50 tags": _set("Tags", [{"Key": f"k{i}", "Value": "v"} for i in range(50)]),
    "100 environment variables": _set("Environment", {f"V{i}": "x" for i in range(100)}),
    "20 input channels": _set(
        "InputDataConfig",
        [
            {
                "ChannelName": f"c{i}",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/d"}},
            }
            for i in range(20)
        ],
    ),
}


@pytest.mark.parametrize("mutation", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_rule_accepts(mutation: Mutation) -> None:
    request = valid_request()
    mutation(request)
    assert validate_spot_request(request) == []
    validate_parameters(request, _input_shape())


REFUSED: dict[str, tuple[Mutation, str]] = {
    "not spot": (_set("EnableManagedSpotTraining", False), "EnableManagedSpotTraining"),
    "spot as a string": (_set("EnableManagedSpotTraining", "true"), "EnableManagedSpotTraining"),
    "max wait missing": (_set(_WAIT, ...), _WAIT),
    "max wait below max run": (_set(_WAIT, 3599), _WAIT),
    "max wait below the default max run": (_both(_set(_RUN, ...), _set(_WAIT, 3600)), _WAIT),
    "max wait zero": (_set(_WAIT, 0), _WAIT),
    "max wait as a string (validate does not cast)": (_set(_WAIT, "7200"), _WAIT),
    "max wait as a boolean": (_set(_WAIT, True), _WAIT),
    "max run zero": (_set(_RUN, 0), _RUN),
    "max run beyond 28 days": (_set(_RUN, SAGEMAKER_MAX_RUNTIME_SECONDS + 1), _RUN),
    "max wait beyond 28 days": (_set(_WAIT, SAGEMAKER_MAX_WAIT_SECONDS + 1), _WAIT),
    "stopping condition not a mapping": (_set("StoppingCondition", "1h"), "StoppingCondition"),
    "checkpoint uri without scheme": (
        _set("CheckpointConfig.S3Uri", "bucket/ck"),
        "CheckpointConfig.S3Uri",
    ),
    "checkpoint uri ftp": (_set("CheckpointConfig.S3Uri", "ftp://b/ck"), "CheckpointConfig.S3Uri"),
    "checkpoint uri without bucket": (
        _set("CheckpointConfig.S3Uri", "s3://"),
        "CheckpointConfig.S3Uri",
    ),
    "checkpoint uri too long": (
        _set("CheckpointConfig.S3Uri", "s3://b/" + "k" * 1018),
        "CheckpointConfig.S3Uri",
    ),
    "checkpoint uri missing": (_set("CheckpointConfig.S3Uri", ...), "CheckpointConfig.S3Uri"),
    "local path relative": (
        _set("CheckpointConfig.LocalPath", "ck/"),
        "CheckpointConfig.LocalPath",
    ),
    "local path too long": (
        _set("CheckpointConfig.LocalPath", "/" + "d" * 4096),
        "CheckpointConfig.LocalPath",
    ),
    "built-in image without checkpoints waits over an hour": (_BUILTIN_NO_CHECKPOINT, _WAIT),
    "algorithm name without checkpoints waits over an hour": (
        _both(_set("AlgorithmSpecification.AlgorithmName", "algo"), _set("CheckpointConfig", ...)),
        _WAIT,
    ),
    "name missing": (_set("TrainingJobName", ...), "TrainingJobName"),
    "name empty": (_set("TrainingJobName", ""), "TrainingJobName"),
    "name with underscore": (_set("TrainingJobName", "a_b"), "TrainingJobName"),
    "name starting with a hyphen": (_set("TrainingJobName", "-ab"), "TrainingJobName"),
    "name ending with a hyphen": (_set("TrainingJobName", "ab-"), "TrainingJobName"),
    "name with a newline": (_set("TrainingJobName", "ab\n"), "TrainingJobName"),
    "name of 64 characters": (_set("TrainingJobName", "a" * 64), "TrainingJobName"),
    "role missing": (_set("RoleArn", ...), "RoleArn"),
    "role not an arn": (_set("RoleArn", "SageMakerRole"), "RoleArn"),
    "output config missing": (_set("OutputDataConfig", ...), "OutputDataConfig"),
    "output path missing": (
        _set("OutputDataConfig.S3OutputPath", ...),
        "OutputDataConfig.S3OutputPath",
    ),
    "output path not s3": (
        _set("OutputDataConfig.S3OutputPath", "/tmp/out"),
        "OutputDataConfig.S3OutputPath",
    ),
    "algorithm missing": (_set("AlgorithmSpecification", ...), "AlgorithmSpecification"),
    "neither image nor algorithm name": (
        _set("AlgorithmSpecification.TrainingImage", ...),
        "AlgorithmSpecification.TrainingImage",
    ),
    "input mode missing": (
        _set("AlgorithmSpecification.TrainingInputMode", ...),
        "AlgorithmSpecification.TrainingInputMode",
    ),
    "resources missing": (_set("ResourceConfig", ...), "ResourceConfig"),
    "instance type missing": (
        _set("ResourceConfig.InstanceType", ...),
        "ResourceConfig.InstanceType",
    ),
    "instance type not ml.": (
        _set("ResourceConfig.InstanceType", "m5.xlarge"),
        "ResourceConfig.InstanceType",
    ),
    "instance count zero": (
        _set("ResourceConfig.InstanceCount", 0),
        "ResourceConfig.InstanceCount",
    ),
    "instance count boolean": (
        _set("ResourceConfig.InstanceCount", True),
        "ResourceConfig.InstanceCount",
    ),
    "instance count missing": (
        _set("ResourceConfig.InstanceCount", ...),
        "ResourceConfig.InstanceCount",
    ),
    "volume zero": (_set("ResourceConfig.VolumeSizeInGB", 0), "ResourceConfig.VolumeSizeInGB"),
    "volume missing": (_set("ResourceConfig.VolumeSizeInGB", ...), "ResourceConfig.VolumeSizeInGB"),
    "keep alive negative": (
        _set("ResourceConfig.KeepAlivePeriodInSeconds", -1),
        "ResourceConfig.KeepAlivePeriodInSeconds",
    ),
    "keep alive over six hours": (
        _set("ResourceConfig.KeepAlivePeriodInSeconds", 21_601),
        "ResourceConfig.KeepAlivePeriodInSeconds",
    ),
    "101 hyperparameters": (
        _set("HyperParameters", {str(i): "v" for i in range(101)}),
        "HyperParameters",
    ),
    "hyperparameter key too long": (
        _set("HyperParameters", {"k" * 257: "v"}),
        f"HyperParameters.{'k' * 257}",
    ),
    "hyperparameter value too long": (_set("HyperParameters.lr", "1" * 257), "HyperParameters.lr"),
    "hyperparameter value not a string": (_set("HyperParameters.lr", 0.1), "HyperParameters.lr"),
    "51 tags": (_set("Tags", [{"Key": f"k{i}", "Value": "v"} for i in range(51)]), "Tags"),
    "101 environment variables": (
        _set("Environment", {f"V{i}": "x" for i in range(101)}),
        "Environment",
    ),
    "no input channel": (_set("InputDataConfig", []), "InputDataConfig"),
    "retry attempts zero": (
        _set("RetryStrategy.MaximumRetryAttempts", 0),
        "RetryStrategy.MaximumRetryAttempts",
    ),
    "retry attempts 31": (
        _set("RetryStrategy.MaximumRetryAttempts", 31),
        "RetryStrategy.MaximumRetryAttempts",
    ),
    "unknown parameter": (_set("MaxWaitTimeInSeconds", 7200), "MaxWaitTimeInSeconds"),
    "unknown nested parameter": (_set("ResourceConfig.Spot", True), "ResourceConfig.Spot"),
    "environment key against the model pattern": (
        _set("Environment", {"1X": "y"}),
        "Environment.1X",
    ),
    "max pending above the model maximum": (
        _set("StoppingCondition.MaxPendingTimeInSeconds", SAGEMAKER_MAX_RUNTIME_SECONDS + 1),
        "StoppingCondition.MaxPendingTimeInSeconds",
    ),
    "max pending below the model minimum (botocore)": (
        _set("StoppingCondition.MaxPendingTimeInSeconds", 100),
        "StoppingCondition.MaxPendingTimeInSeconds",
    ),
    "channel name against the model pattern": (
        _set(
            "InputDataConfig",
            [
                {
                    "ChannelName": "train data",
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/d"}},
                }
            ],
        ),
        "InputDataConfig[0].ChannelName",
    ),
    "tag key too long (model maximum)": (
        _set("Tags", [{"Key": "k" * 129, "Value": ""}]),
        "Tags[0].Key",
    ),
}


@pytest.mark.parametrize(("mutation", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_rule_refuses_naming_the_field(mutation: Mutation, field: str) -> None:
    request = valid_request()
    mutation(request)
    violations = validate_spot_request(request)
    assert field in {v.field for v in violations}
    with pytest.raises(SpotRequestValidationError):
        check_spot_request(request)


def test_name_is_only_required_when_asked() -> None:
    request = valid_request()
    del request["TrainingJobName"]
    assert _fields(request, require_name=False) == set()
    assert _fields(request) == {"TrainingJobName"}
    request["TrainingJobName"] = "bad_name"
    assert _fields(request, require_name=False) == {"TrainingJobName"}


def test_builder_without_a_name_leaves_it_for_later() -> None:
    request = build_spot_request(VALID_CONFIG, max_run=60, max_wait=120)
    assert "TrainingJobName" not in request
    with pytest.raises(SpotRequestValidationError) as caught:
        check_spot_request(request)
    assert caught.value.fields == {"TrainingJobName"}
    request["TrainingJobName"] = attempt_job_name("train", 1)
    check_spot_request(request)


def test_on_demand_requests_follow_the_generic_rules_only() -> None:
    request = valid_request()
    request["EnableManagedSpotTraining"] = False
    del request["StoppingCondition"]["MaxWaitTimeInSeconds"]
    assert validate_training_request(request) == []
    assert {v.field for v in validate_spot_request(request)} == {"EnableManagedSpotTraining"}
    request["StoppingCondition"]["MaxWaitTimeInSeconds"] = 7200
    (violation,) = validate_training_request(request)
    assert violation.field == _WAIT
    assert "only supported when EnableManagedSpotTraining is true" in violation.rule


def test_spot_without_checkpoints_is_allowed_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = valid_request()
    with caplog.at_level(logging.WARNING, logger="airflow_spot_provider.request"):
        assert validate_spot_request(request) == []
        assert caplog.records == []
        del request["CheckpointConfig"]
        assert validate_spot_request(request) == []
    (record,) = caplog.records
    assert "train-a1 has no CheckpointConfig" in record.getMessage()


@pytest.mark.parametrize(
    "request_",
    [
        None,
        "CreateTrainingJob",
        [1, 2],
        {},
        {"StoppingCondition": "x", "ResourceConfig": 5, "HyperParameters": [1], "Tags": {"a": 1}},
        {"CheckpointConfig": {"S3Uri": 5, "LocalPath": []}, "InputDataConfig": "c", 3: 4},
        {"AlgorithmSpecification": {"TrainingImage": None}, "EnableManagedSpotTraining": 1},
    ],
)
def test_validation_never_raises_on_bad_shapes(request_: Any) -> None:
    violations = validate_spot_request(request_)
    assert violations
    assert all(isinstance(v.field, str) and v.rule for v in violations)


def test_built_in_algorithm_images_are_recognised_by_repository() -> None:
    assert is_builtin_algorithm_image(KMEANS_IMAGE)
    assert is_builtin_algorithm_image("811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:latest")
    assert is_builtin_algorithm_image(
        "522234722520.dkr.ecr.us-east-1.amazonaws.com/forecasting-deepar@sha256:ab"
    )
    assert not is_builtin_algorithm_image(PYTORCH_IMAGE)
    assert not is_builtin_algorithm_image(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/kmeans:1"
    )
    assert not is_builtin_algorithm_image("kmeans")


def test_importing_the_module_does_not_load_the_service_model() -> None:
    code = (
        "import airflow_spot_provider.request as r\n"
        "assert r._input_shape.cache_info().currsize == 0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- job names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "attempt", "name"),
    [
        ("train-model", 1, "train-model-a1"),
        ("train-model", 12, "train-model-a12"),
        ("a" * 60, 1, "a" * 60 + "-a1"),
    ],
)
def test_clean_bases_get_only_the_attempt_suffix(base: str, attempt: int, name: str) -> None:
    assert attempt_job_name(base, attempt) == name


def test_other_bases_get_a_hash_that_keeps_them_apart() -> None:
    names = {attempt_job_name(base, 1) for base in ["my_job", "my.job", "my job", "my--job"]}
    assert len(names) == 4
    assert all(name.startswith("my-job-") and name.endswith("-a1") for name in names)
    assert attempt_job_name("", 1).startswith("job-")
    assert attempt_job_name("___", 1).startswith("job-")
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    assert attempt_job_name(long_a, 3) != attempt_job_name(long_b, 3)
    assert len(attempt_job_name(long_a, 3)) == 63


@pytest.mark.parametrize("attempt", [0, -1, True, 10**40])
def test_attempt_must_be_a_positive_int(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt"):
        attempt_job_name("job", attempt)


def test_task_base_name_is_stable_and_distinct_per_run_and_map_index() -> None:
    base = task_job_base_name("dag", "train_model", "manual__2024-01-01T00:00:00+00:00")
    assert base == task_job_base_name("dag", "train_model", "manual__2024-01-01T00:00:00+00:00")
    assert base.startswith("train-model-")
    others = {
        task_job_base_name("dag", "train_model", "manual__2024-01-02T00:00:00+00:00"),
        task_job_base_name("dag", "train_model", "manual__2024-01-01T00:00:00+00:00", 0),
        task_job_base_name("dag", "train_model", "manual__2024-01-01T00:00:00+00:00", 1),
        task_job_base_name("dag2", "train_model", "manual__2024-01-01T00:00:00+00:00"),
    }
    assert base not in others
    assert len(others) == 4
    assert task_job_base_name("d", "t", "r", prefix="nightly_xgb").startswith("nightly-xgb-")
    assert attempt_job_name(base, 2) == base + "-a2"


def test_many_unknown_parameters_cost_as_many_walks_of_the_request_as_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_spot_provider import request_model

    walks = {"count": 0}
    nodes = request_model._nodes

    def counted(value: Any, shape: Any, at: str) -> Any:
        walks["count"] += at == ""  # a walk from the top
        return nodes(value, shape, at)

    monkeypatch.setattr(request_model, "_nodes", counted)
    with pytest.raises(SpotRequestValidationError):
        build_spot_request({**VALID_CONFIG, "Bogus": 1}, **SPOT_ARGS)
    one = walks["count"]
    walks["count"] = 0
    many = {**VALID_CONFIG, **{f"Bogus{i}": i for i in range(200)}}
    with pytest.raises(SpotRequestValidationError) as caught:
        build_spot_request(many, **SPOT_ARGS)
    assert len(caught.value.violations) >= 200
    assert walks["count"] == one  # not one walk per unknown parameter
