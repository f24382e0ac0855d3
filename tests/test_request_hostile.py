"""Hostile input: the builder, the operator and the retry policy refuse it, they never crash.

Every input gets a request that botocore validates and serializes, or a
:class:`SpotRequestValidationError` whose message stays short and printable; nothing calls AWS.
Inputs: nesting past the recursion limit, self-references, ints past 4300 digits (Python 3.11's
int-to-text limit), NaN and infinities, lone surrogates, wrong types at every level.
"""

from __future__ import annotations

import itertools
import json
import re
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import botocore.session
import pytest
from botocore.serialize import create_serializer
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from hypothesis import event, given, settings
from hypothesis import strategies as st

from airflow_spot_provider.exceptions import SpotRequestValidationError, Violation, shown
from airflow_spot_provider.hooks.spot_training import SageMakerSpotHook
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.request import (
    build_spot_request,
    check_spot_request,
    is_static,
    validate_spot_request,
)
from airflow_spot_provider.request_input import MAX_DEPTH, MAX_VALUES
from airflow_spot_provider.retry import SpotRetryPolicy
from tests.test_request import SPOT_ARGS, VALID_CONFIG
from tests.test_request_properties import spot_inputs

_MODEL = botocore.session.get_session().get_service_model("sagemaker")
OPERATION = _MODEL.operation_model("CreateTrainingJob")
SHAPE: Any = OPERATION.input_shape
SERIALIZER = create_serializer("json", include_validation=False)
# Bounded and without a deadline: the machine is shared, and some inputs are large on purpose.
SETTINGS = settings(max_examples=100, deadline=None, database=None)
# An operator per example: fewer, so that the file runs in seconds.
OPERATOR_SETTINGS = settings(SETTINGS, max_examples=50)


def _param_id(value: Any) -> str:
    """Test ids that pytest can make (it would convert an int past 4300 digits to text), the same
    in every xdist worker (no object addresses)."""
    return re.sub(r" at 0x[0-9a-f]+", "", shown(value, 30))


# --- hostile values -------------------------------------------------------------------------------


def _nested(depth: int, as_dict: bool) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value} if as_dict else [value]
    return value


def _self_referencing(as_dict: bool) -> Any:
    if as_dict:
        loop: dict[str, Any] = {"x": 1}
        loop["self"] = loop
        return loop
    ring: list[Any] = [1]
    ring.append(ring)
    return ring


def _diamond(levels: int) -> list[Any]:
    """Each level holds the one below twice: 2**levels values through few objects."""
    value: list[Any] = [0]
    for _ in range(levels):
        value = [value, value]
    return value


def _picked(values: list[Any]) -> st.SearchStrategy[Any]:
    """One of ``values``, drawn by index: hypothesis would print them to label the strategy."""

    def pick(index: int) -> Any:
        return values[index]

    return st.integers(0, len(values) - 1).map(pick)


HUGE_INTS = [10**5000, -(10**5000), 2**31, 2**31 - 1, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64]
STRANGE_TEXT = [
    "\ud800",
    "a\udfffb",
    " 3600 ",
    "\t7200\n",
    "3_600",
    "٣٦٠٠",
    "9" * 5000,
    "-1",
    "{{ ds }}",
    "x" * 100_000,
    "[" * 100_000,
    "",
    "\x00",
]
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    _picked(HUGE_INTS),
    st.floats(),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300, 30.0, 1.5]),
    st.text(max_size=20),
    _picked(STRANGE_TEXT),
    st.binary(max_size=8),
    st.sampled_from([timedelta.max, timedelta.min, timedelta(seconds=-1), timedelta(hours=1)]),
    st.just(datetime(2026, 1, 1, tzinfo=UTC)),
    st.builds(object),
    st.frozensets(st.integers(), max_size=3),
)
keys = st.one_of(
    st.text(max_size=10),
    _picked(["\ud800", "k" * 300, *sorted(SHAPE.members)]),
    st.integers(),
    _picked([10**5000, None, (1, 2), 1.5]),
)
# Nesting far past the recursion limit and 2**40-value diamonds are in the parametrized tests
# below: hypothesis could not print them in a failure report. (It cannot print an int past 4300
# digits either, but those are the point of this file: a failure shows a ValueError in its report.)
large = st.one_of(
    st.integers(MAX_DEPTH - 2, 3 * MAX_DEPTH).map(lambda n: _nested(n, as_dict=True)),
    st.integers(MAX_DEPTH - 2, 3 * MAX_DEPTH).map(lambda n: _nested(n, as_dict=False)),
    st.booleans().map(_self_referencing),
    st.builds(lambda: [0] * (MAX_VALUES + 1)),
)
hostile = st.recursive(
    leaves | large,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=12,
)


