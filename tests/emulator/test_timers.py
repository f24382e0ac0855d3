"""The job clock's timer queue: each job wakes once, at the earliest time asked for."""

from __future__ import annotations

from airflow_spot_provider.emulator.timers import Timers


def test_a_job_wakes_once_at_its_earliest_time() -> None:
    timers = Timers()
    timers.wake("late", 30.0)
    timers.wake("soon", 20.0)
    timers.wake("late", 10.0)  # earlier: replaces 30
    timers.wake("soon", 25.0)  # later: ignored
    timers.wake("never", float("inf"))
    assert len(timers) == 2
    assert timers.pop_due(5.0) == []
    assert timers.pop_due(20.0) == ["late", "soon"]
    assert timers.pop_due(1e12) == []  # the stale entry of "late" at 30 is skipped
    assert len(timers) == 0


def test_a_job_woken_again_after_it_was_due_is_due_again() -> None:
    timers = Timers()
    timers.wake("job", 1.0)
    assert timers.pop_due(1.0) == ["job"]
    timers.wake("job", 0.0)
    assert timers.pop_due(1.0) == ["job"]
