"""Property tests of the spot request builder against botocore's own model, and of job names."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import botocore.session
from botocore.validate import validate_parameters
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from airflow_spot_provider.exceptions import SpotRequestValidationError, Violation
from airflow_spot_provider.request import (
    SAGEMAKER_MAX_RUNTIME_SECONDS,
    SAGEMAKER_MAX_WAIT_SECONDS,
    attempt_job_name,
    build_spot_request,
    check_spot_request,
    task_job_base_name,
    validate_spot_request,
    validate_training_request,
)
from tests.test_request import KMEANS_IMAGE, PYTORCH_IMAGE, XGBOOST_IMAGE

_MODEL = botocore.session.get_session().get_service_model("sagemaker")
SHAPE: Any = _MODEL.operation_model("CreateTrainingJob").input_shape
INSTANCE_TYPES = sorted(SHAPE.members["ResourceConfig"].members["InstanceType"].enum)
# Written out here rather than imported, so the names are checked against the documented pattern.
SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
SETTINGS = settings(max_examples=200, deadline=None)

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_RUN, _WAIT = "StoppingCondition.MaxRuntimeInSeconds", "StoppingCondition.MaxWaitTimeInSeconds"


def _int_like(ints: st.SearchStrategy[int]) -> st.SearchStrategy[int | str]:
    """An int as Python or as a rendered template would give it."""
    return st.one_of(ints, ints.map(str))


def _seconds_like(ints: st.SearchStrategy[int]) -> st.SearchStrategy[int | str | timedelta]:
    return st.one_of(ints, ints.map(str), ints.map(lambda n: timedelta(seconds=n)))


s3_uris = st.builds(
    "{}://{}/{}".format,
    st.sampled_from(["s3", "https"]),
    st.text(ALNUM.lower() + "-.", min_size=1, max_size=30).filter(lambda b: "/" not in b),
    st.text(ALNUM + "/-_.", max_size=60),
)
role_arns = st.builds(
    "arn:aws:iam::{:012d}:role/{}".format,
    st.integers(0, 10**12 - 1),
    st.text(ALNUM + "_+=,.@-/", min_size=1, max_size=60),
)
channels = st.lists(
    st.builds(
        lambda name, uri: {
            "ChannelName": name,
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}},
        },
        st.text(ALNUM + "._-", min_size=1, max_size=64),
        s3_uris,
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda c: c["ChannelName"],
)
hyperparameters = st.dictionaries(
    st.text(max_size=40).filter(lambda k: k != "sagemaker_program"),
    st.one_of(
        st.text(max_size=256),
        st.integers(-(10**12), 10**12),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
    ),
    max_size=8,
)
environments = st.dictionaries(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True), st.text(max_size=80), max_size=5
)
tags = st.lists(
    st.fixed_dictionaries(
        {
            "Key": st.text(ALNUM + " _.:/=+-@", min_size=1, max_size=128),
            "Value": st.text(max_size=0),
        }
    ),
    max_size=5,
)


def _optional(
    draw: st.DrawFn, target: dict[str, Any], key: str, values: st.SearchStrategy[Any]
) -> None:
    if draw(st.booleans()):
        target[key] = draw(values)


@st.composite
def spot_inputs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid base config and builder arguments, as varied as a DAG author would write them."""
    image = draw(st.sampled_from([PYTORCH_IMAGE, KMEANS_IMAGE, XGBOOST_IMAGE]))
    checkpoint = draw(st.none() | s3_uris)
    # Built-in algorithms without checkpoints may wait at most an hour.
    short = image != PYTORCH_IMAGE and checkpoint is None
    run = draw(st.integers(1, 3600 if short else SAGEMAKER_MAX_RUNTIME_SECONDS))
    wait = draw(st.integers(run, 3600 if short else SAGEMAKER_MAX_WAIT_SECONDS))
    spec: dict[str, Any] = {"TrainingImage": image}
    _optional(draw, spec, "TrainingInputMode", st.sampled_from(["File", "Pipe", "FastFile"]))
    resources: dict[str, Any] = {
        "InstanceType": draw(st.sampled_from(INSTANCE_TYPES)),
        "InstanceCount": draw(_int_like(st.integers(1, 64))),
        "VolumeSizeInGB": draw(_int_like(st.integers(1, 16_384))),
    }
    _optional(draw, resources, "KeepAlivePeriodInSeconds", _int_like(st.integers(0, 21_600)))
    config: dict[str, Any] = {
        "RoleArn": draw(role_arns),
        "AlgorithmSpecification": spec,
        "OutputDataConfig": {"S3OutputPath": draw(s3_uris)},
        "ResourceConfig": resources,
    }
    _optional(draw, config, "HyperParameters", hyperparameters)
    _optional(draw, config, "Environment", environments)
    _optional(draw, config, "Tags", tags)
    _optional(draw, config, "InputDataConfig", channels)
    retries = st.fixed_dictionaries({"MaximumRetryAttempts": _int_like(st.integers(1, 30))})
    _optional(draw, config, "RetryStrategy", retries)
    kwargs: dict[str, Any] = {
        "checkpoint_s3_uri": checkpoint,
        "job_name": attempt_job_name(draw(st.text(max_size=80)), draw(st.integers(1, 1000))),
    }
    if checkpoint is not None:
        local_paths = st.sampled_from(["/opt/ml/checkpoints", "/ck/"])
        _optional(draw, kwargs, "checkpoint_local_path", local_paths)
    if draw(st.booleans()):  # spot arguments, or the same values already in the config
        kwargs.update(
            max_run=draw(_seconds_like(st.just(run))), max_wait=draw(_seconds_like(st.just(wait)))
        )
    else:
        stop = {"MaxRuntimeInSeconds": draw(_int_like(st.just(run))), "MaxWaitTimeInSeconds": wait}
        config["StoppingCondition"] = stop
    return config, kwargs


