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
3. For subscribers with ``print_log``, while the describes run: once per poll interval, and
   whenever List shows jobs ended, one ``FilterLogEvents`` of the whole log group from the newest
   event seen minus a margin (one page for 10,000 lines, whatever the number of jobs); each
   subscriber takes its job's lines past its marks. An ended job's streams are also read from
   their marks (late lines). A new subscriber, and a job a describe shows ended, read their own
   streams from their marks (``DescribeLogStreams`` by the job's prefix, then
   ``FilterLogEvents`` of 100 streams per call).
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
from collections.abc import Set as AbstractSet
from typing import Any

from airflow_spot_provider.exceptions import SpotApiError
from airflow_spot_provider.hooks.errors import ApiCallError, ApiRetryRule
from airflow_spot_provider.hooks.job_calls import (
    Lines,
    describe_job,
    events_by_job,
    job_streams,
    read_marked,
)
from airflow_spot_provider.hooks.jobs import AsyncJobs
from airflow_spot_provider.lifecycle import TrainingJobStatus
from airflow_spot_provider.position import Position
from airflow_spot_provider.watch.book import Book, Changed, GroupRead, Tuning
from airflow_spot_provider.watch.calls import list_changed, marked_events, read_group
from airflow_spot_provider.watch.heap import freeze_if_grown
from airflow_spot_provider.watch.subscription import News, Subscription

log = logging.getLogger(__name__)

