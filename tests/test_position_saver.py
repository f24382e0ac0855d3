"""The position saver's batches: loads together and first, one batch at a time, its shutdown.

The Variable calls are replaced by slow recorders: what is checked is the saver's own promise
(one thread hop per batch, one call at a time, the newest position last), which no backend call
could show reliably.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_spot_provider import position_store
from airflow_spot_provider.position import Position
from airflow_spot_provider.watch import saver as saver_module
from airflow_spot_provider.watch.saver import PositionSaver


def test_shutdown_during_a_save_saves_one_at_a_time_newest_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saved: list[int] = []
    running = {"now": 0, "most": 0}
    lock = threading.Lock()

    def slow_save(position: Position) -> None:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        time.sleep(0.3)  # a save under way when the loop shuts down
        with lock:
            running["now"] -= 1
            saved.append(position.transitions)

    monkeypatch.setattr(position_store, "save_position", slow_save)
    monkeypatch.setattr(saver_module, "SAVE_DELAY", 0.0)

    async def main() -> None:
        saver = PositionSaver()
        saver.keep(Position("job", transitions=2))
        await asyncio.sleep(0.1)  # the batch of 2 is in its thread
        saver.keep(Position("job", transitions=3))
        # Returning now: asyncio.run cancels the saver's task in the middle of the first save.

    asyncio.run(main())
    assert running["most"] == 1, "two saves ran at once"
    assert saved == [2, 3]  # the newest position lands last


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting the thread hops asked of it."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.hops = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.hops += 1
        return super().submit(fn, *args, **kwargs)


def _recording(calls: list[tuple[str, str, int]], lock: threading.Lock) -> Any:
    """A stand-in for the Variable calls: records (kind, job, thread) and how many at once."""
    running = {"now": 0}

    def record(kind: str, job: str) -> None:
        with lock:
            running["now"] += 1
            assert running["now"] == 1, "two Variable calls ran at once"
        time.sleep(0.02)
        with lock:
            running["now"] -= 1
            calls.append((kind, job, threading.get_ident()))

    return record


def test_loads_asked_together_cost_one_thread_hop_and_are_answered_as_they_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, str, int]] = []
    record = _recording(calls, threading.Lock())

    def load(job: str) -> Position | None:
        record("load", job)
        return Position(job, transitions=int(job.rsplit("-", 1)[1])) if job != "job-00" else None

    monkeypatch.setattr(position_store, "load_position", load)
    monkeypatch.setattr(position_store, "save_position", lambda p: record("save", p.job_name))
    monkeypatch.setattr(saver_module, "LOADS_PER_ANSWER", 8)
    executor = CountingExecutor()
    read_when_answered: dict[str, int] = {}

    async def one(saver: PositionSaver, job: str) -> Position | None:
        position = await saver.load(job)
        read_when_answered[job] = len(calls)
        return position

    async def main() -> list[Position | None]:
        asyncio.get_running_loop().set_default_executor(executor)
        saver = PositionSaver()
        saver.keep(Position("saved", transitions=1))  # waiting with them: loads go first
        return await asyncio.gather(*(one(saver, f"job-{i:02}") for i in range(20)))

    loaded = asyncio.run(main())
    assert [p.transitions if p else None for p in loaded] == [None, *range(1, 20)]
    assert executor.hops == 2  # one for the 20 loads, one for the save
    assert [kind for kind, _, _ in calls] == ["load"] * 20 + ["save"]
    assert len({thread for kind, _, thread in calls if kind == "load"}) == 1
    # Answered 8 at a time as the thread reads them: the first 8 before the last is read.
    assert max(read_when_answered[f"job-{i:02}"] for i in range(8)) < 20


def test_a_trigger_cancelled_while_its_load_waits_leaves_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, str, int]] = []
    record = _recording(calls, threading.Lock())
    entered = threading.Event()

    def slow_load(job: str) -> Position | None:
        entered.set()
        time.sleep(0.3)  # the batch under way when the triggers are cancelled
        record("load", job)
        return Position(job, transitions=1)

    monkeypatch.setattr(position_store, "load_position", slow_load)
    problems: list[dict[str, Any]] = []

    async def main() -> Position | None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: problems.append(context))
        saver = PositionSaver()
        in_thread = asyncio.ensure_future(saver.load("in-thread"))
        kept = asyncio.ensure_future(saver.load("kept"))
        await asyncio.to_thread(entered.wait, 5)
        waiting = asyncio.ensure_future(saver.load("waiting"))  # the next batch's
        await asyncio.sleep(0)
        for task in (in_thread, waiting):
            task.cancel()
        for task in (in_thread, waiting):
            with pytest.raises(asyncio.CancelledError):
                await task
        position = await kept  # the others of its batch are still answered
        await asyncio.sleep(0.5)  # the saver's task is idle by now
        assert saver._task is not None and saver._task.done()
        return position

    kept = asyncio.run(main())
    gc.collect()  # a future never awaited would complain when collected
    assert kept == Position("kept", transitions=1)
    assert problems == []
    assert sorted(job for _, job, _ in calls) == ["in-thread", "kept"]  # "waiting" not read