def _member_paths(shape: Any, prefix: tuple[str, ...], depth: int) -> Iterator[tuple[str, ...]]:
    """The path of every structure member of the model, to put a hostile value at."""
    for name, member in shape.members.items():
        path = (*prefix, name)
        yield path
        if member.type_name == "structure" and depth < 4:
            yield from _member_paths(member, path, depth + 1)


MEMBER_PATHS = sorted(_member_paths(SHAPE, (), 0))


def _put(config: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = config
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def _spot_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    kwargs = dict(SPOT_ARGS)
    for name in draw(st.sets(st.sampled_from([*sorted(SPOT_ARGS), "checkpoint_local_path"]))):
        kwargs[name] = draw(hostile)
    return kwargs


@st.composite
def _disguised(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with some lists as tuples, some dicts as read-only mappings: the same request."""
    if isinstance(value, dict):
        copied = {key: draw(_disguised(item)) for key, item in value.items()}
        return MappingProxyType(copied) if draw(st.booleans()) else copied
    if isinstance(value, list):
        items = [draw(_disguised(item)) for item in value]
        return tuple(items) if draw(st.booleans()) else items
    return value


@st.composite
def hostile_inputs(draw: st.DrawFn) -> tuple[Any, dict[str, Any]]:
    """A config and the builder's keyword arguments, from valid in odd shapes to hostile.

    Valid ones come from :func:`tests.test_request_properties.spot_inputs`, in other containers,
    with odd but valid numbers; the others put hostile values at model paths, or replace the
    config or the arguments by a hostile value or JSON text.
    """
    kind = draw(st.sampled_from(["valid", "valid", "paths", "paths", "whole", "text"]))
    if kind == "valid":
        config, kwargs = draw(spot_inputs())
        hyperparameters = config.setdefault("HyperParameters", {})
        if len(hyperparameters) < 100:
            hyperparameters["odd"] = draw(st.floats() | st.booleans() | st.integers())
        if isinstance(kwargs.get("max_run"), int):
            kwargs["max_run"] = float(kwargs["max_run"])
        return draw(_disguised(config)), kwargs
    kwargs = draw(st.builds(dict) | st.composite(_spot_kwargs)())
    if kind == "whole":
        return draw(hostile), kwargs
    if kind == "text":
        texts = st.sampled_from(
            ["[" * 100_000, '{"a":' * 50_000, '{"a": ' + "9" * 5000 + "}", '"\\ud800"', "{"]
        )
        json_texts = st.builds(json.dumps, st.recursive(st.integers() | st.text(), st.lists))
        return draw(texts | json_texts), kwargs
    config = json.loads(json.dumps(VALID_CONFIG))
    for path in draw(st.lists(st.sampled_from(MEMBER_PATHS), min_size=1, max_size=4)):
        _put(config, path, draw(hostile))
    return config, kwargs


# --- what every answer must be --------------------------------------------------------------------


def _assert_readable(error: SpotRequestValidationError) -> None:
    text = str(error)
    text.encode("utf-8")  # printable: lone surrogates are escaped
    assert len(text) < 60 * 1_500, len(text)
    assert error.violations
    for violation in error.violations:
        assert isinstance(violation, Violation) and isinstance(violation.field, str)
        assert violation.rule
        repr(violation)


def _assert_sendable(request: dict[str, Any]) -> None:
    """What botocore does with a request before sending it: validate, then serialize."""
    request = {"TrainingJobName": "train-a1", **request}  # the operator names each attempt
    validate_parameters(request, SHAPE)
    body = SERIALIZER.serialize_to_request(request, OPERATION)["body"]

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the body: it is no JSON")

    assert json.loads(body, parse_constant=refuse) == json.loads(json.dumps(request))
    check_spot_request(request)


def _valid_or_refused(build: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    try:
        request = build()
    except SpotRequestValidationError as error:
        _assert_readable(error)
        event("refused")
        return None
    _assert_sendable(request)
    event("accepted")
    return request


# --- the builder ----------------------------------------------------------------------------------


@SETTINGS
@given(hostile_inputs())
def test_the_builder_gives_a_sendable_request_or_a_validation_error(
    inputs: tuple[Any, dict[str, Any]],
) -> None:
    config, kwargs = inputs
    _valid_or_refused(lambda: build_spot_request(config, **kwargs))
    found = validate_spot_request(config)  # the validator reports, it never raises
    assert all(isinstance(v, Violation) for v in found)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ("[" * 100_000, "config"),
        ('{"a":' * 50_000, "config"),
        ('{"a": ' + "9" * 5000 + "}", "config"),
        ({**VALID_CONFIG, "HyperParameters": _nested(100_000, as_dict=True)}, "HyperParameters"),
        ({**VALID_CONFIG, "Tags": _nested(100_000, as_dict=False)}, "Tags"),
        ({**VALID_CONFIG, "Tags": _self_referencing(as_dict=False)}, "Tags[1]"),
        ({**VALID_CONFIG, "Tags": [0] * (MAX_VALUES + 1)}, "request"),
        ({**VALID_CONFIG, "Tags": _diamond(MAX_DEPTH - 2)}, "request"),
        (
            {**VALID_CONFIG, "Environment": {10**5000: "x"}},
            "Environment.<int of about 5001 digits>",
        ),
        ({**VALID_CONFIG, "HyperParameters": {"lr": "\ud800"}}, "HyperParameters.lr"),
    ],
    ids=_param_id,
)
def test_each_kind_of_hostile_config_names_its_field(config: Any, field: str) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        build_spot_request(config, **SPOT_ARGS)
    assert any(f.startswith(field) for f in caught.value.fields), caught.value.fields
    _assert_readable(caught.value)


CHANNEL = {
    "ChannelName": "train",
    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/d"}},
}


@pytest.mark.parametrize(
    ("path", "value", "rule"),
    [
        (("ResourceConfig", "InstanceCount"), 2**31, "ResourceConfig.InstanceCount=2147483648"),
        (("ResourceConfig", "VolumeSizeInGB"), 10**5000, "must be <= 2147483647"),
        (("InputDataConfig",), [{**CHANNEL, "ShuffleConfig": {"Seed": 2**63}}], "<= 92233"),
        (("InputDataConfig",), [{**CHANNEL, "ShuffleConfig": {"Seed": -(2**63)}}], None),
        (("AlgorithmSpecification", "TrainingInputMode"), "F" * 257, "at most 256 characters"),
        (("Environment",), {"A": "\udc00"}, "Environment.A='\\udc00': must be Unicode text"),
        (("HyperParameters",), {"lr": 10**5000}, "lr=<int of about 5001 digits>: keys and"),
        (("HyperParameters",), {"lr": float("nan")}, None),  # "NaN", a string SageMaker takes
    ],
    ids=_param_id,
)
def test_integers_stay_in_the_java_ranges_and_text_stays_sendable(
    path: tuple[str, ...], value: Any, rule: str | None
) -> None:
    config = json.loads(json.dumps(VALID_CONFIG))
    _put(config, path, value)
    if rule is None:
        _assert_sendable(build_spot_request(config, **SPOT_ARGS))
        return
    with pytest.raises(SpotRequestValidationError) as caught:
        build_spot_request(config, **SPOT_ARGS)
    assert rule in str(caught.value)


@pytest.mark.parametrize(
    ("spot_args", "rule"),
    [
        (
            {"max_wait": 28 * 86_400 + 1},
            "MaxWaitTimeInSeconds=2419201: must be an integer in 1..2419200",
        ),
        ({"max_wait": 2**31}, "MaxWaitTimeInSeconds=2147483648: must be an integer in 1.."),
        ({"max_run": 10**5000}, "MaxRuntimeInSeconds=<int of about 5001 digits>: must be an"),
        ({"max_run": "9" * 5000}, "MaxRuntimeInSeconds='9999"),
        ({"max_run": float("nan")}, "MaxRuntimeInSeconds=nan: must be a whole number"),
        ({"max_wait": float("inf")}, "MaxWaitTimeInSeconds=inf: must be a whole number"),
        ({"max_run": 1e300}, "MaxRuntimeInSeconds=<int of about 301 digits>"),
        ({"max_run": timedelta.max}, "MaxRuntimeInSeconds=datetime.timedelta(days=9999"),
        ({"max_run": timedelta(seconds=-1)}, "MaxRuntimeInSeconds=-1: must be an integer"),
        ({"max_run": True}, "MaxRuntimeInSeconds=True: must be a whole number"),
        ({"max_run": "3_600"}, "MaxRuntimeInSeconds='3_600': must be a whole number"),
    ],
    ids=_param_id,
)
def test_spot_arguments_out_of_range_are_refused_in_words(
    spot_args: dict[str, Any], rule: str
) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        build_spot_request(VALID_CONFIG, **{**SPOT_ARGS, **spot_args})
    assert rule in str(caught.value)


def test_digit_strings_with_whitespace_are_seconds() -> None:
    request = build_spot_request(VALID_CONFIG, **{**SPOT_ARGS, "max_run": " 3600\n"})
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600


def test_botocore_alone_would_let_these_through_and_then_fail_to_serialize() -> None:
    """Why the ranges above are ours to check: botocore validates minimums only."""
    request = build_spot_request(VALID_CONFIG, **SPOT_ARGS)
    request["ResourceConfig"]["VolumeSizeInGB"] = 10**5000
    validate_parameters(request, SHAPE)  # accepted
    with pytest.raises(ValueError, match="integer string conversion"):
        SERIALIZER.serialize_to_request(request, OPERATION)


# --- the operator --------------------------------------------------------------------------------


class _CountingHook(SageMakerSpotHook):
    """A real hook whose client answers nothing (botocore's Stubber) and counts every call."""

    calls = 0

    @property
    def conn(self) -> Any:
        client = botocore.session.get_session().create_client("sagemaker", "us-east-1")

        def count(**_: Any) -> None:
            _CountingHook.calls += 1

        # The first event of every call, before the Stubber refuses it.
        client.meta.events.register("provide-client-params.sagemaker.*", count)
        Stubber(client).activate()  # no response queued: a call would raise, not reach AWS
        return client


class _CountingOperator(SageMakerSpotTrainingOperator):
    aws_hook_class = _CountingHook


policies = st.one_of(
    st.none(), st.just(SpotRetryPolicy()), hostile, st.just({"max_attempts": 2}), st.just("retry")
)


@OPERATOR_SETTINGS
@given(hostile_inputs(), st.data())
def test_the_operator_refuses_hostile_arguments_at_construction_and_calls_nothing(
    inputs: tuple[Any, dict[str, Any]], data: st.DataObject
) -> None:
    config, kwargs = inputs
    kwargs.pop("job_name", None)
    extra = st.fixed_dictionaries(
        {},
        optional={
            "spot_retry_policy": policies,
            "poll_interval": hostile,
            "job_name": hostile,
        },
    )
    kwargs.update(data.draw(extra))
    _CountingHook.calls = 0
    built: list[SageMakerSpotTrainingOperator] = []

    def construct() -> dict[str, Any]:
        built.append(_CountingOperator(task_id="train", config=config, **kwargs))
        assert isinstance(built[0].spot_retry_policy, SpotRetryPolicy)
        assert 0 < built[0].poll_interval < float("inf")
        return built[0]._spot_request()

    _valid_or_refused(construct)
    assert _CountingHook.calls == 0
    # Had anything called AWS, it would have gone through the counting hook.
    assert not built or isinstance(built[0].hook, _CountingHook)


def test_the_counting_hook_counts() -> None:
    """The counter above can fail: a call through the hook is counted and answered by nothing."""
    _CountingHook.calls = 0
    with pytest.raises(Exception, match="Unexpected API Call"):
        _CountingHook(aws_conn_id=None).conn.describe_training_job(TrainingJobName="x")
    assert _CountingHook.calls == 1


@SETTINGS
@given(hostile)
def test_is_static_never_raises(value: Any) -> None:
    assert isinstance(is_static(value), bool)


@pytest.mark.parametrize(
    ("value", "static"),
    [
        ({"a": ["{{ ds }}"]}, False),
        ({"a": ["{% if x %}"]}, False),
        ([1, 2.5, None, True, timedelta(hours=1), "s3://b/k"], True),
        ([object()], False),  # an XComArg or another object resolved at run time
        ([{"a": "{{ ds }}"}, _nested(100_000, as_dict=False)], True),  # the build refuses it
        (_self_referencing(as_dict=True), True),
        ({1: "{{ ds }}"}, True),
        (10**5000, True),
        ([{"a": "{{ ds }}"}, 2**64], True),  # a huge int beside a template: refused at parse
        ([object(), -(2**63)], False),
    ],
    ids=_param_id,
)
def test_is_static(value: Any, static: bool) -> None:
    assert is_static(value) is static


HOSTILE_DAG_TASKS = {
    "loop": (
        """
        config = {"RoleArn": "arn:aws:iam::123456789012:role/R", "Tags": []}
        config["Tags"].append(config)
        SageMakerSpotTrainingOperator(task_id="t", config=config, max_wait=3600)
        """,
        "Tags[0]=",
        "must not contain itself",
    ),
    "deep beside a template": (
        """
        deep = []
        for _ in range(100_000):
            deep = [deep]
        SageMakerSpotTrainingOperator(task_id="t", config={"X": deep}, max_wait="{{ x }}")
        """,
        "X[0][0]",
        "must nest at most 32 levels deep",
    ),
    "huge int beside a template": (
        """
        config = {"RoleArn": "{{ var.value.role }}"}
        SageMakerSpotTrainingOperator(task_id="t", config=config, max_run=10**5000)
        """,
        "MaxRuntimeInSeconds=<int of about 5001 digits>",
        "must be an integer in 1..2419200",
    ),
    "bracket text": (
        """
        SageMakerSpotTrainingOperator(task_id="t", config="[" * 100_000, max_wait=60)
        """,
        "config='[[[",
        "nested at most 32 levels deep",
    ),
    "poll interval": (
        """
        SageMakerSpotTrainingOperator(task_id="t", config="{{ c }}", poll_interval=float("nan"))
        """,
        "poll_interval=nan",
        "must be seconds in (0, 2419200]",
    ),
}


@pytest.mark.usefixtures("airflow_db")
def test_dags_with_hostile_static_values_fail_to_parse_with_a_validation_error(
    tmp_path: Path,
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    head = """
        from airflow.sdk import DAG
        from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator

        with DAG("hostile", schedule=None):
    """
    for index, (body, _, _) in enumerate(HOSTILE_DAG_TASKS.values()):
        source = textwrap.dedent(head) + textwrap.indent(textwrap.dedent(body), "    ")
        (tmp_path / f"hostile_{index}.py").write_text(source)
    bag = DagBag(dag_folder=str(tmp_path))
    assert len(bag.import_errors) == len(HOSTILE_DAG_TASKS)
    for index, (name, (_, shown_value, rule)) in enumerate(HOSTILE_DAG_TASKS.items()):
        error = bag.import_errors[str(tmp_path / f"hostile_{index}.py")]
        assert "SpotRequestValidationError" in error, (name, error)
        assert shown_value in error and rule in error, (name, error)


# --- the retry policy ----------------------------------------------------------------------------

POLICY_FIELDS = [
    "retry_on",
    "max_attempts",
    "backoff_initial_seconds",
    "backoff_multiplier",
    "backoff_max_seconds",
    "backoff_jitter",
    "max_wait_growth",
    "instance_type_fallbacks",
    "on_demand_fallback",
    "deadline",
    "allow_without_checkpoints",
]
near_valid = st.one_of(
    hostile,
    st.integers(0, 40),
    st.floats(0, 1e6),
    st.sampled_from(
        [
            ["MAX_WAIT_EXCEEDED"],
            ["ml.c5.xlarge", "ml.\ud800"],
            "2026-01-01T00:00:00+00:00",
            "9999-12-31T23:59:59-05:00",
            datetime.max.replace(tzinfo=UTC),
        ]
    ),
    st.builds(lambda: iter(["MAX_WAIT_EXCEEDED"] * 100)),
)


def _assert_sound(policy: SpotRetryPolicy) -> None:
    data = json.loads(json.dumps(policy.to_json(), allow_nan=False))
    assert SpotRetryPolicy.from_json(data) == policy
    delay = policy.delay_seconds(2, "job-a1")
    assert 0 <= delay < float("inf")


@SETTINGS
@given(st.dictionaries(st.sampled_from(POLICY_FIELDS), near_valid, max_size=4))
def test_the_policy_is_sound_or_refused(kwargs: dict[str, Any]) -> None:
    for build in (lambda: SpotRetryPolicy(**kwargs), lambda: SpotRetryPolicy.from_json(kwargs)):
        try:
            policy = build()
        except SpotRequestValidationError as error:
            _assert_readable(error)
        else:
            _assert_sound(policy)


@SETTINGS
@given(hostile)
def test_from_json_takes_any_value(data: Any) -> None:
    try:
        _assert_sound(SpotRetryPolicy.from_json(data))
    except SpotRequestValidationError as error:
        _assert_readable(error)


@pytest.mark.parametrize(
    ("kwargs", "shown_value", "rule"),
    [
        ({"max_attempts": 10**5000}, "<int of about 5001 digits>", "<= 1000"),
        ({"backoff_initial_seconds": 10**400}, "<int of about 401 digits>", "finite number"),
        ({"retry_on": itertools.repeat("MAX_WAIT_EXCEEDED")}, "repeat(", "set of JobOutcome"),
        ({"instance_type_fallbacks": ["ml.c5.\ud800"]}, "['ml.c5.\\ud800']", "starting with"),
        ({"instance_type_fallbacks": ["ml.c5"] * 1000}, "['ml.c5', ", "fewer than 1000"),
        ({"deadline": "9999-12-31T23:00:00-05:00"}, "'9999-12-31T23", "timezone-aware"),
        ({"deadline": datetime.max}, "datetime.datetime(9999", "timezone-aware"),
    ],
    ids=_param_id,
)
def test_each_hostile_policy_field_is_refused_in_words(
    kwargs: dict[str, Any], shown_value: str, rule: str
) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        SpotRetryPolicy(**kwargs)
    (line,) = str(caught.value).splitlines()[1:]
    assert shown_value in line and rule in line, line


@pytest.mark.parametrize("data", [None, "max_attempts=2", [("max_attempts", 2)], 7])
def test_from_json_refuses_what_is_no_mapping(data: Any) -> None:
    with pytest.raises(SpotRequestValidationError, match="must be a mapping"):
        SpotRetryPolicy.from_json(data)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"spot_retry_policy": {"max_attempts": 2}}, "spot_retry_policy"),
        ({"spot_retry_policy": "retry"}, "spot_retry_policy"),
        ({"poll_interval": float("inf")}, "poll_interval"),
        ({"poll_interval": 10**5000}, "poll_interval"),
        ({"poll_interval": "30"}, "poll_interval"),
        ({"poll_interval": True}, "poll_interval"),
        ({"job_name": 5}, "job_name"),
        ({"job_name": ["train"]}, "job_name"),
    ],
    ids=_param_id,
)
def test_the_operator_refuses_hostile_arguments_by_name(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        SageMakerSpotTrainingOperator(task_id="t", config="{{ c }}", **kwargs)
    assert caught.value.fields == {field}


def _depth(shape: Any, seen: frozenset[str] = frozenset()) -> int:
    if shape.name in seen:  # a recursive shape would nest without end
        return MAX_DEPTH
    seen = seen | {shape.name}
    if shape.type_name == "structure":
        return 1 + max((_depth(m, seen) for m in shape.members.values()), default=0)
    if shape.type_name == "list":
        return 1 + _depth(shape.member, seen)
    if shape.type_name == "map":
        return 1 + _depth(shape.value, seen)
    return 0


def test_the_bounds_leave_room_for_every_valid_request() -> None:
    """The depth bound far exceeds botocore's model; its instance types pass the policy's check."""
    assert _depth(SHAPE) <= MAX_DEPTH // 4
    instance_types = SHAPE.members["ResourceConfig"].members["InstanceType"].enum
    assert len(instance_types) > 100
    policy = SpotRetryPolicy(max_attempts=2, instance_type_fallbacks=tuple(instance_types))
    assert policy.instance_type_fallbacks == tuple(instance_types)
