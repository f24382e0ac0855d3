"""Saving the positions of an event loop's triggers: batched, off the loop, in order.

Triggers hand their position over as they log (:meth:`PositionSaver.keep`); shortly after, one
``asyncio.to_thread`` call saves every position handed over since (Airflow Variables,
:mod:`airflow_spot_provider.position_store`), so a cycle of the watch that moved 1,000 jobs costs
one thread hop, not 1,000. A trigger that fires deletes its Variable through
:meth:`PositionSaver.forget`, which waits for a save in flight: no save lands after the delete.
A loop that shuts down (the triggerer stops) still saves what was handed over.
"""

from __future__ import annotations

import asyncio
import contextvars

from airflow_spot_provider import position_store
from airflow_spot_provider.position import Position

# Seconds between the first position handed over and the batch's save: the triggers woken by one
# cycle of the watch all log and hand over within it.
SAVE_DELAY = 0.2


def save_all(positions: list[Position]) -> None:
    """Save positions, one after the other (blocking: run in a thread).

    :param positions: the positions.
    """
    for position in positions:
        position_store.save_position(position)


class PositionSaver:
    """The positions waiting to be saved on one event loop, and the task that saves them."""

    def __init__(self) -> None:
        self._pending: dict[str, Position] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def keep(self, position: Position) -> None:
        """Save a position with the next batch (replacing one of the same job still waiting).

        :param position: the position.
        """
        self._pending[position.job_name] = position
        if self._task is None or self._task.done():
            # A context of its own: what it logs is not any one trigger's.
            self._task = asyncio.get_running_loop().create_task(
                self._save_soon(), context=contextvars.Context()
            )

    async def _save_soon(self) -> None:
        try:
            await asyncio.sleep(SAVE_DELAY)
        finally:  # also when the loop shuts down: the positions handed over are saved
            async with self._lock:
                while self._pending:
                    batch, self._pending = list(self._pending.values()), {}
                    await asyncio.to_thread(save_all, batch)

    async def forget(self, job_name: str) -> None:
        """Delete a job's saved position, after any save of it in flight.

        :param job_name: the job.
        """
        self._pending.pop(job_name, None)
        async with self._lock:
            await asyncio.to_thread(position_store.delete_position, job_name)
