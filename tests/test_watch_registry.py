"""An event loop's registry of watches lives as long as its loop, no longer."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from airflow_spot_provider import position_store
from airflow_spot_provider.watch.registry import Registry, registry


def test_a_loops_registry_is_collected_with_its_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    deleted: list[str] = []
    monkeypatch.setattr(position_store, "delete_position", deleted.append)
    left: list[weakref.ref[Registry]] = []

    async def use_the_registry(n: int) -> None:
        found = registry()
        assert registry() is found  # one per loop
        assert all(found is not earlier() for earlier in left)
        # The saver's task (and its futures) refer to the loop: the cycle that must not leak.
        found.saver.forget(f"job-{n}")
        await asyncio.sleep(0.5)
        left.append(weakref.ref(found))

    for n in range(3):
        asyncio.run(use_the_registry(n))
    gc.collect()
    assert deleted == ["job-0", "job-1", "job-2"]  # the savers worked
    assert [ref() for ref in left] == [None, None, None]
