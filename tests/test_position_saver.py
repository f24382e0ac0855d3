"""The position saver's order when its loop shuts down in the middle of a save.

The Variable calls are replaced by a slow recorder: what is checked is the saver's own promise
(one save at a time, the newest position last), which no backend call could show reliably.
"""

from __future__ import annotations

import asyncio
import threading
import time

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
