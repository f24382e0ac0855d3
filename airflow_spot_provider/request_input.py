"""Reading a user's request input within bounds, so that no input can crash the builder.

A request comes from a DAG file or a rendered template: JSON text, nested mappings, lists. Any of
them may be huge, nested past the interpreter's recursion limit, refer to itself or hold values no
JSON encoder takes. :func:`plain_copy` copies such a value within fixed bounds, far above what any
valid CreateTrainingJob request needs, and names the bound a value breaks instead of raising
RecursionError, MemoryError or ValueError. :func:`is_static` tells, with the same bounds, whether
an operator argument is known at DAG parse time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any, Final

from airflow_spot_provider.exceptions import SpotRequestValidationError, Violation, shown

# botocore's model of CreateTrainingJob nests 6 levels deep (a test reads it); 32 leaves room for
# AWS to grow it while keeping every walk over a request far from the recursion limit.
MAX_DEPTH: Final = 32
# Containers and values in one request: a valid one holds at most a few thousand (100
# hyperparameters, 100 environment variables, 50 tags, 20 channels...).
MAX_VALUES: Final = 20_000
# Characters of a request given as JSON text: a valid request takes well under 1 MB.
MAX_JSON_CHARS: Final = 4_000_000
# Digits of a JSON number: no integer member of the request has more than 19 (a Java long).
_MAX_JSON_DIGITS: Final = 100
_TEMPLATE_MARKERS: Final = ("{{", "{%", "{#")


class _BoundError(Exception):
    """A bound was broken; carries the violation that names it."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.rule)
        self.violation = violation


def key_text(key: object) -> str:
    """A mapping key as it appears in a field path: strings as they are, anything else shown.

    :param key: any key of a mapping.
    """
    return key if isinstance(key, str) else shown(key, 40)


class _Copier:
    """One bounded deep copy; counts values and remembers the containers on the current path.

    :param root: the field name of the value copied, for the violations.
    :param found: where violations that do not stop the copy go (keys that are no strings).
    """

    def __init__(self, root: str, found: list[Violation]) -> None:
        self.root = root
        self.found = found
        self.values = 0
        self.open: set[int] = set()

    def copy(self, value: Any, field: str, depth: int) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _BoundError(Violation(self.root, None, f"must hold at most {MAX_VALUES} values"))
        if not isinstance(value, Mapping | list | tuple):
            return value  # a leaf: the validation names a wrong type, nothing here mutates it
        if id(value) in self.open:
            raise _BoundError(Violation(field, value, "must not contain itself"))
        if depth >= MAX_DEPTH:
            raise _BoundError(Violation(field, value, f"must nest at most {MAX_DEPTH} levels deep"))
        self.open.add(id(value))
        try:
            if isinstance(value, Mapping):
                return self._mapping(value, field, depth)
            return [self.copy(item, f"{field}[{i}]", depth + 1) for i, item in enumerate(value)]
        finally:
            self.open.discard(id(value))

    def _mapping(self, value: Mapping[Any, Any], field: str, depth: int) -> dict[str, Any]:
        copied = {}
        for key, item in value.items():
            path = f"{field}.{key_text(key)}" if field else key_text(key)
            if isinstance(key, str):
                copied[key] = self.copy(item, path, depth + 1)
            else:  # JSON and botocore take string keys only; dropped so nothing formats it
                self.found.append(Violation(path, key, "keys must be strings"))
        return copied


def plain_copy(value: Any, field: str, found: list[Violation]) -> Any:
    """A deep copy with plain containers (dict, list), as botocore and JSON expect, within bounds.

    Mappings become dicts, tuples lists; other values are kept (not copied). Keys that are no
    strings are dropped, each with a violation in ``found``.

    :param value: the value to copy.
    :param field: the name of its field ("" for a whole request), for the violations.
    :param found: receives the violations.
    :returns: the copy, or None (with the violation in ``found``) where a value breaks a bound:
        more than :data:`MAX_VALUES` values, deeper than :data:`MAX_DEPTH`, or containing itself.
    """
    try:
        return _Copier(field or "request", found).copy(value, field, 0)
    except _BoundError as broken:
        found.append(broken.violation)
        return None


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_JSON_DIGITS:
        raise ValueError(f"a number of {len(text)} digits is out of any member's range")
    return int(text)


def load_json(text: str, field: str, found: list[Violation]) -> Any:
    """JSON text as Python values, within bounds; None (with a violation in ``found``) if not.

    :param text: the JSON text.
    :param field: its field name, for the violation.
    :param found: receives the violation.
    """
    rule = None
    if len(text) > MAX_JSON_CHARS:
        rule = f"must be JSON text of at most {MAX_JSON_CHARS} characters, not {len(text)}"
    else:
        try:
            return json.loads(text, parse_int=_json_int)
        except RecursionError:  # raised by json's own scanner, before any of our code runs
            rule = f"must be JSON text nested at most {MAX_DEPTH} levels deep"
        except ValueError as err:  # JSONDecodeError, and the number bound above
            rule = f"must be JSON text of an object: {err}"
    found.append(Violation(field, text, rule))
    return None


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float; None for bools, non-numbers, NaN, infinities and ints past
    float's range (``math.isfinite`` would raise OverflowError on those).

    :param value: any input.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def bounded_number(
    problems: list[Violation],
    field: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    optional: bool = False,
) -> float | None:
    """``value`` as a finite float in ``[low, high]``, or None after recording the violation.

    :param problems: where the violation goes.
    :param field: the field's name, as the error shows it (``SpotRetryPolicy.x``).
    :param value: any input.
    :param low: the least value allowed.
    :param high: the greatest (no bound by default).
    :param optional: None is valid too (and returned as it is).
    """
    if value is None and optional:
        return None
    number = finite_number(value)
    if number is None or not low <= number <= high:
        rule = f"must be a finite number >= {low}" + (f" and <= {high}" if high < math.inf else "")
        problems.append(Violation(field, value, rule + (" or None" if optional else "")))
        return None
    return number


def positive_seconds(value: Any, field: str, high: float) -> float:
    """``value`` as a float number of seconds in ``(0, high]``.

    :param value: the seconds, an int or a float (not a bool).
    :param field: its name, for the error.
    :param high: the largest value allowed.
    :raises SpotRequestValidationError: if ``value`` is not such a number.
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= high:
        return float(value)
    raise SpotRequestValidationError([Violation(field, value, f"must be seconds in (0, {high}]")])


def _leaves(value: Any) -> Iterator[Any]:
    """Every value of a plain copy that is no container (its depth is bounded)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _is_static_leaf(value: Any) -> bool:
    if isinstance(value, str):
        return not any(marker in value for marker in _TEMPLATE_MARKERS)
    return value is None or isinstance(value, bool | int | float | timedelta)


def is_static(value: Any) -> bool:
    """Whether a value is known at DAG parse time: no Jinja template, no XComArg or other object.

    A value that breaks :func:`plain_copy`'s bounds or keys, or holds an int past 64 bits, counts
    as static even beside a template, so that building the request at parse time refuses it with a
    :class:`SpotRequestValidationError` instead of leaving it to break later; this function itself
    never raises.

    :param value: an operator argument (dicts and lists are looked into).
    """
    found: list[Violation] = []
    plain = plain_copy(value, "", found)
    if found:
        return True
    leaves = list(_leaves(plain))
    if any(isinstance(leaf, int) and leaf.bit_length() > 64 for leaf in leaves):
        return True  # no member takes it, and Airflow could not serialize the DAG holding it
    return all(_is_static_leaf(leaf) for leaf in leaves)
