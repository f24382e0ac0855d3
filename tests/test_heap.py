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


def test_freezes_first_then_once_subscribers_doubled() -> None:
    assert heap.freeze_if_grown(3)
    first = gc.get_freeze_count()
    assert first > 0
    grown = [[] for _ in range(1_000)]  # tracked objects born after the freeze
    assert not heap.freeze_if_grown(5)  # not doubled yet
    assert gc.get_freeze_count() < first + len(grown)
    assert heap.freeze_if_grown(6)
    assert gc.get_freeze_count() >= first + len(grown)
    assert not heap.freeze_if_grown(1)  # a later, smaller watch of the same process


def test_a_process_freezes_about_log2_times_as_subscribers_come_one_by_one() -> None:
    freezes = sum(heap.freeze_if_grown(n) for n in range(1, 1_001))
    assert freezes == 10  # at 1, 2, 4, ... 512 subscribers
