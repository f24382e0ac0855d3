"""One watch: the async loop that follows every subscribed job of one AWS connection and region.

Each cycle (``Tuning.lists_per_interval`` per poll interval, the smallest of the subscribers'):

1. ``ListTrainingJobs`` of the jobs modified since the watermark minus a margin, 100 per page;
   only the subscribed jobs whose ``(TrainingJobStatus, SecondaryStatus, LastModifiedTime)``
   differ from what was seen are described (:class:`~airflow_spot_provider.watch.book.Book`),
   those List shows ended first, ``Tuning.concurrency`` at a time. The watermark also moves to
   the service's time of the answer (its ``Date``): an idle walk is one page.
   New subscribers are described once (at once, or one poll interval after subscribing with
   ``wait_first``), woken between cycles.
2. Once per poll interval, the slow sweep describes a few jobs whatever List said: a change a
   List answer missed is seen within ``sweep_every`` intervals (more at many jobs: the sweep
   spends ``sweep_per_interval`` describes per interval at most). It also catches a change of
   the open transition's ``StatusMessage``, which does not move ``LastModifiedTime``.
3. For subscribers with ``print_log``: once per poll interval ``DescribeLogStreams`` of the
   group by last event time, paged until the streams are older than the previous scan's newest;
   the streams of new subscribers, of swept jobs and of jobs that just ended are looked up by
   name; then ``FilterLogEvents`` of the streams that moved, 100 per call.
4. Each subscriber gets its news on its queue; subscribers with a ``stop_when`` get a tick each
   cycle (time passes). Triggers take the follow step on it themselves, and log it. A subscriber
   whose saved position is still loading gets no lines (:meth:`Subscription.loaded`), nor the
   end of its job: that is described again once it is loaded, and read to its last line.

One aiobotocore client per service for the whole watch (:class:`~airflow_spot_provider.hooks.
jobs.AsyncJobs`, through the Amazon provider's hooks: the connection is looked up once). Every call
goes through the one :class:`~airflow_spot_provider.hooks.errors.ApiRetryRule`: a throttled or
failing List is waited out once for all subscribers. A List that keeps failing with a lasting
error (IAM allows DescribeTrainingJob but not ListTrainingJobs) turns the watch into per-job
describes once per poll interval, and says so to every subscriber; a describe that keeps failing
ends its job's subscribers with the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from airflow_spot_provider.exceptions import SpotApiError
from airflow_spot_provider.hooks.errors import ApiCallError, ApiRetryRule
from airflow_spot_provider.hooks.job_calls import (
    Lines,
    describe_job,
    job_streams,
    moved_starts,
    read_marked,
    streams_by_job,
)
from airflow_spot_provider.hooks.jobs import AsyncJobs
from airflow_spot_provider.lifecycle import TrainingJobStatus
from airflow_spot_provider.position import Position
from airflow_spot_provider.watch.book import Book, LogScan, Tuning
from airflow_spot_provider.watch.calls import list_changed, scan_streams
from airflow_spot_provider.watch.heap import freeze_if_grown
from airflow_spot_provider.watch.subscription import News, Subscription

log = logging.getLogger(__name__)

Key = tuple[str | None, str | None]


class Watch:
    """The shared follower of one (AWS connection, region) on one event loop.

    :param key: ``(aws_conn_id, region_name)``.
    :param tuning: the cadence and the budgets.
    :param on_end: called once the watch has ended (its clients are closed).
    """

    def __init__(self, key: Key, tuning: Tuning, on_end: Callable[[Watch], None]) -> None:
        self.key = key
        self.tuning = tuning
        self.on_end = on_end
        self.book = Book(tuning)
        self.scan = LogScan(tuning)
        self.subs: dict[str, list[Subscription]] = {}
        self.listing = True  # False once ListTrainingJobs was refused: per-job describes
        self.cycles = 0
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        self.jobs: AsyncJobs | None = None  # its clients, while it runs
        self._wake = asyncio.Event()
        self._stopping = False
        self._pausing = False

    def start(self) -> None:
        """Start the loop in a task of its own (never a trigger's, nor in a trigger's context)."""
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._run(), context=contextvars.Context())

    def stop(self) -> None:
        """End the loop (its last subscriber left); its clients close as it ends.

        Between cycles it leaves its pause at once; in a cycle, its calls are cancelled.
        """
        self._stopping = True
        if self._pausing:
            self._wake.set()
        elif self.task is not None:
            self.task.cancel()

    def add(self, sub: Subscription) -> None:
        """Subscribe a trigger.

        :param sub: its subscription.
        """
        self.subs.setdefault(sub.job_name, []).append(sub)
        self.book.watch(sub.job_name)
        self._wake.set()  # its first describe may be due now

    def loaded(self, sub: Subscription, position: Position) -> None:
        """A subscriber's saved position is loaded and merged: its lines are read from now on.

        :param sub: its subscription.
        :param position: the merged position.
        """
        sub.loaded(position)
        if sub.due is not None:
            self._wake.set()  # its first describe, or its end held back, is due now

    def remove(self, sub: Subscription) -> None:
        """Unsubscribe a trigger (synchronous: safe in a cancelled trigger's ``finally``).

        :param sub: its subscription.
        """
        subs = self.subs.get(sub.job_name, [])
        if sub in subs:
            subs.remove(sub)
        if not subs:
            self.subs.pop(sub.job_name, None)
            self.book.unwatch(sub.job_name)

    def _all(self) -> Iterator[Subscription]:
        for subs in self.subs.values():
            yield from subs

    def interval(self) -> float:
        """The poll interval: the smallest of the subscribers' (1 s with none)."""
        return min((sub.poll_interval for sub in self._all()), default=1.0)

    def _rule(self) -> ApiRetryRule:
        most = max((sub.max_error_polls for sub in self._all()), default=1)
        lasting = max(ApiRetryRule.max_lasting, most)
        return ApiRetryRule(max_lasting=lasting, initial_seconds=min(1.0, self.interval()))

    async def _run(self) -> None:
        try:
            async with AsyncJobs(
                aws_conn_id=self.key[0],
                region_name=self.key[1],
                log=log,
                rule=self._rule(),
                pool=self.tuning.concurrency,
            ) as jobs:
                self.jobs = jobs
                await self._loop(jobs)
        except Exception as error:  # no connection, a bug: every subscriber must hear of it
            log.exception("The shared watch of %s failed.", self.key)
            for sub in self._all():
                sub.queue.put_nowait(News(error=error))
        finally:
            self.closed = True
            self.on_end(self)

    async def _loop(self, jobs: AsyncJobs) -> None:
        while not self._stopping:
            started = time.monotonic()
            full = self.cycles % self.tuning.lists_per_interval == 0
            await self._cycle(jobs, listing=True, full=full)
            self.cycles += 1
            if self.tuning.freeze_heap:
                freeze_if_grown(sum(len(subs) for subs in self.subs.values()))
            await self._pause(jobs, started + self.interval() / self.tuning.lists_per_interval)

    async def _pause(self, jobs: AsyncJobs, until: float) -> None:
        """Wait for the next cycle; describe new subscribers as they come due meanwhile."""
        while (now := time.monotonic()) < until:
            dues = [sub.due for sub in self._all() if sub.due is not None]
            self._wake.clear()
            self._pausing = True
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min([until, *dues]) - now)
            finally:
                self._pausing = False
            if self._stopping:
                return
            if any(sub.due is not None and sub.due <= time.monotonic() for sub in self._all()):
                await self._cycle(jobs, listing=False, full=False)

    async def _cycle(self, jobs: AsyncJobs, *, listing: bool, full: bool) -> None:
        """One cycle: what changed, describe it, read the logs that moved, hand out the news."""
        jobs.rule = self._rule()
        now = time.monotonic()
        new = [sub for sub in self._all() if sub.due is not None and sub.due <= now]
        listed = await self._listed(jobs, full) if listing else []
        swept = set(self.book.sweep()) if full else set()
        # The jobs List shows ended first: their triggers fire first.
        order = [*listed, *sorted({sub.job_name for sub in new} | swept)]
        described = await self._describe(jobs, list(dict.fromkeys(order)))
        for sub in new:
            sub.due = None
        ended = {n for n, d in described.items() if _is_terminal(d)}
        # Taken as _read_logs takes its subscribers (before it awaits): no lines for these.
        held = [s for s in self._all() if s.awaits_position and s.job_name in ended]
        read = await self._read_logs(jobs, scan=full, ended=ended, swept=swept)
        for sub in held:
            sub.end_unread()  # its end is described again once loaded, with its last lines
        for sub in self._all():
            describe = None if sub in held else described.get(sub.job_name)
            lines, marks = read.get(id(sub), ([], {}))
            if describe is not None or lines or marks or (listing and sub.ticks):
                sub.queue.put_nowait(News(describe=describe, lines=lines, marks=marks))

    async def _listed(self, jobs: AsyncJobs, full: bool) -> list[str]:
        """The subscribed jobs to describe after this cycle's List walk, ended ones first."""
        if not self.listing:
            return sorted(self.book.watched) if full else []
        args = self.book.list_args()
        if args is None:
            return []  # nothing seen yet: the first describes set the watermark
        try:
            summaries, served = await jobs.run(list_changed(args))
        except SpotApiError as error:
            self.listing = False
            note = (
                f"ListTrainingJobs keeps failing ({error.code}: {error.message}): following each"
                " job with DescribeTrainingJob once per poll interval instead."
            )
            log.warning(note)
            for sub in self._all():
                sub.queue.put_nowait(News(notes=(note,)))
            return sorted(self.book.watched)
        return self.book.changed(summaries, served)

    async def _describe(self, jobs: AsyncJobs, order: list[str]) -> dict[str, dict[str, Any]]:
        """Describe jobs in order, a few dozen at a time; a lasting error ends their subscribers."""
        # The semaphore admits its waiters first come, first served: the calls start in order.
        gate = asyncio.Semaphore(self.tuning.concurrency)

        async def one(name: str) -> dict[str, Any] | None:
            subs = self.subs.get(name)
            if not subs:
                return None
            lasting = min(sub.max_error_polls for sub in subs)
            async with gate:
                try:
                    return await jobs.run(describe_job(name, lasting))
                except SpotApiError as error:
                    for sub in self.subs.get(name, []):
                        sub.queue.put_nowait(News(error=error))
                    return None

        found = await asyncio.gather(*(one(name) for name in order))
        described = {}
        for name, describe in zip(order, found, strict=True):
            if describe is not None:
                self.book.described(describe)
                described[name] = describe
        return described

    async def _read_logs(
        self, jobs: AsyncJobs, *, scan: bool, ended: set[str], swept: set[str]
    ) -> dict[int, tuple[Lines, dict[str, Any]]]:
        """New CloudWatch lines per subscriber (by ``id``), with the marks after them.

        The streams come from the group's scan (by last event time: a stream that moves is found
        there, a new subscriber's too), from a look-up by name (an ended or swept job with no
        stream known yet), and, for ended and swept jobs, from their marks: those are read
        whatever ``lastEventTimestamp`` says (CloudWatch updates it eventually, so a job's last
        lines are read before it fires, and a quiet stream's unread lines within the sweep).
        """
        logged = [sub for sub in self._all() if sub.print_log]
        known = {_job_of(stream) for sub in logged for stream in sub.read.streams}
        wanted = {sub.job_name for sub in logged}
        forced = (ended | swept) & wanted
        by_name = forced - known
        if not (scan and logged) and not (by_name or forced):
            return {}
        try:
            last = await self._moved_streams(jobs, scan, wanted, by_name)
            for stream in [*last, *(s for sub in logged for s in sub.read.streams)]:
                if _job_of(stream) in forced:
                    last[stream] = _ANY_TIME
            by_job = streams_by_job(last)
            targets = [sub for sub in logged if _to_read(sub.read, by_job.get(sub.job_name, {}))]
            results = await jobs.run(read_marked([sub.read for sub in targets], last))
        except ApiCallError as error:
            if error.code != "ResourceNotFoundException":  # no log group yet: nothing written
                note = f"Could not read the training logs: {error}"
                log.warning(note)
                for sub in logged:
                    sub.queue.put_nowait(News(notes=(note,)))
            return {}
        read: dict[int, tuple[Lines, dict[str, Any]]] = {}
        for sub, (lines, position) in zip(targets, results, strict=True):
            if position != sub.read:
                read[id(sub)] = (lines, dict(position.streams))
                sub.read = position
        return read

    async def _moved_streams(
        self, jobs: AsyncJobs, scan: bool, wanted: set[str], by_name: set[str]
    ) -> dict[str, int | None]:
        """Streams and their last event times: from the group's scan and looked up by job."""
        last: dict[str, int | None] = {}
        if scan and wanted:
            last.update(await jobs.run(scan_streams(self.scan, lambda s: _job_of(s) in wanted)))
        gate = asyncio.Semaphore(self.tuning.concurrency)

        async def look_up(name: str) -> dict[str, int | None]:
            async with gate:
                return await jobs.run(job_streams(name))

        for found in await asyncio.gather(*(look_up(name) for name in sorted(by_name))):
            last.update(found)
        return last


# A last event time later than any mark: the stream is read from its mark whatever CloudWatch said.
_ANY_TIME = 2**62


def _job_of(stream: str) -> str:
    """The job of a stream (``<job>/<host>``)."""
    return stream.split("/", 1)[0]


def _to_read(position: Position, last: dict[str, int | None]) -> bool:
    """Whether a position has streams to read: moved past its marks, or marked by a token."""
    tokens = any(m.timestamp is None and m.token for m in position.streams.values())
    return tokens or bool(moved_starts(position, last))


def _is_terminal(describe: dict[str, Any]) -> bool:
    return TrainingJobStatus(describe["TrainingJobStatus"]).is_terminal
