"""Server-side validation of requests against botocore's service model.

Two passes, as the service does them:

1. the constraints of the model (required, length, range, pattern, enum), worded as AWS words
   them: ``2 validation errors detected: Value 'x' at 'trainingJobName' failed to satisfy
   constraint: Member must ...; ...``;
2. botocore's own ``ParamValidator`` for what the first pass does not cover (types, unknown
   members), for clients that do not validate (raw HTTP, other SDKs).

SageMaker's semantic rules of CreateTrainingJob live in :mod:`.rules`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape
from botocore.validate import ParamValidator

from airflow_spot_provider.emulator.errors import ValidationError

_WIRE_BOUNDS: dict[str, tuple[int, int]] = {
    "integer": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
}


@functools.cache
def service_model(service: str) -> ServiceModel:
    """botocore's model of a service (``sagemaker``, ``logs``), loaded once.

    :param service: the botocore service name.
    """
    return botocore.session.get_session().get_service_model(service)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # a Java-only construct: the constraint is not checked here
        return None


def _member_path(parent: str, member: str) -> str:
    name = member[:1].lower() + member[1:]
    return f"{parent}.{name}" if parent else name


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"'{str(value).lower()}'"
    if isinstance(value, str | int | float):
        return f"'{value}'"
    return "'[...]'" if isinstance(value, list) else "'{...}'"


class _Walker:
    """Collect constraint violations of one request, in AWS's wording."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, value: Any, path: str, rule: str) -> None:
        self.errors.append(
            f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must {rule}"
        )

    def walk(self, value: Any, shape: Shape, path: str) -> None:
        kind = shape.type_name
        if kind == "structure" and isinstance(value, Mapping):
            self._structure(value, shape, path)
        elif kind == "list" and isinstance(value, list):
            self._length(value, shape, path)
            for index, item in enumerate(value, start=1):
                self.walk(item, shape.member, f"{path}.{index}.member")  # type: ignore[attr-defined]
        elif kind == "map" and isinstance(value, Mapping):
            self._length(value, shape, path)
            for key, item in value.items():
                self.walk(key, shape.key, path)  # type: ignore[attr-defined]
                self.walk(item, shape.value, path)  # type: ignore[attr-defined]
        elif kind == "string" and isinstance(value, str):
            self._string(value, shape, path)
        elif kind in ("integer", "long", "double", "float") and _is_number(value):
            self._range(value, shape, path)

    def _structure(self, value: Mapping[str, Any], shape: Shape, path: str) -> None:
        members = shape.members  # type: ignore[attr-defined]
        for name in shape.required_members:
            if value.get(name) is None:
                self.fail(None, _member_path(path, name), "not be null")
        for name, item in value.items():
            if name in members and item is not None:
                self.walk(item, members[name], _member_path(path, name))

    def _length(self, value: Any, shape: Shape, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and len(value) < low:
            self.fail(value, path, f"have length greater than or equal to {low}")
        if high is not None and len(value) > high:
            self.fail(value, path, f"have length less than or equal to {high}")

    def _string(self, value: str, shape: Shape, path: str) -> None:
        enum = shape.metadata.get("enum")
        if enum and value not in enum:
            self.fail(value, path, f"satisfy enum value set: [{', '.join(enum)}]")
        pattern = str(shape.metadata.get("pattern") or "")
        compiled = _compiled(pattern) if pattern else None
        if compiled is not None and compiled.fullmatch(value) is None:
            shown = pattern if pattern.startswith("^") else "^" + pattern
            self.fail(value, path, f"satisfy regular expression pattern: {shown}")
        self._length(value, shape, path)

    def _range(self, value: float, shape: Shape, path: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(value, path, "be a finite number")
            return
        # The wire types' own bounds when the model gives none: botocore's integer is 32 bits.
        default_low, default_high = _WIRE_BOUNDS.get(shape.type_name, (None, None))
        low = shape.metadata.get("min", default_low)
        high = shape.metadata.get("max", default_high)
        if low is not None and value < low:
            self.fail(value, path, f"have value greater than or equal to {low}")
        if high is not None and value > high:
            self.fail(value, path, f"have value less than or equal to {high}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def detected(errors: list[str]) -> ValidationError:
    """The ValidationError for a list of violations, counted as AWS counts them.

    :param errors: the violations, each ``Value ... failed to satisfy constraint: ...``.
    """
    noun = "error" if len(errors) == 1 else "errors"
    return ValidationError(f"{len(errors)} validation {noun} detected: " + "; ".join(errors))


def validate_input(operation: OperationModel, params: Mapping[str, Any]) -> None:
    """Check a request against its operation's input shape.

    :param operation: the botocore operation model.
    :param params: the decoded request body.
    :raises ValidationError: on the first pass's violations (all of them), else on the
        second pass's report.
    """
    shape = operation.input_shape
    if shape is None:
        return
    walker = _Walker()
    walker.walk(params, shape, "")
    if walker.errors:
        raise detected(walker.errors)
    report = ParamValidator().validate(dict(params), shape)
    if report.has_errors():
        raise ValidationError(report.generate_report())


def operation_model(service: str, operation: str) -> OperationModel:
    """The model of one operation.

    :param service: ``sagemaker`` or ``logs``.
    :param operation: e.g. ``CreateTrainingJob``.
    """
    return service_model(service).operation_model(operation)
