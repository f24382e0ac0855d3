"""The plan of the interrupted runs: seeded, every kind, scenario events of the backend."""

from __future__ import annotations

import pytest

from airflow_spot_provider.emulator.scenario import InterruptAt, parse_events
from airflow_spot_provider.verify.plan import (
    AFTER_START_SECOND,
    Interruption,
    ReferenceTiming,
    RunKind,
    make_plan,
)

REFERENCE = ReferenceTiming(training_seconds=10.0, checkpoint_seconds=(2.0, 4.0, 6.0, 8.0, 10.0))


def test_same_seed_same_plan_other_seed_other_points() -> None:
    assert make_plan(REFERENCE, 6, seed=1) == make_plan(REFERENCE, 6, seed=1)
    assert make_plan(REFERENCE, 6, seed=1) != make_plan(REFERENCE, 6, seed=2)


def test_the_first_four_runs_cover_every_kind_then_random() -> None:
    plans = make_plan(REFERENCE, 6, seed=3)
    assert [p.kind for p in plans] == [
        RunKind.RANDOM,
        RunKind.CHECKPOINT_WRITE,
        RunKind.TWICE,
        RunKind.AFTER_START,
        RunKind.RANDOM,
        RunKind.RANDOM,
    ]
    random_run, at_write, twice, after_start = plans[:4]
    (only,) = random_run.interruptions
    assert only.attempt == 1 and 3.0 <= only.at_training_second <= 8.0
    # The end-of-training save is not a moment to interrupt at.
    assert at_write.interruptions[0].at_training_second in (2.0, 4.0, 6.0, 8.0)
    first, second = twice.interruptions
    assert (first.attempt, second.attempt) == (1, 2)
    assert 2.5 <= first.at_training_second <= 5.0 and 0.5 <= second.at_training_second <= 2.0
    assert after_start.interruptions == (Interruption(1, AFTER_START_SECOND),)


def test_a_trainer_that_saves_only_at_the_end_is_interrupted_near_it() -> None:
    (plan,) = make_plan(ReferenceTiming(10.0, (10.0,)), 2, seed=0)[1:]
    assert plan.interruptions == (Interruption(1, 8.5),)


def test_scenario_events_are_what_the_backend_reads() -> None:
    twice = make_plan(REFERENCE, 3, seed=0)[2]
    events = parse_events(twice.scenario("verify-x-run-3"), loaded_at=0.0)
    assert events == [
        InterruptAt("verify-x-run-3", i.at_training_second, i.attempt) for i in twice.interruptions
    ]
    assert twice.to_json()["kind"] == "twice"


@pytest.mark.parametrize(
    ("reference", "runs", "message"),
    [
        (REFERENCE, 0, "runs must be >= 1, got 0"),
        (ReferenceTiming(0.0), 1, "the reference run must have trained, got 0.0 s"),
    ],
)
def test_bad_inputs(reference: ReferenceTiming, runs: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_plan(reference, runs, seed=0)


def test_a_run_made_again_is_interrupted_twice_as_early() -> None:
    twice = make_plan(REFERENCE, 3, seed=0)[2]
    again = twice.earlier()
    assert (again.index, again.kind) == (twice.index, twice.kind)
    assert again.interruptions == tuple(
        Interruption(i.attempt, i.at_training_second / 2) for i in twice.interruptions
    )
