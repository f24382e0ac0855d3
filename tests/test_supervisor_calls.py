"""Blocking supervisor requests run one at a time: the kill guard's and the position store's.

Airflow's in-process supervisor comms (``dag.test()``) are not thread-safe, and a race between
two real requests is rare; these comms record how many requests overlap instead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from airflow_spot_provider.supervisor_calls import one_at_a_time
from airflow_spot_provider.triggers.kill_guard import _ask


class _RecordingComms:
    """Blocking comms that answer each request with itself after a while, and count overlaps."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def send(self, message: Any) -> Any:
        with self._guard:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.05)
        with self._guard:
            self.in_flight -= 1
        return message


def test_the_kill_guards_of_one_loop_ask_one_at_a_time() -> None:
    comms = _RecordingComms()

    async def ask_all() -> list[Any]:
        return await asyncio.gather(*(_ask(comms, n) for n in range(6)))

    assert asyncio.run(ask_all()) == list(range(6))  # each its own answer
    assert comms.most_in_flight == 1


def test_the_kill_guard_waits_for_a_position_store_call_under_way() -> None:
    comms = _RecordingComms()
    inside, release = threading.Event(), threading.Event()

    def variable_call() -> None:  # what position_store runs: Variable.get/set/delete
        inside.set()
        release.wait(10)

    other = threading.Thread(target=one_at_a_time, args=(variable_call,))
    other.start()
    assert inside.wait(10)

    async def ask_meanwhile() -> tuple[bool, Any]:
        asking = asyncio.ensure_future(_ask(comms, "states?"))
        await asyncio.sleep(0.3)
        waited = not asking.done()
        release.set()
        return waited, await asking

    try:
        assert asyncio.run(ask_meanwhile()) == (True, "states?")
    finally:
        release.set()
        other.join(10)
