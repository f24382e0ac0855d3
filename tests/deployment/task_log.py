"""Reading a task's log as the REST API returns it: transition lines, attempt ends, duplicates.

The operator (and its trigger) log one line per ``SecondaryStatusTransitions`` entry,
``<job>: <SecondaryStatus> at <iso start> - <message>`` (``attempts.transition_line``).
:func:`parse_transition` is the one place that knows this format: it reads job name, status and
start time, so that a change of wording elsewhere in the line needs a change here only.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_spot_provider.lifecycle import SecondaryStatus

_TRANSITION = re.compile(
    r"^(?P<job>[A-Za-z0-9][A-Za-z0-9-]*): (?P<status>[A-Za-z]+) at (?P<start>\S+)"
    r"(?: - (?P<message>.*))?$",
    re.DOTALL,
)
_ATTEMPT_ENDED = re.compile(r"^Attempt (?P<n>\d+) ended: (?P<job>[A-Za-z0-9-]+):")
_KNOWN_STATUSES = frozenset(s.value for s in SecondaryStatus)


@dataclass(frozen=True)
class LoggedTransition:
    """One transition line of the task log.

    :param job: the job name.
    :param status: the SecondaryStatus.
    :param start: its start time (None when logged without one).
    :param message: SageMaker's message as logged.
    """

    job: str
    status: str
    start: datetime | None
    message: str

    @property
    def key(self) -> tuple[str, str, datetime | None]:
        """What identifies the transition: job, status, start time (not the message)."""
        return (self.job, self.status, self.start)


def parse_transition(event: str) -> LoggedTransition | None:
    """The transition a log line reports, or None if it reports none.

    :param event: the ``event`` of one log entry.
    """
    match = _TRANSITION.match(event)
    if match is None or match.group("status") not in _KNOWN_STATUSES:
        return None
    start = match.group("start")
    return LoggedTransition(
        job=match.group("job"),
        status=match.group("status"),
        start=None if start == "-" else datetime.fromisoformat(start),
        message=match.group("message") or "",
    )


def events(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ``event`` text of every log entry.

    :param entries: the entries of ``GET .../logs/{try}``.
    """
    return [str(entry.get("event", "")) for entry in entries]


def provider_events(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """The events this provider logged (the operator's, the sensor's and the trigger's loggers).

    :param entries: the entries of ``GET .../logs/{try}``.
    """
    return [
        str(entry.get("event", ""))
        for entry in entries
        if "airflow_spot_provider" in str(entry.get("logger", ""))
    ]


def transition_problems(
    entries: Sequence[Mapping[str, Any]], jobs: Sequence[Mapping[str, Any]]
) -> list[str]:
    """What is wrong with the transition lines of a log, given the jobs' final descriptions.

    Every transition of every job must be logged, and no line twice. A transition may have more
    than one line only when SageMaker rewrote its message while it was open (each message once).

    :param entries: the log entries.
    :param jobs: DescribeTrainingJob of every job of the chain.
    """
    logged = [t for t in map(parse_transition, events(entries)) if t is not None]
    problems = [
        f"logged {count} times: {line}" for line, count in Counter(logged).items() if count > 1
    ]
    keys = Counter(t.key for t in logged)
    expected = set()
    for job in jobs:
        for transition in job.get("SecondaryStatusTransitions", []):
            key = (job["TrainingJobName"], transition["Status"], transition["StartTime"])
            expected.add(key)
            if not keys[key]:
                problems.append(f"missing: {key[0]}: {key[1]} at {key[2].isoformat()}")
    problems += [f"not a transition of the chain: {t}" for t in logged if t.key not in expected]
    return problems


def attempt_end_problems(
    entries: Sequence[Mapping[str, Any]], job_names: Sequence[str]
) -> list[str]:
    """What is wrong with the "Attempt N ended" lines: each ended attempt exactly once.

    :param entries: the log entries.
    :param job_names: the chain's job names, oldest first (every one of them ended).
    """
    ended = Counter(
        (int(m.group("n")), m.group("job"))
        for m in map(_ATTEMPT_ENDED.match, events(entries))
        if m is not None
    )
    expected = {(n, name) for n, name in enumerate(job_names, start=1)}
    problems = [
        f"'Attempt {n} ended' ({job}) logged {c} times" for (n, job), c in ended.items() if c != 1
    ]
    problems += [f"'Attempt {n} ended' ({job}) missing" for n, job in expected - set(ended)]
    problems += [f"unexpected 'Attempt {n} ended' ({job})" for n, job in set(ended) - expected]
    return problems


def repeated_provider_lines(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Lines the provider logged more than once (identical text).

    :param entries: the log entries.
    """
    counts = Counter(provider_events(entries))
    return [f"logged {count} times: {line[:200]}" for line, count in counts.items() if count > 1]


def error_text(entries: Sequence[Mapping[str, Any]]) -> str:
    """Every error-level entry, with its exception details, as one text.

    :param entries: the log entries.
    """
    return "\n".join(
        json.dumps(entry, default=str) for entry in entries if entry.get("level") == "error"
    )
