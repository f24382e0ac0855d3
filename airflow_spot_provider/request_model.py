"""botocore's model of CreateTrainingJob: the checks and integer casts it drives.

The model is loaded on first use only (:func:`_input_shape`), so importing this module stays cheap.
Types, required members and minimums are checked by botocore's ParamValidator; maximums and
patterns, which it leaves out, are read from the same model, and integers are kept within the Java
types the model names. The names here are the package's
own: :mod:`airflow_spot_provider.request` and :mod:`airflow_spot_provider.request_rules` use them.
"""

from __future__ import annotations

import difflib
import functools
import re
import warnings
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from airflow_spot_provider.exceptions import Violation
from airflow_spot_provider.request_input import key_text

if TYPE_CHECKING:
    from botocore.model import ListShape, MapShape, Shape, StructureShape

# The service is written in Java: botocore's "integer" is a Java int, "long" a Java long. A value
# outside them is refused by the service, and past 4300 digits by botocore's JSON encoder.
_JAVA_RANGES: Final = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
# Enums are left open on purpose (AWS adds values before botocore knows them), but AWS enum values
# are short names: this bounds the text a request can carry in one.
_ENUM_MAX_CHARS: Final = 256
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _seconds_or_none(value: object) -> int | None:
    """``value`` as whole seconds (int, digit string, whole float, timedelta), else None."""
    if isinstance(value, bool):  # bool is an int subclass; True seconds is a bug, not 1
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, timedelta):
        return value.days * 86_400 + value.seconds if value.microseconds == 0 else None
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        try:
            return int(value)
        except ValueError:  # more digits than int() converts
            return None
    return None


@functools.cache
def _input_shape() -> StructureShape:
    # Imported and loaded on first use: the sagemaker model is a few MB of JSON.
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return cast("StructureShape", model.operation_model("CreateTrainingJob").input_shape)


@functools.cache
def _model_pattern(pattern: str | None) -> re.Pattern[str] | None:
    r"""Compile a model pattern for Python, or None where that cannot be done faithfully.

    The model's patterns are Java regexes. Those Python cannot compile (``\p{L}``) or compiles
    with warnings are skipped; DOTALL keeps Python from being stricter than Java on newlines, so
    a difference can only let a request through to the API, never refuse a valid one.
    """
    if not pattern or pattern in (".*", "[\\S\\s]*"):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return re.compile(pattern, re.DOTALL)
        except (re.error, Warning):
            return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _nodes(value: Any, shape: Shape, path: str) -> Iterator[tuple[str, Any, Shape]]:
    """Every (path, value, shape) of ``value`` whose container types match the model."""
    yield path, value, shape
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        members = cast("StructureShape", shape).members
        for key, item in value.items():
            if key in members:
                yield from _nodes(item, members[key], _join(path, key))
    elif kind == "list" and isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _nodes(item, cast("ListShape", shape).member, f"{path}[{index}]")
    elif kind == "map" and isinstance(value, dict):
        map_shape = cast("MapShape", shape)
        for key, item in value.items():
            yield from _nodes(key, map_shape.key, _join(path, key_text(key)))
            yield from _nodes(item, map_shape.value, _join(path, key_text(key)))


def _integer_rule(value: Any, meta: Mapping[str, Any], low: int, high: int) -> str | None:
    """Bounds of an integer member: the model's where it has them, else the Java type's."""
    if isinstance(value, bool):
        return "must be an integer, not a boolean"
    if not isinstance(value, int):
        return None  # botocore's ParamValidator names the wrong type
    low, high = max(low, meta.get("min", low)), min(high, meta.get("max", high))
    if not low <= value <= high:
        return f"must be <= {high}" if value > high else f"must be >= {low}"
    return None


def _string_rule(value: str, meta: Mapping[str, Any]) -> str | None:
    top = meta.get("max")
    if top is None and meta.get("enum"):
        top = _ENUM_MAX_CHARS
    if top is not None and len(value) > top:
        return f"must be at most {top} characters"
    if _LONE_SURROGATE.search(value):
        return "must be Unicode text: it holds a lone surrogate, which no UTF-8 encoder takes"
    pattern = _model_pattern(meta.get("pattern"))
    if pattern is not None and not pattern.fullmatch(value):
        return f"must match the pattern {pattern.pattern}"
    return None


