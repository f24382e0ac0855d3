"""The emulator's event log and API call counters, read over ``GET /_emulator/events``.

Events are what a test or a chaos experiment wants to assert on: creations, transitions,
interruptions, capacity changes, throttles, injected failures. API calls are counted per
operation rather than logged one by one, so that a benchmark of a million calls stays small.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

MAX_EVENTS = 100_000


class EventLog:
    """A bounded, thread-safe log of emulator events plus per-operation call counts."""

    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self._seq = 0
        self._calls: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, kind: str, **fields: Any) -> None:
        """Append an event.

        :param kind: ``created``, ``transition``, ``interrupt``, ``capacity``, ``throttle``...
        :param fields: JSON-serialisable details (``job`` names the job, when there is one).
        """
        with self._lock:
            self._seq += 1
            self._events.append({"seq": self._seq, "time": time.time(), "kind": kind, **fields})

    def count_call(self, operation: str, error_code: str | None = None) -> None:
        """Count one API call (and its error code, if it failed).

        :param operation: e.g. ``SageMaker.CreateTrainingJob``.
        :param error_code: the AWS error code answered, if any.
        """
        with self._lock:
            self._calls[operation] += 1
            if error_code:
                self._errors[f"{operation}:{error_code}"] += 1

    def events(
        self, since: int = 0, job: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Events after sequence number ``since``, optionally of one job and one kind.

        :param since: last sequence number already seen.
        :param job: only this job's events.
        :param kind: only events of this kind.
        """
        with self._lock:
            return [
                dict(e)
                for e in self._events
                if e["seq"] > since
                and (job is None or e.get("job") == job)
                and (kind is None or e["kind"] == kind)
            ]

    def stats(self) -> dict[str, Any]:
        """Call counts per operation, error counts per operation and code, last sequence."""
        with self._lock:
            return {
                "api_calls": dict(self._calls),
                "api_errors": dict(self._errors),
                "last_seq": self._seq,
            }
