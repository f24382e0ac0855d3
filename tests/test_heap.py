"""The heap's freezes: the first time, then only once the subscribers doubled."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from airflow_spot_provider.watch import heap


@pytest.fixture(autouse=True)
def _thawed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    gc.unfreeze()
    monkeypatch.setattr(heap, "_frozen_for", 0)
    yield
    gc.unfreeze()  # the rest of the test process is collected as usual


def _frozen(objects: list[list[None]]) -> int:
    """How many of these objects are frozen (in the permanent generation).

    Asked of the objects themselves, not of the freeze count: objects frozen before may die
    meanwhile (in other threads too), which lowers the count by any amount.
    """
    collected = {id(o) for o in gc.get_objects()}  # generations 0-2: never the frozen ones
    return sum(id(o) not in collected for o in objects)


def test_freezes_first_then_once_subscribers_doubled() -> None:
    assert heap.freeze_if_grown(3)
    assert gc.get_freeze_count() > 0
    grown: list[list[None]] = [[] for _ in range(1_000)]  # tracked, born after the freeze
    assert not heap.freeze_if_grown(5)  # not doubled yet
    assert _frozen(grown) == 0
    assert heap.freeze_if_grown(6)
    assert _frozen(grown) == len(grown)
    assert not heap.freeze_if_grown(1)  # a later, smaller watch of the same process


def test_a_process_freezes_about_log2_times_as_subscribers_come_one_by_one() -> None:
    freezes = sum(heap.freeze_if_grown(n) for n in range(1, 1_001))
    assert freezes == 10  # at 1, 2, 4, ... 512 subscribers