def _model_rule(value: Any, shape: Shape) -> str | None:
    """The model constraint ``value`` breaks that botocore's ParamValidator does not check."""
    kind, meta = shape.type_name, shape.metadata
    if kind in _JAVA_RANGES:
        return _integer_rule(value, meta, *_JAVA_RANGES[kind])
    top = meta.get("max")
    if kind in ("list", "map") and isinstance(value, list | tuple | dict):
        return f"must have at most {top} entries" if top is not None and len(value) > top else None
    if kind != "string" or not isinstance(value, str):
        return None
    return _string_rule(value, meta)


def _structures(request: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every structure of the request by its path (as botocore names it; the first of a path).

    Walked once for all the unknown parameters of a request, however many there are.
    """
    found: dict[str, Mapping[str, Any]] = {}
    for at, value, _ in _nodes(request, _input_shape(), ""):
        if isinstance(value, Mapping):
            found.setdefault(at, value)
    return found


def _botocore_violations(request: Mapping[str, Any], require_name: bool) -> list[Violation]:
    """Translate botocore's ParamValidator findings (types, required, minimums) to Violations."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(request, _input_shape())
    errors = getattr(report, "_errors", None)  # (reason, name, details); there is no public view
    if not isinstance(errors, list):
        return [Violation("request", None, report.generate_report())] if report.has_errors() else []
    found = []
    unknown_seen = any(reason == "unknown field" for reason, _, _ in errors)
    structures = _structures(request) if unknown_seen else {}
    for reason, name, details in errors:
        field = re.sub(r" \(key: (.*)\)$", lambda m: "." + m.group(1), name).lstrip(".")
        if reason == "missing required field":
            if details["required_name"] == "TrainingJobName" and not (field or require_name):
                continue
            found.append(Violation(_join(field, details["required_name"]), None, "is required"))
        elif reason == "unknown field":
            unknown, known = key_text(details["unknown_param"]), details["valid_names"]
            close = difflib.get_close_matches(unknown, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "known here: " + ", ".join(known)
            rule = f"is no CreateTrainingJob parameter; {hint}"
            value = structures.get(field, {}).get(details["unknown_param"])
            found.append(Violation(_join(field, unknown), value, rule))
        elif reason == "invalid type":
            kinds = ", ".join(re.sub(r"<class '(\w+)'>", r"\1", t) for t in details["valid_types"])
            found.append(
                Violation(field or "request", details["param"], f"must be of type {kinds}")
            )
        elif reason in ("invalid range", "invalid length"):
            what = "length" if reason == "invalid length" else "value"
            rule = f"{what} must be >= {details['min_allowed']}"
            found.append(Violation(field, details["param"], rule))
        else:
            found.append(Violation(field or "request", details.get("param"), reason))
    return found


def _model_violations(request: Mapping[str, Any], require_name: bool) -> list[Violation]:
    found = _botocore_violations(request, require_name)
    for path, value, shape in _nodes(request, _input_shape(), ""):
        rule = _model_rule(value, shape)
        if rule is not None:
            found.append(Violation(path or "request", value, rule))
    return found


def _cast_ints(value: Any, shape: Shape) -> Any:
    """Digit strings where the model wants an integer become ints (the rest stays as it is)."""
    kind = shape.type_name
    if kind in ("integer", "long") and isinstance(value, str):
        seconds = _seconds_or_none(value)
        return value if seconds is None else seconds
    if kind == "structure" and isinstance(value, dict):
        members = cast("StructureShape", shape).members
        for key in value:
            if key in members:
                value[key] = _cast_ints(value[key], members[key])
    elif kind == "list" and isinstance(value, list):
        value[:] = [_cast_ints(item, cast("ListShape", shape).member) for item in value]
    elif kind == "map" and isinstance(value, dict):
        for key in value:
            value[key] = _cast_ints(value[key], cast("MapShape", shape).value)
    return value
