"""Loading and saving the positions of an event loop's triggers: batched, off the loop, in order.

A trigger subscribes to its watch first and loads the position it saved (a restart) meanwhile
(:meth:`PositionSaver.load`): every load asked for while a batch runs goes in the next one, one
thread of the loop's default executor that reads them one after the other and answers them
``LOADS_PER_ANSWER`` at a time as it goes, so 1,000 triggers starting together cost a couple of
thread hops, not 1,000, and wake a few dozen at a time. A batch of loads goes before the saves
waiting with it.

Triggers hand their position over as they log (:meth:`PositionSaver.keep`); shortly after, one
thread of the loop's default executor saves every position handed over since (Airflow Variables,
:mod:`airflow_spot_provider.position_store`), so a cycle of the watch that moved 1,000 jobs costs
one thread hop, not 1,000. A position whose transitions moved is saved with the next batch; one
whose only change is its log marks waits up to ``LOG_MARK_SAVE_SECONDS`` (relayed lines move every
cycle: saving each would be a Variable write per job and cycle).

The guarantee: a trigger cancelled gracefully (the triggerer stops or restarts) leaves only once
its position is saved (:meth:`PositionSaver.hurry` waits for the batch that saves it), so the
next triggerer neither repeats nor loses a line. A killed process (``kill -9``) loses what was
not saved yet: the transitions of its last ``SAVE_DELAY`` and the log marks of its last
``LOG_MARK_SAVE_SECONDS``, which the next triggerer then logs again (never loses). A trigger
cancelled while its load waits leaves at once; the batch answers only those still waiting.

One batch at a time (loads or saves), even when the loop shuts down: a batch under way when the
saver's task is cancelled is waited for before the rest is saved, so an older position never
lands after a newer one, and the Variable calls never run in two threads at once (Airflow's
in-process supervisor comms, as ``dag.test()`` uses, are not thread-safe: two at once lose both).

A trigger that fires deletes its Variable through :meth:`PositionSaver.forget`, with the next
batch too: it fires at once instead of waiting for a thread, and the batch deletes after any save
of that job (batches run one after the other; a batch saves, then deletes).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from airflow_spot_provider import position_store
from airflow_spot_provider.position import Position

log = logging.getLogger(__name__)

# Seconds between a position handed over and the batch's save: the triggers woken by one cycle of
# the watch all log and hand over within it.
SAVE_DELAY = 0.2
# The longest a position whose only change is its log marks waits to be saved.
LOG_MARK_SAVE_SECONDS = 30.0
# Loads answered to the loop at once, as the batch's thread reads them: the triggers they wake
# take their first news together (a thousand at once would stall the loop a few hundred ms).
LOADS_PER_ANSWER = 50


def save_all(positions: list[Position], deleted: list[str]) -> None:
    """Save positions, then delete the positions of other jobs (blocking: run in a thread).

    :param positions: the positions to save.
    :param deleted: the jobs whose position to delete.
    """
    for position in positions:
        position_store.save_position(position)
    for job_name in deleted:
        position_store.delete_position(job_name)


def load_all(job_names: list[str], answer: Callable[[dict[str, Position | None]], None]) -> None:
    """Read the saved position of each job, one after the other (blocking: run in a thread).

    :param job_names: the jobs.
    :param answer: takes the positions read, ``LOADS_PER_ANSWER`` jobs at a time.
    """
    loaded: dict[str, Position | None] = {}
    for job_name in job_names:
        try:
            loaded[job_name] = position_store.load_position(job_name)
        except ValueError as error:  # a position is a nicety: never fail a trigger over it
            log.warning("Saved position of %s unreadable, not used: %s", job_name, error)
            loaded[job_name] = None
        if len(loaded) == LOADS_PER_ANSWER:
            answer(loaded)
            loaded = {}
    answer(loaded)


def _answer_loads(
    loaded: dict[str, Position | None], asked: dict[str, list[asyncio.Future[Any]]]
) -> None:
    """Answer the triggers still waiting for these positions (those cancelled meanwhile left)."""
    for job_name, position in loaded.items():
        for answer in asked[job_name]:
            if not answer.done():
                answer.set_result(position)


class PositionSaver:
    """The positions waiting to be loaded or saved on one event loop, and the task doing it."""

    def __init__(self) -> None:
        self._loads: dict[str, list[asyncio.Future[Position | None]]] = {}
        self._pending: dict[str, Position] = {}
        self._lazy: dict[str, tuple[float, Position]] = {}  # job -> (waiting since, position)
        self._deleted: set[str] = set()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # The batch under way (the jobs it saves, its thread's future) and the next one's future.
        self._saving: tuple[frozenset[str], asyncio.Future[Any]] | None = None
        self._next: asyncio.Future[None] | None = None

    async def load(self, job_name: str) -> Position | None:
        """The job's saved position, if any, read with the next batch of loads.

        :param job_name: the job.
        """
        answer: asyncio.Future[Position | None] = asyncio.get_running_loop().create_future()
        self._loads.setdefault(job_name, []).append(answer)
        self._kick.set()
        self._start()
        return await answer  # cancelled with its trigger: the batch then skips it

    def keep(self, position: Position, *, urgent: bool = True) -> None:
        """Save a position with a coming batch (replacing one of the same job still waiting).

        :param position: the position.
        :param urgent: with the next batch (its transitions moved); else within
            ``LOG_MARK_SAVE_SECONDS`` (only its log marks moved).
        """
        job = position.job_name
        self._deleted.discard(job)  # a new position of the job outdates its deletion
        if urgent or job in self._pending:
            self._lazy.pop(job, None)
            self._pending[job] = position
            self._kick.set()
        else:
            since = self._lazy.get(job, (time.monotonic(), position))[0]
            self._lazy[job] = (since, position)
        self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            # A context of its own: what it logs is not any one trigger's.
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), context=contextvars.Context())

    async def hurry(self, job_name: str) -> None:
        """Save a job's waiting position with the next batch and wait until it is saved.

        Its trigger is leaving (cancelled): it must not go before its position is saved. A
        second cancellation ends the wait, not the save (the saver's task carries on).

        :param job_name: the job.
        """
        waiting = self._lazy.pop(job_name, None)
        if waiting is not None:
            self.keep(waiting[1])
        if job_name in self._pending:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._next)
        elif self._saving is not None and job_name in self._saving[0]:
            await asyncio.shield(self._saving[1])

    async def _run(self) -> None:
        try:
            while self._loads or self._pending or self._deleted or self._lazy:
                self._kick.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), self._wait())
                if (self._pending or self._deleted) and not self._loads:
                    await asyncio.sleep(SAVE_DELAY)  # the rest of this cycle's hand-overs
                await self._load_asked()
                now = time.monotonic()
                for job, (since, position) in list(self._lazy.items()):
                    if now - since >= LOG_MARK_SAVE_SECONDS:
                        self._pending[job] = position
                        del self._lazy[job]
                await self._save_pending()
        except asyncio.CancelledError:  # the loop shuts down: every position handed over is saved
            if self._saving is not None:  # the batch under way lands first, alone
                with contextlib.suppress(Exception):
                    await self._saving[1]
            for answers in self._loads.values():  # their triggers are cancelled too
                for answer in answers:
                    answer.cancel()
            self._loads.clear()
            self._pending.update({job: p for job, (_, p) in self._lazy.items()})
            self._lazy.clear()
            await self._save_pending()
            raise

    def _wait(self) -> float:
        if self._loads or self._pending or self._deleted:
            return 0.0
        oldest = min(since for since, _ in self._lazy.values())
        return max(0.0, oldest + LOG_MARK_SAVE_SECONDS - time.monotonic())

    async def _load_asked(self) -> None:
        """Load the positions asked for since the last batch, in one thread; answer them."""
        asked, self._loads = self._loads, {}
        # Those whose triggers all left (cancelled) are not read.
        asked = {job: a for job, a in asked.items() if not all(f.done() for f in a)}
        if not asked:
            return
        loop = asyncio.get_running_loop()

        def answer(part: dict[str, Position | None]) -> None:  # in the thread
            loop.call_soon_threadsafe(_answer_loads, part, asked)

        context = contextvars.copy_context()
        loading = loop.run_in_executor(
            None, functools.partial(context.run, load_all, sorted(asked), answer)
        )
        self._saving = (frozenset(), loading)
        loading.add_done_callback(lambda _: self._loads_ended(loading, asked))
        await asyncio.shield(loading)  # as a save batch: a cancellation waits for it in _run

    def _loads_ended(
        self, loading: asyncio.Future[None], asked: dict[str, list[asyncio.Future[Any]]]
    ) -> None:
        """A batch's thread ended: those it did not answer (it failed) get its error."""
        self._landed(loading, None)
        error = None if loading.cancelled() else loading.exception()
        for answers in asked.values():
            for answer in answers:
                if answer.done():
                    continue
                if error is None:
                    answer.cancel()  # the thread was cancelled before it started
                else:
                    answer.set_exception(error)

    async def _save_pending(self) -> None:
        batch, self._pending = list(self._pending.values()), {}
        deleted, self._deleted = sorted(self._deleted), set()
        done, self._next = self._next, None
        if not (batch or deleted):
            self._landed(None, done)
            return
        # A future, not a task (what asyncio.to_thread gives): the loop's shutdown cancels every
        # task, and a cancelled task would say "landed" while its thread still saves.
        context = contextvars.copy_context()
        saving = asyncio.get_running_loop().run_in_executor(
            None, functools.partial(context.run, save_all, batch, deleted)
        )
        self._saving = (frozenset(p.job_name for p in batch), saving)
        saving.add_done_callback(lambda _: self._landed(saving, done))
        # Shielded: a cancellation leaves the thread's save running, and _run waits for it.
        await asyncio.shield(saving)

    def _landed(
        self, saving: asyncio.Future[Any] | None, done: asyncio.Future[None] | None
    ) -> None:
        """A batch's thread ended: wake those waiting for it (whatever the save's outcome)."""
        if saving is not None and self._saving is not None and self._saving[1] is saving:
            self._saving = None
        if done is not None and not done.done():
            done.set_result(None)

    def forget(self, job_name: str) -> None:
        """Delete a job's saved position with the next batch, after any save of it.

        :param job_name: the job.
        """
        self._pending.pop(job_name, None)
        self._lazy.pop(job_name, None)
        self._deleted.add(job_name)
        self._kick.set()
        self._start()
