"""Deterministic scenarios: scripted interruptions, capacity gaps, failed starts and throttles.

A scenario is a list of events, each a one-key object (JSON, YAML, or a Python dict)::

    {"events": [
      {"interrupt":   {"job": "train-*", "at_training_second": 2.0, "attempt": 1}},
      {"no_capacity": {"instance_type": "ml.p3.*", "from": 0, "until": 30}},
      {"no_capacity": {"instance_type": "ml.p4d.*", "on_demand": true}},
      {"fail_start":  {"job": "train-7", "start": 1}},
      {"throttle":    {"operation": "DescribeTrainingJob", "rate": 5}},
      {"throttle":    {"operation": "ListTrainingJobs", "count": 3}}
    ]}

- ``interrupt``: interrupt each job whose name matches the glob once its current attempt has
  trained ``at_training_second`` seconds; in attempt ``attempt`` only if given, else in the first
  attempt that gets there. Each event fires once per job.
- ``no_capacity``: no spot capacity for the matching instance types between ``from`` and
  ``until`` seconds after the scenario was loaded (emulator start for ``--scenario``); ``until``
  null or absent means for ever. On AWS on-demand capacity is a pool of its own: an on-demand
  job is refused (``CapacityError``) only when the event says ``"on_demand": true`` (default
  false), which takes both pools away.
- ``fail_start``: an internal error on the ``start``-th time the job gets instances (1-based),
  which ``RetryStrategy`` may retry.
- ``throttle``: ``rate`` requests per second for the operation from now on, or ``count``: the next
  ``count`` calls are throttled.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any


class ScenarioError(ValueError):
    """A scenario that cannot be read; the message names the event and the field."""


@dataclass(frozen=True)
class InterruptAt:
    """Interrupt matching jobs after some training seconds of an attempt."""

    job: str
    at_training_second: float
    attempt: int | None = None


@dataclass(frozen=True)
class NoCapacity:
    """No spot capacity for matching instance types in a window of epoch seconds.

    :param instance_type: glob of the instance types.
    :param start: epoch seconds the window opens.
    :param until: epoch seconds it closes; None: never.
    :param on_demand: on-demand capacity goes too (else only spot's).
    """

    instance_type: str
    start: float
    until: float | None
    on_demand: bool = False


@dataclass(frozen=True)
class FailStart:
    """An internal error on the n-th start of matching jobs."""

    job: str
    start: int


@dataclass(frozen=True)
class Throttle:
    """Throttle an operation: a rate in requests per second, or the next ``count`` calls."""

    operation: str
    rate: float | None = None
    count: int | None = None


Event = InterruptAt | NoCapacity | FailStart | Throttle


def _number(where: str, body: Mapping[str, Any], key: str, *, minimum: float = 0) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{where}: {key!r} must be a number, got {value!r}")
    if value < minimum:
        raise ScenarioError(f"{where}: {key!r} must be >= {minimum}, got {value!r}")
    return float(value)


def _integer(where: str, body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScenarioError(f"{where}: {key!r} must be an integer >= 1, got {value!r}")
    return value


def _glob(where: str, body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ScenarioError(f"{where}: {key!r} must be a non-empty string (a glob), got {value!r}")
    return value


def _parse_one(where: str, kind: str, body: Mapping[str, Any], loaded_at: float) -> Event:
    if kind == "interrupt":
        attempt = _integer(where, body, "attempt") if "attempt" in body else None
        return InterruptAt(
            _glob(where, body, "job"), _number(where, body, "at_training_second"), attempt
        )
    if kind == "no_capacity":
        start = _number(where, body, "from") if "from" in body else 0.0
        until = None if body.get("until") is None else _number(where, body, "until")
        if until is not None and until < start:
            raise ScenarioError(f"{where}: 'until' ({until}) is before 'from' ({start})")
        on_demand = body.get("on_demand", False)
        if not isinstance(on_demand, bool):
            raise ScenarioError(f"{where}: 'on_demand' must be true or false, got {on_demand!r}")
        return NoCapacity(
            _glob(where, body, "instance_type"),
            loaded_at + start,
            None if until is None else loaded_at + until,
            on_demand,
        )
    if kind == "fail_start":
        return FailStart(_glob(where, body, "job"), _integer(where, body, "start"))
    if kind == "throttle":
        if ("rate" in body) == ("count" in body):
            raise ScenarioError(f"{where}: give exactly one of 'rate' and 'count'")
        operation = _glob(where, body, "operation")
        if "rate" in body:
            return Throttle(operation, rate=_number(where, body, "rate", minimum=0.001))
        return Throttle(operation, count=_integer(where, body, "count"))
    raise ScenarioError(
        f"{where}: unknown event {kind!r} (known: interrupt, no_capacity, fail_start, throttle)"
    )


def parse_events(spec: Any, loaded_at: float) -> list[Event]:
    """Read a scenario given as ``{"events": [...]}`` or as the bare list.

    :param spec: the decoded JSON/YAML or a Python object of the same shape.
    :param loaded_at: epoch seconds the ``no_capacity`` windows are relative to.
    :raises ScenarioError: with the index and the field of the first bad event.
    """
    raw = spec.get("events") if isinstance(spec, Mapping) else spec
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ScenarioError('a scenario is {"events": [...]} or a list of events')
    events: list[Event] = []
    for index, item in enumerate(raw):
        where = f"event {index}"
        if not isinstance(item, Mapping) or len(item) != 1:
            raise ScenarioError(f"{where}: an event is an object with exactly one key")
        ((kind, body),) = item.items()
        if not isinstance(body, Mapping):
            raise ScenarioError(f"{where}: the body of {kind!r} must be an object")
        events.append(_parse_one(where, str(kind), body, loaded_at))
    return events


def load_file(path: Path | str) -> Any:
    """Decode a scenario file: JSON, or YAML for ``.yaml``/``.yml`` files.

    :param path: the file.
    :raises ScenarioError: unreadable or not decodable.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(f"cannot read scenario {path}: {err}") from err
    if path.suffix in (".yaml", ".yml"):
        yaml = importlib.import_module("yaml")  # PyYAML comes with Airflow; YAML only

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ScenarioError(f"cannot parse YAML scenario {path}: {err}") from err
    try:
        return json.loads(text)
    except ValueError as err:
        raise ScenarioError(f"cannot parse JSON scenario {path}: {err}") from err


class Scenario:
    """The scripted events in force and which of them already fired."""

    def __init__(self) -> None:
        self._interrupts: list[InterruptAt] = []
        self._no_capacity: list[NoCapacity] = []
        self._fail_starts: list[FailStart] = []
        self._fired: set[tuple[int, str]] = set()  # (interrupt index, job name)
        self._matches: dict[str, list[int]] = {}  # job name -> indices of its interrupts

    def clear(self) -> None:
        """Drop every event."""
        self._interrupts.clear()
        self._no_capacity.clear()
        self._fail_starts.clear()
        self._fired.clear()
        self._matches.clear()

    def add(self, events: Iterable[Event]) -> None:
        """Put events in force (throttles are the server's business and are ignored here).

        :param events: parsed events.
        """
        for event in events:
            if isinstance(event, InterruptAt):
                self._interrupts.append(event)
            elif isinstance(event, NoCapacity):
                self._no_capacity.append(event)
            elif isinstance(event, FailStart):
                self._fail_starts.append(event)
        self._matches.clear()

    def interrupt_due(self, job: str, attempt: int, training_elapsed: float) -> bool:
        """Whether a scripted interruption fires now; it is then spent for this job.

        :param job: the job name.
        :param attempt: the job's start number (1-based).
        :param training_elapsed: seconds the job has trained in this attempt.
        """
        indices = self._matches.get(job)
        if indices is None:
            indices = [i for i, ev in enumerate(self._interrupts) if fnmatchcase(job, ev.job)]
            self._matches[job] = indices
        for index in indices:
            event = self._interrupts[index]
            if (index, job) in self._fired or training_elapsed < event.at_training_second:
                continue
            if event.attempt is not None and event.attempt != attempt:
                continue
            self._fired.add((index, job))
            return True
        return False

    def no_capacity(self, instance_type: str, now: float, *, spot: bool = True) -> bool:
        """Whether a scripted capacity gap covers this type now, for spot or on-demand jobs.

        :param instance_type: e.g. ``ml.m5.large``.
        :param now: epoch seconds.
        :param spot: asked for a spot job (else on-demand: only ``on_demand`` gaps count).
        """
        return any(
            ev.start <= now and (ev.until is None or now < ev.until)
            for ev in self._no_capacity
            if (spot or ev.on_demand) and fnmatchcase(instance_type, ev.instance_type)
        )

    def fail_start(self, job: str, start: int) -> bool:
        """Whether the ``start``-th start of the job gets an internal error.

        :param job: the job name.
        :param start: the start number (1-based).
        """
        return any(ev.start == start and fnmatchcase(job, ev.job) for ev in self._fail_starts)