@SETTINGS
@given(spot_inputs())
def test_every_request_the_builder_accepts_passes_botocore_validation(
    inputs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    config, kwargs = inputs
    before = copy.deepcopy(config)
    request = build_spot_request(config, **kwargs)
    validate_parameters(request, SHAPE)
    check_spot_request(request)
    assert config == before
    assert request["EnableManagedSpotTraining"] is True
    stop = request["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"]
    assert build_spot_request(json.dumps(config), **kwargs) == request


# --- invalid requests: every mutated field is named --------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One field made invalid; at most one mutation per group is applied to a request.

    :param group: mutations of one group would hide each other (e.g. max run and max wait).
    :param field: the field the violations must name.
    :param apply: changes the builder's config and keyword arguments.
    :param note: what the mutation does, for hypothesis' report.
    """

    group: str
    field: str
    apply: Callable[[dict[str, Any], dict[str, Any]], None] = dataclasses.field(repr=False)
    note: str


def _config_set(path: str) -> Callable[[Any], Callable[[dict[str, Any], dict[str, Any]], None]]:
    def setter(value: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
        def apply(config: dict[str, Any], kwargs: dict[str, Any]) -> None:
            *parents, leaf = path.split(".")
            node = config
            for part in parents:
                node = node.setdefault(part, {})
            if value is ...:
                node.pop(leaf, None)
            else:
                node[leaf] = value

        return apply

    return setter


def _kwarg_set(name: str) -> Callable[[Any], Callable[[dict[str, Any], dict[str, Any]], None]]:
    def setter(value: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
        def apply(config: dict[str, Any], kwargs: dict[str, Any]) -> None:
            kwargs[name] = value

        return apply

    return setter


def _values(
    group: str,
    field_: str,
    setter: Callable[[Any], Callable[[dict[str, Any], dict[str, Any]], None]],
    values: list[Any],
) -> st.SearchStrategy[Mutation]:
    def make(value: Any) -> Mutation:
        return Mutation(group, field_, setter(value), f"{field_} <- {value!r:.40}")

    return st.sampled_from(values).map(make)


def _wait_below_run(config: dict[str, Any], kwargs: dict[str, Any]) -> None:
    config.pop("StoppingCondition", None)
    kwargs.update(max_run=100, max_wait=99)


def _no_wait(config: dict[str, Any], kwargs: dict[str, Any]) -> None:
    config.pop("StoppingCondition", None)
    kwargs.update(max_run=100, max_wait=None)


def _channel(index: int) -> dict[str, Any]:
    source = {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/d"}}
    return {"ChannelName": f"c{index}", "DataSource": source}


def _unknown(key: str) -> Mutation:
    return Mutation(f"unknown {key}", key, _config_set(key)(1), f"unknown {key}")


mutations = st.one_of(
    _values(
        "name",
        "TrainingJobName",
        _kwarg_set("job_name"),
        ["", "a_b", "-ab", "ab-", "a" * 64, "a\n"],
    ),
    _values(
        "role", "RoleArn", _config_set("RoleArn"), [..., "", "role", "arn:aws:iam::1:role/x", 5]
    ),
    _values(
        "output",
        "OutputDataConfig.S3OutputPath",
        _config_set("OutputDataConfig.S3OutputPath"),
        [..., "bucket/out", "ftp://b/o", "s3://", 3, "s3://b/" + "o" * 1018],
    ),
    _values(
        "image",
        "AlgorithmSpecification.TrainingImage",
        _config_set("AlgorithmSpecification.TrainingImage"),
        [..., "", 5],
    ),
    _values(
        "mode",
        "AlgorithmSpecification.TrainingInputMode",
        _config_set("AlgorithmSpecification.TrainingInputMode"),
        [5, ["File"]],
    ),
    _values(
        "type",
        "ResourceConfig.InstanceType",
        _config_set("ResourceConfig.InstanceType"),
        [..., "m5.large", "", 3],
    ),
    _values(
        "count",
        "ResourceConfig.InstanceCount",
        _config_set("ResourceConfig.InstanceCount"),
        [..., 0, -1, "0", "two", True, 1.5],
    ),
    _values(
        "volume",
        "ResourceConfig.VolumeSizeInGB",
        _config_set("ResourceConfig.VolumeSizeInGB"),
        [..., 0, "abc", False],
    ),
    _values(
        "keep-alive",
        "ResourceConfig.KeepAlivePeriodInSeconds",
        _config_set("ResourceConfig.KeepAlivePeriodInSeconds"),
        [-1, 21_601, "x"],
    ),
    _values(
        "retry",
        "RetryStrategy.MaximumRetryAttempts",
        _config_set("RetryStrategy.MaximumRetryAttempts"),
        [0, 31, "x", None],
    ),
    _values(
        "stop",
        _RUN,
        _kwarg_set("max_run"),
        [0, -1, SAGEMAKER_MAX_RUNTIME_SECONDS + 1, "abc", timedelta(seconds=1.5), True],
    ),
    _values("stop", _WAIT, _kwarg_set("max_wait"), [0, -5, "abc", True, 1.5]),
    st.just(Mutation("stop", _WAIT, _wait_below_run, "max wait below max run")),
    st.just(Mutation("stop", _WAIT, _no_wait, "no max wait")),
    _values(
        "checkpoint-uri",
        "CheckpointConfig.S3Uri",
        _kwarg_set("checkpoint_s3_uri"),
        ["bucket/ck", "s3:/b", "ftp://b/k", "", "s3://b/" + "k" * 1018],
    ),
    _values(
        "checkpoint-path",
        "CheckpointConfig.LocalPath",
        _kwarg_set("checkpoint_local_path"),
        ["relative/dir", "", "/" + "d" * 4096],
    ),
    _values(
        "hyperparameters",
        "HyperParameters",
        _config_set("HyperParameters"),
        [{str(i): "v" for i in range(101)}, "a=b", [1]],
    ),
    _values(
        "hyperparameters",
        f"HyperParameters.{'k' * 257}",
        _config_set("HyperParameters"),
        [{"k" * 257: "v"}],
    ),
    _values(
        "hyperparameters",
        "HyperParameters.lr",
        _config_set("HyperParameters"),
        [{"lr": "1" * 257}, {"lr": None}, {"lr": [0.1]}],
    ),
    _values(
        "tags", "Tags", _config_set("Tags"), [[{"Key": "k", "Value": "v"}] * 51, "t", {"k": "v"}]
    ),
    _values(
        "environment",
        "Environment",
        _config_set("Environment"),
        [{f"V{i}": "x" for i in range(101)}, ["A=1"]],
    ),
    _values(
        "channels",
        "InputDataConfig",
        _config_set("InputDataConfig"),
        [[], [_channel(i) for i in range(21)], "s3://b/d"],
    ),
    st.text(ALNUM, min_size=1, max_size=12).filter(lambda k: k not in SHAPE.members).map(_unknown),
    st.just(
        Mutation("nested", "ResourceConfig.Spot", _config_set("ResourceConfig.Spot")(True), "")
    ),
)


@SETTINGS
@given(spot_inputs(), st.lists(mutations, min_size=1, max_size=6, unique_by=lambda m: m.group))
def test_every_invalid_request_is_refused_naming_every_mutated_field(
    inputs: tuple[dict[str, Any], dict[str, Any]], changes: list[Mutation]
) -> None:
    config, kwargs = inputs
    for change in changes:
        change.apply(config, kwargs)
    try:
        build_spot_request(config, **kwargs)
    except SpotRequestValidationError as err:
        assert {change.field for change in changes} <= err.fields, str(err)
    else:
        raise AssertionError(f"accepted although {[c.note for c in changes]}")


# --- validation never crashes -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
arbitrary_requests = st.dictionaries(
    st.sampled_from(sorted(SHAPE.members)) | st.text(max_size=10), json_values, max_size=10
)


@SETTINGS
@given(arbitrary_requests)
def test_validation_reports_instead_of_raising_on_any_shape(request: dict[str, Any]) -> None:
    for found in (validate_spot_request(request), validate_training_request(request)):
        assert all(isinstance(v, Violation) and isinstance(v.field, str) for v in found)
    try:
        accepted = build_spot_request(request)
    except SpotRequestValidationError:
        return
    validate_parameters(accepted, SHAPE)


# --- job names ------------------------------------------------------------------------------------


def _is_sagemaker_name(name: str) -> bool:
    return len(name) <= 63 and SAGEMAKER_NAME.fullmatch(name) is not None


@SETTINGS
@given(st.text(), st.integers(1, 1000))
def test_attempt_names_are_always_valid_and_deterministic(base: str, attempt: int) -> None:
    name = attempt_job_name(base, attempt)
    assert _is_sagemaker_name(name), name
    assert attempt_job_name(base, attempt) == name
    assert name.endswith(f"-a{attempt}")


@SETTINGS
@given(
    st.one_of(st.text(), st.text(alphabet="ab_.- ", max_size=6)),
    st.one_of(st.text(), st.text(alphabet="ab_.- ", max_size=6)),
    st.integers(1, 1000),
    st.integers(1, 1000),
)
def test_distinct_bases_or_attempts_give_distinct_names(
    base_1: str, base_2: str, attempt_1: int, attempt_2: int
) -> None:
    assume((base_1, attempt_1) != (base_2, attempt_2))
    assert attempt_job_name(base_1, attempt_1) != attempt_job_name(base_2, attempt_2)


@SETTINGS
@given(st.text(min_size=63), st.text(min_size=1), st.text(min_size=1), st.integers(1, 1000))
def test_long_bases_sharing_a_prefix_keep_distinct_names(
    prefix: str, tail_1: str, tail_2: str, attempt: int
) -> None:
    assume(tail_1 != tail_2)
    name_1, name_2 = (
        attempt_job_name(prefix + tail_1, attempt),
        attempt_job_name(prefix + tail_2, attempt),
    )
    assert name_1 != name_2
    assert _is_sagemaker_name(name_1) and _is_sagemaker_name(name_2)


task_instances = st.tuples(st.text(), st.text(), st.text(), st.integers(-1, 10**6))


@SETTINGS
@given(task_instances, st.none() | st.text(), st.integers(1, 1000))
def test_task_base_names_stay_valid_through_every_attempt(
    ti: tuple[str, str, str, int], prefix: str | None, attempt: int
) -> None:
    base = task_job_base_name(*ti, prefix=prefix)
    assert _is_sagemaker_name(base)
    assert task_job_base_name(*ti, prefix=prefix) == base
    assert attempt_job_name(base, attempt) == f"{base}-a{attempt}"
    assert _is_sagemaker_name(attempt_job_name(base, attempt))


@SETTINGS
@given(task_instances, task_instances)
def test_distinct_task_instances_get_distinct_base_names(
    ti_1: tuple[str, str, str, int], ti_2: tuple[str, str, str, int]
) -> None:
    assume(ti_1 != ti_2)
    assert task_job_base_name(*ti_1) != task_job_base_name(*ti_2)