# Subscribers handed their news per turn of the event loop.
NEWS_PER_TURN = 50

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
        self.group = GroupRead(tuning)
        self.caught_up: set[Subscription] = (
            set()
        )  # read their own streams once: the group serves them
        self.subs: dict[str, list[Subscription]] = {}
        self.listing = True  # False once ListTrainingJobs was refused: per-job describes
        self.cycles = 0
        self.closed = False
        self.task: asyncio.Task[None] | None = None
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
        self.caught_up.discard(sub)
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
        if self.tuning.freeze_heap:  # what the process holds already (Airflow, its triggers)
            freeze_if_grown(sum(len(subs) for subs in self.subs.values()))
        try:
            async with AsyncJobs(
                aws_conn_id=self.key[0],
                region_name=self.key[1],
                log=log,
                rule=self._rule(),
                pool=self.tuning.concurrency,
            ) as jobs:
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
        # Still loading their saved position, as the reads below start: no lines for them.
        awaiting = [sub for sub in self._all() if sub.awaits_position]
        listed = await self._listed(jobs, full) if listing else Changed()
        ending = set(listed.ended)
        swept = set(self.book.sweep()) if full else set()
        # The jobs List shows ended first: their triggers fire first. Their last lines are read
        # meanwhile.
        order = [*listed.order, *sorted({sub.job_name for sub in new} | swept)]
        described, read = await asyncio.gather(
            self._describe(jobs, list(dict.fromkeys(order))),
            self._read_logs(jobs, group_read=full, ending=ending),
        )
        for sub in new:
            sub.due = None
        late = {n for n, d in described.items() if _is_terminal(d)} - ending
        if late:  # ended as a describe shows, not List: read their streams before they fire
            for key, (lines, marks) in (await self._read_logs(jobs, ended=late)).items():
                read[key] = (read.get(key, ([], {}))[0] + lines, marks)
        held = _hold_ends(awaiting, described)
        handed = 0
        for sub in list(self._all()):  # a copy: triggers that fire meanwhile unsubscribe
            describe = None if sub in held else described.get(sub.job_name)
            lines, marks = read.get(id(sub), ([], {}))
            if describe is not None or lines or marks or (listing and sub.ticks):
                sub.queue.put_nowait(News(describe=describe, lines=lines, marks=marks))
                handed += 1
                if handed % NEWS_PER_TURN == 0:
                    # The woken triggers take their news before more are woken: a thousand
                    # jobs that end together would otherwise stall the loop in one turn.
                    await asyncio.sleep(0)

    async def _listed(self, jobs: AsyncJobs, full: bool) -> Changed:
        """The subscribed jobs to describe after this cycle's List walk, those List shows ended
        apart.

        :param full: the first walk of a poll interval (it describes every job when List is
            refused).
        """
        if not self.listing:
            return Changed(others=sorted(self.book.watched) if full else [])
        args = self.book.list_args()
        if args is None:
            return Changed()  # nothing seen yet: the first describes set the watermark
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
            return Changed(others=sorted(self.book.watched))
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
        self,
        jobs: AsyncJobs,
        *,
        group_read: bool = False,
        ending: AbstractSet[str] = frozenset(),
        ended: AbstractSet[str] = frozenset(),
    ) -> dict[int, tuple[Lines, dict[str, Any]]]:
        """New CloudWatch lines per subscriber (by ``id``), with the marks after them.

        One ``FilterLogEvents`` of the whole group (:class:`~airflow_spot_provider.watch.book.
        GroupRead`) brings the lines of every subscriber that is caught up, each taking its job's
        events past its marks: once per poll interval, and whenever List shows jobs ended. An
        ended job's known streams are also read from its marks (100 per call): a last line that
        reached CloudWatch later than the group read's margin is relayed before it fires. The
        others read their own job's streams from their marks (:meth:`_read_own`): a new
        subscriber (its marks may be older than the group read's start) and a job found ended
        by a describe, not List.

        :param group_read: the poll interval's read of the group.
        :param ending: the jobs List shows ended.
        :param ended: the jobs a describe shows ended (List did not).
        """
        logged = [sub for sub in self._all() if sub.print_log]
        if not logged:
            self.group.reset()
            return {}
        self.group.clock(self.book.watermark)
        own = [sub for sub in logged if sub not in self.caught_up or sub.job_name in ended]
        grouped = [sub for sub in logged if sub not in own]
        if not group_read and not any(sub.job_name in ending for sub in grouped):
            grouped = []
        read: dict[int, tuple[Lines, dict[str, Any]]] = {}
        try:
            if grouped:
                closing = [sub.read for sub in grouped if sub.job_name in ending]
                found = await asyncio.gather(
                    jobs.run(read_group(self.group)), jobs.run(marked_events(closing))
                )
                by_job = events_by_job([*found[0], *found[1]])
                for sub in grouped:
                    _took(read, sub, sub.read.take_events(by_job.get(sub.job_name, ())))
            if own:
                for sub, result in zip(own, await self._read_own(jobs, own), strict=True):
                    _took(read, sub, result)
        except ApiCallError as error:
            if error.code != "ResourceNotFoundException":  # no log group yet: nothing written
                note = f"Could not read the training logs: {error}"
                log.warning(note)
                for sub in logged:
                    sub.queue.put_nowait(News(notes=(note,)))
                return read
        self.caught_up.update(own)
        return read

    async def _read_own(
        self, jobs: AsyncJobs, subs: list[Subscription]
    ) -> list[tuple[Lines, Position]]:
        """Read the subscribers' jobs' streams from their marks: what each has not read yet.

        The streams are looked up by job (``DescribeLogStreams`` with the job's prefix: a stream
        that appeared since is found too) and read whatever their ``lastEventTimestamp`` says
        (CloudWatch updates it eventually), 100 streams per ``FilterLogEvents``.

        :param subs: the subscribers.
        """
        gate = asyncio.Semaphore(self.tuning.concurrency)

        async def look_up(name: str) -> dict[str, int | None]:
            async with gate:
                return await jobs.run(job_streams(name))

        names = sorted({sub.job_name for sub in subs})
        last: dict[str, int | None] = {}
        for found in await asyncio.gather(*(look_up(name) for name in names)):
            last.update(found)
        positions = [sub.read for sub in subs]
        return await jobs.run(read_marked(positions, last, every_stream=True))


def _took(
    read: dict[int, tuple[Lines, dict[str, Any]]],
    sub: Subscription,
    result: tuple[Lines, Position],
) -> None:
    """Note what a subscriber read (its lines and marks for its news) when its marks moved."""
    lines, position = result
    if position != sub.read:
        read[id(sub)] = (lines, dict(position.streams))
        sub.read = position


def _hold_ends(
    awaiting: list[Subscription], described: dict[str, dict[str, Any]]
) -> list[Subscription]:
    """The subscribers not to hand their job's end yet: read for none of its lines (loading).

    Each is described again once its position is loaded, and its streams read to their end.
    """
    held = [
        sub
        for sub in awaiting
        if sub.job_name in described and _is_terminal(described[sub.job_name])
    ]
    for sub in held:
        sub.end_unread()
    return held


def _is_terminal(describe: dict[str, Any]) -> bool:
    return TrainingJobStatus(describe["TrainingJobStatus"]).is_terminal
