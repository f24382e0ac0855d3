"""What a watch knows of its jobs and streams: the pure bookkeeping of a cycle (no I/O, no clock).

- :class:`Seen`: a job as last seen, ``(TrainingJobStatus, SecondaryStatus, LastModifiedTime)``;
  a job is described again only when a ``ListTrainingJobs`` summary differs from it.
- :class:`Changed`: the jobs a List walk shows changed, those it shows ended apart.
- :class:`Book`: the jobs watched, what was seen of each, the **watermark** (the service's own
  time when it answered a List, its HTTP ``Date``, or without one the latest ``LastModifiedTime``
  it listed; never the local clock) and the next List's arguments
  (``LastModifiedTimeAfter`` = watermark minus a safety margin), and the slow round-robin sweep
  that describes every job now and then whatever List said.
- :class:`GroupRead`: where the next ``FilterLogEvents`` of the whole log group starts: the
  newest event seen, minus a margin.
- :class:`Tuning`: the cadence and the budgets, in one place.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from airflow_spot_provider.hooks.job_calls import LOG_GROUP
from airflow_spot_provider.lifecycle import TrainingJobStatus


@dataclass(frozen=True)
class Tuning:
    """How often a watch looks, and how much it spends on what did not change.

    :param lists_per_interval: ``ListTrainingJobs`` walks per poll interval. Two: a job's end is
        seen within half an interval (median about a quarter), while what does not change costs
        two List calls per interval.
    :param margin: how far before the watermark a List starts (``LastModifiedTimeAfter``): clock
        skew between SageMaker's hosts (the front end that stamps ``Date``, the store that stamps
        ``LastModifiedTime``) and its eventual consistency (a change stamped at T may show in List
        a little after T; AWS publishes no bound; unverified). A List then returns the jobs
        changed in the margin again; those seen already are not described.
    :param sweep_every: poll intervals in which every job is described once by the sweep, at
        least (more when ``sweep_per_interval`` caps it).
    :param sweep_per_interval: jobs the sweep describes per poll interval at most.
    :param page_size: ``MaxResults`` of a List page (SageMaker's maximum).
    :param log_margin_ms: how far below the newest event seen the group's next ``FilterLogEvents``
        starts: lines that reach CloudWatch late (a host's log agent sends in batches) carry an
        earlier time than lines already seen; those read already are not relayed again.
    :param group_read_pages: ``FilterLogEvents`` pages per read of the group at most (the next read
        goes on from the last event read).
    :param concurrency: describes (and log stream look-ups) in flight at once, and the size of
        the clients' connection pools (botocore's default of 10 would queue the rest): 1,000
        jobs ending within 5 s are described within about one List cycle.
    :param freeze_heap: move the process's long-lived objects out of the garbage collector's
        reach as the watch starts, after its first cycle and as subscribers double
        (:mod:`~airflow_spot_provider.watch.heap`): full collections of a large triggerer's
        heap stall the event loop; frozen reference cycles are never collected.
    """

    lists_per_interval: int = 2
    margin: timedelta = timedelta(seconds=30)
    sweep_every: int = 10
    sweep_per_interval: int = 3
    page_size: int = 100
    log_margin_ms: int = 15_000
    group_read_pages: int = 20
    concurrency: int = 48
    freeze_heap: bool = True

    def __post_init__(self) -> None:
        for name in ("lists_per_interval", "sweep_every", "group_read_pages", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be >= 1")
        if not 1 <= self.page_size <= 100:
            raise ValueError(f"page_size={self.page_size!r}: must be 1-100 (MaxResults)")
        if self.sweep_per_interval < 0:
            raise ValueError(f"sweep_per_interval={self.sweep_per_interval!r}: must be >= 0")
        if self.margin < timedelta(0):
            raise ValueError(f"margin={self.margin!r}: must not be negative")
        if self.log_margin_ms < 0:
            raise ValueError(f"log_margin_ms={self.log_margin_ms!r}: must not be negative")


@dataclass(frozen=True)
class Seen:
    """A job as last seen: what a List summary and a description both carry.

    :param status: ``TrainingJobStatus``.
    :param secondary: ``SecondaryStatus``.
    :param modified: ``LastModifiedTime``.
    """

    status: str
    secondary: str | None
    modified: datetime | None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Seen:
        """From a ``TrainingJobSummary`` or a ``DescribeTrainingJob`` response.

        :param data: either.
        """
        return cls(
            status=str(data.get("TrainingJobStatus")),
            secondary=data.get("SecondaryStatus"),
            modified=data.get("LastModifiedTime"),
        )


@dataclass(frozen=True)
class Changed:
    """The followed jobs a List walk shows changed, in the order to describe them.

    :param ended: those it shows ended (their triggers fire first), in the order listed.
    :param others: the others, in the order listed.
    """

    ended: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)

    @property
    def order(self) -> list[str]:
        """Every changed job, the ended ones first."""
        return [*self.ended, *self.others]


class Book:
    """The jobs a watch follows, what it saw of each, its watermark and its sweep.

    :param tuning: the cadence and the budgets.
    """

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self.seen: dict[str, Seen] = {}
        self.watermark: datetime | None = None
        self._watched: set[str] = set()
        self._sweep: deque[str] = deque()
        self._credit = 0.0

    def watch(self, name: str) -> None:
        """Follow a job (again).

        :param name: the job.
        """
        if name not in self._watched:
            self._watched.add(name)
            self._sweep.append(name)

    def unwatch(self, name: str) -> None:
        """Stop following a job.

        :param name: the job.
        """
        if name in self._watched:
            self._watched.discard(name)
            self._sweep.remove(name)
            self.seen.pop(name, None)

    @property
    def watched(self) -> frozenset[str]:
        """The jobs followed."""
        return frozenset(self._watched)

    def list_args(self) -> dict[str, Any] | None:
        """The first List page's arguments; None before anything was seen (no watermark yet).

        ``SortBy`` is ``CreationTime`` (the API sorts by Name, CreationTime or Status, not by
        LastModifiedTime): a job's creation time never changes, so a walk over pages misses no
        job that changes while it pages.
        """
        if self.watermark is None:
            return None
        return {
            "LastModifiedTimeAfter": self.watermark - self.tuning.margin,
            "SortBy": "CreationTime",
            "SortOrder": "Ascending",
            "MaxResults": self.tuning.page_size,
        }

    def changed(
        self, summaries: Iterable[Mapping[str, Any]], served: datetime | None = None
    ) -> Changed:
        """The followed jobs whose summary differs from what was seen: ended, and the others.

        Moves the watermark to ``served``: every change stamped before the service answered the
        walk's first page is listed by then, or within the margin (its eventual consistency), so
        the next List starts at ``served`` minus the margin even when nothing changed (jobs that
        only log keep their ``LastModifiedTime``: a burst of them is not listed again on every
        walk). Never to a later ``LastModifiedTime`` (of a later page, or of a describe between
        walks): a job that changed since the first page, but earlier than that minus the margin,
        would be left out of the next List. Without a ``Date``, to the latest listed.

        :param summaries: every ``TrainingJobSummary`` of one List walk.
        :param served: the service's time when it answered the walk's first page
            (:func:`served_at`); None when it did not say.
        """
        ended: list[str] = []
        others: list[str] = []
        for summary in summaries:
            if served is None:
                self._advance(summary.get("LastModifiedTime"))
            name = str(summary.get("TrainingJobName"))
            seen = Seen.of(summary)
            if name in self._watched and seen != self.seen.get(name):
                (ended if TrainingJobStatus(seen.status).is_terminal else others).append(name)
        self._advance(served)
        return Changed(ended, others)

    def described(self, describe: Mapping[str, Any]) -> None:
        """Note a job's description (what it looks like now); the first one sets the watermark.

        :param describe: a ``DescribeTrainingJob`` response.
        """
        name = str(describe.get("TrainingJobName"))
        if name in self._watched:
            self.seen[name] = Seen.of(describe)
        if self.watermark is None:  # the first List's start; later ones start from a List
            self._advance(describe.get("LastModifiedTime"))

    def _advance(self, modified: Any) -> None:
        if isinstance(modified, datetime) and (self.watermark is None or modified > self.watermark):
            self.watermark = modified

    def sweep(self) -> list[str]:
        """The jobs the slow sweep describes this poll interval (round robin).

        Each job once per ``sweep_every`` intervals, ``sweep_per_interval`` at most per interval.
        """
        per_interval = len(self._sweep) / self.tuning.sweep_every
        self._credit = min(self._credit + per_interval, float(self.tuning.sweep_per_interval))
        count = min(int(self._credit), len(self._sweep))
        self._credit -= count
        names = []
        for _ in range(count):
            names.append(self._sweep[0])
            self._sweep.rotate(-1)
        return names


class GroupRead:
    """Where the next ``FilterLogEvents`` of the whole training jobs' group starts.

    One call (``Tuning.group_read_pages`` pages at most, 10,000 events or 1 MB each) reads what
    every followed job logged since the previous read, whatever the number of jobs; each job's
    trigger takes the events of its streams past its marks
    (:meth:`~airflow_spot_provider.position.Position.take_events`). The read starts at the
    newest event the watch has seen in the group, minus ``log_margin_ms`` (lines reach
    CloudWatch late and carry the time they were written); before any event, at the service's
    time (the watch's watermark, never the local clock). Events come oldest first: a read cut
    by the page cap goes on from where it stopped.

    :param tuning: the margin and the page cap.
    """

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self.newest: int | None = None  # ms since the epoch, of the group's newest event seen

    def start(self) -> int | None:
        """The ``startTime`` of the next read; None before the watch knows the service's time."""
        return None if self.newest is None else max(0, self.newest - self.tuning.log_margin_ms)

    def clock(self, served: datetime | None) -> None:
        """Start from the service's time if no event was seen yet (the first read).

        :param served: the service's time (the watch's watermark), or None.
        """
        if self.newest is None and served is not None:
            self.newest = int(served.timestamp() * 1000)

    def took(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Note the events of a read of the group.

        :param events: ``FilterLogEvents`` events (``timestamp``).
        """
        stamps = [int(e["timestamp"]) for e in events if e.get("timestamp") is not None]
        if stamps:
            self.newest = max(stamps) if self.newest is None else max(self.newest, *stamps)

    def reset(self) -> None:
        """No job is followed with its log: the next read starts from the service's time again
        (not from a time long past, whose events no one wants)."""
        self.newest = None

    def args(self, start: int) -> dict[str, Any]:
        """The first page's arguments.

        :param start: ``startTime`` (:meth:`start`).
        """
        return {"logGroupName": LOG_GROUP, "startTime": start}


def served_at(response: Mapping[str, Any]) -> datetime | None:
    """The service's time when it answered: the HTTP ``Date`` header (RFC 7231, to the second).

    The second is truncated, so the time is never later than the answer. None when the response
    has no (readable) ``Date``, nor a zone.

    :param response: a botocore response, with its ``ResponseMetadata``.
    """
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    date = headers.get("date") if isinstance(headers, Mapping) else None
    if not isinstance(date, str):
        return None
    try:
        served = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    return served if served.tzinfo is not None else None
